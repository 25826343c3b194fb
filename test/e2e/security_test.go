package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/logbuf"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf/tlstest"
)

// principalsFile writes a principals file with the given keys as senders of "01".
func principalsFile(t *testing.T, path string, keys map[string]string, extra string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("principals:\n")
	for name, key := range keys {
		b.WriteString("  - name: " + name + "\n    keySha256: " + auth.HashKey(key) + "\n    senders: [\"01\"]\n")
	}
	b.WriteString(extra)
	// Replace atomically, as an operator's editor or a Secret update does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpsClient trusts ca and presents cert (if not nil); each client has its own connections.
func httpsClient(ca *tlstest.CA, cert *tls.Certificate, maxVersion uint16) *http.Client {
	cfg := &tls.Config{RootCAs: ca.Pool(), MaxVersion: maxVersion}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func postKey(t *testing.T, c *http.Client, url, key, body string) int {
	t.Helper()
	req, err := http.NewRequest("POST", url+"/v1/messages", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func servingSerial(t *testing.T, url string, ca *tlstest.CA) string {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestSecuredStamp runs serve as the on-prem stamp runs it: TLS from a Kubernetes-style secret
// volume, keys required, rate limited. It checks what a supplier and an operator rely on.
func TestSecuredStamp(t *testing.T) {
	ca := tlstest.NewCA(t, "stamp CA")
	firstCert, firstKey := ca.Issue(t, tlstest.IssueOptions{CommonName: "stamp-1"})
	secret := tlstest.NewSecretDir(t, firstCert, firstKey)
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	const keyA, keyB = "supplier-a-key-e2e-0123456789abcdef", "supplier-b-key-e2e-0123456789abcdef"
	principalsFile(t, authFile, map[string]string{"supplier-a": keyA}, "")
	var logs logbuf.Buffer
	s := startServeLogging(t, &logs, "--auth", "required", "--auth-file", authFile, "--reload-interval", "100ms",
		"--tls-cert-file", secret.CertFile(), "--tls-key-file", secret.KeyFile(),
		"--rate-limit", "20", "--rate-burst", "10", "--read-header-timeout", "1s", "--role", "api", "--metrics-auth")
	if !strings.HasPrefix(s.url, "https://") {
		t.Fatalf("serve prints %s, want an https:// address with TLS on", s.url)
	}
	c := httpsClient(ca, nil, 0)
	one := `{"senderId":"01","value":"v"}`

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		if _, err := httpsClient(ca, nil, tls.VersionTLS11).Get(s.url + "/healthz"); err == nil {
			t.Error("a TLS 1.1 client was served")
		}
	})
	t.Run("keys", func(t *testing.T) {
		for _, tc := range []struct {
			key, body string
			want      int
		}{
			{"", one, 401},
			{"wrong-key-e2e-0123456789abcdef", one, 401},
			{keyA, `{"senderId":"02","value":"v"}`, 403},
			{keyA, one, 200},
		} {
			if got := postKey(t, c, s.url, tc.key, tc.body); got != tc.want {
				t.Errorf("key %.12q body %s: %d, want %d", tc.key, tc.body, got, tc.want)
			}
		}
	})
	t.Run("probes open, metrics and status closed", func(t *testing.T) {
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/ServiceAPI/health": 200, "/metrics": 401, "/v1/status": 401} {
			resp, err := c.Get(s.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s without a key: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})
	t.Run("auth file reload adds and revokes keys", func(t *testing.T) {
		principalsFile(t, authFile, map[string]string{"supplier-b": keyB}, "")
		eventually(t, 10*time.Second, "the new key is accepted", func() bool { return postKey(t, c, s.url, keyB, one) == 200 })
		if got := postKey(t, c, s.url, keyA, one); got != 401 {
			t.Errorf("revoked key: %d, want 401", got)
		}
		os.WriteFile(authFile, []byte("principals:\n  - name: broken\n    keySha256: nothex\n"), 0o600)
		eventually(t, 10*time.Second, "the broken file is reported", func() bool { return strings.Contains(logs.String(), "keeping the current principals") })
		if got := postKey(t, c, s.url, keyB, one); got != 200 {
			t.Errorf("after a broken file: %d, want 200 (the old set stays)", got)
		}
	})
	t.Run("bridgehead send speaks to the secured stamp", func(t *testing.T) {
		dir := t.TempDir()
		keyFile, caFile := filepath.Join(dir, "key.txt"), filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(keyFile, []byte(keyB+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binary, "send", "--url", s.url, "--api-key-file", keyFile, "--ca-file", caFile,
			"--sender-id", "01", "--value", "a", "--value", "b").CombinedOutput()
		if err != nil {
			t.Fatalf("send with key and CA: %v\n%s", err, out)
		}
		out, err = exec.Command(binary, "send", "--url", s.url, "--ca-file", caFile, "--sender-id", "01", "--value", "a").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "401") {
			t.Errorf("send without a key: err %v, output %s; want a failure naming 401", err, out)
		}
	})
	t.Run("a peer stamp shows this one's status over TLS with a key", func(t *testing.T) {
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		peer := startServe(t, "--role", "api", "--peer-url", s.url, "--peer-ca-file", caFile, "--peer-api-key", keyB)
		resp, err := http.Get(peer.url + "/v1/peer/status")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"stamp":"e2e"`) {
			t.Errorf("peer status: %d %s, want the secured stamp's status", resp.StatusCode, body)
		}
		keyless := startServe(t, "--role", "api", "--peer-url", s.url, "--peer-ca-file", caFile)
		resp, err = http.Get(keyless.url + "/v1/peer/status")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || !strings.Contains(string(body), "401") {
			t.Errorf("peer status without the key: %d %s, want 502 naming the peer's 401", resp.StatusCode, body)
		}
	})
	t.Run("certificate rotation by symlink swap", func(t *testing.T) {
		kept := httpsClient(ca, nil, 0)
		if resp, err := kept.Get(s.url + "/healthz"); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		certPEM, keyPEM := ca.Issue(t, tlstest.IssueOptions{CommonName: "stamp-2"})
		secret.Swap(certPEM, keyPEM)
		want := serialOf(t, certPEM)
		eventually(t, 10*time.Second, "new connections get the new certificate", func() bool { return servingSerial(t, s.url, ca) == want })
		resp, err := kept.Get(s.url + "/healthz") // the kept-alive connection still works
		if err != nil {
			t.Fatalf("request on the connection opened before the rotation: %v", err)
		}
		resp.Body.Close()
	})
	t.Run("rate limit", func(t *testing.T) {
		batch := "[" + strings.TrimSuffix(strings.Repeat(one+",", 10), ",") + "]"
		if got := postKey(t, c, s.url, keyB, batch); got != 200 {
			t.Fatalf("a burst of 10: %d", got)
		}
		if got := postKey(t, c, s.url, keyB, one); got != 429 {
			t.Errorf("over the rate: %d, want 429", got)
		}
		eventually(t, 5*time.Second, "the limit recovers", func() bool { return postKey(t, c, s.url, keyB, one) == 200 })
	})
	t.Run("oversized headers refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.url+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("p", 100<<10))
		resp, err := c.Do(req)
		if err != nil {
			return // cut off before an answer: refused too
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("100 KiB of headers: %d %s, want 431 with a problem body", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("slow-loris cut off while others are served", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := conn.Write([]byte("POST /v1/messages HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		closed := make(chan time.Duration, 1)
		go func() {
			// Trickle a header byte every 200 ms, as a slow-loris client does, until cut off.
			for {
				if _, err := conn.Write([]byte("X")); err != nil {
					break
				}
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := bufio.NewReader(conn).ReadByte(); err != nil && !isTimeout(err) {
					break
				}
			}
			closed <- time.Since(start)
		}()
		if got := postKey(t, c, s.url, keyB, one); got != 200 && got != 429 {
			t.Errorf("another client meanwhile: %d", got)
		}
		select {
		case d := <-closed:
			if d > 4*time.Second {
				t.Errorf("slow client cut off after %v, want about the 1 s --read-header-timeout", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the slow client was not cut off within 10 s")
		}
	})
	for _, secret := range []string{keyA, keyB, auth.HashKey(keyA), auth.HashKey(keyB), "wrong-key-e2e"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows a key or key hash (%.8s…)", secret)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestMutualTLS checks --tls-client-auth require and principals bound to certificates.
func TestMutualTLS(t *testing.T) {
	ca, clientCA, otherCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA"), tlstest.NewCA(t, "other CA")
	dir := t.TempDir()
	serverCert, serverKey := ca.Issue(t, tlstest.IssueOptions{CommonName: "stamp"})
	certFile, keyFile := tlstest.WriteFiles(t, dir, serverCert, serverKey)
	clientCAFile := filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(clientCAFile, clientCA.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(dir, "auth.yaml")
	principalsFile(t, authFile, nil, `  - name: ops
    certSubject: "CN=ops-console"
    role: admin
  - name: plant-a
    certSubject: "DNS:plant-a.example"
    senders: ["01"]
`)
	s := startServe(t, "--auth", "required", "--auth-file", authFile, "--role", "api",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-client-ca-file", clientCAFile, "--tls-client-auth", "require")
	pair := func(ca *tlstest.CA, opts tlstest.IssueOptions) *tls.Certificate {
		opts.Client = true
		c, err := tls.X509KeyPair(ca.Issue(t, opts))
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	get := func(c *http.Client, path string) (int, error) {
		resp, err := c.Get(s.url + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if _, err := get(httpsClient(ca, nil, 0), "/healthz"); err == nil {
		t.Error("a client without a certificate was served under require")
	}
	if _, err := get(httpsClient(ca, pair(otherCA, tlstest.IssueOptions{CommonName: "ops-console"}), 0), "/healthz"); err == nil {
		t.Error("a client with a certificate from another CA was served")
	}
	ops := httpsClient(ca, pair(clientCA, tlstest.IssueOptions{CommonName: "ops-console"}), 0)
	if code, err := get(ops, "/v1/dead-letters"); err != nil || code != 200 {
		t.Errorf("admin by certificate: %d %v, want 200", code, err)
	}
	plant := httpsClient(ca, pair(clientCA, tlstest.IssueOptions{CommonName: "device-7", DNSNames: []string{"plant-a.example"}}), 0)
	if got := postKey(t, plant, s.url, "", `{"senderId":"01","value":"v"}`); got != 200 {
		t.Errorf("sender bound by DNS SAN: %d, want 200", got)
	}
	if got := postKey(t, plant, s.url, "", `{"senderId":"02","value":"v"}`); got != 403 {
		t.Errorf("sender bound by DNS SAN, foreign senderId: %d, want 403", got)
	}
	if code, _ := get(plant, "/v1/dead-letters"); code != 403 {
		t.Errorf("a sender's certificate on an admin route: %d, want 403", code)
	}
	stranger := httpsClient(ca, pair(clientCA, tlstest.IssueOptions{CommonName: "unbound"}), 0)
	if got := postKey(t, stranger, s.url, "", `{"senderId":"01","value":"v"}`); got != 401 {
		t.Errorf("a valid certificate bound to no principal: %d, want 401", got)
	}
}
