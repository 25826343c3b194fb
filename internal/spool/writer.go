package spool

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// writer is the spool's appending role: one committer goroutine that appends group commits to
// this process's open segments in open/ (one per priority in use) and detaches them when full or
// old, a sealer that seals detached segments into ready/ while commits go on into the next, a
// preparer that creates the next open segment ahead of need, and a recoverer that re-publishes
// the segments this writer had to abandon. Only processes that append run it (Options.Role).
//
// Ownership: commitMu is held by whoever commits, the committer goroutine or an appender that
// leads a commit in its own goroutine (lead), and guards segs, lastFlush and the timers' use
// (the "committer-owned" fields below); a detached segment belongs to the sealer; the preparer
// owns the file it is creating until it hands it over on spare; abandonedMu guards abandoned.
type writer struct {
	s *Spool

	commitMu  sync.Mutex      // held while committing or sealing
	kick      chan struct{}   // wakes the committer; capacity 1
	sealNow   chan chan error // asks the committer to seal now (Spool.Seal)
	spare     chan spareSeg   // the next open segment, created ahead; unbuffered
	spareUsed chan struct{}   // the committer took the spare: make the next; capacity 1
	spareDone chan struct{}   // closed when the preparer has stopped
	// sealq carries detached segments to the sealer, in order, and barriers (a sealJob with a
	// done channel) that are answered once everything before them is sealed. The committer
	// closes it when it stops.
	sealq chan sealJob
	// bufs holds the buffers of sealed segments for the next ones, each allocated once at
	// MaxSegmentBytes (growing a buffer per segment cost 4 % of the API's CPU at 64
	// connections, in copies and in pages returned to the system). A writer busy at one
	// priority uses two: the segment being filled and the one being sealed.
	bufs chan []byte

	abandonedMu  sync.Mutex
	abandoned    []string      // open/ names this writer gave up on, to re-publish
	recoverKick  chan struct{} // wakes the recoverer; capacity 1
	recoverRetry time.Duration // how long the recoverer waits after a failure

	// segs are committer-owned: the open segment commits of each priority append to, nil if none.
	segs       [message.MaxPriority + 1]*openSeg
	sealTimer  *time.Timer   // committer-owned: fires at the earliest sealAt of segs (armSeal)
	idleTimer  *time.Timer   // committer-owned: fires SealIdle after the last commit
	lastFlush  flush         // committer-owned: what its last flush carried and took
	gatherCap  time.Duration // committer-owned: gather never waits longer (maxGather)
	lastCommit time.Time     // committer-owned: when the last commit completed
}

// sealJob is a segment for the sealer to seal, or (seg nil) a barrier: done gets the first
// error of the seals since the last barrier once they are all done.
type sealJob struct {
	seg  *openSeg
	done chan<- error
}

// openSeg is the open segment the committer appends to.
type openSeg struct {
	f     fsys.File
	name  openName
	prio  uint8  // the priority of every record in it
	epoch uint64 // the writer lease's epoch it was created in; it is written only in that epoch
	// buf is every byte written to the file so far (header, then records): the seal rewrites the
	// header with the count and computes the trailer's checksum from it, without reading back.
	buf   []byte
	count int
	sized bool      // created at MaxSegmentBytes (a hole), cut to its length by the seal
	first time.Time // when its first record was committed (the spool's clock); zero while empty
	// sealAt is when the committer detaches it for the sealer (the monotonic clock): SealAfter
	// after its first record. A full one is detached at once.
	sealAt time.Time
}

// full reports whether seg has reached MaxSegmentBytes.
func (seg *openSeg) full(max int) bool { return len(seg.buf)+trailerSize >= max }

// spareSeg is an empty open segment created ahead, or the error creating it.
type spareSeg struct {
	f     fsys.File
	name  openName
	epoch uint64
	sized bool // extended to MaxSegmentBytes
	err   error
}

