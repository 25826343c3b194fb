package fsys_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// must fails the test on a non-nil err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newPowerCut returns a PowerCut with the directories dirs made.
func newPowerCut(t testing.TB, dirs ...string) *fsys.PowerCut {
	t.Helper()
	p := fsys.NewPowerCut(fsys.PowerCutOptions{})
	for _, d := range dirs {
		must(t, p.MkdirAll(d))
	}
	return p
}

// create creates name, writes data and returns the open file.
func create(t testing.TB, p *fsys.PowerCut, name, data string) fsys.File {
	t.Helper()
	f, err := p.CreateExcl(name)
	must(t, err)
	if data != "" {
		if _, err := f.Write([]byte(data)); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	return f
}

// read returns name's contents, and whether it exists.
func read(t testing.TB, p *fsys.PowerCut, name string) (string, bool) {
	t.Helper()
	b, err := p.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	must(t, err)
	return string(b), true
}

func TestPowerCutFileData(t *testing.T) {
	tests := []struct {
		name string
		// run writes to f, whose name /d/f is already durable.
		run  func(f fsys.File) error
		want string
	}{
		{"unsynced write lost", func(f fsys.File) error {
			_, err := f.Write([]byte("abc"))
			return err
		}, ""},
		{"synced write kept", func(f fsys.File) error {
			_, err := f.Write([]byte("abc"))
			return errors.Join(err, f.Sync())
		}, "abc"},
		{"datasync keeps size and data", func(f fsys.File) error {
			_, err := f.Write([]byte("abc"))
			return errors.Join(err, f.Datasync())
		}, "abc"},
		{"write after sync lost", func(f fsys.File) error {
			_, err1 := f.Write([]byte("ab"))
			err2 := f.Sync()
			_, err3 := f.Write([]byte("cd"))
			return errors.Join(err1, err2, err3)
		}, "ab"},
		{"close makes nothing durable", func(f fsys.File) error {
			_, err := f.Write([]byte("abc"))
			return errors.Join(err, f.Close())
		}, ""},
		{"sync after close impossible, earlier sync kept", func(f fsys.File) error {
			_, err1 := f.Write([]byte("ab"))
			err2 := f.Datasync()
			_, err3 := f.Write([]byte("cd"))
			err4 := f.Close()
			if err := f.Sync(); !errors.Is(err, fs.ErrClosed) {
				return fmt.Errorf("sync after close: got %v, want ErrClosed", err)
			}
			return errors.Join(err1, err2, err3, err4)
		}, "ab"},
		{"writeat over synced bytes undone", func(f fsys.File) error {
			_, err1 := f.Write([]byte("abcd"))
			err2 := f.Sync()
			_, err3 := f.WriteAt([]byte("XY"), 1)
			return errors.Join(err1, err2, err3)
		}, "abcd"},
		{"writeat then datasync kept", func(f fsys.File) error {
			_, err1 := f.Write([]byte("abcd"))
			err2 := f.Sync()
			_, err3 := f.WriteAt([]byte("XY"), 1)
			_, err4 := f.Write([]byte("e"))
			return errors.Join(err1, err2, err3, err4, f.Datasync())
		}, "aXYde"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPowerCut(t, "/d")
			f := create(t, p, "/d/f", "")
			must(t, p.SyncDir("/d"))
			must(t, tt.run(f))
			p.Cut()
			got, ok := read(t, p, "/d/f")
			if !ok || got != tt.want {
				t.Fatalf("after cut: got %q (exists %v), want %q", got, ok, tt.want)
			}
			if d, ok := p.Durable("/d/f"); !ok || string(d) != tt.want {
				t.Fatalf("Durable after cut: got %q, %v, want %q, true", d, ok, tt.want)
			}
		})
	}
}

func TestPowerCutWriteAt(t *testing.T) {
	p := newPowerCut(t, "/d")
	f := create(t, p, "/d/f", "abcd")
	must(t, f.Sync())
	must(t, p.SyncDir("/d"))
	if _, err := f.WriteAt([]byte("Z"), 6); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, p, "/d/f"); got != "abcd\x00\x00Z" {
		t.Fatalf("after WriteAt past the end: got %q, want %q", got, "abcd\x00\x00Z")
	}
	// Write goes on at its own offset, as with os.File: over the gap the WriteAt left.
	if _, err := f.Write([]byte("ef")); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, p, "/d/f"); got != "abcdefZ" {
		t.Fatalf("after Write: got %q, want %q", got, "abcdefZ")
	}
	if _, err := f.WriteAt([]byte("AB"), 0); err != nil {
		t.Fatal(err)
	}
	// The durable contents are the synced ones, whatever was written in place since.
	if got, _ := p.Durable("/d/f"); string(got) != "abcd" {
		t.Fatalf("Durable: got %q, want %q", got, "abcd")
	}
	if _, err := f.WriteAt(nil, -1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("WriteAt at a negative offset: got %v, want EINVAL", err)
	}
}

