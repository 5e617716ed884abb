/* `tokwatt run`: synthetic transformer inference, the suite's main job. This file parses the
 * options and prints; the run itself (planning every combination, the repetitions, power,
 * interruption, tensor-parallel degrees, the result) is harness/run (tw_run.h), the figures
 * harness/metrics.c, the result file harness/result_schema.c (doc/RESULTS.md).
 *
 * The swept options (--batch, --prompt, --gen, --dtype, --tp) take comma-separated lists, as
 * llama-bench does; one result file holds a row per combination. Under mpirun with --tp N the
 * engine is tensor-parallel, with --ep N a mixture of experts' experts are split over N ranks
 * (doc/MOE.md), and rank 0 writes the result. What is measured is never lost: the
 * output location is checked before the first measurement; SIGINT, SIGTERM and SIGHUP (on any
 * rank) end the run with rank 0 writing what was measured, marked incomplete; a failed write
 * falls back to a temporary file that is named; a failed logits dump still writes the result. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness/run/tw_run.h"
#include "serve/tw_serve_engine_run.h"
#include "serve/tw_serve_result.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_progress.h"
#include "tw_published.h"
#include "tw_result_schema.h"
#include "tw_results.h"
#include "tw_util.h"

static const char *tw_run_usage =
    "tokwatt run [--model NAME|PATH] [--backend cpu|cuda] [--dtype bf16|fp32[,..]] "
    "[--kv-dtype bf16|fp32]\n"
    "            [--batch B[,..]] [--prompt P[,..]] [--gen G[,..]] [--warmup W] [--reps R]\n"
    "            [--threads T] [--seed S] [--out DIR|FILE.json] [--format md|json|csv]\n"
    "            [--dump-logits FILE.npy] [--power auto|nvml|rapl|assumed|none] [--watts W]\n"
    "            [--sample-ms MS] [--membw-gbps X] [--peak-gflops X] [--device N] [--progress]\n"
    "            [--gemm tokwatt|cublas] [--cuda-graph]  (CUDA backend: GEMM choice; decode steps\n"
    "            replayed as a CUDA graph)\n"
    "            [--preset NAME]  (configs/scenarios: defaults mirroring a published setup)\n"
    "            [--tp N[,..] [--comm auto|mpi|nccl|local|threads] [--comm-timeout S]]\n"
    "            (each degree N runs on ranks 0..N-1: under mpirun -np M, M >= every N; with\n"
    "            --comm threads as threads of this process on the CPU; --backend cuda without\n"
    "            mpirun: one thread per GPU over one NCCL communicator)\n"
    "            [--routing-skew S]  (experts: a seeded Zipf-like preference, router logit\n"
    "            bias -S ln(rank); 0 = none; doc/MOE.md)\n"
    "            [--ep N]  (under mpirun: experts split over N ranks, tokens dispatched with\n"
    "            all-to-all; one --tp, 1 or N)";

static const char *tw_run_help =
    "  --threads T   worker threads; 0 (the default) means automatic: every core, divided by\n"
    "                the ranks sharing the host under mpirun\n"
    "  --seed S      seed of the synthetic weights and prompts (default 1, as tokwatt export)\n"
    "  --out         a folder (default results/: <UTC time>-<host>-<model>.json, a -2, -3...\n"
    "                suffix when the name is taken) or a new FILE.json; checked before anything\n"
    "                runs (writable, room for the result and the logits dump)\n"
    "  --watts W     assumed watts per device (> 0), labelled as assumed\n"
    "  --progress    progress on stderr (engine build, row i/N, repetition, decode step, ETA)\n"
    "                also when stderr is not a terminal (on a terminal it is always shown)\n"
    "  signals       SIGINT, SIGTERM, SIGHUP (any rank): the run stops and writes what it\n"
    "                measured, marked incomplete (exit 1); a second signal quits at once\n"
    "  --scenario    a serving run instead of a static batch: requests arrive (offline: all at\n"
    "                once; server/interactive: Poisson at --rate per second, seeded by --seed;\n"
    "                concurrency: --concurrency in flight) with --lengths, and are served by\n"
    "                continuous batching (--max-batch sequences and --step-tokens tokens per\n"
    "                step, prompts chunked) over a paged KV cache (--kv-blocks of --kv-block\n"
    "                tokens; default: room for --max-batch of the longest requests); the latency\n"
    "                limits are MLPerf's for the model (configs/serving/mlperf-limits.json, or\n"
    "                --limits-model NAME), or --ttft-ms/--tpot-ms; --find-rate searches the\n"
    "                highest rate meeting them (LoadGen's FindPeakPerformance, bounded)\n"
    "  exit codes    0 complete, 1 runtime failure or incomplete run, 2 bad argument";

typedef struct {
    tw_run_spec s;
    const char *out; /* --out as given */
    const char *preset_name;
    tw_preset preset; /* valid when preset_name */
    int progress;
    char out_dir[4096]; /* the folder the result goes into */
    int out_is_file;    /* --out names FILE.json */
    tw_format fmt;
    int serving; /* --scenario given */
    tw_serve_cli serve;
} tw_run_opts;

