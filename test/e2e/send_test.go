package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
)

// runSendCmd runs `bridgehead send args...` with stdin and returns what it printed and how it
// exited.
func runSendCmd(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"send"}, args...)...)
	cmd.Env = withoutBridgeheadEnv()
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// TestSendChecksLikeTheStamp posts each line, alone, to a real stamp and checks it with the rules
// `send` applies before sending (internal/message): both must take or refuse it, naming the same
// fields. This is what lets send skip a bad line without sending it.
func TestSendChecksLikeTheStamp(t *testing.T) {
	s := startServe(t, "--role", "api", "--max-message-bytes", "64")
	lim := message.Limits{MaxBytes: 64}
	for _, line := range []string{
		`{"senderId":"plant-a","value":"21.5"}`,
		`{"SenderId":"plant-a","VALUE":"21.5","properties":{"u":"C"},"id":"r-1"}`,
		`{"senderId":"plant a","value":"21.5"}`,
		`{"senderId":"plänt","value":"21.5"}`,
		`{"senderId":"` + strings.Repeat("s", 129) + `","value":"1"}`,
		`{"value":"21.5"}`,
		`{"senderId":"a"}`,
		`{"senderId":"a","value":""}`,
		`{"senderId":"a","value":"` + strings.Repeat("v", 65) + `"}`,
		`{"senderId":"a","value":"` + strings.Repeat("v", 64) + `"}`,
		`{"senderId":"a","value":"1","properties":{"k":"` + strings.Repeat("v", 63) + `"}}`,
		`{"senderId":"a","value":"1","properties":{"":"x"}}`,
		`{"senderId":"a","value":"1","properties":{` + manyProperties(33) + `}}`,
		`{"senderId":"a","value":"1","id":""}`,
		`{"senderId":"a","value":"1","id":"` + strings.Repeat("k", 257) + `"}`,
		`{"senderId":"a","value":"1","id":"tab\t"}`,
		`{"senderId":"","value":"","id":"\u00e9"}`,
		`{"senderId":"a","value":1}`,
		`{"senderId":"a","value":"1","properties":{"k":1}}`,
		`{"senderId":"a","value":"1"} x`,
		`{"senderId":"a","value":"1"`,
		`[{"senderId":"a","value":"1"}]`,
		`"a"`,
		"{\"senderId\":\"a\",\"value\":\"\xff\"}",
	} {
		t.Run(line[:min(len(line), 40)], func(t *testing.T) {
			code, _, body, err := s.postType(context.Background(), "/v1/messages", "application/x-ndjson", line)
			if err != nil {
				t.Fatal(err)
			}
			var p struct {
				Errors []struct {
					Field string `json:"field"`
				} `json:"errors"`
			}
			var server []string
			switch code {
			case http.StatusOK:
			case http.StatusBadRequest:
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatalf("400 %s: %v", body, err)
				}
				server = []string{}
				for _, e := range p.Errors {
					server = append(server, e.Field)
				}
			default:
				t.Fatalf("the stamp answered %d %s, want 200 or 400", code, body)
			}
			_, errs := lim.Parse([]byte(line))
			var local []string
			if errs != nil {
				local = []string{}
				for _, e := range errs {
					local = append(local, e.Field)
				}
			}
			slices.Sort(server)
			slices.Sort(local)
			if (server == nil) != (local == nil) || !slices.Equal(server, local) {
				t.Errorf("the stamp: %d with fields %q (%s); send's check: fields %q (%v)", code, server, body, local, errs)
			}
		})
	}
}

func manyProperties(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf(`"p%d":"v"`, i)
	}
	return strings.Join(ps, ",")
}

// TestSendSkipsBadLines sends 1,000 good NDJSON lines, one line that send's own check refuses
// (senderId "plant a") and one that only the stamp refuses (over its --max-message-bytes, which
// send does not know), through the real binary to a real stamp. Before, one bad line failed its
// whole request: "acked 1, failed 1000". Now every good line is acked and in the spool, and the
// two bad ones are reported by line number, on stderr and in the rejects file.
func TestSendSkipsBadLines(t *testing.T) {
	s := startServe(t, "--role", "api", "--max-message-bytes", "1KiB")
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, `{"senderId":"plant-a","value":"reading %d"}`+"\n", i)
		switch i {
		case 499:
			in.WriteString(`{"senderId":"plant a","value":"bad"}` + "\n") // line 501
		case 799:
			fmt.Fprintf(&in, `{"senderId":"plant-a","value":"%s"}`+"\n", strings.Repeat("x", 2000)) // line 802
		}
	}
	dir := t.TempDir()
	acked, rejects := filepath.Join(dir, "acked.txt"), filepath.Join(dir, "rejects.ndjson")
	stdout, stderr, err := runSendCmd(t, strings.NewReader(in.String()), "--url", s.url, "--acked-file", acked,
		"--rejects-file", rejects)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("send: got %v, want exit status 1 (stderr %q)", err, stderr)
	}
	if want := "sent 1001, acked 1000, failed 0, rejected 2, failovers 0\n"; !strings.HasPrefix(stdout, want) {
		t.Errorf("summary: got %q, want it to start %q", stdout, want)
	}
	if !strings.Contains(stdout, "  rejected: stdin:501, stdin:802\n") {
		t.Errorf("summary %q does not name lines 501 and 802", stdout)
	}
	for _, want := range []string{
		"send: stdin:501: rejected: senderId must be 1-128 characters",
		"send: stdin:802: rejected by " + s.url + ": value and properties are 2000 bytes, over the limit of 1024",
		"2 lines were rejected (stdin:501, stdin:802)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}
	b, err := os.ReadFile(rejects)
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for l := range strings.Lines(string(b)) {
		var r struct {
			Line int    `json:"line"`
			By   string `json:"by"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("rejects file line %q: %v", l, err)
		}
		lines = append(lines, r.Line)
	}
	if !slices.Equal(lines, []int{501, 802}) {
		t.Errorf("rejects file names lines %v, want [501 802]", lines)
	}
	ids, err := os.ReadFile(acked)
	if err != nil {
		t.Fatal(err)
	}
	inSpool := spooled(t, s.dir)
	var n int
	for l := range strings.Lines(string(ids)) {
		n++
		if id, err := uuid.Parse(strings.TrimSpace(l)); err != nil || !inSpool[id] {
			t.Errorf("acked %q is not in the spool (%v)", l, err)
		}
	}
	if n != 1000 || len(inSpool) != 1000 {
		t.Errorf("got %d acked ids and %d messages in the spool, want 1000 and 1000", n, len(inSpool))
	}
}
