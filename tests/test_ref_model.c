/* The float64 reference model (tests/tw_ref_model.c) checked on its own: building blocks on
 * hand-computed vectors, a 1-token forward where attention reduces to the value vector,
 * causality, the sliding window's reach, Qwen2's biases, and golden logits from Hugging Face
 * transformers' LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM and Phi3ForCausalLM. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_model.h"
#include "tw_ref_model.h"
#include "tw_test_util.h"

/* the source tree, for test files under it ($TW_SOURCE_DIR, set by ctest) */
static const char *tw_test_source_dir(void) {
    const char *d = getenv("TW_SOURCE_DIR");
    cr_assert(d && *d, "TW_SOURCE_DIR names the source tree (set by ctest)");
    return d;
}

static void load_model(const char *name, tw_model_config *c) {
    cr_assert_eq(tw_model_load(name, c), TW_OK, "%s", tw_last_error());
}

static void assert_close(double got, double want, double rel, const char *what) {
    cr_assert(fabs(got - want) <= rel * fmax(1.0, fabs(want)), "%s: got %.17g want %.17g", what,
              got, want);
}

Test(ref_model, rmsnorm_known_vector) {
    double x[4] = {1, 2, 3, 4}, w[4] = {1, 0.5, 2, -1}, out[4];
    /* mean(x^2) = 30 / 4 = 7.5 */
    tw_ref_rmsnorm(x, w, 4, 0.0, out);
    assert_close(out[0], 0.3651483716701107, 1e-15, "out[0] = 1 / sqrt(7.5)");
    assert_close(out[1], 0.3651483716701107, 1e-15, "out[1] = 2 * 0.5 / sqrt(7.5)");
    assert_close(out[2], 2.1908902300206643, 1e-15, "out[2] = 3 * 2 / sqrt(7.5)");
    assert_close(out[3], -1.4605934866804429, 1e-15, "out[3] = -4 / sqrt(7.5)");
    tw_ref_rmsnorm(x, w, 4, 1e-5, out);
    assert_close(out[0], 0.3651481282381064, 1e-15, "eps inside the sqrt");
}

Test(ref_model, rope_rotate_half_known_vector) {
    tw_rope_params rp;
    memset(&rp, 0, sizeof rp);
    rp.theta = 10000.0f;
    rp.type = TW_ROPE_DEFAULT;
    rp.factor = 1.0f;
    /* D = 4: inv_freq = {1, 10000^-0.5 = 0.01}; pairs (x0, x2) and (x1, x3) */
    assert_close(tw_ref_rope_inv_freq(&rp, 4, 0), 1.0, 1e-15, "inv_freq[0]");
    assert_close(tw_ref_rope_inv_freq(&rp, 4, 1), 0.01, 1e-15, "inv_freq[1]");
    double x[4] = {1, 2, 3, 4};
    tw_ref_rope(x, 4, 0, &rp);
    cr_assert(x[0] == 1 && x[1] == 2 && x[2] == 3 && x[3] == 4, "position 0 is the identity");
    tw_ref_rope(x, 4, 1, &rp);
    /* x0' = cos(1) - 3 sin(1), x2' = 3 cos(1) + sin(1); angle 0.01 for the second pair */
    assert_close(x[0], -1.9841106485555495, 1e-14, "x0 at pos 1");
    assert_close(x[2], 2.4623779024123156, 1e-14, "x2 at pos 1");
    assert_close(x[1], 1.959900667496664, 1e-14, "x1 at pos 1");
    assert_close(x[3], 4.019799668334994, 1e-14, "x3 at pos 1");
    double y[4] = {1, 2, 3, 4};
    tw_ref_rope(y, 4, 3, &rp);
    assert_close(y[0], -1.413352520780047, 1e-14, "x0 at pos 3");
    assert_close(y[2], -2.828857481741469, 1e-14, "x2 at pos 3");
    assert_close(y[1], 1.8791180666879925, 1e-14, "x1 at pos 3");
    assert_close(y[3], 4.058191135400942, 1e-14, "x3 at pos 3");
}

