package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// get serves one request through Handler and returns the recorded answer.
func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantSecurityHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", path, k, got, want)
		}
	}
}

func TestHandlerServesThePageAndAssets(t *testing.T) {
	h := Handler()
	for _, tt := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", "<title>Bridgehead console</title>"},
		{"/assets/app.js", "text/javascript; charset=utf-8", "'use strict';"},
		{"/assets/app.css", "text/css; charset=utf-8", "--c-ingest"},
		{"/assets/favicon.svg", "image/svg+xml", "<svg"},
		{"/assets/vendor/chart.min.js", "text/javascript; charset=utf-8", "Chart.js v3.9.1"},
		{"/assets/vendor/chart.js-copyright.txt", "text/plain; charset=utf-8", "Permission is hereby granted"},
		// The API matches paths case-insensitively; so does the console.
		{"/Assets/App.JS", "text/javascript; charset=utf-8", "'use strict';"},
	} {
		resp := get(t, h, http.MethodGet, tt.path, nil)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", tt.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.contentType)
		}
		if !strings.Contains(b, tt.contains) {
			t.Errorf("GET %s: body does not contain %q", tt.path, tt.contains)
		}
		if resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: ETag %q, Cache-Control %q; want an ETag and no-cache", tt.path,
				resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
		}
		wantSecurityHeaders(t, tt.path, resp)
	}
}

func TestHandlerNotFound(t *testing.T) {
	h := Handler()
	for _, path := range []string{
		"/assets/nope.js", "/assets/", "/assets", "/assets/vendor", "/assets/vendor/",
		"/index.html", "/web.go", "/README.md", "/assets/../web.go", "/favicon.ico",
	} {
		resp := get(t, h, http.MethodGet, path, nil)
		b := body(t, resp)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(b, `"status":404`) {
			t.Errorf("GET %s: %s %s, want a problem+json 404", path, ct, b)
		}
		wantSecurityHeaders(t, path, resp)
	}
}

func TestHandlerMethods(t *testing.T) {
	h := Handler()
	resp := get(t, h, http.MethodHead, "/", nil)
	if resp.StatusCode != http.StatusOK || body(t, resp) != "" {
		t.Errorf("HEAD /: %d, want 200 without a body", resp.StatusCode)
	}
	resp = get(t, h, http.MethodPost, "/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q, want 405 with Allow: GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	wantSecurityHeaders(t, "POST /", resp)
}

func TestHandlerRevalidatesByETag(t *testing.T) {
	h := Handler()
	etag := get(t, h, http.MethodGet, "/assets/app.js", nil).Header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
		t.Fatalf("ETag %q, want a quoted hash", etag)
	}
	resp := get(t, h, http.MethodGet, "/assets/app.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("GET with If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
	wantSecurityHeaders(t, "304", resp)
	if other := get(t, h, http.MethodGet, "/assets/app.css", nil).Header.Get("ETag"); other == etag {
		t.Fatalf("app.js and app.css share the ETag %s", etag)
	}
}

// TestPageKeepsToThePolicy checks what the Content-Security-Policy would refuse in the browser:
// inline script or style in the page, a reference to another origin, and a page reference that
// the handler does not serve. (The browser test in test/e2e checks the running page too.)
func TestPageKeepsToThePolicy(t *testing.T) {
	h := Handler()
	page := body(t, get(t, h, http.MethodGet, "/", nil))
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with inline content
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`), // inline event handlers
		regexp.MustCompile(`(?i)(src|href)="(https?:)?//`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("index.html has %q, which the policy forbids or which leaves the origin", m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="/`) {
			t.Errorf("index.html has %s, a script that is not a same-origin file", tag)
		}
	}
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("found %d references in index.html, want the style sheet, scripts and icon", len(refs))
	}
	for _, ref := range refs {
		if resp := get(t, h, http.MethodGet, ref[1], nil); resp.StatusCode != http.StatusOK {
			t.Errorf("index.html references %s, which answers %d", ref[1], resp.StatusCode)
		}
	}
	// The script builds the page with textContent and the CSSOM: nothing that the policy
	// refuses (style attributes, eval) and no HTML built from strings the server sent.
	js := body(t, get(t, h, http.MethodGet, "/assets/app.js", nil))
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", ".style.", "http://", "https://"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %q", bad)
		}
	}
}
