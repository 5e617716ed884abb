/* Serving metrics against a hand-computed example (every figure worked out in the comments), an
 * independent float64 recomputation over random records, LoadGen's percentile index rule, the
 * goodput and constraint boundaries, and refusal of inconsistent records. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/serve/tw_serve_metrics.h"
#include "tw_test_util.h"

#define NEAR(a, b) cr_assert_lt(fabs((a) - (b)), 1e-12, "%s = %.15g, want %.15g", #a, (a), (b))

/* R0: arrival 0, admit 0.5, tokens at 1.0 1.5 2.0 2.5 3.0 (in 10): TTFT 1, E2E 3, TPOT 2/4 = 0.5
 * R1: arrival 1, admit 1, one token at 1.25 (in 4):               TTFT 0.25, E2E 0.25, no TPOT
 * R2: arrival 2, admit 2.5, tokens at 4.0 4.5 6.0 (in 20):        TTFT 2, E2E 4, TPOT 2/2 = 1
 * W:  a warm-up request with absurd latencies, excluded.  Window [0, 6] s, 2 devices. */
static const double T0[5] = {1.0, 1.5, 2.0, 2.5, 3.0}, T1[1] = {1.25}, T2[3] = {4.0, 4.5, 6.0},
                    TW[2] = {50, 90};

static void example(tw_serve_record r[4]) {
    memset(r, 0, 4 * sizeof *r);
    r[0] = (tw_serve_record){.id = 0,
                             .arrival_s = 0,
                             .admit_s = 0.5,
                             .first_token_s = 1.0,
                             .finish_s = 3.0,
                             .input_tokens = 10,
                             .output_tokens = 5,
                             .token_s = T0};
    r[1] = (tw_serve_record){.id = 1,
                             .arrival_s = 1,
                             .admit_s = 1,
                             .first_token_s = 1.25,
                             .finish_s = 1.25,
                             .input_tokens = 4,
                             .output_tokens = 1,
                             .token_s = T1};
    r[2] = (tw_serve_record){.id = 2,
                             .arrival_s = 2,
                             .admit_s = 2.5,
                             .first_token_s = 4.0,
                             .finish_s = 6.0,
                             .input_tokens = 20,
                             .output_tokens = 3,
                             .token_s = T2,
                             .preemptions = 2};
    r[3] = (tw_serve_record){.id = 3,
                             .warmup = 1,
                             .arrival_s = 0,
                             .admit_s = 40,
                             .first_token_s = 50,
                             .finish_s = 90,
                             .input_tokens = 999,
                             .output_tokens = 2,
                             .token_s = TW};
}

