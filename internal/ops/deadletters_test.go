package ops_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// deadLetter spools one message from the API and dead-letters its segment with reason.
func deadLetter(t *testing.T, f *apitest.Stamp, value, reason string) string {
	t.Helper()
	if r := f.Do(t, "POST", "/v1/messages", "application/json", `{"senderId":"01","value":"`+value+`"}`); r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	if err := f.Spool.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := f.Spool.Claim(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Spool.DeadLetter(context.Background(), c, reason); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestDeadLetterRoutes(t *testing.T) {
	sp := apitest.NewStamp(t, apitest.Config{}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}})

	first := deadLetter(t, f, "poison", "MESSAGE_TOO_LARGE: 2 MiB")
	second := deadLetter(t, f, "also poison", "rejected by policy")

	r := f.Do(t, "GET", "/v1/dead-letters", "", "")
	var list struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Messages int    `json:"messages"`
			Reason   string `json:"reason"`
		} `json:"deadLetters"`
	}
	if err := json.Unmarshal(r.Body, &list); r.Status != 200 || err != nil {
		t.Fatalf("list: %d %s (%v)", r.Status, r.Body, err)
	}
	if len(list.DeadLetters) != 2 || list.DeadLetters[0].ID != first || list.DeadLetters[0].Reason != "MESSAGE_TOO_LARGE: 2 MiB" || list.DeadLetters[0].Messages != 1 {
		t.Fatalf("list %+v, want %s (with its reason) then %s", list.DeadLetters, first, second)
	}

	r = f.Do(t, "GET", "/v1/dead-letters/"+first, "", "")
	var one struct {
		ID       string `json:"id"`
		Reason   string `json:"reason"`
		Messages []struct {
			CorrelationID, SenderID, Value string
			ReceivedAt                     time.Time
		} `json:"messages"`
	}
	if err := json.Unmarshal(r.Body, &one); r.Status != 200 || err != nil {
		t.Fatalf("show: %d %s (%v)", r.Status, r.Body, err)
	}
	if one.ID != first || len(one.Messages) != 1 || one.Messages[0].Value != "poison" || one.Messages[0].SenderID != "01" || one.Messages[0].CorrelationID == "" {
		t.Fatalf("show %+v", one)
	}

	for _, path := range []string{"/v1/dead-letters/nosuchsegment", "/v1/dead-letters/" + first + "x", "/v1/dead-letters/a/b/requeue"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 404 || apitest.DecodeProblem(t, r).Type != httpapi.ProblemNotFound {
			t.Errorf("GET %s: %d %s, want a 404 problem", path, r.Status, r.Body)
		}
	}
	if r := f.Do(t, "GET", "/v1/dead-letters/"+first+"/requeue", "", ""); r.Status != 405 {
		t.Errorf("GET requeue: %d, want 405", r.Status)
	}

	if r := f.Do(t, "POST", "/v1/dead-letters/"+first+"/requeue", "", ""); r.Status != 200 || !strings.Contains(string(r.Body), `"requeued":1`) {
		t.Fatalf("requeue: %d %s", r.Status, r.Body)
	}
	if r := f.Do(t, "POST", "/v1/dead-letters/"+first+"/requeue", "", ""); r.Status != 404 {
		t.Errorf("requeue twice: %d %s, want 404 (it is ready now, not dead)", r.Status, r.Body)
	}
	if r := f.Do(t, "POST", "/v1/dead-letters/requeue-all", "", ""); r.Status != 200 || !strings.Contains(string(r.Body), `"requeued":1`) {
		t.Fatalf("requeue-all: %d %s", r.Status, r.Body)
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
	f := apitest.NewStamp(t, apitest.Config{})
	for _, path := range []string{"/v1/dead-letters", "/v1/dead-letters/x", "/v1/peer/status", "/", "/assets/app.js"} {
		if r := f.Do(t, "GET", path, "", ""); r.Status != 404 {
			t.Errorf("GET %s: %d, want 404 when not configured", path, r.Status)
		}
	}
}

