/* Load generator: the counter-based generator against SplitMix64's published outputs, the
 * statistics of the Poisson arrival process for fixed seeds (bounds derived below), determinism
 * and rate rescaling, each scenario's bounds and warm-up, length draws against their histograms,
 * refusal of malformed lengths files, the shipped lengths files against the figures they cite,
 * and the MLPerf limits file against mlperf.conf's quoted lines. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness/serve/tw_loadgen.h"
#include "harness/serve/tw_serve_limits.h"
#include "tw_config.h"
#include "tw_util.h"

/* Vigna's splitmix64.c seeded with x = 0: the first four next() outputs (computed independently
 * from the published algorithm). */
Test(serve_loadgen, splitmix64_reference_outputs) {
    const uint64_t want[4] = {0xe220a8397b1dcdafULL, 0x6e789e6aa1b965f4ULL, 0x06c45d188009454fULL,
                              0xf88bb8a8724c81ecULL};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(tw_serve_splitmix64_at(0, (uint64_t)i), want[i], "output %d", i);
    /* uniforms stay strictly inside (0, 1) */
    for (uint64_t i = 0; i < 100000; i++) {
        double u = tw_serve_rng_u01(12345, 1, i);
        cr_assert(u > 0 && u < 1);
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double *server_arrivals(uint64_t seed, double rate, int64_t n) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 7, 3), TW_OK);
    tw_loadgen_config c = {.scenario = TW_LOADGEN_SERVER,
                           .rate_rps = rate,
                           .n_requests = n,
                           .seed = seed,
                           .lengths = &L};
    tw_loadgen lg;
    cr_assert_eq(tw_loadgen_init(&lg, &c), TW_OK, "%s", tw_last_error());
    double *t = malloc(sizeof(double) * (size_t)n);
    tw_loadgen_request r;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(tw_loadgen_next(&lg, 0, &r), 1);
        cr_assert_eq(r.index, i);
        cr_assert_eq(r.input_tokens, 7);
        t[i] = r.arrival_s;
    }
    cr_assert_eq(tw_loadgen_next(&lg, 0, &r), 0, "the request count ends issuing");
    tw_loadgen_lengths_free(&L);
    return t;
}

/* N = 20000 gaps at R = 5/s for four fixed seeds. Each bound is 5 standard errors of the
 * statistic under the exponential law (so a correct generator fails with probability ~1e-6):
 *   mean gap * R:        sd 1/sqrt(N) = 0.0071                  -> |x - 1| < 0.0354
 *   coefficient of var.: sd(s/sigma) ~ sqrt(2/N) = 0.0100       -> |cv - 1| < 0.050
 *     (Var(s^2)/sigma^4 = (mu4/sigma^4 - 1)/N = 8/N for the exponential)
 *   lag-1 correlation:   sd 1/sqrt(N)                           -> |rho1| < 0.0354
 *   Kolmogorov-Smirnov against 1 - exp(-R x), rate known:  D < 1.949/sqrt(N) (alpha = 0.001)
 *   counts in 1 s windows (Poisson, mean 5): index of dispersion var/mean, sd sqrt(2/(k-1))
 *     over k windows                                            -> |D - 1| < 5 sqrt(2/(k-1)) */
