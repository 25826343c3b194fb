package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// kitCRDs names, per API module go.mod requires, the root module (tagged with the same version)
// and the CRD file in it that defines a custom kind the kit uses: Flux's, and
// prometheus-operator's PrometheusRule (the base's alert rules).
var kitCRDs = []struct{ api, root, file string }{
	{"github.com/fluxcd/kustomize-controller/api", "github.com/fluxcd/kustomize-controller", "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml"},
	{"github.com/fluxcd/source-controller/api", "github.com/fluxcd/source-controller", "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml"},
	{"github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring", "github.com/prometheus-operator/prometheus-operator", "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"},
}

// crdSchema is one version's OpenAPI schema of a CRD.
type crdSchema struct {
	group, kind, version string
	schema               *spec.Schema
	raw                  map[string]any
}

// crdFiles returns the paths of the kit's CRDs (kitCRDs) in the Go module cache: the root
// modules at the same version as the api modules this module requires (each project tags
// them together), which scripts/install-deploy-tools.sh downloads.
func crdFiles(t *testing.T) []string {
	t.Helper()
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, crd := range kitCRDs {
		info, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", crd.api).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", crd.api, err)
		}
		version := strings.TrimSpace(string(info))
		path := filepath.Join(strings.TrimSpace(string(cache)), filepath.FromSlash(crd.root)+"@"+version, filepath.FromSlash(crd.file))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("CRD %s@%s %s: %v: run scripts/install-deploy-tools.sh", crd.root, version, crd.file, err)
		}
		paths = append(paths, path)
	}
	slices.Sort(paths)
	return paths
}

// loadCRDs reads the schemas of the kit's CRDs (crdFiles).
func loadCRDs(t *testing.T) []crdSchema {
	t.Helper()
	var out []crdSchema
	for _, path := range crdFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, v := range crd.Spec.Versions {
			s := &spec.Schema{}
			if err := json.Unmarshal(v.Schema.OpenAPIV3Schema, s); err != nil {
				t.Fatalf("%s %s: %v", path, v.Name, err)
			}
			raw := map[string]any{}
			if err := json.Unmarshal(v.Schema.OpenAPIV3Schema, &raw); err != nil {
				t.Fatal(err)
			}
			out = append(out, crdSchema{group: crd.Spec.Group, kind: crd.Spec.Names.Kind, version: v.Name, schema: s, raw: raw})
		}
	}
	return out
}

// TestFluxObjectsMatchCRDSchemas validates every Flux object of the kit against the OpenAPI
// schema of its CRD, as the API server would: types, required fields, enums, patterns and
// bounds (kube-openapi's validator, which the apiextensions server uses), plus structural
// pruning: a field the schema does not declare is an error here (the server would silently
// drop it). CEL rules (x-kubernetes-validations) are not evaluated; the test lists them.
func TestFluxObjectsMatchCRDSchemas(t *testing.T) {
	crds := loadCRDs(t)
	seen := 0
	for _, name := range Stamps {
		objs, err := Render(ClusterDir(deployDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			if !strings.HasSuffix(gvk.Group, ".toolkit.fluxcd.io") {
				continue
			}
			i := slices.IndexFunc(crds, func(c crdSchema) bool {
				return c.group == gvk.Group && c.kind == gvk.Kind && c.version == gvk.Version
			})
			if i < 0 {
				t.Errorf("%s: no CRD schema for %s", objectID(o), gvk)
				continue
			}
			seen++
			crd := crds[i]
			v := validate.NewSchemaValidator(crd.schema, nil, "", strfmt.Default)
			if res := v.Validate(o.Object); !res.IsValid() {
				for _, e := range res.Errors {
					t.Errorf("stamp %s: %s: %v", name, objectID(o), e)
				}
			}
			for _, e := range pruned(o.Object, crd.raw, "") {
				t.Errorf("stamp %s: %s: %s", name, objectID(o), e)
			}
			if rules := celRules(crd.raw, ""); len(rules) > 0 {
				t.Logf("%s: %d CEL rules not evaluated offline: %v", gvk.Kind, len(rules), rules)
			}
		}
	}
	if seen < len(Stamps) {
		t.Errorf("validated %d Flux objects, want a Kustomization per stamp", seen)
	}
}

// pruned returns the fields of obj that schema does not declare (what structural pruning would
// drop), skipping object metadata and x-kubernetes-preserve-unknown-fields subtrees.
func pruned(obj any, schema map[string]any, path string) []string {
	if schema["x-kubernetes-preserve-unknown-fields"] == true {
		return nil
	}
	var out []string
	switch v := obj.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		addl, _ := schema["additionalProperties"].(map[string]any)
		if path == ".metadata" || (props == nil && addl == nil) {
			return nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub, ok := props[k].(map[string]any)
			if !ok {
				sub = addl
			}
			if sub == nil {
				out = append(out, fmt.Sprintf("unknown field %s.%s", path, k))
				continue
			}
			out = append(out, pruned(v[k], sub, path+"."+k)...)
		}
	case []any:
		items, _ := schema["items"].(map[string]any)
		for i, e := range v {
			if items != nil {
				out = append(out, pruned(e, items, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return out
}

// celRules lists the paths of a schema's CEL validation rules.
func celRules(schema map[string]any, path string) []string {
	var out []string
	if rules, ok := schema["x-kubernetes-validations"].([]any); ok {
		for range rules {
			out = append(out, path)
		}
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		for k, s := range props {
			if m, ok := s.(map[string]any); ok {
				out = append(out, celRules(m, path+"."+k)...)
			}
		}
	}
	if items, ok := schema["items"].(map[string]any); ok {
		out = append(out, celRules(items, path+"[]")...)
	}
	slices.Sort(out)
	return out
}
