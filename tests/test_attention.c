/* CPU attention kernels (attn_prefill_cpu, attn_decode_cpu, kv_store_cpu) against a naive
 * float64 softmax(q k^T * scale) v written here (causal, and with sliding windows), on random
 * caches of awkward shapes, fp32 and bf16 KV, every SIMD path the CPU has (portable, AVX2,
 * AVX-512). The cache is random also between
 * each query's causal limit and the end of the call's tokens, so attending to a masked key changes
 * the result. Outputs are NaN-poisoned and surrounded by guards. Positions past what a call may
 * read (start_pos + seq, or lens) hold NaN. Tolerance: relative norm error 1e-5 for fp32 and for
 * bf16 caches alike (the reference uses the bf16-rounded K and V, so the kernel's conversion is
 * exact and only fp32 rounding is left). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/tw_cpu.h"
#include "tw_test_util.h"

#define TOL       1e-5
#define GUARD     16
#define GUARD_VAL 1234.5f

/* ---- buffers with guard regions on both sides -------------------------------------------- */
static float *guarded_alloc(size_t n) {
    float *p = malloc(sizeof(float) * (n + 2 * GUARD));
    cr_assert(p);
    for (size_t i = 0; i < n + 2 * GUARD; i++) p[i] = GUARD_VAL;
    return p + GUARD;
}

static void guarded_check_free(float *p, size_t n, const char *what) {
    for (size_t i = 0; i < GUARD; i++) {
        cr_assert_eq(p[-(long)GUARD + (long)i], GUARD_VAL, "%s: guard before the buffer written",
                     what);
        cr_assert_eq(p[n + i], GUARD_VAL, "%s: guard after the buffer written", what);
    }
    free(p - GUARD);
}

/* ---- a random KV cache ----------------------------------------------------------------------- */
typedef struct {
    int batch, n_kv_heads, max_seq, head_dim;
    int bf16;
    void *k, *v;     /* what the kernel reads */
    double *kd, *vd; /* the same values (bf16-rounded when bf16) for the reference */
} test_cache;

/* valid[b]: positions >= valid[b] of sequence b were never written: they hold NaN, so a kernel
 * that touches them (even with weight 0) produces NaN. NULL: everything valid. */
static void cache_make(test_cache *c, tw_test_rng *r, int batch, int g, int max_seq, int d,
                       int bf16, const int *valid) {
    c->batch = batch;
    c->n_kv_heads = g;
    c->max_seq = max_seq;
    c->head_dim = d;
    c->bf16 = bf16;
    size_t n = (size_t)batch * g * max_seq * d;
    float *kf = malloc(sizeof(float) * n), *vf = malloc(sizeof(float) * n);
    c->kd = malloc(sizeof(double) * n);
    c->vd = malloc(sizeof(double) * n);
    cr_assert(kf && vf && c->kd && c->vd);
    tw_test_fill(r, kf, n, 1.0f);
    tw_test_fill(r, vf, n, 1.0f);
    for (int b = 0; valid && b < batch; b++)
        for (int h = 0; h < g; h++)
            for (int p = valid[b]; p < max_seq; p++)
                for (int x = 0; x < d; x++) {
                    size_t i = (((size_t)b * g + h) * max_seq + p) * d + x;
                    kf[i] = NAN;
                    vf[i] = NAN;
                }
    if (bf16) {
        uint16_t *kb = malloc(2 * n), *vb = malloc(2 * n);
        cr_assert(kb && vb);
        for (size_t i = 0; i < n; i++) {
            kb[i] = tw_test_to_bf16(kf[i]);
            vb[i] = tw_test_to_bf16(vf[i]);
            c->kd[i] = tw_test_from_bf16(kb[i]);
            c->vd[i] = tw_test_from_bf16(vb[i]);
        }
        free(kf);
        free(vf);
        c->k = kb;
        c->v = vb;
    } else {
        for (size_t i = 0; i < n; i++) {
            c->kd[i] = kf[i];
            c->vd[i] = vf[i];
        }
        c->k = kf;
        c->v = vf;
    }
}

static void cache_free(test_cache *c) {
    free(c->k);
    free(c->v);
    free(c->kd);
    free(c->vd);
}

