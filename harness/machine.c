/* Machine calibration: memory bandwidth (read/copy/triad), the fp32 peak and the bf16 peak.
 *
 * The read figure is the yardstick for decode (GEMV) efficiency, so it must be the best read
 * rate this machine sustains, not one loop's: every byte is loaded and summed (the sum is
 * consumed, so the loads cannot be elided) by several read kernels at the widest vectors the
 * CPU has (one sequential stream per thread left to the hardware prefetchers; 4, 8 and 16
 * streams side by side with software prefetch at two distances, as the GEMV kernels read their
 * weight rows), on every core, over buffers of at least twice the last-level cache, and the
 * best of all of them, best of reps, is kept. The work goes to the CPU backend's thread pool
 * (the threads the kernels use) in 4 MiB pieces handed out dynamically, so a descheduled thread
 * on a shared machine delays one piece, not a fixed half of the pass. */
#include "tw_machine.h"

#include "cpu/tw_cpu.h"
#include "cpu/tw_pool.h"
#include "tw_util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(TW_X86)
#include <immintrin.h>
#endif

#define CHUNK ((size_t)1 << 20) /* floats per task: 4 MiB */

/* ---- read kernels: sum n floats (n a multiple of 16 * streams), p 64-byte aligned ---------- */
typedef float (*read_fn)(const float *p, size_t n);

typedef struct {
    const char *name;
    read_fn fn;
} read_kernel;

#if defined(TW_X86)
/* S streams side by side (contiguous sub-ranges), one 64-byte line of each per step, each
 * prefetched PF bytes ahead (PF 0: hardware prefetch only). */
#define TW_READ512(NAME, S, PF, HINT)                                                              \
    __attribute__((target("avx512f"))) static float NAME(const float *p, size_t n) {               \
        __m512 acc[S];                                                                             \
        for (int s = 0; s < S; s++) acc[s] = _mm512_setzero_ps();                                  \
        const size_t per = n / S;                                                                  \
        for (size_t i = 0; i < per; i += 16) {                                                     \
            for (int s = 0; s < S; s++) {                                                          \
                const float *q = p + (size_t)s * per + i;                                          \
                if (PF) _mm_prefetch((const char *)q + PF, HINT);                                  \
                acc[s] = _mm512_add_ps(acc[s], _mm512_load_ps(q));                                 \
            }                                                                                      \
        }                                                                                          \
        for (int s = 1; s < S; s++) acc[0] = _mm512_add_ps(acc[0], acc[s]);                        \
        return _mm512_reduce_add_ps(acc[0]);                                                       \
    }
#define TW_READ256(NAME, S, PF, HINT)                                                              \
    __attribute__((target("avx2,fma"))) static float NAME(const float *p, size_t n) {              \
        __m256 acc[2 * S];                                                                         \
        for (int s = 0; s < 2 * S; s++) acc[s] = _mm256_setzero_ps();                              \
        const size_t per = n / S;                                                                  \
        for (size_t i = 0; i < per; i += 16) {                                                     \
            for (int s = 0; s < S; s++) {                                                          \
                const float *q = p + (size_t)s * per + i;                                          \
                if (PF) _mm_prefetch((const char *)q + PF, HINT);                                  \
                acc[2 * s] = _mm256_add_ps(acc[2 * s], _mm256_load_ps(q));                         \
                acc[2 * s + 1] = _mm256_add_ps(acc[2 * s + 1], _mm256_load_ps(q + 8));             \
            }                                                                                      \
        }                                                                                          \
        for (int s = 1; s < 2 * S; s++) acc[0] = _mm256_add_ps(acc[0], acc[s]);                    \
        float v[8];                                                                                \
        _mm256_storeu_ps(v, acc[0]);                                                               \
        return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];                              \
    }
/* one stream unrolled 4 lines deep so four loads are always in flight */
TW_READ512(read512_s4, 4, 0, _MM_HINT_T0) /* 4 sub-ranges, hardware prefetch */
TW_READ512(read512_s1, 1, 0, _MM_HINT_T0)
TW_READ512(read512_s8_pf1k, 8, 1024, _MM_HINT_T0)
TW_READ512(read512_s8_pf4k, 8, 4096, _MM_HINT_T1)
TW_READ512(read512_s16, 16, 0, _MM_HINT_T0)
TW_READ256(read256_s1, 1, 0, _MM_HINT_T0)
TW_READ256(read256_s4, 4, 0, _MM_HINT_T0)
TW_READ256(read256_s8_pf1k, 8, 1024, _MM_HINT_T0)
TW_READ256(read256_s8_pf4k, 8, 4096, _MM_HINT_T1)

