package forward_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// appendSegment appends msgs as one ready segment.
func appendSegment(t *testing.T, sp *spool.Spool, msgs ...message.Message) {
	t.Helper()
	if err := sp.Append(context.Background(), msgs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := sp.Seal(context.Background()); err != nil {
		t.Fatalf("Seal: %v", err)
	}
}

func msgExpiring(sender string, priority uint8, expires time.Time) message.Message {
	return message.Message{ID: uuid.New(), SenderID: sender, Value: "v", ReceivedAt: time.Now().UTC(), Stamp: "test",
		Priority: priority, ExpiresAt: expires}
}

// series returns the value of each series of the metric name by the value of its label.
func series(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestExpiredDeadLetteredNeverSent: the expired messages of a segment are not sent but
// dead-lettered with reason "expired: …" saying how many and when their ttl ran out, counted by
// sender; the rest of the segment is delivered and counted by priority.
func TestExpiredDeadLetteredNeverSent(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	ranOut := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	live := []message.Message{
		msgExpiring("plant-a", 0, time.Now().Add(time.Hour)),
		msgExpiring("plant-a", 4, time.Time{}),
		msgExpiring("plant-b", 4, time.Time{}),
	}
	expired := []message.Message{
		msgExpiring("plant-a", 4, ranOut),
		msgExpiring("plant-a", 4, ranOut),
		msgExpiring("plant-b", 0, ranOut),
	}
	appendSegment(t, sp, live[0], expired[0], live[1], expired[1], expired[2], live[2])
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 2}}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg})
	eventually(t, 10*time.Second, "the live messages delivered", func() bool { return fs.all(live) })
	// The spool keeps each priority in its own segments: one dead segment a priority.
	got := map[uuid.UUID]bool{}
	for _, e := range waitDead(t, sp, 5*time.Second, len(expired)) {
		ms := deadMessages(t, sp, e)
		noun := "messages"
		if len(ms) == 1 {
			noun = "message"
		}
		_, reason := spool.SplitReason(deadReason(t, sp, e))
		if want := fmt.Sprintf("expired: %d %s, ttl ran out at %s", len(ms), noun, ranOut.Format(time.RFC3339)); reason != want {
			t.Errorf("reason %q, want %q", reason, want)
		}
		for _, m := range ms {
			got[m.ID] = true
		}
	}
	// A segment's dead letter is visible before its worker counts it: wait for both counts.
	want := map[string]float64{"plant-a": 2, "plant-b": 1}
	eventually(t, 5*time.Second, fmt.Sprintf("expired counted by sender as %v", want), func() bool {
		return maps.Equal(series(t, reg, "bridgehead_forward_expired_messages_total", "sender"), want)
	})
	// The sink holds the live messages before the forwarder counts their acks.
	eventually(t, 5*time.Second, "delivered counted by priority as 0:1 4:2, every priority present", func() bool {
		byPrio := series(t, reg, "bridgehead_forward_delivered_total", "priority")
		return byPrio["0"] == 1 && byPrio["4"] == 2 && len(byPrio) == message.MaxPriority+1
	})
	if got := gather(t, reg)["bridgehead_forward_dead_lettered_total"]; got != 0 {
		t.Errorf("dead_lettered_total %v, want 0: it counts the sink's refusals, not expiry", got)
	}
}

