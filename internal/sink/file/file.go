// Package file provides a sink that appends events to a local NDJSON file: one JSON envelope
// (or, with sink.BodyRaw, the raw value) per line. It is the laptop default and an air-gap
// archive.
//
// Guarantees: a batch is written with one write and made durable with one fsync; its messages
// are reported Delivered only after that fsync returned nil. A failed write or fsync fails the
// whole batch as Transient, and the file is never fsynced again after a failure (the kernel may
// have dropped the dirty pages, so a later fsync could "succeed" over lost data): it is closed,
// reopened and truncated back to the end of the last durable batch, so a half-written line never
// precedes good ones. Lines are never split: every line ends in '\n'.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// DefaultMaxBatchBytes bounds one batch's write (4 MiB), so that one fsync never carries an
// unbounded amount of data.
const DefaultMaxBatchBytes = 4 << 20

// Config configures a file sink.
type Config struct {
	// Path is the NDJSON file; it and its parent directories are created if missing. Required.
	Path string
	// Body says what a line is: the JSON envelope (default) or the raw value. A raw value
	// containing a newline would break the one-line-per-event format, so in raw mode it is
	// written as a JSON string instead.
	Body sink.BodyMode
	// MaxBatchBytes bounds the bytes of one batch (the estimate of sink.EncodedSize); default
	// DefaultMaxBatchBytes.
	MaxBatchBytes int
	// Logger receives write and fsync failures; nil means no logging.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	switch {
	case c.Path == "":
		return errors.New("file sink: Path is required")
	case c.Body != "" && c.Body != sink.BodyEnvelope && c.Body != sink.BodyRaw:
		return fmt.Errorf("file sink: Body %q is not %q or %q", c.Body, sink.BodyEnvelope, sink.BodyRaw)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("file sink: MaxBatchBytes %d is negative", c.MaxBatchBytes)
	}
	return nil
}

// handle is the part of *os.File the sink uses, so tests can inject write and fsync failures.
type handle interface {
	io.Writer
	io.Seeker
	Sync() error
	Close() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	ReadAt(b []byte, off int64) (int, error)
}

// Sink appends batches to one file. It is safe for concurrent use: mu serialises batches, so
// each batch's lines are contiguous and each fsync covers whole batches.
type Sink struct {
	cfg  Config
	log  *slog.Logger
	open func(path string) (handle, error)

	mu     sync.Mutex
	f      handle // nil after a failure until reopened, or after Close
	good   int64  // file size after the last durable batch
	closed bool
	buf    []byte // owned under mu
}

// New opens (creating if needed) the file at cfg.Path and its parent directories. A trailing
// partial line left by a crash (a batch never reported Delivered) is truncated away.
func New(cfg Config) (*Sink, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Body == "" {
		cfg.Body = sink.BodyEnvelope
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, log: log.With("sink", "file", "path", cfg.Path), open: openOS}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("file sink: create directory: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reopenLocked(-1); err != nil {
		return nil, err
	}
	return s, nil
}

func openOS(path string) (handle, error) {
	// Not O_APPEND: the sink is the only writer, and it must be able to truncate a failed
	// batch away and then write at the truncated end. Read access finds the last line at start.
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// reopenLocked opens the file and positions the sink at its durable end: good if good ≥ 0 (after
// a failure), else the end of the last complete line (at startup).
func (s *Sink) reopenLocked(good int64) error {
	f, err := s.open(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("file sink: stat %s: %w", s.cfg.Path, err)
	}
	size := fi.Size()
	end := size
	if good >= 0 && good < size {
		end = good
	}
	if good < 0 {
		end, err = lastLineEnd(f, size)
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("file sink: read %s: %w", s.cfg.Path, err)
		}
	}
	if end != size {
		if err := f.Truncate(end); err != nil {
			_ = f.Close()
			return fmt.Errorf("file sink: truncate %s to %d: %w", s.cfg.Path, end, err)
		}
		s.log.Warn("truncated a partial batch", "from", size, "to", end)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		_ = f.Close()
		return fmt.Errorf("file sink: seek %s: %w", s.cfg.Path, err)
	}
	s.f, s.good = f, end
	return nil
}

