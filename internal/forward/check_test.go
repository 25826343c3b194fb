package forward_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// A failed sink check shows in Status at once, before any send: the breaker open with the cause
// as its last error. Once the sink answers, the probe closes the breaker and delivery resumes.
func TestReportCheckFailureOpensBreakerBeforeTraffic(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	fs := &fakeSink{}
	f, err := forward.New(forward.Config{Spool: sp, Sink: fs, Logger: testLogger(t),
		Breaker: forward.BreakerConfig{ProbeInterval: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("dial tcp 127.0.0.1:9: connect: connection refused")
	f.ReportCheck(cause)
	st := f.Status()
	if st.Breaker != "open" || !strings.Contains(st.LastError, cause.Error()) || st.LastErrorAt == nil {
		t.Fatalf("status after a failed check: breaker %q, last error %q; want open with %q", st.Breaker, st.LastError, cause)
	}
	if st.SinkCheck == nil || st.SinkCheck.OK || st.SinkCheck.Error != cause.Error() || st.SinkCheck.At.IsZero() {
		t.Fatalf("sinkCheck %+v, want failed with %q", st.SinkCheck, cause)
	}
	if n := fs.calls.Load(); n != 0 {
		t.Fatalf("%d sends before Run, want none", n)
	}

	all := fill(t, sp, 2, 5, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "all delivered once the probe goes through", func() bool { return fs.all(all) })
	if st := f.Status(); st.Breaker != "closed" {
		t.Errorf("breaker %q after deliveries, want closed", st.Breaker)
	}
}

func TestReportCheckSuccess(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	f, err := forward.New(forward.Config{Spool: sp, Sink: &fakeSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.SinkCheck != nil {
		t.Fatalf("sinkCheck %+v before any check, want none", st.SinkCheck)
	}
	f.ReportCheck(nil)
	st := f.Status()
	if st.Breaker != "closed" || st.LastError != "" || st.SinkCheck == nil || !st.SinkCheck.OK || st.SinkCheck.Error != "" {
		t.Fatalf("status after a passed check: %+v (check %+v), want closed, no error, check ok", st, st.SinkCheck)
	}
}

// A send cut off by its deadline lasts as long as the timeout: it is counted apart, not as
// latency, so p50/p99 stay the sink's real latency.
func TestSendTimeoutsCountedApartFromLatency(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 1, 3, 16)
	fs := &fakeSink{}
	var calls int
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		calls++ // Concurrency 1: one send at a time
		if calls <= 2 {
			<-ctx.Done() // a sink that never answers
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: ctx.Err()})
		}
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 1, SendTimeout: 100 * time.Millisecond,
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond})
	eventually(t, 10*time.Second, "delivered after two timeouts", func() bool { return fs.all(all) })
	m := gather(t, reg)
	if got := m["bridgehead_forward_send_timeouts_total"]; got != 2 {
		t.Errorf("send_timeouts_total %v, want 2", got)
	}
	if got, want := m["bridgehead_forward_send_duration_seconds"], float64(fs.calls.Load()-2); got != want {
		t.Errorf("send_duration_seconds has %v observations, want %v (the sends that answered)", got, want)
	}
}

// A check that fails after deliveries went through says nothing the deliveries do not contradict:
// it is shown, but the breaker stays closed.
func TestReportCheckAfterDeliveriesLeavesBreakerClosed(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 1, 3, 16)
	fs := &fakeSink{}
	f, err := forward.New(forward.Config{Spool: sp, Sink: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "delivered", func() bool { return f.Status().DeliveredTotal == uint64(len(all)) })
	f.ReportCheck(errors.New("context deadline exceeded"))
	st := f.Status()
	if st.Breaker != "closed" || st.SinkCheck == nil || st.SinkCheck.OK {
		t.Fatalf("breaker %q, check %+v: want closed, and the failed check shown", st.Breaker, st.SinkCheck)
	}
}
