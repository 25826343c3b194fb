package spool

import (
	"cmp"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// batch is the group of appends that will share one segment. Appenders add their encoded
// records under Spool.mu; the committer takes whole batches and closes done once the segment is
// durable (or failed), releasing every waiter at once with a single close.
type batch struct {
	prio  uint8    // the priority of every message in it: the open segment it goes to
	recs  [][]byte // each append's framed records, in arrival order; the committer joins them
	size  int      // total bytes in recs
	count int      // messages
	done  chan struct{}
	err   error // set before done is closed
}

// counters are cumulative, since Open; read them with Counters.
type counters struct {
	commits, committedMsgs, commitErrors atomic.Int64
	commitNanos                          atomic.Int64
	seals, recovered, recoveredMsgs      atomic.Int64
}

// Counters is a snapshot of this process's cumulative commit figures since Open.
type Counters struct {
	// Commits is the number of segments this process committed (one fsync of a segment each).
	Commits int64
	// Messages is the number of messages in them.
	Messages int64
	// Errors is the number of failed commits.
	Errors int64
	// CommitTime is the total time spent committing.
	CommitTime time.Duration
	// Seals is the number of open segments this process sealed into ready/.
	Seals int64
	// Recovered is the number of open segments (of dead writers, or abandoned by this one) this
	// process re-published, and RecoveredMessages the messages in them.
	Recovered, RecoveredMessages int64
}

// Counters returns this process's commit counters.
func (s *Spool) Counters() Counters {
	return Counters{
		Commits:    s.counts.commits.Load(),
		Messages:   s.counts.committedMsgs.Load(),
		Errors:     s.counts.commitErrors.Load(),
		CommitTime: time.Duration(s.counts.commitNanos.Load()),
		Seals:      s.counts.seals.Load(),
		Recovered:  s.counts.recovered.Load(),

		RecoveredMessages: s.counts.recoveredMsgs.Load(),
	}
}

// Append makes msgs durable as one unit: their records are appended, together with whatever
// else was waiting, to this process's open segment of their priority in one write and one
// fdatasync (one per priority when msgs mix them), and Append returns nil only after every such
// fdatasync returned within the writer's lease. The segment is sealed into ready/ (claimable)
// within SealAfter or at MaxSegmentBytes; Seal does it at once.
//
// An error wraps ErrFull, ErrUnwritable or ErrClosed (or says that a message's priority is out
// of range, a caller's bug); then the messages were not acknowledged
// (though records that reached the file before a failed fdatasync may still be delivered: a
// duplicate if the client retries, never a loss). If ctx ends first, Append returns ctx.Err()
// and the messages may or may not be committed.
func (s *Spool) Append(ctx context.Context, msgs ...message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	start := time.Now()
	err := s.append(ctx, msgs)
	s.metrics.observeAppend(time.Since(start), err)
	return err
}

func (s *Spool) append(ctx context.Context, msgs []message.Message) error {
	if s.w == nil {
		return ErrReadOnly
	}
	if _, err := s.lease.check(); err != nil {
		// Fenced (paused past the lease, clock skew): answer at once rather than queue.
		return fmt.Errorf("%w: %w", ErrUnwritable, err)
	}
	for i := range msgs {
		if msgs[i].Priority > message.MaxPriority {
			// A caller's bug (the API checks priorities): such a record would not decode.
			return fmt.Errorf("spool: message %d has priority %d, not 0 to %d", i, msgs[i].Priority, message.MaxPriority)
		}
	}
	// Encode in the caller's goroutine: appenders encode and checksum in parallel, and the
	// committer only concatenates. Messages of one priority (nearly every Append) make one
	// part; a batch of mixed priorities makes one per priority, each for its own open segment.
	lanes := byPriority(msgs)
	parts := make([]part, len(lanes))
	for i, lane := range lanes {
		parts[i] = encodePart(lane)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	for _, p := range parts {
		if err := s.capacityLocked(int64(len(p.recs)), p.prio); err != nil {
			s.refusedBytes = int64(len(p.recs))
			s.mu.Unlock()
			return err
		}
	}
	waits := make([]*batch, len(parts))
	for i, p := range parts {
		waits[i] = s.pendingLocked(p)
	}
	s.mu.Unlock()

	s.w.lead()
	var err error
	for _, b := range waits {
		select {
		case <-b.done:
			err = cmp.Or(err, b.err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// part is an Append's records of one priority.
type part struct {
	prio  uint8
	recs  []byte
	count int
}

// encodePart frames msgs, all of one priority.
func encodePart(msgs []message.Message) part {
	size := 0
	for i := range msgs {
		size += recHeaderSize + msgs[i].EncodedSize()
	}
	p := part{prio: msgs[0].Priority, recs: make([]byte, 0, size), count: len(msgs)}
	for i := range msgs {
		p.recs = appendRecord(p.recs, &msgs[i])
	}
	return p
}

// pendingLocked adds p to the batch waiting for its priority's open segment (a new one when
// none waits, or it would pass MaxSegmentBytes) and returns that batch. s.mu must be held.
func (s *Spool) pendingLocked(p part) *batch {
	var b *batch
	for i := len(s.pending) - 1; i >= 0; i-- {
		if s.pending[i].prio == p.prio {
			if s.pending[i].size+len(p.recs) <= s.opts.MaxSegmentBytes {
				b = s.pending[i]
			}
			break
		}
	}
	if b == nil {
		b = &batch{prio: p.prio, done: make(chan struct{})}
		s.pending = append(s.pending, b)
	}
	b.recs = append(b.recs, p.recs)
	b.size += len(p.recs)
	b.count += p.count
	return b
}

// Seal seals this process's open segment now, after committing whatever is waiting, so that
// its messages are claimable at once rather than within SealAfter: for a graceful hand-over,
// and for tests. An empty open segment stays open.
func (s *Spool) Seal(ctx context.Context) error {
	if s.w == nil {
		return ErrReadOnly
	}
	done := make(chan error, 1)
	select {
	case s.w.sealNow <- done:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// capacityLocked fails fast when adding n bytes of priority prio would pass MaxBytes or
// MinFreeBytes, or reach into the reserve that only priorities up to ReservePriority may use.
func (s *Spool) capacityLocked(n int64, prio uint8) error {
	limit, byFree := s.limitLocked()
	if reserve := s.reserveLocked(limit); prio > s.opts.ReservePriority && reserve > 0 {
		if s.usedBytes+n > limit-reserve {
			return fmt.Errorf("%w: %d bytes used of %d, and the last %d are kept for priorities 0 to %d (this is priority %d)%s",
				ErrFull, s.usedBytes, limit, reserve, s.opts.ReservePriority, prio, s.setAsideLocked())
		}
		return nil
	}
	switch {
	case limit < 0 || s.usedBytes+n <= limit:
		return nil
	case byFree:
		// With no floor set, a file system with less free space than the append is full too.
		return fmt.Errorf("%w: %d bytes free, floor MinFreeBytes %d%s", ErrFull, s.freeBytes, s.opts.MinFreeBytes, s.setAsideLocked())
	default:
		return fmt.Errorf("%w: %d bytes used of MaxBytes %d%s", ErrFull, s.usedBytes, s.opts.MaxBytes, s.setAsideLocked())
	}
}

// reserveLocked is the part of capacity limit that only priorities up to ReservePriority may
// use: ReserveBytes, or ReservePercent of limit; 0 when there is none or no limit is known.
func (s *Spool) reserveLocked(limit int64) int64 {
	switch {
	case limit < 0:
		return 0
	case s.opts.ReserveBytes > 0:
		return s.opts.ReserveBytes
	}
	return int64(float64(limit) * s.opts.ReservePercent / 100)
}

// limitLocked is the spool's capacity: the bytes it may hold before appends are refused, the
// smaller of MaxBytes and what the free space above MinFreeBytes allows (-1 when neither is
// known), and whether the free space is the bound. Append, Ready and /metrics all use it.
func (s *Spool) limitLocked() (limit int64, byFree bool) {
	limit = -1
	if s.opts.MaxBytes > 0 {
		limit = s.opts.MaxBytes
	}
	if s.freeBytes >= 0 {
		if free := max(s.usedBytes+s.freeBytes-s.opts.MinFreeBytes, 0); limit < 0 || free < limit {
			limit, byFree = free, true
		}
	}
	return limit, byFree
}

// setAsideLocked names what dead/ and quarantine/ hold when that is a tenth of the spool or
// more: bytes no forwarder will ever free, which only an operator's purge or requeue does.
func (s *Spool) setAsideLocked() string {
	dead, q := s.lastStats.Dead.Bytes, s.lastStats.Quarantine.Bytes
	if s.usedBytes <= 0 || (dead+q)*10 < s.usedBytes {
		return ""
	}
	return fmt.Sprintf(" (of which dead letters %d bytes and quarantine %d bytes, which only an operator frees: spool ls --state dead, spool quarantine ls)", dead, q)
}
