package spool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// batch is the group of appends that will share one segment. Appenders add their encoded
// records under Spool.mu; the committer takes whole batches and closes done once the segment is
// durable (or failed), releasing every waiter at once with a single close.
type batch struct {
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
}

// Counters returns this process's commit counters.
func (s *Spool) Counters() Counters {
	return Counters{
		Commits:    s.counts.commits.Load(),
		Messages:   s.counts.committedMsgs.Load(),
		Errors:     s.counts.commitErrors.Load(),
		CommitTime: time.Duration(s.counts.commitNanos.Load()),
	}
}

// Append makes msgs durable as one unit: they go into one segment together with whatever else
// was waiting, and Append returns nil only after that segment is fsynced and renamed into ready/.
//
// An error wraps ErrFull, ErrUnwritable or ErrClosed; then none of msgs was accepted (though a
// failure after the rename, such as a failed directory fsync, may still let them be delivered:
// a duplicate if the client retries, never a loss). If ctx ends first, Append returns ctx.Err()
// and the messages may or may not be committed.
func (s *Spool) Append(ctx context.Context, msgs ...message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if s.opts.Inspect {
		return ErrReadOnly
	}
	// Encode in the caller's goroutine: appenders encode and checksum in parallel, and the
	// committer only concatenates.
	size := 0
	for i := range msgs {
		size += recHeaderSize + msgs[i].EncodedSize()
	}
	recs := make([]byte, 0, size)
	for i := range msgs {
		recs = appendRecord(recs, &msgs[i])
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if err := s.capacityLocked(int64(len(recs))); err != nil {
		s.refusedBytes = int64(len(recs))
		s.mu.Unlock()
		return err
	}
	var b *batch
	if n := len(s.pending); n > 0 && s.pending[n-1].size+len(recs) <= s.opts.MaxSegmentBytes {
		b = s.pending[n-1]
	} else {
		b = &batch{done: make(chan struct{})}
		s.pending = append(s.pending, b)
	}
	b.recs = append(b.recs, recs)
	b.size += len(recs)
	b.count += len(msgs)
	s.mu.Unlock()

	s.wakeCommitter()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wakeCommitter tells the committer that appends are pending: a word already waiting in kick
// is enough.
func (s *Spool) wakeCommitter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// capacityLocked fails fast when adding n bytes would pass MaxBytes or MinFreeBytes.
func (s *Spool) capacityLocked(n int64) error {
	if s.opts.MaxBytes > 0 && s.usedBytes+n > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d bytes used of MaxBytes %d", ErrFull, s.usedBytes, s.opts.MaxBytes)
	}
	if s.opts.MinFreeBytes > 0 && s.freeBytes >= 0 && s.freeBytes-n < s.opts.MinFreeBytes {
		return fmt.Errorf("%w: %d bytes free, floor MinFreeBytes %d", ErrFull, s.freeBytes, s.opts.MinFreeBytes)
	}
	return nil
}

// commitLoop is the committer: one per process. It flushes the moment it is free, with
// everything that arrived while it was busy, except that it gives the callers of its last flush
// the time that flush took to come back (gather): a lone client pays one fsync and a crowd
// shares one.
func (s *Spool) commitLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			// Appends that queued before Close still get committed.
			s.commitPending()
			return
		}
		s.commitPending()
	}
}

func (s *Spool) commitPending() {
	for {
		s.gather()
		s.mu.Lock()
		batches := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(batches) == 0 {
			return
		}
		start := time.Now()
		for _, b := range batches {
			b.err = s.commit(b)
			close(b.done)
		}
		s.lastFlush = flush{msgs: messages(batches), took: time.Since(start)}
	}
}

// messages counts the messages of batches.
func messages(batches []*batch) int {
	n := 0
	for _, b := range batches {
		n += b.count
	}
	return n
}

// flush is what the committer remembers of its last flush.
type flush struct {
	msgs int           // messages it carried
	took time.Duration // from taking them to releasing their callers
}

// maxGather bounds gather whatever the last flush took: a commit that stalled for seconds on a
// share must not make the next one wait as long.
const maxGather = 50 * time.Millisecond

