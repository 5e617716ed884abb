/* CPU attention: causal prefill (flash style: one pass over K and V per block of queries, with
 * the online softmax of tw_numeric.h), split-KV decode (flash decoding: partial results merged
 * with tw_splitkv_merge), both with an optional sliding window (keys outside it are neither
 * read into the softmax nor, where whole blocks fall outside, loaded), and the KV-cache store. Also
 * the portable table of inner loops (attn_prims.h); attention_avx2.c and attention_avx512.c have
 * the AVX2 and AVX-512 ones.
 *
 * Work unit: one KV head of one sequence together with all the query heads that read it (the
 * grouped-query "group"), and for prefill several consecutive tokens of them, so each key and
 * value row is loaded once for up to TW_ATTN_QMAX queries. */
#include "attn_prims.h"
#include "tw_pool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum {
    TW_ATTN_KB = 64,   /* keys per block: scores tile [nq, 64] and K/V tiles stay in L1/L2 */
    TW_ATTN_QMAX = 16, /* queries per prefill task (tokens x group heads) */
    TW_DECODE_SPLIT_KEYS = 256 /* keys per decode split: enough to keep the merge negligible */
};

/* ---- portable inner loops ----------------------------------------------------------------- */
static void scores_portable(int nq, int nk, int d, const float *q, const float *k, float *s,
                            int ld_s) {
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (size_t)i * d;
        for (int j = 0; j < nk; j++) {
            const float *kj = k + (size_t)j * d;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int t = 0; t < d; t++) acc += qi[t] * kj[t];
            s[(size_t)i * ld_s + j] = acc;
        }
    }
}

static void pv_portable(int nq, int nk, int d, const float *p, int ld_p, const float *v, float *o) {
    for (int i = 0; i < nq; i++) {
        float *oi = o + (size_t)i * d;
        for (int j = 0; j < nk; j++) {
            float pj = p[(size_t)i * ld_p + j];
            if (pj == 0.0f) continue; /* masked keys */
            const float *vj = v + (size_t)j * d;
#pragma omp simd
            for (int t = 0; t < d; t++) oi[t] += pj * vj[t];
        }
    }
}

static float exp_sub_sum_portable(int n, float m, const float *s, float *p) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        p[j] = expf(s[j] - m);
        sum += p[j];
    }
    return sum;
}

static void bf16_to_f32_portable(size_t n, const tw_bf16 *src, float *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = tw_f32_from_bf16(src[i]);
}

static void swiglu_row_portable(int n, const float *gate, const float *up, float *out) {
    for (int i = 0; i < n; i++) out[i] = tw_silu(gate[i]) * up[i];
}

static const tw_attn_prims tw_attn_prims_portable = {
    .scores = scores_portable,
    .pv = pv_portable,
    .exp_sub_sum = exp_sub_sum_portable,
    .bf16_to_f32 = bf16_to_f32_portable,
    .swiglu_row = swiglu_row_portable,
};

const tw_attn_prims *tw_attn_prims_for(tw_simd level) {
#if defined(TW_X86)
    if (level >= TW_SIMD_AVX512 && level < TW_SIMD_NEON) return tw_attn_prims_avx512();
    if (level >= TW_SIMD_AVX2 && level < TW_SIMD_NEON) return tw_attn_prims_avx2();
#else
    (void)level;
#endif
    return &tw_attn_prims_portable;
}

/* ---- per-thread workspace ------------------------------------------------------------------ */
typedef struct {
    float *q;             /* [nq, d] queries, pre-multiplied by the softmax scale */
    float *s;             /* [nq, KB] scores, then softmax weights */
    float *o;             /* [nq, d] unnormalised output accumulator */
    float *kb, *vb;       /* [KB, d] fp32 copies of a bf16 key / value block */
    tw_softmax_state *st; /* [nq] */
    int *lo, *lim;        /* [nq] query i attends to keys lo[i] <= j < lim[i] */
} attn_ws;

