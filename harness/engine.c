/* The inference engine: memory plan, synthetic weights per shard, prefill and decode through the
 * backend interface. Buffer shapes are per rank (see tw_shard). */
#include "tw_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_comm.h"
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
    void *q_norm, *k_norm; /* [D] per-head q/k RMSNorm weights (qk_norm) */
    /* mixture of experts (is_moe): wgu/wdown then hold the shared experts (or NULL) */
    int is_moe, moe_index; /* moe_index: the layer's row of the load counts */
    void *router;          /* [E, hidden] */
    void *router_bias;     /* [E] score correction bias, or NULL */
    float *skew;           /* [E] routing-skew logit bias (fp32), or NULL */
    void *exp_gu;          /* [experts][2 * moe_ffn, hidden]: gate rows then up rows */
    void *exp_down;        /* [experts][hidden, moe_ffn] */
    /* latent attention (mla): wq is q_proj or q_b_proj, rows [nope of every local head | rope
     * of every local head] (rope rows de-interleaved: see tw_engine_mla_rows) */
    void *wqa, *qa_norm; /* [q_lora, hidden], [q_lora] */
    void *wkva;          /* [kv_lora + rope, hidden], rope rows de-interleaved */
    void *kva_norm;      /* [kv_lora] */
    void *wkvb;          /* [heads * (nope + v), kv_lora] checkpoint rows of the local heads */
    void *mla_cache;     /* [max_batch, max_seq, kv_lora + rope] */
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
    float *x;       /* [T, hidden] residual stream */
    float *h;       /* [T, hidden] normed */
    float *tmp;     /* [T, hidden] partial sums (tp > 1) */
    float *q;       /* [T, heads*D] */
    float *kv;      /* [T, 2*kv_heads*D] */
    float *attn;    /* [T, heads*D] */
    float *gu;      /* [T, 2*ffn] */
    float *act;     /* [T, ffn] */
    float *logits;  /* [max_batch, vocab_pad] */
    float *qa;      /* [T, q_lora] (latent attention) */
    float *rlogits; /* [T, E] router logits */
    float *rweight; /* [T, k] routing weights */
    int *ridx;      /* [T, k] chosen experts (backend memory) */
    void *moe_work; /* moe_ffn workspace */
    size_t moe_work_bytes;
    int *moe_counts;       /* [moe layers, experts] of the last step (backend memory) */
    int *host_counts;      /* the same, downloaded */
    int64_t *expert_load;  /* [moe layers, experts] accumulated */
    double decode_experts; /* sum over decode steps and MoE layers of distinct experts reached */
    int64_t decode_layer_steps;
    int n_moe;
    int in_decode; /* the current forward pass is a decode step */
    /* expert parallelism (ep > 1): per MoE layer each rank sends its tokens' slots, padded to
     * ep_cap rows per destination, and gets the expert outputs back */
    int ep, ep_tl, ep_cap;           /* ranks; tokens per rank (ceil(T / ep)); rows per rank */
    float *ep_send, *ep_recv, *ep_y; /* [ep * ep_cap, hidden] */
    float *ep_meta_s, *ep_meta_r;    /* [ep * ep_cap, 2]: expert id (or -1) and weight */
    float *ep_r;                     /* [k, ep_tl, hidden] returned rows, slot-major */
    float *ep_w;                     /* [ep * ep_cap] weights of the received rows */
    int *ep_idx;                     /* [ep * ep_cap] experts of the received rows */
    int *h_idx;                      /* host: [T, k] routing */
    float *h_w, *h_meta;             /* host: [T, k]; [ep * ep_cap, 2] */
    int *h_rows;                     /* host: [ep * ep_cap] send gather rows, then [k * ep_tl] */
    int *h_epidx;                    /* host: [ep * ep_cap] */
    float *h_epw;                    /* host: [ep * ep_cap] */
    int *h_zero;                     /* host: [T] rows past the table: zero rows */
    int *h_allcounts;                /* host: [ep, moe layers * E] */
    tw_engine_ep_stats ep_stats;
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
    int moe_layers = tw_model_moe_layers(c);
    if (moe_layers < c->n_layers && c->intermediate % tp)
        return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide intermediate_size (%d)", tp,
                      c->intermediate);
    if (moe_layers > 0 && c->moe_intermediate % tp)
        return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide the experts' width (%d)", tp,
                      c->moe_intermediate);
    s->heads = c->n_heads / tp;
    s->head0 = r * s->heads;
    if (c->mla) {
        s->kv_heads = 1; /* the latent: every rank keeps all of it */
        s->kv_head0 = 0;
    } else {
        int grp = c->n_heads / c->n_kv_heads;
        if (tp <= c->n_kv_heads) {
            if (c->n_kv_heads % tp)
                return TW_ERR(TW_ERR_INVALID, "--tp %d does not divide num_key_value_heads (%d)",
                              tp, c->n_kv_heads);
            s->kv_heads = c->n_kv_heads / tp;
        } else {
            /* more ranks than KV heads: each rank keeps a replica of the one KV head its
             * queries read, which needs the local query heads to fall inside one group */
            if (grp % s->heads)
                return TW_ERR(TW_ERR_INVALID,
                              "--tp %d: %d query heads per rank straddle KV groups of %d heads", tp,
                              s->heads, grp);
            s->kv_heads = 1;
        }
        s->kv_head0 = s->head0 / grp;
    }
    s->ffn = c->intermediate / tp;
    s->ffn0 = r * s->ffn;
    if (moe_layers > 0) { /* every expert (and the shared ones) split by columns, as the MLP */
        s->moe_ffn = c->moe_intermediate / tp;
        s->moe_ffn0 = r * s->moe_ffn;
        s->shared_ffn = c->n_shared_experts * s->moe_ffn;
        s->shared_ffn0 = c->n_shared_experts * s->moe_ffn0;
        s->experts = c->n_experts;
        s->expert0 = 0;
    }
    s->vocab_pad = (c->vocab + tp - 1) / tp;
    s->vocab0 = r * s->vocab_pad;
    s->vocab = c->vocab - s->vocab0 < s->vocab_pad ? c->vocab - s->vocab0 : s->vocab_pad;
    if (s->vocab < 1) return TW_ERR(TW_ERR_INVALID, "--tp %d leaves rank %d no vocabulary", tp, r);
    return TW_OK;
}

tw_status tw_engine_shard_ep(const tw_model_config *c, int tp_rank, int tp_size, int ep_rank,
                             int ep_size, tw_shard *s) {
    TW_TRY(tw_engine_shard(c, tp_rank, tp_size, s));
    if (ep_size <= 1) return TW_OK;
    if (ep_rank < 0 || ep_rank >= ep_size)
        return TW_ERR(TW_ERR_INVALID, "expert-parallel rank %d of %d is invalid", ep_rank, ep_size);
    if (tw_model_moe_layers(c) == 0)
        return TW_ERR(TW_ERR_INVALID, "--ep %d: %s has no experts", ep_size, c->name);
    if (c->n_experts % ep_size)
        return TW_ERR(TW_ERR_INVALID, "--ep %d does not divide the %d routed experts", ep_size,
                      c->n_experts);
    if (tp_size != 1 && tp_size != ep_size)
        return TW_ERR(TW_ERR_INVALID,
                      "--tp %d with --ep %d: tokwatt runs attention tensor-parallel over the "
                      "expert-parallel ranks (tp = ep) or replicated (tp = 1)",
                      tp_size, ep_size);
    /* whole experts on each rank; the shared experts keep the tensor-parallel split */
    s->experts = c->n_experts / ep_size;
    s->expert0 = ep_rank * s->experts;
    s->moe_ffn = c->moe_intermediate;
    s->moe_ffn0 = 0;
    return TW_OK;
}

/* Widths of this rank's per-token buffers. */
typedef struct {
    size_t qd;   /* queries: heads * D, or heads * (nope + rope) */
    size_t kvd;  /* keys and values: 2 * kv_heads * D, or the latent row kv_lora + rope */
    size_t attn; /* attention output: heads * D, or heads * v */
    size_t ffn;  /* the widest MLP held: dense or shared experts */
    size_t qa;   /* q_lora */
} tw_widths;

static tw_widths tw_engine_widths(const tw_model_config *c, const tw_shard *s) {
    tw_widths w;
    size_t D = (size_t)c->head_dim;
    if (c->mla) {
        w.qd = (size_t)s->heads * (size_t)(c->qk_nope_dim + c->qk_rope_dim);
        w.kvd = (size_t)(c->kv_lora_rank + c->qk_rope_dim);
        w.attn = (size_t)s->heads * (size_t)c->v_head_dim;
        w.qa = (size_t)c->q_lora_rank;
    } else {
        w.qd = (size_t)s->heads * D;
        w.kvd = 2 * (size_t)s->kv_heads * D;
        w.attn = w.qd;
        w.qa = 0;
    }
    int moe = tw_model_moe_layers(c);
    w.ffn = moe < c->n_layers ? (size_t)s->ffn : 0;
    if (moe > 0 && (size_t)s->shared_ffn > w.ffn) w.ffn = (size_t)s->shared_ffn;
    return w;
}

