/* The CUDA kernels' index arithmetic (kernels/tw_cuda_index.h) on the CPU: a software model of
 * ldmatrix.x4 (plain and .trans) and mma.sync m16n8k16, written here from the PTX ISA fragment
 * tables, runs the GEMM warp tile and the flash-attention warp tile exactly as the kernels
 * address them, and must reproduce a float64 matrix product. Also: split-KV ranges partition
 * every sequence. Runs without a GPU (label cpu). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tw_cuda_index.h"
#include "tw_test_util.h"

/* ldmatrix.x4: lane L supplies the row address (row[L], col[L]) of row L % 8 of matrix L / 8;
 * without .trans lane t receives M[t/4][2(t%4)], M[t/4][2(t%4)+1] of each matrix, with .trans
 * M[2(t%4)][t/4], M[2(t%4)+1][t/4]. */
static void ldsm_x4(const float *smem, int ld, const int *row, const int *col, int trans,
                    float out[32][4][2]) {
    for (int j = 0; j < 4; j++) {
        float m[8][8];
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++) m[r][c] = smem[row[8 * j + r] * ld + col[8 * j + r] + c];
        for (int t = 0; t < 32; t++) {
            int a = t / 4, b = 2 * (t % 4);
            out[t][j][0] = trans ? m[b][a] : m[a][b];
            out[t][j][1] = trans ? m[b + 1][a] : m[a][b + 1];
        }
    }
}

/* mma.sync.m16n8k16: acc (per lane c0..c3) += A . B with the PTX layouts, g = t/4, q = t%4:
 * a0 = A[g][2q..], a1 = A[g+8][2q..], a2 = A[g][2q+8..], a3 = A[g+8][2q+8..];
 * b0 = B[2q..][g], b1 = B[2q+8..][g]; c0,c1 = C[g][2q..], c2,c3 = C[g+8][2q..]. */
static void mma_16816(float acc[32][4], float a[32][4][2], float b[32][2][2]) {
    double A[16][16], B[16][8], C[16][8];
    for (int t = 0; t < 32; t++) {
        int g = t / 4, q = t % 4;
        for (int h = 0; h < 2; h++) {
            A[g][2 * q + h] = a[t][0][h];
            A[g + 8][2 * q + h] = a[t][1][h];
            A[g][2 * q + 8 + h] = a[t][2][h];
            A[g + 8][2 * q + 8 + h] = a[t][3][h];
            B[2 * q + h][g] = b[t][0][h];
            B[2 * q + 8 + h][g] = b[t][1][h];
            C[g][2 * q + h] = acc[t][h];
            C[g + 8][2 * q + h] = acc[t][2 + h];
        }
    }
    for (int t = 0; t < 32; t++) {
        int g = t / 4, q = t % 4;
        for (int e = 0; e < 4; e++) {
            int r = g + (e / 2) * 8, c = 2 * q + e % 2;
            double s = C[r][c];
            for (int k = 0; k < 16; k++) s += A[r][k] * B[k][c];
            acc[t][e] = (float)s;
        }
    }
}

static void fill(tw_test_rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)tw_test_uniform(r);
}

