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

#include "common.cuh"

#define KT 32        // keys per tile
#define MAX_WARPS 8  // query vectors per block

struct attn_item {
	int seq; // index into the call's sequences
	int v0;  // first query vector: v = row * group + head within group
};

// Query vector v of an item is row v / group, head g * group + v % group.
// Partials are [item][g][warp][split][hd + 2] floats: acc, then max and sum.
template <typename T, int DPL>
__global__ void __launch_bounds__(MAX_WARPS * 32)
attn_partial(T *dst, const T *q, const db_attn_seq *seqs, const attn_item *items, int heads, int kvh, int hd,
             float scale, int window, int nsplit, float *part) {
	extern __shared__ float sm[];
	const int stride = hd + 1; // odd: lanes reading one column of different keys hit different banks
	float *Ks = sm, *Vs = sm + KT * stride, *Qs = sm + 2 * KT * stride;
	const int nw = blockDim.x >> 5, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const attn_item it = items[blockIdx.x];
	const db_attn_seq s = seqs[it.seq];
	const int g = blockIdx.y, split = blockIdx.z, group = heads / kvh;
	const int qw = heads * hd, kvw = kvh * hd;
	const T *K = (const T *)s.k, *V = (const T *)s.v;

	const int v = it.v0 + w;
	const bool live = v < s.n * group;
	const int row = v / group, head = g * group + v % group;
	const int pos = s.len - s.n + row; // absolute position of this query
	const int lo = window > 0 ? max(0, pos - window + 1) : 0;

	// The block's key range: from the lowest window start to the last query.
	const int first_row = it.v0 / group, last_row = min(s.n - 1, (it.v0 + nw - 1) / group);
	const int blo = window > 0 ? max(0, s.len - s.n + first_row - window + 1) : 0;
	const int bhi = s.len - s.n + last_row + 1;
	const int chunk = ((bhi - blo + nsplit - 1) / nsplit + KT - 1) / KT * KT;
	const int k0 = blo + split * chunk, k1 = min(bhi, k0 + chunk);

	if (live)
		for (int d = lane; d < hd; d += 32) Qs[w * hd + d] = ld(q, (size_t)(s.row + row) * qw + (size_t)head * hd + d);

	float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
	for (int t = 0; t < DPL; t++) acc[t] = 0.f;

	for (int t0 = k0; t0 < k1; t0 += KT) {
		__syncthreads(); // the previous tile is consumed (and Qs is written)
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
	float *pp = part + ((((size_t)blockIdx.x * kvh + g) * MAX_WARPS + w) * nsplit + split) * (hd + 2);
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
                             int nsplit, const float *part) {
	const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const attn_item it = items[blockIdx.x];
	const db_attn_seq s = seqs[it.seq];
	const int g = blockIdx.y, group = heads / kvh, v = it.v0 + w;
	if (v >= s.n * group) return;
	const int row = v / group, head = g * group + v % group;
	const float *pp = part + (((size_t)blockIdx.x * kvh + g) * MAX_WARPS + w) * nsplit * (hd + 2);
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
                                  int nitems, int nw, int heads, int kvh, int hd, float scale, int window, int nsplit,
                                  float *part) {
	size_t smem = (size_t)(2 * KT * (hd + 1) + MAX_WARPS * hd) * sizeof(float);
	if (smem > 48 * 1024)
		CK(cudaFuncSetAttribute(attn_partial<T, DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	dim3 grid(nitems, kvh, nsplit);
	attn_partial<T, DPL><<<grid, nw * 32, smem, d->stream>>>(dst, q, dseqs, ditems, heads, kvh, hd, scale, window,
	                                                         nsplit, part);
	LAUNCHED();
	if (nsplit > 1) {
		attn_combine<T><<<dim3(nitems, kvh), nw * 32, 0, d->stream>>>(dst, dseqs, ditems, heads, kvh, hd, nsplit, part);
		LAUNCHED();
	}
	return db_ok();
}

template <typename T>
static db_status attention_t(db_device *d, T *dst, const T *q, const db_attn_seq *dseqs, const attn_item *ditems,
                             int nitems, int nw, int heads, int kvh, int hd, float scale, int window, int nsplit,
                             float *part) {
	int dpl = (hd + 31) / 32;
	if (dpl <= 1) return launch_attention<T, 1>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, nsplit, part);
	if (dpl <= 2) return launch_attention<T, 2>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, nsplit, part);
	if (dpl <= 4) return launch_attention<T, 4>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, nsplit, part);
	return launch_attention<T, 8>(d, dst, q, dseqs, ditems, nitems, nw, heads, kvh, hd, scale, window, nsplit, part);
}

extern "C" db_status db_attention(db_device *d, int dtype, void *dst, const void *q, const db_attn_seq *seqs, int nseq,
                                  int heads, int kv_heads, int head_dim, float scale, int window) {
	ENTER(d);
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
		for (int v0 = 0; v0 < seqs[i].n * group; v0 += nw) items.push_back(attn_item{i, v0});
	const int nitems = (int)items.size();

	// Split the keys only when the blocks would not fill the GPU twice over,
	// and never below 8 tiles of keys per split.
	long blocks = (long)nitems * kv_heads;
	int nsplit = 1;
	long want = 2L * d->sms;
	if (blocks < want) {
		nsplit = (int)((want + blocks - 1) / blocks);
		nsplit = std::min(nsplit, std::max(1, maxlen / (8 * KT)));
		nsplit = std::min(nsplit, 64);
	}
	float *part = NULL;
	if (nsplit > 1) {
		void *w;
		CKS(db_work(d, (size_t)nitems * kv_heads * MAX_WARPS * nsplit * (head_dim + 2) * sizeof(float), &w));
		part = (float *)w;
	}
	void *dseqs, *ditems;
	CKS(db_args_reserve(d, db_args_size(nseq * sizeof(db_attn_seq), items.size() * sizeof(attn_item))));
	CKS(db_args_push(d, seqs, nseq * sizeof(db_attn_seq), &dseqs));
	CKS(db_args_push(d, items.data(), items.size() * sizeof(attn_item), &ditems));
	DISPATCH(dtype, return attention_t<T>(d, (T *)dst, (const T *)q, (const db_attn_seq *)dseqs,
	                                      (const attn_item *)ditems, nitems, nw, heads, kv_heads, head_dim, scale, window,
	                                      nsplit, part));
	return db_ok();
}
