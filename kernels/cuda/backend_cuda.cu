/* The CUDA backend: the tw_backend_ops table over the kernels in kernels/cuda, device memory,
 * one stream per backend, a cublasLt handle and workspace, host-array staging (see
 * tw_backend_cuda.h for the graph-capture contract), argument checking, and clear errors naming
 * the device and the operation. It never falls back to the CPU: a missing device, a device too
 * old for the build (compute capability < 8.0, or no image for it), an allocation or launch
 * failure all return an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend_cuda.h"
#include "tw_cuda_info.h"
#include "tw_cuda_internal.cuh"

/* ---- errors ------------------------------------------------------------------------------------
 */
tw_status tw_cuda_fail(const tw_cuda_ctx *ctx, cudaError_t e, const char *call, const char *file,
                       int line) {
    (void)cudaGetLastError(); /* clear a non-sticky error so later calls don't inherit it */
    tw_status st = (e == cudaErrorMemoryAllocation) ? TW_ERR_NOMEM : TW_ERR_DEVICE;
    return tw_error_at(st, file, line, "%s failed on CUDA device %d (%s): %s (%s)", call,
                       ctx ? ctx->device : -1, ctx ? ctx->name : "?", cudaGetErrorString(e),
                       cudaGetErrorName(e));
}

tw_status tw_cublas_fail(const tw_cuda_ctx *ctx, cublasStatus_t s, const char *call,
                         const char *file, int line) {
    return tw_error_at(TW_ERR_DEVICE, file, line, "%s failed on CUDA device %d (%s): %s (%s)", call,
                       ctx ? ctx->device : -1, ctx ? ctx->name : "?", cublasLtGetStatusString(s),
                       cublasLtGetStatusName(s));
}

static int tw_cuda_sync_each = -1; /* debug builds, or TW_CUDA_SYNC=1: sync after each launch */

tw_status tw_cuda_debug_sync(tw_cuda_ctx *ctx, const char *what) {
    if (!tw_cuda_sync_each || ctx->capturing) return TW_OK;
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return TW_ERR(TW_ERR_DEVICE, "kernel %s failed on CUDA device %d (%s): %s (%s)", what,
                      ctx->device, ctx->name, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return TW_OK;
}

/* ---- scratch and staging -----------------------------------------------------------------------
 */
tw_status tw_cuda_scratch_reserve(tw_cuda_ctx *ctx, tw_cuda_scratch *s, size_t bytes,
                                  const char *what) {
    if (s->bytes >= bytes) return TW_OK;
    if (ctx->capturing)
        return TW_ERR(TW_ERR_INVALID,
                      "cuda %s: scratch must grow from %zu to %zu bytes during graph capture; run "
                      "the step once uncaptured first",
                      what, s->bytes, bytes);
    size_t want = bytes + bytes / 4 + 256;
    void *p = NULL;
    TW_CU(ctx, cudaMalloc(&p, want));
    if (s->p) {
        if (ctx->n_graphs > 0) { /* a graph may still point at it */
            if (ctx->n_retired == ctx->cap_retired) {
                int cap = ctx->cap_retired ? 2 * ctx->cap_retired : 8;
                void **r = (void **)realloc(ctx->retired, cap * sizeof *r);
                if (!r) {
                    cudaFree(p);
                    return TW_ERR(TW_ERR_NOMEM, "cuda: scratch bookkeeping");
                }
                ctx->retired = r;
                ctx->cap_retired = cap;
            }
            ctx->retired[ctx->n_retired++] = s->p;
        } else {
            TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
            TW_CU(ctx, cudaFree(s->p));
        }
    }
    s->p = p;
    s->bytes = want;
    return TW_OK;
}

static tw_status hostio_push(tw_cuda_hostio **list, int *n, int *cap, tw_cuda_hostio io) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        tw_cuda_hostio *l = (tw_cuda_hostio *)realloc(*list, c * sizeof *l);
        if (!l) return TW_ERR(TW_ERR_NOMEM, "cuda graph: host-array bookkeeping");
        *list = l;
        *cap = c;
    }
    (*list)[(*n)++] = io;
    return TW_OK;
}

/* Reserves `bytes` of staging (host pinned + device mirror); returns the offset. */
static tw_status stage_reserve(tw_cuda_ctx *ctx, size_t bytes, size_t *off) {
    size_t b = (bytes + 15) & ~(size_t)15;
    if (ctx->capturing) {
        if (ctx->arena_off + b > TW_CUDA_ARENA_BYTES)
            return TW_ERR(TW_ERR_NOMEM,
                          "cuda graph capture: host-array staging arena full (%u bytes); fewer "
                          "or smaller captured ops",
                          TW_CUDA_ARENA_BYTES);
        *off = TW_CUDA_RING_BYTES + ctx->arena_off;
        ctx->arena_off += b;
        return TW_OK;
    }
    if (b > TW_CUDA_RING_BYTES)
        return TW_ERR(TW_ERR_INVALID, "cuda: host array of %zu bytes exceeds the %u-byte staging",
                      bytes, TW_CUDA_RING_BYTES);
    if (ctx->ring_off + b > TW_CUDA_RING_BYTES) {
        /* wrap: every earlier copy out of the ring must be done before it is overwritten */
        TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
        ctx->ring_off = 0;
    }
    *off = ctx->ring_off;
    ctx->ring_off += b;
    return TW_OK;
}

tw_status tw_cuda_stage_in(tw_cuda_ctx *ctx, const void *host, size_t bytes, void **dev) {
    size_t off = 0;
    TW_TRY(stage_reserve(ctx, bytes, &off));
    memcpy(ctx->h_stage + off, host, bytes);
    TW_CU(ctx, cudaMemcpyAsync(ctx->d_stage + off, ctx->h_stage + off, bytes,
                               cudaMemcpyHostToDevice, ctx->stream));
    if (ctx->capturing) {
        tw_cuda_hostio io = {host, NULL, off, bytes};
        TW_TRY(hostio_push(&ctx->cap_in, &ctx->n_cap_in, &ctx->cap_cap_in, io));
    }
    *dev = ctx->d_stage + off;
    return TW_OK;
}

