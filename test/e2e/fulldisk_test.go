package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/fulldisk"
	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
)

const (
	// fullDiskSize leaves about 100 MiB free on the empty file system: above serve's default
	// free-space floor (--spool-min-free-bytes, 64 MiB), so that a process on serve's defaults
	// turns ready again once the space is freed.
	fullDiskSize  = 128 << 20
	fullDiskStamp = "fulldisk"
	fullDiskSeeds = 20
	// fullDiskHold is how long the first processes must stay up on the full file system: longer
	// than the spool's heartbeat interval and the forwarder's reap interval (10 s each,
	// spool.DefaultHeartbeatInterval and forward.DefaultReapInterval), so that each process
	// writes a heartbeat, and the forwarder reaps, while there is no space.
	fullDiskHold = 11 * time.Second
)

// fullDiskProc is one serve process of TestFullShareStarts, with its log.
type fullDiskProc struct {
	role string
	*server
	log *logbuf.Buffer
}

// startFullDiskProc runs `serve --role role args...` and waits until it listens. A process that
// exits first is returned as an error that quotes its log: why it would not start.
func startFullDiskProc(t *testing.T, role string, args []string) (*fullDiskProc, error) {
	t.Helper()
	log := &logbuf.Buffer{}
	var stderr io.Writer = log
	if testing.Verbose() {
		stderr = io.MultiWriter(os.Stderr, log)
	}
	p, err := launchServe(append(slices.Clone(args), "--role", role), stderr)
	if err != nil {
		return nil, fmt.Errorf("--role %s: %w; its log:\n%s", role, err, log)
	}
	t.Cleanup(func() { _ = p.kill() })
	return &fullDiskProc{role: role, server: &server{serveProc: p}, log: log}, nil
}

// postMessage POSTs one message to the compatible route; for a 200 it returns the
// correlationId, else "".
func (p *fullDiskProc) postMessage(t *testing.T, value string) (code int, hdr http.Header, body []byte, id string) {
	t.Helper()
	code, hdr, body, err := p.post(context.Background(), "/ServiceAPI/message", fmt.Sprintf(`{"senderId":"full","value":%q}`, value))
	if err != nil {
		t.Fatalf("--role %s: POST: %v", p.role, err)
	}
	if code == http.StatusOK {
		var got struct {
			CorrelationID string `json:"correlationId"`
			Success       bool   `json:"success"`
		}
		if err := json.Unmarshal(body, &got); err != nil || !got.Success || got.CorrelationID == "" {
			t.Fatalf("--role %s: POST answered 200 %s: not an acknowledgement (%v)", p.role, body, err)
		}
		id = strings.ToLower(got.CorrelationID)
	}
	return code, hdr, body, id
}

func (p *fullDiskProc) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(p.url + "/readyz")
	if err != nil {
		t.Fatalf("--role %s: GET /readyz: %v", p.role, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("--role %s: GET /readyz: %v", p.role, err)
	}
	return resp.StatusCode, string(b)
}

// mentionsFull reports whether an answer says that the spool or its file system is full.
func mentionsFull(body string) bool {
	b := strings.ToLower(body)
	return strings.Contains(b, "full") || strings.Contains(b, "no space")
}

