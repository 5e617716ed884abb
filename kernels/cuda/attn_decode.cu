/* Split-KV decode attention (flash-decoding): one new query per sequence, sequences of
 * different lengths in one batch.
 *
 * Phase 1, grid (splits, n_kv_heads x head-groups, batch), 4 warps per block: the block owns
 * one KV head and up to AD_GMAX of the query heads that share it (grouped-query: each K/V row is
 * read once for the whole group). Sequence b's attended keys (all len_b, or the last W with a
 * sliding window) are divided evenly among the splits on the device, so the split count depends
 * only on shapes, not on the lengths: a captured CUDA graph stays correct as lengths grow. Warps
 * take keys round-robin; lanes own D/32 contiguous dims; scores are warp-reduced and folded with
 * the shared online softmax helper (tw_softmax_push). The 4 warps are merged in shared memory into
 * one normalised partial output and its log-sum-exp per (head, split). Phase 2, grid (n_heads,
 * batch): the partials are merged with tw_lse_add / tw_splitkv_weight, the same helpers the CPU
 * code and tests use. Empty splits carry lse = -inf and weight 0. */
#include "tw_cuda_index.h"
#include "tw_cuda_internal.cuh"

#define AD_THREADS 128
#define AD_WARPS   (AD_THREADS / 32)
#define AD_GMAX    8

typedef struct {
    int n_heads, n_kv, max_seq, splits, hgroups;
    const int *lens; /* [batch] device */
    const float *q;
    const void *k, *v;
    float *part_o;   /* [batch, n_heads, splits, D] */
    float *part_lse; /* [batch, n_heads, splits] */
    float scale;
    int window; /* sliding window (0: none) */
} tw_ad_params;

template <int EPL, bool BF16>
__device__ static inline void ad_load_row(const void *base, size_t off, float out[EPL]) {
    if (BF16) {
        const tw_bf16 *p = (const tw_bf16 *)base + off;
#pragma unroll
        for (int e = 0; e < EPL; e++) out[e] = tw_f32_from_bf16(p[e]);
    } else {
        const float *p = (const float *)base + off;
#pragma unroll
        for (int e = 0; e < EPL; e++) out[e] = p[e];
    }
}

template <int EPL, bool BF16>
__global__ void __launch_bounds__(AD_THREADS) tw_k_attn_decode_split(const tw_ad_params p) {
    const int D = EPL * 32;
    __shared__ float w_m[AD_WARPS][AD_GMAX], w_l[AD_WARPS][AD_GMAX];
    __shared__ float w_o[AD_WARPS][AD_GMAX][D];

    const int split = blockIdx.x, b = blockIdx.z;
    const int kvh = blockIdx.y / p.hgroups, hg = blockIdx.y % p.hgroups;
    const int group = p.n_heads / p.n_kv;
    const int h0 = kvh * group + hg * AD_GMAX;
    const int ng = min(AD_GMAX, group - hg * AD_GMAX);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    const int len = p.lens[b];
    /* the splits share the keys the query attends: [lo, len), lo > 0 with a sliding window */
    const int lo = tw_attn_window_lo(len - 1, p.window);
    int s0, s1;
    tw_splitkv_range(len - lo, p.splits, split, &s0, &s1);
    s0 += lo;
    s1 += lo;

    float q[AD_GMAX][EPL], o[AD_GMAX][EPL];
    tw_softmax_state st[AD_GMAX];
#pragma unroll
    for (int gi = 0; gi < AD_GMAX; gi++) {
        st[gi] = tw_softmax_init();
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            o[gi][e] = 0.0f;
            q[gi][e] = gi < ng
                           ? p.q[((size_t)b * p.n_heads + h0 + gi) * D + lane * EPL + e] * p.scale
                           : 0.0f;
        }
    }
    const size_t kv_off = ((size_t)b * p.n_kv + kvh) * p.max_seq * D + lane * EPL;
    for (int key = s0 + warp; key < s1; key += AD_WARPS) {
        float kf[EPL], vf[EPL];
        ad_load_row<EPL, BF16>(p.k, kv_off + (size_t)key * D, kf);
        ad_load_row<EPL, BF16>(p.v, kv_off + (size_t)key * D, vf);
#pragma unroll
        for (int gi = 0; gi < AD_GMAX; gi++) {
            if (gi < ng) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < EPL; e++) dot += q[gi][e] * kf[e];
                for (int off = 16; off > 0; off >>= 1)
                    dot += __shfl_xor_sync(0xffffffffu, dot, off);
                float alpha;
                float w = tw_softmax_push(&st[gi], dot, &alpha);
#pragma unroll
                for (int e = 0; e < EPL; e++) o[gi][e] = o[gi][e] * alpha + w * vf[e];
            }
        }
    }
