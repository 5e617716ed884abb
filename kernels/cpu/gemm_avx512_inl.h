/* AVX-512F helpers shared by gemm_avx512.c and gemm_avx512bf16.c (both compiled with AVX-512
 * flags). Private to kernels/cpu. */
#ifndef TW_GEMM_AVX512_INL_H
#define TW_GEMM_AVX512_INL_H

#include <immintrin.h>

#include "gemm_internal.h"

/* The four horizontal sums of a, b, c, d (16 lanes each) as one __m128, every sum by the same
 * tree as one vector alone would get: s8[i] = v[i] + v[i+8], s4[i] = s8[i] + s8[i+4],
 * s2[i] = s4[i] + s4[i+2], sum = s2[0] + s2[1]. A tile's outputs are therefore bitwise the
 * same whatever tile shape (or batch) they were computed in. */
static inline __attribute__((always_inline)) __m128 tw_hsum4x16(__m512 a, __m512 b, __m512 c,
                                                                __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 u =
        _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4E));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0xB1));
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, u));
}

/* Reduces one tile row's accumulators a0 .. a{RN-1} (passed by value: taking the address of
 * an accumulator array would keep it in memory inside the k loop) and writes y[0 .. RN-1]
 * (+)= the sums, four columns per step, the last step masked. */
static inline __attribute__((always_inline)) void tw_store4(__m512 a, __m512 b, __m512 c, __m512 d,
                                                            int cnt, float *y, int add) {
    __m128 s = tw_hsum4x16(a, b, c, d);
    const __mmask8 m = (__mmask8)((1u << cnt) - 1);
    if (add) s = _mm_add_ps(s, _mm_maskz_loadu_ps(m, y));
    _mm_mask_storeu_ps(y, m, s);
}

#define TW_STORE_ROW16(RN, A, Y, ADD)                                                              \
    do {                                                                                           \
        const __m512 z_ = _mm512_setzero_ps();                                                     \
        tw_store4((A)[0], (RN) > 1 ? (A)[1] : z_, (RN) > 2 ? (A)[2] : z_, (RN) > 3 ? (A)[3] : z_,  \
                  (RN) < 4 ? (RN) : 4, (Y), (ADD));                                                \
        if ((RN) > 4)                                                                              \
            tw_store4((A)[4], (RN) > 5 ? (A)[5] : z_, (RN) > 6 ? (A)[6] : z_,                      \
                      (RN) > 7 ? (A)[7] : z_, (RN)-4, (Y) + 4, (ADD));                             \
    } while (0)

/* 16 x 16 transpose in registers: r[i] holds row i on entry and column i on exit. */
static inline __attribute__((always_inline)) void tw_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(
            _mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(
            _mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(
            _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(
            _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* now r[4q + c] holds, in each 128-bit lane L, rows 4L'.. of column c of block q: swap lanes */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
    }
}

/* The same on 32-bit integers (pairs of bf16). */
static inline __attribute__((always_inline)) void tw_transpose16i(__m512i r[16]) {
    __m512 u[16];
    for (int i = 0; i < 16; i++) u[i] = _mm512_castsi512_ps(r[i]);
    tw_transpose16(u);
    for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(u[i]);
}

#endif
