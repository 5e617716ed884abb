/* The serving engine: the simulation driver's event loop (tw_serve_sim.h) with a real engine step
 * in place of the cost model. The load generator issues requests on the wall clock; the
 * continuous-batching scheduler (tw_serve_sched.h) plans each step over the paged KV pool
 * (tw_kvpool.h); the engine (tw_engine_step_paged, an engine created with opts.kv_blocks > 0)
 * runs the step: one decode token of each running request and prefill chunks of admitted ones,
 * reading and writing the KV cache through the requests' block tables; the tokens it emits carry
 * the step's end time.
 *
 * Prompts are synthetic: token p of request i's prompt is tw_serve_prompt_token(seed, i, p,
 * vocab), a pure function, so any rank (and a test running the request alone through the static
 * engine) knows it. The run ignores end-of-sequence: every request generates exactly its output
 * length.
 *
 * Tensor parallelism: every rank of the engine's communicator runs tw_serve_engine_run with the
 * same configuration. Rank 0 decides: it issues the requests and plans each step, and broadcasts
 * the encoded plan (tw_sched_plan_encode, doc/SERVING.md) before the step; the other ranks
 * decode it, replay its KV decisions on their own pools (tw_sched_follow_begin/_end) and run the
 * same step. Only rank 0's result holds records.
 *
 * Refused before anything runs (TW_ERR_INVALID, naming the request): a request whose I + O - 1
 * positions need more blocks than the whole pool, or more positions than the engine's max_seq;
 * without chunked prefill, a prompt over the step budget.
 *
 * Interruption: stop(ctx) is asked between steps on rank 0; when it says stop, no further
 * request is issued or stepped, the run ends with result.interrupted = 1, and the finished
 * requests keep their figures (unfinished ones have finish_s NAN). */
#ifndef TW_SERVE_ENGINE_H
#define TW_SERVE_ENGINE_H

#include <stdint.h>

#include "tw_engine.h"
#include "tw_loadgen.h"
#include "tw_serve_metrics.h"
#include "tw_serve_sched.h"

struct tw_comm;

/* Token p of request `id`'s synthetic prompt. */
static inline int tw_serve_prompt_token(uint64_t seed, int64_t id, int p, int vocab) {
    uint64_t key = tw_serve_rng_u64(seed, 16, (uint64_t)id);
    return (int)(tw_serve_splitmix64_at(key, (uint64_t)p) % (uint64_t)vocab);
}

typedef struct {
    tw_loadgen_config load;
    tw_sched_config sched;
    int64_t kv_blocks; /* as the engine's opts.kv_blocks and kv_block_tokens */
    int kv_block_tokens;
    uint64_t prompt_seed;
    struct tw_comm *comm;   /* the engine's ranks (tensor parallelism), or NULL */
    int (*stop)(void *ctx); /* non-zero: end the run now (rank 0; NULL: never) */
    void *stop_ctx;
    /* after each step (rank 0; NULL: none): requests finished and issued so far */
    void (*progress)(void *ctx, int64_t finished, int64_t issued, int64_t steps);
    void *progress_ctx;
    int check_invariants; /* tw_kvpool_check after every step (tests) */
    int keep_tokens;      /* keep every request's output tokens (result.tokens) */
} tw_serve_engine_config;

typedef struct {
    int64_t n;            /* requests issued (warm-up included), rec[i].id == i */
    tw_serve_record *rec; /* finish_s NAN: not finished (interrupted run) */
    double *token_s;      /* every output token's time; rec[i].token_s points in here */
    int *tokens;          /* keep_tokens: output tokens, at the same offsets as token_s */
    int64_t *tok_off;     /* [n] offset of request i's tokens and times */
    double t_end_s;       /* the last step's end, from the run's origin */
    double busy_s;        /* seconds inside engine steps */
    int64_t steps, preemptions, n_finished;
    int64_t kv_peak_used_blocks, kv_leaked_blocks; /* leaked: in use at the end (0 when complete) */
    int max_step_tokens, max_step_items;
    int interrupted;
} tw_serve_engine_result;

/* Checks that every request the load can issue fits (see above); the first that cannot is
 * named. max_seq: the engine's longest sequence. */
tw_status tw_serve_engine_check(const tw_serve_engine_config *c, int max_seq);

/* Runs the scenario on engine e (paged, opts.kv_blocks == c->kv_blocks and kv_block_tokens ==
 * c->kv_block_tokens, max_batch >= c->sched.max_batch, max_step_tokens >= the budget). */
tw_status tw_serve_engine_run(tw_engine *e, const tw_serve_engine_config *c,
                              tw_serve_engine_result *out);
void tw_serve_engine_free(tw_serve_engine_result *r);

/* The measurement window of the finished requests (as tw_serve_sim_window: from the first
 * measured request's arrival when there are warm-up requests, else from the origin, to the last
 * measured finish), and a compact copy of the finished records (*fin, *n_fin; free()). */
tw_status tw_serve_engine_finished(const tw_serve_engine_result *r, tw_serve_record **fin,
                                   int64_t *n_fin, double *t_start_s, double *t_end_s);

#endif
