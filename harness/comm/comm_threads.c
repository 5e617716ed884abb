/* The `threads` communicator: N ranks as N threads of one process, host buffers in the one
 * address space (issue 14). A group holds what the ranks share; each rank's handle (tw_comm)
 * is used by its own thread only.
 *
 * A collective publishes this rank's buffers, meets the others at a first barrier (after it
 * every rank may read every rank's input), does its share of the work reading the peers' inputs
 * directly, and meets them at a second barrier (after it nobody reads an input any more, so
 * in-place forms may write their output). Reductions go through a group scratch buffer: each
 * rank reduces a contiguous segment over all ranks in rank order (fp32 arithmetic for bf16,
 * rounded once), so every rank receives the same bits, whatever the rank count.
 *
 * Failure: the first barrier is bounded (the communicator's timeout) and poisonable. A rank
 * that times out, sees a signal (tw_comm_interrupted), fails outside a collective
 * (tw_comm_threads_fail), or destroys its handle while the others still wait, poisons the
 * group: every wait of every rank returns at once with that rank and the reason, and the group
 * refuses further collectives. The second barrier is not abandoned: once every rank has passed
 * the first one, each only copies memory before reaching the second, and leaving early would
 * free a buffer a peer still reads. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tw_comm.h"
#include "tw_numeric.h"
#include "tw_util.h"

/* How often a waiting rank looks at the signal flag (a signal handler cannot wake a condition
 * variable). */
#define TW_THR_POLL_S 0.01

typedef struct tw_thr_group tw_thr_group;

struct tw_thr_group {
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;          /* live handles */
    uint64_t gen;      /* barrier generation: advances when the last rank arrives */
    int arrived;       /* ranks in the current barrier */
    char *present;     /* [size] rank r is in the current barrier */
    char *left;        /* [size] rank r destroyed its handle */
    const void **in;   /* [size] published inputs of the current collective */
    void **out;        /* [size] published outputs */
    uint64_t *seq;     /* [size] collectives rank r entered (for messages) */
    void *scratch;     /* reductions (size grows, only between the barriers' safe points) */
    size_t scratch_b;  /* bytes */
    tw_thr_group *sub; /* a sub-group made by rank 0, taken by ranks < sub_n */
    tw_comm **sub_h;   /* its handles */
    /* poison: the first failure, for every later wait */
    tw_status fail_st;
    int fail_rank;
    char fail_msg[1536];
    int fail_code; /* exit code of an abort, 0 otherwise */
};

typedef struct {
    tw_thr_group *g;
    int failed; /* this handle saw a failure */
} tw_thr_ctx;

/* ---- the group -------------------------------------------------------------------------- */

static void tw_thr_group_free(tw_thr_group *g) {
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->present);
    free(g->left);
    free(g->in);
    free(g->out);
    free(g->seq);
    free(g->scratch);
    free(g);
}

/* Records the first failure (mutex held) and wakes every waiter. */
static void tw_thr_poison_locked(tw_thr_group *g, int rank, tw_status st, const char *msg) {
    if (g->fail_st == TW_OK) {
        g->fail_st = st == TW_OK ? TW_ERR_COMM : st;
        g->fail_rank = rank;
        size_t n = strlen(msg);
        if (n >= sizeof g->fail_msg) n = sizeof g->fail_msg - 1; /* keeps the first part */
        memcpy(g->fail_msg, msg, n);
        g->fail_msg[n] = '\0';
    }
    pthread_cond_broadcast(&g->cv);
}

/* The error a rank reports when the group is poisoned. */
static tw_status tw_thr_poisoned(tw_comm *c, const char *what) {
    tw_thr_ctx *x = c->ctx;
    tw_thr_group *g = x->g;
    x->failed = 1;
    if (g->fail_rank == c->rank)
        return TW_ERR(g->fail_st, "rank %d: %s: %s", c->rank, what, g->fail_msg);
    return TW_ERR(g->fail_st, "rank %d: %s abandoned: rank %d failed: %s", c->rank, what,
                  g->fail_rank, g->fail_msg);
}

