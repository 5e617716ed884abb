/* Mixture-of-experts and latent-attention ops of the CPU backend against independent float64
 * references (routing: tests/tw_ref_model.c's tw_ref_route; the expert MLP, the per-head norm
 * and the latent attention: naive loops written here, the attention in its expanded form), on
 * awkward sizes with NaN-poisoned outputs; then the engine's per-expert load counters, its
 * routing skew (against the reference with the same skew) and the reproducibility of tokens
 * across thread counts. Tolerances (relative 2-norm): fp32 1e-5, a bf16 cache 1e-5 against a
 * reference that reads the same bf16 values. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_cpu.h"
#include "tw_engine.h"
#include "tw_ref_model.h"
#include "tw_test_pool.h"
#include "tw_test_util.h"

/* Calls of a 2-thread op compared bitwise with 1 thread, each after waking pool worker 1
 * (tests/tw_test_pool.h): how tasks fall to the two threads varies from call to call. */
#define SPLIT_REPS 16

static void wake_pool(void) {
    cr_assert(tw_test_pool_wake(), "pool worker 1 did not run a task within 10 s");
}

static tw_backend *cpu(int threads) {
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(threads, &be), TW_OK, "%s", tw_last_error());
    return be;
}

static float *rnd(tw_test_rng *r, size_t n, float scale) {
    float *x = malloc(n * sizeof *x);
    tw_test_fill(r, x, n, scale);
    return x;
}

static double bf(float x) {
    return tw_test_from_bf16(tw_test_to_bf16(x));
}

/* ---- routing ------------------------------------------------------------------------------- */
typedef struct {
    const char *what;
    int experts, k, scoring, groups, topk_groups, top2, norm, bias, skew;
    float scale;
} route_case;

/* T tokens routed on 2 threads against the reference, and bitwise against 1 thread (from 4096
 * scores, T * experts, the tokens are split across the threads) */
static void check_route(const route_case *rc, tw_dtype bias_dt, int T) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 1000 + (uint64_t)rc->experts * 7 + (uint64_t)rc->k);
    int E = rc->experts, K = rc->k;
    float *lg = rnd(&r, (size_t)T * E, 3.0f), *cb = rnd(&r, (size_t)E, 0.05f);
    float *lb = rnd(&r, (size_t)E, 1.0f);
    uint16_t *cb16 = malloc(sizeof(uint16_t) * E);
    for (int e = 0; e < E; e++) cb16[e] = tw_test_to_bf16(cb[e]);
    int *idx = malloc(sizeof(int) * T * K);
    float *w = malloc(sizeof(float) * T * K);
    for (int i = 0; i < T * K; i++) idx[i] = -7;
    tw_test_poison(w, (size_t)T * K);
    tw_moe_route_args a = {.tokens = T,
                           .n_experts = E,
                           .top_k = K,
                           .scoring = rc->scoring ? TW_ROUTE_SIGMOID : TW_ROUTE_SOFTMAX,
                           .n_group = rc->groups,
                           .topk_group = rc->topk_groups,
                           .group_top2 = rc->top2,
                           .norm_topk = rc->norm,
                           .scale = rc->scale,
                           .logits = lg,
                           .logit_bias = rc->skew ? lb : NULL,
                           .choice_bias =
                               rc->bias ? (bias_dt == TW_BF16 ? (void *)cb16 : (void *)cb) : NULL,
                           .choice_dtype = bias_dt,
                           .idx = idx,
                           .weight = w};
    tw_backend *be = cpu(2), *be1 = cpu(1);
    int *idx1 = malloc(sizeof(int) * T * K);
    float *w1 = malloc(sizeof(float) * T * K);
    for (int i = 0; i < T * K; i++) idx1[i] = -7;
    tw_test_poison(w1, (size_t)T * K);
    tw_moe_route_args a1 = a;
    a1.idx = idx1, a1.weight = w1;
    cr_assert_eq(be1->ops->moe_route(be1, &a1), TW_OK, "%s: %s", rc->what, tw_last_error());
    for (int rep = 0; rep < SPLIT_REPS; rep++) {
        for (int i = 0; i < T * K; i++) idx[i] = -7;
        tw_test_poison(w, (size_t)T * K);
        wake_pool();
        cr_assert_eq(be->ops->moe_route(be, &a), TW_OK, "%s: %s", rc->what, tw_last_error());
        cr_assert(memcmp(idx, idx1, sizeof(int) * T * K) == 0 &&
                      memcmp(w, w1, sizeof(float) * T * K) == 0,
                  "%s, %d tokens: 1 and 2 threads route differently (call %d)", rc->what, T, rep);
    }
    tw_model_config c;
    memset(&c, 0, sizeof c);
    c.n_experts = E, c.n_experts_per_tok = K, c.moe_scoring = rc->scoring ? TW_MOE_SIGMOID : 0;
    c.n_group = rc->groups, c.topk_group = rc->topk_groups, c.group_score_top2 = rc->top2;
    c.norm_topk_prob = rc->norm, c.routed_scaling = rc->scale;
    double *dl = malloc(sizeof(double) * E), *db = malloc(sizeof(double) * E);
    double *dlb = malloc(sizeof(double) * E), *dw = malloc(sizeof(double) * K);
    int *di = malloc(sizeof(int) * K), checked = 0;
    for (int e = 0; e < E; e++) {
        db[e] = bias_dt == TW_BF16 ? tw_test_from_bf16(cb16[e]) : cb[e];
        dlb[e] = lb[e];
    }
    for (int t = 0; t < T; t++) {
        for (int e = 0; e < E; e++) dl[e] = lg[t * E + e];
        double margin = INFINITY;
        tw_ref_route(&c, dl, rc->skew ? dlb : NULL, rc->bias ? db : NULL, di, dw, &margin);
        if (margin < 1e-5) continue; /* fp32 against float64 may order a near tie either way */
        checked++;
        for (int j = 0; j < K; j++) {
            cr_assert_eq(idx[t * K + j], di[j], "%s token %d slot %d: expert %d, reference %d",
                         rc->what, t, j, idx[t * K + j], di[j]);
            cr_assert(fabs(w[t * K + j] - dw[j]) <= 1e-5 * fmax(1.0, fabs(dw[j])),
                      "%s token %d slot %d: weight %.9g, reference %.9g", rc->what, t, j,
                      w[t * K + j], dw[j]);
        }
    }
    cr_assert_gt(checked, T / 2, "%s: %d of %d tokens checked", rc->what, checked, T);
    free(lg), free(cb), free(lb), free(cb16), free(idx), free(w), free(dl), free(db), free(dlb);
    free(dw), free(di), free(idx1), free(w1);
    tw_backend_destroy(be);
    tw_backend_destroy(be1);
}

