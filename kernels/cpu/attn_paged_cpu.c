/* CPU attention over a paged KV cache (tw_attn_paged_args, tw_kv_store_paged_args in
 * tw_backend.h): the same flash-style algorithm as attention_cpu.c (one pass over the keys in
 * tiles of TW_PAGED_KB with the online softmax of tw_numeric.h; decode split over fixed runs of
 * TW_PAGED_SPLIT_KEYS keys merged with tw_splitkv_merge), reading each tile's keys and values
 * through the sequence's block table. A tile never crosses a block: it is gathered (bf16
 * converted) into a per-thread fp32 buffer, then the SIMD inner loops of attn_prims.h run on it.
 * Only the blocks a sequence's table names are read, so unused blocks of the pool never reach
 * an output. Threads: tasks on the persistent pool (tw_pool.h), a workspace per worker. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "attn_prims.h"
#include "tw_pool.h"

enum {
    TW_PAGED_KB = 64,         /* keys per tile (as attention_cpu.c) */
    TW_PAGED_QMAX = 16,       /* queries per prefill task (tokens x group heads) */
    TW_PAGED_SPLIT_KEYS = 256 /* keys per decode split (as attention_cpu.c) */
};

typedef struct {
    float *q, *s, *o, *kb, *vb;
    tw_softmax_state *st;
    int *lo, *lim;
} paged_ws;

static void pws_free(paged_ws *w) {
    free(w->q);
    free(w->s);
    free(w->o);
    free(w->kb);
    free(w->vb);
    free(w->st);
    free(w->lo);
    free(w->lim);
    memset(w, 0, sizeof *w);
}

static int pws_alloc(paged_ws *w, int nq, int d) {
    memset(w, 0, sizeof *w);
    w->q = malloc(sizeof(float) * (size_t)nq * d);
    w->s = malloc(sizeof(float) * (size_t)nq * TW_PAGED_KB);
    w->o = malloc(sizeof(float) * (size_t)nq * d);
    w->kb = malloc(sizeof(float) * (size_t)TW_PAGED_KB * d);
    w->vb = malloc(sizeof(float) * (size_t)TW_PAGED_KB * d);
    w->st = malloc(sizeof(tw_softmax_state) * (size_t)nq);
    w->lo = malloc(sizeof(int) * (size_t)nq);
    w->lim = malloc(sizeof(int) * (size_t)nq);
    if (!w->q || !w->s || !w->o || !w->kb || !w->vb || !w->st || !w->lo || !w->lim) {
        pws_free(w);
        return 0;
    }
    return 1;
}

/* One call's tasks on the pool: the arguments, a lazily allocated workspace per worker. */
typedef struct {
    const tw_attn_paged_args *a;
    const tw_attn_prims *pr;
    int T, group, nq_max, nsplit;
    const int *task_seq, *task_tb;
    float *po, *plse;
    atomic_int fail;
    paged_ws ws[TW_POOL_MAX_THREADS];
} paged_job;

static paged_ws *paged_job_ws(paged_job *j, int worker) {
    paged_ws *w = &j->ws[worker];
    if (!w->q && !pws_alloc(w, j->nq_max, j->a->head_dim)) {
        atomic_store(&j->fail, 1);
        return NULL;
    }
    return w;
}

static int paged_job_end(paged_job *j) {
    for (int i = 0; i < TW_POOL_MAX_THREADS; i++)
        if (j->ws[i].q) pws_free(&j->ws[i]);
    return atomic_load(&j->fail);
}

/* Copies n rows of KV head h, positions p0 .. p0 + n - 1 (inside one block), into dst fp32. */
static void gather_rows(const tw_attn_prims *pr, const void *pool, tw_dtype dt, const int32_t *tab,
                        int bt, int G, int d, int h, int p0, int n, float *dst) {
    size_t off = tw_paged_kv_offset(tab, bt, G, d, h, p0);
    if (dt == TW_F32)
        memcpy(dst, (const float *)pool + off, sizeof(float) * (size_t)n * d);
    else
        pr->bf16_to_f32((size_t)n * d, (const tw_bf16 *)pool + off, dst);
}

/* The nq queries of w->q (key ranges [lo, lim)) over keys [k0, k1) of KV head h of the sequence
 * with block table tab; leaves the unnormalised output in w->o and the softmax state in w->st. */
