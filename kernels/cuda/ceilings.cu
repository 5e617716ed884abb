/* The CUDA backend's ceilings slot: the roofline measured on the device the backend runs on, the
 * same way on every run, so that every CUDA result carries its fractions.
 *   read bandwidth: cudaMemcpyAsync device to device of B bytes (up to 1 GiB, a quarter of the
 *     free memory at most), 2 warm-ups then the best of 10 timed with events; counted as 2B
 *     (bytes read + bytes written), the DRAM traffic, as `tokwatt bench cuda --what copy` does.
 *   compute peak: the bf16 tensor-core rate of a square cuBLAS GEMM (8192^3, or 4096^3 when
 *     memory is short; bf16 operands, fp32 accumulation and output), 2 warm-ups then the best
 *     of 10, counted as 2 m n k FLOPs.
 * Both are timed with the backend's events on its stream. Nothing here runs on the machines that
 * build it without a GPU; it compiles and links there. */
#include <stdio.h>
#include <string.h>

#include "tw_backend_cuda.h"
#include "tw_cuda_internal.cuh"

#define TW_CEIL_REPS   10
#define TW_CEIL_WARMUP 2

/* Best (shortest) seconds of one queued operation over TW_CEIL_REPS, after the warm-ups. */
typedef tw_status (*tw_ceil_fn)(tw_cuda_ctx *ctx, void *arg);

static tw_status tw_ceil_time(tw_cuda_ctx *ctx, tw_ceil_fn fn, void *arg, double *best_s) {
    for (int i = 0; i < TW_CEIL_WARMUP; i++) TW_TRY(fn(ctx, arg));
    TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
    double best = 0;
    for (int r = 0; r < TW_CEIL_REPS; r++) {
        TW_CU(ctx, cudaEventRecord(ctx->ev_start, ctx->stream));
        TW_TRY(fn(ctx, arg));
        TW_CU(ctx, cudaEventRecord(ctx->ev_stop, ctx->stream));
        TW_CU(ctx, cudaEventSynchronize(ctx->ev_stop));
        float ms = 0.0f;
        TW_CU(ctx, cudaEventElapsedTime(&ms, ctx->ev_start, ctx->ev_stop));
        double s = ms * 1e-3;
        if (s > 0 && (best == 0 || s < best)) best = s;
    }
    *best_s = best;
    return TW_OK;
}

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
} tw_ceil_copy;

static tw_status tw_ceil_copy_once(tw_cuda_ctx *ctx, void *arg) {
    tw_ceil_copy *c = (tw_ceil_copy *)arg;
    TW_CU(ctx, cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return TW_OK;
}

typedef struct {
    tw_gemm_args a;
    const void *xb;
    int ldx;
} tw_ceil_gemm;

static tw_status tw_ceil_gemm_once(tw_cuda_ctx *ctx, void *arg) {
    tw_ceil_gemm *g = (tw_ceil_gemm *)arg;
    return tw_cuda_gemm_cublas(ctx, &g->a, g->xb, 1, g->ldx);
}

static tw_status tw_ceil_bandwidth(tw_cuda_ctx *ctx, tw_ceilings *out) {
    size_t fr = 0, tot = 0;
    TW_CU(ctx, cudaMemGetInfo(&fr, &tot));
    size_t bytes = (size_t)1 << 30;
    while (bytes > ((size_t)16 << 20) && 2 * bytes > fr / 2) bytes /= 2;
    void *a = NULL, *b = NULL;
    TW_CU(ctx, cudaMalloc(&a, bytes));
    cudaError_t e = cudaMalloc(&b, bytes);
    if (e != cudaSuccess) {
        cudaFree(a);
        return tw_cuda_fail(ctx, e, "cudaMalloc (copy ceiling)", __FILE__, __LINE__);
    }
    tw_status st = TW_OK;
    e = cudaMemsetAsync(a, 0x5a, bytes, ctx->stream);
    if (e != cudaSuccess) st = tw_cuda_fail(ctx, e, "cudaMemsetAsync", __FILE__, __LINE__);
    tw_ceil_copy c = {b, a, bytes};
    double s = 0;
    if (st == TW_OK) st = tw_ceil_time(ctx, tw_ceil_copy_once, &c, &s);
    cudaFree(a);
    cudaFree(b);
    TW_TRY(st);
    if (s > 0) out->read_bw_bytes_per_s = 2.0 * (double)bytes / s;
    snprintf(out->read_method, sizeof out->read_method,
             "measured: device-to-device copy of %zu MiB, bytes read + written, best of %d",
             bytes >> 20, TW_CEIL_REPS);
    return TW_OK;
}

static tw_status tw_ceil_peak(tw_cuda_ctx *ctx, tw_ceilings *out) {
    size_t fr = 0, tot = 0;
    TW_CU(ctx, cudaMemGetInfo(&fr, &tot));
    int n = 8192;
    /* x and w bf16, y fp32: 8 n^2 bytes, with room to spare */
    while (n > 1024 && (size_t)8 * n * n > fr / 2) n /= 2;
    size_t nn = (size_t)n * n;
    void *x = NULL, *w = NULL, *y = NULL;
    TW_CU(ctx, cudaMalloc(&x, nn * 2));
    tw_status st = TW_OK;
    cudaError_t e = cudaMalloc(&w, nn * 2);
    if (e == cudaSuccess) e = cudaMalloc(&y, nn * 4);
    /* 0x3c3c is bf16 0.0115: nonzero operands (zeros could draw less power and clock higher) */
    if (e == cudaSuccess) e = cudaMemsetAsync(x, 0x3c, nn * 2, ctx->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(w, 0x3c, nn * 2, ctx->stream);
    if (e != cudaSuccess) st = tw_cuda_fail(ctx, e, "buffers of the peak GEMM", __FILE__, __LINE__);
    tw_ceil_gemm g;
    memset(&g, 0, sizeof g);
    g.a.m = g.a.n = g.a.k = n;
    g.a.x = (const float *)x; /* unused: the bf16 copy xb is passed */
    g.a.w = w;
    g.a.w_dtype = TW_BF16;
    g.a.y = (float *)y;
    g.xb = x;
    g.ldx = n;
    double s = 0;
    if (st == TW_OK) st = tw_ceil_time(ctx, tw_ceil_gemm_once, &g, &s);
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
    TW_TRY(st);
    if (s > 0) out->peak_flops = 2.0 * (double)n * n * n / s;
    out->peak_dtype = TW_BF16;
    snprintf(out->peak_method, sizeof out->peak_method,
             "measured: cuBLAS bf16 tensor-core GEMM %d^3, best of %d", n, TW_CEIL_REPS);
    return TW_OK;
}

extern "C" tw_status tw_cuda_ceilings(tw_backend *be, tw_ceilings *out) {
    tw_cuda_ctx *ctx = (tw_cuda_ctx *)be->ctx;
    if (ctx->capturing) return TW_ERR(TW_ERR_INVALID, "cuda ceilings: not during a graph capture");
    TW_CU(ctx, cudaSetDevice(ctx->device));
    TW_CU(ctx, cudaStreamSynchronize(ctx->stream));
    tw_status st = tw_ceil_bandwidth(ctx, out);
    if (st != TW_OK)
        return tw_error_ctx(st, "cuda ceilings on device %d (%s): copy bandwidth", ctx->device,
                            ctx->name);
    st = tw_ceil_peak(ctx, out);
    if (st != TW_OK)
        return tw_error_ctx(st, "cuda ceilings on device %d (%s): bf16 peak", ctx->device,
                            ctx->name);
    return TW_OK;
}
