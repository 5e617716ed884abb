/* The serving block of a result file (harness/serve/serve_result.c, schema 1.4): the kept
 * fixtures (tests/data/results/serving*.json) are what the generator (tests/serve_fixture_gen.c,
 * the simulation driver) writes today; each reads into the structs and writes back as the same
 * document; the struct's figures are the file's (NAN for null); and the reader refuses, naming
 * the key, wrong types, missing keys, impossible values and a summary its own requests do not
 * give. (The fixtures' figures are checked against a float64 recomputation from the requests by
 * tests/cmd/check_serving.py, independent of this C code.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_result_schema.h"
#include "tw_util.h"

static const char *fixture(const char *name) {
    static char path[1024];
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src && *src, "TW_SOURCE_DIR names the source tree (set by ctest)");
    snprintf(path, sizeof path, "%s/tests/data/results/%s.json", src, name);
    return path;
}

/* The first path at which two documents differ ("" when equal); reals within rel (0: exact). */
static void first_difference(json_t *a, json_t *b, const char *at, double rel, char *out,
                             size_t n) {
    if (out[0]) return;
    if (json_is_number(a) && json_is_number(b) && rel > 0) {
        double x = json_number_value(a), y = json_number_value(b);
        if (json_is_integer(a) != json_is_integer(b) ||
            fabs(x - y) > rel * fmax(1e-300, fmax(fabs(x), fabs(y))))
            snprintf(out, n, "%s: %.17g, the other %.17g", at, x, y);
        return;
    }
    if (json_typeof(a) != json_typeof(b)) {
        snprintf(out, n, "%s: type %d, the other %d", at, json_typeof(a), json_typeof(b));
        return;
    }
    char sub[512];
    if (json_is_object(a)) {
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
            snprintf(sub, sizeof sub, "%s.%s", at, k);
            json_t *w = json_object_get(b, k);
            if (!w) {
                snprintf(out, n, "%s: missing in the other", sub);
                return;
            }
            first_difference(v, w, sub, rel, out, n);
        }
        json_object_foreach(b, k, v) if (!json_object_get(a, k)) {
            snprintf(out, n, "%s.%s: only in the other", at, k);
            return;
        }
    } else if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) {
            snprintf(out, n, "%s: %zu elements, the other %zu", at, json_array_size(a),
                     json_array_size(b));
            return;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", at, i);
            first_difference(json_array_get(a, i), json_array_get(b, i), sub, rel, out, n);
        }
    } else if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_ENCODE_ANY), *y = json_dumps(b, JSON_ENCODE_ANY);
        snprintf(out, n, "%s: %s, the other %s", at, x, y);
        free(x);
        free(y);
    }
}

static json_t *load(const char *path) {
    json_t *j = NULL;
    cr_assert_eq(tw_json_load_file(path, &j), TW_OK, "%s", tw_last_error());
    return j;
}

Test(serve_result, kept_fixtures_read_and_write_back_unchanged) {
    const char *names[] = {"serving", "serving-findrate"};
    for (int i = 0; i < 2; i++) {
        json_t *orig = load(fixture(names[i])), *back = NULL;
        tw_result r;
        cr_assert_eq(tw_result_read_file(fixture(names[i]), &r), TW_OK, "%s: %s", names[i],
                     tw_last_error());
        cr_assert_not_null(r.rows[0].serving, "%s: the row's serving block was read", names[i]);
        cr_assert_eq(tw_result_to_json(&r, &back), TW_OK, "%s", tw_last_error());
        char diff[1024] = "";
        first_difference(orig, back, names[i], 0, diff, sizeof diff);
        cr_assert_str_eq(diff, "", "%s", diff);
        /* and the serving block alone, through its own pair of functions */
        json_t *again = tw_serve_result_to_json(r.rows[0].serving);
        cr_assert(json_equal(again, json_object_get(orig, "serving")), "%s: serving", names[i]);
        json_decref(again);
        tw_result_free(&r);
        json_decref(orig);
        json_decref(back);
    }
}

/* The kept files are the generator's output: it runs again and writes the same (provenance, the
 * machine and time it ran on, aside). */
Test(serve_result, kept_fixtures_are_the_generators_output, .timeout = 60) {
    const char *bld = getenv("TW_BUILD_DIR");
    cr_assert(bld && *bld, "TW_BUILD_DIR names the build tree (set by ctest)");
    const char *names[] = {"serving", "serving-findrate"};
    for (int i = 0; i < 2; i++) {
        char out[1200], cmd[4096];
        snprintf(out, sizeof out, "%s/test-results/serve_fixture_%s.json", bld, names[i]);
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s/test-results' && rm -f '%s' && '%s/tests/serve_fixture_gen' %s '%s' "
                 ">/dev/null",
                 bld, out, bld, names[i], out);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        json_t *kept = load(fixture(names[i])), *now = load(out);
        cr_assert_eq(json_object_del(kept, "provenance"), 0);
        cr_assert_eq(json_object_del(now, "provenance"), 0);
        char diff[1024] = "";
        /* 1e-9: the arrival times go through the C library's log() (doc/SERVING.md) */
        first_difference(kept, now, names[i], 1e-9, diff, sizeof diff);
        cr_assert_str_eq(diff, "", "regenerate with: rm %s; %s/tests/serve_fixture_gen %s %s (%s)",
                         fixture(names[i]), bld, names[i], fixture(names[i]), diff);
        json_decref(kept);
        json_decref(now);
    }
}

