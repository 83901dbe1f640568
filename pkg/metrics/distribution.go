package metrics

import (
	"math"
	"sort"
)

// Distribution summarises a sample of latencies, all in milliseconds. The JSON keys are part of
// the results contract (DESIGN §7). An empty sample has no distribution at all: Describe gives
// nil, written as JSON null, so that no figure of 0 ms can be read as a measurement.
type Distribution struct {
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	Std    float64 `json:"std"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P90    float64 `json:"p90"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
}

// Describe computes the distribution of values the way vLLM's benchmark_serving does with numpy:
// np.mean, np.median, np.std (population, ddof=0) and np.percentile with its default "linear"
// method. values is not modified. An empty sample gives nil: it has no mean, median or
// percentile, and zeros would pass for measured latencies.
func Describe(values []float64) *Distribution {
	if len(values) == 0 {
		return nil
	}
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)

	var sum float64
	for _, v := range sorted {
		sum += v
	}
	mean := sum / float64(len(sorted))
	var sq float64
	for _, v := range sorted {
		d := v - mean
		sq += d * d
	}
	return &Distribution{
		Mean:   mean,
		Median: Percentile(sorted, 50),
		Std:    math.Sqrt(sq / float64(len(sorted))),
		Min:    sorted[0],
		Max:    sorted[len(sorted)-1],
		P90:    Percentile(sorted, 90),
		P95:    Percentile(sorted, 95),
		P99:    Percentile(sorted, 99),
	}
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of an ascending sorted sample with
// numpy's default method ("linear", Hyndman & Fan type 7): the value at the virtual index
// (n−1)·p/100, interpolated linearly between its two neighbours. It returns 0 for an empty
// sample; p outside [0, 100] is clamped.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	p = math.Max(0, math.Min(100, p))
	rank := float64(n-1) * p / 100
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	frac := rank - float64(lo)
	a, b := sorted[lo], sorted[hi]
	// numpy's _lerp evaluates from the nearer end so the result stays monotone and exact at
	// both neighbours; doing the same keeps our figures identical to numpy's to the last bit
	// in the common cases.
	if frac >= 0.5 {
		return b - (b-a)*(1-frac)
	}
	return a + (b-a)*frac
}
