/* The `nccl` communicator: one GPU per rank, device buffers, calls queued on the backend's stream.
 * The device is the node-local rank (modulo the devices present); the ncclUniqueId is made on
 * rank 0 and shared over the host communicator (mpi under a launcher, local for one rank), which
 * also carries the host-side helpers. The NCCL communicator is non-blocking (config.blocking = 0)
 * so that neither its creation nor a collective can hang: every wait polls
 * ncclCommGetAsyncError (and cudaStreamQuery) against the deadline, and on a failure or timeout
 * the communicator is aborted (ncclCommAbort) and the error names the rank and the call.
 * Compiled only when CMake found CUDA and NCCL (TW_HAVE_CUDA, TW_HAVE_NCCL). */
#include "tw_comm.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_util.h"

#if defined(TW_HAVE_CUDA) && defined(TW_HAVE_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>

int tw_comm_nccl_built(void) {
    return 1;
}

typedef struct {
    tw_comm *host; /* mpi, local or threads: bootstrap and host helpers */
    int own_host;  /* destroyed with this communicator (not when borrowed: create_over) */
    ncclComm_t nccl;
    cudaStream_t stream;
    int failed;
    int aborted;
} tw_nccl_ctx;

/* Every NCCL call goes through this: ncclInProgress is the normal answer of a non-blocking
 * communicator (completion is then awaited by tw_nccl_settle). */
#define TW_NCCL_CHECK(c, call)                                                                     \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess && r_ != ncclInProgress) {                                           \
            ((tw_nccl_ctx *)(c)->ctx)->failed = 1;                                                 \
            return TW_ERR(TW_ERR_COMM, "rank %d: %s failed: %s (%s)", (c)->rank, #call,            \
                          ncclGetErrorString(r_), ncclGetLastError(NULL));                         \
        }                                                                                          \
    } while (0)

#define TW_CUDA_CHECK(c, call)                                                                     \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            ((tw_nccl_ctx *)(c)->ctx)->failed = 1;                                                 \
            return TW_ERR(TW_ERR_DEVICE, "rank %d: %s failed: %s", (c)->rank, #call,               \
                          cudaGetErrorString(e_));                                                 \
        }                                                                                          \
    } while (0)

static void tw_nccl_abort_comm(tw_nccl_ctx *x) {
    if (x->nccl && !x->aborted) {
        ncclCommAbort(x->nccl);
        x->aborted = 1;
    }
}

/* Waits until the communicator's last operation has been enqueued (async state leaves
 * ncclInProgress), or it reports an error, or the deadline passes. */
static tw_status tw_nccl_settle(tw_comm *c, const char *what) {
    tw_nccl_ctx *x = c->ctx;
    double deadline = tw_now_s() + c->timeout_s;
    for (;;) {
        ncclResult_t st = ncclInProgress;
        ncclResult_t r = ncclCommGetAsyncError(x->nccl, &st);
        if (r != ncclSuccess) st = r;
        if (st == ncclSuccess) return TW_OK;
        if (st != ncclInProgress) {
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_COMM, "rank %d: %s: NCCL reported %s (a peer failed?)", c->rank,
                          what, ncclGetErrorString(st));
        }
        if (tw_now_s() > deadline) {
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_TIMEOUT,
                          "rank %d: %s did not complete within %g s (a peer died or stalls)",
                          c->rank, what, c->timeout_s);
        }
        sched_yield();
    }
}

static tw_status tw_nccl_usable(tw_comm *c) {
    tw_nccl_ctx *x = c->ctx;
    if (x->failed)
        return TW_ERR(TW_ERR_COMM, "rank %d: the nccl communicator failed earlier", c->rank);
    return TW_OK;
}

static ncclDataType_t tw_nccl_type(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return ncclFloat32;
    case TW_BF16:
        return ncclBfloat16;
    case TW_I32:
        return ncclInt32;
    }
    return ncclFloat32;
}

