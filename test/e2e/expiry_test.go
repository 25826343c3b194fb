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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// expiryTTL is the ttl of the messages meant to expire: short, so the tests wait little, and
// the rest get an hour.
const expiryTTL = 1 * time.Second

// runBridgehead runs `bridgehead args...` and returns what it printed and how it exited.
func runBridgehead(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = withoutBridgeheadEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// deliveredEnvelopes reads a file sink's envelopes by value (the tests give every message its
// own value).
func deliveredEnvelopes(t *testing.T, path string) map[string]struct {
	CorrelationID string    `json:"correlationId"`
	SenderID      string    `json:"senderId"`
	ReceivedAt    time.Time `json:"receivedAt"`
} {
	t.Helper()
	out := map[string]struct {
		CorrelationID string    `json:"correlationId"`
		SenderID      string    `json:"senderId"`
		ReceivedAt    time.Time `json:"receivedAt"`
	}{}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var env struct {
			CorrelationID string    `json:"correlationId"`
			SenderID      string    `json:"senderId"`
			Value         string    `json:"value"`
			ReceivedAt    time.Time `json:"receivedAt"`
		}
		if json.Unmarshal(line, &env) == nil && env.Value != "" {
			out[env.Value] = struct {
				CorrelationID string    `json:"correlationId"`
				SenderID      string    `json:"senderId"`
				ReceivedAt    time.Time `json:"receivedAt"`
			}{env.CorrelationID, env.SenderID, env.ReceivedAt}
		}
	}
	return out
}

// deadByValue reads the dead segments of the spool at dir: each message's value and its
// segment's reason, and the segments' ids.
func deadByValue(t *testing.T, dir string) (reasons map[string]string, segments []string) {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	entries, err := sp.List(context.Background(), spool.StateDead)
	if err != nil {
		t.Fatal(err)
	}
	reasons = map[string]string{}
	for _, e := range entries {
		body, err := sp.Reason(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		_, reason := spool.SplitReason(body)
		msgs, err := sp.Read(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			reasons[m.Value] = reason
		}
		segments = append(segments, e.ID)
	}
	return reasons, segments
}

// counterSeries returns the value of name{label="…"} by label value, from url's /metrics.
func counterSeries(t *testing.T, url, name, label string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	prefix := name + "{" + label + "=\""
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		value, count, ok := strings.Cut(rest, "\"} ")
		var n float64
		if _, err := fmt.Sscan(count, &n); ok && err == nil {
			out[value] = n
		}
	}
	return out
}

// postWith posts body to url+path with the header pairs given.
func postWith(t *testing.T, url, path, body string, header ...string) {
	t.Helper()
	req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s %s: %d %s", path, body, resp.StatusCode, b)
	}
}

