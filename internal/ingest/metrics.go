package ingest

import (
	"strconv"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus series. With a nil Registerer they exist but are registered
// nowhere, so the handlers never check.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accepted prometheus.Counter
	commit   *prometheus.HistogramVec

	authFailures *prometheus.CounterVec
	rateLimited  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, sp Spool) (*metrics, error) {
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
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridgehead_spool_commit_duration_seconds",
			Help:    "Time from handing messages to the spool until they were durable (or failed), by result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"result"}),
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
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.accepted, m.commit, m.authFailures, m.rateLimited, &spoolCollector{sp: sp}} {
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

func (m *metrics) observeCommit(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.commit.WithLabelValues(result).Observe(d.Seconds())
}

// spoolCollector reports the spool's content as of its last scan (every second by default).
type spoolCollector struct{ sp Spool }

var (
	descSegments = prometheus.NewDesc("bridgehead_spool_segments", "Segments in the spool by state.", []string{"state"}, nil)
	descMessages = prometheus.NewDesc("bridgehead_spool_messages", "Messages in the spool by state.", []string{"state"}, nil)
	descBytes    = prometheus.NewDesc("bridgehead_spool_bytes", "Bytes in the spool by state.", []string{"state"}, nil)
	descOldest   = prometheus.NewDesc("bridgehead_spool_oldest_undelivered_age_seconds", "Age of the oldest undelivered (open, ready or claimed) segment.", nil, nil)

	descCommits       = prometheus.NewDesc("bridgehead_spool_commits_total", "Group commits this process made (one write and one fdatasync of its open segment each).", nil, nil)
	descCommittedMsgs = prometheus.NewDesc("bridgehead_spool_committed_messages_total", "Messages in the commits this process made: divided by commits, the messages sharing an fdatasync.", nil, nil)
	descCommitErrors  = prometheus.NewDesc("bridgehead_spool_commit_errors_total", "Commits of this process that failed (their callers got an error).", nil, nil)
	descSeals         = prometheus.NewDesc("bridgehead_spool_seals_total", "Open segments this process sealed into ready/.", nil, nil)
	descRecovered     = prometheus.NewDesc("bridgehead_spool_recovered_segments_total", "Open segments of dead (or fenced) writers this process recovered into ready/.", nil, nil)
	descRecoveredMsgs = prometheus.NewDesc("bridgehead_spool_recovered_messages_total", "Messages in the open segments this process recovered.", nil, nil)
	descSkew          = prometheus.NewDesc("bridgehead_spool_clock_skew_seconds", "Clock skew between this host and the spool's file server, measured at the last heartbeat; past the allowance, appends are refused.", nil, nil)
)

// commitCounter is what a spool that counts its commits and measures its clock skew offers
// (spool.Spool does).
type commitCounter interface {
	Counters() spool.Counters
	Skew() time.Duration
}

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSegments
	ch <- descMessages
	ch <- descBytes
	ch <- descOldest
	ch <- descCommits
	ch <- descCommittedMsgs
	ch <- descCommitErrors
	ch <- descSeals
	ch <- descRecovered
	ch <- descRecoveredMsgs
	ch <- descSkew
}

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	if cc, ok := c.sp.(commitCounter); ok {
		n := cc.Counters()
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(n.Commits))
		ch <- prometheus.MustNewConstMetric(descCommittedMsgs, prometheus.CounterValue, float64(n.Messages))
		ch <- prometheus.MustNewConstMetric(descCommitErrors, prometheus.CounterValue, float64(n.Errors))
		ch <- prometheus.MustNewConstMetric(descSeals, prometheus.CounterValue, float64(n.Seals))
		ch <- prometheus.MustNewConstMetric(descRecovered, prometheus.CounterValue, float64(n.Recovered))
		ch <- prometheus.MustNewConstMetric(descRecoveredMsgs, prometheus.CounterValue, float64(n.RecoveredMessages))
		ch <- prometheus.MustNewConstMetric(descSkew, prometheus.GaugeValue, cc.Skew().Seconds())
	}
	st := c.sp.LastStats()
	for _, s := range []struct {
		state string
		st    spool.StateStats
	}{{"open", st.Open}, {"recovering", st.Recovering}, {"ready", st.Ready}, {"claimed", st.Claimed}, {"dead", st.Dead}, {"quarantine", st.Quarantine}} {
		ch <- prometheus.MustNewConstMetric(descSegments, prometheus.GaugeValue, float64(s.st.Segments), s.state)
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(s.st.Messages), s.state)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.st.Bytes), s.state)
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, st.OldestAgeSeconds)
}
