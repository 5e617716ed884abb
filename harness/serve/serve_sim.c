/* Simulation driver over a fake engine cost model (tw_serve_sim.h). */
#include "tw_serve_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_serve_store.h"

/* Pre-run refusal of a configuration that some allowed request could never run under. */
static tw_status tw_sim_refuse_impossible(const tw_serve_sim_config *c) {
    int in_max, out_max;
    int64_t total_max;
    tw_loadgen_lengths_max(c->load.lengths, &in_max, &out_max, &total_max);
    int64_t positions = total_max - 1;
    int64_t blocks = (positions + c->kv_block_tokens - 1) / c->kv_block_tokens;
    if (blocks > c->kv_blocks)
        return TW_ERR(TW_ERR_INVALID,
                      "a request of up to %lld tokens (lengths '%s') needs %lld KV blocks of %d; "
                      "the KV cache has %lld: refused before running (give more KV memory or "
                      "shorter lengths)",
                      (long long)total_max, c->load.lengths->name, (long long)blocks,
                      c->kv_block_tokens, (long long)c->kv_blocks);
    if (!c->sched.chunked_prefill && in_max > c->sched.token_budget)
        return TW_ERR(TW_ERR_INVALID,
                      "prompts of up to %d tokens (lengths '%s') exceed the step budget of %d "
                      "with chunked prefill off: refused before running",
                      in_max, c->load.lengths->name, c->sched.token_budget);
    return TW_OK;
}

/* The follower's pool must hold exactly the leader's block tables. */
static tw_status tw_sim_compare_pools(const tw_kvpool *a, const tw_kvpool *b, int64_t step) {
    if (tw_kvpool_free_blocks(a) != tw_kvpool_free_blocks(b) ||
        tw_kvpool_open_seqs(a) != tw_kvpool_open_seqs(b))
        return TW_ERR(TW_ERR_INTERNAL, "sim step %lld: the follower's pool differs in counts",
                      (long long)step);
    for (int s = 0; s < tw_kvpool_max_seqs(a); s++) {
        int64_t n = tw_kvpool_seq_blocks(a, s);
        if (tw_kvpool_is_open(a, s) != tw_kvpool_is_open(b, s) || n != tw_kvpool_seq_blocks(b, s))
            return TW_ERR(TW_ERR_INTERNAL, "sim step %lld: slot %d differs on the follower",
                          (long long)step, s);
        if (n && memcmp(tw_kvpool_block_table(a, s), tw_kvpool_block_table(b, s),
                        sizeof(int32_t) * (size_t)n) != 0)
            return TW_ERR(TW_ERR_INTERNAL, "sim step %lld: slot %d's block table differs",
                          (long long)step, s);
    }
    return TW_OK;
}

typedef struct {
    tw_kvpool *pool, *fpool;
    tw_sched *sched;
    tw_sched_plan plan, fplan;
    unsigned char *buf;
    size_t buf_cap;
    tw_serve_store st;
} tw_sim_state;

static void tw_sim_state_free(tw_sim_state *x) {
    tw_sched_destroy(x->sched);
    tw_kvpool_destroy(x->pool);
    tw_kvpool_destroy(x->fpool);
    tw_sched_plan_free(&x->plan);
    tw_sched_plan_free(&x->fplan);
    free(x->buf);
    tw_serve_store_free(&x->st);
}

static tw_status tw_sim_issue(tw_sim_state *x, const tw_loadgen_request *q) {
    TW_TRY(tw_serve_store_add(&x->st, q));
    return tw_sched_add(x->sched, q->index, q->input_tokens, q->output_tokens);
}