static void tw_thr_deadline(struct timespec *ts, double from_now_s) {
    clock_gettime(CLOCK_REALTIME, ts);
    long long ns = (long long)ts->tv_nsec + (long long)(from_now_s * 1e9);
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

/* The first barrier of a collective: bounded, and abandoned (poisoning the group) on a
 * timeout, a signal or a peer's failure. */
static tw_status tw_thr_enter(tw_comm *c, const char *what, size_t scratch_b) {
    tw_thr_ctx *x = c->ctx;
    tw_thr_group *g = x->g;
    double deadline = tw_now_s() + c->timeout_s;
    pthread_mutex_lock(&g->mu);
    if (g->fail_st != TW_OK) {
        tw_status st = tw_thr_poisoned(c, what);
        pthread_mutex_unlock(&g->mu);
        return st;
    }
    g->seq[c->rank]++;
    uint64_t my_gen = g->gen;
    g->present[c->rank] = 1;
    if (++g->arrived == g->size) {
        /* the last to arrive sizes the reduction scratch: every rank is waiting here, none is
         * still copying the previous collective's result out of it */
        if (scratch_b > g->scratch_b) {
            void *p = realloc(g->scratch, scratch_b);
            if (!p) {
                tw_thr_poison_locked(g, c->rank, TW_ERR_NOMEM,
                                     "out of memory for the reduction scratch");
                tw_status st = tw_thr_poisoned(c, what);
                pthread_mutex_unlock(&g->mu);
                return st;
            }
            g->scratch = p;
            g->scratch_b = scratch_b;
        }
        g->arrived = 0;
        memset(g->present, 0, (size_t)g->size);
        g->gen++;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return TW_OK;
    }
    for (;;) {
        struct timespec ts;
        tw_thr_deadline(&ts, TW_THR_POLL_S);
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (g->gen != my_gen) break; /* everyone arrived (a later poison is for later calls) */
        if (g->fail_st != TW_OK) {
            tw_status st = tw_thr_poisoned(c, what);
            pthread_mutex_unlock(&g->mu);
            return st;
        }
        char msg[768];
        /* this process's signal only: tw_comm_interrupted would probe MPI, which only the
         * main thread may call (a peer process's notice reaches the main thread's MPI waits) */
        int sig = tw_interrupt_signal(), who = tw_comm_world_rank();
        if (sig) {
            snprintf(msg, sizeof msg, "collective %s #%llu abandoned: %s on rank %d", what,
                     (unsigned long long)g->seq[c->rank], tw_signal_name(sig), who < 0 ? 0 : who);
            tw_thr_poison_locked(g, c->rank, TW_ERR_INTERRUPTED, msg);
            tw_status st = tw_thr_poisoned(c, what);
            pthread_mutex_unlock(&g->mu);
            return st;
        }
        int gone = 0;
        for (int r = 0; r < g->size; r++) gone |= g->left[r];
        if (gone || tw_now_s() > deadline) {
            /* the ranks that are not here: in another collective, computing, or gone */
            char missing[256] = "";
            size_t used = 0;
            for (int r = 0; r < g->size && used + 24 < sizeof missing; r++)
                if (gone ? g->left[r] : !g->present[r])
                    used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d",
                                             used ? ", " : "", r);
            if (gone)
                snprintf(msg, sizeof msg,
                         "collective %s #%llu cannot complete: rank thread(s) %s ended without "
                         "entering it",
                         what, (unsigned long long)g->seq[c->rank], missing);
            else
                snprintf(msg, sizeof msg,
                         "collective %s #%llu did not complete within %g s (a rank thread failed "
                         "or stalls); not in it: rank(s) %s",
                         what, (unsigned long long)g->seq[c->rank], c->timeout_s, missing);
            tw_thr_poison_locked(g, c->rank, gone ? TW_ERR_COMM : TW_ERR_TIMEOUT, msg);
            tw_status st = tw_thr_poisoned(c, what);
            pthread_mutex_unlock(&g->mu);
            return st;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return TW_OK;
}

/* The second barrier: every rank is between the two, copying memory; never abandoned. */
static void tw_thr_leave(tw_comm *c) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    pthread_mutex_lock(&g->mu);
    uint64_t my_gen = g->gen;
    if (++g->arrived == g->size) {
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&g->cv);
    } else {
        while (g->gen == my_gen) pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

static tw_status tw_thr_usable(tw_comm *c, const char *what) {
    tw_thr_ctx *x = c->ctx;
    if (x->failed)
        return TW_ERR(TW_ERR_COMM, "rank %d: %s: the threads communicator failed earlier", c->rank,
                      what);
    return TW_OK;
}

/* Publishes this rank's buffers and enters the first barrier. */
static tw_status tw_thr_begin(tw_comm *c, const char *what, const void *in, void *out,
                              size_t scratch_b) {
    TW_TRY(tw_thr_usable(c, what));
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    g->in[c->rank] = in; /* only this rank writes its slot; the barrier publishes it */
    g->out[c->rank] = out;
    return tw_thr_enter(c, what, scratch_b);
}

/* This rank's segment [lo, hi) of n elements split over the ranks. */
static void tw_thr_segment(const tw_comm *c, size_t n, size_t *lo, size_t *hi) {
    size_t per = n / (size_t)c->size, extra = n % (size_t)c->size, r = (size_t)c->rank;
    *lo = r * per + (r < extra ? r : extra);
    *hi = *lo + per + (r < extra ? 1 : 0);
}

/* dst[lo, hi) = reduction over ranks (in rank order) of in_r[off + lo, off + hi). */
static void tw_thr_reduce(tw_thr_group *g, size_t off, size_t lo, size_t hi, tw_dtype dt,
                          tw_redop op, void *dst) {
    int n = g->size;
    if (dt == TW_F32) {
        float *d = dst;
        const float *s0 = (const float *)g->in[0] + off;
        for (size_t i = lo; i < hi; i++) d[i] = s0[i];
        for (int r = 1; r < n; r++) {
            const float *s = (const float *)g->in[r] + off;
            if (op == TW_RED_MAX)
                for (size_t i = lo; i < hi; i++) d[i] = s[i] > d[i] ? s[i] : d[i];
            else
                for (size_t i = lo; i < hi; i++) d[i] += s[i];
        }
    } else if (dt == TW_I32) {
        int32_t *d = dst;
        const int32_t *s0 = (const int32_t *)g->in[0] + off;
        for (size_t i = lo; i < hi; i++) d[i] = s0[i];
        for (int r = 1; r < n; r++) {
            const int32_t *s = (const int32_t *)g->in[r] + off;
            if (op == TW_RED_MAX)
                for (size_t i = lo; i < hi; i++) d[i] = s[i] > d[i] ? s[i] : d[i];
            else
                for (size_t i = lo; i < hi; i++) d[i] += s[i];
        }
    } else { /* bf16: fp32 accumulation, one rounding */
        tw_bf16 *d = dst;
        for (size_t i = lo; i < hi; i++) {
            float acc = tw_f32_from_bf16(((const tw_bf16 *)g->in[0])[off + i]);
            for (int r = 1; r < n; r++) {
                float v = tw_f32_from_bf16(((const tw_bf16 *)g->in[r])[off + i]);
                acc = op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v;
            }
            d[i] = tw_bf16_from_f32(acc);
        }
    }
}

static tw_status tw_thr_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  tw_redop op) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    size_t es = tw_comm_dtype_size(dt);
    TW_TRY(tw_thr_begin(c, "allreduce", in, out, count * es));
    size_t lo, hi;
    tw_thr_segment(c, count, &lo, &hi);
    tw_thr_reduce(g, 0, lo, hi, dt, op, g->scratch);
    tw_thr_leave(c); /* every segment reduced; no input is read any more */
    memcpy(out, g->scratch, count * es);
    /* the next collective's first barrier keeps the scratch until every rank has copied it */
    return TW_OK;
}