func TestDeadLetterRoutesWhenTheSpoolFails(t *testing.T) {
	ffs := fsys.NewFaulty(fsys.OS{})
	sp := apitest.NewStamp(t, apitest.Config{Spool: spool.Options{FS: ffs}}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}})
	id := deadLetter(t, f, "poison", "rejected")

	ffs.Inject(fsys.Rule{Op: fsys.OpReadDir, Match: "/dead", Err: syscall.EIO})
	apitest.Assert503(t, f.Do(t, "GET", "/v1/dead-letters", "", ""), httpapi.ProblemSpoolUnavailable)
	apitest.Assert503(t, f.Do(t, "POST", "/v1/dead-letters/requeue-all", "", ""), httpapi.ProblemSpoolUnavailable)
	ffs.Reset()

	// A requeue whose rename fails leaves the dead letter where it was, and says so.
	ffs.Inject(fsys.Rule{Op: fsys.OpRename, Match: "/dead/", Err: syscall.EIO})
	apitest.Assert503(t, f.Do(t, "POST", "/v1/dead-letters/"+id+"/requeue", "", ""), httpapi.ProblemSpoolUnavailable)
	ffs.Reset()
	if r := f.Do(t, "GET", "/v1/dead-letters/"+id, "", ""); r.Status != 200 {
		t.Errorf("after a failed requeue: %d %s, want the dead letter still there", r.Status, r.Body)
	}
	// Unreadable: nothing to show, so the answer is the spool's trouble, not an empty list.
	ffs.Inject(fsys.Rule{Op: fsys.OpRead, Match: "/dead/", Err: syscall.EIO})
	apitest.Assert503(t, f.Do(t, "GET", "/v1/dead-letters/"+id, "", ""), httpapi.ProblemSpoolUnavailable)
	ffs.Reset()
}

func TestDamagedDeadLetterIsShownWithItsDamage(t *testing.T) {
	sp := apitest.NewStamp(t, apitest.Config{}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}})
	id := deadLetter(t, f, "poison", "rejected")
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
	r := f.Do(t, "GET", "/v1/dead-letters/"+id, "", "")
	var body struct {
		Damaged  string            `json:"damaged"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(r.Body, &body); r.Status != 200 || err != nil {
		t.Fatalf("damaged dead letter: %d %s, want 200 naming the damage", r.Status, r.Body)
	}
	if body.Damaged == "" || body.Messages == nil {
		t.Errorf("damaged dead letter: %s, want damaged set and messages [] (none intact)", r.Body)
	}
}

// TestDeadLetterShowsExpiry: a dead letter's message carries its expiresAt when it has a ttl,
// and none when it has not.
func TestDeadLetterShowsExpiry(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	sp := apitest.NewStamp(t, apitest.Config{}).Spool
	f := apitest.ServeStamp(t, sp, apitest.Config{Ops: ops.Config{DeadLetters: sp}, API: ingest.Config{Now: func() time.Time { return at }}})
	for _, tt := range []struct {
		body string
		want string
	}{
		{`{"senderId":"01","value":"v","ttl":90}`, `"expiresAt":"2026-12-03T08:01:30Z"`},
		{`{"senderId":"01","value":"v"}`, ""},
	} {
		if r := f.Do(t, "POST", "/v1/messages", "application/json", tt.body); r.Status != 200 {
			t.Fatalf("send: %d %s", r.Status, r.Body)
		}
		if err := sp.Seal(context.Background()); err != nil {
			t.Fatal(err)
		}
		c, err := sp.Claim(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.DeadLetter(context.Background(), c, "expired: 1 message, ttl ran out at 2026-12-03T08:01:30Z"); err != nil {
			t.Fatal(err)
		}
		r := f.Do(t, "GET", "/v1/dead-letters/"+c.ID, "", "")
		body := string(r.Body)
		if r.Status != 200 || !strings.Contains(body, `"reason":"expired: 1 message, ttl ran out at 2026-12-03T08:01:30Z"`) ||
			(tt.want != "" && !strings.Contains(body, tt.want)) || (tt.want == "" && strings.Contains(body, "expiresAt")) {
			t.Errorf("%s: show %d %s, want the reason and expiresAt %q", tt.body, r.Status, body, tt.want)
		}
	}
}