static void paged_core(const tw_attn_prims *pr, paged_ws *w, int nq, const tw_attn_paged_args *a,
                       const int32_t *tab, int h, int k0, int k1) {
    const int d = a->head_dim, bt = a->block_tokens, G = a->n_kv_heads;
    memset(w->o, 0, sizeof(float) * (size_t)nq * d);
    for (int i = 0; i < nq; i++) w->st[i] = tw_softmax_init();
    for (int j0 = k0; j0 < k1;) {
        int in_block = bt - j0 % bt;
        int nk = k1 - j0 < TW_PAGED_KB ? k1 - j0 : TW_PAGED_KB;
        if (nk > in_block) nk = in_block;
        gather_rows(pr, a->k_pool, a->kv_dtype, tab, bt, G, d, h, j0, nk, w->kb);
        pr->scores(nq, nk, d, w->q, w->kb, w->s, TW_PAGED_KB);
        int any =
            tw_attn_tile_softmax(pr, nq, nk, j0, d, w->s, TW_PAGED_KB, w->lo, w->lim, w->st, w->o);
        if (any) {
            gather_rows(pr, a->v_pool, a->kv_dtype, tab, bt, G, d, h, j0, nk, w->vb);
            pr->pv(nq, nk, d, w->s, TW_PAGED_KB, w->vb, w->o);
        }
        j0 += nk;
    }
}

/* Shapes, pointers and every position against its block table. rows_out: total query rows. */
static tw_status paged_check(const char *op, const tw_attn_paged_args *a, int decode, int threads,
                             int *rows_out) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "%s: NULL arguments", op);
    if (a->n_seqs < 1 || a->n_heads < 1 || a->n_kv_heads < 1 || a->n_heads % a->n_kv_heads ||
        a->head_dim < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "%s: n_seqs %d, n_heads %d, n_kv_heads %d (dividing n_heads), head_dim %d "
                      "must be >= 1",
                      op, a->n_seqs, a->n_heads, a->n_kv_heads, a->head_dim);
    if (a->block_tokens < 1 || a->n_blocks < 1 || a->max_blocks < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "%s: block_tokens %d, n_blocks %d, max_blocks %d must be >= 1", op,
                      a->block_tokens, a->n_blocks, a->max_blocks);
    if (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "%s: kv_dtype must be fp32 or bf16, got %d", op,
                      (int)a->kv_dtype);
    if (a->window < 0 || !isfinite(a->scale) || threads < 0)
        return TW_ERR(TW_ERR_INVALID, "%s: window %d (>= 0), scale %g (finite), threads %d (>= 0)",
                      op, a->window, (double)a->scale, threads);
    if (!a->start_pos || !a->block_tables || !a->q || !a->k_pool || !a->v_pool || !a->out ||
        (!decode && !a->q_start))
        return TW_ERR(TW_ERR_INVALID, "%s: NULL pointer argument", op);
    int rows = 0;
    for (int b = 0; b < a->n_seqs; b++) {
        int n = 1;
        if (a->q_start) {
            if (a->q_start[b] != rows)
                return TW_ERR(TW_ERR_INVALID, "%s: q_start[%d] = %d, expected %d", op, b,
                              a->q_start[b], rows);
            n = a->q_start[b + 1] - a->q_start[b];
        }
        if (n < 1 || (decode && n != 1))
            return TW_ERR(TW_ERR_INVALID, "%s: sequence %d has %d query rows (%s)", op, b, n,
                          decode ? "decode takes exactly 1" : ">= 1");
        int last = a->start_pos[b] + n - 1;
        if (a->start_pos[b] < 0 || last / a->block_tokens >= a->max_blocks)
            return TW_ERR(TW_ERR_INVALID,
                          "%s: sequence %d's positions %d..%d exceed its block table of %d "
                          "blocks of %d",
                          op, b, a->start_pos[b], last, a->max_blocks, a->block_tokens);
        const int32_t *tab = a->block_tables + (size_t)b * a->max_blocks;
        for (int k = 0; k <= last / a->block_tokens; k++)
            if (tab[k] < 0 || tab[k] >= a->n_blocks)
                return TW_ERR(TW_ERR_INVALID, "%s: sequence %d's block %d is %d, outside 0..%d", op,
                              b, k, tab[k], a->n_blocks - 1);
        rows += n;
    }
    *rows_out = rows;
    return TW_OK;
}

