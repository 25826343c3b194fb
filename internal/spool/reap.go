package spool

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// maintain runs in the background while the spool is open: heartbeats, capacity scans and, when
// ReapInterval is set, the reaper.
func (s *Spool) maintain() {
	defer s.wg.Done()
	hb := time.NewTicker(s.opts.HeartbeatInterval)
	defer hb.Stop()
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
		case <-hb.C:
			if err := s.heartbeat(); err != nil {
				s.log.Error("heartbeat failed", "err", err)
			}
		case <-scan.C:
			s.scan()
		case <-reap:
			if _, err := s.Reap(context.Background()); err != nil {
				s.log.Error("reaper", "err", err)
			}
		}
	}
}

// heartbeat rewrites hb/<writer>: its mtime (set by the file server) tells other processes this
// writer is alive, so they leave its tmp/ files alone. It needs no fsync: a lost heartbeat only
// delays orphan collection.
func (s *Spool) heartbeat() error {
	tmp := s.path(dirTmp, tmpName(s.now(), s.writer, "hb"))
	f, err := s.fs.CreateExcl(tmp)
	if err != nil {
		return err
	}
	body := fmt.Sprintf("instance=%s pid=%d at=%s\n", s.opts.Instance, os.Getpid(), s.now().UTC().Format(time.RFC3339Nano))
	_, werr := f.Write([]byte(body))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = s.fs.Remove(tmp)
		return werr
	}
	if err := s.fs.Rename(tmp, s.path(dirHeartbeat, s.writer)); err != nil {
		_ = s.fs.Remove(tmp)
		return err
	}
	return nil
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
	s.usedBytes = used
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
	return s.capacityLocked(s.refusedBytes)
}

// ReapStats counts what one Reap did.
type ReapStats struct {
	// Reclaimed claims whose lease expired went back to ready/.
	Reclaimed int
	// DeadLettered segments had used all their attempts.
	DeadLettered int
	// Orphans are tmp/ files of dead writers that were removed.
	Orphans int
}

// Reap returns expired claims to ready/ (only after deadline + 2 × SkewAllowance, so a live owner
// whose clock runs behind is never robbed), dead-letters segments out of attempts, and removes
// tmp/ files left by writers whose heartbeat stopped, once they are older than OrphanAge.
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
	orphans, err := s.collectOrphans(now)
	rs.Orphans = orphans
	return rs, err
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