Test(serve_loadgen, poisson_arrivals_statistics) {
    const uint64_t seeds[4] = {1, 7, 2024, 0xdeadbeefULL};
    const int64_t N = 20000;
    const double R = 5.0;
    for (int si = 0; si < 4; si++) {
        double *t = server_arrivals(seeds[si], R, N);
        double *g = malloc(sizeof(double) * (size_t)N);
        for (int64_t i = 0; i < N; i++) {
            g[i] = t[i] - (i ? t[i - 1] : 0.0);
            cr_assert(g[i] > 0, "arrivals strictly increase");
        }
        double m = 0;
        for (int64_t i = 0; i < N; i++) m += g[i];
        m /= N;
        double v = 0, c1 = 0;
        for (int64_t i = 0; i < N; i++) v += (g[i] - m) * (g[i] - m);
        for (int64_t i = 1; i < N; i++) c1 += (g[i] - m) * (g[i - 1] - m);
        double sd = sqrt(v / (N - 1)), cv = sd / m, rho1 = c1 / v;
        cr_assert_lt(fabs(m * R - 1), 5 / sqrt((double)N), "seed %d: mean gap %g", si, m);
        cr_assert_lt(fabs(cv - 1), 5 * sqrt(2.0 / N), "seed %d: cv %g", si, cv);
        cr_assert_lt(fabs(rho1), 5 / sqrt((double)N), "seed %d: lag-1 correlation %g", si, rho1);
        qsort(g, (size_t)N, sizeof(double), cmp_d);
        double D = 0;
        for (int64_t i = 0; i < N; i++) {
            double F = 1 - exp(-R * g[i]);
            double d1 = (double)(i + 1) / N - F, d2 = F - (double)i / N;
            if (d1 > D) D = d1;
            if (d2 > D) D = d2;
        }
        cr_assert_lt(D, 1.949 / sqrt((double)N), "seed %d: KS %g", si, D);
        int k = (int)floor(t[N - 1]);
        int *cnt = calloc((size_t)k, sizeof(int));
        for (int64_t i = 0; i < N; i++)
            if (t[i] < k) cnt[(int)t[i]]++;
        double cm = 0, cvv = 0;
        for (int j = 0; j < k; j++) cm += cnt[j];
        cm /= k;
        for (int j = 0; j < k; j++) cvv += (cnt[j] - cm) * (cnt[j] - cm);
        cvv /= (k - 1);
        cr_assert_lt(fabs(cm / R - 1), 0.05, "seed %d: %g arrivals per second", si, cm);
        cr_assert_lt(fabs(cvv / cm - 1), 5 * sqrt(2.0 / (k - 1)), "seed %d: dispersion %g", si,
                     cvv / cm);
        free(cnt);
        free(g);
        free(t);
    }
}

Test(serve_loadgen, deterministic_and_rescaled_by_rate) {
    double *a = server_arrivals(99, 3.0, 5000), *b = server_arrivals(99, 3.0, 5000);
    double *c = server_arrivals(100, 3.0, 5000), *d = server_arrivals(99, 6.0, 5000);
    cr_assert_eq(memcmp(a, b, sizeof(double) * 5000), 0, "same seed: the same schedule, bitwise");
    int differ = 0;
    for (int i = 0; i < 5000; i++) {
        differ += a[i] != c[i];
        /* twice the rate: the same variates, half the times */
        cr_assert_lt(fabs(d[i] * 2 - a[i]), 1e-12 * a[i], "request %d", i);
    }
    cr_assert_gt(differ, 4990, "another seed gives another schedule");
    free(a);
    free(b);
    free(c);
    free(d);
}

static tw_loadgen_config base_cfg(const tw_loadgen_lengths *L, tw_loadgen_scenario s) {
    tw_loadgen_config c = {.scenario = s, .lengths = L, .seed = 5};
    return c;
}

Test(serve_loadgen, scenario_bounds_and_warmup) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_uniform(&L, 3, 40, 1, 9), TW_OK);
    tw_loadgen lg;
    tw_loadgen_request r;
    /* offline: every request at t = 0, warm-up first */
    tw_loadgen_config c = base_cfg(&L, TW_LOADGEN_OFFLINE);
    c.n_requests = 17;
    c.n_warmup = 3;
    cr_assert_eq(tw_loadgen_init(&lg, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_loadgen_max_requests(&c), 20);
    int n = 0;
    while (tw_loadgen_next(&lg, 123.0, &r)) {
        cr_assert_eq(r.arrival_s, 0.0);
        cr_assert_eq(r.warmup, n < 3);
        cr_assert(r.input_tokens >= 3 && r.input_tokens <= 40);
        cr_assert(r.output_tokens >= 1 && r.output_tokens <= 9);
        n++;
    }
    cr_assert_eq(n, 20);
    /* server under a duration alone: every arrival before it, about R * T of them */
    c = base_cfg(&L, TW_LOADGEN_SERVER);
    c.rate_rps = 50;
    c.duration_s = 200;
    cr_assert_eq(tw_loadgen_init(&lg, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_loadgen_max_requests(&c), -1);
    n = 0;
    double last = 0;
    while (tw_loadgen_next(&lg, 0, &r)) {
        cr_assert(r.arrival_s < 200 && r.arrival_s >= last);
        last = r.arrival_s;
        n++;
    }
    /* Poisson count with mean 10000: 5 sd = 500 */
    cr_assert_lt(abs(n - 10000), 500, "%d arrivals in 200 s at 50/s", n);
    /* both bounds: the request count comes first here */
    c.n_requests = 100;
    cr_assert_eq(tw_loadgen_init(&lg, &c), TW_OK);
    n = 0;
    while (tw_loadgen_next(&lg, 0, &r)) n++;
    cr_assert_eq(n, 100);
    /* closed loop: arrivals are the issue times, the duration ends issuing */
    c = base_cfg(&L, TW_LOADGEN_CONCURRENCY);
    c.concurrency = 4;
    c.duration_s = 10;
    cr_assert_eq(tw_loadgen_init(&lg, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_loadgen_next(&lg, 2.5, &r), 1);
    cr_assert_eq(r.arrival_s, 2.5);
    cr_assert_eq(tw_loadgen_next(&lg, 10.0, &r), 0, "no issue at the duration");
    tw_loadgen_lengths_free(&L);
}

Test(serve_loadgen, bad_configurations_refused) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 8, 8), TW_OK);
    tw_loadgen_config c = base_cfg(&L, TW_LOADGEN_OFFLINE);
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "offline without a count");
    c.n_requests = 4;
    c.duration_s = 3;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "offline with a duration");
    c = base_cfg(&L, TW_LOADGEN_SERVER);
    c.n_requests = 4;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "server at rate 0");
    c.rate_rps = NAN;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "server at rate NaN");
    c.rate_rps = 2;
    c.n_requests = 0;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "server without any bound");
    c = base_cfg(&L, TW_LOADGEN_CONCURRENCY);
    c.n_requests = 4;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "concurrency 0");
    c.concurrency = 2;
    cr_assert_eq(tw_loadgen_check(&c), TW_OK);
    c.lengths = NULL;
    cr_assert_eq(tw_loadgen_check(&c), TW_ERR_INVALID, "no lengths");
    tw_loadgen_scenario s;
    cr_assert_eq(tw_loadgen_scenario_parse("interactive", &s), TW_OK);
    cr_assert_eq(s, TW_LOADGEN_INTERACTIVE);
    cr_assert_eq(tw_loadgen_scenario_parse("Server", &s), TW_ERR_INVALID);
    tw_loadgen_lengths_free(&L);
}

