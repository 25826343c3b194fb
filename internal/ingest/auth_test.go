package ingest_test

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
)

// Keys of the principals in testPrincipals.
const (
	supplierKey = "supplier-a-key-0123456789abcdef"
	supplierB   = "supplier-b-key-0123456789abcdef"
	adminKey    = "ops-admin-key-0123456789abcdef"
)

func testPrincipals(t *testing.T) func() *auth.Principals {
	t.Helper()
	ps, err := auth.Parse([]byte(`principals:
  - name: supplier-a
    keySha256: ` + auth.HashKey(supplierKey) + `
    senders: ["01", "plant-a-*"]
  - name: supplier-b
    keySha256: ` + auth.HashKey(supplierB) + `
    senders: ["02"]
  - name: ops
    keySha256: ` + auth.HashKey(adminKey) + `
    senders: ["*"]
    role: admin
`))
	if err != nil {
		t.Fatal(err)
	}
	return func() *auth.Principals { return ps }
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func TestAuthRequiredKeys(t *testing.T) {
	var logs logbuf.Buffer
	sp := apitest.NewStamp(t, apitest.Config{}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}, Guard: httpapi.GuardConfig{Mode: httpapi.AuthRequired, Principals: testPrincipals(t),
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}})
	one := `{"senderId":"01","value":"v"}`

	r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", one)
	if p := apitest.DecodeProblem(t, r); r.Status != 401 || p.Type != httpapi.ProblemUnauthorized || r.Header.Get("WWW-Authenticate") != `Bearer realm="bridgehead"` {
		t.Errorf("no key: %d %s %q, want 401 unauthorized with WWW-Authenticate", r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
	}
	r = f.Do(t, "POST", "/v1/messages", "application/json", one, bearer("wrong-key-0123456789")...)
	if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("wrong key: %d %q, want 401 with error=invalid_token", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	r = f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"02","value":"v"}`, bearer(supplierKey)...)
	if p := apitest.DecodeProblem(t, r); r.Status != 403 || p.Type != httpapi.ProblemForbidden || !strings.Contains(p.Detail, `"02"`) || !strings.Contains(p.Detail, "supplier-a") {
		t.Errorf("foreign sender: %d %s, want 403 naming the senderId and the principal", r.Status, r.Body)
	}
	// The prototype's contract is unchanged for a client with a valid key.
	r = f.Do(t, "POST", "/ServiceAPI/message", "application/json", one, bearer(supplierKey)...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"success":true`) {
		t.Errorf("right key: %d %s, want 200", r.Status, r.Body)
	}
	r = f.Do(t, "POST", "/v1/messages", "application/json", `{"senderId":"plant-a-7","value":"v"}`, "X-Api-Key", supplierKey)
	if r.Status != 200 {
		t.Errorf("X-Api-Key and a glob sender: %d %s, want 200", r.Status, r.Body)
	}
	// One foreign senderId refuses the whole batch.
	r = f.Do(t, "POST", "/v1/messages", "application/json",
		`[{"senderId":"01","value":"a"},{"senderId":"02","value":"b"},{"senderId":"plant-a-1","value":"c"}]`, bearer(supplierKey)...)
	if p := apitest.DecodeProblem(t, r); r.Status != 403 || len(p.Errors) != 1 || p.Errors[0].Index != 1 || !strings.Contains(p.Detail, "nothing was accepted") {
		t.Errorf("batch with a foreign sender: %d %s, want 403 naming index 1", r.Status, r.Body)
	}
	if got := len(spooled(t, f.Spool)); got != 2 {
		t.Errorf("spooled %d messages, want the 2 accepted (nothing of the refused batch)", got)
	}

	// Admin routes: 401 without a key, 403 for a sender, 200 for an admin.
	if r := f.Do(t, "GET", "/v1/dead-letters", "", ""); r.Status != 401 {
		t.Errorf("dead letters without a key: %d, want 401", r.Status)
	}
	if r := f.Do(t, "POST", "/v1/dead-letters/requeue-all", "", "", bearer(supplierKey)...); r.Status != 403 || !strings.Contains(apitest.DecodeProblem(t, r).Detail, "admin") {
		t.Errorf("requeue-all as a sender: %d %s, want 403", r.Status, r.Body)
	}
	if r := f.Do(t, "GET", "/v1/dead-letters", "", "", bearer(adminKey)...); r.Status != 200 {
		t.Errorf("dead letters as admin: %d %s, want 200", r.Status, r.Body)
	}
	// Probes stay open; status and metrics too unless MetricsAuth.
	for _, path := range []string{"/healthz", "/readyz", "/serviceAPI/health", "/metrics", "/v1/status"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 200 {
			t.Errorf("GET %s without a key: %d, want 200", path, r.Status)
		}
	}
	metrics := string(f.Do(t, "GET", "/metrics", "", "").Body)
	for _, want := range []string{`bridgehead_http_auth_failures_total{reason="missing"}`, `bridgehead_http_auth_failures_total{reason="invalid_key"}`, `bridgehead_http_auth_failures_total{reason="forbidden"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The refusals are in the audit log, named by reason and client address, but a client
	// hammering with a bad key cannot flood it: at most a line a second per reason.
	for range 50 {
		f.Do(t, "POST", "/v1/messages", "application/json", one, bearer("wrong-key-0123456789")...)
	}
	if n := strings.Count(logs.String(), `"reason":"invalid_key"`); n < 1 || n > 2 {
		t.Errorf("%d log lines for 51 invalid keys, want 1 or 2 (a line a second at most)", n)
	}
	if !strings.Contains(logs.String(), `"msg":"request refused","reason":"forbidden","remote":"127.0.0.1"`) ||
		!strings.Contains(logs.String(), `"principal":"supplier-a"`) {
		t.Errorf("the 403 is not in the audit log with the client and the principal:\n%s", logs.String())
	}
	for _, secret := range []string{supplierKey, adminKey, "wrong-key-0123456789", auth.HashKey(supplierKey), auth.HashKey(adminKey)} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a key or key hash appears in the log:\n%s", logs.String())
		}
	}
}

func TestAuthOptionalAndMetricsAuth(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{Guard: httpapi.GuardConfig{Mode: httpapi.AuthOptional, Principals: testPrincipals(t), MetricsAuth: true}})
	one := `{"senderId":"02","value":"v"}`
	if r := f.Do(t, "POST", "/v1/messages", "application/json", one); r.Status != 200 {
		t.Errorf("anonymous under optional: %d %s, want 200", r.Status, r.Body)
	}
	if r := f.Do(t, "POST", "/v1/messages", "application/json", one, bearer("wrong-key-0123456789")...); r.Status != 401 {
		t.Errorf("bad key under optional: %d, want 401", r.Status)
	}
	if r := f.Do(t, "POST", "/v1/messages", "application/json", one, bearer(supplierKey)...); r.Status != 403 {
		t.Errorf("key bound to other senders under optional: %d, want 403", r.Status)
	}
	for _, path := range []string{"/metrics", "/v1/status"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 401 {
			t.Errorf("GET %s without a key under MetricsAuth: %d, want 401", path, r.Status)
		}
		if r := f.Do(t, "GET", path, "", "", bearer(supplierB)...); r.Status != 200 {
			t.Errorf("GET %s with a sender key under MetricsAuth: %d, want 200", path, r.Status)
		}
	}
}

func TestAuthOffAllowsAdmin(t *testing.T) {
	sp := apitest.NewStamp(t, apitest.Config{}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}})
	if r := f.Do(t, "GET", "/v1/dead-letters", "", "", bearer("anything")...); r.Status != 200 {
		t.Errorf("dead letters with auth off: %d, want 200 (keys are ignored)", r.Status)
	}
}

func TestRateLimit(t *testing.T) {
	// 20 messages/s, burst 4: a token comes back every 50 ms.
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{RateLimit: 20, RateBurst: 4}, Guard: httpapi.GuardConfig{Mode: httpapi.AuthOptional, Principals: testPrincipals(t)}})
	send := func(n int, key string) apitest.Response {
		var b strings.Builder
		b.WriteString("[")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"senderId":"01","value":"` + strconv.Itoa(i) + `"}`)
		}
		b.WriteString("]")
		var h []string
		if key != "" {
			h = bearer(key)
		}
		return f.Do(t, "POST", "/v1/messages", "application/json", b.String(), h...)
	}
	if r := send(3, supplierKey); r.Status != 200 {
		t.Fatalf("3 of a burst of 4: %d %s", r.Status, r.Body)
	}
	// A batch counts its messages: 2 more do not fit in the 1 token left.
	r := send(2, supplierKey)
	if p := apitest.DecodeProblem(t, r); r.Status != 429 || p.Type != httpapi.ProblemRateLimited || r.Header.Get("Retry-After") != "1" || !strings.Contains(p.Detail, "supplier-a") {
		t.Errorf("over the rate: %d %s Retry-After %q, want 429 rate-limited naming the principal, Retry-After 1", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r := send(5, ""); r.Status != 429 || !strings.Contains(apitest.DecodeProblem(t, r).Detail, "exceeds the burst") {
		t.Errorf("a batch over the burst: %d %s, want 429 saying split it", r.Status, r.Body)
	}
	// Other clients have their own buckets: another principal, and anonymous clients by IP.
	if r := send(4, "ops-admin-key-0123456789abcdef"); r.Status != 200 {
		t.Errorf("another principal: %d, want 200", r.Status)
	}
	if r := send(4, ""); r.Status != 200 {
		t.Errorf("anonymous client: %d, want 200", r.Status)
	}
	if m := string(f.Do(t, "GET", "/metrics", "", "").Body); !strings.Contains(m, "bridgehead_ingest_rate_limited_messages_total 7") {
		t.Errorf("rate_limited_messages_total is not 7 (2 + 5 refused):\n%s", grepLines(m, "rate_limited"))
	}
	// It recovers: 2 tokens are back after 100 ms.
	deadline := time.Now().Add(5 * time.Second)
	for send(2, supplierKey).Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the rate limit did not recover")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestCORS(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{CORSOrigins: []string{"https://tester.example"}}})
	for _, path := range []string{"/ServiceAPI/message", "/v1/messages"} {
		r := f.Do(t, "OPTIONS", path, "", "", "Origin", "https://tester.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "content-type")
		if r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://tester.example" ||
			!strings.Contains(strings.ToLower(r.Header.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Errorf("preflight %s: %d %v, want 204 allowing the origin and content-type", path, r.Status, r.Header)
		}
		r = f.Do(t, "POST", path, "application/json", `{"senderId":"01","value":"v"}`, "Origin", "https://tester.example")
		if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://tester.example" {
			t.Errorf("POST %s from the allowed origin: %d, ACAO %q", path, r.Status, r.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	r := f.Do(t, "OPTIONS", "/v1/messages", "", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if r.Status == 204 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d ACAO %q, want no CORS grant", r.Status, r.Header.Get("Access-Control-Allow-Origin"))
	}
	none := apitest.NewStamp(t, apitest.Config{})
	if r := none.Do(t, "POST", "/v1/messages", "application/json", `{"senderId":"01","value":"v"}`, "Origin", "https://tester.example"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS headers without --cors-origins")
	}
}
