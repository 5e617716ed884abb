/* Model configs (Hugging Face config.json: the table of modelled architectures, refusal of
 * anything else) and synthetic weights. */
#include "tw_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"

/* ---- the table of modelled architectures -------------------------------------------------- */

/* How a family's sliding_window applies. */
typedef enum {
    TW_WIN_NONE = 0, /* no such field: a sliding_window in the config is refused */
    TW_WIN_ALL,      /* every layer (Mistral, Phi-3, Mixtral) */
    TW_WIN_QWEN2,    /* only with use_sliding_window, on layers >= max_window_layers (Qwen2, 3) */
    TW_WIN_USE_ALL   /* only with use_sliding_window, on every layer (Qwen3-MoE) */
} tw_window_rule;

/* The MLP and router of a family. */
typedef enum {
    TW_FAM_DENSE = 0,
    TW_FAM_MIXTRAL,     /* softmax top-k, always renormalised; every layer MoE */
    TW_FAM_QWEN3_MOE,   /* softmax top-k, norm_topk_prob; decoder_sparse_step, mlp_only_layers */
    TW_FAM_DEEPSEEK_V3, /* sigmoid, correction bias, group-limited (top-2 sums), shared experts */
    TW_FAM_DEEPSEEK_V2  /* softmax, greedy or group-limited (max), shared experts, no renorm */
} tw_moe_family;

typedef struct {
    const char *architecture; /* architectures[0] */
    const char *model_type;
    int qkv_bias; /* q/k/v projections carry biases (hard-wired in the HF class) */
    tw_window_rule window;
    int fused_layout;     /* qkv_proj / gate_up_proj checkpoint tensors */
    int default_kv_heads; /* num_key_value_heads when absent: 0 means num_attention_heads */
    int default_max_pos;  /* max_position_embeddings when absent (the HF class's default) */
    double default_eps;   /* rms_norm_eps when absent */
    /* fields of this family (beyond the common ones) that tokwatt reads or that leave the
     * forward pass unchanged */
    const char *const *fields;
    int qk_norm;                 /* per-head q/k RMSNorm (implied by the class) */
    tw_moe_family moe;           /* experts */
    int mla;                     /* multi-head latent attention (and yarn RoPE allowed) */
    int default_head_dim;        /* head_dim when absent: 0 means hidden_size / heads */
    const char *const *modelled; /* fields that tw_find_unmodelled would refuse elsewhere */
} tw_family;

/* attention_bias and mlp_bias pass only when they match the class (tw_find_unmodelled);
 * original_max_position_embeddings of Phi-3 is read only by its longrope scaling (refused) */
static const char *const tw_llama_fields[] = {"attention_bias", "mlp_bias", NULL};
static const char *const tw_mistral_fields[] = {"sliding_window", "attention_bias", NULL};
static const char *const tw_qwen2_fields[] = {"sliding_window",
                                              "use_sliding_window",
                                              "max_window_layers",
                                              "layer_types",
                                              "use_mrope",
                                              "attention_bias",
                                              NULL};
static const char *const tw_phi3_fields[] = {"sliding_window", "resid_pdrop",
                                             "embd_pdrop",     "original_max_position_embeddings",
                                             "attention_bias", NULL};
static const char *const tw_qwen3_fields[] = {"sliding_window",    "use_sliding_window",
                                              "max_window_layers", "layer_types",
                                              "attention_bias",    NULL};
/* output_router_logits and router_aux_loss_coef only add the training loss; max_window_layers
 * is not read by Qwen3MoeForCausalLM (its window, when on, is on every layer) */
static const char *const tw_qwen3_moe_fields[] = {"sliding_window",
                                                  "use_sliding_window",
                                                  "max_window_layers",
                                                  "attention_bias",
                                                  "decoder_sparse_step",
                                                  "moe_intermediate_size",
                                                  "num_experts_per_tok",
                                                  "num_experts",
                                                  "norm_topk_prob",
                                                  "output_router_logits",
                                                  "router_aux_loss_coef",
                                                  "mlp_only_layers",
                                                  NULL};
static const char *const tw_qwen3_moe_modelled[] = {"num_experts", "num_experts_per_tok",
                                                    "moe_intermediate_size", NULL};
/* router_jitter_noise multiplies the input only while training */
static const char *const tw_mixtral_fields[] = {
    "sliding_window",       "attention_bias",       "num_experts_per_tok", "num_local_experts",
    "output_router_logits", "router_aux_loss_coef", "router_jitter_noise", NULL};
static const char *const tw_mixtral_modelled[] = {"num_local_experts", "num_experts_per_tok", NULL};
/* ep_size is the original code's expert-parallel degree (deployment); aux_loss_alpha, seq_aux and
 * the router loss fields train the router; num_nextn_predict_layers are the multi-token
 * prediction layers, which transformers does not run (their weights are ignored on load) and
 * tokwatt neither runs nor counts (doc/MOE.md) */
static const char *const tw_deepseek_v3_fields[] = {"attention_bias",
                                                    "first_k_dense_replace",
                                                    "kv_lora_rank",
                                                    "q_lora_rank",
                                                    "qk_nope_head_dim",
                                                    "qk_rope_head_dim",
                                                    "v_head_dim",
                                                    "moe_intermediate_size",
                                                    "moe_layer_freq",
                                                    "n_group",
                                                    "topk_group",
                                                    "n_routed_experts",
                                                    "n_shared_experts",
                                                    "norm_topk_prob",
                                                    "num_experts_per_tok",
                                                    "num_nextn_predict_layers",
                                                    "routed_scaling_factor",
                                                    "scoring_func",
                                                    "topk_method",
                                                    "ep_size",
                                                    "rope_interleave",
                                                    "aux_loss_alpha",
                                                    "seq_aux",
                                                    "output_router_logits",
                                                    "router_aux_loss_coef",
                                                    NULL};
static const char *const tw_deepseek_v2_fields[] = {"attention_bias",
                                                    "mlp_bias",
                                                    "first_k_dense_replace",
                                                    "kv_lora_rank",
                                                    "q_lora_rank",
                                                    "qk_nope_head_dim",
                                                    "qk_rope_head_dim",
                                                    "v_head_dim",
                                                    "moe_intermediate_size",
                                                    "moe_layer_freq",
                                                    "n_group",
                                                    "topk_group",
                                                    "n_routed_experts",
                                                    "n_shared_experts",
                                                    "norm_topk_prob",
                                                    "num_experts_per_tok",
                                                    "routed_scaling_factor",
                                                    "scoring_func",
                                                    "topk_method",
                                                    "ep_size",
                                                    "aux_loss_alpha",
                                                    "seq_aux",
                                                    "output_router_logits",
                                                    "router_aux_loss_coef",
                                                    NULL};
static const char *const tw_deepseek_modelled[] = {"n_routed_experts",
                                                   "n_shared_experts",
                                                   "num_experts_per_tok",
                                                   "moe_intermediate_size",
                                                   "kv_lora_rank",
                                                   "q_lora_rank",
                                                   "qk_rope_head_dim",
                                                   "qk_nope_head_dim",
                                                   "v_head_dim",
                                                   "rope_interleave",
                                                   NULL};
static const char *const tw_none[] = {NULL};

/* The defaults are those of transformers' configuration classes (5.x). */
static const tw_family tw_families[] = {
    {"LlamaForCausalLM", "llama", 0, TW_WIN_NONE, 0, 0, 2048, 1e-6, tw_llama_fields, 0,
     TW_FAM_DENSE, 0, 0, tw_none},
    {"MistralForCausalLM", "mistral", 0, TW_WIN_ALL, 0, 8, 131072, 1e-6, tw_mistral_fields, 0,
     TW_FAM_DENSE, 0, 0, tw_none},
    {"Qwen2ForCausalLM", "qwen2", 1, TW_WIN_QWEN2, 0, 32, 32768, 1e-6, tw_qwen2_fields, 0,
     TW_FAM_DENSE, 0, 0, tw_none},
    {"Phi3ForCausalLM", "phi3", 0, TW_WIN_ALL, 1, 0, 4096, 1e-5, tw_phi3_fields, 0, TW_FAM_DENSE, 0,
     0, tw_none},
    {"Qwen3ForCausalLM", "qwen3", 0, TW_WIN_QWEN2, 0, 32, 32768, 1e-6, tw_qwen3_fields, 1,
     TW_FAM_DENSE, 0, 128, tw_none},
    {"Qwen3MoeForCausalLM", "qwen3_moe", 0, TW_WIN_USE_ALL, 0, 4, 32768, 1e-6, tw_qwen3_moe_fields,
     1, TW_FAM_QWEN3_MOE, 0, 0, tw_qwen3_moe_modelled},
    {"MixtralForCausalLM", "mixtral", 0, TW_WIN_ALL, 0, 8, 131072, 1e-5, tw_mixtral_fields, 0,
     TW_FAM_MIXTRAL, 0, 0, tw_mixtral_modelled},
    {"DeepseekV3ForCausalLM", "deepseek_v3", 0, TW_WIN_NONE, 0, 0, 4096, 1e-6,
     tw_deepseek_v3_fields, 0, TW_FAM_DEEPSEEK_V3, 1, 0, tw_deepseek_modelled},
    {"DeepseekV2ForCausalLM", "deepseek_v2", 0, TW_WIN_NONE, 0, 0, 2048, 1e-6,
     tw_deepseek_v2_fields, 0, TW_FAM_DEEPSEEK_V2, 1, 0, tw_deepseek_modelled},
};
#define TW_N_FAMILIES ((int)(sizeof tw_families / sizeof tw_families[0]))

