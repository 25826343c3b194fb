package ingest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus series. With a nil Registerer they exist but are registered
// nowhere, so the handlers never check.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accepted prometheus.Counter

	authFailures *prometheus.CounterVec
	rateLimited  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridgehead_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridgehead_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_ingest_messages_accepted_total",
			Help: "Messages made durable in the spool and acknowledged with a 2xx.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridgehead_http_auth_failures_total",
			Help: "Requests refused by authentication or authorization, by reason: missing (401), invalid_key (401), forbidden (403).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_ingest_rate_limited_messages_total",
			Help: "Messages refused with 429 because their client was over --rate-limit.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.accepted, m.authFailures, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

