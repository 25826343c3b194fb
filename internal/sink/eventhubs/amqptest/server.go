// Package amqptest provides a minimal in-process AMQP 1.0 peer that the official Event Hubs
// producer (azeventhubs/v2 over go-amqp) accepts as an Event Hubs namespace, for offline tests.
//
// It implements what a producer needs and no more: SASL ANONYMOUS, open/begin/attach/flow/
// transfer/disposition/detach/end/close, multi-frame transfers, the `$cbs` put-token
// request/reply (answered 200, or a configured status such as 401), `$management` READs of the
// hub and its partitions, and batches (message-format 0x80013700) whose Data sections it decodes
// into recorded events. Hooks let a test reject the next N deliveries with any condition,
// enforce a smaller message size than advertised, delay dispositions, or go silent (accept TCP
// and never answer). It listens on 127.0.0.1 only, in plain TCP (the SDK's
// UseDevelopmentEmulator=true mode) or TLS.
//
// It is a test double, not a broker: no receive side, no partitions' storage, no
// authorization beyond the configured CBS status.
package amqptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
)

// Options configure a Server. Zero values take the defaults shown.
type Options struct {
	// Addr is the address to listen on; default "127.0.0.1:0". Pass a previous server's
	// Addr() to bring a peer back on the same port.
	Addr string
	// EventHub is the name reported by $management; default "hub".
	EventHub string
	// PartitionIDs are reported by $management; default {"0", "1"}.
	PartitionIDs []string
	// MaxMessageSize is advertised on every attach, in bytes; default 1 MiB. The SDK sizes
	// its batches by it.
	MaxMessageSize uint64
	// MaxFrameSize is the largest frame the peer accepts, in bytes; default 65536, so batches
	// larger than that arrive as multi-frame transfers.
	MaxFrameSize uint32
	// TLSConfig, when set, makes the peer speak TLS (the SDK's normal amqps:// mode, reached
	// with ProducerClientOptions.CustomEndpoint and a TLSConfig trusting this certificate).
	TLSConfig *tls.Config
}

// Event is one event the peer accepted.
type Event struct {
	// Entity is the address of the link it arrived on: the hub, or hub/Partitions/N.
	Entity string
	// Body is the event body (its Data sections, concatenated).
	Body []byte
	// MessageID is the AMQP message-id the producer set.
	MessageID any
	// PartitionKey is the x-opt-partition-key annotation, if any.
	PartitionKey string
	// ContentType is the AMQP content-type, if any.
	ContentType string
	// Properties are the application properties.
	Properties map[string]any
}

// CBSRequest is one put-token request the peer answered.
type CBSRequest struct {
	Audience  string
	TokenType string
	Status    int32
}

// Server is the peer. Its hooks and records are guarded by mu; each accepted connection is
// served by one goroutine that owns that connection's session and link state.
type Server struct {
	t    testing.TB
	opts Options
	ln   net.Listener

	mu         sync.Mutex
	closed     bool
	conns      map[*conn]struct{}
	events     []Event
	cbs        []CBSRequest
	rejectN    int
	rejectCond string
	rejectDesc string
	enforceMax uint64
	cbsStatus  int32
	dispDelay  time.Duration
	silent     bool
	deliveries int

	wg sync.WaitGroup
}

