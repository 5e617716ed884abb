/* Published Hugging Face config.json files (tests/data/hf-configs, sources in its README) and
 * hand-made variants: each is either modelled, with tokwatt's parameter count equal to the
 * published one (figures and their sources below), or refused with TW_ERR_UNSUPPORTED naming
 * the file, the architecture and the first field that would change the computation; and
 * `tokwatt run --model PATH` refuses it with exit code 1 and that message before doing any work.
 * Also: the sliding-window rules of each family, the q/k/v biases in the parameter count and the
 * memory plan, and the attended-positions count of windowed models. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tw_engine.h"
#include "tw_metrics.h"
#include "tw_model.h"
#include "tw_util.h"

static const char *src_dir(void) {
    const char *d = getenv("TW_SOURCE_DIR");
    cr_assert(d && *d, "TW_SOURCE_DIR names the source tree (set by ctest)");
    return d;
}

static void hf_path(const char *file, char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/data/hf-configs/%s", src_dir(), file);
}

static void expect_refused(tw_status st, const char *what, const char *arch, const char *field) {
    cr_assert_eq(st, TW_ERR_UNSUPPORTED, "%s: expected a refusal (TW_ERR_UNSUPPORTED), got %s: %s",
                 what, tw_status_name(st), st == TW_OK ? "accepted" : tw_last_error());
    const char *msg = tw_last_error();
    cr_assert(strstr(msg, arch), "%s: the message should name the architecture %s: %s", what, arch,
              msg);
    cr_assert(strstr(msg, field), "%s: the message should name '%s': %s", what, field, msg);
}

/* ---- the published configs ----------------------------------------------------------------- */
typedef struct {
    const char *file;
    /* modelled: the published parameter count; refused: 0 and the architecture and field */
    uint64_t params;
    const char *arch, *field;
    int window; /* modelled: the sliding window tokwatt applies (0: none) */
} hf_case;

/* Published parameter counts (the checkpoints are bf16: safetensors index total_size / 2):
 *   Llama 3.1 8B        8,030,261,248  model.safetensors.index.json total_size 16,060,522,496
 *   Llama 3.2 1B        1,235,814,400  the Hub's safetensors parameter count (one file, no
 *                                      index); also pinned in ModelCloud GPTQModel's
 *                                      tests/test_parameter_count.py
 *   Mistral 7B v0.3     7,248,023,552  total_size 14,496,047,104
 *   Qwen2.5 7B          7,615,616,512  total_size 15,231,233,024 (the model card: 7.61B)
 *   Phi-3 mini 4k       3,821,079,552  keras-hub phi3_presets.py "params": 3821079552 (the model
 *                                      card: 3.8B)
 *   Qwen3 8B            8,190,735,360  total_size 16,381,470,720 (the model card: 8.2B)
 *   Qwen3-30B-A3B      30,532,122,624  total_size 61,064,245,248 (the model card: 30.5B total,
 *                                      3.3B activated)
 *   Mixtral 8x7B       46,702,792,704  total_size 93,405,585,408 (46.7B)
 *   DeepSeek-V3       671,026,419,200  the main model without the multi-token-prediction layer
 *                                      61 and without the fp8 scales: DeepSeek's README_WEIGHTS
 *                                      ("671B of the main model weights and 14B of the MTP
 *                                      module", 685B on the Hub); the published file is refused
 *                                      for its fp8 quantization_config, see below
 *   DeepSeek-V2-Lite   15,706,484,224  the Hub's count (15.7B), with the Hub's q_lora_rank: null
 *                                      (missing from the copy kept here; see below)
 * The total_size figures were read from public copies of the index files, as for the others. */
