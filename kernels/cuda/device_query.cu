/* Device query: the first CUDA translation unit, so the CUDA build path runs from day one. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "tw_cuda_info.h"

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
