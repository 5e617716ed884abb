/* Private to kernels/cpu: x86 helpers shared by the AVX2 and AVX-512 attention loops (both files
 * are compiled with at least -mavx2 -mfma). */
#ifndef TW_ATTN_X86_INL_H
#define TW_ATTN_X86_INL_H

#include <immintrin.h>

/* Horizontal sums of 8 vectors at once: lane j of the result is the sum of v[j]. Three rounds
 * of hadd plus one cross-lane add instead of eight separate reductions. */
static inline __m256 tw_hsum8x8(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5,
                                __m256 v6, __m256 v7) {
    __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v4, v5), _mm256_hadd_ps(v6, v7));
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

#endif
