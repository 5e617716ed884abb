/* AVX2 + FMA GEMM kernels (compiled with -mavx2 -mfma; only called when CPUID says so):
 * a 6x16 register-blocked micro-kernel for the packed (prefill) path, and the skinny
 * (decode/GEMV, batched decode) kernel that streams fp32 or bf16 weight rows once for up to 4
 * rows of x, in tiles of up to 12 accumulators (4 x 3, 2 x 6). */
#include "gemm_internal.h"

#include <immintrin.h>
#include <stdint.h>

#ifndef TW_UKR_PF
#define TW_UKR_PF 1
#endif
#define MR 6
#define NR 16
#ifndef TW_AVX2_KC /* blocking of the packed path (-D overrides, for tuning) */
#define TW_AVX2_KC 256
#endif
#ifndef TW_AVX2_MC
#define TW_AVX2_MC 288
#endif

/* 12 accumulators (6 rows x 2 vectors of 8) + 2 B vectors + 1 broadcast = 15 of 16 ymm
 * registers: two FMAs per broadcast, 12 FMAs per 8 loads keeps both FMA pipes busy. */
static void ukr_avx2_6x16(int kc, const float *a, const float *b, float *c, size_t ldc, int add) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
#define TW_STEP(P)                                                                                 \
    do {                                                                                           \
        __m256 b0 = _mm256_load_ps(b + (P)*NR), b1 = _mm256_load_ps(b + (P)*NR + 8);               \
        __m256 av = _mm256_broadcast_ss(a + (P)*MR + 0);                                           \
        c00 = _mm256_fmadd_ps(av, b0, c00);                                                        \
        c01 = _mm256_fmadd_ps(av, b1, c01);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 1);                                                  \
        c10 = _mm256_fmadd_ps(av, b0, c10);                                                        \
        c11 = _mm256_fmadd_ps(av, b1, c11);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 2);                                                  \
        c20 = _mm256_fmadd_ps(av, b0, c20);                                                        \
        c21 = _mm256_fmadd_ps(av, b1, c21);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 3);                                                  \
        c30 = _mm256_fmadd_ps(av, b0, c30);                                                        \
        c31 = _mm256_fmadd_ps(av, b1, c31);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 4);                                                  \
        c40 = _mm256_fmadd_ps(av, b0, c40);                                                        \
        c41 = _mm256_fmadd_ps(av, b1, c41);                                                        \
        av = _mm256_broadcast_ss(a + (P)*MR + 5);                                                  \
        c50 = _mm256_fmadd_ps(av, b0, c50);                                                        \
        c51 = _mm256_fmadd_ps(av, b1, c51);                                                        \
    } while (0)
    int p = 0;
    for (; p + 4 <= kc; p += 4) {
#if TW_UKR_PF
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
#endif
        TW_STEP(0);
        TW_STEP(1);
        TW_STEP(2);
        TW_STEP(3);
        a += 4 * MR;
        b += 4 * NR;
    }
    for (; p < kc; p++) {
        TW_STEP(0);
        a += MR;
        b += NR;
    }
#undef TW_STEP
    __m256 r[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; i++) {
        float *ci = c + (size_t)i * ldc;
        if (add) {
            r[i][0] = _mm256_add_ps(r[i][0], _mm256_loadu_ps(ci));
            r[i][1] = _mm256_add_ps(r[i][1], _mm256_loadu_ps(ci + 8));
        }
        _mm256_storeu_ps(ci, r[i][0]);
        _mm256_storeu_ps(ci + 8, r[i][1]);
    }
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights at p, widened to fp32: bf16 is the top half of a float, so zero-extend to 32 bits
 * and shift left by 16 (exact). */
static inline __m256 load_w8(const void *w, int bf16, size_t p) {
    if (bf16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)w + p);
}

/* The same 8 weights widened with one shuffle instead of two: their 16 bytes broadcast to both
 * 128-bit lanes (vbroadcasti128 from memory is a load, it takes no shuffle pipe on Zen 3), then
 * vpshufb moves each bf16 into the top half of its 32-bit lane and zeroes the bottom half: the
 * same exact fp32 values in the same order as load_w8, so a tile gives bitwise the same results
 * either way. It needs the shuffle control in a register: the 1- and 2-row tiles (decode) have
 * one to spare (a one-thread decode step 5% faster, in 12 of 14 paired rounds of `gemm-probe
 * decode`); the 4 x 3 tiles use all 16 and spill (m = 64, one thread: 53 vs 65 GFLOP/s). */
