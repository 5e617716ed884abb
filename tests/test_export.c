/* safetensors writer and reader, `tokwatt export` (library and command), and the .npy writer
 * and reader. Expected names, shapes and offsets are written out here from the Hugging Face
 * Llama layout, not taken from the exporter. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tw_export.h"
#include "tw_model.h"
#include "tw_npy.h"
#include "tw_safetensors.h"
#include "tw_test_util.h"
#include "tw_util.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static void make_tmpdir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/tw_test_export_XXXXXX");
    cr_assert_not_null(mkdtemp(buf), "mkdtemp");
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_tree(const char *dir) {
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int count_entries(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void load_model(const char *name, tw_model_config *c) {
    cr_assert_eq(tw_model_load(name, c), TW_OK, "%s", tw_last_error());
}

/* ---- export of the tiny models, read back ------------------------------------------------ */

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[2];
    tw_weight_kind kind[3]; /* a fused tensor stacks the rows of several generator kinds */
    int nparts;
    int layer;
    int row0; /* an expert's tensor: its first row in the generator's stacked expert kind */
} want_tensor;

/* The state dict of Hugging Face's LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM
 * (Qwen2: q/k/v_proj.bias after each weight) or Phi3ForCausalLM (qkv_proj = rows of q, k, v;
 * gate_up_proj = rows of gate, up), Qwen3 (q_norm, k_norm), the expert models' checkpoints
 * (Qwen3-MoE and DeepSeek: mlp.gate, mlp.experts.E.{gate,up,down}_proj, DeepSeek's
 * e_score_correction_bias and shared_experts; Mixtral: block_sparse_moe.gate and
 * block_sparse_moe.experts.E.w1/w3/w2) and DeepSeek's latent attention (q_a_proj,
 * q_a_layernorm, q_b_proj or q_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj), in the
 * exporter's file order. Written from the architectures' definitions, not from the exporter. */
