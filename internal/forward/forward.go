// Package forward provides the forwarder: it claims segments from the spool, cuts them into
// batches the sink accepts, sends several batches at once, and ends each claim according to what
// the sink said about every message.
//
// Guarantees:
//   - A segment is acked only after every one of its messages was Delivered or dead-lettered;
//     a mixed outcome is settled (spool.Settle): the Permanent failures go to dead/ with the
//     sink's reason, the Transient ones back to ready/ with a not-before time. Nothing a claim
//     holds is dropped: a crash at any point leaves the segment claimed, and the reaper returns
//     it (a duplicate downstream, never a loss).
//   - An expired message (message.Message.Expired) is never sent and never dropped: it is taken
//     out of its batch just before the batch would be sent, and dead-lettered with a reason
//     that starts "expired:" through the same settle as the sink's refusals, while the rest of
//     its segment is delivered. A segment that is all expired costs no send and waits on no
//     breaker.
//   - Transient failures are retried with exponential backoff and full jitter, capped at
//     RetryMaxDelay, behind a circuit breaker. While the breaker is open no new segment is
//     claimed, the claims held are renewed before their lease ends (or released with a
//     not-before time after MaxHold), and one batch probes the sink every probe interval, so
//     delivery resumes within one interval of the sink's return.
//   - Each Send runs under a deadline inside the claim's lease (deadline − LeaseMargin); the
//     claim is renewed between sends when less than half its lease is left.
//   - A message that keeps failing while the sink otherwise works (poison) costs its segment
//     one spool attempt per RetriesPerClaim rounds, and reaches dead/ at the spool's
//     MaxAttempts; a batch that fails as a whole is halved on the next round, so a poison
//     message does not take its batch-mates down with it.
//   - Every forwarder runs the spool's reaper (spool.Reap) every ReapInterval.
//   - When Run's context ends, no new segment is claimed; sends in flight get ShutdownGrace to
//     finish, and everything not delivered goes back to ready/ at once.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// Spool is what the forwarder needs of *spool.Spool.
type Spool interface {
	Claim(ctx context.Context) (*spool.Claim, error)
	Renew(ctx context.Context, c *spool.Claim) error
	Settle(ctx context.Context, c *spool.Claim, o spool.Outcome) error
	Reap(ctx context.Context) (spool.ReapStats, error)
	// Outranked reports whether a segment of a higher priority than c's is waiting.
	Outranked(c *spool.Claim) bool
}

var _ Spool = (*spool.Spool)(nil)

// Defaults for Config fields left zero.
const (
	DefaultConcurrency       = 4
	DefaultRetryInitialDelay = 100 * time.Millisecond
	DefaultRetryMaxDelay     = 30 * time.Second
	DefaultRetriesPerClaim   = 3
	DefaultFailureThreshold  = 5
	DefaultProbeInterval     = 5 * time.Second
	DefaultLeaseMargin       = 5 * time.Second
	DefaultSendTimeout       = 10 * time.Second
	DefaultMaxHold           = 10 * time.Minute
	DefaultIdleMinDelay      = 5 * time.Millisecond
	DefaultIdleMaxDelay      = 250 * time.Millisecond
	DefaultReapInterval      = 10 * time.Second
	DefaultShutdownGrace     = 10 * time.Second
)

// BreakerConfig configures the circuit breaker in front of the sink.
type BreakerConfig struct {
	// FailureThreshold is how many consecutive failed sends (every message Transient) open the
	// breaker; default 5.
	FailureThreshold int
	// ProbeInterval is how long the breaker stays open before one batch probes the sink; the
	// longest delivery waits after the sink is back. Default 5 s.
	ProbeInterval time.Duration
}

