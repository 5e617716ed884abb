/* CUDA benchmarks (issue 6): the device-to-device copy ceiling, bf16 GEMM (tokwatt mma.sync,
 * cuBLAS, and the experimental wgmma and wgmma_tma paths on sm_90a) with ratios to cuBLAS measured
 * in the same run, the M=1 GEMV, flash-attention prefill and split-KV decode. Every kernel figure
 * is also given as a fraction of the datasheet roofline (configs/devices.json) and of the measured
 * copy bandwidth. Entry point tw_bench_cuda(argc, argv): run by the `tokwatt-cuda-bench` executable
 * (cmake/cuda.cmake) and meant to be wired as `tokwatt bench cuda` / `--backend cuda`.
 *
 * Conventions: times are medians over --reps timed with CUDA events around each rep; the copy
 * bandwidth counts bytes read plus bytes written (a d2d copy of B bytes moves 2B); memory-bound
 * kernels count the bytes they must read (weights, K and V), so both are DRAM traffic per
 * second. Without CUDA (or a device) it fails with the reason; it never measures the CPU. */
#include "bench_cuda.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tw_backend.h"
#include "tw_bench.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_cuda_info.h"
#include "tw_devices.h"
#include "tw_util.h"

static const char *const CUDA_BENCH_USAGE =
    "tokwatt bench cuda [--device N] [--what all|copy|gemm|gemv|prefill|decode]\n"
    "                          [--impl tokwatt|wgmma|wgmma_tma[,..]] [--size 8192] [--reps 10]\n"
    "                          [--quick] [--out FILE.json] [--format md|json]\n"
    "  --impl: the GEMM implementations timed beside cuBLAS (default tokwatt); the experimental\n"
    "  sm_90a ones only when named, best each in a process of its own (a trap is sticky)\n";

/* A GEMM's output must agree with cuBLAS's to this relative 2-norm, or it gets no figure and the
 * benchmark exits 3: both take the same bf16 operands (x rounded to bf16) and accumulate in fp32,
 * so only summation order differs (~1e-6 expected); one wrong 128x128 tile in 8192^2 is ~2e-2.
 * cuBLAS itself is checked at sampled elements against a float64 dot product. */
#define CB_GEMM_TOL     1e-3
#define CB_SPOT_SAMPLES 256

#define CB_MAX_IMPL 4

typedef struct {
    tw_backend *be;
    int reps;
    char dev[256];
    int cc_major, cc_minor;
    double peak_bf16, peak_bw; /* datasheet, 0 if unknown */
    double copy_bps;           /* measured, read + written */
    double cublas_flops;       /* measured cuBLAS bf16 rate on the square GEMM, 0 if not run */
    const char *impls[CB_MAX_IMPL];
    int n_impls;
    json_t *failures; /* GEMMs refused a figure: differs from cuBLAS, or cuBLAS from float64 */
} cb_ctx;