static int expected_tensors(const tw_model_config *c, want_tensor *w) {
    int n = 0, H = c->hidden, F = c->intermediate, QD = c->n_heads * c->head_dim,
        KD = c->n_kv_heads * c->head_dim;
    int phi3 = !strcmp(c->arch, "phi3"), qwen2 = !strcmp(c->arch, "qwen2");
    int qwen3 = !strcmp(c->arch, "qwen3") || !strcmp(c->arch, "qwen3_moe");
    int mixtral = !strcmp(c->arch, "mixtral"), v3 = !strcmp(c->arch, "deepseek_v3");
    int ds = v3 || !strcmp(c->arch, "deepseek_v2");
    int NH = c->n_heads, QK = c->qk_nope_dim + c->qk_rope_dim, FM = c->moe_intermediate;
#define ADDN(nm, nd, r, cc, l, np, k0, k1, k2)                                                     \
    do {                                                                                           \
        snprintf(w[n].name, sizeof w[n].name, "%s", nm);                                           \
        w[n].ndim = nd, w[n].shape[0] = r, w[n].shape[1] = cc, w[n].layer = l;                     \
        w[n].nparts = np, w[n].kind[0] = k0, w[n].kind[1] = k1, w[n].kind[2] = k2;                 \
        w[n].row0 = 0;                                                                             \
        n++;                                                                                       \
    } while (0)
#define ADD(nm, nd, r, cc, k, l) ADDN(nm, nd, r, cc, l, 1, k, k, k)
    ADD("model.embed_tokens.weight", 2, c->vocab, H, TW_W_EMBED, 0);
    for (int l = 0; l < c->n_layers; l++) {
        char p[96];
#define L(suffix) (snprintf(p, sizeof p, "model.layers.%d.%s", l, suffix), p)
        ADD(L("input_layernorm.weight"), 1, H, 0, TW_W_ATTN_NORM, l);
        if (phi3) {
            ADDN(L("self_attn.qkv_proj.weight"), 2, QD + 2 * KD, H, l, 3, TW_W_Q, TW_W_K, TW_W_V);
        } else if (ds) {
            if (c->q_lora_rank) {
                ADD(L("self_attn.q_a_proj.weight"), 2, c->q_lora_rank, H, TW_W_Q_A, l);
                ADD(L("self_attn.q_a_layernorm.weight"), 1, c->q_lora_rank, 0, TW_W_Q_A_NORM, l);
                ADD(L("self_attn.q_b_proj.weight"), 2, NH * QK, c->q_lora_rank, TW_W_Q_B, l);
            } else {
                ADD(L("self_attn.q_proj.weight"), 2, NH * QK, H, TW_W_Q, l);
            }
            ADD(L("self_attn.kv_a_proj_with_mqa.weight"), 2, c->kv_lora_rank + c->qk_rope_dim, H,
                TW_W_KV_A, l);
            ADD(L("self_attn.kv_a_layernorm.weight"), 1, c->kv_lora_rank, 0, TW_W_KV_A_NORM, l);
            ADD(L("self_attn.kv_b_proj.weight"), 2, NH * (c->qk_nope_dim + c->v_head_dim),
                c->kv_lora_rank, TW_W_KV_B, l);
        } else {
            ADD(L("self_attn.q_proj.weight"), 2, QD, H, TW_W_Q, l);
            if (qwen2) ADD(L("self_attn.q_proj.bias"), 1, QD, 0, TW_W_Q_BIAS, l);
            ADD(L("self_attn.k_proj.weight"), 2, KD, H, TW_W_K, l);
            if (qwen2) ADD(L("self_attn.k_proj.bias"), 1, KD, 0, TW_W_K_BIAS, l);
            ADD(L("self_attn.v_proj.weight"), 2, KD, H, TW_W_V, l);
            if (qwen2) ADD(L("self_attn.v_proj.bias"), 1, KD, 0, TW_W_V_BIAS, l);
        }
        ADD(L("self_attn.o_proj.weight"), 2, H, ds ? NH * c->v_head_dim : QD, TW_W_O, l);
        if (qwen3) {
            ADD(L("self_attn.q_norm.weight"), 1, c->head_dim, 0, TW_W_Q_NORM, l);
            ADD(L("self_attn.k_norm.weight"), 1, c->head_dim, 0, TW_W_K_NORM, l);
        }
        ADD(L("post_attention_layernorm.weight"), 1, H, 0, TW_W_FFN_NORM, l);
        int moe =
            c->n_experts > 0 && l >= c->moe_first_layer && !(c->mlp_only[l / 64] >> (l % 64) & 1);
        if (phi3) {
            ADDN(L("mlp.gate_up_proj.weight"), 2, 2 * F, H, l, 2, TW_W_GATE, TW_W_UP, TW_W_UP);
            ADD(L("mlp.down_proj.weight"), 2, H, F, TW_W_DOWN, l);
        } else if (!moe) {
            ADD(L("mlp.gate_proj.weight"), 2, F, H, TW_W_GATE, l);
            ADD(L("mlp.up_proj.weight"), 2, F, H, TW_W_UP, l);
            ADD(L("mlp.down_proj.weight"), 2, H, F, TW_W_DOWN, l);
        } else {
            const char *blk = mixtral ? "block_sparse_moe" : "mlp";
            char q[64];
            snprintf(q, sizeof q, "%s.gate.weight", blk);
            ADD(L(q), 2, c->n_experts, H, TW_W_ROUTER, l);
            if (v3)
                ADD(L("mlp.gate.e_score_correction_bias"), 1, c->n_experts, 0, TW_W_ROUTER_BIAS, l);
            for (int x = 0; x < c->n_experts; x++) {
                snprintf(q, sizeof q, "%s.experts.%d.%s.weight", blk, x,
                         mixtral ? "w1" : "gate_proj");
                ADD(L(q), 2, FM, H, TW_W_EXPERT_GATE, l);
                w[n - 1].row0 = x * FM;
                snprintf(q, sizeof q, "%s.experts.%d.%s.weight", blk, x,
                         mixtral ? "w3" : "up_proj");
                ADD(L(q), 2, FM, H, TW_W_EXPERT_UP, l);
                w[n - 1].row0 = x * FM;
                snprintf(q, sizeof q, "%s.experts.%d.%s.weight", blk, x,
                         mixtral ? "w2" : "down_proj");
                ADD(L(q), 2, H, FM, TW_W_EXPERT_DOWN, l);
                w[n - 1].row0 = x * H;
            }
            if (c->n_shared_experts) {
                int SF = c->n_shared_experts * FM;
                ADD(L("mlp.shared_experts.gate_proj.weight"), 2, SF, H, TW_W_SHARED_GATE, l);
                ADD(L("mlp.shared_experts.up_proj.weight"), 2, SF, H, TW_W_SHARED_UP, l);
                ADD(L("mlp.shared_experts.down_proj.weight"), 2, H, SF, TW_W_SHARED_DOWN, l);
            }
        }
#undef L
    }
    ADD("model.norm.weight", 1, H, 0, TW_W_FINAL_NORM, 0);
    if (!c->tie_embeddings) ADD("lm_head.weight", 2, c->vocab, H, TW_W_LM_HEAD, 0);
#undef ADD
#undef ADDN
    return n;
}

