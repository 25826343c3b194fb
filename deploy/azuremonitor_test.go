package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// Azure Monitor for both stamps (docs/deploy.md, "Azure Monitor"): the PodMonitors of
// deploy/kustomize/azure-monitor/<stamp>, the Secret they read, and provision.sh --azure-monitor.

// azmonGroup is the API group of Azure Monitor managed Prometheus's scrape CRDs.
const azmonGroup = "azmonitoring.coreos.com"

// Names the PodMonitors and deploy/stamp-config.sh --metrics-key-file share.
const (
	scrapeSecret          = "bridgehead-metrics-scrape"
	scrapeSecretNamespace = "kube-system" // ama-metrics' namespace
	scrapeSecretKey       = "key"
)

// azureMonitorDir is the kustomization of a stamp's PodMonitors.
func azureMonitorDir(stamp string) string {
	return filepath.Join(deployDir, "kustomize", "azure-monitor", stamp)
}

// azmonPodMonitorFields are the field paths of a PodMonitor's spec that Azure's own CRD declares
// (podmonitors.azmonitoring.coreos.com, Azure/prometheus-collector
// otelcollector/deploy/addon-chart/azure-monitor-metrics-addon/templates/ama-metrics-podmonitor-crd.yaml
// at 07cb97561a57cc3b3c50b5f0d938c06c9db4c926, generated from an older prometheus-operator),
// restricted to those the kit may use. The prometheus-operator type the tests decode with, and
// the CRD make test-k8s installs in its place, are newer and accept more: a field outside this
// list may be one Azure's API server prunes. A path ending in .* is a map: any key.
var azmonPodMonitorFields = []string{
	"spec.labelLimit", "spec.labelNameLengthLimit", "spec.labelValueLengthLimit",
	"spec.namespaceSelector.matchNames", "spec.selector.matchLabels.*", "spec.podTargetLabels", "spec.jobLabel",
	"spec.podMetricsEndpoints.port", "spec.podMetricsEndpoints.path", "spec.podMetricsEndpoints.scheme",
	"spec.podMetricsEndpoints.interval", "spec.podMetricsEndpoints.scrapeTimeout",
	"spec.podMetricsEndpoints.authorization.type", "spec.podMetricsEndpoints.authorization.credentials.name",
	"spec.podMetricsEndpoints.authorization.credentials.key",
	"spec.podMetricsEndpoints.tlsConfig.insecureSkipVerify", "spec.podMetricsEndpoints.tlsConfig.serverName",
	"spec.podMetricsEndpoints.relabelings.sourceLabels", "spec.podMetricsEndpoints.relabelings.targetLabel",
	"spec.podMetricsEndpoints.relabelings.replacement", "spec.podMetricsEndpoints.relabelings.regex",
	"spec.podMetricsEndpoints.relabelings.action",
	"spec.podMetricsEndpoints.metricRelabelings.sourceLabels", "spec.podMetricsEndpoints.metricRelabelings.action",
	"spec.podMetricsEndpoints.metricRelabelings.regex",
}

// leafPaths lists the paths of v's leaves (list indices dropped), under prefix.
func leafPaths(v any, prefix string) []string {
	switch v := v.(type) {
	case map[string]any:
		var out []string
		for k, e := range v {
			out = append(out, leafPaths(e, prefix+"."+k)...)
		}
		return out
	case []any:
		var out []string
		for _, e := range v {
			switch e.(type) {
			case map[string]any, []any:
				out = append(out, leafPaths(e, prefix)...)
			default:
				return []string{prefix}
			}
		}
		return out
	}
	return []string{prefix}
}

// podMonitors returns the PodMonitors of objs, strictly decoded.
func podMonitors(t *testing.T, objs []*unstructured.Unstructured) []*monitoringv1.PodMonitor {
	t.Helper()
	var out []*monitoringv1.PodMonitor
	for _, o := range objs {
		if o.GroupVersionKind().Group != azmonGroup {
			continue
		}
		obj, err := decodeStrict(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, obj.(*monitoringv1.PodMonitor))
	}
	return out
}

