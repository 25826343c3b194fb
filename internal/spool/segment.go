package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
)

// Segment file format (little endian), version 1:
//
//	header   magic "BHSG" | version u8 | flags u8 | reserved u16 | count u32 |
//	         created unix ms i64 | random 16 B | writer 12 B | crc32c u32 of the preceding 48 bytes
//	record   length u32 | crc32c u32 of id+payload | message id 16 B | payload (length bytes)
//	trailer  magic "BHTR" | count u32 | crc32c u32 of every byte before the trailer
//
// The payload is message.Message's binary encoding. A reader checks every CRC; a record whose
// CRC fails is skipped and the rest still read (its length frame is intact), a record whose frame
// is broken ends the readable part. Either way the segment is reported damaged, never half-sent
// in silence.

const (
	segMagic     = "BHSG"
	trailerMagic = "BHTR"
	segVersion   = 1

	headerSize    = 52
	recHeaderSize = 4 + 4 + 16
	trailerSize   = 12

	// MaxRecordBytes bounds one record's payload. A length field above it is damage, not a
	// request to allocate.
	MaxRecordBytes = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every CorruptionError.
var ErrCorrupt = errors.New("corrupt segment")

// CorruptionError describes damage found in a segment file.
type CorruptionError struct {
	// Segment is the file name.
	Segment string
	// Offset is the byte offset where the damage was found.
	Offset int64
	// Err says what is wrong.
	Err error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("segment %s: offset %d: %v", e.Segment, e.Offset, e.Err)
}

// Unwrap returns both ErrCorrupt and the detail, so errors.Is(err, ErrCorrupt) holds.
func (e *CorruptionError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// segHeader is the decoded fixed header.
type segHeader struct {
	Count   int
	Created time.Time
	Rand    [16]byte
	Writer  string
}

// appendRecord appends the framed record of m to b.
func appendRecord(b []byte, m *message.Message) []byte {
	start := len(b)
	b = append(b, make([]byte, 8)...) // length and crc, filled below
	b = append(b, m.ID[:]...)
	b = m.AppendBinary(b)
	payload := len(b) - start - recHeaderSize
	binary.LittleEndian.PutUint32(b[start:], uint32(payload))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], castagnoli))
	return b
}

// putHeader writes the header for base into b[:headerSize].
func putHeader(b []byte, base segBase) {
	copy(b[0:4], segMagic)
	b[4] = segVersion
	b[5] = 0
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint32(b[8:], uint32(base.Count))
	binary.LittleEndian.PutUint64(b[12:], uint64(base.Created.UnixMilli()))
	raw, _ := b32.DecodeString(base.Rand)
	copy(b[20:36], raw)
	copy(b[36:48], base.Writer)
	binary.LittleEndian.PutUint32(b[48:], crc32.Checksum(b[:48], castagnoli))
}

// appendTrailer appends the trailer covering b (header and records).
func appendTrailer(b []byte, count int) []byte {
	sum := crc32.Checksum(b, castagnoli)
	b = append(b, trailerMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(count))
	return binary.LittleEndian.AppendUint32(b, sum)
}

