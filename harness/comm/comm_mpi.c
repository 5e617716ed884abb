/* The `mpi` communicator: CPU ranks over MPI, host buffers.
 * Every collective is the non-blocking MPI call (MPI_Iallreduce and friends) polled with
 * MPI_Test against a deadline, so a dead or stalled peer gives TW_ERR_TIMEOUT within the bound
 * instead of a hang. On a timeout the ranks that timed out exchange a liveness message on a
 * separate communicator for a short grace period; the ranks that do not answer are named.
 * The communicators use MPI_ERRORS_RETURN, so a peer failure that MPI detects is an error too.
 * bf16 reductions are done in fp32 (converted into a scratch buffer) and rounded once. */
#include "tw_comm.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_util.h"

#ifdef TW_HAVE_MPI
#include <mpi.h>

int tw_comm_mpi_built(void) {
    return 1;
}

typedef struct {
    MPI_Comm comm;   /* collectives */
    MPI_Comm health; /* liveness poll after a timeout */
    float *scratch;  /* bf16 reductions in fp32 */
    size_t scratch_n;
    uint64_t seq;       /* collectives issued, for messages */
    int failed;         /* an earlier collective failed: the communicator is unusable */
    int oversub;        /* more ranks on this host than cores: yield while polling */
    size_t small_bytes; /* all-reduces up to this many bytes x ranks go by direct exchange */
} tw_mpi_ctx;

static int g_mpi_we_init = 0; /* this module called MPI_Init_thread */
static int g_mpi_refs = 0;    /* live mpi communicators */

#define TW_HEALTH_TAG 7301
#define TW_NOTICE_TAG 7303

/* Interruption notices (tw_comm_interrupted): a duplicate of MPI_COMM_WORLD made when the
 * launch communicator is created, on which a rank that caught a signal tells every other rank
 * once; every wait below probes it. Process-wide, so that a rank waiting on a
 * sub-communicator (a smaller tensor-parallel degree) hears a rank outside it. */
static MPI_Comm g_notice = MPI_COMM_NULL;
static int g_notice_rank = 0, g_notice_size = 1;
static int g_notice_sent = 0;
static int g_notice_msg[2]; /* {signal, rank}: must outlive the sends (never waited) */
static int g_peer_sig = 0, g_peer_rank = -1;

int tw_comm_world_rank(void) {
    return g_notice_rank;
}

int tw_comm_mpi_notice(int local_sig, int *rank) {
    if (g_notice == MPI_COMM_NULL) return 0;
    if (local_sig && !g_notice_sent) {
        g_notice_sent = 1;
        g_notice_msg[0] = local_sig;
        g_notice_msg[1] = g_notice_rank;
        for (int p = 0; p < g_notice_size; p++) {
            if (p == g_notice_rank) continue;
            MPI_Request req;
            /* the requests are never waited for: the job ends soon after an interruption */
            if (MPI_Isend(g_notice_msg, 2, MPI_INT, p, TW_NOTICE_TAG, g_notice, &req) ==
                MPI_SUCCESS)
                MPI_Request_free(&req);
        }
    }
    /* Why at most every 5 ms: MPI_Iprobe runs MPI's progress engine, and the collectives of a
     * decode step poll this thousands of times a second; a peer's notice waits 5 ms at most. */
    static double last_probe = 0;
    double now = tw_now_s();
    if (!g_peer_sig && now - last_probe >= 0.005) {
        last_probe = now;
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TW_NOTICE_TAG, g_notice, &flag, &st) == MPI_SUCCESS &&
            flag) {
            int msg[2] = {0, -1};
            MPI_Recv(msg, 2, MPI_INT, st.MPI_SOURCE, TW_NOTICE_TAG, g_notice, MPI_STATUS_IGNORE);
            g_peer_sig = msg[0] ? msg[0] : 15;
            g_peer_rank = msg[1];
        }
    }
    if (rank) *rank = g_peer_rank;
    return g_peer_sig;
}

static const char *tw_mpi_errstr(int rc, char *buf) {
    int len = 0;
    if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) snprintf(buf, 64, "MPI error %d", rc);
    return buf;
}

