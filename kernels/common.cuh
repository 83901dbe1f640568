// common.cuh: what every kernel file shares: the device handle, status
// helpers that check every CUDA and cuBLAS call, element conversions and
// block reductions. Storage is f32 or bf16; arithmetic is always f32.
#pragma once

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <initializer_list>
#include <utility>
#include <vector>

#include "draftbench.h"

#define DB_PIN_SEGS 16
#define DB_PIN_SEG_BYTES (256u << 10)

struct db_device {
	int ordinal;
	cudaStream_t stream;
	cublasHandle_t blas;
	void *blas_ws;        // cuBLAS workspace (fixed, so graph capture could reuse it)
	size_t blas_ws_bytes;
	void *args;           // small per-call uploads (ids, positions, descriptors)
	size_t args_cap, args_used;
	void *work;           // per-call scratch (attention partials, residual rows)
	size_t work_cap;
	cudaEvent_t ev;       // ordering of copies between devices
	int sms;
	// Pinned staging ring for the small uploads: a copy from pageable host
	// memory may wait for the stream to drain, which would stall the host
	// once per kernel and serialise launching with running. DB_PIN_SEGS
	// segments of pin_seg bytes; leaving a segment records pin_ev[seg], and
	// coming back to it waits for that event (the GPU has long consumed it).
	char *pin;
	size_t pin_seg, pin_off;
	int pin_cur;
	cudaEvent_t pin_ev[DB_PIN_SEGS];
	int pin_pending[DB_PIN_SEGS];
	// Step graphs (graph.cu): while a step is captured or replayed, mode says
	// which, graph is the step's graph and sig_i/slot_i count the calls and
	// uploads seen so far in a replay.
	int mode;
	struct db_graph *graph;
	size_t sig_i, slot_i;
	// buf_gen counts reallocations of args and work: a graph captured before
	// one holds their old addresses and must be captured anew.
	uint64_t buf_gen;
	// Batch-invariant mode (db_set_invariant): attention splits at fixed key
	// positions and matrix products run on rows padded to a fixed bucket.
	int invariant;
	void *gemm_pad; // padded x then padded dst of a product
	size_t gemm_pad_cap;
	char *pack; // host scratch where db_args_push_parts joins a call's uploads
	size_t pack_cap;
	// Tuned products (db_set_gemm_tune, gemm.cu): for each shape of up to
	// TUNE_MAX_ROWS rows, the fastest of cuBLASLt's candidate algorithms
	// and cublasGemmEx, timed on its first eager call.
	int tune;
	cublasLtHandle_t lt;
	struct gemm_plan_cache *plans;
};

// db_gemm_release frees the tuned products' plans and cuBLASLt (gemm.cu).
db_status db_gemm_release(db_device *d);

enum { DB_EAGER = 0, DB_CAPTURE = 1, DB_REPLAY = 2 };

// A captured step: its instantiated graph, the signature of every call that
// made it (name and arguments, hashed), and the pinned host slots its upload
// nodes copy from; a replay writes the step's new uploads into those slots
// and launches the graph.
// DB_SIG_ARGS is the most arguments a call's signature holds.
#define DB_SIG_ARGS 24

// db_call_sig is one call of a step as captured: its name and arguments
// (addresses, sizes, flags), so a replay can say which one differs.
struct db_call_sig {
	const char *name;
	int n;
	uint64_t a[DB_SIG_ARGS];
};

struct db_graph {
	cudaGraphExec_t exec;
	cudaEvent_t done; // after the last launch: the slots may be rewritten once it completes
	int launched;
	int valid;
	uint64_t buf_gen; // the device's buf_gen at capture
	std::vector<db_call_sig> sigs;
	char why[256]; // why the last replay was refused or the graph dropped ("" if never)
	std::vector<std::pair<char *, size_t>> slots;
	char *arena;
	size_t arena_cap, arena_used;
};

static inline db_status db_ok() {
	db_status s = {DB_OK, 0, 0, 0, 0, 0};
	return s;
}

static inline db_status db_cuda_fail(cudaError_t e, const char *file, int line, const char *expr) {
	db_status s = {DB_ERR_CUDA, (int)e, line, file, expr, cudaGetErrorString(e)};
	return s;
}

static inline db_status db_blas_fail(cublasStatus_t e, const char *file, int line, const char *expr) {
	db_status s = {DB_ERR_CUBLAS, (int)e, line, file, expr, cublasGetStatusString(e)};
	return s;
}

