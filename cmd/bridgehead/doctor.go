package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/bridgehead-dev/bridgehead/internal/doctor"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/file"
)

// doctorFlags are doctor's own settings; everything else is serve's (registerShared).
type doctorFlags struct {
	asJSON    bool
	tlsCAFile string
	maxAge    time.Duration
	timeout   time.Duration
}

func newDoctorCmd() *cobra.Command {
	c := defaultServeConfig()
	var d doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a stamp: spool mount, capacity, backlog, dead letters, sink, TLS files, principals, peer",
		Long: `Check what a stamp needs and print a table: check, pass/warn/fail, the reason and what to do
(docs/runbook.md has a section per failure). It reads serve's flags and BRIDGEHEAD_* variables,
so inside a pod it checks that pod's configuration:

  kubectl exec deploy/bridgehead-forwarder -- bridgehead doctor
  kubectl exec deploy/bridgehead-api -- bridgehead doctor --role api

It only reads, except the spool probe's own temporary files (removed) and the sink check's
connection (metadata only, never a message). Exit status 1 when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDoctor(cmd.Context(), c, d, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	c.registerShared(f)
	f.BoolVar(&d.asJSON, "json", false, `print JSON: {"status": worst, "checks": [{check, status, reason, action}]}`)
	f.StringVar(&d.tlsCAFile, "tls-ca-file", "", "PEM CA bundle the clients trust: --tls-cert-file must chain to it (default: not checked)")
	f.DurationVar(&d.maxAge, "max-age", doctor.DefaultMaxAge, "warn when the oldest undelivered message is older than this")
	f.DurationVar(&d.timeout, "timeout", sinkCheckTimeout, "bound on each network check (sink, peer)")
	return cmd
}

// runDoctor runs the checks, prints them, and returns exitCode(1) when any failed.
func runDoctor(ctx context.Context, c serveConfig, d doctorFlags, stdout io.Writer) error {
	if d.timeout <= 0 || d.maxAge <= 0 {
		return errors.New("--timeout and --max-age must be positive")
	}
	cfg := doctor.Config{
		SpoolDir: c.spoolDir, SkewAllowance: c.spoolSkew,
		MaxBytes: int64(c.spoolMaxBytes), MinFreeBytes: int64(c.spoolMinFreeBytes), MaxAge: d.maxAge,
		TLSCertFile: c.security.tlsCertFile, TLSKeyFile: c.security.tlsKeyFile,
		TLSClientCAFile: c.security.tlsClientCAFile, TLSClientAuth: c.security.tlsClientAuth, TLSCAFile: d.tlsCAFile,
		AuthFile: c.security.authFile,
		PeerURL:  c.peerURL, PeerAPIKey: c.peerAPIKey,
		Timeout: d.timeout,
	}
	var results []doctor.Result
	if err := validRole(c.role); err != nil {
		return err
	}
	if err := c.validateShared(); err != nil {
		// serve would refuse to start (serve's own validation): say so first, and check
		// what can be checked.
		results = append(results, doctor.Result{Check: "configuration", Status: doctor.Fail, Reason: err.Error(),
			Action: "fix the flag or BRIDGEHEAD_* variable named (bridgehead serve --help); docs/runbook.md#doctor-configuration"})
	}
	closeSink := doctorSink(ctx, c, &cfg)
	defer closeSink()
	if c.peerCAFile != "" {
		tc, err := tlsConfig("--peer-ca-file", c.peerCAFile)
		if err != nil {
			results = append(results, doctor.Result{Check: "configuration", Status: doctor.Fail, Reason: err.Error(),
				Action: "fix --peer-ca-file (BRIDGEHEAD_PEER_CA_FILE); docs/runbook.md#doctor-configuration"})
		} else {
			cfg.PeerClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		}
	}
	results = append(results, doctor.Run(ctx, cfg)...)
	var err error
	if d.asJSON {
		err = doctor.WriteJSON(stdout, results)
	} else {
		err = doctor.WriteTable(stdout, results)
	}
	if err != nil {
		return err
	}
	if doctor.Worst(results) == doctor.Fail {
		return exitCode(1)
	}
	return nil
}

// doctorSink fills cfg's sink check from the sink flags, and returns what closes the sink. The
// file sink is checked without opening it (New would create the file); the others are built as
// serve builds them (which connects to nothing) and checked with sink.Checker.
func doctorSink(ctx context.Context, c serveConfig, cfg *doctor.Config) (closeSink func()) {
	closeSink = func() {}
	switch {
	case c.role == "api":
		cfg.SinkSkip = "role api: the forwarder replicas deliver (run doctor there)"
		return closeSink
	case c.sinks.kind == "file":
		cfg.SinkName = "file " + c.sinks.filePath
		cfg.Sink = func(ctx context.Context) error { return file.CheckPath(ctx, c.sinks.filePath) }
		return closeSink
	}
	cfg.SinkName = "--sink " + c.sinks.kind
	snk, where, err := c.sinks.build(ctx, "doctor", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		cfg.Sink = func(context.Context) error { return err }
		return closeSink
	}
	cfg.SinkName = where
	chk, ok := snk.(sink.Checker)
	if !ok {
		cfg.Sink, cfg.SinkSkip = nil, fmt.Sprintf("%s cannot be checked without sending", where)
	} else {
		cfg.Sink = chk.Check
	}
	return func() {
		// A client that lingers over an unreachable broker must not hold the answer up.
		_ = closeWithin(snk, 2*time.Second)
	}
}
