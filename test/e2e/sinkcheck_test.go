package e2e

import (
	"encoding/json"
	"net/http"
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