/* out[d] = softmax_j(scale * q . k_j) v_j over cache positions lo..npos-1 of (b, kvh) */
static void ref_attend_from(const test_cache *c, int b, int kvh, const float *q, double scale,
                            int lo, int npos, double *out) {
    int d = c->head_dim;
    const double *kb = c->kd + ((size_t)b * c->n_kv_heads + kvh) * c->max_seq * d;
    const double *vb = c->vd + ((size_t)b * c->n_kv_heads + kvh) * c->max_seq * d;
    double *s = malloc(sizeof(double) * npos);
    cr_assert(s);
    double mx = -INFINITY;
    for (int j = lo; j < npos; j++) {
        double acc = 0;
        for (int x = 0; x < d; x++) acc += (double)q[x] * kb[(size_t)j * d + x];
        s[j] = acc * scale;
        if (s[j] > mx) mx = s[j];
    }
    double den = 0;
    for (int x = 0; x < d; x++) out[x] = 0;
    for (int j = lo; j < npos; j++) {
        double p = exp(s[j] - mx);
        den += p;
        for (int x = 0; x < d; x++) out[x] += p * vb[(size_t)j * d + x];
    }
    for (int x = 0; x < d; x++) out[x] /= den;
    free(s);
}

/* the first key a query at position pos attends with a sliding window w (written here, not
 * taken from the kernels: the W most recent positions, itself included) */
static int ref_window_lo(int pos, int w) {
    int lo = w > 0 ? pos - w + 1 : 0;
    return lo > 0 ? lo : 0;
}

static int simd_levels(tw_simd *lv) {
    int n = 0;
    lv[n++] = TW_SIMD_PORTABLE;
    tw_simd best = tw_cpu_simd_detect();
    if (best >= TW_SIMD_AVX2 && best < TW_SIMD_NEON) lv[n++] = TW_SIMD_AVX2;
    if (best >= TW_SIMD_AVX512 && best < TW_SIMD_NEON) lv[n++] = TW_SIMD_AVX512;
    return n;
}

/* ---- prefill --------------------------------------------------------------------------------- */
static void run_prefill_w(int batch, int seq, int h, int g, int d, int max_seq, const int *start,
                          int bf16, float qscale, int threads, uint64_t seed, int window) {
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    test_cache c;
    int *valid = malloc(sizeof(int) * batch);
    cr_assert(valid);
    for (int b = 0; b < batch; b++) valid[b] = start[b] + seq;
    cache_make(&c, &r, batch, g, max_seq, d, bf16, valid);
    free(valid);
    size_t nq = (size_t)batch * seq * h * d;
    float *q = malloc(sizeof(float) * nq);
    double *ref = malloc(sizeof(double) * nq);
    cr_assert(q && ref);
    tw_test_fill(&r, q, nq, qscale);
    double scale = 1.0 / sqrt((double)d);
    for (int b = 0; b < batch; b++)
        for (int s = 0; s < seq; s++)
            for (int hh = 0; hh < h; hh++) {
                size_t row = (((size_t)b * seq + s) * h + hh) * d;
                ref_attend_from(&c, b, hh / (h / g), q + row, (float)scale,
                                ref_window_lo(start[b] + s, window), start[b] + s + 1, ref + row);
            }
    tw_simd lv[3];
    int nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(tw_cpu_simd_force(lv[l]), TW_OK);
        float *out = guarded_alloc(nq);
        tw_test_poison(out, nq);
        tw_attn_prefill_args a = {.batch = batch,
                                  .seq = seq,
                                  .n_heads = h,
                                  .n_kv_heads = g,
                                  .head_dim = d,
                                  .max_seq = max_seq,
                                  .start_pos = start,
                                  .q = q,
                                  .k_cache = c.k,
                                  .v_cache = c.v,
                                  .kv_dtype = bf16 ? TW_BF16 : TW_F32,
                                  .out = out,
                                  .scale = (float)scale,
                                  .window = window};
        tw_status st = attn_prefill_cpu(&a, threads);
        cr_assert_eq(st, TW_OK, "%s", tw_last_error());
        double err = tw_test_rel_err(out, ref, nq);
        cr_expect(err < TOL,
                  "prefill %s B=%d S=%d H=%d G=%d D=%d %s threads=%d window=%d: rel err %.3g "
                  "(tol %.1g)",
                  tw_simd_name(lv[l]), batch, seq, h, g, d, bf16 ? "bf16" : "fp32", threads, window,
                  err, TOL);
        guarded_check_free(out, nq, "prefill out");
    }
    free(q);
    free(ref);
    cache_free(&c);
}

