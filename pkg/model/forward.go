package model

import (
	"fmt"
	"math"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// Seq is one sequence's share of a batched step.
type Seq struct {
	Cache  *kvcache.Seq
	Tokens []int // first shard: the new tokens
	N      int   // other shards: the sequence's rows in the hidden input
	// AllLogits asks the last shard for logits at every new position (the
	// verify step of speculative decoding); otherwise only the last position.
	AllLogits bool
}

// Result is what a step returns.
type Result struct {
	Hidden []float32     // [T, hidden] for the next shard (not the last shard)
	Logits [][][]float32 // last shard: per sequence, per requested position, vocab logits
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
		for _, t := range frees {
			b.Free(t)
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
	h := alloc(T, H)
	q, k, v := alloc(T, qw), alloc(T, kvw), alloc(T, kvw)
	att := alloc(T, qw)
	gate, up := alloc(T, c.IntermediateSize), alloc(T, c.IntermediateSize)
	eps := float32(c.RMSNormEps)
	bufs := &layerBufs{x: x, h: h, q: q, k: k, v: v, att: att, gate: gate, up: up}
	for li, ly := range m.layers {
		if err := m.layer(li, ly, bufs, seqs, counts, attn, positions, a, eps); err != nil {
			return nil, fmt.Errorf("layer %d: %w", m.First+li, err)
		}
	}
	for i, s := range seqs {
		if err := s.Cache.Advance(counts[i]); err != nil {
			return nil, err
		}
	}

	res := &Result{}
	if !m.IsLast() {
		res.Hidden = make([]float32, T*H)
		if err := b.Read(x, res.Hidden); err != nil {
			return nil, err
		}
		return res, nil
	}
	// Only the rows whose logits are wanted go through the norm and the head.
	var rows []int
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
	sel := alloc(len(rows), H)
	for j, r := range rows {
		if err := b.CopyRows(sel, j, x, r, 1); err != nil {
			return nil, err
		}
	}
	if err := b.RMSNorm(sel, sel, m.norm, eps); err != nil {
		return nil, err
	}
	V := c.VocabSize
	logits := alloc(len(rows), V)
	if err := b.MatMul(logits, sel, m.head); err != nil {
		return nil, err
	}
	flat := make([]float32, len(rows)*V)
	if err := b.Read(logits, flat); err != nil {
		return nil, err
	}
	res.Logits = make([][][]float32, len(seqs))
	j := 0
	for i, s := range seqs {
		n := 1
		if s.AllLogits {
			n = counts[i]
		}
		for r := 0; r < n; r++ {
			res.Logits[i] = append(res.Logits[i], flat[j*V:(j+1)*V:(j+1)*V])
			j++
		}
	}
	return res, nil
}

// layerBufs are the activations one forward step reuses across layers.
type layerBufs struct {
	x, h, q, k, v, att, gate, up backend.Tensor
}

// layer runs decoder layer li in place on bufs.x: pre-norm attention over
// each sequence's cache (the new K/V rows appended first), then the SwiGLU
// MLP, each added to the residual stream.
func (m *Model) layer(li int, ly *layer, t *layerBufs, seqs []Seq, counts []int, attn []backend.AttnSeq,
	positions []int32, a backend.Attn, eps float32) error {
	b := m.b
	if err := b.RMSNorm(t.h, t.x, ly.attnNorm, eps); err != nil {
		return err
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
	for i, s := range seqs {
		kc, vc := s.Cache.Layer(li)
		if err := b.CopyRows(kc, s.Cache.Len(), t.k, attn[i].Row, counts[i]); err != nil {
			return err
		}
		if err := b.CopyRows(vc, s.Cache.Len(), t.v, attn[i].Row, counts[i]); err != nil {
			return err
		}
		attn[i].K, attn[i].V = kc, vc
	}
	if err := b.Attention(t.att, t.q, attn, a); err != nil {
		return err
	}
	if err := linear(b, t.h, t.att, ly.o, ly.oBias); err != nil {
		return err
	}
	if err := b.Add(t.x, t.x, t.h); err != nil {
		return err
	}
	if err := b.RMSNorm(t.h, t.x, ly.mlpNorm, eps); err != nil {
		return err
	}
	if err := linear(b, t.gate, t.h, ly.gate, ly.gateB); err != nil {
		return err
	}
	if err := linear(b, t.up, t.h, ly.up, ly.upB); err != nil {
		return err
	}
	if err := b.SwiGLU(t.gate, t.gate, t.up); err != nil {
		return err
	}
	if err := linear(b, t.h, t.gate, ly.down, ly.downB); err != nil {
		return err
	}
	return b.Add(t.x, t.x, t.h)
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
