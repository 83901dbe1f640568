// Causal attention for one head of one sequence, one query row at a time.
// Each query's scores, softmax and weighted sum are computed the same way
// whatever other rows share the call (a decode step, a verify step of
// gamma+1 rows, a prefill), so outputs do not depend on batching.
#include "attention.h"
#include <math.h>

#define LANES 16

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
		double sum = 0;
		for (int j = lo; j <= pos; j++) {
			float e = expf(scores[j] - mx);
			scores[j] = e;
			sum += e;
		}
		float inv = (float)(1.0 / sum);
		float *oi = out + (long)i * os;
		for (int e = 0; e < hd; e++) oi[e] = 0;
		for (int j = lo; j <= pos; j++) {
			float p = scores[j] * inv;
			const float *vj = v + (long)j * ks;
			for (int e = 0; e < hd; e++) oi[e] += p * vj[e];
		}
	}
}

// dbcpu_swiglu: dst = silu(gate) · up = gate / (1 + e^-gate) · up, elementwise.
__attribute__((target_clones("avx512f", "avx2", "default")))
void dbcpu_swiglu(const float *gate, const float *up, float *dst, long n) {
	for (long i = 0; i < n; i++) {
		float x = gate[i];
		dst[i] = x / (1.0f + expf(-x)) * up[i];
	}
}
