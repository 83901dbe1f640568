// Package cuda is the GPU backend: tensors in device memory (cudaMalloc,
// never managed memory), one stream and one cuBLAS handle per device, the
// kernels of kernels/ (a static library built by `make kernels`) for
// everything but the matrix products, which go through cuBLAS.
//
// It builds only with -tags cuda (`make build-cuda`); without the tag New
// returns ErrNotBuilt, so asking a plain build for a GPU is a clear error,
// never a crash.
//
// # Several GPUs in one stage
//
// A backend may span several devices. Weights are placed as they are
// loaded, in order, so a model's consecutive layers land on one device
// until its share is full and then on the next (see placer). Activations
// and KV caches live where they are first used: an operation runs on the
// device of its weight operand (or of its first input) and moves its other
// operands there, device to device (over NVLink/PCIe peer access where the
// hardware allows). So the hidden state crosses once per device boundary
// and each KV cache stays on the device of its layer.
//
// # Beyond backend.Backend
//
// The backend also implements model.RandomLoader (random weights drawn on
// the device) and device-side ops the model does not call yet: AddRMSNorm
// (residual add fused with the next norm), MaskLogits, Argmax, Probs
// (temperature, top-k, top-p), Sample and Verify (the acceptance rule of
// speculative decoding), with pkg/sampling's and pkg/spec's semantics.
package cuda

import "time"

import "errors"

// ErrNotBuilt is what New returns in a binary built without -tags cuda.
var ErrNotBuilt = errors.New("this binary was built without CUDA; rebuild it with make build-cuda")

// KernelsID identifies the kernel library linked in (set by make build-cuda
// to its checksum, which also makes the Go linker notice a rebuilt library).
var KernelsID = "none"

// Options configure a backend.
type Options struct {
	// Devices are the CUDA ordinals to use (as CUDA_VISIBLE_DEVICES
	// numbers them); nil means every visible device.
	Devices []int
	// F32 stores weights and activations in f32 instead of bf16 (precision
	// checks; twice the bytes).
	F32 bool
	// WeightBytes, when known, is the size of the weights to be loaded,
	// stored as the backend stores them: they are then split over the
	// devices in proportion to their free memory. 0 fills the devices in
	// order.
	WeightBytes int64
	// Reserve is the memory per device kept free of weights for the KV
	// caches and activations; 0 means a tenth of the device, at least 1 GiB.
	Reserve int64
	// MaxWeightsPerDevice caps the weight bytes a device takes before the
	// next one is used (0: no cap); each device still takes at least one
	// layer. With one GPU listed several times in Devices (0,0,0) and a cap
	// of 1, a model's layers split over handles of one GPU, so the several-
	// device path (placement, copies between devices, caches on different
	// devices) can be checked on a machine with one GPU (worker selftest
	// --devices 0,0,0 --goldens).
	MaxWeightsPerDevice int64
	// Profile synchronizes after every operation and charges each one the
	// time since the previous one (its launch, its run and the Go work
	// before it): Backend.Profile reads the totals. It serialises the host
	// and the GPU, so it shows where the time goes, not how fast a step is.
	Profile bool
	// Graphs captures each decode step into a CUDA graph and replays it on
	// the next steps of the same shape (GraphStep). One goroutine at a time
	// may use a backend with graphs on.
	Graphs bool
	// BatchInvariant makes a position's results independent of how its step
	// is batched: products of up to 256 rows run in padded 64-row pieces and
	// decode/verify attention splits keys at fixed positions, so greedy
	// speculative decoding reproduces greedy decoding bit for bit. It costs
	// some speed; the CPU backend is always so for bf16 weights.
	BatchInvariant bool
	// TuneGEMM times, for each product shape of up to 64 rows (decode,
	// verify), cuBLASLt's candidate algorithms against cublasGemmEx on the
	// device and keeps the fastest (GEMMPlans lists the choices). A loaded
	// model's weights have theirs tuned at load, for every row count up to
	// 64 (PrepareProducts); another shape is tuned on its first eager call,
	// and one first seen inside a graph capture stays untuned.
	TuneGEMM bool
}

// GEMMPlan is one product shape's tuned choice (Options.TuneGEMM).
type GEMMPlan struct {
	Device     int     `json:"device"`
	F32        bool    `json:"f32,omitempty"`
	M          int     `json:"m"`
	N          int     `json:"n"`
	K          int     `json:"k"`
	CublasLt   bool    `json:"cublaslt"`   // a cuBLASLt algorithm beat cublasGemmEx
	Candidates int     `json:"candidates"` // cuBLASLt algorithms timed (split-K variants among them)
	SplitK     int     `json:"split_k"`    // K splits of the chosen algorithm (1: none)
	BestUs     float64 `json:"best_us"`    // the chosen one, per call
	DefaultUs  float64 `json:"default_us"` // cublasGemmEx, per call
}

// OpTime is one operation's share of a profile.
type OpTime struct {
	Op    string
	Calls int
	Total time.Duration
}

// Profile is what a backend measured since it opened or since ResetProfile.
type Profile struct {
	// Ops, largest total first; empty unless Options.Profile was set.
	Ops []OpTime
	// ReadWait is the time Read and ArgmaxMargin spent waiting for the GPU
	// and copying back (always measured): in a decode step, the part of the
	// step the host was not busy issuing work.
	ReadWait time.Duration
	Reads    int
}

// DeviceInfo describes one device of a backend.
type DeviceInfo struct {
	Ordinal      int
	Name         string
	Major, Minor int // compute capability
	SMs          int
	TotalBytes   int64
	FreeBytes    int64 // when the backend opened it
	L2Bytes      int
	Peers        []int // ordinals this device reads directly (peer access)
}

// GraphStats counts what the step graphs did since the backend opened.
type GraphStats struct {
	Replays    int `json:"replays"`    // steps run by replaying a graph
	Captures   int `json:"captures"`   // steps captured into a new graph
	Mismatches int `json:"mismatches"` // replays refused because the step differed (then captured anew)
	Eager      int `json:"eager"`      // steps run without a graph (a failed capture, or given up)
	// LastWhy says why the last replay was refused, a graph dropped or a
	// capture failed: which call and argument differed (empty if never).
	LastWhy string `json:"last_why,omitempty"`
}
