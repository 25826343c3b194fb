package deploy

import (
	"encoding/json"
	"fmt"
	"strings"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
)

// typed lists every kind the kit may contain, with its Go API type. A kind not listed here
// fails the decode: adding a kind to the manifests means adding its type here.
var typed = map[schema.GroupVersionKind]func() any{
	{Version: "v1", Kind: "Namespace"}:                                 func() any { return &corev1.Namespace{} },
	{Version: "v1", Kind: "ServiceAccount"}:                            func() any { return &corev1.ServiceAccount{} },
	{Version: "v1", Kind: "ConfigMap"}:                                 func() any { return &corev1.ConfigMap{} },
	{Version: "v1", Kind: "Service"}:                                   func() any { return &corev1.Service{} },
	{Version: "v1", Kind: "PersistentVolume"}:                          func() any { return &corev1.PersistentVolume{} },
	{Version: "v1", Kind: "PersistentVolumeClaim"}:                     func() any { return &corev1.PersistentVolumeClaim{} },
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                 func() any { return &appsv1.Deployment{} },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:      func() any { return &policyv1.PodDisruptionBudget{} },
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}: func() any { return &networkingv1.NetworkPolicy{} },
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}:       func() any { return &networkingv1.Ingress{} },
	{Group: "storage.k8s.io", Version: "v1", Kind: "StorageClass"}:     func() any { return &storagev1.StorageClass{} },
	{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository"}: func() any {
		return &sourcev1.GitRepository{}
	},
	{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}: func() any {
		return &kustomizev1.Kustomization{}
	},
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return &monitoringv1.PrometheusRule{} },
	// Azure Monitor managed Prometheus's PodMonitor (deploy/kustomize/azure-monitor): the
	// prometheus-operator type under another group (Microsoft's "Create custom Prometheus scrape
	// job ... using CRDs": "the only change required ... is the API group"). Azure's CRD lags the
	// operator's; azmonPodMonitorFields holds the kit to the fields Azure's has.
	{Group: "azmonitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}: func() any { return &monitoringv1.PodMonitor{} },
}

// decodeStrict decodes o into its typed API the way the API server's strict field validation
// does (case-sensitive names, no unknown or duplicate fields) and returns the typed object.
func decodeStrict(o *unstructured.Unstructured) (any, error) {
	gvk := o.GroupVersionKind()
	newObj, ok := typed[gvk]
	if !ok {
		return nil, fmt.Errorf("%s: kind %s is not one the kit knows", objectID(o), gvk)
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return nil, err
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", objectID(o), err)
	}
	if len(strict) > 0 {
		var msgs []string
		for _, e := range strict {
			msgs = append(msgs, e.Error())
		}
		return nil, fmt.Errorf("%s: %s", objectID(o), strings.Join(msgs, "; "))
	}
	return obj, nil
}
