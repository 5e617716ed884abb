/* CPU kernels: the reference backend. C11 + OpenMP; SIMD paths chosen at run time from CPUID.
 * Every function takes `threads` (0 = all cores) and returns TW_ERR_INVALID, naming the
 * argument, on a bad shape. Shapes and layouts are those of tw_backend.h. */
#ifndef TW_CPU_H
#define TW_CPU_H

#include "tw_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- SIMD dispatch ---------------------------------------------------------------------- */
typedef enum { TW_SIMD_PORTABLE = 0, TW_SIMD_AVX2 = 1, TW_SIMD_AVX512 = 2 } tw_simd;

/* Best level this CPU and this build support (CPUID and OS XSAVE state checked). */
tw_simd tw_cpu_simd_detect(void);
/* Level the kernels use: the detected one, or a lower one forced by tw_cpu_simd_force or the
 * TW_SIMD environment variable ("portable", "avx2", "avx512"). Forcing a level the CPU lacks
 * returns TW_ERR_UNSUPPORTED. */
tw_simd tw_cpu_simd_active(void);
tw_status tw_cpu_simd_force(tw_simd level);
const char *tw_simd_name(tw_simd level);
/* Comma-separated CPU features relevant here ("avx2,fma,f16c,avx512f,..."). */
const char *tw_cpu_features(void);
int tw_cpu_threads(int requested); /* resolves 0 to the core count */

/* ---- GEMM: y[m,n] = x[m,k] . w[n,k]^T ------------------------------------------------------ */
tw_status gemm_f32_cpu(const tw_gemm_args *a, int threads);  /* w_dtype must be TW_F32 */
tw_status gemm_bf16_cpu(const tw_gemm_args *a, int threads); /* w_dtype must be TW_BF16 */
tw_status gemm_cpu(const tw_gemm_args *a, int threads);      /* dispatches on w_dtype */

/* ---- attention ------------------------------------------------------------------------------ */
tw_status attn_prefill_cpu(const tw_attn_prefill_args *a, int threads);
tw_status attn_decode_cpu(const tw_attn_decode_args *a, int threads);
tw_status kv_store_cpu(const tw_kv_store_args *a, int threads);
/* paged KV cache through block tables (attn_paged_cpu.c) */
tw_status attn_prefill_paged_cpu(const tw_attn_paged_args *a, int threads);
tw_status attn_decode_paged_cpu(const tw_attn_paged_args *a, int threads);
tw_status kv_store_paged_cpu(const tw_kv_store_paged_args *a, int threads);

/* ---- element-wise and row ops ---------------------------------------------------------------- */
tw_status rmsnorm_cpu(int rows, int dim, const float *x, const void *w, tw_dtype w_dtype, float eps,
                      float *y, int threads);
tw_status rope_cpu(int tokens, int n_heads, int head_dim, float *x, int ldx, const int *positions,
                   const tw_rope_params *rp, int threads);
tw_status swiglu_cpu(int rows, int f, const float *gate, const float *up, int ld_in, float *out,
                     int threads);
tw_status add_cpu(size_t n, const float *x, float *y, int threads);
/* x[r, j] += b[j] (rows ldx apart, 0 = packed); b fp32 or bf16 */
tw_status bias_add_cpu(int rows, int n, float *x, int ldx, const void *b, tw_dtype b_dtype,
                       int threads);
tw_status embed_cpu(int n, const int *tokens, const void *table, tw_dtype dtype, int row0, int rows,
                    int dim, float *out, int threads);
tw_status argmax_cpu(int rows, int n, const float *logits, int *idx, float *val, int threads);
/* per-head RMSNorm in place (tw_backend_ops.head_rmsnorm) */
tw_status head_rmsnorm_cpu(int rows, int n_heads, int dim, float *x, int ldx, const void *w,
                           tw_dtype w_dtype, float eps, int threads);

/* ---- mixture of experts and latent attention (moe_cpu.c, mla_cpu.c) ------------------------- */
tw_status moe_route_cpu(const tw_moe_route_args *a, int threads);
tw_status moe_ffn_cpu(const tw_moe_ffn_args *a, int threads);
tw_status mla_store_cpu(const tw_mla_store_args *a, int threads);
tw_status mla_attn_cpu(const tw_mla_attn_args *a, int threads);

/* bf16 <-> fp32 array conversion (round to nearest even) */
void tw_bf16_from_f32_array(tw_bf16 *dst, const float *src, size_t n);
void tw_f32_from_bf16_array(float *dst, const tw_bf16 *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
