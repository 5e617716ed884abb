/* Private interface between the GEMM driver (gemm.c) and its SIMD kernels (gemm_avx2.c,
 * gemm_avx512.c). Not for use outside kernels/cpu. */
#ifndef TW_GEMM_INTERNAL_H
#define TW_GEMM_INTERNAL_H

#include <stddef.h>

#include "tw_cpu.h"

/* Register-blocked micro-kernel: c[mr, nr] (+)= a_panel . b_panel over kc.
 * a: packed A micro-panel [kc][mr]; b: packed B micro-panel [kc][nr] (64-byte aligned);
 * c: rows ldc apart. add = 0 overwrites c without reading it (it may hold NaN). */
typedef void (*tw_gemm_ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add);

/* Optional fast packing of one B micro-panel: bp[p, jj] = w[jj, p] for p < kc, jj < nr, from nr
 * full weight rows ldw elements apart (fp32 or bf16). Returns 0 when it does not handle the
 * case (the driver then packs in plain C). */
typedef int (*tw_gemm_pack_b_fn)(int kc, const void *w, int w_bf16, size_t ldw, float *bp);

/* Optional fast packing of one full A micro-panel: ap[p, ii] = x[ii, p] for p < kc, ii < mr.
 * May write up to 8 floats past the panel's end (the driver leaves that slack). Returns 0 when
 * it does not handle the case. */
typedef int (*tw_gemm_pack_a_fn)(int kc, const float *x, size_t ldx, float *ap);

typedef struct {
    const char *name;
    const char *path; /* "blocked/<name>" */
    int mr, nr;       /* micro-tile */
    int kc, mc;       /* blocking: kc x nr B micro-panel in L1, mc x kc A block in L2 */
    tw_gemm_ukr_fn ukr;
    tw_gemm_pack_b_fn pack_b; /* may be NULL */
    tw_gemm_pack_a_fn pack_a; /* may be NULL */
} tw_gemm_kernels;

#define TW_GEMM_SKINNY_ROWS 4 /* rows of x per skinny call */

/* ---- dot-product driver (gemm_dot.c) ------------------------------------------------------
 * Tiles of rm rows of x by rn rows of w, each output one accumulator with lanes along k; the
 * weights are read in place ([n, k] row-major, no packing), the activations optionally packed
 * once per call into the kernel's format (bf16 for the bf16 dot-product instructions).
 * tile: y[i, j] (+)= sum_{p < kc} xp[i, p] w[j, p] for i < rm, j < rn; xp rows ldxp elements
 * apart and zero-padded up to a multiple of kstep past the end of x's row; w rows ldw apart.
 * Every output gets the same arithmetic whatever the tile shape, so results do not depend on
 * the tiling, the thread count or the other rows of the batch. */
typedef void (*tw_dot_tile_fn)(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                               int wflags, size_t ldw, float *y, size_t ldy, int add);
/* Cache lines [lo, hi) of a block of weights (rows rows ld bytes apart, lpr lines per row from
 * the line holding base), numbered column by column (line i: row i % rows, line i / rows of
 * it), the order the block's first tile will read them: what a tile prefetches into the cache
 * while it computes, so that the next block's weights stream from memory during this block's
 * arithmetic instead of after it. */
typedef struct {
    const char *base;
    size_t ld;
    int rows, lpr, lo, hi;
} tw_dot_prefetch;
typedef void (*tw_dot_tile_pf_fn)(int rm, int rn, int kc, const void *xp, size_t ldxp,
                                  const void *w, int wflags, size_t ldw, float *y, size_t ldy,
                                  int add, const tw_dot_prefetch *pf);
/* A tile's walk over the lines of pf (the next block's weights, tile_pf), spread evenly over its
 * nstep k steps: tw_pf_step issues the step's share (locality 2: prefetcht1 on x86), line by
 * line in pf's order. */
typedef struct {
    const tw_dot_prefetch *pf;
    int line, row, col, per;
} tw_pf_cursor;