static void paged_prefill_task(void *arg, long t, int worker) {
    paged_job *j = arg;
    const tw_attn_paged_args *a = j->a;
    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = j->group, T = j->T;
    paged_ws *wp = paged_job_ws(j, worker);
    if (!wp) return;
    paged_ws w = *wp;
    int kvh = (int)(t % G), sb = (int)(t / G);
    int b = j->task_seq[sb], s0 = j->task_tb[sb] * T;
    int n = a->q_start[b + 1] - a->q_start[b];
    int tn = n - s0 < T ? n - s0 : T, nq = tn * group;
    int p0 = a->start_pos[b] + s0;
    size_t r0 = (size_t)a->q_start[b] + s0;
    for (int tt = 0; tt < tn; tt++)
        for (int gh = 0; gh < group; gh++) {
            int i = tt * group + gh;
            const float *src = a->q + ((r0 + tt) * H + (size_t)kvh * group + gh) * d;
            for (int x = 0; x < d; x++) w.q[(size_t)i * d + x] = src[x] * a->scale;
            w.lo[i] = tw_attn_window_lo(p0 + tt, a->window);
            w.lim[i] = p0 + tt + 1;
        }
    paged_core(j->pr, &w, nq, a, a->block_tables + (size_t)b * a->max_blocks, kvh,
               tw_attn_window_lo(p0, a->window), p0 + tn);
    for (int tt = 0; tt < tn; tt++)
        for (int gh = 0; gh < group; gh++) {
            int i = tt * group + gh;
            float *dst = a->out + ((r0 + tt) * H + (size_t)kvh * group + gh) * d;
            float inv = 1.0f / w.st[i].l;
            for (int x = 0; x < d; x++) dst[x] = w.o[(size_t)i * d + x] * inv;
        }
}

static void paged_decode_task(void *arg, long t, int worker) {
    paged_job *j = arg;
    const tw_attn_paged_args *a = j->a;
    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = j->group;
    const int nsplit = j->nsplit;
    paged_ws *wp = paged_job_ws(j, worker);
    if (!wp) return;
    paged_ws w = *wp;
    int sp = (int)(t % nsplit);
    long r = t / nsplit;
    int kvh = (int)(r % G), b = (int)(r / G);
    int len = a->start_pos[b] + 1, row = a->q_start ? a->q_start[b] : b;
    int k0 = sp * TW_PAGED_SPLIT_KEYS;
    int k1 = k0 + TW_PAGED_SPLIT_KEYS < len ? k0 + TW_PAGED_SPLIT_KEYS : len;
    int wlo = tw_attn_window_lo(len - 1, a->window);
    if (k0 < wlo) k0 = wlo;
    size_t pidx = ((size_t)b * H + (size_t)kvh * group) * nsplit + sp;
    if (k0 >= k1) {
        for (int gh = 0; gh < group; gh++) {
            j->plse[pidx + (size_t)gh * nsplit] = -INFINITY;
            memset(j->po + (pidx + (size_t)gh * nsplit) * d, 0, sizeof(float) * d);
        }
        return;
    }
    for (int gh = 0; gh < group; gh++) {
        const float *src = a->q + ((size_t)row * H + (size_t)kvh * group + gh) * d;
        for (int x = 0; x < d; x++) w.q[(size_t)gh * d + x] = src[x] * a->scale;
        w.lo[gh] = k0;
        w.lim[gh] = k1;
    }
    paged_core(j->pr, &w, group, a, a->block_tables + (size_t)b * a->max_blocks, kvh, k0, k1);
    for (int gh = 0; gh < group; gh++) {
        float inv = 1.0f / w.st[gh].l;
        float *dst = j->po + (pidx + (size_t)gh * nsplit) * d;
        for (int x = 0; x < d; x++) dst[x] = w.o[(size_t)gh * d + x] * inv;
        j->plse[pidx + (size_t)gh * nsplit] = tw_softmax_lse(w.st[gh]);
    }
}

static void paged_merge_rows(void *arg, long i0, long i1, int worker) {
    (void)worker;
    paged_job *j = arg;
    const tw_attn_paged_args *a = j->a;
    const int H = a->n_heads, d = a->head_dim, nsplit = j->nsplit;
    for (long i = i0; i < i1; i++) {
        int b = (int)(i / H), row = a->q_start ? a->q_start[b] : b;
        tw_splitkv_merge(nsplit, d, j->plse + (size_t)i * nsplit, j->po + (size_t)i * nsplit * d,
                         a->out + ((size_t)row * H + (size_t)(i % H)) * d);
    }
}

tw_status attn_prefill_paged_cpu(const tw_attn_paged_args *a, int threads) {
    return attn_prefill_paged_cpu_with(tw_cpu_state_default(), a, threads);
}

