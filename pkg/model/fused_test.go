package model

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// fusedCPU is the CPU backend with the fused operations of a GPU backend
// (done on the host), so the model's stacked-weight path runs here.
type fusedCPU struct{ *cpu.Backend }

func (f fusedCPU) FinishQKV(q, qkv, qNorm, kNorm backend.Tensor, eps float32, positions []int32, r *backend.RoPE,
	a backend.Attn, seqs []backend.AttnSeq) error {
	return backend.FinishQKVOnHost(f.Backend, q, qkv, qNorm, kNorm, eps, positions, r, a, seqs)
}

func (f fusedCPU) SwiGLUPair(dst, gu backend.Tensor) error {
	return backend.SwiGLUPairOnHost(f.Backend, dst, gu)
}

// TestGoldenFusedLayers: with stacked q|k|v and gate|up weights (what the
// CUDA backend loads), every golden's prefill logits, greedy tokens and step
// logits still agree with transformers, one sequence and a mixed batch.
func TestGoldenFusedLayers(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			m, err := Load(filepath.Join(goldenDir, "models", name), fusedCPU{cpu.New(0)}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i, ly := range m.layers {
				if ly.qkv == nil || ly.gateUp == nil || ly.q != nil || ly.gate != nil {
					t.Fatalf("layer %d was not stacked", i)
				}
				if (ly.qkvBias != nil) != (m.Arch.QKVBias || m.Config.AttentionBias) {
					t.Fatalf("layer %d: qkv bias %v", i, ly.qkvBias != nil)
				}
			}
			for pi, p := range g.Prompts {
				cache := m.NewCache(kvcache.Options{})
				res, err := m.Forward([]Seq{{Cache: cache, Tokens: p.Tokens, AllLogits: true}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				checkRows(t, fmt.Sprintf("prompt %d", pi), res.Logits[0], p.PrefillLogits, tolerance(g))
				var got []int
				in := []int{argmax(res.Logits[0][len(p.Tokens)-1])}
				got = append(got, in[0])
				for len(got) < len(p.Greedy) {
					res, err := m.Forward([]Seq{{Cache: cache, Tokens: in}}, nil)
					if err != nil {
						t.Fatal(err)
					}
					in = []int{argmax(res.Logits[0][0])}
					got = append(got, in[0])
				}
				if fmt.Sprint(got) != fmt.Sprint(p.Greedy) {
					t.Errorf("prompt %d: greedy %v, transformers %v", pi, got, p.Greedy)
				}
				cache.Free()
			}
			decodeBatched(t, m, g)
		})
	}
}

// TestStackedRandomWeights: random weights load stacked too, and the
// parameter count is the model's, whichever form the layers take.
func TestStackedRandomWeights(t *testing.T) {
	dir := filepath.Join(goldenDir, "models", "qwen2")
	apart, err := Load(dir, cpu.New(0), Options{RandomWeights: true, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	stacked, err := Load(dir, fusedCPU{cpu.New(0)}, Options{RandomWeights: true, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stacked.layers[0].qkv == nil || stacked.layers[0].gateUp == nil {
		t.Fatal("random weights were not stacked")
	}
	if apart.Parameters() != stacked.Parameters() || apart.WeightBytes() != stacked.WeightBytes() {
		t.Errorf("parameters %d vs %d, bytes %d vs %d", apart.Parameters(), stacked.Parameters(), apart.WeightBytes(), stacked.WeightBytes())
	}
	res, err := stacked.Forward([]Seq{{Cache: stacked.NewCache(kvcache.Options{}), Tokens: []int{1, 2, 3}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res.Logits[0][0] {
		if v != v {
			t.Fatal("NaN logits from stacked random weights")
		}
	}
}

// graphCPU records the step keys the model hands a step grapher.
type graphCPU struct {
	fusedCPU
	keys []string
}

func (g *graphCPU) GraphStep(key func() string, f func() error) error {
	g.keys = append(g.keys, key())
	return f()
}

// TestStepGraphKeys: decode steps of one shape share a key (so a graph is
// replayed), another shape gets another, and long prefills go without.
func TestStepGraphKeys(t *testing.T) {
	g := &graphCPU{fusedCPU: fusedCPU{cpu.New(0)}}
	m, err := Load(filepath.Join(goldenDir, "models", "qwen3"), g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	prompt := make([]int, 40)
	for i := range prompt {
		prompt[i] = i + 1
	}
	a, b := m.NewCache(kvcache.Options{}), m.NewCache(kvcache.Options{})
	if _, err := m.Forward([]Seq{{Cache: a, Tokens: prompt}}, nil); err != nil {
		t.Fatal(err)
	}
	if len(g.keys) != 0 {
		t.Fatalf("a 40-token prefill went through the step grapher: %v", g.keys)
	}
	if _, err := m.Forward([]Seq{{Cache: b, Tokens: prompt[:5]}}, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := m.Forward([]Seq{{Cache: a, Tokens: []int{7}}, {Cache: b, Tokens: []int{8}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Forward([]Seq{{Cache: a, Tokens: []int{1, 2, 3}, AllLogits: true}, {Cache: b, Tokens: []int{9}}}, nil); err != nil {
		t.Fatal(err)
	}
	k := g.keys
	if len(k) != 5 || k[1] != k[2] || k[2] != k[3] || k[0] == k[1] || k[4] == k[3] {
		t.Errorf("keys %q: want a short prefill, three equal decode steps, then a verify step", k)
	}
}