static ncclRedOp_t tw_nccl_op(tw_redop op) {
    return op == TW_RED_MAX ? ncclMax : ncclSum;
}

static tw_status tw_nccl_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                   tw_redop op) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    TW_NCCL_CHECK(
        c, ncclAllReduce(in, out, count, tw_nccl_type(dt), tw_nccl_op(op), x->nccl, x->stream));
    return tw_nccl_settle(c, "ncclAllReduce");
}

static tw_status tw_nccl_allgather(tw_comm *c, const void *in, void *out, size_t count,
                                   tw_dtype dt) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    TW_NCCL_CHECK(c, ncclAllGather(in, out, count, tw_nccl_type(dt), x->nccl, x->stream));
    return tw_nccl_settle(c, "ncclAllGather");
}

static tw_status tw_nccl_reducescatter(tw_comm *c, const void *in, void *out, size_t count,
                                       tw_dtype dt, tw_redop op) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    TW_NCCL_CHECK(
        c, ncclReduceScatter(in, out, count, tw_nccl_type(dt), tw_nccl_op(op), x->nccl, x->stream));
    return tw_nccl_settle(c, "ncclReduceScatter");
}

static tw_status tw_nccl_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                   int root) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    TW_NCCL_CHECK(c, ncclBroadcast(in, out, count, tw_nccl_type(dt), root, x->nccl, x->stream));
    return tw_nccl_settle(c, "ncclBroadcast");
}

/* NCCL has no all-to-all: grouped point-to-point sends and receives. */
static tw_status tw_nccl_alltoall(tw_comm *c, const void *in, void *out, size_t count,
                                  tw_dtype dt) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    size_t b = count * tw_comm_dtype_size(dt);
    void *tmp = NULL;
    if (in == out) {
        TW_CUDA_CHECK(c, cudaMallocAsync(&tmp, b * (size_t)c->size, x->stream));
        TW_CUDA_CHECK(
            c, cudaMemcpyAsync(tmp, in, b * (size_t)c->size, cudaMemcpyDeviceToDevice, x->stream));
        in = tmp;
    }
    TW_NCCL_CHECK(c, ncclGroupStart());
    for (int p = 0; p < c->size; p++) {
        TW_NCCL_CHECK(c, ncclSend((const char *)in + (size_t)p * b, count, tw_nccl_type(dt), p,
                                  x->nccl, x->stream));
        TW_NCCL_CHECK(c, ncclRecv((char *)out + (size_t)p * b, count, tw_nccl_type(dt), p, x->nccl,
                                  x->stream));
    }
    TW_NCCL_CHECK(c, ncclGroupEnd());
    TW_TRY(tw_nccl_settle(c, "alltoall (ncclSend/ncclRecv group)"));
    if (tmp) TW_CUDA_CHECK(c, cudaFreeAsync(tmp, x->stream));
    return TW_OK;
}

/* Waits for the stream while polling NCCL's async error, so a dead peer is an error. */
static tw_status tw_nccl_wait(tw_comm *c) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_usable(c));
    double deadline = tw_now_s() + c->timeout_s;
    for (;;) {
        cudaError_t e = cudaStreamQuery(x->stream);
        if (e == cudaSuccess) return TW_OK;
        if (e != cudaErrorNotReady) {
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_DEVICE, "rank %d: cudaStreamQuery failed: %s", c->rank,
                          cudaGetErrorString(e));
        }
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(x->nccl, &st);
        if (r != ncclSuccess) st = r;
        if (st != ncclSuccess && st != ncclInProgress) {
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_COMM, "rank %d: NCCL reported %s while waiting (a peer failed?)",
                          c->rank, ncclGetErrorString(st));
        }
        int who = -1, sig = tw_comm_interrupted(&who);
        if (sig) {
            /* an interrupted rank (this one or a peer) stops waiting: the run writes what it
             * measured (see tw_comm_interrupted) */
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_INTERRUPTED, "rank %d: NCCL wait abandoned: %s on rank %d",
                          c->rank, tw_signal_name(sig), who);
        }
        if (tw_now_s() > deadline) {
            x->failed = 1;
            tw_nccl_abort_comm(x);
            return TW_ERR(TW_ERR_TIMEOUT,
                          "rank %d: queued NCCL collectives did not complete within %g s (a peer "
                          "died or stalls)",
                          c->rank, c->timeout_s);
        }
        sched_yield();
    }
}

