// Package client sends messages to Bridgehead stamps over the HTTP API (docs/api.md) with
// failover between endpoints.
//
// Guarantees:
//
//   - Every message carries an idempotency id (the caller's Message.ID, or a random one drawn
//     before the first try) as the per-message "id" of POST /v1/messages, so every retry, to the
//     same stamp or to another, yields the same correlationId. The client derives that id itself
//     (CorrelationID) and refuses an answer whose ids differ.
//   - An Ack means the stamp answered 2xx: the messages are durable in its spool. A message that
//     was not acked may or may not have been stored (at-least-once); retried with the same ID it
//     carries the same correlationId, so a consumer can drop the duplicate.
//   - Endpoints are used in order of preference: the first healthy one takes the traffic. A
//     failure that is not the request's fault (connection error, timeout, 408, 429, 5xx) marks the
//     endpoint unhealthy for a capped, jittered backoff (at least Retry-After) and the next
//     endpoint is tried at once. Any other 4xx is returned as an *Error without a retry.
//   - A Send's tries after the first carry a Message-Age header: the whole seconds since its
//     first try, measured on this process's monotonic clock. The stamp counts the messages as
//     received then, so their receivedAt and expiry (Message.TTL) are the first try's, on
//     whichever stamp acks them.
//   - A background prober checks unhealthy endpoints' /readyz once their backoff has passed and
//     returns them to service when ready, so traffic goes back to the preferred endpoint without
//     a request paying for the check. It is the only goroutine the client starts: New starts
//     nothing, the first Send starts the prober, and Close stops it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
)

// Defaults of Config. docs/failover.md says why these values.
const (
	// DefaultTimeout bounds one try: long enough for the Batcher's largest request (8 MiB) over
	// a 10 Mbit/s uplink (about 7 s) plus the stamp's durable commit.
	DefaultTimeout = 10 * time.Second
	// DefaultConnectTimeout bounds a new connection: a handshake takes one round trip (well under
	// a second on any working link), and an unanswered SYN is sent again after 1 s, so 3 s
	// tolerates a lost SYN while a cut link fails over in 3 s rather than the whole Timeout.
	DefaultConnectTimeout = 3 * time.Second
	DefaultBackoffMin     = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultProbeInterval  = time.Second
)

// maxResponseBytes bounds how much of an answer the client reads: 10,000 acks fit easily.
const maxResponseBytes = 8 << 20

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("client closed")

// Config configures a Client. The zero value of each optional field means its default.
type Config struct {
	// Endpoints are the base URLs of the stamps ("https://onprem.example:8443"), in order of
	// preference. Required; each must be http or https with a host.
	Endpoints []string
	// HTTPClient sends the requests. Default: a client with a clone of http.DefaultTransport
	// using TLSConfig. Set TLSConfig on its transport instead when you pass one.
	HTTPClient *http.Client
	// TLSConfig is used for https endpoints (a private CA, a client certificate). Only with the
	// default HTTPClient.
	TLSConfig *tls.Config
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>" on every request.
	APIKey string
	// Timeout bounds one try at one endpoint (connect, send, answer). Default 10 s. A try on a
	// kept-alive connection whose link was cut (packets dropped, nothing reset) fails over only
	// after it.
	Timeout time.Duration
	// ConnectTimeout bounds the TCP connect of a try or a probe that needs a new connection.
	// Default 3 s; at most Timeout. Only with the default HTTPClient (set the Dialer's Timeout of
	// your own transport instead).
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound how long a failed endpoint is left alone: BackoffMin after
	// the first failure, doubling per consecutive failure up to BackoffMax, jittered down by up
	// to half, and never less than the endpoint's Retry-After. Defaults 500 ms and 30 s.
	BackoffMin, BackoffMax time.Duration
	// ProbeInterval is how often the prober looks for unhealthy endpoints whose backoff has
	// passed and checks their /readyz. Default 1 s; negative disables the prober, and an
	// unhealthy endpoint then returns only when no healthy one is left.
	ProbeInterval time.Duration
	// MaxAttempts bounds the tries of one Send across all endpoints. Default 3 per endpoint;
	// negative means until the Send's context ends.
	MaxAttempts int
	// OnFailover, when set, is called each time a Send moves a request away from an endpoint
	// that failed, before the try at the next one: it says which endpoint failed and why. It
	// runs on the goroutine of that Send and must not block.
	OnFailover func(Failover)
}

