/*
 * draftbench.h: the C interface between the Go CUDA backend
 * (pkg/backend/cuda, cgo) and the kernels of this folder.
 *
 * Plain C with no CUDA header, so `go vet -tags cuda` needs no toolkit.
 * Every function returns a db_status naming the failed call, its file and
 * line; device pointers travel as void*. Each function makes its device
 * current first: a goroutine may run each cgo call on a different thread.
 * Work is queued on the device's one stream; functions that hand results
 * to the host (db_d2h, db_argmax, db_sample, db_verify) wait for it.
 */
#ifndef DRAFTBENCH_H
#define DRAFTBENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types; the values match backend.DType in Go. */
enum { DB_F32 = 0, DB_BF16 = 1, DB_F16 = 2 };

/* db_status.kind */
enum { DB_OK = 0, DB_ERR_CUDA = 1, DB_ERR_CUBLAS = 2, DB_ERR_ARG = 3, DB_ERR_REPLAY = 4 };

typedef struct {
	int kind;         /* DB_OK or one of DB_ERR_* */
	int code;         /* cudaError_t or cublasStatus_t */
	int line;
	const char *file; /* static strings: never freed */
	const char *expr;
	const char *msg;
} db_status;

typedef struct db_device db_device;

typedef struct {
	char name[256];
	int major, minor;
	int sms;
	size_t total_mem, free_mem;
	int l2_bytes;
} db_device_info;

/* One sequence of a batched attention call (see backend.AttnSeq). */
typedef struct {
	int row, n, len;
	const void *k, *v; /* [capacity, kv_heads*head_dim] */
} db_attn_seq;

/* ---- step graphs (graph.cu) ----
   A step (a decode step's layers and head) is captured into a CUDA graph the
   first time, and replayed after: db_step_begin starts the capture (an
   invalid graph) or the replay pass (a valid one: *replaying = 1), in which
   the step-aware calls check that they are the captured calls (same names
   and arguments, else DB_ERR_REPLAY) and only write their uploads; any other
   call fails with DB_ERR_REPLAY. db_step_end launches the graph (*launched =
   1) unless abort is set or the pass did not match; then the step must be
   run again (the graph is invalid). One host thread per device at a time. */
typedef struct db_graph db_graph;
db_status db_graph_new(db_device *d, size_t arena_bytes, db_graph **out);
db_status db_graph_free(db_device *d, db_graph *g);
db_status db_step_begin(db_device *d, db_graph *g, int *replaying);
db_status db_step_end(db_device *d, db_graph *g, int abort, int *launched);
/* Why the graph's last replay was refused or its capture failed ("" if never): which call and argument. */
const char *db_graph_why(db_graph *g);

/* Batch-invariant mode (gemm.cu, attention.cu): products of up to 256 rows run in padded
   64-row pieces and decode/verify attention splits keys at fixed positions, so a position's
   results do not depend on how its step was batched. Off by default. */
db_status db_set_invariant(db_device *d, int on);

/* Tuned products (gemm.cu): for products of up to 64 rows, time cuBLASLt's candidate
   algorithms and cublasGemmEx on the first eager call of each shape and keep the fastest.
   Off by default. db_gemm_plans lists the choices (*n: how many there are; at most cap
   written). */
db_status db_set_gemm_tune(db_device *d, int on);
typedef struct {
	int f32, m, n, k;
	int lt;         /* 1: a cuBLASLt algorithm won; 0: cublasGemmEx */
	int candidates; /* cuBLASLt algorithms timed */
	int splitk;     /* K splits of the chosen cuBLASLt algorithm (1: none) */
	float best_us, default_us;
} db_gemm_plan_info;
db_status db_gemm_plans(db_device *d, db_gemm_plan_info *out, int cap, int *n);
/* With tuning on, tunes the products against weight w [n, k] for every row count up to
   max_m (at most 64) now, eagerly, on scratch rows of its own; nothing when tuning is off. */
db_status db_gemm_pretune(db_device *d, int dtype, const void *w, int n, int k, int max_m);

/* ---- devices and memory (device.cu) ---- */
db_status db_device_count(int *n);
db_status db_open(int ordinal, db_device **out);
db_status db_close(db_device *d);
db_status db_info(db_device *d, db_device_info *out);
/* Enables d's access to peer's memory where the hardware allows; *enabled says whether it did. */
db_status db_enable_peer(db_device *d, db_device *peer, int *enabled);
db_status db_malloc(db_device *d, size_t bytes, void **out);
db_status db_free(db_device *d, void *p);
/* Host to device from pageable memory: src may be reused once this returns. */
db_status db_h2d(db_device *d, void *dst, const void *src, size_t bytes);
/* Device to host: waits for the stream, then for the copy. */
db_status db_d2h(db_device *d, void *dst, const void *src, size_t bytes);
db_status db_d2d(db_device *d, void *dst, const void *src, size_t bytes);
/* Copies between devices, ordered after the work queued on both. */
db_status db_peer_copy(db_device *dst_dev, void *dst, db_device *src_dev, const void *src, size_t bytes);
db_status db_sync(db_device *d);
/* Median bandwidth of reps device-to-device copies of bytes, counting bytes read and written. */
db_status db_copy_bandwidth(db_device *d, size_t bytes, int reps, double *bytes_per_s);