static const char *HIST =
    "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"test\", \"stand_in\": \"all of it\","
    " \"input\": {\"kind\": \"histogram\", \"bins\": [[1, 10, 1], [11, 11, 3], [20, 59, 6]]},"
    " \"output\": {\"kind\": \"uniform\", \"min\": 5, \"max\": 8}}";

/* 200000 draws: bin frequencies by chi-square (2 degrees of freedom, 0.9999 quantile 18.42),
 * uniformity inside the 40-wide bin (39 df, 0.9999 quantile 81.4), the uniform output's range
 * and frequencies, and the exact means against the hand calculation. */
Test(serve_loadgen, histogram_draws_follow_the_weights) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_parse(HIST, "inline", &L), TW_OK, "%s", tw_last_error());
    double mi, mo;
    tw_loadgen_lengths_mean(&L, &mi, &mo);
    /* (1*5.5 + 3*11 + 6*39.5) / 10 = 27.55; output (5+8)/2 */
    cr_assert_lt(fabs(mi - 27.55), 1e-12, "%g", mi);
    cr_assert_lt(fabs(mo - 6.5), 1e-12);
    int imax, omax;
    int64_t tmax;
    tw_loadgen_lengths_max(&L, &imax, &omax, &tmax);
    cr_assert_eq(imax, 59);
    cr_assert_eq(omax, 8);
    cr_assert_eq(tmax, 67);
    const int N = 200000;
    long bin[3] = {0}, pos[40] = {0}, out[4] = {0};
    double sum = 0;
    for (int i = 0; i < N; i++) {
        int a, b;
        tw_loadgen_lengths_draw(&L, 77, i, &a, &b);
        cr_assert((a >= 1 && a <= 11) || (a >= 20 && a <= 59), "input %d outside the bins", a);
        cr_assert(b >= 5 && b <= 8);
        bin[a <= 10 ? 0 : a == 11 ? 1 : 2]++;
        if (a >= 20) pos[a - 20]++;
        out[b - 5]++;
        sum += a;
    }
    const double p[3] = {0.1, 0.3, 0.6};
    double chi = 0;
    for (int k = 0; k < 3; k++) chi += pow(bin[k] - N * p[k], 2) / (N * p[k]);
    cr_assert_lt(chi, 18.42, "bin chi-square %g", chi);
    double e = bin[2] / 40.0, chi2 = 0;
    for (int k = 0; k < 40; k++) chi2 += pow(pos[k] - e, 2) / e;
    cr_assert_lt(chi2, 81.4, "within-bin chi-square %g", chi2);
    double chi3 = 0;
    for (int k = 0; k < 4; k++) chi3 += pow(out[k] - N / 4.0, 2) / (N / 4.0);
    cr_assert_lt(chi3, 21.1, "uniform output chi-square %g (3 df)", chi3);
    /* sample mean within 5 standard errors (input sd about 14.6) */
    cr_assert_lt(fabs(sum / N - 27.55), 5 * 14.6 / sqrt((double)N));
    tw_loadgen_lengths_free(&L);
}

