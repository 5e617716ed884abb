/* The inference engine: memory plan, synthetic weights per shard, prefill and decode through the
 * backend interface. Buffer shapes are per rank (see tw_shard). */
#include "tw_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend_cuda.h"
#include "tw_engine_comm.h"
#include "tw_util.h"

typedef struct {
    void *attn_norm; /* [hidden] */
    void *wq;        /* [heads*D, hidden] */
    void *wkv;       /* [2*kv_heads*D, hidden]: K rows then V rows */
    void *bq;        /* [heads*D] q_proj bias (qkv_bias), else NULL */
    void *bkv;       /* [2*kv_heads*D]: k_proj bias then v_proj bias */
    void *wo;        /* [hidden, heads*D] */
    void *ffn_norm;  /* [hidden] */
    void *wgu;       /* [2*ffn, hidden]: gate rows then up rows */
    void *wdown;     /* [hidden, ffn] */
    void *k_cache;   /* [max_batch, kv_heads, max_seq, D] */
    void *v_cache;
} tw_layer;

struct tw_engine {
    tw_engine_opts o;
    const tw_model_config *c;
    tw_backend *be;
    tw_shard sh;
    tw_mem_plan plan;
    tw_layer *layers;
    void *embed;      /* [vocab shard, hidden] */
    void *final_norm; /* [hidden] */
    void *lm_head;    /* [vocab shard, hidden]; == embed when tied */
    /* activations, sized for max_batch * max_prefill tokens */
    float *x;           /* [T, hidden] residual stream */
    float *h;           /* [T, hidden] normed */
    float *tmp;         /* [T, hidden] partial sums (tp > 1) */
    float *q;           /* [T, heads*D] */
    float *kv;          /* [T, 2*kv_heads*D] */
    float *attn;        /* [T, heads*D] */
    float *gu;          /* [T, 2*ffn] */
    float *act;         /* [T, ffn] */
    float *logits;      /* [max_batch, vocab_pad] */
    int *pos;           /* [max_batch] current length per sequence (host) */
    int *scratch_i;     /* host: positions [T], start [B], lens [B], idx [B] */
    float *scratch_f;   /* host: val [B] */
    float *host_logits; /* [max_batch, vocab] full vocabulary (keep_host_logits) */
    double *layer_rms;  /* [n_layers] */
    float *host_row;    /* [hidden] */
    double comm_s;
    int capture; /* copy logits and layer RMS to the host each step */
    /* CUDA graph of the decode step (opts.cuda_graph) */
    void *graph;
    int graph_batch, graph_warm_batch;
    int *tok_stable; /* [max_batch] the captured token array */
};

tw_status tw_engine_shard(const tw_model_config *c, int r, int tp, tw_shard *s) {
    memset(s, 0, sizeof *s);
    if (tp < 1 || r < 0 || r >= tp)
        return TW_ERR(TW_ERR_INVALID, "tensor-parallel rank %d of %d is invalid", r, tp);
    if (c->n_heads % tp)
        return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide num_attention_heads (%d)", tp,
                      c->n_heads);
    if (c->intermediate % tp)
        return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide intermediate_size (%d)", tp,
                      c->intermediate);
    int grp = c->n_heads / c->n_kv_heads;
    s->heads = c->n_heads / tp;
    s->head0 = r * s->heads;
    if (tp <= c->n_kv_heads) {
        if (c->n_kv_heads % tp)
            return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide num_key_value_heads (%d)", tp,
                          c->n_kv_heads);
        s->kv_heads = c->n_kv_heads / tp;
    } else {
        /* more ranks than KV heads: each rank keeps a replica of the one KV head its queries
         * read, which needs the local query heads to fall inside one group */
        if (grp % s->heads)
            return TW_ERR(TW_ERR_INVALID,
                          "--tp %d: %d query heads per rank straddle KV groups of %d heads", tp,
                          s->heads, grp);
        s->kv_heads = 1;
    }
    s->kv_head0 = s->head0 / grp;
    s->ffn = c->intermediate / tp;
    s->ffn0 = r * s->ffn;
    s->vocab_pad = (c->vocab + tp - 1) / tp;
    s->vocab0 = r * s->vocab_pad;
    s->vocab = c->vocab - s->vocab0 < s->vocab_pad ? c->vocab - s->vocab0 : s->vocab_pad;
    if (s->vocab < 1) return TW_ERR(TW_ERR_INVALID, "--tp %d leaves rank %d no vocabulary", tp, r);
    return TW_OK;
}

