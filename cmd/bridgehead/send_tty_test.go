package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's controlling side and the terminal a program writes to.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's terminal: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = m.Close() })
	return m, s
}

// sendSlowly runs `send` reading plain lines that arrive every 50 ms for about 1.5 s (past the pipe's one-second progress tick), with
// stderr on w, and returns stdout and the error.
func sendSlowly(t *testing.T, url string, w *os.File) (string, error) {
	t.Helper()
	in, feed := io.Pipe()
	go func() {
		for i := range 30 {
			fmt.Fprintf(feed, "reading %d\n", i)
			time.Sleep(50 * time.Millisecond)
		}
		_ = feed.Close()
	}()
	var out bytes.Buffer
	err := run(t.Context(), []string{"send", "--url", url, "--sender-id", "plant-a", "--batch-window", "10ms"}, in, &out, w)
	return out.String(), err
}

// TestSendProgressOnATerminalAndAPipe runs send with stderr on a real pseudo-terminal, where the
// progress line is redrawn in place (\r, erase line) and erased at the end, and on a pipe, where
// it is plain lines; the summary goes to stdout either way.
func TestSendProgressOnATerminalAndAPipe(t *testing.T) {
	stamp := mustSendStamp(t, "")

	master, tty := openPTY(t)
	var screen bytes.Buffer
	var mu sync.Mutex
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	out, err := sendSlowly(t, stamp.URL, tty)
	if err != nil {
		t.Fatalf("send on a terminal: %v", err)
	}
	_ = tty.Close() // the reader sees EOF (EIO) once the terminal side is closed
	<-copied
	mu.Lock()
	got := screen.String()
	mu.Unlock()
	if n := strings.Count(got, "\r\x1b[Ksent "); n < 2 {
		t.Errorf("terminal: %d progress redraws in %q, want several (four a second)", n, got)
	}
	if !strings.HasSuffix(got, "\r\x1b[K") || strings.Contains(got, "\n") {
		t.Errorf("terminal: %q, want redraws on one line, erased at the end", got)
	}
	if !strings.HasPrefix(out, "sent 30, acked 30, failed 0, rejected 0, failovers 0\n") {
		t.Errorf("summary on stdout: %q", out)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	piped := make(chan string)
	go func() { b, _ := io.ReadAll(r); piped <- string(b) }()
	out, err = sendSlowly(t, stamp.URL, w)
	_ = w.Close()
	lines := <-piped
	if err != nil {
		t.Fatalf("send on a pipe: %v", err)
	}
	if strings.Contains(lines, "\x1b") || strings.Contains(lines, "\r") {
		t.Errorf("pipe: %q contains terminal control sequences", lines)
	}
	if !strings.HasPrefix(lines, "sent ") || !strings.HasSuffix(lines, "\n") || !strings.Contains(lines, "via "+stamp.URL) {
		t.Errorf("pipe: %q, want plain progress lines naming the endpoint", lines)
	}
	if !strings.HasPrefix(out, "sent 30, acked 30, failed 0, rejected 0, failovers 0\n") {
		t.Errorf("summary on stdout: %q", out)
	}
}