static void ws_free(attn_ws *w) {
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

/* 64-byte aligned, sizes rounded up as aligned_alloc requires */
static void *ws_alloc1(size_t bytes) {
    return aligned_alloc(64, ((bytes + 63) / 64) * 64);
}

static int ws_alloc(attn_ws *w, int nq, int d, int bf16) {
    memset(w, 0, sizeof *w);
    w->q = ws_alloc1(sizeof(float) * (size_t)nq * d);
    w->s = ws_alloc1(sizeof(float) * (size_t)nq * TW_ATTN_KB);
    w->o = ws_alloc1(sizeof(float) * (size_t)nq * d);
    w->st = ws_alloc1(sizeof(tw_softmax_state) * (size_t)nq);
    w->lo = ws_alloc1(sizeof(int) * (size_t)nq);
    w->lim = ws_alloc1(sizeof(int) * (size_t)nq);
    if (bf16) {
        w->kb = ws_alloc1(sizeof(float) * (size_t)TW_ATTN_KB * d);
        w->vb = ws_alloc1(sizeof(float) * (size_t)TW_ATTN_KB * d);
    }
    if (!w->q || !w->s || !w->o || !w->st || !w->lo || !w->lim || (bf16 && (!w->kb || !w->vb))) {
        ws_free(w);
        return 0;
    }
    return 1;
}

/* Runs the nq queries in w->q (key ranges [w->lo, w->lim)) over keys [k0, k1) of one KV head; k
 * and v point at that head's [max_seq, d] rows. Leaves the unnormalised output in w->o and the
 * softmax state in w->st. Every query must have at least one key in its range. */
static void attn_core(const tw_attn_prims *pr, attn_ws *w, int nq, int d, const void *k,
                      const void *v, tw_dtype dt, int k0, int k1) {
    memset(w->o, 0, sizeof(float) * (size_t)nq * d);
    for (int i = 0; i < nq; i++) w->st[i] = tw_softmax_init();
    for (int j0 = k0; j0 < k1; j0 += TW_ATTN_KB) {
        int nk = k1 - j0 < TW_ATTN_KB ? k1 - j0 : TW_ATTN_KB;
        if (dt == TW_F32) {
            pr->scores(nq, nk, d, w->q, (const float *)k + (size_t)j0 * d, w->s, TW_ATTN_KB);
        } else if (pr->scores_bf16) {
            pr->scores_bf16(nq, nk, d, w->q, (const tw_bf16 *)k + (size_t)j0 * d, w->s, TW_ATTN_KB);
        } else {
            pr->bf16_to_f32((size_t)nk * d, (const tw_bf16 *)k + (size_t)j0 * d, w->kb);
            pr->scores(nq, nk, d, w->q, w->kb, w->s, TW_ATTN_KB);
        }
        int any =
            tw_attn_tile_softmax(pr, nq, nk, j0, d, w->s, TW_ATTN_KB, w->lo, w->lim, w->st, w->o);
        if (!any) continue;
        if (dt == TW_F32) {
            pr->pv(nq, nk, d, w->s, TW_ATTN_KB, (const float *)v + (size_t)j0 * d, w->o);
        } else if (pr->pv_bf16) {
            pr->pv_bf16(nq, nk, d, w->s, TW_ATTN_KB, (const tw_bf16 *)v + (size_t)j0 * d, w->o);
        } else {
            pr->bf16_to_f32((size_t)nk * d, (const tw_bf16 *)v + (size_t)j0 * d, w->vb);
            pr->pv(nq, nk, d, w->s, TW_ATTN_KB, w->vb, w->o);
        }
    }
}

/* ---- argument checks ------------------------------------------------------------------------ */
static tw_status attn_check_heads(const char *op, int n_heads, int n_kv_heads, int head_dim,
                                  int max_seq, tw_dtype dt, float scale, int window, int threads) {
    if (window < 0)
        return TW_ERR(TW_ERR_INVALID, "%s: window must be >= 0 (0 = none), got %d", op, window);
    if (n_heads < 1) return TW_ERR(TW_ERR_INVALID, "%s: n_heads must be >= 1, got %d", op, n_heads);
    if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
        return TW_ERR(TW_ERR_INVALID, "%s: n_kv_heads %d must be >= 1 and divide n_heads %d", op,
                      n_kv_heads, n_heads);
    if (head_dim < 1)
        return TW_ERR(TW_ERR_INVALID, "%s: head_dim must be >= 1, got %d", op, head_dim);
    if (max_seq < 1) return TW_ERR(TW_ERR_INVALID, "%s: max_seq must be >= 1, got %d", op, max_seq);
    if (dt != TW_F32 && dt != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "%s: kv_dtype must be fp32 or bf16, got %d", op, (int)dt);
    if (!isfinite(scale))
        return TW_ERR(TW_ERR_INVALID, "%s: scale must be finite, got %g", op, (double)scale);
    if (threads < 0)
        return TW_ERR(TW_ERR_INVALID, "%s: threads must be >= 0 (0 = all cores), got %d", op,
                      threads);
    return TW_OK;
}

static size_t kv_elem_size(tw_dtype dt) {
    return dt == TW_BF16 ? sizeof(tw_bf16) : sizeof(float);
}

/* ---- pool jobs: per-worker workspaces, allocated on a worker's first task ------------------- */
typedef struct {
    const tw_attn_prefill_args *a; /* prefill */
    const tw_attn_decode_args *ad; /* decode */
    int T, ntb, group, nsplit, nq;
    size_t es, head_stride;
    const tw_attn_prims *pr;
    float *po, *plse; /* decode split partials */
    attn_ws ws[TW_POOL_MAX_THREADS];
    _Atomic int fail;
} attn_job;

/* The worker's workspace, or NULL (and fail set) when it cannot be allocated. */
static attn_ws *attn_job_ws(attn_job *j, int worker, int bf16) {
    attn_ws *w = &j->ws[worker];
    if (!w->q && !ws_alloc(w, j->nq, j->a ? j->a->head_dim : j->ad->head_dim, bf16)) {
        atomic_store(&j->fail, 1);
        return NULL;
    }
    return w;
}

static int attn_job_end(attn_job *j) {
    for (int i = 0; i < TW_POOL_MAX_THREADS; i++)
        if (j->ws[i].q) ws_free(&j->ws[i]);
    return atomic_load(&j->fail);
}

static void prefill_task(void *arg, long t, int worker) {
    attn_job *j = arg;
    const tw_attn_prefill_args *a = j->a;
    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = j->group, T = j->T;
    const int ntb = j->ntb;
    attn_ws *wp = attn_job_ws(j, worker, a->kv_dtype == TW_BF16);
    if (!wp) return;
    attn_ws w = *wp;
    int tb = ntb - 1 - (int)(t % ntb);
    long r = t / ntb;
    int kvh = (int)(r % G), b = (int)(r / G);
    int s0 = tb * T, tn = a->seq - s0 < T ? a->seq - s0 : T, nq = tn * group;
    int p0 = a->start_pos[b] + s0;
    for (int tt = 0; tt < tn; tt++)
        for (int gh = 0; gh < group; gh++) {
            int i = tt * group + gh;
            const float *src =
                a->q + (((size_t)b * a->seq + s0 + tt) * H + (size_t)kvh * group + gh) * d;
            for (int x = 0; x < d; x++) w.q[(size_t)i * d + x] = src[x] * a->scale;
            w.lo[i] = tw_attn_window_lo(p0 + tt, a->window);
            w.lim[i] = p0 + tt + 1;
        }
    size_t off = ((size_t)b * G + kvh) * j->head_stride * j->es;
    /* keys before the first token's window are read by no query of the task */
    attn_core(j->pr, &w, nq, d, (const char *)a->k_cache + off, (const char *)a->v_cache + off,
              a->kv_dtype, tw_attn_window_lo(p0, a->window), p0 + tn);
    for (int tt = 0; tt < tn; tt++)
        for (int gh = 0; gh < group; gh++) {
            int i = tt * group + gh;
            float *dst =
                a->out + (((size_t)b * a->seq + s0 + tt) * H + (size_t)kvh * group + gh) * d;
            float inv = 1.0f / w.st[i].l;
            for (int x = 0; x < d; x++) dst[x] = w.o[(size_t)i * d + x] * inv;
        }
}

static void decode_task(void *arg, long t, int worker) {
    attn_job *j = arg;
    const tw_attn_decode_args *a = j->ad;
    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = j->group;
    const int nsplit = j->nsplit;
    float *po = j->po, *plse = j->plse;
    attn_ws *wp = attn_job_ws(j, worker, a->kv_dtype == TW_BF16);
    if (!wp) return;
    attn_ws w = *wp;
    int sp = (int)(t % nsplit);
    long r = t / nsplit;
    int kvh = (int)(r % G), b = (int)(r / G);
    int len = a->lens[b], chunk = TW_DECODE_SPLIT_KEYS;
    int k0 = sp * chunk, k1 = k0 + chunk < len ? k0 + chunk : len;
    /* a sliding window leaves the splits before it empty and trims the first one; the partition
     * itself still depends only on the length */
    int wlo = tw_attn_window_lo(len - 1, a->window);
    if (k0 < wlo) k0 = wlo;
    size_t pidx = ((size_t)b * H + (size_t)kvh * group) * nsplit + sp; /* head gh: +gh*nsplit */
    if (k0 >= k1) { /* shorter sequence: this split has no keys, weight 0 */
        for (int gh = 0; gh < group; gh++) {
            plse[pidx + (size_t)gh * nsplit] = -INFINITY;
            memset(po + (pidx + (size_t)gh * nsplit) * d, 0, sizeof(float) * d);
        }
        return;
    }
    for (int gh = 0; gh < group; gh++) {
        const float *src = a->q + ((size_t)b * H + (size_t)kvh * group + gh) * d;
        for (int x = 0; x < d; x++) w.q[(size_t)gh * d + x] = src[x] * a->scale;
        w.lo[gh] = k0;
        w.lim[gh] = k1;
    }
    size_t off = ((size_t)b * G + kvh) * j->head_stride * j->es;
    attn_core(j->pr, &w, group, d, (const char *)a->k_cache + off, (const char *)a->v_cache + off,
              a->kv_dtype, k0, k1);
    for (int gh = 0; gh < group; gh++) {
        float inv = 1.0f / w.st[gh].l;
        float *dst = po + (pidx + (size_t)gh * nsplit) * d;
        for (int x = 0; x < d; x++) dst[x] = w.o[(size_t)gh * d + x] * inv;
        plse[pidx + (size_t)gh * nsplit] = tw_softmax_lse(w.st[gh]);
    }
}

static void merge_rows(void *arg, long i0, long i1, int worker) {
    (void)worker;
    attn_job *j = arg;
    const int d = j->ad->head_dim, nsplit = j->nsplit;
    for (long i = i0; i < i1; i++)
        tw_splitkv_merge(nsplit, d, j->plse + (size_t)i * nsplit, j->po + (size_t)i * nsplit * d,
                         j->ad->out + (size_t)i * d);
}

/* ---- prefill --------------------------------------------------------------------------------- */
tw_status attn_prefill_cpu(const tw_attn_prefill_args *a, int threads) {
    return attn_prefill_cpu_with(tw_cpu_state_default(), a, threads);
}

tw_status attn_prefill_cpu_with(const tw_cpu_state *cs, const tw_attn_prefill_args *a,
                                int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "attn_prefill: NULL arguments");
    TW_TRY(attn_check_heads("attn_prefill", a->n_heads, a->n_kv_heads, a->head_dim, a->max_seq,
                            a->kv_dtype, a->scale, a->window, threads));
    if (a->batch < 1)
        return TW_ERR(TW_ERR_INVALID, "attn_prefill: batch must be >= 1, got %d", a->batch);
    if (a->seq < 1) return TW_ERR(TW_ERR_INVALID, "attn_prefill: seq must be >= 1, got %d", a->seq);
    if (!a->start_pos || !a->q || !a->k_cache || !a->v_cache || !a->out)
        return TW_ERR(TW_ERR_INVALID, "attn_prefill: NULL %s",
                      !a->start_pos ? "start_pos"
                      : !a->q       ? "q"
                      : !a->k_cache ? "k_cache"
                      : !a->v_cache ? "v_cache"
                                    : "out");
    for (int b = 0; b < a->batch; b++)
        if (a->start_pos[b] < 0 || a->start_pos[b] > a->max_seq - a->seq)
            return TW_ERR(TW_ERR_INVALID,
                          "attn_prefill: start_pos[%d] = %d with seq %d runs outside the cache "
                          "(max_seq %d)",
                          b, a->start_pos[b], a->seq, a->max_seq);

    const int H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = H / G;
    int T = TW_ATTN_QMAX / group; /* tokens per task */
    if (T < 1) T = 1;
    if (T > a->seq) T = a->seq;
    const int ntb = (a->seq + T - 1) / T;
    const long ntasks = (long)a->batch * G * ntb;
    const size_t es = kv_elem_size(a->kv_dtype);
    const size_t head_stride = (size_t)a->max_seq * d; /* elements per (b, kv head) */
    const tw_attn_prims *pr = tw_attn_prims_for(tw_cpu_state_simd(cs));
    attn_job j = {.a = a,
                  .T = T,
                  .ntb = ntb,
                  .group = group,
                  .es = es,
                  .head_stride = head_stride,
                  .pr = pr,
                  .nq = T * group};
    /* dynamic: tasks differ in length (causal); late token blocks (the longest) go first */
    tw_status st = tw_pool_run(tw_cpu_threads(threads), ntasks, prefill_task, &j);
    int fail = attn_job_end(&j);
    if (st != TW_OK) return st;
    if (fail)
        return TW_ERR(TW_ERR_NOMEM, "attn_prefill: cannot allocate the workspace (%d queries x %d)",
                      T * group, d);
    return TW_OK;
}