// Failover is a request moving away from an endpoint that failed.
type Failover struct {
	// From is the endpoint that failed and To the one tried next, as in Config.Endpoints.
	From, To string
	// Cause says why From failed, in a few words: "connection refused", "503 spool-full",
	// "no answer within 10s".
	Cause string
	// Err is From's failure in full.
	Err error
}

func (c *Config) validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("field Endpoints: at least one is required")
	}
	for i, e := range c.Endpoints {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("field Endpoints[%d]: %w", i, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("field Endpoints[%d]: %q is not an http(s) URL with a host", i, e)
		}
	}
	if c.HTTPClient != nil && c.TLSConfig != nil {
		return errors.New("field TLSConfig: set it on HTTPClient's transport when HTTPClient is set")
	}
	if c.Timeout < 0 || c.ConnectTimeout < 0 || c.BackoffMin < 0 || c.BackoffMax < 0 {
		return errors.New("field Timeout, ConnectTimeout, BackoffMin, BackoffMax: must not be negative")
	}
	if c.HTTPClient != nil && c.ConnectTimeout != 0 {
		return errors.New("field ConnectTimeout: set the Dialer's Timeout of HTTPClient's transport when HTTPClient is set")
	}
	if c.BackoffMax != 0 && c.BackoffMin > c.BackoffMax {
		return fmt.Errorf("field BackoffMin: %v is above BackoffMax %v", c.BackoffMin, c.BackoffMax)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	c.ConnectTimeout = min(c.ConnectTimeout, c.Timeout) // at most Timeout, as documented
	if c.BackoffMax == 0 {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = min(DefaultBackoffMin, c.BackoffMax)
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3 * len(c.Endpoints)
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
		if c.TLSConfig != nil {
			tr.TLSClientConfig = c.TLSConfig.Clone()
		}
		c.HTTPClient = &http.Client{Transport: tr}
	}
}

// Message is one message to send.
type Message struct {
	// SenderID identifies the sender: 1-128 of A-Z a-z 0-9 . _ : @ -.
	SenderID string
	// Value is the payload: non-empty UTF-8.
	Value string
	// Properties are optional application properties.
	Properties map[string]string
	// ID is the idempotency key (1-256 printable ASCII): the correlationId is
	// CorrelationID(SenderID, ID). Empty means a random one drawn by Send before the first try;
	// set it yourself to keep the id across your own retries or restarts.
	ID string
	// TTL is the message's time-to-live, sent as its "ttl" member in whole seconds (rounded
	// up), at most a year: if it has not been delivered TTL after the stamp received it (the
	// first try of its Send), the stamp dead-letters it as expired instead of sending it. 0
	// means the stamp's default (the Message-Ttl header, the key's ttl, --message-ttl).
	TTL time.Duration
	// Priority is the message's priority, sent as its "priority" member: 0 (highest: alarms)
	// to 9. nil means the stamp's default (the Priority header, --default-priority).
	Priority *uint8
}

// Ack is a stamp's acknowledgement of one message: it is durable in that stamp's spool.
type Ack struct {
	// CorrelationID is the message's id downstream: CorrelationID(SenderID, ID).
	CorrelationID string
	// Endpoint is the endpoint (as given in Config.Endpoints) that acknowledged it.
	Endpoint string
}

// Client sends messages with failover. It is safe for concurrent use. Endpoint health is
// guarded by mu; the prober goroutine, started by the first Send, is stopped by Close.
type Client struct {
	cfg  Config
	http *http.Client

	mu        sync.Mutex
	endpoints []*endpoint // in order of preference
	closed    bool
	started   bool
	stop      context.CancelFunc
	done      chan struct{} // closed when the prober returns
	closing   chan struct{} // closed by Close, ends Sends waiting for an endpoint
	failovers int64         // tries sent to another endpoint than a Send's previous, failed try
}

