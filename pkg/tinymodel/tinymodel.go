// Package tinymodel writes small models in the real Hugging Face on-disk
// format (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json, generation_config.json) with seeded random weights,
// so the quickstart and the tests run without downloading anything.
//
// A drafter for speculative decoding is made from a target by keeping its
// first layers and its embeddings, final norm and LM head: the two models then
// share a tokenizer and agree often, as a real drafter/target pair does.
package tinymodel

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/tokenizer"
)

// Spec describes a tiny model.
type Spec struct {
	Arch         string // LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM
	Hidden       int
	Intermediate int
	Layers       int
	Heads        int
	KVHeads      int
	HeadDim      int // 0: Hidden/Heads
	TokVocab     int // ids the tokenizer produces (bytes + merges), before special tokens
	VocabPad     int // extra embedding rows past the tokenizer's ids, like Qwen's padding
	DType        string
	Tied         bool
	Seed         uint64
	MaxPos       int
}

// Default is the quickstart target: Qwen3-shaped, bf16 on disk, a vocabulary
// padded past the tokenizer as Qwen's is.
func Default() Spec {
	return Spec{Arch: "Qwen3ForCausalLM", Hidden: 512, Intermediate: 1536, Layers: 12, Heads: 8, KVHeads: 4, HeadDim: 64,
		TokVocab: 1024, VocabPad: 21, DType: "BF16", Tied: false, Seed: 42, MaxPos: 4096}
}

var specials = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}