const char *tw_model_supported(void) {
    return "LlamaForCausalLM (llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2), "
           "Phi3ForCausalLM (phi3), Qwen3ForCausalLM (qwen3), Qwen3MoeForCausalLM (qwen3_moe), "
           "MixtralForCausalLM (mixtral), DeepseekV3ForCausalLM (deepseek_v3), "
           "DeepseekV2ForCausalLM (deepseek_v2)";
}

/* Fields every family reads (parsed below) or that do not change the forward pass: token ids,
 * dtype and version tags, dropout (inference), initialisation, generation defaults, the HF
 * config plumbing, and pretraining_tp (a sliced matmul, the same product). Keys starting with
 * '_' are comments (tokwatt's "_source", HF's "_name_or_path"). */
static const char *const tw_common_fields[] = {"architectures",
                                               "model_type",
                                               "hidden_size",
                                               "intermediate_size",
                                               "num_hidden_layers",
                                               "num_attention_heads",
                                               "num_key_value_heads",
                                               "head_dim",
                                               "vocab_size",
                                               "max_position_embeddings",
                                               "rms_norm_eps",
                                               "rope_theta",
                                               "rope_scaling",
                                               "rope_parameters",
                                               "tie_word_embeddings",
                                               "hidden_act",
                                               "partial_rotary_factor",
                                               "torch_dtype",
                                               "dtype",
                                               "transformers_version",
                                               "bos_token_id",
                                               "eos_token_id",
                                               "pad_token_id",
                                               "sep_token_id",
                                               "decoder_start_token_id",
                                               "use_cache",
                                               "initializer_range",
                                               "attention_dropout",
                                               "pretraining_tp",
                                               "auto_map",
                                               "return_dict",
                                               "output_hidden_states",
                                               "output_attentions",
                                               "torchscript",
                                               "use_bfloat16",
                                               "tf_legacy_loss",
                                               "pruned_heads",
                                               "chunk_size_feed_forward",
                                               "is_encoder_decoder",
                                               "is_decoder",
                                               "cross_attention_hidden_size",
                                               "add_cross_attention",
                                               "tie_encoder_decoder",
                                               "max_length",
                                               "min_length",
                                               "do_sample",
                                               "early_stopping",
                                               "num_beams",
                                               "num_beam_groups",
                                               "diversity_penalty",
                                               "temperature",
                                               "top_k",
                                               "top_p",
                                               "typical_p",
                                               "repetition_penalty",
                                               "length_penalty",
                                               "no_repeat_ngram_size",
                                               "encoder_no_repeat_ngram_size",
                                               "bad_words_ids",
                                               "num_return_sequences",
                                               "output_scores",
                                               "return_dict_in_generate",
                                               "forced_bos_token_id",
                                               "forced_eos_token_id",
                                               "remove_invalid_values",
                                               "exponential_decay_length_penalty",
                                               "suppress_tokens",
                                               "begin_suppress_tokens",
                                               "finetuning_task",
                                               "id2label",
                                               "label2id",
                                               "tokenizer_class",
                                               "prefix",
                                               "task_specific_params",
                                               "problem_type",
                                               NULL};

static int tw_in_list(const char *const *list, const char *key) {
    for (; list && *list; list++)
        if (!strcmp(*list, key)) return 1;
    return 0;
}

/* ---- config parsing --------------------------------------------------------------------- */

/* A value as short JSON text for messages. */
static void tw_json_brief(json_t *v, char *buf, size_t n) {
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    if (!t) {
        snprintf(buf, n, "?");
        return;
    }
    size_t len = strlen(t);
    if (len + 1 > n && n > 4) { /* cut, marked with "..." */
        memcpy(buf, t, n - 4);
        memcpy(buf + n - 4, "...", 4);
    } else {
        memcpy(buf, t, len + 1);
    }
    free(t);
}

/* Set to something other than null, false, 0, "" or an empty array/object. */
static int tw_json_set(json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    if (json_is_real(v)) return json_real_value(v) != 0.0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    return 1;
}

/* The rope type of a rope_scaling / rope_parameters object ("rope_type", or the older "type"). */
static const char *tw_rope_type_of(json_t *rs) {
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* The rope object of a config: rope_parameters (transformers 5) or rope_scaling. */
static json_t *tw_rope_object(json_t *root, const char **field) {
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        *field = "rope_parameters";
        return rp;
    }
    *field = "rope_scaling";
    json_t *rs = json_object_get(root, "rope_scaling");
    return rs && !json_is_null(rs) ? rs : NULL;
}

/* A field that would change the computation in a way tokwatt does not model. */
typedef struct {
    const char *field;
    char value[96];
    const char *why;
} tw_unmodelled;

/* Checks, in a fixed order, the fields that change a model's computation beyond what tokwatt
 * models; fills *u with the first one set and returns 1, else 0. fam is NULL for an
 * architecture outside the table (then a sliding window is never modelled). */
static int tw_find_unmodelled(json_t *root, const tw_family *fam, tw_unmodelled *u) {
    /* the first TW_STRUCTURAL ones (experts, latent attention) are named before the activation */
    enum { TW_STRUCTURAL = 12 };
    static const struct {
        const char *field, *why;
    } set_probes[] = {
        {"num_local_experts", "a mixture of experts: a router and several expert MLPs per layer"},
        {"num_experts", "a mixture of experts: a router and several expert MLPs per layer"},
        {"n_routed_experts", "a mixture of experts: a router and routed expert MLPs per layer"},
        {"moe_num_experts", "a mixture of experts"},
        {"n_shared_experts", "shared experts of a mixture-of-experts MLP"},
        {"num_experts_per_tok", "experts chosen per token by a router"},
        {"moe_intermediate_size", "the MLP width of mixture-of-experts experts"},
        {"kv_lora_rank", "multi-head latent attention (compressed keys and values)"},
        {"q_lora_rank", "multi-head latent attention (compressed queries)"},
        {"qk_rope_head_dim", "multi-head latent attention (split RoPE / no-RoPE head dims)"},
        {"qk_nope_head_dim", "multi-head latent attention (split RoPE / no-RoPE head dims)"},
        {"v_head_dim", "value heads of another width than the query heads"},
        {"attn_logit_softcapping", "tanh soft-capping of the attention scores"},
        {"final_logit_softcapping", "tanh soft-capping of the output logits"},
        {"logit_softcapping", "tanh soft-capping of the logits"},
        {"query_pre_attn_scalar", "attention scaled by another factor than 1/sqrt(head_dim)"},
        {"attention_multiplier", "a scaled attention"},
        {"embedding_multiplier", "a scaled embedding"},
        {"residual_multiplier", "a scaled residual stream"},
        {"logits_scaling", "scaled logits"},
        {"scale_emb", "a scaled embedding"},
        {"scale_depth", "a scaled residual stream"},
        {"rope_local_base_freq", "a second RoPE base for local-attention layers"},
        {"sliding_window_pattern", "alternating local and global attention layers"},
        {"rope_interleave", "interleaved (GPT-J style) RoPE pairs"},
        {"use_qk_norm", "RMSNorm of queries and keys per head"},
        {"qk_layernorm", "LayerNorm of queries and keys"},
        {"qk_norm", "normalised queries and keys"},
        {"mlp_bias", "biases on the MLP projections"},
        {"use_bias", "biases on the projections"},
        {"bias", "biases on the projections"},
        {"use_parallel_residual", "attention and MLP in parallel from one norm"},
        {"quantization_config", "quantised weights"},
        {"pruned_heads", "pruned attention heads"},
        {"is_encoder_decoder", "an encoder-decoder model"},
        {"add_cross_attention", "cross-attention layers"},
    };
    memset(u, 0, sizeof *u);
#define TW_HIT(f, v, w)                                                                            \
    do {                                                                                           \
        u->field = (f);                                                                            \
        tw_json_brief((v), u->value, sizeof u->value);                                             \
        u->why = (w);                                                                              \
        return 1;                                                                                  \
    } while (0)
    /* the structural ones first: experts and latent attention (unless the family models them) */
    for (size_t i = 0; i < TW_STRUCTURAL; i++) {
        if (fam && tw_in_list(fam->modelled, set_probes[i].field)) continue;
        json_t *v = json_object_get(root, set_probes[i].field);
        if (tw_json_set(v)) TW_HIT(set_probes[i].field, v, set_probes[i].why);
    }
    /* the activation of the MLP */
    static const char *const acts[] = {"hidden_act", "hidden_activation"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, acts[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_string(v) || (strcmp(json_string_value(v), "silu") != 0 &&
                                   strcmp(json_string_value(v), "swish") != 0))
            TW_HIT(acts[i], v, "another MLP activation than SiLU (SwiGLU)");
    }
    for (size_t i = TW_STRUCTURAL; i < sizeof set_probes / sizeof set_probes[0]; i++) {
        if (fam && tw_in_list(fam->modelled, set_probes[i].field)) continue;
        json_t *v = json_object_get(root, set_probes[i].field);
        if (!tw_json_set(v)) continue;
        if (!strcmp(set_probes[i].field, "query_pre_attn_scalar") && json_is_number(v)) {
            /* the same scale as 1/sqrt(head_dim) changes nothing */
            json_t *hd = json_object_get(root, "head_dim");
            if (json_is_integer(hd) && json_number_value(v) == (double)json_integer_value(hd))
                continue;
        }
        TW_HIT(set_probes[i].field, v, set_probes[i].why);
    }
    /* biases: Qwen2's q/k/v biases are modelled; any other attention bias (Llama's also covers
     * o_proj) is not */
    json_t *ab = json_object_get(root, "attention_bias");
    if (fam && fam->qkv_bias) {
        if (ab && !json_is_null(ab) && !json_is_true(ab))
            TW_HIT("attention_bias", ab,
                   "no q/k/v biases, although this architecture always has them");
    } else if (tw_json_set(ab)) {
        TW_HIT("attention_bias", ab, "biases on the q, k, v and o projections");
    }
    /* sliding-window attention where the family does not model it */
    json_t *sw = json_object_get(root, "sliding_window");
    json_t *usw = json_object_get(root, "use_sliding_window");
    json_t *lt = json_object_get(root, "layer_types");
    if (!fam || fam->window == TW_WIN_NONE) {
        if (tw_json_set(sw)) TW_HIT("sliding_window", sw, "sliding-window attention");
        if (tw_json_set(usw)) TW_HIT("use_sliding_window", usw, "sliding-window attention");
        if (tw_json_set(lt)) TW_HIT("layer_types", lt, "layers of different attention types");
    }
    /* RoPE variants */
    const char *rfield;
    json_t *rs = tw_rope_object(root, &rfield);
    if (rs && json_is_object(rs)) {
        const char *type = tw_rope_type_of(rs);
        int yarn_ok = fam && fam->mla && type && !strcmp(type, "yarn");
        if (type && strcmp(type, "default") != 0 && strcmp(type, "linear") != 0 &&
            strcmp(type, "llama3") != 0 && !yarn_ok) {
            json_t *t = json_object_get(rs, "rope_type");
            if (!t) t = json_object_get(rs, "type");
            TW_HIT(rfield, t,
                   "a RoPE scaling tokwatt does not implement (it has default, "
                   "linear and llama3, and yarn for DeepSeek's latent attention)");
        }
        json_t *prf = json_object_get(rs, "partial_rotary_factor");
        if (json_is_number(prf) && json_number_value(prf) != 1.0)
            TW_HIT("partial_rotary_factor", prf, "RoPE on part of each head only");
    }
    json_t *prf = json_object_get(root, "partial_rotary_factor");
    if (json_is_number(prf) && json_number_value(prf) != 1.0)
        TW_HIT("partial_rotary_factor", prf, "RoPE on part of each head only");
    json_t *rp = json_object_get(root, "rotary_pct");
    if (json_is_number(rp) && json_number_value(rp) != 1.0)
        TW_HIT("rotary_pct", rp, "RoPE on part of each head only");
    if (fam && !strcmp(fam->model_type, "qwen2") && tw_json_set(json_object_get(root, "use_mrope")))
        TW_HIT("use_mrope", json_object_get(root, "use_mrope"),
               "multimodal RoPE (Qwen2-VL position ids)");
#undef TW_HIT
    return 0;
}

