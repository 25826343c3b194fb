package ingest_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// spooledByValue is spooled in the order of the messages' values: the spool hands segments out
// by priority, and the tests' values are in the order they were sent.
func spooledByValue(t *testing.T, sp *spool.Spool) []message.Message {
	got := spooled(t, sp)
	slices.SortFunc(got, func(a, b message.Message) int { return strings.Compare(a.Value, b.Value) })
	return got
}

// TestPriorityAndTTL: a message's priority and expiry come from its own members on
// /v1/messages, else from the Priority and Message-Ttl headers (the only way on the compat
// route, whose body has no room for them), else from the stamp's defaults; the expiry is
// reckoned from the time the stamp received the message.
func TestPriorityAndTTL(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	two := uint8(2)
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{
		DefaultPriority: &two, MessageTTL: time.Hour, Now: func() time.Time { return at },
	}})
	type want struct {
		priority uint8
		ttl      time.Duration
	}
	tests := []struct {
		name, path, body string
		header           []string
		want             []want
	}{
		{"compat, the stamp's defaults", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, nil,
			[]want{{2, time.Hour}}},
		{"compat, headers", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, []string{"Priority", "0", "Message-Ttl", "90"},
			[]want{{0, 90 * time.Second}}},
		{"compat, a browser's RFC 9218 Priority header is not ours", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, []string{"Priority", "u=1, i"},
			[]want{{2, time.Hour}}},
		{"batch, members over headers over defaults", "/v1/messages",
			`[{"senderId":"a","value":"1","priority":9,"ttl":5},{"senderId":"a","value":"2"},{"senderId":"a","value":"3","priority":1}]`,
			[]string{"Priority", "7", "Message-Ttl", "60"},
			[]want{{9, 5 * time.Second}, {7, time.Minute}, {1, time.Minute}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.Do(t, "POST", tt.path, "application/json", tt.body, tt.header...)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			got := spooledByValue(t, f.Spool)
			if len(got) != len(tt.want) {
				t.Fatalf("spooled %d messages, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if got[i].Priority != w.priority || !got[i].ExpiresAt.Equal(at.Add(w.ttl)) {
					t.Errorf("message %d: priority %d, expires %v; want %d, %v", i, got[i].Priority, got[i].ExpiresAt, w.priority, at.Add(w.ttl))
				}
			}
		})
	}
}

// TestNoTTLNeverExpires: without --message-ttl or a ttl of its own a message has no expiry.
func TestNoTTLNeverExpires(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	if r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"a","value":"1"}`); r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	got := spooled(t, f.Spool)
	if len(got) != 1 || !got[0].ExpiresAt.IsZero() || got[0].Priority != message.DefaultPriority {
		t.Fatalf("spooled %+v, want one message at priority %d without expiry", got, message.DefaultPriority)
	}
}

// TestBadPriorityAndTTL: out-of-range values are 400 invalid-message naming the member or
// header, and nothing is spooled.
func TestBadPriorityAndTTL(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	tests := []struct {
		name, path, body string
		header           []string
		field            string
	}{
		{"priority header", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, []string{"Priority", "10"}, ""},
		{"ttl header", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, []string{"Message-Ttl", "0"}, ""},
		{"ttl header not a number", "/v1/messages", `{"senderId":"a","value":"1"}`, []string{"Message-Ttl", "1h"}, ""},
		{"priority member", "/v1/messages", `[{"senderId":"a","value":"1"},{"senderId":"a","value":"1","priority":12}]`, nil, "priority"},
		{"ttl member", "/v1/messages", `[{"senderId":"a","value":"1","ttl":-5}]`, nil, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.Do(t, "POST", tt.path, "application/json", tt.body, tt.header...)
			p := apitest.DecodeProblem(t, r)
			if r.Status != 400 || p.Type != httpapi.ProblemInvalidMessage {
				t.Fatalf("status %d type %s, want 400 %s: %s", r.Status, p.Type, httpapi.ProblemInvalidMessage, r.Body)
			}
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[len(p.Errors)-1].Field != tt.field) {
				t.Fatalf("errors %+v, want one naming %s", p.Errors, tt.field)
			}
			if got := spooled(t, f.Spool); len(got) != 0 {
				t.Fatalf("spooled %d messages of a refused request", len(got))
			}
		})
	}
}

// TestReserveOverHTTP: when the spool reaches its reserve, telemetry gets 503 spool-full (with
// Retry-After) while an alarm still gets 200, and /readyz stays 200; the alarm is claimed first.
func TestReserveOverHTTP(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{MaxBytes: 64 << 10, ReservePercent: 25, ReservePriority: 1, MinFreeBytes: 1}})
	value := strings.Repeat("x", 1000)
	refused := false
	for range 100 {
		r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"meter","value":"`+value+`"}`)
		if r.Status == 503 {
			p := apitest.DecodeProblem(t, r)
			if p.Type != httpapi.ProblemSpoolFull || r.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "kept for priorities 0 to 1") {
				t.Fatalf("telemetry refused with %s %q (Retry-After %q), want spool-full naming the reserve", p.Type, p.Detail, r.Header.Get("Retry-After"))
			}
			refused = true
			break
		}
		if r.Status != 200 {
			t.Fatalf("telemetry: %d %s", r.Status, r.Body)
		}
	}
	if !refused {
		t.Fatal("100 KB of telemetry into a 64 KiB spool were all accepted")
	}
	if r := f.Do(t, "POST", "/ServiceAPI/message", "application/json", `{"senderId":"scada","value":"`+value+`"}`, "Priority", "0"); r.Status != 200 {
		t.Fatalf("an alarm into the reserve: %d %s", r.Status, r.Body)
	}
	if r := f.Do(t, "GET", "/readyz", "", ""); r.Status != 200 {
		t.Fatalf("/readyz while the reserve takes alarms: %d %s", r.Status, r.Body)
	}
	if err := f.Spool.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := f.Spool.Claim(context.Background())
	if err != nil || c.Priority != 0 || c.Messages[0].SenderID != "scada" {
		t.Fatalf("first claim: %+v, %v; want the alarm", c, err)
	}
}

