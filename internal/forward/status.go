package forward

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Status is a snapshot of a forwarder for people: what /v1/status and the console show.
type Status struct {
	// Sink names the sink kind (Config.SinkName).
	Sink string `json:"sink,omitempty"`
	// DeliveredTotal, RetriedTotal and DeadLetteredTotal count messages since the process started.
	DeliveredTotal    uint64 `json:"deliveredTotal"`
	RetriedTotal      uint64 `json:"retriedTotal"`
	DeadLetteredTotal uint64 `json:"deadLetteredTotal"`
	// ExpiredTotal counts the messages found expired and dead-lettered instead of sent, since
	// the process started (not in DeadLetteredTotal, which counts the sink's refusals).
	ExpiredTotal uint64 `json:"expiredTotal"`
	// Breaker is "closed" (sending), "half-open" (probing) or "open" (not sending).
	Breaker string `json:"breaker"`
	// LastError is the last failed send's error, and LastErrorAt when it happened.
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
	// SendLatencySeconds holds the p50 and p99 of Send durations since the process started,
	// estimated from the histogram's buckets as Prometheus' histogram_quantile does; 0 before
	// the first send. Sends cut off by their deadline are not in it: see SendTimeoutsTotal.
	SendLatencySeconds Quantiles `json:"sendLatencySeconds"`
	// SendTimeoutsTotal counts the Sends cut off by their deadline since the process started.
	SendTimeoutsTotal uint64 `json:"sendTimeoutsTotal"`
	// SinkCheck is the outcome of the last check of the sink reported with ReportCheck (serve
	// checks at start); nil until one is.
	SinkCheck *CheckStatus `json:"sinkCheck,omitempty"`
}

// CheckStatus is the outcome of a sink check (sink.Checker): connect and fetch metadata.
type CheckStatus struct {
	// OK is true when the sink answered.
	OK bool `json:"ok"`
	// Error is why it did not, in the sink's words (the network error where there is one).
	Error string `json:"error,omitempty"`
	// At is when the check ended.
	At time.Time `json:"at"`
}

// ReportCheck records the outcome of a check of the sink made outside the forwarder (serve runs
// one at start, before any traffic): Status shows it at once, and a failure opens the breaker
// with err as its last error, as failed sends would (unless something was delivered already), so that a sink known to be unreachable
// reads "open" with the cause, not "closed, no error" until traffic fails. The breaker then
// probes the sink as usual and closes on the first batch that gets through. Safe to call from
// any goroutine.
func (f *Forwarder) ReportCheck(err error) {
	cs := &CheckStatus{OK: err == nil, At: f.cfg.Now()}
	if err != nil {
		cs.Error = err.Error()
		// A check that failed while sends got through (it took its whole timeout, say) is stale:
		// the sink works, and the deliveries prove it better than the check.
		if f.m.deliveredTotal.Load() == 0 {
			f.br.trip(fmt.Errorf("sink check: %w", err))
		}
	}
	f.check.Store(cs)
}

// Quantiles are latency quantiles in seconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Status returns the forwarder's current status. It is safe to call from any goroutine.
func (f *Forwarder) Status() Status {
	st := Status{
		Sink:              f.cfg.SinkName,
		DeliveredTotal:    f.m.deliveredTotal.Load(),
		RetriedTotal:      counterValue(f.m.retried),
		DeadLetteredTotal: counterValue(f.m.deadLettered),
		ExpiredTotal:      f.m.expiredTotal.Load(),
		Breaker:           f.br.state().String(),
		SendTimeoutsTotal: counterValue(f.m.sendTimeouts),
		SinkCheck:         f.check.Load(),
	}
	if at, err := f.br.last(); err != nil {
		st.LastError, st.LastErrorAt = err.Error(), &at
	}
	var m dto.Metric
	if f.m.sendSeconds.Write(&m) == nil && m.Histogram != nil {
		st.SendLatencySeconds = Quantiles{P50: quantile(0.5, m.Histogram), P99: quantile(0.99, m.Histogram)}
	}
	return st
}

func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c.Write(&m) != nil || m.Counter == nil {
		return 0
	}
	return uint64(m.Counter.GetValue())
}

// quantile estimates the q-quantile of h by linear interpolation within the bucket that holds
// it; an observation above the last bound counts as the last bound.
func quantile(q float64, h *dto.Histogram) float64 {
	total := h.GetSampleCount()
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), b.GetCumulativeCount()
		if float64(cum) >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-float64(below))/float64(cum-below)
		}
		lower, below = upper, cum
	}
	if math.IsInf(lower, 1) {
		return 0
	}
	return lower
}