// lastLineEnd returns the offset just past the last '\n' in the first size bytes of f (0 if none).
func lastLineEnd(f handle, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				return end - n + i + 1, nil
			}
		}
		end -= n
	}
	return 0, nil
}

// Limits reports the batch size bound and the body mode; a line has no size limit.
func (s *Sink) Limits() sink.Limits {
	return sink.Limits{MaxBatchBytes: s.cfg.MaxBatchBytes, Body: s.cfg.Body}
}

// Send writes batch as lines with one write and one fsync. Every message is Delivered after a
// successful fsync, or Transient (with the error) otherwise; a message whose body cannot be
// encoded is Permanent. ctx is checked before writing: a write in progress is not interrupted
// (it is short, and a half-written batch would need the same recovery as a failure).
func (s *Sink) Send(ctx context.Context, batch []message.Message) []sink.Result {
	out := make([]sink.Result, len(batch))
	if len(batch) == 0 {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return sink.All(len(batch), sink.Result{Status: sink.Transient, Err: err})
	}
	if s.closed {
		return sink.All(len(batch), sink.Result{Status: sink.Transient, Err: errors.New("file sink closed")})
	}
	if s.f == nil {
		if err := s.reopenLocked(s.good); err != nil {
			s.log.Error("reopen failed", "err", err)
			return sink.All(len(batch), sink.Result{Status: sink.Transient, Err: err})
		}
	}
	buf := s.buf[:0]
	n := 0
	for i := range batch {
		line, err := s.line(&batch[i])
		if err != nil {
			out[i] = sink.Result{Status: sink.Permanent, Err: err}
			continue
		}
		buf = append(append(buf, line...), '\n')
		n++
	}
	s.buf = buf
	if n == 0 {
		return out
	}
	fail := func(what string, err error) []sink.Result {
		err = fmt.Errorf("file sink: %s %s: %w", what, s.cfg.Path, err)
		s.log.Error("batch failed; the file will be reopened and truncated to its durable end", "err", err, "durable", s.good)
		// Never fsync this descriptor again; the next batch reopens and truncates.
		_ = s.f.Close()
		s.f = nil
		for i := range out {
			if out[i].Status == sink.Delivered {
				out[i] = sink.Result{Status: sink.Transient, Err: err}
			}
		}
		return out
	}
	w, err := s.f.Write(buf)
	if err == nil && w != len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fail("write", err)
	}
	if err := s.f.Sync(); err != nil {
		return fail("fsync", err)
	}
	s.good += int64(len(buf))
	return out
}

// line encodes one message as it appears in the file (without the newline).
func (s *Sink) line(m *message.Message) ([]byte, error) {
	if s.cfg.Body == sink.BodyRaw && strings.ContainsAny(m.Value, "\n\r") {
		return json.Marshal(m.Value)
	}
	return sink.Body(m, s.cfg.Body)
}

// Close closes the file. The data is already durable (every Send fsyncs). Close is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("file sink: close %s: %w", s.cfg.Path, err)
	}
	return nil
}

// Check reports whether the sink's file can still be written, without writing it (see CheckPath).
func (s *Sink) Check(ctx context.Context) error { return CheckPath(ctx, s.cfg.Path) }

// CheckPath reports whether a file sink could deliver to path, without touching path itself: path,
// if it exists, is a regular file this process may write, and its directory (or, when that does
// not exist yet, the nearest existing parent, where New would create it) takes a new file: a
// temporary file is created there and removed. Errors name the path and the system's reason.
func CheckPath(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("file sink: %s is not a regular file (%s)", path, fi.Mode().Type())
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return fmt.Errorf("file sink: %s is not writable: %w", path, &os.PathError{Op: "access", Path: path, Err: err})
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file sink: %w", err)
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("file sink: %s is not a directory", dir)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) || filepath.Dir(dir) == dir {
			return fmt.Errorf("file sink: %w", err)
		}
		dir = filepath.Dir(dir)
	}
	f, err := os.CreateTemp(dir, ".bridgehead-check-*")
	if err != nil {
		return fmt.Errorf("file sink: directory %s does not take new files: %w", dir, err)
	}
	cerr := f.Close()
	if err := errors.Join(cerr, os.Remove(f.Name())); err != nil {
		return fmt.Errorf("file sink: test file in %s: %w", dir, err)
	}
	return nil
}
