/* Machine calibration: memory bandwidth (read/copy/triad) and fp32 peak. The read kernel is the
 * yardstick for decode (GEMV) efficiency, so it is the fastest honest read loop we have: every
 * byte is loaded and summed (the sum is consumed, so the loads cannot be elided), 32-byte AVX2
 * loads, 8 independent accumulators, OpenMP threads each streaming their own contiguous share
 * (first-touched by the same thread). */
#include "tw_machine.h"

#include "cpu/tw_cpu.h"
#include "tw_util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(TW_X86)
#include <immintrin.h>
#endif

/* Each thread's share of n elements: [s, e), aligned to 16 floats (64 bytes). */
static void share(size_t n, int parts, int i, size_t *s, size_t *e) {
    size_t chunk = ((n / (size_t)parts) + 15) & ~(size_t)15;
    *s = chunk * (size_t)i;
    *e = *s + chunk;
    if (*s > n) *s = n;
    if (*e > n || i == parts - 1) *e = n;
}

#if defined(TW_X86)
__attribute__((target("avx2,fma"))) static float read_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
    }
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                       _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    float t[8];
    _mm256_storeu_ps(t, a0);
    float s = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static float read_portable(const float *p, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int c = 0; c < 16; c++) acc[c] += p[i + c];
    float s = 0;
    for (int c = 0; c < 16; c++) s += acc[c];
    for (; i < n; i++) s += p[i];
    return s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

tw_status tw_machine_membw(int threads, size_t bytes, int reps, tw_membw_result *out) {
    if (!out) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: out is NULL");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: threads=%d", threads);
    if (reps < 1) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: reps=%d (must be >= 1)", reps);
    if (bytes == 0) bytes = (size_t)512 << 20;
    if (bytes < ((size_t)3 << 20))
        return TW_ERR(TW_ERR_INVALID,
                      "tw_machine_membw: bytes=%zu is too small (>= 3 MiB; it should exceed the "
                      "last-level cache several times)",
                      bytes);
    const int nt = tw_cpu_threads(threads);
    /* Three arrays of bytes/3 serve all kernels: read uses all three back to back as one
     * buffer of `bytes`, copy uses two (2/3 of bytes moved), triad three. */
    const size_t n3 = ((bytes / 3) / sizeof(float)) & ~(size_t)15; /* elements per array */
    float *buf = aligned_alloc(64, 3 * n3 * sizeof(float));
    if (!buf)
        return TW_ERR(TW_ERR_NOMEM, "tw_machine_membw: cannot allocate %zu bytes",
                      3 * n3 * sizeof(float));
    float *a = buf, *b = buf + n3, *c = buf + 2 * n3;
    const size_t nall = 3 * n3;
    /* First touch by the thread that will stream each share (NUMA placement, page faults
     * outside the timed loops). */
#pragma omp parallel num_threads(nt)
    {
        int team = omp_get_num_threads(), t = omp_get_thread_num();
        size_t s, e;
        share(nall, team, t, &s, &e);
        for (size_t i = s; i < e; i++) buf[i] = (float)((i * 2654435761u) & 1023) * (1.0f / 1024);
    }
    double *tr = malloc(sizeof(double) * 3 * (size_t)reps);
    if (!tr) {
        free(buf);
        return TW_ERR(TW_ERR_NOMEM, "tw_machine_membw: reps=%d", reps);
    }
    double *tc = tr + reps, *tt = tr + 2 * reps;
#if defined(TW_X86)
    const int use_avx2 = tw_cpu_simd_active() >= TW_SIMD_AVX2;
#endif
    volatile float sink = 0;
    const float scalar = 0.5f;
    for (int r = 0; r < reps; r++) {
        float total = 0;
        double t0 = tw_now_s();
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
            int team = omp_get_num_threads(), t = omp_get_thread_num();
            size_t s, e;
            share(nall, team, t, &s, &e);
#if defined(TW_X86)
            if (use_avx2)
                total += read_avx2(buf + s, e - s);
            else
#endif
                total += read_portable(buf + s, e - s);
        }
        tr[r] = tw_now_s() - t0;
        sink = sink + total;

        t0 = tw_now_s();
