/* The CUDA kernels' index arithmetic (kernels/tw_cuda_index.h) on the CPU: a software model of
 * ldmatrix.x4 (plain and .trans) and mma.sync m16n8k16, written here from the PTX ISA fragment
 * tables, runs the GEMM warp tile and the flash-attention warp tile exactly as the kernels
 * address them, and must reproduce a float64 matrix product. Also: split-KV ranges partition
 * every sequence; and for the sm_90a TMA + wgmma GEMM, models written here from the PTX ISA and
 * the driver documentation of the tensor map's 128-byte swizzle (TMA), of wgmma's descriptor-
 * addressed K-major operand reads and of the mbarrier phases, driven by the descriptors, byte
 * counts, parities and accumulator layout the kernel uses. Runs without a GPU (label cpu). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
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

/* ---- gemv.cu: the decode GEMV (m <= 8) on the tensor cores ------------------------------------
 * The plan (splits, k per split, pitch) and the whole kernel as a model: x staged as bf16 in a
 * [8][pitch] slice, each lane's 16-byte loads at the offsets the kernel computes, fragments
 * assembled from their words as the kernel assembles them, the mma model above, the output and
 * partial-sum addresses, and the last-arriving block's reduction in split order, with blocks
 * arriving in random orders. Must give a float64 x . w^T of the same bf16-rounded operands. */

Test(cuda_index, gemv_plan_covers_k_and_fills_the_gpu) {
    const int ns[] = {1, 16, 127, 128, 129, 1000, 4096, 6144, 28672, 128256};
    const int ks[] = {1, 5, 31, 32, 33, 100, 512, 1000, 2048, 4096, 4100, 8192, 14336, 65536};
    const int sms[] = {1, 8, 108, 132, 148};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
            for (size_t c = 0; c < sizeof sms / sizeof *sms; c++) {
                int n = ns[a], k = ks[b], sm = sms[c];
                tw_gv_plan p = tw_gv_plan_make(n, k, sm);
                cr_assert(p.blocks_x * TW_GV_BLOCK_ROWS >= n && (p.blocks_x - 1) * 128 < n,
                          "n %d: %d blocks", n, p.blocks_x);
                cr_assert(p.ks % TW_GV_KB == 0 && p.ks >= TW_GV_KB && p.ks <= TW_GV_KS_MAX,
                          "n %d k %d: k per split %d", n, k, p.ks);
                cr_assert(p.splits >= 1 && (long)p.splits * p.ks >= k, "k %d: %d x %d", k, p.splits,
                          p.ks);
                cr_assert((long)(p.splits - 1) * p.ks < k, "k %d: split %d of %d x %d is empty", k,
                          p.splits - 1, p.splits, p.ks);
                cr_assert(p.pitch >= p.ks && (2 * p.pitch) % 128 == 64, "pitch %d", p.pitch);
                cr_assert(p.smem_bytes == TW_GV_MAXM * p.pitch * 2 && p.smem_bytes <= 48 * 1024,
                          "k %d: %d bytes of shared memory (default limit 48 KB)", k, p.smem_bytes);
                /* enough blocks for ~2 per SM, unless k is too short to split that far */
                int kr = (k + 31) / 32 * 32;
                if (p.blocks_x * p.splits < 2 * sm)
                    cr_assert(p.ks <= TW_GV_KS_MIN + TW_GV_KB || p.splits * TW_GV_KS_MIN > kr - 32,
                              "n %d k %d sm %d: only %d blocks x %d splits (k per split %d)", n, k,
                              sm, p.blocks_x, p.splits, p.ks);
                if (kr > TW_GV_KS_MAX) cr_assert(p.splits > 1, "k %d unsplit", k);
            }
    /* Llama-3.1-8B decode shapes on an H200 (132 SMs): what the kernel will launch */
    tw_gv_plan o = tw_gv_plan_make(4096, 4096, 132), d = tw_gv_plan_make(4096, 14336, 132);
    cr_expect(o.splits == 8 && o.ks == 512, "o_proj: %d x %d", o.splits, o.ks);
    cr_expect(d.splits == 9 && d.ks == 1600, "down_proj: %d x %d", d.splits, d.ks);
}

