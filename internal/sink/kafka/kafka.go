// Package kafka provides a sink that produces events to a Kafka topic (or an Event Hubs
// namespace's Kafka endpoint) with github.com/twmb/franz-go.
//
// Guarantees: a message is Delivered only after the broker acknowledged its record with
// acks=all (RequiredAcks(AllISRAcks)); the producer is idempotent unless disabled. The record
// key is the sender id (so one sender's messages share a partition and keep their order), the
// record timestamp is the time the stamp received the message, and the headers carry
// correlationId, senderId and stamp (then the message's properties). Errors are mapped to
// Transient or Permanent by one function, classify.
//
// A broker that throttles the producer (a produce quota: the response carries throttle_time_ms,
// and franz-go holds its next request to that broker that long) is not an outage: the
// throttles are counted (bridgehead_kafka_throttled_responses_total and
// bridgehead_kafka_throttle_seconds_total), and a Send that runs out of time while a throttle
// holds its records reports them Throttled with the time the throttle has left as RetryAfter,
// not Transient, so the forwarder waits it out without opening its breaker. Kafka has no error
// code for a produce quota: throttle_time_ms is the only signal.
//
// EventLimit (sink.EventLimiter) reads the topic's effective max.message.bytes from the
// brokers (DescribeConfigs, which answers the broker's default for a topic without its own),
// lowered to the producer's MaxRecordBytes: the largest event the API may accept.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/proxydial"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

var (
	_ sink.Sink         = (*Sink)(nil)
	_ sink.Checker      = (*Sink)(nil)
	_ sink.EventLimiter = (*Sink)(nil)
)

// Defaults for Config fields left zero.
const (
	// DefaultMaxRecordBytes is the largest record batch the producer builds: 1 MiB, Event Hubs'
	// limit for one event (and Kafka's default message.max.bytes, give or take 12 bytes).
	DefaultMaxRecordBytes = 1 << 20
	// DefaultMaxBatchMessages bounds the messages of one Send.
	DefaultMaxBatchMessages = 10_000
	// DefaultMaxBatchBytes bounds the estimated bytes of one Send.
	DefaultMaxBatchBytes = 8 << 20
	// DefaultClientID names the producer to the brokers.
	DefaultClientID = "bridgehead"
	// recordOverhead is what a record batch of one record adds to the record's key, value and
	// headers (batch header 61 bytes, record varints, header lengths), rounded up generously:
	// a record larger than MaxRecordBytes − recordOverhead is refused without being sent. It is
	// the allowance the API adds to sink.EventBytes, so that what it accepts this sink sends.
	recordOverhead = sink.FramingAllowance
)

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL configures authentication; an empty Mechanism means none.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Event Hubs' Kafka endpoint uses PLAIN
	// with User "$ConnectionString" and the connection string as Password.
	Mechanism string
	User      string
	Password  string
}

// Config configures a Kafka sink.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the topic (Event Hubs: the event hub) every record goes to. Required.
	Topic string
	// TLS enables TLS with this configuration; nil means plaintext.
	TLS *tls.Config
	// Proxy picks an HTTPS proxy to reach the brokers through with CONNECT; nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY, NO_PROXY; never for localhost).
	Proxy func(*http.Request) (*url.URL, error)
	// SASL enables authentication (use it with TLS).
	SASL SASL
	// ClientID names the producer to the brokers; default "bridgehead".
	ClientID string
	// Body is the record value: the JSON envelope (default) or the raw message value.
	Body sink.BodyMode
	// Stamp fills the stamp header of a message that carries none.
	Stamp string
	// MaxRecordBytes is the producer's max record batch size (ProducerBatchMaxBytes); a record
	// within about 1 KiB of it is Permanent without being sent. Default 1 MiB.
	MaxRecordBytes int
	// MaxBatchMessages and MaxBatchBytes bound one Send; defaults 10,000 and 8 MiB.
	MaxBatchMessages int
	MaxBatchBytes    int
	// Compression is none (default), gzip, snappy, lz4 or zstd. Event Hubs accepts none and gzip.
	Compression string
	// DisableIdempotence turns the idempotent producer off (for brokers that refuse
	// InitProducerID).
	DisableIdempotence bool
	// Logger receives the client's warnings and errors, and loud authentication failures; nil
	// means no logging.
	Logger *slog.Logger
	// Registerer receives the producer's throttle counters; nil means they are not exported.
	Registerer prometheus.Registerer
	// Options are extra franz-go client options, applied last (tests, tuning).
	Options []kgo.Opt
}

