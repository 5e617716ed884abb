/* Causal grouped-query flash attention for prefill (FlashAttention-2 structure, mma.sync).
 *
 * Block: 4 warps, 64 query rows of one (sequence, head); each warp owns 16 rows. Q is read once
 * into registers as bf16 A fragments; K and V tiles of 64 keys stream through a 2-stage shared
 * buffer (cp.async for a bf16 cache; fp32 caches are converted to bf16 on the way in). Per tile:
 * S = Q K^T (mma.sync), causal mask, online softmax in registers (base-2 exponentials with the
 * scale folded in: exp(x) = exp2(x * log2 e)), P re-used directly as the A fragments of O += P V
 * (the accumulator layout of S equals the A layout of P), V fragments via ldmatrix.trans.
 * One pass over K and V; tiles past the block's last query position, and with a sliding window
 * those before its first query's window, are never loaded.
 * Shared rows are padded by 16 bytes (D + 8 bf16) so ldmatrix phases are bank-conflict free.
 * Head dims 64 and 128 take this path; head dims 32 and 256 take a simple one-warp-per-row SIMT
 * kernel (tw_k_attn_prefill_simt), which is a correctness path. Other head dims (e.g. 96) are
 * rejected with TW_ERR_UNSUPPORTED: only those two SIMT instances are launched (this comment used
 * to claim every multiple of 32 up to 256). */
#include "tw_cuda_internal.cuh"
#include "tw_mma.cuh"

#define AP_BM      64
#define AP_BN      64
#define AP_THREADS 128

typedef struct {
    int batch, seq, n_heads, n_kv, max_seq;
    const int *start; /* [batch] device */
    const float *q;
    const void *k, *v;
    float *out;
    float scale;
    int window; /* sliding window (0: none) */
} tw_ap_params;

template <int D> struct ap_cfg {
    static const int LDS = D + 8;
    static const int SMEM = 2 /*stages*/ * 2 /*K,V*/ * AP_BN * LDS * 2 /*bytes*/;
};

/* Loads keys [j0, j0 + BN) of K and V (rows >= kv_end zero-filled) into a shared stage. */
template <int D, bool BF16>
__device__ static inline void ap_load_kv(__nv_bfloat16 *sk, __nv_bfloat16 *sv, const void *kbase,
                                         const void *vbase, int j0, int kv_end) {
    const int LDS = ap_cfg<D>::LDS;
    if (BF16) {
        const __nv_bfloat16 *kb = (const __nv_bfloat16 *)kbase, *vb = (const __nv_bfloat16 *)vbase;
#pragma unroll
        for (int i = 0; i < AP_BN * (D / 8) / AP_THREADS; i++) {
            int c = threadIdx.x + i * AP_THREADS;
            int row = c / (D / 8), col = (c % (D / 8)) * 8;
            int key = j0 + row;
            bool ok = key < kv_end;
            size_t off = ok ? (size_t)key * D + col : 0;
            tw_cp_async16(sk + row * LDS + col, kb + off, ok ? 16 : 0);
            tw_cp_async16(sv + row * LDS + col, vb + off, ok ? 16 : 0);
        }
    } else {
        const float *kf = (const float *)kbase, *vf = (const float *)vbase;
#pragma unroll 4
        for (int i = 0; i < AP_BN * (D / 4) / AP_THREADS; i++) {
            int c = threadIdx.x + i * AP_THREADS;
            int row = c / (D / 4), col = (c % (D / 4)) * 4;
            int key = j0 + row;
            float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
            if (key < kv_end) {
                a = *(const float4 *)(kf + (size_t)key * D + col);
                b = *(const float4 *)(vf + (size_t)key * D + col);
            }
            uint2 pa, pb;
            pa.x = tw_pack_bf16x2(a.x, a.y);
            pa.y = tw_pack_bf16x2(a.z, a.w);
            pb.x = tw_pack_bf16x2(b.x, b.y);
            pb.y = tw_pack_bf16x2(b.z, b.w);
            *(uint2 *)(sk + row * LDS + col) = pa;
            *(uint2 *)(sv + row * LDS + col) = pb;
        }
    }
}

