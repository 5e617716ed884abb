/* Shared internals of the CUDA backend: the private context, the call-checking macros, the
 * host-array staging used by ops that take host memory, and the launchers each kernel file
 * exports to backend_cuda.cu. Not included outside kernels/cuda. */
#ifndef TW_CUDA_INTERNAL_CUH
#define TW_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "tw_backend.h"

/* Every CUDA runtime call goes through TW_CU: on failure it records the call, file:line, the
 * device and the runtime's message, and returns TW_ERR_DEVICE (TW_ERR_NOMEM for allocation). */
#define TW_CU(ctx, call)                                                                           \
    do {                                                                                           \
        cudaError_t tw_cu_e_ = (call);                                                             \
        if (tw_cu_e_ != cudaSuccess)                                                               \
            return tw_cuda_fail((ctx), tw_cu_e_, #call, __FILE__, __LINE__);                       \
    } while (0)

#define TW_CUBLAS(ctx, call)                                                                       \
    do {                                                                                           \
        cublasStatus_t tw_cb_s_ = (call);                                                          \
        if (tw_cb_s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return tw_cublas_fail((ctx), tw_cb_s_, #call, __FILE__, __LINE__);                     \
    } while (0)

/* After every kernel launch: the launch error (bad configuration, missing image) always; in
 * debug builds (TW_CUDA_DEBUG_SYNC) also a stream sync so that faults name the kernel.
 * The launch error is reported under `what` (not "cudaPeekAtLastError()"): otherwise a failed
 * launch whose caller adds no context (the GEMM's x -> bf16 cast, every op in ops.cu) would
 * name the device but not the operation. */
#define TW_CU_LAUNCHED(ctx, what)                                                                  \
    do {                                                                                           \
        cudaError_t tw_cl_e_ = cudaPeekAtLastError();                                              \
        if (tw_cl_e_ != cudaSuccess)                                                               \
            return tw_cuda_fail((ctx), tw_cl_e_, (what), __FILE__, __LINE__);                      \
        TW_TRY(tw_cuda_debug_sync((ctx), (what)));                                                 \
    } while (0)

typedef enum {
    TW_GEMM_TOKWATT = 0,
    TW_GEMM_CUBLAS = 1,
    TW_GEMM_WGMMA = 2,
    TW_GEMM_WGMMA_TMA = 3
} tw_cuda_gemm_impl;

/* Device scratch buffer that grows on demand (never during graph capture). */
typedef struct {
    void *p;
    size_t bytes;
} tw_cuda_scratch;

typedef struct {
    const void *host; /* address passed at capture time */
    void *host_dst;
    size_t off, bytes;
} tw_cuda_hostio;

typedef struct {
    cudaGraphExec_t exec;
    int n_in, n_out;
    tw_cuda_hostio *in, *out;
} tw_cuda_graph;

#define TW_CUDA_RING_BYTES  (1u << 20) /* staging ring for uncaptured ops */
#define TW_CUDA_ARENA_BYTES (1u << 20) /* staging slots of captured ops, never reused */
#define TW_CUDA_LT_CACHE    16

typedef struct {
    int m, n, k, ldb, ldc, wdt, used;
    unsigned align_a, align_b, align_c; /* pointer alignments the algorithm was chosen for */
    cublasLtMatmulAlgo_t algo;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
} tw_lt_plan;

typedef struct tw_cuda_ctx {
    int device;
    char name[256];
    int cc_major, cc_minor, sm_count;
    cudaStream_t stream;
    cudaEvent_t ev_start, ev_stop;
    tw_cuda_gemm_impl gemm_impl;
    void *tma_encode; /* cuTensorMapEncodeTiled from the driver (cc 9.0 only), or NULL */

    cublasLtHandle_t lt;
    void *lt_ws;
    size_t lt_ws_bytes;
    tw_lt_plan lt_cache[TW_CUDA_LT_CACHE];
    int lt_next;

    tw_cuda_scratch xbf;   /* bf16 copy of GEMM activations [m, kpad] */
    tw_cuda_scratch split; /* decode partials: [batch, n_heads, splits, head_dim + 1] fp32 */
    tw_cuda_scratch small; /* argmax results and similar */

    /* GEMV split k (gemv.cu): partial sums [splits, m, n] fp32, and one arrival counter per
     * feature block (zeroed when allocated; each launch re-arms its own) */
    tw_cuda_scratch gv_part, gv_count;

    /* Scratch replaced while graphs exist is kept until destroy (graphs may point at it). */
    void **retired;
    int n_retired, cap_retired;

    /* Host-array staging: pinned host and device buffers of RING + ARENA bytes. */
    unsigned char *h_stage, *d_stage;
    size_t ring_off, arena_off;

    int capturing, n_graphs;
    tw_cuda_hostio *cap_in, *cap_out;
    int n_cap_in, n_cap_out, cap_cap_in, cap_cap_out;
    tw_cuda_hostio *pending_out; /* outputs of the last graph launch, copied out by sync */
    int n_pending_out;
} tw_cuda_ctx;

tw_status tw_cuda_fail(const tw_cuda_ctx *ctx, cudaError_t e, const char *call, const char *file,
                       int line);
tw_status tw_cublas_fail(const tw_cuda_ctx *ctx, cublasStatus_t s, const char *call,
                         const char *file, int line);
tw_status tw_cuda_debug_sync(tw_cuda_ctx *ctx, const char *what);
/* Makes sure scratch s holds at least `bytes` (error while capturing if it must grow). */
tw_status tw_cuda_scratch_reserve(tw_cuda_ctx *ctx, tw_cuda_scratch *s, size_t bytes,
                                  const char *what);
/* Copies a host array to device memory valid for the ops queued next on the stream. */
tw_status tw_cuda_stage_in(tw_cuda_ctx *ctx, const void *host, size_t bytes, void **dev);
/* Copies device bytes to a host address: complete on return when not capturing; when capturing,
 * complete after the graph's launch and the next sync. */
tw_status tw_cuda_stage_out(tw_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);

/* ---- launchers (each validates nothing: backend_cuda.cu checks the arguments) ---------------- */
/* xb[m, kpad] = bf16(x[m, ldx]) with zero columns k..kpad-1 */
void tw_cuda_cast_x_bf16(cudaStream_t st, int m, int k, int kpad, const float *x, int ldx,
                         __nv_bfloat16 *xb);
/* mma.sync GEMM: y[m, ldy] (+)= xb[m, kpad] . w[n, k]^T, w bf16 */
tw_status tw_cuda_gemm_mma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad, const __nv_bfloat16 *xb,
                           const __nv_bfloat16 *w, float *y, int ldy, int accumulate);
/* fp32-weight fallback (SIMT, fp32 FMA): y[m, ldy] (+)= x[m, ldx] . w[n, k]^T */
tw_status tw_cuda_gemm_f32(tw_cuda_ctx *ctx, int m, int n, int k, const float *x, int ldx,
                           const float *w, float *y, int ldy, int accumulate);
/* GEMV for m <= 8: y[m, ldy] (+)= x[m, ldx] . w[n, k]^T, w bf16 */
tw_status tw_cuda_gemv_bf16(tw_cuda_ctx *ctx, int m, int n, int k, const float *x, int ldx,
                            const __nv_bfloat16 *w, float *y, int ldy, int accumulate);
/* sm_90a warpgroup GEMM (experimental); TW_ERR_UNSUPPORTED on other devices or shapes */
tw_status tw_cuda_gemm_wgmma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad,
                             const __nv_bfloat16 *xb, const __nv_bfloat16 *w, float *y, int ldy,
                             int accumulate);
/* sm_90a TMA + warpgroup GEMM (experimental, gemm_wgmma_tma.cu); TW_ERR_UNSUPPORTED on other
 * devices; shapes a tensor map cannot describe go to the mma.sync kernel */
tw_status tw_cuda_gemm_wgmma_tma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad,
                                 const __nv_bfloat16 *xb, const __nv_bfloat16 *w, float *y, int ldy,
                                 int accumulate);
