/* A standalone check of the CPU kernels (no Criterion, no jansson), for targets where only a
 * cross compiler and an emulator exist: scripts/check-aarch64 builds it for aarch64 and runs it
 * under qemu-aarch64 (-cpu max has BF16; an older -cpu has NEON only). It also builds natively
 * (ctest runs it on this host too, so the check itself is exercised everywhere).
 *
 * For every SIMD level the CPU supports (portable, NEON, NEON-BF16 on aarch64; the x86 chain
 * on x86): GEMM fp32 and bf16 weights against naive float64 on awkward shapes (tails of every
 * tile and k step, k blocks), accumulate on/off, padded leading dimensions, NaN-poisoned outputs
 * and guard regions; bitwise the same for 1, 2 and 3 threads; rows independent of batch
 * neighbours on the dot path; RMSNorm, SwiGLU and decode/prefill attention against float64.
 * Tolerances as in the Criterion suites: 1e-5 relative norm against the float64 product of the
 * values the kernel multiplies, 1e-2 against the fp32 activations where the level rounds them to
 * bf16. Prints one line per check and "kernels_check: PASS (n checks)"; exits 1 on a failure. */
#include "tw_cpu.h"
#include "tw_test_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64
#define SENT  12345.5f

static int n_checks, n_fail;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
    n_checks++;
    if (ok) return;
    n_fail++;
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "kernels_check: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- GEMM --------------------------------------------------------------------------------------
 */
typedef struct {
    int m, n, k;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1},     {1, 37, 67},     {1, 129, 257}, {2, 33, 17},     {3, 5, 1},      {4, 70, 9},
    {5, 17, 31},   {8, 40, 64},     {9, 20, 33},   {37, 129, 67},   {17, 300, 257}, {300, 17, 3},
    {61, 70, 600}, {1, 1030, 1027}, {6, 333, 531}, {130, 71, 1100}, {3, 100, 2081}, {70, 35, 70},
};

static void gemm_ref(int m, int n, int k, const float *x, int ldx, const float *w, int acc,
                     const float *y0, int ldy, double *ref) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = acc ? (double)y0[(size_t)i * ldy + j] : 0.0;
            for (int p = 0; p < k; p++)
                s += (double)x[(size_t)i * ldx + p] * (double)w[(size_t)j * k + p];
            ref[(size_t)i * n + j] = s;
        }
}

static void gemm_case(const char *lv, int bf16, shape s, int acc, int pad, int threads,
                      uint64_t seed) {
    const int m = s.m, n = s.n, k = s.k, ldx = k + 3 * pad, ldy = n + 5 * pad;
    tw_test_rng r;
    tw_test_rng_seed(&r, seed);
    float *x = xmalloc(sizeof(float) * (size_t)m * ldx), *wf = xmalloc(sizeof(float) * n * k);
    uint16_t *wb = xmalloc(sizeof(uint16_t) * (size_t)n * k);
    size_t ny = (size_t)m * ldy + GUARD;
    float *y = xmalloc(sizeof(float) * ny), *y0 = xmalloc(sizeof(float) * ny);
    double *ref = xmalloc(sizeof(double) * (size_t)m * n), *refu = xmalloc(sizeof(double) * m * n);
    float *got = xmalloc(sizeof(float) * (size_t)m * n), *xr = xmalloc(sizeof(float) * m * ldx);
    tw_test_fill(&r, x, (size_t)m * ldx, 1.0f);
    tw_test_fill(&r, wf, (size_t)n * k, 1.0f);
    if (bf16)
        for (size_t i = 0; i < (size_t)n * k; i++) {
            wb[i] = tw_test_to_bf16(wf[i]);
            wf[i] = tw_test_from_bf16(wb[i]);
        }
    if (acc)
        tw_test_fill(&r, y0, ny, 1.0f);
    else
        tw_test_poison(y0, ny);
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldy; j++) y0[(size_t)i * ldy + j] = SENT;
    for (size_t g = 0; g < GUARD; g++) y0[(size_t)m * ldy + g] = SENT;
    memcpy(y, y0, sizeof(float) * ny);
    tw_gemm_args a = {.m = m,
                      .n = n,
                      .k = k,
                      .x = x,
                      .w = bf16 ? (const void *)wb : wf,
                      .w_dtype = bf16 ? TW_BF16 : TW_F32,
                      .y = y,
                      .ldx = pad ? ldx : 0,
                      .ldy = pad ? ldy : 0,
                      .accumulate = acc};
    tw_gemm_info gi;
    gemm_cpu_describe(&a, &gi);
    tw_status st = gemm_cpu(&a, threads);
    check(st == TW_OK, "%s gemm: %s", lv, tw_last_error());
    gemm_ref(m, n, k, x, ldx, wf, acc, y0, ldy, refu);
    if (gi.x_bf16) {
        for (size_t i = 0; i < (size_t)m * ldx; i++)
            xr[i] = tw_test_from_bf16(tw_test_to_bf16(x[i]));
        gemm_ref(m, n, k, xr, ldx, wf, acc, y0, ldy, ref);
    } else {
        memcpy(ref, refu, sizeof(double) * (size_t)m * n);
    }
    int guards = 1;
    for (int i = 0; i < m; i++) {
        memcpy(got + (size_t)i * n, y + (size_t)i * ldy, sizeof(float) * n);
        for (int j = n; j < ldy; j++) guards &= y[(size_t)i * ldy + j] == SENT;
    }
    for (size_t g = 0; g < GUARD; g++) guards &= y[(size_t)m * ldy + g] == SENT;
    double e = tw_test_rel_err(got, ref, (size_t)m * n), eu = tw_test_rel_err(got, refu, m * n);
    check(guards, "%s %s %s m=%d n=%d k=%d: row padding or guard written", lv, gi.path,
          bf16 ? "bf16" : "fp32", m, n, k);
    check(e <= 1e-5, "%s %s %s m=%d n=%d k=%d acc=%d pad=%d threads=%d: rel err %g > 1e-5", lv,
          gi.path, bf16 ? "bf16" : "fp32", m, n, k, acc, pad, threads, e);
    check(eu <= 1e-2, "%s %s %s m=%d n=%d k=%d: rel err %g against fp32 activations > 1e-2", lv,
          gi.path, bf16 ? "bf16" : "fp32", m, n, k, eu);
    free(x), free(wf), free(wb), free(y), free(y0), free(ref), free(refu), free(got), free(xr);
}

