/* The engine's logits against the independent float64 reference forward pass
 * (tests/tw_ref_model.c: its own RMSNorm, RoPE, attention and MLP), over a prefill and several
 * decode steps of a batch, for the tiny models (GQA with explicit head_dim and llama3 RoPE; tied
 * embeddings). Tolerances (relative norm of each step's logits):
 *   fp32 weights, fp32 KV cache: 1e-4, identical greedy tokens
 *   bf16 weights, fp32 KV cache: 1e-4 (the reference uses the same bf16-rounded weights),
 *                                identical greedy tokens
 *   bf16 weights, bf16 KV cache: 1e-2 (bf16's), identical tokens wherever the reference's top
 *                                two logits differ by more than 0.05
 *   bf16 weights where the GEMMs round activations to bf16 (the bf16 dot-product
 *   instructions, tw_cpu_bf16_rounds_activations): as with a bf16 KV cache, 1e-2; both
 *   together (two independent bf16 roundings compounding over the layers): 2e-2 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cpu.h"
#include "tw_engine.h"
#include "tw_ref_model.h"
#include "tw_test_util.h"

static void check_model(const char *model, tw_dtype wd, tw_dtype kvd, double tol, int strict) {
    enum { B = 2, P = 13, G = 7 };
    if (wd == TW_BF16 && tw_cpu_bf16_rounds_activations()) {
        tol = kvd == TW_BF16 ? 2e-2 : 1e-2;
        strict = 0;
    }
    tw_model_config c;
    cr_assert_eq(tw_model_load(model, &c), TW_OK, "%s", tw_last_error());
    tw_backend *be;
    cr_assert_eq(tw_backend_cpu_create(2, &be), TW_OK);
    tw_engine_opts o = {.cfg = &c,
                        .be = be,
                        .w_dtype = wd,
                        .kv_dtype = kvd,
                        .max_batch = B,
                        .max_seq = P + G,
                        .max_prefill = P,
                        .seed = 21,
                        .tp_size = 1,
                        .keep_host_logits = 1};
    tw_engine *e;
    cr_assert_eq(tw_engine_create(&o, &e), TW_OK, "%s", tw_last_error());
    int prompt[B * P], seqs[B][P + G], next[B], cur[B];
    tw_prompt_tokens(4, B, P, c.vocab, prompt);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < P; i++) seqs[b][i] = prompt[b * P + i];
    size_t V = (size_t)c.vocab;
    float *eng = malloc(sizeof(float) * G * B * V); /* [step, batch, vocab] */
    int gen[G][B];
    cr_assert_eq(tw_engine_prefill(e, B, P, prompt, next), TW_OK, "%s", tw_last_error());
    for (int s = 0; s < G; s++) {
        memcpy(eng + (size_t)s * B * V, tw_engine_logits(e), sizeof(float) * B * V);
        for (int b = 0; b < B; b++) gen[s][b] = next[b];
        if (s == G - 1) break;
        for (int b = 0; b < B; b++) seqs[b][P + s] = cur[b] = next[b];
        cr_assert_eq(tw_engine_decode(e, B, cur, next), TW_OK, "%s", tw_last_error());
    }
    tw_ref_model *ref = tw_ref_create(&c, 21, wd == TW_BF16);
    double *rl = malloc(sizeof(double) * (P + G) * V);
    for (int b = 0; b < B; b++) {
        tw_ref_forward(ref, seqs[b], P + G - 1, rl);
        for (int s = 0; s < G; s++) {
            const double *want = rl + (size_t)(P - 1 + s) * V;
            const float *got = eng + ((size_t)s * B + b) * V;
            double err = tw_test_rel_err(got, want, V);
            cr_assert_lt(err, tol, "%s w=%s kv=%s seq %d step %d: logits rel err %g > %g", model,
                         tw_dtype_name(wd), tw_dtype_name(kvd), b, s, err, tol);
            int best = 0, second = -1;
            for (size_t i = 1; i < V; i++)
                if (want[i] > want[best]) best = (int)i;
            for (size_t i = 0; i < V; i++)
                if ((int)i != best && (second < 0 || want[i] > want[second])) second = (int)i;
            if (strict || want[best] - want[second] > 0.05)
                cr_assert_eq(gen[s][b], best, "%s seq %d step %d: engine token %d, reference %d",
                             model, b, s, gen[s][b], best);
        }
    }
    free(rl);
    free(eng);
    tw_ref_destroy(ref);
    tw_engine_destroy(e);
    tw_backend_destroy(be);
    tw_model_free(&c);
}

Test(engine_ref, tiny_fp32) {
    check_model("tiny", TW_F32, TW_F32, 1e-4, 1);
}
Test(engine_ref, tiny_bf16_weights) {
    check_model("tiny", TW_BF16, TW_F32, 1e-4, 1);
}
Test(engine_ref, tiny_bf16_weights_and_cache) {
    check_model("tiny", TW_BF16, TW_BF16, 1e-2, 0);
}
Test(engine_ref, tied_fp32) {
    check_model("tiny-tied", TW_F32, TW_F32, 1e-4, 1);
}
Test(engine_ref, tied_bf16_weights_and_cache) {
    check_model("tiny-tied", TW_BF16, TW_BF16, 1e-2, 0);
}