/* After a timeout: tell every other rank we are alive and stuck in collective `seq`, then listen
 * for the same from the others for a grace period. Writes the ranks that stayed silent. */
static void tw_mpi_liveness(tw_comm *c, char *silent, size_t n) {
    tw_mpi_ctx *x = c->ctx;
    double grace = c->timeout_s * 0.25;
    if (grace < 1.0) grace = 1.0;
    if (grace > 5.0) grace = 5.0;
    unsigned long long token = (unsigned long long)x->seq;
    char *alive = calloc((size_t)c->size, 1);
    MPI_Request *req = calloc((size_t)c->size, sizeof(MPI_Request));
    if (!alive || !req) {
        snprintf(silent, n, "(unknown: out of memory)");
        free(alive);
        free(req);
        return;
    }
    alive[c->rank] = 1;
    for (int p = 0; p < c->size; p++) {
        req[p] = MPI_REQUEST_NULL;
        if (p != c->rank)
            MPI_Isend(&token, 1, MPI_UNSIGNED_LONG_LONG, p, TW_HEALTH_TAG, x->health, &req[p]);
    }
    double end = tw_now_s() + grace;
    int missing = c->size - 1;
    while (missing > 0 && tw_now_s() < end) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TW_HEALTH_TAG, x->health, &flag, &st) != MPI_SUCCESS) break;
        if (!flag) {
            usleep(1000);
            continue;
        }
        unsigned long long got;
        MPI_Recv(&got, 1, MPI_UNSIGNED_LONG_LONG, st.MPI_SOURCE, TW_HEALTH_TAG, x->health,
                 MPI_STATUS_IGNORE);
        if (st.MPI_SOURCE >= 0 && st.MPI_SOURCE < c->size && !alive[st.MPI_SOURCE]) {
            alive[st.MPI_SOURCE] = 1;
            missing--;
        }
    }
    size_t used = 0;
    silent[0] = '\0';
    for (int p = 0; p < c->size && used + 16 < n; p++)
        if (!alive[p])
            used += (size_t)snprintf(silent + used, n - used, "%s%d", used ? ", " : "", p);
    /* the sends are never waited for: the job is about to be torn down */
    free(alive);
    free(req);
}

/* Polls requests until all complete, one fails, or the deadline passes. */
static tw_status tw_mpi_waitall(tw_comm *c, int nreq, MPI_Request *req, const char *what) {
    tw_mpi_ctx *x = c->ctx;
    double t0 = tw_now_s(), deadline = t0 + c->timeout_s;
    unsigned long spins = 0;
    for (;;) {
        int flag = 0;
        int rc = MPI_Testall(nreq, req, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            char buf[MPI_MAX_ERROR_STRING];
            x->failed = 1;
            return TW_ERR(TW_ERR_COMM, "rank %d: %s #%llu failed: %s (a peer died?)", c->rank, what,
                          (unsigned long long)x->seq, tw_mpi_errstr(rc, buf));
        }
        if (flag) return TW_OK;
        spins++;
        /* Why yield: with more ranks than cores (mpirun --oversubscribe) a spinning rank would
         * take the core from the peer it waits for. Otherwise spin for latency. A rank that sits
         * out while others work (tw_comm_idle_barrier) sleeps instead: latency does not matter
         * there and the cores belong to the working ranks. */
        if (c->idle_poll)
            usleep(1000);
        else if (x->oversub || spins > 20000)
            sched_yield();
        if (c->idle_poll || (spins & 63) == 0) {
            /* an interrupted rank (this one or a peer) abandons the collective: its peers may
             * never enter it, and the run ends writing what it measured */
            int who = -1, sig = tw_comm_interrupted(&who);
            if (sig) {
                x->failed = 1;
                return TW_ERR(TW_ERR_INTERRUPTED,
                              "rank %d: collective %s #%llu abandoned: %s on rank %d", c->rank,
                              what, (unsigned long long)x->seq, tw_signal_name(sig), who);
            }
        }
        if ((c->idle_poll || (spins & 63) == 0) && tw_now_s() > deadline) {
            x->failed = 1;
            char silent[256];
            tw_mpi_liveness(c, silent, sizeof silent);
            return TW_ERR(TW_ERR_TIMEOUT,
                          "rank %d: collective %s #%llu did not complete within %g s (a peer died "
                          "or stalls); %s%s",
                          c->rank, what, (unsigned long long)x->seq, c->timeout_s,
                          silent[0] ? "no answer to a liveness poll from rank(s) "
                                    : "every rank answered a liveness poll (a slow or stuck "
                                      "network, or ranks in different collectives)",
                          silent);
        }
    }
}

