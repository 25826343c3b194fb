package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

const sample = `# baseline: 500e2f2
round server conns rps p50_ms p99_ms non2xx sockerr
1 new 1 100 1.0 2.0 0 0
1 fsyncref 1 200 0.5 1.0 0 0
1 new 64 300 5 9 0 0
1 nop 64 600 2 4 0 0
2 fsyncref 1 100 0.5 1.0 0 0
2 new 1 100 1.0 2.0 0 0
2 nop 64 1000 2 4 0 0
2 new 64 900 5 9 3 0
3 new 1 400 1.0 2.0 0 0
3 fsyncref 1 100 0.5 1.0 0 0
`

// TestPerRoundRatios checks that a ratio is taken round by round (round 3 has no nop at 64
// connections, so it has two values there) and that its median is not the ratio of medians.
func TestPerRoundRatios(t *testing.T) {
	_, cells, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    ratio
		want []float64
	}{
		{ratio{"new", "fsyncref", 1}, []float64{0.5, 1, 4}},
		{ratio{"new", "nop", 64}, []float64{0.5, 0.9}},
		{ratio{"new", "old", 64}, nil},
	} {
		if got := perRound(cells, tc.r); !slices.Equal(got, tc.want) {
			t.Errorf("perRound(%v) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestWrite(t *testing.T) {
	notes, cells, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	write(&b, notes, cells)
	out := b.String()
	for _, want := range []string{
		"- baseline: 500e2f2\n",
		"| 1 | new | 100 | 100–400 | 1.00 | 2.00 | 3 |\n",
		"| 64 | nop | 800 | 600–1,000 | 2.00 | 4.00 | 2 |\n",
		"| new / fsyncref | 1 | **1.000** | 0.500, 1.000, 4.000 |\n",
		"| new / nop | 64 | **0.700** | 0.500, 0.900 |\n",
		"WARNING: 1 of 10 runs had failed requests",
		"- round 2 new conns=64: 3 non-2xx, 0 socket errors\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 27730.2: "27,730", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}
