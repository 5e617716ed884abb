/* Run-time SIMD selection: CPUID plus the OS's XSAVE state (a CPU with AVX-512 under an OS that
 * doesn't save ZMM registers must not take that path). */
#include "tw_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(TW_X86)
#include <cpuid.h>
#include <pthread.h>

static unsigned long long tw_xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

typedef struct {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512bf16, os_avx, os_avx512;
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
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = (b >> 5) & 1;
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = (a >> 5) & 1;
    return f;
}

/* CPUID traps to the hypervisor in a VM (measured ~40 us per tw_cpu_simd_active call here),
 * and kernels consult the SIMD level on every call: probe once. pthread_once makes the first
 * concurrent callers wait for the one probe. */
static tw_x86_features tw_x86_cached;
static pthread_once_t tw_x86_once = PTHREAD_ONCE_INIT;
static void tw_x86_probe_once(void) {
    tw_x86_cached = tw_x86_probe_uncached();
}
static tw_x86_features tw_x86_probe(void) {
    pthread_once(&tw_x86_once, tw_x86_probe_once);
    return tw_x86_cached;
}
#endif

tw_simd tw_cpu_simd_detect(void) {
#if defined(TW_X86)
    tw_x86_features f = tw_x86_probe();
    if (f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma && f.f16c)
        return TW_SIMD_AVX512;
    if (f.os_avx && f.avx2 && f.fma && f.f16c) return TW_SIMD_AVX2;
#endif
    return TW_SIMD_PORTABLE;
}

const char *tw_cpu_features(void) {
    static char buf[256];
#if defined(TW_X86)
    tw_x86_features f = tw_x86_probe();
    snprintf(buf, sizeof buf, "%s%s%s%s%s%s%s%s", f.avx2 ? "avx2," : "", f.fma ? "fma," : "",
             f.f16c ? "f16c," : "", f.avx512f ? "avx512f," : "", f.avx512bw ? "avx512bw," : "",
             f.avx512vl ? "avx512vl," : "", f.avx512dq ? "avx512dq," : "",
             f.avx512bf16 ? "avx512bf16," : "");
    size_t n = strlen(buf);
    if (n)
        buf[n - 1] = '\0';
    else
        snprintf(buf, sizeof buf, "none");
#else
    snprintf(buf, sizeof buf, "portable (non-x86 host)");
#endif
    return buf;
}

const char *tw_simd_name(tw_simd level) {
    switch (level) {
    case TW_SIMD_PORTABLE:
        return "portable";
    case TW_SIMD_AVX2:
        return "avx2";
    case TW_SIMD_AVX512:
        return "avx512";
    }
    return "?";
}

/* -1: not forced. Set once by a command's main or a test, before kernels run. */
static int tw_simd_forced = -1;

tw_status tw_cpu_simd_force(tw_simd level) {
    if (level > tw_cpu_simd_detect())
        return TW_ERR(TW_ERR_UNSUPPORTED, "SIMD level %s is not supported by this CPU (best: %s)",
                      tw_simd_name(level), tw_simd_name(tw_cpu_simd_detect()));
    tw_simd_forced = (int)level;
    return TW_OK;
}

tw_simd tw_cpu_simd_active(void) {
    if (tw_simd_forced >= 0) return (tw_simd)tw_simd_forced;
    tw_simd best = tw_cpu_simd_detect();
    const char *env = getenv("TW_SIMD");
    if (env && *env) {
        tw_simd want = best;
        if (!strcmp(env, "portable"))
            want = TW_SIMD_PORTABLE;
        else if (!strcmp(env, "avx2"))
            want = TW_SIMD_AVX2;
        else if (!strcmp(env, "avx512"))
            want = TW_SIMD_AVX512;
        if (want < best) return want;
    }
    return best;
}

int tw_cpu_threads(int requested) {
    if (requested > 0) return requested;
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
}
