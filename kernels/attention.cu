// attention.cu: causal attention with grouped KV heads over each sequence's
// contiguous KV cache, for prefill, decode and the verify step alike.
//
// One block takes up to 8 query vectors (rows x heads) that share one KV
// head, so the keys and values it stages in shared memory serve the whole
// GQA group and every new row of the sequence. Keys are walked in tiles of
// 32 with the online softmax of Milakov & Gimelshein (2018) as in
// FlashAttention (Dao et al. 2022). When there are too few blocks to fill
// the GPU (decode, verify) the key range is split too, each split writing a
// partial (max, sum, accumulator) that a second kernel combines: the
// flash-decoding scheme (Dao, Haziza, Massa & Sizov 2023).
#include <algorithm>
#include <vector>
#include <stdint.h>

#include "common.cuh"

#define KT 32        // keys per tile
#define MAX_WARPS 8  // query vectors per block

struct attn_item {
	int seq;     // index into the call's sequences
	int v0;      // first query vector: v = row * group + head within group
	int nsplit;  // key splits of this item (1: the output is written directly)
	int fixed;   // splits are the fixed key ranges [i·FIXED_SPLIT, (i+1)·FIXED_SPLIT)
	size_t part; // first float of this item's partials
};

// In batch-invariant mode a decode or verify item splits its keys at fixed
// positions, so a query's keys are reduced in the same pieces and order
// whatever the call's batch (a verify step and a decode step then give
// bit-identical attention); items of more rows (prefill) are not split.
#define FIXED_SPLIT 256
#define FIXED_MAX_ROWS 32

// VecOf<T>::N elements of T make one 16-byte load; unpack widens them to f32.
template <typename T> struct VecOf;
template <> struct VecOf<float> {
	static constexpr int N = 4;
	__device__ static void unpack(const uint4 &u, float *out) {
		out[0] = __uint_as_float(u.x);
		out[1] = __uint_as_float(u.y);
		out[2] = __uint_as_float(u.z);
		out[3] = __uint_as_float(u.w);
	}
};
template <> struct VecOf<__nv_bfloat16> {
	static constexpr int N = 8;
	__device__ static void unpack(const uint4 &u, float *out) {
		const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
		for (int i = 0; i < 4; i++) {
			out[2 * i] = __uint_as_float(w[i] << 16);             // low half: the element at the lower address
			out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u); // high half
		}
	}
};

// load_tile_vec stages keys [t0, min(t0+KT, k1)) of KV head g into Ks and Vs
// (f32, rows of stride floats; keys past k1 as zeros) with 16-byte loads,
// UNROLL of them per thread and matrix in flight before the first store: with
// one block per multiprocessor (decode) the tile costs about one memory
// latency instead of one per element.
#define UNROLL 4
template <typename T>
__device__ __forceinline__ void load_tile_vec(float *Ks, float *Vs, const T *K, const T *V, int t0, int k1, int kvw,
                                              int g, int hd, int stride) {
	constexpr int N = VecOf<T>::N;
	const int per_row = hd / N, nvec = KT * per_row;
	for (int base = threadIdx.x; base < nvec; base += blockDim.x * UNROLL) {
		uint4 kb[UNROLL], vb[UNROLL];
#pragma unroll
		for (int u = 0; u < UNROLL; u++) {
			const int e = base + u * blockDim.x, key = t0 + e / per_row;
			kb[u] = make_uint4(0, 0, 0, 0);
			vb[u] = make_uint4(0, 0, 0, 0);
			if (e < nvec && key < k1) {
				const size_t off = (size_t)key * kvw + (size_t)g * hd + (size_t)(e % per_row) * N;
				kb[u] = *reinterpret_cast<const uint4 *>(K + off);
				vb[u] = *reinterpret_cast<const uint4 *>(V + off);
			}
		}
#pragma unroll
		for (int u = 0; u < UNROLL; u++) {
			const int e = base + u * blockDim.x;
			if (e >= nvec) break;
			const int j = e / per_row, d = (e % per_row) * N;
			float kf[N], vf[N];
			VecOf<T>::unpack(kb[u], kf);
			VecOf<T>::unpack(vb[u], vf);
#pragma unroll
			for (int i = 0; i < N; i++) {
				Ks[j * stride + d + i] = kf[i];
				Vs[j * stride + d + i] = vf[i];
			}
		}
	}
}

