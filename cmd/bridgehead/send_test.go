package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/spf13/cobra"
)

// received is one message as a sendStamp got it.
type received struct {
	SenderID, Value, ID string
	Properties          map[string]string
	Priority            *int
}

// sendStamp imitates a stamp's POST /v1/messages (JSON array) and GET /readyz as docs/api.md
// describes them: all or nothing, 400 invalid-message naming each bad message, correlationIds
// derived from senderId and id. Its fields are guarded by mu.
type sendStamp struct {
	*httptest.Server
	apiKey string // required as a bearer token when set

	mu   sync.Mutex
	got  []received
	acks []string // correlationIds acked, in order
}

func mustSendStamp(t *testing.T, apiKey string) *sendStamp {
	t.Helper()
	s := &sendStamp{apiKey: apiKey}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *sendStamp) received() ([]received, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got), slices.Clone(s.acks)
}

func sendProblem(w http.ResponseWriter, status int, typ string, errs []client.FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://bridgehead.dev/problems/" + typ, "title": typ, "status": status,
		"detail": "nothing was accepted", "errors": errs, "success": false,
	})
}

func (s *sendStamp) serve(w http.ResponseWriter, r *http.Request) {
	if s.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+s.apiKey {
		sendProblem(w, http.StatusUnauthorized, "unauthorized", nil)
		return
	}
	switch {
	case r.URL.Path == "/readyz" && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, `{"status":"ready"}`)
		return
	case r.URL.Path != "/v1/messages" || r.Method != http.MethodPost:
		sendProblem(w, http.StatusNotFound, "not-found", nil)
		return
	}
	var in []struct {
		SenderID   string            `json:"senderId"`
		Value      string            `json:"value"`
		Properties map[string]string `json:"properties"`
		ID         string            `json:"id"`
		Priority   *int              `json:"priority"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in) == 0 {
		sendProblem(w, http.StatusBadRequest, "invalid-json", nil)
		return
	}
	var errs []client.FieldError
	type ack struct {
		CorrelationID string `json:"correlationId"`
		SenderID      string `json:"senderId"`
	}
	out := struct {
		Count    int   `json:"count"`
		Messages []ack `json:"messages"`
		Success  bool  `json:"success"`
	}{Count: len(in), Success: true}
	for i, m := range in {
		if m.SenderID == "" {
			errs = append(errs, client.FieldError{Index: i, Field: "senderId", Detail: "required"})
		}
		if m.Value == "" {
			errs = append(errs, client.FieldError{Index: i, Field: "value", Detail: "required"})
		}
		if m.ID == "" {
			errs = append(errs, client.FieldError{Index: i, Field: "id", Detail: "this test wants every id set"})
		}
		if m.Value == refusedByStamp {
			errs = append(errs, client.FieldError{Index: i, Field: "value", Detail: "this stamp refuses this value"})
		}
		out.Messages = append(out.Messages, ack{CorrelationID: client.CorrelationID(m.SenderID, m.ID), SenderID: m.SenderID})
	}
	if len(errs) > 0 {
		sendProblem(w, http.StatusBadRequest, "invalid-message", errs)
		return
	}
	s.mu.Lock()
	for i, m := range in {
		s.got = append(s.got, received{SenderID: m.SenderID, Value: m.Value, ID: m.ID, Properties: m.Properties, Priority: m.Priority})
		s.acks = append(s.acks, out.Messages[i].CorrelationID)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(out)
}

// refusedByStamp is a value a sendStamp refuses by name, though send's own check passes it: a
// rule of one stamp's configuration (a smaller --max-message-bytes, a key's senderIds).
const refusedByStamp = "refused-by-the-stamp"

func values(got []received) []string {
	out := make([]string, len(got))
	for i, m := range got {
		out[i] = m.SenderID + "/" + m.Value
	}
	return out
}

func TestSendNDJSONFromStdin(t *testing.T) {
	s := mustSendStamp(t, "")
	in := `{"senderId":"plant-a","value":"21.5","id":"reading-42","properties":{"unit":"C"},"priority":0}` + "\n\n" +
		`{"senderId":"plant-b","value":"7"}` + "\n"
	stdout, stderr, err := runCLIStdin(t, strings.NewReader(in), "send", "--url", s.URL, "--batch-window", "5ms")
	if err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
	}
	got, acks := s.received()
	if want := []string{"plant-a/21.5", "plant-b/7"}; !slices.Equal(values(got), want) {
		t.Fatalf("got %v, want %v", values(got), want)
	}
	if got[0].Properties["unit"] != "C" || got[0].ID != "reading-42" {
		t.Errorf("got %+v, want the id and properties of the input", got[0])
	}
	if got[0].Priority == nil || *got[0].Priority != 0 || got[1].Priority != nil {
		t.Errorf("priorities %v and %v, want the first line's 0 and none for the second", got[0].Priority, got[1].Priority)
	}
	if want := client.CorrelationID("plant-a", "reading-42"); acks[0] != want {
		t.Errorf("got %v, want %v", acks[0], want)
	}
	if want := "sent 2, acked 2, failed 0, rejected 0, failovers 0\n  acked by " + s.URL + ": 2\n"; stdout != want {
		t.Errorf("got %q, want %q", stdout, want)
	}
}

func TestSendPlainLinesFromFiles(t *testing.T) {
	s := mustSendStamp(t, "")
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	writeTestFile(t, f1, "one\r\n\ntwo\n", 0o644)
	writeTestFile(t, f2, `{"not":"json parsed"}`, 0o644)
	_, stderr, err := runCLIStdin(t, strings.NewReader("stdin is not read"), "send", "--url", s.URL,
		"--sender-id", "plant-a", "--batch-window", "5ms", f1, f2)
	if err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
	}
	got, _ := s.received()
	if want := []string{"plant-a/one", "plant-a/two", `plant-a/{"not":"json parsed"}`}; !slices.Equal(values(got), want) {
		t.Errorf("got %v, want %v", values(got), want)
	}
}

func TestSendValuesToAckedFile(t *testing.T) {
	s := mustSendStamp(t, "k3y")
	dir := t.TempDir()
	keyFile, ackedFile := filepath.Join(dir, "key"), filepath.Join(dir, "acked.txt")
	writeTestFile(t, keyFile, "k3y\n", 0o600)
	writeTestFile(t, ackedFile, "earlier\n", 0o644)
	t.Setenv("BRIDGEHEAD_URL", s.URL)
	_, stderr, err := runCLIStdin(t, strings.NewReader("not read\n"), "send", "--sender-id", "plant-a",
		"--value", "1,5", "--value", "2", "--acked-file", ackedFile, "--api-key-file", keyFile)
	if err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
	}
	got, acks := s.received()
	if want := []string{"plant-a/1,5", "plant-a/2"}; !slices.Equal(values(got), want) {
		t.Errorf("got %v, want %v", values(got), want)
	}
	data, err := os.ReadFile(ackedFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "earlier\n" + strings.Join(acks, "\n") + "\n"; string(data) != want {
		t.Errorf("acked file: got %q, want %q", data, want)
	}
}

// TestSendAPIKeyFile checks where the key comes from: BRIDGEHEAD_API_KEY_FILE (which is also
// --api-key-file's variable) alone, and either flag given beside it, which wins.
func TestSendAPIKeyFile(t *testing.T) {
	s := mustSendStamp(t, "k3y")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	writeTestFile(t, good, "k3y\n", 0o600)
	writeTestFile(t, bad, "wrong\n", 0o600)
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"env", good, nil},
		{"--api-key-file beats env", bad, []string{"--api-key-file", good}},
		{"--api-key beats env", bad, []string{"--api-key", "k3y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BRIDGEHEAD_API_KEY_FILE", tc.env)
			args := append([]string{"send", "--url", s.URL, "--sender-id", "plant-a", "--value", "v", "--max-attempts", "1"}, tc.args...)
			stdout, stderr, err := runCLIStdin(t, strings.NewReader(""), args...)
			if err != nil {
				t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
			}
			if !strings.HasPrefix(stdout, "sent 1, acked 1, failed 0") {
				t.Errorf("got %q, want 1 acked", stdout)
			}
		})
	}
}

// TestSendFailsOver checks that the stamps of --url, repeated or comma-separated, are a failover
// list, and that each failover is said on stderr with its cause.
func TestSendFailsOver(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	for _, tc := range []struct {
		name  string
		urls  func(s, full string) []string
		first string // "refused" or "full"
		cause string
	}{
		{"comma-separated", func(s, _ string) []string { return []string{"--url", downURL + "," + s} }, "refused", "connection refused"},
		{"repeated", func(s, _ string) []string { return []string{"--url", downURL, "--url", s} }, "refused", "connection refused"},
		{"repeated, spool full", func(s, full string) []string { return []string{"--url", full, "--url", s} }, "full", "503 spool-full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSendStamp(t, "")
			full := mustFailingStamp(t, s, 1<<30)
			firstURL := downURL
			if tc.first == "full" {
				firstURL = full.URL
			}
			args := append([]string{"send", "--sender-id", "plant-a", "--batch-window", "5ms"}, tc.urls(s.URL, full.URL)...)
			stdout, stderr, err := runCLIStdin(t, strings.NewReader("a\nb\n"), args...)
			if err != nil {
				t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
			}
			if got, _ := s.received(); len(got) != 2 {
				t.Errorf("second stamp got %d messages, want 2", len(got))
			}
			want := "sent 2, acked 2, failed 0, rejected 0, failovers 1\n  acked by " + firstURL + ": 0\n  acked by " + s.URL + ": 2\n"
			if stdout != want {
				t.Errorf("got %q, want %q", stdout, want)
			}
			if want := "send: failover: " + firstURL + " failed (" + tc.cause + "); sending to " + s.URL + "\n"; !strings.Contains(stderr, want) {
				t.Errorf("stderr %q does not say %q", stderr, want)
			}
		})
	}
}

// TestSendURLList checks how --url values and BRIDGEHEAD_URL make the failover list.
func TestSendURLList(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want []string
	}{
		{nil, "", []string{"http://127.0.0.1:8080"}},
		{[]string{"--url", "http://a"}, "", []string{"http://a"}},
		{[]string{"--url", "http://a", "--url", "http://b"}, "", []string{"http://a", "http://b"}},
		{[]string{"--url", "http://a, http://b", "--url", "http://c"}, "", []string{"http://a", "http://b", "http://c"}},
		{nil, "http://a,http://b", []string{"http://a", "http://b"}},
		{[]string{"--url", "http://c"}, "http://a,http://b", []string{"http://c"}},
	} {
		t.Run(strings.Join(tc.args, " ")+" env "+tc.env, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("BRIDGEHEAD_URL", tc.env)
			}
			var got []string
			cmd := newSendCmd()
			cmd.RunE = func(cmd *cobra.Command, _ []string) error {
				f := cmd.Flags()
				if err := applyEnv(f); err != nil {
					return err
				}
				urls, _ := f.GetStringArray("url")
				var fl sendFlags
				fl.urls, fl.window, fl.timeout, fl.connectTimeout, fl.maxMessageBytes = urls, time.Second, time.Second, time.Second, 1
				cfg, err := fl.clientConfig(cmd)
				got = cfg.Endpoints
				return err
			}
			cmd.SetArgs(tc.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got endpoints %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSendRejectsBadLines checks that lines a stamp would refuse are not sent, that one bad line
// does not cost the good ones, and that each rejected line is named by its line number.
func TestSendRejectsBadLines(t *testing.T) {
	s := mustSendStamp(t, "")
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, `{"senderId":"plant-a","value":"%d"}`+"\n", i)
		if i == 499 {
			in.WriteString(`{"senderId":"plant a","value":"bad"}` + "\n") // line 501
		}
	}
	in.WriteString(`{"senderId":"plant-a","value":""}` + "\n" + `not json` + "\n") // lines 1002, 1003
	rejects := filepath.Join(t.TempDir(), "rejects.ndjson")
	stdout, stderr, err := runCLIStdin(t, strings.NewReader(in.String()), "send", "--url", s.URL,
		"--batch-window", "5ms", "--rejects-file", rejects)
	if err == nil || !strings.Contains(err.Error(), "3 lines were rejected (stdin:501, stdin:1002, stdin:1003)") {
		t.Fatalf("got %v, want an error naming the 3 rejected lines", err)
	}
	if got, _ := s.received(); len(got) != 1000 {
		t.Errorf("the stamp got %d messages, want 1000", len(got))
	}
	if want := "sent 1000, acked 1000, failed 0, rejected 3, failovers 0\n"; !strings.HasPrefix(stdout, want) {
		t.Errorf("summary: got %q, want it to start %q", stdout, want)
	}
	if !strings.Contains(stdout, "  rejected: stdin:501, stdin:1002, stdin:1003\n") {
		t.Errorf("summary %q does not name the rejected lines", stdout)
	}
	for _, want := range []string{
		"send: stdin:501: rejected: senderId must be 1-128 characters",
		"send: stdin:1002: rejected: value must not be empty",
		"send: stdin:1003: rejected: invalid JSON",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}
	recs := readRejects(t, rejects)
	if len(recs) != 3 || recs[0].Line != 501 || recs[0].Input != "stdin" || recs[0].Text != `{"senderId":"plant a","value":"bad"}` ||
		len(recs[0].Errors) != 1 || recs[0].Errors[0].Field != "senderId" || recs[0].By != "" || recs[2].Line != 1003 {
		t.Errorf("rejects file: got %+v, want lines 501, 1002 and 1003 with their text and problems", recs)
	}
}

// TestSendResendsWhatTheStampDidNotName checks that when a stamp refuses a request naming some
// of its messages, the others are sent again, and the refused ones are reported by line.
func TestSendResendsWhatTheStampDidNotName(t *testing.T) {
	s := mustSendStamp(t, "")
	rejects := filepath.Join(t.TempDir(), "rejects.ndjson")
	in := "a\nb\n" + refusedByStamp + "\nc\n"
	stdout, stderr, err := runCLIStdin(t, strings.NewReader(in), "send", "--url", s.URL, "--sender-id", "plant-a",
		"--batch-window", "1h", "--rejects-file", rejects)
	if err == nil || !strings.Contains(err.Error(), "1 lines were rejected (stdin:3)") {
		t.Fatalf("got %v, want an error naming line 3", err)
	}
	if got, _ := s.received(); !slices.Equal(values(got), []string{"plant-a/a", "plant-a/b", "plant-a/c"}) {
		t.Errorf("the stamp got %v, want a, b and c", values(got))
	}
	if want := "sent 4, acked 3, failed 0, rejected 1, failovers 0\n"; !strings.HasPrefix(stdout, want) {
		t.Errorf("summary: got %q, want it to start %q", stdout, want)
	}
	if want := "send: stdin:3: rejected by " + s.URL + ": this stamp refuses this value"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not say %q", stderr, want)
	}
	recs := readRejects(t, rejects)
	if len(recs) != 1 || recs[0].Line != 3 || recs[0].By != s.URL || !strings.Contains(recs[0].Text, `"value":"`+refusedByStamp+`"`) ||
		!strings.Contains(recs[0].Text, `"id":"`) {
		t.Errorf("rejects file: got %+v, want line 3 refused by the stamp, as sent with its id", recs)
	}
}

