package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:          "bridgehead",
		Short:        "Store-and-forward gateway: durable HTTP ingest on a shared spool, forwarded to Event Hubs or Kafka",
		SilenceUsage: true,
		// run returns errors and main prints them, once; an exitCode has already been reported.
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCmd(), newServeCmd(), newSpoolCmd(), newSendCmd(), newBenchCmd())
	return root
}

// envDefault returns the value of the environment variable BRIDGEHEAD_<name> or def.
// Every flag takes its default from the environment this way, so a ConfigMap can set it.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv("BRIDGEHEAD_" + name); ok {
		return v
	}
	return def
}

// stringFlag declares a string flag whose default comes from BRIDGEHEAD_<env>.
func stringFlag(fs *pflag.FlagSet, p *string, name, env, def, usage string) {
	fs.StringVar(p, name, envDefault(env, def), usage+" (env BRIDGEHEAD_"+env+")")
}
