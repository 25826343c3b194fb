package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// atPriority returns msgs with every message at priority p.
func atPriority(p uint8, ms []message.Message) []message.Message {
	for i := range ms {
		ms[i].Priority = p
	}
	return ms
}

// TestClaimsHigherPrioritiesFirst: segments are claimed by priority, then age, whatever order
// they were written in; and the name says the priority (none at the default, as before
// priorities, so that an older forwarder still claims those).
func TestClaimsHigherPrioritiesFirst(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	for _, p := range []uint8{9, message.DefaultPriority, 0, 7} {
		mustAppend(t, s, atPriority(p, msgs(2, 10))...)
		mustSeal(t, s)
	}
	names := dirFiles(t, dir, "ready")
	for _, want := range []string{"-p0.a0", "-p7.a0", "-p9.a0"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("ready/ %v has no name ending %s", names, want)
		}
	}
	var got []uint8
	for range 4 {
		c := mustClaim(t, s)
		got = append(got, c.Priority)
		for _, m := range c.Messages {
			if m.Priority != c.Priority {
				t.Fatalf("segment of priority %d holds a message of priority %d", c.Priority, m.Priority)
			}
		}
		if err := s.Ack(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	if want := []uint8{0, 4, 7, 9}; string(got) != string(want) {
		t.Fatalf("claimed priorities %v, want %v", got, want)
	}
}

// TestLowerPrioritiesAreNotStarved: under a flood of priority 0, one claim in ten still goes
// to a waiting lower priority, taking turns among them.
func TestLowerPrioritiesAreNotStarved(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	for range 40 {
		mustAppend(t, s, atPriority(0, msgs(1, 10))...)
		mustSeal(t, s)
	}
	for _, p := range []uint8{5, 9, 5, 9} {
		mustAppend(t, s, atPriority(p, msgs(1, 10))...)
		mustSeal(t, s)
	}
	var order []uint8
	for range 40 {
		c := mustClaim(t, s)
		order = append(order, c.Priority)
		if err := s.Ack(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	// Picks 10, 20, 30, 40 go to the lower priorities, alternating; every other to priority 0.
	for i, p := range order {
		want := uint8(0)
		switch i + 1 {
		case 10, 30:
			want = 5
		case 20, 40:
			want = 9
		}
		if p != want {
			t.Fatalf("claim %d was priority %d, want %d (order %v)", i+1, p, want, order)
		}
	}
}

// TestMixedPrioritiesInOneAppend: one Append of several priorities is durable as a whole when
// it returns, each priority in its own segment.
func TestMixedPrioritiesInOneAppend(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	in := msgs(5, 10)
	for i, p := range []uint8{4, 0, 4, 9, 0} {
		in[i].Priority = p
	}
	mustAppend(t, s, in...)
	mustSeal(t, s)
	want := map[uint8][]string{0: {in[1].ID.String(), in[4].ID.String()}, 4: {in[0].ID.String(), in[2].ID.String()}, 9: {in[3].ID.String()}}
	for _, p := range []uint8{0, 4, 9} {
		c := mustClaim(t, s)
		var got []string
		for _, m := range c.Messages {
			got = append(got, m.ID.String())
		}
		if c.Priority != p || strings.Join(got, ",") != strings.Join(want[p], ",") {
			t.Fatalf("claim of priority %d holds %v, want priority %d with %v", c.Priority, got, p, want[p])
		}
		if err := s.Ack(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReserveKeepsAlarmsAccepted: once the spool is within ReserveBytes of full, priorities
// below ReservePriority are refused while alarms are still taken and the spool stays ready;
// only when the reserve is used up is it full for everyone.
func TestReserveKeepsAlarmsAccepted(t *testing.T) {
	ctx := context.Background()
	s := mustOpenSpool(t, t.TempDir(), spool.Options{
		MaxBytes: 64 << 10, ReserveBytes: 16 << 10, ReservePriority: 1, MinFreeBytes: 1,
		SealAfter: time.Hour, SealIdle: time.Hour,
	})
	telemetry := 0
	for ; ; telemetry++ {
		err := s.Append(ctx, atPriority(4, msgs(1, 1000))...)
		if errors.Is(err, spool.ErrFull) {
			if !strings.Contains(err.Error(), "kept for priorities 0 to 1") {
				t.Errorf("refusal %q does not say the rest is kept for alarms", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if telemetry > 100 {
			t.Fatal("64 KiB spool took 100 KB of telemetry")
		}
	}
	if telemetry < 40 || telemetry > 48 {
		t.Errorf("took %d KB of telemetry into a 64 KiB spool with a 16 KiB reserve, want about 47", telemetry)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready with the reserve free: %v", err)
	}
	alarms := 0
	for ; ; alarms++ {
		err := s.Append(ctx, atPriority(uint8(alarms%2), msgs(1, 1000))...)
		if errors.Is(err, spool.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if alarms < 12 {
		t.Fatalf("the 16 KiB reserve took %d alarms of 1 KB, want about 15", alarms)
	}
	if err := s.Ready(); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Ready with the reserve used up: %v, want ErrFull", err)
	}
	// The alarms are claimed first.
	mustSeal(t, s)
	if c := mustClaim(t, s); c.Priority > 1 {
		t.Fatalf("first claim of a full spool is priority %d, want an alarm", c.Priority)
	}
}

// TestRecoveryKeepsPriorities: a dead writer's open segments are re-published at their
// priorities, an open segment of mixed priorities (none of ours writes one) in one segment each.
func TestRecoveryKeepsPriorities(t *testing.T) {
	dir := t.TempDir()
	w := mustOpenSpool(t, dir, spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	for _, in := range [][]message.Message{atPriority(0, msgs(2, 10)), atPriority(8, msgs(3, 10))} {
		if err := w.Append(context.Background(), in...); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := map[string][]byte{}
	for _, name := range dirFiles(t, dir, "open") {
		b, err := os.ReadFile(filepath.Join(dir, "open", name))
		if err != nil {
			t.Fatal(err)
		}
		if written(b) { // not the spare, created ahead
			snapshot[name] = b
		}
	}
	if len(snapshot) != 2 {
		t.Fatalf("%d open segments with records for two priorities, want 2", len(snapshot))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ready", "open", "hb"} {
		for _, name := range dirFiles(t, dir, d) {
			if err := os.Remove(filepath.Join(dir, d, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range snapshot {
		if err := os.WriteFile(filepath.Join(dir, "open", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := mustOpenSpool(t, dir, spool.Options{Role: spool.RoleConsumer})
	if rs, err := r.Reap(context.Background()); err != nil || rs.Recovered != 2 {
		t.Fatalf("Reap: %+v, %v; want two recovered", rs, err)
	}
	got := map[uint8]int{}
	for range 2 {
		c := mustClaim(t, r)
		got[c.Priority] += len(c.Messages)
	}
	if got[0] != 2 || got[8] != 3 {
		t.Fatalf("recovered by priority %v, want 2 at 0 and 3 at 8", got)
	}
}

// TestSealAfterSealsEachPriority: a writer busy at two priorities (never idle for SealIdle)
// seals each open segment SealAfter after its first record.
func TestSealAfterSealsEachPriority(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{SealAfter: 100 * time.Millisecond, SealIdle: time.Hour})
	for want, prios := range [][]uint8{{3}, {6, 7}} {
		for _, p := range prios {
			if err := s.Append(context.Background(), atPriority(p, msgs(1, 10))...); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(dirFiles(t, dir, "ready")) < 1+2*want {
			if time.Now().After(deadline) {
				t.Fatalf("ready/ holds %v 5 s after appends at priorities %v with SealAfter 100ms", dirFiles(t, dir, "ready"), prios)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestReservePercent: the reserve as a share of the capacity.
func TestReservePercent(t *testing.T) {
	ctx := context.Background()
	s := mustOpenSpool(t, t.TempDir(), spool.Options{MaxBytes: 100_000, ReservePercent: 20, MinFreeBytes: 1})
	took := 0
	for ; s.Append(ctx, atPriority(2, msgs(1, 1000))...) == nil; took++ {
	}
	if took < 75 || took > 80 {
		t.Fatalf("took %d KB at priority 2 into 100 KB with a 20 %% reserve for priority 0, want about 78", took)
	}
	if err := s.Append(ctx, atPriority(0, msgs(1, 1000))...); err != nil {
		t.Fatalf("an alarm into the reserve: %v", err)
	}
}

// TestOldestIsNotPassedOverForLong: claims pick at random among the few oldest segments (so
// that forwarders on several hosts rarely race), but the oldest is taken by the eighth pick at
// the latest, so that a backlog drains in age order to within a few segments. (Without the
// bound, the oldest of 12 is left after 8 picks one time in three.)
func TestOldestIsNotPassedOverForLong(t *testing.T) {
	for trial := range 10 {
		s := mustOpenSpool(t, t.TempDir(), spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
		var oldest string
		for i := range 12 {
			in := msgs(1, 10)
			mustAppend(t, s, in...)
			if i == 0 {
				oldest = in[0].ID.String()
			}
			// Names order segments by their creation millisecond, then at random: the first
			// appended is the oldest only if no later one shares its millisecond.
			time.Sleep(2 * time.Millisecond)
		}
		for pick := 1; ; pick++ {
			c := mustClaim(t, s)
			if c.Messages[0].ID.String() == oldest {
				break
			}
			if pick >= 8 {
				t.Fatalf("trial %d: the oldest of 12 segments not claimed in %d picks", trial, pick)
			}
		}
	}
}

// TestAFewAlarmsAllGoFirst: the lower priorities' share is taken only after nine claims in a row
// of a higher priority while they waited, never because of claims made earlier: a few alarms
// all go before the telemetry that waits with them.
func TestAFewAlarmsAllGoFirst(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), spool.Options{SealAfter: time.Hour, SealIdle: time.Hour})
	claimAll := func(n int) []uint8 {
		var got []uint8
		for range n {
			c := mustClaim(t, s)
			got = append(got, c.Priority)
			if err := s.Ack(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	for range 9 {
		mustAppend(t, s, atPriority(4, msgs(1, 10))...)
	}
	claimAll(9)
	for range 5 {
		mustAppend(t, s, atPriority(4, msgs(1, 10))...)
	}
	for range 3 {
		mustAppend(t, s, atPriority(0, msgs(1, 10))...)
	}
	if got := claimAll(8); string(got) != string([]uint8{0, 0, 0, 4, 4, 4, 4, 4}) {
		t.Fatalf("claimed priorities %v, want the three alarms first", got)
	}
}

// TestAppendRefusesAnUnknownPriority: a priority past MaxPriority (which no decoder would read
// back) is refused, not written.
func TestAppendRefusesAnUnknownPriority(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, spool.Options{})
	if err := s.Append(context.Background(), atPriority(message.MaxPriority+1, msgs(1, 10))...); err == nil {
		t.Fatal("Append took a message of priority 10")
	}
	mustSeal(t, s)
	if got := dirFiles(t, dir, "ready"); len(got) != 0 {
		t.Fatalf("ready/ holds %v after a refused Append", got)
	}
}
