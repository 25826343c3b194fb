package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// maintain runs in the background while the spool is open: capacity scans and, when
// ReapInterval is set, the reaper. Heartbeats have their own goroutine (heartbeatLoop): a long
// reap on a slow share must not let the writer's lease run out.
func (s *Spool) maintain() {
	defer s.wg.Done()
	scan := time.NewTicker(s.opts.ScanInterval)
	defer scan.Stop()
	var reap <-chan time.Time
	if s.opts.ReapInterval > 0 {
		t := time.NewTicker(s.opts.ReapInterval)
		defer t.Stop()
		reap = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-scan.C:
			s.scan()
		case <-reap:
			if _, err := s.Reap(context.Background()); err != nil {
				s.log.Error("reaper", "err", err)
			}
		}
	}
}

// heartbeatLoop renews the heartbeat, and with it the writer's lease, every HeartbeatInterval.
func (s *Spool) heartbeatLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.heartbeat(); err != nil {
				s.log.Error("heartbeat failed", "err", err)
			}
		}
	}
}

// heartbeat rewrites hb/<writer>: its mtime (set by the file server) tells other processes this
// writer is alive, so they leave its open segments and tmp/ files alone. It needs no fsync: a
// heartbeat lost in a crash belongs to a process that is gone. It renews the writer's lease
// (lease.go) and measures the clock skew against the file server from the file's mtime.
func (s *Spool) heartbeat() error {
	err := s.beat()
	s.mu.Lock()
	s.hbErr = err
	s.mu.Unlock()
	return err
}

func (s *Spool) beat() error {
	// The lease runs on the monotonic clock (time.Now), whatever Options.Now says; the skew is
	// between the wall clocks (Options.Now's and the file server's).
	began := time.Now()
	start := s.now()
	tmp := s.path(dirTmp, tmpName(start, s.writer, "hb"))
	f, err := s.fs.CreateExcl(tmp)
	if err != nil {
		return err
	}
	body := fmt.Sprintf("instance=%s pid=%d at=%s\n", s.opts.Instance, os.Getpid(), start.UTC().Format(time.RFC3339Nano))
	_, werr := f.Write([]byte(body))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil && !fsys.IsNoSpace(werr) {
		// An empty heartbeat still carries its mtime: only a full file system lets it through.
		_ = s.fs.Remove(tmp)
		return werr
	}
	fi, serr := s.fs.Stat(tmp)
	if err := s.fs.Rename(tmp, s.path(dirHeartbeat, s.writer)); err != nil {
		_ = s.fs.Remove(tmp)
		return err
	}
	end, ended := s.now(), time.Now()
	if serr == nil {
		skew := skewOf(fi.ModTime(), start, end)
		s.lease.measured(skew, s.opts.SkewAllowance)
		if skew > s.opts.SkewAllowance {
			s.log.Error("clock skew against the file server exceeds the allowance: appends refused until it is fixed", "skew", skew, "allowance", s.opts.SkewAllowance)
		}
	}
	if s.lease.renewed(began, ended, s.opts.WriterLease, s.opts.SkewAllowance) {
		s.log.Error("writer lease lapsed (this process was paused or its heartbeats failed): open segments abandoned to recovery", "lease", s.opts.WriterLease)
	}
	return nil
}

// skewOf is how far a file's mtime, set by the file server's clock while we wrote it, falls
// outside our clock's readings before the write and after the stat (the time the write itself
// took is not skew).
func skewOf(mtime, before, after time.Time) time.Duration {
	switch {
	case mtime.Before(before):
		return before.Sub(mtime)
	case mtime.After(after):
		return mtime.Sub(after)
	}
	return 0
}

// scan refreshes the capacity figures from listings and statfs. Between scans, other processes'
// appends are not seen: the byte cap is enforced to within one ScanInterval of their traffic.
func (s *Spool) scan() {
	st, err := s.Stats(context.Background())
	var used int64
	if err == nil {
		used = st.Ready.Bytes + st.Claimed.Bytes + st.Dead.Bytes + st.Quarantine.Bytes
	}
	info, ferr := s.fs.Statfs(s.root)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.scanErr = err
		return
	}
	s.usedBytes = used + st.Open.Bytes + st.Recovering.Bytes
	s.lastStats = st
	if ferr != nil {
		s.scanErr = ferr
		s.freeBytes = -1
		return
	}
	s.scanErr = nil
	s.freeBytes = int64(min(info.FreeBytes, 1<<62))
}

// LastStats returns the spool's content as of the last scan (at Open and every ScanInterval):
// for metrics and gauges, which should not list the directories again each time they are read
// (a READDIR per state on a network share). A spool opened with Inspect never scans: zero.
func (s *Spool) LastStats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastStats
}

// Ready reports whether Append can be expected to succeed: the spool is open, the last scan
// worked, and capacity remains (for at least the last append refused for lack of it). It is what
// a readiness probe asks.
func (s *Spool) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.scanErr != nil {
		return fmt.Errorf("%w: %w", ErrUnwritable, s.scanErr)
	}
	// At the highest priority: while the reserve still takes alarms, the stamp is ready for
	// them, though it refuses lower priorities.
	if err := s.capacityLocked(s.refusedBytes, 0); err != nil {
		return err
	}
	if s.w == nil {
		return nil
	}
	if _, err := s.lease.check(); err != nil {
		if s.hbErr != nil {
			return fmt.Errorf("%w: %w; last heartbeat: %w", classify(s.hbErr), err, s.hbErr)
		}
		return fmt.Errorf("%w: %w", ErrUnwritable, err)
	}
	return nil
}

