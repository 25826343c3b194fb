// Package spool provides Bridgehead's durable queue: a directory on a local disk, an NFS export or
// an Azure Files share that several processes on several hosts append to and drain at once.
//
// Guarantees:
//   - Append returns nil only after the messages were appended to this process's open segment
//     and fdatasynced within the writer's lease (a writer paused past it acknowledges nothing).
//     Appends waiting together share one write and one fdatasync (group commit). The open
//     segment is sealed into ready/ by size or age; a dead writer's open segments are recovered
//     by another process, which re-publishes every intact record.
//   - A segment is claimed by one consumer at a time (rename from its exact name is the only
//     compare-and-swap used; there are no locks), acked by unlinking its exact claimed name, and
//     returned to ready/ by the reaper when its lease expired (deadline + 2 × skew allowance).
//     Delivery is at least once: a duplicate is possible after a lease expiry, never a loss.
//   - Damaged segments are quarantined, never deleted, and their intact records still delivered.
//
// Only operations atomic on local file systems, NFSv3/v4 and SMB3 are used; docs/spool.md lists
// them, the mount options the spool needs and every deviation from the research contract.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors a caller branches on. Every error returned by Append wraps exactly one of ErrFull,
// ErrUnwritable or ErrClosed (or is the caller's own context error).
var (
	// ErrFull means the spool is past MaxBytes or the file system below MinFreeBytes (or the file
	// system reported ENOSPC/EDQUOT): answer 503, nothing was accepted.
	ErrFull = errors.New("spool full")
	// ErrUnwritable means the file system failed a write, fsync, close or rename: answer 503.
	ErrUnwritable = errors.New("spool unwritable")
	// ErrClosed means the spool is closed or closing.
	ErrClosed = errors.New("spool closed")
	// ErrReadOnly means the spool was opened with Inspect and cannot append.
	ErrReadOnly = errors.New("spool opened for inspection only")
	// ErrEmpty means no segment is ready to claim right now.
	ErrEmpty = errors.New("no segment ready")
	// ErrLostClaim means a claim is no longer ours: its lease expired and another consumer took
	// it, or an operator moved it. The messages may be delivered twice; none is lost.
	ErrLostClaim = errors.New("claim lost")
	// ErrUnknownVersion means the directory holds a spool format this binary does not know.
	ErrUnknownVersion = errors.New("unknown spool format version")
	// ErrNoSpool means the directory was never initialised as a spool (no VERSION file and no
	// segments), or does not exist.
	ErrNoSpool = errors.New("not a spool directory")
	// ErrDamaged means the directory holds segments but no VERSION file: it was a spool, and
	// something removed its VERSION. Nothing re-initialises it; docs/runbook.md says how to
	// restore it.
	ErrDamaged = errors.New("spool damaged")
	// ErrProbe means a startup probe showed the file system cannot keep the spool's contract.
	ErrProbe = errors.New("spool startup probe failed")
)

// Defaults for Options fields left zero.
const (
	DefaultMaxSegmentBytes   = 1 << 20
	DefaultSealAfter         = 100 * time.Millisecond
	DefaultSealIdle          = 10 * time.Millisecond
	DefaultWriterLease       = 15 * time.Second
	DefaultLease             = 30 * time.Second
	DefaultSkewAllowance     = 2 * time.Second
	DefaultMaxAttempts       = 10
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultScanInterval      = time.Second
	DefaultOrphanAge         = 10 * time.Minute
)

// formatVersion is the content of <root>/VERSION. Format 2 added open/ and recovering/ (a
// writer appends to its open segment instead of writing a file per commit); its sealed segments
// are format 1's, so a format-2 binary drains a format-1 spool as it is, and upgrades VERSION.
const (
	formatVersion   = "bridgehead-spool 2\n"
	formatVersionV1 = "bridgehead-spool 1\n"
)

// Role says which of the spool's roles a process runs.
type Role int

const (
	// RoleAll appends and consumes: the zero value.
	RoleAll Role = iota
	// RoleWriter appends; it may consume too, but runs nothing for it.
	RoleWriter
	// RoleConsumer claims, reaps and recovers; Append fails with ErrReadOnly, and no committer
	// runs and no open segment is created.
	RoleConsumer
)

