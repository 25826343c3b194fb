package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The rules as Azure Monitor managed Prometheus rule groups: an ARM template
// (azure-prometheus-rules.json) that deploy/azure/provision.sh deploys once per stamp with
// `az deployment group create`, each deployment a Microsoft.AlertsManagement/prometheusRuleGroups
// resource scoped to the Azure Monitor workspace and the stamp's cluster (AKS or Arc-connected).
// It carries the very alerts of rules.yaml: the same expressions, labels and annotations, `for`
// written as ISO 8601 (PT5M), plus what only Azure has: a severity number, an optional action
// group and auto-resolution.

// AzureTemplateFile is the ARM template's path relative to this package's directory.
const AzureTemplateFile = "azure-prometheus-rules.json"

// RuleGroupAPIVersion is the API version of Microsoft.AlertsManagement/prometheusRuleGroups the
// template uses (the GA version).
const RuleGroupAPIVersion = "2023-03-01"

// AzureRuleGroupInterval is how often Azure evaluates the group (ISO 8601; Azure allows 1 to 15
// minutes): Prometheus's default evaluation interval.
const AzureRuleGroupInterval = "PT1M"

// AzureTimeToResolve is how long an alert's condition must stay false before Azure resolves the
// fired alert by itself.
const AzureTimeToResolve = "PT10M"

// DefaultRunbookBaseURL is the default of the template's runbookBaseUrl parameter: where
// RunbookBase (docs/runbook.md, repository-relative in rules.yaml) is served, so that the link
// in an Azure alert opens. A fork deploys with runbookBaseUrl=<its own>.
const DefaultRunbookBaseURL = "https://github.com/bridgehead-dev/bridgehead/blob/main/"

// AzureSeverity maps the `severity` label of an alert to Azure Monitor's alert severity (0
// Critical, 1 Error, 2 Warning, 3 Informational, 4 Verbose).
func AzureSeverity(label string) (int, error) {
	switch label {
	case "critical":
		return 0, nil
	case "warning":
		return 2, nil
	}
	return 0, fmt.Errorf("severity %q: want critical or warning", label)
}

// ISO8601Duration spells d as an ISO 8601 duration, which Azure wants where Prometheus writes
// 5m: days as nD, the rest after T as hours, minutes and seconds (5m is PT5M, 14 days P14D,
// 25h P1DT1H, 0 PT0S). Negative and sub-second durations are errors: rules hold whole seconds.
func ISO8601Duration(d time.Duration) (string, error) {
	if d < 0 || d%time.Second != 0 {
		return "", fmt.Errorf("duration %v: want whole non-negative seconds", d)
	}
	if d == 0 {
		return "PT0S", nil
	}
	var sb strings.Builder
	sb.WriteString("P")
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&sb, "%dD", days)
		d -= days * 24 * time.Hour
	}
	if d > 0 {
		sb.WriteString("T")
		for _, u := range []struct {
			unit string
			d    time.Duration
		}{{"H", time.Hour}, {"M", time.Minute}, {"S", time.Second}} {
			if n := d / u.d; n > 0 {
				fmt.Fprintf(&sb, "%d%s", n, u.unit)
				d -= n * u.d
			}
		}
	}
	return sb.String(), nil
}

// armLiteral escapes s for an ARM template: a string that starts with [ and ends with ] would
// be read as a template expression, unless it starts with [[.
func armLiteral(s string) string {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return "[" + s
	}
	return s
}

// armString quotes s as a string literal inside a template expression.
func armString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Template parameters; provision.sh passes the first three per stamp.
const (
	paramWorkspace      = "azureMonitorWorkspaceId"
	paramCluster        = "clusterResourceId"
	paramStamp          = "stamp"
	paramActionGroup    = "actionGroupId"
	paramRunbookBase    = "runbookBaseUrl"
	paramLocation       = "location"
	paramClusterLabel   = "clusterLabel"
	variableActions     = "actions"
	variableClusterName = "clusterName"
)