static const hf_case hf_cases[] = {
    {"llama-3.1-8b.json", 8030261248ull, "LlamaForCausalLM", NULL, 0},
    {"llama-3.2-1b-instruct.json", 1235814400ull, "LlamaForCausalLM", NULL, 0},
    {"mistral-7b-v0.3.json", 7248023552ull, "MistralForCausalLM", NULL, 0},
    {"qwen2.5-7b.json", 7615616512ull, "Qwen2ForCausalLM", NULL, 0},
    {"phi-3-mini-4k-instruct.json", 3821079552ull, "Phi3ForCausalLM", NULL, 2047},
    {"mixtral-8x7b-v0.1.json", 46702792704ull, "MixtralForCausalLM", NULL, 0},
    {"qwen3-8b.json", 8190735360ull, "Qwen3ForCausalLM", NULL, 0},
    {"qwen3-30b-a3b.json", 30532122624ull, "Qwen3MoeForCausalLM", NULL, 0},
    {"deepseek-v3.json", 0, "DeepseekV3ForCausalLM", "quantization_config", 0},
    {"gemma-2-9b.json", 0, "Gemma2ForCausalLM", "hidden_act", 0},
    {"gemma-3-1b-it.json", 0, "Gemma3ForCausalLM", "hidden_activation", 0},
};

Test(configs, published_configs_are_modelled_exactly_or_refused_by_name) {
    for (size_t i = 0; i < sizeof hf_cases / sizeof hf_cases[0]; i++) {
        const hf_case *h = &hf_cases[i];
        char path[1024];
        hf_path(h->file, path, sizeof path);
        tw_model_config c;
        tw_status st = tw_model_load(path, &c);
        if (!h->field) {
            cr_assert_eq(st, TW_OK, "%s should be modelled: %s", h->file, tw_last_error());
            cr_assert_str_eq(c.architecture, h->arch, "%s", h->file);
            cr_assert_eq(tw_model_params(&c), h->params,
                         "%s: tokwatt counts %llu parameters, the checkpoint has %llu", h->file,
                         (unsigned long long)tw_model_params(&c), (unsigned long long)h->params);
            cr_assert_eq(c.sliding_window, h->window, "%s: sliding window %d, want %d", h->file,
                         c.sliding_window, h->window);
            tw_model_free(&c);
        } else {
            expect_refused(st, h->file, h->arch, h->field);
            cr_assert(strstr(tw_last_error(), h->file), "names the file: %s", tw_last_error());
        }
    }
}

Test(configs, qwen2_biases_are_in_the_parameter_count_and_the_memory_plan) {
    char path[1024];
    hf_path("qwen2.5-7b.json", path, sizeof path);
    tw_model_config c;
    cr_assert_eq(tw_model_load(path, &c), TW_OK, "%s", tw_last_error());
    cr_assert(c.qkv_bias, "Qwen2 has q/k/v biases");
    /* per layer (28 + 2 * 4) heads * 128 = 4608 bias values; 28 layers */
    uint64_t with = tw_model_params(&c);
    c.qkv_bias = 0;
    cr_assert_eq(with - tw_model_params(&c), 28ull * 4608, "bias parameters");
    c.qkv_bias = 1;
    tw_engine_opts o = {.cfg = &c,
                        .w_dtype = TW_BF16,
                        .kv_dtype = TW_BF16,
                        .max_batch = 1,
                        .max_seq = 16,
                        .max_prefill = 8,
                        .tp_size = 1};
    tw_mem_plan p;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_OK, "%s", tw_last_error());
    cr_assert_eq((uint64_t)p.params_local, 7615616512ull, "planned parameters %lld",
                 (long long)p.params_local);
    cr_assert_eq(p.weights_bytes, 2 * (size_t)7615616512ull);
    tw_model_free(&c);
}

/* ---- variants: a modelled architecture asking for something tokwatt does not model ------------
 */

/* Parses the published file with `edit` applied (a JSON object merged in; keys with null values
 * are deleted). */
static tw_status parse_edited(const char *file, const char *edit, tw_model_config *c) {
    char path[1024];
    hf_path(file, path, sizeof path);
    char *text = NULL;
    cr_assert_eq(tw_read_file(path, &text, NULL), TW_OK, "%s", tw_last_error());
    json_error_t je;
    json_t *root = json_loads(text, 0, &je), *e = json_loads(edit, 0, &je);
    free(text);
    cr_assert(root && e, "bad test JSON: %s", edit);
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v) {
        if (json_is_null(v))
            json_object_del(root, k);
        else
            json_object_set(root, k, v);
    }
    char *out = json_dumps(root, 0);
    json_decref(root);
    json_decref(e);
    tw_status st = tw_model_parse(out, file, c);
    free(out);
    if (st == TW_OK) tw_model_free(c);
    return st;
}

