package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// Claim is a segment this process holds: its messages may be sent, then the claim is ended by
// exactly one of Ack, Release, DeadLetter or Settle. Renew it before Deadline while a send is slow.
// A Claim is owned by one goroutine.
type Claim struct {
	// ID is the segment's base name, the same in every state.
	ID string
	// Attempt counts the claims of this segment, this one included.
	Attempt int
	// Priority is the priority of every message in the segment (0 highest).
	Priority uint8
	// Deadline is when the lease ends; stop sending before it (minus a margin).
	Deadline time.Time
	// Messages are the segment's records, oldest first.
	Messages []message.Message
	// Salvaged is set when the segment was damaged: the intact records were re-written into
	// this claim and the damaged file quarantined.
	Salvaged bool

	name segName // current name in claimed/
}

// Name returns the claim's current file name in claimed/.
func (c *Claim) Name() string { return c.name.claimed() }

// claimState is the consuming role's own state, shared by this process's claiming goroutines
// and guarded by mu.
type claimState struct {
	mu    sync.Mutex
	cache readyCache // the claim candidates from the last listing of ready/
	// topRun counts this process's picks in a row of the highest priority waiting while a lower
	// one waited too, for the lower priorities' share (pickLaneLocked); nextLower is the lower
	// priority whose turn comes next.
	topRun    int
	nextLower uint8
	// passed counts, per priority, the picks in a row that passed over the oldest claimable
	// segment: at claimWindow it is taken, so the random pick keeps the order by age to within
	// a few segments (without it, one in a hundred segments waited out 85 others, simulated).
	passed [message.MaxPriority + 1]int
	// claiming holds the segments a goroutine of this process is claiming right now.
	claiming map[string]bool
	// deadlines and oldDeadlines hold the last deadline (Unix ms) this process put in a claimed
	// name of each segment, in two generations swapped every recentDeadlines, the current one
	// begun at deadlinesSince (see claimDeadline).
	deadlines, oldDeadlines map[string]int64
	deadlinesSince          int64
}

// readyCache holds the parsed listing of ready/, by priority, oldest first within each. Claimers
// in one process share it so that a listing (a READDIR round trip on NFS) serves many claims; a
// stale entry only costs a failed rename.
type readyCache struct {
	lanes [message.MaxPriority + 1][]segName
	at    time.Time
}

// lowerShare is how often a claim goes to a lower priority than the highest waiting: after
// lowerShare-1 picks in a row of the highest while a lower one waited, the next pick is a lower
// one. Those turns go round the waiting lower priorities in order, so none starves under a flood
// of a higher one, and a few alarms (fewer than lowerShare segments) all go before any telemetry
// waiting with them (docs/operations.md, "Priorities").
const lowerShare = 10

// claimWindow is how many of the oldest ready segments of a priority a claimer picks among at
// random, so that consumers on several hosts rarely race for the same file; the oldest is taken
// at the latest on the claimWindow-th pick (claimState.passed).
const claimWindow = 8

// Claim takes the oldest ready segment (at random among the few oldest) of the highest priority
// waiting (but one claim in lowerShare goes to a lower priority waiting, in turn) whose
// not-before time has passed, renames it into claimed/ under this process with attempt+1 and a deadline Lease from
// now, reads and verifies it. It returns ErrEmpty when nothing is ready. A segment at
// MaxAttempts is dead-lettered instead of claimed; a damaged one is quarantined and its intact
// records returned in a new segment.
func (s *Spool) Claim(ctx context.Context) (*Claim, error) {
	// tried holds the segments this call already attempted: a stale listing (NFS directory
	// cache) may keep offering a segment another consumer took; each is tried once per call.
	tried := map[string]bool{}
	refreshed := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cand, err := s.pickCandidate(tried, &refreshed)
		if err != nil {
			return nil, err
		}
		tried[cand.id] = true
		c, err := s.claimOne(cand)
		s.claims.mu.Lock()
		delete(s.claims.claiming, cand.id)
		s.claims.mu.Unlock()
		if errors.Is(err, errRaceLost) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c != nil {
			return c, nil
		}
	}
}

var errRaceLost = errors.New("lost the race for a segment")

