package forward_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

const topic = "bridgehead"

func mustCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, topic)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func mustKafkaSink(t testing.TB, c *kfake.Cluster, cfg kafka.Config) *kafka.Sink {
	t.Helper()
	return mustKafkaSinkAt(t, c.ListenAddrs(), cfg)
}

func mustKafkaSinkAt(t testing.TB, brokers []string, cfg kafka.Config) *kafka.Sink {
	t.Helper()
	cfg.Brokers, cfg.Topic = brokers, topic
	cfg.Options = append(cfg.Options,
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
		kgo.MetadataMinAge(50*time.Millisecond))
	s, err := kafka.New(cfg)
	if err != nil {
		t.Fatalf("kafka.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// consumed returns a function that reads the topic from the start and returns every message
// read so far.
func consumed(t testing.TB, c *kfake.Cluster) func() []message.Message {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	var mu sync.Mutex
	var got []message.Message
	return func() []message.Message {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			m, err := sinktest.FromEnvelope(r.Value)
			if err != nil {
				t.Errorf("offset %d: %v", r.Offset, err)
				return
			}
			got = append(got, m)
		})
		return append([]message.Message(nil), got...)
	}
}

func TestKafkaDrain(t *testing.T) {
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 10, 100, 256)
	c := mustCluster(t)
	start(t, forward.Config{Spool: sp, Sink: mustKafkaSink(t, c, kafka.Config{})})
	got := sinktest.WaitFor(t, consumed(t, c), all)
	for _, m := range all {
		sinktest.Equal(t, got[m.ID], m)
	}
	waitDrained(t, sp)
}

func TestKafkaBrokerDownThenUp(t *testing.T) {
	const probe = 300 * time.Millisecond
	sp := mustOpenSpool(t, "", spool.Options{})
	all := fill(t, sp, 8, 50, 64)
	c := mustCluster(t)
	var down atomic.Bool
	var refused atomic.Int64
	down.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			refused.Add(1)
			return nil, fmt.Errorf("injected: broker unreachable"), true // closes the connection
		}
		return nil, nil, false
	})
	ks := mustKafkaSink(t, c, kafka.Config{})
	fs := &fakeSink{send: ks.Send, limits: ks.Limits()} // records when deliveries happen
	reg := prometheus.NewRegistry()
	start(t, forward.Config{Spool: sp, Sink: fs, Registerer: reg, SendTimeout: 400 * time.Millisecond,
		RetryInitialDelay: 10 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond,
		Breaker: forward.BreakerConfig{FailureThreshold: 3, ProbeInterval: probe}})
	eventually(t, 10*time.Second, "breaker open", func() bool { return gather(t, reg)["bridgehead_forward_breaker_state"] == 2 })
	calls := fs.calls.Load()
	eventually(t, 10*time.Second, "two probes while down", func() bool { return fs.calls.Load() >= calls+2 })
	if st := stats(t, sp); st.Dead.Segments != 0 || st.Ready.Messages+st.Claimed.Messages != len(all) {
		t.Fatalf("while down: %+v; want every message in ready/ or claimed/", st)
	}

	fs.mark()
	down.Store(false)
	eventually(t, 10*time.Second, "first delivery after the broker returned", func() bool { _, ok := fs.firstDelivery(); return ok })
	first, _ := fs.firstDelivery()
	t.Logf("first delivery %v after the broker returned (probe interval %v; %d produce requests refused while down)", first, probe, refused.Load())
	if first > probe+200*time.Millisecond {
		t.Errorf("first delivery %v after the broker returned, want within one probe interval (%v)", first, probe)
	}
	sinktest.WaitFor(t, consumed(t, c), all)
	waitDrained(t, sp)
}

func TestKafkaOversizedDeadLettered(t *testing.T) {
	all := sinktest.Messages(10, 64)
	big := message.Message{ID: uuid.New(), SenderID: "sender-1", Value: strings.Repeat("x", 100<<10), ReceivedAt: time.Now().UTC(), Stamp: "test"}
	seg := append(append(append([]message.Message{}, all[:5]...), big), all[5:]...)
	sp2 := mustOpenSpool(t, "", spool.Options{})
	if err := sp2.Append(context.Background(), seg...); err != nil { // one segment, the big message in the middle
		t.Fatal(err)
	}
	if err := sp2.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t)
	start(t, forward.Config{Spool: sp2, Sink: mustKafkaSink(t, c, kafka.Config{MaxRecordBytes: 64 << 10})})
	got := sinktest.WaitFor(t, consumed(t, c), all)
	entries := waitDead(t, sp2, 5*time.Second, 1)
	if _, ok := got[big.ID]; ok {
		t.Fatal("the oversized message reached the topic")
	}
	if reason := deadReason(t, sp2, entries[0]); !strings.Contains(reason, "exceeds") || !strings.Contains(reason, big.ID.String()) {
		t.Errorf("reason %q, want the sink's size error naming the message", reason)
	}
	if ms := deadMessages(t, sp2, entries[0]); len(ms) != 1 || ms[0].ID != big.ID {
		t.Errorf("dead/ holds %d messages, want only the big one", len(ms))
	}
}

