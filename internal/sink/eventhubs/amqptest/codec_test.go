package amqptest

import (
	"bytes"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	v := perf(perfAttach, "link", uint32(7), true, uint8(1), nil,
		perf(descSource, "$cbs", uint32(0), symbol("link-detach")),
		perf(descTarget, "hub"), amqpMap{symbol("k"), int64(-3)}, false, uint32(0), uint64(1<<20),
		array{symbol("com.microsoft:geodr")}, nil, amqpMap{symbol("t"), time.UnixMilli(1700000000000).UTC()})
	b := encode(nil, v)
	got, n, err := decode(b)
	if err != nil || n != len(b) {
		t.Fatalf("decode: %v (%d of %d bytes)", err, n, len(b))
	}
	if again := encode(nil, got); !bytes.Equal(again, b) {
		t.Errorf("re-encoding differs:\n got %x\nwant %x", again, b)
	}
}

// FuzzDecode: the peer's decoder never panics nor reads past its input.
func FuzzDecode(f *testing.F) {
	f.Add(encode(nil, perf(perfOpen, "c", nil, uint32(65536))))
	f.Add(encode(nil, array{symbol("ANONYMOUS"), symbol("PLAIN")}))
	f.Add([]byte{0x00, 0x53, 0x10, 0xd0, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := decode(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		_ = v
	})
}
