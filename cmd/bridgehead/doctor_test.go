package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// TestDoctorCLI runs `bridgehead doctor` as an operator would: the table on a healthy stamp
// (exit 0), --json with a sink where nothing listens (exit 1, the cause named), the spool taken
// from BRIDGEHEAD_SPOOL_DIR as serve takes it, and a configuration serve would refuse.
func TestDoctorCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := mustOpenSpool(t, dir).Close(); err != nil {
		t.Fatal(err)
	}
	delivered := filepath.Join(t.TempDir(), "delivered.ndjson")
	t.Setenv("BRIDGEHEAD_SPOOL_DIR", dir)
	t.Setenv("BRIDGEHEAD_FILE_PATH", delivered)

	t.Run("table, healthy", func(t *testing.T) {
		stdout, _, err := runCLI(t, "doctor")
		if err != nil {
			t.Fatalf("doctor on a healthy stamp: %v, want exit 0\n%s", err, stdout)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 9 || !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[0], "WHAT TO DO") {
			t.Fatalf("want a header and 8 checks, got:\n%s", stdout)
		}
		for _, l := range lines[1:] {
			if !strings.Contains(l, "PASS") && !strings.Contains(l, "SKIP") {
				t.Errorf("on a healthy stamp: %s", l)
			}
		}
		if !strings.Contains(stdout, "file "+delivered) {
			t.Errorf("the sink row does not name the file of BRIDGEHEAD_FILE_PATH:\n%s", stdout)
		}
	})

	t.Run("json, sink down", func(t *testing.T) {
		addr := sinktest.RefusedAddr(t)
		stdout, _, err := runCLI(t, "doctor", "--json", "--sink", "kafka", "--kafka-brokers", addr, "--kafka-topic", "readings", "--timeout", "3s")
		var ec exitCode
		if !errors.As(err, &ec) || ec != 1 {
			t.Fatalf("doctor with the sink down: %v, want exit status 1", err)
		}
		var got struct {
			Status string `json:"status"`
			Checks []struct {
				Check, Status, Reason, Action string
			} `json:"checks"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("--json: %v\n%s", err, stdout)
		}
		if got.Status != "fail" || len(got.Checks) != 8 {
			t.Fatalf("--json: status %q with %d checks, want fail with 8\n%s", got.Status, len(got.Checks), stdout)
		}
		for _, c := range got.Checks {
			switch {
			case c.Check == "sink" && (c.Status != "fail" || !strings.Contains(c.Reason, "dial tcp "+addr+": connect: connection refused") || c.Action == ""):
				t.Errorf("sink: %+v, want fail naming the refused connection, with an action", c)
			case c.Check != "sink" && c.Status == "fail":
				t.Errorf("%s failed: %s", c.Check, c.Reason)
			}
		}
	})

	t.Run("configuration serve would refuse", func(t *testing.T) {
		stdout, _, err := runCLI(t, "doctor", "--auth", "required")
		if !errors.As(err, new(exitCode)) || !strings.Contains(stdout, "--auth required needs --auth-file") {
			t.Fatalf("doctor --auth required: %v, want exit 1 and the reason\n%s", err, stdout)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{{"--role", "both"}, {"--timeout", "0s"}, {"--max-age", "soon"}} {
			_, _, err := runCLI(t, append([]string{"doctor"}, args...)...)
			if err == nil || errors.As(err, new(exitCode)) || !strings.Contains(err.Error(), args[0]) {
				t.Errorf("doctor %v: %v, want an error naming %s", args, err, args[0])
			}
		}
	})

	t.Run("not a spool", func(t *testing.T) {
		stdout, _, err := runCLI(t, "doctor", "--spool-dir", t.TempDir())
		if !errors.As(err, new(exitCode)) || !strings.Contains(stdout, "has no VERSION file") {
			t.Fatalf("doctor on an empty directory: %v, want exit 1 naming the missing VERSION\n%s", err, stdout)
		}
	})
}
