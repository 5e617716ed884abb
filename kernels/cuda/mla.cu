/* Multi-head latent attention (DeepSeek-V2/V3) on CUDA, the absorbed form for prefill and decode
 * (tw_backend.h; kernels/cpu/mla_cpu.c is the reference implementation), the latent cache store,
 * and the per-head RMSNorm (Qwen3's q/k norms, DeepSeek's latent norm).
 *
 * mla_attn: one block of 4 warps per (query token, head). The block moves its query into the
 * latent space (q_lat = W_UK^T q_nope: threads own latent dims, so each kv_b row is read
 * coalesced), then the warps take cached positions round-robin: lanes split the latent and rope
 * dims of a position for the score (warp-reduced), and each lane keeps LOR/32 of the latent
 * accumulator under the shared online-softmax helper (tw_softmax_push). The four warps' states
 * are merged in shared memory, and W_UV maps the normalised latent sum to the head's v dims (a
 * warp per output dim, lanes over the latent). The cache is read as lora_rank + rope_dim values
 * per position, whatever the head count: the bytes a decode step needs. */
#include "tw_cuda_internal.cuh"

#define MA_THREADS 128
#define MA_WARPS   (MA_THREADS / 32)
#define MA_EPL     (TW_MLA_MAX_LORA / 32) /* latent dims per lane */
#define HN_THREADS 256

__device__ static inline float ma_ld(const void *p, tw_dtype dt, size_t i) {
    return dt == TW_BF16 ? tw_f32_from_bf16(((const tw_bf16 *)p)[i]) : ((const float *)p)[i];
}

/* ---- per-head RMSNorm: a warp per (row, head) ------------------------------------------------ */
__global__ void __launch_bounds__(HN_THREADS)
    tw_k_head_rmsnorm(int rows, int n_heads, int dim, float *x, int ldx, const void *w,
                      tw_dtype wdt, float eps) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= rows * n_heads) return; /* whole warps leave together */
    float *xr = x + (size_t)(warp / n_heads) * ldx + (size_t)(warp % n_heads) * dim;
    float ss = 0.0f;
    for (int i = lane; i < dim; i += 32) ss += xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = lane; i < dim; i += 32) xr[i] = xr[i] * inv * ma_ld(w, wdt, i);
}

tw_status tw_cuda_head_rmsnorm_run(tw_cuda_ctx *ctx, int rows, int n_heads, int dim, float *x,
                                   int ldx, const void *w, tw_dtype wdt, float eps) {
    size_t warps = (size_t)rows * n_heads;
    int blocks = (int)((warps * 32 + HN_THREADS - 1) / HN_THREADS);
    tw_k_head_rmsnorm<<<blocks, HN_THREADS, 0, ctx->stream>>>(rows, n_heads, dim, x, ldx, w, wdt,
                                                              eps);
    TW_CU_LAUNCHED(ctx, "head_rmsnorm");
    return TW_OK;
}

/* ---- the latent cache store --------------------------------------------------------------------
 */
__global__ void __launch_bounds__(HN_THREADS)
    tw_k_mla_store(int batch, int seq, int width, int max_seq, const int *start, const float *kv,
                   int ld, void *cache, tw_dtype dt) {
    size_t total = (size_t)batch * seq * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % width);
        size_t tok = i / width; /* b * seq + s */
        int s = (int)(tok % seq), b = (int)(tok / seq);
        size_t dst = ((size_t)b * max_seq + (size_t)(start[b] + s)) * width + c;
        float v = kv[tok * ld + c];
        if (dt == TW_BF16)
            ((tw_bf16 *)cache)[dst] = tw_bf16_from_f32(v);
        else
            ((float *)cache)[dst] = v;
    }
}

tw_status tw_cuda_mla_store_run(tw_cuda_ctx *ctx, const tw_mla_store_args *a,
                                const int *start_dev) {
    int width = a->lora_rank + a->rope_dim, ld = a->ldkv ? a->ldkv : width;
    size_t total = (size_t)a->batch * a->seq * width;
    size_t blocks = (total + HN_THREADS - 1) / HN_THREADS;
    if (blocks > 65535u * 8u) blocks = 65535u * 8u;
    tw_k_mla_store<<<(int)blocks, HN_THREADS, 0, ctx->stream>>>(
        a->batch, a->seq, width, a->max_seq, start_dev, a->kv, ld, a->cache, a->kv_dtype);
    TW_CU_LAUNCHED(ctx, "mla_store");
    return TW_OK;
}

/* ---- absorbed attention -----------------------------------------------------------------------
 */
typedef struct {
    int seq, n_heads, dn, dr, lora, dv, max_seq, ldq;
    const int *start; /* [batch] device */
    const float *q;
    const void *w;
    tw_dtype wdt;
    const void *cache;
    tw_dtype kvdt;
    float *out;
    float scale;
} tw_ma_params;