// claimDeadline returns the deadline for a claimed name of segment id: Lease from now, and later,
// at the millisecond resolution of names, than any deadline this process gave id in the last few
// seconds. So no two claimed names this process makes for one segment are the same, and a
// claim whose rename fails with ENOENT and then finds its destination present knows the rename
// was its own (a lost reply), not another goroutine's claim from within the same millisecond
// (which a stale listing, an NFS directory cache, can offer again).
func (s *Spool) claimDeadline(id string) time.Time {
	ms := s.now().Add(s.opts.Lease).UnixMilli()
	s.claims.mu.Lock()
	defer s.claims.mu.Unlock()
	if ms-s.claims.deadlinesSince >= recentDeadlines.Milliseconds() {
		// Two generations, swapped every recentDeadlines: a deadline is remembered for at least
		// that long and at most twice, with no scan of the map under the lock.
		s.claims.oldDeadlines, s.claims.deadlines = s.claims.deadlines, make(map[string]int64, len(s.claims.deadlines))
		s.claims.deadlinesSince = ms
	}
	last, ok := s.claims.deadlines[id]
	if !ok {
		last, ok = s.claims.oldDeadlines[id]
	}
	if ok && ms <= last {
		ms = last + 1
	}
	s.claims.deadlines[id] = ms
	return time.UnixMilli(ms)
}

// recentDeadlines is how long claimDeadline remembers a deadline at least: far longer than the
// millisecond in which two claims could collide, and than a backward step of a synchronised
// clock.
const recentDeadlines = 10 * time.Second

// pickCandidate removes and returns a claimable name not in tried from the cache, refilling the
// cache from a fresh listing when it is old, or (once per Claim call) when it has nothing left.
func (s *Spool) pickCandidate(tried map[string]bool, refreshed *bool) (segName, error) {
	s.claims.mu.Lock()
	defer s.claims.mu.Unlock()
	now := s.now()
	if now.Sub(s.claims.cache.at) > s.opts.ScanInterval {
		if err := s.refreshCacheLocked(now); err != nil {
			return segName{}, err
		}
		*refreshed = true
	}
	for {
		// Eligible: not tried, not-before passed. Pick a priority (pickLane), then at random
		// among its first claimWindow.
		var windows [message.MaxPriority + 1][]int
		found := false
		for p := range s.claims.cache.lanes {
			windows[p] = s.eligibleLocked(p, claimWindow, now, tried)
			found = found || len(windows[p]) > 0
		}
		if found {
			p := s.pickLaneLocked(windows)
			window := windows[p]
			i := window[rand.IntN(len(window))]
			if i != window[0] {
				if s.claims.passed[p]++; s.claims.passed[p] >= claimWindow {
					i = window[0]
				}
			}
			if i == window[0] {
				s.claims.passed[p] = 0
			}
			lane := s.claims.cache.lanes[p]
			n := lane[i]
			s.claims.cache.lanes[p] = slices.Delete(lane, i, i+1)
			// Until this claim attempt ends, listings leave the segment out, so that no other
			// goroutine of this process spends a rename on it.
			s.claims.claiming[n.id] = true
			return n, nil
		}
		if *refreshed {
			return segName{}, ErrEmpty
		}
		if err := s.refreshCacheLocked(now); err != nil {
			return segName{}, err
		}
		*refreshed = true
	}
}

// Outranked reports whether a segment of a higher priority than c's is waiting in ready/. It
// lists ready/ afresh (and the claimers' listing is renewed with it): it is asked rarely, when a
// claim that waited out an outage may send again. Then the claim makes way: what has waited at
// a higher priority goes first when the sink returns.
func (s *Spool) Outranked(c *Claim) bool {
	if c.Priority == 0 {
		return false
	}
	s.claims.mu.Lock()
	defer s.claims.mu.Unlock()
	now := s.now()
	if err := s.refreshCacheLocked(now); err != nil {
		return false
	}
	for p := range int(c.Priority) {
		if len(s.eligibleLocked(p, 1, now, nil)) > 0 {
			return true
		}
	}
	return false
}

// eligibleLocked returns the indexes of up to limit claimable names of priority p in the cache:
// not tried by this call, not-before passed.
func (s *Spool) eligibleLocked(p, limit int, now time.Time, tried map[string]bool) []int {
	var out []int
	for i, n := range s.claims.cache.lanes[p] {
		if n.NotBefore.After(now) || tried[n.id] {
			continue
		}
		if out = append(out, i); len(out) == limit {
			break
		}
	}
	return out
}

