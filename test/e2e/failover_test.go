package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// Failover test settings. The client's probe interval and backoff are short so that the
// preferred stamp is back in service within a second of its return; the lease is short so that
// the claims of the killed on-prem forwarder come back (after lease + 2 × skew allowance, at the
// next reap, every half lease) within the test.
const (
	failoverProbeInterval = 100 * time.Millisecond
	failoverBackoffMin    = 100 * time.Millisecond
	failoverBackoffMax    = 500 * time.Millisecond
	failoverLease         = "2s"
	failoverSkew          = "500ms"
	failoverWriterLease   = "1s"
	failoverSendEvery     = 5 * time.Millisecond // the sender's pace: one request per tick
	failoverBatch         = 4                    // messages per request
	failoverOutage        = 2 * time.Second      // how long on-prem stays down
	// failoverSwitchBound bounds the time from the kill to the first ack from the cloud stamp.
	// The client moves on at the first refused connection, so it takes milliseconds; the bound
	// leaves room for a loaded 2-core machine running the race detector.
	failoverSwitchBound = 5 * time.Second
	// failoverReturnBound bounds the time from the restarted on-prem stamp's readiness to its
	// first ack: at most one backoff (BackoffMax) until the next probe is due, one probe
	// interval until the prober looks, and the probe itself; 2 s of slack for the machine.
	failoverReturnBound = failoverBackoffMax + 3*failoverProbeInterval + 2*time.Second
	failoverDrainBound  = 20 * time.Second
)

// failoverStamp is one stamp of the failover test: a `bridgehead serve` process with its own
// spool and file sink. A restarted incarnation uses the same spool, sink and port. Owned by the
// test goroutine.
type failoverStamp struct {
	name   string // the --stamp, "onprem" or "cloud"
	spool  string
	sink   string
	listen string // 127.0.0.1:0 until the first start, then the address it got
	netns  string // the network namespace it runs in; "" for the test's own
	log    *os.File
	proc   *serveProc
}

func newFailoverStamp(t *testing.T, name string) *failoverStamp {
	t.Helper()
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "serve.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s := &failoverStamp{name: name, spool: filepath.Join(dir, "spool"), sink: filepath.Join(dir, "delivered.ndjson"),
		listen: "127.0.0.1:0", log: f}
	t.Cleanup(func() {
		if s.proc != nil && s.proc.running() {
			_ = s.proc.kill()
		}
		if t.Failed() {
			if b, err := os.ReadFile(f.Name()); err == nil {
				t.Logf("%s log (last 4 KiB):\n%s", name, b[max(0, len(b)-4096):])
			}
		}
		_ = f.Close()
	})
	return s
}

// start runs a new incarnation and returns once it listens.
func (s *failoverStamp) start(t *testing.T) {
	t.Helper()
	p, err := launchServeIn(s.netns, binary, []string{"--listen", s.listen, "--spool-dir", s.spool, "--stamp", s.name,
		"--file-path", s.sink, "--spool-lease", failoverLease, "--spool-skew-allowance", failoverSkew,
		"--spool-writer-lease", failoverWriterLease,
		"--shutdown-grace", "5s"}, s.log)
	if err != nil {
		t.Fatalf("start %s: %v", s.name, err)
	}
	s.proc = p
	u, err := url.Parse(p.url)
	if err != nil {
		t.Fatalf("%s printed %q: %v", s.name, p.url, err)
	}
	s.listen = u.Host // a restart comes back on the same port
}

// ready polls /readyz until it answers 200 and returns when it did.
func (s *failoverStamp) ready(t *testing.T, hc *http.Client) time.Time {
	t.Helper()
	var at time.Time
	eventually(t, 10*time.Second, s.name+" /readyz 200", func() bool {
		resp, err := hc.Get(s.proc.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		at = time.Now()
		return resp.StatusCode == http.StatusOK
	})
	return at
}

// stop sends SIGTERM and waits for a clean exit.
func (s *failoverStamp) stop(t *testing.T) {
	t.Helper()
	if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", s.name, err)
	}
	select {
	case <-s.proc.done:
		if s.proc.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want a clean exit", s.name, s.proc.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15 s of SIGTERM", s.name)
	}
}

