// gemm.cu: the matrix products, through cuBLAS (tensor cores for bf16, f32
// accumulation); no hand-written GEMM. Products of few rows (decode, verify)
// may be tuned: cuBLASLt's candidate algorithms are timed against
// cublasGemmEx on the first call of each shape and the fastest is kept.
#include <map>
#include <tuple>
#include <vector>

#include "common.cuh"

// In batch-invariant mode a product of up to INV_MAX_ROWS rows runs in
// pieces of INV_ROWS rows, each padded to INV_ROWS: every row is computed by
// the same cuBLAS call shape whatever the batch, so a decode step's row and
// the same row inside a verify step come out bit for bit the same. Larger
// products (prefills, which both decoding modes run alike) run whole.
#define INV_ROWS 64
#define INV_MAX_ROWS 256

// Tuning covers the products of up to TUNE_MAX_ROWS rows (the padded pieces
// of batch-invariant mode among them); TUNE_ALGOS candidates from cuBLASLt's
// heuristic, each timed over TUNE_REPS calls (each from a flushed L2:
// TUNE_FLUSH_L2S below) after one untimed call. The
// first TUNE_SPLIT_ALGOS of them that can split K are also timed split
// TUNE_SPLITS ways: a product of one row has N/tile blocks (32 for 4096
// outputs in tiles of 128), too few to stream the weights at full speed on a
// GPU of 132 multiprocessors; splitting K multiplies them. The partial sums
// are reduced in f32 (CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE), so a split
// product keeps f32 accumulation and stays deterministic.
#define TUNE_MAX_ROWS 64
#define TUNE_ALGOS 16
#define TUNE_REPS 8
#define TUNE_SPLIT_ALGOS 4
static const int TUNE_SPLITS[] = {2, 4, 8, 16};

// gemm_plan is one shape's choice: cuBLASLt with algo (lt set), or
// cublasGemmEx; with what the timing found.
struct gemm_plan {
	bool lt;
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c;
	cublasLtMatmulAlgo_t algo;
	size_t ws;
	int candidates; // cuBLASLt algorithms timed
	int splitk;     // K splits of the chosen algorithm (1: none)
	float best_us, default_us; // the chosen one's and cublasGemmEx's time per call
};

typedef std::tuple<int, int, int, int> gemm_key; // cuda data type, m, n, k

// A decode step streams each weight matrix once, from device memory: a
// product's weights (32-48 MiB for an 8B model's layer) were last read a step
// ago and have left the L2 (50 MB on an H100/H200) since. Repeated calls on the
// same operands would find them there instead, and the tuning would measure
// the cache. So before every timed call the tuning writes a scratch buffer of
// TUNE_FLUSH_L2S times the L2's size (outside the timed events), evicting the
// operands; the buffer is allocated once per device, on its first tuning,
// and freed with the plans.
#define TUNE_FLUSH_L2S 2

struct gemm_plan_cache {
	std::map<gemm_key, gemm_plan> m;
	void *flush = NULL;     // L2 eviction scratch (NULL until the first tuning, or when the L2 size is 0)
	size_t flush_bytes = 0; // its size
	bool flush_sized = false;
};

static void plan_destroy(gemm_plan &p) {
	if (p.desc) cublasLtMatmulDescDestroy(p.desc);
	if (p.a) cublasLtMatrixLayoutDestroy(p.a);
	if (p.b) cublasLtMatrixLayoutDestroy(p.b);
	if (p.c) cublasLtMatrixLayoutDestroy(p.c);
	p.desc = NULL;
	p.a = p.b = p.c = NULL;
}

db_status db_gemm_release(db_device *d) {
	void *flush = NULL;
	if (d->plans) {
		for (auto &kv : d->plans->m) plan_destroy(kv.second);
		flush = d->plans->flush;
		delete d->plans;
		d->plans = NULL;
	}
	// Both are released whatever the other's outcome; the first failure is
	// reported.
	cudaError_t fe = flush ? cudaFree(flush) : cudaSuccess;
	if (d->lt) {
		cublasLtHandle_t h = d->lt;
		d->lt = NULL;
		CKB(cublasLtDestroy(h));
	}
	CK(fe);
	return db_ok();
}

