package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

// spooled claims everything in the spool and returns it.
func spooled(t *testing.T, sp *spool.Spool) []message.Message {
	t.Helper()
	var out []message.Message
	if err := sp.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		c, err := sp.Claim(context.Background())
		if err == spool.ErrEmpty {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Messages...)
		if err := sp.Ack(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCompatMessageContract(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"Hello world!"}`)
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	// Member order and casing exactly as the prototype's clients read them.
	want := regexp.MustCompile(`^\{"serverTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z","senderId":"01","correlationId":"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","value":"Hello world!","success":true\}\n$`)
	if !want.Match(r.Body) {
		t.Fatalf("body %s does not match the prototype's contract", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got struct{ CorrelationID string }
	_ = json.Unmarshal(r.Body, &got)
	spooled := spooled(t, f.Spool)
	if len(spooled) != 1 || spooled[0].ID.String() != got.CorrelationID || spooled[0].Value != "Hello world!" || spooled[0].Stamp != "onprem" {
		t.Fatalf("spooled %+v, want the acknowledged message", spooled)
	}
}

func TestCompatMessageCaseInsensitive(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	for _, path := range []string{"/serviceapi/message", "/SERVICEAPI/MESSAGE/", "/ServiceAPI/Message"} {
		r := f.Do(t, "POST", path, "application/json; charset=utf-8", `{"SenderId":"01","VALUE":"x"}`)
		if r.Status != 200 {
			t.Errorf("POST %s: status %d: %s", path, r.Status, r.Body)
		}
	}
	for _, path := range []string{"/ServiceAPI/health", "/serviceAPI/health", "/serviceapi/health/"} {
		r := f.Do(t, "GET", path, "", "")
		if r.Status != 200 || len(r.Body) != 0 {
			t.Errorf("GET %s: %d %q, want 200 with an empty body", path, r.Status, r.Body)
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
		{"missing senderId", "POST", "application/json", `{"value":"x"}`, 400, httpapi.ProblemInvalidMessage, "senderId is required"},
		{"missing value", "POST", "application/json", `{"senderId":"01"}`, 400, httpapi.ProblemInvalidMessage, "value is required"},
		{"empty senderId", "POST", "application/json", `{"senderId":"","value":"x"}`, 400, httpapi.ProblemInvalidMessage, "senderId must be"},
		{"empty value", "POST", "application/json", `{"senderId":"01","value":""}`, 400, httpapi.ProblemInvalidMessage, "value must not be empty"},
		{"null value", "POST", "application/json", `{"senderId":"01","value":null}`, 400, httpapi.ProblemInvalidMessage, "value is required"},
		{"number value", "POST", "application/json", `{"senderId":"01","value":5}`, 400, httpapi.ProblemInvalidJSON, "value must be a JSON string"},
		{"null body", "POST", "application/json", `null`, 400, httpapi.ProblemInvalidMessage, "senderId is required"},
		{"empty body", "POST", "application/json", ``, 400, httpapi.ProblemInvalidJSON, "empty body"},
		{"bad JSON", "POST", "application/json", `{"senderId":`, 400, httpapi.ProblemInvalidJSON, "truncated"},
		{"array", "POST", "application/json", `[{"senderId":"01","value":"x"}]`, 400, httpapi.ProblemInvalidJSON, "expected a JSON object"},
		{"trailing data", "POST", "application/json", `{"senderId":"01","value":"x"} {}`, 400, httpapi.ProblemInvalidJSON, "unexpected data"},
		{"invalid UTF-8", "POST", "application/json", "{\"senderId\":\"01\",\"value\":\"\xff\xfe\"}", 400, httpapi.ProblemInvalidJSON, "UTF-8"},
		{"sender with a space", "POST", "application/json", `{"senderId":"plant a","value":"x"}`, 400, httpapi.ProblemInvalidMessage, "senderId must be"},
		{"sender too long", "POST", "application/json", `{"senderId":"` + strings.Repeat("a", 129) + `","value":"x"}`, 400, httpapi.ProblemInvalidMessage, "senderId must be"},
		{"value too large", "POST", "application/json", `{"senderId":"01","value":"` + big + `"}`, 400, httpapi.ProblemInvalidMessage, "over the limit of 1000"},
		{"text/plain", "POST", "text/plain", `{"senderId":"01","value":"x"}`, 415, httpapi.ProblemUnsupportedMedia, "application/json"},
		{"no content type", "POST", "", `{"senderId":"01","value":"x"}`, 415, httpapi.ProblemUnsupportedMedia, "application/json"},
		{"GET", "GET", "", "", 405, httpapi.ProblemMethodNotAllowed, "GET is not allowed"},
	}
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{MaxMessageBytes: 1000}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.Do(t, tt.method, "/ServiceAPI/message", tt.contentType, tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			p := apitest.DecodeProblem(t, r)
			if p.Type != tt.typ || !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("problem %+v, want type %s with %q", p, tt.typ, tt.detail)
			}
			if bytes.Contains(r.Body, []byte("goroutine")) || bytes.Contains(r.Body, []byte(".go:")) {
				t.Fatalf("stack trace leaked: %s", r.Body)
			}
		})
	}
	if got := spooled(t, f.Spool); len(got) != 0 {
		t.Fatalf("a refused request left %d messages in the spool", len(got))
	}
	r := f.Do(t, "GET", "/ServiceAPI/message", "", "")
	if allow := r.Header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow = %q, want POST", allow)
	}
}

// TestCutOffBodyIs408: a body that stops short, by a dropped link or by outlasting the read
// timeout, is the network's fault, not the client's data: 408 (send again), never a final 400,
// and the answer does not name the server's addresses.
func TestCutOffBodyIs408(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{ReadTimeout: 300 * time.Millisecond})
	host := strings.TrimPrefix(f.URL, "http://")
	for _, tt := range []struct {
		name string
		cut  func(c *net.TCPConn)
	}{
		{"slow", func(*net.TCPConn) {}},                          // the read timeout cuts it
		{"cut off", func(c *net.TCPConn) { _ = c.CloseWrite() }}, // the client's side ends early
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.WriteString(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"+`{"senderId":"01",`)
			tt.cut(c.(*net.TCPConn))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			r := apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
			if p := apitest.DecodeProblem(t, r); r.Status != 408 || p.Type != httpapi.ProblemRequestTimeout {
				t.Fatalf("got %d %s, want 408 request-timeout", r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), "127.0.0.1") {
				t.Errorf("the answer names an address: %s", r.Body)
			}
		})
	}
	if got := spooled(t, f.Spool); len(got) != 0 {
		t.Errorf("spooled %d messages from cut-off requests", len(got))
	}
}

func TestRequestTooLarge(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{MaxRequestBytes: 1024}})
	body := `{"senderId":"01","value":"` + strings.Repeat("x", 4096) + `"}`
	for _, tt := range []struct {
		name string
		body io.Reader
	}{
		{"declared length", strings.NewReader(body)},
		{"chunked", io.MultiReader(strings.NewReader(body))}, // no length: read up to the limit only
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.URL+"/v1/messages", tt.body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
			if r.Status != 413 {
				t.Fatalf("status %d, want 413: %s", r.Status, r.Body)
			}
			if p := apitest.DecodeProblem(t, r); p.Type != httpapi.ProblemTooLarge {
				t.Fatalf("type %s", p.Type)
			}
		})
	}
}

func TestIdempotencyKeyGivesTheSameIDOnEitherStamp(t *testing.T) {
	onprem := apitest.NewStamp(t, apitest.Config{API: ingest.Config{Stamp: "onprem"}})
	cloud := apitest.NewStamp(t, apitest.Config{API: ingest.Config{Stamp: "cloud"}})
	id := func(f *apitest.Stamp, key string) string {
		t.Helper()
		r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"21.5"}`, "Idempotency-Key", key)
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		var got struct{ CorrelationID string }
		_ = json.Unmarshal(r.Body, &got)
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
	r1 := onprem.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"x"}`)
	r2 := onprem.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"plant-a","value":"x"}`)
	if bytes.Equal(r1.Body, r2.Body) {
		t.Fatal("two keyless requests got the same answer")
	}
}

