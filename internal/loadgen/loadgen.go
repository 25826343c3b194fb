// Package loadgen is the engine of `bridgehead bench`: it POSTs messages to a Bridgehead API for a
// fixed time, either closed loop (a fixed number of workers, each sending its next request when the
// previous one answered) or open loop (a constant arrival rate), and reports throughput, answers by
// status code, transport errors by kind and latency percentiles from an HDR histogram.
//
// What it guarantees:
//   - Every request it sends is counted exactly once: in Result.WarmupRequests if it was started
//     (closed loop) or scheduled (open loop) during the warm-up, otherwise in Result.Requests, as a
//     status code or as a transport error. The counts reconcile with what the server saw.
//   - In open loop, a request's latency runs from the time it was scheduled to be sent, not from the
//     time it was sent. A server that stalls delays the requests queued behind the stall, and their
//     waiting is charged to the server: coordinated omission is corrected. Requests still owed when
//     the time is up are reported as Result.Unsent rather than silently dropped.
//   - One http.Transport with keep-alive and at least one idle connection per worker; request bodies
//     are built once and every response body is drained and closed, so connections are reused.
//
// It imports no flag or CLI package; cmd/bridgehead fills a Config.
package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Route selects the API route the load goes to.
type Route string

const (
	// RouteCompat is POST /ServiceAPI/message with one {"senderId","value"} object per request: the
	// prototype's route, which existing clients use.
	RouteCompat Route = "compat"
	// RouteMessages is POST /v1/messages with a JSON array of Config.Batch messages per request.
	RouteMessages Route = "messages"
)

// path returns the route's path below the base URL.
func (r Route) path() string {
	if r == RouteMessages {
		return "/v1/messages"
	}
	return "/ServiceAPI/message"
}

// Defaults for the zero values of Config.
const (
	DefaultURL              = "http://127.0.0.1:8080"
	DefaultConcurrency      = 64
	DefaultDuration         = 10 * time.Second
	DefaultSize             = 256
	DefaultBatch            = 1
	DefaultSenderID         = "bench"
	DefaultTimeout          = 10 * time.Second
	DefaultProgressInterval = time.Second

	// MaxBatch is the API's limit of messages per request.
	MaxBatch = 10000
	// maxBody bounds the one request body kept in memory.
	maxBody = 256 << 20
	// maxRate keeps the schedule's interval above a nanosecond-level rounding error.
	maxRate = 10_000_000
)

// Config is one benchmark run. The zero value of a field means its default, except Warmup, Rate and
// APIKey, whose zero values mean none.
type Config struct {
	// URL is the base URL of the API, without the route's path; default DefaultURL. A path prefix
	// (a gateway's) is kept: https://gw.example/bridgehead + /v1/messages.
	URL string
	// Route is the route to load; default RouteCompat.
	Route Route
	// Concurrency is the number of workers, each with at most one request in flight; default 64.
	// In closed loop it is the load; in open loop it bounds the requests in flight.
	Concurrency int
	// Rate, when positive, switches to open loop: requests are scheduled at this constant rate
	// (requests per second, across all workers) and latency runs from the scheduled time.
	Rate float64
	// Duration is the measured time, after Warmup; default 10 s.
	Duration time.Duration
	// Warmup is run before Duration; its requests are counted in Result.WarmupRequests only.
	Warmup time.Duration
	// Size is the length of each message's value in bytes; default 256.
	Size int
	// Batch is the number of messages per request, RouteMessages only; default 1, at most MaxBatch.
	Batch int
	// SenderID is every message's senderId; default "bench".
	SenderID string
	// APIKey, if set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// Timeout bounds each request, from sending to the end of its response body; default 10 s.
	Timeout time.Duration
	// UserAgent is sent as User-Agent; default "bridgehead-bench".
	UserAgent string
	// Progress, if set, is called with a snapshot every ProgressInterval (default 1 s) from the
	// goroutine that called Run, never from a worker: a slow Progress cannot slow the load.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// FieldError is a Config field with a value that cannot be used.
type FieldError struct {
	Field  string // the Config field: "URL", "Concurrency", ...
	Value  any
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %v: %s", e.Field, e.Value, e.Reason)
}

// Sentinel errors of Run.
var (
	// ErrUnreachable: no TCP connection to the URL's host could be opened before the run started.
	ErrUnreachable = errors.New("cannot reach the server")
	// ErrNoSuccess: the run finished without a single 2xx answer. Run returns its Result as well.
	ErrNoSuccess = errors.New("no request succeeded")
)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Route == "" {
		c.Route = RouteCompat
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.SenderID == "" {
		c.SenderID = DefaultSenderID
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = "bridgehead-bench"
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	return c
}

// validate checks a Config with defaults applied and returns the target URL; errors are *FieldError.
func (c *Config) validate() (*url.URL, error) {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return nil, &FieldError{"URL", c.URL, "not a URL: " + err.Error()}
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, &FieldError{"URL", c.URL, "want http:// or https://"}
	case u.Host == "":
		return nil, &FieldError{"URL", c.URL, "has no host"}
	case u.User != nil:
		return nil, &FieldError{"URL", c.URL, "must not carry credentials; use the API key"}
	}
	base := strings.TrimRight(u.Path, "/")
	for _, r := range []Route{RouteCompat, RouteMessages} {
		if strings.HasSuffix(strings.ToLower(base), strings.ToLower(r.path())) {
			return nil, &FieldError{"URL", c.URL, "give the base URL (e.g. http://127.0.0.1:8080): the route's path is added from Route"}
		}
	}
	switch c.Route {
	case RouteCompat:
		if c.Batch != 1 {
			return nil, &FieldError{"Batch", c.Batch, "the compat route takes one message per request; batches need the messages route"}
		}
	case RouteMessages:
	default:
		return nil, &FieldError{"Route", c.Route, "want compat or messages"}
	}
	switch {
	case c.Concurrency < 1:
		return nil, &FieldError{"Concurrency", c.Concurrency, "must be at least 1"}
	case c.Rate < 0 || c.Rate > maxRate || math.IsNaN(c.Rate):
		return nil, &FieldError{"Rate", c.Rate, fmt.Sprintf("must be between 0 (closed loop) and %d requests/s", maxRate)}
	case c.Duration < 0:
		return nil, &FieldError{"Duration", c.Duration, "must be positive"}
	case c.Warmup < 0:
		return nil, &FieldError{"Warmup", c.Warmup, "must not be negative"}
	case c.Size < 1:
		return nil, &FieldError{"Size", c.Size, "must be at least 1 (the API refuses an empty value)"}
	case c.Batch < 1 || c.Batch > MaxBatch:
		return nil, &FieldError{"Batch", c.Batch, fmt.Sprintf("must be between 1 and %d (the API's limit)", MaxBatch)}
	case int64(c.Size)*int64(c.Batch) > maxBody:
		return nil, &FieldError{"Size", c.Size, fmt.Sprintf("times Batch %d is over %d MiB per request", c.Batch, maxBody>>20)}
	case c.Timeout < 0:
		return nil, &FieldError{"Timeout", c.Timeout, "must be positive"}
	case c.ProgressInterval < 0:
		return nil, &FieldError{"ProgressInterval", c.ProgressInterval, "must be positive"}
	}
	// The API's senderId rule; a bench whose every request is a 400 measures nothing.
	if len(c.SenderID) > 128 || strings.IndexFunc(c.SenderID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:@-", r))
	}) >= 0 {
		return nil, &FieldError{"SenderID", c.SenderID, "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -"}
	}
	t := *u
	t.Path = base + c.Route.path()
	t.RawPath = ""
	return &t, nil
}