#pragma omp parallel num_threads(nt)
        {
            int team = omp_get_num_threads(), t = omp_get_thread_num();
            size_t s, e;
            share(n3, team, t, &s, &e);
            memcpy(b + s, a + s, (e - s) * sizeof(float));
        }
        tc[r] = tw_now_s() - t0;

        t0 = tw_now_s();
#pragma omp parallel num_threads(nt)
        {
            int team = omp_get_num_threads(), t = omp_get_thread_num();
            size_t s, e;
            share(n3, team, t, &s, &e);
            for (size_t i = s; i < e; i++) a[i] = b[i] + scalar * c[i];
        }
        tt[r] = tw_now_s() - t0;
    }
    (void)sink;
    const double bytes_arr = (double)n3 * sizeof(float);
    out->read_gbps = 3 * bytes_arr / median(tr, reps) / 1e9;
    out->copy_gbps = 2 * bytes_arr / median(tc, reps) / 1e9;
    out->triad_gbps = 3 * bytes_arr / median(tt, reps) / 1e9;
    out->bytes = 3 * n3 * sizeof(float);
    out->threads = nt;
    free(tr);
    free(buf);
    return TW_OK;
}

/* ---- fp32 peak: independent FMA chains, enough to cover latency x pipes ------------------- */
#define PEAK_ITERS 20000000L

#if defined(TW_X86)
__attribute__((target("avx2,fma"))) static float peak_avx2(long iters, float seed) {
    /* 10 chains: FMA latency 4-5 cycles x 2 pipes needs >= 10 in flight. */
    __m256 m = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    __m256 a[10];
    for (int i = 0; i < 10; i++) a[i] = _mm256_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 10; i++) a[i] = _mm256_fmadd_ps(a[i], m, add);
    __m256 s = a[0];
    for (int i = 1; i < 10; i++) s = _mm256_add_ps(s, a[i]);
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[7];
}

__attribute__((target("avx512f"))) static float peak_avx512(long iters, float seed) {
    __m512 m = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, add);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

static float peak_portable(long iters, float seed) {
    float a[32];
    for (int i = 0; i < 32; i++) a[i] = seed + (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 32; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < 32; i++) s += a[i];
    return s;
}

tw_status tw_machine_fp32_peak(int threads, double *gflops) {
    if (!gflops) return TW_ERR(TW_ERR_INVALID, "tw_machine_fp32_peak: gflops is NULL");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_fp32_peak: threads=%d", threads);
    const int nt = tw_cpu_threads(threads);
    const tw_simd level = tw_cpu_simd_active();
    double flops_per_iter; /* per thread */
    long iters;
    switch (level) {
    case TW_SIMD_AVX512:
        flops_per_iter = 12 * 16 * 2, iters = PEAK_ITERS / 2;
        break;
    case TW_SIMD_AVX2:
        flops_per_iter = 10 * 8 * 2, iters = PEAK_ITERS;
        break;
    default:
        flops_per_iter = 32 * 2, iters = PEAK_ITERS / 2;
        break;
    }
    volatile float sink = 0;
    double best = 0;
    /* Three short runs, best kept: the first also wakes up the cores and clocks. */
    for (int rep = 0; rep < 3; rep++) {
        float total = 0;
        double t0 = tw_now_s();
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
            float seed = (float)omp_get_thread_num() + sink;
#if defined(TW_X86)
            if (level == TW_SIMD_AVX512)
                total += peak_avx512(iters, seed);
            else if (level == TW_SIMD_AVX2)
                total += peak_avx2(iters, seed);
            else
#endif
                total += peak_portable(iters, seed);
        }
        double dt = tw_now_s() - t0;
        sink = sink + total;
        double g = flops_per_iter * (double)iters * nt / dt / 1e9;
        if (g > best) best = g;
    }
    (void)sink;
    *gflops = best;
    return TW_OK;
}
