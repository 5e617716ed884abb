/* tw_comm: the communicator interface for tensor parallelism (issue 5).
 * One opaque communicator with an ops table and four implementations:
 *   local    one rank, no copies (in != out copies the input once, as a collective would);
 *   mpi      CPU ranks over MPI (non-blocking collectives polled against a deadline);
 *   threads  N ranks as N threads of one process, shared memory (comm_threads.c);
 *   nccl     one GPU per rank, device chosen from the node-local rank (built with CUDA + NCCL);
 *            its host side is mpi, local, or (one process, one thread per GPU) threads.
 * Buffers are backend memory: host memory for local/mpi, device memory for nccl, where the
 * calls are queued on the stream given by tw_comm_set_stream (a cudaStream_t passed as void *,
 * so no CUDA header reaches this interface) and complete by tw_comm_wait.
 *
 * Shapes (count is always elements, never bytes):
 *   allreduce      in[count] -> out[count]                      in == out allowed
 *   allgather      in[count] -> out[size * count]               in-place: in == out + rank*count
 *   reducescatter  in[size * count] -> out[count]               in-place: out == in + rank*count
 *                  (in-place leaves the rest of `in` unspecified)
 *   broadcast      buf[count] from root (in == out allowed; on non-roots `in` is ignored)
 *   alltoall       in[size * count] -> out[size * count], block p goes to rank p; in == out ok
 * bf16 reductions (SUM, MAX): mpi converts to fp32, reduces in fp32 and rounds to bf16 once at
 * the end (one rounding whatever the rank count); nccl uses NCCL's native bf16 reduction (fp32
 * arithmetic, rounded to bf16 at each step of its ring/tree).
 *
 * Failure: no collective waits forever. Each waits at most timeout_s (API argument, else env
 * TW_COMM_TIMEOUT_S, else 60 s) and then returns TW_ERR_TIMEOUT with a message naming this rank,
 * the collective, and the ranks that did not answer a liveness poll ("a peer died or stalls").
 * After any error the communicator is unusable: print tw_last_error() and call tw_comm_abort. */
#ifndef TW_COMM_H
#define TW_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "tw_backend.h"
#include "tw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TW_RED_SUM = 0, TW_RED_MAX = 1 } tw_redop;

/* Element size and name of a dtype (tw_dtype_size/_name of the backend interface). */
size_t tw_comm_dtype_size(tw_dtype dt);
const char *tw_comm_dtype_name(tw_dtype dt); /* "fp32", "bf16", "i32" */

const char *tw_redop_name(tw_redop op);                 /* "sum", "max" */
tw_status tw_redop_parse(const char *s, tw_redop *out); /* "sum" or "max" */

typedef struct tw_comm tw_comm;

/* Seconds and bytes inside collectives since creation or the last tw_comm_stats_reset.
 * For nccl, time_s is host time in the calls plus tw_comm_wait (the stream work is async). */
typedef struct {
    double time_s;
    uint64_t calls;
    uint64_t bytes; /* payload bytes given to the calls (count * dtype size, per rank) */
} tw_comm_stats;

typedef struct {
    const char *name; /* "local", "mpi", "threads", "nccl" */
    tw_status (*allreduce)(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                           tw_redop op);
    tw_status (*allgather)(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt);
    tw_status (*reducescatter)(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                               tw_redop op);
    tw_status (*broadcast)(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                           int root);
    tw_status (*alltoall)(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt);
    tw_status (*barrier)(tw_comm *c);
    /* waits for queued work (nccl stream); a no-op for local and mpi */
    tw_status (*wait)(tw_comm *c);
    /* host-memory helpers, all ranks receive the result: out[size * bytes] */
    tw_status (*host_allgather)(tw_comm *c, const void *in, void *out, size_t bytes);
    tw_status (*set_stream)(tw_comm *c, void *stream); /* NULL: host memory, no stream */
    /* buffers in the communicator's memory (NULL: host malloc / memcpy) */
    tw_status (*buf_alloc)(tw_comm *c, size_t bytes, void **out);
    void (*buf_free)(tw_comm *c, void *p);
    tw_status (*buf_copy)(tw_comm *c, void *dst, const void *src, size_t bytes, int to_device);
    /* ranks 0..n-1 of c as a new communicator (checked by tw_comm_sub; *out NULL on rank >= n) */
    tw_status (*sub)(tw_comm *c, int n, tw_comm **out);
    void (*destroy)(tw_comm *c);
    void (*abort)(tw_comm *c, int code);
} tw_comm_ops;

struct tw_comm {
    const tw_comm_ops *ops;
    void *ctx; /* implementation-private */
    int rank, size;
    int local_rank, local_size; /* within this host */
    int device;                 /* CUDA device of this rank (nccl), -1 otherwise */
    double timeout_s;
    tw_comm_stats stats;
    int idle_poll; /* set by tw_comm_idle_barrier: sleep between polls instead of spinning */
};

