/* CPU GEMM (kernels/cpu/gemm*.c) against a naive float64 reference: every SIMD path the CPU has
 * x fp32/bf16 weights x awkward shapes (m = 1 decode through blocked prefill, odd k, tails),
 * accumulate on/off, padded ldx/ldy, 1 and 2 threads. Outputs are NaN-poisoned before each call;
 * row padding of y and a guard region after y must stay untouched. Products under 2^20
 * multiply-adds run on one thread whatever `threads` says, so some shapes are above that; others
 * cross the dot driver's k blocks (1024; 8192 for vdpbf16ps), its row block (128) and its tile
 * edges (4 x 6, 32 k).
 * Tolerance: relative norm error <= 1e-5 against the float64 product of the values the kernel
 * multiplies (the bf16 weights; for paths that round the activations to bf16, the bf16-rounded
 * activations too), so the only error left is fp32 accumulation (about 1e-7 here); and for
 * those bf16-activation paths also <= 1e-2 (bf16 tolerance) against the float64 product of the
 * original fp32 activations, the error a user of the kernel sees. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/tw_cpu.h"
#include "tw_test_util.h"

#define GEMM_TOL      1e-5
#define GEMM_TOL_BF16 1e-2
#define GUARD         64
#define SENTINEL_F    12345.5f

typedef struct {
    int m, n, k;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1},
    {1, 37, 67},
    {1, 129, 257},
    {1, 64, 3},
    {2, 33, 17},
    {3, 5, 1},
    {4, 70, 9},
    {5, 17, 31},
    {8, 40, 64},
    {9, 20, 33},
    {37, 129, 67},
    {17, 300, 257},
    {300, 17, 3},
    {61, 70, 600},
    {13, 4100, 5},
    {150, 45, 1},
    {7, 3, 513},
    /* >= 2^20 multiply-adds: large enough that threads = 2 really runs two threads */
    {1, 1030, 1027},
    {6, 333, 531},
    {37, 129, 300},
    {100, 77, 260},
    /* k blocks of the dot driver (1024) with a tail, two row blocks (128), rn edges */
    {130, 71, 1100},
    {3, 100, 2081},
    {64, 37, 1025},
    /* k blocks of the bf16 dot product (8192) with a tail, several tiles per micro-panel (the
     * tiles prefetching the next one) */
    {13, 30, 8300},
    {70, 9, 8200},
    /* the blocked path with several column chunks per row block and a k tail */
    {200, 300, 600},
    /* m above every dot-driver bound: the blocked path for both dtypes on every level */
    {1030, 35, 70},
};

/* Naive float64 reference: ref[i, j] = y0[i, j] (when accumulating) + sum_p x[i, p] w[j, p]. */
static void reference(int m, int n, int k, const float *x, int ldx, const float *wf, int acc,
                      const float *y0, int ldy, double *ref) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = acc ? (double)y0[(size_t)i * ldy + j] : 0.0;
            for (int p = 0; p < k; p++)
                s += (double)x[(size_t)i * ldx + p] * (double)wf[(size_t)j * k + p];
            ref[(size_t)i * n + j] = s;
        }
}

/* Runs one case; returns the relative error against the float64 product of the values the
 * kernel multiplies (or asserts on a touched guard); *err_user (when not NULL) gets the error
 * against the product of the original fp32 activations. */
