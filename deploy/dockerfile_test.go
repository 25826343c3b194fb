package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestDockerfile parses the Dockerfile with BuildKit's own parser and checks its shape: a Go
// build stage that builds a static, trimmed binary with the version stamped, and a final stage
// that is distroless static, pinned, running as nonroot, with bridgehead (on the PATH) serve.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ast, err := parser.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ast.Warnings {
		t.Errorf("Dockerfile warning: %s", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final stage", len(stages))
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}

	build := stages[0]
	base := strings.ReplaceAll(build.BaseName, "${GO_VERSION}", args["GO_VERSION"])
	if !strings.HasPrefix(base, "golang:1.26") {
		t.Errorf("build stage FROM %q, want golang:1.26", base)
	}
	var buildCmd string
	for _, c := range build.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			buildCmd += strings.Join(r.CmdLine, " ") + "\n"
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "./cmd/bridgehead"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("build stage RUN lacks %q:\n%s", want, buildCmd)
		}
	}

	final := stages[len(stages)-1]
	img := final.BaseName
	if !strings.HasPrefix(img, "gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("final stage FROM %q, want gcr.io/distroless/static-debian12:nonroot", img)
	}
	var user, workdir string
	var entrypoint, cmd []string
	for _, c := range final.Commands {
		switch v := c.(type) {
		case *instructions.UserCommand:
			user = v.User
		case *instructions.EntrypointCommand:
			entrypoint = v.CmdLine
			if v.PrependShell {
				t.Error("ENTRYPOINT in shell form: distroless has no shell")
			}
		case *instructions.CmdCommand:
			cmd = v.CmdLine
			if v.PrependShell {
				t.Error("CMD in shell form: distroless has no shell")
			}
		case *instructions.WorkdirCommand:
			workdir = v.Path
		case *instructions.RunCommand:
			t.Errorf("final stage RUN %q: distroless has no shell", v.CmdLine)
		}
	}
	if user != "nonroot:nonroot" && user != "65532:65532" {
		t.Errorf("final USER %q, want nonroot:nonroot (UID %d)", user, nonrootUID)
	}
	// On distroless's PATH (/usr/local/bin first), so an operator runs `kubectl exec … --
	// bridgehead doctor` without a shell to find it.
	if !slices.Equal(entrypoint, []string{"/usr/local/bin/bridgehead"}) || !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("ENTRYPOINT %q CMD %q, want [/usr/local/bin/bridgehead] [serve]", entrypoint, cmd)
	}
	if workdir != "/home/nonroot" {
		t.Errorf("WORKDIR %q: the laptop defaults need a directory nonroot can write", workdir)
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "data/"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
