// sampling.cu: logits masking, argmax, softmax with temperature / top-k /
// top-p, inverse-CDF sampling and the device part of the acceptance rule of
// speculative decoding. The semantics are pkg/sampling's and pkg/spec's
// (ties, NaN, empty rows), so a row gives the same token on the device as on
// the host for the same uniforms. One block of SB threads per row.
#include <limits.h>

#include "common.cuh"

#define SB 1024

// ---- block primitives (blockDim.x == SB) ----

struct argmax_scratch {
	float v[32];
	int i[32];
	int best;
};

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
	return v > bv || (v == bv && i < bi);
}

// block_argmax: the first index of the largest non-NaN value of row[0, n);
// 0 when every value is NaN or -inf, -1 when n is 0 (sampling.Argmax).
template <typename T>
__device__ int block_argmax(const T *row, int n, argmax_scratch *sc) {
	float bv = -INFINITY;
	int bi = INT_MAX;
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		float v = ld(row, i);
		if (v > bv) bv = v, bi = i; // NaN never compares greater
	}
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
	}
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	__syncthreads();
	if (lane == 0) sc->v[w] = bv, sc->i[w] = bi;
	__syncthreads();
	if (w == 0) {
		int nw = blockDim.x >> 5;
		bv = lane < nw ? sc->v[lane] : -INFINITY;
		bi = lane < nw ? sc->i[lane] : INT_MAX;
		for (int o = 16; o > 0; o >>= 1) {
			float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			int oi = __shfl_xor_sync(0xffffffffu, bi, o);
			if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
		}
		if (lane == 0) sc->best = n == 0 ? -1 : bi == INT_MAX ? 0 : bi;
	}
	__syncthreads();
	return sc->best;
}

struct scan_scratch {
	double warp[32];
	double total;
	int claim;
	int last;
};

// block_scan: the exclusive prefix sum of v over threads; *total gets the sum.
__device__ double block_scan(double v, scan_scratch *sc, double *total) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	double inc = v;
	for (int o = 1; o < 32; o <<= 1) {
		double t = __shfl_up_sync(0xffffffffu, inc, o);
		if (lane >= o) inc += t;
	}
	__syncthreads();
	if (lane == 31) sc->warp[w] = inc;
	__syncthreads();
	if (w == 0) {
		double x = lane < nw ? sc->warp[lane] : 0.0, xi = x;
		for (int o = 1; o < 32; o <<= 1) {
			double t = __shfl_up_sync(0xffffffffu, xi, o);
			if (lane >= o) xi += t;
		}
		if (lane < nw) sc->warp[lane] = xi - x; // exclusive offset of each warp
		if (lane == 31) sc->total = xi;
	}
	__syncthreads();
	*total = sc->total;
	return sc->warp[w] + inc - v;
}

// block_sample: the inverse CDF of the positive entries of row[0, n) at u
// (sampling.Sample): the first i whose running sum exceeds u * total, the
// last positive index when rounding leaves none, -1 without mass. Each
// thread owns a contiguous chunk so the running sum follows index order.
__device__ int block_sample(const float *row, int n, float u, scan_scratch *sc) {
	int chunk = (n + blockDim.x - 1) / blockDim.x;
	int lo = min(n, (int)threadIdx.x * chunk), hi = min(n, lo + chunk);
	double local = 0;
	int last = -1;
	for (int i = lo; i < hi; i++) {
		float p = row[i];
		if (p > 0.f) local += p, last = i;
	}
	if (threadIdx.x == 0) sc->claim = INT_MAX, sc->last = -1;
	double total;
	double excl = block_scan(local, sc, &total); // its barriers order the writes above
	if (last >= 0) atomicMax(&sc->last, last);
	if (!(total > 0)) {
		__syncthreads();
		return -1;
	}
	double target = fmin(fmax((double)u, 0.0), 1.0) * total;
	if (local > 0 && target < excl + local) {
		double run = 0;
		for (int i = lo; i < hi; i++) {
			float p = row[i];
			if (!(p > 0.f)) continue;
			run += p;
			if (target < excl + run) {
				atomicMin(&sc->claim, i);
				break;
			}
		}
	}
	__syncthreads();
	int r = sc->claim == INT_MAX ? sc->last : sc->claim;
	__syncthreads();
	return r;
}

// ---- masking and argmax ----

