package client

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder collects a batcher's callbacks; its fields are guarded by mu.
type recorder struct {
	mu     sync.Mutex
	acks   []Ack
	failed []Message
	errs   []error
}

func (r *recorder) config(cfg BatcherConfig) BatcherConfig {
	cfg.OnAcked = func(acks []Ack) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.acks = append(r.acks, acks...)
	}
	cfg.OnError = func(msgs []Message, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.failed = append(r.failed, msgs...)
		r.errs = append(r.errs, err)
	}
	return cfg
}

func (r *recorder) snapshot() (acks []Ack, failed []Message, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.acks), slices.Clone(r.failed), slices.Clone(r.errs)
}

// mustBatcher returns a batcher of c whose callbacks go to r, closed when the test ends.
func mustBatcher(t *testing.T, c *Client, r *recorder, cfg BatcherConfig) *Batcher {
	t.Helper()
	b, err := c.NewBatcher(r.config(cfg))
	if err != nil {
		t.Fatalf("NewBatcher: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestBatcherSendsWithinWindow(t *testing.T) {
	s := mustStamp(t)
	c := mustClient(t, Config{Endpoints: []string{s.URL}})
	var r recorder
	b := mustBatcher(t, c, &r, BatcherConfig{Window: 20 * time.Millisecond})
	ctx := context.Background()
	for _, v := range []string{"1", "2", "3"} {
		if err := b.Add(ctx, Message{SenderID: "plant-a", Value: v, ID: "k" + v}); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	// No Flush: the window alone must send them.
	eventually(t, 5*time.Second, "3 acks", func() bool { acks, _, _ := r.snapshot(); return len(acks) == 3 })
	acks, failed, _ := r.snapshot()
	want := []string{CorrelationID("plant-a", "k1"), CorrelationID("plant-a", "k2"), CorrelationID("plant-a", "k3")}
	if got := ids(acks); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(failed) != 0 {
		t.Errorf("got %d failed, want 0", len(failed))
	}
	if req, _, _ := s.counts(); req != 1 {
		t.Errorf("got %d requests, want 1 (one window)", req)
	}
}

func TestBatcherSplitsFullBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      BatcherConfig
		value    string
		requests int
	}{
		{name: "MaxMessages", cfg: BatcherConfig{MaxMessages: 2}, value: "v", requests: 3},
		{name: "MaxBytes", cfg: BatcherConfig{MaxBytes: 2 * (messageOverhead + 100)}, value: strings.Repeat("x", 50), requests: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustStamp(t)
			c := mustClient(t, Config{Endpoints: []string{s.URL}})
			var r recorder
			tc.cfg.Window = time.Hour // only fullness and Flush send
			b := mustBatcher(t, c, &r, tc.cfg)
			value := tc.value
			for range 5 {
				if err := b.Add(context.Background(), Message{SenderID: "a", Value: value}); err != nil {
					t.Fatalf("Add: %v", err)
				}
			}
			if err := b.Flush(context.Background()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if acks, _, _ := r.snapshot(); len(acks) != 5 {
				t.Errorf("got %d acks, want 5", len(acks))
			}
			if req, _, _ := s.counts(); req != tc.requests {
				t.Errorf("got %d requests, want %d", req, tc.requests)
			}
		})
	}
}

func TestBatcherRefusedBatchGoesToOnError(t *testing.T) {
	s := mustStamp(t)
	c := mustClient(t, Config{Endpoints: []string{s.URL}})
	var r recorder
	b := mustBatcher(t, c, &r, BatcherConfig{Window: time.Hour})
	if err := b.Add(context.Background(), Message{SenderID: "a", Value: ""}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, failed, errs := r.snapshot()
	if len(failed) != 1 || failed[0].ID == "" {
		t.Fatalf("got failed %v, want one message with its ID set", failed)
	}
	var e *Error
	if !errors.As(errs[0], &e) || e.Status != http.StatusBadRequest {
		t.Errorf("got %v, want a 400 *Error", errs[0])
	}
	if err := b.Add(context.Background(), Message{SenderID: "a", Value: "v"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: got %v, want %v", err, ErrClosed)
	}
}

func TestBatcherBackPressure(t *testing.T) {
	s := mustStamp(t)
	s.SetMode(modeHang)
	c := mustClient(t, Config{Endpoints: []string{s.URL}, Timeout: time.Minute})
	var r recorder
	b, err := c.NewBatcher(r.config(BatcherConfig{MaxMessages: 1}))
	if err != nil {
		t.Fatalf("NewBatcher: %v", err)
	}
	ctx := context.Background()
	if err := b.Add(ctx, Message{SenderID: "a", Value: "in flight"}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	<-s.arrived // the first request hangs at the stamp
	if err := b.Add(ctx, Message{SenderID: "a", Value: "queued"}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Add(short, Message{SenderID: "a", Value: "blocked"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add on a full queue: got %v, want %v", err, context.DeadlineExceeded)
	}
	// Close with an ended context abandons the hung request; nothing is lost silently.
	done, cancelClose := context.WithCancel(ctx)
	cancelClose()
	if err := b.Close(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: got %v, want %v", err, context.Canceled)
	}
	acks, failed, _ := r.snapshot()
	if len(acks) != 0 || len(failed) != 2 {
		t.Errorf("got %d acks and %d failed, want 0 and 2", len(acks), len(failed))
	}
}

func TestStatsCountFailover(t *testing.T) {
	s := mustStamp(t)
	down := refusedURL(t)
	c := mustClient(t, Config{Endpoints: []string{down, s.URL}, ProbeInterval: -1})
	if _, err := c.Send(context.Background(), Message{SenderID: "a", Value: "1"}, Message{SenderID: "a", Value: "2"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	st := c.Stats()
	if st.Failovers != 1 {
		t.Errorf("Failovers: got %v, want 1", st.Failovers)
	}
	want := []EndpointStats{
		{Endpoint: down, Healthy: false, Acked: 0, Failures: 1},
		{Endpoint: s.URL, Healthy: true, Acked: 2, Failures: 0},
	}
	if !slices.Equal(st.Endpoints, want) {
		t.Errorf("got %+v, want %+v", st.Endpoints, want)
	}
	if st.Acked() != 2 {
		t.Errorf("Acked: got %v, want 2", st.Acked())
	}
}

func TestBatcherConfigValidate(t *testing.T) {
	c := mustClient(t, Config{Endpoints: []string{"http://127.0.0.1:1"}})
	for _, cfg := range []BatcherConfig{{Window: -1}, {MaxMessages: -1}, {MaxMessages: 10001}, {MaxBytes: -1}} {
		if _, err := c.NewBatcher(cfg); err == nil {
			t.Errorf("NewBatcher(%+v): got nil, want an error", cfg)
		}
	}
}

// TestBatcherResendsTheGoodOnes checks that a request refused for some of its messages, named by
// index, is sent again without them: one bad message costs only itself.
func TestBatcherResendsTheGoodOnes(t *testing.T) {
	msgs := []Message{
		{SenderID: "a", Value: "0"}, {SenderID: "a", Value: ""}, {SenderID: "a", Value: "2"},
		{SenderID: "", Value: "3"}, {SenderID: "a", Value: "4"},
	}
	for _, withOnRejected := range []bool{true, false} {
		name := "OnRejected"
		if !withOnRejected {
			name = "default: OnError"
		}
		t.Run(name, func(t *testing.T) {
			s := mustStamp(t)
			c := mustClient(t, Config{Endpoints: []string{s.URL}})
			var r recorder
			var rejected []string // "value/field" of each rejection
			cfg := BatcherConfig{Window: time.Hour}
			if withOnRejected {
				cfg.OnRejected = func(m Message, errs []FieldError, e *Error) {
					if e.Status != http.StatusBadRequest {
						t.Errorf("OnRejected: got status %d, want 400", e.Status)
					}
					rejected = append(rejected, m.Value+"/"+errs[0].Field)
				}
			}
			b := mustBatcher(t, c, &r, cfg)
			for _, m := range msgs {
				if err := b.Add(context.Background(), m); err != nil {
					t.Fatalf("Add: %v", err)
				}
			}
			if err := b.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			acks, failed, errs := r.snapshot()
			if len(acks) != 3 {
				t.Errorf("got %d acks, want 3", len(acks))
			}
			if requests, _, _ := s.counts(); requests != 2 {
				t.Errorf("got %d requests, want 2 (the batch, then its good messages)", requests)
			}
			if withOnRejected {
				if want := []string{"/value", "3/senderId"}; !slices.Equal(rejected, want) || len(failed) != 0 {
					t.Errorf("got rejected %q and failed %v, want rejected %q", rejected, failed, want)
				}
				return
			}
			if len(failed) != 2 || failed[0].Value != "" || failed[1].Value != "3" || len(errs) != 1 {
				t.Errorf("got failed %v (%v), want messages 1 and 3 in one OnError", failed, errs)
			}
		})
	}
}

func TestSplitRefused(t *testing.T) {
	batch := []Message{{Value: "0"}, {Value: "1"}, {Value: "2"}}
	named := func(status int, idx ...int) error {
		e := &Error{Status: status, Type: "https://bridgehead.dev/problems/invalid-message"}
		for _, i := range idx {
			e.Errors = append(e.Errors, FieldError{Index: i, Field: "value"})
		}
		return e
	}
	for _, tc := range []struct {
		name      string
		err       error
		bad, good string // values; bad "-" means not a refusal by name
	}{
		{"one named", named(400, 1), "1", "02"},
		{"two problems of one message", named(400, 2, 2), "2", "01"},
		{"all named", named(400, 0, 1, 2), "012", ""},
		{"403 forbidden by index", named(403, 0), "0", "12"},
		{"index out of range", named(400, 3), "-", ""},
		{"negative index", named(400, -1), "-", ""},
		{"no errors", named(400), "-", ""},
		{"413", named(413, 0), "-", ""},
		{"wrapped 503", errors.Join(errors.New("3 attempts failed"), named(503, 0)), "-", ""},
		{"not an *Error", errors.New("connection refused"), "-", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, bad, errs, good := splitRefused(tc.err, batch)
			vals := func(ms []Message) string {
				var b strings.Builder
				for _, m := range ms {
					b.WriteString(m.Value)
				}
				return b.String()
			}
			if tc.bad == "-" {
				if e != nil {
					t.Fatalf("got a refusal by name (bad %q), want none", vals(bad))
				}
				return
			}
			if e == nil || vals(bad) != tc.bad || vals(good) != tc.good || len(errs) != len(bad) {
				t.Fatalf("got bad %q good %q (%d problem lists), want bad %q good %q", vals(bad), vals(good), len(errs), tc.bad, tc.good)
			}
		})
	}
}
