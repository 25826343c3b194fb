package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ProblemBase prefixes every problem type URI; docs/api.md documents each one under its slug.
const ProblemBase = "https://bridgehead.dev/problems/"

// Problem types (RFC 9457 `type`), stable: clients may branch on them.
const (
	ProblemInvalidJSON      = ProblemBase + "invalid-json"
	ProblemInvalidMessage   = ProblemBase + "invalid-message"
	ProblemUnsupportedMedia = ProblemBase + "unsupported-media-type"
	ProblemTooLarge         = ProblemBase + "payload-too-large"
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

	retryAfter   time.Duration
	authenticate string // WWW-Authenticate of a 401
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

func writeProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.authenticate != "" {
		h.Set("WWW-Authenticate", p.authenticate)
	}
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func problem(status int, typ, title, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail}
}
