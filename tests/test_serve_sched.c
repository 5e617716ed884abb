/* Continuous-batching scheduler: a hand-traced example step by step, then random workloads under
 * both KV policies driven by a fake engine, checking after every step that the token budget and
 * batch hold, decodes go first, chunks cover every position of every request exactly once and in
 * order (again from 0 after a preemption), admission is FIFO, every request finishes with all its
 * tokens and the pool is empty at the end; refusal of impossible requests; plan serialisation. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "harness/serve/tw_serve_sched.h"
#include "tw_test_util.h"

typedef struct {
    tw_kvpool *pool;
    tw_sched *s;
    tw_sched_plan p;
} fixture;

static void setup(fixture *f, int max_batch, int budget, int chunked, tw_sched_kv_policy pol,
                  int64_t blocks, int block_tokens) {
    cr_assert_eq(tw_kvpool_create(blocks, block_tokens, max_batch, &f->pool), TW_OK);
    tw_sched_config c = {.max_batch = max_batch,
                         .token_budget = budget,
                         .chunked_prefill = chunked,
                         .kv_policy = pol};
    cr_assert_eq(tw_sched_create(&c, f->pool, &f->s), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_sched_plan_init(&f->p, max_batch, blocks), TW_OK);
}

static void teardown(fixture *f) {
    tw_sched_plan_free(&f->p);
    tw_sched_destroy(f->s);
    tw_kvpool_destroy(f->pool);
}

static void expect_item(const tw_sched_item *it, int64_t id, int kind, int start, int n, int emits,
                        int finishes, int admitted) {
    cr_assert_eq(it->req_id, id);
    cr_assert_eq(it->kind, kind, "request %lld kind", (long long)id);
    cr_assert_eq(it->start, start, "request %lld start", (long long)id);
    cr_assert_eq(it->n_tokens, n, "request %lld length", (long long)id);
    cr_assert_eq(it->emits, emits, "request %lld emits", (long long)id);
    cr_assert_eq(it->finishes, finishes, "request %lld finishes", (long long)id);
    cr_assert_eq(it->admitted, admitted, "request %lld admitted", (long long)id);
}

/* budget 8, batch 2, chunked, 4-token blocks, plenty of KV.
 * A (in 10, out 3), B (in 3, out 2), C (in 2, out 1), added in that order.
 *   step 1: A admitted, prompt chunk [0, 8)                     budget 0
 *   step 2: A chunk [8, 10) emits token 1; B admitted [0, 3) emits token 1; batch full, C waits
 *   step 3: decodes A @10 (token 2), B @3 (token 2, B done); C still waits (B frees at commit)
 *   step 4: decode A @11 (token 3, done); C admitted [0, 2) emits its only token (done) */
