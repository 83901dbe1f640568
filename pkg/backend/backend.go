// Package backend is the interface between the model code (pkg/model) and the
// hardware that runs it: a CPU backend (pkg/backend/cpu) everywhere, a CUDA
// backend (pkg/backend/cuda, -tags cuda) on NVIDIA GPUs.
//
// The model code only sees opaque tensors and a small set of operations, each
// writing into a destination tensor the caller allocated, so a GPU backend
// can keep everything on the device and reuse buffers between steps.
// Matrices are row-major; a batch of T tokens is a [T, width] matrix.
package backend

import (
	"errors"
	"fmt"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// DType is the storage type of a tensor.
type DType int

const (
	F32 DType = iota
	BF16
	F16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// ParseDType reads "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16".
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "float32", "F32":
		return F32, nil
	case "bf16", "bfloat16", "BF16":
		return BF16, nil
	case "f16", "float16", "F16":
		return F16, nil
	}
	return 0, fmt.Errorf("dtype %q is not one of f32, bf16, f16", s)
}

// Tensor is a dense row-major array owned by a backend.
type Tensor interface {
	Shape() []int
	DType() DType
}

// Elems is the number of elements of a tensor.
func Elems(t Tensor) int {
	n := 1
	for _, d := range t.Shape() {
		n *= d
	}
	return n
}

// Rows and Cols view a tensor as a matrix: the last dimension is the row width.
func Rows(t Tensor) int {
	s := t.Shape()
	return Elems(t) / s[len(s)-1]
}

// Cols is the width of a tensor's rows (its last dimension).
func Cols(t Tensor) int {
	s := t.Shape()
	return s[len(s)-1]
}

// RoPE describes rotary position embedding (Su et al. 2021, "RoFormer") in
// the rotate-half layout Hugging Face uses: for each head, dimension i < d/2
// pairs with i + d/2, rotated by angle position × InvFreq[i].
type RoPE struct {
	HeadDim int
	InvFreq []float32 // HeadDim/2 frequencies, scaling (llama3, linear) already applied
	Scale   float32   // attention scaling of cos/sin (1 unless the rope type says otherwise)
}

// AttnSeq is one sequence of a batched attention call. Its N new query rows
// start at row Row of q; its K and V caches already hold Len positions,
// the N new ones last, so query i sits at absolute position Len-N+i and
// attends causally to positions [0, Len-N+i] (narrowed by the sliding window).
type AttnSeq struct {
	Row, N int
	K, V   Tensor // [capacity, nKV*headDim]
	Len    int
}

// Attn holds the attention shape shared by all sequences of a call.
type Attn struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32 // softmax scaling, usually 1/sqrt(HeadDim)
	Window                  int     // sliding window (Mistral); 0 = none
}

// Backend runs tensor operations on one device (or the CPU).
type Backend interface {
	Name() string

	// Weights: raw holds elements of dtype src (as read from safetensors);
	// the backend stores them in its preferred compute dtype.
	Load(shape []int, src DType, raw []byte) (Tensor, error)
	// New allocates an activation tensor (contents undefined).
	New(shape ...int) Tensor
	// Write copies host floats into t; Read copies t out to host floats.
	Write(t Tensor, src []float32) error
	Read(t Tensor, dst []float32) error
	Free(t Tensor)

	// Embed gathers rows ids of table [V, H] into dst [len(ids), H].
	Embed(dst, table Tensor, ids []int32) error
	// MatMul: dst[T,N] = x[T,K] · w[N,K]ᵀ (the layout of a Hugging Face Linear weight).
	MatMul(dst, x, w Tensor) error
	// AddBias adds bias [N] to every row of dst [T,N].
	AddBias(dst, bias Tensor) error
	// Add: dst = a + b, elementwise (dst may alias a or b).
	Add(dst, a, b Tensor) error
	// RMSNorm normalises every contiguous group of len(w) elements of x:
	// dst = x / sqrt(mean(x²) + eps) · w (Zhang & Sennrich 2019). With w the
	// size of a head this is Qwen3's per-head q/k norm. dst may alias x.
	RMSNorm(dst, x, w Tensor, eps float32) error
	// ApplyRoPE rotates the heads of x [T, heads*HeadDim] in place; row t is at positions[t].
	ApplyRoPE(x Tensor, positions []int32, rope *RoPE) error
	// SwiGLU: dst = silu(gate) · up (Shazeer 2020). dst may alias gate.
	SwiGLU(dst, gate, up Tensor) error
	// CopyRows copies n rows from src starting at srcRow into dst starting at dstRow.
	CopyRows(dst Tensor, dstRow int, src Tensor, srcRow, n int) error
	// Attention computes causal multi-head attention with grouped KV heads
	// (GQA: query head h reads KV head h / (Heads/KVHeads)) for each sequence,
	// writing dst [T, Heads*HeadDim].
	Attention(dst, q Tensor, seqs []AttnSeq, a Attn) error
}

// ResidualNormer is an optional Backend operation: the residual add fused
// with the next RMSNorm, x += h then dst = rmsnorm(x)·w, the norm reading x
// as stored (so the results are those of Add then RMSNorm).
type ResidualNormer interface {
	AddRMSNorm(dst, x, h, w Tensor, eps float32) error
}

// KVAppender is an optional Backend operation: the new key and value rows of
// every sequence of a step written into their caches in one call (one launch
// on a GPU instead of two copies per sequence). For each s, rows
// [s.Row, s.Row+s.N) of k and v go to rows [s.Len-s.N, s.Len) of s.K and s.V.
type KVAppender interface {
	AppendKV(k, v Tensor, seqs []AttnSeq) error
}

