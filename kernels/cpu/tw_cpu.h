/* CPU kernels: the reference backend. C11, threads from tw_pool.h (OpenMP only for `omp simd`
 * hints); SIMD paths chosen at run time from CPUID.
 * Every function takes `threads` (0 = all cores) and returns TW_ERR_INVALID, naming the
 * argument, on a bad shape. Shapes and layouts are those of tw_backend.h. */
#ifndef TW_CPU_H
#define TW_CPU_H

#include "tw_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- SIMD dispatch ---------------------------------------------------------------------- */
/* x86 levels form one chain (portable < avx2 < avx512 < avx512bf16 < amx), aarch64's another
 * (portable < neon < neonbf16); a level may be forced down its own chain only. avx512bf16 adds
 * `vdpbf16ps` GEMMs for bf16 weights to avx512; amx adds AMX-BF16 tiles to that. */
typedef enum {
    TW_SIMD_PORTABLE = 0,
    TW_SIMD_AVX2 = 1,
    TW_SIMD_AVX512 = 2,
    TW_SIMD_AVX512BF16 = 3,
    TW_SIMD_AMX = 4,
    TW_SIMD_NEON = 16,
    TW_SIMD_NEONBF16 = 17,
} tw_simd;

/* Best level this CPU and this build support (CPUID and OS XSAVE state checked). */
tw_simd tw_cpu_simd_detect(void);
/* Level the free kernel entry points use (the process default state's; a CPU backend has its own,
 * tw_cpu_state_simd): the detected one, or one forced by tw_cpu_simd_force or the TW_SIMD
 * environment variable (a tw_simd_name) that the CPU supports (avx512bf16 can be forced where
 * detection chose avx512 because its dot product is the slower instruction). Forcing a level
 * the CPU lacks returns TW_ERR_UNSUPPORTED. */
tw_simd tw_cpu_simd_active(void);
tw_status tw_cpu_simd_force(tw_simd level);
/* Whether `level` is on this CPU's chain at or below the detected level. */
int tw_cpu_simd_supported(tw_simd level);
const char *tw_simd_name(tw_simd level);
/* Parses a tw_simd_name; TW_ERR_INVALID naming the accepted ones otherwise. */
tw_status tw_simd_parse(const char *s, tw_simd *out);
/* Comma-separated CPU features relevant here ("avx2,fma,f16c,avx512f,..."). */
const char *tw_cpu_features(void);
int tw_cpu_threads(int requested); /* resolves 0 to the core count */

/* ---- compute peaks and the bf16 path ------------------------------------------------------------
 * Independent-accumulator loops of each kind of multiply-add instruction, at the active level:
 *   TW_PEAK_FP32_FMA  fp32 FMA (vfmadd231ps zmm or ymm; plain C on the portable level)
 *   TW_PEAK_BF16_DOT  bf16 dot products (vdpbf16ps zmm; Arm BFDOT)
 *   TW_PEAK_BF16_AMX  AMX-BF16 tiles (tdpbf16ps)
 * tw_cpu_peak_loop runs `iters` iterations on the calling thread and returns the flops done
 * (2 per multiply-add), or 0 when the CPU, the OS or the active level lacks the instructions. */
typedef enum { TW_PEAK_FP32_FMA = 0, TW_PEAK_BF16_DOT = 1, TW_PEAK_BF16_AMX = 2 } tw_peak_kind;
double tw_cpu_peak_loop(tw_peak_kind kind, long iters, float *sink);
const char *tw_cpu_peak_method(tw_peak_kind kind); /* "vfmadd231ps zmm, 16 chains", or NULL */

/* Whether bf16-weight GEMMs use the bf16 dot-product instructions (activations rounded to
 * bf16), when the active level has them: only where they multiply-add faster than fp32 FMA on
 * widened weights. CPUID cannot say (on Zen 4 `vdpbf16ps` does twice the multiply-adds of an
 * FMA per cycle; on Sapphire Rapids half), so the first call times both loops for about 4 ms
 * (thread CPU time, 9 calls of each taken in turns, the best of each) and keeps the answer for
 * the process; the ratio is near 2 or 0.5, far from the 1.25 threshold. TW_BF16_DOT=0/1
 * overrides it. */
int tw_cpu_bf16_dot_preferred(void);
/* Measured multiply-add rate of the bf16 dot product over fp32 FMA (0 when not measured). */
double tw_cpu_bf16_dot_ratio(void);
/* Whether AMX tiles can be used here (CPUID, XSAVE state and Linux's arch_prctl permission). */
int tw_cpu_amx_usable(void);
/* Whether bf16-weight GEMMs at the active level round the activations to bf16 (the bf16 dot
 * product, or AMX for m >= TW_GEMM_AMX_MIN_M). */
int tw_cpu_bf16_rounds_activations(void);

