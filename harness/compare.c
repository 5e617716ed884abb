/* Result files as rows, and the arithmetic of `tokwatt compare` (tw_compare.h). */
#include "tw_compare.h"
#include "tw_devices.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_metrics.h"
#include "tw_project.h"
#include "tw_result_schema.h"
#include "tw_util.h"

static tw_spread tw_spread_of(const tw_stats *s) {
    tw_spread sp = {.n = s->n,
                    .median = s->median,
                    .mean = s->mean,
                    .min = s->min,
                    .max = s->max,
                    .stddev = s->stddev};
    if (!isfinite(sp.median)) sp.n = 0;
    return sp;
}

/* Ceilings from configs/devices.json for a device name (longest "match" wins). A devices.json
 * that is missing or does not parse is an error, never a silent gap. */
static tw_status tw_ceilings_from_devices(tw_run_row *r) {
    if (!r->device[0]) return TW_OK;
    tw_device_entry d;
    int found = 0;
    TW_TRY(tw_devices_lookup(r->device, &d, &found));
    if (found) {
        int fp32 = !strcmp(r->dtype, "fp32");
        double peak = fp32 ? d.peak_fp32_flops : d.peak_bf16_flops;
        if (!(r->peak_gflops > 0) && peak > 0) r->peak_gflops = peak / 1e9;
        if (!(r->membw_gbps > 0) && d.mem_bw_bytes_per_s > 0)
            r->membw_gbps = d.mem_bw_bytes_per_s / 1e9;
        snprintf(r->ceiling_source, sizeof r->ceiling_source, "devices.json: %.90s (rated)",
                 d.name);
    }
    return TW_OK;
}

/* The comparison's view of one row of a result read by the one reader (tw_result_schema.h). */
static tw_status tw_row_view(const tw_result *res, const tw_result_row *row, const char *label,
                             tw_run_row *r) {
    memset(r, 0, sizeof *r);
    const tw_result_scenario *sc = &row->scenario;
    const tw_metrics *m = &row->metrics;
    snprintf(r->label, sizeof r->label, "%s", label);
    snprintf(r->model, sizeof r->model, "%s", sc->model);
    snprintf(r->backend, sizeof r->backend, "%s", sc->backend);
    snprintf(r->dtype, sizeof r->dtype, "%s", sc->dtype);
    snprintf(r->kv_dtype, sizeof r->kv_dtype, "%s", sc->kv_dtype);
    r->batch = sc->batch;
    r->prompt = sc->prompt;
    r->gen = sc->gen;
    r->tp = sc->tp;
    r->devices = sc->devices;
    r->ep = sc->ep;
    r->routing_skew = sc->has_routing_skew ? sc->routing_skew : NAN;
    r->prefill_tps = m->prefill_tokens_per_s.median;
    r->decode_tps = m->decode_tokens_per_s.median;
    r->e2e_tps = m->e2e_tokens_per_s.median;
    r->ttft_s = m->ttft_s.median;
    r->tpot_p50_s = m->tpot_s.p50;
    r->sp_prefill = tw_spread_of(&m->prefill_tokens_per_s);
    r->sp_decode = tw_spread_of(&m->decode_tokens_per_s);
    r->sp_e2e = tw_spread_of(&m->e2e_tokens_per_s);
    r->sp_ttft = tw_spread_of(&m->ttft_s);
    r->sp_tpot = tw_spread_of(&m->tpot_s);
    r->prefill_gflops = m->prefill_gflops;
    r->decode_bw_gbps = m->decode_bandwidth_gbps;
    r->decode_bytes_per_step = m->decode_bytes_per_step;
    r->params = res->memory.params >= 0 ? (double)res->memory.params : NAN;
    r->active_params = row->has_experts && row->experts.active_params > 0
                           ? (double)row->experts.active_params
                           : r->params;
    tw_dtype wd;
    r->bytes_per_weight = tw_dtype_parse(sc->dtype, &wd) == TW_OK ? (double)tw_dtype_size(wd) : 2;
    tw_clear_error();
    r->membw_gbps = res->roofline.membw_gbps;
    r->peak_gflops = res->roofline.peak_gflops;
    if (r->membw_gbps > 0 || r->peak_gflops > 0)
        snprintf(r->ceiling_source, sizeof r->ceiling_source, "result file: %.60s; %.60s",
                 res->roofline.membw_source, res->roofline.peak_source);
    /* the device: the GPU the provenance names, else the CPU */
    snprintf(r->device, sizeof r->device, "%s", tw_result_provenance_str(res, "gpu_name"));
    if (!r->device[0])
        snprintf(r->device, sizeof r->device, "%s", tw_result_provenance_str(res, "cpu_model"));
    snprintf(r->cpu_model, sizeof r->cpu_model, "%s", tw_result_provenance_str(res, "cpu_model"));
    snprintf(r->host, sizeof r->host, "%s", tw_result_provenance_str(res, "host"));
    if (!(r->membw_gbps > 0) || !(r->peak_gflops > 0)) TW_TRY(tw_ceilings_from_devices(r));
    r->complete = row->complete;
    snprintf(r->incomplete_reason, sizeof r->incomplete_reason, "%s", row->incomplete_reason);
    const tw_energy *en = &row->energy;
    r->e2e_j_per_token = en->e2e.j_per_token;
    r->e2e_tokens_per_j = en->e2e.tokens_per_j;
    r->prefill_j_per_token = en->prefill.j_per_token;
    r->decode_j_per_token = en->decode.j_per_token;
    r->w_per_device = en->e2e.mean_power_w_per_device;
    if (!(r->w_per_device > 0))
        r->w_per_device =
            tw_metric_per_device(en->e2e.mean_power_w, en->devices > 0 ? en->devices : 1);
    snprintf(r->energy_source, sizeof r->energy_source, "%s", en->source);
    snprintf(r->energy_label, sizeof r->energy_label, "%s", en->label);
    r->energy_assumed = !row->has_energy || en->assumed || !strcmp(en->source, "assumed");
    tw_project_device dev;
    char note[512];
    r->proj_tokens_per_s = r->proj_watts = NAN;
    if (tw_project_device_from_row(row, label, &dev, note, sizeof note) == TW_OK) {
        r->proj_tokens_per_s = dev.tokens_per_s;
        r->proj_watts = dev.watts;
    } else {
        tw_clear_error(); /* a row without power: no projection point, said by the report */
    }
    r->proj_goodput_tokens_per_s = NAN;
    if (tw_project_row_has_goodput(row)) {
        tw_project_goodput_targets(row, r->goodput_targets, sizeof r->goodput_targets);
        if (tw_project_device_goodput_from_row(row, label, &dev, note, sizeof note) == TW_OK)
            r->proj_goodput_tokens_per_s = dev.tokens_per_s;
        else
            tw_clear_error(); /* no watts, or no request met the targets: the report says */
    }
    return TW_OK;
}