static tw_status tw_mpi_wait(tw_comm *c, MPI_Request *req, const char *what) {
    return tw_mpi_waitall(c, 1, req, what);
}

static tw_status tw_mpi_usable(tw_comm *c, size_t count) {
    tw_mpi_ctx *x = c->ctx;
    if (count * (size_t)c->size > (size_t)INT_MAX)
        return TW_ERR(TW_ERR_INVALID, "rank %d: count %zu x %d ranks exceeds MPI's int counts",
                      c->rank, count, c->size);
    if (x->failed)
        return TW_ERR(TW_ERR_COMM,
                      "rank %d: the mpi communicator failed earlier and cannot be used", c->rank);
    x->seq++;
    return TW_OK;
}

#define TW_MPI_CALL(c, what, call)                                                                 \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            char buf_[MPI_MAX_ERROR_STRING];                                                       \
            ((tw_mpi_ctx *)(c)->ctx)->failed = 1;                                                  \
            return TW_ERR(TW_ERR_COMM, "rank %d: %s: %s failed: %s", (c)->rank, what, #call,       \
                          tw_mpi_errstr(rc_, buf_));                                               \
        }                                                                                          \
    } while (0)

static MPI_Datatype tw_mpi_type(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return MPI_FLOAT;
    case TW_BF16:
        return MPI_UINT16_T; /* moved as bits; reductions go through fp32 */
    case TW_I32:
        return MPI_INT32_T;
    }
    return MPI_DATATYPE_NULL;
}

static MPI_Op tw_mpi_op(tw_redop op) {
    return op == TW_RED_MAX ? MPI_MAX : MPI_SUM;
}

static tw_status tw_mpi_scratch(tw_comm *c, size_t n, float **out) {
    tw_mpi_ctx *x = c->ctx;
    if (n > x->scratch_n) {
        float *p = realloc(x->scratch, n * sizeof(float));
        if (!p) return TW_ERR(TW_ERR_NOMEM, "bf16 reduction scratch of %zu floats", n);
        x->scratch = p;
        x->scratch_n = n;
    }
    *out = x->scratch;
    return TW_OK;
}

static void tw_bf16_to_f32_n(const tw_bf16 *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tw_f32_from_bf16(in[i]);
}

static void tw_f32_to_bf16_n(const float *in, tw_bf16 *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tw_bf16_from_f32(in[i]);
}

/* Small all-reduces: every rank sends its whole input to every other rank (point to point) and
 * reduces all contributions locally, in rank order, in fp32 (bf16 rounded once).
 * Why: for a few KiB the latency of one exchange round beats the schedule of the non-blocking
 * MPI_Iallreduce (about 2x faster at 8 B to 2 KiB on 2 ranks), and every rank gets bit-identical
 * results. Used for n * bytes <= TW_MPI_SMALL_BYTES and at most TW_MPI_SMALL_RANKS ranks. */
#define TW_MPI_SMALL_BYTES (16 * 1024)
#define TW_MPI_SMALL_RANKS 16
#define TW_MPI_SMALL_TAG   7302

