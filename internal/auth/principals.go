// Package auth provides Bridgehead's principals: who may send, as which senderIds, and who may
// administer the spool. It loads the principals file (the YAML shape in docs/security.md),
// authenticates a presented API key or mTLS client-certificate subject against it, and keeps a
// reloaded copy current while the file is replaced underneath it (Kubernetes secret volumes).
//
// Guarantees:
//   - A principals file is accepted whole or not at all: an unknown field, a duplicate name or key
//     hash, a malformed hash or glob is an error naming its line, and no partial set is returned.
//   - Only the SHA-256 of a key is held. A presented key is hashed and compared with every
//     principal's hash in constant time, without stopping at a match, so the time taken does not
//     tell which principal (if any) matched. Keys and key hashes appear in no error, log line or
//     String/LogValue output of this package.
//   - A Watcher never replaces a working set with a broken one: a bad new file is logged and the
//     previous set stays in force.
//
// This package does no HTTP handling beyond reading the key from a request; the 401/403/429
// answers belong to the server that uses it.
//
// It imports a YAML package, which STYLE.md keeps out of internal/: the principals file is data
// the server re-reads while it runs (the Watcher), not configuration that cmd fills in once, so
// its parser lives with the code that reloads it.
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// MaxFileSize is the largest principals file Load accepts, in bytes (1 MiB). The file is written
// by hand or by our checks; anything larger is a mistake, not a configuration.
const MaxFileSize = 1 << 20

// Role is what a principal may do beyond sending messages.
type Role string

const (
	// RoleSender may send messages as the senderIds its globs allow. It is the default role.
	RoleSender Role = "sender"
	// RoleAdmin may, in addition, use the routes that change the spool (requeue, purge, the
	// console's actions). It does not imply any senderId: an admin sends only as its globs allow.
	RoleAdmin Role = "admin"
)

// Principal is one entry of the principals file: a named client identified by either an API key
// (held only as its SHA-256) or an mTLS certificate subject. A Principal is immutable once loaded
// and safe for concurrent use.
type Principal struct {
	// Name identifies the principal in logs and metrics; unique within a file.
	Name string
	// Role is RoleSender or RoleAdmin.
	Role Role
	// Senders are the senderId globs (path.Match syntax) this principal may send as.
	Senders []string
	// CertSubject is the client-certificate subject this principal authenticates with, empty for
	// a key principal.
	CertSubject string
	// TTL is the time-to-live of this principal's messages that name none of their own (a
	// "ttl" member or a Message-Ttl header), over the stamp's --message-ttl; 0 means the
	// stamp's. Between 1 s and message.MaxTTL when set.
	TTL time.Duration

	hasKey  bool
	keyHash [sha256.Size]byte
}

// IsAdmin reports whether p has the admin role.
func (p *Principal) IsAdmin() bool { return p != nil && p.Role == RoleAdmin }

// MaySendAs reports whether p may send messages with the given senderId: true when one of its
// Senders globs matches it. An empty senderId never matches. Globs use path.Match syntax, so `*`
// does not cross a `/`.
func (p *Principal) MaySendAs(senderID string) bool {
	if p == nil || senderID == "" {
		return false
	}
	for _, g := range p.Senders {
		// Globs were validated at load, so Match cannot fail here.
		if ok, _ := path.Match(g, senderID); ok {
			return true
		}
	}
	return false
}

// String returns the principal's name; it exists so that printing a Principal with fmt never
// shows its key hash.
func (p Principal) String() string { return p.Name }

// GoString is like String, for %#v.
func (p Principal) GoString() string { return fmt.Sprintf("auth.Principal{Name: %q}", p.Name) }

// LogValue logs a principal as its name and role, never its key hash.
func (p Principal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", p.Name), slog.String("role", string(p.Role)))
}

// Principals is a validated, immutable set of principals, safe for concurrent use. The zero value
// and a nil *Principals authenticate nobody.
type Principals struct {
	list   []*Principal
	keyed  []*Principal // principals with a key, in file order
	byCert map[string]*Principal
}

// Len returns the number of principals.
func (ps *Principals) Len() int {
	if ps == nil {
		return 0
	}
	return len(ps.list)
}

// Names returns the principals' names in file order.
func (ps *Principals) Names() []string {
	if ps == nil {
		return nil
	}
	names := make([]string, len(ps.list))
	for i, p := range ps.list {
		names[i] = p.Name
	}
	return names
}

// String summarises the set without any key hash.
func (ps *Principals) String() string { return fmt.Sprintf("%d principals", ps.Len()) }

// ByKey returns the principal whose keySha256 is the SHA-256 of key. Every key principal's hash
// is compared in constant time and the loop never stops early, so neither a match nor its
// position shows in the time taken. An empty key matches nobody. The key is not retained.
func (ps *Principals) ByKey(key string) (*Principal, bool) {
	if ps == nil || key == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(key))
	found, idx := 0, 0
	for i, p := range ps.keyed {
		eq := subtle.ConstantTimeCompare(sum[:], p.keyHash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found != 1 {
		return nil, false
	}
	return ps.keyed[idx], true
}

// ByCertSubject returns the principal whose certSubject equals subject exactly. The caller
// chooses the subject's spelling; x509's Certificate.Subject.String() gives "CN=ops-console" for
// a certificate with only a common name. Subjects are not secret, so a map lookup is used.
func (ps *Principals) ByCertSubject(subject string) (*Principal, bool) {
	if ps == nil || subject == "" {
		return nil, false
	}
	p, ok := ps.byCert[subject]
	return p, ok
}

// Load reads and parses the principals file at path (symlinks followed). See Parse.
func Load(path string) (*Principals, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseFile(path, data)
}

// parseFile is Parse with errors naming the file data was read from.
func parseFile(path string, data []byte) (*Principals, error) {
	ps, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load principals %s: %w", path, err)
	}
	return ps, nil
}

