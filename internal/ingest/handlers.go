package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/spool"
)

// compatResponse is the prototype's 200 body, member order and casing included.
type compatResponse struct {
	ServerTimestamp string `json:"serverTimestamp"`
	SenderID        string `json:"senderId"`
	CorrelationID   string `json:"correlationId"`
	Value           string `json:"value"`
	Success         bool   `json:"success"`
}

// handleCompatMessage is POST /ServiceAPI/message: one {"senderId","value"} message.
func (s *Server) handleCompatMessage(w http.ResponseWriter, r *http.Request) {
	if mt := mediaType(r.Header.Get("Content-Type")); !isJSON(mt) {
		writeProblem(w, problem(http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, "Unsupported media type",
			"send Content-Type: application/json"))
		return
	}
	body, p := s.readBody(w, r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var in inMessage
	if err := decodeOne(body, &in); err != nil {
		writeProblem(w, problem(http.StatusBadRequest, ProblemInvalidJSON, "Invalid JSON", err.Error()))
		return
	}
	key, p := idempotencyKey(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	now := s.now()
	m, errs := s.lim.build(0, &in, key, s.cfg.Stamp, now)
	if errs != nil {
		writeProblem(w, &Problem{Type: ProblemInvalidMessage, Title: "Invalid message", Status: http.StatusBadRequest,
			Detail: errs[0].Detail, Errors: errs})
		return
	}
	if !s.accept(w, r, m) {
		return
	}
	writeJSON(w, http.StatusOK, compatResponse{
		ServerTimestamp: timestamp(now), SenderID: m.SenderID, CorrelationID: m.ID.String(), Value: m.Value, Success: true,
	})
}

// idempotencyKey returns the request's Idempotency-Key header ("" if none), or the problem with it.
func idempotencyKey(r *http.Request) (string, *Problem) {
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !validKey(key) {
		return "", &Problem{Type: ProblemInvalidMessage, Title: "Invalid message", Status: http.StatusBadRequest,
			Detail: "Idempotency-Key must be 1-256 printable ASCII characters"}
	}
	return key, nil
}

// accept appends msgs and writes the error answer if that failed.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, msgs ...message.Message) bool {
	if p := s.mayAccept(r, msgs); p != nil {
		writeProblem(w, p)
		return false
	}
	if err := s.cfg.Spool.Append(r.Context(), msgs...); err != nil {
		// A full spool refuses every request: one line a second says so, the spool's commit
		// histogram (result="error") counts them all.
		s.appendFailLog.Do(func() { s.log.Warn("append failed", "err", err) })
		writeProblem(w, s.appendProblem(err))
		return false
	}
	s.metrics.accepted.Add(float64(len(msgs)))
	s.accepted.Add(uint64(len(msgs)))
	return true
}

// batchResponse is the 200 body of /v1/messages.
type batchResponse struct {
	ServerTimestamp string          `json:"serverTimestamp"`
	Count           int             `json:"count"`
	Messages        []batchAccepted `json:"messages"`
	Success         bool            `json:"success"`
}

type batchAccepted struct {
	CorrelationID string `json:"correlationId"`
	SenderID      string `json:"senderId"`
}

// handleMessages is POST /v1/messages: one object, a JSON array or NDJSON, all or nothing.
func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	mt := mediaType(r.Header.Get("Content-Type"))
	ndjson := isNDJSON(mt)
	if !ndjson && !isJSON(mt) {
		writeProblem(w, problem(http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, "Unsupported media type",
			"send Content-Type: application/json (an object or an array) or application/x-ndjson (one object per line)"))
		return
	}
	key, p := idempotencyKey(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	body, p := s.readBody(w, r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	ins, perr := decodeBatchFast(body, ndjson, s.lim.maxMessages)
	if perr != nil {
		// Something is wrong: decode message by message to name each problem by its index.
		raws, err := splitBatch(body, ndjson, s.lim.maxMessages)
		if err != nil {
			writeProblem(w, problem(http.StatusBadRequest, ProblemInvalidJSON, "Invalid JSON", err.Error()))
			return
		}
		ins = make([]inMessage, len(raws))
		var errs []FieldError
		for i, raw := range raws {
			if err := decodeOne(raw, &ins[i]); err != nil {
				errs = append(errs, FieldError{Index: i, Detail: err.Error()})
				continue
			}
			if _, ferrs := s.lim.build(i, &ins[i], "", s.cfg.Stamp, time.Time{}); ferrs != nil {
				errs = append(errs, ferrs...)
			}
		}
		if len(errs) == 0 { // the fast path's objection was not about one message
			errs = []FieldError{{Index: 0, Detail: perr.Error()}}
		}
		writeBatchProblem(w, errs, len(raws))
		return
	}
	now := s.now()
	msgs := make([]message.Message, 0, len(ins))
	var errs []FieldError
	for i := range ins {
		// With one Idempotency-Key for the request, each message's key is "<key>/<index>": a
		// retried request yields the same ids, message by message.
		mkey := ""
		if key != "" {
			mkey = key + "/" + strconv.Itoa(i)
		}
		m, ferrs := s.lim.build(i, &ins[i], mkey, s.cfg.Stamp, now)
		if ferrs != nil {
			errs = append(errs, ferrs...)
			continue
		}
		msgs = append(msgs, m)
	}
	if len(errs) > 0 {
		writeBatchProblem(w, errs, len(ins))
		return
	}
	if !s.accept(w, r, msgs...) {
		return
	}
	resp := batchResponse{ServerTimestamp: timestamp(now), Count: len(msgs), Messages: make([]batchAccepted, len(msgs)), Success: true}
	for i, m := range msgs {
		resp.Messages[i] = batchAccepted{CorrelationID: m.ID.String(), SenderID: m.SenderID}
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeBatchProblem(w http.ResponseWriter, errs []FieldError, n int) {
	detail := strconv.Itoa(len(errs)) + " problems in " + strconv.Itoa(n) + " messages; nothing was accepted"
	writeProblem(w, &Problem{Type: ProblemInvalidMessage, Title: "Invalid messages", Status: http.StatusBadRequest, Detail: detail, Errors: errs})
}

// ready says why the instance cannot take messages now, or nil.
func (s *Server) ready() *Problem {
	if s.draining.Load() {
		p := problem(http.StatusServiceUnavailable, ProblemShuttingDown, "Shutting down", "this instance is draining")
		p.retryAfter = s.cfg.RetryAfter
		return p
	}
	if s.cfg.ForwarderOnly {
		return nil
	}
	if err := s.cfg.Spool.Ready(); err != nil {
		return s.appendProblem(err)
	}
	return nil
}

// handleCompatHealth is GET /ServiceAPI/health: 200 with an empty body, as the prototype; 503
// (problem+json) when this instance cannot take messages, so the Application Gateway routes around it.
func (s *Server) handleCompatHealth(w http.ResponseWriter, r *http.Request) {
	if p := s.ready(); p != nil {
		writeProblem(w, p)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleHealthz is GET /healthz: the process is alive and serving.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz is GET /readyz: the spool is writable and below capacity, and the instance is
// not draining.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if p := s.ready(); p != nil {
		writeProblem(w, p)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Status is the body of GET /v1/status.
type Status struct {
	Stamp         string  `json:"stamp"`
	Role          string  `json:"role"`
	Version       string  `json:"version"`
	Ready         bool    `json:"ready"`
	NotReady      string  `json:"notReady,omitempty"`
	UptimeSeconds float64 `json:"uptimeSeconds"`
	// PeerURL is the other stamp, whose status /v1/peer/status relays.
	PeerURL string       `json:"peerUrl,omitempty"`
	Spool   spool.Stats  `json:"spool"`
	Ingest  IngestStatus `json:"ingest"`
	// Forward is the forwarder's status (forward.Status) when this process runs one.
	Forward any `json:"forward,omitempty"`
}

// IngestStatus counts what this process's API accepted since it started.
type IngestStatus struct {
	AcceptedTotal uint64 `json:"acceptedTotal"`
}

// handleStatus is GET /v1/status. The spool's figures are those of its last periodic scan, like
// /metrics': every open console asks every second, and listing the spool's directories for each
// ask would put a READDIR per state on the shared file system per browser. A failed scan shows as
// not ready.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	out := Status{Stamp: s.cfg.Stamp, Role: s.cfg.Role, Version: s.cfg.Version, Ready: true,
		UptimeSeconds: s.now().Sub(s.started).Seconds(), PeerURL: s.cfg.PeerURL, Spool: s.cfg.Spool.LastStats(),
		Ingest: IngestStatus{AcceptedTotal: s.accepted.Load()}}
	if s.cfg.ForwardStatus != nil {
		out.Forward = s.cfg.ForwardStatus()
	}
	if p := s.ready(); p != nil {
		out.Ready, out.NotReady = false, p.Detail
	}
	writeJSON(w, http.StatusOK, out)
}
