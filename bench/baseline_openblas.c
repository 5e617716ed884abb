/* OpenBLAS baseline for `tokwatt bench gemm --baseline`: times cblas_sgemm on the same shape
 * (y = x . W^T, W [n, k] row-major) and prints "tw_baseline KEY VALUE" lines that tokwatt
 * parses. For bf16 the weights are rounded to bf16 and widened back to fp32, so sgemm runs on
 * the fp32-converted weights. The result is checked against a float64 reference on sampled rows
 * before any time is reported (exit 3 on a wrong result).
 * usage: baseline_openblas M N K fp32|bf16 THREADS REPS WARMUP COPIES */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Declared by OpenBLAS (not in every cblas.h). */
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int num_threads);

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long arg_long(const char *s, const char *what, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "baseline_openblas: %s '%s' is not an integer in [%ld, %ld]\n", what, s,
                min, max);
        exit(2);
    }
    return v;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) { /* uniform [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) * 0x1p-52 - 1.0);
}

static float bf16_round(float f) { /* round to nearest even at 16 bits, back to fp32 */
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: baseline_openblas M N K fp32|bf16 THREADS REPS WARMUP COPIES\n");
        return 2;
    }
    int m = (int)arg_long(argv[1], "M", 1, 1 << 20), n = (int)arg_long(argv[2], "N", 1, 1 << 20);
    int k = (int)arg_long(argv[3], "K", 1, 1 << 20);
    int bf16 = !strcmp(argv[4], "bf16");
    if (!bf16 && strcmp(argv[4], "fp32")) {
        fprintf(stderr, "baseline_openblas: dtype '%s' is not fp32 or bf16\n", argv[4]);
        return 2;
    }
    int threads = (int)arg_long(argv[5], "THREADS", 1, 4096);
    int reps = (int)arg_long(argv[6], "REPS", 1, 100000);
    int warmup = (int)arg_long(argv[7], "WARMUP", 0, 100000);
    int copies = (int)arg_long(argv[8], "COPIES", 1, 1024);
    openblas_set_num_threads(threads);

    size_t wn = (size_t)n * k;
    float *x = malloc(sizeof(float) * (size_t)m * k);  // [m, k]
    float *w = malloc(sizeof(float) * wn * copies);    // copies x [n, k]
    float *y = malloc(sizeof(float) * (size_t)m * n);  // [m, n]
    double *t = malloc(sizeof(double) * (size_t)reps); // per-rep seconds
    if (!x || !w || !y || !t) {
        fprintf(stderr, "baseline_openblas: out of memory for m=%d n=%d k=%d copies=%d\n", m, n, k,
                copies);
        return 1;
    }
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = rnd();
    for (size_t i = 0; i < wn; i++) w[i] = bf16 ? bf16_round(rnd()) : rnd();
    for (int c = 1; c < copies; c++) memcpy(w + c * wn, w, sizeof(float) * wn);

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
    /* check sampled rows against float64 */
    int rows[8], nrows = m < 8 ? m : 8;
    for (int r = 0; r < nrows; r++)
        rows[r] = nrows == 1 ? 0 : (int)((long)r * (m - 1) / (nrows - 1));
    double num = 0, den = 0;
    for (int r = 0; r < nrows; r++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)x[(size_t)rows[r] * k + p] * (double)w[(size_t)j * k + p];
            double d = (double)y[(size_t)rows[r] * n + j] - s;
            num += d * d, den += s * s;
        }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    const double tol = 1e-4;
    printf("tw_baseline check_rel_err %.3e\n", err);
    if (!(err <= tol)) {
        printf("tw_baseline check fail\n");
        fprintf(stderr, "baseline_openblas: sgemm result check failed: rel err %.3e > %.0e\n", err,
                tol);
        return 3;
    }
    printf("tw_baseline check ok\n");

    for (int i = 0; i < warmup + reps; i++) {
        const float *wc = w + (size_t)(i % copies) * wn;
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, wc, k, 0.0f, y,
                    n);
        double dt = now_s() - t0;
        if (i >= warmup) t[i - warmup] = dt;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    printf("tw_baseline median_s %.9g\n", med);
    printf("tw_baseline min_s %.9g\n", t[0]);
    printf("tw_baseline max_s %.9g\n", t[reps - 1]);
    printf("tw_baseline gflops %.6g\n", 2.0 * m * n * (double)k / med / 1e9);
    printf("tw_baseline gbps %.6g\n", (double)wn * sizeof(float) / med / 1e9);
    printf("tw_baseline corename %s\n", openblas_get_corename());
    printf("tw_baseline config %s\n", openblas_get_config());
    printf("tw_baseline threads %d\n", threads);
    free(x), free(w), free(y), free(t);
    return 0;
}