// Options configure a Spool. The zero value is usable: every zero field takes its default.
type Options struct {
	// FS is the file system; nil means the real one (fsys.OS).
	FS fsys.FS
	// Logger receives warnings and errors; nil means no logging.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Lease deadlines and ages use it.
	Now func() time.Time
	// Registerer receives the spool's metrics (docs/api.md lists them); nil means none. An
	// inspecting spool registers nothing.
	Registerer prometheus.Registerer

	// Instance names this process in heartbeats for humans (a pod name); default the host name.
	Instance string
	// Inspect opens without probes, heartbeat or committer: for the CLI's read and repair
	// commands. Append fails with ErrReadOnly.
	Inspect bool
	// Role says what this process runs; the zero value appends and consumes.
	Role Role

	// MaxBytes caps the bytes held in ready/, claimed/, dead/ and quarantine/ together; past it
	// Append fails with ErrFull. 0 means no cap.
	MaxBytes int64
	// MinFreeBytes is the free-space floor of the file system; below it Append fails with
	// ErrFull. 0 means no floor.
	MinFreeBytes int64
	// ReserveBytes is the last part of the capacity (MaxBytes, or the free space above
	// MinFreeBytes) that only messages of priority ReservePriority or higher (a number at most
	// ReservePriority) may use: when the spool is that close to full, lower priorities are
	// refused with ErrFull while alarms are still taken, and Ready stays true. 0 means
	// ReservePercent of the capacity.
	ReserveBytes int64
	// ReservePercent is the reserve as a share of the capacity (0–50), used when ReserveBytes
	// is 0; 0 means no reserve.
	ReservePercent float64
	// ReservePriority is the lowest priority (the highest number) that may use ReserveBytes;
	// the zero value lets only priority 0 in (serve's --reserve-priority defaults to 1).
	ReservePriority uint8
	// MaxSegmentBytes is the size at which a writer seals its open segment; default 1 MiB. One
	// Append is never split across segments, so a single larger Append makes a larger segment.
	MaxSegmentBytes int
	// SealAfter is how long after its first record an open segment is sealed at the latest;
	// default 100 ms. It bounds how long an acknowledged message waits before a consumer can
	// claim it.
	SealAfter time.Duration
	// SealIdle seals the open segment sooner when no commit came for this long; default 10 ms.
	// A writer that is busy (commits closer together than this) seals by SealAfter and size; an
	// idle one (an alarm now and then) makes each message claimable within SealIdle, at the
	// price of a segment per message, which its rate can afford.
	SealIdle time.Duration
	// WriterLease is how long a writer's heartbeat holds its open segments: a writer
	// acknowledges nothing whose fdatasync returned later than this after its last successful
	// heartbeat began, and another process recovers its open segments once the heartbeat is
	// older than this plus twice the skew allowance. Default 15 s (or five HeartbeatIntervals
	// if that is longer); at least three HeartbeatIntervals.
	WriterLease time.Duration

	// Lease is how long a claim lasts before it must be renewed; default 30 s.
	Lease time.Duration
	// SkewAllowance is the largest clock difference tolerated between hosts sharing the spool
	// (checked at Open against the file server's clock); default 2 s. A claim is reclaimed only
	// after its deadline plus twice this.
	SkewAllowance time.Duration
	// MaxAttempts is how many claims a segment gets before it is dead-lettered; default 10.
	MaxAttempts int
	// HeartbeatInterval is how often this process refreshes hb/<writer>; default 3 s, or a fifth
	// of WriterLease if that is set and shorter. A process
	// silent for three intervals is dead for tmp/ collection; for its open segments, see
	// WriterLease.
	HeartbeatInterval time.Duration
	// ScanInterval is how often capacity and listings are refreshed; default 1 s.
	ScanInterval time.Duration
	// ReapInterval is how often the background reaper runs; 0 means never (call Reap).
	ReapInterval time.Duration
	// OrphanAge is how old a tmp/ file of a dead writer must be before it is removed; default 10 min.
	OrphanAge time.Duration
}