template <typename T>
__global__ void mask_kernel(T *logits, int rows, int vocab, int limit) {
	int w = vocab - limit;
	size_t total = (size_t)rows * w;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
		st(logits, (i / w) * vocab + limit + i % w, -INFINITY);
}

extern "C" db_status db_mask_logits(db_device *d, int dtype, void *logits, int rows, int vocab, int limit) {
	ENTER(d);
	ARG(limit >= 0 && limit <= vocab, "mask: limit outside the vocabulary");
	if (rows == 0 || limit == vocab) return db_ok();
	DISPATCH(dtype, mask_kernel<<<db_blocks((size_t)rows * (vocab - limit), 256), 256, 0, d->stream>>>((T *)logits, rows, vocab, limit));
	LAUNCHED();
	return db_ok();
}

template <typename T>
__global__ void argmax_kernel(const T *logits, int vocab, int n, int32_t *out) {
	__shared__ argmax_scratch sc;
	int r = block_argmax(logits + (size_t)blockIdx.x * vocab, n, &sc);
	if (threadIdx.x == 0) out[blockIdx.x] = r;
}

static int limited(int vocab, int limit) { return limit > 0 && limit < vocab ? limit : vocab; }

extern "C" db_status db_argmax(db_device *d, int dtype, const void *logits, int rows, int vocab, int limit, int32_t *out) {
	ENTER(d);
	if (rows == 0) return db_ok();
	void *dout;
	CKS(db_work(d, rows * sizeof(int32_t), &dout));
	DISPATCH(dtype, argmax_kernel<<<rows, SB, 0, d->stream>>>((const T *)logits, vocab, limited(vocab, limit), (int32_t *)dout));
	LAUNCHED();
	CK(cudaMemcpyAsync(out, dout, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

// ---- greedy choice with its margin ----

// top2: a best value with its index and the runner-up value, the
// runner-up counting a tie with the best (sampling.ArgmaxMargin).
struct top2 {
	float v;
	int i;
	float s;
};

__device__ __forceinline__ top2 top2_merge(top2 a, top2 b) {
	if (better(b.v, b.i, a.v, a.i)) return top2{b.v, b.i, fmaxf(b.s, a.v)};
	return top2{a.v, a.i, fmaxf(a.s, b.v)};
}

__device__ __forceinline__ top2 top2_shfl(top2 a, int o) {
	top2 b;
	b.v = __shfl_xor_sync(0xffffffffu, a.v, o);
	b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
	b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
	return top2_merge(a, b);
}

// margin_of is sampling.margin: (top1 − top2) / max(1, |top1|) in double,
// 1 when either is −inf, for +inf 0 against +inf and 1 otherwise.
__device__ float margin_of(float t1, float t2) {
	if ((isinf(t1) && t1 < 0) || (isinf(t2) && t2 < 0)) return 1.f;
	if (isinf(t1)) return isinf(t2) ? 0.f : 1.f;
	return (float)(((double)t1 - (double)t2) / fmax(1.0, fabs((double)t1)));
}

// argmax_margin_kernel: one block per row; ids[r] and margins[r] as
// sampling.ArgmaxMargin gives them (-1 and 1 for an empty row, -1 and NaN
// when nothing is above -inf: a broken pass, no choice).
template <typename T>
__global__ void argmax_margin_kernel(const T *logits, int vocab, int n, int32_t *ids, float *margins) {
	__shared__ top2 sc[32];
	const T *row = logits + (size_t)blockIdx.x * vocab;
	top2 t = {-INFINITY, INT_MAX, -INFINITY};
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		float v = ld(row, i); // NaN compares false: never taken
		if (v > t.v) {
			t.s = t.v;
			t.v = v;
			t.i = i;
		} else if (v > t.s) {
			t.s = v;
		}
	}
	for (int o = 16; o > 0; o >>= 1) t = top2_shfl(t, o);
	const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	if (lane == 0) sc[w] = t;
	__syncthreads();
	if (w != 0) return;
	t = lane < nw ? sc[lane] : top2{-INFINITY, INT_MAX, -INFINITY};
	for (int o = 16; o > 0; o >>= 1) t = top2_shfl(t, o);
	if (lane != 0) return;
	if (n == 0) {
		ids[blockIdx.x] = -1;
		margins[blockIdx.x] = 1.f;
	} else if (t.i == INT_MAX) {
		ids[blockIdx.x] = -1;
		margins[blockIdx.x] = NAN;
	} else {
		ids[blockIdx.x] = t.i;
		margins[blockIdx.x] = margin_of(t.v, t.s);
	}
}

extern "C" db_status db_argmax_margin(db_device *d, int dtype, const void *logits, int rows, int vocab, int limit,
                                      int32_t *ids, float *margins) {
	ENTER(d);
	if (rows == 0) return db_ok();
	void *dout;
	const size_t idb = ((size_t)rows * sizeof(int32_t) + 15) & ~(size_t)15;
	CKS(db_work(d, idb + (size_t)rows * sizeof(float), &dout));
	int32_t *did = (int32_t *)dout;
	float *dm = (float *)((char *)dout + idb);
	DISPATCH(dtype, argmax_margin_kernel<<<rows, SB, 0, d->stream>>>((const T *)logits, vocab, limited(vocab, limit), did, dm));
	LAUNCHED();
	CK(cudaMemcpyAsync(ids, did, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaMemcpyAsync(margins, dm, rows * sizeof(float), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

// ---- probabilities ----

// Order-preserving map of floats to unsigned keys: a larger float has a larger key.
__device__ __forceinline__ uint32_t fkey(float f) {
	uint32_t u = __float_as_uint(f);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float kfloat(uint32_t k) {
	return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct probs_scratch {
	int count[256];
	double mass[256];
	uint32_t prefix;
	int need;
	double above;
	int bucket;
	float red[32];
	double dred[32];
	argmax_scratch am;
	scan_scratch scan;
};

// kth_largest: radix select (4 passes of 8 bits over the float keys) of the
// k-th largest value of row[0, n).
__device__ float kth_largest(const float *row, int n, int k, probs_scratch *sc) {
	if (threadIdx.x == 0) sc->prefix = 0, sc->need = k;
	for (int shift = 24; shift >= 0; shift -= 8) {
		for (int b = threadIdx.x; b < 256; b += blockDim.x) sc->count[b] = 0;
		__syncthreads();
		uint32_t prefix = sc->prefix;
		for (int i = threadIdx.x; i < n; i += blockDim.x) {
			uint32_t key = fkey(row[i]);
			if (shift == 24 || (key >> (shift + 8)) == (prefix >> (shift + 8)))
				atomicAdd(&sc->count[(key >> shift) & 255], 1);
		}
		__syncthreads();
		if (threadIdx.x == 0) {
			int need = sc->need, b = 255;
			for (; b > 0 && sc->count[b] < need; b--) need -= sc->count[b];
			sc->need = need;
			sc->prefix = prefix | ((uint32_t)b << shift);
		}
		__syncthreads();
	}
	return kfloat(sc->prefix);
}

// nucleus: the value tau of the element at which the running mass, taken in
// descending order, first reaches top_p, and the mass strictly above it.
// Returns false when the whole row does not reach top_p (keep everything).
__device__ bool nucleus(const float *row, int n, float top_p, probs_scratch *sc, float *tau, double *above, int *ties) {
	if (threadIdx.x == 0) sc->prefix = 0, sc->above = 0, sc->bucket = -1;
	for (int shift = 24; shift >= 0; shift -= 8) {
		for (int b = threadIdx.x; b < 256; b += blockDim.x) sc->count[b] = 0, sc->mass[b] = 0;
		__syncthreads();
		uint32_t prefix = sc->prefix;
		for (int i = threadIdx.x; i < n; i += blockDim.x) {
			float w = row[i];
			if (!(w > 0.f)) continue;
			uint32_t key = __float_as_uint(w); // positive floats order like their bits
			if (shift == 24 || (key >> (shift + 8)) == (prefix >> (shift + 8))) {
				atomicAdd(&sc->count[(key >> shift) & 255], 1);
				atomicAdd(&sc->mass[(key >> shift) & 255], (double)w);
			}
		}
		__syncthreads();
		if (threadIdx.x == 0) {
			double acc = sc->above, acc_low = 0;
			int b = 255, low = -1;
			for (; b >= 0; b--) {
				if (sc->count[b] > 0) {
					if (acc + sc->mass[b] >= (double)top_p) break;
					low = b, acc_low = acc;
				}
				acc += sc->mass[b];
			}
			// Past the first pass the chosen bucket did reach top_p; if its
			// parts, summed in another order, fall short by rounding, the
			// crossing is its smallest value.
			if (b < 0 && shift < 24) b = low, acc = acc_low;
			sc->bucket = b;
			if (b >= 0) {
				sc->above = acc;
				sc->prefix = prefix | ((uint32_t)b << shift);
				sc->need = sc->count[b];
			}
		}
		__syncthreads();
		if (sc->bucket < 0) return false;
	}
	*tau = __uint_as_float(sc->prefix);
	*above = sc->above;
	*ties = sc->need;
	return true;
}

template <typename T>
__global__ void probs_kernel(float *probs, const T *logits, int vocab, int n, float temperature, int top_k, float top_p) {
	__shared__ probs_scratch sc;
	float *out = probs + (size_t)blockIdx.x * vocab;
	const T *lg = logits + (size_t)blockIdx.x * vocab;
	if (!(temperature > 0.f)) {
		int a = block_argmax(lg, n, &sc.am);
		for (int i = threadIdx.x; i < vocab; i += blockDim.x) out[i] = i == a ? 1.f : 0.f;
		return;
	}
	// Scaled logits; ids past the limit and NaN are out.
	int live = 0;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		float x = i < n ? ld(lg, i) : NAN;
		float s = isnan(x) ? -INFINITY : x / temperature;
		out[i] = s;
		live += s > -INFINITY;
	}
	live = (int)block_sum((float)live, sc.red);
	if (top_k > 0 && top_k < live) {
		__syncthreads();
		float thr = kth_largest(out, vocab, top_k, &sc);
		for (int i = threadIdx.x; i < vocab; i += blockDim.x)
			if (out[i] < thr) out[i] = -INFINITY;
	}
	__syncthreads();
	float m = -INFINITY;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, out[i]);
	m = block_max(m, sc.red);
	if (m == -INFINITY) { // no usable logit (all NaN or -inf): no mass, as on the host
		for (int i = threadIdx.x; i < vocab; i += blockDim.x) out[i] = 0.f;
		return;
	}
	double z = 0;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		float s = out[i];
		float w = m == INFINITY ? (s == INFINITY ? 1.f : 0.f) : expf(s - m);
		out[i] = w;
		z += w;
	}
	z = block_sum(z, sc.dred);
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) out[i] = (float)(out[i] / z);
	if (!(top_p > 0.f && top_p < 1.f)) return;
	__syncthreads();
	float tau;
	double above;
	int ties;
	if (!nucleus(out, vocab, top_p, &sc, &tau, &above, &ties)) return;
	// How many of the ties at tau the host's descending walk takes (it takes
	// equal values largest index first).
	int take = 0;
	for (double h = above; h < (double)top_p && take < ties; take++) h += tau;
	int chunk = (vocab + blockDim.x - 1) / blockDim.x;
	int lo = min(vocab, (int)threadIdx.x * chunk), hi = min(vocab, lo + chunk);
	int mine = 0;
	for (int i = lo; i < hi; i++) mine += out[i] == tau;
	// Ties in the chunks above this one (a scan from the top).
	double tot;
	double below = block_scan((double)mine, &sc.scan, &tot);
	int before = (int)(tot - below - mine + 0.5);
	double z2 = 0;
	for (int i = hi - 1; i >= lo; i--) {
		float w = out[i];
		bool keep = w > tau;
		if (w == tau) {
			keep = before < take;
			before++;
		}
		if (keep) z2 += w;
		else out[i] = 0.f;
	}
	z2 = block_sum(z2, sc.dred);
	for (int i = lo; i < hi; i++) out[i] = (float)(out[i] / z2);
}

extern "C" db_status db_probs(db_device *d, int dtype, float *probs, const void *logits, int rows, int vocab,
                              float temperature, int top_k, float top_p, int limit) {
	ENTER(d);
	ARG(vocab > 0, "probs: empty vocabulary");
	if (rows == 0) return db_ok();
	DISPATCH(dtype, probs_kernel<<<rows, SB, 0, d->stream>>>(probs, (const T *)logits, vocab, limited(vocab, limit),
	                                                          temperature, top_k, top_p));
	LAUNCHED();
	return db_ok();
}

// ---- a drafter's top-k q: candidates on the device, finished on the host ----

// topk_kernel: one block per row of probs. The row's live ids (probability
// > 0) are counted; when there are more than k, t is the k-th largest
// probability (radix select) and every id with probability >= t is a
// candidate (ties at t included: the host keeps the lowest ids), else every
// live id is. Candidates go to ids/vals[row][0, cap) in any order; counts[row]
// is how many there were (more than cap: the host reads the row instead) and
// lives[row] the live count, which sampling.TopKOfCandidates needs.
__global__ void topk_kernel(const float *probs, int vocab, int k, int cap, int32_t *ids, float *vals, int32_t *counts,
                            int32_t *lives) {
	__shared__ probs_scratch sc;
	__shared__ float red[32];
	__shared__ int slots;
	const float *row = probs + (size_t)blockIdx.x * vocab;
	float n = 0.f; // a count, exact in f32 below 2^24 ids
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) n += row[i] > 0.f ? 1.f : 0.f;
	const int live = (int)block_sum<float>(n, red);
	const bool all = k <= 0 || live <= k;
	const float t = all ? 0.f : kth_largest(row, vocab, k, &sc);
	if (threadIdx.x == 0) slots = 0;
	__syncthreads();
	int32_t *rid = ids + (size_t)blockIdx.x * cap;
	float *rval = vals + (size_t)blockIdx.x * cap;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		const float p = row[i];
		if (p > 0.f && (all || p >= t)) {
			const int slot = atomicAdd(&slots, 1);
			if (slot < cap) {
				rid[slot] = i;
				rval[slot] = p;
			}
		}
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		counts[blockIdx.x] = slots;
		lives[blockIdx.x] = live;
	}
}

extern "C" db_status db_topk(db_device *d, const float *probs, int rows, int vocab, int k, int cap, int32_t *ids,
                             float *vals, int32_t *counts, int32_t *lives) {
	ENTER(d);
	ARG(vocab > 0 && cap > 0, "topk: empty vocabulary or no room for candidates");
	if (rows == 0) return db_ok();
	const size_t n = (size_t)rows * cap;
	const size_t ib = (n * sizeof(int32_t) + 255) & ~(size_t)255, vb = (n * sizeof(float) + 255) & ~(size_t)255,
	             cb = ((size_t)rows * sizeof(int32_t) + 255) & ~(size_t)255;
	void *w;
	CKS(db_work(d, ib + vb + 2 * cb, &w));
	char *base = (char *)w;
	int32_t *did = (int32_t *)base, *dcount = (int32_t *)(base + ib + vb), *dlive = (int32_t *)(base + ib + vb + cb);
	float *dval = (float *)(base + ib);
	topk_kernel<<<rows, SB, 0, d->stream>>>(probs, vocab, k, cap, did, dval, dcount, dlive);
	LAUNCHED();
	CK(cudaMemcpyAsync(counts, dcount, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaMemcpyAsync(lives, dlive, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaMemcpyAsync(ids, did, n * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaMemcpyAsync(vals, dval, n * sizeof(float), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

// ---- sampling ----

__global__ void sample_kernel(const float *probs, int vocab, const float *u, int32_t *out) {
	__shared__ scan_scratch sc;
	int r = block_sample(probs + (size_t)blockIdx.x * vocab, vocab, u[blockIdx.x], &sc);
	if (threadIdx.x == 0) out[blockIdx.x] = r;
}

extern "C" db_status db_sample(db_device *d, const float *probs, int rows, int vocab, const float *u, int32_t *out) {
	ENTER(d);
	if (rows == 0) return db_ok();
	void *du, *dout;
	CKS(db_args_reserve(d, db_args_size(rows * sizeof(float))));
	CKS(db_args_push(d, u, rows * sizeof(float), &du));
	CKS(db_work(d, rows * sizeof(int32_t), &dout));
	sample_kernel<<<rows, SB, 0, d->stream>>>(probs, vocab, (const float *)du, (int32_t *)dout);
	LAUNCHED();
	CK(cudaMemcpyAsync(out, dout, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	return db_ok();
}

// ---- acceptance rule ----

// verify_kernel: speculative sampling (Leviathan, Kalman & Matias 2023;
// Chen et al. 2023). Draft i is accepted when u_accept[i] * q_i(x) < p_i(x);
// at the first rejection the token is drawn from norm(max(0, p_i - q_i)) at
// u_residual[i] (from p_i when that has no mass); when all are accepted the
// bonus token is drawn from p_gamma at u_bonus. Greedy: accept while the
// draft is the argmax of p_i, then emit that argmax. res[0] = accepted,
// res[1] = token, or -2 when a draft has no mass in its own q, -3 when a
// target row has no mass.
__global__ void verify_kernel(const float *p, int vocab, int gamma, const int32_t *drafts, const int32_t *q_ids,
                              const float *q_probs, const int32_t *q_off, int greedy, const float *u_accept,
                              const float *u_residual, float u_bonus, float *r, int32_t *res) {
	__shared__ argmax_scratch am;
	__shared__ scan_scratch sc;
	__shared__ float qx;
	int i = 0;
	for (; i < gamma; i++) {
		const float *pi = p + (size_t)i * vocab;
		int x = drafts[i];
		if (greedy) {
			int best = block_argmax(pi, vocab, &am);
			if (x != best) {
				if (threadIdx.x == 0) res[0] = i, res[1] = best;
				return;
			}
			continue;
		}
		__syncthreads(); // every thread is done with the previous draft's qx
		if (threadIdx.x == 0) qx = 0.f;
		__syncthreads();
		for (int j = q_off[i] + threadIdx.x; j < q_off[i + 1]; j += blockDim.x)
			if (q_ids[j] == x) qx = q_probs[j];
		__syncthreads();
		if (!(qx > 0.f)) {
			if (threadIdx.x == 0) res[0] = i, res[1] = -2;
			return;
		}
		float px = x < vocab ? pi[x] : 0.f;
		if ((double)u_accept[i] * qx < (double)px) continue;
		for (int j = threadIdx.x; j < vocab; j += blockDim.x) r[j] = pi[j];
		__syncthreads();
		for (int j = q_off[i] + threadIdx.x; j < q_off[i + 1]; j += blockDim.x) {
			int id = q_ids[j];
			if (id >= 0 && id < vocab) r[id] = fmaxf(0.f, r[id] - q_probs[j]);
		}
		__syncthreads();
		int y = block_sample(r, vocab, u_residual[i], &sc);
		if (y < 0) y = block_sample(pi, vocab, u_residual[i], &sc);
		if (threadIdx.x == 0) res[0] = i, res[1] = y < 0 ? -3 : y;
		return;
	}
	const float *pb = p + (size_t)gamma * vocab;
	int y = greedy ? block_argmax(pb, vocab, &am) : block_sample(pb, vocab, u_bonus, &sc);
	if (threadIdx.x == 0) res[0] = gamma, res[1] = y < 0 ? -3 : y;
}

extern "C" db_status db_verify(db_device *d, const float *p, int vocab, int gamma, const int32_t *drafts,
                               const int32_t *q_ids, const float *q_probs, const int32_t *q_off, int greedy,
                               const float *u_accept, const float *u_residual, float u_bonus, int32_t *accepted,
                               int32_t *token) {
	ENTER(d);
	ARG(gamma >= 0 && vocab > 0, "verify: gamma >= 0 and a vocabulary");
	int nq = greedy ? 0 : q_off[gamma];
	size_t g = gamma > 0 ? gamma : 1, nqs = nq > 0 ? nq : 1;
	void *dd, *dqi, *dqp, *dqo, *dua, *dur, *w;
	CKS(db_args_reserve(d, db_args_size(g * 4, nqs * 4, nqs * 4, (g + 1) * 4, g * 4, g * 4)));
	CKS(db_args_push(d, drafts, gamma * 4, &dd));
	CKS(db_args_push(d, q_ids, greedy ? 0 : nq * 4, &dqi));
	CKS(db_args_push(d, q_probs, greedy ? 0 : nq * 4, &dqp));
	CKS(db_args_push(d, q_off, greedy ? 0 : (gamma + 1) * 4, &dqo));
	CKS(db_args_push(d, u_accept, greedy ? 0 : gamma * 4, &dua));
	CKS(db_args_push(d, u_residual, greedy ? 0 : gamma * 4, &dur));
	// Scratch: the residual row, then the two results.
	size_t roff = ((size_t)vocab * sizeof(float) + 255) & ~(size_t)255;
	CKS(db_work(d, roff + 256, &w));
	float *r = (float *)w;
	int32_t *res = (int32_t *)((char *)w + roff);
	verify_kernel<<<1, SB, 0, d->stream>>>(p, vocab, gamma, (const int32_t *)dd, (const int32_t *)dqi,
	                                        (const float *)dqp, (const int32_t *)dqo, greedy, (const float *)dua,
	                                        (const float *)dur, u_bonus, r, res);
	LAUNCHED();
	int32_t h[2];
	CK(cudaMemcpyAsync(h, res, sizeof(h), cudaMemcpyDeviceToHost, d->stream));
	CK(cudaStreamSynchronize(d->stream));
	*accepted = h[0];
	*token = h[1];
	return db_ok();
}
