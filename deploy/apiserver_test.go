//go:build k8s

package deploy

// The kit applied to a real kube-apiserver (deploy/k8stest) the way the Azure Flux extension
// applies it: make test-k8s. Built only with -tags k8s, so that `make test` needs no binaries.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/deploy/k8stest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// fluxDefaultServiceAccount is the account the extension's kustomize-controller impersonates
// for a Kustomization without spec.serviceAccountName (--default-service-account).
const fluxDefaultServiceAccount = "flux-applier"

// configNamespace is the namespace of the Azure fluxConfiguration (provision.sh), whose
// flux-applier applies deploy/flux/clusters/<stamp>.
const configNamespace = "cluster-config"

// variableCase is one documented way of configuring a stamp: the arguments of
// deploy/stamp-config.sh, a key an older ConfigMap lacks, and the overlay a fork may point the
// Kustomization at instead of the stamp's own.
type variableCase struct {
	name    string
	args    []string
	drop    string
	overlay string
}

// variableCases are, per stamp, every documented combination of cluster variables.
func variableCases() map[string][]variableCase {
	return map[string][]variableCase{
		"onprem": {
			{name: "sample", args: stampConfigArgs["onprem"]},
			{name: "nfs-path", args: append(slices.Clone(stampConfigArgs["onprem"]), "--nfs-path", "/export/spool")},
			{name: "nfs-csi", args: stampConfigArgs["onprem"], overlay: "./deploy/kustomize/overlays/onprem-nfs-csi"},
		},
		"cloud": {
			{name: "failover-host", args: stampConfigArgs["cloud"]},
			{name: "no-failover-host", args: stampConfigNoFailover},
			{name: "configmap-without-FAILOVER_HOST", args: stampConfigNoFailover, drop: "FAILOVER_HOST"},
		},
	}
}

// TestAPIServer applies each stamp, for every documented variable combination, to its own
// control plane as Flux would, then runs the negative controls that prove the harness can fail.
func TestAPIServer(t *testing.T) {
	for _, name := range Stamps {
		t.Run(name, func(t *testing.T) {
			// A site per case, each on its own control plane: a PersistentVolume's source,
			// for one, cannot change once created.
			for i, vc := range variableCases()[name] {
				t.Run(vc.name, func(t *testing.T) {
					env := newFluxCluster(t)
					env.applyStamp(t, name, vc)
					if i == 0 && name == "onprem" && !t.Failed() {
						t.Run("negative-controls", func(t *testing.T) { env.negativeControls(t) })
					}
				})
			}
		})
	}
}

// fluxCluster is a control plane prepared as the Azure Flux extension prepares a cluster.
type fluxCluster struct {
	c     *k8stest.Cluster
	admin *k8stest.Applier
}

func newFluxCluster(t *testing.T) *fluxCluster {
	t.Helper()
	ctx := t.Context()
	c := k8stest.Start(t)
	admin, err := k8stest.NewApplier(c.Admin())
	if err != nil {
		t.Fatal(err)
	}
	// The Flux CRDs, then what the extension creates (testdata/k8s/flux-extension.yaml). And a
	// stand-in for the PodMonitor CRD that Azure Monitor's metrics agent installs (azmonCRD).
	var crds []*unstructured.Unstructured
	for _, f := range crdFiles(t) {
		objs, err := k8stest.ReadObjects(f)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, objs...)
	}
	crds = append(crds, azmonCRD(t))
	if err := admin.Apply(ctx, crds, k8stest.Apply); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range crds {
		names = append(names, o.GetName())
	}
	if err := k8stest.WaitEstablished(ctx, c.Admin(), names...); err != nil {
		t.Fatal(err)
	}
	ext, err := k8stest.ReadObjects(filepath.Join("testdata", "k8s", "flux-extension.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Apply(ctx, ext, k8stest.Apply); err != nil {
		t.Fatal(err)
	}
	return &fluxCluster{c: c, admin: admin}
}