// NewServer starts a peer on opts.Addr (default 127.0.0.1:0) and stops it when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.EventHub == "" {
		opts.EventHub = "hub"
	}
	if len(opts.PartitionIDs) == 0 {
		opts.PartitionIDs = []string{"0", "1"}
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = 1 << 20
	}
	if opts.MaxFrameSize == 0 {
		opts.MaxFrameSize = 65536
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		t.Fatalf("amqptest: listen on %s: %v", opts.Addr, err)
	}
	if opts.TLSConfig != nil {
		ln = tls.NewListener(ln, opts.TLSConfig)
	}
	s := &Server{t: t, opts: opts, ln: ln, conns: map[*conn]struct{}{}, cbsStatus: 200}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the listening address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ConnectionString returns a UseDevelopmentEmulator=true connection string for this peer (plain
// TCP), with EntityPath=hub when hub is not empty.
func (s *Server) ConnectionString(hub string) string {
	cs := "Endpoint=sb://" + s.Addr() + ";SharedAccessKeyName=amqptest;SharedAccessKey=" +
		base64.StdEncoding.EncodeToString([]byte("amqptest-key")) + ";UseDevelopmentEmulator=true"
	if hub != "" {
		cs += ";EntityPath=" + hub
	}
	return cs
}

// RejectNext makes the next n event deliveries end in a rejected disposition with the given
// AMQP error condition (e.g. "com.microsoft:server-busy") and description.
func (s *Server) RejectNext(n int, condition, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectN, s.rejectCond, s.rejectDesc = n, condition, description
}

// EnforceMaxMessageSize rejects event deliveries larger than n bytes with
// amqp:link:message-size-exceeded, whatever size was advertised (0 enforces the advertised one).
func (s *Server) EnforceMaxMessageSize(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enforceMax = n
}

// SetCBSStatus sets the status-code answered to put-token requests (200 by default; 401
// refuses the credentials).
func (s *Server) SetCBSStatus(code int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cbsStatus = code
}

// SetDispositionDelay delays every event disposition by d.
func (s *Server) SetDispositionDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispDelay = d
}

// SetSilent makes connections accepted from now on hang: TCP is accepted and never answered.
func (s *Server) SetSilent(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = silent
}

// Events returns a copy of the events accepted so far, in arrival order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// CBSRequests returns a copy of the put-token requests answered so far.
func (s *Server) CBSRequests() []CBSRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CBSRequest(nil), s.cbs...)
}

// Deliveries returns how many event deliveries (batches or single events) arrived, accepted
// or rejected.
func (s *Server) Deliveries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deliveries
}

// Close stops listening, drops every connection and waits for the peer's goroutines. It is
// idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.nc.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		c := &conn{s: s, nc: nc, done: make(chan struct{}), sessions: map[uint16]*session{}, peerMaxFrame: 512}
		s.conns[c] = struct{}{}
		silent := s.silent
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			if silent {
				_, _ = io.Copy(io.Discard, nc)
			} else if err := c.serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("amqptest: connection from %s: %v", nc.RemoteAddr(), err)
			}
			close(c.done)
			_ = nc.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) logf(format string, args ...any) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed { // errors after Close are the expected teardown, not news
		s.t.Logf(format, args...)
	}
}

// conn is one client connection. serve's goroutine owns sessions and links; writes from other
// goroutines (heartbeats, delayed dispositions) go through wmu.
type conn struct {
	s    *Server
	nc   net.Conn
	done chan struct{}

	wmu sync.Mutex

	peerMaxFrame uint32
	sessions     map[uint16]*session // by the client's channel
}

// session mirrors one client session on the same channel number.
type session struct {
	channel      uint16
	nextIncoming uint32 // transfer-id we expect next from the client
	nextOutgoing uint32 // transfer-id of our next transfer
	nextDelivery uint32 // delivery-id of our next delivery
	unflowed     uint32 // transfers received since our last session flow
	links        map[uint32]*link
}

// sessionWindow is the incoming window the peer grants each session, refreshed at half.
const sessionWindow = 5000

// linkCredit is the credit granted to the client's sender links, refreshed at half.
const linkCredit = 1000