// TestPrincipalTTL: a principal's ttl (the principals file) applies to its messages that name
// none, under their own member and the Message-Ttl header, over --message-ttl; a principal
// without one gets the stamp's.
func TestPrincipalTTL(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	ps, err := auth.Parse([]byte(`principals:
  - name: alarms
    keySha256: ` + auth.HashKey(supplierKey) + `
    senders: ["01"]
    ttl: 90s
  - name: plain
    keySha256: ` + auth.HashKey(supplierB) + `
    senders: ["02"]
`))
	if err != nil {
		t.Fatal(err)
	}
	f := apitest.NewStamp(t, apitest.Config{
		API:   ingest.Config{MessageTTL: time.Hour, Now: func() time.Time { return at }},
		Guard: httpapi.GuardConfig{Mode: httpapi.AuthRequired, Principals: func() *auth.Principals { return ps }},
	})
	tests := []struct {
		name, path, body string
		header           []string
		want             []time.Duration
	}{
		{"compat, the principal's", "/ServiceAPI/message", `{"senderId":"01","value":"1"}`, bearer(supplierKey),
			[]time.Duration{90 * time.Second}},
		{"compat, the header over the principal's", "/ServiceAPI/message", `{"senderId":"01","value":"1"}`,
			append(bearer(supplierKey), "Message-Ttl", "30"), []time.Duration{30 * time.Second}},
		{"batch, members over the principal's", "/v1/messages",
			`[{"senderId":"01","value":"1","ttl":5},{"senderId":"01","value":"2"}]`, bearer(supplierKey),
			[]time.Duration{5 * time.Second, 90 * time.Second}},
		{"a principal without a ttl gets --message-ttl", "/v1/messages", `{"senderId":"02","value":"1"}`, bearer(supplierB),
			[]time.Duration{time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.Do(t, "POST", tt.path, "application/json", tt.body, tt.header...)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			got := spooledByValue(t, f.Spool)
			if len(got) != len(tt.want) {
				t.Fatalf("spooled %d messages, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if !got[i].ExpiresAt.Equal(at.Add(w)) {
					t.Errorf("message %d expires at %v, want %v (ttl %v)", i, got[i].ExpiresAt, at.Add(w), w)
				}
			}
		})
	}
}

// TestMessageAge: a retried request's Message-Age backdates its messages' receivedAt, and so
// their expiry, on both routes; a message without a ttl still never expires.
func TestMessageAge(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	f := apitest.NewStamp(t, apitest.Config{API: ingest.Config{Now: func() time.Time { return at }}})
	tests := []struct {
		name, path, body string
		header           []string
		received         time.Time
		expires          time.Time
	}{
		{"compat", "/ServiceAPI/message", `{"senderId":"a","value":"1"}`, []string{"Message-Age", "40", "Message-Ttl", "60"},
			at.Add(-40 * time.Second), at.Add(20 * time.Second)},
		{"batch", "/v1/messages", `[{"senderId":"a","value":"1","ttl":30}]`, []string{"Message-Age", "45"},
			at.Add(-45 * time.Second), at.Add(-15 * time.Second)},
		{"no ttl", "/v1/messages", `{"senderId":"a","value":"1"}`, []string{"Message-Age", "7"},
			at.Add(-7 * time.Second), time.Time{}},
		{"age 0", "/v1/messages", `{"senderId":"a","value":"1"}`, []string{"Message-Age", "0"}, at, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.Do(t, "POST", tt.path, "application/json", tt.body, tt.header...)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			got := spooled(t, f.Spool)
			if len(got) != 1 || !got[0].ReceivedAt.Equal(tt.received) || !got[0].ExpiresAt.Equal(tt.expires) {
				t.Fatalf("spooled %+v, want one received at %v expiring at %v", got, tt.received, tt.expires)
			}
		})
	}
}

// TestBadMessageAge: a Message-Age that is not one count of whole seconds from 0 to a year is
// 400 invalid-message naming the header, and nothing is spooled.
func TestBadMessageAge(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{})
	for _, v := range []string{"-1", "1.5", "10s", "", "31536001", "+3", "1, 2", "9999999999999999999999"} {
		for _, path := range []string{"/ServiceAPI/message", "/v1/messages"} {
			r := postWithHeader(t, f.URL+path, `{"senderId":"a","value":"1"}`, http.Header{"Message-Age": {v}})
			p := apitest.DecodeProblem(t, r)
			if r.Status != 400 || p.Type != httpapi.ProblemInvalidMessage || !strings.Contains(p.Detail, "Message-Age header") {
				t.Errorf("%s Message-Age %q: status %d type %s detail %q, want 400 %s naming the header", path, v, r.Status, p.Type, p.Detail, httpapi.ProblemInvalidMessage)
			}
		}
	}
	r := postWithHeader(t, f.URL+"/v1/messages", `{"senderId":"a","value":"1"}`, http.Header{"Message-Age": {"1", "2"}})
	if r.Status != 400 {
		t.Errorf("two Message-Age headers: status %d, want 400", r.Status)
	}
	if got := spooled(t, f.Spool); len(got) != 0 {
		t.Fatalf("spooled %d messages of refused requests", len(got))
	}
}

// postWithHeader posts body as JSON to url with h, which may repeat a header (apitest.Do sets
// one value a name).
func postWithHeader(t *testing.T, url, body string, h http.Header) apitest.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
