// Package benchdir gives benchmarks the directories their spools live in, and keeps those files
// for the whole of a `make bench` run.
//
// Why: on ext4 without a journal (these build machines) the inode allocator skips inodes freed
// in the last 30 seconds or so, scanning inode tables, and file creation then costs 0.5 ms of CPU
// instead of 15 µs. A benchmark process that deleted its spools at exit would slow the file
// creation of the next process: with rounds alternating, the durable variants pay for the files
// the previous round deleted, and the baselines, which create no files, do not.
package benchdir

import (
	"os"
	"sync"
	"testing"
)

// Env names a directory that outlives one benchmark process: make bench creates it, every
// process of the run puts its files there, and make bench removes it once all rounds are done.
const Env = "BRIDGEHEAD_BENCH_DIR"

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// Dir creates a new directory for one benchmark's files under this process's root, which is
// created on first use under Env's directory when that is set, else the system's temporary one.
func Dir(tb testing.TB, prefix string) string {
	tb.Helper()
	rootOnce.Do(func() { root, rootErr = os.MkdirTemp(os.Getenv(Env), "bench-") })
	if rootErr != nil {
		tb.Fatal(rootErr)
	}
	dir, err := os.MkdirTemp(root, prefix)
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Cleanup removes this process's root, unless it is under Env's directory: then the files stay
// until make bench removes them all. Call it from TestMain after the run.
func Cleanup() {
	if root != "" && os.Getenv(Env) == "" {
		_ = os.RemoveAll(root)
	}
}