// TestAzureMonitorScrapesEveryRole renders each stamp's PodMonitors and checks them against the
// stamp as Flux applies it: every Deployment's pods are selected (labels and namespace) by one
// PodMonitor, on the container port that serve --listen serves, with https where the pod serves
// TLS; /metrics is asked with the key from the Secret stamp-config.sh --metrics-key-file writes,
// in the PodMonitor's namespace; the `stamp` target label is the stamp's name; a NetworkPolicy
// admits the scraper's namespace on that port; only fields Azure's CRD has; no Flux variable.
func TestAzureMonitorScrapesEveryRole(t *testing.T) {
	stamps := loadStamps(t)
	for _, name := range Stamps {
		t.Run(name, func(t *testing.T) {
			s := stamps[name]
			objs, err := Render(azureMonitorDir(name))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				data, err := json.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				if vs := Variables(data); len(vs) > 0 {
					t.Errorf("%s: Flux variables %v (the Kustomization that applies it substitutes nothing)", objectID(o), vs)
				}
				if o.GroupVersionKind().Group == azmonGroup {
					spec, _, _ := unstructured.NestedMap(o.Object, "spec")
					for _, p := range leafPaths(spec, "spec") {
						if !slices.ContainsFunc(azmonPodMonitorFields, func(f string) bool {
							m, isMap := strings.CutSuffix(f, ".*")
							return f == p || isMap && strings.HasPrefix(p, m+".")
						}) {
							t.Errorf("%s: %s is not a field of Azure's PodMonitor CRD as listed in azmonPodMonitorFields", objectID(o), p)
						}
					}
				}
			}
			pms := podMonitors(t, objs)
			var policies []*networkingv1.NetworkPolicy
			for _, o := range append(slices.Clone(s.objs), objs...) {
				if o.GetKind() == "NetworkPolicy" {
					obj, err := decodeStrict(o)
					if err != nil {
						t.Fatal(err)
					}
					policies = append(policies, obj.(*networkingv1.NetworkPolicy))
				}
			}
			containers, err := Containers(s.objs)
			if err != nil {
				t.Fatal(err)
			}
			ts := typedObjects(t, s.objs)
			if len(ts.deployments) < 2 {
				t.Fatalf("%d Deployments in the stamp, want both roles", len(ts.deployments))
			}
			used := map[string]bool{}
			for _, d := range ts.deployments {
				var c *Container
				for i := range containers {
					if containers[i].Workload == objectID(deploymentObject(t, s.objs, d.Name)) {
						c = &containers[i]
					}
				}
				if c == nil {
					t.Fatalf("%s: no bridgehead container", d.Name)
				}
				if v, _ := c.Value("metrics-auth"); v != "true" {
					t.Errorf("%s: --metrics-auth %q: the scrape's key is there because the base asks for one", d.Name, v)
				}
				var matched []*monitoringv1.PodMonitor
				for _, pm := range pms {
					if selects(t, pm, d) {
						matched = append(matched, pm)
					}
				}
				if len(matched) != 1 {
					t.Errorf("%s: selected by %d PodMonitors, want 1", d.Name, len(matched))
					continue
				}
				pm := matched[0]
				used[pm.Name] = true
				if len(pm.Spec.PodMetricsEndpoints) != 1 {
					t.Errorf("PodMonitor %s: %d endpoints, want 1", pm.Name, len(pm.Spec.PodMetricsEndpoints))
					continue
				}
				ep := pm.Spec.PodMetricsEndpoints[0]
				checkScrapePort(t, d, c, ep)
				_, tls := c.Value("tls-cert-file")
				wantScheme := "http"
				if tls {
					wantScheme = "https"
				}
				if got := strings.ToLower(ep.Scheme.String()); got != wantScheme {
					t.Errorf("PodMonitor %s: scheme %q, but %s serves %s", pm.Name, got, d.Name, wantScheme)
				}
				if ep.Path != "" && ep.Path != "/metrics" {
					t.Errorf("PodMonitor %s: path %q, want /metrics", pm.Name, ep.Path)
				}
				a := ep.Authorization
				if a == nil || a.Credentials == nil || a.Type != "Bearer" || a.Credentials.Name != scrapeSecret || a.Credentials.Key != scrapeSecretKey {
					t.Errorf("PodMonitor %s: authorization %+v, want Bearer from Secret %s key %s", pm.Name, a, scrapeSecret, scrapeSecretKey)
				}
				if pm.Namespace != scrapeSecretNamespace {
					t.Errorf("PodMonitor %s in namespace %q: its Secret must be in its namespace, %s", pm.Name, pm.Namespace, scrapeSecretNamespace)
				}
				var stamps []string
				for _, r := range ep.RelabelConfigs {
					if r.TargetLabel == "stamp" {
						if r.Regex != "" || (r.Action != "" && !strings.EqualFold(r.Action, "replace")) || r.Replacement == nil {
							t.Errorf("PodMonitor %s: stamp relabeling %+v may not set the label on every target", pm.Name, r)
						} else {
							stamps = append(stamps, *r.Replacement)
						}
					}
				}
				if !slices.Equal(stamps, []string{name}) {
					t.Errorf("PodMonitor %s: stamp label %v, want [%s]", pm.Name, stamps, name)
				}
				if !admits(t, policies, d, scrapeSecretNamespace, ep.Port) {
					t.Errorf("%s: no NetworkPolicy admits %s on port %v", d.Name, scrapeSecretNamespace, ptrString(ep.Port))
				}
			}
			for _, pm := range pms {
				if !used[pm.Name] {
					t.Errorf("PodMonitor %s selects no Deployment of the stamp", pm.Name)
				}
			}

			// The Secret the PodMonitors read is the one stamp-config.sh writes.
			args := append(slices.Clone(stampConfigArgs[name]), "--metrics-key-file", "metrics.key")
			out, err := stampConfigDryRun(args)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("create secret generic %s --namespace=%s --from-file=%s=metrics.key ", scrapeSecret, scrapeSecretNamespace, scrapeSecretKey)
			if !strings.Contains(out, want) {
				t.Errorf("stamp-config.sh --metrics-key-file does not write %q:\n%s", want, out)
			}
		})
	}
}

