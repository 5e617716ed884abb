/* Models: Hugging Face config.json files of the architectures tokwatt models, and the
 * deterministic synthetic weights that fill them.
 *
 * Modelled architectures (the table in harness/model.c): LlamaForCausalLM (llama),
 * MistralForCausalLM (mistral: sliding-window attention), Qwen2ForCausalLM (qwen2: q/k/v biases,
 * sliding window on layers >= max_window_layers when use_sliding_window), Phi3ForCausalLM (phi3:
 * fused qkv_proj and gate_up_proj in the checkpoint, sliding window), Qwen3ForCausalLM (qwen3:
 * per-head q/k RMSNorm), Qwen3MoeForCausalLM (qwen3_moe: q/k norms and softmax top-k experts),
 * MixtralForCausalLM (mixtral: softmax top-k experts, renormalised), DeepseekV3ForCausalLM
 * (deepseek_v3: multi-head latent attention, sigmoid group-limited routing with the score
 * correction bias, shared experts, dense first layers, yarn RoPE) and DeepseekV2ForCausalLM
 * (deepseek_v2: the same attention, softmax greedy or group-limited routing). Any other
 * architecture, and any field a modelled one sets that would change the computation in a way
 * tokwatt does not model (soft-capping, another activation, longrope/dynamic rope, o_proj or MLP
 * biases, quantised weights, an unknown field...), is refused with TW_ERR_UNSUPPORTED naming the
 * file, the architecture and the first such field. doc/MOE.md describes the expert and latent
 * attention models.
 *
 * Synthetic weights: every element is a pure function of (seed, tensor kind, layer, global row,
 * global column), so any backend, rank count or machine gets the same values, and a tensor-
 * parallel shard is exactly a slice of the TP=1 tensor. The generator is counter-based:
 *   u = splitmix64(splitmix64(seed ^ (kind << 56) ^ (layer << 40)) + row * cols + col)
 *   value = scale(kind) * (2 * (u >> 40) / 2^24 - 1)            (uniform in [-scale, scale))
 * kind is the tw_weight_kind number below. New kinds are appended so that no existing weight
 * changes: the q/k/v biases are kinds 12-14; 15 and up are the Qwen3 q/k norms, the experts,
 * the router and the latent-attention tensors. The experts of a layer are one tensor of stacked
 * rows (expert e's gate rows are rows [e * F, (e + 1) * F) of kind 19, its down rows [e * H,
 * (e + 1) * H) of kind 21), so an expert-parallel shard (a range of experts) is a row slice and
 * a tensor-parallel shard of every expert a column (down: row) slice, as for the dense MLP.
 * Scales: linear layers (experts, router and latent projections included) variance 1/in (each
 * block's output is O(1); router logits have O(1) spread, so a synthetic router routes close to
 * uniformly over many tokens), norms 1 +- 0.1, embedding std 0.02 as in trained Llama
 * checkpoints, q/k/v biases uniform in [-1, 1) (as large as the projection's own output, so that
 * a missing or misplaced bias shows), the score correction bias uniform in [-0.05, 0.05) (the
 * size of the sigmoid scores' differences, so it changes some choices). The residual stream then
 * grows like sqrt(2 * layer), as in real pre-norm models, and stays finite through 126 layers;
 * the small embedding keeps a tied LM head from echoing the input token. */
#ifndef TW_MODEL_H
#define TW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tw_numeric.h"
#include "tw_status.h"

