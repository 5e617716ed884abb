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
#include "tw_test_util.h"

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

static size_t es(tw_dtype dt) {
    return dt == TW_BF16 ? 2 : 4;
}

static float pool_get(const pcase *c, const void *pool, size_t i) {
    return c->dt == TW_BF16 ? tw_test_from_bf16(((const uint16_t *)pool)[i])
                            : ((const float *)pool)[i];
}

/* the reference address of position p of KV head h of sequence b: written out long-hand */
static size_t ref_off(const pcase *c, int b, int h, int p) {
    int blk = c->tab[b * c->max_blocks + p / c->bt];
    return (((size_t)blk * c->G + h) * c->bt + p % c->bt) * c->d;
}

/* Builds a case: sequence b has new rows n_new[b] from position start[b]; its blocks are taken
 * from a shuffled permutation of the pool so tables are scattered; the pool is NaN except the
 * positions before start (filled with random K/V, "already cached"). */
static void pcase_make(pcase *c, int n_seqs, const int *start, const int *n_new, int H, int G,
                       int d, int bt, int window, tw_dtype dt, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->n_seqs = n_seqs, c->H = H, c->G = G, c->d = d, c->bt = bt, c->window = window, c->dt = dt;
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    c->q_start = calloc((size_t)n_seqs + 1, sizeof(int));
    c->start_pos = calloc((size_t)n_seqs, sizeof(int));
    c->ctx_len = calloc((size_t)n_seqs, sizeof(int));
    int need = 0, maxb = 1;
    for (int b = 0; b < n_seqs; b++) {
        c->start_pos[b] = start[b];
        c->q_start[b + 1] = c->q_start[b] + n_new[b];
        c->ctx_len[b] = start[b] + n_new[b];
        int nb = (c->ctx_len[b] + bt - 1) / bt;
        need += nb;
        if (nb > maxb) maxb = nb;
    }
    c->rows = c->q_start[n_seqs];
    c->max_blocks = maxb + 2; /* wider than needed: unused table entries hold garbage */
    c->n_blocks = need + 7;   /* 7 unused, poisoned blocks */
    int *perm = malloc(sizeof(int) * (size_t)c->n_blocks);
    for (int i = 0; i < c->n_blocks; i++) perm[i] = i;
    for (int i = c->n_blocks - 1; i > 0; i--) {
        int j = (int)((tw_test_uniform(&r) + 1.0) * 0.5 * (i + 1));
        if (j > i) j = i;
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    c->tab = malloc(sizeof(int32_t) * (size_t)n_seqs * c->max_blocks);
    for (size_t i = 0; i < (size_t)n_seqs * c->max_blocks; i++) c->tab[i] = 1 << 30; /* garbage */
    int used = 0;
    for (int b = 0; b < n_seqs; b++) {
        int nb = (c->ctx_len[b] + bt - 1) / bt;
        for (int k = 0; k < nb; k++) c->tab[b * c->max_blocks + k] = perm[used++];
    }
    free(perm);
    size_t pool_n = (size_t)c->n_blocks * G * bt * d;
    c->kp = malloc(pool_n * es(dt));
    c->vp = malloc(pool_n * es(dt));
    if (dt == TW_F32) {
        tw_test_poison(c->kp, pool_n);
        tw_test_poison(c->vp, pool_n);
    } else {
        for (size_t i = 0; i < pool_n; i++)
            ((uint16_t *)c->kp)[i] = ((uint16_t *)c->vp)[i] = 0x7fc1;
    }
    for (int b = 0; b < n_seqs; b++)
        for (int p = 0; p < start[b]; p++)
            for (int h = 0; h < G; h++)
                for (int x = 0; x < d; x++) {
                    size_t o = ref_off(c, b, h, p) + x;
                    float kv = (float)tw_test_uniform(&r), vv = (float)tw_test_uniform(&r);
                    if (dt == TW_F32) {
                        ((float *)c->kp)[o] = kv;
                        ((float *)c->vp)[o] = vv;
                    } else {
                        ((uint16_t *)c->kp)[o] = tw_test_to_bf16(kv);
                        ((uint16_t *)c->vp)[o] = tw_test_to_bf16(vv);
                    }
                }
    c->k_new = malloc(sizeof(float) * (size_t)c->rows * G * d);
    c->v_new = malloc(sizeof(float) * (size_t)c->rows * G * d);
    c->q = malloc(sizeof(float) * (size_t)c->rows * H * d);
    c->out = malloc(sizeof(float) * (size_t)c->rows * H * d);
    tw_test_fill(&r, c->k_new, (size_t)c->rows * G * d, 1.0f);
    tw_test_fill(&r, c->v_new, (size_t)c->rows * G * d, 1.0f);
    tw_test_fill(&r, c->q, (size_t)c->rows * H * d, 2.0f);
    tw_test_poison(c->out, (size_t)c->rows * H * d);
}

static void pcase_free(pcase *c) {
    free(c->q_start);
    free(c->start_pos);
    free(c->ctx_len);
    free(c->tab);
    free(c->k_new);
    free(c->v_new);
    free(c->q);
    free(c->out);
    free(c->kp);
    free(c->vp);
}

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

static tw_attn_paged_args attn_args(pcase *c, int decode) {
    tw_attn_paged_args a = {.n_seqs = c->n_seqs,
                            .n_heads = c->H,
                            .n_kv_heads = c->G,
                            .head_dim = c->d,
                            .block_tokens = c->bt,
                            .n_blocks = c->n_blocks,
                            .max_blocks = c->max_blocks,
                            .q_start = decode ? NULL : c->q_start,
                            .start_pos = c->start_pos,
                            .block_tables = c->tab,
                            .q = c->q,
                            .k_pool = c->kp,
                            .v_pool = c->vp,
                            .kv_dtype = c->dt,
                            .out = c->out,
                            .scale = 1.0f / sqrtf((float)c->d),
                            .window = c->window};
    return a;
}

/* float64 reference over the pool as stored; the stored rows are also checked against k_new. */
static double ref_check(const pcase *c, double *worst_store) {
    int H = c->H, G = c->G, d = c->d, grp = H / G;
    double *ref = malloc(sizeof(double) * (size_t)c->rows * H * d);
    double *sc = malloc(sizeof(double) * 8192);
    *worst_store = 0;
    for (int b = 0; b < c->n_seqs; b++)
        for (int i = 0; i < c->q_start[b + 1] - c->q_start[b]; i++) {
            int row = c->q_start[b] + i, p = c->start_pos[b] + i;
            int lo = c->window > 0 && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
            for (int h = 0; h < G; h++)
                for (int x = 0; x < d; x++) { /* the store put k_new where the table says */
                    double want = c->k_new[((size_t)row * G + h) * d + x];
                    if (c->dt == TW_BF16) want = tw_test_from_bf16(tw_test_to_bf16((float)want));
                    double got = pool_get(c, c->kp, ref_off(c, b, h, p) + x);
                    double e = fabs(got - want);
                    if (!(e <= *worst_store)) *worst_store = isnan(e) ? INFINITY : e;
                }
            for (int hq = 0; hq < H; hq++) {
                int h = hq / grp;
                const float *q = c->q + ((size_t)row * H + hq) * d;
                double mx = -INFINITY;
                for (int j = lo; j <= p; j++) {
                    double s = 0;
                    for (int x = 0; x < d; x++)
                        s += (double)q[x] * pool_get(c, c->kp, ref_off(c, b, h, j) + x);
                    s /= sqrt((double)d);
                    sc[j - lo] = s;
                    if (s > mx) mx = s;
                }
                double sum = 0;
                for (int j = lo; j <= p; j++) sum += (sc[j - lo] = exp(sc[j - lo] - mx));
                double *o = ref + ((size_t)row * H + hq) * d;
                for (int x = 0; x < d; x++) {
                    double acc = 0;
                    for (int j = lo; j <= p; j++)
                        acc += sc[j - lo] * pool_get(c, c->vp, ref_off(c, b, h, j) + x);
                    o[x] = acc / sum;
                }
            }
        }
    double err = tw_test_rel_err(c->out, ref, (size_t)c->rows * H * d);
    free(ref);
    free(sc);
    return err;
}

/* Unused blocks stay poisoned after the store (it wrote nowhere else). */
static void check_unused_poisoned(const pcase *c) {
    char *used = calloc((size_t)c->n_blocks, 1);
    for (int b = 0; b < c->n_seqs; b++)
        for (int k = 0; k < (c->ctx_len[b] + c->bt - 1) / c->bt; k++)
            used[c->tab[b * c->max_blocks + k]] = 1;
    size_t per = (size_t)c->G * c->bt * c->d;
    for (int blk = 0; blk < c->n_blocks; blk++) {
        if (used[blk]) continue;
        for (size_t i = 0; i < per; i++) {
            cr_assert(isnan(pool_get(c, c->kp, blk * per + i)), "unused block %d was written", blk);
            cr_assert(isnan(pool_get(c, c->vp, blk * per + i)), "unused block %d was written", blk);
        }
    }
    free(used);
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
        check_unused_poisoned(&c);
        tw_attn_paged_args a = attn_args(&c, 0);
        cr_assert_eq(attn_prefill_paged_cpu(&a, threads), TW_OK, "%s", tw_last_error());
        double ws, err = ref_check(&c, &ws);
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
            check_unused_poisoned(&c);
            tw_attn_paged_args a = attn_args(&c, !with_qs);
            cr_assert_eq(attn_decode_paged_cpu(&a, threads), TW_OK, "%s", tw_last_error());
            double ws, err = ref_check(&c, &ws);
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
    tw_attn_paged_args a = attn_args(&c, 0);
    cr_assert_eq(be->ops->attn_prefill_paged(be, &a), TW_OK, "%s", tw_last_error());
    double ws;
    cr_expect(ref_check(&c, &ws) < 1e-5);
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