/* What an architecture outside the table computes differently although no config field says
 * so (the class itself implies it); NULL when tokwatt does not know. */
static const char *tw_implied_difference(const char *architecture, const char *model_type) {
    static const struct {
        const char *prefix, *what;
    } implied[] = {
        {"qwen3", "q_norm and k_norm (per-head RMSNorm of queries and keys, implied by the "
                  "architecture)"},
        {"gemma", "the embedding scaled by sqrt(hidden_size) and RMSNorm weights applied as "
                  "(1 + w) (implied by the architecture)"},
        {"olmo2", "q_norm and k_norm and norms after each block instead of before (implied by "
                  "the architecture)"},
        {"cohere", "LayerNorm and parallel attention and MLP (implied by the architecture)"},
        {"gpt_neox", "LayerNorm, biases and parallel residuals (implied by the architecture)"},
        {"gpt2", "LayerNorm, learned positions and biases (implied by the architecture)"},
        {"phi", "LayerNorm, partial RoPE and biases (implied by the architecture)"},
    };
    for (size_t i = 0; i < sizeof implied / sizeof implied[0]; i++) {
        size_t n = strlen(implied[i].prefix);
        if (model_type && !strncmp(model_type, implied[i].prefix, n)) return implied[i].what;
    }
    (void)architecture;
    return NULL;
}

static tw_status tw_json_int(json_t *root, const char *origin, const char *key, int required,
                             int def, int min, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return TW_ERR(TW_ERR_PARSE, "%s: missing field '%s'", origin, key);
        *out = def;
        return TW_OK;
    }
    if (!json_is_integer(v))
        return TW_ERR(TW_ERR_PARSE, "%s: field '%s' must be an integer", origin, key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > 1000000000)
        return TW_ERR(TW_ERR_PARSE, "%s: field '%s' = %lld is out of range [%d, 1000000000]",
                      origin, key, (long long)x, min);
    *out = (int)x;
    return TW_OK;
}

static tw_status tw_json_num(json_t *root, const char *origin, const char *key, int required,
                             double def, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return TW_ERR(TW_ERR_PARSE, "%s: missing field '%s'", origin, key);
        *out = def;
        return TW_OK;
    }
    if (!json_is_number(v))
        return TW_ERR(TW_ERR_PARSE, "%s: field '%s' must be a number", origin, key);
    *out = json_number_value(v);
    return TW_OK;
}

static tw_status tw_json_bool(json_t *root, const char *origin, const char *key, int def,
                              int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return TW_OK;
    }
    if (!json_is_boolean(v))
        return TW_ERR(TW_ERR_PARSE, "%s: field '%s' must be true or false", origin, key);
    *out = json_is_true(v);
    return TW_OK;
}

/* RoPE: rope_theta and rope_scaling (transformers 4), or rope_parameters (transformers 5, with
 * rope_theta inside). The type was checked by tw_find_unmodelled. */
static double tw_yarn_get_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; /* transformers' get_mscale */
}

/* *mscale2 receives the factor on the softmax scale that yarn implies for latent attention
 * (transformers' yarn_apply_mscale: get_mscale(factor, mscale_all_dim)^2), 1 otherwise. */
static tw_status tw_model_parse_rope(json_t *root, const char *origin, tw_model_config *c,
                                     double *mscale2) {
    *mscale2 = 1.0;
    double theta = 0;
    TW_TRY(tw_json_num(root, origin, "rope_theta", 0, 10000.0, &theta));
    memset(&c->rope, 0, sizeof c->rope);
    c->rope.type = TW_ROPE_DEFAULT;
    c->rope.factor = 1.0f;
    json_t *rp = json_object_get(root, "rope_parameters");
    json_t *rsc = json_object_get(root, "rope_scaling");
    if (rp && !json_is_null(rp) && rsc && !json_is_null(rsc))
        return TW_ERR(TW_ERR_PARSE, "%s: both rope_parameters and rope_scaling are given", origin);
    const char *rfield;
    json_t *rs = tw_rope_object(root, &rfield);
    if (rs && !json_is_object(rs))
        return TW_ERR(TW_ERR_PARSE, "%s: %s must be an object", origin, rfield);
    if (rs && json_object_get(rs, "rope_theta"))
        TW_TRY(tw_json_num(rs, origin, "rope_theta", 1, 0, &theta));
    if (!(theta > 1.0)) return TW_ERR(TW_ERR_PARSE, "%s: rope_theta must be > 1", origin);
    c->rope.theta = (float)theta;
    if (!rs) return TW_OK;
    const char *type = tw_rope_type_of(rs);
    if (!type) {
        if (!strcmp(rfield, "rope_parameters"))
            type = "default";
        else
            return TW_ERR(TW_ERR_PARSE, "%s: rope_scaling has no rope_type", origin);
    }
    if (!strcmp(type, "default")) return TW_OK;
    double factor = 1;
    TW_TRY(tw_json_num(rs, origin, "factor", 1, 1.0, &factor));
    if (!(factor > 0)) return TW_ERR(TW_ERR_PARSE, "%s: %s.factor must be > 0", origin, rfield);
    c->rope.factor = (float)factor;
    if (!strcmp(type, "linear")) {
        c->rope.type = TW_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        double lo = 0, hi = 0, orig = 0;
        TW_TRY(tw_json_num(rs, origin, "low_freq_factor", 1, 0, &lo));
        TW_TRY(tw_json_num(rs, origin, "high_freq_factor", 1, 0, &hi));
        TW_TRY(tw_json_num(rs, origin, "original_max_position_embeddings", 1, 0, &orig));
        if (!(lo > 0 && hi > lo && orig > 0))
            return TW_ERR(TW_ERR_PARSE,
                          "%s: llama3 %s needs 0 < low_freq_factor < high_freq_factor "
                          "and original_max_position_embeddings > 0",
                          origin, rfield);
        c->rope.type = TW_ROPE_LLAMA3;
        c->rope.low_freq_factor = (float)lo;
        c->rope.high_freq_factor = (float)hi;
        c->rope.original_max_pos = (float)orig;
    } else if (!strcmp(type, "yarn")) {
        /* transformers' _compute_yarn_parameters and yarn_apply_mscale (5.x) */
        double orig = 0, bf = 0, bs = 0, ms = 0, msa = 0, af = 0;
        int trunc = 1;
        TW_TRY(tw_json_num(rs, origin, "original_max_position_embeddings", 0, (double)c->max_pos,
                           &orig));
        TW_TRY(tw_json_num(rs, origin, "beta_fast", 0, 32.0, &bf));
        TW_TRY(tw_json_num(rs, origin, "beta_slow", 0, 1.0, &bs));
        TW_TRY(tw_json_num(rs, origin, "mscale", 0, 0.0, &ms));
        TW_TRY(tw_json_num(rs, origin, "mscale_all_dim", 0, 0.0, &msa));
        TW_TRY(tw_json_bool(rs, origin, "truncate", 1, &trunc));
        if (!(orig > 0 && bf > 0 && bs > 0))
            return TW_ERR(TW_ERR_PARSE,
                          "%s: yarn %s needs original_max_position_embeddings, beta_fast and "
                          "beta_slow > 0",
                          origin, rfield);
        json_t *afv = json_object_get(rs, "attention_factor");
        if (afv && !json_is_null(afv))
            TW_TRY(tw_json_num(rs, origin, "attention_factor", 1, 1.0, &af));
        else if (ms != 0 && msa != 0)
            af = tw_yarn_get_mscale(factor, ms) / tw_yarn_get_mscale(factor, msa);
        else
            af = tw_yarn_get_mscale(factor, 1.0);
        if (fabs(af - 1.0) > 1e-12)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "%s: %s (model_type %s) sets '%s' (yarn) with an attention factor of "
                          "%.9g on the rotary part (mscale %g, mscale_all_dim %g), which tokwatt "
                          "does not model (it models mscale == mscale_all_dim: a factor of 1)",
                          origin, c->architecture, c->arch, rfield, af, ms, msa);
        c->rope.type = TW_ROPE_YARN;
        c->rope.original_max_pos = (float)orig;
        c->rope.beta_fast = (float)bf;
        c->rope.beta_slow = (float)bs;
        c->rope.yarn_truncate = trunc;
        if (msa != 0) {
            double m = tw_yarn_get_mscale(factor, msa);
            *mscale2 = m * m;
        }
    } else {
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: %s type '%s' is not supported (default, linear, "
                      "llama3)",
                      origin, rfield, type);
    }
    return TW_OK;
}

