/* AVX-512F GEMM kernels (compiled with AVX-512 flags; only called when CPUID and the OS's XSAVE
 * state allow): the micro-kernel of the blocked (BLIS-style) path and the dot-product tiles of
 * gemm_dot.c (decode and batched decode; bf16 weights on CPUs whose bf16 dot product is not the
 * faster instruction). */
#include "gemm_internal.h"
#include "gemm_avx512_inl.h"

#include <immintrin.h>
#include <stdint.h>

#ifndef TW_AVX512_MR
#define TW_AVX512_MR 12
#endif
#ifndef TW_AVX512_NV
#define TW_AVX512_NV 2 /* zmm vectors across: nr = 16 * NV */
#endif
/* Blocking, and whether the micro-kernel prefetches its B micro-panel 8 k steps ahead. Measured
 * (Xeon with AMX, 2 threads, fp32 2048^3 against OpenBLAS in the same run, 5 interleaved rounds):
 * kc 192 / mc 288 / prefetch 0.90x (median), kc 256 / mc 240 / none 0.97x, kc 256 / mc 144 / none
 * 0.98x (512 x 4096 x 4096: 0.89x, 0.93x, 0.94x). The B panel streams from L1/L2 in order, which
 * the hardware prefetchers follow; the explicit prefetch only took a load slot. -D overrides for
 * tuning on other CPUs. */
#ifndef TW_AVX512_BPF
#define TW_AVX512_BPF 0
#endif
#ifndef TW_AVX512_KC
#define TW_AVX512_KC 256 /* 256 x 32 x 4 B of B (32 KiB) + 256 x 12 x 4 B of A in a 48 KiB L1 */
/* (smaller L1 data caches get tw_gemm_kernels_avx512_l1_32k below) */
#endif
#ifndef TW_AVX512_MC
#define TW_AVX512_MC 144 /* an mc x kc block of x (144 KiB) in L2 */
#endif
#define MR TW_AVX512_MR
#define NV TW_AVX512_NV
#define NR (16 * NV)

/* MR x NR register tile: MR * NV accumulators (24 of 32 zmm for 12 x 32), each k step loads NV
 * vectors of the packed B panel and broadcasts MR values of the packed A panel (folded into the
 * FMAs as {1to16} memory operands): 14 loads per 24 FMAs, within two load ports. */
static void ukr_avx512(int kc, const float *a, const float *b, float *c, size_t ldc, int add) {
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
#pragma GCC unroll 2
    for (int p = 0; p < kc; p++) {
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(b + 16 * v);
        if (TW_AVX512_BPF) _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        float *ci = c + (size_t)i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (add) acc[i][v] = _mm512_add_ps(acc[i][v], _mm512_loadu_ps(ci + 16 * v));
            _mm512_storeu_ps(ci + 16 * v, acc[i][v]);
        }
    }
}

static inline __attribute__((always_inline)) __m512 load16(const void *src, int bf16, size_t p) {
    if (bf16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)src + p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)src + p);
}

/* Packs NR weight rows x kc into [kc][NR] (bf16 widened), 16 x 16 transposes. */
static int pack_b_avx512(int kc, const void *w, int bf16, size_t ldw, float *bp) {
    if (kc % 16) return 0;
    const size_t wsz = bf16 ? 2 : 4;
    for (int p = 0; p < kc; p += 16)
        for (int h = 0; h < NV; h++) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = load16((const char *)w + (size_t)(16 * h + i) * ldw * wsz, bf16, (size_t)p);
            tw_transpose16(r);
            for (int q = 0; q < 16; q++) _mm512_store_ps(bp + (size_t)(p + q) * NR + 16 * h, r[q]);
        }
    return 1;
}

/* Packs MR rows of x x kc into [kc][MR]: 16 x 16 transposes of the MR rows (the rest zero),
 * each column stored as 16 floats of which the last 16 - MR are overwritten by the next (up to
 * 4 floats past the panel are written for MR = 12: the driver leaves 8 of slack). */
