package forward_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// TestKafkaThrottlingIsNotAnOutage: a Kafka broker throttles every produce for 10 minutes of
// simulated time while messages keep arriving. The breaker never leaves closed, no segment is
// dead-lettered (two attempts would dead-letter within seconds if throttled sends counted as
// failures), every message arrives, the throttles are counted, and once the throttle lifts the
// backlog is delivered within one throttle hint.
//
// Time is compressed 60-fold (one simulated minute is one second): the broker answers every
// produce with throttle_time_ms = 500 ms (a 30 s quota delay) for 10 s (10 minutes), so the hints
// sum to about 10 minutes of simulated time; the forwarder's timings are its defaults divided by
// 60 (send timeout 10 s → 167 ms, probe interval 5 s → 83 ms, backoff 100 ms–30 s → 2–500 ms,
// claim lease 30 s → 500 ms). Every throttle is longer than a send's deadline, as a 30 s quota
// delay is longer than the default 10 s send timeout: sends run out of time behind it.
func TestKafkaThrottlingIsNotAnOutage(t *testing.T) {
	const (
		compress  = 60
		period    = 10 * time.Minute / compress // simulated 10 minutes
		hint      = 30 * time.Second / compress // each throttled answer's throttle_time_ms
		arriveGap = 100 * time.Millisecond      // a new segment this often while throttled
	)
	sp := mustOpenSpool(t, "", spool.Options{MaxAttempts: 2, Lease: spool.DefaultLease / compress})
	all := fill(t, sp, 4, 20, 64)
	c := mustCluster(t)
	var lifted atomic.Bool
	throttled := sinktest.ThrottleProduce(t, c, func() time.Duration {
		if lifted.Load() {
			return 0
		}
		return hint
	})
	reg := prometheus.NewRegistry()
	ks := mustKafkaSink(t, c, kafka.Config{Registerer: reg})
	breakerLeftClosed := watchBreaker(t, reg)
	start(t, compressed(forward.Config{Spool: sp, Sink: ks, Registerer: reg}, compress))

	all = append(all, arriveFor(t, sp, period, arriveGap)...)
	// The last arrivals come as the throttle lifts: they and the backlog must go at once.
	last := fill(t, sp, 1, 5, 64)
	all = append(all, last...)
	lifted.Store(true)
	liftedAt := time.Now()
	read := consumed(t, c)
	sinktest.WaitFor(t, read, all)
	drained := time.Since(liftedAt)
	waitDrained(t, sp)

	m := gatherQuiet(reg)
	t.Logf("%d produce answers throttled, %v of throttle asked (%v simulated); %v forward_throttled messages, %v delivered; backlog delivered %v after the throttle lifted",
		throttled(), time.Duration(m["bridgehead_kafka_throttle_seconds_total"]*float64(time.Second)),
		time.Duration(m["bridgehead_kafka_throttle_seconds_total"]*compress*float64(time.Second)),
		m["bridgehead_forward_throttled_total"], m["bridgehead_forward_delivered_total"], drained)
	if breakerLeftClosed.Load() {
		t.Error("the breaker left closed while the broker was only throttling")
	}
	if st := stats(t, sp); st.Dead.Segments != 0 {
		t.Errorf("%d segments dead-lettered while only throttled", st.Dead.Segments)
	}
	if got := m["bridgehead_kafka_throttled_responses_total"]; got < float64(period/hint)/2 || int(got) > throttled() {
		t.Errorf("kafka_throttled_responses_total %v, want about %d (%d answers throttled)", got, period/hint, throttled())
	}
	if sim := m["bridgehead_kafka_throttle_seconds_total"] * compress; sim < (8 * time.Minute).Seconds() {
		t.Errorf("throttle asked %v s simulated, want about 10 minutes", sim)
	}
	if m["bridgehead_forward_throttled_total"] == 0 {
		t.Error("forward_throttled_total 0: no send ran out of time behind the throttle; the test did not exercise it")
	}
	if got := m["bridgehead_forward_retried_total"]; got != 0 {
		t.Errorf("forward_retried_total %v: sends slowed by a throttle were counted as failures", got)
	}
	// At once: what the last throttle had left (at most one hint), then a send or two.
	if limit := hint + 4*forward.DefaultSendTimeout/compress + 250*time.Millisecond; drained > limit {
		t.Errorf("backlog delivered %v after the throttle lifted, want within %v", drained, limit)
	}
	var missing []message.Message
	got := map[string]bool{}
	for _, m := range read() {
		got[m.ID.String()] = true
	}
	for _, m := range all {
		if !got[m.ID.String()] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d messages lost", len(missing))
	}
}
