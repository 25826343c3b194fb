package eventhubs

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/proxydial/proxytest"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
	"github.com/coder/websocket"
)

// wsFront is Event Hubs' WebSocket front door for a test: HTTPS on 127.0.0.1 that accepts
// wss://…/$servicebus/websocket with the "amqp" subprotocol and carries the stream to the
// AMQP test peer.
type wsFront struct {
	srv      *httptest.Server
	upgrades atomic.Int64
}

func newWSFront(t *testing.T, peer *amqptest.Server) *wsFront {
	t.Helper()
	f := &wsFront{}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/$servicebus/websocket" {
			http.Error(w, "not the Event Hubs WebSocket path", http.StatusNotFound)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"amqp"}})
		if err != nil {
			return
		}
		f.upgrades.Add(1)
		c.SetReadLimit(maxWebSocketMessage)
		ws := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		defer ws.Close()
		backend, err := net.Dial("tcp", peer.Addr())
		if err != nil {
			return
		}
		defer backend.Close()
		go func() { _, _ = io.Copy(backend, ws); backend.Close() }()
		_, _ = io.Copy(ws, backend)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestWebSocketsTransport: with --eventhubs-transport websockets the sink speaks AMQP inside a
// WebSocket over HTTPS (the only way out of a site that allows TCP 443 alone), directly or
// through an HTTPS proxy, and the events arrive as over plain AMQP.
func TestWebSocketsTransport(t *testing.T) {
	for _, viaProxy := range []bool{false, true} {
		name := "direct"
		if viaProxy {
			name = "through a proxy"
		}
		t.Run(name, func(t *testing.T) {
			peer := amqptest.NewServer(t, amqptest.Options{})
			front := newWSFront(t, peer)
			var proxy *proxytest.Proxy
			s, _ := mustNewSink(t, peer, func(c *Config) {
				c.Transport = TransportWebSockets
				// The namespace's name stays the peer's; the front door is where we dial.
				c.CustomEndpoint = strings.TrimPrefix(front.srv.URL, "https://")
				c.TLSConfig = front.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				c.TLSConfig.ServerName = "example.com" // httptest's certificate names example.com
				c.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
				if viaProxy {
					proxy = proxytest.New(t)
					c.Proxy = http.ProxyURL(proxy.URL)
				}
			})
			batch := []message.Message{msg("a", "over websockets"), msg("b", strings.Repeat("w", 200_000))}
			wantStatuses(t, s.Send(context.Background(), batch), sink.Delivered, sink.Delivered)
			if front.upgrades.Load() == 0 {
				t.Fatal("no WebSocket upgrade reached the front door")
			}
			if viaProxy && proxy.Tunnels.Load() == 0 {
				t.Fatal("the proxy made no tunnel")
			}
			if got := len(peer.Events()); got != 2 {
				t.Fatalf("the peer received %d events, want 2", got)
			}
		})
	}
}