static int pack_a_avx512(int kc, const float *x, size_t ldx, float *ap) {
    if (kc % 16 || MR > 16 || MR < 8) return 0;
    for (int p = 0; p < kc; p += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < MR ? _mm512_loadu_ps(x + (size_t)i * ldx + p) : _mm512_setzero_ps();
        tw_transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_storeu_ps(ap + (size_t)(p + q) * MR, r[q]);
    }
    return 1;
}

/* ---- dot-product tiles (gemm_dot.c): fp32 activations, fp32 weights --------------------------
 * Lane l of an accumulator sums k = 16s + l over the steps s of a k block (the last step
 * masked), then tw_hsum4x16's fixed tree. (bf16 weights: dot/avx512-split below.) */
#define DKSTEP 16
#ifndef DPF
#define DPF 1024 /* bytes ahead each weight row is prefetched */
#endif

static inline __attribute__((always_inline)) void dot_tile(const int RM, const int RN, int kc,
                                                           const float *x, size_t ldx,
                                                           const float *w, size_t ldw, float *y,
                                                           size_t ldy, int add) {
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    int p = 0;
    for (; p + DKSTEP <= kc; p += DKSTEP) {
        __m512 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            _mm_prefetch((const char *)(w + j * ldw + p) + DPF, _MM_HINT_T0);
            wv[j] = _mm512_loadu_ps(w + j * ldw + p);
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
        for (int j = 0; j < RN; j++) wv[j] = _mm512_maskz_loadu_ps(m, w + j * ldw + p);
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

#define TW_DTILE(RM, RN)                                                                           \
    static void dtile_##RM##x##RN(int kc, const float *x, size_t ldx, const float *w, size_t ldw,  \
                                  float *y, size_t ldy, int add) {                                 \
        dot_tile(RM, RN, kc, x, ldx, w, ldw, y, ldy, add);                                         \
    }
typedef void (*dtile_fn)(int, const float *, size_t, const float *, size_t, float *, size_t, int);
TW_DOT_FOR_SHAPES(TW_DTILE)
TW_DOT_TABLE(dtile_fn, dtile);

static void dot_tile_avx512(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                            int wflags, size_t ldw, float *y, size_t ldy, int add) {
    (void)wflags; /* fp32 weights only (w_dtypes) */
    dtiles[rm][rn](kc, (const float *)xp, ldxp, (const float *)w, ldw, y, ldy, add);
}

const tw_gemm_kernels tw_gemm_kernels_avx512 = {.name = "avx512",
                                                .path = "blocked/avx512",
                                                .mr = MR,
                                                .nr = NR,
                                                .kc = TW_AVX512_KC,
                                                .mc = TW_AVX512_MC,
                                                .ukr = ukr_avx512,
                                                .pack_b = pack_b_avx512,
                                                .pack_a = pack_a_avx512};

/* The blocking measured before (kc 192, mc 288), for L1 data caches under 48 KiB (Zen 4: 32 KiB),
 * where the 32 KiB B micro-panel of kc 256 would leave no room for the A panel. */
const tw_gemm_kernels tw_gemm_kernels_avx512_l1_32k = {.name = "avx512",
                                                       .path = "blocked/avx512-kc192",
                                                       .mr = MR,
                                                       .nr = NR,
                                                       .kc = 192,
                                                       .mc = 288,
                                                       .ukr = ukr_avx512,
                                                       .pack_b = pack_b_avx512,
                                                       .pack_a = pack_a_avx512};

const tw_dot_kernels tw_dot_kernels_avx512 = {.name = "avx512",
                                              .path = "dot/avx512",
                                              .w_dtypes = TW_DOT_F32,
                                              .kstep = DKSTEP,
                                              .xsize = 0,
                                              .pack_x = NULL,
                                              .rm = 4,
                                              .rn = 6,
                                              .rn_small = 8,
                                              .max_m_bf16 = 1024,
                                              .max_m_f32 = 256,
                                              .tile = dot_tile_avx512};

/* ---- bf16 weights, pairs split (dot/avx512-split) --------------------------------------------
 * Widening a bf16 vector to fp32 in registers costs two shuffle-port instructions per 16 weights
 * (zero-extend, shift), on the ports the FMAs use: a 4 x 6 tile spends a third of its issue slots
 * on them. Here each 32-bit word of a 64-byte weight load holds two neighbouring bf16 (k = 2l and
 * 2l + 1 in lane l): a shift gives the even one as an fp32 vector, a mask the odd one, one
 * instruction per 16 weights. The activations are packed once per call to match: per 32 k,
 * the 16 even then the 16 odd values. Lane l of an accumulator sums k = 32s + 2l and then
 * 32s + 2l + 1 over the steps s of a k block, then tw_hsum4x16's fixed tree, whatever the tile
 * shape, so results do not depend on the tiling or the batch. The fp32 copy of a micro-panel
 * (widen_panel_split) stores each 32 k the same way (even, then odd), so tiles on the copy do
 * the same arithmetic. */
#define SKSTEP 32

/* xp: per 32 k, x[32s + 2l] for l < 16, then x[32s + 2l + 1]; zero past k */
static void pack_x_split(int k, const float *x, void *xp_) {
    float *xp = xp_;
    const __m512i even =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int p = 0; p < k; p += SKSTEP) {
        const int left = k - p;
        const __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const __mmask16 m1 = left >= 32  ? (__mmask16)0xffff
                             : left > 16 ? (__mmask16)((1u << (left - 16)) - 1)
                                         : (__mmask16)0;
        const __m512 a = _mm512_maskz_loadu_ps(m0, x + p);
        const __m512 b = _mm512_maskz_loadu_ps(m1, x + p + 16);
        _mm512_storeu_ps(xp + p, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(xp + p + 16, _mm512_permutex2var_ps(a, odd, b));
    }
}

static inline __attribute__((always_inline)) void split_w(__m512i raw, __m512 *lo, __m512 *hi) {
    *lo = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
    *hi = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32((int)0xffff0000u)));
}

