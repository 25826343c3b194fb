package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// quarantined makes a spool with one damaged segment, quarantined by a consumer that re-spooled
// its intact records, and returns the spool's directory and the quarantined segment's id.
func quarantined(t *testing.T) (dir, id string, msgs []message.Message) {
	t.Helper()
	dir = t.TempDir()
	s := mustOpenSpool(t, dir)
	msgs = testMessages("q", 3)
	appendSegment(t, s, msgs)
	ready, err := s.List(t.Context(), spool.StateReady)
	if err != nil || len(ready) != 1 {
		t.Fatalf("ready: %v %v", ready, err)
	}
	path := filepath.Join(dir, "ready", ready[0].Name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 0xff // damage the last record
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(t.Context()) // quarantines it, re-spools the intact records
	if err != nil || c == nil || !c.Salvaged {
		t.Fatalf("Claim of a damaged segment: %+v %v, want the salvaged records", c, err)
	}
	if err := s.Ack(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return dir, ready[0].ID, msgs
}

func TestSpoolQuarantineExportRequeuePurge(t *testing.T) {
	t.Parallel()
	dir, id, msgs := quarantined(t)
	spoolArgs := func(args ...string) []string {
		return append([]string{"spool", "--spool-dir", dir, "quarantine"}, args...)
	}

	// ls shows it with its reason.
	stdout, _ := mustRunCLI(t, spoolArgs("ls")...)
	if !strings.Contains(stdout, id) || !strings.Contains(stdout, "re-spooled as") {
		t.Fatalf("quarantine ls: %q, want %s with its reason", stdout, id)
	}
	// export: the intact records, in the shape send takes, with their ids.
	stdout, stderr := mustRunCLI(t, spoolArgs("export", id)...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(msgs)-1 || !strings.Contains(stderr, "exported 2 intact records") {
		t.Fatalf("export: %q / %q, want the 2 intact records", stdout, stderr)
	}
	for i, line := range lines {
		in, errs := message.Limits{}.Parse([]byte(line))
		if errs != nil || *in.ID != msgs[i].ID.String() || *in.Value != msgs[i].Value {
			t.Errorf("export line %d %q: %v, want message %d with its id, sendable", i, line, errs, i)
		}
	}
	// requeue: refused while the intact records were re-spooled already, unless forced.
	if _, _, err := runCLI(t, spoolArgs("requeue", id)...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("requeue of a re-spooled segment: %v, want a refusal naming --force", err)
	}
	// purge: asks first; anything but yes deletes nothing.
	if _, _, err := runCLIStdin(t, strings.NewReader("no\n"), spoolArgs("purge", "--older-than", "1ns")...); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("purge answered no: %v", err)
	}
	if got := segFiles(t, dir, "quarantine"); len(got) != 1 {
		t.Fatalf("quarantine after an unconfirmed purge: %v", got)
	}
	mustRunCLI(t, spoolArgs("requeue", "--force", id)...)
	if got := segFiles(t, dir, "ready"); len(got) != 1 {
		t.Fatalf("ready after a forced requeue: %v, want the segment back", got)
	}
}

func TestSpoolQuarantinePurgeConfirmed(t *testing.T) {
	t.Parallel()
	dir, _, _ := quarantined(t)
	stdout, _, err := runCLIStdin(t, strings.NewReader("yes\n"), "spool", "--spool-dir", dir, "quarantine", "purge", "--older-than", "1ns")
	if err != nil || !strings.Contains(stdout, "purged 1 quarantined segments") {
		t.Fatalf("purge confirmed: %q %v", stdout, err)
	}
	if got := segFiles(t, dir, "quarantine"); len(got) != 0 {
		t.Fatalf("quarantine after the purge: %v", got)
	}
}
