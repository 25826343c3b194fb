// Package proxydial provides a dialer that reaches TCP services (Kafka brokers) through an
// HTTPS proxy with CONNECT, as a site whose firewall lets traffic out only through its proxy
// requires; HTTPS_PROXY and NO_PROXY choose the proxy by default, as for HTTPS.
package proxydial

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Dialer dials host:port directly or through the proxy Proxy picks for https://host:port,
// then wraps the connection in TLS when TLS is set.
type Dialer struct {
	// Proxy picks the proxy; nil means http.ProxyFromEnvironment (which never proxies
	// localhost).
	Proxy func(*http.Request) (*url.URL, error)
	// TLS, if set, is the client TLS configuration used after the tunnel; its ServerName
	// defaults to the dialled host.
	TLS *tls.Config
	// Timeout bounds the dial, the CONNECT and the TLS handshake; default 10 s.
	Timeout time.Duration
}

// DialContext has net.Dialer's signature, for kgo.Dialer.
func (d Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pick := d.Proxy
	if pick == nil {
		pick = http.ProxyFromEnvironment
	}
	proxy, err := pick(&http.Request{URL: &url.URL{Scheme: "https", Host: addr}})
	if err != nil {
		return nil, fmt.Errorf("choose a proxy for %s: %w", addr, err)
	}
	var conn net.Conn
	if proxy == nil {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	} else {
		conn, err = connect(ctx, proxy, addr)
	}
	if err != nil {
		return nil, err
	}
	if d.TLS == nil {
		return conn, nil
	}
	tc := d.TLS.Clone()
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tlsConn := tls.Client(conn, tc)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS with %s: %w", addr, err)
	}
	return tlsConn, nil
}

// connect opens a tunnel to addr through the HTTP proxy with CONNECT.
func connect(ctx context.Context, proxy *url.URL, addr string) (net.Conn, error) {
	host := proxy.Host
	if proxy.Port() == "" {
		port := "80"
		if proxy.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(proxy.Hostname(), port)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.Redacted(), err)
	}
	if proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: proxy.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("proxy %s: TLS: %w", proxy.Redacted(), err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer func() { _ = conn.SetDeadline(time.Time{}) }()
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := proxy.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", proxy.Redacted(), addr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", proxy.Redacted(), addr, err)
	}
	// Not resp.Body.Close(): after a CONNECT the "body" is the tunnel, and closing would read it.
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT %s: %s", proxy.Redacted(), addr, resp.Status)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, fmt.Errorf("proxy %s sent data before the tunnel was up", proxy.Redacted())
	}
	return conn, nil
}
