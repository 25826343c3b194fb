// Package tlstest makes throwaway certificates and Kubernetes-style secret volumes for tests
// across the repository: a CA issuing ECDSA P-256 server and client certificates, generated in
// the test process (nothing is read from testdata, nothing is cached between tests).
//
// Every helper takes the test's testing.TB and fails the test on error, so it must be called from
// the test's own goroutine.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a self-signed certificate authority that issues certificates for one test.
type CA struct {
	// Cert is the CA's own certificate.
	Cert *x509.Certificate

	key     *ecdsa.PrivateKey
	certPEM []byte
}

// NewCA returns a CA whose certificate has the common name name and is valid from a minute ago
// for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate %s: %v", name, err)
	}
	return &CA{Cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// PEM returns the CA certificate in PEM, as written to a client CA file or a client's trust store.
func (ca *CA) PEM() []byte { return ca.certPEM }

// Pool returns a pool holding only this CA, for a client's RootCAs or a server's ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueOptions describes a certificate for CA.Issue.
type IssueOptions struct {
	// CommonName is the subject's CN; may be empty.
	CommonName string
	// Organizations is the subject's O; a Kubernetes API server reads a client's groups there.
	Organizations []string
	// DNSNames and IPs are the subject alternative names. A server certificate with neither is
	// issued for 127.0.0.1, ::1 and localhost.
	DNSNames []string
	IPs      []net.IP
	// Client makes a client certificate (extended key usage clientAuth) instead of a server one.
	Client bool
	// NotAfter is the end of validity; zero means an hour from now.
	NotAfter time.Time
}

// Issue returns a new certificate signed by ca and its private key, both in PEM (the key as a
// PKCS #8 "PRIVATE KEY" block). Each call makes a new key and a random serial number.
func (ca *CA) Issue(t testing.TB, opts IssueOptions) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: opts.CommonName, Organization: opts.Organizations},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     opts.NotAfter,
		DNSNames:     opts.DNSNames,
		IPAddresses:  opts.IPs,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	if opts.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else if len(opts.DNSNames) == 0 && len(opts.IPs) == 0 {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("issue certificate %q: %v", opts.CommonName, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

// WriteFiles writes certPEM and keyPEM to dir/tls.crt and dir/tls.key (the key mode 0600) and
// returns their paths.
func WriteFiles(t testing.TB, dir string, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, CertName), filepath.Join(dir, KeyName)
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// File names in a SecretDir, as a kubernetes.io/tls secret (with cert-manager's ca.crt) has them.
const (
	CertName = "tls.crt"
	KeyName  = "tls.key"
	CAName   = "ca.crt"
)

// SecretDir is a directory laid out like a Kubernetes secret volume: each file is a symlink
// `name -> ..data/name`, `..data` is a symlink to a timestamped directory holding the current
// generation, and an update writes a new generation and renames a fresh `..data` symlink over the
// old one, as the kubelet's AtomicWriter does. A reader following the symlinks sees either the
// whole old set or the whole new one.
type SecretDir struct {
	// Dir is the volume's mount point.
	Dir string

	t     testing.TB
	gen   int
	files map[string][]byte
}

// NewSecretDir returns a SecretDir in a new t.TempDir holding tls.crt and tls.key.
func NewSecretDir(t testing.TB, certPEM, keyPEM []byte) *SecretDir {
	t.Helper()
	s := &SecretDir{Dir: t.TempDir(), t: t, files: make(map[string][]byte)}
	s.Swap(certPEM, keyPEM)
	return s
}

// Path returns the path a reader uses for the file name (e.g. CAName), through `..data`.
func (s *SecretDir) Path(name string) string { return filepath.Join(s.Dir, name) }

// CertFile returns the path of tls.crt.
func (s *SecretDir) CertFile() string { return s.Path(CertName) }

// KeyFile returns the path of tls.key.
func (s *SecretDir) KeyFile() string { return s.Path(KeyName) }

// Swap publishes a new generation with tls.crt and tls.key replaced (other files kept) in one
// atomic switch of `..data`.
func (s *SecretDir) Swap(certPEM, keyPEM []byte) {
	s.t.Helper()
	s.SwapFiles(map[string][]byte{CertName: certPEM, KeyName: keyPEM})
}

// SwapFiles publishes a new generation in which the given files are added or replaced (the
// others kept), then removes the previous generation's directory.
func (s *SecretDir) SwapFiles(files map[string][]byte) {
	s.t.Helper()
	for name, data := range files {
		s.files[name] = data
	}
	s.gen++
	gen := fmt.Sprintf("..%s.%d", time.Now().Format("2006_01_02_15_04_05"), s.gen)
	if err := os.Mkdir(filepath.Join(s.Dir, gen), 0o755); err != nil {
		s.t.Fatal(err)
	}
	for name, data := range s.files {
		if err := os.WriteFile(filepath.Join(s.Dir, gen, name), data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	data := filepath.Join(s.Dir, "..data")
	old, _ := os.Readlink(data) // empty on the first generation
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		s.t.Fatal(err)
	}
	for name := range s.files {
		link := s.Path(name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			s.t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(s.Dir, old)); err != nil {
			s.t.Fatal(err)
		}
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // positive, never zero
}
