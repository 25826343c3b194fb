package forward_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// fakeSink is a func-field fake: send decides each batch's results (nil: deliver everything).
// It records every message it reported Delivered, the number of calls and the most Sends in
// flight at once.
type fakeSink struct {
	send   func(ctx context.Context, batch []message.Message) []sink.Result
	limits sink.Limits

	calls    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64

	mu        sync.Mutex
	delivered map[uuid.UUID]int
	firstAt   time.Time // first delivery after markAt
	markAt    time.Time
}

func (s *fakeSink) Send(ctx context.Context, batch []message.Message) []sink.Result {
	s.calls.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxIn.Load()
		if n <= m || s.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	var res []sink.Result
	if s.send != nil {
		res = s.send(ctx, batch)
	} else {
		res = make([]sink.Result, len(batch))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delivered == nil {
		s.delivered = map[uuid.UUID]int{}
	}
	for i, r := range res {
		if r.Status == sink.Delivered && i < len(batch) {
			s.delivered[batch[i].ID]++
			if !s.markAt.IsZero() && s.firstAt.IsZero() {
				s.firstAt = time.Now()
			}
		}
	}
	return res
}

func (s *fakeSink) Limits() sink.Limits { return s.limits }
func (s *fakeSink) Close() error        { return nil }

func (s *fakeSink) count(id uuid.UUID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[id]
}

func (s *fakeSink) all(ms []message.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		if s.delivered[m.ID] == 0 {
			return false
		}
	}
	return true
}

// mark starts the clock for firstDelivery.
func (s *fakeSink) mark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markAt, s.firstAt = time.Now(), time.Time{}
}

func (s *fakeSink) firstDelivery() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstAt.IsZero() {
		return 0, false
	}
	return s.firstAt.Sub(s.markAt), true
}

// countingSpool counts renewals.
type countingSpool struct {
	*spool.Spool
	renews atomic.Int64
}

func (c *countingSpool) Renew(ctx context.Context, cl *spool.Claim) error {
	c.renews.Add(1)
	return c.Spool.Renew(ctx, cl)
}

