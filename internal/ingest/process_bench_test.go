package ingest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/benchdir"
	"github.com/bridgehead-dev/bridgehead/internal/childproc"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/loadgen"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// serverChildEnv makes the test binary an API server process instead of running tests:
// "durable:<spool dir>" or "baseline". It prints its address and serves until stdin closes.
const serverChildEnv = "BRIDGEHEAD_TEST_API_SERVER"

// runServerChild is the server process of BenchmarkAPIProcess.
func runServerChild(spec string) int {
	var sp ingest.Spool = nopSpool{}
	if dir, ok := strings.CutPrefix(spec, "durable:"); ok {
		s, err := spool.Open(dir, spool.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "spool:", err)
			return 1
		}
		defer s.Close()
		sp = s
	}
	api, err := ingest.New(ingest.Config{Spool: sp, Stamp: "bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	router, err := httpapi.NewRouter(httpapi.RouterConfig{})
	if err == nil {
		err = router.Handle(api.Routes()...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	childproc.Ready("http://" + ln.Addr().String())
	_ = srv.Close()
	return 0
}

// BenchmarkAPIProcess is the measurement as an operator would take it: the API in its own
// process (the test binary re-executed: durable on a spool in the temporary directory, or the
// baseline that persists nothing), loaded by the engine of `bridgehead bench` (package loadgen)
// from this process at 64 connections, closed loop, for 4 s after a 1 s warm-up. One run per
// b.N is meaningless here, so each sub-benchmark runs the load once: use -benchtime 1x and
// alternate rounds (make bench does).
//
//	go test -run '^$' -bench BenchmarkAPIProcess -benchtime 1x ./internal/ingest/
func BenchmarkAPIProcess(b *testing.B) {
	for _, route := range []loadgen.Route{loadgen.RouteCompat} {
		for _, impl := range []string{"durable", "baseline"} {
			b.Run(fmt.Sprintf("route=%s/impl=%s/conns=64", route, impl), func(b *testing.B) {
				spec := impl
				if impl == "durable" {
					spec = "durable:" + benchdir.Dir(b, "proc-")
				}
				url := childproc.Start(b, serverChildEnv+"="+spec)
				r, err := loadgen.New(loadgen.Config{URL: url, Route: route, Concurrency: 64,
					Duration: 4 * time.Second, Warmup: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					res, err := r.Run(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if res.Succeeded != res.Requests {
						b.Fatalf("%d of %d requests failed: %v %v", res.Requests-res.Succeeded, res.Requests, res.Status, res.Errors)
					}
					b.ReportMetric(res.MessagesPerSecond, "msgs/s")
					b.ReportMetric(res.Latency.P99, "p99-ms")
				}
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
