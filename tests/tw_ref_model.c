/* Naive float64 forward pass of the modelled architectures for the tests; see tw_ref_model.h.
 * Deliberately plain loops: clarity over speed, nothing shared with the engine or kernels. */
#include "tw_ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_test_util.h"

struct tw_ref_model {
    tw_model_config c;
    double *w[TW_W_KINDS]; /* per-layer kinds: [n_layers][rows * cols] back to back */
    size_t size[TW_W_KINDS];
    double skew; /* routing skew (tw_moe_skew_bias) */
    uint64_t seed;
    int kv_bf16; /* keys and values (or the latent and rope key) rounded to bf16 as stored */
};

static void tw_ref_round_bf16(tw_ref_model *m, double *x, int n) {
    if (m->kv_bf16)
        for (int i = 0; i < n; i++) x[i] = (double)tw_test_from_bf16(tw_test_to_bf16((float)x[i]));
}

void tw_ref_set_kv_bf16(tw_ref_model *m, int on) {
    m->kv_bf16 = on;
}

void tw_ref_rmsnorm(const double *x, const double *w, int n, double eps, double *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* YaRN as transformers' _compute_yarn_parameters, in double */
static double tw_ref_yarn_inv_freq(const tw_rope_params *rp, int dim, int i) {
    double base = rp->theta, orig = rp->original_max_pos;
    double pos_freq = pow(base, 2.0 * i / dim);
    double extrap = 1.0 / pos_freq, interp = 1.0 / (rp->factor * pos_freq);
    double lo = dim * log(orig / (rp->beta_fast * 2 * M_PI)) / (2 * log(base));
    double hi = dim * log(orig / (rp->beta_slow * 2 * M_PI)) / (2 * log(base));
    if (rp->yarn_truncate) lo = floor(lo), hi = ceil(hi);
    lo = fmax(lo, 0), hi = fmin(hi, dim - 1);
    if (lo == hi) hi += 0.001;
    double ramp = fmin(fmax((i - lo) / (hi - lo), 0.0), 1.0);
    double extrap_share = 1 - ramp;
    return interp * (1 - extrap_share) + extrap * extrap_share;
}

double tw_ref_rope_inv_freq(const tw_rope_params *rp, int head_dim, int i) {
    double inv = 1.0 / pow((double)rp->theta, 2.0 * i / head_dim);
    if (rp->type == TW_ROPE_LINEAR) return inv / rp->factor;
    if (rp->type == TW_ROPE_YARN) return tw_ref_yarn_inv_freq(rp, head_dim, i);
    if (rp->type != TW_ROPE_LLAMA3) return inv;
    double orig = rp->original_max_pos, lo = rp->low_freq_factor, hi = rp->high_freq_factor;
    double wavelen = 2.0 * M_PI / inv;
    if (wavelen < orig / hi) return inv;              /* high frequency: kept */
    if (wavelen > orig / lo) return inv / rp->factor; /* low frequency: slowed */
    double smooth = (orig / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * inv / rp->factor + smooth * inv;
}

void tw_ref_rope(double *x, int head_dim, int pos, const tw_rope_params *rp) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double a = pos * tw_ref_rope_inv_freq(rp, head_dim, i);
        double c = cos(a), s = sin(a), x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
    }
}

void tw_ref_rope_interleaved(double *x, int head_dim, int pos, const tw_rope_params *rp) {
    for (int i = 0; i < head_dim / 2; i++) {
        double a = pos * tw_ref_rope_inv_freq(rp, head_dim, i);
        double c = cos(a), s = sin(a), x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x1 * c + x0 * s;
    }
}

double tw_ref_silu(double x) {
    return x / (1.0 + exp(-x));
}