static tw_status tw_thr_reducescatter(tw_comm *c, const void *in, void *out, size_t count,
                                      tw_dtype dt, tw_redop op) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    size_t es = tw_comm_dtype_size(dt);
    TW_TRY(tw_thr_begin(c, "reducescatter", in, out, count * es * (size_t)c->size));
    /* this rank's block, reduced into its part of the scratch (in-place: out is in + rank *
     * count, which a peer may still be reading) */
    char *mine = (char *)g->scratch + (size_t)c->rank * count * es;
    tw_thr_reduce(g, (size_t)c->rank * count, 0, count, dt, op, mine);
    tw_thr_leave(c);
    memcpy(out, mine, count * es);
    return TW_OK;
}

static tw_status tw_thr_allgather(tw_comm *c, const void *in, void *out, size_t count,
                                  tw_dtype dt) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    size_t b = count * tw_comm_dtype_size(dt);
    TW_TRY(tw_thr_begin(c, "allgather", in, out, 0));
    /* in-place (in == out + rank * b): own block is in place, the peers' blocks are read from
     * their inputs, which live in their own outputs at their own offsets (not ours) */
    for (int r = 0; r < c->size; r++) {
        char *dst = (char *)out + (size_t)r * b;
        if ((const void *)dst != g->in[r]) memcpy(dst, g->in[r], b);
    }
    tw_thr_leave(c);
    return TW_OK;
}

