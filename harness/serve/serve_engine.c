/* The serving engine's event loop over a real engine (tw_serve_engine.h). */
#include "tw_serve_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tw_comm.h"
#include "tw_serve_store.h"
#include "tw_util.h"

/* Control word in front of each broadcast plan. */
enum { TW_SE_END = 0, TW_SE_STEP = 1 };

/* Positions of a request: its prompt, then its generated tokens. */
static int tw_se_token(const tw_serve_store *s, const tw_serve_engine_config *c, int64_t id, int p,
                       int vocab) {
    const tw_serve_record *r = &s->rec[id];
    if (p < r->input_tokens) return tw_serve_prompt_token(c->prompt_seed, id, p, vocab);
    return s->toks[s->tok_off[id] + (p - r->input_tokens)];
}

tw_status tw_serve_engine_check(const tw_serve_engine_config *c, int max_seq) {
    TW_TRY(tw_loadgen_check(&c->load));
    if (c->kv_block_tokens < 1 || c->kv_blocks < 1)
        return TW_ERR(TW_ERR_INVALID, "serve: the KV cache needs >= 1 block of >= 1 token");
    int64_t n = tw_loadgen_max_requests(&c->load);
    if (n > 1000000) n = -1; /* too many to draw one by one: the longest the lengths allow */
    const tw_loadgen_lengths *L = c->load.lengths;
    int64_t cap_pos = c->kv_blocks * (int64_t)c->kv_block_tokens;
    if (cap_pos > max_seq) cap_pos = max_seq;
    /* every request when their number is known; else the longest the lengths allow */
    int64_t limit = n >= 0 ? n : 0;
    for (int64_t i = 0; i <= limit; i++) {
        int in, out;
        int64_t total;
        char who[96];
        if (n >= 0) {
            if (i == n) break;
            tw_loadgen_lengths_draw(L, c->load.seed, i, &in, &out);
            total = (int64_t)in + out;
            snprintf(who, sizeof who, "request %lld", (long long)i);
        } else {
            tw_loadgen_lengths_max(L, &in, &out, &total);
            snprintf(who, sizeof who, "the longest request the lengths allow");
        }
        int64_t pos = total - 1, blocks = tw_kvpool_blocks_for(c->kv_block_tokens, pos);
        if (blocks > c->kv_blocks || pos > max_seq)
            return TW_ERR(TW_ERR_INVALID,
                          "%s (input %d, output %d tokens: %lld KV positions, %lld blocks of %d) "
                          "can never be served: the KV cache holds %lld blocks (%lld positions) "
                          "and the engine %d positions per sequence; refused before running "
                          "(give more KV memory or shorter lengths)",
                          who, in, out, (long long)pos, (long long)blocks, c->kv_block_tokens,
                          (long long)c->kv_blocks, (long long)cap_pos, max_seq);
        if (!c->sched.chunked_prefill && in > c->sched.token_budget)
            return TW_ERR(TW_ERR_INVALID,
                          "%s has a prompt of %d tokens, over the step budget of %d with chunked "
                          "prefill off: refused before running",
                          who, in, c->sched.token_budget);
    }
    return TW_OK;
}

typedef struct {
    tw_kvpool *pool;
    tw_sched *sched; /* rank 0 */
    tw_sched_plan plan;
    tw_serve_store st;
    unsigned char *hbuf; /* [4 + max encoded] control word then the plan */
    void *dbuf;          /* the communicator's copy */
    size_t buf_bytes;
    /* the step's arrays */
    int *q_start, *start_pos, *tokens, *next;
    int32_t *tables;
    int max_blocks, max_rows;
} tw_se_state;

static void tw_se_state_free(tw_se_state *x, struct tw_comm *comm) {
    tw_sched_destroy(x->sched);
    tw_kvpool_destroy(x->pool);
    tw_sched_plan_free(&x->plan);
    tw_serve_store_free(&x->st);
    free(x->hbuf);
    if (x->dbuf) tw_comm_buf_free(comm, x->dbuf);
    free(x->q_start);
    free(x->start_pos);
    free(x->tokens);
    free(x->next);
    free(x->tables);
}