Test(ref_model, rope_llama3_and_linear_inv_freq) {
    /* Llama 3.1's rope_scaling: theta 500000, head_dim 128, factor 8, low 1, high 4, orig 8192.
     * Wavelength bands: < 8192 / 4 = 2048 kept, > 8192 / 1 divided by 8, between blended. */
    tw_rope_params rp;
    memset(&rp, 0, sizeof rp);
    rp.theta = 500000.0f;
    rp.type = TW_ROPE_LLAMA3;
    rp.factor = 8.0f;
    rp.low_freq_factor = 1.0f;
    rp.high_freq_factor = 4.0f;
    rp.original_max_pos = 8192.0f;
    /* i = 0: inv 1, wavelength 2 pi: kept */
    assert_close(tw_ref_rope_inv_freq(&rp, 128, 0), 1.0, 1e-15, "i=0 kept");
    /* i = 63: inv = 500000^(-126/128), wavelength ~2e7 > 8192: divided by 8 */
    assert_close(tw_ref_rope_inv_freq(&rp, 128, 63), 3.068925988914511e-07, 1e-12, "i=63 / 8");
    /* i = 32: inv = 500000^-0.5 = 1.414213562373095e-3, wavelength 4442.88 in the band:
     * smooth = (8192 / 4442.88 - 1) / 3 = 0.281282605, (1 - smooth) inv / 8 + smooth inv */
    assert_close(tw_ref_rope_inv_freq(&rp, 128, 32), 0.0005248461609929547, 1e-12, "i=32 band");
    rp.type = TW_ROPE_LINEAR;
    rp.factor = 2.0f;
    assert_close(tw_ref_rope_inv_freq(&rp, 128, 32), 0.001414213562373095 / 2, 1e-12, "linear");
}

Test(ref_model, silu) {
    assert_close(tw_ref_silu(0.0), 0.0, 1e-15, "silu(0)");
    assert_close(tw_ref_silu(1.0), 0.7310585786300049, 1e-15, "silu(1) = 1 / (1 + e^-1)");
    assert_close(tw_ref_silu(-2.0), -0.2384058440442351, 1e-15, "silu(-2)");
}

/* One token: softmax over a single key is 1, so each head's attention output is its kv head's
 * value vector, and q, k and RoPE drop out. Rebuilt here from the weights long-hand. */
static void one_token_check(const char *model) {
    tw_model_config c;
    load_model(model, &c);
    tw_ref_model *m = tw_ref_create(&c, 3, 0);
    cr_assert_not_null(m);
    int H = c.hidden, D = c.head_dim, NH = c.n_heads, G = c.n_kv_heads, F = c.intermediate;
    int tok = c.vocab - 2;
    double *logits = malloc(sizeof(double) * c.vocab);
    for (int i = 0; i < c.vocab; i++) logits[i] = NAN;
    tw_ref_forward(m, &tok, 1, logits);

    double *x = calloc((size_t)H, sizeof(double)), *h = calloc((size_t)H, sizeof(double));
    double *v = calloc((size_t)G * D, sizeof(double)),
           *att = calloc((size_t)NH * D, sizeof(double));
    double *a = calloc((size_t)F, sizeof(double));
    for (int i = 0; i < H; i++) x[i] = tw_weight_value(&c, 3, TW_W_EMBED, 0, tok, i);
    for (int l = 0; l < c.n_layers; l++) {
        tw_ref_rmsnorm(x, tw_ref_weight(m, TW_W_ATTN_NORM, l), H, c.rms_eps, h);
        for (int r = 0; r < G * D; r++) {
            v[r] = 0;
            for (int j = 0; j < H; j++) v[r] += tw_weight_value(&c, 3, TW_W_V, l, r, j) * h[j];
        }
        for (int hd = 0; hd < NH; hd++) /* Hugging Face repeat_kv: head hd reads kv head hd/rep */
            for (int d = 0; d < D; d++) att[hd * D + d] = v[(hd / (NH / G)) * D + d];
        for (int r = 0; r < H; r++)
            for (int j = 0; j < NH * D; j++)
                x[r] += tw_weight_value(&c, 3, TW_W_O, l, r, j) * att[j];
        tw_ref_rmsnorm(x, tw_ref_weight(m, TW_W_FFN_NORM, l), H, c.rms_eps, h);
        for (int r = 0; r < F; r++) {
            double g = 0, u = 0;
            for (int j = 0; j < H; j++) {
                g += tw_weight_value(&c, 3, TW_W_GATE, l, r, j) * h[j];
                u += tw_weight_value(&c, 3, TW_W_UP, l, r, j) * h[j];
            }
            a[r] = g / (1 + exp(-g)) * u;
        }
        for (int r = 0; r < H; r++)
            for (int j = 0; j < F; j++) x[r] += tw_weight_value(&c, 3, TW_W_DOWN, l, r, j) * a[j];
    }
    tw_ref_rmsnorm(x, tw_ref_weight(m, TW_W_FINAL_NORM, 0), H, c.rms_eps, h);
    tw_weight_kind head = c.tie_embeddings ? TW_W_EMBED : TW_W_LM_HEAD;
    double num = 0, den = 0;
    for (int r = 0; r < c.vocab; r++) {
        double want = 0;
        for (int j = 0; j < H; j++) want += tw_weight_value(&c, 3, head, 0, r, j) * h[j];
        num += (logits[r] - want) * (logits[r] - want);
        den += want * want;
    }
    double rel = sqrt(num / den);
    cr_assert(rel < 1e-12, "%s: 1-token logits rel err %.3e (tolerance 1e-12)", model, rel);
    free(x), free(h), free(v), free(att), free(a), free(logits);
    tw_ref_destroy(m);
    tw_model_free(&c);
}

