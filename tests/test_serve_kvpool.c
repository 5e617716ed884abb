/* Paged KV block allocator: accounting by hand, all-or-nothing growth under exhaustion, refusal
 * of a sequence longer than the whole pool, random open/grow/close sequences against a simple
 * model (no leak, no block held twice, everything free at the end), follower replay, and the
 * byte plan against the formula written out for real model configs. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "harness/serve/tw_kvpool.h"
#include "tw_model.h"
#include "tw_test_util.h"

Test(serve_kvpool, accounting_by_hand) {
    tw_kvpool *p;
    cr_assert_eq(tw_kvpool_create(10, 16, 4, &p), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_kvpool_blocks_for(16, 0), 0);
    cr_assert_eq(tw_kvpool_blocks_for(16, 1), 1);
    cr_assert_eq(tw_kvpool_blocks_for(16, 16), 1);
    cr_assert_eq(tw_kvpool_blocks_for(16, 17), 2);
    cr_assert(tw_kvpool_fits_ever(p, 160), "10 blocks x 16 = 160 positions");
    cr_assert_not(tw_kvpool_fits_ever(p, 161));
    int a, b;
    cr_assert_eq(tw_kvpool_open(p, &a), TW_OK);
    cr_assert_eq(tw_kvpool_open(p, &b), TW_OK);
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(tw_kvpool_grow(p, a, 1), TW_OK);
    cr_assert_eq(tw_kvpool_seq_blocks(p, a), 1);
    cr_assert_eq(tw_kvpool_grow(p, a, 16), TW_OK);
    cr_assert_eq(tw_kvpool_seq_blocks(p, a), 1, "16 positions still fit one block");
    cr_assert_eq(tw_kvpool_grow(p, a, 17), TW_OK);
    cr_assert_eq(tw_kvpool_grow(p, b, 40), TW_OK);
    const int32_t *ta = tw_kvpool_block_table(p, a), *tb = tw_kvpool_block_table(p, b);
    cr_assert_eq(ta[0], 0);
    cr_assert_eq(ta[1], 1);
    cr_assert_eq(tb[0], 2);
    cr_assert_eq(tb[2], 4);
    cr_assert_eq(tw_kvpool_used_blocks(p), 5);
    cr_assert_eq(tw_kvpool_free_blocks(p), 5);
    cr_assert_eq(tw_kvpool_grow_need(p, b, 129), 6);
    /* exhaustion: all or nothing */
    cr_assert_eq(tw_kvpool_grow(p, b, 129), TW_ERR_NOMEM);
    cr_assert(strstr(tw_last_error(), "needs 6 blocks, 5 are free"), "%s", tw_last_error());
    cr_assert_eq(tw_kvpool_seq_blocks(p, b), 3, "a refused growth changes nothing");
    cr_assert_eq(tw_kvpool_free_blocks(p), 5);
    cr_assert_eq(tw_kvpool_check(p), TW_OK, "%s", tw_last_error());
    tw_kvpool_close(p, a);
    cr_assert_eq(tw_kvpool_free_blocks(p), 7);
    cr_assert_eq(tw_kvpool_grow(p, b, 128), TW_OK, "now it fits");
    cr_assert_eq(tw_kvpool_peak_used(p), 8);
    tw_kvpool_close(p, b);
    tw_kvpool_close(p, b); /* closing twice is harmless */
    cr_assert_eq(tw_kvpool_free_blocks(p), 10, "everything free at the end");
    cr_assert_eq(tw_kvpool_open_seqs(p), 0);
    cr_assert_eq(tw_kvpool_check(p), TW_OK, "%s", tw_last_error());
    /* slots run out */
    int s;
    for (int i = 0; i < 4; i++) cr_assert_eq(tw_kvpool_open(p, &s), TW_OK);
    cr_assert_eq(tw_kvpool_open(p, &s), TW_ERR_NOMEM);
    cr_assert_eq(tw_kvpool_grow(p, 9, 1), TW_ERR_INVALID, "slot out of range");
    tw_kvpool_destroy(p);
    cr_assert_eq(tw_kvpool_create(0, 16, 4, &p), TW_ERR_INVALID);
    cr_assert_eq(tw_kvpool_create(10, 0, 4, &p), TW_ERR_INVALID);
    cr_assert_eq(tw_kvpool_create(10, 16, 0, &p), TW_ERR_INVALID);
}

