package sinktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// replayTimeoutMillis marks the produce requests ThrottleProduce replays into the cluster, so
// that its control lets them through (kfake ignores a produce's timeout).
const replayTimeoutMillis = 29_999

// ThrottleProduce makes c answer produce requests as a broker enforcing a produce quota does
// (KIP-219, Kafka 2.0 and later): it appends the records and answers at once, with
// throttle_time_ms set to throttle(), and then mutes the connection for that long: requests the
// client pipelined behind it are taken only once the throttle is over. throttle() is asked per
// request; 0 lets the request through untouched. kfake has no quotas of its own, so a control
// takes each request to throttle and replays it, unchanged (same producer id, epoch and sequence
// numbers), into the cluster through a second client on its own connection, then answers with
// the cluster's own response plus the throttle: the records are stored exactly as without it.
// Replays run in the order the requests came. It stays in place until the test ends; it returns
// a function that reports how many responses it throttled. The test's producer must use one
// broker (one produce connection), as kfake.NumBrokers(1) gives. opts configure the replaying
// client (TLS, SASL) for a cluster that needs them.
func ThrottleProduce(t testing.TB, c *kfake.Cluster, throttle func() time.Duration, opts ...kgo.Opt) (throttled func() int) {
	t.Helper()
	replay, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatalf("replay client: %v", err)
	}
	t.Cleanup(replay.Close)
	var (
		mu    sync.Mutex            // guards n and last
		n     int                   // responses throttled
		last  = make(chan struct{}) // closed when the previous replay is done
		muted time.Time             // the end of the last throttle; only the replays' chain uses it
	)
	close(last)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		d := throttle()
		if preq.TimeoutMillis == replayTimeoutMillis || d <= 0 {
			return nil, nil, false // a replay, or not throttled: the cluster answers
		}
		node := c.CurrentNode()
		mu.Lock()
		prev, done := last, make(chan struct{})
		last = done
		mu.Unlock()
		var (
			resp kmsg.Response
			rerr error
		)
		c.SleepControl(func() { // lets the cluster serve the replay meanwhile
			defer close(done)
			<-prev
			if wait := time.Until(muted); wait > 0 { // the broker reads nothing more until then
				t := time.NewTimer(wait)
				<-t.C
			}
			again := *preq
			again.TimeoutMillis = replayTimeoutMillis
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, rerr = replay.Broker(int(node)).Request(ctx, &again)
			if rerr == nil {
				muted = time.Now().Add(d)
			}
		})
		if rerr != nil {
			return nil, rerr, true // closes the client's connection: it produces again
		}
		presp := resp.(*kmsg.ProduceResponse)
		presp.Version = preq.Version
		presp.ThrottleMillis = int32(d / time.Millisecond)
		mu.Lock()
		n++
		mu.Unlock()
		return presp, nil, true
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