#ifndef TW_AVX2_SHUF_ROWS
#define TW_AVX2_SHUF_ROWS 2 /* tiles of up to this many x rows widen by shuffle */
#endif
static inline __m256 load_w8_shuf(const void *w, size_t p, __m256i ctl) {
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + p));
    return _mm256_castsi256_ps(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(h), ctl));
}
#define TW_W8(W, BF16, P)                                                                          \
    ((BF16) && MROWS <= TW_AVX2_SHUF_ROWS ? load_w8_shuf(W, P, shufctl) : load_w8(W, BF16, P))

static inline float load_w1(const void *w, int bf16, size_t p) {
    if (bf16) {
        union {
            uint32_t u;
            float f;
        } v = {(uint32_t)((const uint16_t *)w)[p] << 16};
        return v.f;
    }
    return ((const float *)w)[p];
}

#ifndef TW_SKINNY_PF
#define TW_SKINNY_PF 512 /* bytes ahead each weight row is prefetched */
#endif

/* One step of 8 k for MROWS x NW accumulators. With 16 ymm registers and FMA's latency of 4
 * cycles on two pipes, at least 8 independent accumulators are needed to keep both pipes busy
 * and 12 leave slack: the operands that are reused stay in registers, the others come one at a
 * time (x rows first when MROWS <= NW: MROWS + MROWS * NW + 1 registers, else the weight rows:
 * NW + MROWS * NW + 1). */