static tw_status tw_mpi_allreduce_small(tw_comm *c, const void *in, void *out, size_t count,
                                        tw_dtype dt, tw_redop op) {
    tw_mpi_ctx *x = c->ctx;
    int n = c->size;
    size_t es = tw_comm_dtype_size(dt), b = count * es;
    /* [n, b] bytes of the peers' inputs (own slot unused), in the fp32 scratch */
    float *f = NULL;
    TW_TRY(tw_mpi_scratch(c, (b * (size_t)n + 3) / 4, &f));
    unsigned char *slots = (unsigned char *)f;
    MPI_Request req[2 * TW_MPI_SMALL_RANKS];
    int nreq = 0;
    for (int p = 0; p < n; p++) {
        if (p == c->rank) continue;
        TW_MPI_CALL(c, "allreduce",
                    MPI_Irecv(slots + (size_t)p * b, (int)b, MPI_BYTE, p, TW_MPI_SMALL_TAG, x->comm,
                              &req[nreq++]));
    }
    for (int p = 0; p < n; p++) {
        if (p == c->rank) continue;
        TW_MPI_CALL(c, "allreduce",
                    MPI_Isend(in, (int)b, MPI_BYTE, p, TW_MPI_SMALL_TAG, x->comm, &req[nreq++]));
    }
    /* own input into its slot, so that the reduction reads only the scratch (in may be out) */
    memcpy(slots + (size_t)c->rank * b, in, b);
    TW_TRY(tw_mpi_waitall(c, nreq, req, "allreduce"));
    if (dt == TW_F32) {
        /* rank order, one pass per rank: vectorisable, and the same bits on every rank */
        float *o = out;
        const float *s0 = (const float *)slots;
        for (size_t i = 0; i < count; i++) o[i] = s0[i];
        for (int p = 1; p < n; p++) {
            const float *sp = (const float *)(slots + (size_t)p * b);
            if (op == TW_RED_MAX)
                for (size_t i = 0; i < count; i++) o[i] = sp[i] > o[i] ? sp[i] : o[i];
            else
                for (size_t i = 0; i < count; i++) o[i] += sp[i];
        }
        return TW_OK;
    }
    for (size_t i = 0; i < count; i++) {
        if (dt == TW_I32) {
            int32_t acc = 0;
            for (int p = 0; p < n; p++) {
                int32_t v;
                memcpy(&v, slots + (size_t)p * b + i * es, 4);
                acc = p == 0 ? v : (op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v);
            }
            ((int32_t *)out)[i] = acc;
            continue;
        }
        float acc = 0.0f; /* bf16: fp32 accumulation, one rounding */
        for (int p = 0; p < n; p++) {
            float v = tw_f32_from_bf16(((const tw_bf16 *)(slots + (size_t)p * b))[i]);
            acc = p == 0 ? v : (op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v);
        }
        ((tw_bf16 *)out)[i] = tw_bf16_from_f32(acc);
    }
    return TW_OK;
}

static tw_status tw_mpi_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  tw_redop op) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, count));
    if (c->size <= TW_MPI_SMALL_RANKS &&
        count * tw_comm_dtype_size(dt) * (size_t)c->size <= x->small_bytes)
        return tw_mpi_allreduce_small(c, in, out, count, dt, op);
    MPI_Request req;
    if (dt == TW_BF16) {
        float *f = NULL;
        TW_TRY(tw_mpi_scratch(c, count, &f));
        tw_bf16_to_f32_n(in, f, count);
        TW_MPI_CALL(
            c, "allreduce",
            MPI_Iallreduce(MPI_IN_PLACE, f, (int)count, MPI_FLOAT, tw_mpi_op(op), x->comm, &req));
        TW_TRY(tw_mpi_wait(c, &req, "allreduce"));
        tw_f32_to_bf16_n(f, out, count);
        return TW_OK;
    }
    TW_MPI_CALL(c, "allreduce",
                MPI_Iallreduce(in == out ? MPI_IN_PLACE : in, out, (int)count, tw_mpi_type(dt),
                               tw_mpi_op(op), x->comm, &req));
    return tw_mpi_wait(c, &req, "allreduce");
}

