/* `tokwatt bench attention`: times the CPU attention kernels (causal prefill, or one decode step
 * against a full KV cache) after checking a slice of their output against a naive float64
 * reference. Reports the median time, GFLOP/s and the KV-cache bytes read per second. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/tw_util.h"
#include "kernels/cpu/tw_cpu.h"
#include "tw_cli.h"
#include "tw_machine.h"
#include "tw_route.h"
#include "tw_cmds.h"

static const char *tw_attn_usage =
    "tokwatt bench attention [--batch B] [--heads H] [--kv-heads G] [--head-dim D] [--seq S]\n"
    "       [--decode] [--kv-dtype fp32|bf16] [--threads T] [--simd portable|avx2|avx512]\n"
    "       [--reps R] [--warmup W] [--format md|json|csv]\n"
    "  prefill (default): B sequences of S new tokens, causal, cache holding exactly them\n"
    "  --decode: one new token per sequence attending to S cached positions\n"
    "  defaults: B 1, H 32, G 8, D 128, S 512, fp32 KV, all cores, 10 reps, 2 warm-up\n"
    "  --threads 0 (the default) means automatic: all cores\n"
    "  GFLOP/s counts 4*S*S/2*D*H*B (prefill) or 4*S*D*H*B (decode); GB/s is K+V cache bytes\n"
    "  read once per call (the whole traffic of decode, a lower bound for prefill)";

typedef struct {
    int batch, heads, kv_heads, head_dim, seq, decode, threads, reps, warmup;
    tw_dtype kv_dtype;
    tw_simd simd;
    tw_format fmt;
} attn_opts;

typedef struct {
    float *q, *out;    /* prefill [B*S, H, D]; decode [B, H, D] */
    void *k, *v;       /* [B, G, S, D] kv_dtype */
    int *start, *lens; /* [B] */
} attn_bufs;

static void bufs_free(attn_bufs *b) {
    free(b->q);
    free(b->out);
    free(b->k);
    free(b->v);
    free(b->start);
    free(b->lens);
}

