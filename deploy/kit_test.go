package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The deploy directory is the package directory; the repository root is its parent.
const (
	deployDir = "."
	repoRoot  = ".."
)

// stamp is one stamp as Flux would apply it: its cluster directory, the Flux Kustomization that
// points at its overlay, and the overlay's objects after post-build substitution.
type stamp struct {
	name          string
	cluster       []*unstructured.Unstructured
	kustomization *kustomizev1.Kustomization
	raw           []*unstructured.Unstructured // overlay before substitution
	objs          []*unstructured.Unstructured // overlay after substitution
	vars          map[string]string
}

var (
	stampsOnce   sync.Once
	stampsByName map[string]*stamp
	stampsErr    error
)

// loadStamps renders both stamps once per test binary.
func loadStamps(t *testing.T) map[string]*stamp {
	t.Helper()
	stampsOnce.Do(func() { stampsByName, stampsErr = renderStamps() })
	if stampsErr != nil {
		t.Fatal(stampsErr)
	}
	return stampsByName
}

func renderStamps() (map[string]*stamp, error) {
	out := map[string]*stamp{}
	for _, name := range Stamps {
		s := &stamp{name: name}
		var err error
		if s.cluster, err = Render(ClusterDir(deployDir, name)); err != nil {
			return nil, err
		}
		for _, o := range s.cluster {
			if o.GetKind() != "Kustomization" {
				continue
			}
			obj, err := decodeStrict(o)
			if err != nil {
				return nil, err
			}
			if s.kustomization != nil {
				return nil, fmt.Errorf("stamp %s: more than one Flux Kustomization", name)
			}
			s.kustomization = obj.(*kustomizev1.Kustomization)
		}
		if s.kustomization == nil {
			return nil, fmt.Errorf("stamp %s: no Flux Kustomization in %s", name, ClusterDir(deployDir, name))
		}
		path := filepath.Join(repoRoot, filepath.FromSlash(s.kustomization.Spec.Path))
		if s.raw, err = Render(path); err != nil {
			return nil, fmt.Errorf("stamp %s: Flux path %s: %w", name, s.kustomization.Spec.Path, err)
		}
		s.vars, err = clusterVars(name, s.kustomization, stampConfigArgs[name])
		if err != nil {
			return nil, err
		}
		if s.objs, err = Substitute(s.raw, s.vars); err != nil {
			return nil, fmt.Errorf("stamp %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// clusterVars is what Flux substitutes on a stamp: the Kustomization's postBuild.substitute,
// and for each substituteFrom ConfigMap the keys deploy/stamp-config.sh writes into it when
// run with args (read from its --dry-run), with sample values.
func clusterVars(name string, k *kustomizev1.Kustomization, args []string) (map[string]string, error) {
	vars := map[string]string{}
	if k.Spec.PostBuild == nil {
		return vars, nil
	}
	for _, ref := range k.Spec.PostBuild.SubstituteFrom {
		if ref.Kind != "ConfigMap" || ref.Name != clusterVarsConfigMap {
			return nil, fmt.Errorf("stamp %s: substituteFrom %s/%s: only the %s ConfigMap is written by deploy/stamp-config.sh", name, ref.Kind, ref.Name, clusterVarsConfigMap)
		}
		keys, err := stampConfigKeys(args)
		if err != nil {
			return nil, err
		}
		for k, v := range keys {
			vars[k] = v
		}
	}
	for k, v := range k.Spec.PostBuild.Substitute {
		vars[k] = v
	}
	return vars, nil
}

// TestRenderEveryKustomization builds every kustomization directory in the kit (base,
// overlays, Flux clusters) and strict-decodes every object into its typed API.
func TestRenderEveryKustomization(t *testing.T) {
	var dirs []string
	err := filepath.WalkDir(deployDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kustomize/base"}
	for _, s := range Stamps {
		want = append(want, "kustomize/overlays/"+s, "flux/clusters/"+s)
	}
	for _, w := range want {
		if !slices.Contains(dirs, filepath.FromSlash(w)) {
			t.Errorf("no kustomization.yaml in %s", w)
		}
	}
	for _, dir := range dirs {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			objs, err := Render(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("renders no objects")
			}
			for _, o := range objs {
				if _, err := decodeStrict(o); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestStampsAfterSubstitution decodes each stamp as Flux would apply it and checks that no
// variable is left.
func TestStampsAfterSubstitution(t *testing.T) {
	for name, s := range loadStamps(t) {
		for _, o := range s.objs {
			if _, err := decodeStrict(o); err != nil {
				t.Errorf("stamp %s: %v", name, err)
			}
			data, _ := o.MarshalJSON()
			if vs := Variables(data); len(vs) > 0 {
				t.Errorf("stamp %s: %s: unsubstituted %v", name, objectID(o), vs)
			}
			// kustomize-controller refuses a whole stamp with a namespaced object that has
			// no namespace ("namespace not specified").
			if !clusterScoped[o.GetKind()] && o.GetNamespace() == "" {
				t.Errorf("stamp %s: %s has no namespace", name, objectID(o))
			}
		}
	}
}

// TestSubstitutedValuesRollPods checks that a value Flux substitutes reaches the pods through
// their template, never through a generated ConfigMap: kustomize names a ConfigMap by a hash of
// its content before Flux substitutes, so a changed site value would leave the name, the pod
// template and so the running pods as they were.
func TestSubstitutedValuesRollPods(t *testing.T) {
	for name, s := range loadStamps(t) {
		for _, o := range s.raw {
			if o.GetKind() != "ConfigMap" {
				continue
			}
			data, err := o.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if vs := Variables(data); len(vs) > 0 {
				t.Errorf("stamp %s: %s holds Flux variables %v: a new value would not roll the pods; set them in the pod template", name, objectID(o), vs)
			}
		}
		// A ServiceAccount's values reach a pod once, when it is created (the workload
		// identity webhook reads the client id then): the pod template must change with them.
		accounts := map[string][]string{}
		for _, o := range s.raw {
			if o.GetKind() == "ServiceAccount" {
				data, _ := o.MarshalJSON()
				accounts[o.GetName()] = Variables(data)
			}
		}
		for _, o := range s.raw {
			if o.GetKind() != "Deployment" {
				continue
			}
			sa, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName")
			tmpl, _, _ := unstructured.NestedMap(o.Object, "spec", "template")
			data, err := json.Marshal(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range accounts[sa] {
				if !slices.Contains(Variables(data), v) {
					t.Errorf("stamp %s: %s: ServiceAccount %s uses ${%s}, which its pod template does not: a new value would not roll the pods", name, objectID(o), sa, v)
				}
			}
		}
	}
}

// clusterScoped lists the cluster-scoped kinds a stamp may hold; every other kind is namespaced.
var clusterScoped = map[string]bool{
	"Namespace": true, "PersistentVolume": true, "StorageClass": true, "IngressClass": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true, "PriorityClass": true,
}

// typedStamp holds a stamp's objects by kind.
type typedStamp struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pvcs        map[string]*corev1.PersistentVolumeClaim
	pvs         map[string]*corev1.PersistentVolume
	classes     map[string]*storagev1.StorageClass
	pdbs        []*policyv1.PodDisruptionBudget
	configMaps  map[string]*corev1.ConfigMap
	kinds       map[string]int
}

func typedObjects(t *testing.T, objs []*unstructured.Unstructured) typedStamp {
	t.Helper()
	ts := typedStamp{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		pvcs:        map[string]*corev1.PersistentVolumeClaim{},
		pvs:         map[string]*corev1.PersistentVolume{},
		classes:     map[string]*storagev1.StorageClass{},
		configMaps:  map[string]*corev1.ConfigMap{},
		kinds:       map[string]int{},
	}
	for _, o := range objs {
		obj, err := decodeStrict(o)
		if err != nil {
			t.Fatal(err)
		}
		ts.kinds[o.GetKind()]++
		switch v := obj.(type) {
		case *appsv1.Deployment:
			ts.deployments[v.Name] = v
		case *corev1.Service:
			ts.services[v.Name] = v
		case *corev1.PersistentVolumeClaim:
			ts.pvcs[v.Name] = v
		case *corev1.PersistentVolume:
			ts.pvs[v.Name] = v
		case *storagev1.StorageClass:
			ts.classes[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			ts.pdbs = append(ts.pdbs, v)
		case *corev1.ConfigMap:
			ts.configMaps[v.Name] = v
		}
	}
	return ts
}

// serveRoutes are the GET routes of `bridgehead serve` that probes may use (issue 3 and 8:
// open without credentials).
var serveRoutes = []string{"/healthz", "/readyz", "/ServiceAPI/health"}

// TestStampInvariants checks, per stamp, what the issue requires of a stamp.
func TestStampInvariants(t *testing.T) {
	for _, name := range Stamps {
		t.Run(name, func(t *testing.T) {
			s := loadStamps(t)[name]
			ts := typedObjects(t, s.objs)
			containers, err := Containers(s.objs)
			if err != nil {
				t.Fatal(err)
			}
			roles := map[string][]Container{}
			for _, c := range containers {
				role, ok := c.Value("role")
				if !ok {
					t.Errorf("%s: container %s sets no --role", c.Workload, c.Name)
				}
				roles[role] = append(roles[role], c)
				if len(c.Args) == 0 || c.Args[0] != "serve" {
					t.Errorf("%s: args %q do not start with the serve subcommand", c.Workload, c.Args)
				}
				if len(c.Positionals) > 0 {
					t.Errorf("%s: stray arguments %q", c.Workload, c.Positionals)
				}
				for _, st := range c.Settings {
					if st.Short {
						t.Errorf("%s: short flag -%s: use the long form", c.Workload, st.Flag)
					}
				}
				if len(c.Unresolved) > 0 {
					t.Errorf("%s: cannot resolve %v", c.Workload, c.Unresolved)
				}
				if stampName, _ := c.Value("stamp"); stampName != name {
					t.Errorf("%s: --stamp %q, want %q", c.Workload, stampName, name)
				}
				if l, _ := c.Value("listen"); !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "0.0.0.0:") {
					t.Errorf("%s: --listen %q is not reachable from outside the pod", c.Workload, l)
				}
				if a, _ := c.Value("auth"); a != "required" {
					t.Errorf("%s: --auth %q, want required", c.Workload, a)
				}
				if m, _ := c.Value("metrics-auth"); m != "true" {
					t.Errorf("%s: --metrics-auth %q, want true: /metrics and /v1/status closed to anonymous callers", c.Workload, m)
				}
			}
			if len(roles["api"]) != 1 || len(roles["forwarder"]) != 1 {
				t.Fatalf("want exactly one api and one forwarder container, got roles %v", mapKeys(roles))
			}
			if sink, _ := roles["forwarder"][0].Value("sink"); sink != "eventhubs" {
				t.Errorf("forwarder --sink %q, want eventhubs", sink)
			}

			for _, c := range containers {
				d := ts.deployments[c.Workload[strings.LastIndex(c.Workload, "/")+1:]]
				if d == nil {
					t.Fatalf("%s: not a Deployment", c.Workload)
				}
				role, _ := c.Value("role")
				checkDeployment(t, ts, d, c, role)
			}
			if len(ts.pdbs) < 2 {
				t.Errorf("%d PodDisruptionBudgets, want one per role", len(ts.pdbs))
			}
			if ts.kinds["NetworkPolicy"] == 0 {
				t.Error("no NetworkPolicy")
			}
			checkStorage(t, name, ts)
			checkExposure(t, name, s, ts)
			checkNotPruned(t, s.objs)
		})
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func checkDeployment(t *testing.T, ts typedStamp, d *appsv1.Deployment, c Container, role string) {
	t.Helper()
	id := "Deployment " + d.Name
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 || (role == "api" && *d.Spec.Replicas < 2) {
		t.Errorf("%s: replicas %s, want >= 2 for the API, >= 1 otherwise", id, fmtReplicas(d.Spec.Replicas))
	}
	pod := d.Spec.Template.Spec
	var ctr *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == c.Name {
			ctr = &pod.Containers[i]
		}
	}
	if ctr == nil {
		t.Fatalf("%s: container %s not found", id, c.Name)
	}

	// Image: pinned by version or digest, never latest.
	img := ctr.Image
	tag := ""
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		tag = img[i+1:]
	}
	if !strings.Contains(img, "@sha256:") && (tag == "" || tag == "latest") {
		t.Errorf("%s: image %q is not pinned to a version", id, img)
	}

	// Probes: startup, liveness and readiness on real routes of the binary, on the port it listens on.
	_, port, _ := strings.Cut(mustValue(t, c, "listen"), ":")
	probes := map[string]*corev1.Probe{"startup": ctr.StartupProbe, "liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe}
	wantPath := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
	for kind, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s HTTP probe", id, kind)
			continue
		}
		if p.HTTPGet.Path != wantPath[kind] || !slices.Contains(serveRoutes, p.HTTPGet.Path) {
			t.Errorf("%s: %s probe path %q, want %q", id, kind, p.HTTPGet.Path, wantPath[kind])
		}
		if !probePortMatches(ctr, p.HTTPGet.Port.String(), port) {
			t.Errorf("%s: %s probe port %s is not the --listen port %s", id, kind, p.HTTPGet.Port.String(), port)
		}
		_, tls := c.Value("tls-cert-file")
		if wantScheme := map[bool]corev1.URIScheme{false: corev1.URISchemeHTTP, true: corev1.URISchemeHTTPS}[tls]; p.HTTPGet.Scheme != wantScheme && !(p.HTTPGet.Scheme == "" && !tls) {
			t.Errorf("%s: %s probe scheme %q, want %q", id, kind, p.HTTPGet.Scheme, wantScheme)
		}
	}

	// Security context: non-root (the image's UID), read-only root, no capabilities, seccomp.
	psc := pod.SecurityContext
	sc := ctr.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatalf("%s: no security context", id)
	case !isTrue(psc.RunAsNonRoot) && !isTrue(sc.RunAsNonRoot):
		t.Errorf("%s: runAsNonRoot not set", id)
	case psc.RunAsUser == nil || *psc.RunAsUser != nonrootUID:
		t.Errorf("%s: runAsUser %v, want %d (the image's nonroot user, owner of the NFS export)", id, psc.RunAsUser, nonrootUID)
	case psc.FSGroup == nil || *psc.FSGroup != nonrootUID:
		t.Errorf("%s: fsGroup %v, want %d", id, psc.FSGroup, nonrootUID)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem not set", id)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation not false", id)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %+v, want drop [ALL] and no add", id, sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccomp profile %v, want RuntimeDefault", id, seccomp)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", id, ctr.Resources)
	}
	if pod.NodeSelector[corev1.LabelOSStable] != "linux" {
		t.Errorf("%s: nodeSelector %v: want %s=linux (the image is Linux-only; clusters may have Windows node pools)", id, pod.NodeSelector, corev1.LabelOSStable)
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		t.Errorf("%s: no topology spread constraints", id)
	}

	// The spool: a RWX claim, mounted once, whole, at --spool-dir.
	spoolDir := mustValue(t, c, "spool-dir")
	var spoolMounts []corev1.VolumeMount
	for _, m := range ctr.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("%s: volume %s mounted with subPath: a rename across mounts is EXDEV", id, m.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil {
				spoolMounts = append(spoolMounts, m)
				pvc := ts.pvcs[v.PersistentVolumeClaim.ClaimName]
				if pvc == nil {
					t.Errorf("%s: claim %s is not in the stamp", id, v.PersistentVolumeClaim.ClaimName)
				} else if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}) {
					t.Errorf("%s: claim %s access modes %v, want [ReadWriteMany]", id, pvc.Name, pvc.Spec.AccessModes)
				}
			}
		}
	}
	if len(spoolMounts) != 1 {
		t.Fatalf("%s: %d claim mounts, want exactly one (the spool)", id, len(spoolMounts))
	}
	if m := spoolMounts[0]; m.MountPath != spoolDir || m.MountPath != SpoolMountPath || m.ReadOnly {
		t.Errorf("%s: spool mounted at %q (readOnly %v), --spool-dir %q, want both %q, writable", id, m.MountPath, m.ReadOnly, spoolDir, SpoolMountPath)
	}

	// Every file a *-file setting names is on a mounted volume.
	for _, st := range c.Settings {
		if !strings.HasSuffix(st.Flag, "-file") || st.Flag == "file-path" {
			continue
		}
		if !mountedUnder(ctr, st.Value) {
			t.Errorf("%s: %s=%s is not under any volume mount", id, st.Source, st.Value)
		}
	}
}

func fmtReplicas(r *int32) string {
	if r == nil {
		return "unset"
	}
	return fmt.Sprint(*r)
}

func probePortMatches(ctr *corev1.Container, probePort, listenPort string) bool {
	if probePort == listenPort {
		return true
	}
	for _, p := range ctr.Ports {
		if p.Name == probePort && fmt.Sprint(p.ContainerPort) == listenPort {
			return true
		}
	}
	return false
}

func mountedUnder(ctr *corev1.Container, path string) bool {
	for _, m := range ctr.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

func mustValue(t *testing.T, c Container, flag string) string {
	t.Helper()
	v, ok := c.Value(flag)
	if !ok {
		t.Fatalf("%s: --%s not set", c.Workload, flag)
	}
	return v
}

func isTrue(b *bool) bool { return b != nil && *b }

// nonrootUID is the distroless image's nonroot user and group (65532).
const nonrootUID = 65532

// spoolMountOptions are the mount options docs/spool.md requires, per file system.
var spoolMountOptions = map[string][]string{
	"nfs": {"hard", "nfsvers=4.1", "lookupcache=positive"},
	"smb": {"cache=strict", "nosharesock"},
}

func checkStorage(t *testing.T, name string, ts typedStamp) {
	t.Helper()
	pvc := ts.pvcs["bridgehead-spool"]
	if pvc == nil {
		t.Fatal("no bridgehead-spool claim")
	}
	var options []string
	var fsType string
	switch {
	case pvc.Spec.VolumeName != "":
		pv := ts.pvs[pvc.Spec.VolumeName]
		if pv == nil {
			t.Fatalf("claim binds volume %s, which the stamp does not define", pvc.Spec.VolumeName)
		}
		if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != pvc.Name || pv.Spec.ClaimRef.Namespace != pvc.Namespace {
			t.Errorf("volume %s claimRef %+v does not point back at %s/%s", pv.Name, pv.Spec.ClaimRef, pvc.Namespace, pvc.Name)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			t.Errorf("volume %s reclaim policy %s, want Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
		}
		if !slices.Contains(pv.Spec.AccessModes, corev1.ReadWriteMany) {
			t.Errorf("volume %s is not ReadWriteMany", pv.Name)
		}
		if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != pv.Spec.StorageClassName {
			t.Errorf("claim class %v does not match volume class %q", pvc.Spec.StorageClassName, pv.Spec.StorageClassName)
		}
		if pv.Spec.NFS != nil {
			fsType = "nfs"
			if pv.Spec.NFS.Server == "" || !strings.HasPrefix(pv.Spec.NFS.Path, "/") {
				t.Errorf("volume %s NFS server %q path %q", pv.Name, pv.Spec.NFS.Server, pv.Spec.NFS.Path)
			}
		}
		if csi := pv.Spec.CSI; csi != nil && csi.Driver == "nfs.csi.k8s.io" {
			fsType = "nfs"
			if csi.VolumeAttributes["server"] == "" || !strings.HasPrefix(csi.VolumeAttributes["share"], "/") || csi.VolumeHandle == "" {
				t.Errorf("volume %s NFS CSI attributes %v handle %q", pv.Name, csi.VolumeAttributes, csi.VolumeHandle)
			}
		}
		options = pv.Spec.MountOptions
	case pvc.Spec.StorageClassName != nil:
		sc := ts.classes[*pvc.Spec.StorageClassName]
		if sc == nil {
			t.Fatalf("claim uses class %s, which the stamp does not define", *pvc.Spec.StorageClassName)
		}
		if sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			t.Errorf("class %s reclaim policy %v, want Retain", sc.Name, sc.ReclaimPolicy)
		}
		if sc.Provisioner == "file.csi.azure.com" {
			// The cluster spans three zones: the spool survives a zone only on ZRS.
			if sku := sc.Parameters["skuName"]; sku != "Premium_ZRS" {
				t.Errorf("class %s: skuName %q, want Premium_ZRS (stamp-config.sh's default)", sc.Name, sku)
			}
			fsType = sc.Parameters["protocol"]
			if fsType == "" {
				fsType = "smb"
			}
			if fsType == "smb" && (!slices.Contains(sc.MountOptions, fmt.Sprintf("uid=%d", nonrootUID)) || !slices.Contains(sc.MountOptions, fmt.Sprintf("gid=%d", nonrootUID))) {
				t.Errorf("class %s: SMB mount not owned by uid/gid %d: %v", sc.Name, nonrootUID, sc.MountOptions)
			}
		}
		options = sc.MountOptions
	default:
		t.Fatal("claim has neither a volume nor a class")
	}
	want, ok := spoolMountOptions[fsType]
	if !ok {
		t.Fatalf("spool file system %q: want nfs or smb", fsType)
	}
	for _, w := range want {
		if !slices.Contains(options, w) {
			t.Errorf("%s spool mount options %v lack %s", fsType, options, w)
		}
	}
	if !slices.ContainsFunc(options, func(o string) bool {
		v, ok := strings.CutPrefix(o, "actimeo=")
		return ok && (v == "0" || v == "1" || v == "2" || v == "3")
	}) {
		t.Errorf("%s spool mount options %v: want actimeo <= 3", fsType, options)
	}
	if slices.Contains(options, "soft") {
		t.Errorf("spool mount is soft: soft mounts corrupt")
	}
	if want := map[string]string{"onprem": "nfs", "cloud": "smb"}[name]; fsType != want {
		t.Errorf("stamp %s spool on %s, want %s", name, fsType, want)
	}
}

func checkExposure(t *testing.T, name string, s *stamp, ts typedStamp) {
	t.Helper()
	svc := ts.services["bridgehead-api"]
	if svc == nil {
		t.Fatal("no bridgehead-api Service")
	}
	switch name {
	case "onprem":
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Errorf("onprem Service type %s, want LoadBalancer", svc.Spec.Type)
		}
		for _, d := range ts.deployments {
			if len(d.Spec.Template.Spec.ImagePullSecrets) == 0 {
				t.Errorf("onprem %s has no imagePullSecrets for ACR", d.Name)
			}
		}
	case "cloud":
		var ingress *unstructured.Unstructured
		for _, o := range s.objs {
			if o.GetKind() == "Ingress" {
				ingress = o
			}
		}
		if ingress == nil {
			t.Fatal("cloud stamp has no Ingress")
		}
		if p := ingress.GetAnnotations()["appgw.ingress.kubernetes.io/health-probe-path"]; !slices.Contains(serveRoutes, p) {
			t.Errorf("Application Gateway probes %q, not a health route of serve", p)
		}
		class, _, _ := unstructured.NestedString(ingress.Object, "spec", "ingressClassName")
		if class != "azure-application-gateway" {
			t.Errorf("ingress class %q, want azure-application-gateway", class)
		}
		// The stamp's own name and the Traffic Manager name its clients fail over with.
		checkIngressHosts(t, s.objs, svc, s.vars["API_HOST"], s.vars["FAILOVER_HOST"])
		fwd := ts.deployments["bridgehead-forwarder"]
		if fwd.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
			t.Error("cloud forwarder pods do not use workload identity")
		}
		for _, o := range s.objs {
			if o.GetKind() == "ServiceAccount" && o.GetName() == fwd.Spec.Template.Spec.ServiceAccountName {
				if o.GetAnnotations()["azure.workload.identity/client-id"] == "" {
					t.Error("forwarder ServiceAccount has no workload identity client id")
				}
			}
		}
		cs, _ := Containers(s.objs)
		for _, c := range cs {
			for _, st := range c.Settings {
				if st.Flag == "eventhubs-connection-string" || st.FileFlag == "eventhubs-connection-string" {
					t.Errorf("%s: %s: the cloud stamp uses workload identity, not a connection string", c.Workload, st.Source)
				}
			}
			if role, _ := c.Value("role"); role == "forwarder" {
				if _, ok := c.Value("eventhubs-namespace"); !ok {
					t.Errorf("%s: no --eventhubs-namespace for workload identity", c.Workload)
				}
			}
		}
	}
}