/* DeepSeek-V3's published config names fp8 weights (quantization_config): refused, as any
 * quantised checkpoint; as the bf16 model (the field removed, what configs/models/deepseek-r1.json
 * holds) it has exactly the main model's 671,026,419,200 parameters, 36.6 B of them active per
 * token (k = 8 of 256 experts, the shared expert, the dense layers, attention and the LM head:
 * the convention of DeepSeek's README_WEIGHTS, which leaves the embedding out), and its
 * multi-token-prediction layer is neither run nor counted. */
Test(configs, deepseek_v3_modelled_as_bf16_with_its_published_count) {
    tw_model_config c;
    char path[1024];
    hf_path("deepseek-v3.json", path, sizeof path);
    char *text = NULL;
    cr_assert_eq(tw_read_file(path, &text, NULL), TW_OK);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    json_object_del(root, "quantization_config");
    char *out = json_dumps(root, 0);
    json_decref(root);
    cr_assert_eq(tw_model_parse(out, "deepseek-v3.json", &c), TW_OK, "%s", tw_last_error());
    free(out);
    cr_assert_eq(tw_model_params(&c), 671026419200ull, "%llu",
                 (unsigned long long)tw_model_params(&c));
    cr_assert_eq(tw_model_params_active(&c), 36624596992ull, "%llu",
                 (unsigned long long)tw_model_params_active(&c));
    cr_assert_eq(tw_model_moe_layers(&c), 58, "first_k_dense_replace 3 of 61");
    cr_assert(c.mla && c.kv_lora_rank == 512 && c.qk_rope_dim == 64 && c.mtp_layers == 1);
    cr_assert_eq(tw_model_kv_elems_per_position(&c), 576.0, "the latent and the rope key");
    cr_assert_eq(c.rope.type, TW_ROPE_YARN);
    /* 1/sqrt(192) * (0.1 ln 40 + 1)^2 */
    double m = 0.1 * log(40.0) + 1.0;
    cr_assert(fabs(c.attn_scale - m * m / sqrt(192.0)) < 1e-7, "softmax scale %.9g",
              (double)c.attn_scale);
    /* the plan holds every expert; it does not fit this machine, and says so before
     * allocating */
    tw_engine_opts o = {.cfg = &c,
                        .w_dtype = TW_BF16,
                        .kv_dtype = TW_BF16,
                        .max_batch = 1,
                        .max_seq = 64,
                        .max_prefill = 32,
                        .tp_size = 1};
    tw_mem_plan p;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_OK, "%s", tw_last_error());
    cr_assert_eq((uint64_t)p.params_local, 671026419200ull);
    cr_assert_eq(p.weights_bytes, 2 * (size_t)671026419200ull);
    cr_assert_eq(p.kv_bytes, (size_t)61 * 64 * 576 * 2, "latent KV cache %zu", p.kv_bytes);
    o.tp_size = 8, o.tp_rank = 3; /* per rank: heads and expert columns split, the rest kept */
    cr_assert_eq(tw_engine_plan(&o, &p), TW_OK, "%s", tw_last_error());
    cr_assert_lt((uint64_t)p.params_local, 671026419200ull / 7);
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK);
    o.be = be, o.tp_size = 1, o.tp_rank = 0;
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_ERR_NOMEM, "1.3 TB of weights must not fit");
    cr_assert(strstr(tw_last_error(), "does not fit"), "%s", tw_last_error());
    tw_backend_destroy(be);
    tw_model_free(&c);
    /* the R1 preset's model is the same architecture and count */
    cr_assert_eq(tw_model_load("deepseek-r1", &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_model_params(&c), 671026419200ull);
    tw_model_free(&c);
}

