/* The simulation driver tying the load generator, scheduler, KV pool, metrics and capacity
 * search together over a fake engine (step = a + b * tokens): exact figures for a closed loop in
 * lockstep, determinism, every request finishing with no leaked block and a follower replaying
 * every plan, refusal before running of a KV cache too small for the lengths allowed, and the
 * capacity search converging to the analytically known capacity of an M/D/1 server (and
 * reporting a server that can never meet its TTFT limit). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness/serve/tw_serve_sim.h"

static tw_serve_sim_config base(const tw_loadgen_lengths *L) {
    tw_serve_sim_config c;
    memset(&c, 0, sizeof c);
    c.load.lengths = L;
    c.load.seed = 2718;
    c.sched = (tw_sched_config){
        .max_batch = 8, .token_budget = 512, .chunked_prefill = 1, .kv_policy = TW_KV_PREEMPT};
    c.kv_blocks = 4096;
    c.kv_block_tokens = 16;
    c.step_a_s = 0.01;
    c.step_b_s = 0.001;
    c.check_invariants = 1;
    c.replay_follower = 1;
    return c;
}

/* Concurrency 4, batch 4, lengths 50 in / 6 out: the four run in lockstep. A wave is a prefill
 * step of 200 positions (0.01 + 0.2 s) emitting every first token, then 5 decode steps of 4
 * positions (0.014 s each); the next wave is issued at the finish and admitted at once.
 *   TTFT = 0.21 s, TPOT = 0.014 s, E2E = 0.21 + 5 * 0.014 = 0.28 s for every request,
 *   the window is 5 waves (one warm-up wave excluded): from 0.28 s to 6 * 0.28 s. */
Test(serve_sim, closed_loop_lockstep_exact) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 50, 6), TW_OK);
    tw_serve_sim_config c = base(&L);
    c.load.scenario = TW_LOADGEN_CONCURRENCY;
    c.load.concurrency = 4;
    c.load.n_warmup = 4;
    c.load.n_requests = 20;
    c.sched.max_batch = 4;
    tw_serve_sim_result r;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.n, 24);
    cr_assert_eq(r.steps, 36, "6 waves of 6 steps");
    cr_assert_eq(r.max_step_tokens, 200);
    cr_assert_eq(r.kv_leaked_blocks, 0);
    for (int i = 0; i < 24; i++) {
        int wave = i / 4;
        cr_assert_lt(fabs(r.rec[i].arrival_s - wave * 0.28), 1e-12, "request %d arrival", i);
        cr_assert_lt(fabs(tw_serve_ttft_s(&r.rec[i]) - 0.21), 1e-12, "request %d TTFT", i);
        cr_assert_lt(fabs(tw_serve_tpot_s(&r.rec[i]) - 0.014), 1e-12);
        cr_assert_lt(fabs(tw_serve_e2e_s(&r.rec[i]) - 0.28), 1e-12);
        cr_assert_eq(r.rec[i].warmup, i < 4);
    }
    double t0, t1;
    cr_assert_eq(tw_serve_sim_window(&r, &t0, &t1), TW_OK);
    cr_assert_lt(fabs(t0 - 0.28), 1e-12);
    cr_assert_lt(fabs(t1 - 6 * 0.28), 1e-12);
    tw_serve_summary s;
    cr_assert_eq(tw_serve_summarize(r.rec, r.n, t0, t1, 2, NULL, NULL, &s), TW_OK);
    cr_assert_lt(fabs(s.request_rps - 20 / 1.4), 1e-9);
    cr_assert_lt(fabs(s.output_tps - 120 / 1.4), 1e-9);
    cr_assert_lt(fabs(s.total_tps_per_device - 1120 / 1.4 / 2), 1e-9);
    cr_assert_lt(fabs(s.itl.max - 0.014), 1e-12);
    tw_serve_sim_free(&r);
}

/* Server and offline runs with histogram lengths, tight KV (preemption) and chunked prefill:
 * every request finishes with all its tokens, latencies are consistent, nothing leaks, the
 * follower's block tables match after every step, and a second run is identical. */
