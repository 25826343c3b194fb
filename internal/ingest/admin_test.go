package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// deadLetter spools one message from the API and dead-letters its segment with reason.
func (f *fixture) deadLetter(t *testing.T, value, reason string) string {
	t.Helper()
	if r := f.do(t, "POST", "/v1/messages", "application/json", `{"senderId":"01","value":"`+value+`"}`); r.status != 200 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	if err := f.sp.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := f.sp.Claim(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sp.DeadLetter(context.Background(), c, reason); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestDeadLetterRoutes(t *testing.T) {
	sp := newFixture(t, spool.Options{}, ingest.Config{}).sp
	f := serveFixture(t, sp, ingest.Config{DeadLetters: sp})

	first := f.deadLetter(t, "poison", "MESSAGE_TOO_LARGE: 2 MiB")
	second := f.deadLetter(t, "also poison", "rejected by policy")

	r := f.do(t, "GET", "/v1/dead-letters", "", "")
	var list struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Messages int    `json:"messages"`
			Reason   string `json:"reason"`
		} `json:"deadLetters"`
	}
	if err := json.Unmarshal(r.body, &list); r.status != 200 || err != nil {
		t.Fatalf("list: %d %s (%v)", r.status, r.body, err)
	}
	if len(list.DeadLetters) != 2 || list.DeadLetters[0].ID != first || list.DeadLetters[0].Reason != "MESSAGE_TOO_LARGE: 2 MiB" || list.DeadLetters[0].Messages != 1 {
		t.Fatalf("list %+v, want %s (with its reason) then %s", list.DeadLetters, first, second)
	}

	r = f.do(t, "GET", "/v1/dead-letters/"+first, "", "")
	var one struct {
		ID       string `json:"id"`
		Reason   string `json:"reason"`
		Messages []struct {
			CorrelationID, SenderID, Value string
			ReceivedAt                     time.Time
		} `json:"messages"`
	}
	if err := json.Unmarshal(r.body, &one); r.status != 200 || err != nil {
		t.Fatalf("show: %d %s (%v)", r.status, r.body, err)
	}
	if one.ID != first || len(one.Messages) != 1 || one.Messages[0].Value != "poison" || one.Messages[0].SenderID != "01" || one.Messages[0].CorrelationID == "" {
		t.Fatalf("show %+v", one)
	}

	for _, path := range []string{"/v1/dead-letters/nosuchsegment", "/v1/dead-letters/" + first + "x", "/v1/dead-letters/a/b/requeue"} {
		if r := f.do(t, "GET", path, "", ""); r.status != 404 || decodeProblem(t, r).Type != ingest.ProblemNotFound {
			t.Errorf("GET %s: %d %s, want a 404 problem", path, r.status, r.body)
		}
	}
	if r := f.do(t, "GET", "/v1/dead-letters/"+first+"/requeue", "", ""); r.status != 405 {
		t.Errorf("GET requeue: %d, want 405", r.status)
	}

	if r := f.do(t, "POST", "/v1/dead-letters/"+first+"/requeue", "", ""); r.status != 200 || !strings.Contains(string(r.body), `"requeued":1`) {
		t.Fatalf("requeue: %d %s", r.status, r.body)
	}
	if r := f.do(t, "POST", "/v1/dead-letters/"+first+"/requeue", "", ""); r.status != 404 {
		t.Errorf("requeue twice: %d %s, want 404 (it is ready now, not dead)", r.status, r.body)
	}
	if r := f.do(t, "POST", "/v1/dead-letters/requeue-all", "", ""); r.status != 200 || !strings.Contains(string(r.body), `"requeued":1`) {
		t.Fatalf("requeue-all: %d %s", r.status, r.body)
	}
	st, err := sp.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dead.Segments != 0 || st.Ready.Messages != 2 {
		t.Errorf("after requeueing: %+v, want both back in ready/", st)
	}
}

func TestDeadLetterRoutesAbsentWithoutStore(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{})
	for _, path := range []string{"/v1/dead-letters", "/v1/dead-letters/x", "/v1/peer/status", "/", "/assets/app.js"} {
		if r := f.do(t, "GET", path, "", ""); r.status != 404 {
			t.Errorf("GET %s: %d, want 404 when not configured", path, r.status)
		}
	}
}

