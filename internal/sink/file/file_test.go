package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

func mustNew(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// readLines returns the file's lines (without newlines); a missing file has none.
func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline: %q", path, b[max(0, len(b)-40):])
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func readMessages(t testing.TB, path string) []message.Message {
	t.Helper()
	var out []message.Message
	for _, l := range readLines(t, path) {
		m, err := sinktest.FromEnvelope([]byte(l))
		if err != nil {
			t.Errorf("line %q: %v", l, err)
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestContract(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) (sink.Sink, func() []message.Message) {
		path := filepath.Join(t.TempDir(), "out", "delivered.ndjson")
		s := mustNew(t, Config{Path: path})
		return s, func() []message.Message { return readMessages(t, path) }
	})
}

func TestCreatesParentDirectories(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "c", "x.ndjson")
	s := mustNew(t, Config{Path: path})
	if res := s.Send(context.Background(), sinktest.Messages(1, 8)); res[0].Status != sink.Delivered {
		t.Fatalf("got %v (%v), want delivered", res[0].Status, res[0].Err)
	}
	if got := len(readLines(t, path)); got != 1 {
		t.Fatalf("got %d lines, want 1", got)
	}
}

func TestRawBody(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.ndjson")
	s := mustNew(t, Config{Path: path, Body: sink.BodyRaw})
	batch := sinktest.Messages(3, 0)
	batch[0].Value = `{"t":21.5}`
	batch[1].Value = "plain text"
	batch[2].Value = "two\nlines"
	for i, r := range s.Send(context.Background(), batch) {
		if r.Status != sink.Delivered {
			t.Fatalf("result %d: %v (%v)", i, r.Status, r.Err)
		}
	}
	got := readLines(t, path)
	want := []string{`{"t":21.5}`, "plain text", `"two\nlines"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if l := s.Limits(); l.Body != sink.BodyRaw {
		t.Fatalf("Limits().Body = %q, want raw", l.Body)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no path", Config{}, "Path"},
		{"bad body", Config{Path: "x", Body: "xml"}, "Body"},
		{"negative batch", Config{Path: "x", MaxBatchBytes: -1}, "MaxBatchBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestStartupTruncatesPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ndjson")
	if err := os.WriteFile(path, []byte("{\"a\":1}\n{\"half"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := mustNew(t, Config{Path: path})
	batch := sinktest.Messages(1, 8)
	if res := s.Send(context.Background(), batch); res[0].Status != sink.Delivered {
		t.Fatalf("got %v (%v)", res[0].Status, res[0].Err)
	}
	lines := readLines(t, path)
	if len(lines) != 2 || lines[0] != `{"a":1}` {
		t.Fatalf("got %q, want the complete first line and one new line", lines)
	}
}

// faultyHandle wraps a real file, failing writes (after writing half) or fsyncs on demand, and
// counting fsyncs after a failure.
type faultyHandle struct {
	handle
	mu              sync.Mutex
	failWrite       bool
	failSync        bool
	failed          bool
	syncAfterFailed int
}

func (f *faultyHandle) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWrite {
		f.failed = true
		n, _ := f.handle.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	return f.handle.Write(b)
}

func (f *faultyHandle) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed {
		f.syncAfterFailed++
	}
	if f.failSync {
		f.failed = true
		return syscall.EIO
	}
	return f.handle.Sync()
}

func TestFailuresAreTransientAndRecovered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failWrite bool
		failSync  bool
	}{
		{"write ENOSPC after half the batch", true, false},
		{"fsync EIO", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.ndjson")
			s := mustNew(t, Config{Path: path})
			var handles []*faultyHandle
			s.open = func(p string) (handle, error) {
				h, err := openOS(p)
				if err != nil {
					return nil, err
				}
				fh := &faultyHandle{handle: h}
				handles = append(handles, fh)
				return fh, nil
			}
			ctx := context.Background()
			first := sinktest.Messages(3, 32)
			if res := s.Send(ctx, first); res[0].Status != sink.Delivered {
				t.Fatalf("first batch: %v (%v)", res[0].Status, res[0].Err)
			}
			// The sink opened its file before the hook: force a reopen through it.
			s.mu.Lock()
			_ = s.f.Close()
			s.f = nil
			s.mu.Unlock()
			if res := s.Send(ctx, sinktest.Messages(1, 8)); res[0].Status != sink.Delivered {
				t.Fatalf("batch after reopen: %v (%v)", res[0].Status, res[0].Err)
			}
			h := handles[0]
			h.failWrite, h.failSync = tc.failWrite, tc.failSync
			failed := sinktest.Messages(4, 64)
			for i, r := range s.Send(ctx, failed) {
				if r.Status != sink.Transient || r.Err == nil {
					t.Fatalf("result %d: got %v (%v), want transient with an error", i, r.Status, r.Err)
				}
			}
			last := sinktest.Messages(2, 16)
			for i, r := range s.Send(ctx, last) {
				if r.Status != sink.Delivered {
					t.Fatalf("batch after the failure, result %d: %v (%v)", i, r.Status, r.Err)
				}
			}
			if len(handles) != 2 {
				t.Fatalf("got %d opens, want a reopen after the failure", len(handles))
			}
			if h.syncAfterFailed != 0 {
				t.Fatalf("the failed file was fsynced %d times after its failure, want 0", h.syncAfterFailed)
			}
			got := readMessages(t, path)
			if len(got) != 3+1+2 {
				t.Fatalf("got %d lines, want 6 (the failed batch truncated away)", len(got))
			}
			for _, m := range got {
				for _, f := range failed {
					if m.ID == f.ID {
						t.Fatalf("a message of the failed batch is in the file")
					}
				}
			}
		})
	}
}

func TestClosedIsTransient(t *testing.T) {
	s := mustNew(t, Config{Path: filepath.Join(t.TempDir(), "x.ndjson")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if res := s.Send(context.Background(), sinktest.Messages(1, 1)); res[0].Status != sink.Transient {
		t.Fatalf("got %v, want transient", res[0].Status)
	}
}

func BenchmarkSend(b *testing.B) {
	s, err := New(Config{Path: filepath.Join(b.TempDir(), "x.ndjson")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := sinktest.Messages(1000, 256)
	b.ResetTimer()
	for range b.N {
		s.Send(context.Background(), batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "msgs/s")
}
