package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// maxLineBytes bounds one input line: a 1 MiB value, JSON-escaped, with its properties.
const maxLineBytes = 8 << 20

// sendFlags is every `send` setting; flags fill it, env BRIDGEHEAD_<FLAG> overrides defaults.
type sendFlags struct {
	urls      []string // each one URL or a comma-separated list; all of them, in order
	senderID  string
	values    []string
	window    time.Duration
	ackedFile string
	// rejectsFile receives every line refused, by send's own check or by a stamp, as JSON.
	rejectsFile string
	// maxMessageBytes is the stamps' --max-message-bytes: a bigger line is refused locally.
	maxMessageBytes byteSize
	apiKey          string
	apiKeyFile      string
	caFile          string
	timeout         time.Duration
	connectTimeout  time.Duration
	// maxAttempts bounds the tries of one request across the stamps: 0 is the client's default
	// (3 per stamp), -1 means until interrupted.
	maxAttempts int
}

func newSendCmd() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send [FILE...]",
		Short: "Send messages to a stamp, failing over to the next one, and report what was acked",
		Long: `Send messages read from the FILEs, or from stdin when none is given ("-" is stdin too), to
the stamps of --url, in order of preference: the first healthy one takes the traffic, and a
stamp that fails is left alone (and probed) while the next one takes over. Every message gets
an idempotency id before its first try, so a retry on either stamp carries the same
correlationId and downstream can drop the duplicate.

Input is NDJSON, one {"senderId","value","properties"?,"id"?,"ttl"?} object a line; with
--sender-id, every line is a plain value. A retried request carries Message-Age (the seconds
since its first try), so its messages keep their age, and their ttl runs from the first try,
on whichever stamp acks them. --value sends values given on the command line (with
--sender-id; no stdin is read unless FILEs are given). Empty lines are skipped.

Every line is checked with the stamps' own rules (docs/api.md, "Limits") before it is sent: a
line a stamp would refuse is not sent, and is reported on stderr with its file and line number
("stdin:1001: rejected: senderId must be ...") and, with --rejects-file, appended there as
{"input","line","errors","by"?,"text"} ("by": the stamp that refused it). A line that passes here but that a stamp still refuses by
name (a stamp with a smaller --max-message-bytes, a key that may not send as its senderId) is
reported the same way, and the other messages of its request are sent again without it: one
bad line costs only itself.

It streams: a line read is sent within --batch-window, so "tail -f x | bridgehead send
--sender-id plant-a" works, and memory stays flat (reading pauses while a batch is in
flight and the queue is full).

Each failover is said on stderr with its cause ("send: failover: https://onprem:8443 failed
(connection refused); sending to https://cloud.example"), and so is the return to a preferred
stamp ("send: back to https://onprem:8443: it answers again"). Progress goes to stderr too: one
line rewritten in place on a terminal, plain lines (at most one a second) otherwise. The summary (sent, acked per endpoint, failed, rejected with their lines,
failovers) goes to stdout. Exit status 1 when any message was not acked or any line rejected.

A request is tried up to --max-attempts times across the stamps (default 3 per stamp) before
its messages count as failed; with --max-attempts -1 it is tried until a stamp acks it or
send is interrupted, and reading pauses meanwhile. Every flag can also be set by
BRIDGEHEAD_<FLAG> (dashes as underscores); the API key also by BRIDGEHEAD_API_KEY_FILE.`,
		Example: `  bridgehead send --url https://onprem:8443 --url https://cloud.example readings.ndjson
  bridgehead send --url https://onprem:8443,https://cloud.example --rejects-file rejects.ndjson readings.ndjson
  tail -f readings.log | bridgehead send --sender-id plant-a --acked-file acked.txt
  bridgehead send --sender-id plant-a --value 21.5 --value 21.7`,
		RunE: func(cmd *cobra.Command, files []string) error {
			return runSend(cmd, f, files)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.urls, "url", []string{"http://127.0.0.1:8080"}, "base URL of a stamp; repeat it (or give a comma-separated list) for failover, in order of preference")
	fs.StringVar(&f.senderID, "sender-id", "", "senderId of every message: input lines are plain values, not NDJSON")
	fs.StringArrayVar(&f.values, "value", nil, "send this value (repeatable; needs --sender-id)")
	fs.DurationVar(&f.window, "batch-window", client.DefaultBatchWindow, "longest a message read waits before its request is sent (at most 1000 messages a request)")
	fs.StringVar(&f.ackedFile, "acked-file", "", "append the correlationId of each acked message to this file, one a line, as they are acked")
	fs.StringVar(&f.rejectsFile, "rejects-file", "", "append each rejected line to this file as a JSON object {\"input\",\"line\",\"errors\",\"by\"?,\"text\"}")
	f.maxMessageBytes = message.DefaultMaxBytes
	fs.Var(&f.maxMessageBytes, "max-message-bytes", "largest message (value plus properties) a line may hold: the stamps' --max-message-bytes")
	fs.StringVar(&f.apiKey, "api-key", "", "sent as Authorization: Bearer <key> (or BRIDGEHEAD_API_KEY_FILE)")
	fs.StringVar(&f.apiKeyFile, "api-key-file", "", "file holding the API key")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates to trust for https stamps (default: the system's)")
	fs.DurationVar(&f.timeout, "timeout", client.DefaultTimeout, "per try at one stamp, from sending to the end of the answer (a cut link fails over after it)")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", client.DefaultConnectTimeout, "per new connection to a stamp (at most --timeout)")
	fs.IntVar(&f.maxAttempts, "max-attempts", 0, "tries of one request across the stamps before its messages count as failed (0: 3 per stamp; -1: until acked or interrupted)")
	_ = fs.SetAnnotation("api-key", secretAnnotation, []string{"true"})
	return cmd
}

