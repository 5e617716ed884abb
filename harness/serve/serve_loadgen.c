/* Load generator: request lengths (fixed, uniform, histogram files) and the arrival process of
 * each scenario (tw_loadgen.h). */
#include "tw_loadgen.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"

/* ---- lengths ------------------------------------------------------------------------------ */

static void tw_len_dist_free(tw_len_dist *d) {
    free(d->bins);
    free(d->cdf);
    d->bins = NULL;
    d->cdf = NULL;
}

void tw_loadgen_lengths_free(tw_loadgen_lengths *L) {
    if (!L) return;
    tw_len_dist_free(&L->input);
    tw_len_dist_free(&L->output);
    free(L->jbins);
    free(L->jcdf);
    L->jbins = NULL;
    L->jcdf = NULL;
}

static int tw_len_ok(long long v) {
    return v >= 1 && v <= TW_LOADGEN_MAX_LEN;
}

tw_status tw_loadgen_lengths_fixed(tw_loadgen_lengths *L, int input_tokens, int output_tokens) {
    memset(L, 0, sizeof *L);
    if (!tw_len_ok(input_tokens) || !tw_len_ok(output_tokens))
        return TW_ERR(TW_ERR_INVALID, "fixed lengths must be in [1, %d] (got input %d, output %d)",
                      TW_LOADGEN_MAX_LEN, input_tokens, output_tokens);
    snprintf(L->name, sizeof L->name, "fixed-%d-%d", input_tokens, output_tokens);
    snprintf(L->origin, sizeof L->origin, "fixed");
    snprintf(L->source, sizeof L->source, "given on the command line");
    snprintf(L->stand_in, sizeof L->stand_in, "every request has the same lengths");
    L->input.kind = L->output.kind = TW_LEN_FIXED;
    L->input.value = input_tokens;
    L->output.value = output_tokens;
    return TW_OK;
}

tw_status tw_loadgen_lengths_uniform(tw_loadgen_lengths *L, int in_lo, int in_hi, int out_lo,
                                     int out_hi) {
    memset(L, 0, sizeof *L);
    if (!tw_len_ok(in_lo) || !tw_len_ok(in_hi) || !tw_len_ok(out_lo) || !tw_len_ok(out_hi) ||
        in_lo > in_hi || out_lo > out_hi)
        return TW_ERR(TW_ERR_INVALID,
                      "uniform lengths need 1 <= lo <= hi <= %d (got input %d..%d, output %d..%d)",
                      TW_LOADGEN_MAX_LEN, in_lo, in_hi, out_lo, out_hi);
    snprintf(L->name, sizeof L->name, "uniform-%d-%d-%d-%d", in_lo, in_hi, out_lo, out_hi);
    snprintf(L->origin, sizeof L->origin, "uniform");
    snprintf(L->source, sizeof L->source, "given on the command line");
    snprintf(L->stand_in, sizeof L->stand_in, "lengths uniform over the given ranges");
    L->input.kind = L->output.kind = TW_LEN_UNIFORM;
    L->input.lo = in_lo;
    L->input.hi = in_hi;
    L->output.lo = out_lo;
    L->output.hi = out_hi;
    return TW_OK;
}

static tw_status tw_json_len(json_t *v, const char *what, const char *field, int *out) {
    if (!json_is_integer(v) || !tw_len_ok(json_integer_value(v)))
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" must be an integer in [1, %d]", what, field,
                      TW_LOADGEN_MAX_LEN);
    *out = (int)json_integer_value(v);
    return TW_OK;
}

static tw_status tw_json_weight(json_t *v, const char *what, double *out) {
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return TW_ERR(TW_ERR_PARSE, "%s: a bin's weight must be a finite number > 0", what);
    *out = json_number_value(v);
    return TW_OK;
}

