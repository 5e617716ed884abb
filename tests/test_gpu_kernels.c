/* Every CUDA backend op against an independent float64 reference written here (attention also
 * with sliding windows; the q/k/v bias add), on awkward sizes (not multiples of any tile), with
 * device outputs poisoned with NaN before each call. Label "gpu" (by name): skipped with a reported
 * reason where no CUDA device exists or CUDA was not built. Tolerances (relative 2-norm): fp32
 * paths 1e-5 (1e-4 where long fp32 reductions or exponentials add rounding), bf16 tensor-core paths
 * 1e-2 (activations, queries and softmax weights rounded to bf16), RoPE 1e-4 (fp32 angle as Hugging
 * Face computes it). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_cuda_info.h"
#include "tw_test_util.h"

/* The test calls only the CUDA backend (not backend.c), so it links without the CPU kernels. */
static const char *dtn(tw_dtype dt) {
    return dt == TW_BF16 ? "bf16" : "fp32";
}

/* ---- harness ------------------------------------------------------------------------------- */
static tw_backend *gpu_or_skip(void) {
    int n = 0;
    tw_status st = tw_cuda_device_count(&n);
    if (st != TW_OK) cr_skip_test("no CUDA device: %s", tw_last_error());
    if (n == 0) cr_skip_test("no CUDA device: none found");
    tw_backend *be = NULL;
    st = tw_backend_create("cuda", 0, 0, &be);
    cr_assert_eq(st, TW_OK, "a device exists but the CUDA backend failed: %s", tw_last_error());
    return be;
}

static void *dev_alloc(tw_backend *be, size_t bytes) {
    void *p = NULL;
    cr_assert_eq(be->ops->alloc(be, bytes, &p), TW_OK, "alloc: %s", tw_last_error());
    return p;
}

static void *dev_from(tw_backend *be, const void *h, size_t bytes) {
    void *p = dev_alloc(be, bytes);
    cr_assert_eq(be->ops->upload(be, p, h, bytes), TW_OK, "upload: %s", tw_last_error());
    return p;
}

static void *dev_nan(tw_backend *be, size_t n_floats) {
    float *h = malloc(n_floats * sizeof *h);
    tw_test_poison(h, n_floats);
    void *p = dev_from(be, h, n_floats * sizeof *h);
    free(h);
    return p;
}

static void to_host(tw_backend *be, void *h, const void *d, size_t bytes) {
    cr_assert_eq(be->ops->sync(be), TW_OK, "sync: %s", tw_last_error());
    cr_assert_eq(be->ops->download(be, h, d, bytes), TW_OK, "download: %s", tw_last_error());
}

static float *rnd(tw_test_rng *r, size_t n, float scale) {
    float *x = malloc(n * sizeof *x);
    tw_test_fill(r, x, n, scale);
    return x;
}

static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = tw_test_to_bf16(x[i]);
    return h;
}

/* ---- GEMM ---------------------------------------------------------------------------------- */
typedef struct {
    int m, n, k, ldx, ldy, accumulate;
} gemm_case;

static void check_gemm(tw_backend *be, const gemm_case *c, tw_dtype wdt, double tol,
                       const char *impl) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)(c->m * 1000003 + c->n * 1009 + c->k));
    int ldx = c->ldx ? c->ldx : c->k, ldy = c->ldy ? c->ldy : c->n;
    size_t nx = (size_t)c->m * ldx, nw = (size_t)c->n * c->k, ny = (size_t)c->m * ldy;
    float *x = rnd(&r, nx, 1.0f), *w = rnd(&r, nw, 1.0f), *y0 = rnd(&r, ny, 1.0f);
    uint16_t *wb = to_bf16(w, nw);
    double *ref = calloc(ny, sizeof *ref);
    for (int i = 0; i < c->m; i++)
        for (int j = 0; j < c->n; j++) {
            double s = c->accumulate ? y0[(size_t)i * ldy + j] : 0.0;
            for (int kk = 0; kk < c->k; kk++) {
                double wv = wdt == TW_BF16 ? tw_test_from_bf16(wb[(size_t)j * c->k + kk])
                                           : w[(size_t)j * c->k + kk];
                s += (double)x[(size_t)i * ldx + kk] * wv;
            }
            ref[(size_t)i * ldy + j] = s;
        }
    void *dx = dev_from(be, x, nx * 4);
    void *dw = wdt == TW_BF16 ? dev_from(be, wb, nw * 2) : dev_from(be, w, nw * 4);
    void *dy = c->accumulate ? dev_from(be, y0, ny * 4) : dev_nan(be, ny);
    tw_gemm_args a = {c->m, c->n, c->k, dx, dw, wdt, dy, c->ldx, c->ldy, c->accumulate};
    cr_assert_eq(tw_backend_set_option(be, "gemm", impl), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->gemm(be, &a), TW_OK, "gemm: %s", tw_last_error());
    float *y = malloc(ny * sizeof *y);
    to_host(be, y, dy, ny * 4);
    /* compare only the m x n block; padding columns of y must be untouched */
    float *yc = malloc((size_t)c->m * c->n * sizeof *yc);
    double *rc = malloc((size_t)c->m * c->n * sizeof *rc);
    for (int i = 0; i < c->m; i++)
        for (int j = 0; j < c->n; j++) {
            yc[(size_t)i * c->n + j] = y[(size_t)i * ldy + j];
            rc[(size_t)i * c->n + j] = ref[(size_t)i * ldy + j];
        }
    double err = tw_test_rel_err(yc, rc, (size_t)c->m * c->n);
    cr_expect(err < tol, "gemm %s %s m=%d n=%d k=%d ldx=%d ldy=%d acc=%d: rel err %g (tol %g)",
              impl, dtn(wdt), c->m, c->n, c->k, ldx, ldy, c->accumulate, err, tol);
    for (int i = 0; i < c->m; i++)
        for (int j = c->n; j < ldy; j++) {
            float v = y[(size_t)i * ldy + j], want = c->accumulate ? y0[(size_t)i * ldy + j] : NAN;
            cr_expect(c->accumulate ? v == want : isnan(v),
                      "gemm %s wrote padding y[%d][%d] (ldy %d)", impl, i, j, ldy);
        }
    be->ops->free(be, dx);
    be->ops->free(be, dw);
    be->ops->free(be, dy);
    free(x), free(w), free(y0), free(wb), free(ref), free(y), free(yc), free(rc);
}

static const gemm_case gemm_cases[] = {
    {1, 37, 67, 0, 0, 0},
    {1, 300, 1024, 0, 0, 1},
    {3, 129, 64, 70, 131, 0},
    {8, 257, 1000, 0, 0, 0},
    {9, 65, 136, 0, 0, 0},
    {37, 129, 67, 0, 0, 0},
    {130, 257, 136, 140, 260, 1},
    {200, 65, 300, 0, 0, 0},
    {257, 384, 512, 0, 0, 0},
    /* the mma path with one k tile (k <= 32), k < 8 and odd k (guarded weight loads), and an
     * x row stride that is not a multiple of 4 floats (the GEMV's unaligned path) */
    {33, 40, 5, 0, 0, 0},
    {20, 64, 24, 0, 0, 1},
    {17, 96, 7, 0, 0, 0},
    {4, 129, 67, 69, 0, 0},
    {2, 64, 128, 131, 0, 1},
};

Test(gpu_gemm, bf16_tokwatt_matches_reference) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++)
        check_gemm(be, &gemm_cases[i], TW_BF16, 1e-2, "tokwatt");
    be->ops->destroy(be);
}

Test(gpu_gemm, bf16_cublas_matches_reference) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++)
        check_gemm(be, &gemm_cases[i], TW_BF16, 1e-2, "cublas");
    be->ops->destroy(be);
}

Test(gpu_gemm, fp32_weights_match_reference) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++) {
        check_gemm(be, &gemm_cases[i], TW_F32, 1e-5, "tokwatt");
        check_gemm(be, &gemm_cases[i], TW_F32, 1e-5, "cublas");
    }
    be->ops->destroy(be);
}

Test(gpu_gemm, wgmma_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_cuda_device_info di;
    cr_assert_eq(tw_cuda_device_query(be->device, &di), TW_OK, "%s", tw_last_error());
    int maj = di.cc_major, min = di.cc_minor;
    if (!(maj == 9 && min == 0)) {
        cr_expect_neq(tw_backend_set_option(be, "gemm", "wgmma"), TW_OK,
                      "wgmma accepted on cc %d.%d", maj, min);
        be->ops->destroy(be);
        cr_skip_test("wgmma needs compute capability 9.0; %s is %d.%d", di.name, maj, min);
    }
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++)
        if (gemm_cases[i].m > 8) check_gemm(be, &gemm_cases[i], TW_BF16, 1e-2, "wgmma");
    gemm_case big = {300, 520, 1024, 0, 0, 1};
    check_gemm(be, &big, TW_BF16, 1e-2, "wgmma");
    be->ops->destroy(be);
}

