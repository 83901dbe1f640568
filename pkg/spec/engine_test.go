package spec_test

import (
	"math"
	"slices"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// enginePair writes a small target and a drafter of its first layer.
func enginePair(t *testing.T) (*model.Model, *model.Model) {
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
	target, err := model.Load(dir+"/t", be, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	drafter, err := model.Load(dir+"/d", be, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return target, drafter
}

// rows reads the first n rows of every layer's K and V.
func rows(t *testing.T, m *model.Model, c *kvcache.Seq, n int) [][]float32 {
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
				m    *model.Model
				s    *model.Session
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
