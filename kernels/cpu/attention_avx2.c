/* AVX2 + FMA inner loops of the CPU attention and row ops (see attn_prims.h). Compiled with
 * -mavx2 -mfma -mf16c and only called when tw_cpu_simd_active() says the CPU has them. */
#include "attn_prims.h"

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

/* Four queries against one key per step: each 8-wide slice of k is loaded once for 4 FMAs. */
static void scores_avx2(int nq, int nk, int d, const float *q, const float *k, float *s, int ld_s) {
    const int d8 = d & ~7;
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *q0 = q + (size_t)i * d, *q1 = q0 + d, *q2 = q1 + d, *q3 = q2 + d;
        for (int j = 0; j < nk; j++) {
            const float *kj = k + (size_t)j * d;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int t = 0; t < d8; t += 8) {
                __m256 kv = _mm256_loadu_ps(kj + t);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + t), kv, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + t), kv, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + t), kv, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + t), kv, a3);
            }
            float r0 = hsum8(a0), r1 = hsum8(a1), r2 = hsum8(a2), r3 = hsum8(a3);
            for (int t = d8; t < d; t++) {
                r0 += q0[t] * kj[t];
                r1 += q1[t] * kj[t];
                r2 += q2[t] * kj[t];
                r3 += q3[t] * kj[t];
            }
            s[(size_t)i * ld_s + j] = r0;
            s[(size_t)(i + 1) * ld_s + j] = r1;
            s[(size_t)(i + 2) * ld_s + j] = r2;
            s[(size_t)(i + 3) * ld_s + j] = r3;
        }
    }
    for (; i < nq; i++) {
        const float *qi = q + (size_t)i * d;
        for (int j = 0; j < nk; j++) {
            const float *kj = k + (size_t)j * d;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            int t = 0;
            for (; t + 16 <= d8; t += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t), _mm256_loadu_ps(kj + t), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t + 8), _mm256_loadu_ps(kj + t + 8), a1);
            }
            for (; t < d8; t += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qi + t), _mm256_loadu_ps(kj + t), a0);
            float r = hsum8(_mm256_add_ps(a0, a1));
            for (; t < d; t++) r += qi[t] * kj[t];
            s[(size_t)i * ld_s + j] = r;
        }
    }
}

/* Four output rows x 16 columns held in 8 registers while all nk value rows stream past:
 * each 8-wide slice of v is loaded once for 4 FMAs and o is read and written once per block. */
static void pv_avx2(int nq, int nk, int d, const float *p, int ld_p, const float *v, float *o) {
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
                const float *vj = v + (size_t)j * d + t;
                __m256 v0 = _mm256_loadu_ps(vj), v1 = _mm256_loadu_ps(vj + 8);
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
                __m256 vv = _mm256_loadu_ps(v + (size_t)j * d + t);
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
                float vv = v[(size_t)j * d + t];
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
    for (; i < nq; i++) {
        const float *pi = p + (size_t)i * ld_p;
        float *oi = o + (size_t)i * d;
        int t = 0;
        for (; t < d16; t += 16) {
            __m256 c0 = _mm256_loadu_ps(oi + t), c1 = _mm256_loadu_ps(oi + t + 8);
            for (int j = 0; j < nk; j++) {
                const float *vj = v + (size_t)j * d + t;
                __m256 w = _mm256_broadcast_ss(pi + j);
                c0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj), c0);
                c1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8), c1);
            }
            _mm256_storeu_ps(oi + t, c0);
            _mm256_storeu_ps(oi + t + 8, c1);
        }
        for (; t < d8; t += 8) {
            __m256 c0 = _mm256_loadu_ps(oi + t);
            for (int j = 0; j < nk; j++)
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pi + j),
                                     _mm256_loadu_ps(v + (size_t)j * d + t), c0);
            _mm256_storeu_ps(oi + t, c0);
        }
        for (; t < d; t++) {
            float c = oi[t];
            for (int j = 0; j < nk; j++) c += pi[j] * v[(size_t)j * d + t];
            oi[t] = c;
        }
    }
}

static float exp_sub_sum_avx2(int n, float m, const float *s, float *p) {
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
static void bf16_to_f32_avx2(size_t n, const tw_bf16 *src, float *dst) {
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

static void swiglu_row_avx2(int n, const float *gate, const float *up, float *out) {
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
    .exp_sub_sum = exp_sub_sum_avx2,
    .bf16_to_f32 = bf16_to_f32_avx2,
    .swiglu_row = swiglu_row_avx2,
};

const tw_attn_prims *tw_attn_prims_avx2(void) {
    return &tw_attn_prims_avx2_table;
}
