package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// Seq is one sequence's share of a batched step.
type Seq struct {
	Cache  *kvcache.Seq
	Tokens []int // first shard: the new tokens
	N      int   // other shards: the sequence's rows in the hidden input
	// AllLogits asks the last shard for logits at every new position (the
	// verify step of speculative decoding); otherwise only the last position.
	AllLogits bool
	// Greedy asks the last shard for greedy decoding's choice at each
	// requested position (Result.Picks) instead of its logits: the argmax
	// over ids < VocabLimit (0: all) and its margin, found where the logits
	// are when the backend is a backend.Picker (a GPU then sends two
	// numbers per position to the host, not the vocabulary).
	Greedy     bool
	VocabLimit int
	// Sampled asks the last shard for probability rows instead of logits:
	// sampling.Probs of each requested position's logits under these
	// parameters (temperature > 0), computed where the logits are when the
	// backend is a backend.Prober (Result.Probs). Not with Greedy.
	Sampled *sampling.Params
	// Draw, with Sampled (and not DraftTopK), asks for the last position's
	// token drawn at the uniform U from its probabilities instead
	// (sampling.Sample: an autoregressive step), drawn where the
	// probabilities are when the backend is a backend.Drawer (which takes U
	// as a float32) (Result.Drawn).
	Draw bool
	U    float64
	// Verify, with Sampled and AllLogits, asks for the acceptance rule applied
	// to its last len(Verify.Drafts)+1 positions instead of their
	// probabilities (a verify step), on the device when the backend is a
	// backend.Verifier (Result.Verdicts).
	Verify *VerifySpec
	// DraftTopK (non-zero), with Sampled, asks for each position's top-k cut
	// of its probabilities instead (sampling.TopKSparse: a drafter's q; a
	// negative k keeps the whole support), cut where the probabilities are
	// when the backend is a backend.TopKer (Result.Sparse).
	DraftTopK int
}

// VerifySpec is a verify step's drafts, their draft distributions and the
// seed of the rule's uniforms: on the host spec.Verify draws them from
// sampling.NewRNG(Seed) as it needs them; a device takes them up front from
// that generator in spec.VerifyAt's order (every accept, every residual,
// then the bonus) as float32s.
type VerifySpec struct {
	Drafts []int
	Q      []sampling.Sparse
	Seed   uint64
}

// Verdict is a verify step's outcome: the rule's verdict, or why it could not
// be applied (a bad draft distribution: that step fails, not the batch).
type Verdict struct {
	spec.Verdict
	Err error
}

// Pick is greedy decoding's choice at one position: sampling.ArgmaxMargin
// of its logits.
type Pick struct {
	Token  int
	Margin float32
}

// Result is what a step returns.
type Result struct {
	Hidden   []float32           // [T, hidden] for the next shard (not the last shard)
	Logits   [][][]float32       // last shard: per sequence, per requested position, vocab logits (nil for Greedy sequences)
	Picks    [][]Pick            // last shard: per Greedy sequence, per requested position (nil for the others)
	Probs    [][][]float32       // last shard: per Sampled sequence, per requested position, probabilities (nil for the others)
	Sparse   [][]sampling.Sparse // last shard: per Sampled sequence with DraftTopK, per requested position, its top-k q
	Drawn    []int               // last shard: per sequence, the token Draw drew (-1 for the others)
	Verdicts []*Verdict          // last shard: per sequence with Verify, the outcome (nil for the others)
}

