package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/deploy/monitoring"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kfake"
)

// monitoringParams are the alert settings of the real-Prometheus test: the production expressions
// (monitoring.Alerts) with windows and hold times cut from minutes to seconds, so that a backlog
// of a few seconds is enough. The backlog alert keeps a hold time longer than the test, so that
// it is seen pending, as an operator's would be in its first minutes.
func monitoringParams() monitoring.Params {
	p := monitoring.DefaultParams
	p.SpoolFullFor = 0
	p.OldestUndelivered, p.OldestUndeliveredFor = 5*time.Second, 0
	p.BreakerWindow, p.BreakerFor = 3*time.Second, 0
	p.DeadLetterWindow, p.DeadLetterFor = time.Minute, 0
	p.BacklogWindow, p.BacklogFor = 8*time.Second, 5*time.Minute
	p.HTTP503Window, p.HTTP503For = 10*time.Second, 0
	p.ReadyWindow = time.Minute
	p.TLSExpiryFor = 0
	p.PrincipalsFailingFor = 0
	return p
}

// freePort returns a port on 127.0.0.1 that was free a moment ago (Prometheus cannot be told to
// pick one and say which).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs Debian's prometheus on 127.0.0.1 with a scrape and evaluation interval of
// 1 s, scraping target over https (trusting caFile) with the target label stamp=stampLabel, and
// the rule file rules; it returns Prometheus's base URL once it is ready.
func startPrometheus(t *testing.T, target, caFile, stampLabel string, rules []byte) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: run `make tools` (scripts/install-tools.sh installs Debian's prometheus package)")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	// The stamp label is a target label, as a stamp's scrape configuration sets it
	// (docs/operations.md); bridgehead does not export it.
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: bridgehead
    scheme: https
    tls_config: {ca_file: %q}
    static_configs:
      - targets: [%q]
        labels: {stamp: %q}
`, caFile, target, stampLabel)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("prometheus log:\n%s", lastLines(string(b), 40))
		}
	})
	url := "http://" + addr
	eventuallyEvery(t, 100*time.Millisecond, 20*time.Second, "prometheus to be ready", func() bool {
		select {
		case <-done:
			b, _ := os.ReadFile(logs.Name())
			t.Fatalf("prometheus exited:\n%s", b)
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}

// exported returns the series names /metrics exposes (a histogram's as name_bucket, _count and
// _sum), read from its # TYPE lines.
func exported(t *testing.T, c *http.Client, url string) map[string]bool {
	t.Helper()
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		if f[3] == "histogram" || f[3] == "summary" {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				names[f[2]+s] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// notExported returns how many distinct Bridgehead series names exprs use, and those of them not
// in names.
func notExported(names map[string]bool, exprs []string) (int, []string) {
	var named []string
	for _, e := range exprs {
		named = append(named, monitoring.MetricNames(e)...)
	}
	slices.Sort(named)
	named = slices.Compact(named)
	var missing []string
	for _, n := range named {
		if !names[n] {
			missing = append(missing, n)
		}
	}
	return len(named), missing
}

// monitoringPost sends body to /v1/messages with key and returns the status.
func monitoringPost(ctx context.Context, c *http.Client, url, key, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func batch(n int, sender string) string {
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"senderId":%q,"value":"reading %d %s"}`, sender, i, strings.Repeat("x", 160))
	}
	return "[" + strings.Join(msgs, ",") + "]"
}

