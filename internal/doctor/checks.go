package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/ops"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
)

// runbook is where each check's failure is explained (docs/runbook.md).
const runbook = "docs/runbook.md#doctor-"

func spoolOptions(cfg Config) spool.Options {
	return spool.Options{FS: cfg.FS, Now: cfg.Now, SkewAllowance: cfg.SkewAllowance,
		MaxBytes: cfg.MaxBytes, MinFreeBytes: cfg.MinFreeBytes}
}

// SpoolMount runs the spool's startup probes (spool.Probe: VERSION, O_EXCL create, same-mount
// rename, directory fsync, clock skew against the file server). It warns when the skew is past
// half the allowance: the next heartbeat that measures it past the allowance stops appends.
func SpoolMount(cfg Config) Result {
	cfg.setDefaults()
	r := Result{Check: "spool mount"}
	opts := spoolOptions(cfg)
	res, err := spool.Probe(cfg.SpoolDir, opts)
	allowance := cfg.SkewAllowance
	if allowance == 0 {
		allowance = spool.DefaultSkewAllowance
	}
	skew := fmt.Sprintf("clock skew %v (allowance %v)", res.Skew.Round(time.Millisecond), allowance)
	switch {
	case errors.Is(err, spool.ErrNoSpool), errors.Is(err, os.ErrNotExist):
		r.Status, r.Reason = Fail, err.Error()
		r.Action = "check --spool-dir (BRIDGEHEAD_SPOOL_DIR) and that the share is mounted in this pod; " + runbook + "spool-mount"
	case errors.Is(err, syscall.EXDEV):
		r.Status, r.Reason = Fail, err.Error()
		r.Action = "mount the spool root once (one volume, no subPath per directory); " + runbook + "spool-mount"
	case err != nil && res.Skew > allowance:
		r.Status, r.Reason = Fail, err.Error()
		r.Action = "fix NTP on this node and on the file server (chronyc tracking); appends are refused meanwhile; " + runbook + "spool-mount"
	case err != nil:
		r.Status, r.Reason = Fail, err.Error()
		r.Action = "the share cannot keep the spool's contract: check the mount options (docs/spool.md) and the file server; " + runbook + "spool-mount"
	case res.Skew > allowance/2:
		r.Status, r.Reason = Warn, "probes pass, but "+skew+" is past half the allowance"
		r.Action = "check NTP on this node and the file server before appends are refused; " + runbook + "spool-mount"
	default:
		kind := "local file system"
		if res.NetworkFS {
			kind = "network file system (NFS/SMB)"
		}
		r.Status, r.Reason = Pass, "O_EXCL create, same-mount rename and directory fsync work on a "+kind+"; "+skew
	}
	return r
}

// SpoolUsage reads the spool (read-only) and returns three results: capacity (warn above
// CapacityWarn of it; fail when full or below the free-space floor), backlog (warn when the
// oldest undelivered message is older than MaxAge) and dead letters (warn when any, or any
// quarantined segment).
func SpoolUsage(cfg Config) []Result {
	cfg.setDefaults()
	u, err := spool.ReadUsage(cfg.SpoolDir, spoolOptions(cfg))
	if err != nil {
		why := "cannot read the spool: " + err.Error()
		act := "fix the spool mount first (see the spool mount check); " + runbook + "spool-mount"
		return []Result{
			{Check: "spool capacity", Status: Fail, Reason: why, Action: act},
			{Check: "spool backlog", Status: Skip, Reason: "spool unreadable"},
			{Check: "dead letters", Status: Skip, Reason: "spool unreadable"},
		}
	}
	return []Result{capacity(cfg, u), backlog(cfg, u), deadLetters(u)}
}

func capacity(cfg Config, u spool.Usage) Result {
	r := Result{Check: "spool capacity"}
	free := "free space unknown"
	if u.FreeBytes >= 0 {
		free = fmt.Sprintf("%s free on the file system", bytesOf(u.FreeBytes))
	}
	switch {
	case u.FreeBytes >= 0 && cfg.MinFreeBytes > 0 && u.FreeBytes < cfg.MinFreeBytes:
		r.Status = Fail
		r.Reason = fmt.Sprintf("%s, below the floor of %s (--spool-min-free-bytes): the API answers 503", free, bytesOf(cfg.MinFreeBytes))
		r.Action = "free or grow the share, or deliver the backlog (is the sink up?); never delete spool files; " + runbook + "spool-capacity"
	case u.CapacityBytes < 0:
		r.Status, r.Reason = Warn, fmt.Sprintf("uses %s; capacity unknown (%s)", bytesOf(u.UsedBytes), free)
		r.Action = "check that statfs works on the share; " + runbook + "spool-capacity"
	case u.UsedBytes >= u.CapacityBytes:
		r.Status = Fail
		r.Reason = fmt.Sprintf("full: uses %s of its %s capacity; the API answers 503", bytesOf(u.UsedBytes), bytesOf(u.CapacityBytes))
		r.Action = "deliver the backlog (is the sink up?), or raise --spool-max-bytes / grow the share; never delete spool files; " + runbook + "spool-capacity"
	case float64(u.UsedBytes) > cfg.CapacityWarn*float64(u.CapacityBytes):
		r.Status = Warn
		r.Reason = fmt.Sprintf("uses %s of its %s capacity (%.0f %%, above %.0f %%); %s", bytesOf(u.UsedBytes),
			bytesOf(u.CapacityBytes), 100*float64(u.UsedBytes)/float64(u.CapacityBytes), 100*cfg.CapacityWarn, free)
		r.Action = "find out why delivery lags (sink, breaker, dead letters) before the API refuses; " + runbook + "spool-capacity"
	default:
		pct := 0.0
		if u.CapacityBytes > 0 {
			pct = 100 * float64(u.UsedBytes) / float64(u.CapacityBytes)
		}
		r.Status = Pass
		r.Reason = fmt.Sprintf("uses %s of its %s capacity (%.0f %%); %s", bytesOf(u.UsedBytes), bytesOf(u.CapacityBytes), pct, free)
	}
	return r
}