// checkIngressHosts checks that the Ingress of objs answers exactly the host names want (in
// any order, repeats allowed): a rule for each that sends every path to the API Service svc,
// all rules alike, and each name in a TLS entry that names a Secret. No host may be empty (a
// rule without a host answers any name; the API server rejects an empty TLS host) or other
// than a DNS name.
func checkIngressHosts(t *testing.T, objs []*unstructured.Unstructured, svc *corev1.Service, want ...string) {
	t.Helper()
	var ing *networkingv1.Ingress
	for _, o := range objs {
		if o.GetKind() != "Ingress" {
			continue
		}
		obj, err := decodeStrict(o)
		if err != nil {
			t.Fatal(err)
		}
		if ing != nil {
			t.Fatalf("more than one Ingress: %s and %s", ing.Name, o.GetName())
		}
		ing = obj.(*networkingv1.Ingress)
	}
	if ing == nil {
		t.Fatal("no Ingress")
	}
	validHost := func(what, h string) bool {
		t.Helper()
		if h == "" {
			t.Errorf("Ingress %s: %s with an empty host", ing.Name, what)
			return false
		}
		if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 || net.ParseIP(h) != nil {
			t.Errorf("Ingress %s: %s host %q is not a DNS name: %v", ing.Name, what, h, errs)
			return false
		}
		return true
	}

	rules := map[string]bool{}
	for i, r := range ing.Spec.Rules {
		if !validHost(fmt.Sprintf("rule %d", i), r.Host) {
			continue
		}
		rules[r.Host] = true
		if r.HTTP == nil || len(r.HTTP.Paths) != 1 {
			t.Errorf("Ingress %s: rule %s: want one path, got %+v", ing.Name, r.Host, r.IngressRuleValue)
			continue
		}
		p := r.HTTP.Paths[0]
		if p.Path != "/" || p.PathType == nil || *p.PathType != networkingv1.PathTypePrefix {
			t.Errorf("Ingress %s: rule %s: path %q (%v), want / Prefix: every request", ing.Name, r.Host, p.Path, p.PathType)
		}
		b := p.Backend.Service
		if b == nil || b.Name != svc.Name || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
			return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
		}) {
			t.Errorf("Ingress %s: rule %s: backend %+v is not a port of Service %s", ing.Name, r.Host, p.Backend, svc.Name)
		}
		if !reflect.DeepEqual(r.IngressRuleValue, ing.Spec.Rules[0].IngressRuleValue) {
			t.Errorf("Ingress %s: rule %s routes unlike rule %s: every name must reach the same API", ing.Name, r.Host, ing.Spec.Rules[0].Host)
		}
	}
	tls := map[string]bool{}
	for i, e := range ing.Spec.TLS {
		if e.SecretName == "" {
			t.Errorf("Ingress %s: TLS entry %d names no Secret", ing.Name, i)
		}
		for _, h := range e.Hosts {
			if validHost(fmt.Sprintf("TLS entry %d", i), h) {
				tls[h] = true
			}
		}
	}
	for _, h := range want {
		if !rules[h] {
			t.Errorf("Ingress %s has no rule for %s: requests for it get the gateway's 404 (rules for %v)", ing.Name, h, mapKeys(rules))
		}
		if !tls[h] {
			t.Errorf("Ingress %s has no TLS entry for %s: the gateway has no certificate for it (TLS hosts %v)", ing.Name, h, mapKeys(tls))
		}
	}
	for h := range rules {
		if !slices.Contains(want, h) {
			t.Errorf("Ingress %s answers %s, which is none of %v", ing.Name, h, want)
		}
	}
	for h := range tls {
		if !slices.Contains(want, h) {
			t.Errorf("Ingress %s has a TLS entry for %s, which is none of %v", ing.Name, h, want)
		}
	}
}

