package forward_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bridgehead-dev/bridgehead/internal/forward"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// BenchmarkIdleDelivery measures, on an idle stamp (one spool, a forwarder on its defaults, one
// message every 200–600 ms), the time from a message's acknowledgement (Append returned) to its
// arrival at the sink: the open segment's seal (SealAfter, 100 ms) plus the forwarder's claim
// poll, which backs off to 250 ms while the spool is empty. Each sample takes about 0.5 s: run
// it with a count of samples.
//
//	go test -run '^$' -bench BenchmarkIdleDelivery -benchtime 40x ./internal/forward/
func BenchmarkIdleDelivery(b *testing.B) {
	sp := mustOpenSpool(b, "", spool.Options{})
	var mu sync.Mutex
	arrived := map[uuid.UUID]time.Time{}
	snk := &fakeSink{send: func(_ context.Context, batch []message.Message) []sink.Result {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			arrived[m.ID] = now
		}
		return make([]sink.Result, len(batch))
	}}
	f, err := forward.New(forward.Config{Spool: sp, Sink: snk})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		idle := time.NewTimer(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		<-idle.C
		m := message.Message{ID: uuid.New(), SenderID: "plant-1", Value: "alarm", ReceivedAt: time.Now(), Stamp: "bench"}
		if err := sp.Append(context.Background(), m); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		tick := time.NewTicker(200 * time.Microsecond) // poll interval of the sink's record
		for {
			mu.Lock()
			at, ok := arrived[m.ID]
			mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(acked))
				break
			}
			if time.Since(acked) > 10*time.Second {
				b.Fatalf("message not delivered within 10 s of its acknowledgement")
			}
			<-tick.C
		}
		tick.Stop()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
