package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// benchServer imitates the API's POST routes: 200 JSON for every request, counted.
func benchServer(t *testing.T) (url string, requests *atomic.Int64) {
	t.Helper()
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"senderId":"bench","success":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, requests
}

func TestBenchJSON(t *testing.T) {
	url, requests := benchServer(t)
	stdout, stderr := mustRunCLI(t, "bench", "--url", url, "--route", "messages", "--batch", "3",
		"--concurrency", "2", "--duration", "200ms", "--warmup", "50ms", "--size", "1KiB", "--json")
	if stderr != "" {
		t.Errorf("stderr %q, want nothing with --json when stderr is not a terminal", stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	for _, field := range []string{
		"url", "route", "mode", "concurrency", "targetRate", "batch", "size", "bodyBytes", "warmupSeconds",
		"durationSeconds", "requests", "warmupRequests", "succeeded", "messages", "requestsPerSecond",
		"messagesPerSecond", "status", "errors", "unsent", "latencyMs", "samples", "interrupted",
	} {
		if _, ok := got[field]; !ok {
			t.Errorf("--json output has no %q: %s", field, stdout)
		}
	}
	lat, _ := got["latencyMs"].(map[string]any)
	for _, field := range []string{"count", "mean", "p50", "p90", "p99", "p99.9", "max"} {
		if _, ok := lat[field].(float64); !ok {
			t.Errorf("latencyMs has no number %q: %v", field, got["latencyMs"])
		}
	}
	var res struct {
		Route          string           `json:"route"`
		Mode           string           `json:"mode"`
		Requests       int64            `json:"requests"`
		WarmupRequests int64            `json:"warmupRequests"`
		Succeeded      int64            `json:"succeeded"`
		Messages       int64            `json:"messages"`
		Status         map[string]int64 `json:"status"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Route != "messages" || res.Mode != "closed" || got["batch"] != 3.0 || got["size"] != 1024.0 {
		t.Errorf("route %q, mode %q, batch %v, size %v: want messages, closed, 3, 1024", res.Route, res.Mode, got["batch"], got["size"])
	}
	if res.Requests+res.WarmupRequests != requests.Load() || res.Status["200"] != res.Requests || res.Messages != 3*res.Succeeded {
		t.Errorf("requests %d + warm-up %d, status %v, messages %d; server saw %d: want them to agree",
			res.Requests, res.WarmupRequests, res.Status, res.Messages, requests.Load())
	}
}

func TestBenchText(t *testing.T) {
	url, _ := benchServer(t)
	stdout, stderr := mustRunCLI(t, "bench", "--url", url, "--rate", "100", "--concurrency", "2",
		"--duration", "200ms", "--warmup", "0s")
	for _, want := range []string{"req/s", "msg/s", "200: ", "errors    none", "p50", "p99.9", "open loop", "coordinated omission corrected"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout has no %q:\n%s", want, stdout)
		}
	}
	if !strings.HasPrefix(stderr, "bench: POST "+url+"/ServiceAPI/message") {
		t.Errorf("stderr %q, want it to start with what is being loaded", stderr)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--route", "bulk"}, `--route bulk: want compat or messages`},
		{[]string{"--batch", "5"}, "--batch 5: the compat route takes one message per request"},
		{[]string{"--route", "messages", "--batch", "20000"}, "--batch 20000"},
		{[]string{"--concurrency", "0"}, "--concurrency must be positive"},
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{[]string{"--rate", "-1"}, "--rate -1"},
		{[]string{"--size", "big"}, `invalid argument "big" for "--size"`},
		{[]string{"--url", "localhost:8080"}, "--url localhost:8080: want http:// or https://"},
		{[]string{"--url", "http://h:1/v1/messages"}, "give the base URL"},
		{[]string{"--sender-id", "two words"}, "--sender-id two words"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, append([]string{"bench"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("bench %s: got error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}

func TestBenchEnv(t *testing.T) {
	t.Setenv("BRIDGEHEAD_ROUTE", "bulk")
	_, _, err := runCLI(t, "bench")
	if err == nil || !strings.Contains(err.Error(), "--route bulk") {
		t.Errorf("BRIDGEHEAD_ROUTE=bulk: got error %v, want --route bulk refused", err)
	}
}

func TestBenchUnreachable(t *testing.T) {
	addr := sinktest.RefusedAddr(t)
	stdout, _, err := runCLI(t, "bench", "--url", "http://"+addr, "--duration", "1m")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the server at http://"+addr) || !strings.Contains(err.Error(), "--url") {
		t.Errorf("bench against a closed port: got error %v, want cannot reach ... set --url", err)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want no result", stdout)
	}
}

func TestBenchNoSuccessFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"type":"https://bridgehead.dev/problems/spool-full","status":503,"success":false}`)
	}))
	t.Cleanup(srv.Close)
	stdout, _, err := runCLI(t, "bench", "--url", srv.URL, "--duration", "100ms", "--warmup", "0s", "--concurrency", "2", "--json")
	if err == nil || !strings.Contains(err.Error(), "no request succeeded") || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("bench against an all-503 server: got error %v, want no request succeeded ... HTTP 503", err)
	}
	var res struct{ Status map[string]int64 }
	if jerr := json.Unmarshal([]byte(stdout), &res); jerr != nil || res.Status["503"] == 0 {
		t.Errorf("stdout %q (%v): want the JSON result with the 503s even though the run failed", stdout, jerr)
	}
}
