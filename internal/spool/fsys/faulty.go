package fsys

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Op names one kind of file-system call, for fault rules and counters.
type Op string

// The operations a Faulty file system can fail, delay or count.
const (
	OpCreate Op = "create"
	OpWrite  Op = "write"
	OpSync   Op = "sync"
	// OpWriteSync is File.WriteSync: one call. Rules for OpWrite fire on it as a failed write
	// (nothing written unless After), rules for OpSync as a failed flush (written, not durable).
	OpWriteSync Op = "writesync"
	OpTruncate  Op = "truncate"
	OpClose     Op = "close"
	OpRead      Op = "read"
	OpRename    Op = "rename"
	OpRemove    Op = "remove"
	OpStat      Op = "stat"
	OpReadDir   Op = "readdir"
	OpMkdir     Op = "mkdir"
	OpSyncDir   Op = "syncdir"
	OpStatfs    Op = "statfs"
)

// isMetadata reports whether op is a metadata round trip on a network file system, the calls an
// injected latency applies to.
func (op Op) isMetadata() bool {
	switch op {
	case OpCreate, OpRead, OpRename, OpRemove, OpStat, OpReadDir, OpMkdir, OpSyncDir, OpClose, OpTruncate:
		return true
	}
	return false
}

// Rule injects Err into calls of Op whose path contains Match.
type Rule struct {
	Op Op
	// Match selects paths containing it; empty matches every path.
	Match string
	// Err is the error the call returns.
	Err error
	// After performs the call before returning Err: the operation happened but its reply was
	// lost, as after an NFS retransmission or a timeout.
	After bool
	// Skip lets the first Skip matching calls through untouched.
	Skip int
	// Times is how many matching calls fail after Skip; 0 means every one.
	Times int
	// Delay is added to each matching call before it runs. With a nil Err the call then runs
	// normally: a slow operation, not a failed one.
	Delay time.Duration
}

// Faulty wraps an FS and injects errors, lost replies, stale listings and latency, and counts
// calls. It is safe for concurrent use; all its state is guarded by mu.
type Faulty struct {
	fs FS

	mu       sync.Mutex
	rules    []*ruleState
	latency  time.Duration       // added to every metadata call
	netDelay time.Duration       // added to every call (SetNetworkLatency)
	frozen   map[string][]string // dir → the listing ReadDir keeps returning (stale view)
	counts   map[Op]int
	inDir    map[call]int   // calls by op and the name of the directory they were made in
	syncs    map[string]int // path → Sync calls on files created at that path
	failed   map[string]bool
	resynced []string // paths Synced again after a failed Sync: the fsyncgate bug
}

type call struct {
	op  Op
	dir string
}

type ruleState struct {
	Rule
	seen int
}

var _ FS = (*Faulty)(nil)

// NewFaulty returns a Faulty wrapping base with no faults.
func NewFaulty(base FS) *Faulty {
	return &Faulty{fs: base, frozen: map[string][]string{}, counts: map[Op]int{}, inDir: map[call]int{}, syncs: map[string]int{}, failed: map[string]bool{}}
}

// Inject adds a rule; rules are checked in the order added and the first that fires wins.
func (f *Faulty) Inject(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &ruleState{Rule: r})
}

// Reset removes every rule, frozen listing and latency; counters are kept.
func (f *Faulty) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	f.frozen = map[string][]string{}
	f.latency = 0
	f.netDelay = 0
}

// SetLatency delays every metadata call by d, like a round trip to an NFS or SMB server.
func (f *Faulty) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// SetNetworkLatency delays every call, data and metadata alike (create, write, fsync, close,
// rename, unlink, stat, readdir, directory fsync, …), by d: a share where each operation is a
// round trip. It replaces SetLatency's metadata-only delay.
func (f *Faulty) SetNetworkLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netDelay = d
}

// Counts returns how many calls of each kind were made.
func (f *Faulty) Counts() map[Op]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[Op]int, len(f.counts))
	for op, n := range f.counts {
		out[op] = n
	}
	return out
}

// FreezeListing makes ReadDir(dir) return what it returns now until Thaw: a client whose
// directory cache is stale.
func (f *Faulty) FreezeListing(dir string) error {
	names, err := f.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen[dir] = names
	return nil
}

// Thaw ends every frozen listing.
func (f *Faulty) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = map[string][]string{}
}

