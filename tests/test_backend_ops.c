/* Every op of every registered backend, in the manner of ggml's test-backend-ops: for each row of
 * the registry that is built and usable here, each op on awkward shapes (odd sizes, padded
 * leading dimensions, accumulation, uneven lengths, windows, out-of-shard tokens, ties) for each
 * dtype of its stored operand, against a float64 reference computed here from the same
 * (bf16-rounded) inputs and, for backends other than the CPU, against the CPU backend's output.
 * Outputs are poisoned with NaN before each call; a result is checked for NaN and infinity first,
 * then for its normalised error ||out - ref|| / ||ref||. Tolerances: fp32 operands 1e-5 (2e-5
 * where exp/sin/cos of float arguments enter), bf16 operands 1e-2 (the backend may round
 * activations to bf16 too). An (op, dtype) the backend does not support is a SKIP, counted and
 * printed, never a pass; a backend that is not built or cannot be created here has every case
 * printed as SKIP with the reason. The run fails on any FAIL, or when the CPU passes nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_ref_model.h"
#include "tw_serve_paged_case.h"
#include "tw_test_util.h"
#include "tw_util.h"

#define TOL_F32     1e-5
#define TOL_F32_TRN 2e-5
#define TOL_BF16    1e-2

typedef enum { R_PASS, R_FAIL, R_SKIP } result;

typedef struct {
    tw_backend *be;  /* under test */
    tw_backend *cpu; /* the reference backend (NULL when be is the CPU) */
    tw_test_rng rng;
    char note[256]; /* the case's shape and error, printed with its verdict */
} ctx;

/* ---- memory: every buffer is backend memory, filled from and read back to the host ---------- */
static void *dev_put(tw_backend *be, const void *host, size_t bytes) {
    void *p = NULL;
    cr_assert_eq(be->ops->alloc(be, bytes ? bytes : 4, &p), TW_OK, "%s", tw_last_error());
    if (bytes) cr_assert_eq(be->ops->upload(be, p, host, bytes), TW_OK, "%s", tw_last_error());
    return p;
}

static void dev_get(tw_backend *be, void *host, const void *dev, size_t bytes) {
    cr_assert_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->download(be, host, dev, bytes), TW_OK, "%s", tw_last_error());
}

/* n values in [-scale, scale) as fp32 or bf16 (stored), and their exact values as double */
static void *stored(ctx *c, tw_dtype dt, size_t n, float scale, double *exact) {
    float *f = malloc(n * sizeof *f);
    tw_test_fill(&c->rng, f, n, scale);
    void *out = f;
    if (dt == TW_BF16) {
        uint16_t *h = malloc(n * sizeof *h);
        for (size_t i = 0; i < n; i++) h[i] = tw_test_to_bf16(f[i]);
        for (size_t i = 0; i < n; i++) f[i] = tw_test_from_bf16(h[i]);
        out = h;
    }
    if (exact)
        for (size_t i = 0; i < n; i++) exact[i] = f[i];
    if (out != f) free(f);
    return out;
}

static double tol_of(tw_dtype dt, int transcendental) {
    return dt == TW_BF16 ? TOL_BF16 : transcendental ? TOL_F32_TRN : TOL_F32;
}

/* The verdict on n outputs (NaN and infinity first, then the normalised error), and against the
 * CPU's outputs when there are some. */
static result judge(ctx *c, const float *out, const double *ref, const float *cpu_out, size_t n,
                    double tol) {
    size_t used = strlen(c->note);
    if (!tw_test_all_finite(out, n)) {
        snprintf(c->note + used, sizeof c->note - used, " non-finite output");
        return R_FAIL;
    }
    double e = tw_test_rel_err(out, ref, n);
    used += (size_t)snprintf(c->note + used, sizeof c->note - used, " err %.2e (tol %.0e)", e, tol);
    if (!(e <= tol)) return R_FAIL;
    if (cpu_out) {
        double ec = tw_test_rel_err_ff(out, cpu_out, n);
        snprintf(c->note + used, sizeof c->note - used, " vs cpu %.2e", ec);
        if (!(ec <= tol)) return R_FAIL;
    }
    return R_PASS;
}

/* A case's op on backend be with the case's inputs: returns its output, read back to the host as
 * float (bf16 and int outputs converted), *n values. */
typedef float *(*op_fn)(tw_backend *be, void *state, size_t *n);

static float *dev_get_f32(tw_backend *be, void *dev, size_t n) {
    float *h = malloc(n * sizeof *h);
    dev_get(be, h, dev, n * sizeof *h);
    be->ops->free(be, dev);
    return h;
}

static float *dev_get_as_f32(tw_backend *be, void *dev, tw_dtype dt, size_t n) {
    if (dt == TW_F32) return dev_get_f32(be, dev, n);
    uint16_t *h = malloc(n * sizeof *h);
    dev_get(be, h, dev, n * sizeof *h);
    be->ops->free(be, dev);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = tw_test_from_bf16(h[i]);
    free(h);
    return f;
}

/* Runs one case on the backend under test and, when another backend is under test, on the CPU;
 * judges against ref (n values). */
static result run_case(ctx *c, op_fn fn, void *st, const double *ref, size_t n, double tol) {
    size_t got = 0, got_cpu = 0;
    float *out = fn(c->be, st, &got);
    float *cpu_out = c->cpu ? fn(c->cpu, st, &got_cpu) : NULL;
    cr_assert_eq(got, n, "output size");
    if (cpu_out) cr_assert_eq(got_cpu, n, "cpu output size");
    result r = judge(c, out, ref, cpu_out, n, tol);
    free(out);
    free(cpu_out);
    return r;
}

static size_t dsz(tw_dtype dt) {
    return dt == TW_BF16 ? 2 : 4;
}

static float *nan_array(size_t n) {
    float *f = malloc(n * sizeof *f);
    tw_test_poison(f, n);
    return f;
}

/* ---- gemm --------------------------------------------------------------------------------------
 */
typedef struct {
    int m, n, k, ldx, ldy, acc;
    tw_dtype dt;
    float *x, *y0;
    void *w;
} gemm_st;

