package forward_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink/file"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// A forwarder drains a spool into the file sink until its context ends.
func Example() {
	dir, _ := os.MkdirTemp("", "forward-example")
	defer os.RemoveAll(dir)
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sp.Close()
	out := filepath.Join(dir, "delivered.ndjson")
	fs, err := file.New(file.Config{Path: out})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fs.Close()
	for _, v := range []string{"21.5", "21.7", "22.0"} {
		m := message.Message{ID: uuid.New(), SenderID: "01", Value: v, ReceivedAt: time.Now(), Stamp: "onprem"}
		if err := sp.Append(context.Background(), m); err != nil {
			fmt.Println(err)
			return
		}
	}

	f, err := forward.New(forward.Config{Spool: sp, Sink: fs, Concurrency: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); lines(out) < 3 && time.Now().Before(deadline); {
		<-time.After(10 * time.Millisecond)
	}
	cancel()
	fmt.Println("run:", <-done)
	fmt.Println("lines:", lines(out))
	// Output:
	// run: <nil>
	// lines: 3
}

func lines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}
