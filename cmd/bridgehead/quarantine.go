package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/spf13/cobra"
)

// newSpoolQuarantineCmd is `spool quarantine`: what an operator does with damaged segments,
// which nothing else ever deletes or moves.
func newSpoolQuarantineCmd(f *spoolFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "Damaged segments: list, export their intact records, requeue, purge",
		Long: `Quarantined segments are damaged (a bad checksum, or unreadable). When a forwarder
quarantined one, it re-spooled the intact records as a new segment already (the reason says
"re-spooled as"); what is left is for a human: export the intact records for the sender
(bridgehead send reads the export), requeue a segment whose cause was fixed (an unreadable
one), or purge it once nobody needs it.`,
	}
	cmd.AddCommand(newQuarantineLsCmd(f), newQuarantineExportCmd(f), newQuarantineRequeueCmd(f), newQuarantinePurgeCmd(f))
	return cmd
}

func newQuarantineLsCmd(f *spoolFlags) *cobra.Command {
	ls := newSpoolLsCmd(f)
	ls.Short = "List quarantined segments with their reasons (spool ls --state quarantine)"
	ls.Flags().Lookup("state").DefValue = "quarantine"
	_ = ls.Flags().Set("state", "quarantine")
	ls.Flags().Lookup("state").Hidden = true
	return ls
}

func newQuarantineExportCmd(f *spoolFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export <segment>",
		Short: "Write a quarantined segment's intact records as NDJSON that bridgehead send takes back",
		Long: `Each intact record becomes one {"senderId","value","properties","id"} line, id being the
message's correlationId: sent again with bridgehead send (or POST /v1/messages), every message
keeps its id, so a downstream that dedupes by it sees no duplicate.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, e, err := findQuarantined(cmd, f, args[0])
			if err != nil {
				return err
			}
			msgs, rerr := s.Read(cmd.Context(), e)
			if rerr != nil && !errors.Is(rerr, spool.ErrCorrupt) {
				return rerr
			}
			var w io.Writer = cmd.OutOrStdout()
			if output != "" {
				file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			enc := json.NewEncoder(w)
			for _, m := range msgs {
				// The shape send reads back (sendInput): a resent message keeps its id.
				line := inputMessage{SenderID: m.SenderID, Value: m.Value, Properties: m.Properties, ID: m.ID.String()}
				if err := enc.Encode(line); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d intact records of %s\n", len(msgs), e.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this new file instead of stdout")
	return cmd
}

func newQuarantineRequeueCmd(f *spoolFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "requeue <segment>",
		Short: "Move a quarantined segment back to ready/ once its cause is fixed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, e, err := findQuarantined(cmd, f, args[0])
			if err != nil {
				return err
			}
			reason, err := s.Reason(cmd.Context(), e)
			if err != nil {
				return err
			}
			if strings.Contains(reason, "re-spooled as") && !force {
				return fmt.Errorf("%s: its intact records were re-spooled already (%s); requeueing delivers them twice: add --force if that is what you want", e.ID, formatReason(reason))
			}
			if err := s.Requeue(cmd.Context(), e); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "requeued %s: a forwarder claims it next (if it is still damaged, it is quarantined again)\n", e.ID)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "requeue even when its intact records were re-spooled already")
	return cmd
}

func newQuarantinePurgeCmd(f *spoolFlags) *cobra.Command {
	var olderThan time.Duration
	var yes bool
	cmd := &cobra.Command{
		Use:   "purge --older-than D [--yes]",
		Short: "Delete quarantined segments set aside more than D ago, after a confirmation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return errors.New("--older-than must be a positive duration, e.g. 720h")
			}
			s, err := f.open()
			if err != nil {
				return err
			}
			entries, err := s.List(cmd.Context(), spool.StateQuarantine)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "quarantine is empty")
				return err
			}
			if !yes {
				fmt.Fprintf(cmd.ErrOrStderr(), "This deletes the quarantined segments set aside more than %s ago (of %d in quarantine), for good.\n"+
					"Export what you need first (spool quarantine export). Type yes to go on: ", olderThan, len(entries))
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(answer) != "yes" {
					return errors.New("not confirmed: nothing deleted (--yes skips the question)")
				}
			}
			n, err := s.Purge(cmd.Context(), spool.StateQuarantine, time.Now().Add(-olderThan), newProgress(cmd.ErrOrStderr(), "purge"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "purged %d quarantined segments older than %s\n", n, olderThan)
			return err
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "purge segments quarantined longer ago than this (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("older-than")
	return cmd
}

// findQuarantined opens the spool and finds a quarantined segment by name or id.
func findQuarantined(cmd *cobra.Command, f *spoolFlags, name string) (*spool.Spool, spool.Entry, error) {
	s, err := f.open()
	if err != nil {
		return nil, spool.Entry{}, err
	}
	e, err := s.Find(cmd.Context(), name)
	if err != nil {
		return nil, spool.Entry{}, err
	}
	if e.State != spool.StateQuarantine {
		return nil, spool.Entry{}, fmt.Errorf("segment %s is %s, not quarantined", e.ID, e.State)
	}
	return s, e, nil
}
