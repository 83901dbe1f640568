// Causal attention for one head of one sequence, one query row at a time.
// Each query's scores, softmax and weighted sum are computed the same way
// whatever other rows share the call (a decode step, a verify step of
// gamma+1 rows, a prefill), so outputs do not depend on batching.
#include "attention.h"
#include <math.h>

#define LANES 16
#define PV 64 // value columns summed at once (four AVX-512 registers)

// db_exp is e^x in f32 within a few ulp of expf (Cody-Waite reduction by
// ln 2 and Cephes' degree-6 polynomial), 0 below -87.33 (where expf goes
// subnormal) and held at e^88.376 above that (expf's own limit is 88.72).
// Unlike a call to libm's expf it vectorizes, which makes the softmax and
// SwiGLU loops several times faster; every row still runs the same code, so
// results stay independent of batching.
static inline float db_exp(float x) {
	const float lo = -87.3365448f, hi = 88.3762626f;
	const float xc = x < lo ? lo : x > hi ? hi : x;
	const float n = __builtin_rintf(xc * 1.44269504088896341f);
	float r = xc - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	const float z = r * r;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * z + r + 1.0f;
	union {
		int i;
		float f;
	} e;
	e.i = ((int)n + 127) << 23;
	return x < lo ? 0.0f : p * e.f;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void dbcpu_attend_head(const float *q, int qs, const float *k, const float *v, int ks, float *out, int os,
                    int n, int L, int hd, float scale, int window, float *scores) {
	for (int i = 0; i < n; i++) {
		const float *qi = q + (long)i * qs;
		int pos = L - n + i;
		int lo = 0;
		if (window > 0 && pos - window + 1 > lo) lo = pos - window + 1;
		float mx = -INFINITY;
		for (int j = lo; j <= pos; j++) {
			const float *kj = k + (long)j * ks;
			float acc[LANES] = {0};
			int d = 0;
			for (; d + LANES <= hd; d += LANES)
				for (int l = 0; l < LANES; l++) acc[l] += qi[d + l] * kj[d + l];
			float s = 0;
			for (int l = 0; l < LANES; l++) s += acc[l];
			for (; d < hd; d++) s += qi[d] * kj[d];
			s *= scale;
			scores[j] = s;
			if (s > mx) mx = s;
		}
		for (int j = lo; j <= pos; j++) scores[j] = db_exp(scores[j] - mx);
		double sum = 0;
		for (int j = lo; j <= pos; j++) sum += scores[j];
		float inv = (float)(1.0 / sum);
		for (int j = lo; j <= pos; j++) scores[j] *= inv;
		float *oi = out + (long)i * os;
		// The weighted sum of the values, PV columns at a time: the
		// accumulators stay in registers across the keys instead of making a
		// load-add-store round through oi per key (the same sums in the same
		// order, so the same results).
		int e0 = 0;
		for (; e0 + PV <= hd; e0 += PV) {
			float acc[PV] = {0};
			for (int j = lo; j <= pos; j++) {
				const float p = scores[j];
				const float *vj = v + (long)j * ks + e0;
				for (int e = 0; e < PV; e++) acc[e] += p * vj[e];
			}
			for (int e = 0; e < PV; e++) oi[e0 + e] = acc[e];
		}
		for (int e = e0; e < hd; e++) {
			float acc = 0;
			for (int j = lo; j <= pos; j++) acc += scores[j] * v[(long)j * ks + e];
			oi[e] = acc;
		}
	}
}

// dbcpu_swiglu: dst = silu(gate) · up = gate / (1 + e^-gate) · up, elementwise.
__attribute__((target_clones("avx512f", "avx2", "default")))
void dbcpu_swiglu(const float *gate, const float *up, float *dst, long n) {
	for (long i = 0; i < n; i++) {
		float x = gate[i];
		dst[i] = x / (1.0f + db_exp(-x)) * up[i];
	}
}
