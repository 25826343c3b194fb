package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args        []string
		want        []Setting
		positionals []string
	}{
		{args: nil},
		{
			args: []string{"--role=api"},
			want: []Setting{{Flag: "role", Value: "api", HasValue: true, Source: "arg"}},
		},
		{
			args: []string{"--role", "forwarder", "--spool-dir", "/var/spool/bridgehead"},
			want: []Setting{
				{Flag: "role", Value: "forwarder", HasValue: true, Source: "arg"},
				{Flag: "spool-dir", Value: "/var/spool/bridgehead", HasValue: true, Source: "arg"},
			},
		},
		{
			args: []string{"--verbose", "--listen=:8080"},
			want: []Setting{
				{Flag: "verbose", Source: "arg"},
				{Flag: "listen", Value: ":8080", HasValue: true, Source: "arg"},
			},
		},
		{
			args: []string{"--listen=", "--x=a=b"},
			want: []Setting{
				{Flag: "listen", Value: "", HasValue: true, Source: "arg"},
				{Flag: "x", Value: "a=b", HasValue: true, Source: "arg"},
			},
		},
		{
			args: []string{"-v", "-n", "3"},
			want: []Setting{
				{Flag: "v", Source: "arg", Short: true},
				{Flag: "n", Value: "3", HasValue: true, Source: "arg", Short: true},
			},
		},
		{
			args: []string{"--file-path", "-"},
			want: []Setting{{Flag: "file-path", Value: "-", HasValue: true, Source: "arg"}},
		},
		{
			args:        []string{"stray", "--role=api", "--", "--not-a-flag"},
			want:        []Setting{{Flag: "role", Value: "api", HasValue: true, Source: "arg"}},
			positionals: []string{"stray", "--not-a-flag"},
		},
		{
			args: []string{"--sink"},
			want: []Setting{{Flag: "sink", Source: "arg"}},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, pos := ParseArgs(tt.args)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settings: got %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(pos, tt.positionals) {
				t.Errorf("positionals: got %q, want %q", pos, tt.positionals)
			}
		})
	}
}