static const read_kernel read_avx512[] = {
    {"avx512 loads, 1 stream/thread", read512_s1},
    {"avx512 loads, 4 streams/thread", read512_s4},
    {"avx512 loads, 8 streams/thread, prefetcht0 +1 KiB", read512_s8_pf1k},
    {"avx512 loads, 8 streams/thread, prefetcht1 +4 KiB", read512_s8_pf4k},
    {"avx512 loads, 16 streams/thread", read512_s16},
};
static const read_kernel read_avx2[] = {
    {"avx2 loads, 1 stream/thread", read256_s1},
    {"avx2 loads, 4 streams/thread", read256_s4},
    {"avx2 loads, 8 streams/thread, prefetcht0 +1 KiB", read256_s8_pf1k},
    {"avx2 loads, 8 streams/thread, prefetcht1 +4 KiB", read256_s8_pf4k},
};
#endif

__attribute__((noipa)) static float read_portable(const float *p, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int c = 0; c < 16; c++) acc[c] += p[i + c];
    float s = 0;
    for (int c = 0; c < 16; c++) s += acc[c];
    for (; i < n; i++) s += p[i];
    return s;
}
static const read_kernel read_port[] = {{"plain C loads, 1 stream/thread", read_portable}};

static const read_kernel *read_kernels(int *n) {
#if defined(TW_X86)
    tw_simd l = tw_cpu_simd_active();
    if (l >= TW_SIMD_AVX512 && l < TW_SIMD_NEON) {
        *n = (int)(sizeof read_avx512 / sizeof read_avx512[0]);
        return read_avx512;
    }
    if (l >= TW_SIMD_AVX2 && l < TW_SIMD_NEON) {
        *n = (int)(sizeof read_avx2 / sizeof read_avx2[0]);
        return read_avx2;
    }
#endif
    *n = 1;
    return read_port;
}

/* ---- pool jobs ------------------------------------------------------------------------------ */
typedef struct {
    float *a, *b, *c; /* the three arrays (read uses all three, back to back) */
    size_t n3;        /* floats per array */
    read_fn rd;
    _Atomic unsigned sum_bits; /* XOR of the pieces' sums: consumed, so no load is elided */
} bw_job;

static void bw_touch(void *arg, long t, int worker) {
    (void)worker;
    bw_job *j = arg;
    float *p = j->a + (size_t)t * CHUNK;
    for (size_t i = 0; i < CHUNK; i++)
        p[i] = (float)((((size_t)t * CHUNK + i) * 2654435761u) & 1023) * (1.0f / 1024);
}

static void bw_read(void *arg, long t, int worker) {
    (void)worker;
    bw_job *j = arg;
    float s = j->rd(j->a + (size_t)t * CHUNK, CHUNK);
    unsigned u;
    memcpy(&u, &s, sizeof u);
    atomic_fetch_xor_explicit(&j->sum_bits, u, memory_order_relaxed);
}

static void bw_copy(void *arg, long t, int worker) {
    (void)worker;
    bw_job *j = arg;
    memcpy(j->b + (size_t)t * CHUNK, j->a + (size_t)t * CHUNK, CHUNK * sizeof(float));
}

static void bw_triad(void *arg, long t, int worker) {
    (void)worker;
    bw_job *j = arg;
    const float s = 0.5f;
    float *a = j->a + (size_t)t * CHUNK;
    const float *b = j->b + (size_t)t * CHUNK, *c = j->c + (size_t)t * CHUNK;
    for (size_t i = 0; i < CHUNK; i++) a[i] = b[i] + s * c[i];
}

