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
