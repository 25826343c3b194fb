// Package deploy renders Bridgehead's deployment kit (the kustomize base, the onprem and cloud
// overlays and the Flux clusters under this directory) as Kubernetes objects, and extracts what
// every bridgehead container is told: the arguments of `bridgehead serve` and the
// BRIDGEHEAD_<NAME> environment it reads, resolved through the ConfigMaps it loads.
//
// It exists so that tests can hold the manifests to the code: this package's tests check the
// kit itself (builds, typed decoding, schemas, security invariants, scripts, workflows, the
// Dockerfile), and a test next to the serve command can check every flag found here against the
// command's real flag set, so the manifests cannot drift from the binary.
//
// Rendering is offline and read-only: kustomize runs as a library on the files on disk.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/fluxcd/pkg/envsubst"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Stamps are the two deployment stamps; each has an overlay under kustomize/overlays/<stamp>
// and a Flux cluster directory under flux/clusters/<stamp>.
var Stamps = []string{"onprem", "cloud"}

// SpoolMountPath is where every bridgehead container mounts the spool volume, and what
// --spool-dir (BRIDGEHEAD_SPOOL_DIR) must say.
const SpoolMountPath = "/var/spool/bridgehead"

// EnvPrefix starts the environment variable of every serve flag: --spool-dir is read from
// BRIDGEHEAD_SPOOL_DIR, and a secret flag also from BRIDGEHEAD_<NAME>_FILE.
const EnvPrefix = "BRIDGEHEAD_"

// OverlayDir returns the directory of a stamp's overlay, given the deploy directory.
func OverlayDir(deployDir, stamp string) string {
	return filepath.Join(deployDir, "kustomize", "overlays", stamp)
}

// ClusterDir returns the directory of a stamp's Flux cluster, given the deploy directory.
func ClusterDir(deployDir, stamp string) string {
	return filepath.Join(deployDir, "flux", "clusters", stamp)
}