func (c *Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka sink: Brokers is required")
	case c.Topic == "":
		return errors.New("kafka sink: Topic is required")
	case c.Body != "" && c.Body != sink.BodyEnvelope && c.Body != sink.BodyRaw:
		return fmt.Errorf("kafka sink: Body %q is not %q or %q", c.Body, sink.BodyEnvelope, sink.BodyRaw)
	case c.MaxRecordBytes != 0 && (c.MaxRecordBytes < 2*recordOverhead || c.MaxRecordBytes > 1<<30):
		return fmt.Errorf("kafka sink: MaxRecordBytes %d is outside [%d, 1 GiB]", c.MaxRecordBytes, 2*recordOverhead)
	case c.MaxBatchMessages < 0:
		return fmt.Errorf("kafka sink: MaxBatchMessages %d is negative", c.MaxBatchMessages)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("kafka sink: MaxBatchBytes %d is negative", c.MaxBatchBytes)
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case "", SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka sink: SASL.Mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	return nil
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka sink: Compression %q is not none, gzip, snappy, lz4 or zstd", name)
}

// Sink produces batches to one topic. It is safe for concurrent use (the franz-go client is).
type Sink struct {
	cfg      Config
	log      *slog.Logger
	cl       *kgo.Client
	conn     connWatch      // the last broker connection attempt's error, for causes
	throttle *ThrottleWatch // the brokers' throttles: counted, and how long they hold requests
}

// New builds the producer client. It does not connect: a broker that is down at start is
// retried on each Send.
func New(cfg Config) (*Sink, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Body == "" {
		cfg.Body = sink.BodyEnvelope
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.MaxBatchMessages == 0 {
		cfg.MaxBatchMessages = DefaultMaxBatchMessages
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sink", "kafka", "topic", cfg.Topic)
	comp, _ := codec(cfg.Compression)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)),
		kgo.ProducerBatchCompression(comp),
		// Several Sends are in flight at once, each up to MaxBatchMessages: room for them all
		// plus the records of Sends that gave up at their deadline but are still in flight.
		kgo.MaxBufferedRecords(8 * cfg.MaxBatchMessages),
		kgo.ProducerLinger(0),
		kgo.WithLogger(slogAdapter{log}),
	}
	tw, err := NewThrottleWatch(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	s := &Sink{cfg: cfg, log: log, throttle: tw}
	opts = append(opts, kgo.WithHooks(&s.conn, s.throttle))
	if cfg.DisableIdempotence {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	// One dialer for both: direct, or through the site's proxy; TLS after the tunnel.
	opts = append(opts, kgo.Dialer(proxydial.Dialer{Proxy: cfg.Proxy, TLS: cfg.TLS}.DialContext))
	if m := mechanism(cfg.SASL); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	opts = append(opts, cfg.Options...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	s.cl = cl
	return s, nil
}

// connWatch records the error of the last broker connection attempt (nil once one succeeds):
// franz-go retries a refused connection until the caller's deadline and then reports only the
// deadline, while the refusal is the cause an operator needs. It is a kgo.HookBrokerConnect;
// mu guards err.
type connWatch struct {
	mu  sync.Mutex
	err error
}

var _ kgo.HookBrokerConnect = (*connWatch)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (w *connWatch) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// last returns the last connection attempt's error, or nil.
func (w *connWatch) last() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// ThrottleWatch counts the brokers' throttles (a response carrying throttle_time_ms: the broker
// enforces a quota) and remembers until when franz-go holds requests because of them: it waits
// out a throttle itself, delaying its next request to that broker (KIP-219), so a produce slowed
// by a quota shows only as records that take long. Install it with kgo.WithHooks. It is exported
// for the Event Hubs sink's Kafka transport, which produces through ProduceAll too. until is an
// atomic and the counters are safe for concurrent use.
type ThrottleWatch struct {
	until     atomic.Int64 // unix nanoseconds: the latest end of a throttle the client honours
	responses prometheus.Counter
	seconds   prometheus.Counter
}

var _ kgo.HookBrokerThrottle = (*ThrottleWatch)(nil)

// NewThrottleWatch returns a ThrottleWatch whose counters
// (bridgehead_kafka_throttled_responses_total, bridgehead_kafka_throttle_seconds_total) are
// registered with reg; nil means they are not exported.
func NewThrottleWatch(reg prometheus.Registerer) (*ThrottleWatch, error) {
	w := &ThrottleWatch{
		responses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_kafka_throttled_responses_total",
			Help: "Broker responses to the Kafka producer (the kafka sink, or the eventhubs sink's kafka transport) that carried a throttle (throttle_time_ms > 0: a quota); the producer holds its next request to that broker as long.",
		}),
		seconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridgehead_kafka_throttle_seconds_total",
			Help: "Sum of the throttle times the brokers asked of the Kafka producer.",
		}),
	}
	if reg == nil {
		return w, nil
	}
	for _, c := range []prometheus.Collector{w.responses, w.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return w, nil
}

