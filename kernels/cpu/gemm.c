/* CPU GEMM: y[m, n] = x[m, k] . w[n, k]^T (+ y), weights fp32 or bf16, fp32 accumulation.
 * Paths, chosen per call from the weight dtype, m and the SIMD level of the state the call runs
 * on (tw_cpu_state_simd: a backend's own, or the process default's):
 *  - bf16 weights on a CPU with bf16 dot-product instructions (AVX512_BF16; Arm BF16): the dot
 *    driver (gemm_dot.c) for every m, activations rounded to bf16 once per call.
 *  - m up to a per-kernel bound otherwise (decode, batches, short prompts; each kernel's
 *    max_m_*): the dot driver, fp32 activations, bf16 weights widened exactly (in registers,
 *    or once per micro-panel into an L1 copy); weights streamed from memory once per call for
 *    m <= 64.
 *  - larger m otherwise (prefill): BLIS-style blocking. An nc-column panel of W^T (all of k,
 *    <= 16 MiB so it stays in L3) is packed once, by all threads together, into nr-wide
 *    micro-panels (bf16 converted to fp32 there); then work items of (mc rows x a column
 *    chunk) pack their mc x kc blocks of x into mr-tall micro-panels and run the
 *    register-blocked mr x nr micro-kernel over them.
 * Threads come from the persistent pool (tw_pool.h); no result depends on the thread count. */
#include "tw_cpu.h"
#include "gemm_internal.h"
#include "cpu_state.h"

#include "tw_pool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Blocking of the blocked path comes from each kernel table (kc: a kc x nr B micro-panel stays
 * in L1; mc: an mc x kc A block stays in L2). */