// Render builds the kustomization in dir (as `kustomize build dir` would, with kustomize's
// default options) and returns its objects in output order. Flux variables (${NAME}) are left
// as they are; see Substitute.
func Render(dir string) ([]*unstructured.Unstructured, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("render %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("render %s: not a directory", dir)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		// Through JSON, so that values have the types apimachinery expects (int64, float64).
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("render %s: %s: %w", dir, r.CurId(), err)
		}
		m := map[string]any{}
		if err := utiljson.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("render %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// Substitute applies Flux post-build variable substitution to objs, as the kustomize-controller
// does with spec.postBuild: ${NAME}, ${NAME:=default} and ${NAME:-default} are replaced from
// vars, per object, unless the object is annotated kustomize.toolkit.fluxcd.io/substitute:
// disabled. A variable that is neither in vars nor has a default is an error (Flux would leave
// it empty, which the manifests never mean).
func Substitute(objs []*unstructured.Unstructured, vars map[string]string) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if o.GetAnnotations()["kustomize.toolkit.fluxcd.io/substitute"] == "disabled" {
			out = append(out, o.DeepCopy())
			continue
		}
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("substitute %s: %w", objectID(o), err)
		}
		var missing []string
		res, err := envsubst.Eval(string(data), func(name string) (string, bool) {
			v, ok := vars[name]
			return v, ok
		})
		if err != nil {
			return nil, fmt.Errorf("substitute %s: %w", objectID(o), err)
		}
		for _, name := range Variables(data) {
			if _, ok := vars[name]; !ok && !hasDefault(data, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("substitute %s: no value for %s", objectID(o), strings.Join(missing, ", "))
		}
		js, err := yaml.YAMLToJSON([]byte(res))
		if err != nil {
			return nil, fmt.Errorf("substitute %s: result is not YAML: %w", objectID(o), err)
		}
		m := map[string]any{}
		if err := utiljson.Unmarshal(js, &m); err != nil {
			return nil, fmt.Errorf("substitute %s: %w", objectID(o), err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// varRef matches a Flux variable reference: ${NAME}, ${NAME:=default}, ${NAME:-default}, ...
var varRef = regexp.MustCompile(`\$\{([_a-zA-Z][_a-zA-Z0-9]*)([^}]*)\}`)

// Variables returns the names of the Flux variables data refers to, sorted, each once.
func Variables(data []byte) []string {
	seen := map[string]bool{}
	for _, m := range varRef.FindAllSubmatch(data, -1) {
		seen[string(m[1])] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// hasDefault reports whether every reference to name in data carries a default (:= or :-).
func hasDefault(data []byte, name string) bool {
	for _, m := range varRef.FindAllSubmatch(data, -1) {
		if string(m[1]) != name {
			continue
		}
		if !bytes.HasPrefix(m[2], []byte(":=")) && !bytes.HasPrefix(m[2], []byte(":-")) {
			return false
		}
	}
	return true
}

func objectID(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), ns, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// Container is one bridgehead container of a rendered workload, with what it is told.
type Container struct {
	// Workload names the object that holds the container, e.g. "Deployment bridgehead/bridgehead-api".
	Workload string
	// Name is the container's name.
	Name string
	// Image is the container's image reference.
	Image string
	// Args are the container's command and args as the image's entrypoint receives them
	// (the image's ENTRYPOINT is /bridgehead), e.g. ["serve", "--role=api"].
	Args []string
	// Settings are the serve flags the container sets: first from the environment
	// (BRIDGEHEAD_* names, from envFrom ConfigMaps and env, in Kubernetes' precedence), then
	// from the arguments, which win.
	Settings []Setting
	// Positionals are the argument tokens that are neither the subcommand nor a flag or its
	// value; serve takes none.
	Positionals []string
	// Unresolved lists the env sources that could not be read from the rendered objects
	// (a Secret's keys, a ConfigMap missing from the render).
	Unresolved []string
}

// Setting is one flag setting of a container, from an argument or an environment variable.
type Setting struct {
	// Flag is the flag's name without dashes: "spool-dir".
	Flag string
	// Value is the value given, "" for a bare boolean flag.
	Value string
	// HasValue says whether a value was given (--flag=value, --flag value, or an env var).
	HasValue bool
	// Source is "arg" for an argument, or the environment variable's name.
	Source string
	// Short is true for a single-dash flag (-x): serve's flags are long ones.
	Short bool
	// FileFlag is set for an environment variable named BRIDGEHEAD_<NAME>_FILE: the secret flag
	// <name> whose value the file holds (BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE →
	// "eventhubs-connection-string"). Flag is then "<name>-file", which is itself a flag for
	// some settings (BRIDGEHEAD_AUTH_FILE is --auth-file); a drift check accepts either.
	FileFlag string
}

// Value returns the effective value of flag for the container (arguments win over the
// environment, the last of each wins) and whether the container sets it at all.
func (c Container) Value(flag string) (string, bool) {
	var v string
	var ok bool
	for _, s := range c.Settings {
		if s.Flag == flag {
			v, ok = s.Value, true
		}
	}
	return v, ok
}

// ServeArgs renders the kustomization in dir and returns the arguments of every bridgehead
// container in it, in render order.
func ServeArgs(dir string) ([][]string, error) {
	cs, err := ServeContainers(dir)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoContainers)
	}
	out := make([][]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Args)
	}
	return out, nil
}

// ServeContainers renders the kustomization in dir and returns every bridgehead container in it
// with its settings resolved; see Containers.
func ServeContainers(dir string) ([]Container, error) {
	objs, err := Render(dir)
	if err != nil {
		return nil, err
	}
	return Containers(objs)
}

// IsBridgeheadImage reports whether image is the bridgehead image: its repository's last path
// element is "bridgehead" (any registry, tag or digest).
func IsBridgeheadImage(image string) bool {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		repo = repo[i+1:]
	}
	return repo == "bridgehead"
}

// podSpecPaths are where workload kinds keep their pod spec.
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// Containers finds every bridgehead container (init containers included) in objs and resolves
// its settings: env vars named BRIDGEHEAD_* from envFrom ConfigMaps found in objs and from env
// entries, then the flags in its arguments.
func Containers(objs []*unstructured.Unstructured) ([]Container, error) {
	configMaps := map[string]map[string]string{} // namespace/name → data
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetAPIVersion() == "v1" {
			data, _, err := unstructured.NestedStringMap(o.Object, "data")
			if err != nil {
				return nil, fmt.Errorf("%s: data: %w", objectID(o), err)
			}
			configMaps[o.GetNamespace()+"/"+o.GetName()] = data
		}
	}
	var out []Container
	for _, o := range objs {
		path, ok := podSpecPaths[o.GetKind()]
		if !ok {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			list, _, err := unstructured.NestedSlice(o.Object, append(append([]string{}, path...), field)...)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", objectID(o), field, err)
			}
			for i, raw := range list {
				cm, ok := raw.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s: %s[%d] is not an object", objectID(o), field, i)
				}
				image, _ := cm["image"].(string)
				if !IsBridgeheadImage(image) {
					continue
				}
				c, err := container(o, cm, configMaps)
				if err != nil {
					return nil, fmt.Errorf("%s: %s[%d]: %w", objectID(o), field, i, err)
				}
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func container(o *unstructured.Unstructured, cm map[string]any, configMaps map[string]map[string]string) (Container, error) {
	c := Container{Workload: objectID(o)}
	c.Name, _ = cm["name"].(string)
	c.Image, _ = cm["image"].(string)
	for _, key := range []string{"command", "args"} {
		list, _, err := unstructured.NestedStringSlice(cm, key)
		if err != nil {
			return c, fmt.Errorf("%s: %w", key, err)
		}
		// The image's ENTRYPOINT is the binary: a command that repeats it is dropped.
		if key == "command" && len(list) > 0 && filepath.Base(list[0]) == "bridgehead" {
			list = list[1:]
		}
		c.Args = append(c.Args, list...)
	}

	// Environment, in Kubernetes' order: envFrom sources in order, then env entries, later
	// ones overriding earlier ones of the same name.
	env := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := env[name]; !ok {
			order = append(order, name)
		}
		env[name] = value
	}
	envFrom, _, err := unstructured.NestedSlice(cm, "envFrom")
	if err != nil {
		return c, fmt.Errorf("envFrom: %w", err)
	}
	for _, raw := range envFrom {
		src, _ := raw.(map[string]any)
		prefix, _ := src["prefix"].(string)
		if ref, ok := src["configMapRef"].(map[string]any); ok {
			name, _ := ref["name"].(string)
			data, found := configMaps[o.GetNamespace()+"/"+name]
			if !found {
				c.Unresolved = append(c.Unresolved, "configMap "+name)
				continue
			}
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				set(prefix+k, data[k])
			}
		}
		if ref, ok := src["secretRef"].(map[string]any); ok {
			name, _ := ref["name"].(string)
			c.Unresolved = append(c.Unresolved, "secret "+name)
		}
	}
	envList, _, err := unstructured.NestedSlice(cm, "env")
	if err != nil {
		return c, fmt.Errorf("env: %w", err)
	}
	for _, raw := range envList {
		e, _ := raw.(map[string]any)
		name, _ := e["name"].(string)
		value, _ := e["value"].(string)
		if vf, ok := e["valueFrom"].(map[string]any); ok {
			if ref, ok := vf["configMapKeyRef"].(map[string]any); ok {
				cmName, _ := ref["name"].(string)
				key, _ := ref["key"].(string)
				v, found := configMaps[o.GetNamespace()+"/"+cmName][key]
				if !found {
					c.Unresolved = append(c.Unresolved, fmt.Sprintf("env %s: configMap %s key %s", name, cmName, key))
				}
				value = v
			} else {
				value = "" // secretKeyRef, fieldRef, resourceFieldRef: known only at run time
			}
		}
		set(name, value)
	}
	for _, name := range order {
		if s, ok := EnvSetting(name, env[name]); ok {
			c.Settings = append(c.Settings, s)
		}
	}

	args := c.Args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = args[1:] // the subcommand
	}
	flags, positionals := ParseArgs(args)
	c.Settings = append(c.Settings, flags...)
	c.Positionals = positionals
	return c, nil
}