// TestMonitoringWithRealPrometheus runs a real Prometheus (the rules loaded, 1 s scrapes and
// evaluations) against a real `serve --role all` with TLS, keys, a rate limit, a small spool and a
// Kafka sink (kfake) under light load; then it stops the sink. It checks through Prometheus's HTTP
// API that every metric a rule or panel names is exported, that the backlog alert goes pending,
// and that every dashboard query returns series.
func TestMonitoringWithRealPrometheus(t *testing.T) {
	started := time.Now()
	const topic, stamp, loadKey = "monitoring", "e2e", "monitoring-load-key-0123456789"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	stopSink := sync.OnceFunc(cluster.Close)
	t.Cleanup(stopSink)

	dir := t.TempDir()
	ca := tlstest.NewCA(t, "monitoring CA")
	// Ten days left: inside the 14-day alert.
	certPEM, keyPEM := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead", NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(dir, "principals.yaml")
	principalsFile(t, authFile, map[string]string{"load": loadKey}, "") // may send as 01 only

	s := startServe(t, "--role", "all", "--sink", "kafka", "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--kafka-topic", topic, "--auth", "required", "--auth-file", authFile,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--rate-limit", "5000", "--rate-burst", "100",
		"--spool-max-bytes", "512KiB", "--spool-segment-bytes", "32KiB", "--spool-seal-after", "200ms",
		"--retry-max-delay", "500ms")
	hc := httpsClient(ca, nil, 0)
	defer hc.CloseIdleConnections()

	rules, err := monitoring.RuleFile(monitoringParams())
	if err != nil {
		t.Fatal(err)
	}
	promURL := startPrometheus(t, strings.TrimPrefix(s.url, "https://"), caFile, stamp, rules)
	pc, err := promapi.NewClient(promapi.Config{Address: promURL})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(pc)
	query := func(q string) (model.Vector, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, _, _, err := prom.Query(ctx, q, time.Now())
		if err != nil {
			return nil, err
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("%s: got a %s, want a vector", q, v.Type())
		}
		return vec, nil
	}

	// Light load: 10 messages every 20 ms, and once each of the refusals the dashboard shows.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var sent, refused503 atomic.Int64
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }()
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		body := batch(10, "01")
		for loadCtx.Err() == nil {
			if code, err := monitoringPost(loadCtx, hc, s.url, loadKey, body); err == nil {
				sent.Add(1)
				if code == http.StatusServiceUnavailable {
					refused503.Add(1)
				}
			}
			select {
			case <-loadCtx.Done():
			case <-tick.C:
			}
		}
	})
	for _, r := range []struct {
		key, body string
		want      int
	}{
		{"", batch(1, "01"), http.StatusUnauthorized},
		{loadKey, batch(1, "02"), http.StatusForbidden},
		{loadKey, batch(101, "01"), http.StatusTooManyRequests}, // over the burst of 100
	} {
		if code, err := monitoringPost(context.Background(), hc, s.url, r.key, r.body); err != nil || code != r.want {
			t.Fatalf("refusal: got %d %v, want %d", code, err, r.want)
		}
	}

	// Every metric a rule or a panel names is one serve exports.
	names := exported(t, hc, s.url)
	var exprs, queries []string
	for _, a := range monitoring.Alerts(monitoring.DefaultParams) {
		exprs = append(exprs, a.Expr)
	}
	for _, r := range monitoring.Rows {
		for _, p := range r.Panels {
			for _, q := range p.Queries {
				exprs = append(exprs, q.Expr)
				queries = append(queries, monitoring.Expand(q.Expr, stamp, "10s"))
			}
		}
	}
	named, missing := notExported(names, exprs)
	if len(missing) > 0 {
		t.Errorf("named in a rule or panel but not in /metrics: %v", missing)
	}
	// Negative control: a rule with a misspelt name is caught.
	if _, missing := notExported(names, []string{`max by (stamp) (bridgehead_spool_oldest_undelivered_seconds) > 900`}); !slices.Equal(missing, []string{"bridgehead_spool_oldest_undelivered_seconds"}) {
		t.Errorf("a misspelt metric: got missing %v, want it reported", missing)
	}
	t.Logf("%d bridgehead metrics named in rules and panels, all in /metrics", named)

	// Deliveries flow and Prometheus sees them.
	eventuallyEvery(t, 250*time.Millisecond, 20*time.Second, "Prometheus to see deliveries", func() bool {
		v, err := query(`sum by (stamp) (increase(bridgehead_forward_delivered_total[5s])) > 0`)
		return err == nil && len(v) == 1 && string(v[0].Metric["stamp"]) == stamp
	})
	t.Logf("deliveries seen by Prometheus %.1fs after start", time.Since(started).Seconds())
	// Quiet while delivering. (It may be pending for the first second or two: a backlog is
	// there before the delivered counter has the two samples increase needs.)
	eventuallyEvery(t, 250*time.Millisecond, 20*time.Second, "no backlog alert while delivering", func() bool {
		v, err := query(`ALERTS{alertname="BridgeheadBacklogNotDelivering"}`)
		return err == nil && len(v) == 0
	})

	// Stop the sink: a backlog builds, and the backlog alert must go pending.
	stopSink()
	stopped := time.Now()
	alerts := func() map[string]promv1.AlertState {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := prom.Alerts(ctx)
		if err != nil {
			t.Fatalf("alerts: %v", err)
		}
		out := map[string]promv1.AlertState{}
		for _, a := range res.Alerts {
			if a.Labels["stamp"] != stamp {
				t.Errorf("alert %s without stamp %s: %v", a.Labels["alertname"], stamp, a.Labels)
			}
			out[string(a.Labels["alertname"])] = a.State
		}
		return out
	}
	eventuallyEvery(t, 250*time.Millisecond, 30*time.Second, "BridgeheadBacklogNotDelivering to go pending", func() bool {
		return alerts()["BridgeheadBacklogNotDelivering"] == promv1.AlertStatePending
	})
	t.Logf("backlog alert pending %.1fs after the sink stopped", time.Since(stopped).Seconds())

	// The spool fills (512 KiB) and the API answers 503; then every panel query has series.
	eventuallyEvery(t, 100*time.Millisecond, 20*time.Second, "the full spool to refuse messages with 503", func() bool {
		return refused503.Load() > 0
	})
	counts := make([]int, len(queries))
	eventuallyEvery(t, 500*time.Millisecond, 15*time.Second, "every dashboard query to return series", func() bool {
		all := true
		for i, q := range queries {
			v, err := query(q)
			if err != nil {
				t.Fatalf("panel query %s: %v", q, err)
			}
			counts[i] = len(v)
			all = all && len(v) > 0
		}
		return all
	})
	for i, q := range queries {
		t.Logf("%d series: %s", counts[i], q)
	}
	// Negative control: a panel query on a name serve does not export returns nothing, so the
	// wait above would have failed on it.
	if v, err := query(monitoring.Expand(`sum(rate(bridgehead_forward_undelivered_total{stamp=~"$stamp"}[$__rate_interval]))`, stamp, "10s")); err != nil || len(v) != 0 {
		t.Errorf("a query on a made-up metric: got %v (%v), want no series", v, err)
	}
	if v, err := query(`count by (code) (bridgehead_http_requests_total{stamp="e2e",code=~"401|403|429|503"})`); err != nil || len(v) != 4 {
		t.Errorf("refusal codes seen by Prometheus: got %v (%v), want 401, 403, 429 and 503", v, err)
	}

	final := alerts()
	t.Logf("alerts %.1fs after the sink stopped (%d requests sent, %d answered 503): %v",
		time.Since(stopped).Seconds(), sent.Load(), refused503.Load(), final)
	if got := final["BridgeheadTLSCertificateExpiringSoon"]; got != promv1.AlertStateFiring {
		t.Errorf("BridgeheadTLSCertificateExpiringSoon with 10 days left: got %q, want firing", got)
	}
	for _, quiet := range []string{"BridgeheadDeadLettersGrowing", "BridgeheadPrincipalsReloadFailing"} {
		if got, ok := final[quiet]; ok {
			t.Errorf("%s: got %q, want no alert (nothing dead-lettered, principals file fine)", quiet, got)
		}
	}
	t.Logf("whole test %.1fs", time.Since(started).Seconds())
}