__global__ void __launch_bounds__(MA_THREADS) tw_k_mla_attn(const tw_ma_params p) {
    __shared__ float qn[TW_MLA_MAX_NOPE], qr[TW_MLA_MAX_ROPE], qlat[TW_MLA_MAX_LORA];
    __shared__ float w_acc[MA_WARPS][TW_MLA_MAX_LORA];
    __shared__ float w_m[MA_WARPS], w_l[MA_WARPS];
    const int h = blockIdx.x, tok = blockIdx.y, b = tok / p.seq, s = tok % p.seq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int L = p.lora, W = p.lora + p.dr, pos = p.start[b] + s;
    const float *qt = p.q + (size_t)tok * p.ldq;
    for (int i = threadIdx.x; i < p.dn; i += blockDim.x) qn[i] = qt[(size_t)h * p.dn + i];
    for (int i = threadIdx.x; i < p.dr; i += blockDim.x)
        qr[i] = qt[(size_t)p.n_heads * p.dn + (size_t)h * p.dr + i];
    __syncthreads();
    /* q_lat[l] = sum_d q_nope[d] W_UK[d][l]: kv_b rows h*(dn+dv) + d */
    const size_t w0 = (size_t)h * (p.dn + p.dv) * L;
    for (int l = threadIdx.x; l < L; l += blockDim.x) {
        float acc = 0.0f;
        for (int d = 0; d < p.dn; d++)
            acc = fmaf(qn[d], ma_ld(p.w, p.wdt, w0 + (size_t)d * L + l), acc);
        qlat[l] = acc;
    }
    __syncthreads();
    /* the warps' online softmax over positions warp, warp + 4, ... of 0..pos */
    tw_softmax_state st = tw_softmax_init();
    float acc[MA_EPL];
#pragma unroll
    for (int e = 0; e < MA_EPL; e++) acc[e] = 0.0f;
    const size_t cb = (size_t)b * p.max_seq * W;
    for (int j = warp; j <= pos; j += MA_WARPS) {
        const size_t row = cb + (size_t)j * W;
        float dot = 0.0f;
        for (int i = lane; i < L; i += 32)
            dot = fmaf(qlat[i], ma_ld(p.cache, p.kvdt, row + i), dot);
        for (int i = lane; i < p.dr; i += 32)
            dot = fmaf(qr[i], ma_ld(p.cache, p.kvdt, row + L + i), dot);
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        float alpha;
        float pw = tw_softmax_push(&st, dot * p.scale, &alpha);
#pragma unroll
        for (int e = 0; e < MA_EPL; e++) {
            int l = lane + 32 * e;
            float c = l < L ? ma_ld(p.cache, p.kvdt, row + l) : 0.0f;
            acc[e] = acc[e] * alpha + pw * c;
        }
    }
    if (lane == 0) w_m[warp] = st.m, w_l[warp] = st.l;
#pragma unroll
    for (int e = 0; e < MA_EPL; e++) {
        int l = lane + 32 * e;
        if (l < L) w_acc[warp][l] = acc[e];
    }
    __syncthreads();
    float m = -INFINITY;
    for (int x = 0; x < MA_WARPS; x++) m = fmaxf(m, w_m[x]);
    float den = 0.0f;
    for (int x = 0; x < MA_WARPS; x++)
        den += w_m[x] == -INFINITY ? 0.0f : w_l[x] * expf(w_m[x] - m);
    for (int l = threadIdx.x; l < L; l += blockDim.x) {
        float v = 0.0f;
        for (int x = 0; x < MA_WARPS; x++)
            if (w_m[x] != -INFINITY) v += w_acc[x][l] * expf(w_m[x] - m);
        qlat[l] = v / den; /* q_lat is no longer needed: it now holds the latent output */
    }
    __syncthreads();
    /* out[i] = W_UV[i] . o_lat: a warp per output dim, lanes over the latent */
    float *o = p.out + (size_t)tok * p.n_heads * p.dv + (size_t)h * p.dv;
    for (int i = warp; i < p.dv; i += MA_WARPS) {
        const size_t r = w0 + (size_t)(p.dn + i) * L;
        float v = 0.0f;
        for (int l = lane; l < L; l += 32) v = fmaf(ma_ld(p.w, p.wdt, r + l), qlat[l], v);
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) o[i] = v;
    }
}

tw_status tw_cuda_mla_attn_run(tw_cuda_ctx *ctx, const tw_mla_attn_args *a, const int *start_dev) {
    tw_ma_params p;
    p.seq = a->seq, p.n_heads = a->n_heads, p.dn = a->nope_dim, p.dr = a->rope_dim;
    p.lora = a->lora_rank, p.dv = a->v_dim, p.max_seq = a->max_seq;
    p.ldq = a->ldq ? a->ldq : a->n_heads * (a->nope_dim + a->rope_dim);
    p.start = start_dev, p.q = a->q, p.w = a->w_kv_b, p.wdt = a->w_dtype;
    p.cache = a->cache, p.kvdt = a->kv_dtype, p.out = a->out, p.scale = a->scale;
    dim3 grid(a->n_heads, a->batch * a->seq);
    tw_k_mla_attn<<<grid, MA_THREADS, 0, ctx->stream>>>(p);
    TW_CU_LAUNCHED(ctx, "mla_attn");
    return TW_OK;
}
