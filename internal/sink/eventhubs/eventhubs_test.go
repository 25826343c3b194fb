package eventhubs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"
	"github.com/google/uuid"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
)

// mustNewSink builds a sink against srv (emulator-style connection string) and closes it at the
// end of the test. edit may adjust the config.
func mustNewSink(t *testing.T, srv *amqptest.Server, edit func(*Config)) (*Sink, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	cfg := Config{
		ConnectionString: srv.ConnectionString("hub"),
		Stamp:            "cloud",
		SendTimeout:      5 * time.Second,
		Logger:           newTestLogger(logs),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, logs
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var received = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func msg(sender, value string) message.Message {
	return message.Message{
		ID: uuid.New(), SenderID: sender, Value: value, ReceivedAt: received, Stamp: "onprem",
		Properties: map[string]string{"kind": "reading"},
	}
}

func statuses(res []sink.Result) []sink.Status {
	out := make([]sink.Status, len(res))
	for i, r := range res {
		out[i] = r.Status
	}
	return out
}

func wantStatuses(t *testing.T, res []sink.Result, want ...sink.Status) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d", len(res), len(want))
	}
	for i := range want {
		if res[i].Status != want[i] {
			t.Fatalf("got statuses %v, want %v (result %d: %v)", statuses(res), want, i, res[i].Err)
		}
	}
}

func all(n int, st sink.Status) []sink.Status {
	out := make([]sink.Status, n)
	for i := range out {
		out[i] = st
	}
	return out
}

func TestSendRoundTripGroupsBySender(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{MaxMessageSize: 512 << 10})
	s, _ := mustNewSink(t, srv, nil)
	if got := s.Limits().MaxMessageBytes; got != DefaultMaxMessageBytes {
		t.Errorf("got MaxMessageBytes %d before the link opened, want %d", got, DefaultMaxMessageBytes)
	}

	batch := []message.Message{msg("a", "a1"), msg("b", "b1"), msg("a", "a2"), msg("c", "c1"), msg("b", "b2"), msg("a", "a3")}
	batch[3].Stamp = "" // the sink's stamp fills in
	batch[3].Properties = map[string]string{"senderId": "spoofed", "unit": "°C", "priority": "spoofed"}
	batch[4].Priority = 1
	wantStatuses(t, s.Send(context.Background(), batch), all(len(batch), sink.Delivered)...)

	if got := s.Limits().MaxMessageBytes; got != 512<<10 {
		t.Errorf("got MaxMessageBytes %d, want the link's %d", got, 512<<10)
	}
	if got := srv.Deliveries(); got != 3 {
		t.Errorf("got %d deliveries, want 3 (one batch per sender)", got)
	}
	evs := srv.Events()
	if len(evs) != len(batch) {
		t.Fatalf("got %d events, want %d", len(evs), len(batch))
	}
	byID := map[string]amqptest.Event{}
	order := map[string][]string{}
	for _, e := range evs {
		id, _ := e.MessageID.(string)
		byID[id] = e
		order[e.PartitionKey] = append(order[e.PartitionKey], id)
	}
	for sender, want := range map[string][]int{"a": {0, 2, 5}, "b": {1, 4}, "c": {3}} {
		var ids []string
		for _, i := range want {
			ids = append(ids, batch[i].ID.String())
		}
		if fmt.Sprint(order[sender]) != fmt.Sprint(ids) {
			t.Errorf("partition key %q: got ids %v, want %v in batch order", sender, order[sender], ids)
		}
	}
	for i := range batch {
		m := batch[i]
		e, ok := byID[m.ID.String()]
		if !ok {
			t.Fatalf("message %d: no event with message-id %s", i, m.ID)
		}
		var env sink.Envelope
		if err := json.Unmarshal(e.Body, &env); err != nil {
			t.Fatalf("message %d: body is not an envelope: %v", i, err)
		}
		wantStamp := m.Stamp
		if wantStamp == "" {
			wantStamp = "cloud"
		}
		if env.CorrelationID != m.ID.String() || env.SenderID != m.SenderID || env.Value != m.Value ||
			!env.ReceivedAt.Equal(m.ReceivedAt) || env.Stamp != wantStamp || fmt.Sprint(env.Properties) != fmt.Sprint(m.Properties) {
			t.Errorf("message %d: got envelope %+v", i, env)
		}
		if e.ContentType != "application/json" || e.Entity != "hub" || e.PartitionKey != m.SenderID {
			t.Errorf("message %d: got content type %q entity %q partition key %q", i, e.ContentType, e.Entity, e.PartitionKey)
		}
		if e.Properties["correlationId"] != m.ID.String() || e.Properties["senderId"] != m.SenderID || e.Properties["stamp"] != wantStamp ||
			e.Properties["priority"] != int32(m.Priority) {
			t.Errorf("message %d: got application properties %v", i, e.Properties)
		}
		for k, v := range m.Properties {
			if !sink.ReservedProperty(k) && e.Properties[k] != v {
				t.Errorf("message %d: property %q: got %v, want %q", i, k, e.Properties[k], v)
			}
		}
	}
}

