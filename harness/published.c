/* Loading and checking the published-figures dataset and the scenario presets (tw_published.h). */
#include "tw_published.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"
#include "tw_model.h"

static const char *const tw_metric_names[] = {
    "output_tokens_per_s_per_system", "output_tokens_per_s_per_accelerator", "j_per_output_token"};
static const char *const tw_metric_units[] = {"tokens/s", "tokens/s", "J/token"};

const char *tw_pub_metric_name(tw_pub_metric m) {
    return tw_metric_names[m];
}
const char *tw_pub_metric_unit(tw_pub_metric m) {
    return tw_metric_units[m];
}

/* A required non-empty string field copied into out. */
static tw_status tw_req_str(json_t *o, const char *key, const char *what, char *out, size_t n) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return TW_ERR(TW_ERR_PARSE, "%s: missing or empty \"%s\" (a string is required)", what,
                      key);
    if (json_string_length(v) >= n)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" is longer than %zu characters", what, key, n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return TW_OK;
}

static void tw_opt_str(json_t *o, const char *key, char *out, size_t n) {
    json_t *v = json_object_get(o, key);
    snprintf(out, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* An optional string that must fit: a note cut short would misquote its source. */
static tw_status tw_opt_str_fit(json_t *o, const char *key, const char *what, char *out, size_t n) {
    json_t *v = json_object_get(o, key);
    if (json_is_string(v) && json_string_length(v) >= n)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" is longer than %zu characters", what, key, n - 1);
    tw_opt_str(o, key, out, n);
    return TW_OK;
}

/* An optional positive integer (absent or null: 0). */
static tw_status tw_opt_pos_int(json_t *o, const char *key, const char *what, int *out) {
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v)) return TW_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000000)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" must be a positive integer or null", what, key);
    *out = (int)json_integer_value(v);
    return TW_OK;
}

static tw_status tw_req_pos_int(json_t *o, const char *key, const char *what, int max, int *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" must be an integer in [1, %d]", what, key, max);
    *out = (int)json_integer_value(v);
    return TW_OK;
}

static tw_status tw_req_pos_num(json_t *o, const char *key, const char *what, double *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" must be a finite number > 0", what, key);
    *out = json_number_value(v);
    return TW_OK;
}

/* "latency_limits": {"ttft_ms", "tpot_ms", "percentile", "source"}, optional. Both bounds are
 * numbers > 0 with the percentile they apply at, or both null (a scenario without a bound); the
 * source is always required, so a bound (or its absence) never enters the file unattributed. */
static tw_status tw_parse_limits(json_t *o, const char *what, tw_latency_limits *l) {
    memset(l, 0, sizeof *l);
    json_t *v = json_object_get(o, "latency_limits");
    if (!v) return TW_OK;
    if (!json_is_object(v))
        return TW_ERR(TW_ERR_PARSE,
                      "%s: \"latency_limits\" must be an object (ttft_ms, tpot_ms, percentile, "
                      "source)",
                      what);
    l->given = 1;
    TW_TRY(tw_req_str(v, "source", what, l->source, sizeof l->source));
    json_t *ttft = json_object_get(v, "ttft_ms"), *tpot = json_object_get(v, "tpot_ms");
    int ttft_null = !ttft || json_is_null(ttft), tpot_null = !tpot || json_is_null(tpot);
    if (ttft_null != tpot_null)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: latency_limits gives only one of ttft_ms and tpot_ms (both numbers, or "
                      "both null for a scenario without a bound)",
                      what);
    json_t *pct = json_object_get(v, "percentile");
    if (ttft_null) {
        if (pct && !json_is_null(pct))
            return TW_ERR(TW_ERR_PARSE,
                          "%s: latency_limits.percentile given without ttft_ms and tpot_ms", what);
        return TW_OK;
    }
    TW_TRY(tw_req_pos_num(v, "ttft_ms", what, &l->ttft_ms));
    TW_TRY(tw_req_pos_num(v, "tpot_ms", what, &l->tpot_ms));
    if (!json_is_integer(pct) || json_integer_value(pct) < 1 || json_integer_value(pct) > 100)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: latency_limits.percentile must be an integer in [1, 100] (the "
                      "percentile both bounds apply at)",
                      what);
    l->percentile = (int)json_integer_value(pct);
    l->bounded = 1;
    return TW_OK;
}

