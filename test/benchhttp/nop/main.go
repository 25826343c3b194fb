// Command nop serves the API of `bridgehead serve --role api` with nothing persisted: the same
// ingest handler, metrics registry, logger and http.Server settings as serve, on a spool that
// accepts every message without writing it. It is the "persists nothing" server of
// scripts/bench-http.sh, the denominator of the durable/baseline ratio (like the baseline of
// internal/ingest's BenchmarkAPIProcess).
//
// With -park-every D, every Append waits for a shared tick that comes every D and releases every
// waiter at once (a mean wait of D/2, nothing written): what a group commit's wait alone costs
// the HTTP path, with none of the spool's work (docs/performance.md).
//
// It prints "listening on http://ADDR" once it accepts connections and serves until SIGTERM or
// SIGINT.
//
//	go run ./test/benchhttp/nop -listen 127.0.0.1:0 [-park-every 1ms]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/web"
)

// nopSpool accepts everything and keeps nothing; with a ticker, Append waits for its next tick.
type nopSpool struct{ tick *ticker }

func (n nopSpool) Append(ctx context.Context, _ ...message.Message) error {
	if n.tick == nil {
		return nil
	}
	select {
	case <-n.tick.next():
	case <-ctx.Done():
	}
	return nil
}
func (nopSpool) Ready() error           { return nil }
func (nopSpool) LastStats() spool.Stats { return spool.Stats{} }

// ticker closes a channel every period, releasing everyone waiting on it, and makes the next.
type ticker struct {
	mu sync.Mutex
	ch chan struct{}
}

func newTicker(ctx context.Context, period time.Duration) *ticker {
	t := &ticker{ch: make(chan struct{})}
	go func() {
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
			case <-ctx.Done():
				return
			}
			t.mu.Lock()
			close(t.ch)
			t.ch = make(chan struct{})
			t.mu.Unlock()
		}
	}()
	return t
}

// next returns the channel the next tick closes.
func (t *ticker) next() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	parkEvery := flag.Duration("park-every", 0, "make every Append wait for a shared tick that comes this often (0: answer at once)")
	flag.Parse()
	if *parkEvery < 0 {
		fmt.Fprintln(os.Stderr, "nop: -park-every must not be negative")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var sp nopSpool
	if *parkEvery > 0 {
		sp.tick = newTicker(ctx, *parkEvery)
	}
	if err := run(ctx, *listen, sp); err != nil {
		fmt.Fprintln(os.Stderr, "nop:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. The configuration is serve's for --role api on its defaults, with
// the spool left out (and with it the dead-letter routes, which no benchmark calls).
func run(ctx context.Context, listen string, sp nopSpool) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	guard, err := httpapi.NewGuard(httpapi.GuardConfig{Logger: log, Registerer: reg}) // --auth off, as serve's default
	if err != nil {
		return err
	}
	router, err := httpapi.NewRouter(httpapi.RouterConfig{Guard: guard, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	api, err := ingest.New(ingest.Config{Spool: sp, Stamp: "vm", Guard: guard, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	opsSrv, err := ops.New(ops.Config{Spool: sp, API: api, Stamp: "vm", Role: "api", Version: "nop",
		Gatherer: reg, Registerer: reg, Logger: log, Console: web.Handler()})
	if err != nil {
		return err
	}
	if err := router.Handle(append(api.Routes(), opsSrv.Routes()...)...); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