// byPriority splits msgs by priority, highest first, keeping their order within a priority:
// msgs itself (nothing copied) when they share one, as nearly always; none when msgs is empty
// (an open segment created ahead and never written). Priorities are at most
// message.MaxPriority (Append refuses others, decoding does too).
func byPriority(msgs []message.Message) [][]message.Message {
	if len(msgs) == 0 {
		return nil
	}
	mixed := false
	for i := range msgs {
		mixed = mixed || msgs[i].Priority != msgs[0].Priority
	}
	if !mixed {
		return [][]message.Message{msgs}
	}
	var lanes [message.MaxPriority + 1][]message.Message
	for _, m := range msgs {
		lanes[m.Priority] = append(lanes[m.Priority], m)
	}
	var out [][]message.Message
	for _, l := range lanes {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// encodeSegment returns the whole file for msgs, and its base name (created at created, by writer,
// at priority prio).
func encodeSegment(created time.Time, writer string, prio uint8, msgs []message.Message) ([]byte, segBase) {
	size := headerSize + trailerSize
	for i := range msgs {
		size += recHeaderSize + msgs[i].EncodedSize()
	}
	b := make([]byte, headerSize, size)
	for i := range msgs {
		b = appendRecord(b, &msgs[i])
	}
	return finishSegment(b, created, writer, prio, len(msgs))
}

// finishSegment fills the header of b (whose records follow headerSize) and appends the trailer.
func finishSegment(b []byte, created time.Time, writer string, prio uint8, count int) ([]byte, segBase) {
	base := newBase(created, writer, prio, count, int64(len(b)+trailerSize))
	putHeader(b, base)
	return appendTrailer(b, count), base
}

// decodeSegment reads a whole segment file. It returns every record whose CRC holds; err is a
// *CorruptionError describing the first damage found, or nil when the file is whole.
// Allocation is bounded by len(b), whatever the length and count fields say.
func decodeSegment(name string, b []byte) (segHeader, []message.Message, error) {
	h, err := decodeHeader(name, b)
	if err != nil {
		return h, nil, err
	}
	end := len(b) - trailerSize
	var first error
	if end < headerSize || string(b[end:end+4]) != trailerMagic {
		// Truncated or torn: read the records that are there, then report.
		end = len(b)
		first = &CorruptionError{Segment: name, Offset: int64(len(b)), Err: errors.New("missing trailer (truncated?)")}
	}
	msgs, seen, _, serr := scanRecords(name, b, end, h.Count)
	if first == nil {
		first = serr
	}
	if first == nil {
		tc := int(binary.LittleEndian.Uint32(b[end+4:]))
		switch {
		case crc32.Checksum(b[:end], castagnoli) != binary.LittleEndian.Uint32(b[end+8:]):
			first = &CorruptionError{Segment: name, Offset: int64(end), Err: errors.New("segment checksum mismatch")}
		case tc != h.Count || seen != h.Count:
			first = &CorruptionError{Segment: name, Offset: int64(end), Err: fmt.Errorf("header says %d records, trailer %d, found %d", h.Count, tc, seen)}
		}
	}
	return h, msgs, first
}

// decodeHeader checks and decodes the fixed header of b.
func decodeHeader(name string, b []byte) (segHeader, error) {
	var h segHeader
	corrupt := func(off int, format string, args ...any) error {
		return &CorruptionError{Segment: name, Offset: int64(off), Err: fmt.Errorf(format, args...)}
	}
	if len(b) < headerSize {
		return h, corrupt(0, "file of %d bytes is shorter than a header", len(b))
	}
	if string(b[0:4]) != segMagic {
		return h, corrupt(0, "bad magic %q", b[0:4])
	}
	if sum := crc32.Checksum(b[:48], castagnoli); sum != binary.LittleEndian.Uint32(b[48:]) {
		return h, corrupt(48, "header checksum mismatch")
	}
	if b[4] != segVersion {
		return h, corrupt(4, "unknown segment version %d", b[4])
	}
	h.Count = int(binary.LittleEndian.Uint32(b[8:]))
	h.Created = time.UnixMilli(int64(binary.LittleEndian.Uint64(b[12:])))
	copy(h.Rand[:], b[20:36])
	h.Writer = string(b[36:48])
	return h, nil
}

// scanRecords reads the records of b between the header and end. A record whose CRC fails is
// skipped (its frame is intact); a broken frame ends the scan. It returns the intact records,
// how many frames it saw, the offset where the scan stopped and the first damage found.
// countHint only sizes the result; allocation is bounded by len(b).
func scanRecords(name string, b []byte, end, countHint int) (msgs []message.Message, seen, stop int, first error) {
	corrupt := func(off int, format string, args ...any) {
		if first == nil {
			first = &CorruptionError{Segment: name, Offset: int64(off), Err: fmt.Errorf(format, args...)}
		}
	}
	// A record takes at least recHeaderSize+1 bytes: that bounds the slice, not the header's count.
	msgs = make([]message.Message, 0, min(countHint, (end-headerSize)/(recHeaderSize+1)))
	off := headerSize
	for off < end {
		if end-off < recHeaderSize {
			corrupt(off, "%d stray bytes after the last record", end-off)
			break
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 {
			// No record is empty: zeros are space never written (an open segment is created
			// with a hole to its full size), or damage.
			corrupt(off, "zero-length record frame (unwritten space)")
			break
		}
		if n > MaxRecordBytes || n > end-off-recHeaderSize {
			corrupt(off, "record length %d exceeds what remains (%d)", n, end-off-recHeaderSize)
			break
		}
		rec := b[off+8 : off+recHeaderSize+n]
		seen++
		if crc32.Checksum(rec, castagnoli) != binary.LittleEndian.Uint32(b[off+4:]) {
			corrupt(off, "record %d checksum mismatch", seen-1)
			off += recHeaderSize + n
			continue
		}
		var m message.Message
		m.ID = uuid.UUID(rec[:16])
		if err := m.UnmarshalBinary(rec[16:]); err != nil {
			corrupt(off, "record %d: %v", seen-1, err)
			off += recHeaderSize + n
			continue
		}
		msgs = append(msgs, m)
		off += recHeaderSize + n
	}
	return msgs, seen, off, first
}

// decodeOpen reads an open segment (its writer appends records after a header whose count is 0,
// and writes the count and trailer only when it seals it). It returns every intact record up to
// the first broken frame, and how many bytes at the tail held no intact record: after a crash,
// what a commit was writing when it died, never acknowledged. A sealed file (its seal's rename
// was lost) decodes as a segment. A damaged header does not hide the records after it: the seal
// rewrites the header in place, and a crash in the middle of that write can tear it while every
// record (each with its own checksum, at a fixed offset after the header) is intact (found by the
// power-cut test). err is a *CorruptionError only when the header is damaged and no record
// reads back. An empty file (created ahead, never written: nothing, or only the hole it was
// sized with) has no records.
func decodeOpen(name string, b []byte) (msgs []message.Message, tail int, err error) {
	// The bytes written: the file less the hole it was created with (zeros at the end). Records
	// are scanned in the whole file, whose last record may itself end in zeros; written only
	// says how much after the scan's stop is a torn commit rather than the hole.
	written := len(bytes.TrimRight(b, "\x00"))
	if written == 0 {
		return nil, 0, nil
	}
	h, err := decodeHeader(name, b)
	if err != nil {
		if len(b) > headerSize {
			msgs, _, stop, _ := scanRecords(name, b, len(b), 0)
			if len(msgs) > 0 {
				return msgs, max(written-stop, 0), nil
			}
		}
		return nil, len(b), err
	}
	if h.Count > 0 {
		if _, msgs, err := decodeSegment(name, b); err == nil {
			return msgs, 0, nil
		}
	}
	msgs, _, stop, _ := scanRecords(name, b, len(b), 0)
	return msgs, max(written-stop, 0), nil
}
