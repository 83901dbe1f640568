//go:build cuda

package cuda

/*
#cgo CFLAGS: -I${SRCDIR}/../../../kernels
#cgo LDFLAGS: -L${SRCDIR}/../../../build/kernels -ldraftbench_kernels -l:libcublas.so.13 -l:libcublasLt.so.13 -l:libcudart.so.13 -lstdc++ -lm
#include <stdlib.h>
#include "draftbench.h"
*/
import "C"

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

// Built says whether this binary has the CUDA backend.
const Built = true

// cudaErrorMemoryAllocation, from driver_types.h.
const cudaErrorMemoryAllocation = 2

// Error is a failed CUDA or cuBLAS call, or an argument the kernels refused.
type Error struct {
	Op     string // the backend operation
	Device int    // CUDA ordinal; -1 before any device is chosen
	Call   string // the failed call, as written in kernels/
	Where  string // file:line in kernels/
	Code   int    // cudaError_t or cublasStatus_t
	Msg    string
	OOM    bool // the device is out of memory
	Replay bool // a step graph's replay or capture refused the call
}

func (e *Error) Error() string {
	on := ""
	if e.Device >= 0 {
		on = fmt.Sprintf(" on device %d", e.Device)
	}
	msg := fmt.Sprintf("cuda: %s%s: %s failed at %s: %s (code %d)", e.Op, on, e.Call, e.Where, e.Msg, e.Code)
	if e.OOM {
		msg += "; " + oomHint
	}
	return msg
}

// oomHint is the seed's advice for a GPU out of memory, in the job's terms.
const oomHint = "the GPU is out of memory: lower batch.size or batch.max_length (BATCH_SIZE, MAX_BATCH_LENGTH) " +
	"or generation.gamma (GAMMA_VALUE), or give the model more GPUs (docs/troubleshooting.md)"

// check turns a db_status into an error naming the operation and the device.
func check(op string, ordinal int, st C.db_status) error {
	if st.kind == C.DB_OK {
		return nil
	}
	e := &Error{Op: op, Device: ordinal, Code: int(st.code), Call: "?", Where: "?", Msg: "?"}
	if st.expr != nil {
		e.Call = C.GoString(st.expr)
	}
	if st.file != nil {
		e.Where = fmt.Sprintf("%s:%d", filepath.Base(C.GoString(st.file)), int(st.line))
	}
	if st.msg != nil {
		e.Msg = C.GoString(st.msg)
	}
	e.OOM = st.kind == C.DB_ERR_CUDA && st.code == cudaErrorMemoryAllocation
	e.Replay = st.kind == C.DB_ERR_REPLAY
	return e
}

// device is one GPU of a backend, with its pool of freed activation buffers.
type device struct {
	idx  int // index in Backend.devs
	h    *C.db_device
	info DeviceInfo
	pool map[int64]*freeList
	held int64 // bytes waiting in the pool
}

// Tensor is a dense row-major array in device memory. Activations are
// allocated on first use, on the device that uses them (ptr nil until then).
type Tensor struct {
	shape  []int
	dtype  backend.DType
	dev    *device
	ptr    unsafe.Pointer
	size   int64 // bytes allocated: the pool class for activations
	weight bool  // loaded weights never move between devices
	freed  bool
}

// Shape implements backend.Tensor.
func (t *Tensor) Shape() []int { return t.shape }

// DType implements backend.Tensor.
func (t *Tensor) DType() backend.DType { return t.dtype }

func (t *Tensor) bytes() int64 { return int64(backend.Elems(t)) * int64(t.dtype.Size()) }

// Backend runs tensor operations on one or several CUDA devices. Its methods
// are safe for concurrent use; they queue work on the devices' streams and
// return, except Read and the sampling calls, which wait for their results.
type Backend struct {
	mu     sync.Mutex
	dtype  backend.DType
	devs   []*device
	place  *placer
	ropes  map[*backend.RoPE][]unsafe.Pointer // InvFreq uploaded, per device
	closed bool
	prof   *profiler // per-op times (Options.Profile)
	// Step graphs (graph.go, Options.Graphs).
	useGraphs  bool
	graphs     *stepCache[*stepGraph]
	tune       bool // Options.TuneGEMM
	graphStats GraphStats
	wait       time.Duration
	reads      int
}

type profiler struct {
	last time.Time
	ops  map[string]*OpTime
}

