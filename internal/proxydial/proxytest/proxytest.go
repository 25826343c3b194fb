// Package proxytest provides an HTTP proxy for tests: CONNECT only, on 127.0.0.1, counting the
// tunnels it made (a site's outbound proxy, as the sinks meet it).
package proxytest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// Proxy is a running CONNECT proxy.
type Proxy struct {
	// URL is the proxy's address, for http.ProxyURL or HTTPS_PROXY.
	URL *url.URL
	// Tunnels counts the tunnels made.
	Tunnels atomic.Int64
}

// New starts a proxy that the test stops when it ends.
func New(tb testing.TB) *Proxy {
	tb.Helper()
	p := &Proxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		target, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer target.Close()
		w.WriteHeader(http.StatusOK)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		p.Tunnels.Add(1)
		go func() { _, _ = io.Copy(target, rw); target.Close() }()
		_, _ = io.Copy(conn, bufio.NewReader(target))
	}))
	tb.Cleanup(srv.Close)
	p.URL, _ = url.Parse(srv.URL)
	return p
}
