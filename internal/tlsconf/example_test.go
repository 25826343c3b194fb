package tlsconf_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
)

func ExampleIdentities() {
	// The leaf of a verified client chain, as found in http.Request.TLS.PeerCertificates[0].
	cert := &x509.Certificate{
		Subject:  pkix.Name{CommonName: "ops-console", Organization: []string{"Grid Ops"}},
		DNSNames: []string{"ops.example.org"},
	}
	for _, id := range tlsconf.Identities(cert) {
		fmt.Println(id)
	}
	// Output:
	// CN=ops-console,O=Grid Ops
	// CN=ops-console
	// DNS:ops.example.org
}
