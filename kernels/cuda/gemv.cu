/* GEMV-like GEMM for decode (m <= 8 rows of activations), bf16 weights: bandwidth-bound on the
 * weights, so each weight byte is read once, 16 bytes per lane per load, and the few activation
 * rows (fp32, reused by every warp) come from L1/L2. One warp computes GV_ROWS output features
 * for all m rows: lanes stride over k in chunks of 8, then a butterfly shuffle reduces.
 * VEC needs k % 8 == 0 and 16-byte aligned w, x and row pitch; otherwise the scalar path (any
 * shape, any alignment). */
#include "tw_cuda_internal.cuh"

#define GV_THREADS 256
#define GV_WARPS   (GV_THREADS / 32)
#define GV_ROWS    2
#define GV_MAXM    8

__device__ static inline float gv_lo(uint32_t u) {
    return __uint_as_float(u << 16);
}
__device__ static inline float gv_hi(uint32_t u) {
    return __uint_as_float(u & 0xffff0000u);
}

template <bool VEC>
__global__ void __launch_bounds__(GV_THREADS)
    tw_k_gemv_bf16(int m, int n, int k, const float *__restrict__ x, int ldx,
                   const __nv_bfloat16 *__restrict__ w, float *__restrict__ y, int ldy,
                   int accumulate) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n0 = (blockIdx.x * GV_WARPS + warp) * GV_ROWS;
    if (n0 >= n) return; /* warp-uniform */
    float acc[GV_MAXM][GV_ROWS];
#pragma unroll
    for (int i = 0; i < GV_MAXM; i++)
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) acc[i][r] = 0.0f;

    if (VEC) {
#pragma unroll 2
        for (int kk = lane * 8; kk < k; kk += 32 * 8) {
            float wf[GV_ROWS][8];
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++) {
                uint4 v = make_uint4(0, 0, 0, 0);
                if (n0 + r < n) v = __ldg((const uint4 *)(w + (size_t)(n0 + r) * k + kk));
                wf[r][0] = gv_lo(v.x);
                wf[r][1] = gv_hi(v.x);
                wf[r][2] = gv_lo(v.y);
                wf[r][3] = gv_hi(v.y);
                wf[r][4] = gv_lo(v.z);
                wf[r][5] = gv_hi(v.z);
                wf[r][6] = gv_lo(v.w);
                wf[r][7] = gv_hi(v.w);
            }
#pragma unroll
            for (int i = 0; i < GV_MAXM; i++) {
                if (i < m) {
                    const float4 *xr = (const float4 *)(x + (size_t)i * ldx + kk);
                    float4 a = __ldg(xr), b = __ldg(xr + 1);
#pragma unroll
                    for (int r = 0; r < GV_ROWS; r++)
                        acc[i][r] += a.x * wf[r][0] + a.y * wf[r][1] + a.z * wf[r][2] +
                                     a.w * wf[r][3] + b.x * wf[r][4] + b.y * wf[r][5] +
                                     b.z * wf[r][6] + b.w * wf[r][7];
                }
            }
        }
    } else {
        const uint16_t *wb = (const uint16_t *)w;
        for (int kk = lane; kk < k; kk += 32) {
            float wf[GV_ROWS];
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++)
                wf[r] = n0 + r < n ? __uint_as_float((uint32_t)wb[(size_t)(n0 + r) * k + kk] << 16)
                                   : 0.0f;
#pragma unroll
            for (int i = 0; i < GV_MAXM; i++) {
                if (i < m) {
                    float xv = x[(size_t)i * ldx + kk];
#pragma unroll
                    for (int r = 0; r < GV_ROWS; r++) acc[i][r] += xv * wf[r];
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < GV_MAXM; i++) {
        if (i >= m) break;
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) {
            float v = acc[i][r];
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0 && n0 + r < n) {
                float *dst = y + (size_t)i * ldy + n0 + r;
                *dst = v + (accumulate ? *dst : 0.0f);
            }
        }
    }
}

tw_status tw_cuda_gemv_bf16(tw_cuda_ctx *ctx, int m, int n, int k, const float *x, int ldx,
                            const __nv_bfloat16 *w, float *y, int ldy, int accumulate) {
    if (m < 1 || m > GV_MAXM)
        return TW_ERR(TW_ERR_INVALID, "cuda gemv: m=%d outside 1..%d", m, GV_MAXM);
    int warps = tw_cuda_div_up(n, GV_ROWS);
    int blocks = tw_cuda_div_up(warps, GV_WARPS);
    bool vec = k % 8 == 0 && ldx % 4 == 0 && (uintptr_t)w % 16 == 0 && (uintptr_t)x % 16 == 0;
    if (vec)
        tw_k_gemv_bf16<true>
            <<<blocks, GV_THREADS, 0, ctx->stream>>>(m, n, k, x, ldx, w, y, ldy, accumulate);
    else
        tw_k_gemv_bf16<false>
            <<<blocks, GV_THREADS, 0, ctx->stream>>>(m, n, k, x, ldx, w, y, ldy, accumulate);
    TW_CU_LAUNCHED(ctx, "gemv (m <= 8)");
    return TW_OK;
}
