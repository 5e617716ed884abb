/* AArch64 BF16 (FEAT_BF16) kernels for bf16 weights (compiled with -march=armv8.6-a+bf16; only
 * called when getauxval(AT_HWCAP2) has HWCAP2_BF16): BFDOT dot products, 8 bf16 of k per
 * instruction, and the BFDOT peak loop.
 *
 * Numerics: the activations are rounded to bf16 once per GEMM call (BFCVTN: round to nearest
 * even under the default FPCR); BFDOT adds the two products of each lane pair into the fp32
 * accumulator with the architecture's own BFDOT rounding (without FEAT_EBF16: products and
 * their sum without intermediate IEEE rounding steps, subnormals flushed; see the Arm ARM), so
 * results differ from the x86 `vdpbf16ps` path in the last bits; both are checked against
 * float64 at bf16 tolerance. Lane l sums k = 8s + 2l, 8s + 2l + 1 over the steps s of a k block,
 * then tw_neon_hsum4x4's fixed tree. */
#include "gemm_internal.h"
#include "gemm_neon_inl.h"

#include <arm_neon.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define KSTEP 8
#define PF    1024

static void pack_x_neonbf16(int k, const float *x, void *xp) {
    uint16_t *o = (uint16_t *)xp;
    int p = 0;
    for (; p + KSTEP <= k; p += KSTEP) {
        bfloat16x8_t v = vcvtq_low_bf16_f32(vld1q_f32(x + p));
        v = vcvtq_high_bf16_f32(v, vld1q_f32(x + p + 4));
        vst1q_u16(o + p, vreinterpretq_u16_bf16(v));
    }
    if (p < k) {
        float t[KSTEP] = {0};
        memcpy(t, x + p, sizeof(float) * (size_t)(k - p));
        bfloat16x8_t v = vcvtq_low_bf16_f32(vld1q_f32(t));
        v = vcvtq_high_bf16_f32(v, vld1q_f32(t + 4));
        vst1q_u16(o + p, vreinterpretq_u16_bf16(v));
    }
}

static inline __attribute__((always_inline)) void bfdot_tile(const int RM, const int RN, int kc,
                                                             const uint16_t *x, size_t ldx,
                                                             const uint16_t *w, size_t ldw,
                                                             float *y, size_t ldy, int add) {
    float32x4_t acc[4][8];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int p = 0;
    for (; p + KSTEP <= kc; p += KSTEP) {
        bfloat16x8_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            if ((p & 31) == 0) __builtin_prefetch(w + (size_t)j * ldw + p + PF / 2);
            wv[j] = vreinterpretq_bf16_u16(vld1q_u16(w + (size_t)j * ldw + p));
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            bfloat16x8_t xv = vreinterpretq_bf16_u16(vld1q_u16(x + (size_t)i * ldx + p));
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = vbfdotq_f32(acc[i][j], xv, wv[j]);
        }
    }
    if (p < kc) { /* last partial step: x is zero-padded, w through a zero-padded copy */
        bfloat16x8_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            uint16_t t[KSTEP] = {0};
            memcpy(t, w + (size_t)j * ldw + p, sizeof(uint16_t) * (size_t)(kc - p));
            wv[j] = vreinterpretq_bf16_u16(vld1q_u16(t));
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            bfloat16x8_t xv = vreinterpretq_bf16_u16(vld1q_u16(x + (size_t)i * ldx + p));
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = vbfdotq_f32(acc[i][j], xv, wv[j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) TW_NEON_STORE_ROW(RN, acc[i], y + (size_t)i * ldy, add);
}

#define TW_BTILE(RM, RN)                                                                           \
    static void btile_##RM##x##RN(int kc, const uint16_t *x, size_t ldx, const uint16_t *w,        \
                                  size_t ldw, float *y, size_t ldy, int add) {                     \
        bfdot_tile(RM, RN, kc, x, ldx, w, ldw, y, ldy, add);                                       \
    }

typedef void (*btile_fn)(int, const uint16_t *, size_t, const uint16_t *, size_t, float *, size_t,
                         int);
TW_DOT_FOR_SHAPES(TW_BTILE)
TW_DOT_TABLE(btile_fn, btile);

static void dot_tile_neonbf16(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                              int wflags, size_t ldw, float *y, size_t ldy, int add) {
    (void)wflags; /* bf16 weights in memory only (the driver picks this table for bf16) */
    btiles[rm][rn](kc, (const uint16_t *)xp, ldxp, (const uint16_t *)w, ldw, y, ldy, add);
}

const tw_dot_kernels tw_dot_kernels_neonbf16 = {.name = "neonbf16",
                                                .path = "dot/neonbf16",
                                                .w_dtypes = TW_DOT_BF16,
                                                .kstep = KSTEP,
                                                .xsize = sizeof(uint16_t),
                                                .pack_x = pack_x_neonbf16,
                                                .rm = 4,
                                                .rn = 6,
                                                .rn_small = 8,
                                                .max_m_bf16 = INT_MAX,
                                                .max_m_f32 = 0,
                                                .tile = dot_tile_neonbf16};

/* ---- peak loop: 16 independent BFDOT chains -------------------------------------------------- */
double tw_peak_dot_bf16_neon(long iters, float *sink) {
    /* the empty asm keeps GCC 12 from materialising the constant with an FP16 fmov (which
     * needs +fp16) */
    uint16x8_t ones = vdupq_n_u16(0x3f80);
    __asm__("" : "+w"(ones));
    const bfloat16x8_t one = vreinterpretq_bf16_u16(ones);
    float32x4_t a[16];
    for (int i = 0; i < 16; i++) a[i] = vdupq_n_f32(*sink + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = vbfdotq_f32(a[i], one, one);
    }
    float32x4_t s = a[0];
    for (int i = 1; i < 16; i++) s = vaddq_f32(s, a[i]);
    *sink += vaddvq_f32(s);
    return (double)iters * 16 * 8 * 2;
}
