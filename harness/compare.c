/* Result files as rows, and the arithmetic of `tokwatt compare` (tw_compare.h). */
#include "tw_compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tw_config.h"
#include "tw_metrics.h"
#include "tw_util.h"

static double tw_num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int tw_int(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static void tw_str(json_t *o, const char *key, char *out, size_t n) {
    json_t *v = json_object_get(o, key);
    snprintf(out, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static tw_spread tw_spread_of(json_t *spread, const char *key) {
    tw_spread s = {0};
    json_t *o = json_object_get(spread, key);
    if (!json_is_object(o)) return s;
    s.n = tw_int(o, "n", 0);
    s.median = tw_num(o, "median");
    s.mean = tw_num(o, "mean");
    s.min = tw_num(o, "min");
    s.max = tw_num(o, "max");
    s.stddev = tw_num(o, "stddev");
    if (!isfinite(s.median)) s.n = 0;
    return s;
}

/* Case-insensitive substring. */
static int tw_contains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (!n) return 0;
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return 1;
    return 0;
}

/* Ceilings from configs/devices.json for a device name (longest "match" wins). A devices.json
 * that is missing or does not parse is an error, never a silent gap. */
static tw_status tw_ceilings_from_devices(tw_run_row *r) {
    char path[1024];
    if (!r->device[0]) return TW_OK;
    TW_TRY(tw_config_path("devices.json", path, sizeof path));
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    json_t *devs = json_object_get(root, "devices"), *d, *best = NULL;
    size_t i, j, best_len = 0;
    json_array_foreach(devs, i, d) {
        json_t *m;
        json_array_foreach(json_object_get(d, "match"), j, m) {
            if (json_is_string(m) && tw_contains(r->device, json_string_value(m)) &&
                json_string_length(m) > best_len) {
                best = d;
                best_len = json_string_length(m);
            }
        }
    }
    if (best) {
        int fp32 = !strcmp(r->dtype, "fp32");
        double peak = tw_num(best, fp32 ? "peak_fp32_flops" : "peak_bf16_flops");
        double bw = tw_num(best, "mem_bw_bytes_per_s");
        char name[96];
        tw_str(best, "name", name, sizeof name);
        if (!(r->peak_gflops > 0) && peak > 0) r->peak_gflops = peak / 1e9;
        if (!(r->membw_gbps > 0) && bw > 0) r->membw_gbps = bw / 1e9;
        snprintf(r->ceiling_source, sizeof r->ceiling_source, "devices.json: %s (rated)", name);
    }
    json_decref(root);
    return TW_OK;
}

/* One row from an object holding scenario, metrics, energy (and optionally roofline, memory). */
static tw_status tw_row_parse(json_t *o, json_t *top, const char *label, tw_run_row *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    json_t *sc = json_object_get(o, "scenario"), *m = json_object_get(o, "metrics");
    if (!json_is_object(sc) || !json_is_object(m))
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"scenario\" or \"metrics\"", label);
    tw_str(sc, "model", r->model, sizeof r->model);
    tw_str(sc, "backend", r->backend, sizeof r->backend);
    tw_str(sc, "dtype", r->dtype, sizeof r->dtype);
    tw_str(sc, "kv_dtype", r->kv_dtype, sizeof r->kv_dtype);
    r->batch = tw_int(sc, "batch", 0);
    r->prompt = tw_int(sc, "prompt", 0);
    r->gen = tw_int(sc, "gen", 0);
    r->tp = tw_int(sc, "tp", 1);
    r->devices = tw_int(sc, "devices", r->tp);
    if (r->batch < 1 || r->devices < 1)
        return TW_ERR(TW_ERR_PARSE, "%s: scenario.batch %d / devices %d must be >= 1", label,
                      r->batch, r->devices);
    r->prefill_tps = tw_num(m, "prefill_tokens_per_s");
    r->decode_tps = tw_num(m, "decode_tokens_per_s");
    r->e2e_tps = tw_num(m, "e2e_tokens_per_s");
    r->ttft_s = tw_num(m, "ttft_s");
    r->tpot_p50_s = tw_num(json_object_get(m, "tpot_s"), "p50");
    json_t *sp = json_object_get(m, "spread");
    r->sp_prefill = tw_spread_of(sp, "prefill_tokens_per_s");
    r->sp_decode = tw_spread_of(sp, "decode_tokens_per_s");
    r->sp_e2e = tw_spread_of(sp, "e2e_tokens_per_s");
    r->sp_ttft = tw_spread_of(sp, "ttft_s");
    r->sp_tpot = tw_spread_of(sp, "tpot_s");
    r->prefill_gflops = tw_num(m, "prefill_gflops");
    r->decode_bw_gbps = tw_num(m, "decode_bandwidth_gbps");
    r->decode_bytes_per_step = tw_num(m, "decode_bytes_per_step");
    json_t *mem = json_object_get(o, "memory");
    if (!mem) mem = json_object_get(top, "memory");
    r->params = tw_num(mem, "params");
    r->bytes_per_weight = !strcmp(r->dtype, "fp32") ? 4 : 2;
    json_t *roof = json_object_get(o, "roofline");
    if (!roof) roof = json_object_get(top, "roofline");
    r->membw_gbps = tw_num(roof, "membw_gbps");
    r->peak_gflops = tw_num(roof, "peak_gflops");
    if (r->membw_gbps > 0 || r->peak_gflops > 0) {
        char a[64], b[64];
        tw_str(roof, "membw_source", a, sizeof a);
        tw_str(roof, "peak_source", b, sizeof b);
        snprintf(r->ceiling_source, sizeof r->ceiling_source, "result file: %s; %s", a, b);
    }
    json_t *prov = json_object_get(top, "provenance");
    tw_str(sc, "device_name", r->device, sizeof r->device);
    if (!r->device[0]) tw_str(prov, "gpu_name", r->device, sizeof r->device);
    if (!r->device[0]) tw_str(prov, "device_name", r->device, sizeof r->device);
    if (!r->device[0]) tw_str(prov, "cpu_model", r->device, sizeof r->device);
    tw_str(prov, "cpu_model", r->cpu_model, sizeof r->cpu_model);
    tw_str(prov, "host", r->host, sizeof r->host);
    if (!(r->membw_gbps > 0) || !(r->peak_gflops > 0)) TW_TRY(tw_ceilings_from_devices(r));
    /* a row of a sweep carries its own completeness; a single run's is at the top */
    json_t *cj = json_object_get(o, "complete");
    if (!cj) cj = json_object_get(top, "complete");
    r->complete = !json_is_false(cj);
    tw_str(json_object_get(o, "incomplete_reason") ? o : top, "incomplete_reason",
           r->incomplete_reason, sizeof r->incomplete_reason);

    json_t *en = json_object_get(o, "energy");
    if (!en) en = json_object_get(top, "energy");
    json_t *e2e = json_object_get(en, "e2e");
    r->e2e_j_per_token = tw_num(e2e, "j_per_token");
    r->e2e_tokens_per_j = tw_num(e2e, "tokens_per_j");
    r->prefill_j_per_token = tw_num(json_object_get(en, "prefill"), "j_per_token");
    r->decode_j_per_token = tw_num(json_object_get(en, "decode"), "j_per_token");
    r->w_per_device = tw_num(e2e, "mean_power_w_per_device");
    if (!(r->w_per_device > 0)) {
        double w = tw_num(e2e, "mean_power_w");
        int nd = tw_int(en, "devices", 1);
        r->w_per_device = tw_metric_per_device(w, nd > 0 ? nd : 1);
    }
    tw_str(en, "source", r->energy_source, sizeof r->energy_source);
    tw_str(en, "label", r->energy_label, sizeof r->energy_label);
    json_t *as = json_object_get(en, "assumed");
    r->energy_assumed = !en || json_is_true(as) || !strcmp(r->energy_source, "assumed");
    return TW_OK;
}

tw_status tw_result_file_load(const char *path, tw_result_file *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%.500s", path);
    const char *base = strrchr(path, '/');
    snprintf(f->name, sizeof f->name, "%s", base ? base + 1 : path);
    json_t *root = NULL;
    tw_status st = tw_json_load_file(path, &root);
    if (st) return tw_error_ctx(st, "result file");
    json_t *ver = json_object_get(root, "schema_version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        st = TW_ERR(TW_ERR_PARSE, "result %s: schema_version must be 1", path);
        goto out;
    }
    tw_str(root, "kind", f->kind, sizeof f->kind);
    tw_str(json_object_get(root, "scenario"), "preset", f->preset, sizeof f->preset);
    if (!strcmp(f->kind, "run")) {
        f->rows = calloc(1, sizeof *f->rows);
        if (!f->rows) {
            st = TW_ERR(TW_ERR_NOMEM, "result %s: out of memory", path);
            goto out;
        }
        f->nrows = 1;
        st = tw_row_parse(root, root, f->name, &f->rows[0]);
    } else if (!strcmp(f->kind, "sweep")) {
        json_t *rows = json_object_get(root, "rows");
        if (!json_is_array(rows) || json_array_size(rows) == 0) {
            st = TW_ERR(TW_ERR_PARSE, "result %s: a sweep needs a non-empty \"rows\" array", path);
            goto out;
        }
        f->rows = calloc(json_array_size(rows), sizeof *f->rows);
        if (!f->rows) {
            st = TW_ERR(TW_ERR_NOMEM, "result %s: out of memory", path);
            goto out;
        }
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            char label[96];
            snprintf(label, sizeof label, "%.70s row %zu", f->name, i + 1);
            if ((st = tw_row_parse(row, root, label, &f->rows[i])) != TW_OK) goto out;
            f->nrows++;
        }
    } else {
        st = TW_ERR(TW_ERR_PARSE, "result %s: kind \"%s\" is neither \"run\" nor \"sweep\"", path,
                    f->kind);
    }
out:
    json_decref(root);
    if (st) tw_result_file_free(f);
    return st;
}

