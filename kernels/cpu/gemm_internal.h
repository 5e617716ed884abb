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
    int mr, nr; /* micro-tile */
    tw_gemm_ukr_fn ukr;
    tw_gemm_skinny_fn skinny;
    tw_gemm_pack_b_fn pack_b; /* may be NULL */
    tw_gemm_pack_a_fn pack_a; /* may be NULL */
} tw_gemm_kernels;

#define TW_GEMM_SKINNY_ROWS 4 /* rows of x per skinny call */

extern const tw_gemm_kernels tw_gemm_kernels_portable;
#if defined(TW_X86)
extern const tw_gemm_kernels tw_gemm_kernels_avx2;
extern const tw_gemm_kernels tw_gemm_kernels_avx512;
#endif

#endif