tw_status tw_published_parse_row(json_t *row, const char *what, tw_published_row *r) {
    memset(r, 0, sizeof *r);
    if (!json_is_object(row)) return TW_ERR(TW_ERR_PARSE, "%s: not a JSON object", what);
    TW_TRY(tw_req_str(row, "id", what, r->id, sizeof r->id));
    char w[160];
    snprintf(w, sizeof w, "%s (%s)", what, r->id);
    json_t *src = json_object_get(row, "source");
    if (!json_is_object(src))
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"source\" (benchmark, round, submitter, url)", w);
    TW_TRY(tw_req_str(src, "benchmark", w, r->benchmark, sizeof r->benchmark));
    TW_TRY(tw_req_str(src, "round", w, r->round, sizeof r->round));
    TW_TRY(tw_req_str(src, "submitter", w, r->submitter, sizeof r->submitter));
    TW_TRY(tw_req_str(src, "url", w, r->url, sizeof r->url));
    if (strncmp(r->url, "https://", 8) != 0 && strncmp(r->url, "http://", 7) != 0)
        return TW_ERR(TW_ERR_PARSE, "%s: source url \"%s\" is not an http(s) address", w, r->url);
    TW_TRY(tw_req_str(src, "citation", w, r->citation, sizeof r->citation));
    tw_opt_str(src, "division", r->division, sizeof r->division);
    TW_TRY(tw_req_str(row, "verification", w, r->verification, sizeof r->verification));
    json_t *sys = json_object_get(row, "system");
    if (!json_is_object(sys))
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"system\" (accelerator, count, rated power)", w);
    TW_TRY(tw_req_str(sys, "accelerator", w, r->accelerator, sizeof r->accelerator));
    TW_TRY(tw_req_pos_int(sys, "count", w, 1000000, &r->count));
    TW_TRY(tw_req_pos_num(sys, "rated_w_per_accelerator", w, &r->rated_w));
    TW_TRY(tw_req_str(sys, "rated_w_source", w, r->rated_w_source, sizeof r->rated_w_source));
    TW_TRY(tw_req_str(row, "model", w, r->model, sizeof r->model));
    TW_TRY(tw_req_str(row, "precision", w, r->precision, sizeof r->precision));
    TW_TRY(tw_req_str(row, "scenario", w, r->scenario, sizeof r->scenario));
    if (strcmp(r->scenario, "offline") && strcmp(r->scenario, "server") &&
        strcmp(r->scenario, "interactive"))
        return TW_ERR(TW_ERR_PARSE, "%s: scenario \"%s\" is not offline, server or interactive", w,
                      r->scenario);
    TW_TRY(tw_opt_pos_int(row, "batch", w, &r->batch));
    TW_TRY(tw_opt_pos_int(row, "input_tokens", w, &r->input_tokens));
    TW_TRY(tw_opt_pos_int(row, "output_tokens", w, &r->output_tokens));
    TW_TRY(tw_opt_str_fit(row, "lengths_note", w, r->lengths_note, sizeof r->lengths_note));
    if ((!r->input_tokens || !r->output_tokens) && !r->lengths_note[0])
        return TW_ERR(TW_ERR_PARSE,
                      "%s: input_tokens/output_tokens missing and no \"lengths_note\" says why", w);
    char metric[64];
    TW_TRY(tw_req_str(row, "metric", w, metric, sizeof metric));
    int found = 0;
    for (int m = 0; m < 3; m++)
        if (!strcmp(metric, tw_metric_names[m])) {
            r->metric = (tw_pub_metric)m;
            found = 1;
        }
    if (!found)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: metric \"%s\" is not one of output_tokens_per_s_per_system, "
                      "output_tokens_per_s_per_accelerator, j_per_output_token",
                      w, metric);
    TW_TRY(tw_req_str(row, "unit", w, r->unit, sizeof r->unit));
    if (strcmp(r->unit, tw_metric_units[r->metric]))
        return TW_ERR(TW_ERR_PARSE, "%s: unit \"%s\" does not match metric %s (expects \"%s\")", w,
                      r->unit, metric, tw_metric_units[r->metric]);
    TW_TRY(tw_req_pos_num(row, "value", w, &r->value));
    r->value_high = r->value;
    if (json_object_get(row, "value_high")) {
        TW_TRY(tw_req_pos_num(row, "value_high", w, &r->value_high));
        if (r->value_high < r->value)
            return TW_ERR(TW_ERR_PARSE, "%s: value_high %g is below value %g", w, r->value_high,
                          r->value);
    }
    TW_TRY(tw_parse_limits(row, w, &r->limits));
    return TW_OK;
}

