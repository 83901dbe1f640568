// device.cu: opening devices, memory, copies, and the copy-bandwidth probe.
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "common.cuh"

extern "C" db_status db_device_count(int *n) {
	*n = 0;
	CK(cudaGetDeviceCount(n));
	return db_ok();
}

extern "C" db_status db_open(int ordinal, db_device **out) {
	*out = NULL;
	CK(cudaSetDevice(ordinal));
	db_device *d = (db_device *)calloc(1, sizeof(db_device));
	ARG(d != NULL, "out of host memory");
	d->ordinal = ordinal;
	db_status s = db_ok();
	// A failed open releases what it made, through db_close.
#define TRY(x)                                       \
	do {                                             \
		cudaError_t e_ = (x);                        \
		if (e_ != cudaSuccess) {                     \
			s = db_cuda_fail(e_, __FILE__, __LINE__, #x); \
			goto fail;                               \
		}                                            \
	} while (0)
#define TRYB(x)                                      \
	do {                                             \
		cublasStatus_t e_ = (x);                     \
		if (e_ != CUBLAS_STATUS_SUCCESS) {           \
			s = db_blas_fail(e_, __FILE__, __LINE__, #x); \
			goto fail;                               \
		}                                            \
	} while (0)
	{
		TRY(cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, ordinal));
		TRY(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
		TRY(cudaEventCreateWithFlags(&d->ev, cudaEventDisableTiming));
		TRYB(cublasCreate(&d->blas));
		TRYB(cublasSetStream(d->blas, d->stream));
		// Tensor-core math for bf16; f32 products stay f32 (no TF32), which
		// the f32 self-test precision relies on.
		TRYB(cublasSetMathMode(d->blas, CUBLAS_DEFAULT_MATH));
		d->blas_ws_bytes = 32u << 20;
		TRY(cudaMalloc(&d->blas_ws, d->blas_ws_bytes));
		TRYB(cublasSetWorkspace(d->blas, d->blas_ws, d->blas_ws_bytes));
		d->pin_seg = DB_PIN_SEG_BYTES;
		TRY(cudaHostAlloc((void **)&d->pin, DB_PIN_SEGS * d->pin_seg, cudaHostAllocDefault));
		for (int i = 0; i < DB_PIN_SEGS; i++) TRY(cudaEventCreateWithFlags(&d->pin_ev[i], cudaEventDisableTiming));
		*out = d;
		return db_ok();
	}
fail:
	db_close(d);
	return s;
#undef TRY
#undef TRYB
}

extern "C" db_status db_close(db_device *d) {
	if (d == NULL) return db_ok();
	// Release everything even after a failure; report the first one.
	db_status first = db_ok();
#define KEEP(x)                                                          \
	do {                                                                 \
		cudaError_t e_ = (x);                                            \
		if (e_ != cudaSuccess && first.kind == DB_OK) first = db_cuda_fail(e_, __FILE__, __LINE__, #x); \
	} while (0)
	KEEP(cudaSetDevice(d->ordinal));
	if (d->stream) KEEP(cudaStreamSynchronize(d->stream));
	if (d->blas) {
		cublasStatus_t e = cublasDestroy(d->blas);
		if (e != CUBLAS_STATUS_SUCCESS && first.kind == DB_OK) first = db_blas_fail(e, __FILE__, __LINE__, "cublasDestroy");
	}
	{
		db_status g = db_gemm_release(d);
		if (g.kind != DB_OK && first.kind == DB_OK) first = g;
	}
	if (d->blas_ws) KEEP(cudaFree(d->blas_ws));
	if (d->args) KEEP(cudaFree(d->args));
	if (d->pin) KEEP(cudaFreeHost(d->pin));
	for (int i = 0; i < DB_PIN_SEGS; i++)
		if (d->pin_ev[i]) KEEP(cudaEventDestroy(d->pin_ev[i]));
	if (d->work) KEEP(cudaFree(d->work));
	if (d->gemm_pad) KEEP(cudaFree(d->gemm_pad));
	free(d->pack);
	if (d->ev) KEEP(cudaEventDestroy(d->ev));
	if (d->stream) KEEP(cudaStreamDestroy(d->stream));
#undef KEEP
	free(d);
	return first;
}

extern "C" db_status db_info(db_device *d, db_device_info *out) {
	ENTER(d);
	cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, d->ordinal));
	memset(out, 0, sizeof(*out));
	strncpy(out->name, p.name, sizeof(out->name) - 1);
	out->major = p.major;
	out->minor = p.minor;
	out->sms = p.multiProcessorCount;
	out->l2_bytes = p.l2CacheSize;
	CK(cudaMemGetInfo(&out->free_mem, &out->total_mem));
	return db_ok();
}

extern "C" db_status db_enable_peer(db_device *d, db_device *peer, int *enabled) {
	*enabled = 0;
	ENTER(d);
	int can = 0;
	CK(cudaDeviceCanAccessPeer(&can, d->ordinal, peer->ordinal));
	if (!can) return db_ok();
	cudaError_t e = cudaDeviceEnablePeerAccess(peer->ordinal, 0);
	if (e == cudaErrorPeerAccessAlreadyEnabled) {
		(void)cudaGetLastError(); // already enabled is fine; clear the error it left
	} else {
		CK(e);
	}
	*enabled = 1;
	return db_ok();
}

extern "C" db_status db_malloc(db_device *d, size_t bytes, void **out) {
	*out = NULL;
	ENTER_ANY(d);
	// Plain device memory only: managed memory can hang a shared GPU when oversubscribed.
	CK(cudaMalloc(out, bytes ? bytes : 1));
	return db_ok();
}

extern "C" db_status db_free(db_device *d, void *p) {
	ENTER(d);
	CK(cudaFree(p));
	return db_ok();
}

extern "C" db_status db_h2d(db_device *d, void *dst, const void *src, size_t bytes) {
	ENTER(d);
	if (bytes == 0) return db_ok();
	// From pageable memory the runtime stages src before returning, so the
	// Go caller's slice is free again when this returns.
	CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d->stream));
	return db_ok();
}