template <int D, bool BF16>
__global__ void __launch_bounds__(AP_THREADS, 1) tw_k_attn_prefill_mma(const tw_ap_params p) {
    const int LDS = ap_cfg<D>::LDS;
    extern __shared__ __align__(16) unsigned char ap_smem[];
    __nv_bfloat16 *s_k = (__nv_bfloat16 *)ap_smem; /* [2][BN][LDS] */
    __nv_bfloat16 *s_v = s_k + 2 * AP_BN * LDS;    /* [2][BN][LDS] */

    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * AP_BM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = h / (p.n_heads / p.n_kv);
    const int start = p.start[b];
    const int kv_end = start + min(q0 + AP_BM, p.seq); /* keys this block needs: [.., kv_end) */
    /* with a sliding window no row of the block reads keys before its first row's window:
     * those tiles are never loaded */
    const int j_first = tw_attn_window_lo(start + q0, p.window) / AP_BN;
    const size_t kv_off = ((size_t)b * p.n_kv + kvh) * p.max_seq * D;
    const size_t esz = BF16 ? 2 : 4;
    const void *kbase = (const unsigned char *)p.k + kv_off * esz;
    const void *vbase = (const unsigned char *)p.v + kv_off * esz;
    const float sl2 = p.scale * 1.4426950408889634f; /* scores in log2 units */

    /* Q fragments: rows r0 (= g) and r1 (= g + 8) of this warp's 16 */
    const int r0 = q0 + warp * 16 + tw_mma_a_row(lane, 0),
              r1 = q0 + warp * 16 + tw_mma_a_row(lane, 1);
    const float *q_r0 = p.q + (((size_t)b * p.seq + r0) * p.n_heads + h) * D;
    const float *q_r1 = p.q + (((size_t)b * p.seq + r1) * p.n_heads + h) * D;
    const bool in0 = r0 < p.seq, in1 = r1 < p.seq;
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        int d0 = kk * 16 + tw_mma_a_col(lane, 0), d2 = kk * 16 + tw_mma_a_col(lane, 2);
        qf[kk][0] = in0 ? tw_pack_bf16x2(q_r0[d0], q_r0[d0 + 1]) : 0u;
        qf[kk][1] = in1 ? tw_pack_bf16x2(q_r1[d0], q_r1[d0 + 1]) : 0u;
        qf[kk][2] = in0 ? tw_pack_bf16x2(q_r0[d2], q_r0[d2 + 1]) : 0u;
        qf[kk][3] = in1 ? tw_pack_bf16x2(q_r1[d2], q_r1[d2 + 1]) : 0u;
    }
    const int pos0 = start + r0, pos1 = start + r1;
    const int lo0 = tw_attn_window_lo(pos0, p.window), lo1 = tw_attn_window_lo(pos1, p.window);

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float row_m[2] = {-INFINITY, -INFINITY}, row_l[2] = {0.0f, 0.0f};

    const int n_tiles = (kv_end + AP_BN - 1) / AP_BN;
    ap_load_kv<D, BF16>(s_k, s_v, kbase, vbase, j_first * AP_BN, kv_end);
    tw_cp_async_commit();
    for (int j = j_first; j < n_tiles; j++) {
        const int cur = (j - j_first) % 2;
        if (j + 1 < n_tiles) {
            int nx = (j + 1 - j_first) % 2;
            ap_load_kv<D, BF16>(s_k + nx * AP_BN * LDS, s_v + nx * AP_BN * LDS, kbase, vbase,
                                (j + 1) * AP_BN, kv_end);
            tw_cp_async_commit();
            tw_cp_async_wait<1>();
        } else {
            tw_cp_async_wait<0>();
        }
        __syncthreads();
        const __nv_bfloat16 *sk = s_k + cur * AP_BN * LDS;
        const __nv_bfloat16 *sv = s_v + cur * AP_BN * LDS;
        const int j0 = j * AP_BN;

        /* S = Q K^T: 16 x 64 per warp */
        float s[AP_BN / 8][4];
#pragma unroll
        for (int i = 0; i < AP_BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int np = 0; np < AP_BN / 16; np++) {
                uint32_t r[4];
                tw_ldmatrix_x4(r, sk + (np * 16 + tw_ldsm_b_row(lane)) * LDS + kk * 16 +
                                      tw_ldsm_b_col(lane));
                tw_mma_bf16_16816(s[2 * np], qf[kk], r[0], r[1]);
                tw_mma_bf16_16816(s[2 * np + 1], qf[kk], r[2], r[3]);
            }
        }
        /* scale, causal mask and sliding window, row maxima (a row is spread over the 4 lanes
         * of a quad) */
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < AP_BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = j0 + nt * 8 + tw_mma_c_col(lane, e);
                bool top = tw_mma_c_row(lane, e) < 8;
                int pos = top ? pos0 : pos1, lo = top ? lo0 : lo1;
                float v = (key > pos || key < lo) ? -INFINITY : s[nt][e] * sl2;
                s[nt][e] = v;
                mx[e / 2] = fmaxf(mx[e / 2], v);
            }
        }
        float alpha[2], base[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float m_new = fmaxf(row_m[r], mx[r]);
            /* a row with no key yet keeps m = -inf; use 0 as base so nothing becomes NaN */
            base[r] = m_new == -INFINITY ? 0.0f : m_new;
            alpha[r] = exp2f(row_m[r] - base[r]); /* exp2(-inf) = 0 on the first key */
            row_m[r] = m_new;
        }
        float psum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int nt = 0; nt < AP_BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float pv = exp2f(s[nt][e] - base[e / 2]);
                s[nt][e] = pv;
                psum[e / 2] += pv;
            }
        }