// Count returns how many calls of op were made.
func (f *Faulty) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// CountIn returns how many calls of op were made on a file in a directory named dir (its last
// element: "open", "ready"), or on that directory itself for ReadDir and SyncDir. A rename counts
// in its source's directory.
func (f *Faulty) CountIn(op Op, dir string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inDir[call{op, dir}]
}

// dirOf names the directory a call on path is counted in by CountIn.
func dirOf(op Op, path string) string {
	path, _, _ = strings.Cut(path, " -> ")
	if op == OpReadDir || op == OpSyncDir || op == OpMkdir || op == OpStatfs {
		return filepath.Base(path)
	}
	return filepath.Base(filepath.Dir(path))
}

// Resynced lists the files that were fsynced again after an fsync of theirs had failed. A
// correct caller never does that: the failed fsync may have dropped the dirty pages, and the
// retry would report success over lost data.
func (f *Faulty) Resynced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.resynced...)
}

// enter counts the call, waits out the latency and the delay of the rule that fires for
// (op, path), if any, and returns that rule when it injects an error. A rule with a Delay and no
// Err ends here: the call then runs normally, only later.
func (f *Faulty) enter(op Op, path string) *Rule {
	f.mu.Lock()
	f.counts[op]++
	f.inDir[call{op, dirOf(op, path)}]++
	wait := f.netDelay
	if op.isMetadata() {
		wait = max(wait, f.latency)
	}
	f.mu.Unlock()
	return f.fireAfter(op, path, wait)
}

// fire checks the rules for (op, path) without counting or delaying the call: WriteSync, one
// call, answers to both the OpWrite and the OpSync rules. It returns the rule that fires with an
// error, if any, after waiting out its delay.
func (f *Faulty) fire(op Op, path string) *Rule { return f.fireAfter(op, path, 0) }

