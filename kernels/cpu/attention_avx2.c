/* AVX2 + FMA inner loops of the CPU attention and row ops (see attn_prims.h). Compiled with
 * -mavx2 -mfma -mf16c and only called when tw_cpu_simd_active() says the CPU has them. */
#include "attn_prims.h"
#include "attn_x86_inl.h"

#include <immintrin.h>
#include <math.h>

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x) for 8 lanes: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact
 * reduction), e^r by a degree-6 polynomial, 2^n through the exponent bits. About 1 ulp over the
 * clamped range; below -87.3 it returns ~1e-38 rather than 0, which callers never rely on
 * (masked scores are never exponentiated). Vectorised because the scalar expf per score costs
 * as much as the D-long dot product that produced it. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.37f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* Key / value loads from an fp32 or a bf16 cache; bf16 is the top half of a float, so widening
 * is a zero-extend and a shift. Read in place, a bf16 cache costs no conversion pass. */
static inline __m256 ldv(const void *base, size_t i, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)base + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const tw_bf16 *)base + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float lds(const void *base, size_t i, int bf16) {
    return bf16 ? tw_f32_from_bf16(((const tw_bf16 *)base)[i]) : ((const float *)base)[i];
}

/* Four queries against two keys per step (8 accumulators): each 8-wide slice costs 6 loads for
 * 8 FMAs, and the 8 dot products are reduced together. */
static inline __attribute__((always_inline)) void
scores_gen(int nq, int nk, int d, const float *q, const void *k, int bf16, float *s, int ld_s) {
    const int d8 = d & ~7;
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *q0 = q + (size_t)i * d, *q1 = q0 + d, *q2 = q1 + d, *q3 = q2 + d;
        float *s0 = s + (size_t)i * ld_s, *s1 = s0 + ld_s, *s2 = s1 + ld_s, *s3 = s2 + ld_s;
        int j = 0;
        for (; j + 2 <= nk; j += 2) {
            size_t ka = (size_t)j * d, kb = ka + d;
            __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0,
                   b3 = a0;
            for (int t = 0; t < d8; t += 8) {
                __m256 kva = ldv(k, ka + t, bf16), kvb = ldv(k, kb + t, bf16);
                __m256 x = _mm256_loadu_ps(q0 + t);
                a0 = _mm256_fmadd_ps(x, kva, a0);
                b0 = _mm256_fmadd_ps(x, kvb, b0);
                x = _mm256_loadu_ps(q1 + t);
                a1 = _mm256_fmadd_ps(x, kva, a1);
                b1 = _mm256_fmadd_ps(x, kvb, b1);
                x = _mm256_loadu_ps(q2 + t);
                a2 = _mm256_fmadd_ps(x, kva, a2);
                b2 = _mm256_fmadd_ps(x, kvb, b2);
                x = _mm256_loadu_ps(q3 + t);
                a3 = _mm256_fmadd_ps(x, kva, a3);
                b3 = _mm256_fmadd_ps(x, kvb, b3);
            }
            float r[8];
            _mm256_storeu_ps(r, tw_hsum8x8(a0, b0, a1, b1, a2, b2, a3, b3));
            for (int t = d8; t < d; t++) {
                r[0] += q0[t] * lds(k, ka + t, bf16);
                r[1] += q0[t] * lds(k, kb + t, bf16);
                r[2] += q1[t] * lds(k, ka + t, bf16);
                r[3] += q1[t] * lds(k, kb + t, bf16);
                r[4] += q2[t] * lds(k, ka + t, bf16);
                r[5] += q2[t] * lds(k, kb + t, bf16);
                r[6] += q3[t] * lds(k, ka + t, bf16);
                r[7] += q3[t] * lds(k, kb + t, bf16);
            }
            s0[j] = r[0];
            s0[j + 1] = r[1];
            s1[j] = r[2];
            s1[j + 1] = r[3];
            s2[j] = r[4];
            s2[j + 1] = r[5];
            s3[j] = r[6];
            s3[j + 1] = r[7];
        }
        for (; j < nk; j++) {
            size_t kj = (size_t)j * d;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int t = 0; t < d8; t += 8) {
                __m256 kv = ldv(k, kj + t, bf16);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + t), kv, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + t), kv, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + t), kv, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + t), kv, a3);
            }
            float r0 = hsum8(a0), r1 = hsum8(a1), r2 = hsum8(a2), r3 = hsum8(a3);
            for (int t = d8; t < d; t++) {
                r0 += q0[t] * lds(k, kj + t, bf16);
                r1 += q1[t] * lds(k, kj + t, bf16);
                r2 += q2[t] * lds(k, kj + t, bf16);
                r3 += q3[t] * lds(k, kj + t, bf16);
            }
            s0[j] = r0;
            s1[j] = r1;
            s2[j] = r2;
            s3[j] = r3;
        }
    }
    /* remaining queries (all of them in multi-head decode): one query against eight keys, the
     * query slice loaded once for 8 FMAs and the 8 sums reduced together */
    for (; i < nq; i++) {
        const float *qi = q + (size_t)i * d;
        float *si = s + (size_t)i * ld_s;
        int j = 0;
        for (; j + 8 <= nk; j += 8) {
            size_t k0 = (size_t)j * d;
            __m256 a[8];
            for (int u = 0; u < 8; u++) a[u] = _mm256_setzero_ps();
            for (int t = 0; t < d8; t += 8) {
                __m256 x = _mm256_loadu_ps(qi + t);
                for (int u = 0; u < 8; u++)
                    a[u] = _mm256_fmadd_ps(x, ldv(k, k0 + (size_t)u * d + t, bf16), a[u]);
            }
            float r[8];
            _mm256_storeu_ps(r, tw_hsum8x8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));
            for (int t = d8; t < d; t++)
                for (int u = 0; u < 8; u++) r[u] += qi[t] * lds(k, k0 + (size_t)u * d + t, bf16);
            for (int u = 0; u < 8; u++) si[j + u] = r[u];
        }
        for (; j < nk; j++) {
            size_t kj = (size_t)j * d;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            int t = 0;
            for (; t + 16 <= d8; t += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t), ldv(k, kj + t, bf16), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t + 8), ldv(k, kj + t + 8, bf16), a1);
            }
            for (; t < d8; t += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t), ldv(k, kj + t, bf16), a0);
            float r = hsum8(_mm256_add_ps(a0, a1));
            for (; t < d; t++) r += qi[t] * lds(k, kj + t, bf16);
            s[(size_t)i * ld_s + j] = r;
        }
    }
}