typedef struct {
    char name[128];        /* file stem or "custom" */
    char origin[512];      /* path it was read from */
    char arch[64];         /* model_type: "llama", "mistral", "qwen2", "phi3", "qwen3", ... */
    char architecture[64]; /* the Hugging Face class, e.g. "Qwen2ForCausalLM" */
    int hidden;            /* hidden_size */
    int intermediate;      /* intermediate_size */
    int n_layers;          /* num_hidden_layers */
    int n_heads;           /* num_attention_heads */
    int n_kv_heads;        /* num_key_value_heads (defaults to n_heads) */
    int head_dim;          /* head_dim, or hidden / n_heads */
    int vocab;             /* vocab_size */
    int max_pos;           /* max_position_embeddings */
    float rms_eps;         /* rms_norm_eps */
    int tie_embeddings;
    int qkv_bias;       /* q_proj, k_proj, v_proj have biases (qwen2): modelled */
    int sliding_window; /* 0: full causal attention; W > 0: a query at position p attends the W
                         * positions p-W+1 .. p, on layers window_layer0 .. n_layers-1 */
    int window_layer0;  /* first layer with the window (qwen2: max_window_layers; else 0) */
    int fused_layout;   /* checkpoint layout with qkv_proj and gate_up_proj (phi3) */
    int qk_norm;        /* per-head RMSNorm of queries and keys before RoPE (qwen3, qwen3_moe) */
    tw_rope_params rope;
    /* mixture of experts (n_experts 0: every MLP is dense) */
    int n_experts;           /* routed experts per MoE layer */
    int n_experts_per_tok;   /* k */
    int moe_intermediate;    /* width of one expert's MLP */
    int n_shared_experts;    /* experts every token goes through (deepseek): one MLP of
                              * n_shared_experts * moe_intermediate */
    int moe_scoring;         /* tw_moe_scoring */
    int norm_topk_prob;      /* the k weights renormalised to sum 1 */
    int n_group, topk_group; /* group-limited routing (1, 1: none) */
    int group_score_top2;  /* a group's score: the sum of its 2 best (deepseek_v3), else the max */
    int router_bias;       /* e_score_correction_bias added to the scores for the choice only */
    float routed_scaling;  /* routed_scaling_factor (1 when absent) */
    int moe_first_layer;   /* first_k_dense_replace: layers below are dense */
    int moe_step;          /* decoder_sparse_step: layer l is MoE when (l + 1) % step == 0 */
    uint64_t mlp_only[16]; /* mlp_only_layers (bit l: dense), layers < 1024 */
    /* multi-head latent attention (mla: deepseek) */
    int mla;
    int q_lora_rank;  /* 0: q_proj from the hidden state directly */
    int kv_lora_rank; /* the latent width (what the KV cache holds, with the rope key) */
    int qk_nope_dim, qk_rope_dim, v_head_dim;
    int rope_interleave; /* RoPE pairs (x[2i], x[2i+1]) instead of (x[i], x[i + D/2]) */
    float latent_eps;    /* eps of q_a_layernorm and kv_a_layernorm: 1e-6, the classes' default
                          * (they are built without rms_norm_eps) */
    float attn_scale;    /* softmax scale: 1/sqrt(query-key head dim), times yarn's mscale^2 for
                          * deepseek; 1/sqrt(head_dim) elsewhere */
    int mtp_layers;      /* num_nextn_predict_layers: not run (speculative decoding), not counted */
    char *json;          /* the config as read (normalised JSON text), malloc'd */
} tw_model_config;

/* Reads configs/models/NAME.json for a bare name, or the file at a path (anything with a '/' or
 * ending in .json). Errors name the file and the field. */
tw_status tw_model_load(const char *name_or_path, tw_model_config *cfg);
tw_status tw_model_parse(const char *text, const char *origin, tw_model_config *cfg);
void tw_model_free(tw_model_config *cfg);

/* The comma-separated list of modelled architectures, for messages. */
const char *tw_model_supported(void);

typedef enum { TW_MOE_SOFTMAX = 0, TW_MOE_SIGMOID = 1 } tw_moe_scoring;

/* Whether layer l's MLP is a mixture of experts (else a dense MLP of intermediate_size). */
int tw_model_layer_is_moe(const tw_model_config *c, int layer);
int tw_model_moe_layers(const tw_model_config *c);

