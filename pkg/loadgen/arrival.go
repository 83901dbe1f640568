package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// Arrival is the inter-arrival distribution of rate mode.
type Arrival string

// The arrival processes of the load block's `arrival` field.
const (
	Poisson  Arrival = "poisson"  // exponential gaps with mean 1/rate
	Constant Arrival = "constant" // gaps of exactly 1/rate
	Gamma    Arrival = "gamma"    // gamma gaps, shape = burstiness, mean 1/rate
)

// MaxScheduled bounds the requests one plan may schedule, so a typo in rate or duration
// fails at validation instead of exhausting memory.
const MaxScheduled = 10_000_000

// streamArrivals is the PCG stream of the arrival times, so that other users of the job seed
// (the dataset shuffle) draw independent numbers.
const streamArrivals = 0x61727269766c // "arrivl"

// Schedule returns the send offsets of the plan's measured requests, relative to the start of
// the measured phase: all zero in count mode; in rate mode t_0 = 0 and t_k = t_{k-1} + gap_k
// while t_k < Duration. Offsets are absolute, so a late send never shifts the ones after it.
//
// Gaps follow vLLM's benchmark_serving: gamma with shape = burstiness and scale =
// 1/(rate*burstiness), which has mean 1/rate and coefficient of variation 1/sqrt(burstiness);
// burstiness 1 is the Poisson process. Constant offsets are k/rate, computed directly so that
// no rounding accumulates.
func Schedule(p Plan) ([]time.Duration, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Rate == 0 {
		return make([]time.Duration, p.NumRequests), nil
	}
	nanos := func(sec float64) time.Duration { return time.Duration(math.Round(sec * 1e9)) }
	var out []time.Duration
	switch p.arrival() {
	case Constant:
		for k := 0; ; k++ {
			t := nanos(float64(k) / p.Rate)
			if t >= p.Duration {
				return out, nil
			}
			out = append(out, t)
		}
	default:
		gap := p.gapSampler()
		t := 0.0
		for {
			d := nanos(t)
			if d >= p.Duration {
				return out, nil
			}
			out = append(out, d)
			t += gap()
		}
	}
}

// gapSampler draws the seconds between two random arrivals of a rate plan.
func (p Plan) gapSampler() func() float64 {
	src := rand.NewPCG(p.Seed, streamArrivals)
	if b := p.burstiness(); p.arrival() == Gamma && b != 1 {
		return distuv.Gamma{Alpha: b, Beta: p.Rate * b, Src: src}.Rand
	}
	rng := rand.New(src)
	return func() float64 { return rng.ExpFloat64() / p.Rate }
}

// expectedCount is about how many requests a rate plan schedules, for the size guard.
func (p Plan) expectedCount() float64 {
	if p.Rate == 0 {
		return float64(p.NumRequests)
	}
	return p.Rate * p.Duration.Seconds()
}

func (p Plan) arrival() Arrival {
	if p.Arrival == "" {
		return Poisson
	}
	return p.Arrival
}

func (p Plan) burstiness() float64 {
	if p.Burstiness == 0 {
		return 1
	}
	return p.Burstiness
}

func validArrival(a Arrival) error {
	switch a {
	case Poisson, Constant, Gamma:
		return nil
	}
	return fmt.Errorf("loadgen: arrival %q is not one of %s, %s, %s", a, Poisson, Constant, Gamma)
}
