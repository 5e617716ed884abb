/* The arithmetic of `tokwatt compare` against hand calculations written out here: per-system and
 * per-accelerator throughput, tokens per joule (from J/token, or from rated watts), ratios, and
 * the significance rule (|change of medians| > the larger of the two (max - min) ranges), on the
 * hand-written fixtures in tests/data/compare/ and on random spreads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/tw_compare.h"
#include "tw_test_util.h"
#include "tw_util.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

static tw_published_row row_of(tw_pub_metric m, double value, double high, int count,
                               double rated_w) {
    tw_published_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "hand");
    r.metric = m;
    r.value = value;
    r.value_high = high;
    r.count = count;
    r.rated_w = rated_w;
    return r;
}

Test(compare, published_system_figure_per_accelerator_and_tokens_per_joule) {
    /* 24,525 tokens/s on 8 accelerators of 700 W: 3,065.625 per accelerator, 4.3794642857 /J */
    tw_published_row r = row_of(TW_PUB_TPS_SYSTEM, 24525, 24525, 8, 700);
    tw_pub_figures f;
    cr_assert_eq(tw_compare_published_figures(&r, &f), TW_OK);
    cr_assert_eq(f.system_tps, 24525);
    cr_assert_lt(REL(f.per_accel_tps, 3065.625), 1e-15);
    cr_assert_lt(REL(f.tokens_per_j_low, 3065.625 / 700), 1e-15);
    cr_assert_lt(REL(f.tokens_per_j_low, 4.379464285714286), 1e-14);
    cr_assert_eq(f.tokens_per_j_low, f.tokens_per_j_high);
    cr_assert(f.tokens_per_j_from_rating);

    /* a per-accelerator figure: 1,234.5 on 6 accelerators is 7,407 per system */
    r = row_of(TW_PUB_TPS_PER_ACCEL, 1234.5, 1234.5, 6, 350);
    cr_assert_eq(tw_compare_published_figures(&r, &f), TW_OK);
    cr_assert_lt(REL(f.system_tps, 7407.0), 1e-15);
    cr_assert_lt(REL(f.tokens_per_j_low, 1234.5 / 350), 1e-15);

    /* an energy range: 0.12 to 0.20 J/token is 5 to 8.333... tokens/J, no throughput */
    r = row_of(TW_PUB_J_PER_TOKEN, 0.12, 0.20, 1, 700);
    cr_assert_eq(tw_compare_published_figures(&r, &f), TW_OK);
    cr_assert_lt(REL(f.tokens_per_j_low, 5.0), 1e-14);
    cr_assert_lt(REL(f.tokens_per_j_high, 25.0 / 3.0), 1e-14);
    cr_assert(isnan(f.system_tps) && isnan(f.per_accel_tps));
    cr_assert(!f.tokens_per_j_from_rating);

    r = row_of(TW_PUB_TPS_SYSTEM, 100, 100, 0, 700);
    cr_assert_neq(tw_compare_published_figures(&r, &f), TW_OK);
}

Test(compare, measured_figures_and_ratios_on_the_fixture) {
    tw_result_file f;
    cr_assert_eq(tw_result_file_load(TW_SOURCE_DIR "/tests/data/compare/base.json", &f), TW_OK,
                 "%s", tw_last_error());
    cr_assert_eq(f.nrows, 1);
    cr_assert_str_eq(f.kind, "run");
    tw_meas_figures m;
    cr_assert_eq(tw_compare_measured_figures(&f.rows[0], &m), TW_OK);
    /* base.json: 1000 tokens/s on 2 devices, 2.5 tokens/J */
    cr_assert_eq(m.system_tps, 1000);
    cr_assert_eq(m.per_accel_tps, 500);
    cr_assert_eq(m.tokens_per_j, 2.5);
    /* against MLPerf's 24,525 on 8: 1000 / 24525 per system, 500 / 3065.625 per accelerator */
    cr_assert_lt(REL(tw_compare_ratio(m.system_tps, 24525), 0.040774719673802244), 1e-14);
    cr_assert_lt(REL(tw_compare_ratio(m.per_accel_tps, 3065.625), 0.16309887869520898), 1e-14);
    /* against 4.3794642857 tokens/J: 2.5 * 700 / 3065.625 */
    cr_assert_lt(REL(tw_compare_ratio(m.tokens_per_j, 3065.625 / 700), 0.5708460754332314), 1e-14);
    cr_assert(isnan(tw_compare_ratio(1.0, NAN)));
    cr_assert(isnan(tw_compare_ratio(1.0, 0.0)));
    cr_assert(f.rows[0].energy_assumed);
    cr_assert_eq(f.rows[0].sp_e2e.n, 3);
    cr_assert_eq(f.rows[0].sp_e2e.min, 980);
    cr_assert_eq(f.rows[0].w_per_device, 100);
    tw_result_file_free(&f);
}

