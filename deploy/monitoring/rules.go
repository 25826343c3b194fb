// Package monitoring is the one source of Bridgehead's alert rules and Grafana dashboard. From it
// `go generate` writes rules.yaml (a plain Prometheus rule file), the same group as a
// prometheus-operator PrometheusRule in the kustomize base, the same alerts as an Azure Monitor
// managed Prometheus rule group (azure-prometheus-rules.json, an ARM template), and
// dashboard.json; the package's tests regenerate all four and fail when a committed copy
// differs, so there are never two hand-kept copies.
//
// Guarantees, held by the tests here and in test/e2e (monitoring_test.go):
//   - promtool accepts the rule file, and its unit tests (testdata/rules_test.yaml) show every
//     alert firing in one case and staying quiet in another.
//   - Every metric a rule or a panel names is one a running `bridgehead serve` exports, and every
//     panel's query returns series from a real Prometheus scraping one.
//   - Every alert aggregates by the `stamp` label and links to its own section of docs/runbook.md.
//
// The `stamp` label is not exported by bridgehead: the Prometheus that scrapes a stamp sets it as
// a target label (docs/operations.md, "Monitoring").
package monitoring

//go:generate go run ./gen

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// RunbookBase is where every alert's runbook_url points, followed by "#" and the alert's name in
// lower case (the anchor of its heading in docs/runbook.md). It is repository-relative; an
// operator who serves the docs elsewhere changes this one constant and runs `go generate`.
const RunbookBase = "docs/runbook.md"

// GroupName is the name of the one rule group.
const GroupName = "bridgehead"

// Params are the thresholds, windows and hold times (`for`) of the alerts. DefaultParams are what
// the committed files say; the end-to-end test shortens the windows and hold times, never the
// expressions' shape.
type Params struct {
	SpoolFullRatio float64       // used/capacity above which the spool counts as nearly full
	SpoolFullFor   time.Duration //

	OldestUndelivered    time.Duration // age of the oldest undelivered message that alerts
	OldestUndeliveredFor time.Duration //

	BreakerWindow time.Duration // a forwarder's breaker not closed at any scrape in this window...
	BreakerFor    time.Duration // ...for this long

	DeadLetterWindow time.Duration // any dead letter within this window alerts
	DeadLetterFor    time.Duration //

	BacklogWindow time.Duration // a backlog and no delivery within this window...
	BacklogFor    time.Duration // ...for this long

	HTTP503Ratio  float64       // share of message requests answered 503
	HTTP503Window time.Duration // rate window
	HTTP503For    time.Duration //

	ReadyChanges float64       // more readiness changes than this in the window is flapping
	ReadyWindow  time.Duration //

	TLSExpiry    time.Duration // serving certificate expiring within this
	TLSExpiryFor time.Duration //

	PrincipalsFailingFor time.Duration // principals file failing to load this long
}

// DefaultParams are the production settings.
var DefaultParams = Params{
	SpoolFullRatio: 0.8, SpoolFullFor: 5 * time.Minute,
	OldestUndelivered: 15 * time.Minute, OldestUndeliveredFor: 2 * time.Minute,
	BreakerWindow: 5 * time.Minute, BreakerFor: 5 * time.Minute,
	DeadLetterWindow: 15 * time.Minute, DeadLetterFor: 0,
	BacklogWindow: 10 * time.Minute, BacklogFor: 5 * time.Minute,
	HTTP503Ratio: 0.05, HTTP503Window: 5 * time.Minute, HTTP503For: 5 * time.Minute,
	ReadyChanges: 4, ReadyWindow: 15 * time.Minute,
	TLSExpiry: 14 * 24 * time.Hour, TLSExpiryFor: 10 * time.Minute,
	PrincipalsFailingFor: 5 * time.Minute,
}

// Alert is one alerting rule.
type Alert struct {
	Name        string
	Expr        string
	For         time.Duration
	Severity    string // critical: data is at risk or not flowing; warning: act within the day
	Summary     string
	Description string
}

// RunbookURL returns the link to the alert's section of docs/runbook.md.
func (a Alert) RunbookURL() string { return RunbookBase + "#" + strings.ToLower(a.Name) }