static tw_status tw_sim_loop(const tw_serve_sim_config *c, tw_sim_state *x,
                             tw_serve_sim_result *out) {
    tw_loadgen lg;
    TW_TRY(tw_loadgen_init(&lg, &c->load));
    int closed = c->load.scenario == TW_LOADGEN_CONCURRENCY;
    tw_loadgen_request nxt;
    int have_nxt = 0;
    double t = 0;
    if (closed) {
        for (int k = 0; k < c->load.concurrency && tw_loadgen_next(&lg, 0, &nxt); k++)
            TW_TRY(tw_sim_issue(x, &nxt));
    } else {
        have_nxt = tw_loadgen_next(&lg, 0, &nxt);
    }
    int64_t max_steps = c->max_steps > 0 ? c->max_steps : 100000000;
    for (;;) {
        while (have_nxt && nxt.arrival_s <= t) {
            TW_TRY(tw_sim_issue(x, &nxt));
            have_nxt = tw_loadgen_next(&lg, t, &nxt);
        }
        if (tw_sched_n_waiting(x->sched) == 0 && tw_sched_n_running(x->sched) == 0) {
            if (!have_nxt) break;
            t = nxt.arrival_s; /* idle: jump to the next arrival */
            continue;
        }
        if (out->steps >= max_steps)
            return TW_ERR(TW_ERR_INTERNAL, "sim: %lld steps without finishing (livelock?)",
                          (long long)out->steps);
        tw_sched_plan *p = &x->plan;
        TW_TRY(tw_sched_step(x->sched, p));
        if (p->n_items == 0)
            return TW_ERR(TW_ERR_INTERNAL,
                          "sim step %lld: %lld requests wait and %lld run, but nothing can be "
                          "scheduled",
                          (long long)p->step, (long long)tw_sched_n_waiting(x->sched),
                          (long long)tw_sched_n_running(x->sched));
        if (c->check_invariants &&
            (p->total_tokens > c->sched.token_budget || p->n_items > c->sched.max_batch ||
             tw_sched_n_running(x->sched) > c->sched.max_batch))
            return TW_ERR(TW_ERR_INTERNAL, "sim step %lld: the plan breaks the budget or batch",
                          (long long)p->step);
        if (c->replay_follower) {
            size_t len;
            TW_TRY(tw_sched_plan_encode(p, x->buf, x->buf_cap, &len));
            TW_TRY(tw_sched_plan_decode(x->buf, len, &x->fplan));
            TW_TRY(tw_sched_follow_begin(x->fpool, &x->fplan));
            TW_TRY(tw_sim_compare_pools(x->pool, x->fpool, p->step));
        }
        double t0 = t;
        t += c->step_a_s + c->step_b_s * (double)p->total_tokens;
        for (int32_t k = 0; k < p->n_preempted; k++) x->st.rec[p->preempted_id[k]].preemptions++;
        for (int32_t k = 0; k < p->n_items; k++) {
            const tw_sched_item *it = &p->items[k];
            int64_t i = it->req_id;
            tw_serve_record *r = &x->st.rec[i];
            if (it->admitted && isnan(r->admit_s)) r->admit_s = t0;
            if (it->emits) {
                int e = x->st.emitted[i]++;
                x->st.tok[x->st.tok_off[i] + e] = t;
                if (e == 0) r->first_token_s = t;
                if (it->finishes) r->finish_s = t;
            }
        }
        if (p->total_tokens > out->max_step_tokens) out->max_step_tokens = p->total_tokens;
        if (p->n_items > out->max_step_items) out->max_step_items = p->n_items;
        TW_TRY(tw_sched_commit(x->sched, p));
        if (c->replay_follower) {
            tw_sched_follow_end(x->fpool, &x->fplan);
            TW_TRY(tw_sim_compare_pools(x->pool, x->fpool, p->step));
        }
        if (c->check_invariants) TW_TRY(tw_kvpool_check(x->pool));
        out->steps++;
        if (closed)
            for (int32_t k = 0; k < p->n_items; k++)
                if (p->items[k].finishes && tw_loadgen_next(&lg, t, &nxt))
                    TW_TRY(tw_sim_issue(x, &nxt));
    }
    out->t_end_s = t;
    return TW_OK;
}