// link mirrors one client link with the same handle number.
type link struct {
	name          string
	handle        uint32
	clientSends   bool // the client is the sender (its role is false)
	sourceAddr    string
	targetAddr    string
	deliveryCount uint32 // deliveries received (client sender) or sent (client receiver)
	credit        uint32
	pending       [][]byte // our outgoing messages waiting for credit

	// the delivery being reassembled from more=true transfers
	inDelivery bool
	deliveryID uint32
	settled    bool
	format     uint32
	buf        []byte
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

func (c *conn) send(channel uint16, body any) error {
	return c.write(appendFrame(nil, frameAMQP, channel, body, nil))
}

func (c *conn) serve() error {
	r := bufio.NewReader(c.nc)
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return err
	}
	if bytes.Equal(hdr, headerSASL) {
		if err := c.write(headerSASL); err != nil {
			return err
		}
		mechs := perf(saslMechanisms, array{symbol("ANONYMOUS"), symbol("MSSBCBS")})
		if err := c.write(appendFrame(nil, frameSASL, 0, mechs, nil)); err != nil {
			return err
		}
		f, err := readFrame(r, 65536)
		if err != nil {
			return fmt.Errorf("read sasl-init: %w", err)
		}
		if f.typ != frameSASL || f.code != saslInit {
			return fmt.Errorf("expected sasl-init, got type %d code 0x%02x", f.typ, f.code)
		}
		if err := c.write(appendFrame(nil, frameSASL, 0, perf(saslOutcome, uint8(0)), nil)); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
	}
	if !bytes.Equal(hdr, headerAMQP) {
		_ = c.write(headerAMQP) // tell the client what we speak, then hang up
		return fmt.Errorf("unsupported protocol header %q", hdr)
	}
	if err := c.write(headerAMQP); err != nil {
		return err
	}
	for {
		f, err := readFrame(r, c.s.opts.MaxFrameSize)
		if err != nil {
			return err
		}
		if f.fields == nil && f.code == 0 {
			continue // heartbeat
		}
		stop, err := c.handle(f)
		if err != nil || stop {
			return err
		}
	}
}

// handle processes one performative; stop reports a completed close.
func (c *conn) handle(f frame) (stop bool, err error) {
	switch f.code {
	case perfOpen:
		if v, ok := asUint(field(f.fields, 2)); ok && v >= 512 {
			c.peerMaxFrame = uint32(v)
		} else {
			c.peerMaxFrame = 1 << 20
		}
		if err := c.send(0, perf(perfOpen, "amqptest", nil, c.s.opts.MaxFrameSize, uint16(65535))); err != nil {
			return false, err
		}
		if ms, ok := asUint(field(f.fields, 4)); ok && ms > 0 {
			c.s.wg.Add(1)
			go c.heartbeat(time.Duration(ms) * time.Millisecond / 2)
		}
	case perfBegin:
		next, _ := asUint(field(f.fields, 1))
		ss := &session{channel: f.channel, nextIncoming: uint32(next), nextOutgoing: 1, links: map[uint32]*link{}}
		c.sessions[f.channel] = ss
		return false, c.send(f.channel, perf(perfBegin, f.channel, uint32(1), uint32(sessionWindow), uint32(sessionWindow), uint32(1<<16-1)))
	case perfAttach:
		return false, c.attach(f)
	case perfFlow:
		return false, c.flow(f)
	case perfTransfer:
		return false, c.transfer(f)
	case perfDisposition:
		// Our own deliveries are pre-settled; nothing to track.
	case perfDetach:
		ss := c.sessions[f.channel]
		h, _ := asUint(field(f.fields, 0))
		if ss != nil {
			delete(ss.links, uint32(h))
		}
		return false, c.send(f.channel, perf(perfDetach, uint32(h), asBool(field(f.fields, 1))))
	case perfEnd:
		delete(c.sessions, f.channel)
		return false, c.send(f.channel, perf(perfEnd))
	case perfClose:
		return true, c.send(0, perf(perfClose))
	default:
		return false, fmt.Errorf("unexpected performative 0x%02x", f.code)
	}
	return false, nil
}

func (c *conn) heartbeat(every time.Duration) {
	defer c.s.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			if c.write(appendFrame(nil, frameAMQP, 0, nil, nil)) != nil {
				return
			}
		}
	}
}

func terminusAddress(v any) string {
	if d, ok := v.(described); ok {
		if l, ok := d.value.(list); ok {
			return asString(field(l, 0))
		}
	}
	return ""
}

