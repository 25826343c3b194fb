package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/message"
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
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusUnsupportedMediaType, httpapi.ProblemUnsupportedMedia, "Unsupported media type",
			"send Content-Type: application/json"))
		return
	}
	key, p := idempotencyKey(r)
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	body, release, p := s.readBody(w, r)
	defer release()
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	d, p := s.requestDelivery(r)
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	var in message.Input
	if err := message.Decode(body, &in); err != nil {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidJSON, "Invalid JSON", err.Error()))
		return
	}
	now := s.now()
	m, errs := s.lim.build(0, &in, key, s.cfg.Stamp, d, now)
	if errs != nil {
		httpapi.WriteProblem(w, &httpapi.Problem{Type: httpapi.ProblemInvalidMessage, Title: "Invalid message", Status: http.StatusBadRequest,
			Detail: errs[0].Detail, Errors: errs})
		return
	}
	if !s.accept(w, r, m) {
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, compatResponse{
		ServerTimestamp: timestamp(now), SenderID: m.SenderID, CorrelationID: m.ID.String(), Value: m.Value, Success: true,
	})
}

// idempotencyKey returns the request's Idempotency-Key header ("" if none), or the problem with it.
func idempotencyKey(r *http.Request) (string, *httpapi.Problem) {
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !message.ValidKey(key) {
		return "", &httpapi.Problem{Type: httpapi.ProblemInvalidMessage, Title: "Invalid message", Status: http.StatusBadRequest,
			Detail: "Idempotency-Key must be 1-256 printable ASCII characters"}
	}
	return key, nil
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
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusUnsupportedMediaType, httpapi.ProblemUnsupportedMedia, "Unsupported media type",
			"send Content-Type: application/json (an object or an array) or application/x-ndjson (one object per line)"))
		return
	}
	key, p := idempotencyKey(r)
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	d, p := s.requestDelivery(r)
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	body, release, p := s.readBody(w, r)
	defer release()
	if p != nil {
		httpapi.WriteProblem(w, p)
		return
	}
	ins, perr := decodeBatchFast(body, ndjson, s.lim.maxMessages)
	if perr != nil && singleObject(body, ndjson) {
		// One object, not a batch: the body itself is not the JSON expected.
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidJSON, "Invalid JSON", perr.Error()))
		return
	}
	if perr != nil {
		// Something is wrong in a batch: decode message by message to name each problem by
		// its index.
		raws, err := splitBatch(body, ndjson, s.lim.maxMessages)
		if err != nil {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, httpapi.ProblemInvalidJSON, "Invalid JSON", err.Error()))
			return
		}
		ins = make([]message.Input, len(raws))
		var errs []httpapi.FieldError
		for i, raw := range raws {
			if err := message.Decode(raw, &ins[i]); err != nil {
				errs = append(errs, httpapi.FieldError{Index: i, Detail: err.Error()})
				continue
			}
			if _, ferrs := s.lim.build(i, &ins[i], "", s.cfg.Stamp, delivery{}, time.Time{}); ferrs != nil {
				errs = append(errs, ferrs...)
			}
		}
		if len(errs) == 0 { // the fast path's objection was not about one message
			errs = []httpapi.FieldError{{Index: 0, Detail: perr.Error()}}
		}
		writeBatchProblem(w, errs, len(raws))
		return
	}
	now := s.now()
	msgs := make([]message.Message, 0, len(ins))
	var errs []httpapi.FieldError
	for i := range ins {
		// With one Idempotency-Key for the request, each message's key is "<key>/<index>": a
		// retried request yields the same ids, message by message.
		mkey := ""
		if key != "" {
			mkey = key + "/" + strconv.Itoa(i)
		}
		m, ferrs := s.lim.build(i, &ins[i], mkey, s.cfg.Stamp, d, now)
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
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

func writeBatchProblem(w http.ResponseWriter, errs []httpapi.FieldError, n int) {
	detail := strconv.Itoa(len(errs)) + " problems in " + strconv.Itoa(n) + " messages; nothing was accepted"
	httpapi.WriteProblem(w, &httpapi.Problem{Type: httpapi.ProblemInvalidMessage, Title: "Invalid messages", Status: http.StatusBadRequest, Detail: detail, Errors: errs})
}

// handleCompatHealth is GET /ServiceAPI/health: 200 with an empty body, as the prototype; 503
// (problem+json) when this instance cannot take messages, so the Application Gateway routes around it.
func (s *Server) handleCompatHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.Ready(); err != nil {
		httpapi.WriteProblem(w, s.unavailable(err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// unavailable is the 503 for a Ready or Append error.
func (s *Server) unavailable(err error) *httpapi.Problem {
	return httpapi.Unavailable(err, s.cfg.RetryAfter)
}
