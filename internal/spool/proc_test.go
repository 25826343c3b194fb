package spool_test

// Tests with real operating-system processes: the test binary re-executes itself as appenders
// and claimers sharing one spool directory, and some of them are killed with SIGKILL.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/google/uuid"
)

const childEnv = "BRIDGEHEAD_SPOOL_TEST_CHILD"

// TestChildProcess is not a test: it is the body of the child processes the tests below start.
func TestChildProcess(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		t.Skip("helper process body; runs only when started by another test")
	}
	err := runChild(role, os.Getenv("SPOOL_DIR"), os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// runChild runs one child role, writing one line per event to out:
//
//	append:  "ok <id>" after each successful Append, "fail <id>" after each failed one (COUNT
//	         messages, or forever if 0)
//	stdin:   one Append per line read from stdin, printing as append does
//	claim:   "acked <id>" for each message of a segment after its Ack; stops when the file
//	         DONE_FILE exists and nothing is left
//	hold:    claims HOLD segments, prints "delivered <id>" for each message (as if sent), acks
//	         ACK of them, prints "holding" and waits to be killed
func runChild(role, dir string, out io.Writer) error {
	opts := spool.Options{
		Lease:             envDur("LEASE", spool.DefaultLease),
		SkewAllowance:     envDur("SKEW", spool.DefaultSkewAllowance),
		HeartbeatInterval: envDur("HEARTBEAT", spool.DefaultHeartbeatInterval),
		WriterLease:       envDur("WRITER_LEASE", 0),
	}
	s, err := spool.Open(dir, opts)
	if err != nil {
		return err
	}
	w := &lineWriter{w: out}
	ctx := context.Background()
	switch role {
	case "append":
		count, workers := envInt("COUNT", 0), envInt("WORKERS", 16)
		var next, failed int64
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					mu.Lock()
					if count > 0 && next >= int64(count) {
						mu.Unlock()
						return
					}
					next++
					mu.Unlock()
					m := message.Message{ID: uuid.New(), SenderID: "child", Value: strings.Repeat("v", 200), ReceivedAt: time.Now()}
					if err := s.Append(ctx, m); err != nil {
						mu.Lock()
						failed++
						mu.Unlock()
						w.line("fail " + m.ID.String())
						continue
					}
					w.line("ok " + m.ID.String())
				}
			})
		}
		wg.Wait()
		if failed > 0 {
			return fmt.Errorf("%d appends failed", failed)
		}
		return s.Close()
	case "stdin":
		// One Append per line read, from one goroutine: an idle writer until told to write.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			m := message.Message{ID: uuid.New(), SenderID: "child", Value: sc.Text(), ReceivedAt: time.Now()}
			if err := s.Append(ctx, m); err != nil {
				w.line("fail " + m.ID.String())
				continue
			}
			w.line("ok " + m.ID.String())
		}
		return s.Close()
	case "claim":
		done := os.Getenv("DONE_FILE")
		for {
			c, err := s.Claim(ctx)
			if errors.Is(err, spool.ErrEmpty) {
				if _, serr := os.Stat(done); serr == nil {
					if st, _ := s.Stats(ctx); st.Ready.Segments == 0 && st.Claimed.Segments == 0 {
						return s.Close()
					}
				}
				time.Sleep(2 * time.Millisecond) // idle poll of a shared directory
				continue
			}
			if err != nil {
				return err
			}
			if err := s.Ack(ctx, c); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
			for _, m := range c.Messages {
				w.line("acked " + m.ID.String())
			}
		}
	case "hold":
		hold, ack := envInt("HOLD", 4), envInt("ACK", 1)
		for i := 0; i < hold; i++ {
			c, err := s.Claim(ctx)
			if err != nil {
				return err
			}
			for _, m := range c.Messages {
				w.line("delivered " + m.ID.String())
			}
			if i < ack {
				if err := s.Ack(ctx, c); err != nil {
					return err
				}
			}
		}
		w.line("holding")
		select {}
	}
	return fmt.Errorf("unknown role %q", role)
}

// lineWriter writes whole lines atomically from many goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s+"\n")
}

// child is a started child process and the lines it printed.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	lines []string
	seen  chan string // every line, for waiting on a particular one; never blocks the reader
	done  chan struct{}
	err   error
}

