package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/spf13/cobra"
)

// maxLineBytes bounds one input line: a 1 MiB value, JSON-escaped, with its properties.
const maxLineBytes = 8 << 20

// sendFlags is every `send` setting; flags fill it, env BRIDGEHEAD_<FLAG> overrides defaults.
type sendFlags struct {
	urls       string
	senderID   string
	values     []string
	window     time.Duration
	ackedFile  string
	apiKey     string
	apiKeyFile string
	caFile     string
	timeout    time.Duration
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

Input is NDJSON, one {"senderId","value","properties"?,"id"?} object a line; with --sender-id,
every line is a plain value. --value sends values given on the command line (with
--sender-id; no stdin is read unless FILEs are given). Empty lines are skipped.

It streams: a line read is sent within --batch-window, so "tail -f x | bridgehead send
--sender-id plant-a" works, and memory stays flat (reading pauses while a batch is in
flight and the queue is full).

Progress goes to stderr: one line rewritten in place on a terminal, plain lines (at most one
a second) otherwise. The summary (sent, acked per endpoint, failed, failovers) goes to
stdout. Exit status 1 when any message was not acked.

A request is tried up to --max-attempts times across the stamps (default 3 per stamp) before
its messages count as failed; with --max-attempts -1 it is tried until a stamp acks it or
send is interrupted, and reading pauses meanwhile. Every flag can also be set by
BRIDGEHEAD_<FLAG> (dashes as underscores); the API key also by BRIDGEHEAD_API_KEY_FILE.`,
		Example: `  bridgehead send --url https://onprem:8443,https://cloud.example readings.ndjson
  tail -f readings.log | bridgehead send --sender-id plant-a --acked-file acked.txt
  bridgehead send --sender-id plant-a --value 21.5 --value 21.7`,
		RunE: func(cmd *cobra.Command, files []string) error {
			return runSend(cmd, f, files)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.urls, "url", "http://127.0.0.1:8080", "base URLs of the stamps, comma-separated, in order of preference")
	fs.StringVar(&f.senderID, "sender-id", "", "senderId of every message: input lines are plain values, not NDJSON")
	fs.StringArrayVar(&f.values, "value", nil, "send this value (repeatable; needs --sender-id)")
	fs.DurationVar(&f.window, "batch-window", client.DefaultBatchWindow, "longest a message read waits before its request is sent (at most 1000 messages a request)")
	fs.StringVar(&f.ackedFile, "acked-file", "", "append the correlationId of each acked message to this file, one a line, as they are acked")
	fs.StringVar(&f.apiKey, "api-key", "", "sent as Authorization: Bearer <key> (or BRIDGEHEAD_API_KEY_FILE)")
	fs.StringVar(&f.apiKeyFile, "api-key-file", "", "file holding the API key")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates to trust for https stamps (default: the system's)")
	fs.DurationVar(&f.timeout, "timeout", client.DefaultTimeout, "per try at one stamp, from sending to the end of the answer")
	fs.IntVar(&f.maxAttempts, "max-attempts", 0, "tries of one request across the stamps before its messages count as failed (0: 3 per stamp; -1: until acked or interrupted)")
	_ = fs.SetAnnotation("api-key", secretAnnotation, []string{"true"})
	return cmd
}

// clientConfig checks the flags and builds the client's Config.
func (f sendFlags) clientConfig(cmd *cobra.Command) (client.Config, error) {
	endpoints := splitList(f.urls)
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
	case f.maxAttempts < -1:
		return client.Config{}, fmt.Errorf("--max-attempts %d: must be positive, 0 (3 per stamp) or -1 (until acked)", f.maxAttempts)
	case len(f.values) > 0 && f.senderID == "":
		return client.Config{}, errors.New("--value needs --sender-id")
	case cmd.Flags().Changed("api-key") && cmd.Flags().Changed("api-key-file"):
		return client.Config{}, errors.New("--api-key and --api-key-file: give one")
	}
	cfg := client.Config{Endpoints: endpoints, APIKey: f.apiKey, Timeout: f.timeout, MaxAttempts: f.maxAttempts}
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
// callbacks and the progress printer touch them. stderr writes are serialized by mu.
type sendState struct {
	sent         atomic.Int64 // messages handed to the batcher
	acked        atomic.Int64
	failed       atomic.Int64 // sent but not acked
	bad          atomic.Int64 // input lines that are not messages
	lastEndpoint atomic.Pointer[string]

	mu     sync.Mutex
	stderr io.Writer
	tty    bool
	shown  bool // a progress line is on a terminal's last line
}

// warn prints a line to stderr, clearing a progress line first.
func (s *sendState) warn(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shown {
		fmt.Fprint(s.stderr, "\r\x1b[K")
		s.shown = false
	}
	fmt.Fprintf(s.stderr, "send: "+format+"\n", args...)
}

func (s *sendState) progress(rate float64) {
	line := fmt.Sprintf("sent %d, acked %d, failed %d, %.0f msg/s", s.sent.Load(), s.acked.Load(), s.failed.Load()+s.bad.Load(), rate)
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

func runSend(cmd *cobra.Command, f sendFlags, files []string) (err error) {
	ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	cfg, err := f.clientConfig(cmd)
	if err != nil {
		return err
	}
	st := &sendState{stderr: stderr, tty: isTerminal(stderr)}
	var acked *os.File
	if f.ackedFile != "" {
		acked, err = os.OpenFile(f.ackedFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--acked-file: %w", err)
		}
		defer func() {
			if cerr := acked.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("--acked-file: %w", cerr)
			}
		}()
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	var ackErr error // first write error of the acked file; only the batcher's goroutine sets it
	b, err := c.NewBatcher(client.BatcherConfig{
		Window: f.window,
		OnAcked: func(acks []client.Ack) {
			st.acked.Add(int64(len(acks)))
			st.lastEndpoint.Store(&acks[len(acks)-1].Endpoint)
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
			st.warn("%d messages not acked: %v", len(msgs), err)
		},
	})
	if err != nil {
		return err
	}

	stop, progressDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(progressDone); st.showProgress(stop) }()

	add := func(m client.Message) error {
		if err := b.Add(ctx, m); err != nil {
			return err
		}
		st.sent.Add(1)
		return nil
	}
	readDone := make(chan error, 1)
	go func() { readDone <- readInputs(ctx, f, files, cmd.InOrStdin(), add, st) }()
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
	sent, nAcked, bad := st.sent.Load(), st.acked.Load(), st.bad.Load()
	notAcked := sent - nAcked + bad
	fmt.Fprintf(stdout, "sent %d, acked %d, failed %d, failovers %d\n", sent, nAcked, notAcked, stats.Failovers)
	for _, e := range stats.Endpoints {
		fmt.Fprintf(stdout, "  acked by %s: %d\n", e.Endpoint, e.Acked)
	}

	switch {
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return readErr
	case readErr != nil || closeErr != nil:
		return fmt.Errorf("interrupted: %d of %d messages read were not acked", sent-nAcked, sent)
	case ackErr != nil:
		return ackErr
	case notAcked > 0:
		return fmt.Errorf("%d messages were not acked", notAcked)
	}
	return nil
}

// readInputs hands every message of --value and of the inputs to add. A line that is not a
// message is counted as failed and reported; reading goes on.
func readInputs(ctx context.Context, f sendFlags, files []string, stdin io.Reader, add func(client.Message) error, st *sendState) error {
	for _, v := range f.values {
		if err := add(client.Message{SenderID: f.senderID, Value: v}); err != nil {
			return err
		}
	}
	if len(files) == 0 && len(f.values) > 0 {
		return nil
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := readInput(name, stdin, f.senderID, add, st); err != nil {
			return err
		}
	}
	return nil
}

// readInput reads the file name, or stdin for "-".
func readInput(name string, stdin io.Reader, senderID string, add func(client.Message) error, st *sendState) error {
	if name == "-" {
		return readLines(stdin, "stdin", senderID, add, st)
	}
	file, err := os.Open(name)
	if err != nil {
		return err
	}
	err = readLines(file, name, senderID, add, st)
	if cerr := file.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// inputMessage is one NDJSON input line.
type inputMessage struct {
	SenderID   string            `json:"senderId"`
	Value      string            `json:"value"`
	Properties map[string]string `json:"properties"`
	ID         string            `json:"id"`
}

// readLines reads r line by line as it arrives: plain values of senderID, or NDJSON when
// senderID is empty.
func readLines(r io.Reader, label, senderID string, add func(client.Message) error, st *sendState) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := client.Message{SenderID: senderID, Value: line}
		if senderID == "" {
			var in inputMessage
			if err := json.Unmarshal([]byte(line), &in); err != nil {
				st.bad.Add(1)
				st.warn("%s:%d: not a message: %v", label, n, err)
				continue
			}
			m = client.Message{SenderID: in.SenderID, Value: in.Value, Properties: in.Properties, ID: in.ID}
		}
		if err := add(m); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", label, err)
	}
	return nil
}
