package eventhubs

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// TestContractAMQP runs the sink contract suite over AMQP against the amqptest peer.
func TestContractAMQP(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) (sink.Sink, func() []message.Message) {
		srv := amqptest.NewServer(t, amqptest.Options{})
		s, _ := mustNewSink(t, srv, nil)
		return s, func() []message.Message {
			var out []message.Message
			for _, e := range srv.Events() {
				m, err := sinktest.FromEnvelope(e.Body)
				if err != nil {
					t.Errorf("event %v: %v", e.MessageID, err)
					continue
				}
				out = append(out, m)
			}
			return out
		}
	})
}

// TestContractKafka runs the sink contract suite over the Kafka transport against kfake set up
// like an Event Hubs Kafka endpoint (TLS, SASL PLAIN with $ConnectionString).
func TestContractKafka(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) (sink.Sink, func() []message.Message) {
		ep := newKafkaEndpoint(t, goodCS, 3)
		s := ep.mustNewSink(t, nil)
		consumer := ep.consumer(t)
		var got []message.Message // read is called from the test goroutine only
		return s, func() []message.Message {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				m, err := sinktest.FromEnvelope(r.Value)
				if err != nil {
					t.Errorf("record at offset %d: %v", r.Offset, err)
					return
				}
				got = append(got, m)
			})
			return append([]message.Message(nil), got...)
		}
	})
}