func startChild(t *testing.T, role, dir string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + role, "SPOOL_DIR=" + dir}, env...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, seen: make(chan string, 1<<16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
			select {
			case c.seen <- sc.Text():
			default:
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitLine waits until the child prints a line with prefix, or fails after d.
func (c *child) waitLine(t *testing.T, prefix string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l := <-c.seen:
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-c.done:
			t.Fatalf("child exited (%v) before printing %q", c.err, prefix)
		case <-timeout:
			t.Fatalf("child did not print %q within %v", prefix, d)
		}
	}
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

func (c *child) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-c.done:
		if c.err != nil {
			t.Fatalf("child: %v", c.err)
		}
	case <-time.After(d):
		t.Fatalf("child did not finish within %v", d)
	}
}

// ids returns the ids on the child's lines that start with prefix.
func (c *child) ids(t *testing.T, prefix string) []uuid.UUID {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uuid.UUID
	for _, l := range c.lines {
		if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
			id, err := uuid.Parse(rest)
			if err != nil {
				t.Fatalf("bad line %q", l)
			}
			out = append(out, id)
		}
	}
	return out
}

func TestProcessesShareOneSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	const appenders, claimers, total = 4, 4, 50_000
	dir := filepath.Join(t.TempDir(), "spool")
	done := filepath.Join(t.TempDir(), "appenders-done")
	start := time.Now()
	var apps, cls []*child
	for range appenders {
		apps = append(apps, startChild(t, "append", dir, "COUNT="+strconv.Itoa(total/appenders), "WORKERS=32"))
	}
	for range claimers {
		cls = append(cls, startChild(t, "claim", dir, "DONE_FILE="+done))
	}
	var appended []uuid.UUID
	for _, a := range apps {
		a.wait(t, 3*time.Minute)
		appended = append(appended, a.ids(t, "ok")...)
	}
	if len(appended) != total {
		t.Fatalf("appenders acknowledged %d messages, want %d", len(appended), total)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	count := map[uuid.UUID]int{}
	for i, c := range cls {
		c.wait(t, 3*time.Minute)
		got := c.ids(t, "acked")
		t.Logf("claimer %d acked %d messages", i, len(got))
		for _, id := range got {
			count[id]++
		}
	}
	for _, id := range appended {
		switch count[id] {
		case 1:
		case 0:
			t.Fatalf("message %s was appended but never acked", id)
		default:
			t.Fatalf("message %s was acked %d times", id, count[id])
		}
		delete(count, id)
	}
	if len(count) != 0 {
		t.Fatalf("%d acked messages were never appended", len(count))
	}
	s := mustOpenSpool(t, dir, spool.Options{})
	if st := mustStats(t, s); !reflect.DeepEqual(st, spool.Stats{}) {
		t.Fatalf("spool not empty at the end: %+v", st)
	}
	t.Logf("%d appenders + %d claimers, %d messages: each acked exactly once, in %v", appenders, claimers, total, time.Since(start).Round(time.Millisecond))
}

func TestAppenderKilledMidCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const kills = 32
	dir := filepath.Join(t.TempDir(), "spool")
	env := []string{"HEARTBEAT=50ms", "WRITER_LEASE=300ms", "SKEW=100ms", "WORKERS=16"}
	var acked []uuid.UUID
	for i := range kills {
		c := startChild(t, "append", dir, env...)
		c.waitLine(t, "ok", 30*time.Second)                         // under load before the kill
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond) // a random moment of the load
		c.kill(t)
		got := c.ids(t, "ok")
		acked = append(acked, got...)
		if testing.Verbose() && i%8 == 0 {
			t.Logf("kill %d: %d acked so far", i, len(acked))
		}
	}
	orphans, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	openLeft, _ := os.ReadDir(filepath.Join(dir, "open"))
	// Recovery: a new process, its reaper re-publishing the dead writers' open segments once
	// their leases ran out, and collecting their leftovers.
	s := mustOpenSpool(t, dir, spool.Options{HeartbeatInterval: 50 * time.Millisecond, WriterLease: 300 * time.Millisecond, SkewAllowance: 100 * time.Millisecond, OrphanAge: time.Millisecond})
	checked, damaged, err := s.Verify(context.Background(), nil)
	if err != nil || len(damaged) != 0 {
		t.Fatalf("Verify after %d kills: %v; damaged: %v (a partial segment was visible)", kills, err, damaged)
	}
	recovered := 0
	waitFor(t, 10*time.Second, func() bool {
		rs, err := s.Reap(context.Background())
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		recovered += rs.Recovered
		for _, d := range []string{"tmp", "open", "recovering", "hb"} {
			left, _ := os.ReadDir(filepath.Join(dir, d))
			for _, e := range left {
				if !strings.Contains(e.Name(), s.Writer()) { // the survivor's own files stay
					return false
				}
			}
		}
		return true
	})
	present := map[uuid.UUID]bool{}
	for _, id := range drain(t, s) {
		present[id] = true
	}
	for _, id := range acked {
		if !present[id] {
			t.Fatalf("message %s: Append returned success before the kill, but it is gone", id)
		}
	}
	t.Logf("%d kills: %d acked appends all present (%d segments checked whole before recovery, %d open segments recovered); %d extra (committed, reply lost to the kill); %d files left in tmp/ and %d in open/ by the kills, all collected",
		kills, len(acked), checked, recovered, len(present)-len(acked), len(orphans), len(openLeft))
}

func TestClaimerKilledHoldingClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const lease, skew = 500 * time.Millisecond, 100 * time.Millisecond
	dir := filepath.Join(t.TempDir(), "spool")
	s := mustOpenSpool(t, dir, spool.Options{Lease: lease, SkewAllowance: skew})
	var all []uuid.UUID
	for range 10 {
		in := msgs(50, 100)
		mustAppend(t, s, in...) // a segment each
		all = append(all, ids(in)...)
	}
	c := startChild(t, "hold", dir, "LEASE="+lease.String(), "SKEW="+skew.String(), "HOLD=4", "ACK=1")
	c.waitLine(t, "holding", 30*time.Second)
	c.kill(t)
	killedAt := time.Now()
	deliveredByChild := c.ids(t, "delivered")

	// The survivor drains, its reaper returning the dead claimer's segments after the lease.
	count := map[uuid.UUID]int{}
	for _, id := range deliveredByChild {
		count[id]++
	}
	var firstReclaim time.Time
	waitFor(t, 20*time.Second, func() bool {
		rs, err := s.Reap(context.Background())
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		if rs.Reclaimed > 0 && firstReclaim.IsZero() {
			firstReclaim = time.Now()
		}
		for _, id := range drain(t, s) {
			count[id]++
		}
		st := mustStats(t, s)
		return st.Ready.Segments == 0 && st.Claimed.Segments == 0
	})
	if d := firstReclaim.Sub(killedAt); firstReclaim.IsZero() || d < lease-200*time.Millisecond {
		t.Fatalf("first reclaim %v after the kill; the lease was %v (+2×%v skew)", d, lease, skew)
	}
	dups := 0
	for _, id := range all {
		switch n := count[id]; {
		case n == 0:
			t.Fatalf("message %s was never delivered", id)
		case n > 1:
			dups += n - 1
		}
	}
	if dups != 150 { // three held segments of 50, delivered by the child and again after reclaim
		t.Errorf("duplicates = %d, want 150 (the three held, unacked segments)", dups)
	}
	t.Logf("claimer killed holding 3 claims: all %d messages delivered; %d duplicates (the held segments, delivered before the kill and again after the lease)", len(all), dups)
}

