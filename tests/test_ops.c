/* CPU row and element-wise ops (rmsnorm, rope, swiglu, add, bias_add, embed, argmax) against
 * float64 computations written here, on random data of awkward sizes, both SIMD paths where the op
 * has two. Outputs are NaN-poisoned (or, for in-place ops, compared against an untouched copy) and
 * guarded. Tolerances: relative norm error 1e-5 (fp32 math); RoPE per pair, see below. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/tw_cpu.h"
#include "tw_test_pool.h"
#include "tw_test_util.h"

#define TOL       1e-5
#define GUARD     16
#define GUARD_VAL -777.25f

static float *guarded_alloc(size_t n) {
    float *p = malloc(sizeof(float) * (n + 2 * GUARD));
    cr_assert(p);
    for (size_t i = 0; i < n + 2 * GUARD; i++) p[i] = GUARD_VAL;
    return p + GUARD;
}

static void guarded_check_free(float *p, size_t n, const char *what) {
    for (size_t i = 0; i < GUARD; i++) {
        cr_assert_eq(p[-(long)GUARD + (long)i], GUARD_VAL, "%s: guard before written", what);
        cr_assert_eq(p[n + i], GUARD_VAL, "%s: guard after written", what);
    }
    free(p - GUARD);
}

static int simd_levels(tw_simd *lv) {
    int n = 0;
    lv[n++] = TW_SIMD_PORTABLE;
    if (tw_cpu_simd_detect() >= TW_SIMD_AVX2) lv[n++] = TW_SIMD_AVX2;
    return n;
}

static void expect_invalid(tw_status st, const char *needle) {
    cr_assert_eq(st, TW_ERR_INVALID, "expected TW_ERR_INVALID, got %s", tw_status_name(st));
    cr_assert(strstr(tw_last_error(), needle), "message '%s' should mention '%s'", tw_last_error(),
              needle);
}

/* ---- rmsnorm ----------------------------------------------------------------------------- */
static void run_rmsnorm(int rows, int dim, int bf16, int in_place, int threads) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)rows * 1000 + dim + bf16);
    size_t n = (size_t)rows * dim;
    float *x = malloc(sizeof(float) * n), *wf = malloc(sizeof(float) * dim);
    uint16_t *wb = malloc(2 * (size_t)dim);
    double *ref = malloc(sizeof(double) * n);
    cr_assert(x && wf && wb && ref);
    tw_test_fill(&r, x, n, 3.0f);
    tw_test_fill(&r, wf, dim, 2.0f);
    for (int i = 0; i < dim; i++) wb[i] = tw_test_to_bf16(wf[i]);
    const float eps = 1e-5f;
    for (int i = 0; i < rows; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
        double inv = 1.0 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) {
            double w = bf16 ? tw_test_from_bf16(wb[j]) : wf[j];
            ref[(size_t)i * dim + j] = x[(size_t)i * dim + j] * inv * w;
        }
    }
    float *y = guarded_alloc(n);
    if (in_place)
        memcpy(y, x, sizeof(float) * n);
    else
        tw_test_poison(y, n);
    tw_status st = rmsnorm_cpu(rows, dim, in_place ? y : x, bf16 ? (const void *)wb : wf,
                               bf16 ? TW_BF16 : TW_F32, eps, y, threads);
    cr_assert_eq(st, TW_OK, "%s", tw_last_error());
    double err = tw_test_rel_err(y, ref, n);
    cr_expect(err < TOL, "rmsnorm %dx%d %s%s: rel err %.3g", rows, dim, bf16 ? "bf16" : "fp32",
              in_place ? " in place" : "", err);
    guarded_check_free(y, n, "rmsnorm");
    free(x);
    free(wf);
    free(wb);
    free(ref);
}

Test(ops, rmsnorm) {
    run_rmsnorm(37, 129, 0, 0, 0);
    run_rmsnorm(37, 129, 1, 1, 2);
    run_rmsnorm(1, 4096, 1, 0, 0);
    run_rmsnorm(67, 4096, 0, 1, 3); /* big enough to run threaded */
}