static void gemm_determinism(const char *lv) {
    const int shapes[][3] = {{1, 1031, 777}, {5, 513, 1029}, {67, 300, 1100}};
    tw_test_rng r;
    tw_test_rng_seed(&r, 4242);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        float *x = xmalloc(sizeof(float) * (size_t)m * k), *w = xmalloc(sizeof(float) * n * k);
        uint16_t *wb = xmalloc(sizeof(uint16_t) * (size_t)n * k);
        float *y[3];
        tw_test_fill(&r, x, (size_t)m * k, 1.0f);
        tw_test_fill(&r, w, (size_t)n * k, 0.1f);
        for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = tw_test_to_bf16(w[i]);
        for (int dt = 0; dt < 2; dt++) {
            for (int t = 0; t < 3; t++) {
                y[t] = xmalloc(sizeof(float) * (size_t)m * n);
                tw_test_poison(y[t], (size_t)m * n);
                tw_gemm_args a = {.m = m,
                                  .n = n,
                                  .k = k,
                                  .x = x,
                                  .w = dt ? (const void *)wb : w,
                                  .w_dtype = dt ? TW_BF16 : TW_F32,
                                  .y = y[t]};
                check(gemm_cpu(&a, t + 1) == TW_OK, "%s: %s", lv, tw_last_error());
                if (t)
                    check(!memcmp(y[t], y[0], sizeof(float) * (size_t)m * n),
                          "%s %dx%dx%d %s: 1 and %d threads differ", lv, m, n, k,
                          dt ? "bf16" : "fp32", t + 1);
            }
            for (int t = 0; t < 3; t++) free(y[t]);
        }
        free(x), free(w), free(wb);
    }
}

