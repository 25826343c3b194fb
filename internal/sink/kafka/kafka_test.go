package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/proxydial/proxytest"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topic = "bridgehead-test"

// testOpts keep the client's internal retries short so that tests run fast.
var testOpts = []kgo.Opt{
	kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
	kgo.MetadataMinAge(50 * time.Millisecond),
	kgo.DialTimeout(time.Second),
}

func mustCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func mustSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	if cfg.Topic == "" {
		cfg.Topic = topic
	}
	cfg.Options = append(append([]kgo.Opt(nil), testOpts...), cfg.Options...)
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// reader consumes topic from the start and returns a function that returns every record read so
// far, decoded from its envelope; records keeps the raw records too.
type reader struct {
	t       testing.TB
	cl      *kgo.Client
	mu      sync.Mutex
	records []*kgo.Record
}

func newReader(t testing.TB, addrs []string, opts ...kgo.Opt) *reader {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	t.Cleanup(cl.Close)
	return &reader{t: t, cl: cl}
}

// poll fetches what is available now (waiting at most 200 ms).
func (r *reader) poll() []*kgo.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	fs := r.cl.PollFetches(ctx)
	fs.EachRecord(func(rec *kgo.Record) { r.records = append(r.records, rec) })
	return append([]*kgo.Record(nil), r.records...)
}

func (r *reader) messages() []message.Message {
	var out []message.Message
	for _, rec := range r.poll() {
		m, err := sinktest.FromEnvelope(rec.Value)
		if err != nil {
			r.t.Errorf("record at offset %d: %v", rec.Offset, err)
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestContract(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) (sink.Sink, func() []message.Message) {
		c := mustCluster(t)
		s := mustSink(t, Config{Brokers: c.ListenAddrs()})
		return s, newReader(t, c.ListenAddrs()).messages
	})
}

func TestRecordShape(t *testing.T) {
	c := mustCluster(t)
	s := mustSink(t, Config{Brokers: c.ListenAddrs(), Body: sink.BodyRaw, Stamp: "fallback"})
	batch := sinktest.Messages(2, 0)
	batch[0].Value, batch[0].Properties = "raw value", map[string]string{"unit": "°C", "senderId": "spoofed", "priority": "spoofed"}
	batch[1].Value, batch[1].Stamp, batch[1].Priority = "no stamp", "", 7
	batch[1].ReceivedAt = time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	for i, r := range s.Send(context.Background(), batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("result %d: %v (%v)", i, r.Status, r.Err)
		}
	}
	rd := newReader(t, c.ListenAddrs())
	var recs []*kgo.Record
	for deadline := time.Now().Add(5 * time.Second); len(recs) < 2 && time.Now().Before(deadline); {
		recs = rd.poll()
	}
	if len(recs) != 2 {
		t.Fatalf("read %d records, want 2", len(recs))
	}
	byValue := map[string]*kgo.Record{}
	for _, r := range recs {
		byValue[string(r.Value)] = r
	}
	for i, m := range batch {
		r := byValue[m.Value]
		if r == nil {
			t.Fatalf("message %d (%q) not found", i, m.Value)
		}
		if string(r.Key) != m.SenderID {
			t.Errorf("key %q, want %q", r.Key, m.SenderID)
		}
		if !r.Timestamp.Equal(m.ReceivedAt.Truncate(time.Millisecond)) {
			t.Errorf("timestamp %v, want receivedAt %v", r.Timestamp, m.ReceivedAt)
		}
		hs := map[string]string{}
		for _, h := range r.Headers {
			if _, dup := hs[h.Key]; dup {
				t.Errorf("header %q twice", h.Key)
			}
			hs[h.Key] = string(h.Value)
		}
		wantStamp := m.Stamp
		if wantStamp == "" {
			wantStamp = "fallback"
		}
		if hs["correlationId"] != m.ID.String() || hs["senderId"] != m.SenderID || hs["stamp"] != wantStamp || hs["priority"] != strconv.Itoa(int(m.Priority)) {
			t.Errorf("headers %v, want correlationId %s senderId %s stamp %s priority %d", hs, m.ID, m.SenderID, wantStamp, m.Priority)
		}
		for k, v := range m.Properties {
			if !sink.ReservedProperty(k) && hs[k] != v {
				t.Errorf("header %s = %q, want %q", k, hs[k], v)
			}
		}
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestBrokerAbsentAtStart(t *testing.T) {
	port := freePort(t)
	s := mustSink(t, Config{Brokers: []string{fmt.Sprintf("127.0.0.1:%d", port)}})
	batch := sinktest.Messages(20, 32)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	for i, r := range s.Send(ctx, batch) {
		if r.Status != sink.Transient || r.Err == nil {
			t.Fatalf("broker absent, result %d: %v (%v), want transient", i, r.Status, r.Err)
		}
	}
	cancel()
	c := mustCluster(t, kfake.Ports(port))
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, r := range s.Send(ctx, batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("broker present, result %d: %v (%v), want delivered", i, r.Status, r.Err)
		}
	}
	t.Logf("first Send after the broker started took %v", time.Since(start))
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, batch)
}