func TestStatusCountsAndForwardStatus(t *testing.T) {
	f := newFixture(t, spool.Options{}, ingest.Config{ForwardStatus: func() any { return map[string]string{"breaker": "open"} }})
	f.do(t, "POST", "/v1/messages", "application/json", `[{"senderId":"01","value":"a"},{"senderId":"01","value":"b"}]`)
	r := f.do(t, "GET", "/v1/status", "", "")
	var st struct {
		Ingest  struct{ AcceptedTotal int } `json:"ingest"`
		Forward struct{ Breaker string }    `json:"forward"`
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ingest.AcceptedTotal != 2 || st.Forward.Breaker != "open" {
		t.Errorf("status %s: want acceptedTotal 2 and the forwarder's status", r.body)
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
	f := newFixture(t, spool.Options{}, ingest.Config{PeerURL: peer.URL + "/", PeerAPIKey: "peer-key"})
	r := f.do(t, "GET", "/v1/peer/status", "", "")
	if r.status != 200 || string(r.body) != `{"stamp":"cloud","ready":true}` {
		t.Fatalf("peer status: %d %s", r.status, r.body)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("the relayed body is served with %v; want JSON, nosniff", r.header)
	}
	if r := f.do(t, "GET", "/v1/status", "", ""); !strings.Contains(string(r.body), `"peerUrl":"`+peer.URL+`"`) {
		t.Errorf("status %s does not name the peer", r.body)
	}

	wrongKey := newFixture(t, spool.Options{}, ingest.Config{PeerURL: peer.URL})
	if r := wrongKey.do(t, "GET", "/v1/peer/status", "", ""); r.status != 502 || !strings.Contains(decodeProblem(t, r).Detail, "403") {
		t.Errorf("peer refusing: %d %s, want 502 naming the peer's answer", r.status, r.body)
	}
	peer.Close()
	if r := f.do(t, "GET", "/v1/peer/status", "", ""); r.status != 502 || decodeProblem(t, r).Type != ingest.ProblemPeerUnreachable {
		t.Errorf("peer down: %d %s, want 502 peer-unreachable", r.status, r.body)
	}
}

func TestConsoleServedAtRootAndAssets(t *testing.T) {
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("console " + r.URL.Path)) })
	f := newFixture(t, spool.Options{}, ingest.Config{Console: console})
	for _, path := range []string{"/", "/assets/app.js"} {
		if r := f.do(t, "GET", path, "", ""); r.status != 200 || string(r.body) != "console "+path {
			t.Errorf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	if r := f.do(t, "POST", "/", "", ""); r.status != 405 {
		t.Errorf("POST /: %d, want 405", r.status)
	}
}

func TestDeadLetterRoutesWhenTheSpoolFails(t *testing.T) {
	ffs := fsys.NewFaulty(fsys.OS{})
	sp := newFixture(t, spool.Options{FS: ffs}, ingest.Config{}).sp
	f := serveFixture(t, sp, ingest.Config{DeadLetters: sp})
	id := f.deadLetter(t, "poison", "rejected")

	ffs.Inject(fsys.Rule{Op: fsys.OpReadDir, Match: "/dead", Err: syscall.EIO})
	assert503(t, f.do(t, "GET", "/v1/dead-letters", "", ""), ingest.ProblemSpoolUnavailable)
	assert503(t, f.do(t, "POST", "/v1/dead-letters/requeue-all", "", ""), ingest.ProblemSpoolUnavailable)
	ffs.Reset()

	// A requeue whose rename fails leaves the dead letter where it was, and says so.
	ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/dead/", Err: syscall.EIO})
	assert503(t, f.do(t, "POST", "/v1/dead-letters/"+id+"/requeue", "", ""), ingest.ProblemSpoolUnavailable)
	ffs.Reset()
	if r := f.do(t, "GET", "/v1/dead-letters/"+id, "", ""); r.status != 200 {
		t.Errorf("after a failed requeue: %d %s, want the dead letter still there", r.status, r.body)
	}
	// Unreadable: nothing to show, so the answer is the spool's trouble, not an empty list.
	ffs.Inject(fsys.Rule{Op: fsys.OpRead, Match: "/dead/", Err: syscall.EIO})
	assert503(t, f.do(t, "GET", "/v1/dead-letters/"+id, "", ""), ingest.ProblemSpoolUnavailable)
	ffs.Reset()
}

func TestDamagedDeadLetterIsShownWithItsDamage(t *testing.T) {
	sp := newFixture(t, spool.Options{}, ingest.Config{}).sp
	f := serveFixture(t, sp, ingest.Config{DeadLetters: sp})
	id := f.deadLetter(t, "poison", "rejected")
	e, err := sp.Find(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sp.Dir(), string(e.State), e.Name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff // flip a byte inside the record
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, "GET", "/v1/dead-letters/"+id, "", "")
	var body struct {
		Damaged  string            `json:"damaged"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(r.body, &body); r.status != 200 || err != nil {
		t.Fatalf("damaged dead letter: %d %s, want 200 naming the damage", r.status, r.body)
	}
	if body.Damaged == "" || body.Messages == nil {
		t.Errorf("damaged dead letter: %s, want damaged set and messages [] (none intact)", r.body)
	}
}
