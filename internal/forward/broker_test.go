package forward_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/bridgehead-dev/bridgehead/internal/childproc"
)

// brokerChildEnv makes the test binary a kfake broker process instead of running tests: for
// benchmarks that must not share a process (and its scheduler and GC) with the broker.
const brokerChildEnv = "BRIDGEHEAD_TEST_KFAKE_BROKER"

func TestMain(m *testing.M) {
	if os.Getenv(brokerChildEnv) != "" {
		os.Exit(runBrokerChild())
	}
	os.Exit(m.Run())
}

// runBrokerChild serves a kfake cluster, prints its listen addresses, and exits when its
// standard input closes (the parent ended or died).
func runBrokerChild() int {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		return 1
	}
	defer c.Close()
	childproc.Ready(strings.Join(c.ListenAddrs(), ","))
	return 0
}

// startBrokerProcess starts a kfake broker in a child process and returns its addresses.
func startBrokerProcess(tb testing.TB) []string {
	tb.Helper()
	return strings.Split(childproc.Start(tb, brokerChildEnv+"=1"), ",")
}