static tw_status tw_nccl_barrier(tw_comm *c) {
    tw_nccl_ctx *x = c->ctx;
    TW_TRY(tw_nccl_wait(c));
    /* an idle barrier (tw_comm_idle_barrier) waits on the host communicator the same way */
    if (c->idle_poll) return tw_comm_idle_barrier(x->host, c->timeout_s);
    return tw_comm_barrier(x->host);
}

static tw_status tw_nccl_host_allgather(tw_comm *c, const void *in, void *out, size_t bytes) {
    tw_nccl_ctx *x = c->ctx;
    return x->host->ops->host_allgather(x->host, in, out, bytes);
}

static tw_status tw_nccl_set_stream(tw_comm *c, void *stream) {
    tw_nccl_ctx *x = c->ctx;
    x->stream = (cudaStream_t)stream;
    return TW_OK;
}

static tw_status tw_nccl_buf_alloc(tw_comm *c, size_t bytes, void **out) {
    TW_CUDA_CHECK(c, cudaMalloc(out, bytes ? bytes : 1));
    return TW_OK;
}

static void tw_nccl_buf_free(tw_comm *c, void *p) {
    (void)c;
    if (p) cudaFree(p);
}

/* Synchronous copies on the communicator's stream (ordered after queued collectives). */
static tw_status tw_nccl_buf_copy(tw_comm *c, void *dst, const void *src, size_t bytes,
                                  int to_device) {
    tw_nccl_ctx *x = c->ctx;
    TW_CUDA_CHECK(c, cudaMemcpyAsync(dst, src, bytes,
                                     to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                     x->stream));
    return tw_nccl_wait(c);
}

static void tw_nccl_destroy(tw_comm *c) {
    if (!c) return;
    tw_nccl_ctx *x = c->ctx;
    if (x->nccl) {
        /* a non-blocking communicator is finalised (polled with the bound), then destroyed */
        if (!x->failed && ncclCommFinalize(x->nccl) != ncclSuccess) x->failed = 1;
        if (!x->failed && tw_nccl_settle(c, "ncclCommFinalize") != TW_OK) x->failed = 1;
        if (x->failed)
            tw_nccl_abort_comm(x);
        else
            ncclCommDestroy(x->nccl);
    }
    if (x->own_host) tw_comm_destroy(x->host);
    free(x);
    free(c);
}

static void tw_nccl_abort(tw_comm *c, int code) {
    tw_nccl_ctx *x = c->ctx;
    tw_nccl_abort_comm(x);
    tw_comm_abort(x->host, code);
}

static tw_status tw_nccl_sub(tw_comm *c, int n, tw_comm **out);

static const tw_comm_ops tw_nccl_ops = {
    .name = "nccl",
    .allreduce = tw_nccl_allreduce,
    .allgather = tw_nccl_allgather,
    .reducescatter = tw_nccl_reducescatter,
    .broadcast = tw_nccl_broadcast,
    .alltoall = tw_nccl_alltoall,
    .barrier = tw_nccl_barrier,
    .wait = tw_nccl_wait,
    .host_allgather = tw_nccl_host_allgather,
    .set_stream = tw_nccl_set_stream,
    .buf_alloc = tw_nccl_buf_alloc,
    .buf_free = tw_nccl_buf_free,
    .buf_copy = tw_nccl_buf_copy,
    .sub = tw_nccl_sub,
    .destroy = tw_nccl_destroy,
    .abort = tw_nccl_abort,
};

