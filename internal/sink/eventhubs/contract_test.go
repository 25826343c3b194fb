package eventhubs

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

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
	const ns = "bh-prod.servicebus.windows.net"
	serverTLS, roots := amqptest.SelfSignedTLS(t, ns)
	sinktest.Run(t, func(t *testing.T) (sink.Sink, func() []message.Message) {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
			kfake.Superuser("PLAIN", "$ConnectionString", goodCS), kfake.SeedTopics(3, "messages"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cluster.Close)
		s, err := New(context.Background(), Config{
			ConnectionString: goodCS, Transport: TransportKafka, CustomEndpoint: cluster.ListenAddrs()[0],
			TLSConfig: roots2TLS(roots), SendTimeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		consumerTLS := roots2TLS(roots)
		consumerTLS.ServerName = ns
		consumer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DialTLSConfig(consumerTLS),
			kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: goodCS}.AsMechanism()),
			kgo.ConsumeTopics("messages"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(consumer.Close)
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
