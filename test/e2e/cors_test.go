package e2e

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// testerPage is a stand-in for the prototype's tester page, which was served from another
// origin (an Azure Blob static website): it posts JSON to the stamp with fetch, which makes the
// browser send a CORS preflight first (Content-Type: application/json is not a simple request).
const testerPage = `<!doctype html><html><body><script>
window.results = {};
async function post(name, url) {
  try {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({senderId: "01", value: "from the tester page"})});
    const body = await r.json();
    window.results[name] = {status: r.status, correlationId: body.correlationId || (body.messages && body.messages[0].correlationId) || ""};
  } catch (e) {
    window.results[name] = {status: 0, error: String(e)};
  }
}
const api = new URLSearchParams(location.search).get("api");
Promise.all([post("compat", api + "/ServiceAPI/message"), post("native", api + "/v1/messages")])
  .then(() => { window.done = true; });
</script></body></html>`

// servePage serves testerPage on a free port of 127.0.0.1 and returns its origin.
func servePage(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testerPage))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type corsResult struct {
	Status        int    `json:"status"`
	CorrelationID string `json:"correlationId"`
	Error         string `json:"error"`
}

// TestCORSFromAnotherOrigin loads a tester page from a second port in chromium and posts to
// the stamp's message routes: allowed by --cors-origins, the browser delivers the answers; from
// an origin not listed, it blocks them (and the preflight keeps the POST from being sent).
func TestCORSFromAnotherOrigin(t *testing.T) {
	allowed, other := servePage(t), servePage(t)
	s := startServe(t, "--role", "api", "--cors-origins", allowed)
	b := startBrowser(t, 1280, 800)
	run := func(origin string) map[string]corsResult {
		t.Helper()
		b.do(t, "load the tester page", 15*time.Second, chromedp.Navigate(origin+"/?api="+s.url))
		b.waitFor(t, "both posts to end", 10*time.Second, "window.done === true", "JSON.stringify(window.results)")
		return eval[map[string]corsResult](t, b, "window.results")
	}
	for route, r := range run(allowed) {
		if r.Status != 200 || len(r.CorrelationID) != 36 {
			t.Errorf("%s from the allowed origin %s: %+v, want 200 with a correlationId", route, allowed, r)
		}
	}
	before := len(spooled(t, s.dir))
	for route, r := range run(other) {
		if r.Status != 0 || !strings.Contains(r.Error, "Failed to fetch") {
			t.Errorf("%s from %s (not allowed): %+v, want the browser to block it", route, other, r)
		}
	}
	if after := len(spooled(t, s.dir)); after != before {
		t.Errorf("the spool grew from %d to %d messages on posts from an origin not allowed: the preflight should have stopped them", before, after)
	}
}