func TestBatchRoute(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
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
			r := f.Do(t, "POST", "/v1/messages", tt.contentType, tt.body)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			var got accepted
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Count != tt.n || len(got.Messages) != tt.n || !got.Success {
				t.Fatalf("answer %+v, want %d messages", got, tt.n)
			}
			spooled := spooled(t, f.Spool)
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

// TestBodyTheJSONDecoderWouldChange: what encoding/json accepts while changing it (trailing data
// after one object, a lone surrogate, a field sent twice in two cases) is refused as the body's
// JSON, on both routes, and nothing is spooled.
func TestBodyTheJSONDecoderWouldChange(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	for _, tt := range []struct{ path, ct, body, detail string }{
		{"/v1/messages", "application/json", `{"senderId":"01","value":"x"} {}`, "unexpected data"},
		{"/v1/messages", "application/json", `{"senderId":"01","value":"\ud800"}`, `"value"`},
		{"/v1/messages", "application/json", `{"senderId":"01","value":"a","VALUE":"b"}`, `"VALUE" appears twice`},
		{"/ServiceAPI/message", "application/json", `{"senderId":"01","value":"\udc00"}`, "surrogate"},
		{"/ServiceAPI/message", "application/json", `{"senderId":"01","Value":"a","value":"b"}`, "appears twice"},
	} {
		r := f.Do(t, "POST", tt.path, tt.ct, tt.body)
		if p := apitest.DecodeProblem(t, r); r.Status != 400 || p.Type != httpapi.ProblemInvalidJSON || !strings.Contains(p.Detail, tt.detail) {
			t.Errorf("%s %s: %d %s %q, want 400 invalid-json with %q", tt.path, tt.body, r.Status, p.Type, p.Detail, tt.detail)
		}
	}
	// In a batch, the message at fault is named by its index.
	r := f.Do(t, "POST", "/v1/messages", "application/json", `[{"senderId":"01","value":"ok"},{"senderId":"01","value":"\ud800"}]`)
	if p := apitest.DecodeProblem(t, r); r.Status != 400 || len(p.Errors) != 1 || p.Errors[0].Index != 1 {
		t.Errorf("batch with a lone surrogate in message 1: %d %s", r.Status, r.Body)
	}
	if got := spooled(t, f.Spool); len(got) != 0 {
		t.Fatalf("refused bodies left %d messages", len(got))
	}
}

// TestMessageTooLargeForTheSink: a message whose event the sink would refuse gets 413
// message-too-large on both routes before any 2xx (not dead-lettered later), naming the limit;
// a batch is refused whole, naming each message; one that fits is accepted.
func TestMessageTooLargeForTheSink(t *testing.T) {
	const limit = 4096
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{MaxEventBytes: limit}})
	fits := strings.Repeat("a", 2000)
	tooLarge := strings.Repeat("a", 3500)     // + envelope, headers and 1024 of framing > 4096
	escaped := strings.Repeat(`\u0001`, 1000) // 1,000 bytes here, 6,000 in the envelope
	for _, tt := range []struct {
		path, body string
		want       int
	}{
		{"/ServiceAPI/message", `{"senderId":"01","value":"` + fits + `"}`, 200},
		{"/ServiceAPI/message", `{"senderId":"01","value":"` + tooLarge + `"}`, 413},
		{"/v1/messages", `{"senderId":"01","value":"` + escaped + `"}`, 413},
		{"/v1/messages", `[{"senderId":"01","value":"x"},{"senderId":"01","value":"` + tooLarge + `"}]`, 413},
	} {
		r := f.Do(t, "POST", tt.path, "application/json", tt.body)
		if r.Status != tt.want {
			t.Fatalf("%s (%d bytes): %d %s, want %d", tt.path, len(tt.body), r.Status, r.Body, tt.want)
		}
		if tt.want == 413 {
			p := apitest.DecodeProblem(t, r)
			if p.Type != httpapi.ProblemMessageTooLarge || !strings.Contains(p.Errors[len(p.Errors)-1].Detail, "over the sink's limit of 4096") {
				t.Errorf("%s: %+v, want message-too-large naming the limit", tt.path, p)
			}
			if strings.HasPrefix(tt.body, "[") && (len(p.Errors) != 1 || p.Errors[0].Index != 1) {
				t.Errorf("batch: errors %+v, want message 1 named", p.Errors)
			}
		}
	}
	if got := spooled(t, f.Spool); len(got) != 1 {
		t.Fatalf("spooled %d messages, want only the one that fits", len(got))
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{MaxMessages: 5}})
	r := f.Do(t, "POST", "/v1/messages", "application/json",
		`[{"senderId":"a","value":"ok"},{"senderId":"b"},{"senderId":"c d","value":""},{"senderId":"e","value":7},42]`)
	if r.Status != 400 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	p := apitest.DecodeProblem(t, r)
	var idx []int
	for _, e := range p.Errors {
		idx = append(idx, e.Index)
	}
	if want := []int{1, 2, 2, 3, 4}; !equalInts(idx, want) {
		t.Fatalf("errors at %v, want %v: %+v", idx, want, p.Errors)
	}
	if got := spooled(t, f.Spool); len(got) != 0 {
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
		r := f.Do(t, "POST", "/v1/messages", ct, tt.body)
		if p := apitest.DecodeProblem(t, r); r.Status != 400 || !strings.Contains(p.Detail, tt.detail) {
			t.Errorf("%q: %d %+v, want 400 with %q", tt.body, r.Status, p, tt.detail)
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
	f := apitest.NewStamp(t, apitest.Config{})
	body := `[{"senderId":"a","value":"1"},{"senderId":"a","value":"2","id":"my-id"}]`
	ids := func() []string {
		r := f.Do(t, "POST", "/v1/messages", "application/json", body, "Idempotency-Key", "batch-7")
		var got struct {
			Messages []struct{ CorrelationID string }
		}
		_ = json.Unmarshal(r.Body, &got)
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
		sp := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{MaxBytes: 400}}).Spool
		f := apitest.ServeStamp(t, sp, apitest.Config{API: ingest.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}})
		// ~360 bytes of records fit under the cap; the segment's header and trailer take it past.
		if r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"`+strings.Repeat("x", 330)+`"}`); r.Status != 200 {
			t.Fatalf("first: %d %s", r.Status, r.Body)
		}
		for range 50 {
			r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"`+strings.Repeat("x", 200)+`"}`)
			apitest.Assert503(t, r, httpapi.ProblemSpoolFull)
		}
		apitest.Assert503(t, f.Do(t, "GET", "/readyz", "", ""), httpapi.ProblemSpoolFull)
		// A full spool refuses every request: the log says so once a second, not 50 times.
		if n := strings.Count(logs.String(), `"msg":"append failed"`); n != 1 {
			t.Errorf("%d \"append failed\" lines for 50 refused requests in well under a second, want 1:\n%s", n, logs.String())
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		f := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{FS: ffs}})
		ffs.Inject(fsys.Rule{Op: fsys.OpSync, Match: "/tmp/", Err: syscall.EIO})
		r := f.Do(t, "POST", "/v1/messages", "application/json", `{"senderId":"01","value":"x"}`)
		apitest.Assert503(t, r, httpapi.ProblemSpoolUnavailable)
		ffs.Reset()
		if got := spooled(t, f.Spool); len(got) != 0 {
			t.Fatalf("a 503 left %d messages in the spool", len(got))
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := apitest.NewStamp(t, apitest.Config{})
		_ = f.Spool.Close()
		apitest.Assert503(t, f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`), httpapi.ProblemShuttingDown)
	})
}

func TestProbesAndDrain(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/ServiceAPI/health"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 200 {
			t.Fatalf("%s: %d", path, r.Status)
		}
	}
	f.Drain.Start()
	apitest.Assert503(t, f.Do(t, "GET", "/readyz", "", ""), httpapi.ProblemShuttingDown)
	apitest.Assert503(t, f.Do(t, "GET", "/ServiceAPI/health", "", ""), httpapi.ProblemShuttingDown)
	if r := f.Do(t, "GET", "/healthz", "", ""); r.Status != 200 {
		t.Fatalf("healthz while draining: %d (liveness must hold)", r.Status)
	}
	// Requests still arriving while draining are served.
	if r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`); r.Status != 200 {
		t.Fatalf("POST while draining: %d", r.Status)
	}
}