// refusesWhileFull checks the API of p on the full file system: a POST gets 503 with a
// problem+json body saying the spool is full and a Retry-After, and /readyz is 503 saying the
// same. A 200 is no fault (a block the forwarder just freed, taken before the filler took it
// back): its correlationId goes to acked, and the POST is tried again.
func refusesWhileFull(t *testing.T, p *fullDiskProc, acked *[]string) {
	t.Helper()
	var lastPost, lastReady string
	defer func() {
		if t.Failed() {
			t.Logf("--role %s on the full file system: last POST answer: %s; last /readyz answer: %s", p.role, lastPost, lastReady)
		}
	}()
	eventually(t, 5*time.Second, fmt.Sprintf("--role %s to answer a POST with 503 while the file system is full", p.role), func() bool {
		code, hdr, body, id := p.postMessage(t, "sent while full")
		lastPost = fmt.Sprintf("%d %s", code, bytes.TrimSpace(body))
		switch code {
		case http.StatusOK:
			*acked = append(*acked, id)
			return false
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("--role %s: POST while the file system is full: %d %s, want 503", p.role, code, body)
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("--role %s: the 503 is %q, want application/problem+json", p.role, ct)
		}
		if hdr.Get("Retry-After") == "" {
			t.Errorf("--role %s: the 503 has no Retry-After", p.role)
		}
		if !mentionsFull(string(body)) {
			t.Errorf("--role %s: the 503 says %s; want it to say the spool is full", p.role, body)
		}
		return true
	})
	// Readiness follows the spool's capacity figures, refreshed every scan (1 s).
	eventually(t, 5*time.Second, fmt.Sprintf("--role %s: /readyz to answer 503 saying the spool is full (or has no space)", p.role), func() bool {
		code, body := p.readyz(t)
		lastReady = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		return code == http.StatusServiceUnavailable && mentionsFull(body)
	})
}

// acceptsAgain waits for /readyz of p to answer 200, then wants a POST acknowledged; it returns
// the message's correlationId.
func acceptsAgain(t *testing.T, p *fullDiskProc) string {
	t.Helper()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("--role %s once space was freed: last /readyz answer: %s", p.role, last)
		}
	}()
	eventually(t, 10*time.Second, fmt.Sprintf("--role %s: /readyz 200 once space is freed", p.role), func() bool {
		code, body := p.readyz(t)
		last = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		return code == http.StatusOK
	})
	code, _, body, id := p.postMessage(t, "sent once space was freed")
	if code != http.StatusOK {
		t.Fatalf("--role %s: POST once ready again: %d %s, want 200", p.role, code, body)
	}
	return id
}