/* ---- GEMM: y[m,n] = x[m,k] . w[n,k]^T ------------------------------------------------------ */
tw_status gemm_f32_cpu(const tw_gemm_args *a, int threads);  /* w_dtype must be TW_F32 */
tw_status gemm_bf16_cpu(const tw_gemm_args *a, int threads); /* w_dtype must be TW_BF16 */
tw_status gemm_cpu(const tw_gemm_args *a, int threads);      /* dispatches on w_dtype */
/* bf16 GEMMs with at least this many rows use AMX where usable: every one. Measured (Xeon with
 * AMX, 2 threads): with the caches flushed, n=8192 k=2048, AMX 1.45 / 1.43 ms at m = 2 / 3
 * against the FMA dot driver's 1.51 / 1.73 ms (at m = 1 +-4% either way by shape); `tokwatt run`
 * TPOT p50 at batch 1 94-95 ms against 98-101 ms, at batch 4 95-97 against 122 ms. One path for
 * every m also makes a row's result independent of its batch. */
#define TW_GEMM_AMX_MIN_M 1

/* Which kernel path gemm_cpu takes for this shape at the active SIMD level, and its numerics:
 * x_bf16 = 1 when the activations are rounded to bf16 (RNE) for the product (the bf16
 * dot-product instructions), 0 when they stay fp32; accumulation is fp32 either way. */
typedef struct {
    const char *path; /* e.g. "dot/avx512bf16", "dot/avx2", "blocked/avx512" */
    int x_bf16;
} tw_gemm_info;
void gemm_cpu_describe(const tw_gemm_args *a, tw_gemm_info *out);

/* ---- per-backend state ------------------------------------------------------------------------
 * What the CPU kernels keep between calls: the SIMD level they run at, the blocked GEMM's cached
 * packed-weight panel, and the path of the last GEMM. Each CPU backend owns one (its options
 * "simd", "gemm_path", "gemm_activations"); the free entry points (gemm_cpu(args, threads), ...)
 * run on the process default state, whose level tw_cpu_simd_force or TW_SIMD sets. The *_with
 * entry points take the state explicitly. */
typedef struct tw_cpu_state tw_cpu_state;
tw_cpu_state *tw_cpu_state_default(void);
tw_status tw_cpu_state_create(tw_cpu_state **out);
void tw_cpu_state_destroy(tw_cpu_state *s); /* NULL and the default state: no-op */
/* The level s's kernels use: its own when set, else the process level (tw_cpu_simd_active). */
tw_simd tw_cpu_state_simd(const tw_cpu_state *s);
/* TW_ERR_UNSUPPORTED naming the level when this CPU lacks it (tw_cpu_simd_supported). */
tw_status tw_cpu_state_set_simd(tw_cpu_state *s, tw_simd level);
/* The last GEMM that ran on s (what gemm_cpu_describe said for it); path NULL before any. */
void tw_cpu_state_last_gemm(const tw_cpu_state *s, tw_gemm_info *out);

tw_status gemm_cpu_with(tw_cpu_state *s, const tw_gemm_args *a, int threads);
void gemm_cpu_describe_with(const tw_cpu_state *s, const tw_gemm_args *a, tw_gemm_info *out);

/* ---- attention ------------------------------------------------------------------------------ */
tw_status attn_prefill_cpu(const tw_attn_prefill_args *a, int threads);
tw_status attn_decode_cpu(const tw_attn_decode_args *a, int threads);
tw_status kv_store_cpu(const tw_kv_store_args *a, int threads);
/* paged KV cache through block tables (attn_paged_cpu.c) */
tw_status attn_prefill_paged_cpu(const tw_attn_paged_args *a, int threads);
tw_status attn_decode_paged_cpu(const tw_attn_paged_args *a, int threads);
/* the same at s's SIMD level */
tw_status attn_prefill_cpu_with(const tw_cpu_state *s, const tw_attn_prefill_args *a, int threads);
tw_status attn_decode_cpu_with(const tw_cpu_state *s, const tw_attn_decode_args *a, int threads);
tw_status attn_prefill_paged_cpu_with(const tw_cpu_state *s, const tw_attn_paged_args *a,
                                      int threads);
tw_status attn_decode_paged_cpu_with(const tw_cpu_state *s, const tw_attn_paged_args *a,
                                     int threads);
tw_status kv_store_paged_cpu(const tw_kv_store_paged_args *a, int threads);

/* ---- element-wise and row ops ---------------------------------------------------------------- */
tw_status rmsnorm_cpu(int rows, int dim, const float *x, const void *w, tw_dtype w_dtype, float eps,
                      float *y, int threads);
tw_status rope_cpu(int tokens, int n_heads, int head_dim, float *x, int ldx, const int *positions,
                   const tw_rope_params *rp, int threads);
tw_status swiglu_cpu(int rows, int f, const float *gate, const float *up, int ld_in, float *out,
                     int threads);
tw_status swiglu_cpu_with(const tw_cpu_state *s, int rows, int f, const float *gate,
                          const float *up, int ld_in, float *out, int threads);
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
tw_status moe_ffn_cpu_with(tw_cpu_state *s, const tw_moe_ffn_args *a, int threads);
tw_status mla_store_cpu(const tw_mla_store_args *a, int threads);
tw_status mla_attn_cpu(const tw_mla_attn_args *a, int threads);

/* bf16 <-> fp32 array conversion (round to nearest even) */
void tw_bf16_from_f32_array(tw_bf16 *dst, const float *src, size_t n);
void tw_f32_from_bf16_array(float *dst, const tw_bf16 *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
