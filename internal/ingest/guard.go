package ingest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/tlsconf"
)

// AuthMode is how the API treats credentials (--auth).
type AuthMode int

const (
	// AuthOff ignores credentials: everyone may do everything (the laptop default).
	AuthOff AuthMode = iota
	// AuthOptional checks credentials that are presented (a bad key is 401; a key binds its
	// senderIds) but also accepts messages without any; admin routes need an admin.
	AuthOptional
	// AuthRequired refuses every message and admin request without valid credentials.
	AuthRequired
)

// ParseAuthMode parses "off", "optional" or "required".
func ParseAuthMode(s string) (AuthMode, error) {
	switch s {
	case "off":
		return AuthOff, nil
	case "optional":
		return AuthOptional, nil
	case "required":
		return AuthRequired, nil
	}
	return AuthOff, fmt.Errorf("auth mode %q: want required, optional or off", s)
}

// access is what a route asks of its caller.
type access int

const (
	accessOpen  access = iota // probes and the console's static files: never authenticated
	accessRead                // metrics and status: a principal when MetricsAuth is set
	accessSend                // message routes: a principal when AuthRequired; senderIds bound
	accessAdmin               // what changes the spool: an admin principal unless AuthOff
)

type principalKey struct{}

// principal returns the principal that authenticated r, or nil.
func principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// principalName names who made r for the audit log: the principal, or "anonymous".
func principalName(r *http.Request) string {
	if p := principal(r); p != nil {
		return p.Name
	}
	return "anonymous"
}

// authenticate identifies r's client: by API key (Authorization: Bearer or X-Api-Key), else by
// a verified TLS client certificate bound in the principals file. A presented key that matches
// nobody is a 401 even when auth is optional: a client that means to authenticate must learn
// that its key is wrong, not be served anonymously.
func (s *Server) authenticate(r *http.Request) (*auth.Principal, *Problem) {
	ps := s.cfg.Principals()
	if key, ok := auth.KeyFromRequest(r); ok {
		if p, ok := ps.ByKey(key); ok {
			return p, nil
		}
		s.refused(r, "invalid_key", "")
		return nil, s.unauthorized(`error="invalid_token"`, "the API key presented is not valid (unknown or revoked)")
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		for _, id := range tlsconf.Identities(r.TLS.VerifiedChains[0][0]) {
			if p, ok := ps.ByCertSubject(id); ok {
				return p, nil
			}
		}
	}
	return nil, nil
}

// guard authenticates r as route access a needs and returns r with its principal, or the problem.
func (s *Server) guard(r *http.Request, a access) (*http.Request, *Problem) {
	if s.cfg.AuthMode == AuthOff || a == accessOpen {
		return r, nil
	}
	p, prob := s.authenticate(r)
	if prob != nil {
		return r, prob
	}
	if p == nil {
		if a == accessAdmin || (a == accessSend && s.cfg.AuthMode == AuthRequired) || (a == accessRead && s.cfg.MetricsAuth) {
			s.refused(r, "missing", "")
			return r, s.unauthorized("", "this route needs credentials: an API key (Authorization: Bearer <key> or X-Api-Key) or a client certificate")
		}
		return r, nil
	}
	if a == accessAdmin && !p.IsAdmin() {
		s.refused(r, "forbidden", p.Name)
		return r, problem(http.StatusForbidden, ProblemForbidden, "Forbidden", "principal "+p.Name+" does not have the admin role this route needs")
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

// refused counts a request refused by authentication or authorization, and logs it for the
// audit trail: at most one line a second per reason, so that a client hammering with a bad key
// cannot flood the log (the metric counts every one). The line names the client's address, the
// route and the principal (for a 403), never a key.
func (s *Server) refused(r *http.Request, reason, principal string) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.refusedLog[reason].Do(func() {
		s.log.Warn("request refused", "reason", reason, "remote", clientIP(r), "method", r.Method,
			"path", r.URL.Path, "principal", principal, "note", "at most one line a second per reason; see bridgehead_http_auth_failures_total")
	})
}

func (s *Server) unauthorized(params, detail string) *Problem {
	p := problem(http.StatusUnauthorized, ProblemUnauthorized, "Unauthorized", detail)
	p.authenticate = `Bearer realm="bridgehead"`
	if params != "" {
		p.authenticate += ", " + params
	}
	return p
}

// mayAccept checks msgs against r's principal and rate limit: a principal may send only as its
// senderIds (one foreign senderId refuses the whole request), and a client only so many messages
// a second. It returns the problem that refuses them, or nil.
func (s *Server) mayAccept(r *http.Request, msgs []message.Message) *Problem {
	p := principal(r)
	if p != nil {
		var errs []FieldError
		for i := range msgs {
			if !p.MaySendAs(msgs[i].SenderID) {
				errs = append(errs, FieldError{Index: i, Field: "senderId",
					Detail: fmt.Sprintf("principal %s may not send as senderId %q", p.Name, msgs[i].SenderID)})
			}
		}
		if errs != nil {
			s.refused(r, "forbidden", p.Name)
			detail := errs[0].Detail
			if len(msgs) > 1 {
				detail = fmt.Sprintf("%s (%d of %d messages); nothing was accepted", detail, len(errs), len(msgs))
			}
			return &Problem{Type: ProblemForbidden, Title: "Forbidden", Status: http.StatusForbidden, Detail: detail, Errors: errs}
		}
	}
	if s.limiter == nil {
		return nil
	}
	who, kind := clientIP(r), "ip:"
	if p != nil {
		who, kind = p.Name, "principal:"
	}
	wait, ok := s.limiter.take(kind+who, len(msgs), time.Now())
	if wait == 0 {
		return nil
	}
	s.metrics.rateLimited.Add(float64(len(msgs)))
	detail := fmt.Sprintf("%s is over its rate of %g messages/s (burst %d); nothing was accepted, retry after %s",
		who, s.limiter.limit, s.limiter.burst, wait.Round(time.Millisecond))
	if !ok {
		detail = fmt.Sprintf("a request of %d messages exceeds the burst of %d; split it", len(msgs), s.limiter.burst)
	}
	prob := problem(http.StatusTooManyRequests, ProblemRateLimited, "Too many requests", detail)
	prob.retryAfter = wait
	return prob
}

// clientIP is the address r came from. X-Forwarded-For is not trusted: behind a proxy every
// client shares the proxy's bucket, so deployments that need per-client limits use keys.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
