package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// State is a segment state: the directory it lives in.
type State string

// The states a segment can be in.
const (
	// StateOpen is a writer's open segment: appended to, not yet claimable.
	StateOpen State = dirOpen
	// StateRecovering is an open segment of a dead writer, claimed by a recoverer.
	StateRecovering State = dirRecovering
	StateReady      State = dirReady
	StateClaimed    State = dirClaimed
	StateDead       State = dirDead
	StateQuarantine State = dirQuarantine
)

// States lists every state in pipeline order.
var States = []State{StateOpen, StateRecovering, StateReady, StateClaimed, StateDead, StateQuarantine}

// isOpenState reports whether st holds open segments, whose names carry neither count nor size.
func isOpenState(st State) bool { return st == StateOpen || st == StateRecovering }

// ParseState parses a state name as the CLI takes it.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q (want open, recovering, ready, claimed, dead or quarantine)", s)
}

// StateStats counts the segments in one state.
type StateStats struct {
	Segments int   `json:"segments"`
	Messages int   `json:"messages"`
	Bytes    int64 `json:"bytes"`
}

// Stats is the content of the spool by state. It is computed from directory listings, plus a
// stat of each open segment (a few: one or two per writer) for its size; the messages of an open
// segment are counted once it is sealed or recovered.
type Stats struct {
	Open       StateStats `json:"open"`
	Recovering StateStats `json:"recovering"`
	Ready      StateStats `json:"ready"`
	Claimed    StateStats `json:"claimed"`
	Dead       StateStats `json:"dead"`
	Quarantine StateStats `json:"quarantine"`
	// OldestAgeSeconds is the age of the oldest undelivered (open, ready or claimed) segment, 0
	// if none. An open segment counts from its last write.
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	// Priorities breaks the claimable segments (ready and claimed) down by priority, highest
	// first, listing only the priorities that have some.
	Priorities []PriorityStats `json:"priorities,omitempty"`
}

// PriorityStats counts the ready and claimed segments of one priority.
type PriorityStats struct {
	Priority uint8 `json:"priority"`
	StateStats
	// OldestAgeSeconds is the age of its oldest segment.
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
}

// Undelivered is how many segments still hold messages on their way: open (being written, or
// left by a dead writer), being recovered, ready and claimed.
func (st Stats) Undelivered() int {
	return st.Open.Segments + st.Recovering.Segments + st.Ready.Segments + st.Claimed.Segments
}

// plausibleSize is e's size as the capacity figures count it: what its name says, unless the
// name claims more than any writer makes and its file disagrees (one renamed by hand once made
// the spool look 550 GB full and the API refuse everything); then the file's, with a warning
// once per name. `verify` reports the name.
func (s *Spool) plausibleSize(e Entry) int64 {
	if e.Bytes <= implausibleSegmentBytes {
		return e.Bytes
	}
	fi, err := s.fs.Stat(s.path(string(e.State), e.Name))
	if err != nil || fi.Size() == e.Bytes {
		return e.Bytes
	}
	if _, seen := s.lyingNames.LoadOrStore(e.Name, true); !seen {
		s.log.Warn("a segment's name claims a size its file does not have; counting the file's (spool verify reports it)",
			"segment", e.Name, "name_bytes", e.Bytes, "file_bytes", fi.Size())
	}
	return fi.Size()
}