/* Four output rows x 16 columns held in 8 registers while all nk value rows stream past:
 * each 8-wide slice of v is loaded once for 4 FMAs and o is read and written once per block. */
static inline __attribute__((always_inline)) void
pv_gen(int nq, int nk, int d, const float *p, int ld_p, const void *v, int bf16, float *o) {
    const int d16 = d & ~15, d8 = d & ~7;
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *p0 = p + (size_t)i * ld_p, *p1 = p0 + ld_p, *p2 = p1 + ld_p, *p3 = p2 + ld_p;
        float *o0 = o + (size_t)i * d, *o1 = o0 + d, *o2 = o1 + d, *o3 = o2 + d;
        int t = 0;
        for (; t < d16; t += 16) {
            __m256 c00 = _mm256_loadu_ps(o0 + t), c01 = _mm256_loadu_ps(o0 + t + 8);
            __m256 c10 = _mm256_loadu_ps(o1 + t), c11 = _mm256_loadu_ps(o1 + t + 8);
            __m256 c20 = _mm256_loadu_ps(o2 + t), c21 = _mm256_loadu_ps(o2 + t + 8);
            __m256 c30 = _mm256_loadu_ps(o3 + t), c31 = _mm256_loadu_ps(o3 + t + 8);
            for (int j = 0; j < nk; j++) {
                size_t vj = (size_t)j * d + t;
                __m256 v0 = ldv(v, vj, bf16), v1 = ldv(v, vj + 8, bf16);
                __m256 w = _mm256_broadcast_ss(p0 + j);
                c00 = _mm256_fmadd_ps(w, v0, c00);
                c01 = _mm256_fmadd_ps(w, v1, c01);
                w = _mm256_broadcast_ss(p1 + j);
                c10 = _mm256_fmadd_ps(w, v0, c10);
                c11 = _mm256_fmadd_ps(w, v1, c11);
                w = _mm256_broadcast_ss(p2 + j);
                c20 = _mm256_fmadd_ps(w, v0, c20);
                c21 = _mm256_fmadd_ps(w, v1, c21);
                w = _mm256_broadcast_ss(p3 + j);
                c30 = _mm256_fmadd_ps(w, v0, c30);
                c31 = _mm256_fmadd_ps(w, v1, c31);
            }
            _mm256_storeu_ps(o0 + t, c00);
            _mm256_storeu_ps(o0 + t + 8, c01);
            _mm256_storeu_ps(o1 + t, c10);
            _mm256_storeu_ps(o1 + t + 8, c11);
            _mm256_storeu_ps(o2 + t, c20);
            _mm256_storeu_ps(o2 + t + 8, c21);
            _mm256_storeu_ps(o3 + t, c30);
            _mm256_storeu_ps(o3 + t + 8, c31);
        }
        for (; t < d8; t += 8) {
            __m256 c0 = _mm256_loadu_ps(o0 + t), c1 = _mm256_loadu_ps(o1 + t);
            __m256 c2 = _mm256_loadu_ps(o2 + t), c3 = _mm256_loadu_ps(o3 + t);
            for (int j = 0; j < nk; j++) {
                __m256 vv = ldv(v, (size_t)j * d + t, bf16);
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), vv, c0);
                c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), vv, c1);
                c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p2 + j), vv, c2);
                c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p3 + j), vv, c3);
            }
            _mm256_storeu_ps(o0 + t, c0);
            _mm256_storeu_ps(o1 + t, c1);
            _mm256_storeu_ps(o2 + t, c2);
            _mm256_storeu_ps(o3 + t, c3);
        }
        for (; t < d; t++) {
            float c0 = o0[t], c1 = o1[t], c2 = o2[t], c3 = o3[t];
            for (int j = 0; j < nk; j++) {
                float vv = lds(v, (size_t)j * d + t, bf16);
                c0 += p0[j] * vv;
                c1 += p1[j] * vv;
                c2 += p2[j] * vv;
                c3 += p3[j] * vv;
            }
            o0[t] = c0;
            o1[t] = c1;
            o2[t] = c2;
            o3[t] = c3;
        }
    }
    /* remaining rows (all of them in multi-head decode): 64 columns in 8 registers per pass, so
     * one broadcast of p serves 8 FMAs */
    const int d64 = d & ~63;
    for (; i < nq; i++) {
        const float *pi = p + (size_t)i * ld_p;
        float *oi = o + (size_t)i * d;
        int t = 0;
        for (; t < d64; t += 64) {
            __m256 c[8];
            for (int u = 0; u < 8; u++) c[u] = _mm256_loadu_ps(oi + t + 8 * u);
            for (int j = 0; j < nk; j++) {
                size_t vj = (size_t)j * d + t;
                __m256 w = _mm256_broadcast_ss(pi + j);
                for (int u = 0; u < 8; u++)
                    c[u] = _mm256_fmadd_ps(w, ldv(v, vj + 8 * (size_t)u, bf16), c[u]);
            }
            for (int u = 0; u < 8; u++) _mm256_storeu_ps(oi + t + 8 * u, c[u]);
        }
        for (; t < d16; t += 16) {
            __m256 c0 = _mm256_loadu_ps(oi + t), c1 = _mm256_loadu_ps(oi + t + 8);
            for (int j = 0; j < nk; j++) {
                size_t vj = (size_t)j * d + t;
                __m256 w = _mm256_broadcast_ss(pi + j);
                c0 = _mm256_fmadd_ps(w, ldv(v, vj, bf16), c0);
                c1 = _mm256_fmadd_ps(w, ldv(v, vj + 8, bf16), c1);
            }
            _mm256_storeu_ps(oi + t, c0);
            _mm256_storeu_ps(oi + t + 8, c1);
        }
        for (; t < d8; t += 8) {
            __m256 c0 = _mm256_loadu_ps(oi + t);
            for (int j = 0; j < nk; j++)
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pi + j), ldv(v, (size_t)j * d + t, bf16),
                                     c0);
            _mm256_storeu_ps(oi + t, c0);
        }
        for (; t < d; t++) {
            float c = oi[t];
            for (int j = 0; j < nk; j++) c += pi[j] * lds(v, (size_t)j * d + t, bf16);
            oi[t] = c;
        }
    }
}