static float *run_gemm(tw_backend *be, void *sp, size_t *n) {
    gemm_st *s = sp;
    tw_gemm_args a = {.m = s->m,
                      .n = s->n,
                      .k = s->k,
                      .x = dev_put(be, s->x, (size_t)s->m * s->ldx * 4),
                      .w = dev_put(be, s->w, (size_t)s->n * s->k * dsz(s->dt)),
                      .w_dtype = s->dt,
                      .y = dev_put(be, s->y0, (size_t)s->m * s->ldy * 4),
                      .ldx = s->ldx,
                      .ldy = s->ldy,
                      .accumulate = s->acc};
    cr_assert_eq(be->ops->gemm(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.x);
    be->ops->free(be, (void *)a.w);
    *n = (size_t)s->m * s->ldy;
    return dev_get_f32(be, a.y, *n);
}

static result case_gemm(ctx *c, tw_dtype dt, int shape) {
    /* an odd block with padded rows and accumulation; a decode row (m = 1, the GEMV path) */
    gemm_st s = shape == 0 ? (gemm_st){.m = 7, .n = 37, .k = 129, .ldx = 133, .ldy = 41, .acc = 1}
                           : (gemm_st){.m = 1, .n = 65, .k = 200, .ldx = 200, .ldy = 65};
    s.dt = dt;
    snprintf(c->note, sizeof c->note, "m=%d n=%d k=%d ldx=%d ldy=%d acc=%d", s.m, s.n, s.k, s.ldx,
             s.ldy, s.acc);
    size_t ny = (size_t)s.m * s.ldy;
    s.x = malloc((size_t)s.m * s.ldx * 4);
    tw_test_fill(&c->rng, s.x, (size_t)s.m * s.ldx, 1.0f);
    s.y0 = malloc(ny * 4);
    tw_test_fill(&c->rng, s.y0, ny, 1.0f);
    if (!s.acc) tw_test_poison(s.y0, ny); /* written, not read: unwritten values show */
    double *w = malloc((size_t)s.n * s.k * sizeof *w);
    s.w = stored(c, dt, (size_t)s.n * s.k, 0.5f, w);
    double *ref = malloc(ny * sizeof *ref);
    for (int i = 0; i < s.m; i++)
        for (int j = 0; j < s.ldy; j++) {
            double acc = s.acc || j >= s.n ? s.y0[(size_t)i * s.ldy + j] : 0.0;
            for (int p = 0; j < s.n && p < s.k; p++)
                acc += (double)s.x[(size_t)i * s.ldx + p] * w[(size_t)j * s.k + p];
            ref[(size_t)i * s.ldy + j] = acc;
        }
    result r = run_case(c, run_gemm, &s, ref, ny, tol_of(dt, 0));
    free(s.x), free(s.y0), free(s.w), free(w), free(ref);
    return r;
}

/* ---- attention and the KV cache ------------------------------------------------------------ */
typedef struct {
    int batch, seq, nh, nkv, hd, ms, window;
    tw_dtype dt;
    int start[3], lens[3];
    float *q;
    void *kc, *vc;   /* stored caches [batch, nkv, ms, hd] */
    double *kd, *vd; /* their exact values */
} attn_st;

static size_t cache_n(const attn_st *s) {
    return (size_t)s->batch * s->nkv * s->ms * s->hd;
}

static void attn_inputs(ctx *c, attn_st *s, int decode) {
    size_t nq = (size_t)s->batch * (decode ? 1 : s->seq) * s->nh * s->hd, nc = cache_n(s);
    s->q = malloc(nq * 4);
    tw_test_fill(&c->rng, s->q, nq, 1.0f);
    s->kd = malloc(nc * sizeof *s->kd);
    s->vd = malloc(nc * sizeof *s->vd);
    s->kc = stored(c, s->dt, nc, 1.0f, s->kd);
    s->vc = stored(c, s->dt, nc, 1.0f, s->vd);
}

static void attn_free(attn_st *s) {
    free(s->q), free(s->kc), free(s->vc), free(s->kd), free(s->vd);
}

/* softmax(scale q . k_t) v over cache positions lo..hi of (b, kv head g), into out[hd] */
static void ref_attend(const attn_st *s, const float *q, int b, int g, int lo, int hi, double scale,
                       double *out) {
    size_t base = ((size_t)b * s->nkv + g) * s->ms * s->hd;
    double mx = -INFINITY, sum = 0;
    double *sc = malloc((size_t)(hi - lo + 1) * sizeof *sc);
    for (int t = lo; t <= hi; t++) {
        double d = 0;
        for (int i = 0; i < s->hd; i++) d += (double)q[i] * s->kd[base + (size_t)t * s->hd + i];
        sc[t - lo] = d * scale;
        if (sc[t - lo] > mx) mx = sc[t - lo];
    }
    for (int i = 0; i < s->hd; i++) out[i] = 0;
    for (int t = lo; t <= hi; t++) {
        double p = exp(sc[t - lo] - mx);
        sum += p;
        for (int i = 0; i < s->hd; i++) out[i] += p * s->vd[base + (size_t)t * s->hd + i];
    }
    for (int i = 0; i < s->hd; i++) out[i] /= sum;
    free(sc);
}

static float *run_prefill(tw_backend *be, void *sp, size_t *n) {
    attn_st *s = sp;
    size_t nq = (size_t)s->batch * s->seq * s->nh * s->hd, nc = cache_n(s) * dsz(s->dt);
    float *poison = nan_array(nq);
    tw_attn_prefill_args a = {.batch = s->batch,
                              .seq = s->seq,
                              .n_heads = s->nh,
                              .n_kv_heads = s->nkv,
                              .head_dim = s->hd,
                              .max_seq = s->ms,
                              .start_pos = s->start,
                              .q = dev_put(be, s->q, nq * 4),
                              .k_cache = dev_put(be, s->kc, nc),
                              .v_cache = dev_put(be, s->vc, nc),
                              .kv_dtype = s->dt,
                              .out = dev_put(be, poison, nq * 4),
                              .scale = 1.0f / sqrtf((float)s->hd),
                              .window = s->window};
    cr_assert_eq(be->ops->attn_prefill(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.q), be->ops->free(be, (void *)a.k_cache);
    be->ops->free(be, (void *)a.v_cache);
    free(poison);
    *n = nq;
    return dev_get_f32(be, a.out, nq);
}

static result case_attn_prefill(ctx *c, tw_dtype dt, int shape) {
    /* grouped heads, head_dim 40, uneven start positions; then a sliding window of 4 */
    attn_st s = {.batch = 2,
                 .seq = 5,
                 .nh = 6,
                 .nkv = 2,
                 .hd = 40,
                 .ms = 23,
                 .window = shape ? 4 : 0,
                 .dt = dt,
                 .start = {3, 9}};
    snprintf(c->note, sizeof c->note, "batch=2 seq=5 heads=6/2 hd=40 start=3,9 window=%d",
             s.window);
    attn_inputs(c, &s, 0);
    size_t nq = (size_t)s.batch * s.seq * s.nh * s.hd;
    double *ref = malloc(nq * sizeof *ref);
    for (int b = 0; b < s.batch; b++)
        for (int t = 0; t < s.seq; t++)
            for (int h = 0; h < s.nh; h++) {
                int p = s.start[b] + t,
                    lo = s.window > 0 && p - s.window + 1 > 0 ? p - s.window + 1 : 0;
                size_t row = (((size_t)b * s.seq + t) * s.nh + h) * s.hd;
                ref_attend(&s, s.q + row, b, h / (s.nh / s.nkv), lo, p,
                           1.0 / sqrt((double)(float)s.hd), ref + row);
            }
    result r = run_case(c, run_prefill, &s, ref, nq, tol_of(dt, 1));
    attn_free(&s);
    free(ref);
    return r;
}

static float *run_decode(tw_backend *be, void *sp, size_t *n) {
    attn_st *s = sp;
    size_t nq = (size_t)s->batch * s->nh * s->hd, nc = cache_n(s) * dsz(s->dt);
    float *poison = nan_array(nq);
    tw_attn_decode_args a = {.batch = s->batch,
                             .n_heads = s->nh,
                             .n_kv_heads = s->nkv,
                             .head_dim = s->hd,
                             .max_seq = s->ms,
                             .lens = s->lens,
                             .q = dev_put(be, s->q, nq * 4),
                             .k_cache = dev_put(be, s->kc, nc),
                             .v_cache = dev_put(be, s->vc, nc),
                             .kv_dtype = s->dt,
                             .out = dev_put(be, poison, nq * 4),
                             .scale = 1.0f / sqrtf((float)s->hd),
                             .window = s->window};
    cr_assert_eq(be->ops->attn_decode(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.q), be->ops->free(be, (void *)a.k_cache);
    be->ops->free(be, (void *)a.v_cache);
    free(poison);
    *n = nq;
    return dev_get_f32(be, a.out, nq);
}

static result case_attn_decode(ctx *c, tw_dtype dt, int shape) {
    /* lengths 1 (the new token alone), 57 (several split-KV chunks) and 9; then window 5 */
    attn_st s = {.batch = 3,
                 .nh = 4,
                 .nkv = 4,
                 .hd = 24,
                 .ms = 61,
                 .window = shape ? 5 : 0,
                 .dt = dt,
                 .lens = {1, 57, 9}};
    snprintf(c->note, sizeof c->note, "batch=3 heads=4/4 hd=24 lens=1,57,9 window=%d", s.window);
    attn_inputs(c, &s, 1);
    size_t nq = (size_t)s.batch * s.nh * s.hd;
    double *ref = malloc(nq * sizeof *ref);
    for (int b = 0; b < s.batch; b++)
        for (int h = 0; h < s.nh; h++) {
            int hi = s.lens[b] - 1,
                lo = s.window > 0 && s.lens[b] - s.window > 0 ? s.lens[b] - s.window : 0;
            size_t row = ((size_t)b * s.nh + h) * s.hd;
            ref_attend(&s, s.q + row, b, h / (s.nh / s.nkv), lo, hi,
                       1.0 / sqrt((double)(float)s.hd), ref + row);
        }
    result r = run_case(c, run_decode, &s, ref, nq, tol_of(dt, 1));
    attn_free(&s);
    free(ref);
    return r;
}

typedef struct {
    attn_st a;
    int ldkv;
    float *k, *v; /* [batch * seq, ldkv] */
} store_st;

static float *run_kv_store(tw_backend *be, void *sp, size_t *n) {
    store_st *s = sp;
    size_t nkv = (size_t)s->a.batch * s->a.seq * s->ldkv, nc = cache_n(&s->a);
    tw_kv_store_args a = {.batch = s->a.batch,
                          .seq = s->a.seq,
                          .n_kv_heads = s->a.nkv,
                          .head_dim = s->a.hd,
                          .max_seq = s->a.ms,
                          .start_pos = s->a.start,
                          .k = dev_put(be, s->k, nkv * 4),
                          .v = dev_put(be, s->v, nkv * 4),
                          .ldkv = s->ldkv,
                          .k_cache = dev_put(be, s->a.kc, nc * dsz(s->a.dt)),
                          .v_cache = dev_put(be, s->a.vc, nc * dsz(s->a.dt)),
                          .kv_dtype = s->a.dt};
    cr_assert_eq(be->ops->kv_store(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.k), be->ops->free(be, (void *)a.v);
    float *kc = dev_get_as_f32(be, a.k_cache, s->a.dt, nc);
    float *vc = dev_get_as_f32(be, a.v_cache, s->a.dt, nc);
    float *out = malloc(2 * nc * sizeof *out);
    memcpy(out, kc, nc * 4), memcpy(out + nc, vc, nc * 4);
    free(kc), free(vc);
    *n = 2 * nc;
    return out;
}

static double round_as(tw_dtype dt, float f) {
    return dt == TW_BF16 ? tw_test_from_bf16(tw_test_to_bf16(f)) : f;
}

static result case_kv_store(ctx *c, tw_dtype dt, int shape) {
    (void)shape;
    store_st s = {
        .a = {.batch = 2, .seq = 3, .nkv = 3, .hd = 20, .ms = 11, .dt = dt, .start = {0, 7}},
        .ldkv = 3 * 20 + 5};
    snprintf(c->note, sizeof c->note, "batch=2 seq=3 kv_heads=3 hd=20 ldkv=65 start=0,7");
    attn_inputs(c, &s.a, 0);
    size_t nkv = (size_t)s.a.batch * s.a.seq * s.ldkv, nc = cache_n(&s.a);
    s.k = malloc(nkv * 4), s.v = malloc(nkv * 4);
    tw_test_fill(&c->rng, s.k, nkv, 1.0f), tw_test_fill(&c->rng, s.v, nkv, 1.0f);
    double *ref = malloc(2 * nc * sizeof *ref);
    memcpy(ref, s.a.kd, nc * sizeof *ref), memcpy(ref + nc, s.a.vd, nc * sizeof *ref);
    for (int b = 0; b < s.a.batch; b++)
        for (int t = 0; t < s.a.seq; t++)
            for (int g = 0; g < s.a.nkv; g++)
                for (int i = 0; i < s.a.hd; i++) {
                    size_t src = ((size_t)b * s.a.seq + t) * s.ldkv + (size_t)g * s.a.hd + i;
                    size_t dst =
                        (((size_t)b * s.a.nkv + g) * s.a.ms + s.a.start[b] + t) * s.a.hd + i;
                    ref[dst] = round_as(dt, s.k[src]);
                    ref[nc + dst] = round_as(dt, s.v[src]);
                }
    result r = run_case(c, run_kv_store, &s, ref, 2 * nc, dt == TW_BF16 ? 1e-6 : 1e-7);
    attn_free(&s.a);
    free(s.k), free(s.v), free(ref);
    return r;
}

/* ---- row and element-wise ops: one state for all (rows, a width, a padded stride) ----------- */
typedef struct {
    tw_op op;
    int rows, n, ld, heads;
    tw_dtype dt;
    float *x, *x2; /* inputs (x2: up for swiglu, y for add) */
    void *w;       /* stored operand (norm weight, bias, table) */
    int *ints;     /* positions, tokens */
    int row0, trows;
} row_st;

static float *run_rowop(tw_backend *be, void *sp, size_t *n) {
    row_st *s = sp;
    size_t nx = (size_t)s->rows * s->ld;
    float *x = dev_put(be, s->x, nx * 4), *out = NULL;
    void *w = NULL;
    tw_status st = TW_OK;
    size_t nout = nx;
    switch (s->op) {
    case TW_OP_RMSNORM: {
        w = dev_put(be, s->w, (size_t)s->n * dsz(s->dt));
        float *poison = nan_array(nx);
        out = dev_put(be, poison, nx * 4);
        free(poison);
        st = be->ops->rmsnorm(be, s->rows, s->n, x, w, s->dt, 1e-5f, out);
        break;
    }
    case TW_OP_HEAD_RMSNORM:
        w = dev_put(be, s->w, (size_t)s->n * dsz(s->dt));
        st = be->ops->head_rmsnorm(be, s->rows, s->heads, s->n, x, s->ld, w, s->dt, 1e-6f);
        out = x, x = NULL;
        break;
    case TW_OP_BIAS_ADD:
        w = dev_put(be, s->w, (size_t)s->n * dsz(s->dt));
        st = be->ops->bias_add(be, s->rows, s->n, x, s->ld, w, s->dt);
        out = x, x = NULL;
        break;
    case TW_OP_ROPE: {
        tw_rope_params rp = {.theta = 10000.0f, .type = TW_ROPE_DEFAULT, .factor = 1.0f};
        st = be->ops->rope(be, s->rows, s->heads, s->n, x, s->ld, s->ints, &rp);
        out = x, x = NULL;
        break;
    }
    case TW_OP_SWIGLU: {
        nout = (size_t)s->rows * s->n;
        float *poison = nan_array(nout);
        out = dev_put(be, poison, nout * 4);
        free(poison);
        /* gate columns 0..n-1 and up columns ld/2.. of each row of x */
        st = be->ops->swiglu(be, s->rows, s->n, x, x + s->ld / 2, s->ld, out);
        break;
    }
    case TW_OP_ADD:
        out = dev_put(be, s->x2, nx * 4);
        st = be->ops->add(be, nx, x, out);
        break;
    case TW_OP_EMBED: {
        /* x is unused; the table is w [trows, n] */
        w = dev_put(be, s->w, (size_t)s->trows * s->n * dsz(s->dt));
        nout = (size_t)s->rows * s->n;
        float *poison = nan_array(nout);
        out = dev_put(be, poison, nout * 4);
        free(poison);
        st = be->ops->embed(be, s->rows, s->ints, w, s->dt, s->row0, s->trows, s->n, out);
        break;
    }
    case TW_OP_ARGMAX: {
        int *idx = malloc((size_t)s->rows * sizeof *idx);
        float *val = malloc((size_t)s->rows * sizeof *val);
        st = be->ops->argmax(be, s->rows, s->n, x, idx, val);
        cr_assert_eq(st, TW_OK, "%s", tw_last_error());
        cr_assert_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
        float *res = malloc(2 * (size_t)s->rows * sizeof *res);
        for (int r = 0; r < s->rows; r++) res[r] = (float)idx[r], res[s->rows + r] = val[r];
        free(idx), free(val);
        be->ops->free(be, x);
        *n = 2 * (size_t)s->rows;
        return res;
    }
    default:
        cr_assert_fail("not a row op: %s", tw_op_name(s->op));
    }
    cr_assert_eq(st, TW_OK, "%s: %s", tw_op_name(s->op), tw_last_error());
    if (x) be->ops->free(be, x);
    if (w) be->ops->free(be, w);
    *n = nout;
    return dev_get_f32(be, out, nout);
}

static void ref_rms(const float *x, const double *w, int n, double eps, double *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

static result case_rowop(ctx *c, tw_op op, tw_dtype dt) {
    row_st s = {.op = op, .dt = dt};
    switch (op) {
    case TW_OP_RMSNORM:
        s.rows = 5, s.n = 67, s.ld = 67;
        break;
    case TW_OP_HEAD_RMSNORM:
        s.rows = 4, s.heads = 3, s.n = 20, s.ld = 70;
        break;
    case TW_OP_BIAS_ADD:
        s.rows = 5, s.n = 33, s.ld = 40;
        break;
    case TW_OP_ROPE:
        s.rows = 7, s.heads = 3, s.n = 34, s.ld = 108;
        break;
    case TW_OP_SWIGLU:
        s.rows = 5, s.n = 45, s.ld = 100;
        break;
    case TW_OP_ADD:
        s.rows = 1, s.n = 1001, s.ld = 1001;
        break;
    case TW_OP_EMBED:
        s.rows = 6, s.n = 19, s.ld = 1, s.row0 = 3, s.trows = 10;
        break;
    case TW_OP_ARGMAX:
        s.rows = 4, s.n = 333, s.ld = 333;
        break;
    default:
        cr_assert_fail("not a row op");
    }
    snprintf(c->note, sizeof c->note, "rows=%d n=%d ld=%d%s", s.rows, s.n, s.ld,
             op == TW_OP_EMBED ? " tokens 0,4,12,3,7,13 of shard [3, 13)" : "");
    size_t nx = (size_t)s.rows * s.ld;
    s.x = malloc(nx * 4), s.x2 = malloc(nx * 4);
    tw_test_fill(&c->rng, s.x, nx, 2.0f), tw_test_fill(&c->rng, s.x2, nx, 2.0f);
    int wn = op == TW_OP_EMBED ? s.trows * s.n : s.n;
    double *w = malloc((size_t)wn * sizeof *w);
    s.w = stored(c, dt, (size_t)wn, 1.5f, w);
    int positions[7] = {0, 1, 5, 17, 33, 50, 2}, tokens[6] = {0, 4, 12, 3, 7, 13};
    s.ints = op == TW_OP_ROPE ? positions : tokens;
    if (op == TW_OP_ARGMAX) { /* a tie in row 2: the first index wins */
        s.x[2 * s.ld + 5] = 7.0f, s.x[2 * s.ld + 200] = 7.0f;
    }
    size_t nref = op == TW_OP_SWIGLU || op == TW_OP_EMBED ? (size_t)s.rows * s.n
                  : op == TW_OP_ARGMAX                    ? 2 * (size_t)s.rows
                                                          : nx;
    double *ref = malloc(nref * sizeof *ref);
    for (size_t i = 0; i < nx && i < nref; i++) ref[i] = s.x[i]; /* in place: padding kept */
    int transcendental = 0;
    for (int r = 0; r < s.rows; r++) {
        const float *xr = s.x + (size_t)r * s.ld;
        double *o = ref + (size_t)r * s.ld;
        switch (op) {
        case TW_OP_RMSNORM:
            ref_rms(xr, w, s.n, 1e-5, o);
            break;
        case TW_OP_HEAD_RMSNORM:
            for (int h = 0; h < s.heads; h++) ref_rms(xr + h * s.n, w, s.n, 1e-6, o + h * s.n);
            break;
        case TW_OP_BIAS_ADD:
            for (int j = 0; j < s.n; j++) o[j] = (double)xr[j] + w[j];
            break;
        case TW_OP_ROPE: {
            tw_rope_params rp = {.theta = 10000.0f, .type = TW_ROPE_DEFAULT, .factor = 1.0f};
            for (int h = 0; h < s.heads; h++) tw_ref_rope(o + h * s.n, s.n, positions[r], &rp);
            transcendental = 1;
            break;
        }
        case TW_OP_SWIGLU:
            for (int j = 0; j < s.n; j++)
                ref[(size_t)r * s.n + j] = tw_ref_silu(xr[j]) * (double)xr[s.ld / 2 + j];
            transcendental = 1;
            break;
        case TW_OP_ADD:
            for (int j = 0; j < s.n; j++) o[j] = (double)xr[j] + s.x2[(size_t)r * s.ld + j];
            break;
        case TW_OP_EMBED: {
            int t = tokens[r] - s.row0;
            for (int j = 0; j < s.n; j++)
                ref[(size_t)r * s.n + j] = t >= 0 && t < s.trows ? w[(size_t)t * s.n + j] : 0.0;
            break;
        }
        case TW_OP_ARGMAX: {
            int best = 0;
            for (int j = 1; j < s.n; j++)
                if (xr[j] > xr[best]) best = j;
            ref[r] = best, ref[s.rows + r] = xr[best];
            break;
        }
        default:
            break;
        }
    }
    result res = run_case(c, run_rowop, &s, ref, nref, tol_of(dt, transcendental));
    free(s.x), free(s.x2), free(s.w), free(w), free(ref);
    return res;
}

/* ---- mixture of experts ---------------------------------------------------------------------- */
typedef struct {
    int tokens, ne, k, ngroup, tgroup, sigmoid;
    tw_dtype dt;
    float *logits, *lbias;
    void *cbias;
    float scale;
} route_st;

static float *run_route(tw_backend *be, void *sp, size_t *n) {
    route_st *s = sp;
    size_t nl = (size_t)s->tokens * s->ne, nk = (size_t)s->tokens * s->k;
    int *idx = NULL;
    float *wt = NULL;
    cr_assert_eq(be->ops->alloc(be, nk * sizeof(int), (void **)&idx), TW_OK);
    float *poison = nan_array(nk);
    wt = dev_put(be, poison, nk * 4);
    free(poison);
    tw_moe_route_args a = {.tokens = s->tokens,
                           .n_experts = s->ne,
                           .top_k = s->k,
                           .scoring = s->sigmoid ? TW_ROUTE_SIGMOID : TW_ROUTE_SOFTMAX,
                           .n_group = s->ngroup,
                           .topk_group = s->tgroup,
                           .group_top2 = 0,
                           .norm_topk = 1,
                           .scale = s->scale,
                           .logits = dev_put(be, s->logits, nl * 4),
                           .logit_bias = dev_put(be, s->lbias, (size_t)s->ne * 4),
                           .choice_bias =
                               s->cbias ? dev_put(be, s->cbias, s->ne * dsz(s->dt)) : NULL,
                           .choice_dtype = s->dt,
                           .idx = idx,
                           .weight = wt};
    cr_assert_eq(be->ops->moe_route(be, &a), TW_OK, "%s", tw_last_error());
    int *hidx = malloc(nk * sizeof *hidx);
    dev_get(be, hidx, idx, nk * sizeof *hidx);
    float *hw = dev_get_f32(be, wt, nk);
    be->ops->free(be, idx), be->ops->free(be, (void *)a.logits);
    be->ops->free(be, (void *)a.logit_bias), be->ops->free(be, (void *)a.choice_bias);
    float *out = malloc(2 * nk * sizeof *out);
    for (size_t i = 0; i < nk; i++) out[i] = (float)hidx[i], out[nk + i] = hw[i];
    free(hidx), free(hw);
    *n = 2 * nk;
    return out;
}

static result case_moe_route(ctx *c, tw_dtype dt, int shape) {
    /* sigmoid scores with a choice bias (DeepSeek-V3's rule), 4 groups of 3 of which 2 are
     * kept; then softmax without groups */
    route_st s = {.tokens = 5,
                  .ne = 12,
                  .k = 3,
                  .ngroup = shape ? 1 : 4,
                  .tgroup = shape ? 1 : 2,
                  .sigmoid = !shape,
                  .dt = dt,
                  .scale = shape ? 1.0f : 2.5f};
    snprintf(c->note, sizeof c->note, "tokens=5 experts=12 top_k=3 %s groups=%d/%d",
             s.sigmoid ? "sigmoid+bias" : "softmax", s.tgroup, s.ngroup);
    size_t nl = (size_t)s.tokens * s.ne, nk = (size_t)s.tokens * s.k;
    s.logits = malloc(nl * 4), s.lbias = malloc((size_t)s.ne * 4);
    tw_test_fill(&c->rng, s.logits, nl, 3.0f), tw_test_fill(&c->rng, s.lbias, s.ne, 0.5f);
    double *cb = malloc((size_t)s.ne * sizeof *cb);
    s.cbias = s.sigmoid ? stored(c, dt, (size_t)s.ne, 0.3f, cb) : NULL;
    double *ref = malloc(2 * nk * sizeof *ref);
    int per = s.ne / s.ngroup;
    for (int t = 0; t < s.tokens; t++) {
        double sc[12], ch[12], mx = -INFINITY, sum = 0;
        int allowed[12];
        for (int e = 0; e < s.ne; e++) {
            double l = (double)s.logits[(size_t)t * s.ne + e] + s.lbias[e];
            sc[e] = s.sigmoid ? 1.0 / (1.0 + exp(-l)) : l;
            if (sc[e] > mx) mx = sc[e];
        }
        if (!s.sigmoid) {
            for (int e = 0; e < s.ne; e++) sum += (sc[e] = exp(sc[e] - mx));
            for (int e = 0; e < s.ne; e++) sc[e] /= sum;
        }
        for (int e = 0; e < s.ne; e++) ch[e] = sc[e] + (s.sigmoid ? cb[e] : 0), allowed[e] = 1;
        if (s.ngroup > 1) { /* keep the tgroup groups of best (single best) choice value */
            double gs[12];
            int keep[12] = {0};
            for (int g = 0; g < s.ngroup; g++) {
                gs[g] = -INFINITY;
                for (int e = g * per; e < (g + 1) * per; e++) gs[g] = ch[e] > gs[g] ? ch[e] : gs[g];
            }
            for (int kept = 0; kept < s.tgroup; kept++) {
                int b = -1;
                for (int g = 0; g < s.ngroup; g++)
                    if (!keep[g] && (b < 0 || gs[g] > gs[b])) b = g;
                keep[b] = 1;
            }
            for (int e = 0; e < s.ne; e++) allowed[e] = keep[e / per];
        }
        double wsum = 0;
        int chosen[3];
        for (int j = 0; j < s.k; j++) {
            int b = -1;
            for (int e = 0; e < s.ne; e++)
                if (allowed[e] && (b < 0 || ch[e] > ch[b])) b = e;
            chosen[j] = b, allowed[b] = 0, wsum += sc[b];
        }
        for (int j = 0; j < s.k; j++) {
            ref[(size_t)t * s.k + j] = chosen[j];
            ref[nk + (size_t)t * s.k + j] =
                sc[chosen[j]] / (wsum + (s.sigmoid ? 1e-20 : 0)) * s.scale;
        }
    }
    result r = run_case(c, run_route, &s, ref, 2 * nk, tol_of(TW_F32, 1));
    free(s.logits), free(s.lbias), free(s.cbias), free(cb), free(ref);
    return r;
}

typedef struct {
    int tokens, hidden, ffn, k, ne, e0;
    tw_dtype dt;
    int *idx;
    float *weight, *x, *y0;
    void *gu, *down;
} ffn_st;

static float *run_moe_ffn(tw_backend *be, void *sp, size_t *n) {
    ffn_st *s = sp;
    size_t nk = (size_t)s->tokens * s->k, ny = (size_t)s->tokens * s->hidden;
    size_t wb = (size_t)s->ne * 2 * s->ffn * s->hidden * dsz(s->dt);
    size_t work = tw_moe_ffn_work_bytes(s->tokens, s->k, s->hidden, s->ffn, s->ne);
    int *counts0 = calloc((size_t)s->ne, sizeof *counts0);
    tw_moe_ffn_args a = {.tokens = s->tokens,
                         .hidden = s->hidden,
                         .ffn = s->ffn,
                         .top_k = s->k,
                         .n_experts = s->ne,
                         .expert0 = s->e0,
                         .idx = dev_put(be, s->idx, nk * sizeof(int)),
                         .weight = dev_put(be, s->weight, nk * 4),
                         .x = dev_put(be, s->x, ny * 4),
                         .w_gate_up = dev_put(be, s->gu, wb),
                         .w_down = dev_put(be, s->down, wb / 2),
                         .w_dtype = s->dt,
                         .y = dev_put(be, s->y0, ny * 4),
                         .accumulate = 1,
                         .work_bytes = work,
                         .counts = dev_put(be, counts0, (size_t)s->ne * sizeof(int))};
    cr_assert_eq(be->ops->alloc(be, work, &a.work), TW_OK);
    cr_assert_eq(be->ops->moe_ffn(be, &a), TW_OK, "%s", tw_last_error());
    int *cnt = malloc((size_t)s->ne * sizeof *cnt);
    dev_get(be, cnt, a.counts, (size_t)s->ne * sizeof *cnt);
    float *y = dev_get_f32(be, a.y, ny);
    void *bufs[] = {(void *)a.idx,    (void *)a.weight, (void *)a.x, (void *)a.w_gate_up,
                    (void *)a.w_down, a.work,           a.counts};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
    float *out = malloc((ny + s->ne) * sizeof *out);
    memcpy(out, y, ny * 4);
    for (int e = 0; e < s->ne; e++) out[ny + e] = (float)cnt[e];
    free(y), free(cnt), free(counts0);
    *n = ny + s->ne;
    return out;
}

static result case_moe_ffn(ctx *c, tw_dtype dt, int shape) {
    (void)shape;
    /* experts 1..3 of 0..4 held here: slots routed elsewhere contribute nothing */
    ffn_st s = {.tokens = 5, .hidden = 24, .ffn = 10, .k = 2, .ne = 3, .e0 = 1, .dt = dt};
    snprintf(c->note, sizeof c->note, "tokens=5 hidden=24 ffn=10 top_k=2 experts 1..3 of 5 acc");
    size_t nk = (size_t)s.tokens * s.k, ny = (size_t)s.tokens * s.hidden;
    int idx[10] = {1, 3, 0, 2, 4, 1, 2, 3, 0, 4};
    s.idx = idx;
    s.weight = malloc(nk * 4), s.x = malloc(ny * 4), s.y0 = malloc(ny * 4);
    for (size_t i = 0; i < nk; i++)
        s.weight[i] = 0.25f + 0.5f * (float)fabs(tw_test_uniform(&c->rng));
    tw_test_fill(&c->rng, s.x, ny, 1.0f), tw_test_fill(&c->rng, s.y0, ny, 1.0f);
    size_t ngu = (size_t)s.ne * 2 * s.ffn * s.hidden;
    double *gu = malloc(ngu * sizeof *gu), *dn = malloc(ngu / 2 * sizeof *dn);
    s.gu = stored(c, dt, ngu, 0.4f, gu), s.down = stored(c, dt, ngu / 2, 0.4f, dn);
    double *ref = malloc((ny + s.ne) * sizeof *ref);
    for (int e = 0; e < s.ne; e++) ref[ny + e] = 0;
    for (int t = 0; t < s.tokens; t++) {
        double *y = ref + (size_t)t * s.hidden;
        for (int i = 0; i < s.hidden; i++) y[i] = s.y0[(size_t)t * s.hidden + i];
        for (int j = 0; j < s.k; j++) {
            int le = idx[t * s.k + j] - s.e0;
            if (le < 0 || le >= s.ne) continue;
            ref[ny + le] += 1;
            const double *G = gu + (size_t)le * 2 * s.ffn * s.hidden,
                         *U = G + (size_t)s.ffn * s.hidden;
            const double *D = dn + (size_t)le * s.hidden * s.ffn;
            double h[10];
            for (int f = 0; f < s.ffn; f++) {
                double g = 0, u = 0;
                for (int i = 0; i < s.hidden; i++) {
                    g += G[(size_t)f * s.hidden + i] * s.x[(size_t)t * s.hidden + i];
                    u += U[(size_t)f * s.hidden + i] * s.x[(size_t)t * s.hidden + i];
                }
                h[f] = tw_ref_silu(g) * u;
            }
            for (int i = 0; i < s.hidden; i++) {
                double o = 0;
                for (int f = 0; f < s.ffn; f++) o += D[(size_t)i * s.ffn + f] * h[f];
                y[i] += s.weight[t * s.k + j] * o;
            }
        }
    }
    result r = run_case(c, run_moe_ffn, &s, ref, ny + s.ne, tol_of(dt, 1));
    free(s.weight), free(s.x), free(s.y0), free(s.gu), free(s.down), free(gu), free(dn), free(ref);
    return r;
}

/* ---- multi-head latent attention --------------------------------------------------------------
 */
typedef struct {
    int batch, seq, nh, nope, rope, lora, vd, ms, ldq, ldkv;
    tw_dtype dt;
    int start[2];
    float *q, *kv;
    void *wkvb, *cache;
    double *wd, *cd;
} mla_st;

static size_t mla_cache_n(const mla_st *s) {
    return (size_t)s->batch * s->ms * (s->lora + s->rope);
}

static float *run_mla_store(tw_backend *be, void *sp, size_t *n) {
    mla_st *s = sp;
    size_t nc = mla_cache_n(s), nkv = (size_t)s->batch * s->seq * s->ldkv;
    tw_mla_store_args a = {.batch = s->batch,
                           .seq = s->seq,
                           .lora_rank = s->lora,
                           .rope_dim = s->rope,
                           .max_seq = s->ms,
                           .start_pos = s->start,
                           .kv = dev_put(be, s->kv, nkv * 4),
                           .ldkv = s->ldkv,
                           .cache = dev_put(be, s->cache, nc * dsz(s->dt)),
                           .kv_dtype = s->dt};
    cr_assert_eq(be->ops->mla_store(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.kv);
    *n = nc;
    return dev_get_as_f32(be, a.cache, s->dt, nc);
}

static float *run_mla_attn(tw_backend *be, void *sp, size_t *n) {
    mla_st *s = sp;
    size_t nc = mla_cache_n(s), nq = (size_t)s->batch * s->seq * s->ldq;
    size_t nw = (size_t)s->nh * (s->nope + s->vd) * s->lora;
    size_t nout = (size_t)s->batch * s->seq * s->nh * s->vd;
    float *poison = nan_array(nout);
    tw_mla_attn_args a = {.batch = s->batch,
                          .seq = s->seq,
                          .n_heads = s->nh,
                          .nope_dim = s->nope,
                          .rope_dim = s->rope,
                          .lora_rank = s->lora,
                          .v_dim = s->vd,
                          .max_seq = s->ms,
                          .start_pos = s->start,
                          .q = dev_put(be, s->q, nq * 4),
                          .ldq = s->ldq,
                          .w_kv_b = dev_put(be, s->wkvb, nw * dsz(s->dt)),
                          .w_dtype = s->dt,
                          .cache = dev_put(be, s->cache, nc * dsz(s->dt)),
                          .kv_dtype = s->dt,
                          .out = dev_put(be, poison, nout * 4),
                          .scale = 0.3f};
    free(poison);
    cr_assert_eq(be->ops->mla_attn(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.q), be->ops->free(be, (void *)a.w_kv_b);
    be->ops->free(be, (void *)a.cache);
    *n = nout;
    return dev_get_f32(be, a.out, nout);
}

static void mla_inputs(ctx *c, mla_st *s) {
    size_t nc = mla_cache_n(s), nq = (size_t)s->batch * s->seq * s->ldq;
    size_t nw = (size_t)s->nh * (s->nope + s->vd) * s->lora,
           nkv = (size_t)s->batch * s->seq * s->ldkv;
    s->q = malloc(nq * 4), s->kv = malloc(nkv * 4);
    tw_test_fill(&c->rng, s->q, nq, 1.0f), tw_test_fill(&c->rng, s->kv, nkv, 1.0f);
    s->wd = malloc(nw * sizeof *s->wd), s->cd = malloc(nc * sizeof *s->cd);
    s->wkvb = stored(c, s->dt, nw, 0.5f, s->wd);
    s->cache = stored(c, s->dt, nc, 1.0f, s->cd);
}

static void mla_free(mla_st *s) {
    free(s->q), free(s->kv), free(s->wd), free(s->cd), free(s->wkvb), free(s->cache);
}

static mla_st mla_shape(tw_dtype dt) {
    mla_st s = {.batch = 2,
                .seq = 3,
                .nh = 3,
                .nope = 8,
                .rope = 4,
                .lora = 16,
                .vd = 6,
                .ms = 9,
                .dt = dt,
                .start = {0, 5}};
    s.ldq = s.nh * (s.nope + s.rope) + 2;
    s.ldkv = s.lora + s.rope + 3;
    return s;
}

static result case_mla_store(ctx *c, tw_dtype dt, int shape) {
    (void)shape;
    mla_st s = mla_shape(dt);
    snprintf(c->note, sizeof c->note, "batch=2 seq=3 lora=16 rope=4 ldkv=23 start=0,5");
    mla_inputs(c, &s);
    size_t nc = mla_cache_n(&s);
    int w = s.lora + s.rope;
    double *ref = malloc(nc * sizeof *ref);
    memcpy(ref, s.cd, nc * sizeof *ref);
    for (int b = 0; b < s.batch; b++)
        for (int t = 0; t < s.seq; t++)
            for (int i = 0; i < w; i++)
                ref[((size_t)b * s.ms + s.start[b] + t) * w + i] =
                    round_as(dt, s.kv[((size_t)b * s.seq + t) * s.ldkv + i]);
    result r = run_case(c, run_mla_store, &s, ref, nc, dt == TW_BF16 ? 1e-6 : 1e-7);
    mla_free(&s);
    free(ref);
    return r;
}

static result case_mla_attn(ctx *c, tw_dtype dt, int shape) {
    (void)shape;
    mla_st s = mla_shape(dt);
    snprintf(c->note, sizeof c->note,
             "batch=2 seq=3 heads=3 nope=8 rope=4 lora=16 v=6 ldq=38 start=0,5");
    mla_inputs(c, &s);
    int w = s.lora + s.rope;
    size_t nout = (size_t)s.batch * s.seq * s.nh * s.vd;
    double *ref = malloc(nout * sizeof *ref);
    for (int b = 0; b < s.batch; b++)
        for (int t = 0; t < s.seq; t++)
            for (int h = 0; h < s.nh; h++) {
                int p = s.start[b] + t;
                const float *q = s.q + ((size_t)b * s.seq + t) * s.ldq;
                const double *uk = s.wd + (size_t)h * (s.nope + s.vd) * s.lora;
                const double *uv = uk + (size_t)s.nope * s.lora;
                double qc[16] = {0}, sc[9], lat[16] = {0}, mx = -INFINITY, sum = 0;
                for (int l = 0; l < s.lora; l++)
                    for (int i = 0; i < s.nope; i++)
                        qc[l] += uk[(size_t)i * s.lora + l] * q[h * s.nope + i];
                for (int u = 0; u <= p; u++) {
                    const double *cr = s.cd + ((size_t)b * s.ms + u) * w;
                    double d = 0;
                    for (int l = 0; l < s.lora; l++) d += qc[l] * cr[l];
                    for (int i = 0; i < s.rope; i++)
                        d += (double)q[s.nh * s.nope + h * s.rope + i] * cr[s.lora + i];
                    sc[u] = 0.3 * d;
                    if (sc[u] > mx) mx = sc[u];
                }
                for (int u = 0; u <= p; u++) {
                    double e = exp(sc[u] - mx);
                    sum += e;
                    for (int l = 0; l < s.lora; l++)
                        lat[l] += e * s.cd[((size_t)b * s.ms + u) * w + l];
                }
                double *o = ref + (((size_t)b * s.seq + t) * s.nh + h) * s.vd;
                for (int j = 0; j < s.vd; j++) {
                    o[j] = 0;
                    for (int l = 0; l < s.lora; l++)
                        o[j] += uv[(size_t)j * s.lora + l] * lat[l] / sum;
                }
            }
    result r = run_case(c, run_mla_attn, &s, ref, nout, tol_of(dt, 1));
    mla_free(&s);
    free(ref);
    return r;
}

/* ---- the paged KV cache -----------------------------------------------------------------------
 * Cases from tw_serve_paged_case.h: shuffled block tables wider than needed (garbage past the
 * end), NaN in every unused block and row, random context before each sequence's new rows. */
typedef struct {
    pcase pc;
    int decode;
    int ldkv;        /* the store: k, v rows this far apart */
    float *k, *v;    /* [rows, ldkv] (the store) */
    void *kp0, *vp0; /* the pools before the store (the store's input) */
} paged_st;

static float *run_paged_attn(tw_backend *be, void *sp, size_t *n) {
    paged_st *s = sp;
    pcase *pc = &s->pc;
    size_t nq = (size_t)pc->rows * pc->H * pc->d, np = pcase_pool_elems(pc) * dsz(pc->dt);
    float *poison = nan_array(nq);
    tw_attn_paged_args a = pcase_attn_args(pc, s->decode);
    a.q = dev_put(be, pc->q, nq * 4);
    a.k_pool = dev_put(be, pc->kp, np);
    a.v_pool = dev_put(be, pc->vp, np);
    a.out = dev_put(be, poison, nq * 4);
    tw_status st =
        s->decode ? be->ops->attn_decode_paged(be, &a) : be->ops->attn_prefill_paged(be, &a);
    cr_assert_eq(st, TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.q), be->ops->free(be, (void *)a.k_pool);
    be->ops->free(be, (void *)a.v_pool);
    free(poison);
    *n = nq;
    return dev_get_f32(be, a.out, nq);
}

static result case_paged_attn(ctx *c, tw_dtype dt, int shape, int decode) {
    /* prefill: 3 sequences of 7, 3 and 1 new rows after 0, 13 and 5 cached positions, grouped
     * heads 6/2, head_dim 40, blocks of 4; then a window of 5 over blocks of 5. decode: lengths
     * 1, 57 (several split-KV chunks), 9 and 16, heads 4/1, blocks of 8; then a window of 6. */
    static const int pre_start[3] = {0, 13, 5}, pre_new[3] = {7, 3, 1};
    static const int dec_start[4] = {0, 56, 8, 15}, dec_new[4] = {1, 1, 1, 1};
    paged_st s = {.decode = decode};
    int window = decode ? (shape ? 6 : 0) : (shape ? 5 : 0);
    int bt = decode ? 8 : (shape ? 5 : 4);
    uint64_t seed = 77 + (uint64_t)(4 * decode + 2 * shape + (dt == TW_BF16));
    if (decode)
        pcase_make(&s.pc, 4, dec_start, dec_new, 4, 1, 24, bt, window, dt, seed);
    else
        pcase_make(&s.pc, 3, pre_start, pre_new, 6, 2, 40, bt, window, dt, seed);
    snprintf(c->note, sizeof c->note,
             decode ? "seqs=4 lens=1,57,9,16 heads=4/1 hd=24 block=%d window=%d"
                    : "seqs=3 start=0,13,5 new=7,3,1 heads=6/2 hd=40 block=%d window=%d",
             bt, window);
    pcase_store_host(&s.pc); /* the new rows' K and V, stored long-hand */
    size_t nq = (size_t)s.pc.rows * s.pc.H * s.pc.d;
    double *ref = malloc(nq * sizeof *ref);
    pcase_ref(&s.pc, ref);
    result r = run_case(c, run_paged_attn, &s, ref, nq, tol_of(dt, 1));
    pcase_free(&s.pc);
    free(ref);
    return r;
}

static result case_attn_prefill_paged(ctx *c, tw_dtype dt, int shape) {
    return case_paged_attn(c, dt, shape, 0);
}
static result case_attn_decode_paged(ctx *c, tw_dtype dt, int shape) {
    return case_paged_attn(c, dt, shape, 1);
}

/* Value i of a pool as stored (written long-hand: the layout of tw_backend.h). */
static double pool_val(tw_dtype dt, const void *pool, size_t i) {
    return dt == TW_BF16 ? tw_test_from_bf16(((const uint16_t *)pool)[i])
                         : ((const float *)pool)[i];
}
static size_t pool_off(const pcase *pc, int b, int h, int p) {
    size_t blk = (size_t)pc->tab[b * pc->max_blocks + p / pc->bt];
    return ((blk * pc->G + h) * pc->bt + p % pc->bt) * pc->d;
}
/* Every held position of every sequence, K then V: [2][sum ctx_len][G][d]. */
static size_t paged_gather_n(const pcase *pc) {
    size_t n = 0;
    for (int b = 0; b < pc->n_seqs; b++) n += (size_t)pc->ctx_len[b] * pc->G * pc->d;
    return 2 * n;
}
static void paged_gather(const pcase *pc, const void *kp, const void *vp, double *out) {
    size_t half = paged_gather_n(pc) / 2, o = 0;
    for (int b = 0; b < pc->n_seqs; b++)
        for (int p = 0; p < pc->ctx_len[b]; p++)
            for (int h = 0; h < pc->G; h++)
                for (int x = 0; x < pc->d; x++, o++) {
                    out[o] = pool_val(pc->dt, kp, pool_off(pc, b, h, p) + x);
                    out[half + o] = pool_val(pc->dt, vp, pool_off(pc, b, h, p) + x);
                }
}

static float *run_kv_store_paged(tw_backend *be, void *sp, size_t *n) {
    paged_st *s = sp;
    pcase *pc = &s->pc;
    size_t nkv = (size_t)pc->rows * s->ldkv, pe = pcase_pool_elems(pc), np = pe * dsz(pc->dt);
    tw_kv_store_paged_args a = {.n_seqs = pc->n_seqs,
                                .n_kv_heads = pc->G,
                                .head_dim = pc->d,
                                .block_tokens = pc->bt,
                                .n_blocks = pc->n_blocks,
                                .max_blocks = pc->max_blocks,
                                .q_start = pc->q_start,
                                .start_pos = pc->start_pos,
                                .block_tables = pc->tab,
                                .k = dev_put(be, s->k, nkv * 4),
                                .v = dev_put(be, s->v, nkv * 4),
                                .ldkv = s->ldkv,
                                .k_pool = dev_put(be, s->kp0, np),
                                .v_pool = dev_put(be, s->vp0, np),
                                .kv_dtype = pc->dt};
    cr_assert_eq(be->ops->kv_store_paged(be, &a), TW_OK, "%s", tw_last_error());
    be->ops->free(be, (void *)a.k), be->ops->free(be, (void *)a.v);
    void *hk = malloc(np), *hv = malloc(np);
    dev_get(be, hk, a.k_pool, np), dev_get(be, hv, a.v_pool, np);
    be->ops->free(be, a.k_pool), be->ops->free(be, a.v_pool);
    /* nothing written outside the held positions: unused blocks and the tails of last blocks */
    pcase view = *pc;
    view.kp = hk, view.vp = hv;
    long outside = pcase_unused_written(&view);
    for (int b = 0; b < pc->n_seqs; b++)
        for (int p = pc->ctx_len[b]; p < (pc->ctx_len[b] + pc->bt - 1) / pc->bt * pc->bt; p++)
            for (int h = 0; h < pc->G; h++)
                for (int x = 0; x < pc->d; x++)
                    outside += !isnan(pool_val(pc->dt, hk, pool_off(pc, b, h, p) + x)) +
                               !isnan(pool_val(pc->dt, hv, pool_off(pc, b, h, p) + x));
    cr_assert_eq(outside, 0, "%s kv_store_paged wrote %ld elements outside the held positions",
                 be->ops->name, outside);
    *n = paged_gather_n(pc);
    double *g = malloc(*n * sizeof *g);
    paged_gather(pc, hk, hv, g);
    float *out = malloc(*n * sizeof *out);
    for (size_t i = 0; i < *n; i++) out[i] = (float)g[i];
    free(g), free(hk), free(hv);
    return out;
}

static result case_kv_store_paged(ctx *c, tw_dtype dt, int shape) {
    /* 3 sequences of 5, 3 and 1 new rows after 2, 0 and 9 cached positions (block boundaries
     * crossed), kv heads 3, head_dim 20, blocks of 4, rows 63 apart (padded) */
    (void)shape;
    static const int start[3] = {2, 0, 9}, n_new[3] = {5, 3, 1};
    paged_st s = {0};
    pcase_make(&s.pc, 3, start, n_new, 3, 3, 20, 4, 0, dt, 91 + (uint64_t)(dt == TW_BF16));
    pcase *pc = &s.pc;
    s.ldkv = pc->G * pc->d + 3;
    snprintf(c->note, sizeof c->note,
             "seqs=3 start=2,0,9 new=5,3,1 kv_heads=3 hd=20 block=4 ldkv=%d", s.ldkv);
    size_t nkv = (size_t)pc->rows * s.ldkv, np = pcase_pool_elems(pc) * dsz(dt);
    s.k = nan_array(nkv), s.v = nan_array(nkv); /* the padding is never read */
    for (int r = 0; r < pc->rows; r++)
        for (int i = 0; i < pc->G * pc->d; i++) {
            s.k[(size_t)r * s.ldkv + i] = pc->k_new[(size_t)r * pc->G * pc->d + i];
            s.v[(size_t)r * s.ldkv + i] = pc->v_new[(size_t)r * pc->G * pc->d + i];
        }
    s.kp0 = malloc(np), s.vp0 = malloc(np);
    memcpy(s.kp0, pc->kp, np), memcpy(s.vp0, pc->vp, np);
    pcase_store_host(pc); /* the expected pools */
    size_t n = paged_gather_n(pc);
    double *ref = malloc(n * sizeof *ref);
    paged_gather(pc, pc->kp, pc->vp, ref);
    result r = run_case(c, run_kv_store_paged, &s, ref, n, dt == TW_BF16 ? 1e-6 : 1e-7);
    pcase_free(pc);
    free(s.k), free(s.v), free(s.kp0), free(s.vp0), free(ref);
    return r;
}

/* ---- the table of cases, and the run over the registry ----------------------------------------
 */
static result case_rmsnorm(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_RMSNORM, dt);
}
static result case_head_rmsnorm(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_HEAD_RMSNORM, dt);
}
static result case_bias_add(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_BIAS_ADD, dt);
}
static result case_rope(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_ROPE, dt);
}
static result case_swiglu(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_SWIGLU, dt);
}
static result case_add(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_ADD, dt);
}
static result case_embed(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_EMBED, dt);
}
static result case_argmax(ctx *c, tw_dtype dt, int sh) {
    (void)sh;
    return case_rowop(c, TW_OP_ARGMAX, dt);
}