tw_status tw_cuda_stage_out(tw_cuda_ctx *ctx, void *host, const void *dev, size_t bytes) {
    size_t off = 0;
    TW_TRY(stage_reserve(ctx, bytes, &off));
    TW_CU(ctx,
          cudaMemcpyAsync(ctx->h_stage + off, dev, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    if (ctx->capturing) {
        tw_cuda_hostio io = {NULL, host, off, bytes};
        return hostio_push(&ctx->cap_out, &ctx->n_cap_out, &ctx->cap_cap_out, io);
    }
    TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
    memcpy(host, ctx->h_stage + off, bytes);
    return TW_OK;
}

/* ---- entry checks ------------------------------------------------------------------------------
 */
static tw_cuda_ctx *cuda_ctx(tw_backend *be) {
    return (tw_cuda_ctx *)be->ctx;
}

#define ENTER(be, opname)                                                                          \
    tw_cuda_ctx *ctx = cuda_ctx(be);                                                               \
    if (!ctx->capturing) TW_CU(ctx, cudaSetDevice(ctx->device)) /* current since capture began */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) return TW_ERR(TW_ERR_INVALID, __VA_ARGS__);                                   \
    } while (0)

/* ---- memory ------------------------------------------------------------------------------------
 */
static tw_status cu_alloc(tw_backend *be, size_t bytes, void **out) {
    ENTER(be, "alloc");
    *out = NULL;
    if (ctx->capturing)
        return TW_ERR(TW_ERR_INVALID, "cuda alloc of %zu bytes during graph capture", bytes);
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        *out = NULL;
        return TW_ERR(e == cudaErrorMemoryAllocation ? TW_ERR_NOMEM : TW_ERR_DEVICE,
                      "cuda alloc: cannot allocate %zu bytes on device %d (%s): %s (%zu of %zu "
                      "bytes free)",
                      bytes, ctx->device, ctx->name, cudaGetErrorString(e), fr, tot);
    }
    return TW_OK;
}

