package message_test

import (
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

func TestCheckJSON(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want string // "" = accepted; else a part of the error
	}{
		{`{"senderId":"a","value":"b"}`, ""},
		{`{"senderId":"a","value":"\ud83d\ude00"}`, ""},                     // a valid pair
		{`{"senderId":"a","value":"\\ud800"}`, ""},                          // a backslash, then text
		{`{"senderId":"a","value":"x","properties":{"a":"1","A":"2"}}`, ""}, // two properties
		{`[{"senderId":"a","value":"1"},{"senderId":"a","value":"2"}]`, ""},
		{`{"senderId":"a","value":"\ud800"}`, `value of "value"`},
		{`{"senderId":"a","value":"\udc00x"}`, "lone UTF-16 surrogate"},
		{`{"senderId":"a","value":"\ud800\u0041"}`, "lone UTF-16 surrogate"},
		{`{"senderId":"a","value":"\ud800 "}`, "lone UTF-16 surrogate"},
		{`{"senderId":"a","properties":{"k":"\ud800"},"value":"v"}`, `value of "k"`},
		{`{"value":"a","VALUE":"b","senderId":"s"}`, `"VALUE" appears twice`},
		{`{"value":"a","senderId":"s","value":"b"}`, `"value" appears twice`},
		{`[{"senderId":"a","value":"1","Value":"2"}]`, "appears twice"},
		{`{"senderId":"a","value":"x","properties":{"a":"1","a":"2"}}`, `"a" appears twice in one object`},
		{`{"senderId":"a","value":"x","properties":{"\u0061":"1","a":"2"}}`, `"a" appears twice`}, // escaped name
	} {
		err := message.CheckJSON([]byte(tt.raw))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tt.raw, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error with %q", tt.raw, err, tt.want)
		}
	}
}

// TestDecodeRefusesWhatJSONWouldChange: the rules the server and send share refuse both.
func TestDecodeRefusesWhatJSONWouldChange(t *testing.T) {
	var in message.Input
	if err := message.Decode([]byte(`{"senderId":"a","value":"\ud800"}`), &in); err == nil {
		t.Error("a lone surrogate decoded (as U+FFFD)")
	}
	if err := message.Decode([]byte(`{"senderId":"a","value":"a","VALUE":"b"}`), &in); err == nil {
		t.Error("two values for one field decoded (the last kept)")
	}
}