Test(ref_model, one_token_attention_is_value_vector) {
    one_token_check("tiny");
    one_token_check("tiny-tied");
}

Test(ref_model, causal_later_tokens_do_not_change_earlier_logits) {
    tw_model_config c;
    load_model("tiny", &c);
    tw_ref_model *m = tw_ref_create(&c, 5, 0);
    cr_assert_not_null(m);
    enum { N = 17, CUT = 9 };
    int tok[N], tok2[N];
    tw_prompt_tokens(21, 1, N, c.vocab, tok);
    memcpy(tok2, tok, sizeof tok);
    for (int i = CUT; i < N; i++) tok2[i] = (tok[i] + 1 + i) % c.vocab;
    double *l1 = malloc(sizeof(double) * N * c.vocab), *l2 = malloc(sizeof(double) * N * c.vocab);
    tw_ref_forward(m, tok, N, l1);
    tw_ref_forward(m, tok2, N, l2);
    for (int t = 0; t < N; t++) {
        double d = 0;
        for (int v = 0; v < c.vocab; v++)
            d = fmax(d, fabs(l1[t * c.vocab + v] - l2[t * c.vocab + v]));
        if (t < CUT)
            cr_assert(d == 0, "position %d changed by %.3e when tokens from %d changed", t, d, CUT);
        else
            cr_assert(d > 1e-3, "position %d did not change (%.3e) with its own token", t, d);
    }
    /* a prefix forward gives the same logits as the first positions of the longer one */
    double *l3 = malloc(sizeof(double) * CUT * c.vocab);
    tw_ref_forward(m, tok, CUT, l3);
    cr_assert(memcmp(l3, l1, sizeof(double) * CUT * c.vocab) == 0, "prefix logits differ");
    free(l1), free(l2), free(l3);
    tw_ref_destroy(m);
    tw_model_free(&c);
}

Test(ref_model, repeated_token_gives_same_logits_everywhere) {
    /* With one token repeated, every position attends over identical value vectors, so the
     * attention output (a convex combination) is that vector whatever the RoPE scores: every
     * position's logits equal position 0's. Catches softmax weights that do not sum to 1. */
    tw_model_config c;
    load_model("tiny", &c);
    tw_ref_model *m = tw_ref_create(&c, 9, 0);
    enum { N = 13 };
    int tok[N];
    for (int i = 0; i < N; i++) tok[i] = 123;
    double *l = malloc(sizeof(double) * N * c.vocab);
    tw_ref_forward(m, tok, N, l);
    for (int t = 1; t < N; t++)
        for (int v = 0; v < c.vocab; v++)
            cr_assert(fabs(l[t * c.vocab + v] - l[v]) < 1e-12 * fmax(1, fabs(l[v])),
                      "position %d vocab %d: %.17g vs %.17g", t, v, l[t * c.vocab + v], l[v]);
    free(l);
    tw_ref_destroy(m);
    tw_model_free(&c);
}

