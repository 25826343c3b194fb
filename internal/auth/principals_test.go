package auth

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Keys used throughout the tests; their hashes are computed, never pasted.
const (
	keyA = "key-a-0123456789abcdef0123456789abcdef"
	keyB = "key-b-0123456789abcdef0123456789abcdef"
)

func goodYAML() string {
	return fmt.Sprintf(`principals:
  - name: supplier-a
    keySha256: %s
    senders: ["01", "plant-a-*"]
    role: sender
  - name: supplier-b
    keySha256: %s
    senders: ["02"]
  - name: ops
    certSubject: "CN=ops-console"
    role: admin
`, HashKey(keyA), HashKey(keyB))
}

func mustParse(t testing.TB, src string) *Principals {
	t.Helper()
	ps, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return ps
}

func TestParseGood(t *testing.T) {
	ps := mustParse(t, goodYAML())
	if got, want := strings.Join(ps.Names(), ","), "supplier-a,supplier-b,ops"; got != want {
		t.Fatalf("names: got %v, want %v", got, want)
	}
	b, ok := ps.ByKey(keyB)
	if !ok || b.Role != RoleSender || b.IsAdmin() {
		t.Fatalf("supplier-b: got %v %v role %q, want default role sender", b, ok, b.Role)
	}
	ops, ok := ps.ByCertSubject("CN=ops-console")
	if !ok || ops.Name != "ops" || !ops.IsAdmin() || len(ops.Senders) != 0 {
		t.Fatalf("ops: got %+v %v, want admin with no senders", ops, ok)
	}
	if _, ok := ps.ByKey(""); ok {
		t.Fatal("empty key matched a principal")
	}
}

// TestParseTTL: a principal's ttl is a duration with a unit, absent meaning the stamp's own.
func TestParseTTL(t *testing.T) {
	ps := mustParse(t, fmt.Sprintf(`principals:
  - name: alarms
    keySha256: %s
    senders: ["alarm-*"]
    ttl: 90s
  - name: bulk
    keySha256: %s
    senders: ["bulk-*"]
    ttl: 24h
  - name: ops
    certSubject: "CN=ops-console"
    role: admin
    ttl: 8760h
`, HashKey(keyA), HashKey(keyB)))
	for _, tt := range []struct {
		name string
		want time.Duration
	}{{"alarms", 90 * time.Second}, {"bulk", 24 * time.Hour}, {"ops", 8760 * time.Hour}} {
		p := ps.list[slices.Index(ps.Names(), tt.name)]
		if p.TTL != tt.want {
			t.Errorf("%s: ttl %v, want %v", tt.name, p.TTL, tt.want)
		}
	}
	if p := mustParse(t, goodYAML()).list[0]; p.TTL != 0 {
		t.Errorf("no ttl: got %v, want 0 (the stamp's)", p.TTL)
	}
}

func TestParseEmptySet(t *testing.T) {
	if ps := mustParse(t, "principals: []\n"); ps.Len() != 0 {
		t.Fatalf("got %d principals, want 0", ps.Len())
	}
}