/* The device of a new communicator: the node-local rank (one GPU per rank). */
static tw_status tw_nccl_pick_device(tw_comm *c) {
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0)
        return TW_ERR(TW_ERR_UNSUPPORTED, "rank %d: no CUDA device for the nccl communicator (%s)",
                      c->rank, e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if (c->local_size > ndev)
        return TW_ERR(TW_ERR_INVALID,
                      "rank %d: %d ranks on this host but %d CUDA device%s (one GPU per rank)",
                      c->rank, c->local_size, ndev, ndev == 1 ? "" : "s");
    c->device = c->local_rank;
    return TW_OK;
}

/* The NCCL communicator over the host communicator's ranks, on c->device: rank 0's
 * ncclUniqueId shared over the host communicator, then a non-blocking ncclCommInitRankConfig. */
static tw_status tw_nccl_join(tw_comm *c) {
    tw_nccl_ctx *x = c->ctx;
    TW_CUDA_CHECK(c, cudaSetDevice(c->device));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0) TW_NCCL_CHECK(c, ncclGetUniqueId(&id));
    ncclUniqueId *all = malloc(sizeof(ncclUniqueId) * (size_t)c->size);
    if (!all) return TW_ERR(TW_ERR_NOMEM, "sharing the ncclUniqueId");
    tw_status st = x->host->ops->host_allgather(x->host, &id, all, sizeof id);
    if (st == TW_OK) id = all[0]; /* rank 0's id, on every rank */
    free(all);
    if (st != TW_OK) return tw_error_ctx(st, "rank %d: broadcasting the ncclUniqueId", c->rank);

    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; /* creation and calls return at once; completion is polled with a bound */
    TW_NCCL_CHECK(c, ncclCommInitRankConfig(&x->nccl, c->size, id, c->rank, &cfg));
    return tw_nccl_settle(c, "ncclCommInitRankConfig");
}

/* A nccl communicator over the ranks of `host`: taken over (destroyed with it, also when this
 * fails) when own, else borrowed (poisoned when this fails: a threads peer must not wait). */
static tw_status tw_nccl_wrap_host(tw_comm *host, int own, tw_comm **out) {
    *out = NULL;
    tw_comm *c = calloc(1, sizeof *c);
    tw_nccl_ctx *x = calloc(1, sizeof *x);
    if (!c || !x) {
        free(c);
        free(x);
        if (own)
            tw_comm_destroy(host);
        else
            tw_comm_threads_fail(host, TW_ERR_NOMEM, "out of memory for the nccl communicator");
        return TW_ERR(TW_ERR_NOMEM, "creating the nccl communicator");
    }
    x->host = host;
    x->own_host = own;
    x->stream = NULL;
    c->ops = &tw_nccl_ops;
    c->ctx = x;
    c->rank = host->rank;
    c->size = host->size;
    c->local_rank = host->local_rank;
    c->local_size = host->local_size;
    c->device = -1;
    c->timeout_s = host->timeout_s;
    *out = c;
    return TW_OK;
}

static tw_status tw_nccl_wrap(tw_comm *host, tw_comm **out) {
    return tw_nccl_wrap_host(host, 1, out);
}

/* Ranks 0..n-1 on the same devices and stream: a host sub-communicator (mpi split or local), then
 * a fresh NCCL communicator among its members only (ncclGetUniqueId + ncclCommInitRankConfig, the
 * creation path). Why not ncclCommSplit: it is collective over the parent NCCL communicator and
 * adds a second non-blocking completion protocol; this way the ranks outside do no NCCL work. */
