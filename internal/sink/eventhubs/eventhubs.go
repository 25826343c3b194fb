// Package eventhubs provides the Azure Event Hubs sink: batches from the forwarder go to an event
// hub over AMQP (the official azeventhubs/v2 producer, one long-lived connection) or over the
// namespace's Kafka endpoint (franz-go, SASL PLAIN with the connection string, TLS, port 9093).
//
// Guarantees: Send returns one Result per message, in order; a message is Delivered only after
// Event Hubs accepted the batch holding it (an AMQP accepted disposition, or a Kafka acks=all
// produce response). Events of one sender share a partition key (the senderId), and a sender's
// events are sent in batch order; order across senders, retries and stamps is not promised. A
// message too large for the hub is Permanent without stopping its batch-mates; everything
// else that fails is Transient, because the forwarder owns retries (backoff and circuit
// breaker) and the SDK is given only a small retry budget of its own. Credentials or an entity
// the service refuses are Transient too (nothing is dead-lettered for a configuration error) and
// are logged at error level so an operator notices.
//
// New does not connect: the first Send does, so a stamp starts while the cloud is unreachable.
package eventhubs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Transports.
const (
	// TransportAMQP sends with the azeventhubs/v2 producer (default).
	TransportAMQP = "amqp"
	// TransportKafka sends to the namespace's Kafka endpoint with franz-go.
	TransportKafka = "kafka"
	// TransportWebSockets sends with the azeventhubs/v2 producer, AMQP over WebSockets
	// (wss://<namespace>/$servicebus/websocket, TCP 443): for a site whose firewall lets only
	// HTTPS out, through its HTTPS proxy (Config.Proxy; HTTPS_PROXY by default).
	TransportWebSockets = "websockets"
)

// Defaults.
const (
	// DefaultSendTimeout bounds one Send when Config.SendTimeout is zero.
	DefaultSendTimeout = 30 * time.Second
	// DefaultMaxMessageBytes is reported by Limits until the AMQP link told its own maximum
	// (Event Hubs Basic and Standard accept 1 MiB).
	DefaultMaxMessageBytes = 1 << 20

	// The SDK retries a failed operation at most sdkMaxRetries times, sdkRetryDelay apart (doubling
	// up to sdkMaxRetryDelay): enough to ride out a detached link or a dropped connection it can
	// rebuild at once, short enough that a dead peer fails in well under a second and the
	// forwarder's backoff and breaker take over. The SDK's defaults (3 retries from 4 s, up to
	// 120 s) take about a minute to fail and would outlive claim leases.
	sdkMaxRetries    = 2
	sdkRetryDelay    = 50 * time.Millisecond
	sdkMaxRetryDelay = 400 * time.Millisecond

	// maxParallelKeys is how many partition keys of one Send are in flight at once.
	maxParallelKeys = 8

	// authLogEvery rate-limits the configuration-error log line.
	authLogEvery = 10 * time.Second
)

