package tlsconf_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
	"github.com/prometheus/client_golang/prometheus"
)

const interval = 20 * time.Millisecond

// mustNew builds a Reloader logging into the returned buffer, and checks when the test ends that
// no log line carries key material: neither PEM armour nor a line of any key the test made.
func mustNew(t *testing.T, opts tlsconf.Options, keys ...[]byte) (*tlsconf.Reloader, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r, err := tlsconf.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { checkNoKeys(t, logs.String(), keys...) })
	return r, logs
}

func checkNoKeys(t *testing.T, text string, keys ...[]byte) {
	t.Helper()
	if strings.Contains(text, "PRIVATE KEY-----") || strings.Contains(text, "-----BEGIN") {
		t.Errorf("PEM armour in logs:\n%s", text)
	}
	for _, k := range keys {
		for line := range strings.Lines(string(k)) {
			if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(text, line) {
				t.Errorf("key material %q in logs:\n%s", line, text)
			}
		}
	}
}

// startRun runs r until the test ends and checks Run returns nil once cancelled.
func startRun(t *testing.T, r *tlsconf.Reloader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// serve starts an HTTPS server on 127.0.0.1 with cfg and returns its address. Each response body
// names the client certificate: "client=<first identity>" or "client=none".
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) == 0 {
				fmt.Fprint(w, "client=none")
				return
			}
			fmt.Fprint(w, "client="+tlsconf.Identities(r.TLS.PeerCertificates[0])[0])
		}),
		ErrorLog: log.New(io.Discard, "", 0), // refused handshakes are expected
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: got %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// conn is one HTTP/1.1 keep-alive connection over TLS.
type conn struct {
	*tls.Conn
	br *bufio.Reader
}

// dial connects to addr trusting ca; cfg (may be nil) adds client settings.
func dial(addr string, ca *tlstest.CA, cfg *tls.Config) (*conn, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.RootCAs = ca.Pool()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, br: bufio.NewReader(c)}, nil
}

// get makes one request on c and returns the response body.
func (c *conn) get() (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	req, err := http.NewRequest("GET", "https://127.0.0.1/", nil)
	if err != nil {
		return "", err
	}
	if err := req.Write(c); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(body), nil
}

// request dials, makes one request and closes; in TLS 1.3 a refused client certificate shows only
// when the client first reads, so the request is part of the check.
func request(addr string, ca *tlstest.CA, cfg *tls.Config) (string, error) {
	c, err := dial(addr, ca, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.get()
}

// serial returns the serial of the certificate a new connection to addr is served.
func serial(t *testing.T, addr string, ca *tlstest.CA) string {
	t.Helper()
	c, err := dial(addr, ca, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	return parseCert(t, certPEM).SerialNumber.String()
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // poll interval, not a wait for the condition
	}
}

func TestVersionsAndCipherSuites(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	certPEM, keyPEM := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead"})
	certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), certPEM, keyPEM)
	r, _ := mustNew(t, tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	addr := serve(t, r.TLSConfig())

	tests := []struct {
		name        string
		cfg         *tls.Config
		wantVersion uint16
		wantProto   string
		wantErr     string // in the client's handshake error; "" for success
	}{
		{"TLS 1.3", &tls.Config{}, tls.VersionTLS13, "", ""},
		{"TLS 1.2", &tls.Config{MaxVersion: tls.VersionTLS12}, tls.VersionTLS12, "", ""},
		{"TLS 1.2 ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, tls.VersionTLS12, "", ""},
		{"h2 by ALPN", &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, tls.VersionTLS13, "h2", ""},
		{"TLS 1.1 refused", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, 0, "", "protocol version not supported"},
		{"TLS 1.2 CBC refused", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, 0, "", "handshake failure"},
		{"TLS 1.2 RSA key exchange refused", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, 0, "", "handshake failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dial(addr, ca, tt.cfg)
			if tt.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want refused")
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.Version != tt.wantVersion {
				t.Errorf("version: got %x, want %x", st.Version, tt.wantVersion)
			}
			if st.NegotiatedProtocol != tt.wantProto {
				t.Errorf("ALPN: got %q, want %q", st.NegotiatedProtocol, tt.wantProto)
			}
			if tt.wantProto == "" {
				if _, err := c.get(); err != nil {
					t.Errorf("request: %v", err)
				}
			}
		})
	}
}

