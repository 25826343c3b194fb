package ingest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cors is the message routes' Before hook: it answers a CORS preflight, and adds the CORS
// headers for an allowed Origin to every other answer (a 401 too, so that a browser can read why).
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	if s.preflight(w, r) {
		return true
	}
	s.corsHeaders(w, r)
	return false
}

// corsHeaders adds CORS headers for an allowed Origin to a message route's answer; it reports
// whether the origin is allowed.
func (s *Server) corsHeaders(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.cfg.CORSOrigins) == 0 {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
			return true
		}
	}
	return false
}

// preflight answers a CORS preflight (OPTIONS with Access-Control-Request-Method) on a message
// route: 204 with what the browser may send, when the origin is allowed.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" || !s.corsHeaders(w, r) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Api-Key, Idempotency-Key")
	h.Set("Access-Control-Max-Age", strconv.Itoa(int((10 * time.Minute).Seconds())))
	w.WriteHeader(http.StatusNoContent)
	return true
}
