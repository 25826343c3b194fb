package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
)

// Cut-link test bounds. The clients run on their defaults (client.DefaultTimeout 10 s,
// DefaultConnectTimeout 3 s, backoff 0.5-30 s, probes every second): the figures it logs are what
// a supplier gets.
const (
	// cutSwitchBound bounds the time from the cut to the switch: the try in flight (or the next
	// one, on a kept-alive connection) waits its whole Timeout, as nothing answers and nothing
	// resets; 3 s of slack for a loaded machine.
	cutSwitchBound = client.DefaultTimeout + 3*time.Second
	// cutReturnBound bounds the time from the link's return to the first ack from on-prem: the
	// backoff grown during the outage (a few seconds), a probe interval, a connect; generous.
	cutReturnBound = 20 * time.Second
)

// cutLink is a network namespace joined to the test's by a veth pair: a stamp in it listens on
// nsAddr and is reached through the pair. cut takes the namespace's end down: every packet
// between them is then dropped, and nothing is reset, as when a WAN link is cut. Both ends know
// each other's MAC for good (permanent neighbour entries), so no failed ARP turns the silence into
// "no route to host". Owned by the test goroutine.
type cutLink struct {
	ns, hostIf, nsIf string
	hostAddr, nsAddr string
}

// ipCmd runs ip with args and returns its output, or an error that quotes it.
func ipCmd(args ...string) ([]byte, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// mustCutLink makes the namespace and the pair, removed when the test ends. It skips the test
// only when namespaces cannot be made here (not root, or no CAP_SYS_ADMIN in a container).
func mustCutLink(t *testing.T) *cutLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the cut-link test makes a network namespace (ip netns add), which needs root: run it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) is needed to make a network namespace: run make tools (scripts/install-tools.sh): %v", err)
	}
	// Names and a /30 of 10.254.0.0/16 from the pid, so that concurrent runs do not meet.
	pid := os.Getpid()
	idx := pid % 16384
	l := &cutLink{
		ns:       fmt.Sprintf("bh-cut-%d", pid),
		hostIf:   fmt.Sprintf("bhc%dh", pid),
		nsIf:     fmt.Sprintf("bhc%dn", pid),
		hostAddr: fmt.Sprintf("10.254.%d.%d", idx/64, idx%64*4+1),
		nsAddr:   fmt.Sprintf("10.254.%d.%d", idx/64, idx%64*4+2),
	}
	if _, err := ipCmd("netns", "add", l.ns); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		_, _ = ipCmd("link", "del", l.hostIf) // removes both ends; gone already if the namespace went first
		if _, err := ipCmd("netns", "del", l.ns); err != nil {
			t.Errorf("remove the test's namespace: %v", err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", l.hostIf, "type", "veth", "peer", "name", l.nsIf, "netns", l.ns},
		{"addr", "add", l.hostAddr + "/30", "dev", l.hostIf},
		{"link", "set", l.hostIf, "up"},
		{"-n", l.ns, "addr", "add", l.nsAddr + "/30", "dev", l.nsIf},
		{"-n", l.ns, "link", "set", l.nsIf, "up"},
		{"-n", l.ns, "link", "set", "lo", "up"},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ipCmd("neigh", "replace", l.nsAddr, "lladdr", l.mac(t, l.ns, l.nsIf), "dev", l.hostIf, "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	l.neighInNS(t)
	return l
}

// neighInNS makes the namespace's entry for the host's end permanent (taking its end down drops
// it, so restore makes it again).
func (l *cutLink) neighInNS(t *testing.T) {
	t.Helper()
	if _, err := ipCmd("-n", l.ns, "neigh", "replace", l.hostAddr, "lladdr", l.mac(t, "", l.hostIf), "dev", l.nsIf, "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
}

// mac returns the hardware address of the interface dev in namespace ns ("" for the test's).
func (l *cutLink) mac(t *testing.T, ns, dev string) string {
	t.Helper()
	args := []string{"-j", "link", "show", "dev", dev}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := ipCmd(args...)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].Address == "" {
		t.Fatalf("ip %v: %q: want one link with an address (%v)", args, out, err)
	}
	return links[0].Address
}

// cut drops every packet between the namespace and the test's from now on.
func (l *cutLink) cut(t *testing.T) {
	t.Helper()
	if _, err := ipCmd("-n", l.ns, "link", "set", l.nsIf, "down"); err != nil {
		t.Fatal(err)
	}
}

// restore brings the link back.
func (l *cutLink) restore(t *testing.T) {
	t.Helper()
	if _, err := ipCmd("-n", l.ns, "link", "set", l.nsIf, "up"); err != nil {
		t.Fatal(err)
	}
	l.neighInNS(t)
}

// timedLine is a line a process printed, and when the test read it.
type timedLine struct {
	at   time.Time
	text string
}

// lineLog collects a process's lines as they come; guarded by mu (a reader goroutine appends,
// the test reads).
type lineLog struct {
	mu    sync.Mutex
	lines []timedLine
}

// collect reads r line by line into l until EOF, then closes done.
func (l *lineLog) collect(r io.Reader, done chan<- struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, timedLine{time.Now(), sc.Text()})
		l.mu.Unlock()
	}
}

