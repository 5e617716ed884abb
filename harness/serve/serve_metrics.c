/* Serving metrics (tw_serve_metrics.h; formulas in doc/SERVING.md). */
#include "tw_serve_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tw_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double tw_serve_pct_linear(const double *s, int64_t n, double pct) {
    if (n <= 0) return NAN;
    double pos = pct / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo < 0) lo = 0;
    if (lo > n - 1) lo = n - 1;
    int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return s[lo] + (pos - (double)lo) * (s[hi] - s[lo]);
}

/* LoadGen: pr.sample_latencies[sample_count * percentile] after std::sort (loadgen/results.cc):
 * the double product truncated to an index. */
double tw_serve_pct_loadgen(const double *s, int64_t n, double frac) {
    if (n <= 0) return NAN;
    size_t i = (size_t)((double)n * frac);
    if (i >= (size_t)n) i = (size_t)n - 1;
    return s[i];
}

/* Sorts v in place and fills d. */
static void tw_dist_inplace(double *v, int64_t n, tw_serve_dist *d) {
    memset(d, 0, sizeof *d);
    d->n = n;
    if (n <= 0) {
        d->mean = d->std = d->min = d->max = d->median = d->p90 = d->p95 = d->p99 = d->p99_loadgen =
            NAN;
        return;
    }
    qsort(v, (size_t)n, sizeof(double), tw_cmp_d);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    d->mean = sum / (double)n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (v[i] - d->mean) * (v[i] - d->mean);
    d->std = sqrt(ss / (double)n);
    d->min = v[0];
    d->max = v[n - 1];
    d->median = tw_serve_pct_linear(v, n, 50);
    d->p90 = tw_serve_pct_linear(v, n, 90);
    d->p95 = tw_serve_pct_linear(v, n, 95);
    d->p99 = tw_serve_pct_linear(v, n, 99);
    d->p99_loadgen = tw_serve_pct_loadgen(v, n, 0.99);
}

tw_status tw_serve_dist_of(const double *v, int64_t n, tw_serve_dist *d) {
    double *c = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!c) return TW_ERR(TW_ERR_NOMEM, "no memory for %lld latencies", (long long)n);
    if (n > 0) memcpy(c, v, sizeof(double) * (size_t)n);
    tw_dist_inplace(c, n, d);
    free(c);
    return TW_OK;
}

static tw_status tw_check_record(const tw_serve_record *r) {
    const double t[4] = {r->arrival_s, r->admit_s, r->first_token_s, r->finish_s};
    for (int k = 0; k < 4; k++)
        if (!isfinite(t[k]))
            return TW_ERR(TW_ERR_INVALID, "request %lld: a time is not finite", (long long)r->id);
    if (!(t[0] <= t[1] && t[1] <= t[2] && t[2] <= t[3]))
        return TW_ERR(TW_ERR_INVALID,
                      "request %lld: times must satisfy arrival %.9g <= admit %.9g <= first token "
                      "%.9g <= finish %.9g",
                      (long long)r->id, t[0], t[1], t[2], t[3]);
    if (r->input_tokens < 1 || r->output_tokens < 1)
        return TW_ERR(TW_ERR_INVALID, "request %lld: needs >= 1 input and output token",
                      (long long)r->id);
    if (r->token_s) {
        if (r->token_s[0] != r->first_token_s || r->token_s[r->output_tokens - 1] != r->finish_s)
            return TW_ERR(TW_ERR_INVALID,
                          "request %lld: its first and last token times must be its first-token "
                          "and finish times",
                          (long long)r->id);
        for (int k = 1; k < r->output_tokens; k++)
            if (!(r->token_s[k] >= r->token_s[k - 1]))
                return TW_ERR(TW_ERR_INVALID, "request %lld: token %d comes before token %d",
                              (long long)r->id, k, k - 1);
    }
    return TW_OK;
}

static int tw_slo_on(double v) {
    return v > 0 && isfinite(v);
}