/* kind: "auto" (mpi for backend "cpu" under an MPI launcher, nccl for "cuda", local when the
 * world has one rank and no launcher), "local", "mpi" or "nccl". backend: "cpu" or "cuda" (used by
 * "auto" only; NULL means cpu). timeout_s <= 0 takes TW_COMM_TIMEOUT_S or 60 s.
 * MPI is initialised here (MPI_Init_thread, FUNNELED) only when launched under mpirun/PMIx/PMI
 * (or already initialised); a plain launch never calls MPI_Init. On creation the ranks check that
 * they run the same binary (hash of /proc/self/exe and the build commit) and error naming the
 * rank that differs. */
tw_status tw_comm_create(const char *kind, const char *backend, double timeout_s, tw_comm **out);
/* Finalises MPI when this module initialised it and no communicator is left. */
void tw_comm_destroy(tw_comm *c);
/* A communicator over ranks 0..n-1 of c (1 <= n <= size), in the same rank order, for running
 * at a smaller tensor-parallel degree inside one launch. Collective over ALL ranks of c: every
 * rank calls it with the same n. Ranks < n receive a new communicator (*out) of the same kind,
 * timeout and (nccl) device, with its own stats and node-local rank/size; ranks >= n receive
 * *out = NULL and TW_OK. The caller owns *out and destroys it with tw_comm_destroy before
 * destroying c (also for n == size: it is a new handle, never c itself). local: n must be 1.
 * Errors name the rank, the operation and n. */
tw_status tw_comm_sub(tw_comm *c, int n, tw_comm **out);
/* A barrier for ranks that sit out while others work (the smaller degrees of a tensor-parallel
 * sweep): it waits up to wait_s instead of the communicator's timeout, sleeping about 1 ms
 * between polls so that a waiting rank leaves the cores to the working ranks. The working
 * ranks' own collectives keep the communicator's timeout; a rank that fails ends the job with
 * tw_comm_abort, which also ends the waiting ranks. */
tw_status tw_comm_idle_barrier(tw_comm *c, double wait_s);
/* Interruption (SIGINT, SIGTERM, SIGHUP caught by tw_interrupt_install, harness/tw_util.h):
 * the signal that stops this run, caught by this process or, under MPI, by any other rank of
 * the launch. The first call after a local signal tells every other rank (a message on a
 * communicator of its own that every rank's collectives poll while they wait), so that a rank
 * waiting in a collective for an interrupted peer returns TW_ERR_INTERRUPTED at once instead
 * of running into the timeout. Returns the signal number (0: none); *rank (may be NULL)
 * receives the launch rank it hit. Cheap: a flag test and an MPI_Iprobe. */
int tw_comm_interrupted(int *rank);
/* The launch rank of this process (0 without MPI). */
int tw_comm_world_rank(void);

/* Tears the whole job down after printing an error (MPI_Abort; exit() for local); no return. */
void tw_comm_abort(tw_comm *c, int code) __attribute__((noreturn));

/* Whether the nccl / mpi implementations are compiled into this binary. */
int tw_comm_nccl_built(void);
int tw_comm_mpi_built(void);
/* Whether this process was started by an MPI launcher (env OMPI_COMM_WORLD_SIZE, PMIX_RANK...). */
int tw_comm_under_launcher(void);

/* nccl: the stream (cudaStream_t) the calls are queued on; NULL = the legacy default stream. */
tw_status tw_comm_set_stream(tw_comm *c, void *stream);

static inline int tw_comm_rank(const tw_comm *c) {
    return c->rank;
}
static inline int tw_comm_size(const tw_comm *c) {
    return c->size;
}
static inline int tw_comm_local_rank(const tw_comm *c) {
    return c->local_rank;
}
static inline int tw_comm_device(const tw_comm *c) {
    return c->device;
}
static inline const char *tw_comm_kind(const tw_comm *c) {
    return c->ops->name;
}

/* The collectives (shapes above). Each validates its arguments, times itself into c->stats and
 * adds the collective's name and count to any error. */
tw_status tw_comm_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                            tw_redop op);
tw_status tw_comm_allgather(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt);
tw_status tw_comm_reducescatter(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                tw_redop op);
tw_status tw_comm_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                            int root);
tw_status tw_comm_alltoall(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt);
tw_status tw_comm_barrier(tw_comm *c);
tw_status tw_comm_wait(tw_comm *c);

tw_comm_stats tw_comm_get_stats(const tw_comm *c);
void tw_comm_stats_reset(tw_comm *c);

/* Buffers in the memory the collectives take (host for local/mpi, device for nccl), for
 * benchmarks and tests that run without an engine backend. upload/download wait for the copy. */
tw_status tw_comm_buf_alloc(tw_comm *c, size_t bytes, void **out);
void tw_comm_buf_free(tw_comm *c, void *p);
tw_status tw_comm_buf_upload(tw_comm *c, void *dst, const void *src_host, size_t bytes);
tw_status tw_comm_buf_download(tw_comm *c, void *dst_host, const void *src, size_t bytes);

