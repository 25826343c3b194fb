// Package ingest provides Bridgehead's message API: the prototype's compatible routes
// (POST /ServiceAPI/message, GET /ServiceAPI/health) and the native batch route (POST /v1/messages),
// as routes for an httpapi.Router. The operator's routes (probes, status, metrics, dead letters,
// the console) are internal/ops'.
//
// Guarantee: a 2xx is written only after the spool's Append returned nil, that is, once the
// messages are durable on the spool. Every error is an RFC 9457 problem+json body with a stable
// type; when the spool cannot take a message (full, unwritable, shutting down) the answer is 503
// with Retry-After. Nothing on this path waits on a sink.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// Spool is what the API needs of the spool: its errors wrap spool.ErrFull, ErrUnwritable or
// ErrClosed (httpapi.Unavailable maps them).
type Spool interface {
	Append(ctx context.Context, msgs ...message.Message) error
	Ready() error
}

// Defaults for Config fields left zero.
const (
	DefaultMaxMessageBytes = message.DefaultMaxBytes // the Event Hubs Standard tier's event limit
	DefaultMaxRequestBytes = 16 << 20
	DefaultMaxProperties   = message.DefaultMaxProperties
	DefaultMaxMessages     = 10_000
	// DefaultMaxInflightBytes suits the Deployment's 512 MiB memory limit: decoding a batch
	// takes up to about six times its body (10,000 messages of 32 properties: 16 MiB → ~100 MiB).
	DefaultMaxInflightBytes = 64 << 20
	DefaultRetryAfter       = 5 * time.Second
)

// Config configures a Server. Spool is required; every other zero field takes its default.
type Config struct {
	Spool Spool
	// Stamp names this deployment stamp; it is recorded in every message.
	Stamp string
	// MaxMessageBytes bounds a message's value plus properties; default 1 MiB.
	MaxMessageBytes int
	// MaxRequestBytes bounds a request body; a larger one is refused with 413 without being read
	// whole. Default 16 MiB.
	MaxRequestBytes int64
	// MaxInflightBytes bounds the request bytes being read and decoded at once, over all
	// requests; past it a request is answered 503 (retryable) instead of growing the heap
	// towards the pod's memory limit. Default 64 MiB; at least MaxRequestBytes.
	MaxInflightBytes int64
	// MaxEventBytes is the largest event the sink takes (Event Hubs Standard and Premium:
	// 1,000,000; Basic 256,000; Kafka: the topic's max.message.bytes): a message whose event
	// (EventBody, with its properties as headers, plus sink.FramingAllowance) would be larger
	// is refused with 413 before any 2xx, instead of being dead-lettered by the forwarder
	// after its sender was told it was safe. 0 means no check.
	MaxEventBytes int
	// EventBody is the body mode the sink sends events in (--body); empty means envelope.
	EventBody sink.BodyMode
	// DefaultPriority is the priority of a message that names none (a "priority" member or a
	// Priority header); nil means message.DefaultPriority.
	DefaultPriority *uint8
	// MessageTTL is the time-to-live of a message that names none ("ttl", Message-Ttl); 0 means
	// messages do not expire.
	MessageTTL time.Duration
	// MaxProperties bounds the properties of one message; default 32.
	MaxProperties int
	// MaxMessages bounds the messages of one /v1/messages request; default 10,000.
	MaxMessages int
	// RetryAfter is what a 503 tells clients to wait; default 5 s.
	RetryAfter time.Duration
	// Logger receives request errors; nil means none.
	Logger *slog.Logger
	// Registerer receives the API's metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Drain is the process's draining state: once started, the compatible health route and
	// Ready answer 503 (requests still arriving are served); nil never drains.
	Drain *httpapi.Drain
	// Guard is the router's guard: the message routes report a principal's foreign senderIds
	// to it (403, counted and logged). nil when nothing is authenticated.
	Guard *httpapi.Guard
	// RateLimit is how many messages a second one client may send: per principal, or per
	// client IP without one (--rate-limit); 0 means no limit. RateBurst is the bucket (the
	// largest request that can pass at once); default max(1, RateLimit).
	RateLimit float64
	RateBurst int
	// CORSOrigins are the origins allowed to call the message routes from a browser ("*" any);
	// empty means no CORS headers.
	CORSOrigins []string
}