func mustOpenSpool(t testing.TB, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("spool.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fill appends segments of perSeg messages (one Append and a seal, so one segment each, ready
// at once) and returns them.
func fill(t testing.TB, sp *spool.Spool, segments, perSeg, size int) []message.Message {
	t.Helper()
	val := strings.Repeat("v", size)
	var all []message.Message
	now := time.Now().UTC()
	for s := range segments {
		seg := make([]message.Message, perSeg)
		for i := range seg {
			seg[i] = message.Message{ID: uuid.New(), SenderID: fmt.Sprintf("sender-%d", (s*perSeg+i)%7), Value: val, ReceivedAt: now, Stamp: "test"}
		}
		if err := sp.Append(context.Background(), seg...); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := sp.Seal(context.Background()); err != nil {
			t.Fatalf("Seal: %v", err)
		}
		all = append(all, seg...)
	}
	return all
}

// start runs a forwarder built from cfg until the returned stop is called (or the test ends);
// stop returns Run's error and how long Run took to return after the cancel.
func start(t *testing.T, cfg forward.Config) (stop func() (time.Duration, error)) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	f, err := forward.New(cfg)
	if err != nil {
		t.Fatalf("forward.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	var runErr error
	var took time.Duration
	stop = func() (time.Duration, error) {
		once.Do(func() {
			at := time.Now()
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return within 30 s of its context's end")
			}
			took = time.Since(at)
		})
		return took, runErr
	}
	t.Cleanup(func() { _, _ = stop() })
	return stop
}

// testLogger logs to t at warning level and above.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond until it holds or d passes (then the test fails).
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

// statser is a *spool.Spool, or a countingSpool wrapping one.
type statser interface {
	Stats(context.Context) (spool.Stats, error)
}

func stats(t *testing.T, sp statser) spool.Stats {
	t.Helper()
	st, err := sp.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

// waitDrained waits until ready/, claimed/ and dead/ hold no segment.
func waitDrained(t *testing.T, sp statser) {
	t.Helper()
	eventually(t, 5*time.Second, "spool empty", func() bool {
		st := stats(t, sp)
		return st.Ready.Segments+st.Claimed.Segments+st.Dead.Segments == 0
	})
}

// waitDead waits up to d until dead/ holds n messages and ready/ and claimed/ nothing, and
// returns the dead segments.
func waitDead(t *testing.T, sp *spool.Spool, d time.Duration, n int) []spool.Entry {
	t.Helper()
	eventually(t, d, fmt.Sprintf("%d message(s) dead-lettered and nothing left", n), func() bool {
		st := stats(t, sp)
		return st.Dead.Messages == n && st.Ready.Segments+st.Claimed.Segments == 0
	})
	entries, err := sp.List(context.Background(), spool.StateDead)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func deadReason(t *testing.T, sp *spool.Spool, e spool.Entry) string {
	t.Helper()
	reason, err := sp.Reason(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

func deadMessages(t *testing.T, sp *spool.Spool, e spool.Entry) []message.Message {
	t.Helper()
	ms, err := sp.Read(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// wantAttemptLimit fails t unless the dead segment's reason is the spool's attempt limit.
func wantAttemptLimit(t *testing.T, sp *spool.Spool, e spool.Entry, maxAttempts int) {
	t.Helper()
	if reason := deadReason(t, sp, e); !strings.Contains(reason, fmt.Sprintf("after %d delivery attempts", maxAttempts)) {
		t.Errorf("reason %q, want the attempt limit", reason)
	}
}

func TestDrain(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 20, 50, 64)
	reg := prometheus.NewRegistry()
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 20}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		<-time.After(2 * time.Millisecond) // a sink takes time: lets sends overlap
		return make([]sink.Result, len(b))
	}
	stop := start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 4})
	eventually(t, 10*time.Second, "every message delivered", func() bool { return fs.all(all) })
	waitDrained(t, sp)
	if _, err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, m := range all {
		if n := fs.count(m.ID); n != 1 {
			t.Fatalf("message delivered %d times, want once", n)
		}
	}
	if got := fs.maxIn.Load(); got != 4 {
		t.Errorf("at most %d sends in flight, want 4 (Concurrency)", got)
	}
	if got := gather(t, reg)["bridgehead_forward_delivered_total"]; got != float64(len(all)) {
		t.Errorf("delivered_total %v, want %d", got, len(all))
	}
	for _, name := range []string{"bridgehead_forward_retried_total", "bridgehead_forward_dead_lettered_total",
		"bridgehead_forward_send_duration_seconds", "bridgehead_forward_batch_size_messages",
		"bridgehead_forward_breaker_state"} {
		if _, ok := gather(t, reg)[name]; !ok {
			t.Errorf("metric %s not registered", name)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{} // summed over a family's series (delivered_total is by priority)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				out[mf.GetName()] += m.Counter.GetValue()
			case m.Gauge != nil:
				out[mf.GetName()] += m.Gauge.GetValue()
			case m.Histogram != nil:
				out[mf.GetName()] += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestPermanentDeadLetteredWithReason(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 3, 10, 16)
	bad := map[uuid.UUID]bool{all[3].ID: true, all[17].ID: true}
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 4}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		res := make([]sink.Result, len(b))
		for i, m := range b {
			if bad[m.ID] {
				res[i] = sink.Result{Status: sink.Permanent, Err: errors.New("MESSAGE_TOO_LARGE: 2 MiB over the 1 MiB limit")}
			}
		}
		return res
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg})
	good := slices.DeleteFunc(slices.Clone(all), func(m message.Message) bool { return bad[m.ID] })
	eventually(t, 10*time.Second, "segment-mates delivered", func() bool { return fs.all(good) })
	dead := map[uuid.UUID]bool{}
	for _, e := range waitDead(t, sp, 5*time.Second, 2) {
		reason := deadReason(t, sp, e)
		if !strings.Contains(reason, "MESSAGE_TOO_LARGE") {
			t.Errorf("reason %q does not carry the sink's words", reason)
		}
		for _, m := range deadMessages(t, sp, e) {
			dead[m.ID] = true
			if !strings.Contains(reason, m.ID.String()) {
				t.Errorf("reason %q does not name message %s", reason, m.ID)
			}
		}
	}
	for id := range bad {
		if !dead[id] || fs.count(id) != 0 {
			t.Errorf("message %s: dead %v, delivered %d times; want dead, never delivered", id, dead[id], fs.count(id))
		}
	}
	// The counter moves just after Settle returns, so the spool can show the dead letters first.
	eventually(t, 5*time.Second, "dead_lettered_total reaches 2", func() bool {
		return gather(t, reg)["bridgehead_forward_dead_lettered_total"] == 2
	})
	time.Sleep(50 * time.Millisecond)
	if got := gather(t, reg)["bridgehead_forward_dead_lettered_total"]; got != 2 {
		t.Errorf("dead_lettered_total %v, want exactly 2", got)
	}
}

func TestTransientRetriedThenDelivered(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 2, 10, 16)
	var failures atomic.Int64
	fs := &fakeSink{}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		if failures.Add(1) <= 3 {
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("throttled")})
		}
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 1, RetryInitialDelay: time.Millisecond, RetryMaxDelay: 10 * time.Millisecond})
	eventually(t, 10*time.Second, "delivered after the transient failures", func() bool { return fs.all(all) })
	waitDrained(t, sp)
	if got := gather(t, reg)["bridgehead_forward_retried_total"]; got < 3 {
		t.Errorf("retried_total %v, want at least 3", got)
	}
}

