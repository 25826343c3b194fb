package loadgen_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/loadgen"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// fakeAPI imitates the Bridgehead API's two POST routes: it checks every request as the real one
// would (path, content type, authorization, body shape and sizes), counts what it saw, and answers
// 200 JSON, or 503 problem+json for the requests fail picks, after sleeping for the requests stall
// picks. n is a request's 1-based arrival number. Problems are collected, not reported from the
// handler's goroutine; mustBeClean reports them from the test's.
type fakeAPI struct {
	batch  int    // messages per request; 0 for the compat route (one object)
	size   int    // bytes per value
	auth   string // expected Authorization header; "" for none
	fail   func(n int64) bool
	stall  func(n int64) time.Duration
	srvURL string

	requests, ok, unavailable, messages, conns atomic.Int64

	mu       sync.Mutex
	problems []string
}

// start serves f on a local port until the test ends.
func (f *fakeAPI) start(t *testing.T) *fakeAPI {
	t.Helper()
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	f.srvURL = srv.URL
	return f
}

func (f *fakeAPI) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) < 5 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

func (f *fakeAPI) mustBeClean(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Errorf("server saw a bad request: %s", p)
	}
}

type fakeMessage struct {
	SenderID string `json:"senderId"`
	Value    string `json:"value"`
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	wantPath := "/ServiceAPI/message"
	if f.batch > 0 {
		wantPath = "/v1/messages"
	}
	if r.Method != http.MethodPost || r.URL.Path != wantPath {
		f.problem("%s %s, want POST %s", r.Method, r.URL.Path, wantPath)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.problem("Content-Type %q, want application/json", ct)
	}
	if got, want := r.Header.Get("Authorization"), f.auth; got != want {
		f.problem("Authorization %q, want %q", got, want)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away (a timeout test)
	}
	var msgs []fakeMessage
	if f.batch == 0 {
		var m fakeMessage
		err = json.Unmarshal(body, &m)
		msgs = append(msgs, m)
	} else {
		err = json.Unmarshal(body, &msgs)
		if err == nil && len(msgs) != f.batch {
			f.problem("%d messages in a request, want %d", len(msgs), f.batch)
		}
	}
	if err != nil {
		f.problem("body %.60q: %v", body, err)
	}
	for _, m := range msgs {
		if m.SenderID != "bench" || len(m.Value) != f.size {
			f.problem("message senderId %q with a %d-byte value, want bench and %d", m.SenderID, len(m.Value), f.size)
		}
	}
	if f.stall != nil {
		if d := f.stall(n); d > 0 {
			select {
			case <-time.After(d): // a slow server, not a test waiting for a condition
			case <-r.Context().Done():
				return
			}
		}
	}
	if f.fail != nil && f.fail(n) {
		f.unavailable.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"type":"https://bridgehead.dev/problems/spool-full","title":"Spool full","status":503,"success":false}`)
		return
	}
	f.ok.Add(1)
	f.messages.Add(int64(len(msgs)))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = fmt.Fprintf(w, `{"serverTimestamp":"2026-11-24T08:58:12.2310419Z","senderId":"bench","correlationId":"01a20cc6-e987-70b7-9025-9d72ba3869dc","count":%d,"success":true}`, len(msgs))
}

// mustRun runs a benchmark with cfg and fails the test on any error.
func mustRun(t *testing.T, cfg loadgen.Config) *loadgen.Result {
	t.Helper()
	res, err := run(t, cfg)
	if err != nil {
		t.Fatalf("Run: got error %v, want nil", err)
	}
	return res
}

func run(t *testing.T, cfg loadgen.Config) (*loadgen.Result, error) {
	t.Helper()
	r, err := loadgen.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): got error %v, want nil", cfg, err)
	}
	return r.Run(t.Context())
}

const ms = float64(time.Millisecond) / float64(time.Millisecond) // latencies are in milliseconds

func TestClosedLoopCountsMatchServer(t *testing.T) {
	f := (&fakeAPI{size: 64}).start(t)
	res := mustRun(t, loadgen.Config{
		URL: f.srvURL, Concurrency: 4, Size: 64,
		Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond,
	})
	f.mustBeClean(t)

	if got, want := res.Requests+res.WarmupRequests, f.requests.Load(); got != want {
		t.Errorf("Requests %d + WarmupRequests %d = %d, want the %d the server saw", res.Requests, res.WarmupRequests, got, want)
	}
	if res.WarmupRequests == 0 || res.Requests == 0 {
		t.Errorf("WarmupRequests %d, Requests %d: want both > 0", res.WarmupRequests, res.Requests)
	}
	if res.Succeeded != res.Requests || res.Status[200] != res.Requests || len(res.Errors) != 0 {
		t.Errorf("Succeeded %d, Status %v, Errors %v: want all %d requests 200", res.Succeeded, res.Status, res.Errors, res.Requests)
	}
	if res.Messages != res.Succeeded {
		t.Errorf("Messages %d, want Succeeded %d (batch 1)", res.Messages, res.Succeeded)
	}
	if res.Latency.Count != res.Requests || res.Histogram.TotalCount() != res.Requests {
		t.Errorf("latency count %d (histogram %d), want one per request, %d", res.Latency.Count, res.Histogram.TotalCount(), res.Requests)
	}
	l := res.Latency
	if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency %+v: want 0 < p50 <= p90 <= p99 <= p99.9 <= max", l)
	}
	if res.Duration < 0.3 || res.Duration > 2 {
		t.Errorf("Duration %.3f s, want about 0.3", res.Duration)
	}
	if got, want := res.RequestsPerSecond, float64(res.Requests)/res.Duration; got != want {
		t.Errorf("RequestsPerSecond %f, want Requests/Duration %f", got, want)
	}
	if res.Mode != "closed" || res.Unsent != 0 || res.SendDelay != nil || res.Interrupted {
		t.Errorf("Mode %q, Unsent %d, SendDelay %v, Interrupted %v: want closed, 0, nil, false", res.Mode, res.Unsent, res.SendDelay, res.Interrupted)
	}
	// Keep-alive: about one connection per worker (plus the reachability probe's), not one per
	// request. The transport may open a spare when a connection's write has not been confirmed
	// in time (it happens under -race), so allow twice that.
	if got, total := f.conns.Load(), f.requests.Load(); got > 2*4+1 || total < 50 {
		t.Errorf("server saw %d connections for %d requests, want at most 9 for at least 50: connections are not reused", got, total)
	}
}

func TestNon2xxCountedByStatus(t *testing.T) {
	f := (&fakeAPI{size: 16, fail: func(n int64) bool { return n%4 == 0 }}).start(t)
	res := mustRun(t, loadgen.Config{URL: f.srvURL, Concurrency: 3, Size: 16, Duration: 200 * time.Millisecond})
	f.mustBeClean(t)

	if res.Requests != f.requests.Load() {
		t.Errorf("Requests %d, want the %d the server saw", res.Requests, f.requests.Load())
	}
	if res.Status[200] != f.ok.Load() || res.Status[503] != f.unavailable.Load() || len(res.Status) != 2 {
		t.Errorf("Status %v, want 200: %d, 503: %d", res.Status, f.ok.Load(), f.unavailable.Load())
	}
	if res.Succeeded != f.ok.Load() || res.Messages != f.ok.Load() {
		t.Errorf("Succeeded %d, Messages %d, want %d each", res.Succeeded, res.Messages, f.ok.Load())
	}
	if s := res.Samples["503"]; !strings.Contains(s, "spool-full") {
		t.Errorf(`Samples["503"] = %q, want the problem body naming spool-full`, s)
	}
	// Every answer has a latency, whatever its status.
	if res.Latency.Count != res.Requests {
		t.Errorf("latency count %d, want %d", res.Latency.Count, res.Requests)
	}
}

func TestBatchSendsArraysOfN(t *testing.T) {
	f := (&fakeAPI{batch: 7, size: 100, auth: "Bearer s3cret"}).start(t)
	res := mustRun(t, loadgen.Config{
		URL: f.srvURL + "/", Route: loadgen.RouteMessages, Batch: 7, Size: 100, APIKey: "s3cret",
		Concurrency: 2, Duration: 200 * time.Millisecond,
	})
	f.mustBeClean(t)

	if res.Succeeded == 0 || res.Succeeded != f.ok.Load() {
		t.Errorf("Succeeded %d, want the %d (> 0) the server accepted", res.Succeeded, f.ok.Load())
	}
	if got, want := res.Messages, res.Succeeded*7; got != want {
		t.Errorf("Messages %d, want Succeeded × 7 = %d", got, want)
	}
	if res.Messages != f.messages.Load() {
		t.Errorf("Messages %d, want the %d the server accepted", res.Messages, f.messages.Load())
	}
	if got, want := res.MessagesPerSecond, 7*res.RequestsPerSecond; got < want*0.999 || got > want*1.001 {
		t.Errorf("MessagesPerSecond %.1f, want 7 × RequestsPerSecond = %.1f", got, want)
	}
	if !strings.HasSuffix(res.URL, "/v1/messages") || res.Route != "messages" || res.Batch != 7 {
		t.Errorf("URL %q, Route %q, Batch %d: want .../v1/messages, messages, 7", res.URL, res.Route, res.Batch)
	}
}

// TestCoordinatedOmission stalls the server's 10th request for 200 ms, with one request in flight
// at a time, and runs the same load open and closed loop.
//
// Open loop at 100 req/s for 0.5 s schedules 50 requests, one every 10 ms. Request 10 (scheduled at
// 90 ms) takes 200 ms; the 19 scheduled at 100..280 ms wait for it and go out at about 290 ms, so
// their latencies, counted from their schedule, are about 190, 180, ..., 10 ms. Sorted, the top
// ten of 50 samples are 110..200 ms: p90 (the 45th) is about 150 ms, and p99 (the 50th, since
// 0.99 × 50 rounds to 50) is the stalled request itself, over 200 ms.
//
// Closed loop with the same stall sends nothing while it waits: the stall is one sample among
// thousands, so max shows 200 ms while p99 stays at the fast answers' level. That is coordinated
// omission; the open loop's numbers are what clients arriving at a steady rate experienced.
func TestCoordinatedOmission(t *testing.T) {
	stall := func(n int64) time.Duration {
		if n == 10 {
			return 200 * time.Millisecond
		}
		return 0
	}
	const stallMs = 200 * ms

	open := (&fakeAPI{size: 8, stall: stall}).start(t)
	o := mustRun(t, loadgen.Config{URL: open.srvURL, Size: 8, Concurrency: 1, Rate: 100, Duration: 500 * time.Millisecond})
	open.mustBeClean(t)
	t.Logf("open loop:   %d requests, latency %+v, sent late %+v", o.Requests, o.Latency, *o.SendDelay)
	if o.Requests != 50 || o.Unsent != 0 || open.requests.Load() != 50 {
		t.Fatalf("open loop: Requests %d, Unsent %d, server saw %d; want 50, 0, 50", o.Requests, o.Unsent, open.requests.Load())
	}
	if o.Latency.Max < stallMs || o.Latency.P99 < stallMs {
		t.Errorf("open loop: max %.1f ms, p99 %.1f ms; want both >= 200 ms (the stall)", o.Latency.Max, o.Latency.P99)
	}
	if o.Latency.P90 < 100*ms {
		t.Errorf("open loop: p90 %.1f ms, want >= 100 ms: the requests queued behind the stall are charged their wait", o.Latency.P90)
	}
	if o.SendDelay.Max < 150*ms {
		t.Errorf("open loop: sent late at most %.1f ms, want >= 150 ms: requests waited for the stalled one", o.SendDelay.Max)
	}
	if o.Latency.P50 >= 50*ms {
		t.Errorf("open loop: p50 %.1f ms, want < 50 ms: most requests were not behind the stall", o.Latency.P50)
	}

	closed := (&fakeAPI{size: 8, stall: stall}).start(t)
	c := mustRun(t, loadgen.Config{URL: closed.srvURL, Size: 8, Concurrency: 1, Duration: time.Second})
	closed.mustBeClean(t)
	t.Logf("closed loop: %d requests, latency %+v", c.Requests, c.Latency)
	if c.Requests < 200 {
		t.Fatalf("closed loop: %d requests in 1 s, want >= 200 for one stalled sample to fall under 1%%", c.Requests)
	}
	if c.Latency.Max < stallMs {
		t.Errorf("closed loop: max %.1f ms, want >= 200 ms (the stalled request itself)", c.Latency.Max)
	}
	if c.Latency.P99 >= 50*ms {
		t.Errorf("closed loop: p99 %.1f ms, want < 50 ms: closed loop hides the stall below max", c.Latency.P99)
	}
}

func TestOpenLoopSchedule(t *testing.T) {
	f := (&fakeAPI{size: 8}).start(t)
	res := mustRun(t, loadgen.Config{URL: f.srvURL, Size: 8, Concurrency: 4, Rate: 200, Duration: 500 * time.Millisecond})
	f.mustBeClean(t)
	// 200 req/s for 0.5 s schedules exactly 100 requests; each was sent or is counted unsent.
	if res.Requests+res.Unsent != 100 || res.Requests != f.requests.Load() {
		t.Errorf("Requests %d + Unsent %d, server saw %d; want 100 scheduled, all that were sent seen", res.Requests, res.Unsent, f.requests.Load())
	}
	if res.Requests < 95 {
		t.Errorf("Requests %d, want about 100", res.Requests)
	}
	if res.Mode != "open" || res.TargetRate != 200 || res.SendDelay == nil {
		t.Errorf("Mode %q, TargetRate %v, SendDelay %v: want open, 200, set", res.Mode, res.TargetRate, res.SendDelay)
	}
	if res.RequestsPerSecond < 150 || res.RequestsPerSecond > 210 {
		t.Errorf("RequestsPerSecond %.1f, want about 200", res.RequestsPerSecond)
	}
}

func TestUnreachable(t *testing.T) {
	addr := sinktest.RefusedAddr(t)
	res, err := run(t, loadgen.Config{URL: "http://" + addr, Duration: time.Minute})
	if !errors.Is(err, loadgen.ErrUnreachable) || res != nil {
		t.Fatalf("Run against a closed port: got %v, %v; want nil, ErrUnreachable", res, err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q, want it to name %s and say refused", err, addr)
	}
}

func TestNoSuccess(t *testing.T) {
	f := (&fakeAPI{size: 8, fail: func(int64) bool { return true }}).start(t)
	res, err := run(t, loadgen.Config{URL: f.srvURL, Size: 8, Concurrency: 2, Duration: 100 * time.Millisecond})
	if !errors.Is(err, loadgen.ErrNoSuccess) {
		t.Fatalf("Run: got error %v, want ErrNoSuccess", err)
	}
	if res == nil || res.Status[503] != f.unavailable.Load() || res.Succeeded != 0 {
		t.Fatalf("Result %+v: want every request counted as 503", res)
	}
	if !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "spool-full") {
		t.Errorf("error %q, want it to say HTTP 503 and quote the problem type", err)
	}
}

func TestTimeoutIsAnError(t *testing.T) {
	f := (&fakeAPI{size: 8, stall: func(int64) time.Duration { return 5 * time.Second }}).start(t)
	res, err := run(t, loadgen.Config{URL: f.srvURL, Size: 8, Concurrency: 2, Duration: 100 * time.Millisecond, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, loadgen.ErrNoSuccess) {
		t.Fatalf("Run: got error %v, want ErrNoSuccess", err)
	}
	if res.Errors["timeout"] == 0 || res.Errors["timeout"] != res.Requests || len(res.Status) != 0 {
		t.Errorf("Errors %v, Status %v, Requests %d: want every request a timeout", res.Errors, res.Status, res.Requests)
	}
	if res.Latency.Count != 0 {
		t.Errorf("latency count %d, want 0: transport errors are not latencies", res.Latency.Count)
	}
	if !strings.Contains(err.Error(), "timeout") {
		t.Errorf("error %q, want it to say timeout", err)
	}
}

func TestInterruptReturnsPartialResult(t *testing.T) {
	f := (&fakeAPI{size: 8}).start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls int
	r, err := loadgen.New(loadgen.Config{
		URL: f.srvURL, Size: 8, Concurrency: 2, Duration: time.Minute,
		ProgressInterval: 50 * time.Millisecond,
		Progress: func(p loadgen.Progress) {
			// Called on Run's goroutine: the test's own, so no synchronization is needed.
			calls++
			if p.Requests > 0 {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := r.Run(ctx)
	if err != nil && !errors.Is(err, loadgen.ErrNoSuccess) {
		t.Fatalf("Run: got error %v, want nil or ErrNoSuccess", err)
	}
	if res == nil || !res.Interrupted {
		t.Fatalf("Result %+v: want a partial result marked Interrupted", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v after the interrupt, want it to return promptly", d)
	}
	if calls == 0 {
		t.Errorf("Progress was never called")
	}
}

func TestProgress(t *testing.T) {
	f := (&fakeAPI{size: 8}).start(t)
	var got []loadgen.Progress
	mustRun(t, loadgen.Config{
		URL: f.srvURL, Size: 8, Concurrency: 2, Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond,
		ProgressInterval: 40 * time.Millisecond,
		Progress:         func(p loadgen.Progress) { got = append(got, p) },
	})
	if len(got) < 3 {
		t.Fatalf("Progress called %d times in 0.4 s at a 40 ms interval, want >= 3", len(got))
	}
	if !got[0].Warmup || got[len(got)-1].Warmup {
		t.Errorf("Warmup first %v, last %v: want true, then false", got[0].Warmup, got[len(got)-1].Warmup)
	}
	last := got[len(got)-1]
	if last.Requests == 0 || last.Succeeded != last.Requests || last.Total != 400*time.Millisecond {
		t.Errorf("last progress %+v: want requests, all succeeded, total 400ms", last)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Elapsed <= got[i-1].Elapsed || got[i].Requests < got[i-1].Requests {
			t.Errorf("progress %d %+v after %+v: want time and counts to grow", i, got[i], got[i-1])
		}
	}
	if s := last.String(); !strings.Contains(s, "req/s") || !strings.Contains(s, "p99") {
		t.Errorf("progress line %q, want req/s and p99", s)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   loadgen.Config
		field string
	}{
		{"scheme", loadgen.Config{URL: "ftp://host"}, "URL"},
		{"no host", loadgen.Config{URL: "http://"}, "URL"},
		{"route path in URL", loadgen.Config{URL: "http://h:1/ServiceAPI/message"}, "URL"},
		{"credentials", loadgen.Config{URL: "http://u:p@h:1"}, "URL"},
		{"route", loadgen.Config{Route: "bulk"}, "Route"},
		{"concurrency", loadgen.Config{Concurrency: -1}, "Concurrency"},
		{"rate", loadgen.Config{Rate: -5}, "Rate"},
		{"duration", loadgen.Config{Duration: -time.Second}, "Duration"},
		{"warmup", loadgen.Config{Warmup: -time.Second}, "Warmup"},
		{"size", loadgen.Config{Size: -1}, "Size"},
		{"batch on compat", loadgen.Config{Batch: 2}, "Batch"},
		{"batch too large", loadgen.Config{Route: loadgen.RouteMessages, Batch: 10001}, "Batch"},
		{"body too large", loadgen.Config{Route: loadgen.RouteMessages, Batch: 10000, Size: 1 << 20}, "Size"},
		{"sender", loadgen.Config{SenderID: "a b"}, "SenderID"},
		{"timeout", loadgen.Config{Timeout: -1}, "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadgen.New(tc.cfg)
			var fe *loadgen.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("New(%+v): got error %v, want a FieldError for %s", tc.cfg, err, tc.field)
			}
		})
	}
	r, err := loadgen.New(loadgen.Config{})
	if err != nil {
		t.Fatalf("New(zero Config): got error %v, want nil", err)
	}
	if got, want := r.Target(), "http://127.0.0.1:8080/ServiceAPI/message"; got != want {
		t.Errorf("Target() = %q, want %q", got, want)
	}
	if got, want := r.BodyBytes(), len(`{"senderId":"bench","value":""}`)+256; got != want {
		t.Errorf("BodyBytes() = %d, want %d", got, want)
	}
}