static void run_prefill(int batch, int seq, int h, int g, int d, int max_seq, const int *start,
                        int bf16, float qscale, int threads, uint64_t seed) {
    run_prefill_w(batch, seq, h, g, d, max_seq, start, bf16, qscale, threads, seed, 0);
}

Test(attention, prefill_single_token_single_key) {
    int start[1] = {0};
    run_prefill(1, 1, 6, 2, 64, 8, start, 0, 1.0f, 0, 11);
    run_prefill(1, 1, 6, 2, 64, 8, start, 1, 1.0f, 0, 12);
}

Test(attention, prefill_seq17_mha_d128_offset) {
    int start[1] = {5};
    run_prefill(1, 17, 6, 6, 128, 40, start, 0, 2.0f, 2, 21);
    run_prefill(1, 17, 6, 6, 128, 40, start, 1, 2.0f, 2, 22);
}

Test(attention, prefill_batch3_mqa_d80_different_starts) {
    int start[3] = {0, 40, 111};
    run_prefill(3, 17, 6, 1, 80, 128, start, 0, 2.0f, 0, 31);
    run_prefill(3, 17, 6, 1, 80, 128, start, 1, 2.0f, 3, 32);
}

Test(attention, prefill_seq300_gqa_d64_full_cache) {
    int start[1] = {0};
    run_prefill(1, 300, 6, 2, 64, 300, start, 0, 2.0f, 0, 41);
    run_prefill(1, 300, 6, 2, 64, 300, start, 1, 2.0f, 0, 42);
}

Test(attention, prefill_batch2_d128_odd_dims) {
    int start[2] = {70, 3};
    run_prefill(2, 67, 6, 2, 128, 140, start, 1, 1.0f, 1, 51);
    run_prefill(2, 37, 4, 2, 18, 140, start, 0, 1.0f, 0, 52); /* D not a multiple of 8 */
}

Test(attention, prefill_peaky_scores) {
    /* scores of size ~100: the online softmax must rescale without overflow */
    int start[2] = {0, 9};
    run_prefill(2, 129, 6, 2, 64, 140, start, 0, 40.0f, 0, 61);
}

/* ---- decode ---------------------------------------------------------------------------------- */
static void run_decode_w(int batch, int h, int g, int d, int max_seq, const int *lens, int bf16,
                         float qscale, int threads, uint64_t seed, int window) {
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    test_cache c;
    cache_make(&c, &r, batch, g, max_seq, d, bf16, lens);
    size_t nq = (size_t)batch * h * d;
    float *q = malloc(sizeof(float) * nq);
    double *ref = malloc(sizeof(double) * nq);
    cr_assert(q && ref);
    tw_test_fill(&r, q, nq, qscale);
    double scale = 1.0 / sqrt((double)d);
    for (int b = 0; b < batch; b++)
        for (int hh = 0; hh < h; hh++) {
            size_t row = ((size_t)b * h + hh) * d;
            ref_attend_from(&c, b, hh / (h / g), q + row, (float)scale,
                            ref_window_lo(lens[b] - 1, window), lens[b], ref + row);
        }
    tw_simd lv[3];
    int nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(tw_cpu_simd_force(lv[l]), TW_OK);
        float *out = guarded_alloc(nq);
        tw_test_poison(out, nq);
        tw_attn_decode_args a = {.batch = batch,
                                 .n_heads = h,
                                 .n_kv_heads = g,
                                 .head_dim = d,
                                 .max_seq = max_seq,
                                 .lens = lens,
                                 .q = q,
                                 .k_cache = c.k,
                                 .v_cache = c.v,
                                 .kv_dtype = bf16 ? TW_BF16 : TW_F32,
                                 .out = out,
                                 .scale = (float)scale,
                                 .window = window};
        tw_status st = attn_decode_cpu(&a, threads);
        cr_assert_eq(st, TW_OK, "%s", tw_last_error());
        double err = tw_test_rel_err(out, ref, nq);
        cr_expect(err < TOL,
                  "decode %s B=%d H=%d G=%d D=%d %s threads=%d window=%d: rel err %.3g (tol %.1g)",
                  tw_simd_name(lv[l]), batch, h, g, d, bf16 ? "bf16" : "fp32", threads, window, err,
                  TOL);
        guarded_check_free(out, nq, "decode out");
    }
    free(q);
    free(ref);
    cache_free(&c);
}

