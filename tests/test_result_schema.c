/* The result schema's reader and writer (harness/result_schema.c): every kept result file
 * (tests/data/results, written by tokwatt before the schema module existed) read into the structs
 * and written back is the same JSON document, value for value; the reader refuses another major
 * version by its number, names the key of a wrong type or an over-long string, and reads a newer
 * minor version's unknown keys without complaint. */
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

/* The first path at which two documents differ ("" when equal). */
static void first_difference(json_t *a, json_t *b, const char *at, char *out, size_t n) {
    if (out[0]) return;
    if (json_typeof(a) != json_typeof(b)) {
        snprintf(out, n, "%s: type %d, written back %d", at, json_typeof(a), json_typeof(b));
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
                snprintf(out, n, "%s: missing when written back", sub);
                return;
            }
            first_difference(v, w, sub, out, n);
        }
        json_object_foreach(b, k, v) if (!json_object_get(a, k)) {
            snprintf(out, n, "%s.%s: added when written back", at, k);
            return;
        }
    } else if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) {
            snprintf(out, n, "%s: %zu elements, written back %zu", at, json_array_size(a),
                     json_array_size(b));
            return;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", at, i);
            first_difference(json_array_get(a, i), json_array_get(b, i), sub, out, n);
        }
    } else if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_ENCODE_ANY), *y = json_dumps(b, JSON_ENCODE_ANY);
        snprintf(out, n, "%s: %s, written back %s", at, x, y);
        free(x);
        free(y);
    }
}

Test(result_schema, every_kept_file_reads_and_writes_back_unchanged) {
    const char *names[] = {"single", "sweep",      "window", "preset",
                           "dump",   "incomplete", "tp2",    "tpsweep"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *path = fixture(names[i]);
        json_t *orig = NULL, *back = NULL;
        cr_assert_eq(tw_json_load_file(path, &orig), TW_OK, "%s", tw_last_error());
        tw_result r;
        cr_assert_eq(tw_result_read_file(path, &r), TW_OK, "%s: %s", names[i], tw_last_error());
        cr_assert_eq(tw_result_to_json(&r, &back), TW_OK, "%s", tw_last_error());
        char diff[1024] = "";
        first_difference(orig, back, names[i], diff, sizeof diff);
        cr_assert_str_eq(diff, "", "%s", diff);
        tw_result_free(&r);
        json_decref(orig);
        json_decref(back);
    }
}

Test(result_schema, structs_hold_the_figures) {
    tw_result r;
    cr_assert_eq(tw_result_read_file(fixture("tp2"), &r), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(r.kind, "run");
    cr_assert_eq(r.nrows, 1);
    const tw_result_row *row = &r.rows[0];
    cr_assert_eq(row->scenario.tp, 2);
    cr_assert_eq(row->scenario.seed, 7);
    cr_assert_eq(row->metrics.decode_bytes_per_step, 688704.0); /* tiny at context 11 */
    cr_assert_eq(row->ranks_state, TW_RANKS_GATHERED);
    cr_assert_eq(row->nranks, 2);
    cr_assert_eq(row->ranks[1].rank, 1);
    cr_assert_eq(row->energy.devices, 1, "two ranks on one host: one power domain");
    cr_assert_eq(row->energy.ranks, 2);
    cr_assert(strstr(row->energy.combined, "counted once"), "%s", row->energy.combined);
    cr_assert_eq(row->energy.e2e.tokens, 10.0);
    cr_assert(row->energy.e2e.has_derived && row->energy.e2e.derived[0]);
    cr_assert_eq(row->token_batch, 1);
    cr_assert_eq(row->token_prompt, 9);
    cr_assert_eq(row->token_gen, 5);
    cr_assert(r.comm.present && r.comm.ranks == 2 && r.comm.nrank_hosts == 2);
    cr_assert_eq(r.roofline.membw_gbps, 10.0);
    cr_assert_str_eq(tw_result_provenance_str(&r, "tool"), "tokwatt");
    tw_result_free(&r);
    cr_assert_eq(tw_result_read_file(fixture("incomplete"), &r), TW_OK, "%s", tw_last_error());
    cr_assert_not(r.complete);
    cr_assert_not(r.rows[0].complete, "a single run's row takes the file's completeness");
    cr_assert(r.interrupted && !strcmp(r.interrupted_signal, "SIGTERM"));
    cr_assert(strstr(r.rows[0].incomplete_reason, "SIGTERM during"));
    tw_result_free(&r);
    cr_assert_eq(tw_result_read_file(fixture("sweep"), &r), TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.nrows, 8);
    cr_assert_str_eq(r.rows[7].scenario.dtype, "fp32");
    cr_assert_eq(r.rows[7].scenario.batch, 3);
    cr_assert_eq(r.rows[0].ranks_state, TW_RANKS_NONE);
    cr_assert_str_eq(r.rows[0].energy.source, "none");
    cr_assert(isnan(r.rows[0].energy.e2e.j_per_token), "no power: J/token unknown, not 0");
    tw_result_free(&r);
}

static tw_status read_text(const char *text, tw_result *r) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert(j, "test JSON: %s", e.text);
    tw_status st = tw_result_from_json(j, "t.json", r);
    json_decref(j);
    return st;
}

