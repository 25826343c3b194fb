package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
)

// AuthMode is how credentials are treated (--auth).
type AuthMode int

const (
	// AuthOff ignores credentials: everyone may do everything (the laptop default).
	AuthOff AuthMode = iota
	// AuthOptional checks credentials that are presented (a bad key is 401; a key binds its
	// senderIds) but also accepts messages without any; admin routes need an admin.
	AuthOptional
	// AuthRequired refuses every message and admin request without valid credentials.
	AuthRequired
)

// ParseAuthMode parses "off", "optional" or "required".
func ParseAuthMode(s string) (AuthMode, error) {
	switch s {
	case "off":
		return AuthOff, nil
	case "optional":
		return AuthOptional, nil
	case "required":
		return AuthRequired, nil
	}
	return AuthOff, fmt.Errorf("auth mode %q: want required, optional or off", s)
}

// Access is what a route asks of its caller.
type Access int

const (
	// Open routes (probes, the console's static files) are never authenticated.
	Open Access = iota
	// Read routes (metrics, status) need a principal when GuardConfig.MetricsAuth is set.
	Read
	// Send routes (the message routes) need a principal when AuthRequired; a principal's
	// senderIds bind what it may send (the handler checks them).
	Send
	// Admin routes change the spool: an admin principal unless AuthOff.
	Admin
)

// GuardConfig configures a Guard. The zero value authenticates nobody and lets everyone in.
type GuardConfig struct {
	// Mode is how credentials are treated; AuthOff by default.
	Mode AuthMode
	// Principals returns the principals in force (an auth.Watcher's Current); required unless
	// Mode is AuthOff.
	Principals func() *auth.Principals
	// MetricsAuth makes Read routes need credentials (any role) unless Mode is AuthOff.
	MetricsAuth bool
	// Logger receives the audit lines of refused requests; nil means none.
	Logger *slog.Logger
	// Registerer receives bridgehead_http_auth_failures_total; nil means not exported.
	Registerer prometheus.Registerer
}

// Guard authenticates requests and decides whether a route's Access lets them in. Refusals are
// counted and logged for the audit trail. It is safe for concurrent use.
type Guard struct {
	cfg      GuardConfig
	log      *slog.Logger
	failures *prometheus.CounterVec
	// refusedLog keeps the audit log of refused requests to a line a second per reason.
	refusedLog map[string]*rate.Sometimes
}

// NewGuard returns a Guard for cfg.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.Mode != AuthOff && cfg.Principals == nil {
		return nil, fmt.Errorf("httpapi: Principals is required when the auth mode is not off")
	}
	g := &Guard{cfg: cfg, log: cfg.Logger, refusedLog: map[string]*rate.Sometimes{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridgehead_http_auth_failures_total",
			Help: "Requests refused by authentication or authorization, by reason: missing (401), invalid_key (401), forbidden (403).",
		}, []string{"reason"}),
	}
	if g.log == nil {
		g.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, reason := range []string{"missing", "invalid_key", "forbidden"} {
		g.refusedLog[reason] = &rate.Sometimes{Interval: time.Second}
		g.failures.WithLabelValues(reason) // every reason exported from the start, at 0
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(g.failures); err != nil {
			return nil, err
		}
	}
	return g, nil
}

type principalKey struct{}

// Principal returns the principal that authenticated r, or nil.
func Principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// PrincipalName names who made r for the audit log: the principal, or "anonymous".
func PrincipalName(r *http.Request) string {
	if p := Principal(r); p != nil {
		return p.Name
	}
	return "anonymous"
}

// Check authenticates r as access a needs and returns r carrying its principal (see
// Principal), or the problem that refuses it.
func (g *Guard) Check(r *http.Request, a Access) (*http.Request, *Problem) {
	if g.cfg.Mode == AuthOff || a == Open {
		return r, nil
	}
	p, prob := g.authenticate(r)
	if prob != nil {
		return r, prob
	}
	if p == nil {
		if a == Admin || (a == Send && g.cfg.Mode == AuthRequired) || (a == Read && g.cfg.MetricsAuth) {
			g.Refused(r, "missing", "")
			return r, unauthorized("", "this route needs credentials: an API key (Authorization: Bearer <key> or X-Api-Key) or a client certificate")
		}
		return r, nil
	}
	if a == Admin && !p.IsAdmin() {
		g.Refused(r, "forbidden", p.Name)
		return r, NewProblem(http.StatusForbidden, ProblemForbidden, "Forbidden", "principal "+p.Name+" does not have the admin role this route needs")
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

// authenticate identifies r's client: by API key (Authorization: Bearer or X-Api-Key), else by
// a verified TLS client certificate bound in the principals file. A presented key that matches
// nobody is a 401 even when auth is optional: a client that means to authenticate must learn
// that its key is wrong, not be served anonymously.
func (g *Guard) authenticate(r *http.Request) (*auth.Principal, *Problem) {
	ps := g.cfg.Principals()
	if key, ok := auth.KeyFromRequest(r); ok {
		if p, ok := ps.ByKey(key); ok {
			return p, nil
		}
		g.Refused(r, "invalid_key", "")
		return nil, unauthorized(`error="invalid_token"`, "the API key presented is not valid (unknown or revoked)")
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		for _, id := range tlsconf.Identities(r.TLS.VerifiedChains[0][0]) {
			if p, ok := ps.ByCertSubject(id); ok {
				return p, nil
			}
		}
	}
	return nil, nil
}

// Refused counts a request refused by authentication or authorization (reason "missing",
// "invalid_key" or "forbidden"), and logs it for the audit trail: at most one line a second per
// reason, so that a client hammering with a bad key cannot flood the log (the metric counts
// every one). The line names the client's address, the route and the principal (for a 403),
// never a key. A nil Guard counts nothing.
func (g *Guard) Refused(r *http.Request, reason, principal string) {
	if g == nil {
		return
	}
	g.failures.WithLabelValues(reason).Inc()
	g.refusedLog[reason].Do(func() {
		g.log.Warn("request refused", "reason", reason, "remote", ClientIP(r), "method", r.Method,
			"path", r.URL.Path, "principal", principal, "note", "at most one line a second per reason; see bridgehead_http_auth_failures_total")
	})
}

func unauthorized(params, detail string) *Problem {
	p := NewProblem(http.StatusUnauthorized, ProblemUnauthorized, "Unauthorized", detail)
	p.Authenticate = `Bearer realm="bridgehead"`
	if params != "" {
		p.Authenticate += ", " + params
	}
	return p
}

// ClientIP is the address r came from. X-Forwarded-For is not trusted: behind a proxy every
// client shares the proxy's address, so deployments that need per-client limits use keys.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