func TestStatusMetricsAndNotFound(t *testing.T) {
	// Spool gauges come from the spool's periodic scan: scan often, then wait for one.
	f := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{ScanInterval: 5 * time.Millisecond}, Ops: ops.Config{Role: "api", Version: "v9"}})
	f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`)
	var st ops.Status
	for deadline := time.Now().Add(5 * time.Second); ; {
		r := f.Do(t, "GET", "/v1/status", "", "")
		if err := json.Unmarshal(r.Body, &st); err != nil || r.Status != 200 {
			t.Fatalf("status: %d %s %v", r.Status, r.Body, err)
		}
		if st.Spool.Ready.Messages == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the spool's next scan comes
	}
	if st.Stamp != "onprem" || st.Role != "api" || st.Version != "v9" || !st.Ready || st.Spool.Ready.Messages != 1 {
		t.Fatalf("status %+v", st)
	}
	var m apitest.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		m = f.Do(t, "GET", "/metrics", "", "")
		if bytes.Contains(m.Body, []byte(`bridgehead_spool_messages{state="ready"} 1`)) || time.Now().After(deadline) {
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
		if !bytes.Contains(m.Body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	r := f.Do(t, "GET", "/nope", "", "")
	if p := apitest.DecodeProblem(t, r); r.Status != 404 || p.Type != httpapi.ProblemNotFound {
		t.Fatalf("unknown path: %d %+v", r.Status, p)
	}
}

func TestForwarderOnlyServesNoMessages(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{MaxBytes: 1}, NoAPI: true, NotFoundHint: "this instance runs the forwarder role only"})
	r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"01","value":"x"}`)
	if p := apitest.DecodeProblem(t, r); r.Status != 404 || !strings.Contains(p.Detail, "forwarder role") {
		t.Fatalf("message route on a forwarder: %d %+v", r.Status, p)
	}
	// A full spool does not make a forwarder unready: draining it is its job.
	if r := f.Do(t, "GET", "/readyz", "", ""); r.Status != 200 {
		t.Fatalf("/readyz: %d %s", r.Status, r.Body)
	}
}

