/* Tests of ops split across the CPU backend's pool (kernels/cpu/tw_pool.h): the pool's caller
 * takes every task no worker has claimed yet, so a small job posted while a worker sleeps, or
 * is still starting (milliseconds on a loaded VM), runs on the caller alone and a 1-thread
 * against 2-thread comparison would compare 1 thread with itself. tw_test_pool_wake returns
 * with pool worker 1 awake and spinning (for TW_POOL_SPIN_US): the op called next is split. */
#ifndef TW_TEST_POOL_H
#define TW_TEST_POOL_H

#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "kernels/cpu/tw_pool.h"

typedef struct {
    _Atomic int worker1_ran;
} tw_test_wake_job;

/* Task 0 waits (yielding its core, up to 10 s) until worker 1 has run a task. */
static inline void tw_test_wake_task(void *arg, long t, int worker) {
    tw_test_wake_job *j = arg;
    if (worker == 1) atomic_store(&j->worker1_ran, 1);
    if (t != 0) return;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (atomic_load(&j->worker1_ran)) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= 10) return;
        sched_yield();
    }
}

/* 1 once worker 1 has run a task of a 2-thread job (it then spins), 0 if it did not in 10 s. */
static inline int tw_test_pool_wake(void) {
    tw_test_wake_job j = {0};
    if (tw_pool_run(2, 2, tw_test_wake_task, &j) != TW_OK) return 0;
    return atomic_load(&j.worker1_ran);
}

#endif
