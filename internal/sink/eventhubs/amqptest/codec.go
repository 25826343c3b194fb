package amqptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// This file is a minimal AMQP 1.0 type system codec (OASIS AMQP 1.0 part 1): enough to read every
// performative go-amqp sends and to write the few the peer answers with. Message payloads are
// not decoded here: go-amqp's own amqp.Message (Un)MarshalBinary does that, which keeps the peer
// honest about what the SDK really put on the wire.

// symbol is an AMQP symbol (ASCII, used for conditions, capabilities, descriptors).
type symbol string

// described is a described type: a descriptor (a ulong code or a symbol) and its value. The
// performatives, sections and outcomes are described lists.
type described struct {
	desc  any
	value any
}

// list is an AMQP list.
type list []any

// amqpMap is an AMQP map as alternating keys and values, in wire order.
type amqpMap []any

// array is an AMQP array; all elements share one constructor.
type array []any

// char is an AMQP char (a UTF-32 code point).
type char rune

// uuidValue is an AMQP uuid.
type uuidValue [16]byte

// fixed keeps a value of a type the peer never interprets (decimals) so it can be re-encoded.
type fixed struct {
	code byte
	b    []byte
}

var errShort = errors.New("amqp: short buffer")

// decode reads one value from b and returns it with the number of bytes it took.
func decode(b []byte) (any, int, error) {
	if len(b) < 1 {
		return nil, 0, errShort
	}
	code := b[0]
	if code == 0x00 {
		desc, n1, err := decode(b[1:])
		if err != nil {
			return nil, 0, err
		}
		v, n2, err := decode(b[1+n1:])
		if err != nil {
			return nil, 0, err
		}
		return described{desc: desc, value: v}, 1 + n1 + n2, nil
	}
	v, n, err := decodeBody(code, b[1:])
	return v, 1 + n, err
}

// fixedWidth returns the payload width of a fixed-width constructor, or -1.
func fixedWidth(code byte) int {
	switch code >> 4 {
	case 0x4:
		return 0
	case 0x5:
		return 1
	case 0x6:
		return 2
	case 0x7:
		return 4
	case 0x8:
		return 8
	case 0x9:
		return 16
	}
	return -1
}