static size_t tw_engine_tokens(const tw_engine_opts *o) {
    size_t t = (size_t)o->max_batch * (size_t)o->max_prefill;
    return t < (size_t)o->max_batch ? (size_t)o->max_batch : t;
}

tw_status tw_engine_plan(const tw_engine_opts *o, tw_mem_plan *p) {
    memset(p, 0, sizeof *p);
    const tw_model_config *c = o->cfg;
    if (o->w_dtype != TW_F32 && o->w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "weight dtype must be fp32 or bf16");
    if (o->kv_dtype != TW_F32 && o->kv_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "KV-cache dtype must be fp32 or bf16");
    if (o->max_batch < 1) return TW_ERR(TW_ERR_INVALID, "batch must be >= 1, got %d", o->max_batch);
    if (o->max_prefill < 1)
        return TW_ERR(TW_ERR_INVALID, "prompt length must be >= 1, got %d", o->max_prefill);
    if (o->max_seq < o->max_prefill)
        return TW_ERR(TW_ERR_INVALID, "KV capacity %d is shorter than the prompt %d", o->max_seq,
                      o->max_prefill);
    if (o->max_seq > c->max_pos)
        return TW_ERR(TW_ERR_INVALID,
                      "prompt + generated tokens (%d) exceed the model's max_position_embeddings "
                      "(%d)",
                      o->max_seq, c->max_pos);
    tw_shard s;
    TW_TRY(tw_engine_shard(c, o->tp_rank, o->tp_size, &s));
    size_t ws = tw_dtype_size(o->w_dtype), D = (size_t)c->head_dim, H = (size_t)c->hidden;
    size_t per_layer = 2 * H + (size_t)s.heads * D * H + 2 * (size_t)s.kv_heads * D * H +
                       H * (size_t)s.heads * D + 3 * (size_t)s.ffn * H;
    if (c->qkv_bias) per_layer += (size_t)s.heads * D + 2 * (size_t)s.kv_heads * D;
    size_t global = (size_t)s.vocab * H + H + (c->tie_embeddings ? 0 : (size_t)s.vocab * H);
    p->params_local = (int64_t)(per_layer * (size_t)c->n_layers + global);
    p->weights_bytes = ws * (size_t)p->params_local;
    p->kv_bytes = (size_t)c->n_layers * 2 * (size_t)o->max_batch * (size_t)s.kv_heads *
                  (size_t)o->max_seq * D * tw_dtype_size(o->kv_dtype);
    size_t T = tw_engine_tokens(o);
    size_t act =
        T * (3 * H + 2 * (size_t)s.heads * D + 2 * (size_t)s.kv_heads * D + 3 * (size_t)s.ffn) +
        (size_t)o->max_batch * (size_t)s.vocab_pad;
    p->act_bytes = act * sizeof(float);
    p->total_bytes = p->weights_bytes + p->kv_bytes + p->act_bytes;
    if (o->be && o->be->ops->mem_available)
        TW_TRY(o->be->ops->mem_available(o->be, &p->available_bytes));
    return TW_OK;
}

static tw_status tw_engine_alloc(tw_engine *e, size_t bytes, void **out) {
    tw_status st = e->be->ops->alloc(e->be, bytes, out);
    if (st != TW_OK) return tw_error_ctx(st, "engine");
    return TW_OK;
}

/* Generates rows [row0, row0+nrows) x cols [col0, col0+ncols) of a tensor into staging memory in
 * the weight dtype, at byte offset `dst_off` of `dst` (backend memory). */
static tw_status tw_engine_gen(tw_engine *e, void *staging, tw_weight_kind k, int layer, int row0,
                               int nrows, int col0, int ncols, void *dst, size_t dst_off) {
    size_t n = (size_t)nrows * (size_t)ncols;
    if (e->o.w_dtype == TW_BF16)
        tw_weight_fill_bf16(e->c, e->o.seed, k, layer, row0, nrows, col0, ncols, staging);
    else
        tw_weight_fill(e->c, e->o.seed, k, layer, row0, nrows, col0, ncols, staging);
    size_t bytes = n * tw_dtype_size(e->o.w_dtype);
    return e->be->ops->upload(e->be, (char *)dst + dst_off, staging, bytes);
}

