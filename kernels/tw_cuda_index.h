/* tw_cuda_index: the index arithmetic of the CUDA tensor-core kernels, written once as TW_HD
 * static inline helpers so that the kernels use exactly what tests/test_cuda_helpers.c checks on
 * the CPU against a software model of ldmatrix and mma.sync m16n8k16 (PTX ISA fragment layouts).
 * Lanes 0..31; "row"/"col" are element coordinates inside the 16 x 16 (A) or 16 x 16-of-[n][k]
 * (B) shared tile whose 8 contiguous elements the lane's ldmatrix row address points at. */
#ifndef TW_CUDA_INDEX_H
#define TW_CUDA_INDEX_H

#include "tw_numeric.h"

/* ldmatrix.x4 for an A fragment (16 rows x 16 k, row-major): matrices a0..a3 =
 * (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15). */
TW_HD static inline int tw_ldsm_a_row(int lane) {
    return lane % 16;
}
TW_HD static inline int tw_ldsm_a_col(int lane) {
    return (lane / 16) * 8;
}

/* ldmatrix.x4 (no transpose) for the B fragments of two n8 tiles from a [n][k] tile: registers
 * r0, r1 = b0, b1 of n-tile 0 (n 0-7, k 0-7 / 8-15); r2, r3 = b0, b1 of n-tile 1 (n 8-15). */
TW_HD static inline int tw_ldsm_b_row(int lane) {
    return lane % 8 + (lane / 16) * 8;
}
TW_HD static inline int tw_ldsm_b_col(int lane) {
    return ((lane / 8) % 2) * 8;
}

/* ldmatrix.x4.trans for the B fragments of two n8 tiles from a [k][n] tile (V as [key][dim]):
 * r0, r1 = b0, b1 of n-tile 0 (k 0-7 / 8-15, n 0-7); r2, r3 = n-tile 1 (n 8-15). */
TW_HD static inline int tw_ldsm_bt_row(int lane) {
    return lane % 8 + ((lane / 8) % 2) * 8;
}
TW_HD static inline int tw_ldsm_bt_col(int lane) {
    return (lane / 16) * 8;
}

/* Accumulator element e (0..3) of an m16n8 fp32 fragment held by `lane`. */
TW_HD static inline int tw_mma_c_row(int lane, int e) {
    return lane / 4 + (e / 2) * 8;
}
TW_HD static inline int tw_mma_c_col(int lane, int e) {
    return 2 * (lane % 4) + (e % 2);
}

/* A-fragment element pair p (0..3) of `lane`: row and first k (the pair is k, k + 1). */
TW_HD static inline int tw_mma_a_row(int lane, int p) {
    return lane / 4 + (p % 2) * 8;
}
TW_HD static inline int tw_mma_a_col(int lane, int p) {
    return 2 * (lane % 4) + (p / 2) * 8;
}

/* Split-KV decode: the key range [*s0, *s1) of split `split` out of `splits` for a sequence of
 * `len` keys. Ranges are contiguous, disjoint, cover [0, len), and depend on len at run time
 * (so a captured graph stays right as sequences grow); trailing splits may be empty. */
TW_HD static inline void tw_splitkv_range(int len, int splits, int split, int *s0, int *s1) {
    int per = (len + splits - 1) / splits;
    int a = split * per;
    *s0 = a < len ? a : len;
    *s1 = *s0 + per < len ? *s0 + per : len;
}

/* ---- decode GEMV (kernels/cuda/gemv.cu): y[m, n] (+)= x[m, k] . w[n, k]^T for m <= 8 -------
 * As mma.sync m16n8k16 with the weights as A (16 output features per warp) and x^T as B (its m <= 8
 * rows the 8 columns), so the FMAs cost nothing and only the weights stream from memory. Each
 * block stages its k slice of x once, as bf16, in shared memory ([8][pitch]; rows >= m and
 * k >= the end zero), and its 8 warps cover 128 consecutive features; the k range is split
 * across blocks (gridDim.y) when the features alone would not fill the GPU, and the last block
 * of each feature range to finish adds the partial sums in split order (deterministic).
 * A sum over k may take k in any order if A and B agree: for a 32-wide k block kb, lane
 * (g = lane / 4, q = lane % 4) loads 16 contiguous bytes at k = kb + 8q of weight rows g and g + 8
 * and of x row g; mma step s (0, 1) takes word 2s of them (k + 4s, +1) as fragment positions
 * 2q, 2q + 1 (a0 / a1, b0) and word 2s + 1 (k + 4s + 2, +3) as 2q + 8, 2q + 9 (a2 / a3, b1). */
