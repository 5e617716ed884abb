/* Private interface between the GEMM driver (gemm.c) and its SIMD kernels (gemm_avx2.c,
 * gemm_avx512.c). Not for use outside kernels/cpu. */
#ifndef TW_GEMM_INTERNAL_H
#define TW_GEMM_INTERNAL_H

#include <stddef.h>

/* Register-blocked micro-kernel: c[mr, nr] (+)= a_panel . b_panel over kc.
 * a: packed A micro-panel [kc][mr]; b: packed B micro-panel [kc][nr] (64-byte aligned);
 * c: rows ldc apart. add = 0 overwrites c without reading it (it may hold NaN). */
typedef void (*tw_gemm_ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add);

/* Skinny kernel for small m (1..4 rows of x): y[i, j] (+)= sum_p x[i, p] w[j, p] for
 * i < m, j < n; w rows are k elements apart (packed [n, k]), fp32 or bf16 (w_bf16 != 0).
 * Streams each weight row once for all m rows: the decode (GEMV) path. */
typedef void (*tw_gemm_skinny_fn)(int m, int n, int k, const float *x, size_t ldx, const void *w,
                                  int w_bf16, float *y, size_t ldy, int add);

typedef struct {
    const char *name;
    int mr, nr; /* micro-tile */
    tw_gemm_ukr_fn ukr;
    tw_gemm_skinny_fn skinny;
} tw_gemm_kernels;

#define TW_GEMM_SKINNY_ROWS 4 /* rows of x per skinny call */

extern const tw_gemm_kernels tw_gemm_kernels_portable;
#if defined(TW_X86)
extern const tw_gemm_kernels tw_gemm_kernels_avx2;
extern const tw_gemm_kernels tw_gemm_kernels_avx512;
#endif

#endif