tw_status tw_cuda_gemm_cublas(tw_cuda_ctx *ctx, const tw_gemm_args *a, const void *x_dev,
                              int x_is_bf16, int ldx);
void tw_cuda_lt_destroy(tw_cuda_ctx *ctx);

tw_status tw_cuda_attn_prefill_run(tw_cuda_ctx *ctx, const tw_attn_prefill_args *a,
                                   const int *start_pos_dev);
tw_status tw_cuda_attn_decode_run(tw_cuda_ctx *ctx, const tw_attn_decode_args *a,
                                  const int *lens_dev, int max_len);
/* Per-file one-time setup at backend creation (dynamic shared-memory limits): never during a
 * capture. Each also checks that the kernels have an image for this device. */
tw_status tw_cuda_gemm_mma_init(tw_cuda_ctx *ctx);
tw_status tw_cuda_attn_prefill_init(tw_cuda_ctx *ctx);
tw_status tw_cuda_gemm_wgmma_init(tw_cuda_ctx *ctx);
tw_status tw_cuda_gemm_wgmma_tma_init(tw_cuda_ctx *ctx); /* also resolves ctx->tma_encode */

tw_status tw_cuda_kv_store_run(tw_cuda_ctx *ctx, const tw_kv_store_args *a, const int *start_dev);
tw_status tw_cuda_rmsnorm_run(tw_cuda_ctx *ctx, int rows, int dim, const float *x, const void *w,
                              tw_dtype wdt, float eps, float *y);