static inline db_status db_arg_fail(const char *file, int line, const char *msg) {
	db_status s = {DB_ERR_ARG, 0, line, file, "argument check", msg};
	return s;
}

// CK returns from the enclosing function when a CUDA call fails.
#define CK(x)                                                                  \
	do {                                                                       \
		cudaError_t e_ = (x);                                                  \
		if (e_ != cudaSuccess) return db_cuda_fail(e_, __FILE__, __LINE__, #x); \
	} while (0)

#define CKB(x)                                                                 \
	do {                                                                       \
		cublasStatus_t e_ = (x);                                               \
		if (e_ != CUBLAS_STATUS_SUCCESS) return db_blas_fail(e_, __FILE__, __LINE__, #x); \
	} while (0)

// CKS propagates a db_status from a helper.
#define CKS(x)                                    \
	do {                                          \
		db_status s_ = (x);                       \
		if (s_.kind != DB_OK) return s_;          \
	} while (0)

#define ARG(cond, msg)                                               \
	do {                                                             \
		if (!(cond)) return db_arg_fail(__FILE__, __LINE__, msg);    \
	} while (0)

// LAUNCHED checks the launch just queued (bad configuration, missing image).
#define LAUNCHED() CK(cudaGetLastError())

// ENTER makes d current for this host thread and resets its argument buffer.
#define ENTER(d)                                \
	do {                                        \
		ARG((d) != NULL, "no device");          \
		CK(cudaSetDevice((d)->ordinal));        \
		(d)->args_used = 0;                     \
		if ((d)->mode != DB_EAGER) return db_replay_fail(__func__, "this call cannot be part of a step graph"); \
	} while (0)

// ---- step graphs: signatures of the calls ----

static inline db_status db_replay_fail(const char *where, const char *msg) {
	db_status s = {DB_ERR_REPLAY, 0, 0, where, "step graph", msg};
	return s;
}

static inline uint64_t db_u64(const void *p) { return (uint64_t)(uintptr_t)p; }
static inline uint64_t db_u64(int v) { return (uint64_t)(int64_t)v; }
static inline uint64_t db_u64(unsigned v) { return v; }
static inline uint64_t db_u64(long v) { return (uint64_t)v; }
static inline uint64_t db_u64(unsigned long v) { return v; }
static inline uint64_t db_u64(long long v) { return (uint64_t)v; }
static inline uint64_t db_u64(unsigned long long v) { return v; }
static inline uint64_t db_u64(float v) {
	uint32_t u;
	memcpy(&u, &v, 4);
	return u;
}

// db_step_sig records (capture) or checks (replay) one call of a step; a
// refused replay says in the graph's why which call and argument differ.
template <typename... A>
static inline db_status db_step_sig(db_device *d, const char *name, A... args) {
	static_assert(sizeof...(A) <= DB_SIG_ARGS, "too many arguments in a step signature");
	if (d->mode == DB_EAGER) return db_ok();
	db_call_sig c;
	c.name = name;
	c.n = 0;
	for (uint64_t v : std::initializer_list<uint64_t>{db_u64(args)...}) c.a[c.n++] = v;
	db_graph *g = d->graph;
	if (d->mode == DB_CAPTURE) {
		g->sigs.push_back(c);
		return db_ok();
	}
	const size_t i = d->sig_i;
	if (i >= g->sigs.size()) {
		snprintf(g->why, sizeof g->why, "call %zu (%s): the captured step had only %zu calls", i, name, g->sigs.size());
		return db_replay_fail(name, "the step differs from the captured one");
	}
	const db_call_sig &w = g->sigs[i];
	if (strcmp(w.name, name) != 0) {
		snprintf(g->why, sizeof g->why, "call %zu is %s, the capture had %s", i, name, w.name);
		return db_replay_fail(name, "the step differs from the captured one");
	}
	for (int k = 0; k < c.n; k++)
		if (c.a[k] != w.a[k]) {
			snprintf(g->why, sizeof g->why, "call %zu (%s): argument %d is %#llx, the capture had %#llx", i, name, k + 1,
			         (unsigned long long)c.a[k], (unsigned long long)w.a[k]);
			return db_replay_fail(name, "the step differs from the captured one");
		}
	d->sig_i++;
	return db_ok();
}

// ENTER_STEP is ENTER for a call that may be captured into a step graph;
// its arguments (after d) make the call's signature.
#define ENTER_ANY(d)                            \
	do {                                        \
		ARG((d) != NULL, "no device");          \
		CK(cudaSetDevice((d)->ordinal));        \
		(d)->args_used = 0;                     \
	} while (0)
#define STEP_SIG(d, ...) CKS(db_step_sig((d), __func__, __VA_ARGS__))
#define ENTER_STEP(d, ...)          \
	do {                            \
		ENTER_ANY(d);               \
		STEP_SIG((d), __VA_ARGS__); \
	} while (0)

// REPLAYED returns from a step-aware call once its uploads are written: in
// a replay the graph, not this call, does the work.
#define REPLAYED(d)                                  \
	do {                                             \
		if ((d)->mode == DB_REPLAY) return db_ok();  \
	} while (0)

// db_grow makes *buf (of *cap bytes) hold at least bytes: a power of two
// from min, the old contents dropped (cudaFree waits for queued work that
// uses it), zeroed when zero is set. Never inside a step graph, whose nodes
// hold the old address; buf_gen tells graphs captured before that it moved.
static inline db_status db_grow(db_device *d, void **buf, size_t *cap, size_t bytes, size_t min, bool zero,
                                const char *what) {
	if (bytes <= *cap) return db_ok();
	if (d->mode != DB_EAGER) {
		snprintf(d->graph->why, sizeof d->graph->why, "%s: a device buffer must grow to %zu bytes inside the step", what, bytes);
		return db_replay_fail(what, "a device buffer must grow (outside a step graph)");
	}
	if (*buf) CK(cudaFree(*buf));
	*buf = NULL;
	*cap = 0;
	size_t c = min;
	while (c < bytes) c *= 2;
	CK(cudaMalloc(buf, c));
	if (zero) CK(cudaMemsetAsync(*buf, 0, c, d->stream));
	*cap = c;
	d->buf_gen++;
	return db_ok();
}

// db_args_reserve makes room for bytes of uploads in this call.
static inline db_status db_args_reserve(db_device *d, size_t bytes) {
	return db_grow(d, &d->args, &d->args_cap, bytes, 64 << 10, false, "db_args_reserve");
}

// db_stage copies host bytes into the pinned ring and points *src at them
// (left as host when they do not fit a segment: a rare large upload then
// goes from pageable memory).
static inline db_status db_stage(db_device *d, const void *host, size_t bytes, const void **src) {
	if (d->pin == NULL || bytes > d->pin_seg) return db_ok();
	if (d->pin_off + bytes > d->pin_seg) {
		CK(cudaEventRecord(d->pin_ev[d->pin_cur], d->stream));
		d->pin_pending[d->pin_cur] = 1;
		d->pin_cur = (d->pin_cur + 1) % DB_PIN_SEGS;
		if (d->pin_pending[d->pin_cur]) {
			CK(cudaEventSynchronize(d->pin_ev[d->pin_cur]));
			d->pin_pending[d->pin_cur] = 0;
		}
		d->pin_off = 0;
	}
	char *p = d->pin + (size_t)d->pin_cur * d->pin_seg + d->pin_off;
	memcpy(p, host, bytes);
	d->pin_off += (bytes + 15) & ~(size_t)15;
	*src = p;
	return db_ok();
}

// db_args_push copies host bytes into the argument buffer (after
// db_args_reserve covered them) and returns their device address.
static inline db_status db_args_push(db_device *d, const void *host, size_t bytes, void **dev) {
	size_t off = (d->args_used + 255) & ~(size_t)255;
	ARG(off + bytes <= d->args_cap, "argument buffer too small (db_args_reserve first)");
	*dev = (char *)d->args + off;
	d->args_used = off + bytes;
	if (d->mode == DB_REPLAY) {
		// The graph's upload node copies from the slot the capture gave it.
		db_graph *g = d->graph;
		if (d->slot_i >= g->slots.size() || g->slots[d->slot_i].second != bytes) {
			snprintf(g->why, sizeof g->why, "upload %zu: %zu bytes, the capture had %s", d->slot_i, bytes,
			         d->slot_i >= g->slots.size() ? "fewer uploads" : "another size");
			return db_replay_fail("db_args_push", "the step's uploads differ from the captured ones");
		}
		if (bytes) memcpy(g->slots[d->slot_i].first, host, bytes);
		d->slot_i++;
		return db_ok();
	}
	if (d->mode == DB_CAPTURE) {
		db_graph *g = d->graph;
		size_t at = (g->arena_used + 15) & ~(size_t)15;
		if (at + bytes > g->arena_cap) return db_replay_fail("db_args_push", "the step's uploads outgrow the graph's pinned arena");
		char *slot = g->arena + at;
		g->arena_used = at + bytes;
		g->slots.push_back(std::make_pair(slot, bytes));
		if (bytes) {
			memcpy(slot, host, bytes);
			CK(cudaMemcpyAsync(*dev, slot, bytes, cudaMemcpyHostToDevice, d->stream));
		}
		return db_ok();
	}
	if (bytes) {
		const void *src = host;
		CKS(db_stage(d, host, bytes, &src));
		CK(cudaMemcpyAsync(*dev, src, bytes, cudaMemcpyHostToDevice, d->stream));
	}
	return db_ok();
}

// db_part is one host array of a call's uploads and where its device
// address goes.
struct db_part {
	const void *host;
	size_t bytes;
	void **dev;
};

// db_args_push_parts uploads a call's host arrays as one copy (a small copy
// costs about as much as a kernel on the stream, however few its bytes),
// each part at a 256-byte-aligned offset as db_args_size counts them.
static inline db_status db_args_push_parts(db_device *d, std::initializer_list<db_part> parts) {
	size_t total = 0;
	for (const db_part &p : parts) total = ((total + 255) & ~(size_t)255) + p.bytes;
	if (total > d->pack_cap) {
		size_t c = d->pack_cap ? d->pack_cap : 4096;
		while (c < total) c *= 2;
		char *np = (char *)realloc(d->pack, c);
		ARG(np != NULL, "out of host memory for a call's uploads");
		d->pack = np;
		d->pack_cap = c;
	}
	size_t off = 0;
	for (const db_part &p : parts) {
		off = (off + 255) & ~(size_t)255;
		if (p.bytes) memcpy(d->pack + off, p.host, p.bytes);
		off += p.bytes;
	}
	void *base;
	CKS(db_args_push(d, d->pack, total, &base));
	off = 0;
	for (const db_part &p : parts) {
		off = (off + 255) & ~(size_t)255;
		*p.dev = (char *)base + off;
		off += p.bytes;
	}
	return db_ok();
}

// db_args_size is what db_args_reserve needs for pushes of these sizes.
static inline size_t db_args_size(size_t a, size_t b = 0, size_t c = 0, size_t e = 0, size_t f = 0, size_t g = 0) {
	return ((a + 255) & ~(size_t)255) + ((b + 255) & ~(size_t)255) + ((c + 255) & ~(size_t)255) +
	       ((e + 255) & ~(size_t)255) + ((f + 255) & ~(size_t)255) + ((g + 255) & ~(size_t)255);
}

// db_work returns scratch device memory of at least bytes, valid until the
// next call on this device (stream order keeps reuse safe).
static inline db_status db_work(db_device *d, size_t bytes, void **out) {
	CKS(db_grow(d, &d->work, &d->work_cap, bytes, 1 << 20, false, "db_work"));
	*out = d->work;
	return db_ok();
}

// ---- element access: storage type T, arithmetic in float ----

__device__ __forceinline__ float ld(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const __half *p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16(v); }

// DISPATCH runs body with T the storage type of an activation dtype.
#define DISPATCH(dtype, ...)                                   \
	do {                                                       \
		if ((dtype) == DB_F32) {                               \
			typedef float T;                                   \
			__VA_ARGS__;                                       \
		} else if ((dtype) == DB_BF16) {                       \
			typedef __nv_bfloat16 T;                           \
			__VA_ARGS__;                                       \
		} else {                                               \
			return db_arg_fail(__FILE__, __LINE__, "dtype is not f32 or bf16"); \
		}                                                      \
	} while (0)

static inline unsigned db_blocks(size_t n, unsigned threads, unsigned cap = 65535u * 8) {
	size_t b = (n + threads - 1) / threads;
	if (b < 1) b = 1;
	return (unsigned)(b < cap ? b : cap);
}

// ---- reductions ----

__device__ __forceinline__ float warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ double warp_sum(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v) {
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

// block_sum: every thread gets the block's total. scratch holds 32 values;
// blockDim.x is a multiple of 32.
template <typename V>
__device__ V block_sum(V v, V *scratch) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0) scratch[w] = v;
	__syncthreads();
	int nw = blockDim.x >> 5;
	v = lane < nw ? scratch[lane] : V(0);
	return warp_sum(v);
}

__device__ inline float block_max(float v, float *scratch) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0) scratch[w] = v;
	__syncthreads();
	int nw = blockDim.x >> 5;
	v = lane < nw ? scratch[lane] : -INFINITY;
	return warp_max(v);
}