/* The TMA + wgmma GEMM (sm_90a, experimental): the shared cases with m > 8, plus shapes that
 * cross its 128 x 256 block tile and 64-wide k tile in every direction (k tails inside a TMA box,
 * ring wrap-around with more k tiles than stages, an odd y row stride for the scalar epilogue),
 * and one GEMM replayed from a CUDA graph (the tensor maps are kernel parameters, captured by
 * value), which must reproduce the direct call bit for bit. k % 8 != 0 cases exercise the
 * documented fall-back to the mma.sync kernel. */
static const gemm_case wgmma_tma_cases[] = {
    {300, 520, 1024, 0, 0, 1}, /* 3 x 3 blocks, 16 k tiles: the ring wraps four times */
    {129, 257, 200, 0, 0, 0},  /* one row and one column past a block, last k tile 8 wide */
    {37, 300, 72, 0, 301, 1},  /* odd ldy: scalar stores, accumulate */
    {128, 256, 64, 0, 0, 0},   /* exactly one block and one k tile */
    {250, 100, 8, 0, 0, 0},    /* k = 8: one box mostly zero-filled */
    {17, 1000, 328, 0, 0, 1},
};

/* One GEMM captured in a CUDA graph and replayed `replays` times into a NaN-poisoned y: each
 * replay must reproduce the direct call bit for bit (kernel parameters captured by value; the
 * GEMV's split-k counters and partials re-used across replays). */
static void gemm_graph_matches_direct(tw_backend *be, const char *impl, int m, int n, int k,
                                      int replays) {
    tw_test_rng r;
    tw_test_rng_seed(&r, 77);
    float *x = rnd(&r, (size_t)m * k, 1.0f), *w = rnd(&r, (size_t)n * k, 1.0f);
    uint16_t *wb = to_bf16(w, (size_t)n * k);
    void *dx = dev_from(be, x, (size_t)m * k * 4), *dw = dev_from(be, wb, (size_t)n * k * 2);
    void *dy = dev_nan(be, (size_t)m * n);
    float *direct = malloc((size_t)m * n * sizeof *direct), *graph = malloc((size_t)m * n * 4);
    tw_gemm_args g = {m, n, k, dx, dw, TW_BF16, dy, 0, 0, 0};
    cr_assert_eq(tw_backend_set_option(be, "gemm", impl), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->gemm(be, &g), TW_OK, "gemm: %s", tw_last_error());
    to_host(be, direct, dy, (size_t)m * n * 4);
    void *poison = dev_nan(be, (size_t)m * n);
    cr_assert_eq(tw_backend_graph_begin(be), TW_OK, "%s", tw_last_error());
    tw_status st = be->ops->gemm(be, &g);
    void *gr = NULL;
    tw_status st_end = tw_backend_graph_end(be, &gr);
    cr_assert_eq(st, TW_OK, "captured gemm: %s", tw_last_error());
    cr_assert_eq(st_end, TW_OK, "graph end: %s", tw_last_error());
    for (int rep = 0; rep < replays; rep++) {
        cr_assert_eq(tw_backend_copy_d2d(be, dy, poison, (size_t)m * n * 4), TW_OK, "%s",
                     tw_last_error());
        cr_assert_eq(tw_backend_graph_launch(be, gr), TW_OK, "%s", tw_last_error());
        to_host(be, graph, dy, (size_t)m * n * 4);
        cr_expect(memcmp(direct, graph, (size_t)m * n * 4) == 0,
                  "gemm %s %dx%dx%d: graph replay %d differs", impl, m, n, k, rep);
    }
    tw_backend_graph_destroy(be, gr);
    be->ops->free(be, dx), be->ops->free(be, dw), be->ops->free(be, dy), be->ops->free(be, poison);
    free(x), free(w), free(wb), free(direct), free(graph);
}

Test(gpu_gemm, wgmma_tma_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_cuda_device_info di;
    cr_assert_eq(tw_cuda_device_query(be->device, &di), TW_OK, "%s", tw_last_error());
    int maj = di.cc_major, min = di.cc_minor;
    if (!(maj == 9 && min == 0)) {
        cr_expect_eq(tw_backend_set_option(be, "gemm", "wgmma_tma"), TW_ERR_UNSUPPORTED,
                     "wgmma_tma accepted on cc %d.%d", maj, min);
        cr_expect(strstr(tw_last_error(), "9.0"), "refusal says why: %s", tw_last_error());
        be->ops->destroy(be);
        cr_skip_test("wgmma_tma needs compute capability 9.0; %s is %d.%d", di.name, maj, min);
    }
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++)
        if (gemm_cases[i].m > 8) check_gemm(be, &gemm_cases[i], TW_BF16, 1e-2, "wgmma_tma");
    for (size_t i = 0; i < sizeof wgmma_tma_cases / sizeof wgmma_tma_cases[0]; i++)
        check_gemm(be, &wgmma_tma_cases[i], TW_BF16, 1e-2, "wgmma_tma");
    cr_expect_str_eq(tw_backend_get_option(be, "gemm"), "wgmma_tma");
    gemm_graph_matches_direct(be, "wgmma_tma", 130, 257, 136, 1);
    be->ops->destroy(be);
}

/* ---- decode GEMV (m <= 8): tensor cores, x staged once per block, k split across blocks ------
 * The kernel rounds x to bf16 (as the mma.sync GEMM and the cuBLAS path do), so the float64
 * reference takes the same bf16-rounded operands and the tolerance is fp32 accumulation's (1e-4).
 * Each case is run three times into a NaN-poisoned y: the split-k counters re-arm themselves, so
 * every run must be bit-identical to the first (and the sum order fixed). Offsets misalign x or
 * w by one element to take the element-wise paths. */
typedef struct {
    int m, n, k, ldx, ldy, accumulate, x_off, w_off;
} gemv_case;

static const gemv_case gemv_cases[] = {
    {8, 4096, 8192, 0, 0, 0, 0, 0},       /* batch-8 decode, k split 8 ways on 132 SMs */
    {8, 300, 8192, 0, 0, 1, 0, 0},        /* 16 splits, accumulate */
    {5, 1000, 4100, 4101, 1003, 0, 0, 0}, /* k tail in a 32-block, odd strides */
    {3, 129, 14336, 0, 0, 1, 1, 0},       /* x not 16-byte aligned: element-wise staging */
    {6, 257, 1000, 0, 0, 0, 0, 1},        /* w not 16-byte aligned: element-wise weights */
    {1, 28672, 512, 0, 0, 0, 0, 0},       /* one split, 224 blocks */
    {7, 1, 77, 0, 0, 0, 0, 0},
};

