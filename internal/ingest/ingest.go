// Package ingest provides Bridgehead's HTTP API: the prototype's compatible routes
// (POST /ServiceAPI/message, GET /ServiceAPI/health), the native batch route (POST /v1/messages),
// probes, metrics and status.
//
// Guarantee: a 2xx is written only after the spool's Append returned nil, that is, once the
// messages are durable on the spool. Every error is an RFC 9457 problem+json body with a stable
// type; when the spool cannot take a message (full, unwritable, shutting down) the answer is 503
// with Retry-After. Nothing on this path waits on a sink.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
)

// Spool is what the API needs of the spool.
type Spool interface {
	Append(ctx context.Context, msgs ...message.Message) error
	Ready() error
	// LastStats is the content as of the spool's last periodic scan: what /metrics and
	// /v1/status report, without listing the spool again on every request.
	LastStats() spool.Stats
}

// Defaults for Config fields left zero.
const (
	DefaultMaxMessageBytes = 1 << 20 // the Event Hubs Standard tier's event limit
	DefaultMaxRequestBytes = 16 << 20
	DefaultMaxProperties   = 32
	DefaultMaxMessages     = 10_000
	DefaultRetryAfter      = 5 * time.Second
	DefaultPeerTimeout     = 2 * time.Second
)

// Config configures a Server. Spool is required; every other zero field takes its default.
type Config struct {
	Spool Spool
	// Stamp names this deployment stamp; it is recorded in every message.
	Stamp string
	// Role and Version are reported by /v1/status.
	Role, Version string
	// ForwarderOnly serves probes, metrics and status but no message routes (they answer 404),
	// for `serve --role forwarder`. Readiness then ignores spool capacity: a full spool is when
	// a forwarder is needed most.
	ForwarderOnly bool
	// MaxMessageBytes bounds a message's value plus properties; default 1 MiB.
	MaxMessageBytes int
	// MaxRequestBytes bounds a request body; a larger one is refused with 413 without being read
	// whole. Default 16 MiB.
	MaxRequestBytes int64
	// MaxProperties bounds the properties of one message; default 32.
	MaxProperties int
	// MaxMessages bounds the messages of one /v1/messages request; default 10,000.
	MaxMessages int
	// RetryAfter is what a 503 tells clients to wait; default 5 s.
	RetryAfter time.Duration
	// Logger receives request errors; nil means none.
	Logger *slog.Logger
	// Registerer receives the API's metrics, and Gatherer serves /metrics; nil means no metrics
	// (and /metrics answers 404).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// DeadLetters serves the dead-letter routes (list, show, requeue); nil means they answer 404.
	DeadLetters DeadLetters
	// ForwardStatus, if set, is reported as "forward" by /v1/status (the forwarder's Status).
	ForwardStatus func() any
	// Console serves GET / and /assets/… (the embedded web console); nil means they answer 404.
	Console http.Handler
	// PeerURL is the other stamp's base URL; /v1/peer/status relays its /v1/status so the
	// console shows both stamps. "" means no peer (404).
	PeerURL string
	// PeerClient fetches the peer's status (TLS settings for a secured peer); nil means a
	// default client. PeerAPIKey, if set, is sent as X-Api-Key.
	PeerClient *http.Client
	PeerAPIKey string
	// PeerTimeout bounds one peer status fetch; default 2 s.
	PeerTimeout time.Duration

	// AuthMode is how credentials are treated (--auth); AuthOff by default.
	AuthMode AuthMode
	// Principals returns the principals in force (an auth.Watcher's Current); required unless
	// AuthMode is AuthOff.
	Principals func() *auth.Principals
	// MetricsAuth makes /metrics, /v1/status and /v1/peer/status need credentials (any role)
	// unless AuthMode is AuthOff (--metrics-auth).
	MetricsAuth bool
	// RateLimit is how many messages a second one client may send: per principal, or per
	// client IP without one (--rate-limit); 0 means no limit. RateBurst is the bucket (the
	// largest request that can pass at once); default max(1, RateLimit).
	RateLimit float64
	RateBurst int
	// CORSOrigins are the origins allowed to call the message routes from a browser ("*" any);
	// empty means no CORS headers.
	CORSOrigins []string
}

// Server is the HTTP API. It is safe for concurrent use.
type Server struct {
	cfg     Config
	lim     limits
	log     *slog.Logger
	now     func() time.Time
	started time.Time
	limiter *limiters // nil without a rate limit
	// refusedLog keeps the audit log of refused requests to a line a second per reason.
	refusedLog map[string]*rate.Sometimes
	// appendFailLog keeps "append failed" to a line a second.
	appendFailLog rate.Sometimes
	draining      atomic.Bool
	accepted      atomic.Uint64 // messages accepted, for /v1/status
	metrics       *metrics
	routes        map[string]route
}

