package k8stest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
)

// pki is the throwaway key material of one control plane, written to files under dir: a CA,
// the API server's serving pair for 127.0.0.1, an admin client pair (group system:masters)
// and the service-account signing key.
type pki struct {
	caFile, serverCertFile, serverKeyFile string
	saKeyFile, saPubFile                  string
	caPEM, adminCertPEM, adminKeyPEM      []byte
}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	ca := tlstest.NewCA(t, "k8stest-ca")
	day := time.Now().Add(24 * time.Hour)
	serverCert, serverKey := ca.Issue(t, tlstest.IssueOptions{CommonName: "kube-apiserver",
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}, NotAfter: day})
	p := &pki{caFile: filepath.Join(dir, "ca.crt"), saKeyFile: filepath.Join(dir, "sa.key"), saPubFile: filepath.Join(dir, "sa.pub"), caPEM: ca.PEM()}
	p.serverCertFile, p.serverKeyFile = tlstest.WriteFiles(t, dir, serverCert, serverKey)
	p.adminCertPEM, p.adminKeyPEM = ca.Issue(t, tlstest.IssueOptions{CommonName: "k8stest-admin",
		Organizations: []string{"system:masters"}, Client: true, NotAfter: day})

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saPriv, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{
		p.caFile:    p.caPEM,
		p.saKeyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saPriv}),
		p.saPubFile: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
