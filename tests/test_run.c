/* The run library (harness/run): the plan of every combination, in order, with its engine group
 * sized by hand here; a combination that does not fit refused by name before anything runs; a
 * run loop of another kind plugged in through tw_run_execute_with, sharing the plan, the engines
 * and the rows; the default measurement's figures against the metrics functions; an
 * interruption at a known repetition (raised from the progress callback) leaving exactly the
 * repetitions before it, marked with the signal; the callbacks called, nothing printed. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/run/tw_run.h"
#include "tw_metrics.h"
#include "tw_util.h"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/tw-test-run-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(run, .init = setup, .fini = teardown);

static tw_run_spec tiny_spec(void) {
    tw_run_spec s;
    memset(&s, 0, sizeof s);
    s.model = "tiny";
    s.backend = "cpu";
    s.power = "none";
    s.sample_ms = 50;
    s.comm = "auto";
    s.comm_timeout_s = 60;
    s.batch[0] = 1, s.nbatch = 1;
    s.prompt[0] = 5, s.nprompt = 1;
    s.gen[0] = 3, s.ngen = 1;
    s.tp[0] = 1, s.ntp = 1;
    s.dtype[0] = TW_BF16, s.ndtype = 1;
    s.warmup = 0;
    s.reps = 2;
    s.threads = 1;
    s.seed = 7;
    s.membw_gbps = 10;
    s.peak_gflops = 20;
    s.out_dir = dir;
    return s;
}

/* What the callbacks saw. */
typedef struct {
    int notes, errors, builds, prefills, decodes;
    char last_note[512];
    const char *raise_at; /* raise SIGTERM at this repetition's second decode step */
} seen;

static void on_progress(void *ctx, const tw_run_progress *p) {
    seen *s = ctx;
    if (p->kind == TW_RUN_PROGRESS_BUILD) s->builds++;
    if (p->kind == TW_RUN_PROGRESS_PREFILL) s->prefills++;
    if (p->kind == TW_RUN_PROGRESS_DECODE) {
        s->decodes++;
        if (s->raise_at && !strcmp(p->what, s->raise_at) && p->done == 2) raise(SIGTERM);
    }
}

static void on_message(void *ctx, tw_run_message_kind kind, const char *text) {
    seen *s = ctx;
    if (kind == TW_RUN_ERROR)
        s->errors++;
    else
        s->notes++;
    snprintf(s->last_note, sizeof s->last_note, "%s", text);
}

Test(run, every_combination_planned_once_in_order) {
    tw_run_spec s = tiny_spec();
    s.dtype[1] = TW_F32, s.ndtype = 2;
    s.batch[1] = 3, s.nbatch = 2;
    s.gen[0] = 4, s.gen[1] = 2, s.ngen = 2;
    s.warmup = 1;
    tw_model_config cfg;
    cr_assert_eq(tw_model_load("tiny", &cfg), TW_OK, "%s", tw_last_error());
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_create("cpu", 1, 0, &be), TW_OK, "%s", tw_last_error());
    tw_run_plan p;
    cr_assert_eq(tw_run_plan_make(&s, &cfg, be, 0, &p), TW_OK, "%s", tw_last_error());
    cr_assert_eq(p.ncombo, 8);
    cr_assert_eq(p.ngroups, 2);
    /* dtype outermost (after tp), then batch, prompt, gen as given */
    int want_b[8] = {1, 1, 3, 3, 1, 1, 3, 3}, want_g[8] = {4, 2, 4, 2, 4, 2, 4, 2};
    double work = 0;
    for (int i = 0; i < 8; i++) {
        const tw_run_combo *k = &p.combos[i];
        cr_assert_eq(k->dtype, i < 4 ? TW_BF16 : TW_F32, "combination %d", i);
        cr_assert_eq(k->kv_dtype, k->dtype, "the KV cache follows the weights by default");
        cr_assert_eq(k->batch, want_b[i]);
        cr_assert_eq(k->gen, want_g[i]);
        cr_assert_eq(k->group, i < 4 ? 0 : 1);
        cr_assert(k->planned);
        cr_assert_eq(k->plan.total_bytes,
                     k->plan.weights_bytes + k->plan.kv_bytes + k->plan.act_bytes);
        work += 3.0 * k->batch * (5 + k->gen - 1); /* (warm-up 1 + reps 2) x B x (P + G - 1) */
    }
    cr_assert_eq(p.work_tokens, work);
    /* each group's engine: the largest batch 3, prompt 5 and sequence 5 + 4 */
    for (int g = 0; g < 2; g++) {
        cr_assert_eq(p.groups[g].max_batch, 3);
        cr_assert_eq(p.groups[g].max_prompt, 5);
        cr_assert_eq(p.groups[g].max_seq, 9);
        cr_assert(p.groups[g].shared, "tiny combinations fit together");
        cr_assert_geq(p.groups[g].plan.kv_bytes, p.combos[g * 4 + 2].plan.kv_bytes);
    }
    char name[160];
    tw_run_combo_name(&p.combos[5], 1, name, sizeof name);
    cr_assert_str_eq(name, "tp=1 dtype=fp32 kv=fp32 batch=1 prompt=5 gen=2");
    tw_run_plan_free(&p);
    tw_backend_destroy(be);
    tw_model_free(&cfg);
}