#define TW_GV_THREADS    256
#define TW_GV_ROWS       16                                /* features per warp */
#define TW_GV_BLOCK_ROWS (TW_GV_THREADS / 32 * TW_GV_ROWS) /* 128 */
#define TW_GV_KB         32                                /* k per pair of mma steps */
#define TW_GV_MAXM       8
#define TW_GV_KS_MAX     2048 /* k per split: x slice 8 x (2048 + 32) bf16 = 33 KB of shared memory */
#define TW_GV_KS_MIN     512 /* fewer k per split would spend more on partial sums than it gains */

/* first k (within a 32-wide block) of the lane's 16-byte loads */
TW_HD static inline int tw_gv_lane_k(int lane) {
    return 8 * (lane % 4);
}
/* the weight row (feature within the warp's 16) of the lane's load `half` (0: row g, 1: g + 8);
 * the x row a lane loads is tw_gv_lane_row(lane, 0) */
TW_HD static inline int tw_gv_lane_row(int lane, int half) {
    return lane / 4 + 8 * half;
}
/* A register r (a0..a3) of mma step s: word tw_gv_a_word of the load tw_gv_a_half */
TW_HD static inline int tw_gv_a_half(int r) {
    return r % 2;
}
TW_HD static inline int tw_gv_a_word(int r, int s) {
    return 2 * s + r / 2;
}
/* B register r (b0, b1) of mma step s: word tw_gv_b_word of the lane's x load */
TW_HD static inline int tw_gv_b_word(int r, int s) {
    return 2 * s + r;
}
/* element offset in the staged x slice of the lane's 16-byte read at block kk (a multiple of 32) */
TW_HD static inline int tw_gv_xs_off(int lane, int kk, int pitch) {
    return tw_gv_lane_row(lane, 0) * pitch + kk + tw_gv_lane_k(lane);
}

typedef struct {
    int blocks_x;   /* feature blocks of TW_GV_BLOCK_ROWS */
    int splits;     /* k splits (gridDim.y); 1: no partial sums */
    int ks;         /* k per split, a multiple of TW_GV_KB; the last split may be shorter */
    int pitch;      /* x slice row pitch in elements: 64 bytes mod 128, so the 8 lanes of each
                     * 16-byte shared-memory phase hit 8 different bank quads */
    int smem_bytes; /* dynamic shared memory of one block */
} tw_gv_plan;

/* Splits k so that blocks_x * splits reaches about 2 blocks per multiprocessor where k allows
 * (at least TW_GV_KS_MIN per split) and every slice fits shared memory (TW_GV_KS_MAX); no split
 * is empty. */
TW_HD static inline tw_gv_plan tw_gv_plan_make(int n, int k, int sm_count) {
    tw_gv_plan p;
    p.blocks_x = (n + TW_GV_BLOCK_ROWS - 1) / TW_GV_BLOCK_ROWS;
    int kr = (k + TW_GV_KB - 1) / TW_GV_KB * TW_GV_KB;
    int need = (kr + TW_GV_KS_MAX - 1) / TW_GV_KS_MAX;
    int want = (2 * (sm_count > 0 ? sm_count : 1) + p.blocks_x - 1) / p.blocks_x;
    int most = kr / TW_GV_KS_MIN > 1 ? kr / TW_GV_KS_MIN : 1;
    int s = want < most ? want : most;
    if (s < need) s = need;
    p.ks = ((kr + s - 1) / s + TW_GV_KB - 1) / TW_GV_KB * TW_GV_KB;
    p.splits = (kr + p.ks - 1) / p.ks;
    p.pitch = p.ks + (p.ks % 64 == 0 ? 32 : 0);
    p.smem_bytes = TW_GV_MAXM * p.pitch * 2;
    return p;
}

/* ---- Hopper GEMM with TMA and wgmma (kernels/cuda/gemm_wgmma_tma.cu) ---------------------------
 * The tile shape, shared-memory layout, descriptor encoding, pipeline parities and accumulator
 * layout of tw_k_gemm_wgmma_tma, written here so that tests/test_cuda_helpers.c can run a
 * software model of the tensor map (TMA, 128-byte swizzle), of wgmma's descriptor-addressed
 * operand reads and of the mbarrier pipeline against exactly the values the kernel uses.
 *
 * Block tile TW_WGT_BM x TW_WGT_BN, k step TW_WGT_BK = 64 bf16 = 128 bytes (one row of the
 * 128-byte swizzle pattern). Per stage: A (x rows) [BM][64] then B (w rows) [BN][64], both as TMA
 * writes them with CU_TENSOR_MAP_SWIZZLE_128B into 1024-byte aligned buffers. */