/* cdf[k] = sum_{j<=k} w_j / sum w; the last is exactly 1 so a draw always lands in a bin. */
static tw_status tw_make_cdf(const double *w, int n, double **cdf) {
    *cdf = malloc(sizeof(double) * (size_t)n);
    if (!*cdf) return TW_ERR(TW_ERR_NOMEM, "no memory for %d bins", n);
    double total = 0, run = 0;
    for (int k = 0; k < n; k++) total += w[k];
    for (int k = 0; k < n; k++) {
        run += w[k];
        (*cdf)[k] = run / total;
    }
    (*cdf)[n - 1] = 1.0;
    return TW_OK;
}

static tw_status tw_parse_dist(json_t *o, const char *what, tw_len_dist *d) {
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) return TW_ERR(TW_ERR_PARSE, "%s: not a JSON object", what);
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (!kind)
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"kind\" (fixed, uniform or histogram)", what);
    if (strcmp(kind, "fixed") == 0) {
        d->kind = TW_LEN_FIXED;
        return tw_json_len(json_object_get(o, "value"), what, "value", &d->value);
    }
    if (strcmp(kind, "uniform") == 0) {
        d->kind = TW_LEN_UNIFORM;
        TW_TRY(tw_json_len(json_object_get(o, "min"), what, "min", &d->lo));
        TW_TRY(tw_json_len(json_object_get(o, "max"), what, "max", &d->hi));
        if (d->lo > d->hi) return TW_ERR(TW_ERR_PARSE, "%s: \"min\" exceeds \"max\"", what);
        return TW_OK;
    }
    if (strcmp(kind, "histogram") != 0)
        return TW_ERR(TW_ERR_PARSE, "%s: unknown kind \"%s\" (fixed, uniform or histogram)", what,
                      kind);
    d->kind = TW_LEN_HISTOGRAM;
    json_t *bins = json_object_get(o, "bins");
    if (!json_is_array(bins) || json_array_size(bins) == 0 || json_array_size(bins) > 100000)
        return TW_ERR(TW_ERR_PARSE, "%s: \"bins\" must be a non-empty array of [lo, hi, weight]",
                      what);
    d->n_bins = (int)json_array_size(bins);
    d->bins = calloc((size_t)d->n_bins, sizeof *d->bins);
    if (!d->bins) return TW_ERR(TW_ERR_NOMEM, "%s: no memory for %d bins", what, d->n_bins);
    for (int k = 0; k < d->n_bins; k++) {
        json_t *b = json_array_get(bins, (size_t)k);
        char w[700];
        snprintf(w, sizeof w, "%s bin %d", what, k);
        if (!json_is_array(b) || json_array_size(b) != 3) {
            tw_len_dist_free(d);
            return TW_ERR(TW_ERR_PARSE, "%s: must be [lo, hi, weight]", w);
        }
        tw_len_bin *x = &d->bins[k];
        tw_status st = tw_json_len(json_array_get(b, 0), w, "lo", &x->lo);
        if (st == TW_OK) st = tw_json_len(json_array_get(b, 1), w, "hi", &x->hi);
        if (st == TW_OK) st = tw_json_weight(json_array_get(b, 2), w, &x->weight);
        if (st == TW_OK && x->lo > x->hi) st = TW_ERR(TW_ERR_PARSE, "%s: lo exceeds hi", w);
        /* ascending and disjoint, so a file reads as the histogram it is */
        if (st == TW_OK && k > 0 && x->lo <= d->bins[k - 1].hi)
            st = TW_ERR(TW_ERR_PARSE, "%s: bins must be ascending and disjoint", w);
        if (st != TW_OK) {
            tw_len_dist_free(d);
            return st;
        }
    }
    double *w = malloc(sizeof(double) * (size_t)d->n_bins);
    if (!w) {
        tw_len_dist_free(d);
        return TW_ERR(TW_ERR_NOMEM, "%s: no memory for %d bins", what, d->n_bins);
    }
    for (int k = 0; k < d->n_bins; k++) w[k] = d->bins[k].weight;
    tw_status st = tw_make_cdf(w, d->n_bins, &d->cdf);
    free(w);
    if (st != TW_OK) tw_len_dist_free(d);
    return st;
}

