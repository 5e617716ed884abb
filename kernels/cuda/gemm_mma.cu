/* Tensor-core GEMM for sm_80 and later: y[m, n] (+)= xb[m, k] . w[n, k]^T with bf16 operands
 * (activations already cast to bf16, rows kpad apart, kpad a multiple of 8 with zero tail) and
 * fp32 accumulation, mma.sync m16n8k16.
 *
 * Block tile 128 x 128 x 32, 8 warps as 2 (m) x 4 (n), each warp 64 x 32 = 4 x 4 mma tiles.
 * Tiles flow global -> shared through a 3-stage cp.async pipeline (loads of tile k+2 overlap the
 * math of tile k). Shared rows are padded from 64 to 80 bytes so the 8 row addresses of each
 * ldmatrix phase fall in distinct 16-byte bank groups (80 mod 128 cycles through all eight).
 * Tails: rows past m or n are zero-filled by cp.async's src-size 0 and not stored; k tails are
 * zeros in xb and, for the weights, zero-filled chunks (VEC: k % 8 == 0 and a 16-byte aligned w)
 * or element-wise guarded loads (any k, any alignment). */
#include "tw_cuda_internal.cuh"
#include "tw_mma.cuh"

#define GM_BM      128
#define GM_BN      128
#define GM_BK      32
#define GM_STAGES  3
#define GM_THREADS 256
#define GM_LDS     (GM_BK + 8) /* bf16 per shared row: 80 bytes */
#define GM_SMEM    (GM_STAGES * (GM_BM + GM_BN) * GM_LDS * 2)

/* Loads one k-tile of A (activations) and B (weights) into shared stage buffers. */
template <bool VEC>
__device__ static inline void gm_load_tile(__nv_bfloat16 *sa, __nv_bfloat16 *sb,
                                           const __nv_bfloat16 *__restrict__ xb,
                                           const __nv_bfloat16 *__restrict__ w, int m, int n, int k,
                                           int kpad, int m0, int n0, int k0) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < (GM_BM * GM_BK / 8) / GM_THREADS; i++) {
        int c = tid + i * GM_THREADS;
        int row = c / (GM_BK / 8), col = (c % (GM_BK / 8)) * 8;
        int gr = m0 + row, gk = k0 + col;
        bool ok = gr < m && gk < kpad;
        const __nv_bfloat16 *src = ok ? xb + (size_t)gr * kpad + gk : xb;
        tw_cp_async16(sa + row * GM_LDS + col, src, ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < (GM_BN * GM_BK / 8) / GM_THREADS; i++) {
        int c = tid + i * GM_THREADS;
        int row = c / (GM_BK / 8), col = (c % (GM_BK / 8)) * 8;
        int gr = n0 + row, gk = k0 + col;
        if (VEC) {
            bool ok = gr < n && gk < k;
            const __nv_bfloat16 *src = ok ? w + (size_t)gr * k + gk : w;
            tw_cp_async16(sb + row * GM_LDS + col, src, ok ? 16 : 0);
        } else {
            /* any k / alignment: guarded 2-byte loads, one 16-byte shared store */
            uint16_t e[8];
            const uint16_t *wr = (const uint16_t *)w + (size_t)gr * k;
#pragma unroll
            for (int j = 0; j < 8; j++) e[j] = (gr < n && gk + j < k) ? wr[gk + j] : (uint16_t)0;
            uint4 v;
            v.x = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
            v.y = (uint32_t)e[2] | ((uint32_t)e[3] << 16);
            v.z = (uint32_t)e[4] | ((uint32_t)e[5] << 16);
            v.w = (uint32_t)e[6] | ((uint32_t)e[7] << 16);
            *(uint4 *)(sb + row * GM_LDS + col) = v;
        }
    }
}