/* 20000 random operations on a 97-block pool of 13-token blocks with 11 slots, checked after
 * every one against a model that only counts tokens per slot. */
Test(serve_kvpool, random_sequences_against_a_model) {
    const int NB = 97, BT = 13, NS = 11;
    tw_kvpool *p;
    cr_assert_eq(tw_kvpool_create(NB, BT, NS, &p), TW_OK);
    int open[11] = {0};
    long tokens[11] = {0};
    tw_test_rng g;
    tw_test_rng_seed(&g, 31337);
    int refused = 0, grown = 0;
    for (int step = 0; step < 20000; step++) {
        int op = (int)((tw_test_uniform(&g) + 1) * 50); /* 0..99 */
        int s = (int)((tw_test_uniform(&g) + 1) * 0.5 * NS);
        if (s >= NS) s = NS - 1;
        long used = 0;
        for (int k = 0; k < NS; k++) used += open[k] ? (tokens[k] + BT - 1) / BT : 0;
        if (op < 15) {
            int got;
            tw_status st = tw_kvpool_open(p, &got);
            int nopen = 0;
            for (int k = 0; k < NS; k++) nopen += open[k];
            if (nopen == NS) {
                cr_assert_eq(st, TW_ERR_NOMEM);
            } else {
                cr_assert_eq(st, TW_OK);
                int lowest = 0;
                while (open[lowest]) lowest++;
                cr_assert_eq(got, lowest, "the lowest free slot");
                open[got] = 1;
                tokens[got] = 0;
            }
        } else if (op < 85) {
            if (!open[s]) continue;
            long want = tokens[s] + (long)((tw_test_uniform(&g) + 1) * 30);
            long need = (want + BT - 1) / BT - (tokens[s] + BT - 1) / BT;
            tw_status st = tw_kvpool_grow(p, s, want);
            if (need > NB - used) {
                cr_assert_eq(st, TW_ERR_NOMEM, "step %d", step);
                refused++;
            } else {
                cr_assert_eq(st, TW_OK, "step %d: %s", step, tw_last_error());
                tokens[s] = want;
                grown++;
            }
        } else {
            tw_kvpool_close(p, s);
            open[s] = 0;
            tokens[s] = 0;
        }
        used = 0;
        for (int k = 0; k < NS; k++) {
            long nb = open[k] ? (tokens[k] + BT - 1) / BT : 0;
            used += nb;
            cr_assert_eq(tw_kvpool_seq_blocks(p, k), nb, "step %d slot %d", step, k);
            cr_assert_eq(tw_kvpool_is_open(p, k), open[k]);
        }
        cr_assert_eq(tw_kvpool_used_blocks(p), used, "step %d", step);
        cr_assert_eq(tw_kvpool_check(p), TW_OK, "step %d: %s", step, tw_last_error());
    }
    cr_assert_gt(refused, 100, "exhaustion was exercised (%d refusals)", refused);
    cr_assert_gt(grown, 1000);
    for (int k = 0; k < NS; k++) tw_kvpool_close(p, k);
    cr_assert_eq(tw_kvpool_free_blocks(p), NB, "no leak");
    cr_assert_eq(tw_kvpool_check(p), TW_OK);
    tw_kvpool_destroy(p);
}