func TestParseErrors(t *testing.T) {
	h := HashKey(keyA)
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"empty file", "# nothing\n", []string{"empty"}},
		{"unknown top-level field", "principals: []\nusers: []\n", []string{"line 2", "users"}},
		{"unknown field", "principals:\n  - name: a\n    keySha256: " + h + "\n    key: hunter2\n    senders: [x]\n",
			[]string{"line 4", "field key not found"}},
		{"misspelt field", "principals:\n  - name: a\n    keySha256: " + h + "\n    sender: [x]\n",
			[]string{"line 4", "sender"}},
		{"wrong type", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: {a: b}\n", []string{"line 4"}},
		{"second document", "principals: []\n---\nprincipals: []\n", []string{"more than one YAML document"}},
		{"name missing", "principals:\n  - keySha256: " + h + "\n    senders: [x]\n", []string{"line 2", "name is required"}},
		{"duplicate name", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n  - name: a\n    certSubject: CN=a\n    senders: [y]\n",
			[]string{"line 5", `duplicate name "a"`, "line 2"}},
		{"duplicate key hash", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n  - name: b\n    keySha256: " + h + "\n    senders: [y]\n",
			[]string{"line 5", "keySha256 already used on line 2"}},
		{"duplicate cert subject", "principals:\n  - name: a\n    certSubject: CN=x\n    role: admin\n  - name: b\n    certSubject: CN=x\n    role: admin\n",
			[]string{"line 5", `certSubject already used by "a"`}},
		{"both key and cert", "principals:\n  - name: a\n    keySha256: " + h + "\n    certSubject: CN=a\n    senders: [x]\n",
			[]string{"line 2", `"a"`, "both keySha256 and certSubject"}},
		{"neither key nor cert", "principals:\n  - name: a\n    senders: [x]\n", []string{"needs keySha256 or certSubject"}},
		{"hash too short", "principals:\n  - name: a\n    keySha256: " + h[:63] + "\n    senders: [x]\n", []string{"64 lowercase hex"}},
		{"hash uppercase", "principals:\n  - name: a\n    keySha256: " + strings.ToUpper(h) + "\n    senders: [x]\n", []string{"64 lowercase hex"}},
		{"hash not hex", "principals:\n  - name: a\n    keySha256: " + strings.Repeat("g", 64) + "\n    senders: [x]\n", []string{"64 lowercase hex"}},
		{"bad role", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    role: root\n", []string{"line 2", `role "root"`}},
		{"sender without senders", "principals:\n  - name: a\n    keySha256: " + h + "\n", []string{"at least one senders glob"}},
		{"bad glob", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [\"plant-[a\"]\n", []string{"line 2", `glob "plant-[a"`, "syntax error in pattern"}},
		{"empty glob", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [\"\"]\n", []string{"empty senders glob"}},
		{"ttl without a unit", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n  - name: b\n    certSubject: CN=b\n    senders: [y]\n    ttl: 90\n",
			[]string{"line 5", `"b"`, `ttl "90"`, "with a unit"}},
		{"ttl not a duration", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: a day\n", []string{"line 2", `ttl "a day"`}},
		{"ttl below a second", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: 500ms\n", []string{"line 2", `ttl "500ms"`, "1s to 8760h"}},
		{"ttl zero", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: 0s\n", []string{"line 2", `ttl "0s"`}},
		{"ttl negative", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: -1h\n", []string{"line 2", `ttl "-1h"`}},
		{"ttl past a year", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: 8761h\n", []string{"line 2", `ttl "8761h"`}},
		{"ttl a list", "principals:\n  - name: a\n    keySha256: " + h + "\n    senders: [x]\n    ttl: [1h]\n", []string{"line 5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("got %v principals and no error, want an error containing %q", ps.Names(), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), h) || strings.Contains(strings.ToLower(err.Error()), h[:63]) {
				t.Errorf("error %q contains the key hash", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	ps, err := Load(filepath.Join("testdata", "principals", "good.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := ps.Len(), 2; got != want {
		t.Fatalf("got %v principals, want %v", got, want)
	}
	if p, ok := ps.ByKey(keyA); !ok || p.Name != "supplier-a" {
		t.Fatalf("ByKey(keyA): got %v %v, want supplier-a", p, ok)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("Load of a missing file: got no error")
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of an oversized file: got %v, want a size error", err)
	}
}

func TestByKey(t *testing.T) {
	ps := mustParse(t, goodYAML())
	tests := []struct {
		key  string
		want string // principal name, "" for none
	}{
		{keyA, "supplier-a"},
		{keyB, "supplier-b"},
		{keyA + " ", ""},
		{keyA[:len(keyA)-1], ""},
		{"wrong", ""},
		{HashKey(keyA), ""}, // the hash is not the key
		{"", ""},
	}
	for _, tt := range tests {
		p, ok := ps.ByKey(tt.key)
		got := ""
		if ok {
			got = p.Name
		}
		if got != tt.want {
			t.Errorf("ByKey(%q): got %q, want %q", tt.key, got, tt.want)
		}
	}
	var nilSet *Principals
	if _, ok := nilSet.ByKey(keyA); ok {
		t.Error("nil set matched a key")
	}
	if _, ok := ps.ByCertSubject("CN=someone-else"); ok {
		t.Error("unknown cert subject matched")
	}
	if _, ok := ps.ByCertSubject(""); ok {
		t.Error("empty cert subject matched")
	}
}

func TestMaySendAs(t *testing.T) {
	ps := mustParse(t, goodYAML())
	a, _ := ps.ByKey(keyA)
	ops, _ := ps.ByCertSubject("CN=ops-console")
	tests := []struct {
		p      *Principal
		sender string
		want   bool
	}{
		{a, "01", true},
		{a, "plant-a-1", true},
		{a, "plant-a-", true},
		{a, "plant-a-north/1", false}, // * does not cross /
		{a, "plant-b-1", false},
		{a, "plant-a", false},
		{a, "010", false},
		{a, "", false},
		{ops, "01", false}, // admin implies no senderId
		{nil, "01", false},
	}
	for _, tt := range tests {
		if got := tt.p.MaySendAs(tt.sender); got != tt.want {
			t.Errorf("%v.MaySendAs(%q): got %v, want %v", tt.p, tt.sender, got, tt.want)
		}
	}
}

// TestNoHashInOutput guards the promise that printing or logging principals never shows a hash.
func TestNoHashInOutput(t *testing.T) {
	ps := mustParse(t, goodYAML())
	a, _ := ps.ByKey(keyA)
	var sb strings.Builder
	logger := slog.New(slog.NewJSONHandler(&sb, nil))
	logger.Info("auth", "principal", a, "set", ps)
	logger.Info("auth", "principal", *a)
	out := sb.String() + fmt.Sprintf("%v %+v %#v %v %+v %s", a, a, a, *a, *a, ps)
	for _, secret := range []string{HashKey(keyA), keyA, HashKey(keyA)[:16]} {
		if strings.Contains(out, secret) {
			t.Fatalf("output contains %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "supplier-a") {
		t.Fatalf("output does not name the principal:\n%s", out)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodYAML()))
	f.Add([]byte("principals: []\n"))
	f.Add([]byte("principals:\n  - name: a\n    certSubject: CN=a\n    role: admin\n    senders: ['*']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data)
		if err != nil {
			return
		}
		for _, name := range ps.Names() {
			if name == "" {
				t.Fatal("accepted a principal without a name")
			}
		}
		for _, p := range ps.list {
			if p.Role != RoleSender && p.Role != RoleAdmin {
				t.Fatalf("accepted role %q", p.Role)
			}
			if p.hasKey == (p.CertSubject != "") {
				t.Fatalf("principal %q: want exactly one of key and cert", p.Name)
			}
			for _, g := range p.Senders {
				p.MaySendAs(g) // must not panic
			}
		}
	})
}