Test(serve_metrics, hand_computed_example) {
    tw_serve_record r[4];
    example(r);
    NEAR(tw_serve_tpot_s(&r[0]), 0.5);
    cr_assert(isnan(tw_serve_tpot_s(&r[1])));
    tw_serve_slo slo = {.ttft_s = 1.5, .tpot_s = 0.6};
    tw_serve_limits lim = {.ttft_s = 2.0, .tpot_s = 1.0, .percentile = 99, .min_duration_s = 600};
    tw_serve_summary s;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 2, &slo, &lim, &s), TW_OK, "%s", tw_last_error());
    cr_assert_eq(s.n_measured, 3);
    cr_assert_eq(s.n_warmup_excluded, 1);
    cr_assert_eq(s.n_single_token, 1);
    cr_assert_eq(s.n_preemptions, 2);
    cr_assert_eq(s.input_tokens, 34);
    cr_assert_eq(s.output_tokens, 9);
    NEAR(s.window_s, 6.0);
    NEAR(s.request_rps, 0.5);    /* 3 / 6 */
    NEAR(s.output_tps, 1.5);     /* 9 / 6 */
    NEAR(s.total_tps, 43.0 / 6); /* (34 + 9) / 6 */
    NEAR(s.output_tps_per_device, 0.75);
    NEAR(s.request_rps_per_device, 0.25);
    /* TTFT {0.25, 1, 2}: mean 3.25/3; population sd sqrt(1.5416667/3); linear p90 at rank 1.8
     * -> 1 + 0.8 * 1; p99 at rank 1.98; LoadGen p99 index floor(3 * 0.99) = 2 -> 2 */
    cr_assert_eq(s.ttft.n, 3);
    NEAR(s.ttft.mean, 3.25 / 3);
    NEAR(s.ttft.std,
         sqrt((pow(0.25 - 3.25 / 3, 2) + pow(1 - 3.25 / 3, 2) + pow(2 - 3.25 / 3, 2)) / 3));
    NEAR(s.ttft.median, 1.0);
    NEAR(s.ttft.p90, 1.8);
    NEAR(s.ttft.p95, 1.9);
    NEAR(s.ttft.p99, 1.98);
    NEAR(s.ttft.p99_loadgen, 2.0);
    NEAR(s.ttft.min, 0.25);
    NEAR(s.ttft.max, 2.0);
    /* TPOT {0.5, 1} (R1 has none) */
    cr_assert_eq(s.tpot.n, 2);
    NEAR(s.tpot.mean, 0.75);
    NEAR(s.tpot.median, 0.75);
    NEAR(s.tpot.p99_loadgen, 1.0);
    /* ITL {0.5 x 4, 0.5, 1.5}: mean 4/6, median 0.5, linear p99 at rank 4.95 -> 0.5 + 0.95 */
    cr_assert_eq(s.itl.n, 6);
    NEAR(s.itl.mean, 4.0 / 6);
    NEAR(s.itl.median, 0.5);
    NEAR(s.itl.p99, 1.45);
    /* E2E {0.25, 3, 4}, queue {0, 0.5, 0.5} */
    NEAR(s.e2e.mean, 7.25 / 3);
    NEAR(s.e2e.max, 4.0);
    NEAR(s.queue.mean, 1.0 / 3);
    NEAR(s.queue.median, 0.5);
    /* goodput: R0 (1 <= 1.5, 0.5 <= 0.6) and R1 (TPOT counts 0) are good, R2 (TTFT 2) is not */
    cr_assert_eq(s.n_good, 2);
    NEAR(s.goodput_rps, 2.0 / 6);
    NEAR(s.goodput_output_tps, 6.0 / 6);
    NEAR(s.goodput_rps_per_device, 1.0 / 6);
    /* MLPerf: p99 TTFT 2.0 <= 2.0 and p99 TPOT 1.0 <= 1.0 hold (LoadGen fails only on >) */
    NEAR(s.ttft_pctl_s, 2.0);
    NEAR(s.tpot_pctl_s, 1.0);
    cr_assert(s.ttft_met && s.tpot_met && s.constraint_met);
    cr_assert_not(s.min_duration_met, "6 s is under LoadGen's 600 s minimum");
    /* a hair under each limit fails that half */
    lim.ttft_s = 1.999999;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 2, &slo, &lim, &s), TW_OK);
    cr_assert(!s.ttft_met && s.tpot_met && !s.constraint_met);
    lim.ttft_s = 2.0;
    lim.tpot_s = 0.999999;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 2, &slo, &lim, &s), TW_OK);
    cr_assert(s.ttft_met && !s.tpot_met && !s.constraint_met);
    /* no objectives: goodput is not computed */
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_OK);
    cr_assert(isnan(s.goodput_rps) && !s.slo_given && !s.limits_given);
    /* an end-to-end objective alone: E2E {0.25, 3, 4} <= 3 keeps two */
    tw_serve_slo e2e = {.e2e_s = 3.0};
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, &e2e, NULL, &s), TW_OK);
    cr_assert_eq(s.n_good, 2);
}

