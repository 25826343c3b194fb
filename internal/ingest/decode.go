package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
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

// limits are the validation bounds a Server applies: the message rules' (internal/message, which
// `bridgehead send` checks with too) and the messages of one request.
type limits struct {
	message     message.Limits
	maxMessages int
}

// delivery is how a message is delivered when it does not say: its priority and time-to-live
// (0: none). A request's comes from the stamp's defaults, its principal and its headers. age is
// how long before this request its client first tried to send it (Message-Age): the message
// counts as received then.
type delivery struct {
	priority uint8
	ttl      time.Duration
	age      time.Duration
}

// requestDelivery returns the delivery of r's messages that name none: the Priority and
// Message-Ttl headers over the principal's ttl over the stamp's defaults, and the Message-Age
// of a retried request; or the problem with a header. A Priority header that is not a bare
// number is HTTP's own (RFC 9218, "u=3, i", which browsers send) and is ignored.
func (s *Server) requestDelivery(r *http.Request) (delivery, *httpapi.Problem) {
	d := s.delivery
	if p := httpapi.Principal(r); p != nil && p.TTL > 0 {
		d.ttl = p.TTL
	}
	if v := strings.TrimSpace(r.Header.Get("Priority")); v != "" && !strings.ContainsAny(v, "=,;") {
		p, err := message.ParsePriority(v)
		if err != nil {
			return d, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidMessage, "Invalid message", "Priority header: "+err.Error())
		}
		d.priority = p
	}
	if v := r.Header.Get("Message-Ttl"); v != "" {
		ttl, err := message.ParseTTL(strings.TrimSpace(v))
		if err != nil {
			return d, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidMessage, "Invalid message", "Message-Ttl header: "+err.Error())
		}
		d.ttl = ttl
	}
	if vs := r.Header.Values("Message-Age"); len(vs) > 0 {
		age, err := parseAge(vs)
		if err != nil {
			return d, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidMessage, "Invalid message", "Message-Age header: "+err.Error())
		}
		d.age = age
	}
	return d, nil
}

// parseAge parses the Message-Age header: one value, whole seconds from 0 to message.MaxTTL
// (an age past any ttl says nothing more).
func parseAge(vs []string) (time.Duration, error) {
	v := strings.TrimSpace(vs[0])
	n, err := strconv.ParseInt(v, 10, 64)
	if len(vs) > 1 || strings.Contains(v, ",") || err != nil || n < 0 || n > int64(message.MaxTTL/time.Second) || v[0] == '+' {
		return 0, fmt.Errorf("want one value, whole seconds since the request's first try from 0 to %d, not %q",
			int64(message.MaxTTL/time.Second), strings.Join(vs, ", "))
	}
	return time.Duration(n) * time.Second, nil
}

// build validates one decoded message and returns it, or the problems found (all of them, so a
// client fixes everything in one go). key is the idempotency key to derive the id from, if any;
// d is the delivery of a message that names no priority or ttl of its own. The message is
// received at now less d's age, and expires its ttl after that.
func (l limits) build(index int, in *message.Input, key, stamp string, d delivery, now time.Time) (message.Message, []httpapi.FieldError) {
	if ferrs := l.message.Check(in); ferrs != nil {
		errs := make([]httpapi.FieldError, len(ferrs))
		for i, e := range ferrs {
			errs[i] = httpapi.FieldError{Index: index, Field: e.Field, Detail: e.Detail}
		}
		return message.Message{}, errs
	}
	if in.ID != nil {
		key = *in.ID
	}
	// Check has validated both: the parses cannot fail here.
	if in.Priority != nil {
		d.priority, _ = message.ParsePriority(in.Priority.String())
	}
	if in.TTL != nil {
		d.ttl, _ = message.ParseTTL(in.TTL.String())
	}
	// A retried request's messages were received when their client first tried (Message-Age):
	// they keep their age, on this stamp or the other.
	now = now.Add(-d.age)
	m := message.Message{
		ID:         correlationID(*in.SenderID, key),
		SenderID:   *in.SenderID,
		Value:      *in.Value,
		Properties: in.Properties,
		ReceivedAt: now,
		Stamp:      stamp,
		Priority:   d.priority,
	}
	if d.ttl > 0 {
		m.ExpiresAt = now.Add(d.ttl)
	}
	return m, nil
}

// decodeBatchFast decodes a whole /v1/messages body in one pass: the common case of a valid
// request. Any error sends the caller to splitBatch + decodeOne, which name each problem.
func decodeBatchFast(body []byte, ndjson bool, max int) ([]message.Input, error) {
	if singleObject(body, ndjson) {
		ins := make([]message.Input, 1)
		return ins, message.Decode(body, &ins[0]) // UTF-8 and CheckJSON included
	}
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("empty body")
	}
	var ins []message.Input
	if !ndjson {
		if err := json.Unmarshal(trimmed, &ins); err != nil {
			return nil, err
		}
		if len(ins) == 0 || len(ins) > max {
			return nil, errors.New("message count out of range")
		}
	} else {
		lines, err := splitBatch(trimmed, true, max)
		if err != nil {
			return nil, err
		}
		ins = make([]message.Input, len(lines))
		for k, line := range lines {
			if err := json.Unmarshal(line, &ins[k]); err != nil {
				return nil, err
			}
		}
	}
	// What encoding/json accepted while changing it (a lone surrogate, a member twice).
	return ins, message.CheckJSON(trimmed)
}

// singleObject reports whether a /v1/messages body is one message object rather than a batch
// (an array, or NDJSON): then the body as a whole is the JSON at fault when it does not decode.
func singleObject(body []byte, ndjson bool) bool {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	return !ndjson && len(trimmed) > 0 && trimmed[0] != '['
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
		return nil, message.DescribeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, message.ErrTrailing
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
