/* GEMV-like GEMM for decode (m <= 8 rows of activations), bf16 weights, on the tensor cores:
 * mma.sync m16n8k16 with the weights as A (16 features per warp) and x^T as B (the m rows its
 * columns), fp32 accumulation. Bandwidth-bound on the weights, so
 *  - every weight byte is read once, 16 bytes per lane per load, 4 k blocks of loads in flight;
 *  - x is read once per block (not once per warp: at m = 8, k = 8192 that was 256 KB of fp32
 *    per warp against its 32 KB of weights), staged as bf16 in shared memory, rows >= m zero;
 *  - when the 128-feature blocks alone would not fill the GPU, k is split across blocks
 *    (gridDim.y) and the last block of a feature range to finish adds the partial sums in split
 *    order (deterministic), then re-arms its counter for the next launch (graph replays too).
 * Index arithmetic and the split plan: kernels/tw_cuda_index.h (tw_gv_*), modelled on the CPU
 * by tests/test_cuda_helpers.c. x is rounded to bf16, as the mma.sync GEMM (m > 8) and the cuBLAS
 * path round it. VEC: k % 8 == 0 and 16-byte aligned weights (16-byte loads); otherwise each
 * weight element is loaded alone (any shape, any alignment). */
#include "tw_cuda_internal.cuh"
#include "tw_mma.cuh"

#define GV_UNROLL 4 /* k blocks of weight loads issued before their mma */

/* 16 bytes (8 bf16) of weight row `row` from element k (zeros past n or past kend) */
template <bool VEC>
__device__ static inline uint4 gv_load_w(const __nv_bfloat16 *__restrict__ w, int n, int k, int row,
                                         int kk, int kend) {
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row >= n) return v;
    const __nv_bfloat16 *p = w + (size_t)row * k + kk;
    if (VEC) {
        if (kk < kend) v = __ldg((const uint4 *)p); /* kend and kk are multiples of 8 */
    } else {
        const unsigned short *q = (const unsigned short *)p;
        uint32_t e[8];
#pragma unroll
        for (int j = 0; j < 8; j++) e[j] = kk + j < kend ? __ldg(q + j) : 0u;
        v = make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
    }
    return v;
}

__device__ static inline uint32_t gv_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