static void check_export(const char *model, tw_st_dtype dtype, int want_count) {
    tw_model_config c;
    load_model(model, &c);
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    char out[96];
    snprintf(out, sizeof out, "%s/sub/folder", dir); /* created by the export */
    tw_export_result res;
    cr_assert_eq(tw_export_model(&c, 1234, dtype, out, NULL, NULL, &res), TW_OK, "%s",
                 tw_last_error());
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    cr_assert_str_eq(res.path, path);

    want_tensor *want = calloc(512, sizeof *want);
    int n = expected_tensors(&c, want);
    cr_assert_eq(n, want_count, "%s: expected tensor list", model);
    cr_assert_eq(res.n_tensors, n);
    cr_assert_eq(res.params, tw_model_params(&c), "%s: every parameter written once", model);

    /* the raw header: 8-byte little-endian length, JSON padded to a multiple of 8 */
    char *raw = NULL;
    size_t raw_len = 0;
    cr_assert_eq(tw_read_file(path, &raw, &raw_len), TW_OK);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(unsigned char)raw[i] << (8 * i);
    cr_assert_eq(hlen % 8, 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    cr_assert_eq(raw[8], '{');
    cr_assert_eq(raw_len, res.file_bytes);
    cr_assert_eq(raw_len, 8 + hlen + res.data_bytes);

    tw_st_file *f = NULL;
    cr_assert_eq(tw_st_open(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_st_count(f), n);
    cr_assert_eq(tw_st_header_bytes(f), hlen);
    cr_assert_str_eq(tw_st_metadata(f, "format"), "pt");
    cr_assert_str_eq(tw_st_metadata(f, "tokwatt_seed"), "1234");
    cr_assert_str_eq(tw_st_metadata(f, "tokwatt_model"), model);
    size_t esize = dtype == TW_ST_BF16 ? 2 : 4;
    uint64_t off = 0;
    size_t maxn = (size_t)c.vocab * (size_t)c.hidden * 4;
    float *ref32 = malloc(maxn * sizeof(float));
    tw_bf16 *ref16 = malloc(maxn * sizeof(tw_bf16));
    for (int i = 0; i < n; i++) {
        const tw_st_tensor *t = tw_st_get(f, i);
        const want_tensor *w = &want[i];
        cr_assert_str_eq(t->name, w->name, "tensor %d", i);
        cr_assert_eq(tw_st_find(f, w->name), t);
        cr_assert_eq(t->dtype, dtype, "%s dtype", w->name);
        cr_assert_eq(t->ndim, w->ndim, "%s ndim", w->name);
        for (int d = 0; d < w->ndim; d++)
            cr_assert_eq(t->shape[d], w->shape[d], "%s dim %d", w->name, d);
        uint64_t elems = (uint64_t)w->shape[0] * (uint64_t)(w->ndim == 2 ? w->shape[1] : 1);
        cr_assert_eq(t->begin, off, "%s begin", w->name);
        cr_assert_eq(t->end, off + elems * esize, "%s end", w->name);
        off = t->end;
        int rows = w->ndim == 2 ? (int)w->shape[0] : 1;
        int cols = w->ndim == 2 ? (int)w->shape[1] : (int)w->shape[0];
        /* bit for bit against the generator, part after part for a fused tensor */
        const void *data = tw_st_data(f, t);
        int prows = rows / w->nparts; /* the fused parts here have equal rows but q in qkv */
        for (int pi = 0, r0 = 0; pi < w->nparts; pi++, r0 += prows) {
            prows = pi == 0 && w->nparts == 3 ? c.n_heads * c.head_dim
                    : w->nparts == 3          ? c.n_kv_heads * c.head_dim
                                              : rows / w->nparts;
            size_t pe = (size_t)prows * cols;
            if (dtype == TW_ST_BF16) {
                tw_weight_fill_bf16(&c, 1234, w->kind[pi], w->layer, w->row0, prows, 0, cols,
                                    ref16);
                cr_assert(memcmp((const tw_bf16 *)data + (size_t)r0 * cols, ref16, pe * 2) == 0,
                          "%s part %d: bf16 bytes differ", w->name, pi);
            } else {
                tw_weight_fill(&c, 1234, w->kind[pi], w->layer, w->row0, prows, 0, cols, ref32);
                cr_assert(memcmp((const float *)data + (size_t)r0 * cols, ref32, pe * 4) == 0,
                          "%s part %d: fp32 bytes differ", w->name, pi);
            }
        }
        /* and through the float32 conversion, against the element formula */
        float *got = malloc(elems * sizeof(float));
        cr_assert_eq(tw_st_read_f32(f, t, got), TW_OK);
        for (int r = 0; r < rows; r += 5)
            for (int j = 0; j < cols; j += 7) {
                int pi = 0, pr = r;
                if (w->nparts == 3) { /* rows of q, then k, then v */
                    int qd = c.n_heads * c.head_dim, kd = c.n_kv_heads * c.head_dim;
                    pi = r < qd ? 0 : r < qd + kd ? 1 : 2;
                    pr = r < qd ? r : r < qd + kd ? r - qd : r - qd - kd;
                } else if (w->nparts == 2) {
                    pi = r < rows / 2 ? 0 : 1;
                    pr = r < rows / 2 ? r : r - rows / 2;
                }
                float v = tw_weight_value(&c, 1234, w->kind[pi], w->layer, w->row0 + pr, j);
                if (dtype == TW_ST_BF16) v = tw_test_from_bf16(tw_test_to_bf16(v));
                cr_assert_eq(got[(size_t)r * cols + j], v, "%s[%d][%d]", w->name, r, j);
            }
        free(got);
    }
    cr_assert_eq(off, res.data_bytes);
    cr_assert_eq(tw_st_find(f, "lm_head.weight") != NULL, !c.tie_embeddings,
                 "lm_head present iff untied");
    tw_st_close(f);

    /* config.json: the config as read plus torch_dtype; it parses back to the same model */
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    cr_assert_not_null(cfg, "config.json: %s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "torch_dtype")),
                     dtype == TW_ST_BF16 ? "bfloat16" : "float32");
    /* the class transformers instantiates, and the window it applies */
    json_t *archs = json_object_get(cfg, "architectures");
    cr_assert(json_is_array(archs) && json_array_size(archs) == 1);
    cr_assert_str_eq(json_string_value(json_array_get(archs, 0)), c.architecture);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "model_type")), c.arch);
    if (c.sliding_window && c.window_layer0 == 0)
        cr_assert_eq(json_integer_value(json_object_get(cfg, "sliding_window")), c.sliding_window);
    json_object_del(cfg, "torch_dtype");
    json_t *orig = json_loads(c.json, 0, &jerr);
    cr_assert(json_equal(cfg, orig), "config.json differs from the config as read");
    json_decref(orig);
    json_decref(cfg);
    tw_model_config back;
    cr_assert_eq(tw_model_load(path, &back), TW_OK, "%s", tw_last_error());
    cr_assert(back.hidden == c.hidden && back.n_layers == c.n_layers && back.vocab == c.vocab &&
              back.tie_embeddings == c.tie_embeddings && back.rope.type == c.rope.type &&
              back.qkv_bias == c.qkv_bias && back.sliding_window == c.sliding_window &&
              back.window_layer0 == c.window_layer0 && !strcmp(back.arch, c.arch));
    tw_model_free(&back);

    snprintf(path, sizeof path, "%s/tokwatt-export.json", out);
    json_t *info = json_load_file(path, 0, &jerr);
    cr_assert_not_null(info, "tokwatt-export.json: %s", jerr.text);
    cr_assert_eq(json_integer_value(json_object_get(info, "seed")), 1234);
    cr_assert_str_eq(json_string_value(json_object_get(info, "commit")), TW_GIT_COMMIT);
    cr_assert_str_eq(json_string_value(json_object_get(info, "model")), model);
    cr_assert_eq(json_integer_value(json_object_get(info, "tensors")), n);
    cr_assert_not_null(strstr(json_string_value(json_object_get(info, "generator")), "splitmix64"));
    json_decref(info);
    cr_assert_eq(count_entries(out), 3, "exactly three files, no temporaries left");

    free(ref32), free(ref16), free(raw), free(want);
    tw_model_free(&c);
    rm_tree(dir);
}

