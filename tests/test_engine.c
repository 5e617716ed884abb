/* The engine: KV-cache consistency, determinism across runs and thread counts, activation range,
 * bad configs and scenarios that do not fit. (Logits against the independent float64 reference
 * are in test_engine_ref.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_engine.h"
#include "tw_model.h"
#include "tw_test_util.h"

static tw_engine *make_engine(const tw_model_config *c, tw_backend **be, int threads, tw_dtype wd,
                              tw_dtype kvd, int batch, int max_seq, int max_prefill) {
    cr_assert_eq(tw_backend_cpu_create(threads, be), TW_OK, "%s", tw_last_error());
    tw_engine_opts o = {.cfg = c,
                        .be = *be,
                        .w_dtype = wd,
                        .kv_dtype = kvd,
                        .max_batch = batch,
                        .max_seq = max_seq,
                        .max_prefill = max_prefill,
                        .seed = 7,
                        .tp_size = 1,
                        .keep_host_logits = 1};
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    return e;
}

/* Decode step t's logits equal those of a prefill of the same t tokens: the KV cache holds what a
 * recomputation would. fp32 weights and cache, so the tolerance is fp32's. */
Test(engine, kv_cache_matches_full_prefill) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny", &c), TW_OK, "%s", tw_last_error());
    tw_backend *be1, *be2;
    const int B = 2, P = 5, G = 9, MAXS = P + G;
    tw_engine *dec = make_engine(&c, &be1, 0, TW_F32, TW_F32, B, MAXS, MAXS);
    tw_engine *full = make_engine(&c, &be2, 0, TW_F32, TW_F32, B, MAXS, MAXS);
    int seq[2 * 14];
    tw_prompt_tokens(3, B, P, c.vocab, seq); /* rows of P; re-laid as rows of MAXS below */
    int toks[2][14];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < P; i++) toks[b][i] = seq[b * P + i];
    int next[2], cur[2];
    cr_assert_eq(tw_engine_prefill(dec, B, P, seq, next), TW_OK, "%s", tw_last_error());
    float *ref = malloc(sizeof(float) * (size_t)B * c.vocab);
    int *pre = malloc(sizeof(int) * (size_t)B * MAXS);
    for (int t = P; t < MAXS - 1; t++) {
        for (int b = 0; b < B; b++) toks[b][t] = cur[b] = next[b];
        cr_assert_eq(tw_engine_decode(dec, B, cur, next), TW_OK, "%s", tw_last_error());
        /* full prefill of the first t + 1 tokens */
        tw_engine_reset(full);
        for (int b = 0; b < B; b++)
            for (int i = 0; i <= t; i++) pre[b * (t + 1) + i] = toks[b][i];
        int next_full[2];
        cr_assert_eq(tw_engine_prefill(full, B, t + 1, pre, next_full), TW_OK, "%s",
                     tw_last_error());
        memcpy(ref, tw_engine_logits(full), sizeof(float) * (size_t)B * c.vocab);
        double err = tw_test_rel_err_ff(tw_engine_logits(dec), ref, (size_t)B * c.vocab);
        cr_assert_lt(err, 1e-5, "step %d: decode vs full prefill rel err %g (tolerance 1e-5)", t,
                     err);
        for (int b = 0; b < B; b++) cr_assert_eq(next[b], next_full[b], "step %d seq %d", t, b);
    }
    free(ref);
    free(pre);
    tw_engine_destroy(dec);
    tw_engine_destroy(full);
    tw_backend_destroy(be1);
    tw_backend_destroy(be2);
    tw_model_free(&c);
}