// TestPowerCutRandomWrites checks CutRandom against a reference model on random histories of
// appends, writes in place and syncs: the file after the cut is its synced contents with the
// first k bytes written since applied, for some k.
func TestPowerCutRandomWrites(t *testing.T) {
	type write struct {
		off int
		b   []byte
	}
	apply := func(durable []byte, writes []write, k int) []byte {
		b := slices.Clone(durable)
		for _, w := range writes {
			n := min(k, len(w.b))
			if n == 0 {
				break
			}
			k -= n
			if end := w.off + n; end > len(b) {
				b = append(b, make([]byte, end-len(b))...)
			}
			copy(b[w.off:], w.b[:n])
		}
		return b
	}
	kinds := map[string]bool{}
	for seed := range uint64(1000) {
		ops := rand.New(rand.NewPCG(seed, 3))
		strict := newPowerCut(t, "/d")
		random := newPowerCut(t, "/d")
		var files []fsys.File
		for _, p := range []*fsys.PowerCut{strict, random} {
			files = append(files, create(t, p, "/d/f", ""))
			must(t, p.SyncDir("/d"))
		}
		var (
			size    int
			off     int // the handles' Write offset
			durable []byte
			volat   []byte
			writes  []write
		)
		for range 1 + ops.IntN(12) {
			var w write
			switch ops.IntN(4) {
			case 0:
				durable, writes = slices.Clone(volat), nil
				for _, f := range files {
					must(t, f.Datasync())
				}
				continue
			case 1: // in place or past the end
				w.off = ops.IntN(size + 4)
			default: // append
				w.off = off
			}
			w.b = make([]byte, 1+ops.IntN(6))
			for i := range w.b {
				w.b[i] = byte('a' + ops.IntN(26))
			}
			for _, f := range files {
				var err error
				if w.off == off {
					_, err = f.Write(w.b)
				} else {
					_, err = f.WriteAt(w.b, int64(w.off))
				}
				must(t, err)
			}
			if w.off == off {
				off += len(w.b)
			}
			volat = apply(volat, []write{w}, len(w.b))
			size = len(volat)
			writes = append(writes, w)
		}
		if got, _ := read(t, random, "/d/f"); got != string(volat) {
			t.Fatalf("seed %d: volatile contents: got %q, want %q", seed, got, volat)
		}
		strict.Cut()
		if got, _ := read(t, strict, "/d/f"); got != string(durable) {
			t.Fatalf("seed %d: after Cut: got %q, want %q", seed, got, durable)
		}
		random.CutRandom(rand.New(rand.NewPCG(seed, 4)))
		got, _ := read(t, random, "/d/f")
		total := 0
		for _, w := range writes {
			total += len(w.b)
		}
		found := -1
		for k := range total + 1 {
			if string(apply(durable, writes, k)) == got {
				found = k
				break
			}
		}
		switch {
		case found < 0:
			t.Fatalf("seed %d: after CutRandom: got %q, want the synced %q with a prefix of %v applied", seed, got, durable, writes)
		case found == 0:
			kinds["none"] = true
		case found == total:
			kinds["all"] = true
		default:
			kinds["some"] = true
		}
	}
	if len(kinds) != 3 {
		t.Errorf("outcomes seen: got %v, want none, some and all", kinds)
	}
}

