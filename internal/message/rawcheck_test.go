package message_test

import (
	"bytes"
	"encoding/json"
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

// FuzzCheckJSON: on any input CheckJSON returns (no panic, no endless loop), and on valid JSON
// it accepts whatever holds no escape and no member name twice.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"senderId":"a","value":"b"}`, `[{"a":"\ud83d\ude00"},{"A":1}]`, `{"a":{"b":[{"c":"\"}"}]}}`, `"\`, `{"\u0061":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := message.CheckJSON(raw)
		if err != nil || !json.Valid(raw) || bytes.Contains(raw, []byte(`\`)) {
			return
		}
		// Without escapes, a repeated name is the only refusal: count names by a decoder.
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		if dups := repeatedName(json.NewDecoder(bytes.NewReader(raw))); dups {
			t.Fatalf("CheckJSON accepted %q, which has an exact duplicate name", raw)
		}
	})
}

// repeatedName reports whether any object in the token stream names a member twice exactly.
func repeatedName(dec *json.Decoder) bool {
	type obj struct {
		names  map[string]bool
		expect bool // the next string token is a name
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		top := (*obj)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top != nil {
					top.expect = true
				}
				stack = append(stack, &obj{names: map[string]bool{}, expect: true})
				continue
			case '[':
				if top != nil {
					top.expect = true
				}
				stack = append(stack, nil)
				continue
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1] != nil {
					stack[len(stack)-1].expect = true
				}
				continue
			}
		case string:
			if top != nil && top.expect {
				if top.names[v] {
					return true
				}
				top.names[v], top.expect = true, false
				continue
			}
		}
		if top != nil {
			top.expect = true
		}
	}
}