/* Weights of layer l held by this rank. */
static size_t tw_engine_layer_params(const tw_model_config *c, const tw_shard *s, int l) {
    size_t H = (size_t)c->hidden, D = (size_t)c->head_dim, n = 2 * H;
    tw_widths w = tw_engine_widths(c, s);
    if (c->mla) {
        size_t L = (size_t)c->kv_lora_rank, R = (size_t)c->qk_rope_dim;
        n += w.qa ? w.qa * H + w.qa + w.qd * w.qa : w.qd * H;
        n += (L + R) * H + L + (size_t)s->heads * (size_t)(c->qk_nope_dim + c->v_head_dim) * L;
        n += H * w.attn;
    } else {
        n += w.qd * H + w.kvd * H + H * w.attn;
        if (c->qkv_bias) n += w.qd + w.kvd;
        if (c->qk_norm) n += 2 * D;
    }
    if (!tw_model_layer_is_moe(c, l)) return n + 3 * (size_t)s->ffn * H;
    size_t E = (size_t)c->n_experts;
    n += E * H + (c->router_bias ? E : 0);
    n += (size_t)s->experts * 3 * (size_t)s->moe_ffn * H + 3 * (size_t)s->shared_ffn * H;
    return n;
}

static size_t tw_engine_tokens(const tw_engine_opts *o) {
    /* paged: a step's rows are its token budget, whatever the prompts */
    size_t t = o->kv_blocks > 0 ? (size_t)o->max_step_tokens
                                : (size_t)o->max_batch * (size_t)o->max_prefill;
    return t < (size_t)o->max_batch ? (size_t)o->max_batch : t;
}

/* The moe_ffn workspace: all the tokens' slots, or with expert parallelism the received rows
 * (one slot each), whichever is larger. */
static size_t tw_engine_moe_work_bytes(const tw_engine_opts *o, const tw_shard *s) {
    const tw_model_config *c = o->cfg;
    int T = (int)tw_engine_tokens(o), K = c->n_experts_per_tok, H = c->hidden;
    size_t b = tw_moe_ffn_work_bytes(T, K, H, s->moe_ffn, s->experts);
    if (o->ep_size > 1) {
        int tl = (T + o->ep_size - 1) / o->ep_size;
        size_t be = tw_moe_ffn_work_bytes(o->ep_size * tl * K, 1, H, s->moe_ffn, s->experts);
        if (be > b) b = be;
    }
    return b;
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
    TW_TRY(tw_engine_shard_ep(c, o->tp_rank, o->tp_size, o->ep_rank, o->ep_size, &s));
    if (!(o->routing_skew >= 0) || !isfinite(o->routing_skew))
        return TW_ERR(TW_ERR_INVALID, "routing skew must be finite and >= 0, got %g",
                      o->routing_skew);
    if (o->routing_skew > 0 && c->n_experts == 0)
        return TW_ERR(TW_ERR_INVALID, "a routing skew needs experts; %s has none", c->name);
    size_t ws = tw_dtype_size(o->w_dtype), H = (size_t)c->hidden;
    size_t total = 0;
    for (int l = 0; l < c->n_layers; l++) total += tw_engine_layer_params(c, &s, l);
    size_t global = (size_t)s.vocab * H + H + (c->tie_embeddings ? 0 : (size_t)s.vocab * H);
    p->params_local = (int64_t)(total + global);
    p->weights_bytes = ws * (size_t)p->params_local;
    tw_widths w = tw_engine_widths(c, &s);
    size_t kv_pos = w.kvd; /* per position and layer: K and V, or the latent and rope key */
    p->kv_bytes = (size_t)c->n_layers * (size_t)o->max_batch * (size_t)o->max_seq * kv_pos *
                  tw_dtype_size(o->kv_dtype);
    if (o->kv_blocks > 0) { /* paged: the block pool replaces the per-sequence cache */
        if (c->mla)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "the paged KV cache (serving scenarios) does not hold latent attention "
                          "(%s) yet",
                          c->name);
        if (o->kv_block_tokens < 1 || o->max_step_tokens < 1)
            return TW_ERR(TW_ERR_INVALID,
                          "paged KV cache: block tokens %d and step tokens %d "
                          "must be >= 1",
                          o->kv_block_tokens, o->max_step_tokens);
        p->kv_bytes = (size_t)c->n_layers * (size_t)o->kv_blocks * (size_t)o->kv_block_tokens *
                      kv_pos * tw_dtype_size(o->kv_dtype);
    }
    size_t T = tw_engine_tokens(o);
    size_t act = T * (3 * H + w.qd + w.kvd + w.attn + 3 * w.ffn + w.qa) +
                 (size_t)o->max_batch * (size_t)s.vocab_pad;
    if (tw_model_moe_layers(c) > 0) {
        size_t E = (size_t)c->n_experts, K = (size_t)c->n_experts_per_tok;
        act += T * E + 2 * T * K + (size_t)tw_model_moe_layers(c) * E +
               tw_engine_moe_work_bytes(o, &s) / sizeof(float);
        if (o->ep_size > 1) {
            size_t ep = (size_t)o->ep_size, tl = (T + ep - 1) / ep, rows = ep * tl * K;
            act += 3 * rows * H + 4 * rows + K * tl * H + rows;
        }
    }
    p->act_bytes = act * sizeof(float);
    p->total_bytes = p->weights_bytes + p->kv_bytes + p->act_bytes;
    if (o->be) TW_TRY(o->be->ops->mem_available(o->be, &p->available_bytes));
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

/* Generates the listed rows (each ncols wide from col0) of a tensor into staging, in order, and
 * uploads them at dst + dst_off: a row permutation of a slice in one upload. */
static tw_status tw_engine_gen_rows(tw_engine *e, void *staging, tw_weight_kind k, int layer,
                                    const int *rows, int nrows, int col0, int ncols, void *dst,
                                    size_t dst_off) {
    size_t es = tw_dtype_size(e->o.w_dtype);
    for (int i = 0; i < nrows; i++) {
        void *out = (char *)staging + (size_t)i * ncols * es;
        if (e->o.w_dtype == TW_BF16)
            tw_weight_fill_bf16(e->c, e->o.seed, k, layer, rows[i], 1, col0, ncols, out);
        else
            tw_weight_fill(e->c, e->o.seed, k, layer, rows[i], 1, col0, ncols, out);
    }
    return e->be->ops->upload(e->be, (char *)dst + dst_off, staging, (size_t)nrows * ncols * es);
}

/* Latent attention keeps the query rows of the local heads as [nope of each head | rope of each
 * head] so that one RoPE call with a row stride rotates the rope parts, and de-interleaves the
 * rope rows of the query and of kv_a (DeepSeek pairs dims 2i and 2i+1; the RoPE op pairs i and
 * i + R/2): engine rope dim i holds checkpoint dim 2i for i < R/2 and 2(i - R/2) + 1 above.
 * Query and key get the same permutation, so every score is unchanged. Fills rows[] with the
 * checkpoint rows of the query tensor (q_proj or q_b_proj) for the local heads. */
static int tw_engine_rope_src(const tw_model_config *c, int i) {
    int R = c->qk_rope_dim;
    if (!c->rope_interleave) return i;
    return i < R / 2 ? 2 * i : 2 * (i - R / 2) + 1;
}

static void tw_engine_mla_q_rows(const tw_model_config *c, const tw_shard *s, int *rows) {
    int DN = c->qk_nope_dim, DR = c->qk_rope_dim, n = 0;
    for (int h = 0; h < s->heads; h++)
        for (int d = 0; d < DN; d++) rows[n++] = (s->head0 + h) * (DN + DR) + d;
    for (int h = 0; h < s->heads; h++)
        for (int i = 0; i < DR; i++)
            rows[n++] = (s->head0 + h) * (DN + DR) + DN + tw_engine_rope_src(c, i);
}

