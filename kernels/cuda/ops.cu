/* Element-wise and row kernels of the CUDA backend: activation cast to bf16, RMSNorm, RoPE,
 * SwiGLU, residual add, bias add, embedding lookup, argmax, KV-cache store. Memory-bound and
 * simple: one thread per element (grid-stride) or one block per row, fp32 arithmetic throughout,
 * the shared tw_numeric.h helpers for bf16 rounding, RoPE and SiLU so results match the CPU
 * backend. */
#include "tw_cuda_internal.cuh"

#define TW_OPS_THREADS 256

__device__ static inline float tw_ld_w(const void *w, tw_dtype dt, size_t i) {
    return dt == TW_BF16 ? tw_f32_from_bf16(((const tw_bf16 *)w)[i]) : ((const float *)w)[i];
}

/* ---- x fp32 [m, ldx] -> bf16 [m, kpad], zero tail ------------------------------------------- */
__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_cast_x_bf16(int m, int k, int kpad, const float *__restrict__ x, int ldx,
                     __nv_bfloat16 *__restrict__ xb) {
    size_t total = (size_t)m * kpad;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / kpad, c = i % kpad;
        tw_bf16 h = c < (size_t)k ? tw_bf16_from_f32(x[r * ldx + c]) : (tw_bf16)0;
        ((tw_bf16 *)xb)[i] = h;
    }
}

static int tw_grid_for(size_t n) {
    size_t b = (n + TW_OPS_THREADS - 1) / TW_OPS_THREADS;
    if (b > 65535u * 8u) b = 65535u * 8u; /* grid-stride beyond that */
    if (b < 1) b = 1;
    return (int)b;
}

void tw_cuda_cast_x_bf16(cudaStream_t st, int m, int k, int kpad, const float *x, int ldx,
                         __nv_bfloat16 *xb) {
    tw_k_cast_x_bf16<<<tw_grid_for((size_t)m * kpad), TW_OPS_THREADS, 0, st>>>(m, k, kpad, x, ldx,
                                                                               xb);
}

/* ---- RMSNorm: one block per row ---------------------------------------------------------------
 */
__device__ static inline float tw_block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < (int)blockDim.x / 32; w++) t += red[w];
    return t;
}

__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_rmsnorm(int dim, const float *x, const void *w, tw_dtype wdt, float eps, float *y) {
    __shared__ float red[TW_OPS_THREADS / 32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = tw_block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    /* each thread rewrites only the elements it read: x and y may alias */
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * tw_ld_w(w, wdt, i);
}

tw_status tw_cuda_rmsnorm_run(tw_cuda_ctx *ctx, int rows, int dim, const float *x, const void *w,
                              tw_dtype wdt, float eps, float *y) {
    tw_k_rmsnorm<<<rows, TW_OPS_THREADS, 0, ctx->stream>>>(dim, x, w, wdt, eps, y);
    TW_CU_LAUNCHED(ctx, "rmsnorm");
    return TW_OK;
}

/* ---- RoPE: one thread per (token, head, pair) ------------------------------------------------ */
typedef struct {
    float inv_freq[TW_ROPE_MAX_HALF];
} tw_rope_table;

__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_rope(int tokens, int n_heads, int half, float *x, int ldx, const int *pos,
              const tw_rope_table tab) {
    size_t total = (size_t)tokens * n_heads * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int p = (int)(i % half);
        size_t th = i / half;
        int h = (int)(th % n_heads);
        int t = (int)(th / n_heads);
        float ang = tw_rope_angle(pos[t], tab.inv_freq[p]);
        float s, c;
        sincosf(ang, &s, &c);
        float *row = x + (size_t)t * ldx + (size_t)h * 2 * half;
        float a = row[p], b = row[p + half];
        tw_rope_rotate(&a, &b, c, s);
        row[p] = a;
        row[p + half] = b;
    }
}

tw_status tw_cuda_rope_run(tw_cuda_ctx *ctx, int tokens, int n_heads, int head_dim, float *x,
                           int ldx, const int *pos_dev, const float *inv_freq_host) {
    tw_rope_table tab;
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) tab.inv_freq[i] = inv_freq_host[i];
    tw_k_rope<<<tw_grid_for((size_t)tokens * n_heads * half), TW_OPS_THREADS, 0, ctx->stream>>>(
        tokens, n_heads, half, x, ldx, pos_dev, tab);
    TW_CU_LAUNCHED(ctx, "rope");
    return TW_OK;
}

/* ---- SwiGLU and add ----------------------------------------------------------------------------
 */
__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_swiglu(int rows, int f, const float *gate, const float *up, int ld_in, float *out) {
    size_t total = (size_t)rows * f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / f, c = i % f;
        out[i] = tw_silu(gate[r * ld_in + c]) * up[r * ld_in + c];
    }
}

tw_status tw_cuda_swiglu_run(tw_cuda_ctx *ctx, int rows, int f, const float *gate, const float *up,
                             int ld_in, float *out) {
    tw_k_swiglu<<<tw_grid_for((size_t)rows * f), TW_OPS_THREADS, 0, ctx->stream>>>(rows, f, gate,
                                                                                   up, ld_in, out);
    TW_CU_LAUNCHED(ctx, "swiglu");
    return TW_OK;
}

