/* Private to kernels/cpu: the inner loops of the CPU attention and row ops, one table per SIMD
 * level (portable C in attention_cpu.c, AVX2+FMA in attention_avx2.c). The drivers in
 * attention_cpu.c and ops_cpu.c own the blocking, masking, online softmax and threading; these
 * functions only do the arithmetic on contiguous fp32 tiles. */
#ifndef TW_ATTN_PRIMS_H
#define TW_ATTN_PRIMS_H

#include <stddef.h>

#include "tw_cpu.h"

typedef struct {
    /* s[i, j] = dot(q[i, :], k[j, :]) for i < nq, j < nk; q [nq, d], k [nk, d], s rows ld_s */
    void (*scores)(int nq, int nk, int d, const float *q, const float *k, float *s, int ld_s);
    /* o[i, :] += sum_j p[i, j] * v[j, :]; p rows ld_p, v [nk, d], o [nq, d] */
    void (*pv)(int nq, int nk, int d, const float *p, int ld_p, const float *v, float *o);
    /* the same reading K or V straight from a bf16 cache; NULL: convert blocks with bf16_to_f32 */
    void (*scores_bf16)(int nq, int nk, int d, const float *q, const tw_bf16 *k, float *s,
                        int ld_s);
    void (*pv_bf16)(int nq, int nk, int d, const float *p, int ld_p, const tw_bf16 *v, float *o);
    /* p[j] = exp(s[j] - m) for j < n (in place allowed); returns the sum of the p[j] */
    float (*exp_sub_sum)(int n, float m, const float *s, float *p);
    /* dst[i] = (float)src[i] */
    void (*bf16_to_f32)(size_t n, const tw_bf16 *src, float *dst);
    /* out[i] = silu(gate[i]) * up[i] */
    void (*swiglu_row)(int n, const float *gate, const float *up, float *out);
} tw_attn_prims;

/* The table for the active SIMD level (tw_cpu_simd_active()). */
const tw_attn_prims *tw_attn_prims_get(void);
#if defined(TW_X86)
const tw_attn_prims *tw_attn_prims_avx2(void);
#endif

#endif