/* The attention weights of a latent-attention layer. */
static tw_status tw_engine_mla_weights(tw_engine *e, void *staging, int *rows, int l) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    tw_layer *L = &e->layers[l];
    size_t ws = tw_dtype_size(e->o.w_dtype), H = (size_t)c->hidden;
    int hid = c->hidden, ql = c->q_lora_rank, KL = c->kv_lora_rank, DR = c->qk_rope_dim;
    int qd = s->heads * (c->qk_nope_dim + DR), vd = s->heads * c->v_head_dim;
    int kvb = s->heads * (c->qk_nope_dim + c->v_head_dim);
    tw_engine_mla_q_rows(c, s, rows);
    if (ql > 0) {
        TW_TRY(tw_engine_alloc(e, (size_t)ql * H * ws, &L->wqa));
        TW_TRY(tw_engine_gen(e, staging, TW_W_Q_A, l, 0, ql, 0, hid, L->wqa, 0));
        TW_TRY(tw_engine_alloc(e, (size_t)ql * ws, &L->qa_norm));
        TW_TRY(tw_engine_gen(e, staging, TW_W_Q_A_NORM, l, 0, 1, 0, ql, L->qa_norm, 0));
        TW_TRY(tw_engine_alloc(e, (size_t)qd * ql * ws, &L->wq));
        TW_TRY(tw_engine_gen_rows(e, staging, TW_W_Q_B, l, rows, qd, 0, ql, L->wq, 0));
    } else {
        TW_TRY(tw_engine_alloc(e, (size_t)qd * H * ws, &L->wq));
        TW_TRY(tw_engine_gen_rows(e, staging, TW_W_Q, l, rows, qd, 0, hid, L->wq, 0));
    }
    for (int i = 0; i < KL; i++) rows[i] = i;
    for (int i = 0; i < DR; i++) rows[KL + i] = KL + tw_engine_rope_src(c, i);
    TW_TRY(tw_engine_alloc(e, (size_t)(KL + DR) * H * ws, &L->wkva));
    TW_TRY(tw_engine_gen_rows(e, staging, TW_W_KV_A, l, rows, KL + DR, 0, hid, L->wkva, 0));
    TW_TRY(tw_engine_alloc(e, (size_t)KL * ws, &L->kva_norm));
    TW_TRY(tw_engine_gen(e, staging, TW_W_KV_A_NORM, l, 0, 1, 0, KL, L->kva_norm, 0));
    TW_TRY(tw_engine_alloc(e, (size_t)kvb * KL * ws, &L->wkvb));
    TW_TRY(tw_engine_gen(e, staging, TW_W_KV_B, l, s->head0 * (c->qk_nope_dim + c->v_head_dim), kvb,
                         0, KL, L->wkvb, 0));
    TW_TRY(tw_engine_alloc(e, H * (size_t)vd * ws, &L->wo));
    TW_TRY(tw_engine_gen(e, staging, TW_W_O, l, 0, hid, s->head0 * c->v_head_dim, vd, L->wo, 0));
    size_t cache = (size_t)e->o.max_batch * (size_t)e->o.max_seq * (size_t)(KL + DR) *
                   tw_dtype_size(e->o.kv_dtype);
    return tw_engine_alloc(e, cache, &L->mla_cache);
}

/* The router and this rank's slice of every expert of a MoE layer; the shared experts go to
 * wgu/wdown like a dense MLP. */
static tw_status tw_engine_moe_weights(tw_engine *e, void *staging, int l) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    tw_layer *L = &e->layers[l];
    size_t ws = tw_dtype_size(e->o.w_dtype), H = (size_t)c->hidden;
    int hid = c->hidden, E = c->n_experts, Fm = c->moe_intermediate, f = s->moe_ffn;
    TW_TRY(tw_engine_alloc(e, (size_t)E * H * ws, &L->router));
    TW_TRY(tw_engine_gen(e, staging, TW_W_ROUTER, l, 0, E, 0, hid, L->router, 0));
    if (c->router_bias) {
        TW_TRY(tw_engine_alloc(e, (size_t)E * ws, &L->router_bias));
        TW_TRY(tw_engine_gen(e, staging, TW_W_ROUTER_BIAS, l, 0, 1, 0, E, L->router_bias, 0));
    }
    if (e->o.routing_skew > 0) {
        float *b = staging; /* fp32, E values: the staging holds at least E * H elements */
        tw_moe_skew_bias(c, e->o.seed, e->o.routing_skew, l, b);
        TW_TRY(tw_engine_alloc(e, (size_t)E * sizeof(float), (void **)&L->skew));
        TW_TRY(e->be->ops->upload(e->be, L->skew, b, (size_t)E * sizeof(float)));
    }
    size_t per_gu = 2 * (size_t)f * H * ws, per_down = H * (size_t)f * ws;
    TW_TRY(tw_engine_alloc(e, (size_t)s->experts * per_gu, &L->exp_gu));
    TW_TRY(tw_engine_alloc(e, (size_t)s->experts * per_down, &L->exp_down));
    for (int x = 0; x < s->experts; x++) {
        int g = s->expert0 + x; /* expert g's rows in the stacked tensors */
        TW_TRY(tw_engine_gen(e, staging, TW_W_EXPERT_GATE, l, g * Fm + s->moe_ffn0, f, 0, hid,
                             L->exp_gu, (size_t)x * per_gu));
        TW_TRY(tw_engine_gen(e, staging, TW_W_EXPERT_UP, l, g * Fm + s->moe_ffn0, f, 0, hid,
                             L->exp_gu, (size_t)x * per_gu + (size_t)f * H * ws));
        TW_TRY(tw_engine_gen(e, staging, TW_W_EXPERT_DOWN, l, g * hid, hid, s->moe_ffn0, f,
                             L->exp_down, (size_t)x * per_down));
    }
    if (s->shared_ffn > 0) {
        int sf = s->shared_ffn, sf0 = s->shared_ffn0;
        TW_TRY(tw_engine_alloc(e, 2 * (size_t)sf * H * ws, &L->wgu));
        TW_TRY(tw_engine_gen(e, staging, TW_W_SHARED_GATE, l, sf0, sf, 0, hid, L->wgu, 0));
        TW_TRY(tw_engine_gen(e, staging, TW_W_SHARED_UP, l, sf0, sf, 0, hid, L->wgu,
                             (size_t)sf * H * ws));
        TW_TRY(tw_engine_alloc(e, H * (size_t)sf * ws, &L->wdown));
        TW_TRY(tw_engine_gen(e, staging, TW_W_SHARED_DOWN, l, 0, hid, sf0, sf, L->wdown, 0));
    }
    return TW_OK;
}

static tw_status tw_engine_weights(tw_engine *e) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    size_t ws = tw_dtype_size(e->o.w_dtype), D = (size_t)c->head_dim, H = (size_t)c->hidden;
    tw_widths w = tw_engine_widths(c, s);
    /* staging big enough for the largest slice generated at once (fp32 for the skew bias) */
    size_t biggest = (size_t)s->vocab * H;
    size_t cand[] = {w.qd * H,
                     w.qd * w.qa,
                     w.kvd * H,
                     w.attn * H,
                     (size_t)s->ffn * H,
                     w.ffn * H,
                     (size_t)c->n_experts * H,
                     (size_t)s->moe_ffn * H,
                     (size_t)s->heads * (size_t)(c->qk_nope_dim + c->v_head_dim) *
                         (size_t)c->kv_lora_rank,
                     (size_t)c->n_experts * 2};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if (cand[i] > biggest) biggest = cand[i];
    void *staging = malloc(biggest * (ws > 4 ? ws : 4));
    int *rows = malloc(sizeof(int) * (w.qd + w.kvd + 1));
    if (!staging || !rows) {
        free(staging), free(rows);
        return TW_ERR(TW_ERR_NOMEM, "engine: cannot allocate %zu bytes of staging", biggest * ws);
    }
    tw_status st = TW_OK;
