package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: latencies are recorded in microseconds from 1 µs to 60 s with 3 significant
// digits; a longer one is recorded as 60 s.
const (
	histMin    = 1
	histMax    = int64(60 * time.Second / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func micros(d time.Duration) int64 { return min(max(d.Microseconds(), 0), histMax) }

// Run sends load until Warmup plus Duration have passed or ctx ends, waits for the requests in
// flight (each bounded by Timeout), and returns the result. A ctx that ends early cancels the
// requests in flight and returns the partial result, marked Interrupted.
//
// Before the load it opens one TCP connection to the URL's host and returns ErrUnreachable if it
// cannot. After the load it returns the Result together with ErrNoSuccess if no request got a 2xx.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	if err := r.reach(ctx); err != nil {
		return nil, err
	}
	defer r.transport.CloseIdleConnections()

	c := r.cfg
	tmpl, err := http.NewRequestWithContext(ctx, http.MethodPost, r.target.String(), nil)
	if err != nil {
		return nil, err
	}
	tmpl.Header = r.header
	tmpl.ContentLength = int64(len(r.body))
	body := r.body
	tmpl.GetBody = func() (io.ReadCloser, error) { return newRequestBody(body), nil }

	ru := &run{ctx: ctx, cfg: c, transport: r.transport, tmpl: tmpl, body: body, open: c.Rate > 0}
	// Workers share a few locked shards rather than one histogram each: 64 workers with their own
	// 140 KB histograms would cost more memory than they save in contention at these rates.
	ru.shards = make([]*shard, min(c.Concurrency, 4*runtime.GOMAXPROCS(0)))
	for i := range ru.shards {
		ru.shards[i] = newShard(ru.open)
	}
	ru.start = time.Now()
	ru.measureFrom = ru.start.Add(c.Warmup)
	ru.end = ru.measureFrom.Add(c.Duration)
	if ru.open {
		ru.interval = float64(time.Second) / c.Rate
		ru.ticks = int64(math.Ceil(float64(ru.end.Sub(ru.start)) * c.Rate / float64(time.Second)))
	}

	var wg sync.WaitGroup
	for i := range c.Concurrency {
		sh := ru.shards[i%len(ru.shards)]
		if ru.open {
			wg.Go(func() { ru.openLoop(sh) })
		} else {
			wg.Go(func() { ru.closedLoop(sh) })
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ru.watch(done)
	res := ru.result(r, time.Now())
	if res.Succeeded == 0 {
		return res, fmt.Errorf("%w: %s", ErrNoSuccess, res.failureSummary())
	}
	return res, nil
}

// reach opens and closes one TCP connection to the target, so a wrong URL or a server that is not
// running fails at once with a clear message instead of after Duration of connection errors.
func (r *Runner) reach(ctx context.Context) error {
	addr := r.target.Host
	if r.target.Port() == "" {
		port := "80"
		if r.target.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(r.target.Hostname(), port)
	}
	d := net.Dialer{Timeout: min(r.cfg.Timeout, 5*time.Second)}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, r.cfg.URL, err)
	}
	_ = conn.Close() // a probe that carried no data: nothing to lose on close
	return nil
}

// run is the state of one Run. Its fields are set before the workers start and only read after,
// except the atomics; counts live in shards.
type run struct {
	ctx       context.Context
	cfg       Config
	transport *http.Transport
	tmpl      *http.Request // carries ctx, URL and the shared header; copied per request
	body      []byte
	open      bool

	start, measureFrom, end time.Time

	shards   []*shard
	inFlight atomic.Int64

	// Open loop only: request i is scheduled at start + i*interval, for every i below ticks.
	interval float64 // nanoseconds
	ticks    int64
	next     atomic.Int64 // the next schedule index a worker takes
	issued   atomic.Int64 // scheduled requests actually sent
}

// closedLoop sends the next request as soon as the previous one answered, until end. Latency runs
// from the send: a stalled server also stalls this worker's sending, and the requests it would
// have sent meanwhile are never measured (the omission open loop corrects).
func (ru *run) closedLoop(sh *shard) {
	for ru.ctx.Err() == nil {
		now := time.Now()
		if !now.Before(ru.end) {
			return
		}
		ru.send(sh, now, now)
	}
}

