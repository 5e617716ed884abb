/* tw_pool: the CPU backend's persistent worker threads (replaces OpenMP in the kernels).
 *
 * tw_pool_run(threads, ntasks, fn, arg) calls fn(arg, task, worker) once for every task in
 * [0, ntasks) and returns when all have finished. The caller is worker 0 and takes tasks too;
 * workers 1 .. threads-1 are pool threads that stay alive between calls: they spin (pause, then
 * pause + sched_yield) for about TW_POOL_SPIN_US after their last task, then sleep on a
 * condition variable. Tasks are claimed one at a time from a shared counter, so
 *  - there is no fork/join cost: a spinning worker starts within a microsecond;
 *  - a small job never waits for a sleeping or descheduled worker: the caller claims whatever
 *    nobody else has, and only waits for tasks another worker has already started;
 *  - results never depend on which worker ran a task: `worker` (0 .. threads-1) may only pick
 *    per-worker scratch space, never change the arithmetic.
 * One job runs at a time; a call made while another thread's job is running (not the engine's
 * case) runs all its tasks on its own thread. */
#ifndef TW_POOL_H
#define TW_POOL_H

#include "tw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TW_POOL_MAX_THREADS 256
#define TW_POOL_SPIN_US     2000 /* how long an idle worker spins before sleeping */

typedef void (*tw_pool_fn)(void *arg, long task, int worker);

/* Runs the job on up to `threads` threads (>= 1; capped at TW_POOL_MAX_THREADS). Returns
 * TW_ERR_NOMEM or TW_ERR_IO when a worker thread cannot be started (nothing has run then). */
tw_status tw_pool_run(int threads, long ntasks, tw_pool_fn fn, void *arg);

/* Ranges: fn(arg, i0, i1, worker) over [0, n) in pieces of `chunk` (the last one shorter),
 * one task per piece. */
typedef void (*tw_pool_range_fn)(void *arg, long i0, long i1, int worker);
tw_status tw_pool_for(int threads, long n, long chunk, tw_pool_range_fn fn, void *arg);

/* Pool threads started so far (for tests and `tokwatt info`). */
int tw_pool_started(void);

/* Sleeping workers right now (for tests: a worker left idle long enough must sleep). */
int tw_pool_sleeping(void);

#ifdef __cplusplus
}
#endif
#endif
