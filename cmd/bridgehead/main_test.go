package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/google/uuid"
)

// runCLI runs the CLI with args and an empty stdin, as main would, and returns what it wrote
// and its error.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLIStdin(t, strings.NewReader(""), args...)
}

// runCLIStdin is runCLI reading stdin.
func runCLIStdin(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(t.Context(), args, stdin, &out, &errb)
	return out.String(), errb.String(), err
}

// mustRunCLI runs the CLI and fails the test if it returns an error.
func mustRunCLI(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("bridgehead %s: got error %v, want nil (stderr %q)", strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

// mustOpenSpool opens a writable spool in dir (a fresh temporary directory if dir is "") and
// closes it when the test ends.
func mustOpenSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatalf("spool.Open(%s): got error %v, want nil", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testMessages returns n distinct messages whose sender and value name tag and their index.
func testMessages(tag string, n int) []message.Message {
	out := make([]message.Message, n)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range out {
		out[i] = message.Message{
			ID:         uuid.New(),
			SenderID:   fmt.Sprintf("sender-%s-%d", tag, i),
			Value:      fmt.Sprintf(`{"tag":%q,"i":%d}`, tag, i),
			Properties: map[string]string{"k": tag},
			ReceivedAt: at,
			Stamp:      "test",
		}
	}
	return out
}

// appendSegment appends msgs as one segment, sealed into ready/.
func appendSegment(t *testing.T, s *spool.Spool, msgs []message.Message) {
	t.Helper()
	if err := s.Append(t.Context(), msgs...); err != nil {
		t.Fatalf("Append: got error %v, want nil", err)
	}
	if err := s.Seal(t.Context()); err != nil {
		t.Fatalf("Seal: got error %v, want nil", err)
	}
}

// claimOnly claims the single segment in ready/ and checks it holds want.
func claimOnly(t *testing.T, s *spool.Spool, want []message.Message) *spool.Claim {
	t.Helper()
	c, err := s.Claim(t.Context())
	if err != nil {
		t.Fatalf("Claim: got error %v, want nil", err)
	}
	if got := messageIDs(c.Messages); !slices.Equal(got, messageIDs(want)) {
		t.Fatalf("Claim: got messages %v, want %v", got, messageIDs(want))
	}
	return c
}

func messageIDs(msgs []message.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// deadReason is the reason the fixture's dead segment was dead-lettered with.
const deadReason = "poison: schema mismatch"

// fixture is a spool with known contents in three states, closed again after setup:
//
//	claimed: A (1 message)
//	dead:    B (2 messages), reason deadReason
//	ready:   C (3 messages), D (4 messages), oldest first
type fixture struct {
	dir        string
	start      time.Time // before the first append
	a, b, c, d seg
}

// seg is one segment of a fixture: its file name, id (name up to the first '.') and records.
type seg struct {
	state string
	name  string
	id    string
	size  int64
	msgs  []message.Message
}

func (g seg) path(dir string) string { return filepath.Join(dir, g.state, g.name) }

// newFixture builds a fixture in a fresh directory. Each Claim finds exactly one ready segment,
// so which segment ends up where does not depend on the claimer's random choice.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), start: time.Now()}
	s := mustOpenSpool(t, f.dir)
	ma, mb, mc, md := testMessages("a", 1), testMessages("b", 2), testMessages("c", 3), testMessages("d", 4)

	appendSegment(t, s, ma)
	claimOnly(t, s, ma) // stays claimed: Close does not release it
	appendSegment(t, s, mb)
	cb := claimOnly(t, s, mb)
	if err := s.DeadLetter(t.Context(), cb, deadReason); err != nil {
		t.Fatalf("DeadLetter: got error %v, want nil", err)
	}
	appendSegment(t, s, mc)
	appendSegment(t, s, md)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}

	claimed := segFiles(t, f.dir, "claimed")
	dead := segFiles(t, f.dir, "dead")
	ready := segFiles(t, f.dir, "ready")
	if len(claimed) != 1 || len(dead) != 1 || len(ready) != 2 {
		t.Fatalf("fixture: got claimed %v, dead %v, ready %v, want 1, 1 and 2 segments", claimed, dead, ready)
	}
	f.a = newSeg(t, f.dir, "claimed", claimed[0], ma)
	f.b = newSeg(t, f.dir, "dead", dead[0], mb)
	f.c = newSeg(t, f.dir, "ready", ready[0], mc)
	f.d = newSeg(t, f.dir, "ready", ready[1], md)
	// Names sort by creation time, so C must come first; a same-millisecond tie breaks at random.
	if !strings.HasPrefix(f.c.name, segPrefix(t, f.dir, mc)) {
		f.c, f.d = newSeg(t, f.dir, "ready", ready[1], mc), newSeg(t, f.dir, "ready", ready[0], md)
	}
	return f
}

// segPrefix returns the id of the ready segment that holds msgs, read back through the spool.
func segPrefix(t *testing.T, dir string, msgs []message.Message) string {
	t.Helper()
	s, err := spool.Open(dir, spool.Options{Inspect: true})
	if err != nil {
		t.Fatalf("spool.Open(inspect): got error %v, want nil", err)
	}
	entries, err := s.List(t.Context(), spool.StateReady)
	if err != nil {
		t.Fatalf("List: got error %v, want nil", err)
	}
	for _, e := range entries {
		got, err := s.Read(t.Context(), e)
		if err != nil {
			t.Fatalf("Read %s: got error %v, want nil", e.Name, err)
		}
		if len(got) > 0 && got[0].ID == msgs[0].ID {
			return e.ID
		}
	}
	t.Fatalf("no ready segment holds message %v", msgs[0].ID)
	return ""
}

func newSeg(t *testing.T, dir, state, name string, msgs []message.Message) seg {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, state, name))
	if err != nil {
		t.Fatalf("stat segment: got error %v, want nil", err)
	}
	id, _, _ := strings.Cut(name, ".")
	return seg{state: state, name: name, id: id, size: fi.Size(), msgs: msgs}
}

