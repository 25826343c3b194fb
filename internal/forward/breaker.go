package forward

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// errExcluded marks a send outcome that says nothing about the sink (the forwarder itself gave
// up on it at shutdown): it neither trips nor closes the breaker.
var errExcluded = errors.New("send abandoned by the forwarder")

// breaker wraps a gobreaker two-step circuit breaker shared by all of a forwarder's workers. A
// failure is a Send whose every message came back Transient; ReadyToTrip opens the breaker after
// threshold consecutive failures; after probe (the probe interval) one send is let through
// (half-open): its success closes the breaker, its failure opens it for another interval.
//
// It adds what workers need to wait well: a channel closed on every state change, the time the
// next probe is due, and the last failure (logged as the reason the breaker opened).
// mu guards openedAt, changed and lastErr; gobreaker guards its own state.
type breaker struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	probe time.Duration
	// tripping makes the next failure open the breaker at once (trip), whatever the threshold.
	tripping atomic.Bool
	log      *slog.Logger
	gauge    prometheus.Gauge

	mu        sync.Mutex
	openedAt  time.Time
	changed   chan struct{}
	lastErr   error
	lastErrAt time.Time
}

func newBreaker(threshold int, probe time.Duration, log *slog.Logger, gauge prometheus.Gauge) *breaker {
	b := &breaker{probe: probe, log: log, gauge: gauge, changed: make(chan struct{})}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "sink",
		MaxRequests: 1,
		Timeout:     probe,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return b.tripping.Load() || c.ConsecutiveFailures >= uint32(threshold)
		},
		// Called with gobreaker's lock held: it must not call back into cb.
		OnStateChange: b.onChange,
		IsExcluded:    func(err error) bool { return errors.Is(err, errExcluded) },
	})
	return b
}

func (b *breaker) onChange(_ string, from, to gobreaker.State) {
	b.mu.Lock()
	if to == gobreaker.StateOpen {
		b.openedAt = time.Now()
	}
	reason := b.lastErr
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	b.gauge.Set(float64(to))
	switch {
	case to == gobreaker.StateOpen && from == gobreaker.StateClosed:
		b.log.Error("circuit breaker opened: the sink keeps failing; claims are held and renewed, and the sink is probed",
			"reason", errString(reason), "probe_interval", b.probe)
	case to == gobreaker.StateOpen:
		b.log.Warn("probe failed: circuit breaker open again", "reason", errString(reason), "probe_interval", b.probe)
	case to == gobreaker.StateHalfOpen:
		b.log.Info("circuit breaker half-open: probing the sink with one batch")
	case to == gobreaker.StateClosed:
		b.log.Info("circuit breaker closed: the sink answers again; delivery resumes")
	}
}

func errString(err error) string {
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

// allow asks to send one batch. It returns gobreaker.ErrOpenState or ErrTooManyRequests (a
// probe is in flight), or a done function that must be called exactly once with the outcome:
// nil (success), an error wrapping errExcluded, or the failure.
func (b *breaker) allow() (func(error), error) {
	done, err := b.cb.Allow()
	if err != nil {
		return nil, err
	}
	return func(err error) {
		if err != nil && !errors.Is(err, errExcluded) {
			b.mu.Lock()
			b.lastErr, b.lastErrAt = err, time.Now()
			b.mu.Unlock()
		}
		done(err)
	}, nil
}

// trip opens a closed breaker with err as the reason, for a failure seen outside a send (a sink
// check that could not reach the sink): one failure, counted with the threshold set aside, rather
// than threshold made-up ones. It does nothing to a breaker that is not closed.
func (b *breaker) trip(err error) {
	if b.cb.State() != gobreaker.StateClosed {
		return
	}
	done, aerr := b.allow()
	if aerr != nil {
		return
	}
	b.tripping.Store(true) // this one failure is enough
	done(err)
	b.tripping.Store(false)
}

func (b *breaker) state() gobreaker.State { return b.cb.State() }

// last returns the last failed send's error and when it happened (nil and zero if none).
func (b *breaker) last() (time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErrAt, b.lastErr
}

// watch returns a channel closed at the next state change and when the next probe is due (the
// zero time if the breaker has never opened).
func (b *breaker) watch() (<-chan struct{}, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openedAt.IsZero() {
		return b.changed, time.Time{}
	}
	return b.changed, b.openedAt.Add(b.probe)
}