// Config configures a Sink. Exactly one of ConnectionString and Namespace is set.
type Config struct {
	// ConnectionString is an Event Hubs connection string (a secret): Endpoint plus
	// SharedAccessKeyName/SharedAccessKey or SharedAccessSignature, optionally EntityPath and
	// UseDevelopmentEmulator=true (the emulator or a test peer; amqp transport only). It is handed
	// to the SDK unchanged.
	ConnectionString string
	// Namespace is the namespace's fully qualified name (`<ns>.servicebus.windows.net`), used
	// with Entra ID when there is no connection string (amqp transport only).
	Namespace string
	// Credential authenticates with Entra ID when Namespace is used; nil means
	// azidentity.DefaultAzureCredential (AKS workload identity, managed identity, az login).
	Credential azcore.TokenCredential
	// EventHub names the event hub. It may be empty when the connection string has an
	// EntityPath; when both are set they must agree.
	EventHub string
	// Transport is TransportAMQP (default), TransportWebSockets or TransportKafka.
	Transport string
	// Proxy picks the HTTPS proxy of the WebSockets and Kafka transports; nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY and NO_PROXY; note that it never proxies
	// localhost).
	Proxy func(*http.Request) (*url.URL, error)
	// BodyMode is the event body: sink.BodyEnvelope (default) or sink.BodyRaw.
	BodyMode sink.BodyMode
	// Stamp names this deployment stamp; it fills in the stamp of messages that carry none.
	Stamp string
	// TLSConfig overrides the TLS settings (e.g. a private CA); nil means the system roots.
	TLSConfig *tls.Config
	// CustomEndpoint is host:port to dial instead of the namespace (a private endpoint, an
	// application gateway, a test peer); TLS and authentication still name the namespace.
	CustomEndpoint string
	// SendTimeout bounds one Send, including connecting and the SDK's own retries; default
	// DefaultSendTimeout. The caller's context may set a shorter deadline.
	SendTimeout time.Duration
	// ServerBusyWait is the RetryAfter of a Throttled result (com.microsoft:server-busy, which
	// carries no hint of its own); default DefaultServerBusyWait, the wait Event Hubs' documentation
	// asks for. Tests compress time with it.
	ServerBusyWait time.Duration
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the Kafka transport's throttle counters
	// (bridgehead_kafka_throttled_responses_total, bridgehead_kafka_throttle_seconds_total); nil
	// means they are not exported.
	Registerer prometheus.Registerer
}

