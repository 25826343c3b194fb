package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Make API keys and their hashes for the principals file (--auth-file)",
	}
	cmd.AddCommand(newAuthNewCmd(), newAuthHashCmd())
	return cmd
}

func newAuthNewCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "new",
		Short: "Print a fresh random API key (256 bits) and the keySha256 that goes in the principals file",
		Long: `Print a fresh random API key and its SHA-256. Give the key to the supplier over a secure
channel; put only the hash in the principals file. The key is not stored anywhere: print it once,
hand it over, and forget it. To revoke it, remove its principal (or its keySha256) from the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, hash := auth.NewKey()
			fmt.Fprintf(cmd.OutOrStdout(), "key:       %s\nkeySha256: %s\n", key, hash)
			return nil
		},
	}
}

func newAuthHashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash",
		Short: "Print the keySha256 of an API key read from stdin (never from the command line)",
		Long: `Read one API key from stdin and print its keySha256, the form the principals file holds.
The key is read from stdin so that it stays out of shell history and process listings:
  bridgehead auth hash < key.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				// Typed by a person: do not echo the key onto the screen.
				fmt.Fprint(cmd.ErrOrStderr(), "API key (not shown, then Enter): ")
				b, err := term.ReadPassword(int(f.Fd()))
				fmt.Fprintln(cmd.ErrOrStderr())
				if err != nil {
					return fmt.Errorf("read the key from the terminal: %w", err)
				}
				in = bytes.NewReader(b)
			}
			key, err := readKey(in)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.HashKey(key))
			return nil
		},
	}
}

// readKey reads the first line of r, without surrounding spaces. Keys made by `auth new` are
// 43 characters; anything shorter than 16 is refused as too weak to be a key.
func readKey(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the key from stdin: %w", err)
	}
	key := strings.TrimSpace(line)
	switch {
	case key == "":
		return "", errors.New("no key on stdin: pipe the key in, e.g. `bridgehead auth hash < key.txt`")
	case len(key) < 16:
		return "", fmt.Errorf("the key is %d characters; keys are random and at least 16 characters (128 bits): make one with `bridgehead auth new`", len(key))
	}
	return key, nil
}
