package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       string // in the error; empty: passes
	}{
		{"new file in an existing directory", filepath.Join(dir, "delivered.ndjson"), ""},
		{"existing file", notDir, ""},
		{"directory not created yet", filepath.Join(dir, "a", "b", "delivered.ndjson"), ""},
		{"path is a directory", filepath.Join(dir, "adir"), "is not a regular file"},
		{"parent is a file", filepath.Join(notDir, "delivered.ndjson"), "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPath(context.Background(), tc.path)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckPath(%s): %v, want nil", tc.path, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckPath(%s): %v, want an error saying %q", tc.path, err, tc.want)
			}
		})
	}
	// Nothing was written: no sink file, no directory created, no test file left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "adir,plain" {
		t.Fatalf("after the checks the directory holds %s, want adir,plain", got)
	}
}

func TestSinkCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "delivered.ndjson")
	s, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// The directory went away under the sink (an unmounted volume): Check says so.
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Dir(path), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Check with the directory replaced by a file: %v, want not a directory", err)
	}
}
