package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// CheckJSON refuses what encoding/json would accept while changing what the client sent. It
// must be given JSON that decodes (the text of one message, an array of them, or one NDJSON
// line), and reports:
//   - a lone UTF-16 surrogate escape ("\ud800"), which encoding/json turns into U+FFFD;
//   - a member named twice in one object, of which encoding/json keeps the last: in a message
//     object names match case-insensitively, as encoding/json matches them to the message's
//     fields ({"value":"a","VALUE":"b"} would carry b), and exactly in a nested object (the
//     properties, where "a" and "A" are two properties).
//
// A message object is one at the top, or in the top array.
func CheckJSON(raw []byte) error {
	// The names of the open objects, all on one slice: an object's names start at its mark.
	// Names are sub-slices of raw (decoded only when escaped): no allocation for most bodies.
	type object struct {
		message bool
		mark    int    // where its names start in names
		last    []byte // the last member name seen
	}
	var (
		stackBuf [8]object
		namesBuf [40][]byte
		stack    = stackBuf[:0] // arrays are objects with mark -1
		names    = namesBuf[:0]
	)
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{':
			msg := len(stack) == 0 || (len(stack) == 1 && stack[0].mark < 0)
			stack = append(stack, object{message: msg, mark: len(names)})
		case '[':
			stack = append(stack, object{mark: -1})
		case '}', ']':
			if n := len(stack); n > 0 {
				if stack[n-1].mark >= 0 {
					names = names[:stack[n-1].mark]
				}
				stack = stack[:n-1]
			}
		case '"':
			end, escaped, err := scanString(raw, i)
			j := end + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\r' || raw[j] == '\n') {
				j++
			}
			var obj *object
			if n := len(stack); n > 0 && stack[n-1].mark >= 0 {
				obj = &stack[n-1]
			}
			isName := obj != nil && j < len(raw) && raw[j] == ':'
			if err != nil {
				switch {
				case isName:
					return fmt.Errorf("a member name %w", err)
				case obj != nil && obj.last != nil:
					return fmt.Errorf("the value of %q %w", obj.last, err)
				}
				return fmt.Errorf("a string %w", err)
			}
			if isName {
				name := raw[i+1 : end]
				if escaped {
					var s string
					_ = json.Unmarshal(raw[i:end+1], &s) // valid: the caller's JSON decodes
					name = []byte(s)
				}
				for _, seen := range names[obj.mark:] {
					if (obj.message && bytes.EqualFold(seen, name)) || (!obj.message && bytes.Equal(seen, name)) {
						if obj.message {
							return fmt.Errorf("member %q appears twice (names match case-insensitively): send it once", name)
						}
						return fmt.Errorf("member %q appears twice in one object: send it once", name)
					}
				}
				names = append(names, name)
				obj.last = name
			}
			i = end
		}
	}
	return nil
}

// scanString finds the closing quote of the string starting at raw[start] and reports whether
// it has escapes; a lone surrogate escape is an error.
func scanString(raw []byte, start int) (end int, escaped bool, err error) {
	pendingHigh := false // the previous escape was a high surrogate that needs its low half
	for i := start + 1; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			if pendingHigh {
				return i, false, errLoneSurrogate
			}
			return i, escaped, nil
		case '\\':
			escaped = true
			if i+1 < len(raw) && raw[i+1] == 'u' && i+5 < len(raw) {
				if r, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 32); err == nil {
					switch {
					case r >= 0xd800 && r < 0xdc00:
						if pendingHigh {
							return skipString(raw, i), false, errLoneSurrogate
						}
						pendingHigh = true
					case r >= 0xdc00 && r < 0xe000:
						if !pendingHigh {
							return skipString(raw, i), false, errLoneSurrogate
						}
						pendingHigh = false
					default:
						if pendingHigh {
							return skipString(raw, i), false, errLoneSurrogate
						}
					}
				}
				i += 5
				continue
			}
			if pendingHigh {
				return skipString(raw, i), false, errLoneSurrogate
			}
			i++ // the escaped character
		default:
			if pendingHigh {
				return skipString(raw, i), false, errLoneSurrogate
			}
		}
	}
	return len(raw) - 1, escaped, nil
}

var errLoneSurrogate = errors.New("holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair), which is not a character: send valid pairs or the character itself")

// skipString returns the index of the closing quote of the string that i is inside.
func skipString(raw []byte, i int) int {
	for ; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(raw) - 1
}
