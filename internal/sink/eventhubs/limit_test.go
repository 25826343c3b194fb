package eventhubs

import (
	"context"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
)

// TestLargestEventTheAPIAcceptsIsDelivered: the API accepts a message when sink.EventBytes plus
// sink.FramingAllowance is within --max-event-bytes (default 1,000,000, Event Hubs Standard and
// Premium). Against a hub that advertises and enforces exactly that max-message-size, the
// largest message the API accepts, with properties, escaped characters and a stamp, in either
// body mode, is delivered, not refused as too large (which would dead-letter it after a 2xx).
func TestLargestEventTheAPIAcceptsIsDelivered(t *testing.T) {
	const limit = 1_000_000 // --max-event-bytes' default
	for _, mode := range []sink.BodyMode{sink.BodyEnvelope, sink.BodyRaw} {
		t.Run(string(mode), func(t *testing.T) {
			srv := amqptest.NewServer(t, amqptest.Options{MaxMessageSize: limit})
			srv.EnforceMaxMessageSize(0) // the advertised size
			s, _ := mustNewSink(t, srv, func(c *Config) { c.BodyMode = mode })
			m := msg("plant-7", "")
			m.Properties = map[string]string{"unit": "kWh", "site": `plant "north" <7>`}
			value := func(n int) string { // escaped in JSON: é is two bytes, \x01 six in an envelope
				return strings.Repeat("é", n/2) + strings.Repeat("\x01", n%2)
			}
			fits := func(n int) bool {
				m.Value = value(n)
				b, err := sink.EventBytes(&m, mode)
				if err != nil {
					t.Fatal(err)
				}
				return b+sink.FramingAllowance <= limit
			}
			lo, hi := 1, limit
			for lo < hi { // the largest value the API accepts: one byte more is refused
				if mid := (lo + hi + 1) / 2; fits(mid) {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			m.Value = value(lo)
			n, _ := sink.EventBytes(&m, mode) // within 8 bytes of the limit: the largest, give or take an escape
			if !fits(lo) || n+sink.FramingAllowance < limit-8 {
				t.Fatalf("the largest accepted event is %d + %d bytes, want just under %d", n, sink.FramingAllowance, limit)
			}
			res := s.Send(context.Background(), []message.Message{m})
			if res[0].Status != sink.Delivered {
				t.Fatalf("the largest message the API accepts (event %d bytes + %d framing): %v (%v), want delivered",
					n, sink.FramingAllowance, res[0].Status, res[0].Err)
			}
			evs := srv.Events()
			if len(evs) != 1 || evs[0].MessageID != m.ID.String() {
				t.Fatalf("the peer holds %d events, want the one sent", len(evs))
			}
			t.Logf("%s: event of %d bytes (body %d) delivered under a %d-byte max-message-size", mode, n, len(evs[0].Body), limit)
		})
	}
}