tw_status attn_prefill_paged_cpu_with(const tw_cpu_state *cs, const tw_attn_paged_args *a,
                                      int threads) {
    int rows;
    TW_TRY(paged_check("attn_prefill_paged", a, 0, threads, &rows));
    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = H / G;
    int T = TW_PAGED_QMAX / group; /* tokens per task */
    if (T < 1) T = 1;
    /* tasks: (sequence, kv head, token block); token blocks of each sequence counted first */
    int *task_seq = malloc(sizeof(int) * ((size_t)rows + 1));
    int *task_tb = malloc(sizeof(int) * ((size_t)rows + 1));
    if (!task_seq || !task_tb) {
        free(task_seq);
        free(task_tb);
        return TW_ERR(TW_ERR_NOMEM, "attn_prefill_paged: task list of %d rows", rows);
    }
    int nsb = 0;
    for (int b = 0; b < a->n_seqs; b++) {
        int n = a->q_start[b + 1] - a->q_start[b];
        for (int tb = (n + T - 1) / T - 1; tb >= 0; tb--) { /* late (longest) blocks first */
            task_seq[nsb] = b;
            task_tb[nsb++] = tb;
        }
    }
    const long ntasks = (long)nsb * G;
    paged_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(task_seq);
        free(task_tb);
        return TW_ERR(TW_ERR_NOMEM, "attn_prefill_paged: job");
    }
    j->a = a, j->pr = tw_attn_prims_for(tw_cpu_state_simd(cs)), j->T = T, j->group = group,
    j->nq_max = T * group;
    j->task_seq = task_seq, j->task_tb = task_tb;
    /* dynamic: tasks differ in length (causal); late token blocks (the longest) go first */
    tw_status st = tw_pool_run(tw_cpu_threads(threads), ntasks, paged_prefill_task, j);
    int fail = paged_job_end(j);
    free(j);
    if (st != TW_OK) {
        free(task_seq);
        free(task_tb);
        return tw_error_ctx(st, "attn_prefill_paged");
    }
    free(task_seq);
    free(task_tb);
    if (fail)
        return TW_ERR(TW_ERR_NOMEM, "attn_prefill_paged: workspace of %d queries x %d", T * group,
                      d);
    return TW_OK;
}

tw_status attn_decode_paged_cpu(const tw_attn_paged_args *a, int threads) {
    return attn_decode_paged_cpu_with(tw_cpu_state_default(), a, threads);
}

tw_status attn_decode_paged_cpu_with(const tw_cpu_state *cs, const tw_attn_paged_args *a,
                                     int threads) {
    int rows;
    TW_TRY(paged_check("attn_decode_paged", a, 1, threads, &rows));
    const int B = a->n_seqs, H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = H / G;
    int maxlen = 0;
    for (int b = 0; b < B; b++)
        if (a->start_pos[b] + 1 > maxlen) maxlen = a->start_pos[b] + 1;
    /* the split of a sequence depends on its own length only (bitwise the same in any batch) */
    int nsplit = (maxlen + TW_PAGED_SPLIT_KEYS - 1) / TW_PAGED_SPLIT_KEYS;
    float *po = malloc(sizeof(float) * (size_t)B * H * nsplit * d);
    float *plse = malloc(sizeof(float) * (size_t)B * H * nsplit);
    if (!po || !plse) {
        free(po);
        free(plse);
        return TW_ERR(TW_ERR_NOMEM, "attn_decode_paged: %d split partials of %dx%dx%d", nsplit, B,
                      H, d);
    }
    const long ntasks = (long)B * G * nsplit;
    paged_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(po);
        free(plse);
        return TW_ERR(TW_ERR_NOMEM, "attn_decode_paged: job");
    }
    j->a = a, j->pr = tw_attn_prims_for(tw_cpu_state_simd(cs)), j->group = group, j->nq_max = group;
    j->nsplit = nsplit, j->po = po, j->plse = plse;
    const int nt = tw_cpu_threads(threads);
    tw_status st = tw_pool_run(nt, ntasks, paged_decode_task, j);
    int fail = paged_job_end(j);
    if (st == TW_OK && !fail) st = tw_pool_for(nt, (long)B * H, 1, paged_merge_rows, j);
    free(j);
    if (st != TW_OK) {
        free(po);
        free(plse);
        return tw_error_ctx(st, "attn_decode_paged");
    }
    free(po);
    free(plse);
    if (fail) return TW_ERR(TW_ERR_NOMEM, "attn_decode_paged: workspace of %d x %d", group, d);
    return TW_OK;
}

