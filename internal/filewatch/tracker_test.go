package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a")
	write(t, path, "v1")
	var loaded string
	load := func(data [][]byte) error {
		if string(data[0]) == "bad" {
			return errors.New("bad content")
		}
		loaded = string(data[0])
		return nil
	}
	tr := NewTracker(os.ReadFile, path)
	if err := tr.Init(load); err != nil || loaded != "v1" {
		t.Fatalf("Init: got %v, %q, want nil, v1", err, loaded)
	}
	// An mtime in the past, so that an unchanged ID is trusted; later is newer than it.
	old := time.Now().Add(-time.Hour)
	settle := func() {
		t.Helper()
		old = old.Add(time.Second)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(want Result) {
		t.Helper()
		got, err := tr.Poll(time.Now(), load)
		if got != want || (err != nil) != (got >= StatFailed) {
			t.Fatalf("Poll: got %v, %v, want %v", got, err, want)
		}
	}
	settle()
	poll(Unchanged) // new mtime, same bytes
	poll(Unchanged)

	write(t, path, "bad")
	settle()
	poll(Invalid)
	settle()
	poll(Unchanged) // refused bytes are reported once

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	poll(Missing)
	poll(Unchanged)

	write(t, path, "v1")
	settle()
	poll(Restored)
	if loaded != "v1" {
		t.Fatalf("restored: loaded %q, want v1 untouched", loaded)
	}

	write(t, path, "v2")
	settle()
	poll(Loaded)
	if loaded != "v2" {
		t.Fatalf("loaded %q, want v2", loaded)
	}
	settle()
	poll(Unchanged)
}
