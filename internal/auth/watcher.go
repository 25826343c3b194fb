package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/filewatch"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultWatchInterval is the poll interval WatchOptions.Interval defaults to (10 s). The
// kubelet itself refreshes a secret volume only every minute or so, so polling faster buys little.
const DefaultWatchInterval = 10 * time.Second

// The Watcher's metrics, registered on WatchOptions.Registerer.
const (
	// ReloadFailuresMetric counts the failures Run reported (file missing, unreadable or invalid),
	// each once, as it is logged.
	ReloadFailuresMetric = "bridgehead_auth_principals_reload_failures_total"
	// ReloadFailingMetric is 1 from a reported failure until the file is usable again (a new
	// valid version loaded, or the version in force restored), 0 otherwise: the principals in
	// force are then not what the file says.
	ReloadFailingMetric = "bridgehead_auth_principals_reload_failing"
	// LastReloadSuccessMetric is when the principals in force were last loaded from the file, or
	// found in it again after a failure, in Unix seconds; NewWatcher's load counts.
	LastReloadSuccessMetric = "bridgehead_auth_principals_last_reload_success_timestamp_seconds"
)

// WatchOptions configures a Watcher.
type WatchOptions struct {
	// Interval is the poll period; DefaultWatchInterval when zero or less.
	Interval time.Duration
	// Logger receives reload events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the reload metrics (ReloadFailuresMetric, ReloadFailingMetric,
	// LastReloadSuccessMetric); nil exports nothing.
	Registerer prometheus.Registerer
}

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

	// The metrics exist (and count) without a Registerer; they are then not exported.
	failures    prometheus.Counter
	failing     prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// NewWatcher loads the principals file at path and returns a Watcher holding it; a file that
// cannot be loaded is an error, so a server never starts with no or a broken principals set.
// No goroutine is started until Run.
func NewWatcher(path string, opts WatchOptions) (*Watcher, error) {
	if opts.Interval <= 0 {
		opts.Interval = DefaultWatchInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, interval: opts.Interval, logger: opts.Logger, files: filewatch.NewTracker(readFile, path),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ReloadFailuresMetric,
			Help: "Times the principals file was found missing, unreadable or invalid (each reported once); the principals in force were kept.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ReloadFailingMetric,
			Help: "1 while the principals file is missing, unreadable or invalid and an older set is in force, else 0.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: LastReloadSuccessMetric,
			Help: "When the principals in force were last loaded from (or found again in) the file, in Unix seconds.",
		}),
	}
	var ps *Principals
	if err := w.files.Init(func(data [][]byte) (err error) {
		ps, err = parseFile(path, data[0])
		return err
	}); err != nil {
		return nil, err
	}
	w.cur.Store(ps)
	w.lastSuccess.SetToCurrentTime()
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{w.failures, w.failing, w.lastSuccess} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register auth metrics: %w", err)
			}
		}
	}
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
		w.lastSuccess.SetToCurrentTime()
		w.failing.Set(0)
	case filewatch.Restored:
		w.logger.Info("auth file: valid again, unchanged", "path", w.path)
		w.lastSuccess.SetToCurrentTime()
		w.failing.Set(0)
	default:
		// The Tracker reports a failure once and then answers Unchanged until the file is usable
		// again (Loaded or Restored), so failing stays 1 for as long as it is broken.
		w.logger.Error("auth file: "+res.String()+"; keeping the current principals", "path", w.path, "err", err)
		w.failures.Inc()
		w.failing.Set(1)
	}
}
