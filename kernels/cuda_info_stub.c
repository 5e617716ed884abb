/* tw_cuda_info when the CUDA backend is not built: every query says so. */
#include "tw_cuda_info.h"

#include <stdio.h>

#ifndef TW_HAVE_CUDA
int tw_cuda_built(void) {
    return 0;
}

tw_status tw_cuda_device_count(int *n) {
    *n = 0;
    return TW_ERR(TW_ERR_UNSUPPORTED, "CUDA was not built into this binary");
}

tw_status tw_cuda_device_query(int device, tw_cuda_device_info *info) {
    (void)device;
    (void)info;
    return TW_ERR(TW_ERR_UNSUPPORTED, "CUDA was not built into this binary");
}

void tw_cuda_versions(char *runtime, size_t rn, char *driver, size_t dn) {
    snprintf(runtime, rn, "not built");
    snprintf(driver, dn, "not built");
}

tw_status tw_cuda_image_query(int device, tw_cuda_image_info *out) {
    (void)device;
    (void)out;
    return TW_ERR(TW_ERR_UNSUPPORTED, "CUDA was not built into this binary");
}

const char *tw_cuda_build_sass(void) {
    return "not built";
}

const char *tw_cuda_build_ptx(void) {
    return "not built";
}
#else
/* ISO C forbids an empty translation unit. */
typedef int tw_cuda_info_stub_unused;
#endif
