// Package benchdir gives benchmarks the directory their spools live in, and keeps those files
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
)

// Env names a directory that outlives one benchmark process: make bench creates it, every
// process of the run puts its files there, and make bench removes it once all rounds are done.
const Env = "BRIDGEHEAD_BENCH_DIR"

// New creates a directory for one benchmark process's files, under Env's directory when that
// is set and the system's temporary directory otherwise. remove deletes it, but only in the
// second case: under Env, the files stay until make bench removes them all.
func New(prefix string) (dir string, remove func(), err error) {
	parent := os.Getenv(Env)
	if dir, err = os.MkdirTemp(parent, prefix); err != nil {
		return "", nil, err
	}
	if parent != "" {
		return dir, func() {}, nil
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}
