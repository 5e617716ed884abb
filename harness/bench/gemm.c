/* The GEMM benchmark (tw_bench_run_gemm): y[m, n] = x[m, k] . W[n, k]^T on any backend, checked on
 * sampled rows against float64 before it is timed; GFLOP/s, weight GB/s and the fraction of the
 * backend's ceiling (its dtype's compute peak; the read bandwidth for m <= 8, where the weights
 * stream from memory as in decode). The baseline row: OpenBLAS sgemm in a child process on the
 * host, the backend's baseline implementation on an accelerator, on the same shape and data. */
#include "tw_bench.h"

#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tw_cpu.h"
#include "tw_machine.h"
#include "tw_util.h"

extern char **environ;

#define GEMM_CHECK_TOL      1e-4 /* relative norm error on sampled rows; fp32 activations */
#define GEMM_CHECK_TOL_BF16 1e-2 /* activations rounded to bf16 for the product */
#define GEMM_BW_BOUND_M     8    /* m at or below which the shape is weight-bandwidth bound */
#define GEMM_CHECK_ROWS     8

typedef struct {
    tw_bench_gemm_opts o;
    const char *impl; /* the row's impl column */
    int host, copies;
    size_t wbytes;
    float *hx, *hy; /* host x [m, k], the downloaded y [m, n] */
    void *hw;       /* host weights [n, k] w_dtype (one copy) */
    void *dx, *dw, *dy;
    tw_gemm_args ga;
    char path[192];
    int x_bf16;
    tw_bench_roof roof;
} gemm_state;

static uint64_t gemm_rng = 0x2545f4914f6cdd1dull;
static float gemm_rnd(void) { /* uniform [-1, 1) */
    gemm_rng ^= gemm_rng << 13;
    gemm_rng ^= gemm_rng >> 7;
    gemm_rng ^= gemm_rng << 17;
    return (float)((double)(gemm_rng >> 11) * 0x1p-52 - 1.0);
}

static tw_status gemm_setup(void *sp, tw_backend *be) {
    gemm_state *s = sp;
    const tw_bench_gemm_opts *o = &s->o;
    if (!tw_backend_supports(be, TW_OP_GEMM, o->w_dtype))
        return TW_ERR(TW_ERR_UNSUPPORTED, "backend %s does not run gemm with %s weights",
                      be->ops->name, tw_dtype_name(o->w_dtype));
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    s->host = d.kind == TW_DEVICE_HOST;
    s->wbytes = (size_t)o->n * o->k * tw_dtype_size(o->w_dtype);
    /* Decode streams the whole model each token: rotate over copies so no rep finds the weights
     * in a cache (host: twice the last-level cache, at least 256 MiB; device: 256 MiB). */
    s->copies = 1;
    if (o->m <= GEMM_BW_BOUND_M) {
        size_t want = (size_t)256 << 20, llc2 = s->host ? 2 * tw_machine_llc_bytes() : 0;
        if (llc2 > want) want = llc2;
        size_t c = (want + s->wbytes - 1) / s->wbytes;
        s->copies = c > 1024 ? 1024 : (int)(c < 1 ? 1 : c);
    }
    const size_t nx = (size_t)o->m * o->k, ny = (size_t)o->m * o->n, nw = (size_t)o->n * o->k;
    s->hx = malloc(sizeof(float) * nx);
    s->hy = malloc(sizeof(float) * ny);
    s->hw = malloc(s->wbytes);
    if (!s->hx || !s->hy || !s->hw)
        return TW_ERR(TW_ERR_NOMEM, "gemm m=%d n=%d k=%d: host buffers", o->m, o->n, o->k);
    for (size_t i = 0; i < nx; i++) s->hx[i] = gemm_rnd();
    for (size_t i = 0; i < nw; i++) {
        float v = gemm_rnd();
        if (o->w_dtype == TW_BF16)
            ((tw_bf16 *)s->hw)[i] = tw_bf16_from_f32(v);
        else
            ((float *)s->hw)[i] = v;
    }
    for (size_t i = 0; i < ny; i++) s->hy[i] = NAN; /* a kernel that skips rows fails */
    TW_TRY(be->ops->alloc(be, sizeof(float) * nx, &s->dx));
    TW_TRY(be->ops->alloc(be, sizeof(float) * ny, &s->dy));
    tw_status st = be->ops->alloc(be, s->wbytes * (size_t)s->copies, &s->dw);
    if (st != TW_OK)
        return tw_error_ctx(st, "gemm m=%d n=%d k=%d: %d weight copies", o->m, o->n, o->k,
                            s->copies);
    TW_TRY(be->ops->upload(be, s->dx, s->hx, sizeof(float) * nx));
    TW_TRY(be->ops->upload(be, s->dy, s->hy, sizeof(float) * ny));
    for (int c = 0; c < s->copies; c++)
        TW_TRY(be->ops->upload(be, (char *)s->dw + (size_t)c * s->wbytes, s->hw, s->wbytes));
    TW_TRY(be->ops->sync(be));
    s->ga = (tw_gemm_args){
        .m = o->m, .n = o->n, .k = o->k, .x = s->dx, .w = s->dw, .w_dtype = o->w_dtype, .y = s->dy};
    return TW_OK;
}

