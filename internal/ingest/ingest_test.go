package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

type fixture struct {
	sp  *spool.Spool
	api *ingest.Server
	srv *httptest.Server
}

func newFixture(t *testing.T, sopts spool.Options, cfg ingest.Config) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	sopts.Registerer = reg
	sp, err := spool.Open(t.TempDir(), sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	cfg.Registerer, cfg.Gatherer = reg, reg
	return serveFixture(t, sp, cfg)
}

// serveFixture serves an API built from cfg on sp.
func serveFixture(t *testing.T, sp *spool.Spool, cfg ingest.Config) *fixture {
	t.Helper()
	cfg.Spool = sp
	if cfg.Stamp == "" {
		cfg.Stamp = "onprem"
	}
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	api, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &fixture{sp: sp, api: api, srv: srv}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t *testing.T, method, path, contentType, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// spooled claims everything in the spool and returns it.
func (f *fixture) spooled(t *testing.T) []message.Message {
	t.Helper()
	var out []message.Message
	if err := f.sp.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		c, err := f.sp.Claim(context.Background())
		if err == spool.ErrEmpty {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Messages...)
		if err := f.sp.Ack(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeProblem(t *testing.T, r response) ingest.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p ingest.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Type == "" || p.Title == "" {
		t.Fatalf("problem %+v for status %d", p, r.status)
	}
	return p
}

func TestCompatMessageContract(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"Hello world!"}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// Member order and casing exactly as the prototype's clients read them.
	want := regexp.MustCompile(`^\{"serverTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z","senderId":"01","correlationId":"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","value":"Hello world!","success":true\}\n$`)
	if !want.Match(r.body) {
		t.Fatalf("body %s does not match the prototype's contract", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got struct{ CorrelationID string }
	_ = json.Unmarshal(r.body, &got)
	spooled := f.spooled(t)
	if len(spooled) != 1 || spooled[0].ID.String() != got.CorrelationID || spooled[0].Value != "Hello world!" || spooled[0].Stamp != "onprem" {
		t.Fatalf("spooled %+v, want the acknowledged message", spooled)
	}
}

func TestCompatMessageCaseInsensitive(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	for _, path := range []string{"/serviceapi/message", "/SERVICEAPI/MESSAGE/", "/ServiceAPI/Message"} {
		r := f.do(t, "POST", path, "application/json; charset=utf-8", `{"SenderId":"01","VALUE":"x"}`)
		if r.status != 200 {
			t.Errorf("POST %s: status %d: %s", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/ServiceAPI/health", "/serviceAPI/health", "/serviceapi/health/"} {
		r := f.do(t, "GET", path, "", "")
		if r.status != 200 || len(r.body) != 0 {
			t.Errorf("GET %s: %d %q, want 200 with an empty body", path, r.status, r.body)
		}
	}
}

func TestCompatMessageErrors(t *testing.T) {
	big := strings.Repeat("x", 2000)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		typ         string
		detail      string
	}{
		{"missing senderId", "POST", "application/json", `{"value":"x"}`, 400, ingest.ProblemInvalidMessage, "senderId is required"},
		{"missing value", "POST", "application/json", `{"senderId":"01"}`, 400, ingest.ProblemInvalidMessage, "value is required"},
		{"empty senderId", "POST", "application/json", `{"senderId":"","value":"x"}`, 400, ingest.ProblemInvalidMessage, "senderId must be"},
		{"empty value", "POST", "application/json", `{"senderId":"01","value":""}`, 400, ingest.ProblemInvalidMessage, "value must not be empty"},
		{"null value", "POST", "application/json", `{"senderId":"01","value":null}`, 400, ingest.ProblemInvalidMessage, "value is required"},
		{"number value", "POST", "application/json", `{"senderId":"01","value":5}`, 400, ingest.ProblemInvalidJSON, "value must be a JSON string"},
		{"null body", "POST", "application/json", `null`, 400, ingest.ProblemInvalidMessage, "senderId is required"},
		{"empty body", "POST", "application/json", ``, 400, ingest.ProblemInvalidJSON, "empty body"},
		{"bad JSON", "POST", "application/json", `{"senderId":`, 400, ingest.ProblemInvalidJSON, "truncated"},
		{"array", "POST", "application/json", `[{"senderId":"01","value":"x"}]`, 400, ingest.ProblemInvalidJSON, "expected a JSON object"},
		{"trailing data", "POST", "application/json", `{"senderId":"01","value":"x"} {}`, 400, ingest.ProblemInvalidJSON, "unexpected data"},
		{"invalid UTF-8", "POST", "application/json", "{\"senderId\":\"01\",\"value\":\"\xff\xfe\"}", 400, ingest.ProblemInvalidJSON, "UTF-8"},
		{"sender with a space", "POST", "application/json", `{"senderId":"plant a","value":"x"}`, 400, ingest.ProblemInvalidMessage, "senderId must be"},
		{"sender too long", "POST", "application/json", `{"senderId":"` + strings.Repeat("a", 129) + `","value":"x"}`, 400, ingest.ProblemInvalidMessage, "senderId must be"},
		{"value too large", "POST", "application/json", `{"senderId":"01","value":"` + big + `"}`, 400, ingest.ProblemInvalidMessage, "over the limit of 1000"},
		{"text/plain", "POST", "text/plain", `{"senderId":"01","value":"x"}`, 415, ingest.ProblemUnsupportedMedia, "application/json"},
		{"no content type", "POST", "", `{"senderId":"01","value":"x"}`, 415, ingest.ProblemUnsupportedMedia, "application/json"},
		{"GET", "GET", "", "", 405, ingest.ProblemMethodNotAllowed, "GET is not allowed"},
	}
	f := newFixture(t, spool.Options{}, ingest.Config{MaxMessageBytes: 1000})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, tt.method, "/ServiceAPI/message", tt.contentType, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			p := decodeProblem(t, r)
			if p.Type != tt.typ || !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("problem %+v, want type %s with %q", p, tt.typ, tt.detail)
			}
			if bytes.Contains(r.body, []byte("goroutine")) || bytes.Contains(r.body, []byte(".go:")) {
				t.Fatalf("stack trace leaked: %s", r.body)
			}
		})
	}
	if got := f.spooled(t); len(got) != 0 {
		t.Fatalf("a refused request left %d messages in the spool", len(got))
	}
	r := f.do(t, "GET", "/ServiceAPI/message", "", "")
	if allow := r.header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow = %q, want POST", allow)
	}
}