tw_status tw_serve_summarize(const tw_serve_record *r, int64_t n, double t_start_s, double t_end_s,
                             int n_devices, const tw_serve_slo *slo, const tw_serve_limits *limits,
                             tw_serve_summary *out) {
    memset(out, 0, sizeof *out);
    if (n_devices < 1) return TW_ERR(TW_ERR_INVALID, "metrics: n_devices must be >= 1");
    if (!isfinite(t_start_s) || !isfinite(t_end_s) || !(t_end_s > t_start_s))
        return TW_ERR(TW_ERR_INVALID, "metrics: the window [%g, %g] s is empty or not finite",
                      t_start_s, t_end_s);
    int64_t nm = 0, n_multi = 0, n_gaps = 0;
    for (int64_t i = 0; i < n; i++) {
        TW_TRY(tw_check_record(&r[i]));
        if (r[i].warmup) {
            out->n_warmup_excluded++;
            continue;
        }
        nm++;
        if (r[i].output_tokens > 1) n_multi++;
        if (r[i].token_s) n_gaps += r[i].output_tokens - 1;
    }
    if (nm == 0) return TW_ERR(TW_ERR_INVALID, "metrics: no measured request (all warm-up)");
    size_t cap = (size_t)(4 * nm + n_multi + n_gaps);
    double *buf = malloc(sizeof(double) * cap);
    if (!buf) return TW_ERR(TW_ERR_NOMEM, "metrics: no memory for %zu latencies", cap);
    double *ttft = buf, *e2e = ttft + nm, *queue = e2e + nm, *tpot = queue + nm,
           *itl = tpot + n_multi;
    int64_t k = 0, kt = 0, kg = 0;
    out->slo_given =
        slo && (tw_slo_on(slo->ttft_s) || tw_slo_on(slo->tpot_s) || tw_slo_on(slo->e2e_s));
    if (slo) out->slo = *slo;
    for (int64_t i = 0; i < n; i++) {
        const tw_serve_record *x = &r[i];
        if (x->warmup) continue;
        double tt = tw_serve_ttft_s(x), ee = tw_serve_e2e_s(x), tp = tw_serve_tpot_s(x);
        ttft[k] = tt;
        e2e[k] = ee;
        queue[k] = tw_serve_queue_s(x);
        k++;
        if (x->output_tokens > 1)
            tpot[kt++] = tp;
        else
            out->n_single_token++;
        if (x->token_s)
            for (int j = 1; j < x->output_tokens; j++)
                itl[kg++] = x->token_s[j] - x->token_s[j - 1];
        out->input_tokens += x->input_tokens;
        out->output_tokens += x->output_tokens;
        out->n_preemptions += x->preemptions;
        if (out->slo_given) {
            /* vLLM: a request is good when every objective s satisfies s >= its metric; a
             * one-token request's TPOT counts as 0 */
            double tp0 = x->output_tokens > 1 ? tp : 0.0;
            int good = (!tw_slo_on(slo->ttft_s) || tt <= slo->ttft_s) &&
                       (!tw_slo_on(slo->tpot_s) || tp0 <= slo->tpot_s) &&
                       (!tw_slo_on(slo->e2e_s) || ee <= slo->e2e_s);
            if (good) {
                out->n_good++;
                out->goodput_output_tps += x->output_tokens; /* divided by the window below */
            }
        }
    }
    out->n_measured = nm;
    out->t_start_s = t_start_s;
    out->t_end_s = t_end_s;
    out->window_s = t_end_s - t_start_s;
    out->n_devices = n_devices;
    double W = out->window_s, D = n_devices;
    out->request_rps = (double)nm / W;
    out->output_tps = (double)out->output_tokens / W;
    out->total_tps = (double)(out->input_tokens + out->output_tokens) / W;
    out->request_rps_per_device = out->request_rps / D;
    out->output_tps_per_device = out->output_tps / D;
    out->total_tps_per_device = out->total_tps / D;
    if (out->slo_given) {
        out->goodput_rps = (double)out->n_good / W;
        out->goodput_output_tps /= W;
        out->goodput_rps_per_device = out->goodput_rps / D;
        out->goodput_output_tps_per_device = out->goodput_output_tps / D;
    } else {
        out->goodput_rps = out->goodput_output_tps = out->goodput_rps_per_device =
            out->goodput_output_tps_per_device = NAN;
    }
    tw_dist_inplace(ttft, nm, &out->ttft);
    tw_dist_inplace(e2e, nm, &out->e2e);
    tw_dist_inplace(queue, nm, &out->queue);
    tw_dist_inplace(tpot, n_multi, &out->tpot);
    tw_dist_inplace(itl, n_gaps, &out->itl);
    out->ttft_pctl_s = out->tpot_pctl_s = NAN;
    if (limits) {
        out->limits_given = 1;
        out->limits = *limits;
        double frac = limits->percentile / 100.0;
        /* the arrays are sorted now */
        out->ttft_pctl_s = tw_serve_pct_loadgen(ttft, nm, frac);
        out->ttft_met = out->ttft_pctl_s <= limits->ttft_s;
        if (n_multi > 0) {
            out->tpot_pctl_s = tw_serve_pct_loadgen(tpot, n_multi, frac);
            out->tpot_met = out->tpot_pctl_s <= limits->tpot_s;
        } else {
            out->tpot_met = 1; /* no request has a TPOT: holds vacuously (n_single_token says) */
        }
        out->constraint_met = out->ttft_met && out->tpot_met;
        out->min_duration_met = W >= limits->min_duration_s;
    }
    free(buf);
    return TW_OK;
}
