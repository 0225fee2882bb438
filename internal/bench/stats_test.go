package bench

import (
	"math"
	"testing"
	"time"

	"github.com/lib/pq"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		// Shuffled order: Percentile must sort.
		hundred[i] = ms((i*37)%100 + 1)
	}
	cases := []struct {
		name string
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value is every percentile", []time.Duration{ms(7)}, 99, ms(7)},
		{"p50 of 1..100", hundred, 50, ms(50)},
		{"p95 of 1..100", hundred, 95, ms(95)},
		{"p99 of 1..100", hundred, 99, ms(99)},
		{"p100 is the maximum", hundred, 100, ms(100)},
		{"tiny p is the minimum", hundred, 0.1, ms(1)},
		{"p50 of an even count is the lower middle", []time.Duration{ms(4), ms(1), ms(3), ms(2)}, 50, ms(2)},
		{"p99 of 5 values is the largest", []time.Duration{ms(5), ms(1), ms(4), ms(2), ms(3)}, 99, ms(5)},
		{"p99 of 200 values is the second largest", seq(200), 99, ms(198)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.d, tc.p); got != tc.want {
				t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tc.d), tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[n-1-i] = ms(i + 1)
	}
	return out
}

func TestPercentileLeavesInputUnsorted(t *testing.T) {
	d := []time.Duration{ms(3), ms(1), ms(2)}
	Percentile(d, 50)
	if d[0] != ms(3) || d[1] != ms(1) || d[2] != ms(2) {
		t.Errorf("Percentile reordered its input: %v", d)
	}
}

func TestSummarize(t *testing.T) {
	got := Summarize(seq(1000))
	want := Latency{P50: 500, P95: 950, P99: 990}
	if got != want {
		t.Errorf("Summarize(1..1000 ms) = %+v, want %+v", got, want)
	}
}

func TestRateAndRatio(t *testing.T) {
	if got := Rate(200, 4*time.Second); got != 50 {
		t.Errorf("Rate(200, 4s) = %v, want 50", got)
	}
	if got := Rate(5, 0); got != 0 {
		t.Errorf("Rate(5, 0) = %v, want 0", got)
	}
	if got := Ratio(30, 60); got != 0.5 {
		t.Errorf("Ratio(30, 60) = %v, want 0.5", got)
	}
	for _, b := range []float64{0, -1} {
		if got := Ratio(30, b); got != 0 {
			t.Errorf("Ratio(30, %v) = %v, want 0 (no baseline)", b, got)
		}
	}
}

func TestRatiosAndTargets(t *testing.T) {
	lat := Latency{P50: 100, P95: 200, P99: 300}
	run := FanOut{
		K:     5,
		Lethe: LetheFigures{CompletedPerSecond: 20, CommandsPerSecond: 100, Latency: lat},
		Empty: &Figures{PerSecond: 50},
		Naive: &Figures{PerSecond: 16, Latency: Latency{P50: 120}},
		Kafka: &Figures{PerSecond: 400},
	}
	run.ratios()
	want := Ratios{ErasuresVsEmptyWorkflow: 0.4, ErasuresVsNaiveWorkflow: 1.25, P99VsNaiveP50: 2.5, CommandsVsRawKafka: 0.25}
	if run.Ratio == nil || !near(*run.Ratio, want) {
		t.Fatalf("ratios = %+v, want %+v", run.Ratio, want)
	}
	// At K=5 the naive throughput and the p99 targets apply, not K=1's.
	if len(run.Check) != 2 {
		t.Fatalf("targets at K=5 = %+v, want the naive throughput and p99 ones", run.Check)
	}
	for _, c := range run.Check {
		if !c.Met {
			t.Errorf("target %s %s with %.2f reported missed", c.Figure, c.Target, c.Value)
		}
	}

	one := FanOut{K: 1, Lethe: LetheFigures{CompletedPerSecond: 20}, Empty: &Figures{PerSecond: 50}}
	one.ratios()
	if len(one.Check) != 1 || one.Check[0].Met || one.Check[0].Value != 0.4 {
		t.Errorf("K=1 at 0.4 of the empty workflow: targets = %+v, want one missed", one.Check)
	}

	remote := FanOut{K: 5, Lethe: LetheFigures{CompletedPerSecond: 20}}
	remote.ratios()
	if remote.Ratio != nil || remote.Check != nil {
		t.Errorf("without baselines: ratios %+v, targets %+v, want none", remote.Ratio, remote.Check)
	}
}

func near(a, b Ratios) bool {
	eq := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
	return eq(a.ErasuresVsEmptyWorkflow, b.ErasuresVsEmptyWorkflow) && eq(a.ErasuresVsNaiveWorkflow, b.ErasuresVsNaiveWorkflow) &&
		eq(a.P99VsNaiveP50, b.P99VsNaiveP50) && eq(a.CommandsVsRawKafka, b.CommandsVsRawKafka)
}

func TestParseProcField(t *testing.T) {
	status := []byte("Name:\tlethe\nVmPeak:\t 2000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1000 kB\n")
	got, err := parseProcField(status, "VmHWM")
	if err != nil || got != 204800*1024 {
		t.Errorf("VmHWM = %d, %v; want %d", got, err, 204800*1024)
	}
	if _, err := parseProcField(status, "VmSwap"); err == nil {
		t.Error("a missing field gave no error")
	}
	if rss, err := PeakRSS(); err != nil || rss <= 0 {
		t.Errorf("PeakRSS() = %d, %v; want a positive size", rss, err)
	}
}

func TestWithDatabase(t *testing.T) {
	cases := []struct{ base, want string }{
		{"postgres://postgres@127.0.0.1:5432/lethe?sslmode=disable", "postgres://postgres@127.0.0.1:5432/lethe_bench_x?sslmode=disable"},
		{"postgresql://u:p@db/", "postgresql://u:p@db/lethe_bench_x"},
		{"host=127.0.0.1 user=postgres dbname=lethe", "host=127.0.0.1 user=postgres dbname=lethe dbname=lethe_bench_x"},
	}
	for _, tc := range cases {
		got, err := withDatabase(tc.base, "lethe_bench_x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.base, got, err, tc.want)
		}
		// What counts is what lib/pq connects to.
		cfg, err := pq.NewConfig(got)
		if err != nil || cfg.Database != "lethe_bench_x" {
			t.Errorf("lib/pq reads %q as database %q (%v), want lethe_bench_x", got, cfg.Database, err)
		}
	}
}

func TestDefaultNPerFanOut(t *testing.T) {
	var c Config
	if got := c.n(1); got != DefaultNSingle {
		t.Errorf("K=1 runs %d by default, want %d", got, DefaultNSingle)
	}
	if got := c.n(5); got != DefaultN {
		t.Errorf("K=5 runs %d by default, want %d", got, DefaultN)
	}
	c.N = 7
	if got := c.n(1); got != 7 {
		t.Errorf("K=1 with N=7 runs %d, want 7", got)
	}
	c = Config{Concurrency: 20}
	if got := c.rounds(DefaultNSingle); got != DefaultRounds {
		t.Errorf("rounds(%d) = %d, want %d", DefaultNSingle, got, DefaultRounds)
	}
	if got := c.rounds(50); got != 1 {
		t.Errorf("rounds(50) = %d, want 1: each round at least twice the concurrency", got)
	}
}
