package eventhubs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// kafkaMaxBatchBytes is Event Hubs' Kafka request limit (1 MiB); a record larger than a batch
// fails with MESSAGE_TOO_LARGE before it is sent.
const kafkaMaxBatchBytes = 1 << 20

// newKafkaClient builds a franz-go producer for the namespace's Kafka endpoint. Like the AMQP
// producer it does not connect until the first produce.
func newKafkaClient(cfg Config, cs ConnectionString, hub string) (*kgo.Client, error) {
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
		kgo.DialTLSConfig(tc),
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
	)
	if err != nil {
		return nil, fmt.Errorf("eventhubs: kafka client: %w", err)
	}
	return cl, nil
}

// sendKafka produces every message of batch (key = senderId, headers as the AMQP application
// properties) and waits for each acknowledgement. kgo keeps a partition's records in order.
func (s *Sink) sendKafka(ctx context.Context, batch []message.Message, res []sink.Result) {
	var wg sync.WaitGroup
	for i := range batch {
		m, body, err := s.encode(&batch[i])
		if err != nil {
			res[i] = s.result(err)
			continue
		}
		props := eventProperties(&m)
		headers := make([]kgo.RecordHeader, 0, len(props))
		for k, v := range props {
			headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v.(string))})
		}
		rec := &kgo.Record{Key: []byte(m.SenderID), Value: body, Headers: headers}
		wg.Add(1)
		// Each promise writes only res[i]; wg.Wait orders those writes before Send returns.
		s.kafka.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				res[i] = s.result(err)
				return
			}
			res[i] = sink.Result{Status: sink.Delivered}
		})
	}
	wg.Wait()
}
