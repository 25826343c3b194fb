package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

// appendConcurrently appends each message in its own goroutine and returns the ids of those
// whose Append returned nil, and the errors of the others.
func appendConcurrently(s *spool.Spool, in []message.Message) (acked []uuid.UUID, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range in {
		wg.Go(func() {
			err := s.Append(context.Background(), in[i])
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				acked = append(acked, in[i].ID)
			} else {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return acked, errs
}

// assertDurable reopens dir on the real file system as another process would once the writers
// are gone, recovers what they left in open/, and checks that every acked id is in a segment that
// reads back whole, and that nothing partial is left visible.
func assertDurable(t *testing.T, dir string, acked []uuid.UUID) {
	t.Helper()
	s := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer})
	if _, err := s.Reap(context.Background()); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	_, damaged, err := s.Verify(context.Background(), nil)
	if err != nil || len(damaged) != 0 {
		t.Fatalf("Verify: %v, damaged %v", err, damaged)
	}
	present := map[uuid.UUID]bool{}
	for _, id := range drain(t, s) {
		present[id] = true
	}
	for _, id := range acked {
		if !present[id] {
			t.Fatalf("message %s was acknowledged but is not in the spool", id)
		}
	}
}

// dirFiles lists the files in one of the spool's directories.
func dirFiles(t *testing.T, root, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestAppendUnderInjectedFaults(t *testing.T) {
	tests := []struct {
		name string
		rule fsys.Rule
		// want is the error the first Append wraps; nil means it must succeed (a fault in the
		// seal, which no caller waits for: the messages must still be delivered).
		want error
		// mayPass is set where the fault may hit the open segment created ahead for a later
		// seal rather than the first commit's: then the first Append may succeed.
		mayPass bool
	}{
		{"ENOSPC on write", fsys.Rule{Op: fsys.OpWrite, Match: "/open/", Err: syscall.ENOSPC, Times: 1}, spool.ErrFull, false},
		{"EIO on write", fsys.Rule{Op: fsys.OpWrite, Match: "/open/", Err: syscall.EIO, Times: 1}, spool.ErrUnwritable, false},
		{"EIO on fdatasync", fsys.Rule{Op: fsys.OpSync, Match: "/open/", Err: syscall.EIO, Times: 1}, spool.ErrUnwritable, false},
		{"ENOSPC on fdatasync (NFS reports late)", fsys.Rule{Op: fsys.OpSync, Match: "/open/", Err: syscall.ENOSPC, Times: 1}, spool.ErrFull, false},
		{"EEXIST on create (retransmitted O_EXCL)", fsys.Rule{Op: fsys.OpCreate, Match: "/open/", Err: syscall.EEXIST, Times: 1}, spool.ErrUnwritable, true},
		{"ENOSPC on create", fsys.Rule{Op: fsys.OpCreate, Match: "/open/", Err: syscall.ENOSPC, Times: 1}, spool.ErrFull, true},
		{"fsync of open/ fails after the create", fsys.Rule{Op: fsys.OpSyncDir, Match: "/open", Err: syscall.EIO, Times: 1}, spool.ErrUnwritable, true},
		{"seal: header rewrite fails", fsys.Rule{Op: fsys.OpWrite, Match: "/open/", Err: syscall.EIO, Skip: 1, Times: 1}, nil, false},
		{"seal: fdatasync fails", fsys.Rule{Op: fsys.OpSync, Match: "/open/", Err: syscall.EIO, Skip: 1, Times: 1}, nil, false},
		{"seal: EIO on close", fsys.Rule{Op: fsys.OpClose, Match: "/open/", Err: syscall.EIO, Times: 1}, nil, false},
		{"seal: rename fails", fsys.Rule{Op: fsys.OpRename, Match: "/ready/", Err: syscall.EIO, Times: 1}, nil, false},
		{"seal: rename done, reply lost as ENOENT", fsys.Rule{Op: fsys.OpRename, Match: "/ready/", Err: syscall.ENOENT, After: true, Times: 1}, nil, false},
		{"seal: rename done, reply lost as EIO", fsys.Rule{Op: fsys.OpRename, Match: "/ready/", Err: syscall.EIO, After: true, Times: 1}, nil, false},
		{"seal: rename done, reply lost as timeout", fsys.Rule{Op: fsys.OpRename, Match: "/ready/", Err: syscall.ETIMEDOUT, After: true, Times: 1}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ffs := fsys.NewFaulty(fsys.OS{})
			s := mustOpenSpool(t, dir, spool.Options{FS: ffs, SealAfter: time.Hour, SealIdle: time.Hour})
			ffs.Inject(tt.rule)
			first := msgs(1, 100)
			err := s.Append(context.Background(), first...)
			var acked []uuid.UUID
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Append: got %v, want nil", err)
			case tt.want == nil || (tt.mayPass && err == nil):
				acked = append(acked, first[0].ID)
			case !errors.Is(err, tt.want):
				t.Fatalf("Append: got %v, want %v", err, tt.want)
			}
			_ = s.Seal(context.Background()) // the seal faults fire here; their error is logged
			// The fault was one-shot: the spool keeps working.
			more := msgs(20, 100)
			got, errs := appendConcurrently(s, more)
			if len(errs) > 0 {
				t.Fatalf("Appends after the fault: %v", errs[0])
			}
			acked = append(acked, got...)
			if r := ffs.Resynced(); len(r) > 0 {
				t.Fatalf("a file was fsynced again after its fsync failed: %v", r)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			assertDurable(t, dir, acked)
			for _, d := range []string{"tmp", "open", "recovering"} {
				if left := dirFiles(t, dir, d); len(left) != 0 {
					t.Fatalf("%s/ not empty once the writer closed and another recovered: %v", d, left)
				}
			}
		})
	}
}

func TestFailedFsyncIsNeverRetried(t *testing.T) {
	dir := t.TempDir()
	ffs := fsys.NewFaulty(fsys.OS{})
	s := mustOpenSpool(t, dir, spool.Options{FS: ffs})
	ffs.Inject(fsys.Rule{Op: fsys.OpSync, Match: "/open/", Err: syscall.EIO}) // every fsync fails
	_, errs := appendConcurrently(s, msgs(50, 10))
	if len(errs) != 50 {
		t.Fatalf("%d of 50 appends failed, want all", len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, spool.ErrUnwritable) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("got %v, want ErrUnwritable wrapping EIO", err)
		}
	}
	if r := ffs.Resynced(); len(r) > 0 {
		t.Fatalf("re-fsynced after failure: %v", r)
	}
	// A file whose fdatasync failed is abandoned (never written again) and re-published by
	// recovery as it reads back: its messages may be delivered although their callers got an
	// error (a duplicate if they retry, never a loss).
}

func TestClaimUnderInjectedFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("claim rename done, reply lost", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		in := msgs(3, 10)
		mustAppend(t, s, in...)
		ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/claimed/", Err: syscall.EIO, After: true, Times: 1})
		c := mustClaim(t, s)
		if err := sameSet(ids(c.Messages), ids(in)); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(ctx, c); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stale listing never double-claims", func(t *testing.T) {
		dir := t.TempDir()
		a := mustOpenSpool(t, dir, spool.Options{})
		ffs := fsys.NewFaulty(fsys.OS{})
		b := mustOpenSpool(t, dir, spool.Options{FS: ffs})
		in := msgs(5, 10)
		mustAppend(t, a, in...)
		if err := ffs.FreezeListing(filepath.Join(dir, "ready")); err != nil {
			t.Fatal(err)
		}
		ca := mustClaim(t, a)
		if err := a.Ack(ctx, ca); err != nil {
			t.Fatal(err)
		}
		// b still sees the segment in its stale listing; its claim must fail, not deliver again.
		if c, err := b.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
			t.Fatalf("Claim on a stale listing: got %v, %v; want ErrEmpty", c, err)
		}
	})
	t.Run("stale listing in the claiming process, same millisecond: no second claim", func(t *testing.T) {
		// The claimed name a second claim of one segment would use is the first's when both
		// fall in one millisecond (the clock is frozen here): its rename fails with ENOENT,
		// and the stat that resolves a lost reply must not take the first claim for its own.
		clk := newFakeClock()
		ffs := fsys.NewFaulty(fsys.OS{})
		dir := t.TempDir()
		s := mustOpenSpool(t, dir, spool.Options{FS: ffs, Now: clk.Now})
		mustAppend(t, s, msgs(1, 10)...)
		if err := ffs.FreezeListing(filepath.Join(dir, "ready")); err != nil {
			t.Fatal(err)
		}
		first := mustClaim(t, s)
		if c, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
			t.Fatalf("second Claim while %s is held, on a stale listing: got %+v, %v; want ErrEmpty", first.ID, c, err)
		}
		if err := s.Ack(ctx, first); err != nil {
			t.Fatalf("the first claim was disturbed: %v", err)
		}
	})
	t.Run("ESTALE reading the claim: the lease brings it back", func(t *testing.T) {
		clk := newFakeClock()
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs, Now: clk.Now, Lease: time.Second, SkewAllowance: 100 * time.Millisecond})
		in := msgs(2, 10)
		mustAppend(t, s, in...)
		ffs.Inject(fsys.Rule{Op: fsys.OpRead, Match: "/claimed/", Err: syscall.ESTALE, Times: 1})
		if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
			t.Fatalf("Claim with ESTALE: got %v, want ErrEmpty (treated as lost)", err)
		}
		clk.Advance(2 * time.Second)
		if rs, err := s.Reap(ctx); err != nil || rs.Reclaimed != 1 {
			t.Fatalf("Reap: %+v, %v", rs, err)
		}
		if err := sameSet(drain(t, s), ids(in)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SMB: rename of an open file refused (EBUSY), claimed later", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		in := msgs(2, 10)
		mustAppend(t, s, in...)
		ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/claimed/", Err: syscall.EBUSY, Times: 1})
		if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
			t.Fatalf("Claim with EBUSY: got %v, want ErrEmpty", err)
		}
		if err := sameSet(drain(t, s), ids(in)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SMB: unlink refused (EACCES), ack retried", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		mustAppend(t, s, msgs(1, 10)...)
		c := mustClaim(t, s)
		ffs.Inject(fsys.Rule{Op: fsys.OpRemove, Match: "/claimed/", Err: syscall.EACCES, Times: 1})
		if err := s.Ack(ctx, c); err == nil || errors.Is(err, spool.ErrLostClaim) {
			t.Fatalf("Ack with EACCES: got %v, want a retriable error", err)
		}
		if st := mustStats(t, s); st.Claimed.Messages != 1 {
			t.Fatalf("a failed ack lost the claim: %+v", st)
		}
		if err := s.Ack(ctx, c); err != nil {
			t.Fatalf("Ack retry: %v", err)
		}
	})
	t.Run("ack unlink done, reply lost", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		mustAppend(t, s, msgs(1, 10)...)
		c := mustClaim(t, s)
		ffs.Inject(fsys.Rule{Op: fsys.OpRemove, Match: "/claimed/", Err: syscall.EIO, After: true, Times: 1})
		if err := s.Ack(ctx, c); err == nil {
			t.Fatal("Ack: got nil, want the EIO reported")
		}
		// Retrying finds it gone: reported as a lost claim, which the caller treats as done.
		if err := s.Ack(ctx, c); !errors.Is(err, spool.ErrLostClaim) {
			t.Fatalf("Ack retry: got %v, want ErrLostClaim", err)
		}
	})
	t.Run("release rename done, reply lost", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		in := msgs(2, 10)
		mustAppend(t, s, in...)
		c := mustClaim(t, s)
		ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/ready/", Err: syscall.ENOENT, After: true, Times: 1})
		if err := s.Release(ctx, c, time.Time{}); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if err := sameSet(drain(t, s), ids(in)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dead-letter: reason write fails, claim kept", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		s := mustOpenSpool(t, "", spool.Options{FS: ffs})
		mustAppend(t, s, msgs(1, 10)...)
		c := mustClaim(t, s)
		ffs.Inject(fsys.Rule{Op: fsys.OpSync, Match: "/tmp/", Err: syscall.EIO, Times: 1})
		if err := s.DeadLetter(ctx, c, "poison"); err == nil {
			t.Fatal("DeadLetter: got nil, want the fsync error")
		}
		if st := mustStats(t, s); st.Claimed.Messages != 1 || st.Dead.Segments != 0 {
			t.Fatalf("after a failed dead-letter: %+v, want the claim intact", st)
		}
		if err := s.DeadLetter(ctx, c, "poison"); err != nil {
			t.Fatalf("DeadLetter retry: %v", err)
		}
	})
}

func TestSpoolWithMetadataLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency test skipped in -short mode")
	}
	ffs := fsys.NewFaulty(fsys.OS{})
	ffs.SetLatency(time.Millisecond)
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{FS: ffs})
	in := msgs(400, 256)
	acked, errs := appendConcurrently(s, in)
	if len(errs) > 0 {
		t.Fatalf("Append with 1 ms metadata latency: %v", errs[0])
	}
	c := s.Counters()
	t.Logf("1 ms per metadata op: %d appends in %d commits", len(in), c.Commits)
	mustSeal(t, s)
	// Claim and ack through the slow file system too.
	var got []uuid.UUID
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				c, err := s.Claim(context.Background())
				if err != nil {
					if !errors.Is(err, spool.ErrEmpty) {
						t.Errorf("Claim: %v", err)
					}
					return
				}
				if err := s.Ack(context.Background(), c); err != nil {
					t.Errorf("Ack: %v", err)
					return
				}
				mu.Lock()
				got = append(got, ids(c.Messages)...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != len(acked) {
		t.Fatalf("delivered %d, want %d exactly once", len(got), len(acked))
	}
	if err := sameSet(got, acked); err != nil {
		t.Fatal(err)
	}
	if ffs.Count(fsys.OpReadDir) == 0 {
		t.Fatal("the faulty file system was not used")
	}
}