extern "C" db_status db_set_gemm_tune(db_device *d, int on) {
	ARG(d != NULL, "no device");
	if (on && d->lt == NULL) {
		CK(cudaSetDevice(d->ordinal));
		CKB(cublasLtCreate(&d->lt));
	}
	if (on && d->plans == NULL) d->plans = new gemm_plan_cache();
	d->tune = on != 0;
	return db_ok();
}

// db_gemm_pad returns scratch for a padded x and dst, zeroed when it grows
// (the pad rows then hold finite values).
static db_status db_gemm_pad(db_device *d, size_t bytes, void **out) {
	CKS(db_grow(d, &d->gemm_pad, &d->gemm_pad_cap, bytes, 1 << 20, true, "db_gemm_pad"));
	*out = d->gemm_pad;
	return db_ok();
}

// Row-major dst[m,n] = x[m,k] * w[n,k]^T is, read column-major,
// dst^T[n,m] = w^T * x^T with w stored k-major: one GEMM with op(A) = T.
static db_status gemm_ex(db_device *d, cudaDataType_t t, void *dst, const void *x, const void *w, int m, int n, int k) {
	const float alpha = 1.0f, beta = 0.0f;
	CKB(cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k, x, t, k, &beta, dst, t, n,
	                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return db_ok();
}

// The same product through cuBLASLt with the plan's descriptors and algo.
static cublasStatus_t gemm_lt(db_device *d, const gemm_plan &p, const cublasLtMatmulAlgo_t *algo, void *dst,
                              const void *x, const void *w) {
	const float alpha = 1.0f, beta = 0.0f;
	return cublasLtMatmul(d->lt, p.desc, &alpha, w, p.a, x, p.b, &beta, dst, p.c, dst, p.c, algo, d->blas_ws, p.ws,
	                      d->stream);
}

// tune_flush returns the device's L2 eviction scratch (gemm_plan_cache),
// allocating it on first use: TUNE_FLUSH_L2S times cudaDevAttrL2CacheSize
// bytes, or none (*buf NULL) on a device that reports no L2. Only for eager
// tuning: never while the stream is captured into a graph.
static db_status tune_flush(db_device *d, void **buf, size_t *bytes) {
	*buf = NULL;
	*bytes = 0;
	ARG(d->plans != NULL, "tune_flush: tuning is off");
	cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
	CK(cudaStreamIsCapturing(d->stream, &cs));
	ARG(cs == cudaStreamCaptureStatusNone, "tune_flush: the stream is being captured (tuning is eager only)");
	gemm_plan_cache *pc = d->plans;
	if (!pc->flush_sized) {
		int l2 = 0;
		CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, d->ordinal));
		if (l2 > 0) {
			const size_t want = (size_t)l2 * TUNE_FLUSH_L2S;
			CK(cudaMalloc(&pc->flush, want));
			pc->flush_bytes = want;
		}
		pc->flush_sized = true;
	}
	*buf = pc->flush;
	*bytes = pc->flush_bytes;
	return db_ok();
}

// time_us runs f once untimed, then TUNE_REPS times, each after the L2 is
// flushed (tune_flush: a memset outside the timed pair of events) and timed
// alone; the mean time per call, or a negative value when f failed.
template <typename F>
static db_status time_us(db_device *d, cudaEvent_t e0, cudaEvent_t e1, F f, float *us) {
	*us = -1;
	void *flush;
	size_t flush_bytes;
	CKS(tune_flush(d, &flush, &flush_bytes));
	if (!f()) {
		(void)cudaGetLastError();
		return db_ok();
	}
	float total_ms = 0;
	for (int i = 0; i < TUNE_REPS; i++) {
		// The flush is queued before e0, so the product starts right after
		// it on the GPU (no launch gap inside the timed pair), with its
		// operands evicted from the L2.
		if (flush) CK(cudaMemsetAsync(flush, 0, flush_bytes, d->stream));
		CK(cudaEventRecord(e0, d->stream));
		if (!f()) {
			CK(cudaStreamSynchronize(d->stream));
			(void)cudaGetLastError();
			return db_ok();
		}
		CK(cudaEventRecord(e1, d->stream));
		CK(cudaEventSynchronize(e1));
		float ms = 0;
		CK(cudaEventElapsedTime(&ms, e0, e1));
		total_ms += ms;
	}
	*us = total_ms * 1000.f / TUNE_REPS;
	return db_ok();
}