template <bool VEC>
__global__ void __launch_bounds__(GM_THREADS, 1)
    tw_k_gemm_mma(int m, int n, int k, int kpad, const __nv_bfloat16 *__restrict__ xb,
                  const __nv_bfloat16 *__restrict__ w, float *__restrict__ y, int ldy,
                  int accumulate) {
    extern __shared__ __align__(16) unsigned char gm_smem[];
    __nv_bfloat16 *s_a = (__nv_bfloat16 *)gm_smem;         /* [STAGES][BM][LDS] */
    __nv_bfloat16 *s_b = s_a + GM_STAGES * GM_BM * GM_LDS; /* [STAGES][BN][LDS] */

    const int m0 = blockIdx.y * GM_BM, n0 = blockIdx.x * GM_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    const int ktiles = (kpad + GM_BK - 1) / GM_BK;
#pragma unroll
    for (int s = 0; s < GM_STAGES - 1; s++) {
        if (s < ktiles)
            gm_load_tile<VEC>(s_a + s * GM_BM * GM_LDS, s_b + s * GM_BN * GM_LDS, xb, w, m, n, k,
                              kpad, m0, n0, s * GM_BK);
        tw_cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; kt++) {
        /* tile kt has landed once at most STAGES-2 newer groups are pending */
        tw_cp_async_wait<GM_STAGES - 2>();
        __syncthreads(); /* also: every warp is done with the stage refilled below */
        {
            int nk = kt + GM_STAGES - 1;
            if (nk < ktiles) {
                int s = nk % GM_STAGES;
                gm_load_tile<VEC>(s_a + s * GM_BM * GM_LDS, s_b + s * GM_BN * GM_LDS, xb, w, m, n,
                                  k, kpad, m0, n0, nk * GM_BK);
            }
            tw_cp_async_commit(); /* possibly empty: keeps the group count uniform */
        }
        const int s = kt % GM_STAGES;
        const __nv_bfloat16 *sa = s_a + s * GM_BM * GM_LDS;
        const __nv_bfloat16 *sb = s_b + s * GM_BN * GM_LDS;
#pragma unroll
        for (int ks = 0; ks < GM_BK / 16; ks++) {
            uint32_t af[4][4], bf[4][2];
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
                tw_ldmatrix_x4(af[mt], sa + (wm + mt * 16 + (lane % 16)) * GM_LDS + ks * 16 +
                                           (lane / 16) * 8);
#pragma unroll
            for (int np = 0; np < 2; np++) {
                uint32_t r[4];
                tw_ldmatrix_x4(r, sb + (wn + np * 16 + (lane % 8) + (lane / 16) * 8) * GM_LDS +
                                      ks * 16 + ((lane / 8) % 2) * 8);
                bf[2 * np][0] = r[0];
                bf[2 * np][1] = r[1];
                bf[2 * np + 1][0] = r[2];
                bf[2 * np + 1][1] = r[3];
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
                    tw_mma_bf16_16816(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
        }
    }
    tw_cp_async_wait<0>();

    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = m0 + wm + mt * 16 + g + h * 8;
                int col = n0 + wn + nt * 8 + 2 * t;
                if (row >= m) continue;
                float *yr = y + (size_t)row * ldy;
                if (col < n) yr[col] = acc[mt][nt][2 * h] + (accumulate ? yr[col] : 0.0f);
                if (col + 1 < n)
                    yr[col + 1] = acc[mt][nt][2 * h + 1] + (accumulate ? yr[col + 1] : 0.0f);
            }
}

tw_status tw_cuda_gemm_mma_init(tw_cuda_ctx *ctx) {
    TW_CU(ctx, cudaFuncSetAttribute(tw_k_gemm_mma<true>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM));
    TW_CU(ctx, cudaFuncSetAttribute(tw_k_gemm_mma<false>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM));
    return TW_OK;
}

tw_status tw_cuda_gemm_mma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad, const __nv_bfloat16 *xb,
                           const __nv_bfloat16 *w, float *y, int ldy, int accumulate) {
    dim3 grid(tw_cuda_div_up(n, GM_BN), tw_cuda_div_up(m, GM_BM));
    if (grid.y > 65535u)
        return TW_ERR(TW_ERR_INVALID, "cuda gemm: m=%d needs %u row blocks (max 65535)", m, grid.y);
    bool vec = (k % 8 == 0) && ((uintptr_t)w % 16 == 0);
    if (vec)
        tw_k_gemm_mma<true>
            <<<grid, GM_THREADS, GM_SMEM, ctx->stream>>>(m, n, k, kpad, xb, w, y, ldy, accumulate);
    else
        tw_k_gemm_mma<false>
            <<<grid, GM_THREADS, GM_SMEM, ctx->stream>>>(m, n, k, kpad, xb, w, y, ldy, accumulate);
    TW_CU_LAUNCHED(ctx, "gemm (mma.sync)");
    return TW_OK;
}
