package e2e

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/google/uuid"
)

// format1Commit is the last commit whose binary writes spool format 1 ("bridgehead-spool 1"):
// the one before the spool moved to format 2.
const format1Commit = "500e2f29f12822e85a6b2e3e167a1d1ca211bdf7"

// format1Binary returns a bridgehead binary built from format1Commit. It is cached under
// os.UserCacheDir()/bridgehead-test/format1-500e2f2/, so only the first run on a machine pays
// for the build (a few seconds with a warm Go build cache). The commit comes from this
// repository's history: a checkout without it fails the test with what to fetch.
func format1Binary(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no user cache directory for the format-1 binary: %v", err)
	}
	dir := filepath.Join(cache, "bridgehead-test", "format1-"+format1Commit[:7])
	bin := filepath.Join(dir, "bridgehead")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}

	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	top, err := git("rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatalf("this test builds bridgehead from commit %s of this repository's history, but %s is not a git checkout (git rev-parse: %v: %s): run it from a clone with history",
			format1Commit[:7], mustGetwd(t), err, top)
	}
	if out, err := git("-C", top, "cat-file", "-e", format1Commit+"^{commit}"); err != nil {
		shallow, _ := git("-C", top, "rev-parse", "--is-shallow-repository")
		t.Fatalf("commit %s (the last spool-format-1 binary) is not in %s (git cat-file: %v %s; shallow clone: %s): fetch it with `git -C %s fetch --unshallow`, or `git -C %s fetch <remote> %s`",
			format1Commit[:7], top, err, out, shallow, top, top, format1Commit)
	}

	src := filepath.Join(t.TempDir(), "src")
	if err := gitArchive(top, format1Commit, src); err != nil {
		t.Fatalf("extract commit %s: %v", format1Commit[:7], err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Built beside its final name and renamed into place, so that a concurrent run never sees
	// half a binary.
	tmp, err := os.CreateTemp(dir, "bridgehead-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name())
	build := exec.Command("go", "build", "-trimpath", "-o", tmp.Name(), "./cmd/bridgehead")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bridgehead at %s: %v\n%s", format1Commit[:7], err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// gitArchive writes the tree of commit in the repository at top into dst (git archive, read
// here rather than piped to tar).
func gitArchive(top, commit, dst string) error {
	cmd := exec.Command("git", "-C", top, "archive", "--format=tar", commit)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	xerr := untar(out, dst)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive: %w: %s", err, stderr.String())
	}
	return xerr
}

func untar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dst, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dst)+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q escapes the destination", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, werr := io.Copy(f, tr)
			if err := errors.Join(werr, f.Close()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, name); err != nil {
				return err
			}
		}
		// pax global headers (the commit id) and anything else carry no files.
	}
}

// TestFormat1BinaryRefusesFormat2Spool: after the upgrade, a format-1 binary started on the spool
// (a rollback, or a stale replica) refuses it at once, naming the version, and leaves it as it
// was.
func TestFormat1BinaryRefusesFormat2Spool(t *testing.T) {
	old := format1Binary(t)

	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	if err := sp.Append(context.Background(), message.Message{ID: id, SenderID: "e2e", Value: "written by format 2", ReceivedAt: time.Now().UTC(), Stamp: "e2e"}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil { // seals the message into ready/
		t.Fatal(err)
	}
	version, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil || string(version) != "bridgehead-spool 2\n" {
		t.Fatalf("VERSION of a new spool: got %q, %v; want %q", version, err, "bridgehead-spool 2\n")
	}

	for _, args := range [][]string{
		{"spool", "stats", "--spool-dir", dir},
		{"serve", "--spool-dir", dir, "--listen", "127.0.0.1:0", "--file-path", filepath.Join(t.TempDir(), "out.ndjson")},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, old, args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "BRIDGEHEAD_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() <= 0 {
			t.Errorf("format-1 bridgehead %s on a format-2 spool: got %v, want a non-zero exit\n%s", args[0], err, out)
			continue
		}
		for _, want := range []string{"unknown spool format version", `"bridgehead-spool 2"`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("format-1 bridgehead %s on a format-2 spool: got output %q, want it to name %s", args[0], out, want)
			}
		}
	}

	if got, err := os.ReadFile(filepath.Join(dir, "VERSION")); err != nil || string(got) != "bridgehead-spool 2\n" {
		t.Fatalf("VERSION after the format-1 binary ran: got %q, %v; want it unchanged", got, err)
	}
	if !spooled(t, dir)[id] {
		t.Fatalf("message %s is no longer in the spool after the format-1 binary ran", id)
	}
}