// OnBrokerThrottle implements kgo.HookBrokerThrottle.
func (w *ThrottleWatch) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, afterResponse bool) {
	w.responses.Inc()
	w.seconds.Add(d.Seconds())
	if !afterResponse {
		return // a broker before Kafka 2.0 waited before answering: nothing is held now
	}
	end := time.Now().Add(d).UnixNano()
	for {
		old := w.until.Load()
		if end <= old || w.until.CompareAndSwap(old, end) {
			return
		}
	}
}

// HeldSince reports whether a throttle held the client's requests at some point after start,
// and how long it has left (0 once it is over).
func (w *ThrottleWatch) HeldSince(start time.Time) (left time.Duration, held bool) {
	n := w.until.Load()
	if n == 0 {
		return 0, false
	}
	until := time.Unix(0, n)
	if !until.After(start) {
		return 0, false
	}
	return max(time.Until(until), 0), true
}

// gaveUp is the Result of records still unacknowledged when a Send that began at start ran out
// of time. While a broker's throttle held the client's requests at some point of the Send and no
// connection attempt failed, the records are Throttled, with the time the throttle has left as
// RetryAfter (0 once it is over: the forwarder's shortest backoff): the brokers are up and asked
// to slow down, which must not open the breaker. Otherwise they are Transient, naming the last
// failed connection attempt if there was one.
func (s *Sink) gaveUp(start time.Time, ctxErr error) sink.Result {
	if left, held := s.throttle.HeldSince(start); held && s.conn.last() == nil {
		return ThrottledResult(left, fmt.Errorf("kafka sink: no acknowledgement: %w", ctxErr))
	}
	return sink.Result{Status: sink.Transient, Err: s.timedOut("no acknowledgement", ctxErr)}
}

// ThrottledResult is the Result of a record that a broker's throttle held until its Send ran out
// of time (err says how), with left, the throttle's time left, as RetryAfter.
func ThrottledResult(left time.Duration, err error) sink.Result {
	return sink.Result{Status: sink.Throttled, RetryAfter: left, Err: fmt.Errorf(
		"a broker is throttling the producer (a quota), %v left: %w", left.Round(time.Millisecond), err)}
}

// timedOut explains a deadline that passed while waiting on the brokers: with the last
// connection attempt's error when it failed ("dial tcp 127.0.0.1:9: connect: connection
// refused"), which is what an operator must fix. The result wraps ctxErr either way.
func (s *Sink) timedOut(what string, ctxErr error) error {
	if cerr := s.conn.last(); cerr != nil {
		return fmt.Errorf("kafka sink: %s: cannot connect to a broker: %w (gave up: %w)", what, sink.Cause(cerr), ctxErr)
	}
	return fmt.Errorf("kafka sink: %s: %w", what, ctxErr)
}

