package metrics

import (
	"math"
	"slices"
	"testing"
)

const eps = 1e-9

func near(a, b float64) bool { return math.Abs(a-b) <= eps*math.Max(1, math.Abs(b)) }

func assertDistribution(t *testing.T, got, want *Distribution) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("distribution = %+v, want %+v", got, want)
		}
		return
	}
	fields := []struct {
		name      string
		got, want float64
	}{
		{"mean", got.Mean, want.Mean}, {"median", got.Median, want.Median}, {"std", got.Std, want.Std},
		{"min", got.Min, want.Min}, {"max", got.Max, want.Max}, {"p90", got.P90, want.P90},
		{"p95", got.P95, want.P95}, {"p99", got.P99, want.P99},
	}
	for _, f := range fields {
		if !near(f.got, f.want) {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	// Expected values are numpy's: np.mean, np.median, np.std (ddof=0) and np.percentile
	// (method="linear"), worked by hand: the percentile p of n sorted values sits at index
	// (n-1)*p/100, interpolated between its neighbours.
	tests := []struct {
		name   string
		values []float64
		want   *Distribution
	}{
		// no sample, no distribution: nil is JSON null, never zeros that read as measured
		{name: "empty", values: nil, want: nil},
		{name: "single", values: []float64{5}, want: &Distribution{Mean: 5, Median: 5, Min: 5, Max: 5, P90: 5, P95: 5, P99: 5}},
		{
			// np.percentile([1,2,3,4,10], [90,95,99]) -> [7.6, 8.8, 9.76]; np.std -> sqrt(10)
			name:   "odd count, unsorted input",
			values: []float64{10, 1, 4, 3, 2},
			want:   &Distribution{Mean: 4, Median: 3, Std: math.Sqrt(10), Min: 1, Max: 10, P90: 7.6, P95: 8.8, P99: 9.76},
		},
		{
			// np.percentile([1,2,3,4], [50,90,95,99]) -> [2.5, 3.7, 3.85, 3.97]; np.std -> sqrt(1.25)
			name:   "even count",
			values: []float64{1, 2, 3, 4},
			want:   &Distribution{Mean: 2.5, Median: 2.5, Std: math.Sqrt(1.25), Min: 1, Max: 4, P90: 3.7, P95: 3.85, P99: 3.97},
		},
		{
			name:   "all equal",
			values: []float64{7, 7, 7},
			want:   &Distribution{Mean: 7, Median: 7, Min: 7, Max: 7, P90: 7, P95: 7, P99: 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.values)
			assertDistribution(t, Describe(tt.values), tt.want)
			if !slices.Equal(in, tt.values) {
				t.Errorf("Describe modified its input: %v, was %v", tt.values, in)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	sorted := []float64{10, 20, 30, 40, 50}
	tests := []struct {
		name string
		p    float64
		want float64
	}{
		{"p0 is min", 0, 10},
		{"p100 is max", 100, 50},
		{"on a sample", 25, 20},
		{"between samples", 10, 14},     // index 0.4 -> 10 + 0.4*10
		{"upper half of a gap", 90, 46}, // index 3.6 -> 40 + 0.6*10
		{"below range clamps", -5, 10},
		{"above range clamps", 150, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(sorted, tt.p); !near(got, tt.want) {
				t.Errorf("Percentile(%v, %v) = %v, want %v", sorted, tt.p, got, tt.want)
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		if got := Percentile(nil, 50); got != 0 {
			t.Errorf("Percentile(nil, 50) = %v, want 0", got)
		}
	})
}

// FuzzPercentile checks numpy's linear percentile properties: within [min, max], monotone in p.
func FuzzPercentile(f *testing.F) {
	f.Add(1.0, 2.0, 3.0, 40.0, 60.0)
	f.Add(-5.0, 0.0, 0.0, 99.0, 1.0)
	f.Fuzz(func(t *testing.T, a, b, c, p, q float64) {
		for _, v := range []float64{a, b, c, p, q} {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
				return
			}
		}
		s := []float64{a, b, c}
		slices.Sort(s)
		lo, hi := min(p, q), max(p, q)
		x, y := Percentile(s, lo), Percentile(s, hi)
		if x < s[0] || y > s[2] {
			t.Fatalf("Percentile(%v, %v..%v) = %v..%v, outside [%v, %v]", s, lo, hi, x, y, s[0], s[2])
		}
		if x > y {
			t.Fatalf("Percentile(%v, %v) = %v > Percentile(%v) = %v", s, lo, x, hi, y)
		}
	})
}