type armParam struct {
	Type          string   `json:"type"`
	DefaultValue  any      `json:"defaultValue,omitempty"`
	AllowedValues []string `json:"allowedValues,omitempty"`
	Metadata      struct {
		Description string `json:"description"`
	} `json:"metadata"`
}

func newParam(typ, description string, def any, allowed ...string) armParam {
	p := armParam{Type: typ, DefaultValue: def, AllowedValues: allowed}
	p.Metadata.Description = description
	return p
}

// azureRule is one rule of a prometheusRuleGroups resource (API 2023-03-01).
type azureRule struct {
	Alert                string               `json:"alert"`
	Enabled              bool                 `json:"enabled"`
	Expression           string               `json:"expression"`
	For                  string               `json:"for,omitempty"`
	Severity             int                  `json:"severity"`
	Labels               map[string]string    `json:"labels"`
	Annotations          map[string]string    `json:"annotations"`
	ResolveConfiguration azureResolveSettings `json:"resolveConfiguration"`
	Actions              string               `json:"actions"` // an expression: the action group, if any
}

// azureResolveSettings is a rule's resolveConfiguration.
type azureResolveSettings struct {
	AutoResolved  bool   `json:"autoResolved"`
	TimeToResolve string `json:"timeToResolve"`
}

// azureRuleGroupProperties are the properties of the rule group resource.
type azureRuleGroupProperties struct {
	Description string      `json:"description"`
	Scopes      []string    `json:"scopes"`
	ClusterName string      `json:"clusterName"`
	Enabled     bool        `json:"enabled"`
	Interval    string      `json:"interval"`
	Rules       []azureRule `json:"rules"`
}

// azureResource is the rule group resource of the template.
type azureResource struct {
	Type       string                   `json:"type"`
	APIVersion string                   `json:"apiVersion"`
	Name       string                   `json:"name"`
	Location   string                   `json:"location"`
	Tags       map[string]string        `json:"tags"`
	Properties azureRuleGroupProperties `json:"properties"`
}

