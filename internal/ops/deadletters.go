package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// DeadLetters is what the dead-letter routes need of the spool (a *spool.Spool).
type DeadLetters interface {
	List(ctx context.Context, state spool.State) ([]spool.Entry, error)
	Find(ctx context.Context, name string) (spool.Entry, error)
	Read(ctx context.Context, e spool.Entry) ([]message.Message, error)
	Reason(ctx context.Context, e spool.Entry) (string, error)
	Requeue(ctx context.Context, e spool.Entry) error
}

// maxPeerStatusBytes bounds the peer's /v1/status body this stamp relays.
const maxPeerStatusBytes = 1 << 20

// deadLetter is one dead segment as the dead-letter routes show it.
type deadLetter struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
	// DeadAt is when the segment was dead-lettered (absent if its reason file has no time).
	DeadAt *time.Time `json:"deadAt,omitempty"`
	Reason string     `json:"reason"`
}

// reason reads e's reason file: when it was set aside and why.
func (s *Server) reason(ctx context.Context, e spool.Entry) (*time.Time, string, error) {
	body, err := s.cfg.DeadLetters.Reason(ctx, e)
	if err != nil {
		return nil, "", err
	}
	at, reason := spool.SplitReason(body)
	if at.IsZero() {
		return nil, reason, nil
	}
	return &at, reason, nil
}

// deadLetterEntry is one message of a dead segment.
type deadLetterEntry struct {
	CorrelationID string            `json:"correlationId"`
	SenderID      string            `json:"senderId"`
	Value         string            `json:"value"`
	Properties    map[string]string `json:"properties,omitempty"`
	ReceivedAt    time.Time         `json:"receivedAt"`
	Stamp         string            `json:"stamp,omitempty"`
	// ExpiresAt is when the message's ttl ran out (or runs out); absent when it has none.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// handleDeadLetters is GET /v1/dead-letters: every dead segment, oldest first, with its reason.
func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	entries, err := s.cfg.DeadLetters.List(r.Context(), spool.StateDead)
	if err != nil {
		httpapi.WriteProblem(w, s.spoolProblem("listing dead letters", err))
		return
	}
	out := make([]deadLetter, 0, len(entries))
	for _, e := range entries {
		at, reason, err := s.reason(r.Context(), e)
		if err != nil {
			reason = "(reason unreadable: " + err.Error() + ")"
		}
		out = append(out, deadLetter{ID: e.ID, Created: e.Created, Messages: e.Messages, Bytes: e.Bytes, DeadAt: at, Reason: reason})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deadLetters": out})
}

// handleDeadLetter is GET /v1/dead-letters/{id}: one dead segment's reason and messages.
func (s *Server) handleDeadLetter(w http.ResponseWriter, r *http.Request) {
	e, ok := s.findDead(w, r)
	if !ok {
		return
	}
	at, reason, err := s.reason(r.Context(), e)
	if err != nil {
		httpapi.WriteProblem(w, s.spoolProblem("reading the reason of "+e.ID, err))
		return
	}
	msgs, err := s.cfg.DeadLetters.Read(r.Context(), e)
	if err != nil && !errors.Is(err, spool.ErrCorrupt) {
		httpapi.WriteProblem(w, s.spoolProblem("reading "+e.ID, err))
		return
	}
	body := struct {
		ID       string            `json:"id"`
		Created  time.Time         `json:"created"`
		DeadAt   *time.Time        `json:"deadAt,omitempty"`
		Reason   string            `json:"reason"`
		Damaged  string            `json:"damaged,omitempty"`
		Messages []deadLetterEntry `json:"messages"`
	}{ID: e.ID, Created: e.Created, DeadAt: at, Reason: reason, Messages: make([]deadLetterEntry, 0, len(msgs))}
	if err != nil {
		body.Damaged = err.Error() // damaged on disk: the intact records are shown
	}
	for _, m := range msgs {
		e := deadLetterEntry{CorrelationID: m.ID.String(), SenderID: m.SenderID,
			Value: m.Value, Properties: m.Properties, ReceivedAt: m.ReceivedAt, Stamp: m.Stamp}
		if !m.ExpiresAt.IsZero() {
			e.ExpiresAt = &m.ExpiresAt
		}
		body.Messages = append(body.Messages, e)
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
}

// handleRequeue is POST /v1/dead-letters/{id}/requeue: the segment goes back to ready/.
func (s *Server) handleRequeue(w http.ResponseWriter, r *http.Request) {
	e, ok := s.findDead(w, r)
	if !ok {
		return
	}
	if err := s.cfg.DeadLetters.Requeue(r.Context(), e); err != nil {
		if spool.IsNotFound(err) {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, httpapi.ProblemNotFound, "Not found", "dead letter "+e.ID+" is gone (requeued or purged meanwhile)"))
			return
		}
		httpapi.WriteProblem(w, s.spoolProblem("requeueing "+e.ID, err))
		return
	}
	s.log.Info("dead letter requeued", "segment", e.ID, "messages", e.Messages, "by", httpapi.PrincipalName(r))
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"requeued": 1})
}