// readFile reads at most MaxFileSize bytes of path; a larger file is an error.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load principals: %w", err)
	}
	defer f.Close() // read-only; a close error cannot lose data
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load principals %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("load principals %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// filePrincipal is one entry exactly as written in the file.
type filePrincipal struct {
	Name        string   `yaml:"name"`
	KeySHA256   string   `yaml:"keySha256"`
	Senders     []string `yaml:"senders"`
	Role        string   `yaml:"role"`
	CertSubject string   `yaml:"certSubject"`
	TTL         string   `yaml:"ttl"`
}

type file struct {
	Principals []filePrincipal `yaml:"principals"`
}

// Parse parses and validates a principals file:
//
//	principals:
//	  - name: supplier-a           # required, unique
//	    keySha256: 9f86d0…         # 64 lowercase hex: SHA-256 of the key (see HashKey)
//	    senders: ["01", "plant-a-*"]
//	    role: sender               # sender (default) | admin
//	    ttl: 24h                   # optional: time-to-live of its messages that name none
//	  - name: ops
//	    certSubject: "CN=ops-console"
//	    role: admin
//
// Each principal has exactly one of keySha256 and certSubject; keySha256 and certSubject values are
// unique. A sender needs at least one senders glob; an admin may have none. ttl, when given, is
// a Go duration with a unit ("90s", "24h") from 1s to a year (message.MaxTTL). Unknown fields, a
// second YAML document and an empty file are errors; `principals: []` is a valid empty set.
// Errors name the line and never contain a key hash.
func Parse(data []byte) (*Principals, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("principals file is empty")
		}
		return nil, fmt.Errorf("principals file: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("principals file: line %d: more than one YAML document", extra.Line)
	}
	lines := entryLines(data)
	line := func(i int) int {
		if i < len(lines) {
			return lines[i]
		}
		return 0
	}

	ps := &Principals{byCert: make(map[string]*Principal)}
	names := make(map[string]int)             // name → line
	hashes := make(map[[sha256.Size]byte]int) // key hash → line
	for i, fp := range f.Principals {
		p, err := fp.validate()
		if err != nil {
			return nil, fmt.Errorf("principals file: line %d: principal %d%s: %w", line(i), i+1, quoteName(fp.Name), err)
		}
		if first, dup := names[p.Name]; dup {
			return nil, fmt.Errorf("principals file: line %d: duplicate name %q (first on line %d)", line(i), p.Name, first)
		}
		names[p.Name] = line(i)
		if p.hasKey {
			if first, dup := hashes[p.keyHash]; dup {
				return nil, fmt.Errorf("principals file: line %d: principal %q: keySha256 already used on line %d", line(i), p.Name, first)
			}
			hashes[p.keyHash] = line(i)
			ps.keyed = append(ps.keyed, p)
		} else {
			if other, dup := ps.byCert[p.CertSubject]; dup {
				return nil, fmt.Errorf("principals file: line %d: principal %q: certSubject already used by %q", line(i), p.Name, other.Name)
			}
			ps.byCert[p.CertSubject] = p
		}
		ps.list = append(ps.list, p)
	}
	return ps, nil
}

func quoteName(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" %q", name)
}

// validate checks one entry and builds its Principal. Its errors never include the hash value.
func (fp filePrincipal) validate() (*Principal, error) {
	if fp.Name == "" {
		return nil, errors.New("name is required")
	}
	p := &Principal{Name: fp.Name, CertSubject: fp.CertSubject}
	switch {
	case fp.KeySHA256 != "" && fp.CertSubject != "":
		return nil, errors.New("has both keySha256 and certSubject; exactly one is allowed")
	case fp.KeySHA256 == "" && fp.CertSubject == "":
		return nil, errors.New("needs keySha256 or certSubject")
	case fp.KeySHA256 != "":
		if !isLowerHex(fp.KeySHA256) || len(fp.KeySHA256) != 2*sha256.Size {
			return nil, errors.New("keySha256 must be 64 lowercase hex digits (the SHA-256 of the key)")
		}
		if _, err := hex.Decode(p.keyHash[:], []byte(fp.KeySHA256)); err != nil {
			return nil, errors.New("keySha256 must be 64 lowercase hex digits (the SHA-256 of the key)")
		}
		p.hasKey = true
	}
	switch Role(fp.Role) {
	case "", RoleSender:
		p.Role = RoleSender
	case RoleAdmin:
		p.Role = RoleAdmin
	default:
		return nil, fmt.Errorf("role %q: want sender or admin", fp.Role)
	}
	if p.Role == RoleSender && len(fp.Senders) == 0 {
		return nil, errors.New("a sender needs at least one senders glob")
	}
	for _, g := range fp.Senders {
		if g == "" {
			return nil, errors.New("empty senders glob")
		}
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("senders glob %q: %w", g, err)
		}
	}
	p.Senders = append([]string(nil), fp.Senders...)
	if fp.TTL != "" {
		ttl, err := time.ParseDuration(fp.TTL)
		if err != nil || ttl < time.Second || ttl > message.MaxTTL {
			return nil, fmt.Errorf("ttl %q: want a duration with a unit, 1s to %dh (a year): 90s, 15m, 24h", fp.TTL, int(message.MaxTTL/time.Hour))
		}
		p.TTL = ttl
	}
	return p, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// entryLines returns the line of each item of the top-level principals sequence, for error
// messages. The strict decode has already succeeded, so the shape is known to be right.
func entryLines(data []byte) []int {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "principals" || root.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var lines []int
		for _, item := range root.Content[i+1].Content {
			lines = append(lines, item.Line)
		}
		return lines
	}
	return nil
}