// EnvSetting maps an environment variable to the serve flag it sets: BRIDGEHEAD_SPOOL_DIR →
// spool-dir. A name ending in _FILE also names the secret flag the file holds (FileFlag).
// Names without the prefix are not settings.
func EnvSetting(name, value string) (Setting, bool) {
	rest, ok := strings.CutPrefix(name, EnvPrefix)
	if !ok || rest == "" {
		return Setting{}, false
	}
	s := Setting{
		Flag:     strings.ReplaceAll(strings.ToLower(rest), "_", "-"),
		Value:    value,
		HasValue: true,
		Source:   name,
	}
	if base, ok := strings.CutSuffix(rest, "_FILE"); ok && base != "" {
		s.FileFlag = strings.ReplaceAll(strings.ToLower(base), "_", "-")
	}
	return s, true
}

// ParseArgs splits command-line arguments into flag settings and positional arguments, the way
// pflag reads them: --name=value, --name value (when the next token is not a flag), a bare
// --name (a boolean), -x forms, and -- ending the flags. A flag's value can only be told from a
// positional argument by knowing whether the flag is boolean; since serve takes no positional
// arguments, a non-flag token after a flag is taken as its value.
func ParseArgs(args []string) (settings []Setting, positionals []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positionals = append(positionals, args[i+1:]...)
			return settings, positionals
		case strings.HasPrefix(a, "-") && a != "-":
			short := !strings.HasPrefix(a, "--")
			name := strings.TrimLeft(a, "-")
			s := Setting{Source: "arg", Short: short}
			if n, v, ok := strings.Cut(name, "="); ok {
				s.Flag, s.Value, s.HasValue = n, v, true
			} else {
				s.Flag = name
				if i+1 < len(args) && (!strings.HasPrefix(args[i+1], "-") || args[i+1] == "-") {
					s.Value, s.HasValue = args[i+1], true
					i++
				}
			}
			settings = append(settings, s)
		default:
			positionals = append(positionals, a)
		}
	}
	return settings, positionals
}

// ErrNoContainers is returned by ServeArgs when a kustomization has no bridgehead container.
var ErrNoContainers = errors.New("no bridgehead container")