// pickLaneLocked chooses the priority to claim from among those with a claimable segment (a
// window): the highest, except that after lowerShare-1 picks of it in a row while a lower one
// waited, a lower one, in turn.
func (s *Spool) pickLaneLocked(windows [message.MaxPriority + 1][]int) int {
	top, lowerWaits := -1, false
	for p, w := range windows {
		switch {
		case len(w) == 0:
		case top < 0:
			top = p
		default:
			lowerWaits = true
		}
	}
	if !lowerWaits {
		s.claims.topRun = 0
		return top
	}
	if s.claims.topRun < lowerShare-1 {
		s.claims.topRun++
		return top
	}
	s.claims.topRun = 0
	// The lower priorities' turn: the next waiting one from nextLower on, wrapping round.
	for k := range message.MaxPriority + 1 {
		p := (int(s.claims.nextLower) + k) % (message.MaxPriority + 1)
		if p > top && len(windows[p]) > 0 {
			s.claims.nextLower = uint8(p + 1)
			return p
		}
	}
	return top
}

func (s *Spool) refreshCacheLocked(now time.Time) error {
	entries, err := s.fs.ReadDir(s.path(dirReady))
	if err != nil {
		return fmt.Errorf("list ready: %w", err)
	}
	var c readyCache
	for _, e := range entries {
		// A segment being claimed may still be listed: its claim may succeed after the listing.
		if n, ok := parseName(dirReady, e); ok && !s.claims.claiming[n.id] {
			c.lanes[n.Priority] = append(c.lanes[n.Priority], n)
		}
	}
	for _, lane := range c.lanes {
		slices.SortFunc(lane, func(a, b segName) int { return strings.Compare(a.id, b.id) })
	}
	c.at = now
	s.claims.cache = c
	return nil
}

// claimOne tries to claim cand. It returns (nil, errRaceLost) when another consumer got there
// first, (nil, nil) when the segment was settled without a claim (dead-lettered or wholly
// damaged), or the claim.
func (s *Spool) claimOne(cand segName) (*Claim, error) {
	from := s.path(dirReady, cand.ready())
	if cand.Attempt >= s.opts.MaxAttempts {
		reason := fmt.Sprintf("gave up after %d delivery attempts", cand.Attempt)
		err := s.settleFile(from, dirDead, cand, reason)
		if fsys.IsNotExist(err) {
			return nil, errRaceLost
		}
		return nil, err
	}
	next := cand
	next.Attempt++
	next.NotBefore = time.Time{}
	next.Owner = s.writer
	next.Deadline = s.claimDeadline(next.id)
	to := s.path(dirClaimed, next.claimed())
	if err := s.renameResolved(from, to); err != nil {
		if fsys.IsNotExist(err) || fsys.IsStale(err) || fsys.IsBusy(err) {
			return nil, errRaceLost // another consumer won, or the file is held: try another
		}
		return nil, fmt.Errorf("claim %s: %w", cand.ready(), err)
	}
	// The attempt count must be durable before anything is sent, or a segment that crashes its
	// consumer would never reach MaxAttempts.
	if err := s.syncDir(dirClaimed); err != nil {
		s.log.Warn("fsync claimed/ failed; attempt count may not be durable", "segment", cand.segBase.String(), "err", err)
	}
	data, err := s.fs.ReadFile(to)
	if err != nil {
		if fsys.IsNotExist(err) || fsys.IsStale(err) {
			return nil, errRaceLost // reclaimed under us already
		}
		if errors.Is(err, syscall.EISDIR) || next.Attempt >= s.opts.MaxAttempts {
			// Not a file (something else took a segment's name), or unreadable at every try:
			// no sink will ever get it, so it is quarantined with the read error, not
			// dead-lettered as a delivery failure.
			s.log.Error("unreadable segment: quarantining", "segment", next.claimed(), "attempt", next.Attempt, "err", err)
			if qerr := s.settleFile(to, dirQuarantine, next, fmt.Sprintf("unreadable: %v (attempt %d)", err, next.Attempt)); qerr != nil {
				return nil, fmt.Errorf("quarantine unreadable %s: %w", next.claimed(), qerr)
			}
			return nil, nil
		}
		// Hand it back for later rather than hold it: the share may answer next time.
		c := &Claim{name: next}
		if rerr := s.Release(context.Background(), c, s.now().Add(s.opts.ScanInterval)); rerr != nil {
			s.log.Error("release after failed read", "segment", next.claimed(), "err", rerr)
		}
		return nil, fmt.Errorf("read %s: %w", next.claimed(), err)
	}
	_, msgs, derr := decodeSegment(next.claimed(), data)
	c := &Claim{ID: next.segBase.String(), Attempt: next.Attempt, Priority: next.Priority, Deadline: next.Deadline, Messages: msgs, name: next}
	if derr == nil {
		return c, nil
	}
	return s.salvage(c, derr)
}

