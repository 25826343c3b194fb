package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/benchdir"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// nopSpool accepts everything and keeps nothing: the baseline that measures HTTP, JSON and
// validation alone.
type nopSpool struct{}

func (nopSpool) Append(context.Context, ...message.Message) error { return nil }
func (nopSpool) Ready() error                                     { return nil }
func (nopSpool) LastStats() spool.Stats                           { return spool.Stats{} }

// BenchmarkAPI drives the API over real TCP on 127.0.0.1 with 64 keep-alive connections, side by
// side: the durable API (spool on the local disk) and the baseline that decodes, validates and
// answers the same JSON but persists nothing. route=compat sends one 256-byte message per request
// to /ServiceAPI/message; route=batch sends 1,000 per request to /v1/messages.
//
//	make bench   (go test -run '^$' -bench BenchmarkAPI -benchtime 3s -count 5 ./internal/ingest/)
func BenchmarkAPI(b *testing.B) {
	value := strings.Repeat("v", 256)
	one := []byte(`{"senderId":"bench-01","value":"` + value + `"}`)
	var batch bytes.Buffer
	batch.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `{"senderId":"bench-%02d","value":"%s"}`, i%16, value)
	}
	batch.WriteByte(']')
	for _, route := range []struct {
		name, path string
		body       []byte
		per        int
	}{{"compat", "/ServiceAPI/message", one, 1}, {"batch", "/v1/messages", batch.Bytes(), 1000}} {
		for _, impl := range []string{"durable", "baseline"} {
			b.Run(fmt.Sprintf("route=%s/impl=%s/conns=64", route.name, impl), func(b *testing.B) {
				var sp ingest.Spool = nopSpool{}
				var durable *spool.Spool
				if impl != "baseline" {
					durable = openBenchSpool(b, "api-")
					sp = durable
				}
				srv := httptest.NewServer(apitest.APIHandler(b, ingest.Config{Spool: sp, Stamp: "bench"}, httpapi.GuardConfig{}))
				defer srv.Close()
				drive(b, srv.Client(), srv.URL+route.path, route.body, route.per, nil)
				if durable != nil {
					c := durable.Counters()
					b.ReportMetric(float64(c.Messages)/float64(max(c.Commits, 1)), "msgs/commit")
					b.ReportMetric(float64(c.CommitTime.Microseconds())/float64(max(c.Commits, 1)), "µs/commit")
				}
			})
		}
	}
}

// drive posts body to url from 64 goroutines over 64 keep-alive connections until b.N requests
// were answered, and reports req/s and msgs/s (per messages a request). header, if set, is added
// to every request.
func drive(b *testing.B, base *http.Client, url string, body []byte, per int, header http.Header) {
	tr := base.Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = 64, 64
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range header {
					req.Header[k] = v
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(b.N*per)/elapsed.Seconds(), "msgs/s")
	// CPU time (user + system, this process: client and server) per request: steadier than
	// throughput on a shared machine, it shows what a feature costs when the disk sets the pace.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openBenchSpool opens a spool in a new benchmark directory (package benchdir), closed when b
// ends.
func openBenchSpool(b *testing.B, prefix string) *spool.Spool {
	b.Helper()
	s, err := spool.Open(benchdir.Dir(b, prefix), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(serverChildEnv); spec != "" {
		os.Exit(runServerChild(spec))
	}
	code := m.Run()
	benchdir.Cleanup()
	os.Exit(code)
}