func TestRotationBySymlinkSwap(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-a"})
	certB, keyB := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-b"})
	sd := tlstest.NewSecretDir(t, certA, keyA)
	r, logs := mustNew(t, tlsconf.Options{CertFile: sd.CertFile(), KeyFile: sd.KeyFile(), Interval: interval}, keyA, keyB)
	addr := serve(t, r.TLSConfig())
	startRun(t, r)

	old, err := dial(addr, ca, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer old.Close()
	if _, err := old.get(); err != nil {
		t.Fatalf("first request: %v", err)
	}

	sd.Swap(certB, keyB)
	waitFor(t, "the reload", func() bool { return r.Reloads() == 1 })
	if got, want := serial(t, addr, ca), serialOf(t, certB); got != want {
		t.Errorf("new connection serial: got %v, want %v", got, want)
	}
	if got, want := r.Certificate().SerialNumber.String(), serialOf(t, certB); got != want {
		t.Errorf("Certificate serial: got %v, want %v", got, want)
	}

	// The connection opened before the swap carries on, still under certificate A.
	if body, err := old.get(); err != nil || body != "client=none" {
		t.Fatalf("second request on the old connection: got %q, %v", body, err)
	}
	if got, want := old.ConnectionState().PeerCertificates[0].SerialNumber.String(), serialOf(t, certA); got != want {
		t.Errorf("old connection serial: got %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "tls: reloaded") {
		t.Errorf("reload not logged:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `subject="CN=bridgehead-b"`) || !strings.Contains(logs.String(), "notAfter=") {
		t.Errorf("reload log lacks subject or expiry:\n%s", logs)
	}
}

func TestBadPairKeepsCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-a"})
	certB, keyB := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-b"})
	_, keyC := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-c"})
	sd := tlstest.NewSecretDir(t, certA, keyA)
	r, logs := mustNew(t, tlsconf.Options{CertFile: sd.CertFile(), KeyFile: sd.KeyFile(), Interval: interval}, keyA, keyB, keyC)
	addr := serve(t, r.TLSConfig())
	startRun(t, r)

	bad := []struct {
		name      string
		cert, key []byte
		wantLog   string
	}{
		{"key for another certificate", certB, keyC, "private key does not match public key"},
		{"truncated certificate", certB[:len(certB)/2], keyB, "failed to find any PEM data in certificate input"},
		{"truncated key", certB, keyB[:len(keyB)/2], "failed to find any PEM data in key input"},
	}
	for i, b := range bad {
		sd.Swap(b.cert, b.key)
		waitFor(t, b.name+" to be refused", func() bool { return r.Failures() == int64(i+1) })
		if !strings.Contains(logs.String(), b.wantLog) {
			t.Errorf("%s: log lacks %q:\n%s", b.name, b.wantLog, logs)
		}
		if got, want := serial(t, addr, ca), serialOf(t, certA); got != want {
			t.Fatalf("%s: served serial %v, want the old %v", b.name, got, want)
		}
		if got, want := r.Certificate().SerialNumber.String(), serialOf(t, certA); got != want {
			t.Fatalf("%s: Certificate serial %v, want the old %v", b.name, got, want)
		}
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") && (!strings.Contains(line, sd.CertFile()) || !strings.Contains(line, sd.KeyFile())) {
			t.Errorf("error log does not name both files: %s", line)
		}
	}

	sd.Swap(certB, keyB)
	waitFor(t, "the good pair", func() bool { return r.Reloads() == 1 })
	if got, want := serial(t, addr, ca), serialOf(t, certB); got != want {
		t.Errorf("after the good pair: served serial %v, want %v", got, want)
	}
	if got, want := r.Failures(), int64(len(bad)); got != want {
		t.Errorf("Failures: got %d, want %d (each bad pair counted once)", got, want)
	}
	if got, want := strings.Count(logs.String(), "level=ERROR"), len(bad); got != want {
		t.Errorf("error lines: got %d, want %d:\n%s", got, want, logs)
	}
}

// TestMissingFileAndInPlaceRewrite uses plain files, as a mounted host directory would: a removed
// key is logged and the certificate kept; restoring it logs a recovery; a pair rewritten in
// place (not atomically; a poll may see it half written) is picked up once both files are written.
func TestMissingFileAndInPlaceRewrite(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-a"})
	certB, keyB := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-b"})
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteFiles(t, dir, certA, keyA)
	r, logs := mustNew(t, tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Interval: interval}, keyA, keyB)
	addr := serve(t, r.TLSConfig())
	startRun(t, r)

	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing key to be reported", func() bool { return r.Failures() == 1 })
	if !strings.Contains(logs.String(), "tls: files missing") || !strings.Contains(logs.String(), keyFile) {
		t.Errorf("missing key: log does not say so:\n%s", logs)
	}
	if got, want := serial(t, addr, ca), serialOf(t, certA); got != want {
		t.Fatalf("key missing: served serial %v, want the old %v", got, want)
	}

	tmp := filepath.Join(dir, "tls.key.tmp") // restored atomically, so no poll sees it half written
	if err := os.WriteFile(tmp, keyA, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, keyFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "tls: files valid again") })
	if got := r.Reloads(); got != 0 {
		t.Errorf("same pair restored: Reloads got %d, want 0", got)
	}
	if got := r.Failures(); got != 1 {
		t.Errorf("Failures: got %d, want 1", got)
	}

	tlstest.WriteFiles(t, dir, certB, keyB) // a poll may see the new cert with the old key
	waitFor(t, "the rewritten pair", func() bool { return r.Reloads() == 1 })
	if got, want := serial(t, addr, ca), serialOf(t, certB); got != want {
		t.Errorf("after the rewrite: served serial %v, want %v", got, want)
	}
}

