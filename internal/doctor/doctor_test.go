package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/bridgehead-dev/bridgehead/internal/doctor"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
)

// want fails the test unless r has status st and its reason contains reason.
func want(t *testing.T, r doctor.Result, st doctor.Status, reason string) {
	t.Helper()
	if r.Status != st || !strings.Contains(r.Reason, reason) {
		t.Fatalf("%s: %s %q, want %s with %q", r.Check, r.Status, r.Reason, st, reason)
	}
	if (st == doctor.Warn || st == doctor.Fail) && !strings.Contains(r.Action, "docs/runbook.md#doctor-") {
		t.Fatalf("%s: %s without an action pointing at the runbook: %q", r.Check, st, r.Action)
	}
	t.Logf("%s: %s: %s", r.Check, r.Status, r.Reason)
}

// newSpool makes a spool as serve would, holding n undelivered messages, and closes it.
func newSpool(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		if err := s.Append(context.Background(), msgs(n)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func msgs(n int) []message.Message {
	out := make([]message.Message, n)
	for i := range out {
		out[i] = message.Message{ID: uuid.New(), SenderID: "plant-a", Value: strings.Repeat("v", 512),
			ReceivedAt: time.Now(), Stamp: "test"}
	}
	return out
}

// listing returns every file under dir, relative to it.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestSpoolMount(t *testing.T) {
	dir := newSpool(t, 0)
	before := listing(t, dir)
	faulty := func(r fsys.Rule) fsys.FS { f := fsys.NewFaulty(fsys.OS{}); f.Inject(r); return f }
	for _, tc := range []struct {
		name   string
		cfg    doctor.Config
		st     doctor.Status
		reason string
		action string // in the action, if set
	}{
		{"healthy", doctor.Config{SpoolDir: dir}, doctor.Pass, "directory fsync work", ""},
		{"not a spool", doctor.Config{SpoolDir: t.TempDir()}, doctor.Fail, "no VERSION file", ""},
		{"rename across mounts", doctor.Config{SpoolDir: dir, FS: faulty(fsys.Rule{Op: fsys.OpRename, Match: "probe", Err: syscall.EXDEV})},
			doctor.Fail, "different mounts (EXDEV)", "no subPath"},
		{"second O_EXCL create answers EIO", doctor.Config{SpoolDir: dir, FS: faulty(fsys.Rule{Op: fsys.OpCreate, Match: "probe", Skip: 1, Err: syscall.EIO})},
			doctor.Fail, "want EEXIST", ""},
		{"directory fsync fails", doctor.Config{SpoolDir: dir, FS: faulty(fsys.Rule{Op: fsys.OpSyncDir, Err: syscall.EIO})},
			doctor.Fail, "directory fsync", ""},
		{"skew near the allowance", doctor.Config{SpoolDir: dir, SkewAllowance: 2 * time.Second,
			Now: func() time.Time { return time.Now().Add(1500 * time.Millisecond) }}, doctor.Warn, "past half the allowance", "NTP"},
		{"skew past the allowance", doctor.Config{SpoolDir: dir, SkewAllowance: 2 * time.Second,
			Now: func() time.Time { return time.Now().Add(-3 * time.Second) }}, doctor.Fail, "fix NTP", "chronyc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := doctor.SpoolMount(tc.cfg)
			want(t, r, tc.st, tc.reason)
			if !strings.Contains(r.Action, tc.action) {
				t.Fatalf("action %q, want it to say %q", r.Action, tc.action)
			}
		})
	}
	if after := listing(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the probes left files: before %v, after %v", before, after)
	}
}

