package spool

import (
	"strconv"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the spool's Prometheus series: its content as of the last scan, its capacity,
// this process's commit, seal and recovery counters, and how long Appends take. They exist
// without a Registerer (Append observes unconditionally) and are exported only with one.
type metrics struct {
	appendSeconds       *prometheus.HistogramVec
	appendOK, appendErr prometheus.Observer // its two series, resolved once: Append is the hot path
}

var (
	descSegments  = prometheus.NewDesc("bridgehead_spool_segments", "Segments in the spool by state, as of the last scan.", []string{"state"}, nil)
	descMessages  = prometheus.NewDesc("bridgehead_spool_messages", "Messages in the spool by state, as of the last scan (open segments count at their seal).", []string{"state"}, nil)
	descBytes     = prometheus.NewDesc("bridgehead_spool_bytes", "Bytes in the spool by state, as of the last scan.", []string{"state"}, nil)
	descOldest    = prometheus.NewDesc("bridgehead_spool_oldest_undelivered_age_seconds", "Age of the oldest undelivered (open, recovering, ready or claimed) segment; 0 when none.", nil, nil)
	descQueued    = prometheus.NewDesc("bridgehead_spool_queued_messages", "Messages waiting for delivery (ready or claimed) by priority (0 highest), as of the last scan.", []string{"priority"}, nil)
	descQueuedAge = prometheus.NewDesc("bridgehead_spool_queued_oldest_age_seconds", "Age of the oldest ready or claimed segment of each priority; 0 when none.", []string{"priority"}, nil)
	descUsed      = prometheus.NewDesc("bridgehead_spool_used_bytes", "Bytes the spool holds in every state, as counted against its capacity.", nil, nil)
	descCapacity  = prometheus.NewDesc("bridgehead_spool_capacity_bytes", "Bytes the spool may hold before appends are refused: the smaller of --spool-max-bytes and what the file system's free space above --spool-min-free-bytes allows. Absent while unknown.", nil, nil)
	descFree      = prometheus.NewDesc("bridgehead_spool_filesystem_free_bytes", "Free bytes on the spool's file system at the last scan. Absent while unknown.", nil, nil)

	descCommits       = prometheus.NewDesc("bridgehead_spool_commits_total", "Group commits this process made (one durable write of its open segment each).", nil, nil)
	descCommittedMsgs = prometheus.NewDesc("bridgehead_spool_committed_messages_total", "Messages in the commits this process made: divided by commits, the messages sharing a flush.", nil, nil)
	descCommitErrors  = prometheus.NewDesc("bridgehead_spool_commit_errors_total", "Commits of this process that failed (their callers got an error).", nil, nil)
	descSeals         = prometheus.NewDesc("bridgehead_spool_seals_total", "Open segments this process sealed into ready/.", nil, nil)
	descRecovered     = prometheus.NewDesc("bridgehead_spool_recovered_segments_total", "Open segments of dead (or fenced) writers this process recovered into ready/.", nil, nil)
	descRecoveredMsgs = prometheus.NewDesc("bridgehead_spool_recovered_messages_total", "Messages in the open segments this process recovered.", nil, nil)
	descSkew          = prometheus.NewDesc("bridgehead_spool_clock_skew_seconds", "Clock skew between this host and the spool's file server, measured at the last heartbeat; past the allowance, appends are refused.", nil, nil)
)

func newMetrics() *metrics {
	m := &metrics{
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridgehead_spool_commit_duration_seconds",
			Help:    "Time an Append took, from the caller handing its messages over until they were durable (or refused), by result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"result"}),
	}
	m.appendOK, m.appendErr = m.appendSeconds.WithLabelValues("ok"), m.appendSeconds.WithLabelValues("error")
	return m
}

func (m *metrics) observeAppend(d time.Duration, err error) {
	if err != nil {
		m.appendErr.Observe(d.Seconds())
		return
	}
	m.appendOK.Observe(d.Seconds())
}

// register exports the spool's series on reg.
func (s *Spool) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.appendSeconds, collector{s}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// collector reports the spool's state at each scrape from what the spool already keeps: the last
// scan's listing, the capacity figures and the counters. A scrape lists nothing.
type collector struct{ s *Spool }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSegments, descMessages, descBytes, descOldest, descQueued, descQueuedAge, descUsed, descCapacity, descFree,
		descCommits, descCommittedMsgs, descCommitErrors, descSeals, descRecovered, descRecoveredMsgs, descSkew} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	n := c.s.Counters()
	counter(descCommits, n.Commits)
	counter(descCommittedMsgs, n.Messages)
	counter(descCommitErrors, n.Errors)
	counter(descSeals, n.Seals)
	counter(descRecovered, n.Recovered)
	counter(descRecoveredMsgs, n.RecoveredMessages)
	gauge(descSkew, c.s.Skew().Seconds())

	st, used, capacity, free := c.s.capacity()
	for _, s := range []struct {
		state string
		st    StateStats
	}{{"open", st.Open}, {"recovering", st.Recovering}, {"ready", st.Ready}, {"claimed", st.Claimed}, {"dead", st.Dead}, {"quarantine", st.Quarantine}} {
		gauge(descSegments, float64(s.st.Segments), s.state)
		gauge(descMessages, float64(s.st.Messages), s.state)
		gauge(descBytes, float64(s.st.Bytes), s.state)
	}
	gauge(descOldest, st.OldestAgeSeconds)
	// Every priority, with or without messages: a series that comes and goes breaks rates and
	// alerts.
	var byPrio [message.MaxPriority + 1]PriorityStats
	for _, p := range st.Priorities {
		byPrio[p.Priority] = p
	}
	for p, ps := range byPrio {
		label := strconv.Itoa(p)
		gauge(descQueued, float64(ps.Messages), label)
		gauge(descQueuedAge, ps.OldestAgeSeconds, label)
	}
	gauge(descUsed, float64(used))
	if capacity >= 0 {
		gauge(descCapacity, float64(capacity))
	}
	if free >= 0 {
		gauge(descFree, float64(free))
	}
}

// capacity returns the last scan's listing, the bytes counted against the capacity, the
// capacity (-1 when neither a cap nor the free space is known) and the free bytes (-1 unknown).
func (s *Spool) capacity() (st Stats, used, capacity, free int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	capacity, _ = s.limitLocked()
	return s.lastStats, s.usedBytes, capacity, s.freeBytes
}