func newWriter(s *Spool) *writer {
	sealTimer, idleTimer := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	sealTimer.Stop()
	idleTimer.Stop()
	return &writer{
		sealTimer:    sealTimer,
		idleTimer:    idleTimer,
		s:            s,
		kick:         make(chan struct{}, 1),
		sealNow:      make(chan chan error),
		spare:        make(chan spareSeg),
		spareUsed:    make(chan struct{}, 1),
		spareDone:    make(chan struct{}),
		sealq:        make(chan sealJob, 2*(message.MaxPriority+1)),
		bufs:         make(chan []byte, message.MaxPriority+1),
		recoverKick:  make(chan struct{}, 1),
		recoverRetry: time.Second,
		gatherCap:    maxGather,
	}
}

// start runs the writer's goroutines; they end when s.stop is closed.
func (w *writer) start() {
	w.s.wg.Add(4)
	go w.commitLoop()
	go w.sealLoop()
	go w.prepareSpares()
	go w.recoverLoop()
}

// wake tells the committer that appends are pending: a word already waiting in kick is enough.
func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// commitLoop is the committer: one per process. It flushes the moment it is free, with
// everything that arrived while it was busy, except that it gives the callers of its last flush
// the time that flush took to come back (gather): a lone client pays one write and one fdatasync,
// and a crowd shares them. Between commits it seals the open segment when it is full or old.
func (w *writer) commitLoop() {
	defer w.s.wg.Done()
	for {
		select {
		case <-w.kick:
			w.commitMu.Lock()
			w.commitPending()
			w.commitMu.Unlock()
		case <-w.sealTimer.C:
			w.commitMu.Lock()
			w.sealDue()
			w.commitMu.Unlock()
		case <-w.idleTimer.C:
			// No commit for SealIdle: the writer is idle, and what it acknowledged need not
			// wait the rest of SealAfter to be claimable. (A commit since re-armed the timer;
			// the seal then comes at the next idle moment.)
			w.commitMu.Lock()
			if time.Since(w.lastCommit) >= w.s.opts.SealIdle {
				w.detachAll()
			}
			w.commitMu.Unlock()
		case done := <-w.sealNow:
			w.commitMu.Lock()
			w.commitPending()
			w.detachAll()
			w.commitMu.Unlock()
			w.sealq <- sealJob{done: done}
		case <-w.s.stop:
			// Appends that queued before Close still get committed, and their segment sealed,
			// so that a graceful stop leaves nothing in open/.
			w.commitMu.Lock()
			w.commitPending()
			w.detachAll()
			w.commitMu.Unlock()
			done := make(chan error, 1)
			w.sealq <- sealJob{done: done}
			if err := <-done; err != nil {
				w.s.log.Error("seal at close failed; the segment is left to recovery", "err", err)
			}
			close(w.sealq)
			return
		}
	}
}

// lead commits, in the appender's own goroutine, what is pending (its own append included) when
// no commit is under way: a lone client's append then costs its write and fdatasync and no
// hand-over to the committer goroutine and back, two thread wake-ups that cost, on this
// project's VMs, about a third of an fdatasync (docs/performance.md). It commits one round and
// leaves what arrived meanwhile to the committer goroutine, so that no client's answer waits for
// other clients' commits. When a commit is under way, its holder takes the append.
func (w *writer) lead() {
	if !w.commitMu.TryLock() {
		// The holder commits what is pending before it lets go (the committer goroutine loops
		// until nothing is; a leader wakes it below).
		w.wake()
		return
	}
	w.commitOnce()
	w.commitMu.Unlock()
	w.s.mu.Lock()
	more := len(w.s.pending) > 0
	w.s.mu.Unlock()
	if more {
		w.wake()
	}
}

// commitPending commits until nothing is pending. commitMu must be held.
func (w *writer) commitPending() {
	for w.commitOnce() {
	}
}