size_t tw_machine_llc_bytes(void) {
    size_t best = 0;
    int best_level = 0;
    for (int idx = 0; idx < 16; idx++) {
        char path[128], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int level = 0;
        if (!fgets(buf, sizeof buf, f) || sscanf(buf, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        f = fopen(path, "r");
        if (!f) continue;
        size_t v = 0;
        char unit = 0;
        if (fgets(buf, sizeof buf, f) && sscanf(buf, "%zu%c", &v, &unit) >= 1) {
            if (unit == 'K') v <<= 10;
            if (unit == 'M') v <<= 20;
            if (unit == 'G') v <<= 30;
            if (level > best_level || (level == best_level && v > best))
                best = v, best_level = level;
        }
        fclose(f);
    }
    return best;
}

static size_t mem_available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb << 10;
}

/* Fastest of `reps` passes of job fn over `tasks` pieces; returns seconds. */
static tw_status bw_time(int nt, long tasks, tw_pool_fn fn, bw_job *j, int reps, double *best) {
    *best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = tw_now_s();
        TW_TRY(tw_pool_run(nt, tasks, fn, j));
        double dt = tw_now_s() - t0;
        if (dt < *best) *best = dt;
    }
    return TW_OK;
}

/* quick: every read kernel once on the first size, then only the fastest of them, reps times on
 * every size, and no copy or triad (the run's ceiling: the same kernels and sizes at a fraction of
 * the time); otherwise every kernel reps times on every size, then copy and triad. */
static tw_status membw_measure(int threads, size_t bytes, int reps, int quick,
                               tw_membw_result *out) {
    if (!out) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: out is NULL");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: threads=%d", threads);
    if (reps < 1) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: reps=%d (must be >= 1)", reps);
    if (bytes != 0 && bytes < ((size_t)3 << 20))
        return TW_ERR(TW_ERR_INVALID,
                      "tw_machine_membw: bytes=%zu is too small (>= 3 MiB; it should exceed the "
                      "last-level cache several times)",
                      bytes);
    memset(out, 0, sizeof *out);
    const int nt = tw_cpu_threads(threads);
    out->threads = nt;
    out->llc_bytes = tw_machine_llc_bytes();
    /* sizes: the one asked for, or from max(512 MiB, 2 x LLC) doubling once, within a quarter
     * of the free memory */
    size_t sizes[2];
    int nsizes = 1;
    if (bytes) {
        sizes[0] = bytes;
    } else {
        size_t lo = (size_t)512 << 20;
        if (2 * out->llc_bytes > lo) lo = 2 * out->llc_bytes;
        size_t cap = mem_available_bytes() / 4;
        if (cap && lo > cap) lo = cap > ((size_t)64 << 20) ? cap : ((size_t)64 << 20);
        sizes[0] = lo;
        if (!cap || 2 * lo <= cap) sizes[nsizes++] = 2 * lo;
    }
    int nk, quick_kernel = 0;
    const read_kernel *ks = read_kernels(&nk);
    out->bytes_min = (size_t)-1;
    double best_read = 0;
    for (int si = 0; si < nsizes; si++) {
        /* three arrays of bytes/3, in whole pieces (rounded up, so that a size of twice the
         * LLC stays at least that): read streams all three back to back */
        const size_t n3 = ((sizes[si] / 3) / sizeof(float) + CHUNK - 1) / CHUNK * CHUNK;
        if (n3 == 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_membw: bytes=%zu", sizes[si]);
        float *buf = aligned_alloc(64, 3 * n3 * sizeof(float));
        if (!buf)
            return TW_ERR(TW_ERR_NOMEM, "tw_machine_membw: cannot allocate %zu bytes",
                          3 * n3 * sizeof(float));
        bw_job j = {.a = buf, .b = buf + n3, .c = buf + 2 * n3, .n3 = n3};
        const size_t total = 3 * n3 * sizeof(float);
        const long pieces_all = (long)(3 * n3 / CHUNK), pieces3 = (long)(n3 / CHUNK);
        tw_status st = tw_pool_run(nt, pieces_all, bw_touch, &j); /* page faults, untimed */
        if (quick && si == 0) { /* the scan: which kernel reads fastest here */
            double best_t = INFINITY;
            for (int ki = 0; ki < nk && st == TW_OK; ki++) {
                j.rd = ks[ki].fn;
                double t;
                st = bw_time(nt, pieces_all, bw_read, &j, 1, &t);
                if (st == TW_OK && t < best_t) best_t = t, quick_kernel = ki;
            }
        }
        for (int ki = quick ? quick_kernel : 0; ki < (quick ? quick_kernel + 1 : nk) && st == TW_OK;
             ki++) {
            j.rd = ks[ki].fn;
            double t;
            st = bw_time(nt, pieces_all, bw_read, &j, reps, &t);
            if (st == TW_OK && (double)total / t / 1e9 > best_read) {
                best_read = (double)total / t / 1e9;
                snprintf(out->read_method, sizeof out->read_method,
                         "%s, %d threads, %.0f MiB buffer, best of %d%s", ks[ki].name, nt,
                         (double)total / 1048576.0, reps,
                         quick ? " (the fastest of the read kernels, each timed once)" : "");
            }
        }
        if (!quick && si == nsizes - 1 && st == TW_OK) { /* copy and triad, largest buffer */
            double tc, tt;
            st = bw_time(nt, pieces3, bw_copy, &j, reps, &tc);
            if (st == TW_OK) st = bw_time(nt, pieces3, bw_triad, &j, reps, &tt);
            if (st == TW_OK) {
                out->copy_gbps = 2.0 * (double)n3 * sizeof(float) / tc / 1e9;
                out->triad_gbps = 3.0 * (double)n3 * sizeof(float) / tt / 1e9;
            }
        }
        free(buf);
        if (st != TW_OK) return tw_error_ctx(st, "tw_machine_membw");
        if (total < out->bytes_min) out->bytes_min = total;
        if (total > out->bytes) out->bytes = total;
        if (out->llc_bytes && total < 2 * out->llc_bytes) out->below_llc = 1;
        out->sizes++;
    }
    out->read_gbps = best_read;
    return TW_OK;
}