/* The serving options (--scenario and the rest); none given: a static batch run. */
static tw_status tw_run_parse_serving(tw_args *a, tw_run_opts *o) {
    tw_serve_cli *c = &o->serve;
    tw_serve_cli_defaults(c);
    const char *scen = NULL;
    TW_TRY(tw_args_str(a, "--scenario", NULL, &scen));
    o->serving = scen != NULL;
    if (!o->serving) return TW_OK;
    c->scenario = scen;
    long n;
    TW_TRY(tw_args_double(a, "--rate", c->rate_rps, 1e-6, 1e9, &c->rate_rps));
    TW_TRY(tw_args_int(a, "--concurrency", c->concurrency, 1, 1 << 20, &c->concurrency));
    TW_TRY(tw_args_long(a, "--requests", (long)c->n_requests, 0, 1L << 40, &n));
    c->n_requests = n;
    TW_TRY(tw_args_long(a, "--warmup-requests", 0, 0, 1L << 30, &n));
    c->n_warmup = n;
    TW_TRY(tw_args_double(a, "--duration", 0, 0, 1e9, &c->duration_s));
    TW_TRY(tw_args_str(a, "--lengths", c->lengths, &c->lengths));
    TW_TRY(tw_args_int(a, "--max-batch", c->max_batch, 1, 1 << 16, &c->max_batch));
    TW_TRY(tw_args_int(a, "--step-tokens", c->token_budget, 1, 1 << 24, &c->token_budget));
    c->chunked_prefill = !tw_args_flag(a, "--no-chunked-prefill");
    TW_TRY(tw_args_int(a, "--kv-block", c->kv_block_tokens, 1, 1 << 16, &c->kv_block_tokens));
    TW_TRY(tw_args_long(a, "--kv-blocks", 0, 0, 1L << 31, &n));
    c->kv_blocks = n;
    c->preempt = tw_args_flag(a, "--preempt");
    TW_TRY(tw_args_double(a, "--ttft-ms", 0, 1e-6, 1e9, &c->ttft_ms));
    TW_TRY(tw_args_double(a, "--tpot-ms", 0, 1e-6, 1e9, &c->tpot_ms));
    TW_TRY(tw_args_str(a, "--limits-model", NULL, &c->limits_model));
    c->find_rate = tw_args_flag(a, "--find-rate");
    TW_TRY(tw_args_double(a, "--min-rate", c->min_rate_rps, 1e-6, 1e9, &c->min_rate_rps));
    TW_TRY(tw_args_double(a, "--max-rate", c->max_rate_rps, 1e-6, 1e9, &c->max_rate_rps));
    TW_TRY(
        tw_args_int(a, "--max-trials", c->max_trials, 1, TW_FINDRATE_MAX_TRIALS, &c->max_trials));
    TW_TRY(tw_args_long(a, "--min-requests", (long)c->min_requests, 1, 1L << 30, &n));
    c->min_requests = n;
    return TW_OK;
}

static tw_status tw_parse_dtypes(const char *s, tw_dtype *out, int max, int *n) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n >= max) return TW_ERR(TW_ERR_INVALID, "option --dtype: more than %d values", max);
        tw_status st = tw_dtype_parse(tok, &out[*n]);
        if (st != TW_OK) return tw_error_ctx(st, "option --dtype");
        for (int i = 0; i < *n; i++)
            if (out[i] == out[*n]) return TW_ERR(TW_ERR_INVALID, "option --dtype: %s twice", tok);
        (*n)++;
    }
    if (*n == 0) return TW_ERR(TW_ERR_INVALID, "option --dtype: empty list");
    return TW_OK;
}