/* ---- decode ---------------------------------------------------------------------------------- */
tw_status attn_decode_cpu(const tw_attn_decode_args *a, int threads) {
    return attn_decode_cpu_with(tw_cpu_state_default(), a, threads);
}

tw_status attn_decode_cpu_with(const tw_cpu_state *cs, const tw_attn_decode_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "attn_decode: NULL arguments");
    TW_TRY(attn_check_heads("attn_decode", a->n_heads, a->n_kv_heads, a->head_dim, a->max_seq,
                            a->kv_dtype, a->scale, a->window, threads));
    if (a->batch < 1)
        return TW_ERR(TW_ERR_INVALID, "attn_decode: batch must be >= 1, got %d", a->batch);
    if (!a->lens || !a->q || !a->k_cache || !a->v_cache || !a->out)
        return TW_ERR(TW_ERR_INVALID, "attn_decode: NULL %s",
                      !a->lens      ? "lens"
                      : !a->q       ? "q"
                      : !a->k_cache ? "k_cache"
                      : !a->v_cache ? "v_cache"
                                    : "out");
    int maxlen = 0;
    for (int b = 0; b < a->batch; b++) {
        if (a->lens[b] < 1 || a->lens[b] > a->max_seq)
            return TW_ERR(TW_ERR_INVALID, "attn_decode: lens[%d] = %d is not in 1..max_seq (%d)", b,
                          a->lens[b], a->max_seq);
        if (a->lens[b] > maxlen) maxlen = a->lens[b];
    }

    const int B = a->batch, H = a->n_heads, G = a->n_kv_heads, d = a->head_dim, group = H / G;
    int nt = tw_cpu_threads(threads);
    /* Splits of a fixed TW_DECODE_SPLIT_KEYS keys: split sp of a sequence covers keys
     * [sp * TW_DECODE_SPLIT_KEYS, ...). The partition depends on nothing but the sequence's own
     * length, so the result is bitwise the same for any thread count and any batch it sits in
     * (tokwatt's determinism guarantee); long contexts still give every thread work. */
    long bg = (long)B * G;
    int nsplit = (maxlen + TW_DECODE_SPLIT_KEYS - 1) / TW_DECODE_SPLIT_KEYS;

    float *po = malloc(sizeof(float) * (size_t)B * H * nsplit * d); /* [B, H, nsplit, d] */
    float *plse = malloc(sizeof(float) * (size_t)B * H * nsplit);   /* [B, H, nsplit] */
    if (!po || !plse) {
        free(po);
        free(plse);
        return TW_ERR(TW_ERR_NOMEM, "attn_decode: cannot allocate %d split partials of %dx%dx%d",
                      nsplit, B, H, d);
    }
    const long ntasks = bg * nsplit;
    const size_t es = kv_elem_size(a->kv_dtype);
    const size_t head_stride = (size_t)a->max_seq * d;
    const tw_attn_prims *pr = tw_attn_prims_for(tw_cpu_state_simd(cs));
    attn_job j = {.ad = a,
                  .group = group,
                  .nsplit = nsplit,
                  .es = es,
                  .head_stride = head_stride,
                  .pr = pr,
                  .po = po,
                  .plse = plse,
                  .nq = group};
    tw_status st = tw_pool_run(nt, ntasks, decode_task, &j);
    int fail = attn_job_end(&j);
    if (st == TW_OK && !fail) st = tw_pool_for(nt, (long)B * H, 1, merge_rows, &j);
    free(po);
    free(plse);
    if (st != TW_OK) return st;
    if (fail)
        return TW_ERR(TW_ERR_NOMEM, "attn_decode: cannot allocate the workspace (%d queries x %d)",
                      group, d);
    return TW_OK;
}