// clientConfig checks the flags and builds the client's Config.
func (f sendFlags) clientConfig(cmd *cobra.Command) (client.Config, error) {
	var endpoints []string
	for _, u := range f.urls {
		endpoints = append(endpoints, splitList(u)...)
	}
	for _, e := range endpoints {
		if !isHTTPURL(e) {
			return client.Config{}, fmt.Errorf("--url: %q is not an http(s) URL with a host", e)
		}
	}
	switch {
	case len(endpoints) == 0:
		return client.Config{}, errors.New("--url: at least one URL is required")
	case f.window <= 0:
		return client.Config{}, fmt.Errorf("--batch-window %v: must be positive", f.window)
	case f.timeout <= 0:
		return client.Config{}, fmt.Errorf("--timeout %v: must be positive", f.timeout)
	case f.connectTimeout <= 0 || f.connectTimeout > f.timeout:
		return client.Config{}, fmt.Errorf("--connect-timeout %v: must be positive and at most --timeout %v", f.connectTimeout, f.timeout)
	case f.maxAttempts < -1:
		return client.Config{}, fmt.Errorf("--max-attempts %d: must be positive, 0 (3 per stamp) or -1 (until acked)", f.maxAttempts)
	case len(f.values) > 0 && f.senderID == "":
		return client.Config{}, errors.New("--value needs --sender-id")
	case f.senderID != "" && !message.ValidSenderID(f.senderID):
		return client.Config{}, fmt.Errorf("--sender-id %q: must be 1-%d characters of A-Z a-z 0-9 . _ : @ -", f.senderID, message.MaxSenderIDLen)
	case f.maxMessageBytes <= 0:
		return client.Config{}, fmt.Errorf("--max-message-bytes %d: must be positive", f.maxMessageBytes)
	case cmd.Flags().Changed("api-key") && cmd.Flags().Changed("api-key-file"):
		return client.Config{}, errors.New("--api-key and --api-key-file: give one")
	}
	cfg := client.Config{Endpoints: endpoints, APIKey: f.apiKey, Timeout: f.timeout, ConnectTimeout: f.connectTimeout,
		MaxAttempts: f.maxAttempts}
	if f.apiKey == "" && f.apiKeyFile != "" {
		key, err := os.ReadFile(f.apiKeyFile)
		if err != nil {
			return client.Config{}, fmt.Errorf("--api-key-file: %w", err)
		}
		cfg.APIKey = strings.TrimRight(string(key), "\r\n")
	}
	if f.caFile != "" {
		tc, err := tlsConfig("--ca-file", f.caFile)
		if err != nil {
			return client.Config{}, err
		}
		cfg.TLSConfig = tc
	}
	return cfg, nil
}