// salvage handles a damaged claimed segment: its intact records go into a new segment claimed by
// us (same attempt and deadline), then the damaged file moves to quarantine/ with the reason.
// A crash between the two steps leaves both claimed: the reaper returns them and the intact
// records are delivered twice, never lost.
func (s *Spool) salvage(c *Claim, damage error) (*Claim, error) {
	s.log.Error("damaged segment: quarantining, delivering its intact records", "segment", c.ID, "intact", len(c.Messages), "expected", c.name.Count, "err", damage)
	var out *Claim
	if len(c.Messages) > 0 {
		data, base := encodeSegment(c.name.Created, s.writer, c.name.Priority, c.Messages)
		n := segName{segBase: base, Attempt: c.Attempt, Owner: s.writer, Deadline: c.Deadline}
		if err := s.writeFile(base.String()+".tmp", s.path(dirClaimed, n.claimed()), dirClaimed, data); err != nil {
			return nil, fmt.Errorf("salvage %s: %w", c.ID, err)
		}
		out = &Claim{ID: base.String(), Attempt: c.Attempt, Priority: c.Priority, Deadline: c.Deadline, Messages: c.Messages, Salvaged: true, name: n}
	}
	reason := fmt.Sprintf("damaged: %v; %d of %d records intact", damage, len(c.Messages), c.name.Count)
	if out != nil {
		reason += " and re-spooled as " + out.ID
	}
	if err := s.settleFile(s.path(dirClaimed, c.Name()), dirQuarantine, c.name, reason); err != nil {
		return out, fmt.Errorf("quarantine %s: %w", c.ID, err)
	}
	return out, nil
}

// settleFile writes the reason file, then moves the segment at from into dir (dead/ or
// quarantine/). The reason goes first so a settled segment never lacks one.
//
// A source that is gone while the destination exists means the move was already made (a retry,
// or a reply lost): nothing is done, and the first reason stays. A source that is gone while
// the destination is too returns the not-exist error: someone else took the segment.
func (s *Spool) settleFile(from, dir string, n segName, reason string) error {
	if _, err := s.fs.Stat(from); err != nil {
		if _, derr := s.fs.Stat(s.path(dir, n.settled())); derr == nil {
			return nil
		}
		return err
	}
	if err := s.writeReason(dir, n, reason); err != nil {
		return err
	}
	if err := s.renameResolved(from, s.path(dir, n.settled())); err != nil {
		_ = s.fs.Remove(s.path(dir, n.reason()))
		return err
	}
	return s.syncDir(dir)
}

// writeReason durably writes dir/<n>.reason: the time and the reason, one line each.
func (s *Spool) writeReason(dir string, n segName, reason string) error {
	body := fmt.Sprintf("%s\n%s\n", s.now().UTC().Format(time.RFC3339), strings.ReplaceAll(reason, "\n", " "))
	if err := s.writeFile(tmpName(s.now(), s.writer, "reason"), s.path(dir, n.reason()), dir, []byte(body)); err != nil {
		return fmt.Errorf("write reason: %w", err)
	}
	return nil
}

// Renew extends c's lease to Lease from now. ErrLostClaim means the claim was taken over: stop
// sending its messages.
func (s *Spool) Renew(ctx context.Context, c *Claim) error {
	next := c.name
	next.Deadline = s.claimDeadline(next.id)
	if err := s.moveClaim(c, s.path(dirClaimed, next.claimed())); err != nil {
		return fmt.Errorf("renew %s: %w", c.ID, err)
	}
	c.name, c.Deadline = next, next.Deadline
	return nil
}

// Ack ends c after every message was delivered: the claimed file is unlinked by its exact name.
// ErrLostClaim means the file was already gone: the claim had been taken over (the messages may
// be delivered again: a duplicate, never a loss), or an earlier unlink's reply was lost.
func (s *Spool) Ack(ctx context.Context, c *Claim) error {
	err := s.fs.Remove(s.path(dirClaimed, c.Name()))
	switch {
	case err == nil:
		return nil
	case fsys.IsNotExist(err) || fsys.IsStale(err):
		s.log.Warn("ack found the claim gone: possible duplicate delivery", "segment", c.ID, "attempt", c.Attempt)
		return fmt.Errorf("ack %s: %w", c.ID, ErrLostClaim)
	default:
		return fmt.Errorf("ack %s: %w", c.ID, err)
	}
}