Test(serve_loadgen, joint_bins) {
    const char *J =
        "{\"schema_version\": 1, \"name\": \"j\", \"source\": \"s\", \"stand_in\": \"x\","
        " \"joint\": {\"bins\": [[100, 100, 1, 2, 1], [5, 9, 300, 300, 3]]}}";
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_parse(J, "inline", &L), TW_OK, "%s", tw_last_error());
    double mi, mo;
    tw_loadgen_lengths_mean(&L, &mi, &mo);
    cr_assert_lt(fabs(mi - (100 + 3 * 7) / 4.0), 1e-12);
    cr_assert_lt(fabs(mo - (1.5 + 3 * 300) / 4.0), 1e-12);
    int imax, omax;
    int64_t tmax;
    tw_loadgen_lengths_max(&L, &imax, &omax, &tmax);
    cr_assert_eq(tmax, 309, "the longest joint request, not in_max + out_max = 400");
    long first = 0;
    for (int i = 0; i < 40000; i++) {
        int a, b;
        tw_loadgen_lengths_draw(&L, 3, i, &a, &b);
        /* the pairs stay joint: a long prompt always has a short answer */
        cr_assert((a == 100 && b <= 2) || (a >= 5 && a <= 9 && b == 300), "(%d, %d)", a, b);
        first += a == 100;
    }
    /* p = 0.25, sd of the count sqrt(40000 * 0.25 * 0.75) = 86.6 */
    cr_assert_lt(labs(first - 10000), 433);
    tw_loadgen_lengths_free(&L);
}

Test(serve_loadgen, malformed_lengths_refused) {
    const char *bad[] = {
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\","
        " \"input\": {\"kind\": \"normal\"}, \"output\": {\"kind\": \"fixed\", \"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"histogram\", \"bins\": [[1, 10, 1], [10, 20, 1]]}, \"output\": {\"kind\":"
        " \"fixed\", \"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"stand_in\": \"x\", \"input\": {\"kind\": "
        "\"fixed\", \"value\": 3}, \"output\": {\"kind\": \"fixed\", \"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"uniform\", \"min\": 9, \"max\": 3}, \"output\": {\"kind\": \"fixed\", "
        "\"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"fixed\", \"value\": 0}, \"output\": {\"kind\": \"fixed\", \"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"histogram\", \"bins\": [[1, 10, 0]]}, \"output\": {\"kind\": \"fixed\", "
        "\"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"fixed\", \"value\": 3}, \"output\": {\"kind\": \"fixed\", \"value\": 3},"
        " \"joint\": {\"bins\": [[1, 1, 1, 1, 1]]}}",
        "{\"schema_version\": 2, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"fixed\", \"value\": 3}, \"output\": {\"kind\": \"fixed\", \"value\": 3}}",
        "{\"schema_version\": 1, \"name\": \"t\", \"source\": \"s\", \"stand_in\": \"x\", "
        "\"input\":"
        " {\"kind\": \"fixed\", \"value\": 3}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tw_loadgen_lengths L;
        cr_assert_eq(tw_loadgen_lengths_parse(bad[i], "inline", &L), TW_ERR_PARSE, "case %zu", i);
        cr_assert_gt(strlen(tw_last_error()), 10);
    }
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_load("no-such-lengths", &L), TW_ERR_IO);
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 0, 3), TW_ERR_INVALID);
    cr_assert_eq(tw_loadgen_lengths_uniform(&L, 5, 4, 1, 1), TW_ERR_INVALID);
}

/* Every shipped lengths file loads, names its source and its stand-ins, and agrees with the
 * figures it cites: the exact output mean equals the cited mean, no draw exceeds a cited
 * maximum. */