static void gemm_rows_independent(const char *lv) {
    const int ms[] = {2, 3, 5, 8, 13, 16, 17, 64}, n = 77, k = 1100, mmax = 64;
    tw_test_rng r;
    tw_test_rng_seed(&r, 777);
    float *x = xmalloc(sizeof(float) * (size_t)mmax * k), *w = xmalloc(sizeof(float) * n * k);
    uint16_t *wb = xmalloc(sizeof(uint16_t) * (size_t)n * k);
    float *solo = xmalloc(sizeof(float) * mmax * n), *y = xmalloc(sizeof(float) * mmax * n);
    tw_test_fill(&r, x, (size_t)mmax * k, 1.0f);
    tw_test_fill(&r, w, (size_t)n * k, 0.1f);
    for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = tw_test_to_bf16(w[i]);
    for (int dt = 0; dt < 2; dt++) {
        tw_gemm_args a = {
            .n = n, .k = k, .w = dt ? (const void *)wb : w, .w_dtype = dt ? TW_BF16 : TW_F32};
        tw_gemm_info g1, gm;
        a.m = 1;
        gemm_cpu_describe(&a, &g1);
        for (int i = 0; i < mmax; i++) {
            a.m = 1, a.x = x + (size_t)i * k, a.y = solo + (size_t)i * n;
            check(gemm_cpu(&a, 2) == TW_OK, "%s: %s", lv, tw_last_error());
        }
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            a.m = ms[mi], a.x = x, a.y = y;
            gemm_cpu_describe(&a, &gm);
            if (strcmp(gm.path, g1.path)) continue;
            tw_test_poison(y, (size_t)mmax * n);
            check(gemm_cpu(&a, 2) == TW_OK, "%s: %s", lv, tw_last_error());
            check(!memcmp(y, solo, sizeof(float) * (size_t)ms[mi] * n),
                  "%s %s %s: rows of an m=%d product differ from the rows alone", lv, gm.path,
                  dt ? "bf16" : "fp32", ms[mi]);
        }
    }
    free(x), free(w), free(wb), free(solo), free(y);
}

/* ---- row ops -----------------------------------------------------------------------------------
 */
static void ops_check(const char *lv) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 99);
    const int rows = 7, dim = 1037;
    float *x = xmalloc(sizeof(float) * rows * dim), *w = xmalloc(sizeof(float) * dim);
    float *y = xmalloc(sizeof(float) * rows * dim);
    double *ref = xmalloc(sizeof(double) * rows * dim);
    tw_test_fill(&r, x, (size_t)rows * dim, 2.0f);
    tw_test_fill(&r, w, (size_t)dim, 1.0f);
    tw_test_poison(y, (size_t)rows * dim);
    check(rmsnorm_cpu(rows, dim, x, w, TW_F32, 1e-5f, y, 2) == TW_OK, "%s rmsnorm: %s", lv,
          tw_last_error());
    for (int i = 0; i < rows; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)x[i * dim + j] * x[i * dim + j];
        double inv = 1.0 / sqrt(ss / dim + 1e-5);
        for (int j = 0; j < dim; j++) ref[i * dim + j] = x[i * dim + j] * inv * w[j];
    }
    double e = tw_test_rel_err(y, ref, (size_t)rows * dim);
    check(e <= 1e-5, "%s rmsnorm: rel err %g > 1e-5", lv, e);
    /* swiglu: out = silu(gate) * up */
    float *up = xmalloc(sizeof(float) * rows * dim);
    tw_test_fill(&r, up, (size_t)rows * dim, 2.0f);
    tw_test_poison(y, (size_t)rows * dim);
    check(swiglu_cpu(rows, dim, x, up, 0, y, 2) == TW_OK, "%s swiglu: %s", lv, tw_last_error());
    for (int i = 0; i < rows * dim; i++) ref[i] = x[i] / (1.0 + exp(-(double)x[i])) * up[i];
    e = tw_test_rel_err(y, ref, (size_t)rows * dim);
    check(e <= 1e-5, "%s swiglu: rel err %g > 1e-5", lv, e);
    free(x), free(w), free(y), free(ref), free(up);
}

/* ---- attention: one sequence, H heads over G KV heads, against float64 -------------------------
 */
