/* Capacity search logic against trial functions whose answer is known: a sharp threshold (the
 * search must bracket it to LoadGen's precision rule, with the rates it tried kept in order), a
 * starting rate that fails, a scenario that never meets (a bounded search reporting it), one that
 * always meets (the cap), running out of trials, and misbehaving trials. The search against a
 * simulated server with an analytically known capacity is in test_serve_sim.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "harness/serve/tw_serve_findrate.h"

typedef struct {
    double threshold; /* met iff rate <= threshold */
    int calls;
    int64_t short_by; /* report this many fewer requests than asked */
    int fail_at_call;
} fake;

static tw_status fake_trial(void *vctx, double rate, int64_t min_requests,
                            tw_findrate_outcome *out) {
    fake *f = vctx;
    f->calls++;
    if (f->fail_at_call && f->calls == f->fail_at_call)
        return TW_ERR(TW_ERR_IO, "the engine broke");
    memset(out, 0, sizeof *out);
    out->met = rate <= f->threshold;
    out->n_requests = min_requests - f->short_by;
    out->ttft_pctl_s = rate; /* something to carry */
    return TW_OK;
}

static tw_findrate_config cfg(void) {
    tw_findrate_config c = {.rate_start_rps = 1,
                            .rate_min_rps = 0.01,
                            .rate_max_rps = 1000,
                            .step = 1,
                            .decimals = 2,
                            .max_trials = 64,
                            .min_requests = 500};
    return c;
}

Test(serve_findrate, brackets_a_sharp_threshold) {
    fake f = {.threshold = 3.7};
    tw_findrate_config c = cfg();
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK, "%s", tw_last_error());
    cr_assert_eq(r.verdict, TW_FINDRATE_FOUND, "%s", tw_findrate_verdict_name(r.verdict));
    cr_assert_leq(r.rate_rps, 3.7);
    cr_assert_gt(r.upper_rps, 3.7);
    /* LoadGen's stop: floor(lo * 100) + 1 >= floor(hi * 100) */
    cr_assert_geq(floor(r.rate_rps * 100) + 1, floor(r.upper_rps * 100));
    cr_assert_gt(r.rate_rps, 3.69);
    cr_assert_leq(r.upper_rps, 3.71 + 1e-12);
    /* widening doubles from the start: 1, 2, 4 (fails), then halves [2, 4) */
    cr_assert_eq(r.trials[0].rate_rps, 1);
    cr_assert_eq(r.trials[1].rate_rps, 2);
    cr_assert_eq(r.trials[2].rate_rps, 4);
    cr_assert_eq(r.trials[3].rate_rps, 3);
    cr_assert_eq(r.trials[4].rate_rps, 3.5);
    cr_assert_eq(r.n_trials, f.calls);
    for (int i = 0; i < r.n_trials; i++) {
        cr_assert_eq(r.trials[i].outcome.met, r.trials[i].rate_rps <= 3.7, "trial %d", i);
        cr_assert_eq(r.trials[i].outcome.ttft_pctl_s, r.trials[i].rate_rps);
        cr_assert_geq(r.trials[i].outcome.n_requests, 500);
    }
    /* 3 widening trials + ceil(log2(2 / 0.01)) = 8 halvings at most */
    cr_assert_leq(r.n_trials, 11, "%d trials", r.n_trials);
}

Test(serve_findrate, a_failing_start_goes_down) {
    fake f = {.threshold = 0.3};
    tw_findrate_config c = cfg();
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK);
    cr_assert_eq(r.verdict, TW_FINDRATE_FOUND);
    cr_assert_eq(r.trials[0].rate_rps, 1);
    cr_assert_eq(r.trials[1].rate_rps, 0.5);
    cr_assert_eq(r.trials[2].rate_rps, 0.25);
    cr_assert(r.rate_rps <= 0.3 && r.upper_rps > 0.3);
    cr_assert_geq(floor(r.rate_rps * 100) + 1, floor(r.upper_rps * 100));
}

Test(serve_findrate, never_meets_is_reported_not_searched_forever) {
    fake f = {.threshold = -1};
    tw_findrate_config c = cfg();
    c.rate_min_rps = 0.1;
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK);
    cr_assert_eq(r.verdict, TW_FINDRATE_NEVER_MEETS);
    cr_assert_str_eq(tw_findrate_verdict_name(r.verdict), "never-meets");
    cr_assert(isnan(r.rate_rps));
    cr_assert_eq(r.upper_rps, 0.1);
    /* 1, 0.5, 0.25, 0.125, then the floor 0.1 */
    cr_assert_eq(r.n_trials, 5);
    cr_assert_eq(r.trials[4].rate_rps, 0.1);
    for (int i = 0; i < 5; i++) cr_assert_not(r.trials[i].outcome.met);
}

Test(serve_findrate, always_meets_stops_at_the_cap) {
    fake f = {.threshold = INFINITY};
    tw_findrate_config c = cfg();
    c.rate_max_rps = 10;
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK);
    cr_assert_eq(r.verdict, TW_FINDRATE_AT_CAP);
    cr_assert_eq(r.rate_rps, 10);
    cr_assert_eq(r.n_trials, 5, "1, 2, 4, 8, 10");
    cr_assert_eq(r.trials[4].rate_rps, 10);
}

Test(serve_findrate, trial_budget_keeps_the_bracket) {
    fake f = {.threshold = 3.7};
    tw_findrate_config c = cfg();
    c.max_trials = 4;
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK);
    cr_assert_eq(r.verdict, TW_FINDRATE_TRIALS_EXHAUSTED);
    cr_assert_eq(r.n_trials, 4);
    cr_assert_eq(r.rate_rps, 3);
    cr_assert_eq(r.upper_rps, 4);
    c.max_trials = 1;
    f.threshold = -1;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_OK);
    cr_assert_eq(r.verdict, TW_FINDRATE_TRIALS_EXHAUSTED);
}

Test(serve_findrate, misbehaving_trials_and_bad_configs) {
    fake f = {.threshold = 3, .short_by = 1};
    tw_findrate_config c = cfg();
    tw_findrate_result r;
    cr_assert_eq(tw_findrate(&c, fake_trial, &f, &r), TW_ERR_INTERNAL, "under the minimum");
    cr_assert(strstr(tw_last_error(), "under the minimum"), "%s", tw_last_error());
    fake g = {.threshold = 3, .fail_at_call = 3};
    cr_assert_eq(tw_findrate(&c, fake_trial, &g, &r), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "trial at 4 requests/s"), "%s", tw_last_error());
    cr_assert_eq(r.n_trials, 2, "the trials before the failure are kept");
    tw_findrate_config bad = cfg();
    bad.rate_min_rps = 2;
    cr_assert_eq(tw_findrate(&bad, fake_trial, &f, &r), TW_ERR_INVALID);
    bad = cfg();
    bad.step = 0;
    cr_assert_eq(tw_findrate(&bad, fake_trial, &f, &r), TW_ERR_INVALID);
    bad = cfg();
    bad.max_trials = TW_FINDRATE_MAX_TRIALS + 1;
    cr_assert_eq(tw_findrate(&bad, fake_trial, &f, &r), TW_ERR_INVALID);
    bad = cfg();
    bad.min_requests = 0;
    cr_assert_eq(tw_findrate(&bad, fake_trial, &f, &r), TW_ERR_INVALID);
    bad = cfg();
    bad.rate_max_rps = INFINITY;
    cr_assert_eq(tw_findrate(&bad, fake_trial, &f, &r), TW_ERR_INVALID);
}