tw_status tw_serve_sim_run(const tw_serve_sim_config *c, tw_serve_sim_result *out) {
    memset(out, 0, sizeof *out);
    TW_TRY(tw_loadgen_check(&c->load));
    if (!(c->step_a_s >= 0) || !(c->step_b_s >= 0) || !(c->step_a_s + c->step_b_s > 0) ||
        !isfinite(c->step_a_s) || !isfinite(c->step_b_s))
        return TW_ERR(TW_ERR_INVALID, "sim: step costs must be finite, >= 0, not both 0");
    if (c->kv_block_tokens < 1 || c->kv_blocks < 1)
        return TW_ERR(TW_ERR_INVALID, "sim: the KV cache needs >= 1 block of >= 1 token");
    TW_TRY(tw_sim_refuse_impossible(c));
    tw_sim_state x;
    memset(&x, 0, sizeof x);
    tw_status st = tw_kvpool_create(c->kv_blocks, c->kv_block_tokens, c->sched.max_batch, &x.pool);
    if (st == TW_OK) st = tw_sched_create(&c->sched, x.pool, &x.sched);
    if (st == TW_OK) st = tw_sched_plan_init(&x.plan, c->sched.max_batch, c->kv_blocks);
    if (st == TW_OK && c->replay_follower) {
        st = tw_kvpool_create(c->kv_blocks, c->kv_block_tokens, c->sched.max_batch, &x.fpool);
        if (st == TW_OK) st = tw_sched_plan_init(&x.fplan, c->sched.max_batch, c->kv_blocks);
        x.buf_cap = tw_sched_plan_max_encoded_size(c->sched.max_batch, c->kv_blocks);
        if (st == TW_OK && !(x.buf = malloc(x.buf_cap)))
            st = TW_ERR(TW_ERR_NOMEM, "sim: no memory for the plan buffer");
    }
    if (st == TW_OK) st = tw_sim_loop(c, &x, out);
    if (st == TW_OK && tw_sched_n_finished(x.sched) != x.st.n)
        st = TW_ERR(TW_ERR_INTERNAL, "sim: %lld of %lld requests finished",
                    (long long)tw_sched_n_finished(x.sched), (long long)x.st.n);
    if (st == TW_OK) {
        out->preemptions = tw_sched_n_preemptions(x.sched);
        out->kv_peak_used_blocks = tw_kvpool_peak_used(x.pool);
        out->kv_leaked_blocks = tw_kvpool_used_blocks(x.pool);
        out->n = x.st.n;
        out->rec = x.st.rec;
        out->token_s = x.st.tok;
        for (int64_t i = 0; i < x.st.n; i++) out->rec[i].token_s = x.st.tok + x.st.tok_off[i];
        x.st.rec = NULL;
        x.st.tok = NULL;
    }
    tw_sim_state_free(&x);
    return st;
}

void tw_serve_sim_free(tw_serve_sim_result *r) {
    free(r->rec);
    free(r->token_s);
    memset(r, 0, sizeof *r);
}

tw_status tw_serve_sim_window(const tw_serve_sim_result *r, double *t_start_s, double *t_end_s) {
    int64_t first = -1;
    double end = -INFINITY;
    for (int64_t i = 0; i < r->n; i++) {
        if (r->rec[i].warmup) continue;
        if (first < 0) first = i;
        if (r->rec[i].finish_s > end) end = r->rec[i].finish_s;
    }
    if (first < 0) return TW_ERR(TW_ERR_INVALID, "sim: no measured request");
    *t_start_s = first > 0 ? r->rec[first].arrival_s : 0.0;
    *t_end_s = end;
    return TW_OK;
}

tw_status tw_serve_sim_trial(void *vctx, double rate_rps, int64_t min_requests,
                             tw_findrate_outcome *out) {
    const tw_serve_sim_trial_ctx *ctx = vctx;
    memset(out, 0, sizeof *out);
    tw_serve_sim_config c = ctx->base;
    if (c.load.scenario != TW_LOADGEN_SERVER && c.load.scenario != TW_LOADGEN_INTERACTIVE)
        return TW_ERR(TW_ERR_INVALID, "sim trial: the capacity search needs a server or "
                                      "interactive scenario");
    c.load.rate_rps = rate_rps;
    double by_time = ceil(rate_rps * ctx->min_duration_s);
    c.load.n_requests = by_time > (double)min_requests ? (int64_t)by_time : min_requests;
    c.load.duration_s = 0;
    tw_serve_sim_result r;
    TW_TRY(tw_serve_sim_run(&c, &r));
    double t0 = 0, t1 = 0;
    tw_serve_summary s;
    tw_status st = tw_serve_sim_window(&r, &t0, &t1);
    if (st == TW_OK) st = tw_serve_summarize(r.rec, r.n, t0, t1, 1, &ctx->slo, &ctx->limits, &s);
    tw_serve_sim_free(&r);
    TW_TRY(st);
    out->met = s.constraint_met;
    out->n_requests = s.n_measured;
    out->ttft_pctl_s = s.ttft_pctl_s;
    out->tpot_pctl_s = s.tpot_pctl_s;
    out->goodput_rps = s.goodput_rps;
    out->output_tps = s.output_tps;
    out->goodput_output_tps = s.goodput_output_tps;
    return TW_OK;
}
