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
	// Priority orders delivery: 0 is the highest, MaxPriority the lowest. The zero Message has
	// priority 0; the API gives every message one (`serve --default-priority`, DefaultPriority).
	Priority uint8
	// ExpiresAt is when the message expires (judged on ReceivedAt plus its time-to-live); the
	// forwarder dead-letters it with reason "expired" instead of sending it after that. Zero
	// means never.
	ExpiresAt time.Time
}

const (
	// DefaultPriority is the priority of a message that names none, and of every message
	// spooled before priorities existed.
	DefaultPriority = 4
	// MaxPriority is the lowest priority.
	MaxPriority = 9
)

// Expired reports whether m has an expiry and it has passed at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt)
}

// Encoding versions, the first byte of every encoded payload. Version 2 adds the priority and
// the expiry. A message at DefaultPriority without an expiry is still written as version 1, so
// that a forwarder of the release before priorities reads what an upgraded API spools for
// clients that use neither (docs/spool.md, "Upgrades").
const (
	encodingV1 = 1
	encodingV2 = 2
)

// ErrMalformed reports an encoded message that cannot be decoded.
var ErrMalformed = errors.New("malformed message encoding")

// AppendBinary appends the encoding of m's fields other than ID to b and returns the result.
// The ID travels beside the payload (spool records carry it in their frame), so it is not repeated.
func (m *Message) AppendBinary(b []byte) []byte {
	v2 := m.Priority != DefaultPriority || !m.ExpiresAt.IsZero()
	if v2 {
		b = append(b, encodingV2)
	} else {
		b = append(b, encodingV1)
	}
	b = appendString(b, m.SenderID)
	b = appendString(b, m.Value)
	b = appendString(b, m.Stamp)
	b = binary.AppendVarint(b, m.ReceivedAt.UnixNano())
	if v2 {
		b = append(b, m.Priority)
		var exp int64
		if !m.ExpiresAt.IsZero() {
			exp = m.ExpiresAt.UnixNano()
		}
		b = binary.AppendVarint(b, exp)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Properties)))
	for k, v := range m.Properties {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return b
}

// EncodedSize returns an upper bound of len(m.AppendBinary(nil)), for sizing buffers.
func (m *Message) EncodedSize() int {
	n := 2 + 4*binary.MaxVarintLen64 + len(m.SenderID) + len(m.Value) + len(m.Stamp) + 2*binary.MaxVarintLen64
	for k, v := range m.Properties {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// UnmarshalBinary decodes a payload written by AppendBinary into m (ID is left untouched).
// Strings are validated as UTF-8; any inconsistency returns an error wrapping ErrMalformed.
func (m *Message) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	v := d.byte()
	if d.err != nil {
		return d.err
	}
	if v != encodingV1 && v != encodingV2 {
		return fmt.Errorf("%w: unknown version %d", ErrMalformed, v)
	}
	m.SenderID = d.string()
	m.Value = d.string()
	m.Stamp = d.string()
	ns := d.varint()
	m.Priority, m.ExpiresAt = DefaultPriority, time.Time{}
	if v == encodingV2 {
		m.Priority = d.byte()
		if exp := d.varint(); exp != 0 {
			m.ExpiresAt = time.Unix(0, exp).UTC()
		}
		if d.err == nil && m.Priority > MaxPriority {
			return fmt.Errorf("%w: priority %d", ErrMalformed, m.Priority)
		}
	}
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
