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