func TestPoisonDeadLetteredAfterMaxAttempts(t *testing.T) {
	const maxAttempts = 3
	sp := mustOpenSpool(t, "", spool.Options{MaxAttempts: maxAttempts, Logger: testLogger(t)})
	all := fill(t, sp, 3, 10, 16)
	poison := all[14] // in the middle segment
	var poisonSends atomic.Int64
	fs := &fakeSink{}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		res := make([]sink.Result, len(b))
		for i, m := range b {
			if m.ID == poison.ID {
				poisonSends.Add(1)
				res[i] = sink.Result{Status: sink.Transient, Err: errors.New("broker timed out on this one")}
			}
		}
		return res
	}
	start(t, forward.Config{Spool: sp, Sink: fs, RetryInitialDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond,
		// The poison alone would trip the breaker when nothing else flows; this test is about
		// the attempt limit.
		Breaker: forward.BreakerConfig{FailureThreshold: 1000}})
	good := slices.DeleteFunc(slices.Clone(all), func(m message.Message) bool { return m.ID == poison.ID })
	eventually(t, 10*time.Second, "the others delivered", func() bool { return fs.all(good) })
	wantAttemptLimit(t, sp, waitDead(t, sp, 10*time.Second, 1)[0], maxAttempts)
	if n := poisonSends.Load(); n != maxAttempts*forward.DefaultRetriesPerClaim {
		t.Errorf("the poison was sent %d times, want %d (attempts × rounds per claim)", n, maxAttempts*forward.DefaultRetriesPerClaim)
	}
}

func TestBreakerHoldsClaimsThenResumesWithinProbeInterval(t *testing.T) {
	const (
		lease = 600 * time.Millisecond
		probe = 150 * time.Millisecond
	)
	base := mustOpenSpool(t, "", spool.Options{Lease: lease, SkewAllowance: 200 * time.Millisecond})
	sp := &countingSpool{Spool: base}
	all := fill(t, base, 6, 20, 16)
	var up atomic.Bool
	var downCalls atomic.Int64
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 5}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		if !up.Load() {
			downCalls.Add(1)
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("dial tcp: connection refused")})
		}
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 2,
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 20 * time.Millisecond,
		Breaker:      forward.BreakerConfig{FailureThreshold: 3, ProbeInterval: probe},
		ReapInterval: 20 * time.Millisecond})
	eventually(t, 5*time.Second, "breaker open", func() bool { return gather(t, reg)["bridgehead_forward_breaker_state"] == 2 })
	opened := downCalls.Load()
	// Stay down for more than twice the lease: the held claims must be renewed, not reaped.
	eventually(t, 10*time.Second, "probes while down", func() bool { return downCalls.Load() >= opened+8 })
	st := stats(t, sp)
	if st.Dead.Segments != 0 || st.Ready.Messages+st.Claimed.Messages != len(all) {
		t.Fatalf("while down: %+v; want every message still in ready/ or claimed/", st)
	}
	if st.Claimed.Segments > 2 {
		t.Fatalf("while down: %d claims held, want at most Concurrency (2)", st.Claimed.Segments)
	}
	if sp.renews.Load() == 0 {
		t.Fatalf("claims held past half their lease were never renewed")
	}
	if got := gather(t, reg)["bridgehead_forward_lost_claims_total"]; got != 0 {
		t.Fatalf("lost_claims_total %v, want 0: a held claim expired", got)
	}
	if st.OldestAgeSeconds <= 0 {
		t.Errorf("spool's oldest undelivered age %v while down, want > 0", st.OldestAgeSeconds)
	}
	// About one send per probe interval while open, not a retry storm.
	if n := downCalls.Load() - opened; n > 30 {
		t.Errorf("%d sends while the breaker was open for ~%v, want about one per %v", n, 8*probe, probe)
	}

	fs.mark()
	up.Store(true)
	eventually(t, 10*time.Second, "everything delivered after the sink returned", func() bool { return fs.all(all) })
	first, _ := fs.firstDelivery()
	t.Logf("first delivery %v after the sink returned (probe interval %v)", first, probe)
	if first > probe+100*time.Millisecond {
		t.Errorf("first delivery %v after the sink returned, want within one probe interval (%v)", first, probe)
	}
	waitDrained(t, sp)
}

