package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// The rules a stamp applies to each message a client sends (docs/api.md, "Limits") live here,
// in one place, so that the server (internal/ingest) and the clients (`bridgehead send`) refuse
// exactly the same messages: a client that checks a message with Limits.Parse before sending
// it knows the stamp would take it, at the same limits.

// Fixed bounds of the message rules; docs/api.md states them.
const (
	// MaxSenderIDLen bounds a senderId, in bytes (it is ASCII).
	MaxSenderIDLen = 128
	// MaxKeyLen bounds an idempotency key or a message's "id", in bytes (it is ASCII).
	MaxKeyLen = 256
	// DefaultMaxBytes is the default bound of a message's value plus its property names and
	// values, in bytes: the Event Hubs Standard tier's event limit. `serve --max-message-bytes`.
	DefaultMaxBytes = 1 << 20
	// DefaultMaxProperties is the default bound of the properties of one message.
	DefaultMaxProperties = 32
	// MaxTTL bounds a time-to-live: a year. Longer is a mistake (milliseconds sent as seconds),
	// not a wish.
	MaxTTL = 365 * 24 * time.Hour
)

// Input is one message as a client sends it, before it is checked: {"senderId", "value",
// "properties"?, "id"?, "priority"?, "ttl"?}. A nil pointer is a member that was absent.
// encoding/json matches member names case-insensitively, as the prototype's ASP.NET did:
// "SenderId" and "senderid" work too.
type Input struct {
	SenderID   *string           `json:"senderId"`
	Value      *string           `json:"value"`
	Properties map[string]string `json:"properties"`
	ID         *string           `json:"id"`
	// Priority is 0 (highest) to MaxPriority; Check refuses anything else (ParsePriority).
	Priority *json.Number `json:"priority"`
	// TTL is the time-to-live in whole seconds, 1 to MaxTTL (ParseTTL).
	TTL *json.Number `json:"ttl"`
}

// ParsePriority parses a priority as a client writes it: a whole number from 0 (highest) to
// MaxPriority.
func ParsePriority(s string) (uint8, error) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n > MaxPriority {
		return 0, fmt.Errorf("priority must be a whole number from 0 (highest) to %d, not %q", MaxPriority, s)
	}
	return uint8(n), nil
}

// ParseTTL parses a time-to-live as a client writes it: whole seconds, 1 to MaxTTL.
func ParseTTL(s string) (time.Duration, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > int64(MaxTTL/time.Second) {
		return 0, fmt.Errorf("ttl must be whole seconds from 1 to %d, not %q", int64(MaxTTL/time.Second), s)
	}
	return time.Duration(n) * time.Second, nil
}

// FieldError is one problem of one message.
type FieldError struct {
	// Field is the JSON member at fault ("senderId", "value", "properties", "id"), or "" for the
	// message as a whole (it is not a JSON object of the expected shape).
	Field string `json:"field,omitempty"`
	// Detail says what is wrong, in a sentence a sender can act on.
	Detail string `json:"detail"`
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// Limits are the configurable bounds of the message rules. The zero value of each field means
// its default.
type Limits struct {
	// MaxBytes bounds a message's value plus its property names and values, in bytes. Default
	// DefaultMaxBytes (1 MiB).
	MaxBytes int
	// MaxProperties bounds the properties of one message. Default DefaultMaxProperties (32).
	MaxProperties int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxProperties <= 0 {
		l.MaxProperties = DefaultMaxProperties
	}
	return l
}

// ValidSenderID reports whether s is a senderId: 1-128 of A-Z a-z 0-9 . _ : @ -.
func ValidSenderID(s string) bool {
	if len(s) == 0 || len(s) > MaxSenderIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '@' || c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidKey reports whether s is an idempotency key or a message id: 1-256 printable ASCII
// characters.
func ValidKey(s string) bool {
	if len(s) == 0 || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Check returns every problem of in (all of them, so that a sender fixes everything in one go),
// or nil when a stamp with limits l takes it.
func (l Limits) Check(in *Input) []FieldError {
	l = l.withDefaults()
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	switch {
	case in.SenderID == nil:
		bad("senderId", "senderId is required")
	case !ValidSenderID(*in.SenderID):
		bad("senderId", "senderId must be 1-%d characters of A-Z a-z 0-9 . _ : @ -", MaxSenderIDLen)
	}
	size := 0
	switch {
	case in.Value == nil:
		bad("value", "value is required")
	case *in.Value == "":
		bad("value", "value must not be empty")
	default:
		size = len(*in.Value)
	}
	if len(in.Properties) > l.MaxProperties {
		bad("properties", "at most %d properties, got %d", l.MaxProperties, len(in.Properties))
	}
	for k, v := range in.Properties {
		if k == "" {
			bad("properties", "property names must not be empty")
		}
		size += len(k) + len(v)
	}
	if size > l.MaxBytes {
		bad("value", "value and properties are %d bytes, over the limit of %d", size, l.MaxBytes)
	}
	if in.ID != nil && !ValidKey(*in.ID) {
		bad("id", "id must be 1-%d printable ASCII characters", MaxKeyLen)
	}
	if in.Priority != nil {
		if _, err := ParsePriority(in.Priority.String()); err != nil {
			bad("priority", "%v", err)
		}
	}
	if in.TTL != nil {
		if _, err := ParseTTL(in.TTL.String()); err != nil {
			bad("ttl", "%v", err)
		}
	}
	return errs
}

// Parse decodes raw (one JSON object) with Decode and checks it with Check: the message, or
// every problem found (a decoding problem has Field "").
func (l Limits) Parse(raw []byte) (Input, []FieldError) {
	var in Input
	if err := Decode(raw, &in); err != nil {
		return Input{}, []FieldError{{Detail: err.Error()}}
	}
	if errs := l.Check(&in); errs != nil {
		return Input{}, errs
	}
	return in, nil
}

// ErrTrailing reports data after the one JSON value a body or a line may hold.
var ErrTrailing = errors.New("unexpected data after the JSON value")

// Decode decodes raw (one JSON object) into in, checking UTF-8 first and CheckJSON after:
// encoding/json would silently replace invalid bytes and lone surrogates with U+FFFD, and keep
// the last of a member sent twice, changing what the client sent. Its errors are sentences a
// client can act on (DescribeJSONError).
func Decode(raw []byte, in *Input) error {
	if !utf8.Valid(raw) {
		return errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(in); err != nil {
		return DescribeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailing
	}
	return CheckJSON(raw)
}

// DescribeJSONError turns encoding/json's errors into a sentence a client can act on.
func DescribeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Errorf("%s must be a JSON %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Errorf("expected a JSON object, not %s", te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return errors.New("empty body: expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	}
	return err
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "map", "struct":
		return "object"
	case "ptr":
		return "string"
	}
	return goKind
}
