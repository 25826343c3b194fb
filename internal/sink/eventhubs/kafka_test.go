package eventhubs

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
)

// TestKafkaTransport drives the kafka transport against kfake set up like an Event Hubs Kafka
// endpoint: TLS with a certificate for the namespace, SASL PLAIN with user $ConnectionString
// and the connection string as the password.
func TestKafkaTransport(t *testing.T) {
	const ns = "bh-prod.servicebus.windows.net"
	serverTLS, roots := amqptest.SelfSignedTLS(t, ns)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverTLS),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "$ConnectionString", goodCS),
		kfake.SeedTopics(2, "messages"),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)

	s, err := New(context.Background(), Config{
		ConnectionString: goodCS,
		Transport:        TransportKafka,
		Stamp:            "cloud",
		CustomEndpoint:   cluster.ListenAddrs()[0],
		TLSConfig:        roots2TLS(roots),
		SendTimeout:      10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	batch := []message.Message{msg("a", "a1"), msg("b", "b1"), msg("a", "a2"), msg("a", strings.Repeat("z", 2<<20))}
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Delivered, sink.Delivered, sink.Delivered, sink.Permanent)
	if !errors.Is(res[3].Err, kerr.MessageTooLarge) {
		t.Errorf("got %v, want MESSAGE_TOO_LARGE", res[3].Err)
	}

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.DialTLSConfig(func() *tls.Config { c := roots2TLS(roots); c.ServerName = ns; return c }()),
		kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: goodCS}.AsMechanism()),
		kgo.ConsumeTopics("messages"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < 3 && ctx.Err() == nil {
		fs := consumer.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3", len(recs))
	}
	var aOrder []string
	for _, r := range recs {
		var env sink.Envelope
		if err := json.Unmarshal(r.Value, &env); err != nil {
			t.Fatalf("record value is not an envelope: %v", err)
		}
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if string(r.Key) != env.SenderID || h["correlationId"] != env.CorrelationID || h["senderId"] != env.SenderID || h["stamp"] != "onprem" || h["kind"] != "reading" {
			t.Errorf("got key %q headers %v for envelope %+v", r.Key, h, env)
		}
		if env.SenderID == "a" {
			aOrder = append(aOrder, env.Value)
		}
	}
	if strings.Join(aOrder, ",") != "a1,a2" {
		t.Errorf("got sender a's values %v, want a1,a2 in order", aOrder)
	}
}

// TestKafkaTransportWrongPasswordIsTransient: refused credentials never dead-letter. kfake
// drops the connection on a bad PLAIN password instead of answering SASL_AUTHENTICATION_FAILED
// as Kafka does, so the error here is a timeout; the loud log for SASL_AUTHENTICATION_FAILED is
// covered by TestClassify only.
func TestKafkaTransportWrongPasswordIsTransient(t *testing.T) {
	const ns = "bh-prod.servicebus.windows.net"
	serverTLS, roots := amqptest.SelfSignedTLS(t, ns)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverTLS),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "$ConnectionString", "some other connection string"),
		kfake.SeedTopics(1, "messages"),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	logs := &logbuf.Buffer{}
	const timeout = time.Second
	s, err := New(context.Background(), Config{
		ConnectionString: goodCS,
		Transport:        TransportKafka,
		CustomEndpoint:   cluster.ListenAddrs()[0],
		TLSConfig:        roots2TLS(roots),
		SendTimeout:      timeout,
		Logger:           newTestLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	start := time.Now()
	res := s.Send(context.Background(), []message.Message{msg("a", "1")})
	wantStatuses(t, res, sink.Transient)
	t.Logf("wrong password: %v after %v", res[0].Err, time.Since(start))
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Errorf("Send took %v, want about the %v send timeout", d, timeout)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs show the key")
	}
}