#pragma unroll
    for (int gi = 0; gi < AD_GMAX; gi++) {
        if (lane == 0) {
            w_m[warp][gi] = st[gi].m;
            w_l[warp][gi] = st[gi].l;
        }
#pragma unroll
        for (int e = 0; e < EPL; e++) w_o[warp][gi][lane * EPL + e] = o[gi][e];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < ng * D; idx += AD_THREADS) {
        int gi = idx / D, d = idx % D;
        float mx = -INFINITY;
        for (int w = 0; w < AD_WARPS; w++) mx = fmaxf(mx, w_m[w][gi]);
        float lsum = 0.0f, osum = 0.0f;
        if (mx != -INFINITY) {
            for (int w = 0; w < AD_WARPS; w++) {
                if (w_m[w][gi] == -INFINITY) continue;
                float f = expf(w_m[w][gi] - mx);
                lsum += w_l[w][gi] * f;
                osum += w_o[w][gi][d] * f;
            }
        }
        size_t ph = ((size_t)b * p.n_heads + h0 + gi) * p.splits + split;
        p.part_o[ph * D + d] = lsum > 0.0f ? osum / lsum : 0.0f;
        if (d == 0) {
            tw_softmax_state m;
            m.m = mx;
            m.l = lsum;
            p.part_lse[ph] = tw_softmax_lse(m);
        }
    }
}

__global__ void __launch_bounds__(AD_THREADS)
    tw_k_attn_decode_merge(int n_heads, int splits, int D, const float *part_o,
                           const float *part_lse, float *out) {
    const size_t bh = (size_t)blockIdx.y * n_heads + blockIdx.x;
    const float *lse = part_lse + bh * splits;
    float total = -INFINITY;
    for (int i = 0; i < splits; i++) total = tw_lse_add(total, lse[i]);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < splits; i++) {
            float w = tw_splitkv_weight(lse[i], total);
            if (w != 0.0f) acc += w * part_o[(bh * splits + i) * D + d];
        }
        out[bh * D + d] = acc;
    }
}

template <int EPL>
static void ad_launch(cudaStream_t st, const tw_ad_params &p, int batch, bool bf16) {
    dim3 grid(p.splits, p.n_kv * p.hgroups, batch);
    if (bf16)
        tw_k_attn_decode_split<EPL, true><<<grid, AD_THREADS, 0, st>>>(p);
    else
        tw_k_attn_decode_split<EPL, false><<<grid, AD_THREADS, 0, st>>>(p);
}

tw_status tw_cuda_attn_decode_run(tw_cuda_ctx *ctx, const tw_attn_decode_args *a,
                                  const int *lens_dev, int max_len) {
    (void)max_len;
    const int D = a->head_dim;
    const int group = a->n_heads / a->n_kv_heads;
    tw_ad_params p;
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv_heads;
    p.max_seq = a->max_seq;
    p.hgroups = tw_cuda_div_up(group, AD_GMAX);
    /* splits from shapes only (graph-safe): ~2 blocks per SM, each split >= 64 keys of max_seq */
    int blocks = a->batch * a->n_kv_heads * p.hgroups;
    int splits = tw_cuda_div_up(2 * ctx->sm_count, blocks);
    int cap = tw_cuda_div_up(a->max_seq, 64);
    if (splits > cap) splits = cap;
    if (splits > 64) splits = 64;
    if (splits < 1) splits = 1;
    p.splits = splits;
    size_t parts = (size_t)a->batch * a->n_heads * splits;
    TW_TRY(tw_cuda_scratch_reserve(ctx, &ctx->split, parts * (D + 1) * sizeof(float),
                                   "attn_decode partials"));
    p.part_o = (float *)ctx->split.p;
    p.part_lse = p.part_o + parts * D;
    p.lens = lens_dev;
    p.q = a->q;
    p.k = a->k_cache;
    p.v = a->v_cache;
    p.scale = a->scale;
    p.window = a->window;
    if (a->batch > 65535 || p.n_kv * p.hgroups > 65535)
        return TW_ERR(TW_ERR_INVALID, "cuda attn_decode: grid too large (batch %d)", a->batch);
    bool bf16 = a->kv_dtype == TW_BF16;
    switch (D) {
    case 32:
        ad_launch<1>(ctx->stream, p, a->batch, bf16);
        break;
    case 64:
        ad_launch<2>(ctx->stream, p, a->batch, bf16);
        break;
    case 128:
        ad_launch<4>(ctx->stream, p, a->batch, bf16);
        break;
    case 256:
        ad_launch<8>(ctx->stream, p, a->batch, bf16);
        break;
    default:
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "cuda attn_decode: head_dim %d not supported (32, 64, 128, 256)", D);
    }
    TW_CU_LAUNCHED(ctx, "attn_decode (split)");
    dim3 mg(a->n_heads, a->batch);
    tw_k_attn_decode_merge<<<mg, AD_THREADS, 0, ctx->stream>>>(a->n_heads, splits, D, p.part_o,
                                                               p.part_lse, a->out);
    TW_CU_LAUNCHED(ctx, "attn_decode (merge)");
    return TW_OK;
}
