package httpapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestProblemTypesMatchTheDocs: every problem type the code can answer is in docs/api.md's
// table, and every type in the table exists, with the same status as the table says where the
// code names one (the table is what clients branch on).
func TestProblemTypesMatchTheDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| ([0-9]{3}) \\|")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		status, _ := strconv.Atoi(m[2])
		documented[m[1]] = status
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "problem.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var inCode, names []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Problem") || vs.Names[0].Name == "ProblemBase" {
			return true
		}
		if be, ok := vs.Values[0].(*ast.BinaryExpr); ok {
			if lit, ok := be.Y.(*ast.BasicLit); ok {
				slug, _ := strconv.Unquote(lit.Value)
				inCode = append(inCode, slug)
				names = append(names, vs.Names[0].Name)
			}
		}
		return true
	})
	if len(inCode) < 10 {
		t.Fatalf("found only %d problem types in problem.go: the parse is wrong", len(inCode))
	}
	for _, slug := range inCode {
		if _, ok := documented[slug]; !ok {
			t.Errorf("problem type %s is not in docs/api.md's table", slug)
		}
	}
	for slug := range documented {
		if !slices.Contains(inCode, slug) {
			t.Errorf("docs/api.md documents %s, which the code never answers", slug)
		}
	}
	// And each type is the answer some test provokes from a served router (ingest's and
	// ops' stamps, the router's own tests): none is documented and never seen on the wire.
	var tests strings.Builder
	for _, dir := range []string{".", "../ingest", "../ops"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tests.Write(b)
		}
	}
	for _, name := range names {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(tests.String()) {
			t.Errorf("no test of the HTTP surfaces asserts an answer of type %s", name)
		}
	}
}
