// common.cuh: what every kernel file shares: the device handle, status
// helpers that check every CUDA and cuBLAS call, element conversions and
// block reductions. Storage is f32 or bf16; arithmetic is always f32.
#pragma once

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include <stdint.h>
#include <string.h>

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
	} while (0)

// db_args_reserve makes room for bytes of uploads in this call. Growing frees
// the old buffer, which cudaFree does only after queued work is done.
static inline db_status db_args_reserve(db_device *d, size_t bytes) {
	if (bytes <= d->args_cap) return db_ok();
	if (d->args) CK(cudaFree(d->args));
	d->args = NULL;
	d->args_cap = 0;
	size_t cap = 64 << 10;
	while (cap < bytes) cap *= 2;
	CK(cudaMalloc(&d->args, cap));
	d->args_cap = cap;
	return db_ok();
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
	if (bytes) {
		const void *src = host;
		CKS(db_stage(d, host, bytes, &src));
		CK(cudaMemcpyAsync(*dev, src, bytes, cudaMemcpyHostToDevice, d->stream));
	}
	d->args_used = off + bytes;
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
	if (bytes > d->work_cap) {
		if (d->work) CK(cudaFree(d->work));
		d->work = NULL;
		d->work_cap = 0;
		size_t cap = 1 << 20;
		while (cap < bytes) cap *= 2;
		CK(cudaMalloc(&d->work, cap));
		d->work_cap = cap;
	}
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