// AppendKV writes the new K and V rows of seqs into their caches, through
// the backend's KVAppender when it has one, else with CopyRows.
func AppendKV(b Backend, k, v Tensor, seqs []AttnSeq) error {
	if a, ok := b.(KVAppender); ok {
		return a.AppendKV(k, v, seqs)
	}
	return copyKVRows(b, k, v, seqs)
}

// copyKVRows is AppendKV with two CopyRows per sequence.
func copyKVRows(b Backend, k, v Tensor, seqs []AttnSeq) error {
	for _, s := range seqs {
		if err := b.CopyRows(s.K, s.Len-s.N, k, s.Row, s.N); err != nil {
			return err
		}
		if err := b.CopyRows(s.V, s.Len-s.N, v, s.Row, s.N); err != nil {
			return err
		}
	}
	return nil
}

// QKVFinisher is an optional Backend operation for a model whose q, k and v
// weights are stacked into one matrix ([q; k; v] rows, so one product gives
// qkv = [T, qw + 2·kvw], each row q | k | v). FinishQKV applies the per-head
// RMSNorm of q and k when qNorm and kNorm are given (Qwen3; both or neither),
// RoPE r at positions (one per row of qkv) to q and k, writes q into q
// ([T, qw]) and appends k and v to the caches of seqs as AppendKV does. Every
// row of qkv belongs to one of seqs.
type QKVFinisher interface {
	FinishQKV(q, qkv, qNorm, kNorm Tensor, eps float32, positions []int32, r *RoPE, a Attn, seqs []AttnSeq) error
}

// PairSwiGLU is an optional Backend operation for a model whose gate and up
// weights are stacked into one matrix: gu = [T, 2I], each row gate | up, and
// dst[t, i] = silu(gu[t, i]) · gu[t, I+i] into dst = [T, I].
type PairSwiGLU interface {
	SwiGLUPair(dst, gu Tensor) error
}

// Picker is an optional Backend operation: greedy decoding's choice at each
// row of logits [rows, vocab], the argmax over ids < limit (0: all) and its
// margin, with sampling.ArgmaxMargin's semantics (lowest id on ties, NaN
// never chosen, margin (top1 − top2) / max(1, |top1|), id -1 and margin NaN
// for a row with nothing above -inf). It runs where the
// logits are, so only two numbers per row reach the host, and it waits for
// them.
type Picker interface {
	ArgmaxMargin(logits Tensor, limit int) ([]int32, []float32, error)
}

// Prober is an optional Backend operation: sampling.Probs of every row of
// logits [rows, vocab] under p (temperature, top-k, top-p, vocabulary limit),
// computed where the logits are, into a new f32 tensor the caller frees.
// Sampling then reads probabilities instead of computing them on the host,
// which at a 150k vocabulary costs milliseconds per row.
type Prober interface {
	Probs(logits Tensor, p sampling.Params) (Tensor, error)
}

// WeightGrouper is an optional Backend operation for a backend that splits
// weights over several devices: the loader announces, before a decoder
// layer, how many elements of weights it is about to load, so that the
// layer's weights land on one device (an operation then never meets weights
// of two devices).
type WeightGrouper interface {
	GroupWeights(elems int64)
}

// ProductPreparer is an optional Backend operation: once a model is loaded,
// the backend does for the weights of its products (MatMul's w) what it
// would otherwise do on the first step of each batch size (the CUDA
// backend's tuned products), so that no timed step pays for it. It says
// whether there was anything to do.
type ProductPreparer interface {
	PrepareProducts(weights []Tensor) (bool, error)
}

// Drawer is an optional Backend operation: one id per row of probs (an f32
// tensor from Prober.Probs) drawn at the uniform u[row] by inverse CDF
// (sampling.Sample), where the probabilities are.
type Drawer interface {
	Sample(probs Tensor, u []float32) ([]int32, error)
}

// Verifier is an optional Backend operation: the acceptance rule of
// speculative decoding (spec.VerifyAt, or the greedy rule) applied where the
// target's probabilities p [gamma+1, vocab] are (an f32 tensor from
// Prober.Probs), with the uniforms given. It returns the number of accepted
// drafts and the token that follows them.
//
// An error that wraps ErrBadDraft is the rule's answer about its inputs (a
// draft outside its own q, a distribution without mass): the step fails,
// the backend is fine.
type Verifier interface {
	Verify(p Tensor, drafts []int32, q []sampling.Sparse, greedy bool, uAccept, uResidual []float32, uBonus float32) (int, int32, error)
}

// ErrBadDraft marks a Verifier error that is about the step's drafts and
// distributions, not the device.
var ErrBadDraft = errors.New("the drafts cannot be judged")

// TopKer is an optional Backend operation: sampling.TopKSparse(row, k) of
// every row of probs (an f32 tensor from Prober.Probs), to the bit, with the
// selection done where the probabilities are (a drafter's q then costs a few
// hundred numbers to the host, not a vocabulary row).
type TopKer interface {
	TopKSparse(probs Tensor, k int) ([]sampling.Sparse, error)
}

// StepGrapher is an optional Backend operation: GraphStep runs f, which
// issues one step's operations, and may capture them (a CUDA graph) to
// replay on later calls with the same key (asked for only when graphs are
// on, so building it costs nothing otherwise), where f issues the same
// operations on the same tensors with new small inputs (token ids,
// positions, sequence lengths). The device work of f takes effect once,
// but f itself may be called more than once (a replay that finds the step
// changed, a failed capture): its effects in Go must bear repeating.
type StepGrapher interface {
	GraphStep(key func() string, f func() error) error
}
