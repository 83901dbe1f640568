package model

import (
	"path/filepath"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// groupingCPU records what a backend.WeightGrouper hears: each announced
// group and the elements loaded after it.
type groupingCPU struct {
	fusedCPU
	announced, loaded []int64
	before            int64 // elements loaded before the first group
}

func (g *groupingCPU) GroupWeights(elems int64) {
	g.announced = append(g.announced, elems)
	g.loaded = append(g.loaded, 0)
}

func (g *groupingCPU) Load(shape []int, dt backend.DType, raw []byte) (backend.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	if len(g.loaded) > 0 {
		g.loaded[len(g.loaded)-1] += n
	} else {
		g.before += n
	}
	return g.fusedCPU.Load(shape, dt, raw)
}

// TestWeightGroups: before each decoder layer the loader announces exactly
// the elements that layer loads (stacked or not, with biases and q/k norms),
// for every architecture, from files and with random weights, and nothing
// else is announced.
func TestWeightGroups(t *testing.T) {
	check := func(name string, g *groupingCPU, layers int) {
		t.Helper()
		if len(g.announced) != layers {
			t.Fatalf("%s: %d groups announced for %d layers", name, len(g.announced), layers)
		}
		for i := range g.announced {
			// The last group also sees the final norm and the head, loaded after it.
			if i < layers-1 && g.loaded[i] != g.announced[i] || g.loaded[i] < g.announced[i] {
				t.Errorf("%s: layer %d announced %d elements, loaded %d", name, i, g.announced[i], g.loaded[i])
			}
		}
	}
	for _, name := range goldenModels {
		g := &groupingCPU{fusedCPU: fusedCPU{cpu.New(1)}}
		m, err := Load(filepath.Join(goldenDir, "models", name), g, Options{})
		if err != nil {
			t.Fatal(err)
		}
		check(name, g, m.Config.NumHiddenLayers)
		// Weights load in the order of the pass: the embedding before the
		// first layer, the final norm and the head after the last.
		c := m.Config
		if g.before != int64(c.VocabSize*c.HiddenSize) {
			t.Errorf("%s: %d elements loaded before the first layer, want the embedding's %d", name, g.before, c.VocabSize*c.HiddenSize)
		}
		head := int64(c.HiddenSize)
		if !c.Tied() {
			head += int64(c.VocabSize * c.HiddenSize)
		}
		if last := len(g.loaded) - 1; g.loaded[last] != g.announced[last]+head {
			t.Errorf("%s: the last group loaded %d elements, want its layer's %d and the norm and head's %d", name, g.loaded[last], g.announced[last], head)
		}
		// A shard: the groups are its layers only.
		g = &groupingCPU{fusedCPU: fusedCPU{cpu.New(1)}}
		if _, err := Load(filepath.Join(goldenDir, "models", name), g, Options{First: 1, Last: 2}); err != nil {
			t.Fatal(err)
		}
		if len(g.announced) != 1 || g.loaded[0] != g.announced[0] {
			t.Errorf("%s layers [1,2): announced %v, loaded %v", name, g.announced, g.loaded)
		}
	}
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Layers = 3
	if err := tinymodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	g := &groupingCPU{fusedCPU: fusedCPU{cpu.New(1)}}
	if _, err := Load(dir, g, Options{RandomWeights: true, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	check("random weights", g, 3)
}