static tw_status gemm_run(void *sp, tw_backend *be, int rep) {
    gemm_state *s = sp;
    s->ga.w = (char *)s->dw + (size_t)(rep < 0 ? 0 : rep % s->copies) * s->wbytes;
    return be->ops->gemm(be, &s->ga);
}

/* Float64 check of sampled rows (first, last and evenly spread) over all columns. */
static tw_status gemm_check(void *sp, tw_backend *be, tw_bench_check *c) {
    gemm_state *s = sp;
    const tw_bench_gemm_opts *o = &s->o;
    TW_TRY(be->ops->download(be, s->hy, s->dy, sizeof(float) * (size_t)o->m * o->n));
    /* what the backend says its last gemm did (the CPU backend names its path and whether it
     * rounded the activations to bf16 for the bf16 dot-product instructions) */
    const char *path = tw_backend_get_option(be, "gemm_path");
    const char *impl = tw_backend_get_option(be, "gemm");
    const char *act = tw_backend_get_option(be, "gemm_activations");
    snprintf(s->path, sizeof s->path, "%s", path[0] ? path : impl[0] ? impl : "not reported");
    /* bf16 weights on a backend that does not say: assume the activations were rounded */
    s->x_bf16 = !strcmp(act, "bf16") || (o->w_dtype == TW_BF16 && !act[0]);
    c->tol = s->x_bf16 ? GEMM_CHECK_TOL_BF16 : GEMM_CHECK_TOL;
    int nrows = o->m < GEMM_CHECK_ROWS ? o->m : GEMM_CHECK_ROWS;
    tw_bench_err e = {0};
    for (int r = 0; r < nrows; r++) {
        int i = nrows == 1 ? 0 : (int)((long)r * (o->m - 1) / (nrows - 1));
        for (int j = 0; j < o->n; j++) {
            double acc = 0;
            for (int p = 0; p < o->k; p++) {
                size_t wi = (size_t)j * o->k + p;
                double wv = o->w_dtype == TW_BF16
                                ? (double)tw_f32_from_bf16(((const tw_bf16 *)s->hw)[wi])
                                : (double)((const float *)s->hw)[wi];
                acc += (double)s->hx[(size_t)i * o->k + p] * wv;
            }
            tw_bench_err_add(&e, s->hy[(size_t)i * o->n + j], acc);
        }
    }
    c->rel_err = tw_bench_err_value(&e);
    snprintf(c->what, sizeof c->what, "%.100s, %s weights, m=%d n=%d k=%d, %d sampled rows%s",
             s->path, tw_dtype_name(o->w_dtype), o->m, o->n, o->k, nrows,
             s->x_bf16 ? ", activations rounded to bf16" : "");
    return TW_OK;
}

