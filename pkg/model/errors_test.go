package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// copyModel copies the golden qwen3 folder so a test can break it.
func copyModel(t *testing.T) string {
	t.Helper()
	src := filepath.Join(goldenDir, "models", "qwen3")
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func editConfig(t *testing.T, dir string, f func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	data, _ := os.ReadFile(path)
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	f(cfg)
	data, _ = json.Marshal(cfg)
	os.WriteFile(path, data, 0o644)
}

// TestBrokenModelFolders: every broken folder gives one error naming the
// file (and tensor), never a panic.
func TestBrokenModelFolders(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   []string
	}{
		{"unknown architecture", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["architectures"] = []string{"GPTNeoXForCausalLM"} })
		}, []string{"config.json", `"GPTNeoXForCausalLM" is not supported`, "Qwen3ForCausalLM"}},
		{"no config", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "config.json")) }, []string{"config.json"}},
		{"negative rms_norm_eps", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["rms_norm_eps"] = -1.0 })
		}, []string{"config.json", "rms_norm_eps must be positive, got -1"}},
		{"negative rope_theta", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["rope_theta"] = -10000.0 })
		}, []string{"config.json", "rope_theta must be positive, got -10000"}},
		{"config not json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o644)
		}, []string{"config.json", "not valid JSON"}},
		{"shape disagrees with config", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["intermediate_size"] = 96.0 })
		}, []string{"model.safetensors", "mlp.gate_proj.weight", "[128 64]", "[96 64]"}},
		{"missing tensor", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["num_hidden_layers"] = 4.0 })
		}, []string{"layer 3", "model.layers.3.input_layernorm.weight is missing"}},
		{"no weights", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "model.safetensors")) }, []string{"safetensors"}},
		{"weights are a Git LFS pointer", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte(safetensors.LFSPointerPrefix+"v1\noid sha256:abc\nsize 123\n"), 0o644)
		}, []string{"model.safetensors", "Git LFS pointer", "git lfs pull"}},
		{"weights a dangling link", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
			os.Symlink("../../blobs/abc123", filepath.Join(dir, "model.safetensors"))
		}, []string{"model.safetensors is a link to ../../blobs/abc123, which does not exist"}},
		{"PyTorch weights", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("PK"), 0o644)
		}, []string{"it holds pytorch_model.bin: only safetensors weights are read"}},
		{"header past the end", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "model.safetensors")
			data, _ := os.ReadFile(path)
			os.WriteFile(path, data[:len(data)/2], 0o644)
		}, []string{"model.safetensors"}},
		{"corrupt header", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "model.safetensors")
			data, _ := os.ReadFile(path)
			copy(data[8:], []byte("garbage!"))
			os.WriteFile(path, data, 0o644)
		}, []string{"model.safetensors"}},
		{"integer dtype", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "model.safetensors")
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var ts []safetensors.WriteTensor
			for _, n := range f.Names() {
				info, _ := f.Info(n)
				raw, _ := f.Raw(n)
				dt := info.DType
				if n == "model.norm.weight" {
					dt = safetensors.I32
				}
				ts = append(ts, safetensors.WriteTensor{Name: n, DType: dt, Shape: info.Shape, Data: append([]byte(nil), raw...)})
			}
			f.Close()
			if err := safetensors.Write(path, ts, nil); err != nil {
				t.Fatal(err)
			}
		}, []string{"model.norm.weight", "I32"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyModel(t)
			c.break_(t, dir)
			_, err := Load(dir, cpu.New(1), Options{})
			if err == nil {
				t.Fatal("loaded a broken model")
			}
			// Inspect (validate, placement) finds the same without loading.
			_, ierr := Inspect(dir)
			if ierr == nil {
				t.Fatal("Inspect passed a model Load refuses")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
				if w != "layer 3" && !strings.Contains(ierr.Error(), w) {
					t.Errorf("Inspect's error %q does not mention %q", ierr, w)
				}
			}
		})
	}
}

// TestTokenizerPastTheEmbedding: a tokenizer with more ids than the model has
// embedding rows is warned of (padding the other way is fine).
func TestTokenizerPastTheEmbedding(t *testing.T) {
	small, big := filepath.Join(t.TempDir(), "small"), filepath.Join(t.TempDir(), "big")
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab, s.VocabPad = 64, 128, 1, 4, 2, 16, 300, 0
	if err := tinymodel.Write(small, s); err != nil {
		t.Fatal(err)
	}
	if info, err := Inspect(small); err != nil || info.VocabWarning() != "" {
		t.Fatalf("a good model: %v, %q", err, info.VocabWarning())
	}
	s.TokVocab = 340
	if err := tinymodel.Write(big, s); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(big, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(small, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(small)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if w := info.VocabWarning(); !strings.Contains(w, "the tokenizer has 343 ids but the model only 303 embedding rows") {
		t.Errorf("a model with fewer rows than tokenizer ids: warning %q", w)
	}
}
