/* Private to kernels/cpu: the inner loops of the CPU attention and row ops, one table per SIMD
 * level (portable C in attention_cpu.c, AVX2+FMA in attention_avx2.c, AVX-512F in
 * attention_avx512.c). The drivers in
 * attention_cpu.c and ops_cpu.c own the blocking, masking, online softmax and threading; these
 * functions only do the arithmetic on contiguous fp32 tiles. */
#ifndef TW_ATTN_PRIMS_H
#define TW_ATTN_PRIMS_H

#include <stddef.h>

#include "tw_cpu.h"
#include "tw_numeric.h"

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

/* One tile of nk keys starting at key j0, for nq queries whose scores are the rows of s (ld_s
 * apart): query i attends keys [lo[i], lim[i]) (causal limit and sliding window); its valid
 * scores become exp(s - m) under the online softmax st[i] (its output row o[i, :] of d rescaled
 * when the maximum grows), every other score of the tile becomes 0, so that pv then adds the
 * tile. Returns whether any query had a valid key in the tile (none: the tile's values are not
 * needed). Shared by the contiguous (attention_cpu.c) and paged (attn_paged_cpu.c) attention. */
static inline int tw_attn_tile_softmax(const tw_attn_prims *pr, int nq, int nk, int j0, int d,
                                       float *s, int ld_s, const int *lo, const int *lim,
                                       tw_softmax_state *st, float *o) {
    int any = 0;
    for (int i = 0; i < nq; i++) {
        float *si = s + (size_t)i * ld_s;
        int nv = lim[i] - j0, a = lo[i] - j0; /* the valid keys of the tile: [a, nv) */
        if (nv > nk) nv = nk;
        if (a < 0) a = 0;
        if (nv < a) nv = a;
        if (nv > a) {
            float mx = si[a];
            for (int j = a + 1; j < nv; j++) mx = si[j] > mx ? si[j] : mx;
            float alpha = tw_softmax_rescale(&st[i], mx);
            if (alpha != 1.0f) {
                float *oi = o + (size_t)i * d;
                for (int t = 0; t < d; t++) oi[t] *= alpha;
            }
            st[i].l += pr->exp_sub_sum(nv - a, st[i].m, si + a, si + a);
            any = 1;
        }
        for (int j = 0; j < a; j++) si[j] = 0.0f;
        for (int j = nv; j < nk; j++) si[j] = 0.0f;
    }
    return any;
}

/* The table for a SIMD level (a state's, tw_cpu_state_simd). */
const tw_attn_prims *tw_attn_prims_for(tw_simd level);
#if defined(TW_X86)
const tw_attn_prims *tw_attn_prims_avx2(void);
const tw_attn_prims *tw_attn_prims_avx512(void);
/* the AVX2 row loops, which the AVX-512 table shares (they are not the hot loops) */
float tw_attn_exp_sub_sum_avx2(int n, float m, const float *s, float *p);
void tw_attn_bf16_to_f32_avx2(size_t n, const tw_bf16 *src, float *dst);
void tw_attn_swiglu_row_avx2(int n, const float *gate, const float *up, float *out);
#endif

#endif
