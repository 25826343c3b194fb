package auth

import (
	"context"
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

	files *filewatch.Tracker // owned by Run's goroutine (initialised by NewWatcher)
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
	w := &Watcher{path: path, interval: interval, logger: logger, files: filewatch.NewTracker(readFile, path)}
	var ps *Principals
	if err := w.files.Init(func(data [][]byte) (err error) {
		ps, err = parseFile(path, data[0])
		return err
	}); err != nil {
		return nil, err
	}
	w.cur.Store(ps)
	return w, nil
}

// Current returns the principals now in force; never nil after NewWatcher succeeded.
func (w *Watcher) Current() *Principals { return w.cur.Load() }

// Run polls the file every interval until ctx ends, then returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	return filewatch.Every(ctx, w.interval, w.poll)
}

// poll looks at the file once and reloads it if its identity changed.
func (w *Watcher) poll() {
	var ps *Principals
	res, err := w.files.Poll(time.Now(), func(data [][]byte) (err error) {
		ps, err = Parse(data[0])
		return err
	})
	switch res {
	case filewatch.Unchanged:
	case filewatch.Loaded:
		w.cur.Store(ps)
		w.logger.Info("auth file: reloaded", "path", w.path, "principals", ps.Len())
	case filewatch.Restored:
		w.logger.Info("auth file: valid again, unchanged", "path", w.path)
	default:
		w.logger.Error("auth file: "+res.String()+"; keeping the current principals", "path", w.path, "err", err)
	}
}