tw_status tw_published_parse(json_t *root, const char *what, tw_published_set *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->origin, sizeof out->origin, "%.500s", what);
    json_t *ver = json_object_get(root, "schema_version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return TW_ERR(TW_ERR_PARSE, "%s: schema_version must be 1", what);
    json_t *rows = json_object_get(root, "rows");
    if (!json_is_array(rows) || json_array_size(rows) == 0)
        return TW_ERR(TW_ERR_PARSE, "%s: \"rows\" must be a non-empty array", what);
    if (json_array_size(rows) > TW_PUBLISHED_MAX)
        return TW_ERR(TW_ERR_PARSE, "%s: %zu rows, at most %d", what, json_array_size(rows),
                      TW_PUBLISHED_MAX);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        char w[600];
        snprintf(w, sizeof w, "%s row %zu", what, i + 1);
        TW_TRY(tw_published_parse_row(row, w, &out->rows[i]));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out->rows[j].id, out->rows[i].id))
                return TW_ERR(TW_ERR_PARSE, "%s: id \"%s\" repeats row %zu", w, out->rows[i].id,
                              j + 1);
        out->n++;
    }
    return TW_OK;
}

tw_status tw_published_load(const char *path, tw_published_set *out) {
    char p[1024];
    if (!path) {
        TW_TRY(tw_config_path("published/figures.json", p, sizeof p));
        path = p;
    }
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    tw_status st = tw_published_parse(root, path, out);
    json_decref(root);
    return st == TW_OK ? TW_OK : tw_error_ctx(st, "published figures");
}

tw_status tw_published_find(const tw_published_set *s, const char *id,
                            const tw_published_row **out) {
    char known[2048] = "";
    size_t used = 0;
    for (int i = 0; i < s->n; i++) {
        if (!strcmp(s->rows[i].id, id)) {
            *out = &s->rows[i];
            return TW_OK;
        }
        int w = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", s->rows[i].id);
        if (w > 0 && (size_t)w < sizeof known - used) used += (size_t)w;
    }
    return TW_ERR(TW_ERR_INVALID, "no published figure \"%s\" in %s (known: %s)", id, s->origin,
                  known);
}

/* ---- presets --------------------------------------------------------------------------------- */

static int tw_is_dtype(const char *s) {
    return !strcmp(s, "fp32") || !strcmp(s, "bf16") || !strcmp(s, "fp16");
}

static const char *const tw_shape_keys[] = {"hidden_size",         "intermediate_size",
                                            "num_hidden_layers",   "num_attention_heads",
                                            "num_key_value_heads", "vocab_size"};
#define TW_SHAPE_KEYS (sizeof tw_shape_keys / sizeof tw_shape_keys[0])

tw_status tw_preset_parse_fields(json_t *root, const char *origin, tw_preset *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->origin, sizeof p->origin, "%.500s", origin);
    if (!json_is_object(root)) return TW_ERR(TW_ERR_PARSE, "preset %s: not a JSON object", origin);
    TW_TRY(tw_req_str(root, "name", origin, p->name, sizeof p->name));
    tw_opt_str(root, "description", p->description, sizeof p->description);
    TW_TRY(tw_req_str(root, "model", origin, p->model, sizeof p->model));
    TW_TRY(tw_req_pos_int(root, "batch", origin, 1 << 20, &p->batch));
    TW_TRY(tw_req_pos_int(root, "prompt", origin, 1 << 24, &p->prompt));
    TW_TRY(tw_req_pos_int(root, "gen", origin, 1 << 24, &p->gen));
    TW_TRY(tw_req_pos_int(root, "tp", origin, 4096, &p->tp));
    TW_TRY(tw_req_str(root, "dtype", origin, p->dtype, sizeof p->dtype));
    TW_TRY(tw_req_str(root, "kv_dtype", origin, p->kv_dtype, sizeof p->kv_dtype));
    if (!tw_is_dtype(p->dtype) || !tw_is_dtype(p->kv_dtype))
        return TW_ERR(TW_ERR_PARSE, "preset %s: dtype \"%s\" / kv_dtype \"%s\" not fp32|bf16|fp16",
                      origin, p->dtype, p->kv_dtype);
    tw_opt_str(root, "accelerator", p->accelerator, sizeof p->accelerator);
    TW_TRY(tw_opt_pos_int(root, "accelerator_count", origin, &p->accelerator_count));
    json_t *pub = json_object_get(root, "published");
    if (pub && !json_is_array(pub))
        return TW_ERR(TW_ERR_PARSE, "preset %s: \"published\" must be an array of ids", origin);
    size_t i;
    json_t *v;
    json_array_foreach(pub, i, v) {
        if (!json_is_string(v) || i >= TW_PRESET_MAX_PUBLISHED)
            return TW_ERR(TW_ERR_PARSE, "preset %s: published[%zu] is not a string (or too many)",
                          origin, i);
        snprintf(p->published[i], sizeof p->published[i], "%s", json_string_value(v));
        p->n_published++;
    }
    json_t *cav = json_object_get(root, "caveats");
    if (!json_is_array(cav) || json_array_size(cav) == 0)
        return TW_ERR(TW_ERR_PARSE,
                      "preset %s: \"caveats\" must list what the preset cannot reproduce", origin);
    json_array_foreach(cav, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || i >= TW_PRESET_MAX_CAVEATS)
            return TW_ERR(TW_ERR_PARSE,
                          "preset %s: caveats[%zu] is not a non-empty string (or "
                          "more than %d)",
                          origin, i, TW_PRESET_MAX_CAVEATS);
        snprintf(p->caveats[i], sizeof p->caveats[i], "%s", json_string_value(v));
        p->n_caveats++;
    }
    char w[600];
    snprintf(w, sizeof w, "preset %.500s", origin);
    TW_TRY(tw_parse_limits(root, w, &p->limits));

    json_t *shape = json_object_get(root, "shape");
    if (!json_is_object(shape))
        return TW_ERR(TW_ERR_PARSE, "preset %s: missing \"shape\" (the model shape it mirrors)",
                      origin);
    for (size_t k = 0; k < TW_SHAPE_KEYS; k++)
        if (!json_is_integer(json_object_get(shape, tw_shape_keys[k])))
            return TW_ERR(TW_ERR_PARSE, "preset %s: shape.%s missing or not an integer", origin,
                          tw_shape_keys[k]);
    return TW_OK;
}

