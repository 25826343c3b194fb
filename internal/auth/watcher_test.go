package auth

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// secretVolume mimics a Kubernetes secret volume: the file the server is given is a symlink
// through `..data`, itself a symlink to a timestamped directory; an update writes a new
// directory and renames a fresh `..data` symlink over the old one (kubelet's AtomicWriter).
type secretVolume struct {
	t   *testing.T
	dir string
	gen int
}

const secretFile = "principals.yaml"

func newSecretVolume(t *testing.T, content string) *secretVolume {
	t.Helper()
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.swap(content)
	if err := os.Symlink(filepath.Join("..data", secretFile), filepath.Join(v.dir, secretFile)); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *secretVolume) path() string { return filepath.Join(v.dir, secretFile) }

// swap publishes content as a new generation and removes the previous one.
func (v *secretVolume) swap(content string) {
	v.t.Helper()
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	v.gen++
	gen := fmt.Sprintf("..2026_11_24_10_00_%02d.%d", v.gen, v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, gen), 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, gen, secretFile), []byte(content), 0o644); err != nil {
		v.t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			v.t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // poll interval, not a wait for the condition
	}
}

func keyFile(entries ...[2]string) string {
	var sb strings.Builder
	sb.WriteString("principals:\n")
	for _, e := range entries {
		fmt.Fprintf(&sb, "  - name: %s\n    keySha256: %s\n    senders: ['*']\n", e[0], HashKey(e[1]))
	}
	return sb.String()
}

func mustNewWatcher(t *testing.T, path string, interval time.Duration) (*Watcher, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	w, err := NewWatcher(path, WatchOptions{Interval: interval, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	t.Cleanup(func() {
		for _, secret := range []string{keyA, keyB, HashKey(keyA), HashKey(keyB)} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("logs contain a key or key hash %q:\n%s", secret, logs)
			}
		}
	})
	return w, logs
}

// startWatcher runs w until the test ends and checks Run returns nil once cancelled.
func startWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func has(w *Watcher, key string) bool {
	_, ok := w.Current().ByKey(key)
	return ok
}

func TestWatcherReloadsOnSymlinkSwap(t *testing.T) {
	v := newSecretVolume(t, keyFile([2]string{"a", keyA}))
	w, logs := mustNewWatcher(t, v.path(), 5*time.Millisecond)
	if !has(w, keyA) || has(w, keyB) {
		t.Fatal("initial set: want a only")
	}
	startWatcher(t, w)

	// Add b and revoke a in one swap.
	v.swap(keyFile([2]string{"b", keyB}))
	waitFor(t, "key b to be accepted", func() bool { return has(w, keyB) })
	if has(w, keyA) {
		t.Fatal("revoked key a still accepted")
	}
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(logs.String(), "auth file: reloaded") })

	// A broken file is logged and the old set kept.
	v.swap("principals:\n  - name: c\n    keySha: nope\n")
	waitFor(t, "the broken file to be logged", func() bool { return strings.Contains(logs.String(), "auth file: invalid") })
	if !has(w, keyB) || w.Current().Len() != 1 {
		t.Fatalf("after a broken file: got %v, want the previous set [b]", w.Current().Names())
	}
	if !strings.Contains(logs.String(), "line 3") {
		t.Errorf("log does not name the broken line:\n%s", logs)
	}

	// Fixed again: picked up.
	v.swap(keyFile([2]string{"a", keyA}, [2]string{"b", keyB}))
	waitFor(t, "both keys to be accepted", func() bool { return has(w, keyA) && has(w, keyB) })
}

