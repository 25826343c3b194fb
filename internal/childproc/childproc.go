// Package childproc runs a test binary again as a helper process: a broker or a server that a
// benchmark must not share a process (its scheduler and garbage collector) with.
//
// The parent calls Start with an environment variable that the child's TestMain looks for; the
// child sets itself up, calls Ready with the one line the parent needs (an address), and lives
// until its standard input closes: when the test ends, or when the parent dies.
package childproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Start runs the current test binary with env ("NAME=value") added and no tests selected, and
// returns the first line the child prints, trimmed. The child's stderr is this process's; it is
// stopped and waited for when tb ends.
func Start(tb testing.TB, env string) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("child process (%s): %v", env, err)
	}
	return strings.TrimSpace(line)
}

// Ready is the child's side: it prints line for Start and returns once standard input closes.
func Ready(line string) {
	fmt.Println(line)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
