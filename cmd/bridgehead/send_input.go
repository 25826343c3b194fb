package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// maxListedRejects bounds the rejected lines the summary names.
const maxListedRejects = 10

// inputLine is where a message came from: a file (or "stdin", or "--value") and a line number.
type inputLine struct {
	input string
	n     int
}

func (l inputLine) String() string {
	if l.input == "" {
		return "unknown line"
	}
	return l.input + ":" + strconv.Itoa(l.n)
}

// lineBook maps the messages in flight, by correlationId, to the lines they came from, so that a
// message a stamp refuses is reported by its line. It holds only what is queued or in flight
// (each entry is taken when its message's fate is known), so memory stays flat. Guarded by mu:
// the reader adds, the batcher's callbacks take.
type lineBook struct {
	mu    sync.Mutex
	lines map[string][]inputLine // in input order: the same id twice is answered in order
}

func (b *lineBook) add(correlationID string, at inputLine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lines == nil {
		b.lines = map[string][]inputLine{}
	}
	b.lines[correlationID] = append(b.lines[correlationID], at)
}

// take returns and forgets where the message of correlationID came from.
func (b *lineBook) take(correlationID string) inputLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	ls := b.lines[correlationID]
	if len(ls) == 0 {
		return inputLine{}
	}
	if len(ls) == 1 {
		delete(b.lines, correlationID)
	} else {
		b.lines[correlationID] = ls[1:]
	}
	return ls[0]
}

// rejectRecord is one line of --rejects-file.
type rejectRecord struct {
	Input  string               `json:"input"`        // the file, "stdin" or "--value"
	Line   int                  `json:"line"`         // 1-based
	Errors []message.FieldError `json:"errors"`       // what is wrong, by field
	By     string               `json:"by,omitempty"` // the stamp that refused it; absent when send's own check did
	Text   string               `json:"text"`         // the line as read; for a line a stamp refused, the message as sent (with its id)
}

// reject reports a line that will not be sent again: on stderr, in the rejects file and the
// summary. by is the stamp that refused it, "" when send's own check did.
func (s *sendState) reject(at inputLine, text string, errs []message.FieldError, by string) {
	s.rejected.Add(1)
	if by != "" {
		s.rejectedSent.Add(1)
	}
	details := make([]string, len(errs))
	for i, e := range errs {
		details[i] = e.Detail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejectedAt) < maxListedRejects {
		s.rejectedAt = append(s.rejectedAt, at.String())
	}
	if by == "" {
		s.warnLocked("%s: rejected: %s", at, strings.Join(details, "; "))
	} else {
		s.warnLocked("%s: rejected by %s: %s", at, by, strings.Join(details, "; "))
	}
	if s.rejects == nil || s.rejectsErr != nil {
		return
	}
	rec, err := json.Marshal(rejectRecord{Input: at.input, Line: at.n, Errors: errs, By: by, Text: text})
	if err == nil {
		_, err = s.rejects.Write(append(rec, '\n'))
	}
	if err != nil {
		s.rejectsErr = fmt.Errorf("--rejects-file: %w", err)
		s.warnLocked("%v", s.rejectsErr)
	}
}

// listRejected names the rejected lines for the summary: the first few, and how many more.
func listRejected(at []string, n int64) string {
	list := strings.Join(at, ", ")
	if more := n - int64(len(at)); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return list
}

// sentText is the message as sent, one NDJSON line, for the rejects file.
func sentText(m client.Message) string {
	b, err := json.Marshal(inputMessage{SenderID: m.SenderID, Value: m.Value, Properties: m.Properties, ID: m.ID})
	if err != nil {
		return ""
	}
	return string(b)
}

// inputMessage is one message as a line of NDJSON input holds it.
type inputMessage struct {
	SenderID   string            `json:"senderId"`
	Value      string            `json:"value"`
	Properties map[string]string `json:"properties,omitempty"`
	ID         string            `json:"id,omitempty"`
}

// sendInput reads the messages of a `send` run, checks each with the stamps' rules and hands the
// good ones to add; the others are rejected with their line.
type sendInput struct {
	senderID string // every line is a plain value of this sender; "" for NDJSON
	limits   message.Limits
	add      func(client.Message, inputLine) error
	st       *sendState
}

// readAll reads the values, then the files (stdin when none is given, unless values are).
func (r *sendInput) readAll(ctx context.Context, values, files []string, stdin io.Reader) error {
	for i, v := range values {
		if err := r.plain(v, inputLine{"--value", i + 1}); err != nil {
			return err
		}
	}
	if len(files) == 0 && len(values) > 0 {
		return nil
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.readFile(name, stdin); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads the file name, or stdin for "-".
func (r *sendInput) readFile(name string, stdin io.Reader) error {
	if name == "-" {
		return r.readLines(stdin, "stdin")
	}
	file, err := os.Open(name)
	if err != nil {
		return err
	}
	err = r.readLines(file, name)
	if cerr := file.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// readLines reads in line by line as it arrives: plain values of senderID, or NDJSON when
// senderID is empty.
func (r *sendInput) readLines(in io.Reader, label string) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		at := inputLine{label, n}
		if r.senderID != "" {
			if err := r.plain(line, at); err != nil {
				return err
			}
			continue
		}
		m, errs := r.limits.Parse([]byte(line))
		if errs != nil {
			r.st.reject(at, line, errs, "")
			continue
		}
		cm := client.Message{SenderID: *m.SenderID, Value: *m.Value, Properties: m.Properties}
		if m.ID != nil {
			cm.ID = *m.ID
		}
		if m.TTL != nil {
			cm.TTL, _ = message.ParseTTL(m.TTL.String()) // Parse has checked it
		}
		if m.Priority != nil {
			p, _ := message.ParsePriority(m.Priority.String()) // Parse has checked it
			cm.Priority = &p
		}
		if err := r.add(cm, at); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", label, err)
	}
	return nil
}

// plain sends value as a message of r.senderID, if a stamp would take it.
func (r *sendInput) plain(value string, at inputLine) error {
	if errs := r.limits.Check(&message.Input{SenderID: &r.senderID, Value: &value}); errs != nil {
		r.st.reject(at, value, errs, "")
		return nil
	}
	return r.add(client.Message{SenderID: r.senderID, Value: value}, at)
}