/* ---- KV store -------------------------------------------------------------------------------- */
typedef struct {
    const tw_kv_store_args *a;
    long ld;
} kv_job;

static void kv_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const kv_job *j = arg;
    const tw_kv_store_args *a = j->a;
    const int G = a->n_kv_heads, d = a->head_dim;
    for (long r = r0; r < r1; r++) {
        int kvh = (int)(r % G);
        long bs = r / G; /* b * seq + s */
        int b = (int)(bs / a->seq), s = (int)(bs % a->seq);
        size_t dst = (((size_t)b * G + kvh) * a->max_seq + (size_t)a->start_pos[b] + s) * d;
        const float *ks = a->k + (size_t)bs * j->ld + (size_t)kvh * d;
        const float *vs = a->v + (size_t)bs * j->ld + (size_t)kvh * d;
        if (a->kv_dtype == TW_F32) {
            memcpy((float *)a->k_cache + dst, ks, sizeof(float) * d);
            memcpy((float *)a->v_cache + dst, vs, sizeof(float) * d);
        } else {
            tw_bf16 *kd = (tw_bf16 *)a->k_cache + dst, *vd = (tw_bf16 *)a->v_cache + dst;
            for (int x = 0; x < d; x++) {
                kd[x] = tw_bf16_from_f32(ks[x]);
                vd[x] = tw_bf16_from_f32(vs[x]);
            }
        }
    }
}

