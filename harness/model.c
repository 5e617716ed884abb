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
    TW_WIN_ALL,      /* every layer (Mistral, Phi-3) */
    TW_WIN_QWEN2     /* only with use_sliding_window, on layers >= max_window_layers */
} tw_window_rule;

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

/* The defaults are those of transformers' configuration classes (5.x). */
static const tw_family tw_families[] = {
    {"LlamaForCausalLM", "llama", 0, TW_WIN_NONE, 0, 0, 2048, 1e-6, tw_llama_fields},
    {"MistralForCausalLM", "mistral", 0, TW_WIN_ALL, 0, 8, 131072, 1e-6, tw_mistral_fields},
    {"Qwen2ForCausalLM", "qwen2", 1, TW_WIN_QWEN2, 0, 32, 32768, 1e-6, tw_qwen2_fields},
    {"Phi3ForCausalLM", "phi3", 0, TW_WIN_ALL, 1, 0, 4096, 1e-5, tw_phi3_fields},
};
#define TW_N_FAMILIES ((int)(sizeof tw_families / sizeof tw_families[0]))

const char *tw_model_supported(void) {
    return "LlamaForCausalLM (llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2), "
           "Phi3ForCausalLM (phi3)";
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
    /* the structural ones first: experts and latent attention */
    for (size_t i = 0; i < TW_STRUCTURAL; i++) {
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
        if (type && strcmp(type, "default") != 0 && strcmp(type, "linear") != 0 &&
            strcmp(type, "llama3") != 0) {
            json_t *t = json_object_get(rs, "rope_type");
            if (!t) t = json_object_get(rs, "type");
            TW_HIT(rfield, t,
                   "a RoPE scaling tokwatt does not implement (it has default, "
                   "linear and llama3)");
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
static tw_status tw_model_parse_rope(json_t *root, const char *origin, tw_model_config *c) {
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
    int hd_default = c->hidden / c->n_heads;
    TW_GET_INT("head_dim", 0, hd_default, 2, &c->head_dim);
#undef TW_GET_INT
    if (json_object_get(root, "head_dim") == NULL ||
        json_is_null(json_object_get(root, "head_dim"))) {
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
    if (c->head_dim % 2 != 0) {
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
    if ((st = tw_model_parse_window(root, origin, fam, c)) != TW_OK) goto done;
    if ((st = tw_model_parse_rope(root, origin, c)) != TW_OK) goto done;
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

/* Weights that multiply a token (the projections), per layer: q, k, v, o, gate, up, down. */
static uint64_t tw_model_matmul_per_layer(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, d = (uint64_t)c->head_dim;
    uint64_t attn = h * d * ((uint64_t)c->n_heads * 2 + (uint64_t)c->n_kv_heads * 2);
    return attn + 3 * h * (uint64_t)c->intermediate;
}

uint64_t tw_model_params_nonembed(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, d = (uint64_t)c->head_dim;
    uint64_t bias = c->qkv_bias ? d * ((uint64_t)c->n_heads + 2 * (uint64_t)c->n_kv_heads) : 0;
    uint64_t per_layer = tw_model_matmul_per_layer(c) + 2 * h + bias;
    uint64_t head = c->tie_embeddings ? 0 : (uint64_t)c->vocab * h;
    return per_layer * (uint64_t)c->n_layers + h + head;
}

uint64_t tw_model_params(const tw_model_config *c) {
    return tw_model_params_nonembed(c) + (uint64_t)c->vocab * (uint64_t)c->hidden;
}

double tw_model_flops_per_token(const tw_model_config *c, int ctx) {
    /* 2 FLOPs per multiply-accumulate over every weight that multiplies the token (the LM head
     * too, tied or not; not the embedding lookup, norms or biases), plus QK^T and PV over the
     * positions each layer attends. */
    double matmul =
        2.0 * ((double)tw_model_matmul_per_layer(c) * c->n_layers + (double)c->vocab * c->hidden);
    double attn = 4.0 * c->n_heads * c->head_dim * tw_model_attended_positions(c, ctx);
    return matmul + attn;
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
    int f = c->intermediate;
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
        *rows = hd, *cols = h;
        break;
    case TW_W_K:
    case TW_W_V:
        *rows = kvd, *cols = h;
        break;
    case TW_W_O:
        *rows = h, *cols = hd;
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
    default:
        *rows = *cols = 0;
    }
}

int tw_weight_per_layer(tw_weight_kind k) {
    return !(k == TW_W_EMBED || k == TW_W_FINAL_NORM || k == TW_W_LM_HEAD);
}

static int tw_weight_is_norm(tw_weight_kind k) {
    return k == TW_W_ATTN_NORM || k == TW_W_FFN_NORM || k == TW_W_FINAL_NORM;
}

static int tw_weight_is_bias(tw_weight_kind k) {
    return k == TW_W_Q_BIAS || k == TW_W_K_BIAS || k == TW_W_V_BIAS;
}

int tw_weight_is_1d(tw_weight_kind k) {
    return tw_weight_is_norm(k) || tw_weight_is_bias(k);
}

int tw_weight_present(const tw_model_config *c, tw_weight_kind k) {
    if (k == TW_W_LM_HEAD) return !c->tie_embeddings;
    if (tw_weight_is_bias(k)) return c->qkv_bias;
    return k >= 0 && k < TW_W_KINDS;
}

float tw_weight_scale(const tw_model_config *c, tw_weight_kind k) {
    int rows, cols;
    tw_weight_shape(c, k, &rows, &cols);
    /* uniform in [-a, a) has variance a^2 / 3 */
    switch (k) {
    case TW_W_EMBED:
        return 0.02f * sqrtf(3.0f); /* std 0.02, as in trained Llama checkpoints */
    case TW_W_ATTN_NORM:
    case TW_W_FFN_NORM:
    case TW_W_FINAL_NORM:
        return 0.1f; /* around 1: see tw_weight_value */
    case TW_W_Q_BIAS:
    case TW_W_K_BIAS:
    case TW_W_V_BIAS:
        return 1.0f; /* as large as the projection's output: a misplaced bias shows */
    default:
        return sqrtf(3.0f / (float)cols);
    }
}

void tw_weight_hf_name(tw_weight_kind k, int layer, char *buf, size_t n) {
    static const char *per_layer[] = {
        [TW_W_ATTN_NORM] = "input_layernorm", [TW_W_Q] = "self_attn.q_proj",
        [TW_W_K] = "self_attn.k_proj",        [TW_W_V] = "self_attn.v_proj",
        [TW_W_O] = "self_attn.o_proj",        [TW_W_FFN_NORM] = "post_attention_layernorm",
        [TW_W_GATE] = "mlp.gate_proj",        [TW_W_UP] = "mlp.up_proj",
        [TW_W_DOWN] = "mlp.down_proj",
    };
    if (k == TW_W_Q_BIAS || k == TW_W_K_BIAS || k == TW_W_V_BIAS)
        snprintf(buf, n, "model.layers.%d.self_attn.%s_proj.bias", layer,
                 k == TW_W_Q_BIAS   ? "q"
                 : k == TW_W_K_BIAS ? "k"
                                    : "v");
    else if (k == TW_W_EMBED)
        snprintf(buf, n, "model.embed_tokens.weight");
    else if (k == TW_W_FINAL_NORM)
        snprintf(buf, n, "model.norm.weight");
    else if (k == TW_W_LM_HEAD)
        snprintf(buf, n, "lm_head.weight");
    else
        snprintf(buf, n, "model.layers.%d.%s.weight", layer, per_layer[k]);
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