Test(serve_result, structs_hold_the_files_figures) {
    json_t *j = load(fixture("serving-findrate"));
    json_t *s = json_object_get(j, "serving");
    tw_result r;
    cr_assert_eq(tw_result_read_file(fixture("serving-findrate"), &r), TW_OK, "%s",
                 tw_last_error());
    const tw_serve_result *v = r.rows[0].serving;
    cr_assert_str_eq(v->scenario, "server");
    cr_assert_eq(v->has_findrate, 1);
    json_t *fr = json_object_get(s, "findrate");
    cr_assert_eq(v->findrate.n_trials, (int)json_array_size(json_object_get(fr, "trials")));
    cr_assert_str_eq(tw_findrate_verdict_name(v->findrate.verdict),
                     json_string_value(json_object_get(fr, "verdict")));
    cr_assert_eq(v->findrate.rate_rps, json_real_value(json_object_get(fr, "rate_rps")));
    cr_assert_eq(v->rate_rps, v->findrate.rate_rps, "the measured run is at the rate found");
    json_t *sum = json_object_get(s, "summary");
    cr_assert_eq(v->summary.n_measured, json_integer_value(json_object_get(sum, "n_measured")));
    cr_assert_eq(v->summary.ttft.p99_loadgen,
                 json_real_value(json_object_get(json_object_get(sum, "ttft_s"), "p99_loadgen")));
    json_t *g = json_object_get(sum, "goodput");
    cr_assert_eq(v->summary.slo_given, 1);
    cr_assert_eq(v->summary.goodput_output_tps_per_device,
                 json_real_value(json_object_get(g, "output_tokens_per_s_per_device")));
    cr_assert(isnan(v->summary.slo.e2e_s), "an objective left out (null) reads as NAN");
    cr_assert_eq(v->summary.limits_given, 1);
    cr_assert_eq(v->summary.limits.ttft_s, 2.0, "llama3_1-8b Server: 2000 ms");
    cr_assert_eq(v->summary.limits.tpot_s, 0.1, "llama3_1-8b Server: 100 ms");
    cr_assert_eq(v->n_requests, json_array_size(json_object_get(s, "requests")));
    cr_assert_eq(v->requests[5].finish_s,
                 json_real_value(json_object_get(json_array_get(json_object_get(s, "requests"), 5),
                                                 "finish_s")));
    tw_result_free(&r);
    json_decref(j);
}

/* A seed over 2^63 travels as its decimal string; an absent search is null. */
Test(serve_result, big_seed_and_no_search_write_back) {
    tw_result r;
    cr_assert_eq(tw_result_read_file(fixture("serving"), &r), TW_OK, "%s", tw_last_error());
    tw_serve_result *v = r.rows[0].serving;
    cr_assert_eq(v->has_findrate, 0);
    v->seed = 18446744073709551557ULL;
    json_t *j = tw_serve_result_to_json(v);
    cr_assert_str_eq(json_string_value(json_object_get(j, "seed")), "18446744073709551557");
    cr_assert(json_is_null(json_object_get(j, "findrate")));
    tw_serve_result back;
    cr_assert_eq(tw_serve_result_from_json(j, "mem", &back), TW_OK, "%s", tw_last_error());
    cr_assert_eq(back.seed, 18446744073709551557ULL);
    json_t *j2 = tw_serve_result_to_json(&back);
    cr_assert(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    tw_serve_result_free(&back);
    tw_result_free(&r);
}

/* ---- bad input: each mutation of a kept serving block is refused, naming its key ------------ */

typedef void (*mutate_fn)(json_t *serving);

static json_t *at(json_t *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok(buf, "."); k && o; k = strtok(NULL, ".")) {
        if (json_is_array(o))
            o = json_array_get(o, (size_t)atoi(k));
        else
            o = json_object_get(o, k);
    }
    cr_assert_not_null(o, "test: no %s", path);
    return o;
}

static void set(json_t *s, const char *parent, const char *key, json_t *v) {
    json_t *o = parent[0] ? at(s, parent) : s;
    cr_assert_eq(json_object_set_new(o, key, v), 0);
}

