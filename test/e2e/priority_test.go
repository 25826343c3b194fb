package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// TestAlarmsFirstAfterAnOutage is a cloud outage, compressed: the Kafka link is down from the
// start while a telemetry flood (priority 4, by the stamp's default) and a few alarms (priority
// 0, by the compat route's Priority header) are accepted; when the link returns, every alarm
// reaches the topic before the telemetry that waited, and the telemetry drains oldest first.
// The forwarder runs as serve runs it, with its default four workers.
func TestAlarmsFirstAfterAnOutage(t *testing.T) {
	const (
		topic          = "readings"
		batches        = 100 // of telemetry, posted one after another: a segment each
		perBatch       = 60
		alarms         = 5
		alarmEvery     = batches / alarms
		oldestFraction = 10 // the first and last tenths of arrivals are checked for age
	)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	// The outage: every connection to the broker is closed on its first request.
	var down atomic.Bool
	down.Store(true)
	cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if down.Load() {
			return nil, fmt.Errorf("link down"), true
		}
		return nil, nil, false
	})
	s := startServe(t, "--role", "all", "--sink", "kafka", "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--kafka-topic", topic, "--retry-max-delay", "500ms", "--shutdown-grace", "5s")

	post := func(path, body string, header ...string) { postWith(t, s.url, path, body, header...) }
	seq := 0
	for b := range batches {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := range perBatch {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"senderId":"meter","value":"t%d"}`, seq)
			seq++
		}
		sb.WriteByte(']')
		post("/v1/messages", sb.String())
		if b%alarmEvery == alarmEvery/2 {
			post("/ServiceAPI/message", fmt.Sprintf(`{"senderId":"scada","value":"alarm%d"}`, b), "Priority", "0")
		}
		time.Sleep(30 * time.Millisecond) // the flood spreads over the outage, and over segments (SealIdle)
	}
	// Everything is sealed and waiting (SealAfter), the forwarder probing a dead link.
	time.Sleep(time.Second)
	down.Store(false)
	returned := time.Now()

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := batches*perBatch + alarms
	var arrivals []string // values, in the partition's order
	var firstAlarmAfter time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(arrivals) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var env sink.Envelope
			if err := json.Unmarshal(r.Value, &env); err != nil {
				t.Fatalf("record is not an envelope: %v", err)
			}
			if strings.HasPrefix(env.Value, "alarm") && firstAlarmAfter == 0 {
				firstAlarmAfter = time.Since(returned)
			}
			arrivals = append(arrivals, env.Value)
		})
	}
	if len(arrivals) < want {
		t.Fatalf("%d of %d messages arrived within 60 s of the link's return", len(arrivals), want)
	}
	// Every alarm before the telemetry that waited with it. The forwarder claims in priority
	// order, but its four workers send at once: a telemetry segment claimed a moment after the
	// last alarm may reach the broker first, so up to three segments of telemetry (the other
	// workers') may come before the last alarm, never more.
	lastAlarm, overtook := 0, 0
	for i, v := range arrivals {
		if strings.HasPrefix(v, "alarm") {
			lastAlarm = i
		}
	}
	for _, v := range arrivals[:lastAlarm] {
		if !strings.HasPrefix(v, "alarm") {
			overtook++
		}
	}
	if overtook > 3*perBatch {
		t.Fatalf("%d telemetry messages arrived before the last alarm, more than the three segments the other workers may send at once (first %d: %v)",
			overtook, lastAlarm+1, arrivals[:lastAlarm+1])
	}
	// The telemetry oldest first: its first tenth to arrive is from the older half, its last
	// tenth from the newer half (segments are claimed at random among the oldest eight, the
	// oldest by the eighth pick, by four workers at once: by age, not exactly).
	var telemetry []string
	for _, v := range arrivals {
		if !strings.HasPrefix(v, "alarm") {
			telemetry = append(telemetry, v)
		}
	}
	tenth := len(telemetry) / oldestFraction
	half := batches * perBatch / 2
	for i, v := range telemetry {
		if i >= tenth && i < len(telemetry)-tenth {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(v, "t"))
		if err != nil {
			t.Fatalf("telemetry value %q", v)
		}
		if i < tenth && n >= half {
			t.Fatalf("telemetry arrival %d is t%d, of the newer half, among the first tenth", i, n)
		}
		if i >= len(telemetry)-tenth && n < half {
			t.Fatalf("telemetry arrival %d is t%d, of the older half, among the last tenth", i, n)
		}
	}
	t.Logf("after the link returned: first alarm in %v; %d alarms, %d telemetry messages before the last of them; %d telemetry messages, oldest first",
		firstAlarmAfter.Round(time.Millisecond), alarms, overtook, len(telemetry))
}