static void generate(const char *model, int threads, tw_dtype wd, int *out, int B, int P, int G) {
    tw_model_config c;
    cr_assert_eq(tw_model_load(model, &c), TW_OK, "%s", tw_last_error());
    tw_backend *be;
    tw_engine *e = make_engine(&c, &be, threads, wd, wd, B, P + G, P);
    int *prompt = malloc(sizeof(int) * (size_t)B * P);
    tw_prompt_tokens(11, B, P, c.vocab, prompt);
    int next[4], cur[4];
    cr_assert_eq(tw_engine_prefill(e, B, P, prompt, next), TW_OK, "%s", tw_last_error());
    for (int s = 0; s < G; s++) {
        for (int b = 0; b < B; b++) out[b * G + s] = cur[b] = next[b];
        cr_assert_eq(tw_engine_decode(e, B, cur, next), TW_OK, "%s", tw_last_error());
    }
    free(prompt);
    tw_engine_destroy(e);
    tw_backend_destroy(be);
    tw_model_free(&c);
}

Test(engine, deterministic_across_runs_and_thread_counts) {
    enum { B = 3, P = 37, G = 12 };
    const char *models[] = {"tiny", "tiny-tied"};
    for (int mi = 0; mi < 2; mi++) {
        for (int d = 0; d < 2; d++) {
            tw_dtype wd = d ? TW_BF16 : TW_F32;
            int a[B * G], b[B * G], c1[B * G];
            generate(models[mi], 2, wd, a, B, P, G);
            generate(models[mi], 2, wd, b, B, P, G);
            generate(models[mi], 1, wd, c1, B, P, G);
            cr_assert_arr_eq(a, b, sizeof a, "%s %s: two runs differ", models[mi],
                             tw_dtype_name(wd));
            cr_assert_arr_eq(a, c1, sizeof a, "%s %s: 1 and 2 threads differ", models[mi],
                             tw_dtype_name(wd));
            int distinct = 0;
            for (int i = 1; i < B * G; i++) distinct += a[i] != a[0];
            cr_assert_gt(distinct, 0, "generation is degenerate (one token repeated)");
        }
    }
}

/* The residual stream stays finite and in a realistic range layer by layer: for the shipped
 * 1B shape (real sizes), and for a narrow model with the depth of the largest (405B, 126
 * layers). */
static void check_layer_rms(tw_model_config *c, double lo, double hi) {
    tw_backend *be;
    tw_engine *e = make_engine(c, &be, 0, TW_BF16, TW_BF16, 1, 8, 4);
    int prompt[4], next[1];
    tw_prompt_tokens(5, 1, 4, c->vocab, prompt);
    cr_assert_eq(tw_engine_prefill(e, 1, 4, prompt, next), TW_OK, "%s", tw_last_error());
    const double *rms = tw_engine_layer_rms(e);
    for (int l = 0; l < c->n_layers; l++)
        cr_assert(isfinite(rms[l]) && rms[l] > lo && rms[l] < hi,
                  "%s layer %d: hidden-state RMS %g outside (%g, %g)", c->name, l, rms[l], lo, hi);
    const float *lg = tw_engine_logits(e);
    cr_assert(tw_test_all_finite(lg, (size_t)c->vocab), "logits finite");
    tw_engine_destroy(e);
    tw_backend_destroy(be);
}

Test(engine, activations_in_range_1b_and_405b_depth, .timeout = 120) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("llama-3.2-1b", &c), TW_OK, "%s", tw_last_error());
    check_layer_rms(&c, 0.1, 100.0);
    tw_model_free(&c);
    /* the 405B config's depth, heads and rope, at a width this machine can run in a test */
    cr_assert_eq(tw_model_load("llama-3.1-405b", &c), TW_OK, "%s", tw_last_error());
    c.hidden = 256, c.intermediate = 832, c.n_heads = 16, c.n_kv_heads = 8, c.head_dim = 16;
    c.vocab = 1000;
    check_layer_rms(&c, 0.1, 100.0);
    tw_model_free(&c);
}

static tw_status parse(const char *text) {
    tw_model_config c;
    tw_status st = tw_model_parse(text, "test.json", &c);
    if (st == TW_OK) tw_model_free(&c);
    return st;
}