static tw_status tw_thr_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  int root) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    size_t b = count * tw_comm_dtype_size(dt);
    TW_TRY(tw_thr_begin(c, "broadcast", in, out, 0));
    if (c->rank == root) {
        if (in != out) memcpy(out, in, b);
    } else {
        memcpy(out, g->in[root], b);
    }
    tw_thr_leave(c);
    return TW_OK;
}

static tw_status tw_thr_alltoall(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    size_t b = count * tw_comm_dtype_size(dt), total = b * (size_t)c->size;
    /* in-place: our output overwrites the input the peers read: stage it */
    void *tmp = NULL;
    if (in == out) {
        tmp = malloc(total ? total : 1);
        if (!tmp) {
            tw_comm_threads_fail(c, TW_ERR_NOMEM, "out of memory staging an in-place alltoall");
            return TW_ERR(TW_ERR_NOMEM, "rank %d: alltoall staging of %zu bytes", c->rank, total);
        }
        memcpy(tmp, in, total);
        in = tmp;
    }
    tw_status st = tw_thr_begin(c, "alltoall", in, out, 0);
    if (st == TW_OK) {
        /* block p of our output is block `rank` of p's input */
        for (int p = 0; p < c->size; p++)
            memcpy((char *)out + (size_t)p * b, (const char *)g->in[p] + (size_t)c->rank * b, b);
        tw_thr_leave(c);
    }
    free(tmp);
    return st;
}

static tw_status tw_thr_barrier(tw_comm *c) {
    TW_TRY(tw_thr_begin(c, "barrier", NULL, NULL, 0));
    tw_thr_leave(c);
    return TW_OK;
}

static tw_status tw_thr_nop(tw_comm *c) {
    (void)c;
    return TW_OK;
}

static tw_status tw_thr_host_allgather(tw_comm *c, const void *in, void *out, size_t bytes) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    TW_TRY(tw_thr_begin(c, "host allgather", in, out, 0));
    for (int r = 0; r < c->size; r++)
        if (r != c->rank || (const char *)out + (size_t)r * bytes != in)
            memmove((char *)out + (size_t)r * bytes, g->in[r], bytes);
    tw_thr_leave(c);
    return TW_OK;
}

/* This rank takes part in no further collective (its thread ended or it destroyed its handle):
 * a peer waiting for it learns so. */
static void tw_thr_mark_left(tw_comm *c) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    pthread_mutex_lock(&g->mu);
    g->left[c->rank] = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void tw_thr_destroy(tw_comm *c) {
    if (!c) return;
    tw_thr_ctx *x = c->ctx;
    tw_thr_group *g = x->g;
    tw_thr_mark_left(c);
    pthread_mutex_lock(&g->mu);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last) tw_thr_group_free(g);
    free(x);
    free(c);
}

