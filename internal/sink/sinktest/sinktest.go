// Package sinktest provides the contract suite every sink.Sink passes (sinktest.Run), so that
// the file, Kafka and Event Hubs sinks behave alike for the forwarder: one Result per message in
// order, Delivered only for what really arrived, errors on everything else, Permanent only for
// what can never be delivered, safe concurrent use.
//
// A backend's test calls Run with a constructor that returns a fresh sink and a function that
// reads back every event that reached the destination so far, decoded into messages (see
// FromEnvelope). The suite sends in BodyEnvelope mode: the constructor must configure that.
package sinktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// NewSinkFunc returns a fresh sink for one subtest and a function that returns every message
// that arrived at its destination so far (it may be called repeatedly; each call returns all of
// them, duplicates included). The constructor registers its own cleanup with t.Cleanup; the
// suite closes the sink itself only in its Close case.
type NewSinkFunc func(t *testing.T) (sink.Sink, func() []message.Message)

// ReadBackTimeout bounds how long the suite waits for delivered messages to show up at the
// destination (a consumer may lag the producer's acknowledgement).
var ReadBackTimeout = 10 * time.Second

// Run runs the contract suite as subtests of t.
func Run(t *testing.T, newSink NewSinkFunc) {
	t.Run("Limits", func(t *testing.T) {
		s, _ := newSink(t)
		l := s.Limits()
		if l.MaxBatchMessages < 0 || l.MaxBatchBytes < 0 || l.MaxMessageBytes < 0 {
			t.Fatalf("Limits() = %+v: negative field", l)
		}
		if l.Body != "" && l.Body != sink.BodyEnvelope && l.Body != sink.BodyRaw {
			t.Fatalf("Limits().Body = %q, want envelope or raw", l.Body)
		}
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		s, _ := newSink(t)
		if got := s.Send(context.Background(), nil); len(got) != 0 {
			t.Fatalf("Send(nil) returned %d results, want 0", len(got))
		}
	})
	t.Run("One", func(t *testing.T) {
		s, read := newSink(t)
		m := Messages(1, 32)[0]
		m.Properties = map[string]string{"kind": "reading", "unit": "°C"}
		res := s.Send(context.Background(), []message.Message{m})
		wantAllDelivered(t, res, 1)
		got := WaitFor(t, read, []message.Message{m})
		Equal(t, got[m.ID], m)
	})
	t.Run("Batch", func(t *testing.T) {
		s, read := newSink(t)
		batch := Messages(200, 64)
		wantAllDelivered(t, s.Send(context.Background(), batch), len(batch))
		WaitFor(t, read, batch)
		checkSenderOrder(t, read(), batch)
	})
	t.Run("Escaping", func(t *testing.T) {
		s, read := newSink(t)
		values := []string{"", `"quoted" \backslash\ `, "line\nbreak\r\n", "tab\there", "<html>&amp;</html>",
			"unicode: 日本語 ünïcödé 🚀", "nul\x00byte", `{"json":"inside"}`}
		batch := Messages(len(values), 0)
		for i, v := range values {
			batch[i].Value = v
		}
		batch[0].Properties = map[string]string{"k\"ey": "va\nlue"}
		wantAllDelivered(t, s.Send(context.Background(), batch), len(batch))
		got := WaitFor(t, read, batch)
		for _, m := range batch {
			Equal(t, got[m.ID], m)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		s, read := newSink(t)
		const senders, each = 8, 25
		all := Messages(senders*each, 48)
		results := make([][]sink.Result, senders)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() { results[g] = s.Send(context.Background(), all[g*each:(g+1)*each]) })
		}
		wg.Wait()
		for g := range senders {
			wantAllDelivered(t, results[g], each)
		}
		WaitFor(t, read, all)
	})
	t.Run("CanceledContext", func(t *testing.T) {
		s, read := newSink(t)
		batch := Messages(10, 16)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := s.Send(ctx, batch)
		if len(res) != len(batch) {
			t.Fatalf("Send returned %d results, want %d", len(res), len(batch))
		}
		var delivered []message.Message
		for i, r := range res {
			switch r.Status {
			case sink.Delivered:
				delivered = append(delivered, batch[i])
			case sink.Transient:
				if r.Err == nil {
					t.Errorf("result %d: Transient with a nil Err", i)
				}
			default:
				t.Errorf("result %d: %v (%v) for a canceled context, want delivered or transient", i, r.Status, r.Err)
			}
		}
		WaitFor(t, read, delivered)
	})
	t.Run("Oversized", func(t *testing.T) {
		s, read := newSink(t)
		limit := s.Limits().MaxMessageBytes
		if limit == 0 {
			t.Skip("the sink has no message size limit")
		}
		batch := Messages(5, 32)
		batch[2].Value = strings.Repeat("x", limit+1)
		res := s.Send(context.Background(), batch)
		if len(res) != len(batch) {
			t.Fatalf("Send returned %d results, want %d", len(res), len(batch))
		}
		if res[2].Status != sink.Permanent || res[2].Err == nil {
			t.Fatalf("oversized message: got %v (%v), want permanent with a reason", res[2].Status, res[2].Err)
		}
		mates := slices.Delete(slices.Clone(batch), 2, 3)
		for i, r := range slices.Delete(slices.Clone(res), 2, 3) {
			if r.Status != sink.Delivered {
				t.Errorf("batch-mate %d: got %v (%v), want delivered", i, r.Status, r.Err)
			}
		}
		got := WaitFor(t, read, mates)
		if _, ok := got[batch[2].ID]; ok {
			t.Errorf("the oversized message arrived")
		}
	})
	t.Run("Close", func(t *testing.T) {
		s, read := newSink(t)
		batch := Messages(3, 16)
		wantAllDelivered(t, s.Send(context.Background(), batch), len(batch))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		WaitFor(t, read, batch)
	})
}