static tw_status gemm_metrics(void *sp, tw_backend *be, const tw_bench_stats *t,
                              const tw_bench_check *c, tw_bench_report *r) {
    gemm_state *s = sp;
    const tw_bench_gemm_opts *o = &s->o;
    const int bw_bound = o->m <= GEMM_BW_BOUND_M;
    const double flops = 2.0 * o->m * o->n * (double)o->k;
    const double gflops = flops / t->median_s / 1e9, gbps = (double)s->wbytes / t->median_s / 1e9;
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    tw_bench_row *w = tw_bench_row_add(r);
    tw_bench_str(w, "impl", "impl", s->impl);
    tw_bench_str(w, "arch", "arch", d.arch);
    tw_bench_str(w, "dtype", "dtype", tw_dtype_name(o->w_dtype));
    tw_bench_int(w, "m", "m", o->m);
    tw_bench_int(w, "n", "n", o->n);
    tw_bench_int(w, "k", "k", o->k);
    tw_bench_int(w, "threads", "threads", s->host ? tw_cpu_threads(be->threads) : 0);
    tw_bench_real(w, "gflops", "GFLOP/s", "%.2f", gflops);
    tw_bench_real(w, "median_s", "median_s", "%.6f", t->median_s);
    tw_bench_real(w, "min_s", "min_s", "%.6f", t->min_s);
    tw_bench_real(w, "max_s", "max_s", "%.6f", t->max_s);
    tw_bench_real(w, "spread", "", NULL, t->spread);
    tw_bench_real(w, "gbps", "weight_GB/s", "%.2f", gbps);
    double ceiling = bw_bound ? s->roof.read_gbps : s->roof.peak_gflops;
    double frac = ceiling > 0 ? (bw_bound ? gbps : gflops) / ceiling : NAN;
    tw_bench_real(w, "roofline_fraction", "roofline", "%.3f", frac);
    if (isfinite(frac))
        tw_bench_text(w, "roofline_fraction", "%.3f of %s %.1f %s%s", frac,
                      bw_bound ? "read" : "peak", ceiling, bw_bound ? "GB/s" : "GFLOP/s",
                      frac > 1.0 ? " EXCEEDS CEILING" : "");
    else
        tw_bench_text(w, "roofline_fraction", "no ceiling: %.60s",
                      bw_bound ? s->roof.read_method : s->roof.peak_method);
    tw_bench_str(w, "roofline_basis", "",
                 bw_bound                ? "read_bandwidth"
                 : o->w_dtype == TW_BF16 ? "bf16_peak"
                                         : "fp32_peak");
    tw_bench_real(w, "peak_gflops", "", NULL, s->roof.peak_gflops > 0 ? s->roof.peak_gflops : NAN);
    tw_bench_str(w, "peak_method", "", s->roof.peak_method);
    tw_bench_real(w, "read_gbps", "", NULL, bw_bound ? s->roof.read_gbps : NAN);
    tw_bench_str(w, "read_method", "", bw_bound ? s->roof.read_method : NULL);
    tw_bench_flag_ceiling(r, w, frac, bw_bound ? "read bandwidth" : "compute peak");
    tw_bench_str(w, "vs_baseline", "vs_baseline", "");
    tw_bench_str(w, "path", "path", s->path);
    tw_bench_bool(w, "activations_bf16", "", s->x_bf16);
    tw_bench_real(w, "check_rel_err", "", NULL, c->rel_err);
    tw_bench_real(w, "check_tol", "", NULL, c->tol);
    tw_bench_int(w, "weight_copies", "", s->copies);
    tw_bench_int(w, "reps", "", t->reps);
    tw_bench_str(w, "timer", "", t->timer);
    tw_bench_str(w, "flush", "", t->flush);
    return TW_OK;
}

static void gemm_teardown(void *sp, tw_backend *be) {
    gemm_state *s = sp;
    be->ops->free(be, s->dx);
    be->ops->free(be, s->dy);
    be->ops->free(be, s->dw);
    free(s->hx);
    free(s->hy);
    free(s->hw);
    s->dx = s->dy = s->dw = s->hx = s->hy = s->hw = NULL;
}

static const tw_bench_def gemm_def = {.name = "gemm",
                                      .setup = gemm_setup,
                                      .run = gemm_run,
                                      .check = gemm_check,
                                      .metrics = gemm_metrics,
                                      .teardown = gemm_teardown};

/* ---- the OpenBLAS baseline (host) ------------------------------------------------------------ */
typedef struct {
    int ok, exit_code;
    char reason[256], core_verbose[64], corename[64], config[256];
    double median_s, min_s, max_s, gflops, gbps, check_err;
} openblas_result;

