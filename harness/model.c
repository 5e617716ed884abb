/* Model configs (Hugging Face config.json, LlamaConfig fields) and synthetic weights. */
#include "tw_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"

/* ---- config parsing --------------------------------------------------------------------- */

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

static tw_status tw_model_parse_rope(json_t *root, const char *origin, tw_model_config *c) {
    double theta = 0;
    TW_TRY(tw_json_num(root, origin, "rope_theta", 0, 10000.0, &theta));
    if (!(theta > 1.0)) return TW_ERR(TW_ERR_PARSE, "%s: rope_theta must be > 1", origin);
    memset(&c->rope, 0, sizeof c->rope);
    c->rope.theta = (float)theta;
    c->rope.type = TW_ROPE_DEFAULT;
    c->rope.factor = 1.0f;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return TW_OK;
    if (!json_is_object(rs))
        return TW_ERR(TW_ERR_PARSE, "%s: rope_scaling must be an object", origin);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    if (!type) return TW_ERR(TW_ERR_PARSE, "%s: rope_scaling has no rope_type", origin);
    double factor = 1;
    TW_TRY(tw_json_num(rs, origin, "factor", 1, 1.0, &factor));
    if (!(factor > 0)) return TW_ERR(TW_ERR_PARSE, "%s: rope_scaling.factor must be > 0", origin);
    c->rope.factor = (float)factor;
    if (!strcmp(type, "default")) {
        c->rope.type = TW_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        c->rope.type = TW_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        double lo = 0, hi = 0, orig = 0;
        TW_TRY(tw_json_num(rs, origin, "low_freq_factor", 1, 0, &lo));
        TW_TRY(tw_json_num(rs, origin, "high_freq_factor", 1, 0, &hi));
        TW_TRY(tw_json_num(rs, origin, "original_max_position_embeddings", 1, 0, &orig));
        if (!(lo > 0 && hi > lo && orig > 0))
            return TW_ERR(TW_ERR_PARSE,
                          "%s: llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor "
                          "and original_max_position_embeddings > 0",
                          origin);
        c->rope.type = TW_ROPE_LLAMA3;
        c->rope.low_freq_factor = (float)lo;
        c->rope.high_freq_factor = (float)hi;
        c->rope.original_max_pos = (float)orig;
    } else {
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: rope_scaling type '%s' is not supported (default, linear, llama3)",
                      origin, type);
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
    json_t *mt = json_object_get(root, "model_type");
    snprintf(c->arch, sizeof c->arch, "%s", json_is_string(mt) ? json_string_value(mt) : "llama");

#define TW_GET_INT(key, req, def, min, dst)                                                        \
    if ((st = tw_json_int(root, origin, key, req, def, min, dst)) != TW_OK) goto done
    TW_GET_INT("hidden_size", 1, 0, 1, &c->hidden);
    TW_GET_INT("intermediate_size", 1, 0, 1, &c->intermediate);
    TW_GET_INT("num_hidden_layers", 1, 0, 1, &c->n_layers);
    TW_GET_INT("num_attention_heads", 1, 0, 1, &c->n_heads);
    TW_GET_INT("num_key_value_heads", 0, c->n_heads, 1, &c->n_kv_heads);
    TW_GET_INT("vocab_size", 1, 0, 2, &c->vocab);
    TW_GET_INT("max_position_embeddings", 0, 4096, 1, &c->max_pos);
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
    if ((st = tw_json_num(root, origin, "rms_norm_eps", 0, 1e-5, &eps)) != TW_OK) goto done;
    if (!(eps > 0 && eps < 1)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: rms_norm_eps must be in (0, 1)", origin);
        goto done;
    }
    c->rms_eps = (float)eps;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie) && !json_is_null(tie)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: tie_word_embeddings must be true or false", origin);
        goto done;
    }
    c->tie_embeddings = tie && json_is_true(tie);
    json_t *bias = json_object_get(root, "attention_bias");
    c->attn_bias = (bias && json_is_true(bias)) || !strcmp(c->arch, "qwen2");
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

uint64_t tw_model_params_nonembed(const tw_model_config *c) {
    uint64_t h = (uint64_t)c->hidden, d = (uint64_t)c->head_dim;
    uint64_t attn = h * d * ((uint64_t)c->n_heads * 2 + (uint64_t)c->n_kv_heads * 2);
    uint64_t mlp = 3 * h * (uint64_t)c->intermediate;
    uint64_t per_layer = attn + mlp + 2 * h;
    uint64_t head = c->tie_embeddings ? 0 : (uint64_t)c->vocab * h;
    return per_layer * (uint64_t)c->n_layers + h + head;
}

uint64_t tw_model_params(const tw_model_config *c) {
    return tw_model_params_nonembed(c) + (uint64_t)c->vocab * (uint64_t)c->hidden;
}

double tw_model_flops_per_token(const tw_model_config *c, int ctx) {
    /* 2 FLOPs per multiply-accumulate over every weight that multiplies the token (the LM head
     * too, tied or not; not the embedding lookup), plus QK^T and PV over ctx positions. */
    double matmul = 2.0 * (double)(tw_model_params_nonembed(c) -
                                   (uint64_t)c->hidden * (2 * (uint64_t)c->n_layers + 1));
    if (c->tie_embeddings) matmul += 2.0 * (double)c->vocab * c->hidden;
    double attn = 4.0 * (double)c->n_layers * c->n_heads * c->head_dim * (double)ctx;
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
    default:
        *rows = *cols = 0;
    }
}

int tw_weight_per_layer(tw_weight_kind k) {
    return !(k == TW_W_EMBED || k == TW_W_FINAL_NORM || k == TW_W_LM_HEAD);
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
    if (k == TW_W_EMBED)
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
    int is_norm = k == TW_W_ATTN_NORM || k == TW_W_FFN_NORM || k == TW_W_FINAL_NORM;
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
    int is_norm = k == TW_W_ATTN_NORM || k == TW_W_FFN_NORM || k == TW_W_FINAL_NORM;
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
