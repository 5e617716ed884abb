/* Hopper (sm_90a) GEMM with warpgroup MMA: y[m, n] (+)= xb[m, k] . w[n, k]^T, bf16 operands from
 * shared memory, fp32 accumulators in registers, wgmma.mma_async m64n128k16.
 *
 * STATUS: EXPERIMENTAL, UNVERIFIED ON A GPU. It is opt-in only (tw_cuda_set_gemm(be, "wgmma") or
 * TW_CUDA_GEMM=wgmma) and production GEMMs never go through it until `scripts/gpu-check`'s
 * test_gpu_kernels (gemm_wgmma_matches_reference) has passed on an H100. What it is: one
 * warpgroup (128 threads) per 64 x 128 output tile, k step 64, a 3-stage cp.async pipeline into
 * shared memory laid out as wgmma's canonical no-swizzle K-major "core matrices" (8 rows x 16
 * bytes, 128 contiguous bytes each; LBO = distance between core matrices along k, SBO = along
 * m/n), a fence.proxy.async before the tensor cores read what cp.async wrote, and one
 * commit/wait per k tile. What it lacks for the 0.9x-cuBLAS target: the bulk tensor copy engine
 * (TMA, cp.async.bulk.tensor with an mbarrier pipeline) instead of per-thread cp.async,
 * 128-byte swizzled shared layouts (conflict-free, required by TMA's fast path), two consumer
 * warpgroups (128 x 256 tiles) plus a producer warpgroup with setmaxnreg, overlapping wgmma of
 * tile k with the wait on tile k-1 (wait_group 1), a persistent tile scheduler, and a
 * vectorised epilogue. Shapes needing guarded weight loads (k % 8 != 0 or unaligned w) are
 * passed to the mma.sync kernel. */
#include "tw_cuda_internal.cuh"
#include "tw_mma.cuh"

#define WG_BM      64
#define WG_BN      128
#define WG_BK      64
#define WG_STAGES  3
#define WG_THREADS 128
#define WG_SMEM    (WG_STAGES * (WG_BM + WG_BN) * WG_BK * 2)

#ifdef TW_SM90A
/* d (64 fp32 per thread) = a . b (+ d when accumulate != 0); both operands K-major in smem. */
__device__ static inline void wg_mma_64x128x16(float d[64], uint64_t da, uint64_t db,
                                               int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, "
        "%37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, "
        "%55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
          "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
          "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
          "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
          "+f"(d[63])
        : "l"(da), "l"(db), "r"(accumulate));
}
/* One k tile of A (64 x 64) and B (128 x 64) into the core-matrix layout: the 16-byte chunk of
 * row r and k-chunk kc (8 elements) lives at byte (kc * ROWS + r) * 16. */
