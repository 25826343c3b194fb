package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bridgehead-dev/bridgehead/client"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// Chaos test settings. The lease is short so that a killed forwarder's claims come back within
// the test: the reaper returns them after lease + 2 × skew allowance, at its next run (every
// forwarder reaps every 10 s, forward.DefaultReapInterval, which serve does not expose).
const (
	chaosTopic      = "bridgehead-chaos"
	chaosPartitions = 4
	chaosClients    = 4
	chaosLease      = "4s"
	chaosSkew       = "1s"
	// chaosWriterLease: a killed API's open segment is recovered lease + 2 × skew after its
	// last heartbeat.
	chaosWriterLease = "2s"
	// chaosDrainTimeout bounds the wait for an empty spool after the chaos: lease (4 s) + 2 × skew
	// (2 s) + one reap interval (10 s) for the last killed forwarder's claims, plus delivery.
	chaosDrainTimeout = 30 * time.Second
)

// chaosDuration is how long the client sends while processes are killed: 20 s, or
// BRIDGEHEAD_CHAOS_SECONDS.
func chaosDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("BRIDGEHEAD_CHAOS_SECONDS")
	if v == "" {
		return 20 * time.Second
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 {
		t.Fatalf("BRIDGEHEAD_CHAOS_SECONDS=%q: want a positive number of seconds", v)
	}
	return time.Duration(s * float64(time.Second))
}

// chaosSlot is one of the four roles the chaos loop kills and restarts.
type chaosSlot struct {
	name  string // api0, api1, forwarder0, forwarder1
	role  string // api or forwarder
	args  []string
	log   *os.File
	proc  *serveProc // owned by the test goroutine
	kills int
}

// apiURLs is what the client knows of the API processes; the chaos loop updates it on restart.
type apiURLs struct {
	mu   sync.Mutex
	urls [2]string
}

func (a *apiURLs) get(i int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.urls[i]
}

func (a *apiURLs) set(i int, url string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.urls[i] = url
}

// chaosClientStats is what one client goroutine saw; owned by that goroutine until wg.Wait.
type chaosClientStats struct {
	sent       []uuid.UUID // every message tried, by its derived correlationId
	acked      []uuid.UUID // those that got a 2xx
	attempts   int         // HTTP requests
	failovers  int         // transport errors and 503s, each followed by a retry on the other API
	unexpected []string    // answers that are neither 2xx, 503 nor a transport error; or a wrong id
}

// chaosClient sends messages one after another until ctx ends, round robin over the two APIs
// (starting at first); a transport error or a 503 retries the same message on the other API,
// as the failover client does.
func chaosClient(ctx context.Context, hc *http.Client, apis *apiURLs, id, first int, st *chaosClientStats) {
	sender := fmt.Sprintf("chaos-%d", id)
	target := first
	for i := 0; ctx.Err() == nil; i++ {
		key := fmt.Sprintf("c%d-m%d", id, i)
		want := uuid.MustParse(client.CorrelationID(sender, key)) // the id docs/api.md promises
		st.sent = append(st.sent, want)
		body := fmt.Sprintf(`{"senderId":%q,"value":"message %d of client %d"}`, sender, i, id)
		target = 1 - target // round robin
		for failed := 0; ctx.Err() == nil; {
			st.attempts++
			code, resp, err := chaosPost(ctx, hc, apis.get(target), key, body)
			if err == nil && code == http.StatusOK {
				var got struct {
					CorrelationID string `json:"correlationId"`
					Success       bool   `json:"success"`
				}
				if err := json.Unmarshal(resp, &got); err != nil || !got.Success || got.CorrelationID != want.String() {
					st.unexpected = append(st.unexpected, fmt.Sprintf("200 %s (want correlationId %s)", resp, want))
				} else {
					st.acked = append(st.acked, want)
				}
				break
			}
			if err == nil && code != http.StatusServiceUnavailable {
				st.unexpected = append(st.unexpected, fmt.Sprintf("%d %s", code, resp))
				break
			}
			// Killed, restarting, or refusing: the same message (same key) to the other API.
			st.failovers++
			target = 1 - target
			if failed++; failed%2 == 0 { // both refused: a client's own pacing before the next round
				pause := time.NewTimer(20 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-pause.C:
				}
				pause.Stop()
			}
		}
	}
}