// openLoop takes the next scheduled request, waits for its time and sends it; when the worker is
// late (the server was slow and every worker busy) it sends at once, and the delay counts in the
// latency. It stops issuing at end; scheduled requests still owed then are Result.Unsent.
func (ru *run) openLoop(sh *shard) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		i := ru.next.Add(1) - 1
		if i >= ru.ticks {
			return
		}
		intended := ru.start.Add(time.Duration(float64(i) * ru.interval))
		now := time.Now()
		if !now.Before(ru.end) || !intended.Before(ru.end) {
			return
		}
		if d := intended.Sub(now); d > 0 {
			timer.Reset(d)
			select {
			case <-ru.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		} else if ru.ctx.Err() != nil {
			return
		}
		ru.issued.Add(1)
		ru.send(sh, intended, time.Now())
	}
}

// send sends one request scheduled at intended (the send time itself in closed loop), drains and
// closes its answer, and records it.
func (ru *run) send(sh *shard, intended, sent time.Time) {
	ru.inFlight.Add(1)
	// The transport, not an http.Client: no redirect or cookie machinery to pay for per request,
	// and a 3xx is an answer to count anyway.
	ctx, cancel := context.WithTimeout(ru.ctx, ru.cfg.Timeout)
	defer cancel()
	req := ru.tmpl.WithContext(ctx)
	req.Body = newRequestBody(ru.body)
	resp, err := ru.transport.RoundTrip(req)
	status := 0
	sample := ""
	if err == nil {
		status = resp.StatusCode
		if status/100 != 2 && sh.wantSample(statusKey(status)) {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, sampleBytes))
			sample = string(b)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
	}
	done := time.Now()
	ru.inFlight.Add(-1)
	sh.record(outcome{
		warmup:  intended.Before(ru.measureFrom),
		status:  status,
		err:     err,
		latency: done.Sub(intended),
		delay:   sent.Sub(intended),
		sample:  sample,
	})
}

const sampleBytes = 300

func statusKey(code int) string { return strconv.Itoa(code) }

// outcome is one finished request.
type outcome struct {
	warmup  bool
	status  int   // the HTTP status; meaningful when err is nil
	err     error // a transport error, including an answer cut short
	latency time.Duration
	delay   time.Duration // open loop: scheduled time to actual send
	sample  string        // the start of a non-2xx body, if wanted
}

// shard holds the counts of the workers assigned to it; mu guards every field. Workers write it
// once per request; Run's goroutine reads it once per progress interval and at the end.
type shard struct {
	mu sync.Mutex

	// Measured requests (after the warm-up).
	requests  int64
	succeeded int64
	status    map[int]int64
	errors    map[string]int64
	latency   *hdrhistogram.Histogram // µs
	delay     *hdrhistogram.Histogram // µs, open loop only

	warmupRequests int64
	samples        map[string]string // the first body (non-2xx) or error text per status or kind

	// For progress, warm-up included: totals and the latency since the last snapshot.
	allRequests, allSucceeded, allErrors int64
	recent                               *hdrhistogram.Histogram
}

func newShard(open bool) *shard {
	s := &shard{
		status:  map[int]int64{},
		errors:  map[string]int64{},
		samples: map[string]string{},
		latency: newHist(),
		recent:  newHist(),
	}
	if open {
		s.delay = newHist()
	}
	return s
}

func (s *shard) wantSample(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.samples[key]
	return !ok
}

