/* Continuous-batching scheduler (tw_serve_sched.h; policy in doc/SERVING.md). */
#include "tw_serve_sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    int32_t input, output, generated, computed, slot, preemptions;
    tw_sched_req_state state;
    int64_t first_admit, mark; /* mark: the step that last scheduled it */
} tw_sreq;

struct tw_sched {
    tw_sched_config c;
    tw_kvpool *pool;
    tw_sreq *reqs;
    int64_t n_reqs, cap_reqs;
    /* waiting: a ring of request indices */
    int64_t *wq;
    int64_t wq_cap, wq_head, wq_n;
    int64_t *running; /* admission order, oldest first */
    int64_t n_running;
    int64_t *slot_owner;
    int64_t step, n_finished, n_preemptions, n_admit_order;
    int pending; /* a plan was decided and not committed */
};

static int64_t tw_known(const tw_sreq *r) {
    return (int64_t)r->input + r->generated;
}

tw_status tw_sched_create(const tw_sched_config *c, tw_kvpool *pool, tw_sched **out) {
    *out = NULL;
    if (c->max_batch < 1 || c->token_budget < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "scheduler: max batch and token budget must be >= 1 (got "
                      "%d, %d)",
                      c->max_batch, c->token_budget);
    if (c->kv_policy != TW_KV_RESERVE && c->kv_policy != TW_KV_PREEMPT)
        return TW_ERR(TW_ERR_INVALID, "scheduler: unknown KV policy %d", c->kv_policy);
    if (!pool || tw_kvpool_max_seqs(pool) < c->max_batch)
        return TW_ERR(TW_ERR_INVALID, "scheduler: the KV pool needs >= %d sequence slots",
                      c->max_batch);
    if (tw_kvpool_open_seqs(pool) != 0)
        return TW_ERR(TW_ERR_INVALID, "scheduler: the KV pool must start empty");
    tw_sched *s = calloc(1, sizeof *s);
    if (!s) return TW_ERR(TW_ERR_NOMEM, "scheduler: no memory");
    s->c = *c;
    s->pool = pool;
    int ms = tw_kvpool_max_seqs(pool);
    s->running = malloc(sizeof(int64_t) * (size_t)c->max_batch);
    s->slot_owner = malloc(sizeof(int64_t) * (size_t)ms);
    if (!s->running || !s->slot_owner) {
        tw_sched_destroy(s);
        return TW_ERR(TW_ERR_NOMEM, "scheduler: no memory");
    }
    for (int i = 0; i < ms; i++) s->slot_owner[i] = -1;
    *out = s;
    return TW_OK;
}

void tw_sched_destroy(tw_sched *s) {
    if (!s) return;
    free(s->reqs);
    free(s->wq);
    free(s->running);
    free(s->slot_owner);
    free(s);
}

/* ---- waiting queue -------------------------------------------------------------------------- */

static tw_status tw_wq_grow(tw_sched *s) {
    if (s->wq_n < s->wq_cap) return TW_OK;
    int64_t cap = s->wq_cap ? 2 * s->wq_cap : 64;
    int64_t *q = malloc(sizeof(int64_t) * (size_t)cap);
    if (!q) return TW_ERR(TW_ERR_NOMEM, "scheduler: no memory for the waiting queue");
    for (int64_t i = 0; i < s->wq_n; i++) q[i] = s->wq[(s->wq_head + i) % s->wq_cap];
    free(s->wq);
    s->wq = q;
    s->wq_cap = cap;
    s->wq_head = 0;
    return TW_OK;
}

static tw_status tw_wq_push_back(tw_sched *s, int64_t r) {
    TW_TRY(tw_wq_grow(s));
    s->wq[(s->wq_head + s->wq_n) % s->wq_cap] = r;
    s->wq_n++;
    return TW_OK;
}

static tw_status tw_wq_push_front(tw_sched *s, int64_t r) {
    TW_TRY(tw_wq_grow(s));
    s->wq_head = (s->wq_head + s->wq_cap - 1) % s->wq_cap;
    s->wq[s->wq_head] = r;
    s->wq_n++;
    return TW_OK;
}