tw_ref_model *tw_ref_create(const tw_model_config *c, uint64_t seed, int bf16_weights) {
    tw_ref_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->c = *c;
    m->c.json = NULL;
    m->seed = seed;
    for (int k = 0; k < TW_W_KINDS; k++) {
        if (!tw_weight_present(c, (tw_weight_kind)k)) continue;
        int rows, cols;
        tw_weight_shape(c, (tw_weight_kind)k, &rows, &cols);
        int nl = tw_weight_per_layer((tw_weight_kind)k) ? c->n_layers : 1;
        size_t per = (size_t)rows * (size_t)cols;
        m->size[k] = per;
        m->w[k] = calloc(per * (size_t)nl, sizeof(double));
        float *tmp = malloc(per * sizeof(float));
        if (!m->w[k] || !tmp) {
            free(tmp);
            tw_ref_destroy(m);
            return NULL;
        }
        for (int l = 0; l < nl; l++) {
            if (nl > 1 && !tw_weight_in_layer(c, (tw_weight_kind)k, l)) continue;
            tw_weight_fill(c, seed, (tw_weight_kind)k, l, 0, rows, 0, cols, tmp);
            double *dst = m->w[k] + (size_t)l * per;
            for (size_t i = 0; i < per; i++)
                dst[i] = bf16_weights ? (double)tw_test_from_bf16(tw_test_to_bf16(tmp[i]))
                                      : (double)tmp[i];
        }
        free(tmp);
    }
    return m;
}

void tw_ref_set_routing_skew(tw_ref_model *m, double skew) {
    m->skew = skew;
}

void tw_ref_destroy(tw_ref_model *m) {
    if (!m) return;
    for (int k = 0; k < TW_W_KINDS; k++) free(m->w[k]);
    free(m);
}

const double *tw_ref_weight(const tw_ref_model *m, tw_weight_kind k, int layer) {
    if (k == TW_W_LM_HEAD && m->c.tie_embeddings) k = TW_W_EMBED;
    if (!m->w[k]) return NULL; /* a tensor the model does not have */
    if (!tw_weight_per_layer(k)) layer = 0;
    if (!tw_weight_in_layer(&m->c, k, layer)) return NULL;
    return m->w[k] + (size_t)layer * m->size[k];
}

/* y[r] += b[r] when the model has the bias */
static void tw_ref_add_bias(const double *b, int n, double *y) {
    if (b)
        for (int i = 0; i < n; i++) y[i] += b[i];
}

/* y[r] = sum_j W[r][j] x[j] for W [rows, cols] */
static void tw_ref_matvec(const double *W, const double *x, int rows, int cols, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        const double *w = W + (size_t)r * cols;
        for (int j = 0; j < cols; j++) s += w[j] * x[j];
        y[r] = s;
    }
}

static double tw_ref_rms(const double *x, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    return sqrt(ss / (double)n);
}

/* the largest v[i] not taken (ties: the lower index) */
static int tw_ref_best(const double *v, const int *taken, int n) {
    int b = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (b < 0 || v[i] > v[b])) b = i;
    return b;
}

void tw_ref_route(const tw_model_config *c, const double *logits, const double *logit_bias,
                  const double *choice_bias, int *idx, double *weight, double *margin) {
    int E = c->n_experts, K = c->n_experts_per_tok, G = c->n_group, per = E / G;
    double *s = malloc(sizeof(double) * (size_t)E), *ch = malloc(sizeof(double) * (size_t)E);
    double *gs = malloc(sizeof(double) * (size_t)G);
    int *taken = calloc((size_t)E, sizeof(int)), *gtaken = calloc((size_t)G, sizeof(int));
    if (!s || !ch || !gs || !taken || !gtaken) abort();
    for (int e = 0; e < E; e++) s[e] = logits[e] + (logit_bias ? logit_bias[e] : 0);
    if (c->moe_scoring == TW_MOE_SOFTMAX) {
        double mx = s[0], sum = 0;
        for (int e = 1; e < E; e++) mx = fmax(mx, s[e]);
        for (int e = 0; e < E; e++) sum += (s[e] = exp(s[e] - mx));
        for (int e = 0; e < E; e++) s[e] /= sum;
    } else {
        for (int e = 0; e < E; e++) s[e] = 1 / (1 + exp(-s[e]));
    }
    for (int e = 0; e < E; e++) ch[e] = s[e] + (choice_bias ? choice_bias[e] : 0);
    if (G > 1) {
        for (int g = 0; g < G; g++) {
            double b1 = -INFINITY, b2 = -INFINITY; /* the two best of the group */
            for (int i = 0; i < per; i++) {
                double v = ch[g * per + i];
                if (v > b1)
                    b2 = b1, b1 = v;
                else if (v > b2)
                    b2 = v;
            }
            gs[g] = c->group_score_top2 ? b1 + b2 : b1;
        }
        double glast = INFINITY;
        for (int i = 0; i < c->topk_group; i++) {
            int g = tw_ref_best(gs, gtaken, G);
            gtaken[g] = 1;
            glast = gs[g];
        }
        int gnext = tw_ref_best(gs, gtaken, G);
        if (margin) *margin = gnext < 0 ? INFINITY : glast - gs[gnext];
        for (int e = 0; e < E; e++)
            if (!gtaken[e / per]) taken[e] = 1;
    } else if (margin) {
        *margin = INFINITY;
    }
    double sum = 0;
    for (int j = 0; j < K; j++) {
        int e = tw_ref_best(ch, taken, E);
        taken[e] = 1;
        idx[j] = e;
        weight[j] = s[e];
        sum += s[e];
    }
    if (margin) { /* the k-th choice against the best one left out */
        int next = tw_ref_best(ch, taken, E);
        double gap = next < 0 ? INFINITY : ch[idx[K - 1]] - ch[next];
        *margin = fmin(*margin, gap);
    }
    if (c->moe_scoring == TW_MOE_SIGMOID) sum += 1e-20;
    for (int j = 0; j < K; j++)
        weight[j] = (c->norm_topk_prob ? weight[j] / sum : weight[j]) * c->routed_scaling;
    free(s), free(ch), free(gs), free(taken), free(gtaken);
}