// TestCloudIngressFailoverHost renders the cloud stamp as Flux would with the values
// stamp-config.sh writes with and without --failover-host, and with a cluster-vars ConfigMap
// written before the option existed (no FAILOVER_HOST key): the ingress must answer the
// Traffic Manager name when one is given, and only the stamp's own name, with no empty host,
// when none is.
func TestCloudIngressFailoverHost(t *testing.T) {
	s := loadStamps(t)["cloud"]
	svc := typedObjects(t, s.objs).services["bridgehead-api"]
	if svc == nil {
		t.Fatal("no bridgehead-api Service")
	}
	tests := []struct {
		name     string
		args     []string
		drop     string // a key the ConfigMap lacks
		wantVar  string // FAILOVER_HOST as written, "" for none
		wantHost []string
	}{
		{"with --failover-host", stampConfigArgs["cloud"], "", sampleFailoverHost, []string{sampleAPIHost, sampleFailoverHost}},
		{"without --failover-host", stampConfigNoFailover, "", sampleAPIHost, []string{sampleAPIHost}},
		{"ConfigMap without FAILOVER_HOST", stampConfigNoFailover, "FAILOVER_HOST", "", []string{sampleAPIHost}},
	}
	if !slices.Contains(stampConfigArgs["cloud"], "--failover-host") || slices.Contains(stampConfigNoFailover, "--failover-host") {
		t.Fatal("the sample arguments do not differ by --failover-host")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars, err := clusterVars("cloud", s.kustomization, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := vars["FAILOVER_HOST"]; tt.drop == "" && (!ok || got != tt.wantVar) {
				t.Errorf("stamp-config.sh %v writes FAILOVER_HOST=%q (set %v), want %q", tt.args, got, ok, tt.wantVar)
			}
			if tt.drop != "" {
				delete(vars, tt.drop)
			}
			objs, err := Substitute(s.raw, vars)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if _, err := decodeStrict(o); err != nil {
					t.Error(err)
				}
				data, _ := o.MarshalJSON()
				if vs := Variables(data); len(vs) > 0 {
					t.Errorf("%s: unsubstituted %v", objectID(o), vs)
				}
			}
			checkIngressHosts(t, objs, svc, tt.wantHost...)
		})
	}
}

