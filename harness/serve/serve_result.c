/* The serving block of a result file (tw_serve_result.h; every key in doc/RESULTS.md, "serving").
 *
 * The writer emits keys in a fixed order (the per-request records last: they are the bulk). The
 * reader is stricter than the rest of the result reader because the block is new: every key the
 * writer emits must be present (a figure may be null, read as NAN), of its type, and possible
 * (counts >= 0, times ordered, percentiles between min and max). The aggregates are then
 * recomputed from the per-request records with tw_serve_summarize and must agree with the file:
 * a summary that does not follow from its own requests is refused, naming the figure. */
#include "tw_serve_result.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writer ------------------------------------------------------------------------------------
 */

/* A JSON number, or null for NaN and infinities. */
static json_t *tw_sr_num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *tw_sr_dist_json(const tw_serve_dist *d) {
    json_t *j = json_object();
    json_object_set_new(j, "n", json_integer(d->n));
    json_object_set_new(j, "mean", tw_sr_num(d->mean));
    json_object_set_new(j, "std", tw_sr_num(d->std));
    json_object_set_new(j, "min", tw_sr_num(d->min));
    json_object_set_new(j, "max", tw_sr_num(d->max));
    json_object_set_new(j, "median", tw_sr_num(d->median));
    json_object_set_new(j, "p90", tw_sr_num(d->p90));
    json_object_set_new(j, "p95", tw_sr_num(d->p95));
    json_object_set_new(j, "p99", tw_sr_num(d->p99));
    json_object_set_new(j, "p99_loadgen", tw_sr_num(d->p99_loadgen));
    return j;
}

static json_t *tw_sr_limits_json(const tw_serve_limits *l) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(l->model));
    json_object_set_new(j, "conf_model", json_string(l->conf_model));
    json_object_set_new(j, "tokwatt_model", json_string(l->tokwatt_model));
    json_object_set_new(j, "scenario", json_string(l->scenario));
    json_object_set_new(j, "ttft_s", tw_sr_num(l->ttft_s));
    json_object_set_new(j, "tpot_s", tw_sr_num(l->tpot_s));
    json_object_set_new(j, "percentile", tw_sr_num(l->percentile));
    json_object_set_new(j, "min_duration_s", tw_sr_num(l->min_duration_s));
    json_object_set_new(j, "source", json_string(l->source));
    return j;
}

static json_t *tw_sr_summary_json(const tw_serve_summary *s) {
    json_t *j = json_object();
    json_object_set_new(j, "n_measured", json_integer(s->n_measured));
    json_object_set_new(j, "n_warmup_excluded", json_integer(s->n_warmup_excluded));
    json_object_set_new(j, "n_single_token", json_integer(s->n_single_token));
    json_object_set_new(j, "n_preemptions", json_integer(s->n_preemptions));
    json_object_set_new(j, "input_tokens", json_integer(s->input_tokens));
    json_object_set_new(j, "output_tokens", json_integer(s->output_tokens));
    json_object_set_new(j, "t_start_s", tw_sr_num(s->t_start_s));
    json_object_set_new(j, "t_end_s", tw_sr_num(s->t_end_s));
    json_object_set_new(j, "window_s", tw_sr_num(s->window_s));
    json_object_set_new(j, "n_devices", json_integer(s->n_devices));
    json_object_set_new(j, "ttft_s", tw_sr_dist_json(&s->ttft));
    json_object_set_new(j, "tpot_s", tw_sr_dist_json(&s->tpot));
    json_object_set_new(j, "itl_s", tw_sr_dist_json(&s->itl));
    json_object_set_new(j, "e2e_s", tw_sr_dist_json(&s->e2e));
    json_object_set_new(j, "queue_s", tw_sr_dist_json(&s->queue));
    json_object_set_new(j, "request_rps", tw_sr_num(s->request_rps));
    json_object_set_new(j, "output_tokens_per_s", tw_sr_num(s->output_tps));
    json_object_set_new(j, "total_tokens_per_s", tw_sr_num(s->total_tps));
    json_object_set_new(j, "request_rps_per_device", tw_sr_num(s->request_rps_per_device));
    json_object_set_new(j, "output_tokens_per_s_per_device", tw_sr_num(s->output_tps_per_device));
    json_object_set_new(j, "total_tokens_per_s_per_device", tw_sr_num(s->total_tps_per_device));
    if (s->slo_given) {
        json_t *g = json_object(), *slo = json_object();
        /* an objective left out (<= 0 or NAN) is null */
        json_object_set_new(slo, "ttft_s", tw_sr_num(s->slo.ttft_s > 0 ? s->slo.ttft_s : NAN));
        json_object_set_new(slo, "tpot_s", tw_sr_num(s->slo.tpot_s > 0 ? s->slo.tpot_s : NAN));
        json_object_set_new(slo, "e2e_s", tw_sr_num(s->slo.e2e_s > 0 ? s->slo.e2e_s : NAN));
        json_object_set_new(g, "slo", slo);
        json_object_set_new(g, "n_good", json_integer(s->n_good));
        json_object_set_new(g, "request_rps", tw_sr_num(s->goodput_rps));
        json_object_set_new(g, "output_tokens_per_s", tw_sr_num(s->goodput_output_tps));
        json_object_set_new(g, "request_rps_per_device", tw_sr_num(s->goodput_rps_per_device));
        json_object_set_new(g, "output_tokens_per_s_per_device",
                            tw_sr_num(s->goodput_output_tps_per_device));
        json_object_set_new(j, "goodput", g);
    } else {
        json_object_set_new(j, "goodput", json_null());
    }
    if (s->limits_given) {
        json_t *c = json_object();
        json_object_set_new(c, "ttft_pctl_s", tw_sr_num(s->ttft_pctl_s));
        json_object_set_new(c, "tpot_pctl_s", tw_sr_num(s->tpot_pctl_s));
        json_object_set_new(c, "ttft_met", json_boolean(s->ttft_met));
        json_object_set_new(c, "tpot_met", json_boolean(s->tpot_met));
        json_object_set_new(c, "met", json_boolean(s->constraint_met));
        json_object_set_new(c, "min_duration_met", json_boolean(s->min_duration_met));
        json_object_set_new(j, "constraint", c);
    } else {
        json_object_set_new(j, "constraint", json_null());
    }
    return j;
}