/* Identifies the family from architectures[0] and model_type (either may be missing, not
 * both; they must agree). Sets c->architecture and c->arch; *fam is NULL for an architecture
 * outside the table. */
static tw_status tw_model_identify(json_t *root, const char *origin, tw_model_config *c,
                                   const tw_family **fam) {
    *fam = NULL;
    json_t *archs = json_object_get(root, "architectures");
    json_t *mt = json_object_get(root, "model_type");
    const char *a = NULL, *m = NULL;
    if (archs && !json_is_null(archs)) {
        if (!json_is_array(archs) || json_array_size(archs) < 1 ||
            !json_is_string(json_array_get(archs, 0)))
            return TW_ERR(TW_ERR_PARSE, "%s: 'architectures' must be a list of class names",
                          origin);
        if (json_array_size(archs) > 1)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "%s: 'architectures' names %zu classes; tokwatt models one (%s)", origin,
                          json_array_size(archs), tw_model_supported());
        a = json_string_value(json_array_get(archs, 0));
    }
    if (mt && !json_is_null(mt)) {
        if (!json_is_string(mt))
            return TW_ERR(TW_ERR_PARSE, "%s: 'model_type' must be a string", origin);
        m = json_string_value(mt);
    }
    if (!a && !m)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: names no architecture (neither 'architectures' nor 'model_type'); "
                      "tokwatt models %s",
                      origin, tw_model_supported());
    snprintf(c->architecture, sizeof c->architecture, "%s", a ? a : "?");
    snprintf(c->arch, sizeof c->arch, "%s", m ? m : "?");
    for (int i = 0; i < TW_N_FAMILIES; i++) {
        const tw_family *f = &tw_families[i];
        int am = a && !strcmp(a, f->architecture), mm = m && !strcmp(m, f->model_type);
        if (!am && !mm) continue;
        if ((a && !am) || (m && !mm))
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "%s: 'architectures' %s and 'model_type' %s disagree (tokwatt models "
                          "%s)",
                          origin, a, m, tw_model_supported());
        snprintf(c->architecture, sizeof c->architecture, "%s", f->architecture);
        snprintf(c->arch, sizeof c->arch, "%s", f->model_type);
        *fam = f;
        return TW_OK;
    }
    return TW_OK;
}

/* The sliding window of a modelled family: sets c->sliding_window and c->window_layer0. */
static tw_status tw_model_parse_window(json_t *root, const char *origin, const tw_family *fam,
                                       tw_model_config *c) {
    c->sliding_window = 0;
    c->window_layer0 = 0;
    if (fam->window == TW_WIN_NONE) return TW_OK;
    json_t *sw = json_object_get(root, "sliding_window");
    int w = 0;
    if (sw && !json_is_null(sw)) TW_TRY(tw_json_int(root, origin, "sliding_window", 1, 0, 1, &w));
    if (fam->window == TW_WIN_ALL) {
        c->sliding_window = w;
        return TW_OK;
    }
    if (fam->window == TW_WIN_USE_ALL) { /* Qwen3-MoE: use_sliding_window, then every layer */
        int use = 0;
        TW_TRY(tw_json_bool(root, origin, "use_sliding_window", 0, &use));
        c->sliding_window = use ? w : 0;
        return TW_OK;
    }
    /* Qwen2: the window applies only with use_sliding_window, to the layers layer_types calls
     * "sliding_attention" (by default those >= max_window_layers) */
    int use = 0, mwl = 28;
    TW_TRY(tw_json_bool(root, origin, "use_sliding_window", 0, &use));
    TW_TRY(tw_json_int(root, origin, "max_window_layers", 0, 28, 0, &mwl));
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int)json_array_size(lt) != c->n_layers)
            return TW_ERR(TW_ERR_PARSE, "%s: layer_types must list the %d layers' types", origin,
                          c->n_layers);
        /* tokwatt models full-attention layers followed by sliding ones */
        int first = c->n_layers, ok = 1;
        for (int l = 0; l < c->n_layers; l++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)l));
            if (!t || (strcmp(t, "full_attention") && strcmp(t, "sliding_attention")))
                ok = 0;
            else if (!strcmp(t, "sliding_attention") && first == c->n_layers)
                first = l;
            else if (!strcmp(t, "full_attention") && first < l)
                ok = 0;
        }
        if (!ok)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "%s: %s (model_type %s) sets 'layer_types' to a pattern tokwatt does "
                          "not model (it models full-attention layers followed by "
                          "sliding-window ones)",
                          origin, c->architecture, c->arch);
        mwl = first;
    }
    if (use && w > 0 && mwl < c->n_layers) {
        c->sliding_window = w;
        c->window_layer0 = mwl;
    }
    return TW_OK;
}

/* An integer field that may be given as null (Python None): *is_null set, *out untouched. */
static tw_status tw_json_int_or_null(json_t *root, const char *origin, const char *key, int def,
                                     int min, int *out, int *is_null) {
    json_t *v = json_object_get(root, key);
    *is_null = v && json_is_null(v);
    if (*is_null) return TW_OK;
    return tw_json_int(root, origin, key, 0, def, min, out);
}

/* A string field that must equal `want` when given (the only variant tokwatt models). */
static tw_status tw_json_expect_str(json_t *root, const char *origin, const tw_model_config *c,
                                    const char *key, const char *want, const char *alt,
                                    const char *what, const char **got) {
    json_t *v = json_object_get(root, key);
    *got = want;
    if (!v || json_is_null(v)) return TW_OK;
    if (!json_is_string(v))
        return TW_ERR(TW_ERR_PARSE, "%s: field '%s' must be a string", origin, key);
    *got = json_string_value(v);
    if (!strcmp(*got, want) || (alt && !strcmp(*got, alt))) return TW_OK;
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "%s: %s (model_type %s) sets '%s' = \"%s\", which would change the computation "
                  "(%s); tokwatt models \"%s\"%s%s%s",
                  origin, c->architecture, c->arch, key, *got, what, want, alt ? " and \"" : "",
                  alt ? alt : "", alt ? "\"" : "");
}