static tw_status tw_parse_joint(json_t *o, const char *what, tw_loadgen_lengths *L) {
    json_t *bins = json_is_object(o) ? json_object_get(o, "bins") : NULL;
    if (!json_is_array(bins) || json_array_size(bins) == 0 || json_array_size(bins) > 100000)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: \"joint\" needs \"bins\": [[in_lo, in_hi, out_lo, out_hi, weight], ...]",
                      what);
    L->n_jbins = (int)json_array_size(bins);
    L->jbins = calloc((size_t)L->n_jbins, sizeof *L->jbins);
    if (!L->jbins) return TW_ERR(TW_ERR_NOMEM, "%s: no memory for joint bins", what);
    double *w = malloc(sizeof(double) * (size_t)L->n_jbins);
    if (!w) return TW_ERR(TW_ERR_NOMEM, "%s: no memory for joint bins", what);
    for (int k = 0; k < L->n_jbins; k++) {
        json_t *b = json_array_get(bins, (size_t)k);
        char wh[700];
        snprintf(wh, sizeof wh, "%s joint bin %d", what, k);
        tw_len_joint_bin *x = &L->jbins[k];
        tw_status st = TW_OK;
        if (!json_is_array(b) || json_array_size(b) != 5)
            st = TW_ERR(TW_ERR_PARSE, "%s: must be [in_lo, in_hi, out_lo, out_hi, weight]", wh);
        if (st == TW_OK) st = tw_json_len(json_array_get(b, 0), wh, "in_lo", &x->in_lo);
        if (st == TW_OK) st = tw_json_len(json_array_get(b, 1), wh, "in_hi", &x->in_hi);
        if (st == TW_OK) st = tw_json_len(json_array_get(b, 2), wh, "out_lo", &x->out_lo);
        if (st == TW_OK) st = tw_json_len(json_array_get(b, 3), wh, "out_hi", &x->out_hi);
        if (st == TW_OK) st = tw_json_weight(json_array_get(b, 4), wh, &x->weight);
        if (st == TW_OK && (x->in_lo > x->in_hi || x->out_lo > x->out_hi))
            st = TW_ERR(TW_ERR_PARSE, "%s: lo exceeds hi", wh);
        if (st != TW_OK) {
            free(w);
            return st;
        }
        w[k] = x->weight;
    }
    tw_status st = tw_make_cdf(w, L->n_jbins, &L->jcdf);
    free(w);
    return st;
}