func backlog(cfg Config, u spool.Usage) Result {
	r := Result{Check: "spool backlog"}
	age := time.Duration(u.Stats.OldestAgeSeconds * float64(time.Second)).Round(time.Second)
	n := u.Stats.Undelivered()
	switch {
	case n == 0:
		r.Status, r.Reason = Pass, "nothing waiting"
	case age > cfg.MaxAge:
		r.Status = Warn
		r.Reason = fmt.Sprintf("%d segment(s) undelivered; the oldest is %v old (more than %v)", n, age, cfg.MaxAge)
		r.Action = "check the sink and the breaker (bridgehead doctor's sink check, /v1/status); " + runbook + "spool-backlog"
	default:
		r.Status, r.Reason = Pass, fmt.Sprintf("%d segment(s) undelivered; the oldest is %v old", n, age)
	}
	return r
}

func deadLetters(u spool.Usage) Result {
	r := Result{Check: "dead letters"}
	d, q := u.Stats.Dead, u.Stats.Quarantine
	switch {
	case d.Segments == 0 && q.Segments == 0:
		r.Status, r.Reason = Pass, "none"
	default:
		r.Status = Warn
		r.Reason = fmt.Sprintf("%d message(s) in %d dead segment(s), %d quarantined segment(s)", d.Messages, d.Segments, q.Segments)
		r.Action = "read the reasons (bridgehead spool ls --state dead), fix the cause, then requeue; never delete them by hand; " + runbook + "dead-letters"
	}
	return r
}

// Sink checks the sink: connect and fetch the topic's or hub's metadata, never send.
func Sink(ctx context.Context, cfg Config) Result {
	cfg.setDefaults()
	r := Result{Check: "sink"}
	if cfg.Sink == nil {
		r.Status, r.Reason = Skip, cfg.SinkSkip
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := cfg.Sink(ctx); err != nil {
		r.Status, r.Reason = Fail, fmt.Sprintf("%s: %v", cfg.SinkName, err)
		r.Action = "fix what the reason names (address, network policy or firewall, credentials, topic or hub); messages wait in the spool meanwhile; " + runbook + "sink"
		return r
	}
	r.Status, r.Reason = Pass, fmt.Sprintf("%s answered in %v (metadata only, nothing sent)", cfg.SinkName, time.Since(start).Round(time.Millisecond))
	return r
}

// TLS loads the serving certificate, key and client CA bundle as serve does (tlsconf), checks the
// chain against TLSCAFile when set, and the expiry: fail when expired or not yet valid, warn
// within ExpiryWarn.
func TLS(cfg Config) Result {
	cfg.setDefaults()
	r := Result{Check: "tls"}
	if cfg.TLSCertFile == "" {
		r.Status, r.Reason = Skip, "no --tls-cert-file: serving plain HTTP"
		return r
	}
	act := "replace the files named (cert-manager: kubectl describe certificate); serve reloads them on change; " + runbook + "tls"
	rl, err := tlsconf.New(tlsconf.Options{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
		ClientCAFile: cfg.TLSClientCAFile, ClientAuth: cfg.TLSClientAuth})
	if err != nil {
		r.Status, r.Reason, r.Action = Fail, err.Error(), act
		return r
	}
	leaf := rl.Certificate()
	now := cfg.Now()
	left := leaf.NotAfter.Sub(now)
	ids := strings.Join(tlsconf.Identities(leaf), ", ")
	if cfg.TLSCAFile != "" {
		if err := verifyChain(cfg.TLSCertFile, cfg.TLSCAFile, now); err != nil {
			r.Status, r.Reason, r.Action = Fail, err.Error(), act
			return r
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		r.Status = Fail
		r.Reason = fmt.Sprintf("certificate for %s expired on %s", ids, leaf.NotAfter.UTC().Format(time.RFC3339))
		r.Action = act
	case now.Before(leaf.NotBefore):
		r.Status = Fail
		r.Reason = fmt.Sprintf("certificate for %s is not valid before %s (check this node's clock)", ids, leaf.NotBefore.UTC().Format(time.RFC3339))
		r.Action = act
	case left < cfg.ExpiryWarn:
		r.Status = Warn
		r.Reason = fmt.Sprintf("certificate for %s expires in %s (%s)", ids, days(left), leaf.NotAfter.UTC().Format(time.RFC3339))
		r.Action = "renew it now; " + runbook + "tls"
	default:
		r.Status = Pass
		r.Reason = fmt.Sprintf("certificate for %s valid for %s", ids, days(left))
		if cfg.TLSCAFile != "" {
			r.Reason += ", chains to " + cfg.TLSCAFile
		}
	}
	return r
}

// verifyChain checks that the certificate chain in certFile (leaf first, intermediates after)
// chains to a CA in caFile at now.
func verifyChain(certFile, caFile string, now time.Time) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--tls-ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("--tls-ca-file: no PEM certificates in %s", caFile)
	}
	chainPEM, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("--tls-cert-file: %w", err)
	}
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("--tls-cert-file %s: %w", certFile, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return fmt.Errorf("--tls-cert-file: no PEM certificates in %s", certFile)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("certificate in %s does not chain to %s: %w", certFile, caFile, err)
	}
	return nil
}

