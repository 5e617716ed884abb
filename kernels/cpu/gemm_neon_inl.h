/* NEON helpers shared by gemm_neon.c and gemm_neonbf16.c. Private to kernels/cpu. */
#ifndef TW_GEMM_NEON_INL_H
#define TW_GEMM_NEON_INL_H

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

static inline float tw_neon_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The four sums of a, b, c, d (4 lanes each), every one by the tree (v0 + v1) + (v2 + v3):
 * the same whatever tile shape an output was computed in. */
static inline __attribute__((always_inline)) float32x4_t
tw_neon_hsum4x4(float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d) {
    return vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
}

static inline __attribute__((always_inline)) void tw_neon_store4(float32x4_t a, float32x4_t b,
                                                                 float32x4_t c, float32x4_t d,
                                                                 int cnt, float *y, int add) {
    float s[4];
    vst1q_f32(s, tw_neon_hsum4x4(a, b, c, d));
    for (int i = 0; i < cnt; i++) y[i] = add ? y[i] + s[i] : s[i];
}

/* Reduces one tile row's accumulators (A)[0 .. RN-1] into y[0 .. RN-1] (+)=. */
#define TW_NEON_STORE_ROW(RN, A, Y, ADD)                                                           \
    do {                                                                                           \
        const float32x4_t z_ = vdupq_n_f32(0.0f);                                                  \
        tw_neon_store4((A)[0], (RN) > 1 ? (A)[1] : z_, (RN) > 2 ? (A)[2] : z_,                     \
                       (RN) > 3 ? (A)[3] : z_, (RN) < 4 ? (RN) : 4, (Y), (ADD));                   \
        if ((RN) > 4)                                                                              \
            tw_neon_store4((A)[4], (RN) > 5 ? (A)[5] : z_, (RN) > 6 ? (A)[6] : z_,                 \
                           (RN) > 7 ? (A)[7] : z_, (RN)-4, (Y) + 4, (ADD));                        \
    } while (0)

#endif
