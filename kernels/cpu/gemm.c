/* CPU GEMM driver: y[m, n] = x[m, k] . w[n, k]^T (+ y), weights fp32 or bf16, fp32 accumulation.
 * Two regimes:
 *  - m <= TW_GEMM_SKINNY_MAX (decode): bandwidth bound. Threads split the weight rows (n); each
 *    weight row is streamed from memory once and used for every row of x. bf16 weights are
 *    widened in registers, never stored as fp32.
 *  - larger m (prefill): compute bound. BLIS-style blocking: a kc x nc panel of W^T is packed
 *    (converted to fp32 when bf16) into nr-wide micro-panels, an mc x kc block of x into mr-tall
 *    micro-panels, and a register-blocked mr x nr micro-kernel runs over them. Each thread owns
 *    a rectangle of y (a tm x tn grid chosen to balance work and packing), so threads never
 *    synchronise.
 * The SIMD level (portable C, AVX2+FMA, AVX-512) is chosen at run time by tw_cpu_simd_active. */
#include "tw_cpu.h"
#include "gemm_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define TW_GEMM_SKINNY_MAX 8    /* largest m taken by the skinny (GEMV) path */
#define TW_GEMM_KC         256  /* kc: B micro-panel (kc x nr) stays in L1 */
#define TW_GEMM_MC         144  /* mc: A block (mc x kc) stays in L2 */
#define TW_GEMM_NC         4080 /* nc: B panel (kc x nc) stays in L3 */
#define TW_GEMM_SKINNY_NB  32   /* weight rows per skinny block (kept in L2 across x chunks) */

/* ---- bf16 array conversion ------------------------------------------------------------------ */
void tw_bf16_from_f32_array(tw_bf16 *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = tw_bf16_from_f32(src[i]);
}

void tw_f32_from_bf16_array(float *dst, const tw_bf16 *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = tw_f32_from_bf16(src[i]);
}

/* ---- portable kernels (plain C; the compiler vectorises them for the baseline ISA) ---------- */
#define TW_PORT_MR 4
#define TW_PORT_NR 16

static void ukr_portable(int kc, const float *a, const float *b, float *c, size_t ldc, int add) {
    float acc[TW_PORT_MR][TW_PORT_NR];
    for (int i = 0; i < TW_PORT_MR; i++)
        for (int j = 0; j < TW_PORT_NR; j++) acc[i][j] = 0.0f;
    for (int p = 0; p < kc; p++) {
        const float *bp = b + (size_t)p * TW_PORT_NR;
        const float *ap = a + (size_t)p * TW_PORT_MR;
        for (int i = 0; i < TW_PORT_MR; i++)
            for (int j = 0; j < TW_PORT_NR; j++) acc[i][j] += ap[i] * bp[j];
    }
    for (int i = 0; i < TW_PORT_MR; i++) {
        float *ci = c + (size_t)i * ldc;
        if (add)
            for (int j = 0; j < TW_PORT_NR; j++) ci[j] += acc[i][j];
        else
            for (int j = 0; j < TW_PORT_NR; j++) ci[j] = acc[i][j];
    }
}

static void skinny_portable(int m, int n, int k, const float *x, size_t ldx, const void *w,
                            int w_bf16, float *y, size_t ldy, int add) {
    enum { CH = 8 }; /* independent partial sums so the loop vectorises and pipelines */
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * ldx;
            float part[CH] = {0};
            int p = 0;
            if (w_bf16) {
                const tw_bf16 *wj = (const tw_bf16 *)w + (size_t)j * k;
                for (; p + CH <= k; p += CH)
                    for (int c = 0; c < CH; c++) part[c] += xi[p + c] * tw_f32_from_bf16(wj[p + c]);
                for (; p < k; p++) part[0] += xi[p] * tw_f32_from_bf16(wj[p]);
            } else {
                const float *wj = (const float *)w + (size_t)j * k;
                for (; p + CH <= k; p += CH)
                    for (int c = 0; c < CH; c++) part[c] += xi[p + c] * wj[p + c];
                for (; p < k; p++) part[0] += xi[p] * wj[p];
            }
            float s = 0.0f;
            for (int c = 0; c < CH; c++) s += part[c];
            float *yij = y + (size_t)i * ldy + j;
            *yij = add ? *yij + s : s;
        }
    }
}

const tw_gemm_kernels tw_gemm_kernels_portable = {"portable", TW_PORT_MR, TW_PORT_NR, ukr_portable,
                                                  skinny_portable};

