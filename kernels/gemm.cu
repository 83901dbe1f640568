// gemm.cu: the matrix products, through cuBLAS (tensor cores for bf16, f32
// accumulation); no hand-written GEMM.
#include "common.cuh"

// Row-major dst[m,n] = x[m,k] * w[n,k]^T is, read column-major,
// dst^T[n,m] = w^T * x^T with w stored k-major: one GEMM with op(A) = T.
extern "C" db_status db_gemm(db_device *d, int dtype, void *dst, const void *x, const void *w, int m, int n, int k) {
	ENTER_STEP(d, dtype, dst, x, w, m, n, k);
	ARG(m >= 0 && n > 0 && k > 0, "gemm: empty shape");
	if (m == 0) return db_ok();
	const float alpha = 1.0f, beta = 0.0f;
	cudaDataType_t t;
	switch (dtype) {
	case DB_F32: t = CUDA_R_32F; break;
	case DB_BF16: t = CUDA_R_16BF; break;
	default: return db_arg_fail(__FILE__, __LINE__, "gemm: dtype is not f32 or bf16");
	}
	REPLAYED(d);
	CKB(cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k, x, t, k, &beta, dst, t, n,
	                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return db_ok();
}
