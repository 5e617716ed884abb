/* fp32-weight GEMM fallback: y[m, n] (+)= x[m, k] . w[n, k]^T in fp32 FMA (no tensor cores).
 * Weights in fp32 are a correctness path (tests, small models), not a performance path: the
 * benchmarked GEMMs use bf16 weights. Classic shared-memory tiling: 64 x 64 block tile, k step
 * 16, 256 threads each computing a 4 x 4 patch; tiles stored k-major (+4 padding) so the inner
 * loop reads contiguous floats. Every load is guarded, so any shape and pitch work. */
#include "tw_cuda_internal.cuh"

#define SG_TILE    64
#define SG_BK      16
#define SG_THREADS 256

__global__ void __launch_bounds__(SG_THREADS)
    tw_k_gemm_f32(int m, int n, int k, const float *__restrict__ x, int ldx,
                  const float *__restrict__ w, float *__restrict__ y, int ldy, int accumulate) {
    __shared__ float as[SG_BK][SG_TILE + 4]; /* [k][m] */
    __shared__ float bs[SG_BK][SG_TILE + 4]; /* [k][n] */
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * SG_TILE, n0 = blockIdx.x * SG_TILE;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += SG_BK) {
#pragma unroll
        for (int i = 0; i < (SG_TILE * SG_BK) / SG_THREADS; i++) {
            int e = tid + i * SG_THREADS;
            int r = e / SG_BK, kk = e % SG_BK;
            bool kin = k0 + kk < k;
            as[kk][r] = (m0 + r < m && kin) ? x[(size_t)(m0 + r) * ldx + k0 + kk] : 0.0f;
            bs[kk][r] = (n0 + r < n && kin) ? w[(size_t)(n0 + r) * k + k0 + kk] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SG_BK; kk++) {
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
            if (col >= n) continue;
            float *dst = y + (size_t)row * ldy + col;
            *dst = acc[i][j] + (accumulate ? *dst : 0.0f);
        }
    }
}

tw_status tw_cuda_gemm_f32(tw_cuda_ctx *ctx, int m, int n, int k, const float *x, int ldx,
                           const float *w, float *y, int ldy, int accumulate) {
    dim3 grid(tw_cuda_div_up(n, SG_TILE), tw_cuda_div_up(m, SG_TILE));
    if (grid.y > 65535u)
        return TW_ERR(TW_ERR_INVALID, "cuda gemm f32: m=%d too large for one launch", m);
    tw_k_gemm_f32<<<grid, SG_THREADS, 0, ctx->stream>>>(m, n, k, x, ldx, w, y, ldy, accumulate);
    TW_CU_LAUNCHED(ctx, "gemm (fp32 fallback)");
    return TW_OK;
}