static double run_case_ex(tw_dtype dt, shape s, int acc, int pad, int threads, uint64_t seed,
                          double *err_user) {
    int m = s.m, n = s.n, k = s.k;
    int ldx = k + pad * 3, ldy = n + pad * 5;
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    float *x = malloc(sizeof(float) * (size_t)m * ldx);
    float *wf = malloc(sizeof(float) * (size_t)n * k); /* weights as the reference sees them */
    uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)n * k);
    size_t ycount = (size_t)m * ldy + GUARD;
    float *y = malloc(sizeof(float) * ycount);
    float *y0 = malloc(sizeof(float) * ycount);
    double *ref = malloc(sizeof(double) * (size_t)m * n);
    float *got = malloc(sizeof(float) * (size_t)m * n);
    cr_assert(x && wf && wb && y && y0 && ref && got);
    tw_test_fill(&r, x, (size_t)m * ldx, 1.0f);
    tw_test_fill(&r, wf, (size_t)n * k, 1.0f);
    if (dt == TW_BF16)
        for (size_t i = 0; i < (size_t)n * k; i++) {
            wb[i] = tw_test_to_bf16(wf[i]);
            wf[i] = tw_test_from_bf16(wb[i]);
        }
    /* y: real values where accumulate reads them, NaN otherwise; sentinel in row padding and
     * in the guard region after the last row. */
    if (acc)
        tw_test_fill(&r, y0, ycount, 1.0f);
    else
        tw_test_poison(y0, ycount);
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldy; j++) y0[(size_t)i * ldy + j] = SENTINEL_F;
    for (size_t g = 0; g < GUARD; g++) y0[(size_t)m * ldy + g] = SENTINEL_F;
    memcpy(y, y0, sizeof(float) * ycount);

    tw_gemm_args a = {.m = m,
                      .n = n,
                      .k = k,
                      .x = x,
                      .w = dt == TW_BF16 ? (const void *)wb : (const void *)wf,
                      .w_dtype = dt,
                      .y = y,
                      .ldx = pad ? ldx : 0,
                      .ldy = pad ? ldy : 0,
                      .accumulate = acc};
    tw_gemm_info gi;
    gemm_cpu_describe(&a, &gi);
    tw_status st = dt == TW_BF16 ? gemm_bf16_cpu(&a, threads) : gemm_f32_cpu(&a, threads);
    cr_assert_eq(st, TW_OK, "gemm failed: %s", tw_last_error());
    double *ref_user = malloc(sizeof(double) * (size_t)m * n);
    cr_assert(ref_user);
    reference(m, n, k, x, ldx, wf, acc, y0, ldy, ref_user);
    if (gi.x_bf16) { /* the kernel multiplies bf16-rounded activations */
        float *xr = malloc(sizeof(float) * (size_t)m * ldx);
        cr_assert(xr);
        for (size_t i = 0; i < (size_t)m * ldx; i++)
            xr[i] = tw_test_from_bf16(tw_test_to_bf16(x[i]));
        reference(m, n, k, xr, ldx, wf, acc, y0, ldy, ref);
        free(xr);
    } else {
        memcpy(ref, ref_user, sizeof(double) * (size_t)m * n);
    }
    for (int i = 0; i < m; i++) {
        memcpy(got + (size_t)i * n, y + (size_t)i * ldy, sizeof(float) * n);
        for (int j = n; j < ldy; j++)
            cr_assert_eq(y[(size_t)i * ldy + j], SENTINEL_F, "row padding touched at [%d, %d]", i,
                         j);
    }
    for (size_t g = 0; g < GUARD; g++)
        cr_assert_eq(y[(size_t)m * ldy + g], SENTINEL_F, "guard after y touched at +%zu", g);
    double err = tw_test_rel_err(got, ref, (size_t)m * n);
    if (err_user) *err_user = tw_test_rel_err(got, ref_user, (size_t)m * n);
    free(x), free(wf), free(wb), free(y), free(y0), free(ref), free(got), free(ref_user);
    return err;
}

static double run_case(tw_dtype dt, shape s, int acc, int pad, int threads, uint64_t seed) {
    return run_case_ex(dt, s, acc, pad, threads, seed, NULL);
}

static void sweep(tw_simd level, tw_dtype dt) {
    if (!tw_cpu_simd_supported(level))
        cr_skip_test("SIMD level %s is not available on this CPU (best: %s)", tw_simd_name(level),
                     tw_simd_name(tw_cpu_simd_detect()));
    cr_assert_eq(tw_cpu_simd_force(level), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_cpu_simd_active(), level);
    uint64_t seed = 100;
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++)
        for (int acc = 0; acc <= 1; acc++)
            for (int pad = 0; pad <= 1; pad++)
                for (int th = 1; th <= 2; th++) {
                    shape s = SHAPES[si];
                    double eu = 0;
                    double err = run_case_ex(dt, s, acc, pad, th, seed++, &eu);
                    cr_expect_leq(err, GEMM_TOL,
                                  "%s %s m=%d n=%d k=%d acc=%d pad=%d threads=%d: rel err %g",
                                  tw_simd_name(level), (dt == TW_BF16 ? "bf16" : "fp32"), s.m, s.n,
                                  s.k, acc, pad, th, err);
                    cr_expect_leq(eu, GEMM_TOL_BF16,
                                  "%s %s m=%d n=%d k=%d acc=%d pad=%d threads=%d: rel err %g "
                                  "against the fp32 activations",
                                  tw_simd_name(level), (dt == TW_BF16 ? "bf16" : "fp32"), s.m, s.n,
                                  s.k, acc, pad, th, eu);
                }
}

