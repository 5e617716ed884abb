/* The synthetic model as a Hugging Face folder (model.safetensors, config.json,
 * tokwatt-export.json). See tw_export.h. */
#include "tw_export.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tw_util.h"

#ifndef TW_VERSION
#define TW_VERSION "0.1.0"
#endif
#ifndef TW_GIT_COMMIT
#define TW_GIT_COMMIT "unknown"
#endif

/* Elements per row block: 4M (16 MB in fp32) bounds memory for any model size while keeping
 * tw_weight_fill's OpenMP loop and the file writes in large pieces. */
size_t tw_export_block_elems = (size_t)4 << 20;

static void tw_export_add(const tw_model_config *c, const tw_weight_kind *parts, int nparts,
                          const char *fused_name, int layer, tw_export_entry *out, int *n) {
    if (out) {
        tw_export_entry *e = &out[*n];
        memset(e, 0, sizeof *e);
        e->kind = parts[0];
        e->layer = layer;
        e->nparts = nparts;
        for (int i = 0; i < nparts; i++) {
            int r, cc;
            e->part[i] = parts[i];
            tw_weight_shape(c, parts[i], &r, &cc);
            e->rows += r;
            e->cols = cc;
        }
        if (fused_name)
            snprintf(e->name, sizeof e->name, "model.layers.%d.%s.weight", layer, fused_name);
        else
            tw_weight_hf_name_of(c, parts[0], layer, 0, e->name, sizeof e->name);
        e->ndim = tw_weight_is_1d(parts[0]) ? 1 : 2;
    }
    (*n)++;
}

static void tw_export_add1(const tw_model_config *c, tw_weight_kind k, int layer,
                           tw_export_entry *out, int *n) {
    int present =
        tw_weight_per_layer(k) ? tw_weight_in_layer(c, k, layer) : tw_weight_present(c, k);
    if (present) tw_export_add(c, &k, 1, NULL, layer, out, n);
}

/* Every expert of layer l: its gate, up and down tensors, each a row range of the stacked kind. */
static void tw_export_experts(const tw_model_config *c, int l, tw_export_entry *out, int *n) {
    static const tw_weight_kind kinds[] = {TW_W_EXPERT_GATE, TW_W_EXPERT_UP, TW_W_EXPERT_DOWN};
    for (int x = 0; x < c->n_experts; x++)
        for (int i = 0; i < 3; i++) {
            if (out) {
                tw_export_entry *e = &out[*n];
                memset(e, 0, sizeof *e);
                int r, cc;
                tw_weight_shape(c, kinds[i], &r, &cc);
                e->kind = e->part[0] = kinds[i];
                e->nparts = 1;
                e->layer = l;
                e->rows = tw_weight_expert_rows(c, kinds[i]);
                e->cols = cc;
                e->row0 = x * e->rows;
                e->ndim = 2;
                tw_weight_hf_name_of(c, kinds[i], l, x, e->name, sizeof e->name);
            }
            (*n)++;
        }
}