static json_t *tw_sr_findrate_json(const tw_findrate_config *c, const tw_findrate_result *f) {
    json_t *j = json_object(), *cj = json_object(), *tr = json_array();
    json_object_set_new(cj, "rate_start_rps", tw_sr_num(c->rate_start_rps));
    json_object_set_new(cj, "rate_min_rps", tw_sr_num(c->rate_min_rps));
    json_object_set_new(cj, "rate_max_rps", tw_sr_num(c->rate_max_rps));
    json_object_set_new(cj, "step", tw_sr_num(c->step));
    json_object_set_new(cj, "decimals", json_integer(c->decimals));
    json_object_set_new(cj, "max_trials", json_integer(c->max_trials));
    json_object_set_new(cj, "min_requests", json_integer(c->min_requests));
    json_object_set_new(j, "config", cj);
    json_object_set_new(j, "verdict", json_string(tw_findrate_verdict_name(f->verdict)));
    json_object_set_new(j, "rate_rps", tw_sr_num(f->rate_rps));
    json_object_set_new(j, "upper_rps", tw_sr_num(f->upper_rps));
    for (int i = 0; i < f->n_trials && i < TW_FINDRATE_MAX_TRIALS; i++) {
        const tw_findrate_trial *t = &f->trials[i];
        json_t *o = json_object();
        json_object_set_new(o, "rate_rps", tw_sr_num(t->rate_rps));
        json_object_set_new(o, "met", json_boolean(t->outcome.met));
        json_object_set_new(o, "n_requests", json_integer(t->outcome.n_requests));
        json_object_set_new(o, "ttft_pctl_s", tw_sr_num(t->outcome.ttft_pctl_s));
        json_object_set_new(o, "tpot_pctl_s", tw_sr_num(t->outcome.tpot_pctl_s));
        json_object_set_new(o, "goodput_rps", tw_sr_num(t->outcome.goodput_rps));
        json_object_set_new(o, "output_tokens_per_s", tw_sr_num(t->outcome.output_tps));
        json_object_set_new(o, "goodput_output_tokens_per_s",
                            tw_sr_num(t->outcome.goodput_output_tps));
        json_array_append_new(tr, o);
    }
    json_object_set_new(j, "trials", tr);
    return j;
}

json_t *tw_serve_result_to_json(const tw_serve_result *r) {
    json_t *j = json_object();
    if (!j) return NULL;
    json_object_set_new(j, "scenario", json_string(r->scenario));
    json_object_set_new(j, "rate_rps", tw_sr_num(r->rate_rps));
    json_object_set_new(j, "concurrency", json_integer(r->concurrency));
    /* JSON integers are signed 64-bit: a larger seed is written as its decimal string */
    if (r->seed <= (uint64_t)INT64_MAX) {
        json_object_set_new(j, "seed", json_integer((json_int_t)r->seed));
    } else {
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)r->seed);
        json_object_set_new(j, "seed", json_string(s));
    }
    json_object_set_new(j, "lengths", json_string(r->lengths));
    json_object_set_new(j, "lengths_origin", json_string(r->lengths_origin));
    json_object_set_new(j, "requests_asked", json_integer(r->requests_asked));
    json_object_set_new(j, "duration_asked_s", tw_sr_num(r->duration_asked_s));
    json_object_set_new(j, "warmup_requests", json_integer(r->warmup_requests));
    json_object_set_new(j, "step_token_budget", json_integer(r->step_token_budget));
    json_object_set_new(j, "max_batch", json_integer(r->max_batch));
    json_t *kv = json_object();
    json_object_set_new(kv, "block_tokens", json_integer(r->kv_block_tokens));
    json_object_set_new(kv, "blocks", json_integer(r->kv_blocks));
    json_object_set_new(kv, "blocks_peak", json_integer(r->kv_blocks_peak));
    json_object_set_new(kv, "blocks_leaked", json_integer(r->kv_blocks_leaked));
    json_object_set_new(j, "kv_cache", kv);
    json_object_set_new(
        j, "limits", r->summary.limits_given ? tw_sr_limits_json(&r->summary.limits) : json_null());
    json_object_set_new(j, "limits_source", json_string(r->limits_source));
    json_object_set_new(j, "summary", tw_sr_summary_json(&r->summary));
    json_object_set_new(j, "findrate",
                        r->has_findrate ? tw_sr_findrate_json(&r->findrate_config, &r->findrate)
                                        : json_null());
    json_object_set_new(j, "complete", json_boolean(r->complete));
    if (!r->complete)
        json_object_set_new(j, "incomplete_reason", json_string(r->incomplete_reason));
    json_t *rq = json_array();
    for (int64_t i = 0; r->requests && i < r->n_requests; i++) {
        const tw_serve_result_request *q = &r->requests[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer(q->id));
        json_object_set_new(o, "warmup", json_boolean(q->warmup));
        json_object_set_new(o, "arrival_s", tw_sr_num(q->arrival_s));
        json_object_set_new(o, "admit_s", tw_sr_num(q->admit_s));
        json_object_set_new(o, "first_token_s", tw_sr_num(q->first_token_s));
        json_object_set_new(o, "finish_s", tw_sr_num(q->finish_s));
        json_object_set_new(o, "input_tokens", json_integer(q->input_tokens));
        json_object_set_new(o, "output_tokens", json_integer(q->output_tokens));
        json_object_set_new(o, "preemptions", json_integer(q->preemptions));
        json_array_append_new(rq, o);
    }
    json_object_set_new(j, "requests", rq);
    return j;
}