/* The experts of a family (tw_family.moe): counts, widths, routing rule and which layers. */
static tw_status tw_model_parse_moe(json_t *root, const char *origin, const tw_family *fam,
                                    tw_model_config *c) {
    c->n_group = c->topk_group = 1;
    c->routed_scaling = 1.0f;
    c->moe_step = 1;
    memset(c->mlp_only, 0, sizeof c->mlp_only);
    if (fam->moe == TW_FAM_DENSE) return TW_OK;
    int norm = 0, fdr = 0, freq = 1;
    double scale = 1.0;
    const char *got;
    switch (fam->moe) {
    case TW_FAM_MIXTRAL:
        TW_TRY(tw_json_int(root, origin, "num_local_experts", 0, 8, 1, &c->n_experts));
        TW_TRY(tw_json_int(root, origin, "num_experts_per_tok", 0, 2, 1, &c->n_experts_per_tok));
        c->moe_intermediate = c->intermediate; /* Mixtral's experts have intermediate_size */
        c->norm_topk_prob = 1;                 /* always renormalised */
        c->moe_scoring = TW_MOE_SOFTMAX;
        break;
    case TW_FAM_QWEN3_MOE: {
        TW_TRY(tw_json_int(root, origin, "num_experts", 0, 128, 0, &c->n_experts));
        TW_TRY(tw_json_int(root, origin, "num_experts_per_tok", 0, 8, 1, &c->n_experts_per_tok));
        TW_TRY(tw_json_int(root, origin, "moe_intermediate_size", 0, 768, 1, &c->moe_intermediate));
        TW_TRY(tw_json_bool(root, origin, "norm_topk_prob", 0, &norm));
        TW_TRY(tw_json_int(root, origin, "decoder_sparse_step", 0, 1, 1, &c->moe_step));
        c->norm_topk_prob = norm;
        c->moe_scoring = TW_MOE_SOFTMAX;
        json_t *mol = json_object_get(root, "mlp_only_layers");
        if (mol && !json_is_null(mol)) {
            if (!json_is_array(mol))
                return TW_ERR(TW_ERR_PARSE, "%s: mlp_only_layers must be a list of layer indices",
                              origin);
            for (size_t i = 0; i < json_array_size(mol); i++) {
                json_t *li = json_array_get(mol, i);
                if (!json_is_integer(li) || json_integer_value(li) < 0 ||
                    json_integer_value(li) >= 1024)
                    return TW_ERR(TW_ERR_PARSE,
                                  "%s: mlp_only_layers[%zu] must be a layer index in 0..1023",
                                  origin, i);
                int l = (int)json_integer_value(li);
                c->mlp_only[l / 64] |= 1ull << (l % 64);
            }
        }
        if (c->n_experts == 0) { /* Qwen3MoeDecoderLayer: num_experts 0 means dense MLPs */
            c->n_experts_per_tok = 0;
            return TW_OK;
        }
        break;
    }
    case TW_FAM_DEEPSEEK_V3:
        TW_TRY(tw_json_int(root, origin, "n_routed_experts", 0, 256, 1, &c->n_experts));
        TW_TRY(tw_json_int(root, origin, "num_experts_per_tok", 0, 8, 1, &c->n_experts_per_tok));
        TW_TRY(
            tw_json_int(root, origin, "moe_intermediate_size", 0, 2048, 1, &c->moe_intermediate));
        TW_TRY(tw_json_int(root, origin, "n_shared_experts", 0, 1, 0, &c->n_shared_experts));
        TW_TRY(tw_json_bool(root, origin, "norm_topk_prob", 1, &norm));
        TW_TRY(tw_json_int(root, origin, "n_group", 0, 8, 1, &c->n_group));
        TW_TRY(tw_json_int(root, origin, "topk_group", 0, 4, 1, &c->topk_group));
        TW_TRY(tw_json_num(root, origin, "routed_scaling_factor", 0, 2.5, &scale));
        TW_TRY(tw_json_int(root, origin, "first_k_dense_replace", 0, 3, 0, &fdr));
        TW_TRY(tw_json_int(root, origin, "moe_layer_freq", 0, 1, 1, &freq));
        TW_TRY(tw_json_expect_str(root, origin, c, "scoring_func", "sigmoid", NULL,
                                  "another expert scoring function", &got));
        TW_TRY(tw_json_expect_str(root, origin, c, "topk_method", "noaux_tc", NULL,
                                  "another top-k rule than DeepSeek-V3's group-limited "
                                  "selection with the score correction bias",
                                  &got));
        c->norm_topk_prob = norm;
        c->moe_scoring = TW_MOE_SIGMOID;
        c->router_bias = 1;
        c->group_score_top2 = 1;
        break;
    case TW_FAM_DEEPSEEK_V2:
        TW_TRY(tw_json_int(root, origin, "n_routed_experts", 0, 64, 1, &c->n_experts));
        TW_TRY(tw_json_int(root, origin, "num_experts_per_tok", 1, 0, 1, &c->n_experts_per_tok));
        TW_TRY(
            tw_json_int(root, origin, "moe_intermediate_size", 0, 1407, 1, &c->moe_intermediate));
        TW_TRY(tw_json_int(root, origin, "n_shared_experts", 0, 2, 0, &c->n_shared_experts));
        TW_TRY(tw_json_bool(root, origin, "norm_topk_prob", 0, &norm));
        TW_TRY(tw_json_num(root, origin, "routed_scaling_factor", 0, 1.0, &scale));
        TW_TRY(tw_json_int(root, origin, "first_k_dense_replace", 0, 0, 0, &fdr));
        TW_TRY(tw_json_int(root, origin, "moe_layer_freq", 0, 1, 1, &freq));
        TW_TRY(tw_json_expect_str(root, origin, c, "scoring_func", "softmax", NULL,
                                  "another expert scoring function", &got));
        TW_TRY(tw_json_expect_str(root, origin, c, "topk_method", "greedy", "group_limited_greedy",
                                  "another top-k rule", &got));
        if (norm)
            return TW_ERR(TW_ERR_UNSUPPORTED,
                          "%s: %s (model_type %s) sets 'norm_topk_prob' = true, which would "
                          "change the computation (transformers' DeepseekV2 router never "
                          "renormalises the top-k weights); tokwatt models false",
                          origin, c->architecture, c->arch);
        if (!strcmp(got, "group_limited_greedy")) {
            TW_TRY(tw_json_int(root, origin, "n_group", 1, 1, 1, &c->n_group));
            TW_TRY(tw_json_int(root, origin, "topk_group", 1, 1, 1, &c->topk_group));
        }
        c->moe_scoring = TW_MOE_SOFTMAX;
        break;
    default:
        return TW_ERR(TW_ERR_INTERNAL, "%s: unknown expert family", origin);
    }
    if (freq != 1)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: %s (model_type %s) sets 'moe_layer_freq' = %d, which would change the "
                      "computation (experts on every %d-th layer only); tokwatt models 1",
                      origin, c->architecture, c->arch, freq, freq);
    if (!(scale > 0) || !isfinite(scale))
        return TW_ERR(TW_ERR_PARSE, "%s: routed_scaling_factor must be > 0", origin);
    c->routed_scaling = (float)scale;
    c->moe_first_layer = fdr;
    if (c->n_experts_per_tok > c->n_experts)
        return TW_ERR(TW_ERR_PARSE, "%s: num_experts_per_tok (%d) exceeds the %d experts", origin,
                      c->n_experts_per_tok, c->n_experts);
    if (c->n_experts % c->n_group != 0)
        return TW_ERR(TW_ERR_PARSE, "%s: n_group (%d) does not divide the %d routed experts",
                      origin, c->n_group, c->n_experts);
    if (c->topk_group > c->n_group)
        return TW_ERR(TW_ERR_PARSE, "%s: topk_group (%d) exceeds n_group (%d)", origin,
                      c->topk_group, c->n_group);
    if (c->n_experts_per_tok > c->topk_group * (c->n_experts / c->n_group))
        return TW_ERR(TW_ERR_PARSE,
                      "%s: num_experts_per_tok (%d) exceeds the %d experts of topk_group (%d) "
                      "groups",
                      origin, c->n_experts_per_tok, c->topk_group * (c->n_experts / c->n_group),
                      c->topk_group);
    if (c->group_score_top2 && c->n_group > 1 && c->n_experts / c->n_group < 2)
        return TW_ERR(TW_ERR_PARSE, "%s: groups of one expert (a group's score is its top 2)",
                      origin);
    if (tw_model_moe_layers(c) == 0) /* e.g. first_k_dense_replace >= layers: a dense model */
        c->n_experts = c->n_experts_per_tok = c->n_shared_experts = 0;
    return TW_OK;
}

/* Multi-head latent attention (DeepSeek-V2/V3): the latent and rope dims, the q compression,
 * RoPE pairing and the softmax scale (1/sqrt(nope + rope) times yarn's mscale^2). */
static tw_status tw_model_parse_mla(json_t *root, const char *origin, const tw_family *fam,
                                    tw_model_config *c, double mscale2) {
    int qnull = 0;
    c->mla = 1;
    c->q_lora_rank = 1536; /* both classes' default; null means no q compression */
    TW_TRY(tw_json_int_or_null(root, origin, "q_lora_rank", 1536, 1, &c->q_lora_rank, &qnull));
    if (qnull) c->q_lora_rank = 0;
    TW_TRY(tw_json_int(root, origin, "kv_lora_rank", 0, 512, 1, &c->kv_lora_rank));
    TW_TRY(tw_json_int(root, origin, "qk_nope_head_dim", 0, 128, 1, &c->qk_nope_dim));
    TW_TRY(tw_json_int(root, origin, "qk_rope_head_dim", 0, 64, 2, &c->qk_rope_dim));
    TW_TRY(tw_json_int(root, origin, "v_head_dim", 0, 128, 1, &c->v_head_dim));
    if (c->qk_rope_dim % 2)
        return TW_ERR(TW_ERR_PARSE, "%s: qk_rope_head_dim (%d) must be even for RoPE", origin,
                      c->qk_rope_dim);
    c->rope_interleave = 1; /* DeepSeek-V2 always; V3's rope_interleave defaults to true */
    if (fam->moe == TW_FAM_DEEPSEEK_V3)
        TW_TRY(tw_json_bool(root, origin, "rope_interleave", 1, &c->rope_interleave));
    json_t *mtp = json_object_get(root, "num_nextn_predict_layers");
    if (mtp && !json_is_null(mtp))
        TW_TRY(tw_json_int(root, origin, "num_nextn_predict_layers", 0, 0, 0, &c->mtp_layers));
    /* the query-key head: nope + rope dims; the KV "heads" are the one latent */
    c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
    c->n_kv_heads = c->n_heads;
    c->latent_eps = 1e-6f;
    c->attn_scale = (float)(mscale2 / sqrt((double)c->head_dim));
    return TW_OK;
}