static tw_status tw_engine_weights(tw_engine *e) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    size_t ws = tw_dtype_size(e->o.w_dtype), D = (size_t)c->head_dim, H = (size_t)c->hidden;
    /* staging big enough for the largest slice generated at once */
    size_t biggest = (size_t)s->vocab * H;
    size_t cand[] = {(size_t)s->heads * D * H, (size_t)s->kv_heads * D * H, (size_t)s->ffn * H};
    for (int i = 0; i < 3; i++)
        if (cand[i] > biggest) biggest = cand[i];
    void *staging = malloc(biggest * ws);
    if (!staging)
        return TW_ERR(TW_ERR_NOMEM, "engine: cannot allocate %zu bytes of staging", biggest * ws);
    tw_status st = TW_OK;
#define TW_G(call)                                                                                 \
    do {                                                                                           \
        if ((st = (call)) != TW_OK) goto done;                                                     \
    } while (0)
    int hid = c->hidden, qd = s->heads * c->head_dim, kvd = s->kv_heads * c->head_dim;
    TW_G(tw_engine_alloc(e, (size_t)s->vocab * H * ws, &e->embed));
    TW_G(tw_engine_gen(e, staging, TW_W_EMBED, 0, s->vocab0, s->vocab, 0, hid, e->embed, 0));
    TW_G(tw_engine_alloc(e, H * ws, &e->final_norm));
    TW_G(tw_engine_gen(e, staging, TW_W_FINAL_NORM, 0, 0, 1, 0, hid, e->final_norm, 0));
    if (c->tie_embeddings) {
        e->lm_head = e->embed;
    } else {
        TW_G(tw_engine_alloc(e, (size_t)s->vocab * H * ws, &e->lm_head));
        TW_G(
            tw_engine_gen(e, staging, TW_W_LM_HEAD, 0, s->vocab0, s->vocab, 0, hid, e->lm_head, 0));
    }
    size_t kv_layer = (size_t)e->o.max_batch * (size_t)s->kv_heads * (size_t)e->o.max_seq * D *
                      tw_dtype_size(e->o.kv_dtype);
    for (int l = 0; l < c->n_layers; l++) {
        tw_layer *L = &e->layers[l];
        TW_G(tw_engine_alloc(e, H * ws, &L->attn_norm));
        TW_G(tw_engine_gen(e, staging, TW_W_ATTN_NORM, l, 0, 1, 0, hid, L->attn_norm, 0));
        TW_G(tw_engine_alloc(e, H * ws, &L->ffn_norm));
        TW_G(tw_engine_gen(e, staging, TW_W_FFN_NORM, l, 0, 1, 0, hid, L->ffn_norm, 0));
        TW_G(tw_engine_alloc(e, (size_t)qd * H * ws, &L->wq));
        TW_G(tw_engine_gen(e, staging, TW_W_Q, l, s->head0 * c->head_dim, qd, 0, hid, L->wq, 0));
        TW_G(tw_engine_alloc(e, 2 * (size_t)kvd * H * ws, &L->wkv));
        TW_G(tw_engine_gen(e, staging, TW_W_K, l, s->kv_head0 * c->head_dim, kvd, 0, hid, L->wkv,
                           0));
        TW_G(tw_engine_gen(e, staging, TW_W_V, l, s->kv_head0 * c->head_dim, kvd, 0, hid, L->wkv,
                           (size_t)kvd * H * ws));
        if (c->qkv_bias) { /* this rank's slice of each bias: the columns of its heads */
            TW_G(tw_engine_alloc(e, (size_t)qd * ws, &L->bq));
            TW_G(tw_engine_gen(e, staging, TW_W_Q_BIAS, l, 0, 1, s->head0 * c->head_dim, qd, L->bq,
                               0));
            TW_G(tw_engine_alloc(e, 2 * (size_t)kvd * ws, &L->bkv));
            TW_G(tw_engine_gen(e, staging, TW_W_K_BIAS, l, 0, 1, s->kv_head0 * c->head_dim, kvd,
                               L->bkv, 0));
            TW_G(tw_engine_gen(e, staging, TW_W_V_BIAS, l, 0, 1, s->kv_head0 * c->head_dim, kvd,
                               L->bkv, (size_t)kvd * ws));
        }
        TW_G(tw_engine_alloc(e, H * (size_t)qd * ws, &L->wo));
        TW_G(tw_engine_gen(e, staging, TW_W_O, l, 0, hid, s->head0 * c->head_dim, qd, L->wo, 0));
        TW_G(tw_engine_alloc(e, 2 * (size_t)s->ffn * H * ws, &L->wgu));
        TW_G(tw_engine_gen(e, staging, TW_W_GATE, l, s->ffn0, s->ffn, 0, hid, L->wgu, 0));
        TW_G(tw_engine_gen(e, staging, TW_W_UP, l, s->ffn0, s->ffn, 0, hid, L->wgu,
                           (size_t)s->ffn * H * ws));
        TW_G(tw_engine_alloc(e, H * (size_t)s->ffn * ws, &L->wdown));
        TW_G(tw_engine_gen(e, staging, TW_W_DOWN, l, 0, hid, s->ffn0, s->ffn, L->wdown, 0));
        TW_G(tw_engine_alloc(e, kv_layer, &L->k_cache));
        TW_G(tw_engine_alloc(e, kv_layer, &L->v_cache));
        if (e->o.progress && e->o.progress(e->o.progress_ctx, l + 1, c->n_layers)) {
            st = TW_ERR(TW_ERR_INTERRUPTED, "engine build stopped after layer %d of %d", l + 1,
                        c->n_layers);
            goto done;
        }
    }