// segFiles lists the segment files (not reason files) in dir/state, sorted.
func segFiles(t *testing.T, dir, state string) []string {
	t.Helper()
	return slices.DeleteFunc(dirNames(t, dir, state), func(name string) bool { return strings.HasSuffix(name, ".reason") })
}

// dirNames lists every file in dir/state, sorted.
func dirNames(t *testing.T, dir, state string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, state))
	if err != nil {
		t.Fatalf("read %s: got error %v, want nil", state, err)
	}
	out := make([]string, 0, len(des))
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestVersion(t *testing.T) {
	t.Parallel()
	stdout, stderr := mustRunCLI(t, "version")
	if !strings.HasPrefix(stdout, "bridgehead ") || !strings.HasSuffix(stdout, "\n") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version stdout: got %q, want one line starting %q", stdout, "bridgehead ")
	}
	if !strings.Contains(stdout, " "+version+" ") && !strings.Contains(stdout, " "+version) {
		t.Errorf("version stdout: got %q, want it to contain the version %q", stdout, version)
	}
	if stderr != "" {
		t.Errorf("version stderr: got %q, want empty", stderr)
	}
}

// TestErrorsReportedOnce checks that run returns errors without printing them: main prints each
// once ("bridgehead: ..."), and an exitCode has already been reported by the command.
func TestErrorsReportedOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown command", []string{"nosuch"}, `unknown command "nosuch"`},
		{"unknown flag", []string{"spool", "stats", "--nosuch"}, "unknown flag: --nosuch"},
		{"bad state", []string{"spool", "ls", "--state", "bogus", "--spool-dir", t.TempDir()}, `unknown state "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runCLI(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(stderr, tt.wantErr) || strings.Contains(stderr, "Error:") {
				t.Errorf("stderr: got %q, want the error left to main (printed once)", stderr)
			}
		})
	}
}

func TestExitCodeError(t *testing.T) {
	t.Parallel()
	var err error = fmt.Errorf("wrapped: %w", exitCode(3))
	var ec exitCode
	if !errors.As(err, &ec) || ec != 3 {
		t.Fatalf("errors.As: got %v, want exitCode 3", ec)
	}
	if got, want := exitCode(1).Error(), "exit status 1"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

// TestSpoolDirFlagAndEnv checks where the spool commands look: --spool-dir beats
// BRIDGEHEAD_SPOOL_DIR, which beats ./data/spool. The env is read when run builds the command tree.
func TestSpoolDirFlagAndEnv(t *testing.T) {
	f := newFixture(t)
	empty := t.TempDir()
	t.Chdir(t.TempDir()) // so ./data/spool does not exist

	tests := []struct {
		name         string
		env          *string // nil: unset
		args         []string
		wantSegments int    // ready segments in the output
		wantErr      string // the directory a "not a spool" error names, "" for none
	}{
		{"env", &f.dir, nil, 2, ""},
		{"flag", nil, []string{"--spool-dir", f.dir}, 2, ""},
		{"flag beats env", &empty, []string{"--spool-dir", f.dir}, 2, ""},
		{"flag= beats env", &f.dir, []string{"--spool-dir=" + empty}, 0, empty},
		{"default", nil, nil, 0, "./data/spool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BRIDGEHEAD_SPOOL_DIR", "")
			if tt.env == nil {
				if err := os.Unsetenv("BRIDGEHEAD_SPOOL_DIR"); err != nil {
					t.Fatal(err)
				}
			} else {
				t.Setenv("BRIDGEHEAD_SPOOL_DIR", *tt.env)
			}
			if tt.wantErr != "" {
				_, _, err := runCLI(t, append([]string{"spool", "stats", "--json"}, tt.args...)...)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			stdout, _ := mustRunCLI(t, append([]string{"spool", "stats", "--json"}, tt.args...)...)
			st := decodeStats(t, stdout)
			if got := st.states["ready"]["segments"]; got != float64(tt.wantSegments) {
				t.Errorf("ready segments: got %v, want %v (stdout %q)", got, tt.wantSegments, stdout)
			}
		})
	}
}

// TestRunHonoursContext checks that the context given to run reaches the commands.
func TestRunHonoursContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := newFixture(t)
	var out, errb bytes.Buffer
	err := run(ctx, []string{"spool", "purge", "--older-than", "1ns", "--spool-dir", f.dir}, strings.NewReader(""), &out, &errb)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("purge with a cancelled context: got %v, want %v", err, context.Canceled)
	}
	if got := segFiles(t, f.dir, "dead"); len(got) != 1 {
		t.Errorf("dead segments after a cancelled purge: got %v, want 1", got)
	}
}