func TestSpoolUsage(t *testing.T) {
	dir := newSpool(t, 20)
	u, err := spool.ReadUsage(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	used := u.UsedBytes
	if used == 0 {
		t.Fatal("the spool uses 0 bytes after 20 appends")
	}
	usage := func(cfg doctor.Config) map[string]doctor.Result {
		out := map[string]doctor.Result{}
		for _, r := range doctor.SpoolUsage(cfg) {
			out[r.Check] = r
		}
		return out
	}
	t.Run("healthy", func(t *testing.T) {
		r := usage(doctor.Config{SpoolDir: dir})
		want(t, r["spool capacity"], doctor.Pass, "free on the file system")
		want(t, r["spool backlog"], doctor.Pass, "undelivered; the oldest is")
		want(t, r["dead letters"], doctor.Pass, "none")
	})
	t.Run("above 80 % of the cap", func(t *testing.T) {
		want(t, usage(doctor.Config{SpoolDir: dir, MaxBytes: used * 10 / 9})["spool capacity"], doctor.Warn, "above 80 %")
	})
	t.Run("at the cap", func(t *testing.T) {
		want(t, usage(doctor.Config{SpoolDir: dir, MaxBytes: used})["spool capacity"], doctor.Fail, "full")
	})
	t.Run("below the free-space floor", func(t *testing.T) {
		want(t, usage(doctor.Config{SpoolDir: dir, MinFreeBytes: 1 << 60})["spool capacity"], doctor.Fail, "below the floor")
	})
	t.Run("oldest too old", func(t *testing.T) {
		later := func() time.Time { return time.Now().Add(10 * time.Minute) }
		want(t, usage(doctor.Config{SpoolDir: dir, Now: later})["spool backlog"], doctor.Warn, "more than 5m0s")
	})
	t.Run("not a spool", func(t *testing.T) {
		r := usage(doctor.Config{SpoolDir: t.TempDir()})
		want(t, r["spool capacity"], doctor.Fail, "cannot read the spool")
		if r["spool backlog"].Status != doctor.Skip {
			t.Fatalf("backlog on an unreadable spool: %+v, want skip", r["spool backlog"])
		}
	})
	t.Run("dead letters", func(t *testing.T) {
		dir := newSpool(t, 0)
		s, err := spool.Open(dir, spool.Options{SealAfter: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Append(context.Background(), msgs(3)...); err != nil {
			t.Fatal(err)
		}
		var c *spool.Claim
		for deadline := time.Now().Add(5 * time.Second); c == nil; {
			if c, err = s.Claim(context.Background()); err != nil && time.Now().After(deadline) {
				t.Fatalf("claim: %v", err)
			}
		}
		if err := s.Settle(context.Background(), c, spool.Outcome{Dead: c.Messages, Reason: "refused"}); err != nil {
			t.Fatal(err)
		}
		want(t, usage(doctor.Config{SpoolDir: dir})["dead letters"], doctor.Warn, "3 message(s) in 1 dead segment(s)")
	})
}

func TestSink(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "readings"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	refused := sinktest.RefusedAddr(t)
	for _, tc := range []struct {
		name, topic string
		brokers     []string
		st          doctor.Status
		reason      string
	}{
		{"topic exists", "readings", c.ListenAddrs(), doctor.Pass, "nothing sent"},
		{"wrong topic", "other", c.ListenAddrs(), doctor.Fail, "UNKNOWN_TOPIC_OR_PARTITION"},
		{"nothing listening", "readings", []string{refused}, doctor.Fail, "dial tcp " + refused + ": connect: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kafka.New(kafka.Config{Brokers: tc.brokers, Topic: tc.topic})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want(t, doctor.Sink(context.Background(), doctor.Config{Sink: s.Check, SinkName: "kafka topic " + tc.topic, Timeout: 3 * time.Second}), tc.st, tc.reason)
		})
	}
	if r := doctor.Sink(context.Background(), doctor.Config{SinkSkip: "role api"}); r.Status != doctor.Skip {
		t.Fatalf("no sink: %+v, want skip", r)
	}
}

func TestTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "stamp CA")
	other := tlstest.NewCA(t, "someone else")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	files := func(c *tlstest.CA, notAfter time.Time) (string, string) {
		cert, key := c.Issue(t, tlstest.IssueOptions{NotAfter: notAfter})
		return tlstest.WriteFiles(t, t.TempDir(), cert, key)
	}
	good, goodKey := files(ca, time.Now().Add(90*24*time.Hour))
	soon, soonKey := files(ca, time.Now().Add(3*24*time.Hour))
	expired, expiredKey := files(ca, time.Now().Add(-time.Hour))
	foreign, foreignKey := files(other, time.Now().Add(90*24*time.Hour))
	for _, tc := range []struct {
		name            string
		cert, key, cafl string
		st              doctor.Status
		reason          string
	}{
		{"valid and chained", good, goodKey, caFile, doctor.Pass, "chains to"},
		{"expires within 14 days", soon, soonKey, "", doctor.Warn, "expires in 3 days"},
		{"expired", expired, expiredKey, "", doctor.Fail, "expired on"},
		{"wrong CA", foreign, foreignKey, caFile, doctor.Fail, "does not chain to"},
		{"key of another certificate", good, soonKey, "", doctor.Fail, "load key pair"},
		{"missing file", filepath.Join(dir, "none.crt"), goodKey, "", doctor.Fail, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, doctor.TLS(doctor.Config{TLSCertFile: tc.cert, TLSKeyFile: tc.key, TLSCAFile: tc.cafl}), tc.st, tc.reason)
		})
	}
	if r := doctor.TLS(doctor.Config{}); r.Status != doctor.Skip {
		t.Fatalf("no TLS files: %+v, want skip", r)
	}
}

