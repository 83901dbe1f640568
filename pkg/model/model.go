// Package model runs decoder-only transformers from Hugging Face folders
// (Llama, Mistral, Qwen2, Qwen3) over a backend. A Model may be a shard: a
// contiguous layer range [First, Last), with the token embeddings only on the
// first shard and the final norm and LM head only on the last, so a pipeline
// of stages can split one model across processes and hosts.
package model

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

// Model is a loaded model or shard.
type Model struct {
	Config *Config
	Arch   Arch
	Dir    string
	First  int // first layer held
	Last   int // one past the last layer held

	b      backend.Backend
	rope   *backend.RoPE
	embed  backend.Tensor // first shard (and last when tied)
	norm   backend.Tensor // last shard
	head   backend.Tensor // last shard
	layers []*layer
	bytes  int64 // weight bytes as stored on disk
}

type layer struct {
	attnNorm, mlpNorm   backend.Tensor
	q, k, v, o          backend.Tensor
	qBias, kBias, vBias backend.Tensor // optional
	oBias               backend.Tensor // optional (Llama attention_bias)
	qNorm, kNorm        backend.Tensor // Qwen3
	gate, up, down      backend.Tensor
	gateB, upB, downB   backend.Tensor // optional (Llama mlp_bias)

	// On a backend with the fused operations (backend.QKVFinisher,
	// backend.PairSwiGLU), q, k and v are one stacked matrix and gate and
	// up another, so each takes one product; the separate fields are nil.
	qkv, qkvBias       backend.Tensor // [qw+2·kvw, H], [qw+2·kvw]
	gateUp, gateUpBias backend.Tensor // [2I, H], [2I]
}

// Options select what to load.
type Options struct {
	First, Last int // layer range; Last 0 means all layers
	// RandomWeights loads no weight file: every tensor is drawn at random
	// (seeded, bf16), so big shapes can be benchmarked from config.json alone.
	RandomWeights bool
	Seed          uint64
}

// Load reads a model folder (or the layer range of opts) onto a backend,
// reading only the tensors of that range.
func Load(dir string, b backend.Backend, opts Options) (*Model, error) {
	return load(dir, b, opts, nil)
}