static void check_gemv(tw_backend *be, const gemv_case *c) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)(c->m * 7919 + c->n * 31 + c->k));
    int ldx = c->ldx ? c->ldx : c->k, ldy = c->ldy ? c->ldy : c->n;
    size_t nx = (size_t)c->m * ldx, nw = (size_t)c->n * c->k, ny = (size_t)c->m * ldy;
    float *x = rnd(&r, nx + 1, 1.0f), *w = rnd(&r, nw + 1, 1.0f), *y0 = rnd(&r, ny, 1.0f);
    uint16_t *wb = to_bf16(w, nw + 1);
    double *ref = malloc((size_t)c->m * c->n * sizeof *ref);
    const float *xs = x + c->x_off;
    const uint16_t *ws = wb + c->w_off;
    for (int i = 0; i < c->m; i++)
        for (int j = 0; j < c->n; j++) {
            double sum = c->accumulate ? y0[(size_t)i * ldy + j] : 0.0;
            for (int kk = 0; kk < c->k; kk++)
                sum += (double)tw_test_from_bf16(tw_test_to_bf16(xs[(size_t)i * ldx + kk])) *
                       tw_test_from_bf16(ws[(size_t)j * c->k + kk]);
            ref[(size_t)i * c->n + j] = sum;
        }
    float *dx = dev_from(be, x, (nx + 1) * 4);
    uint16_t *dw = dev_from(be, wb, (nw + 1) * 2);
    void *dy = dev_alloc(be, ny * 4),
         *init = c->accumulate ? dev_from(be, y0, ny * 4) : dev_nan(be, ny);
    tw_gemm_args a = {c->m,    c->n, c->k,   dx + c->x_off, dw + c->w_off,
                      TW_BF16, dy,   c->ldx, c->ldy,        c->accumulate};
    cr_assert_eq(tw_backend_set_option(be, "gemm", "tokwatt"), TW_OK);
    float *y = malloc(ny * 4), *first = malloc(ny * 4), *yc = malloc((size_t)c->m * c->n * 4);
    for (int run = 0; run < 3; run++) {
        cr_assert_eq(tw_backend_copy_d2d(be, dy, init, ny * 4), TW_OK, "%s", tw_last_error());
        cr_assert_eq(be->ops->gemm(be, &a), TW_OK, "gemv: %s", tw_last_error());
        to_host(be, y, dy, ny * 4);
        if (run == 0) {
            memcpy(first, y, ny * 4);
            for (int i = 0; i < c->m; i++)
                for (int j = 0; j < c->n; j++) yc[(size_t)i * c->n + j] = y[(size_t)i * ldy + j];
            double err = tw_test_rel_err(yc, ref, (size_t)c->m * c->n);
            cr_expect(err < 1e-4,
                      "gemv m=%d n=%d k=%d ldx=%d ldy=%d acc=%d x+%d w+%d: rel err %g (tol 1e-4)",
                      c->m, c->n, c->k, ldx, ldy, c->accumulate, c->x_off, c->w_off, err);
            for (int i = 0; i < c->m; i++)
                for (int j = c->n; j < ldy; j++) {
                    float v = y[(size_t)i * ldy + j];
                    cr_expect(c->accumulate ? v == y0[(size_t)i * ldy + j] : isnan(v),
                              "gemv wrote padding y[%d][%d]", i, j);
                }
        } else {
            cr_expect(memcmp(first, y, ny * 4) == 0,
                      "gemv m=%d n=%d k=%d: run %d differs from run 0 (split-k counters?)", c->m,
                      c->n, c->k, run);
        }
    }
    be->ops->free(be, dx), be->ops->free(be, dw), be->ops->free(be, dy), be->ops->free(be, init);
    free(x), free(w), free(y0), free(wb), free(ref), free(y), free(first), free(yc);
}

Test(gpu_gemm, gemv_decode_shapes) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof gemv_cases / sizeof gemv_cases[0]; i++)
        check_gemv(be, &gemv_cases[i]);
    /* a split-k GEMV (8 splits on 132 SMs) replayed from a CUDA graph */
    gemm_graph_matches_direct(be, "tokwatt", 8, 1000, 4096, 3);
    be->ops->destroy(be);
}

/* ---- attention ------------------------------------------------------------------------------ */
typedef struct {
    int batch, seq, n_heads, n_kv, d, max_seq;
    int start[4];
} attn_case;

/* cache [batch, n_kv, max_seq, d], NaN everywhere except positions < valid[b] */
static float *make_cache(tw_test_rng *r, int batch, int n_kv, int max_seq, int d, const int *valid,
                         tw_dtype dt) {
    size_t n = (size_t)batch * n_kv * max_seq * d;
    float *c = malloc(n * sizeof *c);
    tw_test_poison(c, n);
    for (int b = 0; b < batch; b++)
        for (int h = 0; h < n_kv; h++)
            for (int p = 0; p < valid[b]; p++)
                for (int j = 0; j < d; j++) {
                    float v = (float)tw_test_uniform(r);
                    if (dt == TW_BF16) v = tw_test_from_bf16(tw_test_to_bf16(v));
                    c[(((size_t)b * n_kv + h) * max_seq + p) * d + j] = v;
                }
    return c;
}

static void *cache_to_dev(tw_backend *be, const float *c, size_t n, tw_dtype dt) {
    if (dt == TW_F32) return dev_from(be, c, n * 4);
    uint16_t *h = to_bf16(c, n);
    void *p = dev_from(be, h, n * 2);
    free(h);
    return p;
}

/* softmax(q . k * scale) . v over keys first..last, in double */
static void ref_attend_from(const float *q, const float *kc, const float *vc, int d, int first,
                            int last, double scale, double *out) {
    double mx = -INFINITY;
    double *s = malloc((size_t)(last + 1) * sizeof *s);
    for (int p = first; p <= last; p++) {
        double dot = 0;
        for (int j = 0; j < d; j++) dot += (double)q[j] * kc[(size_t)p * d + j];
        s[p] = dot * scale;
        if (s[p] > mx) mx = s[p];
    }
    double den = 0;
    for (int j = 0; j < d; j++) out[j] = 0;
    for (int p = first; p <= last; p++) {
        double e = exp(s[p] - mx);
        den += e;
        for (int j = 0; j < d; j++) out[j] += e * vc[(size_t)p * d + j];
    }
    for (int j = 0; j < d; j++) out[j] /= den;
    free(s);
}

/* the first key a query at position pos attends with sliding window w (0: none), written here */
static int window_first(int pos, int w) {
    return w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
}

static void check_prefill_w(tw_backend *be, const attn_case *c, tw_dtype dt, double tol,
                            int window) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)(c->seq * 31 + c->d + c->batch * 7 + dt));
    int valid[4];
    for (int b = 0; b < c->batch; b++) valid[b] = c->start[b] + c->seq;
    size_t ncache = (size_t)c->batch * c->n_kv * c->max_seq * c->d;
    float *kc = make_cache(&r, c->batch, c->n_kv, c->max_seq, c->d, valid, dt);
    float *vc = make_cache(&r, c->batch, c->n_kv, c->max_seq, c->d, valid, dt);
    size_t nq = (size_t)c->batch * c->seq * c->n_heads * c->d;
    float *q = rnd(&r, nq, 1.0f);
    double scale = 1.0 / sqrt((double)c->d);
    double *ref = malloc(nq * sizeof *ref);
    int group = c->n_heads / c->n_kv;
    for (int b = 0; b < c->batch; b++)
        for (int s = 0; s < c->seq; s++)
            for (int h = 0; h < c->n_heads; h++) {
                size_t row = (((size_t)b * c->seq + s) * c->n_heads + h) * c->d;
                size_t kvo = ((size_t)b * c->n_kv + h / group) * c->max_seq * c->d;
                ref_attend_from(q + row, kc + kvo, vc + kvo, c->d,
                                window_first(c->start[b] + s, window), c->start[b] + s, scale,
                                ref + row);
            }
    void *dq = dev_from(be, q, nq * 4), *dout = dev_nan(be, nq);
    void *dk = cache_to_dev(be, kc, ncache, dt), *dv = cache_to_dev(be, vc, ncache, dt);
    tw_attn_prefill_args a = {c->batch, c->seq, c->n_heads, c->n_kv, c->d, c->max_seq,   c->start,
                              dq,       dk,     dv,         dt,      dout, (float)scale, window};
    cr_assert_eq(be->ops->attn_prefill(be, &a), TW_OK, "attn_prefill: %s", tw_last_error());
    float *out = malloc(nq * sizeof *out);
    to_host(be, out, dout, nq * 4);
    double err = tw_test_rel_err(out, ref, nq);
    cr_expect(err < tol,
              "attn_prefill %s batch=%d seq=%d heads=%d/%d d=%d start0=%d window=%d: rel err %g "
              "(tol %g)",
              dtn(dt), c->batch, c->seq, c->n_heads, c->n_kv, c->d, c->start[0], window, err, tol);
    be->ops->free(be, dq), be->ops->free(be, dout), be->ops->free(be, dk), be->ops->free(be, dv);
    free(kc), free(vc), free(q), free(ref), free(out);
}

static void check_prefill(tw_backend *be, const attn_case *c, tw_dtype dt, double tol) {
    check_prefill_w(be, c, dt, tol, 0);
}

static const attn_case prefill_cases[] = {
    {2, 17, 4, 2, 64, 40, {0, 5}},         {1, 130, 8, 2, 128, 200, {3}},
    {2, 1, 2, 1, 128, 9, {0, 7}},          {1, 67, 4, 4, 64, 67, {0}},
    {3, 65, 6, 3, 128, 300, {0, 64, 170}}, {1, 70, 2, 2, 32, 80, {9}},
    {1, 33, 4, 1, 256, 40, {2}},
};

Test(gpu_attention, prefill_matches_reference) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof prefill_cases / sizeof prefill_cases[0]; i++) {
        /* the mma path rounds q, K and P to bf16; the SIMT path (d 32, 256) is fp32 */
        int mma = prefill_cases[i].d == 64 || prefill_cases[i].d == 128;
        check_prefill(be, &prefill_cases[i], TW_F32, mma ? 1e-2 : 1e-4);
        check_prefill(be, &prefill_cases[i], TW_BF16, mma ? 1e-2 : 1e-4);
    }
    be->ops->destroy(be);
}