tw_status tw_model_parse(const char *text, const char *origin, tw_model_config *c) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root)
        return TW_ERR(TW_ERR_PARSE, "%s: not valid JSON (line %d: %s)", origin, jerr.line,
                      jerr.text);
    tw_status st = TW_OK;
    if (!json_is_object(root)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: a model config must be a JSON object", origin);
        goto done;
    }
    snprintf(c->origin, sizeof c->origin, "%s", origin);
    const char *base = strrchr(origin, '/');
    base = base ? base + 1 : origin;
    snprintf(c->name, sizeof c->name, "%s", base);
    char *dot = strstr(c->name, ".json");
    if (dot) *dot = '\0';
    if (!strcmp(c->name, "config")) {
        /* a Hugging Face folder's config.json: name it after the folder */
        char dir[512];
        snprintf(dir, sizeof dir, "%s", origin);
        char *sl = strrchr(dir, '/');
        if (sl) {
            *sl = '\0';
            const char *d = strrchr(dir, '/');
            snprintf(c->name, sizeof c->name, "%.127s", d ? d + 1 : dir);
        }
    }

    /* which architecture, and whether the config asks for anything tokwatt does not model */
    const tw_family *fam = NULL;
    if ((st = tw_model_identify(root, origin, c, &fam)) != TW_OK) goto done;
    tw_unmodelled u;
    if (tw_find_unmodelled(root, fam, &u)) {
        if (fam)
            st = TW_ERR(TW_ERR_UNSUPPORTED,
                        "%s: %s (model_type %s) sets '%s' = %s, which would change the "
                        "computation (%s); tokwatt does not model it",
                        origin, c->architecture, c->arch, u.field, u.value, u.why);
        else
            st = TW_ERR(TW_ERR_UNSUPPORTED,
                        "%s: %s (model_type %s) is not modelled by tokwatt: '%s' = %s would "
                        "change the computation (%s); tokwatt models %s",
                        origin, c->architecture, c->arch, u.field, u.value, u.why,
                        tw_model_supported());
        goto done;
    }
    if (!fam) {
        const char *what = tw_implied_difference(c->architecture, c->arch);
        st = TW_ERR(TW_ERR_UNSUPPORTED,
                    "%s: %s (model_type %s) is not modelled by tokwatt: %s; tokwatt models %s",
                    origin, c->architecture, c->arch,
                    what ? what : "the architecture is not in tokwatt's table of modelled ones",
                    tw_model_supported());
        goto done;
    }
    /* every other field must be one tokwatt reads or knows to leave the forward pass alone */
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (key[0] == '_' || tw_in_list(tw_common_fields, key) || tw_in_list(fam->fields, key))
            continue;
        st = TW_ERR(TW_ERR_UNSUPPORTED,
                    "%s: %s (model_type %s) sets '%s', a field tokwatt does not know for %s: it "
                    "may change the computation, so the config is refused",
                    origin, c->architecture, c->arch, key, c->arch);
        goto done;
    }
    c->qkv_bias = fam->qkv_bias;
    c->fused_layout = fam->fused_layout;

#define TW_GET_INT(key, req, def, min, dst)                                                        \
    if ((st = tw_json_int(root, origin, key, req, def, min, dst)) != TW_OK) goto done
    TW_GET_INT("hidden_size", 1, 0, 1, &c->hidden);
    TW_GET_INT("intermediate_size", 1, 0, 1, &c->intermediate);
    TW_GET_INT("num_hidden_layers", 1, 0, 1, &c->n_layers);
    TW_GET_INT("num_attention_heads", 1, 0, 1, &c->n_heads);
    TW_GET_INT("num_key_value_heads", 0, fam->default_kv_heads ? fam->default_kv_heads : c->n_heads,
               1, &c->n_kv_heads);
    TW_GET_INT("vocab_size", 1, 0, 2, &c->vocab);
    TW_GET_INT("max_position_embeddings", 0, fam->default_max_pos, 1, &c->max_pos);
    int hd_default = fam->default_head_dim ? fam->default_head_dim : c->hidden / c->n_heads;
    TW_GET_INT("head_dim", 0, hd_default, 2, &c->head_dim);
#undef TW_GET_INT
    if (!fam->default_head_dim && !fam->mla &&
        (json_object_get(root, "head_dim") == NULL ||
         json_is_null(json_object_get(root, "head_dim")))) {
        if (c->hidden % c->n_heads != 0) {
            st = TW_ERR(TW_ERR_PARSE,
                        "%s: num_attention_heads (%d) does not divide hidden_size (%d) and no "
                        "head_dim is given",
                        origin, c->n_heads, c->hidden);
            goto done;
        }
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        st = TW_ERR(TW_ERR_PARSE,
                    "%s: num_key_value_heads (%d) does not divide num_attention_heads (%d)", origin,
                    c->n_kv_heads, c->n_heads);
        goto done;
    }
    if (!fam->mla && c->head_dim % 2 != 0) {
        st = TW_ERR(TW_ERR_PARSE, "%s: head_dim (%d) must be even for RoPE", origin, c->head_dim);
        goto done;
    }
    double eps = 0;
    if ((st = tw_json_num(root, origin, "rms_norm_eps", 0, fam->default_eps, &eps)) != TW_OK)
        goto done;
    if (!(eps > 0 && eps < 1)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: rms_norm_eps must be in (0, 1)", origin);
        goto done;
    }
    c->rms_eps = (float)eps;
    if ((st = tw_json_bool(root, origin, "tie_word_embeddings", 0, &c->tie_embeddings)) != TW_OK)
        goto done;
    c->qk_norm = fam->qk_norm;
    if ((st = tw_model_parse_window(root, origin, fam, c)) != TW_OK) goto done;
    double mscale2 = 1.0;
    if ((st = tw_model_parse_rope(root, origin, c, &mscale2)) != TW_OK) goto done;
    c->attn_scale = (float)(1.0 / sqrt((double)c->head_dim));
    if ((st = tw_model_parse_moe(root, origin, fam, c)) != TW_OK) goto done;
    if (fam->mla && (st = tw_model_parse_mla(root, origin, fam, c, mscale2)) != TW_OK) goto done;
    c->json = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
    if (!c->json) st = TW_ERR(TW_ERR_NOMEM, "%s: cannot serialise config", origin);
done:
    json_decref(root);
    return st;
}

tw_status tw_model_load(const char *name_or_path, tw_model_config *cfg) {
    char path[1024];
    size_t n = strlen(name_or_path);
    int is_path =
        strchr(name_or_path, '/') != NULL || (n > 5 && !strcmp(name_or_path + n - 5, ".json"));
    if (is_path) {
        snprintf(path, sizeof path, "%s", name_or_path);
    } else {
        char rel[512];
        snprintf(rel, sizeof rel, "models/%s.json", name_or_path);
        tw_status st = tw_config_path(rel, path, sizeof path);
        if (st != TW_OK)
            return TW_ERR(TW_ERR_INVALID,
                          "unknown model '%s': no configs/models/%s.json (give a name from "
                          "configs/models/ or a path to a config.json)",
                          name_or_path, name_or_path);
    }
    char *text = NULL;
    TW_TRY(tw_read_file_max(path, TW_JSON_MAX_BYTES, &text, NULL));
    tw_status st = tw_model_parse(text, path, cfg);
    free(text);
    return st;
}

void tw_model_free(tw_model_config *cfg) {
    free(cfg->json);
    cfg->json = NULL;
}

int tw_model_layer_window(const tw_model_config *c, int layer) {
    return c->sliding_window > 0 && layer >= c->window_layer0 ? c->sliding_window : 0;
}

double tw_model_attended_positions(const tw_model_config *c, int ctx) {
    double n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int w = tw_model_layer_window(c, l);
        n += (double)(w > 0 && w < ctx ? w : ctx);
    }
    return n;
}

int tw_model_layer_is_moe(const tw_model_config *c, int layer) {
    if (c->n_experts <= 0 || layer < c->moe_first_layer) return 0;
    if (layer < 1024 && (c->mlp_only[layer / 64] >> (layer % 64) & 1)) return 0;
    return (layer + 1) % (c->moe_step > 0 ? c->moe_step : 1) == 0;
}

int tw_model_moe_layers(const tw_model_config *c) {
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) n += tw_model_layer_is_moe(c, l);
    return n;
}

/* Attention projections of one layer (weights that multiply a token; no norms or biases). */
static uint64_t tw_model_attn_matmul(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, nh = (uint64_t)c->n_heads;
    if (!c->mla) {
        uint64_t d = (uint64_t)c->head_dim;
        return h * d * (nh * 2 + (uint64_t)c->n_kv_heads * 2);
    }
    uint64_t qk = (uint64_t)(c->qk_nope_dim + c->qk_rope_dim), ql = (uint64_t)c->q_lora_rank;
    uint64_t q = ql ? h * ql + ql * nh * qk : h * nh * qk;
    uint64_t kv = h * (uint64_t)(c->kv_lora_rank + c->qk_rope_dim) +
                  (uint64_t)c->kv_lora_rank * nh * (uint64_t)(c->qk_nope_dim + c->v_head_dim);
    return q + kv + nh * (uint64_t)c->v_head_dim * h;
}

