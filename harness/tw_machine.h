/* Machine calibration: memory bandwidth (read, copy, triad) and fp32 FMA peak, measured on this
 * host at the active SIMD level. Used by `tokwatt info`, the benches (roofline fractions) and
 * `tokwatt run` (decode efficiency is quoted as a fraction of read_gbps). */
#ifndef TW_MACHINE_H
#define TW_MACHINE_H

#include <stddef.h>

#include "tw_backend.h"
#include "tw_status.h"

typedef struct {
    double read_gbps;  /* bytes read / s: sum of one buffer, AVX2 loads, several accumulators */
    double copy_gbps;  /* (bytes read + bytes written) / s: b = a (STREAM convention) */
    double triad_gbps; /* (2 reads + 1 write) / s: a = b + s * c (STREAM convention) */
    size_t bytes;      /* total buffer bytes per kernel */
    int threads;
} tw_membw_result;

/* Best (fastest) of `reps` repetitions of each kernel, STREAM's convention for a ceiling, on
 * buffers far larger than the last-level cache (bytes == 0: 512 MiB in total per kernel). threads 0
 * = all cores; reps >= 1. */
tw_status tw_machine_membw(int threads, size_t bytes, int reps, tw_membw_result *out);

/* fp32 multiply-add throughput (GFLOP/s, 2 flops per FMA lane) of an independent-accumulator
 * loop at the active SIMD level on `threads` threads (0 = all cores); runs < 0.5 s. Each
 * thread's rate is taken over its own CPU time (robust to a shared machine) and summed. */
tw_status tw_machine_fp32_peak(int threads, double *gflops);

/* The hook the CPU backend's ceilings slot calls (tw_backend_params.host_ceilings): the two
 * measurements above, read bandwidth (best of 5) and the fp32 FMA peak, as tw_ceilings. */
tw_status tw_machine_host_ceilings(int threads, tw_ceilings *out);

#endif