// commitOnce gathers, takes every pending batch and commits them, releasing their callers;
// it reports whether there was anything to commit. commitMu must be held.
func (w *writer) commitOnce() bool {
	s := w.s
	w.gather()
	s.mu.Lock()
	batches := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batches) == 0 {
		return false
	}
	start := time.Now()
	for _, b := range batches {
		b.err = w.commit(b)
		close(b.done)
		if seg := w.segs[b.prio]; seg != nil && seg.full(s.opts.MaxSegmentBytes) {
			w.detach(seg) // to the sealer: the next commit goes to the next segment
		}
	}
	w.lastFlush = flush{msgs: messages(batches), took: time.Since(start)}
	return true
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
// at most as long as that flush took (never more than w.gatherCap: maxGather outside tests).
// Under load most callers are clients that send their next message as soon as the last is
// acknowledged: flushing the moment the committer is free splits them into two groups that
// alternate (one committing, one waiting), each paying a commit for half the crowd. Waiting for
// the returning half lets one commit carry both. A lone client (a last flush of one message)
// never waits, and no caller waits more than one commit's time longer than without gathering.
// docs/performance.md has the measurements.
func (w *writer) gather() {
	want, limit := w.lastFlush.msgs, min(w.lastFlush.took, w.gatherCap)
	if want <= 1 || limit <= 0 {
		return
	}
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for {
		w.s.mu.Lock()
		n := messages(w.s.pending)
		w.s.mu.Unlock()
		if n >= want {
			return
		}
		select {
		case <-w.kick: // another append: count again
		case <-timeout.C:
			return
		case <-w.s.stop:
			return
		}
	}
}

// commit appends one batch at the open segment's tail in one durable write (WriteSync: pwritev2
// with RWF_DSYNC, a write and an fdatasync in one call, one round trip on a share). The callers
// are acknowledged only if it returned within this writer's lease, in the epoch the segment was
// created in: a writer paused past its lease may have had its open segment recovered by another
// process, and must not acknowledge into it.
func (w *writer) commit(b *batch) error {
	s := w.s
	start := time.Now()
	grew, err := w.commitErr(b)
	s.counts.commitNanos.Add(int64(time.Since(start)))
	if err != nil {
		s.counts.commitErrors.Add(1)
		s.log.Error("commit failed", "messages", b.count, "err", err)
		if errors.Is(err, ErrFull) {
			s.mu.Lock()
			s.refusedBytes = int64(b.size)
			s.mu.Unlock()
		}
		return err
	}
	s.counts.commits.Add(1)
	s.counts.committedMsgs.Add(int64(b.count))
	w.used(grew)
	return nil
}

// used adds n bytes this writer put in the spool to the capacity figures, until the next scan
// sees them.
func (w *writer) used(n int64) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.usedBytes += n
	if w.s.freeBytes >= 0 {
		w.s.freeBytes -= n
	}
}

// commitErr is commit's work. It returns how many bytes the spool grew by: the batch, and with a
// segment's first records its header and trailer, so that the capacity check sees what the
// sealed segment will take.
func (w *writer) commitErr(b *batch) (grew int64, err error) {
	s := w.s
	if seg := w.segs[b.prio]; seg != nil && seg.count > 0 && len(seg.buf)+b.size+trailerSize > s.opts.MaxSegmentBytes {
		w.detach(seg) // one Append's records of a priority are never split across segments
	}
	seg, err := w.current(b.prio)
	if err != nil {
		return 0, fmt.Errorf("%w: commit %d messages: %w", classify(err), b.count, err)
	}
	grew = int64(b.size)
	from := len(seg.buf)
	if from == 0 {
		grew += headerSize + trailerSize
		seg.buf = append(seg.buf, make([]byte, headerSize)...)
		putHeader(seg.buf, makeBase(seg.name.Created, seg.name.Rand, s.writer, seg.prio, 0, 0))
	}
	for _, r := range b.recs {
		seg.buf = append(seg.buf, r...)
	}
	if _, err := seg.f.WriteSync(seg.buf[from:], int64(from)); err != nil {
		// A failed write or flush (one call cannot tell which, and after a failed flush the
		// kernel may have dropped the dirty pages): this file is never written or flushed again.
		seg.buf = seg.buf[:from]
		w.release(seg)
		w.abandon(seg, "durable write failed")
		return 0, fmt.Errorf("%w: commit %d messages: %w", classify(err), b.count, err)
	}
	if err := s.lease.checkEpoch(seg.epoch); err != nil {
		w.release(seg)
		w.abandon(seg, "writer lease ended during the commit")
		return 0, fmt.Errorf("%w: commit %d messages: %w", ErrUnwritable, b.count, err)
	}
	w.lastCommit = time.Now()
	w.idleTimer.Reset(s.opts.SealIdle)
	seg.count += b.count
	if seg.count == b.count { // its first records
		seg.first = s.now()
		seg.sealAt = time.Now().Add(s.opts.SealAfter)
		w.armSeal()
	}
	return grew, nil
}