// Server is the message API. It is safe for concurrent use.
type Server struct {
	cfg      Config
	lim      limits
	delivery delivery // the stamp's defaults: --default-priority and --message-ttl
	log      *slog.Logger
	now      func() time.Time
	limiter  *limiters // nil without a rate limit
	inflight inflight
	// appendFailLog keeps "append failed" to a line a second.
	appendFailLog rate.Sometimes
	accepted      atomic.Uint64 // messages accepted, for /v1/status
	metrics       *metrics

	// eventLimit is SetMaxEventBytes's; nil means Config.MaxEventBytes.
	eventLimit atomic.Pointer[eventLimit]
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
	if cfg.MaxInflightBytes == 0 {
		cfg.MaxInflightBytes = max(DefaultMaxInflightBytes, cfg.MaxRequestBytes)
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
	case cfg.MaxInflightBytes < cfg.MaxRequestBytes:
		return nil, fmt.Errorf("ingest: MaxInflightBytes %d is below MaxRequestBytes %d: a largest request could never be read", cfg.MaxInflightBytes, cfg.MaxRequestBytes)
	case cfg.MaxProperties < 0 || cfg.MaxMessages < 0:
		return nil, errors.New("ingest: MaxProperties and MaxMessages must be positive")
	case cfg.MaxEventBytes < 0:
		return nil, errors.New("ingest: MaxEventBytes must not be negative")
	case cfg.DefaultPriority != nil && *cfg.DefaultPriority > message.MaxPriority:
		return nil, fmt.Errorf("ingest: DefaultPriority %d is not 0 to %d", *cfg.DefaultPriority, message.MaxPriority)
	case cfg.MessageTTL < 0 || cfg.MessageTTL > message.MaxTTL:
		return nil, fmt.Errorf("ingest: MessageTTL %s is not 0 (none) to %s", cfg.MessageTTL, message.MaxTTL)
	case cfg.RateLimit < 0 || cfg.RateBurst < 0:
		return nil, errors.New("ingest: RateLimit and RateBurst must not be negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DefaultPriority == nil {
		p := uint8(message.DefaultPriority)
		cfg.DefaultPriority = &p
	}
	if cfg.RateLimit > 0 && cfg.RateBurst == 0 {
		cfg.RateBurst = max(1, int(math.Ceil(cfg.RateLimit)))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:           cfg,
		lim:           limits{message: message.Limits{MaxBytes: cfg.MaxMessageBytes, MaxProperties: cfg.MaxProperties}, maxMessages: cfg.MaxMessages},
		delivery:      delivery{priority: *cfg.DefaultPriority, ttl: cfg.MessageTTL},
		log:           log,
		now:           cfg.Now,
		appendFailLog: rate.Sometimes{Interval: time.Second},
	}
	s.inflight.limit = cfg.MaxInflightBytes
	if cfg.RateLimit > 0 {
		s.limiter = newLimiters(cfg.RateLimit, cfg.RateBurst)
	}
	var err error
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return s, nil
}

// Routes are the message routes, for an httpapi.Router.
func (s *Server) Routes() []httpapi.Route {
	post := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodPost: h}
	}
	return []httpapi.Route{
		{Pattern: "/serviceapi/message", Name: "compat_message", Access: httpapi.Send, Methods: post(s.handleCompatMessage), Before: s.cors},
		{Pattern: "/v1/messages", Name: "messages", Access: httpapi.Send, Methods: post(s.handleMessages), Before: s.cors},
		{Pattern: "/serviceapi/health", Name: "compat_health", Access: httpapi.Open,
			Methods: map[string]http.HandlerFunc{http.MethodGet: s.handleCompatHealth}},
	}
}

// Ready says why this instance cannot take messages now (draining, or the spool's reason), or nil.
func (s *Server) Ready() error {
	if err := s.cfg.Drain.Err(); err != nil {
		return err
	}
	return s.cfg.Spool.Ready()
}

// Accepted is how many messages this API acknowledged since it started.
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// readBody reads a request body of at most MaxRequestBytes, within MaxInflightBytes for all
// requests together. A declared Content-Length over the limit is refused before anything is
// read, and so is one that does not fit in flight now (503, retryable). Call release once the
// body and what was decoded from it are no longer needed (after the Append).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), p *httpapi.Problem) {
	limit := s.cfg.MaxRequestBytes
	tooLarge := func() *httpapi.Problem {
		return httpapi.NewProblem(http.StatusRequestEntityTooLarge, httpapi.ProblemTooLarge, "Request too large",
			"the body exceeds the limit of "+strconv.FormatInt(limit, 10)+" bytes; split it into several requests")
	}
	busy := func() *httpapi.Problem {
		s.metrics.busy.Inc()
		w.Header().Set("Connection", "close") // do not read the rest of a body we will not take
		p := httpapi.NewProblem(http.StatusServiceUnavailable, httpapi.ProblemBusy, "Server busy",
			"this instance is reading as many request bytes as it may hold at once (--max-inflight-bytes); nothing was accepted, retry later or send to the other stamp")
		p.RetryAfter = s.cfg.RetryAfter
		return p
	}
	if r.ContentLength > limit {
		// Do not read it; the server closes the connection rather than drain a huge body.
		w.Header().Set("Connection", "close")
		return nil, func() {}, tooLarge()
	}
	rr := &reservingReader{r: http.MaxBytesReader(w, r.Body, limit), f: &s.inflight, max: limit + 1}
	if r.ContentLength > 0 {
		// The server ends the body at its declared length: reserve that, all at once, and no more.
		if !s.inflight.take(r.ContentLength) {
			return nil, func() {}, busy()
		}
		rr.held, rr.max = r.ContentLength, r.ContentLength
	}
	release = func() { s.inflight.give(rr.held) }
	body, err := io.ReadAll(rr)
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, func() {}, tooLarge()
		case errors.Is(err, errBusy):
			return nil, func() {}, busy()
		}
		// The body stopped short (the client's link dropped, or it outlasted the server's read
		// timeout): not the client's data at fault, so not a final 400. A 408 tells a client to
		// send again; the error itself names this server's addresses and stays in the log.
		s.log.Info("request body cut off", "remote", httpapi.ClientIP(r), "path", r.URL.Path, "err", err)
		w.Header().Set("Connection", "close")
		return nil, func() {}, httpapi.NewProblem(http.StatusRequestTimeout, httpapi.ProblemRequestTimeout, "Request timeout",
			"the body did not arrive in full (the connection was cut off or too slow); nothing was accepted, send it again")
	}
	return body, release, nil
}

// timestamp formats t as .NET did: UTC, ISO 8601, up to 7 fractional digits, trailing zeros
// dropped, "Z".
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.9999999Z07:00")
}