func (o *Options) setDefaults() {
	if o.FS == nil {
		o.FS = fsys.OS{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Instance == "" {
		o.Instance, _ = os.Hostname()
	}
	if o.MaxSegmentBytes == 0 {
		o.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if o.SealAfter == 0 {
		o.SealAfter = DefaultSealAfter
	}
	if o.SealIdle == 0 {
		o.SealIdle = min(DefaultSealIdle, o.SealAfter)
	}

	if o.Lease == 0 {
		o.Lease = DefaultLease
	}
	if o.SkewAllowance == 0 {
		o.SkewAllowance = DefaultSkewAllowance
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	// Each of HeartbeatInterval and WriterLease, when left zero, follows the other: a lease is
	// five heartbeats at least.
	switch {
	case o.HeartbeatInterval == 0 && o.WriterLease == 0:
		o.HeartbeatInterval, o.WriterLease = DefaultHeartbeatInterval, DefaultWriterLease
	case o.HeartbeatInterval == 0:
		o.HeartbeatInterval = max(min(DefaultHeartbeatInterval, o.WriterLease/5), time.Millisecond)
	case o.WriterLease == 0:
		o.WriterLease = max(DefaultWriterLease, 5*o.HeartbeatInterval)
	}
	if o.ScanInterval == 0 {
		o.ScanInterval = DefaultScanInterval
	}
	if o.OrphanAge == 0 {
		o.OrphanAge = DefaultOrphanAge
	}
}

func (o *Options) validate() error {
	switch {
	case o.MaxBytes < 0:
		return fmt.Errorf("MaxBytes %d is negative", o.MaxBytes)
	case o.MinFreeBytes < 0:
		return fmt.Errorf("MinFreeBytes %d is negative", o.MinFreeBytes)
	case o.ReserveBytes < 0:
		return fmt.Errorf("ReserveBytes %d is negative", o.ReserveBytes)
	case o.ReservePriority > message.MaxPriority:
		return fmt.Errorf("ReservePriority %d is not a priority (0 to %d)", o.ReservePriority, message.MaxPriority)
	case o.ReservePercent < 0 || o.ReservePercent > 50:
		return fmt.Errorf("ReservePercent %g is not 0 to 50", o.ReservePercent)
	case o.MaxBytes > 0 && o.ReserveBytes >= o.MaxBytes:
		return fmt.Errorf("ReserveBytes %d leaves nothing of MaxBytes %d to the other priorities", o.ReserveBytes, o.MaxBytes)
	case o.MaxSegmentBytes < 0:
		return fmt.Errorf("MaxSegmentBytes %d is negative", o.MaxSegmentBytes)
	case o.Lease < 0 || o.SkewAllowance < 0 || o.HeartbeatInterval < 0 || o.ScanInterval < 0 || o.ReapInterval < 0 || o.OrphanAge < 0 || o.SealAfter < 0 || o.SealIdle < 0 || o.WriterLease < 0:
		return errors.New("durations must not be negative")
	case o.WriterLease < 3*o.HeartbeatInterval:
		return fmt.Errorf("WriterLease %v is shorter than three HeartbeatIntervals (%v)", o.WriterLease, 3*o.HeartbeatInterval)
	case o.Role < RoleAll || o.Role > RoleConsumer:
		return fmt.Errorf("unknown Role %d", o.Role)
	case o.MaxAttempts < 0:
		return fmt.Errorf("MaxAttempts %d is negative", o.MaxAttempts)
	}
	return nil
}

// Spool is an open spool directory. Its methods are safe for concurrent use.
//
// The roles keep their own state over the names and file helpers they share: the writer
// (writer.go, lease.go: appends, seals; started only by a process that appends), the consumer
// (claim.go: claims, renewals, acks, settlements; claimState), the janitor (reap.go, recover.go:
// reclaims, recovery, collection; no state of its own) and the inspector (admin.go: the CLI's
// reads and repairs; nothing started when opened with Inspect).
//
// Ownership: the writer's goroutines own the open segment; mu guards the pending batches, the
// closed flag and the capacity figures; the heartbeat goroutine owns heartbeats (lease has its
// own mutex); the maintenance goroutine owns scans; claims.mu guards the consumer's state.
type Spool struct {
	root   string
	opts   Options
	fs     fsys.FS
	log    *slog.Logger
	writer string // this incarnation's id: in segment names, claims and hb/
	netFS  bool   // NFS/SMB: a directory fsync may answer EINVAL

	mu        sync.Mutex
	closed    bool
	pending   []*batch
	usedBytes int64 // bytes in the spool at the last scan plus what this process added since
	freeBytes int64 // free bytes at the last statfs minus what this process wrote since; -1 unknown
	scanErr   error // the last scan's error, reported by Ready
	hbErr     error // the last heartbeat's error, reported by Ready while the lease is gone
	lastStats Stats // the last successful scan\'s listing, for LastStats
	// refusedBytes is the size of the last append refused for capacity: Ready stays false until
	// that much fits again, so a probe does not call "ready" a spool that refuses real traffic.
	refusedBytes int64

	w       *writer       // the appending role; nil in a consumer or an inspector
	lease   lease         // the writer's lease on its open segments, renewed by the heartbeat
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
	claims  claimState // the consuming role's own state (claim.go)
	counts  counters   // cumulative counters since Open
	metrics *metrics
	// lyingNames are the segments whose names claim an implausible size, warned about once.
	lyingNames sync.Map
}

// Open opens the spool at root, creating its directories on first use, and probes the file
// system: O_EXCL creation, same-mount rename, directory fsync and clock skew against the file
// server. It refuses to run (ErrProbe, ErrUnknownVersion) where the contract cannot hold.
// Unless opts.Inspect is set it starts the committer and the maintenance goroutine; Close stops them.
func Open(root string, opts Options) (*Spool, error) {
	s, err := newSpool(root, opts)
	if err != nil {
		return nil, err
	}
	opts = s.opts
	if opts.Inspect {
		if err := s.checkVersion(false); err != nil {
			return nil, err
		}
		return s, nil
	}
	for _, d := range []string{dirTmp, dirOpen, dirRecovering, dirReady, dirClaimed, dirDead, dirQuarantine, dirHeartbeat} {
		if err := s.fs.MkdirAll(s.path(d)); err != nil {
			return nil, fmt.Errorf("%w: create %s: %w", ErrUnwritable, d, err)
		}
	}
	if err := s.checkVersion(true); err != nil {
		return nil, err
	}
	if _, err := s.probe(); err != nil {
		return nil, err
	}
	if err := s.heartbeat(); err != nil {
		if !fsys.IsNoSpace(err) {
			return nil, fmt.Errorf("%w: heartbeat: %w", ErrUnwritable, err)
		}
		// A full file system must not keep a stamp from starting: its forwarder is what frees
		// space. The writer has no lease until a heartbeat succeeds; Ready says why.
		s.log.Warn("file system full at start: appends refused until a heartbeat succeeds", "err", err)
	}
	if opts.Registerer != nil {
		if err := s.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("spool metrics: %w", err)
		}
	}
	s.scan()
	s.wg.Add(2)
	go s.heartbeatLoop()
	go s.maintain()
	if opts.Role != RoleConsumer {
		s.w = newWriter(s)
		s.w.start()
	}
	return s, nil
}

// newSpool checks opts, fills in their defaults and returns a Spool on root that runs nothing
// and has touched nothing yet: what Open and Probe start from.
func newSpool(root string, opts Options) (*Spool, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("spool options: %w", err)
	}
	return &Spool{
		root:      root,
		opts:      opts,
		fs:        opts.FS,
		log:       opts.Logger.With("spool", root),
		writer:    newWriterID(),
		freeBytes: -1,
		claims:    claimState{claiming: map[string]bool{}},
		stop:      make(chan struct{}),
		metrics:   newMetrics(),
	}, nil
}

// Dir returns the spool's root directory.
func (s *Spool) Dir() string { return s.root }

// Writer returns this incarnation's writer id, as it appears in names and hb/.
func (s *Spool) Writer() string { return s.writer }

func (s *Spool) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Spool) now() time.Time { return s.opts.Now() }

// Close stops accepting appends, finishes the commits already waiting, stops the background
// work and returns. Appends that were waiting get their real outcome, never ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.opts.Inspect {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	// Segments this writer abandoned and could not re-publish stay in open/: once the heartbeat
	// is gone, any recoverer takes them at once.
	// Our heartbeat goes, so others may collect anything we left in tmp/ once it is old enough.
	if err := s.fs.Remove(s.path(dirHeartbeat, s.writer)); err != nil && !fsys.IsNotExist(err) {
		return fmt.Errorf("remove heartbeat: %w", err)
	}
	return nil
}