static tw_status tw_req_text(json_t *root, const char *key, const char *what, char *out, size_t n) {
    json_t *v = json_object_get(root, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return TW_ERR(TW_ERR_PARSE, "%s: missing or empty \"%s\" (every lengths file says it)",
                      what, key);
    if (json_string_length(v) >= n)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" is longer than %zu characters", what, key, n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return TW_OK;
}

tw_status tw_loadgen_lengths_parse(const char *text, const char *origin, tw_loadgen_lengths *L) {
    memset(L, 0, sizeof *L);
    snprintf(L->origin, sizeof L->origin, "%s", origin);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) return TW_ERR(TW_ERR_PARSE, "%s:%d: %s", origin, jerr.line, jerr.text);
    tw_status st = TW_OK;
    if (!json_is_object(root)) st = TW_ERR(TW_ERR_PARSE, "%s: not a JSON object", origin);
    json_t *ver = json_object_get(root, "schema_version");
    if (st == TW_OK && (!json_is_integer(ver) || json_integer_value(ver) != 1))
        st = TW_ERR(TW_ERR_PARSE, "%s: \"schema_version\" must be 1", origin);
    if (st == TW_OK) st = tw_req_text(root, "name", origin, L->name, sizeof L->name);
    if (st == TW_OK) st = tw_req_text(root, "source", origin, L->source, sizeof L->source);
    if (st == TW_OK) st = tw_req_text(root, "stand_in", origin, L->stand_in, sizeof L->stand_in);
    json_t *joint = json_object_get(root, "joint");
    json_t *in = json_object_get(root, "input"), *out = json_object_get(root, "output");
    if (st == TW_OK && joint && (in || out))
        st = TW_ERR(TW_ERR_PARSE, "%s: give either \"joint\" or \"input\" and \"output\"", origin);
    if (st == TW_OK && joint) {
        L->joint = 1;
        st = tw_parse_joint(joint, origin, L);
    } else if (st == TW_OK) {
        char w[600];
        snprintf(w, sizeof w, "%s \"input\"", origin);
        st = in ? tw_parse_dist(in, w, &L->input)
                : TW_ERR(TW_ERR_PARSE, "%s: missing \"input\" (or \"joint\")", origin);
        snprintf(w, sizeof w, "%s \"output\"", origin);
        if (st == TW_OK)
            st = out ? tw_parse_dist(out, w, &L->output)
                     : TW_ERR(TW_ERR_PARSE, "%s: missing \"output\" (or \"joint\")", origin);
    }
    json_decref(root);
    if (st != TW_OK) tw_loadgen_lengths_free(L);
    return st;
}

tw_status tw_loadgen_lengths_load(const char *name_or_path, tw_loadgen_lengths *L) {
    memset(L, 0, sizeof *L);
    char path[1024];
    size_t n = strlen(name_or_path);
    if (strchr(name_or_path, '/') || (n > 5 && strcmp(name_or_path + n - 5, ".json") == 0)) {
        snprintf(path, sizeof path, "%s", name_or_path);
    } else {
        char rel[512];
        snprintf(rel, sizeof rel, "serving/lengths/%s.json", name_or_path);
        tw_status st = tw_config_path(rel, path, sizeof path);
        if (st != TW_OK)
            return tw_error_ctx(st,
                                "unknown lengths '%s' (give a name from "
                                "configs/serving/lengths/ or a path)",
                                name_or_path);
    }
    char *text = NULL;
    size_t len = 0;
    TW_TRY(tw_read_file(path, &text, &len));
    tw_status st = tw_loadgen_lengths_parse(text, path, L);
    free(text);
    return st;
}

/* First k with cdf[k] > u (u in (0, 1), cdf[n-1] == 1). */
static int tw_cdf_pick(const double *cdf, int n, double u) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Uniform integer in lo..hi from u in (0, 1). */
static int tw_uniform_int(int lo, int hi, double u) {
    int64_t span = (int64_t)hi - lo + 1;
    int64_t k = (int64_t)(u * (double)span);
    if (k >= span) k = span - 1;
    return lo + (int)k;
}

static int tw_dist_draw(const tw_len_dist *d, uint64_t seed, uint32_t s_bin, uint32_t s_pos,
                        int64_t i) {
    switch (d->kind) {
    case TW_LEN_FIXED:
        return d->value;
    case TW_LEN_UNIFORM:
        return tw_uniform_int(d->lo, d->hi, tw_serve_rng_u01(seed, s_pos, i));
    case TW_LEN_HISTOGRAM: {
        int k = tw_cdf_pick(d->cdf, d->n_bins, tw_serve_rng_u01(seed, s_bin, i));
        return tw_uniform_int(d->bins[k].lo, d->bins[k].hi, tw_serve_rng_u01(seed, s_pos, i));
    }
    }
    return 1;
}