/* Path of bench/baseline_openblas: next to this executable (/proc/self/exe). */
static tw_status openblas_path(char *out, size_t n) {
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

/* Runs the baseline child with the user's OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its
 * environment only (so OpenBLAS detects the CPU and picks its kernel; or, with coretype, the
 * core named) and OPENBLAS_VERBOSE=2 (so it says which core kernel it chose); stdout and stderr
 * are read through one pipe and parsed. TW_TEST_OPENBLAS_CORETYPE (tests only) stands in for
 * what OpenBLAS would detect, to play a CPU that it does not know. */
static void openblas_run(const tw_bench_gemm_opts *o, int threads, const tw_bench_params *p,
                         int copies, const char *coretype, openblas_result *b) {
    memset(b, 0, sizeof *b);
    if (!coretype) coretype = getenv("TW_TEST_OPENBLAS_CORETYPE");
    char core_env[96] = "";
    if (coretype && *coretype)
        snprintf(core_env, sizeof core_env, "OPENBLAS_CORETYPE=%.60s", coretype);
    char path[PATH_MAX + 32];
    if (openblas_path(path, sizeof path) != TW_OK || access(path, X_OK) != 0) {
        tw_clear_error();
        snprintf(b->reason, sizeof b->reason,
                 "OpenBLAS baseline not built (%.150s missing: OpenBLAS or cblas.h not found at "
                 "configure time)",
                 path);
        return;
    }
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 3, sizeof(char *));
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
    if (core_env[0]) envp[j++] = core_env;
    envp[j] = NULL;
    char a_m[16], a_n[16], a_k[16], a_t[16], a_r[16], a_w[16], a_c[16];
    snprintf(a_m, sizeof a_m, "%d", o->m);
    snprintf(a_n, sizeof a_n, "%d", o->n);
    snprintf(a_k, sizeof a_k, "%d", o->k);
    snprintf(a_t, sizeof a_t, "%d", threads);
    snprintf(a_r, sizeof a_r, "%d", p->reps);
    snprintf(a_w, sizeof a_w, "%d", p->warmup);
    snprintf(a_c, sizeof a_c, "%d", copies);
    char *argv[] = {path, a_m, a_n, a_k, o->w_dtype == TW_BF16 ? "bf16" : "fp32",
                    a_t,  a_r, a_w, a_c, NULL};
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
            line[strcspn(line, "\n")] = '\0';
            fprintf(stderr, "baseline: %s\n", line); /* OpenBLAS's own words */
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
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    b->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    b->ok = b->exit_code == 0 && b->median_s > 0;
    if (!b->ok)
        snprintf(b->reason, sizeof b->reason, "baseline exited with %d%s", b->exit_code,
                 b->exit_code == 3 ? " (its sgemm result failed the float64 check)" : "");
}

/* The OpenBLAS cores (OPENBLAS_CORETYPE names) whose sgemm kernels this CPU's features can run,
 * best first (Cooperlake's and SapphireRapids' sgemm are SkylakeX's). An OpenBLAS older than the
 * CPU does not recognise it and falls back to a generic core (0.3.21 runs "Prescott", SSE3, on a
 * 2024 Xeon: 37 against SkylakeX's 216 GFLOP/s), which would make any kernel look several times
 * faster than "OpenBLAS". */
static int openblas_cores_for_cpu(const char **out, int max) {
    /* the kernels' own CPUID levels: avx512 is AVX-512F/BW/VL/DQ (SkylakeX's), avx2 AVX2 + FMA
     * (Haswell's), each with the OS's register state */
    int n = 0;
    if (n < max && tw_cpu_simd_supported(TW_SIMD_AVX512)) out[n++] = "SkylakeX";
    if (n < max && tw_cpu_simd_supported(TW_SIMD_AVX2)) out[n++] = "Haswell";
    return n;
}

/* The baseline's row and the ratio in the first row; TW_ERR_CHECK when the baseline's own check
 * failed (a baseline that computes something else is no yardstick). The baseline is OpenBLAS's
 * best kernel on this CPU: the core it detects, and, when that is none of the cores this CPU's
 * features can run (it did not recognise the CPU), each of those forced with OPENBLAS_CORETYPE;
 * the fastest is the row, and the note gives every figure. */