// validate checks cfg, fills in defaults and returns the parsed connection string (zero when
// Namespace is used) and the event hub name. Errors name the bad field.
func (cfg *Config) validate() (ConnectionString, string, error) {
	var cs ConnectionString
	switch cfg.Transport {
	case "":
		cfg.Transport = TransportAMQP
	case TransportAMQP, TransportWebSockets, TransportKafka:
	default:
		return cs, "", fmt.Errorf("eventhubs: Transport %q: want %q, %q or %q", cfg.Transport, TransportAMQP, TransportWebSockets, TransportKafka)
	}
	switch cfg.BodyMode {
	case "":
		cfg.BodyMode = sink.BodyEnvelope
	case sink.BodyEnvelope, sink.BodyRaw:
	default:
		return cs, "", fmt.Errorf("eventhubs: BodyMode %q: want %q or %q", cfg.BodyMode, sink.BodyEnvelope, sink.BodyRaw)
	}
	if cfg.SendTimeout < 0 {
		return cs, "", fmt.Errorf("eventhubs: SendTimeout %v is negative", cfg.SendTimeout)
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.ServerBusyWait < 0 {
		return cs, "", fmt.Errorf("eventhubs: ServerBusyWait %v is negative", cfg.ServerBusyWait)
	}
	if cfg.ServerBusyWait == 0 {
		cfg.ServerBusyWait = DefaultServerBusyWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hub := cfg.EventHub
	switch {
	case cfg.ConnectionString != "" && cfg.Namespace != "":
		return cs, "", errors.New("eventhubs: set ConnectionString or Namespace, not both")
	case cfg.ConnectionString != "":
		var err error
		if cs, err = ParseConnectionString(cfg.ConnectionString); err != nil {
			return cs, "", fmt.Errorf("eventhubs: ConnectionString: %w", err)
		}
		if cs.EntityPath != "" {
			if hub != "" && hub != cs.EntityPath {
				return cs, "", fmt.Errorf("eventhubs: EventHub %q differs from the connection string's EntityPath %q", hub, cs.EntityPath)
			}
			hub = cs.EntityPath
		}
		if cs.UseDevelopmentEmulator && cfg.Transport == TransportKafka {
			return cs, "", errors.New("eventhubs: Transport kafka cannot use a UseDevelopmentEmulator=true connection string")
		}
	case cfg.Namespace != "":
		ns := strings.TrimSuffix(strings.TrimPrefix(cfg.Namespace, "sb://"), "/")
		if ns == "" || strings.ContainsAny(ns, "/;= ") {
			return cs, "", fmt.Errorf("eventhubs: Namespace %q: want <namespace>.servicebus.windows.net", cfg.Namespace)
		}
		cfg.Namespace = ns
		if cfg.Transport == TransportKafka {
			return cs, "", errors.New("eventhubs: Transport kafka needs a ConnectionString (Entra ID is supported with amqp)")
		}
	default:
		return cs, "", errors.New("eventhubs: ConnectionString or Namespace is required")
	}
	if hub == "" {
		return cs, "", errors.New("eventhubs: EventHub is required (or EntityPath in the connection string)")
	}
	return cs, hub, nil
}

// Sink delivers batches to one event hub. It is safe for concurrent use: the producer client
// (or Kafka client) is shared; linkMax and lastAuthLog are atomics; closed guards Close.
type Sink struct {
	cfg       Config
	log       *slog.Logger
	namespace string // host[:port] of the namespace, for the configuration-error log
	hub       string // the event hub's name

	producer *azeventhubs.ProducerClient // amqp transport
	kafka    *kgo.Client                 // kafka transport
	throttle *kafka.ThrottleWatch        // kafka transport: the namespace's throttles (quotas)

	probed      atomic.Bool  // linkMax has been asked of the SDK
	linkMax     atomic.Int64 // the AMQP link's max-message-size; 0 until known
	lastAuthLog atomic.Int64 // unix nanos of the last configuration-error log

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// New builds a Sink from cfg. It does not connect (the first Send does), so it succeeds while
// Event Hubs is unreachable; it fails only on a bad configuration. ctx is reserved for
// constructors that need to reach out (none does today).
func New(ctx context.Context, cfg Config) (*Sink, error) {
	_ = ctx
	cs, hub, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: cfg.Logger.With("sink", "eventhubs", "transport", cfg.Transport, "eventhub", hub),
		namespace: cfg.Namespace, hub: hub}
	if s.namespace == "" {
		s.namespace = cs.Namespace()
	}
	if cfg.Transport == TransportKafka {
		if s.throttle, err = kafka.NewThrottleWatch(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("eventhubs: %w", err)
		}
		if s.kafka, err = newKafkaClient(cfg, cs, hub, s.throttle); err != nil {
			return nil, err
		}
		return s, nil
	}
	opts := &azeventhubs.ProducerClientOptions{
		ApplicationID:  "bridgehead",
		CustomEndpoint: cfg.CustomEndpoint,
		TLSConfig:      cfg.TLSConfig,
		RetryOptions: azeventhubs.RetryOptions{
			MaxRetries:    sdkMaxRetries,
			RetryDelay:    sdkRetryDelay,
			MaxRetryDelay: sdkMaxRetryDelay,
		},
	}
	if cfg.Transport == TransportWebSockets {
		opts.NewWebSocketConn = s.dialWebSocket
	}
	if cfg.ConnectionString != "" {
		hubArg := hub
		if cs.EntityPath != "" {
			hubArg = "" // the SDK refuses a name given twice
		}
		s.producer, err = azeventhubs.NewProducerClientFromConnectionString(cfg.ConnectionString, hubArg, opts)
		if err != nil {
			// The SDK's messages do not repeat the key, but say so plainly and keep ours.
			return nil, fmt.Errorf("eventhubs: producer from connection string (%s): %w", cs, err)
		}
		return s, nil
	}
	cred := cfg.Credential
	if cred == nil {
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err != nil {
			return nil, fmt.Errorf("eventhubs: Entra ID credential: %w", err)
		}
	}
	if s.producer, err = azeventhubs.NewProducerClient(cfg.Namespace, hub, markedCredential{cred}, opts); err != nil {
		return nil, fmt.Errorf("eventhubs: producer for %s: %w", cfg.Namespace, err)
	}
	return s, nil
}

// Limits reports the largest event the hub takes: the AMQP link's max-message-size once a Send
// has opened the link, DefaultMaxMessageBytes before that and on the Kafka transport. Batches
// are otherwise unbounded: Send cuts them into as many Event Hubs batches as needed.
func (s *Sink) Limits() sink.Limits {
	max := DefaultMaxMessageBytes
	if n := s.linkMax.Load(); n > 0 && n < math.MaxInt32 {
		max = int(n)
	}
	return sink.Limits{MaxMessageBytes: max, Body: s.cfg.BodyMode}
}

// Close releases the connection. It is idempotent and returns the first error.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.kafka != nil {
			s.kafka.Close()
		}
		if s.producer != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.producer.Close(ctx); err != nil {
				s.closeErr = fmt.Errorf("eventhubs: close producer: %w", err)
			}
		}
	})
	return s.closeErr
}