static int64_t tw_wq_front(const tw_sched *s) {
    return s->wq[s->wq_head];
}

static void tw_wq_pop_front(tw_sched *s) {
    s->wq_head = (s->wq_head + 1) % s->wq_cap;
    s->wq_n--;
}

/* ---- requests ------------------------------------------------------------------------------- */

tw_status tw_sched_add(tw_sched *s, int64_t id, int input_tokens, int output_tokens) {
    if (input_tokens < 1 || output_tokens < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "request %lld: needs >= 1 input and output token (got %d, %d)", (long long)id,
                      input_tokens, output_tokens);
    int64_t positions = (int64_t)input_tokens + output_tokens - 1;
    if (positions > INT32_MAX - 1)
        return TW_ERR(TW_ERR_INVALID, "request %lld: %lld positions is too long", (long long)id,
                      (long long)positions);
    if (!tw_kvpool_fits_ever(s->pool, positions))
        return TW_ERR(TW_ERR_INVALID,
                      "request %lld (input %d, output %d) needs %lld KV positions = %lld blocks "
                      "of %d; the whole KV cache has %lld blocks: it can never be served",
                      (long long)id, input_tokens, output_tokens, (long long)positions,
                      (long long)tw_kvpool_blocks_for(tw_kvpool_block_tokens(s->pool), positions),
                      tw_kvpool_block_tokens(s->pool), (long long)tw_kvpool_n_blocks(s->pool));
    if (!s->c.chunked_prefill && input_tokens > s->c.token_budget)
        return TW_ERR(TW_ERR_INVALID,
                      "request %lld: a prompt of %d tokens exceeds the step budget of %d and "
                      "chunked prefill is off: it can never be scheduled",
                      (long long)id, input_tokens, s->c.token_budget);
    if (s->n_reqs == s->cap_reqs) {
        int64_t cap = s->cap_reqs ? 2 * s->cap_reqs : 64;
        tw_sreq *r = realloc(s->reqs, sizeof *r * (size_t)cap);
        if (!r)
            return TW_ERR(TW_ERR_NOMEM, "scheduler: no memory for %lld requests", (long long)cap);
        s->reqs = r;
        s->cap_reqs = cap;
    }
    tw_sreq *r = &s->reqs[s->n_reqs];
    memset(r, 0, sizeof *r);
    r->id = id;
    r->input = input_tokens;
    r->output = output_tokens;
    r->slot = -1;
    r->state = TW_REQ_WAITING;
    r->first_admit = -1;
    r->mark = -1;
    TW_TRY(tw_wq_push_back(s, s->n_reqs));
    s->n_reqs++;
    return TW_OK;
}

/* ---- planning -------------------------------------------------------------------------------- */

static void tw_running_remove(tw_sched *s, int64_t at) {
    memmove(&s->running[at], &s->running[at + 1],
            sizeof(int64_t) * (size_t)(s->n_running - at - 1));
    s->n_running--;
}

static tw_status tw_preempt(tw_sched *s, int64_t at, tw_sched_plan *p) {
    int64_t ri = s->running[at];
    tw_sreq *r = &s->reqs[ri];
    if (p->n_preempted >= p->cap_preempted)
        return TW_ERR(TW_ERR_INTERNAL, "scheduler: plan capacity for preemptions exceeded");
    p->preempted_id[p->n_preempted] = r->id;
    p->preempted_slot[p->n_preempted] = r->slot;
    p->n_preempted++;
    tw_kvpool_close(s->pool, r->slot);
    s->slot_owner[r->slot] = -1;
    r->slot = -1;
    r->computed = 0; /* recompute: prompt and generated tokens are prefilled again */
    r->preemptions++;
    r->state = TW_REQ_WAITING;
    s->n_preemptions++;
    tw_running_remove(s, at);
    return tw_wq_push_front(s, ri);
}