// TestFullShareStarts: a stamp must start on a full share. Any restart while the share is full
// (a node drain, an upgrade, an OOM kill) must not turn into a crash loop: the forwarder is the
// one thing that frees space, and the API must be there to say "full, retry later".
//
// On a real full file system (an ext4 image, loop-mounted, kept full by a filler that takes back
// every block freed; package fulldisk), with a spool that holds acknowledged messages:
//   - --role forwarder starts, stays up and delivers them to a file sink on another file system;
//   - --role api starts and stays up, answers a POST with 503 (problem+json, Retry-After), and
//     /readyz with 503 saying the spool is full. It runs with --spool-min-free-bytes 0: what must
//     make it refuse and report is the file system's own answer (ENOSPC, statfs), not a floor;
//   - --role all on serve's defaults (the 64 MiB floor) does the same;
//   - once the space is freed, both APIs turn ready and take messages again without a restart,
//     and every acknowledged message reaches the sink.
//
// It needs root and a loop device (see package fulldisk); BRIDGEHEAD_SKIP_FULLDISK=1 skips it.
func TestFullShareStarts(t *testing.T) {
	mnt := fulldisk.Mount(t, fullDiskSize)
	dir := filepath.Join(mnt, "spool")
	sinkPath := filepath.Join(t.TempDir(), "delivered.ndjson") // not on the full file system
	// --role all delivers to a file of its own: two processes appending to one file sink may
	// interleave (and each trims a half-written last line when it starts).
	allSinkPath := filepath.Join(t.TempDir(), "delivered-all.ndjson")
	common := []string{"--listen", "127.0.0.1:0", "--spool-dir", dir, "--stamp", fullDiskStamp, "--file-path", sinkPath}
	var procs []*fullDiskProc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("--role %s log (last 30 lines):\n%s", p.role, lastLines(p.log.String(), 30))
			}
		}
	})

	// Seed: an API on the empty file system acknowledges some messages, then stops.
	seeder, err := startFullDiskProc(t, "api", common)
	if err != nil {
		t.Fatal(err)
	}
	var acked []string // every correlationId a 200 acknowledged
	for i := range fullDiskSeeds {
		code, _, body, id := seeder.postMessage(t, fmt.Sprintf("seed %d", i))
		if code != http.StatusOK {
			t.Fatalf("seed %d on the empty file system: %d %s", i, code, body)
		}
		acked = append(acked, id)
	}
	seeder.signal(t, syscall.SIGTERM)
	seeder.wait(t, 10*time.Second)

	filler := fulldisk.Fill(t, filepath.Join(mnt, "filler")) // beside the spool, on the same file system

	// The forwarder and the API start on the full file system.
	fwd, fwdErr := startFullDiskProc(t, "forwarder", common)
	api, apiErr := startFullDiskProc(t, "api", append(slices.Clone(common), "--spool-min-free-bytes", "0"))
	for _, err := range []error{fwdErr, apiErr} {
		if err != nil {
			t.Errorf("did not start on a full file system: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	procs = append(procs, fwd, api)
	holdUntil := time.Now().Add(fullDiskHold)

	refusesWhileFull(t, api, &acked)
	delivered := func(ids []string) func() bool {
		return func() bool {
			got, err := deliveredIDs(sinkPath, fullDiskStamp)
			if err != nil {
				t.Fatal(err)
			}
			fromAll, err := deliveredIDs(allSinkPath, fullDiskStamp)
			if err != nil {
				t.Fatal(err)
			}
			for id, n := range fromAll {
				got[id] += n
			}
			for _, id := range ids {
				if got[id] == 0 {
					return false
				}
			}
			return true
		}
	}
	eventually(t, 15*time.Second, fmt.Sprintf("the forwarder to deliver the %d seeded messages from the full file system", fullDiskSeeds),
		delivered(acked[:fullDiskSeeds]))
	// The drain freed a few blocks; the filler took them back: still full.
	refusesWhileFull(t, api, &acked)

	// --role all, on serve's defaults, starts on the full file system too.
	all, err := startFullDiskProc(t, "all", append(slices.Clone(common), "--file-path", allSinkPath))
	if err != nil {
		t.Fatalf("did not start on a full file system: %v", err)
	}
	procs = append(procs, all)
	refusesWhileFull(t, all, &acked)

	// Every process stays up on the full file system, through a heartbeat and a reap.
	eventuallyEvery(t, 250*time.Millisecond, fullDiskHold+5*time.Second, fmt.Sprintf("%v of running on the full file system", fullDiskHold), func() bool {
		for _, p := range procs {
			if !p.running() {
				t.Fatalf("--role %s exited while the file system was full: %v", p.role, p.err)
			}
		}
		return time.Now().After(holdUntil)
	})

	// Space is freed: the APIs turn ready and take messages again, without a restart.
	if err := filler.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*fullDiskProc{api, all} {
		acked = append(acked, acceptsAgain(t, p))
	}
	t.Cleanup(func() {
		if t.Failed() { // what the spool still holds, for the reader of a failure
			for _, state := range []string{"open", "recovering", "ready", "claimed", "dead", "quarantine"} {
				entries, _ := os.ReadDir(filepath.Join(dir, state))
				for _, e := range entries {
					t.Logf("spool %s/%s", state, e.Name())
				}
			}
		}
	})
	// 30 s: on a loaded CI machine the last two messages wait for a seal, a scan and a claim.
	eventually(t, 30*time.Second, fmt.Sprintf("all %d acknowledged messages in the file sink", len(acked)), delivered(acked))
	for _, p := range procs {
		if !p.running() {
			t.Errorf("--role %s exited: %v", p.role, p.err)
		}
	}
	t.Logf("full share: %d messages acknowledged (%d before the disk filled), all delivered", len(acked), fullDiskSeeds)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