#pragma unroll
        for (int r = 0; r < 2; r++) row_l[r] = row_l[r] * alpha[r] + psum[r];
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            o[dt][0] *= alpha[0];
            o[dt][1] *= alpha[0];
            o[dt][2] *= alpha[1];
            o[dt][3] *= alpha[1];
        }
        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < AP_BN / 16; kk++) {
            uint32_t pa[4];
            pa[0] = tw_pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = tw_pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = tw_pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = tw_pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t r[4];
                tw_ldmatrix_x4_trans(r, sv + (kk * 16 + tw_ldsm_bt_row(lane)) * LDS + dp * 16 +
                                            tw_ldsm_bt_col(lane));
                tw_mma_bf16_16816(o[2 * dp], pa, r[0], r[1]);
                tw_mma_bf16_16816(o[2 * dp + 1], pa, r[2], r[3]);
            }
        }
        __syncthreads(); /* the next iteration refills the other stage, then this one */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 1);
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 2);
    }
    float inv0 = 1.0f / row_l[0], inv1 = 1.0f / row_l[1];
    float *o_r0 = p.out + (((size_t)b * p.seq + r0) * p.n_heads + h) * D;
    float *o_r1 = p.out + (((size_t)b * p.seq + r1) * p.n_heads + h) * D;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        int d = dt * 8 + tw_mma_c_col(lane, 0);
        if (in0) {
            o_r0[d] = o[dt][0] * inv0;
            o_r0[d + 1] = o[dt][1] * inv0;
        }
        if (in1) {
            o_r1[d] = o[dt][2] * inv1;
            o_r1[d + 1] = o[dt][3] * inv1;
        }
    }
}

/* ---- SIMT path for other head dims: one warp per (token, head), lanes own D/32 dims each ---- */
template <int EPL, bool BF16>
__global__ void __launch_bounds__(AP_THREADS) tw_k_attn_prefill_simt(const tw_ap_params p) {
    const int D = EPL * 32;
    const int lane = threadIdx.x % 32;
    const size_t row = (size_t)blockIdx.x * (AP_THREADS / 32) + threadIdx.x / 32;
    if (row >= (size_t)p.batch * p.seq * p.n_heads) return; /* warp-uniform */
    const int h = (int)(row % p.n_heads);
    const size_t tok = row / p.n_heads;
    const int s = (int)(tok % p.seq), b = (int)(tok / p.seq);
    const int kvh = h / (p.n_heads / p.n_kv);
    const int pos = p.start[b] + s;
    const size_t kv_off = ((size_t)b * p.n_kv + kvh) * p.max_seq * D;
    float q[EPL], o[EPL];
#pragma unroll
    for (int e = 0; e < EPL; e++) {
        q[e] = p.q[row * D + lane * EPL + e] * p.scale;
        o[e] = 0.0f;
    }
    tw_softmax_state st = tw_softmax_init();
    for (int key = tw_attn_window_lo(pos, p.window); key <= pos; key++) {
        size_t base = kv_off + (size_t)key * D + lane * EPL;
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            float kv = BF16 ? tw_f32_from_bf16(((const tw_bf16 *)p.k)[base + e])
                            : ((const float *)p.k)[base + e];
            dot += q[e] * kv;
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        float alpha;
        float w = tw_softmax_push(&st, dot, &alpha);
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            float vv = BF16 ? tw_f32_from_bf16(((const tw_bf16 *)p.v)[base + e])
                            : ((const float *)p.v)[base + e];
            o[e] = o[e] * alpha + w * vv;
        }
    }
