/* The paged-KV backend ops (attn_prefill_paged, attn_decode_paged, kv_store_paged) of the CPU
 * backend against a float64 reference: scattered, non-contiguous block tables (blocks of one
 * sequence in descending and interleaved order), awkward sizes (head_dim 20, blocks of 5 and 7
 * tokens, grouped-query 3), sliding windows, fp32 and bf16 pools, every SIMD level. Every block no
 * table names is NaN-poisoned: a kernel that reads one leaks NaN into the output and fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_cpu.h"
#include "tw_serve_paged_case.h"
#include "tw_test_util.h"

static void store(pcase *c, int threads) {
    tw_kv_store_paged_args s = {.n_seqs = c->n_seqs,
                                .n_kv_heads = c->G,
                                .head_dim = c->d,
                                .block_tokens = c->bt,
                                .n_blocks = c->n_blocks,
                                .max_blocks = c->max_blocks,
                                .q_start = c->q_start,
                                .start_pos = c->start_pos,
                                .block_tables = c->tab,
                                .k = c->k_new,
                                .v = c->v_new,
                                .k_pool = c->kp,
                                .v_pool = c->vp,
                                .kv_dtype = c->dt};
    cr_assert_eq(kv_store_paged_cpu(&s, threads), TW_OK, "%s", tw_last_error());
}

static int levels(tw_simd *lv) {
    int n = 0;
    lv[n++] = TW_SIMD_PORTABLE;
    if (tw_cpu_simd_detect() >= TW_SIMD_AVX2) lv[n++] = TW_SIMD_AVX2;
    if (tw_cpu_simd_detect() >= TW_SIMD_AVX512) lv[n++] = TW_SIMD_AVX512;
    return n;
}

static void run_prefill(int n_seqs, const int *start, const int *n_new, int H, int G, int d, int bt,
                        int window, tw_dtype dt, int threads) {
    tw_simd lv[3];
    int nl = levels(lv);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(tw_cpu_simd_force(lv[l]), TW_OK);
        pcase c;
        pcase_make(&c, n_seqs, start, n_new, H, G, d, bt, window, dt, 1234u + (uint64_t)l);
        store(&c, threads);
        cr_assert_eq(pcase_unused_written(&c), 0, "the store wrote outside the block tables");
        tw_attn_paged_args a = pcase_attn_args(&c, 0);
        cr_assert_eq(attn_prefill_paged_cpu(&a, threads), TW_OK, "%s", tw_last_error());
        double ws, err = pcase_ref_check(&c, &ws);
        cr_expect_eq(ws, 0.0, "stored rows differ from the new K (%g)", ws);
        cr_expect(err < 1e-5, "prefill paged %s %s window %d bt %d: rel err %g",
                  tw_simd_name(lv[l]), tw_dtype_name(dt), window, bt, err);
        pcase_free(&c);
    }
    tw_cpu_simd_force(tw_cpu_simd_detect());
}

static void run_decode(int n_seqs, const int *start, int H, int G, int d, int bt, int window,
                       tw_dtype dt, int threads) {
    int *ones = malloc(sizeof(int) * (size_t)n_seqs);
    for (int b = 0; b < n_seqs; b++) ones[b] = 1;
    tw_simd lv[3];
    int nl = levels(lv);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(tw_cpu_simd_force(lv[l]), TW_OK);
        for (int with_qs = 0; with_qs < 2; with_qs++) {
            pcase c;
            pcase_make(&c, n_seqs, start, ones, H, G, d, bt, window, dt, 99u + (uint64_t)l);
            store(&c, threads);
            cr_assert_eq(pcase_unused_written(&c), 0, "the store wrote outside the block tables");
            tw_attn_paged_args a = pcase_attn_args(&c, !with_qs);
            cr_assert_eq(attn_decode_paged_cpu(&a, threads), TW_OK, "%s", tw_last_error());
            double ws, err = pcase_ref_check(&c, &ws);
            cr_expect_eq(ws, 0.0);
            cr_expect(err < 1e-5, "decode paged %s %s window %d: rel err %g", tw_simd_name(lv[l]),
                      tw_dtype_name(dt), window, err);
            pcase_free(&c);
        }
    }
    tw_cpu_simd_force(tw_cpu_simd_detect());
    free(ones);
}

Test(serve_engine_attn, prefill_chunks_after_context_fp32) {
    /* chunks continuing cached context (start > 0), a fresh prompt, a 1-row chunk (a decode in
     * the mixed step), lengths crossing blocks and the 64-key tile */
    int start[] = {0, 37, 130, 5};
    int n_new[] = {71, 19, 1, 66};
    run_prefill(4, start, n_new, 6, 2, 20, 7, 0, TW_F32, 0);
    run_prefill(4, start, n_new, 6, 2, 20, 5, 0, TW_F32, 1);
}

