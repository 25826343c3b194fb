package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

func TestISO8601Duration(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "PT0S"},
		{20 * time.Second, "PT20S"},
		{90 * time.Second, "PT1M30S"},
		{2 * time.Minute, "PT2M"},
		{5 * time.Minute, "PT5M"},
		{10 * time.Minute, "PT10M"},
		{time.Hour, "PT1H"},
		{90 * time.Minute, "PT1H30M"},
		{time.Hour + time.Second, "PT1H1S"},
		{24 * time.Hour, "P1D"},
		{25 * time.Hour, "P1DT1H"},
		{14 * 24 * time.Hour, "P14D"},
		{2*24*time.Hour + 3*time.Hour + 4*time.Minute + 5*time.Second, "P2DT3H4M5S"},
	} {
		got, err := ISO8601Duration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ISO8601Duration(%v): got %q, %v, want %q", tc.in, got, err, tc.want)
			continue
		}
		// And back, with an independent reading of the format.
		if back, err := parseISO8601(got); err != nil || back != tc.in {
			t.Errorf("%q reads back as %v, %v; want %v", got, back, err, tc.in)
		}
	}
	for _, bad := range []time.Duration{-time.Second, 1500 * time.Millisecond, time.Millisecond} {
		if got, err := ISO8601Duration(bad); err == nil {
			t.Errorf("ISO8601Duration(%v): got %q, want an error", bad, got)
		}
	}
}

// iso8601 matches the durations Azure takes for a rule's `for` (days and time, no years,
// months or fractions).
var iso8601 = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseISO8601 reads an ISO 8601 duration of days, hours, minutes and seconds.
func parseISO8601(s string) (time.Duration, error) {
	m := iso8601.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration of days, hours, minutes and seconds", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return 0, err
		}
		d += time.Duration(n) * unit
	}
	return d, nil
}

func TestAzureSeverity(t *testing.T) {
	for label, want := range map[string]int{"critical": 0, "warning": 2} {
		if got, err := AzureSeverity(label); err != nil || got != want {
			t.Errorf("AzureSeverity(%q): got %d, %v, want %d", label, got, err, want)
		}
	}
	if _, err := AzureSeverity("page"); err == nil {
		t.Error(`AzureSeverity("page"): no error`)
	}
}