#define SKINNY_STEP8(P)                                                                            \
    do {                                                                                           \
        if (MROWS <= NW) {                                                                         \
            __m256 xv[4];                                                                          \
            for (int i = 0; i < MROWS; i++) xv[i] = _mm256_loadu_ps(x + (size_t)i * ldx + (P));    \
            for (int j = 0; j < NW; j++) {                                                         \
                const __m256 wv = TW_W8(wr[j], bf16, (size_t)(P));                                 \
                for (int i = 0; i < MROWS; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]); \
            }                                                                                      \
        } else {                                                                                   \
            __m256 wv[8];                                                                          \
            for (int j = 0; j < NW; j++) wv[j] = TW_W8(wr[j], bf16, (size_t)(P));                  \
            for (int i = 0; i < MROWS; i++) {                                                      \
                const __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + (P));                      \
                for (int j = 0; j < NW; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* MROWS rows of x against NW weight rows (MROWS * NW accumulators, constant bounds so they stay
 * in registers). Each step consumes one 64-byte line of every weight row (32 bf16 or 16 fp32)
 * and prefetches TW_SKINNY_PF bytes ahead: several rows streamed at once plus software
 * prefetch keep more memory requests in flight than one hardware-prefetched stream does
 * (measured ~35 vs ~24 GB/s on this host). pc: the next block's lines (tile_pf), a share per
 * step, or NULL. */
static inline __attribute__((always_inline)) void
skinny_tile(const int MROWS, const int NW, int k, const float *x, size_t ldx, const void *w,
            size_t ldw, const int bf16, float *y, size_t ldy, int add, tw_pf_cursor *pc) {
    const size_t wsz = bf16 ? 2 : 4;
    const int step = bf16 ? 32 : 16; /* elements per 64-byte line */
    const size_t rowbytes = (size_t)k * wsz, ldwb = ldw * wsz;
    const char *wr[8];
    for (int j = 0; j < NW; j++) wr[j] = (const char *)w + (size_t)j * ldwb;
    /* load_w8_shuf: bf16 q of the lane's 4 goes to bytes 2-3 of dword q (lane 0: the first 4,
     * lane 1: the last 4 of the broadcast 8); -128 zeroes a byte */
    const __m256i shufctl = _mm256_setr_epi8(-128, -128, 0, 1, -128, -128, 2, 3, -128, -128, 4, 5,
                                             -128, -128, 6, 7, -128, -128, 8, 9, -128, -128, 10, 11,
                                             -128, -128, 12, 13, -128, -128, 14, 15);
    __m256 acc[4][8];
    for (int i = 0; i < MROWS; i++)
        for (int j = 0; j < NW; j++) acc[i][j] = _mm256_setzero_ps();
    int p = 0;
    for (; p + step <= k; p += step) {
        /* Past the end of this block of a row, prefetch the same row of the next group instead
         * (NW rows further): the next group starts warm. Prefetches never fault, so running
         * past the matrix is harmless. */
        size_t off = (size_t)p * wsz + TW_SKINNY_PF;
        if (off >= rowbytes) off += (size_t)NW * ldwb - rowbytes;
        for (int j = 0; j < NW; j++) _mm_prefetch(wr[j] + off, _MM_HINT_T0);
        if (pc) tw_pf_step(pc);
        for (int v = 0; v < step; v += 8) SKINNY_STEP8(p + v);
    }
    for (; p + 8 <= k; p += 8) SKINNY_STEP8(p);
    for (int i = 0; i < MROWS; i++) {
        for (int j = 0; j < NW; j++) {
            float s = hsum256(acc[i][j]);
            for (int q = p; q < k; q++) s += x[(size_t)i * ldx + q] * load_w1(wr[j], bf16, q);
            float *yij = y + (size_t)i * ldy + j;
            *yij = add ? *yij + s : s;
        }
    }
}
#undef SKINNY_STEP8

#define TW_SKINNY_CASE(MM, NWW)                                                                    \
    static void skinny_##MM##x##NWW(int k, const float *x, size_t ldx, const void *w, size_t ldw,  \
                                    int bf16, float *y, size_t ldy, int add, tw_pf_cursor *pc) {   \
        if (bf16) /* a constant inside: no weight-type branch in the loop */                       \
            skinny_tile(MM, NWW, k, x, ldx, w, ldw, 1, y, ldy, add, pc);                           \
        else                                                                                       \
            skinny_tile(MM, NWW, k, x, ldx, w, ldw, 0, y, ldy, add, pc);                           \
    }
TW_SKINNY_CASE(1, 8)
TW_SKINNY_CASE(1, 6)
TW_SKINNY_CASE(1, 4)
TW_SKINNY_CASE(1, 2)
TW_SKINNY_CASE(1, 1)
TW_SKINNY_CASE(2, 6)
TW_SKINNY_CASE(2, 4)
TW_SKINNY_CASE(2, 2)
TW_SKINNY_CASE(2, 1)
TW_SKINNY_CASE(3, 3)
TW_SKINNY_CASE(3, 2)
TW_SKINNY_CASE(3, 1)
TW_SKINNY_CASE(4, 3)
TW_SKINNY_CASE(4, 2)
TW_SKINNY_CASE(4, 1)

typedef void (*skinny_fn)(int, const float *, size_t, const void *, size_t, int, float *, size_t,
                          int, tw_pf_cursor *);

/* The widths of weight-row groups per m, preferred first (0 ends a list). The group at each
 * position is the first width that divides the rows left (tiles of the driver's rn = 6 or
 * rn_small = 8 rows go in equal groups), else, when only 1 does, the widest that fits. */
static const int skinny_widths[5][6] = {
    {0}, {8, 6, 4, 2, 1, 0}, {4, 6, 2, 1, 0}, {3, 2, 1, 0}, {3, 2, 1, 0}};

static int skinny_width(int m, int left) {
    int widest = 1;
    for (const int *wp = skinny_widths[m]; *wp; wp++) {
        if (*wp <= left && *wp > widest) widest = *wp;
        if (*wp > 1 && *wp <= left && left % *wp == 0) return *wp;
    }
    return widest;
}

static skinny_fn skinny_pick(int m, int nw) {
    static const skinny_fn fns[5][9] = {
        {0},
        {0, skinny_1x1, skinny_1x2, 0, skinny_1x4, 0, skinny_1x6, 0, skinny_1x8},
        {0, skinny_2x1, skinny_2x2, 0, skinny_2x4, 0, skinny_2x6, 0, 0},
        {0, skinny_3x1, skinny_3x2, skinny_3x3, 0, 0, 0, 0, 0},
        {0, skinny_4x1, skinny_4x2, skinny_4x3, 0, 0, 0, 0, 0},
    };
    return fns[m][nw];
}

/* m <= 4 rows of x against n weight rows, in groups (skinny_width); pf: the next block's lines
 * to prefetch, spread over every group's steps, or NULL. */
static void skinny_avx2_pf(int m, int n, int k, const float *x, size_t ldx, const void *w,
                           size_t ldw, int bf16, float *y, size_t ldy, int add,
                           const tw_dot_prefetch *pf) {
    const size_t wrow = ldw * (bf16 ? 2 : 4);
    tw_pf_cursor pc, *pcp = NULL;
    if (pf) {
        int groups = 0;
        for (int j = 0; j < n; j += skinny_width(m, n - j)) groups++;
        pc = tw_pf_start(pf, groups * (k / (bf16 ? 32 : 16)));
        pcp = &pc;
    }
    for (int j = 0; j < n;) {
        const int nw = skinny_width(m, n - j);
        skinny_pick(m, nw)(k, x, ldx, (const char *)w + j * wrow, ldw, bf16, y + j, ldy, add, pcp);
        j += nw;
    }
}

static void skinny_avx2(int m, int n, int k, const float *x, size_t ldx, const void *w, size_t ldw,
                        int bf16, float *y, size_t ldy, int add) {
    skinny_avx2_pf(m, n, k, x, ldx, w, ldw, bf16, y, ldy, add, NULL);
}

/* 8x8 transpose of r[0..7] (rows) into columns, in place. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) { /* rows 0-3, then rows 4-7 */
        __m256 *tt = t + 4 * h, *uu = u + 4 * h;
        uu[0] = _mm256_shuffle_ps(tt[0], tt[2], 0x44);
        uu[1] = _mm256_shuffle_ps(tt[0], tt[2], 0xee);
        uu[2] = _mm256_shuffle_ps(tt[1], tt[3], 0x44);
        uu[3] = _mm256_shuffle_ps(tt[1], tt[3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

/* Packs 16 weight rows x kc into [kc][16] with 8x8 register transposes (bf16 widened on the
 * way): the scalar strided pack costs ~5% of a 2048^3 product. */
static int pack_b_avx2(int kc, const void *w, int bf16, size_t ldw, float *bp) {
    if (kc % 8) return 0;
    const size_t wsz = bf16 ? 2 : 4;
    for (int p = 0; p < kc; p += 8) {
        for (int h = 0; h < 2; h++) { /* rows 0-7 -> columns 0-7, rows 8-15 -> 8-15 */
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = load_w8((const char *)w + (size_t)(8 * h + i) * ldw * wsz, bf16, (size_t)p);
            transpose8(r);
            for (int q = 0; q < 8; q++) _mm256_store_ps(bp + (size_t)(p + q) * NR + 8 * h, r[q]);
        }
    }
    return 1;
}

/* Packs 6 rows of x x kc into [kc][6]: 8x8 transposes of the 6 rows (plus 2 ignored), each
 * transposed column stored as 8 floats of which the last 2 are overwritten by the next
 * (so up to 8 floats past the panel are written: the driver leaves slack). */
static int pack_a_avx2(int kc, const float *x, size_t ldx, float *ap) {
    if (kc % 8) return 0;
    for (int p = 0; p < kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(x + (size_t)i * ldx + p);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(ap + (size_t)(p + q) * MR, r[q]);
    }
    return 1;
}

const tw_gemm_kernels tw_gemm_kernels_avx2 = {.name = "avx2",
                                              .path = "blocked/avx2",
                                              .mr = MR,
                                              .nr = NR,
                                              .kc = TW_AVX2_KC,
                                              .mc = TW_AVX2_MC,
                                              .ukr = ukr_avx2_6x16,
                                              .pack_b = pack_b_avx2,
                                              .pack_a = pack_a_avx2};

TW_DOT_FROM_SKINNY(dot_tile_avx2, skinny_avx2)

/* bf16 weights in memory: the tile prefetches the next block's lines (tw_dot_prefetch) */
static void dot_tile_pf_avx2(int rm, int rn, int kc, const void *xp, size_t ldxp, const void *w,
                             int wflags, size_t ldw, float *y, size_t ldy, int add,
                             const tw_dot_prefetch *pf) {
    skinny_avx2_pf(rm, rn, kc, (const float *)xp, ldxp, w, ldw, wflags & TW_DOT_W_BF16, y, ldy, add,
                   pf);
}
/* 2 x 4 tiles have 8 accumulators, FMA-latency bound: from m = 3 the 4 x 3 tiles (the weights
 * of a step still stream once per call, prefetched by the tiles) */
const tw_dot_kernels tw_dot_kernels_avx2 = {.name = "avx2",
                                            .path = "dot/avx2",
                                            .w_dtypes = TW_DOT_BF16 | TW_DOT_F32,
                                            .kstep = 1,
                                            .xsize = 0,
                                            .pack_x = NULL,
                                            .rm = TW_GEMM_SKINNY_ROWS,
                                            .rn = 6,
                                            .rn_small = 8,
                                            .small_m_max = 2,
                                            .max_m_bf16 = 64,
                                            .max_m_f32 = 64,
                                            .tile = dot_tile_avx2,
                                            .tile_pf = dot_tile_pf_avx2};

/* ---- peak loop: 12 independent FMA chains (latency 4-5 x 2 pipes needs >= 10) ------------- */
double tw_peak_fma_avx2(long iters, float *sink) {
    const __m256 m = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(*sink + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, add);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    *sink += hsum256(s);
    return (double)iters * 12 * 8 * 2;
}