// Messages returns n distinct messages from 5 senders with values of size bytes, received now.
func Messages(n, size int) []message.Message {
	val := make([]byte, size)
	for i := range val {
		val[i] = 'a' + byte(i%26)
	}
	now := time.Now().UTC()
	out := make([]message.Message, n)
	for i := range out {
		out[i] = message.Message{
			ID: uuid.New(), SenderID: fmt.Sprintf("sender-%02d", i%5), Value: string(val),
			ReceivedAt: now.Add(time.Duration(i) * time.Microsecond), Stamp: "test",
		}
	}
	return out
}

// FromEnvelope decodes a JSON envelope (sink.Envelope) back into a message.
func FromEnvelope(b []byte) (message.Message, error) {
	var e sink.Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return message.Message{}, fmt.Errorf("decode envelope: %w", err)
	}
	id, err := uuid.Parse(e.CorrelationID)
	if err != nil {
		return message.Message{}, fmt.Errorf("envelope correlationId %q: %w", e.CorrelationID, err)
	}
	return message.Message{ID: id, SenderID: e.SenderID, Value: e.Value, ReceivedAt: e.ReceivedAt,
		Stamp: e.Stamp, Properties: e.Properties}, nil
}

// WaitFor polls read until every message of want arrived (or ReadBackTimeout passes, which fails
// the test) and returns what arrived by id.
func WaitFor(t testing.TB, read func() []message.Message, want []message.Message) map[uuid.UUID]message.Message {
	t.Helper()
	deadline := time.Now().Add(ReadBackTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := map[uuid.UUID]message.Message{}
		for _, m := range read() {
			got[m.ID] = m
		}
		var missing int
		for _, m := range want {
			if _, ok := got[m.ID]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered messages did not arrive within %v", missing, len(want), ReadBackTimeout)
		}
		<-tick.C
	}
}

// Equal fails t unless got carries want's fields (times compared with Equal, nil and empty
// properties alike).
func Equal(t testing.TB, got, want message.Message) {
	t.Helper()
	if got.ID != want.ID || got.SenderID != want.SenderID || got.Value != want.Value || got.Stamp != want.Stamp ||
		!got.ReceivedAt.Equal(want.ReceivedAt) || !maps.Equal(got.Properties, want.Properties) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func wantAllDelivered(t testing.TB, res []sink.Result, n int) {
	t.Helper()
	if len(res) != n {
		t.Fatalf("Send returned %d results, want %d", len(res), n)
	}
	for i, r := range res {
		if r.Status != sink.Delivered {
			t.Fatalf("result %d: got %v (%v), want delivered", i, r.Status, r.Err)
		}
	}
}

// checkSenderOrder fails t unless, for each sender, the first arrival of its messages follows the
// order they were sent in (a sink keeps per-partition-key order within one batch).
func checkSenderOrder(t testing.TB, arrived, sent []message.Message) {
	t.Helper()
	pos := map[uuid.UUID]int{}
	for i, m := range sent {
		pos[m.ID] = i
	}
	seen := map[uuid.UUID]bool{}
	last := map[string]int{}
	for _, m := range arrived {
		p, ok := pos[m.ID]
		if !ok || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		if l, ok := last[m.SenderID]; ok && p < l {
			t.Errorf("sender %s: message %d arrived after message %d", m.SenderID, p, l)
		}
		last[m.SenderID] = p
	}
}

// AbandonedBatch drives the case of a Kafka producer (franz-go) failing a partition's whole
// buffered batch by the context of its first record: c holds the first produce request while
// s sends msgs[0] (in flight, held), msgs[1] with a context cancelled while it is buffered, and
// msgs[2] buffered behind it in the same batch. The abandoned Send must be Transient with
// context.Canceled, and the other two Delivered: a Send whose context is alive produces again
// what another Send's cancellation took down. The caller reads back msgs[0] and msgs[2]. The
// topic must have one partition, or the messages share one by key.
func AbandonedBatch(t *testing.T, c *kfake.Cluster, s sink.Sink, msgs [3]message.Message) {
	t.Helper()
	hold := make(chan struct{})
	var held atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if held.CompareAndSwap(false, true) {
			c.SleepControl(func() { <-hold })
		}
		return nil, nil, false
	})
	long, cancelLong := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelLong()
	send := func(ctx context.Context, m message.Message) <-chan []sink.Result {
		out := make(chan []sink.Result, 1)
		go func() { out <- s.Send(ctx, []message.Message{m}) }()
		return out
	}

	first := send(long, msgs[0]) // in flight, held by the broker
	for !held.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	short, cancelShort := context.WithCancel(context.Background())
	giving := send(short, msgs[1]) // buffered: the next batch starts with it
	time.Sleep(100 * time.Millisecond)
	ours := send(long, msgs[2]) // buffered behind it, in the same batch
	time.Sleep(100 * time.Millisecond)
	cancelShort()
	if r := (<-giving)[0]; r.Status != sink.Transient || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("the abandoned Send: %v (%v), want transient context canceled", r.Status, r.Err)
	}
	close(hold)
	for name, ch := range map[string]<-chan []sink.Result{"first": first, "ours": ours} {
		if r := (<-ch)[0]; r.Status != sink.Delivered {
			t.Errorf("%s Send: %v (%v), want delivered", name, r.Status, r.Err)
		}
	}
}

// RefusedAddr returns a loopback host:port where nothing listens right now (it was just
// listened on and closed): a destination that refuses connections, for the tests of what an
// operator sees when a sink or a peer is down.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