Test(ref_model, weights_fp32_and_bf16) {
    tw_model_config c;
    load_model("tiny-tied", &c);
    tw_ref_model *m32 = tw_ref_create(&c, 4, 0), *m16 = tw_ref_create(&c, 4, 1);
    cr_assert(m32 && m16);
    cr_assert_eq(tw_ref_weight(m32, TW_W_LM_HEAD, 0), tw_ref_weight(m32, TW_W_EMBED, 0),
                 "tied LM head is the embedding");
    tw_weight_kind kinds[] = {TW_W_EMBED, TW_W_Q, TW_W_DOWN, TW_W_FFN_NORM, TW_W_FINAL_NORM};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        int rows, cols, layer = 1;
        tw_weight_shape(&c, kinds[ki], &rows, &cols);
        const double *w32 = tw_ref_weight(m32, kinds[ki], layer);
        const double *w16 = tw_ref_weight(m16, kinds[ki], layer);
        int rounded = 0;
        for (int r = 0; r < rows; r += 7)
            for (int j = 0; j < cols; j += 3) {
                float f = tw_weight_value(&c, 4, kinds[ki], layer, r, j);
                cr_assert_eq(w32[r * cols + j], (double)f);
                cr_assert_eq(w16[r * cols + j], (double)tw_test_from_bf16(tw_test_to_bf16(f)));
                rounded += w16[r * cols + j] != w32[r * cols + j];
            }
        cr_assert(rounded > 0, "kind %d: bf16 weights identical to fp32", (int)kinds[ki]);
    }
    /* bf16 weights move the logits by roughly bf16's precision, not more */
    enum { N = 6 };
    int tok[N];
    tw_prompt_tokens(2, 1, N, c.vocab, tok);
    double *a = malloc(sizeof(double) * N * c.vocab), *b = malloc(sizeof(double) * N * c.vocab);
    tw_ref_forward(m32, tok, N, a);
    tw_ref_forward(m16, tok, N, b);
    double num = 0, den = 0;
    for (int i = 0; i < N * c.vocab; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
    double rel = sqrt(num / den);
    cr_assert(rel > 1e-5 && rel < 3e-2, "bf16 vs fp32 weights: logits rel diff %.3e", rel);
    free(a), free(b);
    tw_ref_destroy(m32);
    tw_ref_destroy(m16);
    tw_model_free(&c);
}

Test(ref_model, hidden_norms_stay_order_one) {
    const char *models[] = {"tiny", "tiny-tied"};
    for (int mi = 0; mi < 2; mi++) {
        tw_model_config c;
        load_model(models[mi], &c);
        tw_ref_model *m = tw_ref_create(&c, 1, 1);
        enum { N = 17 };
        int tok[N];
        tw_prompt_tokens(1, 1, N, c.vocab, tok);
        double rms[64];
        for (int i = 0; i < 64; i++) rms[i] = NAN;
        tw_ref_hidden_norms(m, tok, N, rms);
        /* embeddings are uniform in [-a, a): RMS a / sqrt(3) */
        double want0 = tw_weight_scale(&c, TW_W_EMBED) / sqrt(3.0);
        cr_assert(fabs(rms[0] - want0) < 0.1 * want0, "%s: embedding rms %.4f, want %.4f",
                  models[mi], rms[0], want0);
        /* each pre-norm block adds an O(1) update: the stream stays O(1) over a few layers */
        for (int l = 1; l <= c.n_layers; l++)
            cr_assert(rms[l] > 0.2 && rms[l] < 5.0, "%s: rms after layer %d = %.4f", models[mi],
                      l - 1, rms[l]);
        cr_assert(isnan(rms[c.n_layers + 1]), "wrote past n_layers + 1 values");
        tw_ref_destroy(m);
        tw_model_free(&c);
    }
}