static inline __attribute__((always_inline)) tw_pf_cursor tw_pf_start(const tw_dot_prefetch *pf,
                                                                      int nstep) {
    tw_pf_cursor c = {pf, 0, 0, 0, 0};
    if (pf && pf->hi > pf->lo && nstep > 0) {
        c.line = pf->lo, c.row = pf->lo % pf->rows, c.col = pf->lo / pf->rows;
        c.per = (pf->hi - pf->lo + nstep - 1) / nstep;
    }
    return c;
}

static inline __attribute__((always_inline)) void tw_pf_step(tw_pf_cursor *c) {
    for (int i = 0; i < c->per && c->line < c->pf->hi; i++, c->line++) {
        __builtin_prefetch(c->pf->base + (size_t)c->row * c->pf->ld + (size_t)c->col * 64, 0, 2);
        if (++c->row == c->pf->rows) c->row = 0, c->col++;
    }
}

#define TW_DOT_W_BF16     1 /* wflags: weights are bf16 (else fp32) */
#define TW_DOT_W_RESIDENT 2 /* wflags: weights are a copy already in L1 (not prefetched) */

#define TW_DOT_BF16 1 /* w_dtypes bits */
#define TW_DOT_F32  2

typedef struct {
    const char *name;
    const char *path; /* "dot/<name>" */
    int w_dtypes;     /* TW_DOT_* the tile accepts */
    int kstep;        /* k granularity of packed activations (elements) */
    size_t xsize;     /* bytes per packed activation element; 0: x is used in place (fp32) */
    /* one row: k fp32 values -> ceil(k / kstep) * kstep packed elements, zero-padded */
    void (*pack_x)(int k, const float *x, void *xp);
    int rm; /* largest tile: rm x rn, or 2 x rn_small for small m (small_m_max) */
    int rn;
    int rn_small; /* rn for small m (decode): more weight rows streamed side by side */
    /* the largest m that takes 2 x rn_small tiles (0: 8); a kernel whose 2-row tiles have too
     * few accumulators to keep the FMA pipes busy takes its rm-row tiles sooner */
    int small_m_max;
    /* largest m this driver takes per weight dtype; above, the blocked path is faster
     * (measured: packing W once pays off only over enough rows) */
    int max_m_bf16, max_m_f32;
    /* k block (0: TW_DOT_KC, 1024): the lanes of an output are summed and added into y once per
     * block, so it fixes the arithmetic; a kernel whose tiles read weights from L2 anyway takes
     * longer blocks (fewer horizontal sums and stores per multiply-add) */
    int kc;
    tw_dot_tile_fn tile;
    /* optional, bf16 weights: an fp32 copy of the rn x kc micro-panel, rows ldo apart (ldo: kc
     * rounded up to kstep), in the order the tile reads it: out[j, p] = (float)w[j, p] for the
     * kernels that keep k in order, the kernel's own order otherwise. The driver then runs the
     * tiles on this copy (wflags TW_DOT_W_RESIDENT) when several tiles share the micro-panel.
     * The tile must give bitwise the same results on the copy as on the bf16 original. */
    void (*widen_panel)(int rn, int kc, const void *w, size_t ldw, float *out, size_t ldo);
    /* optional, bf16 weights (in memory, or the fp32 copy of widen_panel): tile with the lines
     * of pf (the next block's bf16 weights in memory) prefetched as it goes; the same
     * arithmetic as tile */
    tw_dot_tile_pf_fn tile_pf;
} tw_dot_kernels;

/* y = x . w^T with the dot driver; threads >= 1. */
tw_status tw_gemm_dot(const tw_dot_kernels *kn, const tw_gemm_args *a, int threads);

#define TW_DOT_RN_MAX 8 /* largest rn (or rn_small) of any kernel */

/* The tile shapes every dot kernel instantiates: rm 1..4 x rn 1..6, and rn 7..8 for rm <= 2
 * (rn_small); X(RM, RN) defines P##_RMxRN, TW_DOT_TABLE(T, P) collects them in P##s[rm][rn]. */