func chaosPost(ctx context.Context, hc *http.Client, url, key, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/ServiceAPI/message", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestChaos runs 2 API and 2 Kafka forwarder processes on one spool while a client sends and a
// chaos loop SIGKILLs and restarts a random process every 1–2 s; then it proves that every
// acknowledged message reached the topic, and counts the duplicates.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos test runs for about 40 s")
	}
	runFor := chaosDuration(t)
	started := time.Now()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(chaosPartitions, chaosTopic))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs() // 127.0.0.1:<port>; the same for every forwarder incarnation

	dir := filepath.Join(t.TempDir(), "spool")
	logDir := t.TempDir()
	common := []string{"--listen", "127.0.0.1:0", "--spool-dir", dir, "--stamp", "chaos",
		"--spool-lease", chaosLease, "--spool-skew-allowance", chaosSkew, "--spool-writer-lease", chaosWriterLease}
	fwdArgs := append(slices.Clone(common), "--role", "forwarder", "--sink", "kafka",
		"--kafka-brokers", strings.Join(brokers, ","), "--kafka-topic", chaosTopic)
	apiArgs := append(slices.Clone(common), "--role", "api")
	var slots []*chaosSlot
	for _, s := range []struct{ name, role string }{{"api0", "api"}, {"api1", "api"}, {"forwarder0", "forwarder"}, {"forwarder1", "forwarder"}} {
		f, err := os.Create(filepath.Join(logDir, s.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		args := apiArgs
		if s.role == "forwarder" {
			args = fwdArgs
		}
		slots = append(slots, &chaosSlot{name: s.name, role: s.role, args: args, log: f})
	}
	t.Cleanup(func() {
		for _, s := range slots {
			if s.proc != nil {
				_ = s.proc.kill()
			}
		}
	})
	// start runs a new incarnation of slot i; the client learns an API's address.
	apis := &apiURLs{}
	start := func(i int, what string) {
		s := slots[i]
		p, err := launchServe(s.args, s.log)
		if err != nil {
			t.Fatalf("%s%s: %v", what, s.name, err)
		}
		s.proc = p
		if s.role == "api" {
			apis.set(i, p.url)
		}
	}
	// Started one after another: the first creates the spool.
	for i := range slots {
		start(i, "")
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpChaosLogs(t, slots)
		}
	})

	// The client.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: chaosClients}}
	defer hc.CloseIdleConnections()
	sendCtx, stopSending := context.WithTimeout(context.Background(), runFor)
	stats := make([]chaosClientStats, chaosClients)
	var wg sync.WaitGroup
	defer func() { stopSending(); wg.Wait() }() // also on t.Fatal below
	for c := range chaosClients {
		wg.Go(func() { chaosClient(sendCtx, hc, apis, c, c%2, &stats[c]) })
	}

	// The chaos loop, in the test goroutine: kill one random process every 1–2 s, restart it.
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	t.Logf("chaos seed %d, %v of traffic", seed, runFor)
	crashes := 0
	for {
		pause := time.NewTimer(time.Second + time.Duration(rng.Int64N(int64(time.Second))))
		select {
		case <-sendCtx.Done():
		case <-pause.C:
		}
		pause.Stop()
		if sendCtx.Err() != nil {
			break
		}
		for i, s := range slots { // a process that died on its own is a bug: note it, restart it
			if !s.proc.running() {
				crashes++
				t.Errorf("%s exited on its own: %v", s.name, s.proc.err)
				start(i, "restart ")
			}
		}
		i := rng.IntN(len(slots))
		if err := slots[i].proc.kill(); err != nil {
			t.Fatalf("kill %s: %v", slots[i].name, err)
		}
		slots[i].kills++
		start(i, "restart ")
	}
	wg.Wait()
	chaosEnded := time.Now()

	// All four must be up: the chaos loop restarted each victim; none may have died on its own.
	for _, s := range slots {
		if !s.proc.running() {
			t.Fatalf("%s is not running after the chaos: %v", s.name, s.proc.err)
		}
		resp, err := hc.Get(s.proc.url + "/healthz")
		if err != nil {
			t.Fatalf("%s /healthz: %v", s.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /healthz: %d", s.name, resp.StatusCode)
		}
	}

	var sent, acked []uuid.UUID
	var attempts, failovers int
	var unexpected []string
	for _, st := range stats {
		sent = append(sent, st.sent...)
		acked = append(acked, st.acked...)
		attempts += st.attempts
		failovers += st.failovers
		unexpected = append(unexpected, st.unexpected...)
	}
	if len(unexpected) > 0 {
		t.Errorf("%d answers were neither a 2xx with the derived correlationId, a 503 nor a transport error, e.g. %q", len(unexpected), unexpected[0])
	}
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged")
	}

	// The spool drains: the forwarders deliver what is ready, the reaper returns the claims of
	// killed forwarders once their lease is over and recovers the open segments of killed APIs
	// once theirs is.
	insp, err := spool.Open(dir, spool.Options{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer insp.Close()
	var st spool.Stats
	for deadline := time.Now().Add(chaosDrainTimeout); ; {
		st, err = insp.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Undelivered() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the spool still holds %d ready and %d claimed messages and %d open segments (%d being recovered)", chaosDrainTimeout, st.Ready.Messages, st.Claimed.Messages, st.Open.Segments, st.Recovering.Segments)
		}
		poll := time.NewTimer(100 * time.Millisecond) // poll interval of the spool listing
		<-poll.C
	}
	drained := time.Since(chaosEnded)
	if st.Dead.Segments+st.Quarantine.Segments > 0 {
		t.Errorf("spool after the chaos: %d messages in dead/, %d in quarantine/, want none", st.Dead.Messages, st.Quarantine.Messages)
	}
	for _, s := range slots {
		if !s.proc.running() {
			t.Errorf("%s exited while the spool drained: %v", s.name, s.proc.err)
		}
	}

	// Read the whole topic.
	delivered, records := consumeChaosTopic(t, brokers)
	sentSet := make(map[uuid.UUID]bool, len(sent))
	for _, id := range sent {
		sentSet[id] = true
	}
	var missing []uuid.UUID
	for _, id := range acked {
		if delivered[id] == 0 {
			missing = append(missing, id)
		}
	}
	duplicates, extra, unacked, foreign := 0, 0, 0, 0
	ackedSet := make(map[uuid.UUID]bool, len(acked))
	for _, id := range acked {
		ackedSet[id] = true
	}
	for id, n := range delivered {
		if n > 1 {
			duplicates++
			extra += n - 1
		}
		switch {
		case !sentSet[id]:
			foreign++
		case !ackedSet[id]:
			unacked++ // cut off after its commit: stored, but the client never heard
		}
	}
	kills := map[string]int{}
	for _, s := range slots {
		kills[s.role] += s.kills
	}
	t.Logf("chaos: %v of traffic, %d kills (api %d, forwarder %d), %d crashes; %d HTTP requests, %d failovers",
		runFor, kills["api"]+kills["forwarder"], kills["api"], kills["forwarder"], crashes, attempts, failovers)
	t.Logf("chaos: sent %d, acknowledged %d, delivered %d distinct in %d records, duplicates %d (%d extra records), delivered without a 2xx %d",
		len(sent), len(acked), len(delivered), records, duplicates, extra, unacked)
	t.Logf("chaos: the reapers returned %d expired claims; spool drained %v after the chaos ended; total %v",
		len(chaosLogMatches(slots, "reclaimed expired claim")), drained.Round(100*time.Millisecond), time.Since(started).Round(100*time.Millisecond))
	if foreign > 0 {
		t.Errorf("%d correlationIds on the topic were never sent", foreign)
	}
	if len(missing) > 0 {
		inSpool := spooled(t, dir)
		still := 0
		for _, id := range missing {
			if inSpool[id] {
				still++
			}
		}
		t.Errorf("%d of %d acknowledged messages never reached the topic (%d of them still in the spool, e.g. dead/), e.g. %v",
			len(missing), len(acked), still, missing[:min(len(missing), 5)])
	}
	if races := chaosLogMatches(slots, "DATA RACE", "panic:"); len(races) > 0 {
		t.Errorf("the processes' stderr reports races or panics:\n%s", strings.Join(races, "\n"))
	}
}

