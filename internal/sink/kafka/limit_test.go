package kafka

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// mustSetTopicConfig sets one config of topic on c, as an operator would (IncrementalAlterConfigs).
func mustSetTopicConfig(t testing.TB, c *kfake.Cluster, topic, key, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: key, Value: kadm.StringPtr(value)}}, topic)
	if err == nil {
		_, err = rs.On(topic, nil)
	}
	if err == nil && rs[0].Err != nil {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatalf("set %s=%s on topic %s: %v", key, value, topic, err)
	}
}

func TestEventLimit(t *testing.T) {
	c := mustCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "32768"}))
	mustSetTopicConfig(t, c, topic, "max.message.bytes", "10000")
	if err := kfakeTopic(c, "defaulted"); err != nil {
		t.Fatal(err)
	}
	refused := sinktest.RefusedAddr(t)
	for _, tc := range []struct {
		name      string
		cfg       Config
		want      int
		source    string
		wantErr   error
		errSubstr string
	}{
		{name: "the topic's own max.message.bytes", cfg: Config{Brokers: c.ListenAddrs()},
			want: 10000, source: "max.message.bytes of Kafka topic " + topic},
		{name: "the broker's default for a topic without its own", cfg: Config{Brokers: c.ListenAddrs(), Topic: "defaulted"},
			want: 32768, source: "max.message.bytes of Kafka topic defaulted"},
		{name: "the producer's limit when smaller", cfg: Config{Brokers: c.ListenAddrs(), Topic: "defaulted", MaxRecordBytes: 20000},
			want: 20000, source: "the Kafka producer's max record batch of 20000 bytes (topic defaulted allows 32768)"},
		{name: "no such topic", cfg: Config{Brokers: c.ListenAddrs(), Topic: "no-such-topic"},
			wantErr: kerr.UnknownTopicOrPartition, errSubstr: "topic no-such-topic"},
		{name: "nothing listening", cfg: Config{Brokers: []string{refused}},
			wantErr: syscall.ECONNREFUSED, errSubstr: "dial tcp " + refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSink(t, tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, source, err := s.EventLimit(ctx)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("EventLimit: %d, %q, %v; want an error %v naming %q", n, source, err, tc.wantErr, tc.errSubstr)
				}
				t.Logf("EventLimit: %v", err)
				return
			}
			if err != nil || n != tc.want || source != tc.source {
				t.Fatalf("EventLimit: %d, %q, %v; want %d, %q", n, source, err, tc.want, tc.source)
			}
		})
	}
}

// kfakeTopic creates topic on c with the broker's defaults.
func kfakeTopic(c *kfake.Cluster, name string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, name)
	return err
}

// TestThrottledProduce: a broker that enforces a produce quota answers at once with
// throttle_time_ms, and franz-go holds its next produce that long. The throttled answer delivers
// its records; a Send that runs out of time behind the throttle reports its records Throttled
// with the time the throttle has left, not Transient (which would count against the breaker);
// the throttles are counted; once the throttle is over the records arrive, none lost.
func TestThrottledProduce(t *testing.T) {
	c := mustCluster(t)
	const hint = 1500 * time.Millisecond
	throttled := sinktest.ThrottleProduce(t, c, func() time.Duration { return hint })
	reg := prometheus.NewRegistry()
	s := mustSink(t, Config{Brokers: c.ListenAddrs(), Registerer: reg})

	first := sinktest.Messages(3, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, r := range s.Send(ctx, first) {
		if r.Status != sink.Delivered {
			t.Fatalf("first Send, result %d: %v (%v), want delivered (a throttled answer still appends)", i, r.Status, r.Err)
		}
	}
	// The next produce waits out the throttle: a Send with less time than that runs out.
	const deadline = 200 * time.Millisecond
	second := sinktest.Messages(3, 16)
	sctx, scancel := context.WithTimeout(context.Background(), deadline)
	defer scancel()
	start := time.Now()
	for i, r := range s.Send(sctx, second) {
		if r.Status != sink.Throttled || !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("Send behind the throttle, result %d: %v (%v), want throttled", i, r.Status, r.Err)
		}
		if r.RetryAfter <= 0 || r.RetryAfter > hint-deadline+100*time.Millisecond {
			t.Fatalf("result %d: RetryAfter %v, want what the %v throttle has left after %v", i, r.RetryAfter, hint, deadline)
		}
		if i == 0 {
			t.Logf("throttled: RetryAfter %v, %v", r.RetryAfter, r.Err)
		}
	}
	if el := time.Since(start); el > deadline+time.Second {
		t.Fatalf("Send took %v, want it to honour its %v deadline", el, deadline)
	}
	mfs := gatherCounters(t, reg)
	if n := mfs["bridgehead_kafka_throttled_responses_total"]; n < 1 || int(n) > throttled() {
		t.Errorf("throttled_responses_total %v, want between 1 and the %d throttled answers", n, throttled())
	}
	if s := mfs["bridgehead_kafka_throttle_seconds_total"]; s < hint.Seconds() {
		t.Errorf("throttle_seconds_total %v, want at least %v", s, hint.Seconds())
	}
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, append(first, second...))
}

// gatherCounters sums every counter of reg by name.
func gatherCounters(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil {
				out[mf.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
