/* The serving engine (harness/serve/tw_serve_engine.h) on the CPU with the tiny models: the
 * greedy tokens of every request under continuous batching (chunked prefill mixed with decodes,
 * paged KV through block tables, preemption, varied lengths and arrival orders) equal those of
 * the same request run alone through the static engine (tw_engine_prefill + tw_engine_decode,
 * the contiguous KV cache); every KV block is free at the end; admission waits when blocks run
 * out; a request that can never fit is refused, named, before anything runs; a stop keeps the
 * finished requests. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tw_serve_engine.h"
#include "tw_backend.h"
#include "tw_engine.h"
#include "tw_model.h"

typedef struct {
    const char *model;
    tw_dtype w_dtype, kv_dtype;
    tw_loadgen_scenario scenario;
    double rate;
    int concurrency;
    int n_requests;
    int in_lo, in_hi, out_lo, out_hi;
    uint64_t seed;
    tw_sched_config sched;
    int64_t kv_blocks;
    int kv_block_tokens;
    int stop_after_steps; /* 0: never */
} se_case;

static uint64_t k_weight_seed = 4242;
static uint64_t k_prompt_seed = 77;

/* The request alone through the static engine. */
static void run_alone(const tw_model_config *cfg, tw_backend *be, const se_case *k, int64_t id,
                      int in, int out, int *tokens) {
    tw_engine_opts o = {.cfg = cfg,
                        .be = be,
                        .w_dtype = k->w_dtype,
                        .kv_dtype = k->kv_dtype,
                        .max_batch = 1,
                        .max_seq = in + out,
                        .max_prefill = in,
                        .seed = k_weight_seed,
                        .tp_size = 1};
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    int *prompt = malloc(sizeof(int) * (size_t)in);
    for (int p = 0; p < in; p++)
        prompt[p] = tw_serve_prompt_token(k_prompt_seed, id, p, cfg->vocab);
    int next = -1;
    cr_assert_eq(tw_engine_prefill(e, 1, in, prompt, &next), TW_OK, "%s", tw_last_error());
    tokens[0] = next;
    for (int g = 1; g < out; g++) {
        int t = next;
        cr_assert_eq(tw_engine_decode(e, 1, &t, &next), TW_OK, "%s", tw_last_error());
        tokens[g] = next;
    }
    free(prompt);
    tw_engine_destroy(e);
}

typedef struct {
    int64_t steps_seen, limit;
} se_stop;

static void se_progress(void *ctx, int64_t fin, int64_t issued, int64_t steps) {
    (void)fin, (void)issued;
    ((se_stop *)ctx)->steps_seen = steps;
}
static int se_should_stop(void *ctx) {
    se_stop *s = ctx;
    return s->limit > 0 && s->steps_seen >= s->limit;
}

/* Runs the case through the serving engine; checks accounting; returns the result. */
static tw_status run_served(const se_case *k, tw_model_config *cfg, tw_backend *be,
                            tw_loadgen_lengths *L, tw_serve_engine_result *r) {
    cr_assert_eq(tw_model_load(k->model, cfg), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_loadgen_lengths_uniform(L, k->in_lo, k->in_hi, k->out_lo, k->out_hi), TW_OK);
    tw_engine_opts o = {.cfg = cfg,
                        .be = be,
                        .w_dtype = k->w_dtype,
                        .kv_dtype = k->kv_dtype,
                        .max_batch = k->sched.max_batch,
                        .max_seq = k->in_hi + k->out_hi,
                        .max_prefill = 1,
                        .seed = k_weight_seed,
                        .tp_size = 1,
                        .kv_blocks = k->kv_blocks,
                        .kv_block_tokens = k->kv_block_tokens,
                        .max_step_tokens = k->sched.token_budget};
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    se_stop stop = {0, k->stop_after_steps};
    tw_serve_engine_config c = {.load = {.scenario = k->scenario,
                                         .rate_rps = k->rate,
                                         .concurrency = k->concurrency,
                                         .n_requests = k->n_requests,
                                         .seed = k->seed,
                                         .lengths = L},
                                .sched = k->sched,
                                .kv_blocks = k->kv_blocks,
                                .kv_block_tokens = k->kv_block_tokens,
                                .prompt_seed = k_prompt_seed,
                                .stop = se_should_stop,
                                .stop_ctx = &stop,
                                .progress = se_progress,
                                .progress_ctx = &stop,
                                .check_invariants = 1,
                                .keep_tokens = 1};
    tw_status st = tw_serve_engine_run(e, &c, r);
    tw_engine_destroy(e);
    return st;
}