static tw_status tw_run_parse(tw_args *a, tw_run_opts *o) {
    o->progress = tw_args_flag(a, "--progress");
    const char *dt, *kvdt;
    /* a preset (configs/scenarios) gives the defaults; options given explicitly override it */
    static char d_batch[16] = "1", d_prompt[16] = "128", d_gen[16] = "32", d_tp[16] = "1";
    const char *d_model = "llama-3.2-1b", *d_dtype = "bf16", *d_kv = NULL;
    TW_TRY(tw_args_str(a, "--preset", NULL, &o->preset_name));
    if (o->preset_name) {
        TW_TRY(tw_preset_load(o->preset_name, &o->preset));
        snprintf(d_batch, sizeof d_batch, "%d", o->preset.batch);
        snprintf(d_prompt, sizeof d_prompt, "%d", o->preset.prompt);
        snprintf(d_gen, sizeof d_gen, "%d", o->preset.gen);
        snprintf(d_tp, sizeof d_tp, "%d", o->preset.tp);
        d_model = o->preset.model;
        d_dtype = o->preset.dtype;
        d_kv = o->preset.kv_dtype[0] ? o->preset.kv_dtype : NULL;
    }
    TW_TRY(tw_args_str(a, "--model", d_model, &o->s.model));
    TW_TRY(tw_args_str(a, "--backend", "cpu", &o->s.backend));
    TW_TRY(tw_args_str(a, "--gemm", NULL, &o->s.gemm));
    o->s.cuda_graph = tw_args_flag(a, "--cuda-graph");
    TW_TRY(tw_args_str(a, "--dtype", d_dtype, &dt));
    TW_TRY(tw_parse_dtypes(dt, o->s.dtype, 4, &o->s.ndtype));
    TW_TRY(tw_args_str(a, "--kv-dtype", d_kv, &kvdt));
    if (kvdt) {
        TW_TRY(tw_dtype_parse(kvdt, &o->s.kv_dtype));
        o->s.kv_given = 1;
    }
    TW_TRY(tw_args_int_list(a, "--batch", d_batch, 1, 4096, o->s.batch, TW_RUN_MAX_LIST,
                            &o->s.nbatch));
    TW_TRY(tw_args_int_list(a, "--prompt", d_prompt, 1, 1 << 20, o->s.prompt, TW_RUN_MAX_LIST,
                            &o->s.nprompt));
    TW_TRY(tw_args_int_list(a, "--gen", d_gen, 1, 1 << 20, o->s.gen, TW_RUN_MAX_LIST, &o->s.ngen));
    TW_TRY(tw_args_int_list(a, "--tp", d_tp, 1, 4096, o->s.tp, TW_RUN_MAX_LIST, &o->s.ntp));
    TW_TRY(tw_args_int(a, "--warmup", 1, 0, 1000, &o->s.warmup));
    TW_TRY(tw_args_int(a, "--reps", 3, 1, 1000, &o->s.reps));
    TW_TRY(tw_args_int(a, "--threads", 0, 0, 4096, &o->s.threads));
    TW_TRY(tw_args_int(a, "--device", 0, 0, 1024, &o->s.device));
    TW_TRY(tw_args_long(a, "--seed", TW_DEFAULT_SEED, 0, 0x7fffffffffffffffL, &o->s.seed));
    TW_TRY(tw_args_str(a, "--out", "results", &o->out));
    TW_TRY(tw_args_str(a, "--dump-logits", NULL, &o->s.dump));
    TW_TRY(tw_args_double(a, "--membw-gbps", 0, 0, 1e6, &o->s.membw_gbps));
    TW_TRY(tw_args_double(a, "--peak-gflops", 0, 0, 1e9, &o->s.peak_gflops));
    TW_TRY(tw_args_str(a, "--comm", "auto", &o->s.comm));
    TW_TRY(tw_args_double(a, "--comm-timeout", 60, 0.1, 86400, &o->s.comm_timeout_s));
    TW_TRY(tw_args_str(a, "--power", "auto", &o->s.power));
    /* 0 is "not given" (the default); given, the watts must be positive */
    TW_TRY(tw_args_double(a, "--watts", 0, 1e-3, 1e7, &o->s.watts));
    TW_TRY(tw_args_int(a, "--sample-ms", 50, 10, 100, &o->s.sample_ms));
    TW_TRY(tw_args_double(a, "--routing-skew", 0, 0, 100, &o->s.routing_skew));
    TW_TRY(tw_args_int(a, "--ep", 1, 1, 4096, &o->s.ep));
    TW_TRY(tw_args_format(a, &o->fmt));
    TW_TRY(tw_run_parse_serving(a, o));
    TW_TRY(tw_args_finish(a));
    static const char *const comms[] = {"auto", "mpi", "nccl", "local", "threads"};
    int comm_ok = 0;
    for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++)
        comm_ok |= !strcmp(o->s.comm, comms[i]);
    if (!comm_ok)
        return TW_ERR(TW_ERR_INVALID,
                      "option --comm: '%s' is not auto, mpi, nccl, local or threads", o->s.comm);
    static const char *const powers[] = {"auto", "nvml", "rapl", "assumed", "none"};
    int power_ok = 0;
    for (size_t i = 0; i < sizeof powers / sizeof powers[0]; i++)
        power_ok |= !strcmp(o->s.power, powers[i]);
    if (!power_ok)
        return TW_ERR(TW_ERR_INVALID,
                      "option --power: '%s' is not auto, nvml, rapl, assumed or none", o->s.power);
    TW_TRY(tw_run_spec_check_backend(&o->s));
    TW_TRY(tw_result_check_out(o->out, o->out_dir, sizeof o->out_dir, &o->out_is_file));
    if (o->s.dump) {
        struct stat sb;
        if (stat(o->s.dump, &sb) == 0 && S_ISDIR(sb.st_mode))
            return TW_ERR(TW_ERR_INVALID, "option --dump-logits %s: is a folder, not a file name",
                          o->s.dump);
    }
    if (o->s.watts > 0 && strcmp(o->s.power, "auto") && strcmp(o->s.power, "assumed"))
        return TW_ERR(TW_ERR_INVALID,
                      "--watts gives an assumed power: it goes with --power assumed");
    if (o->s.watts > 0) o->s.power = "assumed";
    for (int i = 0; i < o->s.ntp; i++)
        for (int j = 0; j < i; j++)
            if (o->s.tp[i] == o->s.tp[j])
                return TW_ERR(TW_ERR_INVALID, "option --tp: %d twice", o->s.tp[i]);
    TW_TRY(tw_run_spec_check_ep(&o->s));
    int ncombo = o->s.ntp * o->s.ndtype * o->s.nbatch * o->s.nprompt * o->s.ngen;
    if (o->s.dump && ncombo > 1)
        return TW_ERR(TW_ERR_INVALID, "--dump-logits needs a single combination, not a sweep of %d",
                      ncombo);
    o->s.out_dir = o->out_dir;
    o->s.preset = o->preset_name ? &o->preset : NULL;
    return TW_OK;
}

