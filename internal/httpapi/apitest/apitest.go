// Package apitest provides what the HTTP surfaces' tests share: a request helper that returns
// the whole answer, and a decoder that insists on a well-formed problem body.
package apitest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
)

// Response is a whole answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends method path (relative to base) with body and header pairs ("Name", "value", …),
// and returns the answer. A transport error fails the test.
func Do(tb testing.TB, base, method, path, contentType, body string, header ...string) Response {
	tb.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// DecodeProblem decodes r as a problem body, failing the test unless it is one: the problem
// media type, a type and a title, and the status of the answer.
func DecodeProblem(tb testing.TB, r Response) httpapi.Problem {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.Body)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		tb.Fatalf("problem body %s: %v", r.Body, err)
	}
	if p.Status != r.Status || p.Type == "" || p.Title == "" {
		tb.Fatalf("problem %+v for status %d", p, r.Status)
	}
	return p
}

// Assert503 fails the test unless r is a 503 problem of type typ with Retry-After: 5 (the default).
func Assert503(tb testing.TB, r Response, typ string) {
	tb.Helper()
	if r.Status != http.StatusServiceUnavailable {
		tb.Fatalf("status %d, want 503: %s", r.Status, r.Body)
	}
	if ra := r.Header.Get("Retry-After"); ra != "5" {
		tb.Errorf("Retry-After = %q, want 5", ra)
	}
	if p := DecodeProblem(tb, r); p.Type != typ {
		tb.Fatalf("type %s, want %s", p.Type, typ)
	}
}
