package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

// deadWriterSpool leaves in a new spool directory the open segment of a writer that died
// holding the given messages acknowledged (its heartbeat removed, as after a long-dead process's
// collection), and returns the directory.
func deadWriterSpool(t *testing.T, n int) (dir string, acked []uuid.UUID) {
	t.Helper()
	dir = t.TempDir()
	w := mustOpenSpool(t, dir, spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	in := msgs(n, 40)
	for i := range in {
		if err := w.Append(context.Background(), in[i]); err != nil {
			t.Fatal(err)
		}
	}
	// The writer "dies": its files stay as they are, its heartbeat goes.
	open := dirFiles(t, dir, "open")
	snapshot := map[string][]byte{}
	for _, name := range open {
		b, err := os.ReadFile(filepath.Join(dir, "open", name))
		if err != nil {
			t.Fatal(err)
		}
		snapshot[name] = b
	}
	if err := w.Close(); err != nil { // seals; put the open files back as they were
		t.Fatal(err)
	}
	for _, d := range []string{"ready", "open"} {
		for _, name := range dirFiles(t, dir, d) {
			if err := os.Remove(filepath.Join(dir, d, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range snapshot {
		if err := os.WriteFile(filepath.Join(dir, "open", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, ids(in)
}

// writtenOpenSegment returns the path of the open segment in dir that holds records.
func writtenOpenSegment(t *testing.T, dir string) string {
	t.Helper()
	for _, name := range dirFiles(t, dir, "open") {
		if b, err := os.ReadFile(filepath.Join(dir, "open", name)); err == nil && written(b) { // not the spare
			return filepath.Join(dir, "open", name)
		}
	}
	t.Fatalf("no open segment with records in %s", dir)
	return ""
}

// recoverWhole recovers dir's dead writer in a new process and checks that exactly the acked
// messages come back and that nothing went to quarantine.
func recoverWhole(t *testing.T, dir string, acked []uuid.UUID) {
	t.Helper()
	r := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer})
	if rs, err := r.Reap(context.Background()); err != nil || rs.Recovered != 1 {
		t.Fatalf("Reap: %+v, %v; want one recovered", rs, err)
	}
	if err := sameSet(drain(t, r), acked); err != nil {
		t.Fatal(err)
	}
	if q := dirFiles(t, dir, "quarantine"); len(q) != 0 {
		t.Fatalf("the recovered segment (and its acknowledged records) went to quarantine: %v", q)
	}
}

// TestTwoRecoverersRaceForOneOrphan: processes reaping at once never both publish a dead
// writer's open segment; its messages are delivered exactly once.
func TestTwoRecoverersRaceForOneOrphan(t *testing.T) {
	for round := range 20 {
		dir, acked := deadWriterSpool(t, 30)
		var recoverers []*spool.Spool
		for range 3 {
			recoverers = append(recoverers, mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer}))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		recovered := 0
		for _, r := range recoverers {
			wg.Go(func() {
				rs, err := r.Reap(context.Background())
				if err != nil {
					t.Errorf("Reap: %v", err)
				}
				mu.Lock()
				recovered += rs.Recovered
				mu.Unlock()
			})
		}
		wg.Wait()
		if recovered != 1 {
			t.Fatalf("round %d: %d recoveries of one open segment, want 1", round, recovered)
		}
		if err := sameSet(drain(t, recoverers[0]), acked); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// TestRecoveryWithAStaleListingOfOpen: a recoverer whose listing of open/ still shows a segment
// another process already recovered finds it gone and publishes nothing twice.
func TestRecoveryWithAStaleListingOfOpen(t *testing.T) {
	dir, acked := deadWriterSpool(t, 10)
	ffs := fsys.NewFaulty(fsys.OS{})
	if err := ffs.FreezeListing(filepath.Join(dir, "open")); err != nil {
		t.Fatal(err)
	}
	stale := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer, FS: ffs})
	fresh := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer})
	if rs, err := fresh.Reap(context.Background()); err != nil || rs.Recovered != 1 {
		t.Fatalf("first Reap: %+v, %v; want one recovered", rs, err)
	}
	rs, err := stale.Reap(context.Background())
	if err != nil || rs.Recovered != 0 {
		t.Fatalf("Reap with a stale listing of open/: %+v, %v; want nothing recovered", rs, err)
	}
	if err := sameSet(drain(t, fresh), acked); err != nil {
		t.Fatal(err)
	}
}

// TestRecoveryOfATornTail: an open segment whose last commit was cut off mid-record (the writer
// died while writing it, unacknowledged) gives back every whole record before it.
func TestRecoveryOfATornTail(t *testing.T) {
	dir, acked := deadWriterSpool(t, 12)
	seg := writtenOpenSegment(t, dir)
	// A torn commit: the first bytes of a record frame and part of its payload.
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r', 't'}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	recoverWhole(t, dir, acked)
}

// TestSkewAfterStartStopsAcknowledgements: a clock that steps away from the file server's after
// Open is seen at the next heartbeat: appends fail with ErrUnwritable and Ready says why, until
// the clocks agree again.
func TestSkewAfterStartStopsAcknowledgements(t *testing.T) {
	var mu sync.Mutex
	var step time.Duration
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(step)
	}
	s := mustOpenSpool(t, "", spool.Options{Now: now, HeartbeatInterval: 20 * time.Millisecond, SkewAllowance: time.Second})
	mustAppend(t, s, msgs(1, 10)...)
	mu.Lock()
	step = 40 * time.Second // the host's clock steps, 40 s after start
	mu.Unlock()
	waitFor(t, 10*time.Second, func() bool { return s.Skew() > time.Second })
	err := s.Append(context.Background(), msgs(1, 10)...)
	if !errors.Is(err, spool.ErrUnwritable) {
		t.Fatalf("Append with the clock 40 s off: got %v, want ErrUnwritable", err)
	}
	if err := s.Ready(); err == nil {
		t.Fatal("Ready with the clock 40 s off: got nil, want an error naming the skew")
	}
	mu.Lock()
	step = 0
	mu.Unlock()
	waitFor(t, 10*time.Second, func() bool { return s.Ready() == nil })
	mustAppend(t, s, msgs(1, 10)...)
}

// TestIdleWriterSealsWithinSealIdle: a message acknowledged by a writer that then goes quiet is
// claimable within SealIdle, not only after SealAfter.
func TestIdleWriterSealsWithinSealIdle(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{SealAfter: time.Hour, SealIdle: 20 * time.Millisecond})
	in := msgs(1, 10)
	if err := s.Append(context.Background(), in...); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	waitFor(t, 10*time.Second, func() bool { return mustStats(t, s).Ready.Messages == 1 })
	if d := time.Since(acked); d > 5*time.Second {
		t.Fatalf("sealed %v after the append, want within SealIdle (20 ms), far before SealAfter (1 h)", d)
	}
	if err := sameSet(drain(t, s), ids(in)); err != nil {
		t.Fatal(err)
	}
}

// TestRecoveryOfATornHeader: the seal rewrites an open segment's header in place, so a crash in
// that write can leave it torn while every record after it is whole: recovery publishes the
// records rather than quarantining the file (found by the power-cut test).
func TestRecoveryOfATornHeader(t *testing.T) {
	dir, acked := deadWriterSpool(t, 7)
	seg := writtenOpenSegment(t, dir)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[8:20], []byte("torn-header!")) // count and time half-rewritten: the header's checksum fails
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	recoverWhole(t, dir, acked)
}
