/* Exporting the synthetic model as a Hugging Face folder: model.safetensors (the tensor names
 * and shapes of the architecture's transformers class), config.json (the config as read, with
 * its canonical architectures and model_type, plus torch_dtype) and tokwatt-export.json
 * (seed, generator, tool version and commit). Used by `tokwatt export` and the tests. */
#ifndef TW_EXPORT_H
#define TW_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "tw_model.h"
#include "tw_safetensors.h"
#include "tw_status.h"

typedef struct {
    tw_weight_kind kind; /* the first (usually only) part */
    int layer;           /* 0 for global tensors */
    char name[96];
    int ndim;       /* 1 for norms and biases ([n]), 2 otherwise ([rows, cols]) */
    int rows, cols; /* as tw_weight_shape (1-D: rows = 1); the sum of the parts' rows */
    int nparts;     /* fused checkpoint tensors stack several kinds' rows: Phi-3's qkv_proj is
                     * Q, K, V rows and gate_up_proj gate then up rows */
    tw_weight_kind part[3];
    int row0; /* one expert of an expert kind: rows [row0, row0 + rows) of the stacked tensor */
} tw_export_entry;

/* The tensors of the model in file order, named as the architecture's published checkpoints
 * (which transformers loads): embed_tokens, then per layer input_layernorm, q_proj (weight, then
 * bias when the model has q/k/v biases), k_proj, v_proj, o_proj, then q_norm and k_norm
 * (Qwen3), or the latent attention's q_a_proj, q_a_layernorm, q_b_proj (or q_proj),
 * kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj (DeepSeek); post_attention_layernorm;
 * gate_proj, up_proj, down_proj, or on a MoE layer the router (mlp.gate.weight, Mixtral
 * block_sparse_moe.gate.weight), e_score_correction_bias (DeepSeek-V3), every expert's
 * gate/up/down (mlp.experts.E.gate_proj..., Mixtral block_sparse_moe.experts.E.w1/w3/w2) and the
 * shared experts (mlp.shared_experts.*); Phi-3: qkv_proj, o_proj, post_attention_layernorm,
 * gate_up_proj, down_proj; then model.norm and lm_head (omitted when tie_word_embeddings).
 * Fills out[] when not NULL; returns the count. */
int tw_export_list(const tw_model_config *c, tw_export_entry *out);

typedef struct {
    int n_tensors;
    uint64_t params;     /* elements written */
    uint64_t data_bytes; /* tensor bytes */
    uint64_t file_bytes; /* model.safetensors size */
    char path[4096];     /* DIR/model.safetensors */
} tw_export_result;

/* Progress callback: bytes of tensor data written so far, of total. */
typedef void (*tw_export_progress_fn)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);

/* Row-block size in elements (default 4M): at most max(this, one row) elements are held at a
 * time. Tests lower it so that tensors span several blocks. */
extern size_t tw_export_block_elems;

/* dtype: TW_ST_BF16 (tw_weight_fill_bf16 values) or TW_ST_F32 (tw_weight_fill values).
 * Refuses (TW_ERR_IO, before writing anything) when the disk holding dir lacks the room.
 * Holds one row block (at most ~4M elements) in memory at a time. */
tw_status tw_export_model(const tw_model_config *c, uint64_t seed, tw_st_dtype dtype,
                          const char *dir, tw_export_progress_fn progress, void *ctx,
                          tw_export_result *res);

#endif