// done checks an operation's status and, when profiling, waits for it and
// charges it the time since the previous operation.
func (b *Backend) done(op string, dev *device, st C.db_status) error {
	if err := check(op, dev.info.Ordinal, st); err != nil {
		return err
	}
	if b.prof == nil {
		return nil
	}
	if err := check(op, dev.info.Ordinal, C.db_sync(dev.h)); err != nil {
		return err
	}
	now := time.Now()
	t := b.prof.ops[op]
	if t == nil {
		t = &OpTime{Op: op}
		b.prof.ops[op] = t
	}
	t.Calls++
	t.Total += now.Sub(b.prof.last)
	b.prof.last = now
	return nil
}

// Profile returns what was measured since the backend opened or since
// ResetProfile (see Options.Profile).
func (b *Backend) Profile() Profile {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := Profile{ReadWait: b.wait, Reads: b.reads}
	if b.prof != nil {
		for _, t := range b.prof.ops {
			p.Ops = append(p.Ops, *t)
		}
		sort.Slice(p.Ops, func(i, j int) bool { return p.Ops[i].Total > p.Ops[j].Total })
	}
	return p
}

// ResetProfile starts the measurements again.
func (b *Backend) ResetProfile() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wait, b.reads = 0, 0
	if b.prof != nil {
		b.prof.ops = map[string]*OpTime{}
		b.prof.last = time.Now()
	}
}

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.KVAppender  = (*Backend)(nil)
	_ backend.QKVFinisher = (*Backend)(nil)
	_ backend.PairSwiGLU  = (*Backend)(nil)
	_ backend.StepGrapher = (*Backend)(nil)
)

// DeviceCount is the number of CUDA devices this process sees.
func DeviceCount() (int, error) {
	var n C.int
	if err := check("counting devices", -1, C.db_device_count(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// New opens the devices of opts (every visible one by default).
func New(opts Options) (*Backend, error) {
	n, err := DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("cuda: no usable GPU (is the NVIDIA driver there, and CUDA_VISIBLE_DEVICES right?): %w", err)
	}
	ords := opts.Devices
	if len(ords) == 0 {
		if n == 0 {
			return nil, fmt.Errorf("cuda: no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
		}
		for i := 0; i < n; i++ {
			ords = append(ords, i)
		}
	}
	b := &Backend{dtype: backend.BF16, ropes: map[*backend.RoPE][]unsafe.Pointer{}}
	if opts.Profile {
		b.prof = &profiler{last: time.Now(), ops: map[string]*OpTime{}}
	}
	b.useGraphs, b.graphs = opts.Graphs, newStepCache[*stepGraph](maxGraphs, maxSeen)
	b.tune = opts.TuneGEMM
	if opts.F32 {
		b.dtype = backend.F32
	}
	var free, reserve []int64
	for i, o := range ords {
		if o < 0 || o >= n {
			b.Close()
			return nil, fmt.Errorf("cuda: device %d does not exist (%d visible)", o, n)
		}
		d := &device{idx: i, pool: map[int64]*freeList{}}
		if err := check("opening", o, C.db_open(C.int(o), &d.h)); err != nil {
			b.Close()
			return nil, err
		}
		b.devs = append(b.devs, d)
		if opts.BatchInvariant {
			if err := check("batch-invariant mode", o, C.db_set_invariant(d.h, 1)); err != nil {
				b.Close()
				return nil, err
			}
		}
		if opts.TuneGEMM {
			if err := check("tuned products (cuBLASLt)", o, C.db_set_gemm_tune(d.h, 1)); err != nil {
				b.Close()
				return nil, err
			}
		}
		var info C.db_device_info
		if err := check("reading properties", o, C.db_info(d.h, &info)); err != nil {
			b.Close()
			return nil, err
		}
		d.info = DeviceInfo{Ordinal: o, Name: C.GoString(&info.name[0]), Major: int(info.major), Minor: int(info.minor),
			SMs: int(info.sms), TotalBytes: int64(info.total_mem), FreeBytes: int64(info.free_mem), L2Bytes: int(info.l2_bytes)}
		free = append(free, d.info.FreeBytes)
		r := opts.Reserve
		if r <= 0 {
			r = defaultReserve(d.info.TotalBytes)
		}
		reserve = append(reserve, r)
	}
	for _, d := range b.devs {
		for _, p := range b.devs {
			if p == d {
				continue
			}
			var ok C.int
			if err := check("enabling peer access", d.info.Ordinal, C.db_enable_peer(d.h, p.h, &ok)); err != nil {
				b.Close()
				return nil, err
			}
			if ok != 0 {
				d.info.Peers = append(d.info.Peers, p.info.Ordinal)
			}
		}
	}
	b.place = newPlacerMax(free, reserve, opts.WeightBytes, opts.MaxWeightsPerDevice)
	return b, nil
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "cuda" }

// Devices describes the backend's devices.
func (b *Backend) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(b.devs))
	for i, d := range b.devs {
		out[i] = d.info
	}
	return out
}

// Close waits for the devices and releases the pools, the RoPE tables and
// the handles. Tensors still held are released with the process.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(b.freeGraphs())
	for _, tabs := range b.ropes {
		for i, p := range tabs {
			if p != nil {
				keep(check("freeing a RoPE table", b.devs[i].info.Ordinal, C.db_free(b.devs[i].h, p)))
			}
		}
	}
	for _, d := range b.devs {
		keep(b.drain(d))
		keep(check("closing", d.info.Ordinal, C.db_close(d.h)))
	}
	return first
}