static tw_status openblas_row(const tw_bench_gemm_opts *o, int threads, const tw_bench_params *p,
                              int copies, tw_bench_report *r) {
    openblas_result runs[3];
    const char *forced[3] = {NULL, NULL, NULL};
    int nrun = 1;
    openblas_run(o, threads, p, copies, NULL, &runs[0]);
    const char *label =
        o->w_dtype == TW_BF16 ? "openblas sgemm (fp32-converted bf16 weights)" : "openblas sgemm";
    if (!runs[0].ok) {
        tw_bench_note(r, "baseline: %s", runs[0].reason);
        return runs[0].exit_code == 3
                   ? TW_ERR(TW_ERR_CHECK, "OpenBLAS baseline: its result failed the check")
                   : TW_OK;
    }
    const char *cores[2];
    const int ncores = openblas_cores_for_cpu(cores, 2);
    int known = ncores == 0;
    for (int i = 0; i < ncores; i++)
        if (!strcasecmp(runs[0].corename, cores[i])) known = 1;
    for (int i = 0; !known && i < ncores; i++) {
        openblas_run(o, threads, p, copies, cores[i], &runs[nrun]);
        if (runs[nrun].exit_code == 3)
            return TW_ERR(TW_ERR_CHECK,
                          "OpenBLAS baseline (OPENBLAS_CORETYPE=%s): its result "
                          "failed the check",
                          cores[i]);
        /* an OpenBLAS without that core (built without DYNAMIC_ARCH) runs its own instead: that
         * figure would carry the wrong name */
        if (runs[nrun].ok && strcasecmp(runs[nrun].corename, cores[i])) {
            char ran[64];
            snprintf(ran, sizeof ran, "%s", runs[nrun].corename);
            runs[nrun].ok = 0;
            snprintf(runs[nrun].reason, sizeof runs[nrun].reason, "not honoured: it ran %s", ran);
        }
        forced[nrun++] = cores[i];
    }
    int best = 0;
    for (int i = 1; i < nrun; i++)
        if (runs[i].ok && runs[i].gflops > runs[best].gflops) best = i;
    const openblas_result *b = &runs[best];
    tw_bench_row *w = tw_bench_row_add(r);
    tw_bench_str(w, "impl", "impl", label);
    tw_bench_str(w, "arch", "arch", b->core_verbose[0] ? b->core_verbose : b->corename);
    tw_bench_str(w, "dtype", "dtype", "fp32");
    tw_bench_int(w, "m", "m", o->m);
    tw_bench_int(w, "n", "n", o->n);
    tw_bench_int(w, "k", "k", o->k);
    tw_bench_int(w, "threads", "threads", threads);
    tw_bench_real(w, "gflops", "GFLOP/s", "%.2f", b->gflops);
    tw_bench_real(w, "median_s", "median_s", "%.6f", b->median_s);
    tw_bench_real(w, "min_s", "min_s", "%.6f", b->min_s);
    tw_bench_real(w, "max_s", "max_s", "%.6f", b->max_s);
    tw_bench_real(w, "gbps", "weight_GB/s", "%.2f", b->gbps);
    tw_bench_str(w, "roofline_fraction", "roofline", "");
    tw_bench_str(w, "vs_baseline", "vs_baseline", "1.000");
    tw_bench_str(w, "path", "path", "");
    tw_bench_real(w, "check_rel_err", "", NULL, b->check_err);
    tw_bench_str(w, "config", "", b->config);
    tw_bench_str(w, "core", "", b->corename);
    tw_bench_str(w, "core_detected", "", runs[0].corename);
    tw_bench_str(w, "core_forced", "", forced[best] ? forced[best] : "");
    tw_bench_note(r, "OpenBLAS: core %s (verbose line: %s), %s", b->corename,
                  b->core_verbose[0] ? b->core_verbose : "none", b->config);
    if (nrun > 1) {
        char tried[512];
        size_t len = 0;
        for (int i = 1; i < nrun && len < sizeof tried; i++) {
            if (runs[i].ok)
                len += (size_t)snprintf(tried + len, sizeof tried - len, "%s%s %.1f",
                                        i > 1 ? ", " : "", forced[i], runs[i].gflops);
            else
                len += (size_t)snprintf(tried + len, sizeof tried - len, "%s%s failed (%s)",
                                        i > 1 ? ", " : "", forced[i], runs[i].reason);
        }
        tw_bench_note(r,
                      "OpenBLAS detected core %s (%.1f GFLOP/s), not a core made for this "
                      "CPU's features (it does not recognise the CPU); forced with "
                      "OPENBLAS_CORETYPE: %s GFLOP/s; the baseline is the fastest, %s",
                      runs[0].corename, runs[0].gflops, tried, b->corename);
    }
    return TW_OK;
}