Test(serve_sched, hand_traced_steps) {
    fixture f;
    setup(&f, 2, 8, 1, TW_KV_PREEMPT, 64, 4);
    cr_assert_eq(tw_sched_add(f.s, 100, 10, 3), TW_OK);
    cr_assert_eq(tw_sched_add(f.s, 200, 3, 2), TW_OK);
    cr_assert_eq(tw_sched_add(f.s, 300, 2, 1), TW_OK);
    tw_sched_plan *p = &f.p;
    cr_assert_eq(tw_sched_step(f.s, p), TW_OK);
    cr_assert_eq(p->n_items, 1);
    expect_item(&p->items[0], 100, TW_SCHED_PREFILL, 0, 8, 0, 0, 1);
    cr_assert_eq(p->items[0].n_blocks, 2, "8 positions in 4-token blocks");
    cr_assert_eq(tw_sched_step(f.s, p), TW_ERR_INVALID, "a second step before the commit");
    cr_assert_eq(tw_sched_commit(f.s, p), TW_OK);
    cr_assert_eq(tw_sched_step(f.s, p), TW_OK);
    cr_assert_eq(p->n_items, 2);
    expect_item(&p->items[0], 100, TW_SCHED_PREFILL, 8, 2, 1, 0, 0);
    expect_item(&p->items[1], 200, TW_SCHED_PREFILL, 0, 3, 1, 0, 1);
    cr_assert_eq(p->total_tokens, 5);
    cr_assert_eq(tw_sched_commit(f.s, p), TW_OK);
    cr_assert_eq(tw_sched_step(f.s, p), TW_OK);
    cr_assert_eq(p->n_items, 2);
    expect_item(&p->items[0], 100, TW_SCHED_DECODE, 10, 1, 1, 0, 0);
    expect_item(&p->items[1], 200, TW_SCHED_DECODE, 3, 1, 1, 1, 0);
    cr_assert_eq(tw_sched_n_waiting(f.s), 1);
    cr_assert_eq(tw_sched_commit(f.s, p), TW_OK);
    cr_assert_eq(tw_sched_n_finished(f.s), 1);
    cr_assert_eq(tw_sched_step(f.s, p), TW_OK);
    cr_assert_eq(p->n_items, 2);
    expect_item(&p->items[0], 100, TW_SCHED_DECODE, 11, 1, 1, 1, 0);
    expect_item(&p->items[1], 300, TW_SCHED_PREFILL, 0, 2, 1, 1, 1);
    cr_assert_eq(tw_sched_commit(f.s, p), TW_OK);
    cr_assert_eq(tw_sched_n_finished(f.s), 3);
    cr_assert_eq(tw_kvpool_used_blocks(f.pool), 0, "every block free at the end");
    cr_assert_eq(tw_sched_step(f.s, p), TW_OK);
    cr_assert_eq(p->n_items, 0, "nothing left");
    cr_assert_eq(tw_sched_commit(f.s, p), TW_OK);
    tw_sched_req_info info;
    cr_assert_eq(tw_sched_request_info(f.s, 300, &info), TW_OK);
    cr_assert_eq(info.state, TW_REQ_FINISHED);
    cr_assert_eq(info.generated, 1);
    cr_assert_eq(info.first_admit_order, 2);
    teardown(&f);
}

/* Per request as the test sees it. */
typedef struct {
    int input, output, next_pos, emitted, done, preempted, one_left, running, in_plan;
    int64_t adm_seq; /* order of the latest admission, counted here */
} seen;

typedef struct {
    int max_batch, budget, chunked;
    tw_sched_kv_policy pol;
    int64_t blocks;
    int block_tokens;
    int n_req, max_in, max_out;
    uint64_t seed;
} workload;