/* ---- rope -------------------------------------------------------------------------------------
 * Reference: the Llama / Hugging Face formulas in float64 (inverse frequencies with the model's
 * scaling, rotate-half pairing x[i] with x[i + D/2]). The convention computes the angle
 * pos * inv_freq in float32, so at position p the angle itself carries an error of a few float32
 * ulps of the angle; each pair is therefore held to
 *     |out - ref| <= |pair| * (2e-6 + 1e-6 * |angle|)
 * i.e. ~8 ulp of the angle plus fp32 rounding. A wrong pairing, frequency or scaling is off by far
 * more (llama3 on low-frequency pairs: angle differs by the factor 32). */
static double ref_inv_freq(int i, int d, const tw_rope_params *rp) {
    double inv = pow((double)rp->theta, -2.0 * i / d);
    if (rp->type == TW_ROPE_LINEAR) return inv / rp->factor;
    if (rp->type != TW_ROPE_LLAMA3) return inv;
    double wavelen = 2 * M_PI / inv;
    double lo_w = rp->original_max_pos / rp->low_freq_factor;
    double hi_w = rp->original_max_pos / rp->high_freq_factor;
    if (wavelen < hi_w) return inv;
    if (wavelen > lo_w) return inv / rp->factor;
    double smooth = (rp->original_max_pos / wavelen - rp->low_freq_factor) /
                    (rp->high_freq_factor - rp->low_freq_factor);
    return (1 - smooth) * inv / rp->factor + smooth * inv;
}

static void run_rope(int tokens, int h, int d, int ld_extra, int maxpos, const tw_rope_params *rp,
                     int threads, uint64_t seed) {
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    int ld = ld_extra ? h * d + ld_extra : 0;
    int row = ld ? ld : h * d;
    size_t n = (size_t)tokens * row;
    float *x0 = malloc(sizeof(float) * n);
    int *pos = malloc(sizeof(int) * tokens);
    cr_assert(x0 && pos);
    tw_test_fill(&r, x0, n, 2.0f);
    for (int t = 0; t < tokens; t++)
        pos[t] = t == 0 ? 0 : t == 1 ? maxpos : (int)((tw_test_uniform(&r) + 1) * 0.5 * maxpos);
    float *x = guarded_alloc(n);
    memcpy(x, x0, sizeof(float) * n);
    cr_assert_eq(rope_cpu(tokens, h, d, x, ld, pos, rp, threads), TW_OK, "%s", tw_last_error());
    double worst = 0;
    for (int t = 0; t < tokens; t++)
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < d / 2; i++) {
                size_t k0 = (size_t)t * row + (size_t)hh * d + i, k1 = k0 + d / 2;
                double ang = pos[t] * ref_inv_freq(i, d, rp);
                double c = cos(ang), s = sin(ang);
                double a = x0[k0], b = x0[k1];
                double e0 = a * c - b * s, e1 = b * c + a * s;
                double tol = sqrt(a * a + b * b) * (2e-6 + 1e-6 * fabs(ang));
                double err = fmax(fabs(x[k0] - e0), fabs(x[k1] - e1));
                cr_assert(err <= tol,
                          "rope type %d D=%d token %d pos %d head %d pair %d: got (%g, %g), want "
                          "(%g, %g), err %.3g > tol %.3g",
                          (int)rp->type, d, t, pos[t], hh, i, (double)x[k0], (double)x[k1], e0, e1,
                          err, tol);
                if (tol > 0 && err / tol > worst) worst = err / tol;
            }
    /* the padding between rows is not touched */
    for (int t = 0; t < tokens && ld; t++)
        for (int j = h * d; j < ld; j++)
            cr_assert_eq(x[(size_t)t * ld + j], x0[(size_t)t * ld + j], "row padding written");
    guarded_check_free(x, n, "rope");
    free(x0);
    free(pos);
}

Test(ops, rope_default) {
    tw_rope_params rp = {.theta = 10000.0f, .type = TW_ROPE_DEFAULT};
    run_rope(37, 6, 128, 0, 4000, &rp, 0, 1);
    run_rope(17, 6, 80, 13, 8000, &rp, 2, 2);
    run_rope(3, 2, 64, 0, 60, &rp, 1, 3);
}