Test(cuda_index, gemm_warp_tile_addresses_give_x_wt) {
    /* gemm_mma.cu: shared A [128][40] and B [128][40] (k 0..31 used), 8 warps of 64 x 32 */
    enum { LDS = 40 };
    static float sa[128 * LDS], sb[128 * LDS];
    tw_test_rng r;
    tw_test_rng_seed(&r, 11);
    fill(&r, sa, sizeof sa / sizeof sa[0]);
    fill(&r, sb, sizeof sb / sizeof sb[0]);
    for (int warp = 0; warp < 8; warp++) {
        int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
        static float acc[4][4][32][4];
        memset(acc, 0, sizeof acc);
        for (int ks = 0; ks < 2; ks++) {
            float af[4][32][4][2], bf[4][32][2][2];
            for (int mt = 0; mt < 4; mt++) {
                int row[32], col[32];
                for (int l = 0; l < 32; l++) {
                    row[l] = wm + mt * 16 + tw_ldsm_a_row(l);
                    col[l] = ks * 16 + tw_ldsm_a_col(l);
                }
                ldsm_x4(sa, LDS, row, col, 0, af[mt]);
            }
            for (int np = 0; np < 2; np++) {
                int row[32], col[32];
                float rr[32][4][2];
                for (int l = 0; l < 32; l++) {
                    row[l] = wn + np * 16 + tw_ldsm_b_row(l);
                    col[l] = ks * 16 + tw_ldsm_b_col(l);
                }
                ldsm_x4(sb, LDS, row, col, 0, rr);
                for (int t = 0; t < 32; t++)
                    for (int h = 0; h < 2; h++) {
                        bf[2 * np][t][0][h] = rr[t][0][h];
                        bf[2 * np][t][1][h] = rr[t][1][h];
                        bf[2 * np + 1][t][0][h] = rr[t][2][h];
                        bf[2 * np + 1][t][1][h] = rr[t][3][h];
                    }
            }
            for (int mt = 0; mt < 4; mt++)
                for (int nt = 0; nt < 4; nt++) mma_16816(acc[mt][nt], af[mt], bf[nt]);
        }
        int seen[64][32];
        memset(seen, 0, sizeof seen);
        for (int mt = 0; mt < 4; mt++)
            for (int nt = 0; nt < 4; nt++)
                for (int l = 0; l < 32; l++)
                    for (int e = 0; e < 4; e++) {
                        int i = mt * 16 + tw_mma_c_row(l, e), j = nt * 8 + tw_mma_c_col(l, e);
                        double ref = 0;
                        for (int k = 0; k < 32; k++)
                            ref += (double)sa[(wm + i) * LDS + k] * sb[(wn + j) * LDS + k];
                        cr_assert_float_eq(acc[mt][nt][l][e], ref, 1e-4, "warp %d y[%d][%d]", warp,
                                           wm + i, wn + j);
                        seen[i][j]++;
                    }
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 32; j++)
                cr_assert_eq(seen[i][j], 1, "warp %d: y[%d][%d] stored %d times", warp, i, j,
                             seen[i][j]);
    }
}