void tw_result_file_free(tw_result_file *f) {
    free(f->rows);
    f->rows = NULL;
    f->nrows = 0;
}

tw_status tw_compare_published_figures(const tw_published_row *r, tw_pub_figures *out) {
    if (r->count < 1 || !(r->value > 0) || !(r->rated_w > 0))
        return TW_ERR(TW_ERR_INVALID, "published row %s: count %d, value %g, rated %g W", r->id,
                      r->count, r->value, r->rated_w);
    out->system_tps = out->per_accel_tps = NAN;
    out->tokens_per_j_from_rating = 0;
    switch (r->metric) {
    case TW_PUB_TPS_SYSTEM:
        out->system_tps = r->value;
        out->per_accel_tps = r->value / r->count;
        break;
    case TW_PUB_TPS_PER_ACCEL:
        out->per_accel_tps = r->value;
        out->system_tps = r->value * r->count;
        break;
    case TW_PUB_J_PER_TOKEN:
        /* The high end of J/token is the low end of tokens/J. */
        out->tokens_per_j_low = 1.0 / r->value_high;
        out->tokens_per_j_high = 1.0 / r->value;
        return TW_OK;
    }
    out->tokens_per_j_low = out->tokens_per_j_high = out->per_accel_tps / r->rated_w;
    out->tokens_per_j_from_rating = 1;
    return TW_OK;
}