// deploymentObject returns the rendered Deployment named name.
func deploymentObject(t *testing.T, objs []*unstructured.Unstructured, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

// selects reports whether pm selects the pods of d: their namespace and labels.
func selects(t *testing.T, pm *monitoringv1.PodMonitor, d *appsv1.Deployment) bool {
	t.Helper()
	ns := pm.Spec.NamespaceSelector
	if ns.Any || !(slices.Contains(ns.MatchNames, d.Namespace) || (len(ns.MatchNames) == 0 && pm.Namespace == d.Namespace)) {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatalf("PodMonitor %s: %v", pm.Name, err)
	}
	return !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels))
}

// checkScrapePort checks ep names a port of the bridgehead container whose number is the one
// serve --listen binds.
func checkScrapePort(t *testing.T, d *appsv1.Deployment, c *Container, ep monitoringv1.PodMetricsEndpoint) {
	t.Helper()
	listen := mustValue(t, *c, "listen")
	_, port, _ := strings.Cut(listen, ":")
	var ctr *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == c.Name {
			ctr = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if ep.Port == nil {
		t.Errorf("%s: the PodMonitor names no port", d.Name)
		return
	}
	for _, p := range ctr.Ports {
		if p.Name == *ep.Port {
			if strconv.Itoa(int(p.ContainerPort)) != port {
				t.Errorf("%s: port %s is %d, serve listens on %s", d.Name, p.Name, p.ContainerPort, listen)
			}
			return
		}
	}
	t.Errorf("%s: the PodMonitor's port %q is not a port of container %s", d.Name, *ep.Port, c.Name)
}

// admits reports whether some NetworkPolicy selecting d's pods admits traffic from pods of
// namespace fromNS on the named port (a NetworkPolicy's ingress rules are additive).
func admits(t *testing.T, policies []*networkingv1.NetworkPolicy, d *appsv1.Deployment, fromNS string, port *string) bool {
	t.Helper()
	nsLabels := labels.Set{"kubernetes.io/metadata.name": fromNS}
	for _, p := range policies {
		if p.Namespace != d.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				if rp.Port == nil || (port != nil && rp.Port.String() == *port) {
					portOK = true
				}
			}
			fromOK := len(rule.From) == 0
			for _, peer := range rule.From {
				if peer.IPBlock != nil || peer.PodSelector != nil && peer.NamespaceSelector == nil {
					continue
				}
				nsSel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
				if err != nil {
					t.Fatal(err)
				}
				// A pod selector narrows the peer to some pods of the namespace: the scraper's
				// labels are Azure's, so the kit selects the namespace only.
				if nsSel.Matches(nsLabels) && peer.PodSelector == nil {
					fromOK = true
				}
			}
			if portOK && fromOK {
				return true
			}
		}
	}
	return false
}