func TestPrincipals(t *testing.T) {
	want(t, doctor.Principals(doctor.Config{AuthFile: "../auth/testdata/principals/good.yaml"}), doctor.Pass, "2 principal(s)")
	bad := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(bad, []byte("principals:\n  - name: a\n    keySha256: nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want(t, doctor.Principals(doctor.Config{AuthFile: bad}), doctor.Fail, bad)
	if r := doctor.Principals(doctor.Config{}); r.Status != doctor.Skip {
		t.Fatalf("no principals file: %+v, want skip", r)
	}
}

func TestPeer(t *testing.T) {
	answer := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/status" || r.Header.Get("X-Api-Key") != "k" {
				http.Error(w, "unexpected request", http.StatusTeapot)
				return
			}
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	refused := "http://" + sinktest.RefusedAddr(t)
	for _, tc := range []struct {
		name, url string
		st        doctor.Status
		reason    string
	}{
		{"ready", answer(200, `{"stamp":"cloud","ready":true,"forward":{"breaker":"closed"}}`), doctor.Pass, `stamp "cloud"`},
		{"not ready", answer(200, `{"stamp":"cloud","ready":false,"notReady":"spool full"}`), doctor.Warn, "spool full"},
		{"breaker open", answer(200, `{"stamp":"cloud","ready":true,"forward":{"breaker":"open","lastError":"connection refused"}}`), doctor.Warn, "breaker is open"},
		{"refuses the key", answer(401, `{"type":"https://bridgehead.dev/problems/unauthorized","title":"Unauthorized","detail":"this route needs credentials"}`),
			doctor.Fail, "401 Unauthorized: this route needs credentials"},
		{"not a stamp", answer(200, `<html>`), doctor.Fail, "not a stamp's status"},
		{"unreachable", refused, doctor.Fail, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, doctor.Peer(context.Background(), doctor.Config{PeerURL: tc.url, PeerAPIKey: "k", Timeout: 3 * time.Second}), tc.st, tc.reason)
		})
	}
	t.Run("certificate of an unknown CA", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		r := doctor.Peer(context.Background(), doctor.Config{PeerURL: srv.URL, Timeout: 3 * time.Second})
		want(t, r, doctor.Fail, "certificate signed by unknown authority")
		if !strings.Contains(r.Action, "--peer-ca-file") || strings.Count(r.Reason, srv.URL) != 1 {
			t.Fatalf("reason %q, action %q: want the URL once and --peer-ca-file in the action", r.Reason, r.Action)
		}
	})
}

func TestOutput(t *testing.T) {
	rs := []doctor.Result{
		{Check: "sink", Status: doctor.Fail, Reason: "dial tcp 127.0.0.1:9: connect: connection refused", Action: "fix it\nnow"},
		{Check: "tls", Status: doctor.Skip, Reason: "no --tls-cert-file"},
	}
	if got := doctor.Worst(rs); got != doctor.Fail {
		t.Fatalf("Worst = %s, want fail", got)
	}
	if got := doctor.Worst(rs[1:]); got != doctor.Pass {
		t.Fatalf("Worst of a skip = %s, want pass", got)
	}
	var b bytes.Buffer
	if err := doctor.WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[1], "FAIL") || !strings.Contains(lines[1], "fix it now") {
		t.Fatalf("table:\n%s", b.String())
	}
	b.Reset()
	if err := doctor.WriteJSON(&b, rs); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Status doctor.Status   `json:"status"`
		Checks []doctor.Result `json:"checks"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.Status != doctor.Fail || len(got.Checks) != 2 || got.Checks[0] != rs[0] {
		t.Fatalf("JSON %s (%v)", b.String(), err)
	}
}