Test(serve_kvpool, follower_replay_takes_named_blocks) {
    tw_kvpool *lead, *fol;
    cr_assert_eq(tw_kvpool_create(20, 4, 3, &lead), TW_OK);
    cr_assert_eq(tw_kvpool_create(20, 4, 3, &fol), TW_OK);
    int a, b;
    cr_assert_eq(tw_kvpool_open(lead, &a), TW_OK);
    cr_assert_eq(tw_kvpool_open(lead, &b), TW_OK);
    cr_assert_eq(tw_kvpool_grow(lead, a, 9), TW_OK);
    cr_assert_eq(tw_kvpool_grow(lead, b, 5), TW_OK);
    tw_kvpool_close(lead, a);
    cr_assert_eq(tw_kvpool_open(lead, &a), TW_OK);
    cr_assert_eq(tw_kvpool_grow(lead, a, 13), TW_OK); /* reuses freed blocks, out of order */
    /* replay the final tables on the follower */
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(tw_kvpool_open_slot(fol, s), TW_OK);
        for (int64_t i = 0; i < tw_kvpool_seq_blocks(lead, s); i++)
            cr_assert_eq(tw_kvpool_take(fol, s, tw_kvpool_block_table(lead, s)[i]), TW_OK);
    }
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(tw_kvpool_seq_blocks(fol, s), tw_kvpool_seq_blocks(lead, s));
        cr_assert_eq(memcmp(tw_kvpool_block_table(fol, s), tw_kvpool_block_table(lead, s),
                            sizeof(int32_t) * (size_t)tw_kvpool_seq_blocks(lead, s)),
                     0);
    }
    cr_assert_eq(tw_kvpool_free_blocks(fol), tw_kvpool_free_blocks(lead));
    cr_assert_eq(tw_kvpool_check(fol), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_kvpool_take(fol, 0, tw_kvpool_block_table(lead, 1)[0]), TW_ERR_INVALID,
                 "a held block cannot be taken again");
    cr_assert_eq(tw_kvpool_take(fol, 0, 20), TW_ERR_INVALID, "out of range");
    cr_assert_eq(tw_kvpool_open_slot(fol, 0), TW_ERR_INVALID, "already open");
    cr_assert_eq(tw_kvpool_take(fol, 2, 19), TW_ERR_INVALID, "slot not open");
    tw_kvpool_destroy(lead);
    tw_kvpool_destroy(fol);
}

/* 2 (K, V) * layers * kv heads * head_dim * dtype bytes * block tokens per block, for the shapes
 * of configs/models, written out from each config's fields. */
Test(serve_kvpool, byte_plan) {
    const char *models[] = {"llama-2-70b", "llama-3.2-1b", "tiny"};
    for (int m = 0; m < 3; m++) {
        tw_model_config c;
        cr_assert_eq(tw_model_load(models[m], &c), TW_OK, "%s", tw_last_error());
        uint64_t per = 2ull * (uint64_t)c.n_layers * (uint64_t)c.n_kv_heads * (uint64_t)c.head_dim *
                       2ull * 16ull;
        cr_assert_eq(tw_kvpool_bytes(1, 16, c.n_layers, c.n_kv_heads, c.head_dim, 2), per);
        cr_assert_eq(tw_kvpool_bytes(1234, 16, c.n_layers, c.n_kv_heads, c.head_dim, 2),
                     1234 * per);
        cr_assert_eq(
            tw_kvpool_blocks_in(1234 * per + per - 1, 16, c.n_layers, c.n_kv_heads, c.head_dim, 2),
            1234, "%s", models[m]);
        tw_model_free(&c);
    }
    /* Llama-2-70B: 80 layers, 8 KV heads of 128: 5 MiB per 16-token bf16 block; one rank of TP 8
     * holds one head: 640 KiB */
    cr_assert_eq(tw_kvpool_bytes(1, 16, 80, 8, 128, 2), 5242880ull);
    cr_assert_eq(tw_kvpool_bytes(1, 16, 80, 1, 128, 2), 655360ull);
    cr_assert_eq(tw_kvpool_bytes(0, 16, 80, 8, 128, 2), 0ull);
    cr_assert_eq(tw_kvpool_bytes(INT32_MAX, 1 << 30, 1 << 20, 1 << 10, 1 << 10, 8), 0ull,
                 "overflow gives 0, not a wrapped size");
    cr_assert_eq(tw_kvpool_blocks_in(100, 16, 80, 8, 128, 2), 0);
}
