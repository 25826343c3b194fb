package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs"
	"github.com/bridgehead-dev/bridgehead/internal/sink/file"
	"github.com/bridgehead-dev/bridgehead/internal/sink/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// sinkFlags select and configure the forwarder's destination.
type sinkFlags struct {
	kind     string
	body     string
	filePath string

	kafkaBrokers, kafkaTopic                string
	kafkaTLS                                bool
	kafkaCAFile                             string
	kafkaSASLMechanism, kafkaSASLUser       string
	kafkaSASLPassword                       string
	ehConnectionString, ehName, ehNamespace string
	ehTransport                             string
}

// secretAnnotation marks flags whose value may also come from a file named by
// BRIDGEHEAD_<FLAG>_FILE (Kubernetes secrets, the Key Vault CSI driver), and that are never printed.
const secretAnnotation = "bridgehead-secret"

func (f *sinkFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "sink", "file", "where the forwarder delivers: file, kafka or eventhubs")
	fs.StringVar(&f.body, "body", string(sink.BodyEnvelope), "event body: envelope (JSON with correlationId, senderId, value, receivedAt, stamp, properties) or raw (the value alone)")
	fs.StringVar(&f.filePath, "file-path", "./data/delivered.ndjson", "file sink: the NDJSON file delivered messages are appended to (fsync'd per batch)")
	fs.StringVar(&f.kafkaBrokers, "kafka-brokers", "", "kafka sink: seed brokers, host:port, comma-separated")
	fs.StringVar(&f.kafkaTopic, "kafka-topic", "", "kafka sink: the topic")
	fs.BoolVar(&f.kafkaTLS, "kafka-tls", false, "kafka sink: connect with TLS")
	fs.StringVar(&f.kafkaCAFile, "kafka-ca-file", "", "kafka sink: PEM file of CA certificates to trust (default: the system's)")
	fs.StringVar(&f.kafkaSASLMechanism, "kafka-sasl-mechanism", "", "kafka sink: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&f.kafkaSASLUser, "kafka-sasl-user", "", "kafka sink: SASL user")
	fs.StringVar(&f.kafkaSASLPassword, "kafka-sasl-password", "", "kafka sink: SASL password (or BRIDGEHEAD_KAFKA_SASL_PASSWORD_FILE)")
	fs.StringVar(&f.ehConnectionString, "eventhubs-connection-string", "", "eventhubs sink: the namespace's or hub's connection string (or BRIDGEHEAD_EVENTHUBS_CONNECTION_STRING_FILE)")
	fs.StringVar(&f.ehName, "eventhubs-name", "", "eventhubs sink: the event hub (default: EntityPath of the connection string)")
	fs.StringVar(&f.ehNamespace, "eventhubs-namespace", "", "eventhubs sink: namespace FQDN for Entra ID (workload identity) when there is no connection string")
	fs.StringVar(&f.ehTransport, "eventhubs-transport", eventhubs.TransportAMQP, "eventhubs sink: amqp (TCP 5671), websockets (AMQP over WebSockets on 443, through HTTPS_PROXY if set: for sites that allow only HTTPS out) or kafka (the namespace's Kafka endpoint, port 9093)")
	for _, name := range []string{"kafka-sasl-password", "eventhubs-connection-string"} {
		_ = fs.SetAnnotation(name, secretAnnotation, []string{"true"})
	}
}

// build makes the sink, and says in one line where it delivers (never a secret). reg receives
// the sink's own metrics (the Kafka producer's throttles); nil means none.
func (f *sinkFlags) build(ctx context.Context, stamp string, log *slog.Logger, reg prometheus.Registerer) (sink.Sink, string, error) {
	body := sink.BodyMode(f.body)
	if body != sink.BodyEnvelope && body != sink.BodyRaw {
		return nil, "", fmt.Errorf("--body %q: want envelope or raw", f.body)
	}
	switch f.kind {
	case "file":
		s, err := file.New(file.Config{Path: f.filePath, Body: body, Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("--sink file: %w", err)
		}
		abs, _ := filepath.Abs(f.filePath)
		return s, "file " + abs, nil
	case "kafka":
		cfg := kafka.Config{
			Brokers: splitList(f.kafkaBrokers), Topic: f.kafkaTopic, Body: body, Stamp: stamp, Logger: log, Registerer: reg,
			SASL: kafka.SASL{Mechanism: strings.ToUpper(f.kafkaSASLMechanism), User: f.kafkaSASLUser, Password: f.kafkaSASLPassword},
		}
		if f.kafkaTLS || f.kafkaCAFile != "" {
			tc, err := tlsConfig("--kafka-ca-file", f.kafkaCAFile)
			if err != nil {
				return nil, "", err
			}
			cfg.TLS = tc
		}
		s, err := kafka.New(cfg)
		if err != nil {
			return nil, "", fmt.Errorf("--sink kafka (set --kafka-brokers and --kafka-topic): %w", err)
		}
		return s, fmt.Sprintf("kafka topic %s at %s", cfg.Topic, strings.Join(cfg.Brokers, ",")), nil
	case "eventhubs":
		s, err := eventhubs.New(ctx, eventhubs.Config{
			ConnectionString: f.ehConnectionString, Namespace: f.ehNamespace, EventHub: f.ehName,
			Transport: f.ehTransport, BodyMode: body, Stamp: stamp, Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, "", fmt.Errorf("--sink eventhubs: %w", err)
		}
		where := f.ehNamespace
		if cs, err := eventhubs.ParseConnectionString(f.ehConnectionString); err == nil {
			where = cs.Namespace()
		}
		hub := f.ehName
		if hub == "" {
			hub = "(EntityPath)"
		}
		return s, fmt.Sprintf("event hub %s in %s over %s", hub, where, f.ehTransport), nil
	}
	return nil, "", fmt.Errorf("--sink %q: want file, kafka or eventhubs", f.kind)
}

// sinkCheckTimeout bounds the check of the sink at start (and doctor's).
const sinkCheckTimeout = 15 * time.Second

// checkSinkAtStart checks snk (connect and fetch metadata, never send; sink.Checker) within
// sinkCheckTimeout, logs what failed, and reports the outcome to fwd, whose status (/v1/status,
// the console) then shows it before any traffic. It runs beside the start, never delaying it.
func checkSinkAtStart(ctx context.Context, snk sink.Sink, where string, fwd *forward.Forwarder, log *slog.Logger) {
	c, ok := snk.(sink.Checker)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sinkCheckTimeout)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down: the outcome says nothing about the sink
	}
	if err != nil {
		log.Error("sink check at start failed: nothing can be delivered until this is fixed; messages are kept in the spool",
			"delivering_to", where, "err", err)
	} else {
		log.Info("sink check at start passed", "delivering_to", where, "took", time.Since(start).Round(time.Millisecond).String())
	}
	fwd.ReportCheck(err)
}

// splitList splits a comma-separated flag value, dropping spaces and empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isHTTPURL reports whether s is an http or https URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// tlsConfig trusts the system's roots plus, if caFile is set, the certificates in it; errors
// name flag.
func tlsConfig(flag, caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates in %s", flag, caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// errStillClosing is closeWithin's answer when the time ran out first.
var errStillClosing = errors.New("still closing")

// closeWithin closes c, waiting at most d: a sink client that lingers over connections to a
// destination that never answers must not hold up the process's exit or an answer. Close then
// finishes (or not) in the background.
func closeWithin(c io.Closer, d time.Duration) error {
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(d):
		return errStillClosing
	}
}