func TestRequestTooLarge(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{MaxRequestBytes: 1024})
	body := `{"senderId":"01","value":"` + strings.Repeat("x", 4096) + `"}`
	for _, tt := range []struct {
		name string
		body io.Reader
	}{
		{"declared length", strings.NewReader(body)},
		{"chunked", io.MultiReader(strings.NewReader(body))}, // no length: read up to the limit only
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", tt.body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{resp.StatusCode, resp.Header, b}
			if r.status != 413 {
				t.Fatalf("status %d, want 413: %s", r.status, r.body)
			}
			if p := decodeProblem(t, r); p.Type != ingest.ProblemTooLarge {
				t.Fatalf("type %s", p.Type)
			}
		})
	}
}

func TestIdempotencyKeyGivesTheSameIDOnEitherStamp(t *testing.T) {
	onprem := newFixture(t, spool.Options{}, ingest.Config{Stamp: "onprem"})
	cloud := newFixture(t, spool.Options{}, ingest.Config{Stamp: "cloud"})
	id := func(f *fixture, key string) string {
		t.Helper()
		r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"21.5"}`, "Idempotency-Key", key)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var got struct{ CorrelationID string }
		_ = json.Unmarshal(r.body, &got)
		return got.CorrelationID
	}
	a, b := id(onprem, "reading-42"), id(cloud, "reading-42")
	if a != b {
		t.Fatalf("same key on two stamps: %s and %s", a, b)
	}
	if u := uuid.MustParse(a); u.Version() != 5 {
		t.Fatalf("derived id %s is version %d, want 5", a, u.Version())
	}
	if c := id(onprem, "reading-43"); c == a {
		t.Fatal("different keys gave the same id")
	}
	if want := uuid.NewSHA1(ingest.CorrelationNamespace, []byte("plant-a\nreading-42")).String(); a != want {
		t.Fatalf("id %s, want %s (documented derivation)", a, want)
	}
	// Without a key: fresh time-ordered ids.
	r1 := onprem.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"x"}`)
	r2 := onprem.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"x"}`)
	if bytes.Equal(r1.body, r2.body) {
		t.Fatal("two keyless requests got the same answer")
	}
}

func TestBatchRoute(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	type accepted struct {
		Count    int
		Success  bool
		Messages []struct{ CorrelationID, SenderID string }
	}
	tests := []struct {
		name, contentType, body string
		n                       int
	}{
		{"single object", "application/json", `{"senderId":"a","value":"1"}`, 1},
		{"array", "application/json", `[{"senderId":"a","value":"1"},{"senderId":"b","value":"2","properties":{"unit":"C"}}]`, 2},
		{"ndjson", "application/x-ndjson", "{\"senderId\":\"a\",\"value\":\"1\"}\n\n{\"senderId\":\"b\",\"value\":\"2\"}\n{\"senderId\":\"c\",\"value\":\"3\"}", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, "POST", "/v1/messages", tt.contentType, tt.body)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var got accepted
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Count != tt.n || len(got.Messages) != tt.n || !got.Success {
				t.Fatalf("answer %+v, want %d messages", got, tt.n)
			}
			spooled := f.spooled(t)
			if len(spooled) != tt.n {
				t.Fatalf("spooled %d, want %d", len(spooled), tt.n)
			}
			for i, m := range spooled {
				if m.ID.String() != got.Messages[i].CorrelationID {
					t.Errorf("message %d: spooled id %s, answered %s", i, m.ID, got.Messages[i].CorrelationID)
				}
			}
		})
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{MaxMessages: 5})
	r := f.do(t, "POST", "/v1/messages", "application/json",
		`[{"senderId":"a","value":"ok"},{"senderId":"b"},{"senderId":"c d","value":""},{"senderId":"e","value":7},42]`)
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	p := decodeProblem(t, r)
	var idx []int
	for _, e := range p.Errors {
		idx = append(idx, e.Index)
	}
	if want := []int{1, 2, 2, 3, 4}; !equalInts(idx, want) {
		t.Fatalf("errors at %v, want %v: %+v", idx, want, p.Errors)
	}
	if got := f.spooled(t); len(got) != 0 {
		t.Fatalf("a refused batch left %d messages", len(got))
	}
	for _, tt := range []struct{ body, detail string }{
		{`[]`, "empty array"},
		{strings.Repeat(`{"senderId":"a","value":"x"}`+"\n", 6), "more than 5"},
	} {
		ct := "application/json"
		if strings.HasPrefix(tt.body, "{") {
			ct = "application/x-ndjson"
		}
		r := f.do(t, "POST", "/v1/messages", ct, tt.body)
		if p := decodeProblem(t, r); r.status != 400 || !strings.Contains(p.Detail, tt.detail) {
			t.Errorf("%q: %d %+v, want 400 with %q", tt.body, r.status, p, tt.detail)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBatchIdempotency(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	body := `[{"senderId":"a","value":"1"},{"senderId":"a","value":"2","id":"my-id"}]`
	ids := func() []string {
		r := f.do(t, "POST", "/v1/messages", "application/json", body, "Idempotency-Key", "batch-7")
		var got struct {
			Messages []struct{ CorrelationID string }
		}
		_ = json.Unmarshal(r.body, &got)
		return []string{got.Messages[0].CorrelationID, got.Messages[1].CorrelationID}
	}
	first, again := ids(), ids()
	if first[0] != again[0] || first[1] != again[1] {
		t.Fatalf("retried batch got new ids: %v then %v", first, again)
	}
	if want := uuid.NewSHA1(ingest.CorrelationNamespace, []byte("a\nbatch-7/0")).String(); first[0] != want {
		t.Errorf("header key: id %s, want %s", first[0], want)
	}
	if want := uuid.NewSHA1(ingest.CorrelationNamespace, []byte("a\nmy-id")).String(); first[1] != want {
		t.Errorf("per-message id: %s, want %s", first[1], want)
	}
}

func TestSpoolTroubleIs503WithRetryAfter(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		var logs logbuf.Buffer
		sp := newFixture(t, spool.Options{MaxBytes: 400}, ingest.Config{}).sp
		f := serveFixture(t, sp, ingest.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		// ~360 bytes of records fit under the cap; the segment's header and trailer take it past.
		if r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"`+strings.Repeat("x", 330)+`"}`); r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		for range 50 {
			r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"`+strings.Repeat("x", 200)+`"}`)
			assert503(t, r, ingest.ProblemSpoolFull)
		}
		assert503(t, f.do(t, "GET", "/readyz", "", ""), ingest.ProblemSpoolFull)
		// A full spool refuses every request: the log says so once a second, not 50 times.
		if n := strings.Count(logs.String(), `"msg":"append failed"`); n != 1 {
			t.Errorf("%d \"append failed\" lines for 50 refused requests in well under a second, want 1:\n%s", n, logs.String())
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		f := newFixture(t, spool.Options{FS: ffs}, ingest.Config{})
		ffs.Inject(fsys.Rule{Op: fsys.OpSync, Match: "/tmp/", Err: syscall.EIO})
		r := f.do(t, "POST", "/v1/messages", "application/json", `{"senderId":"01","value":"x"}`)
		assert503(t, r, ingest.ProblemSpoolUnavailable)
		ffs.Reset()
		if got := f.spooled(t); len(got) != 0 {
			t.Fatalf("a 503 left %d messages in the spool", len(got))
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := newFixture(t, spool.Options{}, ingest.Config{})
		_ = f.sp.Close()
		assert503(t, f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`), ingest.ProblemShuttingDown)
	})
}

