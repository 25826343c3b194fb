package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestAuthNewPrintsKeyAndItsHash(t *testing.T) {
	out, _ := mustRunCLI(t, "auth", "new")
	m := regexp.MustCompile(`^key:       ([A-Za-z0-9_-]{43})\nkeySha256: ([0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("auth new printed %q, want a 43-character key and a 64-hex-digit hash", out)
	}
	if sum := sha256.Sum256([]byte(m[1])); hex.EncodeToString(sum[:]) != m[2] {
		t.Errorf("keySha256 %s is not the SHA-256 of the key", m[2])
	}
	again, _ := mustRunCLI(t, "auth", "new")
	if again == out {
		t.Error("two runs printed the same key")
	}
}

func TestAuthHashReadsStdinOnly(t *testing.T) {
	hash := func(stdin string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"auth", "hash"}, args...), strings.NewReader(stdin), &out, &errb)
		return out.String(), err
	}
	got, err := hash("abcdefghijklmnopqrstuvwxyz\n")
	if err != nil || got != "71c480df93d6ae2f1efad1447c66c9525e316218cf51fc8d9ed832f2daf18b73\n" {
		t.Errorf("hash of a key: %q, %v; want the hex SHA-256 of the line without its newline", got, err)
	}
	for _, tc := range []struct{ stdin, want string }{
		{"", "no key on stdin"},
		{"short\n", "at least 16 characters"},
	} {
		if _, err := hash(tc.stdin); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("stdin %q: error %v, want one saying %q", tc.stdin, err, tc.want)
		}
	}
	if _, err := hash("abcdefghijklmnopqrstuvwxyz\n", "abcdefghijklmnopqrstuvwxyz"); err == nil {
		t.Error("auth hash took the key as an argument; it must read stdin only")
	}
}