// Stats lists every state directory and sums what the names say.
func (s *Spool) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var oldest time.Time
	var lanes [message.MaxPriority + 1]struct {
		StateStats
		oldest time.Time
	}
	for _, state := range States {
		entries, err := s.list(state)
		if err != nil {
			return st, err
		}
		var ss StateStats
		for _, e := range entries {
			if isOpenState(state) && e.Bytes == 0 {
				continue // created ahead, never written: not a segment yet
			}
			size := s.plausibleSize(e)
			ss.Segments++
			ss.Messages += e.Messages
			ss.Bytes += size
			undelivered := state == StateReady || state == StateClaimed || (isOpenState(state) && e.Bytes > 0)
			if undelivered && (oldest.IsZero() || e.Created.Before(oldest)) {
				oldest = e.Created
			}
			if state == StateReady || state == StateClaimed {
				l := &lanes[e.Priority] // names hold 0 to MaxPriority
				l.Segments++
				l.Messages += e.Messages
				l.Bytes += size
				if l.oldest.IsZero() || e.Created.Before(l.oldest) {
					l.oldest = e.Created
				}
			}
		}
		switch state {
		case StateOpen:
			st.Open = ss
		case StateRecovering:
			st.Recovering = ss
		case StateReady:
			st.Ready = ss
		case StateClaimed:
			st.Claimed = ss
		case StateDead:
			st.Dead = ss
		case StateQuarantine:
			st.Quarantine = ss
		}
	}
	if !oldest.IsZero() {
		st.OldestAgeSeconds = max(0, s.now().Sub(oldest).Seconds())
	}
	for p, l := range lanes {
		if l.Segments > 0 {
			st.Priorities = append(st.Priorities, PriorityStats{Priority: uint8(p), StateStats: l.StateStats,
				OldestAgeSeconds: max(0, s.now().Sub(l.oldest).Seconds())})
		}
	}
	return st, nil
}

// Entry describes one segment file.
type Entry struct {
	State State
	// Name is the file name in the state's directory.
	Name string
	// ID is the segment's base name, the same in every state.
	ID       string
	Created  time.Time
	Messages int
	Bytes    int64
	Attempt  int
	// Priority is the priority of the segment's messages (open segments: unknown, the default).
	Priority uint8
	// NotBefore is set on a ready segment that waits for a retry.
	NotBefore time.Time
	// Owner and Deadline are set on a claimed segment.
	Owner    string
	Deadline time.Time
}