// applier returns an Applier that impersonates namespace/name.
func (e *fluxCluster) applier(t *testing.T, namespace, name string) *k8stest.Applier {
	t.Helper()
	a, err := k8stest.NewApplier(e.c.As(namespace, name))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// apply applies objs with a, failing the test on any error or API server warning.
func apply(t *testing.T, a *k8stest.Applier, what string, objs []*unstructured.Unstructured, mode k8stest.Mode) {
	t.Helper()
	if err := a.Apply(t.Context(), objs, mode); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if w := a.Warnings(); len(w) > 0 {
		t.Errorf("%s: API server warnings:\n  %s", what, strings.Join(w, "\n  "))
	}
}

// applyStamp does what the cluster sees when a stamp is set up and synced: stamp-config.sh's
// namespaces and cluster variables (as the admin), the configuration's Kustomization applying
// deploy/flux/clusters/<stamp> as the configuration's flux-applier, then that directory's
// Kustomization applying its overlay, substituted from the ConfigMap it reads, as the account
// kustomize-controller impersonates for it. Then a strict server-side dry run of everything, and
// every pod template admitted under the namespace's Pod Security level.
func (e *fluxCluster) applyStamp(t *testing.T, stampName string, vc variableCase) {
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(e.c.Admin())
	if err != nil {
		t.Fatal(err)
	}

	// stamp-config.sh, as the person who runs it (cluster admin).
	setup, err := stampConfigObjects(vc.args)
	if err != nil {
		t.Fatal(err)
	}
	if vc.drop != "" {
		for _, o := range setup {
			if o.GetKind() == "ConfigMap" && o.GetName() == clusterVarsConfigMap {
				unstructured.RemoveNestedField(o.Object, "data", vc.drop)
			}
		}
	}
	apply(t, e.admin, "stamp-config.sh", setup, k8stest.Apply)

	// The Azure configuration's Kustomization: deploy/flux/clusters/<stamp>, unsubstituted.
	cluster, err := Render(ClusterDir(deployDir, stampName))
	if err != nil {
		t.Fatal(err)
	}
	if vc.overlay != "" {
		for _, o := range cluster {
			if o.GetKind() == "Kustomization" {
				if err := unstructured.SetNestedField(o.Object, vc.overlay, "spec", "path"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	configApplier := e.applier(t, configNamespace, fluxDefaultServiceAccount)
	apply(t, configApplier, "deploy/flux/clusters/"+stampName+" as "+configNamespace+"/"+fluxDefaultServiceAccount, cluster, k8stest.Apply)

	var ks *unstructured.Unstructured
	for _, o := range cluster {
		if o.GetKind() == "Kustomization" && strings.HasPrefix(o.GetAPIVersion(), "kustomize.toolkit.fluxcd.io/") {
			ks = o
		}
	}
	if ks == nil {
		t.Fatal("no Flux Kustomization in the cluster directory")
	}
	sa, _, _ := unstructured.NestedString(ks.Object, "spec", "serviceAccountName")
	if sa == "" {
		sa = fluxDefaultServiceAccount
	}
	ksApplier := e.applier(t, ks.GetNamespace(), sa)
	ksAccount := ks.GetNamespace() + "/" + sa
	ksCS, err := kubernetes.NewForConfig(e.c.As(ks.GetNamespace(), sa))
	if err != nil {
		t.Fatal(err)
	}

	// Its source must be a GitRepository in its own namespace (multi-tenancy forbids a
	// cross-namespace sourceRef) that exists.
	refKind, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "kind")
	refName, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "name")
	refNS, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "namespace")
	if refNS != "" && refNS != ks.GetNamespace() {
		t.Errorf("Kustomization %s: sourceRef namespace %s: the extension's multi-tenancy refuses a cross-namespace reference", ks.GetName(), refNS)
	}
	if refKind != "GitRepository" {
		t.Errorf("Kustomization %s: sourceRef kind %q, want GitRepository", ks.GetName(), refKind)
	}
	ksDyn, err := dynamic.NewForConfig(e.c.As(ks.GetNamespace(), sa))
	if err != nil {
		t.Fatal(err)
	}
	gitRepos := schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	if _, err := ksDyn.Resource(gitRepos).Namespace(ks.GetNamespace()).Get(ctx, refName, metav1.GetOptions{}); err != nil {
		t.Errorf("Kustomization %s: source GitRepository %s/%s as %s: %v", ks.GetName(), ks.GetNamespace(), refName, ksAccount, err)
	}

	// postBuild.substituteFrom, read from the Kustomization's namespace as its account.
	vars := map[string]string{}
	refs, _, _ := unstructured.NestedSlice(ks.Object, "spec", "postBuild", "substituteFrom")
	for _, r := range refs {
		m, _ := r.(map[string]any)
		if m["kind"] != "ConfigMap" {
			t.Fatalf("substituteFrom %v: only ConfigMaps are written by stamp-config.sh", m)
		}
		cmName, _ := m["name"].(string)
		cm, err := ksCS.CoreV1().ConfigMaps(ks.GetNamespace()).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("substituteFrom ConfigMap %s/%s as %s: %v (stamp-config.sh must write it there)", ks.GetNamespace(), cmName, ksAccount, err)
		}
		for k, v := range cm.Data {
			vars[k] = v
		}
	}
	subst, _, _ := unstructured.NestedStringMap(ks.Object, "spec", "postBuild", "substitute")
	for k, v := range subst {
		vars[k] = v
	}
	path, _, _ := unstructured.NestedString(ks.Object, "spec", "path")
	raw, err := Render(filepath.Join(repoRoot, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Substitute(raw, vars)
	if err != nil {
		t.Fatal(err)
	}

	apply(t, ksApplier, "overlay "+path+" as "+ksAccount, objs, k8stest.Apply)
	apply(t, ksApplier, "strict dry run of "+path+" as "+ksAccount, objs, k8stest.DryRunStrict)
	apply(t, configApplier, "strict dry run of deploy/flux/clusters/"+stampName, cluster, k8stest.DryRunStrict)

	// With --azure-monitor, the configuration's second Kustomization (provision.sh: az
	// k8s-configuration flux kustomization create --path ./deploy/kustomize/azure-monitor/<stamp>),
	// which the extension applies, unsubstituted, as the configuration's flux-applier.
	azmon, err := Render(azureMonitorDir(stampName))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, configApplier, "deploy/kustomize/azure-monitor/"+stampName+" as "+configNamespace+"/"+fluxDefaultServiceAccount, azmon, k8stest.Apply)
	apply(t, configApplier, "strict dry run of deploy/kustomize/azure-monitor/"+stampName, azmon, k8stest.DryRunStrict)

	var kinds []string
	for _, o := range append(append(slices.Clone(cluster), objs...), azmon...) {
		kinds = append(kinds, k8stest.ID(o))
	}
	t.Logf("applied %d objects: %s", len(kinds), strings.Join(kinds, ", "))

	// Every field is Flux's: the objects were applied, not created by someone else.
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		d, err := cs.AppsV1().Deployments(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(d.ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
			return f.Manager == k8stest.FieldManager && f.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("Deployment %s: no fields applied by %s: %+v", d.Name, k8stest.FieldManager, d.ManagedFields)
		}
		// Its pods, admitted where they will run: Pod Security enforces on pods, and
		// only warns on the Deployment.
		checkPodAdmitted(t, ksCS, o)
	}
	checkRestricted(t, cs, objs)
}

// checkPodAdmitted creates (dry run) a pod from a workload's template in its namespace.
func checkPodAdmitted(t *testing.T, cs kubernetes.Interface, workload *unstructured.Unstructured) {
	t.Helper()
	_, err := createPod(t, cs, podFromTemplate(t, workload, ""))
	if err != nil {
		t.Errorf("%s: a pod of its template is refused: %v", k8stest.ID(workload), err)
	}
}

// createPod creates pod in a server-side dry run.
func createPod(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	return cs.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// podFromTemplate builds a Pod from a Deployment's pod template; name defaults to the
// workload's name with -probe.
func podFromTemplate(t *testing.T, workload *unstructured.Unstructured, name string) *corev1.Pod {
	t.Helper()
	tmpl, _, err := unstructured.NestedMap(workload.Object, "spec", "template")
	if err != nil || tmpl == nil {
		t.Fatalf("%s: no pod template: %v", k8stest.ID(workload), err)
	}
	if name == "" {
		name = workload.GetName() + "-probe"
	}
	md, _ := tmpl["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
	}
	md["name"] = name
	md["namespace"] = workload.GetNamespace()
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tmpl["spec"],
	}}
	var typed corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(pod.Object, &typed, true); err != nil {
		t.Fatalf("%s: pod template: %v", k8stest.ID(workload), err)
	}
	return &typed
}

// checkRestricted checks that every namespace the stamp puts workloads in enforces the
// restricted Pod Security Standard, as stored on the server.
func checkRestricted(t *testing.T, cs kubernetes.Interface, objs []*unstructured.Unstructured) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range objs {
		if _, ok := podSpecPaths[o.GetKind()]; !ok || seen[o.GetNamespace()] {
			continue
		}
		seen[o.GetNamespace()] = true
		ns, err := cs.CoreV1().Namespaces().Get(t.Context(), o.GetNamespace(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Errorf("namespace %s enforces Pod Security %q, want restricted", ns.Name, got)
		}
	}
	if len(seen) == 0 {
		t.Error("no workloads applied")
	}
}

// negativeControls prove the harness can fail: after a stamp was applied, a misspelt field, a
// privileged pod and a write into another tenant's namespace must each be refused.
func (e *fluxCluster) negativeControls(t *testing.T) {
	ctx := t.Context()
	objs, err := Render(ClusterDir(deployDir, "onprem"))
	if err != nil {
		t.Fatal(err)
	}
	var ksNS string
	for _, o := range objs {
		if o.GetKind() == "Kustomization" {
			ksNS = o.GetNamespace()
		}
	}
	a := e.applier(t, ksNS, fluxDefaultServiceAccount)
	s := loadStamps(t)["onprem"]
	var api *unstructured.Unstructured
	for _, o := range s.objs {
		if o.GetKind() == "Deployment" && o.GetName() == "bridgehead-api" {
			api = o.DeepCopy()
		}
	}
	if api == nil {
		t.Fatal("no bridgehead-api Deployment")
	}

	t.Run("misspelt-field", func(t *testing.T) {
		bad := api.DeepCopy()
		if err := unstructured.SetNestedField(bad.Object, int64(2), "spec", "replicaz"); err != nil {
			t.Fatal(err)
		}
		// Refused both ways: server-side apply itself has no place for a field the schema
		// does not declare, whatever the field validation.
		for name, mode := range map[string]k8stest.Mode{"strict dry run": k8stest.DryRunStrict, "apply": k8stest.Apply} {
			err := a.Apply(ctx, []*unstructured.Unstructured{bad}, mode)
			if err == nil || !strings.Contains(err.Error(), "replicaz") {
				t.Errorf("%s of a Deployment with spec.replicaz: %v, want an error naming the field", name, err)
			}
		}
	})

	t.Run("privileged-pod", func(t *testing.T) {
		bad := api.DeepCopy()
		ctrs, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
		c0 := ctrs[0].(map[string]any)
		sc, _ := c0["securityContext"].(map[string]any)
		sc["privileged"] = true
		sc["allowPrivilegeEscalation"] = true
		c0["securityContext"] = sc
		if err := unstructured.SetNestedSlice(bad.Object, ctrs, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(e.c.As(ksNS, fluxDefaultServiceAccount))
		if err != nil {
			t.Fatal(err)
		}
		_, err = createPod(t, cs, podFromTemplate(t, bad, "privileged"))
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted`) {
			t.Errorf("privileged pod in %s: %v, want refused by Pod Security restricted", bad.GetNamespace(), err)
		}
		// And on the Deployment, a warning the harness fails on.
		if err := a.Apply(ctx, []*unstructured.Unstructured{bad}, k8stest.DryRunStrict); err != nil {
			t.Fatal(err)
		}
		if w := a.Warnings(); !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "PodSecurity") }) {
			t.Errorf("privileged Deployment: no Pod Security warning (warnings %q)", w)
		}
	})

	// The kit's first mistake: a Kustomization in flux-system is applied as
	// flux-system/flux-applier, which the extension never creates.
	t.Run("kustomization-outside-the-configuration-namespace", func(t *testing.T) {
		err := e.applier(t, "flux-system", fluxDefaultServiceAccount).Apply(ctx, s.objs, k8stest.DryRunStrict)
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("the stamp applied as flux-system/flux-applier: %v, want forbidden", err)
		}
	})

	// Azure Monitor's PodMonitor is held to its CRD's schema: a misspelt field is refused.
	t.Run("misspelt-podmonitor-field", func(t *testing.T) {
		objs, err := Render(azureMonitorDir("onprem"))
		if err != nil {
			t.Fatal(err)
		}
		var pm *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "PodMonitor" {
				pm = o.DeepCopy()
			}
		}
		if pm == nil {
			t.Fatal("no PodMonitor")
		}
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		eps[0].(map[string]any)["bearerTokenScret"] = map[string]any{"name": "x", "key": "y"}
		if err := unstructured.SetNestedSlice(pm.Object, eps, "spec", "podMetricsEndpoints"); err != nil {
			t.Fatal(err)
		}
		err = e.applier(t, configNamespace, fluxDefaultServiceAccount).Apply(ctx, []*unstructured.Unstructured{pm}, k8stest.DryRunStrict)
		if err == nil || !strings.Contains(err.Error(), "bearerTokenScret") {
			t.Errorf("strict dry run of a PodMonitor with bearerTokenScret: %v, want an error naming the field", err)
		}
	})

	t.Run("other-tenant", func(t *testing.T) {
		tenant := e.applier(t, "tenant-b", fluxDefaultServiceAccount)
		cm := func(ns string) []*unstructured.Unstructured {
			return []*unstructured.Unstructured{{Object: map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "tenant-b-was-here", "namespace": ns},
			}}}
		}
		err := tenant.Apply(ctx, cm(api.GetNamespace()), k8stest.Apply)
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("tenant-b's flux-applier writing into %s: %v, want forbidden", api.GetNamespace(), err)
		}
		// The same account may write its own namespace: the refusal above is RBAC's, not a
		// broken client.
		if err := tenant.Apply(ctx, cm("tenant-b"), k8stest.Apply); err != nil {
			t.Errorf("tenant-b's flux-applier in its own namespace: %v", err)
		}
	})
}

// stampConfigObjects returns the namespaces and ConfigMaps deploy/stamp-config.sh creates when
// run with args, read from its --dry-run (`kubectl create namespace|configmap ...` lines).
// Secrets are left out: the API server does not check that a pod's Secret exists.
func stampConfigObjects(args []string) ([]*unstructured.Unstructured, error) {
	out, err := stampConfigDryRun(args)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, line := range strings.Split(out, "\n") {
		cmd, _, _ := strings.Cut(line, " | ")
		if !strings.HasPrefix(cmd, "kubectl create ") {
			continue
		}
		words, err := splitShell(cmd)
		if err != nil {
			return nil, err
		}
		if len(words) < 4 || words[0] != "kubectl" || words[1] != "create" {
			continue
		}
		md := map[string]any{"name": words[3]}
		o := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "metadata": md}}
		switch words[2] {
		case "namespace":
			o.SetKind("Namespace")
		case "configmap":
			o.SetKind("ConfigMap")
			data := map[string]any{}
			for _, w := range words[4:] {
				if ns, ok := strings.CutPrefix(w, "--namespace="); ok {
					md["namespace"] = ns
				}
				if kv, ok := strings.CutPrefix(w, "--from-literal="); ok {
					k, v, _ := strings.Cut(kv, "=")
					data[k] = v
				}
			}
			o.Object["data"] = data
		default:
			continue
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("stamp-config.sh %v creates no namespace or ConfigMap", args)
	}
	return objs, nil
}
