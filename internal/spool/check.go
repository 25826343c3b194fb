package spool

import (
	"fmt"
	"time"
)

// ProbeResult is what Probe measured on the spool's file system.
type ProbeResult struct {
	// Skew is the clock difference between this host and the file server, from the mtime of the
	// probe file (0 when the probe failed before it could be measured).
	Skew time.Duration
	// NetworkFS reports an NFS or SMB/CIFS mount (by statfs magic).
	NetworkFS bool
}

// Probe runs the startup probes Open runs (VERSION present and known, O_EXCL create, same-mount
// rename from tmp/ to hb/, directory fsync, clock skew against the file server within
// opts.SkewAllowance) on the spool at root, without opening it: it creates no directory and no
// VERSION, starts nothing, and leaves no file behind. It is for `bridgehead doctor`, which runs
// beside a live stamp. Errors wrap ErrNoSpool, ErrUnknownVersion, ErrUnwritable or ErrProbe; the
// skew is reported even when it exceeds the allowance.
func Probe(root string, opts Options) (ProbeResult, error) {
	s, err := newSpool(root, opts)
	if err != nil {
		return ProbeResult{}, err
	}
	if err := s.checkVersion(false); err != nil {
		return ProbeResult{}, err
	}
	skew, err := s.probe()
	return ProbeResult{Skew: skew, NetworkFS: s.netFS}, err
}

// Usage is the spool's content and capacity, as the spool itself counts them for its cap.
type Usage struct {
	// Stats is the content by state.
	Stats Stats
	// UsedBytes is what counts against the capacity (every state).
	UsedBytes int64
	// CapacityBytes is what the spool may hold before appends are refused: the smaller of
	// opts.MaxBytes and what the free space above opts.MinFreeBytes allows; -1 when unknown.
	CapacityBytes int64
	// FreeBytes is the file system's free space; -1 when unknown.
	FreeBytes int64
}

// ReadUsage lists the spool at root read-only (as Open with Inspect does: no probe, nothing
// written) and returns its content and capacity by the same rules Append and /metrics use
// (opts.MaxBytes, opts.MinFreeBytes). It fails with ErrNoSpool where root is not a spool.
func ReadUsage(root string, opts Options) (Usage, error) {
	opts.Inspect = true
	s, err := Open(root, opts)
	if err != nil {
		return Usage{}, err
	}
	defer func() { _ = s.Close() }()
	s.scan()
	s.mu.Lock()
	scanErr := s.scanErr
	s.mu.Unlock()
	if scanErr != nil {
		return Usage{}, fmt.Errorf("%w: %w", ErrUnwritable, scanErr)
	}
	st, used, capacity, free := s.capacity()
	return Usage{Stats: st, UsedBytes: used, CapacityBytes: capacity, FreeBytes: free}, nil
}