#define TW_G(call)                                                                                 \
    do {                                                                                           \
        if ((st = (call)) != TW_OK) goto done;                                                     \
    } while (0)
    int hid = c->hidden, qd = (int)w.qd, kvd = s->kv_heads * c->head_dim;
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
    if (e->o.kv_blocks > 0) /* [kv_blocks, kv_heads, block_tokens, D] */
        kv_layer = (size_t)e->o.kv_blocks * (size_t)s->kv_heads * (size_t)e->o.kv_block_tokens * D *
                   tw_dtype_size(e->o.kv_dtype);
    int moe_index = 0;
    for (int l = 0; l < c->n_layers; l++) {
        tw_layer *L = &e->layers[l];
        TW_G(tw_engine_alloc(e, H * ws, &L->attn_norm));
        TW_G(tw_engine_gen(e, staging, TW_W_ATTN_NORM, l, 0, 1, 0, hid, L->attn_norm, 0));
        TW_G(tw_engine_alloc(e, H * ws, &L->ffn_norm));
        TW_G(tw_engine_gen(e, staging, TW_W_FFN_NORM, l, 0, 1, 0, hid, L->ffn_norm, 0));
        if (c->mla) {
            TW_G(tw_engine_mla_weights(e, staging, rows, l));
        } else {
            TW_G(tw_engine_alloc(e, (size_t)qd * H * ws, &L->wq));
            TW_G(
                tw_engine_gen(e, staging, TW_W_Q, l, s->head0 * c->head_dim, qd, 0, hid, L->wq, 0));
            TW_G(tw_engine_alloc(e, 2 * (size_t)kvd * H * ws, &L->wkv));
            TW_G(tw_engine_gen(e, staging, TW_W_K, l, s->kv_head0 * c->head_dim, kvd, 0, hid,
                               L->wkv, 0));
            TW_G(tw_engine_gen(e, staging, TW_W_V, l, s->kv_head0 * c->head_dim, kvd, 0, hid,
                               L->wkv, (size_t)kvd * H * ws));
            if (c->qkv_bias) { /* this rank's slice of each bias: the columns of its heads */
                TW_G(tw_engine_alloc(e, (size_t)qd * ws, &L->bq));
                TW_G(tw_engine_gen(e, staging, TW_W_Q_BIAS, l, 0, 1, s->head0 * c->head_dim, qd,
                                   L->bq, 0));
                TW_G(tw_engine_alloc(e, 2 * (size_t)kvd * ws, &L->bkv));
                TW_G(tw_engine_gen(e, staging, TW_W_K_BIAS, l, 0, 1, s->kv_head0 * c->head_dim, kvd,
                                   L->bkv, 0));
                TW_G(tw_engine_gen(e, staging, TW_W_V_BIAS, l, 0, 1, s->kv_head0 * c->head_dim, kvd,
                                   L->bkv, (size_t)kvd * ws));
            }
            if (c->qk_norm) { /* one [D] weight shared by every head: replicated */
                TW_G(tw_engine_alloc(e, D * ws, &L->q_norm));
                TW_G(tw_engine_gen(e, staging, TW_W_Q_NORM, l, 0, 1, 0, (int)D, L->q_norm, 0));
                TW_G(tw_engine_alloc(e, D * ws, &L->k_norm));
                TW_G(tw_engine_gen(e, staging, TW_W_K_NORM, l, 0, 1, 0, (int)D, L->k_norm, 0));
            }
            TW_G(tw_engine_alloc(e, H * (size_t)qd * ws, &L->wo));
            TW_G(
                tw_engine_gen(e, staging, TW_W_O, l, 0, hid, s->head0 * c->head_dim, qd, L->wo, 0));
            TW_G(tw_engine_alloc(e, kv_layer, &L->k_cache));
            TW_G(tw_engine_alloc(e, kv_layer, &L->v_cache));
        }
        if (tw_model_layer_is_moe(c, l)) {
            L->is_moe = 1;
            L->moe_index = moe_index++;
            TW_G(tw_engine_moe_weights(e, staging, l));
        } else {
            TW_G(tw_engine_alloc(e, 2 * (size_t)s->ffn * H * ws, &L->wgu));
            TW_G(tw_engine_gen(e, staging, TW_W_GATE, l, s->ffn0, s->ffn, 0, hid, L->wgu, 0));
            TW_G(tw_engine_gen(e, staging, TW_W_UP, l, s->ffn0, s->ffn, 0, hid, L->wgu,
                               (size_t)s->ffn * H * ws));
            TW_G(tw_engine_alloc(e, H * (size_t)s->ffn * ws, &L->wdown));
            TW_G(tw_engine_gen(e, staging, TW_W_DOWN, l, 0, hid, s->ffn0, s->ffn, L->wdown, 0));
        }
        if (e->o.progress && e->o.progress(e->o.progress_ctx, l + 1, c->n_layers)) {
            st = TW_ERR(TW_ERR_INTERRUPTED, "engine build stopped after layer %d of %d", l + 1,
                        c->n_layers);
            goto done;
        }
    }
#undef TW_G
done:
    free(staging);
    free(rows);
    return st;
}

