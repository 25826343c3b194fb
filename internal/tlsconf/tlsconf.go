// Package tlsconf provides the ingest server's TLS configuration: a certificate and key, and
// optionally a client CA bundle for mTLS, loaded from PEM files and reloaded while the server runs,
// so a rotated certificate (cert-manager, a Kubernetes secret volume) takes effect without a
// restart.
//
// Guarantees:
//   - TLS 1.2 is the minimum version, and TLS 1.2 handshakes use only ECDHE key exchange with
//     AES-GCM or ChaCha20-Poly1305 (TLS 1.3 suites are all AEAD and not configurable in Go).
//   - New refuses to start on a missing, malformed or mismatched file and names it.
//   - Certificate, key and client CA bundle are replaced together or not at all. A bad new set
//     (half written, key for another certificate, CA file without certificates) is logged at
//     Error once and the set in force stays; polling goes on, and the next version is loaded.
//   - A reload applies from the next handshake on; established connections are not touched. A
//     resumed TLS session is checked against the CA bundle in force, not the one it began under
//     (crypto/tls re-verifies resumed client chains against the handshake config's ClientCAs;
//     TestClientCARotation guards this).
//   - Logs and errors carry file names and the certificate's subject, serial and expiry, never
//     key material.
//   - With Options.Registerer, bridgehead_tls_certificate_expiry_timestamp_seconds is the NotAfter
//     of the serving certificate in force at each scrape, so it follows every reload.
//
// Identities lists the names a verified client certificate can be bound to in the principals
// file's certSubject field: the subject as x509 spells it ("CN=ops-console", "CN=x,O=y"), then
// "CN=<common name>" if that differs, then "DNS:<name>", "URI:<uri>" and "email:<address>" for
// each subject alternative name of those kinds.
package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/filewatch"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is the poll period Options.Interval defaults to (10 s). The kubelet refreshes a
// secret volume only every minute or so, so polling faster buys little.
const DefaultInterval = 10 * time.Second

// cipherSuites are the TLS 1.2 suites offered: forward secret, AEAD only.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Options configures a Reloader.
type Options struct {
	// CertFile is the PEM certificate chain, leaf first; KeyFile its PEM private key. Required.
	CertFile, KeyFile string
	// ClientCAFile is the PEM bundle of CAs client certificates must chain to. Required when
	// ClientAuth is request or require, refused when it is none.
	ClientCAFile string
	// ClientAuth is "none" (also ""): no client certificate asked for; "request": a presented
	// certificate must verify, none is fine; "require": a verified certificate is required.
	ClientAuth string
	// Interval is how often the files are polled; DefaultInterval when zero or less.
	Interval time.Duration
	// Logger receives reload events; nil discards them.
	Logger *slog.Logger
	// Registerer receives bridgehead_tls_certificate_expiry_timestamp_seconds; nil exports
	// nothing.
	Registerer prometheus.Registerer
}

// ExpiryMetric is the name of the gauge New registers: the NotAfter of the serving (leaf)
// certificate in force, in Unix seconds.
const ExpiryMetric = "bridgehead_tls_certificate_expiry_timestamp_seconds"

func (o Options) validate() (tls.ClientAuthType, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return 0, errors.New("tls options: CertFile and KeyFile are required")
	}
	var auth tls.ClientAuthType
	switch o.ClientAuth {
	case "", "none":
		auth = tls.NoClientCert
	case "request":
		auth = tls.VerifyClientCertIfGiven
	case "require":
		auth = tls.RequireAndVerifyClientCert
	default:
		return 0, fmt.Errorf("tls options: ClientAuth %q: want none, request or require", o.ClientAuth)
	}
	if auth == tls.NoClientCert && o.ClientCAFile != "" {
		return 0, fmt.Errorf("tls options: ClientCAFile %s is set but ClientAuth is none", o.ClientCAFile)
	}
	if auth != tls.NoClientCert && o.ClientCAFile == "" {
		// Without a pool, crypto/tls would verify client certificates against the system roots.
		return 0, fmt.Errorf("tls options: ClientAuth %s needs a ClientCAFile", o.ClientAuth)
	}
	return auth, nil
}

// Reloader holds the TLS files in force and keeps them current. TLSConfig, Certificate and the
// counters may be used from any goroutine (the set in force is an atomic pointer); the poll state
// is owned by the goroutine running Run, which must be called at most once.
type Reloader struct {
	opts Options
	auth tls.ClientAuthType

	cur      atomic.Pointer[bundle]
	reloads  atomic.Int64
	failures atomic.Int64

	// files are CertFile, KeyFile and, with client auth, ClientCAFile; owned by Run's goroutine
	// (initialised by New).
	files *filewatch.Tracker
}

// bundle is one loaded set of files; never modified once stored.
type bundle struct {
	cert   *tls.Certificate // Leaf set
	config *tls.Config      // the handshake config with this CA pool; nil without client auth
	cas    int              // certificates in the CA pool
}