Test(run, a_combination_that_does_not_fit_is_refused_by_name_before_anything_runs) {
    tw_run_spec s = tiny_spec();
    s.model = "llama-3.1-405b";
    s.dtype[0] = TW_F32;
    seen sn = {0};
    tw_run_callbacks cb = {&sn, on_progress, on_message};
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, &cb, &r), TW_ERR_NOMEM);
    cr_assert(strstr(tw_last_error(),
                     "combination dtype=fp32 kv=fp32 batch=1 prompt=5 gen=3 does not fit on cpu"),
              "%s", tw_last_error());
    cr_assert(strstr(tw_last_error(), "nothing was run"), "%s", tw_last_error());
    cr_assert_eq(sn.builds + sn.prefills, 0, "nothing was built or run");
    cr_assert_not_null(r, "the run is returned for closing");
    tw_run_close(r);
}

/* A run loop of another kind: it fills a row from the combination alone. */
static tw_status fake_measure(tw_run *r, tw_engine *e, const tw_run_combo *k, tw_result_row *row,
                              void *ctx) {
    int *calls = ctx;
    (*calls)++;
    cr_assert_not_null(e, "the loop gets its engine");
    cr_assert_eq(tw_run_rank(r), 0);
    snprintf(row->scenario.model, sizeof row->scenario.model, "tiny");
    snprintf(row->scenario.backend, sizeof row->scenario.backend, "cpu");
    snprintf(row->scenario.dtype, sizeof row->scenario.dtype, "%s", tw_dtype_name(k->dtype));
    snprintf(row->scenario.kv_dtype, sizeof row->scenario.kv_dtype, "%s",
             tw_dtype_name(k->kv_dtype));
    row->scenario.batch = k->batch;
    row->scenario.prompt = k->prompt;
    row->scenario.gen = k->gen;
    row->scenario.tp = row->scenario.devices = k->tp;
    row->complete = 1;
    row->metrics.repetitions_complete = 1;
    row->metrics.e2e_tokens_per_s.median = 100.0 * k->batch;
    tw_energy_init(&row->energy);
    snprintf(row->energy.source, sizeof row->energy.source, "none");
    row->has_energy = 1;
    snprintf(row->projection_headline, sizeof row->projection_headline, "none");
    return TW_OK;
}

Test(run, another_run_loop_shares_plan_engines_and_rows) {
    tw_run_spec s = tiny_spec();
    s.batch[1] = 2, s.nbatch = 2;
    seen sn = {0};
    tw_run_callbacks cb = {&sn, on_progress, on_message};
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, &cb, &r), TW_OK, "%s", tw_last_error());
    tw_result res;
    tw_run_outcome oc;
    int calls = 0;
    cr_assert_eq(tw_run_execute_with(r, fake_measure, &calls, &res, &oc), TW_OK, "%s",
                 tw_last_error());
    cr_assert_eq(calls, 2);
    cr_assert_eq(oc.measured, 2);
    cr_assert_not(oc.incomplete || oc.interrupted);
    cr_assert_str_eq(res.kind, "sweep");
    cr_assert(res.complete);
    cr_assert_eq(res.nrows, 2);
    for (int i = 0; i < 2; i++) {
        const tw_result_plan *p = &res.rows[i].plan;
        cr_assert(p->present, "each row records its plan");
        cr_assert(p->engine_shared);
        cr_assert_eq(p->engine_max_batch, 2, "one engine sized for batch 2");
        cr_assert_eq(p->total_bytes, p->weights_bytes + p->kv_cache_bytes + p->activation_bytes);
    }
    cr_assert_lt(res.rows[0].plan.kv_cache_bytes, res.rows[1].plan.kv_cache_bytes,
                 "batch 1 needs less KV cache than batch 2");
    cr_assert_eq(res.memory.params, 391008);
    cr_assert_eq(res.roofline.membw_gbps, 10.0);
    cr_assert_eq(sn.builds > 0, 1, "the engine build was reported");
    cr_assert_eq(sn.errors, 0);
    /* and it saves as a result file */
    tw_run_saved saved;
    cr_assert_eq(tw_run_save(r, &res, NULL, &saved), TW_OK, "%s", tw_last_error());
    cr_assert_not(saved.failed, "%s", saved.error);
    tw_result back;
    cr_assert_eq(tw_result_read_file(saved.written, &back), TW_OK, "%s", tw_last_error());
    cr_assert_eq(back.nrows, 2);
    cr_assert_eq(back.rows[1].metrics.e2e_tokens_per_s.median, 200.0);
    cr_assert_eq(back.schema_minor, TW_RESULT_SCHEMA_MINOR);
    tw_result_free(&back);
    tw_result_free(&res);
    tw_run_close(r);
}