// gather waits, before a flush, until as many messages are pending as the last flush carried, or
// at most as long as that flush took (never more than s.gatherCap: maxGather outside tests).
// Under load most callers are clients that send their next message as soon as the last is
// acknowledged: flushing the moment the committer is free splits them into two groups that
// alternate (one committing, one waiting), each paying a commit for half the crowd. Waiting for
// the returning half lets one commit carry both. A lone client (a last flush of one message)
// never waits, and no caller waits more than one commit's time longer than without gathering.
// docs/performance.md has the measurements.
func (s *Spool) gather() {
	want, limit := s.lastFlush.msgs, min(s.lastFlush.took, s.gatherCap)
	if want <= 1 || limit <= 0 {
		return
	}
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		n := messages(s.pending)
		s.mu.Unlock()
		if n >= want {
			return
		}
		select {
		case <-s.kick: // another append: count again
		case <-timeout.C:
			return
		case <-s.stop:
			return
		}
	}
}

// commit writes one batch as one segment: tmp/ (O_EXCL) → write → fsync → close → rename into
// ready/ → fsync ready/.
func (s *Spool) commit(b *batch) error {
	start := time.Now()
	buf := append(s.wbuf[:0], make([]byte, headerSize)...)
	for _, r := range b.recs {
		buf = append(buf, r...)
	}
	buf, base := finishSegment(buf, s.now(), s.writer, b.count)
	s.wbuf = buf
	name := segName{segBase: base}
	// Wait for the file created ahead rather than create one here: two creates at once in tmp/
	// contend for its lock, and on some file systems spin for it.
	var sp spareFile
	select {
	case sp = <-s.spare:
	case <-s.spareDone: // the preparer has stopped (Close): create here
		sp.err = ErrClosed
	}
	// Let the next file be created once this one has left tmp/: a create and a rename out of
	// tmp/ both lock tmp/, and the rename is on the callers' critical path. Exactly once per
	// commit: a second word would wait in spareUsed and let the preparer create the file after
	// next while the next commit's file is still in tmp/.
	signalled := false
	next := func() {
		if signalled {
			return
		}
		signalled = true
		select {
		case s.spareUsed <- struct{}{}:
		default:
		}
	}
	var err error
	if sp.err == nil {
		err = s.publish(sp.f, sp.path, s.path(dirReady, name.ready()), dirReady, buf, next)
	} else {
		// The preparer's create failed: try once more here, so callers get the real error.
		err = s.writeFile(base.String()+".tmp", s.path(dirReady, name.ready()), dirReady, buf)
	}
	next() // on failure before the rename too
	s.counts.commitNanos.Add(int64(time.Since(start)))
	if err != nil {
		s.counts.commitErrors.Add(1)
		s.log.Error("commit failed", "segment", base.String(), "messages", b.count, "err", err)
		return fmt.Errorf("%w: commit %d messages: %w", classify(err), b.count, err)
	}
	s.counts.commits.Add(1)
	s.counts.committedMsgs.Add(int64(b.count))
	s.mu.Lock()
	s.usedBytes += base.Bytes
	if s.freeBytes >= 0 {
		s.freeBytes -= base.Bytes
	}
	s.mu.Unlock()
	return nil
}

// spareFile is an empty segment file in tmp/, created ahead of need, or the error creating it.
type spareFile struct {
	f    fsys.File
	path string
	err  error
}

// prepareSpares creates, one at a time, the empty tmp/ file the next commit writes. Creating a
// file is the slowest step of a commit on some file systems (a metadata round trip on NFS; up to
// several times an fsync on the ext4 of this project's build machines), and it needs nothing
// from the batch, so it runs here, off the commit's critical path: while the previous commit
// fsyncs its directory and its callers send their next requests. Its name carries this writer,
// so orphan collection leaves it alone while the writer lives. A failed create is handed over
// too: the committer then tries itself and reports the error to its callers.
func (s *Spool) prepareSpares() {
	defer s.wg.Done()
	defer close(s.spareDone)
	for {
		path := s.path(dirTmp, tmpName(s.now(), s.writer, "seg"))
		f, err := s.fs.CreateExcl(path)
		if err != nil {
			s.log.Debug("creating the next segment file failed", "err", err)
		}
		select {
		case s.spare <- spareFile{f: f, path: path, err: err}:
		case <-s.stop:
			if err == nil {
				_ = f.Close()
				_ = s.fs.Remove(path)
			}
			return
		}
		select {
		case <-s.spareUsed: // the committer is done with it
		case <-s.stop:
			return
		}
	}
}