#define MIN_RUN                                                                                    \
    "\"kind\": \"run\", \"scenario\": {\"batch\": 2, \"devices\": 1}, \"metrics\": {\"ttft_s\": "  \
    "0.5}"

Test(result_schema, another_major_version_is_refused_by_its_number) {
    tw_result r;
    cr_assert_eq(read_text("{\"schema_version\": 2, " MIN_RUN "}", &r), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "t.json: schema_version 2 is not supported"), "%s",
              tw_last_error());
    cr_assert(strstr(tw_last_error(), "reads schema_version 1"), "%s", tw_last_error());
    cr_assert_eq(read_text("{" MIN_RUN "}", &r), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "no integer schema_version"), "%s", tw_last_error());
    cr_assert_eq(read_text("{\"schema_version\": \"1\", " MIN_RUN "}", &r), TW_ERR_PARSE);
    /* a later minor version: its new keys are not known here, and that is fine */
    cr_assert_eq(
        read_text("{\"schema_version\": 1, \"schema_minor\": 9, \"future\": [1], " MIN_RUN "}", &r),
        TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.schema_minor, 9);
    cr_assert_eq(r.rows[0].metrics.ttft_s.median, 0.5);
    cr_assert(isnan(r.rows[0].metrics.e2e_tokens_per_s.median), "absent: unknown");
    tw_result_free(&r);
}

Test(result_schema, wrong_types_and_long_strings_name_the_key) {
    tw_result r;
    cr_assert_eq(read_text("{\"schema_version\": 1, \"kind\": \"run\", \"scenario\": {\"batch\": "
                           "\"2\"}, \"metrics\": {}}",
                           &r),
                 TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "scenario.batch must be an integer"), "%s", tw_last_error());
    cr_assert_eq(read_text("{\"schema_version\": 1, " MIN_RUN
                           ", \"energy\": {\"e2e\": {\"j_per_token\": \"lots\"}}}",
                           &r),
                 TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "energy.e2e.j_per_token must be a number or null"), "%s",
              tw_last_error());
    char text[2048], label[400];
    memset(label, 'x', 300);
    label[300] = '\0';
    snprintf(text, sizeof text,
             "{\"schema_version\": 1, " MIN_RUN ", \"energy\": {\"label\": \"%s\"}}", label);
    cr_assert_eq(read_text(text, &r), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "energy.label must be at most 255 characters long"), "%s",
              tw_last_error());
    cr_assert_eq(read_text("{\"schema_version\": 1, \"kind\": \"sweep\", \"rows\": [{\"scenario\": "
                           "{\"batch\": 1}, \"metrics\": {}}, 3]}",
                           &r),
                 TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "rows[1] must be an object"), "%s", tw_last_error());
    cr_assert_eq(read_text("{\"schema_version\": 1, \"kind\": \"run\", \"metrics\": {}}", &r),
                 TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "missing \"scenario\" or \"metrics\""), "%s",
              tw_last_error());
}

Test(result_schema, the_writer_refuses_a_run_of_two_rows) {
    tw_result r;
    memset(&r, 0, sizeof r);
    tw_result_row rows[2];
    memset(rows, 0, sizeof rows);
    r.schema_version = 1;
    snprintf(r.kind, sizeof r.kind, "run");
    r.rows = rows;
    r.nrows = 2;
    json_t *j = NULL;
    cr_assert_eq(tw_result_to_json(&r, &j), TW_ERR_INVALID);
    snprintf(r.kind, sizeof r.kind, "histogram");
    cr_assert_eq(tw_result_to_json(&r, &j), TW_ERR_INVALID);
    cr_assert_null(j);
}

/* Schema 1.2: a mixture-of-experts row (the kept single run given an experts block and an
 * expert-parallel scenario by hand) reads into the structs and writes back unchanged; the reader
 * holds the load arrays to n_experts and moe_layers, naming the key. */
