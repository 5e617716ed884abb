/* Hopper (sm_90a) GEMM with the bulk tensor copy engine (TMA) and warpgroup MMA:
 * y[m, n] (+)= xb[m, kpad] . w[n, k]^T, bf16 operands (x cast to bf16 by the backend, rows kpad
 * apart, zero columns k..kpad-1), fp32 accumulation in registers, fp32 y with row stride ldy.
 *
 * STATUS: EXPERIMENTAL, UNVERIFIED ON A GPU. Written and checked only by compiling (sm_80 and
 * sm_90a, ptxas register/spill report, PTX content) and by the CPU models in
 * tests/test_cuda_helpers.c of its index arithmetic (descriptors, swizzle, pipeline parities,
 * accumulator layout). It is opt-in only (tw_cuda_set_gemm(be, "wgmma_tma") or
 * TW_CUDA_GEMM=wgmma_tma); nothing selects it by default until test_gpu_kernels'
 * gemm_wgmma_tma_matches_reference has passed on an H100 (scripts/gpu-check).
 *
 * What it does:
 *  - block tile 128 x 256 x 64 (TW_WGT_* in tw_cuda_index.h), 384 threads = 3 warpgroups;
 *  - warpgroup 0 is the producer: setmaxnreg.dec to 40 registers, one thread issues
 *    cp.async.bulk.tensor.2d (TMA) for the x box [128 rows][64 k] and the w box [256 rows][64 k]
 *    of each k tile into a 4-stage ring, completing on the stage's "full" mbarrier
 *    (arrive.expect_tx with the stage's 48 KB);
 *  - warpgroups 1 and 2 are consumers (setmaxnreg.inc to 232): each waits on "full", issues
 *    four wgmma.mma_async.m64n256k16 (bf16 -> fp32, both operands K-major in shared memory,
 *    128 accumulators per thread), commits, then wgmma.wait_group 1 so that the MMAs of tile
 *    kt run while the warpgroup retires tile kt-1 and releases its stage ("empty" mbarrier, one
 *    arrival per consumer warp) to the producer;
 *  - shared tiles use the 128-byte swizzle on both sides: CU_TENSOR_MAP_SWIZZLE_128B in the
 *    tensor maps and layout type 1 in the wgmma descriptors (SBO 1024, LBO unused), stage
 *    buffers 1024-byte aligned;
 *  - tails: TMA zero-fills the parts of a box outside the tensor (rows past m or n, k past the
 *    end), and still counts them in the transaction bytes; the epilogue stores only rows < m and
 *    columns < n (float2 stores where y allows, accumulate adds to y);
 *  - tensor maps are encoded on the host for every call (cuTensorMapEncodeTiled, obtained from
 *    the runtime with cudaGetDriverEntryPointByVersion: libcuda is not linked) and passed by
 *    value as __grid_constant__ parameters, so a CUDA-graph capture keeps each call's maps;
 *  - a wait on an mbarrier that has not completed after 10 s traps (a launch failure instead of
 *    a hang, should a transaction count or parity be wrong on real hardware).
 * Shapes the tensor maps cannot describe (k % 8 != 0, i.e. a weight row pitch that is not a
 * multiple of 16 bytes, or a base address that is not 16-byte aligned) go to the mma.sync kernel,
 * exactly as the "wgmma" path does: that is this path's documented tail handling.
 *
 * Still missing for the 0.9x-cuBLAS target: a persistent tile scheduler (one block per SM
 * looping over tiles, with the epilogue of one tile overlapping the loads of the next), thread
 * block clusters with TMA multicast of the shared operand, a grid raster that keeps w tiles in
 * L2 across neighbouring blocks, an epilogue through shared memory with TMA stores, and split-k
 * for small m x n. None of it has been timed. */
#include <cudaTypedefs.h> /* CUtensorMap, PFN_cuTensorMapEncodeTiled_v12000: types only */

#include "tw_cuda_internal.cuh"
#include "tw_mma.cuh"

#define WGT_WAIT_LIMIT_NS 10000000000ull