tw_status tw_engine_create(const tw_engine_opts *o, tw_engine **out) {
    *out = NULL;
    if (!o->cfg || !o->be) return TW_ERR(TW_ERR_INVALID, "engine: model and backend are required");
    TW_TRY(tw_engine_comm_check(o->comm, o->tp_rank, o->tp_size));
    if (o->cuda_graph && !tw_backend_has_graphs(o->be))
        return TW_ERR(TW_ERR_INVALID,
                      "engine: graph replay (--cuda-graph) needs a backend with "
                      "graphs; the %s backend has none",
                      o->be->ops->name);
    if (o->cfg->sliding_window < 0)
        return TW_ERR(TW_ERR_INVALID, "engine: sliding window %d of %s is negative",
                      o->cfg->sliding_window, o->cfg->name);
    /* every op this model needs, for its dtypes, asked of the backend */
    tw_dtype wd = o->w_dtype, kd = o->kv_dtype;
    const struct {
        int needed;
        tw_op op;
        tw_dtype dt;
        const char *why;
    } need[] = {
        {1, TW_OP_GEMM, wd, "the projections"},
        {1, TW_OP_RMSNORM, wd, "the norms"},
        {1, TW_OP_EMBED, wd, "the embedding"},
        {1, TW_OP_ROPE, TW_F32, "rotary positions"},
        {1, TW_OP_SWIGLU, TW_F32, "the MLP"},
        {1, TW_OP_ADD, TW_F32, "the residual"},
        {1, TW_OP_ARGMAX, TW_F32, "greedy sampling"},
        {!o->cfg->mla, TW_OP_KV_STORE, kd, "the KV cache"},
        {!o->cfg->mla, TW_OP_ATTN_PREFILL, kd, "prefill attention"},
        {!o->cfg->mla, TW_OP_ATTN_DECODE, kd, "decode attention"},
        {o->cfg->qkv_bias, TW_OP_BIAS_ADD, wd, "q/k/v biases"},
        {o->cfg->qk_norm || o->cfg->mla, TW_OP_HEAD_RMSNORM, wd, "per-head RMSNorm"},
        {tw_model_moe_layers(o->cfg) > 0, TW_OP_MOE_ROUTE, wd, "experts"},
        {tw_model_moe_layers(o->cfg) > 0, TW_OP_MOE_FFN, wd, "experts"},
        {o->cfg->mla, TW_OP_MLA_STORE, kd, "latent attention"},
        {o->cfg->mla, TW_OP_MLA_ATTN, kd, "latent attention"},
        {o->kv_blocks > 0, TW_OP_KV_STORE_PAGED, kd, "the paged KV cache"},
        {o->kv_blocks > 0, TW_OP_ATTN_PREFILL_PAGED, kd, "the paged KV cache"},
        {o->kv_blocks > 0, TW_OP_ATTN_DECODE_PAGED, kd, "the paged KV cache"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (need[i].needed && !tw_backend_supports(o->be, need[i].op, need[i].dt))
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "engine: %s needs %s (op %s, %s) but the %s backend does not support it",
                          o->cfg->name, need[i].why, tw_op_name(need[i].op),
                          tw_dtype_name(need[i].dt), o->be->ops->name);
    /* the paged KV cache (serving scenarios): its three ops are asked above; the per-step block
     * tables are host arrays that a captured graph would not follow */
    if (o->kv_blocks > 0 && o->cuda_graph)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "engine: the paged KV cache runs without CUDA graphs "
                      "(its block tables change every step on the %s backend)",
                      o->be->ops->name);
    if (o->ep_size > 1) {
        if (!o->comm)
            return TW_ERR(TW_ERR_INVALID, "engine: --ep %d needs a communicator", o->ep_size);
        if (tw_comm_size(o->comm) != o->ep_size || tw_comm_rank(o->comm) != o->ep_rank)
            return TW_ERR(TW_ERR_INVALID,
                          "engine: expert-parallel rank %d of %d, but the %s communicator is "
                          "rank %d of %d",
                          o->ep_rank, o->ep_size, tw_comm_kind(o->comm), tw_comm_rank(o->comm),
                          tw_comm_size(o->comm));
        if (o->tp_size > 1 && o->tp_rank != o->ep_rank)
            return TW_ERR(TW_ERR_INVALID,
                          "engine: tensor-parallel rank %d differs from expert-parallel rank %d "
                          "(they share the ranks)",
                          o->tp_rank, o->ep_rank);
        if (o->cuda_graph)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "engine: CUDA graphs with expert parallelism are not supported (the "
                          "dispatch is planned on the host)");
    }
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
    if (e->o.ep_size < 1) e->o.ep_size = 1;
    e->ep = e->o.ep_size;
    tw_status st =
        tw_engine_shard_ep(e->c, e->o.tp_rank, e->o.tp_size, e->o.ep_rank, e->o.ep_size, &e->sh);
    if (st != TW_OK) goto fail;
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    size_t T = tw_engine_tokens(o), H = (size_t)c->hidden;
    tw_widths w = tw_engine_widths(c, s);
    e->n_moe = tw_model_moe_layers(c);
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
    size_t E = (size_t)c->n_experts, K = (size_t)c->n_experts_per_tok, nm = (size_t)e->n_moe;
    struct {
        float **p;
        size_t n;
    } bufs[] = {
        {&e->x, T * H},
        {&e->h, T * H},
        {&e->tmp, T * H},
        {&e->q, T * w.qd},
        {&e->kv, T * w.kvd},
        {&e->attn, T * w.attn},
        {&e->gu, T * 2 * w.ffn},
        {&e->act, T * w.ffn},
        {&e->logits, (size_t)o->max_batch * (size_t)s->vocab_pad},
        {&e->qa, T * w.qa},
        {&e->rlogits, nm ? T * E : 0},
        {&e->rweight, nm ? T * K : 0},
        {(float **)&e->ridx, nm ? T * K : 0},
        {(float **)&e->moe_counts, nm * E},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i].n &&
            (st = tw_engine_alloc(e, bufs[i].n * sizeof(float), (void **)bufs[i].p)) != TW_OK)
            goto fail;
    if (nm) {
        e->moe_work_bytes = tw_engine_moe_work_bytes(o, s);
        if ((st = tw_engine_alloc(e, e->moe_work_bytes, &e->moe_work)) != TW_OK) goto fail;
        e->host_counts = calloc(nm * E, sizeof(int));
        e->expert_load = calloc(nm * E, sizeof(int64_t));
        if (!e->host_counts || !e->expert_load) {
            st = TW_ERR(TW_ERR_NOMEM, "engine: expert load counters");
            goto fail;
        }
    }
    if (nm && e->ep > 1) {
        size_t ep = (size_t)e->ep;
        e->ep_tl = (int)((T + ep - 1) / ep);
        e->ep_cap = e->ep_tl * (int)K;
        size_t rows = ep * (size_t)e->ep_cap;
        struct {
            float **p;
            size_t n;
        } eb[] = {{&e->ep_send, rows * H},   {&e->ep_recv, rows * H},
                  {&e->ep_y, rows * H},      {&e->ep_meta_s, rows * 2},
                  {&e->ep_meta_r, rows * 2}, {&e->ep_r, K * (size_t)e->ep_tl * H},
                  {&e->ep_w, rows},          {(float **)&e->ep_idx, rows}};
        for (size_t i = 0; i < sizeof eb / sizeof eb[0]; i++)
            if ((st = tw_engine_alloc(e, eb[i].n * sizeof(float), (void **)eb[i].p)) != TW_OK)
                goto fail;
        size_t rr = rows > K * (size_t)e->ep_tl ? rows : K * (size_t)e->ep_tl;
        e->h_idx = malloc(sizeof(int) * T * K);
        e->h_w = malloc(sizeof(float) * T * K);
        e->h_meta = malloc(sizeof(float) * rows * 2);
        e->h_rows = malloc(sizeof(int) * rr);
        e->h_epidx = malloc(sizeof(int) * rows);
        e->h_epw = malloc(sizeof(float) * rows);
        e->h_zero = malloc(sizeof(int) * T);
        e->h_allcounts = malloc(sizeof(int) * ep * nm * E);
        if (!e->h_idx || !e->h_w || !e->h_meta || !e->h_rows || !e->h_epidx || !e->h_epw ||
            !e->h_zero || !e->h_allcounts) {
            st = TW_ERR(TW_ERR_NOMEM, "engine: expert-parallel host buffers");
            goto fail;
        }
        for (size_t i = 0; i < T; i++) e->h_zero[i] = (int)T; /* past the table: zero rows */
        /* the other ranks' experts are never counted here: their counts stay 0 */
        int *zc = calloc(nm * E, sizeof(int));
        st = zc ? e->be->ops->upload(e->be, e->moe_counts, zc, nm * E * sizeof(int))
                : TW_ERR(TW_ERR_NOMEM, "engine: expert counts");
        free(zc);
        if (st != TW_OK) goto fail;
    }
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
    if (e->graph) tw_backend_graph_destroy(be, e->graph);
    e->graph = NULL;
    if (e->layers) {
        for (int l = 0; l < e->c->n_layers; l++) {
            tw_layer *L = &e->layers[l];
            void *ps[] = {L->attn_norm, L->wq,       L->wkv,      L->bq,       L->bkv,
                          L->wo,        L->ffn_norm, L->wgu,      L->wdown,    L->k_cache,
                          L->v_cache,   L->q_norm,   L->k_norm,   L->router,   L->router_bias,
                          L->skew,      L->exp_gu,   L->exp_down, L->wqa,      L->qa_norm,
                          L->wkva,      L->kva_norm, L->wkvb,     L->mla_cache};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
        }
    }
    if (e->lm_head != e->embed) be->ops->free(be, e->lm_head);
    void *ps[] = {e->embed,      e->final_norm, e->x,       e->h,       e->tmp,
                  e->q,          e->kv,         e->attn,    e->gu,      e->act,
                  e->logits,     e->qa,         e->rlogits, e->rweight, e->ridx,
                  e->moe_counts, e->moe_work,   e->ep_send, e->ep_recv, e->ep_y,
                  e->ep_meta_s,  e->ep_meta_r,  e->ep_r,    e->ep_w,    e->ep_idx};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
    free(e->layers);
    free(e->pos);
    free(e->scratch_i);
    free(e->scratch_f);
    free(e->host_logits);
    free(e->layer_rms);
    free(e->host_row);
    free(e->tok_stable);
    free(e->host_counts);
    free(e->expert_load);
    free(e->h_idx), free(e->h_w), free(e->h_meta), free(e->h_rows), free(e->h_epidx);
    free(e->h_epw), free(e->h_zero), free(e->h_allcounts);
    free(e);
}

void tw_engine_reset(tw_engine *e) {
    memset(e->pos, 0, sizeof(int) * (size_t)e->o.max_batch);
}

const tw_model_config *tw_engine_model(const tw_engine *e) {
    return e->c;
}