// gemm_tune times cublasGemmEx and cuBLASLt's candidates for this shape on
// the call's own operands (dst is overwritten by the call that follows)
// and fills p with the fastest.
static db_status gemm_tune(db_device *d, cudaDataType_t t, void *dst, const void *x, const void *w, int m, int n, int k,
                           gemm_plan *p) {
	*p = gemm_plan{};
	CKB(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
	const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
	CKB(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
	CKB(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
	CKB(cublasLtMatrixLayoutCreate(&p->a, t, k, n, k)); // w: k x n column-major, op T
	CKB(cublasLtMatrixLayoutCreate(&p->b, t, k, m, k)); // x^T
	CKB(cublasLtMatrixLayoutCreate(&p->c, t, n, m, n)); // dst^T
	cublasLtMatmulPreference_t pref;
	CKB(cublasLtMatmulPreferenceCreate(&pref));
	const size_t ws = d->blas_ws_bytes;
	cublasStatus_t bs =
	    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
	cublasLtMatmulHeuristicResult_t res[TUNE_ALGOS];
	int nres = 0;
	if (bs == CUBLAS_STATUS_SUCCESS)
		bs = cublasLtMatmulAlgoGetHeuristic(d->lt, p->desc, p->a, p->b, p->c, p->c, pref, TUNE_ALGOS, res, &nres);
	cublasLtMatmulPreferenceDestroy(pref);
	if (bs != CUBLAS_STATUS_SUCCESS) nres = 0; // no candidates: cublasGemmEx

	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	cudaError_t ce = cudaEventCreate(&e1);
	if (ce != cudaSuccess) {
		cudaEventDestroy(e0);
		return db_cuda_fail(ce, __FILE__, __LINE__, "cudaEventCreate");
	}
	// The candidates: the heuristic's algorithms, then split-K variants of
	// the first few that allow it (checked by cublasLtMatmulAlgoCheck, which
	// also gives their workspace).
	struct cand {
		cublasLtMatmulAlgo_t algo;
		size_t ws;
		int splitk;
	};
	std::vector<cand> cands;
	int splittable = 0;
	for (int i = 0; i < nres; i++) {
		if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > ws) continue;
		// The heuristic may hand out split-K configurations itself; keep them
		// only with their partial sums reduced in f32 (COMPUTE_TYPE), as the
		// variants below are, so a tuned product keeps f32 accumulation.
		int32_t own_split = 1;
		uint32_t own_scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
		size_t got0 = 0;
		if (cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &own_split,
		                                         sizeof own_split, &got0) != CUBLAS_STATUS_SUCCESS)
			own_split = 1;
		if (own_split > 1) {
			if (cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &own_scheme,
			                                         sizeof own_scheme, &got0) != CUBLAS_STATUS_SUCCESS ||
			    own_scheme != CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
				continue;
		}
		cands.push_back(cand{res[i].algo, res[i].workspaceSize, own_split > 1 ? own_split : 1});
		int32_t can = 0;
		uint32_t schemes = 0;
		size_t got = 0;
		if (splittable >= TUNE_SPLIT_ALGOS ||
		    cublasLtMatmulAlgoCapGetAttribute(&res[i].algo, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &can, sizeof can, &got) !=
		        CUBLAS_STATUS_SUCCESS ||
		    !can ||
		    cublasLtMatmulAlgoCapGetAttribute(&res[i].algo, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &schemes,
		                                      sizeof schemes, &got) != CUBLAS_STATUS_SUCCESS ||
		    !(schemes & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE))
			continue;
		splittable++;
		for (int sk : TUNE_SPLITS) {
			if (sk >= k) break;
			cublasLtMatmulAlgo_t a = res[i].algo;
			const int32_t splits = sk;
			const uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
			cublasLtMatmulHeuristicResult_t chk;
			if (cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof splits) !=
			        CUBLAS_STATUS_SUCCESS ||
			    cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof scheme) !=
			        CUBLAS_STATUS_SUCCESS ||
			    cublasLtMatmulAlgoCheck(d->lt, p->desc, p->a, p->b, p->c, p->c, &a, &chk) != CUBLAS_STATUS_SUCCESS ||
			    chk.workspaceSize > ws)
				continue;
			cands.push_back(cand{a, chk.workspaceSize, sk});
		}
	}

	db_status st = db_ok();
	float best = -1;
	int chosen = -1;
	st = time_us(d, e0, e1, [&] { return gemm_ex(d, t, dst, x, w, m, n, k).kind == DB_OK; }, &best);
	p->default_us = best;
	for (size_t i = 0; i < cands.size() && st.kind == DB_OK; i++) {
		p->ws = cands[i].ws;
		float us;
		st = time_us(d, e0, e1, [&] { return gemm_lt(d, *p, &cands[i].algo, dst, x, w) == CUBLAS_STATUS_SUCCESS; }, &us);
		p->candidates++;
		if (us >= 0 && (best < 0 || us < best)) best = us, chosen = (int)i;
	}
	cudaEventDestroy(e0);
	cudaEventDestroy(e1);
	CKS(st);
	p->best_us = best;
	p->splitk = 1;
	if (chosen >= 0) {
		p->lt = true;
		p->algo = cands[chosen].algo;
		p->ws = cands[chosen].ws;
		p->splitk = cands[chosen].splitk;
	} else {
		p->lt = false;
	}
	return db_ok();
}