// Alerts returns the alerts with the settings of p. Expressions aggregate by stamp: the spool's
// gauges are the same shared spool seen by every replica (max), counters add up (sum).
func Alerts(p Params) []Alert {
	return []Alert{{
		Name: "BridgeheadSpoolNearlyFull",
		Expr: fmt.Sprintf(`max by (stamp) (bridgehead_spool_used_bytes) / max by (stamp) (bridgehead_spool_capacity_bytes) > %g`,
			p.SpoolFullRatio),
		For: p.SpoolFullFor, Severity: "critical",
		Summary: "Stamp {{ $labels.stamp }}: spool {{ $value | humanizePercentage }} full",
		Description: fmt.Sprintf("The spool of stamp {{ $labels.stamp }} holds more than %g%% of its capacity. "+
			"When it is full the API answers 503 and senders must hold their data. "+
			"Usually the sink is unreachable (see BridgeheadBacklogNotDelivering) or the share is short of space.", p.SpoolFullRatio*100),
	}, {
		Name: "BridgeheadOldestUndeliveredTooOld",
		Expr: fmt.Sprintf(`max by (stamp) (bridgehead_spool_oldest_undelivered_age_seconds) > %.0f`, p.OldestUndelivered.Seconds()),
		For:  p.OldestUndeliveredFor, Severity: "critical",
		Summary: "Stamp {{ $labels.stamp }}: oldest undelivered message is {{ $value | humanizeDuration }} old",
		Description: fmt.Sprintf("Stamp {{ $labels.stamp }} holds a message accepted more than %s ago and not yet delivered: "+
			"the sink has been unreachable or refusing for that long, or no forwarder is running.", promDuration(p.OldestUndelivered)),
	}, {
		Name: "BridgeheadBreakerOpen",
		Expr: fmt.Sprintf(`max by (stamp) (min_over_time(bridgehead_forward_breaker_state[%s])) >= 1`, promDuration(p.BreakerWindow)),
		For:  p.BreakerFor, Severity: "critical",
		Summary: "Stamp {{ $labels.stamp }}: a forwarder's circuit breaker has not closed for " + promDuration(p.BreakerWindow+p.BreakerFor),
		Description: "A forwarder of stamp {{ $labels.stamp }} has had its circuit breaker open or half-open at every scrape for " +
			promDuration(p.BreakerWindow+p.BreakerFor) + ": its sends to the sink keep failing and it is not delivering.",
	}, {
		Name: "BridgeheadDeadLettersGrowing",
		Expr: fmt.Sprintf(`sum by (stamp) (increase(bridgehead_forward_dead_lettered_total[%s])) > 0`, promDuration(p.DeadLetterWindow)),
		For:  p.DeadLetterFor, Severity: "warning",
		Summary: "Stamp {{ $labels.stamp }}: {{ $value | humanize }} messages dead-lettered in the last " + promDuration(p.DeadLetterWindow),
		Description: "The sink of stamp {{ $labels.stamp }} refused messages for good; they were moved to dead/ with the sink's reason " +
			"and will not be delivered until someone requeues them.",
	}, {
		Name: "BridgeheadBacklogNotDelivering",
		// `unless` rather than `and ... == 0`: a stamp whose forwarders are all gone has no
		// delivered series at all, and must alert too.
		Expr: fmt.Sprintf(`max by (stamp) (sum without (state) (bridgehead_spool_segments{state=~"ready|claimed|recovering"})) > 0`+
			` unless on (stamp) sum by (stamp) (increase(bridgehead_forward_delivered_total[%s])) > 0`, promDuration(p.BacklogWindow)),
		For: p.BacklogFor, Severity: "critical",
		Summary: "Stamp {{ $labels.stamp }}: {{ $value }} segments waiting and nothing delivered for " + promDuration(p.BacklogWindow),
		Description: "Stamp {{ $labels.stamp }} has segments waiting for delivery, and no forwarder delivered a message in the last " +
			promDuration(p.BacklogWindow) + ": the sink is down or refusing, or no forwarder is running.",
	}, {
		Name: "BridgeheadHTTP503Ratio",
		Expr: fmt.Sprintf(`sum by (stamp) (rate(bridgehead_http_requests_total{route=~"messages|compat_message",code="503"}[%[1]s]))`+
			` / sum by (stamp) (rate(bridgehead_http_requests_total{route=~"messages|compat_message"}[%[1]s])) > %[2]g`,
			promDuration(p.HTTP503Window), p.HTTP503Ratio),
		For: p.HTTP503For, Severity: "critical",
		Summary: "Stamp {{ $labels.stamp }}: {{ $value | humanizePercentage }} of message requests answered 503",
		Description: fmt.Sprintf("More than %g%% of message requests to stamp {{ $labels.stamp }} were refused with 503 "+
			"(spool full or unwritable, clock skew, or the replica draining): senders are holding data.", p.HTTP503Ratio*100),
	}, {
		Name:     "BridgeheadReadinessFlapping",
		Expr:     fmt.Sprintf(`max by (stamp) (changes(bridgehead_ready[%s])) > %g`, promDuration(p.ReadyWindow), p.ReadyChanges),
		Severity: "warning",
		Summary:  "Stamp {{ $labels.stamp }}: a replica's readiness changed {{ $value }} times in " + promDuration(p.ReadyWindow),
		Description: "A replica of stamp {{ $labels.stamp }} keeps turning ready and unready: the spool is at the edge of full, " +
			"its clock skew is near the allowance, or its file server is intermittently failing.",
	}, {
		Name: "BridgeheadTLSCertificateExpiringSoon",
		Expr: fmt.Sprintf(`min by (stamp) (bridgehead_tls_certificate_expiry_timestamp_seconds) - time() < %.0f`, p.TLSExpiry.Seconds()),
		For:  p.TLSExpiryFor, Severity: "warning",
		Summary: "Stamp {{ $labels.stamp }}: serving TLS certificate expires in {{ $value | humanizeDuration }}",
		Description: "The certificate stamp {{ $labels.stamp }} serves expires within " + promDuration(p.TLSExpiry) +
			"; after that senders refuse to connect. It is reloaded without a restart once the secret is renewed.",
	}, {
		Name:     "BridgeheadPrincipalsReloadFailing",
		Expr:     `max by (stamp) (bridgehead_auth_principals_reload_failing) > 0`,
		For:      p.PrincipalsFailingFor,
		Severity: "warning",
		Summary:  "Stamp {{ $labels.stamp }}: principals file does not load",
		Description: "The principals file of stamp {{ $labels.stamp }} is missing, unreadable or invalid; the replica keeps the keys " +
			"it had, so keys added or revoked since are not in force.",
	}}
}