/* Golden logits from Hugging Face transformers 5.24 (torch 2.15, CPU): LlamaForCausalLM,
 * Qwen2ForCausalLM (q/k/v biases; with use_sliding_window, a window of 5 on the second layer),
 * MistralForCausalLM (sliding window 7 < the 40-token context), Phi3ForCausalLM (fused
 * qkv_proj / gate_up_proj, window 9), eager attention (its sliding-window mask), weights and
 * compute in float64 but transformers' RMSNorm in float32, loaded from `tokwatt export` folders
 * of these models (seed 7), prompt tw_prompt_tokens(seed 11). They pin the reference to the
 * Hugging Face definitions (rotate-half RoPE, llama3 scaling, GQA head mapping, tied head, the
 * biases added before RoPE, the window's edge: positions on both sides of it are checked).
 * transformers computes inv_freq and RMSNorm in float32, hence the 1e-5 tolerance (observed:
 * ~3e-7 relative). If the synthetic weight generator (harness/model.c) changes, regenerate with
 * scripts/golden-logits.py (its header says how). */
typedef struct {
    const char *model; /* a name in configs/models, or a path under the source tree */
    int bf16, n, npos;
    int pos[4];
    double want[4][5]; /* logits of vocab ids 0, 1, 2, 100, last_id at pos[] */
    int last_id;
} golden_case;