// fireAfter finds the rule that fires for (op, path), sleeps wait plus its delay, and returns
// it if it injects an error.
func (f *Faulty) fireAfter(op Op, path string, wait time.Duration) *Rule {
	f.mu.Lock()
	var fired *Rule
	for _, r := range f.rules {
		if r.Op != op || !strings.Contains(path, r.Match) {
			continue
		}
		r.seen++
		if r.seen <= r.Skip || (r.Times > 0 && r.seen > r.Skip+r.Times) {
			continue
		}
		fired = &r.Rule
		break
	}
	f.mu.Unlock()
	if fired != nil {
		wait += fired.Delay
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	if fired != nil && fired.Err == nil {
		return nil
	}
	return fired
}

// do runs call under the fault rules of (op, path).
func (f *Faulty) do(op Op, path string, call func() error) error {
	r := f.enter(op, path)
	if r == nil {
		return call()
	}
	if r.After {
		_ = call() // the operation happens; its reply is lost
	}
	return wrap(op, path, r.Err)
}

// doValue is do for a call that returns a value: the value as the call left it (the zero value
// when a rule kept it from running), with the error.
func doValue[T any](f *Faulty, op Op, path string, call func() (T, error)) (T, error) {
	var v T
	err := f.do(op, path, func() error {
		var err error
		v, err = call()
		return err
	})
	return v, err
}

func wrap(op Op, path string, err error) error {
	return &fs.PathError{Op: string(op), Path: path, Err: err}
}

// CreateExcl implements FS.
func (f *Faulty) CreateExcl(name string) (File, error) {
	file, err := doValue(f, OpCreate, name, func() (File, error) { return f.fs.CreateExcl(name) })
	if err != nil {
		if file != nil {
			_ = file.Close()
		}
		return nil, err
	}
	return &faultyFile{f: f, name: name, File: file}, nil
}

// ReadFile implements FS.
func (f *Faulty) ReadFile(name string) ([]byte, error) {
	return doValue(f, OpRead, name, func() ([]byte, error) { return f.fs.ReadFile(name) })
}

// Rename implements FS.
func (f *Faulty) Rename(oldname, newname string) error {
	return f.do(OpRename, oldname+" -> "+newname, func() error { return f.fs.Rename(oldname, newname) })
}

// Remove implements FS.
func (f *Faulty) Remove(name string) error {
	return f.do(OpRemove, name, func() error { return f.fs.Remove(name) })
}

// Stat implements FS.
func (f *Faulty) Stat(name string) (fs.FileInfo, error) {
	return doValue(f, OpStat, name, func() (fs.FileInfo, error) { return f.fs.Stat(name) })
}

// ReadDir implements FS; a frozen directory returns its stale listing.
func (f *Faulty) ReadDir(dir string) ([]string, error) {
	return doValue(f, OpReadDir, dir, func() ([]string, error) {
		f.mu.Lock()
		stale, ok := f.frozen[dir]
		f.mu.Unlock()
		if ok {
			return slices.Clone(stale), nil
		}
		return f.fs.ReadDir(dir)
	})
}

// MkdirAll implements FS.
func (f *Faulty) MkdirAll(dir string) error {
	return f.do(OpMkdir, dir, func() error { return f.fs.MkdirAll(dir) })
}

// SyncDir implements FS.
func (f *Faulty) SyncDir(dir string) error {
	return f.do(OpSyncDir, dir, func() error { return f.fs.SyncDir(dir) })
}

// Statfs implements FS.
func (f *Faulty) Statfs(dir string) (FSInfo, error) {
	return doValue(f, OpStatfs, dir, func() (FSInfo, error) { return f.fs.Statfs(dir) })
}

type faultyFile struct {
	File
	f    *Faulty
	name string
}

func (ff *faultyFile) Write(p []byte) (int, error) {
	return doValue(ff.f, OpWrite, ff.name, func() (int, error) { return ff.File.Write(p) })
}

// WriteAt is OpWrite to the rules and counters.
func (ff *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	return doValue(ff.f, OpWrite, ff.name, func() (int, error) { return ff.File.WriteAt(p, off) })
}

// WriteSync implements File: counted and delayed once, as OpWriteSync; an OpWrite rule fails
// it as a write, an OpSync rule as a flush (and the file counts as one whose fsync failed).
func (ff *faultyFile) WriteSync(p []byte, off int64) (int, error) {
	ff.flushing()
	if r := ff.f.enter(OpWriteSync, ff.name); r != nil {
		return 0, wrap(OpWriteSync, ff.name, r.Err)
	}
	if r := ff.f.fire(OpWrite, ff.name); r != nil {
		n := 0
		if r.After {
			n, _ = ff.File.WriteAt(p, off)
		}
		return n, wrap(OpWrite, ff.name, r.Err)
	}
	if r := ff.f.fire(OpSync, ff.name); r != nil {
		n, _ := ff.File.WriteAt(p, off)
		ff.flushFailed()
		return n, wrap(OpSync, ff.name, r.Err)
	}
	n, err := ff.File.WriteSync(p, off)
	if err != nil {
		ff.flushFailed()
	}
	return n, err
}

// Truncate is OpTruncate to the rules and counters (a metadata call: a SETATTR on NFS).
func (ff *faultyFile) Truncate(size int64) error {
	return ff.f.do(OpTruncate, ff.name, func() error { return ff.File.Truncate(size) })
}

// Sync and Datasync are both OpSync to the rules and counters: each is the one flush of a file.
func (ff *faultyFile) Sync() error { return ff.sync(ff.File.Sync) }

func (ff *faultyFile) Datasync() error { return ff.sync(ff.File.Datasync) }

func (ff *faultyFile) sync(call func() error) error {
	ff.flushing()
	err := ff.f.do(OpSync, ff.name, call)
	if err != nil {
		ff.flushFailed()
	}
	return err
}

// flushing counts a flush of the file and notes it if an earlier flush of it had failed.
func (ff *faultyFile) flushing() {
	ff.f.mu.Lock()
	defer ff.f.mu.Unlock()
	ff.f.syncs[ff.name]++
	if ff.f.failed[ff.name] {
		ff.f.resynced = append(ff.f.resynced, ff.name)
	}
}

// flushFailed notes that a flush of the file failed: flushing it again is the fsyncgate bug.
func (ff *faultyFile) flushFailed() {
	ff.f.mu.Lock()
	defer ff.f.mu.Unlock()
	ff.f.failed[ff.name] = true
}

// Close always releases the descriptor, as close(2) does even when it reports an error.
func (ff *faultyFile) Close() error {
	r := ff.f.enter(OpClose, ff.name)
	err := ff.File.Close()
	if r != nil {
		return wrap(OpClose, ff.name, r.Err)
	}
	return err
}

// String describes the rule, for test failure messages.
func (r Rule) String() string {
	return fmt.Sprintf("%s %q err=%v after=%v skip=%d times=%d delay=%v", r.Op, r.Match, r.Err, r.After, r.Skip, r.Times, r.Delay)
}
