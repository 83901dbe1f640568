package spec_test

import (
	"math"
	"slices"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
	engine "github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// enginePair writes a small target and a drafter of its first layer.
func enginePair(t *testing.T) (*engine.Model, *engine.Model) {
	t.Helper()
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 64, 128, 3, 4, 2, 16, 300
	if err := tinymodel.Write(dir+"/t", s); err != nil {
		t.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(dir+"/t", dir+"/d", 1); err != nil {
		t.Fatal(err)
	}
	be := cpu.New(1)
	target, err := engine.Load(dir+"/t", be, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	drafter, err := engine.Load(dir+"/d", be, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return target, drafter
}

// rows reads the first n rows of every layer's K and V.
func rows(t *testing.T, m *engine.Model, c *kvcache.Seq, n int) [][]float32 {
	t.Helper()
	var out [][]float32
	for l := 0; l < c.Layers(); l++ {
		k, v := c.Layer(l)
		for _, x := range []backend.Tensor{k, v} {
			all := make([]float32, backend.Elems(x))
			if err := m.Backend().Read(x, all); err != nil {
				t.Fatal(err)
			}
			out = append(out, all[:n*backend.Cols(x)])
		}
	}
	return out
}

// TestRollbackLeavesCachesAsIfBuiltFromScratch runs speculative generation on
// the real engine and then checks that both KV caches hold, bit for bit, what
// feeding the accepted tokens one at a time from an empty cache gives: no
// trace of rejected drafts, no position lost or doubled.
func TestRollbackLeavesCachesAsIfBuiltFromScratch(t *testing.T) {
	target, drafter := enginePair(t)
	for _, c := range []struct {
		name   string
		params sampling.Params
		gamma  int
	}{
		{"greedy gamma 3", sampling.Params{}, 3},
		{"greedy gamma 6", sampling.Params{}, 6},
		{"sampled gamma 4", sampling.Params{Temperature: 1, TopP: 0.9}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			prompt := []int{3, 1, 4, 1, 5, 9, 2, 6}
			ts, ds := target.NewSession(), drafter.NewSession()
			defer ts.Close()
			defer ds.Close()
			out, err := spec.GenerateSpeculative(ts, ds, prompt, spec.Config{MaxNewTokens: 40, Gamma: c.gamma, Params: c.params, IgnoreEOS: true}, sampling.NewRNG(11))
			if err != nil {
				t.Fatal(err)
			}
			rejected := 0
			for _, r := range out.Rounds {
				if r.Accepted < r.Gamma {
					rejected++
				}
			}
			if rejected == 0 {
				t.Fatal("no round rejected a draft: the test would not exercise a rollback")
			}
			seq := append(slices.Clone(prompt), out.Tokens...)
			for _, side := range []struct {
				name string
				m    *engine.Model
				s    *engine.Session
			}{{"target", target, ts}, {"drafter", drafter, ds}} {
				n := side.s.Len()
				ref := side.m.NewSession()
				// The same prefill, then one token at a time.
				if _, err := ref.Feed(prompt, false); err != nil {
					t.Fatal(err)
				}
				for _, tok := range seq[len(prompt):n] {
					if _, err := ref.Feed([]int{tok}, false); err != nil {
						t.Fatal(err)
					}
				}
				got, want := rows(t, side.m, side.s.Cache(), n), rows(t, side.m, ref.Cache(), n)
				for i := range want {
					for j := range want[i] {
						if math.Float32bits(got[i][j]) != math.Float32bits(want[i][j]) {
							t.Fatalf("%s cache (%d positions) differs from one built from scratch: tensor %d element %d: %v vs %v",
								side.name, n, i, j, got[i][j], want[i][j])
						}
					}
				}
				ref.Close()
			}
			if ts.Len() != len(seq)-1 {
				t.Errorf("target holds %d positions, want %d", ts.Len(), len(seq)-1)
			}
		})
	}
}

// TestEngineSamplingMatchesAR: on the real engine, the joint distribution of
// the first three generated tokens under speculative sampling equals plain
// AR sampling of the target (chi-square test of homogeneity at Alpha).
func TestEngineSamplingMatchesAR(t *testing.T) {
	target, drafter := enginePair(t)
	params := sampling.Params{Temperature: 0.8, TopK: 12}
	const n = 3000
	cells := map[[3]int]int{}
	count := func(mode string, seed uint64) map[int]int {
		rng := sampling.NewRNG(seed)
		out := map[int]int{}
		for i := 0; i < n; i++ {
			ts := target.NewSession()
			cfg := spec.Config{MaxNewTokens: 3, Gamma: 2, Params: params, IgnoreEOS: true}
			var res spec.Output
			var err error
			if mode == "ar" {
				res, err = spec.GenerateAR(ts, []int{7, 8, 9}, cfg, rng)
			} else {
				ds := drafter.NewSession()
				res, err = spec.GenerateSpeculative(ts, ds, []int{7, 8, 9}, cfg, rng)
				ds.Close()
			}
			ts.Close()
			if err != nil {
				t.Fatal(err)
			}
			k := [3]int{res.Tokens[0], res.Tokens[1], res.Tokens[2]}
			if _, ok := cells[k]; !ok {
				cells[k] = len(cells)
			}
			out[cells[k]]++
		}
		return out
	}
	ar, sp := count("ar", 1), count("spec", 2)
	a, b := make([]int, len(cells)), make([]int, len(cells))
	for c, v := range ar {
		a[c] = v
	}
	for c, v := range sp {
		b[c] = v
	}
	if p := spec.TwoSamplePValue(a, b); p < spec.Alpha {
		t.Errorf("speculative and AR token distributions differ: p = %.3g < %g", p, spec.Alpha)
	}
	// Negative control: AR at another temperature must be told apart.
	params.Temperature = 1.3
	hot := count("ar", 3)
	c := make([]int, len(cells))
	a = make([]int, len(cells))
	for k, v := range ar {
		a[k] = v
	}
	for k, v := range hot {
		c[k] = v
	}
	if p := spec.TwoSamplePValue(a, c); p >= spec.Alpha {
		t.Errorf("the test cannot tell temperature 0.8 from 1.3 (p = %.3g): it has no power", p)
	}
}