static void run_decode(int batch, int h, int g, int d, int max_seq, const int *lens, int bf16,
                       float qscale, int threads, uint64_t seed) {
    run_decode_w(batch, h, g, d, max_seq, lens, bf16, qscale, threads, seed, 0);
}

Test(attention, decode_batch3_gqa_mixed_lengths) {
    int lens[3] = {1, 300, 1000};
    run_decode(3, 6, 2, 64, 1024, lens, 0, 2.0f, 0, 71);
    run_decode(3, 6, 2, 64, 1024, lens, 1, 2.0f, 0, 72);
}

Test(attention, decode_many_splits_with_empty_ones) {
    /* B*G = 2 and 4 threads ask for 8 splits per sequence: the length-1 sequence leaves seven of
     * them empty, the long one gets uneven ones */
    int lens[2] = {1, 2100};
    run_decode(2, 6, 1, 128, 2100, lens, 0, 2.0f, 4, 81);
    run_decode(2, 6, 1, 128, 2100, lens, 1, 2.0f, 4, 82);
}

Test(attention, decode_mha_d80_and_odd_d) {
    int lens[3] = {17, 513, 257};
    run_decode(3, 6, 6, 80, 600, lens, 0, 2.0f, 3, 91);
    run_decode(3, 6, 6, 80, 600, lens, 1, 2.0f, 1, 92);
    run_decode(3, 4, 2, 18, 600, lens, 0, 1.0f, 0, 93);
}

Test(attention, decode_peaky_scores_long) {
    int lens[1] = {3000};
    run_decode(1, 6, 2, 128, 3000, lens, 1, 40.0f, 0, 101);
}

/* The same question asked two ways must agree to fp32 rounding: a decode step for the last token
 * of each sequence, and a prefill of its last S tokens (with a sliding window W when W > 0, in
 * which case dropping the window must change the answer). */
static void decode_vs_prefill(uint64_t seed, int bf16, int start0, int start1, int maxs, int w) {
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    enum { B = 2, S = 37, H = 6, G = 2, D = 64 };
    test_cache c;
    cache_make(&c, &r, B, G, maxs, D, bf16, NULL);
    int start[B] = {start0, start1};
    static float q[B * S * H * D], outp[B * S * H * D], qd[B * H * D], outd[B * H * D];
    tw_test_fill(&r, q, sizeof q / sizeof q[0], 1.5f);
    for (int b = 0; b < B; b++)
        memcpy(qd + (size_t)b * H * D, q + ((size_t)b * S + S - 1) * H * D, sizeof(float) * H * D);
    int lens[B] = {start[0] + S, start[1] + S};
    tw_dtype dt = bf16 ? TW_BF16 : TW_F32;
    tw_attn_prefill_args pa = {B, S, H, G, D, maxs, start, q, c.k, c.v, dt, outp, 0.125f, w};
    tw_attn_decode_args da = {B, H, G, D, maxs, lens, qd, c.k, c.v, dt, outd, 0.125f, w};
    tw_test_poison(outp, sizeof outp / sizeof outp[0]);
    tw_test_poison(outd, sizeof outd / sizeof outd[0]);
    cr_assert_eq(attn_prefill_cpu(&pa, 0), TW_OK, "%s", tw_last_error());
    cr_assert_eq(attn_decode_cpu(&da, 0), TW_OK, "%s", tw_last_error());
    static double last[B * H * D];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < H * D; i++)
            last[(size_t)b * H * D + i] = outp[((size_t)b * S + S - 1) * H * D + i];
    double err = tw_test_rel_err(outd, last, B * H * D);
    cr_expect(err < TOL, "decode vs prefill (window %d): rel err %.3g", w, err);
    if (w > 0) {
        da.window = 0;
        cr_assert_eq(attn_decode_cpu(&da, 0), TW_OK, "%s", tw_last_error());
        cr_assert(tw_test_rel_err(outd, last, B * H * D) > 1e-3, "the window changed nothing");
    }
    cache_free(&c);
}

