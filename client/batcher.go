package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults of BatcherConfig.
const (
	DefaultBatchWindow      = 100 * time.Millisecond
	DefaultBatchMaxMessages = 1000
	DefaultBatchMaxBytes    = 8 << 20
)

// messageOverhead approximates the JSON framing of one message in a request, in bytes.
const messageOverhead = 64

// BatcherConfig configures a Batcher. The zero value of each optional field means its default.
type BatcherConfig struct {
	// Window is the longest a message waits in the batcher before its request is sent, while no
	// earlier request is in flight. Default 100 ms.
	Window time.Duration
	// MaxMessages bounds the messages of one request, and the queue: Add blocks while
	// MaxMessages messages wait (back-pressure), so memory stays flat. Default 1000; the API
	// takes at most 10,000.
	MaxMessages int
	// MaxBytes bounds the approximate size of one request (values, properties, ids and JSON
	// framing). Default 8 MiB, half the API's default request limit.
	MaxBytes int
	// OnAcked is called with the acks of each acknowledged request, in order.
	OnAcked func(acks []Ack)
	// OnError is called with the messages of each request that was not acknowledged, and why
	// (an *Error when the stamp refused them as bad). Their IDs are set, so sending them again
	// yields the same correlationIds.
	OnError func(msgs []Message, err error)
	// OnRejected is called with each message a stamp refused by name: a 400 invalid-message or a
	// 403 forbidden whose errors name it by its index in the request. The other messages of that
	// request are sent again without it (a request is all or nothing, so none of them was
	// stored). errs are the stamp's problems with m, and err the whole answer. Default: the
	// rejected messages of a request go to OnError together, with err.
	//
	// The callbacks run on the batcher's goroutine, one at a time, and must not call Add, Flush
	// or Close.
	OnRejected func(m Message, errs []FieldError, err *Error)
}

func (c *BatcherConfig) validate() error {
	switch {
	case c.Window < 0:
		return fmt.Errorf("field Window: %v is negative", c.Window)
	case c.MaxMessages < 0 || c.MaxMessages > 10000:
		return fmt.Errorf("MaxMessages: %d is not in 1-10000", c.MaxMessages)
	case c.MaxBytes < 0:
		return fmt.Errorf("MaxBytes: %d is negative", c.MaxBytes)
	}
	return nil
}

func (c *BatcherConfig) setDefaults() {
	if c.Window == 0 {
		c.Window = DefaultBatchWindow
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultBatchMaxMessages
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultBatchMaxBytes
	}
	if c.OnAcked == nil {
		c.OnAcked = func([]Ack) {}
	}
	if c.OnError == nil {
		c.OnError = func([]Message, error) {}
	}
}

// rejected hands the messages a stamp refused by name to OnRejected, or to OnError.
func (c *BatcherConfig) rejected(msgs []Message, errs [][]FieldError, e *Error) {
	if c.OnRejected == nil {
		c.OnError(msgs, e)
		return
	}
	for i, m := range msgs {
		c.OnRejected(m, errs[i], e)
	}
}

// Batcher groups messages added one at a time into requests of the Client: a request leaves
// when Window has passed since its first message, or when it is full (MaxMessages, MaxBytes).
// One request is in flight at a time; meanwhile Add queues up to MaxMessages messages and
// then blocks. Results go to the callbacks. A request a stamp refuses naming some of its messages
// (400 invalid-message, 403 forbidden, by index) is sent again without them (OnRejected).
//
// The batcher's goroutine owns the batch being built; it is started by the first Add and
// stopped by Close. Its lifecycle fields are guarded by mu. A Batcher is safe for concurrent
// use.
type Batcher struct {
	c   *Client
	cfg BatcherConfig

	in      chan Message       // the bounded queue, read by the loop
	flushes chan chan struct{} // a Flush's reply channel, closed when everything before it was sent
	quit    chan struct{}      // closed by Close after the last Add: flush and return
	done    chan struct{}      // closed when the loop returns
	abort   context.CancelFunc // ends the loop's sends

	mu      sync.Mutex
	started bool
	closed  bool
	adding  sync.WaitGroup // Adds between their closed check and their enqueue
}