typedef struct {
    tw_op op;
    int shapes;
    result (*fn)(ctx *c, tw_dtype dt, int shape);
} op_case;

static const op_case CASES[] = {
    {TW_OP_GEMM, 2, case_gemm},
    {TW_OP_ATTN_PREFILL, 2, case_attn_prefill},
    {TW_OP_ATTN_DECODE, 2, case_attn_decode},
    {TW_OP_KV_STORE, 1, case_kv_store},
    {TW_OP_RMSNORM, 1, case_rmsnorm},
    {TW_OP_ROPE, 1, case_rope},
    {TW_OP_SWIGLU, 1, case_swiglu},
    {TW_OP_ADD, 1, case_add},
    {TW_OP_EMBED, 1, case_embed},
    {TW_OP_ARGMAX, 1, case_argmax},
    {TW_OP_BIAS_ADD, 1, case_bias_add},
    {TW_OP_HEAD_RMSNORM, 1, case_head_rmsnorm},
    {TW_OP_MOE_ROUTE, 2, case_moe_route},
    {TW_OP_MOE_FFN, 1, case_moe_ffn},
    {TW_OP_MLA_STORE, 1, case_mla_store},
    {TW_OP_MLA_ATTN, 1, case_mla_attn},
    {TW_OP_ATTN_PREFILL_PAGED, 2, case_attn_prefill_paged},
    {TW_OP_ATTN_DECODE_PAGED, 2, case_attn_decode_paged},
    {TW_OP_KV_STORE_PAGED, 1, case_kv_store_paged},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static const char *verdict(result r) {
    return r == R_PASS ? "PASS" : r == R_FAIL ? "FAIL" : "SKIP";
}

Test(backend_ops, every_op_of_every_backend_against_the_cpu_and_float64) {
    cr_assert_eq(NCASES, TW_OP_COUNT, "every op has a case");
    for (int i = 0; i < NCASES; i++) cr_assert_eq(CASES[i].op, (tw_op)i, "case order");
    const tw_dtype dts[2] = {TW_F32, TW_BF16};
    int total[3] = {0}, cpu_pass = 0;
    for (int bi = 0; bi < tw_backend_count(); bi++) {
        const tw_backend_entry *row = tw_backend_at(bi);
        int is_cpu = !strcmp(row->name, "cpu");
        int tally[3] = {0};
        ctx c = {0};
        tw_test_rng_seed(&c.rng, 1234 + (uint64_t)bi);
        tw_status st = tw_backend_create(row->name, 2, 0, &c.be);
        char why[512] = "";
        if (st != TW_OK) {
            snprintf(why, sizeof why, "%s", tw_error_text());
        } else if (!is_cpu && tw_backend_create("cpu", 2, 0, &c.cpu) != TW_OK) {
            cr_assert_fail("cpu backend: %s", tw_last_error());
        }
        for (int k = 0; k < NCASES; k++)
            for (int d = 0; d < 2; d++)
                for (int sh = 0; sh < CASES[k].shapes; sh++) {
                    result r = R_SKIP;
                    char note[300];
                    if (!c.be) {
                        snprintf(note, sizeof note, "backend unusable here: %s", why);
                    } else if (!tw_backend_supports(c.be, CASES[k].op, dts[d])) {
                        snprintf(note, sizeof note, "(%s, %s) not supported by the %s backend",
                                 tw_op_name(CASES[k].op), tw_dtype_name(dts[d]), row->name);
                    } else {
                        c.note[0] = '\0';
                        r = CASES[k].fn(&c, dts[d], sh);
                        snprintf(note, sizeof note, "%s", c.note);
                    }
                    tally[r]++;
                    fprintf(stderr, "%-5s %-18s %-5s %s  %s\n", row->name, tw_op_name(CASES[k].op),
                            tw_dtype_name(dts[d]), verdict(r), note);
                }
        fprintf(stderr, "backend %s: %d pass, %d fail, %d skip\n", row->name, tally[R_PASS],
                tally[R_FAIL], tally[R_SKIP]);
        for (int i = 0; i < 3; i++) total[i] += tally[i];
        if (is_cpu) cpu_pass = tally[R_PASS];
        tw_backend_destroy(c.be);
        tw_backend_destroy(c.cpu);
    }
    fprintf(stderr, "test-backend-ops: %d pass, %d fail, %d skip (skips are not passes)\n",
            total[R_PASS], total[R_FAIL], total[R_SKIP]);
    cr_assert_eq(total[R_FAIL], 0, "%d cases failed (see the FAIL lines)", total[R_FAIL]);
    cr_assert_gt(cpu_pass, 0, "the CPU backend passed nothing");
}

/* The judge itself can fail: a NaN, an error above the tolerance, a disagreement with the CPU. */
Test(backend_ops, the_judge_fails_wrong_outputs) {
    ctx c = {0};
    float out[4] = {1, 2, 3, 4}, cpu[4] = {1, 2, 3, 4.01f};
    double ref[4] = {1, 2, 3, 4};
    cr_assert_eq(judge(&c, out, ref, NULL, 4, 1e-5), R_PASS, "%s", c.note);
    c.note[0] = '\0';
    cr_assert_eq(judge(&c, out, ref, cpu, 4, 1e-5), R_FAIL, "disagrees with the cpu: %s", c.note);
    out[1] = NAN;
    c.note[0] = '\0';
    cr_assert_eq(judge(&c, out, ref, NULL, 4, 1e10), R_FAIL, "NaN first, whatever the tolerance");
    cr_assert(strstr(c.note, "non-finite"), "%s", c.note);
    out[1] = 2.0001f;
    c.note[0] = '\0';
    cr_assert_eq(judge(&c, out, ref, NULL, 4, 1e-5), R_FAIL, "error 1.8e-5 above 1e-5: %s", c.note);
}
