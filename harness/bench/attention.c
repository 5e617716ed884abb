/* The attention benchmark (tw_bench_run_attention) on any backend: causal prefill of seq new tokens
 * per sequence (the cache holding exactly them), or one decode step against seq cached
 * positions. The cache is filled through the backend's kv_store, the path a model takes (and its
 * bf16 rounding); a slice of the output is checked against float64 before any timing. */
#include "tw_bench.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cpu.h"
#include "tw_util.h"

#define ATTN_CHECK_TOL 1e-4

typedef struct {
    tw_bench_attn_opts o;
    int host;
    size_t nq, nkv;    /* elements of q (= out) and of one cache */
    float *hq, *hout;  /* host q, downloaded out */
    void *hk, *hv;     /* the caches as stored (downloaded after kv_store) */
    int *start, *lens; /* [batch], host */
    void *dq, *dout, *dk, *dv;
    tw_bench_roof roof;
} attn_state;

/* deterministic fill in [-1, 1): a 64-bit LCG is plenty for benchmark data */
static void attn_fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

static tw_status attn_setup(void *sp, tw_backend *be) {
    attn_state *s = sp;
    const tw_bench_attn_opts *o = &s->o;
    const tw_op op = o->decode ? TW_OP_ATTN_DECODE : TW_OP_ATTN_PREFILL;
    if (!tw_backend_supports(be, op, o->kv_dtype) ||
        !tw_backend_supports(be, TW_OP_KV_STORE, o->kv_dtype))
        return TW_ERR(TW_ERR_UNSUPPORTED, "backend %s does not run %s with a %s cache",
                      be->ops->name, tw_op_name(op), tw_dtype_name(o->kv_dtype));
    const size_t ntok = (size_t)o->batch * (o->decode ? 1 : o->seq);
    const size_t es = tw_dtype_size(o->kv_dtype);
    s->nq = ntok * o->heads * o->head_dim;
    s->nkv = (size_t)o->batch * o->kv_heads * o->seq * o->head_dim;
    s->hq = malloc(sizeof(float) * s->nq);
    s->hout = malloc(sizeof(float) * s->nq);
    s->hk = malloc(es * s->nkv);
    s->hv = malloc(es * s->nkv);
    s->start = calloc((size_t)o->batch, sizeof(int));
    s->lens = malloc(sizeof(int) * (size_t)o->batch);
    if (!s->hq || !s->hout || !s->hk || !s->hv || !s->start || !s->lens)
        return TW_ERR(TW_ERR_NOMEM, "bench attention: %.1f MB of host buffers",
                      (2.0 * s->nq * 4 + 2.0 * s->nkv * es) / 1e6);
    attn_fill(s->hq, s->nq, 1);
    for (size_t i = 0; i < s->nq; i++) s->hout[i] = NAN; /* unwritten outputs fail the check */
    for (int i = 0; i < o->batch; i++) s->lens[i] = o->seq;
    TW_TRY(be->ops->alloc(be, sizeof(float) * s->nq, &s->dq));
    TW_TRY(be->ops->alloc(be, sizeof(float) * s->nq, &s->dout));
    TW_TRY(be->ops->alloc(be, es * s->nkv, &s->dk));
    TW_TRY(be->ops->alloc(be, es * s->nkv, &s->dv));
    TW_TRY(be->ops->upload(be, s->dq, s->hq, sizeof(float) * s->nq));
    TW_TRY(be->ops->upload(be, s->dout, s->hout, sizeof(float) * s->nq));
    /* K and V through kv_store, one sequence at a time (batch 1 views of the cache) */
    const size_t chunk = (size_t)o->kv_heads * o->head_dim * o->seq; /* one sequence */
    float *tk = malloc(sizeof(float) * chunk), *tv = malloc(sizeof(float) * chunk);
    void *dtk = NULL, *dtv = NULL;
    tw_status st = tk && tv ? TW_OK : TW_ERR(TW_ERR_NOMEM, "bench attention: staging buffers");
    if (st == TW_OK) st = be->ops->alloc(be, sizeof(float) * chunk, &dtk);
    if (st == TW_OK) st = be->ops->alloc(be, sizeof(float) * chunk, &dtv);
    for (int i = 0; i < o->batch && st == TW_OK; i++) {
        attn_fill(tk, chunk, 100 + 2 * (uint64_t)i);
        attn_fill(tv, chunk, 101 + 2 * (uint64_t)i);
        st = be->ops->upload(be, dtk, tk, sizeof(float) * chunk);
        if (st == TW_OK) st = be->ops->upload(be, dtv, tv, sizeof(float) * chunk);
        int zero = 0;
        size_t off = (size_t)i * chunk * es;
        tw_kv_store_args ka = {.batch = 1,
                               .seq = o->seq,
                               .n_kv_heads = o->kv_heads,
                               .head_dim = o->head_dim,
                               .max_seq = o->seq,
                               .start_pos = &zero,
                               .k = dtk,
                               .v = dtv,
                               .k_cache = (char *)s->dk + off,
                               .v_cache = (char *)s->dv + off,
                               .kv_dtype = o->kv_dtype};
        if (st == TW_OK) st = be->ops->kv_store(be, &ka);
        if (st == TW_OK) st = be->ops->sync(be); /* the staging buffers are reused */
    }
    free(tk);
    free(tv);
    be->ops->free(be, dtk);
    be->ops->free(be, dtv);
    if (st != TW_OK) return tw_error_ctx(st, "bench attention: filling the cache");
    /* the reference reads the cache as stored */
    TW_TRY(be->ops->download(be, s->hk, s->dk, es * s->nkv));
    TW_TRY(be->ops->download(be, s->hv, s->dv, es * s->nkv));
    return TW_OK;
}