func (c *conn) attach(f frame) error {
	ss := c.sessions[f.channel]
	if ss == nil {
		return fmt.Errorf("attach on unknown channel %d", f.channel)
	}
	h, _ := asUint(field(f.fields, 1))
	l := &link{
		name:        asString(field(f.fields, 0)),
		handle:      uint32(h),
		clientSends: !asBool(field(f.fields, 2)),
		sourceAddr:  terminusAddress(field(f.fields, 5)),
		targetAddr:  terminusAddress(field(f.fields, 6)),
	}
	ss.links[l.handle] = l
	var initialDeliveryCount any
	if !l.clientSends {
		initialDeliveryCount = uint32(0)
	} else {
		idc, _ := asUint(field(f.fields, 9))
		l.deliveryCount = uint32(idc)
	}
	source, target := field(f.fields, 5), field(f.fields, 6)
	if source == nil {
		source = perf(descSource)
	}
	if target == nil {
		target = perf(descTarget)
	}
	reply := perf(perfAttach,
		l.name, l.handle, l.clientSends, // our role is the opposite: receiver (true) when the client sends
		field(f.fields, 3), field(f.fields, 4),
		source, target,
		nil, nil, initialDeliveryCount,
		c.s.opts.MaxMessageSize,
		field(f.fields, 12), // offer what was desired (e.g. geo-replication)
	)
	if err := c.send(f.channel, reply); err != nil {
		return err
	}
	if l.clientSends {
		l.credit = linkCredit
		return c.linkFlow(ss, l)
	}
	return nil
}

// linkFlow grants l its credit.
func (c *conn) linkFlow(ss *session, l *link) error {
	return c.send(ss.channel, perf(perfFlow,
		ss.nextIncoming, uint32(sessionWindow), ss.nextOutgoing, uint32(sessionWindow),
		l.handle, l.deliveryCount, l.credit))
}

func (c *conn) flow(f frame) error {
	ss := c.sessions[f.channel]
	if ss == nil {
		return nil
	}
	h, ok := asUint(field(f.fields, 4))
	if !ok {
		return nil // session-level flow: our window accounting is generous
	}
	l := ss.links[uint32(h)]
	if l == nil || l.clientSends {
		return nil
	}
	// link-credit(snd) := delivery-count(rcv) + link-credit(rcv) - delivery-count(snd)
	rcvCount, ok := asUint(field(f.fields, 5))
	if !ok {
		rcvCount = 0
	}
	credit, _ := asUint(field(f.fields, 6))
	l.credit = uint32(rcvCount) + uint32(credit) - l.deliveryCount
	return c.flushPending(ss, l)
}

// transfer reassembles deliveries and handles each complete one.
func (c *conn) transfer(f frame) error {
	ss := c.sessions[f.channel]
	if ss == nil {
		return fmt.Errorf("transfer on unknown channel %d", f.channel)
	}
	ss.nextIncoming++
	ss.unflowed++
	if ss.unflowed >= sessionWindow/2 {
		ss.unflowed = 0
		if err := c.send(ss.channel, perf(perfFlow, ss.nextIncoming, uint32(sessionWindow), ss.nextOutgoing, uint32(sessionWindow))); err != nil {
			return err
		}
	}
	h, _ := asUint(field(f.fields, 0))
	l := ss.links[uint32(h)]
	if l == nil || !l.clientSends {
		return fmt.Errorf("transfer on unknown handle %d", h)
	}
	if !l.inDelivery {
		id, _ := asUint(field(f.fields, 1))
		format, _ := asUint(field(f.fields, 3))
		l.inDelivery, l.deliveryID, l.format, l.settled, l.buf = true, uint32(id), uint32(format), asBool(field(f.fields, 4)), nil
	} else if asBool(field(f.fields, 4)) {
		l.settled = true
	}
	if asBool(field(f.fields, 9)) { // aborted
		l.inDelivery, l.buf = false, nil
		return nil
	}
	l.buf = append(l.buf, f.payload...)
	if asBool(field(f.fields, 5)) { // more
		return nil
	}
	l.inDelivery = false
	payload := l.buf
	l.buf = nil
	l.deliveryCount++
	l.credit--
	if l.credit < linkCredit/2 {
		l.credit = linkCredit
		if err := c.linkFlow(ss, l); err != nil {
			return err
		}
	}
	switch l.targetAddr {
	case "$cbs":
		return c.rpc(ss, l, payload, c.cbsReply)
	case "$management":
		return c.rpc(ss, l, payload, c.managementReply)
	}
	return c.event(ss, l, payload)
}