static tw_status tw_mpi_allgather(tw_comm *c, const void *in, void *out, size_t count,
                                  tw_dtype dt) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, count));
    size_t b = count * tw_comm_dtype_size(dt);
    int inplace = in == (const void *)((const char *)out + (size_t)c->rank * b);
    MPI_Request req;
    TW_MPI_CALL(c, "allgather",
                MPI_Iallgather(inplace ? MPI_IN_PLACE : in, (int)count, tw_mpi_type(dt), out,
                               (int)count, tw_mpi_type(dt), x->comm, &req));
    return tw_mpi_wait(c, &req, "allgather");
}

static tw_status tw_mpi_reducescatter(tw_comm *c, const void *in, void *out, size_t count,
                                      tw_dtype dt, tw_redop op) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, count));
    size_t total = count * (size_t)c->size;
    MPI_Request req;
    if (dt == TW_BF16) {
        float *f = NULL;
        TW_TRY(tw_mpi_scratch(c, total, &f));
        tw_bf16_to_f32_n(in, f, total);
        /* in place on the scratch: the reduced block lands at f[0, count) */
        TW_MPI_CALL(c, "reducescatter",
                    MPI_Ireduce_scatter_block(MPI_IN_PLACE, f, (int)count, MPI_FLOAT, tw_mpi_op(op),
                                              x->comm, &req));
        TW_TRY(tw_mpi_wait(c, &req, "reducescatter"));
        tw_f32_to_bf16_n(f, out, count);
        return TW_OK;
    }
    size_t b = count * tw_comm_dtype_size(dt);
    if ((const char *)in + (size_t)c->rank * b == (const char *)out) {
        /* in-place form: MPI_IN_PLACE reduces `in` and leaves the block at its start */
        void *buf = (void *)(uintptr_t)in;
        TW_MPI_CALL(c, "reducescatter",
                    MPI_Ireduce_scatter_block(MPI_IN_PLACE, buf, (int)count, tw_mpi_type(dt),
                                              tw_mpi_op(op), x->comm, &req));
        TW_TRY(tw_mpi_wait(c, &req, "reducescatter"));
        memmove(out, buf, b);
        return TW_OK;
    }
    TW_MPI_CALL(c, "reducescatter",
                MPI_Ireduce_scatter_block(in, out, (int)count, tw_mpi_type(dt), tw_mpi_op(op),
                                          x->comm, &req));
    return tw_mpi_wait(c, &req, "reducescatter");
}

static tw_status tw_mpi_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                  int root) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, count));
    if (c->rank == root && in != out) memcpy(out, in, count * tw_comm_dtype_size(dt));
    MPI_Request req;
    TW_MPI_CALL(c, "broadcast", MPI_Ibcast(out, (int)count, tw_mpi_type(dt), root, x->comm, &req));
    return tw_mpi_wait(c, &req, "broadcast");
}

static tw_status tw_mpi_alltoall(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, count));
    size_t total_b = count * tw_comm_dtype_size(dt) * (size_t)c->size;
    void *tmp = NULL;
    if (in == out) {
        /* Why a copy: MPI_IN_PLACE for the non-blocking all-to-all is not implemented by every
         * MPI (OpenMPI's libnbc among them). */
        tmp = malloc(total_b);
        if (!tmp) return TW_ERR(TW_ERR_NOMEM, "alltoall in-place copy of %zu bytes", total_b);
        memcpy(tmp, in, total_b);
        in = tmp;
    }
    MPI_Request req;
    int rc = MPI_Ialltoall(in, (int)count, tw_mpi_type(dt), out, (int)count, tw_mpi_type(dt),
                           x->comm, &req);
    tw_status st = TW_OK;
    if (rc != MPI_SUCCESS) {
        char buf[MPI_MAX_ERROR_STRING];
        x->failed = 1;
        st = TW_ERR(TW_ERR_COMM, "rank %d: MPI_Ialltoall failed: %s", c->rank,
                    tw_mpi_errstr(rc, buf));
    } else {
        st = tw_mpi_wait(c, &req, "alltoall");
    }
    if (st == TW_OK || !x->failed) free(tmp); /* a pending request may still read it */
    return st;
}

