package spool_test

import (
	"context"
	"testing"

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
