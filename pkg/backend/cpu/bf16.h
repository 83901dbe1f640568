#ifndef DRAFTBENCH_CPU_BF16_H
#define DRAFTBENCH_CPU_BF16_H
#include <stdint.h>

// kernel is dbcpu_bf16_kernel()'s answer.
// y[t*ldy + n] = sum_k x[t*K + k] * bf16(w[n*K + k]) for t < T and n in [n0, n1):
// a matrix with bf16 rows times a few f32 vectors, f32 products and sums.
void dbcpu_gemv_bf16(int kernel, const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1);

// dbcpu_gemm_bf16 is dbcpu_gemv_bf16 for many vectors: weight rows in small blocks
// outer, vectors inner; same results per element whatever T is.
void dbcpu_gemm_bf16(int kernel, const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1);

// dst[i] = bf16 → f32 of src[i], for i < n.
void dbcpu_bf16_to_f32(const uint16_t *src, float *dst, long n);

// Which kernel dbcpu_gemv_bf16 uses: 2 = AVX-512, 1 = AVX2+FMA, 0 = portable C.
int dbcpu_bf16_kernel(void);
#endif