/* deterministic fill in [-1, 1): a 64-bit LCG is plenty for benchmark data */
static void fill_f32(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

static tw_status bufs_make(const attn_opts *o, attn_bufs *b) {
    memset(b, 0, sizeof *b);
    size_t ntok = (size_t)o->batch * (o->decode ? 1 : o->seq);
    size_t nq = ntok * o->heads * o->head_dim;
    size_t nkv = (size_t)o->batch * o->kv_heads * o->seq * o->head_dim;
    size_t es = tw_dtype_size(o->kv_dtype);
    b->q = malloc(sizeof(float) * nq);
    b->out = malloc(sizeof(float) * nq);
    b->k = malloc(es * nkv);
    b->v = malloc(es * nkv);
    b->start = calloc((size_t)o->batch, sizeof(int));
    b->lens = malloc(sizeof(int) * (size_t)o->batch);
    if (!b->q || !b->out || !b->k || !b->v || !b->start || !b->lens) {
        bufs_free(b);
        return TW_ERR(TW_ERR_NOMEM, "bench attention: cannot allocate %.1f MB of buffers",
                      (2.0 * nq * 4 + 2.0 * nkv * es) / 1e6);
    }
    fill_f32(b->q, nq, 1);
    for (int i = 0; i < o->batch; i++) b->lens[i] = o->seq;
    /* K and V are written through kv_store_cpu, the path a model takes (and the bf16 rounding) */
    const size_t chunk = (size_t)o->kv_heads * o->head_dim; /* one token of one sequence */
    float *tmp_k = malloc(sizeof(float) * chunk * o->seq),
          *tmp_v = malloc(sizeof(float) * chunk * o->seq);
    if (!tmp_k || !tmp_v) {
        free(tmp_k);
        free(tmp_v);
        bufs_free(b);
        return TW_ERR(TW_ERR_NOMEM, "bench attention: staging buffers");
    }
    tw_status st = TW_OK;
    for (int i = 0; i < o->batch && st == TW_OK; i++) {
        fill_f32(tmp_k, chunk * o->seq, 100 + 2 * (uint64_t)i);
        fill_f32(tmp_v, chunk * o->seq, 101 + 2 * (uint64_t)i);
        int zero = 0;
        /* one sequence at a time: batch 1 views of the cache */
        size_t off = (size_t)i * o->kv_heads * o->seq * o->head_dim * es;
        tw_kv_store_args ka = {.batch = 1,
                               .seq = o->seq,
                               .n_kv_heads = o->kv_heads,
                               .head_dim = o->head_dim,
                               .max_seq = o->seq,
                               .start_pos = &zero,
                               .k = tmp_k,
                               .v = tmp_v,
                               .k_cache = (char *)b->k + off,
                               .v_cache = (char *)b->v + off,
                               .kv_dtype = o->kv_dtype};
        st = kv_store_cpu(&ka, o->threads);
    }
    free(tmp_k);
    free(tmp_v);
    if (st != TW_OK) {
        bufs_free(b);
        return tw_error_ctx(st, "bench attention: filling the cache");
    }
    return TW_OK;
}

static tw_status run_once(const attn_opts *o, attn_bufs *b) {
    float scale = 1.0f / sqrtf((float)o->head_dim);
    if (o->decode) {
        tw_attn_decode_args a = {o->batch, o->heads, o->kv_heads, o->head_dim, o->seq, b->lens,
                                 b->q,     b->k,     b->v,        o->kv_dtype, b->out, scale,
                                 0};
        return attn_decode_cpu(&a, o->threads);
    }
    tw_attn_prefill_args a = {o->batch, o->seq, o->heads, o->kv_heads, o->head_dim, o->seq,
                              b->start, b->q,   b->k,     b->v,        o->kv_dtype, b->out,
                              scale,    0};
    return attn_prefill_cpu(&a, o->threads);
}

static double kv_at(const attn_opts *o, const void *cache, size_t i) {
    if (o->kv_dtype == TW_BF16) return tw_f32_from_bf16(((const tw_bf16 *)cache)[i]);
    return ((const float *)cache)[i];
}

/* Naive float64 attention for a slice of the output: first and last sequence, first, middle
 * and last token (prefill), first and last head. Returns the relative norm error. */
static tw_status check_slice(const attn_opts *o, const attn_bufs *b, double *rel_err) {
    const int D = o->head_dim, S = o->seq, H = o->heads, group = o->heads / o->kv_heads;
    int bs[2] = {0, o->batch - 1}, hs[2] = {0, H - 1};
    int ts[3] = {0, S / 2, S - 1};
    int nt = o->decode ? 1 : 3;
    double *sc = malloc(sizeof(double) * S), *ref = malloc(sizeof(double) * D);
    if (!sc || !ref) {
        free(sc);
        free(ref);
        return TW_ERR(TW_ERR_NOMEM, "bench attention: reference scratch");
    }
    double num = 0, den = 0;
    const double scale = 1.0 / sqrt((double)D);
    for (int ib = 0; ib < 2; ib++)
        for (int it = 0; it < nt; it++)
            for (int ih = 0; ih < 2; ih++) {
                int bb = bs[ib], h = hs[ih], kvh = h / group;
                int t = o->decode ? 0 : ts[it];
                int npos = o->decode ? S : t + 1;
                size_t row =
                    o->decode ? ((size_t)bb * H + h) * D : (((size_t)bb * S + t) * H + h) * D;
                size_t base = ((size_t)bb * o->kv_heads + kvh) * S * D;
                double mx = -INFINITY;
                for (int j = 0; j < npos; j++) {
                    double acc = 0;
                    for (int x = 0; x < D; x++)
                        acc += (double)b->q[row + x] * kv_at(o, b->k, base + (size_t)j * D + x);
                    sc[j] = acc * scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                double l = 0;
                for (int x = 0; x < D; x++) ref[x] = 0;
                for (int j = 0; j < npos; j++) {
                    double p = exp(sc[j] - mx);
                    l += p;
                    for (int x = 0; x < D; x++)
                        ref[x] += p * kv_at(o, b->v, base + (size_t)j * D + x);
                }
                for (int x = 0; x < D; x++) {
                    double r = ref[x] / l, d = (double)b->out[row + x] - r;
                    num += isfinite(b->out[row + x]) ? d * d : INFINITY;
                    den += r * r;
                }
            }
    free(sc);
    free(ref);
    *rel_err = den > 0 ? sqrt(num / den) : INFINITY;
    return TW_OK;
}

static tw_status parse(tw_args *args, attn_opts *o) {
    const char *kvs, *simd;
    TW_TRY(tw_args_int(args, "--batch", 1, 1, 4096, &o->batch));
    TW_TRY(tw_args_int(args, "--heads", 32, 1, 1024, &o->heads));
    TW_TRY(tw_args_int(args, "--kv-heads", 8, 1, 1024, &o->kv_heads));
    TW_TRY(tw_args_int(args, "--head-dim", 128, 1, 1024, &o->head_dim));
    TW_TRY(tw_args_int(args, "--seq", 512, 1, 1 << 20, &o->seq));
    o->decode = tw_args_flag(args, "--decode");
    TW_TRY(tw_args_str(args, "--kv-dtype", "fp32", &kvs));
    TW_TRY(tw_args_int(args, "--threads", 0, 0, 4096, &o->threads));
    TW_TRY(tw_args_str(args, "--simd", NULL, &simd));
    TW_TRY(tw_args_int(args, "--reps", 10, 1, 1000000, &o->reps));
    TW_TRY(tw_args_int(args, "--warmup", 2, 0, 1000000, &o->warmup));
    TW_TRY(tw_args_format(args, &o->fmt));
    TW_TRY(tw_args_finish(args));
    if (o->heads % o->kv_heads)
        return TW_ERR(TW_ERR_INVALID, "option --kv-heads: %d does not divide --heads %d",
                      o->kv_heads, o->heads);
    if (tw_dtype_parse(kvs, &o->kv_dtype) != TW_OK || o->kv_dtype == TW_I32)
        return TW_ERR(TW_ERR_INVALID, "option --kv-dtype: '%s' is not fp32 or bf16", kvs);
    o->simd = tw_cpu_simd_active();
    if (simd) {
        if (!strcmp(simd, "portable"))
            o->simd = TW_SIMD_PORTABLE;
        else if (!strcmp(simd, "avx2"))
            o->simd = TW_SIMD_AVX2;
        else if (!strcmp(simd, "avx512"))
            o->simd = TW_SIMD_AVX512;
        else
            return TW_ERR(TW_ERR_INVALID, "option --simd: '%s' is not portable, avx2 or avx512",
                          simd);
    }
    return TW_OK;
}

int tw_bench_attention(int argc, char **argv) {
    int routed = 0;
    int route_rc = tw_bench_route("attention", argc, argv, &routed);
    if (routed) return route_rc;
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench attention", tw_attn_usage, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        printf("usage: %s\n", tw_attn_usage);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    {
        const char *backend_cpu; /* "cpu" (anything else was routed above) */
        tw_args_str(&args, "--backend", "cpu", &backend_cpu);
    }
    attn_opts o;
    memset(&o, 0, sizeof o);
    if (parse(&args, &o) != TW_OK) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&args);
    if (tw_cpu_simd_force(o.simd) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    int nthreads = tw_cpu_threads(o.threads);

    attn_bufs b;
    if (bufs_make(&o, &b) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    tw_log("attention %s: B=%d H=%d G=%d D=%d S=%d kv %s, %s, %d threads",
           o.decode ? "decode" : "prefill", o.batch, o.heads, o.kv_heads, o.head_dim, o.seq,
           tw_dtype_name(o.kv_dtype), tw_simd_name(o.simd), nthreads);

    /* correctness first: a wrong kernel gets no figure */
    double err = INFINITY;
    tw_status st = run_once(&o, &b);
    if (st == TW_OK) st = check_slice(&o, &b, &err);
    if (st != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        bufs_free(&b);
        return TW_EXIT_FAIL;
    }
    const double tol = 1e-4;
    if (!(err < tol)) {
        fprintf(stderr,
                "tokwatt: error: attention check failed: relative error %.3g against the float64 "
                "reference (tolerance %.0e); no figure reported\n",
                err, tol);
        bufs_free(&b);
        return TW_EXIT_CHECK;
    }

    for (int i = 0; i < o.warmup && st == TW_OK; i++) st = run_once(&o, &b);
    double *times = malloc(sizeof(double) * (size_t)o.reps);
    for (int i = 0; i < o.reps && st == TW_OK && times; i++) {
        double t0 = tw_now_s();
        st = run_once(&o, &b);
        times[i] = tw_now_s() - t0;
    }
    if (!times || st != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", times ? tw_error_text() : "out of memory");
        free(times);
        bufs_free(&b);
        return TW_EXIT_FAIL;
    }
    tw_stats ts = tw_stats_of(times, o.reps);
    free(times);
    bufs_free(&b);

    double B = o.batch, H = o.heads, D = o.head_dim, S = o.seq;
    double flops = o.decode ? 4.0 * S * D * H * B : 4.0 * S * S / 2.0 * D * H * B;
    double kv_bytes = 2.0 * B * o.kv_heads * S * D * (double)tw_dtype_size(o.kv_dtype);
    double gflops = flops / ts.median / 1e9, gbps = kv_bytes / ts.median / 1e9;
    /* Roofline: the measured fp32 FMA peak and read bandwidth of this machine (256 MiB buffers,
     * best of 3); the binding ceiling is the one the kernel is closer to. */
    double peak_gflops = 0;
    tw_membw_result mb;
    memset(&mb, 0, sizeof mb);
    if (tw_machine_fp32_peak(nthreads, &peak_gflops) != TW_OK ||
        tw_machine_membw(nthreads, (size_t)256 << 20, 3, &mb) != TW_OK) {
        fprintf(stderr, "tokwatt: error: roofline calibration: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    double frac_compute = gflops / peak_gflops, frac_bw = gbps / mb.read_gbps;
    double roofline = frac_compute > frac_bw ? frac_compute : frac_bw;
    const char *bound = frac_compute > frac_bw ? "compute" : "bandwidth";

    const char *mode = o.decode ? "decode" : "prefill";
    if (o.fmt == TW_FMT_JSON) {
        json_t *j = json_object();
        json_object_set_new(j, "bench", json_string("attention"));
        json_object_set_new(j, "mode", json_string(mode));
        json_object_set_new(j, "batch", json_integer(o.batch));
        json_object_set_new(j, "heads", json_integer(o.heads));
        json_object_set_new(j, "kv_heads", json_integer(o.kv_heads));
        json_object_set_new(j, "head_dim", json_integer(o.head_dim));
        json_object_set_new(j, "seq", json_integer(o.seq));
        json_object_set_new(j, "kv_dtype", json_string(tw_dtype_name(o.kv_dtype)));
        json_object_set_new(j, "simd", json_string(tw_simd_name(o.simd)));
        json_object_set_new(j, "threads", json_integer(nthreads));
        json_object_set_new(j, "reps", json_integer(o.reps));
        json_object_set_new(j, "median_s", json_real(ts.median));
        json_object_set_new(j, "min_s", json_real(ts.min));
        json_object_set_new(j, "max_s", json_real(ts.max));
        json_object_set_new(j, "flops", json_real(flops));
        json_object_set_new(j, "gflops", json_real(gflops));
        json_object_set_new(j, "kv_bytes", json_real(kv_bytes));
        json_object_set_new(j, "gbps", json_real(gbps));
        json_object_set_new(j, "check_rel_err", json_real(err));
        json_object_set_new(j, "peak_gflops", json_real(peak_gflops));
        json_object_set_new(j, "membw_read_gbps", json_real(mb.read_gbps));
        json_object_set_new(j, "compute_fraction", json_real(frac_compute));
        json_object_set_new(j, "bandwidth_fraction", json_real(frac_bw));
        json_object_set_new(j, "roofline_fraction", json_real(roofline));
        json_object_set_new(j, "roofline_bound", json_string(bound));
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (!s) {
            fprintf(stderr, "tokwatt: error: cannot format JSON\n");
            return TW_EXIT_FAIL;
        }
        printf("%s\n", s);
        free(s);
        return TW_EXIT_OK;
    }
    const char *head[] = {"mode",  "batch",    "heads", "kv_heads",      "head_dim",
                          "seq",   "kv_dtype", "simd",  "threads",       "median_s",
                          "min_s", "GFLOP/s",  "GB/s",  "check_rel_err", "roofline"};
    tw_table t;
    tw_table_init(&t, 15, head);
    char roof[128];
    snprintf(roof, sizeof roof, "%.3f of %s (%.1f GFLOP/s, %.1f GB/s)", roofline, bound,
             peak_gflops, mb.read_gbps);
    tw_table_addf(&t, "%s|%d|%d|%d|%d|%d|%s|%s|%d|%.6g|%.6g|%.2f|%.2f|%.2g|%s", mode, o.batch,
                  o.heads, o.kv_heads, o.head_dim, o.seq, tw_dtype_name(o.kv_dtype),
                  tw_simd_name(o.simd), nthreads, ts.median, ts.min, gflops, gbps, err, roof);
    tw_table_print(&t, o.fmt, stdout);
    tw_table_free(&t);
    return TW_EXIT_OK;
}