// produceError answers a produce request with code for every partition.
func produceError(req kmsg.Request, code int16) kmsg.Response {
	preq := req.(*kmsg.ProduceRequest)
	resp := preq.ResponseKind().(*kmsg.ProduceResponse)
	for _, pt := range preq.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = pt.Topic, pt.TopicID
		for _, pp := range pt.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = pp.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func TestProduceFailuresThenSuccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(kmsg.Request) (kmsg.Response, error, bool)
	}{
		{"retriable error code", func(req kmsg.Request) (kmsg.Response, error, bool) {
			return produceError(req, kerr.NotEnoughReplicas.Code), nil, true
		}},
		{"connection closed", func(kmsg.Request) (kmsg.Response, error, bool) {
			return nil, errors.New("injected: connection dropped"), true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCluster(t)
			const n = 3
			var failed atomic.Int32
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				if failed.Add(1) > n {
					c.DropControl()
					return nil, nil, false
				}
				c.KeepControl()
				return tc.fail(req)
			})
			s := mustSink(t, Config{Brokers: c.ListenAddrs()})
			batch := sinktest.Messages(50, 32)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i, r := range s.Send(ctx, batch) {
				if r.Status != sink.Delivered {
					t.Fatalf("result %d: %v (%v), want delivered after %d injected failures", i, r.Status, r.Err, n)
				}
			}
			if got := failed.Load(); got <= n {
				t.Fatalf("the control saw %d produce requests, want more than %d", got, n)
			}
			sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, batch)
		})
	}
}

func TestProduceFailsUntilDeadline(t *testing.T) {
	c := mustCluster(t)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return produceError(req, kerr.NotEnoughReplicas.Code), nil, true
	})
	s := mustSink(t, Config{Brokers: c.ListenAddrs()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	for i, r := range s.Send(ctx, sinktest.Messages(5, 8)) {
		if r.Status != sink.Transient || !errors.Is(r.Err, context.DeadlineExceeded) && !errors.Is(r.Err, kerr.NotEnoughReplicas) {
			t.Fatalf("result %d: %v (%v), want transient", i, r.Status, r.Err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Send took %v, want it to honour its 300 ms deadline", el)
	}
}

func TestLatencyInjected(t *testing.T) {
	c := mustCluster(t)
	const delay = 400 * time.Millisecond
	var slowed atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if slowed.CompareAndSwap(false, true) {
			c.SleepControl(func() { <-time.After(delay) })
		}
		return nil, nil, false
	})
	s := mustSink(t, Config{Brokers: c.ListenAddrs()})
	batch := sinktest.Messages(10, 32)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, r := range s.Send(ctx, batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("result %d: %v (%v)", i, r.Status, r.Err)
		}
	}
	if el := time.Since(start); el < delay {
		t.Fatalf("Send returned after %v, before the injected %v latency", el, delay)
	}

	// A slow broker past the Send's deadline: Transient at the deadline, not later.
	slowed.Store(false)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start = time.Now()
	late := sinktest.Messages(3, 8)
	for i, r := range s.Send(ctx2, late) {
		if r.Status != sink.Transient || !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("result %d: %v (%v), want transient deadline exceeded", i, r.Status, r.Err)
		}
	}
	if el := time.Since(start); el > delay {
		t.Fatalf("Send returned after %v, want at its 100 ms deadline", el)
	}
	// The records were in flight: they still arrive (a duplicate if retried, never a loss).
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, append(batch, late...))
}

