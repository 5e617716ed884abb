/* Mixture-of-experts kernels of the CUDA backend: routing and the grouped expert MLP
 * (tw_backend.h has the contract; kernels/cpu/moe_cpu.c is the reference implementation).
 *
 * Routing: one warp per token. Scores (softmax with a warp max and sum, or sigmoid) and the choice
 * values (scores + the correction bias) live in shared memory; the group limit keeps the
 * topk_group best groups (a group's score: its best, or the sum of its two best); the top-k are
 * picked by k warp argmax rounds, larger first and ties to the lower index, as on the CPU.
 *
 * Grouped MLP, all on the device (no host sync, so a decode step can be captured in a graph):
 *  1. count: one block counts each held expert's slots in shared memory, writes the offsets (an
 *     exclusive prefix) and the per-expert counts, then gives every slot its row in the
 *     expert-sorted order (an atomic cursor per expert: the order within an expert varies from
 *     run to run, the values do not, since every row below is computed on its own);
 *  2. gather the slots' input rows into that order;
 *  3. a grouped GEMM: grid z = the expert, y = 64-row tiles of its rows (the launch covers the
 *     most an expert can get, `tokens` rows: a token picks an expert once; tiles past an
 *     expert's count exit at once), x = 64-column tiles; fp32 FMA in shared-memory tiles
 *     (64 x 64 block tile, k step 16, 4 x 4 per thread, the layout of gemm_f32.cu), bf16 or fp32
 *     weights, each output element summed in one fixed k order;
 *  4. SwiGLU over the gathered rows, then the down GEMM the same way;
 *  5. combine: each token adds its held slots' rows, weighted, in slot order. */
#include "tw_cuda_internal.cuh"

#define MR_THREADS 128 /* routing: 4 tokens (warps) per block */
#define MR_WARPS   (MR_THREADS / 32)
#define MC_THREADS 1024 /* counting: one block */
#define MG_TILE    64
#define MG_BK      16
#define MG_THREADS 256
#define ME_THREADS 256

/* ---- routing -------------------------------------------------------------------------------- */
__device__ static inline void mr_pick(float *bv, int *bi, float v, int i) {
    if (v > *bv || (v == *bv && i < *bi)) {
        *bv = v;
        *bi = i;
    }
}

/* the index of the largest v[i] over [0, n) (ties: the lower index) across the warp */
__device__ static inline int mr_warp_argmax(const float *v, int n, int lane) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = lane; i < n; i += 32) mr_pick(&bv, &bi, v[i], i);
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        mr_pick(&bv, &bi, ov, oi);
    }
    return bi;
}