// Check asks the brokers for the topic's metadata, without producing (see CheckTopic); when no
// broker answered before ctx ended, the error names the last connection attempt's failure.
func (s *Sink) Check(ctx context.Context) error {
	err := CheckTopic(ctx, s.cl, s.cfg.Topic)
	if err != nil && ctx.Err() != nil {
		return s.timedOut("metadata of topic "+s.cfg.Topic, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	return nil
}

// CheckTopic asks cl's brokers for topic's metadata and produces nothing: it connects (TLS and
// SASL included) and fails when no broker answers (naming the network error), the topic does not
// exist (it is never created here), the client is not authorised for it, or it has no partitions.
func CheckTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata of topic %s: %w", topic, sink.Cause(err))
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return fmt.Errorf("topic %s: %w", topic, err)
		}
		if len(rt.Partitions) == 0 {
			return fmt.Errorf("topic %s has no partitions", topic)
		}
		return nil
	}
	return fmt.Errorf("topic %s: %w", topic, kerr.UnknownTopicOrPartition)
}

// EventLimit implements sink.EventLimiter: it asks the brokers for the topic's effective
// max.message.bytes (DescribeConfigs: the topic's own setting, else the broker's
// message.max.bytes) and returns the smaller of it and MaxRecordBytes, naming which. Kafka
// measures max.message.bytes against a record batch, which is what sink.FramingAllowance
// allows for beside the record. It needs the DescribeConfigs permission on the topic.
func (s *Sink) EventLimit(ctx context.Context) (int, string, error) {
	n, err := TopicMaxMessageBytes(ctx, s.cl, s.cfg.Topic)
	if err != nil && ctx.Err() != nil {
		return 0, "", s.timedOut("configuration of topic "+s.cfg.Topic, ctx.Err())
	}
	if err != nil {
		return 0, "", fmt.Errorf("kafka sink: %w", err)
	}
	if s.cfg.MaxRecordBytes < n {
		return s.cfg.MaxRecordBytes, fmt.Sprintf("the Kafka producer's max record batch of %d bytes (topic %s allows %d)",
			s.cfg.MaxRecordBytes, s.cfg.Topic, n), nil
	}
	return n, "max.message.bytes of Kafka topic " + s.cfg.Topic, nil
}

// TopicMaxMessageBytes asks cl's brokers for topic's effective max.message.bytes: its own
// setting, else the broker's message.max.bytes, else the default. A broker resolves this itself
// in the topic's max.message.bytes entry and lists the settings beneath it as synonyms; a broker
// that lists the broker-level setting as an entry of its own instead (kfake) is read the same
// way: the value from the most specific source wins.
func TopicMaxMessageBytes(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("configuration of topic %s: %w", topic, sink.Cause(err))
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("configuration of topic %s: %w", topic, err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("configuration of topic %s: %w", topic, rc.Err)
	}
	var (
		best  *string
		bestS kmsg.ConfigSource
	)
	consider := func(key string, v *string, src kmsg.ConfigSource) {
		// Sources from the topic's own (1) to the default (5); 0 is unknown, 6 a logger's.
		if (key != "max.message.bytes" && key != "message.max.bytes") || v == nil ||
			src < kmsg.ConfigSourceDynamicTopicConfig || src > kmsg.ConfigSourceDefaultConfig {
			return
		}
		if best == nil || src < bestS {
			best, bestS = v, src
		}
	}
	for _, c := range rc.Configs {
		consider(c.Key, c.Value, c.Source)
		for _, syn := range c.Synonyms {
			consider(syn.Key, syn.Value, syn.Source)
		}
	}
	if best == nil {
		return 0, fmt.Errorf("topic %s: the brokers did not say its max.message.bytes", topic)
	}
	n, err := strconv.Atoi(*best)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("topic %s: max.message.bytes %q is not a positive number", topic, *best)
	}
	return n, nil
}

func mechanism(c SASL) sasl.Mechanism {
	switch strings.ToUpper(c.Mechanism) {
	case SASLPlain:
		return plain.Auth{User: c.User, Pass: c.Password}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha512Mechanism()
	}
	return nil
}

// Limits reports the batch bounds and the largest record the producer sends.
func (s *Sink) Limits() sink.Limits {
	return sink.Limits{
		MaxBatchMessages: s.cfg.MaxBatchMessages,
		MaxBatchBytes:    s.cfg.MaxBatchBytes,
		MaxMessageBytes:  s.cfg.MaxRecordBytes - recordOverhead,
		Body:             s.cfg.Body,
	}
}