Test(moe_route, families_match_reference) {
    const route_case cases[] = {
        /* what, E, k, sigmoid, groups, topk_groups, top2, norm, bias, skew, scale */
        {"mixtral (softmax top-2, renormalised)", 8, 2, 0, 1, 1, 0, 1, 0, 0, 1.0f},
        {"qwen3-moe without norm_topk_prob", 13, 3, 0, 1, 1, 0, 0, 0, 0, 1.0f},
        {"deepseek-v3 (sigmoid, bias, 4 of 8 groups by top-2 sums, x2.5)", 32, 5, 1, 8, 4, 1, 1, 1,
         0, 2.5f},
        {"deepseek-v2 (softmax, 2 of 3 groups by their best, x1.3)", 12, 4, 0, 3, 2, 0, 0, 0, 0,
         1.3f},
        {"with a routing skew", 16, 3, 0, 1, 1, 0, 1, 0, 1, 1.0f},
        {"sigmoid without groups, k = E", 5, 5, 1, 1, 1, 0, 1, 1, 1, 1.0f},
    };
    /* 37 tokens: one thread; 613: split across threads from 7 experts on */
    for (int T = 37; T <= 613; T += 576)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            check_route(&cases[i], TW_F32, T);
            if (cases[i].bias) check_route(&cases[i], TW_BF16, T);
        }
}

Test(moe_route, rejects_bad_groups) {
    float lg[12] = {0};
    int idx[4];
    float w[4];
    tw_moe_route_args a = {.tokens = 1,
                           .n_experts = 12,
                           .top_k = 4,
                           .n_group = 5,
                           .topk_group = 1,
                           .scale = 1,
                           .logits = lg,
                           .idx = idx,
                           .weight = w};
    tw_backend *be = cpu(1);
    cr_assert_eq(be->ops->moe_route(be, &a), TW_ERR_INVALID, "5 groups do not divide 12 experts");
    a.n_group = 4, a.topk_group = 1; /* 3 experts in 1 group cannot give 4 */
    cr_assert_eq(be->ops->moe_route(be, &a), TW_ERR_INVALID, "%s", tw_last_error());
    a.topk_group = 2;
    cr_assert_eq(be->ops->moe_route(be, &a), TW_OK, "%s", tw_last_error());
    tw_backend_destroy(be);
}

/* ---- the grouped expert MLP ---------------------------------------------------------------- */
typedef struct {
    int T, H, F, K, E_all, E, e0, acc;
    tw_dtype wdt;
} ffn_case;

/* y[t] = acc y0 + sum_j w[t,j] * expert(x[t]) over held experts, in double */
static void ffn_ref(const ffn_case *fc, const float *x, const float *wgu, const float *wd,
                    const int *idx, const float *wt, const float *y0, double *y) {
    int H = fc->H, F = fc->F;
    double *g = malloc(sizeof(double) * F);
    for (int t = 0; t < fc->T; t++) {
        for (int i = 0; i < H; i++) y[t * H + i] = fc->acc ? y0[t * H + i] : 0;
        for (int j = 0; j < fc->K; j++) {
            int e = idx[t * fc->K + j] - fc->e0;
            if (e < 0 || e >= fc->E) continue;
            const float *G = wgu + (size_t)e * 2 * F * H, *U = G + (size_t)F * H;
            const float *D = wd + (size_t)e * H * F;
            for (int f = 0; f < F; f++) {
                double a = 0, b = 0;
                for (int i = 0; i < H; i++) {
                    double wg = fc->wdt == TW_BF16 ? bf(G[f * H + i]) : G[f * H + i];
                    double wu = fc->wdt == TW_BF16 ? bf(U[f * H + i]) : U[f * H + i];
                    a += wg * x[t * H + i];
                    b += wu * x[t * H + i];
                }
                g[f] = a / (1 + exp(-a)) * b;
            }
            for (int i = 0; i < H; i++) {
                double s = 0;
                for (int f = 0; f < F; f++)
                    s += (fc->wdt == TW_BF16 ? bf(D[i * F + f]) : D[i * F + f]) * g[f];
                y[t * H + i] += wt[t * fc->K + j] * s;
            }
        }
    }
    free(g);
}

static void *weights_as(const float *w, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        float *o = malloc(n * sizeof *o);
        memcpy(o, w, n * sizeof *o);
        return o;
    }
    uint16_t *o = malloc(n * sizeof *o);
    for (size_t i = 0; i < n; i++) o[i] = tw_test_to_bf16(w[i]);
    return o;
}

