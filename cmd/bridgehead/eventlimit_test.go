package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

const limitTopic = "readings"

// mustKafka starts a one-broker kfake cluster (on port, if not 0) with limitTopic, whose
// max.message.bytes is set to maxMessageBytes unless it is 0.
func mustKafka(t *testing.T, port, maxMessageBytes int) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, limitTopic)}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	if maxMessageBytes == 0 {
		return c
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := kadm.NewClient(cl).AlterTopicConfigs(ctx,
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr(strconv.Itoa(maxMessageBytes))}}, limitTopic)
	if err == nil && len(rs) == 1 {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatalf("set max.message.bytes: %v", err)
	}
	return c
}

// servedStamp is a `bridgehead serve` running in this process.
type servedStamp struct {
	url, spoolDir string
	logs          *logbuf.Buffer
}

var listeningRE = regexp.MustCompile(`listening on\s+(http://\S+)`)

// runServe runs `bridgehead serve` with args (plus a fresh spool, a free port and a short
// grace) until the test ends, and returns once it listens.
func runServe(t *testing.T, args ...string) *servedStamp {
	t.Helper()
	s := &servedStamp{spoolDir: t.TempDir(), logs: &logbuf.Buffer{}}
	out := &logbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args = append([]string{"serve", "--spool-dir", s.spoolDir, "--listen", "127.0.0.1:0", "--stamp", "e2e",
		"--shutdown-grace", "3s"}, args...)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, s.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop within 15 s")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(out.String()); m != nil {
			s.url = m[1]
			return s
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, s.logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen within 20 s\n%s", s.logs)
		}
	}
}

// post sends one message to /v1/messages and returns the status, the correlationId (on 2xx)
// and the body.
func (s *servedStamp) post(t *testing.T, senderID, value string, props map[string]string) (int, string, string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"senderId": senderID, "value": value, "properties": props})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.url+"/v1/messages", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ok struct {
		Messages []struct {
			CorrelationID string `json:"correlationId"`
		} `json:"messages"`
	}
	if resp.StatusCode/100 == 2 && (json.Unmarshal(b, &ok) != nil || len(ok.Messages) != 1) {
		t.Fatalf("2xx without one correlationId: %s", b)
	}
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, ok.Messages[0].CorrelationID, string(b)
	}
	return resp.StatusCode, "", string(b)
}

// largestValue is the longest ASCII value of a message from senderID with props whose event, in
// mode, fits limit by the API's measure (sink.EventBytes plus sink.FramingAllowance), counting
// the longest receivedAt the envelope can carry (nine digits of nanoseconds): the largest message
// the API accepts, give or take the digits of its receivedAt.
func largestValue(t *testing.T, mode sink.BodyMode, senderID string, props map[string]string, limit int) string {
	t.Helper()
	m := message.Message{ID: uuid.New(), SenderID: senderID, Properties: props, Stamp: "e2e",
		ReceivedAt: time.Date(2026, 12, 3, 21, 0, 0, 123456789, time.UTC)}
	base, err := sink.EventBytes(&m, mode)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Repeat("x", limit-sink.FramingAllowance-base)
}

// consumeUntil reads the topic until it holds a record whose correlationId header is id.
func consumeUntil(t *testing.T, c *kfake.Cluster, id string) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(limitTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		var found *kgo.Record
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "correlationId" && string(h.Value) == id {
					found = r
				}
			}
		})
		cancel()
		if found != nil {
			return found
		}
	}
	t.Fatalf("message %s did not reach topic %s within 15 s", id, limitTopic)
	return nil
}

// TestKafkaTopicLimitsTheAPI: with --sink kafka, the API's event limit is the topic's
// max.message.bytes (10,000 here, well under --max-event-bytes' 1,000,000): a message whose event
// would pass it gets 413 naming the limit and where it comes from, and the largest message
// accepted is delivered to the topic by the forwarder, not dead-lettered; in both body modes.
func TestKafkaTopicLimitsTheAPI(t *testing.T) {
	const limit = 10_000
	props := map[string]string{"unit": "kWh"}
	for _, mode := range []sink.BodyMode{sink.BodyEnvelope, sink.BodyRaw} {
		t.Run(string(mode), func(t *testing.T) {
			c := mustKafka(t, 0, limit)
			s := runServe(t, "--sink", "kafka", "--kafka-brokers", strings.Join(c.ListenAddrs(), ","),
				"--kafka-topic", limitTopic, "--body", string(mode))
			value := largestValue(t, mode, "plant-1", props, limit)
			// One byte more is refused before any 2xx (an envelope: eleven, more than the
			// digits the server's receivedAt may lack against largestValue's).
			over := 1
			if mode == sink.BodyEnvelope {
				over = 11
			}
			code, _, body := s.post(t, "plant-1", value+strings.Repeat("x", over), props)
			want := fmt.Sprintf("limit of %d (max.message.bytes of Kafka topic %s)", limit, limitTopic)
			if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "message-too-large") || !strings.Contains(body, want) {
				t.Fatalf("a message over the topic's limit: %d %s; want 413 message-too-large naming %q", code, body, want)
			}
			code, id, body := s.post(t, "plant-1", value, props)
			if code != http.StatusOK {
				t.Fatalf("the largest message within the topic's limit: %d %s, want 200", code, body)
			}
			rec := consumeUntil(t, c, id)
			t.Logf("%s: value of %d bytes accepted and delivered as a record of %d bytes (key, value, headers); %d bytes over refused",
				mode, len(value), len(rec.Key)+len(rec.Value)+headerBytes(rec), len(value)+over)
			if dead, _ := os.ReadDir(filepath.Join(s.spoolDir, "dead")); len(dead) != 0 {
				t.Fatalf("dead/ holds %d files, want none\n%s", len(dead), s.logs)
			}
			if !strings.Contains(s.logs.String(), "event limit from the sink") {
				t.Errorf("the log does not say where the limit came from:\n%s", s.logs)
			}
		})
	}
}