Test(cuda_index, gemv_x_slice_reads_are_bank_conflict_free) {
    /* a 16-byte shared-memory access is served in phases of 8 lanes; 8 different 16-byte bank
     * quads (address / 16 mod 8) per phase mean one pass each */
    const int ks[] = {5, 32, 64, 96, 520, 4096, 14336, 16384};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        tw_gv_plan p = tw_gv_plan_make(4096, ks[i], 132);
        int pitch = p.pitch;
        for (int kk = 0; kk < p.ks; kk += TW_GV_KB)
            for (int phase = 0; phase < 4; phase++) {
                int seen = 0;
                for (int l = 8 * phase; l < 8 * phase + 8; l++) {
                    int byte = 2 * tw_gv_xs_off(l, kk, pitch);
                    cr_assert_eq(byte % 16, 0, "unaligned 16-byte read");
                    seen |= 1 << ((byte / 16) % 8);
                }
                cr_assert_eq(seen, 0xff, "k %d (pitch %d) kk %d phase %d: bank quads %02x", ks[i],
                             pitch, kk, phase, seen);
            }
    }
}

static float bf(uint16_t h) {
    return tw_test_from_bf16(h);
}

static void gv_model(int m, int n, int k, int ldx, int ldy, int accumulate, int sm, uint64_t seed) {
    tw_gv_plan p = tw_gv_plan_make(n, k, sm);
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    ldx = ldx ? ldx : k;
    ldy = ldy ? ldy : n;
    float *x = malloc(sizeof(float) * m * ldx), *y0 = malloc(sizeof(float) * m * ldy);
    float *y = malloc(sizeof(float) * m * ldy), *part = malloc(sizeof(float) * p.splits * m * n);
    uint16_t *w = malloc(2 * (size_t)n * k), *xs = malloc(2 * TW_GV_MAXM * (size_t)p.pitch);
    unsigned *count = calloc((size_t)p.blocks_x, sizeof *count);
    fill(&r, x, (size_t)m * ldx);
    fill(&r, y0, (size_t)m * ldy);
    for (size_t i = 0; i < (size_t)n * k; i++) w[i] = tw_test_to_bf16((float)tw_test_uniform(&r));
    for (int i = 0; i < m * ldy; i++) y[i] = accumulate ? y0[i] : NAN;
    for (int i = 0; i < p.splits * m * n; i++) part[i] = NAN;
    /* blocks in a random arrival order */
    int nb = p.blocks_x * p.splits, *order = malloc(sizeof(int) * nb);
    for (int i = 0; i < nb; i++) order[i] = i;
    for (int i = nb - 1; i > 0; i--) {
        int j = (int)((tw_test_uniform(&r) + 1) * 0.5 * (i + 1)) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    static float acc[32][4], a[32][4][2], b[32][2][2];
    static uint16_t wa[32][8], wb[32][8], xv[32][8];
    for (int o = 0; o < nb; o++) {
        int bx = order[o] % p.blocks_x, sp = order[o] / p.blocks_x;
        int k0 = sp * p.ks, kend = (k < k0 + p.ks ? k : k0 + p.ks) - k0;
        for (int i = 0; i < TW_GV_MAXM * p.pitch; i++) xs[i] = 0x7fc1; /* NaN: never staged */
        for (int i = 0; i < TW_GV_MAXM; i++)
            for (int c = 0; c < p.ks; c++)
                xs[i * p.pitch + c] =
                    i < m && c < kend ? tw_test_to_bf16(x[(size_t)i * ldx + k0 + c]) : 0;
        for (int warp = 0; warp < TW_GV_THREADS / 32; warp++) {
            int n0 = bx * TW_GV_BLOCK_ROWS + warp * TW_GV_ROWS;
            if (n0 >= n) continue;
            memset(acc, 0, sizeof acc);
            for (int kk = 0; kk < kend; kk += TW_GV_KB) {
                for (int l = 0; l < 32; l++) {
                    int kl = kk + tw_gv_lane_k(l);
                    for (int j = 0; j < 8; j++) {
                        int r0 = n0 + tw_gv_lane_row(l, 0), r1 = n0 + tw_gv_lane_row(l, 1);
                        int in = kl + j < kend;
                        wa[l][j] = r0 < n && in ? w[(size_t)r0 * k + k0 + kl + j] : 0;
                        wb[l][j] = r1 < n && in ? w[(size_t)r1 * k + k0 + kl + j] : 0;
                        xv[l][j] = xs[tw_gv_xs_off(l, kk, p.pitch) + j];
                    }
                }
                for (int s = 0; s < 2; s++) {
                    for (int l = 0; l < 32; l++)
                        for (int h = 0; h < 2; h++) {
                            for (int rg = 0; rg < 4; rg++) {
                                const uint16_t *v = tw_gv_a_half(rg) ? wb[l] : wa[l];
                                a[l][rg][h] = bf(v[2 * tw_gv_a_word(rg, s) + h]);
                            }
                            for (int rg = 0; rg < 2; rg++)
                                b[l][rg][h] = bf(xv[l][2 * tw_gv_b_word(rg, s) + h]);
                        }
                    mma_16816(acc, a, b);
                }
            }
            for (int l = 0; l < 32; l++)
                for (int e = 0; e < 4; e++) {
                    int i = tw_mma_c_col(l, e), f = n0 + tw_mma_c_row(l, e);
                    if (i >= m || f >= n) continue;
                    if (p.splits == 1)
                        y[(size_t)i * ldy + f] =
                            acc[l][e] + (accumulate ? y[(size_t)i * ldy + f] : 0);
                    else
                        part[((size_t)sp * m + i) * n + f] = acc[l][e];
                }
        }
        if (p.splits > 1 && ++count[bx] == (unsigned)p.splits) {
            for (int i = 0; i < m; i++)
                for (int f = bx * TW_GV_BLOCK_ROWS; f < (bx + 1) * TW_GV_BLOCK_ROWS && f < n; f++) {
                    float sum = 0;
                    for (int q = 0; q < p.splits; q++) sum += part[((size_t)q * m + i) * n + f];
                    y[(size_t)i * ldy + f] = sum + (accumulate ? y[(size_t)i * ldy + f] : 0);
                }
            count[bx] = 0;
        }
    }
    double *ref = malloc(sizeof(double) * m * n);
    float *got = malloc(sizeof(float) * m * n);
    for (int i = 0; i < m; i++)
        for (int f = 0; f < n; f++) {
            double sum = accumulate ? y0[(size_t)i * ldy + f] : 0;
            for (int kk = 0; kk < k; kk++)
                sum += (double)bf(tw_test_to_bf16(x[(size_t)i * ldx + kk])) *
                       bf(w[(size_t)f * k + kk]);
            ref[(size_t)i * n + f] = sum;
            got[(size_t)i * n + f] = y[(size_t)i * ldy + f];
        }
    double err = tw_test_rel_err(got, ref, (size_t)m * n);
    cr_expect(err < 1e-5,
              "gemv model m %d n %d k %d ldx %d ldy %d acc %d (%d splits of %d): rel err %g", m, n,
              k, ldx, ldy, accumulate, p.splits, p.ks, err);
    for (int i = 0; i < m; i++)
        for (int f = n; f < ldy; f++)
            cr_expect(accumulate ? y[(size_t)i * ldy + f] == y0[(size_t)i * ldy + f]
                                 : isnan(y[(size_t)i * ldy + f]),
                      "padding y[%d][%d] written", i, f);
    for (int bx = 0; bx < p.blocks_x; bx++)
        cr_expect_eq(count[bx], 0u, "counter %d not re-armed", bx);
    free(x), free(y0), free(y), free(part), free(w), free(xs), free(count), free(order), free(ref),
        free(got);
}

Test(cuda_index, gemv_model_gives_x_wt) {
    const struct {
        int m, n, k, ldx, ldy, acc, sm;
    } c[] = {
        {1, 37, 67, 0, 0, 0, 132},              /* k % 8 != 0, one split, one partial warp tile */
        {8, 300, 8192, 0, 0, 1, 132},           /* 16 splits of 512, accumulate */
        {3, 129, 4100, 70 + 4100, 131, 0, 132}, /* k tail inside a 32-block; padded x and y */
        {5, 1000, 2000, 0, 0, 1, 8},            /* few SMs: k split 2 ways only for shared memory */
        {8, 200, 14336, 0, 0, 0, 132},          /* k per split not a power of two (1600) */
        {2, 16, 24, 0, 0, 0, 132},              /* k < 32 */
        {7, 257, 520, 0, 0, 0, 132},            /* one split of 544 (k rounded up to 32) */
        {4, 513, 1056, 1057, 0, 1, 20},
        {6, 1, 9000, 0, 0, 0, 132}, /* one feature */
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        for (uint64_t seed = 1; seed <= 2; seed++)
            gv_model(c[i].m, c[i].n, c[i].k, c[i].ldx, c[i].ldy, c[i].acc, c[i].sm, seed * 100 + i);
}

/* ---- gemm_wgmma_tma.cu: descriptors, 128-byte swizzle, TMA + wgmma model, pipeline -------- */

/* The descriptor fields read back by shifting and masking, as the PTX ISA lays them out. */
typedef struct {
    uint32_t start, lbo, sbo, base_offset, swizzle, reserved;
} desc_fields;

static desc_fields desc_decode(uint64_t d) {
    desc_fields f;
    f.start = (uint32_t)(d & 0x3FFF) * 16;       /* bits 0-13, in 16-byte units */
    f.lbo = (uint32_t)((d >> 16) & 0x3FFF) * 16; /* bits 16-29 */
    f.sbo = (uint32_t)((d >> 32) & 0x3FFF) * 16; /* bits 32-45 */
    f.base_offset = (uint32_t)((d >> 49) & 0x7); /* bits 49-51 */
    f.swizzle = (uint32_t)(d >> 62);             /* bits 62-63 */
    f.reserved = (uint32_t)((d >> 14) & 0x3) | (uint32_t)((d >> 30) & 0x3) << 2 |
                 (uint32_t)((d >> 46) & 0x7) << 4 | (uint32_t)((d >> 52) & 0x3FF) << 7;
    return f;
}

Test(cuda_index, wgmma_descriptor_fields_round_trip) {
    /* addresses in the 256 KB window the 18-bit encoding covers, awkward ones included; bits
     * above it and the low 4 bits are dropped by encode(x) = (x & 0x3FFFF) >> 4 */
    const uint32_t addrs[] = {0,       16,      32,         1008,       1024,   0x3FFF0,
                              0x3FFFF, 0x40000, 0x40010,    0x12345678, 197632, 232448,
                              7,       0xFFFF0, 0xFFFFFFFF, 49152 + 96};
    const uint32_t nadd = sizeof addrs / sizeof addrs[0];
    for (uint32_t i = 0; i < nadd; i++)
        for (uint32_t j = 0; j < nadd; j++) {
            uint32_t st = addrs[i], lbo = addrs[j], sbo = addrs[(i + j) % nadd];
            uint32_t bo = (i + 3 * j) % 8, sw = (i + j) % 4;
            desc_fields f = desc_decode(tw_wgmma_desc(st, lbo, sbo, bo, sw));
            cr_assert_eq(f.start, (st % 262144) / 16 * 16, "start %#x -> %#x", st, f.start);
            cr_assert_eq(f.lbo, (lbo % 262144) / 16 * 16, "lbo %#x -> %#x", lbo, f.lbo);
            cr_assert_eq(f.sbo, (sbo % 262144) / 16 * 16, "sbo %#x -> %#x", sbo, f.sbo);
            cr_assert_eq(f.base_offset, bo);
            cr_assert_eq(f.swizzle, sw);
            cr_assert_eq(f.reserved, 0, "reserved bits set: %#x", f.reserved);
        }
    /* the kernel's K-major 128-byte swizzle descriptor: mode 1, SBO 1024 (one 8-row atom),
     * LBO encoded 1 (unused for swizzled K-major), base offset 0 */
    desc_fields f = desc_decode(tw_wgmma_desc_sw128_kmajor(5 * 1024 + 64));
    cr_assert_eq(f.swizzle, 1);
    cr_assert_eq(f.sbo, 1024);
    cr_assert_eq(f.lbo, 16);
    cr_assert_eq(f.base_offset, 0);
    cr_assert_eq(f.start, 5 * 1024 + 64);
    cr_assert_eq(tw_wgmma_desc_sw128_kmajor(1024) >> 62, 1, "swizzle mode in bits 62-63");
}

Test(cuda_index, sw128_offset_is_the_address_bit_xor) {
    for (uint32_t row = 0; row < 300; row++) {
        int used = 0;
        for (uint32_t chunk = 0; chunk < 8; chunk++) {
            /* Swizzle<3,4,3> on the byte address: bits 4-6 ^= bits 7-9 */
            uint32_t lin = row * 128 + chunk * 16;
            uint32_t want = lin ^ (((lin >> 7) & 7) << 4);
            uint32_t got = tw_sw128_offset(row, chunk);
            cr_assert_eq(got, want, "row %u chunk %u: %u, want %u", row, chunk, got, want);
            cr_assert(got >= row * 128 && got < row * 128 + 128, "row %u left its 128 bytes", row);
            used |= 1 << ((got / 16) % 8);
        }
        cr_assert_eq(used, 0xFF, "row %u: chunks not a permutation", row);
    }
    /* the point of the swizzle: one chunk column of 8 consecutive rows hits 8 distinct 16-byte
     * bank groups (a conflict-free 128-byte wavefront) */
    for (uint32_t r0 = 0; r0 < 64; r0 += 8)
        for (uint32_t chunk = 0; chunk < 8; chunk++) {
            int groups = 0;
            for (uint32_t r = r0; r < r0 + 8; r++)
                groups |= 1 << ((tw_sw128_offset(r, chunk) / 16) % 8);
            cr_assert_eq(groups, 0xFF, "rows %u.., chunk %u: bank groups %#x", r0, chunk, groups);
        }
}

Test(cuda_index, wgmma_d_fragment_layout) {
    /* independent formulation (PTX ISA figure for the m64nNk16 fp32 accumulator): warp w of the
     * warpgroup holds rows 16w..16w+15; for each 8-column block j its registers 4j..4j+3 are
     * (g, 2q), (g, 2q+1), (g+8, 2q), (g+8, 2q+1) with g = lane / 4, q = lane % 4 */
    const int ns[] = {8, 16, 128, 256};
    for (int ni = 0; ni < 4; ni++) {
        int n = ns[ni];
        static int seen[64][256];
        memset(seen, 0, sizeof seen);
        for (int w = 0; w < 4; w++)
            for (int lane = 0; lane < 32; lane++)
                for (int j = 0; j < n / 8; j++)
                    for (int e = 0; e < 4; e++) {
                        int t = 32 * w + lane, i = 4 * j + e;
                        int row = 16 * w + lane / 4 + (e >= 2 ? 8 : 0);
                        int col = 8 * j + 2 * (lane % 4) + (e & 1);
                        cr_assert_eq(tw_wgmma_d_row(t, i), row, "n %d t %d i %d row", n, t, i);
                        cr_assert_eq(tw_wgmma_d_col(t, i), col, "n %d t %d i %d col", n, t, i);
                        seen[tw_wgmma_d_row(t, i)][tw_wgmma_d_col(t, i)]++;
                    }
        for (int r = 0; r < 64; r++)
            for (int c = 0; c < n; c++)
                cr_assert_eq(seen[r][c], 1, "n %d: D[%d][%d] held %d times", n, r, c, seen[r][c]);
        /* i and i + 1 (i even) are neighbouring columns of one row: the float2 epilogue */
        for (int t = 0; t < 128; t++)
            for (int i = 0; i < n / 2; i += 2) {
                cr_assert_eq(tw_wgmma_d_row(t, i), tw_wgmma_d_row(t, i + 1));
                cr_assert_eq(tw_wgmma_d_col(t, i) + 1, tw_wgmma_d_col(t, i + 1));
                cr_assert_eq(tw_wgmma_d_col(t, i) % 2, 0);
            }
    }
}

/* TMA model (cuTensorMapEncodeTiled, CU_TENSOR_MAP_SWIZZLE_128B, 2-D bf16 [outer][inner], box
 * [rows][64]): box row r's element e (chunk e / 8) goes to dst + 128 r + 16 (chunk ^ (r % 8)) +
 * 2 (e % 8); elements outside the tensor are zeros. Returns the bytes delivered. smem holds one
 * float per bf16 slot (index = byte address / 2). */
static uint32_t tma_model_load(float *smem, uint32_t dst, const float *g, int inner, int outer,
                               int c0, int c1, int rows) {
    uint32_t bytes = 0;
    for (int r = 0; r < rows; r++)
        for (int e = 0; e < 64; e++) {
            int gi = c0 + e, go = c1 + r;
            float v = (gi < inner && go < outer) ? g[(size_t)go * inner + gi] : 0.0f;
            uint32_t chunk = (uint32_t)e / 8;
            uint32_t a = dst + 128u * r + 16u * (chunk ^ ((uint32_t)r % 8)) + 2u * (e % 8);
            smem[a / 2] = v;
            bytes += 2;
        }
    return bytes;
}

/* wgmma model: the `rows` x 16 K-major operand named by descriptor d, read as the PTX ISA
 * describes the 128-byte swizzle K-major layout: 8-row atoms SBO bytes apart, rows 128 bytes
 * apart inside an atom, the swizzle applied to the byte address (bits 4-6 ^= bits 7-9). */
static void wgmma_model_operand(const float *smem, uint64_t d, int rows, float (*out)[16]) {
    desc_fields f = desc_decode(d);
    cr_assert_eq(f.swizzle, 1, "descriptor is not 128-byte swizzle");
    cr_assert_eq(f.base_offset, 0, "non-zero base offset");
    for (int r = 0; r < rows; r++)
        for (int kk = 0; kk < 16; kk++) {
            uint32_t a = f.start + (uint32_t)(r / 8) * f.sbo + (uint32_t)(r % 8) * 128u + 2u * kk;
            uint32_t phys = a ^ (((a >> 7) & 7u) << 4);
            out[r][kk] = smem[phys / 2];
        }
}

/* Runs the whole GEMM as the kernel addresses it: every block, the producer's two boxes per k
 * tile into the stage buffers, each consumer warpgroup's four k16 wgmma reads through the
 * kernel's descriptors, the accumulator fragments through tw_wgmma_d_row/col, guarded stores. */
static void wgt_model_gemm(int m, int n, int k, int ldy, int accumulate, uint64_t seed) {
    int kpad = (k + 7) / 8 * 8;
    cr_assert(tw_wgt_tma_ok(k, kpad, 256, 512), "k %d not eligible", k);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    float *x = malloc((size_t)m * kpad * sizeof *x), *w = malloc((size_t)n * k * sizeof *w);
    for (size_t i = 0; i < (size_t)m * kpad; i++)
        x[i] = tw_test_from_bf16(tw_test_to_bf16((float)tw_test_uniform(&rng)));
    for (size_t i = 0; i < (size_t)n * k; i++)
        w[i] = tw_test_from_bf16(tw_test_to_bf16((float)tw_test_uniform(&rng)));
    float *y = malloc((size_t)m * ldy * sizeof *y), *y0 = malloc((size_t)m * ldy * sizeof *y0);
    tw_test_fill(&rng, y0, (size_t)m * ldy, 1.0f);
    if (accumulate)
        memcpy(y, y0, (size_t)m * ldy * sizeof *y);
    else
        tw_test_poison(y, (size_t)m * ldy);
    /* the dynamic window starts 16 bytes past a 1024 boundary: the kernel rounds up */
    const uint32_t window = 16, base = (window + 1023u) & ~1023u;
    cr_assert(base - window + TW_WGT_BAR_OFFSET + 2 * TW_WGT_STAGES * 8 <= TW_WGT_SMEM);
    float *smem = calloc((window + TW_WGT_SMEM) / 2, sizeof *smem);
    const uint32_t tx =
        tw_tma_box_bytes(TW_WGT_BK, TW_WGT_BM, 2) + tw_tma_box_bytes(TW_WGT_BK, TW_WGT_BN, 2);
    static float d[TW_WGT_CONSUMERS][128][128]; /* [warpgroup][thread][element] */
    int ktiles = (kpad + TW_WGT_BK - 1) / TW_WGT_BK;
    for (int bm = 0; bm * TW_WGT_BM < m; bm++)
        for (int bn = 0; bn * TW_WGT_BN < n; bn++) {
            int m0 = bm * TW_WGT_BM, n0 = bn * TW_WGT_BN;
            memset(d, 0, sizeof d);
            for (int kt = 0; kt < ktiles; kt++) {
                int s = tw_pipe_stage(kt, TW_WGT_STAGES);
                uint32_t sa = base + (uint32_t)s * TW_WGT_STAGE_BYTES, sb = sa + TW_WGT_A_BYTES;
                cr_assert_eq(sa % 1024, 0);
                cr_assert_eq(sb % 1024, 0);
                uint32_t got = tma_model_load(smem, sa, x, kpad, m, kt * TW_WGT_BK, m0, TW_WGT_BM);
                got += tma_model_load(smem, sb, w, k, n, kt * TW_WGT_BK, n0, TW_WGT_BN);
                cr_assert_eq(got, tx, "stage bytes %u, expect_tx %u", got, tx);
                for (int c = 0; c < TW_WGT_CONSUMERS; c++)
                    for (int ks = 0; ks < TW_WGT_BK / 16; ks++) {
                        static float opa[64][16], opb[TW_WGT_BN][16];
                        static double acc[64][TW_WGT_BN];
                        wgmma_model_operand(smem, tw_wgt_desc_a(sa, c, ks), 64, opa);
                        wgmma_model_operand(smem, tw_wgt_desc_b(sb, ks), TW_WGT_BN, opb);
                        for (int r = 0; r < 64; r++)
                            for (int cc = 0; cc < TW_WGT_BN; cc++) {
                                double sum = 0;
                                for (int kk = 0; kk < 16; kk++)
                                    sum += (double)opa[r][kk] * opb[cc][kk];
                                acc[r][cc] = sum;
                            }
                        for (int t = 0; t < 128; t++)
                            for (int i = 0; i < 128; i++)
                                d[c][t][i] +=
                                    (float)acc[tw_wgmma_d_row(t, i)][tw_wgmma_d_col(t, i)];
                    }
            }
            for (int c = 0; c < TW_WGT_CONSUMERS; c++)
                for (int t = 0; t < 128; t++)
                    for (int i = 0; i < 128; i++) {
                        int row = m0 + 64 * c + tw_wgmma_d_row(t, i);
                        int col = n0 + tw_wgmma_d_col(t, i);
                        if (row >= m || col >= n) continue;
                        float *yp = &y[(size_t)row * ldy + col];
                        *yp = d[c][t][i] + (accumulate ? *yp : 0.0f);
                    }
        }
    double *ref = malloc((size_t)m * n * sizeof *ref);
    float *yc = malloc((size_t)m * n * sizeof *yc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double sum = accumulate ? y0[(size_t)i * ldy + j] : 0.0;
            for (int kk = 0; kk < k; kk++)
                sum += (double)x[(size_t)i * kpad + kk] * w[(size_t)j * k + kk];
            ref[(size_t)i * n + j] = sum;
            yc[(size_t)i * n + j] = y[(size_t)i * ldy + j];
        }
    double err = tw_test_rel_err(yc, ref, (size_t)m * n);
    cr_assert(err < 1e-6, "model m=%d n=%d k=%d acc=%d: rel err %g", m, n, k, accumulate, err);
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldy; j++) {
            float v = y[(size_t)i * ldy + j];
            cr_assert(accumulate ? v == y0[(size_t)i * ldy + j] : isnan(v), "padding y[%d][%d]", i,
                      j);
        }
    free(x), free(w), free(y), free(y0), free(smem), free(ref), free(yc);
}

Test(cuda_index, wgmma_tma_model_gives_x_wt) {
    /* rows past m and n, k past the end (zero-filled boxes), one and several k tiles, a padded
     * y row stride, accumulate */
    wgt_model_gemm(150, 300, 200, 300, 0, 21);
    wgt_model_gemm(9, 37, 8, 41, 1, 22);
    wgt_model_gemm(130, 257, 136, 260, 1, 23);
}

Test(cuda_index, wgmma_tma_eligibility) {
    cr_expect(tw_wgt_tma_ok(8, 8, 16, 32));
    cr_expect(tw_wgt_tma_ok(4096, 4096, 1 << 20, 256));
    cr_expect(!tw_wgt_tma_ok(7, 8, 16, 32), "k %% 8 != 0: w row pitch not a multiple of 16 bytes");
    cr_expect(!tw_wgt_tma_ok(67, 72, 16, 32));
    cr_expect(!tw_wgt_tma_ok(64, 64, 16, 40), "w not 16-byte aligned");
    cr_expect(!tw_wgt_tma_ok(64, 64, 8, 32), "x not 16-byte aligned");
    cr_expect(!tw_wgt_tma_ok(64, 60, 16, 32), "kpad < k");
    cr_expect(!tw_wgt_tma_ok(64, 64, 0, 32), "NULL x");
    cr_expect(!tw_wgt_tma_ok(0, 0, 16, 32), "k = 0");
}

Test(cuda_index, wgmma_tma_setmaxnreg_pool_balances) {
    /* per-CTA pool (PTX ISA setmaxnreg): one producer warpgroup gives back 128 (R - 40), two
     * consumer warpgroups take 2 x 128 (232 - R); R = registers per thread at launch */
    for (int r = 24; r <= 256; r += 8) {
        long given = 128L * (r - 40), taken = 2L * 128 * (232 - r);
        int want = r >= 40 && r <= 232 && r * 384 <= 65536 && given >= taken;
        cr_assert_eq(tw_wgt_regpool_ok(r), want, "launch registers %d", r);
    }
    cr_assert(tw_wgt_regpool_ok(168), "the 384-thread launch bound gives 168 registers");
    cr_assert(!tw_wgt_regpool_ok(160), "160: consumers' setmaxnreg.inc would wait forever");
    cr_assert(!tw_wgt_regpool_ok(176), "176 x 384 exceeds the 65536-register file");
}

/* mbarrier model (PTX ISA): a phase completes when its pending arrivals and pending transaction
 * bytes both reach zero; try_wait.parity(P) succeeds iff the current phase has parity != P
 * (the phase of parity P is then the immediately preceding, completed one). */
typedef struct {
    int count, pending, tx, completed;
} mbar_model;

static void mbar_init(mbar_model *b, int count) {
    b->count = b->pending = count;
    b->tx = 0;
    b->completed = 0;
}
static void mbar_check(mbar_model *b) {
    if (b->pending == 0 && b->tx == 0) {
        b->completed++;
        b->pending = b->count;
    }
}
static int mbar_try_wait(const mbar_model *b, uint32_t parity) {
    return (uint32_t)(b->completed & 1) != parity;
}

/* The kernel's protocol with agents interleaved at random: the producer thread, the TMA engine
 * (lands issued boxes later, in order), and 8 consumer warps, each retiring tile kt-1 (wait_group
 * 1) after issuing tile kt. Checks: a consumer passes the full barrier only once its tile's data
 * is there; TMA never overwrites a stage that a warp still reads; everything finishes. */
static void pipeline_model(int ktiles, uint64_t seed) {
    enum { S = TW_WGT_STAGES, W = TW_WGT_CONSUMERS * 4 };
    const int bytes = TW_WGT_STAGE_BYTES;
    mbar_model full[S], empty[S];
    for (int s = 0; s < S; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], W);
    int data[S], readers[S];          /* tile held by each stage; warps reading it */
    int inflight[64], n_inflight = 0; /* issued, not landed TMA tiles (FIFO) */
    int pk = 0, ck[W], cstate[W];     /* producer / consumer next tile; 0 wait, 1 retire */
    for (int s = 0; s < S; s++) data[s] = -1, readers[s] = 0;
    for (int c = 0; c < W; c++) ck[c] = 0, cstate[c] = 0;
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    int done = 0;
    for (long step = 0; step < 1000000 && !done; step++) {
        int who = (int)((tw_test_uniform(&r) + 1) * 0.5 * (W + 2)); /* 0 producer, 1 TMA, 2.. */
        if (who > W + 1) who = W + 1;
        if (who == 0 && pk < ktiles) {
            int s = tw_pipe_stage(pk, S);
            if (pk >= S && !mbar_try_wait(&empty[s], tw_pipe_empty_parity(pk, S))) continue;
            full[s].tx += bytes; /* arrive.expect_tx */
            full[s].pending--;
            mbar_check(&full[s]);
            cr_assert(n_inflight < 64);
            inflight[n_inflight++] = pk++;
        } else if (who == 1 && n_inflight > 0) {
            int kt = inflight[0], s = tw_pipe_stage(kt, S);
            cr_assert_eq(readers[s], 0,
                         "TMA for tile %d overwrites stage %d while %d warps read tile %d", kt, s,
                         readers[s], data[s]);
            data[s] = kt;
            full[s].tx -= bytes; /* complete_tx */
            mbar_check(&full[s]);
            memmove(inflight, inflight + 1, (size_t)--n_inflight * sizeof *inflight);
        } else if (who >= 2) {
            int c = who - 2, kt = ck[c];
            if (cstate[c] == 0 && kt < ktiles) {
                int s = tw_pipe_stage(kt, S);
                if (!mbar_try_wait(&full[s], tw_pipe_full_parity(kt, S))) continue;
                cr_assert_eq(data[s], kt, "warp %d passed full[%d] for tile %d but it holds %d", c,
                             s, kt, data[s]);
                readers[s]++; /* wgmma of tile kt in flight */
                cstate[c] = 1;
            } else if (cstate[c] == 1) {
                /* wait_group 1: tile kt - 1 done, release its stage */
                if (kt > 0) {
                    int s = tw_pipe_stage(kt - 1, S);
                    readers[s]--;
                    empty[s].pending--;
                    mbar_check(&empty[s]);
                }
                cstate[c] = 0;
                ck[c] = kt + 1;
                if (ck[c] == ktiles) { /* wait_group 0 after the loop */
                    readers[tw_pipe_stage(ktiles - 1, S)]--;
                    cstate[c] = 2;
                }
            }
        }
        done = pk == ktiles && n_inflight == 0;
        for (int c = 0; c < W; c++) done = done && cstate[c] == 2;
    }
    cr_assert(done, "pipeline ktiles=%d seed %llu did not finish (deadlock?)", ktiles,
              (unsigned long long)seed);
    for (int s = 0; s < S; s++) cr_assert_eq(readers[s], 0);
}

Test(cuda_index, wgmma_tma_pipeline_parities) {
    const int kts[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 40};
    for (int i = 0; i < 10; i++)
        for (uint64_t seed = 1; seed <= 20; seed++) pipeline_model(kts[i], seed * 7919 + kts[i]);
    /* the parities themselves: use u = kt / S of a stage waits for phase u of full, u - 1 of empty
     */
    for (int kt = 0; kt < 100; kt++) {
        cr_assert_eq(tw_pipe_full_parity(kt, 4), (uint32_t)((kt / 4) % 2));
        if (kt >= 4) cr_assert_eq(tw_pipe_empty_parity(kt, 4), (uint32_t)((kt / 4 + 1) % 2));
    }
}
