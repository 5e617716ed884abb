/* Device query (the first CUDA translation unit), and which image of the build's kernels a device
 * runs: native SASS or code JIT-compiled from the embedded PTX. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cuda_info.h"

extern "C" int tw_cuda_built(void) {
    return 1;
}

extern "C" tw_status tw_cuda_device_count(int *n) {
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        *n = 0;
        return TW_ERR(TW_ERR_DEVICE, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e),
                      cudaGetErrorName(e));
    }
    return TW_OK;
}

extern "C" tw_status tw_cuda_device_query(int device, tw_cuda_device_info *info) {
    memset(info, 0, sizeof *info);
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess)
        return TW_ERR(TW_ERR_DEVICE, "cudaGetDeviceProperties(%d): %s", device,
                      cudaGetErrorString(e));
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->total_mem = p.totalGlobalMem;
    info->l2_bytes = (size_t)p.l2CacheSize;
    info->mem_bus_bits = p.memoryBusWidth;
    int clk = 0;
    if (cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
        info->mem_clock_khz = clk;
    int prev = -1;
    if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) info->free_mem = fr;
        cudaSetDevice(prev);
    }
    return TW_OK;
}

extern "C" void tw_cuda_versions(char *runtime, size_t rn, char *driver, size_t dn) {
    int rv = 0, dv = 0;
    if (cudaRuntimeGetVersion(&rv) == cudaSuccess)
        snprintf(runtime, rn, "%d.%d", rv / 1000, (rv % 1000) / 10);
    else
        snprintf(runtime, rn, "unknown");
    if (cudaDriverGetVersion(&dv) == cudaSuccess && dv > 0)
        snprintf(driver, dn, "%d.%d", dv / 1000, (dv % 1000) / 10);
    else
        snprintf(driver, dn, "no driver");
}

/* Built with the same -gencode targets as every kernel of tw_cuda, so the image the driver picks
 * for it is the one every kernel runs. Never launched. */
__global__ void __launch_bounds__(32) tw_k_image_probe(int *flag) {
    if (flag) *flag = 1;
}

#ifndef TW_CUDA_SASS_ARCHS
#define TW_CUDA_SASS_ARCHS "?"
#endif
#ifndef TW_CUDA_PTX_ARCHS
#define TW_CUDA_PTX_ARCHS "?"
#endif

/* "80,90a,100" -> "sm_80,sm_90a,sm_100" (prefix each entry) */
static const char *tw_cuda_prefixed(const char *list, const char *prefix, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (const char *p = list; *p && used + 1 < n;) {
        size_t len = strcspn(p, ",");
        int w = snprintf(buf + used, n - used, "%s%s%.*s", used ? "," : "", prefix, (int)len, p);
        if (w < 0) break;
        used += (size_t)w;
        p += len + (p[len] == ',');
    }
    return buf;
}

extern "C" const char *tw_cuda_build_sass(void) {
    static char buf[128];
    return tw_cuda_prefixed(TW_CUDA_SASS_ARCHS, "sm_", buf, sizeof buf);
}

extern "C" const char *tw_cuda_build_ptx(void) {
    static char buf[64];
    return tw_cuda_prefixed(TW_CUDA_PTX_ARCHS, "compute_", buf, sizeof buf);
}

extern "C" tw_status tw_cuda_image_query(int device, tw_cuda_image_info *out) {
    memset(out, 0, sizeof *out);
    int prev = -1;
    cudaError_t e = cudaGetDevice(&prev);
    if (e == cudaSuccess && device >= 0) e = cudaSetDevice(device);
    if (e != cudaSuccess)
        return TW_ERR(TW_ERR_DEVICE, "CUDA device %d: %s (%s)", device, cudaGetErrorString(e),
                      cudaGetErrorName(e));
    int dev = device >= 0 ? device : prev, major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, tw_k_image_probe);
    if (device >= 0 && prev >= 0) cudaSetDevice(prev);
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
        (void)cudaGetLastError();
        snprintf(out->mode, sizeof out->mode, "none");
        snprintf(out->summary, sizeof out->summary,
                 "no image for compute capability %d.%d (SASS %s, PTX %s): %s", major, minor,
                 tw_cuda_build_sass(), tw_cuda_build_ptx(), cudaGetErrorName(e));
        return TW_OK;
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return TW_ERR(TW_ERR_DEVICE, "cudaFuncGetAttributes on device %d: %s (%s)", dev,
                      cudaGetErrorString(e), cudaGetErrorName(e));
    }
    out->runnable = 1;
    out->binary_version = fa.binaryVersion;
    out->ptx_version = fa.ptxVersion;
    char ent[16];
    const char *force = getenv("CUDA_FORCE_PTX_JIT");
    if (tw_cuda_image_native(fa.binaryVersion, fa.ptxVersion, TW_CUDA_SASS_ARCHS, ent,
                             sizeof ent)) {
        snprintf(out->mode, sizeof out->mode, "native");
        snprintf(out->summary, sizeof out->summary, "native SASS sm_%s on compute capability %d.%d",
                 ent, major, minor);
    } else {
        snprintf(out->mode, sizeof out->mode, "jit");
        snprintf(out->summary, sizeof out->summary,
                 "JIT from PTX compute_%d to sm_%d on compute capability %d.%d (%s)", fa.ptxVersion,
                 fa.binaryVersion, major, minor,
                 force && *force == '1' ? "CUDA_FORCE_PTX_JIT=1" : "this build has no SASS for it");
    }
    return TW_OK;
}
