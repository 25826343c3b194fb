package ops_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
)

func TestStatusCountsAndForwardStatus(t *testing.T) {
	f := apitest.NewStamp(t, apitest.Config{Ops: ops.Config{Forwarder: fakeForwarder{forward.Status{Sink: "kafka"}}}})
	f.Do(t, "POST", "/v1/messages", "application/json", `[{"senderId":"01","value":"a"},{"senderId":"01","value":"b"}]`)
	r := f.Do(t, "GET", "/v1/status", "", "")
	var st ops.Status
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ingest.AcceptedTotal != 2 || st.Forward == nil || st.Forward.Sink != "kafka" {
		t.Errorf("status %s: want acceptedTotal 2 and the forwarder's status", r.Body)
	}
}

func TestPeerStatusRelayed(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" || r.Header.Get("X-Api-Key") != "peer-key" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"stamp":"cloud","ready":true}`))
	}))
	t.Cleanup(peer.Close)
	f := apitest.NewStamp(t, apitest.Config{Ops: ops.Config{PeerURL: peer.URL + "/", PeerAPIKey: "peer-key"}})
	r := f.Do(t, "GET", "/v1/peer/status", "", "")
	if r.Status != 200 || string(r.Body) != `{"stamp":"cloud","ready":true}` {
		t.Fatalf("peer status: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("the relayed body is served with %v; want JSON, nosniff", r.Header)
	}
	if r := f.Do(t, "GET", "/v1/status", "", ""); !strings.Contains(string(r.Body), `"peerUrl":"`+peer.URL+`"`) {
		t.Errorf("status %s does not name the peer", r.Body)
	}

	wrongKey := apitest.NewStamp(t, apitest.Config{Ops: ops.Config{PeerURL: peer.URL}})
	if r := wrongKey.Do(t, "GET", "/v1/peer/status", "", ""); r.Status != 502 || !strings.Contains(apitest.DecodeProblem(t, r).Detail, "403") {
		t.Errorf("peer refusing: %d %s, want 502 naming the peer's answer", r.Status, r.Body)
	}
	peer.Close()
	if r := f.Do(t, "GET", "/v1/peer/status", "", ""); r.Status != 502 || apitest.DecodeProblem(t, r).Type != httpapi.ProblemPeerUnreachable {
		t.Errorf("peer down: %d %s, want 502 peer-unreachable", r.Status, r.Body)
	}
}

func TestConsoleServedAtRootAndAssets(t *testing.T) {
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("console " + r.URL.Path)) })
	f := apitest.NewStamp(t, apitest.Config{Ops: ops.Config{Console: console}})
	for _, path := range []string{"/", "/assets/app.js"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 200 || string(r.Body) != "console "+path {
			t.Errorf("GET %s: %d %q", path, r.Status, r.Body)
		}
	}
	if r := f.Do(t, "POST", "/", "", ""); r.Status != 405 {
		t.Errorf("POST /: %d, want 405", r.Status)
	}
}

// fakeForwarder reports a fixed status.
type fakeForwarder struct{ st forward.Status }

func (f fakeForwarder) Status() forward.Status { return f.st }
