package spec

import (
	"testing"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// jointCounts generates n sequences of 3 tokens and counts the joint
// outcomes of tokens (1,2) and of tokens (2,3), vocab² cells each.
func jointCounts(t *testing.T, n int, gen func(rng sampling.RNG) ([]int, error), seed uint64) (first, second []int) {
	t.Helper()
	first, second = make([]int, vocab*vocab), make([]int, vocab*vocab)
	rng := sampling.NewRNG(seed)
	for range n {
		toks, err := gen(rng)
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) != 3 {
			t.Fatalf("generated %v, want 3 tokens", toks)
		}
		first[toks[0]*vocab+toks[1]]++
		second[toks[1]*vocab+toks[2]]++
	}
	return first, second
}

func arGen(prompt []int, p sampling.Params) func(sampling.RNG) ([]int, error) {
	return func(rng sampling.RNG) ([]int, error) {
		out, err := GenerateAR(newFake(targetModel, vocab), prompt, Config{MaxNewTokens: 3, Params: p}, rng)
		return out.Tokens, err
	}
}

// TestSpeculativeMatchesARDistribution is the end-to-end lossless check:
// the first generated tokens of speculative sampling and of plain sampling
// from the target come from the same distribution, for drafters that agree
// partly or not at all, with truncated and whole q. The second and third
// tokens both come out of round 1, so its acceptance, correction, bonus and
// the rollback between them all count. Chi-square test of homogeneity at
// level alpha over 30k sequences per mode.
func TestSpeculativeMatchesARDistribution(t *testing.T) {
	const n = 30_000
	prompt := []int{1, 2, 3}
	tests := []struct {
		name      string
		drafter   model
		p         sampling.Params
		gamma     int
		draftTopK int
	}{
		{"temperature 1, partial drafter", partialModel, sampling.Params{Temperature: 1}, 3, 0},
		{"top-k and top-p, q cut to 3 ids", partialModel, sampling.Params{Temperature: 0.8, TopK: 6, TopP: 0.9}, 2, 3},
		{"hot, random drafter", randomModel, sampling.Params{Temperature: 1.3}, 4, 0},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specGen := func(rng sampling.RNG) ([]int, error) {
				cfg := Config{MaxNewTokens: 3, Gamma: tt.gamma, Params: tt.p, DraftTopK: tt.draftTopK}
				out, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(tt.drafter, vocab), prompt, cfg, rng)
				return out.Tokens, err
			}
			seed := uint64(1000 + 10*ti)
			s1, s2 := jointCounts(t, n, specGen, seed)
			a1, a2 := jointCounts(t, n, arGen(prompt, tt.p), seed+1)
			for i, pair := range [][2][]int{{s1, a1}, {s2, a2}} {
				pv := twoSamplePValue(pair[0], pair[1])
				t.Logf("tokens %d-%d: p-value %.3g", i+1, i+2, pv)
				if pv < alpha {
					t.Errorf("tokens %d-%d: speculative and AR differ (p-value %.3g)", i+1, i+2, pv)
				}
			}
		})
	}
}

// TestDistributionTestHasPower is the negative control for the test above:
// AR at two temperatures 15% apart must be told apart by a wide margin.
func TestDistributionTestHasPower(t *testing.T) {
	const n = 30_000
	prompt := []int{1, 2, 3}
	a, _ := jointCounts(t, n, arGen(prompt, sampling.Params{Temperature: 1}), 1)
	b, _ := jointCounts(t, n, arGen(prompt, sampling.Params{Temperature: 1.15}), 2)
	pv := twoSamplePValue(a, b)
	t.Logf("p-value %.3g", pv)
	if pv > 1e-9 {
		t.Fatalf("temperatures 1 and 1.15 look alike (p-value %.3g)", pv)
	}
}
