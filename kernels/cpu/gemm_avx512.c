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

/* ---- dot-product tiles (gemm_dot.c): fp32 activations, fp32 or bf16 weights ---------------
 * Lane l of an accumulator sums k = 16s + l over the steps s of a k block (the last step
 * masked), then tw_hsum4x16's fixed tree. bf16 weights are widened exactly (a bf16 is the top
 * half of a float), either in registers or, when several tiles share a weight micro-panel,
 * once into an fp32 copy of the panel (widen_panel): the same values either way, so the same
 * results. */
#define DKSTEP 16
#ifndef DPF
#define DPF 1024 /* bytes ahead each weight row is prefetched */
#endif

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
         size_t ldx, const void *w, size_t ldw, float *y, size_t ldy, int add,
         const tw_dot_prefetch *pf) {
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    const size_t wsz = BF16 ? 2 : 4, ldwb = ldw * wsz;
    const char *wb = (const char *)w;
    /* the next block's lines (tile_pf), spread evenly over the k steps: pf_per lines per step */
    const int nfull = kc / DKSTEP;
    int pf_line = 0, pf_row = 0, pf_col = 0, pf_per = 0;
    if (pf && pf->hi > pf->lo && nfull > 0) {
        pf_line = pf->lo, pf_row = pf->lo % pf->rows, pf_col = pf->lo / pf->rows;
        pf_per = (pf->hi - pf->lo + nfull - 1) / nfull;
    }
    int p = 0;
    for (; p + DKSTEP <= kc; p += DKSTEP) {
        for (int c = 0; c < pf_per && pf_line < pf->hi; c++, pf_line++) {
            _mm_prefetch(pf->base + (size_t)pf_row * pf->ld + (size_t)pf_col * 64, _MM_HINT_T1);
            if (++pf_row == pf->rows) pf_row = 0, pf_col++;
        }
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

/* Variants: v 0 = fp32 weights streamed, 1 = bf16 weights streamed (pf: the next block's lines
 * to prefetch, or NULL), 2 = fp32 copy in L1. */
#define TW_DTILE(RM, RN)                                                                           \
    static void dtile_##RM##x##RN(int v, int kc, const float *x, size_t ldx, const void *w,        \
                                  size_t ldw, float *y, size_t ldy, int add,                       \
                                  const tw_dot_prefetch *pf) {                                     \
        if (v == 1)                                                                                \
            dot_tile(RM, RN, 1, 1, kc, x, ldx, w, ldw, y, ldy, add, pf);                           \
        else if (v == 0)                                                                           \
            dot_tile(RM, RN, 0, 1, kc, x, ldx, w, ldw, y, ldy, add, NULL);                         \
        else                                                                                       \
            dot_tile(RM, RN, 0, 0, kc, x, ldx, w, ldw, y, ldy, add, NULL);                         \
    }

typedef void (*dtile_fn)(int, int, const float *, size_t, const void *, size_t, float *, size_t,
                         int, const tw_dot_prefetch *);
TW_DOT_FOR_SHAPES(TW_DTILE)
TW_DOT_TABLE(dtile_fn, dtile);

static void dot_tile_avx512(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                            int wflags, size_t ldw, float *y, size_t ldy, int add) {
    int v = (wflags & TW_DOT_W_RESIDENT) ? 2 : (wflags & TW_DOT_W_BF16) ? 1 : 0;
    dtiles[rm][rn](v, kc, (const float *)xp, ldxp, w, ldw, y, ldy, add, NULL);
}

/* bf16 weights in memory, the next block's lines prefetched into L2 as the tile goes: the same
 * arithmetic as dot_tile_avx512's */
static void dot_tile_pf_avx512(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                               size_t ldw, float *y, size_t ldy, int add,
                               const tw_dot_prefetch *pf) {
    dtiles[rm][rn](1, kc, (const float *)xp, ldxp, w, ldw, y, ldy, add, pf);
}

/* out[j, p] = (float)w[j, p] for j < rn, p < kc (rows kc apart) */
static void widen_panel_avx512(int rn, int kc, const void *w, size_t ldw, float *out) {
    for (int j = 0; j < rn; j++) {
        const uint16_t *src = (const uint16_t *)w + (size_t)j * ldw;
        float *dst = out + (size_t)j * kc;
        int p = 0;
        for (; p + 16 <= kc; p += 16) {
            if ((p & 31) == 0) _mm_prefetch((const char *)(src + p) + DPF, _MM_HINT_T0);
            _mm512_storeu_ps(dst + p, dot_load_w(src, 1, (size_t)p, 0xffff));
        }
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
                                              .w_dtypes = TW_DOT_BF16 | TW_DOT_F32,
                                              .kstep = DKSTEP,
                                              .xsize = 0,
                                              .pack_x = NULL,
                                              .rm = 4,
                                              .rn = 6,
                                              .rn_small = 8,
                                              .max_m_bf16 = 1024,
                                              .max_m_f32 = 256,
                                              .tile = dot_tile_avx512,
                                              .widen_panel = widen_panel_avx512,
                                              .tile_pf = dot_tile_pf_avx512};

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