int tw_export_list(const tw_model_config *c, tw_export_entry *out) {
    static const tw_weight_kind attn[] = {TW_W_Q,      TW_W_Q_BIAS, TW_W_K,
                                          TW_W_K_BIAS, TW_W_V,      TW_W_V_BIAS,
                                          TW_W_O,      TW_W_Q_NORM, TW_W_K_NORM};
    static const tw_weight_kind mla[] = {TW_W_Q_A,  TW_W_Q_A_NORM,  TW_W_Q_B,  TW_W_Q,
                                         TW_W_KV_A, TW_W_KV_A_NORM, TW_W_KV_B, TW_W_O};
    static const tw_weight_kind qkv[] = {TW_W_Q, TW_W_K, TW_W_V}, gate_up[] = {TW_W_GATE, TW_W_UP};
    int n = 0;
    tw_export_add1(c, TW_W_EMBED, 0, out, &n);
    for (int l = 0; l < c->n_layers; l++) {
        tw_export_add1(c, TW_W_ATTN_NORM, l, out, &n);
        if (c->fused_layout) {
            tw_export_add(c, qkv, 3, "self_attn.qkv_proj", l, out, &n);
            tw_export_add1(c, TW_W_O, l, out, &n);
            tw_export_add1(c, TW_W_FFN_NORM, l, out, &n);
            tw_export_add(c, gate_up, 2, "mlp.gate_up_proj", l, out, &n);
            tw_export_add1(c, TW_W_DOWN, l, out, &n);
            continue;
        }
        if (c->mla)
            for (size_t i = 0; i < sizeof mla / sizeof mla[0]; i++)
                tw_export_add1(c, mla[i], l, out, &n);
        else
            for (size_t i = 0; i < sizeof attn / sizeof attn[0]; i++)
                tw_export_add1(c, attn[i], l, out, &n);
        tw_export_add1(c, TW_W_FFN_NORM, l, out, &n);
        if (!tw_model_layer_is_moe(c, l)) {
            tw_export_add1(c, TW_W_GATE, l, out, &n);
            tw_export_add1(c, TW_W_UP, l, out, &n);
            tw_export_add1(c, TW_W_DOWN, l, out, &n);
            continue;
        }
        tw_export_add1(c, TW_W_ROUTER, l, out, &n);
        tw_export_add1(c, TW_W_ROUTER_BIAS, l, out, &n);
        tw_export_experts(c, l, out, &n);
        tw_export_add1(c, TW_W_SHARED_GATE, l, out, &n);
        tw_export_add1(c, TW_W_SHARED_UP, l, out, &n);
        tw_export_add1(c, TW_W_SHARED_DOWN, l, out, &n);
    }
    tw_export_add1(c, TW_W_FINAL_NORM, 0, out, &n);
    tw_export_add1(c, TW_W_LM_HEAD, 0, out, &n);
    return n;
}

static tw_status tw_export_write_json(const char *path, json_t *root) {
    char *text = json_dumps(root, JSON_INDENT(2));
    if (!text) return TW_ERR(TW_ERR_NOMEM, "serialising %s", path);
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return TW_ERR(TW_ERR_NOMEM, "serialising %s", path);
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    tw_status st = tw_write_file_atomic(path, withnl, len + 1);
    free(withnl);
    return st;
}

/* The formula is defined (and documented) once, in harness/tw_model.h; the per-kind scales are
 * recorded as numbers in tokwatt-export.json so the description cannot go stale. */
static const char *tw_export_generator =
    "tokwatt counter-based synthetic weights: u = splitmix64(splitmix64(seed ^ (kind << 56) ^ "
    "(layer << 40)) + row * cols + col); value = scale(kind) * (2 * (u >> 40) / 2^24 - 1), norm "
    "weights 1 + scale * (...); see harness/tw_model.h tw_weight_value";

