package k8stest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the field manager of Flux's kustomize-controller: the owner of every field
// it applies.
const FieldManager = "kustomize-controller"

// Applier applies objects the way Flux's kustomize-controller does (fluxcd/pkg/ssa): server-side
// apply as FieldManager, forcing conflicts, the objects sent as rendered (no client-side
// defaulting), cluster definitions (CRDs, Namespaces) first, then class definitions
// (StorageClasses), then the rest. Every warning the API server returns is recorded: Pod
// Security's "would violate" on a workload and an unknown field are warnings, not errors.
type Applier struct {
	dyn      dynamic.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	warnings *warnings
}

// NewApplier returns an Applier that talks to the API server as cfg says (an impersonated
// service account, typically; see Cluster.As). cfg is copied, not changed.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	cfg = rest.CopyConfig(cfg)
	w := &warnings{}
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{
		dyn:      dyn,
		mapper:   restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery())),
		warnings: w,
	}, nil
}

// Mode says how Apply sends each object.
type Mode int

const (
	// Apply persists, with the API server's default field validation, as Flux does.
	Apply Mode = iota
	// DryRunStrict is a server-side dry run (dryRun=All) with fieldValidation=Strict: an unknown
	// or duplicate field is an error.
	DryRunStrict
)

// Apply applies objs in Flux's stages and returns every object's error, joined, each naming
// its object. Like kustomize-controller, it applies nothing when an object cannot be placed: an
// unknown kind, or a namespaced object without a namespace.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured, mode Mode) error {
	var errs []error
	resources := make(map[*unstructured.Unstructured]dynamic.ResourceInterface, len(objs))
	for _, o := range objs {
		ri, err := a.resource(ctx, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ID(o), err))
		}
		resources[o] = ri
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, stage := range stages(objs) {
		for _, o := range stage {
			if err := a.apply(ctx, resources[o], o, mode); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ID(o), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Warnings returns the warnings recorded since the last call, and forgets them.
func (a *Applier) Warnings() []string { return a.warnings.take() }

// resource returns the client of o's resource, in o's namespace when the kind is namespaced.
func (a *Applier) resource(ctx context.Context, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	var mapping *meta.RESTMapping
	// A kind of a CRD established a moment ago may not be in discovery yet.
	err := poll(ctx, 10*time.Second, func() (bool, error) {
		var err error
		mapping, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			a.mapper.Reset()
			return false, err
		}
		return true, err
	})
	if err != nil {
		return nil, err
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.dyn.Resource(mapping.Resource), nil
	}
	if o.GetNamespace() == "" {
		// kustomize-controller's words; it then applies none of the objects.
		return nil, errors.New("namespace not specified")
	}
	return a.dyn.Resource(mapping.Resource).Namespace(o.GetNamespace()), nil
}

func (a *Applier) apply(ctx context.Context, ri dynamic.ResourceInterface, o *unstructured.Unstructured, mode Mode) error {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}
	if mode == DryRunStrict {
		opts.DryRun = []string{metav1.DryRunAll}
		opts.FieldValidation = "Strict"
	}
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// stages orders objs as fluxcd/pkg/ssa's ApplyAllStaged does: cluster definitions, then class
// definitions, then everything else, each in the given order.
func stages(objs []*unstructured.Unstructured) [][]*unstructured.Unstructured {
	var defs, classes, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace":
			defs = append(defs, o)
		case "StorageClass", "IngressClass", "PriorityClass", "RuntimeClass":
			classes = append(classes, o)
		default:
			rest = append(rest, o)
		}
	}
	return [][]*unstructured.Unstructured{defs, classes, rest}
}

// ID names an object as errors and test messages do: "Kind namespace/name" or "Kind name".
func ID(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), ns, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// WaitEstablished waits until every named CustomResourceDefinition is Established, so that
// objects of its kinds can be applied.
func WaitEstablished(ctx context.Context, cfg *rest.Config, names ...string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, name := range names {
		err := poll(ctx, 30*time.Second, func() (bool, error) {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			return err == nil && established(crd), err
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	return slices.ContainsFunc(conds, func(c any) bool {
		m, _ := c.(map[string]any)
		return m["type"] == "Established" && m["status"] == "True"
	})
}

// warnings records the API server's warning headers; a rest.WarningHandler.
type warnings struct {
	mu   sync.Mutex // guards list
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// ReadObjects decodes the YAML (or JSON) documents of a file into objects, skipping empty ones.
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		m := map[string]any{}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}