// List returns the segments in state, oldest first.
func (s *Spool) List(ctx context.Context, state State) ([]Entry, error) {
	out, err := s.list(state)
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// list returns the segments in state in directory order: Stats (run by the periodic scan every
// second), Find and Purge need no order.
func (s *Spool) list(state State) ([]Entry, error) {
	names, err := s.fs.ReadDir(s.path(string(state)))
	if err != nil {
		if isOpenState(state) && fsys.IsNotExist(err) {
			return nil, nil // a format-1 spool, inspected: no writer of format 2 made them yet
		}
		return nil, fmt.Errorf("list %s: %w", state, err)
	}
	out := make([]Entry, 0, len(names))
	if isOpenState(state) {
		for _, e := range names {
			n, ok := parseOpenName(string(state), e)
			if !ok {
				continue
			}
			en := Entry{State: state, Name: e, ID: n.id(), Created: n.Created, Owner: n.Owner, Deadline: n.Deadline, Priority: message.DefaultPriority}
			// The size is not in the name: a stat each (open segments are few). An open segment
			// is as old as its last write, not its creation (it may have been created ahead).
			if fi, err := s.fs.Stat(s.path(string(state), e)); err == nil {
				// An open segment is created with a hole to MaxSegmentBytes: it takes what was
				// written to it, not the size it was given.
				en.Bytes = fsys.Allocated(fi)
				if state == StateOpen && fi.Size() > 0 {
					en.Created = fi.ModTime()
				}
			}
			out = append(out, en)
		}
		return out, nil
	}
	for _, e := range names {
		n, ok := parseName(string(state), e)
		if !ok {
			continue
		}
		out = append(out, Entry{
			State: state, Name: e, ID: n.segBase.String(), Created: n.Created,
			Messages: n.Count, Bytes: n.Bytes, Attempt: n.Attempt, Priority: n.Priority,
			NotBefore: n.NotBefore, Owner: n.Owner, Deadline: n.Deadline,
		})
	}
	return out, nil
}

// implausibleSegmentBytes is past any segment a writer seals (MaxSegmentBytes, or one Append of
// at most a request's 16 MiB) or a recoverer publishes: a name claiming more is checked against
// its file.
const implausibleSegmentBytes = 256 << 20

// Find returns the entry for a segment given by file name or by ID, in any state.
func (s *Spool) Find(ctx context.Context, name string) (Entry, error) {
	id := name
	if i := strings.IndexByte(name, '.'); i >= 0 {
		id = name[:i]
	}
	if _, ok := parseBase(id); !ok {
		if _, ok := parseOpenName(dirOpen, id+".open"); !ok {
			return Entry{}, fmt.Errorf("%q is not a segment name or id (as `spool ls` prints)", name)
		}
	}
	for _, st := range States {
		entries, err := s.list(st)
		if err != nil {
			return Entry{}, err
		}
		for _, e := range entries {
			if e.ID == id {
				return e, nil
			}
		}
	}
	return Entry{}, fmt.Errorf("segment %s: %w", id, errNotFound)
}

var errNotFound = errors.New("not found")

// IsNotFound reports whether err says a segment named by an operator does not exist.
func IsNotFound(err error) bool { return errors.Is(err, errNotFound) }

// Reason returns the reason file of a dead or quarantined segment ("" if none).
func (s *Spool) Reason(ctx context.Context, e Entry) (string, error) {
	n, _ := parseName(string(e.State), e.Name)
	b, err := s.fs.ReadFile(s.path(string(e.State), n.reason()))
	if fsys.IsNotExist(err) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// SplitReason splits the body of a reason file (as Reason returns it: the RFC 3339 time the
// segment was set aside, a newline, the reason) into that time and the reason. A body in another
// shape is all reason, with the zero time.
func SplitReason(body string) (time.Time, string) {
	at, reason, ok := strings.Cut(body, "\n")
	t, err := time.Parse(time.RFC3339, at)
	if !ok || err != nil {
		return time.Time{}, strings.ReplaceAll(strings.TrimSpace(body), "\n", " ")
	}
	return t, strings.ReplaceAll(strings.TrimSpace(reason), "\n", " ")
}

// Read decodes a segment's records. With damage it returns the intact records and a
// *CorruptionError. An open segment's records are read up to its last intact one (its writer may
// be appending); only a damaged header is damage there.
func (s *Spool) Read(ctx context.Context, e Entry) ([]message.Message, error) {
	msgs, _, err := s.read(e)
	return msgs, err
}

// read is Read, also returning the file's size.
func (s *Spool) read(e Entry) ([]message.Message, int64, error) {
	b, err := s.fs.ReadFile(s.path(string(e.State), e.Name))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", e.Name, err)
	}
	var msgs []message.Message
	if isOpenState(e.State) {
		msgs, _, err = decodeOpen(e.Name, b)
	} else {
		_, msgs, err = decodeSegment(e.Name, b)
	}
	return msgs, int64(len(b)), err
}

// Requeue moves a dead or quarantined segment back to ready/ with its attempt count reset, and
// removes its reason. A quarantined segment's intact records may have been re-spooled already
// (its reason says "re-spooled as"): requeueing it then delivers them twice; the CLI asks first.
func (s *Spool) Requeue(ctx context.Context, e Entry) error {
	if e.State != StateDead && e.State != StateQuarantine {
		return fmt.Errorf("requeue %s: segment is %s; only dead and quarantined segments can be requeued", e.ID, e.State)
	}
	dir := string(e.State)
	n, _ := parseName(dir, e.Name)
	back := segName{segBase: n.segBase}
	if err := s.renameResolved(s.path(dir, e.Name), s.path(dirReady, back.ready())); err != nil {
		if fsys.IsNotExist(err) {
			return fmt.Errorf("requeue %s: %w", e.ID, errNotFound)
		}
		return fmt.Errorf("requeue %s: %w", e.ID, err)
	}
	// The move must be durable before the reason goes, or a crash could leave a dead segment
	// without its reason.
	if err := s.syncDir(dirReady); err != nil {
		return fmt.Errorf("requeue %s: %w", e.ID, err)
	}
	if err := s.fs.Remove(s.path(dir, n.reason())); err != nil && !fsys.IsNotExist(err) {
		return fmt.Errorf("requeue %s: remove reason: %w", e.ID, err)
	}
	return s.syncDir(dir)
}

// Purge removes the dead or quarantined segments (and their reasons) set aside before cutoff;
// segments without a reason file count from their creation time. progress, if not nil, is called
// after each file with (done, total). Nothing but an operator's command purges quarantine/.
func (s *Spool) Purge(ctx context.Context, state State, cutoff time.Time, progress func(done, total int)) (int, error) {
	if state != StateDead && state != StateQuarantine {
		return 0, fmt.Errorf("purge: only dead and quarantined segments can be purged (the others are live)")
	}
	dir := string(state)
	entries, err := s.list(state)
	if err != nil {
		return 0, err
	}
	removed := 0
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, _ := parseName(dir, e.Name)
		at := e.Created
		if fi, err := s.fs.Stat(s.path(dir, n.reason())); err == nil {
			at = fi.ModTime()
		}
		if at.Before(cutoff) {
			if err := s.fs.Remove(s.path(dir, e.Name)); err != nil && !fsys.IsNotExist(err) {
				return removed, fmt.Errorf("purge %s: %w", e.Name, err)
			}
			if err := s.fs.Remove(s.path(dir, n.reason())); err != nil && !fsys.IsNotExist(err) {
				return removed, fmt.Errorf("purge %s: %w", n.reason(), err)
			}
			removed++
		}
		if progress != nil {
			progress(i+1, len(entries))
		}
	}
	if removed > 0 {
		// Not needed for safety (a lost unlink only brings a dead segment back), but it makes
		// the purge stick across a server crash.
		if err := s.syncDir(dir); err != nil {
			return removed, fmt.Errorf("purge: %w", err)
		}
	}
	return removed, nil
}