// Write creates dir and writes the model.
func Write(dir string, s Spec) error {
	if s.HeadDim == 0 && s.Heads > 0 {
		s.HeadDim = s.Hidden / s.Heads
	}
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	if s.MaxPos == 0 {
		s.MaxPos = 4096
	}
	if s.Hidden <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.Intermediate <= 0 || s.Heads%s.KVHeads != 0 || s.HeadDim%2 != 0 {
		return fmt.Errorf("tinymodel: inconsistent spec %+v", s)
	}
	dt := safetensors.DType(strings.ToUpper(s.DType))
	if dt == "" {
		dt = safetensors.BF16
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tokJSON, err := tokenizer.TrainByteLevelBPE(Corpus, s.TokVocab, specials)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON, 0o644); err != nil {
		return err
	}
	tok, err := tokenizer.FromFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return err
	}
	tokSize := tok.VocabSize()
	eos := tok.SpecialTokens()["<|endoftext|>"]
	imEnd := tok.SpecialTokens()["<|im_end|>"]
	tok.Close()
	vocab := tokSize + s.VocabPad

	rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	var tensors []safetensors.WriteTensor
	add := func(name string, std, mean float64, shape ...int) error {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(mean + std*rng.NormFloat64())
		}
		raw, err := safetensors.FromFloat32(dt, v)
		if err != nil {
			return err
		}
		tensors = append(tensors, safetensors.WriteTensor{Name: name, DType: dt, Shape: shape, Data: raw})
		return nil
	}
	H, I := s.Hidden, s.Intermediate
	qw, kvw := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	// Large embeddings and small layer weights keep the residual stream close
	// to the embedding, so early layers already predict much of what the full
	// stack does: a drafter of the first layers then gets real acceptance.
	std := 1 / math.Sqrt(float64(H))
	if err := add("model.embed_tokens.weight", 1, 0, vocab, H); err != nil {
		return err
	}
	if err := add("model.norm.weight", 0.05, 1, H); err != nil {
		return err
	}
	if !s.Tied {
		if err := add("lm_head.weight", std, 0, vocab, H); err != nil {
			return err
		}
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ws := []struct {
			name      string
			std, mean float64
			shape     []int
		}{
			{p + "input_layernorm.weight", 0.05, 1, []int{H}},
			{p + "post_attention_layernorm.weight", 0.05, 1, []int{H}},
			{p + "self_attn.q_proj.weight", std, 0, []int{qw, H}},
			{p + "self_attn.k_proj.weight", std, 0, []int{kvw, H}},
			{p + "self_attn.v_proj.weight", std, 0, []int{kvw, H}},
			{p + "self_attn.o_proj.weight", std / 24, 0, []int{H, qw}},
			{p + "mlp.gate_proj.weight", std, 0, []int{I, H}},
			{p + "mlp.up_proj.weight", std, 0, []int{I, H}},
			{p + "mlp.down_proj.weight", std / 24, 0, []int{H, I}},
		}
		if s.Arch == "Qwen2ForCausalLM" {
			ws = append(ws, []struct {
				name      string
				std, mean float64
				shape     []int
			}{
				{p + "self_attn.q_proj.bias", 0.02, 0, []int{qw}},
				{p + "self_attn.k_proj.bias", 0.02, 0, []int{kvw}},
				{p + "self_attn.v_proj.bias", 0.02, 0, []int{kvw}},
			}...)
		}
		if s.Arch == "Qwen3ForCausalLM" {
			ws = append(ws, []struct {
				name      string
				std, mean float64
				shape     []int
			}{
				{p + "self_attn.q_norm.weight", 0.05, 1, []int{s.HeadDim}},
				{p + "self_attn.k_norm.weight", 0.05, 1, []int{s.HeadDim}},
			}...)
		}
		for _, w := range ws {
			if err := add(w.name, w.std, w.mean, w.shape...); err != nil {
				return err
			}
		}
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}

	dtypeName := map[safetensors.DType]string{safetensors.BF16: "bfloat16", safetensors.F16: "float16", safetensors.F32: "float32"}[dt]
	cfg := map[string]any{
		"architectures":           []string{s.Arch},
		"model_type":              modelType(s.Arch),
		"hidden_size":             H,
		"intermediate_size":       I,
		"num_hidden_layers":       s.Layers,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"head_dim":                s.HeadDim,
		"hidden_act":              "silu",
		"rms_norm_eps":            1e-6,
		"vocab_size":              vocab,
		"max_position_embeddings": s.MaxPos,
		"rope_theta":              1000000.0,
		"tie_word_embeddings":     s.Tied,
		"attention_bias":          false,
		"torch_dtype":             dtypeName,
		"bos_token_id":            eos,
		"eos_token_id":            eos,
		"initializer_range":       0.02,
		"use_cache":               true,
		"draftbench_tiny":         map[string]any{"seed": s.Seed, "note": "random weights written by draftbench's tinymodel"},
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "generation_config.json"), map[string]any{
		"bos_token_id": eos, "eos_token_id": []int{imEnd, eos}, "do_sample": false,
	}); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "tokenizer_config.json"), map[string]any{
		"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
		"bos_token": nil, "add_bos_token": false, "model_max_length": s.MaxPos,
	})
}

func modelType(arch string) string {
	return map[string]string{"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}[arch]
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// WriteDrafter writes into dir a model made of the first layers of the model
// in targetDir, sharing its embeddings, final norm, LM head and tokenizer.
func WriteDrafter(targetDir, dir string, layers int) error {
	data, err := os.ReadFile(filepath.Join(targetDir, "config.json"))
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(targetDir, "config.json"), err)
	}
	total, _ := cfg["num_hidden_layers"].(float64)
	if layers <= 0 || layers > int(total) {
		return fmt.Errorf("tinymodel: drafter of %d layers from a target of %v", layers, total)
	}
	src, err := safetensors.OpenFolder(targetDir)
	if err != nil {
		return err
	}
	defer src.Close()
	var tensors []safetensors.WriteTensor
	for _, name := range src.Names() {
		var l int
		if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil && l >= layers {
			continue
		}
		info, _ := src.Info(name)
		raw, err := src.Raw(name)
		if err != nil {
			return err
		}
		tensors = append(tensors, safetensors.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	cfg["num_hidden_layers"] = layers
	if err := writeJSON(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		data, err := os.ReadFile(filepath.Join(targetDir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
