#ifndef DRAFTBENCH_CPU_ATTENTION_H
#define DRAFTBENCH_CPU_ATTENTION_H
// dbcpu_attend_head: one head of one sequence. Query rows q (stride qs), n of
// them, the last n of L positions; keys and values k, v (stride ks, L rows);
// out (stride os); scores is scratch of at least L floats. window 0 = none.
void dbcpu_attend_head(const float *q, int qs, const float *k, const float *v, int ks, float *out, int os,
                    int n, int L, int hd, float scale, int window, float *scores);
// dbcpu_swiglu: dst = silu(gate) · up, elementwise over n values.
void dbcpu_swiglu(const float *gate, const float *up, float *dst, long n);
#endif
