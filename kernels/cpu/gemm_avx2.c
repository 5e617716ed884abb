/* AVX2 + FMA GEMM kernels (compiled with -mavx2 -mfma; only called when CPUID says so):
 * a 6x16 register-blocked micro-kernel for the packed (prefill) path, and the skinny
 * (decode/GEMV) kernel that streams fp32 or bf16 weight rows once for up to 4 rows of x. */
#include "gemm_internal.h"

#include <immintrin.h>
#include <stdint.h>

#define MR 6
#define NR 16

/* 12 accumulators (6 rows x 2 vectors of 8) + 2 B vectors + 1 broadcast = 15 of 16 ymm
 * registers: two FMAs per broadcast, 12 FMAs per 8 loads keeps both FMA pipes busy. */
static void ukr_avx2_6x16(int kc, const float *a, const float *b, float *c, size_t ldc, int add) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
#define TW_STEP(P)                                                                                 \
    do {                                                                                           \
        __m256 b0 = _mm256_load_ps(b + (P)*NR), b1 = _mm256_load_ps(b + (P)*NR + 8);               \
        __m256 av = _mm256_broadcast_ss(a + (P)*MR + 0);                                           \
        c00 = _mm256_fmadd_ps(av, b0, c00);                                                        \
        c01 = _mm256_fmadd_ps(av, b1, c01);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 1);                                                  \
        c10 = _mm256_fmadd_ps(av, b0, c10);                                                        \
        c11 = _mm256_fmadd_ps(av, b1, c11);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 2);                                                  \
        c20 = _mm256_fmadd_ps(av, b0, c20);                                                        \
        c21 = _mm256_fmadd_ps(av, b1, c21);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 3);                                                  \
        c30 = _mm256_fmadd_ps(av, b0, c30);                                                        \
        c31 = _mm256_fmadd_ps(av, b1, c31);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 4);                                                  \
        c40 = _mm256_fmadd_ps(av, b0, c40);                                                        \
        c41 = _mm256_fmadd_ps(av, b1, c41);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 5);                                                  \
        c50 = _mm256_fmadd_ps(av, b0, c50);                                                        \
        c51 = _mm256_fmadd_ps(av, b1, c51);                                                        \
    } while (0)
    int p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
        TW_STEP(0);
        TW_STEP(1);
        TW_STEP(2);
        TW_STEP(3);
        a += 4 * MR;
        b += 4 * NR;
    }
    for (; p < kc; p++) {
        TW_STEP(0);
        a += MR;
        b += NR;
    }
#undef TW_STEP
    __m256 r[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; i++) {
        float *ci = c + (size_t)i * ldc;
        if (add) {
            r[i][0] = _mm256_add_ps(r[i][0], _mm256_loadu_ps(ci));
            r[i][1] = _mm256_add_ps(r[i][1], _mm256_loadu_ps(ci + 8));
        }
        _mm256_storeu_ps(ci, r[i][0]);
        _mm256_storeu_ps(ci + 8, r[i][1]);
    }
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights at p, widened to fp32: bf16 is the top half of a float, so zero-extend to 32 bits
 * and shift left by 16 (exact). */
static inline __m256 load_w8(const void *w, int bf16, size_t p) {
    if (bf16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)w + p);
}

static inline float load_w1(const void *w, int bf16, size_t p) {
    if (bf16) {
        union {
            uint32_t u;
            float f;
        } v = {(uint32_t)((const uint16_t *)w)[p] << 16};
        return v.f;
    }
    return ((const float *)w)[p];
}

/* MROWS rows of x against NW weight rows; MROWS * NW accumulators (<= 8), constant bounds so
 * the compiler keeps them in registers. */
static inline __attribute__((always_inline)) void skinny_tile(const int MROWS, const int NW, int k,
                                                              const float *x, size_t ldx,
                                                              const void *w, int bf16, float *y,
                                                              size_t ldy, int add) {
    const size_t wsz = bf16 ? 2 : 4;
    const char *wr[4];
    for (int j = 0; j < NW; j++) wr[j] = (const char *)w + (size_t)j * k * wsz;
    __m256 acc[4][4];
    for (int i = 0; i < MROWS; i++)
        for (int j = 0; j < NW; j++) acc[i][j] = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 xv[4];
        for (int i = 0; i < MROWS; i++) xv[i] = _mm256_loadu_ps(x + (size_t)i * ldx + p);
        for (int j = 0; j < NW; j++) {
            __m256 wv = load_w8(wr[j], bf16, (size_t)p);
            for (int i = 0; i < MROWS; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    for (int i = 0; i < MROWS; i++) {
        for (int j = 0; j < NW; j++) {
            float s = hsum256(acc[i][j]);
            for (int q = p; q < k; q++) s += x[(size_t)i * ldx + q] * load_w1(wr[j], bf16, q);
            float *yij = y + (size_t)i * ldy + j;
            *yij = add ? *yij + s : s;
        }
    }
}

#define TW_SKINNY_CASE(MM, NWW)                                                                    \
    static void skinny_##MM##x##NWW(int k, const float *x, size_t ldx, const void *w, int bf16,    \
                                    float *y, size_t ldy, int add) {                               \
        skinny_tile(MM, NWW, k, x, ldx, w, bf16, y, ldy, add);                                     \
    }
TW_SKINNY_CASE(1, 4)
TW_SKINNY_CASE(1, 1)
TW_SKINNY_CASE(2, 4)
TW_SKINNY_CASE(2, 1)
TW_SKINNY_CASE(3, 2)
TW_SKINNY_CASE(3, 1)
TW_SKINNY_CASE(4, 2)
TW_SKINNY_CASE(4, 1)

typedef void (*skinny_fn)(int, const float *, size_t, const void *, int, float *, size_t, int);

static void skinny_avx2(int m, int n, int k, const float *x, size_t ldx, const void *w, int bf16,
                        float *y, size_t ldy, int add) {
    static const skinny_fn wide[5] = {0, skinny_1x4, skinny_2x4, skinny_3x2, skinny_4x2};
    static const skinny_fn one[5] = {0, skinny_1x1, skinny_2x1, skinny_3x1, skinny_4x1};
    static const int nw[5] = {0, 4, 4, 2, 2};
    const size_t wrow = (size_t)k * (bf16 ? 2 : 4);
    int j = 0;
    for (; j + nw[m] <= n; j += nw[m])
        wide[m](k, x, ldx, (const char *)w + j * wrow, bf16, y + j, ldy, add);
    for (; j < n; j++) one[m](k, x, ldx, (const char *)w + j * wrow, bf16, y + j, ldy, add);
}

const tw_gemm_kernels tw_gemm_kernels_avx2 = {"avx2", MR, NR, ukr_avx2_6x16, skinny_avx2};