int tw_engine_max_seq(const tw_engine *e) {
    return e->o.max_seq;
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

const int64_t *tw_engine_expert_load(const tw_engine *e, int *n_moe_layers, int *n_experts) {
    if (n_moe_layers) *n_moe_layers = e->n_moe;
    if (n_experts) *n_experts = e->n_moe ? e->c->n_experts : 0;
    return e->n_moe ? e->expert_load : NULL;
}

void tw_engine_reset_expert_load(tw_engine *e) {
    if (e->expert_load)
        memset(e->expert_load, 0, sizeof(int64_t) * (size_t)e->n_moe * (size_t)e->c->n_experts);
    e->decode_experts = 0;
    e->decode_layer_steps = 0;
}

tw_engine_ep_stats tw_engine_ep_stats_get(const tw_engine *e) {
    return e->ep_stats;
}

double tw_engine_decode_experts_per_layer(const tw_engine *e) {
    return e->decode_layer_steps ? e->decode_experts / (double)e->decode_layer_steps : 0.0;
}

/* After a step: adds the step's per-expert counts to the load, and for a decode step the
 * number of distinct experts each MoE layer reached. */
static tw_status tw_engine_count_load(tw_engine *e, int decode) {
    if (!e->n_moe) return TW_OK;
    size_t n = (size_t)e->n_moe * (size_t)e->c->n_experts;
    TW_TRY(e->be->ops->download(e->be, e->host_counts, e->moe_counts, n * sizeof(int)));
    if (e->ep > 1) { /* each rank counted its own experts: every rank gets the sum */
        TW_TRY(e->o.comm->ops->host_allgather(e->o.comm, e->host_counts, e->h_allcounts,
                                              n * sizeof(int)));
        for (size_t i = 0; i < n; i++) {
            int v = 0;
            for (int r = 0; r < e->ep; r++) v += e->h_allcounts[(size_t)r * n + i];
            e->host_counts[i] = v;
        }
    }
    for (size_t i = 0; i < n; i++) e->expert_load[i] += e->host_counts[i];
    if (decode) {
        int E = e->c->n_experts;
        for (int m = 0; m < e->n_moe; m++) {
            int hit = 0;
            for (int x = 0; x < E; x++) hit += e->host_counts[(size_t)m * E + x] > 0;
            e->decode_experts += hit;
            e->decode_layer_steps++;
        }
    }
    return TW_OK;
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

/* The attention block of a latent-attention layer (h normed; adds into the residual stream):
 * queries through q_a/q_b (or q_proj), the latent row [c | k_r] through kv_a, c normalised,
 * RoPE on k_r and the queries' rope parts, the row stored in the cache, absorbed attention,
 * o_proj. */
static tw_status tw_engine_mla(tw_engine *e, tw_layer *L, int batch, int seq, const int *positions,
                               const int *start) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    int T = batch * seq, H = c->hidden, ql = c->q_lora_rank, KL = c->kv_lora_rank;
    int DN = c->qk_nope_dim, DR = c->qk_rope_dim, qd = s->heads * (DN + DR), W = KL + DR;
    tw_rope_params rp = c->rope;
    if (ql > 0) {
        tw_gemm_args ga = {
            .m = T, .n = ql, .k = H, .x = e->h, .w = L->wqa, .w_dtype = e->o.w_dtype, .y = e->qa};
        TW_TRY(ops->gemm(be, &ga));
        TW_TRY(ops->rmsnorm(be, T, ql, e->qa, L->qa_norm, e->o.w_dtype, c->latent_eps, e->qa));
        tw_gemm_args gb = {
            .m = T, .n = qd, .k = ql, .x = e->qa, .w = L->wq, .w_dtype = e->o.w_dtype, .y = e->q};
        TW_TRY(ops->gemm(be, &gb));
    } else {
        tw_gemm_args gq = {
            .m = T, .n = qd, .k = H, .x = e->h, .w = L->wq, .w_dtype = e->o.w_dtype, .y = e->q};
        TW_TRY(ops->gemm(be, &gq));
    }
    tw_gemm_args gkv = {
        .m = T, .n = W, .k = H, .x = e->h, .w = L->wkva, .w_dtype = e->o.w_dtype, .y = e->kv};
    TW_TRY(ops->gemm(be, &gkv));
    TW_TRY(ops->head_rmsnorm(be, T, 1, KL, e->kv, W, L->kva_norm, e->o.w_dtype, c->latent_eps));
    TW_TRY(ops->rope(be, T, 1, DR, e->kv + KL, W, positions, &rp));
    TW_TRY(ops->rope(be, T, s->heads, DR, e->q + (size_t)s->heads * DN, qd, positions, &rp));
    tw_mla_store_args st = {.batch = batch,
                            .seq = seq,
                            .lora_rank = KL,
                            .rope_dim = DR,
                            .max_seq = e->o.max_seq,
                            .start_pos = start,
                            .kv = e->kv,
                            .ldkv = W,
                            .cache = L->mla_cache,
                            .kv_dtype = e->o.kv_dtype};
    TW_TRY(ops->mla_store(be, &st));
    tw_mla_attn_args at = {.batch = batch,
                           .seq = seq,
                           .n_heads = s->heads,
                           .nope_dim = DN,
                           .rope_dim = DR,
                           .lora_rank = KL,
                           .v_dim = c->v_head_dim,
                           .max_seq = e->o.max_seq,
                           .start_pos = start,
                           .q = e->q,
                           .ldq = qd,
                           .w_kv_b = L->wkvb,
                           .w_dtype = e->o.w_dtype,
                           .cache = L->mla_cache,
                           .kv_dtype = e->o.kv_dtype,
                           .out = e->attn,
                           .scale = c->attn_scale};
    TW_TRY(ops->mla_attn(be, &at));
    return tw_engine_proj_residual(e, T, s->heads * c->v_head_dim, e->attn, L->wo);
}

/* The MLP block of a MoE layer (h normed; adds into the residual stream): router logits, the
 * family's routing rule, this rank's slice of the chosen experts, the shared experts. With
 * tensor parallelism the routed and shared partial sums share one all-reduce. */
/* Sums a [n] buffer over the engine's ranks (tensor- or expert-parallel; no-op for one). */
static tw_status tw_engine_group_allreduce(tw_engine *e, float *buf, size_t n) {
    if (e->o.tp_size <= 1 && e->ep <= 1) return TW_OK;
    double t0 = tw_now_s();
    TW_TRY(tw_engine_comm_allreduce_sum(e->o.comm, e->be, buf, n));
    e->comm_s += tw_now_s() - t0;
    return TW_OK;
}

/* One timed all-to-all of `count` floats per rank pair (completed on return). */
static tw_status tw_engine_alltoall(tw_engine *e, const float *in, float *out, size_t count,
                                    double *seconds, uint64_t *bytes) {
    double t0 = tw_now_s();
    TW_TRY(tw_comm_alltoall(e->o.comm, in, out, count, TW_F32));
    TW_TRY(tw_comm_wait(e->o.comm));
    double dt = tw_now_s() - t0;
    *seconds += dt;
    e->comm_s += dt;
    *bytes += (uint64_t)e->ep * count * sizeof(float);
    e->ep_stats.calls++;
    return TW_OK;
}

/* The shared experts of a MoE layer on rows [r0, r0 + m) of h, added into y (the same rows). */
static tw_status tw_engine_shared_experts(tw_engine *e, tw_layer *L, int r0, int m, float *y) {
    const tw_backend_ops *ops = e->be->ops;
    int H = e->c->hidden, sf = e->sh.shared_ffn;
    if (sf <= 0 || m <= 0) return TW_OK;
    tw_gemm_args ggu = {.m = m,
                        .n = 2 * sf,
                        .k = H,
                        .x = e->h + (size_t)r0 * H,
                        .w = L->wgu,
                        .w_dtype = e->o.w_dtype,
                        .y = e->gu};
    TW_TRY(ops->gemm(e->be, &ggu));
    TW_TRY(ops->swiglu(e->be, m, sf, e->gu, e->gu + sf, 2 * sf, e->act));
    tw_gemm_args gd = {.m = m,
                       .n = H,
                       .k = sf,
                       .x = e->act,
                       .w = L->wdown,
                       .w_dtype = e->o.w_dtype,
                       .y = y + (size_t)r0 * H,
                       .accumulate = 1};
    return ops->gemm(e->be, &gd);
}

/* The routed experts with expert parallelism (the router already ran on every rank, so every
 * rank knows every token's slots): rank r owns tokens [r * tl, (r + 1) * tl). Dispatch: its
 * slots' input rows go, with their expert and weight, to the rank holding the expert (blocks of
 * ceil(T / ep) k rows per destination, padded with zero rows of expert -1: a fixed-size
 * all-to-all).
 * Each rank runs the rows it received through its experts (moe_ffn, one slot per row, the
 * weight applied there) and a second all-to-all returns them. Combine: the owner adds its
 * slots' rows in slot order into tmp, which is zero elsewhere; the caller sums tmp over the
 * ranks (with the shared experts) and adds it to the residual stream. */
static tw_status tw_engine_moe_ep(tw_engine *e, tw_layer *L, int T, int *t0_out, int *nt_out) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    /* blocks sized for this call's tokens (the buffers hold the largest call's) */
    int H = c->hidden, E = c->n_experts, K = c->n_experts_per_tok, N = e->ep;
    int per = E / N, r = e->o.ep_rank, tl = (T + N - 1) / N, C = tl * K;
    int t0 = r * tl, t1 = t0 + tl < T ? t0 + tl : T, nt = t1 > t0 ? t1 - t0 : 0;
    *t0_out = t0, *nt_out = nt;
    TW_TRY(ops->download(be, e->h_idx, e->ridx, sizeof(int) * (size_t)T * K));
    TW_TRY(ops->download(be, e->h_w, e->rweight, sizeof(float) * (size_t)T * K));
    int cnt[1024];
    if (N > 1024) return TW_ERR(TW_ERR_INVALID, "--ep %d: more than 1024 ranks", N);
    memset(cnt, 0, sizeof(int) * (size_t)N);
    int *rows = e->h_rows, *back = e->h_epidx; /* back: [nt * K] where each slot's row went */
    for (int i = 0; i < N * C; i++) {
        rows[i] = T; /* a zero row */
        e->h_meta[2 * i] = -1.0f;
        e->h_meta[2 * i + 1] = 0.0f;
    }
    for (int t = t0; t < t1; t++)
        for (int j = 0; j < K; j++) {
            int x = e->h_idx[t * K + j], d = x / per, at = d * C + cnt[d]++;
            rows[at] = t;
            e->h_meta[2 * at] = (float)x; /* exact: x < 2^24 */
            e->h_meta[2 * at + 1] = e->h_w[t * K + j];
            back[j * nt + (t - t0)] = at;
        }
    TW_TRY(ops->embed(be, N * C, rows, e->h, TW_F32, 0, T, H, e->ep_send));
    TW_TRY(ops->upload(be, e->ep_meta_s, e->h_meta, sizeof(float) * 2 * (size_t)N * C));
    tw_engine_ep_stats *st = &e->ep_stats;
    TW_TRY(tw_engine_alltoall(e, e->ep_send, e->ep_recv, (size_t)C * H, &st->dispatch_s,
                              &st->dispatch_bytes));
    TW_TRY(tw_engine_alltoall(e, e->ep_meta_s, e->ep_meta_r, (size_t)C * 2, &st->dispatch_s,
                              &st->dispatch_bytes));
    TW_TRY(ops->download(be, e->h_meta, e->ep_meta_r, sizeof(float) * 2 * (size_t)N * C));
    int *ridx = malloc(sizeof(int) * (size_t)N * C);
    if (!ridx) return TW_ERR(TW_ERR_NOMEM, "expert-parallel dispatch");
    for (int i = 0; i < N * C; i++) {
        ridx[i] = (int)e->h_meta[2 * i]; /* -1: padding, not held: a zero output row */
        e->h_epw[i] = e->h_meta[2 * i + 1];
    }
    tw_status stt = ops->upload(be, e->ep_idx, ridx, sizeof(int) * (size_t)N * C);
    free(ridx);
    TW_TRY(stt);
    TW_TRY(ops->upload(be, e->ep_w, e->h_epw, sizeof(float) * (size_t)N * C));
    tw_moe_ffn_args fa = {.tokens = N * C,
                          .hidden = H,
                          .ffn = s->moe_ffn,
                          .top_k = 1,
                          .n_experts = s->experts,
                          .expert0 = s->expert0,
                          .idx = e->ep_idx,
                          .weight = e->ep_w,
                          .x = e->ep_recv,
                          .w_gate_up = L->exp_gu,
                          .w_down = L->exp_down,
                          .w_dtype = e->o.w_dtype,
                          .y = e->ep_y,
                          .accumulate = 0,
                          .work = e->moe_work,
                          .work_bytes = e->moe_work_bytes,
                          .counts = e->moe_counts + (size_t)L->moe_index * E + s->expert0};
    TW_TRY(ops->moe_ffn(be, &fa));
    TW_TRY(tw_engine_alltoall(e, e->ep_y, e->ep_send, (size_t)C * H, &st->combine_s,
                              &st->combine_bytes));
    /* tmp = 0, then this rank's tokens: the sum of their slots' rows in slot order */
    TW_TRY(ops->embed(be, T, e->h_zero, e->h, TW_F32, 0, T, H, e->tmp));
    if (nt > 0) {
        TW_TRY(ops->embed(be, K * nt, back, e->ep_send, TW_F32, 0, N * C, H, e->ep_r));
        for (int j = 0; j < K; j++)
            TW_TRY(ops->add(be, (size_t)nt * H, e->ep_r + (size_t)j * nt * H,
                            e->tmp + (size_t)t0 * H));
    }
    return TW_OK;
}

