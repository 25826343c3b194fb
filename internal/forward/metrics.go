package forward

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the forwarder's Prometheus collectors. They exist (and count) even when no
// Registerer was given; they are then simply not exported.
type metrics struct {
	delivered    prometheus.Counter
	retried      prometheus.Counter
	throttled    prometheus.Counter
	deadLettered prometheus.Counter
	lostClaims   prometheus.Counter
	sendSeconds  prometheus.Histogram
	sendTimeouts prometheus.Counter
	batchSize    prometheus.Histogram
	breaker      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_delivered_total",
			Help: "Messages the sink acknowledged as delivered.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_retried_total",
			Help: "Messages that failed transiently and were sent again or returned to the spool.",
		}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_throttled_total",
			Help: "Messages the sink asked to send later (Event Hubs server-busy, a quota; a Kafka broker's throttle that outlasted the send): sent again after its hint, without opening the breaker.",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_dead_lettered_total",
			Help: "Messages the sink refused permanently, moved to dead/ with the sink's reason.",
		}),
		lostClaims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_lost_claims_total",
			Help: "Claims found taken over (lease expired): their messages may be delivered twice.",
		}),
		sendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridgehead_forward_send_duration_seconds",
			Help:    "Duration of one sink Send (one batch) that ended before its deadline; sends cut off by the deadline are counted in bridgehead_forward_send_timeouts_total instead.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms .. ~65 s
		}),
		sendTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_forward_send_timeouts_total",
			Help: "Sink Sends cut off by their deadline (the send timeout, or the claim's lease): not counted as send latency.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridgehead_forward_batch_size_messages",
			Help:    "Messages per sink Send.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridgehead_forward_breaker_state",
			Help: "Circuit breaker state: 0 closed (sending), 1 half-open (probing), 2 open (not sending).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.delivered, m.retried, m.throttled, m.deadLettered, m.lostClaims,
		m.sendSeconds, m.sendTimeouts, m.batchSize, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register forward metrics: %w", err)
		}
	}
	return m, nil
}