static void scores_avx2(int nq, int nk, int d, const float *q, const float *k, float *s, int ld_s) {
    scores_gen(nq, nk, d, q, k, 0, s, ld_s);
}

static void scores_bf16_avx2(int nq, int nk, int d, const float *q, const tw_bf16 *k, float *s,
                             int ld_s) {
    scores_gen(nq, nk, d, q, k, 1, s, ld_s);
}

static void pv_avx2(int nq, int nk, int d, const float *p, int ld_p, const float *v, float *o) {
    pv_gen(nq, nk, d, p, ld_p, v, 0, o);
}

static void pv_bf16_avx2(int nq, int nk, int d, const float *p, int ld_p, const tw_bf16 *v,
                         float *o) {
    pv_gen(nq, nk, d, p, ld_p, v, 1, o);
}

float tw_attn_exp_sub_sum_avx2(int n, float m, const float *s, float *p) {
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(p + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(acc);
    if (j < n) { /* tail through a padded lane buffer so every score sees the same exp */
        float buf[8] = {0};
        for (int t = 0; j + t < n; t++) buf[t] = s[j + t] - m;
        float out[8];
        _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(buf)));
        for (int t = 0; j + t < n; t++) {
            p[j + t] = out[t];
            sum += out[t];
        }
    }
    return sum;
}

/* bf16 is the top half of a float: widen to 32 bits and shift left by 16 */
void tw_attn_bf16_to_f32_avx2(size_t n, const tw_bf16 *src, float *dst) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16);
        __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(lo));
        _mm256_storeu_ps(dst + i + 8, _mm256_castsi256_ps(hi));
    }
    for (; i < n; i++) dst[i] = tw_f32_from_bf16(src[i]);
}

void tw_attn_swiglu_row_avx2(int n, const float *gate, const float *up, float *out) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        /* silu(g) = g / (1 + exp(-g)); exp8 saturates, so large |g| gives g or ~0 */
        __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = tw_silu(gate[i]) * up[i];
}

static const tw_attn_prims tw_attn_prims_avx2_table = {
    .scores = scores_avx2,
    .pv = pv_avx2,
    .scores_bf16 = scores_bf16_avx2,
    .pv_bf16 = pv_bf16_avx2,
    .exp_sub_sum = tw_attn_exp_sub_sum_avx2,
    .bf16_to_f32 = tw_attn_bf16_to_f32_avx2,
    .swiglu_row = tw_attn_swiglu_row_avx2,
};

const tw_attn_prims *tw_attn_prims_avx2(void) {
    return &tw_attn_prims_avx2_table;
}