/* ---- progress and messages from the run (rank 0) ------------------------------------------- */

static void tw_run_on_progress(void *ctx, const tw_run_progress *p) {
    (void)ctx;
    switch (p->kind) {
    case TW_RUN_PROGRESS_BUILD:
        tw_progress_show(p->milestone, p->eta_s, "building the engine (%s): layer %d/%d", p->what,
                         p->done, p->total);
        break;
    case TW_RUN_PROGRESS_CEILING:
        tw_progress_show(p->milestone, p->eta_s, "measuring the %s", p->what);
        break;
    case TW_RUN_PROGRESS_PREFILL:
        tw_progress_show(p->milestone, p->eta_s, "row %d/%d %s: %s: prefill", p->row, p->nrows,
                         p->row_name, p->what);
        break;
    case TW_RUN_PROGRESS_DECODE:
        tw_progress_show(p->milestone, p->eta_s, "row %d/%d %s: %s: decode step %d/%d", p->row,
                         p->nrows, p->row_name, p->what, p->done, p->total);
        break;
    }
}

static void tw_run_on_message(void *ctx, tw_run_message_kind kind, const char *text) {
    (void)ctx;
    if (kind == TW_RUN_ERROR) {
        tw_progress_clear();
        fprintf(stderr, "tokwatt run: error: %s\n", text);
    } else {
        tw_log("%s", text);
    }
}

/* ---- printing -----------------------------------------------------------------------------------
 */

/* The experts of a mixture-of-experts row (doc/MOE.md), and its all-to-alls under --ep. */
static void tw_print_experts(const tw_result_experts *x) {
    printf("experts: %.2f of %d reached per MoE layer by a decode step (%.2f expected under "
           "uniform routing), the busiest expert at %.2fx the mean load (routing skew %g)\n",
           x->decode_experts_per_layer, x->n_experts, x->decode_experts_per_layer_uniform,
           x->max_over_mean_load, x->routing_skew);
    if (x->has_ep) {
        const tw_result_ep *p = &x->ep;
        printf("expert parallel over %d ranks: all-to-all %.1f%% of the measured time (dispatch "
               "%.3f s, combine %.3f s, %lld calls, %.2f MB sent, busbw %.2f GB/s)\n",
               p->ep, 100 * p->alltoall_share, p->dispatch_s, p->combine_s, p->alltoall_calls,
               p->alltoall_bytes / 1e6, p->alltoall_busbw_gbps);
    }
}

