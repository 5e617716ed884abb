/* An independent, naive float64 reference forward pass of the modelled architectures (Llama,
 * Mistral, Qwen2, Phi-3: they differ only in Qwen2's q/k/v biases and in the sliding window;
 * Qwen3 adds per-head q/k norms; Qwen3-MoE, Mixtral and DeepSeek mixtures of experts; DeepSeek's
 * latent attention), for the tests.
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
 * Qwen3: q and k RMS-normalised per head (q_norm, k_norm) after the projections, before RoPE.
 * Mixture-of-experts layers (Hugging Face's Qwen3MoeSparseMoeBlock, MixtralSparseMoeBlock,
 * DeepseekV3MoE / DeepseekV2Moe): router logits h Wgate^T, softmax or sigmoid scores, top-k
 * (DeepSeek-V3: ranked with the score correction bias, within the topk_group best groups by
 * the sum of their two best; V2: by their best), weights renormalised when norm_topk_prob, times
 * routed_scaling_factor; the MLP output is the weighted sum of the chosen experts' SwiGLU MLPs
 * plus the shared experts'.
 * Latent attention (DeepseekV3Attention, in its expanded form, not the engine's absorbed one):
 * q = q_b(RMSNorm(q_a(h))) (or q_proj(h)), split per head into nope and rope parts;
 * [c | k_r] = kv_a(h), c RMS-normalised (eps 1e-6), k_r shared by the heads; RoPE (interleaved
 * pairs 2i, 2i+1 for DeepSeek, yarn frequencies) on q's rope part and k_r; per head
 * [k_nope | v] = kv_b(c), key [k_nope | k_r]; softmax(q k^T * scale) v with the yarn-corrected
 * scale; o_proj of the heads' outputs.
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

/* Rounds what the KV cache holds (keys and values after RoPE, or the normalised latent and the
 * rotated rope key) to bf16 (round to nearest even) before attention reads it, as a bf16 cache
 * stores it; the rest stays float64. */
void tw_ref_set_kv_bf16(tw_ref_model *m, int on);
/* The routing skew the engine applies (tw_moe_skew_bias of the model and seed; 0: none). */
void tw_ref_set_routing_skew(tw_ref_model *m, double skew);

/* Full causal recompute over the n tokens of one sequence (positions 0..n-1):
 * logits[t * vocab + v] for every position t. */
void tw_ref_forward(tw_ref_model *m, const int *tokens, int n, double *logits);
/* The same, and margin[t]: the smallest routing margin of tokens 0..t over every MoE layer
 * (the gap between a token's k-th chosen expert and the best one left out, in choice-score
 * units, and between its last kept group and the next; INFINITY without experts). Position t's
 * logits depend on the routing of every token up to t: a small margin means a rounding
 * difference can choose another expert. */
void tw_ref_forward_margin(tw_ref_model *m, const int *tokens, int n, double *logits,
                           double *margin);
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
/* RoPE on interleaved pairs (x[2i], x[2i+1]) (DeepSeek) */
void tw_ref_rope_interleaved(double *x, int head_dim, int pos, const tw_rope_params *rp);
/* One token's routing by c's rule: logits [n_experts] (+ logit_bias, may be NULL), the score
 * correction bias (NULL: none); idx[k] and weight[k] in the order chosen; *margin (may be NULL)
 * the routing's margin as in tw_ref_forward_margin. */
void tw_ref_route(const tw_model_config *c, const double *logits, const double *logit_bias,
                  const double *choice_bias, int *idx, double *weight, double *margin);

#endif