static void attention_check(const char *lv, int bf16) {
    const int H = 8, G = 2, d = 64, S = 70, max_seq = 80, group = H / G;
    tw_test_rng r;
    tw_test_rng_seed(&r, 1234 + bf16);
    size_t nc = (size_t)G * max_seq * d;
    float *kf = xmalloc(sizeof(float) * nc), *vf = xmalloc(sizeof(float) * nc);
    uint16_t *kb = xmalloc(sizeof(uint16_t) * nc), *vb = xmalloc(sizeof(uint16_t) * nc);
    tw_test_fill(&r, kf, nc, 1.0f);
    tw_test_fill(&r, vf, nc, 1.0f);
    for (size_t i = 0; i < nc; i++) {
        kb[i] = tw_test_to_bf16(kf[i]), vb[i] = tw_test_to_bf16(vf[i]);
        if (bf16) kf[i] = tw_test_from_bf16(kb[i]), vf[i] = tw_test_from_bf16(vb[i]);
    }
    float *q = xmalloc(sizeof(float) * S * H * d), *o = xmalloc(sizeof(float) * S * H * d);
    double *ref = xmalloc(sizeof(double) * S * H * d), *sc = xmalloc(sizeof(double) * max_seq);
    tw_test_fill(&r, q, (size_t)S * H * d, 1.0f);
    const float scale = 1.0f / sqrtf((float)d);
    /* prefill of S tokens from position 0 */
    int start = 0;
    tw_attn_prefill_args pa = {.batch = 1,
                               .seq = S,
                               .n_heads = H,
                               .n_kv_heads = G,
                               .head_dim = d,
                               .max_seq = max_seq,
                               .start_pos = &start,
                               .q = q,
                               .k_cache = bf16 ? (void *)kb : kf,
                               .v_cache = bf16 ? (void *)vb : vf,
                               .kv_dtype = bf16 ? TW_BF16 : TW_F32,
                               .out = o,
                               .scale = scale};
    tw_test_poison(o, (size_t)S * H * d);
    check(attn_prefill_cpu(&pa, 2) == TW_OK, "%s attn_prefill: %s", lv, tw_last_error());
    for (int t = 0; t < S; t++)
        for (int h = 0; h < H; h++) {
            const float *qi = q + ((size_t)t * H + h) * d;
            const float *kh = kf + (size_t)(h / group) * max_seq * d;
            const float *vh = vf + (size_t)(h / group) * max_seq * d;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= t; j++) {
                double s = 0;
                for (int x = 0; x < d; x++) s += (double)qi[x] * kh[(size_t)j * d + x];
                sc[j] = s * scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int x = 0; x < d; x++) {
                double acc = 0;
                for (int j = 0; j <= t; j++) acc += sc[j] * vh[(size_t)j * d + x];
                ref[((size_t)t * H + h) * d + x] = acc / sum;
            }
        }
    double e = tw_test_rel_err(o, ref, (size_t)S * H * d);
    check(e <= 1e-5, "%s attn_prefill %s: rel err %g > 1e-5", lv, bf16 ? "bf16" : "fp32", e);
    /* decode: the last token's query against all S keys equals prefill's last row */
    int len = S;
    tw_attn_decode_args da = {.batch = 1,
                              .n_heads = H,
                              .n_kv_heads = G,
                              .head_dim = d,
                              .max_seq = max_seq,
                              .lens = &len,
                              .q = q + (size_t)(S - 1) * H * d,
                              .k_cache = pa.k_cache,
                              .v_cache = pa.v_cache,
                              .kv_dtype = pa.kv_dtype,
                              .out = o,
                              .scale = scale};
    tw_test_poison(o, (size_t)H * d);
    check(attn_decode_cpu(&da, 2) == TW_OK, "%s attn_decode: %s", lv, tw_last_error());
    e = tw_test_rel_err(o, ref + (size_t)(S - 1) * H * d, (size_t)H * d);
    check(e <= 1e-5, "%s attn_decode %s: rel err %g > 1e-5", lv, bf16 ? "bf16" : "fp32", e);
    free(kf), free(vf), free(kb), free(vb), free(q), free(o), free(ref), free(sc);
}

int main(void) {
    const tw_simd levels[] = {TW_SIMD_PORTABLE, TW_SIMD_AVX2, TW_SIMD_AVX512,  TW_SIMD_AVX512BF16,
                              TW_SIMD_AMX,      TW_SIMD_NEON, TW_SIMD_NEONBF16};
    printf("kernels_check: CPU features %s, detected level %s\n", tw_cpu_features(),
           tw_simd_name(tw_cpu_simd_detect()));
    int nlev = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if (!tw_cpu_simd_supported(levels[l])) continue;
        if (tw_cpu_simd_force(levels[l]) != TW_OK) {
            printf("FAIL: cannot force %s: %s\n", tw_simd_name(levels[l]), tw_last_error());
            return 1;
        }
        const char *lv = tw_simd_name(levels[l]);
        int before = n_fail;
        uint64_t seed = 100;
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++)
            for (int bf16 = 0; bf16 < 2; bf16++)
                for (int v = 0; v < 4; v++)
                    gemm_case(lv, bf16, SHAPES[si], v & 1, v >> 1, 1 + (int)(si % 3), seed++);
        gemm_determinism(lv);
        gemm_rows_independent(lv);
        ops_check(lv);
        attention_check(lv, 0);
        attention_check(lv, 1);
        printf("kernels_check: level %s: %s\n", lv, n_fail == before ? "ok" : "FAILED");
        nlev++;
    }
    if (n_fail) {
        printf("kernels_check: FAIL (%d of %d checks failed)\n", n_fail, n_checks);
        return 1;
    }
    printf("kernels_check: PASS (%d checks over %d SIMD levels)\n", n_checks, nlev);
    return 0;
}
