/* The published-figures dataset and the scenario presets: the shipped files pass their checks
 * (every MLPerf row names the official results file it was read from, every model is a config in
 * configs/models, and the figures are the ones read from those files); rows missing a unit, a
 * source, a system or a value are refused, as are a unit that does not match the metric and a
 * note too long to keep whole; a preset whose shape disagrees with its model config, whose tp does
 * not divide the heads, or that lists no caveats is refused. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/tw_model.h"
#include "harness/tw_published.h"

static tw_published_set *load_shipped(void) {
    tw_published_set *s = malloc(sizeof *s);
    cr_assert(s);
    cr_assert_eq(tw_published_load(NULL, s), TW_OK, "%s", tw_last_error());
    return s;
}

Test(published, shipped_dataset_passes_its_schema) {
    tw_published_set *s = load_shipped();
    cr_assert_geq(s->n, 15);
    int mlperf = 0, mlenergy = 0, v41 = 0, v50 = 0, l405 = 0, interactive = 0;
    for (int i = 0; i < s->n; i++) {
        const tw_published_row *r = &s->rows[i];
        cr_assert(r->url[0] && r->unit[0] && r->submitter[0] && r->round[0], "%s", r->id);
        cr_assert_str_eq(r->unit, tw_pub_metric_unit(r->metric), "%s", r->id);
        cr_assert_gt(r->value, 0);
        cr_assert_geq(r->value_high, r->value);
        cr_assert_gt(r->count, 0);
        cr_assert_gt(r->rated_w, 0);
        /* every row's model is one tokwatt can run: a config in configs/models */
        tw_model_config cfg;
        cr_assert_eq(tw_model_load(r->model, &cfg), TW_OK, "%s: %s", r->id, tw_last_error());
        tw_model_free(&cfg);
        /* every figure says how it was checked: an MLPerf row names the official results file it
         * was read from; the rest say they were not re-verified */
        if (!strncmp(r->id, "mlperf-", 7)) {
            cr_assert(strstr(r->url, "https://github.com/mlcommons/inference_results_v") == r->url,
                      "%s: %s", r->id, r->url);
            cr_assert(strstr(r->url, "/mlperf_log_summary.txt"), "%s: %s", r->id, r->url);
            cr_assert(strstr(r->verification, "mlperf_log_summary.txt"), "%s", r->id);
            cr_assert(strstr(r->verification, "Result is : VALID"), "%s", r->id);
            cr_assert(strstr(r->url, r->round), "%s: url is not in the %s repository", r->id,
                      r->round);
            cr_assert_eq(r->metric, TW_PUB_TPS_SYSTEM, "%s", r->id);
            cr_assert_eq(r->count, 8, "%s", r->id);
            mlperf++;
            v41 += !strcmp(r->round, "v4.1");
            v50 += !strcmp(r->round, "v5.0");
            l405 += !strcmp(r->model, "llama-3.1-405b");
            interactive += !strcmp(r->scenario, "interactive");
        } else {
            /* the rest name where they were checked, or say they were not */
            cr_assert(strstr(r->verification, "not re-verified offline") ||
                          (strstr(r->verification, "read 2026-") && strstr(r->url, "https://")),
                      "%s", r->id);
        }
        mlenergy += !strncmp(r->id, "mlenergy-", 9);
    }
    cr_assert_geq(mlperf, 14);
    cr_assert_geq(v41, 4);
    cr_assert_geq(v50, 10);
    cr_assert_geq(l405, 4);
    cr_assert_geq(interactive, 2);
    cr_assert_geq(mlenergy, 1);
    /* figures as read from the results files (rounded to whole tokens/s) */
    const struct {
        const char *id;
        double value;
        int output_tokens;
        const char *scenario;
    } want[] = {
        {"mlperf-v4.1-llama2-70b-offline-h100x8", 24525, 294, "offline"}, /* 24524.9 */
        {"mlperf-v4.1-llama2-70b-server-h100x8", 21606, 294, "server"},   /* 21605.79 */
        {"mlperf-v4.1-llama2-70b-offline-h200x8", 31303, 294, "offline"}, /* 31302.7 */
        {"mlperf-v5.0-llama2-70b-offline-h200x8", 34988, 294, "offline"}, /* 34988.2 */
        {"mlperf-v5.0-llama2-70b-interactive-h200x8", 19424, 294, "interactive"},
        {"mlperf-v5.0-llama3.1-405b-offline-h200x8", 561, 685, "offline"},    /* 560.651 */
        {"mlperf-v5.0-llama3.1-405b-server-h100x8-dell", 277, 685, "server"}, /* 277.12 */
    };
    const tw_published_row *r;
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        cr_assert_eq(tw_published_find(s, want[k].id, &r), TW_OK, "%s", tw_last_error());
        cr_assert_eq(r->value, want[k].value, "%s: %g", want[k].id, r->value);
        cr_assert_eq(r->output_tokens, want[k].output_tokens, "%s", want[k].id);
        cr_assert_str_eq(r->scenario, want[k].scenario, "%s", want[k].id);
        cr_assert_eq(r->input_tokens, 0, "%s: no mean input length was found", want[k].id);
    }
    cr_assert_eq(tw_published_find(s, "mlperf-v5.0-llama3.1-405b-offline-h200x8", &r), TW_OK);
    cr_assert_str_eq(r->model, "llama-3.1-405b");
    cr_assert_str_eq(r->accelerator, "NVIDIA H200-SXM-141GB");
    cr_assert_eq(tw_published_find(s, "mlenergy-llama3.1-8b-h100-b64", &r), TW_OK);
    cr_assert_eq(r->metric, TW_PUB_J_PER_TOKEN);
    cr_assert_eq(r->value, 0.12);
    cr_assert_eq(r->value_high, 0.20);
    cr_assert_neq(tw_published_find(s, "no-such-figure", &r), TW_OK);
    cr_assert(strstr(tw_last_error(), "mlperf-v4.1-llama2-70b-offline-h100x8"),
              "the error lists the known ids: %s", tw_last_error());
    free(s);
}

