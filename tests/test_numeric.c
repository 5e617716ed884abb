/* The shared numeric helpers (tw_numeric.h) against long-hand float64 computations. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "tw_numeric.h"
#include "tw_test_util.h"

Test(numeric, bf16_round_to_nearest_even) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 1);
    for (int i = 0; i < 200000; i++) {
        float f = (float)(tw_test_uniform(&r) * pow(10.0, (int)(tw_test_uniform(&r) * 30)));
        cr_assert_eq(tw_bf16_from_f32(f), tw_test_to_bf16(f), "value %a", (double)f);
    }
    /* exact ties: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1.0) */
    cr_assert_eq(tw_bf16_from_f32(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 -> 1+2^-6 */
    cr_assert_eq(tw_bf16_from_f32(1.0f + 3 * 0x1p-8f), 0x3f82);
    cr_assert(isnan(tw_f32_from_bf16(tw_bf16_from_f32(NAN))));
    cr_assert(isinf(tw_f32_from_bf16(tw_bf16_from_f32(INFINITY))));
    cr_assert_eq(tw_f32_from_bf16(0x4049), 3.140625f);
}

Test(numeric, online_softmax_matches_direct) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 2);
    for (int trial = 0; trial < 50; trial++) {
        int n = 1 + trial * 7;
        double s[400], v[400];
        for (int i = 0; i < n; i++) {
            s[i] = tw_test_uniform(&r) * 20.0;
            v[i] = tw_test_uniform(&r);
        }
        double mx = -INFINITY, den = 0, num = 0;
        for (int i = 0; i < n; i++) mx = fmax(mx, s[i]);
        for (int i = 0; i < n; i++) den += exp(s[i] - mx), num += exp(s[i] - mx) * v[i];
        /* scores one at a time */
        tw_softmax_state st = tw_softmax_init();
        float acc = 0;
        for (int i = 0; i < n; i++) {
            float alpha;
            float p = tw_softmax_push(&st, (float)s[i], &alpha);
            acc = acc * alpha + p * (float)v[i];
        }
        cr_assert_float_eq(acc / st.l, num / den, 1e-5, "n=%d", n);
        cr_assert_float_eq(tw_softmax_lse(st), mx + log(den), 1e-4);
        /* blocks of 5 */
        tw_softmax_state sb = tw_softmax_init();
        float accb = 0;
        for (int i0 = 0; i0 < n; i0 += 5) {
            float bm = -INFINITY;
            for (int i = i0; i < n && i < i0 + 5; i++) bm = fmaxf(bm, (float)s[i]);
            accb *= tw_softmax_rescale(&sb, bm);
            for (int i = i0; i < n && i < i0 + 5; i++) {
                float p = expf((float)s[i] - sb.m);
                sb.l += p;
                accb += p * (float)v[i];
            }
        }
        cr_assert_float_eq(accb / sb.l, num / den, 1e-5, "n=%d", n);
    }
}

Test(numeric, splitkv_merge_matches_full_softmax) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 3);
    enum { N = 301, D = 5, SPLITS = 7 };
    double s[N], v[N][D];
    for (int i = 0; i < N; i++) {
        s[i] = tw_test_uniform(&r) * 10;
        for (int j = 0; j < D; j++) v[i][j] = tw_test_uniform(&r);
    }
    double mx = -INFINITY, den = 0, ref[D] = {0};
    for (int i = 0; i < N; i++) mx = fmax(mx, s[i]);
    for (int i = 0; i < N; i++) {
        den += exp(s[i] - mx);
        for (int j = 0; j < D; j++) ref[j] += exp(s[i] - mx) * v[i][j];
    }
    /* uneven splits, one of them empty */
    int bounds[SPLITS + 1] = {0, 13, 13, 100, 150, 151, 290, N};
    float lse[SPLITS], part[SPLITS][D];
    for (int p = 0; p < SPLITS; p++) {
        tw_softmax_state st = tw_softmax_init();
        double o[D] = {0};
        for (int i = bounds[p]; i < bounds[p + 1]; i++) {
            float alpha;
            float w = tw_softmax_push(&st, (float)s[i], &alpha);
            for (int j = 0; j < D; j++) o[j] = o[j] * alpha + w * v[i][j];
        }
        lse[p] = tw_softmax_lse(st);
        for (int j = 0; j < D; j++) part[p][j] = st.l > 0 ? (float)(o[j] / st.l) : 0.0f;
    }
    cr_assert(isinf(lse[1]) && lse[1] < 0, "an empty split has lse -inf");
    float out[D];
    float tot = tw_splitkv_merge(SPLITS, D, lse, &part[0][0], out);
    for (int j = 0; j < D; j++) cr_assert_float_eq(out[j], ref[j] / den, 1e-5);
    cr_assert_float_eq(tot, mx + log(den), 1e-4);
    cr_assert_float_eq(tw_lse_add(-INFINITY, 2.0f), 2.0f, 0);
    cr_assert_float_eq(tw_lse_add(1.0f, 1.0f), 1.0 + log(2.0), 1e-6);
}

/* llama3 rope scaling written out from its definition, in double. */
static double ref_llama3_inv_freq(int i, int d, double theta, double factor, double lo, double hi,
                                  double old_ctx) {
    double inv = 1.0 / pow(theta, 2.0 * i / d);
    double wl = 2 * M_PI / inv;
    if (wl < old_ctx / hi) return inv;
    if (wl > old_ctx / lo) return inv / factor;
    double smooth = (old_ctx / wl - lo) / (hi - lo);
    return (1 - smooth) * inv / factor + smooth * inv;
}

Test(numeric, rope_inv_freq_llama3) {
    tw_rope_params rp = {.theta = 500000.0f,
                         .type = TW_ROPE_LLAMA3,
                         .factor = 32.0f,
                         .low_freq_factor = 1.0f,
                         .high_freq_factor = 4.0f,
                         .original_max_pos = 8192.0f};
    int bands[3] = {0, 0, 0};
    for (int i = 0; i < 64; i++) {
        double ref = ref_llama3_inv_freq(i, 128, 500000.0, 32.0, 1.0, 4.0, 8192.0);
        double got = tw_rope_inv_freq(i, 128, &rp);
        cr_assert(fabs(got - ref) <= 1e-5 * ref, "pair %d: %g vs %g", i, got, ref);
        double plain = 1.0 / pow(500000.0, 2.0 * i / 128);
        if (fabs(ref - plain) < 1e-12 * plain)
            bands[0]++;
        else if (fabs(ref - plain / 32) < 1e-12 * plain)
            bands[2]++;
        else
            bands[1]++;
    }
    cr_assert(bands[0] > 0 && bands[1] > 0 && bands[2] > 0, "all three llama3 bands exercised");
    tw_rope_params plain = {.theta = 10000.0f, .type = TW_ROPE_DEFAULT};
    cr_assert_float_eq(tw_rope_inv_freq(3, 64, &plain), 1.0 / pow(10000.0, 6.0 / 64), 1e-7);
    float x0 = 1.0f, x1 = 0.0f;
    tw_rope_rotate(&x0, &x1, cosf(0.5f), sinf(0.5f));
    cr_assert_float_eq(x0, cos(0.5), 1e-7);
    cr_assert_float_eq(x1, sin(0.5), 1e-7);
}