/* Appends an item for request index ri computing n positions, after growing its table. */
static tw_status tw_add_item(tw_sched *s, int64_t ri, int32_t n, int admitted, int64_t grow_to,
                             tw_sched_plan *p) {
    tw_sreq *r = &s->reqs[ri];
    int64_t before = tw_kvpool_seq_blocks(s->pool, r->slot);
    TW_TRY(tw_kvpool_grow(s->pool, r->slot, grow_to));
    int64_t after = tw_kvpool_seq_blocks(s->pool, r->slot);
    if (p->n_items >= p->cap_items || p->n_blocks + (after - before) > p->cap_blocks)
        return TW_ERR(TW_ERR_INTERNAL, "scheduler: plan capacity exceeded");
    const int32_t *table = tw_kvpool_block_table(s->pool, r->slot);
    tw_sched_item *it = &p->items[p->n_items++];
    memset(it, 0, sizeof *it);
    it->req_id = r->id;
    it->slot = r->slot;
    it->start = r->computed;
    it->n_tokens = n;
    it->kind =
        (r->generated > 0 && tw_known(r) - r->computed == 1) ? TW_SCHED_DECODE : TW_SCHED_PREFILL;
    it->emits = (int64_t)r->computed + n == tw_known(r);
    it->finishes = it->emits && r->generated + 1 == r->output;
    it->admitted = admitted;
    it->first_block = p->n_blocks;
    it->n_blocks = (int32_t)(after - before);
    for (int64_t b = before; b < after; b++) p->blocks[p->n_blocks++] = table[b];
    p->total_tokens += n;
    r->mark = s->step;
    return TW_OK;
}

/* Schedules n positions of running[at], preempting (TW_KV_PREEMPT) the youngest unscheduled
 * running requests when blocks run out. *scheduled = 0 when it had to preempt itself. */
static tw_status tw_schedule_running(tw_sched *s, int64_t at, int32_t n, tw_sched_plan *p,
                                     int *scheduled) {
    int64_t ri = s->running[at];
    int64_t target = (int64_t)s->reqs[ri].computed + n;
    while (tw_kvpool_grow_need(s->pool, s->reqs[ri].slot, target) >
           tw_kvpool_free_blocks(s->pool)) {
        if (s->c.kv_policy == TW_KV_RESERVE)
            return TW_ERR(TW_ERR_INTERNAL, "scheduler: a reserved request ran out of blocks");
        int64_t victim = -1;
        for (int64_t j = s->n_running - 1; j > at; j--)
            if (s->reqs[s->running[j]].mark != s->step) {
                victim = j;
                break;
            }
        if (victim < 0) {
            TW_TRY(tw_preempt(s, at, p));
            *scheduled = 0;
            return TW_OK;
        }
        TW_TRY(tw_preempt(s, victim, p));
    }
    TW_TRY(tw_add_item(s, ri, n, 0, target, p));
    *scheduled = 1;
    return TW_OK;
}