Test(run, the_default_measurement_uses_the_metric_functions) {
    tw_run_spec s = tiny_spec();
    s.power = "assumed";
    s.watts = 40;
    s.reps = 3; /* odd: the median TTFT is one repetition's, whose tokens/s is the median */
    seen sn = {0};
    tw_run_callbacks cb = {&sn, on_progress, on_message};
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, &cb, &r), TW_OK, "%s", tw_last_error());
    tw_result res;
    tw_run_outcome oc;
    cr_assert_eq(tw_run_execute(r, &res, &oc), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(res.kind, "run");
    cr_assert_eq(res.nrows, 1);
    const tw_result_row *row = &res.rows[0];
    const tw_metrics *m = &row->metrics;
    cr_assert_eq(m->repetitions_complete, 3);
    cr_assert_eq(m->tpot_s.n, 6, "3 repetitions x 2 decode steps");
    cr_assert_eq(m->decode_bytes_per_step,
                 tw_metric_decode_bytes_per_step(tw_run_model(r), TW_BF16, TW_BF16, 1,
                                                 tw_metric_decode_context(5, 3), 0));
    cr_assert_lt(fabs(m->prefill_tokens_per_s.median * m->ttft_s.median - 5) / 5, 1e-9,
                 "prefill tokens/s x TTFT = B x P");
    cr_assert(m->ttft_s.median > 0 && isfinite(m->e2e_tokens_per_s.median));
    cr_assert_eq(row->token_batch, 1);
    cr_assert_eq(row->token_gen, 3);
    cr_assert(row->energy.assumed);
    cr_assert_eq(row->energy.e2e.tokens, 3.0 * 3, "e2e tokens: reps x B x G");
    cr_assert_eq(tw_run_row_watts_per_device(row), 40.0);
    cr_assert(strstr(row->projection_headline, "and 40 W per device"), "%s",
              row->projection_headline);
    cr_assert_gt(sn.prefills, 0);
    cr_assert_gt(sn.decodes, 0);
    tw_result_free(&res);
    tw_run_close(r);
}

Test(run, an_interruption_keeps_the_repetitions_before_it) {
    tw_interrupt_install();
    tw_run_spec s = tiny_spec();
    s.reps = 5;
    s.gen[0] = 4;
    seen sn = {.raise_at = "repetition 3/5"};
    tw_run_callbacks cb = {&sn, on_progress, on_message};
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, &cb, &r), TW_OK, "%s", tw_last_error());
    tw_result res;
    tw_run_outcome oc;
    cr_assert_eq(tw_run_execute(r, &res, &oc), TW_OK, "%s", tw_last_error());
    cr_assert(oc.interrupted && oc.incomplete);
    cr_assert_eq(oc.measured, 1);
    cr_assert_not(res.complete);
    cr_assert(res.interrupted);
    cr_assert_str_eq(res.interrupted_signal, "SIGTERM");
    cr_assert_eq(res.rows[0].metrics.repetitions_complete, 2,
                 "repetitions 1 and 2 completed; the third was under way");
    cr_assert_eq(res.rows[0].energy.prefill.regions, 2, "the partial repetition's energy went");
    cr_assert(strstr(res.incomplete_reason, "SIGTERM during dtype=bf16 kv=bf16 batch=1 prompt=5 "
                                            "gen=4 (2 of 5 repetitions complete)"),
              "%s", res.incomplete_reason);
    tw_result_free(&res);
    tw_run_close(r);
}

