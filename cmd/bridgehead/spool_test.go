package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// statsJSON is the decoded output of `spool stats --json`.
type statsJSON struct {
	states map[string]map[string]float64 // state → segments, messages, bytes
	oldest float64
}

var (
	stateKeys    = []string{"open", "recovering", "ready", "claimed", "dead", "quarantine"}
	statsTopKeys = append(slices.Clone(stateKeys), "oldestAgeSeconds")
	countKeys    = []string{"segments", "messages", "bytes"}
	// statsJSONRe is the exact shape the issues promise, key order included (format 2 added
	// open and recovering, in pipeline order; priorities added the breakdown by priority of
	// what waits, when something does).
	statsJSONRe = regexp.MustCompile(`^\{` +
		`"open":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"recovering":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"ready":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"claimed":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"dead":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"quarantine":\{"segments":\d+,"messages":\d+,"bytes":\d+\},` +
		`"oldestAgeSeconds":[0-9][0-9.e+-]*` +
		`(,"priorities":\[\{"priority":\d,"segments":\d+,"messages":\d+,"bytes":\d+,"oldestAgeSeconds":[0-9][0-9.e+-]*\}` +
		`(,\{"priority":\d,"segments":\d+,"messages":\d+,"bytes":\d+,"oldestAgeSeconds":[0-9][0-9.e+-]*\})*\])?\}\n$`)
)

// decodeStats checks the exact shape of `stats --json` output and decodes it.
func decodeStats(t *testing.T, out string) statsJSON {
	t.Helper()
	if !statsJSONRe.MatchString(out) {
		t.Fatalf("stats --json: got %q, want the shape %s", out, statsJSONRe)
	}
	if got := topLevelKeys(t, out); !slices.Equal(got, statsTopKeys) && !slices.Equal(got, append(slices.Clone(statsTopKeys), "priorities")) {
		t.Fatalf("top-level keys: got %v, want %v (and priorities when something waits)", got, statsTopKeys)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("decode stats: got error %v, want nil", err)
	}
	st := statsJSON{states: map[string]map[string]float64{}}
	for _, k := range stateKeys {
		var m map[string]float64
		if err := json.Unmarshal(raw[k], &m); err != nil {
			t.Fatalf("decode %s: got error %v, want nil", k, err)
		}
		if got := slices.Sorted(mapKeys(m)); !slices.Equal(got, slices.Sorted(slices.Values(countKeys))) {
			t.Fatalf("%s keys: got %v, want %v", k, got, countKeys)
		}
		st.states[k] = m
	}
	if err := json.Unmarshal(raw["oldestAgeSeconds"], &st.oldest); err != nil {
		t.Fatalf("decode oldestAgeSeconds: got error %v, want nil", err)
	}
	return st
}

func mapKeys(m map[string]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// topLevelKeys returns the keys of the JSON object in s, in the order written.
func topLevelKeys(t *testing.T, s string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("first token: got %v (%v), want {", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("key token: got error %v, want nil", err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("value of %v: got error %v, want nil", tok, err)
		}
	}
	return keys
}

func TestSpoolStatsJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stdout, stderr := mustRunCLI(t, "spool", "stats", "--json", "--spool-dir", f.dir)
	elapsed := time.Since(f.start).Seconds()
	st := decodeStats(t, stdout)
	want := map[string]map[string]float64{
		"ready":      {"segments": 2, "messages": 7, "bytes": float64(f.c.size + f.d.size)},
		"claimed":    {"segments": 1, "messages": 1, "bytes": float64(f.a.size)},
		"dead":       {"segments": 1, "messages": 2, "bytes": float64(f.b.size)},
		"quarantine": {"segments": 0, "messages": 0, "bytes": 0},
	}
	for _, k := range stateKeys {
		for _, c := range countKeys {
			if got, want := st.states[k][c], want[k][c]; got != want {
				t.Errorf("%s.%s: got %v, want %v", k, c, got, want)
			}
		}
	}
	// The oldest undelivered segment is A (claimed), created after f.start.
	if st.oldest < 0 || st.oldest > elapsed+0.001 {
		t.Errorf("oldestAgeSeconds: got %v, want between 0 and %v", st.oldest, elapsed)
	}
	if stderr != "" {
		t.Errorf("stderr: got %q, want empty", stderr)
	}
}

func TestSpoolStatsTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stdout, stderr := mustRunCLI(t, "spool", "stats", "--spool-dir", f.dir)
	elapsed := time.Since(f.start)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 9 {
		t.Fatalf("stats: got %d lines %q, want 9", len(lines), stdout)
	}
	want := [][]string{
		{"state", "segments", "messages", "bytes"},
		{"open", "0", "-", "0"},
		{"recovering", "0", "-", "0"},
		{"ready", "2", "7", strconv.FormatInt(f.c.size+f.d.size, 10)},
		{"claimed", "1", "1", strconv.FormatInt(f.a.size, 10)},
		{"dead", "1", "2", strconv.FormatInt(f.b.size, 10)},
		{"quarantine", "0", "0", "0"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !slices.Equal(got, w) {
			t.Errorf("line %d: got %q, want fields %q", i, lines[i], w)
		}
	}
	age, ok := strings.CutPrefix(lines[7], "oldest undelivered: ")
	if !ok {
		t.Fatalf("last line: got %q, want %q", lines[7], "oldest undelivered: <duration>")
	}
	if d, err := time.ParseDuration(age); err != nil || d < 0 || d > elapsed+time.Millisecond {
		t.Errorf("oldest undelivered: got %q (%v), want a duration between 0 and %v", age, err, elapsed)
	}
	// The fixture's messages are all of priority 0: the 7 ready and the 1 claimed wait.
	if !strings.HasPrefix(lines[8], "priority 0: 8 messages waiting (ready or claimed), oldest ") {
		t.Errorf("by priority: got %q, want priority 0 with the 8 ready or claimed messages", lines[8])
	}
	if stderr != "" {
		t.Errorf("stderr: got %q, want empty", stderr)
	}
}

// TestSpoolNotASpool checks the commands on a directory no writer has initialised yet: the read
// commands print an empty spool and a note, the others refuse.
func TestSpoolNotASpool(t *testing.T) {
	t.Parallel()
	// Every command fails, naming the directory and what is wrong with it: a cron check of an
	// unmounted share must not read as a healthy, empty spool.
	for _, args := range [][]string{
		{"stats", "--json"}, {"stats"}, {"ls"}, {"verify"}, {"show", "x"}, {"requeue", "--all-dead"}, {"purge", "--older-than", "1h"},
	} {
		for _, sub := range []string{"empty", "missing"} {
			t.Run(strings.Join(args, " ")+"/"+sub, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				want := "has no VERSION file"
				if sub == "missing" {
					dir, want = filepath.Join(dir, "nope"), "does not exist (is the share mounted?)"
				}
				stdout, _, err := runCLI(t, append([]string{"spool", "--spool-dir", dir}, args...)...)
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("error: got %v, want one containing %q and %q", err, want, dir)
				}
				if stdout != "" {
					t.Errorf("stdout: got %q, want nothing", stdout)
				}
			})
		}
	}
}

// TestSpoolWithoutVersionIsDamaged: a spool whose VERSION went missing still holds messages;
// the CLI reports it as damaged, and serve refuses to start a new spool over it.
func TestSpoolWithoutVersionIsDamaged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := os.Remove(filepath.Join(f.dir, "VERSION")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"stats"}, {"verify"}, {"ls"}} {
		if _, _, err := runCLI(t, append([]string{"spool", "--spool-dir", f.dir}, args...)...); err == nil || !strings.Contains(err.Error(), "holds segments but no VERSION") {
			t.Errorf("spool %v: got %v, want a damaged-spool error", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "VERSION")); err == nil {
		t.Fatal("VERSION was re-created")
	}
}

