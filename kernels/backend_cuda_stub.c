/* tw_backend_cuda.h when the CUDA backend is not built: every call says so. */
#include "tw_backend_cuda.h"

#ifndef TW_HAVE_CUDA
#define TW_NO_CUDA TW_ERR(TW_ERR_UNSUPPORTED, "the CUDA backend was not built into this binary")

tw_status tw_cuda_set_gemm(tw_backend *be, const char *impl) {
    (void)be;
    (void)impl;
    return TW_NO_CUDA;
}

const char *tw_cuda_get_gemm(tw_backend *be) {
    (void)be;
    return "none";
}

tw_status tw_cuda_graph_begin(tw_backend *be) {
    (void)be;
    return TW_NO_CUDA;
}

tw_status tw_cuda_graph_end(tw_backend *be, void **graph) {
    (void)be;
    *graph = NULL;
    return TW_NO_CUDA;
}

tw_status tw_cuda_graph_launch(tw_backend *be, void *graph) {
    (void)be;
    (void)graph;
    return TW_NO_CUDA;
}

void tw_cuda_graph_destroy(tw_backend *be, void *graph) {
    (void)be;
    (void)graph;
}

tw_status tw_cuda_stream(tw_backend *be, void **stream) {
    (void)be;
    *stream = NULL;
    return TW_NO_CUDA;
}

tw_status tw_cuda_device_desc(tw_backend *be, char *name, size_t n, int *cc_major, int *cc_minor) {
    (void)be;
    (void)name;
    (void)n;
    (void)cc_major;
    (void)cc_minor;
    return TW_NO_CUDA;
}

tw_status tw_cuda_copy_d2d(tw_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    (void)dst;
    (void)src;
    (void)bytes;
    return TW_NO_CUDA;
}

tw_status tw_cuda_timer_start(tw_backend *be) {
    (void)be;
    return TW_NO_CUDA;
}

tw_status tw_cuda_timer_stop(tw_backend *be, double *elapsed_s) {
    (void)be;
    *elapsed_s = 0;
    return TW_NO_CUDA;
}
#else
typedef int tw_backend_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
