package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/ingest"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/web"
	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serveConfig is every `serve` setting; flags fill it, env BRIDGEHEAD_<FLAG> overrides defaults.
type serveConfig struct {
	listen            string
	role              string
	spoolDir          string
	sinks             sinkFlags
	forwardConc       int
	retryMaxDelay     time.Duration
	stamp             string
	spoolLease        time.Duration
	spoolSkew         time.Duration
	spoolWriterLease  time.Duration
	spoolSealAfter    time.Duration
	spoolSegmentBytes byteSize
	spoolMaxBytes     byteSize
	spoolMinFreeBytes byteSize
	spoolReserve      bytesOrPercent
	reservePriority   uint8
	maxMessageBytes   byteSize
	maxRequestBytes   byteSize
	maxInflightBytes  byteSize
	maxEventBytes     byteSize
	defaultPriority   uint8
	messageTTL        time.Duration
	shutdownGrace     time.Duration
	logLevel          string
	peerURL           string
	peerAPIKey        string
	peerCAFile        string
	security          securityFlags
}

// defaultServeConfig is serve's settings before flags and environment (doctor starts from it too).
func defaultServeConfig() serveConfig {
	return serveConfig{
		spoolMinFreeBytes: 64 << 20,
		spoolReserve:      bytesOrPercent{percent: 5},
		reservePriority:   1,
		spoolSegmentBytes: spool.DefaultMaxSegmentBytes,
		maxMessageBytes:   ingest.DefaultMaxMessageBytes,
		maxRequestBytes:   ingest.DefaultMaxRequestBytes,
		maxInflightBytes:  ingest.DefaultMaxInflightBytes,
		maxEventBytes:     1_000_000, // Event Hubs Standard and Premium
		defaultPriority:   message.DefaultPriority,
	}
}

