/* tokwatt-cuda-bench: runs `tokwatt bench cuda` on its own (scripts/gpu-check uses it), so the
 * CUDA benchmarks work before they are wired into the tokwatt command table. */
#include "bench_cuda.h"

int main(int argc, char **argv) {
    return tw_bench_cuda(argc - 1, argv + 1);
}