static void gemm_ratio(tw_bench_report *r, int base_row) {
    const tw_bench_cell *a = tw_bench_cell_get(&r->row[0], "gflops"),
                        *b = tw_bench_cell_get(&r->row[base_row], "gflops");
    if (!a || !b || a->kind != TW_BCELL_REAL || b->kind != TW_BCELL_REAL || !(b->r > 0)) return;
    tw_bench_real(&r->row[0], "ratio_to_baseline", "", NULL, a->r / b->r);
    tw_bench_text(&r->row[0], "vs_baseline", "%.3f", a->r / b->r);
}

tw_status tw_bench_run_gemm(tw_backend *be, const tw_bench_gemm_opts *o, const tw_bench_params *p,
                            int baseline, tw_bench_report *r) {
    snprintf(r->bench, sizeof r->bench, "gemm");
    snprintf(r->backend, sizeof r->backend, "%s", be->ops->name);
    gemm_state s;
    memset(&s, 0, sizeof s);
    s.o = *o;
    s.impl = "tokwatt";
    tw_device_desc d;
    memset(&d, 0, sizeof d);
    TW_TRY(tw_backend_describe(be, &d));
    const int host = d.kind == TW_DEVICE_HOST, bw_bound = o->m <= GEMM_BW_BOUND_M;
    /* the ceiling first: on a loaded host the calibration should not follow the kernel's heat */
    TW_TRY(tw_bench_roofline(be, host ? tw_cpu_threads(be->threads) : 0, o->w_dtype, bw_bound,
                             o->membw_bytes, &s.roof));
    tw_bench_check chk;
    TW_TRY(tw_bench_execute(&gemm_def, &s, be, p, r, &chk));
    tw_bench_note(r, "check (%s): rel err %.2e (tol %.0e)", chk.what, chk.rel_err, chk.tol);
    if (bw_bound) {
        tw_bench_note(r,
                      "weights rotate over %d copies (%.0f MiB) so each rep streams them from "
                      "memory",
                      s.copies, (double)s.wbytes * s.copies / (1 << 20));
        tw_bench_note(r, "ceiling: %s", s.roof.read_method);
    } else {
        tw_bench_note(r, "ceiling: %s", s.roof.peak_method);
    }
    if (!baseline) return TW_OK;
    if (host) {
        TW_TRY(openblas_row(o, tw_cpu_threads(be->threads), p, s.copies, r));
        if (r->nrows > 1) gemm_ratio(r, 1);
        return TW_OK;
    }
    /* an accelerator's own baseline implementation (cuBLAS on CUDA), same shape and data */
    const char *base = tw_backend_get_option(be, "gemm_baseline");
    if (!base[0]) {
        tw_bench_note(r, "baseline: backend %s names no baseline implementation", be->ops->name);
        return TW_OK;
    }
    char prev[64], basename[64];
    snprintf(prev, sizeof prev, "%s", tw_backend_get_option(be, "gemm"));
    snprintf(basename, sizeof basename, "%s", base);
    TW_TRY(tw_backend_set_option(be, "gemm", basename));
    gemm_state sb;
    memset(&sb, 0, sizeof sb);
    sb.o = *o;
    sb.impl = basename;
    sb.roof = s.roof;
    tw_status st = tw_bench_execute(&gemm_def, &sb, be, p, r, NULL);
    if (prev[0] && tw_backend_set_option(be, "gemm", prev) != TW_OK && st == TW_OK)
        st = tw_error_ctx(TW_ERR_INTERNAL, "restoring gemm %s", prev);
    if (st == TW_OK && r->nrows > 1) {
        tw_bench_text(&r->row[1], "vs_baseline", "1.000");
        gemm_ratio(r, 1);
    }
    return st;
}