// Forward runs one step for several sequences at once: their new positions
// are stacked into one [T, hidden] matrix so every projection is one GEMM,
// while attention runs per sequence over its own cache. The first shard takes
// token ids, later shards the previous shard's hidden states. Caches advance
// only when the whole step succeeded.
func (m *Model) Forward(seqs []Seq, hidden []float32) (*Result, error) {
	c := m.Config
	H := c.HiddenSize
	b := m.b
	counts := make([]int, len(seqs))
	T := 0
	for i, s := range seqs {
		n := s.N
		if m.IsFirst() {
			n = len(s.Tokens)
		}
		if n <= 0 {
			return nil, fmt.Errorf("sequence %d of the batch has no new positions", i)
		}
		if s.Cache == nil || s.Cache.Layers() != len(m.layers) {
			return nil, fmt.Errorf("sequence %d of the batch has no cache for this shard's %d layers", i, len(m.layers))
		}
		if s.Verify != nil && (s.Sampled == nil || !s.AllLogits || s.Draw || s.DraftTopK != 0 || len(s.Verify.Drafts)+1 > n) {
			return nil, fmt.Errorf("sequence %d of the batch asks for the acceptance rule without sampling parameters, all positions, or enough of them", i)
		}
		if s.Draw && (s.Sampled == nil || s.DraftTopK != 0) {
			return nil, fmt.Errorf("sequence %d of the batch asks to draw a token without sampling parameters, or with a top-k q", i)
		}
		if s.Sampled != nil {
			if s.Greedy {
				return nil, fmt.Errorf("sequence %d of the batch asks for greedy picks and sampled probabilities", i)
			}
			if err := s.Sampled.Validate(); err != nil {
				return nil, fmt.Errorf("sequence %d of the batch: %w", i, err)
			}
		}
		counts[i] = n
		T += n
	}
	if T == 0 {
		return &Result{}, nil
	}
	var frees []backend.Tensor
	alloc := func(shape ...int) backend.Tensor {
		t := b.New(shape...)
		frees = append(frees, t)
		return t
	}
	defer func() {
		// Last allocated, first freed: the next step of the same shape gets
		// the same buffers back (a replayed step graph needs them).
		for i := len(frees) - 1; i >= 0; i-- {
			b.Free(frees[i])
		}
	}()

	x := alloc(T, H)
	if m.IsFirst() {
		ids := make([]int32, 0, T)
		for _, s := range seqs {
			for _, t := range s.Tokens {
				if t < 0 || t >= c.VocabSize {
					return nil, fmt.Errorf("token id %d outside the vocabulary of %d", t, c.VocabSize)
				}
				ids = append(ids, int32(t))
			}
		}
		if err := b.Embed(x, m.embed, ids); err != nil {
			return nil, err
		}
	} else {
		if len(hidden) != T*H {
			return nil, fmt.Errorf("hidden input has %d values, want %d positions × %d", len(hidden), T, H)
		}
		if err := b.Write(x, hidden); err != nil {
			return nil, err
		}
	}

	positions := make([]int32, 0, T)
	attn := make([]backend.AttnSeq, len(seqs))
	row := 0
	for i, s := range seqs {
		if err := s.Cache.Reserve(counts[i]); err != nil {
			return nil, fmt.Errorf("sequence %d: %w", i, err)
		}
		past := s.Cache.Len()
		for j := 0; j < counts[i]; j++ {
			positions = append(positions, int32(past+j))
		}
		attn[i] = backend.AttnSeq{Row: row, N: counts[i], Len: past + counts[i]}
		row += counts[i]
	}

	qw, kvw := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	a := backend.Attn{Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	if m.Arch.Window {
		a.Window = c.Window()
	}
	h, o := alloc(T, H), alloc(T, H)
	bufs := &layerBufs{x: x, h: h, o: o, q: alloc(T, qw), att: alloc(T, qw), gate: alloc(T, c.IntermediateSize)}
	// Buffers for the layers' form: stacked weights (one product each) or apart.
	for _, ly := range m.layers {
		switch {
		case ly.qkv != nil && bufs.qkv == nil:
			bufs.qkv = alloc(T, qw+2*kvw)
		case ly.qkv == nil && bufs.k == nil:
			bufs.k, bufs.v = alloc(T, kvw), alloc(T, kvw)
		}
		switch {
		case ly.gateUp != nil && bufs.gu == nil:
			bufs.gu = alloc(T, 2*c.IntermediateSize)
		case ly.gateUp == nil && bufs.up == nil:
			bufs.up = alloc(T, c.IntermediateSize)
		}
	}
	eps := float32(c.RMSNormEps)
	// Only the rows whose logits are wanted go through the norm and the head.
	var rows []int
	if m.IsLast() {
		for i, s := range seqs {
			end := attn[i].Row + counts[i]
			if s.AllLogits {
				for r := attn[i].Row; r < end; r++ {
					rows = append(rows, r)
				}
			} else {
				rows = append(rows, end-1)
			}
		}
	}
	V := c.VocabSize
	var sel, logits backend.Tensor
	if m.IsLast() {
		// Made here, not in step: a step run twice (a refused replay, then
		// a capture) must use the same buffers, or the next step's would
		// differ from the captured ones.
		sel, logits = alloc(len(rows), H), alloc(len(rows), V)
	}
	// step is the device work of the step, layers and head: a backend with
	// step graphs may capture it once and replay it for later steps of the
	// same shape, so it has no effect but its operations.
	step := func() error {
		if len(m.layers) > 0 {
			if err := b.RMSNorm(h, x, m.layers[0].attnNorm, eps); err != nil {
				return fmt.Errorf("layer %d: %w", m.First, err)
			}
		}
		for li, ly := range m.layers {
			var next backend.Tensor // the next layer's attention norm, fused with this layer's last residual add
			if li+1 < len(m.layers) {
				next = m.layers[li+1].attnNorm
			}
			if err := m.layer(li, ly, bufs, seqs, attn, positions, a, eps, next); err != nil {
				return fmt.Errorf("layer %d: %w", m.First+li, err)
			}
		}
		if !m.IsLast() {
			return nil
		}
		// The wanted rows of x into sel, one copy per run of consecutive
		// rows; when they are all of x (decode steps, verify steps) the
		// norm reads x itself and nothing is copied.
		if len(rows) == backend.Rows(x) {
			if err := b.RMSNorm(sel, x, m.norm, eps); err != nil {
				return err
			}
			return b.MatMul(logits, sel, m.head)
		}
		for j := 0; j < len(rows); {
			n := 1
			for j+n < len(rows) && rows[j+n] == rows[j]+n {
				n++
			}
			if err := b.CopyRows(sel, j, x, rows[j], n); err != nil {
				return err
			}
			j += n
		}
		if err := b.RMSNorm(sel, sel, m.norm, eps); err != nil {
			return err
		}
		return b.MatMul(logits, sel, m.head)
	}
	var err error
	if g, ok := b.(backend.StepGrapher); ok && graphable(counts) {
		err = g.GraphStep(func() string { return stepKey(m, counts, seqs) }, step)
	} else {
		err = step()
	}
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if !m.IsLast() {
		res.Hidden = make([]float32, T*H)
		if err := b.Read(x, res.Hidden); err != nil {
			return nil, err
		}
	} else if err := m.outputs(res, seqs, counts, logits); err != nil {
		return nil, err
	}
	// The caches advance only now: a step whose outputs failed leaves every
	// cache length as it was, so its steps can be run again.
	for i, s := range seqs {
		if err := s.Cache.Advance(counts[i]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// layerBufs are the activations one forward step reuses across layers: x is
// the residual stream, h a normed copy of it, o a projection's output.
type layerBufs struct {
	x, h, o, q, k, v, att, gate, up backend.Tensor
	qkv, gu                         backend.Tensor // the stacked products' outputs (fused layers)
}

// addNorm adds o to the residual stream x and writes the normed result to h,
// in one operation where the backend fuses the two (same results: the norm
// reads the sum as stored). A nil w only adds.
func addNorm(b backend.Backend, t *layerBufs, w backend.Tensor, eps float32) error {
	if w != nil {
		if f, ok := b.(backend.ResidualNormer); ok {
			return f.AddRMSNorm(t.h, t.x, t.o, w, eps)
		}
	}
	if err := b.Add(t.x, t.x, t.o); err != nil {
		return err
	}
	if w == nil {
		return nil
	}
	return b.RMSNorm(t.h, t.x, w, eps)
}

// layer runs decoder layer li in place on bufs.x, whose attention-normed copy
// is already in bufs.h: attention over each sequence's cache (the new K/V
// rows appended first), then the SwiGLU MLP, each added to the residual
// stream. The last add is fused with next, the following layer's attention
// norm (nil for the shard's last layer).
func (m *Model) layer(li int, ly *layer, t *layerBufs, seqs []Seq, attn []backend.AttnSeq,
	positions []int32, a backend.Attn, eps float32, next backend.Tensor) error {
	b := m.b
	for i, s := range seqs {
		attn[i].K, attn[i].V = s.Cache.Layer(li)
	}
	if ly.qkv != nil {
		// One product, then norms, RoPE and the cache write in one launch.
		if err := linear(b, t.qkv, t.h, ly.qkv, ly.qkvBias); err != nil {
			return err
		}
		if err := b.(backend.QKVFinisher).FinishQKV(t.q, t.qkv, ly.qNorm, ly.kNorm, eps, positions, m.rope, a, attn); err != nil {
			return err
		}
		return m.attendAndMLP(ly, t, attn, a, eps, next)
	}
	if err := linear(b, t.q, t.h, ly.q, ly.qBias); err != nil {
		return err
	}
	if err := linear(b, t.k, t.h, ly.k, ly.kBias); err != nil {
		return err
	}
	if err := linear(b, t.v, t.h, ly.v, ly.vBias); err != nil {
		return err
	}
	if ly.qNorm != nil {
		if err := b.RMSNorm(t.q, t.q, ly.qNorm, eps); err != nil {
			return err
		}
		if err := b.RMSNorm(t.k, t.k, ly.kNorm, eps); err != nil {
			return err
		}
	}
	if err := b.ApplyRoPE(t.q, positions, m.rope); err != nil {
		return err
	}
	if err := b.ApplyRoPE(t.k, positions, m.rope); err != nil {
		return err
	}
	if err := backend.AppendKV(b, t.k, t.v, attn); err != nil {
		return err
	}
	return m.attendAndMLP(ly, t, attn, a, eps, next)
}

// attendAndMLP is the rest of a layer once q is ready and the caches hold the
// step's keys and values.
func (m *Model) attendAndMLP(ly *layer, t *layerBufs, attn []backend.AttnSeq, a backend.Attn, eps float32, next backend.Tensor) error {
	b := m.b
	if err := b.Attention(t.att, t.q, attn, a); err != nil {
		return err
	}
	if err := linear(b, t.o, t.att, ly.o, ly.oBias); err != nil {
		return err
	}
	if err := addNorm(b, t, ly.mlpNorm, eps); err != nil {
		return err
	}
	if ly.gateUp != nil {
		if err := linear(b, t.gu, t.h, ly.gateUp, ly.gateUpBias); err != nil {
			return err
		}
		if err := b.(backend.PairSwiGLU).SwiGLUPair(t.gate, t.gu); err != nil {
			return err
		}
	} else {
		if err := linear(b, t.gate, t.h, ly.gate, ly.gateB); err != nil {
			return err
		}
		if err := linear(b, t.up, t.h, ly.up, ly.upB); err != nil {
			return err
		}
		if err := b.SwiGLU(t.gate, t.gate, t.up); err != nil {
			return err
		}
	}
	if err := linear(b, t.o, t.gate, ly.down, ly.downB); err != nil {
		return err
	}
	return addNorm(b, t, next, eps)
}

// linear is a Hugging Face Linear layer: dst = x·wᵀ (+ bias).
func linear(b backend.Backend, dst, x, w, bias backend.Tensor) error {
	if err := b.MatMul(dst, x, w); err != nil {
		return err
	}
	if bias != nil {
		return b.AddBias(dst, bias)
	}
	return nil
}

// graphable says whether a step may go through a step graph: decode and
// verify steps (a few new rows per sequence) repeat in shape; prefills do not.
func graphable(counts []int) bool {
	for _, n := range counts {
		if n > 32 {
			return false
		}
	}
	return len(counts) <= 512
}

// stepKey names a step's shape: the shard, and each sequence's new rows and
// whether it wants every row's logits.
func stepKey(m *Model, counts []int, seqs []Seq) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%p", m)
	for i, n := range counts {
		fmt.Fprintf(&sb, ",%d", n)
		if seqs[i].AllLogits {
			sb.WriteByte('a')
		}
	}
	return sb.String()
}