// Release ends c without delivering it: the segment goes back to ready/, claimable again after
// notBefore (the zero time means at once).
func (s *Spool) Release(ctx context.Context, c *Claim, notBefore time.Time) error {
	next := c.name
	next.Owner, next.Deadline, next.NotBefore = "", time.Time{}, notBefore
	if err := s.moveClaim(c, s.path(dirReady, next.ready())); err != nil {
		return fmt.Errorf("release %s: %w", c.ID, err)
	}
	return nil
}

// DeadLetter ends c by moving the whole segment to dead/ with reason (the sink's words).
func (s *Spool) DeadLetter(ctx context.Context, c *Claim, reason string) error {
	return s.settleClaim(c, dirDead, "dead-letter", reason)
}

// Quarantine ends c by moving the whole segment to quarantine/ with reason: for a segment whose
// records decode but that a consumer judges damaged. Quarantined segments are kept for a human
// and never deleted by the program.
func (s *Spool) Quarantine(ctx context.Context, c *Claim, reason string) error {
	if err := s.settleClaim(c, dirQuarantine, "quarantine", reason); err != nil {
		return err
	}
	s.log.Error("segment quarantined", "segment", c.ID, "reason", reason)
	return nil
}

// settleClaim moves c's claimed file into dir (dead/ or quarantine/) with reason; verb names the
// operation in errors. A claimed file that is gone (and not already settled) is a lost claim.
func (s *Spool) settleClaim(c *Claim, dir, verb, reason string) error {
	err := s.settleFile(s.path(dirClaimed, c.Name()), dir, c.name, reason)
	if fsys.IsNotExist(err) {
		err = ErrLostClaim
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, c.ID, err)
	}
	return nil
}

// Outcome is the result of sending a claim whose messages fared differently. Messages in neither
// list count as delivered.
type Outcome struct {
	// Retry are the messages to send again after NotBefore.
	Retry     []message.Message
	NotBefore time.Time
	// Dead are the messages that can never be delivered, for the reason Reason.
	Dead   []message.Message
	Reason string
}

// Settle ends c with a mixed outcome: Retry and Dead are written as new segments (keeping the
// attempt count, so poison still reaches MaxAttempts), and only then the claimed file is
// unlinked. A crash in between re-delivers the segment later: duplicates, never a loss.
func (s *Spool) Settle(ctx context.Context, c *Claim, o Outcome) error {
	switch {
	case len(o.Retry) == 0 && len(o.Dead) == 0:
		return s.Ack(ctx, c)
	case len(o.Retry) == len(c.Messages) && len(o.Dead) == 0:
		return s.Release(ctx, c, o.NotBefore)
	case len(o.Dead) == len(c.Messages) && len(o.Retry) == 0:
		return s.DeadLetter(ctx, c, o.Reason)
	}
	if len(o.Retry) > 0 {
		data, base := encodeSegment(c.name.Created, s.writer, c.name.Priority, o.Retry)
		n := segName{segBase: base, Attempt: c.Attempt, NotBefore: o.NotBefore}
		if err := s.writeFile(base.String()+".tmp", s.path(dirReady, n.ready()), dirReady, data); err != nil {
			return fmt.Errorf("settle %s: respool retries: %w", c.ID, err)
		}
	}
	if len(o.Dead) > 0 {
		data, base := encodeSegment(c.name.Created, s.writer, c.name.Priority, o.Dead)
		n := segName{segBase: base, Attempt: c.Attempt}
		if err := s.writeReason(dirDead, n, o.Reason); err != nil {
			return fmt.Errorf("settle %s: %w", c.ID, err)
		}
		if err := s.writeFile(base.String()+".tmp", s.path(dirDead, n.settled()), dirDead, data); err != nil {
			return fmt.Errorf("settle %s: dead-letter: %w", c.ID, err)
		}
	}
	return s.Ack(ctx, c)
}

// moveClaim renames c's claimed file to dst; a failure whose reply was lost is resolved by
// renameResolved, and a missing source means the claim was lost.
func (s *Spool) moveClaim(c *Claim, dst string) error {
	err := s.renameResolved(s.path(dirClaimed, c.Name()), dst)
	switch {
	case err == nil:
		return nil
	case fsys.IsNotExist(err) || fsys.IsStale(err):
		return ErrLostClaim
	default:
		return err
	}
}