static tw_status tw_mpi_barrier(tw_comm *c) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, 0));
    MPI_Request req;
    TW_MPI_CALL(c, "barrier", MPI_Ibarrier(x->comm, &req));
    return tw_mpi_wait(c, &req, "barrier");
}

static tw_status tw_mpi_nop(tw_comm *c) {
    (void)c;
    return TW_OK;
}

static tw_status tw_mpi_host_allgather(tw_comm *c, const void *in, void *out, size_t bytes) {
    tw_mpi_ctx *x = c->ctx;
    TW_TRY(tw_mpi_usable(c, bytes));
    MPI_Request req;
    TW_MPI_CALL(c, "host allgather",
                MPI_Iallgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, x->comm, &req));
    return tw_mpi_wait(c, &req, "host allgather");
}

static void tw_mpi_destroy(tw_comm *c) {
    if (!c) return;
    tw_mpi_ctx *x = c->ctx;
    int failed = x->failed;
    if (!failed) {
        MPI_Comm_free(&x->comm);
        MPI_Comm_free(&x->health);
    }
    free(x->scratch);
    free(x);
    free(c);
    g_mpi_refs--;
    int fin = 0;
    MPI_Finalized(&fin);
    /* after a failure MPI_Finalize could wait for the dead peer: leave that to tw_comm_abort */
    if (g_mpi_refs == 0 && g_mpi_we_init && !fin && !failed) {
        if (g_notice != MPI_COMM_NULL && !g_notice_sent && !g_peer_sig) {
            MPI_Comm_free(&g_notice);
            g_notice = MPI_COMM_NULL;
        }
        MPI_Finalize();
    }
}