static void run_ffn(tw_backend *be, const ffn_case *fc, const float *x, const void *gu,
                    const void *dn, const int *idx, const float *wt, float *y, int *counts) {
    size_t wb = tw_moe_ffn_work_bytes(fc->T, fc->K, fc->H, fc->F, fc->E);
    void *work = malloc(wb);
    tw_moe_ffn_args a = {.tokens = fc->T,
                         .hidden = fc->H,
                         .ffn = fc->F,
                         .top_k = fc->K,
                         .n_experts = fc->E,
                         .expert0 = fc->e0,
                         .idx = idx,
                         .weight = wt,
                         .x = x,
                         .w_gate_up = gu,
                         .w_down = dn,
                         .w_dtype = fc->wdt,
                         .y = y,
                         .accumulate = fc->acc,
                         .work = work,
                         .work_bytes = wb,
                         .counts = counts};
    cr_assert_eq(be->ops->moe_ffn(be, &a), TW_OK, "%s", tw_last_error());
    a.work_bytes = wb - 1;
    cr_assert_eq(be->ops->moe_ffn(be, &a), TW_ERR_INVALID, "a workspace one byte short");
    free(work);
}

static void check_ffn(const ffn_case *fc) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)(fc->T * 131 + fc->H * 7 + fc->E));
    int T = fc->T, H = fc->H, F = fc->F, K = fc->K;
    float *x = rnd(&r, (size_t)T * H, 1.0f);
    float *gu = rnd(&r, (size_t)fc->E * 2 * F * H, 1.0f / sqrtf((float)H));
    float *dn = rnd(&r, (size_t)fc->E * H * F, 1.0f / sqrtf((float)F));
    float *wt = rnd(&r, (size_t)T * K, 1.0f), *y0 = rnd(&r, (size_t)T * H, 1.0f);
    int *idx = malloc(sizeof(int) * T * K);
    for (int t = 0; t < T; t++) /* k distinct experts of all E_all; tokens 3 and 4 identical */
        for (int j = 0; j < K; j++) idx[t * K + j] = ((t == 4 ? 3 : t) * 5 + j * 3) % fc->E_all;
    if (T >= 6) {
        memcpy(x + 4 * H, x + 3 * H, sizeof(float) * H);
        for (int j = 0; j < K; j++) wt[4 * K + j] = wt[3 * K + j];
    }
    void *gu_d = weights_as(gu, (size_t)fc->E * 2 * F * H, fc->wdt);
    void *dn_d = weights_as(dn, (size_t)fc->E * H * F, fc->wdt);
    float *y = malloc(sizeof(float) * T * H), *y1 = malloc(sizeof(float) * T * H);
    if (fc->acc)
        memcpy(y, y0, sizeof(float) * T * H);
    else
        tw_test_poison(y, (size_t)T * H);
    int *counts = malloc(sizeof(int) * fc->E);
    tw_backend *be2 = cpu(2), *be1 = cpu(1);
    run_ffn(be2, fc, x, gu_d, dn_d, idx, wt, y, counts);
    /* run_ffn called twice (the second refused): y is the first call's */
    double *ref = malloc(sizeof(double) * T * H);
    ffn_ref(fc, x, gu, dn, idx, wt, y0, ref);
    double err = tw_test_rel_err(y, ref, (size_t)T * H);
    /* the expert GEMMs round activations to bf16 where the CPU's best bf16 level does (bf16
     * dot products, AMX; doc/METRICS.md): bf16's tolerance then */
    double tol = fc->wdt == TW_BF16 && tw_cpu_bf16_rounds_activations() ? 1e-2 : 1e-5;
    cr_assert_lt(
        err, tol, "moe_ffn T=%d H=%d F=%d k=%d experts %d..%d of %d %s acc=%d: rel err %g > %g", T,
        H, F, K, fc->e0, fc->e0 + fc->E - 1, fc->E_all, tw_dtype_name(fc->wdt), fc->acc, err, tol);
    for (int e = 0; e < fc->E; e++) {
        int n = 0;
        for (int s = 0; s < T * K; s++) n += idx[s] == fc->e0 + e;
        cr_assert_eq(counts[e], n, "expert %d: counted %d tokens, routed %d", fc->e0 + e, counts[e],
                     n);
    }
    /* bitwise: two identical tokens, one thread against two, one token alone */
    if (!fc->acc) {
        run_ffn(be1, fc, x, gu_d, dn_d, idx, wt, y1, NULL);
        cr_assert(memcmp(y, y1, sizeof(float) * T * H) == 0, "1 and 2 threads differ");
        for (int rep = 1; rep < SPLIT_REPS; rep++) {
            tw_test_poison(y, (size_t)T * H);
            wake_pool();
            run_ffn(be2, fc, x, gu_d, dn_d, idx, wt, y, NULL);
            cr_assert(memcmp(y, y1, sizeof(float) * T * H) == 0, "1 and 2 threads differ (call %d)",
                      rep);
        }
        /* a token's rows are independent of its neighbours while every expert gets at most 8
         * rows (the GEMM's skinny regime, kernels/cpu/gemm.c: a decode batch of up to 8; past
         * it the blocked GEMM may round differently): token 2 alone and among tokens 0..5 */
        if (T >= 6) {
            ffn_case six = *fc, one = *fc;
            six.T = 6, one.T = 1;
            float *y6 = malloc(sizeof(float) * 6 * H);
            run_ffn(be2, &six, x, gu_d, dn_d, idx, wt, y6, NULL);
            run_ffn(be2, &one, x + 2 * H, gu_d, dn_d, idx + 2 * K, wt + 2 * K, y1, NULL);
            cr_assert(memcmp(y6 + 2 * H, y1, sizeof(float) * H) == 0,
                      "token 2 alone differs from token 2 among 6");
            cr_assert(memcmp(y6 + 3 * H, y6 + 4 * H, sizeof(float) * H) == 0,
                      "identical tokens 3 and 4, different outputs");
            free(y6);
        }
    }
    free(x), free(gu), free(dn), free(wt), free(y0), free(idx), free(gu_d), free(dn_d), free(y);
    free(y1), free(counts), free(ref);
    tw_backend_destroy(be2);
    tw_backend_destroy(be1);
}