// checkVersion reads <root>/VERSION, writing it on first use when create is set, and upgrading
// a format-1 spool to format 2 (its segments are drained as they are).
func (s *Spool) checkVersion(create bool) error {
	b, err := s.fs.ReadFile(s.path("VERSION"))
	switch {
	case err == nil && string(b) == formatVersionV1 && create:
		// Format-1 processes still running keep working (their segments are the same, and
		// they never look in open/); a format-1 binary that starts from now on refuses.
		s.log.Info("upgrading spool format 1 to 2", "spool", s.root)
		if err := s.writeFile(tmpName(s.now(), s.writer, "version"), s.path("VERSION"), "", []byte(formatVersion)); err != nil {
			return fmt.Errorf("%w: upgrade VERSION: %w", ErrUnwritable, err)
		}
		return nil
	case err == nil && string(b) == formatVersionV1:
		return nil // inspecting a format-1 spool: its states are a subset of format 2's
	case err == nil:
		if string(b) != formatVersion {
			return fmt.Errorf("%w: %s/VERSION says %q, this binary knows %q", ErrUnknownVersion, s.root, bytes.TrimSpace(b), formatVersion[:len(formatVersion)-1])
		}
		return nil
	case fsys.IsNotExist(err) && s.holdsSegments():
		return fmt.Errorf("%w: %s holds segments but no VERSION file: restore it (docs/runbook.md, \"Spool VERSION missing\") rather than let a writer start a new spool over them", ErrDamaged, s.root)
	case fsys.IsNotExist(err) && create:
		// Several processes may race to create it; they all write the same bytes.
		err := s.writeFile(tmpName(s.now(), s.writer, "version"), s.path("VERSION"), "", []byte(formatVersion))
		if err != nil {
			return fmt.Errorf("%w: write VERSION: %w", ErrUnwritable, err)
		}
		return nil
	case fsys.IsNotExist(err):
		if _, err := s.fs.Stat(s.root); fsys.IsNotExist(err) {
			return fmt.Errorf("%w: %s does not exist (is the share mounted?)", ErrNoSpool, s.root)
		}
		return fmt.Errorf("%w: %s has no VERSION file (the first writer, bridgehead serve, creates one)", ErrNoSpool, s.root)
	default:
		return fmt.Errorf("%w: read VERSION: %w", ErrUnwritable, err)
	}
}