Test(export, tiny_bf16_roundtrip) {
    check_export("tiny", TW_ST_BF16, 1 + 3 * 9 + 2);
}

Test(export, tiny_small_row_blocks) {
    /* blocks smaller than one row (1 row each) and of a few rows: tensors span many blocks */
    tw_export_block_elems = 100;
    check_export("tiny", TW_ST_BF16, 1 + 3 * 9 + 2);
    tw_export_block_elems = 1000;
    check_export("tiny", TW_ST_F32, 1 + 3 * 9 + 2);
}

Test(export, tiny_fp32_roundtrip) {
    check_export("tiny", TW_ST_F32, 1 + 3 * 9 + 2);
}

Test(export, tied_model_has_no_lm_head) {
    check_export("tiny-tied", TW_ST_BF16, 1 + 2 * 9 + 1);
}

Test(export, qwen2_has_qkv_biases) {
    check_export("tiny-qwen2", TW_ST_F32, 1 + 2 * 12 + 2);
    tw_export_block_elems = 50; /* biases of 128 and 64 values span several blocks */
    check_export("tiny-qwen2", TW_ST_BF16, 1 + 2 * 12 + 2);
    tw_export_block_elems = (size_t)4 << 20;
}

Test(export, mistral_keeps_its_sliding_window) {
    check_export("tiny-mistral", TW_ST_F32, 1 + 2 * 9 + 2);
}

Test(export, phi3_fused_qkv_and_gate_up) {
    check_export("tiny-phi3", TW_ST_F32, 1 + 2 * 6 + 2);
    tw_export_block_elems = 300; /* blocks end inside the fused parts */
    check_export("tiny-phi3", TW_ST_BF16, 1 + 2 * 6 + 2);
    tw_export_block_elems = (size_t)4 << 20;
}

Test(export, qwen3_has_qk_norms) {
    check_export("tiny-qwen3", TW_ST_F32, 1 + 2 * 11 + 2);
}

/* layers 0 and 2 with 12 experts (router + 36), layer 1 dense */
Test(export, qwen3_moe_experts_one_tensor_each) {
    check_export("tiny-qwen3-moe", TW_ST_BF16, 1 + 2 * (8 + 1 + 36) + 11 + 2);
    tw_export_block_elems = 700; /* an expert's tensor spans several blocks */
    check_export("tiny-qwen3-moe", TW_ST_F32, 1 + 2 * (8 + 1 + 36) + 11 + 2);
    tw_export_block_elems = (size_t)4 << 20;
}

Test(export, mixtral_block_sparse_moe_names) {
    check_export("tiny-mixtral", TW_ST_F32, 1 + 2 * (6 + 1 + 12) + 2);
}

/* DeepSeek-V3: layer 0 dense, layers 1-2 with the correction bias, 16 experts, shared experts */
Test(export, deepseek_v3_latent_attention_and_experts) {
    check_export("tiny-deepseek-v3", TW_ST_F32, 1 + (9 + 3) + 2 * (9 + 2 + 48 + 3) + 2);
}

