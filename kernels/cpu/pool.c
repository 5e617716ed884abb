/* The persistent thread pool of the CPU backend (see tw_pool.h).
 *
 * One job at a time is published in `word`: the job's generation in the high 32 bits and the
 * next unclaimed task in the low 32. A worker claims a task with a compare-and-swap that also
 * checks the generation, so a worker that wakes late can never take a task of a newer job by
 * mistake; the job's other fields are written while the word is closed (a generation no claim
 * matches) and published by the generation that announces them. The
 * caller returns once `done` reaches the task count, so nothing touches the job afterwards. */
#include "tw_pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define TW_CPU_RELAX() __asm__ volatile("yield" ::: "memory")
#else
#define TW_CPU_RELAX() ((void)0)
#endif

typedef struct {
    _Atomic uint64_t word; /* generation << 32 | next task */
    _Atomic(tw_pool_fn) fn;
    _Atomic(void *) arg;
    _Atomic long ntasks;
    _Atomic int nthreads; /* workers 1 .. nthreads-1 take part */
    _Atomic long done;
    _Atomic int sleepers;
    _Atomic int started;
    pthread_mutex_t run_mu; /* one job at a time */
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    pthread_mutex_t start_mu; /* starting workers */
} tw_pool;

static tw_pool tw_the_pool = {
    .run_mu = PTHREAD_MUTEX_INITIALIZER,
    .sleep_mu = PTHREAD_MUTEX_INITIALIZER,
    .sleep_cv = PTHREAD_COND_INITIALIZER,
    .start_mu = PTHREAD_MUTEX_INITIALIZER,
};