tw_status tw_sched_step(tw_sched *s, tw_sched_plan *p) {
    if (s->pending) return TW_ERR(TW_ERR_INVALID, "scheduler: the last plan was not committed");
    s->step++;
    p->step = s->step;
    p->n_items = p->n_preempted = p->n_blocks = p->total_tokens = 0;
    int64_t budget = s->c.token_budget;
    /* 1. decodes, oldest first */
    for (int64_t i = 0; i < s->n_running && budget > 0;) {
        tw_sreq *r = &s->reqs[s->running[i]];
        if (tw_known(r) - r->computed != 1) {
            i++;
            continue;
        }
        int ok;
        TW_TRY(tw_schedule_running(s, i, 1, p, &ok));
        if (ok) {
            budget -= 1;
            i++;
        }
    }
    /* 2. running prefills (prompt chunks, recomputes), oldest first */
    for (int64_t i = 0; i < s->n_running && budget > 0;) {
        tw_sreq *r = &s->reqs[s->running[i]];
        int64_t need = tw_known(r) - r->computed;
        if (r->mark == s->step || need < 1) {
            i++;
            continue;
        }
        int32_t n = (int32_t)(need < budget ? need : budget);
        int ok;
        TW_TRY(tw_schedule_running(s, i, n, p, &ok));
        if (ok) {
            budget -= n;
            i++;
        }
    }
    /* 3. admissions, FIFO, never in a step that preempted */
    while (p->n_preempted == 0 && s->wq_n > 0 && s->n_running < s->c.max_batch && budget > 0) {
        int64_t ri = tw_wq_front(s);
        tw_sreq *r = &s->reqs[ri];
        int64_t need = tw_known(r); /* computed is 0 while waiting */
        if (!s->c.chunked_prefill && r->generated == 0 && need > budget) break;
        int32_t n = (int32_t)(need < budget ? need : budget);
        int64_t grow_to =
            s->c.kv_policy == TW_KV_RESERVE ? (int64_t)r->input + r->output - 1 : (int64_t)n;
        if (tw_kvpool_blocks_for(tw_kvpool_block_tokens(s->pool), grow_to) >
            tw_kvpool_free_blocks(s->pool))
            break; /* admission waits for blocks */
        int slot;
        TW_TRY(tw_kvpool_open(s->pool, &slot));
        tw_wq_pop_front(s);
        r->slot = slot;
        r->state = TW_REQ_RUNNING;
        if (r->first_admit < 0) r->first_admit = s->n_admit_order++;
        s->slot_owner[slot] = ri;
        s->running[s->n_running++] = ri;
        TW_TRY(tw_add_item(s, ri, n, 1, grow_to, p));
        budget -= n;
    }
    s->pending = 1;
    return TW_OK;
}

tw_status tw_sched_commit(tw_sched *s, const tw_sched_plan *p) {
    if (!s->pending || p->step != s->step)
        return TW_ERR(TW_ERR_INVALID, "scheduler: commit of a plan that is not the last decided");
    for (int32_t k = 0; k < p->n_items; k++) {
        const tw_sched_item *it = &p->items[k];
        int64_t ri = (it->slot >= 0 && it->slot < tw_kvpool_max_seqs(s->pool))
                         ? s->slot_owner[it->slot]
                         : -1;
        tw_sreq *r = ri >= 0 ? &s->reqs[ri] : NULL;
        if (!r || r->id != it->req_id || r->computed != it->start || r->state != TW_REQ_RUNNING)
            return TW_ERR(TW_ERR_INVALID, "scheduler: plan item %d does not match its request", k);
        r->computed += it->n_tokens;
        if (it->emits) r->generated++;
        if (it->finishes) {
            tw_kvpool_close(s->pool, r->slot);
            s->slot_owner[r->slot] = -1;
            r->slot = -1;
            r->state = TW_REQ_FINISHED;
            s->n_finished++;
            for (int64_t j = 0; j < s->n_running; j++)
                if (s->running[j] == ri) {
                    tw_running_remove(s, j);
                    break;
                }
        }
    }
    s->pending = 0;
    return TW_OK;
}

int64_t tw_sched_n_waiting(const tw_sched *s) {
    return s->wq_n;
}
int64_t tw_sched_n_running(const tw_sched *s) {
    return s->n_running;
}
int64_t tw_sched_n_finished(const tw_sched *s) {
    return s->n_finished;
}
int64_t tw_sched_n_preemptions(const tw_sched *s) {
    return s->n_preemptions;
}

tw_status tw_sched_request_info(const tw_sched *s, int64_t id, tw_sched_req_info *out) {
    for (int64_t i = 0; i < s->n_reqs; i++) {
        const tw_sreq *r = &s->reqs[i];
        if (r->id != id) continue;
        out->state = r->state;
        out->input_tokens = r->input;
        out->output_tokens = r->output;
        out->generated = r->generated;
        out->computed = r->computed;
        out->preemptions = r->preemptions;
        out->slot = r->slot;
        out->first_admit_order = r->first_admit;
        return TW_OK;
    }
    return TW_ERR(TW_ERR_INVALID, "scheduler: no request %lld", (long long)id);
}