// decodeBody decodes the value after its constructor byte code.
func decodeBody(code byte, b []byte) (any, int, error) {
	if w := fixedWidth(code); w >= 0 {
		if len(b) < w {
			return nil, 0, errShort
		}
		p := b[:w]
		switch code {
		case 0x40:
			return nil, 0, nil
		case 0x41:
			return true, 0, nil
		case 0x42:
			return false, 0, nil
		case 0x43:
			return uint32(0), 0, nil
		case 0x44:
			return uint64(0), 0, nil
		case 0x45:
			return list{}, 0, nil
		case 0x56:
			return p[0] != 0, 1, nil
		case 0x50:
			return p[0], 1, nil
		case 0x51:
			return int8(p[0]), 1, nil
		case 0x52:
			return uint32(p[0]), 1, nil
		case 0x53:
			return uint64(p[0]), 1, nil
		case 0x54:
			return int32(int8(p[0])), 1, nil
		case 0x55:
			return int64(int8(p[0])), 1, nil
		case 0x60:
			return binary.BigEndian.Uint16(p), 2, nil
		case 0x61:
			return int16(binary.BigEndian.Uint16(p)), 2, nil
		case 0x70:
			return binary.BigEndian.Uint32(p), 4, nil
		case 0x71:
			return int32(binary.BigEndian.Uint32(p)), 4, nil
		case 0x72:
			return math.Float32frombits(binary.BigEndian.Uint32(p)), 4, nil
		case 0x73:
			return char(binary.BigEndian.Uint32(p)), 4, nil
		case 0x80:
			return binary.BigEndian.Uint64(p), 8, nil
		case 0x81:
			return int64(binary.BigEndian.Uint64(p)), 8, nil
		case 0x82:
			return math.Float64frombits(binary.BigEndian.Uint64(p)), 8, nil
		case 0x83:
			return time.UnixMilli(int64(binary.BigEndian.Uint64(p))).UTC(), 8, nil
		case 0x98:
			var u uuidValue
			copy(u[:], p)
			return u, 16, nil
		case 0x74, 0x84, 0x94:
			return fixed{code: code, b: append([]byte(nil), p...)}, w, nil
		}
		return nil, 0, fmt.Errorf("amqp: unknown constructor 0x%02x", code)
	}

	// Variable width: one-byte (0xa_, 0xc_, 0xe_) or four-byte (0xb_, 0xd_, 0xf_) size.
	var size, hdr int
	switch code >> 4 {
	case 0xa, 0xc, 0xe:
		if len(b) < 1 {
			return nil, 0, errShort
		}
		size, hdr = int(b[0]), 1
	case 0xb, 0xd, 0xf:
		if len(b) < 4 {
			return nil, 0, errShort
		}
		s := binary.BigEndian.Uint32(b)
		if uint64(s) > uint64(len(b)-4) {
			return nil, 0, errShort
		}
		size, hdr = int(s), 4
	default:
		return nil, 0, fmt.Errorf("amqp: unknown constructor 0x%02x", code)
	}
	if size > len(b)-hdr {
		return nil, 0, errShort
	}
	p := b[hdr : hdr+size]
	n := hdr + size
	switch code {
	case 0xa0, 0xb0:
		return append([]byte(nil), p...), n, nil
	case 0xa1, 0xb1:
		return string(p), n, nil
	case 0xa3, 0xb3:
		return symbol(p), n, nil
	case 0xc0, 0xd0, 0xc1, 0xd1:
		// compound: count, then count values.
		var count, off int
		if code == 0xc0 || code == 0xc1 {
			if len(p) < 1 {
				return nil, 0, errShort
			}
			count, off = int(p[0]), 1
		} else {
			if len(p) < 4 {
				return nil, 0, errShort
			}
			count, off = int(binary.BigEndian.Uint32(p)), 4
		}
		if count > len(p) { // every value takes at least one byte
			return nil, 0, errShort
		}
		vals := make([]any, 0, count)
		for range count {
			v, m, err := decode(p[off:])
			if err != nil {
				return nil, 0, err
			}
			vals = append(vals, v)
			off += m
		}
		if code == 0xc1 || code == 0xd1 {
			return amqpMap(vals), n, nil
		}
		return list(vals), n, nil
	case 0xe0, 0xf0:
		var count, off int
		if code == 0xe0 {
			if len(p) < 1 {
				return nil, 0, errShort
			}
			count, off = int(p[0]), 1
		} else {
			if len(p) < 4 {
				return nil, 0, errShort
			}
			count, off = int(binary.BigEndian.Uint32(p)), 4
		}
		if off >= len(p) {
			return nil, 0, errShort
		}
		elem := p[off]
		off++
		if elem == 0x00 {
			return nil, 0, errors.New("amqp: described arrays are not supported")
		}
		if count > len(p) {
			return nil, 0, errShort
		}
		vals := make(array, 0, count)
		for range count {
			v, m, err := decodeBody(elem, p[off:])
			if err != nil {
				return nil, 0, err
			}
			vals = append(vals, v)
			off += m
		}
		return vals, n, nil
	}
	return nil, 0, fmt.Errorf("amqp: unknown constructor 0x%02x", code)
}