/* RES = 0: bf16 weights, rows ldw elements apart; RES = 1: the fp32 copy, rows ldw floats apart.
 * x: the packed activations (zero past k). pf: the next block's lines to prefetch, or NULL. */
static inline __attribute__((always_inline)) void
split_tile(const int RM, const int RN, const int RES, int kc, const float *x, size_t ldx,
           const void *w, size_t ldw, float *y, size_t ldy, int add, const tw_dot_prefetch *pf) {
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    tw_pf_cursor pc = tw_pf_start(pf, (kc + SKSTEP - 1) / SKSTEP);
    const uint16_t *wb = (const uint16_t *)w;
    const float *wc = (const float *)w;
    /* one step of 32 k; FULL: a whole step (a plain load: a masked one costs a shuffle-port
     * instruction more on Intel), else the block's last partial step, the weights masked to
     * zero (x is zero there too) */
#define SPLIT_STEP(FULL, M)                                                                        \
    do {                                                                                           \
        tw_pf_step(&pc);                                                                           \
        __m512 xl[4], xh[4];                                                                       \
        _Pragma("GCC unroll 8") for (int i = 0; i < RM; i++) {                                     \
            xl[i] = _mm512_loadu_ps(x + (size_t)i * ldx + p);                                      \
            xh[i] = _mm512_loadu_ps(x + (size_t)i * ldx + p + 16);                                 \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int j = 0; j < RN; j++) {                                     \
            __m512 lo, hi;                                                                         \
            if (RES) {                                                                             \
                lo = _mm512_loadu_ps(wc + (size_t)j * ldw + p);                                    \
                hi = _mm512_loadu_ps(wc + (size_t)j * ldw + p + 16);                               \
            } else {                                                                               \
                const uint16_t *wj = wb + (size_t)j * ldw + p;                                     \
                _mm_prefetch((const char *)wj + DPF, _MM_HINT_T0);                                 \
                split_w((FULL) ? _mm512_loadu_si512(wj) : _mm512_maskz_loadu_epi16((M), wj), &lo,  \
                        &hi);                                                                      \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; i++) {                                 \
                acc[i][j] = _mm512_fmadd_ps(xl[i], lo, acc[i][j]);                                 \
                acc[i][j] = _mm512_fmadd_ps(xh[i], hi, acc[i][j]);                                 \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    int p = 0;
    for (; p + SKSTEP <= kc; p += SKSTEP) SPLIT_STEP(1, 0);
    if (p < kc) SPLIT_STEP(0, (__mmask32)((1u << (kc - p)) - 1));
#undef SPLIT_STEP
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) TW_STORE_ROW16(RN, acc[i], y + (size_t)i * ldy, add);
}

/* Variants: res 0 = bf16 weights in memory (pf: lines to prefetch, or NULL), 1 = fp32 copy. */
#define TW_STILE(RM, RN)                                                                           \
    static void stile_##RM##x##RN(int res, int kc, const float *x, size_t ldx, const void *w,      \
                                  size_t ldw, float *y, size_t ldy, int add,                       \
                                  const tw_dot_prefetch *pf) {                                     \
        if (res)                                                                                   \
            split_tile(RM, RN, 1, kc, x, ldx, w, ldw, y, ldy, add, pf);                            \
        else                                                                                       \
            split_tile(RM, RN, 0, kc, x, ldx, w, ldw, y, ldy, add, pf);                            \
    }
TW_DOT_FOR_SHAPES(TW_STILE)
typedef void (*stile_fn)(int, int, const float *, size_t, const void *, size_t, float *, size_t,
                         int, const tw_dot_prefetch *);
TW_DOT_TABLE(stile_fn, stile);

static void dot_tile_pf_split(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                              int wflags, size_t ldw, float *y, size_t ldy, int add,
                              const tw_dot_prefetch *pf) {
    stiles[rm][rn]((wflags & TW_DOT_W_RESIDENT) ? 1 : 0, kc, (const float *)xp, ldxp, w, ldw, y,
                   ldy, add, pf);
}

static void dot_tile_split(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                           int wflags, size_t ldw, float *y, size_t ldy, int add) {
    dot_tile_pf_split(rm, rn, kc, xp, ldxp, w, wflags, ldw, y, ldy, add, NULL);
}

/* the fp32 copy in split_tile's order: per 32 k, the even weights then the odd (zero past kc) */
static void widen_panel_split(int rn, int kc, const void *w, size_t ldw, float *out, size_t ldo) {
    for (int j = 0; j < rn; j++) {
        const uint16_t *src = (const uint16_t *)w + (size_t)j * ldw;
        float *dst = out + (size_t)j * ldo;
        for (int p = 0; p < kc; p += SKSTEP) {
            _mm_prefetch((const char *)(src + p) + DPF, _MM_HINT_T0);
            __m512 lo, hi;
            if (kc - p >= SKSTEP)
                split_w(_mm512_loadu_si512(src + p), &lo, &hi);
            else
                split_w(_mm512_maskz_loadu_epi16((__mmask32)((1u << (kc - p)) - 1), src + p), &lo,
                        &hi);
            _mm512_storeu_ps(dst + p, lo);
            _mm512_storeu_ps(dst + p + 16, hi);
        }
    }
}

const tw_dot_kernels tw_dot_kernels_avx512split = {.name = "avx512",
                                                   .path = "dot/avx512-split",
                                                   .w_dtypes = TW_DOT_BF16,
                                                   .kstep = SKSTEP,
                                                   .xsize = sizeof(float),
                                                   .pack_x = pack_x_split,
                                                   .rm = 4,
                                                   .rn = 6,
                                                   .rn_small = 8,
                                                   .max_m_bf16 = 1024,
                                                   .max_m_f32 = 0,
                                                   .tile = dot_tile_split,
                                                   .widen_panel = widen_panel_split,
                                                   .tile_pf = dot_tile_pf_split};

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
