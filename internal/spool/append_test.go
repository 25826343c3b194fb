package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// TestCommitIsOneDurableWrite: on the hot path a commit is one call, a write that returns once
// durable (WriteSync), and no create, rename or directory fsync; those belong to the seal (once
// per segment) and the file created ahead.
func TestCommitIsOneDurableWrite(t *testing.T) {
	f := fsys.NewFaulty(fsys.OS{})
	s, err := Open(t.TempDir(), Options{FS: f, SealAfter: time.Hour, SealIdle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The first commit takes the open segment created ahead; wait for the next one too.
	if err := s.Append(context.Background(), testMessages(1)...); err != nil {
		t.Fatal(err)
	}
	// (its create and the fsync of open/ that makes it durable)
	for deadline := time.Now().Add(10 * time.Second); f.CountIn(fsys.OpSyncDir, "open") < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the next open segment was not created ahead within 10 s")
		}
	}
	before := map[fsys.Op]int{}
	ops := []fsys.Op{fsys.OpCreate, fsys.OpWrite, fsys.OpSync, fsys.OpWriteSync, fsys.OpRename, fsys.OpSyncDir, fsys.OpClose}
	for _, op := range ops {
		before[op] = f.Count(op)
	}
	const commits = 20
	for range commits {
		if err := s.Append(context.Background(), testMessages(1)...); err != nil {
			t.Fatal(err)
		}
	}
	want := map[fsys.Op]int{fsys.OpWriteSync: commits}
	for _, op := range ops {
		// Heartbeats (create, write, close, rename in tmp/ and hb/) may run meanwhile; they are
		// not the commit's: count only what is on the open segment's path.
		if got := f.Count(op) - before[op]; op != fsys.OpCreate && op != fsys.OpRename && op != fsys.OpClose && got != want[op] {
			t.Errorf("%d commits made %d %s calls, want %d", commits, got, op, want[op])
		}
	}
	if got := f.CountIn(fsys.OpCreate, "open") - 2; got != 0 {
		t.Errorf("%d commits created %d open segments, want 0", commits, got)
	}
	if got := f.CountIn(fsys.OpRename, "open"); got != 0 {
		t.Errorf("%d commits renamed %d open segments, want 0 before the seal", commits, got)
	}
}

// gatherer is the part of a writer that gather reads: no committer runs, so the test decides
// what is pending and when.
func gatherer(last flush) *writer {
	w := newWriter(&Spool{stop: make(chan struct{})})
	w.lastFlush, w.gatherCap = last, time.Hour
	return w
}

// gatherAsync runs w.gather and closes the returned channel when it returns.
func gatherAsync(w *writer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		w.gather()
		close(done)
	}()
	return done
}

func (w *writer) arrive(n int) {
	w.s.mu.Lock()
	w.s.pending = append(w.s.pending, &batch{count: n, done: make(chan struct{})})
	w.s.mu.Unlock()
	w.wake()
}

func TestGather(t *testing.T) {
	t.Run("a lone client never waits", func(t *testing.T) {
		s := gatherer(flush{msgs: 1, took: time.Hour})
		s.arrive(1)
		select {
		case <-gatherAsync(s):
		case <-time.After(5 * time.Second):
			t.Fatal("gather waited after a flush of one message")
		}
	})
	t.Run("waits for as many as the last flush carried", func(t *testing.T) {
		s := gatherer(flush{msgs: 8, took: time.Hour})
		s.arrive(3)
		done := gatherAsync(s)
		select {
		case <-done:
			t.Fatal("gather returned with 3 of 8 pending")
		case <-time.After(50 * time.Millisecond):
		}
		s.arrive(4)
		select {
		case <-done:
			t.Fatal("gather returned with 7 of 8 pending")
		case <-time.After(50 * time.Millisecond):
		}
		s.arrive(1)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("gather still waiting with 8 of 8 pending")
		}
	})
	t.Run("waits no longer than the last flush took", func(t *testing.T) {
		s := gatherer(flush{msgs: 8, took: 80 * time.Millisecond})
		s.arrive(2)
		start := time.Now()
		select {
		case <-gatherAsync(s):
		case <-time.After(5 * time.Second):
			t.Fatal("gather did not end at its deadline")
		}
		if took := time.Since(start); took < 80*time.Millisecond {
			t.Fatalf("gather returned after %v, before the last flush's 80ms with 2 of 8 pending", took)
		}
	})
	t.Run("a stalled flush does not make the next wait as long", func(t *testing.T) {
		s := gatherer(flush{msgs: 8, took: time.Hour})
		s.gatherCap = maxGather
		start := time.Now()
		select {
		case <-gatherAsync(s):
		case <-time.After(5 * time.Second):
			t.Fatal("gather waited past its cap after a flush that took an hour")
		}
		if took := time.Since(start); took < maxGather {
			t.Fatalf("gather returned after %v, before its cap %v with nothing pending", took, maxGather)
		}
	})
	t.Run("Close ends it", func(t *testing.T) {
		s := gatherer(flush{msgs: 8, took: time.Hour})
		done := gatherAsync(s)
		close(s.s.stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("gather still waiting after Close")
		}
	})
}

