/* serve_fixture_gen CASE OUT.json (build/tests/serve_fixture_gen): writes the serving fixtures of
 * tests/data/results
 * (serving.json, serving-findrate.json) from the simulation driver (harness/serve/serve_sim.c),
 * not from hand-written numbers: a simulated server whose step takes a + b * positions seconds
 * (SERVE_FX_STEP_* below), the shipped llama3.1-8b-cnndm lengths (input 1024, output 1..128),
 * the MLPerf llama3_1-8b Server limits read from configs/serving/mlperf-limits.json.
 *
 *   serving           one Poisson rate (SERVE_FX_RATE_RPS, past the capacity the search finds:
 *                     some requests miss the targets), 200 measured + 20 warm-up requests
 *   serving-findrate  the capacity search (tw_findrate over tw_serve_sim_trial), then a measured
 *                     run at the rate it found, kept with every trial
 *
 * The rest of the row is filled as tokwatt run fills a serving row: metrics.e2e_tokens_per_s is
 * the run's output tokens/s, the energy an assumed SERVE_FX_WATTS per device over the window. The
 * model is named llama-3.1-8b so that compare finds the published MLPerf Server rows; nothing here
 * ran the model: provenance.generator says so. test_serve_result runs this program again and
 * compares what it writes with the kept files (provenance aside, numbers to 1e-9 relative). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/serve/tw_serve_sim.h"
#include "tw_config.h"
#include "tw_metrics.h"
#include "tw_model.h"
#include "tw_project.h"
#include "tw_results.h"
#include "tw_util.h"

#define SERVE_FX_MODEL        "llama-3.1-8b"
#define SERVE_FX_LENGTHS      "llama3.1-8b-cnndm"
#define SERVE_FX_SEED         2026
#define SERVE_FX_STEP_A_S     0.012
#define SERVE_FX_STEP_B_S     0.00004
#define SERVE_FX_RATE_RPS     26.0
#define SERVE_FX_REQUESTS     200
#define SERVE_FX_WARMUP       20
#define SERVE_FX_WATTS        700.0
#define SERVE_FX_MAX_BATCH    64
#define SERVE_FX_BUDGET       2048
#define SERVE_FX_KV_BLOCKS    8192
#define SERVE_FX_BLOCK_TOKENS 16

static tw_serve_sim_config fx_sim(const tw_loadgen_lengths *L) {
    tw_serve_sim_config c;
    memset(&c, 0, sizeof c);
    c.load.lengths = L;
    c.load.seed = SERVE_FX_SEED;
    c.load.scenario = TW_LOADGEN_SERVER;
    c.load.rate_rps = SERVE_FX_RATE_RPS;
    c.load.n_requests = SERVE_FX_REQUESTS;
    c.load.n_warmup = SERVE_FX_WARMUP;
    c.sched = (tw_sched_config){.max_batch = SERVE_FX_MAX_BATCH,
                                .token_budget = SERVE_FX_BUDGET,
                                .chunked_prefill = 1,
                                .kv_policy = TW_KV_PREEMPT};
    c.kv_blocks = SERVE_FX_KV_BLOCKS;
    c.kv_block_tokens = SERVE_FX_BLOCK_TOKENS;
    c.step_a_s = SERVE_FX_STEP_A_S;
    c.step_b_s = SERVE_FX_STEP_B_S;
    return c;
}

/* The serving block of one simulated run. */
static tw_status fx_serving(const tw_serve_sim_config *c, const tw_serve_limits *lim,
                            const tw_serve_slo *slo, tw_serve_result *out) {
    memset(out, 0, sizeof *out);
    tw_serve_sim_result r;
    TW_TRY(tw_serve_sim_run(c, &r));
    double t0 = 0, t1 = 0;
    tw_status st = tw_serve_sim_window(&r, &t0, &t1);
    if (st == TW_OK) st = tw_serve_summarize(r.rec, r.n, t0, t1, 1, slo, lim, &out->summary);
    if (st == TW_OK && !(out->requests = calloc((size_t)r.n, sizeof *out->requests)))
        st = TW_ERR(TW_ERR_NOMEM, "fixture: requests");
    if (st != TW_OK) {
        tw_serve_sim_free(&r);
        return st;
    }
    for (int64_t i = 0; i < r.n; i++) {
        const tw_serve_record *x = &r.rec[i];
        out->requests[i] = (tw_serve_result_request){
            x->id,       x->warmup,       x->arrival_s,     x->admit_s,    x->first_token_s,
            x->finish_s, x->input_tokens, x->output_tokens, x->preemptions};
    }
    out->n_requests = r.n;
    snprintf(out->scenario, sizeof out->scenario, "%s", tw_loadgen_scenario_name(c->load.scenario));
    out->rate_rps = c->load.rate_rps;
    out->seed = c->load.seed;
    snprintf(out->lengths, sizeof out->lengths, "%s", c->load.lengths->name);
    snprintf(out->lengths_origin, sizeof out->lengths_origin, "configs/serving/lengths/%s.json",
             c->load.lengths->name);
    out->requests_asked = c->load.n_requests;
    out->duration_asked_s = c->load.duration_s;
    out->warmup_requests = c->load.n_warmup;
    out->step_token_budget = c->sched.token_budget;
    out->max_batch = c->sched.max_batch;
    out->kv_block_tokens = c->kv_block_tokens;
    out->kv_blocks = (int)c->kv_blocks;
    out->kv_blocks_peak = r.kv_peak_used_blocks;
    out->kv_blocks_leaked = r.kv_leaked_blocks;
    snprintf(out->limits_source, sizeof out->limits_source,
             "configs/serving/mlperf-limits.json (%.40s %.12s): %.280s", lim->conf_model,
             lim->scenario, lim->source);
    out->complete = 1;
    tw_serve_sim_free(&r);
    return TW_OK;
}

