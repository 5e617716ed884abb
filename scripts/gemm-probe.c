/* A GEMM timing probe for kernel work (scripts/gemm-probe builds and runs it; not part of make
 * test): one gemm_cpu shape, called reps times, the fastest call reported. The best of many calls
 * is what the kernel can do when the host leaves it alone; on a shared machine the median of
 * `tokwatt bench gemm` is the figure a user sees, this is the one to compare kernel variants by
 * (interleave the variants' runs). --clock cpu times by the process's CPU time, which on a VM
 * leaves out the time its vCPUs were descheduled (steal); --clock wall by the monotonic clock.
 * Inputs are deterministic, non-zero and finite; the output is checked for NaN. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tw_cpu.h"

static double probe_now_s(clockid_t clk) {
    struct timespec t;
    clock_gettime(clk, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long probe_arg(const char *s, const char *name, long lo, long hi) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < lo || v > hi) {
        fprintf(stderr, "gemm-probe: %s must be an integer in [%ld, %ld], got '%s'\n", name, lo, hi,
                s);
        exit(2);
    }
    return v;
}

/* decode mode: one decode step's GEMVs of a dense Llama-family model, in the engine's order
 * (per layer q, fused k|v, o, fused gate|up, down; then the LM head), each on its own bf16
 * weights, so every call streams from memory as in `tokwatt run` (the plain mode calls one
 * matrix again and again, and part of it can stay in L3). Prints the best and the median step. */