func TestPowerCutMetadata(t *testing.T) {
	tests := []struct {
		name string
		// run acts on /a/f, created with "data" synced and its name durable, and /b.
		run     func(p *fsys.PowerCut) error
		wantA   bool // /a/f survives
		wantB   bool // /b/f survives
		volatAB [2]bool
	}{
		{"nothing", func(p *fsys.PowerCut) error { return nil }, true, false, [2]bool{true, false}},
		{"remove undone without SyncDir", func(p *fsys.PowerCut) error {
			return p.Remove("/a/f")
		}, true, false, [2]bool{false, false}},
		{"remove durable with SyncDir", func(p *fsys.PowerCut) error {
			return errors.Join(p.Remove("/a/f"), p.SyncDir("/a"))
		}, false, false, [2]bool{false, false}},
		{"remove not durable with SyncDir of another dir", func(p *fsys.PowerCut) error {
			return errors.Join(p.Remove("/a/f"), p.SyncDir("/b"))
		}, true, false, [2]bool{false, false}},
		{"rename undone without SyncDir", func(p *fsys.PowerCut) error {
			return p.Rename("/a/f", "/b/f")
		}, true, false, [2]bool{false, true}},
		{"rename durable with SyncDir of source", func(p *fsys.PowerCut) error {
			return errors.Join(p.Rename("/a/f", "/b/f"), p.SyncDir("/a"))
		}, false, true, [2]bool{false, true}},
		{"rename durable with SyncDir of destination", func(p *fsys.PowerCut) error {
			return errors.Join(p.Rename("/a/f", "/b/f"), p.SyncDir("/b"))
		}, false, true, [2]bool{false, true}},
		{"rename then rename back", func(p *fsys.PowerCut) error {
			return errors.Join(p.Rename("/a/f", "/b/f"), p.SyncDir("/b"), p.Rename("/b/f", "/a/f"))
		}, false, true, [2]bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPowerCut(t, "/a", "/b")
			f := create(t, p, "/a/f", "data")
			must(t, f.Sync())
			must(t, f.Close())
			must(t, p.SyncDir("/a"))
			must(t, tt.run(p))
			_, va := read(t, p, "/a/f")
			_, vb := read(t, p, "/b/f")
			if got := [2]bool{va, vb}; got != tt.volatAB {
				t.Fatalf("before cut (/a/f, /b/f): got %v, want %v", got, tt.volatAB)
			}
			p.Cut()
			da, okA := read(t, p, "/a/f")
			db, okB := read(t, p, "/b/f")
			if okA != tt.wantA || okB != tt.wantB {
				t.Fatalf("after cut (/a/f, /b/f): got %v %v, want %v %v", okA, okB, tt.wantA, tt.wantB)
			}
			if okA && okB {
				t.Fatalf("after cut: visible in both directories")
			}
			if (okA && da != "data") || (okB && db != "data") {
				t.Fatalf("after cut: got %q %q, want data", da, db)
			}
		})
	}
}

func TestPowerCutCreate(t *testing.T) {
	tests := []struct {
		name    string
		syncDir string // "" for none
		want    bool
	}{
		{"create without SyncDir lost", "", false},
		{"create with SyncDir kept", "/d", true},
		{"create with SyncDir of another dir lost", "/e", false},
		{"create with SyncDir of the parent's parent lost", "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPowerCut(t, "/d", "/e")
			f := create(t, p, "/d/f", "x")
			must(t, f.Sync()) // the inode is durable; its name only if the directory is synced
			if tt.syncDir != "" {
				must(t, p.SyncDir(tt.syncDir))
			}
			p.Cut()
			got, ok := read(t, p, "/d/f")
			if ok != tt.want {
				t.Fatalf("exists after cut: got %v, want %v", ok, tt.want)
			}
			if ok && got != "x" {
				t.Fatalf("contents: got %q, want %q", got, "x")
			}
			names, err := p.ReadDir("/d")
			must(t, err)
			if got := len(names) == 1; got != tt.want {
				t.Fatalf("ReadDir after cut: got %v, want the file listed %v", names, tt.want)
			}
		})
	}
}

func TestPowerCutRenameReplaces(t *testing.T) {
	p := newPowerCut(t, "/d")
	for name, data := range map[string]string{"/d/old": "old", "/d/new": "new"} {
		f := create(t, p, name, data)
		must(t, f.Sync())
		must(t, f.Close())
	}
	must(t, p.SyncDir("/d"))
	must(t, p.Rename("/d/new", "/d/old"))
	if got, _ := read(t, p, "/d/old"); got != "new" {
		t.Fatalf("after rename: got %q, want %q", got, "new")
	}
	if got, want := p.Files(), []string{"/d/old"}; !slices.Equal(got, want) {
		t.Fatalf("Files: got %v, want %v", got, want)
	}
	if got, want := p.DurableFiles(), []string{"/d/new", "/d/old"}; !slices.Equal(got, want) {
		t.Fatalf("DurableFiles: got %v, want %v", got, want)
	}
	p.Cut()
	if got, _ := read(t, p, "/d/old"); got != "old" {
		t.Fatalf("after cut: got %q, want %q (rename undone)", got, "old")
	}
	must(t, p.Rename("/d/new", "/d/old"))
	must(t, p.SyncDir("/d"))
	p.Cut()
	if got, want := p.Files(), []string{"/d/old"}; !slices.Equal(got, want) {
		t.Fatalf("Files after durable rename: got %v, want %v", got, want)
	}
	if got, _ := read(t, p, "/d/old"); got != "new" {
		t.Fatalf("after durable rename and cut: got %q, want %q", got, "new")
	}
}