// route is one path's handlers by method.
type route struct {
	name    string // for metrics: a fixed label, never the raw path
	access  access
	methods map[string]http.HandlerFunc
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Spool == nil {
		return nil, errors.New("ingest: Config.Spool is required")
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxProperties == 0 {
		cfg.MaxProperties = DefaultMaxProperties
	}
	if cfg.MaxMessages == 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	switch {
	case cfg.MaxMessageBytes < 0:
		return nil, errors.New("ingest: MaxMessageBytes must be positive")
	case cfg.MaxRequestBytes < 0:
		return nil, errors.New("ingest: MaxRequestBytes must be positive")
	case cfg.MaxProperties < 0 || cfg.MaxMessages < 0:
		return nil, errors.New("ingest: MaxProperties and MaxMessages must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.AuthMode != AuthOff && cfg.Principals == nil:
		return nil, errors.New("ingest: Principals is required when AuthMode is not AuthOff")
	case cfg.RateLimit < 0 || cfg.RateBurst < 0:
		return nil, errors.New("ingest: RateLimit and RateBurst must not be negative")
	}
	if cfg.RateLimit > 0 && cfg.RateBurst == 0 {
		cfg.RateBurst = max(1, int(math.Ceil(cfg.RateLimit)))
	}
	if cfg.PeerTimeout == 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{}
	}
	cfg.PeerURL = strings.TrimSuffix(cfg.PeerURL, "/")
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg: cfg,
		lim: limits{maxMessageBytes: cfg.MaxMessageBytes, maxProperties: cfg.MaxProperties, maxMessages: cfg.MaxMessages},
		log: log, now: cfg.Now, started: cfg.Now(),
	}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiters(cfg.RateLimit, cfg.RateBurst)
	}
	s.appendFailLog = rate.Sometimes{Interval: time.Second}
	s.refusedLog = map[string]*rate.Sometimes{}
	for _, reason := range []string{"missing", "invalid_key", "forbidden"} {
		s.refusedLog[reason] = &rate.Sometimes{Interval: time.Second}
	}
	var err error
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if cfg.Registerer != nil {
		ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridgehead_ready",
			Help: "1 while this instance answers /readyz with 200, 0 while not ready (draining, spool full or unwritable, clock skew).",
		}, func() float64 {
			if s.ready() != nil {
				return 0
			}
			return 1
		})
		if err := cfg.Registerer.Register(ready); err != nil {
			return nil, err
		}
	}
	s.routes = map[string]route{
		"/serviceapi/message": {"compat_message", accessSend, map[string]http.HandlerFunc{http.MethodPost: s.handleCompatMessage}},
		"/serviceapi/health":  {"compat_health", accessOpen, map[string]http.HandlerFunc{http.MethodGet: s.handleCompatHealth}},
		"/v1/messages":        {"messages", accessSend, map[string]http.HandlerFunc{http.MethodPost: s.handleMessages}},
		"/v1/status":          {"status", accessRead, map[string]http.HandlerFunc{http.MethodGet: s.handleStatus}},
		"/healthz":            {"healthz", accessOpen, map[string]http.HandlerFunc{http.MethodGet: s.handleHealthz}},
		"/readyz":             {"readyz", accessOpen, map[string]http.HandlerFunc{http.MethodGet: s.handleReadyz}},
	}
	if cfg.DeadLetters != nil {
		s.routes["/v1/dead-letters"] = route{"dead_letters", accessAdmin, map[string]http.HandlerFunc{http.MethodGet: s.handleDeadLetters}}
		s.routes["/v1/dead-letters/requeue-all"] = route{"dead_letters_requeue", accessAdmin, map[string]http.HandlerFunc{http.MethodPost: s.handleRequeueAll}}
		s.routes[deadLetterPrefix+"{id}"] = route{"dead_letter", accessAdmin, map[string]http.HandlerFunc{http.MethodGet: s.handleDeadLetter}}
		s.routes[deadLetterPrefix+"{id}/requeue"] = route{"dead_letters_requeue", accessAdmin, map[string]http.HandlerFunc{http.MethodPost: s.handleRequeue}}
	}
	if cfg.PeerURL != "" {
		s.routes["/v1/peer/status"] = route{"peer_status", accessRead, map[string]http.HandlerFunc{http.MethodGet: s.handlePeerStatus}}
	}
	if cfg.ForwarderOnly {
		delete(s.routes, "/serviceapi/message")
		delete(s.routes, "/v1/messages")
	}
	if cfg.Gatherer != nil {
		h := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
		s.routes["/metrics"] = route{"metrics", accessRead, map[string]http.HandlerFunc{http.MethodGet: h.ServeHTTP}}
	}
	return s, nil
}

// Drain makes /readyz (and the compatible health route) answer 503 from now on, so load
// balancers stop sending; requests still arriving are served. Call it when SIGTERM arrives.
func (s *Server) Drain() { s.draining.Store(true) }