tw_status tw_machine_membw(int threads, size_t bytes, int reps, tw_membw_result *out) {
    return membw_measure(threads, bytes, reps, 0, out);
}

tw_status tw_machine_read_ceiling(int threads, int reps, tw_membw_result *out) {
    return membw_measure(threads, 0, reps, 1, out);
}

/* ---- compute peaks --------------------------------------------------------------------------- */
/* CPU time of the calling thread: the multiply-add rate while it actually runs, so a machine
 * shared with other jobs (preempted threads) does not lower the peak. */
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    tw_peak_kind kind;
    long iters;
    _Atomic(double) rate; /* sum over threads of flops / that thread's CPU time */
    _Atomic unsigned sink_bits;
    _Atomic int unsupported;
} peak_job;

static void peak_task(void *arg, long t, int worker) {
    (void)worker;
    peak_job *j = arg;
    float sink = (float)t;
    double c0 = thread_cpu_s();
    double fl = tw_cpu_peak_loop(j->kind, j->iters, &sink);
    double c = thread_cpu_s() - c0;
    if (fl <= 0) {
        atomic_store(&j->unsupported, 1);
        return;
    }
    double r = fl / (c > 1e-9 ? c : 1e-9), cur = atomic_load(&j->rate);
    while (!atomic_compare_exchange_weak(&j->rate, &cur, cur + r)) {
    }
    unsigned u;
    memcpy(&u, &sink, sizeof u);
    atomic_fetch_xor(&j->sink_bits, u); /* consumed: the loop cannot be elided */
}

/* Best of 3 runs (after a calibration run) of `nt` threads each running the loop once for
 * ~40 ms; GFLOP/s, or 0 when the kind is not available. */
static tw_status peak_of(tw_peak_kind kind, int nt, double *gflops) {
    *gflops = 0;
    float s = 0;
    if (tw_cpu_peak_loop(kind, 1, &s) <= 0) return TW_OK;
    long iters = 20000;
    for (int rep = 0; rep < 4; rep++) {
        peak_job j = {.kind = kind, .iters = iters};
        double t0 = tw_now_s();
        /* one task per thread: each thread runs one loop (tasks beyond threads would queue) */
        TW_TRY(tw_pool_run(nt, nt, peak_task, &j));
        double dt = tw_now_s() - t0;
        if (atomic_load(&j.unsupported)) return TW_OK;
        double g = atomic_load(&j.rate) / 1e9;
        if (rep > 0 && g > *gflops) *gflops = g;
        if (rep == 0) {
            double scale = 0.04 / (dt > 1e-6 ? dt : 1e-6);
            if (scale > 4096) scale = 4096;
            if (scale < 0.05) scale = 0.05;
            iters = (long)((double)iters * scale) + 1;
        }
    }
    return TW_OK;
}