static tw_status tw_serve_fixture_generate(int findrate, tw_result *res) {
    memset(res, 0, sizeof *res);
    tw_loadgen_lengths L;
    TW_TRY(tw_loadgen_lengths_load(SERVE_FX_LENGTHS, &L));
    tw_serve_limits lim;
    tw_status st = tw_serve_limits_load(NULL, SERVE_FX_MODEL, "server", &lim);
    tw_serve_slo slo = {lim.ttft_s, lim.tpot_s, 0};
    tw_serve_sim_config c = fx_sim(&L);
    tw_serve_result *sv = calloc(1, sizeof *sv);
    tw_findrate_config fc = {.rate_start_rps = 2,
                             .rate_min_rps = 0.25,
                             .rate_max_rps = 256,
                             .step = 1,
                             .decimals = 1,
                             .max_trials = 24,
                             .min_requests = SERVE_FX_REQUESTS};
    tw_findrate_result fr;
    if (st == TW_OK && !sv) st = TW_ERR(TW_ERR_NOMEM, "fixture");
    if (st == TW_OK && findrate) {
        tw_serve_sim_trial_ctx tc = {.base = c, .limits = lim, .slo = slo, .min_duration_s = 30};
        tc.base.load.n_warmup = 0;
        st = tw_findrate(&fc, tw_serve_sim_trial, &tc, &fr);
        if (st == TW_OK && !isfinite(fr.rate_rps))
            st = TW_ERR(TW_ERR_INTERNAL, "fixture: the search found no rate (%s)",
                        tw_findrate_verdict_name(fr.verdict));
        c.load.rate_rps = fr.rate_rps;
    }
    if (st == TW_OK) st = fx_serving(&c, &lim, &slo, sv);
    if (st == TW_OK && findrate) {
        sv->has_findrate = 1;
        sv->findrate_config = fc;
        sv->findrate = fr;
    }
    tw_model_config mc;
    memset(&mc, 0, sizeof mc);
    if (st == TW_OK) st = tw_model_load(SERVE_FX_MODEL, &mc);
    res->rows = calloc(1, sizeof *res->rows);
    if (st == TW_OK && !res->rows) st = TW_ERR(TW_ERR_NOMEM, "fixture");
    if (st != TW_OK) {
        tw_loadgen_lengths_free(&L);
        tw_serve_result_free(sv);
        free(sv);
        tw_model_free(&mc);
        free(res->rows);
        res->rows = NULL;
        return st;
    }
    res->schema_version = TW_RESULT_SCHEMA_MAJOR;
    res->schema_minor = TW_RESULT_SCHEMA_MINOR;
    snprintf(res->kind, sizeof res->kind, "run");
    res->complete = 1;
    res->nrows = 1;
    json_error_t jerr;
    res->model = json_loads(mc.json, 0, &jerr);
    tw_result_row *row = &res->rows[0];
    row->complete = 1;
    tw_result_scenario *s = &row->scenario;
    snprintf(s->model, sizeof s->model, SERVE_FX_MODEL);
    snprintf(s->backend, sizeof s->backend, "cpu");
    s->threads = 1;
    snprintf(s->dtype, sizeof s->dtype, "bf16");
    snprintf(s->kv_dtype, sizeof s->kv_dtype, "bf16");
    int in_max, out_max;
    int64_t tot_max;
    tw_loadgen_lengths_max(&L, &in_max, &out_max, &tot_max);
    s->batch = SERVE_FX_MAX_BATCH;
    s->prompt = in_max;
    s->gen = out_max;
    s->warmup = 0;
    s->reps = 1;
    s->seed = SERVE_FX_SEED;
    s->tp = 1;
    s->devices = 1;
    /* metrics as tokwatt run fills them for a serving row (harness/serve/serve_engine_run.c):
     * e2e tokens/s is the run's output tokens/s, every measured request's, met or not; TTFT and
     * TPOT over the measured requests; what the simulation has no counterpart for is null */
    tw_metrics *m = &row->metrics;
    tw_stats nan_stats = {0, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    m->prefill_tokens_per_s = m->decode_tokens_per_s = nan_stats;
    double e2e = sv->summary.output_tps;
    m->e2e_tokens_per_s = (tw_stats){1, e2e, e2e, e2e, e2e, 0, e2e, e2e};
    double *lat = malloc(sizeof *lat * (size_t)sv->n_requests);
    int nl = 0;
    for (int pass = 0; lat && pass < 2; pass++) {
        nl = 0;
        for (int64_t i = 0; i < sv->n_requests; i++) {
            const tw_serve_result_request *q = &sv->requests[i];
            if (q->warmup || (pass && q->output_tokens < 2)) continue;
            lat[nl++] = pass ? (q->finish_s - q->first_token_s) / (q->output_tokens - 1)
                             : q->first_token_s - q->arrival_s;
        }
        if (pass)
            m->tpot_s = tw_stats_of(lat, nl);
        else
            m->ttft_s = tw_stats_of(lat, nl);
    }
    free(lat);
    /* the scenario's fields (batch = max_batch, the longest lengths) as a static run has them */
    m->decode_bytes_per_step = tw_metric_decode_bytes_per_step(
        &mc, TW_BF16, TW_BF16, s->batch, tw_metric_decode_context(s->prompt, s->gen), 0);
    m->decode_bandwidth_gbps = m->decode_bandwidth_fraction = NAN;
    m->prefill_flops = m->prefill_gflops = m->prefill_mfu = NAN;
    m->collective_share = 0;
    m->repetitions_complete = 1;
    /* energy: assumed watts over the measured window */
    row->has_energy = 1;
    tw_energy *e = &row->energy;
    tw_energy_init(e);
    snprintf(e->source, sizeof e->source, "assumed");
    e->assumed = 1;
    snprintf(e->label, sizeof e->label, "assumed: %.0f W per device given by the user",
             SERVE_FX_WATTS);
    snprintf(e->method, sizeof e->method,
             "assumed: %.0f W per device given by the user (--watts), not measured",
             SERVE_FX_WATTS);
    e->devices = 1;
    e->sample_interval_ms = 50;
    e->assumed_w_per_device = SERVE_FX_WATTS;
    e->e2e.present = 1;
    e->e2e.seconds = sv->summary.window_s;
    e->e2e.energy_j = SERVE_FX_WATTS * e->e2e.seconds;
    e->e2e.mean_power_w = e->e2e.mean_power_w_per_device = e->e2e.peak_power_w = SERVE_FX_WATTS;
    e->e2e.tokens = (double)sv->summary.output_tokens;
    e->e2e.j_per_token = e->e2e.energy_j / e->e2e.tokens;
    e->e2e.tokens_per_j = e->e2e.tokens / e->e2e.energy_j;
    e->e2e.has_derived = 1;
    snprintf(e->trace_note, sizeof e->trace_note, "no trace: nothing is measured");
    if (tw_project_headline(e2e, SERVE_FX_WATTS, e->label, 1, row->projection_headline,
                            sizeof row->projection_headline) != TW_OK)
        snprintf(row->projection_headline, sizeof row->projection_headline,
                 "projection unavailable: %s", tw_error_text());
    row->serving = sv;
    res->roofline.present = 1;
    res->roofline.membw_gbps = res->roofline.peak_gflops = NAN;
    snprintf(res->roofline.membw_source, sizeof res->roofline.membw_source, "not measured");
    snprintf(res->roofline.peak_source, sizeof res->roofline.peak_source, "not measured");
    res->memory.present = 1;
    res->memory.params = (long long)tw_model_params(&mc);
    res->provenance = tw_provenance_json("cpu", 0, 0);
    char gen[512];
    snprintf(
        gen, sizeof gen,
        "tests/serve_fixture_gen.c %s: SIMULATED, not a measurement: harness/serve/serve_sim.c "
        "with a step of %g s + %g s per position, lengths %s, seed %d; no model ran",
        findrate ? "serving-findrate" : "serving", SERVE_FX_STEP_A_S, SERVE_FX_STEP_B_S,
        SERVE_FX_LENGTHS, SERVE_FX_SEED);
    json_object_set_new(res->provenance, "generator", json_string(gen));
    tw_model_free(&mc);
    tw_loadgen_lengths_free(&L);
    return TW_OK;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "serving") && strcmp(argv[1], "serving-findrate"))) {
        fprintf(stderr, "usage: serve_fixture_gen serving|serving-findrate OUT.json\n");
        return 2;
    }
    tw_result r;
    json_t *j = NULL;
    tw_status st = tw_serve_fixture_generate(!strcmp(argv[1], "serving-findrate"), &r);
    if (st == TW_OK) st = tw_result_to_json(&r, &j);
    char final[4096];
    if (st == TW_OK) st = tw_result_write(j, argv[2], final, sizeof final);
    json_decref(j);
    if (st == TW_OK) tw_result_free(&r);
    if (st != TW_OK) {
        fprintf(stderr, "serve_fixture_gen: %s\n", tw_error_text());
        return 1;
    }
    printf("wrote %s\n", final);
    return 0;
}