/* out += silu(x G^T) * (x U^T) D^T for G, U [f, hidden] and D [hidden, f], times w */
static void tw_ref_mlp_add(const double *G, const double *U, const double *Dn, int hidden, int f,
                           const double *x, double w, double *out) {
    double *g = malloc(sizeof(double) * (size_t)f), *u = malloc(sizeof(double) * (size_t)f);
    double *o = malloc(sizeof(double) * (size_t)hidden);
    if (!g || !u || !o) abort();
    tw_ref_matvec(G, x, f, hidden, g);
    tw_ref_matvec(U, x, f, hidden, u);
    for (int i = 0; i < f; i++) g[i] = tw_ref_silu(g[i]) * u[i];
    tw_ref_matvec(Dn, g, hidden, f, o);
    for (int i = 0; i < hidden; i++) out[i] += w * o[i];
    free(g), free(u), free(o);
}

/* The MLP block of layer l for one token's normed state h: dense, or the experts; *margin is
 * lowered to the routing's margin. */
static void tw_ref_mlp(tw_ref_model *m, int l, const double *h, double *out, double *margin) {
    const tw_model_config *c = &m->c;
    int H = c->hidden;
    for (int i = 0; i < H; i++) out[i] = 0;
    if (!tw_model_layer_is_moe(c, l)) {
        tw_ref_mlp_add(tw_ref_weight(m, TW_W_GATE, l), tw_ref_weight(m, TW_W_UP, l),
                       tw_ref_weight(m, TW_W_DOWN, l), H, c->intermediate, h, 1.0, out);
        return;
    }
    int E = c->n_experts, K = c->n_experts_per_tok, Fm = c->moe_intermediate;
    double *lg = malloc(sizeof(double) * (size_t)E), *wt = malloc(sizeof(double) * (size_t)K);
    double *lb = malloc(sizeof(double) * (size_t)E);
    float *lbf = malloc(sizeof(float) * (size_t)E);
    int *ix = malloc(sizeof(int) * (size_t)K);
    if (!lg || !wt || !lb || !lbf || !ix) abort();
    tw_ref_matvec(tw_ref_weight(m, TW_W_ROUTER, l), h, E, H, lg);
    if (m->skew > 0) {
        tw_moe_skew_bias(c, m->seed, m->skew, l, lbf);
        for (int e = 0; e < E; e++) lb[e] = lbf[e];
    }
    double mg = INFINITY;
    tw_ref_route(c, lg, m->skew > 0 ? lb : NULL, tw_ref_weight(m, TW_W_ROUTER_BIAS, l), ix, wt,
                 &mg);
    if (margin) *margin = fmin(*margin, mg);
    const double *G = tw_ref_weight(m, TW_W_EXPERT_GATE, l),
                 *U = tw_ref_weight(m, TW_W_EXPERT_UP, l);
    const double *Dn = tw_ref_weight(m, TW_W_EXPERT_DOWN, l);
    for (int j = 0; j < K; j++) {
        size_t e = (size_t)ix[j];
        tw_ref_mlp_add(G + e * Fm * H, U + e * Fm * H, Dn + e * H * Fm, H, Fm, h, wt[j], out);
    }
    if (c->n_shared_experts > 0)
        tw_ref_mlp_add(tw_ref_weight(m, TW_W_SHARED_GATE, l), tw_ref_weight(m, TW_W_SHARED_UP, l),
                       tw_ref_weight(m, TW_W_SHARED_DOWN, l), H, c->n_shared_experts * Fm, h, 1.0,
                       out);
    free(lg), free(wt), free(lb), free(lbf), free(ix);
}

