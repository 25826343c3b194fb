package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/httpapi"
	"github.com/bridgehead-dev/bridgehead/internal/httpapi/apitest"
	"github.com/prometheus/client_golang/prometheus"
)

func newRouter(t *testing.T, reg prometheus.Registerer, routes ...httpapi.Route) string {
	t.Helper()
	rt, err := httpapi.NewRouter(httpapi.RouterConfig{Registerer: reg, NotFoundHint: "try elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Handle(routes...); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv.URL
}

// echo answers with the route's name and its path values.
func echo(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(name + " id=" + r.PathValue("id") + " rest=" + r.PathValue("rest")))
	}
}

func TestRouterMatchesAsThePrototypeDid(t *testing.T) {
	reg := prometheus.NewRegistry()
	url := newRouter(t, reg,
		httpapi.Route{Pattern: "/serviceapi/health", Name: "health", Methods: map[string]http.HandlerFunc{"GET": echo("health")}},
		httpapi.Route{Pattern: "/v1/items/fixed", Name: "fixed", Methods: map[string]http.HandlerFunc{"POST": echo("fixed")}},
		httpapi.Route{Pattern: "/v1/items/{id}", Name: "item", Methods: map[string]http.HandlerFunc{"GET": echo("item")}},
		httpapi.Route{Pattern: "/v1/items/{id}/again", Name: "again", Methods: map[string]http.HandlerFunc{"POST": echo("again")}},
		httpapi.Route{Pattern: "/assets/{rest...}", Name: "assets", Methods: map[string]http.HandlerFunc{"GET": echo("assets")}},
		httpapi.Route{Pattern: "/panic", Name: "panic", Methods: map[string]http.HandlerFunc{"GET": func(http.ResponseWriter, *http.Request) { panic("boom") }}},
	)
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/serviceAPI/health", "health id= rest="},  // case-insensitive
		{"GET", "/ServiceAPI/Health/", "health id= rest="}, // one trailing slash
		{"HEAD", "/serviceapi/health", ""},                 // HEAD served by GET
		{"GET", "/v1/items/abc", "item id=abc rest="},
		{"POST", "/v1/items/fixed", "fixed id= rest="}, // a fixed path wins over a pattern
		{"POST", "/v1/items/abc/again", "again id=abc rest="},
		{"GET", "/assets/js/app.js", "assets id= rest=js/app.js"},
	} {
		r := apitest.Do(t, url, tt.method, tt.path, "", "")
		if r.Status != 200 || string(r.Body) != tt.want || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: %d %q %v, want 200 %q with nosniff", tt.method, tt.path, r.Status, r.Body, r.Header, tt.want)
		}
	}
	for _, tt := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{"GET", "/v1/items", 404, httpapi.ProblemNotFound},
		{"GET", "/v1/items//again", 404, httpapi.ProblemNotFound}, // an empty segment is not an id
		{"GET", "/v1/items/a/b", 404, httpapi.ProblemNotFound},
		{"GET", "/v1/items/fixed", 405, httpapi.ProblemMethodNotAllowed},
		{"GET", "/panic", 500, httpapi.ProblemInternal},
	} {
		r := apitest.Do(t, url, tt.method, tt.path, "", "")
		if p := apitest.DecodeProblem(t, r); r.Status != tt.status || p.Type != tt.typ {
			t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, r.Status, p.Type, tt.status, tt.typ)
		}
		if tt.status == 404 && !strings.Contains(string(r.Body), "try elsewhere") {
			t.Errorf("%s: 404 without the hint: %s", tt.path, r.Body)
		}
		if tt.status == 405 && r.Header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q, want POST", tt.path, r.Header.Get("Allow"))
		}
		if tt.status == 500 && strings.Contains(string(r.Body), "boom") {
			t.Errorf("the panic's value reached the client: %s", r.Body)
		}
	}
	if got := requests(t, reg, "item", "200"); got != 1 {
		t.Errorf("requests{route=item,code=200} = %v, want 1", got)
	}
	if got := requests(t, reg, "other", "404"); got != 3 {
		t.Errorf("requests{route=other,code=404} = %v, want 3", got)
	}
}

// requests reads bridgehead_http_requests_total{route, code} from reg.
func requests(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "bridgehead_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no bridgehead_http_requests_total{route=%q,code=%q}", route, code)
	return 0
}

func TestRouterRefusesTwoOwnersOfOnePath(t *testing.T) {
	rt, err := httpapi.NewRouter(httpapi.RouterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := httpapi.Route{Pattern: "/v1/status", Name: "status", Methods: map[string]http.HandlerFunc{"GET": echo("a")}}
	if err := rt.Handle(r); err != nil {
		t.Fatal(err)
	}
	if err := rt.Handle(r); err == nil {
		t.Error("the same pattern registered twice: no error")
	}
	if err := rt.Handle(httpapi.Route{Pattern: "/V1/Other", Name: "x"}); err == nil {
		t.Error("an upper-case pattern (never matched): no error")
	}
}

// TestRouterRefusesOversizedHeadersWithAProblem: headers past MaxHeaderBytes get 431 with a
// problem body (net/http's own 431, past its larger bound, is plain text).
func TestRouterRefusesOversizedHeadersWithAProblem(t *testing.T) {
	rt, err := httpapi.NewRouter(httpapi.RouterConfig{MaxHeaderBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Handle(httpapi.Route{Pattern: "/x", Name: "x", Methods: map[string]http.HandlerFunc{"GET": echo("x")}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	if r := apitest.Do(t, srv.URL, "GET", "/x", "", "", "X-Padding", strings.Repeat("p", 900)); r.Status != 200 {
		t.Fatalf("900 bytes of headers: %d", r.Status)
	}
	r := apitest.Do(t, srv.URL, "GET", "/x", "", "", "X-Padding", strings.Repeat("p", 2000))
	if p := apitest.DecodeProblem(t, r); r.Status != 431 || p.Type != httpapi.ProblemHeadersTooLarge {
		t.Fatalf("2000 bytes of headers: %d %s", r.Status, r.Body)
	}
}
