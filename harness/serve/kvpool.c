/* Paged KV cache block allocator (tw_kvpool.h). */
#include "tw_kvpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int open;
    int64_t n, cap; /* blocks held, table capacity */
    int32_t *table;
} tw_kvseq;

struct tw_kvpool {
    int64_t n_blocks;
    int block_tokens, max_seqs, n_open;
    int64_t n_free, peak_used;
    int32_t *free_stack; /* free_stack[0..n_free) are free; the top is handed out first */
    int64_t *free_pos;   /* index of a free block in free_stack, -1 when in use */
    tw_kvseq *seqs;
};

tw_status tw_kvpool_create(int64_t n_blocks, int block_tokens, int max_seqs, tw_kvpool **out) {
    *out = NULL;
    if (n_blocks < 1 || n_blocks > INT32_MAX || block_tokens < 1 || max_seqs < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "KV pool: need 1 <= blocks <= 2^31-1, block size >= 1 and >= 1 sequence "
                      "(got %lld blocks of %d tokens, %d sequences)",
                      (long long)n_blocks, block_tokens, max_seqs);
    tw_kvpool *p = calloc(1, sizeof *p);
    if (!p) return TW_ERR(TW_ERR_NOMEM, "KV pool: no memory");
    p->n_blocks = n_blocks;
    p->block_tokens = block_tokens;
    p->max_seqs = max_seqs;
    p->free_stack = malloc(sizeof(int32_t) * (size_t)n_blocks);
    p->free_pos = malloc(sizeof(int64_t) * (size_t)n_blocks);
    p->seqs = calloc((size_t)max_seqs, sizeof *p->seqs);
    if (!p->free_stack || !p->free_pos || !p->seqs) {
        tw_kvpool_destroy(p);
        return TW_ERR(TW_ERR_NOMEM, "KV pool: no memory for %lld blocks", (long long)n_blocks);
    }
    /* block 0 on top, so allocation order is 0, 1, 2, ... */
    for (int64_t i = 0; i < n_blocks; i++) {
        p->free_stack[i] = (int32_t)(n_blocks - 1 - i);
        p->free_pos[n_blocks - 1 - i] = i;
    }
    p->n_free = n_blocks;
    *out = p;
    return TW_OK;
}

void tw_kvpool_destroy(tw_kvpool *p) {
    if (!p) return;
    if (p->seqs)
        for (int s = 0; s < p->max_seqs; s++) free(p->seqs[s].table);
    free(p->seqs);
    free(p->free_stack);
    free(p->free_pos);
    free(p);
}

int64_t tw_kvpool_blocks_for(int block_tokens, int64_t tokens) {
    if (tokens <= 0) return 0;
    return (tokens + block_tokens - 1) / block_tokens;
}

int tw_kvpool_fits_ever(const tw_kvpool *p, int64_t tokens) {
    return tw_kvpool_blocks_for(p->block_tokens, tokens) <= p->n_blocks;
}

static tw_status tw_slot_ok(const tw_kvpool *p, int slot, int want_open) {
    if (slot < 0 || slot >= p->max_seqs)
        return TW_ERR(TW_ERR_INVALID, "KV pool: slot %d out of range [0, %d)", slot, p->max_seqs);
    if (want_open >= 0 && p->seqs[slot].open != want_open)
        return TW_ERR(TW_ERR_INVALID, "KV pool: slot %d is %s", slot,
                      p->seqs[slot].open ? "already open" : "not open");
    return TW_OK;
}

tw_status tw_kvpool_open(tw_kvpool *p, int *slot) {
    for (int s = 0; s < p->max_seqs; s++)
        if (!p->seqs[s].open) {
            p->seqs[s].open = 1;
            p->seqs[s].n = 0;
            p->n_open++;
            *slot = s;
            return TW_OK;
        }
    return TW_ERR(TW_ERR_NOMEM, "KV pool: all %d sequence slots are open", p->max_seqs);
}

tw_status tw_kvpool_open_slot(tw_kvpool *p, int slot) {
    TW_TRY(tw_slot_ok(p, slot, 0));
    p->seqs[slot].open = 1;
    p->seqs[slot].n = 0;
    p->n_open++;
    return TW_OK;
}