// TestStampsWithoutAzureMonitorUnchanged checks that what a stamp's Flux Kustomization applies
// has nothing of Azure Monitor's: no azmonitoring object, nothing in kube-system. Azure Monitor
// comes only with provision.sh --azure-monitor's second Kustomization.
func TestStampsWithoutAzureMonitorUnchanged(t *testing.T) {
	for name, s := range loadStamps(t) {
		for _, o := range s.objs {
			if o.GroupVersionKind().Group == azmonGroup || o.GetNamespace() == scrapeSecretNamespace {
				t.Errorf("stamp %s applies %s without --azure-monitor", name, objectID(o))
			}
		}
	}
}

// azmonCRD returns the CRD that stands in for Azure's podmonitors.azmonitoring.coreos.com: the
// prometheus-operator's PodMonitor CRD of the version go.mod requires, renamed to Azure's group
// (Azure's CRD is the operator's under another group, older: azmonPodMonitorFields holds the kit
// to its fields). Azure's own cannot be fetched offline: no Go module holds it.
func azmonCRD(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	api := "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", api).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", api, err)
	}
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(strings.TrimSpace(string(cache)), "github.com", "prometheus-operator",
		"prometheus-operator@"+strings.TrimSpace(string(out)), "example", "prometheus-operator-crd", "monitoring.coreos.com_podmonitors.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run scripts/install-deploy-tools.sh", err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &crd.Object); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if g, _, _ := unstructured.NestedString(crd.Object, "spec", "group"); g != "monitoring.coreos.com" {
		t.Fatalf("%s: group %q", path, g)
	}
	crd.SetName("podmonitors." + azmonGroup)
	if err := unstructured.SetNestedField(crd.Object, azmonGroup, "spec", "group"); err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(crd.Object, "metadata", "creationTimestamp")
	return crd
}

// TestAzureMonitorPodMonitorSchema validates the PodMonitors against the stand-in CRD's schema
// as the API server would (types, enums, patterns, unknown fields), and shows the check refuses
// a misspelt field.
func TestAzureMonitorPodMonitorSchema(t *testing.T) {
	crd := azmonCRD(t)
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var raw map[string]any
	for _, v := range versions {
		m := v.(map[string]any)
		if m["name"] == "v1" {
			raw, _, _ = unstructured.NestedMap(m, "schema", "openAPIV3Schema")
		}
	}
	if raw == nil {
		t.Fatal("no v1 schema")
	}
	data, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := &spec.Schema{}
	if err := json.Unmarshal(data, s); err != nil {
		t.Fatal(err)
	}
	check := func(o *unstructured.Unstructured) []string {
		var errs []string
		if res := validate.NewSchemaValidator(s, nil, "", strfmt.Default).Validate(o.Object); !res.IsValid() {
			for _, e := range res.Errors {
				errs = append(errs, e.Error())
			}
		}
		return append(errs, pruned(o.Object, raw, "")...)
	}
	var seen int
	var sample *unstructured.Unstructured
	for _, name := range Stamps {
		objs, err := Render(azureMonitorDir(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GroupVersionKind().Group != azmonGroup {
				continue
			}
			seen++
			sample = o
			for _, e := range check(o) {
				t.Errorf("stamp %s: %s: %s", name, objectID(o), e)
			}
		}
	}
	if seen != 2*len(Stamps) {
		t.Errorf("validated %d PodMonitors, want one per role and stamp", seen)
	}
	bad := sample.DeepCopy()
	eps, _, _ := unstructured.NestedSlice(bad.Object, "spec", "podMetricsEndpoints")
	eps[0].(map[string]any)["bearerTokenScret"] = map[string]any{"name": "x", "key": "y"}
	if err := unstructured.SetNestedSlice(bad.Object, eps, "spec", "podMetricsEndpoints"); err != nil {
		t.Fatal(err)
	}
	if errs := check(bad); !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "bearerTokenScret") }) {
		t.Errorf("a misspelt field passes the schema check: %v", errs)
	}
}

