package fulldisk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFillThenStopFreesTheSpace(t *testing.T) {
	mnt := Mount(t, 32<<20)
	f := Fill(t, filepath.Join(mnt, "filler"))
	if free := available(t, mnt); free != 0 {
		t.Errorf("full: statfs says %d bytes available, want 0", free)
	}
	err := os.WriteFile(filepath.Join(mnt, "one-block"), make([]byte, 4096), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing a block on the full file system: got %v, want ENOSPC", err)
	}
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	if free := available(t, mnt); free < 16<<20 {
		t.Errorf("after Stop: %d bytes available, want the filler's space back (over 16 MiB)", free)
	}
	if err := os.WriteFile(filepath.Join(mnt, "one-block"), make([]byte, 4096), 0o644); err != nil {
		t.Fatalf("writing a block after Stop: %v", err)
	}
	if err := f.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func available(t *testing.T, dir string) uint64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}