func TestOversized(t *testing.T) {
	t.Run("refused by the sink", func(t *testing.T) {
		c := mustCluster(t)
		s := mustSink(t, Config{Brokers: c.ListenAddrs(), MaxRecordBytes: 64 << 10})
		batch := sinktest.Messages(6, 32)
		batch[3].Value = strings.Repeat("y", 64<<10)
		res := s.Send(context.Background(), batch)
		var tooLarge *RecordTooLargeError
		if res[3].Status != sink.Permanent || !errors.As(res[3].Err, &tooLarge) || !errors.Is(res[3].Err, kerr.MessageTooLarge) {
			t.Fatalf("oversized: %v (%v), want permanent RecordTooLargeError", res[3].Status, res[3].Err)
		}
		for i, r := range res {
			if i != 3 && r.Status != sink.Delivered {
				t.Fatalf("batch-mate %d: %v (%v)", i, r.Status, r.Err)
			}
		}
	})
	t.Run("refused by the broker", func(t *testing.T) {
		// The broker's limit is below the producer's: the broker answers MESSAGE_TOO_LARGE for
		// the record batch, which may hold batch-mates of the same partition; those are retried
		// alone and delivered.
		c := mustCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "32768"}))
		s := mustSink(t, Config{Brokers: c.ListenAddrs()})
		batch := sinktest.Messages(10, 32)
		for i := range batch {
			batch[i].SenderID = "one-sender" // one partition: one record batch
		}
		batch[4].Value = strings.Repeat("z", 40<<10)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res := s.Send(ctx, batch)
		if res[4].Status != sink.Permanent || !errors.Is(res[4].Err, kerr.MessageTooLarge) {
			t.Fatalf("oversized: %v (%v), want permanent MESSAGE_TOO_LARGE", res[4].Status, res[4].Err)
		}
		for i, r := range res {
			if i != 4 && r.Status != sink.Delivered {
				t.Fatalf("batch-mate %d: %v (%v), want delivered", i, r.Status, r.Err)
			}
		}
		mates := append(append([]message.Message(nil), batch[:4]...), batch[5:]...)
		sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, mates)
	})
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := mustCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "bh", "secret"))
			s := mustSink(t, Config{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, User: "bh", Password: "secret"}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if r := s.Send(ctx, sinktest.Messages(1, 8))[0]; r.Status != sink.Delivered {
				t.Fatalf("got %v (%v), want delivered", r.Status, r.Err)
			}
			bad := mustSink(t, Config{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, User: "bh", Password: "wrong"}})
			ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel2()
			if r := bad.Send(ctx2, sinktest.Messages(1, 8))[0]; r.Status != sink.Transient {
				t.Fatalf("wrong password: got %v (%v), want transient (a configuration problem, not the message's)", r.Status, r.Err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	c := mustCluster(t, kfake.TLS(serverTLS))
	s := mustSink(t, Config{Brokers: c.ListenAddrs(), TLS: clientTLS})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch := sinktest.Messages(3, 8)
	for i, r := range s.Send(ctx, batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("result %d: %v (%v)", i, r.Status, r.Err)
		}
	}
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs(), kgo.DialTLSConfig(clientTLS.Clone())).messages, batch)
}

// selfSigned returns a server config with a fresh certificate for 127.0.0.1 and a client config
// that trusts it.
func selfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want sink.Status
	}{
		{"nil", nil, sink.Delivered},
		{"broker message too large", fmt.Errorf("wrap: %w", kerr.MessageTooLarge), sink.Permanent},
		{"client record too large", &RecordTooLargeError{Bytes: 2 << 20, Limit: 1 << 20}, sink.Permanent},
		{"record list too large", kerr.RecordListTooLarge, sink.Permanent},
		{"invalid record", kerr.InvalidRecord, sink.Permanent},
		{"sasl failed", kerr.SaslAuthenticationFailed, sink.Transient},
		{"topic not authorised", kerr.TopicAuthorizationFailed, sink.Transient},
		{"deadline", context.DeadlineExceeded, sink.Transient},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), sink.Transient},
		{"retriable", kerr.NotLeaderForPartition, sink.Transient},
		{"unknown topic", kerr.UnknownTopicOrPartition, sink.Transient},
		{"record timeout", kgo.ErrRecordTimeout, sink.Transient},
		{"retries exhausted", kgo.ErrRecordRetries, sink.Transient},
		{"client closed", kgo.ErrClientClosed, sink.Transient},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, sink.Transient},
		{"unknown", errors.New("something odd"), sink.Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Fatalf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Brokers: []string{"localhost:9092"}, Topic: "t"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, "Brokers"},
		{"no topic", func(c *Config) { c.Topic = "" }, "Topic"},
		{"bad body", func(c *Config) { c.Body = "xml" }, "Body"},
		{"bad mechanism", func(c *Config) { c.SASL.Mechanism = "GSSAPI" }, "SASL.Mechanism"},
		{"tiny record", func(c *Config) { c.MaxRecordBytes = 100 }, "MaxRecordBytes"},
		{"negative batch", func(c *Config) { c.MaxBatchMessages = -1 }, "MaxBatchMessages"},
		{"bad compression", func(c *Config) { c.Compression = "brotli" }, "Compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	s, err := New(Config{Brokers: ok.Brokers, Topic: "t", SASL: SASL{Mechanism: "scram-sha-512"}, Compression: "gzip"})
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	defer s.Close()
	if l := s.Limits(); l.MaxMessageBytes != DefaultMaxRecordBytes-recordOverhead || l.MaxBatchMessages != DefaultMaxBatchMessages || l.Body != sink.BodyEnvelope {
		t.Fatalf("Limits() = %+v", l)
	}
}

