/* Private to kernels/cuda: what the CUDA backend adds behind the generic interface
 * (tw_backend.h). Callers above kernels/ reach it only through the generic slots: the option
 * "gemm" (tw_backend_set_option), graphs (tw_backend_graph_*), the stream, device copies, the
 * event timer and the ceilings.
 *
 * GEMM implementations (option "gemm"): "tokwatt" (own kernels: mma.sync GEMM, GEMV for
 * m <= 8), "cublas" (cublasLt), "wgmma" (experimental sm_90a warpgroup GEMM for bf16 weights;
 * gemm_wgmma.cu), "wgmma_tma" (experimental sm_90a GEMM fed by the bulk tensor copy engine;
 * gemm_wgmma_tma.cu). The last two are refused on devices other than compute capability 9.0.
 *
 * Graph capture contract (why it is safe with host arrays):
 *   Ops take small host arrays (start_pos, lens, positions, tokens) and argmax writes host
 *   results. While capturing, each such array is copied into its own slot of a pinned staging
 *   arena and the captured graph copies slot -> device; argmax's results are copied device ->
 *   pinned slot. graph_launch first waits for the stream, then re-reads every host input
 *   array FROM THE SAME ADDRESS (and length) that was passed at capture time into its slot, then
 *   launches. After launch, sync waits and copies argmax results to the host addresses
 *   given at capture time. So: keep the host arrays alive at the same addresses, update their
 *   contents between launches, keep shapes identical, and call sync before reading argmax output.
 *   Device buffers used during capture (activations, scratch) must not be freed or grown: run the
 *   step once uncaptured first so that scratch buffers reach their final size; a scratch buffer
 *   that would have to grow during capture is an error. Captured slots are not reused while any
 *   graph exists; a capture begun with no graph alive restarts the arena. */
#ifndef TW_BACKEND_CUDA_H
#define TW_BACKEND_CUDA_H

#include "tw_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The registry row's create (kernels/backend.c). */
tw_status tw_backend_cuda_create_p(const tw_backend_params *p, tw_backend **out);

/* The ceilings slot (ceilings.cu): device-to-device copy bandwidth (bytes read + written, best
 * of 10 copies of up to 1 GiB) and the bf16 tensor-core peak (cuBLAS bf16 GEMM, best of 10). */
tw_status tw_cuda_ceilings(tw_backend *be, tw_ceilings *out);

#ifdef __cplusplus
}
#endif
#endif
