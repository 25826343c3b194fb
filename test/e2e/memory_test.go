package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// TestLargeBatchesMeet503NotTheMemoryLimit: many maximal batches at once (16 MiB, 10,000
// messages of 32 properties each: about 100 MiB of heap apiece while decoded) used to take a
// pod past its 512 MiB limit (857 MB with 8 in flight). With --max-inflight-bytes the ones that
// do not fit get 503 + Retry-After, the process's peak memory stays bounded, and every 2xx is in
// the spool. The server is a build without the race detector, whose memory is the product's.
func TestLargeBatchesMeet503NotTheMemoryLimit(t *testing.T) {
	bin := filepath.Join(filepath.Dir(binary), "bridgehead-norace")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/bridgehead")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "spool")
	p, err := launchServeBinary(bin, []string{"--listen", "127.0.0.1:0", "--spool-dir", dir, "--role", "api",
		"--max-request-bytes", "16MiB", "--max-inflight-bytes", "32MiB", "--spool-min-free-bytes", "0"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.kill() })

	body := maximalBatch(t)
	const rounds, conc = 2, 8
	var (
		mu       sync.Mutex
		acked    []uuid.UUID
		ok, busy int
	)
	for range rounds {
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				resp, err := http.Post(p.url+"/v1/messages", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Errorf("post: %v", err)
					return
				}
				defer resp.Body.Close()
				var out struct {
					Messages []struct{ CorrelationID uuid.UUID } `json:"messages"`
				}
				mu.Lock()
				defer mu.Unlock()
				switch resp.StatusCode {
				case 200:
					if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
						t.Errorf("200 body: %v", err)
					}
					ok++
					for _, m := range out.Messages {
						acked = append(acked, m.CorrelationID)
					}
				case 503:
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("503 without Retry-After")
					}
					busy++
				default:
					t.Errorf("status %d, want 200 or 503", resp.StatusCode)
				}
			})
		}
		wg.Wait()
	}
	peak := peakRSS(t, p.cmd.Process.Pid)
	if !p.running() {
		t.Fatal("serve died under the load")
	}
	if ok == 0 || busy == 0 {
		t.Fatalf("%d accepted, %d refused busy: want both (the bound admits two 16 MiB bodies at a time)", ok, busy)
	}
	// Two bodies decoded at once take ~200 MiB above the process's base; eight took 857 MB.
	const ceiling = 400 << 20
	if peak > ceiling {
		t.Errorf("peak RSS %d MiB, over %d MiB", peak>>20, ceiling>>20)
	}
	in := spooled(t, dir)
	for _, id := range acked {
		if !in[id] {
			t.Fatalf("message %s was acknowledged but is not in the spool", id)
		}
	}
	t.Logf("%d × %d batches of %d MiB: %d accepted (%d messages, all in the spool), %d answered 503; peak RSS %d MiB",
		rounds, conc, len(body)>>20, ok, len(acked), busy, peak>>20)
}

// maximalBatch is a /v1/messages body of 10,000 messages of 32 properties, just under 16 MiB.
func maximalBatch(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range 10_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"senderId":"meter-%d","value":"%d","properties":{`, i%100, i)
		for j := range 32 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"p%02d":"%s"`, j, strings.Repeat("x", 38))
		}
		b.WriteString("}}")
	}
	b.WriteByte(']')
	if b.Len() > 16<<20 {
		t.Fatalf("batch of %d bytes is over 16 MiB", b.Len())
	}
	return b.Bytes()
}

// peakRSS reads the process's high-water resident set (VmHWM) from /proc.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