// TestAnotherSendsDeadlineSparesOurRecords: franz-go fails a partition's whole buffered batch by
// the context of its first record, so when one Send gives up, records of a concurrent Send that
// were buffered behind its own fail with its context error. A Send whose context is alive
// produces them again: they are delivered, not reported transient.
func TestAnotherSendsDeadlineSparesOurRecords(t *testing.T) {
	c := mustCluster(t, kfake.SeedTopics(1, topic))
	s := mustSink(t, Config{Brokers: c.ListenAddrs()})
	msgs := sinktest.Messages(3, 16)
	sinktest.AbandonedBatch(t, c, s, [3]message.Message(msgs))
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, []message.Message{msgs[0], msgs[2]})
}

// TestLargestEventTheAPIAcceptsIsDelivered: the API accepts a message when sink.EventBytes plus
// sink.FramingAllowance is within its --max-event-bytes; with that set to the sink's
// MaxRecordBytes, the largest message it accepts, in either body mode and with properties, is
// delivered, not refused as too large (which would dead-letter it after a 2xx).
func TestLargestEventTheAPIAcceptsIsDelivered(t *testing.T) {
	const limit = 64 << 10
	for _, mode := range []sink.BodyMode{sink.BodyEnvelope, sink.BodyRaw} {
		t.Run(string(mode), func(t *testing.T) {
			c := mustCluster(t)
			s := mustSink(t, Config{Brokers: c.ListenAddrs(), MaxRecordBytes: limit, Body: mode})
			m := sinktest.Messages(1, 1)[0]
			m.Properties = map[string]string{"unit": "kWh", "site": `plant "north" <7>`}
			m.Stamp = "onprem"
			// Grow the value to the largest the API accepts: one byte more would be refused.
			for lo, hi := 1, limit; lo < hi; {
				mid := (lo + hi + 1) / 2
				m.Value = strings.Repeat("é", mid/2) + strings.Repeat("\x01", mid-mid/2*2) // escaped in JSON
				n, err := sink.EventBytes(&m, mode)
				if err != nil {
					t.Fatal(err)
				}
				if n+sink.FramingAllowance <= limit {
					lo = mid
				} else {
					hi = mid - 1
				}
				if lo == hi {
					m.Value = strings.Repeat("é", lo/2) + strings.Repeat("\x01", lo-lo/2*2)
				}
			}
			n, _ := sink.EventBytes(&m, mode)
			if n+sink.FramingAllowance > limit || n+sink.FramingAllowance < limit-8 {
				t.Fatalf("the largest accepted event is %d + %d bytes, want just under %d", n, sink.FramingAllowance, limit)
			}
			if at := sink.EventBytesAtMost(&m, mode); at < n {
				t.Fatalf("EventBytesAtMost %d is below EventBytes %d", at, n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if res := s.Send(ctx, []message.Message{m}); res[0].Status != sink.Delivered {
				t.Fatalf("the largest message the API accepts: %v (%v), want delivered", res[0].Status, res[0].Err)
			}
		})
	}
}

// TestThroughAnHTTPSProxy: a site that lets traffic out only through its proxy: every broker
// connection (the seed and those the metadata names) goes through CONNECT, and records arrive.
func TestThroughAnHTTPSProxy(t *testing.T) {
	c := mustCluster(t)
	proxy := proxytest.New(t)
	s := mustSink(t, Config{Brokers: c.ListenAddrs(), Proxy: http.ProxyURL(proxy.URL)})
	batch := sinktest.Messages(5, 32)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, r := range s.Send(ctx, batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("message %d: %v (%v)", i, r.Status, r.Err)
		}
	}
	if proxy.Tunnels.Load() == 0 {
		t.Fatal("no connection went through the proxy")
	}
	sinktest.WaitFor(t, newReader(t, c.ListenAddrs()).messages, batch)
}