extern "C" db_status db_d2h(db_device *d, void *dst, const void *src, size_t bytes) {
	ENTER(d);
	if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

extern "C" db_status db_d2d(db_device *d, void *dst, const void *src, size_t bytes) {
	ENTER_STEP(d, dst, src, bytes);
	REPLAYED(d);
	if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, d->stream));
	return db_ok();
}

extern "C" db_status db_peer_copy(db_device *dst_dev, void *dst, db_device *src_dev, const void *src, size_t bytes) {
	ARG(dst_dev != NULL && src_dev != NULL, "no device");
	if (dst_dev == src_dev) return db_d2d(dst_dev, dst, src, bytes);
	// The copy runs on the source's stream, after the destination's queued
	// work (which may still read dst's old contents), and the destination
	// waits for it. Buffers freed to either pool are then reused in order.
	CK(cudaSetDevice(dst_dev->ordinal));
	CK(cudaEventRecord(dst_dev->ev, dst_dev->stream));
	CK(cudaSetDevice(src_dev->ordinal));
	CK(cudaStreamWaitEvent(src_dev->stream, dst_dev->ev, 0));
	if (bytes) CK(cudaMemcpyPeerAsync(dst, dst_dev->ordinal, src, src_dev->ordinal, bytes, src_dev->stream));
	CK(cudaEventRecord(src_dev->ev, src_dev->stream));
	CK(cudaSetDevice(dst_dev->ordinal));
	CK(cudaStreamWaitEvent(dst_dev->stream, src_dev->ev, 0));
	return db_ok();
}

extern "C" db_status db_sync(db_device *d) {
	ENTER(d);
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

// Random-looking contents for the probe: copies of zeros can be faster than
// copies of real data.
__global__ void probe_fill(uint32_t *p, size_t n) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		uint32_t x = (uint32_t)i * 2654435761u;
		p[i] = x ^ (x >> 15);
	}
}

extern "C" db_status db_copy_bandwidth(db_device *d, size_t bytes, int reps, double *bytes_per_s) {
	*bytes_per_s = 0;
	ENTER(d);
	ARG(reps > 0 && bytes >= 4, "copy bandwidth: bytes >= 4 and reps > 0");
	void *a = NULL, *b = NULL;
	cudaEvent_t t0 = NULL, t1 = NULL;
	db_status s = db_ok();
	std::vector<float> ms;
#define TRY(x)                                            \
	do {                                                  \
		cudaError_t e_ = (x);                             \
		if (e_ != cudaSuccess) {                          \
			s = db_cuda_fail(e_, __FILE__, __LINE__, #x); \
			goto done;                                    \
		}                                                 \
	} while (0)
	TRY(cudaMalloc(&a, bytes));
	TRY(cudaMalloc(&b, bytes));
	TRY(cudaEventCreate(&t0));
	TRY(cudaEventCreate(&t1));
	probe_fill<<<db_blocks(bytes / 4, 256, 4096), 256, 0, d->stream>>>((uint32_t *)a, bytes / 4);
	TRY(cudaGetLastError());
	// Warm-up copy, then timed ones between events.
	TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, d->stream));
	for (int r = 0; r < reps; r++) {
		TRY(cudaEventRecord(t0, d->stream));
		TRY(cudaMemcpyAsync(r & 1 ? a : b, r & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice, d->stream));
		TRY(cudaEventRecord(t1, d->stream));
		TRY(cudaEventSynchronize(t1));
		float t = 0;
		TRY(cudaEventElapsedTime(&t, t0, t1));
		ms.push_back(t);
	}
	std::sort(ms.begin(), ms.end());
	*bytes_per_s = 2.0 * (double)bytes / (ms[ms.size() / 2] * 1e-3);
done:
	if (t0) cudaEventDestroy(t0);
	if (t1) cudaEventDestroy(t1);
	if (a) cudaFree(a);
	if (b) cudaFree(b);
	return s;
#undef TRY
}