// current returns the open segment of priority prio to append to, taking the one created ahead
// when there is none. A segment (or a spare) of an earlier lease epoch is never written again:
// another process may have recovered it while this writer was paused.
func (w *writer) current(prio uint8) (*openSeg, error) {
	s := w.s
	epoch, err := s.lease.check()
	if err != nil {
		return nil, err
	}
	if seg := w.segs[prio]; seg != nil {
		if seg.epoch == epoch {
			return seg, nil
		}
		w.release(seg)
		w.abandon(seg, "writer lease lapsed")
	}
	for {
		var sp spareSeg
		select {
		case sp = <-w.spare:
		case <-w.spareDone:
			return nil, ErrClosed
		}
		select {
		case w.spareUsed <- struct{}{}:
		default:
		}
		if sp.err != nil {
			// The create ahead failed (it may have been a while ago): try once more here, so
			// callers get the error of now.
			if sp = w.newSpare(); sp.err != nil {
				return nil, sp.err
			}
		}
		if sp.epoch != epoch {
			w.discard(sp)
			if epoch, err = s.lease.check(); err != nil {
				return nil, err
			}
			continue
		}
		var buf []byte
		select {
		case buf = <-w.bufs:
		default:
			buf = make([]byte, 0, s.opts.MaxSegmentBytes+trailerSize)
		}
		w.segs[prio] = &openSeg{f: sp.f, name: sp.name, prio: prio, epoch: sp.epoch, sized: sp.sized, buf: buf[:0]}
		return w.segs[prio], nil
	}
}

// discard removes an empty spare of an earlier epoch. If a recoverer claimed it meanwhile, the
// remove finds nothing and the recoverer finds an empty file: either way it is gone.
func (w *writer) discard(sp spareSeg) {
	_ = sp.f.Close()
	if err := w.s.fs.Remove(w.s.path(dirOpen, sp.name.open())); err != nil && !fsys.IsNotExist(err) {
		w.s.log.Warn("remove an unused open segment of an earlier lease", "segment", sp.name.open(), "err", err)
	}
}

// abandon gives up the open segment seg, already taken off the committer (release) or detached,
// after a failed write or fdatasync, a lease that ended or a failed seal, and hands it to the
// recoverer: its acknowledged records are durable and will be re-published; the failed commit's
// records may be too (a duplicate, never a loss).
func (w *writer) abandon(seg *openSeg, why string) {
	w.recycle(seg)
	_ = seg.f.Close()
	w.s.log.Warn("abandoning open segment to recovery", "segment", seg.name.open(), "messages", seg.count, "why", why)
	w.abandonedMu.Lock()
	w.abandoned = append(w.abandoned, seg.name.open())
	w.abandonedMu.Unlock()
	select {
	case w.recoverKick <- struct{}{}:
	default:
	}
}

// release takes seg off the committer (to be sealed or abandoned): the next commit of its
// priority goes to a new segment, and the seal timer is re-armed for the others. commitMu must be
// held.
func (w *writer) release(seg *openSeg) {
	if w.segs[seg.prio] == seg {
		w.segs[seg.prio] = nil
	}
	w.armSeal()
}

// detach takes seg, which holds records, off the committer and hands it to the sealer (an empty
// one stays open for the next commit). commitMu must be held. The
// sealer's queue holds two segments a priority; past that, detach waits (the share is not
// keeping up with seals, and the commits wait with it).
func (w *writer) detach(seg *openSeg) {
	w.release(seg)
	w.sealq <- sealJob{seg: seg}
}

// detachAll detaches every open segment that holds records, highest priority first.
// commitMu must be held.
func (w *writer) detachAll() {
	for _, seg := range w.segs {
		if seg != nil && seg.count > 0 {
			w.detach(seg)
		}
	}
}

// recycle keeps seg's buffer for a next segment, unless enough are kept already.
func (w *writer) recycle(seg *openSeg) {
	select {
	case w.bufs <- seg.buf[:0]:
	default:
	}
	seg.buf = nil
}