__global__ void __launch_bounds__(TW_OPS_THREADS) tw_k_add(size_t n, const float *x, float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

tw_status tw_cuda_add_run(tw_cuda_ctx *ctx, size_t n, const float *x, float *y) {
    tw_k_add<<<tw_grid_for(n), TW_OPS_THREADS, 0, ctx->stream>>>(n, x, y);
    TW_CU_LAUNCHED(ctx, "add");
    return TW_OK;
}

/* x[r, j] += b[j]: the q/k/v biases, one thread per element */
__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_bias_add(int rows, int n, float *x, int ldx, const void *b, tw_dtype dt) {
    size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / n, c = i % n;
        x[r * ldx + c] += tw_ld_w(b, dt, c);
    }
}

tw_status tw_cuda_bias_add_run(tw_cuda_ctx *ctx, int rows, int n, float *x, int ldx, const void *b,
                               tw_dtype dt) {
    tw_k_bias_add<<<tw_grid_for((size_t)rows * n), TW_OPS_THREADS, 0, ctx->stream>>>(rows, n, x,
                                                                                     ldx, b, dt);
    TW_CU_LAUNCHED(ctx, "bias_add");
    return TW_OK;
}

/* ---- embedding ----------------------------------------------------------------------------------
 */
__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_embed(int n, const int *tokens, const void *table, tw_dtype dt, int row0, int rows,
               int dim, float *out) {
    size_t total = (size_t)n * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / dim, c = i % dim;
        int r = tokens[t] - row0;
        out[i] = (r >= 0 && r < rows) ? tw_ld_w(table, dt, (size_t)r * dim + c) : 0.0f;
    }
}

tw_status tw_cuda_embed_run(tw_cuda_ctx *ctx, int n, const int *tokens_dev, const void *table,
                            tw_dtype dt, int row0, int rows, int dim, float *out) {
    tw_k_embed<<<tw_grid_for((size_t)n * dim), TW_OPS_THREADS, 0, ctx->stream>>>(
        n, tokens_dev, table, dt, row0, rows, dim, out);
    TW_CU_LAUNCHED(ctx, "embed");
    return TW_OK;
}

/* ---- argmax: one block per row, first index on ties ---------------------------------------- */
__device__ static inline void tw_argmax_pick(float *bv, int *bi, float v, int i) {
    /* larger wins; equal values keep the lower index; a NaN never wins over a number */
    if (v > *bv || (v == *bv && i < *bi) || (*bi < 0 && v == v)) {
        *bv = v;
        *bi = i;
    }
}

__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_argmax(int n, const float *logits, int *idx, float *val) {
    __shared__ float sv[TW_OPS_THREADS / 32];
    __shared__ int si[TW_OPS_THREADS / 32];
    const float *row = logits + (size_t)blockIdx.x * n;
    float bv = -INFINITY;
    int bi = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x) tw_argmax_pick(&bv, &bi, row[i], i);
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0) tw_argmax_pick(&bv, &bi, ov, oi);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = -INFINITY;
        int ix = -1;
        for (int w = 0; w < (int)blockDim.x / 32; w++)
            if (si[w] >= 0) tw_argmax_pick(&v, &ix, sv[w], si[w]);
        if (ix < 0) { /* all NaN */
            ix = 0;
            v = row[0];
        }
        idx[blockIdx.x] = ix;
        val[blockIdx.x] = v;
    }
}

tw_status tw_cuda_argmax_run(tw_cuda_ctx *ctx, int rows, int n, const float *logits, int *idx_dev,
                             float *val_dev) {
    tw_k_argmax<<<rows, TW_OPS_THREADS, 0, ctx->stream>>>(n, logits, idx_dev, val_dev);
    TW_CU_LAUNCHED(ctx, "argmax");
    return TW_OK;
}

/* ---- KV-cache store ---------------------------------------------------------------------------
 */
__global__ void __launch_bounds__(TW_OPS_THREADS)
    tw_k_kv_store(int batch, int seq, int n_kv, int d, int max_seq, const int *start,
                  const float *k, const float *v, int ldkv, void *kc, void *vc, tw_dtype dt) {
    size_t total = (size_t)batch * seq * n_kv * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % d);
        size_t r = i / d;
        int h = (int)(r % n_kv);
        size_t tok = r / n_kv; /* b * seq + s */
        int s = (int)(tok % seq), b = (int)(tok / seq);
        size_t src = tok * ldkv + (size_t)h * d + c;
        size_t dst = (((size_t)b * n_kv + h) * max_seq + (size_t)(start[b] + s)) * d + c;
        if (dt == TW_BF16) {
            ((tw_bf16 *)kc)[dst] = tw_bf16_from_f32(k[src]);
            ((tw_bf16 *)vc)[dst] = tw_bf16_from_f32(v[src]);
        } else {
            ((float *)kc)[dst] = k[src];
            ((float *)vc)[dst] = v[src];
        }
    }
}

tw_status tw_cuda_kv_store_run(tw_cuda_ctx *ctx, const tw_kv_store_args *a, const int *start_dev) {
    int ld = a->ldkv ? a->ldkv : a->n_kv_heads * a->head_dim;
    size_t total = (size_t)a->batch * a->seq * a->n_kv_heads * a->head_dim;
    tw_k_kv_store<<<tw_grid_for(total), TW_OPS_THREADS, 0, ctx->stream>>>(
        a->batch, a->seq, a->n_kv_heads, a->head_dim, a->max_seq, start_dev, a->k, a->v, ld,
        a->k_cache, a->v_cache, a->kv_dtype);
    TW_CU_LAUNCHED(ctx, "kv_store");
    return TW_OK;
}
