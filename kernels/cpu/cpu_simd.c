/* Run-time SIMD selection: CPUID plus the OS's XSAVE state (a CPU with AVX-512 under an OS that
 * doesn't save ZMM registers must not take that path). */
#include "tw_cpu.h"
#include "gemm_internal.h"
#include "cpu_state.h"

#include <pthread.h>
#include <time.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif
#endif

#if defined(TW_X86)
#include <cpuid.h>

static unsigned long long tw_xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

typedef struct {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512bf16, amx_bf16, amx_tile,
        os_avx, os_avx512, os_amx;
} tw_x86_features;

static tw_x86_features tw_x86_probe_uncached(void) {
    tw_x86_features f;
    memset(&f, 0, sizeof f);
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    int osxsave = (c >> 27) & 1;
    f.fma = (c >> 12) & 1;
    f.f16c = (c >> 29) & 1;
    int avx = (c >> 28) & 1;
    if (osxsave && avx) {
        unsigned long long xcr0 = tw_xgetbv0();
        f.os_avx = (xcr0 & 0x6) == 0x6;
        f.os_avx512 = (xcr0 & 0xe6) == 0xe6;
        f.os_amx = (xcr0 & 0x60000) == 0x60000; /* XTILECFG and XTILEDATA */
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = (b >> 5) & 1;
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.amx_bf16 = (d >> 22) & 1;
        f.amx_tile = (d >> 24) & 1;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = (a >> 5) & 1;
    return f;
}

/* CPUID traps to the hypervisor in a VM (measured ~40 us per tw_cpu_simd_active call here),
 * and kernels consult the SIMD level on every call: probe once. pthread_once makes the first
 * concurrent callers wait for the one probe. */
static tw_x86_features tw_x86_cached;
static int tw_amx_permitted; /* Linux granted this process the AMX tile data state */
static pthread_once_t tw_x86_once = PTHREAD_ONCE_INIT;
static void tw_x86_probe_once(void) {
    tw_x86_cached = tw_x86_probe_uncached();
    tw_x86_features f = tw_x86_cached;
    /* AMX's tile data is a dynamically enabled XSAVE feature: the process must ask the kernel
     * for it once (arch_prctl ARCH_REQ_XCOMP_PERM); without permission a tile instruction
     * faults, so the level is then not offered */
    if (f.amx_bf16 && f.amx_tile && f.os_amx && f.avx512bf16) tw_amx_permitted = tw_amx_request();
}
static tw_x86_features tw_x86_probe(void) {
    pthread_once(&tw_x86_once, tw_x86_probe_once);
    return tw_x86_cached;
}
#endif

#if defined(__aarch64__)
typedef struct {
    int asimd, bf16;
} tw_arm_features;

static tw_arm_features tw_arm_probe(void) {
    tw_arm_features f = {1, 0}; /* Advanced SIMD is part of every AArch64 CPU */
#if defined(__linux__)
    unsigned long h1 = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    f.asimd = (h1 & HWCAP_ASIMD) != 0;
    f.bf16 = (h2 & HWCAP2_BF16) != 0;
#endif
    return f;
}
#endif

/* The best level the CPU, the OS and this build support (CPUID only). */
static tw_simd tw_cpu_simd_cpuid(void) {
#if defined(TW_X86)
    tw_x86_features f = tw_x86_probe();
    if (f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma && f.f16c)
        return tw_amx_permitted ? TW_SIMD_AMX : f.avx512bf16 ? TW_SIMD_AVX512BF16 : TW_SIMD_AVX512;
    if (f.os_avx && f.avx2 && f.fma && f.f16c) return TW_SIMD_AVX2;
#elif defined(__aarch64__) && defined(TW_NEON)
    tw_arm_features f = tw_arm_probe();
    if (f.asimd) return f.bf16 ? TW_SIMD_NEONBF16 : TW_SIMD_NEON;
#endif
    return TW_SIMD_PORTABLE;
}

/* Whether the AMX tiles can be used (CPUID, XSAVE state, Linux permission). */
int tw_cpu_amx_usable(void) {
#if defined(TW_X86)
    (void)tw_x86_probe();
    return tw_amx_permitted;
#else
    return 0;
#endif
}

/* ---- the bf16 dot product against fp32 FMA -------------------------------------------------- */
static double tw_thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Calls of a peak loop taking about 0.2 ms: the first call warms up and sizes the rest. */
static long tw_loop_iters(double (*loop)(long, float *), float *sink) {
    long iters = 2000;
    double t0 = tw_thread_cpu_s();
    (void)loop(iters, sink);
    double dt = tw_thread_cpu_s() - t0;
    if (dt > 0 && dt < 2e-4) iters = (long)((double)iters * 2e-4 / dt) + 1;
    return iters;
}

/* The ratio of two loops' flop rates, each the best of TW_PROBE_ROUNDS calls taken in turns
 * (A B A B ...), in thread CPU time: a preempted or slowed call only lowers a rate, and a
 * neighbour loading the core for a while slows both loops alike. The decision it feeds (the
 * SIMD level, hence the rounding of a run) must not change from run to run: a best of 3 of one
 * loop, then of the other, once came out under 1.25x on a Zen 4 whose ratio is 2.0x. */
#define TW_PROBE_ROUNDS 9
static double tw_loop_ratio(double (*num)(long, float *), double (*den)(long, float *)) {
    float sink = 0;
    long it_num = tw_loop_iters(num, &sink), it_den = tw_loop_iters(den, &sink);
    double best_num = 0, best_den = 0;
    for (int r = 0; r < TW_PROBE_ROUNDS; r++) {
        double t0 = tw_thread_cpu_s();
        double fl = den(it_den, &sink);
        double dt = tw_thread_cpu_s() - t0;
        if (dt > 0 && fl / dt > best_den) best_den = fl / dt;
        t0 = tw_thread_cpu_s();
        fl = num(it_num, &sink);
        dt = tw_thread_cpu_s() - t0;
        if (dt > 0 && fl / dt > best_num) best_num = fl / dt;
    }
    return best_den > 0 ? best_num / best_den : 0;
}

static double tw_bf16_ratio_cached = -1;
static pthread_once_t tw_bf16_once = PTHREAD_ONCE_INIT;
static void tw_bf16_measure(void) {
    tw_bf16_ratio_cached = 0;
#if defined(TW_X86)
    if (tw_cpu_simd_cpuid() >= TW_SIMD_AVX512BF16)
        tw_bf16_ratio_cached = tw_loop_ratio(tw_peak_dot_bf16_avx512, tw_peak_fma_avx512);
#elif defined(__aarch64__) && defined(TW_NEON)
    if (tw_cpu_simd_cpuid() >= TW_SIMD_NEONBF16)
        tw_bf16_ratio_cached = tw_loop_ratio(tw_peak_dot_bf16_neon, tw_peak_fma_neon);
#endif
}

double tw_cpu_bf16_dot_ratio(void) {
    pthread_once(&tw_bf16_once, tw_bf16_measure);
    return tw_bf16_ratio_cached;
}

int tw_cpu_bf16_dot_preferred(void) {
    const char *env = getenv("TW_BF16_DOT");
    if (env && (!strcmp(env, "0") || !strcmp(env, "1"))) return env[0] == '1';
    return tw_cpu_bf16_dot_ratio() > 1.25;
}

tw_simd tw_cpu_simd_detect(void) {
    tw_simd best = tw_cpu_simd_cpuid();
    /* a bf16 dot product slower than FMA is not a better level */
    if (best == TW_SIMD_AVX512BF16 && !tw_cpu_bf16_dot_preferred()) return TW_SIMD_AVX512;
    if (best == TW_SIMD_NEONBF16 && !tw_cpu_bf16_dot_preferred()) return TW_SIMD_NEON;
    return best;
}

int tw_cpu_bf16_rounds_activations(void) {
    tw_simd l = tw_cpu_simd_active();
    return l == TW_SIMD_AVX512BF16 || l == TW_SIMD_AMX || l == TW_SIMD_NEONBF16;
}

double tw_cpu_peak_loop(tw_peak_kind kind, long iters, float *sink) {
    tw_simd l = tw_cpu_simd_active();
    switch (kind) {
    case TW_PEAK_FP32_FMA:
#if defined(TW_X86)
        if (l >= TW_SIMD_AVX512) return tw_peak_fma_avx512(iters, sink);
        if (l >= TW_SIMD_AVX2) return tw_peak_fma_avx2(iters, sink);
#elif defined(__aarch64__) && defined(TW_NEON)
        if (l >= TW_SIMD_NEON) return tw_peak_fma_neon(iters, sink);
#endif
        return tw_peak_fma_portable(iters, sink);
    case TW_PEAK_BF16_DOT:
#if defined(TW_X86)
        if (tw_cpu_simd_supported(TW_SIMD_AVX512BF16) && l >= TW_SIMD_AVX512)
            return tw_peak_dot_bf16_avx512(iters, sink);
#elif defined(__aarch64__) && defined(TW_NEON)
        if (tw_cpu_simd_supported(TW_SIMD_NEONBF16) && l >= TW_SIMD_NEON)
            return tw_peak_dot_bf16_neon(iters, sink);
#endif
        return 0;
    case TW_PEAK_BF16_AMX:
#if defined(TW_X86)
        if (tw_cpu_amx_usable() && l >= TW_SIMD_AVX512 && l < TW_SIMD_NEON)
            return tw_peak_amx_bf16(iters, sink);
#endif
        return 0;
    }
    return 0;
}

const char *tw_cpu_peak_method(tw_peak_kind kind) {
    tw_simd l = tw_cpu_simd_active();
    switch (kind) {
    case TW_PEAK_FP32_FMA:
#if defined(TW_X86)
        if (l >= TW_SIMD_AVX512) return "vfmadd231ps zmm, 16 independent chains";
        if (l >= TW_SIMD_AVX2) return "vfmadd231ps ymm, 12 independent chains";
#elif defined(__aarch64__) && defined(TW_NEON)
        if (l >= TW_SIMD_NEON) return "fmla v.4s, 16 independent chains";
#endif
        return "plain C multiply-add, 32 independent chains";
    case TW_PEAK_BF16_DOT:
#if defined(TW_X86)
        if (tw_cpu_simd_supported(TW_SIMD_AVX512BF16) && l >= TW_SIMD_AVX512)
            return "vdpbf16ps zmm, 16 independent chains";
#elif defined(__aarch64__) && defined(TW_NEON)
        if (tw_cpu_simd_supported(TW_SIMD_NEONBF16) && l >= TW_SIMD_NEON)
            return "bfdot v.4s, 16 independent chains";
#endif
        return NULL;
    case TW_PEAK_BF16_AMX:
#if defined(TW_X86)
        if (tw_cpu_amx_usable() && l >= TW_SIMD_AVX512 && l < TW_SIMD_NEON)
            return "tdpbf16ps 16x16x32 tiles, 4 independent accumulator tiles";
#endif
        return NULL;
    }
    return NULL;
}

const char *tw_cpu_features(void) {
    static char buf[256];
#if defined(TW_X86)
    tw_x86_features f = tw_x86_probe();
    snprintf(buf, sizeof buf, "%s%s%s%s%s%s%s%s%s%s", f.avx2 ? "avx2," : "", f.fma ? "fma," : "",
             f.f16c ? "f16c," : "", f.avx512f ? "avx512f," : "", f.avx512bw ? "avx512bw," : "",
             f.avx512vl ? "avx512vl," : "", f.avx512dq ? "avx512dq," : "",
             f.avx512bf16 ? "avx512bf16," : "", f.amx_tile ? "amx-tile," : "",
             f.amx_bf16 ? "amx-bf16," : "");
    size_t n = strlen(buf);
    if (n)
        buf[n - 1] = '\0';
    else
        snprintf(buf, sizeof buf, "none");
#elif defined(__aarch64__)
    tw_arm_features f = tw_arm_probe();
    snprintf(buf, sizeof buf, "%s%s", f.asimd ? "asimd" : "no-asimd", f.bf16 ? ",bf16" : "");
#else
    snprintf(buf, sizeof buf, "portable (no SIMD paths for this architecture)");
#endif
    return buf;
}

static const struct {
    tw_simd level;
    const char *name;
} tw_simd_names[] = {
    {TW_SIMD_PORTABLE, "portable"},     {TW_SIMD_AVX2, "avx2"}, {TW_SIMD_AVX512, "avx512"},
    {TW_SIMD_AVX512BF16, "avx512bf16"}, {TW_SIMD_AMX, "amx"},   {TW_SIMD_NEON, "neon"},
    {TW_SIMD_NEONBF16, "neonbf16"},
};

const char *tw_simd_name(tw_simd level) {
    for (size_t i = 0; i < sizeof tw_simd_names / sizeof tw_simd_names[0]; i++)
        if (tw_simd_names[i].level == level) return tw_simd_names[i].name;
    return "?";
}

static int tw_simd_lookup(const char *s, tw_simd *out) {
    for (size_t i = 0; s && i < sizeof tw_simd_names / sizeof tw_simd_names[0]; i++)
        if (!strcmp(s, tw_simd_names[i].name)) {
            *out = tw_simd_names[i].level;
            return 1;
        }
    return 0;
}

tw_status tw_simd_parse(const char *s, tw_simd *out) {
    if (tw_simd_lookup(s, out)) return TW_OK;
    return TW_ERR(TW_ERR_INVALID,
                  "'%s' is not a SIMD level (portable, avx2, avx512, avx512bf16, amx, neon, "
                  "neonbf16)",
                  s ? s : "(null)");
}

/* Same chain (x86 levels below 16, aarch64's from 16) and not above the detected level. */
int tw_cpu_simd_supported(tw_simd level) {
    tw_simd best = tw_cpu_simd_cpuid();
    if (level == TW_SIMD_PORTABLE) return 1;
    return (level >= TW_SIMD_NEON) == (best >= TW_SIMD_NEON) && level <= best;
}

/* The process level lives in the default state (cpu_state.c): set by a command's main or a test
 * before kernels run; a CPU backend's own level (its "simd" option) is in its state. */
tw_status tw_cpu_simd_force(tw_simd level) {
    return tw_cpu_state_set_simd(tw_cpu_state_default(), level);
}

tw_simd tw_cpu_simd_active(void) {
    int forced = atomic_load(&tw_cpu_state_default()->simd);
    if (forced >= 0) return (tw_simd)forced;
    const char *env = getenv("TW_SIMD");
    tw_simd want;
    if (env && *env && tw_simd_lookup(env, &want) && tw_cpu_simd_supported(want)) return want;
    return tw_cpu_simd_detect();
}

int tw_cpu_threads(int requested) {
    if (requested > 0) return requested;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