// armSeal sets the seal timer to the earliest sealAt of the open segments holding records, or
// stops it when there are none.
func (w *writer) armSeal() {
	var next time.Time
	for _, seg := range w.segs {
		if seg != nil && seg.count > 0 && (next.IsZero() || seg.sealAt.Before(next)) {
			next = seg.sealAt
		}
	}
	if next.IsZero() {
		w.sealTimer.Stop()
		return
	}
	w.sealTimer.Reset(max(time.Until(next), 0))
}

// sealDue detaches the open segments whose sealAt has come. commitMu must be held.
func (w *writer) sealDue() {
	now := time.Now()
	for _, seg := range w.segs {
		if seg != nil && seg.count > 0 && !now.Before(seg.sealAt) {
			w.detach(seg)
		}
	}
	w.armSeal()
}

// sealLoop is the sealer: it seals the segments the committer detached, one at a time in the
// order they were detached, while commits go on into the next ones (a seal is five or six calls,
// each a round trip on a share: the time of two commits or more, which the commits' callers no
// longer wait for). It answers a barrier with the first error since the last, and ends when the
// committer closes sealq.
func (w *writer) sealLoop() {
	defer w.s.wg.Done()
	var first error
	for job := range w.sealq {
		if job.seg != nil {
			first = cmp.Or(first, w.seal(job.seg))
			continue
		}
		job.done <- first
		first = nil
	}
}

// seal completes the detached open segment seg (which holds records: detach is given no other)
// and publishes it: the header gets the count and the first record's time, the trailer is
// appended, the hole the file was created with is cut, then fdatasync, close and a rename into
// ready/. No directory fsync: a rename lost in a crash leaves the file in open/, where recovery
// finds it. A failed seal abandons the segment to recovery.
func (w *writer) seal(seg *openSeg) error {
	s := w.s
	if err := s.lease.checkEpoch(seg.epoch); err != nil {
		// Another process may be recovering it: do not write into it.
		w.abandon(seg, "writer lease ended before the seal")
		return err
	}
	base := makeBase(seg.first, seg.name.Rand, s.writer, seg.prio, seg.count, int64(len(seg.buf)+trailerSize))
	putHeader(seg.buf[:headerSize], base)
	end := len(seg.buf)
	seg.buf = appendTrailer(seg.buf, seg.count)
	_, err := seg.f.WriteAt(seg.buf[:headerSize], 0)
	if err == nil {
		_, err = seg.f.WriteAt(seg.buf[end:], int64(end)) // every write names its offset
	}
	if err == nil && seg.sized {
		err = seg.f.Truncate(int64(len(seg.buf))) // the hole after the trailer
	}
	if err == nil {
		err = seg.f.Datasync()
	}
	if err != nil {
		w.abandon(seg, "seal failed")
		return fmt.Errorf("seal %s: %w", seg.name.open(), err)
	}
	if err := seg.f.Close(); err != nil {
		// NFS reports deferred write errors at close: the seal may not be whole. Recovery reads
		// what is there.
		w.abandon(seg, "close failed at seal")
		return fmt.Errorf("seal %s: close: %w", seg.name.open(), err)
	}
	w.recycle(seg) // its buffer is reused by a next segment
	ready := segName{segBase: base}
	if err := s.renameResolved(s.path(dirOpen, seg.name.open()), s.path(dirReady, ready.ready())); err != nil {
		if fsys.IsNotExist(err) {
			// Recovered by another process meanwhile (this writer was paused): it publishes them.
			s.log.Warn("sealed segment was taken by recovery", "segment", seg.name.open())
			return nil
		}
		w.abandonedMu.Lock()
		w.abandoned = append(w.abandoned, seg.name.open())
		w.abandonedMu.Unlock()
		return fmt.Errorf("seal %s: %w", seg.name.open(), err)
	}
	s.counts.seals.Add(1)
	return nil
}