Test(attention, decode_matches_prefill_last_token) {
    decode_vs_prefill(111, 1, 3, 40, 80, 0);
}

/* ---- sliding window ------------------------------------------------------------------------- */
/* Windows shorter than the context, longer than it, equal to it, of one key, not multiples of
 * the 64-key blocks, ending mid-block; prefill chunks that start inside and before the window,
 * and tasks whose tokens straddle the window edge. The cache before each window holds finite
 * random keys and values, so attending to one of them changes the result. */
Test(attention, prefill_sliding_window) {
    int s1[1] = {0}, s2[2] = {0, 90}, s3[3] = {3, 40, 200};
    run_prefill_w(1, 20, 6, 2, 64, 20, s1, 0, 2.0f, 0, 301, 7); /* window inside the prompt */
    run_prefill_w(1, 20, 6, 2, 64, 20, s1, 1, 2.0f, 2, 302, 7);
    run_prefill_w(2, 130, 6, 2, 64, 230, s2, 0, 2.0f, 3, 303, 70);  /* spans 64-key blocks */
    run_prefill_w(2, 130, 6, 2, 64, 230, s2, 1, 2.0f, 0, 304, 129); /* ends mid-block */
    run_prefill_w(3, 17, 4, 1, 80, 240, s3, 0, 1.0f, 0, 305, 1);    /* only itself */
    run_prefill_w(3, 17, 4, 4, 18, 240, s3, 1, 1.0f, 1, 306, 300);  /* longer than the context */
    run_prefill_w(1, 20, 6, 2, 64, 20, s1, 0, 2.0f, 0, 307, 20);    /* exactly the context */
}

Test(attention, decode_sliding_window) {
    int l1[3] = {1, 300, 1000}, l2[2] = {7, 8}, l3[2] = {2100, 513};
    run_decode_w(3, 6, 2, 64, 1024, l1, 0, 2.0f, 0, 311, 100);
    run_decode_w(3, 6, 2, 64, 1024, l1, 1, 2.0f, 3, 312, 257); /* one split past a split edge */
    run_decode_w(2, 4, 2, 32, 16, l2, 0, 1.0f, 0, 313, 7);     /* at and one past the window */
    run_decode_w(2, 6, 1, 128, 2100, l3, 1, 2.0f, 4, 314, 600);
    run_decode_w(2, 4, 4, 18, 16, l2, 0, 1.0f, 0, 315, 1);
}

Test(attention, sliding_window_decode_matches_prefill_last_token) {
    decode_vs_prefill(321, 0, 3, 240, 300, 19);
    decode_vs_prefill(322, 1, 0, 100, 300, 64);
}