func TestSendRawBody(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, func(c *Config) { c.BodyMode = sink.BodyRaw })
	m := msg("01", `{"temperature": 21.5}`)
	wantStatuses(t, s.Send(context.Background(), []message.Message{m}), sink.Delivered)
	evs := srv.Events()
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	if string(evs[0].Body) != m.Value || evs[0].MessageID != m.ID.String() || evs[0].ContentType != "" {
		t.Errorf("got body %q message-id %v content type %q, want the raw value, %s, none", evs[0].Body, evs[0].MessageID, evs[0].ContentType, m.ID)
	}
}

func TestSendTooLargeForLinkIsPermanentAndBatchMatesDelivered(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{MaxMessageSize: 4096})
	s, _ := mustNewSink(t, srv, func(c *Config) { c.BodyMode = sink.BodyRaw })
	batch := []message.Message{msg("a", "small-1"), msg("a", strings.Repeat("x", 8000)), msg("a", "small-2"), msg("b", "small-3")}
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Delivered, sink.Permanent, sink.Delivered, sink.Delivered)
	if !errors.Is(res[1].Err, azeventhubs.ErrEventDataTooLarge) || !strings.Contains(res[1].Err.Error(), "4096") {
		t.Errorf("got %v, want ErrEventDataTooLarge naming the 4096-byte limit", res[1].Err)
	}
	if got := len(srv.Events()); got != 3 {
		t.Errorf("got %d events at the peer, want 3 (the large one never sent)", got)
	}
}

func TestSendCutsBatchesAtTheLinkLimit(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{MaxMessageSize: 4096})
	s, _ := mustNewSink(t, srv, func(c *Config) { c.BodyMode = sink.BodyRaw })
	var batch []message.Message
	for i := range 20 {
		batch = append(batch, msg("a", fmt.Sprintf("%03d-%s", i, strings.Repeat("v", 500))))
	}
	wantStatuses(t, s.Send(context.Background(), batch), all(len(batch), sink.Delivered)...)
	evs := srv.Events()
	if len(evs) != len(batch) {
		t.Fatalf("got %d events, want %d", len(evs), len(batch))
	}
	for i, e := range evs {
		if e.MessageID != batch[i].ID.String() {
			t.Fatalf("event %d: got message-id %v, want %s (batch order)", i, e.MessageID, batch[i].ID)
		}
	}
	if got := srv.Deliveries(); got < 3 {
		t.Errorf("got %d deliveries, want several 4 KiB batches", got)
	}
}

func TestSendServiceSizeRejectIsolatesTheCulprit(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	srv.EnforceMaxMessageSize(20_000) // the service refuses what the link advertised it would take
	s, _ := mustNewSink(t, srv, func(c *Config) { c.BodyMode = sink.BodyRaw })
	batch := []message.Message{msg("a", "first"), msg("a", strings.Repeat("y", 30_000)), msg("a", "last")}
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Delivered, sink.Permanent, sink.Delivered)
	var ae *amqp.Error
	if !errors.As(res[1].Err, &ae) || ae.Condition != amqp.ErrCondMessageSizeExceeded {
		t.Errorf("got %v, want the service's message-size-exceeded", res[1].Err)
	}
	evs := srv.Events()
	if len(evs) != 2 || evs[0].MessageID != batch[0].ID.String() || evs[1].MessageID != batch[2].ID.String() {
		t.Errorf("got %d events, want the first and last message in order", len(evs))
	}
}