// gemm_rows runs one product: its shape's tuned plan when tuning is on
// (tuned now when eager; inside a graph capture an untuned shape runs
// cublasGemmEx), else cublasGemmEx.
static db_status gemm_rows(db_device *d, cudaDataType_t t, void *dst, const void *x, const void *w, int m, int n, int k) {
	if (!d->tune || m > TUNE_MAX_ROWS || d->plans == NULL) return gemm_ex(d, t, dst, x, w, m, n, k);
	const gemm_key key(t, m, n, k);
	auto it = d->plans->m.find(key);
	if (it == d->plans->m.end()) {
		if (d->mode != DB_EAGER) return gemm_ex(d, t, dst, x, w, m, n, k);
		gemm_plan p;
		db_status st = gemm_tune(d, t, dst, x, w, m, n, k, &p);
		if (st.kind != DB_OK) {
			plan_destroy(p);
			return st;
		}
		it = d->plans->m.emplace(key, p).first;
	}
	const gemm_plan &p = it->second;
	if (!p.lt) return gemm_ex(d, t, dst, x, w, m, n, k);
	CKB(gemm_lt(d, p, &p.algo, dst, x, w));
	return db_ok();
}

// gemm_dtype gives a product's cuBLAS data type and element size.
static db_status gemm_dtype(int dtype, cudaDataType_t *t, size_t *es) {
	switch (dtype) {
	case DB_F32: *t = CUDA_R_32F; *es = 4; return db_ok();
	case DB_BF16: *t = CUDA_R_16BF; *es = 2; return db_ok();
	}
	return db_arg_fail(__FILE__, __LINE__, "gemm: dtype is not f32 or bf16");
}