Test(compare, significance_on_the_fixtures) {
    tw_result_file a, b;
    cr_assert_eq(tw_result_file_load(TW_SOURCE_DIR "/tests/data/compare/base.json", &a), TW_OK);
    cr_assert_eq(tw_result_file_load(TW_SOURCE_DIR "/tests/data/compare/new.json", &b), TW_OK);
    tw_diff d;
    /* e2e: 1000 [980, 1020] -> 1100 [1090, 1110]: change 100, noise max(40, 20) = 40 */
    cr_assert_eq(tw_compare_diff(&a.rows[0].sp_e2e, &b.rows[0].sp_e2e, &d), TW_OK);
    cr_assert_eq(d.delta, 100);
    cr_assert_lt(REL(d.rel, 0.1), 1e-15);
    cr_assert_eq(d.noise, 40);
    cr_assert_eq(d.sig, TW_SIG_YES);
    /* decode: 500 [490, 510] -> 505 [495, 515]: change 5 within noise 20 */
    cr_assert_eq(tw_compare_diff(&a.rows[0].sp_decode, &b.rows[0].sp_decode, &d), TW_OK);
    cr_assert_eq(d.delta, 5);
    cr_assert_eq(d.noise, 20);
    cr_assert_eq(d.sig, TW_SIG_NO);
    cr_assert(strstr(tw_significance_text(d.sig), "not significant (within run-to-run noise)"));
    tw_result_file_free(&a);
    tw_result_file_free(&b);
}

Test(compare, significance_rule_on_random_spreads) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 37);
    int yes = 0, no = 0;
    for (int i = 0; i < 2000; i++) {
        tw_spread a = {.n = 2 + i % 9}, b = {.n = 2 + i % 5};
        a.median = 100 + 50 * tw_test_uniform(&rng);
        b.median = a.median * (1 + 0.3 * tw_test_uniform(&rng));
        double ra = fabs(20 * tw_test_uniform(&rng)), rb = fabs(20 * tw_test_uniform(&rng));
        a.min = a.median - 0.3 * ra, a.max = a.min + ra;
        b.min = b.median - 0.6 * rb, b.max = b.min + rb;
        tw_diff d;
        cr_assert_eq(tw_compare_diff(&a, &b, &d), TW_OK);
        double noise = ra > rb ? ra : rb, delta = b.median - a.median;
        cr_assert_lt(fabs(d.delta - delta), 1e-12);
        cr_assert_lt(fabs(d.rel - delta / a.median), 1e-12);
        cr_assert_lt(fabs(d.noise - noise), 1e-9);
        if (fabs(fabs(delta) - noise) < 1e-9) continue; /* on the boundary: rounding decides */
        tw_significance want = fabs(delta) > noise ? TW_SIG_YES : TW_SIG_NO;
        cr_assert_eq(d.sig, want, "a %g [%g] b %g [%g]", a.median, ra, b.median, rb);
        yes += want == TW_SIG_YES;
        no += want == TW_SIG_NO;
    }
    cr_assert(yes > 100 && no > 100, "both verdicts exercised (%d, %d)", yes, no);
    /* one repetition on a side: the noise is unknown, never significant */
    tw_spread a = {.n = 1, .median = 10, .min = 10, .max = 10};
    tw_spread b = {.n = 5, .median = 90, .min = 89, .max = 91};
    tw_diff d;
    cr_assert_eq(tw_compare_diff(&a, &b, &d), TW_OK);
    cr_assert_eq(d.sig, TW_SIG_UNKNOWN);
    cr_assert(isnan(d.noise));
    a.median = NAN;
    cr_assert_neq(tw_compare_diff(&a, &b, &d), TW_OK);
}

Test(compare, a_sweep_is_rows_and_a_run_is_one_row) {
    tw_result_file f;
    cr_assert_eq(tw_result_file_load(TW_SOURCE_DIR "/tests/data/compare/sweep.json", &f), TW_OK,
                 "%s", tw_last_error());
    cr_assert_str_eq(f.kind, "sweep");
    cr_assert_eq(f.nrows, 3);
    int batches[3] = {1, 4, 16};
    double e2e[3] = {300, 900, 2000};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(f.rows[i].batch, batches[i]);
        cr_assert_eq(f.rows[i].e2e_tps, e2e[i]);
        /* ceilings and memory come from the file's top level when a row has none */
        cr_assert_eq(f.rows[i].membw_gbps, 5.0);
        cr_assert_eq(f.rows[i].params, 372576);
    }
    tw_result_file_free(&f);
}