#ifdef TW_SM90A
/* ---- mbarrier (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier") - */
__device__ static inline void wgt_mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* arrive (one of the expected arrivals) and add `bytes` to the pending transaction count */
__device__ static inline void wgt_mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("{\n"
                 ".reg .b64 st;\n"
                 "mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n"
                 "}\n" ::"r"(bar),
                 "r"(bytes)
                 : "memory");
}
__device__ static inline void wgt_mbar_arrive(uint32_t bar) {
    asm volatile("{\n"
                 ".reg .b64 st;\n"
                 "mbarrier.arrive.shared::cta.b64 st, [%0];\n"
                 "}\n" ::"r"(bar)
                 : "memory");
}
/* 1 once the phase of parity `parity` has completed (acquire, CTA scope: the default) */
__device__ static inline uint32_t wgt_mbar_try_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n"
                 "}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
    return done;
}
__device__ static inline uint64_t wgt_globaltimer_ns(void) {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
    return t;
}
/* Spins until the phase completes; after WGT_WAIT_LIMIT_NS it traps rather than hang. */
__device__ static inline void wgt_mbar_wait(uint32_t bar, uint32_t parity) {
    uint64_t t0 = 0;
    for (uint32_t tries = 1; !wgt_mbar_try_wait(bar, parity); tries++) {
        if (tries % 1024u) continue;
        uint64_t now = wgt_globaltimer_ns();
        if (!t0)
            t0 = now;
        else if (now - t0 > WGT_WAIT_LIMIT_NS)
            __trap();
    }
}

/* ---- TMA: one 2-D box global -> shared, completing (complete_tx) on mbarrier `bar` ---------- */
/* c0 is the innermost (k) coordinate in elements, c1 the row. The shared::cluster destination is
 * this CTA's own shared memory (a launch without clusters is a cluster of one). */
__device__ static inline void wgt_tma_load_2d(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                              int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}

/* ---- wgmma ---------------------------------------------------------------------------------- */
/* d[64 x 256 tile, 128 per thread] = a . b^T (+ d when accumulate != 0). a: 64 x 16 and
 * b: 256 x 16 slices, both K-major (imm-trans-a = imm-trans-b = 0), scale-a = scale-b = 1. */
__device__ static inline void wgt_mma_64x256x16(float d[128], uint64_t da, uint64_t db,
                                                int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "
        "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "
        "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, "
        "%70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, "
        "%87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, "
        "%103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, "
        "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1, 0, 0;\n"
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
          "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
          "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
          "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
          "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),
          "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]),
          "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),
          "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),
          "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),
          "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(accumulate));
}
#endif

