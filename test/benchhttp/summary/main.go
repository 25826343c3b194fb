// Command summary turns the per-cell lines of scripts/bench-http.sh into markdown: the median over
// rounds of req/s, p50 and p99 for every server and connection count, and the ratios the project's
// goals use, each computed round by round and summarised by its median (the servers of one round
// ran minutes apart at most, the rounds did not: a ratio of medians would mix rounds).
//
//	go run ./test/benchhttp/summary bench-http.out
//
// Input: lines "round server conns req/s p50-ms p99-ms non2xx sockerr" separated by blanks; lines
// starting with # are notes (printed as a list above the tables), and the column header line
// (starting with "round") is skipped.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// cell is one wrk run: one server at one connection count in one round.
type cell struct {
	round         int
	server        string
	conns         int
	rps, p50, p99 float64 // requests a second; latency percentiles in milliseconds
	non2xx, sock  int     // responses that were not 2xx or 3xx; socket errors (connect, read, write, timeout)
}

// serverOrder is the order of the table's rows; servers not listed follow, by name.
var serverOrder = []string{"new", "old", "nop", "fsyncref"}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "summary:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	notes, cells, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
	write(os.Stdout, notes, cells)
}

// parse reads the notes (the # lines, without their "# ") and the cells.
func parse(r io.Reader) ([]string, []cell, error) {
	var notes []string
	var cells []cell
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "round"):
			continue
		case strings.HasPrefix(line, "#"):
			notes = append(notes, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			continue
		}
		f := strings.Fields(line)
		if len(f) != 8 {
			return nil, nil, fmt.Errorf("line %d: %d fields, want 8: %q", n, len(f), line)
		}
		var c cell
		var errs [7]error
		c.server = f[1]
		c.round, errs[0] = strconv.Atoi(f[0])
		c.conns, errs[1] = strconv.Atoi(f[2])
		c.rps, errs[2] = strconv.ParseFloat(f[3], 64)
		c.p50, errs[3] = strconv.ParseFloat(f[4], 64)
		c.p99, errs[4] = strconv.ParseFloat(f[5], 64)
		c.non2xx, errs[5] = strconv.Atoi(f[6])
		c.sock, errs[6] = strconv.Atoi(f[7])
		for _, err := range errs {
			if err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		cells = append(cells, c)
	}
	return notes, cells, sc.Err()
}

// key names a row of the table: a server at a connection count.
type key struct {
	server string
	conns  int
}

// ratio is a goal's quotient: num's req/s over den's at conns.
type ratio struct {
	num, den string
	conns    int
}

// ratios are the quotients the goals use, for the servers and connection counts present:
// new/fsyncref at 1 connection (a lone client pays the fsync floor, not more), new/nop at every
// other count (durable against persisting nothing), new/old at every count.
func ratios(conns []int) []ratio {
	var rs []ratio
	for _, n := range conns {
		if n == 1 {
			rs = append(rs, ratio{"new", "fsyncref", n})
		} else {
			rs = append(rs, ratio{"new", "nop", n})
		}
		rs = append(rs, ratio{"new", "old", n})
	}
	return rs
}

// perRound returns num/den for every round in which both ran, in round order.
func perRound(cells []cell, r ratio) []float64 {
	num, den := map[int]float64{}, map[int]float64{}
	for _, c := range cells {
		if c.conns != r.conns {
			continue
		}
		switch c.server {
		case r.num:
			num[c.round] = c.rps
		case r.den:
			den[c.round] = c.rps
		}
	}
	var rounds []int
	for round := range num {
		if d, ok := den[round]; ok && d > 0 {
			rounds = append(rounds, round)
		}
	}
	slices.Sort(rounds)
	qs := make([]float64, len(rounds))
	for i, round := range rounds {
		qs[i] = num[round] / den[round]
	}
	return qs
}

// median is the middle value, or the mean of the two middle values; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func write(w io.Writer, notes []string, cells []cell) {
	for _, line := range notes {
		fmt.Fprintf(w, "- %s\n", line)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}

	groups := map[key][]cell{}
	var conns []int
	for _, c := range cells {
		k := key{c.server, c.conns}
		groups[k] = append(groups[k], c)
		if !slices.Contains(conns, c.conns) {
			conns = append(conns, c.conns)
		}
	}
	slices.Sort(conns)
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.conns != b.conns {
			return a.conns - b.conns
		}
		if d := rank(a.server) - rank(b.server); d != 0 {
			return d
		}
		return strings.Compare(a.server, b.server)
	})

	fmt.Fprintln(w, "| conns | server | req/s (median) | req/s (min–max) | p50 ms | p99 ms | rounds |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|")
	for _, k := range keys {
		g := groups[k]
		rps, p50, p99 := field(g, func(c cell) float64 { return c.rps }), field(g, func(c cell) float64 { return c.p50 }), field(g, func(c cell) float64 { return c.p99 })
		fmt.Fprintf(w, "| %d | %s | %s | %s–%s | %s | %s | %d |\n", k.conns, k.server,
			thousands(median(rps)), thousands(slices.Min(rps)), thousands(slices.Max(rps)),
			ms(median(p50)), ms(median(p99)), len(g))
	}

	var rows []string
	for _, r := range ratios(conns) {
		qs := perRound(cells, r)
		if len(qs) == 0 {
			continue
		}
		each := make([]string, len(qs))
		for i, q := range qs {
			each[i] = fmt.Sprintf("%.3f", q)
		}
		rows = append(rows, fmt.Sprintf("| %s / %s | %d | **%.3f** | %s |", r.num, r.den, r.conns, median(qs), strings.Join(each, ", ")))
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| ratio of req/s | conns | median of the per-round ratios | per round |")
		fmt.Fprintln(w, "|---|---:|---:|---|")
		for _, row := range rows {
			fmt.Fprintln(w, row)
		}
	}

	var bad []string
	for _, c := range cells {
		if c.non2xx > 0 || c.sock > 0 {
			bad = append(bad, fmt.Sprintf("round %d %s conns=%d: %d non-2xx, %d socket errors", c.round, c.server, c.conns, c.non2xx, c.sock))
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(w, "\n**WARNING: %d of %d runs had failed requests; their req/s count failures too:**\n\n", len(bad), len(cells))
		for _, b := range bad {
			fmt.Fprintf(w, "- %s\n", b)
		}
	}
}

// rank places server in serverOrder.
func rank(server string) int {
	if i := slices.Index(serverOrder, server); i >= 0 {
		return i
	}
	return len(serverOrder)
}

func field(cs []cell, f func(cell) float64) []float64 {
	xs := make([]float64, len(cs))
	for i, c := range cs {
		xs[i] = f(c)
	}
	return xs
}

// thousands formats v rounded to an integer with commas: 27,730.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ms formats a latency with three significant digits at most: 0.312, 2.55, 14.0, 152.
func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
