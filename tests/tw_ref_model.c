/* Naive float64 Llama / Mistral / Qwen2 / Phi-3 forward pass for the tests; see tw_ref_model.h.
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
};

void tw_ref_rmsnorm(const double *x, const double *w, int n, double eps, double *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

double tw_ref_rope_inv_freq(const tw_rope_params *rp, int head_dim, int i) {
    double inv = 1.0 / pow((double)rp->theta, 2.0 * i / head_dim);
    if (rp->type == TW_ROPE_LINEAR) return inv / rp->factor;
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

double tw_ref_silu(double x) {
    return x / (1.0 + exp(-x));
}

tw_ref_model *tw_ref_create(const tw_model_config *c, uint64_t seed, int bf16_weights) {
    tw_ref_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->c = *c;
    m->c.json = NULL;
    for (int k = 0; k < TW_W_KINDS; k++) {
        if (k == TW_W_LM_HEAD && c->tie_embeddings) continue;
        if ((k == TW_W_Q_BIAS || k == TW_W_K_BIAS || k == TW_W_V_BIAS) && !c->qkv_bias) continue;
        int rows, cols;
        tw_weight_shape(c, (tw_weight_kind)k, &rows, &cols);
        int nl = tw_weight_per_layer((tw_weight_kind)k) ? c->n_layers : 1;
        size_t per = (size_t)rows * (size_t)cols;
        m->size[k] = per;
        m->w[k] = malloc(per * (size_t)nl * sizeof(double));
        float *tmp = malloc(per * sizeof(float));
        if (!m->w[k] || !tmp) {
            free(tmp);
            tw_ref_destroy(m);
            return NULL;
        }
        for (int l = 0; l < nl; l++) {
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

void tw_ref_destroy(tw_ref_model *m) {
    if (!m) return;
    for (int k = 0; k < TW_W_KINDS; k++) free(m->w[k]);
    free(m);
}

const double *tw_ref_weight(const tw_ref_model *m, tw_weight_kind k, int layer) {
    if (k == TW_W_LM_HEAD && m->c.tie_embeddings) k = TW_W_EMBED;
    if (!m->w[k]) return NULL; /* a bias the model does not have */
    if (!tw_weight_per_layer(k)) layer = 0;
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

/* The forward pass; logits and rms may each be NULL. */
static void tw_ref_run(tw_ref_model *m, const int *tokens, int n, double *logits, double *rms) {
    const tw_model_config *c = &m->c;
    int H = c->hidden, NH = c->n_heads, G = c->n_kv_heads, D = c->head_dim, F = c->intermediate;
    int QD = NH * D, KD = G * D, rep = NH / G;
    double eps = c->rms_eps;
    double *x = malloc(sizeof(double) * (size_t)n * H);    /* [n, hidden] residual stream */
    double *h = malloc(sizeof(double) * (size_t)n * H);    /* [n, hidden] normed */
    double *q = malloc(sizeof(double) * (size_t)n * QD);   /* [n, heads * D] */
    double *k = malloc(sizeof(double) * (size_t)n * KD);   /* [n, kv_heads * D] */
    double *v = malloc(sizeof(double) * (size_t)n * KD);   /* [n, kv_heads * D] */
    double *att = malloc(sizeof(double) * (size_t)n * QD); /* [n, heads * D] */
    double *p = malloc(sizeof(double) * (size_t)n);        /* [n] scores of one query */
    double *g = malloc(sizeof(double) * (size_t)F);        /* [F] */
    double *u = malloc(sizeof(double) * (size_t)F);        /* [F] */
    double *o = malloc(sizeof(double) * (size_t)H);        /* [hidden] */
    if (!x || !h || !q || !k || !v || !att || !p || !g || !u || !o) abort();

    const double *emb = tw_ref_weight(m, TW_W_EMBED, 0);
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * H, emb + (size_t)tokens[t] * H, sizeof(double) * H);
    if (rms) rms[0] = tw_ref_rms(x, (size_t)n * H);

    for (int l = 0; l < c->n_layers; l++) {
        /* attention block */
        for (int t = 0; t < n; t++) {
            double *ht = h + (size_t)t * H;
            tw_ref_rmsnorm(x + (size_t)t * H, tw_ref_weight(m, TW_W_ATTN_NORM, l), H, eps, ht);
            tw_ref_matvec(tw_ref_weight(m, TW_W_Q, l), ht, QD, H, q + (size_t)t * QD);
            tw_ref_matvec(tw_ref_weight(m, TW_W_K, l), ht, KD, H, k + (size_t)t * KD);
            tw_ref_matvec(tw_ref_weight(m, TW_W_V, l), ht, KD, H, v + (size_t)t * KD);
            tw_ref_add_bias(tw_ref_weight(m, TW_W_Q_BIAS, l), QD, q + (size_t)t * QD);
            tw_ref_add_bias(tw_ref_weight(m, TW_W_K_BIAS, l), KD, k + (size_t)t * KD);
            tw_ref_add_bias(tw_ref_weight(m, TW_W_V_BIAS, l), KD, v + (size_t)t * KD);
            for (int hd = 0; hd < NH; hd++)
                tw_ref_rope(q + (size_t)t * QD + hd * D, D, t, &c->rope);
            for (int hd = 0; hd < G; hd++) tw_ref_rope(k + (size_t)t * KD + hd * D, D, t, &c->rope);
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
        /* MLP block */
        for (int t = 0; t < n; t++) {
            double *ht = h + (size_t)t * H;
            tw_ref_rmsnorm(x + (size_t)t * H, tw_ref_weight(m, TW_W_FFN_NORM, l), H, eps, ht);
            tw_ref_matvec(tw_ref_weight(m, TW_W_GATE, l), ht, F, H, g);
            tw_ref_matvec(tw_ref_weight(m, TW_W_UP, l), ht, F, H, u);
            for (int i = 0; i < F; i++) g[i] = tw_ref_silu(g[i]) * u[i];
            tw_ref_matvec(tw_ref_weight(m, TW_W_DOWN, l), g, H, F, o);
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
    free(g);
    free(u);
    free(o);
}

void tw_ref_forward(tw_ref_model *m, const int *tokens, int n, double *logits) {
    tw_ref_run(m, tokens, n, logits, NULL);
}

void tw_ref_hidden_norms(tw_ref_model *m, const int *tokens, int n, double *rms) {
    tw_ref_run(m, tokens, n, NULL, rms);
}
