package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// How serve learns the sink's largest event (sink.EventLimiter: a Kafka topic's max.message.bytes).
const (
	// eventLimitStartWait bounds the wait for the answer at start, before the API serves: a
	// broker that is down then (a normal day) delays the start this long at most, and the API
	// serves with --max-event-bytes meanwhile.
	eventLimitStartWait = 5 * time.Second
	// eventLimitRetry is how often serve asks again while the sink cannot be asked.
	eventLimitRetry = 30 * time.Second
	// eventLimitRefresh is how often serve asks again once it has an answer: a topic's
	// max.message.bytes can be changed while the stamp runs.
	eventLimitRefresh = 5 * time.Minute
)

// eventLimitWatch keeps the API's event limit at the smaller of --max-event-bytes and what the
// sink says of its destination. It is owned by the goroutine that calls start and then Run.
type eventLimitWatch struct {
	lim     sink.EventLimiter
	flag    int                        // --max-event-bytes; 0 means no limit of its own
	set     func(n int, source string) // the API's (ingest.Server.SetMaxEventBytes)
	log     *slog.Logger
	known   bool          // the sink answered at least once
	failing bool          // the last ask failed (logged once per failing spell)
	inForce int           // the limit last set
	retry   time.Duration // eventLimitRetry
	refresh time.Duration // eventLimitRefresh
}

func newEventLimitWatch(lim sink.EventLimiter, flag int, set func(int, string), log *slog.Logger) *eventLimitWatch {
	return &eventLimitWatch{lim: lim, flag: flag, set: set, log: log, inForce: flag,
		retry: eventLimitRetry, refresh: eventLimitRefresh}
}

// start asks once, within eventLimitStartWait; on failure the API keeps --max-event-bytes and
// the log says so.
func (w *eventLimitWatch) start(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, eventLimitStartWait)
	defer cancel()
	w.ask(ctx)
}

// Run asks again every retry while the sink cannot be asked, every refresh once it could,
// until ctx ends.
func (w *eventLimitWatch) Run(ctx context.Context) error {
	for {
		every := w.refresh
		if !w.known || w.failing {
			every = w.retry
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, sinkCheckTimeout)
		w.ask(actx)
		cancel()
	}
}

// ask asks the sink once and sets the API's limit from the answer.
func (w *eventLimitWatch) ask(ctx context.Context) {
	n, source, err := w.lim.EventLimit(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down
	}
	if err != nil {
		if !w.failing {
			if w.known {
				w.log.Warn("cannot read the sink's event limit; the API keeps the last one read",
					"max_event_bytes", w.inForce, "err", err, "retry_every", w.retry)
			} else {
				w.log.Warn("cannot read the sink's event limit at start: the API refuses events over --max-event-bytes until it can",
					"max_event_bytes", w.flag, "err", err, "retry_every", w.retry)
			}
		}
		w.failing = true
		return
	}
	limit := n
	if w.flag > 0 && w.flag <= n {
		limit, source = w.flag, "--max-event-bytes"
	}
	if w.known && !w.failing && limit == w.inForce {
		return
	}
	w.set(limit, source)
	w.log.Info("event limit from the sink: the API answers 413 for a message whose event would pass it",
		"max_event_bytes", limit, "source", source, "sink_says", n, "flag", w.flag)
	w.known, w.failing, w.inForce = true, false, limit
}
