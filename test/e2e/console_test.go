package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"
)

// The console tests drive the page that `serve` embeds (package web) in Debian's headless
// chromium, against the real binary: what an operator sees, CSP and all.

// screenshotEnv names the file that TestConsoleScreenshot writes (docs/console.png).
const screenshotEnv = "BRIDGEHEAD_CONSOLE_SCREENSHOT"

// browser is a headless chromium tab and what its console said.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	messages []chromedp.ConsoleMessage // errors and exceptions only; guarded by mu
}

// startBrowser starts headless chromium at width×height. The test fails (it does not skip)
// without chromium: `make test` installs it (scripts/install-tools.sh). On failure, a
// full-page screenshot goes to the test's artifact directory and its path to the log.
func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the console test needs Debian's chromium (scripts/install-tools.sh installs it; `make test` runs that): %v", err)
	}
	var out strings.Builder // chromium's own output, shown on failure
	var outMu sync.Mutex
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests may run as root, where chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(writerFunc(func(p []byte) (int, error) {
			outMu.Lock()
			defer outMu.Unlock()
			return out.Write(p)
		})),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx}
	// Subscribe before anything loads; the first call starts the browser (without a timeout,
	// which would end the browser with it).
	msgs := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium %s: %v", path, err)
	}
	// WindowSize is the window's outer size; the layout checks and the documentation's
	// screenshot are about the viewport, so set that exactly.
	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	defer vcancel()
	if err := chromedp.Do(vctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("set the viewport: %v", err)
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.messages = append(b.messages, m)
				b.mu.Unlock()
			}
		}
	}()
	artifacts := t.ArtifactDir()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-collected
	})
	t.Cleanup(func() { // runs first: the browser is still up
		if !t.Failed() {
			return
		}
		for _, m := range b.consoleErrors() {
			t.Logf("browser console: %s (%s %s)", m, m.Source, m.URL)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("failure screenshot: %v", err)
			return
		}
		file := filepath.Join(artifacts, "console-failure.png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Logf("failure screenshot: %v", err)
			return
		}
		t.Logf("failure screenshot: %s (kept after the run with go test -artifacts)", file)
		outMu.Lock()
		defer outMu.Unlock()
		var lines []string
		for _, l := range strings.Split(out.String(), "\n") {
			if l != "" && !strings.Contains(l, "dbus") { // no system bus in a container: noise
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			t.Logf("chromium's last output:\n%s", strings.Join(lines[max(0, len(lines)-20):], "\n"))
		}
	})
	return b
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// do runs the actions, failing the test after d.
func (b *browser) do(t *testing.T, what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy, failing the test after d with what
// and the value of show (an expression that says what the page shows instead).
func (b *browser) waitFor(t *testing.T, what string, d time.Duration, expr, show string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d)))
	if err != nil {
		got := "?"
		if show != "" {
			got = eval[string](t, b, "String("+show+")")
		}
		t.Fatalf("%s: not within %v (%v); the page shows %q", what, d, err, got)
	}
}

func (b *browser) consoleErrors() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.messages...)
}