func TestSpoolLs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	header := []string{"STATE", "SEGMENT", "MESSAGES", "BYTES", "ATTEMPT", "CREATED", "DETAIL"}
	row := func(g seg, msgs, attempt int) []string {
		return []string{g.state, g.name, strconv.Itoa(msgs), strconv.FormatInt(g.size, 10), strconv.Itoa(attempt)}
	}
	// Oldest first within a state; states in pipeline order.
	ready := []seg{f.c, f.d}
	slices.SortFunc(ready, func(x, y seg) int { return strings.Compare(x.name, y.name) })
	tests := []struct {
		name     string
		args     []string
		wantRows [][]string // the first five fields of each row
		wantErr  string
	}{
		{"all", nil, [][]string{row(ready[0], len(ready[0].msgs), 0), row(ready[1], len(ready[1].msgs), 0), row(f.a, 1, 1), row(f.b, 2, 1)}, ""},
		{"ready", []string{"--state", "ready"}, [][]string{row(ready[0], len(ready[0].msgs), 0), row(ready[1], len(ready[1].msgs), 0)}, ""},
		{"claimed", []string{"--state", "claimed"}, [][]string{row(f.a, 1, 1)}, ""},
		{"dead", []string{"--state", "dead"}, [][]string{row(f.b, 2, 1)}, ""},
		{"quarantine", []string{"--state=quarantine"}, nil, ""},
		{"bad state", []string{"--state", "deadd"}, nil, `unknown state "deadd" (want open, recovering, ready, claimed, dead or quarantine)`},
		{"argument", []string{"dead"}, nil, `unknown command "dead"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, append([]string{"spool", "ls", "--spool-dir", f.dir}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
				}
				if stdout != "" {
					t.Errorf("stdout: got %q, want empty", stdout)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: got %v, want nil", err)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if got := strings.Fields(lines[0]); !slices.Equal(got, header) {
				t.Fatalf("header: got %q, want %q", lines[0], header)
			}
			if got, want := len(lines)-1, len(tt.wantRows); got != want {
				t.Fatalf("rows: got %d %q, want %d", got, stdout, want)
			}
			for i, want := range tt.wantRows {
				fields := strings.Fields(lines[i+1])
				if len(fields) < 6 || !slices.Equal(fields[:5], want) {
					t.Errorf("row %d: got %q, want it to start with %q", i, lines[i+1], want)
					continue
				}
				if _, err := time.Parse(time.RFC3339, fields[5]); err != nil {
					t.Errorf("row %d created: got %q, want RFC 3339 (%v)", i, fields[5], err)
				}
				// A claimed segment names its owner and lease deadline, a dead one its reason; the
				// others have no detail.
				switch want[0] {
				case "claimed":
					if len(fields) != 10 || fields[6] != "owner" || fields[8] != "until" {
						t.Errorf("row %d detail: got %q, want owner/until", i, lines[i+1])
					}
				case "dead":
					if !strings.Contains(lines[i+1], "reason: poison: schema mismatch (since ") {
						t.Errorf("row %d detail: got %q, want the dead letter's reason", i, lines[i+1])
					}
				default:
					if len(fields) != 6 {
						t.Errorf("row %d detail: got %q, want none", i, lines[i+1])
					}
				}
			}
			if stderr != "" {
				t.Errorf("stderr: got %q, want empty", stderr)
			}
		})
	}
}

// checkRecords checks that stdout holds one JSON object per message, in order.
func checkRecords(t *testing.T, stdout string, want []message.Message) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if stdout == "" {
		lines = nil
	}
	if len(lines) != len(want) {
		t.Fatalf("records: got %d lines %q, want %d", len(lines), stdout, len(want))
	}
	for i, m := range want {
		var got map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("record %d: got %q (%v), want a JSON object", i, lines[i], err)
		}
		wantFields := map[string]any{
			"correlationId": m.ID.String(),
			"senderId":      m.SenderID,
			"value":         m.Value,
			"stamp":         m.Stamp,
			"receivedAt":    m.ReceivedAt.Format(time.RFC3339Nano),
			"properties":    map[string]any{"k": m.Properties["k"]},
		}
		for k, w := range wantFields {
			if fmt.Sprint(got[k]) != fmt.Sprint(w) {
				t.Errorf("record %d %s: got %v, want %v", i, k, got[k], w)
			}
		}
		if len(got) != len(wantFields) {
			t.Errorf("record %d: got keys %v, want %d keys", i, got, len(wantFields))
		}
	}
}

func TestSpoolShow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	unknownID := f.c.id[:13] + strings.Repeat("a", 26) + f.c.id[39:] // a well-formed id of no segment
	tests := []struct {
		name       string
		arg        string
		want       seg
		wantHead   string // the first stderr line starts with this
		wantReason bool
		wantErr    string
	}{
		{"dead by name", f.b.name, f.b, "dead/" + f.b.name + ": 2 messages, " + strconv.FormatInt(f.b.size, 10) + " bytes, attempt 1, created ", true, ""},
		{"dead by id", f.b.id, f.b, "dead/" + f.b.name + ": 2 messages, ", true, ""},
		{"ready by id", f.c.id, f.c, "ready/" + f.c.name + ": 3 messages, " + strconv.FormatInt(f.c.size, 10) + " bytes, attempt 0, created ", false, ""},
		{"ready by name", f.d.name, f.d, "ready/" + f.d.name + ": 4 messages, ", false, ""},
		{"claimed by name", f.a.name, f.a, "claimed/" + f.a.name + ": 1 messages, ", false, ""},
		{"ready name under an old attempt", f.c.id + ".a7", f.c, "ready/" + f.c.name + ": 3 messages, ", false, ""},
		{"unknown id", unknownID, seg{}, "", false, "segment " + unknownID + ": not found"},
		{"not a name", "nope", seg{}, "", false, `"nope" is not a segment name or id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, "spool", "show", "--spool-dir", f.dir, tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
				}
				if stdout != "" {
					t.Errorf("stdout: got %q, want empty", stdout)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: got %v, want nil", err)
			}
			checkRecords(t, stdout, tt.want.msgs)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if !strings.HasPrefix(lines[0], tt.wantHead) {
				t.Errorf("summary: got %q, want it to start with %q", lines[0], tt.wantHead)
			}
			wantLines := 1
			if tt.wantReason {
				wantLines = 2
				want := regexp.MustCompile(`^reason: ` + regexp.QuoteMeta(deadReason) + ` \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$`)
				if len(lines) < 2 || !want.MatchString(lines[1]) {
					t.Errorf("reason line: got %q, want one line matching %s", stderr, want)
				}
			}
			if len(lines) != wantLines {
				t.Errorf("stderr: got %d lines %q, want %d", len(lines), stderr, wantLines)
			}
		})
	}
	t.Run("args", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{nil, {f.b.id, f.c.id}} {
			_, _, err := runCLI(t, append([]string{"spool", "show", "--spool-dir", f.dir}, args...)...)
			if want := fmt.Sprintf("accepts 1 arg(s), received %d", len(args)); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("show %v: got %v, want an error containing %q", args, err, want)
			}
		}
	})
}

