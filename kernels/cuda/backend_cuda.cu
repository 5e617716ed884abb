/* CUDA backend construction. The kernels and ops table arrive with the CUDA backend issue;
 * until then creating the backend reports exactly that, and never falls back to the CPU. */
#include <cuda_runtime.h>

#include "tw_backend.h"
#include "tw_cuda_info.h"

extern "C" int tw_cuda_built(void) {
    return 1;
}

extern "C" tw_status tw_backend_cuda_create(int device, tw_backend **out) {
    *out = NULL;
    int n = 0;
    tw_status st = tw_cuda_device_count(&n);
    if (st != TW_OK) return tw_error_ctx(st, "cuda backend: no usable CUDA device");
    if (n == 0) return TW_ERR(TW_ERR_DEVICE, "cuda backend: no CUDA device found");
    if (device < 0 || device >= n)
        return TW_ERR(TW_ERR_INVALID, "cuda backend: device %d does not exist (%d found)", device,
                      n);
    return TW_ERR(TW_ERR_UNSUPPORTED, "cuda backend: kernels are not implemented yet");
}
