/* AVX-512F GEMM kernels (compiled with AVX-512 flags; only called when CPUID and the OS's XSAVE
 * state allow): the micro-kernel of the blocked (BLIS-style) path and the dot-product tiles of
 * gemm_dot.c (decode and batched decode; bf16 weights on CPUs whose bf16 dot product is not the
 * faster instruction). */
#include "gemm_internal.h"
#include "gemm_avx512_inl.h"

#include <immintrin.h>
#include <stdint.h>

#define MR 6
#define NR 32

static void ukr_avx512_6x32(int kc, const float *a, const float *b, float *c, size_t ldc, int add) {
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    for (int i = 0; i < MR; i++) {
        float *ci = c + (size_t)i * ldc;
        if (add) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(ci));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(ci + 16));
        }
        _mm512_storeu_ps(ci, acc[i][0]);
        _mm512_storeu_ps(ci + 16, acc[i][1]);
    }
}

/* ---- dot-product tiles (gemm_dot.c): fp32 activations, fp32 or bf16 weights ---------------
 * Lane l of an accumulator sums k = 16s + l over the steps s of a k block (the last step
 * masked), then tw_hsum4x16's fixed tree. bf16 weights are widened exactly (a bf16 is the top
 * half of a float), either in registers or, when several tiles share a weight micro-panel,
 * once into an fp32 copy of the panel (widen_panel): the same values either way, so the same
 * results. */
#define DKSTEP 16
#define DPF    1024 /* bytes ahead each weight row is prefetched */

static inline __attribute__((always_inline)) __m512 dot_load_w(const void *w, int bf16, size_t p,
                                                               __mmask16 m) {
    if (bf16) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + p);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)w + p);
}

static inline __attribute__((always_inline)) void
dot_tile(const int RM, const int RN, const int BF16, const int PF, int kc, const float *x,
         size_t ldx, const void *w, size_t ldw, float *y, size_t ldy, int add) {
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    const size_t wsz = BF16 ? 2 : 4, ldwb = ldw * wsz;
    const char *wb = (const char *)w;
    int p = 0;
    for (; p + DKSTEP <= kc; p += DKSTEP) {
        __m512 wv[8];
        const char *wp = wb + (size_t)p * wsz;
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            if (PF) _mm_prefetch(wp + j * ldwb + DPF, _MM_HINT_T0);
            wv[j] = dot_load_w(wp + j * ldwb, BF16, 0, (__mmask16)0xffff);
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (p < kc) { /* the block's last partial step: both sides masked to zero */
        const __mmask16 m = (__mmask16)((1u << (kc - p)) - 1);
        __m512 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) wv[j] = dot_load_w(wb + j * ldwb, BF16, (size_t)p, m);
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) TW_STORE_ROW16(RN, acc[i], y + (size_t)i * ldy, add);
}

/* Variants: v 0 = fp32 weights streamed, 1 = bf16 weights streamed, 2 = fp32 copy in L1. */
#define TW_DTILE(RM, RN)                                                                           \
    static void dtile_##RM##x##RN(int v, int kc, const float *x, size_t ldx, const void *w,        \
                                  size_t ldw, float *y, size_t ldy, int add) {                     \
        if (v == 1)                                                                                \
            dot_tile(RM, RN, 1, 1, kc, x, ldx, w, ldw, y, ldy, add);                               \
        else if (v == 0)                                                                           \
            dot_tile(RM, RN, 0, 1, kc, x, ldx, w, ldw, y, ldy, add);                               \
        else                                                                                       \
            dot_tile(RM, RN, 0, 0, kc, x, ldx, w, ldw, y, ldy, add);                               \
    }
#define TW_DTILE_ROW6(RM)                                                                          \
    TW_DTILE(RM, 1) TW_DTILE(RM, 2) TW_DTILE(RM, 3) TW_DTILE(RM, 4) TW_DTILE(RM, 5) TW_DTILE(RM, 6)
TW_DTILE_ROW6(1)
TW_DTILE_ROW6(2)
TW_DTILE_ROW6(3)
TW_DTILE_ROW6(4)
TW_DTILE(1, 7)
TW_DTILE(1, 8)
TW_DTILE(2, 7)
TW_DTILE(2, 8)

typedef void (*dtile_fn)(int, int, const float *, size_t, const void *, size_t, float *, size_t,
                         int);
static const dtile_fn dtiles[5][9] = {
    {0},
    {0, dtile_1x1, dtile_1x2, dtile_1x3, dtile_1x4, dtile_1x5, dtile_1x6, dtile_1x7, dtile_1x8},
    {0, dtile_2x1, dtile_2x2, dtile_2x3, dtile_2x4, dtile_2x5, dtile_2x6, dtile_2x7, dtile_2x8},
    {0, dtile_3x1, dtile_3x2, dtile_3x3, dtile_3x4, dtile_3x5, dtile_3x6, 0, 0},
    {0, dtile_4x1, dtile_4x2, dtile_4x3, dtile_4x4, dtile_4x5, dtile_4x6, 0, 0},
};

static void dot_tile_avx512(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                            int wflags, size_t ldw, float *y, size_t ldy, int add) {
    int v = (wflags & TW_DOT_W_RESIDENT) ? 2 : (wflags & TW_DOT_W_BF16) ? 1 : 0;
    dtiles[rm][rn](v, kc, (const float *)xp, ldxp, w, ldw, y, ldy, add);
}

/* out[j, p] = (float)w[j, p] for j < rn, p < kc (rows kc apart) */
static void widen_panel_avx512(int rn, int kc, const void *w, size_t ldw, float *out) {
    for (int j = 0; j < rn; j++) {
        const uint16_t *src = (const uint16_t *)w + (size_t)j * ldw;
        float *dst = out + (size_t)j * kc;
        int p = 0;
        for (; p + 16 <= kc; p += 16)
            _mm512_storeu_ps(dst + p, dot_load_w(src, 1, (size_t)p, 0xffff));
        if (p < kc) {
            const __mmask16 m = (__mmask16)((1u << (kc - p)) - 1);
            _mm512_mask_storeu_ps(dst + p, m, dot_load_w(src, 1, (size_t)p, m));
        }
    }
}

const tw_gemm_kernels tw_gemm_kernels_avx512 = {.name = "avx512",
                                                .path = "blocked/avx512",
                                                .mr = MR,
                                                .nr = NR,
                                                .ukr = ukr_avx512_6x32,
                                                .pack_b = NULL,
                                                .pack_a = NULL};

const tw_dot_kernels tw_dot_kernels_avx512 = {.name = "avx512",
                                              .path = "dot/avx512",
                                              .w_dtypes = TW_DOT_BF16 | TW_DOT_F32,
                                              .kstep = DKSTEP,
                                              .xsize = 0,
                                              .pack_x = NULL,
                                              .rm = 4,
                                              .rn = 6,
                                              .rn_small = 8,
                                              .tile = dot_tile_avx512,
                                              .widen_panel = widen_panel_avx512};

/* ---- peak loop: 16 independent FMA chains -------------------------------------------------- */
double tw_peak_fma_avx512(long iters, float *sink) {
    const __m512 m = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(*sink + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], m, add);
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    *sink += _mm512_reduce_add_ps(s);
    return (double)iters * 16 * 16 * 2;
}
