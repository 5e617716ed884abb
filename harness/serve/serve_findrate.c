/* Capacity search over a trial callback (tw_serve_findrate.h). */
#include "tw_serve_findrate.h"

#include <math.h>
#include <string.h>

static const char *const tw_verdicts[] = {"found", "never-meets", "at-cap", "trials-exhausted"};

const char *tw_findrate_verdict_name(tw_findrate_verdict v) {
    return (unsigned)v < 4 ? tw_verdicts[v] : "?";
}

tw_status tw_findrate_check(const tw_findrate_config *c) {
    if (!(c->rate_start_rps > 0) || !isfinite(c->rate_start_rps) || !(c->rate_min_rps > 0) ||
        c->rate_min_rps > c->rate_start_rps || !(c->rate_max_rps >= c->rate_start_rps) ||
        !isfinite(c->rate_max_rps))
        return TW_ERR(TW_ERR_INVALID,
                      "find-rate: need 0 < min <= start <= max, all finite (got %g, %g, %g)",
                      c->rate_min_rps, c->rate_start_rps, c->rate_max_rps);
    if (!(c->step > 0) || !isfinite(c->step))
        return TW_ERR(TW_ERR_INVALID, "find-rate: the step must be > 0 (got %g)", c->step);
    if (c->decimals < 0 || c->decimals > 9)
        return TW_ERR(TW_ERR_INVALID, "find-rate: decimals must be in [0, 9]");
    if (c->max_trials < 1 || c->max_trials > TW_FINDRATE_MAX_TRIALS)
        return TW_ERR(TW_ERR_INVALID, "find-rate: max trials must be in [1, %d]",
                      TW_FINDRATE_MAX_TRIALS);
    if (c->min_requests < 1)
        return TW_ERR(TW_ERR_INVALID, "find-rate: at least one request per trial");
    return TW_OK;
}

/* LoadGen's find_peak_performance::IsFinished for the Server scenario. */
static int tw_finished(double lo, double hi, int decimals) {
    double scale = pow(10.0, decimals);
    return floor(lo * scale) + 1 >= floor(hi * scale);
}

static tw_status tw_run(const tw_findrate_config *c, tw_findrate_trial_fn trial, void *ctx,
                        tw_findrate_result *out, double rate, int *met) {
    tw_findrate_trial *t = &out->trials[out->n_trials];
    memset(t, 0, sizeof *t);
    t->rate_rps = rate;
    tw_status st = trial(ctx, rate, c->min_requests, &t->outcome);
    if (st != TW_OK) return tw_error_ctx(st, "find-rate trial at %g requests/s", rate);
    if (t->outcome.n_requests < c->min_requests)
        return TW_ERR(TW_ERR_INTERNAL,
                      "find-rate: the trial at %g requests/s measured %lld requests, under the "
                      "minimum %lld",
                      rate, (long long)t->outcome.n_requests, (long long)c->min_requests);
    out->n_trials++;
    *met = t->outcome.met;
    return TW_OK;
}

tw_status tw_findrate(const tw_findrate_config *c, tw_findrate_trial_fn trial, void *ctx,
                      tw_findrate_result *out) {
    memset(out, 0, sizeof *out);
    out->rate_rps = out->upper_rps = NAN;
    TW_TRY(tw_findrate_check(c));
    double f = 1.0 + c->step;
    double lo = NAN, hi = NAN;
    int met;
    /* 1. a rate that meets: the start, else lower ones down to the minimum */
    double r = c->rate_start_rps;
    for (;;) {
        if (out->n_trials == c->max_trials) {
            out->verdict = TW_FINDRATE_TRIALS_EXHAUSTED;
            out->upper_rps = hi;
            return TW_OK;
        }
        TW_TRY(tw_run(c, trial, ctx, out, r, &met));
        if (met) {
            lo = r;
            break;
        }
        hi = r;
        if (r <= c->rate_min_rps) {
            out->verdict = TW_FINDRATE_NEVER_MEETS;
            out->upper_rps = hi;
            return TW_OK;
        }
        r = r / f > c->rate_min_rps ? r / f : c->rate_min_rps;
    }
    /* 2. widen the upper bound until a rate fails (or the cap meets) */
    while (isnan(hi)) {
        if (lo >= c->rate_max_rps) {
            out->verdict = TW_FINDRATE_AT_CAP;
            out->rate_rps = lo;
            return TW_OK;
        }
        if (out->n_trials == c->max_trials) {
            out->verdict = TW_FINDRATE_TRIALS_EXHAUSTED;
            out->rate_rps = lo;
            return TW_OK;
        }
        r = lo * f < c->rate_max_rps ? lo * f : c->rate_max_rps;
        TW_TRY(tw_run(c, trial, ctx, out, r, &met));
        if (met)
            lo = r;
        else
            hi = r;
    }
    /* 3. bisect [lo, hi) to the precision */
    while (!tw_finished(lo, hi, c->decimals)) {
        if (out->n_trials == c->max_trials) {
            out->verdict = TW_FINDRATE_TRIALS_EXHAUSTED;
            out->rate_rps = lo;
            out->upper_rps = hi;
            return TW_OK;
        }
        double mid = lo + (hi - lo) / 2;
        TW_TRY(tw_run(c, trial, ctx, out, mid, &met));
        if (met)
            lo = mid;
        else
            hi = mid;
    }
    out->verdict = TW_FINDRATE_FOUND;
    out->rate_rps = lo;
    out->upper_rps = hi;
    return TW_OK;
}
