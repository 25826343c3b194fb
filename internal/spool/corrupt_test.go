package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

// readyFiles returns the paths of the files in ready/, oldest first.
func readyFiles(t *testing.T, s *spool.Spool) []string {
	t.Helper()
	entries, err := s.List(context.Background(), spool.StateReady)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(s.Dir(), "ready", e.Name))
	}
	return out
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(0, fi.Size()-n)); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptSegmentsAreNamedQuarantinedAndSalvaged(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		harm func(t *testing.T, path string)
		// intact is how many of the segment's 10 records must still be delivered.
		intact int
		detail string
	}{
		{"flipped byte in a record", func(t *testing.T, p string) {
			// Header 52 B, each record 24 B frame + ~130 B payload: byte 600 is inside record 3 or 4.
			flipByte(t, p, 600)
		}, 9, "checksum mismatch"},
		{"truncated", func(t *testing.T, p string) { truncateBy(t, p, 300) }, 8, "missing trailer"},
		{"flipped byte in the trailer", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			flipByte(t, p, int(fi.Size())-2)
		}, 10, "segment checksum mismatch"},
		{"flipped byte in the header", func(t *testing.T, p string) { flipByte(t, p, 10) }, 0, "header checksum mismatch"},
		{"emptied", func(t *testing.T, p string) { truncateBy(t, p, 1<<20) }, 0, "shorter than a header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustOpenSpool(t, "", spool.Options{})
			good, bad := msgs(10, 100), msgs(10, 100)
			// Append separately so they are two segments; the damaged one is the second.
			mustAppend(t, s, good...)
			goodFile := readyFiles(t, s)[0]
			mustAppend(t, s, bad...)
			files := readyFiles(t, s)
			if len(files) != 2 {
				t.Fatalf("got %d segments, want 2", len(files))
			}
			badFile := files[0]
			if badFile == goodFile {
				badFile = files[1]
			}
			damagedName := filepath.Base(badFile)
			tt.harm(t, badFile)

			// verify names it, with the damage.
			_, damaged, err := s.Verify(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(damaged) != 1 || damaged[0].Entry.Name != damagedName || damaged[0].Intact != tt.intact {
				t.Fatalf("Verify: %+v; want %s with %d intact", damaged, damagedName, tt.intact)
			}
			var ce *spool.CorruptionError
			if !errors.As(damaged[0].Err, &ce) || !strings.Contains(ce.Error(), tt.detail) {
				t.Fatalf("Verify error %v, want a CorruptionError saying %q", damaged[0].Err, tt.detail)
			}

			// Claims deliver every intact record, quarantine the damaged file, drop nothing silently.
			delivered := drain(t, s)
			want := append(ids(good), ids(bad)...)
			present := map[uuid.UUID]bool{}
			for _, id := range delivered {
				if present[id] {
					t.Fatalf("message %s delivered twice", id)
				}
				present[id] = true
			}
			for _, id := range ids(good) {
				if !present[id] {
					t.Fatalf("a message of the intact segment was not delivered")
				}
			}
			if got := len(delivered) - len(good); got != tt.intact {
				t.Fatalf("delivered %d of the damaged segment's records, want %d", got, tt.intact)
			}
			if len(delivered) > len(want) {
				t.Fatalf("delivered %d messages, more than the %d appended", len(delivered), len(want))
			}
			q, err := s.List(ctx, spool.StateQuarantine)
			if err != nil || len(q) != 1 || q[0].ID != strings.SplitN(damagedName, ".", 2)[0] {
				t.Fatalf("quarantine = %+v, %v; want the damaged segment", q, err)
			}
			reason, _ := s.Reason(ctx, q[0])
			if !strings.Contains(reason, "damaged") || !strings.Contains(reason, tt.detail) {
				t.Fatalf("quarantine reason %q does not explain the damage", reason)
			}
			// The quarantined file is the original bytes, kept for a human.
			if _, err := os.Stat(filepath.Join(s.Dir(), "quarantine", q[0].Name)); err != nil {
				t.Fatal(err)
			}
			if st := mustStats(t, s); st.Ready.Segments+st.Claimed.Segments != 0 {
				t.Fatalf("left over: %+v", st)
			}
		})
	}
}

func TestReaperNeverTouchesQuarantine(t *testing.T) {
	ctx := context.Background()
	s := mustOpenSpool(t, "", spool.Options{OrphanAge: 1})
	mustAppend(t, s, msgs(3, 10)...)
	flipByte(t, readyFiles(t, s)[0], 8) // header
	if _, err := s.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
		t.Fatalf("Claim of a wholly damaged segment: got %v, want ErrEmpty", err)
	}
	if _, err := s.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStats(t, s); st.Quarantine.Segments != 1 || st.Quarantine.Messages != 3 {
		t.Fatalf("quarantine = %+v, want the damaged segment kept", st.Quarantine)
	}
}