Test(serve_sim, server_and_offline_runs_finish_and_repeat) {
    const char *H = "{\"schema_version\": 1, \"name\": \"h\", \"source\": \"test\", \"stand_in\": "
                    "\"all\", \"input\": {\"kind\": \"histogram\", \"bins\": [[5, 40, 3], "
                    "[41, 300, 1]]}, \"output\": {\"kind\": \"uniform\", \"min\": 1, \"max\": 80}}";
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_parse(H, "inline", &L), TW_OK, "%s", tw_last_error());
    const tw_loadgen_scenario scen[2] = {TW_LOADGEN_SERVER, TW_LOADGEN_OFFLINE};
    for (int k = 0; k < 2; k++) {
        tw_serve_sim_config c = base(&L);
        c.load.scenario = scen[k];
        c.load.rate_rps = 20;
        c.load.n_requests = 300;
        c.load.n_warmup = 10;
        c.sched.max_batch = 16;
        c.sched.token_budget = 96;
        c.kv_blocks = 60; /* 960 positions: the longest request takes 379 */
        tw_serve_sim_result a, b;
        cr_assert_eq(tw_serve_sim_run(&c, &a), TW_OK, "%s", tw_last_error());
        cr_assert_eq(tw_serve_sim_run(&c, &b), TW_OK);
        cr_assert_eq(a.n, 310);
        cr_assert_eq(a.kv_leaked_blocks, 0);
        cr_assert_gt(a.preemptions, 0, "the tight pool forced preemption (scenario %d)", k);
        cr_assert_leq(a.max_step_tokens, 96);
        cr_assert_leq(a.max_step_items, 16);
        cr_assert_leq(a.kv_peak_used_blocks, 60);
        int64_t pre = 0;
        for (int64_t i = 0; i < a.n; i++) {
            const tw_serve_record *x = &a.rec[i];
            cr_assert(x->arrival_s <= x->admit_s && x->admit_s < x->first_token_s &&
                          x->first_token_s <= x->finish_s,
                      "request %lld", (long long)i);
            cr_assert_eq(x->token_s[x->output_tokens - 1], x->finish_s);
            if (scen[k] == TW_LOADGEN_OFFLINE) cr_assert_eq(x->arrival_s, 0.0);
            pre += x->preemptions;
            cr_assert_eq(memcmp(x, &b.rec[i], offsetof(tw_serve_record, token_s)), 0,
                         "run 2 differs at request %lld", (long long)i);
        }
        cr_assert_eq(pre, a.preemptions);
        cr_assert_eq(memcmp(a.token_s, b.token_s, sizeof(double) * 10), 0);
        double t0, t1;
        cr_assert_eq(tw_serve_sim_window(&a, &t0, &t1), TW_OK);
        tw_serve_summary s;
        cr_assert_eq(tw_serve_summarize(a.rec, a.n, t0, t1, 1, NULL, NULL, &s), TW_OK, "%s",
                     tw_last_error());
        cr_assert_eq(s.n_measured, 300);
        /* no request can beat one step of its own prefill */
        cr_assert_geq(s.ttft.min, 0.01 + 0.001 * 1 - 1e-12);
        tw_serve_sim_free(&a);
        tw_serve_sim_free(&b);
    }
    tw_loadgen_lengths_free(&L);
}

Test(serve_sim, impossible_configuration_refused_before_running) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_uniform(&L, 10, 100, 1, 61), TW_OK);
    tw_serve_sim_config c = base(&L);
    c.load.scenario = TW_LOADGEN_OFFLINE;
    c.load.n_requests = 5;
    c.kv_blocks = 10; /* 160 positions; the longest request needs 100 + 61 - 1 = 160: fits */
    tw_serve_sim_result r;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_OK, "%s", tw_last_error());
    tw_serve_sim_free(&r);
    tw_loadgen_lengths_free(&L);
    cr_assert_eq(tw_loadgen_lengths_uniform(&L, 10, 100, 1, 62), TW_OK);
    c.load.lengths = &L;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_ERR_INVALID, "161 positions never fit 160");
    cr_assert(strstr(tw_last_error(), "refused before running"), "%s", tw_last_error());
    cr_assert_eq(r.n, 0, "nothing ran");
    cr_assert_eq(r.steps, 0);
    c.kv_blocks = 100;
    c.sched.chunked_prefill = 0;
    c.sched.token_budget = 99;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_ERR_INVALID, "a 100-token prompt over budget 99");
    c.sched.token_budget = 100;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_OK, "%s", tw_last_error());
    tw_serve_sim_free(&r);
    c.step_a_s = c.step_b_s = 0;
    cr_assert_eq(tw_serve_sim_run(&c, &r), TW_ERR_INVALID, "a free engine");
    tw_loadgen_lengths_free(&L);
}

/* P(W <= x) for the M/D/1 queue (Erlang; Crommelin): (1 - rho) sum_{k=0}^{floor(x/D)}
 * [lambda (k D - x)]^k / k! exp(-lambda (k D - x)), in long double (an alternating sum). */
static long double md1_cdf(double x, double lambda, double D) {
    long double s = 0;
    int K = (int)floor(x / D);
    for (int k = 0; k <= K; k++) {
        long double y = (long double)lambda * ((long double)k * D - x);
        s += powl(y, k) / tgammal(k + 1) * expl(-y);
    }
    return (1 - (long double)lambda * D) * s;
}

