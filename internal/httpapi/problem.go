// Package httpapi provides what Bridgehead's HTTP surfaces share: RFC 9457 problem bodies with
// stable types, the authentication guard, and the router that matches paths as the prototype's
// ASP.NET routing did, applies each route's access rule and counts every request.
//
// The message API (internal/ingest) and the operator surface (internal/ops) each hand the router
// their routes; neither imports the other.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// ProblemBase prefixes every problem type URI; docs/api.md documents each one under its slug.
const ProblemBase = "https://bridgehead.dev/problems/"

// Problem types (RFC 9457 `type`), stable: clients may branch on them.
const (
	ProblemInvalidJSON      = ProblemBase + "invalid-json"
	ProblemInvalidMessage   = ProblemBase + "invalid-message"
	ProblemUnsupportedMedia = ProblemBase + "unsupported-media-type"
	ProblemTooLarge         = ProblemBase + "payload-too-large"
	ProblemMessageTooLarge  = ProblemBase + "message-too-large"
	ProblemRequestTimeout   = ProblemBase + "request-timeout"
	ProblemBusy             = ProblemBase + "server-busy"
	ProblemHeadersTooLarge  = ProblemBase + "headers-too-large"
	ProblemMethodNotAllowed = ProblemBase + "method-not-allowed"
	ProblemNotFound         = ProblemBase + "not-found"
	ProblemSpoolFull        = ProblemBase + "spool-full"
	ProblemSpoolUnavailable = ProblemBase + "spool-unavailable"
	ProblemShuttingDown     = ProblemBase + "shutting-down"
	ProblemInternal         = ProblemBase + "internal"
	ProblemPeerUnreachable  = ProblemBase + "peer-unreachable"
	ProblemUnauthorized     = ProblemBase + "unauthorized"
	ProblemForbidden        = ProblemBase + "forbidden"
	ProblemRateLimited      = ProblemBase + "rate-limited"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors names each invalid message of a request, by index.
	Errors []FieldError `json:"errors,omitempty"`
	// Success is always false: the prototype's clients read a "success" member.
	Success bool `json:"success"`

	// RetryAfter, if set, is sent as Retry-After (whole seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
	// Authenticate, if set, is the WWW-Authenticate header of a 401.
	Authenticate string `json:"-"`
}

// FieldError is one problem with one message of a request.
type FieldError struct {
	// Index is the message's position in the request (0 for a single message).
	Index int `json:"index"`
	// Field is the JSON member at fault ("senderId", "value", "properties", "id"), or "" for
	// the whole message.
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

// NewProblem returns a problem of type typ.
func NewProblem(status int, typ, title, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail}
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.Authenticate != "" {
		h.Set("WWW-Authenticate", p.Authenticate)
	}
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((p.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteJSON writes v as an uncacheable JSON answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Unavailable maps a spool error (from Append or Ready) to its 503 with Retry-After: the
// message was not acknowledged, whatever the cause.
func Unavailable(err error, retryAfter time.Duration) *Problem {
	var p *Problem
	switch {
	case errors.Is(err, spool.ErrFull):
		p = NewProblem(http.StatusServiceUnavailable, ProblemSpoolFull, "Spool full",
			"this stamp's spool is at capacity ("+err.Error()+"); the message was not accepted, retry later or send to the other stamp")
	case errors.Is(err, spool.ErrClosed):
		p = NewProblem(http.StatusServiceUnavailable, ProblemShuttingDown, "Shutting down",
			"this instance is shutting down; the message was not accepted, retry")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		p = NewProblem(http.StatusServiceUnavailable, ProblemSpoolUnavailable, "Request ended",
			"the request ended before the message was durable; it may or may not have been accepted, retry with the same Idempotency-Key")
	default:
		p = NewProblem(http.StatusServiceUnavailable, ProblemSpoolUnavailable, "Spool unavailable",
			"the spool could not store the message; it was not accepted, retry later")
	}
	p.RetryAfter = retryAfter
	return p
}

// Drain is an instance's draining state, one per process, shared by every surface that says
// whether the instance takes traffic (/readyz, the compatible health route). Its methods are
// safe for concurrent use; a nil *Drain never drains.
type Drain struct{ on atomic.Bool }

// Start makes Err answer from now on. Call it when SIGTERM arrives.
func (d *Drain) Start() { d.on.Store(true) }

// errDraining is a spool.ErrClosed, so that Unavailable answers it as "shutting down".
var errDraining = fmt.Errorf("%w: this instance is draining", spool.ErrClosed)

// Err is non-nil once Start was called.
func (d *Drain) Err() error {
	if d != nil && d.on.Load() {
		return errDraining
	}
	return nil
}
