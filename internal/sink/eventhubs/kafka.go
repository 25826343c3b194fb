package eventhubs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/proxydial"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// kafkaMaxBatchBytes is Event Hubs' Kafka request limit (1 MiB); a record larger than a batch
// fails with MESSAGE_TOO_LARGE before it is sent.
const kafkaMaxBatchBytes = 1 << 20

// newKafkaClient builds a franz-go producer for the namespace's Kafka endpoint, reporting its
// throttles to tw. Like the AMQP producer it does not connect until the first produce.
func newKafkaClient(cfg Config, cs ConnectionString, hub string, tw *kafka.ThrottleWatch) (*kgo.Client, error) {
	brokers, _, user, password, err := KafkaSettings(cfg.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("eventhubs: ConnectionString: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	}
	if cfg.CustomEndpoint != "" {
		brokers = []string{cfg.CustomEndpoint}
		if tc.ServerName == "" {
			tc.ServerName = cs.Host // the certificate names the namespace, not the endpoint
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.Dialer(proxydial.Dialer{Proxy: cfg.Proxy, TLS: tc}.DialContext),
		kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism()),
		kgo.DefaultProduceTopic(hub),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Event Hubs' Kafka endpoint has not always offered idempotent producers, and duplicates
		// are expected anyway (at-least-once, deduplicated by correlationId downstream).
		kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchMaxBytes(kafkaMaxBatchBytes),
		// As with the AMQP transport, a small retry budget: the forwarder owns retries.
		kgo.RecordRetries(sdkMaxRetries+1),
		kgo.RecordDeliveryTimeout(cfg.SendTimeout),
		kgo.ProducerLinger(0),
		kgo.WithHooks(tw),
	)
	if err != nil {
		return nil, fmt.Errorf("eventhubs: kafka client: %w", err)
	}
	return cl, nil
}

// sendKafka produces every message of batch (key = senderId, headers as the AMQP application
// properties) and waits for each acknowledgement, or for ctx to end (the unanswered are then
// Transient). kgo keeps a partition's records in order; kafka.ProduceAll re-produces a record
// that a concurrent Send's expired context took down with its own. A record that runs out of
// time (ctx, or the client's delivery timeout) while the namespace's throttle held the client's
// requests is Throttled, with the throttle's time left as RetryAfter: a quota, not an outage.
func (s *Sink) sendKafka(ctx context.Context, batch []message.Message, res []sink.Result) {
	start := time.Now()
	throttled := func(err error) (sink.Result, bool) {
		if left, held := s.throttle.HeldSince(start); held {
			return kafka.ThrottledResult(left, fmt.Errorf("eventhubs: %w", err)), true
		}
		return sink.Result{}, false
	}
	recs := make([]*kgo.Record, len(batch))
	for i := range batch {
		m, body, err := s.encode(&batch[i])
		if err != nil {
			res[i] = s.result(err)
			continue
		}
		props := eventProperties(&m)
		headers := make([]kgo.RecordHeader, 0, len(props))
		for k, v := range props {
			headers = append(headers, kgo.RecordHeader{Key: k, Value: fmt.Append(nil, v)}) // strings, and the priority as digits
		}
		recs[i] = &kgo.Record{Key: []byte(m.SenderID), Value: body, Headers: headers}
	}
	unanswered := kafka.ProduceAll(ctx, s.kafka, recs, func(i int, err error) {
		if err != nil {
			if errors.Is(err, kgo.ErrRecordTimeout) {
				if r, ok := throttled(err); ok {
					res[i] = r
					return
				}
			}
			res[i] = s.result(err)
			return
		}
		res[i] = sink.Result{Status: sink.Delivered}
	})
	for _, i := range unanswered {
		err := fmt.Errorf("no acknowledgement: %w", ctx.Err())
		if r, ok := throttled(err); ok {
			res[i] = r
			continue
		}
		res[i] = s.result(err)
	}
}