Test(ops, rope_llama3_scaling) {
    tw_rope_params rp = {.theta = 500000.0f,
                         .type = TW_ROPE_LLAMA3,
                         .factor = 32.0f,
                         .low_freq_factor = 1.0f,
                         .high_freq_factor = 4.0f,
                         .original_max_pos = 8192.0f};
    run_rope(37, 6, 128, 0, 8000, &rp, 0, 4);
    run_rope(300, 4, 64, 5, 6000, &rp, 3, 5);
    rp.type = TW_ROPE_LINEAR;
    rp.factor = 4.0f;
    run_rope(17, 6, 80, 0, 5000, &rp, 0, 6);
}

/* ---- swiglu ---------------------------------------------------------------------------------- */
static void run_swiglu(int rows, int f, int ld_extra, int threads) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)rows * 7 + f);
    int ld = ld_extra ? f + ld_extra : 0, stride = ld ? ld : f;
    size_t nin = (size_t)rows * stride, n = (size_t)rows * f;
    float *g = malloc(sizeof(float) * nin), *u = malloc(sizeof(float) * nin);
    double *ref = malloc(sizeof(double) * n);
    cr_assert(g && u && ref);
    tw_test_fill(&r, g, nin, 20.0f); /* saturating both ways: silu(-20) ~ -4e-8, silu(20) ~ 20 */
    tw_test_fill(&r, u, nin, 2.0f);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < f; j++) {
            double gv = g[(size_t)i * stride + j];
            ref[(size_t)i * f + j] = gv / (1 + exp(-gv)) * u[(size_t)i * stride + j];
        }
    tw_simd lv[3];
    int nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(tw_cpu_simd_force(lv[l]), TW_OK);
        float *out = guarded_alloc(n);
        tw_test_poison(out, n);
        cr_assert_eq(swiglu_cpu(rows, f, g, u, ld, out, threads), TW_OK, "%s", tw_last_error());
        double err = tw_test_rel_err(out, ref, n);
        cr_expect(err < TOL, "swiglu %s %dx%d ld %d: rel err %.3g", tw_simd_name(lv[l]), rows, f,
                  ld, err);
        /* small values matter too: the relative error of every element that is not tiny */
        for (size_t i = 0; i < n; i++)
            if (fabs(ref[i]) > 1e-3)
                cr_assert(fabs(out[i] - ref[i]) <= 1e-5 * fabs(ref[i]) + 1e-7,
                          "swiglu %s element %zu: %g vs %g", tw_simd_name(lv[l]), i, (double)out[i],
                          ref[i]);
        guarded_check_free(out, n, "swiglu");
    }
    free(g);
    free(u);
    free(ref);
}

Test(ops, swiglu) {
    run_swiglu(37, 129, 0, 0);
    run_swiglu(17, 67, 50, 2);
    run_swiglu(1, 20001, 0, 0); /* one token, split across threads */
    run_swiglu(5, 20001, 3, 3);
}

/* ---- add ------------------------------------------------------------------------------------- */
Test(ops, add) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 77);
    size_t sizes[] = {1, 37, 100003};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        float *x = malloc(sizeof(float) * n), *y = guarded_alloc(n);
        double *ref = malloc(sizeof(double) * n);
        cr_assert(x && ref);
        tw_test_fill(&r, x, n, 1.0f);
        tw_test_fill(&r, y, n, 1.0f);
        for (size_t i = 0; i < n; i++) ref[i] = (double)y[i] + x[i];
        cr_assert_eq(add_cpu(n, x, y, 0), TW_OK, "%s", tw_last_error());
        double err = tw_test_rel_err(y, ref, n);
        cr_expect(err < 1e-7, "add n=%zu: rel err %.3g", n, err);
        guarded_check_free(y, n, "add");
        free(x);
        free(ref);
    }
}