static unsigned long long cb_rng = 0x243F6A8885A308D3ull;
static float cb_rnd(void) {
    cb_rng ^= cb_rng << 13;
    cb_rng ^= cb_rng >> 7;
    cb_rng ^= cb_rng << 17;
    return (float)((double)(cb_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ---- devices.json (the one reader, harness/tw_devices.h) ---------------------------------- */
static void cb_roofline(cb_ctx *c) {
    tw_device_entry d;
    int found = 0;
    if (tw_devices_lookup(c->dev, &d, &found) != TW_OK) {
        tw_log("bench cuda: %s: no roofline fractions", tw_last_error());
        tw_clear_error();
        return;
    }
    if (!found) return;
    c->peak_bf16 = d.peak_bf16_flops;
    c->peak_bw = d.mem_bw_bytes_per_s;
}

/* ---- helpers ----------------------------------------------------------------------------------
 */
/* Device buffer of n random values (fp32 or bf16); the host copy is returned in *host (to free)
 * when host is not NULL. */
static tw_status cb_alloc_fill(cb_ctx *c, size_t n, int bf16, void **out, void **host) {
    size_t esz = bf16 ? 2 : 4;
    void *h = malloc(n * esz);
    if (host) *host = NULL;
    if (!h) return TW_ERR(TW_ERR_NOMEM, "host buffer of %zu bytes", n * esz);
    for (size_t i = 0; i < n; i++) {
        float v = cb_rnd();
        if (bf16)
            ((tw_bf16 *)h)[i] = tw_bf16_from_f32(v);
        else
            ((float *)h)[i] = v;
    }
    tw_status st = c->be->ops->alloc(c->be, n * esz, out);
    if (st == TW_OK) st = c->be->ops->upload(c->be, *out, h, n * esz);
    if (host && st == TW_OK)
        *host = h;
    else
        free(h);
    return st;
}

typedef tw_status (*cb_fn)(cb_ctx *c, void *arg);

/* adapts a cb_fn to the runner's repetition function */
typedef struct {
    cb_ctx *c;
    cb_fn fn;
    void *arg;
} cb_call;
static tw_status cb_rep(void *state, tw_backend *be, int rep) {
    (void)be, (void)rep;
    cb_call *k = state;
    return k->fn(k->c, k->arg);
}

/* median seconds of one call of fn over c->reps, after 2 warm-up calls: the one benchmark
 * runner's timing (harness/bench/runner.c: CUDA events through the backend's timer) */
static tw_status cb_time(cb_ctx *c, cb_fn fn, void *arg, double *median_s) {
    cb_call k = {c, fn, arg};
    tw_bench_params p = {.warmup = 2, .reps = c->reps, .flush = 0};
    tw_bench_stats t;
    TW_TRY(tw_bench_time(c->be, cb_rep, &k, &p, &t));
    *median_s = t.median_s;
    return TW_OK;
}

/* ---- copy -------------------------------------------------------------------------------------
 */
typedef struct {
    void *dst, *src;
    size_t bytes;
} cb_copy;

static tw_status cb_copy_fn(cb_ctx *c, void *arg) {
    cb_copy *a = arg;
    return tw_backend_copy_d2d(c->be, a->dst, a->src, a->bytes);
}

static tw_status cb_bench_copy(cb_ctx *c, size_t bytes, json_t *out) {
    cb_copy a = {NULL, NULL, bytes};
    TW_TRY(c->be->ops->alloc(c->be, bytes, &a.dst));
    tw_status st = c->be->ops->alloc(c->be, bytes, &a.src);
    double t = 0;
    if (st == TW_OK) st = cb_time(c, cb_copy_fn, &a, &t);
    c->be->ops->free(c->be, a.dst);
    c->be->ops->free(c->be, a.src);
    TW_TRY(st);
    c->copy_bps = 2.0 * (double)bytes / t;
    json_t *o = json_object();
    json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(o, "time_s", json_real(t));
    json_object_set_new(o, "copy_bw_bytes_per_s", json_real(c->copy_bps));
    json_object_set_new(o, "counts", json_string("bytes read + bytes written"));
    if (c->peak_bw > 0)
        json_object_set_new(o, "fraction_of_datasheet_bw", json_real(c->copy_bps / c->peak_bw));
    json_object_set_new(out, "copy", o);
    return TW_OK;
}

/* ---- GEMM / GEMV ------------------------------------------------------------------------------
 */
static tw_status cb_gemm_fn(cb_ctx *c, void *arg) {
    return c->be->ops->gemm(c->be, (const tw_gemm_args *)arg);
}

/* relative 2-norm of a - b against b; infinite when a holds a non-finite value */
static double cb_rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

/* cuBLAS's y[m, n] at CB_SPOT_SAMPLES sampled elements against float64 dot products of the same
 * operands (x rounded to bf16, as the backend casts it before cuBLAS); relative 2-norm. */
static double cb_spot_check(const float *x, const tw_bf16 *w, const float *y, int m, int n, int k) {
    double num = 0, den = 0;
    unsigned long long r = 0x9E3779B97F4A7C15ull;
    for (int t = 0; t < CB_SPOT_SAMPLES; t++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        int i = (int)(r % (unsigned long long)m), j = (int)((r >> 32) % (unsigned long long)n);
        double ref = 0;
        for (int kk = 0; kk < k; kk++)
            ref += (double)tw_f32_from_bf16(tw_bf16_from_f32(x[(size_t)i * k + kk])) *
                   tw_f32_from_bf16(w[(size_t)j * k + kk]);
        float v = y[(size_t)i * n + j];
        if (!isfinite(v)) return INFINITY;
        num += (v - ref) * (v - ref);
        den += ref * ref;
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

static void cb_refuse(cb_ctx *c, const char *label, const char *impl, int m, int n, int k,
                      const char *against, double diff) {
    tw_log("bench cuda: error: %s %s %dx%dx%d differs from %s by %.3g (relative 2-norm, tolerance "
           "%g): no figure",
           label, impl, m, n, k, against, diff, CB_GEMM_TOL);
    json_t *o = json_object();
    json_object_set_new(o, "kernel", json_string(label));
    json_object_set_new(o, "impl", json_string(impl));
    json_object_set_new(o, "m", json_integer(m));
    json_object_set_new(o, "n", json_integer(n));
    json_object_set_new(o, "k", json_integer(k));
    json_object_set_new(o, "against", json_string(against));
    json_object_set_new(o, "rel_diff",
                        isfinite(diff) ? json_real(diff) : json_string("non-finite"));
    json_object_set_new(o, "tolerance", json_real(CB_GEMM_TOL));
    json_array_append_new(c->failures, o);
}

/* Times cuBLAS, then each of c->impls on one shape. cuBLAS is spot-checked against float64; each
 * implementation's whole output against cuBLAS's. A GEMM that fails its check gets no figure
 * (recorded in c->failures; the command then exits 3). */
static tw_status cb_bench_gemm(cb_ctx *c, int m, int n, int k, const char *label, json_t *arr) {
    void *x = NULL, *w = NULL, *y = NULL, *hx = NULL, *hw = NULL;
    float *ref = NULL, *got = NULL;
    size_t ny = (size_t)m * n;
    tw_status st = cb_alloc_fill(c, (size_t)m * k, 0, &x, &hx);
    if (st == TW_OK) st = cb_alloc_fill(c, (size_t)n * k, 1, &w, &hw);
    if (st == TW_OK) st = c->be->ops->alloc(c->be, ny * 4, &y);
    ref = malloc(ny * 4);
    got = malloc(ny * 4);
    if (st == TW_OK && (!ref || !got)) st = TW_ERR(TW_ERR_NOMEM, "host copies of y");
    tw_gemm_args g = {m, n, k, x, w, TW_BF16, y, 0, 0, 0};
    const char *impls[CB_MAX_IMPL + 1] = {"cublas"};
    for (int i = 0; i < c->n_impls; i++) impls[i + 1] = c->impls[i];
    double t_cublas = 0;
    for (int i = 0; i <= c->n_impls && st == TW_OK; i++) {
        double t = 0, diff = 0;
        st = tw_backend_set_option(c->be, "gemm", impls[i]);
        if (st == TW_OK) st = cb_time(c, cb_gemm_fn, &g, &t);
        if (st == TW_OK) st = c->be->ops->download(c->be, i ? got : ref, y, ny * 4);
        if (st != TW_OK) {
            st = tw_error_ctx(st, "%s %s %dx%dx%d", label, impls[i], m, n, k);
            break;
        }
        if (i == 0) {
            t_cublas = t;
            diff = cb_spot_check(hx, hw, ref, m, n, k);
            if (!(diff <= CB_GEMM_TOL)) { /* no reference: nothing else can be checked */
                cb_refuse(c, label, "cublas", m, n, k, "float64 at sampled elements", diff);
                break;
            }
        } else {
            diff = cb_rel_diff(got, ref, ny);
            if (!(diff <= CB_GEMM_TOL)) {
                cb_refuse(c, label, impls[i], m, n, k, "cuBLAS", diff);
                continue;
            }
        }
        double flops = 2.0 * m * n * k, bytes = (double)n * k * 2 + (double)m * k * 4 + ny * 4;
        if (i == 0 && !strcmp(label, "gemm")) c->cublas_flops = flops / t;
        json_t *o = json_object();
        json_object_set_new(o, "kernel", json_string(label));
        json_object_set_new(o, "impl", json_string(impls[i]));
        json_object_set_new(o, "m", json_integer(m));
        json_object_set_new(o, "n", json_integer(n));
        json_object_set_new(o, "k", json_integer(k));
        json_object_set_new(o, "time_s", json_real(t));
        json_object_set_new(o, "tflops", json_real(flops / t / 1e12));
        json_object_set_new(o, "bw_bytes_per_s", json_real(bytes / t));
        json_object_set_new(o, "ratio_to_cublas", json_real(t_cublas / t));
        if (c->peak_bf16 > 0)
            json_object_set_new(o, "fraction_of_peak_bf16", json_real(flops / t / c->peak_bf16));
        if (c->cublas_flops > 0)
            json_object_set_new(o, "fraction_of_cublas_peak",
                                json_real(flops / t / c->cublas_flops));
        if (c->copy_bps > 0)
            json_object_set_new(o, "fraction_of_copy_bw", json_real(bytes / t / c->copy_bps));
        json_object_set_new(o, i ? "rel_diff_to_cublas" : "rel_diff_to_float64_samples",
                            json_real(diff));
        json_array_append_new(arr, o);
    }
    (void)tw_backend_set_option(c->be, "gemm", "tokwatt");
    c->be->ops->free(c->be, x);
    c->be->ops->free(c->be, w);
    c->be->ops->free(c->be, y);
    free(hx);
    free(hw);
    free(ref);
    free(got);
    return st;
}

/* ---- attention --------------------------------------------------------------------------------
 */
static tw_status cb_prefill_fn(cb_ctx *c, void *arg) {
    return c->be->ops->attn_prefill(c->be, (const tw_attn_prefill_args *)arg);
}
static tw_status cb_decode_fn(cb_ctx *c, void *arg) {
    return c->be->ops->attn_decode(c->be, (const tw_attn_decode_args *)arg);
}

static tw_status cb_bench_attention(cb_ctx *c, int seq, int batch_dec, json_t *arr) {
    const int heads = 32, kvh = 8, d = 128;
    void *q = NULL, *kc = NULL, *vc = NULL, *out = NULL;
    int maxb = batch_dec > 1 ? batch_dec : 1;
    size_t ncache = (size_t)maxb * kvh * seq * d;
    size_t nq = (size_t)seq * heads * d;
    tw_status st = cb_alloc_fill(c, nq > (size_t)maxb * heads * d ? nq : (size_t)maxb * heads * d,
                                 0, &q, NULL);
    if (st == TW_OK) st = cb_alloc_fill(c, ncache, 1, &kc, NULL);
    if (st == TW_OK) st = cb_alloc_fill(c, ncache, 1, &vc, NULL);
    if (st == TW_OK)
        st = c->be->ops->alloc(
            c->be, (nq > (size_t)maxb * heads * d ? nq : (size_t)maxb * heads * d) * 4, &out);
    int *start = calloc((size_t)maxb, sizeof *start), *lens = malloc((size_t)maxb * sizeof *lens);
    if (st == TW_OK && (!start || !lens)) st = TW_ERR(TW_ERR_NOMEM, "lens");
    float scale = 1.0f / sqrtf((float)d);
    if (st == TW_OK) {
        /* prefill: one sequence of `seq` tokens, causal, GQA 32/8, bf16 cache */
        tw_attn_prefill_args a = {1, seq, heads, kvh,     d,   seq,   start,
                                  q, kc,  vc,    TW_BF16, out, scale, 0};
        double t = 0;
        st = cb_time(c, cb_prefill_fn, &a, &t);
        if (st == TW_OK) {
            double flops = 4.0 * d * heads * ((double)seq * (seq + 1) / 2.0);
            json_t *o = json_object();
            json_object_set_new(o, "kernel", json_string("attn_prefill"));
            json_object_set_new(o, "impl", json_string("tokwatt"));
            json_object_set_new(o, "seq", json_integer(seq));
            json_object_set_new(o, "heads", json_integer(heads));
            json_object_set_new(o, "kv_heads", json_integer(kvh));
            json_object_set_new(o, "head_dim", json_integer(d));
            json_object_set_new(o, "causal", json_true());
            json_object_set_new(o, "time_s", json_real(t));
            json_object_set_new(o, "tflops", json_real(flops / t / 1e12));
            if (c->peak_bf16 > 0)
                json_object_set_new(o, "fraction_of_peak_bf16",
                                    json_real(flops / t / c->peak_bf16));
            if (c->cublas_flops > 0)
                json_object_set_new(o, "fraction_of_cublas_peak",
                                    json_real(flops / t / c->cublas_flops));
            json_array_append_new(arr, o);
        }
    }
    if (st == TW_OK) {
        /* decode: batch_dec sequences of `seq` cached tokens each */
        for (int b = 0; b < maxb; b++) lens[b] = seq;
        tw_attn_decode_args a = {maxb, heads, kvh, d, seq, lens, q, kc, vc, TW_BF16, out, scale, 0};
        double t = 0;
        st = cb_time(c, cb_decode_fn, &a, &t);
        if (st == TW_OK) {
            double bytes = 2.0 * maxb * kvh * (double)seq * d * 2;
            json_t *o = json_object();
            json_object_set_new(o, "kernel", json_string("attn_decode"));
            json_object_set_new(o, "impl", json_string("tokwatt"));
            json_object_set_new(o, "batch", json_integer(maxb));
            json_object_set_new(o, "len", json_integer(seq));
            json_object_set_new(o, "heads", json_integer(heads));
            json_object_set_new(o, "kv_heads", json_integer(kvh));
            json_object_set_new(o, "head_dim", json_integer(d));
            json_object_set_new(o, "time_s", json_real(t));
            json_object_set_new(o, "bw_bytes_per_s", json_real(bytes / t));
            if (c->copy_bps > 0)
                json_object_set_new(o, "fraction_of_copy_bw", json_real(bytes / t / c->copy_bps));
            if (c->peak_bw > 0)
                json_object_set_new(o, "fraction_of_datasheet_bw",
                                    json_real(bytes / t / c->peak_bw));
            json_array_append_new(arr, o);
        }
    }
    free(start);
    free(lens);
    c->be->ops->free(c->be, q);
    c->be->ops->free(c->be, kc);
    c->be->ops->free(c->be, vc);
    c->be->ops->free(c->be, out);
    return st;
}

/* ---- report -----------------------------------------------------------------------------------
 */
static double jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v ? json_number_value(v) : NAN;
}

static void cb_print_md(json_t *root) {
    json_t *copy = json_object_get(root, "copy"), *pk = json_object_get(root, "cublas_peak");
    printf("### CUDA kernels on %s\n\n", json_string_value(json_object_get(root, "device")));
    if (copy)
        printf("Device-to-device copy: %.0f GB/s (read + written)\n\n",
               jnum(copy, "copy_bw_bytes_per_s") / 1e9);
    if (pk)
        printf("cuBLAS bf16 peak: %.1f TFLOP/s (%s)\n\n", jnum(pk, "flops") / 1e12,
               json_string_value(json_object_get(pk, "shape")));
    printf("| kernel | impl | shape | time (ms) | TFLOP/s | GB/s | x cuBLAS | of peak | of copy BW "
           "|\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(root, "results"), i, o) {
        char shape[96];
        const char *kern = json_string_value(json_object_get(o, "kernel"));
        if (json_object_get(o, "m"))
            snprintf(shape, sizeof shape, "%lldx%lldx%lld",
                     (long long)json_integer_value(json_object_get(o, "m")),
                     (long long)json_integer_value(json_object_get(o, "n")),
                     (long long)json_integer_value(json_object_get(o, "k")));
        else if (json_object_get(o, "batch"))
            snprintf(shape, sizeof shape, "b%lld len %lld",
                     (long long)json_integer_value(json_object_get(o, "batch")),
                     (long long)json_integer_value(json_object_get(o, "len")));
        else
            snprintf(shape, sizeof shape, "S=%lld D=%lld",
                     (long long)json_integer_value(json_object_get(o, "seq")),
                     (long long)json_integer_value(json_object_get(o, "head_dim")));
        printf("| %s | %s | %s | %.3f | %.1f | %.0f | %.2f | %.2f | %.2f |\n", kern,
               json_string_value(json_object_get(o, "impl")), shape, jnum(o, "time_s") * 1e3,
               jnum(o, "tflops"), jnum(o, "bw_bytes_per_s") / 1e9, jnum(o, "ratio_to_cublas"),
               jnum(o, "fraction_of_peak_bf16"), jnum(o, "fraction_of_copy_bw"));
    }
    json_array_foreach(json_object_get(root, "gemm_refused"), i, o) {
        json_t *d = json_object_get(o, "rel_diff");
        char diff[32];
        if (json_is_string(d))
            snprintf(diff, sizeof diff, "%s", json_string_value(d));
        else
            snprintf(diff, sizeof diff, "%.3g", json_number_value(d));
        printf("| %s | %s | %lldx%lldx%lld | REFUSED: differs from %s by %s (tolerance %g) | | | | "
               "| |\n",
               json_string_value(json_object_get(o, "kernel")),
               json_string_value(json_object_get(o, "impl")),
               (long long)json_integer_value(json_object_get(o, "m")),
               (long long)json_integer_value(json_object_get(o, "n")),
               (long long)json_integer_value(json_object_get(o, "k")),
               json_string_value(json_object_get(o, "against")), diff, CB_GEMM_TOL);
    }
}

int tw_bench_cuda(int argc, char **argv) {
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench cuda", CUDA_BENCH_USAGE, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        printf("usage: %s", CUDA_BENCH_USAGE);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    int device, size, reps;
    const char *what, *outp, *impl_list;
    tw_format fmt;
    int quick = tw_args_flag(&args, "--quick");
    tw_status st;
    if ((st = tw_args_int(&args, "--device", 0, 0, 1024, &device)) ||
        (st = tw_args_int(&args, "--size", 8192, 16, 65536, &size)) ||
        (st = tw_args_int(&args, "--reps", 10, 1, 10000, &reps)) ||
        (st = tw_args_str(&args, "--what", "all", &what)) ||
        (st = tw_args_str(&args, "--impl", "tokwatt", &impl_list)) ||
        (st = tw_args_str(&args, "--out", NULL, &outp)) || (st = tw_args_format(&args, &fmt)) ||
        (st = tw_args_finish(&args))) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    const char *whats[] = {"all", "copy", "gemm", "gemv", "prefill", "decode"};
    int ok = 0;
    for (int i = 0; i < 6; i++) ok |= !strcmp(what, whats[i]);
    if (!ok || fmt == TW_FMT_CSV) {
        TW_ERR(TW_ERR_INVALID,
               ok ? "--format csv is not supported here (md or json)"
                  : "--what '%s' (all, copy, gemm, gemv, prefill, decode)",
               what);
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    cb_ctx c;
    memset(&c, 0, sizeof c);
    static char impl_buf[128];
    snprintf(impl_buf, sizeof impl_buf, "%s", impl_list);
    for (char *save = NULL, *tok = strtok_r(impl_buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int known = !strcmp(tok, "tokwatt") || !strcmp(tok, "wgmma") || !strcmp(tok, "wgmma_tma");
        for (int i = 0; i < c.n_impls; i++) known &= strcmp(tok, c.impls[i]) != 0;
        if (!known || c.n_impls == CB_MAX_IMPL) {
            TW_ERR(TW_ERR_INVALID, "--impl '%s': a list of tokwatt, wgmma, wgmma_tma, each once",
                   impl_list);
            tw_cli_fail(&args);
            tw_args_free(&args);
            return TW_EXIT_USAGE;
        }
        c.impls[c.n_impls++] = tok;
    }
    tw_args_free(&args);
    int all = !strcmp(what, "all");
    c.reps = reps;
    c.failures = json_array();
    if (tw_backend_create("cuda", 0, device, &c.be) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
        json_decref(c.failures);
        return TW_EXIT_FAIL;
    }
    tw_cuda_device_info info;
    if (tw_cuda_device_query(device, &info) == TW_OK) {
        snprintf(c.dev, sizeof c.dev, "%s", info.name);
        c.cc_major = info.cc_major;
        c.cc_minor = info.cc_minor;
    } else {
        tw_clear_error();
    }
    cb_roofline(&c);
    json_t *root = json_object(), *arr = json_array();
    char rt[32], drv[32], when[64];
    tw_cuda_versions(rt, sizeof rt, drv, sizeof drv);
    tw_utc_iso(when, sizeof when, tw_unix_now_s());
    json_object_set_new(root, "schema", json_string("tokwatt.bench.cuda/1"));
    json_object_set_new(root, "device", json_string(c.dev));
    json_object_set_new(root, "compute_capability", json_sprintf("%d.%d", c.cc_major, c.cc_minor));
    json_object_set_new(root, "cuda_runtime", json_string(rt));
    json_object_set_new(root, "cuda_driver", json_string(drv));
    json_object_set_new(root, "date", json_string(when));
    json_object_set_new(root, "git_commit", json_string(TW_GIT_COMMIT));
    json_object_set_new(root, "reps", json_integer(reps));
    json_object_set_new(root, "quick", json_boolean(quick));
    if (c.peak_bf16 > 0)
        json_object_set_new(root, "datasheet_peak_bf16_flops", json_real(c.peak_bf16));
    if (c.peak_bw > 0)
        json_object_set_new(root, "datasheet_mem_bw_bytes_per_s", json_real(c.peak_bw));
    json_object_set_new(root, "gemm_tolerance_rel", json_real(CB_GEMM_TOL));
    json_object_set_new(root, "gemm_refused", c.failures); /* no figure for these */
    json_object_set_new(root, "results", arr);

    int s = quick ? (size < 2048 ? size : 2048) : size;
    st = TW_OK;
    /* the copy ceiling first: the memory-bound kernels are quoted against it */
    if (st == TW_OK &&
        (all || !strcmp(what, "copy") || !strcmp(what, "gemv") || !strcmp(what, "decode")))
        st = cb_bench_copy(&c, quick ? ((size_t)256 << 20) : ((size_t)1 << 30), root);
    if (st == TW_OK && (all || !strcmp(what, "gemm"))) st = cb_bench_gemm(&c, s, s, s, "gemm", arr);
    if (st == TW_OK && c.cublas_flops > 0) {
        json_t *pk = json_object();
        json_object_set_new(pk, "flops", json_real(c.cublas_flops));
        json_object_set_new(pk, "shape", json_sprintf("%dx%dx%d bf16, fp32 accumulation", s, s, s));
        json_object_set_new(root, "cublas_peak", pk);
    }
    /* decode GEMMs (m <= 8 rows: the GEMV) at batch 1 and 8: the square shape, and with --size
     * 8192 Llama-3.1-8B's fused gate+up (28672 x 4096) and down (4096 x 14336) projections */
    const int gemv_shapes[3][2] = {{s, s}, {28672, 4096}, {4096, 14336}};
    for (int sh = 0; sh < (quick ? 1 : 3) && st == TW_OK && (all || !strcmp(what, "gemv")); sh++)
        for (int b = 1; b <= 8 && st == TW_OK; b += 7)
            st = cb_bench_gemm(&c, b, gemv_shapes[sh][0], gemv_shapes[sh][1], "gemv", arr);
    if (st == TW_OK && (all || !strcmp(what, "prefill") || !strcmp(what, "decode")))
        st = cb_bench_attention(&c, quick ? 1024 : 4096, quick ? 4 : 16, arr);
    if (st != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
        json_decref(root);
        tw_backend_destroy(c.be);
        return TW_EXIT_FAIL;
    }
    size_t refused = json_array_size(c.failures);
    char *js = json_dumps(root, JSON_INDENT(2));
    if (outp && js && tw_write_file_atomic(outp, js, strlen(js)) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
        st = TW_ERR_IO;
    }
    if (fmt == TW_FMT_JSON)
        printf("%s\n", js ? js : "{}");
    else
        cb_print_md(root);
    free(js);
    json_decref(root);
    tw_backend_destroy(c.be);
    if (st != TW_OK) return TW_EXIT_FAIL;
    if (refused) {
        fprintf(stderr,
                "tokwatt: error: %zu GEMM result(s) differ from their reference beyond %g: no "
                "figures for them (gemm_refused in the JSON)\n",
                refused, CB_GEMM_TOL);
        return TW_EXIT_CHECK;
    }
    return TW_EXIT_OK;
}