// Config configures a Forwarder. Zero fields take the documented defaults.
type Config struct {
	// Spool is the spool to drain (a *spool.Spool). Required.
	Spool Spool
	// Sink is the destination. Required. The forwarder does not close it.
	Sink sink.Sink
	// SinkName names the sink's kind in Status (for example "kafka"); optional.
	SinkName string
	// Concurrency is how many segments, hence batches, are in flight at once
	// (--forward-concurrency); default 4.
	Concurrency int
	// RetryInitialDelay is the first backoff delay after a transient failure; default 100 ms.
	RetryInitialDelay time.Duration
	// RetryMaxDelay caps the backoff delay (--retry-max-delay); default 30 s.
	RetryMaxDelay time.Duration
	// RetriesPerClaim is how many send rounds a claim gets while the sink works (breaker
	// closed) before its undelivered messages go back to the spool with a not-before time,
	// which costs the segment one of the spool's MaxAttempts; default 3.
	RetriesPerClaim int
	// Breaker configures the circuit breaker.
	Breaker BreakerConfig
	// LeaseMargin is how long before a claim's deadline every send must have ended; default
	// 5 s, at most a quarter of the lease.
	LeaseMargin time.Duration
	// SendTimeout bounds one Send; default 10 s (and always within the lease).
	SendTimeout time.Duration
	// MaxHold is how long a claim waits on an open breaker (renewed meanwhile) before it is
	// released with a not-before time; default 10 min.
	MaxHold time.Duration
	// IdleMinDelay and IdleMaxDelay bound the backoff between claims when the spool is empty
	// (doubling from min to max, back to min after a claim); defaults 5 ms and 250 ms.
	IdleMinDelay time.Duration
	IdleMaxDelay time.Duration
	// ReapInterval is how often the spool's reaper runs; default 10 s; negative disables it
	// (another forwarder, or the spool itself, reaps).
	ReapInterval time.Duration
	// ShutdownGrace is how long in-flight sends may go on after Run's context ended; default 10 s.
	ShutdownGrace time.Duration
	// Logger receives the forwarder's logs; nil means none.
	Logger *slog.Logger
	// Registerer receives the forwarder's metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// Now is the clock for not-before times and hold limits; nil means time.Now.
	Now func() time.Time

	rand func() float64 // backoff jitter source; tests set it
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RetriesPerClaim == 0 {
		c.RetriesPerClaim = DefaultRetriesPerClaim
	}
	if c.Breaker.FailureThreshold == 0 {
		c.Breaker.FailureThreshold = DefaultFailureThreshold
	}
	def(&c.RetryInitialDelay, DefaultRetryInitialDelay)
	def(&c.RetryMaxDelay, DefaultRetryMaxDelay)
	def(&c.Breaker.ProbeInterval, DefaultProbeInterval)
	def(&c.LeaseMargin, DefaultLeaseMargin)
	def(&c.SendTimeout, DefaultSendTimeout)
	def(&c.MaxHold, DefaultMaxHold)
	def(&c.IdleMinDelay, DefaultIdleMinDelay)
	def(&c.IdleMaxDelay, DefaultIdleMaxDelay)
	def(&c.ReapInterval, DefaultReapInterval)
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// validate names the first bad field.
func (c *Config) validate() error {
	switch {
	case c.Spool == nil:
		return errors.New("forward: Spool is required")
	case c.Sink == nil:
		return errors.New("forward: Sink is required")
	case c.Concurrency < 0:
		return fmt.Errorf("forward: Concurrency %d is negative", c.Concurrency)
	case c.RetriesPerClaim < 0:
		return fmt.Errorf("forward: RetriesPerClaim %d is negative", c.RetriesPerClaim)
	case c.Breaker.FailureThreshold < 0:
		return fmt.Errorf("forward: Breaker.FailureThreshold %d is negative", c.Breaker.FailureThreshold)
	case c.RetryInitialDelay < 0, c.RetryMaxDelay < 0, c.Breaker.ProbeInterval < 0, c.LeaseMargin < 0,
		c.SendTimeout < 0, c.MaxHold < 0, c.IdleMinDelay < 0, c.IdleMaxDelay < 0, c.ShutdownGrace < 0:
		return errors.New("forward: durations other than ReapInterval must not be negative")
	}
	// After defaults: the relations between fields.
	switch {
	case c.RetryInitialDelay > c.RetryMaxDelay && c.RetryMaxDelay != 0:
		return fmt.Errorf("forward: RetryInitialDelay %v exceeds RetryMaxDelay %v", c.RetryInitialDelay, c.RetryMaxDelay)
	case c.IdleMinDelay > c.IdleMaxDelay && c.IdleMaxDelay != 0:
		return fmt.Errorf("forward: IdleMinDelay %v exceeds IdleMaxDelay %v", c.IdleMinDelay, c.IdleMaxDelay)
	}
	return nil
}

// Forwarder drains a spool into a sink. Build it with New, run it with Run. Its workers share
// the breaker (which guards its own state) and the metrics; each claim is owned by the one
// worker goroutine that claimed it.
type Forwarder struct {
	cfg     Config
	sp      Spool
	sink    sink.Sink
	limits  sink.Limits
	log     *slog.Logger
	m       *metrics
	br      *breaker
	check   atomic.Pointer[CheckStatus] // the last reported sink check (ReportCheck)
	running atomic.Bool
	// expiredLog limits the log of expired messages to a line a second (the counter sees all).
	expiredLog rate.Sometimes
}

// New checks cfg and builds a Forwarder; it starts nothing (see Run).
func New(cfg Config) (*Forwarder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "forwarder")
	return &Forwarder{
		cfg: cfg, sp: cfg.Spool, sink: cfg.Sink, limits: cfg.Sink.Limits(), log: log, m: m,
		br:         newBreaker(cfg.Breaker.FailureThreshold, cfg.Breaker.ProbeInterval, log, m.breaker),
		expiredLog: rate.Sometimes{Interval: time.Second},
	}, nil
}

