// Package message provides the Message envelope that every layer of Bridgehead shares (ingest,
// spool, forwarder, sinks), its compact binary encoding used inside spool segments, and the rules
// a message must meet to be accepted (Limits.Check), shared by the server and the clients so that
// both refuse the same messages.
//
// The binary encoding is versioned and self-delimiting; Unmarshal never trusts a length field
// further than the bytes it was given, so a hostile or damaged record cannot drive an allocation.
package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Message is one supplier message: a reading, an event or an alert, as accepted by a stamp.
type Message struct {
	// ID is the correlation id: the message id downstream, stable across retries and stamps when
	// the client sent an idempotency key.
	ID uuid.UUID
	// SenderID names the supplier system that sent the message.
	SenderID string
	// Value is the message body as the client sent it.
	Value string
	// Properties are optional application properties (string pairs).
	Properties map[string]string
	// ReceivedAt is when the stamp accepted the message (UTC).
	ReceivedAt time.Time
	// Stamp names the deployment stamp that accepted the message (e.g. "onprem", "cloud").
	Stamp string
}

// encodingVersion is the first byte of every encoded payload.
const encodingVersion = 1

// ErrMalformed reports an encoded message that cannot be decoded.
var ErrMalformed = errors.New("malformed message encoding")

// AppendBinary appends the encoding of m's fields other than ID to b and returns the result.
// The ID travels beside the payload (spool records carry it in their frame), so it is not repeated.
func (m *Message) AppendBinary(b []byte) []byte {
	b = append(b, encodingVersion)
	b = appendString(b, m.SenderID)
	b = appendString(b, m.Value)
	b = appendString(b, m.Stamp)
	b = binary.AppendVarint(b, m.ReceivedAt.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(m.Properties)))
	for k, v := range m.Properties {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return b
}

// EncodedSize returns an upper bound of len(m.AppendBinary(nil)), for sizing buffers.
func (m *Message) EncodedSize() int {
	n := 1 + 3*binary.MaxVarintLen64 + len(m.SenderID) + len(m.Value) + len(m.Stamp) + 2*binary.MaxVarintLen64
	for k, v := range m.Properties {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// UnmarshalBinary decodes a payload written by AppendBinary into m (ID is left untouched).
// Strings are validated as UTF-8; any inconsistency returns an error wrapping ErrMalformed.
func (m *Message) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if v := d.byte(); v != encodingVersion {
		if d.err != nil {
			return d.err
		}
		return fmt.Errorf("%w: unknown version %d", ErrMalformed, v)
	}
	m.SenderID = d.string()
	m.Value = d.string()
	m.Stamp = d.string()
	ns := d.varint()
	n := d.uvarint()
	if d.err != nil {
		return d.err
	}
	// Each property needs at least two bytes, so n is bounded by what is left: no allocation
	// is driven by the length field alone.
	if n > uint64(len(d.b)/2) {
		return fmt.Errorf("%w: %d properties in %d bytes", ErrMalformed, n, len(d.b))
	}
	m.Properties = nil
	if n > 0 {
		m.Properties = make(map[string]string, n)
		for range n {
			k := d.string()
			v := d.string()
			if d.err != nil {
				return d.err
			}
			m.Properties[k] = v
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	m.ReceivedAt = time.Unix(0, ns).UTC()
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads from b, remembering the first error; later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short payload")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad timestamp")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("string of %d bytes in %d", n, len(d.b)))
		return ""
	}
	s := d.b[:n]
	d.b = d.b[n:]
	if !utf8.Valid(s) {
		d.fail("invalid UTF-8")
		return ""
	}
	return string(s)
}