Test(compare, refuses_malformed_result_files) {
    char path[] = "/tmp/tw_test_compare_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *fp = fdopen(fd, "w");
    fputs("{\"schema_version\": 1, \"kind\": \"histogram\"}", fp);
    fclose(fp);
    tw_result_file f;
    cr_assert_neq(tw_result_file_load(path, &f), TW_OK);
    cr_assert(strstr(tw_last_error(), "histogram"), "%s", tw_last_error());
    fp = fopen(path, "w");
    fputs("{\"schema_version\": 1, \"kind\": \"sweep\", \"rows\": []}", fp);
    fclose(fp);
    cr_assert_neq(tw_result_file_load(path, &f), TW_OK);
    fp = fopen(path, "w");
    fputs("{\"schema_version\": 1, \"kind\": \"run\", \"scenario\": {\"batch\": 0}, "
          "\"metrics\": {}}",
          fp);
    fclose(fp);
    cr_assert_neq(tw_result_file_load(path, &f), TW_OK);
    remove(path);
}

/* Why a change's significance is unknown: no spread recorded (tokens/J: energy covers all
 * repetitions together) is not "fewer than 2 repetitions". */
Test(compare, unknown_significance_says_why) {
    tw_spread a = {.n = 0, .median = 2.5, .min = NAN, .max = NAN};
    tw_spread b = {.n = 0, .median = 2.75, .min = NAN, .max = NAN};
    tw_diff d;
    cr_assert_eq(tw_compare_diff(&a, &b, &d), TW_OK);
    cr_assert_eq(d.sig, TW_SIG_UNKNOWN);
    cr_assert_str_eq(tw_diff_verdict(&d),
                     "unknown (no per-repetition spread recorded for this metric)");
    tw_spread c = {.n = 1, .median = 3, .min = 3, .max = 3};
    tw_spread e = {.n = 3, .median = 4, .min = 3.9, .max = 4.1};
    cr_assert_eq(tw_compare_diff(&c, &e, &d), TW_OK);
    cr_assert_str_eq(tw_diff_verdict(&d), "unknown (fewer than 2 repetitions)");
}

Test(compare, rows_carry_completeness_cpu_and_host) {
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src);
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/compare/other.json", src);
    tw_result_file f;
    cr_assert_eq(tw_result_file_load(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert_not(f.rows[0].complete);
    cr_assert(strstr(f.rows[0].incomplete_reason, "SIGTERM"), "%s", f.rows[0].incomplete_reason);
    cr_assert_str_eq(f.rows[0].host, "other-host");
    cr_assert(strstr(f.rows[0].cpu_model, "Xeon"));
    tw_result_file_free(&f);
    snprintf(path, sizeof path, "%s/tests/data/compare/base.json", src);
    cr_assert_eq(tw_result_file_load(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert(f.rows[0].complete);
    tw_result_file_free(&f);
}

/* A mixture-of-experts row: its expert parallelism and skew are part of the setup compared, and
 * its active weights (experts.active_params) are what the report's decode intensity multiplies;
 * a dense row's active weights are all of them. */
Test(compare, a_mixture_of_experts_row_carries_ep_skew_and_active_weights) {
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src);
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/compare/base.json", src);
    tw_result_file f;
    cr_assert_eq(tw_result_file_load(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert(f.rows[0].active_params > 0 && f.rows[0].active_params == f.rows[0].params);
    cr_assert(f.rows[0].ep == 0 && isnan(f.rows[0].routing_skew), "a dense row");
    tw_result_file_free(&f);
    json_t *doc = NULL;
    cr_assert_eq(tw_json_load_file(path, &doc), TW_OK, "%s", tw_last_error());
    json_error_t e;
    json_t *x = json_loads("{\"n_experts\": 4, \"experts_per_token\": 2, \"moe_layers\": 1, "
                           "\"active_params\": 1234, \"routing_skew\": 1.5, \"load\": [1, 2, 3, "
                           "4], \"load_per_layer\": [[1, 2, 3, 4]]}",
                           0, &e);
    cr_assert(x, "%s", e.text);
    json_t *sc = json_object_get(doc, "scenario");
    cr_assert(sc, "base.json is a single run");
    json_object_set_new(doc, "experts", x);
    json_object_set_new(sc, "routing_skew", json_real(1.5));
    json_object_set_new(sc, "ep", json_integer(2));
    char tmp[] = "/tmp/tw-test-compare-moe-XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(json_dump_file(doc, tmp, 0), 0);
    json_decref(doc);
    tw_status st = tw_result_file_load(tmp, &f);
    remove(tmp);
    cr_assert_eq(st, TW_OK, "%s", tw_last_error());
    cr_assert_eq(f.rows[0].active_params, 1234.0);
    cr_assert_eq(f.rows[0].ep, 2);
    cr_assert_eq(f.rows[0].routing_skew, 1.5);
    tw_result_file_free(&f);
}