static void check_case(const se_case *k) {
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(2, &be), TW_OK);
    tw_model_config cfg;
    tw_loadgen_lengths L;
    tw_serve_engine_result r;
    cr_assert_eq(run_served(k, &cfg, be, &L, &r), TW_OK, "%s: %s", k->model, tw_last_error());
    cr_assert_eq(r.n, k->n_requests);
    cr_expect_eq(r.n_finished, k->n_requests);
    cr_expect_eq(r.kv_leaked_blocks, 0, "%lld KV blocks leaked", (long long)r.kv_leaked_blocks);
    cr_expect(r.kv_peak_used_blocks <= k->kv_blocks);
    cr_expect(r.max_step_tokens <= k->sched.token_budget);
    cr_expect(r.max_step_items <= k->sched.max_batch);
    int distinct_in = 0;
    for (int64_t i = 0; i < r.n; i++) {
        const tw_serve_record *q = &r.rec[i];
        distinct_in += i > 0 && q->input_tokens != r.rec[i - 1].input_tokens;
        cr_assert(isfinite(q->finish_s) && q->arrival_s <= q->admit_s &&
                      q->admit_s <= q->first_token_s && q->first_token_s <= q->finish_s,
                  "request %lld's times are out of order", (long long)i);
        int *alone = malloc(sizeof(int) * (size_t)q->output_tokens);
        run_alone(&cfg, be, k, i, q->input_tokens, q->output_tokens, alone);
        const int *got = r.tokens + r.tok_off[i];
        for (int g = 0; g < q->output_tokens; g++)
            cr_expect_eq(got[g], alone[g],
                         "%s request %lld (in %d, out %d): token %d is %d served, %d alone",
                         k->model, (long long)i, q->input_tokens, q->output_tokens, g, got[g],
                         alone[g]);
        free(alone);
    }
    cr_expect(distinct_in > 0, "the lengths should vary");
    tw_serve_engine_free(&r);
    tw_loadgen_lengths_free(&L);
    tw_model_free(&cfg);
    tw_backend_destroy(be);
}

Test(serve_engine, chunked_prefill_offline_matches_alone) {
    /* budget 16 < most prompts: prompts split over steps, decodes of earlier requests mixed in */
    se_case k = {.model = "tiny",
                 .w_dtype = TW_F32,
                 .kv_dtype = TW_F32,
                 .scenario = TW_LOADGEN_OFFLINE,
                 .n_requests = 7,
                 .in_lo = 1,
                 .in_hi = 45,
                 .out_lo = 1,
                 .out_hi = 13,
                 .seed = 3,
                 .sched = {.max_batch = 4, .token_budget = 16, .chunked_prefill = 1},
                 .kv_blocks = 64,
                 .kv_block_tokens = 8};
    check_case(&k);
}

Test(serve_engine, preemption_and_bf16_matches_alone) {
    /* a pool of 12 blocks of 5: requests of up to 40 + 12 positions crowd each other out */
    se_case k = {.model = "tiny-qwen2",
                 .w_dtype = TW_BF16,
                 .kv_dtype = TW_BF16,
                 .scenario = TW_LOADGEN_OFFLINE,
                 .n_requests = 6,
                 .in_lo = 10,
                 .in_hi = 40,
                 .out_lo = 2,
                 .out_hi = 12,
                 .seed = 11,
                 .sched = {.max_batch = 3,
                           .token_budget = 24,
                           .chunked_prefill = 1,
                           .kv_policy = TW_KV_PREEMPT},
                 .kv_blocks = 12,
                 .kv_block_tokens = 5};
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(2, &be), TW_OK);
    tw_model_config cfg;
    tw_loadgen_lengths L;
    tw_serve_engine_result r;
    cr_assert_eq(run_served(&k, &cfg, be, &L, &r), TW_OK, "%s", tw_last_error());
    cr_expect(r.preemptions > 0, "this pool should force preemptions (got none)");
    tw_serve_engine_free(&r);
    tw_loadgen_lengths_free(&L);
    tw_model_free(&cfg);
    tw_backend_destroy(be);
    check_case(&k);
}

Test(serve_engine, sliding_window_closed_loop_matches_alone) {
    /* window 7, shorter than the prompts: the paged kernels must apply it as the static ones */
    se_case k = {.model = "tiny-mistral",
                 .w_dtype = TW_F32,
                 .kv_dtype = TW_BF16,
                 .scenario = TW_LOADGEN_CONCURRENCY,
                 .concurrency = 2,
                 .n_requests = 5,
                 .in_lo = 3,
                 .in_hi = 30,
                 .out_lo = 1,
                 .out_hi = 10,
                 .seed = 5,
                 .sched = {.max_batch = 2, .token_budget = 9, .chunked_prefill = 1},
                 .kv_blocks = 40,
                 .kv_block_tokens = 4};
    check_case(&k);
}