tw_status tw_cuda_rope_run(tw_cuda_ctx *ctx, int tokens, int n_heads, int head_dim, float *x,
                           int ldx, const int *pos_dev, const float *inv_freq_host);
tw_status tw_cuda_swiglu_run(tw_cuda_ctx *ctx, int rows, int f, const float *gate, const float *up,
                             int ld_in, float *out);
tw_status tw_cuda_add_run(tw_cuda_ctx *ctx, size_t n, const float *x, float *y);
tw_status tw_cuda_bias_add_run(tw_cuda_ctx *ctx, int rows, int n, float *x, int ldx, const void *b,
                               tw_dtype dt);
tw_status tw_cuda_embed_run(tw_cuda_ctx *ctx, int n, const int *tokens_dev, const void *table,
                            tw_dtype dt, int row0, int rows, int dim, float *out);
tw_status tw_cuda_argmax_run(tw_cuda_ctx *ctx, int rows, int n, const float *logits, int *idx_dev,
                             float *val_dev);

#define TW_ROPE_MAX_HALF 256 /* head_dim up to 512 */

/* mixture of experts and latent attention (moe.cu, mla.cu) */
#define TW_MOE_MAX_EXPERTS 512 /* routed experts per layer (shared-memory tables) */
#define TW_MOE_MAX_TOPK    32  /* experts per token (a lane per slot) */
#define TW_MLA_MAX_LORA    512 /* kv_lora_rank */
#define TW_MLA_MAX_NOPE    256
#define TW_MLA_MAX_ROPE    128
tw_status tw_cuda_head_rmsnorm_run(tw_cuda_ctx *ctx, int rows, int n_heads, int dim, float *x,
                                   int ldx, const void *w, tw_dtype wdt, float eps);
tw_status tw_cuda_moe_route_run(tw_cuda_ctx *ctx, const tw_moe_route_args *a);
tw_status tw_cuda_moe_ffn_run(tw_cuda_ctx *ctx, const tw_moe_ffn_args *a);
tw_status tw_cuda_mla_store_run(tw_cuda_ctx *ctx, const tw_mla_store_args *a, const int *start_dev);
tw_status tw_cuda_mla_attn_run(tw_cuda_ctx *ctx, const tw_mla_attn_args *a, const int *start_dev);

/* dtype names without backend.c, so the CUDA objects link without the CPU backend */
static inline const char *tw_cuda_dtype_name(int dt) {
    return dt == TW_BF16 ? "bf16" : dt == TW_F32 ? "fp32" : dt == TW_I32 ? "i32" : "?";
}

static inline int tw_cuda_div_up(int a, int b) {
    return (a + b - 1) / b;
}

#endif