/* Latent attention of layer l over the n tokens' normed states h [n, hidden], expanded as
 * transformers' DeepseekV3Attention computes it: per head keys [k_nope | k_rot] and values from
 * kv_b_proj of the normalised latent; adds o_proj of the output to x. */
static void tw_ref_mla(tw_ref_model *m, int l, const double *h, int n, double *x) {
    const tw_model_config *c = &m->c;
    int H = c->hidden, NH = c->n_heads, DN = c->qk_nope_dim, DR = c->qk_rope_dim;
    int DV = c->v_head_dim, KL = c->kv_lora_rank, ql = c->q_lora_rank, QK = DN + DR;
    size_t nn = (size_t)n;
    double *q = malloc(sizeof(double) * nn * NH * QK), *k = malloc(sizeof(double) * nn * NH * QK);
    double *v = malloc(sizeof(double) * nn * NH * DV), *att = malloc(sizeof(double) * nn * NH * DV);
    double *qa = malloc(sizeof(double) * (size_t)(ql > 0 ? ql : 1));
    double *ckv = malloc(sizeof(double) * (size_t)(KL + DR));
    double *kvb = malloc(sizeof(double) * (size_t)NH * (DN + DV));
    double *p = malloc(sizeof(double) * nn), *o = malloc(sizeof(double) * (size_t)H);
    if (!q || !k || !v || !att || !qa || !ckv || !kvb || !p || !o) abort();
    for (int t = 0; t < n; t++) {
        const double *ht = h + (size_t)t * H;
        double *qt = q + (size_t)t * NH * QK;
        if (ql > 0) {
            tw_ref_matvec(tw_ref_weight(m, TW_W_Q_A, l), ht, ql, H, qa);
            tw_ref_rmsnorm(qa, tw_ref_weight(m, TW_W_Q_A_NORM, l), ql, c->latent_eps, qa);
            tw_ref_matvec(tw_ref_weight(m, TW_W_Q_B, l), qa, NH * QK, ql, qt);
        } else {
            tw_ref_matvec(tw_ref_weight(m, TW_W_Q, l), ht, NH * QK, H, qt);
        }
        tw_ref_matvec(tw_ref_weight(m, TW_W_KV_A, l), ht, KL + DR, H, ckv);
        tw_ref_rmsnorm(ckv, tw_ref_weight(m, TW_W_KV_A_NORM, l), KL, c->latent_eps, ckv);
        double *kr = ckv + KL; /* the shared rope key */
        if (c->rope_interleave)
            tw_ref_rope_interleaved(kr, DR, t, &c->rope);
        else
            tw_ref_rope(kr, DR, t, &c->rope);
        tw_ref_round_bf16(m, ckv, KL + DR);
        tw_ref_matvec(tw_ref_weight(m, TW_W_KV_B, l), ckv, NH * (DN + DV), KL, kvb);
        for (int hd = 0; hd < NH; hd++) {
            double *qr = qt + (size_t)hd * QK + DN;
            if (c->rope_interleave)
                tw_ref_rope_interleaved(qr, DR, t, &c->rope);
            else
                tw_ref_rope(qr, DR, t, &c->rope);
            double *kt = k + ((size_t)t * NH + hd) * QK;
            memcpy(kt, kvb + (size_t)hd * (DN + DV), sizeof(double) * DN);
            memcpy(kt + DN, kr, sizeof(double) * DR);
            memcpy(v + ((size_t)t * NH + hd) * DV, kvb + (size_t)hd * (DN + DV) + DN,
                   sizeof(double) * DV);
        }
    }
    double scale = c->attn_scale; /* 1/sqrt(QK) times yarn's mscale^2, as transformers */
    for (int t = 0; t < n; t++)
        for (int hd = 0; hd < NH; hd++) {
            const double *qt = q + ((size_t)t * NH + hd) * QK;
            double mx = -INFINITY, den = 0;
            for (int s = 0; s <= t; s++) {
                const double *ks = k + ((size_t)s * NH + hd) * QK;
                double dot = 0;
                for (int d = 0; d < QK; d++) dot += qt[d] * ks[d];
                p[s] = dot * scale;
                mx = fmax(mx, p[s]);
            }
            for (int s = 0; s <= t; s++) den += (p[s] = exp(p[s] - mx));
            double *at = att + ((size_t)t * NH + hd) * DV;
            for (int d = 0; d < DV; d++) at[d] = 0;
            for (int s = 0; s <= t; s++)
                for (int d = 0; d < DV; d++)
                    at[d] += p[s] / den * v[((size_t)s * NH + hd) * DV + d];
        }
    for (int t = 0; t < n; t++) {
        tw_ref_matvec(tw_ref_weight(m, TW_W_O, l), att + (size_t)t * NH * DV, H, NH * DV, o);
        for (int i = 0; i < H; i++) x[(size_t)t * H + i] += o[i];
    }
    free(q), free(k), free(v), free(att), free(qa), free(ckv), free(kvb), free(p), free(o);
}

