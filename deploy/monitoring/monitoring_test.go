package monitoring

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/deploy"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// promtool returns the path of Debian's promtool, failing (never skipping) when it is missing.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `make tools` (scripts/install-tools.sh installs Debian's prometheus package)")
	}
	return p
}

// runPromtool runs promtool with args in dir and returns its combined output and error.
func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./deploy/monitoring)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what deploy/monitoring generates: run go generate ./deploy/monitoring", name)
		}
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	if out, err := runPromtool(t, ".", "check", "rules", "rules.yaml"); err != nil {
		t.Fatalf("promtool check rules rules.yaml: %v\n%s", err, out)
	}
	// Negative control: promtool does refuse a rule file with a broken expression.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum by (stamp (bridgehead_ready)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runPromtool(t, ".", "check", "rules", bad); err == nil {
		t.Fatalf("promtool check rules accepted a broken expression:\n%s", out)
	}
}

// ruleTests is the part of a promtool test file this package reads.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestPromtoolTestRules(t *testing.T) {
	const testFile = "testdata/rules_test.yaml"
	if out, err := runPromtool(t, ".", "test", "rules", testFile); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	// Every alert has a case that fires and one that stays quiet, and nothing tests an alert
	// that does not exist.
	data, err := os.ReadFile(testFile)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(data, &rt); err != nil {
		t.Fatalf("%s: %v", testFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	known := map[string]bool{}
	for _, a := range Alerts(DefaultParams) {
		known[a.Name] = true
	}
	for _, tc := range rt.Tests {
		for _, art := range tc.AlertRuleTest {
			if !known[art.Alertname] {
				t.Errorf("test %q: alert %s is not in the rules", tc.Name, art.Alertname)
			}
			if len(art.ExpAlerts) > 0 {
				fires[art.Alertname] = true
			} else {
				quiet[art.Alertname] = true
			}
		}
	}
	for name := range known {
		if !fires[name] || !quiet[name] {
			t.Errorf("alert %s: a case that fires %v, a case that stays quiet %v; want both", name, fires[name], quiet[name])
		}
	}

	// Negative control: the same tests against rules with another threshold fail, so they do
	// hold the rules to their numbers.
	p := DefaultParams
	p.SpoolFullRatio = 0.95
	dir := t.TempDir()
	rules, err := RuleFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "testdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, testFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPromtool(t, dir, "test", "rules", testFile)
	if err == nil || !strings.Contains(out, "BridgeheadSpoolNearlyFull fires") {
		t.Fatalf("tests passed against a 95 %% spool threshold (err %v):\n%s", err, out)
	}
}

// heading matches a level-2 Markdown heading.
var heading = regexp.MustCompile(`(?m)^## (.+)$`)

func TestRunbookSections(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", RunbookBase))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(string(data), -1) {
		// GitHub's anchor of a heading made of letters: lower case.
		anchors[strings.ToLower(strings.TrimSpace(m[1]))] = true
	}
	for _, a := range Alerts(DefaultParams) {
		anchor := strings.TrimPrefix(a.RunbookURL(), RunbookBase+"#")
		if !anchors[anchor] {
			t.Errorf("alert %s: %s has no section %q (want a heading `## %s`)", a.Name, RunbookBase, anchor, a.Name)
		}
	}
}

func TestAlertsAggregateByStamp(t *testing.T) {
	for _, a := range Alerts(DefaultParams) {
		if !strings.Contains(a.Expr, "by (stamp)") {
			t.Errorf("alert %s does not aggregate by stamp: %s", a.Name, a.Expr)
		}
		if len(MetricNames(a.Expr)) == 0 {
			t.Errorf("alert %s names no bridgehead metric: %s", a.Name, a.Expr)
		}
	}
}

// TestPrometheusRuleInEveryStamp renders both stamps as Flux would apply them and checks that each
// carries the PrometheusRule, strictly decodable, unchanged by Flux's substitution, with the very
// group of rules.yaml.
func TestPrometheusRuleInEveryStamp(t *testing.T) {
	data, err := os.ReadFile("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	for _, stamp := range deploy.Stamps {
		objs, err := deploy.Render(deploy.OverlayDir("..", stamp))
		if err != nil {
			t.Fatal(err)
		}
		var found int
		for _, o := range objs {
			if o.GetKind() != monitoringv1.PrometheusRuleKind {
				continue
			}
			found++
			// Flux substitutes ${VARS} in what it applies: the rule (whose templates say
			// $labels and $value) must come through it unchanged, without any variable set.
			subst, err := deploy.Substitute([]*unstructured.Unstructured{o}, nil)
			if err != nil {
				t.Errorf("stamp %s: Flux substitution of the PrometheusRule: %v", stamp, err)
			} else if !reflect.DeepEqual(subst[0].Object, o.Object) {
				t.Errorf("stamp %s: Flux substitution changes the PrometheusRule", stamp)
			}
			js, err := json.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			var pr monitoringv1.PrometheusRule
			strict, err := kjson.UnmarshalStrict(js, &pr)
			if err != nil || len(strict) > 0 {
				t.Fatalf("stamp %s: PrometheusRule does not decode strictly: %v %v", stamp, err, strict)
			}
			if pr.Namespace != "bridgehead" {
				t.Errorf("stamp %s: PrometheusRule in namespace %q, want bridgehead", stamp, pr.Namespace)
			}
			if !reflect.DeepEqual(pr.Spec.Groups, file.Groups) {
				t.Errorf("stamp %s: PrometheusRule groups differ from rules.yaml", stamp)
			}
		}
		if found != 1 {
			t.Errorf("stamp %s: %d PrometheusRules, want 1 (is prometheusrule.yaml in the base's kustomization?)", stamp, found)
		}
	}
}

func TestDashboardPanels(t *testing.T) {
	data, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Repeat  string `json:"repeat"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	var panels, rows int
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows++
			continue
		}
		panels++
		if p.Repeat != "stamp" {
			t.Errorf("panel %q: repeat %q, want stamp (side by side)", p.Title, p.Repeat)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `stamp=~"$stamp"`) {
				t.Errorf("panel %q: query does not select $stamp: %s", p.Title, tg.Expr)
			}
		}
	}
	want := 0
	for _, r := range Rows {
		want += len(r.Panels)
	}
	if rows != len(Rows) || panels != want {
		t.Errorf("dashboard.json: %d rows and %d panels, want %d and %d", rows, panels, len(Rows), want)
	}
}

func TestMetricNames(t *testing.T) {
	got := MetricNames(`histogram_quantile(0.5, sum by (le) (rate(bridgehead_spool_commit_duration_seconds_bucket{result="ok"}[1m]))) / bridgehead_ready + bridgehead_ready`)
	want := []string{"bridgehead_ready", "bridgehead_spool_commit_duration_seconds_bucket"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
