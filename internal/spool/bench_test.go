package spool_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bridgehead-dev/bridgehead/internal/benchdir"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// BenchmarkAppend measures durable appends of 256-byte messages by 1, 16 and 256 concurrent
// appenders, on the real disk, with 1 ms added to every metadata operation (meta-1ms) and with
// 1 ms added to every operation, data and metadata (net-1ms: a share where each call is a round
// trip), for the spool and, side by side, the baseline a naive spool would use: one file per
// message, each written, fsynced, closed, renamed and its directory fsynced. For one appender
// that baseline is exactly spool format 1's commit (a file per commit, one message a commit).
// It reports the file-system calls per message, in all (fsops/msg) and by kind.
//
//	make bench   (ROUNDS × go test -run '^$' -bench . -benchtime 2s -count 1 ./internal/spool/ ./internal/ingest/)
func BenchmarkAppend(b *testing.B) {
	for _, lat := range []struct {
		name string
		d    time.Duration
		all  bool // on every call, not only metadata
	}{{"local", 0, false}, {"meta-1ms", time.Millisecond, false}, {"net-1ms", time.Millisecond, true}} {
		for _, impl := range []string{"spool", "file-per-message"} {
			for _, c := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("fs=%s/impl=%s/c=%d", lat.name, impl, c), func(b *testing.B) {
					ffs := fsys.NewFaulty(fsys.OS{}) // no faults: it counts the calls
					if lat.all {
						ffs.SetNetworkLatency(lat.d)
					} else {
						ffs.SetLatency(lat.d)
					}
					dir := benchdir.Dir(b, "run-")
					var appendOne func(m message.Message) error
					var s *spool.Spool
					if impl == "spool" {
						var err error
						if s, err = spool.Open(dir, spool.Options{FS: ffs}); err != nil {
							b.Fatal(err)
						}
						defer s.Close()
						appendOne = func(m message.Message) error { return s.Append(context.Background(), m) }
					} else {
						appendOne = filePerMessage(ffs, dir)
					}
					msg := message.Message{SenderID: "bench", Value: string(make([]byte, 256)), ReceivedAt: time.Now(), Stamp: "bench"}
					syncs0 := ffs.Count(fsys.OpSync) + ffs.Count(fsys.OpSyncDir)
					ops0 := ffs.Counts()
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					start := time.Now()
					for range c {
						wg.Go(func() {
							m := msg
							for next.Add(1) <= int64(b.N) {
								m.ID = uuid.New()
								if err := appendOne(m); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
					b.ReportMetric(float64(ffs.Count(fsys.OpSync)+ffs.Count(fsys.OpWriteSync)+ffs.Count(fsys.OpSyncDir)-syncs0)/float64(b.N), "fsyncs/msg")
					total := 0
					for op, n := range ffs.Counts() {
						if d := n - ops0[op]; d > 0 {
							total += d
							b.ReportMetric(float64(d)/float64(b.N), "fs-"+string(op)+"/msg")
						}
					}
					b.ReportMetric(float64(total)/float64(b.N), "fsops/msg")
					if s != nil {
						c := s.Counters()
						b.ReportMetric(float64(c.Messages)/float64(max(c.Commits, 1)), "msgs/commit")
						b.ReportMetric(c.CommitTime.Seconds()*1000/float64(max(c.Commits, 1)), "ms/commit")
					}
				})
			}
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	benchdir.Cleanup()
	os.Exit(code)
}

// filePerMessage is the baseline: every message its own durable file.
func filePerMessage(ffs fsys.FS, dir string) func(message.Message) error {
	_ = ffs.MkdirAll(filepath.Join(dir, "tmp"))
	_ = ffs.MkdirAll(filepath.Join(dir, "ready"))
	return func(m message.Message) error {
		name := m.ID.String()
		tmp := filepath.Join(dir, "tmp", name)
		f, err := ffs.CreateExcl(tmp)
		if err != nil {
			return err
		}
		if _, err := f.Write(m.AppendBinary(m.ID[:])); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := ffs.Rename(tmp, filepath.Join(dir, "ready", name)); err != nil {
			return err
		}
		return ffs.SyncDir(filepath.Join(dir, "ready"))
	}
}