static tw_status tw_nccl_sub(tw_comm *c, int n, tw_comm **out) {
    tw_nccl_ctx *x = c->ctx;
    *out = NULL;
    TW_TRY(tw_nccl_usable(c));
    TW_TRY(tw_nccl_wait(c)); /* the parent's queued work is done before the members move on */
    tw_comm *hsub = NULL;
    TW_TRY(tw_comm_sub(x->host, n, &hsub));
    if (!hsub) return TW_OK; /* this rank is outside */
    tw_comm *s = NULL;
    TW_TRY(tw_nccl_wrap(hsub, &s));
    s->device = c->device; /* the device stays this process's */
    ((tw_nccl_ctx *)s->ctx)->stream = x->stream;
    tw_status st = tw_nccl_join(s);
    if (st != TW_OK) {
        tw_nccl_destroy(s);
        return tw_error_ctx(st, "rank %d: nccl sub-communicator of %d ranks on device %d", c->rank,
                            n, c->device);
    }
    *out = s;
    return TW_OK;
}

tw_status tw_comm_nccl_create(double timeout_s, tw_comm **out) {
    *out = NULL;
    tw_comm *host = NULL;
    if (tw_comm_under_launcher())
        TW_TRY(tw_comm_mpi_create(timeout_s, &host));
    else
        TW_TRY(tw_comm_local_create(timeout_s, &host));
    tw_comm *c = NULL;
    TW_TRY(tw_nccl_wrap(host, &c));
    tw_status st = tw_nccl_pick_device(c);
    if (st == TW_OK) st = tw_nccl_join(c);
    if (st != TW_OK) {
        /* a local failure (no device) leaves the peers waiting: they time out, naming us */
        tw_nccl_destroy(c);
        return tw_error_ctx(st, "creating the nccl communicator");
    }
    *out = c;
    return TW_OK;
}

/* One process, one thread per GPU (nccl-tests -t/-g): each rank thread wraps its own handle of a
 * threads group (or any host communicator) on device = its local rank. The ncclUniqueId goes
 * from rank 0 to the others over the host communicator, so no MPI is needed; every thread then
 * calls the non-blocking ncclCommInitRankConfig for its own rank (one rank per thread, so no
 * ncclGroupStart/End is needed). The host is borrowed: the caller destroys it after this one. */
tw_status tw_comm_nccl_create_over(tw_comm *host, double timeout_s, tw_comm **out) {
    *out = NULL;
    (void)timeout_s; /* the host's bound applies (it resolved the same option) */
    if (!host) return TW_ERR(TW_ERR_INVALID, "nccl over a host communicator: NULL host");
    tw_comm *c = NULL;
    TW_TRY(tw_nccl_wrap_host(host, 0, &c));
    tw_status st = tw_nccl_pick_device(c);
    if (st == TW_OK) st = tw_nccl_join(c);
    if (st != TW_OK) {
        /* the peers may already wait for this rank's part of the unique id: stop them */
        tw_comm_threads_fail(host, st, tw_last_error());
        tw_nccl_destroy(c);
        return tw_error_ctx(st, "rank %d: creating the nccl communicator over %s", host->rank,
                            tw_comm_kind(host));
    }
    *out = c;
    return TW_OK;
}

#else /* no CUDA or no NCCL */

tw_status tw_comm_nccl_create_over(tw_comm *host, double timeout_s, tw_comm **out) {
    (void)timeout_s;
    *out = NULL;
    tw_comm_threads_fail(host, TW_ERR_UNSUPPORTED, "the nccl communicator is not built");
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "the nccl communicator is not built (needs the CUDA toolkit and nccl.h/libnccl "
                  "at configure time; set NCCL_HOME or -DTW_NCCL_ROOT)");
}

int tw_comm_nccl_built(void) {
    return 0;
}

tw_status tw_comm_nccl_create(double timeout_s, tw_comm **out) {
    (void)timeout_s;
    *out = NULL;
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "the nccl communicator is not built (needs the CUDA toolkit and nccl.h/libnccl "
                  "at configure time; set NCCL_HOME or -DTW_NCCL_ROOT)");
}

#endif