extern "C" db_status db_gemm(db_device *d, int dtype, void *dst, const void *x, const void *w, int m, int n, int k) {
	ENTER_STEP(d, dtype, dst, x, w, m, n, k, d->invariant, d->tune);
	ARG(m >= 0 && n > 0 && k > 0, "gemm: empty shape");
	if (m == 0) return db_ok();
	cudaDataType_t t;
	size_t es;
	CKS(gemm_dtype(dtype, &t, &es));
	if (!d->invariant || m > INV_MAX_ROWS) {
		REPLAYED(d);
		return gemm_rows(d, t, dst, x, w, m, n, k);
	}
	const size_t xbytes = ((size_t)INV_ROWS * k * es + 255) & ~(size_t)255;
	void *pad;
	CKS(db_gemm_pad(d, xbytes + (size_t)INV_ROWS * n * es, &pad));
	REPLAYED(d);
	char *xp = (char *)pad, *dp = xp + xbytes;
	for (int r0 = 0; r0 < m; r0 += INV_ROWS) {
		const int rows = m - r0 < INV_ROWS ? m - r0 : INV_ROWS;
		CK(cudaMemcpyAsync(xp, (const char *)x + (size_t)r0 * k * es, (size_t)rows * k * es, cudaMemcpyDeviceToDevice,
		                   d->stream));
		CKS(gemm_rows(d, t, dp, xp, w, INV_ROWS, n, k));
		CK(cudaMemcpyAsync((char *)dst + (size_t)r0 * n * es, dp, (size_t)rows * n * es, cudaMemcpyDeviceToDevice,
		                   d->stream));
	}
	return db_ok();
}

// db_gemm_pretune tunes, now, the products against w [n, k] of every row
// count that tuning covers (1..max_m, at most TUNE_MAX_ROWS; the padded
// INV_ROWS pieces only in batch-invariant mode), on zeroed rows of its own,
// so that a benchmark's first steps of each batch size do not pay for it.
extern "C" db_status db_gemm_pretune(db_device *d, int dtype, const void *w, int n, int k, int max_m) {
	ENTER_ANY(d);
	ARG(n > 0 && k > 0 && w != NULL, "gemm pretune: empty shape");
	if (!d->tune || d->plans == NULL || max_m < 1) return db_ok();
	ARG(d->mode == DB_EAGER, "gemm pretune: inside a step graph (tuning is eager only)");
	cudaDataType_t t;
	size_t es;
	CKS(gemm_dtype(dtype, &t, &es));
	int lo = 1;
	if (max_m > TUNE_MAX_ROWS) max_m = TUNE_MAX_ROWS;
	if (d->invariant) lo = max_m = INV_ROWS;
	void *x = NULL, *dst = NULL;
	CK(cudaMalloc(&x, (size_t)max_m * k * es));
	cudaError_t e = cudaMalloc(&dst, (size_t)max_m * n * es);
	db_status st = db_ok();
	if (e != cudaSuccess) st = db_cuda_fail(e, __FILE__, __LINE__, "cudaMalloc(&dst, ...)");
	if (st.kind == DB_OK && (e = cudaMemsetAsync(x, 0, (size_t)max_m * k * es, d->stream)) != cudaSuccess)
		st = db_cuda_fail(e, __FILE__, __LINE__, "cudaMemsetAsync(x, ...)");
	for (int m = lo; m <= max_m && st.kind == DB_OK; m++) {
		if (d->plans->m.count(gemm_key(t, m, n, k)) == 0) st = gemm_rows(d, t, dst, x, w, m, n, k);
	}
	if ((e = cudaStreamSynchronize(d->stream)) != cudaSuccess && st.kind == DB_OK)
		st = db_cuda_fail(e, __FILE__, __LINE__, "cudaStreamSynchronize");
	cudaFree(x);
	if (dst != NULL) cudaFree(dst);
	return st;
}

extern "C" db_status db_set_invariant(db_device *d, int on) {
	ARG(d != NULL, "no device");
	d->invariant = on != 0;
	return db_ok();
}

extern "C" db_status db_gemm_plans(db_device *d, db_gemm_plan_info *out, int cap, int *n) {
	ARG(d != NULL, "no device");
	*n = 0;
	if (d->plans == NULL) return db_ok();
	for (auto &kv : d->plans->m) {
		if (*n < cap) {
			db_gemm_plan_info &o = out[*n];
			o.f32 = std::get<0>(kv.first) == CUDA_R_32F;
			o.m = std::get<1>(kv.first);
			o.n = std::get<2>(kv.first);
			o.k = std::get<3>(kv.first);
			o.lt = kv.second.lt;
			o.candidates = kv.second.candidates;
			o.splitk = kv.second.splitk;
			o.best_us = kv.second.best_us;
			o.default_us = kv.second.default_us;
		}
		(*n)++;
	}
	return db_ok();
}