Test(export, deepseek_v2_q_proj_without_compression) {
    check_export("tiny-deepseek-v2", TW_ST_BF16, 1 + (7 + 3) + (7 + 1 + 24 + 3) + 2);
}

Test(export, refuses_when_disk_lacks_space) {
    /* ~2.6e14 bytes of embedding alone: no test machine has that free */
    const char *huge =
        "{\"model_type\": \"llama\", \"hidden_size\": 65536, \"intermediate_size\": 131072, "
        "\"num_hidden_layers\": 4, \"num_attention_heads\": 512, "
        "\"vocab_size\": 1000000000}";
    tw_model_config c;
    cr_assert_eq(tw_model_parse(huge, "huge.json", &c), TW_OK, "%s", tw_last_error());
    char dir[64], out[128];
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/big", dir);
    tw_export_result res;
    tw_status st = tw_export_model(&c, 1, TW_ST_BF16, out, NULL, NULL, &res);
    cr_assert_eq(st, TW_ERR_IO);
    cr_assert_not_null(strstr(tw_last_error(), "not enough disk space"), "%s", tw_last_error());
    cr_assert(!file_exists(out), "nothing may be created before the space check");
    cr_assert_eq(tw_st_check_space(dir, 1024), TW_OK);
    tw_model_free(&c);
    rm_tree(dir);
}

/* ---- writer: general files and misuse --------------------------------------------------- */

Test(safetensors, mixed_dtypes_chunked_roundtrip) {
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/mixed.safetensors", dir);
    tw_st_tensor decl[5] = {
        {.name = "a.bf16", .dtype = TW_ST_BF16, .ndim = 3, .shape = {3, 5, 7}},
        {.name = "b.scalar", .dtype = TW_ST_F32, .ndim = 0},
        {.name = "c.empty", .dtype = TW_ST_F32, .ndim = 2, .shape = {0, 9}},
        {.name = "d.f32", .dtype = TW_ST_F32, .ndim = 2, .shape = {37, 3}},
        {.name = "e.i8", .dtype = TW_ST_I8, .ndim = 1, .shape = {13}},
    };
    const char *meta[] = {"note", "hello"};
    tw_st_writer *w = NULL;
    cr_assert_eq(tw_st_writer_open(path, decl, 5, meta, 1, &w), TW_OK, "%s", tw_last_error());
    tw_test_rng r;
    tw_test_rng_seed(&r, 5);
    uint16_t a[105];
    float b = 3.25f, d[111];
    signed char e[13];
    for (int i = 0; i < 105; i++) a[i] = tw_test_to_bf16((float)tw_test_uniform(&r));
    tw_test_fill(&r, d, 111, 2.0f);
    for (int i = 0; i < 13; i++) e[i] = (signed char)(i * 19 - 100);
    /* odd-sized chunks */
    cr_assert_eq(tw_st_writer_append(w, "a.bf16", a, 37 * 2), TW_OK);
    cr_assert_eq(tw_st_writer_append(w, "a.bf16", a + 37, 68 * 2), TW_OK);
    cr_assert_eq(tw_st_writer_append(w, "b.scalar", &b, 4), TW_OK);
    /* c.empty has no bytes: the next to write is d */
    cr_assert_eq(tw_st_writer_append(w, "d.f32", d, 3), TW_OK);
    cr_assert_eq(tw_st_writer_append(w, "d.f32", (char *)d + 3, 111 * 4 - 3), TW_OK);
    cr_assert_eq(tw_st_writer_append(w, "e.i8", e, 13), TW_OK);
    cr_assert(!file_exists(path), "nothing at the final path before close");
    cr_assert_eq(tw_st_writer_close(w), TW_OK, "%s", tw_last_error());
    cr_assert_eq(count_entries(dir), 1);

    tw_st_file *f;
    cr_assert_eq(tw_st_open(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_st_count(f), 5);
    cr_assert_str_eq(tw_st_metadata(f, "note"), "hello");
    cr_assert_str_eq(tw_st_metadata(f, "format"), "pt");
    cr_assert_null(tw_st_metadata(f, "absent"));
    const tw_st_tensor *t = tw_st_find(f, "a.bf16");
    cr_assert(t && t->ndim == 3 && t->shape[2] == 7 && t->begin == 0 && t->end == 210);
    cr_assert(memcmp(tw_st_data(f, t), a, 210) == 0);
    float fa[105];
    cr_assert_eq(tw_st_read_f32(f, t, fa), TW_OK);
    for (int i = 0; i < 105; i++) cr_assert_eq(fa[i], tw_test_from_bf16(a[i]));
    t = tw_st_find(f, "b.scalar");
    cr_assert(t && t->ndim == 0 && tw_st_tensor_elems(t) == 1 && t->end - t->begin == 4);
    float gb;
    memcpy(&gb, tw_st_data(f, t), 4);
    cr_assert_eq(gb, 3.25f);
    t = tw_st_find(f, "c.empty");
    cr_assert(t && t->begin == t->end && tw_st_tensor_elems(t) == 0);
    t = tw_st_find(f, "d.f32");
    cr_assert(memcmp(tw_st_data(f, t), d, 444) == 0);
    t = tw_st_find(f, "e.i8");
    cr_assert(memcmp(tw_st_data(f, t), e, 13) == 0);
    cr_assert_eq(tw_st_read_f32(f, t, fa), TW_ERR_UNSUPPORTED);
    cr_assert_null(tw_st_find(f, "zzz"));
    tw_st_close(f);
    rm_tree(dir);
}

Test(safetensors, writer_rejects_misuse_and_leaves_nothing) {
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    tw_st_tensor decl[2] = {
        {.name = "x", .dtype = TW_ST_F32, .ndim = 1, .shape = {4}},
        {.name = "y", .dtype = TW_ST_F32, .ndim = 1, .shape = {2}},
    };
    float v[4] = {1.5f, -2, 3, 4};
    tw_st_writer *w;
    cr_assert_eq(tw_st_writer_open(path, decl, 2, NULL, 0, &w), TW_OK);
    cr_assert_eq(tw_st_writer_append(w, "y", v, 8), TW_ERR_INVALID, "out of order");
    cr_assert_eq(tw_st_writer_append(w, "x", v, 20), TW_ERR_INVALID, "past the tensor's end");
    cr_assert_eq(tw_st_writer_append(w, "x", v, 16), TW_OK);
    cr_assert_eq(tw_st_writer_close(w), TW_ERR_INVALID, "y is incomplete");
    cr_assert_not_null(strstr(tw_last_error(), "'y'"), "%s", tw_last_error());
    cr_assert_eq(count_entries(dir), 0, "failed close leaves neither file nor temporary");

    cr_assert_eq(tw_st_writer_open(path, decl, 2, NULL, 0, &w), TW_OK);
    tw_st_writer_abort(w);
    cr_assert_eq(count_entries(dir), 0, "abort removes the temporary");

    tw_st_tensor dup[2] = {decl[0], decl[0]};
    cr_assert_eq(tw_st_writer_open(path, dup, 2, NULL, 0, &w), TW_ERR_INVALID, "duplicate name");
    tw_st_tensor neg = {.name = "n", .dtype = TW_ST_F32, .ndim = 1, .shape = {-3}};
    cr_assert_eq(tw_st_writer_open(path, &neg, 1, NULL, 0, &w), TW_ERR_INVALID, "negative dim");
    cr_assert_eq(count_entries(dir), 0);
    rm_tree(dir);
}

/* ---- reader: malformed files ------------------------------------------------------------- */

/* Writes 8-byte length + header (padded to 8 with spaces unless raw_len) + data_len bytes. */
static void write_st(const char *path, const char *header, size_t data_len, int64_t len_override) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    uint64_t n = len_override >= 0 ? (uint64_t)len_override : padded;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = hl; i < padded; i++) fputc(' ', f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 37 + 11) & 0xff, f);
    fclose(f);
}

