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

#endif
