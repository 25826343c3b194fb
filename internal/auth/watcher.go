package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// DefaultWatchInterval is the poll interval NewWatcher uses when given zero or less (10 s). The
// kubelet itself refreshes a secret volume only every minute or so, so polling faster buys little.
const DefaultWatchInterval = 10 * time.Second

// Watcher keeps the principals loaded from one file current. It polls the file's identity
// (device, inode, size, modification time, with symlinks followed) rather than using inotify,
// because Kubernetes replaces a secret volume's files by swapping a `..data` symlink, which
// inotify on the file's old path does not report. When the identity changes (or the mtime is too
// recent to trust, see racyWindow) the file is read; new bytes that parse replace the current set,
// bytes that do not are logged once and the old set kept. Rewriting the same bytes logs nothing.
//
// Current may be called from any goroutine (the set is an atomic pointer). The poll state is
// owned by the goroutine running Run, which must be called at most once.
type Watcher struct {
	path     string
	interval time.Duration
	logger   *slog.Logger

	cur atomic.Pointer[Principals]

	// Owned by Run's goroutine (set once by NewWatcher before Run starts).
	seen    fileID            // identity last looked at, loaded or not
	seenSum [sha256.Size]byte // hash of the bytes last read, loaded or not
	content [sha256.Size]byte // hash of the content now in force
	failed  bool              // whether the last look failed (to log a recovery)
}

// fileID is what tells one version of the file from the next: the file itself (device and
// inode, compared with os.SameFile), its size and modification time. The zero fileID stands for
// "could not stat", missing for "does not exist".
type fileID struct {
	fi      os.FileInfo
	missing bool
}

func (a fileID) same(b fileID) bool {
	switch {
	case a.missing || b.missing:
		return a.missing == b.missing
	case a.fi == nil || b.fi == nil:
		return a.fi == nil && b.fi == nil
	}
	return os.SameFile(a.fi, b.fi) && a.fi.Size() == b.fi.Size() && a.fi.ModTime().Equal(b.fi.ModTime())
}

// racyWindow is how recent a modification time must be for an unchanged identity not to be
// trusted. File systems keep mtime in coarse ticks (a few ms on Linux, 2 s on FAT), so a file
// rewritten in place at the same size within one tick keeps its identity; like git's "racily
// clean" index entries, such a file is read again (and compared by content) until its mtime is
// older than this.
const racyWindow = 2 * time.Second

func (a fileID) racy(now time.Time) bool {
	return a.fi != nil && now.Sub(a.fi.ModTime()) < racyWindow
}

// NewWatcher loads the principals file at path and returns a Watcher holding it; a file that
// cannot be loaded is an error, so a server never starts with no or a broken principals set.
// interval is the poll period (DefaultWatchInterval when <= 0); a nil logger discards. No
// goroutine is started until Run.
func NewWatcher(path string, interval time.Duration, logger *slog.Logger) (*Watcher, error) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, interval: interval, logger: logger}
	id, err := statFile(path)
	if err != nil {
		return nil, fmt.Errorf("watch principals %s: %w", path, err)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	ps, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load principals %s: %w", path, err)
	}
	w.seen = id
	w.seenSum = sha256.Sum256(data)
	w.content = w.seenSum
	w.cur.Store(ps)
	return w, nil
}

// Current returns the principals now in force; never nil after NewWatcher succeeded.
func (w *Watcher) Current() *Principals { return w.cur.Load() }

// Run polls the file every interval until ctx ends, then returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.poll()
		}
	}
}

// poll looks at the file once and reloads it if its identity changed.
func (w *Watcher) poll() {
	id, err := statFile(w.path)
	if err != nil {
		if !id.same(w.seen) { // log once until the file can be looked at again
			w.logger.Error("auth file: stat failed; keeping the current principals", "path", w.path, "err", err)
		}
		w.seen, w.seenSum, w.failed = id, [sha256.Size]byte{}, true
		return
	}
	if id.same(w.seen) && !id.racy(time.Now()) {
		return
	}
	w.seen = id
	if id.missing {
		w.logger.Error("auth file: missing; keeping the current principals", "path", w.path)
		w.seenSum, w.failed = [sha256.Size]byte{}, true
		return
	}
	data, err := readFile(w.path)
	if err != nil {
		// Vanished between stat and open, or unreadable: try again on the next poll.
		w.logger.Error("auth file: unreadable; keeping the current principals", "path", w.path, "err", err)
		w.seen, w.seenSum, w.failed = fileID{}, [sha256.Size]byte{}, true
		return
	}
	sum := sha256.Sum256(data)
	if sum == w.seenSum {
		return // the bytes last looked at, loaded or refused: nothing new to do or log
	}
	w.seenSum = sum
	ps, err := Parse(data)
	if err != nil {
		w.logger.Error("auth file: invalid; keeping the current principals", "path", w.path, "err", err)
		w.failed = true
		return
	}
	if sum == w.content {
		if w.failed {
			w.logger.Info("auth file: valid again, unchanged", "path", w.path)
		}
		w.failed = false
		return // touched or re-linked, same content
	}
	w.content, w.failed = sum, false
	w.cur.Store(ps)
	w.logger.Info("auth file: reloaded", "path", w.path, "principals", ps.Len())
}

// statFile returns the identity of the file path resolves to. A missing file is not an error
// (it may be mid-replacement); it is reported as missing.
func statFile(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileID{missing: true}, nil
	}
	if err != nil {
		return fileID{}, err
	}
	return fileID{fi: fi}, nil
}