/* x with P(W <= x) = 0.99 */
static double md1_w99(double lambda, double D) {
    double lo = 0, hi = 100 * D;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (md1_cdf(mid, lambda, D) < 0.99L)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* An M/D/1 server: batch 1, every request 100 in / 2 out. Service is a 100-position prefill step
 * (D1 = 0.01 + 0.1 = 0.11 s, emitting token 1) and one decode step (D2 = 0.011 s): D = 0.121 s,
 * FIFO, so TTFT = W + D1 and TPOT = D2. The TTFT limit is set to W99 + D1 at utilisation 0.85
 * (W99 from the Erlang formula above), so the analytic capacity is 0.85 / D = 7.025 req/s.
 * Each trial measures 100000 requests after 500 warm-up ones. The found rate is noisy because
 * the p99 of correlated waiting times is: over seeds 1..30 its relative error had mean -0.05%
 * and standard deviation 1.0% at this size (2.2% at 20000 requests, shrinking as 1/sqrt(n)), so
 * the bound is 5%, five standard deviations; a search or a queue off by a step would miss it. */
Test(serve_sim, capacity_search_finds_the_md1_capacity, .timeout = 120) {
    const double D1 = 0.11, D2 = 0.011, D = D1 + D2, rho = 0.85, lambda = rho / D;
    double w99 = md1_w99(lambda, D);
    /* the formula itself, at two points known in closed form */
    cr_assert_lt(fabsl(md1_cdf(0, lambda, D) - (1 - rho)), 1e-12L);
    cr_assert_lt(fabsl(md1_cdf(0.05, lambda, D) - (1 - rho) * expl(lambda * 0.05L)), 1e-12L);
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 100, 2), TW_OK);
    tw_serve_sim_trial_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.base = base(&L);
    ctx.base.load.scenario = TW_LOADGEN_SERVER;
    ctx.base.load.n_warmup = 500;
    ctx.base.sched.max_batch = 1;
    ctx.base.sched.token_budget = 256;
    ctx.base.check_invariants = 0; /* speed: the invariants are checked in the other tests */
    ctx.base.replay_follower = 0;
    ctx.limits = (tw_serve_limits){.ttft_s = w99 + D1, .tpot_s = 0.05, .percentile = 99};
    ctx.slo = (tw_serve_slo){.ttft_s = ctx.limits.ttft_s, .tpot_s = ctx.limits.tpot_s};
    tw_findrate_config fc = {.rate_start_rps = 1,
                             .rate_min_rps = 0.05,
                             .rate_max_rps = 100,
                             .step = 1,
                             .decimals = 2,
                             .max_trials = 40,
                             .min_requests = 100000};
    const uint64_t seeds[2] = {1, 2};
    for (int si = 0; si < 2; si++) {
        ctx.base.load.seed = seeds[si];
        tw_findrate_result r;
        cr_assert_eq(tw_findrate(&fc, tw_serve_sim_trial, &ctx, &r), TW_OK, "%s", tw_last_error());
        cr_assert_eq(r.verdict, TW_FINDRATE_FOUND, "%s", tw_findrate_verdict_name(r.verdict));
        cr_assert_lt(fabs(r.rate_rps / lambda - 1), 0.05,
                     "seed %d: found %.4f req/s, analytic %.4f (TTFT limit %.4f s, %d trials)", si,
                     r.rate_rps, lambda, ctx.limits.ttft_s, r.n_trials);
        cr_assert_leq(r.n_trials, 16);
        /* at the found rate the trial met, just above it failed: TTFT was the binding limit */
        for (int i = 0; i < r.n_trials; i++) {
            const tw_findrate_trial *t = &r.trials[i];
            cr_assert_lt(fabs(t->outcome.tpot_pctl_s - D2), 1e-9, "TPOT is one decode step");
            cr_assert_eq(t->outcome.met, t->outcome.ttft_pctl_s <= ctx.limits.ttft_s);
            cr_assert_geq(t->outcome.n_requests, 100000);
        }
    }
    tw_loadgen_lengths_free(&L);
}

/* A TTFT limit under the prefill step itself (0.1 s < D1 = 0.11 s) holds at no rate: the search
 * goes down to its floor and says so, in a bounded number of trials. */
Test(serve_sim, capacity_search_reports_never_meets) {
    tw_loadgen_lengths L;
    cr_assert_eq(tw_loadgen_lengths_fixed(&L, 100, 2), TW_OK);
    tw_serve_sim_trial_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.base = base(&L);
    ctx.base.load.scenario = TW_LOADGEN_SERVER;
    ctx.base.sched.max_batch = 1;
    ctx.limits = (tw_serve_limits){.ttft_s = 0.1, .tpot_s = 0.05, .percentile = 99};
    ctx.min_duration_s = 10;
    tw_findrate_config fc = {.rate_start_rps = 2,
                             .rate_min_rps = 0.1,
                             .rate_max_rps = 100,
                             .step = 1,
                             .decimals = 1,
                             .max_trials = 20,
                             .min_requests = 200};
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&fc, tw_serve_sim_trial, &ctx, &r), TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.verdict, TW_FINDRATE_NEVER_MEETS);
    cr_assert_eq(r.n_trials, 6, "2, 1, 0.5, 0.25, 0.125, 0.1");
    for (int i = 0; i < r.n_trials; i++) {
        cr_assert_geq(r.trials[i].outcome.ttft_pctl_s, 0.11 - 1e-12);
        /* min_duration_s 10 s: at 2 req/s the trial takes max(200, 20) requests */
        cr_assert_geq(r.trials[i].outcome.n_requests, 200);
    }
    /* an offline base cannot be searched */
    ctx.base.load.scenario = TW_LOADGEN_OFFLINE;
    cr_assert_eq(tw_findrate(&fc, tw_serve_sim_trial, &ctx, &r), TW_ERR_INVALID);
    tw_loadgen_lengths_free(&L);
}