/* ---- plans ----------------------------------------------------------------------------------- */

tw_status tw_sched_plan_init(tw_sched_plan *p, int max_batch, int64_t n_blocks) {
    memset(p, 0, sizeof *p);
    if (max_batch < 1 || n_blocks < 1 || n_blocks > INT32_MAX)
        return TW_ERR(TW_ERR_INVALID, "plan: bad capacities (%d, %lld)", max_batch,
                      (long long)n_blocks);
    p->cap_items = p->cap_preempted = max_batch;
    p->cap_blocks = (int32_t)n_blocks;
    p->items = calloc((size_t)max_batch, sizeof *p->items);
    p->preempted_id = calloc((size_t)max_batch, sizeof *p->preempted_id);
    p->preempted_slot = calloc((size_t)max_batch, sizeof *p->preempted_slot);
    p->blocks = calloc((size_t)n_blocks, sizeof *p->blocks);
    if (!p->items || !p->preempted_id || !p->preempted_slot || !p->blocks) {
        tw_sched_plan_free(p);
        return TW_ERR(TW_ERR_NOMEM, "plan: no memory");
    }
    return TW_OK;
}

void tw_sched_plan_free(tw_sched_plan *p) {
    free(p->items);
    free(p->preempted_id);
    free(p->preempted_slot);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}

#define TW_PLAN_MAGIC   0x50535754u /* "TWSP" little-endian */
#define TW_PLAN_VERSION 1u
#define TW_PLAN_HEADER  40 /* magic, version, total bytes, step, 4 counts */
#define TW_PLAN_ITEM    44 /* i64 id + 9 x i32 */
#define TW_PLAN_PREEMPT 12 /* i64 id + i32 slot */

static size_t tw_plan_size(int64_t items, int64_t preempted, int64_t blocks) {
    return TW_PLAN_HEADER + (size_t)items * TW_PLAN_ITEM + (size_t)preempted * TW_PLAN_PREEMPT +
           (size_t)blocks * 4;
}

size_t tw_sched_plan_encoded_size(const tw_sched_plan *p) {
    return tw_plan_size(p->n_items, p->n_preempted, p->n_blocks);
}

size_t tw_sched_plan_max_encoded_size(int max_batch, int64_t n_blocks) {
    return tw_plan_size(max_batch, max_batch, n_blocks);
}

static void tw_put32(unsigned char **w, uint32_t v) {
    for (int i = 0; i < 4; i++) *(*w)++ = (unsigned char)(v >> (8 * i));
}
static void tw_put64(unsigned char **w, uint64_t v) {
    for (int i = 0; i < 8; i++) *(*w)++ = (unsigned char)(v >> (8 * i));
}
static uint32_t tw_get32(const unsigned char **r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*(*r)++) << (8 * i);
    return v;
}
static uint64_t tw_get64(const unsigned char **r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(*(*r)++) << (8 * i);
    return v;
}

tw_status tw_sched_plan_encode(const tw_sched_plan *p, void *buf, size_t cap, size_t *len) {
    size_t need = tw_sched_plan_encoded_size(p);
    if (cap < need)
        return TW_ERR(TW_ERR_INVALID, "plan: %zu bytes needed, the buffer has %zu", need, cap);
    unsigned char *w = buf;
    tw_put32(&w, TW_PLAN_MAGIC);
    tw_put32(&w, TW_PLAN_VERSION);
    tw_put64(&w, (uint64_t)need);
    tw_put64(&w, (uint64_t)p->step);
    tw_put32(&w, (uint32_t)p->n_items);
    tw_put32(&w, (uint32_t)p->n_preempted);
    tw_put32(&w, (uint32_t)p->n_blocks);
    tw_put32(&w, (uint32_t)p->total_tokens);
    for (int32_t k = 0; k < p->n_items; k++) {
        const tw_sched_item *it = &p->items[k];
        tw_put64(&w, (uint64_t)it->req_id);
        const int32_t f[9] = {it->slot,     it->kind,     it->start,       it->n_tokens, it->emits,
                              it->finishes, it->admitted, it->first_block, it->n_blocks};
        for (int i = 0; i < 9; i++) tw_put32(&w, (uint32_t)f[i]);
    }
    for (int32_t k = 0; k < p->n_preempted; k++) {
        tw_put64(&w, (uint64_t)p->preempted_id[k]);
        tw_put32(&w, (uint32_t)p->preempted_slot[k]);
    }
    for (int32_t k = 0; k < p->n_blocks; k++) tw_put32(&w, (uint32_t)p->blocks[k]);
    *len = need;
    return TW_OK;
}