static void tw_thr_abort(tw_comm *c, int code) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    pthread_mutex_lock(&g->mu);
    g->fail_code = code ? code : 1;
    tw_thr_poison_locked(g, c->rank, TW_ERR_COMM, "the run was aborted");
    pthread_mutex_unlock(&g->mu);
    /* one process: ending it ends every rank (as MPI_Abort does a job) */
    fflush(stdout);
    fflush(stderr);
    _exit(code ? code : 1);
}

static tw_status tw_thr_sub(tw_comm *c, int n, tw_comm **out);

static const tw_comm_ops tw_thr_ops = {
    .name = "threads",
    .allreduce = tw_thr_allreduce,
    .allgather = tw_thr_allgather,
    .reducescatter = tw_thr_reducescatter,
    .broadcast = tw_thr_broadcast,
    .alltoall = tw_thr_alltoall,
    .barrier = tw_thr_barrier,
    .wait = tw_thr_nop,
    .host_allgather = tw_thr_host_allgather,
    .set_stream = NULL,
    .sub = tw_thr_sub,
    .destroy = tw_thr_destroy,
    .abort = tw_thr_abort,
};

static tw_status tw_thr_make(int n, double timeout_s, tw_thr_group **gout, tw_comm **handles) {
    tw_thr_group *g = calloc(1, sizeof *g);
    if (!g) return TW_ERR(TW_ERR_NOMEM, "threads communicator of %d ranks", n);
    g->size = n;
    g->present = calloc((size_t)n, 1);
    g->left = calloc((size_t)n, 1);
    g->in = calloc((size_t)n, sizeof *g->in);
    g->out = calloc((size_t)n, sizeof *g->out);
    g->seq = calloc((size_t)n, sizeof *g->seq);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    int ok = g->present && g->left && g->in && g->out && g->seq;
    for (int r = 0; r < n; r++) handles[r] = NULL;
    for (int r = 0; ok && r < n; r++) {
        tw_comm *c = calloc(1, sizeof *c);
        tw_thr_ctx *x = calloc(1, sizeof *x);
        if (!c || !x) {
            free(c);
            free(x);
            ok = 0;
            break;
        }
        x->g = g;
        c->ops = &tw_thr_ops;
        c->ctx = x;
        c->rank = r;
        c->size = n;
        c->local_rank = r;
        c->local_size = n;
        c->device = -1;
        c->timeout_s = tw_comm_resolve_timeout(timeout_s);
        handles[r] = c;
        g->refs++;
    }
    if (!ok) {
        for (int r = 0; r < n; r++)
            if (handles[r]) {
                free(handles[r]->ctx);
                free(handles[r]);
                handles[r] = NULL;
            }
        tw_thr_group_free(g);
        return TW_ERR(TW_ERR_NOMEM, "threads communicator of %d ranks", n);
    }
    if (gout) *gout = g;
    return TW_OK;
}

/* Rank 0 makes the sub-group before the first barrier and publishes it in the group; after the
 * barrier ranks < n take their handle; the second barrier ends the use of the slot. */
static tw_status tw_thr_sub(tw_comm *c, int n, tw_comm **out) {
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    *out = NULL;
    TW_TRY(tw_thr_usable(c, "sub-communicator"));
    tw_comm **h = NULL;
    if (c->rank == 0) {
        h = calloc((size_t)n, sizeof *h);
        tw_thr_group *sg = NULL;
        tw_status st = h ? tw_thr_make(n, c->timeout_s, &sg, h)
                         : TW_ERR(TW_ERR_NOMEM, "sub-communicator handles");
        if (st != TW_OK) {
            free(h);
            tw_comm_threads_fail(c, st, "could not create a sub-communicator");
            return st;
        }
        g->sub = sg;
        g->sub_h = h;
    }
    TW_TRY(tw_thr_begin(c, "sub-communicator", NULL, NULL, 0));
    if (c->rank < n) *out = g->sub_h[c->rank];
    tw_thr_leave(c);
    if (c->rank == 0) {
        g->sub = NULL;
        g->sub_h = NULL;
        free(h);
    }
    return TW_OK;
}