/* ---- reader ------------------------------------------------------------------------------------
 */

/* The reader's state: the file for messages and the first error (later reads are no-ops). */
typedef struct {
    const char *file;
    tw_status st;
} tw_srd;

static int tw_srd_ok(const tw_srd *d) {
    return d->st == TW_OK;
}

static void tw_srd_fail(tw_srd *d, const char *path, const char *key, const char *want) {
    if (d->st) return;
    d->st = TW_ERR(TW_ERR_PARSE, "result %s: %s%s%s must be %s", d->file, path, key[0] ? "." : "",
                   key, want);
}

/* A member that must be present (null allowed or not). */
static json_t *tw_srd_get(tw_srd *d, const json_t *o, const char *path, const char *key,
                          int null_ok) {
    if (!tw_srd_ok(d)) return NULL;
    json_t *v = json_object_get(o, key);
    if (!v) {
        char want[80];
        snprintf(want, sizeof want, "present (the serving block of schema 1.4 has it)");
        tw_srd_fail(d, path, key, want);
        return NULL;
    }
    if (json_is_null(v) && !null_ok) {
        tw_srd_fail(d, path, key, "given (not null)");
        return NULL;
    }
    return json_is_null(v) ? NULL : v;
}

static json_t *tw_srd_obj(tw_srd *d, const json_t *o, const char *path, const char *key,
                          int null_ok) {
    json_t *v = tw_srd_get(d, o, path, key, null_ok);
    if (v && !json_is_object(v)) {
        tw_srd_fail(d, path, key, null_ok ? "an object or null" : "an object");
        return NULL;
    }
    return v;
}

/* A number: null reads as NAN; a finite value must be >= lo (a NAN lo: any). */
static double tw_srd_num(tw_srd *d, const json_t *o, const char *path, const char *key, double lo,
                         int null_ok) {
    json_t *v = tw_srd_get(d, o, path, key, null_ok);
    if (!v) return NAN;
    char want[96];
    if (!json_is_number(v)) {
        snprintf(want, sizeof want, "a number%s", null_ok ? " or null" : "");
        tw_srd_fail(d, path, key, want);
        return NAN;
    }
    double x = json_number_value(v);
    if (!isnan(lo) && !(x >= lo)) {
        snprintf(want, sizeof want, "a number >= %g%s (got %g)", lo, null_ok ? " or null" : "", x);
        tw_srd_fail(d, path, key, want);
        return NAN;
    }
    return x;
}

static int64_t tw_srd_int(tw_srd *d, const json_t *o, const char *path, const char *key, int64_t lo,
                          int64_t hi) {
    json_t *v = tw_srd_get(d, o, path, key, 0);
    if (!v) return lo;
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
    if (!json_is_integer(v) || x < lo || x > hi) {
        char want[96];
        snprintf(want, sizeof want, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        tw_srd_fail(d, path, key, want);
        return lo;
    }
    return x;
}

static int tw_srd_bool(tw_srd *d, const json_t *o, const char *path, const char *key) {
    json_t *v = tw_srd_get(d, o, path, key, 0);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        tw_srd_fail(d, path, key, "true or false");
        return 0;
    }
    return json_is_true(v);
}

static void tw_srd_str(tw_srd *d, const json_t *o, const char *path, const char *key, char *buf,
                       size_t n) {
    buf[0] = '\0';
    json_t *v = tw_srd_get(d, o, path, key, 0);
    if (!v) return;
    if (!json_is_string(v)) {
        tw_srd_fail(d, path, key, "a string");
        return;
    }
    if (json_string_length(v) >= n) {
        char want[64];
        snprintf(want, sizeof want, "at most %zu characters long", n - 1);
        tw_srd_fail(d, path, key, want);
        return;
    }
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
}

#define TW_INT32_MAX 2147483647LL
#define TW_COUNT_MAX ((int64_t)1 << 53)

/* Equal within rounding (the file's figures are the writer's doubles to 17 digits; the recomputed
 * ones are the same arithmetic on the same numbers). NANs are equal to each other. */