// consumeChaosTopic reads every record of the topic up to its high watermarks, checks that each
// record's correlationId header agrees with its envelope, and counts deliveries per id.
func consumeChaosTopic(t *testing.T, brokers []string) (map[uuid.UUID]int, int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(chaosTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = chaosTopic
	for p := range int32(chaosPartitions) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1 // -1: the high watermark
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	end := map[int32]int64{} // partition → high watermark
	total := int64(0)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("list offsets of partition %d: error code %d", rp.Partition, rp.ErrorCode)
			}
			end[rp.Partition] = rp.Offset
			total += rp.Offset
		}
	}

	delivered := map[uuid.UUID]int{}
	next := map[int32]int64{} // partition → next offset expected
	records := 0
	done := func() bool {
		for p, hw := range end {
			if next[p] < hw {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records within 20 s", records, total)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("fetch %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			records++
			next[r.Partition] = r.Offset + 1
			var env struct {
				CorrelationID string `json:"correlationId"`
				Stamp         string `json:"stamp"`
			}
			if err := json.Unmarshal(r.Value, &env); err != nil {
				t.Errorf("partition %d offset %d: body is not an envelope: %v", r.Partition, r.Offset, err)
				return
			}
			var header string
			for _, h := range r.Headers {
				if h.Key == "correlationId" {
					header = string(h.Value)
				}
			}
			id, err := uuid.Parse(env.CorrelationID)
			if err != nil || header != env.CorrelationID || env.Stamp != "chaos" {
				t.Errorf("partition %d offset %d: correlationId %q, header %q, stamp %q", r.Partition, r.Offset, env.CorrelationID, header, env.Stamp)
				return
			}
			delivered[id]++
		})
	}
	return delivered, records
}

// chaosLogMatches returns the lines of the processes' stderr that contain any of words.
func chaosLogMatches(slots []*chaosSlot, words ...string) []string {
	var out []string
	for _, s := range slots {
		b, err := os.ReadFile(s.log.Name())
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", s.name, err))
			continue
		}
		for line := range bytes.Lines(b) {
			for _, w := range words {
				if bytes.Contains(line, []byte(w)) {
					out = append(out, s.name+": "+strings.TrimSpace(string(line)))
					break
				}
			}
		}
	}
	return out
}

// dumpChaosLogs logs the processes' errors and warnings (at most 30 lines each) for a failure.
func dumpChaosLogs(t *testing.T, slots []*chaosSlot) {
	t.Helper()
	lines := chaosLogMatches(slots, `"level":"ERROR"`, `"level":"WARN"`, "DATA RACE", "panic:")
	per := map[string]int{}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		if per[name]++; per[name] <= 30 {
			t.Log(l)
		}
	}
}
