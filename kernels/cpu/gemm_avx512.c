/* AVX-512F GEMM kernels (compiled with AVX-512 flags; only called when CPUID and the OS's XSAVE
 * state allow): a 6x32 micro-kernel for the packed path and a skinny (GEMV) kernel streaming
 * fp32 or bf16 weight rows once for up to 4 rows of x. Deliberately simple. */
#include "gemm_internal.h"

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

static inline __m512 load_w16(const void *w, int bf16, size_t p) {
    if (bf16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)w + p);
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

/* One weight row at a time against up to 4 rows of x (4 accumulators). */
static void skinny_avx512(int m, int n, int k, const float *x, size_t ldx, const void *w, int bf16,
                          float *y, size_t ldy, int add) {
    const size_t wrow = (size_t)k * (bf16 ? 2 : 4);
    for (int j = 0; j < n; j++) {
        const void *wj = (const char *)w + j * wrow;
        __m512 acc[4];
        for (int i = 0; i < m; i++) acc[i] = _mm512_setzero_ps();
        int p = 0;
        for (; p + 16 <= k; p += 16) {
            __m512 wv = load_w16(wj, bf16, (size_t)p);
            for (int i = 0; i < m; i++)
                acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)i * ldx + p), wv, acc[i]);
        }
        for (int i = 0; i < m; i++) {
            float s = _mm512_reduce_add_ps(acc[i]);
            for (int q = p; q < k; q++) s += x[(size_t)i * ldx + q] * load_w1(wj, bf16, q);
            float *yij = y + (size_t)i * ldy + j;
            *yij = add ? *yij + s : s;
        }
    }
}

const tw_gemm_kernels tw_gemm_kernels_avx512 = {.name = "avx512",
                                                .mr = MR,
                                                .nr = NR,
                                                .ukr = ukr_avx512_6x32,
                                                .skinny = skinny_avx512,
                                                .pack_b = NULL,
                                                .pack_a = NULL};