/* ---- elementwise (elementwise.cu) ---- */
db_status db_convert(db_device *d, int dst_dtype, void *dst, int src_dtype, const void *src, size_t n);
/* Normal(mean, std) values from a counter-based hash of (seed, index), rounded to round_dtype, stored as dtype. */
db_status db_fill_normal(db_device *d, int dtype, void *dst, size_t n, uint64_t seed, float mean, float std, int round_dtype);
db_status db_embed(db_device *d, int dtype, void *dst, const void *table, const int32_t *ids, int n, int h);
db_status db_add(db_device *d, int dtype, void *dst, const void *a, const void *b, size_t n);
db_status db_add_bias(db_device *d, int dtype, void *dst, const void *bias, size_t rows, int n);
db_status db_swiglu(db_device *d, int dtype, void *dst, const void *gate, const void *up, size_t n);

/* ---- norms and rotary embedding (norm.cu) ---- */
db_status db_rmsnorm(db_device *d, int dtype, void *dst, const void *x, const void *w, size_t groups, int g, float eps);
/* x += h, then dst = rmsnorm(x) * w (rows of g). */
db_status db_add_rmsnorm(db_device *d, int dtype, void *dst, void *x, const void *h, const void *w, size_t rows, int g, float eps);
db_status db_rope(db_device *d, int dtype, void *x, const int32_t *positions, int rows, int width, int head_dim,
                  const float *inv_freq, float scale);

/* ---- matrix products (gemm.cu) ---- */
/* dst[m,n] = x[m,k] * w[n,k]^T, row-major, through cuBLAS with f32 accumulation. */
db_status db_gemm(db_device *d, int dtype, void *dst, const void *x, const void *w, int m, int n, int k);

/* ---- attention (attention.cu) ---- */
/* For each sequence s: rows [s.row, s.row+s.n) of k and v (each [*, width] of elem_bytes elements)
   are copied to rows [s.len-s.n, s.len) of s.k and s.v: a step's new keys and values, one launch. */
db_status db_append_kv(db_device *d, const void *k, const void *v, const db_attn_seq *seqs, int nseq, int width,
                       int elem_bytes);
/* After qkv = x·[Wq; Wk; Wv]ᵀ ([rows, (heads + 2·kv_heads)·head_dim]): per-head RMSNorm of q and k
   (qnorm/knorm, both or neither), RoPE at positions on q and k, q into q_out [rows, heads·head_dim],
   k and v appended to each sequence's caches as db_append_kv does. Every row belongs to one sequence. */
db_status db_finish_qkv(db_device *d, int dtype, void *q_out, const void *qkv, const void *qnorm, const void *knorm,
                        float eps, const int32_t *positions, int rows, const float *inv_freq, float scale,
                        const db_attn_seq *seqs, int nseq, int heads, int kv_heads, int head_dim);
/* dst[r, i] = silu(gu[r, i]) · gu[r, inter + i]: SwiGLU over the stacked gate | up product. */
db_status db_swiglu_pair(db_device *d, int dtype, void *dst, const void *gu, size_t rows, size_t inter);
db_status db_attention(db_device *d, int dtype, void *dst, const void *q, const db_attn_seq *seqs, int nseq,
                       int heads, int kv_heads, int head_dim, float scale, int window);

/* ---- logits and sampling (sampling.cu) ---- */
db_status db_mask_logits(db_device *d, int dtype, void *logits, int rows, int vocab, int limit);
db_status db_argmax(db_device *d, int dtype, const void *logits, int rows, int vocab, int limit, int32_t *out);
/* ids[r], margins[r]: sampling.ArgmaxMargin of each row (the argmax and its margin over the runner-up). */
db_status db_argmax_margin(db_device *d, int dtype, const void *logits, int rows, int vocab, int limit,
                           int32_t *ids, float *margins);
/* The candidates of sampling.TopKSparse(row, k) for each row of probs [rows, vocab] (f32, from db_probs): ids and
   vals [rows, cap] in any order, counts[row] of them (> cap: not all written), lives[row] ids with probability > 0. */
db_status db_topk(db_device *d, const float *probs, int rows, int vocab, int k, int cap, int32_t *ids, float *vals,
                  int32_t *counts, int32_t *lives);
/* probs[rows,vocab] (f32): softmax of logits/temperature over ids < limit (0: all) after top-k and top-p;
   temperature 0 gives one-hot argmax; a row without a usable logit (all NaN or -inf) is all zeros
   (sampling.Probs: db_sample then gives -1). */
db_status db_probs(db_device *d, int dtype, float *probs, const void *logits, int rows, int vocab,
                   float temperature, int top_k, float top_p, int limit);
/* out[r] = inverse CDF of row r at u[r]; -1 for a row without mass. */
db_status db_sample(db_device *d, const float *probs, int rows, int vocab, const float *u, int32_t *out);
/* The acceptance rule over gamma drafts (Leviathan et al. 2023), see sampling.cu. q_off has gamma+1 entries. */
db_status db_verify(db_device *d, const float *p, int vocab, int gamma, const int32_t *drafts,
                    const int32_t *q_ids, const float *q_probs, const int32_t *q_off, int greedy,
                    const float *u_accept, const float *u_residual, float u_bonus,
                    int32_t *accepted, int32_t *token);

#ifdef __cplusplus
}
#endif
#endif