__device__ static inline void wg_load_tile(unsigned char *sa, unsigned char *sb,
                                           const __nv_bfloat16 *__restrict__ xb,
                                           const __nv_bfloat16 *__restrict__ w, int m, int n, int k,
                                           int kpad, int m0, int n0, int k0) {
#pragma unroll
    for (int i = 0; i < WG_BM * (WG_BK / 8) / WG_THREADS; i++) {
        int c = threadIdx.x + i * WG_THREADS;
        int r = c / (WG_BK / 8), kc = c % (WG_BK / 8);
        int gr = m0 + r, gk = k0 + kc * 8;
        bool ok = gr < m && gk < kpad;
        tw_cp_async16(sa + (kc * WG_BM + r) * 16, ok ? xb + (size_t)gr * kpad + gk : xb,
                      ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < WG_BN * (WG_BK / 8) / WG_THREADS; i++) {
        int c = threadIdx.x + i * WG_THREADS;
        int r = c / (WG_BK / 8), kc = c % (WG_BK / 8);
        int gr = n0 + r, gk = k0 + kc * 8;
        bool ok = gr < n && gk < k;
        tw_cp_async16(sb + (kc * WG_BN + r) * 16, ok ? w + (size_t)gr * k + gk : w, ok ? 16 : 0);
    }
}

#endif

__global__ void __launch_bounds__(WG_THREADS, 1)
    tw_k_gemm_wgmma(int m, int n, int k, int kpad, const __nv_bfloat16 *__restrict__ xb,
                    const __nv_bfloat16 *__restrict__ w, float *__restrict__ y, int ldy,
                    int accumulate) {
#ifdef TW_SM90A
    extern __shared__ __align__(128) unsigned char wg_smem[];
    unsigned char *s_a = wg_smem;                                 /* [STAGES][BM * BK * 2] */
    unsigned char *s_b = wg_smem + WG_STAGES * WG_BM * WG_BK * 2; /* [STAGES][BN * BK * 2] */
    const int m0 = blockIdx.y * WG_BM, n0 = blockIdx.x * WG_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++) d[i] = 0.0f;

    const int ktiles = (kpad + WG_BK - 1) / WG_BK;
#pragma unroll
    for (int s = 0; s < WG_STAGES - 1; s++) {
        if (s < ktiles)
            wg_load_tile(s_a + s * WG_BM * WG_BK * 2, s_b + s * WG_BN * WG_BK * 2, xb, w, m, n, k,
                         kpad, m0, n0, s * WG_BK);
        tw_cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        tw_cp_async_wait<WG_STAGES - 2>();
        /* cp.async wrote through the generic proxy; wgmma reads through the async proxy */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads(); /* also: the previous tile's wgmma finished (wait 0) in every warp */
        {
            int nk = kt + WG_STAGES - 1;
            if (nk < ktiles) {
                int s = nk % WG_STAGES;
                wg_load_tile(s_a + s * WG_BM * WG_BK * 2, s_b + s * WG_BN * WG_BK * 2, xb, w, m, n,
                             k, kpad, m0, n0, nk * WG_BK);
            }
            tw_cp_async_commit();
        }
        const int s = kt % WG_STAGES;
        const unsigned char *sa = s_a + s * WG_BM * WG_BK * 2;
        const unsigned char *sb = s_b + s * WG_BN * WG_BK * 2;
        tw_wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < WG_BK / 16; ks++) {
            /* k16 step = k-chunks 2ks, 2ks+1: LBO steps one k-chunk, SBO one 8-row group */
            uint64_t da =
                tw_wgmma_desc(tw_smem_addr(sa + 2 * ks * WG_BM * 16), WG_BM * 16, 8 * 16, 0u, 0u);
            uint64_t db =
                tw_wgmma_desc(tw_smem_addr(sb + 2 * ks * WG_BN * 16), WG_BN * 16, 8 * 16, 0u, 0u);
            wg_mma_64x128x16(d, da, db, (kt > 0 || ks > 0) ? 1 : 0);
        }
        tw_wgmma_commit();
        tw_wgmma_wait<0>();
    }
    tw_cp_async_wait<0>();

    /* accumulator layout: warp w owns rows 16w..16w+15; per n8 chunk i, like mma.m16n8 */
#pragma unroll
    for (int i = 0; i < WG_BN / 8; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int row = m0 + warp * 16 + tw_mma_c_row(lane, 2 * h);
            int col = n0 + i * 8 + tw_mma_c_col(lane, 2 * h);
            if (row >= m) continue;
            float *yr = y + (size_t)row * ldy;
            if (col < n) yr[col] = d[4 * i + 2 * h] + (accumulate ? yr[col] : 0.0f);
            if (col + 1 < n) yr[col + 1] = d[4 * i + 2 * h + 1] + (accumulate ? yr[col + 1] : 0.0f);
        }
#else
    (void)m, (void)n, (void)k, (void)kpad, (void)xb, (void)w, (void)y, (void)ldy, (void)accumulate;
    __trap(); /* never launched: the host only selects this kernel on compute capability 9.0 */
#endif
}

tw_status tw_cuda_gemm_wgmma_init(tw_cuda_ctx *ctx) {
    TW_CU(ctx, cudaFuncSetAttribute(tw_k_gemm_wgmma, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    WG_SMEM));
    return TW_OK;
}

tw_status tw_cuda_gemm_wgmma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad,
                             const __nv_bfloat16 *xb, const __nv_bfloat16 *w, float *y, int ldy,
                             int accumulate) {
    if (!(ctx->cc_major == 9 && ctx->cc_minor == 0))
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "gemm wgmma: device %d (%s) is not compute capability 9.0", ctx->device,
                      ctx->name);
    if (k % 8 != 0 || (uintptr_t)w % 16 != 0) /* guarded weight loads: the mma.sync kernel */
        return tw_cuda_gemm_mma(ctx, m, n, k, kpad, xb, w, y, ldy, accumulate);
    dim3 grid(tw_cuda_div_up(n, WG_BN), tw_cuda_div_up(m, WG_BM));
    if (grid.y > 65535u)
        return TW_ERR(TW_ERR_INVALID, "gemm wgmma: m=%d too large for one launch", m);
    tw_k_gemm_wgmma<<<grid, WG_THREADS, WG_SMEM, ctx->stream>>>(m, n, k, kpad, xb, w, y, ldy,
                                                                accumulate);
    TW_CU_LAUNCHED(ctx, "gemm (wgmma, experimental)");
    return TW_OK;
}