// clientAuthSetup makes a server certificate from its own CA, a client CA and a stranger CA.
type clientAuthSetup struct {
	serverCA, clientCA, otherCA *tlstest.CA
	addr                        string
	reloader                    *tlsconf.Reloader
	secret                      *tlstest.SecretDir
}

func newClientAuthSetup(t *testing.T, mode string) *clientAuthSetup {
	t.Helper()
	s := &clientAuthSetup{
		serverCA: tlstest.NewCA(t, "server CA"),
		clientCA: tlstest.NewCA(t, "client CA"),
		otherCA:  tlstest.NewCA(t, "other CA"),
	}
	certPEM, keyPEM := s.serverCA.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead"})
	s.secret = tlstest.NewSecretDir(t, certPEM, keyPEM)
	s.secret.SwapFiles(map[string][]byte{tlstest.CAName: s.clientCA.PEM()})
	s.reloader, _ = mustNew(t, tlsconf.Options{
		CertFile: s.secret.CertFile(), KeyFile: s.secret.KeyFile(),
		ClientCAFile: s.secret.Path(tlstest.CAName), ClientAuth: mode, Interval: interval,
	})
	s.addr = serve(t, s.reloader.TLSConfig())
	return s
}

// presenting returns a client config that always sends a new certificate from ca, even when the
// server's list of acceptable CAs does not include ca, so that the server's check is what is
// tested.
func presenting(t *testing.T, ca *tlstest.CA, opts tlstest.IssueOptions, maxVersion uint16) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(ca.Issue(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MaxVersion:           maxVersion,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
}

func TestClientAuth(t *testing.T) {
	for _, mode := range []string{"require", "request"} {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("%s/%s", mode, tls.VersionName(version)), func(t *testing.T) {
				s := newClientAuthSetup(t, mode)
				tests := []struct {
					name     string
					cfg      *tls.Config
					wantBody string // "" when the request must fail
				}{
					{"no certificate", &tls.Config{MaxVersion: version}, map[string]string{"require": "", "request": "client=none"}[mode]},
					{"certificate from the client CA", presenting(t, s.clientCA, tlstest.IssueOptions{CommonName: "ops-console", Client: true}, version), "client=CN=ops-console"},
					{"certificate from another CA", presenting(t, s.otherCA, tlstest.IssueOptions{CommonName: "ops-console", Client: true}, version), ""},
					{"server certificate from the client CA", presenting(t, s.clientCA, tlstest.IssueOptions{CommonName: "ops-console"}, version), ""},
				}
				for _, tt := range tests {
					body, err := request(s.addr, s.serverCA, tt.cfg)
					if tt.wantBody == "" {
						if err == nil {
							t.Errorf("%s: got %q, want the connection refused", tt.name, body)
						}
						continue
					}
					if err != nil || body != tt.wantBody {
						t.Errorf("%s: got %q, %v; want %q", tt.name, body, err, tt.wantBody)
					}
				}
			})
		}
	}
}

