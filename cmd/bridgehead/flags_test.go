package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"64KiB", 64 << 10, true}, {"10 MiB", 10 << 20, true},
		{"2gib", 2 << 30, true}, {"1TiB", 1 << 40, true}, {"5KB", 5000, true}, {"3GB", 3e9, true}, {"7B", 7, true},
		{"", 0, false}, {"lots", 0, false}, {"-1", 0, false}, {"1.5GiB", 0, false}, {"99999999999TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseBytes(%q) = %d, %v; want %d (ok=%v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestServeEnvironment(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "cs")
	writeTestFile(t, secret, "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=s\n", 0o600)
	t.Setenv("BRIDGEHEAD_STAMP", "cloud")
	t.Setenv("BRIDGEHEAD_SPOOL_MAX_BYTES", "2GiB")
	t.Setenv("BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE", secret)
	t.Setenv("BRIDGEHEAD_LISTEN", ":9999") // the flag below wins
	t.Setenv("BRIDGEHEAD_SPOOL_DRI", "/typo")
	cmd := newServeCmd()
	if err := cmd.Flags().Parse([]string{"--listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"stamp": "cloud", "spool-max-bytes": "2147483648", "listen": "127.0.0.1:1",
		"eventhubs-connection-string": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=s",
	} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
	unknown := unknownEnv(cmd.Flags(), os.Environ())
	var warn bytes.Buffer
	checkEnv(unknown, &warn)
	if !strings.Contains(warn.String(), "BRIDGEHEAD_SPOOL_DRI is set but is not a serve setting") {
		t.Errorf("no warning for the typo: %q", warn.String())
	}
	if strings.Contains(warn.String(), "CONNECTION_STRING_FILE") {
		t.Errorf("a secret's _FILE variable was called unknown: %q", warn.String())
	}

	t.Setenv("BRIDGEHEAD_SPOOL_MAX_BYTES", "huge")
	bad := newServeCmd()
	if err := applyEnv(bad.Flags()); err == nil || !strings.Contains(err.Error(), "BRIDGEHEAD_SPOOL_MAX_BYTES") {
		t.Errorf("bad env value: got %v, want an error naming the variable", err)
	}
	t.Setenv("BRIDGEHEAD_SPOOL_MAX_BYTES", "1")
	t.Setenv("BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE", filepath.Join(t.TempDir(), "missing"))
	if err := applyEnv(newServeCmd().Flags()); err == nil || !strings.Contains(err.Error(), "_FILE") {
		t.Errorf("missing secret file: got %v", err)
	}
}