#define TW_WGT_BM          128 /* two consumer warpgroups x 64 rows */
#define TW_WGT_BN          256 /* wgmma n; 128 fp32 accumulators per consumer thread */
#define TW_WGT_BK          64  /* bf16 elements = 128 bytes = one swizzle row */
#define TW_WGT_STAGES      4   /* 4 x 48 KB of the 227 KB a block can have */
#define TW_WGT_CONSUMERS   2   /* consumer warpgroups (warpgroup 0 is the producer) */
#define TW_WGT_THREADS     (128 * (1 + TW_WGT_CONSUMERS))
#define TW_WGT_A_BYTES     (TW_WGT_BM * TW_WGT_BK * 2)          /* 16 KB */
#define TW_WGT_B_BYTES     (TW_WGT_BN * TW_WGT_BK * 2)          /* 32 KB */
#define TW_WGT_STAGE_BYTES (TW_WGT_A_BYTES + TW_WGT_B_BYTES)    /* 48 KB */
#define TW_WGT_BAR_OFFSET  (TW_WGT_STAGES * TW_WGT_STAGE_BYTES) /* full[S], empty[S] */
/* dynamic shared memory: stages, 2 x STAGES mbarriers, 1024 bytes of slack to align the base */
#define TW_WGT_SMEM (TW_WGT_BAR_OFFSET + 2 * TW_WGT_STAGES * 8 + 1024)

/* setmaxnreg split. The registers the launch gives every thread (ptxas raises a kernel that uses
 * setmaxnreg to its launch-bound maximum: 65536 / 384 rounded down to 8 = 168) form the CTA's
 * pool; setmaxnreg.dec hands (launch - producer) per producer thread back to it and
 * setmaxnreg.inc blocks until it can take (consumer - launch) per consumer thread (PTX ISA,
 * setmaxnreg: per-CTA pool, counts multiples of 8 in 24..256, one value per warpgroup). An inc
 * the pool cannot cover blocks forever (no mbarrier timeout reaches it), so the split must
 * balance for the launch count ptxas reports: tw_wgt_regpool_ok. */
#define TW_WGT_PRODUCER_REGS 40
#define TW_WGT_CONSUMER_REGS 232
TW_HD static inline int tw_wgt_regpool_ok(int launch_regs) {
    const int p = TW_WGT_PRODUCER_REGS, c = TW_WGT_CONSUMER_REGS;
    int valid = p % 8 == 0 && c % 8 == 0 && p >= 24 && c <= 256 && p <= launch_regs &&
                launch_regs <= c && launch_regs * TW_WGT_THREADS <= 65536;
    return valid && 128 * (launch_regs - p) >= 128 * TW_WGT_CONSUMERS * (c - launch_regs);
}

/* Bytes one TMA box of box_inner x box_outer elements of elem_bytes each delivers to shared
 * memory. A box that is partly outside the tensor is still delivered whole (the outside elements
 * zero-filled), so this is also the mbarrier transaction count for tail tiles. */
TW_HD static inline uint32_t tw_tma_box_bytes(uint32_t box_inner, uint32_t box_outer,
                                              uint32_t elem_bytes) {
    return box_inner * box_outer * elem_bytes;
}

/* CU_TENSOR_MAP_SWIZZLE_128B with a 128-byte box row, destination 1024-byte aligned: the 16-byte
 * chunk `chunk` (0..7) of box row `row` lands at row * 128 + 16 * (chunk XOR (row % 8)). The kernel
 * never computes this (TMA and wgmma apply it in hardware); it is the contract between the tensor
 * map's swizzle and the descriptor's layout type, which the CPU test models on both sides. */
TW_HD static inline uint32_t tw_sw128_offset(uint32_t row, uint32_t chunk) {
    return row * 128u + ((chunk ^ (row & 7u)) << 4);
}

/* wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format" of
 * wgmma.mma_async): bits 0-13 encode(start address), 16-29 encode(leading dimension byte
 * offset), 32-45 encode(stride dimension byte offset), 49-51 matrix base offset, 62-63 swizzle
 * mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte), with encode(x) = (x & 0x3FFFF) >> 4. */
TW_HD static inline uint64_t tw_wgmma_desc_encode(uint32_t x) {
    return (uint64_t)((x & 0x3FFFFu) >> 4);
}
TW_HD static inline uint64_t tw_wgmma_desc(uint32_t start, uint32_t lbo, uint32_t sbo,
                                           uint32_t base_offset, uint32_t swizzle) {
    return tw_wgmma_desc_encode(start) | (tw_wgmma_desc_encode(lbo) << 16) |
           (tw_wgmma_desc_encode(sbo) << 32) | ((uint64_t)(base_offset & 7u) << 49) |
           ((uint64_t)(swizzle & 3u) << 62);
}
#define TW_WGMMA_SWIZZLE_128B 1u