Test(configs, deepseek_v2_lite_with_the_hubs_q_lora_rank) {
    /* the copy kept here lacks the Hub's "q_lora_rank": null, and transformers' default (1536)
     * then adds a q compression DeepSeek-V2-Lite does not have: tokwatt follows the class */
    char path[1024];
    hf_path("deepseek-v2-lite.json", path, sizeof path);
    tw_model_config c;
    cr_assert_eq(tw_model_load(path, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(c.q_lora_rank, 1536);
    tw_model_free(&c);
    char *text = NULL;
    cr_assert_eq(tw_read_file(path, &text, NULL), TW_OK);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    json_object_set_new(root, "q_lora_rank", json_null());
    char *out = json_dumps(root, 0);
    json_decref(root);
    cr_assert_eq(tw_model_parse(out, "deepseek-v2-lite.json", &c), TW_OK, "%s", tw_last_error());
    free(out);
    cr_assert_eq(c.q_lora_rank, 0);
    cr_assert_eq(tw_model_params(&c), 15706484224ull, "%llu",
                 (unsigned long long)tw_model_params(&c));
    cr_assert_eq(tw_model_moe_layers(&c), 26);
    cr_assert(c.moe_scoring == TW_MOE_SOFTMAX && !c.norm_topk_prob && c.n_group == 1);
    tw_model_free(&c);
}

Test(configs, expert_layers_and_active_parameters) {
    tw_model_config c;
    char path[1024];
    hf_path("mixtral-8x7b-v0.1.json", path, sizeof path);
    cr_assert_eq(tw_model_load(path, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_model_moe_layers(&c), 32);
    /* 2 of 8 experts: 12.9 B with the embedding, the figure Mistral quotes (norms, 262,144
     * weights, are not multiplied by the token and not counted) */
    cr_assert_eq(tw_model_params_active(&c) + 32000ull * 4096, 12879659008ull, "%llu",
                 (unsigned long long)tw_model_params_active(&c));
    /* decode reads 2 experts per layer for one token, all 8 for a large batch (fp32 weights
     * and cache; context 1: 32 layers x 1 position x 2 x 8 KV heads x 128 x 4 bytes per
     * sequence) */
    double one = tw_metric_decode_bytes_per_step(&c, TW_F32, TW_F32, 1, 1, 2.0);
    double all = tw_metric_decode_bytes_per_step(&c, TW_F32, TW_F32, 64, 1, 8.0);
    cr_assert(fabs(all - one - 4.0 * (6.0 * 32 * 3 * 4096.0 * 14336 + 63 * 4096.0) -
                   63.0 * 32 * 2 * 8 * 128 * 4) < 1,
              "six more experts per layer, 63 more embedding rows and KV caches");
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_F32, TW_F32, 64, 1, 9.0), all,
                 "at most every expert");
    cr_assert(fabs(tw_metric_uniform_experts(&c, 1) - 2.0) < 1e-9);
    cr_assert(tw_metric_uniform_experts(&c, 64) > 7.99);
    tw_model_free(&c);
    /* Qwen3-MoE: decoder_sparse_step and mlp_only_layers */
    hf_path("qwen3-30b-a3b.json", path, sizeof path);
    char *text = NULL;
    cr_assert_eq(tw_read_file(path, &text, NULL), TW_OK);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    json_object_set_new(root, "decoder_sparse_step", json_integer(2));
    json_object_set_new(root, "mlp_only_layers", json_pack("[i, i]", 1, 7));
    char *out = json_dumps(root, 0);
    json_decref(root);
    cr_assert_eq(tw_model_parse(out, "q.json", &c), TW_OK, "%s", tw_last_error());
    free(out);
    /* layers 1, 3, 5, ... are MoE, except 1 and 7: 24 - 2 = 22 */
    cr_assert(!tw_model_layer_is_moe(&c, 0) && !tw_model_layer_is_moe(&c, 1) &&
              tw_model_layer_is_moe(&c, 3) && !tw_model_layer_is_moe(&c, 7) &&
              tw_model_layer_is_moe(&c, 47));
    cr_assert_eq(tw_model_moe_layers(&c), 22);
    tw_model_free(&c);
}

Test(configs, modelled_architectures_refuse_fields_they_do_not_model) {
    static const struct {
        const char *file, *edit, *arch, *field;
    } cases[] = {
        {"mistral-7b-v0.3.json", "{\"num_local_experts\": 8, \"num_experts_per_tok\": 2}",
         "MistralForCausalLM", "num_local_experts"},
        {"llama-3.1-8b.json", "{\"attention_bias\": true}", "LlamaForCausalLM", "attention_bias"},
        {"llama-3.1-8b.json", "{\"mlp_bias\": true}", "LlamaForCausalLM", "mlp_bias"},
        {"llama-3.1-8b.json", "{\"hidden_act\": \"gelu\"}", "LlamaForCausalLM", "hidden_act"},
        {"llama-3.1-8b.json",
         "{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0, "
         "\"original_max_position_embeddings\": 8192}}",
         "LlamaForCausalLM", "rope_scaling"},
        {"llama-3.1-8b.json", "{\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}",
         "LlamaForCausalLM", "dynamic"},
        {"llama-3.1-8b.json", "{\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2.0}}",
         "LlamaForCausalLM", "longrope"},
        {"llama-3.1-8b.json", "{\"sliding_window\": 4096}", "LlamaForCausalLM", "sliding_window"},
        {"llama-3.1-8b.json", "{\"attn_logit_softcapping\": 50.0}", "LlamaForCausalLM",
         "attn_logit_softcapping"},
        {"llama-3.1-8b.json", "{\"final_logit_softcapping\": 30.0}", "LlamaForCausalLM",
         "final_logit_softcapping"},
        {"llama-3.1-8b.json", "{\"quantization_config\": {\"quant_method\": \"awq\"}}",
         "LlamaForCausalLM", "quantization_config"},
        {"llama-3.1-8b.json", "{\"use_qk_norm\": true}", "LlamaForCausalLM", "use_qk_norm"},
        {"llama-3.1-8b.json", "{\"partial_rotary_factor\": 0.5}", "LlamaForCausalLM",
         "partial_rotary_factor"},
        {"llama-3.1-8b.json", "{\"some_new_knob\": 3}", "LlamaForCausalLM", "some_new_knob"},
        {"qwen2.5-7b.json", "{\"use_mrope\": true}", "Qwen2ForCausalLM", "use_mrope"},
        {"qwen2.5-7b.json", "{\"attention_bias\": false}", "Qwen2ForCausalLM", "attention_bias"},
        {"qwen2.5-7b.json", "{\"num_experts\": 60}", "Qwen2ForCausalLM", "num_experts"},
        {"phi-3-mini-4k-instruct.json",
         "{\"rope_scaling\": {\"type\": \"longrope\", \"long_factor\": [1.0], \"short_factor\": "
         "[1.0]}}",
         "Phi3ForCausalLM", "longrope"},
        {"phi-3-mini-4k-instruct.json", "{\"partial_rotary_factor\": 0.75}", "Phi3ForCausalLM",
         "partial_rotary_factor"},
        /* the architecture decides, not the shape: Mixtral's fields under a Llama name */
        {"mixtral-8x7b-v0.1.json",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}",
         "LlamaForCausalLM", "num_local_experts"},
        /* an architecture outside the table, whatever its fields say */
        {"llama-3.1-8b.json",
         "{\"architectures\": [\"GraniteForCausalLM\"], \"model_type\": \"granite\"}",
         "GraniteForCausalLM", "not in tokwatt's table"},
        {"llama-3.1-8b.json", "{\"model_type\": \"mistral\"}", "LlamaForCausalLM", "disagree"},
        /* the expert and latent-attention families: the variants they do not model */
        {"mixtral-8x7b-v0.1.json", "{\"num_experts\": 8}", "MixtralForCausalLM", "num_experts"},
        {"qwen3-30b-a3b.json", "{\"shared_expert_intermediate_size\": 512}", "Qwen3MoeForCausalLM",
         "shared_expert_intermediate_size"},
        {"qwen3-8b.json", "{\"attention_bias\": true}", "Qwen3ForCausalLM", "attention_bias"},
        {"deepseek-v3.json", "{\"quantization_config\": null, \"scoring_func\": \"softmax\"}",
         "DeepseekV3ForCausalLM", "scoring_func"},
        {"deepseek-v3.json", "{\"quantization_config\": null, \"topk_method\": \"greedy\"}",
         "DeepseekV3ForCausalLM", "topk_method"},
        {"deepseek-v3.json", "{\"quantization_config\": null, \"moe_layer_freq\": 2}",
         "DeepseekV3ForCausalLM", "moe_layer_freq"},
        {"deepseek-v3.json",
         "{\"quantization_config\": null, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
         "\"original_max_position_embeddings\": 4096, \"mscale\": 0.707, \"mscale_all_dim\": 1.0}}",
         "DeepseekV3ForCausalLM", "attention factor"},
        {"deepseek-v3.json", "{\"quantization_config\": null, \"use_qk_norm\": true}",
         "DeepseekV3ForCausalLM", "use_qk_norm"},
        {"deepseek-v2-lite.json", "{\"norm_topk_prob\": true}", "DeepseekV2ForCausalLM",
         "norm_topk_prob"},
        {"deepseek-v2-lite.json", "{\"rope_interleave\": false}", "DeepseekV2ForCausalLM",
         "rope_interleave"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_model_config c;
        char what[256];
        snprintf(what, sizeof what, "%s + %s", cases[i].file, cases[i].edit);
        expect_refused(parse_edited(cases[i].file, cases[i].edit, &c), what, cases[i].arch,
                       cases[i].field);
    }
    tw_model_config c;
    cr_assert_eq(
        parse_edited("llama-3.1-8b.json", "{\"architectures\": null, \"model_type\": null}", &c),
        TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "names no architecture"), "%s", tw_last_error());
}

