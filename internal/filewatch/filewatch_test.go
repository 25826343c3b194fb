package filewatch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mustStat(t *testing.T, paths ...string) ID {
	t.Helper()
	id, err := Stat(paths...)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	return id
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSame(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "one")
	write(t, b, "two")
	first := mustStat(t, a, b)

	if !first.Same(mustStat(t, a, b)) {
		t.Error("unchanged files: got different IDs")
	}
	if first.Same(mustStat(t, a)) {
		t.Error("different number of files: got Same")
	}

	// A new mtime, a new size, a new inode each make a new ID.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(b, later, later); err != nil {
		t.Fatal(err)
	}
	touched := mustStat(t, a, b)
	if first.Same(touched) {
		t.Error("new mtime: got Same")
	}
	write(t, b, "three")
	resized := mustStat(t, a, b)
	if touched.Same(resized) {
		t.Error("new size: got Same")
	}
	tmp := filepath.Join(dir, "tmp")
	write(t, tmp, "three")
	if err := os.Chtimes(tmp, resized.files[1].ModTime(), resized.files[1].ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, b); err != nil {
		t.Fatal(err)
	}
	if resized.Same(mustStat(t, a, b)) {
		t.Error("replaced by rename, same size and mtime: got Same")
	}
}

func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for _, gen := range []string{"..v1", "..v2"} {
		if err := os.Mkdir(filepath.Join(dir, gen), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, gen, "tls.crt"), "same bytes")
	}
	link := func(gen string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	link("..v1")
	path := filepath.Join(dir, "tls.crt")
	if err := os.Symlink(filepath.Join("..data", "tls.crt"), path); err != nil {
		t.Fatal(err)
	}
	before := mustStat(t, path)
	link("..v2")
	if before.Same(mustStat(t, path)) {
		t.Error("..data re-pointed: got Same")
	}
}

func TestMissingAndErrors(t *testing.T) {
	dir := t.TempDir()
	a, absent := filepath.Join(dir, "a"), filepath.Join(dir, "absent")
	write(t, a, "x")

	m1 := mustStat(t, a, absent)
	if got, want := m1.Missing(), []string{absent}; !slices.Equal(got, want) {
		t.Errorf("Missing: got %v, want %v", got, want)
	}
	if !m1.Same(mustStat(t, a, absent)) {
		t.Error("still missing: got different IDs")
	}
	write(t, absent, "y")
	if m1.Same(mustStat(t, a, absent)) {
		t.Error("missing file created: got Same")
	}
	if got := mustStat(t, a).Missing(); got != nil {
		t.Errorf("Missing with all present: got %v, want none", got)
	}

	// A path through a regular file is an error, not "missing"; its zero ID is Same only as
	// another zero ID.
	id, err := Stat(a, filepath.Join(a, "child"))
	if err == nil {
		t.Fatal("stat through a file: got no error")
	}
	if !id.Same(ID{}) || id.Same(m1) || m1.Same(id) {
		t.Error("zero ID: want Same only as another zero ID")
	}
}

func TestRacy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a")
	write(t, path, "x")
	now := time.Now()
	if !mustStat(t, path).Racy(now) {
		t.Error("just written: got not racy")
	}
	old := now.Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if mustStat(t, path).Racy(now) {
		t.Error("an hour old: got racy")
	}
	if (ID{}).Racy(now) || mustStat(t, path+".absent").Racy(now) {
		t.Error("zero ID or missing file: got racy")
	}
}