void tw_loadgen_lengths_draw(const tw_loadgen_lengths *L, uint64_t seed, int64_t index,
                             int *input_tokens, int *output_tokens) {
    if (L->joint) {
        const tw_len_joint_bin *b = &L->jbins[tw_cdf_pick(
            L->jcdf, L->n_jbins, tw_serve_rng_u01(seed, TW_LOADGEN_STREAM_JOINT_BIN, index))];
        *input_tokens = tw_uniform_int(b->in_lo, b->in_hi,
                                       tw_serve_rng_u01(seed, TW_LOADGEN_STREAM_IN_POS, index));
        *output_tokens = tw_uniform_int(b->out_lo, b->out_hi,
                                        tw_serve_rng_u01(seed, TW_LOADGEN_STREAM_OUT_POS, index));
        return;
    }
    *input_tokens =
        tw_dist_draw(&L->input, seed, TW_LOADGEN_STREAM_IN_BIN, TW_LOADGEN_STREAM_IN_POS, index);
    *output_tokens =
        tw_dist_draw(&L->output, seed, TW_LOADGEN_STREAM_OUT_BIN, TW_LOADGEN_STREAM_OUT_POS, index);
}

static double tw_dist_mean(const tw_len_dist *d) {
    switch (d->kind) {
    case TW_LEN_FIXED:
        return d->value;
    case TW_LEN_UNIFORM:
        return 0.5 * ((double)d->lo + d->hi);
    case TW_LEN_HISTOGRAM: {
        double s = 0, w = 0;
        for (int k = 0; k < d->n_bins; k++) {
            s += d->bins[k].weight * 0.5 * ((double)d->bins[k].lo + d->bins[k].hi);
            w += d->bins[k].weight;
        }
        return s / w;
    }
    }
    return NAN;
}

static int tw_dist_max(const tw_len_dist *d) {
    switch (d->kind) {
    case TW_LEN_FIXED:
        return d->value;
    case TW_LEN_UNIFORM:
        return d->hi;
    case TW_LEN_HISTOGRAM:
        return d->bins[d->n_bins - 1].hi;
    }
    return 0;
}

void tw_loadgen_lengths_mean(const tw_loadgen_lengths *L, double *input_mean, double *output_mean) {
    if (L->joint) {
        double si = 0, so = 0, w = 0;
        for (int k = 0; k < L->n_jbins; k++) {
            const tw_len_joint_bin *b = &L->jbins[k];
            si += b->weight * 0.5 * ((double)b->in_lo + b->in_hi);
            so += b->weight * 0.5 * ((double)b->out_lo + b->out_hi);
            w += b->weight;
        }
        *input_mean = si / w;
        *output_mean = so / w;
        return;
    }
    *input_mean = tw_dist_mean(&L->input);
    *output_mean = tw_dist_mean(&L->output);
}

void tw_loadgen_lengths_max(const tw_loadgen_lengths *L, int *input_max, int *output_max,
                            int64_t *total_max) {
    if (L->joint) {
        int mi = 0, mo = 0;
        int64_t mt = 0;
        for (int k = 0; k < L->n_jbins; k++) {
            const tw_len_joint_bin *b = &L->jbins[k];
            if (b->in_hi > mi) mi = b->in_hi;
            if (b->out_hi > mo) mo = b->out_hi;
            if ((int64_t)b->in_hi + b->out_hi > mt) mt = (int64_t)b->in_hi + b->out_hi;
        }
        *input_max = mi;
        *output_max = mo;
        *total_max = mt;
        return;
    }
    *input_max = tw_dist_max(&L->input);
    *output_max = tw_dist_max(&L->output);
    *total_max = (int64_t)*input_max + *output_max;
}

/* ---- scenarios ---------------------------------------------------------------------------- */

static const char *const tw_scen_names[] = {"offline", "server", "interactive", "concurrency"};

const char *tw_loadgen_scenario_name(tw_loadgen_scenario s) {
    return (unsigned)s < 4 ? tw_scen_names[s] : "?";
}

