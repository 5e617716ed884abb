/* Test cases for the paged-KV ops (shared by test_serve_engine_attn.c, CPU, and
 * test_serve_engine_gpu.c, CUDA): a pool with scattered, non-contiguous block tables (a shuffled
 * permutation of the blocks, tables wider than needed with garbage past the end), every unused
 * block and unused row NaN-poisoned, random cached context before each sequence's new rows, and
 * a float64 reference written long-hand (nothing shared with the kernels). */
#ifndef TW_SERVE_PAGED_CASE_H
#define TW_SERVE_PAGED_CASE_H

#include <stdint.h>

#include "tw_backend.h"

typedef struct {
    int n_seqs, H, G, d, bt, n_blocks, max_blocks, window;
    tw_dtype dt;
    int *q_start, *start_pos, *ctx_len; /* ctx_len: positions held after the store */
    int32_t *tab;
    float *k_new, *v_new; /* [rows, G * d] */
    float *q, *out;
    void *kp, *vp;
    int rows;
} pcase;

/* Sequence b has n_new[b] new rows from position start[b]; positions before start hold random
 * K/V (fp32, or bf16-rounded), everything else in the pool is NaN. */
void pcase_make(pcase *c, int n_seqs, const int *start, const int *n_new, int H, int G, int d,
                int bt, int window, tw_dtype dt, uint64_t seed);
void pcase_free(pcase *c);
size_t pcase_pool_elems(const pcase *c);
tw_attn_paged_args pcase_attn_args(pcase *c, int decode);
/* Writes k_new, v_new into the pool through the tables on the host (long-hand, rounded to bf16
 * for a bf16 pool): the state after a correct kv_store_paged, for testing attention alone. */
void pcase_store_host(pcase *c);
/* The float64 attention reference [rows, H, d] over the pool as it is now. */
void pcase_ref(const pcase *c, double *ref);
/* Relative 2-norm error of c->out against the float64 reference over the pool as stored;
 * *worst_store: the largest difference between a stored row and its k_new (bf16-rounded). */
double pcase_ref_check(const pcase *c, double *worst_store);
/* Elements of blocks no table names that are no longer NaN (a write outside the tables). */
long pcase_unused_written(const pcase *c);

#endif