#undef TW_G
done:
    free(staging);
    return st;
}

tw_status tw_engine_create(const tw_engine_opts *o, tw_engine **out) {
    *out = NULL;
    if (!o->cfg || !o->be) return TW_ERR(TW_ERR_INVALID, "engine: model and backend are required");
    TW_TRY(tw_engine_comm_check(o->comm, o->tp_rank, o->tp_size));
    if (o->cuda_graph && strcmp(o->be->ops->name, "cuda") != 0)
        return TW_ERR(TW_ERR_INVALID, "engine: CUDA graphs need the cuda backend, not %s",
                      o->be->ops->name);
    if (o->cfg->qkv_bias && !o->be->ops->bias_add)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "engine: %s has q/k/v biases but the %s backend has no bias_add op",
                      o->cfg->name, o->be->ops->name);
    if (o->cfg->sliding_window < 0)
        return TW_ERR(TW_ERR_INVALID, "engine: sliding window %d of %s is negative",
                      o->cfg->sliding_window, o->cfg->name);
    if (o->cuda_graph && o->tp_size > 1)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "engine: CUDA graphs with tensor parallelism are not supported (the "
                      "vocabulary-parallel argmax is reduced on the host)");
    tw_mem_plan plan;
    TW_TRY(tw_engine_plan(o, &plan));
    if (plan.available_bytes && plan.total_bytes > plan.available_bytes)
        return TW_ERR(TW_ERR_NOMEM,
                      "scenario does not fit on %s: needs %.2f GiB (weights %.2f, KV cache %.2f, "
                      "activations %.2f) but %.2f GiB is available",
                      o->be->ops->name, plan.total_bytes / 1073741824.0,
                      plan.weights_bytes / 1073741824.0, plan.kv_bytes / 1073741824.0,
                      plan.act_bytes / 1073741824.0, plan.available_bytes / 1073741824.0);
    tw_engine *e = calloc(1, sizeof *e);
    if (!e) return TW_ERR(TW_ERR_NOMEM, "engine");
    e->o = *o;
    e->c = o->cfg;
    e->be = o->be;
    e->plan = plan;
    if (e->o.tp_size < 1) e->o.tp_size = 1;
    tw_status st = tw_engine_shard(e->c, e->o.tp_rank, e->o.tp_size, &e->sh);
    if (st != TW_OK) goto fail;
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    size_t T = tw_engine_tokens(o), H = (size_t)c->hidden, D = (size_t)c->head_dim;
    e->layers = calloc((size_t)c->n_layers, sizeof *e->layers);
    e->pos = calloc((size_t)o->max_batch, sizeof(int));
    e->scratch_i =
        calloc(T + 3 * (size_t)o->max_batch + (size_t)o->tp_size * 2 * o->max_batch, sizeof(int));
    e->scratch_f = calloc((size_t)o->max_batch * (1 + (size_t)o->tp_size), sizeof(float));
    e->layer_rms = calloc((size_t)c->n_layers, sizeof(double));
    e->host_row = calloc(H, sizeof(float));
    e->tok_stable = calloc((size_t)o->max_batch, sizeof(int));
    if (!e->layers || !e->pos || !e->scratch_i || !e->scratch_f || !e->layer_rms || !e->host_row ||
        !e->tok_stable) {
        st = TW_ERR(TW_ERR_NOMEM, "engine: host bookkeeping");
        goto fail;
    }
    e->capture = o->keep_host_logits;
    {
        e->host_logits = calloc((size_t)o->max_batch * (size_t)s->vocab_pad * (size_t)e->o.tp_size,
                                sizeof(float));
        if (!e->host_logits) {
            st = TW_ERR(TW_ERR_NOMEM, "engine: host logits");
            goto fail;
        }
    }
    struct {
        float **p;
        size_t n;
    } bufs[] = {
        {&e->x, T * H},
        {&e->h, T * H},
        {&e->tmp, T * H},
        {&e->q, T * (size_t)s->heads * D},
        {&e->kv, T * 2 * (size_t)s->kv_heads * D},
        {&e->attn, T * (size_t)s->heads * D},
        {&e->gu, T * 2 * (size_t)s->ffn},
        {&e->act, T * (size_t)s->ffn},
        {&e->logits, (size_t)o->max_batch * (size_t)s->vocab_pad},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if ((st = tw_engine_alloc(e, bufs[i].n * sizeof(float), (void **)bufs[i].p)) != TW_OK)
            goto fail;
    /* The LM head writes vocab columns of rows vocab_pad apart; the padding columns hold -inf
     * for good, so the argmax can scan whole padded rows. */
    if (s->vocab < s->vocab_pad) {
        size_t npad = (size_t)(s->vocab_pad - s->vocab);
        float *ninf = malloc(npad * sizeof(float));
        if (!ninf) {
            st = TW_ERR(TW_ERR_NOMEM, "engine: logits padding");
            goto fail;
        }
        for (size_t i = 0; i < npad; i++) ninf[i] = -INFINITY;
        for (int b = 0; b < o->max_batch && st == TW_OK; b++)
            st = e->be->ops->upload(e->be, e->logits + (size_t)b * s->vocab_pad + s->vocab, ninf,
                                    npad * sizeof(float));
        free(ninf);
        if (st != TW_OK) goto fail;
    }
    if ((st = tw_engine_weights(e)) != TW_OK) goto fail;
    if ((st = e->be->ops->sync(e->be)) != TW_OK) goto fail;
    *out = e;
    return TW_OK;
fail:
    tw_engine_destroy(e);
    return st;
}