// NewBatcher returns a batcher sending through c. It starts no goroutine; call Close when done,
// before closing c.
func (c *Client) NewBatcher(cfg BatcherConfig) (*Batcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("batcher config: %w", err)
	}
	cfg.setDefaults()
	return &Batcher{
		c:       c,
		cfg:     cfg,
		in:      make(chan Message, cfg.MaxMessages),
		flushes: make(chan chan struct{}),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Add queues m to be sent within Window, giving it a random ID if it has none. It blocks while
// the queue is full, until there is room or ctx ends. After Close it returns ErrClosed.
func (b *Batcher) Add(ctx context.Context, m Message) error {
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if !b.started {
		b.started = true
		loopCtx, abort := context.WithCancel(context.Background())
		b.abort = abort
		go b.loop(loopCtx)
	}
	b.adding.Add(1)
	b.mu.Unlock()
	defer b.adding.Done()
	// The loop reads b.in until Close has seen every Add finish, so this cannot be stranded.
	select {
	case b.in <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush sends every message added before it and returns when their results have gone to the
// callbacks, or when ctx ends.
func (b *Batcher) Flush(ctx context.Context) error {
	b.mu.Lock()
	started, closed := b.started, b.closed
	b.mu.Unlock()
	if !started {
		return nil
	}
	if closed {
		return ErrClosed
	}
	reply := make(chan struct{})
	select {
	case b.flushes <- reply:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking messages, sends every message added, and returns when their results have
// gone to the callbacks. When ctx ends first, the requests in flight are abandoned (their
// messages go to OnError) and Close returns ctx's error once the goroutine has stopped. It is
// safe to call more than once.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	first := !b.closed
	b.closed = true
	started := b.started
	b.mu.Unlock()
	if !started {
		return nil
	}
	if first {
		// Wait for Adds that passed the closed check: the loop still drains b.in for them.
		added := make(chan struct{})
		go func() { b.adding.Wait(); close(added) }()
		select {
		case <-added:
		case <-ctx.Done():
			b.abort()
			<-added
		}
		close(b.quit)
	}
	select {
	case <-b.done:
		b.abort()
		return nil
	case <-ctx.Done():
		b.abort()
		<-b.done
		return ctx.Err()
	}
}

// loop owns the batch: it collects messages from b.in and sends a request when the window
// passes, the batch is full, on Flush and on Close.
func (b *Batcher) loop(ctx context.Context) {
	defer close(b.done)
	var (
		batch  []Message
		size   int
		timer  = time.NewTimer(time.Hour)
		window <-chan time.Time // nil while the batch is empty
	)
	timer.Stop()
	send := func() {
		timer.Stop()
		window = nil
		if len(batch) > 0 {
			b.send(ctx, batch)
		}
		batch, size = nil, 0
	}
	add := func(m Message) {
		n := messageSize(m)
		if len(batch) > 0 && size+n > b.cfg.MaxBytes {
			send()
		}
		if len(batch) == 0 {
			timer.Reset(b.cfg.Window)
			window = timer.C
		}
		batch, size = append(batch, m), size+n
		if len(batch) >= b.cfg.MaxMessages {
			send()
		}
	}
	// drain adds what is queued now, without waiting for more.
	drain := func() {
		for {
			select {
			case m := <-b.in:
				add(m)
			default:
				return
			}
		}
	}
	for {
		select {
		case m := <-b.in:
			add(m)
		case <-window:
			send()
		case reply := <-b.flushes:
			drain()
			send()
			close(reply)
		case <-b.quit:
			drain()
			send()
			return
		}
	}
}

// send sends one request and hands its result to the callbacks. When the stamp refuses it
// naming the bad messages, those are rejected and the rest are sent again, until a request is
// acked, fails, or no message is left: each round has fewer messages.
func (b *Batcher) send(ctx context.Context, batch []Message) {
	var first time.Time // of the request's first try, kept while it is resent without refusals
	for len(batch) > 0 {
		acks, err := b.c.send(ctx, &first, batch)
		if err == nil {
			b.cfg.OnAcked(acks)
			return
		}
		e, bad, errs, good := splitRefused(err, batch)
		if e == nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				err = fmt.Errorf("batcher closed before the stamp answered: %w", err)
			}
			b.cfg.OnError(batch, err)
			return
		}
		b.cfg.rejected(bad, errs, e)
		batch = good
	}
}

// splitRefused sorts the messages of a request the stamp refused by name (400 invalid-message,
// 403 forbidden, with errors naming messages by index) into the named ones, with their problems,
// and the others. e is nil when err is not such a refusal, or names an index outside the request:
// then nothing can be resent with confidence.
func splitRefused(err error, batch []Message) (e *Error, bad []Message, errs [][]FieldError, good []Message) {
	if !errors.As(err, &e) || len(e.Errors) == 0 ||
		(e.Status != http.StatusBadRequest && e.Status != http.StatusForbidden) {
		return nil, nil, nil, nil
	}
	byIndex := map[int][]FieldError{}
	for _, f := range e.Errors {
		if f.Index < 0 || f.Index >= len(batch) {
			return nil, nil, nil, nil
		}
		byIndex[f.Index] = append(byIndex[f.Index], f)
	}
	for i, m := range batch {
		if fe, ok := byIndex[i]; ok {
			bad, errs = append(bad, m), append(errs, fe)
		} else {
			good = append(good, m)
		}
	}
	return e, bad, errs, good
}

func messageSize(m Message) int {
	n := len(m.SenderID) + len(m.Value) + len(m.ID) + messageOverhead
	for k, v := range m.Properties {
		n += len(k) + len(v) + 8
	}
	return n
}