/* Rank 0 sends (control, plan); the others receive them into x->plan. */
static tw_status tw_se_bcast(tw_se_state *x, struct tw_comm *comm, int *control) {
    size_t count = x->buf_bytes / 4;
    if (tw_comm_rank(comm) == 0) {
        uint32_t cw = (uint32_t)*control;
        memcpy(x->hbuf, &cw, 4);
        if (*control == TW_SE_STEP) {
            size_t len;
            TW_TRY(tw_sched_plan_encode(&x->plan, x->hbuf + 4, x->buf_bytes - 4, &len));
        }
        TW_TRY(tw_comm_buf_upload(comm, x->dbuf, x->hbuf, x->buf_bytes));
    }
    TW_TRY(tw_comm_broadcast(comm, x->dbuf, x->dbuf, count, TW_I32, 0));
    if (tw_comm_rank(comm) != 0) {
        TW_TRY(tw_comm_buf_download(comm, x->hbuf, x->dbuf, x->buf_bytes));
        uint32_t cw;
        memcpy(&cw, x->hbuf, 4);
        *control = (int)cw;
        if (*control == TW_SE_STEP) { /* the encoding's own length (header offset 8) */
            uint64_t len;
            memcpy(&len, x->hbuf + 4 + 8, sizeof len);
            if (len > x->buf_bytes - 4)
                return TW_ERR(TW_ERR_PARSE, "serve: broadcast plan of %llu bytes > %zu",
                              (unsigned long long)len, x->buf_bytes - 4);
            TW_TRY(tw_sched_plan_decode(x->hbuf + 4, (size_t)len, &x->plan));
        }
    }
    return TW_OK;
}

/* Runs x->plan on the engine; *t_end: the clock after it. Tokens it emits go to the store. */
static tw_status tw_se_step(tw_engine *e, const tw_serve_engine_config *c, tw_se_state *x,
                            int vocab) {
    const tw_sched_plan *p = &x->plan;
    int n = p->n_items, rows = 0, nd = 0;
    while (nd < n && p->items[nd].kind == TW_SCHED_DECODE) nd++;
    for (int k = 0; k < n; k++) {
        const tw_sched_item *it = &p->items[k];
        int64_t id = it->req_id;
        if (id < 0 || id >= x->st.n)
            return TW_ERR(TW_ERR_INTERNAL, "serve step %lld: unknown request %lld",
                          (long long)p->step, (long long)id);
        if (rows + it->n_tokens > x->max_rows)
            return TW_ERR(TW_ERR_INTERNAL, "serve step %lld: %d rows exceed the budget %d",
                          (long long)p->step, rows + it->n_tokens, x->max_rows);
        x->q_start[k] = rows;
        x->start_pos[k] = it->start;
        for (int i = 0; i < it->n_tokens; i++)
            x->tokens[rows + i] = tw_se_token(&x->st, c, id, it->start + i, vocab);
        rows += it->n_tokens;
        int64_t nb = tw_kvpool_seq_blocks(x->pool, it->slot);
        if (nb > x->max_blocks || nb * c->kv_block_tokens < it->start + it->n_tokens)
            return TW_ERR(TW_ERR_INTERNAL,
                          "serve step %lld: request %lld's %lld blocks do not hold positions up "
                          "to %d",
                          (long long)p->step, (long long)id, (long long)nb,
                          it->start + it->n_tokens);
        memcpy(x->tables + (size_t)k * x->max_blocks, tw_kvpool_block_table(x->pool, it->slot),
               sizeof(int32_t) * (size_t)nb);
    }
    x->q_start[n] = rows;
    tw_engine_paged_step ps = {.n_seqs = n,
                               .n_decode = nd,
                               .q_start = x->q_start,
                               .start_pos = x->start_pos,
                               .tokens = x->tokens,
                               .block_tables = x->tables,
                               .max_blocks = x->max_blocks};
    TW_TRY(tw_engine_step_paged(e, &ps, x->next));
    for (int k = 0; k < n; k++) {
        const tw_sched_item *it = &p->items[k];
        if (!it->emits) continue;
        int64_t id = it->req_id;
        int g = x->st.emitted[id];
        if (g >= x->st.rec[id].output_tokens)
            return TW_ERR(TW_ERR_INTERNAL, "serve: request %lld emits more than %d tokens",
                          (long long)id, x->st.rec[id].output_tokens);
        x->st.toks[x->st.tok_off[id] + g] = x->next[k];
    }
    return TW_OK;
}