func newServeCmd() *cobra.Command {
	host, _ := os.Hostname()
	c := defaultServeConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API (durable HTTP ingest) and the forwarder on a spool",
		Long: `Run a stamp's roles. Every flag can also be set by the environment variable
BRIDGEHEAD_<FLAG> (dashes as underscores), e.g. BRIDGEHEAD_SPOOL_DIR.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checkEnv(unknownEnv(cmd.Flags(), os.Environ()), cmd.ErrOrStderr())
			return serve(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	c.registerShared(f)
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on (host:port; :8080 for all interfaces)")
	f.IntVar(&c.forwardConc, "forward-concurrency", forward.DefaultConcurrency, "forwarder: segments (hence batches) in flight at once")
	f.DurationVar(&c.retryMaxDelay, "retry-max-delay", forward.DefaultRetryMaxDelay, "forwarder: cap of the exponential backoff between retries")
	f.StringVar(&c.stamp, "stamp", host, "name of this stamp, recorded in every message (e.g. onprem, cloud)")
	f.DurationVar(&c.spoolLease, "spool-lease", spool.DefaultLease, "forwarder: how long a claim lasts unless renewed; a killed forwarder's claims return after lease + 2 × skew allowance")
	f.DurationVar(&c.spoolWriterLease, "spool-writer-lease", spool.DefaultWriterLease, "api: how long a writer's heartbeat holds its open segment; a paused API acknowledges nothing past it, and a killed API's open segment is recovered after lease + 2 × skew allowance")
	f.DurationVar(&c.spoolSealAfter, "spool-seal-after", spool.DefaultSealAfter, "api: an open segment is sealed (claimable by a forwarder) at most this long after its first message")
	f.Var(&c.spoolSegmentBytes, "spool-segment-bytes", "api: an open segment is sealed at this size (units: KiB, MiB)")
	f.Var(&c.maxMessageBytes, "max-message-bytes", "largest message (value plus properties) accepted")
	f.Var(&c.maxRequestBytes, "max-request-bytes", "largest request body accepted; larger ones get 413 unread")
	f.Var(&c.maxEventBytes, "max-event-bytes", "largest event the sink takes (Event Hubs Standard/Premium 1000000, Basic 256000; Kafka: the topic's max.message.bytes); a message whose event would be larger gets 413 before any 2xx (0 = no check)")
	f.Var(&c.maxInflightBytes, "max-inflight-bytes", "request bytes read and decoded at once, all requests together; past it 503 (retryable), not an out-of-memory kill. Size it to the memory limit: decoding takes up to ~6 × the body")
	f.Uint8Var(&c.defaultPriority, "default-priority", c.defaultPriority, "api: priority of a message that names none (0 highest … 9 lowest); higher priorities are delivered first")
	f.DurationVar(&c.messageTTL, "message-ttl", 0, "api: time-to-live of a message that names none, from when the stamp received it; an expired message is dead-lettered with reason expired, never sent (0 = never expires)")
	f.DurationVar(&c.shutdownGrace, "shutdown-grace", 25*time.Second, "on SIGTERM, the whole process's budget: in-flight requests and the forwarder's sends finish (or are released) within it, then serve exits")
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// registerShared registers the settings doctor reads exactly as serve does (same flags, same
// BRIDGEHEAD_* variables): the role, the spool's location and limits, the sink, security and the
// peer.
func (c *serveConfig) registerShared(f *pflag.FlagSet) {
	f.StringVar(&c.role, "role", "all", "roles to run: all, api or forwarder")
	f.StringVar(&c.spoolDir, "spool-dir", "./data/spool", "spool directory (shared by every replica of the stamp)")
	c.sinks.register(f)
	f.DurationVar(&c.spoolSkew, "spool-skew-allowance", spool.DefaultSkewAllowance, "largest clock difference tolerated between hosts sharing the spool (checked at start against the file server)")
	f.Var(&c.spoolMaxBytes, "spool-max-bytes", "cap on the spool's size; past it the API answers 503 (0 = no cap; units: MiB, GiB)")
	f.Var(&c.spoolMinFreeBytes, "spool-min-free-bytes", "free-space floor of the spool's file system; below it the API answers 503")
	f.Var(&c.spoolReserve, "spool-reserve", "the last part of the spool's capacity (bytes, or a percentage: 5%) kept for priorities up to --reserve-priority: lower ones get 503 there while alarms are still accepted (0 = none)")
	f.Uint8Var(&c.reservePriority, "reserve-priority", c.reservePriority, "lowest priority (highest number) that may use --spool-reserve")
	c.security.register(f)
	f.StringVar(&c.peerAPIKey, "peer-api-key", "", "API key this stamp presents to the peer's /v1/status (when the peer runs --metrics-auth)")
	_ = f.SetAnnotation("peer-api-key", secretAnnotation, []string{"true"})
	f.StringVar(&c.peerCAFile, "peer-ca-file", "", "PEM CA certificates to trust for an https --peer-url (default: the system's)")
	f.StringVar(&c.peerURL, "peer-url", "", "base URL of the other stamp, whose status the console shows beside this one's (e.g. https://cloud.example.com)")
}

func (c *serveConfig) validate() error {
	if err := c.validateShared(); err != nil {
		return err
	}
	if c.spoolLease <= 0 || c.spoolSkew <= 0 || c.spoolWriterLease <= 0 || c.spoolSealAfter <= 0 || c.spoolSegmentBytes <= 0 {
		return errors.New("--spool-lease, --spool-skew-allowance, --spool-writer-lease, --spool-seal-after and --spool-segment-bytes must be positive")
	}
	if c.forwardConc <= 0 || c.retryMaxDelay <= 0 {
		return errors.New("--forward-concurrency and --retry-max-delay must be positive")
	}
	if c.defaultPriority > message.MaxPriority {
		return fmt.Errorf("--default-priority %d: priorities are 0 (highest) to %d", c.defaultPriority, message.MaxPriority)
	}
	if c.messageTTL < 0 || c.messageTTL > message.MaxTTL || (c.messageTTL > 0 && c.messageTTL < time.Second) {
		return fmt.Errorf("--message-ttl %s: 0 (never) or 1s to %s", c.messageTTL, message.MaxTTL)
	}
	if c.shutdownGrace <= 0 {
		return fmt.Errorf("--shutdown-grace %v must be positive", c.shutdownGrace)
	}
	if c.maxMessageBytes <= 0 || c.maxRequestBytes <= 0 {
		return errors.New("--max-message-bytes and --max-request-bytes must be positive")
	}
	if c.maxInflightBytes < c.maxRequestBytes {
		return fmt.Errorf("--max-inflight-bytes %d is below --max-request-bytes %d: a largest request could never be read", int64(c.maxInflightBytes), int64(c.maxRequestBytes))
	}
	if c.stamp == "" {
		return errors.New("--stamp must not be empty")
	}
	return nil
}

// validateShared checks the settings serve and doctor share (registerShared): the role, the
// security flags and the peer's.
func (c *serveConfig) validateShared() error {
	if err := validRole(c.role); err != nil {
		return err
	}
	if err := c.security.validate(); err != nil {
		return err
	}
	if c.reservePriority > message.MaxPriority {
		return fmt.Errorf("--reserve-priority %d: priorities are 0 (highest) to %d", c.reservePriority, message.MaxPriority)
	}
	if c.spoolReserve.bytes > 0 && c.spoolMaxBytes > 0 && c.spoolReserve.bytes >= int64(c.spoolMaxBytes) {
		return fmt.Errorf("--spool-reserve %d leaves nothing of --spool-max-bytes %d to priorities below --reserve-priority", c.spoolReserve.bytes, c.spoolMaxBytes)
	}
	if c.peerURL == "" && (c.peerAPIKey != "" || c.peerCAFile != "") {
		return errors.New("--peer-api-key and --peer-ca-file need --peer-url")
	}
	if c.peerURL != "" && !isHTTPURL(c.peerURL) {
		return fmt.Errorf("--peer-url %q: want an http or https base URL", c.peerURL)
	}
	return nil
}

// validRole checks --role.
func validRole(role string) error {
	switch role {
	case "all", "api", "forwarder":
		return nil
	}
	return fmt.Errorf("--role %q: want all, api or forwarder", role)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: readableDuration})), nil
}

// maxHeaderBytes bounds a request's headers (431 with a problem body past it).
const maxHeaderBytes = 64 << 10

// readableDuration writes durations as Go writes them ("6s", "1m30s"), not as the JSON
// handler's nanoseconds: a log is read by people first.
func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// serve runs the stamp's roles until ctx ends (SIGTERM or SIGINT), then shuts down within the grace.
func serve(ctx context.Context, c serveConfig, stdout, stderr io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	log, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	// stopBy is when the process must be done closing: the signal's time plus the grace (less a
	// margin for the exit itself). Until a signal it is far off: a failed start closes at leisure.
	// Written by the signal actor, read after g.Run returned (which waits for every actor).
	stopBy := time.Now().Add(time.Hour)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sp, err := spool.Open(c.spoolDir, spool.Options{
		Logger:        log,
		Registerer:    reg,
		Instance:      instanceName(),
		MaxBytes:      int64(c.spoolMaxBytes),
		Lease:         c.spoolLease,
		SkewAllowance: c.spoolSkew,
		MinFreeBytes:  int64(c.spoolMinFreeBytes),
		Role:          spoolRole(c.role),

		ReserveBytes: c.spoolReserve.bytes, ReservePercent: c.spoolReserve.percent, ReservePriority: c.reservePriority,

		WriterLease:     c.spoolWriterLease,
		SealAfter:       c.spoolSealAfter,
		MaxSegmentBytes: int(c.spoolSegmentBytes),
	})
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer func() {
		if err := sp.Close(); err != nil {
			log.Error("close spool", "err", err)
		}
	}()

	runAPI, runForwarder := c.role != "forwarder", c.role != "api"
	var fwd *forward.Forwarder
	var limiter sink.EventLimiter // the sink, when it tells its largest event (kafka)
	var checkSink func()          // checks the sink once serve is up (role forwarder or all)
	delivery := "not here (role api: a forwarder replica delivers)"
	if runForwarder {
		snk, where, err := c.sinks.build(ctx, c.stamp, log, reg)
		if err != nil {
			return err
		}
		defer func() {
			// Claims are released by now; a client library that lingers over its connections
			// (franz-go waits on a broker that never answers) must not push the exit past the grace.
			if err := closeWithin(snk, time.Until(stopBy)); errors.Is(err, errStillClosing) {
				log.Warn("close sink: still closing at the end of the shutdown grace; exiting")
			} else if err != nil {
				log.Error("close sink", "err", err)
			}
		}()
		fwd, err = forward.New(forward.Config{
			Spool: sp, Sink: snk, SinkName: c.sinks.kind, Concurrency: c.forwardConc, RetryMaxDelay: c.retryMaxDelay,
			ShutdownGrace: max(c.shutdownGrace-3*time.Second, c.shutdownGrace/2),
			// Reap at least twice a lease, so a dead forwarder's claims return about one lease
			// (plus the skew allowance) after it died, and three times a writer lease
			// (and a killed API's open segment is recovered about a writer lease after it died).
			ReapInterval: min(forward.DefaultReapInterval, c.spoolLease/2, c.spoolWriterLease/3),
			Logger:       log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		delivery = where
		checkSink = func() { checkSinkAtStart(ctx, snk, where, fwd, log) }
		limiter, _ = snk.(sink.EventLimiter)
	} else if c.sinks.kind == "kafka" {
		// An API alone still asks the brokers for the topic's limit (it never sends): only then
		// can it refuse, before its 2xx, what the forwarders would dead-letter.
		// A configuration the forwarders would refuse does not stop the API: it keeps
		// --max-event-bytes and says why.
		if snk, _, err := c.sinks.build(ctx, c.stamp, log, nil); err != nil {
			log.Warn("cannot ask the sink for its event limit: the API refuses events over --max-event-bytes",
				"max_event_bytes", int(c.maxEventBytes), "err", err)
		} else {
			defer func() { _ = closeWithin(snk, time.Until(stopBy)) }()
			limiter, _ = snk.(sink.EventLimiter)
		}
	}
	sec, err := c.security.build(log, reg)
	if err != nil {
		return err
	}
	rc := httpapi.RouterConfig{Guard: sec.guard, Logger: log, Registerer: reg, MaxHeaderBytes: maxHeaderBytes}
	if !runAPI {
		rc.NotFoundHint = "this instance runs the forwarder role only; send messages to the API"
	}
	router, err := httpapi.NewRouter(rc)
	if err != nil {
		return err
	}
	var api *ingest.Server
	drain := &httpapi.Drain{} // readiness turns 503 on SIGTERM, on every surface at once
	opsCfg := ops.Config{
		Drain: drain,
		Spool: sp, Stamp: c.stamp, Role: c.role, Version: version,
		DeadLetters: sp, PeerURL: c.peerURL, PeerAPIKey: c.peerAPIKey, Console: web.Handler(),
		Gatherer: reg, Registerer: reg, Logger: log,
	}
	if runAPI {
		api, err = ingest.New(ingest.Config{
			Spool: sp, Stamp: c.stamp, Guard: sec.guard, Drain: drain,
			MaxMessageBytes: int(c.maxMessageBytes), MaxRequestBytes: int64(c.maxRequestBytes),
			MaxInflightBytes: int64(c.maxInflightBytes),
			MaxEventBytes:    int(c.maxEventBytes), EventBody: sink.BodyMode(c.sinks.body),
			DefaultPriority: &c.defaultPriority, MessageTTL: c.messageTTL,
			RateLimit: c.security.rateLimit, RateBurst: c.security.rateBurst, CORSOrigins: c.security.corsOrigins,
			Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		if err := router.Handle(api.Routes()...); err != nil {
			return err
		}
		opsCfg.API = api
	}
	var limits *eventLimitWatch
	if api != nil && limiter != nil {
		limits = newEventLimitWatch(limiter, int(c.maxEventBytes), api.SetMaxEventBytes, log)
		limits.start(ctx) // bounded: an unreachable broker delays the start by eventLimitStartWait at most
	}
	if fwd != nil {
		opsCfg.Forwarder = fwd
	}
	if c.peerCAFile != "" {
		tc, err := tlsConfig("--peer-ca-file", c.peerCAFile)
		if err != nil {
			return err
		}
		opsCfg.PeerClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	opsSrv, err := ops.New(opsCfg)
	if err != nil {
		return err
	}
	if err := router.Handle(opsSrv.Routes()...); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.listen, err)
	}
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: c.security.readHeaderTimeout,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		// Past this net/http answers 431 itself, in plain text; the router answers a problem
		// body from maxHeaderBytes up to it.
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	scheme := "http"
	if sec.tls != nil {
		srv.TLSConfig = sec.tls.TLSConfig()
		ln, scheme = tls.NewListener(ln, srv.TLSConfig), "https"
	}
	absSpool, _ := filepath.Abs(c.spoolDir)
	fmt.Fprintf(stdout, "bridgehead %s serving role %s as stamp %q\n", version, c.role, c.stamp)
	fmt.Fprintf(stdout, "  listening on   %s://%s\n", scheme, ln.Addr())
	fmt.Fprintf(stdout, "  console        %s://%s/\n", scheme, ln.Addr())
	fmt.Fprintf(stdout, "  spool          %s\n", absSpool)
	fmt.Fprintf(stdout, "  delivering to  %s\n", delivery)

	if checkSink != nil {
		go checkSink() // beside the start, never delaying it
	}

	var g oklogrun.Group
	{ // the HTTP API
		// The grace is one budget for the whole process: the API drains in the background while
		// the forwarder finishes its sends (oklog/run calls the interrupts one after the other,
		// so a blocking Shutdown here would start the forwarder's grace only after the API's).
		drained := make(chan struct{})
		g.Add(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			<-drained
			return nil
		}, func(error) {
			// Readiness turns 503 at once; in-flight requests finish within the grace.
			drain.Start()
			go func() {
				defer close(drained)
				sctx, cancel := context.WithTimeout(context.Background(), c.shutdownGrace-time.Second)
				defer cancel()
				if err := srv.Shutdown(sctx); err != nil {
					log.Warn("shutdown: requests still running at the end of the grace were cut", "err", err)
					_ = srv.Close()
				}
			}()
		})
	}
	if sec.tls != nil { // the TLS pair and client CAs: reloaded when the files change
		tctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return sec.tls.Run(tctx) }, func(error) { cancel() })
	}
	if sec.watcher != nil { // the principals file: reloaded when it changes
		wctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return sec.watcher.Run(wctx) }, func(error) { cancel() })
	}
	if limits != nil { // the sink's event limit: asked again until known, then now and then
		lctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return limits.Run(lctx) }, func(error) { cancel() })
	}
	if fwd != nil { // the forwarder: on interrupt it stops claiming, finishes or releases its claims
		fctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return fwd.Run(fctx) }, func(error) { cancel() })
	}
	{ // SIGTERM / SIGINT (main cancels ctx on either)
		done := make(chan struct{})
		g.Add(func() error {
			select {
			case <-ctx.Done():
				stopBy = time.Now().Add(c.shutdownGrace - 250*time.Millisecond)
				log.Info("signal received: draining", "grace", c.shutdownGrace)
				return nil
			case <-done:
				return nil
			}
		}, func(error) { close(done) })
	}
	err = g.Run()
	log.Info("stopped")
	return err
}

// checkEnv warns about BRIDGEHEAD_* variables serve does not know.
func checkEnv(unknown []string, stderr io.Writer) {
	for _, name := range unknown {
		fmt.Fprintf(stderr, "bridgehead serve: warning: %s is set but is not a serve setting; ignored\n", name)
	}
}

// instanceName names this process in the spool's heartbeats: the pod name in Kubernetes.
func instanceName() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}

// spoolRole is the part of the spool a --role runs: an API writes, a forwarder only consumes
// (no committer, no open segment).
func spoolRole(role string) spool.Role {
	switch role {
	case "api":
		return spool.RoleWriter
	case "forwarder":
		return spool.RoleConsumer
	}
	return spool.RoleAll
}
