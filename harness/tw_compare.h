/* Reading tokwatt result files as rows (a run is a one-row sweep) and the arithmetic of
 * `tokwatt compare`: measured against published (per system and per accelerator), and one result
 * against another with run-to-run noise.
 *
 * Significance rule: a change between two results is significant when |median_b - median_a| is
 * larger than the run-to-run noise, taken as the larger of the two results' ranges (max - min
 * over their repetitions). A range is a conservative noise figure for the few repetitions a run
 * has (2 to 10): it needs no distributional assumption and covers every repetition seen. With
 * fewer than two repetitions on either side the noise is unknown and the change is reported as
 * such, never as significant; so is a metric whose file records no per-repetition spread
 * (joules per token: energy is measured over all repetitions together). */
#ifndef TW_COMPARE_H
#define TW_COMPARE_H

#include <stddef.h>

#include "serve/tw_serve_result.h"
#include "tw_published.h"
#include "tw_status.h"

typedef struct {
    int n; /* repetitions; 0 when the file has no spread for the metric */
    double median, mean, min, max, stddev;
} tw_spread;

typedef struct {
    char label[96]; /* "file.json" or "file.json row 3" */
    char model[128], backend[32], dtype[16], kv_dtype[16], device[128];
    int batch, prompt, gen, tp, devices;
    int ep;                                  /* expert-parallel degree (0: none) */
    double routing_skew;                     /* mixtures of experts (NaN: a dense model) */
    double prefill_tps, decode_tps, e2e_tps; /* system tokens/s */
    tw_spread sp_prefill, sp_decode, sp_e2e, sp_ttft, sp_tpot;
    double ttft_s, tpot_p50_s;
    /* roofline inputs (NaN when absent) */
    double prefill_gflops, decode_bw_gbps, decode_bytes_per_step, params, bytes_per_weight;
    double active_params; /* weights that multiply one token: params, or a mixture of experts'
                           * active ones (experts.active_params) */
    double membw_gbps, peak_gflops; /* per-device ceilings */
    char ceiling_source[160];
    /* energy (NaN when absent) */
    double e2e_j_per_token, e2e_tokens_per_j, prefill_j_per_token, decode_j_per_token;
    double w_per_device;
    /* the projection's device figures (tw_project_device_from_row; NaN when the row has none) */
    double proj_tokens_per_s, proj_watts;
    char energy_source[32];
    int energy_assumed;
    char energy_label[256];
    /* a serving scenario's block (owned by the file's rows, NULL for a static batch) and the
     * projection's figure at its latency targets (tw_project_device_goodput_from_row; NaN
     * when the row has no goodput or no watts) */
    tw_serve_result *serving;
    double proj_goodput_tokens_per_s;
    char goodput_targets[160];
    /* where and how completely it was measured */
    char cpu_model[128], host[96];
    int complete; /* 0: the run (or this row) was interrupted or failed part-way */
    char incomplete_reason[768];
} tw_run_row;

typedef struct {
    char path[512];
    char name[96];   /* basename */
    char kind[16];   /* run | sweep */
    char preset[96]; /* scenario.preset when the run recorded one */
    int nrows;
    tw_run_row *rows;
} tw_result_file;

/* Loads a result file (kind "run" or "sweep", schema_version 1). Ceilings missing from the file
 * are filled from configs/devices.json by the device name when one matches (ceiling_source says
 * which). */
tw_status tw_result_file_load(const char *path, tw_result_file *out);
void tw_result_file_free(tw_result_file *f);

/* ---- measured against published ---------------------------------------------------------------
 */

typedef struct {
    double system_tps, per_accel_tps;           /* NaN for an energy-only row */
    double tokens_per_j_low, tokens_per_j_high; /* the range's ends (equal for one figure) */
    int tokens_per_j_from_rating; /* derived: per-accelerator tokens/s / rated W (upper bound) */
} tw_pub_figures;

/* The published row's figures in both forms: a system figure divided by the accelerator count,
 * a per-accelerator one multiplied by it; tokens/J = 1 / (J/token), or for a throughput row
 * per-accelerator tokens/s / rated watts (GPU-only, an upper bound for the system). */
tw_status tw_compare_published_figures(const tw_published_row *r, tw_pub_figures *out);

typedef struct {
    double system_tps, per_accel_tps, tokens_per_j;
    int serving; /* the throughput is a serving run's output tokens/s, not e2e */
} tw_meas_figures;

/* system = e2e tokens/s, per accelerator = e2e / devices, tokens/J = energy.e2e.tokens_per_j;
 * for a serving row (schema 1.4) system = serving.summary.output_tokens_per_s (MLPerf Server's
 * "Completed tokens per second": every measured request's output tokens over the window) and
 * per accelerator = serving.summary.output_tokens_per_s_per_device. */
tw_status tw_compare_measured_figures(const tw_run_row *r, tw_meas_figures *out);

/* measured / published (NaN when either is missing). */
double tw_compare_ratio(double measured, double published);

/* ---- one result against another ---------------------------------------------------------------
 */

typedef enum { TW_SIG_NO = 0, TW_SIG_YES, TW_SIG_UNKNOWN } tw_significance;

typedef struct {
    double a, b;  /* medians */
    double delta; /* b - a */
    double rel;   /* delta / a */
    double noise; /* max(range_a, range_b) */
    tw_significance sig;
    const char *why_unknown; /* for TW_SIG_UNKNOWN: no spread recorded, or fewer than 2 reps */
} tw_diff;

tw_status tw_compare_diff(const tw_spread *a, const tw_spread *b, tw_diff *out);
const char *tw_significance_text(tw_significance s);
/* The verdict of one diff, with the reason when unknown. */
const char *tw_diff_verdict(const tw_diff *d);

#endif
