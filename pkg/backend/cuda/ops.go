//go:build cuda

package cuda

/*
#include "draftbench.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/sampling"
)

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// weightOn allocates a weight of shape on the device the placer picks.
func (b *Backend) weightOn(shape []int, op string) (*Tensor, error) {
	t := &Tensor{shape: append([]int(nil), shape...), dtype: b.dtype, weight: true}
	n := t.bytes()
	d := b.devs[b.place.place(n)]
	p, err := b.malloc(d, n, op)
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: a weight %v on device %d: %w", op, shape, d.info.Ordinal, err)
	}
	t.dev, t.ptr, t.size = d, p, n
	return t, nil
}

func dtypeC(d backend.DType) C.int { return C.int(d) }

// GroupWeights implements backend.WeightGrouper: the next elems elements of
// weights (a layer's, in the backend's dtype) go to one device.
func (b *Backend) GroupWeights(elems int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.place.group(elems * int64(b.dtype.Size()))
}

// Load implements backend.Backend: the raw safetensors bytes go straight to
// the device (staged through a scratch buffer when they need converting to
// the backend's dtype).
func (b *Backend) Load(shape []int, src backend.DType, raw []byte) (backend.Tensor, error) {
	n := numel(shape)
	if len(raw) != n*src.Size() {
		return nil, fmt.Errorf("cuda: %d bytes of %s do not make a tensor of shape %v", len(raw), src, shape)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("cuda: load: the backend is closed")
	}
	t, err := b.weightOn(shape, "load")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return t, nil
	}
	d := t.dev
	ord := d.info.Ordinal
	if src == b.dtype {
		if err := check("load", ord, C.db_h2d(d.h, t.ptr, unsafe.Pointer(&raw[0]), C.size_t(len(raw)))); err != nil {
			b.freeWeight(t)
			return nil, err
		}
		return t, nil
	}
	stage := &Tensor{shape: []int{(len(raw) + 3) / 4}, dtype: backend.F32} // raw bytes, in f32 words
	if err := b.allocActivation(stage, d, "load"); err != nil {
		b.freeWeight(t)
		return nil, err
	}
	defer b.release(stage)
	if err := check("load", ord, C.db_h2d(d.h, stage.ptr, unsafe.Pointer(&raw[0]), C.size_t(len(raw)))); err != nil {
		b.freeWeight(t)
		return nil, err
	}
	if err := check("load (converting "+src.String()+")", ord,
		C.db_convert(d.h, dtypeC(b.dtype), t.ptr, dtypeC(src), stage.ptr, C.size_t(n))); err != nil {
		b.freeWeight(t)
		return nil, err
	}
	return t, nil
}

func (b *Backend) freeWeight(t *Tensor) {
	_ = check("freeing a weight", t.dev.info.Ordinal, C.db_free(t.dev.h, t.ptr))
	t.ptr, t.freed = nil, true
}

// LoadRandom implements model.RandomLoader: normal(mean, std) values drawn on
// the device from a counter-based hash of (seed, index), rounded to dtype.
// They are not the values the CPU backend draws for the same seed.
func (b *Backend) LoadRandom(shape []int, dtype backend.DType, seed uint64, mean, std float32) (backend.Tensor, error) {
	if dtype != backend.BF16 && dtype != backend.F32 {
		return nil, fmt.Errorf("cuda: random weights of %s: only bf16 and f32 are drawn", dtype)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("cuda: load: the backend is closed")
	}
	t, err := b.weightOn(shape, "random weights")
	if err != nil {
		return nil, err
	}
	d := t.dev
	if err := check("random weights", d.info.Ordinal, C.db_fill_normal(d.h, dtypeC(b.dtype), t.ptr, C.size_t(numel(shape)),
		C.uint64_t(seed), C.float(mean), C.float(std), dtypeC(dtype))); err != nil {
		b.freeWeight(t)
		return nil, err
	}
	return t, nil
}

// Embed implements backend.Backend.
func (b *Backend) Embed(dst, table backend.Tensor, ids []int32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "embed", "dst")
	if err != nil {
		return err
	}
	tb, err := b.act(table, "embed", "table")
	if err != nil {
		return err
	}
	h, v := backend.Cols(tb), backend.Rows(tb)
	if backend.Rows(d) != len(ids) || backend.Cols(d) != h {
		return fmt.Errorf("cuda: embed into %v from %v for %d ids", d.shape, tb.shape, len(ids))
	}
	for _, id := range ids {
		if id < 0 || int(id) >= v {
			return fmt.Errorf("cuda: token id %d outside the embedding table (%d rows)", id, v)
		}
	}
	dev := b.home(tb, d)
	if err := b.bring(tb, dev, "embed"); err != nil {
		return err
	}
	if err := b.claim(d, dev, "embed"); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return b.done("embed", dev, C.db_embed(dev.h, dtypeC(b.dtype), d.ptr, tb.ptr,
		(*C.int32_t)(unsafe.Pointer(&ids[0])), C.int(len(ids)), C.int(h)))
}

// MatMul implements backend.Backend through cuBLAS.
func (b *Backend) MatMul(dst, x, w backend.Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "matmul", "dst")
	if err != nil {
		return err
	}
	xt, err := b.act(x, "matmul", "x")
	if err != nil {
		return err
	}
	wt, err := b.act(w, "matmul", "w")
	if err != nil {
		return err
	}
	m, k, n := backend.Rows(xt), backend.Cols(xt), backend.Rows(wt)
	if backend.Cols(wt) != k || backend.Rows(d) != m || backend.Cols(d) != n {
		return fmt.Errorf("cuda: matmul %v · %vᵀ into %v", xt.shape, wt.shape, d.shape)
	}
	if d == xt || d == wt {
		return fmt.Errorf("cuda: matmul: dst may not alias an input")
	}
	if m == 0 {
		return nil
	}
	dev := b.home(wt, xt)
	if err := b.bring(xt, dev, "matmul"); err != nil {
		return err
	}
	if err := b.claim(d, dev, "matmul"); err != nil {
		return err
	}
	return b.done("matmul", dev, C.db_gemm(dev.h, dtypeC(b.dtype), d.ptr, xt.ptr, wt.ptr, C.int(m), C.int(n), C.int(k)))
}

// AddBias implements backend.Backend.
func (b *Backend) AddBias(dst, bias backend.Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "add bias", "dst")
	if err != nil {
		return err
	}
	bt, err := b.act(bias, "add bias", "bias")
	if err != nil {
		return err
	}
	n := backend.Elems(bt)
	if backend.Cols(d) != n {
		return fmt.Errorf("cuda: bias of %d for rows of %d", n, backend.Cols(d))
	}
	dev := b.home(bt, d)
	if err := b.bring(d, dev, "add bias"); err != nil {
		return err
	}
	return b.done("add bias", dev, C.db_add_bias(dev.h, dtypeC(b.dtype), d.ptr, bt.ptr, C.size_t(backend.Rows(d)), C.int(n)))
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x, y backend.Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "add", "dst")
	if err != nil {
		return err
	}
	a, err := b.act(x, "add", "a")
	if err != nil {
		return err
	}
	c, err := b.act(y, "add", "b")
	if err != nil {
		return err
	}
	n := backend.Elems(a)
	if backend.Elems(c) != n || backend.Elems(d) != n {
		return fmt.Errorf("cuda: add %v + %v into %v", a.shape, c.shape, d.shape)
	}
	dev := b.home(a, c, d)
	if err := b.inputs(dev, "add", a, c); err != nil {
		return err
	}
	if err := b.output(d, dev, "add", a, c); err != nil {
		return err
	}
	return b.done("add", dev, C.db_add(dev.h, dtypeC(b.dtype), d.ptr, a.ptr, c.ptr, C.size_t(n)))
}

// inputs brings every input to dev.
func (b *Backend) inputs(dev *device, op string, ts ...*Tensor) error {
	for _, t := range ts {
		if err := b.bring(t, dev, op); err != nil {
			return err
		}
	}
	return nil
}

// output claims dst on dev unless it aliases one of the inputs (already there).
func (b *Backend) output(dst *Tensor, dev *device, op string, ins ...*Tensor) error {
	for _, t := range ins {
		if t == dst {
			return nil
		}
	}
	return b.claim(dst, dev, op)
}

// RMSNorm implements backend.Backend.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, eps float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "rmsnorm", "dst")
	if err != nil {
		return err
	}
	xt, err := b.act(x, "rmsnorm", "x")
	if err != nil {
		return err
	}
	wt, err := b.act(w, "rmsnorm", "w")
	if err != nil {
		return err
	}
	g, n := backend.Elems(wt), backend.Elems(xt)
	if g == 0 || n%g != 0 || backend.Elems(d) != n {
		return fmt.Errorf("cuda: rmsnorm of %v by a weight of %d into %v", xt.shape, g, d.shape)
	}
	dev := b.home(wt, xt)
	if err := b.inputs(dev, "rmsnorm", wt, xt); err != nil {
		return err
	}
	if err := b.output(d, dev, "rmsnorm", xt); err != nil {
		return err
	}
	return b.done("rmsnorm", dev, C.db_rmsnorm(dev.h, dtypeC(b.dtype), d.ptr, xt.ptr, wt.ptr, C.size_t(n/g), C.int(g), C.float(eps)))
}

// AddRMSNorm adds h into the residual stream x and normalises the result:
// x += h; dst = x / sqrt(mean(x²) + eps) · w, per row of len(w), in one pass.
// dst must not alias x or h.
func (b *Backend) AddRMSNorm(dst, x, h, w backend.Tensor, eps float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "add+rmsnorm", "dst")
	if err != nil {
		return err
	}
	xt, err := b.act(x, "add+rmsnorm", "x")
	if err != nil {
		return err
	}
	ht, err := b.act(h, "add+rmsnorm", "h")
	if err != nil {
		return err
	}
	wt, err := b.act(w, "add+rmsnorm", "w")
	if err != nil {
		return err
	}
	g, n := backend.Elems(wt), backend.Elems(xt)
	if g == 0 || n%g != 0 || backend.Elems(ht) != n || backend.Elems(d) != n {
		return fmt.Errorf("cuda: add+rmsnorm of %v + %v by a weight of %d into %v", xt.shape, ht.shape, g, d.shape)
	}
	if d == xt || d == ht || xt == ht {
		return fmt.Errorf("cuda: add+rmsnorm: dst, x and h must be three tensors")
	}
	dev := b.home(wt, xt)
	if err := b.inputs(dev, "add+rmsnorm", wt, xt, ht); err != nil {
		return err
	}
	if err := b.claim(d, dev, "add+rmsnorm"); err != nil {
		return err
	}
	return b.done("add+rmsnorm", dev, C.db_add_rmsnorm(dev.h, dtypeC(b.dtype), d.ptr, xt.ptr, ht.ptr, wt.ptr,
		C.size_t(n/g), C.int(g), C.float(eps)))
}

// ropeTable returns r.InvFreq on dev, uploading it once per RoPE and device.
func (b *Backend) ropeTable(r *backend.RoPE, dev *device) (unsafe.Pointer, error) {
	tabs := b.ropes[r]
	if tabs == nil {
		tabs = make([]unsafe.Pointer, len(b.devs))
		b.ropes[r] = tabs
	}
	if tabs[dev.idx] != nil {
		return tabs[dev.idx], nil
	}
	p, err := b.malloc(dev, int64(4*len(r.InvFreq)), "rope")
	if err != nil {
		return nil, err
	}
	if err := check("rope", dev.info.Ordinal, C.db_h2d(dev.h, p, unsafe.Pointer(&r.InvFreq[0]), C.size_t(4*len(r.InvFreq)))); err != nil {
		return nil, err
	}
	tabs[dev.idx] = p
	return p, nil
}

// ApplyRoPE implements backend.Backend.
func (b *Backend) ApplyRoPE(x backend.Tensor, positions []int32, r *backend.RoPE) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	xt, err := b.act(x, "rope", "x")
	if err != nil {
		return err
	}
	hd := r.HeadDim
	rows, width := backend.Rows(xt), backend.Cols(xt)
	if hd <= 0 || hd%2 != 0 || rows != len(positions) || width%hd != 0 || len(r.InvFreq) != hd/2 {
		return fmt.Errorf("cuda: rope over %v with %d positions and head dim %d", xt.shape, len(positions), hd)
	}
	for _, p := range positions {
		if p < 0 {
			return fmt.Errorf("cuda: negative position %d", p)
		}
	}
	if rows == 0 {
		return nil
	}
	dev := b.home(xt)
	if err := b.bring(xt, dev, "rope"); err != nil {
		return err
	}
	inv, err := b.ropeTable(r, dev)
	if err != nil {
		return err
	}
	return b.done("rope", dev, C.db_rope(dev.h, dtypeC(b.dtype), xt.ptr, (*C.int32_t)(unsafe.Pointer(&positions[0])),
		C.int(rows), C.int(width), C.int(hd), (*C.float)(inv), C.float(r.Scale)))
}

// SwiGLU implements backend.Backend.
func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "swiglu", "dst")
	if err != nil {
		return err
	}
	g, err := b.act(gate, "swiglu", "gate")
	if err != nil {
		return err
	}
	u, err := b.act(up, "swiglu", "up")
	if err != nil {
		return err
	}
	n := backend.Elems(g)
	if backend.Elems(u) != n || backend.Elems(d) != n {
		return fmt.Errorf("cuda: swiglu %v · %v into %v", g.shape, u.shape, d.shape)
	}
	dev := b.home(g, u)
	if err := b.inputs(dev, "swiglu", g, u); err != nil {
		return err
	}
	if err := b.output(d, dev, "swiglu", g, u); err != nil {
		return err
	}
	return b.done("swiglu", dev, C.db_swiglu(dev.h, dtypeC(b.dtype), d.ptr, g.ptr, u.ptr, C.size_t(n)))
}

// CopyRows implements backend.Backend. It runs where src lives; dst (which
// keeps its other rows) moves there if it lives elsewhere.
func (b *Backend) CopyRows(dst backend.Tensor, dstRow int, src backend.Tensor, srcRow, n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "copy rows", "dst")
	if err != nil {
		return err
	}
	s, err := b.act(src, "copy rows", "src")
	if err != nil {
		return err
	}
	w := backend.Cols(s)
	if backend.Cols(d) != w || dstRow < 0 || srcRow < 0 || n < 0 || dstRow+n > backend.Rows(d) || srcRow+n > backend.Rows(s) {
		return fmt.Errorf("cuda: copy %d rows from %v@%d into %v@%d", n, s.shape, srcRow, d.shape, dstRow)
	}
	if n == 0 {
		return nil
	}
	dev := b.home(s, d)
	if err := b.inputs(dev, "copy rows", s, d); err != nil {
		return err
	}
	es := int64(b.dtype.Size())
	return b.done("copy rows", dev, C.db_d2d(dev.h, unsafe.Add(d.ptr, int64(dstRow*w)*es),
		unsafe.Add(s.ptr, int64(srcRow*w)*es), C.size_t(int64(n*w)*es)))
}

// AppendKV implements backend.KVAppender: every sequence's new key and value
// rows into its caches in one launch. It runs where k lives; caches living
// elsewhere move there (as for Attention, which reads them next).
func (b *Backend) AppendKV(k, v backend.Tensor, seqs []backend.AttnSeq) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	kt, err := b.act(k, "append kv", "k")
	if err != nil {
		return err
	}
	vt, err := b.act(v, "append kv", "v")
	if err != nil {
		return err
	}
	w := backend.Cols(kt)
	if backend.Cols(vt) != w || backend.Rows(vt) != backend.Rows(kt) {
		return fmt.Errorf("cuda: append kv: k %v and v %v differ", kt.shape, vt.shape)
	}
	dev := b.home(kt)
	if err := b.inputs(dev, "append kv", kt, vt); err != nil {
		return err
	}
	cs := make([]C.db_attn_seq, len(seqs))
	for i, s := range seqs {
		kc, err := b.act(s.K, "append kv", "a K cache")
		if err != nil {
			return err
		}
		vc, err := b.act(s.V, "append kv", "a V cache")
		if err != nil {
			return err
		}
		if backend.Cols(kc) != w || backend.Cols(vc) != w || s.N < 0 || s.N > s.Len || s.Len > backend.Rows(kc) ||
			s.Len > backend.Rows(vc) || s.Row < 0 || s.Row+s.N > backend.Rows(kt) {
			return fmt.Errorf("cuda: append kv sequence %d: rows [%d,%d) of %v to [%d,%d) of %v", i, s.Row, s.Row+s.N,
				kt.shape, s.Len-s.N, s.Len, kc.shape)
		}
		if kc.dtype != kt.dtype || vc.dtype != kt.dtype || vt.dtype != kt.dtype {
			return fmt.Errorf("cuda: append kv: caches of %s and %s for k of %s", kc.dtype, vc.dtype, kt.dtype)
		}
		if kc == kt || kc == vt || vc == kt || vc == vt {
			return fmt.Errorf("cuda: append kv: a cache may not alias k or v")
		}
		if err := b.inputs(dev, "append kv", kc, vc); err != nil {
			return err
		}
		cs[i] = C.db_attn_seq{row: C.int(s.Row), n: C.int(s.N), len: C.int(s.Len), k: kc.ptr, v: vc.ptr}
	}
	if len(cs) == 0 {
		return nil
	}
	return b.done("append kv", dev, C.db_append_kv(dev.h, kt.ptr, vt.ptr, &cs[0], C.int(len(cs)), C.int(w),
		C.int(kt.dtype.Size())))
}

// FinishQKV implements backend.QKVFinisher (kernels/fused.cu).
func (b *Backend) FinishQKV(q, qkv, qNorm, kNorm backend.Tensor, eps float32, positions []int32, r *backend.RoPE,
	a backend.Attn, seqs []backend.AttnSeq) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	qt, err := b.act(q, "finish qkv", "q")
	if err != nil {
		return err
	}
	xt, err := b.act(qkv, "finish qkv", "qkv")
	if err != nil {
		return err
	}
	hd := a.HeadDim
	qw, kvw := a.Heads*hd, a.KVHeads*hd
	rows := backend.Rows(xt)
	if a.KVHeads <= 0 || a.Heads%a.KVHeads != 0 || hd <= 0 || hd%2 != 0 || backend.Cols(xt) != qw+2*kvw ||
		backend.Cols(qt) != qw || backend.Rows(qt) != rows || rows != len(positions) || r == nil || r.HeadDim != hd ||
		len(r.InvFreq) != hd/2 {
		return fmt.Errorf("cuda: finish qkv of %v into q %v with %d heads, %d kv heads, head dim %d, %d positions",
			xt.shape, qt.shape, a.Heads, a.KVHeads, hd, len(positions))
	}
	if (qNorm == nil) != (kNorm == nil) {
		return fmt.Errorf("cuda: finish qkv: the q and k norms come together")
	}
	for _, p := range positions {
		if p < 0 {
			return fmt.Errorf("cuda: negative position %d", p)
		}
	}
	// The norms are weights: the operation runs on their device (home).
	operands := []*Tensor{xt}
	var qnt, knt *Tensor
	if qNorm != nil {
		if qnt, err = b.act(qNorm, "finish qkv", "q norm"); err != nil {
			return err
		}
		if knt, err = b.act(kNorm, "finish qkv", "k norm"); err != nil {
			return err
		}
		if backend.Elems(qnt) != hd || backend.Elems(knt) != hd {
			return fmt.Errorf("cuda: finish qkv: norms of %v and %v for head dim %d", qnt.shape, knt.shape, hd)
		}
		operands = append([]*Tensor{qnt, knt}, operands...)
	}
	dev := b.home(operands...)
	if err := b.inputs(dev, "finish qkv", operands...); err != nil {
		return err
	}
	var qn, kn unsafe.Pointer
	if qnt != nil {
		qn, kn = qnt.ptr, knt.ptr
	}
	covered := 0
	cs := make([]C.db_attn_seq, len(seqs))
	for i, s := range seqs {
		kc, err := b.act(s.K, "finish qkv", "a K cache")
		if err != nil {
			return err
		}
		vc, err := b.act(s.V, "finish qkv", "a V cache")
		if err != nil {
			return err
		}
		if backend.Cols(kc) != kvw || backend.Cols(vc) != kvw || s.N < 0 || s.N > s.Len || s.Len > backend.Rows(kc) ||
			s.Len > backend.Rows(vc) || s.Row < 0 || s.Row+s.N > rows || kc.dtype != xt.dtype || vc.dtype != xt.dtype {
			return fmt.Errorf("cuda: finish qkv sequence %d: rows [%d,%d) of %v to [%d,%d) of %v", i, s.Row, s.Row+s.N,
				xt.shape, s.Len-s.N, s.Len, kc.shape)
		}
		if err := b.inputs(dev, "finish qkv", kc, vc); err != nil {
			return err
		}
		covered += s.N
		cs[i] = C.db_attn_seq{row: C.int(s.Row), n: C.int(s.N), len: C.int(s.Len), k: kc.ptr, v: vc.ptr}
	}
	if covered != rows {
		return fmt.Errorf("cuda: finish qkv: the sequences hold %d of the %d rows", covered, rows)
	}
	if rows == 0 {
		return nil
	}
	if qt == xt {
		return fmt.Errorf("cuda: finish qkv: q may not alias qkv")
	}
	if err := b.claim(qt, dev, "finish qkv"); err != nil {
		return err
	}
	inv, err := b.ropeTable(r, dev)
	if err != nil {
		return err
	}
	return b.done("finish qkv", dev, C.db_finish_qkv(dev.h, dtypeC(b.dtype), qt.ptr, xt.ptr, qn, kn, C.float(eps),
		(*C.int32_t)(unsafe.Pointer(&positions[0])), C.int(rows), (*C.float)(inv), C.float(r.Scale), &cs[0], C.int(len(cs)),
		C.int(a.Heads), C.int(a.KVHeads), C.int(hd)))
}

// SwiGLUPair implements backend.PairSwiGLU (kernels/fused.cu).
func (b *Backend) SwiGLUPair(dst, gu backend.Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "swiglu pair", "dst")
	if err != nil {
		return err
	}
	g, err := b.act(gu, "swiglu pair", "gu")
	if err != nil {
		return err
	}
	rows, inter := backend.Rows(g), backend.Cols(d)
	if backend.Cols(g) != 2*inter || backend.Rows(d) != rows {
		return fmt.Errorf("cuda: swiglu pair of %v into %v", g.shape, d.shape)
	}
	if d == g {
		return fmt.Errorf("cuda: swiglu pair: dst may not alias gu")
	}
	dev := b.home(g)
	if err := b.bring(g, dev, "swiglu pair"); err != nil {
		return err
	}
	if err := b.claim(d, dev, "swiglu pair"); err != nil {
		return err
	}
	return b.done("swiglu pair", dev, C.db_swiglu_pair(dev.h, dtypeC(b.dtype), d.ptr, g.ptr, C.size_t(rows), C.size_t(inter)))
}

// Attention implements backend.Backend (see kernels/attention.cu).
func (b *Backend) Attention(dst, q backend.Tensor, seqs []backend.AttnSeq, a backend.Attn) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.act(dst, "attention", "dst")
	if err != nil {
		return err
	}
	qt, err := b.act(q, "attention", "q")
	if err != nil {
		return err
	}
	hd := a.HeadDim
	qw, kvw := a.Heads*hd, a.KVHeads*hd
	if a.KVHeads <= 0 || a.Heads%a.KVHeads != 0 || hd <= 0 || hd > 256 || backend.Cols(qt) != qw || backend.Cols(d) != qw || backend.Rows(d) != backend.Rows(qt) {
		return fmt.Errorf("cuda: attention q %v into %v with %d heads, %d kv heads, head dim %d (at most 256)", qt.shape, d.shape, a.Heads, a.KVHeads, hd)
	}
	if d == qt {
		return fmt.Errorf("cuda: attention: dst may not alias q")
	}
	dev := b.home(qt)
	if err := b.bring(qt, dev, "attention"); err != nil {
		return err
	}
	cs := make([]C.db_attn_seq, len(seqs))
	for i, s := range seqs {
		k, err := b.act(s.K, "attention", "a K cache")
		if err != nil {
			return err
		}
		v, err := b.act(s.V, "attention", "a V cache")
		if err != nil {
			return err
		}
		if backend.Cols(k) != kvw || backend.Cols(v) != kvw || s.Len > backend.Rows(k) || s.Len > backend.Rows(v) ||
			s.N < 0 || s.N > s.Len || s.Row < 0 || s.Row+s.N > backend.Rows(qt) {
			return fmt.Errorf("cuda: attention sequence %d: rows [%d,%d) over %d cached positions of %v", i, s.Row, s.Row+s.N, s.Len, k.shape)
		}
		if err := b.inputs(dev, "attention", k, v); err != nil {
			return err
		}
		cs[i] = C.db_attn_seq{row: C.int(s.Row), n: C.int(s.N), len: C.int(s.Len), k: k.ptr, v: v.ptr}
	}
	if err := b.claim(d, dev, "attention"); err != nil {
		return err
	}
	if len(cs) == 0 {
		return nil
	}
	return b.done("attention", dev, C.db_attention(dev.h, dtypeC(b.dtype), d.ptr, qt.ptr, &cs[0], C.int(len(cs)),
		C.int(a.Heads), C.int(a.KVHeads), C.int(hd), C.float(a.Scale), C.int(a.Window)))
}

// MaskLogits sets the logits of ids >= limit to -inf in every row: the ids a
// padded vocabulary has but the tokenizer cannot produce.
func (b *Backend) MaskLogits(logits backend.Tensor, limit int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, err := b.act(logits, "mask logits", "logits")
	if err != nil {
		return err
	}
	v := backend.Cols(lt)
	if limit < 0 || limit > v {
		return fmt.Errorf("cuda: mask logits: limit %d outside a vocabulary of %d", limit, v)
	}
	dev := b.home(lt)
	if err := b.bring(lt, dev, "mask logits"); err != nil {
		return err
	}
	return b.done("mask logits", dev, C.db_mask_logits(dev.h, dtypeC(b.dtype), lt.ptr, C.int(backend.Rows(lt)), C.int(v), C.int(limit)))
}

// Argmax is sampling.Argmax for every row of logits [rows, vocab] (limit 0:
// the whole row); it waits for the result.
func (b *Backend) Argmax(logits backend.Tensor, limit int) ([]int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, err := b.act(logits, "argmax", "logits")
	if err != nil {
		return nil, err
	}
	rows := backend.Rows(lt)
	out := make([]int32, rows)
	if rows == 0 {
		return out, nil
	}
	dev := b.home(lt)
	if err := b.bring(lt, dev, "argmax"); err != nil {
		return nil, err
	}
	err = check("argmax", dev.info.Ordinal, C.db_argmax(dev.h, dtypeC(b.dtype), lt.ptr, C.int(rows), C.int(backend.Cols(lt)),
		C.int(limit), (*C.int32_t)(unsafe.Pointer(&out[0]))))
	return out, err
}

// ArgmaxMargin implements backend.Picker: sampling.ArgmaxMargin of every
// row of logits [rows, vocab] on the device; only the ids and margins come
// back to the host. It waits for them.
func (b *Backend) ArgmaxMargin(logits backend.Tensor, limit int) ([]int32, []float32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, err := b.act(logits, "argmax margin", "logits")
	if err != nil {
		return nil, nil, err
	}
	rows := backend.Rows(lt)
	ids, margins := make([]int32, rows), make([]float32, rows)
	if rows == 0 {
		return ids, margins, nil
	}
	dev := b.home(lt)
	if err := b.bring(lt, dev, "argmax margin"); err != nil {
		return nil, nil, err
	}
	defer b.waited(time.Now())
	err = check("argmax margin", dev.info.Ordinal, C.db_argmax_margin(dev.h, dtypeC(b.dtype), lt.ptr, C.int(rows),
		C.int(backend.Cols(lt)), C.int(limit), (*C.int32_t)(unsafe.Pointer(&ids[0])), (*C.float)(unsafe.Pointer(&margins[0]))))
	return ids, margins, err
}

// Probs is sampling.Probs for every row of logits: a new f32 tensor
// [rows, vocab] of probabilities after temperature, top-k and top-p (one-hot
// at the argmax for temperature 0), ids >= p.VocabLimit at zero.
func (b *Backend) Probs(logits backend.Tensor, p sampling.Params) (backend.Tensor, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	lt, err := b.act(logits, "probs", "logits")
	if err != nil {
		return nil, err
	}
	rows, v := backend.Rows(lt), backend.Cols(lt)
	dev := b.home(lt)
	if err := b.bring(lt, dev, "probs"); err != nil {
		return nil, err
	}
	out := &Tensor{shape: []int{rows, v}, dtype: backend.F32}
	if err := b.allocActivation(out, dev, "probs"); err != nil {
		return nil, err
	}
	if err := check("probs", dev.info.Ordinal, C.db_probs(dev.h, dtypeC(b.dtype), (*C.float)(out.ptr), lt.ptr, C.int(rows), C.int(v),
		C.float(p.Temperature), C.int(p.TopK), C.float(p.TopP), C.int(p.VocabLimit))); err != nil {
		b.release(out)
		return nil, err
	}
	return out, nil
}

// f32 checks a probability tensor made by Probs.
func (b *Backend) f32(t backend.Tensor, op, what string) (*Tensor, error) {
	ct, err := b.tensor(t, op, what)
	if err != nil {
		return nil, err
	}
	if ct.dtype != backend.F32 || ct.dev == nil {
		return nil, fmt.Errorf("cuda: %s: %s must be an f32 tensor written on the device (from Probs)", op, what)
	}
	return ct, nil
}

// Sample draws one id per row of probs (sampling.Sample) at the uniform u[row].
func (b *Backend) Sample(probs backend.Tensor, u []float32) ([]int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pt, err := b.f32(probs, "sample", "probs")
	if err != nil {
		return nil, err
	}
	rows := backend.Rows(pt)
	if len(u) != rows {
		return nil, fmt.Errorf("cuda: sample: %d uniforms for %d rows", len(u), rows)
	}
	out := make([]int32, rows)
	if rows == 0 {
		return out, nil
	}
	dev := pt.dev
	err = check("sample", dev.info.Ordinal, C.db_sample(dev.h, (*C.float)(pt.ptr), C.int(rows), C.int(backend.Cols(pt)),
		(*C.float)(unsafe.Pointer(&u[0])), (*C.int32_t)(unsafe.Pointer(&out[0]))))
	return out, err
}

// TopKSparse implements backend.TopKer: sampling.TopKSparse(row, k) of each
// row of probs (from Probs), to the bit. The device finds each row's
// candidates (the ids at or above its k-th largest probability) and only
// those come back; a row with more tied candidates than fit (or k <= 0,
// which keeps every live id) is read whole and cut on the host.
func (b *Backend) TopKSparse(probs backend.Tensor, k int) ([]sampling.Sparse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pt, err := b.f32(probs, "top-k", "probs")
	if err != nil {
		return nil, err
	}
	rows, vocab := backend.Rows(pt), backend.Cols(pt)
	out := make([]sampling.Sparse, rows)
	if rows == 0 {
		return out, nil
	}
	dev := pt.dev
	defer b.waited(time.Now())
	whole := func(r int) (sampling.Sparse, error) {
		row := make([]float32, vocab)
		err := check("top-k (reading a row)", dev.info.Ordinal, C.db_d2h(dev.h, unsafe.Pointer(&row[0]),
			unsafe.Add(pt.ptr, r*vocab*4), C.size_t(4*vocab)))
		return sampling.TopKSparse(row, k), err
	}
	if k <= 0 {
		for r := range out {
			if out[r], err = whole(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	room := max(256, 4*k)
	ids, vals := make([]int32, rows*room), make([]float32, rows*room)
	counts, lives := make([]int32, rows), make([]int32, rows)
	if err := check("top-k", dev.info.Ordinal, C.db_topk(dev.h, (*C.float)(pt.ptr), C.int(rows), C.int(vocab), C.int(k),
		C.int(room), (*C.int32_t)(unsafe.Pointer(&ids[0])), (*C.float)(unsafe.Pointer(&vals[0])),
		(*C.int32_t)(unsafe.Pointer(&counts[0])), (*C.int32_t)(unsafe.Pointer(&lives[0])))); err != nil {
		return nil, err
	}
	for r := range out {
		n := int(counts[r])
		if n > room {
			if out[r], err = whole(r); err != nil {
				return nil, err
			}
			continue
		}
		out[r] = sampling.TopKOfCandidates(ids[r*room:r*room+n], vals[r*room:r*room+n], int(lives[r]), k)
	}
	return out, nil
}

// Verify applies the acceptance rule of speculative decoding on the device
// to p, the target's probabilities [gamma+1, vocab] (from Probs), for the
// drafts and their draft distributions q: the semantics of spec.Verify,
// except that the uniforms are given rather than drawn as needed: draft i is
// accepted when uAccept[i]·q_i(x) < p_i(x), a rejection at i samples the
// residual at uResidual[i], and the bonus token is sampled at uBonus.
// It returns the number of accepted drafts and the token that follows them.
func (b *Backend) Verify(p backend.Tensor, drafts []int32, q []sampling.Sparse, greedy bool,
	uAccept, uResidual []float32, uBonus float32) (int, int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pt, err := b.f32(p, "verify", "p")
	if err != nil {
		return 0, 0, err
	}
	gamma := len(drafts)
	if backend.Rows(pt) != gamma+1 {
		return 0, 0, fmt.Errorf("cuda: verify: %d target rows for %d drafts, want %d", backend.Rows(pt), gamma, gamma+1)
	}
	for i, x := range drafts {
		if x < 0 {
			return 0, 0, fmt.Errorf("cuda: verify: draft %d is token %d", i+1, x)
		}
	}
	var ids []int32
	var probs []float32
	off := make([]int32, gamma+1)
	g := C.int(0)
	if greedy {
		g = 1
	} else {
		if len(q) != gamma || len(uAccept) != gamma || len(uResidual) != gamma {
			return 0, 0, fmt.Errorf("cuda: verify: %d drafts with %d distributions and %d+%d uniforms", gamma, len(q), len(uAccept), len(uResidual))
		}
		ids, probs, off = packSparse(q)
	}
	ptr32 := func(s []int32) *C.int32_t {
		if len(s) == 0 {
			return nil
		}
		return (*C.int32_t)(unsafe.Pointer(&s[0]))
	}
	ptrF := func(s []float32) *C.float {
		if len(s) == 0 {
			return nil
		}
		return (*C.float)(unsafe.Pointer(&s[0]))
	}
	var acc, tok C.int32_t
	dev := pt.dev
	if err := check("verify", dev.info.Ordinal, C.db_verify(dev.h, (*C.float)(pt.ptr), C.int(backend.Cols(pt)), C.int(gamma),
		ptr32(drafts), ptr32(ids), ptrF(probs), ptr32(off), g, ptrF(uAccept), ptrF(uResidual), C.float(uBonus), &acc, &tok)); err != nil {
		return 0, 0, err
	}
	switch tok {
	case -2:
		return 0, 0, fmt.Errorf("cuda: verify: %w: draft %d (token %d) has probability 0 in its own q; the drafter must sample from the q it sends",
			backend.ErrBadDraft, int(acc)+1, drafts[acc])
	case -3:
		return 0, 0, fmt.Errorf("cuda: verify: %w: target distribution %d has no probability mass: %w", backend.ErrBadDraft, int(acc)+1,
			sampling.ErrNoUsableLogit)
	}
	return int(acc), int32(tok), nil
}