#define TW_GEMM_NC 4096 /* nc cap: columns per packed weight panel */

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
                            size_t ldw, int w_bf16, float *y, size_t ldy, int add) {
    enum { CH = 8 }; /* independent partial sums so the loop vectorises and pipelines */
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * ldx;
            float part[CH] = {0};
            int p = 0;
            if (w_bf16) {
                const tw_bf16 *wj = (const tw_bf16 *)w + (size_t)j * ldw;
                for (; p + CH <= k; p += CH)
                    for (int c = 0; c < CH; c++) part[c] += xi[p + c] * tw_f32_from_bf16(wj[p + c]);
                for (; p < k; p++) part[0] += xi[p] * tw_f32_from_bf16(wj[p]);
            } else {
                const float *wj = (const float *)w + (size_t)j * ldw;
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

const tw_gemm_kernels tw_gemm_kernels_portable = {.name = "portable",
                                                  .path = "blocked/portable",
                                                  .mr = TW_PORT_MR,
                                                  .nr = TW_PORT_NR,
                                                  .kc = 256,
                                                  .mc = 144,
                                                  .ukr = ukr_portable,
                                                  .pack_b = NULL,
                                                  .pack_a = NULL};

TW_DOT_FROM_SKINNY(dot_tile_portable, skinny_portable)
const tw_dot_kernels tw_dot_kernels_portable = {.name = "portable",
                                                .path = "dot/portable",
                                                .w_dtypes = TW_DOT_BF16 | TW_DOT_F32,
                                                .kstep = 1,
                                                .xsize = 0,
                                                .pack_x = NULL,
                                                .rm = TW_GEMM_SKINNY_ROWS,
                                                .rn = 8,
                                                .rn_small = 8,
                                                .max_m_bf16 = 8,
                                                .max_m_f32 = 8,
                                                .tile = dot_tile_portable};

/* AMX for bf16 weights with enough rows, where usable. */
static int tw_gemm_use_amx(tw_simd level, const tw_gemm_args *a) {
    return a->w_dtype == TW_BF16 && a->m >= TW_GEMM_AMX_MIN_M && level == TW_SIMD_AMX;
}

/* The dot-driver kernels for this call, or NULL when the blocked path is the better one. */
static const tw_dot_kernels *tw_gemm_pick_dot(tw_simd level, const tw_gemm_args *a) {
    const tw_dot_kernels *dk = &tw_dot_kernels_portable;
    switch (level) {
#if defined(TW_X86)
    case TW_SIMD_AMX: /* below the AMX bound: the faster of the bf16 dot product and FMA */
        dk = a->w_dtype != TW_BF16         ? &tw_dot_kernels_avx512
             : tw_cpu_bf16_dot_preferred() ? &tw_dot_kernels_avx512bf16
                                           : &tw_dot_kernels_avx512split;
        break;
    case TW_SIMD_AVX512BF16:
        dk = a->w_dtype == TW_BF16 ? &tw_dot_kernels_avx512bf16 : &tw_dot_kernels_avx512;
        break;
    case TW_SIMD_AVX512:
        dk = a->w_dtype == TW_BF16 ? &tw_dot_kernels_avx512split : &tw_dot_kernels_avx512;
        break;
    case TW_SIMD_AVX2:
        dk = &tw_dot_kernels_avx2;
        break;
#endif
#if defined(__aarch64__) && defined(TW_NEON)
    case TW_SIMD_NEONBF16:
        dk = a->w_dtype == TW_BF16 ? &tw_dot_kernels_neonbf16 : &tw_dot_kernels_neon;
        break;
    case TW_SIMD_NEON:
        dk = &tw_dot_kernels_neon;
        break;
#endif
    default:
        break;
    }
    return a->m <= (a->w_dtype == TW_BF16 ? dk->max_m_bf16 : dk->max_m_f32) ? dk : NULL;
}

#if defined(TW_X86)
/* The L1 data cache in bytes: TW_GEMM_L1D (for tuning and tests), else the C library's answer
 * (CPUID), 0 when unknown; read once per process. */
static long tw_gemm_l1d_bytes(void) {
    static atomic_long cached = -1;
    long v = atomic_load(&cached);
    if (v >= 0) return v;
    const char *env = getenv("TW_GEMM_L1D");
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    v = env ? atol(env) : sysconf(_SC_LEVEL1_DCACHE_SIZE);
#else
    v = env ? atol(env) : 0;
#endif
    if (v < 0) v = 0;
    atomic_store(&cached, v);
    return v;
}
#endif

static const tw_gemm_kernels *tw_gemm_pick(tw_simd level) {
    (void)level; /* the blocked path has x86 kernels only (Arm runs the dot-product driver) */
#if defined(TW_X86)
    switch (level) {
    case TW_SIMD_AMX:
    case TW_SIMD_AVX512BF16:
    case TW_SIMD_AVX512: /* kc 256 needs a 48 KiB L1; an unknown size gets the older blocking */
        return tw_gemm_l1d_bytes() >= 48 * 1024 ? &tw_gemm_kernels_avx512
                                                : &tw_gemm_kernels_avx512_l1_32k;
    case TW_SIMD_AVX2:
        return &tw_gemm_kernels_avx2;
    default:
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

/* ---- blocked path ---- */
/* Packs x[m0 .. m0+mc, p0 .. p0+kc] into mr-tall micro-panels [kc][mr], zero-padding rows. */
static void tw_pack_a(const tw_gemm_kernels *kn, int mc, int kc, const float *x, size_t ldx,
                      float *ap) {
    const int mr = kn->mr;
    for (int i0 = 0; i0 < mc; i0 += mr) {
        int mb = mc - i0 < mr ? mc - i0 : mr;
        if (mb == mr && kn->pack_a && kn->pack_a(kc, x + (size_t)i0 * ldx, ldx, ap)) {
            ap += (size_t)kc * mr;
            continue;
        }
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

/* Shares of the blocked path. The weight panel of a jc block is packed once for all of k and
 * shared by every thread; work items are (mc block of rows) x (chunk of columns), handed out
 * dynamically: on a shared or oversubscribed machine a descheduled thread then delays one small
 * item, not a fixed half of the matrix. */
#define TW_GEMM_BPANEL_BYTES ((size_t)16 << 20) /* packed W panel (nc x k fp32) budget: in L3 */
#ifndef TW_GEMM_ITEMS_PER_THREAD
#define TW_GEMM_ITEMS_PER_THREAD 16
#endif

typedef struct {
    const tw_gemm_kernels *kn;
    const tw_gemm_args *a;
    size_t ldx, ldy;
    int mc, nc_max, nchunk; /* rows per item, columns per jc block, columns per item */
} tw_gemm_plan;

/* Computes y[ic .. ic+mc, jc+j0 .. jc+j1] from the packed panel bp (all of k) of block jc. */
static void tw_gemm_item(const tw_gemm_plan *pl, int ic, int mc, int jc, int ncpad, int j0, int j1,
                         const float *bp, float *abuf) {
    const tw_gemm_kernels *kn = pl->kn;
    const tw_gemm_args *a = pl->a;
    const int mr = kn->mr, nr = kn->nr;
    float edge[16 * 64]; /* [mr, nr] scratch for partial micro-tiles (mr <= 16, nr <= 64) */
    for (int pc = 0; pc < a->k; pc += kn->kc) {
        int kc = a->k - pc < kn->kc ? a->k - pc : kn->kc;
        int add = a->accumulate || pc > 0;
        tw_pack_a(kn, mc, kc, a->x + (size_t)ic * pl->ldx + pc, pl->ldx, abuf);
        const float *bpc = bp + (size_t)pc * ncpad; /* this k block's micro-panels */
        for (int jr = j0; jr < j1; jr += nr) {
            int nb = j1 - jr < nr ? j1 - jr : nr;
            const float *bs = bpc + (size_t)(jr / nr) * kc * nr;
            for (int ir = 0; ir < mc; ir += mr) {
                int mb = mc - ir < mr ? mc - ir : mr;
                const float *ap = abuf + (size_t)(ir / mr) * kc * mr;
                float *c = a->y + (size_t)(ic + ir) * pl->ldy + jc + jr;
                if (mb == mr && nb == nr) {
                    kn->ukr(kc, ap, bs, c, pl->ldy, add);
                } else {
                    kn->ukr(kc, ap, bs, edge, (size_t)nr, 0);
                    for (int i = 0; i < mb; i++)
                        for (int j = 0; j < nb; j++) {
                            float v = edge[i * nr + j];
                            float *cij = c + (size_t)i * pl->ldy + j;
                            *cij = add ? *cij + v : v;
                        }
                }
            }
        }
    }
}

/* The packed weight panel is cached per state (tw_cpu_panel_get, cpu_state.c). */

/* One jc block's shared state for the pool tasks: packing (kblocks x nstrips tasks) then
 * computing (mblocks x chunks tasks). */
typedef struct {
    const tw_gemm_plan *pl;
    float *bp;     /* the packed panel [k/kc][nc/nr][kc][nr] */
    float **abufs; /* per worker [mc/mr][kc][mr] */
    int jc, nc, ncpad, nstrips, mblocks, chunks;
} tw_gemm_block;

static void tw_gemm_pack_task(void *arg, long t, int worker) {
    (void)worker;
    const tw_gemm_block *blk = arg;
    const tw_gemm_plan *pl = blk->pl;
    const tw_gemm_kernels *kn = pl->kn;
    const tw_gemm_args *a = pl->a;
    const int nr = kn->nr, bf16 = a->w_dtype == TW_BF16;
    const size_t wsz = bf16 ? 2 : 4;
    const int q = (int)(t / blk->nstrips), s = (int)(t % blk->nstrips);
    const int pc = q * kn->kc;
    const int kc = a->k - pc < kn->kc ? a->k - pc : kn->kc;
    const int nb = blk->nc - s * nr < nr ? blk->nc - s * nr : nr;
    const char *src = (const char *)a->w + ((size_t)(blk->jc + s * nr) * a->k + pc) * wsz;
    float *dst = blk->bp + (size_t)pc * blk->ncpad + (size_t)s * kc * nr;
    if (nb < nr || !kn->pack_b || !kn->pack_b(kc, src, bf16, (size_t)a->k, dst))
        tw_pack_b(nr, nb, kc, src, bf16, (size_t)a->k, dst);
}

static void tw_gemm_compute_task(void *arg, long t, int worker) {
    const tw_gemm_block *blk = arg;
    const tw_gemm_plan *pl = blk->pl;
    const tw_gemm_args *a = pl->a;
    const int ib = (int)(t / blk->chunks), cb = (int)(t % blk->chunks);
    const int ic = ib * pl->mc, mc = a->m - ic < pl->mc ? a->m - ic : pl->mc;
    const int j0 = cb * pl->nchunk, j1 = j0 + pl->nchunk < blk->nc ? j0 + pl->nchunk : blk->nc;
    tw_gemm_item(pl, ic, mc, blk->jc, blk->ncpad, j0, j1, blk->bp, blk->abufs[worker]);
}

static tw_status tw_gemm_blocked(tw_cpu_state *cs, const tw_gemm_kernels *kn, const tw_gemm_args *a,
                                 size_t ldx, size_t ldy, int nthreads) {
    const int mr = kn->mr, nr = kn->nr;
    tw_gemm_plan pl = {kn, a, ldx, ldy, 0, 0, 0};
    /* nc: as many columns as keep the packed panel (nc x k) within the L3 budget. */
    long ncl = (long)(TW_GEMM_BPANEL_BYTES / ((size_t)a->k * sizeof(float)));
    ncl = ncl / nr * nr;
    if (ncl < 4L * nr) ncl = 4L * nr;
    if (ncl > TW_GEMM_NC) ncl = TW_GEMM_NC / nr * nr;
    long npad = (long)(a->n + nr - 1) / nr * nr;
    pl.nc_max = (int)(ncl < npad ? ncl : npad);
    /* mc: the L2 block, shrunk (to whole micro-panels) when m is small so rows alone give
     * enough items; then columns are chunked until there are enough items for balance. */
    const int target = nthreads * TW_GEMM_ITEMS_PER_THREAD;
    pl.mc = (kn->mc / mr) * mr;
    int mpanels = (a->m + mr - 1) / mr;
    if ((mpanels * mr + pl.mc - 1) / pl.mc < nthreads) {
        int per = (mpanels + nthreads - 1) / nthreads;
        pl.mc = (per < 1 ? 1 : per) * mr;
    }
    const int mblocks = (a->m + pl.mc - 1) / pl.mc;
    int strips = pl.nc_max / nr, nch = 1;
    while (mblocks * nch < target && strips / (nch * 2) >= 8) nch *= 2;
    pl.nchunk = (strips + nch - 1) / nch * nr;

    const size_t kc0 = (size_t)(a->k < kn->kc ? a->k : kn->kc);
    /* + 64 bytes: pack_a may write 8 floats past the last panel */
    const size_t abytes = ((size_t)pl.mc * kc0 * sizeof(float) + 64 + 63) & ~(size_t)63;
    const size_t bbytes = (size_t)pl.nc_max * a->k * sizeof(float);
    int cached = 0;
    float *bp = tw_cpu_panel_get(cs, bbytes, &cached); // [k/kc][nc/nr][kc][nr]
    if (!bp)
        return TW_ERR(TW_ERR_NOMEM, "gemm: cannot allocate %zu bytes for the packed panel", bbytes);
    float *abufs[TW_POOL_MAX_THREADS];
    if (nthreads > TW_POOL_MAX_THREADS) nthreads = TW_POOL_MAX_THREADS;
    float *ab = aligned_alloc(64, abytes * (size_t)nthreads);
    if (!ab) {
        tw_cpu_panel_put(cs, bp, cached);
        return TW_ERR(TW_ERR_NOMEM, "gemm: cannot allocate %zu bytes of packing buffer per thread",
                      abytes);
    }
    for (int t = 0; t < nthreads; t++) abufs[t] = ab + abytes / sizeof(float) * (size_t)t;
    tw_status st = TW_OK;
    for (int jc = 0; jc < a->n && st == TW_OK; jc += pl.nc_max) {
        tw_gemm_block blk = {.pl = &pl, .bp = bp, .abufs = abufs, .jc = jc, .mblocks = mblocks};
        blk.nc = a->n - jc < pl.nc_max ? a->n - jc : pl.nc_max;
        blk.ncpad = (blk.nc + nr - 1) / nr * nr;
        blk.nstrips = blk.ncpad / nr;
        blk.chunks = (blk.ncpad + pl.nchunk - 1) / pl.nchunk;
        const int kblocks = (a->k + kn->kc - 1) / kn->kc;
        /* Pack this block's panel for all of k, cooperatively; then compute. */
        st = tw_pool_run(nthreads, (long)kblocks * blk.nstrips, tw_gemm_pack_task, &blk);
        if (st == TW_OK)
            st = tw_pool_run(nthreads, (long)mblocks * blk.chunks, tw_gemm_compute_task, &blk);
    }
    free(ab);
    tw_cpu_panel_put(cs, bp, cached);
    return st;
}

static tw_status tw_gemm_run(const char *fn, tw_cpu_state *cs, const tw_gemm_args *a, int threads) {
    size_t ldx = a->ldx ? (size_t)a->ldx : (size_t)a->k;
    size_t ldy = a->ldy ? (size_t)a->ldy : (size_t)a->n;
    int nthreads = tw_cpu_threads(threads);
    const tw_simd level = tw_cpu_state_simd(cs);
    /* Small products (< 2 MFLOP, ~10 us on one core) run on the calling thread: handing out
     * tasks would cost more than it saves. */
    if ((double)a->m * a->n * a->k < 1048576.0) nthreads = 1;
    tw_status st;
    tw_gemm_info info;
    gemm_cpu_describe_with(cs, a, &info);
    tw_cpu_state_note_gemm(cs, &info);
#if defined(TW_X86)
    if (tw_gemm_use_amx(level, a)) {
        st = tw_gemm_amx(a, nthreads);
        if (st != TW_OK) return tw_error_ctx(st, "%s m=%d n=%d k=%d", fn, a->m, a->n, a->k);
        return TW_OK;
    }
#endif
    const tw_dot_kernels *dk = tw_gemm_pick_dot(level, a);
    st = dk ? tw_gemm_dot(dk, a, nthreads)
            : tw_gemm_blocked(cs, tw_gemm_pick(level), a, ldx, ldy, nthreads);
    if (st != TW_OK) return tw_error_ctx(st, "%s m=%d n=%d k=%d", fn, a->m, a->n, a->k);
    return TW_OK;
}

void gemm_cpu_describe_with(const tw_cpu_state *cs, const tw_gemm_args *a, tw_gemm_info *out) {
    const tw_simd level = tw_cpu_state_simd(cs);
    if (tw_gemm_use_amx(level, a)) {
        out->path = "amx";
        out->x_bf16 = 1;
        return;
    }
    const tw_dot_kernels *dk = tw_gemm_pick_dot(level, a);
    out->x_bf16 = dk && dk->xsize == sizeof(tw_bf16);
    out->path = dk ? dk->path : tw_gemm_pick(level)->path;
}

void gemm_cpu_describe(const tw_gemm_args *a, tw_gemm_info *out) {
    gemm_cpu_describe_with(tw_cpu_state_default(), a, out);
}

tw_status gemm_f32_cpu(const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_f32_cpu", a, threads));
    if (a->w_dtype != TW_F32)
        return TW_ERR(TW_ERR_INVALID, "gemm_f32_cpu: weights are %s (expected fp32)",
                      tw_gemm_dtype_name(a->w_dtype));
    return tw_gemm_run("gemm_f32_cpu", tw_cpu_state_default(), a, threads);
}

tw_status gemm_bf16_cpu(const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_bf16_cpu", a, threads));
    if (a->w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "gemm_bf16_cpu: weights are %s (expected bf16)",
                      tw_gemm_dtype_name(a->w_dtype));
    return tw_gemm_run("gemm_bf16_cpu", tw_cpu_state_default(), a, threads);
}

tw_status gemm_cpu(const tw_gemm_args *a, int threads) {
    return gemm_cpu_with(tw_cpu_state_default(), a, threads);
}

tw_status gemm_cpu_with(tw_cpu_state *cs, const tw_gemm_args *a, int threads) {
    TW_TRY(tw_gemm_check("gemm_cpu", a, threads));
    if (!cs) return TW_ERR(TW_ERR_INVALID, "gemm_cpu: state is NULL");
    return tw_gemm_run("gemm_cpu", cs, a, threads);
}

/* ---- peak loop, plain C (32 chains for the compiler to vectorise) -----------------------------
 */
double tw_peak_fma_portable(long iters, float *sink) {
    float a[32];
    for (int i = 0; i < 32; i++) a[i] = *sink + (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 32; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < 32; i++) s += a[i];
    *sink += s;
    return (double)iters * 32 * 2;
}
