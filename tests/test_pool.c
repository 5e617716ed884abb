/* The CPU backend's thread pool (kernels/cpu/pool.c): every task runs exactly once per job on
 * any thread count (more threads than cores too), per-worker indices stay below the thread
 * count, jobs run back to back and from several caller threads at once, idle workers go to
 * sleep and a job posted while they sleep still completes, and a pool call made from inside a
 * task (nested) runs inline instead of deadlocking. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tw_pool.h"

typedef struct {
    _Atomic int *count; /* per task */
    _Atomic int bad_worker;
    int threads;
    long spin; /* busy work per task */
} job;

static void count_task(void *arg, long t, int worker) {
    job *j = arg;
    if (worker < 0 || worker >= j->threads) atomic_store(&j->bad_worker, 1);
    volatile long s = 0;
    for (long i = 0; i < j->spin; i++) s += i;
    atomic_fetch_add(&j->count[t], 1);
}

static void run_and_check(int threads, long ntasks, long spin) {
    job j = {calloc((size_t)ntasks, sizeof(_Atomic int)), 0, threads, spin};
    cr_assert(j.count);
    cr_assert_eq(tw_pool_run(threads, ntasks, count_task, &j), TW_OK, "%s", tw_last_error());
    for (long t = 0; t < ntasks; t++)
        cr_assert_eq(atomic_load(&j.count[t]), 1, "threads %d ntasks %ld: task %ld ran %d times",
                     threads, ntasks, t, atomic_load(&j.count[t]));
    cr_assert_eq(atomic_load(&j.bad_worker), 0, "a worker index was out of range");
    free(j.count);
}

Test(pool, every_task_once) {
    const int threads[] = {1, 2, 3, 7};
    const long tasks[] = {1, 2, 5, 64, 1000};
    for (int r = 0; r < 20; r++)
        for (size_t a = 0; a < sizeof threads / sizeof threads[0]; a++)
            for (size_t b = 0; b < sizeof tasks / sizeof tasks[0]; b++)
                run_and_check(threads[a], tasks[b], r % 3 ? 0 : 2000);
    cr_expect_geq(tw_pool_started(), 6, "workers for 7 threads");
}

Test(pool, empty_and_invalid) {
    cr_assert_eq(tw_pool_run(4, 0, count_task, NULL), TW_OK);
    cr_assert_eq(tw_pool_run(4, -3, count_task, NULL), TW_OK);
}

static void *caller(void *arg) {
    int threads = *(int *)arg;
    for (int r = 0; r < 200; r++) run_and_check(threads, 37, 100);
    return NULL;
}

/* Concurrent callers: one gets the pool, the others run their tasks on their own thread. */
Test(pool, concurrent_callers) {
    pthread_t th[3];
    int t[3] = {2, 3, 4};
    for (int i = 0; i < 3; i++) cr_assert_eq(pthread_create(&th[i], NULL, caller, &t[i]), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
}

static void nested_task(void *arg, long t, int worker) {
    (void)t;
    (void)worker;
    run_and_check(2, 9, 0); /* a pool call from inside a task */
    atomic_fetch_add((_Atomic int *)arg, 1);
}

Test(pool, nested_call_runs_inline) {
    _Atomic int n = 0;
    cr_assert_eq(tw_pool_run(2, 8, nested_task, &n), TW_OK);
    cr_assert_eq(atomic_load(&n), 8);
}

Test(pool, idle_workers_sleep_and_wake) {
    run_and_check(3, 100, 0);
    /* after the spin period, both workers must be asleep */
    int asleep = 0;
    for (int i = 0; i < 200 && asleep < 2; i++) {
        usleep(10000);
        asleep = tw_pool_sleeping();
    }
    cr_assert_eq(asleep, 2, "idle workers still spinning after 2 s (%d asleep)", asleep);
    run_and_check(3, 100, 5000); /* posted while they sleep */
    run_and_check(3, 1, 0);
}