/* The forward pass; logits, rms and margin may each be NULL. */
static void tw_ref_run(tw_ref_model *m, const int *tokens, int n, double *logits, double *rms,
                       double *margin) {
    const tw_model_config *c = &m->c;
    int H = c->hidden, NH = c->n_heads, G = c->n_kv_heads, D = c->head_dim;
    int QD = NH * D, KD = G * D, rep = NH / G;
    double eps = c->rms_eps;
    double *x = malloc(sizeof(double) * (size_t)n * H);    /* [n, hidden] residual stream */
    double *h = malloc(sizeof(double) * (size_t)n * H);    /* [n, hidden] normed */
    double *q = malloc(sizeof(double) * (size_t)n * QD);   /* [n, heads * D] */
    double *k = malloc(sizeof(double) * (size_t)n * KD);   /* [n, kv_heads * D] */
    double *v = malloc(sizeof(double) * (size_t)n * KD);   /* [n, kv_heads * D] */
    double *att = malloc(sizeof(double) * (size_t)n * QD); /* [n, heads * D] */
    double *p = malloc(sizeof(double) * (size_t)n);        /* [n] scores of one query */
    double *o = malloc(sizeof(double) * (size_t)H);        /* [hidden] */
    if (!x || !h || !q || !k || !v || !att || !p || !o) abort();

    const double *emb = tw_ref_weight(m, TW_W_EMBED, 0);
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * H, emb + (size_t)tokens[t] * H, sizeof(double) * H);
    if (rms) rms[0] = tw_ref_rms(x, (size_t)n * H);
    if (margin)
        for (int t = 0; t < n; t++) margin[t] = INFINITY;

    for (int l = 0; l < c->n_layers; l++) {
        /* attention block */
        for (int t = 0; t < n; t++)
            tw_ref_rmsnorm(x + (size_t)t * H, tw_ref_weight(m, TW_W_ATTN_NORM, l), H, eps,
                           h + (size_t)t * H);
        if (c->mla) {
            tw_ref_mla(m, l, h, n, x);
        } else {
            for (int t = 0; t < n; t++) {
                double *ht = h + (size_t)t * H;
                tw_ref_matvec(tw_ref_weight(m, TW_W_Q, l), ht, QD, H, q + (size_t)t * QD);
                tw_ref_matvec(tw_ref_weight(m, TW_W_K, l), ht, KD, H, k + (size_t)t * KD);
                tw_ref_matvec(tw_ref_weight(m, TW_W_V, l), ht, KD, H, v + (size_t)t * KD);
                tw_ref_add_bias(tw_ref_weight(m, TW_W_Q_BIAS, l), QD, q + (size_t)t * QD);
                tw_ref_add_bias(tw_ref_weight(m, TW_W_K_BIAS, l), KD, k + (size_t)t * KD);
                tw_ref_add_bias(tw_ref_weight(m, TW_W_V_BIAS, l), KD, v + (size_t)t * KD);
                if (c->qk_norm) { /* Qwen3: RMSNorm over each head, before RoPE */
                    for (int hd = 0; hd < NH; hd++)
                        tw_ref_rmsnorm(q + (size_t)t * QD + hd * D,
                                       tw_ref_weight(m, TW_W_Q_NORM, l), D, eps,
                                       q + (size_t)t * QD + hd * D);
                    for (int hd = 0; hd < G; hd++)
                        tw_ref_rmsnorm(k + (size_t)t * KD + hd * D,
                                       tw_ref_weight(m, TW_W_K_NORM, l), D, eps,
                                       k + (size_t)t * KD + hd * D);
                }
                for (int hd = 0; hd < NH; hd++)
                    tw_ref_rope(q + (size_t)t * QD + hd * D, D, t, &c->rope);
                for (int hd = 0; hd < G; hd++)
                    tw_ref_rope(k + (size_t)t * KD + hd * D, D, t, &c->rope);
                tw_ref_round_bf16(m, k + (size_t)t * KD, KD);
                tw_ref_round_bf16(m, v + (size_t)t * KD, KD);
            }
            double scale = 1.0 / sqrt((double)D);
            /* sliding window W on layers >= window_layer0: query t sees keys t-W+1 .. t */
            int W = c->sliding_window > 0 && l >= c->window_layer0 ? c->sliding_window : 0;
            for (int t = 0; t < n; t++)
                for (int hd = 0; hd < NH; hd++) {
                    const double *qt = q + (size_t)t * QD + hd * D;
                    int kvh = hd / rep;
                    int s0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0;
                    double mx = -INFINITY, den = 0;
                    for (int s = s0; s <= t; s++) { /* causal: keys s0..t only */
                        const double *ks = k + (size_t)s * KD + kvh * D;
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot += qt[d] * ks[d];
                        p[s] = dot * scale;
                        if (p[s] > mx) mx = p[s];
                    }
                    for (int s = s0; s <= t; s++) den += (p[s] = exp(p[s] - mx));
                    double *at = att + (size_t)t * QD + hd * D;
                    for (int d = 0; d < D; d++) at[d] = 0;
                    for (int s = s0; s <= t; s++) {
                        const double *vs = v + (size_t)s * KD + kvh * D;
                        for (int d = 0; d < D; d++) at[d] += p[s] / den * vs[d];
                    }
                }
            for (int t = 0; t < n; t++) {
                tw_ref_matvec(tw_ref_weight(m, TW_W_O, l), att + (size_t)t * QD, H, QD, o);
                for (int i = 0; i < H; i++) x[(size_t)t * H + i] += o[i];
            }
        }
        /* MLP block: dense, or the experts (with the shared ones) */
        for (int t = 0; t < n; t++) {
            double *ht = h + (size_t)t * H;
            tw_ref_rmsnorm(x + (size_t)t * H, tw_ref_weight(m, TW_W_FFN_NORM, l), H, eps, ht);
            tw_ref_mlp(m, l, ht, o, margin ? &margin[t] : NULL);
            for (int i = 0; i < H; i++) x[(size_t)t * H + i] += o[i];
        }
        if (rms) rms[l + 1] = tw_ref_rms(x, (size_t)n * H);
    }
    if (logits)
        for (int t = 0; t < n; t++) {
            tw_ref_rmsnorm(x + (size_t)t * H, tw_ref_weight(m, TW_W_FINAL_NORM, 0), H, eps, h);
            tw_ref_matvec(tw_ref_weight(m, TW_W_LM_HEAD, 0), h, c->vocab, H,
                          logits + (size_t)t * c->vocab);
        }
    free(x);
    free(h);
    free(q);
    free(k);
    free(v);
    free(att);
    free(p);
    free(o);
}

void tw_ref_forward(tw_ref_model *m, const int *tokens, int n, double *logits) {
    tw_ref_run(m, tokens, n, logits, NULL, NULL);
}

void tw_ref_forward_margin(tw_ref_model *m, const int *tokens, int n, double *logits,
                           double *margin) {
    tw_ref_run(m, tokens, n, logits, NULL, margin);
    for (int t = 1; t < n; t++) margin[t] = fmin(margin[t], margin[t - 1]);
}

void tw_ref_hidden_norms(tw_ref_model *m, const int *tokens, int n, double *rms) {
    tw_ref_run(m, tokens, n, NULL, rms, NULL);
}