func TestEnvSetting(t *testing.T) {
	tests := []struct {
		name   string
		want   Setting
		wantOK bool
	}{
		{"BRIDGEHEAD_SPOOL_DIR", Setting{Flag: "spool-dir", Value: "v", HasValue: true, Source: "BRIDGEHEAD_SPOOL_DIR"}, true},
		{"BRIDGEHEAD_LISTEN", Setting{Flag: "listen", Value: "v", HasValue: true, Source: "BRIDGEHEAD_LISTEN"}, true},
		{"BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE", Setting{
			Flag: "eventhubs-connection-string-file", Value: "v", HasValue: true,
			Source: "BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE", FileFlag: "eventhubs-connection-string",
		}, true},
		{"BRIDGEHEAD_AUTH_FILE", Setting{Flag: "auth-file", Value: "v", HasValue: true, Source: "BRIDGEHEAD_AUTH_FILE", FileFlag: "auth"}, true},
		{"BRIDGEHEAD_FILE", Setting{Flag: "file", Value: "v", HasValue: true, Source: "BRIDGEHEAD_FILE"}, true},
		{"BRIDGEHEAD_", Setting{}, false},
		{"AZURE_CLIENT_ID", Setting{}, false},
		{"bridgehead_listen", Setting{}, false},
	}
	for _, tt := range tests {
		got, ok := EnvSetting(tt.name, "v")
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("EnvSetting(%q): got %+v %v, want %+v %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestIsBridgeheadImage(t *testing.T) {
	for image, want := range map[string]bool{
		"bridgehead":                              true,
		"bridgehead:1.0.0":                        true,
		"x.azurecr.io/bridgehead:1.0.0":           true,
		"localhost:5000/bridgehead":               true,
		"x.azurecr.io/team/bridgehead@sha256:abc": true,
		"x.azurecr.io/bridgehead-tools:1":         false,
		"busybox":                                 false,
		"x.azurecr.io/bridgehead/sidecar:1":       false,
	} {
		if got := IsBridgeheadImage(image); got != want {
			t.Errorf("IsBridgeheadImage(%q) = %v, want %v", image, got, want)
		}
	}
}

func mustObjects(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, d := range docs {
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// TestContainers checks the settings of a container are resolved the way Kubernetes and the
// binary would: envFrom ConfigMaps in order, then env entries, then arguments, later winning.
func TestContainers(t *testing.T) {
	objs := mustObjects(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: shared-abc, namespace: ns}
data: {BRIDGEHEAD_SPOOL_DIR: /from-configmap, BRIDGEHEAD_STAMP: one, OTHER: x}
`, `
apiVersion: v1
kind: ConfigMap
metadata: {name: more, namespace: ns}
data: {BRIDGEHEAD_STAMP: two}
`, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: ns}
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox
      containers:
        - name: app
          image: x.azurecr.io/bridgehead:1.0.0
          command: ["/bridgehead"]
          args: ["serve", "--role", "api", "--stamp=three"]
          envFrom:
            - configMapRef: {name: shared-abc}
            - configMapRef: {name: more}
            - secretRef: {name: creds}
          env:
            - {name: BRIDGEHEAD_LISTEN, value: ":8080"}
            - name: BRIDGEHEAD_SINK
              valueFrom: {configMapKeyRef: {name: shared-abc, key: OTHER}}
            - name: BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING
              valueFrom: {secretKeyRef: {name: creds, key: cs}}
        - name: sidecar
          image: other:1
`, `
apiVersion: batch/v1
kind: CronJob
metadata: {name: c, namespace: ns}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: job
              image: bridgehead:1
              args: ["spool", "stats"]
`)
	cs, err := Containers(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("got %d containers, want 2 (the bridgehead ones)", len(cs))
	}
	c := cs[0]
	if c.Workload != "Deployment ns/d" || c.Name != "app" {
		t.Errorf("got %s %s, want Deployment ns/d app", c.Workload, c.Name)
	}
	if want := []string{"serve", "--role", "api", "--stamp=three"}; !reflect.DeepEqual(c.Args, want) {
		t.Errorf("args: got %q, want %q (the command repeating the entrypoint dropped)", c.Args, want)
	}
	for flag, want := range map[string]string{
		"spool-dir": "/from-configmap", "stamp": "three", "role": "api", "listen": ":8080", "sink": "x",
		"eventhubs-connection-string": "",
	} {
		if got, ok := c.Value(flag); !ok || got != want {
			t.Errorf("Value(%q): got %q %v, want %q", flag, got, ok, want)
		}
	}
	if _, ok := c.Value("other"); ok {
		t.Error("a ConfigMap key without the BRIDGEHEAD_ prefix became a setting")
	}
	if want := []string{"secret creds"}; !reflect.DeepEqual(c.Unresolved, want) {
		t.Errorf("unresolved: got %q, want %q", c.Unresolved, want)
	}
	if cs[1].Workload != "CronJob ns/c" || cs[1].Positionals[0] != "stats" {
		t.Errorf("cron job container: got %+v", cs[1])
	}

	// A missing ConfigMap is reported, not ignored.
	cs, err = Containers(objs[2:3])
	if err != nil {
		t.Fatal(err)
	}
	if len(cs[0].Unresolved) != 4 {
		t.Errorf("unresolved without ConfigMaps: got %q, want 2 configMaps, 1 secret, 1 key", cs[0].Unresolved)
	}
}

func TestSubstitute(t *testing.T) {
	objs := mustObjects(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {image: "${REGISTRY}/bridgehead:${VERSION:=1.0.0}", path: "${NFS_PATH:=/srv/x}"}
`, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
  annotations: {kustomize.toolkit.fluxcd.io/substitute: disabled}
data: {raw: "${NOT_SUBSTITUTED}"}
`)
	got, err := Substitute(objs, map[string]string{"REGISTRY": "r.azurecr.io", "NFS_PATH": "/srv/y"})
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ := unstructured.NestedStringMap(got[0].Object, "data")
	if data["image"] != "r.azurecr.io/bridgehead:1.0.0" || data["path"] != "/srv/y" {
		t.Errorf("got %v", data)
	}
	raw, _, _ := unstructured.NestedString(got[1].Object, "data", "raw")
	if raw != "${NOT_SUBSTITUTED}" {
		t.Errorf("disabled object substituted: %q", raw)
	}
	if _, err := Substitute(objs[:1], map[string]string{}); err == nil || !strings.Contains(err.Error(), "REGISTRY") {
		t.Errorf("missing variable: got %v, want an error naming REGISTRY", err)
	}
	if vs := Variables([]byte("${A} ${B:=x} ${A} $C ${_d1}")); !reflect.DeepEqual(vs, []string{"A", "B", "_d1"}) {
		t.Errorf("Variables: got %q", vs)
	}
}

func TestServeArgs(t *testing.T) {
	for _, stamp := range Stamps {
		args, err := ServeArgs(OverlayDir(deployDir, stamp))
		if err != nil {
			t.Fatal(err)
		}
		if len(args) != 2 {
			t.Errorf("%s: %d bridgehead containers, want 2", stamp, len(args))
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [cm.yaml]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ServeArgs(dir); !errors.Is(err, ErrNoContainers) {
		t.Errorf("no containers: got %v, want ErrNoContainers", err)
	}
	if _, err := Render(filepath.Join(dir, "missing")); err == nil {
		t.Error("Render of a missing directory succeeded")
	}
}

// ExampleServeArgs shows how a test of the serve command checks the manifests' flags.
func ExampleServeArgs() {
	args, err := ServeArgs(OverlayDir(".", "onprem"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range args {
		fmt.Println(a)
	}
	// Output:
	// [serve --role=api]
	// [serve --role=forwarder]
}