// Query vector v of an item is row v / group, head g * group + v % group.
// Partials are [item][g][warp][split][hd + 2] floats: acc, then max and sum.
template <typename T, int DPL>
__global__ void __launch_bounds__(MAX_WARPS * 32)
attn_partial(T *dst, const T *q, const db_attn_seq *seqs, const attn_item *items, int heads, int kvh, int hd,
             float scale, int window, float *part) {
	extern __shared__ float sm[];
	const int stride = hd + 1; // odd: lanes reading one column of different keys hit different banks
	float *Ks = sm, *Vs = sm + KT * stride, *Qs = sm + 2 * KT * stride;
	const int nw = blockDim.x >> 5, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const attn_item it = items[blockIdx.x];
	const int nsplit = it.nsplit, split = blockIdx.z;
	if (split >= nsplit) return; // the grid has the most splits of any item
	const db_attn_seq s = seqs[it.seq];
	const int g = blockIdx.y, group = heads / kvh;
	const int qw = heads * hd, kvw = kvh * hd;
	const T *K = (const T *)s.k, *V = (const T *)s.v;
	// 16-byte loads when every key row of this KV head starts 16-byte aligned.
	const bool vec = hd % VecOf<T>::N == 0 && kvw % VecOf<T>::N == 0 && ((uintptr_t)K & 15) == 0 && ((uintptr_t)V & 15) == 0;

	const int v = it.v0 + w;
	const bool live = v < s.n * group;
	const int row = v / group, head = g * group + v % group;
	const int pos = s.len - s.n + row; // absolute position of this query
	const int lo = window > 0 ? max(0, pos - window + 1) : 0;

	// The block's key range: from the lowest window start to the last query.
	const int first_row = it.v0 / group, last_row = min(s.n - 1, (it.v0 + nw - 1) / group);
	const int blo = window > 0 ? max(0, s.len - s.n + first_row - window + 1) : 0;
	const int bhi = s.len - s.n + last_row + 1;
	int k0, k1;
	if (it.fixed) {
		k0 = split * FIXED_SPLIT;
		k1 = min(bhi, k0 + FIXED_SPLIT);
	} else {
		const int chunk = ((bhi - blo + nsplit - 1) / nsplit + KT - 1) / KT * KT;
		k0 = blo + split * chunk;
		k1 = min(bhi, k0 + chunk);
	}

	if (live)
		for (int d = lane; d < hd; d += 32) Qs[w * hd + d] = ld(q, (size_t)(s.row + row) * qw + (size_t)head * hd + d);

	float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
	for (int t = 0; t < DPL; t++) acc[t] = 0.f;

	for (int t0 = k0; t0 < k1; t0 += KT) {
		__syncthreads(); // the previous tile is consumed (and Qs is written)
		if (vec)
			load_tile_vec(Ks, Vs, K, V, t0, k1, kvw, g, hd, stride);
		else
			for (int e = threadIdx.x; e < KT * hd; e += blockDim.x) {
				int j = e / hd, d = e % hd, key = t0 + j;
				float kv = 0.f, vv = 0.f;
				if (key < k1) {
					kv = ld(K, (size_t)key * kvw + (size_t)g * hd + d);
					vv = ld(V, (size_t)key * kvw + (size_t)g * hd + d);
				}
				Ks[j * stride + d] = kv;
				Vs[j * stride + d] = vv;
			}
		__syncthreads();
		if (!live) continue;
		int key = t0 + lane;
		float sc = -INFINITY;
		if (key < k1 && key >= lo && key <= pos) {
			float dot = 0.f;
			const float *kr = Ks + lane * stride, *qr = Qs + w * hd;
			for (int d = 0; d < hd; d++) dot += qr[d] * kr[d];
			sc = dot * scale;
		}
		float mt = warp_max(sc);
		float mn = fmaxf(m, mt);
		if (mn == -INFINITY) continue; // nothing visible yet
		float corr = expf(m - mn); // 0 while m is -inf
		float p = sc == -INFINITY ? 0.f : expf(sc - mn);
		l = l * corr + warp_sum(p);
#pragma unroll
		for (int t = 0; t < DPL; t++) acc[t] *= corr;
		for (int j = 0; j < KT; j++) {
			float pj = __shfl_sync(0xffffffffu, p, j);
			if (pj == 0.f) continue;
			const float *vr = Vs + j * stride;
#pragma unroll
			for (int t = 0; t < DPL; t++) {
				int d = lane + 32 * t;
				if (d < hd) acc[t] += pj * vr[d];
			}
		}
		m = mn;
	}
	if (!live) return;
	if (nsplit == 1) {
		float inv = l > 0.f ? 1.f / l : 0.f;
		T *out = dst + (size_t)(s.row + row) * qw + (size_t)head * hd;
#pragma unroll
		for (int t = 0; t < DPL; t++) {
			int d = lane + 32 * t;
			if (d < hd) st(out, d, acc[t] * inv);
		}
		return;
	}
	float *pp = part + it.part + (((size_t)g * MAX_WARPS + w) * nsplit + split) * (hd + 2);
#pragma unroll
	for (int t = 0; t < DPL; t++) {
		int d = lane + 32 * t;
		if (d < hd) pp[d] = acc[t];
	}
	if (lane == 0) {
		pp[hd] = m;
		pp[hd + 1] = l;
	}
}

