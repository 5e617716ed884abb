/* CUDA-only controls of the CUDA backend: GEMM implementation choice, CUDA-graph capture of a
 * step, the stream for NCCL. Plain C with no CUDA types, so C callers (bench, engine) can use it;
 * every function returns TW_ERR_UNSUPPORTED, saying so, when CUDA is not built or `be` is not a
 * CUDA backend.
 *
 * Graph capture contract (why it is safe with host arrays):
 *   Ops take small host arrays (start_pos, lens, positions, tokens) and argmax writes host
 *   results. While capturing, each such array is copied into its own slot of a pinned staging
 *   arena and the captured graph copies slot -> device; argmax's results are copied device ->
 *   pinned slot. tw_cuda_graph_launch first waits for the stream, then re-reads every host input
 *   array FROM THE SAME ADDRESS (and length) that was passed at capture time into its slot, then
 *   launches. After launch, be->ops->sync waits and copies argmax results to the host addresses
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

/* "tokwatt" (own kernels: mma.sync GEMM, GEMV for m <= 8), "cublas" (cublasLt),
 * "wgmma" (experimental sm_90a warpgroup GEMM for bf16 weights; see gemm_wgmma.cu), or
 * "wgmma_tma" (experimental sm_90a GEMM fed by the bulk tensor copy engine; see
 * gemm_wgmma_tma.cu). The last two are refused on devices other than compute capability 9.0. */
tw_status tw_cuda_set_gemm(tw_backend *be, const char *impl);
const char *tw_cuda_get_gemm(tw_backend *be);

/* Begins capturing the ops queued on the backend's stream into a CUDA graph. */
tw_status tw_cuda_graph_begin(tw_backend *be);
/* Ends capture and instantiates; *graph receives an opaque handle. */
tw_status tw_cuda_graph_end(tw_backend *be, void **graph);
/* Refreshes captured host inputs from their addresses and launches; asynchronous. */
tw_status tw_cuda_graph_launch(tw_backend *be, void *graph);
void tw_cuda_graph_destroy(tw_backend *be, void *graph);

/* The backend's cudaStream_t as void* (for NCCL on the same stream). */
tw_status tw_cuda_stream(tw_backend *be, void **stream);
/* Device name and compute capability of the backend's device. */
tw_status tw_cuda_device_desc(tw_backend *be, char *name, size_t n, int *cc_major, int *cc_minor);

/* Device-to-device copy of `bytes` between two backend buffers, on the backend's stream
 * (for the copy-bandwidth ceiling measured beside the kernels). */
tw_status tw_cuda_copy_d2d(tw_backend *be, void *dst, const void *src, size_t bytes);
/* Elapsed time of a batch of queued work: record a start event, queue, record the end. */
tw_status tw_cuda_timer_start(tw_backend *be);
tw_status tw_cuda_timer_stop(tw_backend *be, double *elapsed_s); /* waits for the end event */

#ifdef __cplusplus
}
#endif
#endif