tw_status kv_store_cpu(const tw_kv_store_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "kv_store: NULL arguments");
    if (a->batch < 1 || a->seq < 1 || a->n_kv_heads < 1 || a->head_dim < 1 || a->max_seq < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "kv_store: batch %d, seq %d, n_kv_heads %d, head_dim %d, max_seq %d must "
                      "all be >= 1",
                      a->batch, a->seq, a->n_kv_heads, a->head_dim, a->max_seq);
    if (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "kv_store: kv_dtype must be fp32 or bf16, got %d",
                      (int)a->kv_dtype);
    if (threads < 0)
        return TW_ERR(TW_ERR_INVALID, "kv_store: threads must be >= 0 (0 = all cores), got %d",
                      threads);
    if (!a->start_pos || !a->k || !a->v || !a->k_cache || !a->v_cache)
        return TW_ERR(TW_ERR_INVALID, "kv_store: NULL %s",
                      !a->start_pos ? "start_pos"
                      : !a->k       ? "k"
                      : !a->v       ? "v"
                      : !a->k_cache ? "k_cache"
                                    : "v_cache");
    const int G = a->n_kv_heads, d = a->head_dim;
    const long row = (long)G * d;
    const long ld = a->ldkv ? a->ldkv : row;
    if (ld < row)
        return TW_ERR(TW_ERR_INVALID, "kv_store: ldkv %d is less than n_kv_heads * head_dim = %ld",
                      a->ldkv, row);
    for (int b = 0; b < a->batch; b++)
        if (a->start_pos[b] < 0 || a->start_pos[b] > a->max_seq - a->seq)
            return TW_ERR(TW_ERR_INVALID,
                          "kv_store: start_pos[%d] = %d with seq %d runs outside the cache "
                          "(max_seq %d)",
                          b, a->start_pos[b], a->seq, a->max_seq);
    const long nrows = (long)a->batch * a->seq * G;
    /* a decode step stores a few KB: threads would cost more than the copy */
    int nt = (size_t)nrows * d < (1u << 16) ? 1 : tw_cpu_threads(threads);
    kv_job j = {a, ld};
    return tw_pool_for(nt, nrows, 1, kv_rows, &j);
}