static int tw_srd_close(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

static void tw_srd_dist(tw_srd *d, const json_t *o, const char *path, const char *key,
                        tw_serve_dist *out) {
    memset(out, 0, sizeof *out);
    json_t *j = tw_srd_obj(d, o, path, key, 0);
    if (!j) return;
    char p[160];
    snprintf(p, sizeof p, "%s.%s", path, key);
    out->n = tw_srd_int(d, j, p, "n", 0, TW_COUNT_MAX);
    double *f[] = {&out->mean, &out->std, &out->min, &out->max,        &out->median,
                   &out->p90,  &out->p95, &out->p99, &out->p99_loadgen};
    const char *names[] = {"mean", "std", "min", "max",        "median",
                           "p90",  "p95", "p99", "p99_loadgen"};
    for (int i = 0; i < 9; i++) *f[i] = tw_srd_num(d, j, p, names[i], i == 1 ? 0.0 : NAN, 1);
    if (!tw_srd_ok(d)) return;
    for (int i = 0; i < 9; i++) {
        if (out->n == 0 && !isnan(*f[i])) {
            tw_srd_fail(d, p, names[i], "null when n is 0");
            return;
        }
        if (out->n > 0 && isnan(*f[i])) {
            tw_srd_fail(d, p, names[i], "a number when n > 0");
            return;
        }
        /* every location figure lies between min and max */
        double tol = 1e-12 * fmax(1.0, fabs(out->max));
        if (out->n > 0 && i != 1 && (*f[i] < out->min - tol || *f[i] > out->max + tol)) {
            tw_srd_fail(d, p, names[i], "between min and max");
            return;
        }
    }
    if (out->n > 0 && !(out->median <= out->p90 && out->p90 <= out->p95 && out->p95 <= out->p99))
        tw_srd_fail(d, p, "p90", "ordered: median <= p90 <= p95 <= p99");
}

static void tw_srd_limits(tw_srd *d, const json_t *j, const char *p, tw_serve_limits *l) {
    tw_srd_str(d, j, p, "model", l->model, sizeof l->model);
    tw_srd_str(d, j, p, "conf_model", l->conf_model, sizeof l->conf_model);
    tw_srd_str(d, j, p, "tokwatt_model", l->tokwatt_model, sizeof l->tokwatt_model);
    tw_srd_str(d, j, p, "scenario", l->scenario, sizeof l->scenario);
    l->ttft_s = tw_srd_num(d, j, p, "ttft_s", 0, 0);
    l->tpot_s = tw_srd_num(d, j, p, "tpot_s", 0, 0);
    l->percentile = tw_srd_num(d, j, p, "percentile", 0, 0);
    l->min_duration_s = tw_srd_num(d, j, p, "min_duration_s", 0, 0);
    tw_srd_str(d, j, p, "source", l->source, sizeof l->source);
    if (!tw_srd_ok(d)) return;
    if (!(l->ttft_s > 0) || !isfinite(l->ttft_s)) tw_srd_fail(d, p, "ttft_s", "> 0 and finite");
    if (!(l->tpot_s > 0) || !isfinite(l->tpot_s)) tw_srd_fail(d, p, "tpot_s", "> 0 and finite");
    if (!(l->percentile > 0 && l->percentile < 100)) tw_srd_fail(d, p, "percentile", "in (0, 100)");
    if (!isfinite(l->min_duration_s)) tw_srd_fail(d, p, "min_duration_s", "finite");
}

static void tw_srd_summary(tw_srd *d, const json_t *j, const char *p, int limits_given,
                           tw_serve_summary *s) {
    s->n_measured = tw_srd_int(d, j, p, "n_measured", 0, TW_COUNT_MAX);
    s->n_warmup_excluded = tw_srd_int(d, j, p, "n_warmup_excluded", 0, TW_COUNT_MAX);
    s->n_single_token = tw_srd_int(d, j, p, "n_single_token", 0, TW_COUNT_MAX);
    s->n_preemptions = tw_srd_int(d, j, p, "n_preemptions", 0, TW_COUNT_MAX);
    s->input_tokens = tw_srd_int(d, j, p, "input_tokens", 0, TW_COUNT_MAX);
    s->output_tokens = tw_srd_int(d, j, p, "output_tokens", 0, TW_COUNT_MAX);
    s->t_start_s = tw_srd_num(d, j, p, "t_start_s", NAN, 1);
    s->t_end_s = tw_srd_num(d, j, p, "t_end_s", NAN, 1);
    s->window_s = tw_srd_num(d, j, p, "window_s", 0, 1);
    s->n_devices = (int)tw_srd_int(d, j, p, "n_devices", 1, 1 << 20);
    tw_srd_dist(d, j, p, "ttft_s", &s->ttft);
    tw_srd_dist(d, j, p, "tpot_s", &s->tpot);
    tw_srd_dist(d, j, p, "itl_s", &s->itl);
    tw_srd_dist(d, j, p, "e2e_s", &s->e2e);
    tw_srd_dist(d, j, p, "queue_s", &s->queue);
    s->request_rps = tw_srd_num(d, j, p, "request_rps", 0, 1);
    s->output_tps = tw_srd_num(d, j, p, "output_tokens_per_s", 0, 1);
    s->total_tps = tw_srd_num(d, j, p, "total_tokens_per_s", 0, 1);
    s->request_rps_per_device = tw_srd_num(d, j, p, "request_rps_per_device", 0, 1);
    s->output_tps_per_device = tw_srd_num(d, j, p, "output_tokens_per_s_per_device", 0, 1);
    s->total_tps_per_device = tw_srd_num(d, j, p, "total_tokens_per_s_per_device", 0, 1);
    s->goodput_rps = s->goodput_output_tps = s->goodput_rps_per_device =
        s->goodput_output_tps_per_device = NAN;
    s->ttft_pctl_s = s->tpot_pctl_s = NAN;
    char q[160];
    json_t *g = tw_srd_obj(d, j, p, "goodput", 1);
    if (g) {
        snprintf(q, sizeof q, "%s.goodput", p);
        s->slo_given = 1;
        json_t *slo = tw_srd_obj(d, g, q, "slo", 0);
        char qs[192];
        snprintf(qs, sizeof qs, "%s.slo", q);
        if (slo) {
            s->slo.ttft_s = tw_srd_num(d, slo, qs, "ttft_s", 0, 1);
            s->slo.tpot_s = tw_srd_num(d, slo, qs, "tpot_s", 0, 1);
            s->slo.e2e_s = tw_srd_num(d, slo, qs, "e2e_s", 0, 1);
            if (tw_srd_ok(d) && !(s->slo.ttft_s > 0) && !(s->slo.tpot_s > 0) && !(s->slo.e2e_s > 0))
                tw_srd_fail(d, q, "slo", "at least one objective > 0 (else goodput is null)");
        }
        s->n_good = tw_srd_int(d, g, q, "n_good", 0, TW_COUNT_MAX);
        s->goodput_rps = tw_srd_num(d, g, q, "request_rps", 0, 1);
        s->goodput_output_tps = tw_srd_num(d, g, q, "output_tokens_per_s", 0, 1);
        s->goodput_rps_per_device = tw_srd_num(d, g, q, "request_rps_per_device", 0, 1);
        s->goodput_output_tps_per_device =
            tw_srd_num(d, g, q, "output_tokens_per_s_per_device", 0, 1);
        if (tw_srd_ok(d) && s->n_good > s->n_measured)
            tw_srd_fail(d, q, "n_good", "at most summary.n_measured");
    }
    json_t *c = tw_srd_obj(d, j, p, "constraint", 1);
    if (tw_srd_ok(d) && !c != !limits_given)
        tw_srd_fail(d, p, "constraint",
                    "an object exactly when serving.limits is (the constraint is judged against "
                    "them)");
    if (c) {
        snprintf(q, sizeof q, "%s.constraint", p);
        s->limits_given = 1;
        s->ttft_pctl_s = tw_srd_num(d, c, q, "ttft_pctl_s", 0, 1);
        s->tpot_pctl_s = tw_srd_num(d, c, q, "tpot_pctl_s", 0, 1);
        s->ttft_met = tw_srd_bool(d, c, q, "ttft_met");
        s->tpot_met = tw_srd_bool(d, c, q, "tpot_met");
        s->constraint_met = tw_srd_bool(d, c, q, "met");
        s->min_duration_met = tw_srd_bool(d, c, q, "min_duration_met");
        if (tw_srd_ok(d) && s->constraint_met != (s->ttft_met && s->tpot_met))
            tw_srd_fail(d, q, "met", "ttft_met and tpot_met");
    }
    if (!tw_srd_ok(d)) return;
    if (s->n_measured > 0 &&
        (!isfinite(s->t_start_s) || !isfinite(s->t_end_s) || !(s->t_end_s > s->t_start_s) ||
         !tw_srd_close(s->window_s, s->t_end_s - s->t_start_s)))
        tw_srd_fail(d, p, "window_s", "t_end_s - t_start_s, > 0");
}

static const char *const tw_sr_scenarios[] = {"offline", "server", "interactive", "concurrency"};

static void tw_srd_findrate(tw_srd *d, const json_t *j, const char *p, tw_findrate_config *c,
                            tw_findrate_result *f) {
    char q[160];
    snprintf(q, sizeof q, "%s.config", p);
    json_t *cj = tw_srd_obj(d, j, p, "config", 0);
    if (cj) {
        c->rate_start_rps = tw_srd_num(d, cj, q, "rate_start_rps", NAN, 0);
        c->rate_min_rps = tw_srd_num(d, cj, q, "rate_min_rps", NAN, 0);
        c->rate_max_rps = tw_srd_num(d, cj, q, "rate_max_rps", NAN, 0);
        c->step = tw_srd_num(d, cj, q, "step", NAN, 0);
        c->decimals = (int)tw_srd_int(d, cj, q, "decimals", 0, 9);
        c->max_trials = (int)tw_srd_int(d, cj, q, "max_trials", 1, TW_FINDRATE_MAX_TRIALS);
        c->min_requests = tw_srd_int(d, cj, q, "min_requests", 1, TW_COUNT_MAX);
        if (tw_srd_ok(d) && tw_findrate_check(c) != TW_OK) {
            char want[400];
            snprintf(want, sizeof want, "a valid search (%s)", tw_last_error());
            tw_srd_fail(d, q, "", want);
        }
    }
    char verdict[32];
    tw_srd_str(d, j, p, "verdict", verdict, sizeof verdict);
    int v = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(verdict, tw_findrate_verdict_name((tw_findrate_verdict)i))) v = i;
    if (tw_srd_ok(d) && v < 0)
        tw_srd_fail(d, p, "verdict", "one of found, never-meets, at-cap, trials-exhausted");
    f->verdict = (tw_findrate_verdict)(v < 0 ? 0 : v);
    f->rate_rps = tw_srd_num(d, j, p, "rate_rps", 0, 1);
    f->upper_rps = tw_srd_num(d, j, p, "upper_rps", 0, 1);
    json_t *tr = tw_srd_get(d, j, p, "trials", 0);
    if (tr && !json_is_array(tr)) tw_srd_fail(d, p, "trials", "an array");
    if (!tw_srd_ok(d)) return;
    size_t n = json_array_size(tr);
    if (n < 1 || n > (size_t)c->max_trials) {
        tw_srd_fail(d, p, "trials", "an array of 1 to config.max_trials trials");
        return;
    }
    double best_met = NAN, least_failed = NAN;
    for (size_t i = 0; i < n && tw_srd_ok(d); i++) {
        json_t *o = json_array_get(tr, i);
        snprintf(q, sizeof q, "%s.trials[%zu]", p, i);
        if (!json_is_object(o)) {
            tw_srd_fail(d, q, "", "an object");
            return;
        }
        tw_findrate_trial *t = &f->trials[i];
        t->rate_rps = tw_srd_num(d, o, q, "rate_rps", 0, 0);
        t->outcome.met = tw_srd_bool(d, o, q, "met");
        t->outcome.n_requests = tw_srd_int(d, o, q, "n_requests", c->min_requests, TW_COUNT_MAX);
        t->outcome.ttft_pctl_s = tw_srd_num(d, o, q, "ttft_pctl_s", 0, 1);
        t->outcome.tpot_pctl_s = tw_srd_num(d, o, q, "tpot_pctl_s", 0, 1);
        t->outcome.goodput_rps = tw_srd_num(d, o, q, "goodput_rps", 0, 1);
        t->outcome.output_tps = tw_srd_num(d, o, q, "output_tokens_per_s", 0, 1);
        t->outcome.goodput_output_tps = tw_srd_num(d, o, q, "goodput_output_tokens_per_s", 0, 1);
        if (!tw_srd_ok(d)) return;
        if (!(t->rate_rps > 0) || !isfinite(t->rate_rps)) {
            tw_srd_fail(d, q, "rate_rps", "> 0 and finite");
            return;
        }
        f->n_trials++;
        if (t->outcome.met && !(t->rate_rps <= best_met)) best_met = t->rate_rps;
        if (!t->outcome.met && !(t->rate_rps >= least_failed)) least_failed = t->rate_rps;
    }
    /* the search's bracket is its trials': the highest rate that met, the lowest that failed */
    if (!tw_srd_close(f->rate_rps, best_met))
        tw_srd_fail(d, p, "rate_rps", "the highest trial rate that met (null when none did)");
    else if (!tw_srd_close(f->upper_rps, least_failed))
        tw_srd_fail(d, p, "upper_rps", "the lowest trial rate that failed (null when none did)");
    else if (f->verdict == TW_FINDRATE_FOUND && (isnan(f->rate_rps) || isnan(f->upper_rps)))
        tw_srd_fail(d, p, "verdict", "found only with a rate that met and one that failed");
    else if (f->verdict == TW_FINDRATE_NEVER_MEETS && !isnan(f->rate_rps))
        tw_srd_fail(d, p, "verdict", "never-meets only when no trial met");
    else if (f->verdict == TW_FINDRATE_AT_CAP && (isnan(f->rate_rps) || !isnan(f->upper_rps)))
        tw_srd_fail(d, p, "verdict", "at-cap only when every trial met");
}

