package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Error is a stamp's non-2xx answer, from its application/problem+json body (RFC 9457). Send
// returns it as is for a request the stamp refused as bad (4xx other than 408 and 429), and
// wrapped when every try failed (the last try's answer); use errors.As.
type Error struct {
	// Endpoint is the endpoint that answered.
	Endpoint string
	// Status is the HTTP status code.
	Status int
	// Type is the problem type URI, stable for branching on
	// ("https://bridgehead.dev/problems/invalid-message"); empty if the body was not problem+json.
	Type string
	// Title and Detail describe the problem for people. Detail holds the start of the body
	// when it was not problem+json (a proxy's page).
	Title, Detail string
	// Errors lists each invalid message by index, for type invalid-message.
	Errors []FieldError

	retryAfter time.Duration
}

// FieldError is one problem of one message of a request.
type FieldError struct {
	Index  int    `json:"index"`  // the message's index in the request
	Field  string `json:"field"`  // "senderId", "value", "properties"
	Detail string `json:"detail"` // what is wrong
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s answered %d", e.Endpoint, e.Status)
	if e.Type != "" {
		fmt.Fprintf(&b, " %s", strings.TrimPrefix(e.Type, "https://bridgehead.dev/problems/"))
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	for i, f := range e.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-i)
			break
		}
		fmt.Fprintf(&b, "; message %d %s: %s", f.Index, f.Field, f.Detail)
	}
	return b.String()
}

// short is the status and problem type: "503 spool-full", or "502 Bad Gateway" without a type.
func (e *Error) short() string {
	if e.Type != "" {
		return fmt.Sprintf("%d %s", e.Status, strings.TrimPrefix(e.Type, "https://bridgehead.dev/problems/"))
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// newError reads a problem+json body, or keeps the start of any other body as Detail.
func newError(endpoint string, status int, body []byte) *Error {
	e := &Error{Endpoint: endpoint, Status: status}
	var p struct {
		Type   string       `json:"type"`
		Title  string       `json:"title"`
		Detail string       `json:"detail"`
		Errors []FieldError `json:"errors"`
	}
	if err := json.Unmarshal(body, &p); err == nil && p.Type != "" {
		e.Type, e.Title, e.Detail, e.Errors = p.Type, p.Title, p.Detail, p.Errors
		return e
	}
	d := strings.TrimSpace(string(body))
	if len(d) > 200 {
		d = d[:200] + "…"
	}
	e.Detail = d
	return e
}

// retryAfterOf returns the Retry-After an error carries, 0 if none.
func retryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.retryAfter
	}
	return 0
}

// correlationNamespace is the UUIDv5 namespace of derived correlationIds (docs/api.md).
var correlationNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://bridgehead.dev/correlation-id"))

// CorrelationID returns the correlationId a stamp gives a message of senderID with idempotency
// key (a message's ID): UUIDv5(UUIDv5(URL namespace, "https://bridgehead.dev/correlation-id"),
// senderID + "\n" + key), lower case. Every stamp derives the same one.
func CorrelationID(senderID, key string) string {
	return uuid.NewSHA1(correlationNamespace, []byte(senderID+"\n"+key)).String()
}

// cause says in a few words why a try got no answer, for Failover: the condition a person
// recognises ("connection refused", "no answer within 10s"), not the wrapped chain.
func (c *Client) cause(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.As(err, &dns):
		return "cannot resolve " + dns.Name
	case errors.As(err, &op) && op.Op == "dial" && op.Timeout():
		return fmt.Sprintf("no connection within %v", c.cfg.ConnectTimeout)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("no answer within %v", c.cfg.Timeout)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	}
	// The innermost error: the wrapping names the request, which the caller knows.
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			return err.Error()
		}
		err = inner
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