static tw_status attn_run(void *sp, tw_backend *be, int rep) {
    (void)rep;
    attn_state *s = sp;
    const tw_bench_attn_opts *o = &s->o;
    const float scale = 1.0f / sqrtf((float)o->head_dim);
    if (o->decode) {
        tw_attn_decode_args a = {.batch = o->batch,
                                 .n_heads = o->heads,
                                 .n_kv_heads = o->kv_heads,
                                 .head_dim = o->head_dim,
                                 .max_seq = o->seq,
                                 .lens = s->lens,
                                 .q = s->dq,
                                 .k_cache = s->dk,
                                 .v_cache = s->dv,
                                 .kv_dtype = o->kv_dtype,
                                 .out = s->dout,
                                 .scale = scale};
        return be->ops->attn_decode(be, &a);
    }
    tw_attn_prefill_args a = {.batch = o->batch,
                              .seq = o->seq,
                              .n_heads = o->heads,
                              .n_kv_heads = o->kv_heads,
                              .head_dim = o->head_dim,
                              .max_seq = o->seq,
                              .start_pos = s->start,
                              .q = s->dq,
                              .k_cache = s->dk,
                              .v_cache = s->dv,
                              .kv_dtype = o->kv_dtype,
                              .out = s->dout,
                              .scale = scale};
    return be->ops->attn_prefill(be, &a);
}

static double attn_kv(const attn_state *s, const void *cache, size_t i) {
    if (s->o.kv_dtype == TW_BF16) return tw_f32_from_bf16(((const tw_bf16 *)cache)[i]);
    return ((const float *)cache)[i];
}

/* Naive float64 attention for a slice: first and last sequence, first, middle and last token
 * (prefill), first and last head. */