// readAzureTemplate decodes the committed ARM template strictly.
func readAzureTemplate(t *testing.T) azureTemplate {
	t.Helper()
	data, err := os.ReadFile(AzureTemplateFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var tmpl azureTemplate
	if err := dec.Decode(&tmpl); err != nil {
		t.Fatalf("%s: %v", AzureTemplateFile, err)
	}
	return tmpl
}

// readRuleFile decodes the committed rules.yaml strictly.
func readRuleFile(t *testing.T) monitoringv1.RuleGroup {
	t.Helper()
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
	if len(file.Groups) != 1 {
		t.Fatalf("rules.yaml: %d groups, want 1", len(file.Groups))
	}
	return file.Groups[0]
}

// compareAzure lists how the rule group of tmpl differs from the rule file's group g: every
// alert of g must be in it once, with the same expression, `for` (converted to ISO 8601, absent
// when g has none), labels, annotations (runbook_url made absolute from the same link), the
// severity label's Azure number, enabled, and no rule that g lacks.
func compareAzure(g monitoringv1.RuleGroup, tmpl azureTemplate) []string {
	var out []string
	if len(tmpl.Resources) != 1 {
		return []string{fmt.Sprintf("%d resources, want 1 rule group", len(tmpl.Resources))}
	}
	res := tmpl.Resources[0]
	if res.Type != "Microsoft.AlertsManagement/prometheusRuleGroups" {
		out = append(out, "resource type "+res.Type)
	}
	byName := map[string]azureRule{}
	for _, r := range res.Properties.Rules {
		if _, dup := byName[r.Alert]; dup {
			out = append(out, "alert "+r.Alert+" twice")
		}
		byName[r.Alert] = r
	}
	for _, r := range g.Rules {
		ar, ok := byName[r.Alert]
		if !ok {
			out = append(out, "alert "+r.Alert+" missing")
			continue
		}
		delete(byName, r.Alert)
		if ar.Expression != r.Expr.String() {
			out = append(out, fmt.Sprintf("alert %s: expression %q, rules.yaml %q", r.Alert, ar.Expression, r.Expr.String()))
		}
		switch {
		case r.For == nil && ar.For != "":
			out = append(out, fmt.Sprintf("alert %s: for %q, rules.yaml has none", r.Alert, ar.For))
		case r.For != nil:
			want, err := model.ParseDuration(string(*r.For))
			if err != nil {
				out = append(out, fmt.Sprintf("alert %s: rules.yaml for %q: %v", r.Alert, *r.For, err))
				break
			}
			got, err := parseISO8601(ar.For)
			if err != nil || got != time.Duration(want) {
				out = append(out, fmt.Sprintf("alert %s: for %q (%v, %v), rules.yaml %s", r.Alert, ar.For, got, err, *r.For))
			}
		}
		if !maps(ar.Labels, r.Labels) {
			out = append(out, fmt.Sprintf("alert %s: labels %v, rules.yaml %v", r.Alert, ar.Labels, r.Labels))
		}
		sev, err := AzureSeverity(r.Labels["severity"])
		if err != nil || ar.Severity != sev {
			out = append(out, fmt.Sprintf("alert %s: severity %d for label %q (%v)", r.Alert, ar.Severity, r.Labels["severity"], err))
		}
		if !ar.Enabled {
			out = append(out, "alert "+r.Alert+" disabled")
		}
		want := map[string]string{}
		for k, v := range r.Annotations {
			want[k] = v
		}
		if u, ok := want["runbook_url"]; ok {
			want["runbook_url"] = "[concat(parameters('" + paramRunbookBase + "'), '" + u + "')]"
		} else {
			out = append(out, "alert "+r.Alert+": rules.yaml has no runbook_url")
		}
		if !maps(ar.Annotations, want) {
			out = append(out, fmt.Sprintf("alert %s: annotations %v, want %v", r.Alert, ar.Annotations, want))
		}
	}
	for name := range byName {
		out = append(out, "alert "+name+" is not in rules.yaml")
	}
	slices.Sort(out)
	return out
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestAzureRuleGroupIsTheRuleFile holds the committed ARM template to rules.yaml, alert by alert,
// and shows the comparison catches a changed hold time, a changed expression, a lost runbook
// link and a missing alert.
func TestAzureRuleGroupIsTheRuleFile(t *testing.T) {
	g := readRuleFile(t)
	tmpl := readAzureTemplate(t)
	if len(g.Rules) != len(Alerts(DefaultParams)) {
		t.Fatalf("rules.yaml has %d rules, Alerts %d", len(g.Rules), len(Alerts(DefaultParams)))
	}
	for _, d := range compareAzure(g, tmpl) {
		t.Error(d)
	}
	rules := tmpl.Resources[0].Properties.Rules
	if len(rules) != len(g.Rules) {
		t.Errorf("%d Azure rules, rules.yaml %d", len(rules), len(g.Rules))
	}
	// Some alert must have a hold time, and one none, for the for-check to mean anything.
	var withFor, without int
	for _, r := range rules {
		if r.For != "" {
			withFor++
		} else {
			without++
		}
	}
	if withFor == 0 || without == 0 {
		t.Errorf("%d alerts with a hold time, %d without; the rules have both", withFor, without)
	}

	// Negative controls.
	mutate := func(name string, f func(rs []azureRule) []azureRule) {
		t.Helper()
		bad := readAzureTemplate(t)
		bad.Resources[0].Properties.Rules = f(bad.Resources[0].Properties.Rules)
		if d := compareAzure(g, bad); len(d) == 0 {
			t.Errorf("negative control %q: no difference found", name)
		}
	}
	mutate("5m written as seconds", func(rs []azureRule) []azureRule {
		for i := range rs {
			if rs[i].For == "PT5M" {
				rs[i].For = "PT5S"
				return rs
			}
		}
		t.Fatal("no alert holds 5m")
		return rs
	})
	mutate("for added", func(rs []azureRule) []azureRule {
		for i := range rs {
			if rs[i].For == "" {
				rs[i].For = "PT1M"
				return rs
			}
		}
		return rs
	})
	mutate("threshold changed", func(rs []azureRule) []azureRule {
		rs[0].Expression = strings.Replace(rs[0].Expression, "0.8", "0.9", 1)
		return rs
	})
	mutate("runbook lost", func(rs []azureRule) []azureRule {
		delete(rs[1].Annotations, "runbook_url")
		return rs
	})
	mutate("alert dropped", func(rs []azureRule) []azureRule { return rs[1:] })
	mutate("severity", func(rs []azureRule) []azureRule {
		rs[0].Severity = 3
		return rs
	})
}

// armParamRef and armVarRef find the parameters and variables a template expression names.
var (
	armParamRef = regexp.MustCompile(`parameters\('([^']*)'\)`)
	armVarRef   = regexp.MustCompile(`variables\('([^']*)'\)`)
)

// TestAzureTemplateExpressions checks the template's own wiring: every parameter and variable an
// expression names is declared, every declared one is used, the rule group is scoped to the
// workspace and the cluster, its interval is one Azure allows (1-15 minutes), and the
// parameters without a default are exactly the three deploy/azure/provision.sh passes.
func TestAzureTemplateExpressions(t *testing.T) {
	data, err := os.ReadFile(AzureTemplateFile)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := readAzureTemplate(t)
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	usedParams, usedVars := map[string]bool{}, map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") || strings.HasPrefix(v, "[[") {
				return
			}
			if strings.Count(v, "(") != strings.Count(v, ")") || strings.Count(v, "'")%2 != 0 {
				t.Errorf("unbalanced expression %s", v)
			}
			for _, m := range armParamRef.FindAllStringSubmatch(v, -1) {
				usedParams[m[1]] = true
				if _, ok := tmpl.Parameters[m[1]]; !ok {
					t.Errorf("%s: no parameter %q", v, m[1])
				}
			}
			for _, m := range armVarRef.FindAllStringSubmatch(v, -1) {
				usedVars[m[1]] = true
				if _, ok := tmpl.Variables[m[1]]; !ok {
					t.Errorf("%s: no variable %q", v, m[1])
				}
			}
		}
	}
	walk(raw)
	for p := range tmpl.Parameters {
		if !usedParams[p] {
			t.Errorf("parameter %s is never used", p)
		}
	}
	for v := range tmpl.Variables {
		if !usedVars[v] {
			t.Errorf("variable %s is never used", v)
		}
	}
	var required []string
	for name, p := range tmpl.Parameters {
		if p.DefaultValue == nil {
			required = append(required, name)
		}
	}
	slices.Sort(required)
	if want := []string{paramWorkspace, paramCluster, paramStamp}; !slices.Equal(required, sortedCopy(want)) {
		t.Errorf("parameters without a default %v, want %v (what provision.sh passes)", required, sortedCopy(want))
	}
	props := tmpl.Resources[0].Properties
	if !slices.Contains(props.Scopes, "[parameters('"+paramWorkspace+"')]") || !slices.Contains(props.Scopes, "[parameters('"+paramCluster+"')]") {
		t.Errorf("scopes %v: want the workspace and the cluster", props.Scopes)
	}
	if d, err := parseISO8601(props.Interval); err != nil || d < time.Minute || d > 15*time.Minute {
		t.Errorf("interval %q (%v, %v): Azure takes 1 to 15 minutes", props.Interval, d, err)
	}
	if tmpl.Resources[0].APIVersion != RuleGroupAPIVersion {
		t.Errorf("apiVersion %s", tmpl.Resources[0].APIVersion)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestArmLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"[not closed":     "[not closed",
		"[looks like an]": "[[looks like an]",
		"a [b]":           "a [b]",
	} {
		if got := armLiteral(in); got != want {
			t.Errorf("armLiteral(%q): got %q, want %q", in, got, want)
		}
	}
}