// Check does what Load does with every tensor (present, shaped as
// config.json says, of a dtype the engine reads) without reading any data,
// so validate and inspect catch what loading a stage would fail on.
func Check(dir string) error {
	st, err := safetensors.OpenFolder(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	return check(dir, st)
}

// check is Check on the folder's weights already open.
func check(dir string, st *safetensors.Folder) error {
	_, err := load(dir, nil, Options{}, st)
	return err
}

// load is Load, or with checkIn set Check over those open weights.
func load(dir string, b backend.Backend, opts Options, checkIn *safetensors.Folder) (*Model, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	if cfg.UseSlidingWindow != nil && *cfg.UseSlidingWindow && cfg.Arch == "Qwen2ForCausalLM" {
		return nil, fmt.Errorf("%s: use_sliding_window is not supported for Qwen2ForCausalLM", cfg.Path)
	}
	first, last := opts.First, opts.Last
	if last == 0 {
		last = cfg.NumHiddenLayers
	}
	if first < 0 || first >= last || last > cfg.NumHiddenLayers {
		return nil, fmt.Errorf("layer range [%d,%d) is not inside the %d layers of %s", first, last, cfg.NumHiddenLayers, dir)
	}
	m := &Model{Config: cfg, Arch: registry[cfg.Arch], Dir: dir, First: first, Last: last, b: b, rope: cfg.RoPE()}
	l := &loader{m: m, dir: dir, check: checkIn != nil}
	switch {
	case checkIn != nil:
		l.st = checkIn
	case opts.RandomWeights:
		l.random = newRandomSource(opts.Seed)
	default:
		st, err := safetensors.OpenFolder(dir)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		l.st = st
	}
	H, V := cfg.HiddenSize, cfg.VocabSize
	if first == 0 || (last == cfg.NumHiddenLayers && cfg.Tied()) {
		m.embed = l.get("model.embed_tokens.weight", V, H)
	}
	// In the order of the forward pass (embedding, layers, norm and head),
	// so a backend that fills devices as weights load (backend.WeightGrouper)
	// puts each part where the hidden state passes.
	g, grouping := b.(backend.WeightGrouper)
	for i := first; i < last && l.err == nil; i++ {
		if grouping {
			g.GroupWeights(m.layerElems())
		}
		m.layers = append(m.layers, l.layer(i))
	}
	if last == cfg.NumHiddenLayers {
		m.norm = l.get("model.norm.weight", H)
		if cfg.Tied() {
			m.head = m.embed
		} else {
			m.head = l.get("lm_head.weight", V, H)
		}
	}
	if l.err != nil {
		return nil, fmt.Errorf("loading %s: %w", dir, l.err)
	}
	return m, nil
}

// PrepareProducts lets a backend.ProductPreparer prepare the products of
// the forward pass now (the CUDA backend's tuned products: seconds for a
// large model), so that a benchmark's first steps of each batch size do not
// pay for it. It says whether the backend prepared anything; a stage calls
// it once loaded.
func (m *Model) PrepareProducts() (bool, error) {
	p, ok := m.b.(backend.ProductPreparer)
	if !ok {
		return false, nil
	}
	did, err := p.PrepareProducts(m.productWeights())
	if err != nil {
		return false, fmt.Errorf("%s: preparing its products: %w", m.Dir, err)
	}
	return did, nil
}

// productWeights lists the weights the forward pass multiplies by (MatMul's
// w), for backend.ProductPreparer.
func (m *Model) productWeights() []backend.Tensor {
	var ws []backend.Tensor
	for _, ly := range m.layers {
		for _, w := range []backend.Tensor{ly.qkv, ly.q, ly.k, ly.v, ly.o, ly.gateUp, ly.gate, ly.up, ly.down} {
			if w != nil {
				ws = append(ws, w)
			}
		}
	}
	if m.head != nil {
		ws = append(ws, m.head)
	}
	return ws
}

// layerElems is how many weight elements one decoder layer loads (what
// loader.layer reads, stacked or not), for backend.WeightGrouper.
func (m *Model) layerElems() int64 {
	c := m.Config
	H, I, hd := int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.HeadDim)
	qw, kvw := int64(c.NumAttentionHeads)*hd, int64(c.NumKeyValueHeads)*hd
	n := 2*H + (qw+2*kvw)*H + H*qw + 3*I*H
	if m.Arch.QKVBias || c.AttentionBias {
		n += qw + 2*kvw
	}
	if c.AttentionBias {
		n += H
	}
	if c.MLPBias {
		n += 2*I + H
	}
	if m.Arch.QKNorm {
		n += 2 * hd
	}
	return n
}

// loader reads tensors and checks their shapes; the first error sticks.
type loader struct {
	m      *Model
	st     *safetensors.Folder
	random *randomSource // set instead of st for random weights
	dir    string
	err    error
	check  bool // names, shapes and dtypes only: no data read, no tensor made (Check)
}

func (l *loader) get(name string, shape ...int) backend.Tensor {
	if l.err != nil {
		return nil
	}
	if l.random != nil {
		t, err := l.random.tensor(l.m.b, name, shape)
		if err != nil {
			l.err = fmt.Errorf("tensor %s: %w", name, err)
			return nil
		}
		l.m.bytes += int64(backend.Elems(t) * 2)
		return t
	}
	info, ok := l.st.Info(name)
	if !ok {
		l.err = fmt.Errorf("tensor %s is missing", name)
		return nil
	}
	if !sameShape(info.Shape, shape) {
		l.err = fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", filepath.Base(info.File), name, info.Shape, shape)
		return nil
	}
	dt, err := dtypeOf(info)
	if err != nil {
		l.err = err
		return nil
	}
	if l.check {
		return nil
	}
	raw, err := l.st.Raw(name)
	if err != nil {
		l.err = err
		return nil
	}
	t, err := l.m.b.Load(shape, dt, raw)
	if err != nil {
		l.err = fmt.Errorf("tensor %s: %w", name, err)
		return nil
	}
	l.m.bytes += int64(len(raw))
	return t
}

