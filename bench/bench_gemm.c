/* `tokwatt bench gemm`: times the CPU GEMM kernels (y = x . W^T, W [n, k] fp32 or bf16) after
 * checking their result against float64, reports GFLOP/s, weight GB/s and the roofline fraction
 * (measured fp32 FMA peak; measured read bandwidth for m <= 8), and with --baseline runs
 * OpenBLAS sgemm on the same shape in a child process (bench/baseline_openblas) for a ratio. */
#include "cpu/tw_cpu.h"
#include "tw_cli.h"
#include "tw_route.h"
#include "tw_cmds.h"
#include "tw_machine.h"
#include "tw_util.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define GEMM_USAGE                                                                                 \
    "tokwatt bench gemm [--m M] [--n N] [--k K] [--dtype fp32|bf16] [--threads T] [--reps R] "     \
    "[--warmup W] [--baseline] [--simd LEVEL] [--membw-bytes B] "                                  \
    "[--format md|json|csv]"

#define GEMM_HELP                                                                                  \
    "usage: " GEMM_USAGE "\n\n"                                                                    \
    "Times y[m,n] = x[m,k] . W[n,k]^T on the CPU kernels (fp32 accumulation).\n"                   \
    "  --m, --n, --k   shape (default 2048 each; m=1 is decode, a GEMV)\n"                         \
    "  --dtype         weight type: fp32 or bf16 (default fp32)\n"                                 \
    "  --threads       worker threads, 0 = all cores (default 0)\n"                                \
    "  --reps          timed repetitions, the median is reported (default 10)\n"                   \
    "  --warmup        untimed repetitions first (default 2)\n"                                    \
    "  --baseline      also run OpenBLAS cblas_sgemm (bench/baseline_openblas) on the same\n"      \
    "                  shape; for bf16 it runs on the fp32-converted weights\n"                    \
    "  --simd          force a lower SIMD level than the CPU's best (portable, avx2, avx512,\n"    \
    "                  avx512bf16, amx, neon, neonbf16)\n"                                         \
    "  --membw-bytes   buffer for the read-bandwidth roofline of m <= 8 (default: auto, at "       \
    "least\n"                                                                                      \
    "                  twice the last-level cache)\n"                                              \
    "  --format        md (default), json or csv on stdout; logs go to stderr\n"                   \
    "The result is checked against float64 on sampled rows first (exit 3 on a mismatch): within\n" \
    "1e-4 (relative norm) where the activations stay fp32, 1e-2 where the kernel rounds them to\n" \
    "bf16 for the bf16 dot-product instructions (the path column says which).\n"                   \
    "For m <= 8 the weights rotate over copies totalling >= max(256 MiB, 2 x last-level cache),\n" \
    "so every rep streams them\n"                                                                  \
    "from memory as decode does, and the roofline is the measured read bandwidth.\n"

#define GEMM_CHECK_TOL      1e-4 /* relative norm error on sampled rows; fp32 activations */
#define GEMM_CHECK_TOL_BF16 1e-2 /* activations rounded to bf16 for the product */
#define BW_BOUND_M          8    /* m at or below which the shape is weight-bandwidth bound */