static double tw_pool_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* Claims and runs tasks of generation `gen` until none is left. */
static void tw_pool_work(tw_pool *p, uint32_t gen, int worker) {
    uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    if ((uint32_t)(w >> 32) != gen) return;
    /* The job's fields are read after its generation was seen and are validated by the claim's
     * compare-and-swap: the caller writes them only while the word is closed (a generation of
     * its own that no claim can match), so a late worker that read a newer job's fields fails
     * its claim instead of running a task of that job under the old generation. */
    tw_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
    void *arg = atomic_load_explicit(&p->arg, memory_order_acquire);
    long ntasks = atomic_load_explicit(&p->ntasks, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(w >> 32) != gen || (long)(uint32_t)w >= ntasks) return;
        if (!atomic_compare_exchange_weak_explicit(&p->word, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w now holds the current word */
        fn(arg, (long)(uint32_t)w, worker);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        w = atomic_load_explicit(&p->word, memory_order_acquire);
    }
}

/* Waits for a generation other than `seen`: spin, spin with yields, then sleep. */
static uint64_t tw_pool_wait(tw_pool *p, uint32_t seen) {
    double t0 = tw_pool_now_us();
    for (unsigned it = 1;; it++) {
        uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
        if ((uint32_t)(w >> 32) != seen) return w;
        TW_CPU_RELAX();
        if ((it & 255) == 0) {
            double dt = tw_pool_now_us() - t0;
            if (dt > TW_POOL_SPIN_US) break;
            /* after a short pure spin, give the core to whoever else wants it (a shared
             * machine) between checks */
            if (dt > 50) sched_yield();
        }
    }
    pthread_mutex_lock(&p->sleep_mu);
    atomic_fetch_add(&p->sleepers, 1);
    uint64_t w;
    while ((uint32_t)((w = atomic_load(&p->word)) >> 32) == seen)
        pthread_cond_wait(&p->sleep_cv, &p->sleep_mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->sleep_mu);
    return w;
}

typedef struct {
    int id;
    uint32_t seen; /* the generation current when the worker was started */
} tw_pool_worker_arg;

static tw_pool_worker_arg tw_pool_ids[TW_POOL_MAX_THREADS];

static void *tw_pool_main(void *varg) {
    tw_pool *p = &tw_the_pool;
    const int id = ((tw_pool_worker_arg *)varg)->id;
    uint32_t seen = ((tw_pool_worker_arg *)varg)->seen;
    for (;;) {
        uint64_t w = tw_pool_wait(p, seen);
        seen = (uint32_t)(w >> 32);
        if (id < atomic_load_explicit(&p->nthreads, memory_order_relaxed))
            tw_pool_work(p, seen, id);
    }
    return NULL;
}

/* Makes sure workers 1 .. threads-1 exist. */
static tw_status tw_pool_grow(tw_pool *p, int threads) {
    if (atomic_load(&p->started) >= threads - 1) return TW_OK;
    pthread_mutex_lock(&p->start_mu);
    tw_status st = TW_OK;
    while (atomic_load(&p->started) < threads - 1) {
        int id = atomic_load(&p->started) + 1;
        tw_pool_ids[id].id = id;
        tw_pool_ids[id].seen = (uint32_t)(atomic_load(&p->word) >> 32);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_t th;
        int rc = pthread_create(&th, &at, tw_pool_main, &tw_pool_ids[id]);
        pthread_attr_destroy(&at);
        if (rc != 0) {
            st = TW_ERR(rc == EAGAIN ? TW_ERR_NOMEM : TW_ERR_IO,
                        "thread pool: cannot start worker thread %d of %d: %s", id, threads - 1,
                        strerror(rc));
            break;
        }
        atomic_fetch_add(&p->started, 1);
    }
    pthread_mutex_unlock(&p->start_mu);
    return st;
}

tw_status tw_pool_run(int threads, long ntasks, tw_pool_fn fn, void *arg) {
    if (ntasks <= 0) return TW_OK;
    if (ntasks > (long)UINT32_MAX - 1)
        return TW_ERR(TW_ERR_INVALID, "thread pool: %ld tasks (at most %u)", ntasks,
                      UINT32_MAX - 1);
    if (threads > TW_POOL_MAX_THREADS) threads = TW_POOL_MAX_THREADS;
    if (threads > ntasks) threads = (int)ntasks;
    tw_pool *p = &tw_the_pool;
    if (threads <= 1 || pthread_mutex_trylock(&p->run_mu) != 0) {
        for (long t = 0; t < ntasks; t++) fn(arg, t, 0);
        return TW_OK;
    }
    tw_status st = tw_pool_grow(p, threads);
    if (st != TW_OK) {
        pthread_mutex_unlock(&p->run_mu);
        return st;
    }
    /* close the word first: from here no worker still on the last generation can claim */
    uint32_t gen = (uint32_t)(atomic_load(&p->word) >> 32) + 1;
    atomic_store(&p->word, ((uint64_t)gen << 32) | UINT32_MAX);
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->arg, arg, memory_order_release);
    atomic_store_explicit(&p->ntasks, ntasks, memory_order_release);
    atomic_store_explicit(&p->nthreads, threads, memory_order_release);
    atomic_store_explicit(&p->done, 0, memory_order_release);
    gen += 1;
    atomic_store(&p->word, (uint64_t)gen << 32); /* seq_cst: publishes the fields above */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->sleep_mu);
        pthread_cond_broadcast(&p->sleep_cv);
        pthread_mutex_unlock(&p->sleep_mu);
    }
    tw_pool_work(p, gen, 0);
    /* Only tasks other workers have started remain: wait for them. */
    for (unsigned it = 1; atomic_load_explicit(&p->done, memory_order_acquire) < ntasks; it++) {
        TW_CPU_RELAX();
        if ((it & 1023) == 0) sched_yield();
    }
    pthread_mutex_unlock(&p->run_mu);
    return TW_OK;
}

typedef struct {
    long n, chunk;
    tw_pool_range_fn fn;
    void *arg;
} tw_pool_range;

static void tw_pool_range_task(void *arg, long t, int worker) {
    const tw_pool_range *r = arg;
    long i0 = t * r->chunk, i1 = i0 + r->chunk < r->n ? i0 + r->chunk : r->n;
    r->fn(r->arg, i0, i1, worker);
}

tw_status tw_pool_for(int threads, long n, long chunk, tw_pool_range_fn fn, void *arg) {
    if (n <= 0) return TW_OK;
    if (chunk < 1) chunk = 1;
    tw_pool_range r = {n, chunk, fn, arg};
    return tw_pool_run(threads, (n + chunk - 1) / chunk, tw_pool_range_task, &r);
}

int tw_pool_started(void) {
    return atomic_load(&tw_the_pool.started);
}

int tw_pool_sleeping(void) {
    return atomic_load(&tw_the_pool.sleepers);
}
