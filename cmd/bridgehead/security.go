package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// securityFlags are serve's authentication, TLS, rate-limit and CORS settings (docs/security.md).
type securityFlags struct {
	auth           string
	authFile       string
	metricsAuth    bool
	reloadInterval time.Duration
	rateLimit      float64
	rateBurst      int
	corsOrigins    []string

	tlsCertFile, tlsKeyFile        string
	tlsClientCAFile, tlsClientAuth string
	readHeaderTimeout              time.Duration
}

func (s *securityFlags) register(f *pflag.FlagSet) {
	f.StringVar(&s.auth, "auth", "off", "authentication: required (every message and admin request needs a key or client certificate), optional (checked when presented) or off")
	f.StringVar(&s.authFile, "auth-file", "", "principals file (YAML: name, keySha256 or certSubject, senders, role); reloaded when it changes")
	f.BoolVar(&s.metricsAuth, "metrics-auth", false, "with --auth, /metrics and /v1/status also need credentials (any role)")
	f.DurationVar(&s.reloadInterval, "reload-interval", auth.DefaultWatchInterval, "how often the principals file and the TLS files are checked for changes")
	f.Float64Var(&s.rateLimit, "rate-limit", 0, "messages per second one client may send (per principal; per client IP without one); 0 = no limit")
	f.IntVar(&s.rateBurst, "rate-burst", 0, "largest burst of messages one client may send at once (default: one second's worth of --rate-limit)")
	f.StringSliceVar(&s.corsOrigins, "cors-origins", nil, "origins allowed to call the message routes from a browser, comma-separated (* for any); empty = no CORS")
	f.StringVar(&s.tlsCertFile, "tls-cert-file", "", "PEM certificate chain; with --tls-key-file, serve HTTPS (TLS 1.2+), reloaded when the files change")
	f.StringVar(&s.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringVar(&s.tlsClientCAFile, "tls-client-ca-file", "", "PEM CA bundle that signs client certificates (mTLS)")
	f.StringVar(&s.tlsClientAuth, "tls-client-auth", "none", "client certificates: none, request (verified when given) or require")
	f.DurationVar(&s.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send its request headers (cuts off slow-loris clients)")
}

func (s *securityFlags) validate() error {
	mode, err := httpapi.ParseAuthMode(s.auth)
	if err != nil {
		return fmt.Errorf("--auth: %w", err)
	}
	switch {
	case mode != httpapi.AuthOff && s.authFile == "":
		return fmt.Errorf("--auth %s needs --auth-file (the principals file; see docs/security.md)", s.auth)
	case mode == httpapi.AuthOff && s.authFile != "":
		return errors.New("--auth-file is set but --auth is off: set --auth required (or optional), or drop --auth-file")
	case mode == httpapi.AuthOff && s.metricsAuth:
		return errors.New("--metrics-auth needs --auth required or optional")
	case s.reloadInterval <= 0:
		return errors.New("--reload-interval must be positive")
	case s.rateLimit < 0 || s.rateBurst < 0:
		return errors.New("--rate-limit and --rate-burst must not be negative")
	case s.rateBurst > 0 && s.rateLimit == 0:
		return errors.New("--rate-burst needs --rate-limit")
	case s.readHeaderTimeout <= 0:
		return errors.New("--read-header-timeout must be positive")
	case (s.tlsCertFile == "") != (s.tlsKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case s.tlsCertFile == "" && (s.tlsClientCAFile != "" || s.tlsClientAuth != "none"):
		return errors.New("--tls-client-ca-file and --tls-client-auth need --tls-cert-file and --tls-key-file")
	}
	for _, o := range s.corsOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("--cors-origins %q: want origins like https://tester.example.com, or *", o)
		}
	}
	return nil
}

// security is what the flags built: the guard every route passes, the principals watcher (nil
// with auth off) and the TLS certificate reloader (nil without TLS); the watcher and the reloader
// run as actors of serve.
type security struct {
	guard   *httpapi.Guard
	watcher *auth.Watcher
	tls     *tlsconf.Reloader
}

// build loads the principals file and the TLS files, and makes the guard. The guard, the TLS
// reloader and the principals watcher register their metrics on reg.
func (s *securityFlags) build(log *slog.Logger, reg prometheus.Registerer) (*security, error) {
	mode, _ := httpapi.ParseAuthMode(s.auth)
	sec := &security{}
	if s.tlsCertFile != "" {
		r, err := tlsconf.New(tlsconf.Options{
			CertFile: s.tlsCertFile, KeyFile: s.tlsKeyFile,
			ClientCAFile: s.tlsClientCAFile, ClientAuth: s.tlsClientAuth,
			Interval: s.reloadInterval, Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, err
		}
		sec.tls = r
	}
	g := httpapi.GuardConfig{Mode: mode, MetricsAuth: s.metricsAuth, Logger: log, Registerer: reg}
	if mode != httpapi.AuthOff {
		w, err := auth.NewWatcher(s.authFile, auth.WatchOptions{Interval: s.reloadInterval, Logger: log, Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("--auth-file: %w", err)
		}
		sec.watcher, g.Principals = w, w.Current
	}
	var err error
	if sec.guard, err = httpapi.NewGuard(g); err != nil {
		return nil, err
	}
	return sec, nil
}
