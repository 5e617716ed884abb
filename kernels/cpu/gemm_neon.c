/* AArch64 Advanced SIMD (NEON) kernels: the dot-product tiles of gemm_dot.c for fp32 and bf16
 * weights with fp32 activations (every AArch64 CPU has NEON), the fp32 FMA peak loop and the
 * 4-lane horizontal sums shared with gemm_neonbf16.c. Built on aarch64 only.
 *
 * Numerics: lane l of an accumulator sums k = 4s + l over the steps s of a k block (the
 * block's last partial step zero-padded through a small copy), then the fixed pairwise tree
 * (v0 + v1) + (v2 + v3) (tw_neon_hsum4x4), whatever the tile shape. bf16 weights are widened
 * exactly (shift left by 16). */
#include "gemm_internal.h"
#include "gemm_neon_inl.h"

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#define KSTEP 4
#define PF    1024 /* bytes ahead each weight row is prefetched */

static inline __attribute__((always_inline)) float32x4_t load_w4(const void *w, int bf16,
                                                                 size_t p) {
    if (bf16) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)w + p), 16));
    return vld1q_f32((const float *)w + p);
}

static inline __attribute__((always_inline)) void neon_tile(const int RM, const int RN,
                                                            const int BF16, int kc, const float *x,
                                                            size_t ldx, const void *w, size_t ldw,
                                                            float *y, size_t ldy, int add) {
    float32x4_t acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = vdupq_n_f32(0.0f);
    const size_t wsz = BF16 ? 2 : 4, ldwb = ldw * wsz;
    const char *wb = (const char *)w;
    int p = 0;
    for (; p + KSTEP <= kc; p += KSTEP) {
        float32x4_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            if ((p & 15) == 0) __builtin_prefetch(wb + j * ldwb + (size_t)p * wsz + PF);
            wv[j] = load_w4(wb + j * ldwb, BF16, (size_t)p);
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            float32x4_t xv = vld1q_f32(x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
    if (p < kc) { /* last partial step: zero-padded copies of both sides */
        const int r = kc - p;
        float32x4_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            float t[4] = {0, 0, 0, 0};
            for (int q = 0; q < r; q++)
                t[q] = BF16 ? tw_neon_bf16_to_f32(((const uint16_t *)(wb + j * ldwb))[p + q])
                            : ((const float *)(wb + j * ldwb))[p + q];
            wv[j] = vld1q_f32(t);
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            float t[4] = {0, 0, 0, 0};
            memcpy(t, x + (size_t)i * ldx + p, sizeof(float) * (size_t)r);
            float32x4_t xv = vld1q_f32(t);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) TW_NEON_STORE_ROW(RN, acc[i], y + (size_t)i * ldy, add);
}

/* variants: 0 fp32 weights, 1 bf16 weights (a resident fp32 copy is variant 0) */
#define TW_NTILE(RM, RN)                                                                           \
    static void ntile_##RM##x##RN(int v, int kc, const float *x, size_t ldx, const void *w,        \
                                  size_t ldw, float *y, size_t ldy, int add) {                     \
        if (v)                                                                                     \
            neon_tile(RM, RN, 1, kc, x, ldx, w, ldw, y, ldy, add);                                 \
        else                                                                                       \
            neon_tile(RM, RN, 0, kc, x, ldx, w, ldw, y, ldy, add);                                 \
    }

typedef void (*ntile_fn)(int, int, const float *, size_t, const void *, size_t, float *, size_t,
                         int);
TW_DOT_FOR_SHAPES(TW_NTILE)
TW_DOT_TABLE(ntile_fn, ntile);

static void dot_tile_neon(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                          int wflags, size_t ldw, float *y, size_t ldy, int add) {
    ntiles[rm][rn]((wflags & TW_DOT_W_BF16) ? 1 : 0, kc, (const float *)xp, ldxp, w, ldw, y, ldy,
                   add);
}

static void widen_panel_neon(int rn, int kc, const void *w, size_t ldw, float *out, size_t ldo) {
    for (int j = 0; j < rn; j++) {
        const uint16_t *src = (const uint16_t *)w + (size_t)j * ldw;
        float *dst = out + (size_t)j * ldo;
        int p = 0;
        for (; p + 4 <= kc; p += 4) vst1q_f32(dst + p, load_w4(src, 1, (size_t)p));
        for (; p < kc; p++) dst[p] = tw_neon_bf16_to_f32(src[p]);
    }
}

const tw_dot_kernels tw_dot_kernels_neon = {.name = "neon",
                                            .path = "dot/neon",
                                            .w_dtypes = TW_DOT_BF16 | TW_DOT_F32,
                                            .kstep = KSTEP,
                                            .xsize = 0,
                                            .pack_x = NULL,
                                            .rm = 4,
                                            .rn = 6,
                                            .rn_small = 8,
                                            .max_m_bf16 = 64,
                                            .max_m_f32 = 64,
                                            .tile = dot_tile_neon,
                                            .widen_panel = widen_panel_neon};

/* ---- peak loop: 16 independent FMA chains ------------------------------------------------- */
double tw_peak_fma_neon(long iters, float *sink) {
    const float32x4_t m = vdupq_n_f32(0.999999f), add = vdupq_n_f32(1e-7f);
    float32x4_t a[16];
    for (int i = 0; i < 16; i++) a[i] = vdupq_n_f32(*sink + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = vfmaq_f32(add, a[i], m);
    }
    float32x4_t s = a[0];
    for (int i = 1; i < 16; i++) s = vaddq_f32(s, a[i]);
    *sink += vaddvq_f32(s);
    return (double)iters * 16 * 4 * 2;
}