func TestPowerCutJournalOrder(t *testing.T) {
	// A SyncDir of /b commits the journal up to its last operation in /b, and so the create in
	// /a logged before it.
	p := newPowerCut(t, "/a", "/b")
	create(t, p, "/a/early", "")
	create(t, p, "/b/y", "")
	create(t, p, "/a/late", "")
	must(t, p.SyncDir("/b"))
	if got, want := p.DurableFiles(), []string{"/a/early", "/b/y"}; !slices.Equal(got, want) {
		t.Fatalf("DurableFiles: got %v, want %v", got, want)
	}
	p.Cut()
	if got, want := p.Files(), []string{"/a/early", "/b/y"}; !slices.Equal(got, want) {
		t.Fatalf("Files after cut: got %v, want %v", got, want)
	}
}

func TestPowerCutDeadHandles(t *testing.T) {
	p := newPowerCut(t, "/d")
	f := create(t, p, "/d/f", "ab")
	must(t, f.Sync())
	must(t, p.SyncDir("/d"))
	closed := create(t, p, "/d/g", "")
	must(t, closed.Close())
	p.Cut()
	_, werr := f.Write([]byte("zz"))
	_, waerr := f.WriteAt([]byte("zz"), 0)
	calls := map[string]error{
		"write":                         werr,
		"writeat":                       waerr,
		"sync":                          f.Sync(),
		"datasync":                      f.Datasync(),
		"close":                         f.Close(),
		"close of a file closed before": closed.Close(),
	}
	for call, err := range calls {
		var pe *fs.PathError
		if !errors.Is(err, fsys.ErrPowerCut) || !errors.Is(err, fs.ErrClosed) || !errors.As(err, &pe) {
			t.Errorf("%s after cut: got %v, want a *fs.PathError wrapping ErrPowerCut", call, err)
		}
	}
	if got, _ := read(t, p, "/d/f"); got != "ab" {
		t.Fatalf("contents after the dead handle's calls: got %q, want %q", got, "ab")
	}
	// A file created after the cut works, and reuses a lost name.
	g := create(t, p, "/d/g", "new")
	must(t, g.Sync())
	must(t, g.Close())
}

func TestPowerCutHandlesFollowInode(t *testing.T) {
	p := newPowerCut(t, "/tmp", "/ready")
	f := create(t, p, "/tmp/x", "one,")
	must(t, p.Rename("/tmp/x", "/ready/x"))
	must(t, p.SyncDir("/ready"))
	if _, err := f.Write([]byte("two")); err != nil {
		t.Fatal(err)
	}
	must(t, f.Sync())
	if got, _ := read(t, p, "/ready/x"); got != "one,two" {
		t.Fatalf("after writing through the renamed file: got %q, want %q", got, "one,two")
	}
	if _, ok := read(t, p, "/tmp/x"); ok {
		t.Fatalf("old name still visible after rename")
	}

	// Writes to a removed file succeed into the orphaned inode.
	must(t, p.Remove("/ready/x"))
	if _, err := f.Write([]byte(",three")); err != nil {
		t.Fatalf("write after remove: got %v, want nil", err)
	}
	must(t, f.Sync())
	if _, ok := read(t, p, "/ready/x"); ok {
		t.Fatalf("removed file still visible")
	}
	// The removal was not made durable: the cut undoes it, with the inode's synced contents.
	p.Cut()
	if got, _ := read(t, p, "/ready/x"); got != "one,two,three" {
		t.Fatalf("after cut undoing the remove: got %q, want %q", got, "one,two,three")
	}
	// Made durable, the orphan is lost.
	g := create(t, p, "/tmp/y", "")
	must(t, p.SyncDir("/tmp"))
	must(t, p.Remove("/tmp/y"))
	must(t, p.SyncDir("/tmp"))
	if _, err := g.Write([]byte("orphan")); err != nil {
		t.Fatal(err)
	}
	must(t, g.Sync())
	p.Cut()
	if got, want := p.Files(), []string{"/ready/x"}; !slices.Equal(got, want) {
		t.Fatalf("Files after cut: got %v, want %v", got, want)
	}
}