/* The summary must follow from the records: recomputed (ITL aside: the file keeps no token
 * times) and compared figure by figure. */
static void tw_srd_recompute(tw_srd *d, const tw_serve_result *r) {
    const tw_serve_summary *s = &r->summary;
    int64_t nm = 0, nw = 0, gaps = 0;
    for (int64_t i = 0; i < r->n_requests; i++) {
        if (r->requests[i].warmup)
            nw++;
        else {
            nm++;
            gaps += r->requests[i].output_tokens - 1;
        }
    }
    if (nm != s->n_measured || nw != s->n_warmup_excluded) {
        char want[160];
        snprintf(want, sizeof want,
                 "the requests' counts (%lld measured, %lld warm-up in serving.requests)",
                 (long long)nm, (long long)nw);
        tw_srd_fail(d, "serving.summary", nm != s->n_measured ? "n_measured" : "n_warmup_excluded",
                    want);
        return;
    }
    if (s->itl.n > gaps) {
        tw_srd_fail(d, "serving.summary.itl_s", "n",
                    "at most the measured requests' output tokens - 1, summed");
        return;
    }
    if (nm == 0) {
        if (r->complete)
            tw_srd_fail(d, "serving.summary", "n_measured",
                        "> 0 in a complete run (only an interrupted one may have none)");
        return;
    }
    tw_serve_record *rec = calloc((size_t)r->n_requests, sizeof *rec);
    if (!rec) {
        d->st = TW_ERR(TW_ERR_NOMEM, "result %s: serving", d->file);
        return;
    }
    for (int64_t i = 0; i < r->n_requests; i++) {
        const tw_serve_result_request *q = &r->requests[i];
        rec[i] = (tw_serve_record){.id = q->id,
                                   .warmup = q->warmup,
                                   .arrival_s = q->arrival_s,
                                   .admit_s = q->admit_s,
                                   .first_token_s = q->first_token_s,
                                   .finish_s = q->finish_s,
                                   .input_tokens = q->input_tokens,
                                   .output_tokens = q->output_tokens,
                                   .token_s = NULL,
                                   .preemptions = q->preemptions};
    }
    tw_serve_summary x;
    tw_status st =
        tw_serve_summarize(rec, r->n_requests, s->t_start_s, s->t_end_s, s->n_devices,
                           s->slo_given ? &s->slo : NULL, s->limits_given ? &s->limits : NULL, &x);
    free(rec);
    if (st != TW_OK) {
        char want[400];
        snprintf(want, sizeof want, "consistent with its requests (%s)", tw_last_error());
        tw_srd_fail(d, "serving", "summary", want);
        return;
    }
    struct {
        const char *key;
        double file, again;
    } f[] = {
        {"n_single_token", (double)s->n_single_token, (double)x.n_single_token},
        {"n_preemptions", (double)s->n_preemptions, (double)x.n_preemptions},
        {"input_tokens", (double)s->input_tokens, (double)x.input_tokens},
        {"output_tokens", (double)s->output_tokens, (double)x.output_tokens},
        {"request_rps", s->request_rps, x.request_rps},
        {"output_tokens_per_s", s->output_tps, x.output_tps},
        {"total_tokens_per_s", s->total_tps, x.total_tps},
        {"request_rps_per_device", s->request_rps_per_device, x.request_rps_per_device},
        {"output_tokens_per_s_per_device", s->output_tps_per_device, x.output_tps_per_device},
        {"total_tokens_per_s_per_device", s->total_tps_per_device, x.total_tps_per_device},
        {"goodput.n_good", (double)s->n_good, (double)x.n_good},
        {"goodput.request_rps", s->goodput_rps, x.goodput_rps},
        {"goodput.output_tokens_per_s", s->goodput_output_tps, x.goodput_output_tps},
        {"goodput.request_rps_per_device", s->goodput_rps_per_device, x.goodput_rps_per_device},
        {"goodput.output_tokens_per_s_per_device", s->goodput_output_tps_per_device,
         x.goodput_output_tps_per_device},
        {"constraint.ttft_pctl_s", s->ttft_pctl_s, x.ttft_pctl_s},
        {"constraint.tpot_pctl_s", s->tpot_pctl_s, x.tpot_pctl_s},
        {"constraint.ttft_met", s->ttft_met, x.ttft_met},
        {"constraint.tpot_met", s->tpot_met, x.tpot_met},
        {"constraint.min_duration_met", s->min_duration_met, x.min_duration_met},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!tw_srd_close(f[i].file, f[i].again)) {
            char want[160];
            snprintf(want, sizeof want, "what its requests give (%.17g, the file says %.17g)",
                     f[i].again, f[i].file);
            tw_srd_fail(d, "serving.summary", f[i].key, want);
            return;
        }
    const tw_serve_dist *a[] = {&s->ttft, &s->tpot, &s->e2e, &s->queue};
    const tw_serve_dist *b[] = {&x.ttft, &x.tpot, &x.e2e, &x.queue};
    const char *dn[] = {"ttft_s", "tpot_s", "e2e_s", "queue_s"};
    for (int k = 0; k < 4; k++) {
        const double fa[] = {(double)a[k]->n, a[k]->mean, a[k]->std, a[k]->min, a[k]->max,
                             a[k]->median,    a[k]->p90,  a[k]->p95, a[k]->p99, a[k]->p99_loadgen};
        const double fb[] = {(double)b[k]->n, b[k]->mean, b[k]->std, b[k]->min, b[k]->max,
                             b[k]->median,    b[k]->p90,  b[k]->p95, b[k]->p99, b[k]->p99_loadgen};
        const char *fn[] = {"n",      "mean", "std", "min", "max",
                            "median", "p90",  "p95", "p99", "p99_loadgen"};
        for (int i = 0; i < 10; i++)
            if (!tw_srd_close(fa[i], fb[i])) {
                char path[64], want[160];
                snprintf(path, sizeof path, "serving.summary.%s", dn[k]);
                snprintf(want, sizeof want, "what its requests give (%.17g, the file says %.17g)",
                         fb[i], fa[i]);
                tw_srd_fail(d, path, fn[i], want);
                return;
            }
    }
}

