/* Continuous-batching scheduler, independent of the engine: from the waiting queue, the running
 * requests, a per-step token budget, a maximum batch and the KV pool (tw_kvpool.h) it decides
 * each step's plan; the engine runs the plan and the scheduler commits it. Pure and
 * deterministic: the same calls give the same plans on every machine.
 *
 * A request's sequence is its prompt followed by the tokens it generates. `computed` positions
 * have KV; `known` = input + generated positions have tokens. A step gives a request a chunk of
 * positions [computed, computed + n); when the chunk reaches `known` the step emits its next
 * token (the step finishing the prompt emits the first). So a prompt may be split across steps
 * (chunked prefill), a decode is a 1-position chunk, and a request resumed after preemption
 * recomputes prompt + generated tokens the same way. A request of input I and output O writes
 * I + O - 1 KV positions (its last token is never fed back).
 *
 * Each step, in order (doc/SERVING.md):
 *   1. decodes: running requests with one position to compute, oldest admission first;
 *   2. running prefills (chunks of prompts or recomputes), oldest first, each up to the budget
 *      left;
 *   3. admissions, strictly FIFO from the head of the waiting queue while a batch slot, budget
 *      and KV blocks allow (none in a step that preempted). The head blocks those behind it:
 *      no request is ever admitted ahead of an earlier one still waiting.
 * The tokens of a step never exceed the budget; the running requests never exceed max_batch.
 *
 * KV exhaustion (tw_sched_kv_policy):
 *   TW_KV_RESERVE  admission reserves the request's whole I + O - 1 positions; admission waits
 *                  for blocks; a running request never runs out, nothing is preempted.
 *   TW_KV_PREEMPT  blocks are taken as positions are scheduled (admission waits for its first
 *                  chunk's blocks); when a running request needs a block and none is free, the
 *                  most recently admitted running request not yet scheduled this step is
 *                  preempted (its blocks freed, its KV recomputed on readmission: vLLM's
 *                  recompute preemption), else the request itself is. Preempted requests go
 *                  back to the head of the waiting queue in admission order, and the plan lists
 *                  them. The oldest running request always progresses, so every request
 *                  finishes.
 * A request that could never fit (I + O - 1 positions over the whole pool), or, without chunked
 * prefill, a prompt over the budget, is refused when added, before anything runs.
 *
 * Tensor parallelism: rank 0 decides; the plan carries every decision a follower needs (slots
 * opened, blocks taken, slots freed), serialised by tw_sched_plan_encode (layout in
 * doc/SERVING.md); a follower decodes it and replays the KV changes on its own pool with
 * tw_sched_follow_begin / tw_sched_follow_end, so its block tables equal rank 0's. */
#ifndef TW_SERVE_SCHED_H
#define TW_SERVE_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "tw_kvpool.h"
#include "tw_status.h"

typedef enum { TW_KV_RESERVE = 0, TW_KV_PREEMPT = 1 } tw_sched_kv_policy;

typedef struct {
    int max_batch;       /* running requests at most (vLLM max_num_seqs) */
    int token_budget;    /* positions per step at most (vLLM max_num_batched_tokens) */
    int chunked_prefill; /* 1: prompts may be split across steps; 0: whole prompts only (a
                            recompute after preemption is still split, so the budget holds) */
    tw_sched_kv_policy kv_policy;
} tw_sched_config;

typedef enum { TW_SCHED_PREFILL = 1, TW_SCHED_DECODE = 2 } tw_sched_kind;

typedef struct {
    int64_t req_id;
    int32_t slot;     /* KV pool slot (block table) of the request */
    int32_t kind;     /* TW_SCHED_DECODE: one position after >= 1 generated token; else PREFILL */
    int32_t start;    /* first position computed this step */
    int32_t n_tokens; /* positions computed: [start, start + n_tokens) */
    int32_t emits;    /* 1: the step produces the request's next output token */
    int32_t finishes; /* 1: that token is its last; its slot is freed at commit */
    int32_t admitted; /* 1: (re)admitted this step, its slot opened */
    int32_t first_block, n_blocks; /* blocks appended to its table this step: blocks[first..] */
} tw_sched_item;

typedef struct {
    int64_t step;
    int32_t n_items, n_preempted, n_blocks, total_tokens;
    tw_sched_item *items;
    int64_t *preempted_id;
    int32_t *preempted_slot;
    int32_t *blocks;
    int32_t cap_items, cap_preempted, cap_blocks;
} tw_sched_plan;

typedef struct tw_sched tw_sched;

/* pool is not owned; it must have >= max_batch slots. */
tw_status tw_sched_create(const tw_sched_config *c, tw_kvpool *pool, tw_sched **out);
void tw_sched_destroy(tw_sched *s);

/* A request joins the tail of the waiting queue (arrival order is call order). Ids are the
 * caller's (the scheduler echoes them in plans). Refusals: TW_ERR_INVALID naming the request. */
tw_status tw_sched_add(tw_sched *s, int64_t id, int input_tokens, int output_tokens);
/* Decides the next step and makes its KV allocations. An empty plan means nothing can run
 * (nothing waiting or running). Must be followed by tw_sched_commit before the next step. */
tw_status tw_sched_step(tw_sched *s, tw_sched_plan *plan);
/* The engine ran the plan: positions become computed, tokens are emitted, finished requests
 * free their slots. TW_ERR_INVALID if the plan is not the one the scheduler last decided. */
tw_status tw_sched_commit(tw_sched *s, const tw_sched_plan *plan);

int64_t tw_sched_n_waiting(const tw_sched *s);
int64_t tw_sched_n_running(const tw_sched *s);
int64_t tw_sched_n_finished(const tw_sched *s);
int64_t tw_sched_n_preemptions(const tw_sched *s);

typedef enum { TW_REQ_WAITING = 0, TW_REQ_RUNNING, TW_REQ_FINISHED } tw_sched_req_state;

typedef struct {
    tw_sched_req_state state;
    int input_tokens, output_tokens, generated, computed, preemptions, slot;
    int64_t first_admit_order; /* 0, 1, 2, ... in order of first admission; -1 before */
} tw_sched_req_info;

/* Linear search by id (for tests and reports). TW_ERR_INVALID when unknown. */
tw_status tw_sched_request_info(const tw_sched *s, int64_t id, tw_sched_req_info *out);

/* Plans: capacities for a scheduler's max_batch and a pool's blocks. */
tw_status tw_sched_plan_init(tw_sched_plan *p, int max_batch, int64_t n_blocks);
void tw_sched_plan_free(tw_sched_plan *p);

/* Serialisation for the broadcast (little-endian, layout in doc/SERVING.md). */
size_t tw_sched_plan_encoded_size(const tw_sched_plan *p);
/* The largest encoding of a plan with these capacities (a fixed-size broadcast buffer). */
size_t tw_sched_plan_max_encoded_size(int max_batch, int64_t n_blocks);
tw_status tw_sched_plan_encode(const tw_sched_plan *p, void *buf, size_t cap, size_t *len);
/* Into a plan initialised with enough capacity; TW_ERR_PARSE on a malformed buffer. */
tw_status tw_sched_plan_decode(const void *buf, size_t len, tw_sched_plan *p);

/* Follower replay on a rank's own pool: before running the step (frees preempted slots, opens
 * admitted ones, takes the named blocks), and after it (frees finished slots). */
tw_status tw_sched_follow_begin(tw_kvpool *pool, const tw_sched_plan *p);
void tw_sched_follow_end(tw_kvpool *pool, const tw_sched_plan *p);

#endif