static tw_status tw_engine_moe(tw_engine *e, tw_layer *L, int T) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    int H = c->hidden, E = c->n_experts, K = c->n_experts_per_tok;
    tw_gemm_args gr = {.m = T,
                       .n = E,
                       .k = H,
                       .x = e->h,
                       .w = L->router,
                       .w_dtype = e->o.w_dtype,
                       .y = e->rlogits};
    TW_TRY(ops->gemm(be, &gr));
    tw_moe_route_args ra = {.tokens = T,
                            .n_experts = E,
                            .top_k = K,
                            .scoring = c->moe_scoring == TW_MOE_SIGMOID ? TW_ROUTE_SIGMOID
                                                                        : TW_ROUTE_SOFTMAX,
                            .n_group = c->n_group,
                            .topk_group = c->topk_group,
                            .group_top2 = c->group_score_top2,
                            .norm_topk = c->norm_topk_prob,
                            .scale = c->routed_scaling,
                            .logits = e->rlogits,
                            .logit_bias = L->skew,
                            .choice_bias = L->router_bias,
                            .choice_dtype = e->o.w_dtype,
                            .idx = e->ridx,
                            .weight = e->rweight};
    TW_TRY(ops->moe_route(be, &ra));
    if (e->ep > 1) {
        int t0 = 0, nt = T;
        TW_TRY(tw_engine_moe_ep(e, L, T, &t0, &nt));
        /* the shared experts: tensor-parallel columns of every token, or (attention
         * replicated) all columns of this rank's tokens, so that the sum over ranks counts
         * each token's once */
        int tp = e->o.tp_size > 1, m = tp ? T : nt, r0 = tp ? 0 : t0;
        TW_TRY(tw_engine_shared_experts(e, L, r0, m, e->tmp));
        TW_TRY(tw_engine_group_allreduce(e, e->tmp, (size_t)T * H));
        return ops->add(be, (size_t)T * H, e->tmp, e->x);
    }
    int one = e->o.tp_size <= 1;
    tw_moe_ffn_args fa = {.tokens = T,
                          .hidden = H,
                          .ffn = s->moe_ffn,
                          .top_k = K,
                          .n_experts = s->experts,
                          .expert0 = s->expert0,
                          .idx = e->ridx,
                          .weight = e->rweight,
                          .x = e->h,
                          .w_gate_up = L->exp_gu,
                          .w_down = L->exp_down,
                          .w_dtype = e->o.w_dtype,
                          .y = one ? e->x : e->tmp,
                          .accumulate = one,
                          .work = e->moe_work,
                          .work_bytes = e->moe_work_bytes,
                          .counts = e->moe_counts + (size_t)L->moe_index * E};
    TW_TRY(ops->moe_ffn(be, &fa));
    TW_TRY(tw_engine_shared_experts(e, L, 0, T, one ? e->x : e->tmp));
    if (one) return TW_OK;
    TW_TRY(tw_engine_allreduce(e, e->tmp, (size_t)T * H));
    return ops->add(be, (size_t)T * H, e->tmp, e->x);
}

/* Queues one forward pass on the backend's stream, embedding to argmax (idx, val: host). Kept
 * apart from the host bookkeeping so that a CUDA graph can capture exactly this. */
static tw_status tw_engine_attn_paged(tw_engine *e, tw_layer *L, int l,
                                      const tw_engine_paged_step *pg);

static tw_status tw_engine_enqueue(tw_engine *e, int batch, int seq, const int *tokens,
                                   const int *positions, const int *start, const int *lens,
                                   int *idx, float *val, const tw_engine_paged_step *pg) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    tw_backend *be = e->be;
    int T = pg ? pg->q_start[batch] : batch * seq, H = c->hidden, D = c->head_dim;
    int qd = s->heads * D, kvd = s->kv_heads * D;
    tw_rope_params rp = c->rope;

    TW_TRY(ops->embed(be, T, tokens, e->embed, e->o.w_dtype, s->vocab0, s->vocab, H, e->x));
    TW_TRY(tw_engine_allreduce(e, e->x, (size_t)T * H));
    for (int l = 0; l < c->n_layers; l++) {
        tw_layer *L = &e->layers[l];
        /* attention block */
        TW_TRY(ops->rmsnorm(be, T, H, e->x, L->attn_norm, e->o.w_dtype, c->rms_eps, e->h));
        if (c->mla) {
            TW_TRY(tw_engine_mla(e, L, batch, seq, positions, start));
        } else {
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
            if (c->qk_norm) { /* Qwen3: each head of q and k RMS-normalised, before RoPE */
                TW_TRY(ops->head_rmsnorm(be, T, s->heads, D, e->q, qd, L->q_norm, e->o.w_dtype,
                                         c->rms_eps));
                TW_TRY(ops->head_rmsnorm(be, T, s->kv_heads, D, e->kv, 2 * kvd, L->k_norm,
                                         e->o.w_dtype, c->rms_eps));
            }
            TW_TRY(ops->rope(be, T, s->heads, D, e->q, 0, positions, &rp));
            TW_TRY(ops->rope(be, T, s->kv_heads, D, e->kv, 2 * kvd, positions, &rp));
            if (pg) {
                TW_TRY(tw_engine_attn_paged(e, L, l, pg));
            } else {
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
            }
            TW_TRY(tw_engine_proj_residual(e, T, qd, e->attn, L->wo));
        }
        /* MLP block */
        TW_TRY(ops->rmsnorm(be, T, H, e->x, L->ffn_norm, e->o.w_dtype, c->rms_eps, e->h));
        if (L->is_moe) {
            TW_TRY(tw_engine_moe(e, L, T));
        } else {
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
        }
        if (e->capture) TW_TRY(tw_engine_rms_of_row(e, e->x, &e->layer_rms[l]));
    }
    /* final norm and LM head on the last token of each sequence: rows (b*seq + seq-1) */
    TW_TRY(ops->rmsnorm(be, T, H, e->x, e->final_norm, e->o.w_dtype, c->rms_eps, e->h));
    if (pg) { /* each sequence's last row, gathered (tmp is free here) */
        int *last = e->scratch_i + T + 3 * e->o.max_batch;
        for (int b = 0; b < batch; b++) last[b] = pg->q_start[b + 1] - 1;
        TW_TRY(ops->embed(be, batch, last, e->h, TW_F32, 0, T, H, e->tmp));
        tw_gemm_args gp = {.m = batch,
                           .n = s->vocab,
                           .k = H,
                           .x = e->tmp,
                           .w = e->lm_head,
                           .w_dtype = e->o.w_dtype,
                           .y = e->logits,
                           .ldy = s->vocab_pad};
        TW_TRY(ops->gemm(be, &gp));
        return ops->argmax(be, batch, s->vocab_pad, e->logits, idx, val);
    }
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
 * engine-owned addresses, as the capture contract (kernels/cuda/tw_backend_cuda.h) requires. */
