package forward_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// fillAt appends segments of perSeg messages at priority p, one segment each.
func fillAt(t *testing.T, sp *spool.Spool, p uint8, segments, perSeg int) []message.Message {
	t.Helper()
	var all []message.Message
	for range segments {
		seg := make([]message.Message, perSeg)
		for i := range seg {
			seg[i] = message.Message{ID: uuid.New(), SenderID: fmt.Sprintf("p%d", p), Value: "v", ReceivedAt: time.Now().UTC(), Priority: p}
		}
		if err := sp.Append(context.Background(), seg...); err != nil {
			t.Fatal(err)
		}
		if err := sp.Seal(context.Background()); err != nil {
			t.Fatal(err)
		}
		all = append(all, seg...)
	}
	return all
}

// TestAlarmsFirstAfterAnOutage: the forwarder holds a telemetry claim through an outage while
// alarms queue behind it; when the sink returns, the held claim makes way, and every alarm is
// delivered before any telemetry that was waiting.
func TestAlarmsFirstAfterAnOutage(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	telemetry := fillAt(t, sp, message.DefaultPriority, 5, 10)
	var up atomic.Bool
	var mu sync.Mutex
	var order []uint8 // the priority of each message delivered, in delivery order
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 10}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		if !up.Load() {
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("dial tcp: connection refused")})
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b {
			order = append(order, m.Priority)
		}
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 1,
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 10 * time.Millisecond,
		Breaker: forward.BreakerConfig{FailureThreshold: 2, ProbeInterval: 100 * time.Millisecond}})
	eventually(t, 5*time.Second, "breaker open", func() bool { return gather(t, reg)["bridgehead_forward_breaker_state"] == 2 })
	if st := stats(t, sp); st.Claimed.Segments != 1 {
		t.Fatalf("%d claims held through the outage, want the one worker's", st.Claimed.Segments)
	}
	alarms := fillAt(t, sp, 0, 2, 3)
	up.Store(true)
	eventually(t, 10*time.Second, "everything delivered", func() bool { return fs.all(telemetry) && fs.all(alarms) })
	mu.Lock()
	defer mu.Unlock()
	for i, p := range order[:len(alarms)] {
		if p != 0 {
			t.Fatalf("delivery %d was priority %d before every alarm was delivered (order %v)", i, p, order)
		}
	}
}