tw_status tw_result_file_load(const char *path, tw_result_file *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%.500s", path);
    const char *base = strrchr(path, '/');
    snprintf(f->name, sizeof f->name, "%s", base ? base + 1 : path);
    tw_result res;
    TW_TRY(tw_result_read_file(path, &res));
    tw_status st = TW_OK;
    snprintf(f->kind, sizeof f->kind, "%s", res.kind);
    snprintf(f->preset, sizeof f->preset, "%s", res.rows[0].scenario.preset);
    f->rows = calloc((size_t)res.nrows, sizeof *f->rows);
    if (!f->rows) st = TW_ERR(TW_ERR_NOMEM, "result %s: out of memory", path);
    for (int i = 0; i < res.nrows && st == TW_OK; i++) {
        char label[96];
        if (!strcmp(res.kind, "run"))
            snprintf(label, sizeof label, "%s", f->name);
        else
            snprintf(label, sizeof label, "%.70s row %d", f->name, i + 1);
        if ((st = tw_row_view(&res, &res.rows[i], label, &f->rows[i])) == TW_OK) {
            /* the serving block moves to the view (freed by tw_result_file_free) */
            f->rows[i].serving = res.rows[i].serving;
            res.rows[i].serving = NULL;
            f->nrows++;
        }
    }
    tw_result_free(&res);
    if (st) tw_result_file_free(f);
    return st;
}

void tw_result_file_free(tw_result_file *f) {
    for (int i = 0; i < f->nrows; i++)
        if (f->rows[i].serving) {
            tw_serve_result_free(f->rows[i].serving);
            free(f->rows[i].serving);
        }
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
    out->serving = r->serving != NULL;
    if (r->serving) {
        /* what MLPerf's Server summary prints as "Completed tokens per second": the output
         * tokens of every measured request over the run (not only those that met the limits) */
        const tw_serve_summary *s = &r->serving->summary;
        out->system_tps = s->output_tps;
        out->per_accel_tps = s->output_tps_per_device;
    }
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