// markedCredential marks the errors of an Entra ID credential, so a missing workload identity or
// role is reported as the configuration error it is, whatever type the credential returns.
type markedCredential struct{ azcore.TokenCredential }

func (c markedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, &credentialError{err: err}
	}
	return tok, nil
}

// credentialError is an Entra ID credential's failure. NonRetriable tells the SDK not to retry it
// nor rebuild its connection (neither helps), which also makes it return this error unwrapped
// rather than inside an azeventhubs.Error (which does not Unwrap).
type credentialError struct{ err error }

func (e *credentialError) Error() string { return "entra id credential: " + e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }
func (e *credentialError) NonRetriable() {}

var (
	errNotAttempted = errors.New("eventhubs: not sent")
	errClosed       = errors.New("eventhubs: sink closed")
	// errBody marks a message whose event body could not be built: no retry can change it.
	errBody = errors.New("eventhubs: cannot build event body")
)

// Send delivers batch and returns one Result per message, in order. Messages are grouped by
// sender (the partition key); each group goes out as one or more Event Hubs batches, in order,
// and the groups go out concurrently. The whole call is bounded by Config.SendTimeout.
func (s *Sink) Send(ctx context.Context, batch []message.Message) []sink.Result {
	// Every result starts out Transient: a message is Delivered only where the code says so.
	res := sink.All(len(batch), sink.Result{Status: sink.Transient, Err: errNotAttempted})
	if len(batch) == 0 {
		return res
	}
	if s.closed.Load() {
		return sink.All(len(batch), sink.Result{Status: sink.Transient, Err: errClosed})
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	if s.kafka != nil {
		s.sendKafka(ctx, batch, res)
		return res
	}

	var keys []string
	groups := map[string][]int{}
	for i := range batch {
		k := batch[i].SenderID
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	if len(keys) == 1 {
		s.sendGroup(ctx, keys[0], batch, groups[keys[0]], res)
		return res
	}
	// Each group writes only its own indexes of res; wg.Wait orders those writes before return.
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelKeys)
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.sendGroup(ctx, k, batch, groups[k], res)
		}()
	}
	wg.Wait()
	return res
}

// pending is the Event Hubs batch being filled for one partition key.
type pending struct {
	b   *azeventhubs.EventDataBatch
	idx []int
	evs []*azeventhubs.EventData
}

// sendGroup sends the messages idx of batch (one sender) in order, cutting a new Event Hubs
// batch whenever the current one is full. After a Transient failure the rest of the group is
// not tried (it would fail the same way, and sending it would reorder the sender's events).
func (s *Sink) sendGroup(ctx context.Context, key string, batch []message.Message, idx []int, res []sink.Result) {
	var cur pending
	for n, i := range idx {
		ev, err := s.event(&batch[i])
		if err != nil {
			res[i] = s.result(err)
			continue
		}
		for {
			if cur.b == nil {
				if cur.b, err = s.newBatch(ctx, key); err != nil {
					s.failRest(res, idx[n:], err)
					return
				}
			}
			err = cur.b.AddEventData(ev, nil)
			if err == nil {
				cur.idx, cur.evs = append(cur.idx, i), append(cur.evs, ev)
				break
			}
			if errors.Is(err, azeventhubs.ErrEventDataTooLarge) && len(cur.idx) > 0 {
				if ferr := s.flush(ctx, key, &cur, res); ferr != nil {
					s.failRest(res, idx[n:], ferr)
					return
				}
				continue // try again in a fresh batch
			}
			if errors.Is(err, azeventhubs.ErrEventDataTooLarge) {
				err = fmt.Errorf("event of %d bytes is larger than the event hub accepts (max message size %d bytes): %w",
					len(ev.Body), s.Limits().MaxMessageBytes, err)
			}
			res[i] = s.result(err)
			break
		}
	}
	_ = s.flush(ctx, key, &cur, res) // the last batch: nothing after it to stop
}

