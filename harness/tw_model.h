/* Models: Hugging Face config.json files of the architectures tokwatt models, and the
 * deterministic synthetic weights that fill them.
 *
 * Modelled architectures (the table in harness/model.c): LlamaForCausalLM (llama),
 * MistralForCausalLM (mistral: sliding-window attention), Qwen2ForCausalLM (qwen2: q/k/v biases,
 * sliding window on layers >= max_window_layers when use_sliding_window), Phi3ForCausalLM (phi3:
 * fused qkv_proj and gate_up_proj in the checkpoint, sliding window). Any other architecture, and
 * any field a modelled one sets that would change the computation in a way tokwatt does not
 * model (experts, latent attention, soft-capping, another activation, yarn/longrope/dynamic rope,
 * per-head norms, o_proj or MLP biases, quantised weights, an unknown field...), is refused with
 * TW_ERR_UNSUPPORTED naming the file, the architecture and the first such field.
 *
 * Synthetic weights: every element is a pure function of (seed, tensor kind, layer, global row,
 * global column), so any backend, rank count or machine gets the same values, and a tensor-
 * parallel shard is exactly a slice of the TP=1 tensor. The generator is counter-based:
 *   u = splitmix64(splitmix64(seed ^ (kind << 56) ^ (layer << 40)) + row * cols + col)
 *   value = scale(kind) * (2 * (u >> 40) / 2^24 - 1)            (uniform in [-scale, scale))
 * kind is the tw_weight_kind number below (the q/k/v biases are kinds 12, 13, 14, appended after
 * the Llama tensors so that adding them changed no existing weight). Scales: linear layers
 * variance 1/in (each block's output is O(1)), norms 1 +- 0.1, embedding std 0.02 as in trained
 * Llama checkpoints, q/k/v biases uniform in [-1, 1) (as large as the projection's own output, so
 * that a missing or misplaced bias shows). The residual stream then grows like
 * sqrt(2 * layer), as in real pre-norm models, and stays finite through 126 layers; the small
 * embedding keeps a tied LM head from echoing the input token. */
#ifndef TW_MODEL_H
#define TW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tw_numeric.h"
#include "tw_status.h"

typedef struct {
    char name[128];        /* file stem or "custom" */
    char origin[512];      /* path it was read from */
    char arch[64];         /* model_type: "llama", "mistral", "qwen2", "phi3" */
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
    tw_rope_params rope;
    char *json; /* the config as read (normalised JSON text), malloc'd */
} tw_model_config;

/* Reads configs/models/NAME.json for a bare name, or the file at a path (anything with a '/' or
 * ending in .json). Errors name the file and the field. */
tw_status tw_model_load(const char *name_or_path, tw_model_config *cfg);
tw_status tw_model_parse(const char *text, const char *origin, tw_model_config *cfg);
void tw_model_free(tw_model_config *cfg);

/* The comma-separated list of modelled architectures, for messages. */
const char *tw_model_supported(void);

/* Parameter counts (biases included) and per-token work. */
uint64_t tw_model_params(const tw_model_config *c);          /* all weights */
uint64_t tw_model_params_nonembed(const tw_model_config *c); /* excluding the embedding table */
/* The sliding window of layer l (0: none). */
int tw_model_layer_window(const tw_model_config *c, int layer);
/* Key positions one token at context length ctx attends, summed over layers: n_layers * ctx
 * without a window, min(ctx, W) on windowed layers (what attention reads of the KV cache). */
double tw_model_attended_positions(const tw_model_config *c, int ctx);
/* FLOPs of one token's forward pass at context length ctx (matmuls 2*params + attention over
 * the attended positions). */
double tw_model_flops_per_token(const tw_model_config *c, int ctx);

typedef enum {
    TW_W_EMBED = 0,  /* [vocab, hidden]   model.embed_tokens.weight */
    TW_W_ATTN_NORM,  /* [hidden]          model.layers.L.input_layernorm.weight */
    TW_W_Q,          /* [H*D, hidden]     ...self_attn.q_proj.weight */
    TW_W_K,          /* [G*D, hidden]     ...self_attn.k_proj.weight */
    TW_W_V,          /* [G*D, hidden]     ...self_attn.v_proj.weight */
    TW_W_O,          /* [hidden, H*D]     ...self_attn.o_proj.weight */
    TW_W_FFN_NORM,   /* [hidden]          ...post_attention_layernorm.weight */
    TW_W_GATE,       /* [F, hidden]       ...mlp.gate_proj.weight */
    TW_W_UP,         /* [F, hidden]       ...mlp.up_proj.weight */
    TW_W_DOWN,       /* [hidden, F]       ...mlp.down_proj.weight */
    TW_W_FINAL_NORM, /* [hidden]          model.norm.weight */
    TW_W_LM_HEAD,    /* [vocab, hidden]   lm_head.weight (absent when tied) */
    TW_W_Q_BIAS,     /* [H*D]             ...self_attn.q_proj.bias (qkv_bias only) */
    TW_W_K_BIAS,     /* [G*D]             ...self_attn.k_proj.bias */
    TW_W_V_BIAS,     /* [G*D]             ...self_attn.v_proj.bias */
    TW_W_KINDS
} tw_weight_kind;

/* Shape [rows, cols] of a tensor; 1-D tensors (norm weights, biases) are rows = 1, cols = n. */
void tw_weight_shape(const tw_model_config *c, tw_weight_kind k, int *rows, int *cols);
int tw_weight_per_layer(tw_weight_kind k);
int tw_weight_is_1d(tw_weight_kind k);
/* Whether the model has this tensor (the LM head when untied, the biases when qkv_bias). */
int tw_weight_present(const tw_model_config *c, tw_weight_kind k);
float tw_weight_scale(const tw_model_config *c, tw_weight_kind k);
/* The Hugging Face tensor name (layer ignored for global tensors). */
void tw_weight_hf_name(tw_weight_kind k, int layer, char *buf, size_t n);
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