// Runner runs benchmarks with one Config. It holds the HTTP transport and the request body; each Run
// has its own counters, so a Runner may Run again (not concurrently).
type Runner struct {
	cfg       Config
	target    *url.URL
	body      []byte
	header    http.Header // read-only once built: shared by every request
	transport *http.Transport
}

// New checks cfg and prepares the request body and the HTTP transport. It starts nothing.
func New(cfg Config) (*Runner, error) {
	cfg = cfg.withDefaults()
	target, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	body, err := buildBody(cfg)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", cfg.UserAgent)
	if cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	tr := &http.Transport{
		// A proxy from the environment would measure the proxy: the bench talks to URL directly.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: min(cfg.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          cfg.Concurrency,
		MaxIdleConnsPerHost:   cfg.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The body is sent as is and answers are counted, not read: no gzip on either side.
		DisableCompression: true,
		WriteBufferSize:    min(max(len(body), 4<<10), 64<<10),
	}
	return &Runner{
		cfg:       cfg,
		target:    target,
		body:      body,
		header:    h,
		transport: tr,
	}, nil
}

// Target returns the URL requests go to (base URL plus the route's path).
func (r *Runner) Target() string { return r.target.String() }

// BodyBytes returns the size of each request body in bytes.
func (r *Runner) BodyBytes() int { return len(r.body) }

// buildBody returns the one request body every request sends: the compat route's object, or a JSON
// array of Batch messages. Values are pseudo-random letters and digits (fixed seed, no escaping
// needed, so a value is exactly Size bytes) rather than one repeated byte that compresses to
// nothing on the way to the sink.
func buildBody(c Config) ([]byte, error) {
	sender, err := json.Marshal(c.SenderID)
	if err != nil {
		return nil, err
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	rnd := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, c.Size)
	for i := range value {
		value[i] = alphabet[rnd.IntN(len(alphabet))]
	}
	one := make([]byte, 0, c.Size+len(sender)+len(`{"senderId":,"value":""}`))
	one = append(one, `{"senderId":`...)
	one = append(one, sender...)
	one = append(one, `,"value":"`...)
	one = append(one, value...)
	one = append(one, `"}`...)
	if c.Route == RouteCompat {
		return one, nil
	}
	var b bytes.Buffer
	b.Grow(c.Batch*(len(one)+1) + 1)
	b.WriteByte('[')
	for i := range c.Batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(one)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// requestBody is a request's body: one allocation over the shared bytes, which it only reads.
type requestBody struct{ bytes.Reader }

func (*requestBody) Close() error { return nil }

func newRequestBody(b []byte) *requestBody {
	rb := &requestBody{}
	rb.Reset(b)
	return rb
}