// flush sends cur and settles its messages. It returns the error only when it was Transient,
// which stops the group. A Permanent failure of a multi-event batch (one event the service
// refused) is retried event by event, so only the culprits are dead-lettered.
func (s *Sink) flush(ctx context.Context, key string, cur *pending, res []sink.Result) error {
	p := *cur
	*cur = pending{}
	if p.b == nil || len(p.idx) == 0 {
		return nil
	}
	err := s.producer.SendEventDataBatch(ctx, p.b, nil)
	if err == nil {
		for _, i := range p.idx {
			res[i] = sink.Result{Status: sink.Delivered}
		}
		return nil
	}
	r := s.result(err)
	if r.Status == sink.Permanent && len(p.idx) > 1 {
		for j, i := range p.idx {
			one := pending{idx: []int{i}, evs: []*azeventhubs.EventData{p.evs[j]}}
			if one.b, err = s.newBatch(ctx, key); err == nil {
				err = one.b.AddEventData(p.evs[j], nil)
			}
			if err != nil {
				s.failRest(res, p.idx[j:], err)
				return err
			}
			if err := s.flush(ctx, key, &one, res); err != nil {
				s.failRest(res, p.idx[j+1:], err)
				return err
			}
		}
		return nil
	}
	for _, i := range p.idx {
		res[i] = r
	}
	if r.Status == sink.Transient {
		return err
	}
	return nil
}

// failRest gives the messages idx that were not attempted yet err's status.
func (s *Sink) failRest(res []sink.Result, idx []int, err error) {
	r := s.result(err)
	for _, i := range idx {
		if res[i].Err == errNotAttempted {
			res[i] = r
		}
	}
}

// newBatch opens an Event Hubs batch for partition key key (none for an empty sender) and, the
// first time it succeeds, learns the link's max message size for Limits.
func (s *Sink) newBatch(ctx context.Context, key string) (*azeventhubs.EventDataBatch, error) {
	var opts azeventhubs.EventDataBatchOptions
	if key != "" {
		opts.PartitionKey = &key
	}
	b, err := s.producer.NewEventDataBatch(ctx, &opts)
	if err == nil && !s.probed.Load() {
		s.probeLinkMax(ctx)
	}
	return b, err
}

// linkMaxRE reads the link's limit out of the SDK's refusal of an oversized MaxBytes: the SDK
// exposes the size it learned from the service's attach only that way. The test against the
// peer (which advertises a known size) pins this to the SDK version in go.mod.
var linkMaxRE = regexp.MustCompile(`maximum size allowed by link \((\d+)\)`)

// probeLinkMax asks the SDK for a batch larger than any link allows; the refusal names the
// link's max-message-size. It runs locally on the already open link.
func (s *Sink) probeLinkMax(ctx context.Context) {
	_, err := s.producer.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{MaxBytes: math.MaxUint64})
	if err == nil {
		return
	}
	m := linkMaxRE.FindStringSubmatch(err.Error())
	if m == nil {
		s.probed.Store(true) // an SDK that words it differently: keep the default
		return
	}
	if n, perr := strconv.ParseInt(m[1], 10, 64); perr == nil && n > 0 {
		s.linkMax.Store(n)
		s.probed.Store(true)
	}
}

// encode returns m with the sink's stamp filled in when it carries none, and its body per
// BodyMode (an error wrapping errBody if it cannot be built): what both transports send.
func (s *Sink) encode(m *message.Message) (message.Message, []byte, error) {
	mm := *m
	if mm.Stamp == "" {
		mm.Stamp = s.cfg.Stamp
	}
	body, err := sink.Body(&mm, s.cfg.BodyMode)
	if err != nil {
		return mm, nil, fmt.Errorf("%w: %w", errBody, err)
	}
	return mm, body, nil
}