static void cu_free(tw_backend *be, void *p) {
    if (!p) return;
    tw_cuda_ctx *ctx = cuda_ctx(be);
    cudaSetDevice(ctx->device);
    if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

static tw_status cu_upload(tw_backend *be, void *dst, const void *src, size_t bytes) {
    ENTER(be, "upload");
    CHECK(!ctx->capturing, "cuda upload during graph capture (not capturable)");
    if (!bytes) return TW_OK;
    CHECK(dst && src, "cuda upload: NULL pointer");
    TW_CU(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
    TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
    return TW_OK;
}

static tw_status cu_download(tw_backend *be, void *dst, const void *src, size_t bytes) {
    ENTER(be, "download");
    CHECK(!ctx->capturing, "cuda download during graph capture (not capturable)");
    if (!bytes) return TW_OK;
    CHECK(dst && src, "cuda download: NULL pointer");
    TW_CU(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
    return TW_OK;
}

static tw_status cu_sync_ctx(tw_cuda_ctx *ctx) {
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return TW_ERR(TW_ERR_DEVICE, "cuda sync: queued work failed on device %d (%s): %s (%s)",
                      ctx->device, ctx->name, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    for (int i = 0; i < ctx->n_pending_out; i++) {
        const tw_cuda_hostio *io = &ctx->pending_out[i];
        memcpy(io->host_dst, ctx->h_stage + io->off, io->bytes);
    }
    ctx->pending_out = NULL;
    ctx->n_pending_out = 0;
    return TW_OK;
}

static tw_status cu_sync(tw_backend *be) {
    ENTER(be, "sync");
    CHECK(!ctx->capturing, "cuda sync during graph capture (end the capture first)");
    return cu_sync_ctx(ctx);
}

static tw_status cu_mem_available(tw_backend *be, size_t *bytes) {
    ENTER(be, "mem_available");
    size_t fr = 0, tot = 0;
    TW_CU(ctx, cudaMemGetInfo(&fr, &tot));
    *bytes = fr;
    return TW_OK;
}

/* ---- GEMM --------------------------------------------------------------------------------------
 */
static tw_status cast_x(tw_cuda_ctx *ctx, const tw_gemm_args *a, int ldx, int *kpad,
                        const __nv_bfloat16 **xb) {
    *kpad = (a->k + 7) / 8 * 8; /* 16-byte rows for cp.async */
    TW_TRY(tw_cuda_scratch_reserve(ctx, &ctx->xbf, (size_t)a->m * *kpad * 2, "gemm bf16 x"));
    tw_cuda_cast_x_bf16(ctx->stream, a->m, a->k, *kpad, a->x, ldx, (__nv_bfloat16 *)ctx->xbf.p);
    TW_CU_LAUNCHED(ctx, "gemm x -> bf16 cast");
    *xb = (const __nv_bfloat16 *)ctx->xbf.p;
    return TW_OK;
}

static tw_status cu_gemm(tw_backend *be, const tw_gemm_args *a) {
    ENTER(be, "gemm");
    CHECK(a && a->x && a->w && a->y, "cuda gemm: NULL operand");
    CHECK(a->m > 0 && a->n > 0 && a->k > 0, "cuda gemm: bad shape m=%d n=%d k=%d", a->m, a->n,
          a->k);
    int ldx = a->ldx ? a->ldx : a->k, ldy = a->ldy ? a->ldy : a->n;
    CHECK(ldx >= a->k, "cuda gemm: ldx=%d < k=%d", ldx, a->k);
    CHECK(ldy >= a->n, "cuda gemm: ldy=%d < n=%d", ldy, a->n);
    CHECK(a->w_dtype == TW_F32 || a->w_dtype == TW_BF16, "cuda gemm: weight dtype %s",
          tw_cuda_dtype_name(a->w_dtype));
    tw_status st;
    if (a->w_dtype == TW_F32) {
        if (ctx->gemm_impl == TW_GEMM_CUBLAS)
            st = tw_cuda_gemm_cublas(ctx, a, a->x, 0, ldx);
        else
            st = tw_cuda_gemm_f32(ctx, a->m, a->n, a->k, a->x, ldx, (const float *)a->w, a->y, ldy,
                                  a->accumulate);
        return st == TW_OK ? TW_OK
                           : tw_error_ctx(st, "cuda gemm m=%d n=%d k=%d fp32", a->m, a->n, a->k);
    }
    const __nv_bfloat16 *w = (const __nv_bfloat16 *)a->w;
    const __nv_bfloat16 *xb;
    int kpad;
    switch (ctx->gemm_impl) {
    case TW_GEMM_CUBLAS:
        TW_TRY(cast_x(ctx, a, ldx, &kpad, &xb));
        st = tw_cuda_gemm_cublas(ctx, a, xb, 1, kpad);
        break;
    case TW_GEMM_WGMMA:
        TW_TRY(cast_x(ctx, a, ldx, &kpad, &xb));
        st = tw_cuda_gemm_wgmma(ctx, a->m, a->n, a->k, kpad, xb, w, a->y, ldy, a->accumulate);
        break;
    case TW_GEMM_WGMMA_TMA:
        TW_TRY(cast_x(ctx, a, ldx, &kpad, &xb));
        st = tw_cuda_gemm_wgmma_tma(ctx, a->m, a->n, a->k, kpad, xb, w, a->y, ldy, a->accumulate);
        break;
    default:
        if (a->m <= 8) {
            st = tw_cuda_gemv_bf16(ctx, a->m, a->n, a->k, a->x, ldx, w, a->y, ldy, a->accumulate);
        } else {
            TW_TRY(cast_x(ctx, a, ldx, &kpad, &xb));
            st = tw_cuda_gemm_mma(ctx, a->m, a->n, a->k, kpad, xb, w, a->y, ldy, a->accumulate);
        }
        break;
    }
    return st == TW_OK ? TW_OK
                       : tw_error_ctx(st, "cuda gemm m=%d n=%d k=%d bf16", a->m, a->n, a->k);
}

/* ---- attention and KV cache --------------------------------------------------------------------
 */
static tw_status check_heads(int n_heads, int n_kv, int head_dim, const char *op) {
    if (n_heads < 1 || n_kv < 1 || n_heads % n_kv)
        return TW_ERR(TW_ERR_INVALID, "cuda %s: n_heads=%d not a multiple of n_kv_heads=%d", op,
                      n_heads, n_kv);
    if (head_dim < 1) return TW_ERR(TW_ERR_INVALID, "cuda %s: head_dim=%d", op, head_dim);
    return TW_OK;
}

static tw_status cu_attn_prefill(tw_backend *be, const tw_attn_prefill_args *a) {
    ENTER(be, "attn_prefill");
    CHECK(a && a->q && a->k_cache && a->v_cache && a->out && a->start_pos,
          "cuda attn_prefill: NULL argument");
    CHECK(a->batch > 0 && a->seq > 0 && a->max_seq > 0, "cuda attn_prefill: batch=%d seq=%d",
          a->batch, a->seq);
    TW_TRY(check_heads(a->n_heads, a->n_kv_heads, a->head_dim, "attn_prefill"));
    CHECK(a->kv_dtype == TW_F32 || a->kv_dtype == TW_BF16, "cuda attn_prefill: kv dtype");
    CHECK(a->window >= 0, "cuda attn_prefill: window=%d (0 = none)", a->window);
    for (int b = 0; b < a->batch; b++)
        CHECK(a->start_pos[b] >= 0 && a->start_pos[b] + a->seq <= a->max_seq,
              "cuda attn_prefill: start_pos[%d]=%d + seq %d exceeds max_seq %d", b, a->start_pos[b],
              a->seq, a->max_seq);
    void *sp;
    TW_TRY(tw_cuda_stage_in(ctx, a->start_pos, sizeof(int) * a->batch, &sp));
    return tw_cuda_attn_prefill_run(ctx, a, (const int *)sp);
}

static tw_status cu_attn_decode(tw_backend *be, const tw_attn_decode_args *a) {
    ENTER(be, "attn_decode");
    CHECK(a && a->q && a->k_cache && a->v_cache && a->out && a->lens,
          "cuda attn_decode: NULL argument");
    CHECK(a->batch > 0 && a->max_seq > 0, "cuda attn_decode: batch=%d", a->batch);
    TW_TRY(check_heads(a->n_heads, a->n_kv_heads, a->head_dim, "attn_decode"));
    CHECK(a->kv_dtype == TW_F32 || a->kv_dtype == TW_BF16, "cuda attn_decode: kv dtype");
    CHECK(a->window >= 0, "cuda attn_decode: window=%d (0 = none)", a->window);
    int max_len = 0;
    for (int b = 0; b < a->batch; b++) {
        CHECK(a->lens[b] >= 1 && a->lens[b] <= a->max_seq,
              "cuda attn_decode: lens[%d]=%d outside 1..max_seq %d", b, a->lens[b], a->max_seq);
        if (a->lens[b] > max_len) max_len = a->lens[b];
    }
    void *lp;
    TW_TRY(tw_cuda_stage_in(ctx, a->lens, sizeof(int) * a->batch, &lp));
    return tw_cuda_attn_decode_run(ctx, a, (const int *)lp, max_len);
}

static tw_status cu_kv_store(tw_backend *be, const tw_kv_store_args *a) {
    ENTER(be, "kv_store");
    CHECK(a && a->k && a->v && a->k_cache && a->v_cache && a->start_pos,
          "cuda kv_store: NULL argument");
    CHECK(a->batch > 0 && a->seq > 0 && a->n_kv_heads > 0 && a->head_dim > 0,
          "cuda kv_store: bad shape batch=%d seq=%d", a->batch, a->seq);
    CHECK(a->ldkv == 0 || a->ldkv >= a->n_kv_heads * a->head_dim, "cuda kv_store: ldkv=%d",
          a->ldkv);
    CHECK(a->kv_dtype == TW_F32 || a->kv_dtype == TW_BF16, "cuda kv_store: kv dtype");
    for (int b = 0; b < a->batch; b++)
        CHECK(a->start_pos[b] >= 0 && a->start_pos[b] + a->seq <= a->max_seq,
              "cuda kv_store: start_pos[%d]=%d + seq %d exceeds max_seq %d", b, a->start_pos[b],
              a->seq, a->max_seq);
    void *sp;
    TW_TRY(tw_cuda_stage_in(ctx, a->start_pos, sizeof(int) * a->batch, &sp));
    return tw_cuda_kv_store_run(ctx, a, (const int *)sp);
}

/* ---- element-wise ops --------------------------------------------------------------------------
 */
static tw_status cu_rmsnorm(tw_backend *be, int rows, int dim, const float *x, const void *w,
                            tw_dtype wdt, float eps, float *y) {
    ENTER(be, "rmsnorm");
    CHECK(rows > 0 && dim > 0 && x && w && y, "cuda rmsnorm: rows=%d dim=%d", rows, dim);
    CHECK(wdt == TW_F32 || wdt == TW_BF16, "cuda rmsnorm: weight dtype");
    CHECK(rows <= 0x7fffffff, "cuda rmsnorm: rows");
    return tw_cuda_rmsnorm_run(ctx, rows, dim, x, w, wdt, eps, y);
}

static tw_status cu_rope(tw_backend *be, int tokens, int n_heads, int head_dim, float *x, int ldx,
                         const int *positions, const tw_rope_params *rp) {
    ENTER(be, "rope");
    CHECK(tokens > 0 && n_heads > 0 && x && positions && rp, "cuda rope: tokens=%d heads=%d",
          tokens, n_heads);
    CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim / 2 <= TW_ROPE_MAX_HALF,
          "cuda rope: head_dim=%d (even, <= %d)", head_dim, 2 * TW_ROPE_MAX_HALF);
    int ld = ldx ? ldx : n_heads * head_dim;
    CHECK(ld >= n_heads * head_dim, "cuda rope: ldx=%d", ldx);
    float inv[TW_ROPE_MAX_HALF];
    for (int i = 0; i < head_dim / 2; i++) inv[i] = tw_rope_inv_freq(i, head_dim, rp);
    void *pp;
    TW_TRY(tw_cuda_stage_in(ctx, positions, sizeof(int) * (size_t)tokens, &pp));
    return tw_cuda_rope_run(ctx, tokens, n_heads, head_dim, x, ld, (const int *)pp, inv);
}

static tw_status cu_swiglu(tw_backend *be, int rows, int f, const float *gate, const float *up,
                           int ld_in, float *out) {
    ENTER(be, "swiglu");
    CHECK(rows > 0 && f > 0 && gate && up && out, "cuda swiglu: rows=%d f=%d", rows, f);
    int ld = ld_in ? ld_in : f;
    CHECK(ld >= f, "cuda swiglu: ld_in=%d < f=%d", ld_in, f);
    return tw_cuda_swiglu_run(ctx, rows, f, gate, up, ld, out);
}

static tw_status cu_add(tw_backend *be, size_t n, const float *x, float *y) {
    ENTER(be, "add");
    if (!n) return TW_OK;
    CHECK(x && y, "cuda add: NULL operand");
    return tw_cuda_add_run(ctx, n, x, y);
}

static tw_status cu_bias_add(tw_backend *be, int rows, int n, float *x, int ldx, const void *b,
                             tw_dtype b_dtype) {
    ENTER(be, "bias_add");
    CHECK(rows > 0 && n > 0 && x && b, "cuda bias_add: rows=%d n=%d", rows, n);
    CHECK(b_dtype == TW_F32 || b_dtype == TW_BF16, "cuda bias_add: bias dtype");
    int ld = ldx ? ldx : n;
    CHECK(ld >= n, "cuda bias_add: ldx=%d < n=%d", ldx, n);
    return tw_cuda_bias_add_run(ctx, rows, n, x, ld, b, b_dtype);
}

static tw_status cu_embed(tw_backend *be, int n, const int *tokens, const void *table,
                          tw_dtype dtype, int row0, int rows, int dim, float *out) {
    ENTER(be, "embed");
    CHECK(n > 0 && dim > 0 && rows > 0 && tokens && table && out, "cuda embed: n=%d rows=%d dim=%d",
          n, rows, dim);
    CHECK(dtype == TW_F32 || dtype == TW_BF16, "cuda embed: table dtype");
    void *tp;
    TW_TRY(tw_cuda_stage_in(ctx, tokens, sizeof(int) * (size_t)n, &tp));
    return tw_cuda_embed_run(ctx, n, (const int *)tp, table, dtype, row0, rows, dim, out);
}

static tw_status cu_argmax(tw_backend *be, int rows, int n, const float *logits, int *idx,
                           float *val) {
    ENTER(be, "argmax");
    CHECK(rows > 0 && n > 0 && logits && idx && val, "cuda argmax: rows=%d n=%d", rows, n);
    size_t need = (size_t)rows * 2 * sizeof(float);
    TW_TRY(tw_cuda_scratch_reserve(ctx, &ctx->small, need, "argmax"));
    int *di = (int *)ctx->small.p;
    float *dv = (float *)ctx->small.p + rows;
    TW_TRY(tw_cuda_argmax_run(ctx, rows, n, logits, di, dv));
    TW_TRY(tw_cuda_stage_out(ctx, idx, di, sizeof(int) * (size_t)rows));
    TW_TRY(tw_cuda_stage_out(ctx, val, dv, sizeof(float) * (size_t)rows));
    return TW_OK;
}

/* ---- mixture of experts and latent attention ----------------------------------------------------
 */
static tw_status cu_head_rmsnorm(tw_backend *be, int rows, int n_heads, int dim, float *x, int ldx,
                                 const void *w, tw_dtype wdt, float eps) {
    ENTER(be, "head_rmsnorm");
    CHECK(rows > 0 && n_heads > 0 && dim > 0 && x && w,
          "cuda head_rmsnorm: rows=%d heads=%d dim=%d", rows, n_heads, dim);
    CHECK(wdt == TW_F32 || wdt == TW_BF16, "cuda head_rmsnorm: weight dtype");
    int ld = ldx ? ldx : n_heads * dim;
    CHECK(ld >= n_heads * dim, "cuda head_rmsnorm: ldx=%d < %d", ldx, n_heads * dim);
    CHECK((size_t)rows * n_heads * 32 <= 0x7fffffffu, "cuda head_rmsnorm: %d x %d heads", rows,
          n_heads);
    return tw_cuda_head_rmsnorm_run(ctx, rows, n_heads, dim, x, ld, w, wdt, eps);
}

static tw_status cu_moe_route(tw_backend *be, const tw_moe_route_args *a) {
    ENTER(be, "moe_route");
    CHECK(a && a->logits && a->idx && a->weight, "cuda moe_route: NULL argument");
    CHECK(a->tokens > 0 && a->n_experts > 0 && a->n_experts <= TW_MOE_MAX_EXPERTS,
          "cuda moe_route: tokens=%d experts=%d (1..%d)", a->tokens, a->n_experts,
          TW_MOE_MAX_EXPERTS);
    CHECK(a->top_k >= 1 && a->top_k <= a->n_experts && a->top_k <= TW_MOE_MAX_TOPK,
          "cuda moe_route: top_k=%d (1..%d)", a->top_k, TW_MOE_MAX_TOPK);
    CHECK(a->n_group >= 1 && a->n_experts % a->n_group == 0 && a->topk_group >= 1 &&
              a->topk_group <= a->n_group &&
              a->top_k <= a->topk_group * (a->n_experts / a->n_group) &&
              !(a->group_top2 && a->n_group > 1 && a->n_experts / a->n_group < 2),
          "cuda moe_route: groups n_group=%d topk_group=%d for %d experts, top_k %d", a->n_group,
          a->topk_group, a->n_experts, a->top_k);
    CHECK(a->scoring == TW_ROUTE_SOFTMAX || a->scoring == TW_ROUTE_SIGMOID,
          "cuda moe_route: scoring %d", (int)a->scoring);
    CHECK(!a->choice_bias || a->choice_dtype == TW_F32 || a->choice_dtype == TW_BF16,
          "cuda moe_route: choice bias dtype");
    return tw_cuda_moe_route_run(ctx, a);
}

static tw_status cu_moe_ffn(tw_backend *be, const tw_moe_ffn_args *a) {
    ENTER(be, "moe_ffn");
    CHECK(a && a->idx && a->weight && a->x && a->w_gate_up && a->w_down && a->y && a->work,
          "cuda moe_ffn: NULL argument");
    CHECK(a->tokens > 0 && a->hidden > 0 && a->ffn > 0 && a->top_k > 0 && a->n_experts > 0 &&
              a->expert0 >= 0 && a->n_experts <= TW_MOE_MAX_EXPERTS,
          "cuda moe_ffn: tokens=%d hidden=%d ffn=%d top_k=%d experts=%d (<= %d) from %d", a->tokens,
          a->hidden, a->ffn, a->top_k, a->n_experts, TW_MOE_MAX_EXPERTS, a->expert0);
    CHECK(a->w_dtype == TW_F32 || a->w_dtype == TW_BF16, "cuda moe_ffn: weight dtype");
    size_t need = tw_moe_ffn_work_bytes(a->tokens, a->top_k, a->hidden, a->ffn, a->n_experts);
    CHECK(a->work_bytes >= need, "cuda moe_ffn: workspace of %zu bytes, needs %zu", a->work_bytes,
          need);
    CHECK(tw_cuda_div_up(a->tokens, 64) <= 65535, "cuda moe_ffn: %d tokens in one call", a->tokens);
    return tw_cuda_moe_ffn_run(ctx, a);
}

static tw_status cu_mla_store(tw_backend *be, const tw_mla_store_args *a) {
    ENTER(be, "mla_store");
    CHECK(a && a->kv && a->cache && a->start_pos, "cuda mla_store: NULL argument");
    CHECK(a->batch > 0 && a->seq > 0 && a->lora_rank > 0 && a->rope_dim >= 0 && a->max_seq > 0,
          "cuda mla_store: batch=%d seq=%d lora=%d rope=%d", a->batch, a->seq, a->lora_rank,
          a->rope_dim);
    CHECK(a->ldkv == 0 || a->ldkv >= a->lora_rank + a->rope_dim, "cuda mla_store: ldkv=%d",
          a->ldkv);
    CHECK(a->kv_dtype == TW_F32 || a->kv_dtype == TW_BF16, "cuda mla_store: cache dtype");
    for (int b = 0; b < a->batch; b++)
        CHECK(a->start_pos[b] >= 0 && a->start_pos[b] + a->seq <= a->max_seq,
              "cuda mla_store: start_pos[%d]=%d + seq %d exceeds max_seq %d", b, a->start_pos[b],
              a->seq, a->max_seq);
    void *sp;
    TW_TRY(tw_cuda_stage_in(ctx, a->start_pos, sizeof(int) * a->batch, &sp));
    return tw_cuda_mla_store_run(ctx, a, (const int *)sp);
}

static tw_status cu_mla_attn(tw_backend *be, const tw_mla_attn_args *a) {
    ENTER(be, "mla_attn");
    CHECK(a && a->q && a->w_kv_b && a->cache && a->out && a->start_pos,
          "cuda mla_attn: NULL argument");
    CHECK(a->batch > 0 && a->seq > 0 && a->n_heads > 0 && a->max_seq > 0 &&
              (size_t)a->batch * a->seq <= 65535u && a->n_heads <= 0x7fffffff,
          "cuda mla_attn: batch=%d seq=%d heads=%d", a->batch, a->seq, a->n_heads);
    CHECK(a->nope_dim > 0 && a->nope_dim <= TW_MLA_MAX_NOPE && a->rope_dim >= 0 &&
              a->rope_dim <= TW_MLA_MAX_ROPE && a->lora_rank > 0 &&
              a->lora_rank <= TW_MLA_MAX_LORA && a->v_dim > 0,
          "cuda mla_attn: nope=%d (<= %d) rope=%d (<= %d) lora=%d (<= %d) v=%d", a->nope_dim,
          TW_MLA_MAX_NOPE, a->rope_dim, TW_MLA_MAX_ROPE, a->lora_rank, TW_MLA_MAX_LORA, a->v_dim);
    CHECK(a->ldq == 0 || a->ldq >= a->n_heads * (a->nope_dim + a->rope_dim),
          "cuda mla_attn: ldq=%d", a->ldq);
    CHECK((a->w_dtype == TW_F32 || a->w_dtype == TW_BF16) &&
              (a->kv_dtype == TW_F32 || a->kv_dtype == TW_BF16),
          "cuda mla_attn: dtypes");
    for (int b = 0; b < a->batch; b++)
        CHECK(a->start_pos[b] >= 0 && a->start_pos[b] + a->seq <= a->max_seq,
              "cuda mla_attn: start_pos[%d]=%d + seq %d exceeds max_seq %d", b, a->start_pos[b],
              a->seq, a->max_seq);
    void *sp;
    TW_TRY(tw_cuda_stage_in(ctx, a->start_pos, sizeof(int) * a->batch, &sp));
    return tw_cuda_mla_attn_run(ctx, a, (const int *)sp);
}

/* ---- construction ------------------------------------------------------------------------------
 */
static void cu_ctx_free(tw_cuda_ctx *ctx) {
    if (!ctx) return;
    cudaSetDevice(ctx->device);
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    tw_cuda_lt_destroy(ctx);
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    cudaFree(ctx->lt_ws);
    cudaFree(ctx->xbf.p);
    cudaFree(ctx->split.p);
    cudaFree(ctx->small.p);
    cudaFree(ctx->gv_part.p);
    cudaFree(ctx->gv_count.p);
    for (int i = 0; i < ctx->n_retired; i++) cudaFree(ctx->retired[i]);
    free(ctx->retired);
    cudaFree(ctx->d_stage);
    if (ctx->h_stage) cudaFreeHost(ctx->h_stage);
    if (ctx->ev_start) cudaEventDestroy(ctx->ev_start);
    if (ctx->ev_stop) cudaEventDestroy(ctx->ev_stop);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    free(ctx->cap_in);
    free(ctx->cap_out);
    (void)cudaGetLastError();
    free(ctx);
}

static void cu_destroy(tw_backend *be) {
    if (!be) return;
    cu_ctx_free(cuda_ctx(be));
    free(be);
}

/* the stream communicators (NCCL) queue on, so collectives order with the kernels */
static void *cu_native_stream(tw_backend *be) {
    return (void *)cuda_ctx(be)->stream;
}

/* paged KV cache (attn_paged.cu) */
tw_status tw_cuda_attn_prefill_paged(tw_backend *be, const tw_attn_paged_args *a);
tw_status tw_cuda_attn_decode_paged(tw_backend *be, const tw_attn_paged_args *a);
tw_status tw_cuda_kv_store_paged(tw_backend *be, const tw_kv_store_paged_args *a);

extern const tw_backend_ops tw_cuda_ops_table; /* below: the slots come first */

/* Selects the bf16 GEMM implementation by name (tw_cuda_set_gemm and TW_CUDA_GEMM). The sm_90a
 * paths are refused, saying why, on any device other than compute capability 9.0. */
static tw_status gemm_impl_select(tw_cuda_ctx *ctx, const char *impl) {
    if (impl && !strcmp(impl, "tokwatt")) {
        ctx->gemm_impl = TW_GEMM_TOKWATT;
        return TW_OK;
    }
    if (impl && !strcmp(impl, "cublas")) {
        ctx->gemm_impl = TW_GEMM_CUBLAS;
        return TW_OK;
    }
    int wgmma = impl && !strcmp(impl, "wgmma"), wgmma_tma = impl && !strcmp(impl, "wgmma_tma");
    if (!wgmma && !wgmma_tma)
        return TW_ERR(TW_ERR_INVALID,
                      "unknown gemm implementation '%s' (tokwatt, cublas, wgmma, wgmma_tma)",
                      impl ? impl : "(null)");
    if (!(ctx->cc_major == 9 && ctx->cc_minor == 0))
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "gemm '%s' needs a compute capability 9.0 device (sm_90a); device %d (%s) is "
                      "%d.%d",
                      impl, ctx->device, ctx->name, ctx->cc_major, ctx->cc_minor);
    if (wgmma_tma && !ctx->tma_encode)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "gemm 'wgmma_tma': the driver of device %d (%s) provides no "
                      "cuTensorMapEncodeTiled (cudaGetDriverEntryPointByVersion)",
                      ctx->device, ctx->name);
    ctx->gemm_impl = wgmma ? TW_GEMM_WGMMA : TW_GEMM_WGMMA_TMA;
    return TW_OK;
}

static tw_status cu_ctx_init(tw_cuda_ctx *ctx) {
    TW_CU(ctx, cudaSetDevice(ctx->device));
    TW_CU(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    TW_CU(ctx, cudaEventCreate(&ctx->ev_start));
    TW_CU(ctx, cudaEventCreate(&ctx->ev_stop));
    TW_CUBLAS(ctx, cublasLtCreate(&ctx->lt));
    ctx->lt_ws_bytes = 32u << 20;
    TW_CU(ctx, cudaMalloc(&ctx->lt_ws, ctx->lt_ws_bytes));
    TW_CU(ctx, cudaHostAlloc((void **)&ctx->h_stage, TW_CUDA_RING_BYTES + TW_CUDA_ARENA_BYTES,
                             cudaHostAllocDefault));
    TW_CU(ctx, cudaMalloc((void **)&ctx->d_stage, TW_CUDA_RING_BYTES + TW_CUDA_ARENA_BYTES));
    tw_status st = tw_cuda_gemm_mma_init(ctx);
    if (st == TW_OK) st = tw_cuda_attn_prefill_init(ctx);
    if (st == TW_OK && ctx->cc_major == 9 && ctx->cc_minor == 0) st = tw_cuda_gemm_wgmma_init(ctx);
    if (st == TW_OK && ctx->cc_major == 9 && ctx->cc_minor == 0)
        st = tw_cuda_gemm_wgmma_tma_init(ctx);
    if (st != TW_OK)
        return tw_error_ctx(st,
                            "CUDA device %d (%s, compute capability %d.%d) cannot run this "
                            "build's kernels (SASS %s, PTX %s)",
                            ctx->device, ctx->name, ctx->cc_major, ctx->cc_minor,
                            tw_cuda_build_sass(), tw_cuda_build_ptx());
    const char *impl = getenv("TW_CUDA_GEMM");
    if (impl && *impl) {
        st = gemm_impl_select(ctx, impl);
        if (st != TW_OK) return tw_error_ctx(st, "TW_CUDA_GEMM='%s'", impl);
    }
    return TW_OK;
}

extern "C" tw_status tw_backend_cuda_create_p(const tw_backend_params *p, tw_backend **out) {
    *out = NULL;
    int device = p->device;
    int n = 0;
    tw_status st = tw_cuda_device_count(&n);
    if (st != TW_OK) return tw_error_ctx(st, "cuda backend: no usable CUDA device");
    if (n == 0) return TW_ERR(TW_ERR_DEVICE, "cuda backend: no CUDA device found");
    if (device < 0 || device >= n)
        return TW_ERR(TW_ERR_INVALID, "cuda backend: device %d does not exist (%d found)", device,
                      n);
    if (tw_cuda_sync_each < 0) {
        const char *e = getenv("TW_CUDA_SYNC");
#ifdef NDEBUG
        tw_cuda_sync_each = e && *e == '1';
#else
        tw_cuda_sync_each = !(e && *e == '0');
#endif
    }
    tw_cuda_device_info info;
    TW_TRY(tw_cuda_device_query(device, &info));
    if (info.cc_major < 8)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "cuda backend: device %d (%s) has compute capability %d.%d; this build "
                      "needs 8.0 or newer (SASS %s, PTX %s)",
                      device, info.name, info.cc_major, info.cc_minor, tw_cuda_build_sass(),
                      tw_cuda_build_ptx());
    tw_cuda_ctx *ctx = (tw_cuda_ctx *)calloc(1, sizeof *ctx);
    tw_backend *be = (tw_backend *)calloc(1, sizeof *be);
    if (!ctx || !be) {
        free(ctx);
        free(be);
        return TW_ERR(TW_ERR_NOMEM, "cuda backend: out of host memory");
    }
    ctx->device = device;
    snprintf(ctx->name, sizeof ctx->name, "%s", info.name);
    ctx->cc_major = info.cc_major;
    ctx->cc_minor = info.cc_minor;
    ctx->sm_count = info.sm_count > 0 ? info.sm_count : 1;
    st = cu_ctx_init(ctx);
    if (st != TW_OK) {
        cu_ctx_free(ctx);
        free(be);
        return tw_error_ctx(st, "cuda backend");
    }
    be->ops = &tw_cuda_ops_table;
    be->ctx = ctx;
    be->device = device;
    *out = be;
    return TW_OK;
}

/* ---- the optional slots (graphs, copies, timer, options) -------------------------------------
 */
static tw_status cuda_be(tw_backend *be, tw_cuda_ctx **ctx) {
    if (!be || be->ops != &tw_cuda_ops_table)
        return TW_ERR(TW_ERR_UNSUPPORTED, "not a CUDA backend (%s)",
                      be && be->ops ? be->ops->name : "null");
    *ctx = cuda_ctx(be);
    if ((*ctx)->capturing) return TW_OK; /* the device is current since the capture began */
    cudaError_t e = cudaSetDevice((*ctx)->device);
    if (e != cudaSuccess) return tw_cuda_fail(*ctx, e, "cudaSetDevice", __FILE__, __LINE__);
    return TW_OK;
}

static tw_status cu_set_gemm_impl(tw_backend *be, const char *impl) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    return gemm_impl_select(ctx, impl);
}

