// Command gen writes the files of package monitoring (rules.yaml, dashboard.json,
// azure-prometheus-rules.json and the kustomize base's prometheusrule.yaml). Run it as
// `go generate ./deploy/monitoring`, which runs it in the package's directory.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/bridgehead-dev/bridgehead/deploy/monitoring"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	files, err := monitoring.Files()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.FromSlash(name), files[name], 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", name)
	}
	return nil
}
