/* AVX-512F inner loops of the CPU attention (see attn_prims.h): the scores and P.V loops, 16
 * lanes wide with masked tails (no scalar remainder), so a head of 64 is 4 vectors instead of 8.
 * The row loops (exp, bf16 widening, SwiGLU) are the AVX2 ones. Compiled with the AVX-512 flags
 * and only called when tw_cpu_simd_active() is AVX-512 or above. */
#include "attn_prims.h"
#include "attn_x86_inl.h"

#include <immintrin.h>

/* lanes [0, n) of a 16-lane slice, n in 1..16 */
static inline __mmask16 lanes(int n) {
    return (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
}

/* 16 key / value elements (fewer under the mask) from an fp32 or a bf16 cache; bf16 is the top
 * half of a float, so widening is a zero-extend and a shift */
static inline __m512 ld16(const void *base, size_t i, int bf16, __mmask16 m) {
    if (!bf16) return _mm512_maskz_loadu_ps(m, (const float *)base + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const tw_bf16 *)base + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 lanes to 8: the two halves added */
static inline __m256 fold(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* Four queries against four keys per step (16 accumulators): each 16-wide slice costs 4 key
 * loads and 4 query loads for 16 FMAs, and the 16 dot products are reduced together. */
static inline __attribute__((always_inline)) void
scores_gen(int nq, int nk, int d, const float *q, const void *k, int bf16, float *s, int ld_s) {
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *qr[4] = {q + (size_t)i * d, q + (size_t)(i + 1) * d, q + (size_t)(i + 2) * d,
                              q + (size_t)(i + 3) * d};
        float *sr[4] = {s + (size_t)i * ld_s, s + (size_t)(i + 1) * ld_s,
                        s + (size_t)(i + 2) * ld_s, s + (size_t)(i + 3) * ld_s};
        int j = 0;
        for (; j + 4 <= nk; j += 4) {
            __m512 a[4][4];
            for (int x = 0; x < 4; x++)
                for (int u = 0; u < 4; u++) a[x][u] = _mm512_setzero_ps();
            for (int t = 0; t < d; t += 16) {
                const __mmask16 m = lanes(d - t);
                __m512 kv[4];
                for (int u = 0; u < 4; u++) kv[u] = ld16(k, (size_t)(j + u) * d + t, bf16, m);
                for (int x = 0; x < 4; x++) {
                    __m512 qv = _mm512_maskz_loadu_ps(m, qr[x] + t);
                    for (int u = 0; u < 4; u++) a[x][u] = _mm512_fmadd_ps(qv, kv[u], a[x][u]);
                }
            }
            float r[16];
            _mm256_storeu_ps(r, tw_hsum8x8(fold(a[0][0]), fold(a[0][1]), fold(a[0][2]),
                                           fold(a[0][3]), fold(a[1][0]), fold(a[1][1]),
                                           fold(a[1][2]), fold(a[1][3])));
            _mm256_storeu_ps(r + 8, tw_hsum8x8(fold(a[2][0]), fold(a[2][1]), fold(a[2][2]),
                                               fold(a[2][3]), fold(a[3][0]), fold(a[3][1]),
                                               fold(a[3][2]), fold(a[3][3])));
            for (int x = 0; x < 4; x++)
                for (int u = 0; u < 4; u++) sr[x][j + u] = r[4 * x + u];
        }
        for (; j < nk; j++) {
            __m512 a[4];
            for (int x = 0; x < 4; x++) a[x] = _mm512_setzero_ps();
            for (int t = 0; t < d; t += 16) {
                const __mmask16 m = lanes(d - t);
                __m512 kv = ld16(k, (size_t)j * d + t, bf16, m);
                for (int x = 0; x < 4; x++)
                    a[x] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qr[x] + t), kv, a[x]);
            }
            for (int x = 0; x < 4; x++) sr[x][j] = _mm512_reduce_add_ps(a[x]);
        }
    }
    /* remaining queries (all of them without grouped-query heads): one query against eight
     * keys, the query slice loaded once for 8 FMAs */
    for (; i < nq; i++) {
        const float *qi = q + (size_t)i * d;
        float *si = s + (size_t)i * ld_s;
        int j = 0;
        for (; j + 8 <= nk; j += 8) {
            __m512 a[8];
            for (int u = 0; u < 8; u++) a[u] = _mm512_setzero_ps();
            for (int t = 0; t < d; t += 16) {
                const __mmask16 m = lanes(d - t);
                __m512 qv = _mm512_maskz_loadu_ps(m, qi + t);
                for (int u = 0; u < 8; u++)
                    a[u] = _mm512_fmadd_ps(qv, ld16(k, (size_t)(j + u) * d + t, bf16, m), a[u]);
            }
            _mm256_storeu_ps(si + j, tw_hsum8x8(fold(a[0]), fold(a[1]), fold(a[2]), fold(a[3]),
                                                fold(a[4]), fold(a[5]), fold(a[6]), fold(a[7])));
        }
        for (; j < nk; j++) {
            __m512 a = _mm512_setzero_ps();
            for (int t = 0; t < d; t += 16) {
                const __mmask16 m = lanes(d - t);
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qi + t),
                                    ld16(k, (size_t)j * d + t, bf16, m), a);
            }
            si[j] = _mm512_reduce_add_ps(a);
        }
    }
}