// makeDeadLetter writes one message into a new spool at dir and dead-letters its segment, as
// a forwarder does with a message the sink refused. It returns the segment's id and the
// message's correlationId.
func makeDeadLetter(t *testing.T, dir, reason string) (string, uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := message.Message{ID: uuid.Must(uuid.NewV7()), SenderID: "plant-7", Value: `{"temp":1e999}`,
		ReceivedAt: time.Now().UTC(), Stamp: "e2e", Properties: map[string]string{"unit": "C"}}
	if err := sp.Append(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := sp.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := sp.Claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.DeadLetter(ctx, c, reason); err != nil {
		t.Fatal(err)
	}
	dead, err := sp.List(ctx, spool.StateDead)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters after DeadLetter: %v %v, want one", dead, err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return dead[0].ID, m.ID
}

// sendBurst posts n single messages from 8 clients and fails the test on any non-200.
func sendBurst(t *testing.T, s *server, sender string, n int) {
	t.Helper()
	const clients = 8
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; i < n; i += clients {
				code, _, body, err := s.post(context.Background(), "/v1/messages", fmt.Sprintf(`{"senderId":%q,"value":"burst %d"}`, sender, i))
				if err == nil && code != 200 {
					err = fmt.Errorf("message %d: %d %s", i, code, body)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// tile is the expression of a tile's raw value (data-v) in a stamp panel (#local or #peer).
func tile(panel, field string) string {
	return fmt.Sprintf(`document.querySelector('#%s [data-f="%s"]').dataset.v`, panel, field)
}

// noOverflow is true when the page needs no horizontal scrolling.
const noOverflow = `document.documentElement.scrollWidth <= window.innerWidth`

func TestConsole(t *testing.T) {
	start := time.Now()
	dir := filepath.Join(t.TempDir(), "spool")
	deadID, deadMsg := makeDeadLetter(t, dir, "e2e: 1 message(s) refused permanently by the sink: record too large")
	// Role api: no forwarder, so what the test sends stays ready and the depth is exact. The
	// second --spool-dir wins over startServe's fresh one: serve finds the dead letter there.
	s := startServe(t, "--role", "api", "--spool-dir", dir)
	s.dir = dir
	b := startBrowser(t, 1280, 800)

	// The page loads, with its style sheet, and shows this stamp's status.
	b.do(t, "load the console", 15*time.Second, chromedp.Navigate(s.url+"/"))
	b.waitFor(t, "the stamp's name and readiness", 10*time.Second,
		`document.querySelector('#local [data-f="stamp"]').textContent === 'e2e' && `+tile("local", "ready")+` === 'true'`,
		`document.querySelector('#local').innerText`)
	if got := eval[string](t, b, `getComputedStyle(document.body).backgroundColor`); got == "rgba(0, 0, 0, 0)" {
		t.Fatalf("body background %s: the style sheet did not apply", got)
	}
	if got := eval[bool](t, b, `typeof Chart === 'function' && !!Chart.getChart('chart-depth')`); !got {
		t.Fatal("the charts were not created (Chart.js did not load?)")
	}
	b.waitFor(t, "no horizontal overflow at 1280 px", 3*time.Second, noOverflow, `document.documentElement.scrollWidth`)

	// The pre-made dead letter is listed with its reason; Show lists its message.
	row := fmt.Sprintf(`document.querySelector('#dead-table tbody tr[data-id="%s"]')`, deadID)
	b.waitFor(t, "the dead letter in the table", 10*time.Second,
		row+` !== null && `+row+`.innerText.includes('record too large')`, `document.querySelector('#dead').innerText`)
	b.do(t, "show the dead letter", 5*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#dead-table tr[data-id="%s"] button[data-action="show"]`, deadID))))
	b.waitFor(t, "the dead letter's message", 5*time.Second,
		fmt.Sprintf(`!document.querySelector('#dead-detail').hidden && document.querySelector('#detail-table tbody').innerText.includes('%s')`, deadMsg),
		`document.querySelector('#dead').innerText`)

	// A message sent through the form is acknowledged with its correlationId, a UUID, which is
	// in the spool.
	b.do(t, "send through the form", 5*time.Second,
		chromedp.SetValue(chromedp.CSS("#send-sender"), "console-e2e"),
		chromedp.SetValue(chromedp.CSS("#send-value"), "hello from the browser test"),
		chromedp.Click(chromedp.CSS("#send-button")))
	b.waitFor(t, "the correlationId on the page", 5*time.Second,
		`document.querySelector('#send-cid') !== null`, `document.querySelector('#send-result').innerText`)
	cid := eval[string](t, b, `document.querySelector('#send-cid').textContent`)
	id, err := uuid.Parse(cid)
	if err != nil || id.Version() != 7 || id.String() != cid {
		t.Fatalf("correlationId on the page %q: %v; want a lower-case UUIDv7", cid, err)
	}
	if !spooled(t, dir)[id] {
		t.Fatalf("the page's correlationId %s is not in the spool", id)
	}
	b.waitFor(t, "ready depth 1 after the form's message", 5*time.Second, tile("local", "ready-messages")+` === '1'`, tile("local", "ready-messages"))

	// A burst from Go: the ready tile, the depth chart and the ingest rate follow.
	const burst = 200
	sendBurst(t, s, "burst", burst)
	want := fmt.Sprint(burst + 1)
	b.waitFor(t, "the ready tile after the burst", 5*time.Second, tile("local", "ready-messages")+` === '`+want+`'`, tile("local", "ready-messages"))
	b.waitFor(t, "the depth chart after the burst", 5*time.Second,
		`Chart.getChart('chart-depth').data.datasets[0].data.at(-1).y === `+want,
		`JSON.stringify(Chart.getChart('chart-depth').data.datasets[0].data.at(-1))`)
	b.waitFor(t, "the ingest rate in the chart", 5*time.Second,
		`Chart.getChart('chart-rates').data.datasets[0].data.some(p => p.y > 0)`,
		`JSON.stringify(Chart.getChart('chart-rates').data.datasets[0].data)`)
	if got := eval[string](t, b, tile("local", "accepted-total")); got != want {
		t.Fatalf("accepted tile %s, want %s", got, want)
	}

	// At phone width nothing needs horizontal scrolling, dead-letter detail table included.
	b.do(t, "phone viewport", 5*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.waitFor(t, "no horizontal overflow at 390 px", 3*time.Second,
		`window.innerWidth === 390 && `+noOverflow, "document.documentElement.scrollWidth + ' > ' + window.innerWidth")
	b.do(t, "desktop viewport", 5*time.Second, chromedp.EmulateViewport(1280, 800))

	// Requeue all takes a second click: one click arms the button, says what the next would
	// do, and disarms itself after 5 s with nothing requeued.
	b.do(t, "one click on requeue all", 5*time.Second, chromedp.Click(chromedp.CSS("#requeue-all")))
	b.waitFor(t, "requeue all armed", 3*time.Second,
		`document.querySelector('#requeue-all').textContent === 'Confirm: requeue 1' && document.querySelector('#dead-msg').textContent.startsWith('Click again within 5 s to send all 1 dead segment back')`,
		`document.querySelector('#requeue-all').textContent + ' / ' + document.querySelector('#dead-msg').textContent`)
	b.waitFor(t, "requeue all disarmed by itself", 8*time.Second,
		`document.querySelector('#requeue-all').textContent === 'Requeue all' && document.querySelector('#dead-msg').textContent === ''`,
		`document.querySelector('#requeue-all').textContent`)
	if got := eval[int](t, b, fmt.Sprintf(`document.querySelectorAll('#dead-table tr[data-id="%s"]').length`, deadID)); got != 1 {
		t.Fatalf("after a single click on requeue all the dead letter is listed %d times, want 1", got)
	}
	if dead, err := filepath.Glob(filepath.Join(dir, "dead", "*")); err != nil || len(dead) == 0 {
		t.Fatalf("a single click on requeue all emptied dead/ (%v, %v)", dead, err)
	}

	// Requeue from the page: the dead list empties and the message is ready again.
	b.do(t, "requeue the dead letter", 5*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#dead-table tr[data-id="%s"] button[data-action="requeue"]`, deadID))))
	b.waitFor(t, "an empty dead-letter list", 5*time.Second,
		`document.querySelectorAll('#dead-table tbody tr').length === 0 && !document.querySelector('#dead-empty').hidden && document.querySelector('#dead-msg').textContent.includes('Requeued 1 segment')`,
		`document.querySelector('#dead').innerText`)
	want = fmt.Sprint(burst + 2)
	b.waitFor(t, "ready depth after the requeue", 5*time.Second,
		tile("local", "ready-messages")+` === '`+want+`' && `+tile("local", "dead-messages")+` === '0'`, tile("local", "ready-messages"))

	// An invalid message: the problem's title and detail, and the field at fault.
	b.do(t, "send an invalid message", 5*time.Second,
		chromedp.SetValue(chromedp.CSS("#send-sender"), "not a sender id!"),
		chromedp.Click(chromedp.CSS("#send-button")))
	b.waitFor(t, "the problem on the page", 5*time.Second,
		`(t => t.includes('Invalid messages') && t.includes('nothing was accepted') && t.includes('senderId'))(document.querySelector('#send-result.error')?.textContent || '')`,
		`document.querySelector('#send-result').textContent`)

	// Nothing went to the browser's console but the 400 just provoked: no script error, no
	// CSP violation, no failed asset.
	var unexpected []string
	for _, m := range b.consoleErrors() {
		if m.Source == "network" && strings.HasSuffix(m.URL, "/v1/messages") && strings.Contains(m.Text, "400") {
			continue
		}
		unexpected = append(unexpected, fmt.Sprintf("%s (%s %s)", m, m.Source, m.URL))
	}
	if len(unexpected) > 0 {
		t.Fatalf("%d browser console errors:\n%s", len(unexpected), strings.Join(unexpected, "\n"))
	}
	// And the watch works: a style attribute, which the policy refuses, is reported.
	eval[chromedp.Void](t, b, `void document.body.appendChild(document.createElement('i')).setAttribute('style', 'color: red')`)
	eventually(t, 5*time.Second, "a CSP violation provoked on purpose to reach the console watch", func() bool {
		return slicesContain(b.consoleErrors(), "Content Security Policy")
	})
	t.Logf("console test took %v", time.Since(start).Round(100*time.Millisecond))
}

func slicesContain(msgs []chromedp.ConsoleMessage, text string) bool {
	for _, m := range msgs {
		if strings.Contains(m.Text, text) {
			return true
		}
	}
	return false
}

// TestConsoleAuth: on a stamp with --auth required, the page sends the API key typed into it
// (X-Api-Key) with every request, keeps it for the tab's session, and says clearly what a 401
// or a 403 means: no key, a sender's key on the admin routes, a senderId the key may not use.
func TestConsoleAuth(t *testing.T) {
	senderKey, senderHash := auth.NewKey()
	adminKey, adminHash := auth.NewKey()
	principals := filepath.Join(t.TempDir(), "principals.yaml")
	if err := os.WriteFile(principals, []byte(`principals:
  - name: supplier
    keySha256: `+senderHash+`
    senders: ["console-*"]
  - name: operator
    keySha256: `+adminHash+`
    role: admin
    senders: ["*"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "spool")
	deadID, _ := makeDeadLetter(t, dir, "e2e: refused")
	s := startServe(t, "--role", "api", "--spool-dir", dir, "--auth", "required", "--auth-file", principals)
	b := startBrowser(t, 1280, 800)
	b.do(t, "load the console", 15*time.Second, chromedp.Navigate(s.url+"/"))
	useKey := func(key string) {
		t.Helper()
		b.do(t, "type the API key", 5*time.Second,
			chromedp.Click(chromedp.CSS("#key-clear")),
			chromedp.SendKeys(chromedp.CSS("#api-key"), key+kb.Enter))
	}
	send := func(sender string) {
		t.Helper()
		b.do(t, "send as "+sender, 5*time.Second,
			chromedp.SetValue(chromedp.CSS("#send-sender"), sender),
			chromedp.Click(chromedp.CSS("#send-button")))
	}
	const sendResult, deadMsg = `document.querySelector('#send-result').textContent`, `document.querySelector('#dead-msg').textContent`

	// No key: the status is open (no --metrics-auth), the admin and message routes are not.
	b.waitFor(t, "the status without a key", 10*time.Second, `document.querySelector('#conn').textContent === 'live'`, `document.querySelector('#conn').textContent`)
	b.waitFor(t, "a 401 on the dead letters", 5*time.Second, deadMsg+`.startsWith('Unauthorized:') && `+deadMsg+`.includes('API key')`, deadMsg)
	send("console-1")
	b.waitFor(t, "a 401 on sending", 5*time.Second, sendResult+`.startsWith('Unauthorized:')`, sendResult)

	// A sender's key: it may send as its senderIds, not as another, and not administer.
	useKey(senderKey)
	send("console-1")
	b.waitFor(t, "a message sent with the sender's key", 5*time.Second, `document.querySelector('#send-cid') !== null`, sendResult)
	send("plant-9")
	b.waitFor(t, "a 403 for a foreign senderId", 5*time.Second, sendResult+`.startsWith('Forbidden:') && `+sendResult+`.includes('plant-9')`, sendResult)
	b.waitFor(t, "admin role required", 5*time.Second, deadMsg+`.startsWith('Forbidden: admin role required')`, deadMsg)

	// The admin's key, kept across a reload of the tab: the dead letters, and a requeue.
	useKey(adminKey)
	b.do(t, "reload", 15*time.Second, chromedp.Reload())
	if got := eval[string](t, b, `document.querySelector('#api-key').value`); got != adminKey {
		t.Fatalf("after a reload the key field holds %q, want the admin key from sessionStorage", got)
	}
	b.do(t, "requeue all (two clicks)", 10*time.Second,
		chromedp.WaitEnabled(chromedp.CSS("#requeue-all")),
		chromedp.Click(chromedp.CSS("#requeue-all")),
		chromedp.Click(chromedp.CSS("#requeue-all")))
	b.waitFor(t, "the dead letter requeued by the admin", 5*time.Second,
		fmt.Sprintf(`%s.startsWith('Requeued 1 segment') && !document.querySelector('#dead-table tr[data-id="%s"]')`, deadMsg, deadID), deadMsg)

	// The browser logs each refused request as a failed load; nothing else may be there.
	for _, m := range b.consoleErrors() {
		if m.Source == "network" && (strings.Contains(m.Text, "401") || strings.Contains(m.Text, "403")) {
			continue
		}
		t.Errorf("browser console: %s (%s %s)", m, m.Source, m.URL)
	}
}

// TestConsoleScreenshot writes the screenshot of docs/operations.md when BRIDGEHEAD_CONSOLE_SCREENSHOT
// names a file: two stamps (the on-prem one, whose console is shown, and its peer, whose
// sink is unreachable), some traffic, one dead letter.
//
//	BRIDGEHEAD_CONSOLE_SCREENSHOT=$PWD/docs/console.png go test -race -run ConsoleScreenshot ./test/e2e/
func TestConsoleScreenshot(t *testing.T) {
	file := os.Getenv(screenshotEnv)
	if file == "" {
		t.Skip(screenshotEnv + " is not set")
	}
	cloud := startServe(t, "--stamp", "cloud", "--role", "all", "--sink", "kafka",
		"--kafka-brokers", "127.0.0.1:1", "--kafka-topic", "readings", "--shutdown-grace", "2s")
	dir := filepath.Join(t.TempDir(), "spool")
	makeDeadLetter(t, dir, "1 message(s) refused permanently by the sink: kafka: record of 1200512 bytes exceeds the 1047552-byte limit")
	onprem := startServe(t, "--stamp", "onprem", "--role", "all", "--spool-dir", dir, "--peer-url", cloud.url)
	b := startBrowser(t, 1280, 800)
	b.do(t, "load the console", 15*time.Second, chromedp.Navigate(onprem.url+"/"))

	// About a minute of traffic that rises and falls, so the charts have a shape.
	const traffic = 70 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), traffic)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				phase := float64(time.Since(began)) / float64(traffic)                           // 0 → 1
				pause := time.Duration(float64(40*time.Millisecond) * (1.2 - 4*phase*(1-phase))) // faster mid-run
				body := fmt.Sprintf(`{"senderId":"plant-%d","value":"reading %d"}`, c, i)
				_, _, _, _ = onprem.post(ctx, "/v1/messages", body)
				if i%3 == 0 {
					_, _, _, _ = cloud.post(ctx, "/v1/messages", body)
				}
				select { // pacing of a client, not a wait for a condition
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	wg.Wait()
	b.waitFor(t, "the peer's tiles", 10*time.Second, `!document.querySelector('#peer').hidden && `+tile("peer", "ready")+` !== undefined`, `document.querySelector('#peer').innerText`)
	b.do(t, "send through the form", 5*time.Second, chromedp.Click(chromedp.CSS("#send-button")))
	b.waitFor(t, "the correlationId", 5*time.Second, `document.querySelector('#send-cid') !== null`, `document.querySelector('#send-result').innerText`)
	eval[chromedp.Void](t, b, `void window.scrollTo(0, 0)`) // the click scrolled the form into view
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", file, len(png))
}

// TestConsoleShowsWhatIsWrong: a stamp whose sink is down still takes messages, so it is ready;
// the console must still say, in red, that nothing is being delivered (and why), and must show
// an unreachable peer as unknown (grey, the reason on hover), not with its last green dot, while
// asking it less and less often instead of logging an error every second.
func TestConsoleShowsWhatIsWrong(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0") // a port that refuses: listen, then close
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	s := startServe(t, "--role", "all", "--sink", "kafka", "--kafka-brokers", deadAddr, "--kafka-topic", "t",
		"--peer-url", "http://"+deadAddr)
	sendBurst(t, s, "stalled", 3)
	if code, _, body, err := s.post(context.Background(), "/v1/messages", `{"senderId":"scada","value":"alarm","priority":0}`); err != nil || code != 200 {
		t.Fatalf("an alarm: %d %s %v", code, body, err)
	}
	b := startBrowser(t, 1280, 800)
	b.do(t, "load the console", 15*time.Second, chromedp.Navigate(s.url+"/?stallSeconds=2"))

	// What waits, by priority: the alarm apart from the telemetry.
	prios := `document.querySelector('#local [data-f="priorities"]')`
	b.waitFor(t, "the backlog by priority", 15*time.Second,
		`!`+prios+`.hidden && `+prios+`.dataset.v === '0:1,4:3' && `+prios+`.textContent.startsWith('Waiting by priority: 0 (highest): 1 message, oldest ')`,
		prios+`.textContent`)

	stalled := `document.querySelector('#local [data-f="stalled"]')`
	b.waitFor(t, "the stalled-delivery warning", 15*time.Second,
		`!`+stalled+`.hidden && `+stalled+`.textContent.startsWith('nothing delivered for ')`, `document.querySelector('#local').innerText`)
	if got := eval[string](t, b, tile("local", "ready")); got != "true" {
		t.Errorf("this stamp's readiness %q: a down sink must not make the API unready", got)
	}
	peerReady := `document.querySelector('#peer [data-f="ready"]')`
	b.waitFor(t, "the peer shown as unreachable", 10*time.Second,
		peerReady+`.dataset.v === 'unreachable' && `+peerReady+`.classList.contains('unknown') && `+peerReady+`.title.includes('unreachable')`,
		`document.querySelector('#peer').innerText`)

	// Over the next 6 s, the failing peer is asked at most 3 more times (1, 2, 4 s apart), not 6.
	before := len(b.consoleErrors())
	time.Sleep(6 * time.Second)
	if n := len(b.consoleErrors()) - before; n > 3 {
		t.Errorf("%d console errors in 6 s while the peer is down, want at most 3 (backoff)", n)
	}
	t.Logf("stalled: %q", eval[string](t, b, stalled+`.textContent`))
}