// TestWatcherPoll drives poll directly, without Run, for the cases where counting log lines
// matters.
func TestWatcherPoll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, secretFile)
	if err := os.WriteFile(path, []byte(keyFile([2]string{"a", keyA})), 0o600); err != nil {
		t.Fatal(err)
	}
	w, logs := mustNewWatcher(t, path, time.Hour)
	first := w.Current()

	// Nothing changed, or only the mtime: the same set, nothing logged.
	w.poll()
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	w.poll()
	if w.Current() != first || logs.String() != "" {
		t.Fatalf("unchanged content: got a new set or logs %q", logs)
	}

	// Broken in place: logged once however often polled.
	if err := os.WriteFile(path, []byte("principals:\n  - name: a\n    role: root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	w.poll()
	if got := strings.Count(logs.String(), "auth file: invalid"); got != 1 {
		t.Fatalf("invalid file logged %d times, want 1:\n%s", got, logs)
	}
	if w.Current() != first {
		t.Fatal("broken file replaced the set")
	}

	// Removed: logged once, set kept.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.poll()
	w.poll()
	if got := strings.Count(logs.String(), "auth file: missing"); got != 1 {
		t.Fatalf("missing file logged %d times, want 1:\n%s", got, logs)
	}
	if !has(w, keyA) {
		t.Fatal("missing file dropped the set")
	}

	// Back with new content: reloaded.
	if err := os.WriteFile(path, []byte(keyFile([2]string{"b", keyB})), 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	if !has(w, keyB) || has(w, keyA) {
		t.Fatalf("after restore: got %v, want [b]", w.Current().Names())
	}
}

// TestWatcherSameSizeSameMtime rewrites the file in place with other bytes of the same length and
// restores its mtime, as a coarse file-system clock would: the recent mtime makes poll read anyway.
func TestWatcherSameSizeSameMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), secretFile)
	before, after := keyFile([2]string{"a", keyA}), keyFile([2]string{"b", keyB})
	if len(before) != len(after) {
		t.Fatalf("fixture sizes differ: %d, %d", len(before), len(after))
	}
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := mustNewWatcher(t, path, time.Hour)
	if err := os.WriteFile(path, []byte(after), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	w.poll()
	if !has(w, keyB) || has(w, keyA) {
		t.Fatalf("got %v, want [b]", w.Current().Names())
	}
}

func TestNewWatcherRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewWatcher(filepath.Join(dir, "absent.yaml"), WatchOptions{}); err == nil {
		t.Fatal("missing file: got no error")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("principals:\n  - nome: a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewWatcher(bad, WatchOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("broken file: got %v, want an error naming line 2", err)
	}
}

// TestWatcherMetrics follows the reload metrics through a failure that persists over several
// polls and a recovery.
func TestWatcherMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), secretFile)
	if err := os.WriteFile(path, []byte(keyFile([2]string{"a", keyA})), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	before := float64(time.Now().Unix())
	w, err := NewWatcher(path, WatchOptions{Interval: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, failures, failing float64) {
		t.Helper()
		if got := testutil.ToFloat64(w.failures); got != failures {
			t.Errorf("%s: %s got %v, want %v", when, ReloadFailuresMetric, got, failures)
		}
		if got := testutil.ToFloat64(w.failing); got != failing {
			t.Errorf("%s: %s got %v, want %v", when, ReloadFailingMetric, got, failing)
		}
	}
	check("after NewWatcher", 0, 0)
	if got := testutil.ToFloat64(w.lastSuccess); got < before {
		t.Errorf("after NewWatcher: %s got %v, want at least %v", LastReloadSuccessMetric, got, before)
	}
	n, err := testutil.GatherAndCount(reg, ReloadFailuresMetric, ReloadFailingMetric, LastReloadSuccessMetric)
	if err != nil || n != 3 {
		t.Fatalf("exported series: got %d (%v), want 3", n, err)
	}

	// Broken: one failure counted, and failing stays 1 at every poll while it stays broken.
	if err := os.WriteFile(path, []byte("principals:\n  - name: a\n    role: root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	w.poll()
	check("broken file", 1, 1)
	w.lastSuccess.Set(0) // so that the recovery below must set it

	// Fixed with new content: loaded, healthy again.
	if err := os.WriteFile(path, []byte(keyFile([2]string{"b", keyB})), 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	check("fixed file", 1, 0)
	if got := testutil.ToFloat64(w.lastSuccess); got < before {
		t.Errorf("after reload: %s got %v, want at least %v", LastReloadSuccessMetric, got, before)
	}

	// Removed, then put back as it was: restored, healthy again.
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.poll()
	check("missing file", 2, 1)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	check("restored file", 2, 0)

	// A second Watcher on the same registry is refused rather than left unexported.
	if _, err := NewWatcher(path, WatchOptions{Registerer: reg}); err == nil {
		t.Fatal("second Watcher on one registry: got no error")
	}
}
