// elementwise.cu: conversions, random fills, embedding gather, additions, SwiGLU.
#include "common.cuh"

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t n) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		st(dst, i, ld(src, i));
}

template <typename D>
static db_status convert_from(db_device *d, D *dst, int src_dtype, const void *src, size_t n) {
	unsigned g = db_blocks(n, 256);
	switch (src_dtype) {
	case DB_F32: convert_kernel<<<g, 256, 0, d->stream>>>(dst, (const float *)src, n); break;
	case DB_BF16: convert_kernel<<<g, 256, 0, d->stream>>>(dst, (const __nv_bfloat16 *)src, n); break;
	case DB_F16: convert_kernel<<<g, 256, 0, d->stream>>>(dst, (const __half *)src, n); break;
	default: return db_arg_fail(__FILE__, __LINE__, "source dtype is not f32, bf16 or f16");
	}
	LAUNCHED();
	return db_ok();
}

extern "C" db_status db_convert(db_device *d, int dst_dtype, void *dst, int src_dtype, const void *src, size_t n) {
	ENTER(d);
	if (n == 0) return db_ok();
	DISPATCH(dst_dtype, return convert_from(d, (T *)dst, src_dtype, src, n));
	return db_ok();
}

// splitmix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
// generators"): a counter-based stream, so every element is drawn
// independently and the values do not depend on the launch shape.
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

// Box-Muller (1958) on two 24-bit uniforms in (0, 1).
template <typename T>
__global__ void fill_normal_kernel(T *dst, size_t n, uint64_t seed, float mean, float std, int round_bf16) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		uint64_t z = splitmix64(seed ^ splitmix64(i));
		float u1 = ((float)(z >> 40) + 0.5f) * (1.0f / 16777216.0f);
		float u2 = ((float)((z >> 16) & 0xffffff) + 0.5f) * (1.0f / 16777216.0f);
		float r = sqrtf(-2.0f * logf(u1));
		float v = mean + std * r * cospif(2.0f * u2);
		if (round_bf16) v = __bfloat162float(__float2bfloat16(v));
		st(dst, i, v);
	}
}

extern "C" db_status db_fill_normal(db_device *d, int dtype, void *dst, size_t n, uint64_t seed, float mean, float std,
                                    int round_dtype) {
	ENTER(d);
	if (n == 0) return db_ok();
	ARG(round_dtype == DB_F32 || round_dtype == DB_BF16, "random values are rounded to f32 or bf16");
	DISPATCH(dtype, fill_normal_kernel<<<db_blocks(n, 256), 256, 0, d->stream>>>((T *)dst, n, seed, mean, std,
	                                                                               round_dtype == DB_BF16));
	LAUNCHED();
	return db_ok();
}

template <typename T>
__global__ void embed_kernel(T *dst, const T *table, const int32_t *ids, int n, int h) {
	size_t total = (size_t)n * h;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / h, c = i % h;
		dst[i] = table[(size_t)ids[r] * h + c];
	}
}

extern "C" db_status db_embed(db_device *d, int dtype, void *dst, const void *table, const int32_t *ids, int n, int h) {
	ENTER_STEP(d, dtype, dst, table, n, h);
	if (n == 0) return db_ok();
	void *dids;
	CKS(db_args_reserve(d, db_args_size(n * sizeof(int32_t))));
	CKS(db_args_push(d, ids, n * sizeof(int32_t), &dids));
	REPLAYED(d);
	DISPATCH(dtype, embed_kernel<<<db_blocks((size_t)n * h, 256), 256, 0, d->stream>>>((T *)dst, (const T *)table,
	                                                                                     (const int32_t *)dids, n, h));
	LAUNCHED();
	return db_ok();
}

template <typename T>
__global__ void add_kernel(T *dst, const T *a, const T *b, size_t n) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		st(dst, i, ld(a, i) + ld(b, i));
}

extern "C" db_status db_add(db_device *d, int dtype, void *dst, const void *a, const void *b, size_t n) {
	ENTER_STEP(d, dtype, dst, a, b, n);
	if (n == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, add_kernel<<<db_blocks(n, 256), 256, 0, d->stream>>>((T *)dst, (const T *)a, (const T *)b, n));
	LAUNCHED();
	return db_ok();
}

template <typename T>
__global__ void add_bias_kernel(T *dst, const T *bias, size_t rows, int n) {
	size_t total = rows * n;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
		st(dst, i, ld(dst, i) + ld(bias, i % n));
}

extern "C" db_status db_add_bias(db_device *d, int dtype, void *dst, const void *bias, size_t rows, int n) {
	ENTER_STEP(d, dtype, dst, bias, rows, n);
	if (rows == 0 || n == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, add_bias_kernel<<<db_blocks(rows * n, 256), 256, 0, d->stream>>>((T *)dst, (const T *)bias, rows, n));
	LAUNCHED();
	return db_ok();
}

// SwiGLU (Shazeer 2020): silu(gate) * up.
template <typename T>
__global__ void swiglu_kernel(T *dst, const T *gate, const T *up, size_t n) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		float g = ld(gate, i);
		st(dst, i, g / (1.0f + expf(-g)) * ld(up, i));
	}
}

extern "C" db_status db_swiglu(db_device *d, int dtype, void *dst, const void *gate, const void *up, size_t n) {
	ENTER_STEP(d, dtype, dst, gate, up, n);
	if (n == 0) return db_ok();
	REPLAYED(d);
	DISPATCH(dtype, swiglu_kernel<<<db_blocks(n, 256), 256, 0, d->stream>>>((T *)dst, (const T *)gate, (const T *)up, n));
	LAUNCHED();
	return db_ok();
}