/* Norm weights and biases of one layer's attention. */
static uint64_t tw_model_attn_small(const tw_model_config *c) {
    uint64_t d = (uint64_t)c->head_dim, n = 0;
    if (c->qkv_bias) n += d * ((uint64_t)c->n_heads + 2 * (uint64_t)c->n_kv_heads);
    if (c->qk_norm) n += 2 * d;
    if (c->mla) n += (uint64_t)c->q_lora_rank + (uint64_t)c->kv_lora_rank;
    return n;
}

/* One expert's (or the dense MLP's) weights for width f. */
static uint64_t tw_model_mlp(const tw_model_config *c, int f) {
    return 3 * (uint64_t)c->hidden * (uint64_t)f;
}

uint64_t tw_model_params_nonembed(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, total = 0;
    uint64_t attn = tw_model_attn_matmul(c) + tw_model_attn_small(c) + 2 * h;
    for (int l = 0; l < c->n_layers; l++) {
        total += attn;
        if (!tw_model_layer_is_moe(c, l)) {
            total += tw_model_mlp(c, c->intermediate);
            continue;
        }
        uint64_t e = (uint64_t)c->n_experts;
        total += e * h + (c->router_bias ? e : 0) + e * tw_model_mlp(c, c->moe_intermediate) +
                 tw_model_mlp(c, c->n_shared_experts * c->moe_intermediate);
    }
    uint64_t head = c->tie_embeddings ? 0 : (uint64_t)c->vocab * h;
    return total + h + head;
}

uint64_t tw_model_params(const tw_model_config *c) {
    return tw_model_params_nonembed(c) + (uint64_t)c->vocab * (uint64_t)c->hidden;
}

uint64_t tw_model_params_active(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        total += tw_model_attn_matmul(c);
        if (!tw_model_layer_is_moe(c, l))
            total += tw_model_mlp(c, c->intermediate);
        else
            total += (uint64_t)c->n_experts * h +
                     (uint64_t)c->n_experts_per_tok * tw_model_mlp(c, c->moe_intermediate) +
                     tw_model_mlp(c, c->n_shared_experts * c->moe_intermediate);
    }
    return total + (uint64_t)c->vocab * h; /* the LM head, tied or not */
}

uint64_t tw_model_routed_expert_params(const tw_model_config *c) {
    return c->n_experts > 0 ? tw_model_mlp(c, c->moe_intermediate) : 0;
}

double tw_model_kv_elems_per_position(const tw_model_config *c) {
    if (c->mla) return (double)(c->kv_lora_rank + c->qk_rope_dim);
    return 2.0 * c->n_kv_heads * c->head_dim;
}

double tw_model_flops_per_token(const tw_model_config *c, int ctx) {
    /* 2 FLOPs per multiply-accumulate over every weight that multiplies the token (the LM head
     * too, tied or not; not the embedding lookup, norms or biases; k routed experts of E), plus
     * QK^T and PV over the positions each layer attends. */
    double matmul = 2.0 * (double)tw_model_params_active(c);
    double per_pos = c->mla ? 2.0 * c->n_heads * (c->qk_nope_dim + c->qk_rope_dim + c->v_head_dim)
                            : 4.0 * c->n_heads * c->head_dim;
    return matmul + per_pos * tw_model_attended_positions(c, ctx);
}

/* ---- synthetic weights ---------------------------------------------------------------------- */

static inline uint64_t tw_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void tw_weight_shape(const tw_model_config *c, tw_weight_kind k, int *rows, int *cols) {
    int h = c->hidden, hd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int f = c->intermediate, fm = c->moe_intermediate, e = c->n_experts;
    int fs = c->n_shared_experts * c->moe_intermediate;
    int qk = c->qk_nope_dim + c->qk_rope_dim;
    switch (k) {
    case TW_W_EMBED:
        *rows = c->vocab, *cols = h;
        break;
    case TW_W_LM_HEAD:
        *rows = c->vocab, *cols = h;
        break;
    case TW_W_ATTN_NORM:
    case TW_W_FFN_NORM:
    case TW_W_FINAL_NORM:
        *rows = 1, *cols = h;
        break;
    case TW_W_Q:
        *rows = c->mla ? c->n_heads * qk : hd, *cols = h;
        break;
    case TW_W_K:
    case TW_W_V:
        *rows = kvd, *cols = h;
        break;
    case TW_W_O:
        *rows = h, *cols = c->mla ? c->n_heads * c->v_head_dim : hd;
        break;
    case TW_W_GATE:
    case TW_W_UP:
        *rows = f, *cols = h;
        break;
    case TW_W_DOWN:
        *rows = h, *cols = f;
        break;
    case TW_W_Q_BIAS:
        *rows = 1, *cols = hd;
        break;
    case TW_W_K_BIAS:
    case TW_W_V_BIAS:
        *rows = 1, *cols = kvd;
        break;
    case TW_W_Q_NORM:
    case TW_W_K_NORM:
        *rows = 1, *cols = c->head_dim;
        break;
    case TW_W_ROUTER:
        *rows = e, *cols = h;
        break;
    case TW_W_ROUTER_BIAS:
        *rows = 1, *cols = e;
        break;
    case TW_W_EXPERT_GATE:
    case TW_W_EXPERT_UP:
        *rows = e * fm, *cols = h;
        break;
    case TW_W_EXPERT_DOWN:
        *rows = e * h, *cols = fm;
        break;
    case TW_W_SHARED_GATE:
    case TW_W_SHARED_UP:
        *rows = fs, *cols = h;
        break;
    case TW_W_SHARED_DOWN:
        *rows = h, *cols = fs;
        break;
    case TW_W_Q_A:
        *rows = c->q_lora_rank, *cols = h;
        break;
    case TW_W_Q_A_NORM:
        *rows = 1, *cols = c->q_lora_rank;
        break;
    case TW_W_Q_B:
        *rows = c->n_heads * qk, *cols = c->q_lora_rank;
        break;
    case TW_W_KV_A:
        *rows = c->kv_lora_rank + c->qk_rope_dim, *cols = h;
        break;
    case TW_W_KV_A_NORM:
        *rows = 1, *cols = c->kv_lora_rank;
        break;
    case TW_W_KV_B:
        *rows = c->n_heads * (c->qk_nope_dim + c->v_head_dim), *cols = c->kv_lora_rank;
        break;
    default:
        *rows = *cols = 0;
    }
}

int tw_weight_per_layer(tw_weight_kind k) {
    return !(k == TW_W_EMBED || k == TW_W_FINAL_NORM || k == TW_W_LM_HEAD);
}

int tw_weight_is_norm(tw_weight_kind k) {
    return k == TW_W_ATTN_NORM || k == TW_W_FFN_NORM || k == TW_W_FINAL_NORM || k == TW_W_Q_NORM ||
           k == TW_W_K_NORM || k == TW_W_Q_A_NORM || k == TW_W_KV_A_NORM;
}

static int tw_weight_is_bias(tw_weight_kind k) {
    return k == TW_W_Q_BIAS || k == TW_W_K_BIAS || k == TW_W_V_BIAS || k == TW_W_ROUTER_BIAS;
}

int tw_weight_is_1d(tw_weight_kind k) {
    return tw_weight_is_norm(k) || tw_weight_is_bias(k);
}

int tw_weight_expert_rows(const tw_model_config *c, tw_weight_kind k) {
    if (k == TW_W_EXPERT_GATE || k == TW_W_EXPERT_UP) return c->moe_intermediate;
    if (k == TW_W_EXPERT_DOWN) return c->hidden;
    return 0;
}

int tw_weight_in_layer(const tw_model_config *c, tw_weight_kind k, int layer) {
    int moe = tw_model_layer_is_moe(c, layer);
    switch (k) {
    case TW_W_EMBED:
    case TW_W_FINAL_NORM:
    case TW_W_LM_HEAD:
        return tw_weight_present(c, k);
    case TW_W_ATTN_NORM:
    case TW_W_FFN_NORM:
    case TW_W_O:
        return 1;
    case TW_W_Q:
        return !c->mla || c->q_lora_rank == 0;
    case TW_W_K:
    case TW_W_V:
        return !c->mla;
    case TW_W_Q_BIAS:
    case TW_W_K_BIAS:
    case TW_W_V_BIAS:
        return c->qkv_bias;
    case TW_W_Q_NORM:
    case TW_W_K_NORM:
        return c->qk_norm;
    case TW_W_GATE:
    case TW_W_UP:
    case TW_W_DOWN:
        return !moe;
    case TW_W_ROUTER:
    case TW_W_EXPERT_GATE:
    case TW_W_EXPERT_UP:
    case TW_W_EXPERT_DOWN:
        return moe;
    case TW_W_ROUTER_BIAS:
        return moe && c->router_bias;
    case TW_W_SHARED_GATE:
    case TW_W_SHARED_UP:
    case TW_W_SHARED_DOWN:
        return moe && c->n_shared_experts > 0;
    case TW_W_Q_A:
    case TW_W_Q_A_NORM:
    case TW_W_Q_B:
        return c->mla && c->q_lora_rank > 0;
    case TW_W_KV_A:
    case TW_W_KV_A_NORM:
    case TW_W_KV_B:
        return c->mla;
    default:
        return 0;
    }
}

int tw_weight_present(const tw_model_config *c, tw_weight_kind k) {
    if (k < 0 || k >= TW_W_KINDS) return 0;
    if (k == TW_W_LM_HEAD) return !c->tie_embeddings;
    if (!tw_weight_per_layer(k)) return 1;
    for (int l = 0; l < c->n_layers; l++)
        if (tw_weight_in_layer(c, k, l)) return 1;
    return 0;
}

