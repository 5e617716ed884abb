/* `tokwatt run --scenario ...`: a serving scenario as a measurement of the run library
 * (harness/run/tw_run.h, tw_run_execute_with), so that planning, the engine, interruption, the
 * energy block and the result file are the run's. The command parses its options into a
 * tw_serve_cli, tw_serve_cli_prepare checks them and sizes the run (one combination: batch = the
 * most sequences per step, prompt + gen = the longest request, a paged KV cache), and
 * tw_serve_measure runs the scenario (or the capacity search) on the run's engine and fills the
 * row's serving block (tw_serve_result) and its metrics.
 *
 * Limits: the MLPerf TTFT and TPOT limits the constraint is judged against come from
 * configs/serving/mlperf-limits.json (tw_serve_limits_load), the one source; a preset's
 * "latency_limits" are cross-checked against it (tw_serve_limits_check_preset, and a test over
 * every shipped preset). --ttft-ms/--tpot-ms give limits of one's own instead (labelled "given").
 * Goodput objectives are the same limits unless --goodput-* says otherwise. */
#ifndef TW_SERVE_ENGINE_RUN_H
#define TW_SERVE_ENGINE_RUN_H

#include "harness/run/tw_run.h"
#include "tw_loadgen.h"
#include "tw_published.h"
#include "tw_serve_engine.h"
#include "tw_serve_findrate.h"
#include "tw_serve_limits.h"

typedef struct {
    const char *scenario; /* offline | server | interactive | concurrency */
    double rate_rps;      /* server, interactive (with --find-rate: the first rate tried) */
    int concurrency;
    int64_t n_requests, n_warmup;
    double duration_s;
    uint64_t seed;
    const char *lengths; /* fixed:I,O | uniform:ILO-IHI,OLO-OHI | NAME | FILE.json */
    int max_batch, token_budget, chunked_prefill, preempt;
    int kv_block_tokens;
    int64_t kv_blocks;        /* 0: enough for max_batch of the longest requests */
    double ttft_ms, tpot_ms;  /* given limits (both or neither); 0: from the limits file */
    const char *limits_model; /* mlperf.conf or configs/models name; NULL: the run's model */
    int find_rate;
    double min_rate_rps, max_rate_rps;
    int max_trials;
    int64_t min_requests; /* per trial */
} tw_serve_cli;

/* Defaults for every field (the command's). */
void tw_serve_cli_defaults(tw_serve_cli *c);

/* Parses a lengths option (see above) into L. */
tw_status tw_serve_lengths_parse(const char *spec, tw_loadgen_lengths *L);

typedef struct tw_serve_ctx tw_serve_ctx;

/* Checks the options (TW_ERR_INVALID with a one-line reason), reads the lengths and the limits,
 * and sizes spec for the serving run (one combination, a paged KV cache). model: the run's
 * model name (for the limits). preset may be NULL. */
tw_status tw_serve_cli_prepare(const tw_serve_cli *c, const char *model, const tw_preset *preset,
                               tw_run_spec *spec, tw_serve_ctx **out);
void tw_serve_ctx_free(tw_serve_ctx *x);
/* The measurement for tw_run_execute_with (ctx: the tw_serve_ctx). */
tw_status tw_serve_measure(tw_run *r, tw_engine *e, const tw_run_combo *k, tw_result_row *row,
                           void *ctx);

/* A preset's latency_limits against the limits file (both bounded or both unbounded, equal
 * figures): TW_ERR_INVALID naming the difference. scenario: "server" or "interactive"; an
 * offline preset must have unbounded limits. */
tw_status tw_serve_limits_check_preset(const tw_preset *p, const char *scenario);

#endif