/* ---- bias add -------------------------------------------------------------------------------- */
/* x[r, j] += b[j] on rows ld apart; the columns past n of each row (and the guards) must stay */
static void run_bias_add(int rows, int n, int ld, int bf16, int threads) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)rows * 31 + n + bf16);
    size_t total = (size_t)rows * (ld ? ld : n);
    float *x = guarded_alloc(total), *bf = malloc(sizeof(float) * n);
    uint16_t *bb = malloc(2 * (size_t)n);
    double *ref = malloc(sizeof(double) * total);
    cr_assert(bf && bb && ref);
    tw_test_fill(&r, x, total, 2.0f);
    tw_test_fill(&r, bf, n, 1.0f);
    for (int j = 0; j < n; j++) bb[j] = tw_test_to_bf16(bf[j]);
    int stride = ld ? ld : n;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < stride; j++) {
            size_t k = (size_t)i * stride + j;
            ref[k] = x[k] + (j < n ? (bf16 ? tw_test_from_bf16(bb[j]) : bf[j]) : 0.0);
        }
    /* the same on one thread; then `threads` bitwise equal to it, each call with pool worker 1
     * awake (tests/tw_test_pool.h), so the rows are split */
    float *x0 = malloc(sizeof(float) * total), *x1 = malloc(sizeof(float) * total);
    cr_assert(x0 && x1);
    memcpy(x0, x, sizeof(float) * total);
    memcpy(x1, x, sizeof(float) * total);
    const void *bp = bf16 ? (const void *)bb : bf;
    const tw_dtype bdt = bf16 ? TW_BF16 : TW_F32;
    cr_assert_eq(bias_add_cpu(rows, n, x1, ld, bp, bdt, 1), TW_OK, "%s", tw_last_error());
    for (int rep = 0; rep < 16; rep++) {
        memcpy(x, x0, sizeof(float) * total);
        cr_assert(tw_test_pool_wake(), "pool worker 1 did not run a task within 10 s");
        cr_assert_eq(bias_add_cpu(rows, n, x, ld, bp, bdt, threads), TW_OK, "%s", tw_last_error());
        cr_assert(memcmp(x, x1, sizeof(float) * total) == 0,
                  "bias_add %dx%d ld %d: %d threads and 1 differ (call %d)", rows, n, ld, threads,
                  rep);
    }
    free(x0), free(x1);
    double err = tw_test_rel_err(x, ref, total);
    cr_expect(err < 1e-7, "bias_add %dx%d ld %d %s: rel err %.3g", rows, n, ld,
              bf16 ? "bf16" : "fp32", err);
    for (int i = 0; i < rows; i++)
        for (int j = n; j < stride; j++)
            cr_assert_eq((double)x[(size_t)i * stride + j], ref[(size_t)i * stride + j],
                         "bias_add wrote column %d past n = %d", j, n);
    guarded_check_free(x, total, "bias_add");
    free(bf);
    free(bb);
    free(ref);
}

Test(ops, bias_add) {
    run_bias_add(37, 129, 0, 0, 0);
    run_bias_add(37, 129, 0, 1, 2);
    run_bias_add(13, 67, 200, 1, 0); /* the k/v biases: rows of a wider [T, 2 kvd] buffer */
    run_bias_add(1, 5, 0, 0, 0);
    run_bias_add(300, 333, 341, 0, 3); /* past 64K values: split across threads */
    run_bias_add(300, 333, 341, 1, 2);
}

/* ---- embed ----------------------------------------------------------------------------------- */
static void run_embed(int bf16, int threads) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 88 + bf16);
    enum { N = 41, DIM = 67, ROW0 = 100, ROWS = 50 };
    float tf[ROWS * DIM];
    uint16_t tb[ROWS * DIM];
    tw_test_fill(&r, tf, ROWS * DIM, 1.0f);
    for (int i = 0; i < ROWS * DIM; i++) tb[i] = tw_test_to_bf16(tf[i]);
    int tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (int)((tw_test_uniform(&r) + 1) * 100); /* 0..199 */
    tokens[0] = ROW0;
    tokens[1] = ROW0 + ROWS - 1;
    tokens[2] = ROW0 + ROWS; /* just past the shard */
    tokens[3] = ROW0 - 1;
    float *out = guarded_alloc((size_t)N * DIM);
    tw_test_poison(out, (size_t)N * DIM);
    cr_assert_eq(embed_cpu(N, tokens, bf16 ? (const void *)tb : tf, bf16 ? TW_BF16 : TW_F32, ROW0,
                           ROWS, DIM, out, threads),
                 TW_OK, "%s", tw_last_error());
    int inside = 0;
    for (int i = 0; i < N; i++) {
        int rr = tokens[i] - ROW0;
        int in = rr >= 0 && rr < ROWS;
        inside += in;
        for (int j = 0; j < DIM; j++) {
            float want = !in ? 0.0f : bf16 ? tw_test_from_bf16(tb[rr * DIM + j]) : tf[rr * DIM + j];
            cr_assert_eq(out[(size_t)i * DIM + j], want, "token %d (row %d) col %d", tokens[i], rr,
                         j);
        }
    }
    cr_assert(inside > 2 && inside < N, "test data should mix shard and non-shard tokens");
    guarded_check_free(out, (size_t)N * DIM, "embed");
}