Test(serve_loadgen, shipped_lengths_files_match_their_citations) {
    const char *names[] = {"llama2-70b-openorca", "llama3.1-405b", "llama3.1-8b-cnndm",
                           "deepseek-r1"};
    for (int i = 0; i < 4; i++) {
        tw_loadgen_lengths L;
        cr_assert_eq(tw_loadgen_lengths_load(names[i], &L), TW_OK, "%s", tw_last_error());
        cr_assert_str_eq(L.name, names[i]);
        cr_assert(strstr(L.source, "mlcommons/inference @ "), "%s names its repository", names[i]);
        cr_assert_gt(strlen(L.stand_in), 40, "%s says what is a stand-in", names[i]);
        char *text;
        size_t n;
        cr_assert_eq(tw_read_file(L.origin, &text, &n), TW_OK);
        json_t *root = json_loads(text, 0, NULL);
        free(text);
        json_t *cited = json_object_get(root, "cited");
        cr_assert(json_is_object(cited), "%s has a cited block", names[i]);
        double mi, mo;
        tw_loadgen_lengths_mean(&L, &mi, &mo);
        json_t *m = json_object_get(cited, "output_mean_tokens");
        if (m)
            cr_assert_lt(fabs(mo - json_number_value(m)), 1e-6, "%s output mean %.6f", names[i],
                         mo);
        int imax, omax;
        int64_t tmax;
        tw_loadgen_lengths_max(&L, &imax, &omax, &tmax);
        json_t *om = json_object_get(cited, "output_max_tokens");
        cr_assert(json_is_integer(om));
        cr_assert_eq(omax, json_integer_value(om), "%s output max", names[i]);
        json_t *im = json_object_get(cited, "input_max_tokens");
        if (im) cr_assert_eq(imax, json_integer_value(im), "%s input max", names[i]);
        json_decref(root);
        tw_loadgen_lengths_free(&L);
    }
}

/* The limits the issue quotes (llama2-70b.Server.ttft_latency = 2000) and the others, by both
 * model spellings; a file whose figure disagrees with its quoted line is refused. */
Test(serve_loadgen, mlperf_limits_from_mlperf_conf) {
    tw_serve_limits L;
    cr_assert_eq(tw_serve_limits_load(NULL, "llama2-70b", "server", &L), TW_OK, "%s",
                 tw_last_error());
    cr_assert_float_eq(L.ttft_s, 2.0, 1e-12);
    cr_assert_float_eq(L.tpot_s, 0.2, 1e-12);
    cr_assert_float_eq(L.percentile, 99.0, 0);
    cr_assert_float_eq(L.min_duration_s, 600.0, 0);
    cr_assert(strstr(L.source, "mlcommons/inference loadgen/mlperf.conf @ b66003e10e2d"), "%s",
              L.source);
    cr_assert_eq(tw_serve_limits_load(NULL, "llama-2-70b", "interactive", &L), TW_OK);
    cr_assert_str_eq(L.conf_model, "llama2-70b-interactive");
    cr_assert_float_eq(L.ttft_s, 0.45, 1e-12);
    cr_assert_float_eq(L.tpot_s, 0.04, 1e-12);
    cr_assert_eq(tw_serve_limits_load(NULL, "llama3_1-405b", "server", &L), TW_OK);
    cr_assert_float_eq(L.ttft_s, 6.0, 1e-12);
    cr_assert_float_eq(L.tpot_s, 0.175, 1e-12);
    cr_assert_eq(tw_serve_limits_load(NULL, "llama-3.1-8b", "interactive", &L), TW_OK);
    cr_assert_float_eq(L.ttft_s, 0.5, 1e-12);
    cr_assert_float_eq(L.tpot_s, 0.03, 1e-12);
    cr_assert_eq(tw_serve_limits_load(NULL, "deepseek-r1", "interactive", &L), TW_OK);
    cr_assert_float_eq(L.tpot_s, 0.015, 1e-12);
    cr_assert_eq(tw_serve_limits_load(NULL, "mixtral-8x7b", "interactive", &L), TW_ERR_INVALID,
                 "mlperf.conf has no mixtral interactive entry");
    cr_assert(strstr(tw_last_error(), "llama2-70b/server"), "the error lists what exists");
    cr_assert_eq(tw_serve_limits_load(NULL, "llama-3.2-1b", "server", &L), TW_ERR_INVALID);

    /* tamper a copy: the figure no longer matches its quoted line */
    char path[1024], *text;
    size_t n;
    cr_assert_eq(tw_config_path("serving/mlperf-limits.json", path, sizeof path), TW_OK);
    cr_assert_eq(tw_read_file(path, &text, &n), TW_OK);
    char *at = strstr(text, "\"tpot_ms\": 200");
    cr_assert(at);
    memcpy(at, "\"tpot_ms\": 300", 14);
    char tmp[] = "/tmp/tw_limits_XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cr_assert_eq(tw_serve_limits_load(tmp, "llama2-70b", "server", &L), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "quoted lines"), "%s", tw_last_error());
    remove(tmp);
}