Test(serve_engine, server_arrivals_and_waiting_admission) {
    /* Poisson arrivals on the wall clock; a pool holding about one request: admission waits
     * (reserve policy, nothing preempted) and every request still finishes */
    se_case k = {.model = "tiny",
                 .w_dtype = TW_F32,
                 .kv_dtype = TW_F32,
                 .scenario = TW_LOADGEN_SERVER,
                 .rate = 400,
                 .n_requests = 6,
                 .in_lo = 4,
                 .in_hi = 20,
                 .out_lo = 2,
                 .out_hi = 8,
                 .seed = 9,
                 .sched = {.max_batch = 4, .token_budget = 32, .chunked_prefill = 1},
                 .kv_blocks = 4,
                 .kv_block_tokens = 8};
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(2, &be), TW_OK);
    tw_model_config cfg;
    tw_loadgen_lengths L;
    tw_serve_engine_result r;
    cr_assert_eq(run_served(&k, &cfg, be, &L, &r), TW_OK, "%s", tw_last_error());
    cr_expect_eq(r.preemptions, 0);
    cr_expect(r.kv_peak_used_blocks <= 4);
    cr_expect_eq(r.kv_leaked_blocks, 0);
    tw_serve_engine_free(&r);
    tw_loadgen_lengths_free(&L);
    tw_model_free(&cfg);
    tw_backend_destroy(be);
    check_case(&k);
}

Test(serve_engine, refuses_a_request_that_never_fits) {
    /* request lengths 20..60 + 10: 69 positions need 9 blocks of 8; the pool has 6 */
    se_case k = {.model = "tiny",
                 .w_dtype = TW_F32,
                 .kv_dtype = TW_F32,
                 .scenario = TW_LOADGEN_OFFLINE,
                 .n_requests = 5,
                 .in_lo = 20,
                 .in_hi = 60,
                 .out_lo = 10,
                 .out_hi = 10,
                 .seed = 1,
                 .sched = {.max_batch = 2, .token_budget = 16, .chunked_prefill = 1},
                 .kv_blocks = 6,
                 .kv_block_tokens = 8};
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK);
    tw_model_config cfg;
    tw_loadgen_lengths L;
    tw_serve_engine_result r;
    cr_assert_eq(run_served(&k, &cfg, be, &L, &r), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "request ") && strstr(tw_last_error(), "never be served"),
              "%s", tw_last_error());
    cr_expect_eq(r.steps, 0, "nothing may run before the refusal");
    tw_loadgen_lengths_free(&L);
    tw_model_free(&cfg);
    tw_backend_destroy(be);
}

Test(serve_engine, stop_keeps_finished_requests) {
    se_case k = {.model = "tiny",
                 .w_dtype = TW_F32,
                 .kv_dtype = TW_F32,
                 .scenario = TW_LOADGEN_CONCURRENCY,
                 .concurrency = 1,
                 .n_requests = 6,
                 .in_lo = 3,
                 .in_hi = 6,
                 .out_lo = 3,
                 .out_hi = 3,
                 .seed = 2,
                 .sched = {.max_batch = 1, .token_budget = 8, .chunked_prefill = 1},
                 .kv_blocks = 8,
                 .kv_block_tokens = 4,
                 .stop_after_steps = 7}; /* 3 steps a request: two finish, the third is cut */
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK);
    tw_model_config cfg;
    tw_loadgen_lengths L;
    tw_serve_engine_result r;
    cr_assert_eq(run_served(&k, &cfg, be, &L, &r), TW_OK, "%s", tw_last_error());
    cr_expect_eq(r.interrupted, 1);
    cr_expect_eq(r.steps, 7);
    cr_expect_eq(r.n_finished, 2);
    tw_serve_record *fin = NULL;
    int64_t nf = 0;
    double t0, t1;
    cr_assert_eq(tw_serve_engine_finished(&r, &fin, &nf, &t0, &t1), TW_OK);
    cr_expect_eq(nf, 2);
    for (int64_t i = 0; i < nf; i++) cr_expect(isfinite(fin[i].finish_s));
    tw_serve_summary s;
    cr_expect_eq(tw_serve_summarize(fin, nf, t0, t1, 1, NULL, NULL, &s), TW_OK, "%s",
                 tw_last_error());
    cr_expect_eq(s.n_measured, 2);
    free(fin);
    tw_serve_engine_free(&r);
    tw_loadgen_lengths_free(&L);
    tw_model_free(&cfg);
    tw_backend_destroy(be);
}
