// Package fulldisk gives tests a real file system that they can fill: a small ext4 image,
// loop-mounted for one test and unmounted when the test ends (failed or not), and a Filler that
// keeps it full, taking back every block anyone frees, until the test stops it.
//
// A full file system is not a fault that an injected ENOSPC models well: every call that needs a
// block fails (a probe, a heartbeat, a log line), calls that need none succeed (rename, unlink,
// an empty create), and space freed by one process is there for whichever asks first.
//
// Mount needs root (mount(2) and a loop device: CAP_SYS_ADMIN and /dev/loop* in a container),
// /dev/loop-control, mkfs.ext4 (e2fsprogs) and mount (util-linux). Where one is missing, Mount
// fails the test and says what is missing: a test that needs a full disk must not pass by not
// running. Set BRIDGEHEAD_SKIP_FULLDISK=1 (SkipEnv) to skip such tests on purpose.
package fulldisk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SkipEnv, set to anything but "", makes Mount skip the test instead of failing it where it
// cannot mount.
const SkipEnv = "BRIDGEHEAD_SKIP_FULLDISK"

// howTo ends every failure to mount.
const howTo = "fulldisk needs root, a loop device (/dev/loop-control; in a container: --privileged or CAP_SYS_ADMIN " +
	"with /dev/loop*), mkfs.ext4 (apt-get install e2fsprogs) and mount (util-linux). Run the test as root, " +
	"or set " + SkipEnv + "=1 to skip the tests that need a full file system."

// Mount creates an ext4 file system of size bytes in an image file under tb.TempDir, loop-mounts
// it and returns the mount point. It is unmounted when tb ends, before its temporary directory
// is removed; whatever a test starts on it (processes, a Filler) must be stopped by cleanups
// registered after Mount, which run first.
//
// The file system has 4 KiB blocks and no blocks reserved for root (mkfs -m 0), so that a root
// writer and statfs's "available" see the same space. Its journal is kept, as on a real stamp:
// blocks a deletion frees are reusable once the journal commits it (within 5 s, or at once when
// a writer runs out of space and the kernel forces the commit).
func Mount(tb testing.TB, size int64) string {
	tb.Helper()
	if v := os.Getenv(SkipEnv); v != "" {
		tb.Skipf("%s=%s: skipping a test that needs a loop-mounted file system", SkipEnv, v)
	}
	mkfs, mount, err := tools()
	if err != nil {
		tb.Fatalf("fulldisk: cannot loop-mount a file system on this machine: %v.\n%s", err, howTo)
	}
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := sparseFile(img, size); err != nil {
		tb.Fatalf("fulldisk: %v", err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatalf("fulldisk: %v", err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", "-b", "4096", "-E", "nodiscard", img).CombinedOutput(); err != nil {
		tb.Fatalf("fulldisk: mkfs.ext4 %s: %v: %s\n%s", img, err, trimmed(out), howTo)
	}
	// -o loop: mount finds a free loop device and sets it to detach itself (autoclear) once
	// the file system is unmounted, so the cleanup needs nothing but the unmount.
	if out, err := exec.Command(mount, "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		tb.Fatalf("fulldisk: mount -o loop %s %s: %v: %s\n%s", img, mnt, err, trimmed(out), howTo)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			// Something still has a file open there (a process a test left running): detach
			// the file system now; the kernel releases it, and the loop device, when it closes.
			if lerr := unix.Unmount(mnt, unix.MNT_DETACH); lerr != nil {
				tb.Errorf("fulldisk: unmount %s: %v; lazy unmount: %v", mnt, err, lerr)
				return
			}
			tb.Logf("fulldisk: unmount %s: %v; detached lazily instead", mnt, err)
		}
	})
	return mnt
}

// tools checks what Mount needs and returns the paths of mkfs.ext4 and mount.
func tools() (mkfs, mount string, err error) {
	var missing []string
	if id := os.Geteuid(); id != 0 {
		missing = append(missing, fmt.Sprintf("not running as root (euid %d)", id))
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, fmt.Sprintf("no loop devices (%v)", err))
	}
	mkfs, mount = lookPath("mkfs.ext4"), lookPath("mount")
	if mkfs == "" {
		missing = append(missing, "mkfs.ext4 not found (package e2fsprogs)")
	}
	if mount == "" {
		missing = append(missing, "mount not found (package mount, util-linux)")
	}
	if len(missing) > 0 {
		return "", "", errors.New(strings.Join(missing, "; "))
	}
	return mkfs, mount, nil
}