__global__ void __launch_bounds__(TW_WGT_THREADS, 1)
    tw_k_gemm_wgmma_tma(const __grid_constant__ CUtensorMap tm_x,
                        const __grid_constant__ CUtensorMap tm_w, int m, int n, int kpad,
                        float *__restrict__ y, int ldy, int accumulate) {
#ifdef TW_SM90A
    extern __shared__ __align__(1024) unsigned char wgt_smem[];
    /* the 128-byte swizzle pattern repeats every 1024 bytes: stage buffers start on such a
     * boundary (descriptor base offset 0); the dynamic window is only promised 16 bytes */
    const uint32_t base = (tw_smem_addr(wgt_smem) + 1023u) & ~1023u;
    const uint32_t full0 = base + TW_WGT_BAR_OFFSET;    /* full[s] at full0 + 8 s */
    const uint32_t empty0 = full0 + 8u * TW_WGT_STAGES; /* empty[s] at empty0 + 8 s */
    const int wg = threadIdx.x / 128;
    const int m0 = blockIdx.y * TW_WGT_BM, n0 = blockIdx.x * TW_WGT_BN;
    const int ktiles = (kpad + TW_WGT_BK - 1) / TW_WGT_BK;

    if (threadIdx.x == 0) {
        for (int s = 0; s < TW_WGT_STAGES; s++) {
            wgt_mbar_init(full0 + 8u * s, 1u); /* the producer's arrive.expect_tx */
            wgt_mbar_init(empty0 + 8u * s, TW_WGT_CONSUMERS * 4u); /* one per consumer warp */
        }
        /* make the initialised barriers visible to the async proxy (TMA's complete_tx) */
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        /* ---- producer warpgroup ---- */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(TW_WGT_PRODUCER_REGS));
        if (threadIdx.x == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)&tm_x) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)&tm_w) : "memory");
            const uint32_t tx = tw_tma_box_bytes(TW_WGT_BK, TW_WGT_BM, 2) +
                                tw_tma_box_bytes(TW_WGT_BK, TW_WGT_BN, 2);
            for (int kt = 0; kt < ktiles; kt++) {
                const int s = tw_pipe_stage(kt, TW_WGT_STAGES);
                /* the stage's previous tile (kt - STAGES) must be released by every consumer warp
                 */
                if (kt >= TW_WGT_STAGES)
                    wgt_mbar_wait(empty0 + 8u * s, tw_pipe_empty_parity(kt, TW_WGT_STAGES));
                const uint32_t sa = base + (uint32_t)s * TW_WGT_STAGE_BYTES;
                wgt_mbar_arrive_expect_tx(full0 + 8u * s, tx);
                wgt_tma_load_2d(sa, &tm_x, full0 + 8u * s, kt * TW_WGT_BK, m0);
                wgt_tma_load_2d(sa + TW_WGT_A_BYTES, &tm_w, full0 + 8u * s, kt * TW_WGT_BK, n0);
            }
        }
    } else {
        /* ---- consumer warpgroups 1, 2: rows 64 (wg - 1) .. + 63 of the block tile ---- */
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(TW_WGT_CONSUMER_REGS));
        const int c = wg - 1, t = threadIdx.x % 128, lane = threadIdx.x % 32;
        float d[128];
#pragma unroll
        for (int i = 0; i < 128; i++) d[i] = 0.0f;
        for (int kt = 0; kt < ktiles; kt++) {
            const int s = tw_pipe_stage(kt, TW_WGT_STAGES);
            wgt_mbar_wait(full0 + 8u * s, tw_pipe_full_parity(kt, TW_WGT_STAGES));
            const uint32_t sa = base + (uint32_t)s * TW_WGT_STAGE_BYTES;
            const uint32_t sb = sa + TW_WGT_A_BYTES;
            tw_wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < TW_WGT_BK / 16; ks++)
                wgt_mma_64x256x16(d, tw_wgt_desc_a(sa, c, ks), tw_wgt_desc_b(sb, ks),
                                  (kt > 0 || ks > 0) ? 1 : 0);
            tw_wgmma_commit();
            /* tile kt's MMAs stay in flight; tile kt - 1's are done, so its stage is free */
            tw_wgmma_wait<1>();
            if (kt > 0 && lane == 0)
                wgt_mbar_arrive(empty0 + 8u * tw_pipe_stage(kt - 1, TW_WGT_STAGES));
        }
        tw_wgmma_wait<0>();

        /* epilogue: element i of thread t is D[d_row(t, i)][d_col(t, i)]; i, i + 1 are
         * neighbouring columns (col even), stored as one float2 where y's layout allows */
        const int r0 = m0 + c * 64;
        const bool vec2 = (ldy % 2 == 0) && ((uintptr_t)y % 8 == 0);
#pragma unroll
        for (int i = 0; i < 128; i += 2) {
            const int row = r0 + tw_wgmma_d_row(t, i), col = n0 + tw_wgmma_d_col(t, i);
            if (row >= m || col >= n) continue;
            float *yp = y + (size_t)row * ldy + col;
            if (vec2 && col + 1 < n) {
                float2 v = make_float2(d[i], d[i + 1]);
                if (accumulate) {
                    const float2 o = *(const float2 *)yp;
                    v.x += o.x;
                    v.y += o.y;
                }
                *(float2 *)yp = v;
            } else {
                yp[0] = d[i] + (accumulate ? yp[0] : 0.0f);
                if (col + 1 < n) yp[1] = d[i + 1] + (accumulate ? yp[1] : 0.0f);
            }
        }
    }