static int probe_decode(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: gemm-probe decode LAYERS HIDDEN Q_DIM KV_DIM FFN VOCAB THREADS "
                        "REPS (KV_DIM: k and v together)\n");
        return 2;
    }
    const int layers = (int)probe_arg(argv[2], "LAYERS", 1, 1024),
              hidden = (int)probe_arg(argv[3], "HIDDEN", 1, 1 << 16),
              qdim = (int)probe_arg(argv[4], "Q_DIM", 1, 1 << 16),
              kvdim = (int)probe_arg(argv[5], "KV_DIM", 1, 1 << 16),
              ffn = (int)probe_arg(argv[6], "FFN", 1, 1 << 18),
              vocab = (int)probe_arg(argv[7], "VOCAB", 1, 1 << 22),
              threads = (int)probe_arg(argv[8], "THREADS", 1, 1024),
              reps = (int)probe_arg(argv[9], "REPS", 1, 1000);
    const int per = 5, nmat = layers * per + 1;
    const int shape[5][2] = {
        {qdim, hidden}, {kvdim, hidden}, {hidden, qdim}, {2 * ffn, hidden}, {hidden, ffn}};
    tw_gemm_args *g = calloc((size_t)nmat, sizeof *g);
    double *t = malloc(sizeof(double) * (size_t)reps);
    const int xmax = ffn > qdim ? (ffn > hidden ? ffn : hidden) : (qdim > hidden ? qdim : hidden);
    const int ymax = vocab > 2 * ffn ? vocab : 2 * ffn;
    float *x = malloc(sizeof(float) * (size_t)xmax), *y = malloc(sizeof(float) * (size_t)ymax);
    if (!g || !t || !x || !y) {
        fprintf(stderr, "gemm-probe: out of memory\n");
        return 1;
    }
    for (int i = 0; i < xmax; i++) x[i] = (float)((i * 7) % 13) * 0.1f - 0.55f;
    double bytes = 0;
    for (int i = 0; i < nmat; i++) {
        const int n = i < layers * per ? shape[i % per][0] : vocab;
        const int k = i < layers * per ? shape[i % per][1] : hidden;
        const size_t e = (size_t)n * k;
        uint16_t *w = malloc(e * sizeof *w);
        if (!w) {
            fprintf(stderr, "gemm-probe: cannot allocate weights %d (%d x %d)\n", i, n, k);
            return 1;
        }
        for (size_t j = 0; j < e; j++) w[j] = (uint16_t)(0x3c00 + (j * 3 + (size_t)i) % 11);
        g[i] = (tw_gemm_args){.m = 1, .n = n, .k = k, .x = x, .w = w, .w_dtype = TW_BF16, .y = y};
        bytes += (double)e * sizeof *w;
    }
    for (int r = 0; r < reps; r++) {
        const double t0 = probe_now_s(CLOCK_MONOTONIC);
        for (int i = 0; i < nmat; i++)
            if (gemm_cpu(&g[i], threads) != TW_OK) {
                fprintf(stderr, "gemm-probe: %s\n", tw_last_error());
                return 1;
            }
        t[r] = probe_now_s(CLOCK_MONOTONIC) - t0;
        for (int i = 0; i < vocab; i++)
            if (!isfinite(y[i])) {
                fprintf(stderr, "gemm-probe: output [%d] is not finite\n", i);
                return 1;
            }
    }
    for (int i = 0; i < reps; i++) /* sort for the median */
        for (int j = i + 1; j < reps; j++)
            if (t[j] < t[i]) {
                const double s = t[i];
                t[i] = t[j], t[j] = s;
            }
    tw_gemm_info gi;
    gemm_cpu_describe(&g[0], &gi);
    printf("decode step of %d GEMVs, %.3f GB of bf16 weights, threads=%d, %d steps (wall time): "
           "best %.1f ms (%.1f GB/s), median %.1f ms (%.1f GB/s), path %s\n",
           nmat, bytes * 1e-9, threads, reps, t[0] * 1e3, bytes / t[0] * 1e-9, t[reps / 2] * 1e3,
           bytes / t[reps / 2] * 1e-9, gi.path);
    for (int i = 0; i < nmat; i++) free((void *)g[i].w);
    free(g), free(t), free(x), free(y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "decode")) return probe_decode(argc, argv);
    if (argc != 8 || (strcmp(argv[7], "cpu") && strcmp(argv[7], "wall")) ||
        (strcmp(argv[4], "bf16") && strcmp(argv[4], "fp32"))) {
        fprintf(stderr, "usage: gemm-probe M N K bf16|fp32 THREADS REPS cpu|wall\n"
                        "       gemm-probe decode LAYERS HIDDEN Q_DIM KV_DIM FFN VOCAB THREADS "
                        "REPS\n");
        return 2;
    }
    const int m = (int)probe_arg(argv[1], "M", 1, 1 << 20),
              n = (int)probe_arg(argv[2], "N", 1, 1 << 24),
              k = (int)probe_arg(argv[3], "K", 1, 1 << 20);
    const int bf16 = !strcmp(argv[4], "bf16");
    const int threads = (int)probe_arg(argv[5], "THREADS", 1, 1024);
    const int reps = (int)probe_arg(argv[6], "REPS", 1, 1000000);
    const clockid_t clk = strcmp(argv[7], "cpu") ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID;
    float *x = malloc(sizeof(float) * (size_t)m * k), *y = malloc(sizeof(float) * (size_t)m * n);
    void *w = malloc((bf16 ? 2 : 4) * (size_t)n * k);
    if (!x || !y || !w) {
        fprintf(stderr, "gemm-probe: cannot allocate %dx%dx%d\n", m, n, k);
        return 1;
    }
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = (float)((i * 7) % 13) * 0.1f - 0.55f;
    for (size_t i = 0; i < (size_t)n * k; i++) {
        const float v = (float)((i * 3) % 11) * 0.01f - 0.045f;
        if (bf16) {
            uint32_t u;
            memcpy(&u, &v, sizeof u);
            ((uint16_t *)w)[i] = (uint16_t)(u >> 16);
        } else {
            ((float *)w)[i] = v;
        }
    }
    tw_gemm_args a = {
        .m = m, .n = n, .k = k, .x = x, .w = w, .w_dtype = bf16 ? TW_BF16 : TW_F32, .y = y};
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        const double t0 = probe_now_s(clk);
        if (gemm_cpu(&a, threads) != TW_OK) {
            fprintf(stderr, "gemm-probe: %s\n", tw_last_error());
            return 1;
        }
        const double t = probe_now_s(clk) - t0;
        if (t < best) best = t;
    }
    for (size_t i = 0; i < (size_t)m * n; i++)
        if (!isfinite(y[i])) {
            fprintf(stderr, "gemm-probe: output [%zu] is not finite\n", i);
            return 1;
        }
    tw_gemm_info gi;
    gemm_cpu_describe(&a, &gi);
    printf("m=%d n=%d k=%d %s threads=%d best of %d (%s time): %.1f us, %.1f GFLOP/s, path %s\n", m,
           n, k, argv[4], threads, reps, argv[7], best * 1e6, 2.0 * m * n * k / best * 1e-9,
           gi.path);
    free(x), free(y), free(w);
    return 0;
}
