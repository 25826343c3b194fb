package forward

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// metrics are the forwarder's Prometheus collectors. They exist (and count) even when no
// Registerer was given; they are then simply not exported.
type metrics struct {
	// delivered counts delivered messages by priority (0-9: bounded by itself), and
	// deliveredTotal all of them, for Status.
	delivered      [message.MaxPriority + 1]prometheus.Counter
	deliveredTotal atomic.Uint64
	retried        prometheus.Counter
	throttled      prometheus.Counter
	deadLettered   prometheus.Counter
	lostClaims     prometheus.Counter
	sendSeconds    prometheus.Histogram
	sendTimeouts   prometheus.Counter
	batchSize      prometheus.Histogram
	breaker        prometheus.Gauge
	// expired counts expired messages dead-lettered, by sender (expiredSenders bounds the
	// label).
	expired        *prometheus.CounterVec
	expiredTotal   atomic.Uint64 // the sum of expired's series, for Status
	expiredSenders senderLabels
}

// countDelivered counts n messages of priority prio delivered.
func (m *metrics) countDelivered(prio uint8, n int) {
	if n == 0 {
		return
	}
	m.delivered[min(prio, message.MaxPriority)].Add(float64(n))
	m.deliveredTotal.Add(uint64(n))
}

// maxSenderLabels bounds the sender label of bridgehead_forward_expired_messages_total: the
// first this many senderIds a process sees have their own series, the rest share otherSender.
// senderIds are the clients' to choose (a principal's glob such as "plant-*" admits any
// number), so an unbounded label would let clients grow every scrape without limit.
const maxSenderLabels = 100

// otherSender is the sender label past maxSenderLabels; no senderId can be "(other)".
const otherSender = "(other)"

// senderLabels gives senderIds their label value, at most maxSenderLabels distinct ones. Its
// set is guarded by mu: the workers count concurrently.
type senderLabels struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (l *senderLabels) label(sender string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[sender] {
		return sender
	}
	if len(l.seen) >= maxSenderLabels {
		return otherSender
	}
	if l.seen == nil {
		l.seen = make(map[string]bool)
	}
	l.seen[sender] = true
	return sender
}

// countExpired counts msgs, all expired, by sender.
func (m *metrics) countExpired(msgs []message.Message) {
	by := make(map[string]int)
	for i := range msgs {
		by[msgs[i].SenderID]++
	}
	m.expiredTotal.Add(uint64(len(msgs)))
	for sender, n := range by {
		m.expired.WithLabelValues(m.expiredSenders.label(sender)).Add(float64(n))
	}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridgehead_forward_expired_messages_total",
			Help: "Messages found expired before they were sent (their ttl ran out), dead-lettered with reason expired instead. Label sender: the senderId, for the first 100 a process sees, then (other).",
		}, []string{"sender"}),
	}
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridgehead_forward_delivered_total",
		Help: "Messages the sink acknowledged as delivered, by priority (0 highest … 9 lowest; every priority always present).",
	}, []string{"priority"})
	for p := range m.delivered {
		m.delivered[p] = delivered.WithLabelValues(strconv.Itoa(p))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{delivered, m.retried, m.throttled, m.deadLettered, m.lostClaims,
		m.sendSeconds, m.sendTimeouts, m.batchSize, m.breaker, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register forward metrics: %w", err)
		}
	}
	return m, nil
}