/* ---- the interface (tw_comm.h) ------------------------------------------------------------ */

tw_status tw_comm_threads_create(int n, double timeout_s, tw_comm **handles) {
    if (n < 1 || n > 4096)
        return TW_ERR(TW_ERR_INVALID, "threads communicator: %d ranks is not in [1, 4096]", n);
    /* Why: the hostname is cached on first use; filled here, before any rank thread exists, the
     * threads only ever read it (tw_comm_gather_hosts) */
    (void)tw_host_name();
    (void)tw_verbose();
    return tw_thr_make(n, timeout_s, NULL, handles);
}

void tw_comm_threads_fail(tw_comm *c, tw_status st, const char *msg) {
    if (!c || c->ops != &tw_thr_ops) return;
    tw_thr_ctx *x = c->ctx;
    tw_thr_group *g = x->g;
    x->failed = 1;
    pthread_mutex_lock(&g->mu);
    tw_thr_poison_locked(g, c->rank, st, msg && *msg ? msg : "failed");
    pthread_mutex_unlock(&g->mu);
}

int tw_comm_threads_failure(tw_comm *c, char *msg, size_t n) {
    if (!c || c->ops != &tw_thr_ops) return -1;
    tw_thr_group *g = ((tw_thr_ctx *)c->ctx)->g;
    pthread_mutex_lock(&g->mu);
    int rank = g->fail_st != TW_OK ? g->fail_rank : -1;
    if (rank >= 0 && msg && n) snprintf(msg, n, "%s", g->fail_msg);
    pthread_mutex_unlock(&g->mu);
    return rank;
}

/* The ranks' threads, for tw_comm_threads_run. */
typedef struct {
    tw_comm *c;
    tw_status (*fn)(tw_comm *c, void *arg);
    void *arg;
    tw_status st;
    char error[2048];
} tw_thr_job;

static void *tw_thr_main(void *p) {
    tw_thr_job *j = p;
    j->st = j->fn(j->c, j->arg);
    if (j->st != TW_OK) {
        snprintf(j->error, sizeof j->error, "%s", tw_error_text());
        /* the peers may wait for this rank in a collective: they stop now, naming it */
        tw_comm_threads_fail(j->c, j->st, j->error);
    }
    tw_thr_mark_left(j->c);
    return NULL;
}

tw_status tw_comm_threads_run(int n, double timeout_s, tw_status (*fn)(tw_comm *c, void *arg),
                              void *const *args, tw_status *rank_st) {
    tw_comm **h = calloc((size_t)(n > 0 ? n : 1), sizeof *h);
    tw_thr_job *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
    pthread_t *tid = calloc((size_t)(n > 0 ? n : 1), sizeof *tid);
    if (!h || !jobs || !tid) {
        free(h), free(jobs), free(tid);
        return TW_ERR(TW_ERR_NOMEM, "threads of %d ranks", n);
    }
    tw_status st = tw_comm_threads_create(n, timeout_s, h);
    if (st != TW_OK) {
        free(h), free(jobs), free(tid);
        return st;
    }
    int started = 0;
    for (int r = 0; r < n; r++) {
        jobs[r] = (tw_thr_job){.c = h[r], .fn = fn, .arg = args ? args[r] : NULL};
        if (r == 0) continue; /* rank 0 runs on this thread */
        if (pthread_create(&tid[r], NULL, tw_thr_main, &jobs[r]) != 0) {
            tw_comm_threads_fail(h[0], TW_ERR_INTERNAL, "could not start a rank thread");
            break;
        }
        started = r;
    }
    if (started == n - 1) tw_thr_main(&jobs[0]);
    for (int r = 1; r <= started; r++) pthread_join(tid[r], NULL);
    /* the first failure names its rank (the others then report it too) */
    st = TW_OK;
    int first = -1;
    for (int r = 0; r < n; r++) {
        if (rank_st) rank_st[r] = jobs[r].st;
        if (jobs[r].st != TW_OK && first < 0) first = r;
    }
    if (started < n - 1) {
        st = TW_ERR(TW_ERR_INTERNAL, "could not start the thread of rank %d of %d", started + 1, n);
    } else if (first >= 0) {
        char why[1536];
        int culprit = tw_comm_threads_failure(h[0], why, sizeof why);
        tw_status cst = culprit >= 0 ? jobs[culprit].st : jobs[first].st;
        if (culprit >= 0 && jobs[culprit].st != TW_OK)
            st = TW_ERR(cst, "rank %d failed: %s", culprit, jobs[culprit].error);
        else
            st = TW_ERR(jobs[first].st, "rank %d failed: %s", first, jobs[first].error);
    }
    for (int r = 0; r < n; r++) tw_comm_destroy(h[r]);
    free(h), free(jobs), free(tid);
    return st;
}