// lookPath finds name in PATH or, since a user's PATH often lacks them, in the sbin directories.
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return p
		}
	}
	return ""
}

func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func trimmed(out []byte) string { return strings.TrimSpace(string(out)) }

// RetryInterval is how often a Filler tries again once the file system is full: space freed is
// taken back within about this long (sooner when the freeing process writes right away, as the
// kernel then hands the blocks to whichever of the two asks first).
const RetryInterval = time.Millisecond

// fillTimeout bounds Fill's wait for the file system to be full.
const fillTimeout = 30 * time.Second

// Filler keeps a file system full. One goroutine appends zeros to its file, 1 MiB at a time
// until the file system says ENOSPC, then one block at a time, and then keeps trying every
// RetryInterval, so that whatever block anyone frees is taken again, until Stop. The goroutine
// owns the file and err until done is closed.
type Filler struct {
	path    string
	block   int
	stop    chan struct{} // closed by Stop
	done    chan struct{} // closed when the goroutine has returned and closed the file
	full    chan struct{} // closed at the first ENOSPC at block granularity
	written atomic.Int64  // bytes appended so far
	err     error         // what stopped the goroutine unexpectedly; read after done

	stopOnce sync.Once
	stopErr  error
}

// Fill creates the file path, which must be on the file system to fill and outside any directory
// under test, starts a Filler on it and returns once the file system is full. The Filler is
// stopped, and its file removed, when tb ends, unless Stop was called before.
func Fill(tb testing.TB, path string) *Filler {
	tb.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		tb.Fatalf("fulldisk: statfs %s: %v", filepath.Dir(path), err)
	}
	file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatalf("fulldisk: %v", err)
	}
	f := &Filler{path: path, block: int(st.Bsize), stop: make(chan struct{}), done: make(chan struct{}), full: make(chan struct{})}
	go f.run(file)
	tb.Cleanup(func() {
		if err := f.Stop(); err != nil {
			tb.Errorf("fulldisk: %v", err)
		}
	})
	timeout := time.NewTimer(fillTimeout)
	defer timeout.Stop()
	select {
	case <-f.full:
		tb.Logf("fulldisk: %s full after writing %d MiB to %s", filepath.Dir(path), f.written.Load()>>20, filepath.Base(path))
	case <-f.done:
		tb.Fatalf("fulldisk: filling %s: %v", path, f.err)
	case <-timeout.C:
		tb.Fatalf("fulldisk: %s not full after %v (%d MiB written)", filepath.Dir(path), fillTimeout, f.written.Load()>>20)
	}
	return f
}

func (f *Filler) run(file *os.File) {
	defer close(f.done)
	defer func() {
		if err := file.Close(); err != nil && f.err == nil {
			f.err = fmt.Errorf("close %s: %w", f.path, err)
		}
	}()
	buf := make([]byte, 1<<20)
	n := len(buf)
	retry := time.NewTicker(RetryInterval)
	defer retry.Stop()
	fullOnce := sync.Once{}
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		w, err := file.Write(buf[:n])
		f.written.Add(int64(w))
		switch {
		case err == nil:
		case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
			if n > f.block {
				n = f.block // the last blocks, one at a time
				continue
			}
			fullOnce.Do(func() { close(f.full) })
			select {
			case <-f.stop:
				return
			case <-retry.C:
			}
		default:
			f.err = fmt.Errorf("append to %s: %w", f.path, err)
			return
		}
	}
}

// Stop stops the Filler, removes its file and commits the removal (syncfs), so that the space is
// free at once rather than at the journal's next commit. It returns what went wrong while
// filling or removing; later calls return the same.
func (f *Filler) Stop() error {
	f.stopOnce.Do(func() {
		close(f.stop)
		<-f.done
		err := f.err
		if rerr := os.Remove(f.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		if serr := syncfs(filepath.Dir(f.path)); serr != nil {
			err = errors.Join(err, serr)
		}
		f.stopErr = err
	})
	return f.stopErr
}

func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