// TestFluxClusters checks each stamp's Flux objects: a Kustomization in the namespace of the
// Azure Flux configuration (whose flux-applier account is the only one the extension's
// multi-tenancy lets apply anything) whose source is that configuration's GitRepository (so that
// GIT_URL, GIT_BRANCH and GIT_SECRET of provision.sh decide what is synced), pruning, health
// checks, an existing path, and post-build variables that cover every variable the overlay uses.
func TestFluxClusters(t *testing.T) {
	config, configNS := provisionSetting(t, "FLUX_CONFIG"), provisionSetting(t, "FLUX_CONFIG_NAMESPACE")
	for _, name := range Stamps {
		t.Run(name, func(t *testing.T) {
			s := loadStamps(t)[name]
			for _, o := range s.cluster {
				if o.GetNamespace() != configNS {
					t.Errorf("%s: not in %s, the namespace of the Flux configuration: the extension's flux-applier cannot apply it", objectID(o), configNS)
				}
				if o.GetKind() == "GitRepository" {
					t.Errorf("%s: the source is the Flux configuration's GitRepository %s (provision.sh GIT_URL, GIT_BRANCH), not one of the kit's", objectID(o), config)
				}
			}
			k := s.kustomization
			ref := k.Spec.SourceRef
			ns := ref.Namespace
			if ns == "" {
				ns = k.Namespace
			}
			if ref.Kind != sourcev1.GitRepositoryKind || ns != configNS || ref.Name != config {
				t.Errorf("Kustomization %s sourceRef %s %s/%s, want GitRepository %s/%s (the Flux configuration's)", k.Name, ref.Kind, ns, ref.Name, configNS, config)
			}
			if !k.Spec.Prune {
				t.Errorf("Kustomization %s does not prune", k.Name)
			}
			if len(k.Spec.HealthChecks) == 0 && !k.Spec.Wait {
				t.Errorf("Kustomization %s has no health checks", k.Name)
			}
			if k.Spec.Interval.Duration <= 0 {
				t.Errorf("Kustomization %s interval %v", k.Name, k.Spec.Interval)
			}
			want := "./deploy/kustomize/overlays/" + name
			if k.Spec.Path != want {
				t.Errorf("Kustomization %s path %q, want %q", k.Name, k.Spec.Path, want)
			}
			if fi, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(k.Spec.Path))); err != nil || !fi.IsDir() {
				t.Errorf("Kustomization %s path %q is not a directory of the repository", k.Name, k.Spec.Path)
			}
			ts := typedObjects(t, s.objs)
			for _, hc := range k.Spec.HealthChecks {
				if hc.Kind == "Deployment" && ts.deployments[hc.Name] == nil {
					t.Errorf("health check on Deployment %s, which the stamp does not define", hc.Name)
				}
			}
			for _, v := range []string{"BRIDGEHEAD_VERSION"} {
				if _, ok := k.Spec.PostBuild.Substitute[v]; !ok {
					t.Errorf("postBuild.substitute lacks %s: the stamp's version belongs in Git", v)
				}
			}
		})
	}
}