static void refused(const char *file, const char *parent, const char *key, json_t *value,
                    const char *want) {
    json_t *doc = load(fixture(file));
    json_t *s = json_object_get(doc, "serving");
    if (value)
        set(s, parent, key, value);
    else
        cr_assert_eq(json_object_del(parent[0] ? at(s, parent) : s, key), 0);
    tw_result r;
    tw_status st = tw_result_from_json(doc, "bad.json", &r);
    cr_assert_neq(st, TW_OK, "%s.%s was accepted", parent, key);
    cr_assert(strstr(tw_last_error(), want), "%s.%s: wanted '%s' in: %s", parent, key, want,
              tw_last_error());
    json_decref(doc);
}

Test(serve_result, wrong_types_name_the_key) {
    refused("serving", "summary.ttft_s", "p99", json_string("0.2"),
            "serving.summary.ttft_s.p99 must be a number or null");
    refused("serving", "", "scenario", json_integer(1), "serving.scenario must be a string");
    refused("serving", "", "requests", json_object(), "serving.requests must be an array");
    refused("serving", "requests.3", "warmup", json_integer(0),
            "serving.requests[3].warmup must be true or false");
    refused("serving", "summary", "n_measured", json_real(200.0),
            "serving.summary.n_measured must be an integer");
    refused("serving", "kv_cache", "blocks", json_string("8192"),
            "serving.kv_cache.blocks must be an integer");
    refused("serving-findrate", "findrate.trials.2", "met", json_string("yes"),
            "serving.findrate.trials[2].met must be true or false");
    refused("serving", "", "limits", json_string("mlperf"),
            "serving.limits must be an object or null");
}

Test(serve_result, missing_keys_name_the_key) {
    refused("serving", "summary", "tpot_s", NULL, "serving.summary.tpot_s must be present");
    refused("serving", "", "complete", NULL, "serving.complete must be present");
    refused("serving", "requests.0", "finish_s", NULL,
            "serving.requests[0].finish_s must be present");
    refused("serving-findrate", "findrate", "upper_rps", NULL,
            "serving.findrate.upper_rps must be present");
    /* null where a figure must be known */
    refused("serving", "summary.e2e_s", "median", json_null(),
            "serving.summary.e2e_s.median must be a number when n > 0");
    refused("serving", "requests.7", "arrival_s", json_null(),
            "serving.requests[7].arrival_s must be given");
}

Test(serve_result, impossible_values_are_refused) {
    refused("serving", "", "scenario", json_string("burst"),
            "serving.scenario must be one of offline, server, interactive, concurrency");
    refused("serving", "", "rate_rps", json_null(), "serving.rate_rps must be > 0 for server");
    refused("serving", "", "concurrency", json_integer(4),
            "serving.concurrency must be >= 1 for the concurrency scenario, 0 otherwise");
    refused("serving", "summary", "n_devices", json_integer(0),
            "serving.summary.n_devices must be an integer in [1,");
    refused("serving", "requests.4", "first_token_s", json_real(0.0),
            "serving.requests[4].first_token_s must be a number >=");
    refused("serving", "requests.4", "output_tokens", json_integer(0),
            "serving.requests[4].output_tokens must be an integer in [1,");
    refused("serving", "requests.9", "id", json_integer(3),
            "serving.requests[9].id must be greater than the previous");
    refused("serving", "kv_cache", "blocks_peak", json_integer(9000),
            "serving.kv_cache.blocks_peak must be an integer in [0, 8192]");
    refused("serving", "summary.tpot_s", "std", json_real(-1),
            "serving.summary.tpot_s.std must be a number >= 0");
    refused("serving", "summary.ttft_s", "p90", json_real(1e3),
            "serving.summary.ttft_s.p90 must be between min and max");
    refused("serving", "summary", "window_s", json_real(1.0),
            "serving.summary.window_s must be t_end_s - t_start_s");
    refused("serving", "summary.constraint", "met", json_true(),
            "serving.summary.constraint.met must be ttft_met and tpot_met");
    refused("serving", "", "limits", json_null(),
            "serving.summary.constraint must be an object exactly when serving.limits is");
    refused("serving", "limits", "percentile", json_real(100.0),
            "serving.limits.percentile must be in (0, 100)");
    refused("serving", "summary.goodput.slo", "ttft_s", json_real(-2.0),
            "serving.summary.goodput.slo.ttft_s must be a number >= 0");
    refused("serving-findrate", "findrate", "verdict", json_string("maybe"),
            "serving.findrate.verdict must be one of found");
    refused("serving-findrate", "findrate.config", "max_trials", json_integer(65),
            "serving.findrate.config.max_trials must be an integer in [1, 64]");
    refused("serving-findrate", "findrate.config", "rate_min_rps", json_real(1e6),
            "serving.findrate.config must be a valid search (");
    refused("serving-findrate", "findrate", "rate_rps", json_real(18.0),
            "serving.findrate.rate_rps must be the highest trial rate that met");
    refused("serving-findrate", "findrate", "verdict", json_string("never-meets"),
            "serving.findrate.verdict must be never-meets only when no trial met");
    refused("serving-findrate", "findrate.trials.0", "n_requests", json_integer(10),
            "serving.findrate.trials[0].n_requests must be an integer in [200,");
}