/* ---- hybrid: MPI processes x threads (nccl-tests' -np P with -g G) ---------------------------
 * A host-side communicator over every thread of every process: global rank = mpi_rank * G +
 * thread, as nccl-tests numbers them. Only what NCCL's bootstrap and the host helpers need:
 * host_allgather and barrier (threads, then MPI on thread 0, the process's main thread, the only
 * one that calls MPI), no data collectives and no sub-communicators. Both handles are borrowed. */
typedef struct {
    tw_comm *mpi; /* the process's MPI communicator; called on thread 0 only */
    tw_comm *th;  /* this thread's handle of the process's threads group */
    int g;        /* threads per process */
} tw_hyb_ctx;

static tw_status tw_hyb_unsupported(tw_comm *c, const char *what) {
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "rank %d: the mpi x threads host communicator has no %s (it bootstraps NCCL)",
                  c->rank, what);
}

static tw_status tw_hyb_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  tw_redop op) {
    (void)in, (void)out, (void)count, (void)dt, (void)op;
    return tw_hyb_unsupported(c, "allreduce");
}
static tw_status tw_hyb_allgather(tw_comm *c, const void *in, void *out, size_t count,
                                  tw_dtype dt) {
    (void)in, (void)out, (void)count, (void)dt;
    return tw_hyb_unsupported(c, "allgather");
}
static tw_status tw_hyb_reducescatter(tw_comm *c, const void *in, void *out, size_t count,
                                      tw_dtype dt, tw_redop op) {
    (void)in, (void)out, (void)count, (void)dt, (void)op;
    return tw_hyb_unsupported(c, "reducescatter");
}
static tw_status tw_hyb_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  int root) {
    (void)in, (void)out, (void)count, (void)dt, (void)root;
    return tw_hyb_unsupported(c, "broadcast");
}
static tw_status tw_hyb_alltoall(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt) {
    (void)in, (void)out, (void)count, (void)dt;
    return tw_hyb_unsupported(c, "alltoall");
}

/* Thread 0 runs an MPI step; on a failure the process's other threads are stopped (poison). */
static tw_status tw_hyb_mpi_step(tw_hyb_ctx *x, tw_status st) {
    if (st != TW_OK) tw_comm_threads_fail(x->th, st, tw_error_text());
    return st;
}

static tw_status tw_hyb_barrier(tw_comm *c) {
    tw_hyb_ctx *x = c->ctx;
    TW_TRY(tw_comm_barrier(x->th));
    if (tw_comm_rank(x->th) == 0) TW_TRY(tw_hyb_mpi_step(x, tw_comm_barrier(x->mpi)));
    return tw_comm_barrier(x->th);
}

