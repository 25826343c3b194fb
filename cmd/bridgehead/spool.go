package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// spoolFlags are the flags every `spool` subcommand shares.
type spoolFlags struct {
	dir string
}

func newSpoolCmd() *cobra.Command {
	var f spoolFlags
	cmd := &cobra.Command{
		Use:   "spool",
		Short: "Inspect and repair a spool directory (stats, ls, show, requeue, purge, verify, quarantine)",
	}
	cmd.PersistentFlags().StringVar(&f.dir, "spool-dir", "./data/spool", "spool directory (env BRIDGEHEAD_SPOOL_DIR)")
	cmd.AddCommand(
		newSpoolStatsCmd(&f), newSpoolLsCmd(&f), newSpoolShowCmd(&f),
		newSpoolRequeueCmd(&f), newSpoolPurgeCmd(&f), newSpoolVerifyCmd(&f), newSpoolQuarantineCmd(&f),
	)
	return cmd
}

// open opens the spool for inspection: no probes, no heartbeat, no writer.
func (f *spoolFlags) open() (*spool.Spool, error) {
	return spool.Open(f.dir, spool.Options{Inspect: true})
}

func newSpoolStatsCmd(f *spoolFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count segments, messages and bytes per state, and the age of the oldest undelivered message",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			st, err := s.Stats(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(st)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "state\tsegments\tmessages\tbytes\t")
			for _, r := range []struct {
				name string
				s    spool.StateStats
			}{{"open", st.Open}, {"recovering", st.Recovering}, {"ready", st.Ready}, {"claimed", st.Claimed}, {"dead", st.Dead}, {"quarantine", st.Quarantine}} {
				msgs := strconv.Itoa(r.s.Messages)
				if r.name == "open" || r.name == "recovering" {
					msgs = "-" // counted when sealed or recovered
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", r.name, r.s.Segments, msgs, r.s.Bytes)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			age := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)).Round(time.Millisecond) }
			if _, err := fmt.Fprintf(out, "oldest undelivered: %s\n", age(st.OldestAgeSeconds)); err != nil {
				return err
			}
			for _, p := range st.Priorities {
				if _, err := fmt.Fprintf(out, "priority %d: %d messages waiting (ready or claimed), oldest %s\n", p.Priority, p.Messages, age(p.OldestAgeSeconds)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSpoolLsCmd(f *spoolFlags) *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List segments, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			states := spool.States
			if state != "" {
				st, err := spool.ParseState(state)
				if err != nil {
					return err
				}
				states = []spool.State{st}
			}
			s, err := f.open()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "STATE\tSEGMENT\tMESSAGES\tBYTES\tATTEMPT\tCREATED\tDETAIL")
			for _, st := range states {
				entries, err := s.List(cmd.Context(), st)
				if err != nil {
					return err
				}
				for _, e := range entries {
					detail := ""
					switch {
					case !e.NotBefore.IsZero():
						detail = "not before " + e.NotBefore.UTC().Format(time.RFC3339)
					case e.Owner != "":
						detail = "owner " + e.Owner + " until " + e.Deadline.UTC().Format(time.RFC3339)
					case e.State == spool.StateOpen && e.Bytes == 0:
						detail = "created ahead, empty"
					case e.State == spool.StateDead || e.State == spool.StateQuarantine:
						if reason, err := s.Reason(cmd.Context(), e); err != nil {
							detail = "reason unreadable: " + err.Error()
						} else if reason != "" {
							detail = formatReason(reason)
						}
					}
					msgs := strconv.Itoa(e.Messages)
					if e.State == spool.StateOpen || e.State == spool.StateRecovering {
						msgs = "-" // counted when sealed or recovered; `spool show` reads them
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.State, e.Name, msgs, e.Bytes, e.Attempt, e.Created.UTC().Format(time.RFC3339), detail)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only this state: open, recovering, ready, claimed, dead or quarantine")
	return cmd
}

func newSpoolShowCmd(f *spoolFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show <segment>",
		Short: "Print a segment's records, one JSON object a line, after a summary on stderr",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			e, err := s.Find(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			msgs, rerr := s.Read(cmd.Context(), e)
			if rerr != nil && !errors.Is(rerr, spool.ErrCorrupt) {
				return rerr
			}
			errw := cmd.ErrOrStderr()
			if e.State == spool.StateOpen || e.State == spool.StateRecovering {
				// Its name carries no count: say what reads back (its writer may still append).
				e.Messages = len(msgs)
			}
			fmt.Fprintf(errw, "%s/%s: %d messages, %d bytes, attempt %d, created %s\n", e.State, e.Name, e.Messages, e.Bytes, e.Attempt, e.Created.UTC().Format(time.RFC3339Nano))
			if reason, _ := s.Reason(cmd.Context(), e); reason != "" {
				fmt.Fprintln(errw, formatReason(reason))
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, m := range msgs {
				// The same JSON envelope the sinks deliver.
				if err := enc.Encode(sink.NewEnvelope(&m)); err != nil {
					return err
				}
			}
			if rerr != nil {
				fmt.Fprintf(errw, "DAMAGED: %v (%d of %d records intact, printed above)\n", rerr, len(msgs), e.Messages)
				return exitCode(1)
			}
			return nil
		},
	}
}

// formatReason renders a reason file ("<RFC 3339 time>\n<reason>\n") as one line that starts with
// the reason itself, so `show` does not present the time as the reason.
func formatReason(body string) string {
	at, reason := spool.SplitReason(body)
	if at.IsZero() {
		return "reason: " + reason
	}
	return fmt.Sprintf("reason: %s (since %s)", reason, at.Format(time.RFC3339))
}

func newSpoolRequeueCmd(f *spoolFlags) *cobra.Command {
	var allDead bool
	cmd := &cobra.Command{
		Use:   "requeue <segment>... | --all-dead",
		Short: "Move dead segments back to ready, with their attempt count reset",
		RunE: func(cmd *cobra.Command, args []string) error {
			if allDead == (len(args) > 0) {
				return errors.New("give segment names or --all-dead, not both or neither")
			}
			s, err := f.open()
			if err != nil {
				return err
			}
			var entries []spool.Entry
			if allDead {
				if entries, err = s.List(cmd.Context(), spool.StateDead); err != nil {
					return err
				}
			} else {
				for _, a := range args {
					e, err := s.Find(cmd.Context(), a)
					if err != nil {
						return err
					}
					if e.State != spool.StateDead {
						return fmt.Errorf("requeue %s: segment is %s; only dead segments can be requeued (a quarantined one: bridgehead spool quarantine requeue)", e.ID, e.State)
					}
					entries = append(entries, e)
				}
			}
			p := newProgress(cmd.ErrOrStderr(), "requeue")
			msgs := 0
			for i, e := range entries {
				if err := s.Requeue(cmd.Context(), e); err != nil {
					return err
				}
				msgs += e.Messages
				p(i+1, len(entries))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "requeued %d segments (%d messages)\n", len(entries), msgs)
			return err
		},
	}
	cmd.Flags().BoolVar(&allDead, "all-dead", false, "requeue every dead segment")
	return cmd
}

func newSpoolPurgeCmd(f *spoolFlags) *cobra.Command {
	var state string
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "purge --state dead --older-than D",
		Short: "Delete dead segments dead-lettered more than D ago (quarantine is never purged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := spool.ParseState(state)
			if err != nil {
				return err
			}
			if st != spool.StateDead {
				return errors.New("only the dead state can be purged here (quarantine: bridgehead spool quarantine purge; the others are live)")
			}
			if olderThan <= 0 {
				return errors.New("--older-than must be a positive duration, e.g. 168h")
			}
			s, err := f.open()
			if err != nil {
				return err
			}
			n, err := s.Purge(cmd.Context(), st, time.Now().Add(-olderThan), newProgress(cmd.ErrOrStderr(), "purge"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "purged %d dead segments older than %s\n", n, olderThan)
			return err
		},
	}
	cmd.Flags().StringVar(&state, "state", "dead", "state to purge (only dead is allowed)")
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "purge segments dead-lettered longer ago than this (required)")
	_ = cmd.MarkFlagRequired("older-than")
	return cmd
}

func newSpoolVerifyCmd(f *spoolFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check every checksum of every segment; exit 1 and list the damage if any",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			checked, damaged, err := s.Verify(cmd.Context(), newProgress(cmd.ErrOrStderr(), "verify"))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, d := range damaged {
				fmt.Fprintf(out, "DAMAGED %s/%s: %d of %d records intact: %v\n", d.Entry.State, d.Entry.Name, d.Intact, d.Entry.Messages, d.Err)
			}
			fmt.Fprintf(out, "verified %d segments: %d damaged\n", checked, len(damaged))
			if len(damaged) > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
}

// newProgress returns a progress callback: a bar on a terminal, a plain line every 10% (at most)
// elsewhere, nothing for fewer than 100 items.
func newProgress(w io.Writer, what string) func(done, total int) {
	var bar *progressbar.ProgressBar
	tty := isTerminal(w)
	lastPct := -1
	return func(done, n int) {
		if n < 100 {
			return
		}
		if tty {
			if bar == nil {
				bar = progressbar.NewOptions(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
					progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
			}
			_ = bar.Set(done)
			return
		}
		if pct := done * 100 / n; pct/10 != lastPct/10 || done == n {
			lastPct = pct
			fmt.Fprintf(w, "%s: %d/%d (%d%%)\n", what, done, n, pct)
		}
	}
}