// One warp per query vector: rescale each split's partial to the common
// maximum and normalise by the total sum.
template <typename T>
__global__ void attn_combine(T *dst, const db_attn_seq *seqs, const attn_item *items, int heads, int kvh, int hd,
                             const float *part) {
	const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const attn_item it = items[blockIdx.x];
	const int nsplit = it.nsplit;
	if (nsplit == 1) return; // written directly
	const db_attn_seq s = seqs[it.seq];
	const int g = blockIdx.y, group = heads / kvh, v = it.v0 + w;
	if (v >= s.n * group) return;
	const int row = v / group, head = g * group + v % group;
	const float *pp = part + it.part + ((size_t)g * MAX_WARPS + w) * nsplit * (hd + 2);
	float M = -INFINITY;
	for (int i = 0; i < nsplit; i++) M = fmaxf(M, pp[i * (hd + 2) + hd]);
	float L = 0.f;
	for (int i = 0; i < nsplit; i++) {
		float mi = pp[i * (hd + 2) + hd];
		if (mi != -INFINITY) L += pp[i * (hd + 2) + hd + 1] * expf(mi - M);
	}
	float inv = L > 0.f ? 1.f / L : 0.f;
	T *out = dst + (size_t)(s.row + row) * heads * hd + (size_t)head * hd;
	for (int d = lane; d < hd; d += 32) {
		float a = 0.f;
		for (int i = 0; i < nsplit; i++) {
			float mi = pp[i * (hd + 2) + hd];
			if (mi != -INFINITY) a += pp[i * (hd + 2) + d] * expf(mi - M);
		}
		st(out, d, a * inv);
	}
}