/* ---- kv store -------------------------------------------------------------------------------- */
static void run_kv_store(int bf16, int threads) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 200 + bf16);
    enum { B = 3, S = 17, G = 2, D = 80, MAXS = 64, LD = G * D + 7 };
    int start[B] = {0, 47, 20};
    size_t nsrc = (size_t)B * S * LD, ncache = (size_t)B * G * MAXS * D;
    float *k = malloc(sizeof(float) * nsrc), *v = malloc(sizeof(float) * nsrc);
    cr_assert(k && v);
    tw_test_fill(&r, k, nsrc, 3.0f);
    tw_test_fill(&r, v, nsrc, 3.0f);
    size_t es = bf16 ? 2 : 4;
    unsigned char *kc = malloc(es * ncache), *vc = malloc(es * ncache);
    cr_assert(kc && vc);
    memset(kc, 0x5a, es * ncache); /* sentinel bytes: positions not stored must keep them */
    memset(vc, 0x5a, es * ncache);
    tw_kv_store_args a = {.batch = B,
                          .seq = S,
                          .n_kv_heads = G,
                          .head_dim = D,
                          .max_seq = MAXS,
                          .start_pos = start,
                          .k = k,
                          .v = v,
                          .ldkv = LD,
                          .k_cache = kc,
                          .v_cache = vc,
                          .kv_dtype = bf16 ? TW_BF16 : TW_F32};
    cr_assert_eq(kv_store_cpu(&a, threads), TW_OK, "%s", tw_last_error());
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++)
            for (int p = 0; p < MAXS; p++) {
                int s = p - start[b];
                for (int x = 0; x < D; x++) {
                    size_t ci = (((size_t)b * G + g) * MAXS + p) * D + x;
                    const unsigned char *kb = kc + ci * es, *vb = vc + ci * es;
                    if (s < 0 || s >= S) {
                        for (size_t e = 0; e < es; e++)
                            cr_assert(kb[e] == 0x5a && vb[e] == 0x5a,
                                      "b=%d g=%d pos %d written outside [start, start+seq)", b, g,
                                      p);
                        continue;
                    }
                    size_t si = ((size_t)b * S + s) * LD + (size_t)g * D + x;
                    if (bf16) {
                        uint16_t kh, vh;
                        memcpy(&kh, kb, 2);
                        memcpy(&vh, vb, 2);
                        cr_assert_eq(kh, tw_test_to_bf16(k[si]));
                        cr_assert_eq(vh, tw_test_to_bf16(v[si]));
                    } else {
                        float kf, vf;
                        memcpy(&kf, kb, 4);
                        memcpy(&vf, vb, 4);
                        cr_assert_eq(kf, k[si]);
                        cr_assert_eq(vf, v[si]);
                    }
                }
            }
    free(k);
    free(v);
    free(kc);
    free(vc);
}

Test(attention, kv_store_fp32_and_bf16_strided) {
    run_kv_store(0, 0);
    run_kv_store(1, 2);
}

/* ---- bad arguments ------------------------------------------------------------------------- */
static void expect_invalid(tw_status st, const char *needle) {
    cr_assert_eq(st, TW_ERR_INVALID, "expected TW_ERR_INVALID, got %s", tw_status_name(st));
    cr_assert(strstr(tw_last_error(), needle), "message '%s' should mention '%s'", tw_last_error(),
              needle);
}

Test(attention, bad_arguments) {
    static float q[6 * 64], out[6 * 64], kc[2 * 16 * 64], vc[2 * 16 * 64];
    int start[1] = {0}, lens[1] = {5};
    tw_attn_prefill_args p = {1, 1, 6, 2, 64, 16, start, q, kc, vc, TW_F32, out, 0.125f, 0};
    tw_attn_prefill_args x = p;
    x.n_kv_heads = 4;
    expect_invalid(attn_prefill_cpu(&x, 0), "n_kv_heads 4");
    x = p;
    x.start_pos = (int[]){16};
    expect_invalid(attn_prefill_cpu(&x, 0), "start_pos[0] = 16");
    x = p;
    x.seq = 17;
    expect_invalid(attn_prefill_cpu(&x, 0), "seq 17");
    x = p;
    x.q = NULL;
    expect_invalid(attn_prefill_cpu(&x, 0), "NULL q");
    x = p;
    x.kv_dtype = TW_I32;
    expect_invalid(attn_prefill_cpu(&x, 0), "kv_dtype");
    x = p;
    x.head_dim = 0;
    expect_invalid(attn_prefill_cpu(&x, 0), "head_dim must be >= 1, got 0");
    x = p;
    x.window = -3;
    expect_invalid(attn_prefill_cpu(&x, 0), "window must be >= 0");
    expect_invalid(attn_prefill_cpu(&p, -1), "threads");
    expect_invalid(attn_prefill_cpu(NULL, 0), "NULL");

    tw_attn_decode_args d = {1, 6, 2, 64, 16, lens, q, kc, vc, TW_F32, out, 0.125f, 0};
    tw_attn_decode_args y = d;
    y.lens = (int[]){0};
    expect_invalid(attn_decode_cpu(&y, 0), "lens[0] = 0");
    y.lens = (int[]){17};
    expect_invalid(attn_decode_cpu(&y, 0), "lens[0] = 17");
    y = d;
    y.n_kv_heads = 5;
    expect_invalid(attn_decode_cpu(&y, 0), "n_kv_heads 5");
    y = d;
    y.v_cache = NULL;
    expect_invalid(attn_decode_cpu(&y, 0), "NULL v_cache");
    y = d;
    y.scale = NAN;
    expect_invalid(attn_decode_cpu(&y, 0), "scale");
    y = d;
    y.window = -1;
    expect_invalid(attn_decode_cpu(&y, 0), "window must be >= 0");

    tw_kv_store_args s = {1, 1, 2, 64, 16, start, q, q, 0, kc, vc, TW_F32};
    tw_kv_store_args z = s;
    z.ldkv = 100;
    expect_invalid(kv_store_cpu(&z, 0), "ldkv 100");
    z = s;
    z.start_pos = (int[]){-1};
    expect_invalid(kv_store_cpu(&z, 0), "start_pos[0] = -1");
    z = s;
    z.k_cache = NULL;
    expect_invalid(kv_store_cpu(&z, 0), "NULL k_cache");
    /* the good calls succeed */
    cr_assert_eq(attn_prefill_cpu(&p, 0), TW_OK, "%s", tw_last_error());
    cr_assert_eq(attn_decode_cpu(&d, 0), TW_OK, "%s", tw_last_error());
    cr_assert_eq(kv_store_cpu(&s, 0), TW_OK, "%s", tw_last_error());
}