typedef struct {
    int batch, n_heads, n_kv, d, max_seq;
    int lens[4];
} decode_case;

static void check_decode_w(tw_backend *be, const decode_case *c, tw_dtype dt, int window) {
    tw_test_rng r;
    tw_test_rng_seed(&r, (uint64_t)(c->lens[0] * 13 + c->d + dt));
    size_t ncache = (size_t)c->batch * c->n_kv * c->max_seq * c->d;
    float *kc = make_cache(&r, c->batch, c->n_kv, c->max_seq, c->d, c->lens, dt);
    float *vc = make_cache(&r, c->batch, c->n_kv, c->max_seq, c->d, c->lens, dt);
    size_t nq = (size_t)c->batch * c->n_heads * c->d;
    float *q = rnd(&r, nq, 2.0f);
    double scale = 1.0 / sqrt((double)c->d);
    double *ref = malloc(nq * sizeof *ref);
    int group = c->n_heads / c->n_kv;
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->n_heads; h++) {
            size_t row = ((size_t)b * c->n_heads + h) * c->d;
            size_t kvo = ((size_t)b * c->n_kv + h / group) * c->max_seq * c->d;
            ref_attend_from(q + row, kc + kvo, vc + kvo, c->d, window_first(c->lens[b] - 1, window),
                            c->lens[b] - 1, scale, ref + row);
        }
    void *dq = dev_from(be, q, nq * 4), *dout = dev_nan(be, nq);
    void *dk = cache_to_dev(be, kc, ncache, dt), *dv = cache_to_dev(be, vc, ncache, dt);
    tw_attn_decode_args a = {c->batch, c->n_heads, c->n_kv, c->d, c->max_seq,   c->lens, dq,
                             dk,       dv,         dt,      dout, (float)scale, window};
    cr_assert_eq(be->ops->attn_decode(be, &a), TW_OK, "attn_decode: %s", tw_last_error());
    float *out = malloc(nq * sizeof *out);
    to_host(be, out, dout, nq * 4);
    double err = tw_test_rel_err(out, ref, nq);
    cr_expect(err < 1e-4,
              "attn_decode %s batch=%d heads=%d/%d d=%d len0=%d window=%d: rel err %g (tol 1e-4)",
              dtn(dt), c->batch, c->n_heads, c->n_kv, c->d, c->lens[0], window, err);
    be->ops->free(be, dq), be->ops->free(be, dout), be->ops->free(be, dk), be->ops->free(be, dv);
    free(kc), free(vc), free(q), free(ref), free(out);
}

static void check_decode(tw_backend *be, const decode_case *c, tw_dtype dt) {
    check_decode_w(be, c, dt, 0);
}

static const decode_case decode_cases[] = {
    {3, 8, 2, 128, 320, {1, 37, 300}},   {1, 16, 1, 64, 129, {129}},    {2, 4, 4, 32, 17, {17, 3}},
    {4, 12, 4, 256, 70, {5, 69, 1, 33}}, {1, 32, 8, 128, 4100, {4097}},
};

Test(gpu_attention, decode_matches_reference) {
    tw_backend *be = gpu_or_skip();
    for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
        check_decode(be, &decode_cases[i], TW_F32);
        check_decode(be, &decode_cases[i], TW_BF16);
    }
    be->ops->destroy(be);
}

/* Sliding windows shorter than the context (prefill tiles before the window skipped, tiles cut
 * inside, rows straddling the edge; decode splits over the window only), a window of one key,
 * and a window longer than the context */
Test(gpu_attention, sliding_window_matches_reference) {
    tw_backend *be = gpu_or_skip();
    static const struct {
        attn_case c;
        int window;
    } pw[] = {
        {{2, 130, 4, 2, 64, 300, {0, 100}}, 70},    {{1, 200, 8, 2, 128, 200, {0}}, 65},
        {{3, 65, 6, 3, 128, 300, {0, 64, 170}}, 7}, {{1, 70, 2, 2, 32, 80, {9}}, 1},
        {{1, 33, 4, 1, 256, 40, {2}}, 5},           {{2, 17, 4, 2, 64, 40, {0, 5}}, 1000},
    };
    for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
        int mma = pw[i].c.d == 64 || pw[i].c.d == 128;
        check_prefill_w(be, &pw[i].c, TW_F32, mma ? 1e-2 : 1e-4, pw[i].window);
        check_prefill_w(be, &pw[i].c, TW_BF16, mma ? 1e-2 : 1e-4, pw[i].window);
    }
    static const struct {
        decode_case c;
        int window;
    } dw[] = {
        {{3, 8, 2, 128, 320, {1, 37, 300}}, 64},
        {{1, 32, 8, 128, 4100, {4097}}, 4096},
        {{2, 4, 4, 32, 17, {17, 3}}, 1},
        {{4, 12, 4, 256, 70, {5, 69, 1, 33}}, 30},
    };
    for (size_t i = 0; i < sizeof dw / sizeof dw[0]; i++) {
        check_decode_w(be, &dw[i].c, TW_F32, dw[i].window);
        check_decode_w(be, &dw[i].c, TW_BF16, dw[i].window);
    }
    be->ops->destroy(be);
}

Test(gpu_attention, kv_store_writes_only_its_positions) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 77);
    const int batch = 2, seq = 5, n_kv = 3, d = 40, max_seq = 19, ld = 130;
    int start[2] = {0, 11};
    for (int t = 0; t < 2; t++) {
        tw_dtype dt = t ? TW_BF16 : TW_F32;
        size_t nkv = (size_t)batch * seq * ld, ncache = (size_t)batch * n_kv * max_seq * d;
        float *k = rnd(&r, nkv, 1.0f), *v = rnd(&r, nkv, 1.0f);
        size_t esz = (dt == TW_BF16 ? 2u : 4u);
        unsigned char *sentinel = malloc(ncache * esz);
        memset(sentinel, 0x5a, ncache * esz);
        void *dk = dev_from(be, k, nkv * 4), *dv = dev_from(be, v, nkv * 4);
        void *kc = dev_from(be, sentinel, ncache * esz), *vc = dev_from(be, sentinel, ncache * esz);
        tw_kv_store_args a = {batch, seq, n_kv, d, max_seq, start, dk, dv, ld, kc, vc, dt};
        cr_assert_eq(be->ops->kv_store(be, &a), TW_OK, "kv_store: %s", tw_last_error());
        unsigned char *hk = malloc(ncache * esz), *hv = malloc(ncache * esz);
        to_host(be, hk, kc, ncache * esz);
        to_host(be, hv, vc, ncache * esz);
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < n_kv; h++)
                for (int p = 0; p < max_seq; p++)
                    for (int j = 0; j < d; j++) {
                        size_t ci = (((size_t)b * n_kv + h) * max_seq + p) * d + j;
                        int s = p - start[b];
                        for (int w = 0; w < 2; w++) {
                            const unsigned char *hc = w ? hv : hk;
                            const float *src = w ? v : k;
                            if (s >= 0 && s < seq) {
                                float want = src[((size_t)b * seq + s) * ld + h * d + j];
                                float got;
                                if (dt == TW_F32)
                                    memcpy(&got, hc + ci * 4, 4);
                                else {
                                    uint16_t u;
                                    memcpy(&u, hc + ci * 2, 2);
                                    got = tw_test_from_bf16(u);
                                    want = tw_test_from_bf16(tw_test_to_bf16(want));
                                }
                                cr_assert_eq(got, want, "kv_store %s b%d h%d p%d j%d", dtn(dt), b,
                                             h, p, j);
                            } else {
                                cr_assert_eq(hc[ci * esz], 0x5a, "kv_store wrote position %d", p);
                            }
                        }
                    }
        be->ops->free(be, dk), be->ops->free(be, dv), be->ops->free(be, kc), be->ops->free(be, vc);
        free(k), free(v), free(sentinel), free(hk), free(hv);
    }
    be->ops->destroy(be);
}