// Group returns the alerts of p as one rule group.
func Group(p Params) monitoringv1.RuleGroup {
	g := monitoringv1.RuleGroup{Name: GroupName}
	for _, a := range Alerts(p) {
		r := monitoringv1.Rule{
			Alert:  a.Name,
			Expr:   intstr.FromString(a.Expr),
			Labels: map[string]string{"severity": a.Severity},
			Annotations: map[string]string{
				"summary":     a.Summary,
				"description": a.Description,
				"runbook_url": a.RunbookURL(),
			},
		}
		if a.For > 0 {
			d := monitoringv1.Duration(promDuration(a.For))
			r.For = &d
		}
		g.Rules = append(g.Rules, r)
	}
	return g
}

// generatedHeader starts every generated YAML file.
const generatedHeader = "# Code generated by deploy/monitoring (go generate ./deploy/monitoring); DO NOT EDIT.\n"

// RuleFile returns the alerts of p as a Prometheus rule file (`rule_files:`).
func RuleFile(p Params) ([]byte, error) {
	b, err := yaml.Marshal(struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}{[]monitoringv1.RuleGroup{Group(p)}})
	if err != nil {
		return nil, fmt.Errorf("rule file: %w", err)
	}
	return append([]byte(generatedHeader), b...), nil
}

// PrometheusRule returns DefaultParams' alerts as a prometheus-operator PrometheusRule for the
// kustomize base. It asks Flux not to substitute variables in it: the annotations' templates
// ($labels, $value) are Prometheus's, not Flux's.
func PrometheusRule() ([]byte, error) {
	pr := monitoringv1.PrometheusRule{
		TypeMeta: metav1.TypeMeta{APIVersion: monitoringv1.SchemeGroupVersion.String(), Kind: monitoringv1.PrometheusRuleKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        "bridgehead",
			Annotations: map[string]string{"kustomize.toolkit.fluxcd.io/substitute": "disabled"},
		},
		Spec: monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{Group(DefaultParams)}},
	}
	b, err := yaml.Marshal(pr)
	if err != nil {
		return nil, fmt.Errorf("prometheus rule: %w", err)
	}
	// ObjectMeta's creationTimestamp marshals as null; the API server fills it in.
	b = []byte(strings.Replace(string(b), "  creationTimestamp: null\n", "", 1))
	return append([]byte(generatedHeader), b...), nil
}

// promDuration spells d as Prometheus does (1h30m, 15m, 20s).
func promDuration(d time.Duration) string {
	var sb strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&sb, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	if sb.Len() == 0 {
		return "0s"
	}
	return sb.String()
}

// metricName matches a Bridgehead metric name in PromQL.
var metricName = regexp.MustCompile(`\bbridgehead_[a-z_]+\b`)

// MetricNames returns the Bridgehead series names expr refers to, sorted, without repeats (a
// histogram's as its _bucket, _count or _sum series).
func MetricNames(expr string) []string {
	out := metricName.FindAllString(expr, -1)
	slices.Sort(out)
	return slices.Compact(out)
}
