package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/google/uuid"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// CorrelationNamespace is the UUIDv5 namespace of correlation ids derived from idempotency keys:
// id = UUIDv5(CorrelationNamespace, senderId + "\n" + key). Both stamps derive the same id for the
// same (senderId, key), so a retry to either stamp carries the id downstream dedupes on.
var CorrelationNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://bridgehead.dev/correlation-id"))

// correlationID returns the message id for senderID and an idempotency key ("" = none: a fresh,
// time-ordered UUIDv7).
func correlationID(senderID, key string) uuid.UUID {
	if key == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return uuid.New()
		}
		return id
	}
	return uuid.NewSHA1(CorrelationNamespace, []byte(senderID+"\n"+key))
}

// inMessage is a message as a client sends it. encoding/json matches member names
// case-insensitively, as ASP.NET did: "SenderId" and "senderid" work too.
type inMessage struct {
	SenderID   *string           `json:"senderId"`
	Value      *string           `json:"value"`
	Properties map[string]string `json:"properties"`
	ID         *string           `json:"id"`
}

// limits are the validation bounds a Server applies.
type limits struct {
	maxMessageBytes int
	maxProperties   int
	maxMessages     int
}

const (
	maxSenderIDLen = 128
	maxKeyLen      = 256
)

func validSenderID(s string) bool {
	if len(s) == 0 || len(s) > maxSenderIDLen {
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

// validKey checks an idempotency key or message id: 1–256 printable ASCII characters.
func validKey(s string) bool {
	if len(s) == 0 || len(s) > maxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// build validates one decoded message and returns it, or the problems found (all of them, so a
// client fixes everything in one go). key is the idempotency key to derive the id from, if any.
func (l limits) build(index int, in *inMessage, key, stamp string, now time.Time) (message.Message, []httpapi.FieldError) {
	var errs []httpapi.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, httpapi.FieldError{Index: index, Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	switch {
	case in.SenderID == nil:
		bad("senderId", "senderId is required")
	case !validSenderID(*in.SenderID):
		bad("senderId", "senderId must be 1-%d characters of A-Z a-z 0-9 . _ : @ -", maxSenderIDLen)
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
	if len(in.Properties) > l.maxProperties {
		bad("properties", "at most %d properties, got %d", l.maxProperties, len(in.Properties))
	}
	for k, v := range in.Properties {
		if k == "" {
			bad("properties", "property names must not be empty")
		}
		size += len(k) + len(v)
	}
	if size > l.maxMessageBytes {
		bad("value", "value and properties are %d bytes, over the limit of %d", size, l.maxMessageBytes)
	}
	if in.ID != nil {
		if !validKey(*in.ID) {
			bad("id", "id must be 1-%d printable ASCII characters", maxKeyLen)
		} else {
			key = *in.ID
		}
	}
	if len(errs) > 0 {
		return message.Message{}, errs
	}
	return message.Message{
		ID:         correlationID(*in.SenderID, key),
		SenderID:   *in.SenderID,
		Value:      *in.Value,
		Properties: in.Properties,
		ReceivedAt: now,
		Stamp:      stamp,
	}, nil
}

// errTrailing reports data after the one JSON value a body may hold.
var errTrailing = errors.New("unexpected data after the JSON value")

// decodeOne decodes raw (one JSON object) into in, checking UTF-8 first: encoding/json would
// silently replace invalid bytes with U+FFFD, changing what the client sent.
func decodeOne(raw []byte, in *inMessage) error {
	if !utf8.Valid(raw) {
		return errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(in); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

// describeJSONError turns encoding/json's errors into a sentence a client can act on.
func describeJSONError(err error) error {
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

// decodeBatchFast decodes a whole /v1/messages body in one pass: the common case of a valid
// request. Any error sends the caller to splitBatch + decodeOne, which name each problem.
func decodeBatchFast(body []byte, ndjson bool, max int) ([]inMessage, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("empty body")
	}
	if !ndjson {
		if trimmed[0] != '[' {
			ins := make([]inMessage, 1)
			return ins, decodeOne(trimmed, &ins[0])
		}
		var ins []inMessage
		if err := json.Unmarshal(trimmed, &ins); err != nil {
			return nil, err
		}
		if len(ins) == 0 || len(ins) > max {
			return nil, errors.New("message count out of range")
		}
		return ins, nil
	}
	// NDJSON: one object per line.
	lines, err := splitBatch(trimmed, true, max)
	if err != nil {
		return nil, err
	}
	ins := make([]inMessage, len(lines))
	for k, line := range lines {
		if err := json.Unmarshal(line, &ins[k]); err != nil {
			return nil, err
		}
	}
	return ins, nil
}

// splitBatch splits a /v1/messages body into raw JSON objects: a single object, an array of
// objects (application/json), or one object per line (application/x-ndjson). At most max
// objects are returned; more is an error.
func splitBatch(body []byte, ndjson bool, max int) ([][]byte, error) {
	if ndjson {
		var out [][]byte
		for rest := body; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if len(out) == max {
				return nil, fmt.Errorf("more than %d messages in one request", max)
			}
			out = append(out, line)
		}
		if len(out) == 0 {
			return nil, errors.New("empty body: expected one JSON object per line")
		}
		return out, nil
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: expected a JSON object or array")
	}
	if trimmed[0] != '[' {
		return [][]byte{trimmed}, nil
	}
	var raws []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&raws); err != nil {
		return nil, describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	if len(raws) == 0 {
		return nil, errors.New("empty array: expected at least one message")
	}
	if len(raws) > max {
		return nil, fmt.Errorf("%d messages in one request, more than %d", len(raws), max)
	}
	out := make([][]byte, len(raws))
	for i, r := range raws {
		out[i] = r
	}
	return out, nil
}

// mediaType returns the lowercase media type of a Content-Type header ("" when absent or bad).
func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

// isJSON accepts application/json and any application/*+json.
func isJSON(mt string) bool {
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func isNDJSON(mt string) bool {
	return mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl"
}