Test(serve_metrics, loadgen_percentile_index_rule) {
    double v[1000];
    for (int i = 0; i < 1000; i++) v[i] = i;
    /* sorted[(size_t)(n * 0.99)] */
    cr_assert_eq(tw_serve_pct_loadgen(v, 100, 0.99), 99.0, "n = 100: the largest");
    cr_assert_eq(tw_serve_pct_loadgen(v, 1000, 0.99), 990.0);
    cr_assert_eq(tw_serve_pct_loadgen(v, 250, 0.99), 247.0);
    cr_assert_eq(tw_serve_pct_loadgen(v, 1, 0.99), 0.0);
    cr_assert_eq(tw_serve_pct_loadgen(v, 1000, 0.5), 500.0);
    /* numpy linear differs: rank 0.99 * 99 = 98.01 */
    cr_assert_lt(fabs(tw_serve_pct_linear(v, 100, 99) - 98.01), 1e-12);
    cr_assert(isnan(tw_serve_pct_loadgen(v, 0, 0.99)));
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Independent percentile: numpy's 'linear' definition written from the order statistics. */
static double ref_pct(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    double h = (n - 1) * p / 100.0;
    int j = (int)h;
    return j + 1 < n ? v[j] + (h - j) * (v[j + 1] - v[j]) : v[j];
}

/* 700 random requests with random lengths and token gaps (awkward sizes, some single-token,
 * some warm-up), every aggregate recomputed here in float64 from the raw times. */
Test(serve_metrics, independent_recomputation) {
    tw_test_rng g;
    tw_test_rng_seed(&g, 4242);
    const int N = 700;
    tw_serve_record *r = calloc(N, sizeof *r);
    double **tok = calloc(N, sizeof *tok);
    for (int i = 0; i < N; i++) {
        int out = 1 + (int)((tw_test_uniform(&g) + 1) * 20);
        if (i % 37 == 0) out = 1;
        double a = i * 0.3 + fabs(tw_test_uniform(&g));
        double adm = a + fabs(tw_test_uniform(&g)) * 2;
        tok[i] = malloc(sizeof(double) * (size_t)out);
        double t = adm + 0.01 + fabs(tw_test_uniform(&g));
        for (int k = 0; k < out; k++) {
            tok[i][k] = t;
            t += 0.001 + fabs(tw_test_uniform(&g)) * 0.2;
        }
        r[i] = (tw_serve_record){.id = i,
                                 .warmup = i < 13,
                                 .arrival_s = a,
                                 .admit_s = adm,
                                 .first_token_s = tok[i][0],
                                 .finish_s = tok[i][out - 1],
                                 .input_tokens = 1 + i % 97,
                                 .output_tokens = out,
                                 .token_s = tok[i]};
    }
    double t_end = 0;
    for (int i = 0; i < N; i++)
        if (r[i].finish_s > t_end) t_end = r[i].finish_s;
    tw_serve_slo slo = {.ttft_s = 1.2, .tpot_s = 0.1};
    tw_serve_limits lim = {.ttft_s = 1.5, .tpot_s = 0.11, .percentile = 99};
    tw_serve_summary s;
    cr_assert_eq(tw_serve_summarize(r, N, r[13].arrival_s, t_end, 3, &slo, &lim, &s), TW_OK, "%s",
                 tw_last_error());
    /* recompute */
    double *ttft = malloc(sizeof(double) * N), *tpot = malloc(sizeof(double) * N),
           *itl = malloc(sizeof(double) * N * 42);
    int nm = 0, nt = 0, ni = 0, good = 0;
    long out_tok = 0, in_tok = 0, good_tok = 0;
    double sum_ttft = 0, sum_tpot = 0, sum_itl = 0;
    for (int i = 13; i < N; i++) {
        const tw_serve_record *x = &r[i];
        double tt = x->token_s[0] - x->arrival_s;
        double tp = 0;
        ttft[nm++] = tt;
        sum_ttft += tt;
        if (x->output_tokens > 1) {
            tp = (x->token_s[x->output_tokens - 1] - x->token_s[0]) / (x->output_tokens - 1);
            tpot[nt++] = tp;
            sum_tpot += tp;
        }
        for (int k = 1; k < x->output_tokens; k++) {
            itl[ni++] = x->token_s[k] - x->token_s[k - 1];
            sum_itl += itl[ni - 1];
        }
        out_tok += x->output_tokens;
        in_tok += x->input_tokens;
        if (tt <= 1.2 && tp <= 0.1) {
            good++;
            good_tok += x->output_tokens;
        }
    }
    double W = t_end - r[13].arrival_s;
    cr_assert_eq(s.n_measured, nm);
    cr_assert_eq(s.n_good, good);
    cr_assert_gt(good, 10, "the objectives split the requests");
    cr_assert_lt(good, nm - 10);
    cr_assert_lt(fabs(s.ttft.mean - sum_ttft / nm), 1e-12);
    cr_assert_lt(fabs(s.tpot.mean - sum_tpot / nt), 1e-12);
    cr_assert_lt(fabs(s.itl.mean - sum_itl / ni), 1e-12);
    cr_assert_eq(s.itl.n, ni);
    cr_assert_lt(fabs(s.output_tps - out_tok / W), 1e-9);
    cr_assert_lt(fabs(s.total_tps_per_device - (in_tok + out_tok) / W / 3), 1e-9);
    cr_assert_lt(fabs(s.goodput_output_tps - good_tok / W), 1e-9);
    const double P[4] = {50, 90, 95, 99};
    const double *got_ttft[4] = {&s.ttft.median, &s.ttft.p90, &s.ttft.p95, &s.ttft.p99};
    const double *got_tpot[4] = {&s.tpot.median, &s.tpot.p90, &s.tpot.p95, &s.tpot.p99};
    for (int k = 0; k < 4; k++) {
        cr_assert_lt(fabs(*got_ttft[k] - ref_pct(ttft, nm, P[k])), 1e-12, "TTFT p%g", P[k]);
        cr_assert_lt(fabs(*got_tpot[k] - ref_pct(tpot, nt, P[k])), 1e-12, "TPOT p%g", P[k]);
    }
    cr_assert_lt(fabs(s.itl.p99 - ref_pct(itl, ni, 99)), 1e-12);
    /* LoadGen's p99: sorted (by ref_pct above) at index (size_t)(n * 0.99) */
    cr_assert_eq(s.ttft_pctl_s, ttft[(size_t)(nm * 0.99)]);
    cr_assert_eq(s.tpot_pctl_s, tpot[(size_t)(nt * 0.99)]);
    cr_assert_eq(s.constraint_met, s.ttft_pctl_s <= 1.5 && s.tpot_pctl_s <= 0.11);
    double var = 0;
    for (int i = 0; i < nm; i++) var += pow(ttft[i] - sum_ttft / nm, 2);
    cr_assert_lt(fabs(s.ttft.std - sqrt(var / nm)), 1e-12);
    for (int i = 0; i < N; i++) free(tok[i]);
    free(tok);
    free(r);
    free(ttft);
    free(tpot);
    free(itl);
}

Test(serve_metrics, inconsistent_records_refused) {
    tw_serve_record r[4];
    tw_serve_summary s;
    example(r);
    r[2].admit_s = 1.5; /* before its arrival at 2 */
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "request 2"), "%s", tw_last_error());
    example(r);
    r[0].finish_s = NAN;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_ERR_INVALID);
    example(r);
    const double bad[3] = {4.0, 3.9, 6.0};
    r[2].token_s = bad; /* token 1 before token 0 */
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_ERR_INVALID);
    example(r);
    r[0].first_token_s = 0.9; /* disagrees with token_s[0] */
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_ERR_INVALID);
    example(r);
    r[1].output_tokens = 0;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_ERR_INVALID);
    example(r);
    cr_assert_eq(tw_serve_summarize(r, 4, 6, 6, 1, NULL, NULL, &s), TW_ERR_INVALID, "empty window");
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 0, NULL, NULL, &s), TW_ERR_INVALID, "0 devices");
    cr_assert_eq(tw_serve_summarize(&r[3], 1, 0, 90, 1, NULL, NULL, &s), TW_ERR_INVALID,
                 "only warm-up requests");
    /* without token times: no ITL, everything else still computed */
    example(r);
    for (int i = 0; i < 4; i++) r[i].token_s = NULL;
    cr_assert_eq(tw_serve_summarize(r, 4, 0, 6, 1, NULL, NULL, &s), TW_OK);
    cr_assert_eq(s.itl.n, 0);
    cr_assert(isnan(s.itl.mean));
    cr_assert_eq(s.tpot.n, 2);
}