// TestPowerCutRandom runs one history under many seeds and checks what CutRandom may keep:
// synced bytes always, then a prefix of the unsynced ones; and a prefix of the journal.
func TestPowerCutRandom(t *testing.T) {
	const seeds = 2000
	chunks := []string{"<one>", "<two>", "<three>"}
	var (
		torn     int              // cuts where the segment ended inside a write
		prefixes = map[int]bool{} // how many of the pending creates survived
	)
	for seed := range uint64(seeds) {
		p := newPowerCut(t, "/open", "/ready", "/tmp")
		// A segment whose name is durable, with a synced head and three unsynced writes.
		seg := create(t, p, "/open/seg", "HEAD")
		must(t, seg.Datasync())
		must(t, p.SyncDir("/open"))
		for _, c := range chunks {
			if _, err := seg.Write([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		// Pending in the journal, in this order: five creates, each with synced contents, then
		// a rename of a durable file from /tmp to /ready.
		for i := range 5 {
			f := create(t, p, fmt.Sprintf("/ready/%d", i), "body")
			must(t, f.Sync())
		}
		mv := create(t, p, "/tmp/mv", "mv")
		must(t, mv.Sync())
		must(t, p.SyncDir("/tmp"))
		// that SyncDir committed the five creates (logged before): log a few more after it.
		for i := 5; i < 10; i++ {
			create(t, p, fmt.Sprintf("/ready/%d", i), "")
		}
		must(t, p.Rename("/tmp/mv", "/ready/mv"))

		p.CutRandom(rand.New(rand.NewPCG(seed, 1)))

		written := "HEAD" + chunks[0] + chunks[1] + chunks[2]
		got, ok := read(t, p, "/open/seg")
		if !ok || !strings.HasPrefix(written, got) || len(got) < len("HEAD") {
			t.Fatalf("seed %d: segment: got %q, want a prefix of %q at least %q long", seed, got, written, "HEAD")
		}
		if n := len(got) - len("HEAD"); n != 0 && n != len(chunks[0]) && n != len(chunks[0]+chunks[1]) && n != len(chunks[0]+chunks[1]+chunks[2]) {
			torn++
		}
		// The surviving creates are /ready/0../ready/k-1 for some k ≥ 5, and the rename can
		// only have survived if all ten did.
		k := 0
		for i := range 10 {
			if _, ok := read(t, p, fmt.Sprintf("/ready/%d", i)); ok {
				if k != i {
					t.Fatalf("seed %d: /ready/%d survived but /ready/%d did not: journal reordered", seed, i, k)
				}
				k++
			}
		}
		if k < 5 {
			t.Fatalf("seed %d: %d creates survived, want at least the 5 a SyncDir made durable", seed, k)
		}
		for i := range 5 {
			if b, _ := read(t, p, fmt.Sprintf("/ready/%d", i)); b != "body" {
				t.Fatalf("seed %d: /ready/%d: got %q, want %q", seed, i, b, "body")
			}
		}
		_, inTmp := read(t, p, "/tmp/mv")
		_, inReady := read(t, p, "/ready/mv")
		if inTmp == inReady {
			t.Fatalf("seed %d: renamed file in /tmp %v, in /ready %v: want exactly one", seed, inTmp, inReady)
		}
		if inReady && k != 10 {
			t.Fatalf("seed %d: rename survived but only %d of the creates logged before it", seed, k)
		}
		prefixes[k] = true
		if inReady {
			prefixes[11] = true
		}

		// After the cut, everything there is durable: a strict cut changes nothing.
		before := snapshot(t, p)
		p.Cut()
		if after := snapshot(t, p); !maps.Equal(before, after) {
			t.Fatalf("seed %d: a second cut changed the files: got %v, want %v", seed, after, before)
		}
	}
	if torn == 0 {
		t.Errorf("no seed tore a write: got 0 torn tails in %d cuts, want some", seeds)
	}
	if len(prefixes) != 7 {
		t.Errorf("journal prefixes seen: got %v, want every length from 5 to 10 and the rename", prefixes)
	}
}

func TestPowerCutRandomReplays(t *testing.T) {
	run := func(seed uint64) map[string]string {
		p := newPowerCut(t, "/d")
		for i := range 20 {
			f := create(t, p, fmt.Sprintf("/d/%02d", i), "synced:")
			must(t, f.Datasync())
			for j := range 5 {
				if _, err := f.Write([]byte(fmt.Sprintf("w%d;", j))); err != nil {
					t.Fatal(err)
				}
			}
		}
		must(t, p.SyncDir("/d"))
		p.CutRandom(rand.New(rand.NewPCG(seed, 2)))
		return snapshot(t, p)
	}
	for seed := range uint64(20) {
		if a, b := run(seed), run(seed); !maps.Equal(a, b) {
			t.Fatalf("seed %d: got %v, then %v, want the same", seed, a, b)
		}
	}
}

// snapshot returns every file's contents.
func snapshot(t testing.TB, p *fsys.PowerCut) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, name := range p.Files() {
		b, err := p.ReadFile(name)
		must(t, err)
		m[name] = string(b)
	}
	return m
}

func TestPowerCutErrors(t *testing.T) {
	p := newPowerCut(t, "/d")
	create(t, p, "/d/f", "x")
	_, createErr := p.CreateExcl("/d/f")
	_, createDirErr := p.CreateExcl("/d")
	_, noDirErr := p.CreateExcl("/nope/f")
	_, underFileErr := p.CreateExcl("/d/f/g")
	_, readErr := p.ReadFile("/d/missing")
	_, readDirErr := p.ReadFile("/d")
	_, readDirMissing := p.ReadDir("/nope")
	_, readDirFile := p.ReadDir("/d/f")
	_, statErr := p.Stat("/d/missing")
	_, relErr := p.CreateExcl("d/f")
	_, statfsErr := p.Statfs("/nope")
	tests := []struct {
		name   string
		err    error
		target error
	}{
		{"CreateExcl existing: os.ErrExist", createErr, os.ErrExist},
		{"CreateExcl existing: EEXIST", createErr, syscall.EEXIST},
		{"CreateExcl over a directory", createDirErr, fs.ErrExist},
		{"CreateExcl in a missing directory", noDirErr, fs.ErrNotExist},
		{"CreateExcl under a file", underFileErr, syscall.ENOTDIR},
		{"ReadFile missing", readErr, fs.ErrNotExist},
		{"ReadFile of a directory", readDirErr, syscall.EISDIR},
		{"ReadDir missing", readDirMissing, syscall.ENOENT},
		{"ReadDir of a file", readDirFile, syscall.ENOTDIR},
		{"Stat missing", statErr, fs.ErrNotExist},
		{"Rename of a missing source", p.Rename("/d/missing", "/d/g"), fs.ErrNotExist},
		{"Rename into a missing directory", p.Rename("/d/f", "/nope/f"), syscall.ENOENT},
		{"Rename onto a directory", p.Rename("/d/f", "/d"), syscall.EISDIR},
		{"Remove missing", p.Remove("/d/missing"), fs.ErrNotExist},
		{"Remove of a directory", p.Remove("/d"), syscall.EISDIR},
		{"SyncDir missing", p.SyncDir("/nope"), fs.ErrNotExist},
		{"SyncDir of a file", p.SyncDir("/d/f"), syscall.ENOTDIR},
		{"MkdirAll through a file", p.MkdirAll("/d/f/sub"), syscall.ENOTDIR},
		{"Statfs missing", statfsErr, fs.ErrNotExist},
		{"relative path", relErr, syscall.EINVAL},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.target) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.target)
		}
		var pe *fs.PathError
		var le *os.LinkError
		if !errors.As(tt.err, &pe) && !errors.As(tt.err, &le) {
			t.Errorf("%s: got %T, want *fs.PathError or *os.LinkError", tt.name, tt.err)
		}
	}
	if !fsys.IsNotExist(readErr) {
		t.Errorf("IsNotExist(%v): got false, want true", readErr)
	}
	// A failed call changes nothing.
	if got, want := p.Files(), []string{"/d/f"}; !slices.Equal(got, want) {
		t.Fatalf("Files after failed calls: got %v, want %v", got, want)
	}
}