func TestSpoolRequeue(t *testing.T) {
	t.Parallel()
	const both = "give segment names or --all-dead, not both or neither"
	tests := []struct {
		name       string
		args       func(f *fixture) []string
		wantStdout string
		wantErr    func(f *fixture) string
	}{
		{"by name", func(f *fixture) []string { return []string{f.b.name} }, "requeued 1 segments (2 messages)\n", nil},
		{"by id", func(f *fixture) []string { return []string{f.b.id} }, "requeued 1 segments (2 messages)\n", nil},
		{"all dead", func(*fixture) []string { return []string{"--all-dead"} }, "requeued 1 segments (2 messages)\n", nil},
		{"neither", func(*fixture) []string { return nil }, "", func(*fixture) string { return both }},
		{"both", func(f *fixture) []string { return []string{"--all-dead", f.b.id} }, "", func(*fixture) string { return both }},
		{"ready segment", func(f *fixture) []string { return []string{f.c.id} }, "", func(f *fixture) string {
			return "requeue " + f.c.id + ": segment is ready; only dead segments can be requeued"
		}},
		{"unknown", func(f *fixture) []string { return []string{f.b.id[:40] + "zzzzzzzzzzzz" + f.b.id[52:]} }, "", func(f *fixture) string {
			return "segment " + f.b.id[:40] + "zzzzzzzzzzzz" + f.b.id[52:] + ": not found"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			stdout, stderr, err := runCLI(t, append([]string{"spool", "requeue", "--spool-dir", f.dir}, tt.args(f)...)...)
			if tt.wantErr != nil {
				if want := tt.wantErr(f); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error: got %v, want one containing %q", err, want)
				}
				if got, want := dirNames(t, f.dir, "dead"), []string{f.b.name, f.b.name + ".reason"}; !slices.Equal(got, want) {
					t.Errorf("dead/ after a refused requeue: got %v, want %v", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: got %v, want nil", err)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout: got %q, want %q", stdout, tt.wantStdout)
			}
			if stderr != "" {
				t.Errorf("stderr: got %q, want empty (no progress under 100 segments)", stderr)
			}
			// Back in ready/ with the attempt count reset, and the reason gone with it.
			if got := dirNames(t, f.dir, "dead"); len(got) != 0 {
				t.Errorf("dead/: got %v, want empty", got)
			}
			if got := segFiles(t, f.dir, "ready"); !slices.Contains(got, f.b.id+".a0") || len(got) != 3 {
				t.Errorf("ready/: got %v, want C, D and %s", got, f.b.id+".a0")
			}
			out, _ := mustRunCLI(t, "spool", "show", "--spool-dir", f.dir, f.b.id)
			checkRecords(t, out, f.b.msgs)
		})
	}
}