/* ---- element-wise ops ------------------------------------------------------------------------ */
Test(gpu_ops, rmsnorm_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 5);
    const int shapes[][2] = {{1, 7}, {3, 1000}, {17, 4099}};
    for (int si = 0; si < 3; si++)
        for (int t = 0; t < 2; t++)
            for (int alias = 0; alias < 2; alias++) {
                int rows = shapes[si][0], dim = shapes[si][1];
                tw_dtype wdt = t ? TW_BF16 : TW_F32;
                size_t n = (size_t)rows * dim;
                float *x = rnd(&r, n, 3.0f), *w = rnd(&r, dim, 1.0f);
                uint16_t *wb = to_bf16(w, dim);
                double *ref = malloc(n * sizeof *ref);
                for (int i = 0; i < rows; i++) {
                    double ss = 0;
                    for (int j = 0; j < dim; j++)
                        ss += (double)x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
                    double inv = 1.0 / sqrt(ss / dim + 1e-5);
                    for (int j = 0; j < dim; j++) {
                        double wv = t ? tw_test_from_bf16(wb[j]) : w[j];
                        ref[(size_t)i * dim + j] = x[(size_t)i * dim + j] * inv * wv;
                    }
                }
                void *dx = dev_from(be, x, n * 4);
                void *dw = t ? dev_from(be, wb, dim * 2) : dev_from(be, w, dim * 4);
                void *dy = alias ? dx : dev_nan(be, n);
                cr_assert_eq(be->ops->rmsnorm(be, rows, dim, dx, dw, wdt, 1e-5f, dy), TW_OK, "%s",
                             tw_last_error());
                float *y = malloc(n * sizeof *y);
                to_host(be, y, dy, n * 4);
                double err = tw_test_rel_err(y, ref, n);
                cr_expect(err < 1e-5, "rmsnorm rows=%d dim=%d %s alias=%d: rel err %g", rows, dim,
                          dtn(wdt), alias, err);
                be->ops->free(be, dx), be->ops->free(be, dw);
                if (!alias) be->ops->free(be, dy);
                free(x), free(w), free(wb), free(ref), free(y);
            }
    be->ops->destroy(be);
}

/* inverse frequency long-hand in double (Llama 3 scaling written out independently) */
static double ref_inv_freq(int i, int d, const tw_rope_params *rp) {
    double inv = pow(rp->theta, -2.0 * i / d);
    if (rp->type == TW_ROPE_LINEAR) return inv / rp->factor;
    if (rp->type != TW_ROPE_LLAMA3) return inv;
    double wl = 2 * M_PI / inv;
    double lo = rp->original_max_pos / rp->low_freq_factor;
    double hi = rp->original_max_pos / rp->high_freq_factor;
    if (wl < hi) return inv;
    if (wl > lo) return inv / rp->factor;
    double sm = (rp->original_max_pos / wl - rp->low_freq_factor) /
                (rp->high_freq_factor - rp->low_freq_factor);
    return (1 - sm) * inv / rp->factor + sm * inv;
}

Test(gpu_ops, rope_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 6);
    tw_rope_params rps[2] = {{10000.0f, TW_ROPE_DEFAULT, 1, 1, 1, 1, 0, 0, 0},
                             {500000.0f, TW_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 8192.0f, 0, 0, 0}};
    for (int pi = 0; pi < 2; pi++) {
        const int tokens = 7, heads = 3, d = 64, ld = 3 * 64 + 5;
        size_t n = (size_t)tokens * ld;
        float *x = rnd(&r, n, 1.0f);
        int pos[7];
        for (int t = 0; t < tokens; t++) pos[t] = (int)((tw_test_uniform(&r) + 1) * 1000);
        double *ref = malloc(n * sizeof *ref);
        for (size_t i = 0; i < n; i++) ref[i] = x[i];
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < d / 2; i++) {
                    double ang = pos[t] * ref_inv_freq(i, d, &rps[pi]);
                    size_t o = (size_t)t * ld + h * d;
                    double a = x[o + i], b = x[o + i + d / 2];
                    ref[o + i] = a * cos(ang) - b * sin(ang);
                    ref[o + i + d / 2] = b * cos(ang) + a * sin(ang);
                }
        void *dx = dev_from(be, x, n * 4);
        cr_assert_eq(be->ops->rope(be, tokens, heads, d, dx, ld, pos, &rps[pi]), TW_OK, "%s",
                     tw_last_error());
        float *y = malloc(n * sizeof *y);
        to_host(be, y, dx, n * 4);
        double err = tw_test_rel_err(y, ref, n);
        cr_expect(err < 1e-4, "rope type %d: rel err %g (tol 1e-4)", rps[pi].type, err);
        be->ops->free(be, dx);
        free(x), free(ref), free(y);
    }
    be->ops->destroy(be);
}

Test(gpu_ops, swiglu_add_embed_match_reference) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 7);
    /* swiglu: gate and up are column slices of one [rows, 2f + 3] buffer */
    const int rows = 7, f = 300, ld = 2 * f + 3;
    float *gu = rnd(&r, (size_t)rows * ld, 4.0f);
    double *ref = malloc((size_t)rows * f * sizeof *ref);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < f; j++) {
            double g = gu[(size_t)i * ld + j], u = gu[(size_t)i * ld + f + j];
            ref[(size_t)i * f + j] = g / (1 + exp(-g)) * u;
        }
    float *dgu = dev_from(be, gu, (size_t)rows * ld * 4);
    void *dout = dev_nan(be, (size_t)rows * f);
    cr_assert_eq(be->ops->swiglu(be, rows, f, dgu, dgu + f, ld, dout), TW_OK, "%s",
                 tw_last_error());
    float *out = malloc((size_t)rows * f * sizeof *out);
    to_host(be, out, dout, (size_t)rows * f * 4);
    cr_expect(tw_test_rel_err(out, ref, (size_t)rows * f) < 1e-5, "swiglu");
    /* add */
    const size_t n = 1001;
    float *a = rnd(&r, n, 1.0f), *b = rnd(&r, n, 1.0f);
    double *ra = malloc(n * sizeof *ra);
    for (size_t i = 0; i < n; i++) ra[i] = (double)a[i] + b[i];
    void *da = dev_from(be, a, n * 4), *db = dev_from(be, b, n * 4);
    cr_assert_eq(be->ops->add(be, n, da, db), TW_OK, "%s", tw_last_error());
    float *sum = malloc(n * sizeof *sum);
    to_host(be, sum, db, n * 4);
    cr_expect(tw_test_rel_err(sum, ra, n) < 1e-6, "add");
    /* embed: shard rows [100, 100 + 37) of a vocabulary; other tokens give zero rows */
    const int vrows = 37, dim = 129, row0 = 100, nt = 9;
    int tokens[9] = {100, 136, 99, 137, 120, 0, 101, 5000, 136};
    float *table = rnd(&r, (size_t)vrows * dim, 1.0f);
    uint16_t *tb = to_bf16(table, (size_t)vrows * dim);
    for (int t = 0; t < 2; t++) {
        void *dt_ = t ? dev_from(be, tb, (size_t)vrows * dim * 2)
                      : dev_from(be, table, (size_t)vrows * dim * 4);
        void *de = dev_nan(be, (size_t)nt * dim);
        cr_assert_eq(
            be->ops->embed(be, nt, tokens, dt_, t ? TW_BF16 : TW_F32, row0, vrows, dim, de), TW_OK,
            "%s", tw_last_error());
        float *e = malloc((size_t)nt * dim * sizeof *e);
        to_host(be, e, de, (size_t)nt * dim * 4);
        for (int i = 0; i < nt; i++)
            for (int j = 0; j < dim; j++) {
                int rr = tokens[i] - row0;
                float want = 0.0f;
                if (rr >= 0 && rr < vrows)
                    want = t ? tw_test_from_bf16(tb[(size_t)rr * dim + j])
                             : table[(size_t)rr * dim + j];
                cr_assert_eq(e[(size_t)i * dim + j], want, "embed token %d col %d", tokens[i], j);
            }
        be->ops->free(be, dt_), be->ops->free(be, de);
        free(e);
    }
    be->ops->free(be, dgu), be->ops->free(be, dout), be->ops->free(be, da), be->ops->free(be, db);
    free(gu), free(ref), free(out), free(a), free(b), free(ra), free(sum), free(table), free(tb);
    be->ops->destroy(be);
}

Test(gpu_ops, bias_add_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 11);
    /* packed rows, and the k/v biases on rows of a wider buffer whose tail must stay */
    const int shapes[][3] = {{37, 129, 0}, {13, 67, 200}, {1, 5, 0}};
    for (int si = 0; si < 3; si++)
        for (int t = 0; t < 2; t++) {
            int rows = shapes[si][0], n = shapes[si][1], ld = shapes[si][2] ? shapes[si][2] : n;
            tw_dtype bdt = t ? TW_BF16 : TW_F32;
            size_t total = (size_t)rows * ld;
            float *x = rnd(&r, total, 2.0f), *b = rnd(&r, (size_t)n, 1.0f);
            uint16_t *bb = to_bf16(b, (size_t)n);
            double *ref = malloc(total * sizeof *ref);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < ld; j++) {
                    double bj = j < n ? (t ? tw_test_from_bf16(bb[j]) : b[j]) : 0.0;
                    ref[(size_t)i * ld + j] = x[(size_t)i * ld + j] + bj;
                }
            void *dx = dev_from(be, x, total * 4);
            void *db = t ? dev_from(be, bb, (size_t)n * 2) : dev_from(be, b, (size_t)n * 4);
            cr_assert_eq(be->ops->bias_add(be, rows, n, dx, shapes[si][2], db, bdt), TW_OK, "%s",
                         tw_last_error());
            float *out = malloc(total * sizeof *out);
            to_host(be, out, dx, total * 4);
            cr_expect(tw_test_rel_err(out, ref, total) < 1e-7, "bias_add %dx%d ld %d %s", rows, n,
                      ld, dtn(bdt));
            for (int i = 0; i < rows; i++)
                for (int j = n; j < ld; j++)
                    cr_assert_eq(out[(size_t)i * ld + j], x[(size_t)i * ld + j],
                                 "bias_add wrote column %d past n", j);
            be->ops->free(be, dx), be->ops->free(be, db);
            free(x), free(b), free(bb), free(ref), free(out);
        }
    be->ops->destroy(be);
}