tw_status tw_compare_measured_figures(const tw_run_row *r, tw_meas_figures *out) {
    if (r->devices < 1) return TW_ERR(TW_ERR_INVALID, "%s: devices %d", r->label, r->devices);
    out->system_tps = r->e2e_tps;
    out->per_accel_tps = tw_metric_per_device(r->e2e_tps, r->devices);
    out->tokens_per_j = r->e2e_tokens_per_j;
    if (!(out->tokens_per_j > 0) && r->e2e_j_per_token > 0)
        out->tokens_per_j = 1.0 / r->e2e_j_per_token;
    return TW_OK;
}

double tw_compare_ratio(double measured, double published) {
    if (!isfinite(measured) || !isfinite(published) || !(published > 0)) return NAN;
    return measured / published;
}

tw_status tw_compare_diff(const tw_spread *a, const tw_spread *b, tw_diff *out) {
    if (!isfinite(a->median) || !isfinite(b->median))
        return TW_ERR(TW_ERR_INVALID, "compare: a median is missing (%g, %g)", a->median,
                      b->median);
    out->a = a->median;
    out->b = b->median;
    out->delta = b->median - a->median;
    out->rel = a->median != 0 ? out->delta / a->median : NAN;
    out->why_unknown = NULL;
    if (a->n == 0 || b->n == 0 || !isfinite(a->max - a->min) || !isfinite(b->max - b->min)) {
        out->noise = NAN;
        out->sig = TW_SIG_UNKNOWN;
        out->why_unknown = "unknown (no per-repetition spread recorded for this metric)";
        return TW_OK;
    }
    if (a->n < 2 || b->n < 2) {
        out->noise = NAN;
        out->sig = TW_SIG_UNKNOWN;
        out->why_unknown = "unknown (fewer than 2 repetitions)";
        return TW_OK;
    }
    double ra = a->max - a->min, rb = b->max - b->min;
    out->noise = ra > rb ? ra : rb;
    out->sig = fabs(out->delta) > out->noise ? TW_SIG_YES : TW_SIG_NO;
    return TW_OK;
}

const char *tw_significance_text(tw_significance s) {
    switch (s) {
    case TW_SIG_YES:
        return "significant";
    case TW_SIG_NO:
        return "not significant (within run-to-run noise)";
    default:
        return "unknown (no noise figure)";
    }
}

const char *tw_diff_verdict(const tw_diff *d) {
    if (d->sig == TW_SIG_UNKNOWN && d->why_unknown) return d->why_unknown;
    return tw_significance_text(d->sig);
}