// TestSpoolRequeueAllDeadProgress requeues enough dead segments for progress to be reported; the
// buffer is not a terminal, so it comes as plain lines on stderr.
func TestSpoolRequeueAllDeadProgress(t *testing.T) {
	t.Parallel()
	const n = 100
	dir := t.TempDir()
	s := mustOpenSpool(t, dir)
	for i := range n {
		appendSegment(t, s, testMessages(strconv.Itoa(i), 1))
	}
	for range n {
		c, err := s.Claim(t.Context())
		if err != nil {
			t.Fatalf("Claim: got error %v, want nil", err)
		}
		if err := s.DeadLetter(t.Context(), c, "test"); err != nil {
			t.Fatalf("DeadLetter: got error %v, want nil", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}

	stdout, stderr := mustRunCLI(t, "spool", "requeue", "--all-dead", "--spool-dir", dir)
	if want := fmt.Sprintf("requeued %d segments (%d messages)\n", n, n); stdout != want {
		t.Errorf("stdout: got %q, want %q", stdout, want)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	progress := regexp.MustCompile(`^requeue: (\d+)/100 \((\d+)%\)$`)
	prev := 0
	for _, l := range lines {
		m := progress.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("stderr line: got %q, want a progress line like %q (stderr %q)", l, "requeue: 50/100 (50%)", stderr)
		}
		done, _ := strconv.Atoi(m[1])
		if pct, _ := strconv.Atoi(m[2]); done <= prev || pct != done*100/n {
			t.Errorf("progress line %q: got done %d pct %d after %d, want increasing done and pct = done%%", l, done, pct, prev)
		}
		prev = done
	}
	if len(lines) < 2 || len(lines) > 11 {
		t.Errorf("progress lines: got %d %q, want 2 to 11 (one every 10%% at most)", len(lines), stderr)
	}
	if last := lines[len(lines)-1]; last != "requeue: 100/100 (100%)" {
		t.Errorf("last progress line: got %q, want %q", last, "requeue: 100/100 (100%)")
	}
	if got := dirNames(t, dir, "dead"); len(got) != 0 {
		t.Errorf("dead/: got %d files, want 0", len(got))
	}
	if got := segFiles(t, dir, "ready"); len(got) != n {
		t.Errorf("ready/: got %d segments, want %d", len(got), n)
	}
}

func TestSpoolPurge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantStdout string
		wantErr    string
	}{
		{"fresh kept", []string{"--state", "dead", "--older-than", "1h"}, "purged 0 dead segments older than 1h0m0s\n", ""},
		{"older than 1ns", []string{"--state", "dead", "--older-than", "1ns"}, "purged 1 dead segments older than 1ns\n", ""},
		{"state defaults to dead", []string{"--older-than=1ns"}, "purged 1 dead segments older than 1ns\n", ""},
		{"quarantine refused", []string{"--state", "quarantine", "--older-than", "1ns"}, "",
			"only the dead state can be purged here (quarantine: bridgehead spool quarantine purge"},
		{"ready refused", []string{"--state", "ready", "--older-than", "1ns"}, "", "only the dead state can be purged"},
		{"bad state", []string{"--state", "gone", "--older-than", "1ns"}, "", `unknown state "gone"`},
		{"missing older-than", []string{"--state", "dead"}, "", `required flag(s) "older-than" not set`},
		{"zero older-than", []string{"--older-than", "0s"}, "", "--older-than must be a positive duration"},
		{"negative older-than", []string{"--older-than", "-1h"}, "", "--older-than must be a positive duration"},
		{"bad older-than", []string{"--older-than", "week"}, "", `invalid argument "week" for "--older-than"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			stdout, _, err := runCLI(t, append([]string{"spool", "purge", "--spool-dir", f.dir}, tt.args...)...)
			wantDead := []string{f.b.name, f.b.name + ".reason"}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("error: got %v, want nil", err)
				}
				if stdout != tt.wantStdout {
					t.Errorf("stdout: got %q, want %q", stdout, tt.wantStdout)
				}
				if strings.HasPrefix(stdout, "purged 1 ") {
					wantDead = []string{}
				}
			}
			if got := dirNames(t, f.dir, "dead"); !slices.Equal(got, wantDead) {
				t.Errorf("dead/: got %v, want %v", got, wantDead)
			}
			// Purge never touches live segments.
			if got := len(segFiles(t, f.dir, "ready")) + len(segFiles(t, f.dir, "claimed")); got != 3 {
				t.Errorf("ready and claimed segments: got %d, want 3", got)
			}
		})
	}
}

// flipByte inverts one byte of the file at path.
func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: got error %v, want nil", path, err)
	}
	if off >= len(b) {
		t.Fatalf("flip byte %d: got a file of %d bytes, want more", off, len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("write %s: got error %v, want nil", path, err)
	}
}

func TestSpoolVerify(t *testing.T) {
	t.Parallel()
	t.Run("clean", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		stdout, stderr := mustRunCLI(t, "spool", "verify", "--spool-dir", f.dir)
		if want := "verified 4 segments: 0 damaged\n"; stdout != want {
			t.Errorf("stdout: got %q, want %q", stdout, want)
		}
		if stderr != "" {
			t.Errorf("stderr: got %q, want empty", stderr)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		// C: a flipped byte inside its first record (the header is 52 bytes, the record frame 24).
		flipByte(t, f.c.path(f.dir), 52+24+10)
		// D: the trailer and part of the last record cut off.
		if err := os.Truncate(f.d.path(f.dir), f.d.size-20); err != nil {
			t.Fatalf("truncate: got error %v, want nil", err)
		}
		stdout, stderr, err := runCLI(t, "spool", "verify", "--spool-dir", f.dir)
		var ec exitCode
		if !errors.As(err, &ec) || ec != 1 {
			t.Fatalf("error: got %v, want exitCode 1", err)
		}
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		wantPrefixes := []string{
			"DAMAGED ready/" + f.c.name + ": 2 of 3 records intact: ",
			"DAMAGED ready/" + f.d.name + ": 3 of 4 records intact: ",
		}
		slices.Sort(wantPrefixes) // verify goes oldest first, like ls
		if len(lines) != 3 {
			t.Fatalf("stdout: got %d lines %q, want 3", len(lines), stdout)
		}
		for i, w := range wantPrefixes {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("line %d: got %q, want it to start with %q", i, lines[i], w)
			}
		}
		if !strings.Contains(stdout, "checksum mismatch") || !strings.Contains(stdout, "missing trailer") {
			t.Errorf("stdout: got %q, want it to say what is wrong (checksum mismatch, missing trailer)", stdout)
		}
		if want := "verified 4 segments: 2 damaged"; lines[2] != want {
			t.Errorf("summary: got %q, want %q", lines[2], want)
		}
		// The exit status is the whole report: nothing like "Error: exit status 1" on stderr.
		if stderr != "" {
			t.Errorf("stderr: got %q, want empty", stderr)
		}

		// show prints what survives of a damaged segment and exits 1 too.
		stdout, stderr, err = runCLI(t, "spool", "show", "--spool-dir", f.dir, f.c.id)
		if !errors.As(err, &ec) || ec != 1 {
			t.Fatalf("show damaged: got error %v, want exitCode 1", err)
		}
		checkRecords(t, stdout, f.c.msgs[1:])
		if want := "(2 of 3 records intact, printed above)"; !strings.Contains(stderr, "DAMAGED: ") || !strings.Contains(stderr, want) {
			t.Errorf("show damaged stderr: got %q, want DAMAGED and %q", stderr, want)
		}
		if strings.Contains(stderr, "exit status") {
			t.Errorf("show damaged stderr: got %q, want no %q", stderr, "exit status")
		}
	})
}

// TestSpoolShowOpenSegment: an API replica's open segment (messages acknowledged, not sealed yet)
// is listed with its messages as "-" and shown with what reads back.
func TestSpoolShowOpenSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	if err != nil {
		t.Fatalf("spool.Open: got error %v, want nil", err)
	}
	in := testMessages("open", 2)
	if err := s.Append(t.Context(), in...); err != nil {
		t.Fatalf("Append: got error %v, want nil", err)
	}
	entries, err := s.List(t.Context(), spool.StateOpen)
	if err != nil {
		t.Fatalf("List(open): got error %v, want nil", err)
	}
	var name string
	for _, e := range entries {
		if e.Bytes > 0 {
			name = e.Name
		}
	}
	if name == "" {
		t.Fatalf("List(open): got %+v, want a segment with the 2 messages", entries)
	}
	ls, _ := mustRunCLI(t, "spool", "ls", "--spool-dir", dir, "--state", "open")
	if !strings.Contains(ls, name) || !strings.Contains(ls, " - ") {
		t.Errorf("ls --state open: got %q, want %s with its messages as -", ls, name)
	}
	stdout, stderr := mustRunCLI(t, "spool", "show", "--spool-dir", dir, name)
	checkRecords(t, stdout, in)
	if want := "open/" + name + ": 2 messages, "; !strings.HasPrefix(stderr, want) {
		t.Errorf("summary: got %q, want it to start with %q", stderr, want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
}