func TestKafkaPoisonDeadLetteredAfterMaxAttempts(t *testing.T) {
	const maxAttempts = 3
	sp := mustOpenSpool(t, "", spool.Options{MaxAttempts: maxAttempts})
	before := fill(t, sp, 1, 10, 32)
	poisoned := fill(t, sp, 1, 10, 32)
	after := fill(t, sp, 1, 10, 32)
	poison := poisoned[4]
	marker := []byte(poison.ID.String())
	c := mustCluster(t)
	// The broker fails every produce request that carries the poison (and so, collaterally,
	// whatever shares a request with it) with a non-retriable error.
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		hit := false
		for _, pt := range preq.Topics {
			for _, pp := range pt.Partitions {
				hit = hit || bytes.Contains(pp.Records, marker)
			}
		}
		if !hit {
			return nil, nil, false
		}
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, pt := range preq.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = pt.Topic, pt.TopicID
			for _, pp := range pt.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = pp.Partition, kerr.CorruptMessage.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	start(t, forward.Config{Spool: sp, Sink: mustKafkaSink(t, c, kafka.Config{}),
		RetryInitialDelay: time.Millisecond, RetryMaxDelay: 10 * time.Millisecond,
		Breaker: forward.BreakerConfig{FailureThreshold: 1000}})
	good := slices.DeleteFunc(slices.Concat(before, poisoned, after), func(m message.Message) bool { return m.ID == poison.ID })
	got := sinktest.WaitFor(t, consumed(t, c), good)
	entries := waitDead(t, sp, 10*time.Second, 1)
	if _, ok := got[poison.ID]; ok {
		t.Fatal("the poison reached the topic")
	}
	wantAttemptLimit(t, sp, entries[0], maxAttempts)
}

// countingSink counts delivered messages cheaply (for the benchmark).
type countingSink struct {
	sink.Sink
	delivered atomic.Int64
}

func (s *countingSink) Send(ctx context.Context, b []message.Message) []sink.Result {
	res := s.Sink.Send(ctx, b)
	n := 0
	for _, r := range res {
		if r.Status == sink.Delivered {
			n++
		}
	}
	s.delivered.Add(int64(n))
	return res
}

// BenchmarkDrain pre-fills a spool with b.N 256-byte messages (segments of 1,000, as group
// commit makes under load) and drains it into an in-process kfake broker through the Kafka
// sink. The fill is not timed.
//
//	go test -run '^$' -bench BenchmarkDrain -benchtime 200000x ./internal/forward/
//
// broker=process runs kfake in a child process (the test binary re-executed), so the forwarder
// and the broker do not share a Go runtime; broker=inproc keeps it in the benchmark's process.
func BenchmarkDrain(b *testing.B) {
	for _, where := range []string{"process", "inproc"} {
		for _, conc := range []int{4, 8} {
			b.Run(fmt.Sprintf("broker=%s/c=%d", where, conc), func(b *testing.B) {
				benchmarkDrain(b, where == "process", conc)
			})
		}
	}
}

func benchmarkDrain(b *testing.B, childBroker bool, conc int) {
	b.StopTimer()
	sp := mustOpenSpool(b, "", spool.Options{})
	const perSeg = 1000
	for left := b.N; left > 0; left -= perSeg {
		fill(b, sp, 1, min(perSeg, left), 256)
	}
	var ks *kafka.Sink
	if childBroker {
		ks = mustKafkaSinkAt(b, startBrokerProcess(b), kafka.Config{})
	} else {
		ks = mustKafkaSink(b, mustCluster(b), kafka.Config{})
	}
	cs := &countingSink{Sink: ks}
	f, err := forward.New(forward.Config{Spool: sp, Sink: cs, Concurrency: conc})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.StartTimer()
	startAt := time.Now()
	go func() { done <- f.Run(ctx) }()
	tick := time.NewTicker(time.Millisecond)
	for cs.delivered.Load() < int64(b.N) {
		<-tick.C
	}
	elapsed := time.Since(startAt)
	b.StopTimer()
	tick.Stop()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