#define TW_DOT_FOR_SHAPES(X)                                                                       \
    X(1, 1)                                                                                        \
    X(1, 2)                                                                                        \
    X(1, 3)                                                                                        \
    X(1, 4)                                                                                        \
    X(1, 5) X(1, 6) X(1, 7) X(1, 8) X(2, 1) X(2, 2) X(2, 3) X(2, 4) X(2, 5) X(2, 6) X(2, 7)        \
        X(2, 8) X(3, 1) X(3, 2) X(3, 3) X(3, 4) X(3, 5) X(3, 6) X(4, 1) X(4, 2) X(4, 3) X(4, 4)    \
            X(4, 5) X(4, 6)
#define TW_DOT_TABLE(T, P)                                                                         \
    static const T P##s[5][9] = {                                                                  \
        {0},                                                                                       \
        {0, P##_1x1, P##_1x2, P##_1x3, P##_1x4, P##_1x5, P##_1x6, P##_1x7, P##_1x8},               \
        {0, P##_2x1, P##_2x2, P##_2x3, P##_2x4, P##_2x5, P##_2x6, P##_2x7, P##_2x8},               \
        {0, P##_3x1, P##_3x2, P##_3x3, P##_3x4, P##_3x5, P##_3x6, 0, 0},                           \
        {0, P##_4x1, P##_4x2, P##_4x3, P##_4x4, P##_4x5, P##_4x6, 0, 0},                           \
    }

/* A tile adapter over a skinny kernel (fp32 activations in place): SKINNY(m, n, k, x, ldx, w, ldw,
 * w_bf16, y, ldy, add) computes y[i, j] (+)= sum_{p < k} x[i, p] w[j, p] for i < m (1..4 rows of
 * x), j < n, w rows ldw elements apart, fp32 or bf16 (w_bf16 != 0), streaming each weight row once
 * for all m rows; every output gets the same arithmetic whatever m and n are (lanes along k, one
 * fixed horizontal sum), so a row's result does not depend on the rows computed with it. */
#define TW_DOT_FROM_SKINNY(NAME, SKINNY)                                                           \
    static void NAME(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,           \
                     int wflags, size_t ldw, float *y, size_t ldy, int add) {                      \
        SKINNY(rm, rn, kc, (const float *)xp, ldxp, w, ldw, wflags &TW_DOT_W_BF16, y, ldy, add);   \
    }

/* Peak loops (independent accumulator chains): run `iters` iterations, fold the result into
 * *sink (so nothing can be elided), return the flops performed (2 per multiply-add). */
double tw_peak_fma_portable(long iters, float *sink);
#if defined(TW_X86)
double tw_peak_fma_avx2(long iters, float *sink);
double tw_peak_fma_avx512(long iters, float *sink);
double tw_peak_dot_bf16_avx512(long iters, float *sink);
double tw_peak_amx_bf16(long iters, float *sink);
/* AMX: ask Linux for the tile data state (1: granted); the GEMM (gemm_amx.c) */
int tw_amx_request(void);
tw_status tw_gemm_amx(const tw_gemm_args *a, int threads);
#endif
#if defined(__aarch64__) && defined(TW_NEON)
double tw_peak_fma_neon(long iters, float *sink);
double tw_peak_dot_bf16_neon(long iters, float *sink);
#endif

extern const tw_gemm_kernels tw_gemm_kernels_portable;
extern const tw_dot_kernels tw_dot_kernels_portable;
#if defined(TW_X86)
extern const tw_gemm_kernels tw_gemm_kernels_avx2;
extern const tw_gemm_kernels tw_gemm_kernels_avx512;
extern const tw_gemm_kernels tw_gemm_kernels_avx512_l1_32k;
extern const tw_dot_kernels tw_dot_kernels_avx2;
extern const tw_dot_kernels tw_dot_kernels_avx512;
extern const tw_dot_kernels tw_dot_kernels_avx512split;
extern const tw_dot_kernels tw_dot_kernels_avx512bf16;
#endif
#if defined(__aarch64__) && defined(TW_NEON)
extern const tw_dot_kernels tw_dot_kernels_neon;
extern const tw_dot_kernels tw_dot_kernels_neonbf16;
#endif

#endif