Test(ref_model, matches_huggingface_transformers_golden) {
    const golden_case cases[] = {
        {"tiny",
         0,
         70,
         2,
         {0, 69},
         {{0.21862874953486527, -0.442327822355828, 0.2883589125642193, 0.038417027528165885,
           -0.4877581011432334},
          {-1.6922016695860853, -0.30697316252705115, -1.172241170637374, 0.038476060822246944,
           -1.662035439259512}},
         299},
        {"tiny-tied",
         1,
         33,
         2,
         {0, 32},
         {{0.038055435629305023, 0.26512363698534624, 0.026635016129509026, 0.28574227337964109,
           -0.18265382614508052},
          {0.15891496413107475, -0.18736306830479421, -0.064591236379703876, -0.18733306869758515,
           -0.00068251231227689502}},
         299},
        {"tiny-qwen2",
         0,
         40,
         2,
         {0, 39},
         {{1.2067726752043395, 0.07203578976512164, -0.1862006245180802, -1.6036386216934533,
           0.8890338858626878},
          {-1.2766142949956987, 0.13314926648273198, -0.5595685824254859, -1.2033659533834644,
           1.3375356085506602}},
         299},
        {"tests/data/tiny-qwen2-swa.json",
         0,
         40,
         3,
         {0, 5, 39},
         {{1.2067726752043395, 0.07203578976512164, -0.1862006245180802, -1.6036386216934533,
           0.8890338858626878},
          {1.7255788123768487, 0.24584479278981167, 0.12384930784406867, -0.961632339901901,
           1.008257137559813},
          {-0.8959497688732864, -0.20735698532743652, -0.34066437035435376, -1.2405835861923,
           0.5310064549856918}},
         299},
        {"tiny-mistral",
         0,
         40,
         4,
         {0, 6, 7, 39},
         {{1.108931459918705, 0.191817542454819, 0.9181217658327768, 1.2147412824004236,
           -1.6674346497986499},
          {0.7466586663899607, -0.5153811055605988, 0.9755184010630688, 1.2606518052584452,
           -1.230563523006552},
          {-1.6146680926160153, -0.16988039279518635, -2.131202187972291, -0.9110901855049449,
           -0.4413633204077272},
          {1.3400011408051802, 0.9998460245529327, -1.1850664678223002, 0.062062168381858636,
           -0.35699415743244955}},
         299},
        {"tiny-phi3",
         0,
         40,
         4,
         {0, 8, 9, 39},
         {{-1.7940222474312741, -0.988539993458912, 0.5801705148541568, 0.006120503120142173,
           -0.26039434919481763},
          {-0.8055548753048782, -1.0797304619660517, -0.39072869497036533, 0.1845013400148613,
           0.48947881980551494},
          {0.350209038633797, 0.28916828655556037, -0.16964036187793133, 1.383181371217311,
           0.14601338746874973},
          {-0.9799003951548604, -0.9947259085297792, 0.08184047301855624, 0.2938491490784985,
           -0.1403959191130913}},
         292},
        /* Qwen3 (q/k norms), Qwen3-MoE, Mixtral, DeepSeek-V3 and V2 (latent attention, yarn,
         * grouped routing, shared experts): transformers 5.24 with eager experts */
        {"tiny-qwen3",
         0,
         40,
         3,
         {0, 21, 39},
         {{-1.4938853111100097, -1.5687451610598138, -1.2165674173563945, 1.4012638243254134,
           1.0039351331849373},
          {-1.3339174605937332, -0.510581659204223, 0.4172790763485672, 0.5828680908241849,
           1.3943396784201618},
          {-0.8054807145233017, -0.2553544683851221, -0.14983591955880993, 0.5982982288632958,
           1.134397753538573}},
         299},
        {"tiny-qwen3-moe",
         0,
         40,
         3,
         {0, 21, 39},
         {{-0.6078474406928819, 1.0697065889889126, -2.3946207392289742, 1.130976509558308,
           1.2141036293171172},
          {-0.3831121803737958, -0.7734447387899509, -1.8598120403064788, -1.565467107357252,
           0.4323862758378148},
          {0.6861189259039184, -1.562951229825982, -2.0224970666471256, 1.6989132445517907,
           -0.15885462089507107}},
         299},
        {"tiny-mixtral",
         0,
         40,
         3,
         {0, 21, 39},
         {{1.8286940790285975, -0.0449620008316668, 0.525884702610217, -0.6835011706659213,
           0.6347847103456101},
          {1.3285257841024356, -0.7016004638293765, 1.8058969250416899, -1.2642909560701565,
           0.43975625880992086},
          {0.4502292450987581, 0.8293976023625407, 1.5738615869778803, -0.3404108159209307,
           -0.21392775039769743}},
         299},
        {"tiny-deepseek-v3",
         0,
         40,
         3,
         {0, 21, 39},
         {{0.6092426234819197, 0.7601709755130022, 1.5253598608262464, -0.6304533771426223,
           -1.005667714503241},
          {-1.7608889264188912, 0.2614578734806773, 0.3762134720682619, 0.10851735010300796,
           -0.6690374171209567},
          {1.0568595933863614, 0.5238667388784526, 2.3458195926959493, -0.5115458363757543,
           0.6823324787476956}},
         299},
        {"tiny-deepseek-v2",
         0,
         40,
         3,
         {0, 21, 39},
         {{0.15805266711615928, 0.10458322496067751, -1.475983337719059, -0.30434872916074457,
           0.5071884998428072},
          {2.1579960546494537, 0.9913286378119789, -0.9763801319029973, -0.2033404853531081,
           -0.6891198054850324},
          {-0.28798689260625676, 0.2931761746720332, -1.4348915836812082, 0.07308615063441729,
           -0.717261227860429}},
         292},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const golden_case *g = &cases[ci];
        const int ids[5] = {0, 1, 2, 100, g->last_id};
        tw_model_config c;
        char path[1024];
        if (strchr(g->model, '/'))
            snprintf(path, sizeof path, "%s/%s", tw_test_source_dir(), g->model);
        else
            snprintf(path, sizeof path, "%s", g->model);
        load_model(path, &c);
        tw_ref_model *m = tw_ref_create(&c, 7, g->bf16);
        int *tok = malloc(sizeof(int) * g->n);
        tw_prompt_tokens(11, 1, g->n, c.vocab, tok);
        double *l = malloc(sizeof(double) * g->n * c.vocab);
        tw_ref_forward(m, tok, g->n, l);
        for (int p = 0; p < g->npos; p++)
            for (int k = 0; k < 5; k++) {
                double got = l[g->pos[p] * c.vocab + ids[k]], want = g->want[p][k];
                cr_assert(fabs(got - want) <= 1e-5 * fmax(1.0, fabs(want)),
                          "%s pos %d vocab %d: reference %.17g, transformers %.17g", g->model,
                          g->pos[p], ids[k], got, want);
            }
        free(tok), free(l);
        tw_ref_destroy(m);
        tw_model_free(&c);
    }
}

