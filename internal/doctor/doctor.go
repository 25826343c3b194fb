// Package doctor provides the checks behind `bridgehead doctor`: one function per thing that can
// stop a stamp (the spool mount and its capacity, the backlog, dead letters, the sink, the TLS
// files, the principals file, the peer stamp), each returning pass, warn, fail or skip with the
// reason and what to do. Checks only read, except the spool probe's own temporary files (removed)
// and the sink check's connection (never a send), so doctor is safe to run beside a live stamp.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// Status is a check's verdict.
type Status string

// Verdicts, from good to bad; Skip means the check does not apply to this configuration.
const (
	Pass Status = "pass"
	Skip Status = "skip"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's outcome.
type Result struct {
	// Check names what was checked ("spool mount", "sink", …).
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Reason says what was found, in the words of the failing call where there is one.
	Reason string `json:"reason"`
	// Action says what to do about it (empty on pass and skip), with the runbook section.
	Action string `json:"action,omitempty"`
}

// Defaults for Config fields left zero.
const (
	DefaultCapacityWarn = 0.8
	DefaultMaxAge       = 5 * time.Minute
	DefaultExpiryWarn   = 14 * 24 * time.Hour
	DefaultTimeout      = 15 * time.Second
)

// Config says what to check; it mirrors `serve`'s settings. Empty fields skip their check where
// the check needs them (no TLS files: no TLS check).
type Config struct {
	// SpoolDir is the spool's root. Required.
	SpoolDir string
	// FS is the spool's file system; nil means the real one.
	FS fsys.FS
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SkewAllowance, MaxBytes and MinFreeBytes are serve's --spool-skew-allowance,
	// --spool-max-bytes and --spool-min-free-bytes.
	SkewAllowance time.Duration
	MaxBytes      int64
	MinFreeBytes  int64
	// CapacityWarn is the share of the capacity above which the capacity check warns; default 0.8.
	CapacityWarn float64
	// MaxAge is the age of the oldest undelivered message past which the backlog check warns;
	// default 5 minutes.
	MaxAge time.Duration

	// Sink checks the sink (sink.Checker: connect and fetch metadata, never send); nil skips the
	// sink check with SinkSkip as the reason. SinkName says where it delivers.
	Sink     func(ctx context.Context) error
	SinkName string
	SinkSkip string

	// TLSCertFile, TLSKeyFile, TLSClientCAFile and TLSClientAuth are serve's TLS settings;
	// TLSCAFile, if set, is the CA bundle clients trust, which the certificate must chain to.
	TLSCertFile, TLSKeyFile, TLSClientCAFile, TLSClientAuth string
	TLSCAFile                                               string
	// ExpiryWarn is how long before its expiry a certificate is warned about; default 14 days.
	ExpiryWarn time.Duration

	// AuthFile is the principals file; empty skips the check.
	AuthFile string

	// PeerURL is the other stamp's base URL; empty skips the peer check. PeerAPIKey is sent as
	// X-Api-Key; PeerClient defaults to a client with the check's timeout.
	PeerURL    string
	PeerAPIKey string
	PeerClient *http.Client

	// Timeout bounds each network check; default 15 s.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.FS == nil {
		c.FS = fsys.OS{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CapacityWarn == 0 {
		c.CapacityWarn = DefaultCapacityWarn
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.ExpiryWarn == 0 {
		c.ExpiryWarn = DefaultExpiryWarn
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PeerClient == nil {
		c.PeerClient = &http.Client{}
	}
}

// Run runs every check in order and returns their results; it never fails as a whole.
func Run(ctx context.Context, cfg Config) []Result {
	cfg.setDefaults()
	out := []Result{SpoolMount(cfg)}
	out = append(out, SpoolUsage(cfg)...)
	return append(out, Sink(ctx, cfg), TLS(cfg), Principals(cfg), Peer(ctx, cfg))
}

// Worst returns the worst status of results (Pass for none).
func Worst(results []Result) Status {
	rank := map[Status]int{Pass: 0, Skip: 0, Warn: 1, Fail: 2}
	worst := Pass
	for _, r := range results {
		if rank[r.Status] > rank[worst] {
			worst = r.Status
		}
	}
	return worst
}

// WriteTable prints results as a table: check, status, reason, what to do.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tREASON\tWHAT TO DO")
	for _, r := range results {
		action := r.Action
		if action == "" {
			action = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Check, strings.ToUpper(string(r.Status)), oneLine(r.Reason), oneLine(action))
	}
	return tw.Flush()
}

// WriteJSON prints results as {"status": worst, "checks": [...]}.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Status Status   `json:"status"`
		Checks []Result `json:"checks"`
	}{Worst(results), results})
}

// oneLine keeps a table row on one line (and its tab stops intact).
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\t", " ").Replace(s)
}
