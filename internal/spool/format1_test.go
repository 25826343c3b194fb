package spool_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/google/uuid"
)

// format1Fixture is testdata/format1/ids.json: what the format-1 code (commit 500e2f2) left in
// testdata/format1/spool, segment by segment (testdata/format1/README.md says how it was made).
type format1Fixture struct {
	Created  time.Time        `json:"created"`
	Writer   string           `json:"writer"`
	Segments []format1Segment `json:"segments"`
	// Salvaged are the intact records of the quarantined segment, which the format-1 claim
	// re-spooled and which were then acked: delivered before the upgrade.
	Salvaged   format1Segment `json:"salvagedAndAcked"`
	DeadReason string         `json:"deadReason"`
	// Leftovers are the killed format-1 process's files, relative to the spool: the segment
	// file it had created ahead in tmp/, and its heartbeat.
	Leftovers []string `json:"leftovers"`
}

type format1Segment struct {
	State string      `json:"state"`
	File  string      `json:"file"`
	IDs   []uuid.UUID `json:"ids"`
}

// ids returns the message ids of the fixture's segments in the given states.
func (f format1Fixture) ids(states ...spool.State) []uuid.UUID {
	var out []uuid.UUID
	for _, s := range f.Segments {
		if slices.Contains(states, spool.State(s.State)) {
			out = append(out, s.IDs...)
		}
	}
	return out
}

// segment returns the fixture's only segment in state.
func (f format1Fixture) segment(t *testing.T, state spool.State) format1Segment {
	t.Helper()
	var out []format1Segment
	for _, s := range f.Segments {
		if s.State == string(state) {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("ids.json lists %d segments in %s, want 1", len(out), state)
	}
	return out[0]
}

const format1Fixtures = "testdata/format1"

// copyFormat1Spool copies the format-1 spool fixture to a fresh directory and returns it with the
// fixture's manifest. Every file's mtime is set to the fixture's creation time, as on a share left
// alone since then: git does not keep mtimes, and the reaper reads writers' liveness from them.
func copyFormat1Spool(t *testing.T) (string, format1Fixture) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(format1Fixtures, "ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx format1Fixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("ids.json: %v", err)
	}
	src := filepath.Join(format1Fixtures, "spool")
	dst := filepath.Join(t.TempDir(), "spool")
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			return err
		}
		return os.Chtimes(to, fx.Created, fx.Created)
	})
	if err != nil {
		t.Fatalf("copy the format-1 fixture: %v", err)
	}
	return dst, fx
}

// mustReadFile returns the content of path or fails.
func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertSameFile fails unless path holds the same bytes as the fixture's file rel.
func assertSameFile(t *testing.T, dir, rel string) {
	t.Helper()
	got := mustReadFile(t, filepath.Join(dir, rel))
	want := mustReadFile(t, filepath.Join(format1Fixtures, "spool", rel))
	if !bytes.Equal(got, want) {
		t.Fatalf("%s changed: got %d bytes, want the fixture's %d bytes unchanged", rel, len(got), len(want))
	}
}

// assertDelivered fails unless got holds each id of want exactly once, and nothing else.
func assertDelivered(t *testing.T, what string, got, want []uuid.UUID) {
	t.Helper()
	if err := sameSet(got, want); err != nil {
		t.Fatalf("%s: got %d deliveries %v, want each of %v exactly once: %v", what, len(got), got, want, err)
	}
}