Test(ops, embed_vocab_shard) {
    run_embed(0, 0);
    run_embed(1, 2);
}

/* ---- argmax ---------------------------------------------------------------------------------- */
Test(ops, argmax_first_on_ties) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 99);
    int shapes[][2] = {{5, 129}, {3, 100003}, {1, 1}, {70, 1000}};
    for (int k = 0; k < 4; k++) {
        int rows = shapes[k][0], n = shapes[k][1];
        float *l = malloc(sizeof(float) * (size_t)rows * n);
        int *idx = malloc(sizeof(int) * rows);
        float *val = malloc(sizeof(float) * rows);
        cr_assert(l && idx && val);
        tw_test_fill(&r, l, (size_t)rows * n, 10.0f);
        for (int i = 0; i < rows; i++) {
            /* a tie for the maximum at two places (when the row has room) */
            if (n > 3) {
                int a = (int)((tw_test_uniform(&r) + 1) * 0.25 * n), b = a + 1 + (n - a - 2) / 2;
                l[(size_t)i * n + a] = 50.0f;
                l[(size_t)i * n + b] = 50.0f;
            }
        }
        for (int i = 0; i < rows; i++) idx[i] = -1, val[i] = NAN;
        cr_assert_eq(argmax_cpu(rows, n, l, idx, val, 0), TW_OK, "%s", tw_last_error());
        for (int i = 0; i < rows; i++) {
            int best = 0;
            for (int j = 1; j < n; j++)
                if (l[(size_t)i * n + j] > l[(size_t)i * n + best]) best = j;
            cr_assert_eq(idx[i], best, "rows %d n %d row %d", rows, n, i);
            cr_assert_eq(val[i], l[(size_t)i * n + best]);
        }
        free(l);
        free(idx);
        free(val);
    }
}

/* NaN never wins (a row of NaNs gives index 0), -inf rows, -0/+0 ties to the first, and lengths
 * around the kernel's 16 lanes; the reference skips NaNs and keeps the first strict maximum. */
Test(ops, argmax_nan_inf_signed_zero) {
    const int ns[] = {1, 15, 16, 17, 33, 1000};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int n = ns[ni], rows = 6;
        float *l = malloc(sizeof(float) * (size_t)rows * n);
        int idx[6];
        float val[6];
        cr_assert(l);
        tw_test_rng r;
        tw_test_rng_seed(&r, 1234 + (uint64_t)n);
        tw_test_fill(&r, l, (size_t)rows * n, 3.0f);
        for (int j = 0; j < n; j++) {
            if (j % 3 == 0) l[j] = NAN;                    /* row 0: NaNs, the first among them */
            l[(size_t)1 * n + j] = NAN;                    /* row 1: all NaN */
            l[(size_t)2 * n + j] = -INFINITY;              /* row 2: all -inf */
            l[(size_t)3 * n + j] = j % 2 ? 0.0f : -0.0f;   /* row 3: zeros of both signs */
            if (j == n - 1) l[(size_t)4 * n + j] = 100.0f; /* row 4: the maximum last */
        }
        if (n > 2) l[(size_t)5 * n + n / 2] = NAN, l[(size_t)5 * n + n / 2 + 1] = 90.0f;
        for (int i = 0; i < rows; i++) idx[i] = -1, val[i] = 7.0f;
        cr_assert_eq(argmax_cpu(rows, n, l, idx, val, 2), TW_OK, "%s", tw_last_error());
        for (int i = 0; i < rows; i++) {
            const float *v = l + (size_t)i * n;
            int best = -1;
            for (int j = 0; j < n; j++)
                if (!isnan(v[j]) && (best < 0 || v[j] > v[best])) best = j;
            if (best < 0) best = 0;
            cr_assert_eq(idx[i], best, "n %d row %d: index %d, want %d", n, i, idx[i], best);
            cr_assert(memcmp(&val[i], &v[best], sizeof(float)) == 0, "n %d row %d: value", n, i);
        }
        free(l);
    }
}

