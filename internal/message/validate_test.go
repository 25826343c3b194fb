package message_test

import (
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

func TestValidSenderID(t *testing.T) {
	for s, want := range map[string]bool{
		"01": true, "plant-a": true, "a.b_c:d@e-f": true, strings.Repeat("x", 128): true,
		"": false, "plant a": false, "plänt": false, "a/b": false, strings.Repeat("x", 129): false,
	} {
		if got := message.ValidSenderID(s); got != want {
			t.Errorf("ValidSenderID(%q): got %v, want %v", s, got, want)
		}
	}
}

func TestValidKey(t *testing.T) {
	for s, want := range map[string]bool{
		"k": true, "reading 42/7": true, "~!": true, strings.Repeat("k", 256): true,
		"": false, "tab\t": false, "ü": false, "\x7f": false, strings.Repeat("k", 257): false,
	} {
		if got := message.ValidKey(s); got != want {
			t.Errorf("ValidKey(%q): got %v, want %v", s, got, want)
		}
	}
}

// TestParse walks the rules of docs/api.md's "Limits" table, one line a case: the fields named
// are the ones the server's 400 names.
func TestParse(t *testing.T) {
	lim := message.Limits{MaxBytes: 16, MaxProperties: 2}
	for _, tc := range []struct {
		line   string
		fields []string // nil: accepted
	}{
		{`{"senderId":"plant-a","value":"21.5"}`, nil},
		{`{"SenderId":"plant-a","VALUE":"21.5","properties":{"u":"C"},"id":"r-1"}`, nil},
		{`{"senderId":"plant a","value":"21.5"}`, []string{"senderId"}},
		{`{"value":"21.5"}`, []string{"senderId"}},
		{`{"senderId":"a"}`, []string{"value"}},
		{`{"senderId":"a","value":""}`, []string{"value"}},
		{`{"senderId":"a","value":"12345678901234567"}`, []string{"value"}},
		{`{"senderId":"a","value":"1234","properties":{"k":"1234567890123"}}`, []string{"value"}},
		{`{"senderId":"a","value":"1","properties":{"a":"","b":"","c":""}}`, []string{"properties"}},
		{`{"senderId":"a","value":"1","properties":{"":"x"}}`, []string{"properties"}},
		{`{"senderId":"a","value":"1","id":""}`, []string{"id"}},
		{`{"senderId":"a","value":"1","priority":0,"ttl":60}`, nil},
		{`{"senderId":"a","value":"1","priority":9,"ttl":31536000}`, nil},
		{`{"senderId":"a","value":"1","priority":10}`, []string{"priority"}},
		{`{"senderId":"a","value":"1","priority":-1}`, []string{"priority"}},
		{`{"senderId":"a","value":"1","priority":1.5}`, []string{"priority"}},
		{`{"senderId":"a","value":"1","ttl":0}`, []string{"ttl"}},
		{`{"senderId":"a","value":"1","ttl":31536001}`, []string{"ttl"}},
		{`{"senderId":"a","value":"1","ttl":2.5,"priority":"x"}`, []string{""}},
		{`{"senderId":"a","value":"1","ttl":2.5}`, []string{"ttl"}},
		{`{"senderId":"","value":"","id":"\t"}`, []string{"senderId", "value", "id"}},
		{`{"senderId":"a","value":1}`, []string{""}},
		{`{"senderId":"a","value":"1"} x`, []string{""}},
		{`{"senderId":"a","value":"1"`, []string{""}},
		{`[{"senderId":"a","value":"1"}]`, []string{""}},
		{"{\"senderId\":\"a\",\"value\":\"\xff\"}", []string{""}},
		{``, []string{""}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			in, errs := lim.Parse([]byte(tc.line))
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
				if e.Detail == "" {
					t.Errorf("problem of field %q has no detail", e.Field)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("got problems with fields %q (%v), want %q", got, errs, tc.fields)
			}
			if errs == nil && (in.SenderID == nil || in.Value == nil) {
				t.Errorf("accepted, but got %+v", in)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	big := strings.Repeat("v", message.DefaultMaxBytes)
	id := "plant-a"
	if errs := (message.Limits{}).Check(&message.Input{SenderID: &id, Value: &big}); errs != nil {
		t.Errorf("a value of DefaultMaxBytes: got %v, want accepted", errs)
	}
	big += "v"
	if errs := (message.Limits{}).Check(&message.Input{SenderID: &id, Value: &big}); len(errs) != 1 {
		t.Errorf("a value of DefaultMaxBytes+1: got %v, want one problem", errs)
	}
}

// FuzzParse: any line is either refused with named problems or yields a message that meets
// every rule; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"senderId":"01","value":"Hello world!"}`))
	f.Add([]byte(`{"SenderId":"b","Value":"2","properties":{"k":"v"},"id":"x"}`))
	f.Add([]byte(`{"senderId":5}`))
	f.Add([]byte("\xff\xfe"))
	lim := message.Limits{MaxBytes: 1 << 10, MaxProperties: 4}
	f.Fuzz(func(t *testing.T, raw []byte) {
		in, errs := lim.Parse(raw)
		if errs != nil {
			for _, e := range errs {
				if e.Detail == "" {
					t.Fatalf("a problem without detail: %+v", errs)
				}
			}
			return
		}
		if in.SenderID == nil || !message.ValidSenderID(*in.SenderID) || in.Value == nil || *in.Value == "" ||
			len(in.Properties) > lim.MaxProperties || (in.ID != nil && !message.ValidKey(*in.ID)) {
			t.Fatalf("an invalid message passed: %+v", in)
		}
	})
}