/* Decode results are bitwise independent of the thread count and of the other sequences in the
 * batch (tokwatt's determinism guarantee: different --threads give identical tokens). A long
 * context makes the kernel split the keys. */
Test(attention, decode_bitwise_same_for_any_threads_and_batch) {
    enum { H = 8, G = 2, D = 64, MAXS = 1500 };
    tw_test_rng r;
    tw_test_rng_seed(&r, 77);
    size_t cache_n = (size_t)3 * G * MAXS * D;
    float *k = malloc(sizeof(float) * cache_n), *v = malloc(sizeof(float) * cache_n);
    float *q = malloc(sizeof(float) * 3 * H * D);
    tw_test_fill(&r, k, cache_n, 1.0f);
    tw_test_fill(&r, v, cache_n, 1.0f);
    tw_test_fill(&r, q, (size_t)3 * H * D, 1.0f);
    float out[4][3 * H * D];
    int lens3[3] = {1500, 1337, 40};
    int threads[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) {
        tw_test_poison(out[i], 3 * H * D);
        tw_attn_decode_args a = {.batch = 3,
                                 .n_heads = H,
                                 .n_kv_heads = G,
                                 .head_dim = D,
                                 .max_seq = MAXS,
                                 .lens = lens3,
                                 .q = q,
                                 .k_cache = k,
                                 .v_cache = v,
                                 .kv_dtype = TW_F32,
                                 .out = out[i],
                                 .scale = 0.125f};
        cr_assert_eq(attn_decode_cpu(&a, threads[i]), TW_OK, "%s", tw_last_error());
        cr_assert(tw_test_all_finite(out[i], 3 * H * D));
        if (i > 0)
            cr_assert_arr_eq(out[i], out[0], sizeof(float) * 3 * H * D,
                             "decode output differs between 1 and %d threads", threads[i]);
    }
    /* sequence 1 alone (its cache block moved to the front) gives the same bits as in the batch */
    size_t blk = (size_t)G * MAXS * D;
    tw_attn_decode_args one = {.batch = 1,
                               .n_heads = H,
                               .n_kv_heads = G,
                               .head_dim = D,
                               .max_seq = MAXS,
                               .lens = &lens3[1],
                               .q = q + H * D,
                               .k_cache = k + blk,
                               .v_cache = v + blk,
                               .kv_dtype = TW_F32,
                               .out = out[3],
                               .scale = 0.125f};
    tw_test_poison(out[3], 3 * H * D);
    cr_assert_eq(attn_decode_cpu(&one, 2), TW_OK, "%s", tw_last_error());
    cr_assert_arr_eq(out[3], out[0] + H * D, sizeof(float) * H * D,
                     "a sequence's decode output depends on its batch neighbours");
    free(k), free(v), free(q);
}
