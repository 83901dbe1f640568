package selftest

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// TestCPU runs every check on the CPU backend: with bf16 weight matrices
// (its bf16 kernels), with f32 weights, and from an f16 checkpoint, the f32
// backend as reference.
func TestCPU(t *testing.T) {
	tests := []struct {
		name string
		b    backend.Backend
		wdt  backend.DType
	}{
		{"bf16 weights", cpu.New(2), backend.BF16},
		{"f32 weights", cpu.NewF32(2), backend.F32},
		{"f16 checkpoint", cpu.New(2), backend.F16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Run(tt.b, Config{Seed: 7, Reference: cpu.NewF32(2), WeightDType: tt.wdt})
			var buf bytes.Buffer
			if err := WriteTable(&buf, "cpu", rs); err != nil {
				t.Fatal(err)
			}
			if n := Failed(rs); n > 0 {
				t.Errorf("%d checks failed:\n%s", n, buf.String())
			}
			ran := map[string]bool{}
			for _, r := range rs {
				if r.Skipped == "" {
					ran[r.Op] = true
					if math.IsNaN(r.RefErr) {
						t.Errorf("%s %s: the reference backend did not run", r.Op, r.Case)
					}
				}
			}
			for _, op := range []string{"embed", "matmul", "add_bias", "add", "rmsnorm", "rope", "swiglu", "copy_rows", "attention", "load"} {
				if !ran[op] {
					t.Errorf("no %s check ran on the CPU backend", op)
				}
			}
			if !strings.Contains(buf.String(), "selftest cpu: ") {
				t.Errorf("the table has no closing count:\n%s", buf.String())
			}
		})
	}
}

// hostOps gives the CPU backend the optional device operations, computed on
// the host with pkg/sampling, so the checks of those operations run here.
// Its fields break one operation each, to show the checks catch it.
type hostOps struct {
	*cpu.Backend
	breakProbsTopK    bool
	breakNoMass       bool // Probs: the old point mass on id 0 for a row without a usable logit
	breakArgmax       bool
	breakVerify       bool
	breakRandomSeed   bool
	breakMatMulRow    bool
	breakAttnWindow   bool
	breakNormScale    float32
	breakSampleOffset bool
	breakAppendLast   bool
	breakQKNorm       bool // finish_qkv skips the k norm
	breakPairHalves   bool // swiglu_pair swaps gate and up
	breakTieMargin    bool // argmax_margin takes the runner-up's gap, ignoring a tie
	breakTopKTies     bool // topk_sparse drops the tied candidates at the k-th place
}

// TopKSparse works as the CUDA kernel does: candidates at or above the k-th
// largest probability (all live ids when there are at most k), at most 256
// of them, else the whole row; then sampling.TopKOfCandidates.
func (h *hostOps) TopKSparse(probs backend.Tensor, k int) ([]sampling.Sparse, error) {
	v, cols := h.read(probs), backend.Cols(probs)
	out := make([]sampling.Sparse, backend.Rows(probs))
	for r := range out {
		row := v[r*cols : (r+1)*cols]
		var live []float32
		for _, p := range row {
			if p > 0 {
				live = append(live, p)
			}
		}
		var t float32
		if k > 0 && len(live) > k {
			slices.Sort(live)
			t = live[len(live)-k]
		}
		var ids []int32
		var vals []float32
		for i, p := range row {
			if p > 0 && p >= t && !(h.breakTopKTies && p == t && k < len(live)) {
				ids, vals = append(ids, int32(i)), append(vals, p)
			}
		}
		if len(ids) > 256 || k <= 0 {
			out[r] = sampling.TopKSparse(row, k)
			continue
		}
		out[r] = sampling.TopKOfCandidates(ids, vals, len(live), k)
	}
	return out, nil
}

func (h *hostOps) ArgmaxMargin(logits backend.Tensor, limit int) ([]int32, []float32, error) {
	ids, ms, err := h.Backend.ArgmaxMargin(logits, limit)
	if h.breakTieMargin {
		for r := range ms {
			if ms[r] == 0 {
				ms[r] = 1e-3
			}
		}
	}
	return ids, ms, err
}

func (h *hostOps) FinishQKV(q, qkv, qNorm, kNorm backend.Tensor, eps float32, positions []int32, r *backend.RoPE,
	a backend.Attn, seqs []backend.AttnSeq) error {
	if h.breakQKNorm && kNorm != nil {
		kNorm = h.ones(backend.Elems(kNorm))
	}
	return backend.FinishQKVOnHost(h.Backend, q, qkv, qNorm, kNorm, eps, positions, r, a, seqs)
}

// ones is a weight of n ones (an RMSNorm that only normalises).
func (h *hostOps) ones(n int) backend.Tensor {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	t := h.New(n)
	if err := h.Write(t, v); err != nil {
		panic(err)
	}
	return t
}