static const tw_gemm_kernels *tw_gemm_pick(void) {
#if defined(TW_X86)
    switch (tw_cpu_simd_active()) {
    case TW_SIMD_AVX512:
        return &tw_gemm_kernels_avx512;
    case TW_SIMD_AVX2:
        return &tw_gemm_kernels_avx2;
    case TW_SIMD_PORTABLE:
        break;
    }
#endif
    return &tw_gemm_kernels_portable;
}

/* ---- argument checks ------------------------------------------------------------------------- */
/* Local name table: keeps this file independent of backend.c (and so of the whole backend). */
static const char *tw_gemm_dtype_name(tw_dtype dt) {
    return dt == TW_F32 ? "fp32" : dt == TW_BF16 ? "bf16" : dt == TW_I32 ? "i32" : "unknown";
}

static tw_status tw_gemm_check(const char *fn, const tw_gemm_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "%s: args is NULL", fn);
    if (a->m < 1 || a->n < 1 || a->k < 1)
        return TW_ERR(TW_ERR_INVALID, "%s: shape m=%d n=%d k=%d (each must be >= 1)", fn, a->m,
                      a->n, a->k);
    if (!a->x) return TW_ERR(TW_ERR_INVALID, "%s: x is NULL (m=%d k=%d)", fn, a->m, a->k);
    if (!a->w) return TW_ERR(TW_ERR_INVALID, "%s: w is NULL (n=%d k=%d)", fn, a->n, a->k);
    if (!a->y) return TW_ERR(TW_ERR_INVALID, "%s: y is NULL (m=%d n=%d)", fn, a->m, a->n);
    if (a->ldx != 0 && a->ldx < a->k)
        return TW_ERR(TW_ERR_INVALID, "%s: ldx=%d is smaller than k=%d", fn, a->ldx, a->k);
    if (a->ldy != 0 && a->ldy < a->n)
        return TW_ERR(TW_ERR_INVALID, "%s: ldy=%d is smaller than n=%d", fn, a->ldy, a->n);
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "%s: threads=%d (must be >= 0)", fn, threads);
    if (a->w_dtype != TW_F32 && a->w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "%s: weight dtype %s (expected fp32 or bf16)", fn,
                      tw_gemm_dtype_name(a->w_dtype));
    return TW_OK;
}

/* ---- skinny path ------------------------------------------------------------------------------
 */
static void tw_gemm_skinny(const tw_gemm_kernels *kn, const tw_gemm_args *a, size_t ldx, size_t ldy,
                           int nthreads) {
    const int bf16 = a->w_dtype == TW_BF16;
    const size_t wsz = bf16 ? 2 : 4;
    const int nblocks = (a->n + TW_GEMM_SKINNY_NB - 1) / TW_GEMM_SKINNY_NB;
    /* Contiguous, equal shares of weight rows per thread: each thread streams its own rows. */
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int b = 0; b < nblocks; b++) {
        int j0 = b * TW_GEMM_SKINNY_NB;
        int nb = a->n - j0 < TW_GEMM_SKINNY_NB ? a->n - j0 : TW_GEMM_SKINNY_NB;
        const char *wb = (const char *)a->w + (size_t)j0 * a->k * wsz;
        for (int i0 = 0; i0 < a->m; i0 += TW_GEMM_SKINNY_ROWS) {
            int mb = a->m - i0 < TW_GEMM_SKINNY_ROWS ? a->m - i0 : TW_GEMM_SKINNY_ROWS;
            kn->skinny(mb, nb, a->k, a->x + (size_t)i0 * ldx, ldx, wb, bf16,
                       a->y + (size_t)i0 * ldy + j0, ldy, a->accumulate);
        }
    }
}

/* ---- blocked path -----------------------------------------------------------------------------
 */
/* Packs x[m0 .. m0+mc, p0 .. p0+kc] into mr-tall micro-panels [kc][mr], zero-padding rows. */
static void tw_pack_a(int mr, int mc, int kc, const float *x, size_t ldx, float *ap) {
    for (int i0 = 0; i0 < mc; i0 += mr) {
        int mb = mc - i0 < mr ? mc - i0 : mr;
        for (int ii = 0; ii < mr; ii++) {
            if (ii < mb) {
                const float *src = x + (size_t)(i0 + ii) * ldx;
                for (int p = 0; p < kc; p++) ap[(size_t)p * mr + ii] = src[p];
            } else {
                for (int p = 0; p < kc; p++) ap[(size_t)p * mr + ii] = 0.0f;
            }
        }
        ap += (size_t)kc * mr;
    }
}