// New returns a client for cfg. It starts no goroutine; call Close when done.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	cfg.setDefaults()
	c := &Client{cfg: cfg, http: cfg.HTTPClient, closing: make(chan struct{})}
	for _, e := range cfg.Endpoints {
		c.endpoints = append(c.endpoints, &endpoint{name: e, base: strings.TrimRight(e, "/"), healthy: true})
	}
	return c, nil
}

// Close stops the prober and waits for it. Sends after Close fail with ErrClosed. It is safe
// to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.closing)
	}
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	c.http.CloseIdleConnections()
	return nil
}

// Send sends msgs in one all-or-nothing request (POST /v1/messages) and returns one Ack per
// message, in order. It tries endpoints as the package documentation says until one acks, a
// request is refused as bad (*Error), MaxAttempts tries have failed, or ctx ends.
func (c *Client) Send(ctx context.Context, msgs ...Message) ([]Ack, error) {
	var first time.Time
	return c.send(ctx, &first, msgs)
}

// maxAgeSeconds bounds Message-Age: the stamp refuses more than its longest ttl.
const maxAgeSeconds = int64(message.MaxTTL / time.Second)

// messageAge is the Message-Age of a try: the whole seconds since first (monotonic: never a
// comparison of two hosts' clocks).
func messageAge(first time.Time) string {
	return strconv.FormatInt(min(int64(time.Since(first)/time.Second), maxAgeSeconds), 10)
}

// send is Send of a request first tried at *first, or not yet tried when *first is zero: then
// send sets it at its first try. The Batcher's resend of a request without the messages a stamp
// refused is the same request, and keeps its age.
func (c *Client) send(ctx context.Context, first *time.Time, msgs []Message) ([]Ack, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := c.startProber(); err != nil {
		return nil, err
	}
	body, want, err := encode(msgs)
	if err != nil {
		return nil, err
	}
	var last *failure
	var prev *endpoint // the endpoint of the previous, failed try
	for attempt := 0; c.cfg.MaxAttempts < 0 || attempt < c.cfg.MaxAttempts; attempt++ {
		ep, err := c.pick(ctx)
		if err != nil {
			if last != nil {
				return nil, fmt.Errorf("send %d messages: %w (last failure: %v)", len(msgs), err, last.err)
			}
			return nil, fmt.Errorf("send %d messages: %w", len(msgs), err)
		}
		if prev != nil && prev != ep {
			c.countFailover()
			if c.cfg.OnFailover != nil {
				c.cfg.OnFailover(Failover{From: prev.name, To: ep.name, Cause: last.cause, Err: last.err})
			}
		}
		prev = ep
		age := ""
		if first.IsZero() {
			*first = time.Now()
		} else {
			age = messageAge(*first)
		}
		acks, f := c.try(ctx, ep, body, want, age)
		if f == nil {
			c.markHealthy(ep)
			c.countAcked(ep, len(acks))
			return acks, nil
		}
		if ctx.Err() != nil {
			// The caller gave up: not the endpoint's fault.
			return nil, fmt.Errorf("send %d messages to %s: %w", len(msgs), ep.name, ctx.Err())
		}
		if !f.retriable {
			return nil, f.err
		}
		c.countFailure(ep)
		c.markFailed(ep, f.retryAfter)
		last = f
	}
	return nil, fmt.Errorf("send %d messages: %d attempts failed, last: %w", len(msgs), c.cfg.MaxAttempts, last.err)
}

// wireMessage is a message as POST /v1/messages takes it.
type wireMessage struct {
	SenderID   string            `json:"senderId"`
	Value      string            `json:"value"`
	Properties map[string]string `json:"properties,omitempty"`
	ID         string            `json:"id"`
	TTL        int64             `json:"ttl,omitempty"`
	Priority   *uint8            `json:"priority,omitempty"`
}