/* o[rows, t .. t + 16 * NV) += p[rows, :] . v[:, t ..] for NR rows, NV 16-wide column slices held
 * in NR * NV registers while all nk value rows stream past (the last slice masked by mlast) */
#define PV_BLOCK(NR, NV)                                                                           \
    {                                                                                              \
        __m512 c[NR][NV];                                                                          \
        for (int x = 0; x < NR; x++)                                                               \
            for (int u = 0; u < NV; u++)                                                           \
                c[x][u] = _mm512_maskz_loadu_ps(u == NV - 1 ? mlast : 0xffff,                      \
                                                o + (size_t)(i + x) * d + t + 16 * u);             \
        for (int j = 0; j < nk; j++) {                                                             \
            __m512 vv[NV];                                                                         \
            for (int u = 0; u < NV; u++)                                                           \
                vv[u] = ld16(v, (size_t)j * d + t + 16 * u, bf16, u == NV - 1 ? mlast : 0xffff);   \
            for (int x = 0; x < NR; x++) {                                                         \
                __m512 w = _mm512_set1_ps(p[(size_t)(i + x) * ld_p + j]);                          \
                for (int u = 0; u < NV; u++) c[x][u] = _mm512_fmadd_ps(w, vv[u], c[x][u]);         \
            }                                                                                      \
        }                                                                                          \
        for (int x = 0; x < NR; x++)                                                               \
            for (int u = 0; u < NV; u++)                                                           \
                _mm512_mask_storeu_ps(o + (size_t)(i + x) * d + t + 16 * u,                        \
                                      u == NV - 1 ? mlast : 0xffff, c[x][u]);                      \
    }

/* Four output rows x 64 columns (16 registers), then x 16 for the rest of the head; rows left
 * over, one at a time x 128 columns (8 registers), so one broadcast of p serves 8 FMAs. Each
 * output is summed over j in order, as in the AVX2 and portable loops. */
static inline __attribute__((always_inline)) void
pv_gen(int nq, int nk, int d, const float *p, int ld_p, const void *v, int bf16, float *o) {
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        int t = 0;
        for (; t + 64 <= d; t += 64) {
            const __mmask16 mlast = 0xffff;
            PV_BLOCK(4, 4)
        }
        for (; t < d; t += 16) {
            const __mmask16 mlast = lanes(d - t);
            PV_BLOCK(4, 1)
        }
    }
    for (; i < nq; i++) {
        int t = 0;
        for (; t + 128 <= d; t += 128) {
            const __mmask16 mlast = 0xffff;
            PV_BLOCK(1, 8)
        }
        for (; t < d; t += 16) {
            const __mmask16 mlast = lanes(d - t);
            PV_BLOCK(1, 1)
        }
    }
}
#undef PV_BLOCK

static void scores_avx512(int nq, int nk, int d, const float *q, const float *k, float *s,
                          int ld_s) {
    scores_gen(nq, nk, d, q, k, 0, s, ld_s);
}

static void scores_bf16_avx512(int nq, int nk, int d, const float *q, const tw_bf16 *k, float *s,
                               int ld_s) {
    scores_gen(nq, nk, d, q, k, 1, s, ld_s);
}

static void pv_avx512(int nq, int nk, int d, const float *p, int ld_p, const float *v, float *o) {
    pv_gen(nq, nk, d, p, ld_p, v, 0, o);
}

static void pv_bf16_avx512(int nq, int nk, int d, const float *p, int ld_p, const tw_bf16 *v,
                           float *o) {
    pv_gen(nq, nk, d, p, ld_p, v, 1, o);
}

static const tw_attn_prims tw_attn_prims_avx512_table = {
    .scores = scores_avx512,
    .pv = pv_avx512,
    .scores_bf16 = scores_bf16_avx512,
    .pv_bf16 = pv_bf16_avx512,
    .exp_sub_sum = tw_attn_exp_sub_sum_avx2,
    .bf16_to_f32 = tw_attn_bf16_to_f32_avx2,
    .swiglu_row = tw_attn_swiglu_row_avx2,
};

const tw_attn_prims *tw_attn_prims_avx512(void) {
    return &tw_attn_prims_avx512_table;
}
