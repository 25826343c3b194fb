// Package sink provides the contract between the forwarder and a destination (Event Hubs over
// AMQP, Kafka, an NDJSON file): a batch of messages in, an outcome per message out. Backends live
// in their own packages (sink/file, sink/kafka, sink/eventhubs) and assert
// `var _ sink.Sink = (*Sink)(nil)`. A sink never touches the spool; the forwarder acks, retries or
// dead-letters according to the outcomes.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// Status is what became of one message of a batch.
type Status uint8

const (
	// Delivered means the destination acknowledged the message durably (Kafka acks=all, an
	// Event Hubs accepted disposition, an fsync'd file).
	Delivered Status = iota
	// Transient means the message was not delivered but may be on a later try (the destination
	// is unreachable, throttling, timing out).
	Transient
	// Permanent means the message can never be delivered as it is (too large, rejected as
	// malformed, not authorised for this entity): it goes to dead/ with Result.Err as the reason.
	Permanent
	// Throttled means the destination is up and asked to slow down (Event Hubs server-busy or
	// a quota; a Kafka broker's produce quota that held the records past the Send's deadline):
	// not delivered, not a fault. The forwarder
	// waits Result.RetryAfter (or its own backoff) and sends again, without counting it
	// against the breaker or the claim's rounds.
	Throttled
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Throttled:
		return "throttled"
	}
	return "unknown"
}

// Result is the outcome for one message. Err says why it was not delivered, in the
// destination's words: it becomes the dead-letter reason.
type Result struct {
	Status Status
	Err    error
	// RetryAfter is the destination's hint for a Throttled message; 0 means none.
	RetryAfter time.Duration
}

// Sink delivers batches. Send must return exactly one Result per message of batch, in order,
// and must return only once each Delivered message is durably acknowledged by the destination.
// It must honour ctx (a deadline set by the forwarder inside the claim's lease). Implementations
// are safe for concurrent use: the forwarder sends several batches at once.
type Sink interface {
	Send(ctx context.Context, batch []message.Message) []Result
	// Limits tells the forwarder how to cut batches for this destination.
	Limits() Limits
	Close() error
}

// Limits bound the batches the forwarder hands a sink. Zero fields mean no limit.
type Limits struct {
	// MaxBatchMessages is the most messages in one Send.
	MaxBatchMessages int
	// MaxBatchBytes bounds the sum of EncodedSize over a batch.
	MaxBatchBytes int
	// MaxMessageBytes is the largest single encoded event the destination accepts; a larger one
	// is Permanent without being sent.
	MaxMessageBytes int
	// Body is the body mode the sink encodes events with, so that the forwarder estimates sizes
	// with EncodedSize(m, Body) as the sink will see them. Empty means BodyEnvelope.
	Body BodyMode
}

// All returns a Result slice of n copies of r: for a batch that failed as a whole.
func All(n int, r Result) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// BodyMode says what an event's body is.
type BodyMode string

const (
	// BodyEnvelope is the JSON envelope (default).
	BodyEnvelope BodyMode = "envelope"
	// BodyRaw is the message value alone.
	BodyRaw BodyMode = "raw"
)

// Envelope is the JSON body of an event in BodyEnvelope mode:
// {"correlationId","senderId","value","receivedAt","stamp","properties"}.
type Envelope struct {
	CorrelationID string            `json:"correlationId"`
	SenderID      string            `json:"senderId"`
	Value         string            `json:"value"`
	ReceivedAt    time.Time         `json:"receivedAt"`
	Stamp         string            `json:"stamp"`
	Properties    map[string]string `json:"properties,omitempty"`
}

// NewEnvelope returns m's envelope.
func NewEnvelope(m *message.Message) Envelope {
	return Envelope{
		CorrelationID: m.ID.String(), SenderID: m.SenderID, Value: m.Value,
		ReceivedAt: m.ReceivedAt.UTC(), Stamp: m.Stamp, Properties: m.Properties,
	}
}

// Body returns the event body of m in the given mode.
func Body(m *message.Message, mode BodyMode) ([]byte, error) {
	if mode == BodyRaw {
		return []byte(m.Value), nil
	}
	return json.Marshal(NewEnvelope(m))
}

// EncodedSize estimates len(Body(m, mode)) without encoding, for cutting batches: exact for raw
// bodies, generous for envelopes (JSON escaping is estimated at one byte in eight). A sink whose
// destination enforces a hard limit still checks the real size.
func EncodedSize(m *message.Message, mode BodyMode) int {
	if mode == BodyRaw {
		return len(m.Value)
	}
	n := 128 + len(m.SenderID) + len(m.Stamp) + len(m.Value) + len(m.Value)/8
	for k, v := range m.Properties {
		n += len(k) + len(v) + 8
	}
	return n
}

// Checker is implemented by sinks that can check their destination without sending anything:
// connect, authenticate and fetch the metadata a Send needs (the topic or event hub exists, a
// file's directory is writable). serve runs it at start and `bridgehead doctor` on demand.
// Check must honour ctx and never write an event; its error names the underlying cause (a
// refused connection, an unknown topic), not only that a deadline passed.
type Checker interface {
	Check(ctx context.Context) error
}

// EventLimiter is implemented by sinks whose largest event is a setting of the destination that
// only the destination can tell (Kafka: the topic's max.message.bytes). serve asks at start, and
// again later, and the API refuses with 413 a message whose event would pass the answer.
type EventLimiter interface {
	// EventLimit asks the destination for the largest event it takes, in bytes, measured as the
	// API measures an event against --max-event-bytes (EventBytes plus FramingAllowance must not
	// pass it); already lowered to the sink's own limit when that is smaller. source names
	// where the number comes from, for the 413's detail and the logs ("max.message.bytes of
	// Kafka topic readings"). It honours ctx, never sends an event, and fails (naming the
	// cause, see Cause) when the destination cannot be asked.
	EventLimit(ctx context.Context) (bytes int, source string, err error)
}

// Cause returns the most telling error in err's tree for a person: the network error in it (a
// *net.OpError such as "dial tcp 127.0.0.1:9: connect: connection refused", or a DNS error), or
// err itself when there is none. Client libraries often report only that a deadline passed while
// the network error sits deeper in the chain.
func Cause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns
	}
	return err
}