func headerBytes(r *kgo.Record) int {
	n := 0
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// TestAPIRoleAsksTheBroker: an API replica without a forwarder (--role api) asks the brokers
// for the topic's limit itself, since only the API can refuse before its 2xx.
func TestAPIRoleAsksTheBroker(t *testing.T) {
	c := mustKafka(t, 0, 10_000)
	s := runServe(t, "--role", "api", "--sink", "kafka", "--kafka-brokers", strings.Join(c.ListenAddrs(), ","),
		"--kafka-topic", limitTopic)
	code, _, body := s.post(t, "plant-1", strings.Repeat("x", 10_000), nil)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "(max.message.bytes of Kafka topic "+limitTopic+")") {
		t.Fatalf("role api, a message over the topic's limit: %d %s; want 413 naming the topic's max.message.bytes", code, body)
	}
	if code, _, body := s.post(t, "plant-1", strings.Repeat("x", 5_000), nil); code != http.StatusOK {
		t.Fatalf("role api, a message within the limit: %d %s, want 200", code, body)
	}
}

// TestKafkaUnreachableAtStart: a broker that cannot be reached at start does not stop serve:
// it starts (within eventLimitStartWait), logs that it uses --max-event-bytes, and the API takes
// what that allows. With role api alone the same holds: it asks the brokers itself.
func TestKafkaUnreachableAtStart(t *testing.T) {
	for _, role := range []string{"all", "api"} {
		t.Run(role, func(t *testing.T) {
			addr := sinktest.RefusedAddr(t)
			began := time.Now()
			s := runServe(t, "--role", role, "--sink", "kafka", "--kafka-brokers", addr, "--kafka-topic", limitTopic,
				"--max-event-bytes", "20000")
			if took := time.Since(began); took > eventLimitStartWait+5*time.Second {
				t.Errorf("serve took %v to listen, want about eventLimitStartWait (%v) at most", took, eventLimitStartWait)
			}
			if !strings.Contains(s.logs.String(), "cannot read the sink's event limit at start") ||
				!strings.Contains(s.logs.String(), "connection refused") {
				t.Errorf("the log does not say the limit fell back, and why:\n%s", s.logs)
			}
			value := strings.Repeat("x", 15_000) // over a 10,000 topic, under --max-event-bytes
			if code, _, body := s.post(t, "plant-1", value, nil); code != http.StatusOK {
				t.Fatalf("a 15,000-byte message under --max-event-bytes 20000: %d %s, want 200", code, body)
			}
			code, _, body := s.post(t, "plant-1", value+strings.Repeat("x", 5000), nil)
			if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "limit of 20000 (--max-event-bytes)") {
				t.Fatalf("a message over --max-event-bytes: %d %s, want 413 naming --max-event-bytes", code, body)
			}
		})
	}
}

// TestEventLimitLearnedOnceReachable: serve's watch keeps --max-event-bytes while the broker
// cannot be reached, asks again, and takes the topic's limit once it answers; a flag below the
// topic's wins.
func TestEventLimitLearnedOnceReachable(t *testing.T) {
	addr := sinktest.RefusedAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	ks, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: limitTopic,
		Options: []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })}})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	type set struct {
		n      int
		source string
	}
	sets := make(chan set, 10)
	logs := &logbuf.Buffer{}
	w := newEventLimitWatch(ks, 1_000_000, func(n int, source string) { sets <- set{n, source} }, slog.New(slog.NewTextHandler(logs, nil)))
	w.retry = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	w.ask(ctx)
	cancel()
	if len(sets) != 0 || !strings.Contains(logs.String(), "cannot read the sink's event limit at start") {
		t.Fatalf("broker down: %d limits set, log %q; want none and the fallback logged", len(sets), logs)
	}
	mustKafka(t, port, 10_000)
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	go func() { _ = w.Run(rctx) }()
	select {
	case got := <-sets:
		if got.n != 10_000 || got.source != "max.message.bytes of Kafka topic "+limitTopic {
			t.Fatalf("limit set to %d (%s), want 10000 from the topic", got.n, got.source)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the topic's limit was not learned within 15 s of the broker's start\n%s", logs)
	}
	rcancel()

	low := newEventLimitWatch(ks, 4000, func(n int, source string) { sets <- set{n, source} }, slog.New(slog.DiscardHandler))
	low.start(context.Background())
	if got := <-sets; got.n != 4000 || got.source != "--max-event-bytes" {
		t.Fatalf("flag 4000 under the topic's 10000: limit %d (%s), want 4000 from --max-event-bytes", got.n, got.source)
	}
}