/* Packs W^T[p0 .. p0+kc, j0 .. j0+nc] (= w rows j, columns p) into nr-wide micro-panels
 * [kc][nr], converting bf16 to fp32 and zero-padding columns. w points at w[j0, p0]. */
static void tw_pack_b(int nr, int nc, int kc, const void *w, int bf16, size_t ldw, float *bp) {
    for (int j0 = 0; j0 < nc; j0 += nr) {
        int nb = nc - j0 < nr ? nc - j0 : nr;
        for (int jj = 0; jj < nr; jj++) {
            if (jj < nb) {
                if (bf16) {
                    const tw_bf16 *src = (const tw_bf16 *)w + (size_t)(j0 + jj) * ldw;
                    for (int p = 0; p < kc; p++) bp[(size_t)p * nr + jj] = tw_f32_from_bf16(src[p]);
                } else {
                    const float *src = (const float *)w + (size_t)(j0 + jj) * ldw;
                    for (int p = 0; p < kc; p++) bp[(size_t)p * nr + jj] = src[p];
                }
            } else {
                for (int p = 0; p < kc; p++) bp[(size_t)p * nr + jj] = 0.0f;
            }
        }
        bp += (size_t)kc * nr;
    }
}

/* One thread's rectangle y[m0 .. m1, n0 .. n1]. abuf: [mc_max * kc], bbuf: [kc * nc_max]. */
static void tw_gemm_tile(const tw_gemm_kernels *kn, const tw_gemm_args *a, size_t ldx, size_t ldy,
                         int m0, int m1, int n0, int n1, int mc_max, float *abuf, float *bbuf) {
    const int mr = kn->mr, nr = kn->nr, bf16 = a->w_dtype == TW_BF16;
    const size_t wsz = bf16 ? 2 : 4;
    float edge[16 * 64]; /* [mr, nr] scratch for partial micro-tiles (mr <= 16, nr <= 64) */
    for (int jc = n0; jc < n1; jc += TW_GEMM_NC) {
        int nc = n1 - jc < TW_GEMM_NC ? n1 - jc : TW_GEMM_NC;
        for (int pc = 0; pc < a->k; pc += TW_GEMM_KC) {
            int kc = a->k - pc < TW_GEMM_KC ? a->k - pc : TW_GEMM_KC;
            int add = a->accumulate || pc > 0;
            const char *wsrc = (const char *)a->w + ((size_t)jc * a->k + pc) * wsz;
            tw_pack_b(nr, nc, kc, wsrc, bf16, (size_t)a->k, bbuf);
            for (int ic = m0; ic < m1; ic += mc_max) {
                int mc = m1 - ic < mc_max ? m1 - ic : mc_max;
                tw_pack_a(mr, mc, kc, a->x + (size_t)ic * ldx + pc, ldx, abuf);
                for (int jr = 0; jr < nc; jr += nr) {
                    int nb = nc - jr < nr ? nc - jr : nr;
                    const float *bp = bbuf + (size_t)(jr / nr) * kc * nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int mb = mc - ir < mr ? mc - ir : mr;
                        const float *ap = abuf + (size_t)(ir / mr) * kc * mr;
                        float *c = a->y + (size_t)(ic + ir) * ldy + jc + jr;
                        if (mb == mr && nb == nr) {
                            kn->ukr(kc, ap, bp, c, ldy, add);
                        } else {
                            kn->ukr(kc, ap, bp, edge, (size_t)nr, 0);
                            for (int i = 0; i < mb; i++)
                                for (int j = 0; j < nb; j++) {
                                    float v = edge[i * nr + j];
                                    float *cij = c + (size_t)i * ldy + j;
                                    *cij = add ? *cij + v : v;
                                }
                        }
                    }
                }
            }
        }
    }
}

/* Splits `units` (micro-tiles) into `parts` near-equal shares; returns [start, end) of share i. */
static void tw_share(int units, int parts, int i, int *s, int *e) {
    int base = units / parts, rem = units % parts;
    *s = i * base + (i < rem ? i : rem);
    *e = *s + base + (i < rem ? 1 : 0);
}