/* K-major operand in the 128-byte swizzle layout that TMA wrote (rows 128 bytes apart, 8-row
 * swizzle atoms of 1024 bytes stacked along m/n):
 *  - swizzle mode 1 (128-byte);
 *  - SBO = 1024: the stride dimension byte offset is the distance between consecutive 8-row
 *    groups along m/n, here one 1024-byte atom;
 *  - LBO: for swizzled K-major layouts the leading dimension byte offset is not used (the
 *    documentation says "assumed to be 1"), so it is encoded as 1 (16 bytes);
 *  - base offset 0: every stage buffer starts on a 1024-byte boundary, where the 128-byte
 *    swizzle's repeating pattern starts (the documented condition for base offset 0);
 *  - `start` may point 32, 64 or 96 bytes into the atom's first row: that selects the k16 slice
 *    (16 bf16 = 32 bytes) of the 64-wide k tile; the swizzle is a function of the address bits,
 *    so the hardware finds each row's chunk where TMA put it. */
TW_HD static inline uint64_t tw_wgmma_desc_sw128_kmajor(uint32_t start) {
    return tw_wgmma_desc(start, 16u, 1024u, 0u, TW_WGMMA_SWIZZLE_128B);
}
/* Descriptor of consumer warpgroup wg's A operand (rows 64 wg .. 64 wg + 63 of the stage's
 * [BM][64] x tile) for k16 slice ks (0..3), from the stage's A buffer shared address. */
TW_HD static inline uint64_t tw_wgt_desc_a(uint32_t stage_a, int wg, int ks) {
    return tw_wgmma_desc_sw128_kmajor(stage_a + (uint32_t)wg * 64u * 128u + (uint32_t)ks * 32u);
}
/* Descriptor of the B operand (all BN rows of the stage's [BN][64] weight tile), k16 slice ks. */
TW_HD static inline uint64_t tw_wgt_desc_b(uint32_t stage_b, int ks) {
    return tw_wgmma_desc_sw128_kmajor(stage_b + (uint32_t)ks * 32u);
}

/* Accumulator element i (0 .. N/2 - 1) of thread t (0..127 in its warpgroup) for
 * wgmma.mma_async.m64nNk16 with fp32 D (PTX ISA, "Matrix Fragments for wgmma.mma_async.m64nNk16",
 * accumulator D figure): warp t / 32 owns rows 16 (t / 32) .. + 15; within it, like mma.m16n8,
 * group g = (t % 32) / 4 and q = t % 4; element i lies in column block i / 4 (8 columns), at
 * row g (+ 8 for i % 4 >= 2) and column 2 q + i % 2. */
TW_HD static inline int tw_wgmma_d_row(int t, int i) {
    return (t / 32) * 16 + (t % 32) / 4 + ((i % 4) / 2) * 8;
}
TW_HD static inline int tw_wgmma_d_col(int t, int i) {
    return (i / 4) * 8 + (t % 4) * 2 + (i % 2);
}

/* Pipeline over k tiles kt = 0, 1, ... through `stages` shared buffers. Each buffer has a
 * "full" mbarrier (producer arrive.expect_tx + TMA bytes) and an "empty" one (consumer
 * releases). The u-th use of a buffer (u = kt / stages) completes phase u of its full barrier;
 * the consumers' release of use u completes phase u of its empty barrier. try_wait.parity(P)
 * succeeds once the phase of parity P that the barrier is in (or just left) has completed, so:
 *  - consumers wait on full[stage] with parity u & 1;
 *  - the producer, before refilling for kt >= stages, waits on empty[stage] with parity
 *    (u - 1) & 1 (the release of the previous use). */
TW_HD static inline int tw_pipe_stage(int kt, int stages) {
    return kt % stages;
}
TW_HD static inline uint32_t tw_pipe_full_parity(int kt, int stages) {
    return (uint32_t)(kt / stages) & 1u;
}
TW_HD static inline uint32_t tw_pipe_empty_parity(int kt, int stages) {
    return (uint32_t)(kt / stages - 1) & 1u;
}

/* Whether the tensor maps can describe the operands (cuTensorMapEncodeTiled: global address 16-
 * byte aligned, row pitch a multiple of 16 bytes and < 2^40, dims <= 2^32): x as [m][kpad] bf16
 * and w as [n][k] bf16. Otherwise the caller uses the mma.sync kernel. */
TW_HD static inline int tw_wgt_tma_ok(int k, int kpad, uintptr_t x_addr, uintptr_t w_addr) {
    return k > 0 && kpad >= k && k % 8 == 0 && kpad % 8 == 0 && x_addr % 16 == 0 &&
           w_addr % 16 == 0 && x_addr != 0 && w_addr != 0;
}

#endif