// TestInflightBytesBound: request bodies being read and decoded at once never pass
// MaxInflightBytes: a request that would is answered 503 server-busy at once (retryable),
// declared length or not, and the bytes come back when a request is done.
func TestInflightBytesBound(t *testing.T) {
	const maxReq = 1 << 20
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{MaxRequestBytes: maxReq, MaxInflightBytes: 2 * maxReq}})
	host := strings.TrimPrefix(f.URL, "http://")
	// Two slow requests of the largest size hold the whole budget.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", maxReq)
		held = append(held, c)
	}
	one := `{"senderId":"01","value":"v"}`
	eventually(t, "the held requests to take the budget", func() bool {
		return f.Do(t, "POST", "/v1/messages", "application/json", one).Status == 503
	})
	r := f.Do(t, "POST", "/v1/messages", "application/json", one)
	apitest.Assert503(t, r, httpapi.ProblemBusy)
	// Without a declared length too: the bytes are taken as they are read.
	req, _ := http.NewRequest("POST", f.URL+"/v1/messages", io.MultiReader(strings.NewReader(one)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("chunked request while the budget is taken: %d, want 503", resp.StatusCode)
	}
	// One slow request ends (cut off): its bytes come back, and a small request fits again.
	_ = held[0].Close()
	eventually(t, "the budget to come back", func() bool {
		return f.Do(t, "POST", "/v1/messages", "application/json", one).Status == 200
	})
	if m := f.Do(t, "GET", "/metrics", "", ""); !regexp.MustCompile(`bridgehead_ingest_busy_rejections_total [1-9]`).Match(m.Body) {
		t.Errorf("busy rejections not counted")
	}
}

// eventually polls cond every 5 ms for up to 20 s (a loaded CI machine is slow).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