/* Sleeps until `until_s` on the run's clock (origin), in slices so a stop is seen promptly. */
static void tw_se_wait(double origin, double until_s, const tw_serve_engine_config *c) {
    for (;;) {
        double now = tw_now_s() - origin, left = until_s - now;
        if (left <= 0 || (c->stop && c->stop(c->stop_ctx))) return;
        if (left > 0.02) left = 0.02;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static tw_status tw_se_issue(tw_se_state *x, const tw_loadgen_request *q) {
    TW_TRY(tw_serve_store_add(&x->st, q));
    if (x->sched) TW_TRY(tw_sched_add(x->sched, q->index, q->input_tokens, q->output_tokens));
    return TW_OK;
}

static tw_status tw_se_leader(tw_engine *e, const tw_serve_engine_config *c, tw_se_state *x,
                              int vocab, tw_serve_engine_result *out) {
    struct tw_comm *comm = c->comm && tw_comm_size(c->comm) > 1 ? c->comm : NULL;
    tw_loadgen lg;
    TW_TRY(tw_loadgen_init(&lg, &c->load));
    int closed = c->load.scenario == TW_LOADGEN_CONCURRENCY;
    tw_loadgen_request nxt;
    int have_nxt = 0;
    double origin = tw_now_s(), t = 0;
    if (closed) {
        for (int k = 0; k < c->load.concurrency && tw_loadgen_next(&lg, 0, &nxt); k++)
            TW_TRY(tw_se_issue(x, &nxt));
    } else {
        have_nxt = tw_loadgen_next(&lg, 0, &nxt);
    }
    tw_status st = TW_OK;
    for (;;) {
        if (c->stop && c->stop(c->stop_ctx)) {
            out->interrupted = 1;
            break;
        }
        t = tw_now_s() - origin;
        while (have_nxt && nxt.arrival_s <= t) {
            if ((st = tw_se_issue(x, &nxt)) != TW_OK) goto end;
            have_nxt = tw_loadgen_next(&lg, t, &nxt);
        }
        if (tw_sched_n_waiting(x->sched) == 0 && tw_sched_n_running(x->sched) == 0) {
            if (!have_nxt) break;
            tw_se_wait(origin, nxt.arrival_s, c); /* idle until the next arrival */
            continue;
        }
        tw_sched_plan *p = &x->plan;
        if ((st = tw_sched_step(x->sched, p)) != TW_OK) goto end;
        if (p->n_items == 0) {
            st = TW_ERR(TW_ERR_INTERNAL, "serve step %lld: requests wait but none can run",
                        (long long)p->step);
            goto end;
        }
        if (comm) {
            int cw = TW_SE_STEP;
            if ((st = tw_se_bcast(x, comm, &cw)) != TW_OK) goto end;
        }
        double t0 = tw_now_s();
        if ((st = tw_se_step(e, c, x, vocab)) != TW_OK) goto end;
        double t1 = tw_now_s();
        out->busy_s += t1 - t0;
        double t_step = t1 - origin, t_start = t0 - origin;
        for (int32_t k = 0; k < p->n_preempted; k++) x->st.rec[p->preempted_id[k]].preemptions++;
        for (int32_t k = 0; k < p->n_items; k++) {
            const tw_sched_item *it = &p->items[k];
            tw_serve_record *r = &x->st.rec[it->req_id];
            if (it->admitted && isnan(r->admit_s))
                r->admit_s = t_start > r->arrival_s ? t_start : r->arrival_s;
            if (it->emits) {
                int g = x->st.emitted[it->req_id]++;
                x->st.tok[x->st.tok_off[it->req_id] + g] = t_step;
                if (g == 0) r->first_token_s = t_step;
                if (it->finishes) {
                    r->finish_s = t_step;
                    out->n_finished++;
                }
            }
        }
        if (p->total_tokens > out->max_step_tokens) out->max_step_tokens = p->total_tokens;
        if (p->n_items > out->max_step_items) out->max_step_items = p->n_items;
        if ((st = tw_sched_commit(x->sched, p)) != TW_OK) goto end;
        if (c->check_invariants && (st = tw_kvpool_check(x->pool)) != TW_OK) goto end;
        out->steps++;
        out->t_end_s = t_step;
        if (closed)
            for (int32_t k = 0; k < p->n_items; k++)
                if (p->items[k].finishes && tw_loadgen_next(&lg, t_step, &nxt))
                    if ((st = tw_se_issue(x, &nxt)) != TW_OK) goto end;
        if (c->progress) c->progress(c->progress_ctx, out->n_finished, x->st.n, out->steps);
    }
end:
    if (comm) { /* always release the followers, even after a failure here */
        int cw = TW_SE_END;
        tw_status sb = tw_se_bcast(x, comm, &cw);
        if (st == TW_OK) st = sb;
    }
    return st;
}

static tw_status tw_se_follower(tw_engine *e, const tw_serve_engine_config *c, tw_se_state *x,
                                int vocab, tw_serve_engine_result *out) {
    for (;;) {
        int cw = 0;
        TW_TRY(tw_se_bcast(x, c->comm, &cw));
        if (cw == TW_SE_END) return TW_OK;
        tw_sched_plan *p = &x->plan;
        /* the requests the plan names and this rank has not seen: drawn from the same load */
        for (int32_t k = 0; k < p->n_items; k++)
            while (p->items[k].req_id >= x->st.n) {
                tw_loadgen_request q = {.index = x->st.n};
                tw_loadgen_lengths_draw(c->load.lengths, c->load.seed, q.index, &q.input_tokens,
                                        &q.output_tokens);
                TW_TRY(tw_serve_store_add(&x->st, &q));
            }
        TW_TRY(tw_sched_follow_begin(x->pool, p));
        TW_TRY(tw_se_step(e, c, x, vocab));
        for (int32_t k = 0; k < p->n_items; k++)
            if (p->items[k].emits) x->st.emitted[p->items[k].req_id]++;
        tw_sched_follow_end(x->pool, p);
        out->steps++;
    }
}

tw_status tw_serve_engine_run(tw_engine *e, const tw_serve_engine_config *c,
                              tw_serve_engine_result *out) {
    memset(out, 0, sizeof *out);
    const tw_model_config *cfg = tw_engine_model(e);
    int max_seq = tw_engine_max_seq(e);
    TW_TRY(tw_serve_engine_check(c, max_seq));
    struct tw_comm *comm = c->comm && tw_comm_size(c->comm) > 1 ? c->comm : NULL;
    int leader = !comm || tw_comm_rank(comm) == 0;
    tw_se_state x;
    memset(&x, 0, sizeof x);
    x.st.keep_ids = 1; /* the greedy tokens, for the result and the isolated-run test */
    x.max_blocks = (int)tw_kvpool_blocks_for(c->kv_block_tokens, max_seq);
    x.max_rows = c->sched.token_budget;
    int mb = c->sched.max_batch;
    tw_status st = tw_kvpool_create(c->kv_blocks, c->kv_block_tokens, mb, &x.pool);
    if (st == TW_OK && leader) st = tw_sched_create(&c->sched, x.pool, &x.sched);
    if (st == TW_OK) st = tw_sched_plan_init(&x.plan, mb, c->kv_blocks);
    x.q_start = malloc(sizeof(int) * ((size_t)mb + 1));
    x.start_pos = malloc(sizeof(int) * (size_t)mb);
    x.next = malloc(sizeof(int) * (size_t)mb);
    x.tokens = malloc(sizeof(int) * (size_t)x.max_rows);
    x.tables = malloc(sizeof(int32_t) * (size_t)mb * (size_t)x.max_blocks);
    if (st == TW_OK && (!x.q_start || !x.start_pos || !x.next || !x.tokens || !x.tables))
        st = TW_ERR(TW_ERR_NOMEM, "serve: step arrays for %d sequences", mb);
    if (st == TW_OK && comm) {
        x.buf_bytes = (4 + tw_sched_plan_max_encoded_size(mb, c->kv_blocks) + 3) & ~(size_t)3;
        x.hbuf = calloc(1, x.buf_bytes);
        if (!x.hbuf) st = TW_ERR(TW_ERR_NOMEM, "serve: plan buffer of %zu bytes", x.buf_bytes);
        if (st == TW_OK) st = tw_comm_buf_alloc(comm, x.buf_bytes, &x.dbuf);
    }
    if (st == TW_OK)
        st = leader ? tw_se_leader(e, c, &x, cfg->vocab, out)
                    : tw_se_follower(e, c, &x, cfg->vocab, out);
    if (st == TW_OK && leader && !out->interrupted && tw_sched_n_finished(x.sched) != x.st.n)
        st = TW_ERR(TW_ERR_INTERNAL, "serve: %lld of %lld requests finished",
                    (long long)tw_sched_n_finished(x.sched), (long long)x.st.n);
    if (st == TW_OK) {
        out->preemptions = x.sched ? tw_sched_n_preemptions(x.sched) : 0;
        out->kv_peak_used_blocks = tw_kvpool_peak_used(x.pool);
        out->kv_leaked_blocks = tw_kvpool_used_blocks(x.pool);
        if (out->interrupted) out->kv_leaked_blocks = 0; /* requests cut short still hold theirs */
        st = tw_kvpool_check(x.pool);
    }
    if (st == TW_OK && leader) {
        out->n = x.st.n;
        out->rec = x.st.rec;
        out->token_s = x.st.tok;
        out->tok_off = x.st.tok_off;
        for (int64_t i = 0; i < x.st.n; i++) out->rec[i].token_s = x.st.tok + x.st.tok_off[i];
        if (c->keep_tokens) {
            out->tokens = x.st.toks;
            x.st.toks = NULL;
        }
        x.st.rec = NULL;
        x.st.tok = NULL;
        x.st.tok_off = NULL;
    }
    tw_se_state_free(&x, comm);
    return st;
}

void tw_serve_engine_free(tw_serve_engine_result *r) {
    free(r->rec);
    free(r->token_s);
    free(r->tokens);
    free(r->tok_off);
    memset(r, 0, sizeof *r);
}

tw_status tw_serve_engine_finished(const tw_serve_engine_result *r, tw_serve_record **fin,
                                   int64_t *n_fin, double *t_start_s, double *t_end_s) {
    *fin = NULL;
    *n_fin = 0;
    tw_serve_record *f = malloc(sizeof *f * (size_t)(r->n > 0 ? r->n : 1));
    if (!f) return TW_ERR(TW_ERR_NOMEM, "serve: copy of %lld records", (long long)r->n);
    int64_t m = 0, first = -1;
    double end = -INFINITY;
    for (int64_t i = 0; i < r->n; i++) {
        if (isnan(r->rec[i].finish_s)) continue;
        f[m++] = r->rec[i];
        if (r->rec[i].warmup) continue;
        if (first < 0) first = i;
        if (r->rec[i].finish_s > end) end = r->rec[i].finish_s;
    }
    if (first < 0) {
        free(f);
        return TW_ERR(TW_ERR_INVALID, "serve: no measured request finished");
    }
    int any_warm = 0;
    for (int64_t i = 0; i < r->n; i++) any_warm |= r->rec[i].warmup;
    *t_start_s = any_warm ? r->rec[first].arrival_s : 0.0;
    *t_end_s = end;
    *fin = f;
    *n_fin = m;
    return TW_OK;
}