/* A sliding window of W over L layers: position t depends on tokens t - L (W - 1) .. t only,
 * and RoPE scores depend only on position differences, so the logits at t equal those of the
 * last position of a forward pass over just those tokens. With one key more of reach the
 * window would leak in earlier tokens, with one less the suffix pass would miss one. */
Test(ref_model, sliding_window_sees_only_its_reach) {
    tw_model_config c;
    load_model("tiny-mistral", &c);
    cr_assert_eq(c.sliding_window, 7);
    tw_ref_model *m = tw_ref_create(&c, 3, 0);
    enum { N = 31 };
    int tok[N];
    tw_prompt_tokens(5, 1, N, c.vocab, tok);
    size_t V = (size_t)c.vocab;
    double *full = malloc(sizeof(double) * N * V), *part = malloc(sizeof(double) * N * V);
    tw_ref_forward(m, tok, N, full);
    int reach = c.n_layers * (c.sliding_window - 1) + 1; /* 13 tokens */
    for (int t = reach; t < N; t += 4) {
        tw_ref_forward(m, tok + t - reach + 1, reach, part);
        double d = 0, s = 0;
        for (size_t v = 0; v < V; v++) {
            double e = full[(size_t)t * V + v] - part[(size_t)(reach - 1) * V + v];
            d += e * e, s += full[(size_t)t * V + v] * full[(size_t)t * V + v];
        }
        cr_assert(sqrt(d / s) < 1e-10, "position %d: full %.3e from the %d-token suffix", t,
                  sqrt(d / s), reach);
        /* one token less of reach changes the answer */
        tw_ref_forward(m, tok + t - reach + 2, reach - 1, part);
        d = 0;
        for (size_t v = 0; v < V; v++) {
            double e = full[(size_t)t * V + v] - part[(size_t)(reach - 2) * V + v];
            d += e * e;
        }
        cr_assert(sqrt(d / s) > 1e-6, "position %d: a shorter suffix gives the same logits", t);
    }
    free(full), free(part);
    tw_ref_destroy(m);
    tw_model_free(&c);
}

/* Qwen2's biases are in the reference: they change every logit, and the 1-token forward with
 * biases still reduces to the value vector (the v bias included) */
Test(ref_model, qwen2_biases_change_the_forward_pass) {
    tw_model_config c;
    load_model("tiny-qwen2", &c);
    cr_assert(c.qkv_bias);
    tw_ref_model *with = tw_ref_create(&c, 3, 0);
    c.qkv_bias = 0;
    tw_ref_model *without = tw_ref_create(&c, 3, 0);
    cr_assert_not_null(tw_ref_weight(with, TW_W_Q_BIAS, 1));
    cr_assert_null(tw_ref_weight(without, TW_W_Q_BIAS, 1));
    enum { N = 9 };
    int tok[N];
    tw_prompt_tokens(6, 1, N, c.vocab, tok);
    size_t V = (size_t)c.vocab;
    double *a = malloc(sizeof(double) * N * V), *b = malloc(sizeof(double) * N * V);
    tw_ref_forward(with, tok, N, a);
    tw_ref_forward(without, tok, N, b);
    double d = 0, s = 0;
    for (size_t i = 0; i < N * V; i++) d += (a[i] - b[i]) * (a[i] - b[i]), s += a[i] * a[i];
    cr_assert(sqrt(d / s) > 1e-2, "biases moved the logits by only %.3e", sqrt(d / s));
    free(a), free(b);
    tw_ref_destroy(with);
    tw_ref_destroy(without);
    tw_model_free(&c);
}
