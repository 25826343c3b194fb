package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Route is one path's handlers by method.
type Route struct {
	// Pattern is the path, lower case. A segment "{name}" matches any one non-empty segment and
	// a last segment "{name...}" the rest of the path (possibly empty); the handler reads them
	// with r.PathValue(name).
	Pattern string
	// Name labels the route's requests in metrics: a fixed name, never the raw path.
	Name string
	// Access is what the route asks of its caller; the router checks it before the handler.
	Access Access
	// Methods are the handlers by method; HEAD is served by GET's unless given.
	Methods map[string]http.HandlerFunc
	// Before, if set, runs first for every request to the route, before the guard: it may add
	// headers to every answer (CORS) or answer the request itself (a preflight) and return true.
	Before func(w http.ResponseWriter, r *http.Request) bool
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Guard checks each route's Access; nil lets everyone in.
	Guard *Guard
	// Logger receives handler panics; nil means none.
	Logger *slog.Logger
	// Registerer receives bridgehead_http_requests_total and _request_duration_seconds; nil
	// means not exported.
	Registerer prometheus.Registerer
	// NotFoundHint is added to the detail of every 404 (what this instance serves instead).
	NotFoundHint string
	// MaxHeaderBytes bounds a request's header lines (names, values and their separators);
	// past it the answer is 431 with a problem body. 0 means no bound here. Set the
	// http.Server's own MaxHeaderBytes well above it: net/http answers past that bound itself,
	// in plain text, before any handler runs.
	MaxHeaderBytes int
}

// Router serves routes from several owners. Paths match case-insensitively and tolerate one
// trailing slash, as the prototype's ASP.NET routing did (its ingress probes /serviceAPI/health).
// Every answer carries X-Content-Type-Options: nosniff; a handler's panic is logged and answered
// 500 with a problem body, never a stack trace.
type Router struct {
	cfg      RouterConfig
	log      *slog.Logger
	exact    map[string]*Route
	patterns []pattern
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewRouter returns a Router with no routes.
func NewRouter(cfg RouterConfig) (*Router, error) {
	rt := &Router{cfg: cfg, log: cfg.Logger, exact: map[string]*Route{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridgehead_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridgehead_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
	}
	if rt.log == nil {
		rt.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{rt.requests, rt.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return rt, nil
}

// Handle adds routes. A pattern already routed is an error: two owners must not both serve a path.
func (rt *Router) Handle(routes ...Route) error {
	for i := range routes {
		r := &routes[i]
		if r.Pattern != strings.ToLower(r.Pattern) {
			return fmt.Errorf("httpapi: route %s: pattern must be lower case", r.Pattern)
		}
		if rt.exact[r.Pattern] != nil || slices.ContainsFunc(rt.patterns, func(o pattern) bool { return o.route.Pattern == r.Pattern }) {
			return fmt.Errorf("httpapi: route %s registered twice", r.Pattern)
		}
		if strings.Contains(r.Pattern, "{") {
			rt.patterns = append(rt.patterns, pattern{route: r, segs: strings.Split(r.Pattern, "/")})
		} else {
			rt.exact[r.Pattern] = r
		}
	}
	return nil
}

// ServeHTTP routes r.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("X-Content-Type-Options", "nosniff") // never let a browser sniff JSON as HTML
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	name := "other"
	defer func() {
		if v := recover(); v != nil {
			rt.log.Error("handler panic", "path", r.URL.Path, "panic", v)
			if !sw.wrote {
				WriteProblem(sw, NewProblem(http.StatusInternalServerError, ProblemInternal, "Internal error", "the request failed; it was not accepted"))
			}
		}
		rt.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
		rt.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}()
	if limit := rt.cfg.MaxHeaderBytes; limit > 0 {
		if n := headerBytes(r); n > limit {
			sw.Header().Set("Connection", "close")
			WriteProblem(sw, NewProblem(http.StatusRequestHeaderFieldsTooLarge, ProblemHeadersTooLarge, "Request headers too large",
				"the request's headers are "+strconv.Itoa(n)+" bytes, over the limit of "+strconv.Itoa(limit)))
			return
		}
	}
	route := rt.match(r)
	if route == nil {
		detail := "no route " + r.URL.Path
		if rt.cfg.NotFoundHint != "" {
			detail += " (" + rt.cfg.NotFoundHint + ")"
		}
		WriteProblem(sw, NewProblem(http.StatusNotFound, ProblemNotFound, "Not found", detail))
		return
	}
	name = route.Name
	if route.Before != nil && route.Before(sw, r) {
		return
	}
	h := route.handler(r.Method)
	if h == nil {
		allow := make([]string, 0, len(route.Methods))
		for m := range route.Methods {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		sw.Header().Set("Allow", strings.Join(allow, ", "))
		WriteProblem(sw, NewProblem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed", r.Method+" is not allowed on "+r.URL.Path))
		return
	}
	if rt.cfg.Guard != nil {
		var p *Problem
		if r, p = rt.cfg.Guard.Check(r, route.Access); p != nil {
			WriteProblem(sw, p)
			return
		}
	}
	h(sw, r)
}

// match finds r's route by its lower-cased path without one trailing slash, setting the path
// values of a pattern's wildcards.
func (rt *Router) match(r *http.Request) *Route {
	p := strings.ToLower(r.URL.Path)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if route := rt.exact[p]; route != nil {
		return route
	}
	segs := strings.Split(p, "/")
	for _, pt := range rt.patterns {
		if pt.match(segs, nil) {
			pt.match(segs, r) // again, setting the values: a miss allocates nothing
			return pt.route
		}
	}
	return nil
}

// headerBytes is the size of r's header lines as sent: "Name: value\r\n" each.
func headerBytes(r *http.Request) int {
	n := len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// pattern is a route whose path has wildcards, split into segments once.
type pattern struct {
	route *Route
	segs  []string
}

// match reports whether path segments segs match the pattern; with r, it sets r's path values.
func (p pattern) match(segs []string, r *http.Request) bool {
	for i, ps := range p.segs {
		if name, ok := strings.CutPrefix(ps, "{"); ok {
			if name, ok := strings.CutSuffix(name, "...}"); ok && i == len(p.segs)-1 {
				if i > len(segs) {
					return false
				}
				if r != nil {
					r.SetPathValue(name, strings.Join(segs[min(i, len(segs)):], "/"))
				}
				return true
			}
			if i >= len(segs) || segs[i] == "" {
				return false
			}
			if r != nil {
				r.SetPathValue(strings.TrimSuffix(name, "}"), segs[i])
			}
			continue
		}
		if i >= len(segs) || segs[i] != ps {
			return false
		}
	}
	return len(p.segs) == len(segs)
}

// handler returns the route's handler for method (GET's for HEAD), or nil.
func (r *Route) handler(method string) http.HandlerFunc {
	if h, ok := r.Methods[method]; ok {
		return h
	}
	if method == http.MethodHead {
		return r.Methods[http.MethodGet]
	}
	return nil
}

// statusWriter remembers the status for metrics, and whether anything was written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
