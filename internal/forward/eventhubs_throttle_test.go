package forward_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// TestEventHubsThrottlingIsNotAnOutage: the AMQP test peer answers every send with
// com.microsoft:server-busy for 10 minutes of simulated time while messages keep arriving. The
// breaker never leaves closed, no segment is dead-lettered (two attempts would dead-letter
// within seconds if throttled sends counted as failures), nothing is lost, and once the peer
// takes events again the backlog is delivered within one hint.
//
// Time is compressed 60-fold as in TestKafkaThrottlingIsNotAnOutage: the peer is busy for 10 s
// (10 minutes), the sink's server-busy wait is 4 s / 60, and the forwarder's backoff, probe
// interval, hold and claim lease are their defaults / 60. The send timeout stays 1 s: a busy
// answer comes after the SDK's own two retries (50 + 100 ms), which are not compressed.
func TestEventHubsThrottlingIsNotAnOutage(t *testing.T) {
	const (
		compress  = 60
		period    = 10 * time.Minute / compress
		hint      = eventhubs.DefaultServerBusyWait / compress
		arriveGap = 100 * time.Millisecond
	)
	srv := amqptest.NewServer(t, amqptest.Options{})
	srv.RejectNext(1<<30, "com.microsoft:server-busy", "busy (amqptest)")
	ehs, err := eventhubs.New(context.Background(), eventhubs.Config{
		ConnectionString: srv.ConnectionString("hub"), Stamp: "cloud", ServerBusyWait: hint,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ehs.Close() })
	sp := mustOpenSpool(t, "", spool.Options{MaxAttempts: 2, Lease: spool.DefaultLease / compress})
	all := fill(t, sp, 4, 20, 64)
	reg := prometheus.NewRegistry()
	breakerLeftClosed := watchBreaker(t, reg)
	cfg := compressed(forward.Config{Spool: sp, Sink: ehs, Registerer: reg}, compress)
	cfg.SendTimeout = time.Second
	start(t, cfg)

	all = append(all, arriveFor(t, sp, period, arriveGap)...)
	busy := srv.Deliveries()
	srv.RejectNext(0, "", "")
	liftedAt := time.Now()
	read := func() []message.Message {
		var out []message.Message
		for _, e := range srv.Events() {
			if m, err := sinktest.FromEnvelope(e.Body); err == nil {
				out = append(out, m)
			}
		}
		return out
	}
	sinktest.WaitFor(t, read, all)
	drained := time.Since(liftedAt)
	waitDrained(t, sp)

	m := gatherQuiet(reg)
	t.Logf("%d sends refused busy over %v (%v simulated); %v messages throttled, %v delivered; backlog delivered %v after the peer took events again",
		busy, period, period*compress, m["bridgehead_forward_throttled_total"], m["bridgehead_forward_delivered_total"], drained)
	if breakerLeftClosed.Load() {
		t.Error("the breaker left closed while the peer was only busy")
	}
	if st := stats(t, sp); st.Dead.Segments != 0 {
		t.Errorf("%d segments dead-lettered while only throttled", st.Dead.Segments)
	}
	if m["bridgehead_forward_throttled_total"] == 0 || busy == 0 {
		t.Errorf("throttled_total %v after %d busy answers: the test did not exercise throttling", m["bridgehead_forward_throttled_total"], busy)
	}
	if got := m["bridgehead_forward_retried_total"]; got != 0 {
		t.Errorf("retried_total %v: busy answers were counted as failures", got)
	}
	if got := m["bridgehead_forward_delivered_total"]; got < float64(len(all)) {
		t.Errorf("delivered_total %v, want all %d", got, len(all))
	}
	// At once: the hint the last busy answer left, then a send or two.
	if limit := hint + 2*time.Second; drained > limit {
		t.Errorf("backlog delivered %v after the peer took events again, want within %v", drained, limit)
	}
}