func (h *hostOps) SwiGLUPair(dst, gu backend.Tensor) error {
	if h.breakPairHalves {
		rows, inter := backend.Rows(gu), backend.Cols(dst)
		v := h.read(gu)
		for r := 0; r < rows; r++ {
			row := v[r*2*inter : (r+1)*2*inter]
			for i := 0; i < inter; i++ {
				row[i], row[inter+i] = row[inter+i], row[i]
			}
		}
		sw := h.New(rows, 2*inter)
		if err := h.Write(sw, v); err != nil {
			return err
		}
		gu = sw
	}
	return backend.SwiGLUPairOnHost(h.Backend, dst, gu)
}

// AppendKV is backend.AppendKV's CopyRows path; breakAppendLast drops the
// last row of the last sequence.
func (h *hostOps) AppendKV(k, v backend.Tensor, seqs []backend.AttnSeq) error {
	for i, s := range seqs {
		n := s.N
		if h.breakAppendLast && i == len(seqs)-1 {
			n--
		}
		if err := h.CopyRows(s.K, s.Len-s.N, k, s.Row, n); err != nil {
			return err
		}
		if err := h.CopyRows(s.V, s.Len-s.N, v, s.Row, n); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostOps) read(t backend.Tensor) []float32 {
	v := make([]float32, backend.Elems(t))
	if err := h.Read(t, v); err != nil {
		panic(err)
	}
	return v
}

func (h *hostOps) AddRMSNorm(dst, x, hh, w backend.Tensor, eps float32) error {
	if err := h.Add(x, x, hh); err != nil {
		return err
	}
	return h.RMSNorm(dst, x, w, eps)
}

func (h *hostOps) MaskLogits(logits backend.Tensor, limit int) error {
	v := h.read(logits)
	cols := backend.Cols(logits)
	for i := range v {
		if i%cols >= limit {
			v[i] = float32(math.Inf(-1))
		}
	}
	return h.Write(logits, v)
}

func (h *hostOps) Argmax(logits backend.Tensor, limit int) ([]int32, error) {
	v, cols := h.read(logits), backend.Cols(logits)
	out := make([]int32, backend.Rows(logits))
	for r := range out {
		out[r] = int32(sampling.Argmax(v[r*cols:(r+1)*cols], limit))
		if h.breakArgmax && r == 1 {
			out[r]++
		}
	}
	return out, nil
}

func (h *hostOps) Probs(logits backend.Tensor, p sampling.Params) (backend.Tensor, error) {
	v, cols := h.read(logits), backend.Cols(logits)
	if h.breakProbsTopK {
		p.TopK = 0
	}
	out := make([]float32, 0, len(v))
	for r := 0; r < backend.Rows(logits); r++ {
		row := sampling.Probs(v[r*cols:(r+1)*cols], p)
		if h.breakNoMass && !slices.ContainsFunc(row, func(x float32) bool { return x > 0 }) {
			row[0] = 1 // the old fallback: a point mass on id 0
		}
		out = append(out, row...)
	}
	return cpu.FromSlice(out, backend.Rows(logits), cols), nil
}

func (h *hostOps) Sample(probs backend.Tensor, u []float32) ([]int32, error) {
	v, cols := h.read(probs), backend.Cols(probs)
	out := make([]int32, len(u))
	for r := range out {
		uu := float64(u[r])
		if h.breakSampleOffset {
			uu = math.Mod(uu+0.5, 1)
		}
		out[r] = int32(sampling.Sample(v[r*cols:(r+1)*cols], uu))
	}
	return out, nil
}

func (h *hostOps) Verify(p backend.Tensor, drafts []int32, q []sampling.Sparse, greedy bool, uAcc, uRes []float32, uBonus float32) (int, int32, error) {
	acc, tok := verifyRef(h.read(p), backend.Cols(p), drafts, q, greedy, uAcc, uRes, uBonus)
	if h.breakVerify {
		acc = len(drafts) // accepts everything
	}
	return acc, int32(tok), nil
}

func (h *hostOps) LoadRandom(shape []int, dtype backend.DType, seed uint64, mean, std float32) (backend.Tensor, error) {
	if h.breakRandomSeed {
		seed = rand.Uint64()
	}
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, numel(shape))
	for i := range v {
		v[i] = mean + std*float32(r.NormFloat64())
	}
	raw, err := safetensors.FromFloat32(safetensors.BF16, v)
	if err != nil {
		return nil, err
	}
	return h.Load(shape, backend.BF16, raw)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func (h *hostOps) MatMul(dst, x, w backend.Tensor) error {
	if !h.breakMatMulRow {
		return h.Backend.MatMul(dst, x, w)
	}
	// Computes everything but leaves the last row as it found it.
	tmp := h.New(dst.Shape()...)
	if err := h.Backend.MatMul(tmp, x, w); err != nil {
		return err
	}
	return h.CopyRows(dst, 0, tmp, 0, backend.Rows(dst)-1)
}

func (h *hostOps) Attention(dst, q backend.Tensor, seqs []backend.AttnSeq, a backend.Attn) error {
	if h.breakAttnWindow {
		a.Window = 0
	}
	return h.Backend.Attention(dst, q, seqs, a)
}

func (h *hostOps) RMSNorm(dst, x, w backend.Tensor, eps float32) error {
	if err := h.Backend.RMSNorm(dst, x, w, eps); err != nil {
		return err
	}
	if h.breakNormScale == 0 {
		return nil
	}
	v := h.read(dst)
	for i := range v {
		v[i] *= h.breakNormScale
	}
	return h.Write(dst, v)
}

// TestDeviceOps runs the checks of the optional operations through hostOps,
// then breaks one operation at a time: exactly the checks of that operation
// must fail, and the rest pass.
func TestDeviceOps(t *testing.T) {
	op := func(names ...string) func(Result) bool {
		return func(r Result) bool {
			for _, n := range names {
				if r.Op == n {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name string
		ops  hostOps
		// fails says which checks must fail; every other check must pass.
		fails func(Result) bool
	}{
		{"correct", hostOps{}, op()},
		{"top-k ignored", hostOps{breakProbsTopK: true}, func(r Result) bool {
			return r.Op == "probs" && !strings.Contains(r.Case, "k=0")
		}},
		{"no usable logit gives id 0 its mass", hostOps{breakNoMass: true}, func(r Result) bool {
			return r.Op == "probs" && strings.Contains(r.Case, "no usable logit")
		}},
		{"argmax off by one", hostOps{breakArgmax: true}, op("argmax")},
		{"a tie's margin is not 0", hostOps{breakTieMargin: true}, op("argmax_margin")},
		{"top-k loses the ties at the k-th place", hostOps{breakTopKTies: true}, op("topk_sparse")},
		{"verify accepts all", hostOps{breakVerify: true}, op("verify")},
		{"random weights not seeded", hostOps{breakRandomSeed: true}, op("load_random")},
		{"matmul skips the last row", hostOps{breakMatMulRow: true}, op("matmul")},
		{"attention ignores the window", hostOps{breakAttnWindow: true}, func(r Result) bool {
			return r.Op == "attention" && strings.Contains(r.Case, "window")
		}},
		{"rmsnorm 1% off", hostOps{breakNormScale: 1.01}, op("rmsnorm", "add_rmsnorm")},
		{"sampling at the wrong uniform", hostOps{breakSampleOffset: true}, op("sample")},
		{"append kv drops a row", hostOps{breakAppendLast: true}, op("append_kv")},
		{"finish qkv skips the k norm", hostOps{breakQKNorm: true}, func(r Result) bool {
			return r.Op == "finish_qkv" && strings.Contains(r.Case, "norms")
		}},
		{"swiglu pair swaps the halves", hostOps{breakPairHalves: true}, op("swiglu_pair")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.ops
			h.Backend = cpu.NewF32(2)
			rs := Run(&h, Config{Seed: 11, WeightDType: backend.F32})
			for _, r := range rs {
				switch want := tt.fails(r); {
				case r.Skipped != "":
					t.Errorf("%s %s skipped: %s", r.Op, r.Case, r.Skipped)
				case want && r.Passed():
					t.Errorf("%s %s passed, want a failure", r.Op, r.Case)
				case !want && !r.Passed():
					t.Errorf("%s %s failed (err %.2g, unwritten %d, %v)", r.Op, r.Case, r.Err, r.Unwritten, r.Failure)
				}
			}
		})
	}
}

// TestCompare pins the error measure: relative L2, NaN as unwritten, ids
// exactly.
func TestCompare(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name      string
		got       []float32
		want      []float64
		exact     bool
		err       float64
		unwritten int
	}{
		{"equal", []float32{1, 2, 3}, []float64{1, 2, 3}, false, 0, 0},
		{"relative L2", []float32{3, 0}, []float64{3, 4}, false, 4.0 / 5, 0},
		{"poisoned", []float32{1, nan}, []float64{1, 2}, false, math.NaN(), 1},
		{"ids", []float32{4, 5, 6, 7}, []float64{4, 5, 0, 7}, true, 0.25, 0},
		{"masked -inf equal", []float32{float32(math.Inf(-1))}, []float64{math.Inf(-1)}, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, u, err := compare(tt.got, tt.want, tt.exact)
			if err != nil {
				t.Fatal(err)
			}
			if u != tt.unwritten || !(e == tt.err || math.IsNaN(e) && math.IsNaN(tt.err) || math.Abs(e-tt.err) < 1e-12) {
				t.Errorf("compare = %v, %d unwritten; want %v, %d", e, u, tt.err, tt.unwritten)
			}
		})
	}
	if _, _, err := compare([]float32{1}, []float64{1, 2}, false); err == nil {
		t.Error("outputs of the wrong length were accepted")
	}
}

// TestFreshInputs: another seed draws other inputs.
func TestFreshInputs(t *testing.T) {
	first := func(seed uint64) string {
		c := cases(Config{Seed: seed})[2] // a matmul
		return fmt.Sprint(c.inputs[0].vals[:4])
	}
	if first(1) == first(2) {
		t.Error("two seeds drew the same inputs")
	}
	if first(3) != first(3) {
		t.Error("one seed drew different inputs")
	}
}