/* The summary must be what its own requests give: a changed request, or a changed aggregate,
 * is caught by the recomputation and named. */
Test(serve_result, a_summary_its_requests_do_not_give_is_refused) {
    json_t *doc = load(fixture("serving"));
    json_t *q = at(json_object_get(doc, "serving"), "requests.30");
    double f = json_real_value(json_object_get(q, "finish_s"));
    json_object_set_new(q, "finish_s", json_real(f + 5.0));
    tw_result r;
    cr_assert_neq(tw_result_from_json(doc, "bad.json", &r), TW_OK);
    cr_assert(strstr(tw_last_error(), "serving.summary") &&
                  strstr(tw_last_error(), "what its requests give"),
              "%s", tw_last_error());
    json_decref(doc);
    refused("serving", "summary", "output_tokens_per_s", json_real(1e4),
            "serving.summary.output_tokens_per_s must be what its requests give");
    refused("serving", "summary.goodput", "n_good", json_integer(3),
            "serving.summary.goodput.n_good must be what its requests give");
    refused("serving", "summary.constraint", "ttft_pctl_s", json_real(0.01),
            "serving.summary.constraint.ttft_pctl_s must be what its requests give");
    refused("serving", "summary", "n_measured", json_integer(210),
            "serving.summary.n_measured must be the requests' counts");
    refused("serving", "summary.queue_s", "p99_loadgen", json_real(0.11),
            "serving.summary.queue_s.p99_loadgen must be what its requests give");
}

/* In a sweep, the row is named too. */
Test(serve_result, a_sweep_row_names_its_row) {
    json_t *doc = load(fixture("serving"));
    json_t *row = json_deep_copy(doc);
    const char *top[] = {"schema_version", "schema_minor", "kind",   "complete",
                         "model",          "roofline",     "memory", "provenance"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) json_object_del(row, top[i]);
    json_object_set_new(row, "complete", json_true());
    json_t *bad = json_deep_copy(row);
    json_object_set_new(json_object_get(bad, "serving"), "max_batch", json_integer(0));
    json_t *rows = json_array();
    json_array_append_new(rows, row);
    json_array_append_new(rows, bad);
    json_t *sweep = json_object();
    const char *keep[] = {"schema_version", "schema_minor", "complete",  "model",
                          "roofline",       "memory",       "provenance"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        json_object_set(sweep, keep[i], json_object_get(doc, keep[i]));
    json_object_set_new(sweep, "kind", json_string("sweep"));
    json_object_set_new(sweep, "rows", rows);
    tw_result r;
    cr_assert_neq(tw_result_from_json(sweep, "sweep.json", &r), TW_OK);
    cr_assert(strstr(tw_last_error(), "in rows[1]") &&
                  strstr(tw_last_error(), "serving.max_batch must be an integer in [1,"),
              "%s", tw_last_error());
    /* without the bad row it reads, both rows' blocks owned and freed */
    json_array_remove(rows, 1);
    json_array_append_new(rows, json_deep_copy(row));
    cr_assert_eq(tw_result_from_json(sweep, "sweep.json", &r), TW_OK, "%s", tw_last_error());
    cr_assert(r.rows[0].serving && r.rows[1].serving);
    tw_result_free(&r);
    json_decref(sweep);
    json_decref(doc);
}

/* An interrupted run keeps its finished requests: complete false with its reason reads and
 * writes back; false without a reason is refused. */
Test(serve_result, an_interrupted_block_states_why) {
    json_t *doc = load(fixture("serving"));
    json_t *s = json_object_get(doc, "serving");
    json_object_set_new(s, "complete", json_false());
    tw_result r;
    cr_assert_neq(tw_result_from_json(doc, "cut.json", &r), TW_OK);
    cr_assert(strstr(tw_last_error(), "serving.incomplete_reason must be present"), "%s",
              tw_last_error());
    json_object_set_new(s, "incomplete_reason", json_string("SIGINT after 200 of 400 requests"));
    cr_assert_eq(tw_result_from_json(doc, "cut.json", &r), TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.rows[0].serving->complete, 0);
    cr_assert_str_eq(r.rows[0].serving->incomplete_reason, "SIGINT after 200 of 400 requests");
    json_t *back = tw_serve_result_to_json(r.rows[0].serving);
    cr_assert(json_equal(back, s));
    json_decref(back);
    tw_result_free(&r);
    json_decref(doc);
}
