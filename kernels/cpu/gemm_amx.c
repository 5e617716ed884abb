/* AMX-BF16 GEMM for bf16 weights (compiled with -mamx-tile -mamx-bf16 and the AVX-512 flags;
 * only called when CPUID, the OS's XSAVE state and Linux's per-process permission for the tile
 * data (arch_prctl ARCH_REQ_XCOMP_PERM) allow).
 *
 * The weights are the A operand, read in place: a 16 x 32 tile of W (16 weight rows, 32 k) is
 * exactly 16 rows of 64 bytes of the [n, k] checkpoint layout, so no weight is ever packed or
 * copied (except zero-padded copies at the matrix's ragged edges). The activations are the B
 * operand, rounded to bf16 (RNE) and packed once per call into the pair-interleaved layout the
 * instruction wants (B[k/2][m][2]). C^T = W . x^T accumulates in 4 tiles (32 weight rows x 32
 * rows of x) over all of k, then is transposed into y.
 *
 * Numerics: as the vdpbf16ps path (activations rounded to bf16, exact bf16 products, fp32
 * accumulation with round-to-nearest-even and subnormals flushed); each output accumulates its
 * whole k in one tile, k step by k step in order, so results do not depend on the tiling, the
 * thread count or the batch. */
#include "gemm_internal.h"
#include "gemm_avx512_inl.h"
#include "tw_pool.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA  18

int tw_amx_request(void) {
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* palette 1, every tile 16 rows x 64 bytes */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) tw_tilecfg;

static void tw_amx_config(void) {
    tw_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) c.colsb[t] = 64, c.rows[t] = 16;
    _tile_loadconfig(&c);
}

/* ---- packing the activations: xq[m/16][k/32][16 pair rows][16 m][2] bf16 -----------------------
 */
/* 32 fp32 -> 32 bf16 (RNE), the k tail and missing rows as zeros */
static inline __m512i cvt32(const float *x, int valid) {
    __mmask16 ml = (__mmask16)(valid >= 16 ? 0xffff : valid <= 0 ? 0 : (1u << valid) - 1);
    __mmask16 mh = (__mmask16)(valid >= 32 ? 0xffff : valid <= 16 ? 0 : (1u << (valid - 16)) - 1);
    __m512 lo = _mm512_maskz_loadu_ps(ml, x), hi = _mm512_maskz_loadu_ps(mh, x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

typedef struct {
    const tw_gemm_args *a;
    size_t ldx, ldy;
    int mp, kb; /* m padded to 32, k steps of 32 */
    uint16_t *xq;
    int nbt, mbt, mblocks; /* weight rows and x rows per task, m blocks */
} amx_plan;

/* task t: rows 16t .. 16t+15 of x, every k step */
static void amx_pack_task(void *arg, long t, int worker) {
    (void)worker;
    const amx_plan *pl = arg;
    const tw_gemm_args *a = pl->a;
    const int m0 = (int)t * 16;
    for (int s = 0; s < pl->kb; s++) {
        __m512i r[16];
        for (int j = 0; j < 16; j++) {
            int row = m0 + j;
            r[j] = row < a->m ? cvt32(a->x + (size_t)row * pl->ldx + (size_t)s * 32, a->k - s * 32)
                              : _mm512_setzero_si512();
        }
        tw_transpose16i(r); /* r[p] = pair p of the 16 rows */
        uint16_t *dst = pl->xq + ((size_t)t * pl->kb + s) * 512;
        for (int p = 0; p < 16; p++) _mm512_storeu_si512((void *)(dst + (size_t)p * 32), r[p]);
    }
}

/* ---- the tiles
 * ----------------------------------------------------------------------------------------- */
/* A tile source: 16 weight rows x 32 k at (n0, k0) in place, or a zero-padded copy at edges */
static const void *amx_a_src(const tw_gemm_args *a, int n0, int s, uint16_t *buf, size_t *stride) {
    const int k0 = s * 32, kv = a->k - k0 < 32 ? a->k - k0 : 32,
              nv = a->n - n0 < 16 ? a->n - n0 : 16;
    const uint16_t *w = (const uint16_t *)a->w + (size_t)n0 * a->k + k0;
    if (nv == 16 && kv == 32) {
        *stride = (size_t)a->k * 2;
        return w;
    }
    memset(buf, 0, 16 * 64);
    for (int r = 0; r < nv; r++) memcpy(buf + r * 32, w + (size_t)r * a->k, sizeof(uint16_t) * kv);
    *stride = 64;
    return buf;
}

/* y[m0 .. m0+15, n0 .. n0+15] (+)= C^T tile (c[n][m]) for the valid part */
static void amx_store(const amx_plan *pl, const float *c, int n0, int m0) {
    const tw_gemm_args *a = pl->a;
    if (n0 >= a->n || m0 >= a->m) return;
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const void *)(c + i * 16));
    tw_transpose16i(r); /* r[j] = row m0 + j, columns n0 .. n0+15 */
    const int nv = a->n - n0 < 16 ? a->n - n0 : 16, mv = a->m - m0 < 16 ? a->m - m0 : 16;
    const __mmask16 mk = (__mmask16)(nv == 16 ? 0xffff : (1u << nv) - 1);
    for (int j = 0; j < mv; j++) {
        float *y = a->y + (size_t)(m0 + j) * pl->ldy + n0;
        __m512 v = _mm512_castsi512_ps(r[j]);
        if (a->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, y));
        _mm512_mask_storeu_ps(y, mk, v);
    }
}