static const char *cu_get_gemm_impl(tw_backend *be) {
    if (!be || be->ops != &tw_cuda_ops_table) return "none";
    switch (cuda_ctx(be)->gemm_impl) {
    case TW_GEMM_CUBLAS:
        return "cublas";
    case TW_GEMM_WGMMA:
        return "wgmma";
    case TW_GEMM_WGMMA_TMA:
        return "wgmma_tma";
    default:
        return "tokwatt";
    }
}

static tw_status cu_graph_begin(tw_backend *be) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    if (ctx->capturing) return TW_ERR(TW_ERR_INVALID, "cuda graph: already capturing");
    TW_TRY(cu_sync_ctx(ctx));
    /* The arena was never reclaimed, so every re-capture (the engine re-captures whenever the
     * batch size changes, and one backend serves many engines and combinations) leaked its
     * slots until captures failed with "arena full". With no live graph, nothing points into
     * the arena and the stream is idle (synced above): it can be reused from the start. */
    if (ctx->n_graphs == 0) ctx->arena_off = 0;
    TW_CU(ctx, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
    ctx->capturing = 1;
    ctx->n_cap_in = ctx->n_cap_out = 0;
    return TW_OK;
}

static tw_status cu_graph_end(tw_backend *be, void **graph) {
    tw_cuda_ctx *ctx = NULL;
    *graph = NULL;
    TW_TRY(cuda_be(be, &ctx));
    if (!ctx->capturing) return TW_ERR(TW_ERR_INVALID, "cuda graph: not capturing");
    cudaGraph_t g = NULL;
    ctx->capturing = 0;
    TW_CU(ctx, cudaStreamEndCapture(ctx->stream, &g));
    tw_cuda_graph *tg = (tw_cuda_graph *)calloc(1, sizeof *tg);
    if (!tg) {
        cudaGraphDestroy(g);
        return TW_ERR(TW_ERR_NOMEM, "cuda graph: host memory");
    }
    cudaError_t e = cudaGraphInstantiate(&tg->exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        free(tg);
        return tw_cuda_fail(ctx, e, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
    tg->n_in = ctx->n_cap_in;
    tg->n_out = ctx->n_cap_out;
    tg->in = (tw_cuda_hostio *)malloc((tg->n_in + 1) * sizeof *tg->in);
    tg->out = (tw_cuda_hostio *)malloc((tg->n_out + 1) * sizeof *tg->out);
    if (!tg->in || !tg->out) {
        cudaGraphExecDestroy(tg->exec);
        free(tg->in);
        free(tg->out);
        free(tg);
        return TW_ERR(TW_ERR_NOMEM, "cuda graph: host memory");
    }
    if (tg->n_in) memcpy(tg->in, ctx->cap_in, tg->n_in * sizeof *tg->in);
    if (tg->n_out) memcpy(tg->out, ctx->cap_out, tg->n_out * sizeof *tg->out);
    ctx->n_graphs++;
    *graph = tg;
    return TW_OK;
}

static tw_status cu_graph_launch(tw_backend *be, void *graph) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    tw_cuda_graph *tg = (tw_cuda_graph *)graph;
    if (!tg) return TW_ERR(TW_ERR_INVALID, "cuda graph launch: NULL graph");
    if (ctx->capturing) return TW_ERR(TW_ERR_INVALID, "cuda graph launch during a capture");
    /* the previous launch must be done with the staging slots (and its outputs copied out) */
    TW_TRY(cu_sync_ctx(ctx));
    for (int i = 0; i < tg->n_in; i++)
        memcpy(ctx->h_stage + tg->in[i].off, tg->in[i].host, tg->in[i].bytes);
    TW_CU(ctx, cudaGraphLaunch(tg->exec, ctx->stream));
    ctx->pending_out = tg->out;
    ctx->n_pending_out = tg->n_out;
    return TW_OK;
}

static void cu_graph_destroy(tw_backend *be, void *graph) {
    tw_cuda_ctx *ctx = NULL;
    tw_cuda_graph *tg = (tw_cuda_graph *)graph;
    if (!tg || cuda_be(be, &ctx) != TW_OK) return;
    if (ctx->pending_out == tg->out) (void)cu_sync_ctx(ctx);
    cudaGraphExecDestroy(tg->exec);
    free(tg->in);
    free(tg->out);
    free(tg);
    ctx->n_graphs--;
}

static tw_status cu_copy_d2d(tw_backend *be, void *dst, const void *src, size_t bytes) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    TW_CU(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return TW_OK;
}

static tw_status cu_timer_start(tw_backend *be) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    TW_CU(ctx, cudaEventRecord(ctx->ev_start, ctx->stream));
    return TW_OK;
}

