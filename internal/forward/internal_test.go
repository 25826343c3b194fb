package forward

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

func TestFullJitter(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		initial time.Duration
		max     time.Duration
		rand    float64
		want    []time.Duration
	}{
		{"top of the range doubles to the cap", 100 * ms, time.Second, 0.999999999,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}},
		{"half", 100 * ms, 30 * time.Second, 0.5,
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms}},
		{"bottom is zero: full jitter", 100 * ms, time.Second, 0, []time.Duration{0, 0, 0}},
		{"cap below initial", time.Second, 300 * ms, 0.999999999, []time.Duration{time.Second, 300 * ms, 300 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFullJitter(tc.initial, tc.max, func() float64 { return tc.rand })
			for i, want := range tc.want {
				got := b.NextBackOff()
				if d := got - want; d > ms || d < -ms {
					t.Fatalf("delay %d: got %v, want %v", i, got, want)
				}
			}
			b.Reset()
			if got := b.NextBackOff(); got > tc.initial {
				t.Fatalf("after Reset: got %v, want at most %v", got, tc.initial)
			}
		})
	}
}

func TestFullJitterSpreads(t *testing.T) {
	b := newFullJitter(time.Second, time.Second, nil)
	lo, hi := time.Hour, time.Duration(0)
	for range 200 {
		d := b.NextBackOff()
		if d < 0 || d > time.Second {
			t.Fatalf("delay %v outside [0, 1s]", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 100*time.Millisecond || hi < 900*time.Millisecond {
		t.Fatalf("200 delays spanned only [%v, %v]: not full jitter", lo, hi)
	}
}

func msgs(sizes ...int) []message.Message {
	out := make([]message.Message, len(sizes))
	for i, n := range sizes {
		out[i] = message.Message{ID: uuid.New(), SenderID: "s", Value: strings.Repeat("v", n)}
	}
	return out
}

func TestCut(t *testing.T) {
	raw := sink.BodyRaw // EncodedSize of a raw body is the value's length: exact sizes
	for _, tc := range []struct {
		name    string
		sizes   []int
		limits  sink.Limits
		capMsgs int
		want    []int // batch lengths
	}{
		{"no limits: one batch", []int{1, 2, 3}, sink.Limits{Body: raw}, 0, []int{3}},
		{"by count", []int{1, 1, 1, 1, 1}, sink.Limits{MaxBatchMessages: 2, Body: raw}, 0, []int{2, 2, 1}},
		{"by bytes", []int{40, 40, 40, 10}, sink.Limits{MaxBatchBytes: 90, Body: raw}, 0, []int{2, 2}},
		{"oversized goes alone", []int{10, 500, 10, 10}, sink.Limits{MaxMessageBytes: 100, Body: raw}, 0, []int{1, 1, 2}},
		{"oversized first and last", []int{500, 10, 500}, sink.Limits{MaxMessageBytes: 100, Body: raw}, 0, []int{1, 1, 1}},
		{"larger than a batch goes alone", []int{10, 200, 10}, sink.Limits{MaxBatchBytes: 100, Body: raw}, 0, []int{1, 1, 1}},
		{"halving cap", []int{1, 1, 1, 1, 1, 1, 1}, sink.Limits{MaxBatchMessages: 100, Body: raw}, 3, []int{3, 3, 1}},
		{"cap above the limit", []int{1, 1, 1}, sink.Limits{MaxBatchMessages: 2, Body: raw}, 5, []int{2, 1}},
		{"empty", nil, sink.Limits{}, 0, nil},
		{"envelope estimate", []int{100, 100, 100}, sink.Limits{MaxBatchBytes: 500}, 0, []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := msgs(tc.sizes...)
			got := cut(in, tc.limits, tc.capMsgs)
			var lens []int
			n := 0
			for _, b := range got {
				lens = append(lens, len(b))
				for _, m := range b {
					if m.ID != in[n].ID {
						t.Fatalf("message %d out of order", n)
					}
					n++
				}
			}
			if fmt.Sprint(lens) != fmt.Sprint(tc.want) {
				t.Fatalf("got batches %v, want %v", lens, tc.want)
			}
		})
	}
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

func TestBreakerTransitions(t *testing.T) {
	const probe = 40 * time.Millisecond
	fail := errors.New("sink down")
	type step struct {
		op   string // ok, fail, excluded, probe (wait for half-open), refused (allow must fail)
		want gobreaker.State
	}
	closed, open, half := gobreaker.StateClosed, gobreaker.StateOpen, gobreaker.StateHalfOpen
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"opens after threshold consecutive failures", []step{{"fail", closed}, {"fail", closed}, {"fail", open}, {"refused", open}}},
		{"a success resets the count", []step{{"fail", closed}, {"fail", closed}, {"ok", closed}, {"fail", closed}, {"fail", closed}, {"fail", open}}},
		{"shutdown sends do not count", []step{{"fail", closed}, {"fail", closed}, {"excluded", closed}, {"excluded", closed}, {"ok", closed}}},
		{"probe success closes", []step{{"fail", closed}, {"fail", closed}, {"fail", open}, {"probe", half}, {"ok", closed}, {"ok", closed}}},
		{"probe failure reopens", []step{{"fail", closed}, {"fail", closed}, {"fail", open}, {"probe", half}, {"fail", open}, {"refused", open}, {"probe", half}, {"ok", closed}}},
		{"one probe at a time", []step{{"fail", closed}, {"fail", closed}, {"fail", open}, {"probe", half}, {"second-refused", half}, {"ok", closed}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
			var logs strings.Builder
			b := newBreaker(3, probe, slog.New(slog.NewTextHandler(&logs, nil)), gauge)
			var pending func(error)
			for i, s := range tc.steps {
				switch s.op {
				case "ok", "fail", "excluded":
					done := pending
					pending = nil
					if done == nil {
						var err error
						if done, err = b.allow(); err != nil {
							t.Fatalf("step %d (%s): allow: %v", i, s.op, err)
						}
					}
					switch s.op {
					case "ok":
						done(nil)
					case "fail":
						done(fail)
					default:
						done(fmt.Errorf("stop: %w", errExcluded))
					}
				case "refused":
					if _, err := b.allow(); !errors.Is(err, gobreaker.ErrOpenState) {
						t.Fatalf("step %d: allow: got %v, want ErrOpenState", i, err)
					}
				case "probe":
					changed, probeAt := b.watch()
					if time.Until(probeAt) > probe {
						t.Fatalf("step %d: next probe in %v, want within %v", i, time.Until(probeAt), probe)
					}
					select {
					case <-changed:
						t.Fatalf("step %d: state changed before the probe interval", i)
					default:
					}
					eventually(t, 2*time.Second, "half-open", func() bool {
						done, err := b.allow()
						if err == nil {
							pending = done
						}
						return err == nil
					})
				case "second-refused":
					if _, err := b.allow(); !errors.Is(err, gobreaker.ErrTooManyRequests) {
						t.Fatalf("step %d: allow: got %v, want ErrTooManyRequests", i, err)
					}
				}
				if got := b.state(); got != s.want {
					t.Fatalf("step %d (%s): state %v, want %v", i, s.op, got, s.want)
				}
				if got := testutil.ToFloat64(gauge); s.op != "probe" && s.op != "second-refused" && got != float64(s.want) {
					t.Fatalf("step %d (%s): gauge %v, want %v", i, s.op, got, float64(s.want))
				}
			}
			if strings.Contains(logs.String(), "opened") && !strings.Contains(logs.String(), "sink down") {
				t.Fatalf("the log does not say why the breaker opened:\n%s", logs.String())
			}
		})
	}
}

func TestQuantileInterpolatesWithinBucket(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{1, 2, 4}})
	for _, v := range []float64{0.5, 1.5, 1.5, 3} {
		h.Observe(v)
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 1},    // rank 1: the end of the first bucket
		{0.5, 1.5},   // rank 2: half way through (1, 2]
		{0.75, 2},    // rank 3: the end of (1, 2]
		{0.99, 3.92}, // rank 3.96 of 4: 96 % through (2, 4]
	} {
		if got := quantile(tc.q, m.Histogram); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	var empty dto.Histogram
	if got := quantile(0.5, &empty); got != 0 {
		t.Errorf("quantile of no observations = %v, want 0", got)
	}
}

// TestExpiredSenderLabelBounded: the sender label of the expired counter takes the first
// maxSenderLabels senderIds; later ones count under otherSender, and a sender seen before
// keeps its own series.
func TestExpiredSenderLabelBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []message.Message
	for i := range maxSenderLabels + 50 {
		msgs = append(msgs, message.Message{SenderID: fmt.Sprintf("s-%03d", i)})
	}
	for i := range maxSenderLabels {
		m.countExpired(msgs[i : i+1])
	}
	m.countExpired(append(msgs[maxSenderLabels:], msgs[0]))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "bridgehead_forward_expired_messages_total" {
			for _, s := range mf.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		}
	}
	if len(got) != maxSenderLabels+1 || got[otherSender] != 50 || got["s-000"] != 2 || got["s-099"] != 1 {
		t.Fatalf("%d series, (other) %v, s-000 %v, s-099 %v; want %d, 50, 2, 1", len(got), got[otherSender], got["s-000"], got["s-099"], maxSenderLabels+1)
	}
	if n := m.expiredTotal.Load(); n != maxSenderLabels+51 {
		t.Fatalf("expiredTotal %d, want %d", n, maxSenderLabels+51)
	}
}