// Run forwards until ctx ends, then stops claiming, lets in-flight sends finish within
// ShutdownGrace, returns everything undelivered to ready/ and returns nil. It may be called once.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("forward: Run called twice")
	}
	// hard bounds the sends: it outlives ctx by ShutdownGrace.
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	var wg sync.WaitGroup
	for range f.cfg.Concurrency {
		wg.Go(func() { f.worker(ctx, hard) })
	}
	wg.Go(func() { f.maintain(ctx) })
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	f.log.Info("stopping: no new claims; finishing or releasing the claims in flight", "grace", f.cfg.ShutdownGrace)
	t := time.NewTimer(f.cfg.ShutdownGrace)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
		f.log.Warn("shutdown grace over: abandoning the sends in flight, releasing their claims")
		hardCancel()
		<-finished
	}
	return nil
}

// maintain runs the reaper.
func (f *Forwarder) maintain(ctx context.Context) {
	var reap <-chan time.Time
	if f.cfg.ReapInterval > 0 {
		t := time.NewTicker(f.cfg.ReapInterval)
		defer t.Stop()
		reap = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reap:
			rs, err := f.sp.Reap(ctx)
			if err != nil && ctx.Err() == nil {
				f.log.Error("reaper failed", "err", err)
			}
			if rs.Reclaimed+rs.DeadLettered+rs.Orphans > 0 {
				f.log.Info("reaper", "reclaimed", rs.Reclaimed, "dead_lettered", rs.DeadLettered, "orphans", rs.Orphans)
			}
		}
	}
}

// worker claims one segment at a time and forwards it.
func (f *Forwarder) worker(ctx, hard context.Context) {
	idle := f.cfg.IdleMinDelay
	for ctx.Err() == nil {
		if err := f.waitNotOpen(ctx); err != nil {
			return
		}
		c, err := f.sp.Claim(ctx)
		switch {
		case err == nil && c != nil:
			idle = f.cfg.IdleMinDelay
			f.forward(ctx, hard, c)
			continue
		case errors.Is(err, spool.ErrEmpty), err == nil:
		case ctx.Err() != nil:
			return
		default:
			f.log.Error("claim failed", "err", err)
			idle = f.cfg.IdleMaxDelay
		}
		if sleep(ctx, idle) != nil {
			return
		}
		idle = min(2*idle, f.cfg.IdleMaxDelay)
	}
}

