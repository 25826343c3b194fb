package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
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
	root.AddCommand(newVersionCmd(), newServeCmd(), newSpoolCmd(), newSendCmd(), newBenchCmd(), newAuthCmd(), newDoctorCmd())
	return root
}

// isTerminal reports whether w is a terminal, where progress is redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