Test(gpu_ops, argmax_first_maximum) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 8);
    const int rows = 5, n = 50001;
    float *l = rnd(&r, (size_t)rows * n, 10.0f);
    int want[5];
    for (int i = 0; i < rows; i++) {
        int a = (int)((tw_test_uniform(&r) + 1) * 0.5 * (n - 1));
        int b = (a + 17 + i * 1000) % n;
        int first = a < b ? a : b;
        l[(size_t)i * n + a] = 11.0f; /* a tie: the lower index wins */
        l[(size_t)i * n + b] = 11.0f;
        want[i] = first;
    }
    void *dl = dev_from(be, l, (size_t)rows * n * 4);
    int idx[5];
    float val[5];
    cr_assert_eq(be->ops->argmax(be, rows, n, dl, idx, val), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->sync(be), TW_OK);
    for (int i = 0; i < rows; i++) {
        cr_expect_eq(idx[i], want[i], "row %d: argmax %d, want %d", i, idx[i], want[i]);
        cr_expect_eq(val[i], 11.0f, "row %d value %g", i, val[i]);
    }
    be->ops->free(be, dl);
    free(l);
    be->ops->destroy(be);
}

/* ---- graph capture: host arrays re-read at each launch ------------------------------------- */
Test(gpu_graph, captured_step_rereads_host_arrays) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 9);
    const int vocab = 97, dim = 64, nt = 3;
    float *table = rnd(&r, (size_t)vocab * dim, 1.0f), *w = rnd(&r, (size_t)vocab * dim, 1.0f);
    float *ones = malloc(dim * sizeof *ones);
    for (int j = 0; j < dim; j++) ones[j] = 1.0f;
    uint16_t *wb = to_bf16(w, (size_t)vocab * dim);
    void *dtab = dev_from(be, table, (size_t)vocab * dim * 4);
    void *dw = dev_from(be, wb, (size_t)vocab * dim * 2);
    void *dn = dev_from(be, ones, dim * 4);
    void *dx = dev_alloc(be, (size_t)nt * dim * 4), *dlog = dev_alloc(be, (size_t)nt * vocab * 4);
    int tokens[3] = {1, 2, 3}, idx[3], idx_ref[3];
    float val[3], val_ref[3];
    tw_gemm_args g = {nt, vocab, dim, dx, dw, TW_BF16, dlog, 0, 0, 0};
#define STEP()                                                                                     \
    do {                                                                                           \
        cr_assert_eq(be->ops->embed(be, nt, tokens, dtab, TW_F32, 0, vocab, dim, dx), TW_OK, "%s", \
                     tw_last_error());                                                             \
        cr_assert_eq(be->ops->rmsnorm(be, nt, dim, dx, dn, TW_F32, 1e-5f, dx), TW_OK);             \
        cr_assert_eq(be->ops->gemm(be, &g), TW_OK, "%s", tw_last_error());                         \
        cr_assert_eq(be->ops->argmax(be, nt, vocab, dlog, idx, val), TW_OK, "%s",                  \
                     tw_last_error());                                                             \
    } while (0)
    STEP(); /* warm-up: scratch reaches its final size */
    cr_assert_eq(be->ops->sync(be), TW_OK);
    cr_assert_eq(tw_backend_graph_begin(be), TW_OK, "%s", tw_last_error());
    STEP();
    void *graph = NULL;
    cr_assert_eq(tw_backend_graph_end(be, &graph), TW_OK, "%s", tw_last_error());
    for (int it = 0; it < 4; it++) {
        for (int i = 0; i < nt; i++) tokens[i] = (it * 31 + i * 7 + 5) % vocab;
        /* uncaptured reference for these tokens */
        STEP();
        cr_assert_eq(be->ops->sync(be), TW_OK);
        memcpy(idx_ref, idx, sizeof idx);
        memcpy(val_ref, val, sizeof val);
        memset(idx, 0xff, sizeof idx);
        cr_assert_eq(tw_backend_graph_launch(be, graph), TW_OK, "%s", tw_last_error());
        cr_assert_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
        for (int i = 0; i < nt; i++) {
            cr_expect_eq(idx[i], idx_ref[i], "launch %d row %d: graph %d, direct %d", it, i, idx[i],
                         idx_ref[i]);
            cr_expect_eq(val[i], val_ref[i], "launch %d row %d value", it, i);
        }
    }
#undef STEP
    tw_backend_graph_destroy(be, graph);
    be->ops->free(be, dtab), be->ops->free(be, dw), be->ops->free(be, dn), be->ops->free(be, dx),
        be->ops->free(be, dlog);
    free(table), free(w), free(ones), free(wb);
    be->ops->destroy(be);
}

/* Re-capturing after the previous graph was destroyed (the engine does this whenever the batch
 * size changes) must reuse the staging arena: 100 captures of a 16 KB host array overflow the
 * 1 MB arena unless slots are reclaimed once no graph is alive. */
Test(gpu_graph, recapture_reuses_staging_arena) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 10);
    const int vocab = 37, dim = 8, nt = 4096;
    float *table = rnd(&r, (size_t)vocab * dim, 1.0f);
    void *dtab = dev_from(be, table, (size_t)vocab * dim * 4);
    void *dx = dev_alloc(be, (size_t)nt * dim * 4);
    int *tokens = malloc(nt * sizeof *tokens);
    float *x = malloc((size_t)nt * dim * sizeof *x);
    for (int it = 0; it < 100; it++) {
        for (int i = 0; i < nt; i++) tokens[i] = (i * 13 + it) % vocab;
        cr_assert_eq(tw_backend_graph_begin(be), TW_OK, "capture %d: %s", it, tw_last_error());
        tw_status st = be->ops->embed(be, nt, tokens, dtab, TW_F32, 0, vocab, dim, dx);
        void *graph = NULL;
        tw_status st_end = tw_backend_graph_end(be, &graph);
        cr_assert_eq(st, TW_OK, "capture %d: embed: %s", it, tw_last_error());
        cr_assert_eq(st_end, TW_OK, "capture %d: end: %s", it, tw_last_error());
        cr_assert_eq(tw_backend_graph_launch(be, graph), TW_OK, "%s", tw_last_error());
        cr_assert_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
        tw_backend_graph_destroy(be, graph);
    }
    cr_assert_eq(be->ops->download(be, x, dx, (size_t)nt * dim * 4), TW_OK, "%s", tw_last_error());
    for (int i = 0; i < nt; i++) /* the last capture's tokens */
        cr_expect_eq(x[(size_t)i * dim + 1], table[(size_t)((i * 13 + 99) % vocab) * dim + 1],
                     "row %d", i);
    be->ops->free(be, dtab), be->ops->free(be, dx);
    free(table), free(tokens), free(x);
    be->ops->destroy(be);
}

/* ---- bad input: clear errors, no crash ----------------------------------------------------- */
Test(gpu_errors, bad_arguments_are_reported) {
    tw_backend *be = gpu_or_skip();
    void *p = dev_alloc(be, 4096);
    tw_gemm_args g = {4, 4, 8, p, p, TW_BF16, p, 3, 0, 0}; /* ldx < k */
    cr_expect_eq(be->ops->gemm(be, &g), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "ldx"), "message: %s", tw_last_error());
    cr_expect_eq(tw_backend_set_option(be, "gemm", "fastest"), TW_ERR_INVALID);
    int lens[1] = {0};
    tw_attn_decode_args d = {1, 2, 2, 64, 16, lens, p, p, p, TW_F32, p, 1.0f, 0};
    cr_expect_eq(be->ops->attn_decode(be, &d), TW_ERR_INVALID);
    lens[0] = 3;
    d.window = -2;
    cr_expect_eq(be->ops->attn_decode(be, &d), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "window"), "message: %s", tw_last_error());
    cr_expect_eq(be->ops->bias_add(be, 4, 8, p, 5, p, TW_F32), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "ldx"), "message: %s", tw_last_error());
    void *huge = NULL;
    tw_status st = be->ops->alloc(be, (size_t)1 << 50, &huge);
    cr_expect_eq(st, TW_ERR_NOMEM, "1 PiB alloc: %s", tw_last_error());
    cr_expect(strstr(tw_last_error(), "device 0"), "message names the device: %s", tw_last_error());
    /* the backend still works afterwards */
    cr_expect_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
    be->ops->free(be, p);
    be->ops->destroy(be);
}

