package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestNewKeyHashKeyRoundTrip(t *testing.T) {
	hexRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := make(map[string]bool)
	for range 100 {
		key, h := NewKey()
		raw, err := base64.RawURLEncoding.DecodeString(key)
		if err != nil || len(raw) != KeyBytes {
			t.Fatalf("key %q: got %d bytes (err %v), want %d bytes of unpadded URL-safe base64", key, len(raw), err, KeyBytes)
		}
		if !hexRE.MatchString(h) {
			t.Fatalf("hash %q: want 64 lowercase hex", h)
		}
		if got := HashKey(key); got != h {
			t.Fatalf("HashKey(key): got %v, want %v", got, h)
		}
		sum := sha256.Sum256([]byte(key))
		if got, want := h, hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("hash: got %v, want %v (SHA-256 of the key text)", got, want)
		}
		if seen[key] {
			t.Fatalf("NewKey repeated %q", key)
		}
		seen[key] = true

		ps := mustParse(t, "principals:\n  - name: fresh\n    keySha256: "+h+"\n    senders: ['*']\n")
		if p, ok := ps.ByKey(key); !ok || p.Name != "fresh" {
			t.Fatalf("ByKey(new key): got %v %v, want fresh", p, ok)
		}
	}
	// The example hash in docs and issue 8 is sha256("test").
	if got, want := HashKey("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; got != want {
		t.Fatalf("HashKey(test): got %v, want %v", got, want)
	}
}

func TestKeyFromRequest(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    string
		wantOK  bool
	}{
		{"bearer", map[string]string{"Authorization": "Bearer k1"}, "k1", true},
		{"bearer lower case scheme", map[string]string{"Authorization": "bearer k1"}, "k1", true},
		{"bearer extra spaces", map[string]string{"Authorization": "  Bearer   k1  "}, "k1", true},
		{"x-api-key", map[string]string{"X-Api-Key": "k2"}, "k2", true},
		{"x-api-key any case", map[string]string{"x-api-key": " k2 "}, "k2", true},
		{"bearer wins over x-api-key", map[string]string{"Authorization": "Bearer k1", "X-Api-Key": "k2"}, "k1", true},
		{"basic ignored, x-api-key used", map[string]string{"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "k2"}, "k2", true},
		{"basic only", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, "", false},
		{"bearer without key", map[string]string{"Authorization": "Bearer "}, "", false},
		{"bare token", map[string]string{"Authorization": "k1"}, "", false},
		{"empty x-api-key", map[string]string{"X-Api-Key": "  "}, "", false},
		{"none", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/messages", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got, ok := KeyFromRequest(r)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("got %q %v, want %q %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := KeyFromRequest(nil); ok {
		t.Fatal("nil request: got a key")
	}
}

func BenchmarkByKey(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		var sb strings.Builder
		sb.WriteString("principals:\n")
		for i := range n {
			fmt.Fprintf(&sb, "  - name: p%d\n    keySha256: %s\n    senders: ['*']\n", i, HashKey(fmt.Sprint("key", i)))
		}
		ps := mustParse(b, sb.String())
		b.Run(fmt.Sprintf("principals=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, ok := ps.ByKey("key0"); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}