void tw_engine_destroy(tw_engine *e) {
    if (!e) return;
    tw_backend *be = e->be;
    /* First: destroying a graph whose launch was never synced copies its argmax results into
     * idx/val (scratch_i/scratch_f), which used to be freed before this point. */
    if (e->graph) tw_cuda_graph_destroy(be, e->graph);
    e->graph = NULL;
    if (e->layers) {
        for (int l = 0; l < e->c->n_layers; l++) {
            tw_layer *L = &e->layers[l];
            void *ps[] = {L->attn_norm, L->wq,  L->wkv,   L->bq,      L->bkv,    L->wo,
                          L->ffn_norm,  L->wgu, L->wdown, L->k_cache, L->v_cache};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
        }
    }
    if (e->lm_head != e->embed) be->ops->free(be, e->lm_head);
    void *ps[] = {e->embed, e->final_norm, e->x,  e->h,   e->tmp,   e->q,
                  e->kv,    e->attn,       e->gu, e->act, e->logits};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
    free(e->layers);
    free(e->pos);
    free(e->scratch_i);
    free(e->scratch_f);
    free(e->host_logits);
    free(e->layer_rms);
    free(e->host_row);
    free(e->tok_stable);
    free(e);
}

void tw_engine_reset(tw_engine *e) {
    memset(e->pos, 0, sizeof(int) * (size_t)e->o.max_batch);
}

int tw_engine_position(const tw_engine *e, int b) {
    return e->pos[b];
}

const float *tw_engine_logits(const tw_engine *e) {
    return e->host_logits;
}

const double *tw_engine_layer_rms(const tw_engine *e) {
    return e->layer_rms;
}

void tw_engine_set_capture(tw_engine *e, int on) {
    e->capture = on;
}

double tw_engine_comm_seconds(const tw_engine *e) {
    return e->comm_s;
}

