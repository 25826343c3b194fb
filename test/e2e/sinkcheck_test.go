package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

// A wrong broker shows at start, before any traffic: serve checks the sink in the background,
// logs exactly what failed, and /v1/status has the breaker open with the cause.
func TestWrongBrokerShowsAtStart(t *testing.T) {
	addr := sinktest.RefusedAddr(t)
	logs := &logbuf.Buffer{}
	s := startServeLogging(t, logs, "--sink", "kafka", "--kafka-brokers", addr, "--kafka-topic", "readings")
	want := "dial tcp " + addr + ": connect: connection refused"
	type status struct {
		Forward struct {
			Breaker   string `json:"breaker"`
			LastError string `json:"lastError"`
			SinkCheck *struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			} `json:"sinkCheck"`
		} `json:"forward"`
	}
	var st status
	eventually(t, 10*time.Second, "/v1/status shows the sink check", func() bool {
		resp, err := http.Get(s.url + "/v1/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = status{}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Forward.SinkCheck != nil
	})
	f := st.Forward
	if f.SinkCheck.OK || !strings.Contains(f.SinkCheck.Error, want) {
		t.Errorf("sinkCheck %+v, want failed with %q", *f.SinkCheck, want)
	}
	if f.Breaker != "open" || !strings.Contains(f.LastError, want) {
		t.Errorf("breaker %q, last error %q; want open with %q", f.Breaker, f.LastError, want)
	}
	eventually(t, 5*time.Second, "the log says what failed", func() bool {
		return strings.Contains(logs.String(), "sink check at start failed") && strings.Contains(logs.String(), want)
	})
}

// doctor, the binary, beside a running stamp: it passes against the stamp's own spool with the
// stamp as its peer (real HTTP), and fails, exit status 1, naming the refused connection, when
// its sink is a broker where nothing listens. Its probes leave the running stamp's spool as
// they found it, and the stamp keeps serving.
func TestDoctorBesideARunningStamp(t *testing.T) {
	s := startServe(t)
	doctor := func(args ...string) (string, int) {
		cmd := exec.Command(binary, append([]string{"doctor", "--spool-dir", s.dir, "--peer-url", s.url, "--timeout", "5s"}, args...)...)
		cmd.Env = append(withoutBridgeheadEnv(), "GORACE=atexit_sleep_ms=0")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("doctor: %v", err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := doctor("--file-path", filepath.Join(t.TempDir(), "delivered.ndjson"))
	if code != 0 || !strings.Contains(out, `stamp "e2e"`) {
		t.Fatalf("doctor beside a healthy stamp: exit %d, want 0 with the peer row naming stamp e2e\n%s", code, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if !strings.Contains(l, "PASS") && !strings.Contains(l, "SKIP") {
			t.Errorf("beside a healthy stamp: %s", l)
		}
	}
	addr := sinktest.RefusedAddr(t)
	out, code = doctor("--sink", "kafka", "--kafka-brokers", addr, "--kafka-topic", "readings")
	if code != 1 || !strings.Contains(out, "dial tcp "+addr+": connect: connection refused") {
		t.Fatalf("doctor with a refused broker: exit %d, want 1 naming the refused connection\n%s", code, out)
	}
	t.Logf("doctor with a refused broker:\n%s", out)
	if c := s.get(t, "/readyz"); c != 200 {
		t.Fatalf("/readyz after doctor ran: %d, want 200", c)
	}
	for _, d := range []string{"tmp", "hb"} {
		entries, err := os.ReadDir(filepath.Join(s.dir, d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.Contains(e.Name(), "probe") {
				t.Errorf("doctor left %s/%s", d, e.Name())
			}
		}
	}
}