static tw_status tw_gemm_blocked(const tw_gemm_kernels *kn, const tw_gemm_args *a, size_t ldx,
                                 size_t ldy, int nthreads) {
    const int mr = kn->mr, nr = kn->nr;
    const int mt = (a->m + mr - 1) / mr, nt = (a->n + nr - 1) / nr; /* micro-tiles per dim */
    /* Thread grid tm x tn: minimise per-thread compute plus packing, both in element units
     * (packing one element costs about as much as 20 multiply-adds per output here). */
    int tm = 1, tn = nthreads;
    double best = -1.0;
    for (int d = 1; d <= nthreads; d++) {
        if (nthreads % d) continue;
        int dm = d, dn = nthreads / d;
        if (dm > mt || dn > nt) continue;
        double rows = (double)((mt + dm - 1) / dm) * mr, cols = (double)((nt + dn - 1) / dn) * nr;
        double cost = rows * cols + 20.0 * (rows + cols);
        if (best < 0 || cost < best) best = cost, tm = dm, tn = dn;
    }
    if (best < 0) tm = 1, tn = 1; /* fewer micro-tiles than threads in both directions */
    const int used = tm * tn;
    const int kc = a->k < TW_GEMM_KC ? a->k : TW_GEMM_KC;
    const int mc_max = (TW_GEMM_MC / mr) * mr;
    int nc_max = ((a->n + nr - 1) / nr) * nr;
    if (nc_max > TW_GEMM_NC) nc_max = TW_GEMM_NC;
    const size_t abytes = ((size_t)mc_max * kc * sizeof(float) + 63) & ~(size_t)63;
    const size_t bbytes = ((size_t)nc_max * kc * sizeof(float) + 63) & ~(size_t)63;
    int failed = 0;
#pragma omp parallel num_threads(used)
    {
        /* The team may be smaller than asked (nested or limited runtime): share by its size. */
        int team = omp_get_num_threads(), tid = omp_get_thread_num();
        float *buf = aligned_alloc(64, abytes + bbytes);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        } else {
            for (int t = tid; t < used; t += team) {
                int ti = t / tn, tj = t % tn, ms, me, ns, ne;
                tw_share(mt, tm, ti, &ms, &me);
                tw_share(nt, tn, tj, &ns, &ne);
                int m0 = ms * mr, m1 = me * mr < a->m ? me * mr : a->m;
                int n0 = ns * nr, n1 = ne * nr < a->n ? ne * nr : a->n;
                if (m0 < m1 && n0 < n1)
                    tw_gemm_tile(kn, a, ldx, ldy, m0, m1, n0, n1, mc_max, buf,
                                 buf + abytes / sizeof(float));
            }
            free(buf);
        }
    }
    if (failed)
        return TW_ERR(TW_ERR_NOMEM, "gemm: cannot allocate %zu bytes of packing buffers per thread",
                      abytes + bbytes);
    return TW_OK;
}

static tw_status tw_gemm_run(const char *fn, const tw_gemm_args *a, int threads) {
    const tw_gemm_kernels *kn = tw_gemm_pick();
    size_t ldx = a->ldx ? (size_t)a->ldx : (size_t)a->k;
    size_t ldy = a->ldy ? (size_t)a->ldy : (size_t)a->n;
    int nthreads = tw_cpu_threads(threads);
    /* Tiny products: thread start-up costs more than the work. */
    if ((double)a->m * a->n * a->k < 32768.0) nthreads = 1;
    if (a->m <= TW_GEMM_SKINNY_MAX) {
        int nblocks = (a->n + TW_GEMM_SKINNY_NB - 1) / TW_GEMM_SKINNY_NB;
        if (nthreads > nblocks) nthreads = nblocks;
        tw_gemm_skinny(kn, a, ldx, ldy, nthreads);
        return TW_OK;
    }
    tw_status st = tw_gemm_blocked(kn, a, ldx, ldy, nthreads);
    if (st != TW_OK) return tw_error_ctx(st, "%s m=%d n=%d k=%d", fn, a->m, a->n, a->k);
    return TW_OK;
}

tw_status gemm_f32_cpu(const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_f32_cpu", a, threads));
    if (a->w_dtype != TW_F32)
        return TW_ERR(TW_ERR_INVALID, "gemm_f32_cpu: weights are %s (expected fp32)",
                      tw_gemm_dtype_name(a->w_dtype));
    return tw_gemm_run("gemm_f32_cpu", a, threads);
}

tw_status gemm_bf16_cpu(const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_bf16_cpu", a, threads));
    if (a->w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "gemm_bf16_cpu: weights are %s (expected bf16)",
                      tw_gemm_dtype_name(a->w_dtype));
    return tw_gemm_run("gemm_bf16_cpu", a, threads);
}

tw_status gemm_cpu(const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_cpu", a, threads));
    return tw_gemm_run("gemm_cpu", a, threads);
}