// TestFormat1SpoolIsUpgradedAndDrained: a spool written by the format-1 code (ready segments, one
// released for a retry, one claimed by a process that died holding it, one dead-lettered, one
// damaged and quarantined, a tmp/ file and a heartbeat of the dead process) is upgraded by a
// format-2 Open and drained: every message of the ready and claimed segments delivered exactly
// once (the claim's owner died before sending: this test's consumer is the only one that
// delivers it), the dead segment kept with its reason until requeued, the quarantined one left
// untouched.
func TestFormat1SpoolIsUpgradedAndDrained(t *testing.T) {
	ctx := context.Background()
	dir, fx := copyFormat1Spool(t)
	// The defaults of serve --role all. The fixture is older than the claim's deadline + 2 × skew
	// and than OrphanAge: no clock needs moving.
	s := mustOpenSpool(t, dir, spool.Options{})

	if got := string(mustReadFile(t, filepath.Join(dir, "VERSION"))); got != "bridgehead-spool 2\n" {
		t.Fatalf("VERSION after Open: got %q, want %q", got, "bridgehead-spool 2\n")
	}
	st := mustStats(t, s)
	want := spool.Stats{
		Ready:      spool.StateStats{Segments: 4, Messages: len(fx.ids(spool.StateReady))},
		Claimed:    spool.StateStats{Segments: 1, Messages: len(fx.ids(spool.StateClaimed))},
		Dead:       spool.StateStats{Segments: 1, Messages: len(fx.ids(spool.StateDead))},
		Quarantine: spool.StateStats{Segments: 1, Messages: len(fx.ids(spool.StateQuarantine))},
	}
	for _, c := range []struct {
		state     spool.State
		got, want spool.StateStats
	}{
		{spool.StateOpen, st.Open, want.Open}, {spool.StateRecovering, st.Recovering, want.Recovering},
		{spool.StateReady, st.Ready, want.Ready}, {spool.StateClaimed, st.Claimed, want.Claimed},
		{spool.StateDead, st.Dead, want.Dead}, {spool.StateQuarantine, st.Quarantine, want.Quarantine},
	} {
		c.got.Bytes = 0 // the sizes are the names' business; segments and messages are the point
		if c.got != c.want {
			t.Errorf("Stats %s after the upgrade: got %+v, want %+v", c.state, c.got, c.want)
		}
	}

	rs, err := s.Reap(ctx)
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if rs.Reclaimed != 1 || rs.DeadLettered != 0 || rs.Recovered != 0 {
		t.Errorf("Reap: got %+v, want the one expired format-1 claim reclaimed, nothing dead-lettered or recovered", rs)
	}
	if rs.Orphans != 1 || rs.Heartbeats != 1 {
		t.Errorf("Reap: got %d orphans and %d heartbeats removed, want the dead format-1 writer's 1 and 1 (%v)", rs.Orphans, rs.Heartbeats, fx.Leftovers)
	}
	for _, rel := range fx.Leftovers {
		if _, err := os.Stat(filepath.Join(dir, rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Reap: got %v, want it removed", rel, err)
		}
	}

	// Before anything is drained: the only damage is the quarantined segment's.
	quarantined := fx.segment(t, spool.StateQuarantine)
	_, damaged, err := s.Verify(ctx, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(damaged) != 1 || damaged[0].Entry.State != spool.StateQuarantine || damaged[0].Entry.Name != quarantined.File || damaged[0].Intact != 2 {
		t.Fatalf("Verify: got damage %+v, want only quarantine/%s with 2 intact records", damaged, quarantined.File)
	}

	// New traffic after the upgrade is drained together with the format-1 backlog.
	fresh := msgs(2, 10)
	mustAppend(t, s, fresh...)
	// The released segment's not-before and the reclaimed one are long past: everything is
	// claimable now.
	got := drain(t, s)
	assertDelivered(t, "drain after the upgrade", got, append(fx.ids(spool.StateReady, spool.StateClaimed), ids(fresh)...))
	for _, id := range fx.Salvaged.IDs {
		if slices.Contains(got, id) {
			t.Errorf("message %s, acked by the format-1 process before the upgrade, was delivered again", id)
		}
	}

	// The dead segment waits in dead/ with its reason until an operator requeues it.
	dead := fx.segment(t, spool.StateDead)
	entries, err := s.List(ctx, spool.StateDead)
	if err != nil {
		t.Fatalf("List dead: %v", err)
	}
	if len(entries) != 1 || entries[0].Name != dead.File {
		t.Fatalf("dead/ after the drain: got %+v, want only %s", entries, dead.File)
	}
	body, err := s.Reason(ctx, entries[0])
	if err != nil {
		t.Fatalf("Reason: %v", err)
	}
	if at, reason := spool.SplitReason(body); reason != fx.DeadReason || at.IsZero() {
		t.Fatalf("dead segment's reason: got %q at %v, want %q with its time", reason, at, fx.DeadReason)
	}
	if err := s.Requeue(ctx, entries[0]); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	assertDelivered(t, "drain after the requeue", drain(t, s), dead.IDs)

	// The quarantined segment and its reason are as the format-1 code left them.
	assertSameFile(t, dir, filepath.Join("quarantine", quarantined.File))
	assertSameFile(t, dir, filepath.Join("quarantine", quarantined.File+".reason"))

	st = mustStats(t, s)
	if st.Undelivered() != 0 || st.Dead.Segments != 0 || st.Quarantine.Segments != 1 {
		t.Fatalf("Stats at the end: got %+v, want nothing undelivered, nothing dead, the one quarantined segment", st)
	}
	if _, damaged, err := s.Verify(ctx, nil); err != nil || len(damaged) != 1 || damaged[0].Entry.State != spool.StateQuarantine {
		t.Fatalf("Verify at the end: got %v, damage %+v; want only the quarantined segment", err, damaged)
	}
}

// TestFormat1SpoolInspectedIsNotUpgraded: the CLI's read commands (Inspect) read a format-1 spool
// as it is, and leave it a format-1 spool: a format-1 binary may still be the one running on it.
func TestFormat1SpoolInspectedIsNotUpgraded(t *testing.T) {
	ctx := context.Background()
	dir, fx := copyFormat1Spool(t)
	s := mustOpenSpool(t, dir, spool.Options{Inspect: true})

	// What `bridgehead spool stats`, `ls`, `show` and `verify` run. A format-1 spool has no open/
	// and no recovering/: they read as empty.
	if st, err := s.Stats(ctx); err != nil {
		t.Errorf("Stats of a format-1 spool: %v", err)
	} else if st.Ready.Segments != 4 || st.Claimed.Segments != 1 || st.Dead.Segments != 1 || st.Quarantine.Segments != 1 || st.Undelivered() != 5 {
		t.Errorf("Stats: got %+v, want 4 ready, 1 claimed, 1 dead, 1 quarantined segments", st)
	}
	for _, state := range []spool.State{spool.StateOpen, spool.StateRecovering} {
		if entries, err := s.List(ctx, state); err != nil || len(entries) != 0 {
			t.Errorf("List(%s) of a format-1 spool: got %v, %v; want nothing", state, entries, err)
		}
	}
	claimed := fx.segment(t, spool.StateClaimed)
	if e, err := s.Find(ctx, claimed.File); err != nil || e.State != spool.StateClaimed {
		t.Errorf("Find(%s): got %+v, %v; want it in claimed", claimed.File, e, err)
	}
	if _, damaged, err := s.Verify(ctx, nil); err != nil || len(damaged) != 1 || damaged[0].Entry.State != spool.StateQuarantine {
		t.Errorf("Verify: got %v, damage %+v; want only the quarantined segment", err, damaged)
	}
	for _, seg := range fx.Segments {
		entries, err := s.List(ctx, spool.State(seg.State))
		if err != nil {
			t.Fatalf("List(%s): %v", seg.State, err)
		}
		i := slices.IndexFunc(entries, func(e spool.Entry) bool { return e.Name == seg.File })
		if i < 0 {
			t.Errorf("List(%s): %s missing", seg.State, seg.File)
			continue
		}
		read, err := s.Read(ctx, entries[i])
		if seg.State == string(spool.StateQuarantine) {
			if !errors.Is(err, spool.ErrCorrupt) || len(read) != 2 {
				t.Errorf("Read of the quarantined segment: got %d records, %v; want 2 intact and ErrCorrupt", len(read), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Read(%s): %v", seg.File, err)
			continue
		}
		if got := ids(read); !slices.Equal(got, seg.IDs) {
			t.Errorf("Read(%s): got %v, want %v", seg.File, got, seg.IDs)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	assertSameFile(t, dir, "VERSION")
	for _, d := range []string{"open", "recovering"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/ after an inspection: got %v, want it not created", d, err)
		}
	}
}
