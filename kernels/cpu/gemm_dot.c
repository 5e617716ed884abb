/* The dot-product GEMM driver: y[m, n] = x[m, k] . w[n, k]^T (+ y) with tiles whose outputs
 * each own one accumulator vector (lanes along k). Used for bf16 weights on CPUs with bf16
 * dot-product instructions (every m) and for small m elsewhere (decode, batched decode).
 *
 * Blocking: the activations are packed once (bf16 for `vdpbf16ps`), then tasks of (mb rows of
 * x) x (nb rows of w) are handed to the thread pool. Inside a task, for each k block of kc (the
 * kernel's, default 1024): for each rn-row weight micro-panel (rn x kc, kept in L1 or L2):
 * every rm-row tile of the task's x rows (the x block, mb x kc, kept in L2). Where the kernel
 * can (tile_pf), the tiles of a micro-panel prefetch the next one into L2 between them as they
 * compute: otherwise the first tile waits on memory while the others compute from cache, and a
 * batched decode step costs the weights' read time plus their arithmetic instead of the larger
 * of the two (decode, one tile per panel, streams faster too: more lines in flight). With m <=
 * TW_DOT_MB_ONE the task holds every row, so each weight row is read from memory exactly once per
 * call: decode streams the weights and batched decode up to 64 rows costs the same weight traffic
 * as one row. Determinism: an output's arithmetic (lane sums over a k block, one fixed horizontal
 * sum, the blocks added into y in k order) depends only on k and the kernel, not on the tiling, the
 * thread count or the rows computed alongside it. */
#include "gemm_internal.h"
#include "tw_pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef TW_DOT_KC
#define TW_DOT_KC 1024 /* default k block: an rn x kc weight micro-panel stays in L1 */
#endif
#define TW_DOT_MB           128 /* x rows per task in prefill (an mb x kc block stays in L2) */
#define TW_DOT_MB_ONE       64  /* up to this many rows, one task takes all rows: w read once */
#define TW_DOT_TASKS_PER    8   /* tasks per thread, for balance on a shared machine */
#define TW_DOT_WIDEN_ROWS   16  /* bf16 weights: tasks of more rows tile an fp32 copy */
#define TW_DOT_STREAM_BYTES ((size_t)1 << 20) /* x rows that stay in L2 whole */

typedef struct {
    const tw_dot_kernels *kn;
    const tw_gemm_args *a;
    const char *xp; /* packed activations (or x itself) */
    size_t ldxp, xsz, ldy, wsz, ldx;
    size_t kp; /* packed row length (elements) */
    int kc, rm, rn, mb, nb, mblocks, rows_per_pack;
} tw_dot_plan;

static void tw_dot_pack_task(void *arg, long t, int worker) {
    (void)worker;
    const tw_dot_plan *pl = arg;
    const tw_gemm_args *a = pl->a;
    int r0 = (int)t * pl->rows_per_pack;
    int r1 = r0 + pl->rows_per_pack < a->m ? r0 + pl->rows_per_pack : a->m;
    for (int r = r0; r < r1; r++)
        pl->kn->pack_x(a->k, a->x + (size_t)r * pl->ldx,
                       (void *)(pl->xp + (size_t)r * pl->ldxp * pl->xsz));
}

