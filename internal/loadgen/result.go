package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one Run measured. Its JSON form is `bridgehead bench --json`'s output; the field
// names are a stable interface for scripts.
type Result struct {
	URL         string  `json:"url"`         // the request URL: base URL plus the route's path
	Route       string  `json:"route"`       // "compat" or "messages"
	Mode        string  `json:"mode"`        // "closed" (Concurrency workers) or "open" (TargetRate)
	Concurrency int     `json:"concurrency"` // workers; in open loop, the bound on requests in flight
	TargetRate  float64 `json:"targetRate"`  // open loop: scheduled requests/s; 0 in closed loop
	Batch       int     `json:"batch"`       // messages per request
	Size        int     `json:"size"`        // bytes per message value
	BodyBytes   int     `json:"bodyBytes"`   // bytes per request body
	Warmup      float64 `json:"warmupSeconds"`
	// Duration is the measured time in seconds: from the end of the warm-up until the last request
	// answered.
	Duration float64 `json:"durationSeconds"`

	// Requests counts the measured requests: every one that got an answer (by status in Status)
	// or failed (by kind in Errors).
	Requests int64 `json:"requests"`
	// WarmupRequests counts requests started (or scheduled) during the warm-up; nothing else
	// about them is in the result.
	WarmupRequests    int64   `json:"warmupRequests"`
	Succeeded         int64   `json:"succeeded"` // measured requests answered 2xx
	Messages          int64   `json:"messages"`  // Succeeded × Batch: messages the server accepted
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	MessagesPerSecond float64 `json:"messagesPerSecond"`

	Status map[int]int64    `json:"status"` // measured answers by HTTP status code
	Errors map[string]int64 `json:"errors"` // measured transport errors by kind (see errorKind)
	// Unsent, open loop only: scheduled requests that were never sent because every worker was
	// still waiting for an answer when the time was up. Non-zero means the server (or the bound
	// Concurrency) could not keep up with TargetRate, and latency understates the wait.
	Unsent int64 `json:"unsent"`

	// Latency of the measured requests that got an HTTP answer, whatever its status; transport
	// errors are not in it. In open loop it runs from the scheduled send time (coordinated
	// omission corrected); in closed loop from the actual send.
	Latency Latency `json:"latencyMs"`
	// SendDelay, open loop only, is how late requests went out against their schedule: the part
	// of Latency spent waiting for a free worker (or for the generator itself).
	SendDelay *Latency `json:"sendDelayMs,omitempty"`

	// Samples holds the first body of each non-2xx status (key "503") and the first message of
	// each error kind (key "timeout"), cut to a few hundred bytes; warm-up included.
	Samples map[string]string `json:"samples"`

	// Interrupted is true when Run's context ended before the time was up.
	Interrupted bool `json:"interrupted"`

	// Histogram holds every latency in Latency, in microseconds, for a caller that wants more than
	// the summary.
	Histogram *hdrhistogram.Histogram `json:"-"`
}

// Latency summarizes a histogram in milliseconds (microsecond resolution, 3 significant digits).
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99.9"`
	Max   float64 `json:"max"`
}

// Progress is a snapshot of a run in progress, warm-up included.
type Progress struct {
	Elapsed  time.Duration // since the run started
	Total    time.Duration // Warmup + Duration
	Warmup   bool          // still in the warm-up
	InFlight int64         // requests sent and not yet answered

	// Totals since the start.
	Requests  int64 // finished requests
	Succeeded int64 // answered 2xx
	Failed    int64 // answered otherwise
	Errors    int64 // transport errors

	// Since the previous snapshot.
	RequestsPerSecond float64
	P50, P99, Max     time.Duration // latency of the answers
}

// String is the progress line: elapsed time, rate, counts and recent latency.
func (p Progress) String() string {
	phase := ""
	if p.Warmup {
		phase = " warm-up"
	}
	return fmt.Sprintf("%3.0fs/%.0fs%s  %s req/s  ok %s  non-2xx %s  errors %s  in flight %d  p50 %s  p99 %s  max %s",
		p.Elapsed.Seconds(), p.Total.Seconds(), phase, thousands(p.RequestsPerSecond, 0),
		thousands(float64(p.Succeeded), 0), thousands(float64(p.Failed), 0), thousands(float64(p.Errors), 0),
		p.InFlight, fmtDur(p.P50), fmtDur(p.P99), fmtDur(p.Max))
}