static tw_status tw_hyb_host_allgather(tw_comm *c, const void *in, void *out, size_t bytes) {
    tw_hyb_ctx *x = c->ctx;
    int t = tw_comm_rank(x->th);
    /* this process's G blocks (every thread), then thread 0 gathers the processes' into out in
     * global rank order ([process][thread]), then the other threads copy it from thread 0's */
    char *local = malloc(bytes * (size_t)x->g + 1);
    if (!local) {
        tw_comm_threads_fail(x->th, TW_ERR_NOMEM, "out of memory in a host allgather");
        return TW_ERR(TW_ERR_NOMEM, "rank %d: host allgather of %zu bytes", c->rank, bytes);
    }
    tw_status st = x->th->ops->host_allgather(x->th, in, local, bytes);
    if (st == TW_OK && t == 0)
        st = tw_hyb_mpi_step(x, x->mpi->ops->host_allgather(x->mpi, local, out, bytes * x->g));
    free(local);
    TW_TRY(st);
    void *src = t == 0 ? out : NULL, *all[64];
    void **ptrs = x->g <= 64 ? all : malloc(sizeof(void *) * (size_t)x->g);
    if (!ptrs) {
        tw_comm_threads_fail(x->th, TW_ERR_NOMEM, "out of memory in a host allgather");
        return TW_ERR(TW_ERR_NOMEM, "rank %d: host allgather", c->rank);
    }
    st = x->th->ops->host_allgather(x->th, &src, ptrs, sizeof src);
    if (st == TW_OK && t != 0) memcpy(out, ptrs[0], bytes * (size_t)c->size);
    if (ptrs != all) free(ptrs);
    TW_TRY(st);
    /* thread 0's out is read until every thread has copied it */
    return tw_comm_barrier(x->th);
}

static tw_status tw_hyb_nop(tw_comm *c) {
    (void)c;
    return TW_OK;
}

static tw_status tw_hyb_sub(tw_comm *c, int n, tw_comm **out) {
    (void)n;
    *out = NULL;
    return tw_hyb_unsupported(c, "sub-communicators (a --tp list)");
}

static void tw_hyb_destroy(tw_comm *c) {
    if (!c) return;
    free(c->ctx);
    free(c);
}

static void tw_hyb_abort(tw_comm *c, int code) {
    tw_hyb_ctx *x = c->ctx;
    tw_comm_threads_fail(x->th, TW_ERR_COMM, "the run was aborted");
    tw_comm_abort(x->mpi, code); /* MPI_Abort ends every process of the job */
}

static const tw_comm_ops tw_hyb_ops = {
    .name = "mpi+threads",
    .allreduce = tw_hyb_allreduce,
    .allgather = tw_hyb_allgather,
    .reducescatter = tw_hyb_reducescatter,
    .broadcast = tw_hyb_broadcast,
    .alltoall = tw_hyb_alltoall,
    .barrier = tw_hyb_barrier,
    .wait = tw_hyb_nop,
    .host_allgather = tw_hyb_host_allgather,
    .sub = tw_hyb_sub,
    .destroy = tw_hyb_destroy,
    .abort = tw_hyb_abort,
};

tw_status tw_comm_hybrid_create(tw_comm *mpi, tw_comm *thread_handle, tw_comm **out) {
    *out = NULL;
    if (!mpi || !thread_handle || thread_handle->ops != &tw_thr_ops)
        return TW_ERR(TW_ERR_INVALID,
                      "mpi x threads: needs an mpi communicator and a threads handle");
    tw_comm *c = calloc(1, sizeof *c);
    tw_hyb_ctx *x = calloc(1, sizeof *x);
    if (!c || !x) {
        free(c), free(x);
        tw_comm_threads_fail(thread_handle, TW_ERR_NOMEM, "out of memory");
        return TW_ERR(TW_ERR_NOMEM, "mpi x threads communicator");
    }
    x->mpi = mpi;
    x->th = thread_handle;
    x->g = tw_comm_size(thread_handle);
    int t = tw_comm_rank(thread_handle);
    c->ops = &tw_hyb_ops;
    c->ctx = x;
    /* nccl-tests' numbering: the threads of a process are consecutive ranks */
    c->rank = mpi->rank * x->g + t;
    c->size = mpi->size * x->g;
    c->local_rank = mpi->local_rank * x->g + t;
    c->local_size = mpi->local_size * x->g;
    c->device = -1;
    c->timeout_s = mpi->timeout_s;
    *out = c;
    return TW_OK;
}