// New validates opts and loads the files now; any problem is an error naming the file, so a
// server never starts without a working certificate. No goroutine is started until Run.
func New(opts Options) (*Reloader, error) {
	auth, err := opts.validate()
	if err != nil {
		return nil, err
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	paths := []string{opts.CertFile, opts.KeyFile}
	if auth != tls.NoClientCert {
		paths = append(paths, opts.ClientCAFile)
	}
	r := &Reloader{opts: opts, auth: auth, files: filewatch.NewTracker(readFile, paths...)}
	var b *bundle
	if err := r.files.Init(func(data [][]byte) (err error) {
		b, err = r.load(data)
		return err
	}); err != nil {
		return nil, err
	}
	r.cur.Store(b)
	if opts.Registerer != nil {
		// Read at each scrape from the set in force: a reload needs no bookkeeping to show.
		expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: ExpiryMetric,
			Help: "NotAfter of the serving TLS certificate in force, in Unix seconds (follows reloads).",
		}, func() float64 { return float64(r.Certificate().NotAfter.Unix()) })
		if err := opts.Registerer.Register(expiry); err != nil {
			return nil, fmt.Errorf("register tls metrics: %w", err)
		}
	}
	r.logInForce("tls: loaded", b)
	return r, nil
}

// TLSConfig returns a server config that takes the certificate (and client CA pool) in force at
// each handshake. Treat it as read-only: with client authentication on, handshakes run on a
// config built at each reload from the same settings, which would not see later changes.
func (r *Reloader) TLSConfig() *tls.Config {
	cfg := r.config(func() *tls.Certificate { return r.cur.Load().cert })
	if r.auth != tls.NoClientCert {
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().config, nil
		}
	}
	return cfg
}

func (r *Reloader) config(cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(cipherSuites),
		NextProtos:   []string{"h2", "http/1.1"},
		ClientAuth:   r.auth,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert(), nil
		},
	}
}

// Certificate returns the leaf certificate now in force.
func (r *Reloader) Certificate() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Reloads returns how many new sets of files Run has put in force since New. A count is
// incremented after the set is in force and logged.
func (r *Reloader) Reloads() int64 { return r.reloads.Load() }

// Failures returns how many times Run found the files changed but unusable (missing, unreadable,
// invalid) since New. Each is logged at Error once, before it is counted.
func (r *Reloader) Failures() int64 { return r.failures.Load() }

// Run polls the files every Options.Interval until ctx ends, then returns nil.
func (r *Reloader) Run(ctx context.Context) error {
	return filewatch.Every(ctx, r.opts.Interval, r.poll)
}

// poll looks at the files once and loads them if their identity changed.
func (r *Reloader) poll() {
	var b *bundle
	res, err := r.files.Poll(time.Now(), func(data [][]byte) (err error) {
		b, err = r.load(data)
		return err
	})
	switch res {
	case filewatch.Unchanged:
	case filewatch.Loaded:
		r.cur.Store(b)
		r.logInForce("tls: reloaded", b)
		r.reloads.Add(1) // last, so whoever sees the count sees the new set and the log line
	case filewatch.Restored:
		r.opts.Logger.Info("tls: files valid again, unchanged", "cert", r.opts.CertFile)
	default:
		r.opts.Logger.Error("tls: files "+res.String()+"; keeping the certificate in force",
			"cert", r.opts.CertFile, "key", r.opts.KeyFile, "clientCA", r.opts.ClientCAFile, "err", err)
		r.failures.Add(1)
	}
}

func (r *Reloader) logInForce(msg string, b *bundle) {
	leaf := b.cert.Leaf
	attrs := []any{"cert", r.opts.CertFile, "subject", leaf.Subject.String(),
		"serial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter}
	if b.config != nil {
		attrs = append(attrs, "clientCA", r.opts.ClientCAFile, "clientCAs", b.cas)
	}
	r.opts.Logger.Info(msg, attrs...)
}

// readFile reads one of the TLS files for the Tracker.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read TLS file: %w", err) // err names path
	}
	return b, nil
}

// load parses the files' contents, in the order of the Tracker's paths. Its errors name the files; crypto/tls's key pair errors
// describe the problem without quoting the key.
func (r *Reloader) load(data [][]byte) (*bundle, error) {
	cert, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load certificate %s: %w", r.opts.CertFile, err)
		}
	}
	b := &bundle{cert: &cert}
	if r.auth == tls.NoClientCert {
		return b, nil
	}
	pool, n, err := parseCAs(data[2])
	if err != nil {
		return nil, fmt.Errorf("load client CAs %s: %w", r.opts.ClientCAFile, err)
	}
	b.cas = n
	// Cert and pool come from the same bundle, so one handshake never mixes two reloads.
	b.config = r.config(func() *tls.Certificate { return b.cert })
	b.config.ClientCAs = pool
	return b, nil
}

// parseCAs returns the certificates of a PEM bundle as a pool. Text between blocks is allowed (as
// in distribution bundles), a bundle without certificates or ending in a cut-off block is not.
func parseCAs(data []byte) (*x509.CertPool, int, error) {
	pool, n := x509.NewCertPool(), 0
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		data = rest
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, 0, errors.New("truncated PEM block")
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM certificates")
	}
	return pool, n, nil
}

// Identities returns the names cert can be bound to in a principal's certSubject, most specific
// first and without repeats: cert.Subject.String(), "CN=<CommonName>" (escaped like
// Subject.String, so a common name with a comma cannot pose as a multi-attribute subject), then
// "DNS:", "URI:" and "email:" for each subject alternative name of those kinds. It trusts cert:
// call it only on a verified chain's leaf.
func Identities(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	var ids []string
	add := func(id string) {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	add(cert.Subject.String())
	if cert.Subject.CommonName != "" {
		add(pkix.Name{CommonName: cert.Subject.CommonName}.String())
	}
	for _, n := range cert.DNSNames {
		add("DNS:" + n)
	}
	for _, u := range cert.URIs {
		add("URI:" + u.String())
	}
	for _, e := range cert.EmailAddresses {
		add("email:" + e)
	}
	return ids
}