func ptrString(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// azmonEnv is provisionEnv with what --azure-monitor needs, and its optional settings, so that
// every flag they add is printed (and checked by TestAzCommandsExist).
var azmonEnv = append(slices.Clone(provisionEnv), "METRICS_KEY_FILE=metrics.key",
	"GRAFANA_RESOURCE_ID=/subscriptions/0/resourceGroups/rg/providers/Microsoft.Dashboard/grafana/g",
	"ACTION_GROUP_ID=/subscriptions/0/resourceGroups/rg/providers/microsoft.insights/actionGroups/ops",
	"RUNBOOK_BASE_URL=https://git.example.com/fork/bridgehead/blob/main/")

// Placeholders provision.sh's dry run prints for what it would read back from Azure.
const (
	workspaceIDPlaceholder = "__AZURE_MONITOR_WORKSPACE_ID__"
	aksIDPlaceholder       = "__AKS_ID__"
	arcIDPlaceholder       = "__ARC_CLUSTER_ID__"
)

// rulesTemplate is the generated ARM template of the alerts (deploy/monitoring).
const rulesTemplate = "monitoring/azure-prometheus-rules.json"

// checkIdempotent fails for every create in calls that is not directly preceded by the show of
// the same thing. Role assignments are checked by a list, and a template deployment is
// declarative: deploying it again is the update.
func checkIdempotent(t *testing.T, calls []azCall) {
	t.Helper()
	for i, c := range calls {
		if len(c.command) == 0 || c.command[len(c.command)-1] != "create" || c.is("role assignment create") || c.is("deployment group create") {
			continue
		}
		show := append(slices.Clone(c.command[:len(c.command)-1]), "show")
		if i == 0 || !slices.Equal(calls[i-1].command, show) {
			t.Errorf("%q is not preceded by az %s (idempotence)", c.line, strings.Join(show, " "))
		}
	}
}

// parameters returns the name=value words after --parameters.
func (c azCall) parameters() map[string]string {
	out := map[string]string{}
	if i := slices.Index(c.args, "--parameters"); i >= 0 {
		for _, w := range valuesAfter(c.args[i+1:]) {
			k, v, _ := strings.Cut(w, "=")
			out[k] = v
		}
	}
	return out
}

// TestProvisionAzureMonitor checks provision.sh --azure-monitor's dry run for what each stamp
// needs: the workspace; managed Prometheus on AKS (az aks update --enable-azure-monitor-metrics
// with the workspace) and on the Arc cluster (the extension Microsoft.AzureMonitor.Containers.Metrics
// with the workspace); the Flux configuration's second Kustomization applying
// deploy/kustomize/azure-monitor/<stamp> after the stamp's, only once the scrape key's Secret is
// written; and the committed rule group template deployed per stamp with the workspace, that
// stamp's cluster and every parameter the template requires.
func TestProvisionAzureMonitor(t *testing.T) {
	out := runScript(t, "azure/provision.sh", azmonEnv, "--dry-run", "--azure-monitor")
	calls := azCalls(t, out)
	checkIdempotent(t, calls)
	find := func(what string, match func(azCall) bool) []azCall {
		t.Helper()
		var got []azCall
		for _, c := range calls {
			if match(c) {
				got = append(got, c)
			}
		}
		if len(got) == 0 {
			t.Errorf("dry run lacks %s", what)
		}
		return got
	}
	find("the workspace", func(c azCall) bool {
		return c.is("resource create") && c.flagValue("--resource-type") == "Microsoft.Monitor/accounts" &&
			c.flagValue("--name") == "bridgehead-amw" && c.flagValue("--location") == "westeurope"
	})
	find("the workspace's id", func(c azCall) bool {
		return c.is("resource show") && c.flagValue("--resource-type") == "Microsoft.Monitor/accounts" && c.flagValue("--query") == "id"
	})
	find("managed Prometheus on AKS", func(c azCall) bool {
		return c.is("aks update") && c.flagValue("--name") == "bridgehead-aks" && slices.Contains(c.flags, "--enable-azure-monitor-metrics") &&
			c.flagValue("--azure-monitor-workspace-resource-id") == workspaceIDPlaceholder &&
			c.flagValue("--grafana-resource-id") != ""
	})
	find("the metrics extension on the Arc cluster", func(c azCall) bool {
		i := slices.Index(c.args, "--configuration-settings")
		return c.is("k8s-extension create") && c.flagValue("--cluster-type") == "connectedClusters" &&
			c.flagValue("--cluster-name") == "hci-aks" && c.flagValue("--resource-group") == "hci-rg" &&
			c.flagValue("--extension-type") == "Microsoft.AzureMonitor.Containers.Metrics" && i >= 0 &&
			slices.Contains(valuesAfter(c.args[i+1:]), "azure-monitor-workspace-resource-id="+workspaceIDPlaceholder)
	})

	// The stamp's own Kustomization, named in the Flux configuration: the PodMonitors depend on it.
	stampKustomization := map[string]string{}
	for _, c := range calls {
		if c.is("k8s-configuration flux create") {
			for _, w := range c.args {
				if strings.HasPrefix(w, "name=") {
					stampKustomization[c.flagValue("--cluster-type")] = strings.TrimPrefix(w, "name=")
				}
			}
		}
	}
	template, err := os.ReadFile(filepath.Join(deployDir, rulesTemplate))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Parameters map[string]struct {
			DefaultValue any `json:"defaultValue"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(template, &tmpl); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	lineOf := func(match func(string) bool) int {
		for i, l := range lines {
			if match(l) {
				return i
			}
		}
		return -1
	}
	for _, st := range []struct{ stamp, clusterType, cluster, context, id string }{
		{"cloud", "managedClusters", "bridgehead-aks", "bridgehead-aks", aksIDPlaceholder},
		{"onprem", "connectedClusters", "hci-aks", "hci-aks", arcIDPlaceholder},
	} {
		ks := find("the PodMonitors' Kustomization on "+st.stamp, func(c azCall) bool {
			return c.is("k8s-configuration flux kustomization create") && c.flagValue("--cluster-type") == st.clusterType
		})
		for _, c := range ks {
			path := c.flagValue("--path")
			if want := "./deploy/kustomize/azure-monitor/" + st.stamp; path != want {
				t.Errorf("%s: --path %s, want %s", st.stamp, path, want)
			}
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(path), "kustomization.yaml")); err != nil {
				t.Errorf("%s: %v", st.stamp, err)
			}
			if c.flagValue("--name") != provisionSetting(t, "FLUX_CONFIG") || c.flagValue("--cluster-name") != st.cluster {
				t.Errorf("%q: not the Flux configuration of %s", c.line, st.cluster)
			}
			if got, want := c.flagValue("--depends-on"), stampKustomization[st.clusterType]; got == "" || got != want {
				t.Errorf("%s: --depends-on %q, want the stamp's Kustomization %q", st.stamp, got, want)
			}
			if c.flagValue("--prune") != "true" {
				t.Errorf("%s: --prune %q, want true (removing the Kustomization removes the PodMonitors)", st.stamp, c.flagValue("--prune"))
			}
			// The Secret first: ama-metrics ignores a Secret created after its PodMonitor.
			secret := lineOf(func(l string) bool {
				return strings.Contains(l, "--context "+st.context+" create secret generic "+scrapeSecret+" --namespace="+scrapeSecretNamespace+" ")
			})
			kust := lineOf(func(l string) bool { return strings.TrimSpace(l) == c.line })
			if secret < 0 || kust < secret {
				t.Errorf("%s: the scrape key's Secret (line %d) is not written before the PodMonitors' Kustomization (line %d)", st.stamp, secret, kust)
			}
		}
		deps := find("the rule group of "+st.stamp, func(c azCall) bool {
			return c.is("deployment group create") && c.parameters()["stamp"] == st.stamp
		})
		if len(deps) != 1 {
			t.Errorf("%s: %d rule group deployments, want 1", st.stamp, len(deps))
		}
		for _, c := range deps {
			file := c.flagValue("--template-file")
			if got, err := os.ReadFile(file); err != nil || string(got) != string(template) {
				t.Errorf("%s: --template-file %s is not deploy/%s (%v)", st.stamp, file, rulesTemplate, err)
			}
			p := c.parameters()
			if p["azureMonitorWorkspaceId"] != workspaceIDPlaceholder || p["clusterResourceId"] != st.id {
				t.Errorf("%s: parameters %v: want the workspace %s and the cluster %s", st.stamp, p, workspaceIDPlaceholder, st.id)
			}
			if p["actionGroupId"] == "" || p["runbookBaseUrl"] == "" {
				t.Errorf("%s: parameters %v: ACTION_GROUP_ID and RUNBOOK_BASE_URL are not passed on", st.stamp, p)
			}
			for name := range p {
				if _, ok := tmpl.Parameters[name]; !ok {
					t.Errorf("%s: parameter %s is not in the template", st.stamp, name)
				}
			}
			for name, tp := range tmpl.Parameters {
				if _, ok := p[name]; !ok && tp.DefaultValue == nil {
					t.Errorf("%s: the template's required parameter %s is not passed", st.stamp, name)
				}
			}
		}
	}
	// The id the rule groups are scoped to is the one the cluster's show returns.
	find("the AKS cluster's id", func(c azCall) bool { return c.is("aks show") && c.flagValue("--query") == "id" })
	find("the Arc cluster's id", func(c azCall) bool { return c.is("connectedk8s show") && c.flagValue("--query") == "id" })
}

// azureMonitorMarks are what only --azure-monitor may print.
var azureMonitorMarks = []string{"Microsoft.Monitor", "Microsoft.AlertsManagement", "Containers.Metrics", "enable-azure-monitor-metrics",
	"deployment group create", "azure-monitor", "azuremonitor-metrics", scrapeSecret, "kustomization create"}

// TestProvisionAzureMonitorOnlyWhenAsked checks that without --azure-monitor nothing of Azure
// Monitor is printed (a stamp without it is provisioned as before); that --stamp cloud
// --azure-monitor does the cloud side only; that the flag without METRICS_KEY_FILE is refused;
// that without ONPREM_CONTEXT the on-prem Secret and Kustomization are printed for later, in that
// order, instead of run; and that the teardown removes the Arc cluster's metrics extension only
// with the flag.
func TestProvisionAzureMonitorOnlyWhenAsked(t *testing.T) {
	for name, out := range map[string]string{
		"provision": provisionDryRun(t),
		"teardown":  runScript(t, "azure/provision.sh", provisionEnv, "--dry-run", "--teardown"),
	} {
		for _, m := range azureMonitorMarks {
			if strings.Contains(out, m) {
				t.Errorf("%s without --azure-monitor prints %q", name, m)
			}
		}
	}

	cloud := azCalls(t, runScript(t, "azure/provision.sh", azmonEnv, "--dry-run", "--azure-monitor", "--stamp", "cloud"))
	var deployments []string
	for _, c := range cloud {
		if c.flagValue("--cluster-type") == "connectedClusters" || c.flagValue("--extension-type") == "Microsoft.AzureMonitor.Containers.Metrics" {
			t.Errorf("--stamp cloud: %q", c.line)
		}
		if c.is("deployment group create") {
			deployments = append(deployments, c.parameters()["stamp"])
		}
		if c.is("aks update") && c.flagValue("--grafana-resource-id") != "" && !slices.Contains(azmonEnv, "GRAFANA_RESOURCE_ID="+c.flagValue("--grafana-resource-id")) {
			t.Errorf("%q: not GRAFANA_RESOURCE_ID", c.line)
		}
	}
	if !slices.Equal(deployments, []string{"cloud"}) {
		t.Errorf("--stamp cloud deploys rule groups for %v, want [cloud]", deployments)
	}

	cmd := exec.Command("bash", filepath.Join(deployDir, "azure/provision.sh"), "--dry-run", "--azure-monitor")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, provisionEnv...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "METRICS_KEY_FILE") {
		t.Errorf("--azure-monitor without METRICS_KEY_FILE: %v\n%s; want a refusal naming it", err, b)
	}

	var noContext []string
	for _, e := range azmonEnv {
		if !strings.HasPrefix(e, "ONPREM_CONTEXT=") {
			noContext = append(noContext, e)
		}
	}
	out := runScript(t, "azure/provision.sh", noContext, "--dry-run", "--azure-monitor", "--stamp", "onprem")
	for _, c := range azCalls(t, out) {
		if c.is("k8s-configuration flux kustomization create") {
			t.Errorf("without ONPREM_CONTEXT the PodMonitors' Kustomization is created before the Secret can be: %q", c.line)
		}
	}
	secret, kust := strings.Index(out, "--metrics-key-file METRICS_KEY_FILE"), strings.Index(out, "#   az k8s-configuration flux kustomization create")
	if secret < 0 || kust < secret || !strings.Contains(out[kust:], "--path ./deploy/kustomize/azure-monitor/onprem") {
		t.Errorf("without ONPREM_CONTEXT: want stamp-config.sh --metrics-key-file, then the Kustomization, printed for later:\n%s", out)
	}

	down := azCalls(t, runScript(t, "azure/provision.sh", azmonEnv, "--dry-run", "--teardown", "--azure-monitor"))
	if !slices.ContainsFunc(down, func(c azCall) bool {
		return c.is("k8s-extension delete") && c.flagValue("--name") == "azuremonitor-metrics" && c.flagValue("--cluster-type") == "connectedClusters"
	}) {
		t.Error("--teardown --azure-monitor leaves the Arc cluster's metrics extension")
	}
}
