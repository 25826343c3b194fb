package ingest_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
)

// BenchmarkSecurity measures what authentication, rate limiting and TLS cost on the compat route
// (one 256-byte message a request, 64 keep-alive connections), side by side in one run:
//
//	sec=off        plain HTTP, --auth off (the BenchmarkAPI setting)
//	sec=auth+rate  --auth required with 100 principals (the key is the last one checked),
//	               senderId bound by a glob, --rate-limit high enough never to refuse
//	sec=tls        TLS 1.3 (ECDSA P-256), HTTP/1.1, --auth off
//	sec=tls+auth+rate  both
//	sec=tls+h2     TLS with HTTP/2: the 64 clients share one connection
//
// each on the durable spool and on the baseline that persists nothing (where the middleware's
// share of the work is largest).
//
//	go test -run '^$' -bench BenchmarkSecurity -benchtime 3s -count 5 ./internal/ingest/
func BenchmarkSecurity(b *testing.B) {
	body := []byte(`{"senderId":"bench-01","value":"` + strings.Repeat("v", 256) + `"}`)
	key, ps := benchPrincipals(b)
	ca := tlstest.NewCA(b, "bench CA")
	dir := b.TempDir()
	certPEM, keyPEM := ca.Issue(b, tlstest.IssueOptions{CommonName: "bench"})
	certFile, keyFile := tlstest.WriteFiles(b, dir, certPEM, keyPEM)
	reloader, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		b.Fatal(err)
	}
	for _, impl := range []string{"durable", "baseline"} {
		for _, sec := range []string{"off", "auth+rate", "tls", "tls+auth+rate", "tls+h2"} {
			b.Run(fmt.Sprintf("impl=%s/sec=%s", impl, sec), func(b *testing.B) {
				var sp ingest.Spool = nopSpool{}
				if impl == "durable" {
					sp = openBenchSpool(b, "sec-")
				}
				cfg := ingest.Config{Spool: sp, Stamp: "bench"}
				var g httpapi.GuardConfig
				var header http.Header
				if strings.Contains(sec, "auth") {
					g.Mode, g.Principals = httpapi.AuthRequired, func() *auth.Principals { return ps }
					cfg.RateLimit, cfg.RateBurst = 1e9, 1e6
					header = http.Header{"Authorization": {"Bearer " + key}}
				}
				api := apitest.APIHandler(b, cfg, g)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				url := "http://" + ln.Addr().String()
				if strings.HasPrefix(sec, "tls") {
					// As serve does: the reloader's config on a TLS listener.
					ln, url = tls.NewListener(ln, reloader.TLSConfig()), "https://"+ln.Addr().String()
				}
				srv := &http.Server{Handler: api, ErrorLog: log.New(io.Discard, "", 0)} // not the handshakes cut by Close
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
				if !strings.HasSuffix(sec, "h2") {
					// HTTP/1.1 over TLS: 64 connections, as for plain HTTP, so that the difference
					// is TLS alone. (With h2 the 64 clients share one multiplexed connection.)
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				client := &http.Client{Transport: tr}
				drive(b, client, url+"/ServiceAPI/message", body, 1, header)
			})
		}
	}
}

// BenchmarkGuard measures the authentication and rate-limit work per request without HTTP or
// a spool: the compat handler called directly, auth off against auth required with 100
// principals plus a rate limit. The difference is the middleware's CPU cost per request, which
// docs/performance.md sets against the durable path's cost per request.
//
//	go test -run '^$' -bench BenchmarkGuard -count 10 ./internal/ingest/
func BenchmarkGuard(b *testing.B) {
	body := `{"senderId":"bench-01","value":"` + strings.Repeat("v", 256) + `"}`
	key, ps := benchPrincipals(b)
	for _, sec := range []string{"off", "auth+rate"} {
		b.Run("sec="+sec, func(b *testing.B) {
			cfg := ingest.Config{Spool: nopSpool{}, Stamp: "bench"}
			var g httpapi.GuardConfig
			if sec != "off" {
				g.Mode, g.Principals = httpapi.AuthRequired, func() *auth.Principals { return ps }
				cfg.RateLimit, cfg.RateBurst = 1e9, 1e6
			}
			api := apitest.APIHandler(b, cfg, g)
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("POST", "/ServiceAPI/message", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Authorization", "Bearer "+key)
				w := httptest.NewRecorder()
				api.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// benchPrincipals returns 100 principals, and the key of the one that may send as bench-*: the
// last in the file, so a key check compares it with every other hash first.
func benchPrincipals(b *testing.B) (string, *auth.Principals) {
	key, _ := auth.NewKey()
	var file strings.Builder
	file.WriteString("principals:\n")
	for i := range 99 {
		other, _ := auth.NewKey()
		fmt.Fprintf(&file, "  - name: p%02d\n    keySha256: %s\n    senders: [\"x-%02d\"]\n", i, auth.HashKey(other), i)
	}
	fmt.Fprintf(&file, "  - name: bench\n    keySha256: %s\n    senders: [\"bench-*\"]\n", auth.HashKey(key))
	ps, err := auth.Parse([]byte(file.String()))
	if err != nil {
		b.Fatal(err)
	}
	return key, ps
}
