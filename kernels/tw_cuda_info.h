/* Facts about CUDA devices, for `tokwatt info` and provenance. Plain C interface; implemented in
 * kernels/cuda/device_query.cu when CUDA is built, and answering "not built" otherwise. */
#ifndef TW_CUDA_INFO_H
#define TW_CUDA_INFO_H

#include <stddef.h>

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

/* Number of devices; TW_ERR_UNSUPPORTED when CUDA was not built, TW_ERR_DEVICE (with the
 * runtime's message) when the driver can't be reached. */
tw_status tw_cuda_device_count(int *n);
tw_status tw_cuda_device_query(int device, tw_cuda_device_info *info);
/* CUDA runtime and driver versions as "13.0", or "not built". */
void tw_cuda_versions(char *runtime, size_t rn, char *driver, size_t dn);

#ifdef __cplusplus
}
#endif
#endif