func TestPowerCutStat(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = t0.Add(d) }
	p := fsys.NewPowerCut(fsys.PowerCutOptions{Now: clock, Capacity: 1000})
	must(t, p.MkdirAll("/spool/hb"))

	f := create(t, p, "/spool/hb/w", "")
	must(t, p.SyncDir("/spool/hb"))
	set(time.Second)
	if _, err := f.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	must(t, f.Sync())
	set(2 * time.Second)
	if _, err := f.Write([]byte("678")); err != nil {
		t.Fatal(err)
	}
	must(t, f.Datasync())

	fi, err := p.Stat("/spool/hb/w")
	must(t, err)
	if fi.Name() != "w" || fi.Size() != 8 || fi.IsDir() || !fi.Mode().IsRegular() || !fi.ModTime().Equal(t0.Add(2*time.Second)) {
		t.Fatalf("Stat: got %s %d %v %v %v, want w 8 regular %v", fi.Name(), fi.Size(), fi.IsDir(), fi.Mode(), fi.ModTime(), t0.Add(2*time.Second))
	}
	di, err := p.Stat("/spool/hb")
	must(t, err)
	if di.Name() != "hb" || !di.IsDir() || !di.Mode().IsDir() {
		t.Fatalf("Stat dir: got %s %v %v, want hb, a directory", di.Name(), di.IsDir(), di.Mode())
	}
	info, err := p.Statfs("/spool")
	must(t, err)
	if want := (fsys.FSInfo{Type: 0, FreeBytes: 992, TotalBytes: 1000}); info != want {
		t.Fatalf("Statfs: got %+v, want %+v", info, want)
	}

	// Datasync kept the size and data but not the mtime: the cut reverts it to the last Sync.
	p.Cut()
	fi, err = p.Stat("/spool/hb/w")
	must(t, err)
	if fi.Size() != 8 || !fi.ModTime().Equal(t0.Add(time.Second)) {
		t.Fatalf("Stat after cut: got size %d mtime %v, want 8 %v", fi.Size(), fi.ModTime(), t0.Add(time.Second))
	}
}

