// Package web provides Bridgehead's console: one HTML page, its script and style sheet, and a
// vendored charting library, embedded in the binary and served by `bridgehead serve` on the
// API's own port (GET / and GET /assets/…).
//
// The page needs nothing from outside the stamp (no CDN, no web font), so it works air-gapped.
// It talks only to the same origin: GET /v1/status every second (and /v1/peer/status when the
// stamp has a peer), POST /v1/messages for a test message, and the /v1/dead-letters routes.
//
// Guarantees: every response, 404 included, carries a strict Content-Security-Policy (no
// inline script or style, no other origin, no framing) and the usual hardening headers; only
// the embedded files are served, never a directory listing; each file has a strong ETag (a
// hash of its content), so a browser revalidates cheaply and an upgraded binary's assets are
// never served stale.
//
// The chart library is Chart.js, vendored from Debian; see README.md beside this file for its
// version and how to refresh it.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// files holds the page (index.html) and everything under assets/. Every name is lower case:
// the API matches paths case-insensitively, so a request's path is lower-cased before lookup.
//
//go:embed index.html assets
var files embed.FS

// ContentSecurityPolicy is the policy sent with every response: same-origin script, style,
// images (and data: URLs, which the chart library may use) and fetches; nothing inline, no
// framing, no <base>, forms post only to this origin.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// contentTypes are fixed here rather than taken from mime.TypeByExtension, which the host's
// mime.types can change (a .js served as text/plain is refused under nosniff).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
}

// asset is one embedded file, ready to serve.
type asset struct {
	name        string // for http.ServeContent's Content-Type fallback
	content     []byte
	etag        string
	contentType string
}

// Handler returns the console's handler. It serves GET (and HEAD) of "/" (the page) and of
// "/assets/<file>"; anything else is a 404 (405 for another method). It is safe for
// concurrent use.
func Handler() http.Handler {
	assets := map[string]*asset{}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = http.DetectContentType(b)
		}
		assets["/"+p] = &asset{name: p, content: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build defect, not a runtime state.
		panic("web: reading the embedded console: " + err.Error())
	}
	assets["/"] = assets["/index.html"]
	delete(assets, "/index.html")
	return handler{assets: assets}
}

type handler struct {
	assets map[string]*asset // by URL path; read-only after Handler returns
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		problem(w, http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	a, ok := h.assets[strings.ToLower(r.URL.Path)]
	if !ok {
		problem(w, http.StatusNotFound, "Not found", "no console asset "+r.URL.Path)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	// Revalidate every time: one small conditional request per file, and a new binary's
	// console takes effect on the next load.
	hd.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.content))
}

// problem writes an RFC 9457 problem+json body, as the rest of the API does.
func problem(w http.ResponseWriter, status int, title, detail string) {
	typ := "not-found"
	if status == http.StatusMethodNotAllowed {
		typ = "method-not-allowed"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Status  int    `json:"status"`
		Detail  string `json:"detail"`
		Success bool   `json:"success"`
	}{"https://bridgehead.dev/problems/" + typ, title, status, detail, false})
}
