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