static void amx_tile_task(void *arg, long t, int worker) {
    (void)worker;
    const amx_plan *pl = arg;
    const tw_gemm_args *a = pl->a;
    const int ib = (int)(t % pl->mblocks), jb = (int)(t / pl->mblocks);
    const int i0 = ib * pl->mbt, i1 = i0 + pl->mbt < pl->mp ? i0 + pl->mbt : pl->mp;
    const int j0 = jb * pl->nbt, j1 = j0 + pl->nbt < a->n ? j0 + pl->nbt : a->n;
    _Alignas(64) uint16_t ea[16 * 32], eb[16 * 32];
    _Alignas(64) float c[4][256];
    tw_amx_config();
    for (int n0 = j0; n0 < j1; n0 += 32)
        for (int m0 = i0; m0 < i1; m0 += 32) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            const uint16_t *b0 = pl->xq + (size_t)(m0 / 16) * pl->kb * 512;
            const uint16_t *b1 = b0 + (size_t)pl->kb * 512;
            for (int s = 0; s < pl->kb; s++) {
                size_t sa0, sa1;
                const void *a0 = amx_a_src(a, n0, s, ea, &sa0);
                const void *a1 = amx_a_src(a, n0 + 16, s, eb, &sa1);
                _tile_loadd(4, a0, sa0);
                _tile_loadd(5, a1, sa1);
                _tile_loadd(6, b0 + (size_t)s * 512, 64);
                _tile_loadd(7, b1 + (size_t)s * 512, 64);
                _tile_dpbf16ps(0, 4, 6); /* C^T[n0.., m0..]     */
                _tile_dpbf16ps(1, 4, 7); /* C^T[n0.., m0+16..]  */
                _tile_dpbf16ps(2, 5, 6); /* C^T[n0+16.., m0..]  */
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, c[0], 64);
            _tile_stored(1, c[1], 64);
            _tile_stored(2, c[2], 64);
            _tile_stored(3, c[3], 64);
            amx_store(pl, c[0], n0, m0);
            amx_store(pl, c[1], n0, m0 + 16);
            amx_store(pl, c[2], n0 + 16, m0);
            amx_store(pl, c[3], n0 + 16, m0 + 16);
        }
    _tile_release();
}

/* ---- decode batches (m <= 64): one pass over each weight strip ----------------------------
 * A strip of 16 weight rows meets all (up to 4) 16-row tiles of x at each k step, so every
 * weight is read from memory once and used at once. The 2 x 2 tiling above makes two passes over
 * a strip at m = 33..64: the second reads L2 while the memory idles, and the weights then stream
 * at about half the bandwidth (measured at m = 64, n = 8192, k = 2048 with the caches flushed:
 * 12 GB/s against 21 GB/s at m = 16). Here the tiles of x come from L2 once per k step, which is
 * cheap next to waiting for the weight tile from memory. Tiles: 0..3 accumulators, 4 and 5 the
 * weights of even and odd k steps (the next step's weights load while this step computes; ~5%
 * faster at m = 64 than one weight tile), 6 and 7 x, loaded twice per step at m > 32. */
#define AMX_STRIP_HALF(NACC, AR, S)                                                                \
    {                                                                                              \
        size_t sa;                                                                                 \
        const void *w0 = amx_a_src(a, n0, (S), ea, &sa);                                           \
        const uint16_t *xs = pl->xq + (size_t)(S)*512;                                             \
        _tile_loadd(AR, w0, sa);                                                                   \
        _tile_loadd(6, xs, 64);                                                                    \
        if (NACC > 1) _tile_loadd(7, xs + xb, 64);                                                 \
        _tile_dpbf16ps(0, AR, 6);                                                                  \
        if (NACC > 1) _tile_dpbf16ps(1, AR, 7);                                                    \
        if (NACC > 2) {                                                                            \
            _tile_loadd(6, xs + 2 * xb, 64);                                                       \
            _tile_dpbf16ps(2, AR, 6);                                                              \
        }                                                                                          \
        if (NACC > 3) {                                                                            \
            _tile_loadd(7, xs + 3 * xb, 64);                                                       \
            _tile_dpbf16ps(3, AR, 7);                                                              \
        }                                                                                          \
    }
