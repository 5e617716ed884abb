/* Simulation driver: the load generator, the scheduler and the KV pool run against a fake engine
 * whose step takes a + b * tokens seconds (tokens: the positions the step computes). It is the
 * event loop the engine integration will run with a real engine in place of the cost model, and
 * the simulated server that the scheduler, metrics and capacity-search tests drive.
 *
 * Time: arrivals are admitted at step boundaries (a request arriving during a step waits for the
 * next one); an idle server jumps to the next arrival. Tokens a step emits carry the step's end
 * time. The closed loop (concurrency N) issues N requests at t = 0 and one more each time one
 * finishes, arriving at that finish time.
 *
 * Before anything runs, a configuration that can never serve some request its lengths allow is
 * refused (TW_ERR_INVALID): a request longer than the whole KV cache, or, without chunked
 * prefill, a prompt over the step budget. */
#ifndef TW_SERVE_SIM_H
#define TW_SERVE_SIM_H

#include <stdint.h>

#include "tw_loadgen.h"
#include "tw_serve_findrate.h"
#include "tw_serve_limits.h"
#include "tw_serve_metrics.h"
#include "tw_serve_sched.h"

typedef struct {
    tw_loadgen_config load;
    tw_sched_config sched;
    int64_t kv_blocks;
    int kv_block_tokens;
    double step_a_s;      /* fixed cost of a step */
    double step_b_s;      /* cost per position computed */
    int64_t max_steps;    /* guard against a scheduler that stops progressing; 0: 10^8 */
    int check_invariants; /* 1: tw_kvpool_check and plan checks after every step (tests) */
    int replay_follower;  /* 1: a second pool replays every plan through encode/decode, and its
                             block tables are compared with the leader's after every step */
} tw_serve_sim_config;

typedef struct {
    int64_t n;            /* requests issued (warm-up included) */
    tw_serve_record *rec; /* n records, rec[i].id == i (issue order) */
    double *token_s;      /* every output token's time; rec[i].token_s points in here */
    double t_end_s;       /* the last step's end */
    int64_t steps, preemptions, kv_peak_used_blocks;
    int max_step_tokens, max_step_items;
    int64_t kv_leaked_blocks; /* blocks still in use after the run (must be 0) */
} tw_serve_sim_result;

tw_status tw_serve_sim_run(const tw_serve_sim_config *c, tw_serve_sim_result *out);
void tw_serve_sim_free(tw_serve_sim_result *r);

/* The measurement window: from the scheduled arrival of the first measured request when there
 * are warm-up requests (else from the run's origin, t = 0, as LoadGen and vLLM time a run) to
 * the last measured request's finish. */
tw_status tw_serve_sim_window(const tw_serve_sim_result *r, double *t_start_s, double *t_end_s);

/* A capacity-search trial on the simulated server (the tw_findrate_trial_fn for ctx of this
 * type): the base configuration's scenario at `rate`, with measured requests = max(min_requests,
 * ceil(rate * min_duration_s)), summarised against `limits` (and `slo` for goodput). */
typedef struct {
    tw_serve_sim_config base;
    tw_serve_limits limits;
    tw_serve_slo slo;
    double min_duration_s;
} tw_serve_sim_trial_ctx;

tw_status tw_serve_sim_trial(void *ctx, double rate_rps, int64_t min_requests,
                             tw_findrate_outcome *out);

#endif
