package spool_test

import (
	"context"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: the spool exports its own series, and the capacity figures an alert divides
// (used / capacity) move with what is appended.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxBytes = 1 << 20
	s := mustOpenSpool(t, "", spool.Options{Registerer: reg, MaxBytes: maxBytes})
	mustAppend(t, s, msgs(3, 100)...)
	mustSeal(t, s)
	if _, err := s.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[f.GetName()] += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[f.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"bridgehead_spool_capacity_bytes":           maxBytes,
		"bridgehead_spool_commits_total":            1,
		"bridgehead_spool_committed_messages_total": 3,
		"bridgehead_spool_commit_duration_seconds":  1,
		"bridgehead_spool_seals_total":              1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if used := got["bridgehead_spool_used_bytes"]; used <= 300 || used >= maxBytes {
		t.Errorf("bridgehead_spool_used_bytes = %v, want the 3 messages' segment", used)
	}
	if got["bridgehead_spool_filesystem_free_bytes"] <= 0 {
		t.Errorf("bridgehead_spool_filesystem_free_bytes missing")
	}
	if n, err := testutil.GatherAndCount(reg, "bridgehead_spool_segments"); err != nil || n != 6 {
		t.Errorf("bridgehead_spool_segments: %d series (%v), want one per state", n, err)
	}
}

// TestQueuedByPriority: the messages waiting for delivery are exported for every priority, with
// the age of each priority's oldest, so that a dashboard shows alarms apart from telemetry.
func TestQueuedByPriority(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := mustOpenSpool(t, "", spool.Options{Registerer: reg, ScanInterval: 10 * time.Millisecond})
	mustAppend(t, s, atPriority(0, msgs(2, 10))...)
	mustAppend(t, s, atPriority(9, msgs(1, 10))...)
	queued := func(p string) float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "bridgehead_spool_queued_messages" {
				continue
			}
			if len(f.GetMetric()) != 10 {
				t.Fatalf("bridgehead_spool_queued_messages has %d series, want one per priority", len(f.GetMetric()))
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == p {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	deadline := time.Now().Add(5 * time.Second)
	for queued("0") != 2 || queued("9") != 1 || queued("4") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queued by priority 0/4/9: %v/%v/%v, want 2/0/1", queued("0"), queued("4"), queued("9"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := testutil.GatherAndCount(reg, "bridgehead_spool_queued_oldest_age_seconds"); err != nil || n != 10 {
		t.Errorf("bridgehead_spool_queued_oldest_age_seconds: %d series (%v), want 10", n, err)
	}
	st := s.LastStats()
	if len(st.Priorities) != 2 || st.Priorities[0].Priority != 0 || st.Priorities[0].Messages != 2 || st.Priorities[1].Priority != 9 {
		t.Errorf("Stats.Priorities = %+v, want priority 0 with 2 messages, then 9", st.Priorities)
	}
}