/* Sums a [n] fp32 buffer across ranks in place (no-op for one rank). */
static tw_status tw_engine_allreduce(tw_engine *e, float *buf, size_t n) {
    if (e->o.tp_size <= 1) return TW_OK;
    double t0 = tw_now_s();
    TW_TRY(tw_engine_comm_allreduce_sum(e->o.comm, e->be, buf, n));
    e->comm_s += tw_now_s() - t0;
    return TW_OK;
}

/* y = x . W^T added into the residual stream: fused for one rank, summed across ranks first
 * otherwise. */
static tw_status tw_engine_proj_residual(tw_engine *e, int T, int n_in, const float *x,
                                         const void *w) {
    const tw_backend_ops *ops = e->be->ops;
    int H = e->c->hidden;
    if (e->o.tp_size <= 1) {
        tw_gemm_args g = {.m = T,
                          .n = H,
                          .k = n_in,
                          .x = x,
                          .w = w,
                          .w_dtype = e->o.w_dtype,
                          .y = e->x,
                          .accumulate = 1};
        return ops->gemm(e->be, &g);
    }
    tw_gemm_args g = {
        .m = T, .n = H, .k = n_in, .x = x, .w = w, .w_dtype = e->o.w_dtype, .y = e->tmp};
    TW_TRY(ops->gemm(e->be, &g));
    TW_TRY(tw_engine_allreduce(e, e->tmp, (size_t)T * H));
    return ops->add(e->be, (size_t)T * H, e->tmp, e->x);
}

static tw_status tw_engine_rms_of_row(tw_engine *e, const float *row, double *out) {
    int H = e->c->hidden;
    TW_TRY(e->be->ops->download(e->be, e->host_row, row, (size_t)H * sizeof(float)));
    double s = 0;
    for (int i = 0; i < H; i++) s += (double)e->host_row[i] * e->host_row[i];
    *out = sqrt(s / H);
    return TW_OK;
}

/* Queues one forward pass on the backend's stream, embedding to argmax (idx, val: host). Kept
 * apart from the host bookkeeping so that a CUDA graph can capture exactly this. */