// rpc answers a request/reply exchange: the reply goes to the client's receiver link whose
// target is the request's reply-to, correlated by the request's message-id.
func (c *conn) rpc(ss *session, l *link, payload []byte, answer func(req *amqp.Message) *amqp.Message) error {
	var req amqp.Message
	if err := req.UnmarshalBinary(payload); err != nil {
		return fmt.Errorf("decode %s request: %w", l.targetAddr, err)
	}
	if !l.settled {
		if err := c.send(ss.channel, perf(perfDisposition, true, l.deliveryID, nil, true, perf(descAccepted))); err != nil {
			return err
		}
	}
	if req.Properties == nil || req.Properties.ReplyTo == nil {
		return fmt.Errorf("%s request without reply-to", l.targetAddr)
	}
	resp := answer(&req)
	resp.Properties = &amqp.MessageProperties{CorrelationID: req.Properties.MessageID}
	b, err := resp.MarshalBinary()
	if err != nil {
		return err
	}
	for _, rs := range c.sessions {
		for _, rl := range rs.links {
			if !rl.clientSends && rl.targetAddr == *req.Properties.ReplyTo {
				rl.pending = append(rl.pending, b)
				return c.flushPending(rs, rl)
			}
		}
	}
	return fmt.Errorf("no receiver link for reply-to %q", *req.Properties.ReplyTo)
}

// flushPending sends l's queued messages as far as its credit goes, pre-settled, split to the
// client's max frame size.
func (c *conn) flushPending(ss *session, l *link) error {
	for len(l.pending) > 0 && l.credit > 0 {
		msg := l.pending[0]
		l.pending = l.pending[1:]
		tag := binary.BigEndian.AppendUint32(nil, ss.nextDelivery)
		chunk := int(c.peerMaxFrame) - 256
		var b []byte
		for first := true; first || len(msg) > 0; first = false {
			part := msg
			if len(part) > chunk {
				part = part[:chunk]
			}
			msg = msg[len(part):]
			b = appendFrame(b, frameAMQP, ss.channel,
				perf(perfTransfer, l.handle, ss.nextDelivery, tag, uint32(0), true, len(msg) > 0), part)
			ss.nextOutgoing++
		}
		if err := c.write(b); err != nil {
			return err
		}
		ss.nextDelivery++
		l.deliveryCount++
		l.credit--
	}
	return nil
}

func status(code int32, description string) map[string]any {
	return map[string]any{"status-code": code, "status-description": description}
}

func (c *conn) cbsReply(req *amqp.Message) *amqp.Message {
	s := c.s
	s.mu.Lock()
	code := s.cbsStatus
	r := CBSRequest{Status: code}
	r.Audience, _ = req.ApplicationProperties["name"].(string)
	r.TokenType, _ = req.ApplicationProperties["type"].(string)
	s.cbs = append(s.cbs, r)
	s.mu.Unlock()
	desc := "OK"
	if code == 401 {
		desc = "Unauthorized: InvalidSignature: the token has an invalid signature (amqptest)"
	} else if code != 200 {
		desc = "amqptest status " + strconv.Itoa(int(code))
	}
	return &amqp.Message{ApplicationProperties: status(code, desc)}
}

