package bench

import (
	"math"
	"slices"
	"time"
)

// Latency summarises the latencies of one measurement, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of d by the
// nearest-rank method: the smallest value that at least p percent of the
// values do not exceed. It is an observed value, never an interpolation, so
// a p99 of 200 samples is the second largest. An empty d gives 0.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank-1, 0), len(s)-1)]
}

// Summarize returns the p50, p95 and p99 of d.
func Summarize(d []time.Duration) Latency {
	return Latency{
		P50: millis(Percentile(d, 50)),
		P95: millis(Percentile(d, 95)),
		P99: millis(Percentile(d, 99)),
	}
}

// Rate is n events over elapsed, per second; 0 when nothing elapsed.
func Rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

// Ratio is a ÷ b, or 0 when b is not positive: a ratio to a baseline that
// was not measured is no figure at all, and 0 says so in the report.
func Ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