/* The first shipped row as JSON, to break one field at a time. */
static json_t *first_row(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/published/figures.json", TW_SOURCE_DIR);
    json_t *root = json_load_file(path, 0, NULL);
    cr_assert(root, "cannot read %s", path);
    json_t *row = json_deep_copy(json_array_get(json_object_get(root, "rows"), 0));
    json_decref(root);
    tw_published_row r;
    cr_assert_eq(tw_published_parse_row(row, "row", &r), TW_OK, "%s", tw_last_error());
    return row;
}

static void expect_refused(json_t *row, const char *needle) {
    tw_published_row r;
    cr_assert_neq(tw_published_parse_row(row, "test row", &r), TW_OK, "accepted (%s)", needle);
    cr_assert(strstr(tw_last_error(), needle), "error \"%s\" does not name %s", tw_last_error(),
              needle);
    json_decref(row);
}

Test(published, refuses_rows_missing_unit_source_system_value) {
    json_t *row = first_row();
    json_object_del(row, "unit");
    expect_refused(row, "unit");

    row = first_row();
    json_object_set_new(row, "unit", json_string("tokens/J"));
    expect_refused(row, "unit");

    row = first_row();
    json_object_set_new(row, "unit", json_string(""));
    expect_refused(row, "unit");

    row = first_row();
    json_object_del(row, "source");
    expect_refused(row, "source");

    row = first_row();
    json_object_del(json_object_get(row, "source"), "url");
    expect_refused(row, "url");

    row = first_row();
    json_object_set_new(json_object_get(row, "source"), "url", json_string("mlcommons.org"));
    expect_refused(row, "url");

    row = first_row();
    json_object_del(json_object_get(row, "source"), "submitter");
    expect_refused(row, "submitter");

    row = first_row();
    json_object_del(row, "system");
    expect_refused(row, "system");

    row = first_row();
    json_object_set_new(json_object_get(row, "system"), "count", json_integer(0));
    expect_refused(row, "count");

    row = first_row();
    json_object_del(json_object_get(row, "system"), "rated_w_per_accelerator");
    expect_refused(row, "rated_w_per_accelerator");

    row = first_row();
    json_object_set_new(row, "value", json_real(-3.5));
    expect_refused(row, "value");

    row = first_row();
    json_object_del(row, "value");
    expect_refused(row, "value");

    row = first_row();
    json_object_set_new(row, "metric", json_string("tokens_per_second"));
    expect_refused(row, "metric");

    row = first_row();
    json_object_set_new(row, "scenario", json_string("batch"));
    expect_refused(row, "scenario");

    row = first_row();
    json_object_del(row, "lengths_note");
    expect_refused(row, "lengths_note");

    row = first_row();
    json_object_del(row, "verification");
    expect_refused(row, "verification");

    row = first_row();
    json_object_set_new(row, "value_high", json_real(1.0));
    expect_refused(row, "value_high");

    /* a note too long for the row is refused, not cut short */
    char long_note[1200];
    memset(long_note, 'x', sizeof long_note - 1);
    long_note[sizeof long_note - 1] = 0;
    row = first_row();
    json_object_set_new(row, "lengths_note", json_string(long_note));
    expect_refused(row, "lengths_note");

    row = first_row();
    json_object_set_new(row, "verification", json_string(long_note));
    expect_refused(row, "verification");
}

Test(published, refuses_duplicate_ids_and_wrong_schema) {
    json_t *row = first_row();
    json_t *root = json_pack("{s:i, s:[OO]}", "schema_version", 1, "rows", row, row);
    tw_published_set *s = malloc(sizeof *s);
    cr_assert_neq(tw_published_parse(root, "dup", s), TW_OK);
    cr_assert(strstr(tw_last_error(), "repeats"), "%s", tw_last_error());
    json_object_set_new(root, "schema_version", json_integer(2));
    cr_assert_neq(tw_published_parse(root, "v2", s), TW_OK);
    json_decref(root);
    json_decref(row);
    free(s);
}