/* ---- mixture of experts and latent attention (issue 16) ---------------------------------- */
#include "tw_ref_model.h"

static double gk_bf(float x) {
    return tw_test_from_bf16(tw_test_to_bf16(x));
}

Test(gpu_moe, head_rmsnorm_matches_reference) {
    tw_backend *be = gpu_or_skip();
    tw_test_rng r;
    tw_test_rng_seed(&r, 41);
    enum { R = 9, NH = 3, D = 72, LD = 3 * 72 + 11 };
    float *x = rnd(&r, (size_t)R * LD, 2.0f), *w = rnd(&r, D, 1.0f);
    void *dx = dev_from(be, x, sizeof(float) * R * LD), *dw = dev_from(be, w, sizeof(float) * D);
    cr_assert_eq(be->ops->head_rmsnorm(be, R, NH, D, dx, LD, dw, TW_F32, 1e-6f), TW_OK, "%s",
                 tw_last_error());
    float *got = malloc(sizeof(float) * R * LD);
    to_host(be, got, dx, sizeof(float) * R * LD);
    double *ref = malloc(sizeof(double) * R * NH * D);
    float *g = malloc(sizeof(float) * R * NH * D);
    for (int i = 0; i < R; i++)
        for (int h = 0; h < NH; h++) {
            double ss = 0;
            for (int j = 0; j < D; j++) ss += (double)x[i * LD + h * D + j] * x[i * LD + h * D + j];
            for (int j = 0; j < D; j++) {
                ref[(i * NH + h) * D + j] = x[i * LD + h * D + j] / sqrt(ss / D + 1e-6) * w[j];
                g[(i * NH + h) * D + j] = got[i * LD + h * D + j];
            }
            for (int j = NH * D; j < LD; j++)
                cr_expect_eq(got[i * LD + j], x[i * LD + j], "padding changed");
        }
    double err = tw_test_rel_err(g, ref, (size_t)R * NH * D);
    cr_expect(err < 1e-5, "head_rmsnorm: rel err %g", err);
    free(x), free(w), free(got), free(ref), free(g);
    be->ops->free(be, dx), be->ops->free(be, dw);
    be->ops->destroy(be);
}

Test(gpu_moe, route_matches_reference) {
    tw_backend *be = gpu_or_skip();
    const struct {
        int E, K, sig, G, TG, top2, norm, bias;
        float scale;
    } cases[] = {{8, 2, 0, 1, 1, 0, 1, 0, 1.0f},
                 {256, 8, 1, 8, 4, 1, 1, 1, 2.5f},
                 {64, 6, 0, 1, 1, 0, 0, 0, 1.0f},
                 {12, 4, 0, 3, 2, 0, 0, 0, 1.3f},
                 {33, 5, 1, 1, 1, 0, 1, 1, 1.0f}};
    enum { T = 45 };
    tw_test_rng r;
    tw_test_rng_seed(&r, 42);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int E = cases[ci].E, K = cases[ci].K;
        float *lg = rnd(&r, (size_t)T * E, 3.0f), *cb = rnd(&r, E, 0.05f);
        void *dl = dev_from(be, lg, sizeof(float) * T * E),
             *dc = dev_from(be, cb, sizeof(float) * E);
        void *di = dev_nan(be, (size_t)T * K), *dwt = dev_nan(be, (size_t)T * K);
        tw_moe_route_args a = {T,
                               E,
                               K,
                               cases[ci].sig ? TW_ROUTE_SIGMOID : TW_ROUTE_SOFTMAX,
                               cases[ci].G,
                               cases[ci].TG,
                               cases[ci].top2,
                               cases[ci].norm,
                               cases[ci].scale,
                               dl,
                               NULL,
                               cases[ci].bias ? dc : NULL,
                               TW_F32,
                               di,
                               dwt};
        cr_assert_eq(be->ops->moe_route(be, &a), TW_OK, "%s", tw_last_error());
        int *idx = malloc(sizeof(int) * T * K);
        float *wt = malloc(sizeof(float) * T * K);
        to_host(be, idx, di, sizeof(int) * T * K);
        to_host(be, wt, dwt, sizeof(float) * T * K);
        tw_model_config c;
        memset(&c, 0, sizeof c);
        c.n_experts = E, c.n_experts_per_tok = K, c.moe_scoring = cases[ci].sig;
        c.n_group = cases[ci].G, c.topk_group = cases[ci].TG, c.group_score_top2 = cases[ci].top2;
        c.norm_topk_prob = cases[ci].norm, c.routed_scaling = cases[ci].scale;
        double *l = malloc(sizeof(double) * E), *b = malloc(sizeof(double) * E), dw[32];
        int ix[32];
        for (int e = 0; e < E; e++) b[e] = cb[e];
        for (int t = 0; t < T; t++) {
            for (int e = 0; e < E; e++) l[e] = lg[t * E + e];
            double margin = INFINITY;
            tw_ref_route(&c, l, NULL, cases[ci].bias ? b : NULL, ix, dw, &margin);
            if (margin < 1e-5) continue;
            for (int j = 0; j < K; j++) {
                cr_expect_eq(idx[t * K + j], ix[j], "case %zu token %d slot %d", ci, t, j);
                cr_expect(fabs(wt[t * K + j] - dw[j]) <= 1e-5 * fmax(1, fabs(dw[j])),
                          "case %zu token %d slot %d weight %g want %g", ci, t, j, wt[t * K + j],
                          dw[j]);
            }
        }
        free(lg), free(cb), free(idx), free(wt), free(l), free(b);
        be->ops->free(be, dl), be->ops->free(be, dc), be->ops->free(be, di), be->ops->free(be, dwt);
    }
    be->ops->destroy(be);
}