// pruneAnnotation is the annotation with which Flux leaves an object alone when it prunes.
const pruneAnnotation = "kustomize.toolkit.fluxcd.io/prune"

// checkNotPruned checks that Flux never deletes what holds undelivered messages or the secrets
// written beside Git: the namespace (its Secrets go with it), the spool's claim and volume.
func checkNotPruned(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	kept := 0
	for _, o := range objs {
		switch {
		case o.GetKind() == "Namespace", o.GetKind() == "PersistentVolume",
			o.GetKind() == "PersistentVolumeClaim" && o.GetName() == "bridgehead-spool":
			kept++
			if got := o.GetAnnotations()[pruneAnnotation]; got != "disabled" {
				t.Errorf("%s: %s %q, want disabled: deleting the Flux configuration would delete it", objectID(o), pruneAnnotation, got)
			}
		}
	}
	if kept < 2 {
		t.Errorf("found %d namespace/spool objects, want the namespace and the spool claim at least", kept)
	}
}

// TestOnpremNFSCSI renders the on-prem variant whose spool the NFS CSI driver mounts, as Flux
// would with the on-prem stamp's variables, and holds its storage to the on-prem stamp's rules.
func TestOnpremNFSCSI(t *testing.T) {
	s := loadStamps(t)["onprem"]
	raw, err := Render(filepath.Join(deployDir, "kustomize", "overlays", "onprem-nfs-csi"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Substitute(raw, s.vars)
	if err != nil {
		t.Fatal(err)
	}
	ts := typedObjects(t, objs)
	pv := ts.pvs["bridgehead-spool-onprem"]
	if pv == nil || pv.Spec.CSI == nil || pv.Spec.NFS != nil {
		t.Fatalf("volume %+v: want the NFS CSI driver's, without an in-tree NFS source", pv)
	}
	if got := pv.Spec.CSI.VolumeAttributes["server"]; got != s.vars["NFS_SERVER"] {
		t.Errorf("CSI server %q, want NFS_SERVER %q", got, s.vars["NFS_SERVER"])
	}
	checkStorage(t, "onprem", ts)
	checkNotPruned(t, objs)
	if len(objs) != len(s.objs) {
		t.Errorf("%d objects, want the on-prem stamp's %d", len(objs), len(s.objs))
	}
}