// TestCommitsDoNotWaitForASeal: a seal (five calls, each a round trip on a share) runs beside the
// commits. While the seal of a full segment hangs in its rename into ready/, appends into the
// next segment are acknowledged at their own pace; the hung seal then publishes its segment, and
// every acknowledged message is claimable.
func TestCommitsDoNotWaitForASeal(t *testing.T) {
	const hang = 2 * time.Second
	ffs := fsys.NewFaulty(fsys.OS{})
	s := mustOpenSpool(t, "", spool.Options{FS: ffs, MaxSegmentBytes: 4096, SealAfter: time.Hour, SealIdle: time.Hour})
	// (after Open: its probe renames into ready/ too)
	ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: ".open -> ", Delay: hang, Times: 1})
	var want []uuid.UUID
	var slowest time.Duration
	for _, m := range msgs(100, 64) { // ~100 B a record: the first segment fills after ~40
		start := time.Now()
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		want = append(want, m.ID)
	}
	if slowest >= hang/2 {
		t.Errorf("the slowest append took %v while a seal hung for %v: commits waited for the seal", slowest, hang)
	}
	mustSeal(t, s) // waits for the sealer, the hung seal included
	if st := mustStats(t, s); st.Ready.Segments < 3 || st.Ready.Messages != len(want) {
		t.Errorf("ready: %d segments, %d messages; want at least 3 segments (4 KiB each) and %d messages", st.Ready.Segments, st.Ready.Messages, len(want))
	}
	if err := sameSet(drain(t, s), want); err != nil {
		t.Error(err)
	}
}

// TestOpenSegmentsAreSizedAhead: an open segment is created with the full segment size as a hole
// (a commit then writes inside the file and flushes no size), counts as what was written to it
// (Stats, and with it the capacity figure), and its seal cuts it to its length: a ready segment
// is byte for byte the size its name says.
func TestOpenSegmentsAreSizedAhead(t *testing.T) {
	ffs := fsys.NewFaulty(fsys.OS{})
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{FS: ffs, SealAfter: time.Hour, SealIdle: time.Hour})
	if err := s.Append(context.Background(), msgs(10, 100)...); err != nil {
		t.Fatal(err)
	}
	sized := 0
	for _, name := range dirFiles(t, dir, "open") {
		fi, err := os.Stat(filepath.Join(dir, "open", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == spool.DefaultMaxSegmentBytes {
			sized++
		}
	}
	if sized == 0 {
		t.Errorf("no open segment has the segment size (%d bytes) ahead", spool.DefaultMaxSegmentBytes)
	}
	if st := mustStats(t, s); st.Open.Bytes <= 0 || st.Open.Bytes >= 64<<10 {
		t.Errorf("open segments count %d bytes for 10 messages of 100 bytes: want what was written, not the hole", st.Open.Bytes)
	}
	mustSeal(t, s)
	entries, err := s.List(context.Background(), spool.StateReady)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ready: %v, %v; want one segment", entries, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ready", entries[0].Name)); err != nil || fi.Size() != entries[0].Bytes {
		t.Errorf("sealed segment: %v, %v; want %d bytes, as its name says", fi.Size(), err, entries[0].Bytes)
	}
	if n := ffs.Count(fsys.OpTruncate); n < 2 {
		t.Errorf("%d truncates, want one sizing the open segment ahead and one cutting it at its seal", n)
	}
}