func TestSendServerBusy(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, nil)
	batch := []message.Message{msg("a", "1"), msg("a", "2")}

	// One refusal is absorbed by the SDK's small retry budget.
	srv.RejectNext(1, "com.microsoft:server-busy", "busy (amqptest)")
	wantStatuses(t, s.Send(context.Background(), batch), sink.Delivered, sink.Delivered)

	// A persistent one comes back Throttled, quickly, with Event Hubs' 4 s hint: the forwarder
	// owns the wait, and does not take it for an outage.
	srv.RejectNext(1000, "com.microsoft:server-busy", "busy (amqptest)")
	before := srv.Deliveries()
	start := time.Now()
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Throttled, sink.Throttled)
	if res[0].RetryAfter != 4*time.Second {
		t.Errorf("RetryAfter %v, want Event Hubs' 4 s", res[0].RetryAfter)
	}
	t.Logf("server busy: %v after %v", res[0].Err, time.Since(start))
	var ae *amqp.Error
	if !errors.As(res[0].Err, &ae) || ae.Condition != "com.microsoft:server-busy" {
		t.Errorf("got %v, want server-busy", res[0].Err)
	}
	if tries := srv.Deliveries() - before; tries != 1+sdkMaxRetries {
		t.Errorf("got %d tries, want %d (1 + the SDK's retries)", tries, 1+sdkMaxRetries)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %v with the peer busy, want well under the send timeout", d)
	}

	srv.RejectNext(0, "", "")
	wantStatuses(t, s.Send(context.Background(), batch), sink.Delivered, sink.Delivered)
}

func TestSendUnauthorizedIsTransientAndLoud(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	srv.SetCBSStatus(401)
	s, logs := mustNewSink(t, srv, nil)
	batch := []message.Message{msg("a", "1"), msg("b", "2")}
	res := s.Send(context.Background(), batch)
	wantStatuses(t, res, sink.Transient, sink.Transient)
	var ehErr *azeventhubs.Error
	if !errors.As(res[0].Err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeUnauthorizedAccess {
		t.Errorf("got %v, want an unauthorized azeventhubs.Error", res[0].Err)
	}
	out := logs.String()
	t.Logf("logs: %s", out)
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, "configuration error") {
		t.Errorf("got logs %s, want an error-level configuration error", out)
	}
	if strings.Contains(out, "SharedAccessKey=") && !strings.Contains(out, "SharedAccessKey=<redacted>") {
		t.Errorf("logs show the key: %s", out)
	}

	srv.SetCBSStatus(200) // the operator fixed the policy
	wantStatuses(t, s.Send(context.Background(), batch), sink.Delivered, sink.Delivered)
}

func TestSendPeerDownThenBack(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	const timeout = 3 * time.Second
	s, _ := mustNewSink(t, srv, func(c *Config) { c.SendTimeout = timeout })
	wantStatuses(t, s.Send(context.Background(), []message.Message{msg("a", "before")}), sink.Delivered)

	addr := srv.Addr()
	srv.Close() // listener closed, connection dropped
	start := time.Now()
	res := s.Send(context.Background(), []message.Message{msg("a", "down-1"), msg("b", "down-2")})
	wantStatuses(t, res, sink.Transient, sink.Transient)
	t.Logf("peer down: %v after %v", res[0].Err, time.Since(start))
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Send took %v with the peer down, want at most the %v send timeout", d, timeout)
	}

	// A new peer on the same port: the same Sink (one long-lived producer) reconnects.
	srv2 := amqptest.NewServer(t, amqptest.Options{Addr: addr})
	m := msg("a", "after")
	var last []sink.Result
	for try := 0; try < 3; try++ { // bounded: the SDK may spend one Send noticing the old link is gone
		if last = s.Send(context.Background(), []message.Message{m}); last[0].Status == sink.Delivered {
			if try > 0 {
				t.Logf("delivered on try %d after the peer came back", try+1)
			}
			break
		}
	}
	wantStatuses(t, last, sink.Delivered)
	if evs := srv2.Events(); len(evs) == 0 || evs[len(evs)-1].MessageID != m.ID.String() {
		t.Errorf("the new peer did not receive the message")
	}
}

func TestSendSilentPeerHitsSendTimeout(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	srv.SetSilent(true) // accepts TCP, never speaks AMQP
	const timeout = 400 * time.Millisecond
	s, _ := mustNewSink(t, srv, func(c *Config) { c.SendTimeout = timeout })
	start := time.Now()
	res := s.Send(context.Background(), []message.Message{msg("a", "1")})
	wantStatuses(t, res, sink.Transient)
	if !errors.Is(res[0].Err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the send deadline", res[0].Err)
	}
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Errorf("Send took %v, want about the %v send timeout", d, timeout)
	}
}