/* The markdown table (llama-bench style) and the per-combination lines. */
static void tw_print_table(const tw_run_opts *o, const tw_run *run, const tw_result *res) {
    const tw_model_config *cfg = tw_run_model(run);
    const tw_backend *be = tw_run_backend(run);
    /* a tp column only for a --tp sweep (a single degree's table stays as it was) */
    int tpcol = o->s.ntp > 1;
    const char *head8[] = {"model", "params", "backend", "threads",
                           "dtype", "test",   "t/s",     "spread (min-max)"};
    const char *head9[] = {"model", "params", "backend", "threads",         "tp",
                           "dtype", "test",   "t/s",     "spread (min-max)"};
    tw_table t;
    tw_table_init(&t, tpcol ? 9 : 8, tpcol ? head9 : head8);
    char params[32];
    double np = (double)tw_model_params(cfg);
    if (np >= 1e9)
        snprintf(params, sizeof params, "%.2f B", np / 1e9);
    else
        snprintf(params, sizeof params, "%.2f M", np / 1e6);
    const char *bn = be->ops->name;
    for (int i = 0; i < res->nrows; i++) {
        const tw_result_row *r = &res->rows[i];
        const tw_result_scenario *c = &r->scenario;
        const tw_metrics *m = &r->metrics;
        char tp[16] = "";
        if (tpcol) snprintf(tp, sizeof tp, "|%d", c->tp);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|pp%d (batch %d)|%.2f|%.2f-%.2f", cfg->name, params, bn,
                      be->threads, tp, c->dtype, c->prompt, c->batch,
                      m->prefill_tokens_per_s.median, m->prefill_tokens_per_s.min,
                      m->prefill_tokens_per_s.max);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|tg%d (batch %d)|%.2f|%.2f-%.2f", cfg->name, params, bn,
                      be->threads, tp, c->dtype, c->gen, c->batch, m->decode_tokens_per_s.median,
                      m->decode_tokens_per_s.min, m->decode_tokens_per_s.max);
        tw_table_addf(&t, "%s|%s|%s|%d%s|%s|e2e (batch %d)|%.2f|%.2f-%.2f", cfg->name, params, bn,
                      be->threads, tp, c->dtype, c->batch, m->e2e_tokens_per_s.median,
                      m->e2e_tokens_per_s.min, m->e2e_tokens_per_s.max);
    }
    tw_table_print(&t, TW_FMT_MD, stdout);
    tw_table_free(&t);
    const tw_result_roofline *roof = &res->roofline;
    for (int i = 0; i < res->nrows; i++) {
        const tw_result_row *r = &res->rows[i];
        const tw_metrics *m = &r->metrics;
        char name[160];
        tw_run_row_name(r, o->s.ntp > 1, name, sizeof name);
        int n = res->nrows;
        printf("\n%s%s\n", n > 1 ? "## " : "", n > 1 ? name : "");
        printf("TTFT %.4f s (median)   TPOT mean %.4f s, p50 %.4f s, p99 %.4f s\n",
               m->ttft_s.median, m->tpot_s.mean, m->tpot_s.p50, m->tpot_s.p99);
        printf("decode: %.2f GB/s of required bytes = %.1f%% of %s %.2f GB/s\n",
               m->decode_bandwidth_gbps, 100 * m->decode_bandwidth_fraction, roof->membw_source,
               isfinite(roof->membw_gbps) ? roof->membw_gbps : 0.0);
        /* bf16 rows' MFU is against the bf16 ceiling */
        const int bf = !strcmp(r->scenario.dtype, "bf16");
        const double pk = bf ? roof->peak_bf16_gflops : roof->peak_gflops;
        printf("prefill: %.2f GFLOP/s = %.1f%% of %s %.2f GFLOP/s (MFU)\n", m->prefill_gflops,
               100 * m->prefill_mfu, bf ? roof->peak_bf16_source : roof->peak_source,
               isfinite(pk) ? pk : 0.0);
        if (isfinite(m->decode_roofline_fraction))
            printf("decode step: %.2f GFLOP/s = %.1f%% of that peak; %.1f%% of its roofline (the "
                   "larger of bytes / read ceiling and FLOPs / peak)\n",
                   m->decode_gflops, 100 * m->decode_mfu, 100 * m->decode_roofline_fraction);
        if (m->exceeds_ceiling > 0)
            printf("WARNING: a fraction above 100%%: the measured ceiling is below what this run "
                   "reached, so the fraction is not meaningful\n");
        if (roof->has_datasheet && m->has_datasheet &&
            (isfinite(roof->datasheet_membw_gbps) || isfinite(roof->datasheet_peak_gflops)))
            printf("datasheet: decode %.1f%% of %.0f GB/s, prefill %.1f%% of %.0f GFLOP/s dense "
                   "bf16 (%s)\n",
                   100 * m->decode_bandwidth_fraction_datasheet,
                   isfinite(roof->datasheet_membw_gbps) ? roof->datasheet_membw_gbps : 0.0,
                   100 * m->prefill_mfu_datasheet,
                   isfinite(roof->datasheet_peak_gflops) ? roof->datasheet_peak_gflops : 0.0,
                   roof->datasheet_source);
        else if (roof->has_datasheet)
            printf("datasheet: none (%s)\n", roof->datasheet_source);
        if (isfinite(r->energy.e2e.j_per_token))
            printf("energy%s: %.1f W mean per device, %.4f J per generated token (e2e)\n",
                   r->energy.assumed ? " (ASSUMED watts, not measured)" : "",
                   tw_run_row_watts_per_device(r), r->energy.e2e.j_per_token);
        else
            printf("energy: not measured\n");
        if (r->has_experts) tw_print_experts(&r->experts);
        if (tw_run_launched(run))
            printf("%s: %d rank%s over %s, collectives %.1f%% of measured time\n",
                   r->scenario.ep > 1 ? "tensor/expert parallel" : "tensor parallel",
                   r->scenario.devices, r->scenario.devices > 1 ? "s" : "", tw_run_comm_kind(run),
                   100 * m->collective_share);
        printf("%s\n", r->projection_headline);
        if (r->has_dump && !r->dump_written) printf("LOGITS DUMP FAILED: %s\n", r->dump_error);
        if (!r->complete) printf("INCOMPLETE: %s\n", r->incomplete_reason);
    }
    if (o->preset_name) {
        printf("\npreset %s: synthetic, not a submission. It cannot reproduce:\n", o->preset.name);
        for (int i = 0; i < o->preset.n_caveats; i++) printf("  - %s\n", o->preset.caveats[i]);
    }
}