func (l *loader) layer(i int) *layer {
	c := l.m.Config
	p := fmt.Sprintf("model.layers.%d.", i)
	H, I := c.HiddenSize, c.IntermediateSize
	qw, kvw := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	ly := &layer{
		attnNorm: l.get(p+"input_layernorm.weight", H),
		mlpNorm:  l.get(p+"post_attention_layernorm.weight", H),
	}
	qkvBias := l.m.Arch.QKVBias || c.AttentionBias
	qkv := []string{p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"}
	if _, ok := l.m.b.(backend.QKVFinisher); ok && l.stackable(qkv, qkvBias) {
		ly.qkv = l.stack(qkv, ".weight", []int{qw, kvw, kvw}, H)
		if qkvBias {
			ly.qkvBias = l.stack(qkv, ".bias", []int{qw, kvw, kvw}, 0)
		}
	} else {
		ly.q = l.get(qkv[0]+".weight", qw, H)
		ly.k = l.get(qkv[1]+".weight", kvw, H)
		ly.v = l.get(qkv[2]+".weight", kvw, H)
		if qkvBias {
			ly.qBias = l.get(qkv[0]+".bias", qw)
			ly.kBias = l.get(qkv[1]+".bias", kvw)
			ly.vBias = l.get(qkv[2]+".bias", kvw)
		}
	}
	ly.o = l.get(p+"self_attn.o_proj.weight", H, qw)
	if c.AttentionBias {
		ly.oBias = l.get(p+"self_attn.o_proj.bias", H)
	}
	gu := []string{p + "mlp.gate_proj", p + "mlp.up_proj"}
	if _, ok := l.m.b.(backend.PairSwiGLU); ok && l.stackable(gu, c.MLPBias) {
		ly.gateUp = l.stack(gu, ".weight", []int{I, I}, H)
		if c.MLPBias {
			ly.gateUpBias = l.stack(gu, ".bias", []int{I, I}, 0)
		}
	} else {
		ly.gate = l.get(gu[0]+".weight", I, H)
		ly.up = l.get(gu[1]+".weight", I, H)
		if c.MLPBias {
			ly.gateB = l.get(gu[0]+".bias", I)
			ly.upB = l.get(gu[1]+".bias", I)
		}
	}
	ly.down = l.get(p+"mlp.down_proj.weight", H, I)
	if c.MLPBias {
		ly.downB = l.get(p+"mlp.down_proj.bias", H)
	}
	if l.m.Arch.QKNorm {
		ly.qNorm = l.get(p+"self_attn.q_norm.weight", c.HeadDim)
		ly.kNorm = l.get(p+"self_attn.k_norm.weight", c.HeadDim)
	}
	if l.err != nil {
		l.err = fmt.Errorf("layer %d: %w", i, l.err)
	}
	return ly
}

// stackable says whether the weights (and biases) of modules can be stacked
// into one tensor: random weights always can; from files, when every part
// has one dtype (a mixed checkpoint loads them apart).
func (l *loader) stackable(modules []string, bias bool) bool {
	if l.err != nil || l.random != nil {
		return l.err == nil
	}
	var dt safetensors.DType
	for i, m := range modules {
		for _, suffix := range []string{".weight", ".bias"} {
			if suffix == ".bias" && !bias {
				continue
			}
			info, ok := l.st.Info(m + suffix)
			if !ok {
				return false // get reports the missing tensor
			}
			if i == 0 && suffix == ".weight" {
				dt = info.DType
			} else if info.DType != dt {
				return false
			}
		}
	}
	return true
}

// stack loads modules[i]+suffix, each of rows[i] rows (of cols columns; 0
// for vectors), as one tensor with the parts one after another.
func (l *loader) stack(modules []string, suffix string, rows []int, cols int) backend.Tensor {
	if l.err != nil {
		return nil
	}
	total := 0
	for _, r := range rows {
		total += r
	}
	shape := []int{total}
	if cols > 0 {
		shape = append(shape, cols)
	}
	if l.random != nil {
		// Drawn as one tensor (the seed follows the joined name), with the
		// spread each part would have had.
		return l.get(strings.Join(modules, "+")+suffix, shape...)
	}
	var raw []byte
	var dt backend.DType
	for i, m := range modules {
		name := m + suffix
		want := []int{rows[i]}
		if cols > 0 {
			want = append(want, cols)
		}
		info, ok := l.st.Info(name)
		if !ok {
			l.err = fmt.Errorf("tensor %s is missing", name)
			return nil
		}
		if !sameShape(info.Shape, want) {
			l.err = fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", filepath.Base(info.File), name, info.Shape, want)
			return nil
		}
		d, err := dtypeOf(info)
		if err != nil {
			l.err = err
			return nil
		}
		dt = d
		part, err := l.st.Raw(name)
		if err != nil {
			l.err = err
			return nil
		}
		raw = append(raw, part...)
	}
	t, err := l.m.b.Load(shape, dt, raw)
	if err != nil {
		l.err = fmt.Errorf("tensors %s%s stacked: %w", strings.Join(modules, ", "), suffix, err)
		return nil
	}
	l.m.bytes += int64(len(raw))
	return t
}

func dtypeOf(info safetensors.TensorInfo) (backend.DType, error) {
	switch info.DType {
	case safetensors.F32:
		return backend.F32, nil
	case safetensors.BF16:
		return backend.BF16, nil
	case safetensors.F16:
		return backend.F16, nil
	}
	return 0, fmt.Errorf("%s: tensor %s has dtype %s; only F32, BF16 and F16 are supported", filepath.Base(info.File), info.Name, info.DType)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// IsFirst reports whether the shard holds the embeddings (takes token ids).
func (m *Model) IsFirst() bool { return m.First == 0 }

// IsLast reports whether the shard holds the LM head (returns logits).
func (m *Model) IsLast() bool { return m.Last == m.Config.NumHiddenLayers }

// WeightBytes is the size of the weights read, as stored on disk.
func (m *Model) WeightBytes() int64 { return m.bytes }

// Backend is the backend the model runs on.
func (m *Model) Backend() backend.Backend { return m.b }

// NewCache returns an empty KV cache for one sequence over this shard's layers.
func (m *Model) NewCache(opt kvcache.Options) *kvcache.Seq {
	if opt.MaxLen == 0 {
		opt.MaxLen = m.Config.MaxPositionEmbeddings
	}
	return kvcache.New(m.b, len(m.layers), m.Config.NumKeyValueHeads*m.Config.HeadDim, opt)
}

// Parameters is the number of weights the shard holds (a tied head counted once).
func (m *Model) Parameters() int64 {
	var n int64
	seen := map[backend.Tensor]bool{}
	m.eachTensor(func(t backend.Tensor) {
		if !seen[t] {
			seen[t] = true
			n += int64(backend.Elems(t))
		}
	})
	return n
}

// MemoryBytes is what the shard's weights occupy on its backend.
func (m *Model) MemoryBytes() int64 {
	var n int64
	seen := map[backend.Tensor]bool{}
	m.eachTensor(func(t backend.Tensor) {
		if !seen[t] {
			seen[t] = true
			n += int64(backend.Elems(t) * t.DType().Size())
		}
	})
	return n
}

func (m *Model) eachTensor(f func(backend.Tensor)) {
	for _, t := range []backend.Tensor{m.embed, m.norm, m.head} {
		if t != nil {
			f(t)
		}
	}
	for _, l := range m.layers {
		for _, t := range []backend.Tensor{l.attnNorm, l.mlpNorm, l.q, l.k, l.v, l.o, l.qBias, l.kBias, l.vBias, l.oBias,
			l.qNorm, l.kNorm, l.gate, l.up, l.down, l.gateB, l.upB, l.downB, l.qkv, l.qkvBias, l.gateUp, l.gateUpBias} {
			if t != nil {
				f(t)
			}
		}
	}
}

// Free gives the shard's weights back to its backend (device memory on a GPU).
// The model must not be used afterwards.
func (m *Model) Free() {
	seen := map[backend.Tensor]bool{}
	m.eachTensor(func(t backend.Tensor) {
		if !seen[t] {
			seen[t] = true
			m.b.Free(t)
		}
	})
	m.embed, m.norm, m.head, m.layers = nil, nil, nil, nil
}