#else
    (void)tm_x, (void)tm_w, (void)m, (void)n, (void)kpad, (void)y, (void)ldy, (void)accumulate;
    __trap(); /* never launched: the host only selects this kernel on compute capability 9.0 */
#endif
}

/* ---- host --------------------------------------------------------------------------------- */
tw_status tw_cuda_gemm_wgmma_tma_init(tw_cuda_ctx *ctx) {
    TW_CU(ctx, cudaFuncSetAttribute(tw_k_gemm_wgmma_tma,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, TW_WGT_SMEM));
    /* the driver's tensor-map encoder through the runtime (no link against libcuda); a driver
     * without it leaves tma_encode NULL and "wgmma_tma" is refused when selected */
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                     cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) {
        (void)cudaGetLastError();
        fn = NULL;
    }
    ctx->tma_encode = fn;
    return TW_OK;
}

/* bf16 [outer][inner] tensor at `base` (row pitch inner * 2 bytes), box [box_outer][64] */
static tw_status wgt_tensor_map(tw_cuda_ctx *ctx, CUtensorMap *map, const void *base,
                                uint64_t inner, uint64_t outer, uint32_t box_outer,
                                const char *what) {
    PFN_cuTensorMapEncodeTiled_v12000 encode = (PFN_cuTensorMapEncodeTiled_v12000)ctx->tma_encode;
    const cuuint64_t dims[2] = {inner, outer};
    const cuuint64_t pitch[1] = {inner * 2}; /* bytes; a multiple of 16 (tw_wgt_tma_ok) */
    const cuuint32_t box[2] = {TW_WGT_BK, box_outer};
    const cuuint32_t step[2] = {1, 1};
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)base, dims, pitch, box,
                        step, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return TW_ERR(TW_ERR_DEVICE,
                      "gemm wgmma_tma: cuTensorMapEncodeTiled for %s ([%llu][%llu] bf16 at %p, box "
                      "[%u][%d], 128-byte swizzle) failed with CUresult %d on device %d (%s)",
                      what, (unsigned long long)outer, (unsigned long long)inner, base, box_outer,
                      TW_WGT_BK, (int)r, ctx->device, ctx->name);
    return TW_OK;
}

tw_status tw_cuda_gemm_wgmma_tma(tw_cuda_ctx *ctx, int m, int n, int k, int kpad,
                                 const __nv_bfloat16 *xb, const __nv_bfloat16 *w, float *y, int ldy,
                                 int accumulate) {
    if (!(ctx->cc_major == 9 && ctx->cc_minor == 0))
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "gemm wgmma_tma: device %d (%s) is not compute capability 9.0", ctx->device,
                      ctx->name);
    if (!ctx->tma_encode)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "gemm wgmma_tma: the driver of device %d (%s) provides no "
                      "cuTensorMapEncodeTiled",
                      ctx->device, ctx->name);
    /* documented tail handling: what a tensor map cannot describe goes to mma.sync */
    if (!tw_wgt_tma_ok(k, kpad, (uintptr_t)xb, (uintptr_t)w))
        return tw_cuda_gemm_mma(ctx, m, n, k, kpad, xb, w, y, ldy, accumulate);
    dim3 grid(tw_cuda_div_up(n, TW_WGT_BN), tw_cuda_div_up(m, TW_WGT_BM));
    if (grid.y > 65535u)
        return TW_ERR(TW_ERR_INVALID, "gemm wgmma_tma: m=%d too large for one launch", m);
    CUtensorMap tm_x, tm_w;
    TW_TRY(wgt_tensor_map(ctx, &tm_x, xb, (uint64_t)kpad, (uint64_t)m, TW_WGT_BM, "x"));
    TW_TRY(wgt_tensor_map(ctx, &tm_w, w, (uint64_t)k, (uint64_t)n, TW_WGT_BN, "w"));
    tw_k_gemm_wgmma_tma<<<grid, TW_WGT_THREADS, TW_WGT_SMEM, ctx->stream>>>(tm_x, tm_w, m, n, kpad,
                                                                            y, ldy, accumulate);
    TW_CU_LAUNCHED(ctx, "gemm (wgmma_tma, experimental)");
    return TW_OK;
}