/* ---- presets --------------------------------------------------------------------------------- */

Test(preset, every_shipped_preset_loads_and_names_known_figures) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/configs/scenarios", TW_SOURCE_DIR);
    DIR *d = opendir(dir);
    cr_assert(d, "no %s", dir);
    tw_published_set *s = load_shipped();
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
        tw_preset p;
        cr_assert_eq(tw_preset_load(name, &p), TW_OK, "%s: %s", name, tw_last_error());
        cr_assert_str_eq(p.name, name);
        cr_assert_geq(p.n_caveats, 3, "%s lists %d caveats", name, p.n_caveats);
        cr_assert_gt(p.batch, 0);
        cr_assert_gt(p.tp, 0);
        for (int i = 0; i < p.n_published; i++) {
            const tw_published_row *r;
            cr_assert_eq(tw_published_find(s, p.published[i], &r), TW_OK, "%s: %s", name,
                         tw_last_error());
            cr_assert_str_eq(r->model, p.model, "%s mirrors %s but the figure is for %s", name,
                             p.model, r->model);
        }
        n++;
    }
    closedir(d);
    free(s);
    cr_assert_geq(n, 8);
    tw_preset p;
    cr_assert_eq(tw_preset_load("mlperf-llama2-70b-offline-h100x8", &p), TW_OK);
    cr_assert_str_eq(p.model, "llama-2-70b");
    cr_assert_eq(p.tp, 8);
    cr_assert_str_eq(p.dtype, "bf16");
    cr_assert_str_eq(p.kv_dtype, "bf16");
    int fp8 = 0;
    for (int i = 0; i < p.n_caveats; i++) fp8 |= strstr(p.caveats[i], "FP8") != NULL;
    cr_assert(fp8, "the MLPerf preset must say the submissions ran FP8");

    /* the 405B preset mirrors the v5.0 H200 figure at tp 8 */
    cr_assert_eq(tw_preset_load("mlperf-llama3.1-405b-offline-h200x8", &p), TW_OK, "%s",
                 tw_last_error());
    cr_assert_str_eq(p.model, "llama-3.1-405b");
    cr_assert_eq(p.tp, 8);
    cr_assert_eq(p.gen, 685);
    cr_assert_str_eq(p.accelerator, "NVIDIA H200-SXM-141GB");
    cr_assert_eq(p.n_published, 1);
    cr_assert_str_eq(p.published[0], "mlperf-v5.0-llama3.1-405b-offline-h200x8");
}

static json_t *preset_json(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/scenarios/mlperf-llama2-70b-offline-h100x8.json",
             TW_SOURCE_DIR);
    json_t *root = json_load_file(path, 0, NULL);
    cr_assert(root);
    return root;
}

static void preset_refused(json_t *root, const char *needle) {
    tw_preset p;
    cr_assert_neq(tw_preset_parse(root, "test preset", &p), TW_OK, "accepted (%s)", needle);
    cr_assert(strstr(tw_last_error(), needle), "error \"%s\" does not name %s", tw_last_error(),
              needle);
    json_decref(root);
}

Test(preset, refuses_a_shape_that_disagrees_with_the_model) {
    json_t *root = preset_json();
    tw_preset p;
    cr_assert_eq(tw_preset_parse(root, "ok", &p), TW_OK, "%s", tw_last_error());
    json_object_set_new(json_object_get(root, "shape"), "hidden_size", json_integer(8191));
    preset_refused(root, "hidden_size");

    root = preset_json();
    json_object_set_new(json_object_get(root, "shape"), "num_key_value_heads", json_integer(64));
    preset_refused(root, "num_key_value_heads");

    root = preset_json(); /* the 70B shape under the 8B model */
    json_object_set_new(root, "model", json_string("llama-3.1-8b"));
    preset_refused(root, "shape.");

    root = preset_json();
    json_object_del(json_object_get(root, "shape"), "num_hidden_layers");
    preset_refused(root, "num_hidden_layers");

    root = preset_json();
    json_object_del(root, "shape");
    preset_refused(root, "shape");

    root = preset_json(); /* 8 KV heads do not split over 16 ranks... and 64 % 3 != 0 */
    json_object_set_new(root, "tp", json_integer(3));
    preset_refused(root, "tp 3");

    root = preset_json();
    json_object_set_new(root, "prompt", json_integer(4000));
    preset_refused(root, "positions");

    root = preset_json();
    json_object_set_new(root, "caveats", json_array());
    preset_refused(root, "caveats");

    root = preset_json();
    json_object_set_new(root, "dtype", json_string("fp8"));
    preset_refused(root, "dtype");

    root = preset_json();
    json_object_set_new(root, "model", json_string("no-such-model"));
    preset_refused(root, "no-such-model");
}