tw_status tw_loadgen_scenario_parse(const char *name, tw_loadgen_scenario *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, tw_scen_names[i]) == 0) {
            *out = (tw_loadgen_scenario)i;
            return TW_OK;
        }
    return TW_ERR(TW_ERR_INVALID,
                  "unknown scenario '%s' (offline, server, interactive or concurrency)", name);
}

tw_status tw_loadgen_check(const tw_loadgen_config *c) {
    if (!c->lengths) return TW_ERR(TW_ERR_INVALID, "load generator: no request lengths given");
    if (c->n_requests < 0 || c->n_warmup < 0)
        return TW_ERR(TW_ERR_INVALID, "load generator: request counts must be >= 0");
    if (!(c->duration_s >= 0) || !isfinite(c->duration_s))
        return TW_ERR(TW_ERR_INVALID, "load generator: duration must be finite and >= 0");
    switch (c->scenario) {
    case TW_LOADGEN_OFFLINE:
        if (c->n_requests < 1)
            return TW_ERR(TW_ERR_INVALID, "offline: give a request count (every request arrives "
                                          "at once, so a duration bounds nothing)");
        if (c->duration_s > 0)
            return TW_ERR(TW_ERR_INVALID, "offline: a duration bound does not apply (every "
                                          "request arrives at t = 0)");
        return TW_OK;
    case TW_LOADGEN_SERVER:
    case TW_LOADGEN_INTERACTIVE:
        if (!(c->rate_rps > 0) || !isfinite(c->rate_rps))
            return TW_ERR(TW_ERR_INVALID, "%s: the request rate must be finite and > 0 (got %g)",
                          tw_loadgen_scenario_name(c->scenario), c->rate_rps);
        break;
    case TW_LOADGEN_CONCURRENCY:
        if (c->concurrency < 1)
            return TW_ERR(TW_ERR_INVALID, "concurrency: N must be >= 1 (got %d)", c->concurrency);
        break;
    default:
        return TW_ERR(TW_ERR_INVALID, "load generator: unknown scenario %d", c->scenario);
    }
    if (c->n_requests < 1 && !(c->duration_s > 0))
        return TW_ERR(TW_ERR_INVALID,
                      "%s: give a request count or a duration (else the run "
                      "never ends)",
                      tw_loadgen_scenario_name(c->scenario));
    return TW_OK;
}

tw_status tw_loadgen_init(tw_loadgen *lg, const tw_loadgen_config *cfg) {
    memset(lg, 0, sizeof *lg);
    TW_TRY(tw_loadgen_check(cfg));
    lg->cfg = *cfg;
    return TW_OK;
}

int64_t tw_loadgen_max_requests(const tw_loadgen_config *c) {
    return c->n_requests > 0 ? c->n_warmup + c->n_requests : -1;
}

int tw_loadgen_next(tw_loadgen *lg, double now_s, tw_loadgen_request *r) {
    const tw_loadgen_config *c = &lg->cfg;
    int64_t i = lg->next;
    if (c->n_requests > 0 && i >= c->n_warmup + c->n_requests) return 0;
    double t = 0;
    switch (c->scenario) {
    case TW_LOADGEN_OFFLINE:
        t = 0;
        break;
    case TW_LOADGEN_SERVER:
    case TW_LOADGEN_INTERACTIVE:
        /* exponential inter-arrival gaps: a Poisson process of rate R */
        t = lg->t_s -
            log(tw_serve_rng_u01(c->seed, TW_LOADGEN_STREAM_ARRIVAL, (uint64_t)i)) / c->rate_rps;
        break;
    case TW_LOADGEN_CONCURRENCY:
        t = now_s;
        break;
    }
    if (c->duration_s > 0 && t >= c->duration_s) return 0;
    lg->t_s = t;
    lg->next = i + 1;
    r->index = i;
    r->warmup = i < c->n_warmup;
    r->arrival_s = t;
    tw_loadgen_lengths_draw(c->lengths, c->seed, i, &r->input_tokens, &r->output_tokens);
    return 1;
}