static tw_status tw_engine_enqueue(tw_engine *e, int batch, int seq, const int *tokens,
                                   const int *positions, const int *start, const int *lens,
                                   int *idx, float *val) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    int T = batch * seq, H = c->hidden, D = c->head_dim;
    int qd = s->heads * D, kvd = s->kv_heads * D;
    tw_rope_params rp = c->rope;

    TW_TRY(ops->embed(be, T, tokens, e->embed, e->o.w_dtype, s->vocab0, s->vocab, H, e->x));
    TW_TRY(tw_engine_allreduce(e, e->x, (size_t)T * H));
    for (int l = 0; l < c->n_layers; l++) {
        tw_layer *L = &e->layers[l];
        /* attention block */
        TW_TRY(ops->rmsnorm(be, T, H, e->x, L->attn_norm, e->o.w_dtype, c->rms_eps, e->h));
        tw_gemm_args gq = {
            .m = T, .n = qd, .k = H, .x = e->h, .w = L->wq, .w_dtype = e->o.w_dtype, .y = e->q};
        TW_TRY(ops->gemm(be, &gq));
        tw_gemm_args gkv = {.m = T,
                            .n = 2 * kvd,
                            .k = H,
                            .x = e->h,
                            .w = L->wkv,
                            .w_dtype = e->o.w_dtype,
                            .y = e->kv};
        TW_TRY(ops->gemm(be, &gkv));
        if (c->qkv_bias) { /* Qwen2: q = h Wq^T + bq (and k, v), before RoPE */
            TW_TRY(ops->bias_add(be, T, qd, e->q, 0, L->bq, e->o.w_dtype));
            TW_TRY(ops->bias_add(be, T, 2 * kvd, e->kv, 0, L->bkv, e->o.w_dtype));
        }
        TW_TRY(ops->rope(be, T, s->heads, D, e->q, 0, positions, &rp));
        TW_TRY(ops->rope(be, T, s->kv_heads, D, e->kv, 2 * kvd, positions, &rp));
        tw_kv_store_args ks = {.batch = batch,
                               .seq = seq,
                               .n_kv_heads = s->kv_heads,
                               .head_dim = D,
                               .max_seq = e->o.max_seq,
                               .start_pos = start,
                               .k = e->kv,
                               .v = e->kv + kvd,
                               .ldkv = 2 * kvd,
                               .k_cache = L->k_cache,
                               .v_cache = L->v_cache,
                               .kv_dtype = e->o.kv_dtype};
        TW_TRY(ops->kv_store(be, &ks));
        float scale = 1.0f / sqrtf((float)D);
        int window = tw_model_layer_window(c, l);
        if (seq == 1) {
            tw_attn_decode_args a = {.batch = batch,
                                     .n_heads = s->heads,
                                     .n_kv_heads = s->kv_heads,
                                     .head_dim = D,
                                     .max_seq = e->o.max_seq,
                                     .lens = lens,
                                     .q = e->q,
                                     .k_cache = L->k_cache,
                                     .v_cache = L->v_cache,
                                     .kv_dtype = e->o.kv_dtype,
                                     .out = e->attn,
                                     .scale = scale,
                                     .window = window};
            TW_TRY(ops->attn_decode(be, &a));
        } else {
            tw_attn_prefill_args a = {.batch = batch,
                                      .seq = seq,
                                      .n_heads = s->heads,
                                      .n_kv_heads = s->kv_heads,
                                      .head_dim = D,
                                      .max_seq = e->o.max_seq,
                                      .start_pos = start,
                                      .q = e->q,
                                      .k_cache = L->k_cache,
                                      .v_cache = L->v_cache,
                                      .kv_dtype = e->o.kv_dtype,
                                      .out = e->attn,
                                      .scale = scale,
                                      .window = window};
            TW_TRY(ops->attn_prefill(be, &a));
        }
        TW_TRY(tw_engine_proj_residual(e, T, qd, e->attn, L->wo));
        /* MLP block */
        TW_TRY(ops->rmsnorm(be, T, H, e->x, L->ffn_norm, e->o.w_dtype, c->rms_eps, e->h));
        tw_gemm_args ggu = {.m = T,
                            .n = 2 * s->ffn,
                            .k = H,
                            .x = e->h,
                            .w = L->wgu,
                            .w_dtype = e->o.w_dtype,
                            .y = e->gu};
        TW_TRY(ops->gemm(be, &ggu));
        TW_TRY(ops->swiglu(be, T, s->ffn, e->gu, e->gu + s->ffn, 2 * s->ffn, e->act));
        TW_TRY(tw_engine_proj_residual(e, T, s->ffn, e->act, L->wdown));
        if (e->capture) TW_TRY(tw_engine_rms_of_row(e, e->x, &e->layer_rms[l]));
    }
    /* final norm and LM head on the last token of each sequence: rows (b*seq + seq-1) */
    TW_TRY(ops->rmsnorm(be, T, H, e->x, e->final_norm, e->o.w_dtype, c->rms_eps, e->h));
    tw_gemm_args gl = {.m = batch,
                       .n = s->vocab,
                       .k = H,
                       .x = e->h + (size_t)(seq - 1) * H,
                       .ldx = seq * H,
                       .w = e->lm_head,
                       .w_dtype = e->o.w_dtype,
                       .y = e->logits,
                       .ldy = s->vocab_pad};
    TW_TRY(ops->gemm(be, &gl));
    TW_TRY(ops->argmax(be, batch, s->vocab_pad, e->logits, idx, val));
    return TW_OK;
}

/* A decode step through a CUDA graph: the first step at a batch size runs uncaptured (scratch
 * buffers reach their final size), the second is captured, and every later one replays it. The
 * host arrays the ops read (tokens, positions, start, lens) and the argmax outputs stay at fixed
 * engine-owned addresses, as the capture contract (kernels/tw_backend_cuda.h) requires. */
static tw_status tw_engine_graph_step(tw_engine *e, int batch, const int *tokens,
                                      const int *positions, const int *start, const int *lens,
                                      int *idx, float *val) {
    tw_backend *be = e->be;
    memcpy(e->tok_stable, tokens, sizeof(int) * (size_t)batch);
    if (e->graph && e->graph_batch != batch) {
        tw_cuda_graph_destroy(be, e->graph);
        e->graph = NULL;
    }
    if (!e->graph && e->graph_warm_batch != batch) {
        TW_TRY(tw_engine_enqueue(e, batch, 1, e->tok_stable, positions, start, lens, idx, val));
        e->graph_warm_batch = batch;
        return TW_OK;
    }
    if (!e->graph) {
        TW_TRY(tw_cuda_graph_begin(be));
        tw_status st =
            tw_engine_enqueue(e, batch, 1, e->tok_stable, positions, start, lens, idx, val);
        void *g = NULL;
        tw_status st_end = tw_cuda_graph_end(be, &g); /* always end the capture */
        if (st != TW_OK) {
            if (g) tw_cuda_graph_destroy(be, g);
            return tw_error_ctx(st, "capturing the decode step");
        }
        if (st_end != TW_OK) return tw_error_ctx(st_end, "capturing the decode step");
        e->graph = g;
        e->graph_batch = batch;
    }
    TW_TRY(tw_cuda_graph_launch(be, e->graph));
    return be->ops->sync(be); /* copies the argmax results to idx and val */
}