static tw_status cu_timer_stop(tw_backend *be, double *elapsed_s) {
    tw_cuda_ctx *ctx = NULL;
    TW_TRY(cuda_be(be, &ctx));
    TW_CU(ctx, cudaEventRecord(ctx->ev_stop, ctx->stream));
    TW_CU(ctx, cudaEventSynchronize(ctx->ev_stop));
    float ms = 0.0f;
    TW_CU(ctx, cudaEventElapsedTime(&ms, ctx->ev_start, ctx->ev_stop));
    *elapsed_s = ms * 1e-3;
    return TW_OK;
}

/* ---- questions ------------------------------------------------------------------------------ */
static int cu_supports(tw_backend *be, tw_op op, tw_dtype dt) {
    (void)be;
    switch (op) {
    case TW_OP_ATTN_PREFILL_PAGED: /* attn_paged.cu: fp32 and bf16 pools */
    case TW_OP_ATTN_DECODE_PAGED:
    case TW_OP_KV_STORE_PAGED:
        return dt == TW_F32 || dt == TW_BF16;
    default:
        return tw_op_usual_dtype(op, dt);
    }
}

static tw_status cu_describe(tw_backend *be, tw_device_desc *d) {
    tw_cuda_ctx *ctx = cuda_ctx(be);
    tw_cuda_device_info info;
    TW_TRY(tw_cuda_device_query(ctx->device, &info));
    int n = 0;
    TW_TRY(tw_cuda_device_count(&n));
    d->kind = TW_DEVICE_GPU;
    snprintf(d->name, sizeof d->name, "%s", info.name);
    snprintf(d->arch, sizeof d->arch, "compute capability %d.%d", info.cc_major, info.cc_minor);
    d->count = n;
    d->ordinal = ctx->device;
    d->memory_bytes = (uint64_t)info.total_mem;
    /* theoretical: 2 transfers per clock (DDR) x bus width; the datasheet is devices.json's */
    if (info.mem_clock_khz > 0 && info.mem_bus_bits > 0)
        d->mem_bw_bytes_per_s = 2.0 * info.mem_clock_khz * 1e3 * (info.mem_bus_bits / 8.0);
    snprintf(d->power_source, sizeof d->power_source, "nvml");
    return TW_OK;
}