/* CSV: one line per combination with every figure of its row, plus the run's ceilings and
 * parameter count (tw_csv_rows: dotted JSON names with units, plain numbers). */
static void tw_print_csv(const tw_result *res) {
    json_t *flat = json_array();
    for (int i = 0; i < res->nrows; i++) {
        json_t *o = tw_result_row_to_json(&res->rows[i]);
        if (!strcmp(res->kind, "run")) {
            /* a single run states its completeness at the top of the file */
            json_object_set_new(o, "complete", json_boolean(res->complete));
            if (!res->complete)
                json_object_set_new(o, "incomplete_reason", json_string(res->incomplete_reason));
        }
        json_object_set_new(o, "roofline", tw_result_roofline_to_json(&res->roofline));
        json_object_set_new(o, "memory", tw_result_memory_to_json(&res->memory));
        json_object_del(o, "prompt_tokens");
        json_object_del(o, "generated_tokens");
        json_array_append_new(flat, o);
    }
    tw_csv_rows(stdout, flat);
    json_decref(flat);
}

/* A serving row, as vLLM's benchmark_serving prints it, with the MLPerf constraint and the KV
 * pool's figures. */
static void tw_print_dist_ms(const char *title, const char *name, const tw_serve_dist *d) {
    const char *which[] = {"Mean", "Median", "P99"};
    double val[] = {d->mean, d->median, d->p99};
    printf("%s\n", title);
    for (int i = 0; i < 3; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s %s", which[i], name);
        printf("%-40s %.2f\n", label, 1e3 * val[i]);
    }
}