static tw_status tw_engine_graph_step(tw_engine *e, int batch, const int *tokens,
                                      const int *positions, const int *start, const int *lens,
                                      int *idx, float *val) {
    tw_backend *be = e->be;
    memcpy(e->tok_stable, tokens, sizeof(int) * (size_t)batch);
    if (e->graph && e->graph_batch != batch) {
        tw_backend_graph_destroy(be, e->graph);
        e->graph = NULL;
    }
    if (!e->graph && e->graph_warm_batch != batch) {
        TW_TRY(
            tw_engine_enqueue(e, batch, 1, e->tok_stable, positions, start, lens, idx, val, NULL));
        e->graph_warm_batch = batch;
        return TW_OK;
    }
    if (!e->graph) {
        TW_TRY(tw_backend_graph_begin(be));
        tw_status st =
            tw_engine_enqueue(e, batch, 1, e->tok_stable, positions, start, lens, idx, val, NULL);
        void *g = NULL;
        tw_status st_end = tw_backend_graph_end(be, &g); /* always end the capture */
        if (st != TW_OK) {
            if (g) tw_backend_graph_destroy(be, g);
            return tw_error_ctx(st, "capturing the decode step");
        }
        if (st_end != TW_OK) return tw_error_ctx(st_end, "capturing the decode step");
        e->graph = g;
        e->graph_batch = batch;
    }
    TW_TRY(tw_backend_graph_launch(be, e->graph));
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
        TW_TRY(tw_engine_enqueue(e, batch, seq, tokens, positions, start, lens, idx, val, NULL));
    }
    TW_TRY(tw_engine_count_load(e, e->in_decode));
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
    e->in_decode = 1;
    tw_status st = tw_engine_forward(e, batch, 1, tokens, next);
    e->in_decode = 0;
    return st == TW_OK ? TW_OK : tw_error_ctx(st, "decode");
}

/* ---- paged KV cache (continuous batching) ------------------------------------------------------
 */

/* One layer's attention of a paged step: K and V stored through the block tables, the leading
 * decode sequences through attn_decode_paged, the rest through attn_prefill_paged. */
static tw_status tw_engine_attn_paged(tw_engine *e, tw_layer *L, int l,
                                      const tw_engine_paged_step *pg) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    const tw_backend_ops *ops = e->be->ops;
    int D = c->head_dim, qd = s->heads * D, kvd = s->kv_heads * D;
    int nd = pg->n_decode, n = pg->n_seqs;
    tw_kv_store_paged_args ks = {.n_seqs = n,
                                 .n_kv_heads = s->kv_heads,
                                 .head_dim = D,
                                 .block_tokens = e->o.kv_block_tokens,
                                 .n_blocks = (int)e->o.kv_blocks,
                                 .max_blocks = pg->max_blocks,
                                 .q_start = pg->q_start,
                                 .start_pos = pg->start_pos,
                                 .block_tables = pg->block_tables,
                                 .k = e->kv,
                                 .v = e->kv + kvd,
                                 .ldkv = 2 * kvd,
                                 .k_pool = L->k_cache,
                                 .v_pool = L->v_cache,
                                 .kv_dtype = e->o.kv_dtype};
    TW_TRY(ops->kv_store_paged(e->be, &ks));
    tw_attn_paged_args a = {.n_heads = s->heads,
                            .n_kv_heads = s->kv_heads,
                            .head_dim = D,
                            .block_tokens = e->o.kv_block_tokens,
                            .n_blocks = (int)e->o.kv_blocks,
                            .max_blocks = pg->max_blocks,
                            .k_pool = L->k_cache,
                            .v_pool = L->v_cache,
                            .kv_dtype = e->o.kv_dtype,
                            .scale = 1.0f / sqrtf((float)D),
                            .window = tw_model_layer_window(c, l)};
    if (nd > 0) {
        a.n_seqs = nd;
        a.q_start = NULL;
        a.start_pos = pg->start_pos;
        a.block_tables = pg->block_tables;
        a.q = e->q;
        a.out = e->attn;
        TW_TRY(ops->attn_decode_paged(e->be, &a));
    }
    if (nd < n) { /* the prefill sequences' rows start at row q_start[nd]: rebased offsets */
        int *qs = e->scratch_i + pg->q_start[n] + 3 * e->o.max_batch;
        for (int b = nd; b <= n; b++) qs[b - nd] = pg->q_start[b] - pg->q_start[nd];
        a.n_seqs = n - nd;
        a.q_start = qs;
        a.start_pos = pg->start_pos + nd;
        a.block_tables = pg->block_tables + (size_t)nd * pg->max_blocks;
        a.q = e->q + (size_t)pg->q_start[nd] * qd;
        a.out = e->attn + (size_t)pg->q_start[nd] * qd;
        TW_TRY(ops->attn_prefill_paged(e->be, &a));
    }
    return TW_OK;
}

tw_status tw_engine_step_paged(tw_engine *e, const tw_engine_paged_step *pg, int *next) {
    const tw_model_config *c = e->c;
    const tw_shard *s = &e->sh;
    if (e->o.kv_blocks <= 0)
        return TW_ERR(TW_ERR_INVALID, "paged step on an engine without a paged KV cache");
    int n = pg->n_seqs;
    if (n < 1 || n > e->o.max_batch || pg->n_decode < 0 || pg->n_decode > n || !pg->q_start ||
        !pg->start_pos || !pg->tokens || !pg->block_tables || pg->max_blocks < 1 ||
        pg->q_start[0] != 0)
        return TW_ERR(TW_ERR_INVALID,
                      "paged step: %d sequences (1..%d), %d decodes, its arrays and q_start[0] = 0",
                      n, e->o.max_batch, pg->n_decode);
    int T = pg->q_start[n];
    if (T < n || T > (int)tw_engine_tokens(&e->o))
        return TW_ERR(TW_ERR_INVALID, "paged step of %d rows: outside %d..%d (the planned budget)",
                      T, n, (int)tw_engine_tokens(&e->o));
    int *positions = e->scratch_i; /* [T], then decode/prefill offsets and the last rows */
    for (int b = 0; b < n; b++) {
        int rows = pg->q_start[b + 1] - pg->q_start[b];
        if (rows < 1 || (b < pg->n_decode && rows != 1) || pg->start_pos[b] < 0 ||
            pg->start_pos[b] + rows > e->o.max_seq)
            return TW_ERR(TW_ERR_INVALID,
                          "paged step: sequence %d has %d rows from position %d (max_seq %d)", b,
                          rows, pg->start_pos[b], e->o.max_seq);
        for (int i = 0; i < rows; i++) {
            int t = pg->tokens[pg->q_start[b] + i];
            if (t < 0 || t >= c->vocab)
                return TW_ERR(TW_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", t,
                              c->vocab - 1);
            positions[pg->q_start[b] + i] = pg->start_pos[b] + i;
        }
    }
    int *idx = e->scratch_i + T + e->o.max_batch; /* clear of the offsets and last rows */
    float *val = e->scratch_f;
    e->in_decode = pg->n_decode == n;
    tw_status st = tw_engine_enqueue(e, n, 1, pg->tokens, positions, NULL, NULL, idx, val, pg);
    if (st == TW_OK) st = tw_engine_count_load(e, e->in_decode);
    e->in_decode = 0;
    if (st != TW_OK) return tw_error_ctx(st, "paged step");
    if (e->o.tp_size > 1) {
        double t0 = tw_now_s();
        TW_TRY(tw_engine_comm_argmax(e->o.comm, n, s->vocab0, idx, val,
                                     e->scratch_i + T + 3 * e->o.max_batch,
                                     e->scratch_f + e->o.max_batch));
        e->comm_s += tw_now_s() - t0;
    } else {
        for (int b = 0; b < n; b++) idx[b] += s->vocab0;
    }
    for (int b = 0; b < n; b++) next[b] = idx[b];
    return TW_OK;
}
