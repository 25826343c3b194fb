package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:          "bridgehead",
		Short:        "Store-and-forward gateway: durable HTTP ingest on a shared spool, forwarded to Event Hubs or Kafka",
		SilenceUsage: true,
		// run returns errors and main prints them, once; an exitCode has already been reported.
		SilenceErrors: true,
		// Every flag of every command can be set by BRIDGEHEAD_<FLAG> (flags.go).
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd.Flags()) },
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCmd(), newServeCmd(), newSpoolCmd(), newSendCmd(), newBenchCmd())
	return root
}