// encode gives every message its idempotency id and returns the body and the expected
// correlationIds; the body is built once so every try sends the same ids.
func encode(msgs []Message) ([]byte, []string, error) {
	wire := make([]wireMessage, len(msgs))
	want := make([]string, len(msgs))
	for i, m := range msgs {
		id := m.ID
		if id == "" {
			id = uuid.NewString()
		}
		if m.TTL < 0 {
			return nil, nil, fmt.Errorf("message %d: TTL %v is negative", i, m.TTL)
		}
		if m.Priority != nil && *m.Priority > message.MaxPriority {
			return nil, nil, fmt.Errorf("message %d: priority %d is not 0 to %d", i, *m.Priority, message.MaxPriority)
		}
		wire[i] = wireMessage{SenderID: m.SenderID, Value: m.Value, Properties: m.Properties, ID: id,
			TTL: int64((m.TTL + time.Second - 1) / time.Second), Priority: m.Priority}
		want[i] = CorrelationID(m.SenderID, id)
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return nil, nil, fmt.Errorf("encode messages: %w", err)
	}
	return body, want, nil
}

// failure is why one try failed and what it means for the endpoint.
type failure struct {
	err        error
	cause      string        // err in a few words, for Failover
	retriable  bool          // the endpoint, not the request, is at fault: try the next one
	retryAfter time.Duration // the endpoint's Retry-After, 0 if none
}

// try sends body to ep once; age, when set, is its Message-Age.
func (c *Client) try(ctx context.Context, ep *endpoint, body []byte, want []string, age string) ([]Ack, *failure) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, &failure{err: fmt.Errorf("request to %s: %w", ep.name, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, application/problem+json")
	if age != "" {
		req.Header.Set("Message-Age", age)
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &failure{err: fmt.Errorf("post to %s: %w", ep.name, err), cause: c.cause(err), retriable: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, &failure{err: fmt.Errorf("read answer of %s: %w", ep.name, err), cause: c.cause(err), retriable: true}
	}
	if resp.StatusCode/100 != 2 {
		e := newError(ep.name, resp.StatusCode, data)
		return nil, &failure{err: e, cause: e.short(), retriable: retriable(resp.StatusCode), retryAfter: retryAfter(resp.Header, time.Now())}
	}
	acks, err := decodeAcks(ep.name, data, want)
	if err != nil {
		// The stamp stored the messages but its answer is unusable: a retry stores them again
		// under the same ids, which downstream drops.
		return nil, &failure{err: err, cause: "unusable answer", retriable: true}
	}
	return acks, nil
}

func (c *Client) authorize(req *http.Request) {
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
}

// decodeAcks checks a 200 answer of /v1/messages against the ids the client derived.
func decodeAcks(endpoint string, data []byte, want []string) ([]Ack, error) {
	var ans struct {
		Messages []struct {
			CorrelationID string `json:"correlationId"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("decode answer of %s: %w", endpoint, err)
	}
	if len(ans.Messages) != len(want) {
		return nil, fmt.Errorf("answer of %s: %d acks for %d messages", endpoint, len(ans.Messages), len(want))
	}
	acks := make([]Ack, len(want))
	for i, m := range ans.Messages {
		if !strings.EqualFold(m.CorrelationID, want[i]) {
			return nil, fmt.Errorf("answer of %s: message %d has correlationId %s, want %s (does the stamp honour per-message ids?)",
				endpoint, i, m.CorrelationID, want[i])
		}
		acks[i] = Ack{CorrelationID: want[i], Endpoint: endpoint}
	}
	return acks, nil
}

// retriable reports whether a non-2xx status is the endpoint's fault rather than the request's,
// so the same request may succeed elsewhere or later: 408 (the server gave up waiting), 429
// (rate limited), and every 5xx (500 is a bug, 502/504 a proxy, 503 a full or draining spool).
// Every other status says the request itself is wrong and would fail anywhere.
func retriable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); 0 if absent or invalid.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(secs)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
