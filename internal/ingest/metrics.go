package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics are the message API's own Prometheus series (the router counts requests, the guard
// refusals, the spool its commits). With a nil Registerer they exist but are registered nowhere,
// so the handlers never check.
type metrics struct {
	accepted    prometheus.Counter
	rateLimited prometheus.Counter
	busy        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_ingest_messages_accepted_total",
			Help: "Messages made durable in the spool and acknowledged with a 2xx.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_ingest_rate_limited_messages_total",
			Help: "Messages refused with 429 because their client was over --rate-limit.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_ingest_busy_rejections_total",
			Help: "Requests refused with 503 because --max-inflight-bytes of request bodies were being read and decoded already.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.accepted, m.rateLimited, m.busy} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