Test(moe_ffn, grouped_experts_match_reference) {
    const ffn_case cases[] = {
        /* T, H, F, K, E_all, E, e0, acc, dtype */
        {23, 40, 28, 2, 6, 6, 0, 0, TW_F32},
        {23, 40, 28, 2, 6, 6, 0, 1, TW_BF16},
        {19, 33, 45, 3, 7, 7, 0, 0, TW_BF16},
        {1, 64, 24, 4, 9, 9, 0, 0, TW_F32},   /* one token (a decode step of batch 1) */
        {29, 36, 20, 3, 10, 4, 3, 0, TW_F32}, /* experts 3..6 held: the rest go elsewhere */
        {29, 36, 20, 3, 10, 4, 6, 1, TW_BF16},
        /* past 32K gathered and combined values: both split across threads */
        {301, 117, 20, 2, 6, 6, 0, 0, TW_F32},
        {293, 113, 18, 3, 10, 4, 3, 0, TW_BF16},
        {301, 117, 20, 2, 7, 7, 0, 1, TW_BF16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_ffn(&cases[i]);
}

/* ---- per-head RMSNorm ---------------------------------------------------------------------- */
/* R rows of NH heads of D on rows LD apart, on 2 threads against the reference, and bitwise
 * against 1 thread */
static void check_head_rmsnorm(int R, int NH, int D, int LD, tw_dtype dt, uint64_t seed) {
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    const size_t n = (size_t)R * LD, nh = (size_t)R * NH * D;
    float *x = rnd(&r, n, 2.0f), *w = rnd(&r, D, 1.0f);
    float *x0 = malloc(sizeof(float) * n), *x1 = malloc(sizeof(float) * n);
    memcpy(x0, x, sizeof(float) * n);
    memcpy(x1, x, sizeof(float) * n);
    void *wd = weights_as(w, D, dt);
    tw_backend *be = cpu(2), *be1 = cpu(1);
    cr_assert_eq(be1->ops->head_rmsnorm(be1, R, NH, D, x1, LD, wd, dt, 1e-5f), TW_OK, "%s",
                 tw_last_error());
    for (int rep = 0; rep < SPLIT_REPS; rep++) {
        memcpy(x, x0, sizeof(float) * n);
        wake_pool();
        cr_assert_eq(be->ops->head_rmsnorm(be, R, NH, D, x, LD, wd, dt, 1e-5f), TW_OK, "%s",
                     tw_last_error());
        cr_assert(memcmp(x, x1, sizeof(float) * n) == 0,
                  "head_rmsnorm %dx%dx%d %s: 1 and 2 threads differ (call %d)", R, NH, D,
                  tw_dtype_name(dt), rep);
    }
    double *ref = malloc(sizeof(double) * nh);
    float *got = malloc(sizeof(float) * nh);
    for (int i = 0; i < R; i++) {
        for (int h = 0; h < NH; h++) {
            double ss = 0;
            for (int j = 0; j < D; j++)
                ss += (double)x0[(size_t)i * LD + h * D + j] * x0[(size_t)i * LD + h * D + j];
            double inv = 1 / sqrt(ss / D + 1e-5);
            for (int j = 0; j < D; j++) {
                ref[((size_t)i * NH + h) * D + j] =
                    x0[(size_t)i * LD + h * D + j] * inv * (dt == TW_BF16 ? bf(w[j]) : w[j]);
                got[((size_t)i * NH + h) * D + j] = x[(size_t)i * LD + h * D + j];
            }
        }
        for (int j = NH * D; j < LD; j++)
            cr_assert_eq(x[(size_t)i * LD + j], x0[(size_t)i * LD + j],
                         "row %d col %d past the heads changed", i, j);
    }
    double err = tw_test_rel_err(got, ref, nh);
    cr_assert_lt(err, 1e-6, "head_rmsnorm %dx%dx%d %s: rel err %g", R, NH, D, tw_dtype_name(dt),
                 err);
    free(x), free(w), free(x0), free(x1), free(wd), free(ref), free(got);
    tw_backend_destroy(be);
    tw_backend_destroy(be1);
}

Test(moe_ops, head_rmsnorm_matches_reference) {
    for (int d = 0; d < 2; d++) {
        tw_dtype dt = d ? TW_BF16 : TW_F32;
        check_head_rmsnorm(7, 3, 20, 70, dt, 77);     /* one thread */
        check_head_rmsnorm(67, 8, 130, 1045, dt, 78); /* 69680 values: split across threads */
    }
}

/* ---- latent attention ---------------------------------------------------------------------- */
/* Expanded-form reference: per head keys [W_UK c | k_r] and values W_UV c over positions 0..p. */
static void mla_ref(int B, int S, int NH, int DN, int DR, int L, int DV, int MS, const int *start,
                    const float *q, const float *wkvb, tw_dtype wdt, const float *cache_vals,
                    float scale, double *out) {
    int W = L + DR;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < NH; h++) {
                int p = start[b] + s, tok = b * S + s;
                const float *qn = q + (size_t)tok * NH * (DN + DR) + h * DN;
                const float *qr = q + (size_t)tok * NH * (DN + DR) + NH * DN + h * DR;
                double *sc = malloc(sizeof(double) * (p + 1)), mx = -INFINITY, den = 0;
                for (int j = 0; j <= p; j++) {
                    const float *cj = cache_vals + ((size_t)b * MS + j) * W;
                    double dot = 0;
                    for (int d = 0; d < DN; d++) { /* k_nope[d] = row d of W_UK . c */
                        double k = 0;
                        for (int l = 0; l < L; l++) {
                            float wv = wkvb[((size_t)h * (DN + DV) + d) * L + l];
                            k += (wdt == TW_BF16 ? bf(wv) : wv) * cj[l];
                        }
                        dot += qn[d] * k;
                    }
                    for (int i = 0; i < DR; i++) dot += (double)qr[i] * cj[L + i];
                    sc[j] = dot * scale;
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= p; j++) den += (sc[j] = exp(sc[j] - mx));
                for (int v = 0; v < DV; v++) {
                    double acc = 0;
                    for (int j = 0; j <= p; j++) {
                        const float *cj = cache_vals + ((size_t)b * MS + j) * W;
                        double val = 0;
                        for (int l = 0; l < L; l++) {
                            float wv = wkvb[((size_t)h * (DN + DV) + DN + v) * L + l];
                            val += (wdt == TW_BF16 ? bf(wv) : wv) * cj[l];
                        }
                        acc += sc[j] / den * val;
                    }
                    out[(size_t)tok * NH * DV + h * DV + v] = acc;
                }
                free(sc);
            }
}

Test(moe_ops, mla_store_and_absorbed_attention_match_expanded_reference) {
    enum { B = 2, S = 5, NH = 3, DN = 12, DR = 6, L = 20, DV = 10, MS = 17 };
    const int W = L + DR, start[B] = {3, 0};
    tw_test_rng r;
    tw_test_rng_seed(&r, 99);
    for (int c = 0; c < 4; c++) {
        tw_dtype kvd = c & 1 ? TW_BF16 : TW_F32, wdt = c & 2 ? TW_BF16 : TW_F32;
        /* the cache: earlier positions already there, the S new rows stored by mla_store */
        float *vals = rnd(&r, (size_t)B * MS * W, 1.0f);
        float *rows = rnd(&r, (size_t)B * S * (W + 3), 1.0f); /* ldkv = W + 3 */
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++)
                memcpy(vals + ((size_t)b * MS + start[b] + s) * W,
                       rows + (size_t)(b * S + s) * (W + 3), sizeof(float) * W);
        if (kvd == TW_BF16)
            for (size_t i = 0; i < (size_t)B * MS * W; i++) vals[i] = (float)bf(vals[i]);
        size_t cb = (size_t)B * MS * W * (kvd == TW_BF16 ? 2 : 4);
        unsigned char *cache = malloc(cb);
        for (size_t i = 0; i < (size_t)B * MS * W;
             i++) { /* the old rows, as the cache holds them */
            if (kvd == TW_BF16)
                ((uint16_t *)cache)[i] = tw_test_to_bf16(vals[i]);
            else
                ((float *)cache)[i] = vals[i];
        }
        unsigned char *before = malloc(cb);
        tw_backend *be = cpu(2);
        /* poison the new rows first: mla_store must write them all */
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++)
                for (int i = 0; i < W; i++) {
                    size_t at = ((size_t)b * MS + start[b] + s) * W + i;
                    if (kvd == TW_BF16)
                        ((uint16_t *)cache)[at] = 0x7fc0;
                    else
                        ((float *)cache)[at] = NAN;
                }
        memcpy(before, cache, cb);
        tw_mla_store_args st = {.batch = B,
                                .seq = S,
                                .lora_rank = L,
                                .rope_dim = DR,
                                .max_seq = MS,
                                .start_pos = start,
                                .kv = rows,
                                .ldkv = W + 3,
                                .cache = cache,
                                .kv_dtype = kvd};
        cr_assert_eq(be->ops->mla_store(be, &st), TW_OK, "%s", tw_last_error());
        for (int b = 0; b < B; b++)
            for (int j = 0; j < MS; j++) {
                int fresh = j >= start[b] && j < start[b] + S;
                for (int i = 0; i < W; i++) {
                    size_t at = ((size_t)b * MS + j) * W + i;
                    float got = kvd == TW_BF16 ? tw_test_from_bf16(((uint16_t *)cache)[at])
                                               : ((float *)cache)[at];
                    if (fresh)
                        cr_assert_eq(got, vals[at], "seq %d pos %d col %d stored %g want %g", b, j,
                                     i, got, vals[at]);
                    else
                        cr_assert(memcmp(cache + at * (kvd == TW_BF16 ? 2 : 4),
                                         before + at * (kvd == TW_BF16 ? 2 : 4),
                                         kvd == TW_BF16 ? 2 : 4) == 0,
                                  "seq %d pos %d: a row outside the new ones changed", b, j);
                }
            }
        float *q = rnd(&r, (size_t)B * S * NH * (DN + DR), 1.0f);
        float *wkvb = rnd(&r, (size_t)NH * (DN + DV) * L, 0.3f);
        void *wd = weights_as(wkvb, (size_t)NH * (DN + DV) * L, wdt);
        float *out = malloc(sizeof(float) * B * S * NH * DV);
        tw_test_poison(out, (size_t)B * S * NH * DV);
        float scale = 0.21f;
        tw_mla_attn_args at = {.batch = B,
                               .seq = S,
                               .n_heads = NH,
                               .nope_dim = DN,
                               .rope_dim = DR,
                               .lora_rank = L,
                               .v_dim = DV,
                               .max_seq = MS,
                               .start_pos = start,
                               .q = q,
                               .w_kv_b = wd,
                               .w_dtype = wdt,
                               .cache = cache,
                               .kv_dtype = kvd,
                               .out = out,
                               .scale = scale};
        cr_assert_eq(be->ops->mla_attn(be, &at), TW_OK, "%s", tw_last_error());
        double *ref = malloc(sizeof(double) * B * S * NH * DV);
        mla_ref(B, S, NH, DN, DR, L, DV, MS, start, q, wkvb, wdt, vals, scale, ref);
        double err = tw_test_rel_err(out, ref, (size_t)B * S * NH * DV);
        cr_assert_lt(err, 1e-5, "mla_attn kv %s w %s: rel err %g", tw_dtype_name(kvd),
                     tw_dtype_name(wdt), err);
        /* the (sequence, head) pairs split across 2 threads: bitwise the 1-thread result */
        float *out_1t = malloc(sizeof(float) * B * S * NH * DV);
        tw_test_poison(out_1t, (size_t)B * S * NH * DV);
        tw_mla_attn_args at1 = at;
        at1.out = out_1t;
        tw_backend *be1 = cpu(1);
        cr_assert_eq(be1->ops->mla_attn(be1, &at1), TW_OK, "%s", tw_last_error());
        for (int rep = 0; rep < SPLIT_REPS; rep++) {
            if (rep) {
                tw_test_poison(out, (size_t)B * S * NH * DV);
                wake_pool();
                cr_assert_eq(be->ops->mla_attn(be, &at), TW_OK, "%s", tw_last_error());
            }
            cr_assert(memcmp(out, out_1t, sizeof(float) * B * S * NH * DV) == 0,
                      "mla_attn kv %s w %s: 1 and 2 threads differ (call %d)", tw_dtype_name(kvd),
                      tw_dtype_name(wdt), rep);
        }
        free(out_1t);
        tw_backend_destroy(be1);
        /* a decode step (seq 1) of sequence 1 at position 5 reads positions 0..5 */
        int pos5[1] = {5};
        float out1[NH * DV];
        tw_mla_attn_args d1 = at;
        d1.batch = 1, d1.seq = 1, d1.start_pos = pos5, d1.out = out1;
        d1.q = q + (size_t)(1 * S + 0) * NH * (DN + DR);
        d1.cache = cache + (size_t)MS * W * (kvd == TW_BF16 ? 2 : 4);
        cr_assert_eq(be->ops->mla_attn(be, &d1), TW_OK, "%s", tw_last_error());
        double ref1[NH * DV];
        mla_ref(1, 1, NH, DN, DR, L, DV, MS, pos5, d1.q, wkvb, wdt, vals + (size_t)MS * W, scale,
                ref1);
        err = tw_test_rel_err(out1, ref1, NH * DV);
        cr_assert_lt(err, 1e-5, "mla_attn decode kv %s: rel err %g", tw_dtype_name(kvd), err);
        free(vals), free(rows), free(cache), free(before), free(q), free(wkvb), free(wd);
        free(out), free(ref);
        tw_backend_destroy(be);
    }
}

