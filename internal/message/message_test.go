package message_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/google/uuid"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 24, 8, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		msg  message.Message
	}{
		{"minimal", message.Message{SenderID: "01", Value: "Hello world!", ReceivedAt: at}},
		{"full", message.Message{
			SenderID: "plant-a:7", Value: "{\"t\":21.5}", Stamp: "onprem", ReceivedAt: at,
			Properties: map[string]string{"unit": "C", "site": "north", "": "empty key"},
		}},
		{"unicode", message.Message{SenderID: "s", Value: "Grüße, 温度 ✓", Stamp: "cloud", ReceivedAt: at}},
		{"zero time", message.Message{SenderID: "s", Value: "v", ReceivedAt: time.Unix(0, 0).UTC(), Priority: message.DefaultPriority}},
		{"default priority", message.Message{SenderID: "s", Value: "v", ReceivedAt: at, Priority: message.DefaultPriority}},
		{"alarm with expiry", message.Message{SenderID: "s", Value: "v", ReceivedAt: at, Priority: 0, ExpiresAt: at.Add(90 * time.Second)}},
		{"lowest", message.Message{SenderID: "s", Value: "v", ReceivedAt: at, Priority: message.MaxPriority}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.msg.AppendBinary(nil)
			if len(b) > tt.msg.EncodedSize() {
				t.Fatalf("encoded %d bytes, EncodedSize promised at most %d", len(b), tt.msg.EncodedSize())
			}
			got := message.Message{ID: uuid.Nil}
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Fatalf("got %+v, want %+v", got, tt.msg)
			}
		})
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	good := (&message.Message{SenderID: "01", Value: "v", ReceivedAt: time.Now()}).AppendBinary(nil)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		{"hostile string length", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"hostile property count", append(append([]byte{}, good[:len(good)-1]...), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"invalid utf-8", []byte{1, 1, 0xff, 0, 0, 0, 0}},
		{"priority out of range", []byte{2, 1, 'a', 1, 'v', 0, 0, 10, 0, 0}},
		{"version 2 cut before the expiry", []byte{2, 1, 'a', 1, 'v', 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m message.Message
			err := m.UnmarshalBinary(tt.in)
			if !errors.Is(err, message.ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	f.Add((&message.Message{SenderID: "01", Value: "Hello", ReceivedAt: time.Unix(1, 0)}).AppendBinary(nil))
	f.Add((&message.Message{SenderID: "a", Value: "b", Properties: map[string]string{"k": "v"}}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m message.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes to the same message.
		var again message.Message
		if err := again.UnmarshalBinary(m.AppendBinary(nil)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("got %+v, want %+v", again, m)
		}
	})
}

// A message at the default priority without an expiry is written as version 1, byte for byte
// what the release before priorities wrote, so that its forwarders read what an upgraded API
// spools; and version 1 reads back at the default priority.
func TestDefaultPriorityKeepsVersion1(t *testing.T) {
	m := message.Message{SenderID: "s", Value: "v", ReceivedAt: time.Unix(5, 0).UTC(), Priority: message.DefaultPriority}
	b := m.AppendBinary(nil)
	if b[0] != 1 {
		t.Fatalf("default priority, no expiry: version %d, want 1", b[0])
	}
	var got message.Message
	if err := got.UnmarshalBinary(b); err != nil || got.Priority != message.DefaultPriority || !got.ExpiresAt.IsZero() {
		t.Fatalf("version 1 read back as priority %d expiry %v (%v)", got.Priority, got.ExpiresAt, err)
	}
	for _, m := range []message.Message{
		{SenderID: "s", Value: "v", Priority: 0},
		{SenderID: "s", Value: "v", Priority: message.DefaultPriority, ExpiresAt: time.Unix(9, 0)},
	} {
		if b := m.AppendBinary(nil); b[0] != 2 {
			t.Fatalf("priority %d expiry %v: version %d, want 2", m.Priority, m.ExpiresAt, b[0])
		}
	}
}

func TestExpired(t *testing.T) {
	at := time.Unix(100, 0)
	never := message.Message{}
	m := message.Message{ExpiresAt: at}
	if never.Expired(at.Add(1000 * time.Hour)) {
		t.Fatal("a message without an expiry expired")
	}
	if m.Expired(at.Add(-time.Nanosecond)) || !m.Expired(at) || !m.Expired(at.Add(time.Second)) {
		t.Fatal("Expired is wrong around ExpiresAt")
	}
}
