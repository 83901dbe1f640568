package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// The goldens are written by scripts/golden/make_golden.py (make golden):
// tiny random models saved by Hugging Face transformers and the logits and
// greedy tokens transformers computes for them.
const goldenDir = "../../testdata/golden"

type golden struct {
	Model     string `json:"model"`
	DiskDType string `json:"disk_dtype"`
	Prompts   []struct {
		Tokens        []int       `json:"tokens"`
		PrefillLogits [][]float32 `json:"prefill_logits"`
		Greedy        []int       `json:"greedy"`
		StepLogits    [][]float32 `json:"step_logits"`
	} `json:"prompts"`
}

var goldenModels = []string{"llama", "mistral", "qwen2", "qwen3", "qwen3-bf16"}

func readGolden(t *testing.T, name string) *golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Prompts) == 0 {
		t.Fatalf("%s: no prompts in golden file", name)
	}
	return &g
}

// tolerance: f32 weights agree to 1e-4; bf16 weights (upcast, computed in f32) to 1e-3.
func tolerance(g *golden) float64 {
	if g.DiskDType == "float32" {
		return 1e-4
	}
	return 1e-3
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func loadGolden(t *testing.T, name string, opts Options) *Model {
	t.Helper()
	m, err := Load(filepath.Join(goldenDir, "models", name), cpu.New(0), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func checkRows(t *testing.T, what string, got, want [][]float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows of logits, want %d", what, len(got), len(want))
	}
	for i := range want {
		if d := maxDiff(got[i], want[i]); d > tol {
			t.Errorf("%s: row %d: max |Δlogit| = %.3g > %.0g", what, i, d, tol)
		}
	}
}

// TestGoldenPrefill: the logits of every prompt position, one sequence at a time.
func TestGoldenPrefill(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			m := loadGolden(t, name, Options{})
			for pi, p := range g.Prompts {
				cache := m.NewCache(kvcache.Options{})
				res, err := m.Forward([]Seq{{Cache: cache, Tokens: p.Tokens, AllLogits: true}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				checkRows(t, fmt.Sprintf("prompt %d", pi), res.Logits[0], p.PrefillLogits, tolerance(g))
			}
		})
	}
}

// TestGoldenGreedyDecode: prefill, then one cached step per token; the tokens
// must equal transformers' generate() and the logits of each step agree.
func TestGoldenGreedyDecode(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			m := loadGolden(t, name, Options{})
			for pi, p := range g.Prompts {
				cache := m.NewCache(kvcache.Options{})
				in := p.Tokens
				var got []int
				var logits [][]float32
				for len(got) < len(p.Greedy) {
					res, err := m.Forward([]Seq{{Cache: cache, Tokens: in}}, nil)
					if err != nil {
						t.Fatal(err)
					}
					row := res.Logits[0][0]
					logits = append(logits, row)
					tok := argmax(row)
					got = append(got, tok)
					in = []int{tok}
				}
				if fmt.Sprint(got) != fmt.Sprint(p.Greedy) {
					t.Errorf("prompt %d: greedy %v, transformers %v", pi, got, p.Greedy)
				}
				checkRows(t, fmt.Sprintf("prompt %d steps", pi), logits, p.StepLogits, tolerance(g))
				if cache.Len() != len(p.Tokens)+len(p.Greedy)-1 {
					t.Errorf("cache holds %d positions, want %d", cache.Len(), len(p.Tokens)+len(p.Greedy)-1)
				}
			}
		})
	}
}