/* ---- the engine: load counters, routing skew, reproducibility ------------------------------ */
static void run_engine(const char *model, int threads, double skew, int B, int P, int G,
                       int *tokens_out, tw_engine **keep) {
    tw_model_config *c = malloc(sizeof *c);
    cr_assert_eq(tw_model_load(model, c), TW_OK, "%s", tw_last_error());
    tw_backend *be = cpu(threads);
    tw_engine_opts o = {.cfg = c,
                        .be = be,
                        .w_dtype = TW_BF16,
                        .kv_dtype = TW_BF16,
                        .max_batch = B,
                        .max_seq = P + G,
                        .max_prefill = P,
                        .seed = 3,
                        .tp_size = 1,
                        .routing_skew = skew};
    tw_engine *e;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    int *prompt = malloc(sizeof(int) * B * P), next[16], cur[16];
    tw_prompt_tokens(8, B, P, c->vocab, prompt);
    cr_assert_eq(tw_engine_prefill(e, B, P, prompt, next), TW_OK, "%s", tw_last_error());
    int nm, ne;
    const int64_t *load = tw_engine_expert_load(e, &nm, &ne);
    cr_assert(load && nm == tw_model_moe_layers(c) && ne == c->n_experts);
    for (int m = 0; m < nm; m++) { /* every token's k slots, once */
        int64_t sum = 0;
        for (int x = 0; x < ne; x++) sum += load[(size_t)m * ne + x];
        cr_assert_eq(sum, (int64_t)B * P * c->n_experts_per_tok, "prefill load of MoE layer %d", m);
    }
    cr_assert_eq(tw_engine_decode_experts_per_layer(e), 0.0, "no decode step yet");
    tw_engine_reset_expert_load(e);
    for (int s = 0; s < G; s++) {
        for (int b = 0; b < B; b++) tokens_out[s * B + b] = next[b];
        if (s == G - 1) break;
        memcpy(cur, next, sizeof(int) * B);
        cr_assert_eq(tw_engine_decode(e, B, cur, next), TW_OK, "%s", tw_last_error());
    }
    double per = tw_engine_decode_experts_per_layer(e);
    int kmax = B * c->n_experts_per_tok < c->n_experts ? B * c->n_experts_per_tok : c->n_experts;
    cr_assert(per >= c->n_experts_per_tok && per <= kmax,
              "distinct experts per decode step %g outside %d..%d", per, c->n_experts_per_tok,
              kmax);
    for (int m = 0; m < nm; m++) {
        int64_t sum = 0;
        for (int x = 0; x < ne; x++) sum += load[(size_t)m * ne + x];
        cr_assert_eq(sum, (int64_t)B * (G - 1) * c->n_experts_per_tok, "decode load of layer %d",
                     m);
    }
    free(prompt);
    if (keep) {
        *keep = e;
        return;
    }
    tw_engine_destroy(e);
    tw_backend_destroy(be);
    tw_model_free(c);
    free(c);
}