static tw_status attn_check(void *sp, tw_backend *be, tw_bench_check *c) {
    attn_state *s = sp;
    const tw_bench_attn_opts *o = &s->o;
    TW_TRY(be->ops->download(be, s->hout, s->dout, sizeof(float) * s->nq));
    const int D = o->head_dim, S = o->seq, H = o->heads, group = o->heads / o->kv_heads;
    const int bs[2] = {0, o->batch - 1}, hs[2] = {0, H - 1}, ts[3] = {0, S / 2, S - 1};
    const int nt = o->decode ? 1 : 3;
    double *sc = malloc(sizeof(double) * S), *ref = malloc(sizeof(double) * D);
    if (!sc || !ref) {
        free(sc);
        free(ref);
        return TW_ERR(TW_ERR_NOMEM, "bench attention: reference scratch");
    }
    tw_bench_err e = {0};
    const double scale = 1.0 / sqrt((double)D);
    for (int ib = 0; ib < 2; ib++)
        for (int it = 0; it < nt; it++)
            for (int ih = 0; ih < 2; ih++) {
                const int bb = bs[ib], h = hs[ih], kvh = h / group;
                const int t = o->decode ? 0 : ts[it], npos = o->decode ? S : t + 1;
                const size_t row =
                    o->decode ? ((size_t)bb * H + h) * D : (((size_t)bb * S + t) * H + h) * D;
                const size_t base = ((size_t)bb * o->kv_heads + kvh) * S * D;
                double mx = -INFINITY;
                for (int j = 0; j < npos; j++) {
                    double acc = 0;
                    for (int x = 0; x < D; x++)
                        acc += (double)s->hq[row + x] * attn_kv(s, s->hk, base + (size_t)j * D + x);
                    sc[j] = acc * scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                double l = 0;
                for (int x = 0; x < D; x++) ref[x] = 0;
                for (int j = 0; j < npos; j++) {
                    double pj = exp(sc[j] - mx);
                    l += pj;
                    for (int x = 0; x < D; x++)
                        ref[x] += pj * attn_kv(s, s->hv, base + (size_t)j * D + x);
                }
                for (int x = 0; x < D; x++) tw_bench_err_add(&e, s->hout[row + x], ref[x] / l);
            }
    free(sc);
    free(ref);
    c->rel_err = tw_bench_err_value(&e);
    c->tol = ATTN_CHECK_TOL;
    snprintf(c->what, sizeof c->what, "attention %s slice against float64",
             o->decode ? "decode" : "prefill");
    return TW_OK;
}

static tw_status attn_metrics(void *sp, tw_backend *be, const tw_bench_stats *t,
                              const tw_bench_check *c, tw_bench_report *r) {
    attn_state *s = sp;
    const tw_bench_attn_opts *o = &s->o;
    const double B = o->batch, H = o->heads, D = o->head_dim, S = o->seq;
    const double flops = o->decode ? 4.0 * S * D * H * B : 4.0 * S * S / 2.0 * D * H * B;
    const double kv_bytes = 2.0 * B * o->kv_heads * S * D * (double)tw_dtype_size(o->kv_dtype);
    const double gflops = flops / t->median_s / 1e9, gbps = kv_bytes / t->median_s / 1e9;
    const double fc = s->roof.peak_gflops > 0 ? gflops / s->roof.peak_gflops : NAN;
    const double fb = s->roof.read_gbps > 0 ? gbps / s->roof.read_gbps : NAN;
    /* the binding ceiling is the one the kernel is closer to */
    const int compute = isfinite(fc) && !(fb > fc);
    const double roof = compute ? fc : fb;
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    tw_bench_row *w = tw_bench_row_add(r);
    tw_bench_str(w, "mode", "mode", o->decode ? "decode" : "prefill");
    tw_bench_int(w, "batch", "batch", o->batch);
    tw_bench_int(w, "heads", "heads", o->heads);
    tw_bench_int(w, "kv_heads", "kv_heads", o->kv_heads);
    tw_bench_int(w, "head_dim", "head_dim", o->head_dim);
    tw_bench_int(w, "seq", "seq", o->seq);
    tw_bench_str(w, "kv_dtype", "kv_dtype", tw_dtype_name(o->kv_dtype));
    tw_bench_str(w, "arch", "arch", d.arch);
    tw_bench_int(w, "threads", "threads", s->host ? tw_cpu_threads(be->threads) : 0);
    tw_bench_int(w, "reps", "", t->reps);
    tw_bench_real(w, "median_s", "median_s", "%.6g", t->median_s);
    tw_bench_real(w, "min_s", "min_s", "%.6g", t->min_s);
    tw_bench_real(w, "max_s", "", NULL, t->max_s);
    tw_bench_real(w, "spread", "", NULL, t->spread);
    tw_bench_real(w, "flops", "", NULL, flops);
    tw_bench_real(w, "gflops", "GFLOP/s", "%.2f", gflops);
    tw_bench_real(w, "kv_bytes", "", NULL, kv_bytes);
    tw_bench_real(w, "gbps", "GB/s", "%.2f", gbps);
    tw_bench_real(w, "check_rel_err", "check_rel_err", "%.2g", c->rel_err);
    tw_bench_real(w, "peak_gflops", "", NULL, s->roof.peak_gflops > 0 ? s->roof.peak_gflops : NAN);
    tw_bench_real(w, "membw_read_gbps", "", NULL, s->roof.read_gbps > 0 ? s->roof.read_gbps : NAN);
    tw_bench_real(w, "compute_fraction", "", NULL, fc);
    tw_bench_real(w, "bandwidth_fraction", "", NULL, fb);
    tw_bench_real(w, "roofline_fraction", "roofline", "%.3f", roof);
    tw_bench_text(w, "roofline_fraction", "%.3f of %s (%.1f GFLOP/s, %.1f GB/s)", roof,
                  compute ? "compute" : "bandwidth", s->roof.peak_gflops, s->roof.read_gbps);
    tw_bench_str(w, "roofline_bound", "", compute ? "compute" : "bandwidth");
    tw_bench_flag_ceiling(r, w, roof, compute ? "compute peak" : "read bandwidth");
    tw_bench_str(w, "timer", "", t->timer);
    tw_bench_str(w, "flush", "", t->flush);
    tw_bench_note(r, "ceilings: %s; %s", s->roof.peak_method, s->roof.read_method);
    return TW_OK;
}

static void attn_teardown(void *sp, tw_backend *be) {
    attn_state *s = sp;
    be->ops->free(be, s->dq);
    be->ops->free(be, s->dout);
    be->ops->free(be, s->dk);
    be->ops->free(be, s->dv);
    free(s->hq);
    free(s->hout);
    free(s->hk);
    free(s->hv);
    free(s->start);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

static const tw_bench_def attn_def = {.name = "attention",
                                      .setup = attn_setup,
                                      .run = attn_run,
                                      .check = attn_check,
                                      .metrics = attn_metrics,
                                      .teardown = attn_teardown};

tw_status tw_bench_run_attention(tw_backend *be, const tw_bench_attn_opts *o,
                                 const tw_bench_params *p, tw_bench_report *r) {
    snprintf(r->bench, sizeof r->bench, "attention");
    snprintf(r->backend, sizeof r->backend, "%s", be->ops->name);
    attn_state s;
    memset(&s, 0, sizeof s);
    s.o = *o;
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    s.host = d.kind == TW_DEVICE_HOST;
    /* both ceilings: the binding one is the one the kernel is closer to (fp32 peak: the
     * attention kernels compute in fp32; host read buffer 256 MiB, best of 3) */
    TW_TRY(tw_bench_roofline(be, s.host ? tw_cpu_threads(be->threads) : 0, TW_F32, 1,
                             (size_t)256 << 20, &s.roof));
    return tw_bench_execute(&attn_def, &s, be, p, r, NULL);
}
