package spool

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// lease is a writer's hold on its open segments: its heartbeat in hb/ tells other processes it
// is alive, and they recover its open segments only once that heartbeat is older than
// WriterLease + 2 × SkewAllowance. The writer, for its part, takes the lease as starting when it
// began its last successful heartbeat, and acknowledges nothing whose fdatasync returned after
// that start + WriterLease (on its own monotonic clock: time.Now, never Options.Now, so that a
// step of the wall clock neither ends nor stretches it).
//
// A heartbeat that completes after the lease ran out means the lease lapsed: another process may
// have recovered this writer's open segments in the gap. The epoch then moves on, and the writer
// never writes again into a file of an earlier epoch; it waits 3 × SkewAllowance before it
// creates files in the new epoch, so that a recoverer acting on the older heartbeat (it only
// takes files created within the lease that heartbeat gave) cannot take them.
//
// A clock skew against the file server beyond SkewAllowance, measured at every heartbeat from
// the heartbeat file's mtime, also stops acknowledgements: leases and claim deadlines are only
// as good as the clocks.
//
// All fields are guarded by mu.
type lease struct {
	mu       sync.Mutex
	expiry   time.Time // the lease ends; zero before the first heartbeat
	epoch    uint64    // 0 before the first heartbeat
	from     time.Time // files of this epoch may be created from this time on
	skew     time.Duration
	skewErr  error // set while the last measured skew exceeds the allowance
	lastBeat time.Time
}

var (
	errLeaseExpired  = errors.New("writer lease expired: the heartbeat was not renewed in time")
	errLeaseResuming = errors.New("writer lease lapsed and was renewed: waiting out the skew allowance before writing again")
	errLeaseNone     = errors.New("writer has no lease yet (no heartbeat written)")
)

// check returns the current epoch if the lease holds now (on the monotonic clock).
func (l *lease) check() (uint64, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.epoch == 0:
		return 0, errLeaseNone
	case l.skewErr != nil:
		return 0, l.skewErr
	case now.After(l.expiry):
		return 0, fmt.Errorf("%w (ended %v ago)", errLeaseExpired, now.Sub(l.expiry).Round(time.Millisecond))
	case now.Before(l.from):
		return 0, errLeaseResuming
	}
	return l.epoch, nil
}

// checkEpoch is check, and that the epoch is still epoch.
func (l *lease) checkEpoch(epoch uint64) error {
	e, err := l.check()
	if err != nil {
		return err
	}
	if e != epoch {
		return errors.New("writer lease lapsed since the segment was created")
	}
	return nil
}

// renewed records a successful heartbeat that began at start and completed at end.
func (l *lease) renewed(start, end time.Time, length, skewAllowance time.Duration) (lapsed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.epoch == 0:
		// The first heartbeat of a new writer id: nothing of this writer exists yet.
		l.epoch, l.from = 1, start
	case end.After(l.expiry):
		l.epoch++
		l.from = end.Add(3 * skewAllowance)
		lapsed = true
	}
	l.expiry = start.Add(length)
	l.lastBeat = end
	return lapsed
}

// measured records the clock skew the last heartbeat measured against the file server.
func (l *lease) measured(skew, allowance time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.skew = skew
	if skew > allowance {
		l.skewErr = fmt.Errorf("%w: clock skew %v against the file server exceeds the allowance %v: fix NTP", ErrUnwritable, skew.Round(time.Millisecond), allowance)
	} else {
		l.skewErr = nil
	}
}

// Skew returns the clock skew against the file server measured by the last heartbeat (0 before
// the first, or in a spool opened with Inspect).
func (s *Spool) Skew() time.Duration {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return s.lease.skew
}
