package model

import (
	"path/filepath"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// Random weights depend only on the seed and the tensor name: two shards of a
// random model chained give exactly the whole random model's logits, and
// another seed gives other logits.
func TestRandomWeightsAreShardable(t *testing.T) {
	dir := filepath.Join(goldenDir, "models", "qwen3")
	be := cpu.New(1)
	load := func(o Options) *Model {
		o.RandomWeights = true
		m, err := Load(dir, be, o)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	whole, a, b := load(Options{Seed: 7}), load(Options{Seed: 7, Last: 1}), load(Options{Seed: 7, First: 1})
	other := load(Options{Seed: 8})
	prompt := []int{1, 2, 3, 4}
	rw, err := whole.Forward([]Seq{{Cache: whole.NewCache(kvcache.Options{}), Tokens: prompt}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := a.Forward([]Seq{{Cache: a.NewCache(kvcache.Options{}), Tokens: prompt}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Forward([]Seq{{Cache: b.NewCache(kvcache.Options{}), N: len(prompt)}}, ra.Hidden)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(rw.Logits[0][0], rb.Logits[0][0]); d != 0 {
		t.Errorf("chained random shards differ from the whole random model by %g", d)
	}
	ro, err := other.Forward([]Seq{{Cache: other.NewCache(kvcache.Options{}), Tokens: prompt}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(rw.Logits[0][0], ro.Logits[0][0]); d == 0 {
		t.Error("seeds 7 and 8 gave the same model")
	}
}