__device__ static inline float mr_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ static inline float mr_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void __launch_bounds__(MR_THREADS) tw_k_moe_route(const tw_moe_route_args a) {
    __shared__ float s_all[MR_WARPS][TW_MOE_MAX_EXPERTS];
    __shared__ float c_all[MR_WARPS][TW_MOE_MAX_EXPERTS];
    __shared__ float g_all[MR_WARPS][TW_MOE_MAX_EXPERTS];
    __shared__ unsigned char k_all[MR_WARPS][TW_MOE_MAX_EXPERTS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t = blockIdx.x * MR_WARPS + warp;
    if (t >= a.tokens) return; /* a whole warp leaves: the shuffles below stay full-warp */
    const int E = a.n_experts, K = a.top_k, G = a.n_group, per = E / G;
    float *s = s_all[warp], *ch = c_all[warp], *gs = g_all[warp];
    unsigned char *kept = k_all[warp];
    const float *lg = a.logits + (size_t)t * E;
    for (int e = lane; e < E; e += 32) s[e] = lg[e] + (a.logit_bias ? a.logit_bias[e] : 0.0f);
    __syncwarp();
    if (a.scoring == TW_ROUTE_SOFTMAX) {
        float m = -INFINITY;
        for (int e = lane; e < E; e += 32) m = fmaxf(m, s[e]);
        m = mr_warp_max(m);
        float sum = 0.0f;
        for (int e = lane; e < E; e += 32) sum += (s[e] = expf(s[e] - m));
        sum = mr_warp_sum(sum);
        for (int e = lane; e < E; e += 32) s[e] /= sum;
    } else {
        for (int e = lane; e < E; e += 32) s[e] = 1.0f / (1.0f + expf(-s[e]));
    }
    for (int e = lane; e < E; e += 32)
        ch[e] = s[e] + (a.choice_bias ? (a.choice_dtype == TW_BF16
                                             ? tw_f32_from_bf16(((const tw_bf16 *)a.choice_bias)[e])
                                             : ((const float *)a.choice_bias)[e])
                                      : 0.0f);
    __syncwarp();
    if (G > 1) {
        for (int g = lane; g < G; g += 32) { /* a lane scores a whole group */
            const float *cg = ch + (size_t)g * per;
            int b1 = 0;
            for (int i = 1; i < per; i++) b1 = cg[i] > cg[b1] ? i : b1;
            float v = cg[b1];
            if (a.group_top2) {
                int b2 = -1;
                for (int i = 0; i < per; i++)
                    if (i != b1 && (b2 < 0 || cg[i] > cg[b2])) b2 = i;
                v += cg[b2];
            }
            gs[g] = v;
            kept[g] = 0;
        }
        __syncwarp();
        /* keep the best topk_group groups (a kept group leaves the race), drop the rest */
        for (int i = 0; i < a.topk_group; i++) {
            int g = mr_warp_argmax(gs, G, lane);
            __syncwarp();
            if (lane == 0) {
                kept[g] = 1;
                gs[g] = -INFINITY;
            }
            __syncwarp();
        }
        for (int e = lane; e < E; e += 32)
            if (!kept[e / per]) ch[e] = -INFINITY;
        __syncwarp();
    }
    int myidx = 0;
    float myw = 0.0f, sum = 0.0f;
    for (int j = 0; j < K; j++) {
        int e = mr_warp_argmax(ch, E, lane);
        float w = s[e];
        sum += w;
        if (lane == j) myidx = e, myw = w; /* lane j keeps slot j (K <= 32) */
        __syncwarp();
        if (lane == 0) ch[e] = -INFINITY;
        __syncwarp();
    }
    if (lane < K) {
        float den = a.scoring == TW_ROUTE_SIGMOID ? sum + 1e-20f : sum;
        a.idx[(size_t)t * K + lane] = myidx;
        a.weight[(size_t)t * K + lane] = (a.norm_topk ? myw / den : myw) * a.scale;
    }
}

tw_status tw_cuda_moe_route_run(tw_cuda_ctx *ctx, const tw_moe_route_args *a) {
    int blocks = tw_cuda_div_up(a->tokens, MR_WARPS);
    tw_k_moe_route<<<blocks, MR_THREADS, 0, ctx->stream>>>(*a);
    TW_CU_LAUNCHED(ctx, "moe_route");
    return TW_OK;
}

/* ---- grouped expert MLP -----------------------------------------------------------------------
 */
typedef struct {
    float *xs, *gu, *act, *out;
    int *pos, *token, *count, *offset, *cursor;
} tw_moe_dev_work;

static tw_moe_dev_work moe_carve(void *work, int slots, int hidden, int ffn, int n_experts) {
    tw_moe_dev_work w;
    char *p = (char *)work;
    w.xs = (float *)p, p += sizeof(float) * (size_t)slots * hidden;
    w.gu = (float *)p, p += sizeof(float) * (size_t)slots * 2 * ffn;
    w.act = (float *)p, p += sizeof(float) * (size_t)slots * ffn;
    w.out = (float *)p, p += sizeof(float) * (size_t)slots * hidden;
    w.pos = (int *)p, p += sizeof(int) * (size_t)slots;
    w.token = (int *)p, p += sizeof(int) * (size_t)slots;
    w.count = (int *)p, p += sizeof(int) * (size_t)n_experts;
    w.offset = (int *)p, p += sizeof(int) * (size_t)(n_experts + 1);
    w.cursor = (int *)p;
    return w;
}

__global__ void __launch_bounds__(MC_THREADS)
    tw_k_moe_count(int slots, int top_k, int n_experts, int expert0, const int *idx,
                   tw_moe_dev_work w, int *counts_out) {
    __shared__ int cnt[TW_MOE_MAX_EXPERTS], off[TW_MOE_MAX_EXPERTS], cur[TW_MOE_MAX_EXPERTS];
    for (int e = threadIdx.x; e < n_experts; e += blockDim.x) cnt[e] = 0, cur[e] = 0;
    __syncthreads();
    for (int s = threadIdx.x; s < slots; s += blockDim.x) {
        int e = idx[s] - expert0;
        if (e >= 0 && e < n_experts) atomicAdd(&cnt[e], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) { /* n_experts <= 512: a serial prefix is cheap */
        int acc = 0;
        for (int e = 0; e < n_experts; e++) {
            off[e] = acc;
            w.offset[e] = acc;
            acc += cnt[e];
        }
        w.offset[n_experts] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
        w.count[e] = cnt[e];
        if (counts_out) counts_out[e] = cnt[e];
    }
    for (int s = threadIdx.x; s < slots; s += blockDim.x) {
        int e = idx[s] - expert0;
        if (e < 0 || e >= n_experts) {
            w.pos[s] = -1;
            continue;
        }
        int p = off[e] + atomicAdd(&cur[e], 1);
        w.pos[s] = p;
        w.token[p] = s / top_k;
    }
}

__global__ void __launch_bounds__(ME_THREADS)
    tw_k_moe_gather(int slots, int n_experts, int hidden, const float *x, tw_moe_dev_work w) {
    const size_t rows = (size_t)w.offset[n_experts];
    const size_t total = rows * hidden;
    (void)slots;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t p = i / hidden, c = i % hidden;
        w.xs[i] = x[(size_t)w.token[p] * hidden + c];
    }
}

/* y[off_e + r, n] = x[off_e + r, k] . W_e[n, k]^T for the rows r < count_e of expert e */
template <bool BF16>
__global__ void __launch_bounds__(MG_THREADS)
    tw_k_moe_gemm(int n, int k, const float *__restrict__ x, const void *__restrict__ w_all,
                  size_t w_stride, float *__restrict__ y, const int *__restrict__ offset,
                  const int *__restrict__ count) {
    __shared__ float as[MG_BK][MG_TILE + 4]; /* [k][m] */
    __shared__ float bs[MG_BK][MG_TILE + 4]; /* [k][n] */
    const int e = blockIdx.z, m = count[e], m0 = blockIdx.y * MG_TILE, n0 = blockIdx.x * MG_TILE;
    if (m0 >= m) return; /* the whole block: no barrier is skipped by part of it */
    const float *xe = x + (size_t)offset[e] * k;
    float *ye = y + (size_t)offset[e] * n;
    const tw_bf16 *wb = (const tw_bf16 *)w_all + (BF16 ? (size_t)e * w_stride : 0);
    const float *wf = (const float *)w_all + (BF16 ? 0 : (size_t)e * w_stride);
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += MG_BK) {
#pragma unroll
        for (int i = 0; i < (MG_TILE * MG_BK) / MG_THREADS; i++) {
            int el = tid + i * MG_THREADS;
            int r = el / MG_BK, kk = el % MG_BK;
            bool kin = k0 + kk < k;
            as[kk][r] = (m0 + r < m && kin) ? xe[(size_t)(m0 + r) * k + k0 + kk] : 0.0f;
            size_t wi = (size_t)(n0 + r) * k + k0 + kk;
            float wv = 0.0f;
            if (n0 + r < n && kin) wv = BF16 ? tw_f32_from_bf16(wb[wi]) : wf[wi];
            bs[kk][r] = wv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MG_BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = as[kk][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = bs[kk][tx * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int row = m0 + ty * 4 + i;
        if (row >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int col = n0 + tx * 4 + j;
            if (col < n) ye[(size_t)row * n + col] = acc[i][j];
        }
    }
}

__global__ void __launch_bounds__(ME_THREADS)
    tw_k_moe_swiglu(int n_experts, int ffn, tw_moe_dev_work w) {
    const size_t total = (size_t)w.offset[n_experts] * ffn;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / ffn, c = i % ffn;
        w.act[i] = tw_silu(w.gu[r * 2 * ffn + c]) * w.gu[r * 2 * ffn + ffn + c];
    }
}

__global__ void __launch_bounds__(ME_THREADS)
    tw_k_moe_combine(int tokens, int top_k, int hidden, const float *weight, tw_moe_dev_work w,
                     float *y, int accumulate) {
    const size_t total = (size_t)tokens * hidden;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / hidden, c = i % hidden;
        float acc = accumulate ? y[i] : 0.0f;
        for (int j = 0; j < top_k; j++) { /* slot order, as on the CPU */
            int p = w.pos[t * top_k + j];
            if (p >= 0) acc += weight[t * top_k + j] * w.out[(size_t)p * hidden + c];
        }
        y[i] = acc;
    }
}

static int me_grid(size_t n) {
    size_t b = (n + ME_THREADS - 1) / ME_THREADS;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return b < 1 ? 1 : (int)b;
}

static tw_status moe_gemm(tw_cuda_ctx *ctx, int tokens, int n_experts, int n, int k, const float *x,
                          const void *w, tw_dtype dt, float *y, const tw_moe_dev_work *wk,
                          const char *what) {
    dim3 grid(tw_cuda_div_up(n, MG_TILE), tw_cuda_div_up(tokens, MG_TILE), n_experts);
    size_t stride = (size_t)n * k;
    if (dt == TW_BF16)
        tw_k_moe_gemm<true>
            <<<grid, MG_THREADS, 0, ctx->stream>>>(n, k, x, w, stride, y, wk->offset, wk->count);
    else
        tw_k_moe_gemm<false>
            <<<grid, MG_THREADS, 0, ctx->stream>>>(n, k, x, w, stride, y, wk->offset, wk->count);
    TW_CU_LAUNCHED(ctx, what);
    return TW_OK;
}

tw_status tw_cuda_moe_ffn_run(tw_cuda_ctx *ctx, const tw_moe_ffn_args *a) {
    const int slots = a->tokens * a->top_k, E = a->n_experts, H = a->hidden, F = a->ffn;
    tw_moe_dev_work w = moe_carve(a->work, slots, H, F, E);
    tw_k_moe_count<<<1, MC_THREADS, 0, ctx->stream>>>(slots, a->top_k, E, a->expert0, a->idx, w,
                                                      a->counts);
    TW_CU_LAUNCHED(ctx, "moe_ffn count");
    tw_k_moe_gather<<<me_grid((size_t)slots * H), ME_THREADS, 0, ctx->stream>>>(slots, E, H, a->x,
                                                                                w);
    TW_CU_LAUNCHED(ctx, "moe_ffn gather");
    TW_TRY(moe_gemm(ctx, a->tokens, E, 2 * F, H, w.xs, a->w_gate_up, a->w_dtype, w.gu, &w,
                    "moe_ffn gate/up GEMM"));
    tw_k_moe_swiglu<<<me_grid((size_t)slots * F), ME_THREADS, 0, ctx->stream>>>(E, F, w);
    TW_CU_LAUNCHED(ctx, "moe_ffn swiglu");
    TW_TRY(moe_gemm(ctx, a->tokens, E, H, F, w.act, a->w_down, a->w_dtype, w.out, &w,
                    "moe_ffn down GEMM"));
    tw_k_moe_combine<<<me_grid((size_t)a->tokens * H), ME_THREADS, 0, ctx->stream>>>(
        a->tokens, a->top_k, H, a->weight, w, a->y, a->accumulate);
    TW_CU_LAUNCHED(ctx, "moe_ffn combine");
    return TW_OK;
}
