/* Inline PTX wrappers shared by the tensor-core kernels (sm_80+): cp.async, ldmatrix and the
 * m16n8k16 bf16 mma.sync. Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"),
 * with g = lane / 4 and t = lane % 4:
 *   A (16x16, row):  a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..]   a2 = A[g][2t+8..]   a3 =
 * A[g+8][2t+8..] B (16x8, col):   b0 = B[2t..2t+1][g]   b1 = B[2t+8..2t+9][g] C (16x8, f32): c0,c1
 * = C[g][2t..2t+1]   c2,c3 = C[g+8][2t..2t+1] B "col" means B^T is stored row-major: for y = x .
 * w^T that is the weight itself, [n][k]. */
#ifndef TW_MMA_CUH
#define TW_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include "tw_cuda_index.h"

__device__ static inline uint32_t tw_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte asynchronous global->shared copy; src_bytes 0 writes zeros (out-of-range chunk). */
__device__ static inline void tw_cp_async16(void *smem, const void *gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(tw_smem_addr(smem)),
                 "l"(gmem), "r"(src_bytes)
                 : "memory");
}

__device__ static inline void tw_cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ static inline void tw_cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ static inline void tw_ldmatrix_x4(uint32_t r[4], const void *smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tw_smem_addr(smem)));
}

__device__ static inline void tw_ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tw_smem_addr(smem)));
}

/* d += a . b for one m16n8k16 tile, bf16 operands, fp32 accumulators. */
__device__ static inline void tw_mma_bf16_16816(float d[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats -> a packed bf16 pair (lo in the low half), round to nearest even. */
__device__ static inline uint32_t tw_pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* ---- sm_90a warpgroup MMA (only where the arch-specific features are compiled) ---------------
 * TW_SM90A is set only in the device pass for sm_90a: wgmma, setmaxnreg and the kernels built on
 * them exist there alone; other targets compile those kernels' bodies out. */
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TW_SM90A 1
#endif

#ifdef TW_SM90A
/* orders this warpgroup's accumulator-register accesses before the wgmma ops that follow */
__device__ static inline void tw_wgmma_fence(void) {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ static inline void tw_wgmma_commit(void) {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
/* waits until at most N committed wgmma groups are still in flight */
template <int N> __device__ static inline void tw_wgmma_wait(void) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
#endif

#endif