int64_t tw_kvpool_grow_need(const tw_kvpool *p, int slot, int64_t tokens) {
    int64_t want = tw_kvpool_blocks_for(p->block_tokens, tokens);
    int64_t have = tw_kvpool_is_open(p, slot) ? p->seqs[slot].n : 0;
    return want > have ? want - have : 0;
}

static tw_status tw_seq_reserve(tw_kvseq *q, int64_t n) {
    if (n <= q->cap) return TW_OK;
    int64_t cap = q->cap ? q->cap : 4;
    while (cap < n) cap *= 2;
    int32_t *t = realloc(q->table, sizeof(int32_t) * (size_t)cap);
    if (!t)
        return TW_ERR(TW_ERR_NOMEM, "KV pool: no memory for a block table of %lld", (long long)cap);
    q->table = t;
    q->cap = cap;
    return TW_OK;
}

static void tw_note_peak(tw_kvpool *p) {
    int64_t used = p->n_blocks - p->n_free;
    if (used > p->peak_used) p->peak_used = used;
}

tw_status tw_kvpool_grow(tw_kvpool *p, int slot, int64_t tokens) {
    TW_TRY(tw_slot_ok(p, slot, 1));
    int64_t need = tw_kvpool_grow_need(p, slot, tokens);
    if (need == 0) return TW_OK;
    if (need > p->n_free)
        return TW_ERR(TW_ERR_NOMEM,
                      "KV pool: growing slot %d to %lld tokens needs %lld blocks, %lld are free",
                      slot, (long long)tokens, (long long)need, (long long)p->n_free);
    tw_kvseq *q = &p->seqs[slot];
    TW_TRY(tw_seq_reserve(q, q->n + need));
    for (int64_t i = 0; i < need; i++) {
        int32_t b = p->free_stack[--p->n_free];
        p->free_pos[b] = -1;
        q->table[q->n++] = b;
    }
    tw_note_peak(p);
    return TW_OK;
}

tw_status tw_kvpool_take(tw_kvpool *p, int slot, int32_t block) {
    TW_TRY(tw_slot_ok(p, slot, 1));
    if (block < 0 || block >= p->n_blocks || p->free_pos[block] < 0)
        return TW_ERR(TW_ERR_INVALID, "KV pool: block %d is not a free block of this pool",
                      (int)block);
    tw_kvseq *q = &p->seqs[slot];
    TW_TRY(tw_seq_reserve(q, q->n + 1));
    /* swap-remove from the free stack */
    int64_t i = p->free_pos[block];
    int32_t last = p->free_stack[p->n_free - 1];
    p->free_stack[i] = last;
    p->free_pos[last] = i;
    p->n_free--;
    p->free_pos[block] = -1;
    q->table[q->n++] = block;
    tw_note_peak(p);
    return TW_OK;
}

void tw_kvpool_close(tw_kvpool *p, int slot) {
    if (slot < 0 || slot >= p->max_seqs || !p->seqs[slot].open) return;
    tw_kvseq *q = &p->seqs[slot];
    /* push back in reverse so the sequence's first block is handed out first again */
    for (int64_t i = q->n - 1; i >= 0; i--) {
        int32_t b = q->table[i];
        p->free_pos[b] = p->n_free;
        p->free_stack[p->n_free++] = b;
    }
    q->n = 0;
    q->open = 0;
    p->n_open--;
}

int64_t tw_kvpool_n_blocks(const tw_kvpool *p) {
    return p->n_blocks;
}
int tw_kvpool_block_tokens(const tw_kvpool *p) {
    return p->block_tokens;
}
int tw_kvpool_max_seqs(const tw_kvpool *p) {
    return p->max_seqs;
}
int64_t tw_kvpool_free_blocks(const tw_kvpool *p) {
    return p->n_free;
}
int64_t tw_kvpool_used_blocks(const tw_kvpool *p) {
    return p->n_blocks - p->n_free;
}
int tw_kvpool_open_seqs(const tw_kvpool *p) {
    return p->n_open;
}
int tw_kvpool_is_open(const tw_kvpool *p, int slot) {
    return slot >= 0 && slot < p->max_seqs && p->seqs[slot].open;
}
int64_t tw_kvpool_seq_blocks(const tw_kvpool *p, int slot) {
    return tw_kvpool_is_open(p, slot) ? p->seqs[slot].n : 0;
}
const int32_t *tw_kvpool_block_table(const tw_kvpool *p, int slot) {
    return tw_kvpool_is_open(p, slot) ? p->seqs[slot].table : NULL;
}
int64_t tw_kvpool_peak_used(const tw_kvpool *p) {
    return p->peak_used;
}

