/* `tokwatt bench cuda`: CUDA kernel benchmarks with cuBLAS ratios and measured ceilings
 * (bench/bench_cuda.c). Not yet in bench/tw_cmds.h's table: the lead wires it there (or calls
 * it from `tokwatt bench gemm|attention --backend cuda`). */
#ifndef TW_BENCH_CUDA_H
#define TW_BENCH_CUDA_H

int tw_bench_cuda(int argc, char **argv);

#endif