Test(gpu_moe, grouped_experts_match_reference) {
    tw_backend *be = gpu_or_skip();
    const struct {
        int T, H, F, K, E_all, E, e0, acc;
        tw_dtype wdt;
    } cases[] = {{37, 72, 40, 2, 8, 8, 0, 0, TW_BF16},
                 {1, 130, 66, 8, 16, 16, 0, 1, TW_F32},
                 {200, 64, 48, 3, 9, 5, 2, 0, TW_BF16}};
    tw_test_rng r;
    tw_test_rng_seed(&r, 43);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int T = cases[ci].T, H = cases[ci].H, F = cases[ci].F, K = cases[ci].K, E = cases[ci].E;
        float *x = rnd(&r, (size_t)T * H, 1.0f), *wt = rnd(&r, (size_t)T * K, 1.0f);
        float *gu = rnd(&r, (size_t)E * 2 * F * H, 0.2f), *dn = rnd(&r, (size_t)E * H * F, 0.2f);
        float *y0 = rnd(&r, (size_t)T * H, 1.0f);
        int *idx = malloc(sizeof(int) * T * K);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < K; j++) idx[t * K + j] = (t * 7 + j * 3) % cases[ci].E_all;
        int bf = cases[ci].wdt == TW_BF16;
        uint16_t *gub = to_bf16(gu, (size_t)E * 2 * F * H), *dnb = to_bf16(dn, (size_t)E * H * F);
        void *dgu = bf ? dev_from(be, gub, 2 * (size_t)E * 2 * F * H)
                       : dev_from(be, gu, 4 * (size_t)E * 2 * F * H);
        void *ddn =
            bf ? dev_from(be, dnb, 2 * (size_t)E * H * F) : dev_from(be, dn, 4 * (size_t)E * H * F);
        void *dx = dev_from(be, x, 4 * (size_t)T * H), *dwt = dev_from(be, wt, 4 * (size_t)T * K);
        void *di = dev_from(be, idx, 4 * (size_t)T * K);
        void *dy = cases[ci].acc ? dev_from(be, y0, 4 * (size_t)T * H) : dev_nan(be, (size_t)T * H);
        size_t wb = tw_moe_ffn_work_bytes(T, K, H, F, E);
        void *work = dev_alloc(be, wb), *dcnt = dev_nan(be, (size_t)E);
        tw_moe_ffn_args a = {T,    H,
                             F,    K,
                             E,    cases[ci].e0,
                             di,   dwt,
                             dx,   dgu,
                             ddn,  cases[ci].wdt,
                             dy,   cases[ci].acc,
                             work, wb,
                             dcnt};
        cr_assert_eq(be->ops->moe_ffn(be, &a), TW_OK, "%s", tw_last_error());
        float *y = malloc(sizeof(float) * T * H);
        int *cnt = malloc(sizeof(int) * E);
        to_host(be, y, dy, 4 * (size_t)T * H);
        to_host(be, cnt, dcnt, 4 * (size_t)E);
        double *ref = malloc(sizeof(double) * T * H), *g = malloc(sizeof(double) * F);
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < H; i++) ref[t * H + i] = cases[ci].acc ? y0[t * H + i] : 0;
            for (int j = 0; j < K; j++) {
                int e = idx[t * K + j] - cases[ci].e0;
                if (e < 0 || e >= E) continue;
                for (int f = 0; f < F; f++) {
                    double ga = 0, ua = 0;
                    for (int i = 0; i < H; i++) {
                        size_t gi = ((size_t)e * 2 * F + f) * H + i, ui = gi + (size_t)F * H;
                        ga += (bf ? gk_bf(gu[gi]) : gu[gi]) * x[t * H + i];
                        ua += (bf ? gk_bf(gu[ui]) : gu[ui]) * x[t * H + i];
                    }
                    g[f] = ga / (1 + exp(-ga)) * ua;
                }
                for (int i = 0; i < H; i++) {
                    double s = 0;
                    for (int f = 0; f < F; f++) {
                        size_t di2 = ((size_t)e * H + i) * F + f;
                        s += (bf ? gk_bf(dn[di2]) : dn[di2]) * g[f];
                    }
                    ref[t * H + i] += wt[t * K + j] * s;
                }
            }
        }
        double err = tw_test_rel_err(y, ref, (size_t)T * H);
        cr_expect(err < 1e-5, "moe_ffn case %zu: rel err %g", ci, err);
        for (int e = 0; e < E; e++) {
            int n = 0;
            for (int s = 0; s < T * K; s++) n += idx[s] == cases[ci].e0 + e;
            cr_expect_eq(cnt[e], n, "case %zu expert %d count", ci, e);
        }
        free(x), free(wt), free(gu), free(dn), free(y0), free(idx), free(gub), free(dnb), free(y);
        free(cnt), free(ref), free(g);
        void *ps[] = {dgu, ddn, dx, dwt, di, dy, work, dcnt};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
    }
    be->ops->destroy(be);
}

Test(gpu_moe, latent_attention_matches_expanded_reference) {
    tw_backend *be = gpu_or_skip();
    enum { B = 3, S = 4, NH = 5, DN = 40, DR = 24, L = 136, DV = 36, MS = 37 };
    const int W = L + DR, start[B] = {0, 9, 31};
    tw_test_rng r;
    tw_test_rng_seed(&r, 44);
    for (int c = 0; c < 2; c++) {
        tw_dtype kvd = c ? TW_BF16 : TW_F32;
        float *rows = rnd(&r, (size_t)B * MS * W, 1.0f); /* every position's latent row */
        if (c)
            for (size_t i = 0; i < (size_t)B * MS * W; i++) rows[i] = (float)gk_bf(rows[i]);
        void *cache = dev_alloc(be, (size_t)B * MS * W * (c ? 2 : 4));
        /* store every position 0..MS-1 with mla_store (start 0, seq MS) */
        int zero[B] = {0, 0, 0};
        void *drows = dev_from(be, rows, 4 * (size_t)B * MS * W);
        tw_mla_store_args st = {B, MS, L, DR, MS, zero, drows, 0, cache, kvd};
        cr_assert_eq(be->ops->mla_store(be, &st), TW_OK, "%s", tw_last_error());
        float *q = rnd(&r, (size_t)B * S * NH * (DN + DR), 1.0f);
        float *w = rnd(&r, (size_t)NH * (DN + DV) * L, 0.2f);
        uint16_t *wb = to_bf16(w, (size_t)NH * (DN + DV) * L);
        void *dq = dev_from(be, q, 4 * (size_t)B * S * NH * (DN + DR));
        void *dw = dev_from(be, wb, 2 * (size_t)NH * (DN + DV) * L);
        void *dout = dev_nan(be, (size_t)B * S * NH * DV);
        tw_mla_attn_args a = {B,  S, NH, DN,      DR,    L,   DV,   MS,   start,
                              dq, 0, dw, TW_BF16, cache, kvd, dout, 0.17f};
        cr_assert_eq(be->ops->mla_attn(be, &a), TW_OK, "%s", tw_last_error());
        float *out = malloc(sizeof(float) * B * S * NH * DV);
        to_host(be, out, dout, 4 * (size_t)B * S * NH * DV);
        double *ref = malloc(sizeof(double) * B * S * NH * DV);
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++)
                for (int h = 0; h < NH; h++) {
                    int p = start[b] + s, tok = b * S + s;
                    const float *qn = q + (size_t)tok * NH * (DN + DR) + h * DN;
                    const float *qr = q + (size_t)tok * NH * (DN + DR) + NH * DN + h * DR;
                    double *sc = malloc(sizeof(double) * (p + 1)), mx = -INFINITY, den = 0;
                    for (int j = 0; j <= p; j++) {
                        const float *cj = rows + ((size_t)b * MS + j) * W;
                        double dot = 0;
                        for (int d = 0; d < DN; d++) {
                            double k = 0;
                            for (int l = 0; l < L; l++)
                                k += gk_bf(w[((size_t)h * (DN + DV) + d) * L + l]) * cj[l];
                            dot += qn[d] * k;
                        }
                        for (int i = 0; i < DR; i++) dot += (double)qr[i] * cj[L + i];
                        sc[j] = dot * 0.17f;
                        mx = fmax(mx, sc[j]);
                    }
                    for (int j = 0; j <= p; j++) den += (sc[j] = exp(sc[j] - mx));
                    for (int v = 0; v < DV; v++) {
                        double acc = 0;
                        for (int j = 0; j <= p; j++) {
                            const float *cj = rows + ((size_t)b * MS + j) * W;
                            double val = 0;
                            for (int l = 0; l < L; l++)
                                val += gk_bf(w[((size_t)h * (DN + DV) + DN + v) * L + l]) * cj[l];
                            acc += sc[j] / den * val;
                        }
                        ref[(size_t)tok * NH * DV + h * DV + v] = acc;
                    }
                    free(sc);
                }
        double err = tw_test_rel_err(out, ref, (size_t)B * S * NH * DV);
        cr_expect(err < 1e-5, "mla_attn kv %s: rel err %g", dtn(kvd), err);
        free(rows), free(q), free(w), free(wb), free(out), free(ref);
        void *ps[] = {cache, drows, dq, dw, dout};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) be->ops->free(be, ps[i]);
    }
    be->ops->destroy(be);
}

/* The ceilings slot (kernels/cuda/ceilings.cu): both figures measured, each below what the device
 * could do at most (its theoretical bandwidth with 10% slack; 2x the dense bf16 peak of any GPU
 * this build targets, 2.5 PFLOP/s, as a sanity bound) and above a floor no working GPU misses. */
Test(gpu_ceilings, copy_bandwidth_and_bf16_peak_are_measured) {
    tw_backend *be = gpu_or_skip();
    tw_ceilings c;
    cr_assert_eq(tw_backend_ceilings(be, &c), TW_OK, "%s", tw_last_error());
    tw_device_desc d;
    cr_assert_eq(tw_backend_describe(be, &d), TW_OK, "%s", tw_last_error());
    cr_assert_gt(c.read_bw_bytes_per_s, 50e9, "%s: %.3g B/s", c.read_method, c.read_bw_bytes_per_s);
    if (d.mem_bw_bytes_per_s > 0)
        cr_assert_lt(c.read_bw_bytes_per_s, 1.1 * d.mem_bw_bytes_per_s,
                     "copy %.3g B/s above the theoretical %.3g", c.read_bw_bytes_per_s,
                     d.mem_bw_bytes_per_s);
    cr_assert_gt(c.peak_flops, 10e12, "%s: %.3g FLOP/s", c.peak_method, c.peak_flops);
    cr_assert_lt(c.peak_flops, 2.5e15, "%.3g FLOP/s", c.peak_flops);
    cr_assert_eq(c.peak_dtype, TW_BF16);
    cr_assert(strstr(c.read_method, "device-to-device copy"), "%s", c.read_method);
    tw_backend_destroy(be);
}