Test(moe_engine, load_counters_and_thread_independent_tokens) {
    enum { B = 4, P = 9, G = 6 };
    const char *models[] = {"tiny-qwen3-moe", "tiny-mixtral", "tiny-deepseek-v3"};
    for (int i = 0; i < 3; i++) {
        int t1[B * G], t2[B * G];
        run_engine(models[i], 1, 0, B, P, G, t1, NULL);
        run_engine(models[i], 2, 0, B, P, G, t2, NULL);
        cr_assert(memcmp(t1, t2, sizeof t1) == 0, "%s: tokens differ between 1 and 2 threads",
                  models[i]);
    }
}

/* The skew concentrates the load (the most loaded expert's share grows) and the engine still
 * matches the float64 reference with the same skew. */
Test(moe_engine, routing_skew_concentrates_load_and_matches_reference) {
    enum { B = 8, P = 12, G = 2 };
    double share[2];
    for (int k = 0; k < 2; k++) {
        tw_engine *e = NULL;
        int toks[B * G];
        run_engine("tiny-qwen3-moe", 2, k ? 2.0 : 0.0, B, P, G, toks, &e);
        tw_engine_reset_expert_load(e);
        int prompt[B * P], next[B];
        tw_engine_reset(e);
        tw_prompt_tokens(8, B, P, 317, prompt);
        cr_assert_eq(tw_engine_prefill(e, B, P, prompt, next), TW_OK, "%s", tw_last_error());
        int nm, ne;
        const int64_t *load = tw_engine_expert_load(e, &nm, &ne);
        int64_t mx = 0, sum = 0;
        for (int x = 0; x < ne; x++) {
            mx = load[x] > mx ? load[x] : mx;
            sum += load[x];
        }
        share[k] = (double)mx / (double)sum;
        tw_engine_destroy(e);
    }
    cr_assert_gt(share[1], share[0] * 1.5,
                 "skew 2 should concentrate the load: top expert share %g without, %g with",
                 share[0], share[1]);

    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny-deepseek-v3", &c), TW_OK, "%s", tw_last_error());
    tw_backend *be = cpu(2);
    tw_engine_opts o = {.cfg = &c,
                        .be = be,
                        .w_dtype = TW_F32,
                        .kv_dtype = TW_F32,
                        .max_batch = 1,
                        .max_seq = 16,
                        .max_prefill = 16,
                        .seed = 4,
                        .tp_size = 1,
                        .keep_host_logits = 1,
                        .routing_skew = 1.5};
    tw_engine *e;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    int tok[14], next[1];
    tw_prompt_tokens(2, 1, 14, c.vocab, tok);
    cr_assert_eq(tw_engine_prefill(e, 1, 14, tok, next), TW_OK, "%s", tw_last_error());
    tw_ref_model *ref = tw_ref_create(&c, 4, 0);
    double *rl = malloc(sizeof(double) * 14 * c.vocab), margin[14];
    for (int pass = 0; pass < 2; pass++) {
        tw_ref_set_routing_skew(ref, pass ? 1.5 : 0.0);
        tw_ref_forward_margin(ref, tok, 14, rl, margin);
        double err = tw_test_rel_err(tw_engine_logits(e), rl + (size_t)13 * c.vocab, c.vocab);
        if (pass)
            cr_assert_lt(err, 1e-4, "skewed engine vs skewed reference: rel err %g (margin %g)",
                         err, margin[13]);
        else
            cr_assert_gt(err, 1e-3, "the skew must change the logits (rel err %g unskewed)", err);
    }
    free(rl);
    tw_ref_destroy(ref);
    tw_engine_destroy(e);
    tw_backend_destroy(be);
    tw_model_free(&c);
}