tw_status tw_kvpool_check(const tw_kvpool *p) {
    int64_t *owner = malloc(sizeof(int64_t) * (size_t)p->n_blocks);
    if (!owner) return TW_ERR(TW_ERR_NOMEM, "KV pool check: no memory");
    for (int64_t b = 0; b < p->n_blocks; b++) owner[b] = -2; /* unaccounted */
    tw_status st = TW_OK;
    for (int64_t i = 0; i < p->n_free && st == TW_OK; i++) {
        int32_t b = p->free_stack[i];
        if (b < 0 || b >= p->n_blocks || owner[b] != -2 || p->free_pos[b] != i)
            st = TW_ERR(TW_ERR_INTERNAL, "KV pool: free stack entry %lld (block %d) is wrong",
                        (long long)i, (int)b);
        else
            owner[b] = -1;
    }
    int n_open = 0;
    int64_t held = 0;
    for (int s = 0; s < p->max_seqs && st == TW_OK; s++) {
        const tw_kvseq *q = &p->seqs[s];
        if (!q->open) {
            if (q->n != 0) st = TW_ERR(TW_ERR_INTERNAL, "KV pool: closed slot %d holds blocks", s);
            continue;
        }
        n_open++;
        held += q->n;
        for (int64_t i = 0; i < q->n && st == TW_OK; i++) {
            int32_t b = q->table[i];
            if (b < 0 || b >= p->n_blocks || owner[b] != -2 || p->free_pos[b] != -1)
                st = TW_ERR(TW_ERR_INTERNAL, "KV pool: block %d of slot %d is free or held twice",
                            (int)b, s);
            else
                owner[b] = s;
        }
    }
    for (int64_t b = 0; b < p->n_blocks && st == TW_OK; b++)
        if (owner[b] == -2)
            st = TW_ERR(TW_ERR_INTERNAL, "KV pool: block %lld is neither free nor held (leak)",
                        (long long)b);
    if (st == TW_OK && (n_open != p->n_open || held + p->n_free != p->n_blocks))
        st = TW_ERR(TW_ERR_INTERNAL, "KV pool: counts disagree (%d open, %lld held, %lld free)",
                    n_open, (long long)held, (long long)p->n_free);
    free(owner);
    return st;
}

uint64_t tw_kvpool_bytes(int64_t n_blocks, int block_tokens, int n_layers, int n_kv_heads,
                         int head_dim, int dtype_bytes) {
    if (n_blocks <= 0 || block_tokens <= 0 || n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0 ||
        dtype_bytes <= 0)
        return 0;
    const uint64_t f[6] = {2,
                           (uint64_t)n_layers,
                           (uint64_t)n_kv_heads,
                           (uint64_t)head_dim,
                           (uint64_t)dtype_bytes,
                           (uint64_t)block_tokens};
    uint64_t r = (uint64_t)n_blocks;
    for (int i = 0; i < 6; i++) {
        if (r > UINT64_MAX / f[i]) return 0;
        r *= f[i];
    }
    return r;
}

int64_t tw_kvpool_blocks_in(uint64_t bytes, int block_tokens, int n_layers, int n_kv_heads,
                            int head_dim, int dtype_bytes) {
    uint64_t per = tw_kvpool_bytes(1, block_tokens, n_layers, n_kv_heads, head_dim, dtype_bytes);
    if (per == 0) return 0;
    uint64_t n = bytes / per;
    return n > (uint64_t)INT32_MAX ? INT32_MAX : (int64_t)n;
}