// handleRequeueAll is POST /v1/dead-letters/requeue-all: every dead segment goes back to ready/.
// A segment that vanished meanwhile (another operator) is skipped; any other failure stops and
// reports how many were requeued before it.
func (s *Server) handleRequeueAll(w http.ResponseWriter, r *http.Request) {
	entries, err := s.cfg.DeadLetters.List(r.Context(), spool.StateDead)
	if err != nil {
		httpapi.WriteProblem(w, s.spoolProblem("listing dead letters", err))
		return
	}
	n := 0
	for _, e := range entries {
		err := s.cfg.DeadLetters.Requeue(r.Context(), e)
		switch {
		case err == nil:
			n++
		case spool.IsNotFound(err):
		default:
			httpapi.WriteProblem(w, s.spoolProblem("requeueing "+e.ID+" after "+strconv.Itoa(n)+" requeued", err))
			return
		}
	}
	s.log.Info("dead letters requeued", "segments", n, "by", httpapi.PrincipalName(r))
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"requeued": n})
}

// findDead resolves the {id} of a dead-letter route to a dead segment, or answers 404.
func (s *Server) findDead(w http.ResponseWriter, r *http.Request) (spool.Entry, bool) {
	id := r.PathValue("id")
	e, err := s.cfg.DeadLetters.Find(r.Context(), id)
	switch {
	case err == nil && e.State == spool.StateDead:
		return e, true
	case err == nil:
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, httpapi.ProblemNotFound, "Not found", "segment "+id+" is "+string(e.State)+", not dead"))
	case spool.IsNotFound(err):
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, httpapi.ProblemNotFound, "Not found", "no dead letter "+id))
	case strings.Contains(err.Error(), "not a segment name"):
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, httpapi.ProblemNotFound, "Not found", err.Error()))
	default:
		httpapi.WriteProblem(w, s.spoolProblem("finding "+id, err))
	}
	return spool.Entry{}, false
}

func (s *Server) spoolProblem(what string, err error) *httpapi.Problem {
	s.log.Warn("spool administration failed", "what", what, "err", err)
	p := httpapi.NewProblem(http.StatusServiceUnavailable, httpapi.ProblemSpoolUnavailable, "Spool unavailable", what+" failed: "+err.Error())
	p.RetryAfter = s.cfg.RetryAfter
	return p
}

// handlePeerStatus is GET /v1/peer/status: the peer stamp's /v1/status, fetched by this
// server so that the console (same origin, strict CSP) can show both stamps.
func (s *Server) handlePeerStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.PeerURL+"/v1/status", nil)
	if err != nil {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadGateway, httpapi.ProblemPeerUnreachable, "Peer unreachable", err.Error()))
		return
	}
	if s.cfg.PeerAPIKey != "" {
		req.Header.Set("X-Api-Key", s.cfg.PeerAPIKey)
	}
	resp, err := s.cfg.PeerClient.Do(req)
	if err != nil {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadGateway, httpapi.ProblemPeerUnreachable, "Peer unreachable", "the peer stamp "+s.cfg.PeerURL+" did not answer: "+errors.Unwrap(err).Error()))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerStatusBytes))
	if err == nil && resp.StatusCode == http.StatusOK && !json.Valid(body) {
		err = errors.New("the answer is not JSON")
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		detail := "the peer stamp " + s.cfg.PeerURL + " answered " + resp.Status
		if err != nil {
			detail += ": " + err.Error()
		}
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadGateway, httpapi.ProblemPeerUnreachable, "Peer unreachable", detail))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