// TestClientCARotation swaps the client CA bundle: certificates of the removed CA are refused on
// the next connection, even one resuming a TLS session begun under the old bundle.
func TestClientCARotation(t *testing.T) {
	s := newClientAuthSetup(t, "require")
	startRun(t, s.reloader)
	cfg := presenting(t, s.clientCA, tlstest.IssueOptions{CommonName: "old-client", Client: true}, 0)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	resumed := func() (bool, error) {
		c, err := dial(s.addr, s.serverCA, cfg)
		if err != nil {
			return false, err
		}
		defer c.Close()
		_, err = c.get() // also reads the session ticket
		return c.ConnectionState().DidResume, err
	}
	if _, err := resumed(); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if ok, err := resumed(); err != nil || !ok {
		t.Fatalf("second connection: resumed %v, err %v; want a resumed session", ok, err)
	}

	s.secret.SwapFiles(map[string][]byte{tlstest.CAName: s.otherCA.PEM()})
	waitFor(t, "the new CA bundle", func() bool { return s.reloader.Reloads() == 1 })
	if ok, err := resumed(); err == nil {
		t.Fatalf("old client after the CA swap: got success (resumed %v), want refused", ok)
	}
	newClient := presenting(t, s.otherCA, tlstest.IssueOptions{CommonName: "new-client", Client: true}, 0)
	if body, err := request(s.addr, s.serverCA, newClient); err != nil || body != "client=CN=new-client" {
		t.Fatalf("new client: got %q, %v", body, err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "server CA")
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{CommonName: "a"})
	_, keyB := ca.Issue(t, tlstest.IssueOptions{CommonName: "b"})
	write := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cert, key := write("a.crt", certA), write("a.key", keyA)
	otherKey := write("b.key", keyB)
	truncKey := write("trunc.key", keyA[:len(keyA)-40])
	garbage := write("garbage.pem", []byte("not PEM at all\n"))
	caFile := write("ca.crt", ca.PEM())
	keyAsCA := write("key-as-ca.crt", keyA)
	truncCA := write("trunc-ca.crt", slices.Concat(ca.PEM(), ca.PEM()[:100]))
	absent := filepath.Join(dir, "absent.pem")

	tests := []struct {
		name string
		opts tlsconf.Options
		want []string // substrings of the error; nil for success
	}{
		{"valid", tlsconf.Options{CertFile: cert, KeyFile: key}, nil},
		{"valid with client CA", tlsconf.Options{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: "require"}, nil},
		{"no cert file", tlsconf.Options{KeyFile: key}, []string{"CertFile and KeyFile are required"}},
		{"missing cert", tlsconf.Options{CertFile: absent, KeyFile: key}, []string{absent, "no such file"}},
		{"missing key", tlsconf.Options{CertFile: cert, KeyFile: absent}, []string{absent, "no such file"}},
		{"cert not PEM", tlsconf.Options{CertFile: garbage, KeyFile: key}, []string{garbage, "failed to find any PEM data in certificate input"}},
		{"key for another cert", tlsconf.Options{CertFile: cert, KeyFile: otherKey}, []string{otherKey, "private key does not match"}},
		{"truncated key", tlsconf.Options{CertFile: cert, KeyFile: truncKey}, []string{truncKey, "key input"}},
		{"key given as cert", tlsconf.Options{CertFile: key, KeyFile: key}, []string{key, "inputs may have been switched"}},
		{"unknown client auth", tlsconf.Options{CertFile: cert, KeyFile: key, ClientAuth: "maybe"}, []string{`ClientAuth "maybe"`}},
		{"CA file with client auth none", tlsconf.Options{CertFile: cert, KeyFile: key, ClientCAFile: caFile}, []string{caFile, "ClientAuth is none"}},
		{"require without CA file", tlsconf.Options{CertFile: cert, KeyFile: key, ClientAuth: "require"}, []string{"ClientAuth require needs a ClientCAFile"}},
		{"request without CA file", tlsconf.Options{CertFile: cert, KeyFile: key, ClientAuth: "request"}, []string{"ClientAuth request needs a ClientCAFile"}},
		{"missing CA file", tlsconf.Options{CertFile: cert, KeyFile: key, ClientCAFile: absent, ClientAuth: "request"}, []string{absent, "no such file"}},
		{"CA file without certificates", tlsconf.Options{CertFile: cert, KeyFile: key, ClientCAFile: keyAsCA, ClientAuth: "require"}, []string{keyAsCA, "no PEM certificates"}},
		{"CA file cut off", tlsconf.Options{CertFile: cert, KeyFile: key, ClientCAFile: truncCA, ClientAuth: "require"}, []string{truncCA, "truncated PEM block"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tlsconf.New(tt.opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				if got := r.Certificate().Subject.CommonName; got != "a" {
					t.Errorf("Certificate CN: got %q, want a", got)
				}
				return
			}
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to contain %q", err, w)
				}
			}
			checkNoKeys(t, err.Error(), keyA, keyB)
		})
	}
}