// waitNotOpen returns once the breaker is closed or ready to probe: a worker without a claim
// claims nothing while the sink is known to be down.
func (f *Forwarder) waitNotOpen(ctx context.Context) error {
	for f.br.state() == gobreaker.StateOpen {
		changed, probeAt := f.br.watch()
		t := time.NewTimer(max(time.Until(probeAt), time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
	return ctx.Err()
}

// Errors that end a claim's sending early.
var (
	errLost    = errors.New("claim lost")
	errHold    = errors.New("held too long on an open breaker")
	errOutrank = errors.New("a higher priority waits")
	errStopped = errors.New("forwarder stopping")
)

// job is one claim being forwarded; owned by one worker goroutine.
type job struct {
	c         *spool.Claim
	lease     time.Duration // the spool's lease, as seen at claim time
	margin    time.Duration // sends end this long before the deadline
	heldSince time.Time     // when the breaker first refused this claim a send; zero if not waiting
	yield     bool          // this claim's last probe failed: let another claim probe first
	bo        *fullJitter
	dead      []message.Message
	reasons   []string
	expired   []message.Message // found expired before a send: dead-lettered, never sent
}

// forward sends c's messages in rounds until each was delivered or dead-lettered, or the claim
// must go back, then ends the claim.
func (f *Forwarder) forward(ctx, hard context.Context, c *spool.Claim) {
	lease := c.Deadline.Sub(f.cfg.Now())
	j := &job{
		c: c, lease: lease, margin: min(f.cfg.LeaseMargin, lease/4),
		bo: newFullJitter(f.cfg.RetryInitialDelay, f.cfg.RetryMaxDelay, f.cfg.rand),
	}
	pending := c.Messages
	var notBefore time.Time
	rounds, capMsgs := 0, 0
	for len(pending) > 0 {
		left, failedBatch, throttleWait, err := f.round(ctx, hard, j, pending, capMsgs)
		pending = left
		if errors.Is(err, errLost) {
			return // not ours any more: its new owner delivers what we did not
		}
		if len(pending) == 0 {
			break
		}
		if errors.Is(err, errOutrank) {
			// Held through an outage while alarms queued behind it: back to ready/ at once,
			// to be claimed again in priority order.
			f.log.Info("releasing a claim held on an open breaker: a higher priority waits", "segment", c.ID, "priority", c.Priority)
			break
		}
		if errors.Is(err, errHold) {
			notBefore = f.cfg.Now().Add(j.bo.NextBackOff())
			f.log.Warn("releasing a claim held on an open breaker", "segment", c.ID, "held", f.cfg.MaxHold, "not_before", notBefore)
			break
		}
		if err != nil { // stopping: back to ready/ at once, for another forwarder
			break
		}
		// A throttled round (the sink is up and asked to slow down) waits as long as the sink
		// said, holding the claim, and counts against nothing: a long throttle costs no attempts.
		wait := throttleWait
		if wait == 0 {
			// A round counts against the claim only while the sink works for others (breaker
			// closed): an outage must not use up a segment's attempts.
			if f.br.state() == gobreaker.StateClosed {
				rounds++
			}
			if rounds >= f.cfg.RetriesPerClaim {
				notBefore = f.cfg.Now().Add(j.bo.NextBackOff())
				break
			}
			if failedBatch > 1 {
				capMsgs = (failedBatch + 1) / 2 // isolate a poison message by halving
			}
			wait = j.bo.NextBackOff()
		}
		if err := f.pause(ctx, j, wait); err != nil {
			if errors.Is(err, errLost) {
				return
			}
			break
		}
	}
	f.settle(j, pending, notBefore)
}

// round sends pending once, in batches of at most capMsgs messages when capMsgs > 0. It returns
// the messages still undelivered (Transient or Throttled, or not sent because the round
// stopped), the size of the largest batch that failed whole (0 if none), whether every message
// the sink refused was throttled, how long to wait before the next round (its longest hint, at
// least RetryInitialDelay; 0 when anything failed otherwise), and why it stopped early, if it did.
func (f *Forwarder) round(ctx, hard context.Context, j *job, pending []message.Message, capMsgs int) ([]message.Message, int, time.Duration, error) {
	var left []message.Message
	failed := 0
	var hint time.Duration // the longest RetryAfter of a throttled message
	transients := false
	throttleWait := func() time.Duration {
		if transients || len(left) == 0 {
			return 0
		}
		return max(hint, f.cfg.RetryInitialDelay)
	}
	batches := cut(pending, f.limits, capMsgs)
	// rest adds the batches from i on, unsent, to left.
	rest := func(i int) []message.Message {
		for _, b := range batches[i:] {
			left = append(left, b...)
		}
		return left
	}
	for i, b := range batches {
		if ctx.Err() != nil {
			return rest(i), 0, 0, errStopped
		}
		// Judged before every batch: a message may expire while its claim waits or retries.
		b = f.takeExpired(j, b)
		batches[i] = b // rest must not hand back what was taken
		if len(b) == 0 {
			continue
		}
		if err := f.renewIfDue(j); err != nil {
			return rest(i), 0, 0, err
		}
		done, err := f.admit(ctx, j)
		if err != nil {
			return rest(i), 0, 0, err
		}
		res := f.send(hard, j, b, done)
		delivered, transient, throttled := 0, 0, 0
		for k, r := range res {
			switch r.Status {
			case sink.Delivered:
				delivered++
			case sink.Permanent:
				j.dead = append(j.dead, b[k])
				j.reasons = append(j.reasons, fmt.Sprintf("%s: %v", b[k].ID, r.Err))
			case sink.Throttled:
				throttled++
				hint = max(hint, r.RetryAfter)
				left = append(left, b[k])
			default:
				transient++
				left = append(left, b[k])
			}
		}
		f.m.countDelivered(j.c.Priority, delivered) // a segment holds one priority
		f.m.retried.Add(float64(transient))
		f.m.throttled.Add(float64(throttled))
		transients = transients || transient > 0
		if throttled == len(b) {
			// Asked to slow down: send nothing more this round.
			return rest(i + 1), failed, throttleWait(), nil
		}
		if transient == len(b) {
			failed = max(failed, len(b))
			if capMsgs == 0 {
				// The whole batch failed: the sink is likely failing; stop this round here
				// and back off rather than push the remaining batches into it.
				return rest(i + 1), failed, 0, nil
			}
			// Bisecting (an earlier round failed whole while the sink worked): go on, so
			// the batches without the poison are delivered.
		}
	}
	return left, failed, throttleWait(), nil
}

// takeExpired moves the messages of b that have expired to j.expired and returns the others:
// b itself when none has expired, otherwise a new slice (b may share an array with the claim).
func (f *Forwarder) takeExpired(j *job, b []message.Message) []message.Message {
	now := f.cfg.Now()
	first := -1
	for i := range b {
		if b[i].Expired(now) {
			first = i
			break
		}
	}
	if first < 0 {
		return b
	}
	live := append(make([]message.Message, 0, len(b)-1), b[:first]...)
	for i := first; i < len(b); i++ {
		if b[i].Expired(now) {
			j.expired = append(j.expired, b[i])
		} else {
			live = append(live, b[i])
		}
	}
	return live
}

// expiredReason is the dead-letter reason of expired messages: how many, and when their ttl ran
// out ("expired: 3 messages, ttl ran out at 2026-12-03T08:01:30Z", or "from … to …").
func expiredReason(msgs []message.Message) string {
	byExpiry := func(a, b message.Message) int { return a.ExpiresAt.Compare(b.ExpiresAt) }
	first, last := slices.MinFunc(msgs, byExpiry).ExpiresAt, slices.MaxFunc(msgs, byExpiry).ExpiresAt
	noun := "messages"
	if len(msgs) == 1 {
		noun = "message"
	}
	a, b := first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339)
	if a == b {
		return fmt.Sprintf("expired: %d %s, ttl ran out at %s", len(msgs), noun, a)
	}
	return fmt.Sprintf("expired: %d %s, ttl ran out from %s to %s", len(msgs), noun, a, b)
}

// send sends one batch under a deadline inside the lease and reports the outcome to the
// breaker. A Send that returns a wrong number of results is treated as all Transient.
func (f *Forwarder) send(hard context.Context, j *job, b []message.Message, done func(error)) []sink.Result {
	deadline := f.cfg.Now().Add(f.cfg.SendTimeout)
	if d := j.c.Deadline.Add(-j.margin); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithTimeout(hard, deadline.Sub(f.cfg.Now()))
	defer cancel()
	start := time.Now()
	res := f.sink.Send(ctx, b)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Cut off by the deadline: its duration is the timeout, not the sink's latency.
		f.m.sendTimeouts.Inc()
	} else {
		f.m.sendSeconds.Observe(time.Since(start).Seconds())
	}
	f.m.batchSize.Observe(float64(len(b)))
	if len(res) != len(b) {
		err := fmt.Errorf("sink contract violation: %d results for %d messages", len(res), len(b))
		f.log.Error("sink returned the wrong number of results", "err", err)
		res = sink.All(len(b), sink.Result{Status: sink.Transient, Err: err})
	}
	var firstErr error
	allTransient := true
	for _, r := range res {
		if r.Status != sink.Transient {
			allTransient = false
			break
		}
		if firstErr == nil {
			firstErr = r.Err
		}
	}
	switch {
	case !allTransient:
		j.yield = false
		done(nil)
	case hard.Err() != nil:
		done(errExcluded)
	default:
		if firstErr == nil {
			firstErr = errors.New("transient failure")
		}
		done(firstErr)
		j.yield = true
	}
	return res
}

// admit waits until the breaker lets a batch of j through, renewing j's claim meanwhile. It
// fails with ctx's end (errStopped), errHold after MaxHold, errLost, or errOutrank when j waited
// on the breaker and, once let through, a higher priority than j's is waiting.
func (f *Forwarder) admit(ctx context.Context, j *job) (func(error), error) {
	for {
		if j.yield && f.br.state() != gobreaker.StateClosed {
			// This claim's last send failed: give another claim the next probe, in case the
			// fault is in this claim's messages rather than in the sink.
			j.yield = false
			if err := f.pause(ctx, j, min(f.cfg.Breaker.ProbeInterval/4, 250*time.Millisecond)); err != nil {
				return nil, err
			}
		}
		done, err := f.br.allow()
		if err == nil {
			held := !j.heldSince.IsZero()
			j.heldSince = time.Time{}
			if held && f.sp.Outranked(j.c) {
				done(errExcluded)
				return nil, errOutrank
			}
			return done, nil
		}
		now := f.cfg.Now()
		if j.heldSince.IsZero() {
			j.heldSince = now
		} else if now.Sub(j.heldSince) >= f.cfg.MaxHold {
			return nil, errHold
		}
		changed, probeAt := f.br.watch()
		wait := time.Until(probeAt)
		if errors.Is(err, gobreaker.ErrTooManyRequests) || wait <= 0 {
			wait = f.cfg.Breaker.ProbeInterval // a probe is in flight: its end changes the state
		}
		wait = min(wait, f.cfg.MaxHold-now.Sub(j.heldSince)+time.Millisecond)
		if err := f.waitRenewing(ctx, j, wait, changed); err != nil {
			return nil, err
		}
	}
}

// pause waits d (the backoff), renewing j's claim meanwhile.
func (f *Forwarder) pause(ctx context.Context, j *job, d time.Duration) error {
	return f.waitRenewing(ctx, j, d, nil)
}

// waitRenewing waits d, or until wake is closed, renewing the claim whenever less than half its
// lease is left. It fails with errStopped when ctx ends, or errLost.
func (f *Forwarder) waitRenewing(ctx context.Context, j *job, d time.Duration, wake <-chan struct{}) error {
	end := time.Now().Add(d)
	for {
		if err := f.renewIfDue(j); err != nil {
			return err
		}
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		renewIn := j.c.Deadline.Sub(f.cfg.Now()) - j.lease/2
		t := time.NewTimer(max(min(left, renewIn), time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return errStopped
		case <-wake:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// renewIfDue renews j's claim when less than half its lease is left. A claim taken over is
// errLost; a claim that could not be renewed and is about to expire is given up as lost too
// (the reaper returns it; its messages may be delivered twice).
func (f *Forwarder) renewIfDue(j *job) error {
	now := f.cfg.Now()
	if j.c.Deadline.Sub(now) >= j.lease/2 {
		return nil
	}
	err := f.sp.Renew(context.Background(), j.c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spool.ErrLostClaim):
		f.m.lostClaims.Inc()
		f.log.Warn("claim taken over while forwarding: its messages may be delivered twice", "segment", j.c.ID, "err", err)
		return errLost
	case !now.Before(j.c.Deadline.Add(-j.margin)):
		f.m.lostClaims.Inc()
		f.log.Error("cannot renew an expiring claim: giving it up to the reaper", "segment", j.c.ID, "err", err)
		return errLost
	default:
		f.log.Warn("renew failed; will retry", "segment", j.c.ID, "err", err)
		return nil
	}
}

// maxReasonBytes bounds a dead-letter reason made of many messages' reasons.
const maxReasonBytes = 4096

// settle ends j's claim: Ack when everything was delivered, otherwise Settle with the retries
// (not before notBefore) and the dead messages: the sink's refusals and the expired ones, in one
// dead segment. Its reason starts "expired:" only when every one of them expired, so that an
// operator who finds dead letters by that word finds no refusal of the sink among them.
func (f *Forwarder) settle(j *job, retry []message.Message, notBefore time.Time) {
	o := spool.Outcome{Retry: retry, NotBefore: notBefore, Dead: slices.Concat(j.dead, j.expired)}
	var reasons []string
	expired := ""
	if len(j.dead) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%d message(s) refused permanently by the sink: ", len(j.dead))
		for i, r := range j.reasons {
			if b.Len()+len(r) > maxReasonBytes {
				fmt.Fprintf(&b, "; and %d more", len(j.reasons)-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(r)
		}
		reasons = append(reasons, b.String())
	}
	if len(j.expired) > 0 {
		expired = expiredReason(j.expired)
		reasons = append(reasons, expired)
	}
	o.Reason = strings.Join(reasons, "; and ")
	err := f.sp.Settle(context.Background(), j.c, o)
	switch {
	case err == nil:
		f.m.deadLettered.Add(float64(len(j.dead)))
		if len(j.dead) > 0 {
			f.log.Warn("dead-lettered messages the sink refused", "segment", j.c.ID, "count", len(j.dead), "reason", o.Reason)
		}
		if len(j.expired) > 0 {
			f.m.countExpired(j.expired)
			f.expiredLog.Do(func() {
				f.log.Warn("dead-lettered expired messages (at most one such line a second; bridgehead_forward_expired_messages_total counts them all)",
					"segment", j.c.ID, "count", len(j.expired), "reason", expired)
			})
		}
	case errors.Is(err, spool.ErrLostClaim):
		f.m.lostClaims.Inc()
		f.log.Warn("claim taken over before it was settled: its messages may be delivered twice", "segment", j.c.ID, "err", err)
	default:
		// The claim stays in claimed/: the reaper returns it after its lease (a duplicate of
		// what was delivered, never a loss).
		f.log.Error("settle failed; the reaper will return the segment", "segment", j.c.ID, "err", err)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
