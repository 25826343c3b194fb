package ingest

import (
	"fmt"
	"net/http"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// accept appends msgs and writes the error answer if that failed.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, msgs ...message.Message) bool {
	// The principal's checks first: a client that may not send costs no event encoding.
	if p := s.mayAccept(r, msgs); p != nil {
		httpapi.WriteProblem(w, p)
		return false
	}
	if p := s.fitsTheSink(msgs); p != nil {
		httpapi.WriteProblem(w, p)
		return false
	}
	if err := s.cfg.Spool.Append(r.Context(), msgs...); err != nil {
		// A full spool refuses every request: one line a second says so, the spool's commit
		// histogram (result="error") counts them all.
		s.appendFailLog.Do(func() { s.log.Warn("append failed", "err", err) })
		httpapi.WriteProblem(w, s.unavailable(err))
		return false
	}
	s.metrics.accepted.Add(float64(len(msgs)))
	s.accepted.Add(uint64(len(msgs)))
	return true
}

// mayAccept checks msgs against r's principal and rate limit: a principal may send only as its
// senderIds (one foreign senderId refuses the whole request), and a client only so many messages
// a second. It returns the problem that refuses them, or nil.
func (s *Server) mayAccept(r *http.Request, msgs []message.Message) *httpapi.Problem {
	p := httpapi.Principal(r)
	if p != nil {
		var errs []httpapi.FieldError
		for i := range msgs {
			if !p.MaySendAs(msgs[i].SenderID) {
				errs = append(errs, httpapi.FieldError{Index: i, Field: "senderId",
					Detail: fmt.Sprintf("principal %s may not send as senderId %q", p.Name, msgs[i].SenderID)})
			}
		}
		if errs != nil {
			s.cfg.Guard.Refused(r, "forbidden", p.Name)
			detail := errs[0].Detail
			if len(msgs) > 1 {
				detail = fmt.Sprintf("%s (%d of %d messages); nothing was accepted", detail, len(errs), len(msgs))
			}
			return &httpapi.Problem{Type: httpapi.ProblemForbidden, Title: "Forbidden", Status: http.StatusForbidden, Detail: detail, Errors: errs}
		}
	}
	if s.limiter == nil {
		return nil
	}
	who, kind := httpapi.ClientIP(r), "ip:"
	if p != nil {
		who, kind = p.Name, "principal:"
	}
	wait, ok := s.limiter.take(kind+who, len(msgs), s.now())
	if wait == 0 {
		return nil
	}
	s.metrics.rateLimited.Add(float64(len(msgs)))
	detail := fmt.Sprintf("%s is over its rate of %g messages/s (burst %d); nothing was accepted, retry after %s",
		who, s.limiter.limit, s.limiter.burst, wait.Round(time.Millisecond))
	if !ok {
		detail = fmt.Sprintf("a request of %d messages exceeds the burst of %d; split it", len(msgs), s.limiter.burst)
	}
	prob := httpapi.NewProblem(http.StatusTooManyRequests, httpapi.ProblemRateLimited, "Too many requests", detail)
	prob.RetryAfter = wait
	return prob
}

// fitsTheSink refuses, with 413, messages whose event the sink would refuse for its size: a 2xx
// means the message will be delivered unless the sink itself changes.
func (s *Server) fitsTheSink(msgs []message.Message) *httpapi.Problem {
	limit, source := s.maxEventBytes()
	if limit == 0 {
		return nil
	}
	var errs []httpapi.FieldError
	for i := range msgs {
		if sink.EventBytesAtMost(&msgs[i], s.cfg.EventBody)+sink.FramingAllowance <= limit {
			continue // no encoding needed: even fully escaped it fits
		}
		n, err := sink.EventBytes(&msgs[i], s.cfg.EventBody)
		if err != nil || n+sink.FramingAllowance > limit {
			errs = append(errs, httpapi.FieldError{Index: i, Field: "value", Detail: fmt.Sprintf(
				"the event this message makes is %d bytes with up to %d of framing, over the sink's limit of %d (%s)",
				n, sink.FramingAllowance, limit, source)})
		}
	}
	if errs == nil {
		return nil
	}
	detail := errs[0].Detail
	if len(msgs) > 1 {
		detail = fmt.Sprintf("%d of %d messages are too large for the sink; nothing was accepted", len(errs), len(msgs))
	}
	return &httpapi.Problem{Type: httpapi.ProblemMessageTooLarge, Title: "Message too large for the sink",
		Status: http.StatusRequestEntityTooLarge, Detail: detail, Errors: errs}
}