// drain returns d's pooled buffers to the driver.
func (b *Backend) drain(d *device) error {
	var first error
	for c, list := range d.pool {
		for _, p := range *list {
			if err := check("freeing pooled memory", d.info.Ordinal, C.db_free(d.h, p)); err != nil && first == nil {
				first = err
			}
		}
		delete(d.pool, c)
	}
	d.held = 0
	return first
}

// malloc allocates on d, emptying d's pool and trying again when the device
// is out of memory.
func (b *Backend) malloc(d *device, n int64, op string) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	err := check(op, d.info.Ordinal, C.db_malloc(d.h, C.size_t(n), &p))
	if e, ok := err.(*Error); ok && e.OOM && d.held > 0 {
		if derr := b.drain(d); derr != nil {
			return nil, derr
		}
		err = check(op, d.info.Ordinal, C.db_malloc(d.h, C.size_t(n), &p))
	}
	if err != nil {
		return nil, fmt.Errorf("allocating %d bytes: %w", n, err)
	}
	return p, nil
}

// allocActivation gives t a buffer on d, from the pool when one is there.
func (b *Backend) allocActivation(t *Tensor, d *device, op string) error {
	c := sizeClass(t.bytes())
	if list := d.pool[c]; list != nil && len(*list) > 0 {
		t.ptr = list.take()
		d.held -= c
	} else {
		p, err := b.malloc(d, c, op)
		if err != nil {
			return err
		}
		t.ptr = p
	}
	t.dev, t.size = d, c
	return nil
}

// release returns an activation's buffer to its device's pool. Work queued
// on that device's stream that still reads it runs before any reuse, which
// is queued on the same stream.
func (b *Backend) release(t *Tensor) {
	if t.ptr == nil {
		return
	}
	list := t.dev.pool[t.size]
	if list == nil {
		list = &freeList{}
		t.dev.pool[t.size] = list
	}
	list.put(t.ptr)
	t.dev.held += t.size
	t.ptr, t.dev = nil, nil
}

// New implements backend.Backend: an activation of the backend's dtype,
// allocated on first use.
func (b *Backend) New(shape ...int) backend.Tensor {
	return &Tensor{shape: append([]int(nil), shape...), dtype: b.dtype}
}

// Free implements backend.Backend.
func (b *Backend) Free(t backend.Tensor) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ct.freed || b.closed {
		return
	}
	ct.freed = true
	if ct.weight && ct.ptr != nil {
		// Weights are freed for good when a stage unloads; the error has no
		// caller to go to, and the memory goes with the process anyway.
		_ = check("freeing a weight", ct.dev.info.Ordinal, C.db_free(ct.dev.h, ct.ptr))
		ct.ptr = nil
		return
	}
	b.release(ct)
}

// tensor checks that t is a live tensor of this backend.
func (b *Backend) tensor(t backend.Tensor, op, what string) (*Tensor, error) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		return nil, fmt.Errorf("cuda: %s: %s is a %T, not a CUDA tensor", op, what, t)
	}
	if ct.freed {
		return nil, fmt.Errorf("cuda: %s: %s %v was freed", op, what, ct.shape)
	}
	if b.closed {
		return nil, fmt.Errorf("cuda: %s: the backend is closed", op)
	}
	return ct, nil
}

