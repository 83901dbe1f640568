package tinymodel

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/tokenizer"
)

func small(arch string) Spec {
	s := Default()
	s.Arch, s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = arch, 32, 64, 4, 4, 2, 8, 300
	return s
}

func TestWriteLoadsForEveryArchitecture(t *testing.T) {
	for _, arch := range model.Architectures() {
		t.Run(arch, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, small(arch)); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(dir, cpu.New(1), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			tk, err := tokenizer.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer tk.Close()
			if m.Config.VocabSize != tk.VocabSize()+Default().VocabPad {
				t.Errorf("embedding rows %d, tokenizer ids %d: want %d rows of padding", m.Config.VocabSize, tk.VocabSize(), Default().VocabPad)
			}
			if len(tk.EOS()) == 0 {
				t.Error("no EOS id")
			}
			ids, _ := tk.Encode("Speculative decoding is fast.")
			s := m.NewSession()
			rows, err := s.Feed(ids, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || len(rows[0]) != m.Config.VocabSize {
				t.Fatalf("logits shape %d×%d", len(rows), len(rows[0]))
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := Write(d, small("Qwen3ForCausalLM")); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"model.safetensors", "tokenizer.json", "config.json"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two writes with the same seed", f)
		}
	}
}

// The drafter keeps the target's first layers, embeddings and head bit for bit.
func TestDrafterSharesTargetTensors(t *testing.T) {
	target, drafter := t.TempDir(), t.TempDir()
	if err := Write(target, small("Qwen3ForCausalLM")); err != nil {
		t.Fatal(err)
	}
	if err := WriteDrafter(target, drafter, 2); err != nil {
		t.Fatal(err)
	}
	ts, err := safetensors.OpenFolder(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	ds, err := safetensors.OpenFolder(drafter)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	for _, name := range ds.Names() {
		x, _ := ts.Raw(name)
		y, _ := ds.Raw(name)
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs from the target's", name)
		}
	}
	if _, ok := ds.Info("model.layers.2.mlp.up_proj.weight"); ok {
		t.Error("drafter holds layer 2")
	}
	m, err := model.Load(drafter, cpu.New(1), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.NumHiddenLayers != 2 {
		t.Errorf("drafter has %d layers", m.Config.NumHiddenLayers)
	}
	if err := WriteDrafter(target, t.TempDir(), 9); err == nil {
		t.Error("a drafter deeper than its target must be refused")
	}
}