typedef struct {
    int present, ok, exit_code;
    char reason[256], core_verbose[64], corename[64], config[256];
    double median_s, min_s, max_s, gflops, gbps, check_err;
} baseline_result;

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static float rnd(void) { /* uniform [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) * 0x1p-52 - 1.0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Float64 check of sampled rows (first, last and evenly spread; up to 8) over all columns. */
static double check_rows(const tw_gemm_args *a, int *rows_checked) {
    int nrows = a->m < 8 ? a->m : 8;
    double num = 0, den = 0;
    for (int r = 0; r < nrows; r++) {
        int i = nrows == 1 ? 0 : (int)((long)r * (a->m - 1) / (nrows - 1));
        for (int j = 0; j < a->n; j++) {
            double s = 0;
            for (int p = 0; p < a->k; p++) {
                double wv =
                    a->w_dtype == TW_BF16
                        ? (double)tw_f32_from_bf16(((const tw_bf16 *)a->w)[(size_t)j * a->k + p])
                        : (double)((const float *)a->w)[(size_t)j * a->k + p];
                s += (double)a->x[(size_t)i * a->k + p] * wv;
            }
            double d = (double)a->y[(size_t)i * a->n + j] - s;
            num += d * d, den += s * s;
        }
    }
    *rows_checked = nrows;
    double e = den > 0 ? sqrt(num / den) : sqrt(num);
    return isfinite(e) ? e : INFINITY;
}

/* Path of bench/baseline_openblas: next to this executable (/proc/self/exe). */
static tw_status baseline_path(char *out, size_t n) {
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return TW_ERR(TW_ERR_IO, "cannot read /proc/self/exe");
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    if ((size_t)snprintf(out, n, "%s/baseline_openblas", self) >= n)
        return TW_ERR(TW_ERR_INVALID, "baseline path too long");
    return TW_OK;
}

/* Runs the baseline child with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its
 * environment only (so OpenBLAS detects the CPU and picks its best kernel) and
 * OPENBLAS_VERBOSE=2 (so it says which core kernel it chose); stdout and stderr are read
 * through one pipe and parsed. */
static void run_baseline(int m, int n, int k, tw_dtype dt, int threads, int reps, int warmup,
                         int copies, baseline_result *b) {
    memset(b, 0, sizeof *b);
    char path[PATH_MAX + 32];
    if (baseline_path(path, sizeof path) != TW_OK || access(path, X_OK) != 0) {
        snprintf(b->reason, sizeof b->reason,
                 "OpenBLAS baseline not built (%.150s missing: OpenBLAS or cblas.h not found at "
                 "configure time)",
                 path);
        return;
    }
    b->present = 1;
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 2, sizeof(char *));
    if (!envp) {
        snprintf(b->reason, sizeof b->reason, "out of memory");
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < ne; i++) {
        if (!strncmp(environ[i], "OPENBLAS_CORETYPE=", 18) ||
            !strncmp(environ[i], "OPENBLAS_L2_SIZE=", 17) ||
            !strncmp(environ[i], "OPENBLAS_VERBOSE=", 17))
            continue;
        envp[j++] = environ[i];
    }
    envp[j++] = "OPENBLAS_VERBOSE=2";
    envp[j] = NULL;

    char a_m[16], a_n[16], a_k[16], a_t[16], a_r[16], a_w[16], a_c[16];
    snprintf(a_m, sizeof a_m, "%d", m);
    snprintf(a_n, sizeof a_n, "%d", n);
    snprintf(a_k, sizeof a_k, "%d", k);
    snprintf(a_t, sizeof a_t, "%d", threads);
    snprintf(a_r, sizeof a_r, "%d", reps);
    snprintf(a_w, sizeof a_w, "%d", warmup);
    snprintf(a_c, sizeof a_c, "%d", copies);
    char *argv[] = {path, a_m, a_n, a_k, dt == TW_BF16 ? "bf16" : "fp32", a_t, a_r, a_w, a_c, NULL};
    int fds[2];
    if (pipe(fds) != 0) {
        free(envp);
        snprintf(b->reason, sizeof b->reason, "pipe failed");
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        snprintf(b->reason, sizeof b->reason, "cannot start %.150s: %.60s", path, strerror(rc));
        return;
    }
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char key[64], val[512];
        /* OpenBLAS may print its "Core: X" without a newline just before our lines. */
        char *core = strstr(line, "Core: ");
        if (core) {
            sscanf(core + 6, "%63s", b->core_verbose);
            continue;
        }
        char *tb = strstr(line, "tw_baseline ");
        if (!tb || sscanf(tb, "tw_baseline %63s %511[^\n]", key, val) != 2) {
            tw_log("baseline: %s", strtok(line, "\n") ? line : "");
            continue;
        }
        if (!strcmp(key, "median_s")) b->median_s = atof(val);
        if (!strcmp(key, "min_s")) b->min_s = atof(val);
        if (!strcmp(key, "max_s")) b->max_s = atof(val);
        if (!strcmp(key, "gflops")) b->gflops = atof(val);
        if (!strcmp(key, "gbps")) b->gbps = atof(val);
        if (!strcmp(key, "check_rel_err")) b->check_err = atof(val);
        if (!strcmp(key, "corename")) snprintf(b->corename, sizeof b->corename, "%.63s", val);
        if (!strcmp(key, "config")) snprintf(b->config, sizeof b->config, "%.255s", val);
    }
    if (f) fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    b->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    b->ok = b->exit_code == 0 && b->median_s > 0;
    if (!b->ok)
        snprintf(b->reason, sizeof b->reason, "baseline exited with %d%s", b->exit_code,
                 b->exit_code == 3 ? " (its sgemm result failed the float64 check)" : "");
}