template <bool VEC>
__global__ void __launch_bounds__(TW_GV_THREADS)
    tw_k_gemv_bf16(int m, int n, int k, const float *__restrict__ x, int ldx, int x_vec,
                   const __nv_bfloat16 *__restrict__ w, float *__restrict__ y, int ldy,
                   int accumulate, int ks, int pitch, float *__restrict__ part,
                   unsigned *__restrict__ count) {
    extern __shared__ __align__(16) unsigned short gv_xs[]; /* [TW_GV_MAXM][pitch] bf16 */
    __shared__ int gv_last;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int split = blockIdx.y, splits = gridDim.y;
    const int k0 = split * ks, kend = min(k, k0 + ks) - k0; /* this split: [k0, k0 + kend) */

    /* 1. x[0..m)[k0 .. k0 + ks) -> bf16 in shared memory, 4 elements per thread and step */
    const int q4 = ks / 4;
    for (int idx = tid; idx < TW_GV_MAXM * q4; idx += TW_GV_THREADS) {
        const int i = idx / q4, c = (idx % q4) * 4;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (i < m) {
            const float *src = x + (size_t)i * ldx + k0 + c;
            if (x_vec && c + 4 <= kend) {
                float4 f = __ldg((const float4 *)src);
                v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) v[j] = c + j < kend ? __ldg(src + j) : 0.0f;
            }
        }
        uint2 packed = make_uint2(tw_pack_bf16x2(v[0], v[1]), tw_pack_bf16x2(v[2], v[3]));
        *(uint2 *)&gv_xs[i * pitch + c] = packed;
    }
    __syncthreads();

    /* 2. one 16-feature tile per warp over the split's k */
    const int n0 = blockIdx.x * TW_GV_BLOCK_ROWS + warp * TW_GV_ROWS;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (n0 < n) { /* warp-uniform; no return: the block meets again below */
        const int r0 = n0 + tw_gv_lane_row(lane, 0), r1 = n0 + tw_gv_lane_row(lane, 1);
        const __nv_bfloat16 *wk = w + k0;
        for (int kb = 0; kb < kend; kb += GV_UNROLL * TW_GV_KB) {
            uint4 wa[GV_UNROLL], wb[GV_UNROLL], xv[GV_UNROLL];
#pragma unroll
            for (int u = 0; u < GV_UNROLL; u++) { /* loads first: 2 KB per warp in flight */
                const int kk = kb + u * TW_GV_KB + tw_gv_lane_k(lane);
                wa[u] = gv_load_w<VEC>(wk, n, k, r0, kk, kend);
                wb[u] = gv_load_w<VEC>(wk, n, k, r1, kk, kend);
            }
#pragma unroll
            for (int u = 0; u < GV_UNROLL; u++)
                xv[u] = kb + u * TW_GV_KB < ks
                            ? *(const uint4 *)&gv_xs[tw_gv_xs_off(lane, kb + u * TW_GV_KB, pitch)]
                            : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int u = 0; u < GV_UNROLL; u++)
#pragma unroll
                for (int s = 0; s < 2; s++) {
                    uint32_t a[4];
#pragma unroll
                    for (int r = 0; r < 4; r++)
                        a[r] = gv_word(tw_gv_a_half(r) ? wb[u] : wa[u], tw_gv_a_word(r, s));
                    tw_mma_bf16_16816(acc, a, gv_word(xv[u], tw_gv_b_word(0, s)),
                                      gv_word(xv[u], tw_gv_b_word(1, s)));
                }
        }
        /* c_e = y[x row tw_mma_c_col][feature n0 + tw_mma_c_row] */
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = tw_mma_c_col(lane, e), f = n0 + tw_mma_c_row(lane, e);
            if (i >= m || f >= n) continue;
            if (splits == 1) {
                float *dst = y + (size_t)i * ldy + f;
                *dst = acc[e] + (accumulate ? *dst : 0.0f);
            } else {
                part[((size_t)split * m + i) * n + f] = acc[e];
            }
        }
    }
    if (splits == 1) return; /* block-uniform */

    /* 3. split k: the last block of this feature range adds the partials in split order */
    __threadfence(); /* this block's partials before its arrival */
    __syncthreads();
    if (tid == 0) gv_last = atomicAdd(&count[blockIdx.x], 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (!gv_last) return;
    __threadfence(); /* every block's partials after all arrivals */
    for (int idx = tid; idx < m * TW_GV_BLOCK_ROWS; idx += TW_GV_THREADS) {
        const int i = idx / TW_GV_BLOCK_ROWS,
                  f = blockIdx.x * TW_GV_BLOCK_ROWS + idx % TW_GV_BLOCK_ROWS;
        if (f >= n) continue;
        float sum = 0.0f;
        for (int sp = 0; sp < splits; sp++) sum += __ldcg(&part[((size_t)sp * m + i) * n + f]);
        float *dst = y + (size_t)i * ldy + f;
        *dst = sum + (accumulate ? *dst : 0.0f);
    }
    if (tid == 0) count[blockIdx.x] = 0; /* re-armed for the next launch on the stream */
}

tw_status tw_cuda_gemv_bf16(tw_cuda_ctx *ctx, int m, int n, int k, const float *x, int ldx,
                            const __nv_bfloat16 *w, float *y, int ldy, int accumulate) {
    if (m < 1 || m > TW_GV_MAXM)
        return TW_ERR(TW_ERR_INVALID, "cuda gemv: m=%d outside 1..%d", m, TW_GV_MAXM);
    tw_gv_plan p = tw_gv_plan_make(n, k, ctx->sm_count);
    float *part = NULL;
    unsigned *count = NULL;
    if (p.splits > 1) {
        TW_TRY(tw_cuda_scratch_reserve(ctx, &ctx->gv_part, (size_t)p.splits * m * n * 4,
                                       "gemv partial sums"));
        void *old = ctx->gv_count.p;
        size_t want = (size_t)p.blocks_x * sizeof(unsigned);
        TW_TRY(tw_cuda_scratch_reserve(ctx, &ctx->gv_count, want, "gemv split counters"));
        if (ctx->gv_count.p != old) /* new counters start at zero (then re-arm themselves) */
            TW_CU(ctx, cudaMemsetAsync(ctx->gv_count.p, 0, ctx->gv_count.bytes, ctx->stream));
        part = (float *)ctx->gv_part.p;
        count = (unsigned *)ctx->gv_count.p;
    }
    bool vec = k % 8 == 0 && (uintptr_t)w % 16 == 0;
    int x_vec = ldx % 4 == 0 && (uintptr_t)x % 16 == 0;
    dim3 grid(p.blocks_x, p.splits);
    if (vec)
        tw_k_gemv_bf16<true><<<grid, TW_GV_THREADS, p.smem_bytes, ctx->stream>>>(
            m, n, k, x, ldx, x_vec, w, y, ldy, accumulate, p.ks, p.pitch, part, count);
    else
        tw_k_gemv_bf16<false><<<grid, TW_GV_THREADS, p.smem_bytes, ctx->stream>>>(
            m, n, k, x, ldx, x_vec, w, y, ldy, accumulate, p.ks, p.pitch, part, count);
    TW_CU_LAUNCHED(ctx, "gemv (m <= 8)");
    return TW_OK;
}