// Principals loads the principals file as serve does (auth.Load).
func Principals(cfg Config) Result {
	r := Result{Check: "principals"}
	if cfg.AuthFile == "" {
		r.Status, r.Reason = Skip, "no --auth-file: authentication off"
		return r
	}
	ps, err := auth.Load(cfg.AuthFile)
	if err != nil {
		r.Status, r.Reason = Fail, err.Error()
		r.Action = "fix the file at the line named (docs/security.md); a running stamp keeps the principals it has; " + runbook + "principals"
		return r
	}
	r.Status, r.Reason = Pass, fmt.Sprintf("%s: %d principal(s)", cfg.AuthFile, ps.Len())
	return r
}

// Peer asks the other stamp's /v1/status: fail when it cannot be reached or answers other than
// 200 with a status, warn when it is not ready or its breaker is open.
func Peer(ctx context.Context, cfg Config) Result {
	cfg.setDefaults()
	r := Result{Check: "peer"}
	if cfg.PeerURL == "" {
		r.Status, r.Reason = Skip, "no --peer-url"
		return r
	}
	act := "check the peer stamp (its own bridgehead doctor), the network between the stamps and --peer-url / --peer-api-key; " + runbook + "peer"
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	url := strings.TrimSuffix(cfg.PeerURL, "/") + "/v1/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.Status, r.Reason, r.Action = Fail, fmt.Sprintf("--peer-url %q: %v", cfg.PeerURL, err), act
		return r
	}
	if cfg.PeerAPIKey != "" {
		req.Header.Set("X-Api-Key", cfg.PeerAPIKey)
	}
	resp, err := cfg.PeerClient.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the method and URL
		}
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			act = "set --peer-ca-file (BRIDGEHEAD_PEER_CA_FILE) to the CA that signed the peer's certificate; " + runbook + "peer"
		}
		r.Status, r.Reason, r.Action = Fail, fmt.Sprintf("GET %s: %v", url, sink.Cause(err)), act
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		r.Status, r.Reason, r.Action = Fail, fmt.Sprintf("GET %s: reading the answer: %v", url, err), act
		return r
	}
	var st ops.Status // what a stamp answers at /v1/status
	if resp.StatusCode != http.StatusOK {
		r.Status, r.Reason, r.Action = Fail, fmt.Sprintf("GET %s: %s: %s", url, resp.Status, problemDetail(body)), act
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			r.Action = "the peer runs --metrics-auth: set --peer-api-key (BRIDGEHEAD_PEER_API_KEY) to a key its principals file holds; " + runbook + "peer"
		}
		return r
	}
	if err := json.Unmarshal(body, &st); err != nil {
		r.Status, r.Reason, r.Action = Fail, fmt.Sprintf("GET %s: not a stamp's status: %v", url, err), act
		return r
	}
	switch {
	case !st.Ready:
		r.Status, r.Reason, r.Action = Warn, fmt.Sprintf("stamp %q answers but is not ready: %s", st.Stamp, st.NotReady), act
	case st.Forward != nil && st.Forward.Breaker == "open":
		r.Status, r.Reason, r.Action = Warn, fmt.Sprintf("stamp %q is ready, but its breaker is open: %s", st.Stamp, st.Forward.LastError), act
	default:
		r.Status, r.Reason = Pass, fmt.Sprintf("stamp %q at %s is ready", st.Stamp, cfg.PeerURL)
	}
	return r
}

// problemDetail returns the detail of a problem+json body (docs/api.md), or the start of any
// other body.
func problemDetail(body []byte) string {
	var p httpapi.Problem
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail != "" {
			return p.Detail
		}
		return p.Title
	}
	return string(bytes.TrimSpace(body[:min(len(body), 200)]))
}

// bytesOf prints n in binary units.
func bytesOf(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// days prints d in days (or hours under two days).
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%d days", int(math.Round(d.Hours()/24)))
}