/* Drives a random workload to the end; returns the preemption count. */
static int64_t run_workload(const workload *w) {
    fixture f;
    setup(&f, w->max_batch, w->budget, w->chunked, w->pol, w->blocks, w->block_tokens);
    tw_test_rng g;
    tw_test_rng_seed(&g, w->seed);
    seen *q = calloc((size_t)w->n_req, sizeof *q);
    int added = 0;
    int64_t adm_counter = 0;
    int64_t steps = 0, positions = 0, expected_positions = 0;
    unsigned char *buf = malloc(tw_sched_plan_max_encoded_size(w->max_batch, w->blocks));
    tw_sched_plan copy;
    cr_assert_eq(tw_sched_plan_init(&copy, w->max_batch, w->blocks), TW_OK);
    while (tw_sched_n_finished(f.s) < w->n_req) {
        /* bursty arrivals */
        int burst = (int)((tw_test_uniform(&g) + 1) * 2);
        for (int k = 0; k < burst && added < w->n_req; k++) {
            int in = 1 + (int)((tw_test_uniform(&g) + 1) * 0.5 * (w->max_in - 1));
            int out = 1 + (int)((tw_test_uniform(&g) + 1) * 0.5 * (w->max_out - 1));
            q[added] = (seen){.input = in, .output = out};
            expected_positions += in + out - 1;
            cr_assert_eq(tw_sched_add(f.s, added, in, out), TW_OK, "%s", tw_last_error());
            added++;
        }
        /* what must run first this step: running requests with one position left (decodes,
         * and prompts one token from done) */
        int pending_decodes = 0;
        for (int i = 0; i < added; i++) {
            tw_sched_req_info info;
            cr_assert_eq(tw_sched_request_info(f.s, i, &info), TW_OK);
            q[i].one_left = info.state == TW_REQ_RUNNING &&
                            info.computed == info.input_tokens + info.generated - 1;
            q[i].running = info.state == TW_REQ_RUNNING;
            q[i].in_plan = 0;
            pending_decodes += q[i].one_left;
        }
        tw_sched_plan *p = &f.p;
        cr_assert_eq(tw_sched_step(f.s, p), TW_OK, "%s", tw_last_error());
        steps++;
        cr_assert(p->n_items > 0 || added < w->n_req, "step %lld: nothing scheduled",
                  (long long)steps);
        cr_assert_leq(p->total_tokens, w->budget, "step %lld breaks the budget", (long long)steps);
        cr_assert_leq(p->n_items, w->max_batch);
        cr_assert_leq(tw_sched_n_running(f.s), w->max_batch);
        /* the serialised plan decodes to the same plan */
        size_t len;
        cr_assert_eq(tw_sched_plan_encode(
                         p, buf, tw_sched_plan_max_encoded_size(w->max_batch, w->blocks), &len),
                     TW_OK);
        cr_assert_eq(len, tw_sched_plan_encoded_size(p));
        cr_assert_eq(tw_sched_plan_decode(buf, len, &copy), TW_OK, "%s", tw_last_error());
        cr_assert_eq(copy.n_items, p->n_items);
        cr_assert_eq(memcmp(copy.items, p->items, sizeof(tw_sched_item) * (size_t)p->n_items), 0);
        cr_assert_eq(memcmp(copy.blocks, p->blocks, sizeof(int32_t) * (size_t)p->n_blocks), 0);
        for (int k = 0; k < p->n_items; k++) q[p->items[k].req_id].in_plan = 1;
        for (int k = 0; k < p->n_preempted; k++) {
            int64_t v = p->preempted_id[k];
            seen *x = &q[v];
            cr_assert(w->pol == TW_KV_PREEMPT, "RESERVE never preempts");
            cr_assert(x->running, "only running requests are preempted");
            /* the most recently admitted go first: no younger running request is left
             * unscheduled while an older one is preempted */
            for (int i = 0; i < added; i++) {
                if (!q[i].running || q[i].adm_seq <= x->adm_seq || q[i].in_plan) continue;
                int also = 0;
                for (int j = 0; j < p->n_preempted; j++) also |= p->preempted_id[j] == i;
                cr_assert(also, "step %lld: request %lld preempted before the younger %d",
                          (long long)steps, (long long)v, i);
            }
            x->next_pos = 0; /* recompute from the start */
            x->preempted++;
        }
        for (int k = 0; k < p->n_items; k++)
            if (p->items[k].admitted) {
                cr_assert_eq(p->n_preempted, 0, "no admission in a step that preempted");
                q[p->items[k].req_id].adm_seq = ++adm_counter;
            }
        int sum = 0, decodes = 0, saw_prefill_before_decode = 0, prefills = 0;
        for (int k = 0; k < p->n_items; k++) {
            const tw_sched_item *it = &p->items[k];
            seen *x = &q[it->req_id];
            cr_assert_not(x->done);
            cr_assert_geq(it->n_tokens, 1);
            cr_assert_eq(it->start, x->next_pos, "request %lld: chunk starts at %d, expected %d",
                         (long long)it->req_id, it->start, x->next_pos);
            int known = x->input + x->emitted;
            cr_assert_leq(it->start + it->n_tokens, known, "never past the known tokens");
            cr_assert_eq(it->emits, it->start + it->n_tokens == known);
            if (x->one_left) {
                decodes++;
                if (prefills) saw_prefill_before_decode = 1;
            } else {
                prefills++;
            }
            if (it->kind == TW_SCHED_DECODE) cr_assert(x->one_left && x->emitted > 0);
            /* blocks handed out cover the chunk */
            int64_t have = tw_kvpool_seq_blocks(f.pool, it->slot);
            cr_assert_geq(have * w->block_tokens, it->start + it->n_tokens);
            x->next_pos += it->n_tokens;
            positions += it->n_tokens;
            sum += it->n_tokens;
            if (it->emits) x->emitted++;
            cr_assert_eq(it->finishes, it->emits && x->emitted == x->output);
            if (it->finishes) {
                cr_assert_eq(x->next_pos, x->input + x->output - 1,
                             "a finished request computed exactly I + O - 1 positions");
                x->done = 1;
            }
        }
        cr_assert_eq(sum, p->total_tokens);
        cr_assert_not(saw_prefill_before_decode, "decodes are scheduled before prefills");
        if (w->pol == TW_KV_RESERVE)
            cr_assert_eq(decodes, pending_decodes < w->budget ? pending_decodes : w->budget,
                         "step %lld: every pending decode runs while the budget allows",
                         (long long)steps);
        cr_assert_eq(tw_sched_commit(f.s, p), TW_OK, "%s", tw_last_error());
        cr_assert_eq(tw_kvpool_check(f.pool), TW_OK, "%s", tw_last_error());
        cr_assert_lt(steps, 1000000, "livelock");
    }
    /* FIFO: first admissions happened in arrival order */
    for (int i = 0; i < w->n_req; i++) {
        tw_sched_req_info info;
        cr_assert_eq(tw_sched_request_info(f.s, i, &info), TW_OK);
        cr_assert_eq(info.first_admit_order, i, "request %d admitted out of order", i);
        cr_assert_eq(info.state, TW_REQ_FINISHED);
        cr_assert_eq(info.generated, q[i].output);
        cr_assert_eq(info.preemptions, q[i].preempted);
        cr_assert(q[i].done);
    }
    int64_t pre = tw_sched_n_preemptions(f.s);
    if (pre == 0) cr_assert_eq(positions, expected_positions, "each position computed once");
    cr_assert_geq(positions, expected_positions);
    cr_assert_eq(tw_kvpool_used_blocks(f.pool), 0, "no leaked block");
    cr_assert_eq(tw_kvpool_open_seqs(f.pool), 0);
    tw_sched_plan_free(&copy);
    free(buf);
    free(q);
    teardown(&f);
    return pre;
}

