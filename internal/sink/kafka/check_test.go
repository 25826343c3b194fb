package kafka

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

func TestCheck(t *testing.T) {
	c := mustCluster(t)
	var produced atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		produced.Add(1)
		return nil, nil, false
	})
	refused := sinktest.RefusedAddr(t)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr error  // nil: Check passes
		want    string // in the error
	}{
		{name: "topic exists", cfg: Config{Brokers: c.ListenAddrs()}},
		{name: "wrong topic", cfg: Config{Brokers: c.ListenAddrs(), Topic: "no-such-topic"},
			wantErr: kerr.UnknownTopicOrPartition, want: "topic no-such-topic"},
		{name: "nothing listening", cfg: Config{Brokers: []string{refused}},
			wantErr: syscall.ECONNREFUSED, want: "dial tcp " + refused + ": connect: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSink(t, tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			err := s.Check(ctx)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Check: %v, want %v", err, tc.wantErr)
			case tc.wantErr != nil && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Check: %q, want it to name %q", err, tc.want)
			}
			if el := time.Since(start); el > 4*time.Second {
				t.Fatalf("Check took %v, want it bounded by its 2 s context", el)
			}
			if err == nil {
				return
			}
			t.Logf("Check: %v", err)
		})
	}
	if n := produced.Load(); n != 0 {
		t.Fatalf("Check made %d produce requests, want none", n)
	}
}

// A Send to an address where nothing listens gives up at its deadline with the refusal as the
// cause (what the breaker shows), not only "context deadline exceeded".
func TestSendNamesConnectionRefused(t *testing.T) {
	addr := sinktest.RefusedAddr(t)
	s := mustSink(t, Config{Brokers: []string{addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	for i, r := range s.Send(ctx, sinktest.Messages(3, 8)) {
		if r.Status != sink.Transient || !errors.Is(r.Err, syscall.ECONNREFUSED) || !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("result %d: %v (%v), want transient naming connection refused and the deadline", i, r.Status, r.Err)
		}
		if !strings.Contains(r.Err.Error(), "dial tcp "+addr) {
			t.Fatalf("result %d: %q, want it to name the address dialled", i, r.Err)
		}
	}
}