#define EXPERTS_BLOCK                                                                              \
    "{\"n_experts\": 4, \"experts_per_token\": 2, \"moe_layers\": 2, \"active_params\": 95256, "   \
    "\"routing_skew\": 1.5, \"load\": [36, 20, 16, 16], \"load_per_layer\": [[16, 12, 10, 6], "    \
    "[20, 8, 6, 10]], \"max_over_mean_load\": 1.6363636363636365, \"decode_experts_per_layer\": "  \
    "2.5, \"decode_experts_per_layer_uniform\": 3.0, \"expert_parallel\": {\"ep\": 2, "            \
    "\"dispatch_s\": 0.25, \"combine_s\": 0.125, \"alltoall_share\": 0.375, \"alltoall_calls\": "  \
    "60, \"alltoall_bytes\": 74752, \"alltoall_algbw_gbps\": 0.5, \"alltoall_busbw_gbps\": 0.25}}"

static json_t *moe_doc(const char *experts) {
    json_t *doc = NULL;
    cr_assert_eq(tw_json_load_file(fixture("single"), &doc), TW_OK, "%s", tw_last_error());
    json_error_t e;
    json_t *x = json_loads(experts, 0, &e);
    cr_assert(x, "test JSON: %s", e.text);
    json_object_set_new(doc, "schema_minor", json_integer(2));
    json_object_set_new(doc, "experts", x);
    json_t *sc = json_object_get(doc, "scenario");
    json_object_set_new(sc, "routing_skew", json_real(1.5));
    json_object_set_new(sc, "devices", json_integer(2));
    json_object_set_new(sc, "ep", json_integer(2));
    return doc;
}

Test(result_schema, experts_and_expert_parallel_read_and_write_back) {
    json_t *doc = moe_doc(EXPERTS_BLOCK), *back = NULL;
    tw_result r;
    cr_assert_eq(tw_result_from_json(doc, "moe.json", &r), TW_OK, "%s", tw_last_error());
    const tw_result_row *row = &r.rows[0];
    cr_assert(row->has_experts);
    const tw_result_experts *x = &row->experts;
    cr_assert(x->n_experts == 4 && x->experts_per_token == 2 && x->moe_layers == 2);
    cr_assert_eq(x->active_params, 95256);
    cr_assert(x->load[0] == 36 && x->load[3] == 16);
    cr_assert(x->load_per_layer[4] == 20 && x->load_per_layer[7] == 10, "layer 1 from index 4");
    cr_assert_eq(x->decode_experts_per_layer, 2.5);
    cr_assert(x->has_ep && x->ep.ep == 2 && x->ep.alltoall_bytes == 74752);
    cr_assert_eq(x->ep.alltoall_calls, 60);
    cr_assert(row->scenario.has_routing_skew && row->scenario.routing_skew == 1.5);
    cr_assert_eq(row->scenario.ep, 2);
    cr_assert_eq(tw_result_to_json(&r, &back), TW_OK, "%s", tw_last_error());
    char diff[1024] = "";
    first_difference(doc, back, "moe", diff, sizeof diff);
    cr_assert_str_eq(diff, "", "%s", diff);
    tw_result_free(&r);
    json_decref(back);
    json_decref(doc);
    /* a dense file has no experts block and no ep: nothing is added on the way back */
    cr_assert_eq(tw_result_read_file(fixture("single"), &r), TW_OK, "%s", tw_last_error());
    cr_assert(!r.rows[0].has_experts && !r.rows[0].scenario.has_routing_skew &&
              r.rows[0].scenario.ep == 0);
    tw_result_free(&r);
}

Test(result_schema, experts_arrays_must_fit_their_counts) {
    const struct {
        const char *experts, *want;
    } c[] = {
        {"{\"n_experts\": 4, \"moe_layers\": 1, \"load\": [1, 2, 3], \"load_per_layer\": [[1, 2, "
         "3, "
         "4]]}",
         "experts.load must be an array of 4 integers"},
        {"{\"n_experts\": 2, \"moe_layers\": 2, \"load\": [1, 2], \"load_per_layer\": [[1, 2]]}",
         "experts.load_per_layer must be an array of moe_layers arrays"},
        {"{\"n_experts\": 2, \"moe_layers\": 1, \"load\": [1, 2.5], \"load_per_layer\": [[1, 2]]}",
         "experts.load must be an array of integers"},
        {"{\"n_experts\": 2, \"moe_layers\": 1, \"load\": [1, 2], \"load_per_layer\": [[1, 2]], "
         "\"expert_parallel\": {\"alltoall_bytes\": \"many\"}}",
         "experts.expert_parallel.alltoall_bytes must be an integer"},
        {"{\"n_experts\": 0, \"moe_layers\": 1}", "experts.n_experts must be at least 1"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        json_t *doc = moe_doc(c[i].experts);
        tw_result r;
        cr_assert_eq(tw_result_from_json(doc, "moe.json", &r), TW_ERR_PARSE, "case %zu read", i);
        cr_assert(strstr(tw_last_error(), c[i].want), "case %zu: %s", i, tw_last_error());
        json_decref(doc);
    }
}
