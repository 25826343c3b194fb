package client

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// endpoint is one stamp's health, guarded by Client.mu.
type endpoint struct {
	name      string // as in Config.Endpoints
	base      string // name without a trailing slash
	healthy   bool
	failures  int       // consecutive failures
	downUntil time.Time // not tried (by Send or the prober) before this
	acked     int64     // messages this endpoint acked
	failed    int64     // tries of Send that failed at this endpoint by its fault
}

// backoff is how long an endpoint is left alone after its failures-th consecutive failure:
// min doubled per failure, capped at max, then jittered into [d/2, d] so that many clients that
// saw the same outage do not come back in step.
func backoff(failures int, lo, hi time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if jitter != nil && d > 1 {
		d = d/2 + jitter(d/2+1)
	}
	return d
}

// randJitter returns a random duration in [0, n).
func randJitter(n time.Duration) time.Duration { return rand.N(n) }

func (c *Client) markHealthy(ep *endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep.healthy, ep.failures, ep.downUntil = true, 0, time.Time{}
}

// markFailed takes ep out of service for its backoff, and at least retryAfter.
func (c *Client) markFailed(ep *endpoint, retryAfter time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep.healthy = false
	ep.failures++
	d := max(backoff(ep.failures, c.cfg.BackoffMin, c.cfg.BackoffMax, randJitter), retryAfter)
	ep.downUntil = time.Now().Add(d)
}

// pick returns the endpoint for the next try: the first healthy one in order; when none is
// healthy, the first whose backoff has passed (a trial by traffic); when every endpoint is in
// backoff, it waits for the earliest to come out, or for ctx or Close.
func (c *Client) pick(ctx context.Context) (*endpoint, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		now := time.Now()
		var trial *endpoint
		earliest := time.Time{}
		for _, ep := range c.endpoints {
			if ep.healthy {
				c.mu.Unlock()
				return ep, nil
			}
			if trial == nil && !now.Before(ep.downUntil) {
				trial = ep
			}
			if earliest.IsZero() || ep.downUntil.Before(earliest) {
				earliest = ep.downUntil
			}
		}
		c.mu.Unlock()
		if trial != nil {
			return trial, nil
		}
		t := time.NewTimer(time.Until(earliest))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.closing:
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

// startProber starts the prober on the first Send, so New starts no goroutine.
func (c *Client) startProber() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started || c.cfg.ProbeInterval < 0 {
		return nil
	}
	c.started = true
	ctx, stop := context.WithCancel(context.Background())
	c.stop, c.done = stop, make(chan struct{})
	go c.probe(ctx, c.done)
	return nil
}

// probe runs until ctx ends: every ProbeInterval it checks the /readyz of each unhealthy
// endpoint whose backoff has passed, one at a time. A ready endpoint is healthy again, and
// pick prefers it at once; a failed probe extends its backoff as a failed send would.
func (c *Client) probe(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		var due []*endpoint
		now := time.Now()
		for _, ep := range c.endpoints {
			if !ep.healthy && !now.Before(ep.downUntil) {
				due = append(due, ep)
			}
		}
		c.mu.Unlock()
		for _, ep := range due {
			err := c.checkReady(ctx, ep)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				c.markHealthy(ep)
			} else {
				c.markFailed(ep, retryAfterOf(err))
			}
		}
	}
}

// checkReady asks ep's /readyz; nil means ready.
func (c *Client) checkReady(ctx context.Context, ep *endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.base+"/readyz", nil)
	if err != nil {
		return err
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", ep.name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("probe %s: %w", ep.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := newError(ep.name, resp.StatusCode, data)
		e.retryAfter = retryAfter(resp.Header, time.Now())
		return e
	}
	return nil
}