Test(gemm, portable_fp32) {
    sweep(TW_SIMD_PORTABLE, TW_F32);
}
Test(gemm, portable_bf16) {
    sweep(TW_SIMD_PORTABLE, TW_BF16);
}
Test(gemm, avx2_fp32) {
    sweep(TW_SIMD_AVX2, TW_F32);
}
Test(gemm, avx2_bf16) {
    sweep(TW_SIMD_AVX2, TW_BF16);
}
Test(gemm, avx512_fp32) {
    sweep(TW_SIMD_AVX512, TW_F32);
}
Test(gemm, avx512_bf16) {
    sweep(TW_SIMD_AVX512, TW_BF16);
}
/* The blocking for L1 data caches under 48 KiB (kc 192), whatever this machine's L1 (each test
 * runs in its own process, so the override is read before any GEMM of it). */
Test(gemm, avx512_small_l1_blocking) {
    cr_assert_eq(setenv("TW_GEMM_L1D", "32768", 1), 0);
    if (tw_cpu_simd_supported(TW_SIMD_AVX512)) {
        cr_assert_eq(tw_cpu_simd_force(TW_SIMD_AVX512), TW_OK, "%s", tw_last_error());
        tw_gemm_args a = {.m = 300, .n = 17, .k = 3, .w_dtype = TW_F32};
        tw_gemm_info gi;
        gemm_cpu_describe(&a, &gi);
        cr_assert_str_eq(gi.path, "blocked/avx512-kc192");
    }
    sweep(TW_SIMD_AVX512, TW_F32);
    sweep(TW_SIMD_AVX512, TW_BF16);
}
Test(gemm, amx_bf16) {
    sweep(TW_SIMD_AMX, TW_BF16);
}
Test(gemm, amx_fp32) {
    sweep(TW_SIMD_AMX, TW_F32);
}
Test(gemm, avx512bf16_fp32) {
    sweep(TW_SIMD_AVX512BF16, TW_F32);
}
/* the vdpbf16ps path: activations rounded to bf16 */
Test(gemm, avx512bf16_bf16) {
    sweep(TW_SIMD_AVX512BF16, TW_BF16);
    shape s = {37, 129, 67};
    tw_gemm_args a = {.m = s.m, .n = s.n, .k = s.k, .w_dtype = TW_BF16};
    tw_gemm_info gi;
    gemm_cpu_describe(&a, &gi);
    cr_expect(gi.x_bf16, "the avx512bf16 level should round activations to bf16 (%s)", gi.path);
}

/* gemm_cpu dispatches on w_dtype, at the default (best) SIMD level, all cores. */
Test(gemm, dispatch_default_level) {
    shape s = {37, 129, 67};
    cr_expect_leq(run_case(TW_F32, s, 0, 0, 0, 7), GEMM_TOL);
    cr_expect_leq(run_case(TW_BF16, s, 1, 1, 0, 8), GEMM_TOL);
}

/* The check itself can fail: one output off by 1e-3 (relative) exceeds the tolerance. */
Test(gemm, tolerance_detects_a_wrong_element) {
    float got[64];
    double ref[64];
    tw_test_rng r;
    tw_test_rng_seed(&r, 9);
    for (int i = 0; i < 64; i++) ref[i] = tw_test_uniform(&r), got[i] = (float)ref[i];
    cr_assert_leq(tw_test_rel_err(got, ref, 64), GEMM_TOL);
    got[17] += 1e-2f;
    cr_assert_gt(tw_test_rel_err(got, ref, 64), GEMM_TOL);
}