func TestPowerCutCapacity(t *testing.T) {
	p := fsys.NewPowerCut(fsys.PowerCutOptions{Capacity: 10})
	must(t, p.MkdirAll("/d"))
	f := create(t, p, "/d/a", "1234567")
	n, err := f.Write([]byte("abcdef"))
	if n != 3 || !fsys.IsNoSpace(err) {
		t.Fatalf("write past capacity: got %d, %v, want 3, ENOSPC", n, err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("write past capacity: got %T, want *fs.PathError", err)
	}
	if info, _ := p.Statfs("/d"); info.FreeBytes != 0 {
		t.Fatalf("FreeBytes when full: got %d, want 0", info.FreeBytes)
	}
	must(t, p.Remove("/d/a"))
	if info, _ := p.Statfs("/d"); info.FreeBytes != 10 {
		t.Fatalf("FreeBytes after remove: got %d, want 10", info.FreeBytes)
	}
	g := create(t, p, "/d/b", "0123456789")
	must(t, g.Close())
	p.Cut() // nothing was durable: the space is free again
	if info, _ := p.Statfs("/d"); info.FreeBytes != 10 {
		t.Fatalf("FreeBytes after cut: got %d, want 10", info.FreeBytes)
	}
}

func TestPowerCutMkdirAllOverPendingRemove(t *testing.T) {
	p := newPowerCut(t, "/d")
	f := create(t, p, "/d/x", "")
	must(t, f.Close())
	must(t, p.SyncDir("/d"))
	must(t, p.Remove("/d/x"))
	// Created and removed, pending: replayed later, neither may touch the directory made there.
	g := create(t, p, "/d/z", "")
	must(t, g.Close())
	must(t, p.Remove("/d/z"))
	must(t, p.MkdirAll("/d/x/y"))
	must(t, p.MkdirAll("/d/z"))
	must(t, p.SyncDir("/d"))
	p.Cut()
	for _, dir := range []string{"/d/x", "/d/x/y", "/d/z"} {
		fi, err := p.Stat(dir)
		if err != nil || !fi.IsDir() {
			t.Fatalf("Stat(%s) after cut: got %v, %v, want a directory", dir, fi, err)
		}
	}
	if got := p.Files(); len(got) != 0 {
		t.Fatalf("Files after cut: got %v, want none", got)
	}
}

// TestPowerCutConcurrent is a smoke test for go test -race: writers, directory syncs and cuts at
// once. After a last cut the volatile view is the durable one.
func TestPowerCutConcurrent(t *testing.T) {
	p := newPowerCut(t, "/tmp", "/ready")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tmp := fmt.Sprintf("/tmp/%d-%d", w, i)
				f, err := p.CreateExcl(tmp)
				if err != nil {
					errs <- err
					return
				}
				// Calls may fail once a cut killed the handle or undid the create.
				_, _ = f.Write([]byte("payload"))
				_ = f.Datasync()
				_ = f.Close()
				if p.Rename(tmp, fmt.Sprintf("/ready/%d-%d", w, i)) == nil {
					_ = p.SyncDir("/ready")
				}
				_, _ = p.ReadDir("/ready")
				_, _ = p.Stat("/ready")
				if i%50 == 0 {
					p.Cut()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("create: got %v, want nil", err)
	}
	p.Cut()
	if got, want := p.Files(), p.DurableFiles(); !slices.Equal(got, want) {
		t.Fatalf("after the last cut: Files %v, DurableFiles %v, want equal", got, want)
	}
	for _, name := range p.Files() {
		if b, _ := p.ReadFile(name); len(b) != 0 && !bytes.Equal(b, []byte("payload")) {
			t.Fatalf("%s: got %q, want empty or payload", name, b)
		}
	}
}

// ExamplePowerCut shows the write that a test catches: acknowledged before its directory was
// synced, it does not survive the cut.
func ExamplePowerCut() {
	p := fsys.NewPowerCut(fsys.PowerCutOptions{})
	_ = p.MkdirAll("/spool/tmp")
	_ = p.MkdirAll("/spool/ready")

	f, _ := p.CreateExcl("/spool/tmp/m1")
	_, _ = f.Write([]byte("message 1"))
	_ = f.Sync()
	_ = f.Close()
	_ = p.Rename("/spool/tmp/m1", "/spool/ready/m1")
	// Missing: p.SyncDir("/spool/ready")

	p.Cut()
	_, err := p.ReadFile("/spool/ready/m1")
	fmt.Println(fsys.IsNotExist(err))
	// Output: true
}

// TestPowerCutTruncate: Truncate extends with zeros and cuts, in the volatile view at once; a cut
// before the next sync keeps the durable size (a write since may still survive), one after keeps
// the new size; an extension past the capacity is ENOSPC and changes nothing.
func TestPowerCutTruncate(t *testing.T) {
	p := fsys.NewPowerCut(fsys.PowerCutOptions{Capacity: 64})
	must(t, p.MkdirAll("/d"))
	f := create(t, p, "/d/f", "abcd")
	must(t, f.Sync())
	g := create(t, p, "/d/g", "abcd")
	must(t, g.Sync())
	must(t, p.SyncDir("/d"))

	must(t, f.Truncate(8))
	if got, _ := read(t, p, "/d/f"); got != "abcd\x00\x00\x00\x00" {
		t.Fatalf("after extending: got %q", got)
	}
	if info, _ := p.Statfs("/d"); info.FreeBytes != 52 {
		t.Fatalf("FreeBytes after extending one of two 4-byte files to 8: got %d, want 52", info.FreeBytes)
	}
	must(t, g.Truncate(6))
	if _, err := g.WriteAt([]byte("Z"), 5); err != nil {
		t.Fatal(err)
	}
	must(t, g.Datasync())
	must(t, g.Truncate(2)) // not synced: lost at the cut
	if got, _ := read(t, p, "/d/g"); got != "ab" {
		t.Fatalf("after cutting: got %q, want %q", got, "ab")
	}
	if err := g.Truncate(100); !fsys.IsNoSpace(err) {
		t.Fatalf("extending past the capacity: got %v, want ENOSPC", err)
	}
	if got, _ := read(t, p, "/d/g"); got != "ab" {
		t.Fatalf("a refused extension changed the file: %q", got)
	}
	if err := g.Truncate(-1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a negative size: got %v, want EINVAL", err)
	}

	p.Cut()
	if got, _ := read(t, p, "/d/f"); got != "abcd" {
		t.Fatalf("an extension never synced survived a cut: got %q, want %q", got, "abcd")
	}
	if got, _ := read(t, p, "/d/g"); got != "abcd\x00Z" {
		t.Fatalf("after a cut that lost a truncate: got %q, want the synced %q", got, "abcd\x00Z")
	}
}
