/* Facts about CUDA devices, for `tokwatt info` and provenance. Plain C interface; implemented in
 * kernels/cuda/device_query.cu when CUDA is built, and answering "not built" otherwise. */
#ifndef TW_CUDA_INFO_H
#define TW_CUDA_INFO_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char name[256];
    int cc_major, cc_minor;
    int sm_count;
    size_t total_mem, free_mem;
    size_t l2_bytes;
    int mem_bus_bits;
    int mem_clock_khz;
} tw_cuda_device_info;

/* Which image of this build's kernels the driver runs on a device: the SASS embedded for its
 * compute capability ("native"), or code the driver compiled at load time from the embedded PTX
 * ("jit": a GPU newer than every SASS target, or CUDA_FORCE_PTX_JIT=1), or none. Read with
 * cudaFuncGetAttributes (binaryVersion, ptxVersion) on a probe kernel built like every other. */
typedef struct {
    int runnable;       /* 0: no image for the device (mode "none") */
    char mode[8];       /* "native", "jit" or "none" */
    int binary_version; /* SASS the driver loaded, cc * 10 (90 = sm_90) */
    int ptx_version;    /* virtual architecture that SASS was compiled from, cc * 10 */
    char summary[192];  /* e.g. "native SASS sm_90a" or "JIT from PTX compute_80 to sm_100" */
} tw_cuda_image_info;

/* The rule behind tw_cuda_image_info.mode, from cudaFuncGetAttributes' binaryVersion and
 * ptxVersion and the build's SASS list ("80,90a,100,120"): native when the loaded SASS is one the
 * build embeds and came from PTX of its own version (the entry, e.g. "90a", goes to `entry`);
 * otherwise the driver compiled it from the embedded PTX at load time. 1 native, 0 JIT. */
static inline int tw_cuda_image_native(int binary_version, int ptx_version, const char *sass_list,
                                       char *entry, size_t n) {
    if (binary_version != ptx_version) return 0;
    for (const char *p = sass_list; *p;) {
        size_t len = strcspn(p, ",");
        if (atoi(p) == binary_version) {
            snprintf(entry, n, "%.*s", (int)len, p);
            return 1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Whether this binary contains the CUDA backend (compile-time). */
int tw_cuda_built(void);

/* Number of devices; TW_ERR_UNSUPPORTED when CUDA was not built, TW_ERR_DEVICE (with the
 * runtime's message) when the driver can't be reached. */
tw_status tw_cuda_device_count(int *n);
tw_status tw_cuda_device_query(int device, tw_cuda_device_info *info);
/* CUDA runtime and driver versions as "13.0", or "not built". */
void tw_cuda_versions(char *runtime, size_t rn, char *driver, size_t dn);
/* The image of this build's kernels that runs on `device` (-1: the current device). A device with
 * no image is TW_OK with runnable = 0; errors only when the device cannot be queried. */
tw_status tw_cuda_image_query(int device, tw_cuda_image_info *out);
/* The targets embedded in this build: SASS ("sm_80,sm_90a,sm_100,sm_120") and PTX
 * ("compute_80"), or "not built". */
const char *tw_cuda_build_sass(void);
const char *tw_cuda_build_ptx(void);

#ifdef __cplusplus
}
#endif
#endif