// teacherForced returns, for prompt p, the token stream prompt+greedy and the
// golden logits for each position after the prompt's last-but-one.
func decodeBatched(t *testing.T, m *Model, g *golden) {
	t.Helper()
	n := len(g.Prompts)
	caches := make([]*kvcache.Seq, n)
	seqs := make([]Seq, n)
	for i, p := range g.Prompts {
		caches[i] = m.NewCache(kvcache.Options{})
		seqs[i] = Seq{Cache: caches[i], Tokens: p.Tokens}
	}
	steps := len(g.Prompts[0].Greedy)
	for s := 0; s < steps; s++ {
		res, err := m.Forward(seqs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range g.Prompts {
			if d := maxDiff(res.Logits[i][0], p.StepLogits[s]); d > tolerance(g) {
				t.Errorf("step %d seq %d: max |Δlogit| = %.3g", s, i, d)
			}
			if tok := argmax(res.Logits[i][0]); tok != p.Greedy[s] {
				t.Errorf("step %d seq %d: token %d, want %d", s, i, tok, p.Greedy[s])
			}
			seqs[i].Tokens = []int{p.Greedy[s]} // teacher-forced: the golden token
		}
	}
}

// TestGoldenBatchedMixedLengths runs all prompts (different lengths, so
// different cache positions) as one batch per step.
func TestGoldenBatchedMixedLengths(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			decodeBatched(t, loadGolden(t, name, Options{}), g)
		})
	}
}

// TestGoldenShardsChained: layers [0,k) then [k,n) in two shards equal the whole model.
func TestGoldenShardsChained(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			whole := loadGolden(t, name, Options{})
			n := whole.Config.NumHiddenLayers
			for k := 1; k < n; k++ {
				a := loadGolden(t, name, Options{First: 0, Last: k})
				b := loadGolden(t, name, Options{First: k, Last: n})
				if a.IsLast() || !a.IsFirst() || b.IsFirst() || !b.IsLast() {
					t.Fatalf("split at %d: first/last flags wrong", k)
				}
				if a.head != nil || b.embed != nil && !b.Config.Tied() {
					t.Errorf("split at %d: a shard holds tensors outside its range", k)
				}
				for pi, p := range g.Prompts {
					ca, cb := a.NewCache(kvcache.Options{}), b.NewCache(kvcache.Options{})
					in := p.Tokens
					for s := 0; s < 4; s++ {
						ra, err := a.Forward([]Seq{{Cache: ca, Tokens: in}}, nil)
						if err != nil {
							t.Fatal(err)
						}
						rb, err := b.Forward([]Seq{{Cache: cb, N: len(in), AllLogits: s == 0}}, ra.Hidden)
						if err != nil {
							t.Fatal(err)
						}
						if s == 0 {
							checkRows(t, fmt.Sprintf("split %d prompt %d prefill", k, pi), rb.Logits[0], p.PrefillLogits, tolerance(g))
						} else if d := maxDiff(rb.Logits[0][0], p.StepLogits[s]); d > tolerance(g) {
							t.Errorf("split %d prompt %d step %d: max |Δlogit| = %.3g", k, pi, s, d)
						}
						in = []int{p.Greedy[s]}
					}
				}
			}
		})
	}
}

// TestGoldenTruncateThenContinue: feed the prompt plus junk, roll the cache
// back to the prompt, and continue: the result must be as if the junk had
// never been seen (the speculative rollback).
func TestGoldenTruncateThenContinue(t *testing.T) {
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, name)
			m := loadGolden(t, name, Options{})
			for pi, p := range g.Prompts {
				cache := m.NewCache(kvcache.Options{})
				junk := []int{9, 99, 199, 299, 3}
				if _, err := m.Forward([]Seq{{Cache: cache, Tokens: append(append([]int{}, p.Tokens...), junk...)}}, nil); err != nil {
					t.Fatal(err)
				}
				if err := cache.Truncate(len(p.Tokens) - 1); err != nil {
					t.Fatal(err)
				}
				in := []int{p.Tokens[len(p.Tokens)-1]}
				for s := 0; s < len(p.Greedy); s++ {
					res, err := m.Forward([]Seq{{Cache: cache, Tokens: in}}, nil)
					if err != nil {
						t.Fatal(err)
					}
					if d := maxDiff(res.Logits[0][0], p.StepLogits[s]); d > tolerance(g) {
						t.Errorf("prompt %d step %d after truncate: max |Δlogit| = %.3g", pi, s, d)
					}
					in = []int{p.Greedy[s]}
				}
			}
		})
	}
}
