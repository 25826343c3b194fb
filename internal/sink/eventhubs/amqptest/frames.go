package amqptest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types and performative descriptors (AMQP 1.0 part 2 and 5).
const (
	frameAMQP byte = 0x00
	frameSASL byte = 0x01

	perfOpen        uint64 = 0x10
	perfBegin       uint64 = 0x11
	perfAttach      uint64 = 0x12
	perfFlow        uint64 = 0x13
	perfTransfer    uint64 = 0x14
	perfDisposition uint64 = 0x15
	perfDetach      uint64 = 0x16
	perfEnd         uint64 = 0x17
	perfClose       uint64 = 0x18

	descError    uint64 = 0x1d
	descAccepted uint64 = 0x24
	descRejected uint64 = 0x25
	descSource   uint64 = 0x28
	descTarget   uint64 = 0x29

	saslMechanisms uint64 = 0x40
	saslInit       uint64 = 0x41
	saslOutcome    uint64 = 0x44

	// batchMessageFormat is the message-format of an Event Hubs batch: each Data section of the
	// transferred message is one complete encoded event.
	batchMessageFormat uint32 = 0x80013700
)

var (
	headerSASL = []byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
	headerAMQP = []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
)

// frame is one received frame: an empty body is a heartbeat.
type frame struct {
	typ     byte
	channel uint16
	code    uint64 // the performative's descriptor
	fields  list
	payload []byte // bytes after the performative (transfer payloads)
}

// readFrame reads one frame, refusing frames larger than max.
func readFrame(r *bufio.Reader, max uint32) (frame, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	size := binary.BigEndian.Uint32(hdr[0:4])
	doff := hdr[4]
	if size < 8 || doff < 2 || uint32(doff)*4 > size {
		return frame{}, fmt.Errorf("bad frame header: size %d doff %d", size, doff)
	}
	if size > max {
		return frame{}, fmt.Errorf("frame of %d bytes exceeds max-frame-size %d", size, max)
	}
	rest := make([]byte, size-8)
	if _, err := io.ReadFull(r, rest); err != nil {
		return frame{}, err
	}
	f := frame{typ: hdr[5], channel: binary.BigEndian.Uint16(hdr[6:8])}
	body := rest[int(doff)*4-8:]
	if len(body) == 0 {
		return f, nil
	}
	v, n, err := decode(body)
	if err != nil {
		return frame{}, fmt.Errorf("decode performative: %w", err)
	}
	d, ok := v.(described)
	if !ok {
		return frame{}, errors.New("frame body is not a described type")
	}
	code, ok := asUint(d.desc)
	if !ok {
		return frame{}, fmt.Errorf("performative descriptor %v is not a code", d.desc)
	}
	fields, ok := d.value.(list)
	if !ok {
		return frame{}, fmt.Errorf("performative 0x%02x is not a list", code)
	}
	f.code, f.fields, f.payload = code, fields, body[n:]
	return f, nil
}

// perf builds a performative (or any described list) from its fields, dropping trailing nulls.
func perf(code uint64, fields ...any) described {
	for len(fields) > 0 && fields[len(fields)-1] == nil {
		fields = fields[:len(fields)-1]
	}
	return described{desc: code, value: list(fields)}
}

// appendFrame appends a frame holding body (nil for a heartbeat) and payload.
func appendFrame(b []byte, typ byte, channel uint16, body any, payload []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 2, typ, byte(channel>>8), byte(channel))
	if body != nil {
		b = encode(b, body)
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// amqpError builds an AMQP error list (condition, description).
func amqpError(condition, description string) described {
	var desc any
	if description != "" {
		desc = description
	}
	return perf(descError, symbol(condition), desc)
}
