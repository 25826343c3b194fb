package eventhubs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// TestLive sends a small batch to a real event hub. It runs only when
// BRIDGEHEAD_TEST_EVENTHUBS_CONNECTION_STRING is set (BRIDGEHEAD_TEST_EVENTHUBS_NAME names the
// hub when the string has no EntityPath; BRIDGEHEAD_TEST_EVENTHUBS_KAFKA=1 also tries the Kafka
// endpoint). Skipped, it proves nothing: it is not coverage.
func TestLive(t *testing.T) {
	cs := os.Getenv("BRIDGEHEAD_TEST_EVENTHUBS_CONNECTION_STRING")
	if cs == "" {
		t.Skip("BRIDGEHEAD_TEST_EVENTHUBS_CONNECTION_STRING is not set: no live Event Hubs test")
	}
	transports := []string{TransportAMQP}
	if os.Getenv("BRIDGEHEAD_TEST_EVENTHUBS_KAFKA") == "1" {
		transports = append(transports, TransportKafka)
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s, err := New(context.Background(), Config{
				ConnectionString: cs,
				EventHub:         os.Getenv("BRIDGEHEAD_TEST_EVENTHUBS_NAME"),
				Transport:        tr,
				Stamp:            "live-test",
				SendTimeout:      30 * time.Second,
				Logger:           newTestLogger(t.Output()),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			batch := []message.Message{msg("live-a", "1"), msg("live-b", "2"), msg("live-a", "3")}
			wantStatuses(t, s.Send(context.Background(), batch), sink.Delivered, sink.Delivered, sink.Delivered)
			t.Logf("delivered %d events over %s; Limits %+v", len(batch), tr, s.Limits())
		})
	}
}
