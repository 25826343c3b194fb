package spool

import (
	"context"
	"fmt"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// Recovery re-publishes the records of an open segment whose writer can no longer seal it: a
// writer that died (its lease ran out), or one that abandoned the segment after a failed write
// or fdatasync or a lapsed lease. It is a claim like a consumer's: a rename of the exact name
// into recovering/ with the recoverer and a deadline, so that two recoverers never both publish
// it; then the intact records are written as a new segment into ready/ through the durable file
// protocol, and only then is the claimed file unlinked. A recoverer that dies leaves its claim,
// which another takes over after the deadline (+ 2 × SkewAllowance): a duplicate is possible,
// a loss is not.

// recoverDead recovers the open segments of other writers whose lease has run out, and takes over
// recovery claims whose recoverer died. It returns how many segments with records it
// re-published (empty ones, created ahead and never written, are removed without a count).
func (s *Spool) recoverDead(ctx context.Context, now time.Time) (int, error) {
	names, err := s.fs.ReadDir(s.path(dirOpen))
	if err != nil {
		return 0, fmt.Errorf("list open: %w", err)
	}
	byWriter := map[string][]openName{}
	for _, e := range names {
		n, ok := parseOpenName(dirOpen, e)
		if ok && n.Writer != s.writer {
			byWriter[n.Writer] = append(byWriter[n.Writer], n)
		}
	}
	recovered := 0
	var firstErr error
	for w, files := range byWriter {
		for _, n := range s.deadWritersFiles(w, files) {
			if ctx.Err() != nil {
				return recovered, ctx.Err()
			}
			published, err := s.recoverOpen(n)
			if err != nil {
				s.log.Error("recover open segment", "segment", n.open(), "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
			if published > 0 {
				recovered++
			}
		}
	}

	// Claims of recoverers that died: take them over.
	claims, err := s.fs.ReadDir(s.path(dirRecovering))
	if err != nil {
		return recovered, fmt.Errorf("list recovering: %w", err)
	}
	for _, e := range claims {
		n, ok := parseOpenName(dirRecovering, e)
		if !ok || !now.After(n.Deadline.Add(2*s.opts.SkewAllowance)) {
			continue
		}
		next, ok, err := s.claimForRecovery(dirRecovering, e, n)
		if err != nil {
			s.log.Error("take over a recovery claim", "segment", e, "err", err)
		}
		if !ok {
			continue
		}
		s.log.Warn("took over an expired recovery claim", "segment", e)
		published, err := s.recoverClaimed(next)
		if err != nil {
			s.log.Error("recover open segment", "segment", next.recovering(), "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if published > 0 {
			recovered++
		}
	}
	return recovered, firstErr
}

// deadWritersFiles returns those of writer's open segments that may be recovered: all of them
// if its heartbeat is gone; none while the heartbeat is younger than WriterLease + 2 ×
// SkewAllowance; otherwise those created within the lease that heartbeat gave. A file created
// later belongs to a newer lease than the heartbeat we saw (the writer was paused, then came
// back): leave it for the next pass, which sees the newer heartbeat.
func (s *Spool) deadWritersFiles(writer string, files []openName) []openName {
	fi, err := s.fs.Stat(s.path(dirHeartbeat, writer))
	if err != nil {
		if !fsys.IsNotExist(err) {
			return nil // cannot tell: leave it
		}
		return files
	}
	observed := s.now()
	beat := fi.ModTime()
	grace := s.opts.WriterLease + 2*s.opts.SkewAllowance
	if observed.Sub(beat) <= grace {
		return nil
	}
	var out []openName
	for _, n := range files {
		if !n.Created.After(beat.Add(grace)) {
			out = append(out, n)
		}
	}
	return out
}

// recoverOpen claims open/<n> for recovery and re-publishes it, returning how many messages it
// published: 0 when another process got it first (or it was sealed meanwhile), or when it held
// none.
func (s *Spool) recoverOpen(n openName) (published int, err error) {
	claim, ok, err := s.claimOpen(n)
	if !ok || err != nil {
		return 0, err
	}
	return s.recoverClaimed(claim)
}

// claimOpen claims open/<n> for recovery.
func (s *Spool) claimOpen(n openName) (claim openName, ok bool, err error) {
	return s.claimForRecovery(dirOpen, n.open(), n)
}

// claimForRecovery renames dir/name (an open segment n, or an expired recovery claim of it) into
// recovering/ under this process and a deadline Lease from now. ok is false when the file is
// gone: another recoverer, or a seal, got there first.
func (s *Spool) claimForRecovery(dir, name string, n openName) (claim openName, ok bool, err error) {
	claim = n
	claim.Owner, claim.Deadline = s.writer, s.now().Add(s.opts.Lease)
	if err := s.renameResolved(s.path(dir, name), s.path(dirRecovering, claim.recovering())); err != nil {
		if fsys.IsNotExist(err) || fsys.IsStale(err) {
			return claim, false, nil
		}
		return claim, false, fmt.Errorf("claim %s for recovery: %w", name, err)
	}
	return claim, true, nil
}

// recoverClaimed re-publishes recovering/<n>: its intact records become a new ready segment
// (written, fsynced, renamed, directory fsynced), then the claimed file is unlinked. A file whose
// header is damaged cannot be trusted to say where its records are: it goes to quarantine/ for
// a human, never deleted. An empty file (created ahead, never written) is just unlinked.
func (s *Spool) recoverClaimed(n openName) (published int, err error) {
	path := s.path(dirRecovering, n.recovering())
	data, err := s.fs.ReadFile(path)
	if err != nil {
		if fsys.IsNotExist(err) || fsys.IsStale(err) {
			return 0, nil // taken over by another recoverer: it publishes
		}
		return 0, fmt.Errorf("read %s: %w", n.recovering(), err)
	}
	msgs, tail, derr := decodeOpen(n.recovering(), data)
	if derr != nil {
		q := segName{segBase: makeBase(n.Created, n.Rand, n.Writer, message.DefaultPriority, 0, int64(len(data)))}
		reason := fmt.Sprintf("open segment of writer %s with a damaged header, found by recovery: %v", n.Writer, derr)
		if err := s.settleFile(path, dirQuarantine, q, reason); err != nil {
			return 0, fmt.Errorf("quarantine %s: %w", n.recovering(), err)
		}
		s.log.Error("open segment quarantined", "segment", n.recovering(), "reason", reason)
		return 0, nil
	}
	// A writer keeps one open segment per priority, so its records share one; one of an older
	// release (all at the default) or of a future one may not: each priority is published apart.
	for _, lane := range byPriority(msgs) {
		if err := s.publishRecovered(n, lane); err != nil {
			return 0, err
		}
	}
	if err := s.fs.Remove(path); err != nil && !fsys.IsNotExist(err) {
		// Published already: a claim left behind is taken over later and published again
		// (duplicates with the same ids, never a loss).
		s.log.Error("remove recovered open segment", "segment", n.recovering(), "err", err)
	}
	if len(msgs) > 0 || tail > 0 {
		s.log.Warn("recovered open segment", "segment", n.open(), "writer", n.Writer, "messages", len(msgs), "unacknowledgedTailBytes", tail)
	}
	return len(msgs), nil
}

// publishRecovered publishes msgs (one priority) of the recovered open segment n as a new ready
// segment through the durable file protocol.
func (s *Spool) publishRecovered(n openName, msgs []message.Message) error {
	// The segment's age is its oldest message's: the file may have been created long before
	// its first record.
	var created time.Time
	for _, m := range msgs {
		if !m.ReceivedAt.IsZero() && (created.IsZero() || m.ReceivedAt.Before(created)) {
			created = m.ReceivedAt
		}
	}
	if created.IsZero() {
		created = n.Created
	}
	seg, base := encodeSegment(created, s.writer, msgs[0].Priority, msgs)
	ready := segName{segBase: base}
	if err := s.writeFile(base.String()+".tmp", s.path(dirReady, ready.ready()), dirReady, seg); err != nil {
		return fmt.Errorf("publish recovered %s: %w", n.recovering(), err)
	}
	s.counts.recovered.Add(1)
	s.counts.recoveredMsgs.Add(int64(len(msgs)))
	return nil
}