// first returns the first line after t that contains every one of words.
func (l *lineLog) first(after time.Time, words ...string) (timedLine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		if !line.at.After(after) {
			continue
		}
		for _, w := range words {
			if !strings.Contains(line.text, w) {
				continue next
			}
		}
		return line, true
	}
	return timedLine{}, false
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, line := range l.lines[max(0, len(l.lines)-40):] {
		fmt.Fprintf(&b, "%s %s\n", line.at.Format("15:04:05.000"), line.text)
	}
	return b.String()
}

// sendProc is a `bridgehead send` process fed one plain line every failoverSendEvery.
type sendProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  strings.Builder // read only after the process has exited
	stderr  lineLog
	errRead chan struct{} // closed when stderr reached EOF
	stop    chan struct{} // closed to stop feeding lines
	fed     chan struct{} // closed when the feeder returned and closed stdin
}

// startSendProc runs `bridgehead send` on its defaults with urls as its --url flags.
func startSendProc(t *testing.T, acked string, urls ...string) *sendProc {
	t.Helper()
	args := []string{"send", "--sender-id", "cutlink-send", "--batch-window", "20ms", "--max-attempts", "-1",
		"--acked-file", acked}
	for _, u := range urls {
		args = append(args, "--url", u)
	}
	p := &sendProc{cmd: exec.Command(binary, args...), errRead: make(chan struct{}), stop: make(chan struct{}),
		fed: make(chan struct{})}
	p.cmd.Env = withoutBridgeheadEnv()
	p.cmd.Stdout = &p.stdout
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	go p.stderr.collect(stderr, p.errRead)
	go p.feed()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			p.finish()
		}
	})
	return p
}

// feed writes a line every failoverSendEvery until stop is closed, then closes stdin.
func (p *sendProc) feed() {
	defer close(p.fed)
	defer p.stdin.Close()
	tick := time.NewTicker(failoverSendEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		if _, err := fmt.Fprintf(p.stdin, "reading %d\n", seq); err != nil {
			return
		}
	}
}

// finish stops feeding and waits for send to exit; it returns send's error.
func (p *sendProc) finish() error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.fed
	<-p.errRead
	return p.cmd.Wait()
}

