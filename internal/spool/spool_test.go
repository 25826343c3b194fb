package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

func TestAppendClaimAck(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	ctx := context.Background()
	in := msgs(3, 100)
	in[0].Properties = map[string]string{"unit": "kWh"}
	mustAppend(t, s, in...)
	st := mustStats(t, s)
	if st.Ready.Segments != 1 || st.Ready.Messages != 3 {
		t.Fatalf("ready = %+v, want 1 segment of 3 messages", st.Ready)
	}
	c := mustClaim(t, s)
	if c.Attempt != 1 {
		t.Errorf("Attempt = %d, want 1", c.Attempt)
	}
	if len(c.Messages) != 3 {
		t.Fatalf("got %d messages, want 3", len(c.Messages))
	}
	for i := range in {
		got, want := c.Messages[i], in[i]
		if got.ID != want.ID || got.SenderID != want.SenderID || got.Value != want.Value || !got.ReceivedAt.Equal(want.ReceivedAt) || got.Stamp != want.Stamp {
			t.Errorf("message %d: got %+v, want %+v", i, got, want)
		}
	}
	if c.Messages[0].Properties["unit"] != "kWh" {
		t.Errorf("properties lost: %v", c.Messages[0].Properties)
	}
	if st := mustStats(t, s); st.Claimed.Messages != 3 || st.Ready.Segments != 0 {
		t.Fatalf("after claim: %+v", st)
	}
	if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
		t.Fatalf("second Claim: got %v, want ErrEmpty", err)
	}
	if err := s.Ack(ctx, c); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if st := mustStats(t, s); !reflect.DeepEqual(st, spool.Stats{}) {
		t.Fatalf("after ack: %+v, want empty", st)
	}
	if err := s.Ack(ctx, c); !errors.Is(err, spool.ErrLostClaim) {
		t.Fatalf("second Ack: got %v, want ErrLostClaim", err)
	}
}

// TestConsumerRoleCreatesNoOpenSegment: a forwarder-only process appends nothing, so it must not
// keep an open segment (a file a reaper elsewhere would one day recover) or a committer; and a
// writer beside it, on the same directory, keeps exactly its own.
func TestConsumerRoleCreatesNoOpenSegment(t *testing.T) {
	dir := t.TempDir()
	c := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer, ScanInterval: 10 * time.Millisecond})
	time.Sleep(100 * time.Millisecond) // long enough for a preparer to have made its spare
	if files := dirFiles(t, dir, "open"); len(files) != 0 {
		t.Fatalf("a consumer created %v in open/", files)
	}
	if err := c.Append(context.Background(), msgs(1, 10)...); !errors.Is(err, spool.ErrReadOnly) {
		t.Fatalf("Append on a consumer: %v, want ErrReadOnly", err)
	}

	w := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleWriter})
	mustAppend(t, w, msgs(1, 10)...)
	for _, f := range dirFiles(t, dir, "open") {
		if !strings.Contains(f, w.Writer()) {
			t.Fatalf("open/%s is not the writer's (%s)", f, w.Writer())
		}
	}
	if files := dirFiles(t, dir, "open"); len(files) == 0 {
		t.Fatal("the writer has no open segment after an append")
	}
}

func TestAppendErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		open func(t *testing.T) *spool.Spool
		want error
	}{
		{"closed", func(t *testing.T) *spool.Spool {
			s := mustOpenSpool(t, "", spool.Options{})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return s
		}, spool.ErrClosed},
		{"read only", func(t *testing.T) *spool.Spool {
			dir := t.TempDir()
			_ = mustOpenSpool(t, dir, spool.Options{}).Close()
			return mustOpenSpool(t, dir, spool.Options{Inspect: true})
		}, spool.ErrReadOnly},
		{"max bytes", func(t *testing.T) *spool.Spool {
			s := mustOpenSpool(t, "", spool.Options{MaxBytes: 1000})
			mustAppend(t, s, msgs(1, 500)...)
			return s
		}, spool.ErrFull},
		{"min free bytes", func(t *testing.T) *spool.Spool {
			return mustOpenSpool(t, "", spool.Options{MinFreeBytes: 1 << 62})
		}, spool.ErrFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.open(t)
			before := mustStatsMaybe(s)
			err := s.Append(ctx, msgs(1, 600)...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if after := mustStatsMaybe(s); after.Ready != before.Ready {
				t.Fatalf("a failed Append changed ready: %+v → %+v", before.Ready, after.Ready)
			}
		})
	}
	t.Run("empty append", func(t *testing.T) {
		s := mustOpenSpool(t, "", spool.Options{})
		if err := s.Append(ctx); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		if st := mustStats(t, s); st.Ready.Segments != 0 {
			t.Fatalf("empty append wrote a segment: %+v", st)
		}
	})
}