Test(serve_engine_attn, prefill_bf16_and_window) {
    int start[] = {3, 0, 90};
    int n_new[] = {40, 77, 13};
    run_prefill(3, start, n_new, 6, 2, 20, 7, 0, TW_BF16, 0);
    run_prefill(3, start, n_new, 6, 2, 20, 5, 23, TW_F32, 0);
    run_prefill(3, start, n_new, 4, 4, 16, 16, 50, TW_BF16, 2);
}

Test(serve_engine_attn, decode_split_lengths) {
    /* lengths over the 256-key split, 1, and mid-block */
    int start[] = {0, 300, 511, 44, 257};
    run_decode(5, start, 6, 2, 20, 7, 0, TW_F32, 0);
    run_decode(5, start, 6, 2, 20, 5, 0, TW_BF16, 0);
    run_decode(5, start, 6, 3, 20, 16, 100, TW_F32, 1);
}

Test(serve_engine_attn, backend_table_and_refusals) {
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(0, &be), TW_OK);
    cr_assert(be->ops->attn_prefill_paged && be->ops->attn_decode_paged && be->ops->kv_store_paged);
    int start[] = {10, 0};
    int n_new[] = {5, 9};
    pcase c;
    pcase_make(&c, 2, start, n_new, 4, 2, 8, 4, 0, TW_F32, 7);
    tw_kv_store_paged_args s = {.n_seqs = 2,
                                .n_kv_heads = 2,
                                .head_dim = 8,
                                .block_tokens = 4,
                                .n_blocks = c.n_blocks,
                                .max_blocks = c.max_blocks,
                                .q_start = c.q_start,
                                .start_pos = c.start_pos,
                                .block_tables = c.tab,
                                .k = c.k_new,
                                .v = c.v_new,
                                .k_pool = c.kp,
                                .v_pool = c.vp,
                                .kv_dtype = TW_F32};
    cr_assert_eq(be->ops->kv_store_paged(be, &s), TW_OK, "%s", tw_last_error());
    tw_attn_paged_args a = pcase_attn_args(&c, 0);
    cr_assert_eq(be->ops->attn_prefill_paged(be, &a), TW_OK, "%s", tw_last_error());
    double ws;
    cr_expect(pcase_ref_check(&c, &ws) < 1e-5);
    /* a table entry outside the pool, a position past the table, decode with 2 rows */
    int32_t saved = c.tab[2]; /* sequence 0's block of positions 8..11: read and written */
    c.tab[2] = c.n_blocks;
    cr_expect_eq(be->ops->attn_prefill_paged(be, &a), TW_ERR_INVALID);
    cr_expect_eq(be->ops->kv_store_paged(be, &s), TW_ERR_INVALID);
    c.tab[2] = -1;
    cr_expect_eq(be->ops->attn_prefill_paged(be, &a), TW_ERR_INVALID);
    c.tab[2] = saved;
    int far[] = {c.max_blocks * 4, 0};
    a.start_pos = far;
    cr_expect_eq(be->ops->attn_prefill_paged(be, &a), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "block table") != NULL, "%s", tw_last_error());
    a.start_pos = c.start_pos;
    cr_expect_eq(be->ops->attn_decode_paged(be, &a), TW_ERR_INVALID); /* 5 and 9 rows */
    pcase_free(&c);
    tw_backend_destroy(be);
}