func TestSendSlowDispositionTimesOutThenDuplicateKeepsID(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, func(c *Config) { c.SendTimeout = 300 * time.Millisecond })
	m := msg("a", "slow")
	wantStatuses(t, s.Send(context.Background(), []message.Message{msg("a", "warm-up")}), sink.Delivered)

	srv.SetDispositionDelay(time.Minute) // the peer takes it but never confirms in time
	wantStatuses(t, s.Send(context.Background(), []message.Message{m}), sink.Transient)
	srv.SetDispositionDelay(0)
	wantStatuses(t, s.Send(context.Background(), []message.Message{m}), sink.Delivered)

	var n int
	for _, e := range srv.Events() {
		if e.MessageID == m.ID.String() {
			n++
		}
	}
	if n != 2 {
		t.Errorf("got %d copies of the retried message, want 2 carrying the same message-id (at least once)", n)
	}
}

func TestSendCallerContextCancelled(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantStatuses(t, s.Send(ctx, []message.Message{msg("a", "1"), msg("b", "2")}), sink.Transient, sink.Transient)
}

func TestSendAfterCloseIsTransient(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, nil)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	res := s.Send(context.Background(), []message.Message{msg("a", "1")})
	wantStatuses(t, res, sink.Transient)
	if len(s.Send(context.Background(), nil)) != 0 {
		t.Errorf("an empty batch must give no results")
	}
}

// fakeCredential stands in for Entra ID (workload identity in AKS). The SDK calls it from its
// own goroutines; mu guards scopes.
type fakeCredential struct {
	mu     sync.Mutex
	scopes []string
	err    error
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scopes = o.Scopes
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: "header.payload.signature", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// entraNS is the namespace mustNewEntraSink's peer poses as.
const entraNS = "bridgehead-test.servicebus.windows.net"

// mustNewEntraSink builds a sink that authenticates with cred (Entra ID, no connection string)
// to event hub "hub" of entraNS, served over TLS by a new peer it dials as CustomEndpoint.
func mustNewEntraSink(t *testing.T, cred *fakeCredential) (*Sink, *amqptest.Server, *logbuf.Buffer) {
	t.Helper()
	serverTLS, roots := amqptest.SelfSignedTLS(t, entraNS)
	srv := amqptest.NewServer(t, amqptest.Options{TLSConfig: serverTLS})
	s, logs := mustNewSink(t, srv, func(c *Config) {
		c.ConnectionString = ""
		c.Namespace = entraNS
		c.EventHub = "hub"
		c.Credential = cred
		c.CustomEndpoint = srv.Addr()
		c.TLSConfig = roots2TLS(roots)
	})
	return s, srv, logs
}

func TestSendEntraIDOverTLSWithCustomEndpoint(t *testing.T) {
	cred := &fakeCredential{}
	s, srv, _ := mustNewEntraSink(t, cred)
	wantStatuses(t, s.Send(context.Background(), []message.Message{msg("a", "1")}), sink.Delivered)
	cbs := srv.CBSRequests()
	if len(cbs) == 0 || cbs[0].TokenType != "jwt" || cbs[0].Audience != "amqps://"+entraNS+"/hub" {
		t.Errorf("got CBS requests %+v, want a jwt for amqps://%s/hub", cbs, entraNS)
	}
	cred.mu.Lock()
	defer cred.mu.Unlock()
	if fmt.Sprint(cred.scopes) != "[https://eventhubs.azure.net//.default]" {
		t.Errorf("got token scopes %v", cred.scopes)
	}
}

func TestSendEntraIDCredentialFailureIsTransientAndLoud(t *testing.T) {
	s, _, logs := mustNewEntraSink(t, &fakeCredential{err: errors.New("WorkloadIdentityCredential: no token file (fake)")})
	res := s.Send(context.Background(), []message.Message{msg("a", "1")})
	wantStatuses(t, res, sink.Transient)
	t.Logf("credential failure: %v", res[0].Err)
	if !strings.Contains(logs.String(), "configuration error") || !strings.Contains(logs.String(), "no token file") {
		t.Errorf("got logs %s, want a loud configuration error naming the credential's failure", logs)
	}
}

func TestSendConcurrent(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	s, _ := mustNewSink(t, srv, nil)
	const workers, perBatch = 6, 40
	batches := make([][]message.Message, workers)
	for w := range batches {
		for i := range perBatch {
			batches[w] = append(batches[w], msg(fmt.Sprintf("sender-%d", (w+i)%9), fmt.Sprintf("w%d-%d", w, i)))
		}
	}
	results := make([][]sink.Result, workers)
	var wg sync.WaitGroup
	for w := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[w] = s.Send(context.Background(), batches[w])
		}()
	}
	wg.Wait()
	for w := range results {
		wantStatuses(t, results[w], all(perBatch, sink.Delivered)...)
	}
	if got := len(srv.Events()); got != workers*perBatch {
		t.Errorf("got %d events, want %d", got, workers*perBatch)
	}
}