// event builds the Event Hubs event for m: body per BodyMode, message-id = correlationId, the
// message's properties plus correlationId, senderId and stamp as application properties.
func (s *Sink) event(m *message.Message) (*azeventhubs.EventData, error) {
	mm, body, err := s.encode(m)
	if err != nil {
		return nil, err
	}
	id := mm.ID.String()
	ev := &azeventhubs.EventData{Body: body, MessageID: &id, Properties: eventProperties(&mm)}
	if s.cfg.BodyMode == sink.BodyEnvelope {
		ct := "application/json"
		ev.ContentType = &ct
	}
	return ev, nil
}

// eventProperties returns m's properties plus the envelope's identifying fields; those win over
// a message property of the same name, because consumers dedupe and route by them.
func eventProperties(m *message.Message) map[string]any {
	p := make(map[string]any, len(m.Properties)+4)
	for k, v := range m.Properties {
		p[k] = v
	}
	p["correlationId"] = m.ID.String()
	p["senderId"] = m.SenderID
	p["priority"] = int32(m.Priority)
	if m.Stamp != "" {
		p["stamp"] = m.Stamp
	}
	return p
}

// result turns a failure into a Result, logging configuration errors loudly (rate-limited).
func (s *Sink) result(err error) sink.Result {
	st := classify(err)
	if isConfigError(err) {
		now := time.Now().UnixNano()
		last := s.lastAuthLog.Load()
		if now-last >= int64(authLogEvery) && s.lastAuthLog.CompareAndSwap(last, now) {
			s.log.Error("event hubs refused the configured credentials or entity: configuration error, messages stay in the spool until it is fixed",
				"err", err, "namespace", s.namespace)
		}
	} else {
		s.log.Debug("send failed", "status", st.String(), "err", err)
	}
	r := sink.Result{Status: st, Err: err}
	if st == sink.Throttled {
		r.RetryAfter = s.cfg.ServerBusyWait
	}
	return r
}

// condServerBusy is Event Hubs' throttling condition (ServerBusyException).
const condServerBusy amqp.ErrCond = "com.microsoft:server-busy"

// DefaultServerBusyWait is the wait Event Hubs' documentation asks of a client that gets
// server-busy: Config.ServerBusyWait's default.
const DefaultServerBusyWait = 4 * time.Second

// classify decides what a failure means for the messages it concerns; it is the only place
// that does. The forwarder owns retries, so the question is only "can a later try succeed?":
//
//   - Permanent: the event itself is the problem and resending it cannot help. It is larger than
//     the link's max-message-size (the SDK's ErrEventDataTooLarge before sending, or the
//     service's amqp:link:message-size-exceeded / Kafka MESSAGE_TOO_LARGE after), the service
//     could not decode it (amqp:decode-error, Kafka CORRUPT_MESSAGE / INVALID_RECORD), or its
//     body could not be built. The forwarder dead-letters it with err as the reason.
//   - Throttled: the service is up and asks to slow down (com.microsoft:server-busy,
//     amqp:resource-limit-exceeded): retried after 4 s without opening the breaker. (Over the
//     Kafka transport a quota is a throttle_time_ms that franz-go waits out; a Send that runs
//     out of time behind it is Throttled by sendKafka, not here.)
//   - Transient: everything else. Timeouts (com.microsoft:timeout, context
//     deadlines), lost connections and links (azeventhubs ErrorCodeConnectionLost, net errors,
//     detach-forced), and unknown errors: the safe default, since a poison message is still
//     bounded by the spool's attempt limit. Configuration errors (unauthorized, hub not found,
//     entity disabled: see isConfigError) are Transient as well: the messages are fine and
//     must not be dead-lettered while an operator fixes a secret or a role assignment.
func classify(err error) sink.Status {
	if err == nil {
		return sink.Delivered
	}
	if errors.Is(err, azeventhubs.ErrEventDataTooLarge) || errors.Is(err, errBody) {
		return sink.Permanent
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Condition {
		case amqp.ErrCondMessageSizeExceeded, amqp.ErrCondDecodeError:
			return sink.Permanent
		case condServerBusy, amqp.ErrCondResourceLimitExceeded:
			return sink.Throttled
		}
		return sink.Transient
	}
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.CorruptMessage) || errors.Is(err, kerr.InvalidRecord) {
		return sink.Permanent
	}
	return sink.Transient
}

