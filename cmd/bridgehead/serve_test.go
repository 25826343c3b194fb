package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestLogDurationsAreReadable: serve's JSON log writes a duration as "6s", not 6000000000.
func TestLogDurationsAreReadable(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("signal received: draining", "grace", 25*time.Second, "took", 1500*time.Millisecond)
	if got := buf.String(); !strings.Contains(got, `"grace":"25s"`) || !strings.Contains(got, `"took":"1.5s"`) {
		t.Fatalf("log line %s: want durations written as 25s and 1.5s", got)
	}
	if _, err := newLogger(&buf, "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("newLogger with a bad level: %v", err)
	}
}
