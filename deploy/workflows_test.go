package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"sigs.k8s.io/yaml"
)

// TestWorkflowsLint runs actionlint (as a library) on every workflow, with shellcheck on their
// run: scripts.
func TestWorkflowsLint(t *testing.T) {
	shellcheck := needTool(t, "shellcheck")
	files, err := filepath.Glob(filepath.Join(repoRoot, ".github", "workflows", "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ci.yml", "release.yml"} {
		if _, err := os.Stat(filepath.Join(repoRoot, ".github", "workflows", want)); err != nil {
			t.Errorf("workflow %s: %v", want, err)
		}
	}
	var out bytes.Buffer
	l, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{Shellcheck: shellcheck})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("actionlint: %s", e.Error())
	}
	if len(errs) > 0 {
		t.Log(out.String())
	}
}

// TestReleaseWorkflow checks the release pushes a versioned tag with OIDC login and never
// :latest, and that CI runs make test.
func TestReleaseWorkflow(t *testing.T) {
	var release struct {
		Permissions map[string]string `json:"permissions"`
		Jobs        map[string]struct {
			Steps []struct {
				Uses string            `json:"uses"`
				With map[string]string `json:"with"`
				Run  string            `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, ".github", "workflows", "release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &release); err != nil {
		t.Fatal(err)
	}
	if release.Permissions["id-token"] != "write" {
		t.Error("release: no id-token: write permission (OIDC login)")
	}
	var pushed, oidc bool
	for _, job := range release.Jobs {
		for _, s := range job.Steps {
			if strings.HasPrefix(s.Uses, "azure/login@") {
				oidc = s.With["client-id"] != "" && s.With["creds"] == "" && s.With["client-secret"] == ""
			}
			if strings.HasPrefix(s.Uses, "docker/build-push-action@") && s.With["push"] == "true" {
				pushed = true
				tags := s.With["tags"]
				if !strings.Contains(tags, ".azurecr.io/bridgehead:${{ steps.version.outputs.version }}") {
					t.Errorf("release pushes tags %q, want the ACR image tagged by version", tags)
				}
			}
		}
	}
	if !pushed || !oidc {
		t.Errorf("release: pushed %v, OIDC login %v; want both", pushed, oidc)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "latest") {
			t.Errorf("release.yml:%d: %q: images are tagged by version only, never latest", i+1, line)
		}
	}
	ci, err := os.ReadFile(filepath.Join(repoRoot, ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pull_request", "make test", "scripts/install-deploy-tools.sh"} {
		if !bytes.Contains(ci, []byte(want)) {
			t.Errorf("ci.yml lacks %q", want)
		}
	}
}