Test(serve_sched, random_chunked_reserve) {
    workload w = {.max_batch = 7,
                  .budget = 37,
                  .chunked = 1,
                  .pol = TW_KV_RESERVE,
                  .blocks = 60,
                  .block_tokens = 8,
                  .n_req = 400,
                  .max_in = 150,
                  .max_out = 40,
                  .seed = 11};
    cr_assert_eq(run_workload(&w), 0);
}

Test(serve_sched, random_unchunked_reserve) {
    workload w = {.max_batch = 5,
                  .budget = 64,
                  .chunked = 0,
                  .pol = TW_KV_RESERVE,
                  .blocks = 200,
                  .block_tokens = 16,
                  .n_req = 300,
                  .max_in = 64,
                  .max_out = 30,
                  .seed = 12};
    cr_assert_eq(run_workload(&w), 0);
}

Test(serve_sched, random_chunked_preempt_under_exhaustion) {
    /* 40 blocks of 4 = 160 positions for up to 12 requests of up to 99 + 59 positions */
    workload w = {.max_batch = 12,
                  .budget = 29,
                  .chunked = 1,
                  .pol = TW_KV_PREEMPT,
                  .blocks = 40,
                  .block_tokens = 4,
                  .n_req = 300,
                  .max_in = 100,
                  .max_out = 60,
                  .seed = 13};
    int64_t pre = run_workload(&w);
    cr_assert_gt(pre, 10, "the pool ran out and requests were preempted (%lld)", (long long)pre);
}

Test(serve_sched, random_unchunked_preempt) {
    workload w = {.max_batch = 9,
                  .budget = 50,
                  .chunked = 0,
                  .pol = TW_KV_PREEMPT,
                  .blocks = 30,
                  .block_tokens = 5,
                  .n_req = 250,
                  .max_in = 50,
                  .max_out = 70,
                  .seed = 14};
    int64_t pre = run_workload(&w);
    cr_assert_gt(pre, 5, "%lld preemptions", (long long)pre);
}

Test(serve_sched, budget_of_one_and_batch_of_one) {
    workload w = {.max_batch = 1,
                  .budget = 1,
                  .chunked = 1,
                  .pol = TW_KV_PREEMPT,
                  .blocks = 10,
                  .block_tokens = 3,
                  .n_req = 40,
                  .max_in = 9,
                  .max_out = 9,
                  .seed = 15};
    cr_assert_eq(run_workload(&w), 0);
}

