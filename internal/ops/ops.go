// Package ops provides Bridgehead's operator surface, as routes for an httpapi.Router: the
// probes (/healthz, /readyz), /v1/status, /metrics, the dead-letter administration, the relay of
// the peer stamp's status and the web console. The message routes are internal/ingest's.
package ops

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults for Config fields left zero.
const (
	DefaultRetryAfter  = 5 * time.Second
	DefaultPeerTimeout = 2 * time.Second
)

// Spool is what the operator surface reads of the spool: its content as of its last periodic
// scan, so that /v1/status, asked every second by every open console, lists nothing.
type Spool interface {
	LastStats() spool.Stats
}

// Forwarder is a forwarder running in this process (a *forward.Forwarder).
type Forwarder interface {
	Status() forward.Status
}

// API is a message API running in this process (an *ingest.Server).
type API interface {
	// Ready says why it cannot take messages now, or nil.
	Ready() error
	// Accepted is how many messages it acknowledged since it started.
	Accepted() uint64
}

// Config configures a Server. Spool is required; every other zero field takes its default or
// turns its routes off.
type Config struct {
	Spool Spool
	// Stamp, Role and Version are reported by /v1/status.
	Stamp, Role, Version string
	// API is this process's message API; nil for a forwarder-only process, whose readiness then
	// ignores spool capacity (a full spool is when a forwarder is needed most).
	API API
	// Forwarder is this process's forwarder; nil when it runs none.
	Forwarder Forwarder
	// DeadLetters serves the dead-letter routes (list, show, requeue); nil means none.
	DeadLetters DeadLetters
	// Drain is the process's draining state: once started, /readyz answers 503 so that load
	// balancers stop sending; nil never drains.
	Drain *httpapi.Drain
	// Console serves GET / and /assets/… (the embedded web console); nil means none.
	Console http.Handler
	// PeerURL is the other stamp's base URL; /v1/peer/status relays its /v1/status so the
	// console shows both stamps. "" means no peer route.
	PeerURL string
	// PeerClient fetches the peer's status (TLS settings for a secured peer); nil means a
	// default client. PeerAPIKey, if set, is sent as X-Api-Key.
	PeerClient *http.Client
	PeerAPIKey string
	// PeerTimeout bounds one peer status fetch; default 2 s.
	PeerTimeout time.Duration
	// Gatherer serves /metrics; nil means no /metrics route.
	Gatherer prometheus.Gatherer
	// Registerer receives bridgehead_ready; nil means not exported.
	Registerer prometheus.Registerer
	// RetryAfter is what a 503 tells clients to wait; default 5 s.
	RetryAfter time.Duration
	// Logger receives administration failures and the audit of requeues; nil means none.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the operator surface. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Spool == nil {
		return nil, errors.New("ops: Config.Spool is required")
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.PeerTimeout == 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PeerURL = strings.TrimSuffix(cfg.PeerURL, "/")
	s := &Server{cfg: cfg, log: cfg.Logger, started: cfg.Now()}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
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
	return s, nil
}

// Routes are the operator's routes, for an httpapi.Router.
func (s *Server) Routes() []httpapi.Route {
	get := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h}
	}
	post := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodPost: h}
	}
	routes := []httpapi.Route{
		{Pattern: "/healthz", Name: "healthz", Access: httpapi.Open, Methods: get(s.handleHealthz)},
		{Pattern: "/readyz", Name: "readyz", Access: httpapi.Open, Methods: get(s.handleReadyz)},
		{Pattern: "/v1/status", Name: "status", Access: httpapi.Read, Methods: get(s.handleStatus)},
	}
	if s.cfg.Gatherer != nil {
		h := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
		routes = append(routes, httpapi.Route{Pattern: "/metrics", Name: "metrics", Access: httpapi.Read, Methods: get(h.ServeHTTP)})
	}
	if s.cfg.DeadLetters != nil {
		routes = append(routes,
			httpapi.Route{Pattern: "/v1/dead-letters", Name: "dead_letters", Access: httpapi.Admin, Methods: get(s.handleDeadLetters)},
			httpapi.Route{Pattern: "/v1/dead-letters/requeue-all", Name: "dead_letters_requeue", Access: httpapi.Admin, Methods: post(s.handleRequeueAll)},
			httpapi.Route{Pattern: "/v1/dead-letters/{id}", Name: "dead_letter", Access: httpapi.Admin, Methods: get(s.handleDeadLetter)},
			httpapi.Route{Pattern: "/v1/dead-letters/{id}/requeue", Name: "dead_letter_requeue", Access: httpapi.Admin, Methods: post(s.handleRequeue)},
		)
	}
	if s.cfg.PeerURL != "" {
		routes = append(routes, httpapi.Route{Pattern: "/v1/peer/status", Name: "peer_status", Access: httpapi.Read, Methods: get(s.handlePeerStatus)})
	}
	if s.cfg.Console != nil {
		console := get(s.cfg.Console.ServeHTTP)
		routes = append(routes,
			httpapi.Route{Pattern: "/", Name: "console", Access: httpapi.Open, Methods: console},
			httpapi.Route{Pattern: "/assets/{path...}", Name: "console", Access: httpapi.Open, Methods: console},
		)
	}
	return routes
}

// ready says why this instance is not ready, or nil.
func (s *Server) ready() *httpapi.Problem {
	if err := s.cfg.Drain.Err(); err != nil {
		return httpapi.Unavailable(err, s.cfg.RetryAfter)
	}
	if s.cfg.API == nil {
		return nil
	}
	if err := s.cfg.API.Ready(); err != nil {
		return httpapi.Unavailable(err, s.cfg.RetryAfter)
	}
	return nil
}

// handleHealthz is GET /healthz: the process is alive and serving.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz is GET /readyz: not draining and, where an API runs, the spool takes appends.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if p := s.ready(); p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Status is the body of GET /v1/status.
type Status struct {
	Stamp         string  `json:"stamp"`
	Role          string  `json:"role"`
	Version       string  `json:"version"`
	Ready         bool    `json:"ready"`
	NotReady      string  `json:"notReady,omitempty"`
	UptimeSeconds float64 `json:"uptimeSeconds"`
	// PeerURL is the other stamp, whose status /v1/peer/status relays.
	PeerURL string       `json:"peerUrl,omitempty"`
	Spool   spool.Stats  `json:"spool"`
	Ingest  IngestStatus `json:"ingest"`
	// Forward is the forwarder's status when this process runs one.
	Forward *forward.Status `json:"forward,omitempty"`
}

// IngestStatus counts what this process's API accepted since it started (0 without one).
type IngestStatus struct {
	AcceptedTotal uint64 `json:"acceptedTotal"`
}

// handleStatus is GET /v1/status. The spool's figures are those of its last periodic scan, like
// /metrics': every open console asks every second, and listing the spool's directories for each
// ask would put a READDIR per state on the shared file system per browser.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	out := Status{Stamp: s.cfg.Stamp, Role: s.cfg.Role, Version: s.cfg.Version, Ready: true,
		UptimeSeconds: s.cfg.Now().Sub(s.started).Seconds(), PeerURL: s.cfg.PeerURL, Spool: s.cfg.Spool.LastStats()}
	if s.cfg.API != nil {
		out.Ingest.AcceptedTotal = s.cfg.API.Accepted()
	}
	if s.cfg.Forwarder != nil {
		st := s.cfg.Forwarder.Status()
		out.Forward = &st
	}
	if p := s.ready(); p != nil {
		out.Ready, out.NotReady = false, p.Detail
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}
