package tlstest_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
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

func TestIssueVerifies(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	server, _ := ca.Issue(t, tlstest.IssueOptions{CommonName: "server"})
	if _, err := parse(t, server).Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("server certificate for 127.0.0.1: %v", err)
	}
	client, _ := ca.Issue(t, tlstest.IssueOptions{CommonName: "client", Client: true})
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := parse(t, client).Verify(opts); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := parse(t, server).Verify(opts); err == nil {
		t.Error("server certificate verified as a client certificate")
	}
	if got := parse(t, ca.PEM()); !got.IsCA || got.Subject.CommonName != "test CA" {
		t.Errorf("CA PEM: got IsCA %v, CN %q", got.IsCA, got.Subject.CommonName)
	}
}

func TestSecretDirSwap(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	certA, keyA := ca.Issue(t, tlstest.IssueOptions{})
	certB, keyB := ca.Issue(t, tlstest.IssueOptions{})
	sd := tlstest.NewSecretDir(t, certA, keyA)
	sd.SwapFiles(map[string][]byte{tlstest.CAName: ca.PEM()})
	before, err := os.Readlink(filepath.Join(sd.Dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}

	sd.Swap(certB, keyB)
	for path, want := range map[string][]byte{sd.CertFile(): certB, sd.KeyFile(): keyB, sd.Path(tlstest.CAName): ca.PEM()} {
		if got, err := os.ReadFile(path); err != nil || string(got) != string(want) {
			t.Errorf("%s after Swap: got %d bytes, %v; want the new content", path, len(got), err)
		}
		if target, err := os.Readlink(path); err != nil || target != filepath.Join("..data", filepath.Base(path)) {
			t.Errorf("%s: got link %q, %v; want through ..data", path, target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(sd.Dir, before)); !os.IsNotExist(err) {
		t.Errorf("previous generation %s: got %v, want removed", before, err)
	}
}
