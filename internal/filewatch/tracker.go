package filewatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Every calls poll every interval until ctx ends, then returns nil: the Run loop of a reloader.
func Every(ctx context.Context, interval time.Duration, poll func()) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			poll()
		}
	}
}

// Result is what one Tracker.Poll found.
type Result int

const (
	// Unchanged: nothing new to put in force or to report.
	Unchanged Result = iota
	// Loaded: new content was accepted by load and is now in force.
	Loaded
	// Restored: after a failure, the files hold the content in force again (touched, re-linked
	// or put back); nothing was loaded.
	Restored
	// StatFailed: the files could not be looked at. Reported once until they can be again.
	StatFailed
	// Missing: a file does not exist (it may be mid-replacement). Reported once per identity.
	Missing
	// Unreadable: a file could not be read. Reported at every poll until it can be, since each
	// poll reads it again.
	Unreadable
	// Invalid: load refused new content. Reported once per content.
	Invalid
)

// String returns the word a log line uses for r: "stat failed", "missing", "unreadable",
// "invalid", "loaded", "restored" or "unchanged".
func (r Result) String() string {
	switch r {
	case Loaded:
		return "loaded"
	case Restored:
		return "restored"
	case StatFailed:
		return "stat failed"
	case Missing:
		return "missing"
	case Unreadable:
		return "unreadable"
	case Invalid:
		return "invalid"
	}
	return "unchanged"
}

// Tracker follows one set of files through its versions for a polling reloader (the principals
// file, the TLS files): it loads new content once, keeps the content in force while the files
// are missing, unreadable or invalid, and reports each such failure once rather than at every
// poll (except Unreadable). A file whose ID is unchanged is read again only while it is Racy, and
// bytes already looked at (loaded or refused) are not loaded again. The content in force is the
// caller's; the Tracker keeps only a hash of it.
//
// A Tracker is owned by one goroutine (the poll loop); Init must succeed before Poll is called.
type Tracker struct {
	paths []string
	read  func(path string) ([]byte, error)

	seen    ID                // identity last looked at, loaded or not
	seenSum [sha256.Size]byte // hash of the bytes last read, loaded or not
	inForce [sha256.Size]byte // hash of the bytes now in force
	failed  bool              // whether the last look failed (to report a recovery)
}

// NewTracker returns a Tracker of paths, each read with read (whose errors should name the path).
func NewTracker(read func(path string) ([]byte, error), paths ...string) *Tracker {
	return &Tracker{paths: slices.Clone(paths), read: read}
}

// Init reads the files and calls load with their contents, one slice per path in order; when
// load returns nil that content is in force. Any failure, a missing file included, is returned as
// the stat, read or load error it is.
func (t *Tracker) Init(load func(data [][]byte) error) error {
	id, err := Stat(t.paths...)
	if err != nil {
		return err
	}
	data, sum, err := t.readAll()
	if err != nil {
		return err
	}
	if err := load(data); err != nil {
		return err
	}
	t.seen, t.seenSum, t.inForce = id, sum, sum
	return nil
}

// Poll looks at the files once, at now, and calls load with their contents (as Init does) when
// they hold bytes not looked at before. err is nil except with a failure Result, where it says
// what went wrong; a failure the Tracker has already reported comes back as Unchanged.
func (t *Tracker) Poll(now time.Time, load func(data [][]byte) error) (Result, error) {
	id, err := Stat(t.paths...)
	if err != nil {
		report := !id.Same(t.seen) // once until the files can be looked at again
		t.seen, t.seenSum, t.failed = id, [sha256.Size]byte{}, true
		if !report {
			return Unchanged, nil
		}
		return StatFailed, err
	}
	if id.Same(t.seen) && !id.Racy(now) {
		return Unchanged, nil
	}
	prev := t.seen
	t.seen = id
	if missing := id.Missing(); len(missing) > 0 {
		t.seenSum, t.failed = [sha256.Size]byte{}, true
		if id.Same(prev) { // another file may be racy: report once per state
			return Unchanged, nil
		}
		return Missing, fmt.Errorf("%s: %w", strings.Join(missing, ", "), os.ErrNotExist)
	}
	data, sum, err := t.readAll()
	if err != nil {
		// Vanished between stat and open, or unreadable: try again on the next poll.
		t.seen, t.seenSum, t.failed = ID{}, [sha256.Size]byte{}, true
		return Unreadable, err
	}
	if sum == t.seenSum {
		return Unchanged, nil // the bytes last looked at, loaded or refused: nothing new
	}
	t.seenSum = sum
	if sum == t.inForce {
		restored := t.failed
		t.failed = false
		if restored {
			return Restored, nil
		}
		return Unchanged, nil
	}
	if err := load(data); err != nil {
		t.failed = true
		return Invalid, err
	}
	t.inForce, t.failed = sum, false
	return Loaded, nil
}

// readAll returns the contents of t.paths and a hash over all of them.
func (t *Tracker) readAll() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	data := make([][]byte, len(t.paths))
	for i, path := range t.paths {
		b, err := t.read(path)
		if err != nil {
			return nil, [sha256.Size]byte{}, err
		}
		fmt.Fprintf(h, "%d:", len(b)) // length-prefixed, so bytes moving between files count
		h.Write(b)
		data[i] = b
	}
	return data, [sha256.Size]byte(h.Sum(nil)), nil
}
