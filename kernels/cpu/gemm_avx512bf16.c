/* AVX512_BF16 GEMM kernels for bf16 weights (compiled with -mavx512bf16; only called when
 * CPUID says the CPU has it): `vdpbf16ps` dot products, 32 bf16 of k per instruction.
 *
 * Numerics: the activations are rounded to bf16 (round to nearest even, `vcvtne2ps2bf16`,
 * which also flushes fp32 subnormals to zero) once per GEMM call; each product of two bf16 is
 * exact in fp32 and `vdpbf16ps` adds the two products of a lane pair into the fp32 accumulator
 * with round-to-nearest-even and subnormal flushing (DAZ/FTZ, whatever MXCSR says). Lane l of
 * an accumulator sums k = 32s + 2l and 32s + 2l + 1 over the steps s of a k block; the 16 lanes
 * are summed by tw_hsum4x16's fixed tree, and the blocks are added into y in k order.
 *
 * The weights are read in their checkpoint layout ([n, k] row-major): no packing. A tile is
 * rm rows of x by rn rows of w, each output one accumulator vector, so a tile reads rm + rn
 * vectors per rm * rn dot products (4 x 6: 10 loads per 24 `vdpbf16ps`). k blocks of 8192: the
 * micro-panel comes from L2 (prefetched there by the tiles before it, tile_pf), and one
 * horizontal sum per output per 8192 of k instead of per 1024 (Zen 4, 2026-12-03: 0.86x the
 * time of 1024 at 512 x 2048 x 8192, and faster at m = 16 and 64). */
#include "gemm_internal.h"
#include "gemm_avx512_inl.h"

#include <immintrin.h>
#include <limits.h>
#include <stdint.h>

#define KSTEP 32   /* bf16 per vector */
#define PF    1024 /* bytes ahead each weight row is prefetched */

/* One row of x: k fp32 -> kp = ceil(k / 32) * 32 bf16, zero-padded. */
static void pack_x_bf16(int k, const float *x, void *xp) {
    tw_bf16 *o = (tw_bf16 *)xp;
    int p = 0;
    for (; p + KSTEP <= k; p += KSTEP) {
        __m512 lo = _mm512_loadu_ps(x + p), hi = _mm512_loadu_ps(x + p + 16);
        _mm512_storeu_si512((void *)(o + p), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    if (p < k) {
        int r = k - p;
        __mmask16 mlo = (__mmask16)(r >= 16 ? 0xffff : (1u << r) - 1);
        __mmask16 mhi = (__mmask16)(r > 16 ? (1u << (r - 16)) - 1 : 0);
        __m512 lo = _mm512_maskz_loadu_ps(mlo, x + p), hi = _mm512_maskz_loadu_ps(mhi, x + p + 16);
        _mm512_storeu_si512((void *)(o + p), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

static inline __attribute__((always_inline)) void
tile_bf16(const int RM, const int RN, int kc, const tw_bf16 *x, size_t ldx, const tw_bf16 *w,
          size_t ldw, float *y, size_t ldy, int add, const tw_dot_prefetch *pf) {
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    const int nfull = kc / KSTEP, tail = kc % KSTEP;
    const tw_bf16 *wr[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) wr[j] = w + (size_t)j * ldw;
    tw_pf_cursor pc = tw_pf_start(pf, nfull); /* the prefetch lines, over the full steps */
    for (int s = 0; s < nfull; s++) {
        const size_t p = (size_t)s * KSTEP;
        tw_pf_step(&pc);
        __m512i wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            _mm_prefetch((const char *)(wr[j] + p) + PF, _MM_HINT_T0);
            wv[j] = _mm512_loadu_si512((const void *)(wr[j] + p));
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)i * ldx + p));
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
        }
    }
    if (tail) { /* the row's last partial step: x is zero-padded, w is masked */
        const size_t p = (size_t)nfull * KSTEP;
        const __mmask32 m = (__mmask32)((1u << tail) - 1);
        __m512i wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) wv[j] = _mm512_maskz_loadu_epi16(m, wr[j] + p);
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)i * ldx + p));
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) TW_STORE_ROW16(RN, acc[i], y + (size_t)i * ldy, add);
}

#define TW_TILE(RM, RN)                                                                            \
    static void tile_##RM##x##RN(int kc, const tw_bf16 *x, size_t ldx, const tw_bf16 *w,           \
                                 size_t ldw, float *y, size_t ldy, int add,                        \
                                 const tw_dot_prefetch *pf) {                                      \
        tile_bf16(RM, RN, kc, x, ldx, w, ldw, y, ldy, add, pf);                                    \
    }

typedef void (*tile_fn)(int, const tw_bf16 *, size_t, const tw_bf16 *, size_t, float *, size_t, int,
                        const tw_dot_prefetch *);
TW_DOT_FOR_SHAPES(TW_TILE)
TW_DOT_TABLE(tile_fn, tile);

static void dot_tile_bf16(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                          int wflags, size_t ldw, float *y, size_t ldy, int add) {
    (void)wflags; /* bf16 weights in memory only (the driver checks) */
    tiles[rm][rn](kc, (const tw_bf16 *)xp, ldxp, (const tw_bf16 *)w, ldw, y, ldy, add, NULL);
}

static void dot_tile_pf_bf16(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                             int wflags, size_t ldw, float *y, size_t ldy, int add,
                             const tw_dot_prefetch *pf) {
    (void)wflags; /* bf16 weights in memory only (no widen_panel) */
    tiles[rm][rn](kc, (const tw_bf16 *)xp, ldxp, (const tw_bf16 *)w, ldw, y, ldy, add, pf);
}

const tw_dot_kernels tw_dot_kernels_avx512bf16 = {.name = "avx512bf16",
                                                  .path = "dot/avx512bf16",
                                                  .w_dtypes = TW_DOT_BF16,
                                                  .kstep = KSTEP,
                                                  .xsize = sizeof(tw_bf16),
                                                  .pack_x = pack_x_bf16,
                                                  .rm = 4,
                                                  .rn = 6,
                                                  .rn_small = 8,
                                                  .max_m_bf16 = INT_MAX,
                                                  .max_m_f32 = 0,
                                                  .kc = 8192,
                                                  .tile = dot_tile_bf16,
                                                  .tile_pf = dot_tile_pf_bf16};

/* ---- peak loop: 16 independent `vdpbf16ps` chains (latency x throughput covered) ---------- */
double tw_peak_dot_bf16_avx512(long iters, float *sink) {
    __m512 a[16];
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80); /* 1.0, 1.0 */
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(*sink + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbf16_ps(a[i], x, x); /* a += 2: finite */
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    *sink += _mm512_reduce_add_ps(s);
    return (double)iters * 16 * 32 * 2; /* 32 bf16 products + adds per instruction */
}
