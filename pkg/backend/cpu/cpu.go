// Package cpu is the CPU backend: f32 compute; bf16 weight matrices stay
// bf16 and go through this package's own kernels (bf16.c), f32 ones through
// OpenBLAS (cgo, Debian's libopenblas-dev); attention in C (attention.c),
// the rest in Go. With bf16 weights the backend is batch-invariant: a
// token's logits do not depend on what else shares its forward pass.
package cpu

/*
#cgo LDFLAGS: -lopenblas -lm
#cgo CFLAGS: -O3
#include <cblas.h>
#include "bf16.h"
#include "attention.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// Tensor is a host array of float32, or of bf16 for weight matrices
// (MatMul's w, Embed's table) loaded from bf16 checkpoints.
type Tensor struct {
	shape []int
	data  []float32
	bf    []uint16 // set instead of data for bf16 weights
}

// Shape implements backend.Tensor.
func (t *Tensor) Shape() []int { return t.shape }

// DType implements backend.Tensor: f32, or bf16 for weight matrices.
func (t *Tensor) DType() backend.DType {
	if t.bf != nil {
		return backend.BF16
	}
	return backend.F32
}

// Data exposes the backing array (tests, and stages sending hidden states).
func (t *Tensor) Data() []float32 { return t.data }

// Backend is the CPU backend. The zero value is not usable; call New.
type Backend struct {
	mu          sync.Mutex
	ropes       map[*backend.RoPE]*ropeTable
	f32Weights  bool
	bf16Weights bool // f32 and f16 weight matrices narrowed to bf16 at load
	threads     int
}

var _ backend.Backend = (*Backend)(nil)

// New returns a CPU backend using threads goroutines for its kernels (0 = all
// cores). OpenBLAS itself runs single-threaded: the backend splits GEMMs and
// attention heads over goroutines, so small products (attention, decode)
// never pay for OpenBLAS's thread hand-off, and nothing is oversubscribed.
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	C.openblas_set_num_threads(1)
	return &Backend{ropes: map[*backend.RoPE]*ropeTable{}, threads: threads}
}

// NewF32 is New, but widens bf16 weights to f32 at load (more memory, and
// more bytes per token; the arithmetic is the same).
func NewF32(threads int) *Backend {
	b := New(threads)
	b.f32Weights = true
	return b
}

// ForDType is the CPU backend for a job's model dtype: "auto" (or "") keeps
// bf16 weights in bf16 and computes f16/f32 ones in f32, "bf16" also narrows
// f32 and f16 weight matrices to bf16 (half the bytes per token), "f32"
// widens every weight to f32. The CPU has no f16 kernels.
func ForDType(dtype string, threads int) (*Backend, error) {
	switch dtype {
	case "", "auto":
		return New(threads), nil
	case "bf16":
		b := New(threads)
		b.bf16Weights = true
		return b, nil
	case "f32":
		return NewF32(threads), nil
	}
	return nil, fmt.Errorf("cpu: dtype %q: the CPU backend stores weights in bf16 or f32 (dtype auto, bf16 or f32)", dtype)
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "cpu" }

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Load implements backend.Backend.
func (b *Backend) Load(shape []int, src backend.DType, raw []byte) (backend.Tensor, error) {
	n := numel(shape)
	if len(raw) != n*src.Size() {
		return nil, fmt.Errorf("cpu: %d bytes of %s do not make a tensor of shape %v", len(raw), src, shape)
	}
	if src == backend.BF16 && len(shape) == 2 && !b.f32Weights {
		// Weight matrices stay bf16: half the bytes to stream per token.
		t := &Tensor{shape: append([]int(nil), shape...), bf: make([]uint16, n)}
		for i := range t.bf {
			t.bf[i] = uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
		}
		return t, nil
	}
	t := &Tensor{shape: append([]int(nil), shape...), data: make([]float32, n)}
	var st safetensors.DType
	switch src {
	case backend.F32:
		st = "F32"
	case backend.BF16:
		st = "BF16"
	case backend.F16:
		st = "F16"
	}
	if err := safetensors.ToFloat32(t.data, st, raw); err != nil {
		return nil, err
	}
	if b.bf16Weights && len(shape) == 2 {
		t.bf = make([]uint16, n)
		for i, f := range t.data {
			t.bf[i] = safetensors.Float32ToBF16(f)
		}
		t.data = nil
	}
	return t, nil
}

// New implements backend.Backend.
func (b *Backend) New(shape ...int) backend.Tensor {
	return &Tensor{shape: append([]int(nil), shape...), data: make([]float32, numel(shape))}
}

// FromSlice wraps host data as a tensor without copying.
func FromSlice(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("cpu.FromSlice: %d elements for shape %v", len(data), shape))
	}
	return &Tensor{shape: shape, data: data}
}

func tensor(t backend.Tensor) *Tensor {
	ct, ok := t.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cpu backend given a %T tensor", t))
	}
	return ct
}

// Write implements backend.Backend.
func (b *Backend) Write(t backend.Tensor, src []float32) error {
	ct := tensor(t)
	if err := checkF32(ct); err != nil {
		return err
	}
	if len(src) != len(ct.data) {
		return fmt.Errorf("cpu: writing %d floats into a tensor of %d", len(src), len(ct.data))
	}
	copy(ct.data, src)
	return nil
}

// ArgmaxMargin implements backend.Picker on the rows in place (no copy of
// the logits).
func (b *Backend) ArgmaxMargin(logits backend.Tensor, limit int) ([]int32, []float32, error) {
	ct := tensor(logits)
	if err := checkF32(ct); err != nil {
		return nil, nil, err
	}
	rows, cols := backend.Rows(ct), backend.Cols(ct)
	ids, margins := make([]int32, rows), make([]float32, rows)
	for r := range ids {
		x, m := sampling.ArgmaxMargin(ct.data[r*cols:(r+1)*cols], limit)
		ids[r], margins[r] = int32(x), m
	}
	return ids, margins, nil
}

// Read implements backend.Backend.
func (b *Backend) Read(t backend.Tensor, dst []float32) error {
	ct := tensor(t)
	if ct.bf != nil {
		if len(dst) != len(ct.bf) {
			return fmt.Errorf("cpu: reading a tensor of %d values into %d", len(ct.bf), len(dst))
		}
		if len(dst) > 0 {
			C.dbcpu_bf16_to_f32((*C.uint16_t)(unsafe.Pointer(&ct.bf[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.long(len(dst)))
		}
		return nil
	}
	if len(dst) != len(ct.data) {
		return fmt.Errorf("cpu: reading a tensor of %d floats into %d", len(ct.data), len(dst))
	}
	copy(dst, ct.data)
	return nil
}

// Free implements backend.Backend; the garbage collector owns CPU memory.
func (b *Backend) Free(t backend.Tensor) {
	if ct, ok := t.(*Tensor); ok {
		ct.data, ct.bf = nil, nil
	}
}

// Embed implements backend.Backend.
func (b *Backend) Embed(dst, table backend.Tensor, ids []int32) error {
	d, tb := tensor(dst), tensor(table)
	h := backend.Cols(tb)
	v := backend.Rows(tb)
	if backend.Rows(d) != len(ids) || backend.Cols(d) != h {
		return fmt.Errorf("cpu: embed into %v from %v for %d ids", d.shape, tb.shape, len(ids))
	}
	for _, id := range ids {
		if id < 0 || int(id) >= v {
			return fmt.Errorf("cpu: token id %d outside the embedding table (%d rows)", id, v)
		}
	}
	if tb.bf != nil {
		embedBF16(d.data, tb.bf, h, ids)
		return nil
	}
	for i, id := range ids {
		copy(d.data[i*h:(i+1)*h], tb.data[int(id)*h:(int(id)+1)*h])
	}
	return nil
}

// MatMul implements backend.Backend with cblas_sgemm (sgemv for one row).
func (b *Backend) MatMul(dst, x, w backend.Tensor) error {
	d, xt, wt := tensor(dst), tensor(x), tensor(w)
	m, k := backend.Rows(xt), backend.Cols(xt)
	n := backend.Rows(wt)
	if backend.Cols(wt) != k || backend.Rows(d) != m || backend.Cols(d) != n {
		return fmt.Errorf("cpu: matmul %v · %vᵀ into %v", xt.shape, wt.shape, d.shape)
	}
	if m == 0 {
		return nil
	}
	if err := checkF32(d, xt); err != nil {
		return err
	}
	if wt.bf != nil {
		matmulBF16(b.threads, d.data, xt.data, wt.bf, m, n, k)
		return nil
	}
	parallel(b.threads, n, 64, func(n0, n1 int) {
		if m == 1 {
			C.cblas_sgemv(C.CblasRowMajor, C.CblasNoTrans, C.blasint(n1-n0), C.blasint(k), 1,
				(*C.float)(unsafe.Pointer(&wt.data[n0*k])), C.blasint(k),
				(*C.float)(unsafe.Pointer(&xt.data[0])), 1, 0,
				(*C.float)(unsafe.Pointer(&d.data[n0])), 1)
			return
		}
		C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans, C.blasint(m), C.blasint(n1-n0), C.blasint(k), 1,
			(*C.float)(unsafe.Pointer(&xt.data[0])), C.blasint(k),
			(*C.float)(unsafe.Pointer(&wt.data[n0*k])), C.blasint(k), 0,
			(*C.float)(unsafe.Pointer(&d.data[n0])), C.blasint(n))
	})
	return nil
}

// parallel splits [0, n) into up to workers contiguous ranges of at least
// grain items and runs f on each, in goroutines.
func parallel(workers, n, grain int, f func(lo, hi int)) {
	w := min(workers, max(1, n/grain))
	if w <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := n*i/w, n*(i+1)/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// AddBias implements backend.Backend.
func (b *Backend) AddBias(dst, bias backend.Tensor) error {
	d, bt := tensor(dst), tensor(bias)
	n := len(bt.data)
	if backend.Cols(d) != n {
		return fmt.Errorf("cpu: bias of %d for rows of %d", n, backend.Cols(d))
	}
	for r := 0; r < len(d.data); r += n {
		row := d.data[r : r+n]
		for i, v := range bt.data {
			row[i] += v
		}
	}
	return nil
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x, y backend.Tensor) error {
	d, a, c := tensor(dst), tensor(x), tensor(y)
	if len(a.data) != len(c.data) || len(d.data) != len(a.data) {
		return fmt.Errorf("cpu: add %v + %v into %v", a.shape, c.shape, d.shape)
	}
	for i := range d.data {
		d.data[i] = a.data[i] + c.data[i]
	}
	return nil
}

// RMSNorm implements backend.Backend; the mean of squares accumulates in float64.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, eps float32) error {
	d, xt, wt := tensor(dst), tensor(x), tensor(w)
	g := len(wt.data)
	if len(xt.data)%g != 0 || len(d.data) != len(xt.data) {
		return fmt.Errorf("cpu: rmsnorm of %v by a weight of %d into %v", xt.shape, g, d.shape)
	}
	for r := 0; r < len(xt.data); r += g {
		row := xt.data[r : r+g]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(g)+float64(eps)))
		out := d.data[r : r+g]
		for i, v := range row {
			out[i] = wt.data[i] * (v * inv)
		}
	}
	return nil
}

// SwiGLU implements backend.Backend.
func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) error {
	d, g, u := tensor(dst), tensor(gate), tensor(up)
	if len(g.data) != len(u.data) || len(d.data) != len(g.data) {
		return fmt.Errorf("cpu: swiglu %v · %v into %v", g.shape, u.shape, d.shape)
	}
	if len(g.data) == 0 {
		return nil
	}
	parallel(b.threads, len(g.data), 1<<14, func(lo, hi int) {
		C.dbcpu_swiglu((*C.float)(unsafe.Pointer(&g.data[lo])), (*C.float)(unsafe.Pointer(&u.data[lo])),
			(*C.float)(unsafe.Pointer(&d.data[lo])), C.long(hi-lo))
	})
	return nil
}

// CopyRows implements backend.Backend.
func (b *Backend) CopyRows(dst backend.Tensor, dstRow int, src backend.Tensor, srcRow, n int) error {
	d, s := tensor(dst), tensor(src)
	w := backend.Cols(s)
	if backend.Cols(d) != w || dstRow < 0 || srcRow < 0 || (dstRow+n)*w > len(d.data) || (srcRow+n)*w > len(s.data) {
		return fmt.Errorf("cpu: copy %d rows from %v@%d into %v@%d", n, s.shape, srcRow, d.shape, dstRow)
	}
	copy(d.data[dstRow*w:(dstRow+n)*w], s.data[srcRow*w:(srcRow+n)*w])
	return nil
}

// ropeTable caches cos/sin per position for one RoPE (shared by all layers).
type ropeTable struct {
	mu       sync.RWMutex
	cos, sin []float32 // [positions, HeadDim/2]
}

func (b *Backend) table(r *backend.RoPE, maxPos int) *ropeTable {
	b.mu.Lock()
	t := b.ropes[r]
	if t == nil {
		t = &ropeTable{}
		b.ropes[r] = t
	}
	b.mu.Unlock()
	half := r.HeadDim / 2
	t.mu.RLock()
	have := len(t.cos) / half
	t.mu.RUnlock()
	if have > maxPos {
		return t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	have = len(t.cos) / half
	n := max(maxPos+1, 2*have, 256)
	for p := have; p < n; p++ {
		for i := 0; i < half; i++ {
			// Like transformers: the angle is an f32 product, cos/sin of that f32.
			ang := float32(p) * r.InvFreq[i]
			t.cos = append(t.cos, float32(math.Cos(float64(ang)))*r.Scale)
			t.sin = append(t.sin, float32(math.Sin(float64(ang)))*r.Scale)
		}
	}
	return t
}

// ApplyRoPE implements backend.Backend (rotate-half layout).
func (b *Backend) ApplyRoPE(x backend.Tensor, positions []int32, r *backend.RoPE) error {
	xt := tensor(x)
	hd := r.HeadDim
	half := hd / 2
	rows := backend.Rows(xt)
	width := backend.Cols(xt)
	if rows != len(positions) || width%hd != 0 || len(r.InvFreq) != half {
		return fmt.Errorf("cpu: rope over %v with %d positions and head dim %d", xt.shape, len(positions), hd)
	}
	maxPos := int32(0)
	for _, p := range positions {
		if p < 0 {
			return fmt.Errorf("cpu: negative position %d", p)
		}
		maxPos = max(maxPos, p)
	}
	t := b.table(r, int(maxPos))
	t.mu.RLock()
	defer t.mu.RUnlock()
	for row, p := range positions {
		cos := t.cos[int(p)*half : int(p)*half+half]
		sin := t.sin[int(p)*half : int(p)*half+half]
		line := xt.data[row*width : (row+1)*width]
		for h := 0; h < width; h += hd {
			x1 := line[h : h+half]
			x2 := line[h+half : h+hd]
			for i := 0; i < half; i++ {
				a, c := x1[i], x2[i]
				x1[i] = a*cos[i] - c*sin[i]
				x2[i] = c*cos[i] + a*sin[i]
			}
		}
	}
	return nil
}

// Attention implements backend.Backend: per sequence and head, one query row
// at a time in C (attention.c), heads spread over goroutines.
func (b *Backend) Attention(dst, q backend.Tensor, seqs []backend.AttnSeq, a backend.Attn) error {
	d, qt := tensor(dst), tensor(q)
	hd := a.HeadDim
	qw := a.Heads * hd
	kvw := a.KVHeads * hd
	if a.KVHeads == 0 || a.Heads%a.KVHeads != 0 || backend.Cols(qt) != qw || backend.Cols(d) != qw || backend.Rows(d) != backend.Rows(qt) {
		return fmt.Errorf("cpu: attention q %v into %v with %d heads, %d kv heads, head dim %d", qt.shape, d.shape, a.Heads, a.KVHeads, hd)
	}
	group := a.Heads / a.KVHeads
	for _, s := range seqs {
		k, v := tensor(s.K), tensor(s.V)
		if backend.Cols(k) != kvw || backend.Cols(v) != kvw || s.Len > backend.Rows(k) || s.N > s.Len || s.Row+s.N > backend.Rows(qt) {
			return fmt.Errorf("cpu: attention sequence rows [%d,%d) over %d cached positions of %v", s.Row, s.Row+s.N, s.Len, k.shape)
		}
	}
	// One job per (sequence, head), split over the threads in contiguous
	// runs of about equal cost (rows × positions): a handful of goroutines
	// per call, no channel hand-off per head.
	type job struct {
		s    backend.AttnSeq
		h    int
		cost int
	}
	var jobs []job
	total := 0
	for _, s := range seqs {
		if s.N == 0 {
			continue
		}
		for h := 0; h < a.Heads; h++ {
			c := s.N * s.Len
			jobs = append(jobs, job{s, h, c})
			total += c
		}
	}
	run := func(part []job) {
		var scores []float32
		for _, j := range part {
			scores = attendHead(d.data, qt.data, tensor(j.s.K).data, tensor(j.s.V).data, j.s, j.h, j.h/group, a, qw, kvw, scores)
		}
	}
	workers := min(b.threads, len(jobs))
	if workers <= 1 {
		run(jobs)
		return nil
	}
	var wg sync.WaitGroup
	start, acc := 0, 0
	for w := 1; w <= workers && start < len(jobs); w++ {
		end := start
		for end < len(jobs) && (w == workers || acc < total*w/workers) {
			acc += jobs[end].cost
			end++
		}
		part := jobs[start:end]
		start = end
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(part)
		}()
	}
	wg.Wait()
	return nil
}

// attendHead computes one head of one sequence; scores is reusable scratch.
func attendHead(out, q, k, v []float32, s backend.AttnSeq, h, kh int, a backend.Attn, qw, kvw int, scores []float32) []float32 {
	if cap(scores) < s.Len {
		scores = make([]float32, s.Len)
	}
	scores = scores[:s.Len]
	hd := a.HeadDim
	C.dbcpu_attend_head((*C.float)(unsafe.Pointer(&q[s.Row*qw+h*hd])), C.int(qw),
		(*C.float)(unsafe.Pointer(&k[kh*hd])), (*C.float)(unsafe.Pointer(&v[kh*hd])), C.int(kvw),
		(*C.float)(unsafe.Pointer(&out[s.Row*qw+h*hd])), C.int(qw),
		C.int(s.N), C.int(s.Len), C.int(hd), C.float(a.Scale), C.int(a.Window), (*C.float)(unsafe.Pointer(&scores[0])))
	return scores
}
