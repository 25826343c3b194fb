// Package filewatch tells one version of a set of files from the next by polling their identity,
// for the loops that keep configuration current while it is replaced underneath the server (the
// principals file, the TLS certificate and key).
//
// It polls rather than using inotify because Kubernetes updates a secret volume by atomically
// re-pointing a `..data` symlink, which a watch on the file's old path does not report. Stat
// follows symlinks, so such a swap changes the ID of every file reached through `..data`.
//
// Guarantees: an ID changes when a file is replaced (device and inode), resized or given another
// modification time; a missing file is part of an ID, not an error, since it may be
// mid-replacement. What it cannot see, a same-size rewrite within one mtime tick, is flagged by
// Racy so the caller re-reads and compares content.
//
// Tracker is the state machine both reloaders share on top of ID: what to load, what to keep in
// force, and which failure to report once; Every is their poll loop.
package filewatch

import (
	"errors"
	"os"
	"slices"
	"time"
)

// RacyWindow is how recent a modification time must be for an unchanged ID not to be trusted
// (2 s). File systems keep mtime in coarse ticks (a few ms on Linux, 2 s on FAT), so a file
// rewritten in place at the same size within one tick keeps its identity; like git's "racily
// clean" index entries, such a file should be read again (and compared by content) until its
// mtime is older than this.
const RacyWindow = 2 * time.Second

// ID is the identity of a list of files at one moment: for each, the file itself (device and
// inode, compared with os.SameFile), its size and modification time, or its absence. The zero ID
// stands for "could not stat"; it is Same only as another zero ID.
type ID struct {
	ok    bool
	paths []string
	files []os.FileInfo // nil where the file does not exist
}

// Stat returns the identity of the files paths resolve to, symlinks followed. A missing file is
// not an error (see Missing); any other stat failure returns the zero ID and the error.
func Stat(paths ...string) (ID, error) {
	id := ID{ok: true, paths: slices.Clone(paths), files: make([]os.FileInfo, len(paths))}
	for i, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return ID{}, err
		}
		id.files[i] = fi
	}
	return id, nil
}

// Same reports whether a and b identify the same versions of the same files.
func (a ID) Same(b ID) bool {
	if !a.ok || !b.ok {
		return a.ok == b.ok
	}
	if len(a.files) != len(b.files) {
		return false
	}
	for i, fa := range a.files {
		fb := b.files[i]
		if fa == nil || fb == nil {
			if fa != fb {
				return false
			}
			continue
		}
		if !os.SameFile(fa, fb) || fa.Size() != fb.Size() || !fa.ModTime().Equal(fb.ModTime()) {
			return false
		}
	}
	return true
}

// Missing returns the paths that did not exist when a was taken, in the order given to Stat.
func (a ID) Missing() []string {
	var missing []string
	for i, fi := range a.files {
		if fi == nil {
			missing = append(missing, a.paths[i])
		}
	}
	return missing
}

// Racy reports whether any file's modification time is within RacyWindow of now, so that an
// unchanged ID does not prove unchanged content.
func (a ID) Racy(now time.Time) bool {
	for _, fi := range a.files {
		if fi != nil && now.Sub(fi.ModTime()) < RacyWindow {
			return true
		}
	}
	return false
}