// ReapStats counts what one Reap did.
type ReapStats struct {
	// Reclaimed claims whose lease expired went back to ready/.
	Reclaimed int
	// DeadLettered segments had used all their attempts.
	DeadLettered int
	// Orphans are tmp/ files of dead writers that were removed.
	Orphans int
	// Recovered open segments of dead writers, holding records, were re-published into ready/
	// (empty ones, created ahead and never written, are removed without a count).
	Recovered int
	// Heartbeats of writers dead for OrphanAge were removed from hb/.
	Heartbeats int
}

// Reap returns expired claims to ready/ (only after deadline + 2 × SkewAllowance, so a live owner
// whose clock runs behind is never robbed), dead-letters segments out of attempts, recovers the
// open segments of writers whose lease ran out (recover.go), and removes tmp/ files and
// heartbeats left by writers that died more than OrphanAge ago.
// Every forwarder runs it; several reapers at once are safe (each move is a rename from an exact
// name, and only one wins).
func (s *Spool) Reap(ctx context.Context) (ReapStats, error) {
	var rs ReapStats
	now := s.now()
	names, err := s.fs.ReadDir(s.path(dirClaimed))
	if err != nil {
		return rs, fmt.Errorf("list claimed: %w", err)
	}
	grace := 2 * s.opts.SkewAllowance
	for _, e := range names {
		if ctx.Err() != nil {
			return rs, ctx.Err()
		}
		n, ok := parseName(dirClaimed, e)
		if !ok || !now.After(n.Deadline.Add(grace)) {
			continue
		}
		from := s.path(dirClaimed, e)
		if n.Attempt >= s.opts.MaxAttempts {
			reason := fmt.Sprintf("lease expired on attempt %d of %d (consumer died or hung)", n.Attempt, s.opts.MaxAttempts)
			if err := s.settleFile(from, dirDead, n, reason); err == nil {
				rs.DeadLettered++
			} else if !fsys.IsNotExist(err) {
				s.log.Error("dead-letter expired claim", "segment", e, "err", err)
			}
			continue
		}
		back := n
		back.Owner, back.Deadline = "", time.Time{}
		if err := s.renameResolved(from, s.path(dirReady, back.ready())); err != nil {
			if !fsys.IsNotExist(err) {
				s.log.Error("reclaim expired claim", "segment", e, "err", err)
			}
			continue
		}
		s.log.Warn("reclaimed expired claim", "segment", n.segBase.String(), "owner", n.Owner, "attempt", n.Attempt, "deadline", n.Deadline)
		rs.Reclaimed++
	}
	recovered, rerr := s.recoverDead(ctx, now)
	rs.Recovered = recovered
	orphans, err := s.collectOrphans(now)
	rs.Orphans = orphans
	beats, herr := s.collectHeartbeats(now)
	rs.Heartbeats = beats
	return rs, errors.Join(rerr, err, herr)
}

// collectHeartbeats removes the hb/ files (and startup probes' leftovers) of processes silent for
// OrphanAge: a crash-looping pod leaves one per incarnation. Without its heartbeat, a writer's
// leftovers are taken at once, which is what its silence already allowed.
func (s *Spool) collectHeartbeats(now time.Time) (int, error) {
	names, err := s.fs.ReadDir(s.path(dirHeartbeat))
	if err != nil {
		return 0, fmt.Errorf("list hb: %w", err)
	}
	removed := 0
	for _, e := range names {
		w := strings.TrimPrefix(e, "probe-")
		if w == s.writer || len(w) != writerWidth || !isB32(w) {
			continue
		}
		fi, err := s.fs.Stat(s.path(dirHeartbeat, e))
		if err != nil || now.Sub(fi.ModTime()) < s.opts.OrphanAge {
			continue
		}
		if err := s.fs.Remove(s.path(dirHeartbeat, e)); err != nil && !fsys.IsNotExist(err) {
			s.log.Error("remove stale heartbeat", "file", e, "err", err)
			continue
		}
		removed++
	}
	return removed, nil
}

// collectOrphans removes tmp/ files whose writer's heartbeat is stale and that are older than
// OrphanAge. Age comes from the name, not atime or mtime (unreliable on network file systems).
func (s *Spool) collectOrphans(now time.Time) (int, error) {
	names, err := s.fs.ReadDir(s.path(dirTmp))
	if err != nil {
		return 0, fmt.Errorf("list tmp: %w", err)
	}
	alive := map[string]bool{}
	removed := 0
	for _, e := range names {
		created, writer, ok := parseTmp(e)
		if !ok || writer == s.writer || now.Sub(created) < s.opts.OrphanAge {
			continue
		}
		live, seen := alive[writer]
		if !seen {
			live = s.writerAlive(writer, now)
			alive[writer] = live
		}
		if live {
			continue
		}
		if err := s.fs.Remove(s.path(dirTmp, e)); err != nil && !fsys.IsNotExist(err) {
			s.log.Error("remove orphan", "file", e, "err", err)
			continue
		}
		removed++
	}
	return removed, nil
}

// writerAlive reports whether hb/<writer> was refreshed within three heartbeat intervals (plus
// the skew allowance, since the mtime is the server's clock).
func (s *Spool) writerAlive(writer string, now time.Time) bool {
	fi, err := s.fs.Stat(s.path(dirHeartbeat, writer))
	if err != nil {
		return false
	}
	return now.Sub(fi.ModTime()) < 3*s.opts.HeartbeatInterval+s.opts.SkewAllowance
}
