package fsys

import (
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrPowerCut is the error, wrapped in an *fs.PathError, that every call on a File opened before
// a power cut returns: the process that held it is dead, and nothing it does may reach the world
// after the cut. It wraps fs.ErrClosed, so errors.Is(err, fs.ErrClosed) holds too.
var ErrPowerCut = fmt.Errorf("power cut: %w", fs.ErrClosed)

// DefaultPowerCutCapacity is the capacity of a PowerCut whose options leave it zero: 1 TiB.
const DefaultPowerCutCapacity = 1 << 40

// PowerCutOptions configures a PowerCut. The zero value is ready to use.
type PowerCutOptions struct {
	// Now is the clock that sets a file's mtime when it is created or written (and a
	// directory's when it is made). Default time.Now; tests drive heartbeat ages through it.
	Now func() time.Time
	// Capacity is the size of the file system in bytes; default DefaultPowerCutCapacity.
	// Statfs reports it as TotalBytes and what the volatile view's files do not hold as
	// FreeBytes. A Write or WriteAt that would grow the files beyond it writes what fits and
	// fails with ENOSPC. A file that has lost its name (removed, or replaced by a rename) no
	// longer counts, nor do later writes through a handle still open on it.
	Capacity uint64
}

// PowerCut is an in-memory FS that models what survives a power cut under strict POSIX rules,
// to catch code that acknowledges data that is not yet durable. Compose it with Faulty
// (NewFaulty(NewPowerCut(...))) for fault injection and call counters.
//
// It keeps two views. The volatile view is what every FS and File call sees. The durable view is
// what a Cut leaves:
//
//   - File contents: bytes written (appended by Write, or in place by WriteAt) are volatile
//     until Sync or Datasync on that file, which make the file's current contents and size
//     durable, for the inode only, not for its name. Sync also makes its mtime durable;
//     Datasync does not (fdatasync(2) skips times). Close makes nothing durable. A WriteAt over
//     synced bytes leaves them durable until the next sync.
//   - Names: CreateExcl, Rename and Remove are appended to a journal of pending metadata
//     operations. SyncDir(d) makes durable the last pending operation that touches d (creates
//     or removes a name in d, or renames from or into d) and every operation logged before it,
//     since a journaling file system commits its transactions in order. A rename is one
//     operation: a SyncDir of either its source or its destination directory makes all of it
//     durable, and no cut shows the file under both names or under neither.
//   - Directories are created by MkdirAll only, and are durable at once, as if MkdirAll were
//     followed by a SyncDir of each parent but without committing other operations (unless a
//     pending operation names one of the new paths, a file removed or renamed away from
//     there: then the whole journal is committed first). Directories are never removed or
//     renamed: Remove or Rename of one fails with EISDIR.
//
// An open File follows its inode, as a descriptor does on Linux: writes after a rename go to the
// renamed file, writes after a Remove succeed into the orphaned inode, which no cut keeps unless
// the removal itself is undone by that cut. There are no hard links, permissions, reads
// through a handle or truncation.
//
// Paths must be absolute (a relative one fails with EINVAL) and are cleaned with
// filepath.Clean. Errors are the operating system's: *fs.PathError (and *os.LinkError for
// Rename) wrapping a syscall.Errno, so errors.Is(err, fs.ErrNotExist), errors.Is(err,
// os.ErrExist), IsNotExist and IsNoSpace work.
//
// A PowerCut is safe for concurrent use; all its state, its files' included, is guarded by mu.
type PowerCut struct {
	now      func() time.Time
	capacity uint64

	// cutMu is held for reading by every call through a Process view, and for writing by a cut:
	// no call of a process that lost power runs in the world after the cut.
	cutMu    sync.RWMutex
	mu       sync.Mutex
	files    map[string]*inode              // the volatile view: path → inode, "/" included
	children map[string]map[string]struct{} // the volatile view's directories: path → names in it
	durable  map[string]*inode              // the durable view's names: what a cut keeps
	journal  []metaOp                       // metadata operations not yet durable, oldest first
	used     uint64                         // bytes held by the volatile view's files
	gen      uint64                         // counts cuts; a File of an older generation is dead
}

var _ FS = (*PowerCut)(nil)

// inode is a file or a directory.
//
// Its durable contents and pending writes share data's array as long as nothing overwrites
// their bytes there, so that a Sync costs no copy: a write in place first gives whatever
// shares the bytes it changes a copy of its own. An append never changes bytes below
// len(data), the only ones they share.
type inode struct {
	dir      bool
	data     []byte    // the volatile contents
	mtime    time.Time // the volatile mtime
	durable  []byte    // the contents at the last Sync or Datasync: what a Cut keeps
	pending  []span    // the writes since, in order: what a CutRandom keeps a prefix of
	syncedMt time.Time // the durable mtime: at the last Sync, or at creation
	linked   bool      // has a name in the volatile view, so its bytes count against the capacity
}

// span is one write since the last sync: b was written at off.
type span struct {
	off int
	b   []byte
	own bool // b is a copy; otherwise it shares the array of data, where it is data[off:off+len(b)]
}

// write writes b at off, zero-filling any gap past the end, as pwrite(2) does, and logs it as
// pending.
func (ino *inode) write(off int, b []byte) {
	end := off + len(b)
	if hi := min(end, len(ino.data)); off < hi {
		if off < len(ino.durable) {
			ino.durable = slices.Clone(ino.durable)
		}
		for i := range ino.pending {
			if s := &ino.pending[i]; !s.own && s.off < hi && off < s.off+len(s.b) {
				s.b, s.own = slices.Clone(s.b), true
			}
		}
	}
	if end > len(ino.data) {
		ino.data = append(ino.data, make([]byte, end-len(ino.data))...)
	}
	copy(ino.data[off:end], b)
	if n := len(ino.pending); n > 0 && !ino.pending[n-1].own && ino.pending[n-1].off+len(ino.pending[n-1].b) == off {
		// Contiguous with the last write, whose bytes data still holds: one span for both.
		last := &ino.pending[n-1]
		last.b = ino.data[last.off:end]
		return
	}
	ino.pending = append(ino.pending, span{off: off, b: ino.data[off:end]})
}

// resize cuts or zero-extends the volatile contents, as ftruncate(2) does. The size change is
// not logged as a write: it is durable at the next sync, and a cut before that keeps the
// durable size (with whatever prefix of the pending writes it keeps). A cut copies, so that the
// durable contents and the pending writes, which may share data's array, keep their bytes.
func (ino *inode) resize(n int) {
	if n <= len(ino.data) {
		ino.data = slices.Clone(ino.data[:n])
		return
	}
	ino.data = append(ino.data, make([]byte, n-len(ino.data))...)
}

// sync makes the contents durable.
func (ino *inode) sync() {
	ino.durable = ino.data
	ino.pending = nil
}

// torn returns the durable contents with the first k bytes of the pending writes applied.
func (ino *inode) torn(k int) []byte {
	b := slices.Clone(ino.durable)
	for _, s := range ino.pending {
		if k == 0 {
			break
		}
		w := s.b[:min(k, len(s.b))]
		k -= len(w)
		if end := s.off + len(w); end > len(b) {
			b = append(b, make([]byte, end-len(b))...)
		}
		copy(b[s.off:], w)
	}
	return b
}

// pendingBytes returns how many bytes were written since the last sync.
func (ino *inode) pendingBytes() int {
	n := 0
	for _, s := range ino.pending {
		n += len(s.b)
	}
	return n
}

// opKind is the kind of a journalled metadata operation.
type opKind int

const (
	opCreate opKind = iota
	opRename
	opRemove
)

// metaOp is one pending metadata operation. Replaying the journal, in order, on the durable
// names gives the volatile names: that is the invariant every method keeps.
type metaOp struct {
	kind opKind
	name string // the name created or removed, or the rename's source
	to   string // the rename's destination
	ino  *inode
}

// touches reports whether op changes an entry of dir.
func (op metaOp) touches(dir string) bool {
	return filepath.Dir(op.name) == dir || (op.kind == opRename && filepath.Dir(op.to) == dir)
}

// apply performs op on the names in ns.
func (op metaOp) apply(ns map[string]*inode) {
	switch op.kind {
	case opCreate:
		ns[op.name] = op.ino
	case opRename:
		delete(ns, op.name)
		ns[op.to] = op.ino
	case opRemove:
		delete(ns, op.name)
	}
}

// NewPowerCut returns an empty PowerCut holding only the root directory "/", durable.
func NewPowerCut(opts PowerCutOptions) *PowerCut {
	p := &PowerCut{now: opts.Now, capacity: opts.Capacity}
	if p.now == nil {
		p.now = time.Now
	}
	if p.capacity == 0 {
		p.capacity = DefaultPowerCutCapacity
	}
	now := p.now()
	root := &inode{dir: true, mtime: now, syncedMt: now, linked: true}
	p.durable = map[string]*inode{"/": root}
	p.rebuild()
	return p
}

// Cut simulates a power cut under strict rules: the volatile view becomes the durable view.
// Names whose creation no SyncDir made durable disappear, renames and removals no SyncDir made
// durable are undone, and every file's contents and size revert to those of its last Sync or
// Datasync (empty if none), its mtime to that of its last Sync (its creation's if none): every
// write since, appended or in place, is lost. Every File opened before the cut fails from now on
// with ErrPowerCut.
func (p *PowerCut) Cut() {
	p.cutMu.Lock()
	defer p.cutMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut(nil)
}

// CutRandom simulates a harsher power cut, one that came while the disk was writing back:
//
//   - The journal keeps a prefix of its pending operations, of a length drawn from r from none
//     to all: still in order, a rename still whole.
//   - Each file the durable names then hold keeps its durable contents with a prefix of the
//     bytes written to it since its last Sync or Datasync applied, in the order they were
//     written: the first k of them, k drawn from r for each file independently from none to
//     all. The last write kept may be torn anywhere inside it. A write kept extends the file as
//     it did (a WriteAt past the end with the same zero-filled gap) and overwrites what it did.
//
// So no byte is ever invented, and no write survives unless every write to that file before it
// did; a synced byte changes only where a kept write overwrote it. Dirty pages written back out
// of order, and blocks allocated but never written (a tail of zeros or stale data), are not
// modelled. Then it is a Cut: mtimes revert to the durable ones, and every File opened before
// fails with ErrPowerCut. The same seed and the same history give the same result.
func (p *PowerCut) CutRandom(r *rand.Rand) {
	p.cutMu.Lock()
	defer p.cutMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut(r)
}

// Process returns a view of p for one process: it works like p until the next cut, and from
// then on every call through it fails with ErrPowerCut, as the files it opened do. A process
// that lost power does nothing in the world after the cut; the next one takes a new view.
func (p *PowerCut) Process() FS {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &powerCutProcess{p: p, gen: p.gen}
}

// powerCutProcess is a Process view: every call checks, under cutMu, that no cut came since.
type powerCutProcess struct {
	p   *PowerCut
	gen uint64
}

var _ FS = (*powerCutProcess)(nil)

// enter holds off cuts for one call, or reports that one came: call the returned func when done.
func (v *powerCutProcess) enter(op, name string) (func(), error) {
	v.p.cutMu.RLock()
	v.p.mu.Lock()
	dead := v.gen != v.p.gen
	v.p.mu.Unlock()
	if dead {
		v.p.cutMu.RUnlock()
		return nil, &fs.PathError{Op: op, Path: name, Err: ErrPowerCut}
	}
	return v.p.cutMu.RUnlock, nil
}

// viewCall runs call unless a cut came since the view was taken, holding cuts off meanwhile.
func viewCall[T any](v *powerCutProcess, op, name string, call func() (T, error)) (T, error) {
	done, err := v.enter(op, name)
	if err != nil {
		var zero T
		return zero, err
	}
	defer done()
	return call()
}

// viewDo is viewCall for the calls that return only an error.
func viewDo(v *powerCutProcess, op, name string, call func() error) error {
	_, err := viewCall(v, op, name, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

// CreateExcl implements FS.
func (v *powerCutProcess) CreateExcl(name string) (File, error) {
	return viewCall(v, "create", name, func() (File, error) { return v.p.CreateExcl(name) })
}

// ReadFile implements FS.
func (v *powerCutProcess) ReadFile(name string) ([]byte, error) {
	return viewCall(v, "read", name, func() ([]byte, error) { return v.p.ReadFile(name) })
}

// Rename implements FS.
func (v *powerCutProcess) Rename(oldname, newname string) error {
	return viewDo(v, "rename", oldname, func() error { return v.p.Rename(oldname, newname) })
}

// Remove implements FS.
func (v *powerCutProcess) Remove(name string) error {
	return viewDo(v, "remove", name, func() error { return v.p.Remove(name) })
}

// Stat implements FS.
func (v *powerCutProcess) Stat(name string) (fs.FileInfo, error) {
	return viewCall(v, "stat", name, func() (fs.FileInfo, error) { return v.p.Stat(name) })
}

// ReadDir implements FS.
func (v *powerCutProcess) ReadDir(dir string) ([]string, error) {
	return viewCall(v, "readdir", dir, func() ([]string, error) { return v.p.ReadDir(dir) })
}

// MkdirAll implements FS.
func (v *powerCutProcess) MkdirAll(dir string) error {
	return viewDo(v, "mkdir", dir, func() error { return v.p.MkdirAll(dir) })
}

// SyncDir implements FS.
func (v *powerCutProcess) SyncDir(dir string) error {
	return viewDo(v, "syncdir", dir, func() error { return v.p.SyncDir(dir) })
}

// Statfs implements FS.
func (v *powerCutProcess) Statfs(dir string) (FSInfo, error) {
	return viewCall(v, "statfs", dir, func() (FSInfo, error) { return v.p.Statfs(dir) })
}

// cut is Cut with a nil r, CutRandom otherwise.
func (p *PowerCut) cut(r *rand.Rand) {
	if r != nil {
		p.commit(r.IntN(len(p.journal) + 1))
	}
	names := make([]string, 0, len(p.durable))
	for name := range p.durable {
		names = append(names, name)
	}
	slices.Sort(names) // the draws from r follow the order of the names, so a seed replays
	for _, name := range names {
		ino := p.durable[name]
		b := ino.durable
		if r != nil && len(ino.pending) > 0 {
			b = ino.torn(r.IntN(ino.pendingBytes() + 1))
		}
		ino.data = b
		ino.sync()
		ino.mtime = ino.syncedMt
	}
	p.journal = nil
	p.gen++
	p.rebuild()
}

// rebuild makes the volatile view a copy of the durable one.
func (p *PowerCut) rebuild() {
	p.files = make(map[string]*inode, len(p.durable))
	p.children = map[string]map[string]struct{}{}
	p.used = 0
	for name, ino := range p.durable {
		p.files[name] = ino
		ino.linked = true
		p.used += uint64(len(ino.data))
		if ino.dir && p.children[name] == nil {
			p.children[name] = map[string]struct{}{}
		}
		if name != "/" {
			dir := filepath.Dir(name)
			if p.children[dir] == nil {
				p.children[dir] = map[string]struct{}{}
			}
			p.children[dir][filepath.Base(name)] = struct{}{}
		}
	}
}

// commit makes the first n pending operations durable.
func (p *PowerCut) commit(n int) {
	for _, op := range p.journal[:n] {
		op.apply(p.durable)
	}
	p.journal = slices.Delete(p.journal, 0, n)
}

// pending reports whether a pending operation names name.
func (p *PowerCut) pending(name string) bool {
	for _, op := range p.journal {
		if op.name == name || (op.kind == opRename && op.to == name) {
			return true
		}
	}
	return false
}

// link gives ino the name in the volatile view, whose parent directory exists.
func (p *PowerCut) link(name string, ino *inode) {
	p.files[name] = ino
	p.children[filepath.Dir(name)][filepath.Base(name)] = struct{}{}
	if ino.dir {
		p.children[name] = map[string]struct{}{}
	}
	ino.linked = true
	p.used += uint64(len(ino.data))
}

// unlink removes the file name from the volatile view; its inode lives on for open Files.
func (p *PowerCut) unlink(name string) {
	ino := p.files[name]
	delete(p.files, name)
	delete(p.children[filepath.Dir(name)], filepath.Base(name))
	ino.linked = false
	p.used -= uint64(len(ino.data))
}

// missing returns why name is not in the volatile view: ENOTDIR if a file stands where one of
// its parent directories should, ENOENT otherwise.
func (p *PowerCut) missing(name string) syscall.Errno {
	for d := filepath.Dir(name); ; d = filepath.Dir(d) {
		if ino, ok := p.files[d]; ok {
			if !ino.dir {
				return syscall.ENOTDIR
			}
			return syscall.ENOENT
		}
		if d == "/" {
			return syscall.ENOENT
		}
	}
}

// lookup returns the inode name holds in the volatile view, or an *fs.PathError for op.
func (p *PowerCut) lookup(op, name string) (*inode, error) {
	if ino, ok := p.files[name]; ok {
		return ino, nil
	}
	return nil, &fs.PathError{Op: op, Path: name, Err: p.missing(name)}
}

// parentDir checks that the directory that would hold name exists, returning the errno if not.
func (p *PowerCut) parentDir(name string) error {
	dir := filepath.Dir(name)
	ino, ok := p.files[dir]
	if !ok {
		return p.missing(dir)
	}
	if !ino.dir {
		return syscall.ENOTDIR
	}
	return nil
}

// absPath returns name cleaned, or an *fs.PathError with EINVAL for op if it is not absolute.
func absPath(op, name string) (string, error) {
	if !filepath.IsAbs(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: syscall.EINVAL}
	}
	return filepath.Clean(name), nil
}

// CreateExcl implements FS. The new name is volatile until a SyncDir of its directory.
func (p *PowerCut) CreateExcl(name string) (File, error) {
	name, err := absPath("open", name)
	if err != nil {
		return nil, err
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.files[name]; ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EEXIST}
	}
	if err := p.parentDir(name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	ino := &inode{mtime: now, syncedMt: now}
	p.link(name, ino)
	p.journal = append(p.journal, metaOp{kind: opCreate, name: name, ino: ino})
	return &powerCutFile{p: p, ino: ino, name: name, gen: p.gen}, nil
}

// ReadFile implements FS: it returns a copy of the volatile contents.
func (p *PowerCut) ReadFile(name string) ([]byte, error) {
	name, err := absPath("open", name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, err := p.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if ino.dir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	return slices.Clone(ino.data), nil
}

// Rename implements FS. It replaces a file at newname, as rename(2) does, and is volatile until
// a SyncDir of the directory of either name. Errors are *os.LinkError, as os.Rename returns.
func (p *PowerCut) Rename(oldname, newname string) error {
	fail := func(err error) error {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	if !filepath.IsAbs(oldname) || !filepath.IsAbs(newname) {
		return fail(syscall.EINVAL)
	}
	from, to := filepath.Clean(oldname), filepath.Clean(newname)
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, ok := p.files[from]
	if !ok {
		return fail(p.missing(from))
	}
	if ino.dir {
		return fail(syscall.EISDIR) // renaming directories is not modelled
	}
	if err := p.parentDir(to); err != nil {
		return fail(err)
	}
	if from == to {
		return nil // rename(2) does nothing when both names are the same file
	}
	if old, ok := p.files[to]; ok {
		if old.dir {
			return fail(syscall.EISDIR)
		}
		p.unlink(to)
	}
	p.unlink(from)
	p.link(to, ino)
	p.journal = append(p.journal, metaOp{kind: opRename, name: from, to: to, ino: ino})
	return nil
}

// Remove implements FS for files: the removal is volatile until a SyncDir of the directory. A
// directory is never removed: EISDIR, as unlink(2) answers.
func (p *PowerCut) Remove(name string) error {
	name, err := absPath("remove", name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, err := p.lookup("remove", name)
	if err != nil {
		return err
	}
	if ino.dir {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.EISDIR}
	}
	p.unlink(name)
	p.journal = append(p.journal, metaOp{kind: opRemove, name: name, ino: ino})
	return nil
}

// Stat implements FS from the volatile view.
func (p *PowerCut) Stat(name string) (fs.FileInfo, error) {
	name, err := absPath("stat", name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, err := p.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return powerCutInfo{name: filepath.Base(name), size: int64(len(ino.data)), dir: ino.dir, mtime: ino.mtime}, nil
}

// ReadDir implements FS from the volatile view; the names are sorted.
func (p *PowerCut) ReadDir(dir string) ([]string, error) {
	dir, err := absPath("open", dir)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, err := p.lookup("open", dir)
	if err != nil {
		return nil, err
	}
	if !ino.dir {
		return nil, &fs.PathError{Op: "readdirent", Path: dir, Err: syscall.ENOTDIR}
	}
	names := make([]string, 0, len(p.children[dir]))
	for name := range p.children[dir] {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// MkdirAll implements FS. The directories it creates are durable at once (see PowerCut).
func (p *PowerCut) MkdirAll(dir string) error {
	dir, err := absPath("mkdir", dir)
	if err != nil {
		return err
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var path []string // dir and its parents, root first, "/" left out
	for d := dir; d != "/"; d = filepath.Dir(d) {
		path = append(path, d)
	}
	slices.Reverse(path)
	for _, d := range path {
		if ino, ok := p.files[d]; ok {
			if !ino.dir {
				return &fs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
			}
			continue
		}
		if p.pending(d) {
			// A pending operation names d (a removal or rename away that still leaves a file
			// there in the durable view, or a create and remove that would replay over the
			// directory): commit the journal, so that the durable view can hold the directory
			// and still replay to the volatile one.
			p.commit(len(p.journal))
		}
		ino := &inode{dir: true, mtime: now, syncedMt: now}
		p.link(d, ino)
		p.durable[d] = ino
	}
	return nil
}

// SyncDir implements FS: it makes durable the last pending operation that touches dir and every
// operation logged before it.
func (p *PowerCut) SyncDir(dir string) error {
	dir, err := absPath("open", dir)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, err := p.lookup("open", dir)
	if err != nil {
		return err
	}
	if !ino.dir {
		return &fs.PathError{Op: "sync", Path: dir, Err: syscall.ENOTDIR}
	}
	last := -1
	for i, op := range p.journal {
		if op.touches(dir) {
			last = i
		}
	}
	p.commit(last + 1)
	return nil
}

// Statfs implements FS: Type 0 (a local file system), TotalBytes the capacity and FreeBytes what
// the volatile view's files leave of it.
func (p *PowerCut) Statfs(dir string) (FSInfo, error) {
	dir, err := absPath("statfs", dir)
	if err != nil {
		return FSInfo{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.lookup("statfs", dir); err != nil {
		return FSInfo{}, err
	}
	return FSInfo{Type: 0, FreeBytes: p.free(), TotalBytes: p.capacity}, nil
}

// free returns the bytes left under the capacity.
func (p *PowerCut) free() uint64 {
	if p.used >= p.capacity {
		return 0
	}
	return p.capacity - p.used
}

// Durable returns the contents the file name would have after a Cut, and whether it would be
// there at all.
func (p *PowerCut) Durable(name string) ([]byte, bool) {
	if !filepath.IsAbs(name) {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ino, ok := p.durable[filepath.Clean(name)]
	if !ok || ino.dir {
		return nil, false
	}
	return slices.Clone(ino.durable), true
}

// Files returns the paths of the files (not directories) in the volatile view, sorted.
func (p *PowerCut) Files() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fileNames(p.files)
}

// DurableFiles returns the paths of the files (not directories) a Cut would keep, sorted.
func (p *PowerCut) DurableFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fileNames(p.durable)
}

// fileNames returns the sorted names of the files in ns.
func fileNames(ns map[string]*inode) []string {
	var names []string
	for name, ino := range ns {
		if !ino.dir {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// powerCutFile is a File open on a PowerCut's inode; its state is guarded by p.mu.
type powerCutFile struct {
	p      *PowerCut
	ino    *inode
	name   string // the name it was created as, for errors: the inode may have moved since
	gen    uint64 // the PowerCut's generation when it was opened
	off    int    // where the next Write goes
	closed bool
}

// check returns the error every call on f returns once the power was cut or f was closed.
func (f *powerCutFile) check(op string) error {
	switch {
	case f.gen != f.p.gen:
		return &fs.PathError{Op: op, Path: f.name, Err: ErrPowerCut}
	case f.closed:
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	return nil
}

// Write writes b at the handle's offset, which only Write advances (as with os.File): at the
// end of the file unless a WriteAt extended it.
func (f *powerCutFile) Write(b []byte) (int, error) {
	now := f.p.now()
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	n, err := f.writeAt("write", b, f.off, now)
	f.off += n
	return n, err
}

// WriteAt writes b at off, in place or past the end (zero-filling the gap), as pwrite(2) does.
func (f *powerCutFile) WriteAt(b []byte, off int64) (int, error) {
	now := f.p.now()
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("writeat"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: syscall.EINVAL}
	}
	return f.writeAt("writeat", b, int(off), now)
}

// writeAt writes b at off into the volatile contents. Past the capacity it writes what fits and
// fails with ENOSPC; an inode that has lost its name is not counted against the capacity.
func (f *powerCutFile) writeAt(op string, b []byte, off int, now time.Time) (int, error) {
	n := len(b)
	size := len(f.ino.data)
	if f.ino.linked {
		limit := size + int(min(f.p.free(), uint64(math.MaxInt-size)))
		n = max(0, min(n, limit-off))
	}
	if n > 0 {
		f.ino.write(off, b[:n])
		f.ino.mtime = now
		if f.ino.linked {
			f.p.used += uint64(len(f.ino.data) - size)
		}
	}
	if n < len(b) {
		return n, &fs.PathError{Op: op, Path: f.name, Err: syscall.ENOSPC}
	}
	return n, nil
}

// WriteSync is WriteAt then Datasync in one step: no cut comes between them. It makes the whole
// file durable, more than RWF_DSYNC's range; the spool never relies on that (every byte it
// needs durable was flushed by the call that wrote it, or by a Datasync).
func (f *powerCutFile) WriteSync(b []byte, off int64) (int, error) {
	now := f.p.now()
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("writesync"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "writesync", Path: f.name, Err: syscall.EINVAL}
	}
	n, err := f.writeAt("writesync", b, int(off), now)
	if err != nil {
		return n, err
	}
	f.ino.sync()
	return n, nil
}

// Truncate cuts or extends the volatile contents to size (extending with zeros, counted against
// the capacity as a write would be: past it, ENOSPC and no change), as ftruncate(2) does.
func (f *powerCutFile) Truncate(size int64) error {
	now := f.p.now()
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("truncate"); err != nil {
		return err
	}
	old := len(f.ino.data)
	switch {
	case size < 0:
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	case int(size) > old && f.ino.linked && uint64(int(size)-old) > f.p.free():
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.ENOSPC}
	}
	f.ino.resize(int(size))
	f.ino.mtime = now
	if f.ino.linked {
		f.p.used = f.p.used + uint64(len(f.ino.data)) - uint64(old)
	}
	return nil
}

// Sync makes the inode's contents, size and mtime durable, not its name.
func (f *powerCutFile) Sync() error {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	f.ino.sync()
	f.ino.syncedMt = f.ino.mtime
	return nil
}

// Datasync makes the inode's contents and size durable, not its mtime nor its name.
func (f *powerCutFile) Datasync() error {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("fdatasync"); err != nil {
		return err
	}
	f.ino.sync()
	return nil
}

// Close releases the handle and makes nothing durable. A second Close fails with fs.ErrClosed.
func (f *powerCutFile) Close() error {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err := f.check("close"); err != nil {
		return err
	}
	f.closed = true
	return nil
}

// powerCutInfo is the fs.FileInfo of a PowerCut's file or directory.
type powerCutInfo struct {
	name  string
	size  int64
	dir   bool
	mtime time.Time
}

func (fi powerCutInfo) Name() string       { return fi.name }
func (fi powerCutInfo) Size() int64        { return fi.size }
func (fi powerCutInfo) ModTime() time.Time { return fi.mtime }
func (fi powerCutInfo) IsDir() bool        { return fi.dir }
func (fi powerCutInfo) Sys() any           { return nil }

func (fi powerCutInfo) Mode() fs.FileMode {
	if fi.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
