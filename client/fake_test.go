package client

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// Modes of a fakeStamp.
const (
	modeOK   = "ok"   // answers as docs/api.md says
	mode500  = "500"  // internal
	mode503  = "503"  // spool-full with Retry-After
	modeHang = "hang" // holds the request until the client gives up
	modeV4   = "v4"   // acks with random ids, ignoring per-message ids (a broken stamp)
)

// fakeStamp imitates a stamp's POST /v1/messages (JSON array) and GET /readyz as docs/api.md
// describes them, deriving correlationIds on its own. Its fields are guarded by mu.
type fakeStamp struct {
	*httptest.Server

	mu         sync.Mutex
	mode       string
	retryAfter string        // Retry-After of mode503
	apiKey     string        // required as a bearer token when set
	requests   int           // POST /v1/messages received
	probes     int           // GET /readyz received
	seen       []string      // correlationIds derived for every message received, acked or not
	ages       []string      // the Message-Age header of every POST /v1/messages ("" when absent)
	ttls       []int64       // the "ttl" member of every message received (0 when absent)
	arrived    chan struct{} // gets a value when a request arrives in modeHang
}

// fakeNamespace is derived here from docs/api.md, not taken from the package under test.
var fakeNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://bridgehead.dev/correlation-id"))

func newFakeStamp() *fakeStamp {
	s := &fakeStamp{mode: modeOK, retryAfter: "1", arrived: make(chan struct{}, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// mustStamp returns a fakeStamp closed when the test ends.
func mustStamp(t *testing.T) *fakeStamp {
	t.Helper()
	s := newFakeStamp()
	t.Cleanup(s.Close)
	return s
}

// SetMode switches how the stamp answers from now on.
func (s *fakeStamp) SetMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

func (s *fakeStamp) counts() (requests, probes int, seen []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.probes, append([]string(nil), s.seen...)
}

// agesAndTTLs returns the Message-Age of every request and the ttl of every message received.
func (s *fakeStamp) agesAndTTLs() ([]string, []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ages...), append([]int64(nil), s.ttls...)
}

func problem(w http.ResponseWriter, status int, typ, detail string, errs []FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://bridgehead.dev/problems/" + typ, "title": typ, "status": status,
		"detail": detail, "errors": errs, "success": false,
	})
}

func (s *fakeStamp) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mode, ra, key := s.mode, s.retryAfter, s.apiKey
	s.mu.Unlock()
	if key != "" && r.Header.Get("Authorization") != "Bearer "+key {
		problem(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key", nil)
		return
	}
	switch path := strings.TrimSuffix(strings.ToLower(r.URL.Path), "/"); {
	case path == "/readyz" && r.Method == http.MethodGet:
		s.mu.Lock()
		s.probes++
		s.mu.Unlock()
		if mode == modeOK || mode == modeV4 {
			_, _ = w.Write([]byte(`{"status":"ready"}`))
			return
		}
		w.Header().Set("Retry-After", ra)
		problem(w, http.StatusServiceUnavailable, "spool-full", "spool full", nil)
	case path == "/v1/messages" && r.Method == http.MethodPost:
		s.messages(w, r, mode, ra)
	default:
		problem(w, http.StatusNotFound, "not-found", "no such route", nil)
	}
}

func (s *fakeStamp) messages(w http.ResponseWriter, r *http.Request, mode, ra string) {
	var in []struct {
		SenderID   string            `json:"senderId"`
		Value      string            `json:"value"`
		Properties map[string]string `json:"properties"`
		ID         string            `json:"id"`
		TTL        int64             `json:"ttl"`
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		problem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "send application/json", nil)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		problem(w, http.StatusBadRequest, "invalid-json", err.Error(), nil)
		return
	}
	ids := make([]string, len(in))
	var errs []FieldError
	for i, m := range in {
		if m.SenderID == "" {
			errs = append(errs, FieldError{Index: i, Field: "senderId", Detail: "senderId is required"})
		}
		if m.Value == "" {
			errs = append(errs, FieldError{Index: i, Field: "value", Detail: "value is required"})
		}
		if m.ID == "" || mode == modeV4 {
			ids[i] = uuid.Must(uuid.NewV7()).String()
		} else {
			ids[i] = uuid.NewSHA1(fakeNamespace, []byte(m.SenderID+"\n"+m.ID)).String()
		}
	}
	s.mu.Lock()
	s.requests++
	s.seen = append(s.seen, ids...)
	s.ages = append(s.ages, r.Header.Get("Message-Age"))
	for _, m := range in {
		s.ttls = append(s.ttls, m.TTL)
	}
	s.mu.Unlock()
	switch mode {
	case mode500:
		problem(w, http.StatusInternalServerError, "internal", "a bug", nil)
		return
	case mode503:
		w.Header().Set("Retry-After", ra)
		problem(w, http.StatusServiceUnavailable, "spool-full", "spool full; nothing was accepted", nil)
		return
	case modeHang:
		s.arrived <- struct{}{}
		<-r.Context().Done()
		return
	}
	if len(errs) > 0 {
		problem(w, http.StatusBadRequest, "invalid-message", "nothing was accepted", errs)
		return
	}
	type ack struct {
		CorrelationID string `json:"correlationId"`
		SenderID      string `json:"senderId"`
	}
	out := struct {
		ServerTimestamp string `json:"serverTimestamp"`
		Count           int    `json:"count"`
		Messages        []ack  `json:"messages"`
		Success         bool   `json:"success"`
	}{ServerTimestamp: "2026-11-24T08:58:12.2310419Z", Count: len(in), Success: true}
	for i, m := range in {
		out.Messages = append(out.Messages, ack{CorrelationID: ids[i], SenderID: m.SenderID})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(out)
}