static tw_status tw_export_weights(const tw_model_config *c, uint64_t seed, tw_st_dtype dtype,
                                   const tw_export_entry *list, int n, const char *path,
                                   tw_export_progress_fn progress, void *ctx,
                                   tw_export_result *res) {
    tw_status st = TW_OK;
    tw_st_tensor *decl = calloc((size_t)n, sizeof *decl);
    void *buf = NULL;
    tw_st_writer *w = NULL;
    if (!decl) return TW_ERR(TW_ERR_NOMEM, "%d tensor declarations", n);
    size_t max_cols = 1;
    for (int i = 0; i < n; i++) {
        decl[i].name = (char *)list[i].name;
        decl[i].dtype = dtype;
        decl[i].ndim = list[i].ndim;
        if (list[i].ndim == 1) {
            decl[i].shape[0] = list[i].cols;
        } else {
            decl[i].shape[0] = list[i].rows;
            decl[i].shape[1] = list[i].cols;
        }
        if ((size_t)list[i].cols > max_cols) max_cols = (size_t)list[i].cols;
    }
    char seed_s[32], dtype_s[8];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    snprintf(dtype_s, sizeof dtype_s, "%s", dtype == TW_ST_BF16 ? "bf16" : "fp32");
    const char *meta[] = {"tokwatt_model",  c->name,       "tokwatt_seed",      seed_s,
                          "tokwatt_dtype",  dtype_s,       "tokwatt_generator", tw_export_generator,
                          "tokwatt_commit", TW_GIT_COMMIT, "tokwatt_version",   TW_VERSION};
    if ((st = tw_st_writer_open(path, decl, n, meta, 6, &w)) != TW_OK) goto done;

    size_t esize = tw_st_dtype_size(dtype);
    /* a block holds floor(block / cols) >= 1 whole rows: at most max(block, widest row) */
    size_t buf_elems = tw_export_block_elems > max_cols ? tw_export_block_elems : max_cols;
    buf = malloc(buf_elems * esize); /* [rows in block, cols] */
    if (!buf) {
        st = TW_ERR(TW_ERR_NOMEM, "export row block of %zu bytes", buf_elems * esize);
        goto done;
    }
    uint64_t total = 0, done_bytes = 0, elems = 0;
    for (int i = 0; i < n; i++) total += (uint64_t)list[i].rows * (uint64_t)list[i].cols * esize;
    for (int i = 0; i < n; i++) {
        const tw_export_entry *e = &list[i];
        int rows_per_block = (int)(tw_export_block_elems / (size_t)e->cols);
        if (rows_per_block < 1) rows_per_block = 1;
        for (int p = 0; p < e->nparts; p++) { /* a fused tensor: each part's rows in turn */
            int prows, pcols;
            tw_weight_shape(c, e->part[p], &prows, &pcols);
            if (e->nparts == 1) prows = e->rows; /* an expert: a row range of the stacked kind */
            for (int r0 = 0; r0 < prows; r0 += rows_per_block) {
                int nr = prows - r0 < rows_per_block ? prows - r0 : rows_per_block;
                size_t cnt = (size_t)nr * (size_t)e->cols;
                int gr = e->row0 + r0;
                if (dtype == TW_ST_BF16)
                    tw_weight_fill_bf16(c, seed, e->part[p], e->layer, gr, nr, 0, e->cols, buf);
                else
                    tw_weight_fill(c, seed, e->part[p], e->layer, gr, nr, 0, e->cols, buf);
                if ((st = tw_st_writer_append(w, e->name, buf, cnt * esize)) != TW_OK) goto done;
                if (tw_interrupt_signal()) { /* the writer's abort removes its temporary file */
                    st = TW_ERR(TW_ERR_INTERRUPTED, "export interrupted by %s",
                                tw_signal_name(tw_interrupt_signal()));
                    goto done;
                }
                done_bytes += cnt * esize;
                elems += cnt;
                if (progress) progress(ctx, done_bytes, total);
            }
        }
    }
    res->file_bytes = tw_st_writer_file_bytes(w);
    res->data_bytes = total;
    res->params = elems;
    res->n_tensors = n;
    st = tw_st_writer_close(w);
    w = NULL;
done:
    tw_st_writer_abort(w);
    free(buf);
    free(decl);
    return st;
}