#pragma unroll
    for (int e = 0; e < EPL; e++) p.out[row * D + lane * EPL + e] = o[e] / st.l;
}

template <int D, bool BF16> static tw_status ap_set_smem(tw_cuda_ctx *ctx) {
    TW_CU(ctx, cudaFuncSetAttribute(tw_k_attn_prefill_mma<D, BF16>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, ap_cfg<D>::SMEM));
    return TW_OK;
}

tw_status tw_cuda_attn_prefill_init(tw_cuda_ctx *ctx) {
    TW_TRY((ap_set_smem<64, true>(ctx)));
    TW_TRY((ap_set_smem<64, false>(ctx)));
    TW_TRY((ap_set_smem<128, true>(ctx)));
    TW_TRY((ap_set_smem<128, false>(ctx)));
    return TW_OK;
}

template <int D, bool BF16> static void ap_launch_mma(cudaStream_t st, const tw_ap_params &p) {
    dim3 grid(tw_cuda_div_up(p.seq, AP_BM), p.n_heads, p.batch);
    tw_k_attn_prefill_mma<D, BF16><<<grid, AP_THREADS, ap_cfg<D>::SMEM, st>>>(p);
}

template <int EPL> static void ap_launch_simt(cudaStream_t st, const tw_ap_params &p, bool bf16) {
    size_t rows = (size_t)p.batch * p.seq * p.n_heads;
    unsigned blocks = (unsigned)((rows + AP_THREADS / 32 - 1) / (AP_THREADS / 32));
    if (bf16)
        tw_k_attn_prefill_simt<EPL, true><<<blocks, AP_THREADS, 0, st>>>(p);
    else
        tw_k_attn_prefill_simt<EPL, false><<<blocks, AP_THREADS, 0, st>>>(p);
}

tw_status tw_cuda_attn_prefill_run(tw_cuda_ctx *ctx, const tw_attn_prefill_args *a,
                                   const int *start_pos_dev) {
    tw_ap_params p;
    p.batch = a->batch;
    p.seq = a->seq;
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv_heads;
    p.max_seq = a->max_seq;
    p.start = start_pos_dev;
    p.q = a->q;
    p.k = a->k_cache;
    p.v = a->v_cache;
    p.out = a->out;
    p.scale = a->scale;
    p.window = a->window;
    bool bf16 = a->kv_dtype == TW_BF16;
    const char *path;
    if (a->head_dim == 64 || a->head_dim == 128) {
        if ((uintptr_t)a->k_cache % 16 || (uintptr_t)a->v_cache % 16)
            return TW_ERR(TW_ERR_INVALID,
                          "cuda attn_prefill: k_cache/v_cache must be 16-byte aligned");
        if (a->n_heads > 65535 || a->batch > 65535)
            return TW_ERR(TW_ERR_INVALID, "cuda attn_prefill: grid too large (heads %d batch %d)",
                          a->n_heads, a->batch);
        if (a->head_dim == 64)
            bf16 ? ap_launch_mma<64, true>(ctx->stream, p)
                 : ap_launch_mma<64, false>(ctx->stream, p);
        else
            bf16 ? ap_launch_mma<128, true>(ctx->stream, p)
                 : ap_launch_mma<128, false>(ctx->stream, p);
        path = "attn_prefill (mma.sync flash)";
    } else {
        switch (a->head_dim) {
        case 32:
            ap_launch_simt<1>(ctx->stream, p, bf16);
            break;
        case 256:
            ap_launch_simt<8>(ctx->stream, p, bf16);
            break;
        default:
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "cuda attn_prefill: head_dim %d not supported (32, 64, 128, 256)",
                          a->head_dim);
        }
        path = "attn_prefill (simt)";
    }
    TW_CU_LAUNCHED(ctx, path);
    return TW_OK;
}
