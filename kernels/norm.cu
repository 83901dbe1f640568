// norm.cu: RMSNorm (Zhang & Sennrich 2019), with a fused residual add, and
// rotary position embedding (Su et al. 2021) in the rotate-half layout.
#include "common.cuh"

static unsigned norm_threads(int g) {
	int t = ((g + 3) / 4 + 31) / 32 * 32;
	return (unsigned)(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

// One block per group of g elements. dst may alias x: every thread reads
// only the elements it writes after the reduction.
template <typename T>
__global__ void rmsnorm_kernel(T *dst, const T *x, const T *w, int g, float eps) {
	__shared__ float red[32];
	size_t base = (size_t)blockIdx.x * g;
	float ss = 0;
	for (int i = threadIdx.x; i < g; i += blockDim.x) {
		float v = ld(x, base + i);
		ss += v * v;
	}
	ss = block_sum(ss, red);
	float inv = rsqrtf(ss / (float)g + eps);
	for (int i = threadIdx.x; i < g; i += blockDim.x) st(dst, base + i, ld(w, i) * (ld(x, base + i) * inv));
}

extern "C" db_status db_rmsnorm(db_device *d, int dtype, void *dst, const void *x, const void *w, size_t groups, int g,
                                float eps) {
	ENTER_STEP(d, dtype, dst, x, w, groups, g, eps);
	ARG(g > 0, "rmsnorm: empty group");
	ARG(groups < 0x7fffffffu, "rmsnorm: too many groups for one launch");
	if (groups == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, rmsnorm_kernel<<<(unsigned)groups, norm_threads(g), 0, d->stream>>>((T *)dst, (const T *)x,
	                                                                                     (const T *)w, g, eps));
	LAUNCHED();
	return db_ok();
}

// x += h, then dst = rmsnorm(x) * w: the residual add and the next norm in
// one pass over the hidden state. The norm reads x as stored (rounded to T).
template <typename T>
__global__ void add_rmsnorm_kernel(T *dst, T *x, const T *h, const T *w, int g, float eps) {
	__shared__ float red[32];
	size_t base = (size_t)blockIdx.x * g;
	float ss = 0;
	for (int i = threadIdx.x; i < g; i += blockDim.x) {
		st(x, base + i, ld(x, base + i) + ld(h, base + i));
		float v = ld(x, base + i);
		ss += v * v;
	}
	ss = block_sum(ss, red);
	float inv = rsqrtf(ss / (float)g + eps);
	for (int i = threadIdx.x; i < g; i += blockDim.x) st(dst, base + i, ld(w, i) * (ld(x, base + i) * inv));
}

extern "C" db_status db_add_rmsnorm(db_device *d, int dtype, void *dst, void *x, const void *h, const void *w,
                                    size_t rows, int g, float eps) {
	ENTER_STEP(d, dtype, dst, x, h, w, rows, g, eps);
	ARG(g > 0, "add_rmsnorm: empty row");
	ARG(rows < 0x7fffffffu, "add_rmsnorm: too many rows for one launch");
	if (rows == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, add_rmsnorm_kernel<<<(unsigned)rows, norm_threads(g), 0, d->stream>>>(
	                    (T *)dst, (T *)x, (const T *)h, (const T *)w, g, eps));
	LAUNCHED();
	return db_ok();
}

// One thread per rotated pair. The angle is the f32 product position *
// inv_freq, as in transformers; sincosf is accurate to a few ulp over the
// whole range (no fast-math intrinsics here).
template <typename T>
__global__ void rope_kernel(T *x, const int32_t *pos, int rows, int width, int hd, const float *inv, float scale) {
	int half = hd / 2, heads = width / hd;
	size_t total = (size_t)rows * heads * half;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t t = i / half;
		int h = (int)(t % heads);
		size_t r = t / heads;
		float ang = (float)pos[r] * inv[j];
		float s, c;
		sincosf(ang, &s, &c);
		c *= scale;
		s *= scale;
		size_t b = r * width + (size_t)h * hd;
		float a = ld(x, b + j), e = ld(x, b + j + half);
		st(x, b + j, a * c - e * s);
		st(x, b + j + half, e * c + a * s);
	}
}

extern "C" db_status db_rope(db_device *d, int dtype, void *x, const int32_t *positions, int rows, int width,
                             int head_dim, const float *inv_freq, float scale) {
	ENTER_STEP(d, dtype, x, rows, width, head_dim, inv_freq, scale);
	ARG(head_dim > 0 && head_dim % 2 == 0 && width % head_dim == 0, "rope: width is not a multiple of an even head dim");
	if (rows == 0) return db_ok();
	void *dpos;
	CKS(db_args_reserve(d, db_args_size(rows * sizeof(int32_t))));
	CKS(db_args_push(d, positions, rows * sizeof(int32_t), &dpos));
	size_t total = (size_t)rows * (width / 2);
	REPLAYED(d);
	DISPATCH(dtype, rope_kernel<<<db_blocks(total, 256), 256, 0, d->stream>>>((T *)x, (const int32_t *)dpos, rows, width,
	                                                                            head_dim, inv_freq, scale));
	LAUNCHED();
	return db_ok();
}
