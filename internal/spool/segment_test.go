package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
)

func testMessages(n int) []message.Message {
	out := make([]message.Message, n)
	for i := range out {
		out[i] = message.Message{ID: uuid.New(), SenderID: "s", Value: "hello", ReceivedAt: time.Unix(1700000000, int64(i)).UTC(), Stamp: "onprem",
			Properties: map[string]string{"k": "v"}}
	}
	return out
}

func TestSegmentRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 300} {
		in := testMessages(n)
		b, base := encodeSegment(time.UnixMilli(1700000000123), "abcdefghijkl", message.DefaultPriority, in)
		if base.Count != n || base.Bytes != int64(len(b)) {
			t.Fatalf("base %+v for %d messages of %d bytes", base, n, len(b))
		}
		h, got, err := decodeSegment("x", b)
		if err != nil {
			t.Fatalf("decode %d: %v", n, err)
		}
		if h.Count != n || h.Writer != "abcdefghijkl" || h.Created.UnixMilli() != 1700000000123 {
			t.Fatalf("header %+v", h)
		}
		if n > 0 && !reflect.DeepEqual(got, in) {
			t.Fatalf("got %+v, want %+v", got, in)
		}
	}
}

// TestDecodeHostileLengthsDoNotAllocate feeds lengths and counts claiming gigabytes in a file of
// a few hundred bytes: the decoder must allocate in proportion to the file, not to the claims.
func TestDecodeHostileLengthsDoNotAllocate(t *testing.T) {
	b, _ := encodeSegment(time.Now(), "abcdefghijkl", message.DefaultPriority, testMessages(2))
	hostileCount := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(hostileCount[8:], 0xffffffff)
	binary.LittleEndian.PutUint32(hostileCount[48:], crc32.Checksum(hostileCount[:48], castagnoli))
	hostileLen := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(hostileLen[headerSize:], 0xfffffff0)
	for name, in := range map[string][]byte{"count": hostileCount, "record length": hostileLen} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, err := decodeSegment("x", in)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
			t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(in), alloc)
		}
	}
}

// FuzzDecodeSegment: the decoder never panics, never returns more records than the bytes can
// hold, and what it returns for a whole segment re-encodes to the same records.
// Seed corpus: testdata/fuzz/FuzzDecodeSegment (valid, truncated, bit-flipped, hostile lengths).
func FuzzDecodeSegment(f *testing.F) {
	valid, _ := encodeSegment(time.UnixMilli(1700000000000), "abcdefghijkl", message.DefaultPriority, testMessages(3))
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(segMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, msgs, err := decodeSegment("fuzz", b)
		if limit := max(0, (len(b)-headerSize)/(recHeaderSize+1)); len(msgs) > limit {
			t.Fatalf("%d records from %d bytes", len(msgs), len(b))
		}
		if cap(msgs) > len(b) {
			t.Fatalf("capacity %d from %d bytes: allocation driven by a length field", cap(msgs), len(b))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, _ := encodeSegment(time.UnixMilli(0), "abcdefghijkl", message.DefaultPriority, msgs)
		_, msgs2, err := decodeSegment("again", again)
		if err != nil || !reflect.DeepEqual(msgs2, msgs) {
			t.Fatalf("re-encode: %v; got %+v, want %+v", err, msgs2, msgs)
		}
	})
}

// TestDecodeOpenStopsAtTheHole: an open segment is created with a hole to its full size. Its
// records read up to the zeros, which are neither records nor a torn tail; the bytes of a commit
// torn before the hole are; a segment created ahead and never written has no records and no
// damage (recovery unlinks it, never quarantines it).
func TestDecodeOpenStopsAtTheHole(t *testing.T) {
	in := testMessages(3)
	b, base := encodeSegment(time.UnixMilli(1700000000123), "abcdefghijkl", message.DefaultPriority, in)
	base.Count, base.Bytes = 0, 0 // as its writer wrote it: the count comes with the seal
	putHeader(b[:headerSize], base)
	written := b[:len(b)-trailerSize]
	const size = 64 << 10
	hole := func(b []byte) []byte { return append(slices.Clone(b), make([]byte, size-len(b))...) }

	msgs, tail, err := decodeOpen("x.open", hole(written))
	if err != nil || len(msgs) != len(in) || tail != 0 {
		t.Fatalf("records then the hole: %d messages, tail %d, %v; want %d, 0, nil", len(msgs), tail, err, len(in))
	}
	torn := append(slices.Clone(written), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3) // a frame a crash tore
	if msgs, tail, err = decodeOpen("x.open", hole(torn)); err != nil || len(msgs) != len(in) || tail != 7 {
		t.Fatalf("records, a torn commit, then the hole: %d messages, tail %d, %v; want %d, 7, nil", len(msgs), tail, err, len(in))
	}
	if msgs, tail, err = decodeOpen("x.open", make([]byte, size)); err != nil || len(msgs) != 0 || tail != 0 {
		t.Fatalf("a spare never written: %d messages, tail %d, %v; want none, 0, nil", len(msgs), tail, err)
	}
	// In a sealed segment zeros are damage, reported, not skipped over record by record.
	sealed, _ := encodeSegment(time.UnixMilli(1700000000123), "abcdefghijkl", message.DefaultPriority, in)
	clear(sealed[headerSize : headerSize+recHeaderSize])
	if _, _, err := decodeSegment("x.a0", sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a sealed segment with a zeroed record frame: %v, want ErrCorrupt", err)
	}
}