#define AMX_STRIP_STEPS(NACC)                                                                      \
    {                                                                                              \
        const size_t xb = (size_t)pl->kb * 512; /* the next 16-row block of x */                   \
        int s = 0;                                                                                 \
        for (; s + 1 < pl->kb; s += 2) {                                                           \
            AMX_STRIP_HALF(NACC, 4, s)                                                             \
            AMX_STRIP_HALF(NACC, 5, s + 1)                                                         \
        }                                                                                          \
        if (s < pl->kb) AMX_STRIP_HALF(NACC, 4, s)                                                 \
    }

static void amx_strip_task(void *arg, long t, int worker) {
    (void)worker;
    const amx_plan *pl = arg;
    const tw_gemm_args *a = pl->a;
    const int j0 = (int)t * pl->nbt, j1 = j0 + pl->nbt < a->n ? j0 + pl->nbt : a->n;
    const int nacc = pl->mp / 16;
    _Alignas(64) uint16_t ea[16 * 32];
    _Alignas(64) float c[4][256];
    tw_amx_config();
    for (int n0 = j0; n0 < j1; n0 += 16) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        switch (nacc) {
        case 1:
            AMX_STRIP_STEPS(1)
            break;
        case 2:
            AMX_STRIP_STEPS(2)
            break;
        case 3:
            AMX_STRIP_STEPS(3)
            break;
        default:
            AMX_STRIP_STEPS(4)
            break;
        }
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
        for (int i = 0; i < nacc; i++) amx_store(pl, c[i], n0, 16 * i);
    }
    _tile_release();
}
#undef AMX_STRIP_STEPS
#undef AMX_STRIP_HALF

/* Weight rows per task: n in `parts` pieces, rounded up to `align` (a strip), at most 256. */
static int amx_task_rows(int n, long parts, int align) {
    long rows = ((long)n + parts - 1) / parts;
    rows = (rows + align - 1) / align * align;
    return (int)(rows > 256 ? 256 : rows);
}

tw_status tw_gemm_amx(const tw_gemm_args *a, int threads) {
    amx_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.a = a;
    pl.ldx = a->ldx ? (size_t)a->ldx : (size_t)a->k;
    pl.ldy = a->ldy ? (size_t)a->ldy : (size_t)a->n;
    /* m <= 64: x padded to 16-row tiles, one pass per strip; else to 32 for the 2 x 2 tiling */
    const int strips = a->m <= 64;
    pl.mp = strips ? (a->m + 15) / 16 * 16 : (a->m + 31) / 32 * 32;
    pl.kb = (a->k + 31) / 32;
    size_t bytes = (size_t)pl.mp * pl.kb * 32 * sizeof(uint16_t);
    pl.xq = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!pl.xq)
        return TW_ERR(TW_ERR_NOMEM, "gemm (amx): cannot allocate %zu bytes of packed activations",
                      bytes);
    tw_status st = tw_pool_run(threads, pl.mp / 16, amx_pack_task, &pl);
    const long want = threads > 1 ? 8L * threads : 1; /* tasks: enough for 8 per thread */
    if (strips) {                                     /* tasks of 16..256 weight rows */
        pl.nbt = amx_task_rows(a->n, want, 16);
        if (st == TW_OK)
            st = tw_pool_run(threads, ((long)a->n + pl.nbt - 1) / pl.nbt, amx_strip_task, &pl);
        free(pl.xq);
        return st;
    }
    /* tasks: up to 256 rows of x (a 256 x k bf16 block stays in L2) by 32..256 weight rows */
    pl.mbt = pl.mp < 256 ? pl.mp : 256;
    pl.mblocks = (pl.mp + pl.mbt - 1) / pl.mbt;
    pl.nbt = amx_task_rows(a->n, (want + pl.mblocks - 1) / pl.mblocks, 32);
    const long ntasks = (long)pl.mblocks * (((long)a->n + pl.nbt - 1) / pl.nbt);
    if (st == TW_OK) st = tw_pool_run(threads, ntasks, amx_tile_task, &pl);
    free(pl.xq);
    return st;
}

/* ---- peak loop: 4 accumulator tiles, 2 + 2 source tiles from L1
 * ----------------------------------- */
double tw_peak_amx_bf16(long iters, float *sink) {
    _Alignas(64) uint16_t src[4][512];
    _Alignas(64) float c[256];
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 512; i++) src[t][i] = 0x3c00; /* 2^-7: the sums stay finite */
    tw_amx_config();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src[0], 64);
    _tile_loadd(5, src[1], 64);
    _tile_loadd(6, src[2], 64);
    _tile_loadd(7, src[3], 64);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_release();
    *sink += c[0] + c[255];
    return (double)iters * 4 * 16 * 16 * 32 * 2;
}