template <typename T, int DPL>
static db_status launch_attention(db_device *d, T *dst, const T *q, const db_attn_seq *dseqs, const attn_item *ditems,
                                  int nitems, int nw, int heads, int kvh, int hd, float scale, int window, int maxsplit,
                                  float *part) {
	size_t smem = (size_t)(2 * KT * (hd + 1) + MAX_WARPS * hd) * sizeof(float);
	if (smem > 48 * 1024)
		CK(cudaFuncSetAttribute(attn_partial<T, DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	dim3 grid(nitems, kvh, maxsplit);
	attn_partial<T, DPL><<<grid, nw * 32, smem, d->stream>>>(dst, q, dseqs, ditems, heads, kvh, hd, scale, window, part);
	LAUNCHED();
	if (maxsplit > 1) {
		attn_combine<T><<<dim3(nitems, kvh), nw * 32, 0, d->stream>>>(dst, dseqs, ditems, heads, kvh, hd, part);
		LAUNCHED();
	}
	return db_ok();
}

template <typename T>
static db_status attention_t(db_device *d, T *dst, const T *q, const db_attn_seq *dseqs, const attn_item *ditems,
                             int nitems, int nw, int heads, int kvh, int hd, float scale, int window, int maxsplit,
                             float *part) {
	int dpl = (hd + 31) / 32;
	if (dpl <= 1) return launch_attention<T, 1>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, maxsplit, part);
	if (dpl <= 2) return launch_attention<T, 2>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, maxsplit, part);
	if (dpl <= 4) return launch_attention<T, 4>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, maxsplit, part);
	return launch_attention<T, 8>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, maxsplit, part);
}

extern "C" db_status db_attention(db_device *d, int dtype, void *dst, const void *q, const db_attn_seq *seqs, int nseq,
                                  int heads, int kv_heads, int head_dim, float scale, int window) {
	ENTER_ANY(d);
	ARG(kv_heads > 0 && heads % kv_heads == 0, "attention: heads is not a multiple of kv heads");
	ARG(head_dim > 0 && head_dim <= 256, "attention: head dim must be in [1, 256]");
	ARG(kv_heads <= 65535, "attention: too many kv heads for one launch");
	const int group = heads / kv_heads;
	int maxn = 0, maxlen = 0;
	for (int i = 0; i < nseq; i++) {
		ARG(seqs[i].n >= 0 && seqs[i].n <= seqs[i].len, "attention: a sequence has more new rows than positions");
		maxn = std::max(maxn, seqs[i].n);
		maxlen = std::max(maxlen, seqs[i].len);
	}
	if (maxn == 0) return db_ok();
	const int nw = std::min(MAX_WARPS, maxn * group);
	std::vector<attn_item> items;
	for (int i = 0; i < nseq; i++)
		for (int v0 = 0; v0 < seqs[i].n * group; v0 += nw) items.push_back(attn_item{i, v0, 1, 0, 0});
	const int nitems = (int)items.size();

	// Split the keys only when the blocks would not fill the GPU twice over,
	// and never below 2 tiles of keys per split. Under 128 keys nothing is
	// split, so a decode and a verify step reduce a query's keys in the same
	// order (one tile per split was 4 % faster at 160 keys on an H200 but
	// broke that: docs/cuda.md, batch invariance).
	long blocks = (long)nitems * kv_heads;
	int nsplit = 1;
	long want = 2L * d->sms;
	if (blocks < want) {
		nsplit = (int)((want + blocks - 1) / blocks);
		nsplit = std::min(nsplit, std::max(1, maxlen / (2 * KT)));
		nsplit = std::min(nsplit, 64);
	}
	// Each item's splits and where its partials go.
	int maxsplit = 1;
	size_t floats = 0;
	for (auto &it : items) {
		const db_attn_seq &sq = seqs[it.seq];
		if (d->invariant && sq.n <= FIXED_MAX_ROWS) {
			it.fixed = 1;
			it.nsplit = std::max(1, (sq.len + FIXED_SPLIT - 1) / FIXED_SPLIT);
		} else {
			it.nsplit = d->invariant ? 1 : nsplit;
		}
		it.part = floats;
		if (it.nsplit > 1) floats += (size_t)kv_heads * MAX_WARPS * it.nsplit * (head_dim + 2);
		maxsplit = std::max(maxsplit, it.nsplit);
	}
	ARG(maxsplit <= 65535, "attention: too many key splits for one launch");
	STEP_SIG(d, dtype, dst, q, nseq, heads, kv_heads, head_dim, scale, window, nitems, nw, maxsplit, floats,
	         d->invariant);
	float *part = NULL;
	if (floats > 0) {
		void *w;
		CKS(db_work(d, floats * sizeof(float), &w));
		part = (float *)w;
	}
	void *dseqs, *ditems;
	CKS(db_args_reserve(d, db_args_size(nseq * sizeof(db_attn_seq), items.size() * sizeof(attn_item))));
	CKS(db_args_push_parts(d, {{seqs, nseq * sizeof(db_attn_seq), &dseqs},
	                           {items.data(), items.size() * sizeof(attn_item), &ditems}}));
	REPLAYED(d);
	DISPATCH(dtype, return attention_t<T>(d, (T *)dst, (const T *)q, (const db_attn_seq *)dseqs,
	                                      (const attn_item *)ditems, nitems, nw, heads, kv_heads, head_dim, scale, window,
	                                      maxsplit, part));
	return db_ok();
}