Test(moe_engine, refuses_skew_without_experts_and_bad_values) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny", &c), TW_OK, "%s", tw_last_error());
    tw_engine_opts o = {.cfg = &c,
                        .w_dtype = TW_F32,
                        .kv_dtype = TW_F32,
                        .max_batch = 1,
                        .max_seq = 8,
                        .max_prefill = 4,
                        .tp_size = 1,
                        .routing_skew = 1.0};
    tw_mem_plan p;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_ERR_INVALID, "a dense model has no router to skew");
    tw_model_free(&c);
    cr_assert_eq(tw_model_load("tiny-mixtral", &c), TW_OK, "%s", tw_last_error());
    o.cfg = &c;
    o.routing_skew = -1;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_ERR_INVALID, "negative skew");
    o.routing_skew = NAN;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_ERR_INVALID, "NaN skew");
    o.routing_skew = 0.5;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_OK, "%s", tw_last_error());
    tw_model_free(&c);
}

/* The yarn frequencies the kernels use (kernels/tw_numeric.h, shared by CPU and CUDA) against
 * the reference's float64 transcription of transformers' _compute_yarn_parameters, for
 * DeepSeek-V3's rope_scaling over its 64 rope dims: the ramp keeps the fast pairs, slows the slow
 * ones by 40, blends between. */
Test(moe_ops, yarn_inverse_frequencies_match_reference) {
    tw_rope_params rp;
    memset(&rp, 0, sizeof rp);
    rp.theta = 10000.0f, rp.type = TW_ROPE_YARN, rp.factor = 40.0f;
    rp.original_max_pos = 4096.0f, rp.beta_fast = 32.0f, rp.beta_slow = 1.0f, rp.yarn_truncate = 1;
    int kept = 0, slowed = 0, blended = 0;
    for (int i = 0; i < 32; i++) {
        double want = tw_ref_rope_inv_freq(&rp, 64, i), plain = pow(10000.0, -2.0 * i / 64);
        float got = tw_rope_inv_freq(i, 64, &rp);
        cr_assert(fabs(got - want) <= 2e-7 * want, "pair %d: %.9g, reference %.9g", i, got, want);
        if (fabs(want - plain) < 1e-12 * plain)
            kept++;
        else if (fabs(want - plain / 40) < 1e-12 * plain)
            slowed++;
        else
            blended++;
    }
    cr_assert(kept > 0 && slowed > 0 && blended > 0, "kept %d, slowed %d, blended %d", kept, slowed,
              blended);
    /* untruncated ranges differ */
    rp.yarn_truncate = 0;
    double t0 = tw_ref_rope_inv_freq(&rp, 64, 11);
    rp.yarn_truncate = 1;
    cr_assert(fabs(t0 - tw_ref_rope_inv_freq(&rp, 64, 11)) > 1e-9, "truncate changes pair 11");
}

/* tokwatt run on a MoE model: the result's experts block (load over the measured repetitions:
 * every prefill and decode token's k slots on every MoE layer; distinct experts per decode step;
 * the skew), and decode bytes that count only the experts reached, fewer than all of them. */
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

