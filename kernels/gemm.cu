// gemm.cu: the matrix products, through cuBLAS (tensor cores for bf16, f32
// accumulation); no hand-written GEMM.
#include "common.cuh"

// In batch-invariant mode a product of up to INV_MAX_ROWS rows runs in
// pieces of INV_ROWS rows, each padded to INV_ROWS: every row is computed by
// the same cuBLAS call shape whatever the batch, so a decode step's row and
// the same row inside a verify step come out bit for bit the same. Larger
// products (prefills, which both decoding modes run alike) run whole.
#define INV_ROWS 64
#define INV_MAX_ROWS 256

// db_gemm_pad returns scratch for a padded x and dst, zeroed when it grows
// (the pad rows then hold finite values).
static db_status db_gemm_pad(db_device *d, size_t bytes, void **out) {
	CKS(db_grow(d, &d->gemm_pad, &d->gemm_pad_cap, bytes, 1 << 20, true, "db_gemm_pad"));
	*out = d->gemm_pad;
	return db_ok();
}

// Row-major dst[m,n] = x[m,k] * w[n,k]^T is, read column-major,
// dst^T[n,m] = w^T * x^T with w stored k-major: one GEMM with op(A) = T.
static db_status gemm_rows(db_device *d, cudaDataType_t t, void *dst, const void *x, const void *w, int m, int n, int k) {
	const float alpha = 1.0f, beta = 0.0f;
	CKB(cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k, x, t, k, &beta, dst, t, n,
	                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return db_ok();
}

extern "C" db_status db_gemm(db_device *d, int dtype, void *dst, const void *x, const void *w, int m, int n, int k) {
	ENTER_STEP(d, dtype, dst, x, w, m, n, k, d->invariant);
	ARG(m >= 0 && n > 0 && k > 0, "gemm: empty shape");
	if (m == 0) return db_ok();
	cudaDataType_t t;
	size_t es;
	switch (dtype) {
	case DB_F32: t = CUDA_R_32F; es = 4; break;
	case DB_BF16: t = CUDA_R_16BF; es = 2; break;
	default: return db_arg_fail(__FILE__, __LINE__, "gemm: dtype is not f32 or bf16");
	}
	if (!d->invariant || m > INV_MAX_ROWS) {
		REPLAYED(d);
		return gemm_rows(d, t, dst, x, w, m, n, k);
	}
	const size_t xbytes = ((size_t)INV_ROWS * k * es + 255) & ~(size_t)255;
	void *pad;
	CKS(db_gemm_pad(d, xbytes + (size_t)INV_ROWS * n * es, &pad));
	REPLAYED(d);
	char *xp = (char *)pad, *dp = xp + xbytes;
	for (int r0 = 0; r0 < m; r0 += INV_ROWS) {
		const int rows = m - r0 < INV_ROWS ? m - r0 : INV_ROWS;
		CK(cudaMemcpyAsync(xp, (const char *)x + (size_t)r0 * k * es, (size_t)rows * k * es, cudaMemcpyDeviceToDevice,
		                   d->stream));
		CKS(gemm_rows(d, t, dp, xp, w, INV_ROWS, n, k));
		CK(cudaMemcpyAsync((char *)dst + (size_t)r0 * n * es, dp, (size_t)rows * n * es, cudaMemcpyDeviceToDevice,
		                   d->stream));
	}
	return db_ok();
}

extern "C" db_status db_set_invariant(db_device *d, int on) {
	ARG(d != NULL, "no device");
	d->invariant = on != 0;
	return db_ok();
}