// TestExpiryAcrossForwarderRestart: messages are spooled while the forwarder is down (killed
// with SIGKILL) for longer than the ttl of some of them; the restarted forwarder dead-letters
// those with reason "expired", never delivers them, counts them by sender, and delivers the
// others. The ttl comes from each place a client or operator sets it: the compat route's
// Message-Ttl header, a /v1/messages member, and the principals file (under a member that
// overrides it, and beside a principal without one, which gets --message-ttl). `spool ls`
// and `spool show` say why; `spool purge` removes them.
func TestExpiryAcrossForwarderRestart(t *testing.T) {
	const shortKey, plainKey = "expiry-short-key-0123456789abcdef", "expiry-plain-key-0123456789abcdef"
	dir := t.TempDir()
	spoolDir, sinkPath, authPath := filepath.Join(dir, "spool"), filepath.Join(dir, "delivered.ndjson"), filepath.Join(dir, "auth.yaml")
	if err := os.WriteFile(authPath, []byte(`principals:
  - name: short
    keySha256: `+auth.HashKey(shortKey)+`
    senders: ["*"]
    ttl: 1s
  - name: plain
    keySha256: `+auth.HashKey(plainKey)+`
    senders: ["*"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := io.Discard
	if testing.Verbose() {
		stderr = os.Stderr
	}
	common := []string{"--listen", "127.0.0.1:0", "--spool-dir", spoolDir, "--stamp", "e2e", "--file-path", sinkPath}
	api, err := launchServe(append(common, "--role", "api", "--auth", "required", "--auth-file", authPath, "--message-ttl", "1h"), stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.kill() })
	fwd, err := launchServe(append(common, "--role", "forwarder"), stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fwd.kill() })

	// The forwarder works, then dies.
	postWith(t, api.url, "/v1/messages", `{"senderId":"warm","value":"warm-up"}`, "Authorization", "Bearer "+plainKey)
	eventually(t, 15*time.Second, "the warm-up message delivered", func() bool { _, ok := deliveredEnvelopes(t, sinkPath)["warm-up"]; return ok })
	if err := fwd.kill(); err != nil {
		t.Fatal(err)
	}

	short, long := fmt.Sprint(int(expiryTTL/time.Second)), "3600"
	plain, shortP := []string{"Authorization", "Bearer " + plainKey}, []string{"Authorization", "Bearer " + shortKey}
	postWith(t, api.url, "/ServiceAPI/message", `{"senderId":"compat-exp","value":"compat-expires"}`, append(plain, "Message-Ttl", short)...)
	postWith(t, api.url, "/ServiceAPI/message", `{"senderId":"compat-live","value":"compat-lives"}`, append(plain, "Message-Ttl", long)...)
	postWith(t, api.url, "/v1/messages", `[{"senderId":"batch-exp","value":"batch-expires","ttl":`+short+`},{"senderId":"batch-live","value":"batch-lives","ttl":`+long+`}]`, plain...)
	postWith(t, api.url, "/v1/messages", `[{"senderId":"principal-exp","value":"principal-expires"},{"senderId":"principal-live","value":"principal-member-lives","ttl":`+long+`}]`, shortP...)
	postWith(t, api.url, "/v1/messages", `{"senderId":"plain-live","value":"default-lives"}`, plain...)
	posted := time.Now()
	expires := []string{"compat-expires", "batch-expires", "principal-expires"}
	lives := []string{"compat-lives", "batch-lives", "principal-member-lives", "default-lives"}

	// The forwarder stays down past the short ttl: the passing of time is the point here.
	time.Sleep(time.Until(posted.Add(expiryTTL + 500*time.Millisecond)))
	fwd, err = launchServe(append(common, "--role", "forwarder"), stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fwd.kill() })

	eventually(t, 20*time.Second, "the live messages delivered", func() bool {
		got := deliveredEnvelopes(t, sinkPath)
		for _, v := range lives {
			if _, ok := got[v]; !ok {
				return false
			}
		}
		return true
	})
	var reasons map[string]string
	var segments []string
	eventually(t, 20*time.Second, "the expired messages dead-lettered", func() bool {
		reasons, segments = deadByValue(t, spoolDir)
		return len(reasons) == len(expires)
	})
	delivered := deliveredEnvelopes(t, sinkPath)
	for _, v := range expires {
		if !strings.HasPrefix(reasons[v], "expired: ") || !strings.Contains(reasons[v], "ttl ran out ") {
			t.Errorf("%s: dead-letter reason %q, want expired", v, reasons[v])
		}
		if _, ok := delivered[v]; ok {
			t.Errorf("%s was delivered after its ttl ran out", v)
		}
	}
	eventually(t, 10*time.Second, "the expired messages counted", func() bool {
		return len(counterSeries(t, fwd.url, "bridgehead_forward_expired_messages_total", "sender")) == 3
	})
	if got := counterSeries(t, fwd.url, "bridgehead_forward_expired_messages_total", "sender"); got["compat-exp"] != 1 || got["batch-exp"] != 1 || got["principal-exp"] != 1 {
		t.Errorf("expired by sender %v, want 1 each of compat-exp, batch-exp, principal-exp", got)
	}

	// What an operator sees, and the purge.
	ls, _, err := runBridgehead(t, "spool", "ls", "--state", "dead", "--spool-dir", spoolDir)
	if err != nil || strings.Count(ls, "reason: expired: ") != len(segments) {
		t.Errorf("spool ls --state dead (%v):\n%s\nwant %d segments with reason expired", err, ls, len(segments))
	}
	_, showErr, err := runBridgehead(t, "spool", "show", segments[0], "--spool-dir", spoolDir)
	if err != nil || !strings.Contains(showErr, "reason: expired: ") {
		t.Errorf("spool show %s (%v): summary %q, want the reason expired", segments[0], err, showErr)
	}
	out, _, err := runBridgehead(t, "spool", "purge", "--state", "dead", "--older-than", "1ms", "--spool-dir", spoolDir)
	if want := fmt.Sprintf("purged %d dead segments", len(segments)); err != nil || !strings.Contains(out, want) {
		t.Errorf("spool purge: %q (%v), want %q", out, err, want)
	}
	if reasons, _ := deadByValue(t, spoolDir); len(reasons) != 0 {
		t.Errorf("after the purge, dead/ still holds %v", reasons)
	}
}

// TestExpiryAcrossStamps: `bridgehead send` tries stamp A, which hangs (SIGSTOP: it accepts
// connections and answers nothing), gives up after --timeout and fails over to stamp B. The
// request carries Message-Age, so B counts its messages as received at the first try: the one
// whose ttl ran out during the failover is dead-lettered as expired, never delivered; the
// other is delivered with the first try's receivedAt.
func TestExpiryAcrossStamps(t *testing.T) {
	a := startServe(t)
	bDir, bSink := filepath.Join(t.TempDir(), "spool"), filepath.Join(t.TempDir(), "delivered.ndjson")
	p, err := launchServe([]string{"--listen", "127.0.0.1:0", "--spool-dir", bDir, "--stamp", "b", "--file-path", bSink}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.kill() })
	a.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })

	const timeout = 2 * time.Second
	in := filepath.Join(t.TempDir(), "in.ndjson")
	lines := fmt.Sprintf("{\"senderId\":\"x\",\"value\":\"expires-in-failover\",\"ttl\":%d}\n{\"senderId\":\"x\",\"value\":\"outlives-failover\",\"ttl\":3600}\n",
		int(expiryTTL/time.Second))
	if err := os.WriteFile(in, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	out, errOut, err := runBridgehead(t, "send", "--url", a.url, "--url", p.url, "--timeout", timeout.String(), "--connect-timeout", "1s", "--batch-window", "50ms", in)
	if err != nil || !strings.Contains(out, "acked 2") || !strings.Contains(errOut, "failover") {
		t.Fatalf("send (%v): stdout %q stderr %q, want 2 acked after a failover", err, out, errOut)
	}

	eventually(t, 20*time.Second, "the live message delivered by B", func() bool {
		_, ok := deliveredEnvelopes(t, bSink)["outlives-failover"]
		return ok
	})
	var reasons map[string]string
	eventually(t, 20*time.Second, "the expired message dead-lettered by B", func() bool {
		reasons, _ = deadByValue(t, bDir)
		return len(reasons) == 1
	})
	if r := reasons["expires-in-failover"]; !strings.HasPrefix(r, "expired: 1 message, ttl ran out at ") {
		t.Errorf("B's dead letter: %v, want expires-in-failover with reason expired", reasons)
	}
	got := deliveredEnvelopes(t, bSink)
	if _, ok := got["expires-in-failover"]; ok {
		t.Error("the message whose ttl ran out during the failover was delivered")
	}
	// B took the request at least timeout after the first try; receivedAt is the first try's
	// (to the whole second the header carries).
	if at := got["outlives-failover"].ReceivedAt; at.Before(first.Add(-time.Second)) || !at.Before(first.Add(time.Second)) {
		t.Errorf("delivered receivedAt %v, want the first try's (%v), not B's (%v or later)", at, first, first.Add(timeout))
	}
	eventually(t, 10*time.Second, "B counts the expired message", func() bool {
		return counterSeries(t, p.url, "bridgehead_forward_expired_messages_total", "sender")["x"] == 1
	})
}