static void tw_print_serving(const tw_result_row *r) {
    const tw_serve_result *v = r->serving;
    const tw_serve_summary *s = &v->summary;
    char what[160];
    if (!strcmp(v->scenario, "server") || !strcmp(v->scenario, "interactive"))
        snprintf(what, sizeof what, "%s, Poisson %.3f requests/s, seed %llu", v->scenario,
                 v->rate_rps, (unsigned long long)v->seed);
    else if (!strcmp(v->scenario, "concurrency"))
        snprintf(what, sizeof what, "concurrency %d, seed %llu", v->concurrency,
                 (unsigned long long)v->seed);
    else
        snprintf(what, sizeof what, "offline, seed %llu", (unsigned long long)v->seed);
    printf("============ Serving Benchmark Result ============\n");
    printf("%-40s %s\n", "Scenario:", what);
    printf("%-40s %s\n", "Lengths:", v->lengths);
    printf("%-40s %lld\n", "Successful requests:", (long long)s->n_measured);
    if (s->n_warmup_excluded)
        printf("%-40s %lld\n", "Warm-up requests (excluded):", (long long)s->n_warmup_excluded);
    printf("%-40s %.2f\n", "Benchmark duration (s):", s->window_s);
    printf("%-40s %lld\n", "Total input tokens:", (long long)s->input_tokens);
    printf("%-40s %lld\n", "Total generated tokens:", (long long)s->output_tokens);
    printf("%-40s %.2f\n", "Request throughput (req/s):", s->request_rps);
    printf("%-40s %.2f\n", "Output token throughput (tok/s):", s->output_tps);
    printf("%-40s %.2f\n", "Total Token throughput (tok/s):", s->total_tps);
    if (s->slo_given) printf("%-40s %.2f\n", "Request goodput (req/s):", s->goodput_rps);
    tw_print_dist_ms("---------------Time to First Token----------------", "TTFT (ms):", &s->ttft);
    tw_print_dist_ms("-----Time per Output Token (excl. 1st token)------", "TPOT (ms):", &s->tpot);
    tw_print_dist_ms("---------------Inter-token Latency----------------", "ITL (ms):", &s->itl);
    tw_print_dist_ms("----------------End-to-end Latency----------------", "E2EL (ms):", &s->e2e);
    tw_print_dist_ms("-----------------Queueing Delay-------------------",
                     "queue (ms):", &s->queue);
    printf("-----------------MLPerf constraint----------------\n");
    if (s->limits_given) {
        printf("%-40s TTFT %.0f ms, TPOT %.0f ms at p%.0f\n", "Limits:", 1e3 * s->limits.ttft_s,
               1e3 * s->limits.tpot_s, s->limits.percentile);
        printf("%-40s %s\n", "  from:", v->limits_source);
        printf("%-40s %.2f (%s)\n", "p99 TTFT, LoadGen's rule (ms):", 1e3 * s->ttft_pctl_s,
               s->ttft_met ? "met" : "NOT met");
        printf("%-40s %.2f (%s)\n", "p99 TPOT, LoadGen's rule (ms):", 1e3 * s->tpot_pctl_s,
               s->tpot_met ? "met" : "NOT met");
        printf("%-40s %s\n", "Constraint met:", s->constraint_met ? "yes" : "NO");
        if (!s->min_duration_met)
            printf("%-40s %.0f s < MLPerf's %.0f s minimum: not a valid MLPerf run\n",
                   "Duration:", s->window_s, s->limits.min_duration_s);
    } else {
        printf("%-40s %s\n", "Limits:", v->limits_source);
    }
    printf("%-40s %lld peak of %d blocks of %d tokens, %lld leaked, %lld preemptions\n",
           "KV cache:", (long long)v->kv_blocks_peak, v->kv_blocks, v->kv_block_tokens,
           (long long)v->kv_blocks_leaked, (long long)s->n_preemptions);
    printf("%-40s %d sequences, %d tokens per step\n", "Batching:", v->max_batch,
           v->step_token_budget);
    if (v->has_findrate) {
        const tw_findrate_result *f = &v->findrate;
        printf("--------------------find-rate---------------------\n");
        for (int i = 0; i < f->n_trials; i++)
            printf("  trial %2d: %10.3f req/s  %-6s p99 TTFT %9.2f ms  p99 TPOT %8.2f ms\n", i + 1,
                   f->trials[i].rate_rps, f->trials[i].outcome.met ? "met" : "failed",
                   1e3 * f->trials[i].outcome.ttft_pctl_s, 1e3 * f->trials[i].outcome.tpot_pctl_s);
        printf("%-40s %s: %.3f req/s (lowest failing: %.3f)\n",
               "Max rate meeting the limits:", tw_findrate_verdict_name(f->verdict), f->rate_rps,
               f->upper_rps);
    }
    printf("==================================================\n");
    if (isfinite(r->energy.e2e.j_per_token))
        printf("energy%s: %.1f W mean per device, %.4f J per generated token\n",
               r->energy.assumed ? " (ASSUMED watts, not measured)" : "",
               tw_run_row_watts_per_device(r), r->energy.e2e.j_per_token);
    else
        printf("energy: not measured\n");
    printf("%s\n", r->projection_headline);
    if (!r->complete) printf("INCOMPLETE: %s\n", r->incomplete_reason);
}

static tw_status tw_print_result(const tw_run_opts *o, const tw_run *run, const tw_result *res) {
    if (o->fmt == TW_FMT_JSON) {
        json_t *root = NULL;
        TW_TRY(tw_result_to_json(res, &root));
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) puts(text);
        free(text);
        json_decref(root);
    } else if (o->fmt == TW_FMT_CSV) {
        tw_print_csv(res);
    } else if (res->nrows == 1 && res->rows[0].serving) {
        tw_print_serving(&res->rows[0]);
    } else {
        tw_print_table(o, run, res);
    }
    return TW_OK;
}