static void tw_dot_tile_task(void *arg, long t, int worker) {
    (void)worker;
    const tw_dot_plan *pl = arg;
    const tw_gemm_args *a = pl->a;
    const int ib = (int)(t % pl->mblocks), jb = (int)(t / pl->mblocks);
    const int i0 = ib * pl->mb, i1 = i0 + pl->mb < a->m ? i0 + pl->mb : a->m;
    const int j0 = jb * pl->nb, j1 = j0 + pl->nb < a->n ? j0 + pl->nb : a->n;
    const int bf16 = a->w_dtype == TW_BF16;
    /* many tiles per micro-panel (more than TW_DOT_WIDEN_ROWS rows): widen bf16 weights once
     * into an fp32 copy (in L1); for a few, each tile widens in registers (the first one streams
     * the panel from memory with its prefetches, the others find it in L1) */
    const int widen =
        bf16 && pl->kn->widen_panel && i1 - i0 > TW_DOT_WIDEN_ROWS && pl->kc <= TW_DOT_KC;
    _Alignas(64) float panel[TW_DOT_RN_MAX * TW_DOT_KC]; /* 32 KiB */
    /* When the task's rows of x fit in L2 whole (decode, batched decode, short prompts):
     * micro-panel by micro-panel, each weight row's k blocks back to back, so a weight row
     * streams start to end (what the prefetchers want). Otherwise k block by k block, so the
     * task's x block (mb x kc) stays in L2. The same arithmetic either way: each k block's sums
     * are added into y in k order. */
    const int nk = (a->k + pl->kc - 1) / pl->kc, nj = (j1 - j0 + pl->rn - 1) / pl->rn;
    const int stream = (size_t)(i1 - i0) * a->k * pl->xsz <= TW_DOT_STREAM_BYTES;
    for (int outer = 0; outer < (stream ? nj : nk); outer++)
        for (int inner = 0; inner < (stream ? nk : nj); inner++) {
            const int pc = (stream ? inner : outer) * pl->kc;
            const int jr = j0 + (stream ? outer : inner) * pl->rn;
            const int kc = a->k - pc < pl->kc ? a->k - pc : pl->kc;
            const int add = a->accumulate || pc > 0;
            const int rn = j1 - jr < pl->rn ? j1 - jr : pl->rn;
            const void *w = (const char *)a->w + ((size_t)jr * a->k + pc) * pl->wsz;
            size_t ldw = (size_t)a->k;
            int wf = bf16 ? TW_DOT_W_BF16 : 0;
            if (widen) {
                const size_t ldo =
                    (size_t)((kc + pl->kn->kstep - 1) / pl->kn->kstep) * (size_t)pl->kn->kstep;
                pl->kn->widen_panel(rn, kc, w, ldw, panel, ldo);
                w = panel, ldw = ldo, wf = TW_DOT_W_RESIDENT;
            }
            /* the tiles of this block prefetch the task's next block of weights between them
             * while they compute, so memory and arithmetic overlap */
            const int ntile = (i1 - i0 + pl->rm - 1) / pl->rm;
            tw_dot_prefetch pf = {0};
            int pf_lines = 0;
            if (pl->kn->tile_pf && bf16) {
                int o2 = outer, in2 = inner + 1;
                if (in2 == (stream ? nk : nj)) in2 = 0, o2++;
                if (o2 < (stream ? nj : nk)) {
                    const int pc2 = (stream ? in2 : o2) * pl->kc;
                    const int jr2 = j0 + (stream ? o2 : in2) * pl->rn;
                    const int kc2 = a->k - pc2 < pl->kc ? a->k - pc2 : pl->kc;
                    const int rn2 = j1 - jr2 < pl->rn ? j1 - jr2 : pl->rn;
                    const char *b = (const char *)a->w + ((size_t)jr2 * a->k + pc2) * pl->wsz;
                    const size_t off = (size_t)((uintptr_t)b & 63);
                    pf.base = b - off;
                    pf.ld = (size_t)a->k * pl->wsz;
                    pf.lpr = (int)((off + (size_t)kc2 * pl->wsz + 63) / 64);
                    pf.rows = rn2;
                    pf_lines = rn2 * pf.lpr;
                }
            }
            for (int ir = i0, q = 0; ir < i1; ir += pl->rm, q++) {
                const int rm = i1 - ir < pl->rm ? i1 - ir : pl->rm;
                const char *xt = pl->xp + ((size_t)ir * pl->ldxp + pc) * pl->xsz;
                float *yt = a->y + (size_t)ir * pl->ldy + jr;
                if (pf_lines) {
                    pf.lo = (int)((long)pf_lines * q / ntile);
                    pf.hi = (int)((long)pf_lines * (q + 1) / ntile);
                    pl->kn->tile_pf(rm, rn, kc, xt, pl->ldxp, w, wf, ldw, yt, pl->ldy, add, &pf);
                } else {
                    pl->kn->tile(rm, rn, kc, xt, pl->ldxp, w, wf, ldw, yt, pl->ldy, add);
                }
            }
        }
}

