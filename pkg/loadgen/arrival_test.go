package loadgen

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// gapsOf returns the gaps between consecutive offsets, in seconds.
func gapsOf(offs []time.Duration) []float64 {
	g := make([]float64, len(offs)-1)
	for i := range g {
		g[i] = (offs[i+1] - offs[i]).Seconds()
	}
	return g
}

func meanCV(xs []float64) (mean, cv float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/float64(len(xs)-1)) / mean
}

// ksDistance is the Kolmogorov-Smirnov statistic of the sample against cdf.
func ksDistance(xs []float64, cdf func(float64) float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := float64(len(s))
	d := 0.0
	for i, x := range s {
		f := cdf(x)
		d = max(d, math.Abs(float64(i+1)/n-f), math.Abs(float64(i)/n-f))
	}
	return d
}

// About 10,000 gaps at 1000 req/s for 10 s, at a fixed seed. Tolerances are about four
// standard errors of each estimate, and the KS bound is the 0.1% critical value 1.95/sqrt(n),
// so a wrong mean, shape or scale fails while the seeded sample passes.
func TestScheduleDistributions(t *testing.T) {
	const rate = 1000.0
	tests := []struct {
		name       string
		arrival    Arrival
		burstiness float64
		wantCV     float64
		cvTol      float64
		meanTol    float64
		cdf        func(float64) float64
	}{
		{"poisson", Poisson, 0, 1, 0.06, 0.04, distuv.Exponential{Rate: rate}.CDF},
		{"default arrival is poisson", "", 0, 1, 0.06, 0.04, distuv.Exponential{Rate: rate}.CDF},
		{"gamma burstiness 1 is poisson", Gamma, 1, 1, 0.06, 0.04, distuv.Exponential{Rate: rate}.CDF},
		{"gamma bursty (0.25)", Gamma, 0.25, 2, 0.10, 0.08, distuv.Gamma{Alpha: 0.25, Beta: rate * 0.25}.CDF},
		{"gamma smooth (4)", Gamma, 4, 0.5, 0.04, 0.02, distuv.Gamma{Alpha: 4, Beta: rate * 4}.CDF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offs, err := Schedule(Plan{Rate: rate, Duration: 10 * time.Second, Arrival: tt.arrival, Burstiness: tt.burstiness, Seed: 42})
			if err != nil {
				t.Fatal(err)
			}
			if len(offs) < 9000 || len(offs) > 11000 {
				t.Fatalf("%d arrivals in 10 s at %g req/s", len(offs), rate)
			}
			if offs[0] != 0 || !slices.IsSorted(offs) || offs[len(offs)-1] >= 10*time.Second {
				t.Fatalf("offsets must start at 0, not decrease, and end before the duration: first %s last %s", offs[0], offs[len(offs)-1])
			}
			gaps := gapsOf(offs)
			mean, cv := meanCV(gaps)
			if rel := math.Abs(mean*rate - 1); rel > tt.meanTol {
				t.Errorf("mean gap %.6fs, want %.6fs within %.0f%%", mean, 1/rate, tt.meanTol*100)
			}
			if math.Abs(cv-tt.wantCV)/tt.wantCV > tt.cvTol {
				t.Errorf("coefficient of variation %.3f, want %.3f within %.0f%%", cv, tt.wantCV, tt.cvTol*100)
			}
			// The shape is checked on the sampler itself: offsets are whole nanoseconds, and
			// at burstiness 0.25 about 2% of the gaps are shorter than one.
			plan := Plan{Rate: rate, Duration: time.Second, Arrival: tt.arrival, Burstiness: tt.burstiness, Seed: 42}
			raw := make([]float64, len(gaps))
			draw := plan.gapSampler()
			for i := range raw {
				raw[i] = draw()
			}
			if d, bound := ksDistance(raw, tt.cdf), 1.95/math.Sqrt(float64(len(raw))); d > bound {
				t.Errorf("KS distance %.4f to the expected distribution exceeds %.4f", d, bound)
			}
		})
	}
}