// act is tensor for activations and weights of the backend's compute dtype.
func (b *Backend) act(t backend.Tensor, op, what string) (*Tensor, error) {
	ct, err := b.tensor(t, op, what)
	if err != nil {
		return nil, err
	}
	if ct.dtype != b.dtype {
		return nil, fmt.Errorf("cuda: %s: %s is %s, this backend computes in %s", op, what, ct.dtype, b.dtype)
	}
	return ct, nil
}

// home picks the device an operation runs on: the device of its first
// weight operand, else of its first allocated operand, else the first.
func (b *Backend) home(ts ...*Tensor) *device {
	for _, t := range ts {
		if t.weight {
			return t.dev
		}
	}
	for _, t := range ts {
		if t.dev != nil {
			return t.dev
		}
	}
	return b.devs[0]
}

// bring makes t's contents available on d: allocating it there if nothing
// has written it yet, copying it from another device if it lives there.
func (b *Backend) bring(t *Tensor, d *device, op string) error {
	if t.dev == d {
		return nil
	}
	if t.dev == nil {
		return b.allocActivation(t, d, op)
	}
	if t.weight {
		return fmt.Errorf("cuda: %s: a weight %v on device %d is needed on device %d (an operation mixes weights of two devices)",
			op, t.shape, t.dev.info.Ordinal, d.info.Ordinal)
	}
	old := *t
	if err := b.allocActivation(t, d, op); err != nil {
		return err
	}
	err := check(op+" (moving to another device)", d.info.Ordinal,
		C.db_peer_copy(d.h, t.ptr, old.dev.h, old.ptr, C.size_t(t.bytes())))
	b.release(&old)
	return err
}

// claim makes t allocated on d for an operation that overwrites it whole.
func (b *Backend) claim(t *Tensor, d *device, op string) error {
	if t.dev == d {
		return nil
	}
	if t.weight {
		return fmt.Errorf("cuda: %s: cannot write into a weight", op)
	}
	b.release(t)
	return b.allocActivation(t, d, op)
}

// Write implements backend.Backend.
func (b *Backend) Write(t backend.Tensor, src []float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ct, err := b.tensor(t, "write", "the tensor")
	if err != nil {
		return err
	}
	if len(src) != backend.Elems(ct) {
		return fmt.Errorf("cuda: writing %d floats into a tensor of %d", len(src), backend.Elems(ct))
	}
	if ct.weight {
		return fmt.Errorf("cuda: write: weights are loaded, not written")
	}
	if ct.dev == nil {
		if err := b.allocActivation(ct, b.devs[0], "write"); err != nil {
			return err
		}
	}
	return b.upload(ct, src, "write")
}

// upload copies host floats into t, rounding on the host for bf16.
func (b *Backend) upload(t *Tensor, src []float32, op string) error {
	if len(src) == 0 {
		return nil
	}
	d := t.dev
	switch t.dtype {
	case backend.F32:
		return check(op, d.info.Ordinal, C.db_h2d(d.h, t.ptr, unsafe.Pointer(&src[0]), C.size_t(4*len(src))))
	case backend.BF16:
		h := make([]uint16, len(src))
		for i, v := range src {
			h[i] = safetensors.Float32ToBF16(v)
		}
		return check(op, d.info.Ordinal, C.db_h2d(d.h, t.ptr, unsafe.Pointer(&h[0]), C.size_t(2*len(h))))
	}
	return fmt.Errorf("cuda: %s: tensors of %s cannot be written", op, t.dtype)
}