int tw_bench_gemm(int argc, char **argv) {
    int routed = 0;
    int route_rc = tw_bench_route("gemm", argc, argv, &routed);
    if (routed) return route_rc;
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench gemm", GEMM_USAGE, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        fputs(GEMM_HELP, stdout);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    {
        const char *backend_cpu; /* "cpu" (anything else was routed above) */
        tw_args_str(&args, "--backend", "cpu", &backend_cpu);
    }
    int m, n, k, threads, reps, warmup;
    size_t membw_bytes;
    const char *dts, *simds;
    tw_format fmt;
    int baseline = tw_args_flag(&args, "--baseline");
    tw_dtype dt = TW_F32;
    tw_simd level = tw_cpu_simd_detect();
    tw_status st = TW_OK;
    if ((st = tw_args_int(&args, "--m", 2048, 1, 1 << 20, &m)) ||
        (st = tw_args_int(&args, "--n", 2048, 1, 1 << 20, &n)) ||
        (st = tw_args_int(&args, "--k", 2048, 1, 1 << 20, &k)) ||
        (st = tw_args_int(&args, "--threads", 0, 0, 4096, &threads)) ||
        (st = tw_args_int(&args, "--reps", 10, 1, 100000, &reps)) ||
        (st = tw_args_int(&args, "--warmup", 2, 0, 100000, &warmup)) ||
        (st = tw_args_str(&args, "--dtype", "fp32", &dts)) ||
        (st = tw_args_str(&args, "--simd", NULL, &simds)) ||
        (st = tw_args_bytes(&args, "--membw-bytes", "0", &membw_bytes)) ||
        (st = tw_args_format(&args, &fmt)) || (st = tw_args_finish(&args))) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (membw_bytes != 0 && membw_bytes < ((size_t)3 << 20)) {
        TW_ERR(TW_ERR_INVALID, "option --membw-bytes: %zu is below 3M", membw_bytes);
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (!strcmp(dts, "bf16") || !strcmp(dts, "bfloat16"))
        dt = TW_BF16;
    else if (strcmp(dts, "fp32") && strcmp(dts, "f32") && strcmp(dts, "float32")) {
        TW_ERR(TW_ERR_INVALID, "option --dtype: '%s' is not fp32 or bf16", dts);
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (simds) {
        if (tw_simd_parse(simds, &level) != TW_OK) {
            tw_error_ctx(TW_ERR_INVALID, "option --simd");
            tw_cli_fail(&args);
            tw_args_free(&args);
            return TW_EXIT_USAGE;
        }
        if (tw_cpu_simd_force(level) != TW_OK) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
            tw_args_free(&args);
            return TW_EXIT_FAIL;
        }
    }
    tw_args_free(&args);
    level = tw_cpu_simd_active();
    const int nt = tw_cpu_threads(threads);
    const int bw_bound = m <= BW_BOUND_M;
    const size_t wsz = dt == TW_BF16 ? 2 : 4;
    const size_t wbytes = (size_t)n * k * wsz;
    /* Decode streams the whole model each token: rotate over copies so no rep finds the
     * weights in the last-level cache. */
    int copies = 1;
    if (bw_bound) { /* at least twice the last-level cache, as the read ceiling */
        size_t want = (size_t)256 << 20, llc2 = 2 * tw_machine_llc_bytes();
        if (llc2 > want) want = llc2;
        copies = (int)((want + wbytes - 1) / wbytes);
        if (copies > 1024) copies = 1024;
        if (copies < 1) copies = 1;
    }

    float *x = aligned_alloc(64, ((sizeof(float) * (size_t)m * k) + 63) & ~(size_t)63); // [m, k]
    float *y = aligned_alloc(64, ((sizeof(float) * (size_t)m * n) + 63) & ~(size_t)63); // [m, n]
    float *wf = malloc(sizeof(float) * (size_t)n * k); // [n, k] fp32 source weights
    char *w = aligned_alloc(64, ((wbytes * copies) + 63) & ~(size_t)63); // copies x [n, k]
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!x || !y || !wf || !w || !t) {
        fprintf(stderr, "tokwatt: error: out of memory for m=%d n=%d k=%d (%d weight copies)\n", m,
                n, k, copies);
        free(x), free(y), free(wf), free(w), free(t);
        return TW_EXIT_FAIL;
    }
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = rnd();
    for (size_t i = 0; i < (size_t)n * k; i++) wf[i] = rnd();
    if (dt == TW_BF16)
        tw_bf16_from_f32_array((tw_bf16 *)w, wf, (size_t)n * k);
    else
        memcpy(w, wf, wbytes);
    free(wf);
    for (int c = 1; c < copies; c++) memcpy(w + (size_t)c * wbytes, w, wbytes);

    tw_gemm_args ga = {.m = m, .n = n, .k = k, .x = x, .w = w, .w_dtype = dt, .y = y};
    tw_gemm_info gi;
    gemm_cpu_describe(&ga, &gi);
    const double tol = gi.x_bf16 ? GEMM_CHECK_TOL_BF16 : GEMM_CHECK_TOL;
    for (size_t i = 0; i < (size_t)m * n; i++) y[i] = NAN; /* a kernel that skips rows fails */
    if (gemm_cpu(&ga, threads) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
        free(x), free(y), free(w), free(t);
        return TW_EXIT_FAIL;
    }
    int rows_checked = 0;
    double err = check_rows(&ga, &rows_checked);
    if (!(err <= tol)) {
        fprintf(stderr,
                "tokwatt: error: gemm result check failed (%s, %s, m=%d n=%d k=%d): relative "
                "error %.3e over %d sampled rows exceeds %.0e; no timing reported\n",
                gi.path, dts, m, n, k, err, rows_checked, tol);
        free(x), free(y), free(w), free(t);
        return TW_EXIT_CHECK;
    }
    tw_log("check (%s%s): rel err %.2e over %d sampled rows (tol %.0e)", gi.path,
           gi.x_bf16 ? ", activations rounded to bf16" : "", err, rows_checked, tol);

    for (int i = 0; i < warmup + reps; i++) {
        ga.w = w + (size_t)(i % copies) * wbytes;
        double t0 = tw_now_s();
        tw_status s = gemm_cpu(&ga, threads);
        double dt_s = tw_now_s() - t0;
        if (s != TW_OK) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
            free(x), free(y), free(w), free(t);
            return TW_EXIT_FAIL;
        }
        if (i >= warmup) t[i - warmup] = dt_s;
    }
    free(x), free(y), free(w);
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    const double tmin = t[0], tmax = t[reps - 1];
    free(t);
    const double flops = 2.0 * m * n * (double)k;
    const double gflops = flops / med / 1e9, gbps = (double)wbytes / med / 1e9;

    /* Roofline: the compute peak of the weight dtype at the same thread count and SIMD level
     * (bf16: the fastest bf16 multiply-add the CPU has); the read bandwidth of the machine (all
     * cores) for m <= 8. */
    double peak = 0, read_gbps = 0, roof;
    const char *roof_basis;
    char peak_method[240] = "";
    if (dt == TW_BF16) {
        tw_bf16_peak bp;
        if (tw_machine_bf16_peak(threads, &bp) != TW_OK) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
            return TW_EXIT_FAIL;
        }
        peak = bp.gflops;
        snprintf(peak_method, sizeof peak_method, "%s", bp.method);
    } else {
        if (tw_machine_fp32_peak(threads, &peak) != TW_OK) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
            return TW_EXIT_FAIL;
        }
        snprintf(peak_method, sizeof peak_method, "fp32 FMA (%s), %d threads",
                 tw_cpu_peak_method(TW_PEAK_FP32_FMA), nt);
    }
    char read_method[200] = "";
    if (bw_bound) {
        tw_membw_result mb;
        if (tw_machine_membw(0, membw_bytes, 3, &mb) != TW_OK) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_last_error());
            return TW_EXIT_FAIL;
        }
        read_gbps = mb.read_gbps;
        snprintf(read_method, sizeof read_method, "%s", mb.read_method);
        roof = gbps / read_gbps;
        roof_basis = "read_bandwidth";
    } else {
        roof = gflops / peak;
        roof_basis = dt == TW_BF16 ? "bf16_peak" : "fp32_peak";
    }
    /* a fraction above 1 means the ceiling was measured too low: say so, never hide it */
    const int over = roof > 1.0;
    if (over)
        fprintf(stderr,
                "tokwatt: WARNING: %.3f of the measured %s: the ceiling measurement is below what "
                "this kernel reached; the fraction is not meaningful\n",
                roof, bw_bound ? "read bandwidth" : "compute peak");

    baseline_result b;
    memset(&b, 0, sizeof b);
    if (baseline) {
        run_baseline(m, n, k, dt, nt, reps, warmup, copies, &b);
        if (!b.ok) tw_log("baseline: %s", b.reason);
    }
    const char *core = b.core_verbose[0] ? b.core_verbose : b.corename;
    const char *base_label =
        dt == TW_BF16 ? "openblas sgemm (fp32-converted bf16 weights)" : "openblas sgemm";
    double ratio = b.ok && b.gflops > 0 ? gflops / b.gflops : 0;

    if (fmt == TW_FMT_JSON) {
        json_t *o = json_object();
        json_object_set_new(o, "bench", json_string("gemm"));
        json_object_set_new(o, "m", json_integer(m));
        json_object_set_new(o, "n", json_integer(n));
        json_object_set_new(o, "k", json_integer(k));
        json_object_set_new(o, "dtype", json_string(dts));
        json_object_set_new(o, "simd", json_string(tw_simd_name(level)));
        json_object_set_new(o, "threads", json_integer(nt));
        json_object_set_new(o, "reps", json_integer(reps));
        json_object_set_new(o, "warmup", json_integer(warmup));
        json_object_set_new(o, "weight_copies", json_integer(copies));
        json_object_set_new(o, "gflops", json_real(gflops));
        json_object_set_new(o, "gbps", json_real(gbps));
        json_object_set_new(o, "median_s", json_real(med));
        json_object_set_new(o, "min_s", json_real(tmin));
        json_object_set_new(o, "max_s", json_real(tmax));
        json_object_set_new(o, "roofline_fraction", json_real(roof));
        json_object_set_new(o, "roofline_basis", json_string(roof_basis));
        json_object_set_new(o, dt == TW_BF16 ? "bf16_peak_gflops" : "fp32_peak_gflops",
                            json_real(peak));
        json_object_set_new(o, "peak_method", json_string(peak_method));
        json_object_set_new(o, "read_gbps", bw_bound ? json_real(read_gbps) : json_null());
        json_object_set_new(o, "read_method", bw_bound ? json_string(read_method) : json_null());
        json_object_set_new(o, "exceeds_ceiling", json_boolean(over));
        json_object_set_new(o, "check_rel_err", json_real(err));
        json_object_set_new(o, "check_tol", json_real(tol));
        json_object_set_new(o, "path", json_string(gi.path));
        json_object_set_new(o, "activations_bf16", json_boolean(gi.x_bf16));
        if (baseline) {
            json_t *bo = json_object();
            json_object_set_new(bo, "present", json_boolean(b.present));
            json_object_set_new(bo, "ok", json_boolean(b.ok));
            json_object_set_new(bo, "label", json_string(base_label));
            if (b.ok) {
                json_object_set_new(bo, "core", json_string(core));
                json_object_set_new(bo, "config", json_string(b.config));
                json_object_set_new(bo, "gflops", json_real(b.gflops));
                json_object_set_new(bo, "gbps", json_real(b.gbps));
                json_object_set_new(bo, "median_s", json_real(b.median_s));
                json_object_set_new(bo, "min_s", json_real(b.min_s));
                json_object_set_new(bo, "max_s", json_real(b.max_s));
                json_object_set_new(bo, "check_rel_err", json_real(b.check_err));
                json_object_set_new(o, "ratio_to_openblas", json_real(ratio));
            } else {
                json_object_set_new(bo, "reason", json_string(b.reason));
            }
            json_object_set_new(o, "baseline", bo);
        }
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        const char *head[] = {"impl",  "simd/core",   "dtype",    "m",           "n",
                              "k",     "threads",     "GFLOP/s",  "median_s",    "min_s",
                              "max_s", "weight_GB/s", "roofline", "vs_openblas", "path"};
        tw_table tb;
        tw_table_init(&tb, 15, head);
        char roofs[96], ratios[32] = "";
        snprintf(roofs, sizeof roofs, "%.3f of %s %.1f %s%s", roof, bw_bound ? "read" : "peak",
                 bw_bound ? read_gbps : peak, bw_bound ? "GB/s" : "GFLOP/s",
                 over ? " EXCEEDS CEILING" : "");
        if (b.ok) snprintf(ratios, sizeof ratios, "%.3f", ratio);
        tw_table_addf(&tb, "tokwatt|%s|%s|%d|%d|%d|%d|%.2f|%.6f|%.6f|%.6f|%.2f|%s|%s|%s",
                      tw_simd_name(level), dts, m, n, k, nt, gflops, med, tmin, tmax, gbps, roofs,
                      ratios, gi.path);
        if (b.ok)
            tw_table_addf(&tb, "%s|%s|%s|%d|%d|%d|%d|%.2f|%.6f|%.6f|%.6f|%.2f||1.000|", base_label,
                          core, "fp32", m, n, k, nt, b.gflops, b.median_s, b.min_s, b.max_s,
                          b.gbps);
        tw_table_print(&tb, fmt, stdout);
        tw_table_free(&tb);
        if (fmt == TW_FMT_MD) {
            if (bw_bound)
                printf("\nweights rotate over %d copies (%.0f MiB) so each rep streams them from "
                       "memory\n",
                       copies, (double)wbytes * copies / (1 << 20));
            printf("\nceiling: %s\n", bw_bound ? read_method : peak_method);
            if (baseline && !b.ok) printf("\nbaseline: %s\n", b.reason);
            if (b.ok)
                printf("\nOpenBLAS: core %s (verbose line: %s), %s\n", b.corename,
                       b.core_verbose[0] ? b.core_verbose : "none", b.config);
        }
    }
    if (baseline && b.present && !b.ok && b.exit_code == 3) return TW_EXIT_CHECK;
    return TW_EXIT_OK;
}