// sendState is what a `send` run counts. The counters are atomic: the reader, the batcher's
// callbacks and the progress printer touch them. stderr writes, the rejects file and the list of
// rejected lines are guarded by mu.
type sendState struct {
	sent         atomic.Int64 // messages handed to the batcher
	acked        atomic.Int64
	failed       atomic.Int64 // sent but not acked, and not rejected by name
	rejected     atomic.Int64 // lines refused: by send's own check, or by a stamp naming them
	rejectedSent atomic.Int64 // of rejected, those a stamp refused (they count as sent)
	lastEndpoint atomic.Pointer[string]
	lines        lineBook

	mu         sync.Mutex
	stderr     io.Writer
	tty        bool
	shown      bool     // a progress line is on a terminal's last line
	rejectedAt []string // where the first maxListedRejects rejected lines were
	rejects    io.Writer
	rejectsErr error // first write error of the rejects file
}

// warn prints a line to stderr, clearing a progress line first.
func (s *sendState) warn(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warnLocked(format, args...)
}

func (s *sendState) warnLocked(format string, args ...any) {
	if s.shown {
		fmt.Fprint(s.stderr, "\r\x1b[K")
		s.shown = false
	}
	fmt.Fprintf(s.stderr, "send: "+format+"\n", args...)
}

func (s *sendState) progress(rate float64) {
	line := fmt.Sprintf("sent %d, acked %d, failed %d", s.sent.Load(), s.acked.Load(), s.failed.Load())
	if n := s.rejected.Load(); n > 0 {
		line += fmt.Sprintf(", rejected %d", n)
	}
	line += fmt.Sprintf(", %.0f msg/s", rate)
	if ep := s.lastEndpoint.Load(); ep != nil {
		line += ", via " + *ep
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty {
		fmt.Fprint(s.stderr, "\r\x1b[K"+line)
		s.shown = true
		return
	}
	fmt.Fprintln(s.stderr, line)
}

// showProgress prints progress until stop is closed: on a terminal four times a second, else
// once a second when something changed.
func (s *sendState) showProgress(stop <-chan struct{}) {
	every := time.Second
	if s.tty {
		every = 250 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			acked := s.acked.Load()
			if !s.tty && acked == last {
				continue
			}
			rate := float64(acked-max(last, 0)) / now.Sub(lastAt).Seconds()
			last, lastAt = acked, now
			s.progress(rate)
		}
	}
}

// openAppend opens the file of flag for appending, creating it.
func openAppend(flag, name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return f, nil
}

