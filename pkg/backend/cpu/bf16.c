// Matrix-vector products with bf16 weights and f32 activations. Decode is
// bound by reading the weights, so keeping them in bf16 (as checkpoints ship
// them) halves the bytes read per token; each weight is widened to f32
// exactly (a bf16 is the top half of an f32) before an f32 multiply-add, so
// the arithmetic is the f32 engine's, up to summation order.
#include "bf16.h"
#include <immintrin.h>
#include <string.h>

#define MAXT 8 // vectors per pass: one pass reads the weights once for up to MAXT tokens

static inline float bf16_to_f32(uint16_t h) {
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static void gemv_scalar(const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1) {
	for (int n = n0; n < n1; n++) {
		const uint16_t *row = w + (long)n * K;
		for (int t = 0; t < T; t++) {
			const float *xv = x + (long)t * K;
			float acc = 0;
			for (int k = 0; k < K; k++) acc += bf16_to_f32(row[k]) * xv[k];
			y[(long)t * ldy + n] = acc;
		}
	}
}

// The kernels are written for a constant number of vectors TN (1..MAXT) and
// instantiated through a switch, so the accumulators live in registers.
__attribute__((target("avx2,fma"), always_inline))
static inline void rows_avx2(const int TN, const uint16_t *w, const float *x, float *y, int K, int ldy, int n0, int n1) {
	for (int n = n0; n < n1; n++) {
		const uint16_t *row = w + (long)n * K;
		__m256 acc[MAXT];
		for (int t = 0; t < TN; t++) acc[t] = _mm256_setzero_ps();
		int k = 0;
		for (; k + 8 <= K; k += 8) {
			__m128i h = _mm_loadu_si128((const __m128i *)(row + k));
			__m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
			for (int t = 0; t < TN; t++) acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (long)t * K + k), acc[t]);
		}
		for (int t = 0; t < TN; t++) {
			__m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));
			s = _mm_add_ps(s, _mm_movehl_ps(s, s));
			s = _mm_add_ss(s, _mm_movehdup_ps(s));
			float r = _mm_cvtss_f32(s);
			const float *xv = x + (long)t * K;
			for (int kk = k; kk < K; kk++) r += bf16_to_f32(row[kk]) * xv[kk];
			y[(long)t * ldy + n] = r;
		}
	}
}

__attribute__((target("avx2,fma")))
static void gemv_avx2(const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1) {
	for (int t0 = 0; t0 < T; t0 += MAXT) {
		int tn = T - t0 < MAXT ? T - t0 : MAXT;
		const float *xs = x + (long)t0 * K;
		float *ys = y + (long)t0 * ldy;
		switch (tn) {
		case 1: rows_avx2(1, w, xs, ys, K, ldy, n0, n1); break;
		case 2: rows_avx2(2, w, xs, ys, K, ldy, n0, n1); break;
		case 3: rows_avx2(3, w, xs, ys, K, ldy, n0, n1); break;
		case 4: rows_avx2(4, w, xs, ys, K, ldy, n0, n1); break;
		case 5: rows_avx2(5, w, xs, ys, K, ldy, n0, n1); break;
		case 6: rows_avx2(6, w, xs, ys, K, ldy, n0, n1); break;
		case 7: rows_avx2(7, w, xs, ys, K, ldy, n0, n1); break;
		default: rows_avx2(8, w, xs, ys, K, ldy, n0, n1);
		}
	}
}

