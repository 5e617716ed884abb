/* Serving metrics: per-request latencies and their aggregates, throughput, goodput and the MLPerf
 * latency constraint. Every formula is in doc/SERVING.md; the names are the ones vLLM's
 * benchmark_serving and MLPerf LoadGen print.
 *
 * Per request (times in seconds from the run's origin):
 *   TTFT  = first_token - arrival           (LoadGen and vLLM measure from the scheduled/sent time)
 *   E2E   = finish - arrival                (finish: the last output token)
 *   TPOT  = (E2E - TTFT) / (output - 1)     for output > 1 (vLLM's "excl. 1st token"; LoadGen's
 *                                            (latency - first token latency) / (n_tokens - 1))
 *   ITL   = token[k] - token[k-1], k = 1..output-1 (one entry per gap, pooled over requests)
 *   queue = admit - arrival                 (admit: start of the step that first scheduled it)
 * Aggregates (tw_serve_dist): mean, population standard deviation (numpy's np.std, as vLLM
 * prints), min, max and percentiles by linear interpolation between order statistics (numpy's
 * default, vLLM's np.percentile); p99_loadgen is LoadGen's sorted[(size_t)(n * 0.99)] instead.
 * Requests with one output token have no TPOT and no ITL: they are left out of those aggregates
 * (vLLM does the same; LoadGen logs one-token samples as an error) and counted in n_single_token.
 * Warm-up requests are excluded from everything and counted in n_warmup_excluded. */
#ifndef TW_SERVE_METRICS_H
#define TW_SERVE_METRICS_H

#include <math.h>
#include <stdint.h>

#include "tw_serve_limits.h"
#include "tw_status.h"

typedef struct {
    int64_t id;
    int warmup;
    double arrival_s, admit_s, first_token_s, finish_s;
    int input_tokens, output_tokens;
    const double *token_s; /* output_tokens token times (token_s[0] == first_token_s,
                              token_s[output - 1] == finish_s), or NULL: no ITL */
    int preemptions;
} tw_serve_record;

static inline double tw_serve_ttft_s(const tw_serve_record *r) {
    return r->first_token_s - r->arrival_s;
}
static inline double tw_serve_e2e_s(const tw_serve_record *r) {
    return r->finish_s - r->arrival_s;
}
static inline double tw_serve_queue_s(const tw_serve_record *r) {
    return r->admit_s - r->arrival_s;
}
/* NAN for a single output token. */
static inline double tw_serve_tpot_s(const tw_serve_record *r) {
    if (r->output_tokens < 2) return NAN;
    return (tw_serve_e2e_s(r) - tw_serve_ttft_s(r)) / (double)(r->output_tokens - 1);
}

typedef struct {
    int64_t n;
    double mean, std, min, max, median, p90, p95, p99;
    double p99_loadgen; /* sorted[(size_t)(n * 0.99)], LoadGen's index rule */
} tw_serve_dist;

/* Sorted v (ascending, n >= 1): numpy-linear and LoadGen percentiles (frac in [0, 1)). */
double tw_serve_pct_linear(const double *sorted, int64_t n, double pct);
double tw_serve_pct_loadgen(const double *sorted, int64_t n, double frac);
/* Sorts a copy of v and fills d; n == 0 gives NAN everywhere. */
tw_status tw_serve_dist_of(const double *v, int64_t n, tw_serve_dist *d);

/* Goodput objectives, vLLM's --goodput ttft:MS tpot:MS e2el:MS: a request is good when every
 * objective given holds with <= (a one-token request counts TPOT 0, as vLLM does). A value
 * <= 0 or NAN leaves that objective out; all left out: goodput is not computed (NAN). */
typedef struct {
    double ttft_s, tpot_s, e2e_s;
} tw_serve_slo;

typedef struct {
    int64_t n_measured, n_warmup_excluded, n_single_token, n_preemptions;
    int64_t input_tokens, output_tokens; /* over measured requests */
    double t_start_s, t_end_s, window_s;
    int n_devices;
    tw_serve_dist ttft, tpot, itl, e2e, queue;
    double request_rps, output_tps, total_tps;
    double request_rps_per_device, output_tps_per_device, total_tps_per_device;
    /* goodput */
    int slo_given;
    tw_serve_slo slo;
    int64_t n_good;
    double goodput_rps, goodput_output_tps, goodput_rps_per_device, goodput_output_tps_per_device;
    /* MLPerf constraint: LoadGen's percentile of TTFT and of TPOT against the limits */
    int limits_given;
    tw_serve_limits limits;
    double ttft_pctl_s, tpot_pctl_s; /* at limits.percentile, LoadGen's index rule */
    int ttft_met, tpot_met, constraint_met;
    int min_duration_met; /* window_s >= limits.min_duration_s */
} tw_serve_summary;

/* Aggregates the measured records over the window [t_start_s, t_end_s] (throughput divides by
 * its length; the caller states the window: tw_serve_sim_window gives the driver's). slo and
 * limits may be NULL. Refuses (TW_ERR_INVALID, naming the request) records whose times are not
 * finite or not ordered arrival <= admit <= first token <= finish, token times out of order, or
 * no measured request at all. */
tw_status tw_serve_summarize(const tw_serve_record *r, int64_t n, double t_start_s, double t_end_s,
                             int n_devices, const tw_serve_slo *slo, const tw_serve_limits *limits,
                             tw_serve_summary *out);

#endif