tw_status tw_serve_result_from_json(const json_t *j, const char *file, tw_serve_result *r) {
    memset(r, 0, sizeof *r);
    tw_srd d = {file ? file : "(serving block)", TW_OK};
    const char *p = "serving";
    if (!json_is_object(j))
        return TW_ERR(TW_ERR_PARSE, "result %s: serving must be an object", d.file);
    tw_srd_str(&d, j, p, "scenario", r->scenario, sizeof r->scenario);
    int known = 0;
    for (int i = 0; i < 4; i++) known |= !strcmp(r->scenario, tw_sr_scenarios[i]);
    if (tw_srd_ok(&d) && !known)
        tw_srd_fail(&d, p, "scenario", "one of offline, server, interactive, concurrency");
    r->rate_rps = tw_srd_num(&d, j, p, "rate_rps", 0, 1);
    r->concurrency = (int)tw_srd_int(&d, j, p, "concurrency", 0, TW_INT32_MAX);
    int open_loop = !strcmp(r->scenario, "server") || !strcmp(r->scenario, "interactive");
    if (tw_srd_ok(&d) && open_loop != (r->rate_rps > 0 && isfinite(r->rate_rps)))
        tw_srd_fail(&d, p, "rate_rps", "> 0 for server and interactive, null otherwise");
    if (tw_srd_ok(&d) && !strcmp(r->scenario, "concurrency") != (r->concurrency > 0))
        tw_srd_fail(&d, p, "concurrency", ">= 1 for the concurrency scenario, 0 otherwise");
    json_t *sd = tw_srd_get(&d, j, p, "seed", 0);
    if (sd && json_is_integer(sd) && json_integer_value(sd) >= 0) {
        r->seed = (uint64_t)json_integer_value(sd);
    } else if (sd && json_is_string(sd) && json_string_length(sd) > 0 &&
               json_string_length(sd) <= 20 &&
               strspn(json_string_value(sd), "0123456789") == json_string_length(sd)) {
        r->seed = strtoull(json_string_value(sd), NULL, 10);
    } else if (sd) {
        tw_srd_fail(&d, p, "seed", "an integer >= 0 (or, above 2^63, its decimal string)");
    }
    tw_srd_str(&d, j, p, "lengths", r->lengths, sizeof r->lengths);
    tw_srd_str(&d, j, p, "lengths_origin", r->lengths_origin, sizeof r->lengths_origin);
    r->requests_asked = tw_srd_int(&d, j, p, "requests_asked", 0, TW_COUNT_MAX);
    r->duration_asked_s = tw_srd_num(&d, j, p, "duration_asked_s", 0, 0);
    r->warmup_requests = tw_srd_int(&d, j, p, "warmup_requests", 0, TW_COUNT_MAX);
    r->step_token_budget = (int)tw_srd_int(&d, j, p, "step_token_budget", 1, TW_INT32_MAX);
    r->max_batch = (int)tw_srd_int(&d, j, p, "max_batch", 1, TW_INT32_MAX);
    json_t *kv = tw_srd_obj(&d, j, p, "kv_cache", 0);
    if (kv) {
        const char *q = "serving.kv_cache";
        r->kv_block_tokens = (int)tw_srd_int(&d, kv, q, "block_tokens", 1, TW_INT32_MAX);
        r->kv_blocks = (int)tw_srd_int(&d, kv, q, "blocks", 1, TW_INT32_MAX);
        r->kv_blocks_peak = tw_srd_int(&d, kv, q, "blocks_peak", 0, r->kv_blocks);
        r->kv_blocks_leaked = tw_srd_int(&d, kv, q, "blocks_leaked", 0, r->kv_blocks);
    }
    json_t *lj = tw_srd_obj(&d, j, p, "limits", 1);
    if (lj) tw_srd_limits(&d, lj, "serving.limits", &r->summary.limits);
    tw_srd_str(&d, j, p, "limits_source", r->limits_source, sizeof r->limits_source);
    json_t *sj = tw_srd_obj(&d, j, p, "summary", 0);
    if (sj) tw_srd_summary(&d, sj, "serving.summary", lj != NULL, &r->summary);
    json_t *fj = tw_srd_obj(&d, j, p, "findrate", 1);
    if (fj) {
        r->has_findrate = 1;
        tw_srd_findrate(&d, fj, "serving.findrate", &r->findrate_config, &r->findrate);
    }
    r->complete = tw_srd_bool(&d, j, p, "complete");
    if (!r->complete && tw_srd_ok(&d))
        tw_srd_str(&d, j, p, "incomplete_reason", r->incomplete_reason,
                   sizeof r->incomplete_reason);
    json_t *rq = tw_srd_get(&d, j, p, "requests", 0);
    if (rq && !json_is_array(rq)) tw_srd_fail(&d, p, "requests", "an array");
    if (tw_srd_ok(&d)) {
        size_t n = json_array_size(rq);
        r->requests = calloc(n ? n : 1, sizeof *r->requests);
        if (!r->requests) d.st = TW_ERR(TW_ERR_NOMEM, "result %s: %zu requests", d.file, n);
        for (size_t i = 0; i < n && tw_srd_ok(&d); i++) {
            json_t *o = json_array_get(rq, i);
            char q[64];
            snprintf(q, sizeof q, "serving.requests[%zu]", i);
            if (!json_is_object(o)) {
                tw_srd_fail(&d, q, "", "an object");
                break;
            }
            tw_serve_result_request *x = &r->requests[i];
            x->id = tw_srd_int(&d, o, q, "id", 0, TW_COUNT_MAX);
            x->warmup = tw_srd_bool(&d, o, q, "warmup");
            x->arrival_s = tw_srd_num(&d, o, q, "arrival_s", NAN, 0);
            x->admit_s = tw_srd_num(&d, o, q, "admit_s", x->arrival_s, 0);
            x->first_token_s = tw_srd_num(&d, o, q, "first_token_s", x->admit_s, 0);
            x->finish_s = tw_srd_num(&d, o, q, "finish_s", x->first_token_s, 0);
            x->input_tokens = (int)tw_srd_int(&d, o, q, "input_tokens", 1, TW_INT32_MAX);
            x->output_tokens = (int)tw_srd_int(&d, o, q, "output_tokens", 1, TW_INT32_MAX);
            x->preemptions = (int)tw_srd_int(&d, o, q, "preemptions", 0, TW_INT32_MAX);
            if (tw_srd_ok(&d) && i > 0 && x->id <= r->requests[i - 1].id)
                tw_srd_fail(&d, q, "id", "greater than the previous request's (issue order)");
            if (tw_srd_ok(&d)) r->n_requests++;
        }
    }
    if (tw_srd_ok(&d)) tw_srd_recompute(&d, r);
    if (d.st) tw_serve_result_free(r);
    return d.st;
}

void tw_serve_result_free(tw_serve_result *r) {
    if (!r) return;
    free(r->requests);
    r->requests = NULL;
    r->n_requests = 0;
}