int tw_cmd_run(int argc, char **argv) {
    tw_args a;
    tw_run_opts o;
    memset(&o, 0, sizeof o);
    if (tw_args_init(&a, "tokwatt run", tw_run_usage, argc, argv) != TW_OK) return TW_EXIT_FAIL;
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n%s\n", tw_run_usage, tw_run_help);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    tw_status st = tw_run_parse(&a, &o);
    if (st != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        /* a preset file that does not parse is a broken input, not a bad argument */
        return st == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL;
    }
    tw_args_free(&a);
    tw_serve_ctx *sctx = NULL;
    if (o.serving) {
        o.serve.seed = (uint64_t)o.s.seed;
        if ((st = tw_serve_cli_prepare(&o.serve, o.s.model, o.s.preset, &o.s, &sctx)) != TW_OK) {
            fprintf(stderr, "tokwatt run: error: %s\n", tw_error_text());
            if (st == TW_ERR_INVALID) fprintf(stderr, "(tokwatt run --help for the options)\n");
            return st == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL;
        }
    }

    int rc = TW_EXIT_FAIL;
    tw_run *run = NULL;
    tw_result res;
    memset(&res, 0, sizeof res);
    tw_run_outcome oc;
    memset(&oc, 0, sizeof oc);
    tw_interrupt_install();
    tw_progress_set_mode(tw_progress_choose(o.progress));
    tw_run_callbacks cb = {
        .ctx = NULL, .progress = tw_run_on_progress, .message = tw_run_on_message};
    st = tw_run_open(&o.s, &cb, &run);
    if (run && tw_run_rank(run) != 0) {
        tw_log_quiet(1);
        tw_progress_set_mode(TW_PROGRESS_OFF);
    }
    if (st != TW_OK) goto fail;
    if ((st = sctx ? tw_run_execute_with(run, tw_serve_measure, sctx, &res, &oc)
                   : tw_run_execute(run, &res, &oc)) != TW_OK)
        goto fail;
    tw_progress_clear();

    if (tw_run_rank(run) != 0) {
        /* rank 0 writes the result and, after an interruption, ends the job */
        tw_run_finish(run, TW_EXIT_FAIL);
        rc = oc.interrupted ? TW_EXIT_FAIL : TW_EXIT_OK;
        goto done;
    }
    if (oc.measured == 0) {
        fprintf(stderr,
                "tokwatt run: %s before any repetition completed: nothing was measured, no "
                "result written\n",
                oc.nothing_why);
        tw_run_abort(run, TW_EXIT_FAIL);
        goto done;
    }
    tw_run_saved saved;
    if ((st = tw_run_save(run, &res, o.out_is_file ? o.out : NULL, &saved)) != TW_OK) goto fail;
    if (saved.failed) {
        fprintf(stderr, "tokwatt run: error: cannot write the result to %s: %s\n", saved.path,
                saved.error);
        if (!saved.fallback_error[0])
            fprintf(stderr, "tokwatt run: the result was written to %s instead\n", saved.written);
        else
            fprintf(stderr, "tokwatt run: error: the fallback failed too: %s; the result is lost\n",
                    saved.fallback_error);
    } else if (saved.renamed) {
        tw_log("%s exists: the result takes the next free name", saved.path);
    }
    if ((st = tw_print_result(&o, run, &res)) != TW_OK) goto fail;
    if (!saved.failed) tw_log("result written to %s", saved.written);
    rc = oc.incomplete || saved.failed || oc.dump_failed ? TW_EXIT_FAIL : TW_EXIT_OK;
    if (tw_run_launched(run) && oc.interrupted) {
        /* the other ranks wait for this one (or were abandoned in a collective): end them */
        char who[64];
        tw_run_signal_text(run, who, sizeof who);
        fprintf(stderr, "tokwatt run: interrupted by %s: result written; ending the other ranks\n",
                who);
        tw_run_finish(run, TW_EXIT_FAIL);
    }
    goto done;
fail:
    tw_progress_clear();
    if (run && tw_run_launched(run)) {
        /* one rank's failure ends the whole job now, rather than at the peers' timeout */
        fprintf(stderr, "tokwatt run: rank %d: error: %s\n", tw_run_rank(run), tw_error_text());
        tw_run_abort(run, st == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL);
    }
    fprintf(stderr, "tokwatt run: error: %s\n", tw_error_text());
    rc = st == TW_ERR_INVALID ? TW_EXIT_USAGE : TW_EXIT_FAIL;
done:
    tw_progress_clear();
    tw_serve_ctx_free(sctx);
    tw_result_free(&res);
    tw_run_close(run);
    return rc;
}