Test(cuda_index, attention_warp_tile_addresses_give_softmax_inputs) {
    /* attn_prefill.cu: one warp's 16 queries against a 64-key tile, D = 64, rows D + 8 apart */
    enum { D = 64, BN = 64, LDS = D + 8 };
    static float q[16][D], sk[BN * LDS], sv[BN * LDS];
    tw_test_rng r;
    tw_test_rng_seed(&r, 12);
    fill(&r, &q[0][0], 16 * D);
    fill(&r, sk, BN * LDS);
    fill(&r, sv, BN * LDS);
    /* Q fragments as the kernel loads them from global memory */
    static float qf[D / 16][32][4][2];
    for (int kk = 0; kk < D / 16; kk++)
        for (int l = 0; l < 32; l++)
            for (int p = 0; p < 4; p++) {
                int row = tw_mma_a_row(l, p), col = kk * 16 + tw_mma_a_col(l, p);
                qf[kk][l][p][0] = q[row][col];
                qf[kk][l][p][1] = q[row][col + 1];
            }
    static float s[BN / 8][32][4];
    memset(s, 0, sizeof s);
    for (int kk = 0; kk < D / 16; kk++)
        for (int np = 0; np < BN / 16; np++) {
            int row[32], col[32];
            float rr[32][4][2], b0[32][2][2], b1[32][2][2];
            for (int l = 0; l < 32; l++) {
                row[l] = np * 16 + tw_ldsm_b_row(l);
                col[l] = kk * 16 + tw_ldsm_b_col(l);
            }
            ldsm_x4(sk, LDS, row, col, 0, rr);
            for (int t = 0; t < 32; t++)
                for (int h = 0; h < 2; h++) {
                    b0[t][0][h] = rr[t][0][h], b0[t][1][h] = rr[t][1][h];
                    b1[t][0][h] = rr[t][2][h], b1[t][1][h] = rr[t][3][h];
                }
            mma_16816(s[2 * np], qf[kk], b0);
            mma_16816(s[2 * np + 1], qf[kk], b1);
        }
    /* S = Q K^T at the coordinates the kernel masks and exponentiates */
    static double sref[16][BN];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < BN; j++) {
            double d = 0;
            for (int c = 0; c < D; c++) d += (double)q[i][c] * sk[j * LDS + c];
            sref[i][j] = d;
        }
    for (int nt = 0; nt < BN / 8; nt++)
        for (int l = 0; l < 32; l++)
            for (int e = 0; e < 4; e++) {
                int i = tw_mma_c_row(l, e), key = nt * 8 + tw_mma_c_col(l, e);
                cr_assert_float_eq(s[nt][l][e], sref[i][key], 1e-4, "S[%d][%d]", i, key);
            }
    /* O = P V with P taken straight from the S accumulators (the kernel's register reuse) */
    static float o[D / 8][32][4];
    memset(o, 0, sizeof o);
    for (int kk = 0; kk < BN / 16; kk++) {
        float pa[32][4][2];
        for (int t = 0; t < 32; t++)
            for (int h = 0; h < 2; h++) {
                pa[t][0][h] = s[2 * kk][t][h];
                pa[t][1][h] = s[2 * kk][t][2 + h];
                pa[t][2][h] = s[2 * kk + 1][t][h];
                pa[t][3][h] = s[2 * kk + 1][t][2 + h];
            }
        for (int dp = 0; dp < D / 16; dp++) {
            int row[32], col[32];
            float rr[32][4][2], b0[32][2][2], b1[32][2][2];
            for (int l = 0; l < 32; l++) {
                row[l] = kk * 16 + tw_ldsm_bt_row(l);
                col[l] = dp * 16 + tw_ldsm_bt_col(l);
            }
            ldsm_x4(sv, LDS, row, col, 1, rr);
            for (int t = 0; t < 32; t++)
                for (int h = 0; h < 2; h++) {
                    b0[t][0][h] = rr[t][0][h], b0[t][1][h] = rr[t][1][h];
                    b1[t][0][h] = rr[t][2][h], b1[t][1][h] = rr[t][3][h];
                }
            mma_16816(o[2 * dp], pa, b0);
            mma_16816(o[2 * dp + 1], pa, b1);
        }
    }
    for (int dt = 0; dt < D / 8; dt++)
        for (int l = 0; l < 32; l++)
            for (int e = 0; e < 4; e++) {
                int i = tw_mma_c_row(l, e), c = dt * 8 + tw_mma_c_col(l, e);
                double ref = 0;
                for (int j = 0; j < BN; j++) ref += sref[i][j] * sv[j * LDS + c];
                cr_assert_float_eq(o[dt][l][e], ref, 1e-3 * (1 + fabs(ref)), "O[%d][%d]", i, c);
            }
}

Test(cuda_index, splitkv_ranges_partition_each_sequence) {
    for (int len = 0; len <= 300; len++)
        for (int splits = 1; splits <= 70; splits++) {
            int next = 0;
            for (int sp = 0; sp < splits; sp++) {
                int s0, s1;
                tw_splitkv_range(len, splits, sp, &s0, &s1);
                cr_assert(s0 <= s1, "len %d splits %d split %d: [%d, %d)", len, splits, sp, s0, s1);
                if (s1 > s0) {
                    cr_assert_eq(s0, next, "len %d splits %d: gap or overlap at split %d", len,
                                 splits, sp);
                    next = s1;
                }
            }
            cr_assert_eq(next, len, "len %d splits %d: keys up to %d covered", len, splits, next);
        }
}