static void expect_refused(const char *path, const char *needle) {
    tw_st_file *f = (tw_st_file *)0x1;
    tw_status st = tw_st_open(path, &f);
    cr_assert_neq(st, TW_OK, "malformed file accepted (expected '%s')", needle);
    cr_assert_null(f);
    cr_assert_not_null(strstr(tw_last_error(), needle), "error '%s' lacks '%s'", tw_last_error(),
                       needle);
}

#define T2(b1, e1, b2, e2, dt2, shape2)                                                            \
    "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"                \
    "\"data_offsets\":[" #b1 "," #e1 "]},\"b\":{\"dtype\":\"" dt2 "\",\"shape\":" shape2           \
    ",\"data_offsets\":[" #b2 "," #e2 "]}}"

Test(safetensors, reader_refuses_malformed_files) {
    char dir[64], p[128];
    make_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/m.safetensors", dir);

    /* positive control: the same builder makes a valid file */
    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 20, -1);
    tw_st_file *f;
    cr_assert_eq(tw_st_open(p, &f), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_st_count(f), 2);
    tw_st_close(f);

    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 19, -1);
    expect_refused(p, "truncated");
    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 21, -1);
    expect_refused(p, "trailing");
    write_st(p, T2(0, 8, 4, 16, "F32", "[3]"), 16, -1);
    expect_refused(p, "overlap");
    write_st(p, T2(0, 8, 12, 24, "F32", "[3]"), 24, -1);
    expect_refused(p, "gap");
    write_st(p, T2(0, 8, 8, 20, "Q4_K", "[3]"), 20, -1);
    expect_refused(p, "unknown dtype 'Q4_K'");
    write_st(p, T2(0, 8, 8, 20, "F32", "[4]"), 20, -1);
    expect_refused(p, "need 16 bytes");
    write_st(p, T2(0, 8, 8, 20, "F32", "[-3]"), 20, -1);
    expect_refused(p, "non-negative");
    write_st(p, T2(0, 8, 20, 8, "F32", "[3]"), 20, -1);
    expect_refused(p, "end before begin");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8, -1);
    expect_refused(p, "not valid JSON");
    write_st(p, "{\"a\": [1, 2", 8, -1);
    expect_refused(p, "not valid JSON");
    write_st(p, "[1, 2, 3]", 0, -1);
    expect_refused(p, "does not start with '{'");
    write_st(p, "{\"__metadata__\":{\"k\":3}}", 0, -1);
    expect_refused(p, "__metadata__");
    /* bad header lengths: zero, past the end of the file, absurd */
    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 20, 0);
    expect_refused(p, "bad safetensors header length 0");
    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 20, 5000);
    expect_refused(p, "bad safetensors header length 5000");
    write_st(p, T2(0, 8, 8, 20, "F32", "[3]"), 20, (int64_t)1 << 50);
    expect_refused(p, "bad safetensors header length");
    /* shorter than the length field */
    FILE *fp = fopen(p, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    expect_refused(p, "too short");
    snprintf(p, sizeof p, "%s/absent.safetensors", dir);
    expect_refused(p, "cannot open");
    rm_tree(dir);
}