tw_status tw_machine_fp32_peak(int threads, double *gflops) {
    if (!gflops) return TW_ERR(TW_ERR_INVALID, "tw_machine_fp32_peak: gflops is NULL");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_fp32_peak: threads=%d", threads);
    return peak_of(TW_PEAK_FP32_FMA, tw_cpu_threads(threads), gflops);
}

tw_status tw_machine_bf16_peak(int threads, tw_bf16_peak *out) {
    if (!out) return TW_ERR(TW_ERR_INVALID, "tw_machine_bf16_peak: out is NULL");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "tw_machine_bf16_peak: threads=%d", threads);
    memset(out, 0, sizeof *out);
    const int nt = tw_cpu_threads(threads);
    out->threads = nt;
    TW_TRY(peak_of(TW_PEAK_FP32_FMA, nt, &out->fma_gflops));
    TW_TRY(peak_of(TW_PEAK_BF16_DOT, nt, &out->dot_gflops));
    TW_TRY(peak_of(TW_PEAK_BF16_AMX, nt, &out->amx_gflops));
    tw_peak_kind best = TW_PEAK_FP32_FMA;
    out->gflops = out->fma_gflops;
    if (out->dot_gflops > out->gflops) out->gflops = out->dot_gflops, best = TW_PEAK_BF16_DOT;
    if (out->amx_gflops > out->gflops) out->gflops = out->amx_gflops, best = TW_PEAK_BF16_AMX;
    char others[160] = "";
    const tw_peak_kind kinds[3] = {TW_PEAK_FP32_FMA, TW_PEAK_BF16_DOT, TW_PEAK_BF16_AMX};
    const double vals[3] = {out->fma_gflops, out->dot_gflops, out->amx_gflops};
    const char *names[3] = {"fp32 FMA on widened bf16", "bf16 dot product", "AMX-BF16"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(others);
        if (kinds[i] == best) continue;
        if (vals[i] > 0)
            snprintf(others + n, sizeof others - n, "%s%s %.1f", n ? ", " : "", names[i], vals[i]);
        else
            snprintf(others + n, sizeof others - n, "%s%s: none", n ? ", " : "", names[i]);
    }
    snprintf(out->method, sizeof out->method, "%s (%s), %d threads, CPU time, best of 3; other: %s",
             names[best], tw_cpu_peak_method(best), nt, others);
    return TW_OK;
}

/* ---- the hook of the CPU backend's ceilings slot --------------------------------------------- */
static tw_status host_ceilings(int threads, int read_threads, tw_ceilings *out) {
    tw_membw_result mb;
    TW_TRY(tw_machine_read_ceiling(read_threads, 5, &mb));
    out->read_bw_bytes_per_s = mb.read_gbps * 1e9;
    snprintf(out->read_method, sizeof out->read_method, "measured (tokwatt bench membw read)");
    snprintf(out->read_detail, sizeof out->read_detail, "%s", mb.read_method);
    double gflops = 0;
    TW_TRY(tw_machine_fp32_peak(threads, &gflops));
    out->peak_flops = gflops * 1e9;
    out->peak_dtype = TW_F32;
    snprintf(out->peak_method, sizeof out->peak_method, "measured (fp32 FMA loop)");
    tw_bf16_peak bp;
    TW_TRY(tw_machine_bf16_peak(threads, &bp));
    out->peak_bf16_flops = bp.gflops * 1e9;
    snprintf(out->peak_bf16_method, sizeof out->peak_bf16_method, "measured bf16 peak: %.230s",
             bp.method);
    return TW_OK;
}

tw_status tw_machine_host_ceilings(int threads, tw_ceilings *out) {
    return host_ceilings(threads, threads, out);
}

tw_status tw_machine_host_ceilings_all_cores(int threads, tw_ceilings *out) {
    return host_ceilings(threads, 0, out);
}
