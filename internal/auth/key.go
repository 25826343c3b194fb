package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
)

// KeyBytes is the entropy of a key made by NewKey, in bytes (256 bits).
const KeyBytes = 32

// NewKey returns a fresh random API key (KeyBytes from crypto/rand, URL-safe base64 without
// padding: 43 characters) and its hash as written in the principals file's keySha256.
func NewKey() (key, hashHex string) {
	b := make([]byte, KeyBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24; it crashes instead
	key = base64.RawURLEncoding.EncodeToString(b)
	return key, HashKey(key)
}

// HashKey returns the lowercase hex SHA-256 of the key's text as sent by the client, the form
// keySha256 takes in the principals file. It equals `printf %s "$KEY" | sha256sum`.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyFromRequest returns the API key a request presents: the credentials of an
// `Authorization: Bearer <key>` header (scheme case-insensitive), else the `X-Api-Key` header,
// surrounding spaces trimmed. An Authorization header of another scheme is ignored. ok is false
// when neither header carries a non-empty key.
func KeyFromRequest(r *http.Request) (key string, ok bool) {
	if r == nil {
		return "", false
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, found := strings.Cut(strings.TrimSpace(h), " ")
		if found && strings.EqualFold(scheme, "Bearer") {
			if cred = strings.TrimSpace(cred); cred != "" {
				return cred, true
			}
		}
	}
	if k := strings.TrimSpace(r.Header.Get("X-Api-Key")); k != "" {
		return k, true
	}
	return "", false
}