Test(gemm, bf16_array_conversion) {
    enum { N = 1003 };
    float src[N], back[N];
    tw_bf16 h[N];
    tw_test_rng r;
    tw_test_rng_seed(&r, 11);
    tw_test_fill(&r, src, N, 100.0f);
    src[5] = NAN;
    tw_bf16_from_f32_array(h, src, N);
    tw_f32_from_bf16_array(back, h, N);
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            cr_assert(isnan(back[i]));
            continue;
        }
        cr_assert_eq(h[i], tw_test_to_bf16(src[i]), "element %d", i);
        cr_assert_eq(back[i], tw_test_from_bf16(h[i]), "element %d", i);
    }
}

static void expect_invalid(tw_gemm_args a, int threads, const char *needle) {
    tw_clear_error();
    tw_status st = gemm_cpu(&a, threads);
    cr_assert_eq(st, TW_ERR_INVALID, "expected TW_ERR_INVALID for '%s', got %s", needle,
                 tw_status_name(st));
    cr_assert(strstr(tw_last_error(), needle), "message '%s' lacks '%s'", tw_last_error(), needle);
}

Test(gemm, bad_arguments) {
    float x[16] = {1}, w[16] = {1}, y[16];
    tw_gemm_args ok = {.m = 2, .n = 2, .k = 4, .x = x, .w = w, .w_dtype = TW_F32, .y = y};
    tw_gemm_args a = ok;
    cr_assert_eq(gemm_cpu(&a, 1), TW_OK, "%s", tw_last_error());
    a = ok, a.m = 0;
    expect_invalid(a, 1, "m=0");
    a = ok, a.n = -3;
    expect_invalid(a, 1, "n=-3");
    a = ok, a.k = 0;
    expect_invalid(a, 1, "k=0");
    a = ok, a.x = NULL;
    expect_invalid(a, 1, "x is NULL");
    a = ok, a.w = NULL;
    expect_invalid(a, 1, "w is NULL");
    a = ok, a.y = NULL;
    expect_invalid(a, 1, "y is NULL");
    a = ok, a.ldx = 3;
    expect_invalid(a, 1, "ldx=3");
    a = ok, a.ldy = 1;
    expect_invalid(a, 1, "ldy=1");
    a = ok, a.w_dtype = TW_I32;
    expect_invalid(a, 1, "i32");
    expect_invalid(ok, -1, "threads=-1");
    cr_assert_eq(gemm_cpu(NULL, 1), TW_ERR_INVALID);
    a = ok, a.w_dtype = TW_BF16;
    cr_assert_eq(gemm_f32_cpu(&a, 1), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "expected fp32"));
    cr_assert_eq(gemm_bf16_cpu(&ok, 1), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "expected bf16"));
}

/* Bitwise the same result for any thread count, in both regimes (skinny decode and blocked
 * prefill): each output's reduction over k must not depend on how the work is divided, or
 * tokwatt run --threads would change the generated tokens. */
Test(gemm, bitwise_same_for_any_thread_count) {
    const int shapes[][3] = {{1, 1031, 777}, {5, 513, 1029}, {67, 300, 1100}, {300, 257, 515}};
    tw_test_rng r;
    tw_test_rng_seed(&r, 4242);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        float *x = malloc(sizeof(float) * (size_t)m * k);
        float *w = malloc(sizeof(float) * (size_t)n * k);
        tw_bf16 *wb = malloc(sizeof(tw_bf16) * (size_t)n * k);
        float *y[3];
        tw_test_fill(&r, x, (size_t)m * k, 1.0f);
        tw_test_fill(&r, w, (size_t)n * k, 0.1f);
        for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = tw_test_to_bf16(w[i]);
        for (int dt = 0; dt < 2; dt++) {
            int threads[3] = {1, 2, 3};
            for (int t = 0; t < 3; t++) {
                y[t] = malloc(sizeof(float) * (size_t)m * n);
                tw_test_poison(y[t], (size_t)m * n);
                tw_gemm_args a = {.m = m,
                                  .n = n,
                                  .k = k,
                                  .x = x,
                                  .w = dt ? (const void *)wb : w,
                                  .w_dtype = dt ? TW_BF16 : TW_F32,
                                  .y = y[t]};
                cr_assert_eq(gemm_cpu(&a, threads[t]), TW_OK, "%s", tw_last_error());
                if (t > 0)
                    cr_assert_arr_eq(y[t], y[0], sizeof(float) * (size_t)m * n,
                                     "%dx%dx%d %s: 1 and %d threads differ", m, n, k,
                                     dt ? "bf16" : "fp32", threads[t]);
            }
            for (int t = 0; t < 3; t++) free(y[t]);
        }
        free(x), free(w), free(wb);
    }
}