// azureTemplate is the ARM deployment template.
type azureTemplate struct {
	Schema         string              `json:"$schema"`
	ContentVersion string              `json:"contentVersion"`
	Metadata       map[string]string   `json:"metadata"`
	Parameters     map[string]armParam `json:"parameters"`
	Variables      map[string]string   `json:"variables"`
	Resources      []azureResource     `json:"resources"`
	Outputs        map[string]struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"outputs"`
}

// azureRuleGroup returns the alerts of p as the rule group resource of the ARM template.
func azureRuleGroup(p Params) (azureResource, error) {
	g := Group(p)
	res := azureResource{
		Type:       "Microsoft.AlertsManagement/prometheusRuleGroups",
		APIVersion: RuleGroupAPIVersion,
		Name:       fmt.Sprintf("[format('%s-{0}', parameters('%s'))]", GroupName, paramStamp),
		Location:   fmt.Sprintf("[parameters('%s')]", paramLocation),
		Tags:       map[string]string{"app": "bridgehead", "stamp": fmt.Sprintf("[parameters('%s')]", paramStamp)},
		Properties: azureRuleGroupProperties{
			Description: armLiteral("Bridgehead's alerts (generated by deploy/monitoring from the source of rules.yaml; docs/runbook.md)."),
			// The workspace (required) and the stamp's cluster: the rules see only its series.
			Scopes:      []string{fmt.Sprintf("[parameters('%s')]", paramWorkspace), fmt.Sprintf("[parameters('%s')]", paramCluster)},
			ClusterName: fmt.Sprintf("[variables('%s')]", variableClusterName),
			Enabled:     true,
			Interval:    AzureRuleGroupInterval,
		},
	}
	alerts := Alerts(p)
	if len(alerts) != len(g.Rules) {
		return res, fmt.Errorf("%d alerts, %d rules", len(alerts), len(g.Rules))
	}
	for i, r := range g.Rules {
		a := alerts[i]
		sev, err := AzureSeverity(r.Labels["severity"])
		if err != nil {
			return res, fmt.Errorf("alert %s: %w", r.Alert, err)
		}
		ar := azureRule{
			Alert:       armLiteral(r.Alert),
			Enabled:     true,
			Expression:  armLiteral(r.Expr.String()),
			Severity:    sev,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
			ResolveConfiguration: azureResolveSettings{
				AutoResolved: true, TimeToResolve: AzureTimeToResolve,
			},
			Actions: fmt.Sprintf("[variables('%s')]", variableActions),
		}
		if a.For > 0 {
			if ar.For, err = ISO8601Duration(a.For); err != nil {
				return res, fmt.Errorf("alert %s: %w", r.Alert, err)
			}
		}
		for k, v := range r.Labels {
			ar.Labels[k] = armLiteral(v)
		}
		for k, v := range r.Annotations {
			ar.Annotations[k] = armLiteral(v)
		}
		// The same runbook link, made absolute: a relative one does not open from the portal.
		ar.Annotations["runbook_url"] = fmt.Sprintf("[concat(parameters('%s'), %s)]", paramRunbookBase, armString(a.RunbookURL()))
		res.Properties.Rules = append(res.Properties.Rules, ar)
	}
	return res, nil
}

// AzureRuleGroupTemplate returns DefaultParams' alerts as the ARM template deploy/azure/provision.sh
// deploys for each stamp (parameters: the workspace and cluster resource ids, the stamp; an
// action group and the runbook's base URL optional).
func AzureRuleGroupTemplate() ([]byte, error) {
	res, err := azureRuleGroup(DefaultParams)
	if err != nil {
		return nil, err
	}
	t := azureTemplate{
		Schema:         "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
		ContentVersion: "1.0.0.0",
		Metadata: map[string]string{
			"description": "Code generated by deploy/monitoring (go generate ./deploy/monitoring); DO NOT EDIT. " +
				"Bridgehead's alert rules as an Azure Monitor managed Prometheus rule group for one stamp.",
		},
		Parameters: map[string]armParam{
			paramWorkspace: newParam("string", "Resource id of the Azure Monitor workspace the stamp's metrics go to (Microsoft.Monitor/accounts).", nil),
			paramCluster:   newParam("string", "Resource id of the stamp's cluster: Microsoft.ContainerService/managedClusters (cloud) or Microsoft.Kubernetes/connectedClusters (onprem).", nil),
			paramStamp:     newParam("string", "The stamp; the rule group is named bridgehead-<stamp>.", nil, "onprem", "cloud"),
			paramActionGroup: newParam("string", "Resource id of an action group to notify when an alert fires or resolves; empty for none.",
				""),
			paramRunbookBase: newParam("string", "Base URL that docs/runbook.md is served under (the alerts' runbook_url is this followed by docs/runbook.md#<alert>).",
				DefaultRunbookBaseURL),
			paramLocation: newParam("string", "Region of the rule group: the Azure Monitor workspace's.", "[resourceGroup().location]"),
			paramClusterLabel: newParam("string", "The `cluster` label the metrics agent gives the stamp's series, when not the cluster's name "+
				"(the agent's cluster_alias setting); empty for the cluster's name.", ""),
		},
		Variables: map[string]string{
			// The rules evaluate only the series the stamp's own cluster sent: clusterName must equal
			// their `cluster` label, which the agent sets to the cluster's name unless aliased.
			variableClusterName: fmt.Sprintf("[if(empty(parameters('%[1]s')), last(split(parameters('%[2]s'), '/')), parameters('%[1]s'))]",
				paramClusterLabel, paramCluster),
			variableActions: fmt.Sprintf("[if(empty(parameters('%[1]s')), createArray(), createArray(createObject('actionGroupId', parameters('%[1]s'))))]",
				paramActionGroup),
		},
		Resources: []azureResource{res},
	}
	t.Outputs = map[string]struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}{"ruleGroupId": {Type: "string", Value: fmt.Sprintf("[resourceId('Microsoft.AlertsManagement/prometheusRuleGroups', format('%s-{0}', parameters('%s')))]", GroupName, paramStamp)}}
	// Not HTML-escaped: the expressions' > and < stay readable.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("azure rule group template: %w", err)
	}
	return buf.Bytes(), nil
}