tw_status tw_gemm_dot(const tw_dot_kernels *kn, const tw_gemm_args *a, int threads) {
    if (!(kn->w_dtypes & (a->w_dtype == TW_BF16 ? TW_DOT_BF16 : TW_DOT_F32)))
        return TW_ERR(TW_ERR_INTERNAL, "gemm: the %s kernels do not take %s weights", kn->path,
                      tw_dtype_name(a->w_dtype));
    tw_dot_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.kn = kn;
    pl.a = a;
    pl.ldx = a->ldx ? (size_t)a->ldx : (size_t)a->k;
    pl.ldy = a->ldy ? (size_t)a->ldy : (size_t)a->n;
    pl.wsz = a->w_dtype == TW_BF16 ? 2 : 4;
    /* decode and small batches are bandwidth bound: 2-row tiles over rn_small weight rows, so
     * more weight rows stream side by side (memory-level parallelism) */
    const int small = a->m <= (kn->small_m_max ? kn->small_m_max : 8);
    pl.rm = small && kn->rm > 2 ? 2 : kn->rm;
    pl.rn = small ? kn->rn_small : kn->rn;
    pl.kc = (kn->kc ? kn->kc : TW_DOT_KC) / kn->kstep * kn->kstep;
    if (pl.kc < kn->kstep) pl.kc = kn->kstep;

    /* tasks: all rows in one block for small m (weights read once), else TW_DOT_MB; then
     * enough weight-row blocks for TW_DOT_TASKS_PER tasks per thread */
    pl.mb = a->m <= TW_DOT_MB_ONE ? a->m : TW_DOT_MB;
    pl.mblocks = (a->m + pl.mb - 1) / pl.mb;
    const long want = threads > 1 ? (long)threads * TW_DOT_TASKS_PER : 1;
    long nblocks = (want + pl.mblocks - 1) / pl.mblocks;
    long nb = ((long)a->n + nblocks - 1) / nblocks;
    nb = (nb + pl.rn - 1) / pl.rn * pl.rn;
    if (nb < pl.rn) nb = pl.rn;
    pl.nb = (int)nb;
    const long ntiles = (long)pl.mblocks * (((long)a->n + pl.nb - 1) / pl.nb);

    char *xbuf = NULL;
    if (kn->xsize) {
        pl.xsz = kn->xsize;
        pl.kp = ((size_t)a->k + kn->kstep - 1) / kn->kstep * kn->kstep;
        pl.ldxp = pl.kp;
        size_t bytes = ((size_t)a->m * pl.kp * pl.xsz + 63) & ~(size_t)63;
        xbuf = aligned_alloc(64, bytes);
        if (!xbuf)
            return TW_ERR(TW_ERR_NOMEM,
                          "gemm (%s): cannot allocate %zu bytes of packed activations", kn->name,
                          bytes);
        pl.xp = xbuf;
        pl.rows_per_pack = (int)((1 << 16) / pl.kp) + 1; /* ~64K elements per task */
        long npack = (a->m + pl.rows_per_pack - 1) / pl.rows_per_pack;
        tw_status st = tw_pool_run(threads, npack, tw_dot_pack_task, &pl);
        if (st != TW_OK) {
            free(xbuf);
            return st;
        }
    } else {
        pl.xsz = sizeof(float);
        pl.ldxp = pl.ldx;
        pl.xp = (const char *)a->x;
    }
    tw_status st = tw_pool_run(threads, ntiles, tw_dot_tile_task, &pl);
    free(xbuf);
    return st;
}