// TestCutLink runs the on-prem stamp in a network namespace of its own, the cloud stamp beside
// the test, and two clients that prefer on-prem, sending all the time: the Go client and a
// `bridgehead send` process, both on their default timeouts. The link to on-prem is cut mid-load
// (packets dropped, nothing reset): both must move to the cloud stamp within their timeouts and
// say why; then the link comes back and both must return to on-prem. Every acked message must be
// in a sink afterwards. docs/failover.md quotes the figures it logs.
func TestCutLink(t *testing.T) {
	began := time.Now()
	link := mustCutLink(t)
	onprem, cloud := newFailoverStamp(t, "onprem"), newFailoverStamp(t, "cloud")
	onprem.netns, onprem.listen = link.ns, link.nsAddr+":0"
	onprem.start(t)
	cloud.start(t)
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	onprem.ready(t, hc)
	cloud.ready(t, hc)
	onURL, cloudURL := onprem.proc.url, cloud.proc.url

	type timedFailover struct {
		at time.Time
		client.Failover
	}
	var foMu sync.Mutex
	var failovers []timedFailover // appended by the sender's Sends, read by the test
	c, err := client.New(client.Config{
		Endpoints:   []string{onURL, cloudURL},
		MaxAttempts: -1, // until a stamp acks or sending ends: no request given up on
		OnFailover: func(f client.Failover) {
			foMu.Lock()
			defer foMu.Unlock()
			failovers = append(failovers, timedFailover{time.Now(), f})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := &failoverLog{}
	sendCtx, stopSending := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopSending(); wg.Wait() }() // also on t.Fatal
	sendingFrom := time.Now()
	wg.Go(func() { failoverSend(sendCtx, c, seen) })
	ackedFile := filepath.Join(t.TempDir(), "acked.txt")
	sp := startSendProc(t, ackedFile, onURL, cloudURL)
	defer func() {
		if t.Failed() {
			t.Logf("send's stderr (last lines):\n%s", sp.stderr.String())
		}
	}()

	eventually(t, 15*time.Second, "1 s of traffic acked by on-prem from both clients", func() bool {
		_, viaOnprem := sp.stderr.first(sendingFrom, "via "+onURL)
		return time.Since(sendingFrom) >= time.Second && seen.count(onURL, sendingFrom) > 0 && viaOnprem
	})
	if n := seen.count(cloudURL, sendingFrom); n > 0 {
		t.Errorf("the cloud stamp acked %d messages while on-prem was reachable, want 0", n)
	}

	cutAt := time.Now()
	link.cut(t)

	// Both clients move to the cloud stamp within their timeouts, and say why.
	var sendSwitch timedLine
	eventually(t, cutSwitchBound+5*time.Second, "both clients acked by the cloud stamp after the cut", func() bool {
		_, goOK := seen.first(cloudURL, cutAt)
		var sendOK bool
		sendSwitch, sendOK = sp.stderr.first(cutAt, "send: failover: "+onURL+" failed (", "sending to "+cloudURL)
		return goOK && sendOK
	})
	goSwitchAt, _ := seen.first(cloudURL, cutAt)
	foMu.Lock()
	var goCause string
	for _, f := range failovers {
		if f.at.After(cutAt) && f.From == onURL && f.To == cloudURL {
			goCause = f.Cause
			break
		}
	}
	foMu.Unlock()
	wantCauses := []string{fmt.Sprintf("no answer within %v", client.DefaultTimeout),
		fmt.Sprintf("no connection within %v", client.DefaultConnectTimeout)}
	isWanted := func(s string) bool { return strings.Contains(s, wantCauses[0]) || strings.Contains(s, wantCauses[1]) }
	if !isWanted(goCause) || !isWanted(sendSwitch.text) {
		t.Errorf("failover causes: Go client %q, send %q; want one of %q", goCause, sendSwitch.text, wantCauses)
	}
	goSwitch, sendSwitchTime := goSwitchAt.Sub(cutAt), sendSwitch.at.Sub(cutAt)
	for who, d := range map[string]time.Duration{"the Go client": goSwitch, "send": sendSwitchTime} {
		if d > cutSwitchBound {
			t.Errorf("%s switched to the cloud stamp %v after the cut, want at most %v", who, d, cutSwitchBound)
		}
	}
	// The outage lasts a second more, with the cloud stamp acking.
	eventually(t, 10*time.Second, "a second of outage with the cloud stamp acking", func() bool {
		return time.Since(goSwitchAt) >= time.Second && time.Since(sendSwitch.at) >= time.Second && seen.count(cloudURL, goSwitchAt) > 0
	})

	restoredAt := time.Now()
	link.restore(t)
	var sendReturn timedLine
	eventually(t, cutReturnBound, "both clients acked by on-prem after the link came back", func() bool {
		_, goOK := seen.first(onURL, restoredAt)
		var sendOK bool
		sendReturn, sendOK = sp.stderr.first(restoredAt, "send: back to "+onURL)
		return goOK && sendOK
	})
	goReturnAt, _ := seen.first(onURL, restoredAt)
	// On-prem keeps the traffic: a second of it, all its own.
	eventually(t, 10*time.Second, "a second of traffic acked by on-prem after its return", func() bool {
		return time.Since(goReturnAt) >= time.Second
	})
	if n := seen.count(cloudURL, goReturnAt.Add(time.Second/2)); n > 0 {
		t.Errorf("the cloud stamp acked %d Go client messages after on-prem was back, want 0", n)
	}
	stopSending()
	wg.Wait()
	if err := sp.finish(); err != nil {
		t.Errorf("send: exit %v, want 0; stdout %q", err, sp.stdout.String())
	}

	// Every ack is in a sink: the Go client's in the sink of the stamp that acked it, send's
	// (whose acked file does not say which stamp) in either.
	sinks, drained := drainAndStop(t, onprem, cloud)
	var missing []string
	goAcked := 0
	for _, a := range seen.acks {
		for _, id := range a.ids {
			goAcked++
			if sinks[a.endpoint][id] == 0 {
				missing = append(missing, id)
			}
		}
	}
	b, err := os.ReadFile(ackedFile)
	if err != nil {
		t.Fatal(err)
	}
	sendAcked := 0
	for line := range strings.Lines(string(b)) {
		id := strings.TrimSpace(line)
		sendAcked++
		if sinks[onURL][id]+sinks[cloudURL][id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(seen.errors) > 0 {
		t.Errorf("%d Go client sends failed, e.g. %s", len(seen.errors), seen.errors[0])
	}
	if len(missing) > 0 {
		t.Fatalf("%d acked messages are in no sink (lost), e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	dups := 0
	for id := range sinks[onURL] {
		if sinks[cloudURL][id] > 0 {
			dups++
		}
	}
	summary, _, _ := strings.Cut(sp.stdout.String(), "\n")
	t.Logf("cut link: switch to cloud %v after the cut for the Go client (%s), %v for send (%s)",
		goSwitch.Round(time.Millisecond), goCause, sendSwitchTime.Round(time.Millisecond), strings.TrimPrefix(sendSwitch.text, "send: "))
	t.Logf("link back: first on-prem ack %v after it for the Go client, %v for send (its line %q)",
		goReturnAt.Sub(restoredAt).Round(time.Millisecond), sendReturn.at.Sub(restoredAt).Round(time.Millisecond), sendReturn.text)
	t.Logf("acked: Go client %d (on-prem %d, cloud %d; failovers %d), send %d (%s); in both sinks %d; none lost; spools drained %v after the clients stopped",
		goAcked, seen.count(onURL, time.Time{}), seen.count(cloudURL, time.Time{}), c.Stats().Failovers, sendAcked, summary, dups,
		drained.Round(time.Millisecond))
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}