/* A row's result is bitwise the same whatever other rows are computed with it, so a sequence's
 * tokens do not depend on its batch neighbours, on every path where that is claimed: the dot
 * driver (decode, small batches; every m for the bf16 dot product) and AMX. Checked for every
 * m that takes the same path as m = 1 (against the rows computed alone) and as m = 130 (against
 * that product's rows), across tile edges (4 and 16 rows), the row block (128), k blocks of
 * 1024 and 8192 with a tail, and both loop orders of the dot driver (x rows in L2 whole, or not).
 */
Test(gemm, rows_independent_of_batch) {
    const tw_simd levels[] = {TW_SIMD_PORTABLE, TW_SIMD_AVX2, TW_SIMD_AVX512, TW_SIMD_AVX512BF16,
                              TW_SIMD_AMX};
    const int ms[] = {2, 3, 4, 5, 7, 8, 13, 16, 17, 33, 64};
    const int n = 77, k = 8300, mmax = 130; /* k: blocks of 1024 or 8192 and a tail; 130 rows
                                             * exceed L2 */
    tw_test_rng r;
    tw_test_rng_seed(&r, 777);
    float *x = malloc(sizeof(float) * (size_t)mmax * k), *w = malloc(sizeof(float) * (size_t)n * k);
    tw_bf16 *wb = malloc(sizeof(tw_bf16) * (size_t)n * k);
    float *solo = malloc(sizeof(float) * (size_t)mmax * n);
    float *big = malloc(sizeof(float) * (size_t)mmax * n);
    float *y = malloc(sizeof(float) * (size_t)mmax * n);
    cr_assert(x && w && wb && solo && big && y);
    tw_test_fill(&r, x, (size_t)mmax * k, 1.0f);
    tw_test_fill(&r, w, (size_t)n * k, 0.1f);
    for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = tw_test_to_bf16(w[i]);
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if (!tw_cpu_simd_supported(levels[l])) continue;
        cr_assert_eq(tw_cpu_simd_force(levels[l]), TW_OK, "%s", tw_last_error());
        for (int dt = 0; dt < 2; dt++) {
            tw_gemm_args a = {
                .n = n, .k = k, .w = dt ? (const void *)wb : w, .w_dtype = dt ? TW_BF16 : TW_F32};
            tw_gemm_info g1, gb, gm;
            a.m = 1;
            gemm_cpu_describe(&a, &g1);
            for (int i = 0; i < mmax; i++) {
                a.m = 1, a.x = x + (size_t)i * k, a.y = solo + (size_t)i * n;
                cr_assert_eq(gemm_cpu(&a, 2), TW_OK, "%s", tw_last_error());
            }
            a.m = mmax, a.x = x, a.y = big;
            gemm_cpu_describe(&a, &gb);
            cr_assert_eq(gemm_cpu(&a, 2), TW_OK, "%s", tw_last_error());
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                a.m = ms[mi], a.x = x, a.y = y;
                gemm_cpu_describe(&a, &gm);
                const int vs_solo = !strcmp(gm.path, g1.path), vs_big = !strcmp(gm.path, gb.path);
                if (!vs_solo && !vs_big) continue; /* the blocked path: not claimed */
                tw_test_poison(y, (size_t)mmax * n);
                cr_assert_eq(gemm_cpu(&a, 2), TW_OK, "%s", tw_last_error());
                cr_assert_arr_eq(y, vs_solo ? solo : big, sizeof(float) * (size_t)ms[mi] * n,
                                 "%s %s: rows of an m=%d product differ from the same rows %s",
                                 gm.path, dt ? "bf16" : "fp32", ms[mi],
                                 vs_solo ? "alone" : "in an m=130 product");
                checked++;
            }
        }
    }
    cr_expect_gt(checked, 0);
    free(x), free(w), free(wb), free(solo), free(big), free(y);
}