// prepareSpares creates, one at a time, the empty open segment the committer takes next, and
// fsyncs open/ so that the file survives a crash: records fsynced into a file whose directory
// entry is lost would be lost with it. Creating a file is a metadata round trip on a share, and
// it needs nothing from a batch, so it runs here, off the commit's path. A spare is made only
// while the lease holds, and carries the lease's epoch. A failed create is handed over too: the
// committer reports it to its callers.
func (w *writer) prepareSpares() {
	s := w.s
	defer s.wg.Done()
	defer close(w.spareDone)
	for {
		sp := w.newSpare()
		select {
		case w.spare <- sp:
		case <-s.stop:
			if sp.f != nil {
				w.discard(sp)
			}
			return
		}
		select {
		case <-w.spareUsed:
		case <-s.stop:
			return
		}
	}
}

// newSpare creates an empty open segment in the lease's current epoch, sized to
// MaxSegmentBytes, and makes its directory entry durable.
//
// The size is a hole (ftruncate: nothing written): a commit then writes inside the file, and its
// durable write has no size to flush with the data. On this project's disk that makes a lone
// client's commit ~18 % faster (docs/performance.md); on NFS the size is the server's to flush.
// A file system that refuses the size leaves a file that grows as it is written, as before.
func (w *writer) newSpare() spareSeg {
	s := w.s
	var sp spareSeg
	if sp.epoch, sp.err = s.lease.check(); sp.err != nil {
		return sp
	}
	sp.name = newOpenName(s.now(), s.writer)
	path := s.path(dirOpen, sp.name.open())
	if sp.f, sp.err = s.fs.CreateExcl(path); sp.err != nil {
		s.log.Debug("creating the next open segment failed", "err", sp.err)
		return sp
	}
	if err := sp.f.Truncate(int64(s.opts.MaxSegmentBytes)); err != nil {
		s.log.Debug("sizing the next open segment failed; it grows as it is written", "err", err)
	} else {
		sp.sized = true
	}
	if err := s.syncDir(dirOpen); err != nil {
		_ = sp.f.Close()
		_ = s.fs.Remove(path)
		sp.f, sp.err = nil, fmt.Errorf("fsync open/: %w", err)
	}
	return sp
}

// recoverLoop re-publishes the segments this writer abandoned, through the same claim (a rename
// into recovering/) as any recoverer: another process may be at it too. A publish that fails (a
// full share) is retried every recoverRetry from the claim it holds; past the claim's deadline
// a forwarder's reaper may take it over, which is as good. Failures are logged when they start
// and then at most every recoverLogEvery, not at every retry.
func (w *writer) recoverLoop() {
	s := w.s
	defer s.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var claims []openName // claimed by this writer, not yet published
	var loggedAt time.Time
	for {
		select {
		case <-w.recoverKick:
		case <-retry.C:
		case <-s.stop:
			return
		}
		w.abandonedMu.Lock()
		names := w.abandoned
		w.abandoned = nil
		w.abandonedMu.Unlock()
		var failed []string
		var errs []error
		for _, name := range names {
			n, _ := parseOpenName(dirOpen, name)
			claim, ok, err := s.claimOpen(n)
			switch {
			case err != nil:
				failed = append(failed, name)
				errs = append(errs, err)
			case ok:
				claims = append(claims, claim)
			}
		}
		kept := claims[:0]
		for _, c := range claims {
			if _, err := s.recoverClaimed(c); err != nil {
				errs = append(errs, err)
				kept = append(kept, c)
			}
		}
		claims = kept
		if len(failed) == 0 && len(claims) == 0 {
			if !loggedAt.IsZero() {
				s.log.Info("abandoned open segments re-published after earlier failures")
				loggedAt = time.Time{}
			}
			continue
		}
		if loggedAt.IsZero() || time.Since(loggedAt) >= recoverLogEvery {
			s.log.Error("re-publishing abandoned open segments failed; retrying", "waiting", len(failed)+len(claims), "err", errors.Join(errs...))
			loggedAt = time.Now()
		}
		w.abandonedMu.Lock()
		w.abandoned = append(w.abandoned, failed...)
		w.abandonedMu.Unlock()
		retry.Reset(w.recoverRetry)
	}
}

// recoverLogEvery is how often the recoverer repeats that it keeps failing.
const recoverLogEvery = 30 * time.Second