func TestShutdown(t *testing.T) {
	t.Run("releases claims whose sends outlive the grace", func(t *testing.T) {
		sp := mustOpenSpool(t, "", spool.Options{})
		all := fill(t, sp, 4, 10, 16)
		fs := &fakeSink{}
		entered := make(chan struct{}, 16)
		fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
			entered <- struct{}{}
			<-ctx.Done() // a hung sink: only the deadline ends it
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: ctx.Err()})
		}
		stop := start(t, forward.Config{Spool: sp, Sink: fs, Concurrency: 2, ShutdownGrace: 200 * time.Millisecond})
		<-entered
		<-entered
		took, err := stop()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if took > 2*time.Second {
			t.Fatalf("Run took %v to return after the cancel, want about the 200 ms grace", took)
		}
		st := stats(t, sp)
		if st.Claimed.Segments != 0 || st.Ready.Messages != len(all) || st.Dead.Segments != 0 {
			t.Fatalf("after shutdown: %+v; want every message back in ready/", st)
		}
		// Released for immediate pickup by another forwarder (no not-before).
		entries, _ := sp.List(context.Background(), spool.StateReady)
		for _, e := range entries {
			if e.NotBefore.After(time.Now()) {
				t.Errorf("segment %s released with not-before %v, want at once", e.Name, e.NotBefore)
			}
		}
	})
	t.Run("finishes sends within the grace", func(t *testing.T) {
		sp := mustOpenSpool(t, "", spool.Options{})
		fill(t, sp, 4, 10, 16)
		fs := &fakeSink{}
		entered := make(chan struct{}, 16)
		release := make(chan struct{})
		fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
			entered <- struct{}{}
			<-release
			return make([]sink.Result, len(b))
		}
		f, err := forward.New(forward.Config{Spool: sp, Sink: fs, Concurrency: 1, ShutdownGrace: 10 * time.Second, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		<-entered
		cancel() // stopping while the send is in flight: the send may finish
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		st := stats(t, sp)
		if fs.calls.Load() != 1 {
			t.Fatalf("%d sends, want the one in flight only (no new claims after the stop)", fs.calls.Load())
		}
		if st.Claimed.Segments != 0 || st.Ready.Messages != 30 {
			t.Fatalf("after shutdown: %+v; want the in-flight segment acked and 3 segments ready", st)
		}
	})
}

func TestSendDeadlineInsideLease(t *testing.T) {
	const lease = 2 * time.Second
	sp := mustOpenSpool(t, "", spool.Options{Lease: lease})
	all := fill(t, sp, 1, 5, 8)
	var mu sync.Mutex
	var windows []time.Duration
	fs := &fakeSink{}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		dl, ok := ctx.Deadline()
		mu.Lock()
		if ok {
			windows = append(windows, time.Until(dl))
		} else {
			windows = append(windows, -1)
		}
		mu.Unlock()
		return make([]sink.Result, len(b))
	}
	start(t, forward.Config{Spool: sp, Sink: fs, LeaseMargin: 5 * time.Second, SendTimeout: time.Minute})
	eventually(t, 5*time.Second, "delivered", func() bool { return fs.all(all) })
	mu.Lock()
	defer mu.Unlock()
	for _, w := range windows {
		// LeaseMargin is capped at a quarter of the lease: sends end 500 ms before the deadline.
		if w <= 0 || w > lease-lease/4 {
			t.Errorf("send deadline %v ahead, want within (0, %v]", w, lease-lease/4)
		}
	}
}

