/* Machine calibration: the ceilings the roofline fractions are quoted against, measured on this
 * host: read bandwidth (and copy/triad), the fp32 FMA peak and the bf16 multiply-add peak. Used
 * by `tokwatt info`, the benches and `tokwatt run`. A ceiling must be the machine's, not the
 * tool's: the read figure is the best of several read kernels (each loads and sums every byte),
 * on every core, on buffers of at least twice the last-level cache, best of reps; the bf16
 * figure is the best of every instruction the CPU has for bf16 products. */
#ifndef TW_MACHINE_H
#define TW_MACHINE_H

#include <stddef.h>

#include "tw_status.h"

typedef struct {
    double read_gbps;  /* bytes read / s: best over read kernels and buffer sizes */
    double copy_gbps;  /* (bytes read + bytes written) / s: b = a (STREAM convention) */
    double triad_gbps; /* (2 reads + 1 write) / s: a = b + s * c (STREAM convention) */
    size_t bytes;      /* largest buffer (total bytes) a kernel streamed */
    size_t bytes_min;  /* smallest buffer the read figure was taken over */
    int sizes;         /* buffer sizes tried for the read figure */
    size_t llc_bytes;  /* last-level cache (sysfs), 0 if unknown */
    int below_llc;     /* 1 when a buffer was under twice the LLC: caches may inflate it */
    int threads;
    char read_method[200]; /* the kernel, size and threads that gave read_gbps */
} tw_membw_result;

/* Best (fastest) of `reps` repetitions of each kernel, STREAM's convention for a ceiling.
 * bytes == 0: several sizes from max(512 MiB, 2 x LLC) up (capped by a quarter of the free
 * memory), the read figure the best over all of them; bytes > 0: that size only (>= 3 MiB;
 * below_llc says when it is under twice the LLC). threads 0 = all cores; reps >= 1. */
tw_status tw_machine_membw(int threads, size_t bytes, int reps, tw_membw_result *out);
/* The read ceiling alone, as a run takes it: the same kernels and automatic sizes, but every
 * kernel timed once and only the fastest reps times on each size; no copy or triad. */
tw_status tw_machine_read_ceiling(int threads, int reps, tw_membw_result *out);

/* fp32 multiply-add throughput (GFLOP/s, 2 flops per FMA lane) of an independent-accumulator
 * loop at the active SIMD level on `threads` threads (0 = all cores); runs < 0.5 s. Each
 * thread's rate is taken over its own CPU time (robust to a shared machine) and summed. */
tw_status tw_machine_fp32_peak(int threads, double *gflops);

/* The bf16 ceiling: the fastest way this CPU has to multiply-add bf16 values, each measured
 * like the fp32 peak: fp32 FMA on widened values (every CPU), the bf16 dot product
 * (vdpbf16ps, BFDOT) and AMX tiles where present. gflops is the largest, method says which. */
typedef struct {
    double gflops;
    double fma_gflops, dot_gflops, amx_gflops; /* 0: not available */
    int threads;
    char method[240];
} tw_bf16_peak;
tw_status tw_machine_bf16_peak(int threads, tw_bf16_peak *out);

/* Last-level cache size from sysfs (bytes), 0 if unknown. */
size_t tw_machine_llc_bytes(void);

#endif