/* Parameter counts (biases included) and per-token work. */
uint64_t tw_model_params(const tw_model_config *c);          /* all weights */
uint64_t tw_model_params_nonembed(const tw_model_config *c); /* excluding the embedding table */
/* Weights that multiply one token: every dense weight, the router, the shared experts and k
 * routed experts per MoE layer (the LM head too; not the embedding table or norms). */
uint64_t tw_model_params_active(const tw_model_config *c);
/* The weights of one routed expert (gate, up, down of moe_intermediate_size); 0 without
 * experts. A decode step reads the experts it reached (tw_metric_decode_bytes_per_step). */
uint64_t tw_model_routed_expert_params(const tw_model_config *c);
/* KV-cache elements one position holds per layer: 2 * n_kv_heads * head_dim, or for latent
 * attention kv_lora_rank + qk_rope_head_dim (the compressed latent and the shared rope key). */
double tw_model_kv_elems_per_position(const tw_model_config *c);
/* The routing skew's logit bias of a layer: expert e's router logit gets -skew * ln(rank_e),
 * rank_e in 1..E a seeded permutation per layer (a Zipf-like preference; 0: none). Written to
 * bias[n_experts]. */
void tw_moe_skew_bias(const tw_model_config *c, uint64_t seed, double skew, int layer, float *bias);
/* The sliding window of layer l (0: none). */
int tw_model_layer_window(const tw_model_config *c, int layer);
/* Key positions one token at context length ctx attends, summed over layers: n_layers * ctx
 * without a window, min(ctx, W) on windowed layers (what attention reads of the KV cache). */
double tw_model_attended_positions(const tw_model_config *c, int ctx);
/* FLOPs of one token's forward pass at context length ctx: 2 per multiply-accumulate over the
 * active weights (tw_model_params_active) plus attention over the attended positions (latent
 * attention counted in its expanded form: 2 * heads * (qk head dim + v head dim) per position). */
double tw_model_flops_per_token(const tw_model_config *c, int ctx);

typedef enum {
    TW_W_EMBED = 0,   /* [vocab, hidden]   model.embed_tokens.weight */
    TW_W_ATTN_NORM,   /* [hidden]          model.layers.L.input_layernorm.weight */
    TW_W_Q,           /* [H*D, hidden]     ...self_attn.q_proj.weight */
    TW_W_K,           /* [G*D, hidden]     ...self_attn.k_proj.weight */
    TW_W_V,           /* [G*D, hidden]     ...self_attn.v_proj.weight */
    TW_W_O,           /* [hidden, H*D]     ...self_attn.o_proj.weight */
    TW_W_FFN_NORM,    /* [hidden]          ...post_attention_layernorm.weight */
    TW_W_GATE,        /* [F, hidden]       ...mlp.gate_proj.weight */
    TW_W_UP,          /* [F, hidden]       ...mlp.up_proj.weight */
    TW_W_DOWN,        /* [hidden, F]       ...mlp.down_proj.weight */
    TW_W_FINAL_NORM,  /* [hidden]          model.norm.weight */
    TW_W_LM_HEAD,     /* [vocab, hidden]   lm_head.weight (absent when tied) */
    TW_W_Q_BIAS,      /* [H*D]             ...self_attn.q_proj.bias (qkv_bias only) */
    TW_W_K_BIAS,      /* [G*D]             ...self_attn.k_proj.bias */
    TW_W_V_BIAS,      /* [G*D]             ...self_attn.v_proj.bias */
    TW_W_Q_NORM,      /* [D]               ...self_attn.q_norm.weight (qk_norm) */
    TW_W_K_NORM,      /* [D]               ...self_attn.k_norm.weight */
    TW_W_ROUTER,      /* [E, hidden]       ...mlp.gate.weight (mixtral: block_sparse_moe.gate) */
    TW_W_ROUTER_BIAS, /* [E]              ...mlp.gate.e_score_correction_bias */
    TW_W_EXPERT_GATE, /* [E*Fm, hidden]   ...mlp.experts.e.gate_proj.weight (mixtral: w1) */
    TW_W_EXPERT_UP,   /* [E*Fm, hidden]   ...mlp.experts.e.up_proj.weight (mixtral: w3) */
    TW_W_EXPERT_DOWN, /* [E*hidden, Fm]   ...mlp.experts.e.down_proj.weight (mixtral: w2) */
    TW_W_SHARED_GATE, /* [S*Fm, hidden]   ...mlp.shared_experts.gate_proj.weight */
    TW_W_SHARED_UP,   /* [S*Fm, hidden]   ...mlp.shared_experts.up_proj.weight */
    TW_W_SHARED_DOWN, /* [hidden, S*Fm]   ...mlp.shared_experts.down_proj.weight */
    TW_W_Q_A,         /* [q_lora, hidden] ...self_attn.q_a_proj.weight */
    TW_W_Q_A_NORM,    /* [q_lora]         ...self_attn.q_a_layernorm.weight */
    TW_W_Q_B,         /* [H*(nope+rope), q_lora] ...self_attn.q_b_proj.weight */
    TW_W_KV_A,        /* [kv_lora+rope, hidden]  ...self_attn.kv_a_proj_with_mqa.weight */
    TW_W_KV_A_NORM,   /* [kv_lora]        ...self_attn.kv_a_layernorm.weight */
    TW_W_KV_B,        /* [H*(nope+v), kv_lora]   ...self_attn.kv_b_proj.weight */
    TW_W_KINDS
} tw_weight_kind;