func assert503(t *testing.T, r response, typ string) {
	t.Helper()
	if r.status != 503 {
		t.Fatalf("status %d, want 503: %s", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q, want 5", ra)
	}
	if p := decodeProblem(t, r); p.Type != typ {
		t.Fatalf("type %s, want %s", p.Type, typ)
	}
}

func TestProbesAndDrain(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/ServiceAPI/health"} {
		if r := f.do(t, "GET", path, "", ""); r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
	}
	f.api.Drain()
	assert503(t, f.do(t, "GET", "/readyz", "", ""), ingest.ProblemShuttingDown)
	assert503(t, f.do(t, "GET", "/ServiceAPI/health", "", ""), ingest.ProblemShuttingDown)
	if r := f.do(t, "GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz while draining: %d (liveness must hold)", r.status)
	}
	// Requests still arriving while draining are served.
	if r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`); r.status != 200 {
		t.Fatalf("POST while draining: %d", r.status)
	}
}

func TestStatusMetricsAndNotFound(t *testing.T) {
	// Spool gauges come from the spool's periodic scan: scan often, then wait for one.
	f := newFixture(t, spool.Options{ScanInterval: 5 * time.Millisecond}, ingest.Config{Role: "api", Version: "v9"})
	f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`)
	var st ingest.Status
	for deadline := time.Now().Add(5 * time.Second); ; {
		r := f.do(t, "GET", "/v1/status", "", "")
		if err := json.Unmarshal(r.body, &st); err != nil || r.status != 200 {
			t.Fatalf("status: %d %s %v", r.status, r.body, err)
		}
		if st.Spool.Ready.Messages == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the spool's next scan comes
	}
	if st.Stamp != "onprem" || st.Role != "api" || st.Version != "v9" || !st.Ready || st.Spool.Ready.Messages != 1 {
		t.Fatalf("status %+v", st)
	}
	var m response
	for deadline := time.Now().Add(5 * time.Second); ; {
		m = f.do(t, "GET", "/metrics", "", "")
		if bytes.Contains(m.body, []byte(`bridgehead_spool_messages{state="ready"} 1`)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the spool's next scan comes
	}
	for _, want := range []string{
		`bridgehead_http_requests_total{code="200",route="compat_message"} 1`,
		`bridgehead_ingest_messages_accepted_total 1`,
		"bridgehead_ready 1\n",
		`bridgehead_spool_messages{state="ready"} 1`,
		`bridgehead_spool_commit_duration_seconds_count{result="ok"} 1`,
		"bridgehead_spool_commits_total 1\n",
		"bridgehead_spool_committed_messages_total 1\n",
		"bridgehead_spool_commit_errors_total 0\n",
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	r := f.do(t, "GET", "/nope", "", "")
	if p := decodeProblem(t, r); r.status != 404 || p.Type != ingest.ProblemNotFound {
		t.Fatalf("unknown path: %d %+v", r.status, p)
	}
}

func TestForwarderOnlyServesNoMessages(t *testing.T) {
	f := newFixture(t, spool.Options{MaxBytes: 1}, ingest.Config{ForwarderOnly: true})
	r := f.do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`)
	if p := decodeProblem(t, r); r.status != 404 || !strings.Contains(p.Detail, "forwarder role") {
		t.Fatalf("message route on a forwarder: %d %+v", r.status, p)
	}
	// A full spool does not make a forwarder unready: draining it is its job.
	if r := f.do(t, "GET", "/readyz", "", ""); r.status != 200 {
		t.Fatalf("/readyz: %d %s", r.status, r.body)
	}
}
