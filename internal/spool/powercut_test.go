package spool_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
	"github.com/google/uuid"
)

// TestPowerCutLosesNoAcknowledgedMessage runs the append/claim/ack cycle on a file system that
// keeps only what was made durable (fsys.PowerCut), cuts the power at a random moment, and
// recovers in a new process: every message whose Append returned nil before the cut is
// delivered, before the cut or after it. This is the test that catches acknowledged writes lost
// to a missing fsync, of a file or of the directory that names it.
func TestPowerCutLosesNoAcknowledgedMessage(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 8
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for round := range rounds {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		powerCutRound(t, rng, round%4 == 0)
	}
}

// powerCutRound is one run: appenders and a consumer until a cut at a random moment (strict,
// or with random prefixes of what was in flight), then recovery and a drain in a new process.
func powerCutRound(t *testing.T, rng *rand.Rand, strict bool) {
	t.Helper()
	// One clock for the file system's mtimes and both processes: after the cut it jumps past
	// the dead writer's lease, as a reboot takes longer than that.
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	pc := fsys.NewPowerCut(fsys.PowerCutOptions{Now: now})
	const root = "/spool"
	opts := spool.Options{Now: now, SealAfter: time.Duration(1+rng.IntN(5)) * time.Millisecond,
		MaxSegmentBytes: 1 << (10 + rng.IntN(6))}

	opts.FS = pc.Process()
	s, err := spool.Open(root, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var (
		mu        sync.Mutex
		acked     []uuid.UUID
		delivered = map[uuid.UUID]bool{}
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := msgs(1+rand.IntN(3), 50)
				if err := s.Append(context.Background(), in...); err != nil {
					continue // after the cut, every call fails
				}
				mu.Lock()
				acked = append(acked, ids(in)...)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := s.Claim(context.Background())
			if err != nil {
				time.Sleep(time.Millisecond) // idle poll, as a forwarder's
				continue
			}
			mu.Lock()
			for _, id := range ids(c.Messages) {
				delivered[id] = true // "sent": before the ack, as a forwarder does
			}
			mu.Unlock()
			_ = s.Ack(context.Background(), c)
		}
	})
	time.Sleep(time.Duration(5+rng.IntN(40)) * time.Millisecond) // a random moment of the load
	if strict {
		pc.Cut()
	} else {
		pc.CutRandom(rng)
	}
	close(stop)
	wg.Wait()
	_ = s.Close() // a dead process: every call fails
	mu.Lock()
	before := len(acked)
	mu.Unlock()

	// The new process after the reboot: its reaper recovers the dead writer's open segment and
	// returns the dead consumer's claims.
	offset.Add(int64(time.Hour))
	opts.FS = pc.Process()
	s2, err := spool.Open(root, opts)
	if err != nil {
		t.Fatalf("Open after the cut: %v", err)
	}
	defer s2.Close()
	if _, err := s2.Reap(context.Background()); err != nil {
		t.Fatalf("Reap after the cut: %v", err)
	}
	if _, damaged, err := s2.Verify(context.Background(), nil); err != nil || len(damaged) > 0 {
		t.Fatalf("Verify after the cut: %v, damaged %v: a torn segment was visible", err, damaged)
	}
	for _, id := range drain(t, s2) {
		delivered[id] = true
	}
	lost := 0
	for _, id := range acked {
		if !delivered[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost to a power cut (strict %v)", lost, before, strict)
	}
	if before == 0 {
		t.Logf("round ended before any append was acknowledged")
	}
}
