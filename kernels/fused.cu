// fused.cu: the steps around the attention and MLP matrix products that a
// decode step would otherwise launch one by one.
//
//  - db_finish_qkv: after one product gives qkv = [T, q | k | v], the per-head
//    q and k RMSNorm (Qwen3), RoPE on q and k, q to its own tensor, and k and
//    v appended to each sequence's KV cache: one launch for what took up to
//    six (two norms, two RoPEs, the cache write, and two of three products).
//  - db_swiglu_pair: SwiGLU over gu = [T, gate | up], the output of one
//    product against the gate and up weights stacked.
//
// The arithmetic is that of the unfused kernels (norm.cu, elementwise.cu):
// the norm's output is rounded to the storage type before RoPE reads it, as
// it is when stored between the two launches.
#include <vector>

#include "common.cuh"

#define FQ_WARPS 8 // head slots per block

template <typename T> __device__ __forceinline__ float round_to(float v);
template <> __device__ __forceinline__ float round_to<float>(float v) { return v; }
template <> __device__ __forceinline__ float round_to<__nv_bfloat16>(float v) {
	return __bfloat162float(__float2bfloat16(v));
}

// Grid (T, ceil(slots / FQ_WARPS)); one warp per (row, head slot), slot in
// [0, heads) a query head, [heads, heads+kvh) a key head, the rest value heads.
template <typename T>
__global__ void __launch_bounds__(FQ_WARPS * 32)
finish_qkv_kernel(T *q_out, const T *qkv, const T *qnorm, const T *knorm, float eps, const int32_t *pos,
                  const float *inv, float scale, const db_attn_seq *seqs, const int32_t *rowseq, int heads, int kvh,
                  int hd) {
	extern __shared__ float fq_sm[];
	const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = blockIdx.x, slot = blockIdx.y * FQ_WARPS + w;
	const int slots = heads + 2 * kvh;
	if (slot >= slots) return;
	const int qw = heads * hd, kvw = kvh * hd, width = qw + 2 * kvw;
	float *x = fq_sm + w * hd;
	const T *src = qkv + (size_t)r * width + (size_t)slot * hd; // q | k | v heads are consecutive
	for (int d = lane; d < hd; d += 32) x[d] = ld(src, d);
	__syncwarp();

	const bool is_q = slot < heads, is_k = !is_q && slot < heads + kvh;
	const T *nw = is_q ? qnorm : is_k ? knorm : nullptr;
	if (nw != nullptr) {
		float ss = 0.f;
		for (int d = lane; d < hd; d += 32) ss += x[d] * x[d];
		ss = warp_sum(ss);
		const float invr = rsqrtf(ss / (float)hd + eps);
		__syncwarp();
		for (int d = lane; d < hd; d += 32) x[d] = round_to<T>(ld(nw, d) * (x[d] * invr));
		__syncwarp();
	}

	T *out;
	if (is_q) {
		out = q_out + (size_t)r * qw + (size_t)slot * hd;
	} else {
		const db_attn_seq s = seqs[rowseq[r]];
		const int crow = s.len - s.n + (r - s.row);
		const int g = is_k ? slot - heads : slot - heads - kvh;
		out = (T *)(is_k ? s.k : s.v) + (size_t)crow * kvw + (size_t)g * hd;
	}
	if (is_q || is_k) {
		const int half = hd / 2;
		const float p = (float)pos[r];
		for (int j = lane; j < half; j += 32) {
			float sn, cs;
			sincosf(p * inv[j], &sn, &cs);
			cs *= scale;
			sn *= scale;
			const float a = x[j], e = x[j + half];
			st(out, j, a * cs - e * sn);
			st(out, j + half, e * cs + a * sn);
		}
	} else {
		for (int d = lane; d < hd; d += 32) st(out, d, x[d]);
	}
}

extern "C" db_status db_finish_qkv(db_device *d, int dtype, void *q_out, const void *qkv, const void *qnorm,
                                   const void *knorm, float eps, const int32_t *positions, int rows,
                                   const float *inv_freq, float scale, const db_attn_seq *seqs, int nseq, int heads,
                                   int kv_heads, int head_dim) {
	ENTER_STEP(d, dtype, q_out, qkv, qnorm, knorm, eps, rows, inv_freq, scale, nseq, heads, kv_heads, head_dim);
	ARG(kv_heads > 0 && heads % kv_heads == 0, "finish_qkv: heads is not a multiple of kv heads");
	ARG(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024, "finish_qkv: head dim must be even, at most 1024");
	ARG((qnorm == NULL) == (knorm == NULL), "finish_qkv: q and k norms come together");
	if (rows == 0) return db_ok();
	std::vector<int32_t> rowseq(rows, -1);
	for (int i = 0; i < nseq; i++) {
		ARG(seqs[i].n >= 0 && seqs[i].n <= seqs[i].len, "finish_qkv: a sequence has more new rows than positions");
		ARG(seqs[i].row >= 0 && seqs[i].row + seqs[i].n <= rows, "finish_qkv: a sequence's rows are outside qkv");
		for (int j = 0; j < seqs[i].n; j++) rowseq[seqs[i].row + j] = i;
	}
	for (int r = 0; r < rows; r++) ARG(rowseq[r] >= 0, "finish_qkv: a row of qkv belongs to no sequence");
	void *dpos, *dseqs, *drs;
	CKS(db_args_reserve(d, db_args_size(rows * sizeof(int32_t), nseq * sizeof(db_attn_seq), rows * sizeof(int32_t))));
	CKS(db_args_push_parts(d, {{positions, rows * sizeof(int32_t), &dpos},
	                           {seqs, nseq * sizeof(db_attn_seq), &dseqs},
	                           {rowseq.data(), rows * sizeof(int32_t), &drs}}));
	const int slots = heads + 2 * kv_heads;
	dim3 grid((unsigned)rows, (unsigned)((slots + FQ_WARPS - 1) / FQ_WARPS));
	const size_t smem = (size_t)FQ_WARPS * head_dim * sizeof(float);
	REPLAYED(d);
	DISPATCH(dtype, {
		if (smem > 48 * 1024)
			CK(cudaFuncSetAttribute(finish_qkv_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
		finish_qkv_kernel<T><<<grid, FQ_WARPS * 32, smem, d->stream>>>(
		    (T *)q_out, (const T *)qkv, (const T *)qnorm, (const T *)knorm, eps, (const int32_t *)dpos, inv_freq, scale,
		    (const db_attn_seq *)dseqs, (const int32_t *)drs, heads, kv_heads, head_dim);
	});
	LAUNCHED();
	return db_ok();
}

template <typename T>
__global__ void swiglu_pair_kernel(T *dst, const T *gu, size_t rows, size_t inter) {
	const size_t n = rows * inter;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		const size_t r = i / inter, c = i % inter;
		const float g = ld(gu, r * 2 * inter + c);
		st(dst, i, g / (1.0f + expf(-g)) * ld(gu, r * 2 * inter + inter + c));
	}
}

extern "C" db_status db_swiglu_pair(db_device *d, int dtype, void *dst, const void *gu, size_t rows, size_t inter) {
	ENTER_STEP(d, dtype, dst, gu, rows, inter);
	if (rows == 0 || inter == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, swiglu_pair_kernel<<<db_blocks(rows * inter, 256), 256, 0, d->stream>>>((T *)dst, (const T *)gu,
	                                                                                           rows, inter));
	LAUNCHED();
	return db_ok();
}
