/* Capacity search: the highest Poisson request rate at which the latency constraint holds, as
 * LoadGen's FindPeakPerformance mode does for the Server scenario (loadgen/loadgen.cc:
 * FindBoundaries widens the upper bound by (1 + server_find_peak_qps_boundary_step_size) until a
 * run fails, then FindPeakPerformanceBinarySearch halves [lower, upper) until
 * floor(lower * 10^d) + 1 >= floor(upper * 10^d), d = server_find_peak_qps_decimals_of_precision;
 * defaults 1 and 1 in loadgen/test_settings.h).
 *
 * Differences, all bounded so a search always ends:
 *   - LoadGen gives up when the starting rate fails; here the rate is lowered by the same factor
 *     down to rate_min_rps, and a scenario that fails even there is reported as never meeting its
 *     limits (TW_FINDRATE_NEVER_MEETS) with every rate tried;
 *   - widening stops at rate_max_rps (TW_FINDRATE_AT_CAP: the capacity is at least the cap);
 *   - at most max_trials trials (TW_FINDRATE_TRIALS_EXHAUSTED keeps the best bracket found).
 * Like LoadGen it assumes that meeting the constraint is monotone in the rate. Each trial runs
 * through a callback, so the search is testable against a simulated server. */
#ifndef TW_SERVE_FINDRATE_H
#define TW_SERVE_FINDRATE_H

#include <stdint.h>

#include "tw_status.h"

#define TW_FINDRATE_MAX_TRIALS 64

typedef struct {
    int met;            /* the constraint held */
    int64_t n_requests; /* measured requests in the trial (>= the minimum asked for) */
    double ttft_pctl_s; /* LoadGen percentile of TTFT (NAN if not measured) */
    double tpot_pctl_s; /* and of TPOT */
    double goodput_rps; /* NAN if no objective */
    double output_tps;  /* output tokens/s over the trial's window */
    double goodput_output_tps;
} tw_findrate_outcome;

/* Runs one trial at `rate_rps` with at least `min_requests` measured requests. */
typedef tw_status (*tw_findrate_trial_fn)(void *ctx, double rate_rps, int64_t min_requests,
                                          tw_findrate_outcome *out);

typedef struct {
    double rate_start_rps; /* first rate tried (LoadGen: the user's target_qps), > 0 */
    double rate_min_rps;   /* lowest rate tried when the start fails, in (0, start] */
    double rate_max_rps;   /* highest rate tried when widening, >= start */
    double step;           /* bounds move by a factor (1 + step); LoadGen's default 1 */
    int decimals;          /* precision: LoadGen's stop rule at 10^-decimals requests/s */
    int max_trials;        /* 1..TW_FINDRATE_MAX_TRIALS */
    int64_t min_requests;  /* per trial, >= 1 */
} tw_findrate_config;

typedef enum {
    TW_FINDRATE_FOUND = 0,        /* rate_rps met, upper_rps failed, within the precision */
    TW_FINDRATE_NEVER_MEETS,      /* failed at every rate down to rate_min_rps */
    TW_FINDRATE_AT_CAP,           /* met at rate_max_rps: the capacity is at least that */
    TW_FINDRATE_TRIALS_EXHAUSTED, /* max_trials ran out: [rate_rps, upper_rps) bracket */
} tw_findrate_verdict;

const char *tw_findrate_verdict_name(tw_findrate_verdict v);

typedef struct {
    double rate_rps;
    tw_findrate_outcome outcome;
} tw_findrate_trial;

typedef struct {
    tw_findrate_verdict verdict;
    double rate_rps;  /* highest rate that met; NAN if none did */
    double upper_rps; /* lowest rate that failed; NAN if none did */
    int n_trials;
    tw_findrate_trial trials[TW_FINDRATE_MAX_TRIALS]; /* in the order run */
} tw_findrate_result;

tw_status tw_findrate_check(const tw_findrate_config *c);
/* Searches; a failing trial callback is relayed (with the rate) and ends the search. */
tw_status tw_findrate(const tw_findrate_config *c, tw_findrate_trial_fn trial, void *ctx,
                      tw_findrate_result *out);

#endif