// errorKind names a transport error for Result.Errors. The kinds, checked in this order:
//
//	canceled            the run was interrupted (Run's context ended)
//	timeout             no complete answer within Timeout (or a dial or TLS timeout)
//	connection-refused  nothing listens at the address
//	connection-reset    the server reset the connection (RST, broken pipe)
//	connection-closed   the server closed the connection before a complete answer (EOF)
//	dns                 the host name did not resolve
//	tls                 TLS handshake or certificate failure
//	other               anything else; Result.Samples["other"] has the first message
func errorKind(err error) string {
	var (
		ne   net.Error
		dns  *net.DNSError
		rec  tls.RecordHeaderError
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		host x509.HostnameError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection-refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection-reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection-closed"
	case errors.As(err, &dns):
		return "dns"
	case errors.As(err, &rec), errors.As(err, &cert), errors.As(err, &ua), errors.As(err, &host):
		return "tls"
	}
	return "other"
}

// failureSummary says what the requests got instead of a 2xx, for ErrNoSuccess.
func (r *Result) failureSummary() string {
	if r.Requests == 0 {
		if r.Interrupted {
			return "interrupted before any measured request finished"
		}
		return "no measured request finished (is the duration long enough?)"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.Status)) {
		part := fmt.Sprintf("%d × HTTP %d", r.Status[code], code)
		if s := oneLine(r.Samples[strconv.Itoa(code)], 120); s != "" {
			part += " (" + s + ")"
		}
		parts = append(parts, part)
	}
	for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
		part := fmt.Sprintf("%d × %s", r.Errors[kind], kind)
		if s := oneLine(r.Samples[kind], 120); s != "" {
			part += " (" + s + ")"
		}
		parts = append(parts, part)
	}
	return fmt.Sprintf("%d requests to %s: %s", r.Requests, r.URL, strings.Join(parts, ", "))
}

// WriteText writes the result for a person: what ran, throughput, answers, errors and latency.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := fmt.Sprintf("closed loop, %d workers", r.Concurrency)
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %s req/s, at most %d in flight", thousands(r.TargetRate, 1), r.Concurrency)
	}
	per := fmt.Sprintf("%d-byte value", r.Size)
	if r.Batch > 1 {
		per = fmt.Sprintf("%d messages of %d-byte values", r.Batch, r.Size)
	}
	fmt.Fprintf(&b, "bench: POST %s: %s per request (%s body); %s\n", r.URL, per, fmtBytes(r.BodyBytes), mode)
	if r.Interrupted {
		b.WriteString("  INTERRUPTED: partial result\n")
	}
	fmt.Fprintf(&b, "  duration  %.2f s measured, after %gs warm-up (%s requests, not counted)\n",
		r.Duration, r.Warmup, thousands(float64(r.WarmupRequests), 0))
	fmt.Fprintf(&b, "  requests  %s  %s req/s\n", thousands(float64(r.Requests), 0), thousands(r.RequestsPerSecond, 1))
	fmt.Fprintf(&b, "  accepted  %s messages  %s msg/s (2xx answers × %d)\n",
		thousands(float64(r.Messages), 0), thousands(r.MessagesPerSecond, 1), r.Batch)
	b.WriteString("  status   ")
	if len(r.Status) == 0 {
		b.WriteString(" none")
	}
	for _, code := range slices.Sorted(maps.Keys(r.Status)) {
		fmt.Fprintf(&b, " %d: %s", code, thousands(float64(r.Status[code]), 0))
	}
	b.WriteString("\n  errors   ")
	if len(r.Errors) == 0 {
		b.WriteString(" none")
	}
	for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(&b, " %s: %s", kind, thousands(float64(r.Errors[kind]), 0))
	}
	b.WriteString("\n")
	for _, k := range slices.Sorted(maps.Keys(r.Samples)) {
		fmt.Fprintf(&b, "  first %s: %s\n", k, oneLine(r.Samples[k], 160))
	}
	l := r.Latency
	fmt.Fprintf(&b, "  latency   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s answers)\n",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), thousands(float64(l.Count), 0))
	if r.Mode == "open" {
		b.WriteString("            from each request's scheduled send time: coordinated omission corrected\n")
		if d := r.SendDelay; d != nil {
			fmt.Fprintf(&b, "  sent late p50 %s  p99 %s  max %s  (waiting for a free worker; part of latency)\n",
				fmtMs(d.P50), fmtMs(d.P99), fmtMs(d.Max))
		}
		if r.Unsent > 0 {
			fmt.Fprintf(&b, "  WARNING: %s scheduled requests were never sent: the server (or --concurrency %d) could not keep up with %s req/s, and latency understates the wait\n",
				thousands(float64(r.Unsent), 0), r.Concurrency, thousands(r.TargetRate, 1))
		}
	} else {
		b.WriteString("            from each request's send: closed loop; a stall delays later requests unseen (use --rate to see it)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine flattens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// thousands formats f with prec decimals and thin groups of three digits: 12,345.6.
func thousands(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// fmtMs formats milliseconds with 3 significant digits or more: 0.412ms, 12.3ms, 1204ms.
func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms >= 1:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 3, 64) + "ms"
}

func fmtDur(d time.Duration) string { return fmtMs(float64(d) / float64(time.Millisecond)) }

func fmtBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
