package forward

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// fullJitter is exponential backoff with full jitter: the n-th delay is uniform in
// [0, min(max, initial × 2ⁿ)). backoff/v5's ExponentialBackOff computes the capped exponential
// (its own jitter is off: its ±factor jitter keeps every retry of a crowd near the same
// instant); full jitter spreads the crowd of forwarders that a sink outage synchronised.
// Not safe for concurrent use: each claim has its own.
type fullJitter struct {
	exp  backoff.ExponentialBackOff
	rand func() float64 // in [0, 1)
}

var _ backoff.BackOff = (*fullJitter)(nil)

func newFullJitter(initial, maxDelay time.Duration, rnd func() float64) *fullJitter {
	if rnd == nil {
		rnd = rand.Float64
	}
	b := &fullJitter{rand: rnd, exp: backoff.ExponentialBackOff{
		InitialInterval: initial, RandomizationFactor: 0, Multiplier: 2, MaxInterval: maxDelay,
	}}
	b.exp.Reset()
	return b
}

// NextBackOff returns the next delay.
func (b *fullJitter) NextBackOff() time.Duration {
	return time.Duration(b.rand() * float64(b.exp.NextBackOff()))
}

// Reset starts the sequence again.
func (b *fullJitter) Reset() { b.exp.Reset() }
