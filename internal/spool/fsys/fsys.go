// Package fsys provides the narrow file-system interface the spool runs on, its real
// implementation on the operating system, and a fault-injecting wrapper for tests.
//
// The interface holds only the operations whose atomicity local file systems, NFSv3/v4 and SMB3
// all provide: create a uniquely named file, write, fsync, close, rename within one mount, unlink,
// list, stat. There are no locks, no mmap and no in-place edits.
package fsys

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// FS is every file-system call the spool makes. Paths are absolute or relative to the process's
// working directory; implementations must not cache anything across calls.
type FS interface {
	// CreateExcl creates name with O_CREATE|O_EXCL|O_WRONLY: it fails if name exists.
	CreateExcl(name string) (File, error)
	// ReadFile opens name, reads it whole and closes it: no descriptor outlives the call.
	ReadFile(name string) ([]byte, error)
	// Rename renames oldname to newname within one mount.
	Rename(oldname, newname string) error
	// Remove unlinks name.
	Remove(name string) error
	// Stat returns name's metadata.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists the names in dir, unsorted.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// SyncDir fsyncs the directory dir so that entries renamed into it are durable.
	SyncDir(dir string) error
	// Statfs reports the file system that holds dir.
	Statfs(dir string) (FSInfo, error)
}

// File is a file being written. Writes go at its end, except WriterAt's: the spool's one
// in-place write is a writer's rewrite of the header of its own open segment when it seals it.
type File interface {
	io.Writer
	io.WriterAt
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// Datasync makes the file's data durable, with the metadata needed to read it back (its
	// size), but not its times (fdatasync). Where the system has no fdatasync it is Sync.
	Datasync() error
	// WriteSync writes p at off and returns once those bytes (and the size needed to read them)
	// are durable: pwritev2 with RWF_DSYNC, one call (and on NFS or SMB one round trip: a stable
	// write) where write + fdatasync are two. Bytes written earlier by other calls are not
	// flushed by it. An error may mean the write or the flush failed: treat the file as Datasync
	// failures are treated.
	WriteSync(p []byte, off int64) (int, error)
	// Truncate sets the file's size, cutting it or extending it with a hole (no blocks written:
	// ftruncate(2)). Like a write, it is durable after the next Sync, Datasync or WriteSync.
	Truncate(size int64) error
	Close() error
}

// FSInfo is what Statfs reports.
type FSInfo struct {
	// Type is the file-system magic number (unix.NFS_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, …).
	Type int64
	// FreeBytes is the space available to an unprivileged writer.
	FreeBytes uint64
	// TotalBytes is the size of the file system.
	TotalBytes uint64
}

// OS is the real file system.
type OS struct{}

var _ FS = OS{}

// CreateExcl implements FS.
func (OS) CreateExcl(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// osFile is a real file with fdatasync.
type osFile struct{ *os.File }

// WriteSync implements File with pwritev2(2) and RWF_DSYNC, or pwrite(2) and fdatasync(2) on a
// kernel without it (before Linux 4.7).
func (f osFile) WriteSync(p []byte, off int64) (int, error) {
	if noRWFDSYNC.Load() {
		return f.writeThenSync(p, off)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for n < len(p) {
			m, err := unix.Pwritev2(int(fd), [][]byte{p[n:]}, off+int64(n), unix.RWF_DSYNC)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.ENOSYS || err == unix.EOPNOTSUPP:
				werr = errNoRWFDSYNC
				return
			case err != nil:
				werr = err
				return
			}
			n += m
		}
	}); err != nil {
		return n, err
	}
	if werr == errNoRWFDSYNC {
		noRWFDSYNC.Store(true) // the kernel will not learn it: every later commit goes straight to the fallback
		m, err := f.writeThenSync(p[n:], off+int64(n))
		return n + m, err
	}
	if werr != nil {
		return n, &fs.PathError{Op: "pwritev2", Path: f.Name(), Err: werr}
	}
	return n, nil
}

var errNoRWFDSYNC = errors.New("pwritev2 with RWF_DSYNC not supported")

// noRWFDSYNC is set once this kernel refused RWF_DSYNC.
var noRWFDSYNC atomic.Bool

// writeThenSync is WriteSync on a kernel without RWF_DSYNC: pwrite(2), then fdatasync(2).
func (f osFile) writeThenSync(p []byte, off int64) (int, error) {
	n, err := f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, f.Datasync()
}

// Datasync implements File with fdatasync(2), through the descriptor's raw connection so that
// the file is not switched to blocking mode (as Fd would).
func (f osFile) Datasync() error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// ReadFile implements FS.
func (OS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// Stat implements FS.
func (OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// ReadDir implements FS. It reads names only: no per-entry stat, which costs a round trip on NFS.
func (OS) ReadDir(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return names, err
}

// MkdirAll implements FS.
func (OS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// SyncDir implements FS.
func (OS) SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Statfs implements FS.
func (OS) Statfs(dir string) (FSInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return FSInfo{}, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return FSInfo{
		Type:       int64(st.Type),
		FreeBytes:  st.Bavail * uint64(st.Bsize),
		TotalBytes: st.Blocks * uint64(st.Bsize),
	}, nil
}

// IsNetworkFS reports whether magic names NFS or SMB/CIFS, where a directory fsync may be
// refused (EINVAL) and durability of metadata rests on the server.
func IsNetworkFS(magic int64) bool {
	switch magic {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC:
		return true
	}
	return false
}

// Allocated is the space the file fi describes takes: its size, or less where the file system
// allocated less (a file with a hole, as ftruncate leaves; st_blocks, to the file system's
// block). A FileInfo without a Stat_t (the power-cut file system's) counts its size.
func Allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 < fi.Size() {
		return st.Blocks * 512
	}
	return fi.Size()
}

// IsNotExist reports whether err says the file is not there (ENOENT).
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsStale reports whether err is ESTALE: the file handle no longer names a file, because another
// client removed or renamed it.
func IsStale(err error) bool { return errors.Is(err, syscall.ESTALE) }

// IsNoSpace reports whether err means the file system or the quota is full.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// IsBusy reports whether err is the kind an SMB share gives for a file another client holds
// open (EBUSY, EACCES, ETXTBSY): transient, worth retrying later.
func IsBusy(err error) bool {
	return errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ETXTBSY)
}
