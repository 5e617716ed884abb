/* Paged-KV test cases (tw_serve_paged_case.h). */
#include "tw_serve_paged_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_test_util.h"

static size_t es(tw_dtype dt) {
    return dt == TW_BF16 ? 2 : 4;
}

static float pool_get(const pcase *c, const void *pool, size_t i) {
    return c->dt == TW_BF16 ? tw_test_from_bf16(((const uint16_t *)pool)[i])
                            : ((const float *)pool)[i];
}

static size_t ref_off(const pcase *c, int b, int h, int p) {
    int blk = c->tab[b * c->max_blocks + p / c->bt];
    return (((size_t)blk * c->G + h) * c->bt + p % c->bt) * c->d;
}

void pcase_make(pcase *c, int n_seqs, const int *start, const int *n_new, int H, int G, int d,
                int bt, int window, tw_dtype dt, uint64_t seed) {
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

void pcase_free(pcase *c) {
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

tw_attn_paged_args pcase_attn_args(pcase *c, int decode) {
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

void pcase_store_host(pcase *c) {
    for (int b = 0; b < c->n_seqs; b++)
        for (int i = 0; i < c->q_start[b + 1] - c->q_start[b]; i++)
            for (int h = 0; h < c->G; h++)
                for (int x = 0; x < c->d; x++) {
                    size_t src = ((size_t)(c->q_start[b] + i) * c->G + h) * c->d + x;
                    size_t o = ref_off(c, b, h, c->start_pos[b] + i) + x;
                    if (c->dt == TW_F32) {
                        ((float *)c->kp)[o] = c->k_new[src];
                        ((float *)c->vp)[o] = c->v_new[src];
                    } else {
                        ((uint16_t *)c->kp)[o] = tw_test_to_bf16(c->k_new[src]);
                        ((uint16_t *)c->vp)[o] = tw_test_to_bf16(c->v_new[src]);
                    }
                }
}

void pcase_ref(const pcase *c, double *ref) {
    int H = c->H, G = c->G, d = c->d, grp = H / G;
    double *sc = malloc(sizeof(double) * 8192);
    for (int b = 0; b < c->n_seqs; b++)
        for (int i = 0; i < c->q_start[b + 1] - c->q_start[b]; i++) {
            int row = c->q_start[b] + i, p = c->start_pos[b] + i;
            int lo = c->window > 0 && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
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
    free(sc);
}

double pcase_ref_check(const pcase *c, double *worst_store) {
    int G = c->G, d = c->d;
    *worst_store = 0;
    for (int b = 0; b < c->n_seqs; b++)
        for (int i = 0; i < c->q_start[b + 1] - c->q_start[b]; i++) {
            int row = c->q_start[b] + i, p = c->start_pos[b] + i;
            for (int h = 0; h < G; h++)
                for (int x = 0; x < d; x++) { /* the store put k_new where the table says */
                    double want = c->k_new[((size_t)row * G + h) * d + x];
                    if (c->dt == TW_BF16) want = tw_test_from_bf16(tw_test_to_bf16((float)want));
                    double got = pool_get(c, c->kp, ref_off(c, b, h, p) + x);
                    double e = fabs(got - want);
                    if (!(e <= *worst_store)) *worst_store = isnan(e) ? INFINITY : e;
                }
        }
    double *ref = malloc(sizeof(double) * (size_t)c->rows * c->H * d);
    pcase_ref(c, ref);
    double err = tw_test_rel_err(c->out, ref, (size_t)c->rows * c->H * d);
    free(ref);
    return err;
}

long pcase_unused_written(const pcase *c) {
    char *used = calloc((size_t)c->n_blocks, 1);
    for (int b = 0; b < c->n_seqs; b++)
        for (int k = 0; k < (c->ctx_len[b] + c->bt - 1) / c->bt; k++)
            used[c->tab[b * c->max_blocks + k]] = 1;
    size_t per = (size_t)c->G * c->bt * c->d;
    long bad = 0;
    for (int blk = 0; blk < c->n_blocks; blk++) {
        if (used[blk]) continue;
        for (size_t i = 0; i < per; i++)
            bad += !isnan(pool_get(c, c->kp, blk * per + i)) +
                   !isnan(pool_get(c, c->vp, blk * per + i));
    }
    free(used);
    return bad;
}

size_t pcase_pool_elems(const pcase *c) {
    return (size_t)c->n_blocks * c->G * c->bt * c->d;
}
