package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/tokenizer"
)

// Info describes a model folder without loading its weights.
type Info struct {
	Path             string   `json:"path"`
	Architecture     string   `json:"architecture"`
	Parameters       int64    `json:"parameters"`
	DType            string   `json:"dtype"`
	DTypes           []string `json:"dtypes"` // of the tensors on disk
	Bytes            int64    `json:"bytes"`
	Layers           int      `json:"layers"`
	HiddenSize       int      `json:"hidden_size"`
	IntermediateSize int      `json:"intermediate_size"`
	Heads            int      `json:"heads"`
	KVHeads          int      `json:"kv_heads"`
	HeadDim          int      `json:"head_dim"`
	VocabSize        int      `json:"vocab_size"`
	TokenizerVocab   int      `json:"tokenizer_vocab,omitempty"`
	Tied             bool     `json:"tied_embeddings"`
	RopeTheta        float64  `json:"rope_theta"`
	MaxPositions     int      `json:"max_positions"`
	KVBytesPerToken  int64    `json:"kv_bytes_per_token"` // all layers, K and V, f32
	LayerBytes       int64    `json:"layer_bytes"`        // one decoder layer as stored
}

// Inspect reads config.json and the safetensors headers of a folder.
func Inspect(dir string) (*Info, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	st, err := safetensors.OpenFolder(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	info := &Info{Path: dir, Architecture: cfg.Arch, Layers: cfg.NumHiddenLayers, HiddenSize: cfg.HiddenSize,
		IntermediateSize: cfg.IntermediateSize, Heads: cfg.NumAttentionHeads, KVHeads: cfg.NumKeyValueHeads,
		HeadDim: cfg.HeadDim, VocabSize: cfg.VocabSize, Tied: cfg.Tied(), RopeTheta: cfg.RopeTheta,
		MaxPositions: cfg.MaxPositionEmbeddings}
	dtypes := map[string]bool{}
	for _, name := range st.Names() {
		ti, _ := st.Info(name)
		info.Parameters += int64(ti.NumElements())
		info.Bytes += ti.Size
		dtypes[string(ti.DType)] = true
		if strings.HasPrefix(name, "model.layers.0.") {
			info.LayerBytes += ti.Size
		}
	}
	for d := range dtypes {
		info.DTypes = append(info.DTypes, d)
	}
	sort.Strings(info.DTypes)
	info.DType = cfg.DTypeName()
	if info.DType == "" && len(info.DTypes) == 1 {
		info.DType = strings.ToLower(info.DTypes[0])
	}
	info.KVBytesPerToken = int64(cfg.NumHiddenLayers) * int64(cfg.NumKeyValueHeads*cfg.HeadDim) * 2 * 4
	if tk, err := tokenizer.Load(dir); err == nil {
		info.TokenizerVocab = tk.VocabSize()
		tk.Close()
	}
	// What loading would find wrong, found now: a missing tensor or shard, a
	// shape config.json does not imply, a dtype the engine does not read.
	if err := check(dir, st); err != nil {
		return nil, err
	}
	return info, nil
}

// VocabWarning says when the tokenizer has more ids than the model has
// embedding rows (rows may pad the vocabulary, as Qwen's 151936 rows for
// 151669 ids do, but not fall short of it): a prompt holding such an id
// fails its request. "" when they fit, or the tokenizer is unknown.
func (i *Info) VocabWarning() string {
	if i.TokenizerVocab <= i.VocabSize {
		return ""
	}
	return fmt.Sprintf("%s: the tokenizer has %d ids but the model only %d embedding rows (vocab_size in config.json): a prompt holding an id past them fails its request",
		i.Path, i.TokenizerVocab, i.VocabSize)
}

// StorageScale is how many bytes a backend stores per byte on disk when a
// job asks for dtype: "bf16" keeps 2 bytes a parameter and "f32" 4 (vectors
// are few, so the whole is scaled), anything else the checkpoint's own.
// Memory planning (placement, the split over a stage's GPUs) multiplies the
// bytes on disk by it.
func (i *Info) StorageScale(dtype string) float64 {
	per := map[string]int64{"bf16": 2, "f32": 4}[dtype]
	if per == 0 || i.Bytes <= 0 || i.Parameters <= 0 {
		return 1
	}
	return float64(per*i.Parameters) / float64(i.Bytes)
}