/* ---- host-side helpers (host memory on every kind, bounded like the collectives) ---------- */
/* Compares a 64-bit hash of blob[n] across ranks; on a mismatch every rank returns
 * TW_ERR_INVALID naming `what` and each rank whose hash differs from rank 0's. */
tw_status tw_comm_check_consistency(tw_comm *c, const void *blob, size_t n, const char *what);
/* all_ranks[size] receives every rank's value (on every rank). */
tw_status tw_comm_allgather_f64(tw_comm *c, double value, double *all_ranks);
tw_status tw_comm_max_f64(tw_comm *c, double value, double *max_out);

/* Where the ranks run: hostnames per rank and how many hosts / ranks per host. */
#define TW_COMM_HOST_MAX 64
typedef struct {
    int size;                       /* ranks */
    int n_hosts;                    /* distinct hostnames */
    int max_per_host;               /* most ranks on one host */
    char (*host)[TW_COMM_HOST_MAX]; /* [size] hostname of each rank */
} tw_comm_hosts;
tw_status tw_comm_gather_hosts(tw_comm *c, tw_comm_hosts *out); /* free with _free_hosts */
void tw_comm_free_hosts(tw_comm_hosts *h);

/* 64-bit FNV-1a (used for the consistency checks; exposed for tests). */
uint64_t tw_comm_hash64(const void *p, size_t n, uint64_t seed);

/* ---- threads: N ranks as N threads of one process ------------------------------------------
 * handles[n] receives one communicator per rank (rank r: handles[r]), each to be used by one
 * thread only and destroyed by it (tw_comm_destroy; the group lives until its last handle).
 * Collectives meet the peers in shared memory: bounded by timeout_s (<= 0: TW_COMM_TIMEOUT_S or
 * 60 s) and abandoned at once when any rank fails, is interrupted (tw_comm_interrupted) or
 * destroys its handle while the others wait; every rank's error then names that rank. After
 * that the group refuses collectives. tw_comm_abort ends the process (every rank). */
tw_status tw_comm_threads_create(int n, double timeout_s, tw_comm **handles);
/* A rank thread that failed outside a collective (status st, message msg): every peer's
 * current and later waits on this communicator's group return st naming this rank and msg.
 * A no-op for the other kinds. */
void tw_comm_threads_fail(tw_comm *c, tw_status st, const char *msg);
/* The rank whose failure poisoned c's group (its message into msg[n]); -1 when none or when c
 * is not a threads communicator. */
int tw_comm_threads_failure(tw_comm *c, char *msg, size_t n);
/* Runs fn(handle r, args[r]) for r = 0..n-1 on n threads of this process (rank 0 on the calling
 * thread) over a new threads group, and joins them. A rank whose fn fails poisons the group (the
 * others stop at their next wait); the error returned names the first rank that failed, with
 * its message. rank_st[n] (may be NULL) receives each rank's status. The handles are destroyed
 * when every thread has returned. */
tw_status tw_comm_threads_run(int n, double timeout_s, tw_status (*fn)(tw_comm *c, void *arg),
                              void *const *args, tw_status *rank_st);

/* A launch mixing MPI processes and threads (mpirun -np P, G threads each, as nccl-tests -g G):
 * a host-side communicator "mpi+threads" over all P x G threads, global rank = mpi rank x G +
 * thread (node-local rank likewise), made by each thread from the process's mpi communicator
 * (read on thread 0 only, which must be the main thread: MPI is initialised FUNNELED) and its
 * threads handle, both borrowed. It has host_allgather and barrier (what NCCL's bootstrap and
 * the host helpers need), no data collectives and no sub-communicators; it is the host of
 * tw_comm_nccl_create_over for `tokwatt bench ... --gpus G` under mpirun. */
tw_status tw_comm_hybrid_create(tw_comm *mpi, tw_comm *thread_handle, tw_comm **out);

/* ---- implementation constructors (used by tw_comm_create) --------------------------------- */
/* timeout_s when > 0, else env TW_COMM_TIMEOUT_S, else 60 s. */
double tw_comm_resolve_timeout(double timeout_s);
tw_status tw_comm_local_create(double timeout_s, tw_comm **out);
tw_status tw_comm_mpi_create(double timeout_s, tw_comm **out);
tw_status tw_comm_nccl_create(double timeout_s, tw_comm **out);
/* An nccl communicator over the ranks of `host` (borrowed: destroy the result first, then host),
 * on device = host's local rank: the one-process, thread-per-GPU form (host = a threads handle,
 * as nccl-tests -t/-g) with no MPI. Collective over host. On a failure the host is poisoned
 * (threads) so that no peer waits for this rank. */
tw_status tw_comm_nccl_create_over(tw_comm *host, double timeout_s, tw_comm **out);
/* mpi part of tw_comm_interrupted: sends this rank's notice of local_sig (once, when non-zero)
 * and returns a peer's signal (0: none), its rank in *rank. 0 when MPI is not in use. */
int tw_comm_mpi_notice(int local_sig, int *rank);

#ifdef __cplusplus
}
#endif
#endif
