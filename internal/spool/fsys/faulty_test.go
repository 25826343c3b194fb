package fsys_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

func TestFaultyRules(t *testing.T) {
	dir := t.TempDir()
	f := fsys.NewFaulty(fsys.OS{})
	f.Inject(fsys.Rule{Op: fsys.OpRename, Match: "b", Err: syscall.EIO, Skip: 1, Times: 1})
	f.Inject(fsys.Rule{Op: fsys.OpRemove, Err: syscall.ENOENT, After: true, Times: 1})
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Skip 1: the first matching rename goes through.
	if err := f.Rename(mk("a1"), filepath.Join(dir, "b1")); err != nil {
		t.Fatalf("first rename: %v", err)
	}
	// Then one failure, performed not: the source stays.
	a2 := mk("a2")
	if err := f.Rename(a2, filepath.Join(dir, "b2")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second rename: got %v, want EIO", err)
	}
	if _, err := os.Stat(a2); err != nil {
		t.Fatalf("failed rename moved the file: %v", err)
	}
	// Times 1: the third goes through again.
	if err := f.Rename(a2, filepath.Join(dir, "b3")); err != nil {
		t.Fatalf("third rename: %v", err)
	}
	// After: the remove happens, its reply says ENOENT.
	if err := f.Remove(filepath.Join(dir, "b3")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("remove: got %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b3")); !os.IsNotExist(err) {
		t.Fatalf("remove with a lost reply did not remove: %v", err)
	}
	if f.Count(fsys.OpRename) != 3 || f.Count(fsys.OpRemove) != 1 {
		t.Fatalf("counts: rename %d remove %d", f.Count(fsys.OpRename), f.Count(fsys.OpRemove))
	}
}

func TestFaultyFrozenListingAndResync(t *testing.T) {
	dir := t.TempDir()
	f := fsys.NewFaulty(fsys.OS{})
	if err := os.WriteFile(filepath.Join(dir, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.FreezeListing(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	names, err := f.ReadDir(dir)
	if err != nil || !slices.Equal(names, []string{"old"}) {
		t.Fatalf("frozen listing = %v, %v; want [old]", names, err)
	}
	f.Thaw()
	if names, _ := f.ReadDir(dir); len(names) != 0 {
		t.Fatalf("thawed listing = %v, want empty", names)
	}

	f.Inject(fsys.Rule{Op: fsys.OpSync, Err: syscall.EIO, Times: 1})
	file, err := f.CreateExcl(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: got %v, want EIO", err)
	}
	if len(f.Resynced()) != 0 {
		t.Fatal("Resynced reported before any retry")
	}
	_ = file.Sync() // the fsyncgate mistake: Faulty must record it
	if r := f.Resynced(); len(r) != 1 {
		t.Fatalf("Resynced = %v, want the file", r)
	}
	// Close fails as injected but still releases the descriptor.
	f.Inject(fsys.Rule{Op: fsys.OpClose, Err: syscall.EIO, Times: 1})
	if err := file.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close: got %v, want EIO", err)
	}
}

// TestFaultyDelayOnly: a rule with a Delay and no Err slows the call and lets it succeed, for
// Close (which bypasses the common path to always release the descriptor) as for the others.
func TestFaultyDelayOnly(t *testing.T) {
	dir := t.TempDir()
	f := fsys.NewFaulty(fsys.OS{})
	f.Inject(fsys.Rule{Op: fsys.OpClose, Delay: time.Millisecond})
	f.Inject(fsys.Rule{Op: fsys.OpRename, Delay: time.Millisecond})
	file, err := f.CreateExcl(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatalf("close with a delay-only rule: got %v, want nil", err)
	}
	if err := f.Rename(filepath.Join(dir, "x"), filepath.Join(dir, "y")); err != nil {
		t.Fatalf("rename with a delay-only rule: got %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); err != nil {
		t.Fatalf("delayed rename did not happen: %v", err)
	}
}

// TestWriteSync: the real file system's durable write lands at its offset, whatever the
// handle's own offset; through Faulty an OpWrite rule fails it unwritten, an OpSync rule fails
// it written but not durable, and a later flush of that file is reported as a re-fsync.
func TestWriteSync(t *testing.T) {
	dir := t.TempDir()
	f := fsys.NewFaulty(fsys.OS{})
	path := filepath.Join(dir, "seg")
	file, err := f.CreateExcl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if n, err := file.WriteSync([]byte("world"), 6); n != 5 || err != nil {
		t.Fatalf("WriteSync: got %d, %v; want 5, nil", n, err)
	}
	if n, err := file.WriteSync([]byte("hello "), 0); n != 6 || err != nil {
		t.Fatalf("WriteSync: got %d, %v; want 6, nil", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hello world" {
		t.Fatalf("file: got %q, want %q", b, "hello world")
	}
	f.Inject(fsys.Rule{Op: fsys.OpWrite, Err: syscall.EIO, Times: 1})
	if n, err := file.WriteSync([]byte("!"), 11); n != 0 || !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteSync under an OpWrite rule: got %d, %v; want 0, EIO", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hello world" {
		t.Fatalf("a failed write wrote: %q", b)
	}
	f.Inject(fsys.Rule{Op: fsys.OpSync, Err: syscall.EIO, Times: 1})
	if _, err := file.WriteSync([]byte("?"), 11); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteSync under an OpSync rule: got %v, want EIO", err)
	}
	if len(f.Resynced()) != 0 {
		t.Fatalf("resynced before any flush after the failure: %v", f.Resynced())
	}
	_ = file.Datasync()
	if r := f.Resynced(); len(r) != 1 || r[0] != path {
		t.Fatalf("resynced: got %v, want [%s]", r, path)
	}
	if got := f.Count(fsys.OpWriteSync); got != 4 {
		t.Fatalf("OpWriteSync calls: got %d, want 4", got)
	}
}