// spoolDepth is the number of segments undelivered (open, recovering, ready or claimed) and dead
// or quarantined.
func (s *failoverStamp) spoolDepth(t *testing.T) (undelivered, dead int) {
	t.Helper()
	sp, err := spool.Open(s.spool, spool.Options{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	st, err := sp.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Undelivered(), st.Dead.Segments + st.Quarantine.Segments
}

// delivered reads the stamp's file sink: how often each correlationId is in it.
func (s *failoverStamp) delivered(t *testing.T) (map[string]int, error) {
	t.Helper()
	return deliveredIDs(s.sink, s.name)
}

// deliveredIDs reads a file sink: how often each correlationId is in it. Every whole line must
// be an envelope of stamp (the sink truncates a half-written batch at start); a last line without
// its newline is being written and is left for the next read.
func deliveredIDs(path, stamp string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	lines := bytes.Split(b, []byte("\n"))
	for n, line := range lines[:len(lines)-1] { // the last is "" or a line still being written
		var env struct {
			CorrelationID string `json:"correlationId"`
			Stamp         string `json:"stamp"`
		}
		if err := json.Unmarshal(line, &env); err != nil || env.CorrelationID == "" || env.Stamp != stamp {
			return nil, fmt.Errorf("%s line %d is not an envelope of stamp %s: %q (%v)", path, n+1, stamp, line, err)
		}
		out[strings.ToLower(env.CorrelationID)]++
	}
	return out, nil
}

// drainAndStop waits until the spools of stamps have drained, wants none of their segments dead
// or quarantined, stops them with SIGTERM and reads their sinks: how often each correlationId is
// in each, by the stamp's URL. It returns how long the drain took.
func drainAndStop(t *testing.T, stamps ...*failoverStamp) (map[string]map[string]int, time.Duration) {
	t.Helper()
	start := time.Now()
	eventuallyEvery(t, 100*time.Millisecond, failoverDrainBound, "the spools to drain", func() bool {
		n := 0
		for _, s := range stamps {
			undelivered, _ := s.spoolDepth(t)
			n += undelivered
		}
		return n == 0
	})
	drained := time.Since(start)
	sinks := map[string]map[string]int{}
	for _, s := range stamps {
		if _, dead := s.spoolDepth(t); dead > 0 {
			t.Errorf("%s: %d segments dead or quarantined, want none", s.name, dead)
		}
		s.stop(t)
		d, err := s.delivered(t)
		if err != nil {
			t.Fatal(err)
		}
		sinks[s.proc.url] = d
	}
	return sinks, drained
}

// failoverAck is one acknowledged request: when Send returned, which stamp acked, the ids.
type failoverAck struct {
	at       time.Time
	endpoint string
	ids      []string
}

// failoverLog is what the sender saw; guarded by mu (the sender appends, the test reads).
type failoverLog struct {
	mu     sync.Mutex
	acks   []failoverAck
	errors []string // Send errors other than the end of sending
}

func (l *failoverLog) add(a failoverAck) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acks = append(l.acks, a)
}

// first returns when the first request acked by endpoint after t returned.
func (l *failoverLog) first(endpoint string, after time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.acks {
		if a.endpoint == endpoint && a.at.After(after) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// count returns how many messages endpoint acked after t.
func (l *failoverLog) count(endpoint string, after time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acks {
		if a.endpoint == endpoint && a.at.After(after) {
			n += len(a.ids)
		}
	}
	return n
}

// failoverSend sends a request of failoverBatch messages every failoverSendEvery until ctx
// ends, one request at a time, each message with its own idempotency id, and logs the acks.
func failoverSend(ctx context.Context, c *client.Client, l *failoverLog) {
	tick := time.NewTicker(failoverSendEvery)
	defer tick.Stop()
	for seq := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		msgs := make([]client.Message, failoverBatch)
		for i := range msgs {
			msgs[i] = client.Message{SenderID: "failover", Value: fmt.Sprintf("reading %d", seq), ID: fmt.Sprintf("m%d", seq)}
			seq++
		}
		acks, err := c.Send(ctx, msgs...)
		if err != nil {
			if ctx.Err() == nil {
				l.mu.Lock()
				l.errors = append(l.errors, err.Error())
				l.mu.Unlock()
			}
			continue
		}
		a := failoverAck{at: time.Now(), endpoint: acks[0].Endpoint}
		for _, ack := range acks {
			a.ids = append(a.ids, ack.CorrelationID)
		}
		l.add(a)
	}
}

// TestFailover runs the two stamps as separate processes, on-prem and cloud, each with its own
// spool and file sink, and a client that prefers on-prem and sends continuously. On-prem is
// SIGKILLed: traffic must move to the cloud stamp. It is restarted on the same spool and port:
// traffic must come back. Then both drain and stop, and every acked message must be in the sink
// of the stamp that acked it. Duplicates (same correlationId more than once across the sinks)
// are allowed and counted. docs/failover.md quotes the figures it logs.
func TestFailover(t *testing.T) {
	began := time.Now()
	onprem, cloud := newFailoverStamp(t, "onprem"), newFailoverStamp(t, "cloud")
	onprem.start(t)
	cloud.start(t)
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	onprem.ready(t, hc)
	cloud.ready(t, hc)

	c, err := client.New(client.Config{
		Endpoints:     []string{onprem.proc.url, cloud.proc.url},
		Timeout:       2 * time.Second,
		BackoffMin:    failoverBackoffMin,
		BackoffMax:    failoverBackoffMax,
		ProbeInterval: failoverProbeInterval,
		MaxAttempts:   -1, // until a stamp acks or sending ends: no request given up on
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	onURL, cloudURL := onprem.proc.url, cloud.proc.url
	seen := &failoverLog{}
	sendCtx, stopSending := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopSending(); wg.Wait() }() // also on t.Fatal
	sendingFrom := time.Now()
	wg.Go(func() { failoverSend(sendCtx, c, seen) })

	// On-prem takes the traffic for a second, then dies.
	eventually(t, 10*time.Second, "1 s of traffic acked by on-prem", func() bool {
		return time.Since(sendingFrom) >= time.Second && seen.count(onURL, sendingFrom) > 0
	})
	if n := seen.count(cloudURL, sendingFrom); n > 0 {
		t.Errorf("the cloud stamp acked %d messages while on-prem was up, want 0 (on-prem is preferred)", n)
	}
	killedAt := time.Now()
	if err := onprem.proc.kill(); err != nil {
		t.Fatal(err)
	}

	// Traffic moves to the cloud stamp, and stays there for the outage.
	eventually(t, failoverSwitchBound, "an ack from the cloud stamp after the kill", func() bool {
		_, ok := seen.first(cloudURL, killedAt)
		return ok
	})
	switchedAt, _ := seen.first(cloudURL, killedAt)
	eventually(t, failoverOutage+10*time.Second, "the outage to last its time with the cloud stamp acking", func() bool {
		return time.Since(killedAt) >= failoverOutage && seen.count(cloudURL, switchedAt) > 0
	})

	// On-prem comes back on its spool and port: traffic returns to it.
	restartedAt := time.Now()
	onprem.start(t)
	readyAt := onprem.ready(t, hc)
	eventually(t, time.Until(readyAt.Add(failoverReturnBound)), "an ack from the restarted on-prem stamp", func() bool {
		_, ok := seen.first(onURL, restartedAt)
		return ok
	})
	returnedAt, _ := seen.first(onURL, restartedAt)
	// It keeps the traffic: the next 100 messages after its return are all its own.
	eventually(t, 10*time.Second, "100 messages acked by on-prem after its return", func() bool {
		return seen.count(onURL, returnedAt) >= 100
	})
	if n := seen.count(cloudURL, returnedAt); n > 0 {
		t.Errorf("the cloud stamp acked %d messages after on-prem returned, want 0", n)
	}
	stopSending()
	wg.Wait()

	// Both forwarders drain: the restarted on-prem one also delivers what the killed one had
	// claimed, once the reaper returns those claims. Every ack is in the sink of the stamp that
	// gave it.
	sinks, drained := drainAndStop(t, onprem, cloud)
	acked := map[string]string{} // correlationId → the endpoint of its last ack
	perEndpoint := map[string]int{}
	var missing []string
	for _, a := range seen.acks {
		for _, id := range a.ids {
			acked[id] = a.endpoint
			perEndpoint[a.endpoint]++
			if sinks[a.endpoint][id] == 0 {
				missing = append(missing, id)
			}
		}
	}
	if len(seen.errors) > 0 {
		t.Errorf("%d sends failed, e.g. %s", len(seen.errors), seen.errors[0])
	}
	if len(missing) > 0 {
		t.Fatalf("%d acked messages are not in the sink of the stamp that acked them (lost), e.g. %v", len(missing), missing[:min(5, len(missing))])
	}

	// Duplicates: a message in both sinks (stored by on-prem just before it died, unanswered,
	// then sent again to the cloud under the same id), or twice in one sink (delivered by the
	// killed forwarder, which died before it could remove the segment).
	var dupAcross, dupWithin, delivered int
	for id, n := range sinks[onURL] {
		delivered += n
		dupWithin += n - 1
		if sinks[cloudURL][id] > 0 {
			dupAcross++
		}
	}
	for _, n := range sinks[cloudURL] {
		delivered += n
		dupWithin += n - 1
	}
	unique := len(sinks[onURL]) + len(sinks[cloudURL]) - dupAcross
	unacked := unique - len(acked) // stored, but the answer was cut off when sending stopped
	stats := c.Stats()
	switchTime, returnTime := switchedAt.Sub(killedAt), max(returnedAt.Sub(readyAt), 0)
	if switchTime > failoverSwitchBound {
		t.Errorf("switch to cloud took %v, want at most %v", switchTime, failoverSwitchBound)
	}
	if returnTime > failoverReturnBound {
		t.Errorf("return to on-prem took %v after its readiness, want at most %v", returnTime, failoverReturnBound)
	}
	t.Logf("failover: switch to cloud %v after the SIGKILL; return to on-prem %v after its readiness (restart to ready %v)",
		switchTime.Round(time.Millisecond), returnTime.Round(time.Millisecond), readyAt.Sub(restartedAt).Round(time.Millisecond))
	afterReturn := seen.count(onURL, restartedAt)
	t.Logf("acked %d messages (%d distinct): on-prem %d (%d before the kill, %d after its return), cloud %d; client failovers %d, failed tries on-prem %d, cloud %d",
		stats.Acked(), len(acked), perEndpoint[onURL], perEndpoint[onURL]-afterReturn, afterReturn, perEndpoint[cloudURL],
		stats.Failovers, stats.Endpoints[0].Failures, stats.Endpoints[1].Failures)
	t.Logf("delivered %d lines, %d distinct ids (%d never acked to the client): duplicates %d (%d in both sinks, %d repeated within a sink); none lost; drained %v after sending stopped",
		delivered, unique, unacked, delivered-unique, dupAcross, dupWithin, drained.Round(time.Millisecond))
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}
