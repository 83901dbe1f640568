package model

import (
	"math"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// TestBatchInvariance: on the CPU backend a sequence's logits are bit for
// bit the same whether it runs alone or batched with others of any length,
// at any thread count. The lossless check depends on it: speculative
// (verify steps of gamma+1 rows, batched with other sessions) and AR
// (single rows) must compute each token's logits the same way, or a
// near-tie could flip a greedy choice and be reported as a mismatch.
func TestBatchInvariance(t *testing.T) {
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 96, 160, 2, 6, 2, 16, 300
	if err := tinymodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	prompts := [][]int{{1, 2, 3, 4, 5}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {42}}
	run := func(threads int, batched bool) [][][]float32 {
		m, err := Load(dir, cpu.New(threads), Options{})
		if err != nil {
			t.Fatal(err)
		}
		caches := make([]*kvcache.Seq, len(prompts))
		for i := range caches {
			caches[i] = m.NewCache(kvcache.Options{})
		}
		out := make([][][]float32, len(prompts))
		step := func(seqs []Seq, idx []int) {
			res, err := m.Forward(seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			for j, i := range idx {
				out[i] = append(out[i], res.Logits[j]...)
			}
		}
		feeds := [][][]int{prompts, {{3, 1, 4}, {1}, {5, 9, 2, 6, 5}}, {{7}, {7}, {7}}}
		for _, feed := range feeds {
			if batched {
				var seqs []Seq
				var idx []int
				for i, toks := range feed {
					seqs = append(seqs, Seq{Cache: caches[i], Tokens: toks, AllLogits: true})
					idx = append(idx, i)
				}
				step(seqs, idx)
			} else {
				for i, toks := range feed {
					step([]Seq{{Cache: caches[i], Tokens: toks, AllLogits: true}}, []int{i})
				}
			}
		}
		return out
	}
	want := run(1, false)
	for _, c := range []struct {
		threads int
		batched bool
	}{{1, true}, {2, false}, {2, true}, {3, true}} {
		got := run(c.threads, c.batched)
		for i := range want {
			for r := range want[i] {
				for v := range want[i][r] {
					if math.Float32bits(got[i][r][v]) != math.Float32bits(want[i][r][v]) {
						t.Fatalf("threads %d batched %v: sequence %d row %d logit %d: %v, alone on one thread %v",
							c.threads, c.batched, i, r, v, got[i][r][v], want[i][r][v])
					}
				}
			}
		}
	}
}

// TestChunkInvariance: a position's logits are the same whether its token
// came in a chunk (a prefill, a verify step) or alone (a decode step).
func TestChunkInvariance(t *testing.T) {
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 96, 160, 2, 6, 2, 16, 300
	if err := tinymodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, cpu.New(2), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int{5, 17, 200, 31, 9, 9, 120, 44, 3, 250, 77, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	chunk := m.NewCache(kvcache.Options{})
	res, err := m.Forward([]Seq{{Cache: chunk, Tokens: tokens, AllLogits: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	one := m.NewCache(kvcache.Options{})
	for p, tok := range tokens {
		r, err := m.Forward([]Seq{{Cache: one, Tokens: []int{tok}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for v := range r.Logits[0][0] {
			if math.Float32bits(r.Logits[0][0][v]) != math.Float32bits(res.Logits[0][p][v]) {
				t.Fatalf("position %d logit %d: %v one at a time, %v in a chunk of %d", p, v, r.Logits[0][0][v], res.Logits[0][p][v], len(tokens))
			}
		}
	}
}