// crossMount is the probe's EXDEV: worded for an operator, and errors.Is(err, syscall.EXDEV).
type crossMount struct{}

func (crossMount) Error() string { return "different mounts (EXDEV)" }
func (crossMount) Unwrap() error { return syscall.EXDEV }

// holdsSegments reports whether any state directory holds a file: the mark of a spool that was.
func (s *Spool) holdsSegments() bool {
	for _, st := range States {
		names, err := s.fs.ReadDir(s.path(string(st)))
		if err == nil && len(names) > 0 {
			return true
		}
	}
	return false
}

// probe checks, on this mount, what the spool relies on.
func (s *Spool) probe() (skew time.Duration, err error) {
	fail := func(format string, args ...any) (time.Duration, error) {
		return skew, fmt.Errorf("%w: %s: %s", ErrProbe, s.root, fmt.Sprintf(format, args...))
	}
	info, err := s.fs.Statfs(s.root)
	if err != nil {
		return fail("statfs: %v", err)
	}
	s.netFS = fsys.IsNetworkFS(info.Type)

	name := tmpName(s.now(), s.writer, "probe")
	tmp := s.path(dirTmp, name)
	before := s.now()
	f, err := s.fs.CreateExcl(tmp)
	if err != nil {
		return fail("create %s: %v", name, err)
	}
	_, werr := f.Write([]byte("probe\n"))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		if !fsys.IsNoSpace(err) {
			_ = s.fs.Remove(tmp)
			return fail("write probe: %v", err)
		}
		// A full file system is a normal day: probe the rest with the (empty) file, start,
		// and let Append and Ready answer ErrFull until space is freed.
		s.log.Warn("file system full at start", "err", err)
	}
	if f2, err := s.fs.CreateExcl(tmp); err == nil {
		_ = f2.Close()
		_ = s.fs.Remove(tmp)
		return fail("O_EXCL create of an existing file succeeded: names could collide")
	} else if !errors.Is(err, os.ErrExist) {
		_ = s.fs.Remove(tmp)
		return fail("O_EXCL create of an existing file: want EEXIST, got %v", err)
	}
	dst := s.path(dirHeartbeat, "probe-"+s.writer)
	if err := s.fs.Rename(tmp, dst); err != nil {
		_ = s.fs.Remove(tmp)
		if errors.Is(err, syscall.EXDEV) {
			// Wrapping EXDEV: doctor tells this failure by it, not by these words.
			return skew, fmt.Errorf("%w: %s: tmp/ and hb/ are on %w: mount the spool root once, never a subPath per directory", ErrProbe, s.root, crossMount{})
		}
		return fail("rename: %v", err)
	}
	defer func() { _ = s.fs.Remove(dst) }()
	if err := s.syncDir(dirHeartbeat); err != nil {
		return fail("directory fsync: %v", err)
	}
	fi, err := s.fs.Stat(dst)
	if err != nil {
		return fail("stat probe: %v", err)
	}
	// The file's mtime was set by the file server's clock (on NFS/SMB) while we wrote it.
	skew = skewOf(fi.ModTime(), before, s.now())
	if skew > s.opts.SkewAllowance {
		return fail("clock skew %v between this host and the file server exceeds the allowance %v: fix NTP", skew.Round(time.Millisecond), s.opts.SkewAllowance)
	}
	return skew, nil
}

