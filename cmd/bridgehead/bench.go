package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/loadgen"
	"github.com/spf13/cobra"
)

// benchFlags is every `bench` setting; flags fill it, env BRIDGEHEAD_<FLAG> overrides defaults.
type benchFlags struct {
	url         string
	route       string
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	size        byteSize
	batch       int
	senderID    string
	apiKey      string
	timeout     time.Duration
	json        bool
}

func newBenchCmd() *cobra.Command {
	b := benchFlags{size: loadgen.DefaultSize}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load an API with messages and report throughput, errors and latency percentiles",
		Long: `Send messages to a Bridgehead API for --duration (after --warmup) and report requests/s,
messages/s, answers by status, transport errors by kind and latency p50/p90/p99/p99.9/max.

Closed loop (default): --concurrency workers, each sending its next request when the previous
one answered. Latency runs from each send, so a stalled server hides: its stall delays the
requests that would have been sent meanwhile, and they are never measured.

Open loop (--rate N): N requests/s on a fixed schedule; --concurrency bounds the requests in
flight. Latency runs from each request's scheduled time, so waiting behind a stall counts:
coordinated omission is corrected. Requests still owed at the end are reported as unsent.

Progress goes to stderr once a second: one line rewritten in place on a terminal, plain lines
otherwise (none with --json). The result goes to stdout. Exit status 1 when the server cannot
be reached or no request got a 2xx. Every flag can also be set by BRIDGEHEAD_<FLAG> (dashes as
underscores); the API key also by BRIDGEHEAD_API_KEY_FILE.`,
		Example: `  bridgehead bench --url http://127.0.0.1:8080 --concurrency 64 --duration 30s
  bridgehead bench --rate 2000 --duration 60s --json > result.json
  bridgehead bench --route messages --batch 1000 --concurrency 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench(cmd, b)
		},
	}
	f := cmd.Flags()
	f.StringVar(&b.url, "url", loadgen.DefaultURL, "base URL of the API (the route's path is added)")
	f.StringVar(&b.route, "route", string(loadgen.RouteCompat), "compat: POST /ServiceAPI/message, one message; messages: POST /v1/messages, --batch messages as a JSON array")
	f.IntVar(&b.concurrency, "concurrency", loadgen.DefaultConcurrency, "workers (connections); with --rate, the bound on requests in flight")
	f.Float64Var(&b.rate, "rate", 0, "open loop: requests per second on a fixed schedule, latency corrected for coordinated omission (0 = closed loop)")
	f.DurationVar(&b.duration, "duration", loadgen.DefaultDuration, "measured time, after the warm-up")
	f.DurationVar(&b.warmup, "warmup", time.Second, "time before the measurement; its requests are not counted in the results")
	f.Var(&b.size, "size", "bytes per message value (units: KiB, MiB)")
	f.IntVar(&b.batch, "batch", loadgen.DefaultBatch, "messages per request (--route messages)")
	f.StringVar(&b.senderID, "sender-id", loadgen.DefaultSenderID, "senderId of every message")
	f.StringVar(&b.apiKey, "api-key", "", "sent as Authorization: Bearer <key> (or BRIDGEHEAD_API_KEY_FILE)")
	f.DurationVar(&b.timeout, "timeout", loadgen.DefaultTimeout, "per request, from sending to the end of the answer")
	f.BoolVar(&b.json, "json", false, "print the result as JSON on stdout (no progress lines unless stderr is a terminal)")
	_ = f.SetAnnotation("api-key", secretAnnotation, []string{"true"})
	return cmd
}

// config checks the flags whose zero value the engine would take for its default, and builds the
// engine's Config.
func (b benchFlags) config() (loadgen.Config, error) {
	for _, c := range []struct {
		flag string
		bad  bool
	}{
		{"--concurrency", b.concurrency <= 0},
		{"--duration", b.duration <= 0},
		{"--size", b.size <= 0},
		{"--batch", b.batch <= 0},
		{"--timeout", b.timeout <= 0},
		{"--sender-id", b.senderID == ""},
	} {
		if c.bad {
			return loadgen.Config{}, fmt.Errorf("%s must be positive (or non-empty)", c.flag)
		}
	}
	if b.size > 1<<30 {
		return loadgen.Config{}, fmt.Errorf("--size %d: at most 1 GiB", b.size)
	}
	return loadgen.Config{
		URL:         b.url,
		Route:       loadgen.Route(b.route),
		Concurrency: b.concurrency,
		Rate:        b.rate,
		Duration:    b.duration,
		Warmup:      b.warmup,
		Size:        int(b.size),
		Batch:       b.batch,
		SenderID:    b.senderID,
		APIKey:      b.apiKey,
		Timeout:     b.timeout,
		UserAgent:   "bridgehead-bench/" + version,
	}, nil
}

// benchFlagOf names the flag behind each loadgen.Config field, for errors.
var benchFlagOf = map[string]string{
	"URL": "--url", "Route": "--route", "Concurrency": "--concurrency", "Rate": "--rate",
	"Duration": "--duration", "Warmup": "--warmup", "Size": "--size", "Batch": "--batch",
	"SenderID": "--sender-id", "Timeout": "--timeout",
}

func bench(cmd *cobra.Command, b benchFlags) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	cfg, err := b.config()
	if err != nil {
		return err
	}
	tty := isTerminal(stderr)
	switch {
	case tty:
		cfg.Progress = func(p loadgen.Progress) { fmt.Fprintf(stderr, "\r\x1b[K%s", p) }
	case !b.json:
		cfg.Progress = func(p loadgen.Progress) { fmt.Fprintln(stderr, p) }
	}
	r, err := loadgen.New(cfg)
	var fe *loadgen.FieldError
	if errors.As(err, &fe) && benchFlagOf[fe.Field] != "" {
		return fmt.Errorf("%s %v: %s", benchFlagOf[fe.Field], fe.Value, fe.Reason)
	}
	if err != nil {
		return err
	}
	if !b.json {
		mode := fmt.Sprintf("closed loop, %d workers", cfg.Concurrency)
		if cfg.Rate > 0 {
			mode = fmt.Sprintf("open loop, %g req/s, at most %d in flight", cfg.Rate, cfg.Concurrency)
		}
		fmt.Fprintf(stderr, "bench: POST %s, %s, %v warm-up + %v\n", r.Target(), mode, cfg.Warmup, cfg.Duration)
	}
	res, err := r.Run(cmd.Context())
	if tty {
		fmt.Fprint(stderr, "\r\x1b[K")
	}
	if errors.Is(err, loadgen.ErrUnreachable) {
		return fmt.Errorf("%w (is bridgehead serve running there? set --url)", err)
	}
	if res == nil {
		return err
	}
	if b.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			return werr
		}
	} else if werr := res.WriteText(stdout); werr != nil {
		return werr
	}
	return err
}