// RecordTooLargeError reports a record refused without being sent.
type RecordTooLargeError struct {
	Bytes, Limit int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record of %d bytes exceeds the %d-byte limit", e.Bytes, e.Limit)
}

// Unwrap makes a RecordTooLargeError match kerr.MessageTooLarge, as the broker would answer.
func (e *RecordTooLargeError) Unwrap() error { return kerr.MessageTooLarge }

// ProduceAll produces every non-nil record of recs through cl and calls done(i, err) once for
// each, with its acknowledgement's error, until all have answered or ctx ends; it returns the
// indexes of the records still unanswered then (Send reports them Transient: they may still
// reach the topic, a duplicate on retry, never a loss). done runs in ProduceAll's goroutine.
//
// A record that fails with a context error while ctx is alive is produced again: franz-go fails
// a partition's whole buffered batch by the context of its first record, so records of a
// concurrent Send buffered behind a record whose Send gave up share its fate.
func ProduceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, done func(i int, err error)) (unanswered []int) {
	type produced struct {
		i   int
		err error
	}
	answers := make(chan produced, len(recs)) // buffered: a promise never blocks, even after we return
	waiting := make([]bool, len(recs))
	pending := 0
	produce := func(i int) {
		cl.Produce(ctx, recs[i], func(_ *kgo.Record, err error) { answers <- produced{i, err} })
	}
	for i, r := range recs {
		if r != nil {
			waiting[i] = true
			pending++
			produce(i)
		}
	}
	retries := 0
	for pending > 0 {
		select {
		case a := <-answers:
			if a.err != nil && ctx.Err() == nil && retries < len(recs) &&
				(errors.Is(a.err, context.Canceled) || errors.Is(a.err, context.DeadlineExceeded)) {
				retries++
				produce(a.i)
				continue
			}
			waiting[a.i] = false
			pending--
			done(a.i, a.err)
		case <-ctx.Done():
			for i, w := range waiting {
				if w {
					unanswered = append(unanswered, i)
				}
			}
			return unanswered
		}
	}
	return nil
}

// Send produces batch and waits for every record's acknowledgement, or for ctx to end: records
// still unacknowledged then are Transient with ctx's error, or Throttled when a broker's throttle
// held them (see gaveUp); either way they may still reach the topic: a duplicate on retry, never
// a loss. A record too large for MaxRecordBytes is Permanent without
// being sent; every other outcome goes through classify.
func (s *Sink) Send(ctx context.Context, batch []message.Message) []sink.Result {
	out := make([]sink.Result, len(batch))
	if len(batch) == 0 {
		return out
	}
	if err := ctx.Err(); err != nil {
		return sink.All(len(batch), sink.Result{Status: sink.Transient, Err: err})
	}
	start := time.Now()
	recs := make([]*kgo.Record, len(batch))
	limit := s.cfg.MaxRecordBytes - recordOverhead
	for i := range batch {
		rec, err := s.record(&batch[i])
		if err != nil {
			out[i] = sink.Result{Status: sink.Permanent, Err: err}
			continue
		}
		if n := recordSize(rec); n > limit {
			out[i] = sink.Result{Status: sink.Permanent, Err: &RecordTooLargeError{Bytes: n, Limit: limit}}
			continue
		}
		recs[i] = rec
	}
	var tooLarge []int
	unanswered := ProduceAll(ctx, s.cl, recs, func(i int, err error) {
		if errors.Is(err, kerr.MessageTooLarge) {
			tooLarge = append(tooLarge, i)
			return
		}
		out[i] = s.result(err)
	})
	if ctx.Err() != nil && (len(unanswered) > 0 || len(tooLarge) > 0) {
		r := s.gaveUp(start, ctx.Err())
		for _, i := range append(unanswered, tooLarge...) {
			out[i] = r
		}
		return out
	}
	s.retryAlone(ctx, recs, tooLarge, out)
	return out
}

