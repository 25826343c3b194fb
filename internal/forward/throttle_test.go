package forward_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
)

// TestThrottlingIsNotAnOutage: a sink that asks to slow down (Event Hubs server-busy) for a
// long while is waited out at its hint: the breaker never opens, the claim's attempts are not
// used up (with two attempts a segment would otherwise be dead-lettered long before), nothing is
// lost, and delivery resumes at the first send after the throttle lifts.
func TestThrottlingIsNotAnOutage(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{MaxAttempts: 2})
	all := fill(t, sp, 3, 5, 16)
	const throttledSends = 40
	var sends atomic.Int64
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 5}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		if sends.Add(1) <= throttledSends {
			return sink.All(len(b), sink.Result{Status: sink.Throttled, Err: errors.New("com.microsoft:server-busy"), RetryAfter: 5 * time.Millisecond})
		}
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	breakerOpened := watchBreaker(t, reg)
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 2, RetriesPerClaim: 1,
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond,
		Breaker: forward.BreakerConfig{FailureThreshold: 2}})
	eventually(t, 20*time.Second, "every message delivered after the throttle", func() bool { return fs.all(all) })
	waitDrained(t, sp)
	if st := stats(t, sp); st.Dead.Segments != 0 {
		t.Fatalf("%d segments dead-lettered while only throttled", st.Dead.Segments)
	}
	if breakerOpened.Load() {
		t.Error("the breaker left closed while the sink was only throttling")
	}
	if got := gatherQuiet(reg)["bridgehead_forward_throttled_total"]; got < throttledSends {
		t.Errorf("throttled_total %v, want at least %d", got, throttledSends)
	}
	if got := gatherQuiet(reg)["bridgehead_forward_retried_total"]; got != 0 {
		t.Errorf("retried_total %v: throttled sends are not counted as failures", got)
	}
}

// compressed is cfg with the forwarder's default timings (send timeout, backoff, lease margin,
// hold, probe interval) divided by k: time compressed k-fold.
func compressed(cfg forward.Config, k time.Duration) forward.Config {
	cfg.SendTimeout = forward.DefaultSendTimeout / k
	cfg.RetryInitialDelay = forward.DefaultRetryInitialDelay / k
	cfg.RetryMaxDelay = forward.DefaultRetryMaxDelay / k
	cfg.LeaseMargin = forward.DefaultLeaseMargin / k
	cfg.MaxHold = forward.DefaultMaxHold / k
	cfg.Breaker.ProbeInterval = forward.DefaultProbeInterval / k
	return cfg
}

// arriveFor appends a segment of 5 messages to sp every gap for d, as traffic that keeps
// arriving, and returns them.
func arriveFor(t *testing.T, sp *spool.Spool, d, gap time.Duration) []message.Message {
	var all []message.Message
	for began := time.Now(); time.Since(began) < d; time.Sleep(gap) {
		all = append(all, fill(t, sp, 1, 5, 64)...)
	}
	return all
}

// watchBreaker samples the forwarder's breaker on reg every 2 ms until the test ends, and
// reports whether it ever left closed.
func watchBreaker(t *testing.T, reg *prometheus.Registry) *atomic.Bool {
	var left atomic.Bool
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				if gatherQuiet(reg)["bridgehead_forward_breaker_state"] != 0 {
					left.Store(true)
				}
			}
		}
	}()
	return &left
}

// gatherQuiet is gather without a test to fail: for a sampling goroutine.
func gatherQuiet(reg *prometheus.Registry) map[string]float64 {
	mfs, err := reg.Gather()
	out := map[string]float64{}
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}