tw_status tw_export_model(const tw_model_config *c, uint64_t seed, tw_st_dtype dtype,
                          const char *dir, tw_export_progress_fn progress, void *ctx,
                          tw_export_result *res) {
    memset(res, 0, sizeof *res);
    if (dtype != TW_ST_BF16 && dtype != TW_ST_F32)
        return TW_ERR(TW_ERR_INVALID, "export dtype must be BF16 or F32, not %s",
                      tw_st_dtype_name(dtype));
    if (!c->json) return TW_ERR(TW_ERR_INVALID, "model config '%s' has no JSON text", c->name);
    int n = tw_export_list(c, NULL);
    tw_export_entry *list = calloc((size_t)n, sizeof *list);
    if (!list) return TW_ERR(TW_ERR_NOMEM, "%d export entries", n);
    tw_export_list(c, list);
    tw_status st = TW_OK;
    json_t *cfg = NULL, *info = NULL;

    /* Room for the data, the header (~200 bytes per tensor) and the two JSON files, checked
     * before anything is created. */
    uint64_t need = 1 << 20;
    size_t esize = tw_st_dtype_size(dtype);
    for (int i = 0; i < n; i++)
        need += (uint64_t)list[i].rows * (uint64_t)list[i].cols * esize + 256;
    /* the folder can be created and written (a reason of its own for /proc/x), then room */
    if ((st = tw_check_output_dir(dir, need, "the export")) != TW_OK) goto done;

    snprintf(res->path, sizeof res->path, "%s/model.safetensors", dir);
    if ((st = tw_export_weights(c, seed, dtype, list, n, res->path, progress, ctx, res)) != TW_OK)
        goto done;

    json_error_t jerr;
    cfg = json_loads(c->json, 0, &jerr);
    if (!cfg || !json_is_object(cfg)) {
        st = TW_ERR(TW_ERR_PARSE, "model config '%s': stored JSON does not parse", c->name);
        goto done;
    }
    /* the class transformers must instantiate, whichever of the two the config named */
    json_t *archs = json_array();
    json_array_append_new(archs, json_string(c->architecture));
    json_object_set_new(cfg, "architectures", archs);
    json_object_set_new(cfg, "model_type", json_string(c->arch));
    json_object_set_new(cfg, "torch_dtype",
                        json_string(dtype == TW_ST_BF16 ? "bfloat16" : "float32"));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((st = tw_export_write_json(path, cfg)) != TW_OK) goto done;

    char when[64];
    tw_utc_iso(when, sizeof when, tw_unix_now_s());
    info = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:i, s:I, s:I, s:I}",
                     "tool", "tokwatt", "version", TW_VERSION, "commit", TW_GIT_COMMIT,
                     "created_utc", when, "model", c->name, "model_origin", c->origin, "seed",
                     (json_int_t)seed, "dtype", dtype == TW_ST_BF16 ? "bf16" : "fp32", "generator",
                     tw_export_generator, "weights_file", "model.safetensors", "tensors",
                     res->n_tensors, "parameters", (json_int_t)res->params, "data_bytes",
                     (json_int_t)res->data_bytes, "file_bytes", (json_int_t)res->file_bytes);
    if (!info) {
        st = TW_ERR(TW_ERR_NOMEM, "building tokwatt-export.json");
        goto done;
    }
    /* scale(kind) of every tensor kind, by a representative Hugging Face name */
    json_t *scales = json_object();
    for (int k = 0; k < TW_W_KINDS; k++) {
        if (!tw_weight_present(c, (tw_weight_kind)k)) continue;
        char nm[96];
        int l0 = 0; /* the first layer holding it */
        while (tw_weight_per_layer((tw_weight_kind)k) && l0 < c->n_layers - 1 &&
               !tw_weight_in_layer(c, (tw_weight_kind)k, l0))
            l0++;
        tw_weight_hf_name_of(c, (tw_weight_kind)k, l0, 0, nm, sizeof nm);
        json_object_set_new(scales, nm, json_real(tw_weight_scale(c, (tw_weight_kind)k)));
    }
    json_object_set_new(info, "generator_scales", scales);
    if (c->n_experts > 0)
        json_object_set_new(
            info, "expert_tensors",
            json_string("expert E's tensors are rows [E * rows, (E + 1) * rows) of "
                        "the generator's stacked expert kinds (harness/tw_model.h)"));
    if (c->fused_layout)
        json_object_set_new(info, "fused_tensors",
                            json_string("qkv_proj = rows of q_proj, k_proj, v_proj; gate_up_proj = "
                                        "rows of gate_proj, up_proj (the generator's kinds)"));
    snprintf(path, sizeof path, "%s/tokwatt-export.json", dir);
    st = tw_export_write_json(path, info);
done:
    json_decref(cfg);
    json_decref(info);
    free(list);
    return st;
}