static void tw_mpi_abort(tw_comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

static tw_status tw_mpi_sub(tw_comm *c, int n, tw_comm **out);

static const tw_comm_ops tw_mpi_ops = {
    .name = "mpi",
    .allreduce = tw_mpi_allreduce,
    .allgather = tw_mpi_allgather,
    .reducescatter = tw_mpi_reducescatter,
    .broadcast = tw_mpi_broadcast,
    .alltoall = tw_mpi_alltoall,
    .barrier = tw_mpi_barrier,
    .wait = tw_mpi_nop,
    .host_allgather = tw_mpi_host_allgather,
    .set_stream = NULL,
    .sub = tw_mpi_sub,
    .destroy = tw_mpi_destroy,
    .abort = tw_mpi_abort,
};

/* Wraps a communicator over `base` (duplicated: collectives and the liveness poll each get their
 * own) with rank, size, node-local rank/size, the oversubscription flag and the small all-reduce
 * threshold. Shared by creation (base MPI_COMM_WORLD) and tw_comm_sub (base the split). Uses
 * blocking calls: it is collective over base. */
static tw_status tw_mpi_wrap(MPI_Comm base, double timeout_s, tw_comm **out) {
    *out = NULL;
    size_t small_bytes = TW_MPI_SMALL_BYTES;
    const char *sb = getenv("TW_COMM_MPI_SMALL_BYTES"); /* tuning: 0 disables the direct path */
    if (sb && *sb) {
        char *end;
        long long v = strtoll(sb, &end, 10);
        /* every rank reads the same environment, so all refuse together before any collective */
        if (*end || v < 0 || v > (1 << 24))
            return TW_ERR(TW_ERR_INVALID, "TW_COMM_MPI_SMALL_BYTES='%s' is not in [0, 16M]", sb);
        small_bytes = (size_t)v;
    }
    tw_comm *c = calloc(1, sizeof *c);
    tw_mpi_ctx *x = calloc(1, sizeof *x);
    if (!c || !x) {
        free(c);
        free(x);
        return TW_ERR(TW_ERR_NOMEM, "creating the mpi communicator");
    }
    c->ops = &tw_mpi_ops;
    c->ctx = x;
    c->device = -1;
    c->timeout_s = timeout_s > 0 ? timeout_s : 60.0;
    /* Creation uses blocking calls (a peer that dies this early is reported by the launcher). */
    MPI_Comm node;
    if (MPI_Comm_dup(base, &x->comm) != MPI_SUCCESS ||
        MPI_Comm_dup(base, &x->health) != MPI_SUCCESS ||
        MPI_Comm_split_type(base, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS) {
        free(x);
        free(c);
        return TW_ERR(TW_ERR_COMM, "creating the MPI communicators failed");
    }
    MPI_Comm_set_errhandler(x->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(x->health, MPI_ERRORS_RETURN);
    MPI_Comm_rank(x->comm, &c->rank);
    MPI_Comm_size(x->comm, &c->size);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    x->oversub = cores > 0 && c->local_size > cores;
    x->small_bytes = small_bytes;
    g_mpi_refs++;
    *out = c;
    return TW_OK;
}

/* MPI_Comm_split of ranks 0..n-1 (color 0, key the parent rank: same order; the others pass
 * MPI_UNDEFINED and get MPI_COMM_NULL), then wrapped like creation. */
static tw_status tw_mpi_sub(tw_comm *c, int n, tw_comm **out) {
    tw_mpi_ctx *x = c->ctx;
    *out = NULL;
    if (x->failed)
        return TW_ERR(TW_ERR_COMM,
                      "rank %d: the mpi communicator failed earlier: no sub-communicator of %d "
                      "ranks",
                      c->rank, n);
    /* Why a bounded barrier first: MPI_Comm_split blocks, so a dead or stalled peer is found
     * here, within the timeout and named, rather than hanging the split. */
    TW_TRY(tw_mpi_barrier(c));
    MPI_Comm split = MPI_COMM_NULL;
    TW_MPI_CALL(c, "sub-communicator",
                MPI_Comm_split(x->comm, c->rank < n ? 0 : MPI_UNDEFINED, c->rank, &split));
    if (c->rank >= n) return TW_OK; /* split is MPI_COMM_NULL here */
    MPI_Comm_set_errhandler(split, MPI_ERRORS_RETURN);
    tw_status st = tw_mpi_wrap(split, c->timeout_s, out);
    MPI_Comm_free(&split);
    if (st != TW_OK) return tw_error_ctx(st, "rank %d: wrapping the split of %d ranks", c->rank, n);
    return TW_OK;
}

tw_status tw_comm_mpi_create(double timeout_s, tw_comm **out) {
    *out = NULL;
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) return TW_ERR(TW_ERR_COMM, "MPI was already finalised in this process");
    if (!inited) {
        /* Why: OpenMPI's libnbc picks a binomial tree for MPI_Iallreduce on few ranks, about
         * 10x slower than its ring at 128 KiB on shared memory (measured on 2 ranks); the ring
         * is within noise of the blocking MPI_Allreduce elsewhere. Only when the user set
         * nothing, and only for OpenMPI (the variable means nothing to other MPIs). */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return TW_ERR(TW_ERR_COMM, "MPI_Init_thread failed");
        g_mpi_we_init = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (g_notice == MPI_COMM_NULL) {
        if (MPI_Comm_dup(MPI_COMM_WORLD, &g_notice) != MPI_SUCCESS)
            return TW_ERR(TW_ERR_COMM, "creating the MPI interruption-notice communicator failed");
        MPI_Comm_set_errhandler(g_notice, MPI_ERRORS_RETURN);
        MPI_Comm_rank(g_notice, &g_notice_rank);
        MPI_Comm_size(g_notice, &g_notice_size);
    }
    return tw_mpi_wrap(MPI_COMM_WORLD, timeout_s, out);
}

#else /* !TW_HAVE_MPI */

int tw_comm_mpi_built(void) {
    return 0;
}

int tw_comm_world_rank(void) {
    return 0;
}

int tw_comm_mpi_notice(int local_sig, int *rank) {
    (void)local_sig;
    if (rank) *rank = -1;
    return 0;
}

tw_status tw_comm_mpi_create(double timeout_s, tw_comm **out) {
    (void)timeout_s;
    *out = NULL;
    return TW_ERR(TW_ERR_UNSUPPORTED, "the mpi communicator is not built (no MPI found by CMake)");
}

#endif