func mustStatsMaybe(s *spool.Spool) spool.Stats {
	st, _ := s.Stats(context.Background())
	return st
}

func TestReadyReportsCapacity(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{MaxBytes: 2000})
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready on empty spool: %v", err)
	}
	mustAppend(t, s, msgs(1, 1900)...)
	if err := s.Ready(); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Ready past MaxBytes: got %v, want ErrFull", err)
	}
	c := mustClaim(t, s)
	if err := s.Ack(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return s.Ready() == nil }) // the next scan sees the space again
	_ = s.Close()
	if err := s.Ready(); !errors.Is(err, spool.ErrClosed) {
		t.Fatalf("Ready after Close: got %v, want ErrClosed", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	ctx := context.Background()
	const n = 200
	all := msgs(n, 64)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range all {
		wg.Go(func() { errs <- s.Append(ctx, all[i]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	c := s.Counters()
	if c.Messages != n {
		t.Fatalf("committed %d messages, want %d", c.Messages, n)
	}
	if c.Commits >= n {
		t.Errorf("%d commits for %d concurrent appends: no group commit", c.Commits, n)
	}
	t.Logf("%d concurrent appends → %d commits", n, c.Commits)
	mustSeal(t, s)
	if st := mustStats(t, s); st.Ready.Segments != 1 {
		t.Errorf("%d ready segments after sealing, want the one open segment all commits appended to", st.Ready.Segments)
	}
	if err := sameSet(drain(t, s), ids(all)); err != nil {
		t.Fatal(err)
	}
}

func TestAppendIsAllOrNothingInOneSegment(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{MaxSegmentBytes: 4096})
	in := msgs(50, 300) // ~16 KiB: larger than MaxSegmentBytes, still one segment
	mustAppend(t, s, in...)
	st := mustStats(t, s)
	if st.Ready.Segments != 1 || st.Ready.Messages != 50 {
		t.Fatalf("ready = %+v, want one segment of 50", st.Ready)
	}
}

func TestReleaseNotBeforeAndRenew(t *testing.T) {
	clk := newFakeClock()
	s := mustOpenSpool(t, "", spool.Options{Now: clk.Now, Lease: time.Minute})
	ctx := context.Background()
	mustAppend(t, s, msgs(2, 10)...)
	c := mustClaim(t, s)
	old := c.Deadline
	clk.Advance(10 * time.Second)
	if err := s.Renew(ctx, c); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if !c.Deadline.After(old) {
		t.Fatalf("Renew: deadline %v not after %v", c.Deadline, old)
	}
	if err := s.Release(ctx, c, clk.Now().Add(30*time.Second)); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
		t.Fatalf("Claim before not-before: got %v, want ErrEmpty", err)
	}
	clk.Advance(31 * time.Second)
	c2, err := s.Claim(ctx)
	if err != nil {
		t.Fatalf("Claim after not-before: %v", err)
	}
	if c2.Attempt != 2 || c2.ID != c.ID {
		t.Fatalf("got attempt %d of %s, want attempt 2 of %s", c2.Attempt, c2.ID, c.ID)
	}
	// The first claim object is stale now: every operation on it says so.
	if err := s.Renew(ctx, c); !errors.Is(err, spool.ErrLostClaim) {
		t.Errorf("Renew of a released claim: got %v, want ErrLostClaim", err)
	}
	if err := s.Release(ctx, c, time.Time{}); !errors.Is(err, spool.ErrLostClaim) {
		t.Errorf("Release of a released claim: got %v, want ErrLostClaim", err)
	}
	if err := s.DeadLetter(ctx, c, "x"); !errors.Is(err, spool.ErrLostClaim) {
		t.Errorf("DeadLetter of a released claim: got %v, want ErrLostClaim", err)
	}
	if err := s.Ack(ctx, c2); err != nil {
		t.Fatal(err)
	}
}

func TestDeadLetterAndRequeue(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	ctx := context.Background()
	in := msgs(4, 10)
	mustAppend(t, s, in...)
	c := mustClaim(t, s)
	if err := s.DeadLetter(ctx, c, "event hub rejected: message too large"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	dead, err := s.List(ctx, spool.StateDead)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead = %v, %v; want one", dead, err)
	}
	reason, err := s.Reason(ctx, dead[0])
	if err != nil || !strings.Contains(reason, "message too large") {
		t.Fatalf("reason = %q, %v", reason, err)
	}
	if err := s.Requeue(ctx, dead[0]); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	c = mustClaim(t, s)
	if c.Attempt != 1 {
		t.Errorf("after requeue attempt = %d, want 1 (reset)", c.Attempt)
	}
	if err := sameSet(ids(c.Messages), ids(in)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "dead")); len(entries) != 0 {
		t.Fatalf("dead/ not empty after requeue: %v", entries)
	}
}

func TestQuarantineByConsumer(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	ctx := context.Background()
	mustAppend(t, s, msgs(2, 10)...)
	c := mustClaim(t, s)
	if err := s.Quarantine(ctx, c, "payload is not what the sink expects"); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	q, err := s.List(ctx, spool.StateQuarantine)
	if err != nil || len(q) != 1 || q[0].Messages != 2 {
		t.Fatalf("quarantine = %+v, %v", q, err)
	}
	if r, _ := s.Reason(ctx, q[0]); !strings.Contains(r, "not what the sink expects") {
		t.Errorf("reason = %q", r)
	}
	// A retry finds the move made: it succeeds and keeps the first reason.
	if err := s.Quarantine(ctx, c, "again"); err != nil {
		t.Errorf("second Quarantine: got %v, want nil (already done)", err)
	}
	if r, _ := s.Reason(ctx, q[0]); !strings.Contains(r, "not what the sink expects") {
		t.Errorf("reason after retry = %q, want the first one kept", r)
	}
	// An operator may requeue it (spool quarantine requeue) once the cause is fixed.
	if err := s.Requeue(ctx, q[0]); err != nil {
		t.Fatalf("Requeue of a quarantined segment: %v", err)
	}
	if st := mustStats(t, s); st.Quarantine.Segments != 0 || st.Ready.Segments != 1 {
		t.Fatalf("after requeueing: %+v, want it back in ready/", st)
	}
	if r, _ := s.Reason(ctx, q[0]); r != "" {
		t.Errorf("reason after requeue = %q, want it removed", r)
	}
}

func TestMaxAttemptsDeadLetters(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{MaxAttempts: 3})
	ctx := context.Background()
	mustAppend(t, s, msgs(1, 10)...)
	for i := 1; i <= 3; i++ {
		c, err := s.Claim(ctx)
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		if err := s.Release(ctx, c, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
		t.Fatalf("4th claim: got %v, want ErrEmpty (dead-lettered)", err)
	}
	st := mustStats(t, s)
	if st.Dead.Messages != 1 {
		t.Fatalf("dead = %+v, want the poison message", st.Dead)
	}
	dead, _ := s.List(ctx, spool.StateDead)
	if r, _ := s.Reason(ctx, dead[0]); !strings.Contains(r, "3 delivery attempts") {
		t.Errorf("reason = %q", r)
	}
}

func TestSettleMixedOutcome(t *testing.T) {
	clk := newFakeClock()
	s := mustOpenSpool(t, "", spool.Options{Now: clk.Now})
	ctx := context.Background()
	in := msgs(6, 10)
	mustAppend(t, s, in...)
	c := mustClaim(t, s)
	// 0,1 delivered; 2,3 retry; 4,5 dead.
	o := spool.Outcome{Retry: c.Messages[2:4], NotBefore: clk.Now().Add(time.Second), Dead: c.Messages[4:6], Reason: "rejected"}
	if err := s.Settle(ctx, c, o); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	st := mustStats(t, s)
	if st.Ready.Messages != 2 || st.Dead.Messages != 2 || st.Claimed.Segments != 0 {
		t.Fatalf("after settle: %+v", st)
	}
	clk.Advance(2 * time.Second)
	r := mustClaim(t, s)
	if r.Attempt != 2 {
		t.Errorf("retry segment attempt = %d, want 2 (the count carries over)", r.Attempt)
	}
	if err := sameSet(ids(r.Messages), ids(in[2:4])); err != nil {
		t.Fatal(err)
	}
}

func TestSettleShortcuts(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		outcome func(c *spool.Claim) spool.Outcome
		want    func(st spool.Stats) bool
	}{
		{"all delivered acks", func(c *spool.Claim) spool.Outcome { return spool.Outcome{} },
			func(st spool.Stats) bool { return reflect.DeepEqual(st, spool.Stats{}) }},
		{"all retried releases", func(c *spool.Claim) spool.Outcome { return spool.Outcome{Retry: c.Messages} },
			func(st spool.Stats) bool { return st.Ready.Messages == 3 && st.Ready.Segments == 1 }},
		{"all dead dead-letters", func(c *spool.Claim) spool.Outcome { return spool.Outcome{Dead: c.Messages, Reason: "r"} },
			func(st spool.Stats) bool { return st.Dead.Messages == 3 && st.Dead.Segments == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustOpenSpool(t, "", spool.Options{})
			mustAppend(t, s, msgs(3, 10)...)
			c := mustClaim(t, s)
			if err := s.Settle(ctx, c, tt.outcome(c)); err != nil {
				t.Fatal(err)
			}
			if st := mustStats(t, s); !tt.want(st) {
				t.Fatalf("stats %+v not as expected", st)
			}
		})
	}
}

func TestClockSkewReclaimWaitsDeadlinePlusTwiceSkew(t *testing.T) {
	clk := newFakeClock()
	opts := spool.Options{Now: clk.Now, Lease: 10 * time.Second, SkewAllowance: time.Second}
	s := mustOpenSpool(t, "", opts)
	ctx := context.Background()
	mustAppend(t, s, msgs(1, 10)...)
	c := mustClaim(t, s)
	clk.Advance(11 * time.Second) // past the deadline, not past deadline + 2 × skew
	if rs, err := s.Reap(ctx); err != nil || rs.Reclaimed != 0 {
		t.Fatalf("Reap within the skew grace: %+v, %v; want nothing reclaimed", rs, err)
	}
	clk.Advance(time.Second + 100*time.Millisecond) // now past deadline + 2 s
	rs, err := s.Reap(ctx)
	if err != nil || rs.Reclaimed != 1 {
		t.Fatalf("Reap: %+v, %v; want one reclaimed", rs, err)
	}
	c2 := mustClaim(t, s)
	if c2.Attempt != 2 {
		t.Errorf("attempt = %d, want 2", c2.Attempt)
	}
	if err := s.Ack(ctx, c); !errors.Is(err, spool.ErrLostClaim) {
		t.Errorf("late Ack by the fenced owner: got %v, want ErrLostClaim", err)
	}
	if err := s.Ack(ctx, c2); err != nil {
		t.Fatal(err)
	}
}

func TestReaperDeadLettersExpiredLastAttempt(t *testing.T) {
	clk := newFakeClock()
	s := mustOpenSpool(t, "", spool.Options{Now: clk.Now, Lease: time.Second, SkewAllowance: 100 * time.Millisecond, MaxAttempts: 1})
	ctx := context.Background()
	mustAppend(t, s, msgs(1, 10)...)
	mustClaim(t, s)
	clk.Advance(2 * time.Second)
	rs, err := s.Reap(ctx)
	if err != nil || rs.DeadLettered != 1 {
		t.Fatalf("Reap: %+v, %v; want one dead-lettered", rs, err)
	}
}

func TestReaperCollectsOrphansOfDeadWritersOnly(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	opts := spool.Options{Now: clk.Now, OrphanAge: time.Minute, HeartbeatInterval: time.Hour}
	live := mustOpenSpool(t, dir, opts)
	dead := mustOpenSpool(t, dir, opts)
	// Leave one tmp file per writer, created now, as a crash mid-commit would.
	for _, w := range []string{live.Writer(), dead.Writer()} {
		name := filepath.Join(dir, "tmp", fmt.Sprintf("%012x-%s-%s-1-2.tmp", clk.Now().UnixMilli(), strings.Repeat("a", 26), w))
		if err := os.WriteFile(name, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := dead.Close(); err != nil { // its heartbeat goes
		t.Fatal(err)
	}
	reaper := mustOpenSpool(t, dir, opts)
	if rs, err := reaper.Reap(context.Background()); err != nil || rs.Orphans != 0 {
		t.Fatalf("Reap of fresh tmp files: %+v, %v; want none collected", rs, err)
	}
	clk.Advance(2 * time.Minute)
	rs, err := reaper.Reap(context.Background())
	if err != nil || rs.Orphans != 1 {
		t.Fatalf("Reap: %+v, %v; want exactly the dead writer's orphan", rs, err)
	}
	var planted []string
	entries, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-1-2.tmp") {
			planted = append(planted, e.Name())
		}
	}
	if len(planted) != 1 || !strings.Contains(planted[0], live.Writer()) {
		t.Fatalf("planted files left in tmp/: %v, want only the live writer's", planted)
	}
}

func TestOpenRefusesUnknownVersion(t *testing.T) {
	dir := t.TempDir()
	_ = mustOpenSpool(t, dir, spool.Options{}).Close()
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("bridgehead-spool 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, inspect := range []bool{false, true} {
		if _, err := spool.Open(dir, spool.Options{Inspect: inspect}); !errors.Is(err, spool.ErrUnknownVersion) {
			t.Errorf("Open(inspect=%v): got %v, want ErrUnknownVersion", inspect, err)
		}
	}
}

func TestOpenProbesClockSkew(t *testing.T) {
	skewed := func() time.Time { return time.Now().Add(time.Hour) }
	_, err := spool.Open(t.TempDir(), spool.Options{Now: skewed})
	if !errors.Is(err, spool.ErrProbe) || !strings.Contains(err.Error(), "clock skew") {
		t.Fatalf("got %v, want a clock-skew probe failure", err)
	}
}

func TestOpenValidatesOptions(t *testing.T) {
	for _, o := range []spool.Options{{MaxBytes: -1}, {MinFreeBytes: -1}, {Lease: -time.Second}, {MaxAttempts: -1}} {
		if _, err := spool.Open(t.TempDir(), o); err == nil {
			t.Errorf("Open(%+v): got nil error", o)
		}
	}
}

func TestInspectWithoutSpool(t *testing.T) {
	_, err := spool.Open(filepath.Join(t.TempDir(), "none"), spool.Options{Inspect: true})
	if !errors.Is(err, spool.ErrNoSpool) {
		t.Fatalf("got %v, want ErrNoSpool", err)
	}
}

func TestPurgeDead(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	ctx := context.Background()
	for range 3 {
		mustAppend(t, s, msgs(1, 10)...)
		c := mustClaim(t, s)
		if err := s.DeadLetter(ctx, c, "poison"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Purge(ctx, spool.StateDead, time.Now().Add(-time.Hour), nil); err != nil || n != 0 {
		t.Fatalf("Purge older than 1h: %d, %v; want 0", n, err)
	}
	if n, err := s.Purge(ctx, spool.StateDead, time.Now().Add(time.Second), nil); err != nil || n != 3 {
		t.Fatalf("Purge: %d, %v; want 3", n, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "dead")); len(entries) != 0 {
		t.Fatalf("dead/ = %v, want empty (reasons too)", entries)
	}
	if _, err := s.Purge(ctx, spool.StateReady, time.Now(), nil); err == nil {
		t.Fatal("Purge of ready/ (live messages): got nil error")
	}
}

func TestCloseFinishesInFlightCommits(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{})
	ctx := context.Background()
	all := msgs(300, 100)
	var mu sync.Mutex
	var acked []uuid.UUID
	var wg sync.WaitGroup
	for i := range all {
		wg.Go(func() {
			err := s.Append(ctx, all[i])
			switch {
			case err == nil:
				mu.Lock()
				acked = append(acked, all[i].ID)
				mu.Unlock()
			case !errors.Is(err, spool.ErrClosed):
				t.Errorf("Append: %v", err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	r := mustOpenSpool(t, dir, spool.Options{})
	got := drain(t, r)
	if err := sameSet(got, acked); err != nil {
		t.Fatalf("after Close: %v (%d acked, %d on disk)", err, len(acked), len(got))
	}
}

func TestStatsOldestAge(t *testing.T) {
	clk := newFakeClock()
	s := mustOpenSpool(t, "", spool.Options{Now: clk.Now})
	mustAppend(t, s, msgs(1, 10)...)
	clk.Advance(90 * time.Second)
	st := mustStats(t, s)
	if st.OldestAgeSeconds < 89 || st.OldestAgeSeconds > 91 {
		t.Fatalf("OldestAgeSeconds = %v, want ~90", st.OldestAgeSeconds)
	}
}

func TestForeignFilesAreIgnored(t *testing.T) {
	s := mustOpenSpool(t, "", spool.Options{})
	for _, name := range []string{".nfs000000000123", "README", "x.a1", "UPPER.a0"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), "ready", name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Claim(context.Background()); !errors.Is(err, spool.ErrEmpty) {
		t.Fatalf("Claim: got %v, want ErrEmpty", err)
	}
	if st := mustStats(t, s); st.Ready.Segments != 0 {
		t.Fatalf("foreign files counted: %+v", st)
	}
}

// TestConcurrentClaimersInOneProcessNeverShareASegment: goroutines of one process claiming at
// once never both get a segment: neither when each refreshes the listing on every pick (so a
// segment one of them is renaming is still listed for the others), nor with the listing cached
// for a second as in production (so a segment claimed meanwhile is still offered afterwards, and
// another goroutine's rename of it fails with ENOENT while the claimed name it would have used
// is already there, made by the first claim within the same millisecond).
func TestConcurrentClaimersInOneProcessNeverShareASegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		scan time.Duration
	}{{"fresh listing on every pick", time.Nanosecond}, {"listing cached across claims", 20 * time.Microsecond}} {
		t.Run(tc.name, func(t *testing.T) {
			ffs := fsys.NewFaulty(fsys.OS{})
			// A clock that creeps a microsecond a reading gives claims close together the same
			// deadline millisecond, as real claims within one millisecond have.
			// It keeps to real time otherwise: the heartbeat measures the skew against the file
			// system's mtimes.
			var clockMu sync.Mutex
			var last time.Time
			creep := func() time.Time {
				clockMu.Lock()
				defer clockMu.Unlock()
				last = last.Add(time.Microsecond)
				if now := time.Now(); now.After(last) {
					last = now
				}
				return last
			}
			s := mustOpenSpool(t, "", spool.Options{FS: ffs, Now: creep, ScanInterval: tc.scan})
			// A slow claim rename keeps each segment listed in ready/ while it is being claimed.
			ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/claimed/", Delay: 2 * time.Millisecond})
			ctx := context.Background()
			var all []uuid.UUID
			for range 200 {
				in := msgs(1, 10)
				mustAppend(t, s, in...)
				all = append(all, ids(in)...)
			}
			var mu sync.Mutex
			var got []uuid.UUID
			var lost int
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						c, err := s.Claim(ctx)
						if errors.Is(err, spool.ErrEmpty) {
							return
						}
						if err != nil {
							t.Errorf("Claim: %v", err)
							return
						}
						time.Sleep(3 * time.Millisecond) // sending: the claim stays in claimed/ meanwhile
						err = s.Ack(ctx, c)
						mu.Lock()
						got = append(got, ids(c.Messages)...)
						if err != nil {
							lost++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if lost > 0 || len(got) != len(all) {
				t.Fatalf("%d deliveries of %d messages, %d acks found the claim gone: a segment was claimed twice", len(got), len(all), lost)
			}
			if err := sameSet(got, all); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFullSaysWhatOnlyAnOperatorFrees: when dead letters and quarantine hold much of a full
// spool, the refusal says so, since no forwarder will ever free those bytes.
func TestFullSaysWhatOnlyAnOperatorFrees(t *testing.T) {
	ctx := context.Background()
	s := mustOpenSpool(t, "", spool.Options{MaxBytes: 2000, ScanInterval: time.Millisecond})
	mustAppend(t, s, msgs(3, 400)...)
	mustSeal(t, s)
	c := mustClaim(t, s)
	if err := s.DeadLetter(ctx, c, "refused by the sink"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a scan or two
	err := s.Append(ctx, msgs(3, 400)...)
	if !errors.Is(err, spool.ErrFull) || !strings.Contains(err.Error(), "dead letters") || !strings.Contains(err.Error(), "spool quarantine ls") {
		t.Fatalf("Append to a spool full of dead letters: %v, want ErrFull naming them", err)
	}
}