Test(run, backend_options_are_checked_against_the_backend) {
    tw_run_spec s = tiny_spec();
    cr_assert_eq(tw_run_spec_check_backend(&s), TW_OK);
    s.power = "nvml";
    cr_assert_eq(tw_run_spec_check_backend(&s), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "--power nvml reads NVIDIA GPUs"), "%s", tw_last_error());
    s.power = "none";
    s.cuda_graph = 1;
    cr_assert_eq(tw_run_spec_check_backend(&s), TW_ERR_INVALID);
    s.cuda_graph = 0;
    s.backend = "tpu";
    cr_assert_eq(tw_run_spec_check_backend(&s), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "'tpu' is not cpu or cuda"), "%s", tw_last_error());
    s.backend = "cuda";
    s.gemm = "cublas";
    s.power = "nvml";
    cr_assert_eq(tw_run_spec_check_backend(&s), TW_OK);
}

/* A mixture of experts: the row's experts block holds the load of the measured repetitions only
 * (every prefill and decode token's k slots on every MoE layer: 2 repetitions x (2 x 6 + 2 x 3)
 * tokens x 3 slots x 2 layers; the warm-up is not counted), the skew and the scenario say so,
 * and the decode bytes count the experts the engine saw a decode step reach. */
Test(run, a_mixture_of_experts_row_counts_the_experts_of_the_measured_repetitions) {
    tw_run_spec s = tiny_spec();
    s.model = "tiny-qwen3-moe";
    s.batch[0] = 2;
    s.prompt[0] = 6;
    s.gen[0] = 4;
    s.warmup = 1;
    s.routing_skew = 1.5;
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, NULL, &r), TW_OK, "%s", tw_last_error());
    tw_result res;
    tw_run_outcome oc;
    cr_assert_eq(tw_run_execute(r, &res, &oc), TW_OK, "%s", tw_last_error());
    cr_assert_eq(res.nrows, 1);
    const tw_result_row *row = &res.rows[0];
    cr_assert(row->has_experts);
    const tw_result_experts *x = &row->experts;
    cr_assert(x->n_experts == 12 && x->experts_per_token == 3 && x->moe_layers == 2);
    long long sum = 0, per = 0;
    for (int i = 0; i < x->n_experts; i++) sum += x->load[i];
    for (int i = 0; i < x->n_experts * x->moe_layers; i++) per += x->load_per_layer[i];
    cr_assert_eq(sum, 2 * (12 + 6) * 3 * 2, "routed slots %lld", sum);
    cr_assert_eq(per, sum);
    cr_assert_eq(x->max_over_mean_load, tw_metric_expert_max_over_mean(x->load, x->n_experts));
    cr_assert(x->decode_experts_per_layer >= 3 && x->decode_experts_per_layer <= 6, "%g",
              x->decode_experts_per_layer);
    cr_assert_eq(x->decode_experts_per_layer_uniform,
                 tw_metric_uniform_experts(tw_run_model(r), 2));
    cr_assert_not(x->has_ep);
    cr_assert_eq(x->routing_skew, 1.5);
    cr_assert(row->scenario.has_routing_skew && row->scenario.routing_skew == 1.5);
    cr_assert_eq(row->scenario.ep, 0);
    cr_assert_eq(row->metrics.decode_bytes_per_step,
                 tw_metric_decode_bytes_per_step(tw_run_model(r), TW_BF16, TW_BF16, 2,
                                                 tw_metric_decode_context(6, 4),
                                                 x->decode_experts_per_layer));
    cr_assert_lt(row->metrics.decode_bytes_per_step,
                 tw_metric_decode_bytes_per_step(tw_run_model(r), TW_BF16, TW_BF16, 2,
                                                 tw_metric_decode_context(6, 4), 12),
                 "fewer bytes than every expert's");
    tw_result_free(&res);
    tw_run_close(r);
}

/* --ep is checked in the library too: one --tp of 1 or N, and a launcher */
Test(run, expert_parallelism_needs_one_matching_tp_and_a_launcher) {
    tw_run_spec s = tiny_spec();
    s.model = "tiny-mixtral";
    s.ep = 2;
    s.tp[0] = 1, s.tp[1] = 2, s.ntp = 2;
    cr_assert_eq(tw_run_spec_check_ep(&s), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "--ep 2 goes with one --tp"), "%s", tw_last_error());
    s.ntp = 1, s.tp[0] = 4;
    cr_assert_eq(tw_run_spec_check_ep(&s), TW_ERR_INVALID);
    s.tp[0] = 2;
    cr_assert_eq(tw_run_spec_check_ep(&s), TW_OK);
    cr_assert_eq(tw_run_degree_ranks(&s, 2), 2);
    s.tp[0] = 1;
    cr_assert_eq(tw_run_degree_ranks(&s, 1), 2, "attention replicated over the ep ranks");
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, NULL, &r), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "no MPI launcher (1 rank) but --ep is 2"), "%s",
              tw_last_error());
    tw_run_close(r);
}
