/* The CPU kernels' per-backend state (tw_cpu_state in tw_cpu.h), for the kernels of this folder:
 * the SIMD level, the blocked GEMM's packed-panel cache, what the last GEMM did. */
#ifndef TW_CPU_STATE_H
#define TW_CPU_STATE_H

#include "tw_cpu.h"

#include <pthread.h>
#include <stdatomic.h>

struct tw_cpu_state {
    atomic_int simd; /* a tw_simd, or -1: the process level (TW_SIMD, or the detected one) */
    /* The packed weight panel (up to 16 MiB) is kept between calls: allocating it afresh costs
     * thousands of page faults and zeroing per call (~3% of a 2048^3 product). One cached buffer
     * per state; a concurrent caller that finds it in use allocates its own. */
    pthread_mutex_t panel_mu;
    float *panel_buf;
    size_t panel_bytes;
    _Atomic(const char *) last_gemm_path; /* NULL: no GEMM yet */
    atomic_int last_gemm_x_bf16;
    int is_default; /* the process's: never freed */
};

/* A 64-byte aligned buffer of at least bytes: the state's cached one (*cached = 1) when free,
 * else a fresh one; NULL when out of memory. Give it back with tw_cpu_panel_put. */
float *tw_cpu_panel_get(tw_cpu_state *s, size_t bytes, int *cached);
void tw_cpu_panel_put(tw_cpu_state *s, float *p, int cached);
/* Records the path of a GEMM that ran on s (tw_cpu_state_last_gemm). */
void tw_cpu_state_note_gemm(tw_cpu_state *s, const tw_gemm_info *g);

#endif