Test(moe_engine, tokwatt_run_reports_the_expert_load, .timeout = 120) {
    const char *bin = getenv("TW_TOKWATT");
    cr_assert(bin && *bin, "TW_TOKWATT names the tokwatt binary (set by ctest)");
    char out[] = "/tmp/tw-test-moe-XXXXXX";
    int fd = mkstemp(out);
    cr_assert(fd >= 0);
    close(fd);
    remove(out); /* tokwatt creates it exclusively */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s run --model tiny-qwen3-moe --batch 2 --prompt 6 --gen 4 --reps 2 --warmup 1 "
             "--routing-skew 1.5 --out %s.json >/dev/null 2>&1",
             bin, out);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "tokwatt run failed: %d", rc);
    char path[64];
    snprintf(path, sizeof path, "%s.json", out);
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    cr_assert(r, "%s: %s", path, je.text);
    json_t *ex = json_object_get(r, "experts"), *sc = json_object_get(r, "scenario");
    cr_assert(json_is_object(ex), "no experts block");
    cr_assert_eq(json_real_value(json_object_get(sc, "routing_skew")), 1.5);
    int E = (int)json_integer_value(json_object_get(ex, "n_experts"));
    int K = (int)json_integer_value(json_object_get(ex, "experts_per_token"));
    int NL = (int)json_integer_value(json_object_get(ex, "moe_layers"));
    cr_assert(E == 12 && K == 3 && NL == 2, "E %d K %d layers %d", E, K, NL);
    json_t *load = json_object_get(ex, "load");
    int64_t sum = 0;
    for (size_t i = 0; i < json_array_size(load); i++)
        sum += json_integer_value(json_array_get(load, i));
    /* 2 repetitions x (2 x 6 prefill + 2 x 3 decode tokens) x 3 slots x 2 layers */
    cr_assert_eq(sum, 2 * (12 + 6) * 3 * 2, "routed slots %lld", (long long)sum);
    double per = json_number_value(json_object_get(ex, "decode_experts_per_layer"));
    cr_assert(per >= K && per <= 2 * K, "experts per decode step %g", per);
    cr_assert(json_number_value(json_object_get(ex, "max_over_mean_load")) > 1.0);
    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny-qwen3-moe", &c), TW_OK);
    double bytes =
        json_number_value(json_object_get(json_object_get(r, "metrics"), "decode_bytes_per_step"));
    /* all 12 experts of both MoE layers in bf16 would be 2 x 12 x 3 x 80 x 40 x 2 bytes more
     * than the (at most 6) reached */
    double all = (double)tw_model_params_nonembed(&c) * 2;
    cr_assert(bytes < all - 2.0 * (12 - 6) * 3 * 80 * 40 * 2 + 1, "decode bytes %g vs %g", bytes,
              all);
    tw_model_free(&c);
    json_decref(r);
    remove(path);
}

/* Expert parallelism's shard and refusals (the runs themselves: tests/mpi/mpi_tp.c). */
Test(moe_engine, expert_parallel_shards_and_refusals) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny-deepseek-v3", &c), TW_OK, "%s", tw_last_error());
    tw_shard s;
    cr_assert_eq(tw_engine_shard_ep(&c, 0, 1, 1, 4, &s), TW_OK, "%s", tw_last_error());
    cr_assert(s.experts == 4 && s.expert0 == 4 && s.moe_ffn == 24 && s.moe_ffn0 == 0,
              "rank 1 of 4 holds experts 4..7 whole: %d from %d, width %d", s.experts, s.expert0,
              s.moe_ffn);
    cr_assert(s.shared_ffn == 24 && s.heads == 4, "attention and shared experts replicated");
    cr_assert_eq(tw_engine_shard_ep(&c, 1, 2, 1, 2, &s), TW_OK, "%s", tw_last_error());
    cr_assert(s.experts == 8 && s.expert0 == 8 && s.moe_ffn == 24 && s.heads == 2 &&
                  s.shared_ffn == 12 && s.shared_ffn0 == 12,
              "tp 2 x ep 2: half the heads and shared columns, half the experts whole");
    cr_assert_eq(tw_engine_shard_ep(&c, 0, 1, 0, 3, &s), TW_ERR_INVALID, "3 does not divide 16");
    cr_assert(strstr(tw_last_error(), "--ep 3"), "%s", tw_last_error());
    cr_assert_eq(tw_engine_shard_ep(&c, 0, 2, 0, 4, &s), TW_ERR_INVALID, "tp 2 with ep 4");
    cr_assert(strstr(tw_last_error(), "--tp 2 with --ep 4"), "%s", tw_last_error());
    /* the plan of rank 1 of 4 holds a quarter of the routed experts */
    tw_engine_opts o = {.cfg = &c,
                        .w_dtype = TW_F32,
                        .kv_dtype = TW_F32,
                        .max_batch = 2,
                        .max_seq = 8,
                        .max_prefill = 4,
                        .tp_size = 1,
                        .ep_rank = 1,
                        .ep_size = 4};
    tw_mem_plan p4, p1;
    cr_assert_eq(tw_engine_plan(&o, &p4), TW_OK, "%s", tw_last_error());
    o.ep_size = 1, o.ep_rank = 0;
    cr_assert_eq(tw_engine_plan(&o, &p1), TW_OK, "%s", tw_last_error());
    /* 2 MoE layers x 12 of 16 experts x 3 x 64 x 24 fewer weights */
    cr_assert_eq(p1.params_local - p4.params_local, 2 * 12 * 3 * 64 * 24,
                 "%lld weights fewer with ep 4", (long long)(p1.params_local - p4.params_local));
    /* creating an expert-parallel engine needs a communicator of that size */
    tw_backend *be = cpu(1);
    o.be = be, o.ep_size = 2, o.ep_rank = 0;
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_ERR_INVALID, "no communicator");
    cr_assert(strstr(tw_last_error(), "communicator"), "%s", tw_last_error());
    tw_backend_destroy(be);
    tw_model_free(&c);
    cr_assert_eq(tw_model_load("tiny-qwen3", &c), TW_OK);
    cr_assert_eq(tw_engine_shard_ep(&c, 0, 1, 0, 2, &s), TW_ERR_INVALID, "a dense model");
    tw_model_free(&c);
}