func readRejects(t *testing.T, path string) []rejectRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rejectRecord
	for line := range strings.Lines(string(b)) {
		var r rejectRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("rejects file line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestSendBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--batch-window", "0s"}, "--batch-window"},
		{[]string{"--url", "ftp://x"}, "--url"},
		{[]string{"--url", " , "}, "--url"},
		{[]string{"--value", "v"}, "--value needs --sender-id"},
		{[]string{"--api-key", "a", "--api-key-file", "f"}, "give one"},
		{[]string{"--ca-file", "/nonexistent"}, "--ca-file"},
		{[]string{"--max-attempts", "-2"}, "--max-attempts"},
		{[]string{"--sender-id", "plant a"}, `--sender-id "plant a": must be`},
		{[]string{"--max-message-bytes", "0"}, "--max-message-bytes"},
		{[]string{"--connect-timeout", "0s"}, "--connect-timeout"},
		{[]string{"--connect-timeout", "11s"}, "--connect-timeout 11s: must be positive and at most --timeout 10s"},
		{[]string{"--no-such-flag"}, "unknown flag"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLIStdin(t, strings.NewReader(""), append([]string{"send"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// failingStamp answers 503 (spool full) to the first failures POSTs and is s for the rest;
// posts counts the POSTs it got.
type failingStamp struct {
	*httptest.Server
	posts atomic.Int64
}

func mustFailingStamp(t *testing.T, s *sendStamp, failures int64) *failingStamp {
	t.Helper()
	return mustFailingStampWith(t, s, failures, http.StatusServiceUnavailable, "spool-full")
}

// mustFailingStampWith is mustFailingStamp answering status with problem type typ.
func mustFailingStampWith(t *testing.T, s *sendStamp, failures int64, status int, typ string) *failingStamp {
	t.Helper()
	f := &failingStamp{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && f.posts.Add(1) <= failures {
			sendProblem(w, status, typ, nil)
			return
		}
		s.serve(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// TestSendMaxAttempts checks that --max-attempts bounds the tries of a request across the
// stamps, and that -1 keeps trying past the default of 3 per stamp.
func TestSendMaxAttempts(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		first, second := mustFailingStamp(t, mustSendStamp(t, ""), 1<<30), mustFailingStamp(t, mustSendStamp(t, ""), 1<<30)
		stdout, stderr, err := runCLIStdin(t, strings.NewReader("a\n"), "send", "--url", first.URL+","+second.URL,
			"--sender-id", "plant-a", "--batch-window", "5ms", "--max-attempts", "1")
		if err == nil || !strings.Contains(err.Error(), "1 messages were not acked") {
			t.Fatalf("got %v, want an error saying 1 message was not acked", err)
		}
		if got := first.posts.Load() + second.posts.Load(); got != 1 {
			t.Errorf("got %d tries, want 1", got)
		}
		if !strings.HasPrefix(stdout, "sent 1, acked 0, failed 1,") || !strings.Contains(stderr, "1 attempts failed") {
			t.Errorf("got stdout %q, stderr %q; want 1 failed after 1 attempt", stdout, stderr)
		}
	})
	t.Run("until acked", func(t *testing.T) {
		s := mustSendStamp(t, "")
		f := mustFailingStamp(t, s, 3) // the default, 3 tries for one stamp, would give up
		stdout, stderr, err := runCLIStdin(t, strings.NewReader("a\n"), "send", "--url", f.URL,
			"--sender-id", "plant-a", "--batch-window", "5ms", "--max-attempts", "-1")
		if err != nil {
			t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
		}
		if got := f.posts.Load(); got != 4 {
			t.Errorf("got %d tries, want 4", got)
		}
		if got, _ := s.received(); len(got) != 1 || !strings.HasPrefix(stdout, "sent 1, acked 1, failed 0") {
			t.Errorf("got %d messages and %q, want 1 acked", len(got), stdout)
		}
	})
}

// TestSendSaysItIsBack checks that traffic returning to the preferred stamp is said on stderr.
func TestSendSaysItIsBack(t *testing.T) {
	s := mustSendStamp(t, "")
	preferred := mustFailingStamp(t, s, 1) // 503 once, then it takes messages
	other := mustSendStamp(t, "")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(t.Context(), []string{"send", "--url", preferred.URL, "--url", other.URL, "--sender-id", "plant-a",
			"--batch-window", "5ms"}, pr, &stdout, &stderr)
	}()
	write := func(line string) {
		t.Helper()
		if _, err := io.WriteString(pw, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	// The first line goes to the other stamp, after the 503. The prober finds the preferred stamp
	// ready after its backoff (0.5 s at most) and a probe interval (1 s); lines keep coming
	// meanwhile, until one reaches the preferred stamp again.
	write("a")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if got, _ := s.received(); len(got) > 0 {
			break
		}
		if got, _ := other.received(); len(got) > 0 {
			write("b")
		}
		select {
		case <-deadline:
			t.Fatal("no line reached the preferred stamp again")
		case <-tick.C:
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr.String())
	}
	if want := "send: back to " + preferred.URL + ": it answers again\n"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not say %q", stderr.String(), want)
	}
}

// TestSendRetriesA408 checks that a 408 (the stamp's read timeout cut the upload off) is tried
// again, not counted as a failed message.
func TestSendRetriesA408(t *testing.T) {
	s := mustSendStamp(t, "")
	f := mustFailingStampWith(t, s, 1, http.StatusRequestTimeout, "request-timeout")
	stdout, stderr, err := runCLIStdin(t, strings.NewReader("a\n"), "send", "--url", f.URL, "--sender-id", "plant-a",
		"--batch-window", "5ms")
	if err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr)
	}
	if got := f.posts.Load(); got != 2 {
		t.Errorf("got %d tries, want 2 (408, then 200)", got)
	}
	if got, _ := s.received(); len(got) != 1 || !strings.HasPrefix(stdout, "sent 1, acked 1, failed 0") {
		t.Errorf("got %d messages and %q, want 1 acked", len(got), stdout)
	}
}

// TestSendStreams checks that a line is sent while its input is still open.
func TestSendStreams(t *testing.T) {
	s := mustSendStamp(t, "")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(t.Context(), []string{"send", "--url", s.URL, "--sender-id", "plant-a", "--batch-window", "10ms"},
			pr, &stdout, &stderr)
	}()
	if _, err := io.WriteString(pw, "first\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got, _ := s.received(); len(got) == 0; got, _ = s.received() {
		if time.Now().After(deadline) {
			t.Fatal("the line did not reach the stamp while the input was open")
		}
		select {
		case err := <-done:
			t.Fatalf("send ended before its input: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("send: got %v, want nil (stderr %q)", err, stderr.String())
	}
	if want := "sent 1, acked 1, failed 0"; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("got %q, want %q", stdout.String(), want)
	}
}

func TestSendProgressLine(t *testing.T) {
	for _, tc := range []struct {
		tty  bool
		want string
	}{
		{false, "sent 3, acked 2, failed 1, 2 msg/s, via http://onprem\n"},
		{true, "\r\x1b[Ksent 3, acked 2, failed 1, 2 msg/s, via http://onprem"},
	} {
		var buf bytes.Buffer
		st := &sendState{stderr: &buf, tty: tc.tty}
		st.sent.Store(3)
		st.acked.Store(2)
		st.failed.Store(1)
		ep := "http://onprem"
		st.lastEndpoint.Store(&ep)
		st.progress(2)
		if buf.String() != tc.want {
			t.Errorf("tty %v: got %q, want %q", tc.tty, buf.String(), tc.want)
		}
	}
}

// writeTestFile writes content to path with perm, failing t on error.
func writeTestFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}