/* Rows r0 .. r1 - 1 of a kv_store_paged call (checked by its caller). */
static void kv_store_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const tw_kv_store_paged_args *a = arg;
    const int G = a->n_kv_heads, d = a->head_dim, bt = a->block_tokens;
    const long rowlen = (long)G * d, ld = a->ldkv ? a->ldkv : rowlen;
    for (long r = r0; r < r1; r++) {
        int b = 0; /* the sequence holding row r: binary search over q_start */
        int lo = 0, hi = a->n_seqs - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (a->q_start[mid] <= r)
                lo = mid;
            else
                hi = mid - 1;
        }
        b = lo;
        int pos = a->start_pos[b] + (int)(r - a->q_start[b]);
        const int32_t *tab = a->block_tables + (size_t)b * a->max_blocks;
        for (int h = 0; h < G; h++) {
            size_t dst = tw_paged_kv_offset(tab, bt, G, d, h, pos);
            const float *ks = a->k + (size_t)r * ld + (size_t)h * d;
            const float *vs = a->v + (size_t)r * ld + (size_t)h * d;
            if (a->kv_dtype == TW_F32) {
                memcpy((float *)a->k_pool + dst, ks, sizeof(float) * d);
                memcpy((float *)a->v_pool + dst, vs, sizeof(float) * d);
            } else {
                tw_bf16 *kd = (tw_bf16 *)a->k_pool + dst, *vd = (tw_bf16 *)a->v_pool + dst;
                for (int x = 0; x < d; x++) {
                    kd[x] = tw_bf16_from_f32(ks[x]);
                    vd[x] = tw_bf16_from_f32(vs[x]);
                }
            }
        }
    }
}

tw_status kv_store_paged_cpu(const tw_kv_store_paged_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "kv_store_paged: NULL arguments");
    if (a->n_seqs < 1 || a->n_kv_heads < 1 || a->head_dim < 1 || a->block_tokens < 1 ||
        a->n_blocks < 1 || a->max_blocks < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "kv_store_paged: n_seqs %d, n_kv_heads %d, head_dim %d, block_tokens %d, "
                      "n_blocks %d, max_blocks %d must all be >= 1",
                      a->n_seqs, a->n_kv_heads, a->head_dim, a->block_tokens, a->n_blocks,
                      a->max_blocks);
    if (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "kv_store_paged: kv_dtype must be fp32 or bf16, got %d",
                      (int)a->kv_dtype);
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "kv_store_paged: threads %d < 0", threads);
    if (!a->q_start || !a->start_pos || !a->block_tables || !a->k || !a->v || !a->k_pool ||
        !a->v_pool)
        return TW_ERR(TW_ERR_INVALID, "kv_store_paged: NULL pointer argument");
    const int G = a->n_kv_heads, d = a->head_dim, bt = a->block_tokens;
    const long rowlen = (long)G * d, ld = a->ldkv ? a->ldkv : rowlen;
    if (ld < rowlen)
        return TW_ERR(TW_ERR_INVALID, "kv_store_paged: ldkv %d < n_kv_heads * head_dim = %ld",
                      a->ldkv, rowlen);
    if (a->q_start[0] != 0)
        return TW_ERR(TW_ERR_INVALID, "kv_store_paged: q_start[0] = %d, not 0", a->q_start[0]);
    for (int b = 0; b < a->n_seqs; b++) {
        int n = a->q_start[b + 1] - a->q_start[b], last = a->start_pos[b] + n - 1;
        if (n < 1 || a->start_pos[b] < 0 || last / bt >= a->max_blocks)
            return TW_ERR(TW_ERR_INVALID,
                          "kv_store_paged: sequence %d (%d rows from position %d) outside its "
                          "block table of %d blocks of %d",
                          b, n, a->start_pos[b], a->max_blocks, bt);
        const int32_t *tab = a->block_tables + (size_t)b * a->max_blocks;
        for (int k = a->start_pos[b] / bt; k <= last / bt; k++)
            if (tab[k] < 0 || tab[k] >= a->n_blocks)
                return TW_ERR(TW_ERR_INVALID, "kv_store_paged: sequence %d's block %d is %d", b, k,
                              tab[k]);
    }
    const long nrows = a->q_start[a->n_seqs];
    int nt = (size_t)nrows * rowlen < (1u << 16) ? 1 : tw_cpu_threads(threads);
    TW_TRY(tw_pool_for(nt, nrows, (nrows + nt - 1) / nt, kv_store_rows, (void *)a));
    return TW_OK;
}