// TestAllExpiredSegmentCostsNoSend: a segment whose messages have all expired is dead-lettered
// without a Send, even while the sink is down.
func TestAllExpiredSegmentCostsNoSend(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	at := time.Now().Add(-time.Second)
	appendSegment(t, sp, msgExpiring("a", 4, at), msgExpiring("a", 4, at.Add(-time.Hour)))
	fs := &fakeSink{send: func(ctx context.Context, b []message.Message) []sink.Result {
		return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("down")})
	}}
	reg := prometheus.NewRegistry()
	f, err := forward.New(forward.Config{Spool: sp, Sink: fs, Registerer: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	dead := waitDead(t, sp, 5*time.Second, 2)
	_, reason := spool.SplitReason(deadReason(t, sp, dead[0]))
	want := fmt.Sprintf("expired: 2 messages, ttl ran out from %s to %s", at.Add(-time.Hour).UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	if reason != want {
		t.Errorf("reason %q, want %q", reason, want)
	}
	if n := fs.calls.Load(); n != 0 {
		t.Errorf("%d sends, want none", n)
	}
	eventually(t, 5*time.Second, "status counts them", func() bool { return f.Status().ExpiredTotal == 2 })
}

// TestExpiresWhileRetried: a message whose ttl runs out while the sink fails transiently is
// dead-lettered as expired at the next round, not sent when the sink is back.
func TestExpiresWhileRetried(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	soon := msgExpiring("a", 4, time.Now().Add(300*time.Millisecond))
	later := msgExpiring("a", 4, time.Now().Add(time.Hour))
	appendSegment(t, sp, soon, later)
	upAt := time.Now().Add(600 * time.Millisecond)
	fs := &fakeSink{send: func(ctx context.Context, b []message.Message) []sink.Result {
		if time.Now().Before(upAt) {
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("down")})
		}
		return make([]sink.Result, len(b))
	}}
	start(t, forward.Config{Spool: sp, Sink: fs, Concurrency: 1, RetriesPerClaim: 1000,
		RetryInitialDelay: 20 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond,
		Breaker: forward.BreakerConfig{FailureThreshold: 1000}})
	eventually(t, 10*time.Second, "the live message delivered", func() bool { return fs.count(later.ID) == 1 })
	dead := waitDead(t, sp, 5*time.Second, 1)
	if ms := deadMessages(t, sp, dead[0]); len(ms) != 1 || ms[0].ID != soon.ID || fs.count(soon.ID) != 0 {
		t.Fatalf("dead %v, expired message sent %d times; want it dead, never sent", ms, fs.count(soon.ID))
	}
	if _, reason := spool.SplitReason(deadReason(t, sp, dead[0])); !strings.HasPrefix(reason, "expired: 1 message, ttl ran out at ") {
		t.Errorf("reason %q, want expired", reason)
	}
}

// TestExpiredAndRefusedShareADeadSegment: when a segment has both the sink's refusals and
// expired messages, one dead segment holds both, and its reason leads with the sink's words,
// so that "expired:" at the start means every message in it expired.
func TestExpiredAndRefusedShareADeadSegment(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	bad := msgExpiring("a", 4, time.Time{})
	old := msgExpiring("a", 4, time.Now().Add(-time.Minute))
	good := msgExpiring("a", 4, time.Time{})
	appendSegment(t, sp, bad, old, good)
	var refused atomic.Int64
	fs := &fakeSink{send: func(ctx context.Context, b []message.Message) []sink.Result {
		res := make([]sink.Result, len(b))
		for i := range b {
			if b[i].ID == bad.ID {
				refused.Add(1)
				res[i] = sink.Result{Status: sink.Permanent, Err: errors.New("MESSAGE_TOO_LARGE")}
			}
		}
		return res
	}}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg})
	dead := waitDead(t, sp, 5*time.Second, 2)
	_, reason := spool.SplitReason(deadReason(t, sp, dead[0]))
	if !strings.HasPrefix(reason, "1 message(s) refused permanently by the sink: "+bad.ID.String()) ||
		!strings.Contains(reason, "; and expired: 1 message, ttl ran out at ") {
		t.Errorf("reason %q, want the refusal first, then the expiry", reason)
	}
	if fs.count(good.ID) != 1 || fs.count(old.ID) != 0 || refused.Load() != 1 {
		t.Errorf("delivered good %d, old %d times, refused %d; want 1, 0, 1", fs.count(good.ID), fs.count(old.ID), refused.Load())
	}
	eventually(t, 5*time.Second, "counted", func() bool {
		g := gather(t, reg)
		return g["bridgehead_forward_dead_lettered_total"] == 1 && g["bridgehead_forward_expired_messages_total"] == 1
	})
}