#define GOOD                                                                                       \
    "\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 100, "                 \
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 50"

Test(engine, bad_configs_are_refused_with_clear_errors) {
    cr_assert_eq(parse("{" GOOD ", \"num_hidden_layers\": 2}"), TW_OK, "%s", tw_last_error());
    cr_assert_eq(parse("{" GOOD "}"), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "num_hidden_layers"), "names the missing field: %s",
              tw_last_error());
    cr_assert_eq(
        parse("{\"model_type\": \"llama\", \"hidden_size\": 65, \"intermediate_size\": 100, "
              "\"num_attention_heads\": 4, \"vocab_size\": 50, \"num_hidden_layers\": 2}"),
        TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "does not divide hidden_size"), "%s", tw_last_error());
    cr_assert_eq(
        parse("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 100, "
              "\"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"vocab_size\": 50, "
              "\"num_hidden_layers\": 2}"),
        TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "num_key_value_heads (3) does not divide"), "%s",
              tw_last_error());
    cr_assert_eq(parse("{" GOOD ", \"num_hidden_layers\": 0}"), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "num_hidden_layers"), "%s", tw_last_error());
    cr_assert_eq(parse("this is not JSON"), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "not valid JSON"), "%s", tw_last_error());
    cr_assert_eq(parse("[1, 2]"), TW_ERR_PARSE);
    cr_assert_eq(parse("{" GOOD ", \"num_hidden_layers\": \"two\"}"), TW_ERR_PARSE);
    cr_assert_eq(parse("{" GOOD ", \"num_hidden_layers\": 2, \"rope_scaling\": {\"rope_type\": "
                       "\"yarn\", \"factor\": 2}}"),
                 TW_ERR_UNSUPPORTED);
    tw_model_config c;
    cr_assert_eq(tw_model_load("no-such-model", &c), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "no-such-model"), "%s", tw_last_error());
}

Test(engine, cuda_graph_needs_the_cuda_backend) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("tiny", &c), TW_OK, "%s", tw_last_error());
    tw_backend *be;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK);
    tw_engine_opts o = {.cfg = &c,
                        .be = be,
                        .w_dtype = TW_F32,
                        .kv_dtype = TW_F32,
                        .max_batch = 1,
                        .max_seq = 8,
                        .max_prefill = 4,
                        .seed = 1,
                        .tp_size = 1,
                        .cuda_graph = 1};
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "needs a backend with graphs; the cpu backend has none"),
              "%s", tw_last_error());
    tw_backend_destroy(be);
    tw_model_free(&c);
}

Test(engine, scenario_larger_than_memory_is_refused_before_allocating) {
    tw_model_config c;
    cr_assert_eq(tw_model_load("llama-3.1-405b", &c), TW_OK, "%s", tw_last_error());
    tw_backend *be;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK);
    tw_engine_opts o = {.cfg = &c,
                        .be = be,
                        .w_dtype = TW_BF16,
                        .kv_dtype = TW_BF16,
                        .max_batch = 1,
                        .max_seq = 160,
                        .max_prefill = 128,
                        .seed = 1,
                        .tp_size = 1};
    tw_engine *e = NULL;
    cr_assert_eq(tw_engine_create(&o, &e), TW_ERR_NOMEM);
    cr_assert_null(e);
    cr_assert(strstr(tw_last_error(), "does not fit") && strstr(tw_last_error(), "GiB"),
              "says need and availability: %s", tw_last_error());
    tw_mem_plan p;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_OK);
    /* 405B parameters in bf16: about 810 GB of weights */
    cr_assert(p.weights_bytes > 780e9 && p.weights_bytes < 840e9, "weights %zu", p.weights_bytes);
    o.max_seq = 200000;
    cr_assert_eq(tw_engine_plan(&o, &p), TW_ERR_INVALID, "past max_position_embeddings");
    tw_backend_destroy(be);
    tw_model_free(&c);
}
