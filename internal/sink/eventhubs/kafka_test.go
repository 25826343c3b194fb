package eventhubs

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// kafkaNS is the namespace the kfake clusters of these tests pose as.
const kafkaNS = "bh-prod.servicebus.windows.net"

// kafkaEndpoint is kfake set up like an Event Hubs Kafka endpoint: TLS with a certificate for
// kafkaNS, SASL PLAIN with user $ConnectionString, and the topic "messages".
type kafkaEndpoint struct {
	cluster *kfake.Cluster
	roots   *x509.CertPool
}

// newKafkaEndpoint starts an endpoint that accepts password (a connection string) and has
// partitions partitions; it stops at the end of the test.
func newKafkaEndpoint(t *testing.T, password string, partitions int32) *kafkaEndpoint {
	t.Helper()
	serverTLS, roots := amqptest.SelfSignedTLS(t, kafkaNS)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverTLS),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "$ConnectionString", password),
		kfake.SeedTopics(partitions, "messages"),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return &kafkaEndpoint{cluster: cluster, roots: roots}
}

// mustNewSink builds a kafka-transport sink for goodCS that dials e, and closes it at the end of
// the test. edit may adjust the config.
func (e *kafkaEndpoint) mustNewSink(t *testing.T, edit func(*Config)) *Sink {
	t.Helper()
	cfg := Config{
		ConnectionString: goodCS,
		Transport:        TransportKafka,
		CustomEndpoint:   e.cluster.ListenAddrs()[0],
		TLSConfig:        roots2TLS(e.roots),
		SendTimeout:      10 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// consumer returns a client, closed at the end of the test, that reads "messages" from the start
// as goodCS's user.
func (e *kafkaEndpoint) consumer(t *testing.T) *kgo.Client {
	t.Helper()
	tc := roots2TLS(e.roots)
	tc.ServerName = kafkaNS
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.DialTLSConfig(tc),
		kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: goodCS}.AsMechanism()),
		kgo.ConsumeTopics("messages"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestKafkaTransport drives the kafka transport against kfake set up like an Event Hubs Kafka
// endpoint: TLS with a certificate for the namespace, SASL PLAIN with user $ConnectionString
// and the connection string as the password.
func TestKafkaTransport(t *testing.T) {
	ep := newKafkaEndpoint(t, goodCS, 2)
	s := ep.mustNewSink(t, func(c *Config) { c.Stamp = "cloud" })

	batch := []message.Message{msg("a", "a1"), msg("b", "b1"), msg("a", "a2"), msg("a", strings.Repeat("z", 2<<20))}
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Delivered, sink.Delivered, sink.Delivered, sink.Permanent)
	if !errors.Is(res[3].Err, kerr.MessageTooLarge) {
		t.Errorf("got %v, want MESSAGE_TOO_LARGE", res[3].Err)
	}

	consumer := ep.consumer(t)
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
		if string(r.Key) != env.SenderID || h["correlationId"] != env.CorrelationID || h["senderId"] != env.SenderID || h["stamp"] != "onprem" || h["kind"] != "reading" || h["priority"] != "0" {
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
	ep := newKafkaEndpoint(t, "some other connection string", 1)
	logs := &logbuf.Buffer{}
	const timeout = time.Second
	s := ep.mustNewSink(t, func(c *Config) { c.SendTimeout, c.Logger = timeout, newTestLogger(logs) })
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

// TestKafkaTransportAnotherSendsDeadlineSparesOurRecords: as for the kafka sink, a record that a
// concurrent Send's abandoned batch took down is produced again and delivered.
func TestKafkaTransportAnotherSendsDeadlineSparesOurRecords(t *testing.T) {
	ep := newKafkaEndpoint(t, goodCS, 1)
	s := ep.mustNewSink(t, nil)
	sinktest.AbandonedBatch(t, ep.cluster, s, [3]message.Message{msg("a", "first"), msg("a", "abandoned"), msg("a", "ours")})
	consumer := ep.consumer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string]bool{}
	for !(got["first"] && got["ours"]) && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var env sink.Envelope
			if err := json.Unmarshal(r.Value, &env); err == nil {
				got[env.Value] = true
			}
		})
	}
	if !got["first"] || !got["ours"] {
		t.Fatalf("read back %v, want first and ours", got)
	}
}

// TestKafkaTransportThrottledIsNotAnOutage: the namespace throttles the Kafka transport (a quota
// answered with throttle_time_ms, which franz-go waits out before its next produce). The
// throttled answer delivers; a Send that runs out of time behind the throttle is Throttled with
// the throttle's time left as RetryAfter, not Transient; the throttles are counted; sent again
// after its hint, as the forwarder does, the held message is delivered.
func TestKafkaTransportThrottledIsNotAnOutage(t *testing.T) {
	ep := newKafkaEndpoint(t, goodCS, 1)
	tc := roots2TLS(ep.roots)
	tc.ServerName = kafkaNS
	const hint = 1500 * time.Millisecond
	sinktest.ThrottleProduce(t, ep.cluster, func() time.Duration { return hint },
		kgo.DialTLSConfig(tc), kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: goodCS}.AsMechanism()))
	reg := prometheus.NewRegistry()
	s := ep.mustNewSink(t, func(c *Config) { c.Registerer = reg })
	wantStatuses(t, s.Send(context.Background(), []message.Message{msg("a", "first")}), sink.Delivered)

	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	res := s.Send(ctx, []message.Message{msg("a", "held")})
	wantStatuses(t, res, sink.Throttled)
	if r := res[0]; r.RetryAfter <= 0 || r.RetryAfter > hint-deadline+100*time.Millisecond {
		t.Fatalf("RetryAfter %v, want what the %v throttle has left after %v (%v)", r.RetryAfter, hint, deadline, r.Err)
	}
	t.Logf("throttled: %v", res[0].Err)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "bridgehead_kafka_throttled_responses_total" {
			counted = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if counted < 1 {
		t.Errorf("bridgehead_kafka_throttled_responses_total %v, want at least 1", counted)
	}
	// Sent again (the forwarder would wait RetryAfter first; the client waits out what is left).
	again, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	wantStatuses(t, s.Send(again, []message.Message{msg("a", "held")}), sink.Delivered)
	consumer := ep.consumer(t)
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	got := map[string]bool{}
	for !(got["first"] && got["held"]) && rctx.Err() == nil {
		consumer.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			var env sink.Envelope
			if err := json.Unmarshal(r.Value, &env); err == nil {
				got[env.Value] = true
			}
		})
	}
	if !got["first"] || !got["held"] {
		t.Fatalf("read back %v, want first and held", got)
	}
}
