package monitoring

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Query is one target of a panel. Expr may use the dashboard's variables $stamp and
// $__rate_interval (see Expand).
type Query struct {
	Expr   string
	Legend string
}

// Panel is one time-series panel, repeated for each selected stamp side by side.
type Panel struct {
	Title       string
	Description string
	Unit        string
	Min, Max    *float64
	Queries     []Query
	// States names the values of a gauge that is a state (0 closed, 1 half-open...).
	States map[string]string
}

// Row is a titled row of panels.
type Row struct {
	Title  string
	Panels []Panel
}

// DashboardUID is the dashboard's stable uid (links to it survive re-imports).
const DashboardUID = "bridgehead-stamps"

func ptr[T any](v T) *T { return &v }

// sel is the series selector every panel filters on.
const sel = `stamp=~"$stamp"`

// Rows are the dashboard's rows and panels, top to bottom.
var Rows = []Row{{
	Title: "Ingest",
	Panels: []Panel{{
		Title:       "Requests by route and status",
		Description: "HTTP requests per second by route and status code (probes and /metrics included).",
		Unit:        "reqps",
		Queries: []Query{{
			Expr:   `sum by (route, code) (rate(bridgehead_http_requests_total{` + sel + `}[$__rate_interval]))`,
			Legend: "{{route}} {{code}}",
		}},
	}, {
		Title:       "Messages accepted and rate-limited",
		Description: "Messages per second made durable in the spool, and refused with 429 for being over --rate-limit.",
		Unit:        "short",
		Queries: []Query{
			{Expr: `sum(rate(bridgehead_ingest_messages_accepted_total{` + sel + `}[$__rate_interval]))`, Legend: "accepted"},
			{Expr: `sum(rate(bridgehead_ingest_rate_limited_messages_total{` + sel + `}[$__rate_interval]))`, Legend: "rate-limited"},
		},
	}, {
		Title: "Refusals: 401, 403, 429, 503",
		Description: "Requests refused per second by status (401 no or a wrong key, 403 not allowed, 429 over the rate limit, " +
			"503 spool full or not ready), and authentication failures by reason.",
		Unit: "reqps",
		Queries: []Query{
			{Expr: `sum by (code) (rate(bridgehead_http_requests_total{` + sel + `,code=~"401|403|429|503"}[$__rate_interval]))`, Legend: "{{code}}"},
			{Expr: `sum by (reason) (rate(bridgehead_http_auth_failures_total{` + sel + `}[$__rate_interval]))`, Legend: "auth {{reason}}"},
		},
	}, {
		Title:       "Commit latency",
		Description: "Time from handing messages to the spool until they are durable (successful appends), p50 and p99.",
		Unit:        "s",
		Queries: []Query{
			{Expr: `histogram_quantile(0.5, sum by (le) (rate(bridgehead_spool_commit_duration_seconds_bucket{` + sel + `,result="ok"}[$__rate_interval])))`, Legend: "p50"},
			{Expr: `histogram_quantile(0.99, sum by (le) (rate(bridgehead_spool_commit_duration_seconds_bucket{` + sel + `,result="ok"}[$__rate_interval])))`, Legend: "p99"},
		},
	}, {
		Title:       "Readiness",
		Description: "1 while a replica's /readyz answers 200; 0 while draining, spool full or unwritable, or clock skew.",
		Min:         ptr(0.0), Max: ptr(1.0),
		Queries: []Query{{Expr: `bridgehead_ready{` + sel + `}`, Legend: "{{instance}}"}},
		States:  map[string]string{"0": "not ready", "1": "ready"},
	}},
}, {
	Title: "Spool",
	Panels: []Panel{{
		Title:       "Spool depth: segments by state",
		Description: "Segments in each state of the shared spool (the same spool seen by every replica, hence max).",
		Unit:        "short",
		Queries:     []Query{{Expr: `max by (state) (bridgehead_spool_segments{` + sel + `})`, Legend: "{{state}}"}},
	}, {
		Title:       "Spool messages by state",
		Description: "Messages in each state; open and recovering segments count theirs only once sealed or recovered.",
		Unit:        "short",
		Queries:     []Query{{Expr: `max by (state) (bridgehead_spool_messages{` + sel + `})`, Legend: "{{state}}"}},
	}, {
		Title:       "Spool bytes by state",
		Description: "Bytes in each state of the spool.",
		Unit:        "bytes",
		Queries:     []Query{{Expr: `max by (state) (bridgehead_spool_bytes{` + sel + `})`, Legend: "{{state}}"}},
	}, {
		Title:       "Oldest undelivered message",
		Description: "Age of the oldest open, recovering, ready or claimed segment: how long the sink has been behind.",
		Unit:        "s",
		Queries:     []Query{{Expr: `max(bridgehead_spool_oldest_undelivered_age_seconds{` + sel + `})`, Legend: "oldest"}},
	}, {
		Title:       "Waiting by priority",
		Description: "Messages ready or claimed, by priority (0 highest: alarms): what a long outage has queued of each.",
		Unit:        "short",
		Queries:     []Query{{Expr: `max by (priority) (bridgehead_spool_queued_messages{` + sel + `})`, Legend: "priority {{priority}}"}},
	}, {
		Title:       "Oldest waiting, by priority",
		Description: "Age of the oldest ready or claimed segment of each priority: alarms should never wait long, whatever telemetry does.",
		Unit:        "s",
		Queries:     []Query{{Expr: `max by (priority) (bridgehead_spool_queued_oldest_age_seconds{` + sel + `})`, Legend: "priority {{priority}}"}},
	}, {
		Title:       "Capacity used",
		Description: "Spool used bytes over capacity; at 100 % the API answers 503. The alert is at 80 %.",
		Unit:        "percentunit",
		Min:         ptr(0.0), Max: ptr(1.0),
		Queries: []Query{{
			Expr:   `max(bridgehead_spool_used_bytes{` + sel + `}) / max(bridgehead_spool_capacity_bytes{` + sel + `})`,
			Legend: "used",
		}},
	}, {
		Title:       "Writer recoveries",
		Description: "Open segments of dead or fenced writers recovered per second, and their messages (a rise means API replicas are dying or pausing).",
		Unit:        "short",
		Queries: []Query{
			{Expr: `sum(rate(bridgehead_spool_recovered_segments_total{` + sel + `}[$__rate_interval]))`, Legend: "segments"},
			{Expr: `sum(rate(bridgehead_spool_recovered_messages_total{` + sel + `}[$__rate_interval]))`, Legend: "messages"},
		},
	}},
}, {
	Title: "Delivery",
	Panels: []Panel{{
		Title:       "Delivered, retried, throttled, dead-lettered",
		Description: "Messages per second the sink acknowledged, that failed transiently, that it asked to send later (throttling: not an outage), and that it refused for good (moved to dead/).",
		Unit:        "short",
		Queries: []Query{
			{Expr: `sum(rate(bridgehead_forward_delivered_total{` + sel + `}[$__rate_interval]))`, Legend: "delivered"},
			{Expr: `sum(rate(bridgehead_forward_retried_total{` + sel + `}[$__rate_interval]))`, Legend: "retried"},
			{Expr: `sum(rate(bridgehead_forward_throttled_total{` + sel + `}[$__rate_interval]))`, Legend: "throttled"},
			{Expr: `sum(rate(bridgehead_forward_dead_lettered_total{` + sel + `}[$__rate_interval]))`, Legend: "dead-lettered"},
		},
	}, {
		Title:       "Circuit breaker",
		Description: "Each forwarder's breaker: 0 closed (sending), 1 half-open (probing), 2 open (not sending).",
		Min:         ptr(0.0), Max: ptr(2.0),
		Queries: []Query{{Expr: `bridgehead_forward_breaker_state{` + sel + `}`, Legend: "{{instance}}"}},
	}, {
		Title:       "Send latency",
		Description: "Duration of one sink send (one batch), p50 and p99, and sends cut off by their deadline per second (not in the latency).",
		Unit:        "s",
		Queries: []Query{
			{Expr: `histogram_quantile(0.5, sum by (le) (rate(bridgehead_forward_send_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "p50"},
			{Expr: `histogram_quantile(0.99, sum by (le) (rate(bridgehead_forward_send_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "p99"},
			{Expr: `sum(rate(bridgehead_forward_send_timeouts_total{` + sel + `}[$__rate_interval]))`, Legend: "timeouts/s"},
		},
	}},
}, {
	Title: "Security",
	Panels: []Panel{{
		Title:       "TLS certificate expires in",
		Description: "Time until the serving certificate's NotAfter (follows reloads). The alert is at 14 days.",
		Unit:        "s",
		Queries:     []Query{{Expr: `min(bridgehead_tls_certificate_expiry_timestamp_seconds{` + sel + `}) - time()`, Legend: "expires in"}},
	}, {
		Title:       "Principals file reload",
		Description: "1 while a replica's principals file is missing, unreadable or invalid (the keys in force are older than the file); failures per second.",
		Unit:        "short",
		Queries: []Query{
			{Expr: `max(bridgehead_auth_principals_reload_failing{` + sel + `})`, Legend: "failing"},
			{Expr: `sum(rate(bridgehead_auth_principals_reload_failures_total{` + sel + `}[$__rate_interval]))`, Legend: "failures"},
		},
	}},
}}

// Expand replaces the dashboard variables in expr as Grafana would for one stamp.
func Expand(expr, stamp, rateInterval string) string {
	return strings.NewReplacer("$stamp", stamp, "$__rate_interval", rateInterval).Replace(expr)
}

// Dashboard returns the Grafana dashboard as indented JSON: a datasource variable, a multi-value
// stamp variable, and each panel repeated once per selected stamp, side by side.
func Dashboard() ([]byte, error) {
	ds := common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}
	// The classic dashboard model, not the SDK's dashboardv2: v2 imports only into Grafana 12 with
	// its new-layouts feature, the classic JSON into every Grafana an operator may run.
	//lint:ignore SA1019 see above
	b := dashboard.NewDashboardBuilder("Bridgehead stamps").
		Uid(DashboardUID).
		Description("Ingest, spool, delivery and security of the Bridgehead stamps, side by side (generated by deploy/monitoring).").
		Tags([]string{"bridgehead"}).
		Refresh("30s").
		Time("now-3h", "now").
		Timezone(common.TimeZoneUtc).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("stamp").
			Label("Stamp").
			Datasource(ds).
			Query(dashboard.StringOrMap{String: ptr("label_values(bridgehead_ready, stamp)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true))
	for _, r := range Rows {
		b = b.WithRow(dashboard.NewRowBuilder(r.Title))
		for _, p := range r.Panels {
			pb := timeseries.NewPanelBuilder().
				Title(p.Title + " ($stamp)").
				Description(p.Description).
				Datasource(ds).
				Repeat("stamp").
				RepeatDirection(dashboard.PanelRepeatDirectionH).
				MaxPerRow(2).
				Height(8).
				Span(12).
				Legend(common.NewVizLegendOptionsBuilder().
					ShowLegend(true).
					DisplayMode(common.LegendDisplayModeList).
					Placement(common.LegendPlacementBottom)).
				Tooltip(common.NewVizTooltipOptionsBuilder().
					Mode(common.TooltipDisplayModeMulti).
					Sort(common.SortOrderDescending))
			if p.Unit != "" {
				pb = pb.Unit(p.Unit)
			}
			if p.Min != nil {
				pb = pb.Min(*p.Min)
			}
			if p.Max != nil {
				pb = pb.Max(*p.Max)
			}
			if len(p.States) > 0 {
				m := dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{}}
				for v, text := range p.States {
					m.Options[v] = dashboard.ValueMappingResult{Text: ptr(text)}
				}
				pb = pb.Mappings([]dashboard.ValueMapping{{ValueMap: &m}})
			}
			for i, q := range p.Queries {
				pb = pb.WithTarget(prometheus.NewDataqueryBuilder().
					RefId(string(rune('A' + i))).
					Datasource(ds).
					Expr(q.Expr).
					LegendFormat(q.Legend))
			}
			b = b.WithPanel(pb)
		}
	}
	d, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return append(out, '\n'), nil
}