func runSend(cmd *cobra.Command, f sendFlags, files []string) (err error) {
	ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	cfg, err := f.clientConfig(cmd)
	if err != nil {
		return err
	}
	st := &sendState{stderr: stderr, tty: isTerminal(stderr)}
	cfg.OnFailover = func(fo client.Failover) {
		st.warn("failover: %s failed (%s); sending to %s", fo.From, fo.Cause, fo.To)
	}
	closeFile := func(flag string, file *os.File) {
		if cerr := file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", flag, cerr)
		}
	}
	var acked *os.File
	if f.ackedFile != "" {
		if acked, err = openAppend("--acked-file", f.ackedFile); err != nil {
			return err
		}
		defer closeFile("--acked-file", acked)
	}
	if f.rejectsFile != "" {
		rejects, err := openAppend("--rejects-file", f.rejectsFile)
		if err != nil {
			return err
		}
		defer closeFile("--rejects-file", rejects)
		st.rejects = rejects
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	rank := map[string]int{} // an endpoint's place in the order of preference
	for i, e := range cfg.Endpoints {
		if _, ok := rank[e]; !ok {
			rank[e] = i
		}
	}
	var ackErr error // first write error of the acked file; only the batcher's goroutine sets it
	b, err := c.NewBatcher(client.BatcherConfig{
		Window: f.window,
		OnAcked: func(acks []client.Ack) {
			st.acked.Add(int64(len(acks)))
			ep := acks[len(acks)-1].Endpoint
			if prev := st.lastEndpoint.Swap(&ep); prev != nil && rank[ep] < rank[*prev] {
				st.warn("back to %s: it answers again", ep)
			}
			for _, a := range acks {
				st.lines.take(a.CorrelationID)
			}
			if acked == nil || ackErr != nil {
				return
			}
			var buf strings.Builder
			for _, a := range acks {
				buf.WriteString(a.CorrelationID)
				buf.WriteByte('\n')
			}
			if _, werr := io.WriteString(acked, buf.String()); werr != nil {
				ackErr = fmt.Errorf("--acked-file: %w", werr)
				st.warn("%v", ackErr)
			}
		},
		OnError: func(msgs []client.Message, err error) {
			st.failed.Add(int64(len(msgs)))
			for _, m := range msgs {
				st.lines.take(client.CorrelationID(m.SenderID, m.ID))
			}
			st.warn("%d messages not acked: %v", len(msgs), err)
		},
		OnRejected: func(m client.Message, errs []client.FieldError, e *client.Error) {
			at := st.lines.take(client.CorrelationID(m.SenderID, m.ID))
			problems := make([]message.FieldError, len(errs))
			for i, fe := range errs {
				problems[i] = message.FieldError{Field: fe.Field, Detail: fe.Detail}
			}
			st.reject(at, sentText(m), problems, e.Endpoint)
		},
	})
	if err != nil {
		return err
	}

	stop, progressDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(progressDone); st.showProgress(stop) }()

	add := func(m client.Message, at inputLine) error {
		if m.ID == "" {
			m.ID = uuid.NewString() // now, so that the line book knows its correlationId
		}
		st.lines.add(client.CorrelationID(m.SenderID, m.ID), at)
		if err := b.Add(ctx, m); err != nil {
			return err
		}
		st.sent.Add(1)
		return nil
	}
	in := &sendInput{senderID: f.senderID, limits: message.Limits{MaxBytes: int(f.maxMessageBytes)}, add: add, st: st}
	readDone := make(chan error, 1)
	go func() { readDone <- in.readAll(ctx, f.values, files, cmd.InOrStdin()) }()
	var readErr error
	select {
	case readErr = <-readDone:
	case <-ctx.Done():
		// An interrupt: a reader blocked on stdin cannot be woken; what it read is reported.
		readErr = ctx.Err()
	}
	closeErr := b.Close(ctx)
	close(stop)
	<-progressDone
	if st.tty {
		st.mu.Lock()
		if st.shown {
			fmt.Fprint(stderr, "\r\x1b[K")
		}
		st.mu.Unlock()
	}

	stats := c.Stats()
	sent, nAcked, rejected := st.sent.Load(), st.acked.Load(), st.rejected.Load()
	st.mu.Lock()
	rejectedAt, rejectsErr := st.rejectedAt, st.rejectsErr
	st.mu.Unlock()
	notAcked := sent - nAcked - st.rejectedSent.Load() // failed, or never answered
	fmt.Fprintf(stdout, "sent %d, acked %d, failed %d, rejected %d, failovers %d\n", sent, nAcked, notAcked, rejected, stats.Failovers)
	for _, e := range stats.Endpoints {
		fmt.Fprintf(stdout, "  acked by %s: %d\n", e.Endpoint, e.Acked)
	}
	where := listRejected(rejectedAt, rejected)
	if rejected > 0 {
		fmt.Fprintf(stdout, "  rejected: %s\n", where)
	}

	switch {
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return readErr
	case readErr != nil || closeErr != nil:
		return fmt.Errorf("interrupted: %d of %d messages read were not acked", sent-nAcked, sent)
	case ackErr != nil:
		return ackErr
	case rejectsErr != nil:
		return rejectsErr
	case notAcked > 0 && rejected > 0:
		return fmt.Errorf("%d messages were not acked, and %d lines were rejected (%s)", notAcked, rejected, where)
	case notAcked > 0:
		return fmt.Errorf("%d messages were not acked", notAcked)
	case rejected > 0:
		return fmt.Errorf("%d lines were rejected (%s)", rejected, where)
	}
	return nil
}