func TestScheduleConstantIsExact(t *testing.T) {
	tests := []struct {
		rate     float64
		duration time.Duration
		wantN    int
		wantGap  time.Duration
	}{
		{200, 5 * time.Second, 1000, 5 * time.Millisecond},
		{1, 300 * time.Second, 300, time.Second},
		{3, time.Second, 3, 0}, // 1/3 s is not a whole number of ns: offsets round, gaps vary by 1 ns
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(time.Duration(float64(time.Second)/tt.rate).String(), ".", "_"), func(t *testing.T) {
			offs, err := Schedule(Plan{Rate: tt.rate, Duration: tt.duration, Arrival: Constant})
			if err != nil {
				t.Fatal(err)
			}
			if len(offs) != tt.wantN {
				t.Fatalf("%d arrivals, want %d", len(offs), tt.wantN)
			}
			for k, o := range offs {
				want := time.Duration(math.Round(float64(k) * 1e9 / tt.rate))
				if tt.wantGap > 0 {
					want = time.Duration(k) * tt.wantGap
				}
				if o != want {
					t.Fatalf("offset %d is %s, want %s", k, o, want)
				}
			}
		})
	}
}

func TestScheduleSeeds(t *testing.T) {
	plan := Plan{Rate: 50, Duration: 2 * time.Second, Arrival: Gamma, Burstiness: 0.5, Seed: 1}
	a, err := Schedule(plan)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Schedule(plan)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Error("the same seed gave two schedules")
	}
	plan.Seed = 2
	c, err := Schedule(plan)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a, c) {
		t.Error("seeds 1 and 2 gave the same schedule")
	}
}

func TestScheduleCountMode(t *testing.T) {
	offs, err := Schedule(Plan{NumRequests: 7, Arrival: Poisson, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 7 || slices.ContainsFunc(offs, func(d time.Duration) bool { return d != 0 }) {
		t.Errorf("count mode schedule %v, want 7 zeros", offs)
	}
}

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		name string
		plan Plan
		want string // "" means valid
	}{
		{"count mode", Plan{NumRequests: 10, MaxConcurrency: 2, WarmupRequests: 2, BatchSize: 4}, ""},
		{"rate mode", Plan{Rate: 1, Duration: time.Minute}, ""},
		{"gamma", Plan{Rate: 1, Duration: time.Minute, Arrival: Gamma, Burstiness: 0.3}, ""},
		{"count mode ignores rate-mode defaults", Plan{NumRequests: 3, Duration: time.Minute, Arrival: Poisson, Burstiness: 1}, ""},
		{"nothing", Plan{}, "nothing to send"},
		{"both modes", Plan{NumRequests: 5, Rate: 1, Duration: time.Second}, "not both"},
		{"rate without duration", Plan{Rate: 2}, "positive duration"},
		{"negative count", Plan{NumRequests: -1}, "num_requests"},
		{"negative rate", Plan{Rate: -1, Duration: time.Second}, "rate"},
		{"negative duration", Plan{Rate: 1, Duration: -time.Second}, "duration"},
		{"negative concurrency", Plan{NumRequests: 1, MaxConcurrency: -1}, "max_concurrency"},
		{"negative warmup", Plan{NumRequests: 1, WarmupRequests: -1}, "warmup_requests"},
		{"negative batch", Plan{NumRequests: 1, BatchSize: -2}, "batch size"},
		{"unknown arrival", Plan{Rate: 1, Duration: time.Second, Arrival: "uniform"}, `"uniform" is not one of poisson, constant, gamma`},
		{"burstiness without gamma", Plan{Rate: 1, Duration: time.Second, Burstiness: 2}, `applies to arrival "gamma"`},
		{"negative burstiness", Plan{Rate: 1, Duration: time.Second, Arrival: Gamma, Burstiness: -1}, "burstiness"},
		{"too many requests", Plan{Rate: 1e6, Duration: time.Hour}, "more than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.plan.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