func TestRenewWhenSlow(t *testing.T) {
	const lease = 500 * time.Millisecond
	base := mustOpenSpool(t, "", spool.Options{Lease: lease, SkewAllowance: 100 * time.Millisecond})
	sp := &countingSpool{Spool: base}
	all := fill(t, base, 1, 40, 8)
	fs := &fakeSink{limits: sink.Limits{MaxBatchMessages: 5}}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		<-time.After(100 * time.Millisecond) // 8 batches: 800 ms, longer than the lease
		return make([]sink.Result, len(b))
	}
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, Concurrency: 1, ReapInterval: 10 * time.Millisecond})
	eventually(t, 10*time.Second, "delivered", func() bool { return fs.all(all) })
	waitDrained(t, sp)
	if sp.renews.Load() == 0 {
		t.Fatal("a claim sent for longer than its lease was never renewed")
	}
	for _, m := range all {
		if n := fs.count(m.ID); n != 1 {
			t.Fatalf("message delivered %d times, want once (the claim was never reaped)", n)
		}
	}
	if got := gather(t, reg)["bridgehead_forward_lost_claims_total"]; got != 0 {
		t.Fatalf("lost_claims_total %v, want 0", got)
	}
}

func TestReaperReturnsExpiredClaims(t *testing.T) {
	dir := t.TempDir()
	opts := spool.Options{Lease: 100 * time.Millisecond, SkewAllowance: 50 * time.Millisecond}
	dead := mustOpenSpool(t, dir, opts) // a consumer that claims and dies
	all := fill(t, dead, 1, 5, 8)
	if _, err := dead.Claim(context.Background()); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	sp := mustOpenSpool(t, dir, opts)
	fs := &fakeSink{}
	start(t, forward.Config{Spool: sp, Sink: fs, ReapInterval: 20 * time.Millisecond})
	eventually(t, 10*time.Second, "the abandoned claim reaped and delivered", func() bool { return fs.all(all) })
}

func TestValidate(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	fs := &fakeSink{}
	for _, tc := range []struct {
		name string
		cfg  forward.Config
		want string
	}{
		{"no spool", forward.Config{Sink: fs}, "Spool"},
		{"no sink", forward.Config{Spool: sp}, "Sink"},
		{"negative concurrency", forward.Config{Spool: sp, Sink: fs, Concurrency: -1}, "Concurrency"},
		{"negative duration", forward.Config{Spool: sp, Sink: fs, RetryMaxDelay: -time.Second}, "negative"},
		{"initial above max", forward.Config{Spool: sp, Sink: fs, RetryInitialDelay: time.Minute, RetryMaxDelay: time.Second}, "RetryInitialDelay"},
		{"initial above default max", forward.Config{Spool: sp, Sink: fs, RetryInitialDelay: time.Hour}, "RetryInitialDelay"},
		{"negative threshold", forward.Config{Spool: sp, Sink: fs, Breaker: forward.BreakerConfig{FailureThreshold: -1}}, "FailureThreshold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forward.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := forward.New(forward.Config{Spool: sp, Sink: fs, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := forward.New(forward.Config{Spool: sp, Sink: fs, Registerer: reg}); err == nil {
		t.Fatal("a second forwarder on the same registry: got nil, want a registration error")
	}
}

func TestRunTwice(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	f, err := forward.New(forward.Config{Spool: sp, Sink: &fakeSink{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := f.Run(ctx); err == nil {
		t.Error("second Run: got nil, want an error")
	}
}

func TestStatusReportsTotalsBreakerAndLatency(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 2, 5, 16)
	var calls atomic.Int64
	fs := &fakeSink{}
	fs.send = func(ctx context.Context, b []message.Message) []sink.Result {
		if calls.Add(1) == 1 {
			return sink.All(len(b), sink.Result{Status: sink.Transient, Err: errors.New("broker unreachable")})
		}
		return make([]sink.Result, len(b))
	}
	f, err := forward.New(forward.Config{Spool: sp, Sink: fs, SinkName: "fake", Concurrency: 1,
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Breaker != "closed" || st.DeliveredTotal != 0 || st.LastError != "" || st.SendLatencySeconds.P99 != 0 {
		t.Fatalf("status before any send: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "all delivered", func() bool { return fs.all(all) })
	eventually(t, 5*time.Second, "status counts them", func() bool { return f.Status().DeliveredTotal == uint64(len(all)) })
	st := f.Status()
	if st.Sink != "fake" || st.Breaker != "closed" || st.RetriedTotal == 0 {
		t.Errorf("status %+v: want sink fake, breaker closed, retries counted", st)
	}
	if st.LastError != "broker unreachable" || st.LastErrorAt == nil {
		t.Errorf("last error %q at %v, want the sink's error and its time", st.LastError, st.LastErrorAt)
	}
	if p := st.SendLatencySeconds; p.P50 <= 0 || p.P99 < p.P50 {
		t.Errorf("latency %+v: want 0 < p50 <= p99", p)
	}
}