float tw_weight_scale(const tw_model_config *c, tw_weight_kind k) {
    int rows, cols;
    tw_weight_shape(c, k, &rows, &cols);
    /* uniform in [-a, a) has variance a^2 / 3 */
    if (tw_weight_is_norm(k)) return 0.1f; /* around 1: see tw_weight_value */
    switch (k) {
    case TW_W_EMBED:
        return 0.02f * sqrtf(3.0f); /* std 0.02, as in trained Llama checkpoints */
    case TW_W_Q_BIAS:
    case TW_W_K_BIAS:
    case TW_W_V_BIAS:
        return 1.0f; /* as large as the projection's output: a misplaced bias shows */
    case TW_W_ROUTER_BIAS:
        return 0.05f; /* the size of the sigmoid scores' differences: it moves some choices */
    default:
        return sqrtf(3.0f / (float)(cols > 0 ? cols : 1));
    }
}

/* The part of a per-layer tensor's name after "model.layers.L.", Llama-family layout. */
static const char *tw_weight_suffix(tw_weight_kind k) {
    static const char *per_layer[TW_W_KINDS] = {
        [TW_W_ATTN_NORM] = "input_layernorm.weight",
        [TW_W_Q] = "self_attn.q_proj.weight",
        [TW_W_K] = "self_attn.k_proj.weight",
        [TW_W_V] = "self_attn.v_proj.weight",
        [TW_W_O] = "self_attn.o_proj.weight",
        [TW_W_FFN_NORM] = "post_attention_layernorm.weight",
        [TW_W_GATE] = "mlp.gate_proj.weight",
        [TW_W_UP] = "mlp.up_proj.weight",
        [TW_W_DOWN] = "mlp.down_proj.weight",
        [TW_W_Q_BIAS] = "self_attn.q_proj.bias",
        [TW_W_K_BIAS] = "self_attn.k_proj.bias",
        [TW_W_V_BIAS] = "self_attn.v_proj.bias",
        [TW_W_Q_NORM] = "self_attn.q_norm.weight",
        [TW_W_K_NORM] = "self_attn.k_norm.weight",
        [TW_W_ROUTER] = "mlp.gate.weight",
        [TW_W_ROUTER_BIAS] = "mlp.gate.e_score_correction_bias",
        [TW_W_SHARED_GATE] = "mlp.shared_experts.gate_proj.weight",
        [TW_W_SHARED_UP] = "mlp.shared_experts.up_proj.weight",
        [TW_W_SHARED_DOWN] = "mlp.shared_experts.down_proj.weight",
        [TW_W_Q_A] = "self_attn.q_a_proj.weight",
        [TW_W_Q_A_NORM] = "self_attn.q_a_layernorm.weight",
        [TW_W_Q_B] = "self_attn.q_b_proj.weight",
        [TW_W_KV_A] = "self_attn.kv_a_proj_with_mqa.weight",
        [TW_W_KV_A_NORM] = "self_attn.kv_a_layernorm.weight",
        [TW_W_KV_B] = "self_attn.kv_b_proj.weight",
    };
    return k >= 0 && k < TW_W_KINDS && per_layer[k] ? per_layer[k] : "?";
}

void tw_weight_hf_name(tw_weight_kind k, int layer, char *buf, size_t n) {
    static const char *expert[] = {"gate_proj", "up_proj", "down_proj"};
    if (k == TW_W_EMBED)
        snprintf(buf, n, "model.embed_tokens.weight");
    else if (k == TW_W_FINAL_NORM)
        snprintf(buf, n, "model.norm.weight");
    else if (k == TW_W_LM_HEAD)
        snprintf(buf, n, "lm_head.weight");
    else if (k >= TW_W_EXPERT_GATE && k <= TW_W_EXPERT_DOWN)
        snprintf(buf, n, "model.layers.%d.mlp.experts.0.%s.weight", layer,
                 expert[k - TW_W_EXPERT_GATE]);
    else
        snprintf(buf, n, "model.layers.%d.%s", layer, tw_weight_suffix(k));
}

void tw_weight_hf_name_of(const tw_model_config *c, tw_weight_kind k, int layer, int expert,
                          char *buf, size_t n) {
    /* Mixtral's checkpoints keep the original names: block_sparse_moe, w1 (gate), w3 (up),
     * w2 (down) */
    int mixtral = !strcmp(c->arch, "mixtral");
    static const char *names[] = {"gate_proj", "up_proj", "down_proj"};
    static const char *mix[] = {"w1", "w3", "w2"};
    if (k >= TW_W_EXPERT_GATE && k <= TW_W_EXPERT_DOWN)
        snprintf(buf, n, "model.layers.%d.%s.experts.%d.%s.weight", layer,
                 mixtral ? "block_sparse_moe" : "mlp", expert,
                 (mixtral ? mix : names)[k - TW_W_EXPERT_GATE]);
    else if (k == TW_W_ROUTER && mixtral)
        snprintf(buf, n, "model.layers.%d.block_sparse_moe.gate.weight", layer);
    else
        tw_weight_hf_name(k, layer, buf, n);
}

/* The routing skew (tw_model.h): a seeded Fisher-Yates permutation of the experts per layer
 * gives each a rank; the logit bias is -skew * ln(rank). */
void tw_moe_skew_bias(const tw_model_config *c, uint64_t seed, double skew, int layer,
                      float *bias) {
    int e = c->n_experts;
    if (e <= 0) return;
    int *rank = malloc(sizeof(int) * (size_t)e);
    if (!rank) { /* no permutation: the identity order (still deterministic) */
        for (int i = 0; i < e; i++) bias[i] = (float)(-skew * log((double)(i + 1)));
        return;
    }
    for (int i = 0; i < e; i++) rank[i] = i;
    uint64_t st = tw_splitmix64(seed ^ 0x736b657700000000ull ^ ((uint64_t)(uint32_t)layer << 8));
    for (int i = e - 1; i > 0; i--) {
        st = tw_splitmix64(st);
        int j = (int)(st % (uint64_t)(i + 1));
        int t = rank[i];
        rank[i] = rank[j];
        rank[j] = t;
    }
    for (int i = 0; i < e; i++) bias[i] = (float)(-skew * log((double)(rank[i] + 1)));
    free(rank);
}

static inline uint64_t tw_weight_stream(uint64_t seed, tw_weight_kind k, int layer) {
    int l = tw_weight_per_layer(k) ? layer : 0;
    return tw_splitmix64(seed ^ ((uint64_t)k << 56) ^ ((uint64_t)(uint32_t)l << 40));
}

static inline float tw_weight_from_u(uint64_t u, float scale, int is_norm) {
    float r = (float)(u >> 40) * (2.0f / 16777216.0f) - 1.0f; /* exact in float: 24 bits */
    return is_norm ? 1.0f + scale * r : scale * r;
}

float tw_weight_value(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer,
                      int64_t row, int64_t col) {
    int rows, cols;
    tw_weight_shape(c, k, &rows, &cols);
    uint64_t base = tw_weight_stream(seed, k, layer);
    int is_norm = tw_weight_is_norm(k);
    return tw_weight_from_u(tw_splitmix64(base + (uint64_t)row * (uint64_t)cols + (uint64_t)col),
                            tw_weight_scale(c, k), is_norm);
}

/* Generates the slice row by row into fp32 (out_f32) or bf16 (out_bf16). */
static void tw_weight_fill_any(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer,
                               int row0, int nrows, int col0, int ncols, float *out_f32,
                               tw_bf16 *out_bf16) {
    int rows, cols;
    tw_weight_shape(c, k, &rows, &cols);
    uint64_t base = tw_weight_stream(seed, k, layer);
    float scale = tw_weight_scale(c, k);
    int is_norm = tw_weight_is_norm(k);
#pragma omp parallel for schedule(static) if ((int64_t)nrows * ncols > 65536)
    for (int r = 0; r < nrows; r++) {
        uint64_t rb = base + (uint64_t)(row0 + r) * (uint64_t)cols + (uint64_t)col0;
        size_t off = (size_t)r * ncols;
        for (int j = 0; j < ncols; j++) {
            float v = tw_weight_from_u(tw_splitmix64(rb + (uint64_t)j), scale, is_norm);
            if (out_bf16)
                out_bf16[off + j] = tw_bf16_from_f32(v);
            else
                out_f32[off + j] = v;
        }
    }
}

void tw_weight_fill(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer, int row0,
                    int nrows, int col0, int ncols, float *out) {
    tw_weight_fill_any(c, seed, k, layer, row0, nrows, col0, ncols, out, NULL);
}

void tw_weight_fill_bf16(const tw_model_config *c, uint64_t seed, tw_weight_kind k, int layer,
                         int row0, int nrows, int col0, int ncols, tw_bf16 *out) {
    tw_weight_fill_any(c, seed, k, layer, row0, nrows, col0, ncols, NULL, out);
}

void tw_prompt_tokens(uint64_t seed, int batch, int len, int vocab, int *tokens) {
    uint64_t base = tw_splitmix64(seed ^ 0x70726f6d70740000ull); /* "prompt" */
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < len; i++) {
            uint64_t u = tw_splitmix64(base + (uint64_t)b * 1000003ull + (uint64_t)i);
            tokens[(size_t)b * len + i] = (int)(u % (uint64_t)vocab);
        }
}