// TestPausedWriterNeverAcknowledgesIntoARecoveredSegment: a writer stopped with SIGSTOP under
// load past its lease has its open segment recovered by another process; resumed with SIGCONT,
// it must not acknowledge the commit it was in (its fdatasync returned after the lease), must
// never write into the recovered file again, and must go back to work. Every message it
// acknowledged, before or after the pause, is delivered.
func TestPausedWriterNeverAcknowledgesIntoARecoveredSegment(t *testing.T) {
	if testing.Short() {
		t.Skip("process test skipped in -short mode")
	}
	const hb, lease, skew = 50 * time.Millisecond, 400 * time.Millisecond, 100 * time.Millisecond
	dir := filepath.Join(t.TempDir(), "spool")
	w := startChild(t, "append", dir, "HEARTBEAT="+hb.String(), "WRITER_LEASE="+lease.String(), "SKEW="+skew.String(), "WORKERS=8")
	w.waitLine(t, "ok", 30*time.Second)
	time.Sleep(20 * time.Millisecond) // under load: a commit is in flight at the stop
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	okBefore := w.count("ok")

	// Another process recovers the stopped writer's open segment once its lease is over.
	s := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer, HeartbeatInterval: hb, WriterLease: lease, SkewAllowance: skew})
	recovered := 0
	waitFor(t, 10*time.Second, func() bool {
		rs, err := s.Reap(context.Background())
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		recovered += rs.Recovered
		return recovered > 0
	})
	if d := time.Since(stoppedAt); d < lease {
		t.Fatalf("recovered %v after the stop, before the lease of %v ran out", d, lease)
	}
	delivered := map[uuid.UUID]bool{}
	for _, id := range drain(t, s) {
		delivered[id] = true
	}

	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The resumed writer fails what it was committing, then works again in a new epoch.
	waitFor(t, 20*time.Second, func() bool { return w.count("ok") > okBefore+100 })
	w.kill(t)
	failed := w.count("fail")

	// Its later segments (sealed, or open and recovered once its lease is over) are delivered.
	waitFor(t, 20*time.Second, func() bool {
		if _, err := s.Reap(context.Background()); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		for _, id := range drain(t, s) {
			delivered[id] = true
		}
		st := mustStats(t, s)
		return st.Undelivered() == 0
	})
	acked := w.ids(t, "ok")
	for _, id := range acked {
		if !delivered[id] {
			t.Fatalf("message %s was acknowledged but is lost: acknowledged into a segment another process had recovered?", id)
		}
	}
	t.Logf("writer stopped %v; its open segment recovered by another process; after SIGCONT %d appends failed (the commit in flight, and while the lease was re-established), %d acknowledged before the stop, %d in all, every one delivered",
		lease, failed, okBefore, len(acked))
}

// TestIdleThenPausedWriterNeverAcknowledgesIntoARemovedFile: a writer that sat idle (its open
// segment sealed, the next one created ahead and empty) and was then stopped past its lease has
// that empty file recovered (removed) by another process. Resumed, its next appends must not be
// acknowledged into the removed file: they fail until the lease is back, then go into a new one.
func TestIdleThenPausedWriterNeverAcknowledgesIntoARemovedFile(t *testing.T) {
	if testing.Short() {
		t.Skip("process test skipped in -short mode")
	}
	const hb, lease, skew = 50 * time.Millisecond, 400 * time.Millisecond, 100 * time.Millisecond
	dir := filepath.Join(t.TempDir(), "spool")
	w := startChild(t, "stdin", dir, "HEARTBEAT="+hb.String(), "WRITER_LEASE="+lease.String(), "SKEW="+skew.String())
	send := func(n int) {
		for range n {
			if _, err := io.WriteString(w.stdin, "reading\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(5)
	waitFor(t, 10*time.Second, func() bool { return w.count("ok") == 5 })
	// Idle: the open segment is sealed within SealAfter, and the next one waits empty in open/.
	s := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer, HeartbeatInterval: hb, WriterLease: lease, SkewAllowance: skew})
	waitFor(t, 10*time.Second, func() bool { st := mustStats(t, s); return st.Ready.Messages == 5 && st.Open.Segments == 0 })
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		if _, err := s.Reap(context.Background()); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		return len(dirFiles(t, dir, "open")) == 0 // the empty file created ahead, removed
	})
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// A client that sends again after each answer, as one behind a 503's Retry-After would.
	for sent := 5; w.count("ok") < 5+50; {
		send(1)
		sent++
		waitFor(t, 10*time.Second, func() bool { return w.count("ok")+w.count("fail") == sent })
		if sent > 100_000 {
			t.Fatal("the resumed writer never acknowledged again")
		}
	}
	if err := w.stdin.Close(); err != nil { // the child closes its spool: seals and exits
		t.Fatal(err)
	}
	w.wait(t, 20*time.Second)
	delivered := map[uuid.UUID]bool{}
	for _, id := range drain(t, s) {
		delivered[id] = true
	}
	acked := w.ids(t, "ok")
	for _, id := range acked {
		if !delivered[id] {
			t.Fatalf("message %s was acknowledged after the pause but is lost: written into the file another process removed?", id)
		}
	}
	t.Logf("after the pause: %d appends failed while the lease was re-established, %d acknowledged, every one delivered", w.count("fail"), len(acked)-5)
}

// count returns how many of the child's lines start with prefix.
func (c *child) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix+" ") {
			n++
		}
	}
	return n
}