Test(serve_sched, impossible_requests_refused_before_running) {
    fixture f;
    setup(&f, 4, 32, 0, TW_KV_PREEMPT, 4, 4); /* 16 positions, whole prompts only */
    cr_assert_eq(tw_sched_add(f.s, 1, 10, 7), TW_OK, "10 + 7 - 1 = 16 positions fit exactly");
    cr_assert_eq(tw_sched_add(f.s, 2, 10, 8), TW_ERR_INVALID, "17 positions never fit");
    cr_assert(strstr(tw_last_error(), "can never be served"), "%s", tw_last_error());
    cr_assert_eq(tw_sched_add(f.s, 3, 0, 8), TW_ERR_INVALID);
    teardown(&f);
    setup(&f, 4, 32, 0, TW_KV_RESERVE, 100, 4);
    cr_assert_eq(tw_sched_add(f.s, 4, 33, 1), TW_ERR_INVALID, "prompt over the budget, unchunked");
    cr_assert(strstr(tw_last_error(), "chunked prefill is off"), "%s", tw_last_error());
    cr_assert_eq(tw_sched_add(f.s, 5, 32, 1), TW_OK);
    teardown(&f);
    /* a pool with fewer slots than the batch, and bad configurations */
    tw_kvpool *pool;
    tw_sched *s;
    cr_assert_eq(tw_kvpool_create(10, 4, 2, &pool), TW_OK);
    tw_sched_config c = {.max_batch = 3, .token_budget = 8, .chunked_prefill = 1};
    cr_assert_eq(tw_sched_create(&c, pool, &s), TW_ERR_INVALID);
    c.max_batch = 2;
    c.token_budget = 0;
    cr_assert_eq(tw_sched_create(&c, pool, &s), TW_ERR_INVALID);
    tw_kvpool_destroy(pool);
}

/* Under RESERVE the whole request is reserved at admission, so the second of two requests that
 * together overflow the pool waits until the first finishes. */
Test(serve_sched, reserve_admission_waits_for_blocks) {
    fixture f;
    setup(&f, 4, 100, 1, TW_KV_RESERVE, 6, 4);        /* 24 positions */
    cr_assert_eq(tw_sched_add(f.s, 0, 10, 5), TW_OK); /* 14 positions, 4 blocks */
    cr_assert_eq(tw_sched_add(f.s, 1, 6, 3), TW_OK);  /* 8 positions, 2 blocks: 6 in all */
    cr_assert_eq(tw_sched_add(f.s, 2, 2, 2), TW_OK);  /* 3 positions, 1 block: must wait */
    cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
    cr_assert_eq(f.p.n_items, 2);
    cr_assert_eq(f.p.items[0].n_blocks, 4);
    cr_assert_eq(f.p.items[1].n_blocks, 2);
    cr_assert_eq(tw_kvpool_free_blocks(f.pool), 0);
    cr_assert_eq(tw_sched_n_waiting(f.s), 1);
    cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    int steps = 1, admitted_at = -1;
    while (tw_sched_n_finished(f.s) < 3) {
        cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
        steps++;
        for (int k = 0; k < f.p.n_items; k++)
            if (f.p.items[k].req_id == 2 && f.p.items[k].admitted) admitted_at = steps;
        cr_assert_eq(f.p.n_preempted, 0);
        cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    }
    /* request 1 finishes at step 3 (prefill emits token 1, then 2 decodes), freeing 2 blocks */
    cr_assert_eq(admitted_at, 4, "request 2 admitted right after request 1 finished");
    cr_assert_eq(tw_kvpool_used_blocks(f.pool), 0);
    teardown(&f);
}