// syncDir fsyncs a spool directory. NFS and SMB may refuse a directory fsync (EINVAL); their
// metadata durability rests on the server (a `sync` export), so that one answer is accepted there.
func (s *Spool) syncDir(dir string) error {
	err := s.fs.SyncDir(s.path(dir))
	if err != nil && s.netFS && errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

// writeFile durably writes data to dst through tmp/<tmp>: create (O_EXCL), write, fsync, close,
// rename, fsync the directory of dst (dstDir, relative to the root).
// Any failure removes the temporary file and is returned; a failed fsync is never retried. A
// rename whose reply was lost is resolved by a stat of dst.
func (s *Spool) writeFile(tmp, dst, dstDir string, data []byte) error {
	tmpPath := s.path(dirTmp, tmp)
	f, err := s.fs.CreateExcl(tmpPath)
	if err != nil {
		// EEXIST on a fresh random name means a retransmitted create of our own: abandon it.
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	return s.publish(f, tmpPath, dst, dstDir, data, nil)
}

// publish finishes writeFile with f, freshly created (and still empty) at tmpPath.
// afterRename, if not nil, is called once the file has left tmp/.
func (s *Spool) publish(f fsys.File, tmpPath, dst, dstDir string, data []byte, afterRename func()) error {
	tmp := filepath.Base(tmpPath)
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = s.fs.Remove(tmpPath)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		// The kernel may have dropped the dirty pages: this file is poisoned. Drop it.
		_ = f.Close()
		_ = s.fs.Remove(tmpPath)
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		// NFS reports deferred write errors (ENOSPC, EDQUOT, EIO) at close.
		_ = s.fs.Remove(tmpPath)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := s.renameResolved(tmpPath, dst); err != nil {
		_ = s.fs.Remove(tmpPath)
		return fmt.Errorf("publish %s: %w", filepath.Base(dst), err)
	}
	if afterRename != nil {
		afterRename()
	}
	if err := s.syncDir(dstDir); err != nil {
		return fmt.Errorf("fsync directory of %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// renameResolved renames old to dst. When the call fails, a stat of dst tells whether the rename
// happened anyway (its reply was lost): dst present means done. Names are never reused, so a
// present dst can only be the result of this rename.
func (s *Spool) renameResolved(old, dst string) error {
	err := s.fs.Rename(old, dst)
	if err == nil {
		return nil
	}
	if _, serr := s.fs.Stat(dst); serr == nil {
		s.log.Warn("rename reported an error but happened", "from", old, "to", dst, "err", err)
		return nil
	}
	return err
}

// classify maps a file-system error to the sentinel a caller of Append branches on.
func classify(err error) error {
	if fsys.IsNoSpace(err) {
		return ErrFull
	}
	return ErrUnwritable
}