func TestIdentities(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://plant-a/ops")
	tests := []struct {
		name string
		cert *x509.Certificate
		want []string
	}{
		{"nil", nil, nil},
		{"common name only", &x509.Certificate{Subject: pkix.Name{CommonName: "ops-console"}}, []string{"CN=ops-console"}},
		{"common name and organisation", &x509.Certificate{Subject: pkix.Name{CommonName: "x", Organization: []string{"y"}}},
			[]string{"CN=x,O=y", "CN=x"}},
		{"all SAN kinds", &x509.Certificate{
			Subject:        pkix.Name{CommonName: "ops", OrganizationalUnit: []string{"grid"}},
			DNSNames:       []string{"ops.example", "ops2.example"},
			URIs:           []*url.URL{spiffe},
			EmailAddresses: []string{"ops@example.org"},
		}, []string{"CN=ops,OU=grid", "CN=ops", "DNS:ops.example", "DNS:ops2.example", "URI:spiffe://plant-a/ops", "email:ops@example.org"}},
		{"SANs only", &x509.Certificate{DNSNames: []string{"a.example", "a.example"}}, []string{"DNS:a.example"}},
		{"comma in common name stays escaped", &x509.Certificate{Subject: pkix.Name{CommonName: "x,O=y"}}, []string{`CN=x\,O=y`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tlsconf.Identities(tt.cert); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	// A certificate as parsed from the wire spells its subject the same way.
	ca := tlstest.NewCA(t, "client CA")
	certPEM, _ := ca.Issue(t, tlstest.IssueOptions{CommonName: "ops-console", DNSNames: []string{"ops.example"}, Client: true})
	if got, want := tlsconf.Identities(parseCert(t, certPEM)), []string{"CN=ops-console", "DNS:ops.example"}; !slices.Equal(got, want) {
		t.Errorf("parsed certificate: got %q, want %q", got, want)
	}
}

// gauge returns the value of the unlabelled gauge name in reg, failing when it is absent.
func gauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s in %d families", name, len(mfs))
	return 0
}

func TestExpiryMetricFollowsReload(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	notAfterA := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	notAfterB := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-a", NotAfter: notAfterA})
	certB, keyB := ca.Issue(t, tlstest.IssueOptions{CommonName: "bridgehead-b", NotAfter: notAfterB})
	sd := tlstest.NewSecretDir(t, certA, keyA)
	reg := prometheus.NewRegistry()
	r, _ := mustNew(t, tlsconf.Options{CertFile: sd.CertFile(), KeyFile: sd.KeyFile(), Interval: interval, Registerer: reg}, keyA, keyB)
	if got, want := gauge(t, reg, tlsconf.ExpiryMetric), float64(notAfterA.Unix()); got != want {
		t.Fatalf("expiry after New: got %v, want %v", got, want)
	}
	startRun(t, r)
	sd.Swap(certB, keyB)
	waitFor(t, "the reload", func() bool { return r.Reloads() == 1 })
	if got, want := gauge(t, reg, tlsconf.ExpiryMetric), float64(notAfterB.Unix()); got != want {
		t.Fatalf("expiry after reload: got %v, want %v", got, want)
	}

	// One name per quantity: a second Reloader on the same registry is refused, not silently
	// unexported.
	if _, err := tlsconf.New(tlsconf.Options{CertFile: sd.CertFile(), KeyFile: sd.KeyFile(), Registerer: reg}); err == nil {
		t.Fatal("second Reloader on one registry: got no error")
	}
}