// retryAlone re-sends, one at a time, the records the broker refused as MESSAGE_TOO_LARGE. The
// broker judges a whole record batch (all the buffered records of one partition), so a small
// record may have been refused only for sharing a batch with a large one; alone, it succeeds,
// and only a record too large by itself is Permanent. (A concurrent Send's records may still share
// the retry's batch; a record wrongly refused that way is dead-lettered and replayable.)
func (s *Sink) retryAlone(ctx context.Context, recs []*kgo.Record, idx []int, out []sink.Result) {
	for _, i := range idx {
		old := recs[i]
		r := &kgo.Record{Key: old.Key, Value: old.Value, Headers: old.Headers, Timestamp: old.Timestamp}
		err := s.cl.ProduceSync(ctx, r).FirstErr()
		if errors.Is(err, kerr.MessageTooLarge) {
			err = fmt.Errorf("record of %d bytes: %w", recordSize(recs[i]), err)
		}
		out[i] = s.result(err)
	}
}

func (s *Sink) result(err error) sink.Result {
	if err == nil {
		return sink.Result{Status: sink.Delivered}
	}
	st := classify(err)
	if isAuth(err) {
		s.log.Error("kafka authentication or authorisation failed: check the credentials and ACLs; messages stay in the spool", "err", err)
	}
	return sink.Result{Status: st, Err: fmt.Errorf("kafka: %w", err)}
}

// classify decides what a produce error means for the message, the one place this sink decides
// retriability:
//
//   - too large (the broker's MESSAGE_TOO_LARGE, franz-go's client-side check, our own
//     RecordTooLargeError, RECORD_LIST_TOO_LARGE) and INVALID_RECORD are about the message
//     itself: Permanent, the message goes to dead/ with the error as its reason;
//   - authentication and authorisation failures are Transient, not Permanent: they are a
//     configuration problem of the stamp, not of the message, and fixing the credentials must let
//     delivery resume with nothing dead-lettered (Send logs them loudly);
//   - a context deadline or cancellation is Transient (the forwarder's lease-bounded deadline);
//   - errors Kafka marks retriable (kerr.IsRetriable), franz-go's own give-ups (record timeout,
//     retries exhausted, buffer full, client closed) and network errors are Transient;
//   - anything else is Transient too: an unknown error is not proof that the message is bad,
//     and a message that keeps failing still reaches dead/ through the spool's attempt limit.
func classify(err error) sink.Status {
	switch {
	case err == nil:
		return sink.Delivered
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge),
		errors.Is(err, kerr.InvalidRecord):
		return sink.Permanent
	case isAuth(err):
		return sink.Transient
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return sink.Transient
	case kerr.IsRetriable(err):
		return sink.Transient
	default:
		return sink.Transient
	}
}

// isAuth reports authentication and authorisation failures.
func isAuth(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.DelegationTokenAuthorizationFailed)
}

// record builds m's record: key senderId, value the body, timestamp receivedAt, headers.
func (s *Sink) record(m *message.Message) (*kgo.Record, error) {
	body, err := sink.Body(m, s.cfg.Body)
	if err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	stamp := m.Stamp
	if stamp == "" {
		stamp = s.cfg.Stamp
	}
	hs := make([]kgo.RecordHeader, 4, 4+len(m.Properties))
	hs[0] = kgo.RecordHeader{Key: "correlationId", Value: []byte(m.ID.String())}
	hs[1] = kgo.RecordHeader{Key: "senderId", Value: []byte(m.SenderID)}
	hs[2] = kgo.RecordHeader{Key: "stamp", Value: []byte(stamp)}
	hs[3] = kgo.RecordHeader{Key: "priority", Value: strconv.AppendUint(nil, uint64(m.Priority), 10)}
	for k, v := range m.Properties {
		if sink.ReservedProperty(k) {
			continue
		}
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	ts := m.ReceivedAt
	if ts.IsZero() {
		ts = time.Now()
	}
	return &kgo.Record{Key: []byte(m.SenderID), Value: body, Headers: hs, Timestamp: ts}, nil
}

// recordSize is the bytes of a record's key, value and headers, as franz-go sizes it.
func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Close closes the client. Records of Sends that gave up at their deadline and are still
// buffered are failed (they are still in the spool).
func (s *Sink) Close() error {
	s.cl.Close()
	return nil
}

// slogAdapter forwards franz-go's warnings and errors to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	a.l.Log(context.Background(), lv, msg, keyvals...)
}