// ServeHTTP routes r. Paths match case-insensitively and tolerate one trailing slash, as the
// prototype's ASP.NET routing did (its ingress probes /serviceAPI/health).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Every answer is JSON (or the console's own files): never let a browser sniff it as HTML.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if v := recover(); v != nil {
			// Never a stack trace to the client; the log has it.
			s.log.Error("handler panic", "path", r.URL.Path, "panic", v)
			if !sw.wrote {
				writeProblem(sw, problem(http.StatusInternalServerError, ProblemInternal, "Internal error", "the request failed; it was not accepted"))
			}
		}
	}()
	p := strings.ToLower(r.URL.Path)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	rt, ok := s.match(p, r)
	name := rt.name
	if !ok {
		name = "other"
		detail := "no route " + r.URL.Path
		if s.cfg.ForwarderOnly {
			detail += " (this instance runs the forwarder role only; send messages to the API)"
		}
		writeProblem(sw, problem(http.StatusNotFound, ProblemNotFound, "Not found", detail))
	} else if rt.access == accessSend && s.preflight(sw, r) {
		// a CORS preflight, answered
	} else if h := rt.handler(r.Method); h != nil {
		if rt.access == accessSend {
			s.corsHeaders(sw, r)
		}
		if r, p := s.guard(r, rt.access); p != nil {
			writeProblem(sw, p)
		} else {
			h(sw, r)
		}
	} else {
		allow := make([]string, 0, len(rt.methods))
		for m := range rt.methods {
			allow = append(allow, m)
		}
		sw.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(sw, problem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed", r.Method+" is not allowed on "+r.URL.Path))
	}
	s.metrics.observeRequest(name, sw.status, time.Since(start))
}

// handler returns the route's handler for method (GET's for HEAD), or nil.
func (rt route) handler(method string) http.HandlerFunc {
	if h, ok := rt.methods[method]; ok {
		return h
	}
	if method == http.MethodHead {
		return rt.methods[http.MethodGet]
	}
	return nil
}

// deadLetterPrefix starts the routes of one dead letter: {id} and {id}/requeue.
const deadLetterPrefix = "/v1/dead-letters/"

// match finds the route of the lower-cased path p. Besides the fixed paths it knows the one
// dead letter's routes (setting r's "id" path value) and the console's / and /assets/….
func (s *Server) match(p string, r *http.Request) (route, bool) {
	if rt, ok := s.routes[p]; ok {
		return rt, true
	}
	if id, ok := strings.CutPrefix(p, deadLetterPrefix); ok && s.cfg.DeadLetters != nil {
		key := "{id}"
		if i, ok := strings.CutSuffix(id, "/requeue"); ok {
			id, key = i, "{id}/requeue"
		}
		if id != "" && !strings.Contains(id, "/") {
			r.SetPathValue("id", id)
			return s.routes[deadLetterPrefix+key], true
		}
	}
	if s.cfg.Console != nil && (p == "/" || strings.HasPrefix(p, "/assets/")) {
		return route{"console", accessOpen, map[string]http.HandlerFunc{http.MethodGet: s.cfg.Console.ServeHTTP}}, true
	}
	return route{}, false
}

// statusWriter remembers the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readBody reads a request body of at most MaxRequestBytes. A declared Content-Length over the
// limit is refused before anything is read.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Problem) {
	limit := s.cfg.MaxRequestBytes
	tooLarge := func() *Problem {
		return problem(http.StatusRequestEntityTooLarge, ProblemTooLarge, "Request too large",
			"the body exceeds the limit of "+strconv.FormatInt(limit, 10)+" bytes; split it into several requests")
	}
	if r.ContentLength > limit {
		// Do not read it; the server closes the connection rather than drain a huge body.
		w.Header().Set("Connection", "close")
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, problem(http.StatusBadRequest, ProblemInvalidJSON, "Unreadable body", "reading the body failed: "+err.Error())
	}
	return body, nil
}

// appendProblem maps an Append (or Ready) error to the answer: 503 + Retry-After when the spool
// cannot take the message now; nothing was acknowledged either way.
func (s *Server) appendProblem(err error) *Problem {
	var p *Problem
	switch {
	case errors.Is(err, spool.ErrFull):
		p = problem(http.StatusServiceUnavailable, ProblemSpoolFull, "Spool full",
			"this stamp's spool is at capacity; the message was not accepted, retry later or send to the other stamp")
	case errors.Is(err, spool.ErrClosed):
		p = problem(http.StatusServiceUnavailable, ProblemShuttingDown, "Shutting down",
			"this instance is shutting down; the message was not accepted, retry")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		p = problem(http.StatusServiceUnavailable, ProblemSpoolUnavailable, "Request ended",
			"the request ended before the message was durable; it may or may not have been accepted, retry with the same Idempotency-Key")
	default:
		p = problem(http.StatusServiceUnavailable, ProblemSpoolUnavailable, "Spool unavailable",
			"the spool could not store the message; it was not accepted, retry later")
	}
	p.retryAfter = s.cfg.RetryAfter
	return p
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// timestamp formats t as .NET did: UTC, ISO 8601, up to 7 fractional digits, trailing zeros
// dropped, "Z".
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.9999999Z07:00")
}