/* Shape [rows, cols] of a tensor (the experts: all of a layer's, stacked); 1-D tensors (norm
 * weights, biases) are rows = 1, cols = n. Under latent attention TW_W_Q is [H*(nope+rope),
 * hidden] and TW_W_O [hidden, H*v]. */
void tw_weight_shape(const tw_model_config *c, tw_weight_kind k, int *rows, int *cols);
int tw_weight_per_layer(tw_weight_kind k);
int tw_weight_is_1d(tw_weight_kind k);
int tw_weight_is_norm(tw_weight_kind k);
/* Whether the model has this tensor in some layer (the LM head when untied, the biases when
 * qkv_bias, the experts when it has MoE layers...). */
int tw_weight_present(const tw_model_config *c, tw_weight_kind k);
/* Whether layer `layer` has it (a dense layer has gate/up/down, a MoE layer the router and the
 * experts); global tensors: tw_weight_present. */
int tw_weight_in_layer(const tw_model_config *c, tw_weight_kind k, int layer);
/* Rows of one expert of an expert kind (0 for other kinds): Fm, or hidden for the down rows. */
int tw_weight_expert_rows(const tw_model_config *c, tw_weight_kind k);
float tw_weight_scale(const tw_model_config *c, tw_weight_kind k);
/* The Hugging Face tensor name in the Llama-family layout (layer ignored for global tensors;
 * expert kinds name expert 0). */
void tw_weight_hf_name(tw_weight_kind k, int layer, char *buf, size_t n);
/* The tensor name the checkpoint of c's architecture uses (Mixtral's block_sparse_moe and w1/w2/
 * w3), for expert `expert` of an expert kind. */
void tw_weight_hf_name_of(const tw_model_config *c, tw_weight_kind k, int layer, int expert,
                          char *buf, size_t n);
float tw_weight_value(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer,
                      int64_t row, int64_t col);
/* out[r * ncols + c] = W[row0 + r][col0 + c] in fp32; caller owns out. */
void tw_weight_fill(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer, int row0,
                    int nrows, int col0, int ncols, float *out);
/* The same slice rounded to bf16. */
void tw_weight_fill_bf16(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer,
                         int row0, int nrows, int col0, int ncols, tw_bf16 *out);

/* Synthetic prompt token ids: tokens[b * len + i], uniform in [0, vocab), from the seed. */
void tw_prompt_tokens(uint64_t seed, int batch, int len, int vocab, int *tokens);

#endif