Test(configs, harmless_and_equivalent_fields_are_accepted) {
    static const char *const edits[] = {
        /* tokwatt's own comments, HF plumbing, generation defaults, dropout */
        "{\"_source\": \"x\", \"_name_or_path\": \"y\", \"use_cache\": false, \"temperature\": "
        "0.6, \"attention_dropout\": 0.1, \"pretraining_tp\": 2}",
        /* settings that say what the class does anyway */
        "{\"attention_bias\": false, \"mlp_bias\": false, \"hidden_act\": \"silu\", "
        "\"partial_rotary_factor\": 1.0, \"rope_scaling\": {\"rope_type\": \"default\"}}",
        /* only architectures, or only model_type */
        "{\"model_type\": null}",
        "{\"architectures\": null}",
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        tw_model_config c;
        cr_assert_eq(parse_edited("llama-3.1-8b.json", edits[i], &c), TW_OK, "%s: %s", edits[i],
                     tw_last_error());
    }
}

Test(configs, transformers5_rope_parameters_are_read) {
    tw_model_config c;
    const char *text = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                       "\"intermediate_size\": 100, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 50, \"rope_parameters\": "
                       "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, "
                       "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                       "\"original_max_position_embeddings\": 8192}}";
    cr_assert_eq(tw_model_parse(text, "v5.json", &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(c.rope.type, TW_ROPE_LLAMA3);
    cr_assert_eq(c.rope.theta, 500000.0f);
    cr_assert_eq(c.rope.factor, 8.0f);
    cr_assert_eq(c.rms_eps, 1e-6f, "LlamaConfig's default rms_norm_eps");
    cr_assert_eq(c.max_pos, 2048, "LlamaConfig's default max_position_embeddings");
    tw_model_free(&c);
}

/* ---- sliding windows ------------------------------------------------------------------------- */
Test(configs, sliding_window_rules_per_family) {
    tw_model_config c;
    char path[1024];
    /* Mistral v0.1 style: every layer */
    cr_assert_eq(tw_model_load("tiny-mistral", &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(c.sliding_window, 7);
    for (int l = 0; l < c.n_layers; l++) cr_assert_eq(tw_model_layer_window(&c, l), 7);
    /* a context shorter than the window attends everything; longer, the window */
    cr_assert_eq(tw_model_attended_positions(&c, 5), 2 * 5.0);
    cr_assert_eq(tw_model_attended_positions(&c, 100), 2 * 7.0);
    double f100 = tw_model_flops_per_token(&c, 100), f1000 = tw_model_flops_per_token(&c, 1000);
    cr_assert_eq(f100, f1000, "a windowed model's per-token FLOPs stop growing past the window");
    tw_model_free(&c);
    /* Qwen2.5: sliding_window given but use_sliding_window false: no window */
    hf_path("qwen2.5-7b.json", path, sizeof path);
    cr_assert_eq(tw_model_load(path, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(tw_model_attended_positions(&c, 1000), 28 * 1000.0);
    tw_model_free(&c);
    /* Qwen2 with use_sliding_window: layers >= max_window_layers */
    snprintf(path, sizeof path, "%s/tests/data/tiny-qwen2-swa.json", src_dir());
    cr_assert_eq(tw_model_load(path, &c), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_model_layer_window(&c, 0), 0);
    cr_assert_eq(tw_model_layer_window(&c, 1), 5);
    cr_assert_eq(tw_model_attended_positions(&c, 100), 100.0 + 5.0);
    tw_model_free(&c);
    cr_assert_eq(parse_edited("qwen2.5-7b.json",
                              "{\"use_sliding_window\": true, \"sliding_window\": 4096, "
                              "\"max_window_layers\": 20}",
                              &c),
                 TW_OK, "%s", tw_last_error());
    /* layer_types, when given, decide (full layers then sliding ones) */
    cr_assert_eq(
        tw_model_parse("{\"model_type\": \"qwen2\", \"hidden_size\": 64, "
                       "\"intermediate_size\": 100, \"num_hidden_layers\": 3, "
                       "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                       "\"vocab_size\": 50, \"use_sliding_window\": true, \"sliding_window\": 16, "
                       "\"layer_types\": [\"full_attention\", \"sliding_attention\", "
                       "\"sliding_attention\"]}",
                       "lt.json", &c),
        TW_OK, "%s", tw_last_error());
    cr_assert_eq(c.window_layer0, 1);
    cr_assert_eq(tw_model_layer_window(&c, 2), 16);
    tw_model_free(&c);
    tw_status st =
        tw_model_parse("{\"model_type\": \"qwen2\", \"hidden_size\": 64, "
                       "\"intermediate_size\": 100, \"num_hidden_layers\": 3, "
                       "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                       "\"vocab_size\": 50, \"use_sliding_window\": true, \"sliding_window\": 16, "
                       "\"layer_types\": [\"sliding_attention\", \"full_attention\", "
                       "\"sliding_attention\"]}",
                       "lt.json", &c);
    expect_refused(st, "interleaved layer_types", "Qwen2ForCausalLM", "layer_types");
}

/* ---- the command ------------------------------------------------------------------------------
 */
Test(configs, tokwatt_run_refuses_unmodelled_configs_with_exit_1, .timeout = 60) {
    const char *bin = getenv("TW_TOKWATT");
    cr_assert(bin && *bin, "TW_TOKWATT names the tokwatt binary (set by ctest)");
    for (size_t i = 0; i < sizeof hf_cases / sizeof hf_cases[0]; i++) {
        const hf_case *h = &hf_cases[i];
        if (!h->field) continue;
        char path[1024], cmd[4096], err[] = "/tmp/tw-test-configs-XXXXXX";
        hf_path(h->file, path, sizeof path);
        int fd = mkstemp(err);
        cr_assert(fd >= 0);
        snprintf(cmd, sizeof cmd, "%s run --model %s --prompt 4 --gen 2 >/dev/null 2>%s", bin, path,
                 err);
        int rc = system(cmd);
        cr_assert(WIFEXITED(rc), "%s: tokwatt run ended by a signal", h->file);
        cr_assert_eq(WEXITSTATUS(rc), 1, "%s: exit %d, want 1 (a runtime refusal)", h->file,
                     WEXITSTATUS(rc));
        char *text = NULL;
        cr_assert_eq(tw_read_file(err, &text, NULL), TW_OK);
        cr_assert(strstr(text, h->file) && strstr(text, h->arch) && strstr(text, h->field),
                  "%s: stderr should name the file, %s and %s: %s", h->file, h->arch, h->field,
                  text);
        free(text);
        close(fd);
        remove(err);
    }
}
