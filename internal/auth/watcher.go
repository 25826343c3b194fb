package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/filewatch"
)

// DefaultWatchInterval is the poll interval NewWatcher uses when given zero or less (10 s). The
// kubelet itself refreshes a secret volume only every minute or so, so polling faster buys little.
const DefaultWatchInterval = 10 * time.Second

// Watcher keeps the principals loaded from one file current. It polls the file's identity
// (a filewatch.ID: device, inode, size, modification time, with symlinks followed) rather than
// using inotify, because Kubernetes replaces a secret volume's files by swapping a `..data`
// symlink, which inotify on the file's old path does not report. When the identity changes (or
// the mtime is too recent to trust, see filewatch.RacyWindow) the file is read; new bytes that
// parse replace the current set, bytes that do not are logged once and the old set kept.
// Rewriting the same bytes logs nothing.
//
// Current may be called from any goroutine (the set is an atomic pointer). The poll state is
// owned by the goroutine running Run, which must be called at most once.
type Watcher struct {
	path     string
	interval time.Duration
	logger   *slog.Logger

	cur atomic.Pointer[Principals]

	// Owned by Run's goroutine (set once by NewWatcher before Run starts).
	seen    filewatch.ID      // identity last looked at, loaded or not
	seenSum [sha256.Size]byte // hash of the bytes last read, loaded or not
	content [sha256.Size]byte // hash of the content now in force
	failed  bool              // whether the last look failed (to log a recovery)
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
	id, err := filewatch.Stat(path)
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
	id, err := filewatch.Stat(w.path)
	if err != nil {
		if !id.Same(w.seen) { // log once until the file can be looked at again
			w.logger.Error("auth file: stat failed; keeping the current principals", "path", w.path, "err", err)
		}
		w.seen, w.seenSum, w.failed = id, [sha256.Size]byte{}, true
		return
	}
	if id.Same(w.seen) && !id.Racy(time.Now()) {
		return
	}
	w.seen = id
	if len(id.Missing()) > 0 {
		w.logger.Error("auth file: missing; keeping the current principals", "path", w.path)
		w.seenSum, w.failed = [sha256.Size]byte{}, true
		return
	}
	data, err := readFile(w.path)
	if err != nil {
		// Vanished between stat and open, or unreadable: try again on the next poll.
		w.logger.Error("auth file: unreadable; keeping the current principals", "path", w.path, "err", err)
		w.seen, w.seenSum, w.failed = filewatch.ID{}, [sha256.Size]byte{}, true
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