tw_status tw_preset_parse(json_t *root, const char *origin, tw_preset *p) {
    TW_TRY(tw_preset_parse_fields(root, origin, p));
    /* The shape the preset was written for must be the model config's shape. */
    json_t *shape = json_object_get(root, "shape");
    tw_model_config cfg;
    tw_status st = tw_model_load(p->model, &cfg);
    if (st) return tw_error_ctx(st, "preset %s: model \"%s\"", origin, p->model);
    /* in tw_shape_keys order */
    const int have[TW_SHAPE_KEYS] = {cfg.hidden,  cfg.intermediate, cfg.n_layers,
                                     cfg.n_heads, cfg.n_kv_heads,   cfg.vocab};
    int max_pos = cfg.max_pos, heads = cfg.n_heads, kv = cfg.n_kv_heads;
    tw_model_free(&cfg);
    for (size_t k = 0; k < TW_SHAPE_KEYS; k++) {
        json_t *x = json_object_get(shape, tw_shape_keys[k]);
        if (json_integer_value(x) != have[k])
            return TW_ERR(TW_ERR_INVALID,
                          "preset %s: shape.%s = %lld but model %s has %d: the preset does not "
                          "describe this model",
                          origin, tw_shape_keys[k], (long long)json_integer_value(x), p->model,
                          have[k]);
    }
    if (heads % p->tp || kv % p->tp)
        return TW_ERR(TW_ERR_INVALID, "preset %s: tp %d does not divide %d heads and %d KV heads",
                      origin, p->tp, heads, kv);
    if (max_pos > 0 && p->prompt + p->gen > max_pos)
        return TW_ERR(TW_ERR_INVALID,
                      "preset %s: prompt %d + gen %d exceeds model %s's %d positions", origin,
                      p->prompt, p->gen, p->model, max_pos);
    return TW_OK;
}

tw_status tw_preset_load(const char *name_or_path, tw_preset *out) {
    char p[1024];
    const char *path = name_or_path;
    size_t len = strlen(name_or_path);
    if (!strchr(name_or_path, '/') && !(len > 5 && !strcmp(name_or_path + len - 5, ".json"))) {
        char rel[256];
        snprintf(rel, sizeof rel, "scenarios/%s.json", name_or_path);
        if (tw_config_path(rel, p, sizeof p) != TW_OK) { /* an unknown name: a bad argument */
            char why[1024];
            snprintf(why, sizeof why, "%s", tw_last_error());
            return TW_ERR(TW_ERR_INVALID, "unknown preset '%s': %s", name_or_path, why);
        }
        path = p;
    }
    json_t *root = NULL;
    tw_status st = tw_json_load_file(path, &root);
    if (st != TW_OK) return tw_error_ctx(st, "preset");
    st = tw_preset_parse(root, path, out);
    json_decref(root);
    return st;
}
