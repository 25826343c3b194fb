package proxydial_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/proxydial"
	"github.com/bridgehead-dev/bridgehead/internal/proxydial/proxytest"
)

// echoServer answers each connection with what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestDialThroughAProxy(t *testing.T) {
	target := echoServer(t)
	proxy := proxytest.New(t)
	d := proxydial.Dialer{Proxy: http.ProxyURL(proxy.URL)}
	c, err := d.DialContext(context.Background(), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the tunnel: %q %v", buf, err)
	}
	if proxy.Tunnels.Load() != 1 {
		t.Fatalf("%d tunnels, want 1", proxy.Tunnels.Load())
	}

	// Direct when the proxy function says so.
	direct := proxydial.Dialer{Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }}
	c2, err := direct.DialContext(context.Background(), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if proxy.Tunnels.Load() != 1 {
		t.Fatal("a direct dial went through the proxy")
	}
}

func TestProxyRefusalIsNamed(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	proxy := proxytest.New(t)
	_, err = proxydial.Dialer{Proxy: http.ProxyURL(proxy.URL)}.DialContext(context.Background(), "tcp", addr)
	if err == nil || !strings.Contains(err.Error(), "refused CONNECT "+addr) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("CONNECT to a closed port: %v, want the proxy's refusal named", err)
	}
}