func (s *shard) record(o outcome) {
	var kind string
	if o.err != nil {
		kind = errorKind(o.err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allRequests++
	switch {
	case o.err != nil:
		s.allErrors++
		if _, ok := s.samples[kind]; !ok {
			s.samples[kind] = o.err.Error()
		}
	default:
		if o.status/100 == 2 {
			s.allSucceeded++
		} else if o.sample != "" {
			if k := statusKey(o.status); s.samples[k] == "" {
				s.samples[k] = o.sample
			}
		}
		_ = s.recent.RecordValue(micros(o.latency)) // in range by construction
	}
	if o.warmup {
		s.warmupRequests++
		return
	}
	s.requests++
	if o.err != nil {
		s.errors[kind]++
		return
	}
	s.status[o.status]++
	if o.status/100 == 2 {
		s.succeeded++
	}
	_ = s.latency.RecordValue(micros(o.latency))
	if s.delay != nil {
		_ = s.delay.RecordValue(micros(o.delay))
	}
}

// watch calls Progress every ProgressInterval until done is closed.
func (ru *run) watch(done <-chan struct{}) {
	if ru.cfg.Progress == nil {
		<-done
		return
	}
	t := time.NewTicker(ru.cfg.ProgressInterval)
	defer t.Stop()
	recent := newHist()
	var lastN int64
	lastAt := ru.start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			p := Progress{
				Elapsed:  now.Sub(ru.start),
				Total:    ru.end.Sub(ru.start),
				Warmup:   now.Before(ru.measureFrom),
				InFlight: ru.inFlight.Load(),
			}
			recent.Reset()
			for _, s := range ru.shards {
				s.mu.Lock()
				p.Requests += s.allRequests
				p.Succeeded += s.allSucceeded
				p.Errors += s.allErrors
				recent.Merge(s.recent)
				s.recent.Reset()
				s.mu.Unlock()
			}
			p.Failed = p.Requests - p.Succeeded - p.Errors
			if secs := now.Sub(lastAt).Seconds(); secs > 0 {
				p.RequestsPerSecond = float64(p.Requests-lastN) / secs
			}
			lastN, lastAt = p.Requests, now
			if recent.TotalCount() > 0 {
				p.P50 = time.Duration(recent.ValueAtQuantile(50)) * time.Microsecond
				p.P99 = time.Duration(recent.ValueAtQuantile(99)) * time.Microsecond
				p.Max = time.Duration(recent.Max()) * time.Microsecond
			}
			ru.cfg.Progress(p)
		}
	}
}

// result merges the shards into a Result; finished is when the last worker returned.
func (ru *run) result(r *Runner, finished time.Time) *Result {
	c := ru.cfg
	res := &Result{
		URL:         r.target.String(),
		Route:       string(c.Route),
		Mode:        "closed",
		Concurrency: c.Concurrency,
		Batch:       c.Batch,
		Size:        c.Size,
		BodyBytes:   len(ru.body),
		Warmup:      c.Warmup.Seconds(),
		Status:      map[int]int64{},
		Errors:      map[string]int64{},
		Samples:     map[string]string{},
		Histogram:   newHist(),
		Interrupted: ru.ctx.Err() != nil && finished.Before(ru.end),
	}
	var delay *hdrhistogram.Histogram
	if ru.open {
		res.Mode = "open"
		res.TargetRate = c.Rate
		delay = newHist()
	}
	for _, s := range ru.shards {
		s.mu.Lock()
		res.Requests += s.requests
		res.WarmupRequests += s.warmupRequests
		res.Succeeded += s.succeeded
		for k, v := range s.status {
			res.Status[k] += v
		}
		for k, v := range s.errors {
			res.Errors[k] += v
		}
		for k, v := range s.samples {
			if _, ok := res.Samples[k]; !ok {
				res.Samples[k] = v
			}
		}
		res.Histogram.Merge(s.latency)
		if delay != nil {
			delay.Merge(s.delay)
		}
		s.mu.Unlock()
	}
	res.Messages = res.Succeeded * int64(c.Batch)
	if d := finished.Sub(ru.measureFrom); d > 0 {
		res.Duration = d.Seconds()
		res.RequestsPerSecond = float64(res.Requests) / res.Duration
		res.MessagesPerSecond = float64(res.Messages) / res.Duration
	}
	res.Latency = latencyOf(res.Histogram)
	if delay != nil {
		l := latencyOf(delay)
		res.SendDelay = &l
		// Requests scheduled before issuing stopped (end, or the interrupt) that never went out.
		stop := finished
		if stop.After(ru.end) {
			stop = ru.end
		}
		due := min(ru.ticks, int64(math.Ceil(float64(stop.Sub(ru.start))/ru.interval)))
		res.Unsent = max(due-ru.issued.Load(), 0)
	}
	return res
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  math.Round(h.Mean()) / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}