// Read implements backend.Backend; it waits for the work that writes t.
func (b *Backend) Read(t backend.Tensor, dst []float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ct, err := b.tensor(t, "read", "the tensor")
	if err != nil {
		return err
	}
	if len(dst) != backend.Elems(ct) {
		return fmt.Errorf("cuda: reading a tensor of %d values into %d", backend.Elems(ct), len(dst))
	}
	if ct.dev == nil {
		return fmt.Errorf("cuda: read: nothing has written the tensor %v", ct.shape)
	}
	if len(dst) == 0 {
		return nil
	}
	d := ct.dev
	defer b.waited(time.Now())
	switch ct.dtype {
	case backend.F32:
		return check("read", d.info.Ordinal, C.db_d2h(d.h, unsafe.Pointer(&dst[0]), ct.ptr, C.size_t(4*len(dst))))
	case backend.BF16:
		// Into the upper half of dst, then widened in place: no second
		// buffer (a batch's logits are megabytes per step).
		tail := bf16Tail(dst)
		if err := check("read", d.info.Ordinal, C.db_d2h(d.h, unsafe.Pointer(&tail[0]), ct.ptr, C.size_t(2*len(tail)))); err != nil {
			return err
		}
		widenBF16(dst)
		return nil
	}
	return fmt.Errorf("cuda: read: tensors of %s cannot be read", ct.dtype)
}

// waited charges a wait for results (Read, ArgmaxMargin) that began at
// start to Profile.ReadWait. Call with b.mu held.
func (b *Backend) waited(start time.Time) {
	b.wait += time.Since(start)
	b.reads++
	if b.prof != nil {
		b.prof.last = time.Now()
	}
}

// Placement is the weight bytes placed on each device so far, in the order
// of Options.Devices.
func (b *Backend) Placement() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int64(nil), b.place.used...)
}

// tuneRows is how many rows the tuned products cover (kernels/gemm.cu
// TUNE_MAX_ROWS).
const tuneRows = 64

// PrepareProducts implements backend.ProductPreparer: with
// Options.TuneGEMM, the products against each weight shape of a device are
// tuned now for every row count up to 64 (decode and verify steps of any
// batch), not on the first step of each, which would charge the tuning to
// whichever benchmark mode met that batch size first. Nothing otherwise.
func (b *Backend) PrepareProducts(weights []backend.Tensor) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.tune || b.closed {
		return false, nil
	}
	type shape struct{ dev, n, k int }
	done := map[shape]bool{}
	for _, w := range weights {
		t, err := b.act(w, "preparing products", "w")
		if err != nil {
			return false, err
		}
		n, k := backend.Rows(t), backend.Cols(t)
		sh := shape{t.dev.idx, n, k}
		if done[sh] || t.ptr == nil {
			continue
		}
		done[sh] = true
		if err := check(fmt.Sprintf("tuning the products against a [%d, %d] weight", n, k), t.dev.info.Ordinal,
			C.db_gemm_pretune(t.dev.h, dtypeC(b.dtype), t.ptr, C.int(n), C.int(k), tuneRows)); err != nil {
			return false, err
		}
	}
	return true, nil
}

// GEMMPlans lists the tuned products' choices on every device
// (Options.TuneGEMM), by device then shape.
func (b *Backend) GEMMPlans() ([]GEMMPlan, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []GEMMPlan
	for _, d := range b.devs {
		var n C.int
		if err := check("listing tuned products", d.info.Ordinal, C.db_gemm_plans(d.h, nil, 0, &n)); err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		infos := make([]C.db_gemm_plan_info, int(n))
		if err := check("listing tuned products", d.info.Ordinal, C.db_gemm_plans(d.h, &infos[0], n, &n)); err != nil {
			return nil, err
		}
		for _, p := range infos[:min(int(n), len(infos))] {
			out = append(out, GEMMPlan{Device: d.info.Ordinal, F32: p.f32 != 0, M: int(p.m), N: int(p.n), K: int(p.k),
				CublasLt: p.lt != 0, Candidates: int(p.candidates), SplitK: int(p.splitk), BestUs: float64(p.best_us), DefaultUs: float64(p.default_us)})
		}
	}
	return out, nil
}

// Synchronize waits for all queued work on every device and reports the
// first asynchronous error.
func (b *Backend) Synchronize() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.devs {
		if err := check("synchronize", d.info.Ordinal, C.db_sync(d.h)); err != nil {
			return err
		}
	}
	return nil
}

// CopyBandwidth measures the first device's memory bandwidth with
// device-to-device copies of bytes (median of 10), counting bytes read and
// written: the ceiling a decode step, which streams every weight once,
// can approach.
func (b *Backend) CopyBandwidth(bytes int) (float64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.devs[0]
	var bw C.double
	if err := check("copy bandwidth", d.info.Ordinal, C.db_copy_bandwidth(d.h, C.size_t(bytes), 10, &bw)); err != nil {
		return 0, err
	}
	return float64(bw), nil
}
