package spool_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/google/uuid"
)

// mustOpenSpool opens a spool in a fresh temporary directory (or dir, if given in opts' place).
func mustOpenSpool(tb testing.TB, dir string, opts spool.Options) *spool.Spool {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	s, err := spool.Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// msgs returns n distinct messages with a value of size bytes.
func msgs(n, size int) []message.Message {
	out := make([]message.Message, n)
	val := make([]byte, size)
	for i := range val {
		val[i] = 'a' + byte(i%26)
	}
	now := time.Now().UTC()
	for i := range out {
		out[i] = message.Message{ID: uuid.New(), SenderID: fmt.Sprintf("sender-%d", i%7), Value: string(val), ReceivedAt: now, Stamp: "test"}
	}
	return out
}

// written reports whether the open segment file b holds anything written, not only the hole a
// segment created ahead is sized with.
func written(b []byte) bool { return len(bytes.TrimRight(b, "\x00")) > 0 }

// ids returns the message ids of ms.
func ids(ms []message.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// drain claims and acks everything ready, returning the delivered ids in order.
func drain(tb testing.TB, s *spool.Spool) []uuid.UUID {
	tb.Helper()
	var got []uuid.UUID
	ctx := context.Background()
	for {
		c, err := s.Claim(ctx)
		if err == spool.ErrEmpty {
			return got
		}
		if err != nil {
			tb.Fatalf("Claim: %v", err)
		}
		got = append(got, ids(c.Messages)...)
		if err := s.Ack(ctx, c); err != nil {
			tb.Fatalf("Ack: %v", err)
		}
	}
}

// fakeClock is a settable clock for lease and skew tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mustStats returns s.Stats or fails.
func mustStats(tb testing.TB, s *spool.Spool) spool.Stats {
	tb.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return st
}

// sameSet reports whether a and b hold the same ids, each exactly once.
func sameSet(a, b []uuid.UUID) error {
	seen := map[uuid.UUID]int{}
	for _, id := range a {
		seen[id]++
	}
	for _, id := range b {
		seen[id]--
	}
	for id, n := range seen {
		if n != 0 {
			return fmt.Errorf("id %s: count differs by %d", id, n)
		}
	}
	return nil
}

// mustAppend appends in to s and seals the open segment, so that they are claimable at once,
// or fails.
func mustAppend(tb testing.TB, s *spool.Spool, in ...message.Message) {
	tb.Helper()
	if err := s.Append(context.Background(), in...); err != nil {
		tb.Fatalf("Append: %v", err)
	}
	mustSeal(tb, s)
}

// mustSeal seals s's open segment or fails.
func mustSeal(tb testing.TB, s *spool.Spool) {
	tb.Helper()
	if err := s.Seal(context.Background()); err != nil {
		tb.Fatalf("Seal: %v", err)
	}
}

// mustClaim claims a segment from s or fails.
func mustClaim(tb testing.TB, s *spool.Spool) *spool.Claim {
	tb.Helper()
	c, err := s.Claim(context.Background())
	if err != nil {
		tb.Fatalf("Claim: %v", err)
	}
	return c
}