Test(safetensors, reader_refuses_truncated_export) {
    tw_model_config c;
    load_model("tiny-tied", &c);
    char dir[64], path[128], cut[128];
    make_tmpdir(dir, sizeof dir);
    tw_export_result res;
    cr_assert_eq(tw_export_model(&c, 3, TW_ST_BF16, dir, NULL, NULL, &res), TW_OK);
    char *raw;
    size_t len;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(tw_read_file(path, &raw, &len), TW_OK);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    size_t cuts[3] = {len - 1, len / 2, 20}; /* lose the tail, half, most of the header */
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(cut, "wb");
        fwrite(raw, 1, cuts[i], f);
        fclose(f);
        expect_refused(cut, i < 2 ? "truncated" : "header length");
    }
    free(raw);
    tw_model_free(&c);
    rm_tree(dir);
}

/* ---- the command ------------------------------------------------------------------------- */

static int run_tokwatt(const char *args, char *out, size_t n) {
    const char *exe = getenv("TW_TOKWATT");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(export, command_line) {
    const char *exe = getenv("TW_TOKWATT");
    if (!exe || access(exe, X_OK) != 0)
        cr_skip_test("TW_TOKWATT does not name a built tokwatt (run under ctest)");
    char dir[64], args[512], out[8192];
    make_tmpdir(dir, sizeof dir);
    snprintf(args, sizeof args, "export --model tiny --seed 9 --out %s/m --dtype fp32", dir);
    cr_assert_eq(run_tokwatt(args, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "exported 30 tensors"), "%s", out);
    cr_assert_not_null(strstr(out, "model.safetensors"), "%s", out);
    char path[128];
    snprintf(path, sizeof path, "%s/m/model.safetensors", dir);
    tw_st_file *f;
    cr_assert_eq(tw_st_open(path, &f), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_st_get(f, 0)->dtype, TW_ST_F32);
    cr_assert_str_eq(tw_st_metadata(f, "tokwatt_seed"), "9");
    tw_st_close(f);

    snprintf(args, sizeof args, "export --model tiny --out %s/x --dtype fp16", dir);
    cr_assert_eq(run_tokwatt(args, out, sizeof out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "fp16"), "%s", out);
    cr_assert_eq(run_tokwatt("export --model tiny", out, sizeof out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--out"), "%s", out);
    snprintf(args, sizeof args, "export --model tiny --out %s/x --bogus 1", dir);
    cr_assert_eq(run_tokwatt(args, out, sizeof out), 2, "%s", out);
    snprintf(args, sizeof args, "export --model no-such-model --out %s/x", dir);
    cr_assert_eq(run_tokwatt(args, out, sizeof out), 1, "%s", out);
    cr_assert_eq(run_tokwatt("export --help", out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "--dtype"), "%s", out);
    snprintf(path, sizeof path, "%s/x", dir);
    cr_assert(!file_exists(path), "nothing written for refused commands");
    rm_tree(dir);
}

/* ---- .npy ---------------------------------------------------------------------------------- */

static void check_header(const int64_t *shape, int ndim, const char *dict) {
    char buf[512];
    size_t len;
    cr_assert_eq(tw_npy_header(shape, ndim, 0, buf, sizeof buf, &len), TW_OK);
    cr_assert_eq(len % 64, 0, "header %zu bytes", len);
    cr_assert(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
    cr_assert_eq(hlen + 10, len);
    size_t dl = strlen(dict);
    cr_assert(memcmp(buf + 10, dict, dl) == 0, "dict '%.*s' want '%s'", (int)dl, buf + 10, dict);
    for (size_t i = 10 + dl; i < len - 1; i++) cr_assert_eq(buf[i], ' ');
    cr_assert_eq(buf[len - 1], '\n');
}

Test(npy, header_text_and_alignment) {
    int64_t s3[3] = {3, 5, 7}, s1[1] = {5}, s2[2] = {1000000, 128256};
    check_header(s3, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5, 7), }");
    check_header(s1, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }");
    check_header(NULL, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
    check_header(s2, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 128256), }");
    char buf[512];
    size_t len;
    int64_t neg[2] = {2, -1};
    cr_assert_eq(tw_npy_header(neg, 2, 0, buf, sizeof buf, &len), TW_ERR_INVALID);
}

Test(npy, streaming_logits_roundtrip) {
    enum { STEPS = 4, BATCH = 3, VOCAB = 67 };
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    int64_t shape[3] = {STEPS, BATCH, VOCAB};
    float *all = malloc(sizeof(float) * STEPS * BATCH * VOCAB);
    tw_test_rng r;
    tw_test_rng_seed(&r, 8);
    tw_test_fill(&r, all, STEPS * BATCH * VOCAB, 30.0f);
    tw_npy_writer *w;
    cr_assert_eq(tw_npy_writer_open(path, shape, 3, &w), TW_OK, "%s", tw_last_error());
    for (int s = 0; s < STEPS; s++) {
        cr_assert_eq(tw_npy_writer_append(w, all + s * BATCH * VOCAB, BATCH * VOCAB), TW_OK);
        cr_assert(!file_exists(path), "no file at the final path before close");
    }
    cr_assert_eq(tw_npy_writer_append(w, all, 1), TW_ERR_INVALID, "past the declared shape");
    cr_assert_eq(tw_npy_writer_close(w), TW_OK, "%s", tw_last_error());
    cr_assert_eq(count_entries(dir), 1);

    tw_npy_array a;
    cr_assert_eq(tw_npy_read(path, &a), TW_OK, "%s", tw_last_error());
    cr_assert(a.ndim == 3 && a.shape[0] == STEPS && a.shape[1] == BATCH && a.shape[2] == VOCAB);
    cr_assert_eq(a.count, (size_t)STEPS * BATCH * VOCAB);
    cr_assert_eq(a.header_bytes % 64, 0);
    cr_assert(memcmp(a.data, all, sizeof(float) * a.count) == 0);
    struct stat sb;
    stat(path, &sb);
    cr_assert_eq((size_t)sb.st_size, a.header_bytes + 4 * a.count);
    tw_npy_free(&a);

    /* closing early is an error and leaves nothing */
    snprintf(path, sizeof path, "%s/short.npy", dir);
    cr_assert_eq(tw_npy_writer_open(path, shape, 3, &w), TW_OK);
    cr_assert_eq(tw_npy_writer_append(w, all, BATCH * VOCAB), TW_OK);
    cr_assert_eq(tw_npy_writer_close(w), TW_ERR_INVALID);
    cr_assert(!file_exists(path));
    cr_assert_eq(count_entries(dir), 1);
    free(all);
    rm_tree(dir);
}

Test(npy, open_leading_dimension) {
    enum { BATCH = 2, VOCAB = 37 };
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/open.npy", dir);
    int64_t shape[3] = {-1, BATCH, VOCAB};
    float row[BATCH * VOCAB];
    tw_test_rng r;
    tw_test_rng_seed(&r, 9);
    tw_npy_writer *w;
    cr_assert_eq(tw_npy_writer_open(path, shape, 3, &w), TW_OK, "%s", tw_last_error());
    for (int s = 0; s < 5; s++) {
        tw_test_fill(&r, row, BATCH * VOCAB, 1.0f);
        row[0] = (float)s;
        cr_assert_eq(tw_npy_writer_append(w, row, BATCH * VOCAB), TW_OK);
    }
    cr_assert_eq(tw_npy_writer_close(w), TW_OK, "%s", tw_last_error());
    tw_npy_array a;
    cr_assert_eq(tw_npy_read(path, &a), TW_OK, "%s", tw_last_error());
    cr_assert(a.ndim == 3 && a.shape[0] == 5 && a.shape[1] == BATCH && a.shape[2] == VOCAB);
    for (int s = 0; s < 5; s++) cr_assert_eq(a.data[s * BATCH * VOCAB], (float)s);
    tw_npy_free(&a);
    char *raw;
    size_t len;
    cr_assert_eq(tw_read_file(path, &raw, &len), TW_OK);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 37), }";
    cr_assert(memcmp(raw + 10, dict, strlen(dict)) == 0, "%.80s", raw + 10);
    free(raw);

    /* a partial row is refused */
    cr_assert_eq(tw_npy_writer_open(path, shape, 3, &w), TW_OK);
    cr_assert_eq(tw_npy_writer_append(w, row, VOCAB), TW_OK);
    cr_assert_eq(tw_npy_writer_close(w), TW_ERR_INVALID);
    rm_tree(dir);
}

Test(npy, reader_refuses_bad_files) {
    char dir[64], path[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    int64_t shape[2] = {3, 4};
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i - 5.5f;
    cr_assert_eq(tw_npy_write(path, shape, 2, v), TW_OK);
    char *raw;
    size_t len;
    cr_assert_eq(tw_read_file(path, &raw, &len), TW_OK);
    tw_npy_array a;
    FILE *f = fopen(path, "wb");
    fwrite(raw, 1, len - 4, f); /* one value short */
    fclose(f);
    cr_assert_eq(tw_npy_read(path, &a), TW_ERR_PARSE);
    raw[1] = 'X';
    f = fopen(path, "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    cr_assert_eq(tw_npy_read(path, &a), TW_ERR_PARSE);
    raw[1] = 'N';
    char *d = strstr(raw + 10, "<f4");
    d[1] = 'f', d[2] = '8';
    f = fopen(path, "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    cr_assert_eq(tw_npy_read(path, &a), TW_ERR_UNSUPPORTED);
    free(raw);
    rm_tree(dir);
}