// Damage is one problem Verify found with one segment.
type Damage struct {
	Entry Entry
	// Intact is how many records are still readable.
	Intact int
	Err    error
}

// Verify reads every segment in every state, checks every checksum and checks each sealed
// segment's name (its message count and size) against its contents. It returns every problem,
// going on past segments it cannot read (a directory named like a segment, an I/O error);
// segments that vanish while it runs (delivered meanwhile) are skipped. err is only for what
// stops it: a state directory that cannot be listed, or ctx. progress, if not nil, is called
// after each segment with (done, total).
func (s *Spool) Verify(ctx context.Context, progress func(done, total int)) (checked int, damaged []Damage, err error) {
	var all []Entry
	for _, st := range States {
		entries, err := s.List(ctx, st)
		if err != nil {
			return 0, nil, err
		}
		all = append(all, entries...)
	}
	for i, e := range all {
		if err := ctx.Err(); err != nil {
			return checked, damaged, err
		}
		msgs, size, err := s.read(e)
		switch {
		case err == nil:
			checked++
			if d, ok := nameLies(e, len(msgs), size); ok {
				damaged = append(damaged, d)
			}
		case errors.Is(err, ErrCorrupt):
			checked++
			damaged = append(damaged, Damage{Entry: e, Intact: len(msgs), Err: err})
		case fsys.IsNotExist(err) || fsys.IsStale(err):
		default:
			checked++
			damaged = append(damaged, Damage{Entry: e, Err: fmt.Errorf("unreadable: %w", err)})
		}
		if progress != nil {
			progress(i+1, len(all))
		}
	}
	return checked, damaged, nil
}

// ErrNameMismatch is wrapped by the Damage of a sealed segment whose name's count or size is not
// what the file holds: capacity and stats are summed from names, so such a name misleads them.
var ErrNameMismatch = errors.New("name does not match contents")

// nameLies compares a sealed segment's name with its contents: msgs records read back whole
// from size bytes.
func nameLies(e Entry, msgs int, size int64) (Damage, bool) {
	if isOpenState(e.State) || (size == e.Bytes && msgs == e.Messages) {
		return Damage{}, false // an open name carries no count or size
	}
	return Damage{Entry: e, Intact: msgs, Err: fmt.Errorf("%w: the name says %d messages and %d bytes, the file has %d and %d",
		ErrNameMismatch, e.Messages, e.Bytes, msgs, size)}, true
}
