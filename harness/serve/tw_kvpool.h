/* Paged KV cache block allocator: a pool of n_blocks fixed-size blocks of block_tokens token
 * positions each, handed to sequences as they grow, with one block table per sequence (the
 * physical block of each logical block, in order: position p of a sequence lives in block
 * table[p / block_tokens] at offset p % block_tokens). Pure bookkeeping, no memory for the
 * tensors themselves: tw_kvpool_bytes says what to allocate for them.
 *
 * Sequences live in slots 0..max_seqs-1 (the scheduler keeps one per running request).
 * Allocation is deterministic: the lowest free slot, blocks from a LIFO free stack initialised so
 * the first blocks handed out are 0, 1, 2, ... A follower (another tensor-parallel rank
 * replaying rank 0's decisions) opens the same slots and takes the same named blocks with
 * tw_kvpool_open_slot and tw_kvpool_take. */
#ifndef TW_KVPOOL_H
#define TW_KVPOOL_H

#include <stdint.h>

#include "tw_status.h"

typedef struct tw_kvpool tw_kvpool;

tw_status tw_kvpool_create(int64_t n_blocks, int block_tokens, int max_seqs, tw_kvpool **out);
void tw_kvpool_destroy(tw_kvpool *p);

/* ceil(tokens / block_tokens): blocks holding `tokens` positions. */
int64_t tw_kvpool_blocks_for(int block_tokens, int64_t tokens);
/* 1 when a sequence of `tokens` positions fits the whole pool (with every block free): the
 * admission test that refuses, before anything runs, a request that could never be served. */
int tw_kvpool_fits_ever(const tw_kvpool *p, int64_t tokens);

/* Opens the lowest free slot (TW_ERR_NOMEM when all max_seqs are open). */
tw_status tw_kvpool_open(tw_kvpool *p, int *slot);
/* Opens a named slot (follower replay); TW_ERR_INVALID if out of range or already open. */
tw_status tw_kvpool_open_slot(tw_kvpool *p, int slot);
/* Blocks that growing `slot` to hold `tokens` positions would take (0 if it already does). */
int64_t tw_kvpool_grow_need(const tw_kvpool *p, int slot, int64_t tokens);
/* Grows `slot` to hold `tokens` positions, all or nothing: TW_ERR_NOMEM (nothing changed) when
 * fewer free blocks remain than it needs. */
tw_status tw_kvpool_grow(tw_kvpool *p, int slot, int64_t tokens);
/* Appends a named free block to `slot` (follower replay); TW_ERR_INVALID if it is not free. */
tw_status tw_kvpool_take(tw_kvpool *p, int slot, int32_t block);
/* Frees every block of `slot` and the slot itself (no-op for a closed slot). */
void tw_kvpool_close(tw_kvpool *p, int slot);

int64_t tw_kvpool_n_blocks(const tw_kvpool *p);
int tw_kvpool_block_tokens(const tw_kvpool *p);
int tw_kvpool_max_seqs(const tw_kvpool *p);
int64_t tw_kvpool_free_blocks(const tw_kvpool *p);
int64_t tw_kvpool_used_blocks(const tw_kvpool *p);
int tw_kvpool_open_seqs(const tw_kvpool *p);
int tw_kvpool_is_open(const tw_kvpool *p, int slot);
/* Blocks held by `slot`, and its block table (valid until the slot next changes). */
int64_t tw_kvpool_seq_blocks(const tw_kvpool *p, int slot);
const int32_t *tw_kvpool_block_table(const tw_kvpool *p, int slot);
/* Most blocks in use at once since creation. */
int64_t tw_kvpool_peak_used(const tw_kvpool *p);

/* Every invariant at once: each block is free or in exactly one open slot's table, the counts
 * agree, closed slots hold nothing. TW_ERR_INTERNAL naming the first violation. */
tw_status tw_kvpool_check(const tw_kvpool *p);

/* Bytes of K and V for n_blocks blocks: 2 (K and V) * n_layers * n_kv_heads * head_dim *
 * dtype_bytes * block_tokens * n_blocks. Under tensor parallelism pass one rank's heads
 * (n_kv_heads / tp). 0 on a non-positive argument or overflow. */
uint64_t tw_kvpool_bytes(int64_t n_blocks, int block_tokens, int n_layers, int n_kv_heads,
                         int head_dim, int dtype_bytes);
/* The most blocks whose K and V fit in `bytes` (0 when not one does). */
int64_t tw_kvpool_blocks_in(uint64_t bytes, int block_tokens, int n_layers, int n_kv_heads,
                            int head_dim, int dtype_bytes);

#endif