/* One forward pass over `seq` new tokens of each of `batch` sequences (T = batch * seq rows,
 * sequence-major); writes next[b]. */
static tw_status tw_engine_forward(tw_engine *e, int batch, int seq, const int *tokens, int *next) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    if (batch < 1 || batch > e->o.max_batch)
        return TW_ERR(TW_ERR_INVALID, "batch %d is outside 1..%d (the engine's capacity)", batch,
                      e->o.max_batch);
    if (seq < 1 || (seq > 1 && seq > e->o.max_prefill))
        return TW_ERR(TW_ERR_INVALID, "%d tokens per sequence exceed the planned prefill of %d",
                      seq, e->o.max_prefill);
    for (int b = 0; b < batch; b++) {
        if (e->pos[b] + seq > e->o.max_seq)
            return TW_ERR(TW_ERR_INVALID,
                          "sequence %d would reach %d positions, past the KV cache's %d", b,
                          e->pos[b] + seq, e->o.max_seq);
        for (int i = 0; i < seq; i++) {
            int t = tokens[(size_t)b * seq + i];
            if (t < 0 || t >= c->vocab)
                return TW_ERR(TW_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", t,
                              c->vocab - 1);
        }
    }
    int T = batch * seq;
    int *positions = e->scratch_i;      /* [T] */
    int *start = positions + T;         /* [batch] */
    int *lens = start + e->o.max_batch; /* [batch] */
    int *idx = lens + e->o.max_batch;   /* [batch] */
    for (int b = 0; b < batch; b++) {
        start[b] = e->pos[b];
        lens[b] = e->pos[b] + 1;
        for (int i = 0; i < seq; i++) positions[b * seq + i] = e->pos[b] + i;
    }
    float *val = e->scratch_f;
    if (e->o.cuda_graph && seq == 1 && !e->capture) {
        TW_TRY(tw_engine_graph_step(e, batch, tokens, positions, start, lens, idx, val));
    } else {
        TW_TRY(tw_engine_enqueue(e, batch, seq, tokens, positions, start, lens, idx, val));
    }
    if (e->capture && e->o.tp_size <= 1) {
        for (int b = 0; b < batch; b++)
            TW_TRY(ops->download(be, e->host_logits + (size_t)b * c->vocab,
                                 e->logits + (size_t)b * s->vocab_pad,
                                 sizeof(float) * (size_t)c->vocab));
    }
    if (e->o.tp_size > 1) {
        double t0 = tw_now_s();
        TW_TRY(tw_engine_comm_argmax(e->o.comm, batch, s->vocab0, idx, val,
                                     e->scratch_i + T + 3 * e->o.max_batch,
                                     e->scratch_f + e->o.max_batch));
        if (e->capture)
            TW_TRY(tw_engine_comm_gather_logits(e->o.comm, e->be, batch, s->vocab_pad, c->vocab,
                                                e->logits, e->host_logits));
        e->comm_s += tw_now_s() - t0;
    } else {
        for (int b = 0; b < batch; b++) idx[b] += s->vocab0;
    }
    for (int b = 0; b < batch; b++) {
        next[b] = idx[b];
        e->pos[b] += seq;
    }
    return TW_OK;
}

tw_status tw_engine_prefill(tw_engine *e, int batch, int len, const int *tokens, int *next) {
    if (len < 1) return TW_ERR(TW_ERR_INVALID, "prefill of %d tokens", len);
    tw_status st = tw_engine_forward(e, batch, len, tokens, next);
    return st == TW_OK ? TW_OK : tw_error_ctx(st, "prefill");
}

tw_status tw_engine_decode(tw_engine *e, int batch, const int *tokens, int *next) {
    tw_status st = tw_engine_forward(e, batch, 1, tokens, next);
    return st == TW_OK ? TW_OK : tw_error_ctx(st, "decode");
}