func (c *conn) managementReply(req *amqp.Message) *amqp.Message {
	o := c.s.opts
	typ, _ := req.ApplicationProperties["type"].(string)
	op, _ := req.ApplicationProperties["operation"].(string)
	if op != "READ" {
		return &amqp.Message{ApplicationProperties: status(400, "amqptest: unsupported operation "+op)}
	}
	switch typ {
	case "com.microsoft:eventhub":
		return &amqp.Message{ApplicationProperties: status(200, "OK"), Value: map[string]any{
			"name":                  o.EventHub,
			"created_at":            time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			"partition_count":       int32(len(o.PartitionIDs)),
			"partition_ids":         o.PartitionIDs,
			"georeplication_factor": int32(1),
		}}
	case "com.microsoft:partition":
		p, _ := req.ApplicationProperties["partition"].(string)
		return &amqp.Message{ApplicationProperties: status(200, "OK"), Value: map[string]any{
			"name":                          o.EventHub,
			"partition":                     p,
			"begin_sequence_number":         int64(0),
			"last_enqueued_sequence_number": int64(-1),
			"last_enqueued_offset":          "-1",
			"last_enqueued_time_utc":        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			"is_partition_empty":            true,
		}}
	}
	return &amqp.Message{ApplicationProperties: status(404, "amqptest: unknown type "+typ)}
}

// event settles one delivery to the hub: rejected by a hook or the size limit, else decoded,
// recorded and accepted.
func (c *conn) event(ss *session, l *link, payload []byte) error {
	s := c.s
	s.mu.Lock()
	s.deliveries++
	var outcome described
	max := s.enforceMax
	if max == 0 {
		max = s.opts.MaxMessageSize
	}
	switch {
	case s.rejectN > 0:
		s.rejectN--
		outcome = perf(descRejected, amqpError(s.rejectCond, s.rejectDesc))
	case uint64(len(payload)) > max:
		outcome = perf(descRejected, amqpError("amqp:link:message-size-exceeded",
			fmt.Sprintf("The received message (delivery-id:%d, size:%d bytes) exceeds the limit (%d bytes) currently allowed on the link.", l.deliveryID, len(payload), max)))
	}
	delay := s.dispDelay
	s.mu.Unlock()

	if outcome.desc == nil {
		evs, err := decodeEvents(l.targetAddr, l.format, payload)
		if err != nil {
			outcome = perf(descRejected, amqpError("amqp:decode-error", err.Error()))
		} else {
			outcome = perf(descAccepted)
			s.mu.Lock()
			s.events = append(s.events, evs...)
			s.mu.Unlock()
		}
	}
	if l.settled {
		return nil
	}
	disp := appendFrame(nil, frameAMQP, ss.channel, perf(perfDisposition, true, l.deliveryID, nil, true, outcome), nil)
	if delay <= 0 {
		return c.write(disp)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			_ = c.write(disp)
		case <-c.done:
		}
	}()
	return nil
}

// decodeEvents turns a delivery into events: a batch carries one encoded event per Data section.
func decodeEvents(entity string, format uint32, payload []byte) ([]Event, error) {
	var outer amqp.Message
	if err := outer.UnmarshalBinary(payload); err != nil {
		return nil, err
	}
	if format != batchMessageFormat {
		return []Event{toEvent(entity, &outer)}, nil
	}
	evs := make([]Event, 0, len(outer.Data))
	for i, d := range outer.Data {
		var m amqp.Message
		if err := m.UnmarshalBinary(d); err != nil {
			return nil, fmt.Errorf("event %d of batch: %w", i, err)
		}
		evs = append(evs, toEvent(entity, &m))
	}
	return evs, nil
}

func toEvent(entity string, m *amqp.Message) Event {
	e := Event{Entity: entity, Body: bytes.Join(m.Data, nil), Properties: m.ApplicationProperties}
	if m.Properties != nil {
		e.MessageID = m.Properties.MessageID
		if m.Properties.ContentType != nil {
			e.ContentType = *m.Properties.ContentType
		}
	}
	for k, v := range m.Annotations {
		if fmt.Sprint(k) == "x-opt-partition-key" {
			e.PartitionKey, _ = v.(string)
		}
	}
	return e
}
