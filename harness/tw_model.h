/* Models: Llama-family shapes read from Hugging Face config.json, and the deterministic synthetic
 * weights that fill them.
 *
 * Synthetic weights: every element is a pure function of (seed, tensor kind, layer, global row,
 * global column), so any backend, rank count or machine gets the same values, and a tensor-
 * parallel shard is exactly a slice of the TP=1 tensor. The generator is counter-based:
 *   u = splitmix64(splitmix64(seed ^ (kind << 56) ^ (layer << 40)) + row * cols + col)
 *   value = scale(kind) * (2 * (u >> 40) / 2^24 - 1)            (uniform in [-scale, scale))
 * Scales (doc/MODEL.md): linear layers variance 1/in (each block's output is O(1)), norms
 * 1 +- 0.1, embedding std 0.02 as in trained Llama checkpoints. The residual stream then grows
 * like sqrt(2 * layer), as in real pre-norm models, and stays finite through 126 layers; the
 * small embedding keeps a tied LM head from echoing the input token. */
#ifndef TW_MODEL_H
#define TW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tw_numeric.h"
#include "tw_status.h"

typedef struct {
    char name[128];   /* file stem or "custom" */
    char origin[512]; /* path it was read from */
    char arch[64];    /* model_type, e.g. "llama", "mistral", "qwen2" */
    int hidden;       /* hidden_size */
    int intermediate; /* intermediate_size */
    int n_layers;     /* num_hidden_layers */
    int n_heads;      /* num_attention_heads */
    int n_kv_heads;   /* num_key_value_heads (defaults to n_heads) */
    int head_dim;     /* head_dim, or hidden / n_heads */
    int vocab;        /* vocab_size */
    int max_pos;      /* max_position_embeddings */
    float rms_eps;    /* rms_norm_eps */
    int tie_embeddings;
    int attn_bias; /* attention_bias (qwen2 has q/k/v bias): recorded; biases are not modelled */
    tw_rope_params rope;
    char *json; /* the config as read (normalised JSON text), malloc'd */
} tw_model_config;

/* Reads configs/models/NAME.json for a bare name, or the file at a path (anything with a '/' or
 * ending in .json). Errors name the file and the field. */
tw_status tw_model_load(const char *name_or_path, tw_model_config *cfg);
tw_status tw_model_parse(const char *text, const char *origin, tw_model_config *cfg);
void tw_model_free(tw_model_config *cfg);

/* Parameter counts and per-token work. */
uint64_t tw_model_params(const tw_model_config *c);          /* all weights */
uint64_t tw_model_params_nonembed(const tw_model_config *c); /* excluding the embedding table */
/* FLOPs of one token's forward pass at context length ctx (matmuls 2*params + attention). */
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
    TW_W_KINDS
} tw_weight_kind;

/* Shape [rows, cols] of a tensor; 1-D norm weights are rows = 1, cols = hidden. */
void tw_weight_shape(const tw_model_config *c, tw_weight_kind k, int *rows, int *cols);
int tw_weight_per_layer(tw_weight_kind k);
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