static tw_status cu_set_option(tw_backend *be, const char *key, const char *value) {
    if (key && !strcmp(key, "gemm")) return cu_set_gemm_impl(be, value);
    return TW_ERR(TW_ERR_INVALID, "the cuda backend has no option '%s' (gemm)",
                  key ? key : "(null)");
}

static const char *cu_get_option(tw_backend *be, const char *key) {
    if (key && !strcmp(key, "gemm")) return cu_get_gemm_impl(be);
    /* the yardstick `tokwatt bench gemm --baseline` times beside the current implementation */
    if (key && !strcmp(key, "gemm_baseline")) return "cublas";
    return NULL;
}

/* In the declaration order of tw_backend_ops (C++ designated initializers must follow it). */
extern const tw_backend_ops tw_cuda_ops_table = {
    .version = TW_BACKEND_INTERFACE_VERSION,
    .name = "cuda",
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .sync = cu_sync,
    .mem_available = cu_mem_available,
    .destroy = cu_destroy,
    .supports = cu_supports,
    .describe = cu_describe,
    .gemm = cu_gemm,
    .attn_prefill = cu_attn_prefill,
    .attn_decode = cu_attn_decode,
    .kv_store = cu_kv_store,
    .rmsnorm = cu_rmsnorm,
    .rope = cu_rope,
    .swiglu = cu_swiglu,
    .add = cu_add,
    .embed = cu_embed,
    .argmax = cu_argmax,
    .bias_add = cu_bias_add,
    .head_rmsnorm = cu_head_rmsnorm,
    .moe_route = cu_moe_route,
    .moe_ffn = cu_moe_ffn,
    .mla_store = cu_mla_store,
    .mla_attn = cu_mla_attn,
    .attn_prefill_paged = tw_cuda_attn_prefill_paged,
    .attn_decode_paged = tw_cuda_attn_decode_paged,
    .kv_store_paged = tw_cuda_kv_store_paged,
    .native_stream = cu_native_stream,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_launch = cu_graph_launch,
    .graph_destroy = cu_graph_destroy,
    .copy_d2d = cu_copy_d2d,
    .timer_start = cu_timer_start,
    .timer_stop = cu_timer_stop,
    .set_option = cu_set_option,
    .get_option = cu_get_option,
    .ceilings = tw_cuda_ceilings,
};
