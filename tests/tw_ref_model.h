/* An independent, naive float64 reference forward pass of the modelled architectures (Llama,
 * Mistral, Qwen2, Phi-3: they differ only in Qwen2's q/k/v biases and in the sliding window),
 * for the tests.
 *
 * Shares nothing with the engine or the kernels (not even kernels/tw_numeric.h): only the model
 * definition itself, i.e. the config (tw_model_config) and the synthetic weights
 * (tw_weight_fill in harness/model.c). Everything is computed in double, straight from the
 * Hugging Face LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM definitions:
 *   x = embed[token]
 *   per layer: h = RMSNorm(x) * w_in;  q, k, v = h Wq^T (+ bq), h Wk^T (+ bk), h Wv^T (+ bv)
 *              q, k rotated by RoPE (rotate-half pairs x[i], x[i + D/2], position = index)
 *              causal grouped-query attention (query head h reads kv head h / (H / G)),
 *              keys t-W+1 .. t only on layers with a sliding window W,
 *              softmax(q k^T / sqrt(D)) v;  x += attn Wo^T
 *              h = RMSNorm(x) * w_post;  x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
 *   logits = RMSNorm(x) * w_final  LM_head^T  (LM head = embedding matrix when tied)
 * Memory: every weight in double, so for tiny and small test models only. */
#ifndef TW_REF_MODEL_H
#define TW_REF_MODEL_H

#include <stdint.h>

#include "tw_model.h"

typedef struct tw_ref_model tw_ref_model;

/* Generates the weights (bf16_weights: each weight rounded to bf16 first, round to nearest
 * even, so the reference sees exactly the engine's bf16 weights). NULL if out of memory. The
 * config is copied (its json pointer is not used). */
tw_ref_model *tw_ref_create(const tw_model_config *c, uint64_t seed, int bf16_weights);
void tw_ref_destroy(tw_ref_model *m);

/* Full causal recompute over the n tokens of one sequence (positions 0..n-1):
 * logits[t * vocab + v] for every position t. */
void tw_ref_forward(tw_ref_model *m, const int *tokens, int n, double *logits);
/* RMS of the hidden state (over all n * hidden values) of the same forward pass:
 * rms[0] after the embedding, rms[l + 1] after layer l; n_layers + 1 values. */
void tw_ref_hidden_norms(tw_ref_model *m, const int *tokens, int n, double *rms);

/* The weight as the reference holds it, row-major [rows, cols] (norms, biases: [n]); the LM head
 * of a tied model is the embedding; NULL for a bias the model does not have. */
const double *tw_ref_weight(const tw_ref_model *m, tw_weight_kind k, int layer);

/* Building blocks, exposed for tests of their own. */
/* out = x / sqrt(mean(x^2) + eps) * w (in place allowed) */
void tw_ref_rmsnorm(const double *x, const double *w, int n, double eps, double *out);
/* inverse frequency of pair i (0 <= i < head_dim / 2), with default / linear / llama3 scaling */
double tw_ref_rope_inv_freq(const tw_rope_params *rp, int head_dim, int i);
/* rotates x[head_dim] in place for position pos (pairs x[i], x[i + head_dim / 2]) */
void tw_ref_rope(double *x, int head_dim, int pos, const tw_rope_params *rp);
double tw_ref_silu(double x);

#endif