// TestVerifyReportsEveryProblemAndNamesThatLie: verify goes on past what it cannot read, and
// checks each sealed segment's name against its contents; a name claiming an implausible size
// is not believed by the capacity figures.
func TestVerifyReportsEveryProblemAndNamesThatLie(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := mustOpenSpool(t, dir, spool.Options{})
	for range 3 {
		mustAppend(t, w, msgs(2, 50)...)
		mustSeal(t, w)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ready := dirFiles(t, dir, "ready")
	if len(ready) != 3 {
		t.Fatalf("ready: %v", ready)
	}
	// 1: a directory named like a segment (unreadable as a file).
	if err := os.Rename(filepath.Join(dir, "ready", ready[0]), filepath.Join(dir, "ready", ready[0]+".x")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "ready", ready[0]), 0o755); err != nil {
		t.Fatal(err)
	}
	// 2: a segment renamed by hand to claim 550 GB (sizes in names are hexadecimal).
	// The size is the fifth field of the base name (a priority may follow it).
	f := strings.SplitN(ready[1], "-", 5)
	f[4] = strings.Replace(f[4], strconv.FormatInt(segmentSize(t, dir, ready[1]), 16), strconv.FormatInt(550e9, 16), 1)
	lying := strings.Join(f, "-")
	if lying == ready[1] {
		t.Fatalf("could not rewrite the size in %s", ready[1])
	}
	if err := os.Rename(filepath.Join(dir, "ready", ready[1]), filepath.Join(dir, "ready", lying)); err != nil {
		t.Fatal(err)
	}

	s := mustOpenSpool(t, dir, spool.Options{Inspect: true})
	checked, damaged, err := s.Verify(ctx, nil)
	if err != nil {
		t.Fatalf("Verify stopped: %v", err)
	}
	var unreadable, mismatch bool
	for _, d := range damaged {
		unreadable = unreadable || (d.Entry.Name == ready[0] && strings.Contains(d.Err.Error(), "unreadable"))
		mismatch = mismatch || (d.Entry.Name == lying && errors.Is(d.Err, spool.ErrNameMismatch))
	}
	if checked != 3 || len(damaged) != 2 || !unreadable || !mismatch {
		t.Fatalf("checked %d, damaged %+v; want all 3 checked, the unreadable one and the lying name reported", checked, damaged)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready.Bytes > 10_000 {
		t.Fatalf("ready bytes %d: the lying name was believed", st.Ready.Bytes)
	}
}

// segmentSize is the size of ready/name on disk.
func segmentSize(t *testing.T, dir, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "ready", name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestOpenRefusesASpoolWithoutVersion: segments but no VERSION is a damaged spool, not a new one.
func TestOpenRefusesASpoolWithoutVersion(t *testing.T) {
	dir := t.TempDir()
	w := mustOpenSpool(t, dir, spool.Options{})
	mustAppend(t, w, msgs(1, 10)...)
	mustSeal(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "VERSION")); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []spool.Options{{}, {Inspect: true}} {
		if _, err := spool.Open(dir, opts); !errors.Is(err, spool.ErrDamaged) {
			t.Errorf("Open(%+v): %v, want ErrDamaged", opts, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "VERSION")); err == nil {
		t.Fatal("VERSION was re-created over the old spool's segments")
	}
}

// TestUnreadableSegmentIsQuarantinedWithItsError: a segment no read will ever return (a
// directory with a segment's name) is quarantined at its first claim, and one that fails every
// read at its last attempt; either way with the read error as the reason, never dead-lettered
// as a delivery failure ("gave up after N delivery attempts").
func TestUnreadableSegmentIsQuarantinedWithItsError(t *testing.T) {
	ctx := context.Background()
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		w := mustOpenSpool(t, dir, spool.Options{})
		mustAppend(t, w, msgs(1, 10)...)
		mustSeal(t, w)
		name := dirFiles(t, dir, "ready")[0]
		if err := os.Remove(filepath.Join(dir, "ready", name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "ready", name), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Claim(ctx); !errors.Is(err, spool.ErrEmpty) {
			t.Fatalf("Claim: %v, want ErrEmpty (the directory quarantined)", err)
		}
		assertQuarantinedFor(t, w, "is a directory")
	})
	t.Run("EIO at every try", func(t *testing.T) {
		ffs := fsys.NewFaulty(fsys.OS{})
		dir := t.TempDir()
		w := mustOpenSpool(t, dir, spool.Options{FS: ffs, MaxAttempts: 3, ScanInterval: time.Millisecond})
		mustAppend(t, w, msgs(1, 10)...)
		mustSeal(t, w)
		ffs.Inject(fsys.Rule{Op: fsys.OpRead, Match: "/claimed/", Err: syscall.EIO})
		for range 3 {
			if _, err := w.Claim(ctx); err == nil {
				t.Fatal("Claim of an unreadable segment succeeded")
			} else if errors.Is(err, spool.ErrEmpty) {
				break
			}
			time.Sleep(5 * time.Millisecond) // past the release's not-before
		}
		ffs.Reset()
		if st := mustStats(t, w); st.Dead.Segments != 0 || st.Quarantine.Segments != 1 {
			t.Fatalf("after 3 failed reads: %+v, want it quarantined, not dead", st)
		}
		assertQuarantinedFor(t, w, "input/output error")
	})
}

// assertQuarantinedFor checks that the one quarantined segment's reason says why.
func assertQuarantinedFor(t *testing.T, s *spool.Spool, why string) {
	t.Helper()
	q, err := s.List(context.Background(), spool.StateQuarantine)
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine: %v %v, want one segment", q, err)
	}
	reason, err := s.Reason(context.Background(), q[0])
	if err != nil || !strings.Contains(reason, "unreadable") || !strings.Contains(reason, why) {
		t.Fatalf("reason %q (%v), want it unreadable: %s", reason, err, why)
	}
}