tw_status tw_sched_plan_decode(const void *buf, size_t len, tw_sched_plan *p) {
    const unsigned char *r = buf;
    if (len < TW_PLAN_HEADER) return TW_ERR(TW_ERR_PARSE, "plan: %zu bytes is too short", len);
    uint32_t magic = tw_get32(&r), version = tw_get32(&r);
    uint64_t total = tw_get64(&r);
    if (magic != TW_PLAN_MAGIC || version != TW_PLAN_VERSION || total != len)
        return TW_ERR(TW_ERR_PARSE, "plan: bad header (magic %08x, version %u, %llu bytes of %zu)",
                      magic, version, (unsigned long long)total, len);
    int64_t step = (int64_t)tw_get64(&r);
    int32_t ni = (int32_t)tw_get32(&r), np = (int32_t)tw_get32(&r), nb = (int32_t)tw_get32(&r),
            tt = (int32_t)tw_get32(&r);
    if (ni < 0 || np < 0 || nb < 0 || ni > p->cap_items || np > p->cap_preempted ||
        nb > p->cap_blocks || tw_plan_size(ni, np, nb) != len)
        return TW_ERR(TW_ERR_PARSE, "plan: counts (%d items, %d preempted, %d blocks) do not fit",
                      ni, np, nb);
    p->step = step;
    p->n_items = ni;
    p->n_preempted = np;
    p->n_blocks = nb;
    p->total_tokens = tt;
    for (int32_t k = 0; k < ni; k++) {
        tw_sched_item *it = &p->items[k];
        it->req_id = (int64_t)tw_get64(&r);
        int32_t f[9];
        for (int i = 0; i < 9; i++) f[i] = (int32_t)tw_get32(&r);
        it->slot = f[0];
        it->kind = f[1];
        it->start = f[2];
        it->n_tokens = f[3];
        it->emits = f[4];
        it->finishes = f[5];
        it->admitted = f[6];
        it->first_block = f[7];
        it->n_blocks = f[8];
        if (it->first_block < 0 || it->n_blocks < 0 || it->first_block > nb - it->n_blocks)
            return TW_ERR(TW_ERR_PARSE, "plan: item %d names blocks outside the plan", k);
    }
    for (int32_t k = 0; k < np; k++) {
        p->preempted_id[k] = (int64_t)tw_get64(&r);
        p->preempted_slot[k] = (int32_t)tw_get32(&r);
    }
    for (int32_t k = 0; k < nb; k++) p->blocks[k] = (int32_t)tw_get32(&r);
    return TW_OK;
}

tw_status tw_sched_follow_begin(tw_kvpool *pool, const tw_sched_plan *p) {
    for (int32_t k = 0; k < p->n_preempted; k++) tw_kvpool_close(pool, p->preempted_slot[k]);
    for (int32_t k = 0; k < p->n_items; k++) {
        const tw_sched_item *it = &p->items[k];
        if (it->admitted) TW_TRY(tw_kvpool_open_slot(pool, it->slot));
        for (int32_t b = 0; b < it->n_blocks; b++)
            TW_TRY(tw_kvpool_take(pool, it->slot, p->blocks[it->first_block + b]));
    }
    return TW_OK;
}

void tw_sched_follow_end(tw_kvpool *pool, const tw_sched_plan *p) {
    for (int32_t k = 0; k < p->n_items; k++)
        if (p->items[k].finishes) tw_kvpool_close(pool, p->items[k].slot);
}