/* ---- bad arguments --------------------------------------------------------------------------- */
Test(ops, bad_arguments) {
    static float x[4 * 64], y[4 * 64], w[64];
    int pos[4] = {0, 1, 2, 3}, tok[2] = {0, 1}, idx[4];
    tw_rope_params rp = {.theta = 10000.0f};
    expect_invalid(rmsnorm_cpu(0, 64, x, w, TW_F32, 1e-5f, y, 0), "rows 0");
    expect_invalid(rmsnorm_cpu(4, 64, x, w, TW_I32, 1e-5f, y, 0), "dtype");
    expect_invalid(rmsnorm_cpu(4, 64, x, w, TW_F32, -1.0f, y, 0), "eps");
    expect_invalid(rmsnorm_cpu(4, 64, x, NULL, TW_F32, 1e-5f, y, 0), "NULL w");
    expect_invalid(rope_cpu(4, 1, 63, x, 0, pos, &rp, 0), "head_dim must be even and >= 2, got 63");
    expect_invalid(rope_cpu(4, 1, 64, x, 10, pos, &rp, 0), "ldx 10");
    pos[2] = -5;
    expect_invalid(rope_cpu(4, 1, 64, x, 0, pos, &rp, 0), "positions[2] = -5");
    pos[2] = 2;
    tw_rope_params bad = {.theta = 500000.0f,
                          .type = TW_ROPE_LLAMA3,
                          .factor = 32.0f,
                          .low_freq_factor = 4.0f,
                          .high_freq_factor = 1.0f,
                          .original_max_pos = 8192.0f};
    expect_invalid(rope_cpu(4, 1, 64, x, 0, pos, &bad, 0), "low_freq_factor");
    bad.theta = 0.0f;
    expect_invalid(rope_cpu(4, 1, 64, x, 0, pos, &bad, 0), "rope_theta");
    expect_invalid(rope_cpu(4, 1, 64, x, 0, pos, NULL, 0), "NULL rp");
    expect_invalid(swiglu_cpu(4, 64, x, y, 32, w, 0), "ld_in 32");
    expect_invalid(swiglu_cpu(4, 0, x, y, 0, w, 0), "f 0");
    expect_invalid(add_cpu(4, NULL, y, 0), "NULL x");
    expect_invalid(add_cpu(4, x, y, -2), "threads");
    tok[1] = -3;
    expect_invalid(embed_cpu(2, tok, w, TW_F32, 0, 4, 16, y, 0), "tokens[1] = -3");
    tok[1] = 1;
    expect_invalid(embed_cpu(2, tok, w, TW_F32, -1, 4, 16, y, 0), "row0 -1");
    expect_invalid(argmax_cpu(4, 0, x, idx, y, 0), "n 0");
    expect_invalid(argmax_cpu(4, 64, x, NULL, y, 0), "NULL idx");
    expect_invalid(bias_add_cpu(4, 64, x, 32, w, TW_F32, 0), "ldx 32");
    expect_invalid(bias_add_cpu(0, 64, x, 0, w, TW_F32, 0), "rows 0");
    expect_invalid(bias_add_cpu(4, 64, x, 0, NULL, TW_F32, 0), "NULL b");
    expect_invalid(bias_add_cpu(4, 64, x, 0, w, TW_I32, 0), "dtype");
    /* good calls pass */
    tw_test_rng r;
    tw_test_rng_seed(&r, 5);
    tw_test_fill(&r, x, 4 * 64, 1.0f);
    tw_test_fill(&r, w, 64, 1.0f);
    cr_assert_eq(rmsnorm_cpu(4, 64, x, w, TW_F32, 1e-5f, y, 0), TW_OK, "%s", tw_last_error());
    cr_assert_eq(rope_cpu(4, 1, 64, x, 0, pos, &rp, 0), TW_OK, "%s", tw_last_error());
    cr_assert_eq(embed_cpu(2, tok, w, TW_F32, 0, 4, 16, y, 0), TW_OK, "%s", tw_last_error());
}
