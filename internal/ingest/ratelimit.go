package ingest

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters are token buckets by client, created on first use and dropped once full again (a
// full bucket is the same as a new one), so idle clients cost nothing. mu guards buckets.
type limiters struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// limiterSweepInterval is how often full buckets are dropped.
const limiterSweepInterval = time.Minute

func newLimiters(perSecond float64, burst int) *limiters {
	return &limiters{limit: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}}
}

// take takes n tokens from key's bucket at now. It returns 0 when they were taken, else how long
// until they would be there (nothing is taken); ok is false when n exceeds the burst and never fits.
func (l *limiters) take(key string, n int, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > limiterSweepInterval {
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	if n > l.burst {
		// Never fits: say when a full burst would be there, so a client that splits the request
		// knows when to send.
		return max(time.Second, time.Duration(math.Ceil(float64(l.burst)/float64(l.limit)*float64(time.Second)))), false
	}
	res := b.ReserveN(now, n)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, true
	}
	return 0, true
}