// ---- appending a step's keys and values to the caches ----

struct kv_item {
	int seq, j; // row j of sequence seq's new rows
};

// One block per new row; W is the word copied per thread (uint4 when every
// row is 16-byte aligned, else the element itself).
template <typename W>
__global__ void append_kv_kernel(const char *k, const char *v, const db_attn_seq *seqs, const kv_item *items,
                                 size_t row_bytes) {
	const kv_item it = items[blockIdx.x];
	const db_attn_seq s = seqs[it.seq];
	const size_t src = (size_t)(s.row + it.j) * row_bytes, dst = (size_t)(s.len - s.n + it.j) * row_bytes;
	const W *ks = (const W *)(k + src), *vs = (const W *)(v + src);
	W *kd = (W *)((char *)s.k + dst), *vd = (W *)((char *)s.v + dst);
	const size_t n = row_bytes / sizeof(W);
	for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
		kd[i] = ks[i];
		vd[i] = vs[i];
	}
}

extern "C" db_status db_append_kv(db_device *d, const void *k, const void *v, const db_attn_seq *seqs, int nseq, int width,
                                  int elem_bytes) {
	ENTER_ANY(d);
	ARG(elem_bytes == 2 || elem_bytes == 4, "append_kv: elements are 2 or 4 bytes");
	std::vector<kv_item> items;
	bool aligned = ((uintptr_t)k & 15) == 0 && ((uintptr_t)v & 15) == 0 && ((size_t)width * elem_bytes) % 16 == 0;
	for (int i = 0; i < nseq; i++) {
		ARG(seqs[i].n >= 0 && seqs[i].n <= seqs[i].len, "append_kv: a sequence has more new rows than positions");
		aligned = aligned && ((uintptr_t)seqs[i].k & 15) == 0 && ((uintptr_t)seqs[i].v & 15) == 0;
		for (int j = 0; j < seqs[i].n; j++) items.push_back(kv_item{i, j});
	}
	if (items.empty()) return db_ok();
	ARG(items.size() < 0x7fffffffu, "append_kv: too many rows for one launch");
	STEP_SIG(d, k, v, nseq, width, elem_bytes, items.size(), (int)aligned);
	void *dseqs, *ditems;
	CKS(db_args_reserve(d, db_args_size(nseq * sizeof(db_attn_seq), items.size() * sizeof(kv_item))));
	CKS(db_args_push_parts(d, {{seqs, nseq * sizeof(db_attn_seq), &dseqs},
	                           {items.data(), items.size() * sizeof(kv_item), &ditems}}));
	const size_t row_bytes = (size_t)width * elem_bytes;
	const unsigned blocks = (unsigned)items.size();
	const auto *ds = (const db_attn_seq *)dseqs;
	const auto *di = (const kv_item *)ditems;
	REPLAYED(d);
	if (aligned)
		append_kv_kernel<uint4><<<blocks, 128, 0, d->stream>>>((const char *)k, (const char *)v, ds, di, row_bytes);
	else if (elem_bytes == 4)
		append_kv_kernel<uint32_t><<<blocks, 128, 0, d->stream>>>((const char *)k, (const char *)v, ds, di, row_bytes);
	else
		append_kv_kernel<uint16_t><<<blocks, 128, 0, d->stream>>>((const char *)k, (const char *)v, ds, di, row_bytes);
	LAUNCHED();
	return db_ok();
}