// TestGatherCarriesTheReturningCallers: clients that append again as soon as they are
// acknowledged end up in one flush together instead of alternating between two.
func TestGatherCarriesTheReturningCallers(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const clients, each = 16, 40
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				if err := s.Append(context.Background(), testMessages(1)...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	c := s.Counters()
	// Without gathering the 16 split into two groups of about 8 that take turns.
	if per := float64(c.Messages) / float64(c.Commits); per < clients*0.6 {
		t.Fatalf("%.1f messages a commit (%d commits of %d messages), want most of the %d clients in each", per, c.Commits, c.Messages, clients)
	}
}

// TestClaimDeadlinesStrictlyIncreaseAndAreForgotten: with a frozen clock, the deadlines one
// process gives one segment still differ; deadlines of other segments are not bumped; the
// record of old deadlines is forgotten, so it does not grow with every segment ever claimed.
func TestClaimDeadlinesStrictlyIncreaseAndAreForgotten(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	s := &Spool{opts: Options{Lease: 30 * time.Second, Now: func() time.Time { return now }}}
	a1, a2, b1 := s.claimDeadline("a"), s.claimDeadline("a"), s.claimDeadline("b")
	want := now.Add(30 * time.Second)
	if !a1.Equal(want) || !a2.Equal(want.Add(time.Millisecond)) || !b1.Equal(want) {
		t.Fatalf("deadlines a, a, b = %v, %v, %v; want %v, +1 ms, %v", a1, a2, b1, want, want)
	}
	for i := range 5000 {
		s.claimDeadline(fmt.Sprint("seg-", i))
	}
	// Remembered for at least recentDeadlines and at most twice that: two swaps of generations
	// later only the deadlines given since are left.
	now = now.Add(recentDeadlines + 2*time.Second)
	s.claimDeadline("c")
	now = now.Add(recentDeadlines + 2*time.Second)
	s.claimDeadline("d")
	if n := len(s.claims.deadlines) + len(s.claims.oldDeadlines); n != 2 {
		t.Fatalf("%d deadlines remembered %v after the first 5002 were given, want only c's and d's", n, 2*(recentDeadlines+2*time.Second))
	}
}

// TestAbandonedSegmentRepublishedAfterAFullShare: a segment abandoned after a failed write whose
// re-publishing keeps failing (the share is full) is retried from the claim it holds, logged
// once rather than at every retry, and published once space returns.
func TestAbandonedSegmentRepublishedAfterAFullShare(t *testing.T) {
	ffs := fsys.NewFaulty(fsys.OS{})
	var logs logbuf.Buffer
	dir := t.TempDir()
	s, err := Open(dir, Options{FS: ffs, SealAfter: time.Hour, SealIdle: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.w.recoverRetry = 5 * time.Millisecond
	if err := s.Append(context.Background(), testMessages(3)...); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(fsys.Rule{Op: fsys.OpWriteSync, Match: "/open/", Err: syscall.EIO, Times: 1})
	ffs.Inject(fsys.Rule{Op: fsys.OpCreate, Match: "/tmp/", Err: syscall.ENOSPC})
	if err := s.Append(context.Background(), testMessages(1)...); !errors.Is(err, ErrUnwritable) {
		t.Fatalf("Append on a failing write: got %v, want ErrUnwritable", err)
	}
	const failing = "re-publishing abandoned open segments failed"
	for deadline := time.Now().Add(10 * time.Second); ffs.CountIn(fsys.OpCreate, "tmp") < 20; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the recoverer did not retry")
		}
	}
	if n := strings.Count(logs.String(), failing); n != 1 {
		t.Fatalf("%d log lines for %d retries, want 1", n, ffs.CountIn(fsys.OpCreate, "tmp"))
	}
	ffs.Reset()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "re-published after earlier failures") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned segment was not re-published once space returned")
		}
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready.Messages < 3 || st.Recovering.Segments != 0 {
		t.Fatalf("after the space returned: %+v, want the 3 acknowledged messages ready and nothing left in recovering/", st)
	}
}
