package apitest

import (
	"testing"
	"time"

	"net/http"
	"net/http/httptest"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a test sets of a Stamp; Stamp fills in the wiring (spool, registry, guard).
type Config struct {
	Spool spool.Options
	// API configures the message API; NoAPI leaves it out (a forwarder-only process).
	API   ingest.Config
	NoAPI bool
	Ops   ops.Config
	Guard httpapi.GuardConfig
	// NotFoundHint is the router's (what a forwarder-only process says on a 404).
	NotFoundHint string
	// ReadTimeout is the HTTP server's (serve's is 2 min); 0 means none.
	ReadTimeout time.Duration
}

// Stamp is one process's HTTP surface as `serve` mounts it, the message API and the operator
// routes on one router over a real spool, served on 127.0.0.1.
type Stamp struct {
	Spool    *spool.Spool
	API      *ingest.Server // nil with NoAPI
	Drain    *httpapi.Drain // the stamp's draining state: Start it as SIGTERM does
	Ops      *ops.Server
	Registry *prometheus.Registry
	URL      string
}

// NewStamp opens a spool in a temporary directory and serves cfg on it.
func NewStamp(tb testing.TB, cfg Config) *Stamp {
	tb.Helper()
	reg := prometheus.NewRegistry()
	cfg.Spool.Registerer = reg
	sp, err := spool.Open(tb.TempDir(), cfg.Spool)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sp.Close() })
	return serve(tb, sp, reg, cfg)
}

// ServeStamp serves cfg on an open spool (cfg.Spool is ignored), with its own registry.
func ServeStamp(tb testing.TB, sp *spool.Spool, cfg Config) *Stamp {
	tb.Helper()
	return serve(tb, sp, prometheus.NewRegistry(), cfg)
}

func serve(tb testing.TB, sp *spool.Spool, reg *prometheus.Registry, cfg Config) *Stamp {
	tb.Helper()
	cfg.Guard.Registerer = reg
	guard, err := httpapi.NewGuard(cfg.Guard)
	if err != nil {
		tb.Fatal(err)
	}
	router, err := httpapi.NewRouter(httpapi.RouterConfig{Guard: guard, Registerer: reg, Logger: cfg.Guard.Logger, NotFoundHint: cfg.NotFoundHint})
	if err != nil {
		tb.Fatal(err)
	}
	st := &Stamp{Spool: sp, Registry: reg, Drain: &httpapi.Drain{}}
	cfg.API.Drain, cfg.Ops.Drain = st.Drain, st.Drain
	if cfg.API.Stamp == "" {
		cfg.API.Stamp = "onprem"
	}
	if cfg.Ops.Stamp == "" {
		cfg.Ops.Stamp = cfg.API.Stamp
	}
	if !cfg.NoAPI {
		cfg.API.Spool, cfg.API.Registerer, cfg.API.Guard = sp, reg, guard
		if st.API, err = ingest.New(cfg.API); err != nil {
			tb.Fatal(err)
		}
		if err := router.Handle(st.API.Routes()...); err != nil {
			tb.Fatal(err)
		}
		cfg.Ops.API = st.API
	}
	cfg.Ops.Spool, cfg.Ops.Registerer, cfg.Ops.Gatherer = sp, reg, reg
	if st.Ops, err = ops.New(cfg.Ops); err != nil {
		tb.Fatal(err)
	}
	if err := router.Handle(st.Ops.Routes()...); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(router)
	srv.Config.ReadTimeout = cfg.ReadTimeout
	srv.Start()
	tb.Cleanup(srv.Close)
	st.URL = srv.URL
	return st
}

// Do sends a request to the stamp (see the package's Do).
func (s *Stamp) Do(tb testing.TB, method, path, contentType, body string, header ...string) Response {
	tb.Helper()
	return Do(tb, s.URL, method, path, contentType, body, header...)
}

// APIHandler is the message API alone behind a router with guard g: for benchmarks that
// drive the handler without a listener. api.Spool is required.
func APIHandler(tb testing.TB, api ingest.Config, g httpapi.GuardConfig) http.Handler {
	tb.Helper()
	guard, err := httpapi.NewGuard(g)
	if err != nil {
		tb.Fatal(err)
	}
	api.Guard = guard
	s, err := ingest.New(api)
	if err != nil {
		tb.Fatal(err)
	}
	router, err := httpapi.NewRouter(httpapi.RouterConfig{Guard: guard})
	if err != nil {
		tb.Fatal(err)
	}
	if err := router.Handle(s.Routes()...); err != nil {
		tb.Fatal(err)
	}
	return router
}