// isConfigError reports failures that no retry fixes without an operator: refused credentials,
// a missing or disabled hub, a missing role assignment.
func isConfigError(err error) bool {
	var ehErr *azeventhubs.Error
	if errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeUnauthorizedAccess {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Condition {
		case amqp.ErrCondUnauthorizedAccess, amqp.ErrCondNotFound, amqp.ErrCondNotAllowed, "com.microsoft:entity-disabled":
			return true
		}
	}
	var authErr *azidentity.AuthenticationFailedError
	var credErr *credentialError
	if errors.As(err, &authErr) || errors.As(err, &credErr) {
		return true
	}
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) || errors.Is(err, kerr.UnknownTopicOrPartition)
}

// maxWebSocketMessage bounds one WebSocket message of the AMQP stream: an AMQP frame, which the
// service keeps under its max-frame-size (a few hundred KiB); coder/websocket's default of
// 32 KiB would cut a large event's transfer.
const maxWebSocketMessage = 16 << 20

// dialWebSocket opens the AMQP connection's stream as a WebSocket: to the namespace (or
// CustomEndpoint, keeping the namespace's name for TLS), through the proxy Config.Proxy picks.
func (s *Sink) dialWebSocket(ctx context.Context, p azeventhubs.WebSocketConnParams) (net.Conn, error) {
	target, err := url.Parse(p.Host)
	if err != nil {
		return nil, fmt.Errorf("eventhubs: WebSocket URL %q: %w", p.Host, err)
	}
	var tlsConfig *tls.Config
	if s.cfg.TLSConfig != nil {
		tlsConfig = s.cfg.TLSConfig.Clone()
	}
	if s.cfg.CustomEndpoint != "" {
		if tlsConfig == nil {
			tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tlsConfig.ServerName == "" {
			tlsConfig.ServerName = target.Hostname()
		}
		target.Host = s.cfg.CustomEndpoint
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	if s.cfg.Proxy != nil { // else DefaultTransport's: http.ProxyFromEnvironment
		tr.Proxy = s.cfg.Proxy
	}
	c, resp, err := websocket.Dial(ctx, target.String(), &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{"amqp"},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("eventhubs: AMQP over WebSockets to %s: %s: %w", target.Host, resp.Status, err)
		}
		return nil, fmt.Errorf("eventhubs: AMQP over WebSockets to %s: %w", target.Host, err)
	}
	c.SetReadLimit(maxWebSocketMessage)
	// The connection outlives ctx (the dial's): it ends when the SDK closes it.
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// Check connects and reads the event hub's properties (the $management READ an Event Hubs
// consumer makes; over the Kafka transport, the topic's metadata), without sending: it fails when
// the namespace cannot be reached, the credentials or role are refused, or the hub does not exist.
// It is bounded by ctx and by SendTimeout; errors name the network error where there is one.
func (s *Sink) Check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	if s.kafka != nil {
		if err := kafka.CheckTopic(ctx, s.kafka, s.hub); err != nil {
			return fmt.Errorf("eventhubs: %w", err)
		}
		return nil
	}
	props, err := s.producer.GetEventHubProperties(ctx, nil)
	if err != nil {
		return fmt.Errorf("eventhubs: properties of event hub %s in %s: %w", s.hub, s.namespace, sink.Cause(err))
	}
	if !strings.EqualFold(props.Name, s.hub) {
		return fmt.Errorf("eventhubs: the namespace %s answered for event hub %q, not %q", s.namespace, props.Name, s.hub)
	}
	if len(props.PartitionIDs) == 0 {
		return fmt.Errorf("eventhubs: event hub %s has no partitions", s.hub)
	}
	return nil
}
