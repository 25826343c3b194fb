// Package logbuf provides Buffer, a bytes.Buffer that several goroutines may write while another
// reads it: the log destination of tests that check what a server logged (and what it must
// never log, such as keys) while the server's goroutines are still running.
package logbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for concurrent use; mu guards b. The zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
