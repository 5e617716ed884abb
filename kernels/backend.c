/* Backend-independent parts of the interface: dtypes, construction by name, the CUDA stub. */
#include "tw_backend.h"

#include <stdlib.h>
#include <string.h>

size_t tw_dtype_size(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return 4;
    case TW_BF16:
        return 2;
    case TW_I32:
        return 4;
    }
    return 0;
}

const char *tw_dtype_name(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return "fp32";
    case TW_BF16:
        return "bf16";
    case TW_I32:
        return "i32";
    }
    return "?";
}

tw_status tw_dtype_parse(const char *s, tw_dtype *out) {
    if (!s) return TW_ERR(TW_ERR_INVALID, "missing dtype");
    if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) {
        *out = TW_F32;
        return TW_OK;
    }
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) {
        *out = TW_BF16;
        return TW_OK;
    }
    return TW_ERR(TW_ERR_INVALID, "unknown dtype '%s' (expected fp32 or bf16)", s);
}

tw_status tw_backend_create(const char *name, int threads, int device, tw_backend **out) {
    *out = NULL;
    if (!name || !strcmp(name, "cpu")) return tw_backend_cpu_create(threads, out);
    if (!strcmp(name, "cuda")) return tw_backend_cuda_create(device, out);
    return TW_ERR(TW_ERR_INVALID, "unknown backend '%s' (expected cpu or cuda)", name);
}

void tw_backend_destroy(tw_backend *be) {
    if (be && be->ops && be->ops->destroy) be->ops->destroy(be);
}

#ifndef TW_HAVE_CUDA
int tw_cuda_built(void) {
    return 0;
}

tw_status tw_backend_cuda_create(int device, tw_backend **out) {
    (void)device;
    *out = NULL;
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "the CUDA backend was not built into this binary (no CUDA toolkit at configure "
                  "time, or -DTW_CUDA=OFF)");
}
#endif