// encode appends the encoding of v. Descriptors that are ulong codes are written as smallulong
// (0x53): go-amqp rejects a frame body whose descriptor is a full ulong.
func encode(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 0x40)
	case bool:
		if v {
			return append(b, 0x41)
		}
		return append(b, 0x42)
	case uint8:
		return append(b, 0x50, v)
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, 0x60), v)
	case uint32:
		if v == 0 {
			return append(b, 0x43)
		}
		if v < 256 {
			return append(b, 0x52, byte(v))
		}
		return binary.BigEndian.AppendUint32(append(b, 0x70), v)
	case uint64:
		if v == 0 {
			return append(b, 0x44)
		}
		if v < 256 {
			return append(b, 0x53, byte(v))
		}
		return binary.BigEndian.AppendUint64(append(b, 0x80), v)
	case int8:
		return append(b, 0x51, byte(v))
	case int16:
		return binary.BigEndian.AppendUint16(append(b, 0x61), uint16(v))
	case int32:
		return binary.BigEndian.AppendUint32(append(b, 0x71), uint32(v))
	case int64:
		return binary.BigEndian.AppendUint64(append(b, 0x81), uint64(v))
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0x72), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0x82), math.Float64bits(v))
	case char:
		return binary.BigEndian.AppendUint32(append(b, 0x73), uint32(v))
	case time.Time:
		return binary.BigEndian.AppendUint64(append(b, 0x83), uint64(v.UnixMilli()))
	case uuidValue:
		return append(append(b, 0x98), v[:]...)
	case fixed:
		return append(append(b, v.code), v.b...)
	case []byte:
		return appendVar(b, 0xa0, 0xb0, v)
	case string:
		return appendVar(b, 0xa1, 0xb1, []byte(v))
	case symbol:
		return appendVar(b, 0xa3, 0xb3, []byte(v))
	case described:
		b = append(b, 0x00)
		if code, ok := v.desc.(uint64); ok && code < 256 {
			b = append(b, 0x53, byte(code))
		} else {
			b = encode(b, v.desc)
		}
		return encode(b, v.value)
	case list:
		if len(v) == 0 {
			return append(b, 0x45)
		}
		return appendCompound(b, 0xd0, v)
	case amqpMap:
		return appendCompound(b, 0xd1, v)
	case array:
		return appendArray(b, v)
	}
	panic(fmt.Sprintf("amqptest: cannot encode %T", v))
}

func appendVar(b []byte, small, large byte, p []byte) []byte {
	if len(p) < 256 {
		b = append(b, small, byte(len(p)))
	} else {
		b = binary.BigEndian.AppendUint32(append(b, large), uint32(len(p)))
	}
	return append(b, p...)
}

// appendCompound writes a list32 or map32: size and count are backfilled after the values.
func appendCompound(b []byte, code byte, vals []any) []byte {
	b = append(b, code, 0, 0, 0, 0)
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(vals)))
	for _, v := range vals {
		b = encode(b, v)
	}
	binary.BigEndian.PutUint32(b[at-4:], uint32(len(b)-at))
	return b
}

// appendArray writes an array32 using the widest constructor of the first element's type, so
// every element can share it.
func appendArray(b []byte, vals array) []byte {
	b = append(b, 0xf0, 0, 0, 0, 0)
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(vals)))
	if len(vals) == 0 {
		b = append(b, 0x40) // an empty array still names a constructor
	} else {
		switch vals[0].(type) {
		case symbol:
			b = append(b, 0xb3)
			for _, v := range vals {
				s := v.(symbol)
				b = append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
			}
		case string:
			b = append(b, 0xb1)
			for _, v := range vals {
				s := v.(string)
				b = append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
			}
		case uint32:
			b = append(b, 0x70)
			for _, v := range vals {
				b = binary.BigEndian.AppendUint32(b, v.(uint32))
			}
		case uint64:
			b = append(b, 0x80)
			for _, v := range vals {
				b = binary.BigEndian.AppendUint64(b, v.(uint64))
			}
		default:
			panic(fmt.Sprintf("amqptest: cannot encode an array of %T", vals[0]))
		}
	}
	binary.BigEndian.PutUint32(b[at-4:], uint32(len(b)-at))
	return b
}

// Typed accessors for performative fields, accepting every width the sender may have chosen.

func asUint(v any) (uint64, bool) {
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	}
	return 0, false
}

func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case symbol:
		return string(v)
	}
	return ""
}

func asBool(v any) bool {
	b, _ := v.(bool)
	return b
}

// field returns the i-th field of a performative's list, or nil past its end (trailing nulls
// may be omitted on the wire).
func field(l list, i int) any {
	if i < len(l) {
		return l[i]
	}
	return nil
}
