package main

import (
	"testing"

	"github.com/bridgehead-dev/bridgehead/deploy"
)

// TestManifestsUseRealServeFlags renders both stamps and checks that every flag a bridgehead
// container is given (as an argument or a BRIDGEHEAD_* variable) is a flag of `serve`: the
// manifests cannot drift from the code.
func TestManifestsUseRealServeFlags(t *testing.T) {
	flags := newServeCmd().Flags()
	for _, stamp := range deploy.Stamps {
		cs, err := deploy.ServeContainers(deploy.OverlayDir("../../deploy", stamp))
		if err != nil {
			t.Fatalf("%s: %v", stamp, err)
		}
		if len(cs) < 2 {
			t.Fatalf("%s: %d bridgehead containers, want the API and the forwarder", stamp, len(cs))
		}
		for _, c := range cs {
			if len(c.Args) == 0 || c.Args[0] != "serve" {
				t.Errorf("%s %s: args %v, want serve …", stamp, c.Workload, c.Args)
			}
			if len(c.Positionals) > 0 {
				t.Errorf("%s %s: stray arguments %v (serve takes none)", stamp, c.Workload, c.Positionals)
			}
			for _, s := range c.Settings {
				known := flags.Lookup(s.Flag) != nil || (s.FileFlag != "" && flags.Lookup(s.FileFlag) != nil)
				if s.Short || !known {
					t.Errorf("%s %s: %s sets --%s, which is not a flag of bridgehead serve", stamp, c.Workload, s.Source, s.Flag)
					continue
				}
				if s.HasValue && s.FileFlag == "" {
					if err := flags.Lookup(s.Flag).Value.Set(s.Value); err != nil {
						t.Errorf("%s %s: --%s=%q is refused by serve: %v", stamp, c.Workload, s.Flag, s.Value, err)
					}
				}
			}
		}
	}
}