Test(serve_sched, plan_encoding_refuses_bad_buffers) {
    fixture f;
    setup(&f, 3, 30, 1, TW_KV_PREEMPT, 50, 4);
    cr_assert_eq(tw_sched_add(f.s, 77, 20, 3), TW_OK);
    cr_assert_eq(tw_sched_add(f.s, -5, 3, 3), TW_OK);
    cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
    size_t cap = tw_sched_plan_max_encoded_size(3, 50), len;
    unsigned char *buf = malloc(cap);
    cr_assert_eq(tw_sched_plan_encode(&f.p, buf, cap, &len), TW_OK);
    cr_assert_leq(len, cap);
    /* little-endian header: "TWSP", version 1, total length */
    cr_assert_eq(memcmp(buf, "TWSP", 4), 0);
    cr_assert_eq(buf[4], 1);
    cr_assert_eq((size_t)buf[8] | (size_t)buf[9] << 8, len);
    cr_assert_eq(tw_sched_plan_encode(&f.p, buf, len - 1, &len), TW_ERR_INVALID, "too small");
    cr_assert_eq(tw_sched_plan_encode(&f.p, buf, cap, &len), TW_OK);
    tw_sched_plan q;
    cr_assert_eq(tw_sched_plan_init(&q, 3, 50), TW_OK);
    cr_assert_eq(tw_sched_plan_decode(buf, len, &q), TW_OK);
    cr_assert_eq(q.n_items, 2);
    cr_assert_eq(q.items[1].req_id, -5, "negative ids survive");
    cr_assert_eq(tw_sched_plan_decode(buf, len - 1, &q), TW_ERR_PARSE, "truncated");
    buf[0] ^= 1;
    cr_assert_eq(tw_sched_plan_decode(buf, len, &q), TW_ERR_PARSE, "bad magic");
    buf[0] ^= 1;
    tw_sched_plan small;
    cr_assert_eq(tw_sched_plan_init(&small, 1, 50), TW_OK);
    cr_assert_eq(tw_sched_plan_decode(buf, len, &small), TW_ERR_PARSE, "over capacity");
    /* a plan from elsewhere does not commit */
    q.step = 99;
    cr_assert_eq(tw_sched_commit(f.s, &q), TW_ERR_INVALID);
    cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    tw_sched_plan_free(&small);
    tw_sched_plan_free(&q);
    free(buf);
    teardown(&f);
}

/* Exhaustion with 1-token blocks: A, B, C (3 in, 5 out each) fill the 9 blocks in step 1. In
 * step 2 A's decode needs a block: the most recently admitted unscheduled request, C, is
 * preempted (not B), A and B decode, and no admission happens in that step. C comes back first
 * when blocks free up and recomputes its prompt and its generated token. */
Test(serve_sched, preemption_takes_the_youngest) {
    fixture f;
    setup(&f, 3, 100, 1, TW_KV_PREEMPT, 9, 1);
    cr_assert_eq(tw_sched_add(f.s, 0, 3, 5), TW_OK);
    cr_assert_eq(tw_sched_add(f.s, 1, 3, 5), TW_OK);
    cr_assert_eq(tw_sched_add(f.s, 2, 3, 5), TW_OK);
    cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
    cr_assert_eq(f.p.n_items, 3);
    cr_assert_eq(tw_kvpool_free_blocks(f.pool), 0);
    cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
    cr_assert_eq(f.p.n_preempted, 1);
    cr_assert_eq(f.p.preempted_id[0], 2, "the youngest goes");
    cr_assert_eq(f.p.n_items, 2);
    expect_item(&f.p.items[0], 0, TW_SCHED_DECODE, 3, 1, 1, 0, 0);
    expect_item(&f.p.items[1], 1, TW_SCHED_DECODE, 3, 1, 1, 0, 0);
    cr_assert_eq(tw_kvpool_free_blocks(f.pool), 1, "C's 3 blocks freed, 2 taken");
    cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    tw_sched_req_info info;
    cr_assert_eq(tw_sched_request_info(f.s, 2, &info), TW_OK);
    cr_assert_eq(info.state, TW_REQ_WAITING);
    cr_assert_eq(info.computed, 0);
    cr_assert_eq(info.generated, 1, "its emitted token is kept");
    cr_assert_eq(info.preemptions, 1);
    /* run to the end: C's first readmission recomputes 4 positions (3 prompt + 1 generated);
     * later ones (it is preempted again when B grows) recompute what it has by then */
    int recompute = 0;
    while (tw_sched_n_finished(f.s) < 3) {
        cr_assert_eq(tw_sched_step(f.s, &f.p), TW_OK);
        for (int k = 0; k < f.p.n_items; k++)
            if (f.p.items[k].req_id == 2 && f.p.items[k].admitted) {
                cr_assert_eq(f.p.items[k].start, 0);
                if (recompute == 0) cr_assert_eq(f.p.items[k].n_tokens, 4);
                cr_assert_eq(f.p.items[k].kind, TW_SCHED_PREFILL);
                cr_assert(f.p.items[k].emits, "the recompute emits token 2");
                recompute++;
            }
        cr_assert_eq(tw_sched_commit(f.s, &f.p), TW_OK);
    }
    cr_assert_eq(recompute, 2, "readmitted after each of its two preemptions");
    cr_assert_eq(tw_kvpool_used_blocks(f.pool), 0);
    teardown(&f);
}