__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline __m512 widen16(const uint16_t *p) {
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline __m512 widen16_masked(__mmask16 m, const uint16_t *p) {
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

// Two weight rows per pass share every load of x: for several vectors (a
// verify step, a prefill) the loads of x, not the FMAs, are the limit. Each
// output is the same single accumulator either way, so results are equal.
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void rows_avx512(const int TN, const uint16_t *w, const float *x, float *y, int K, int ldy, int n0, int n1) {
	int n = n0;
	// Only full chunks of MAXT vectors (a prefill) take two rows at a time:
	// for a decode or a verify step one row at a time measured faster.
	for (; TN == MAXT && n + 2 <= n1; n += 2) {
		const uint16_t *r0 = w + (long)n * K, *r1 = r0 + K;
		__m512 a0[MAXT], a1[MAXT];
		for (int t = 0; t < TN; t++) a0[t] = a1[t] = _mm512_setzero_ps();
		int k = 0;
		for (; k + 16 <= K; k += 16) {
			__m512 w0 = widen16(r0 + k), w1 = widen16(r1 + k);
			for (int t = 0; t < TN; t++) {
				__m512 xv = _mm512_loadu_ps(x + (long)t * K + k);
				a0[t] = _mm512_fmadd_ps(w0, xv, a0[t]);
				a1[t] = _mm512_fmadd_ps(w1, xv, a1[t]);
			}
		}
		if (k < K) {
			__mmask16 m = (__mmask16)((1u << (K - k)) - 1);
			__m512 w0 = widen16_masked(m, r0 + k), w1 = widen16_masked(m, r1 + k);
			for (int t = 0; t < TN; t++) {
				__m512 xv = _mm512_maskz_loadu_ps(m, x + (long)t * K + k);
				a0[t] = _mm512_fmadd_ps(w0, xv, a0[t]);
				a1[t] = _mm512_fmadd_ps(w1, xv, a1[t]);
			}
		}
		for (int t = 0; t < TN; t++) {
			y[(long)t * ldy + n] = _mm512_reduce_add_ps(a0[t]);
			y[(long)t * ldy + n + 1] = _mm512_reduce_add_ps(a1[t]);
		}
	}
	for (; n < n1; n++) {
		const uint16_t *row = w + (long)n * K;
		__m512 acc[MAXT];
		for (int t = 0; t < TN; t++) acc[t] = _mm512_setzero_ps();
		int k = 0;
		for (; k + 16 <= K; k += 16) {
			__m512 wv = widen16(row + k);
			for (int t = 0; t < TN; t++) acc[t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (long)t * K + k), acc[t]);
		}
		if (k < K) {
			__mmask16 m = (__mmask16)((1u << (K - k)) - 1);
			__m512 wv = widen16_masked(m, row + k);
			for (int t = 0; t < TN; t++) acc[t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + (long)t * K + k), acc[t]);
		}
		for (int t = 0; t < TN; t++) y[(long)t * ldy + n] = _mm512_reduce_add_ps(acc[t]);
	}
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void gemv_avx512(const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1) {
	for (int t0 = 0; t0 < T; t0 += MAXT) {
		int tn = T - t0 < MAXT ? T - t0 : MAXT;
		const float *xs = x + (long)t0 * K;
		float *ys = y + (long)t0 * ldy;
		switch (tn) {
		case 1: rows_avx512(1, w, xs, ys, K, ldy, n0, n1); break;
		case 2: rows_avx512(2, w, xs, ys, K, ldy, n0, n1); break;
		case 3: rows_avx512(3, w, xs, ys, K, ldy, n0, n1); break;
		case 4: rows_avx512(4, w, xs, ys, K, ldy, n0, n1); break;
		case 5: rows_avx512(5, w, xs, ys, K, ldy, n0, n1); break;
		case 6: rows_avx512(6, w, xs, ys, K, ldy, n0, n1); break;
		case 7: rows_avx512(7, w, xs, ys, K, ldy, n0, n1); break;
		default: rows_avx512(8, w, xs, ys, K, ldy, n0, n1);
		}
	}
}

int dbcpu_bf16_kernel(void) {
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return 2;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
	return 0;
}

void dbcpu_gemv_bf16(int kernel, const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1) {
	switch (kernel) {
	case 2: gemv_avx512(w, x, y, K, T, ldy, n0, n1); break;
	case 1: gemv_avx2(w, x, y, K, T, ldy, n0, n1); break;
	default: gemv_scalar(w, x, y, K, T, ldy, n0, n1);
	}
}

// NB weight rows are kept hot in cache while every chunk of MAXT vectors
// passes over them, so many vectors (a prefill) read each weight once from
// memory; every output is still one accumulator over k in order, exactly as
// for a single vector, so results do not depend on how rows are batched.
#define NB 16

void dbcpu_gemm_bf16(int kernel, const uint16_t *w, const float *x, float *y, int K, int T, int ldy, int n0, int n1) {
	for (int b0 = n0; b0 < n1; b0 += NB) {
		int b1 = b0 + NB < n1 ? b0 + NB : n1;
		dbcpu_gemv_bf16(kernel, w, x, y, K, T, ldy, b0, b1);
	}
}

void dbcpu_bf16_to_f32(const uint16_t *src, float *dst, long n) {
	for (long i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}
