/* Communicator front end: kind selection, argument checks, timing into tw_comm_stats, the
 * host-side helpers (consistency hash, per-rank doubles, hostnames) and the one-rank `local`
 * implementation. The mpi and nccl implementations live in comm_mpi.c and comm_nccl.c. */
#include "tw_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_util.h"

/* The backend interface's definitions (kernels/backend.c), under the communicator's names. */
size_t tw_comm_dtype_size(tw_dtype dt) {
    return tw_dtype_size(dt);
}

const char *tw_comm_dtype_name(tw_dtype dt) {
    return tw_dtype_name(dt);
}

const char *tw_redop_name(tw_redop op) {
    return op == TW_RED_MAX ? "max" : "sum";
}

tw_status tw_redop_parse(const char *s, tw_redop *out) {
    if (s && !strcmp(s, "sum")) {
        *out = TW_RED_SUM;
        return TW_OK;
    }
    if (s && !strcmp(s, "max")) {
        *out = TW_RED_MAX;
        return TW_OK;
    }
    return TW_ERR(TW_ERR_INVALID, "unknown reduction '%s' (expected sum or max)", s ? s : "");
}

uint64_t tw_comm_hash64(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

int tw_comm_under_launcher(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                 "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int tw_comm_interrupted(int *rank) {
    int me = tw_comm_world_rank(), peer_rank = -1;
    int sig = tw_interrupt_signal();
    int peer = tw_comm_mpi_notice(sig, &peer_rank);
    if (sig) {
        if (rank) *rank = me;
        return sig;
    }
    if (peer) {
        if (rank) *rank = peer_rank;
        return peer;
    }
    return 0;
}

/* ---- creation ------------------------------------------------------------------------------ */

double tw_comm_resolve_timeout(double timeout_s) {
    if (timeout_s > 0) return timeout_s;
    const char *e = getenv("TW_COMM_TIMEOUT_S");
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (end != e && *end == '\0' && v > 0) return v;
        fprintf(stderr, "# tokwatt: ignoring TW_COMM_TIMEOUT_S='%s' (not a positive number)\n", e);
    }
    return 60.0;
}

/* Hash of the running executable plus the build commit: two ranks running different binaries
 * (or builds) disagree on it. */
static tw_status tw_comm_binary_hash(uint64_t *out) {
    uint64_t h = tw_comm_hash64(TW_GIT_COMMIT, strlen(TW_GIT_COMMIT), 0);
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f) {
        *out = h; /* no procfs: the commit alone */
        return TW_OK;
    }
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = tw_comm_hash64(buf, got, h);
    int err = ferror(f);
    fclose(f);
    if (err) return TW_ERR(TW_ERR_IO, "reading /proc/self/exe to hash the binary");
    *out = h;
    return TW_OK;
}

tw_status tw_comm_create(const char *kind, const char *backend, double timeout_s, tw_comm **out) {
    *out = NULL;
    timeout_s = tw_comm_resolve_timeout(timeout_s);
    if (!kind) kind = "auto";
    if (!backend) backend = "cpu";
    if (!strcmp(kind, "auto")) {
        if (!strcmp(backend, "cuda"))
            kind = "nccl";
        else if (!strcmp(backend, "cpu"))
            kind = tw_comm_under_launcher() ? "mpi" : "local";
        else
            return TW_ERR(TW_ERR_INVALID, "unknown backend '%s' (expected cpu or cuda)", backend);
    }
    tw_comm *c = NULL;
    if (!strcmp(kind, "local"))
        TW_TRY(tw_comm_local_create(timeout_s, &c));
    else if (!strcmp(kind, "mpi"))
        TW_TRY(tw_comm_mpi_create(timeout_s, &c));
    else if (!strcmp(kind, "nccl"))
        TW_TRY(tw_comm_nccl_create(timeout_s, &c));
    else if (!strcmp(kind, "threads"))
        return TW_ERR(TW_ERR_INVALID,
                      "the threads communicator is made for all its rank threads at once "
                      "(tw_comm_threads_create / tw_comm_threads_run), not by one rank");
    else
        return TW_ERR(TW_ERR_INVALID,
                      "unknown communicator '%s' (expected auto, local, mpi, threads, nccl)", kind);
    if (c->size > 1) {
        uint64_t h = 0;
        tw_status st = tw_comm_binary_hash(&h);
        if (st == TW_OK) st = tw_comm_check_consistency(c, &h, sizeof h, "binary (tokwatt build)");
        if (st != TW_OK) {
            /* the peers agree on the failure (the check is collective): leave cleanly */
            tw_comm_destroy(c);
            return tw_error_ctx(st, "starting the %s communicator", kind);
        }
    }
    *out = c;
    return TW_OK;
}

void tw_comm_destroy(tw_comm *c) {
    if (c && c->ops && c->ops->destroy) c->ops->destroy(c);
}

void tw_comm_abort(tw_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    if (c && c->ops && c->ops->abort) c->ops->abort(c, code);
    _exit(code ? code : 1);
}

tw_status tw_comm_sub(tw_comm *c, int n, tw_comm **out) {
    *out = NULL;
    if (!c || !c->ops) return TW_ERR(TW_ERR_INVALID, "sub-communicator: NULL communicator");
    if (n < 1 || n > c->size)
        return TW_ERR(TW_ERR_INVALID,
                      "rank %d: sub-communicator of %d ranks: not in [1, %d] (the %s "
                      "communicator's size)",
                      c->rank, n, c->size, c->ops->name);
    if (!c->ops->sub)
        return TW_ERR(TW_ERR_UNSUPPORTED, "rank %d: the %s communicator has no sub-communicators",
                      c->rank, c->ops->name);
    tw_comm *s = NULL;
    tw_status st = c->ops->sub(c, n, &s);
    if (st != TW_OK)
        return tw_error_ctx(st, "rank %d: sub-communicator of ranks 0..%d of the %s communicator",
                            c->rank, n - 1, c->ops->name);
    if (c->rank < n && (!s || s->size != n || s->rank != c->rank)) {
        int got_size = s ? s->size : -1, got_rank = s ? s->rank : -1;
        tw_comm_destroy(s);
        return TW_ERR(TW_ERR_INTERNAL,
                      "rank %d: sub-communicator of %d ranks came back with size %d and rank %d",
                      c->rank, n, got_size, got_rank);
    }
    if (c->rank >= n && s) {
        tw_comm_destroy(s);
        return TW_ERR(
            TW_ERR_INTERNAL,
            "rank %d: sub-communicator of %d ranks returned a handle to a rank outside it", c->rank,
            n);
    }
    if (s) s->timeout_s = c->timeout_s;
    *out = s;
    return TW_OK;
}

tw_status tw_comm_idle_barrier(tw_comm *c, double wait_s) {
    if (!c || !c->ops) return TW_ERR(TW_ERR_INVALID, "idle barrier: NULL communicator");
    if (!(wait_s > 0))
        return TW_ERR(TW_ERR_INVALID, "rank %d: idle barrier: wait of %g s is not positive",
                      c->rank, wait_s);
    double saved = c->timeout_s;
    c->timeout_s = wait_s;
    c->idle_poll = 1;
    double t0 = tw_now_s();
    tw_status st = c->ops->barrier(c);
    c->stats.time_s += tw_now_s() - t0;
    c->stats.calls++;
    c->timeout_s = saved;
    c->idle_poll = 0;
    if (st != TW_OK)
        return tw_error_ctx(st, "rank %d: waiting (up to %g s) for the working ranks", c->rank,
                            wait_s);
    return TW_OK;
}

tw_status tw_comm_set_stream(tw_comm *c, void *stream) {
    if (c->ops->set_stream) return c->ops->set_stream(c, stream);
    if (stream)
        return TW_ERR(TW_ERR_INVALID, "the %s communicator works on host memory: no stream",
                      c->ops->name);
    return TW_OK;
}

/* ---- collectives: checks and timing ------------------------------------------------------ */

static tw_status tw_comm_check_args(const tw_comm *c, const char *what, const void *in,
                                    const void *out, size_t count, tw_dtype dt) {
    if (!c || !c->ops) return TW_ERR(TW_ERR_INVALID, "%s: NULL communicator", what);
    if (dt != TW_F32 && dt != TW_BF16 && dt != TW_I32)
        return TW_ERR(TW_ERR_INVALID, "%s: unsupported dtype %d", what, (int)dt);
    if (count > ((size_t)1 << 40) / (size_t)c->size)
        return TW_ERR(TW_ERR_INVALID, "%s: count %zu is too large", what, count);
    if (count > 0 && (!in || !out))
        return TW_ERR(TW_ERR_INVALID, "%s: NULL buffer (in %p, out %p, count %zu)", what, in, out,
                      count);
    return TW_OK;
}

/* Whether [a, a+na) and [b, b+nb) overlap. */
static int tw_overlap(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + nb && y < x + na;
}

#define TW_COMM_TIMED(c, bytes_, call, fmt, ...)                                                   \
    do {                                                                                           \
        double t0_ = tw_now_s();                                                                   \
        tw_status st_ = (call);                                                                    \
        (c)->stats.time_s += tw_now_s() - t0_;                                                     \
        (c)->stats.calls++;                                                                        \
        (c)->stats.bytes += (bytes_);                                                              \
        if (st_ != TW_OK) return tw_error_ctx(st_, fmt, __VA_ARGS__);                              \
        return TW_OK;                                                                              \
    } while (0)

tw_status tw_comm_allreduce(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                            tw_redop op) {
    TW_TRY(tw_comm_check_args(c, "allreduce", in, out, count, dt));
    size_t b = count * tw_comm_dtype_size(dt);
    if (in != out && tw_overlap(in, b, out, b))
        return TW_ERR(TW_ERR_INVALID, "allreduce: in and out overlap without being equal");
    if (op != TW_RED_SUM && op != TW_RED_MAX)
        return TW_ERR(TW_ERR_INVALID, "allreduce: unknown reduction %d", (int)op);
    if (count == 0) return TW_OK;
    TW_COMM_TIMED(c, b, c->ops->allreduce(c, in, out, count, dt, op),
                  "rank %d: allreduce of %zu %s (%s)", c->rank, count, tw_comm_dtype_name(dt),
                  tw_redop_name(op));
}

tw_status tw_comm_allgather(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt) {
    TW_TRY(tw_comm_check_args(c, "allgather", in, out, count, dt));
    size_t b = count * tw_comm_dtype_size(dt);
    const char *own = (const char *)out + (size_t)c->rank * b;
    if (in != (const void *)own && tw_overlap(in, b, out, b * (size_t)c->size))
        return TW_ERR(TW_ERR_INVALID,
                      "allgather: in overlaps out but is not out + rank * count (in-place form)");
    if (count == 0) return TW_OK;
    TW_COMM_TIMED(c, b, c->ops->allgather(c, in, out, count, dt), "rank %d: allgather of %zu %s",
                  c->rank, count, tw_comm_dtype_name(dt));
}

tw_status tw_comm_reducescatter(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                                tw_redop op) {
    TW_TRY(tw_comm_check_args(c, "reducescatter", in, out, count, dt));
    size_t b = count * tw_comm_dtype_size(dt);
    const char *own = (const char *)in + (size_t)c->rank * b;
    if ((const void *)own != out && tw_overlap(in, b * (size_t)c->size, out, b))
        return TW_ERR(TW_ERR_INVALID,
                      "reducescatter: out overlaps in but is not in + rank * count (in-place)");
    if (op != TW_RED_SUM && op != TW_RED_MAX)
        return TW_ERR(TW_ERR_INVALID, "reducescatter: unknown reduction %d", (int)op);
    if (count == 0) return TW_OK;
    TW_COMM_TIMED(c, b * (size_t)c->size, c->ops->reducescatter(c, in, out, count, dt, op),
                  "rank %d: reducescatter of %zu %s per rank (%s)", c->rank, count,
                  tw_comm_dtype_name(dt), tw_redop_name(op));
}

tw_status tw_comm_broadcast(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt,
                            int root) {
    if (c && c->rank != root && !in) in = out; /* `in` is ignored on non-roots */
    TW_TRY(tw_comm_check_args(c, "broadcast", in, out, count, dt));
    if (root < 0 || root >= c->size)
        return TW_ERR(TW_ERR_INVALID, "broadcast: root %d is not a rank of %d", root, c->size);
    size_t b = count * tw_comm_dtype_size(dt);
    if (c->rank == root && in != out && tw_overlap(in, b, out, b))
        return TW_ERR(TW_ERR_INVALID, "broadcast: in and out overlap without being equal");
    if (count == 0) return TW_OK;
    TW_COMM_TIMED(c, b, c->ops->broadcast(c, in, out, count, dt, root),
                  "rank %d: broadcast of %zu %s from rank %d", c->rank, count,
                  tw_comm_dtype_name(dt), root);
}

tw_status tw_comm_alltoall(tw_comm *c, const void *in, void *out, size_t count, tw_dtype dt) {
    TW_TRY(tw_comm_check_args(c, "alltoall", in, out, count, dt));
    size_t b = count * tw_comm_dtype_size(dt) * (size_t)c->size;
    if (in != out && tw_overlap(in, b, out, b))
        return TW_ERR(TW_ERR_INVALID, "alltoall: in and out overlap without being equal");
    if (count == 0) return TW_OK;
    TW_COMM_TIMED(c, b, c->ops->alltoall(c, in, out, count, dt), "rank %d: alltoall of %zu %s",
                  c->rank, count, tw_comm_dtype_name(dt));
}

tw_status tw_comm_barrier(tw_comm *c) {
    if (!c || !c->ops) return TW_ERR(TW_ERR_INVALID, "barrier: NULL communicator");
    TW_COMM_TIMED(c, 0, c->ops->barrier(c), "rank %d: barrier", c->rank);
}

tw_status tw_comm_wait(tw_comm *c) {
    if (!c || !c->ops) return TW_ERR(TW_ERR_INVALID, "wait: NULL communicator");
    double t0 = tw_now_s();
    tw_status st = c->ops->wait(c);
    c->stats.time_s += tw_now_s() - t0;
    if (st != TW_OK) return tw_error_ctx(st, "rank %d: waiting for queued collectives", c->rank);
    return TW_OK;
}

tw_comm_stats tw_comm_get_stats(const tw_comm *c) {
    return c->stats;
}

void tw_comm_stats_reset(tw_comm *c) {
    memset(&c->stats, 0, sizeof c->stats);
}

tw_status tw_comm_buf_alloc(tw_comm *c, size_t bytes, void **out) {
    *out = NULL;
    if (c->ops->buf_alloc) return c->ops->buf_alloc(c, bytes, out);
    size_t rounded = (bytes + 63) / 64 * 64;
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out) return TW_ERR(TW_ERR_NOMEM, "rank %d: cannot allocate %zu bytes", c->rank, bytes);
    return TW_OK;
}

void tw_comm_buf_free(tw_comm *c, void *p) {
    if (c->ops->buf_free)
        c->ops->buf_free(c, p);
    else
        free(p);
}

tw_status tw_comm_buf_upload(tw_comm *c, void *dst, const void *src_host, size_t bytes) {
    if (c->ops->buf_copy) return c->ops->buf_copy(c, dst, src_host, bytes, 1);
    memcpy(dst, src_host, bytes);
    return TW_OK;
}

tw_status tw_comm_buf_download(tw_comm *c, void *dst_host, const void *src, size_t bytes) {
    if (c->ops->buf_copy) return c->ops->buf_copy(c, dst_host, src, bytes, 0);
    memcpy(dst_host, src, bytes);
    return TW_OK;
}

/* ---- host helpers ---------------------------------------------------------------------------- */

tw_status tw_comm_check_consistency(tw_comm *c, const void *blob, size_t n, const char *what) {
    uint64_t mine = tw_comm_hash64(blob, n, (uint64_t)n);
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)c->size);
    if (!all) return TW_ERR(TW_ERR_NOMEM, "consistency check of %s", what);
    tw_status st = c->ops->host_allgather(c, &mine, all, sizeof mine);
    if (st != TW_OK) {
        free(all);
        return tw_error_ctx(st, "rank %d: comparing %s across ranks", c->rank, what);
    }
    char list[512] = "";
    size_t used = 0;
    int bad = 0;
    for (int r = 1; r < c->size; r++) {
        if (all[r] == all[0]) continue;
        bad++;
        if (used < sizeof list - 16)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%d", bad > 1 ? ", " : "", r);
    }
    free(all);
    if (bad)
        return TW_ERR(TW_ERR_INVALID,
                      "rank %d: %s differs across ranks: rank(s) %s disagree with rank 0 "
                      "(every rank must run the same binary with the same configuration)",
                      c->rank, what, list);
    return TW_OK;
}

tw_status tw_comm_allgather_f64(tw_comm *c, double value, double *all_ranks) {
    tw_status st = c->ops->host_allgather(c, &value, all_ranks, sizeof value);
    if (st != TW_OK) return tw_error_ctx(st, "rank %d: gathering per-rank values", c->rank);
    return TW_OK;
}

tw_status tw_comm_max_f64(tw_comm *c, double value, double *max_out) {
    double *all = malloc(sizeof(double) * (size_t)c->size);
    if (!all) return TW_ERR(TW_ERR_NOMEM, "max over ranks");
    tw_status st = tw_comm_allgather_f64(c, value, all);
    if (st == TW_OK) {
        double m = all[0];
        for (int r = 1; r < c->size; r++)
            if (all[r] > m) m = all[r];
        *max_out = m;
    }
    free(all);
    return st;
}

tw_status tw_comm_gather_hosts(tw_comm *c, tw_comm_hosts *out) {
    memset(out, 0, sizeof *out);
    char mine[TW_COMM_HOST_MAX];
    memset(mine, 0, sizeof mine);
    snprintf(mine, sizeof mine, "%s", tw_host_name());
    out->host = calloc((size_t)c->size, TW_COMM_HOST_MAX);
    if (!out->host) return TW_ERR(TW_ERR_NOMEM, "gathering hostnames");
    tw_status st = c->ops->host_allgather(c, mine, out->host, TW_COMM_HOST_MAX);
    if (st != TW_OK) {
        tw_comm_free_hosts(out);
        return tw_error_ctx(st, "rank %d: gathering hostnames", c->rank);
    }
    out->size = c->size;
    for (int r = 0; r < c->size; r++) {
        out->host[r][TW_COMM_HOST_MAX - 1] = '\0';
        int first = 1, on_host = 0;
        for (int q = 0; q < c->size; q++) {
            if (strcmp(out->host[q], out->host[r]) != 0) continue;
            if (q < r) first = 0;
            on_host++;
        }
        if (first) out->n_hosts++;
        if (on_host > out->max_per_host) out->max_per_host = on_host;
    }
    return TW_OK;
}

void tw_comm_free_hosts(tw_comm_hosts *h) {
    free(h->host);
    memset(h, 0, sizeof *h);
}

/* ---- local: one rank --------------------------------------------------------------------- */

static void tw_local_copy(const void *in, void *out, size_t bytes) {
    if (in != out) memcpy(out, in, bytes);
}

static tw_status tw_local_allreduce(tw_comm *c, const void *in, void *out, size_t count,
                                    tw_dtype dt, tw_redop op) {
    (void)c, (void)op;
    tw_local_copy(in, out, count * tw_comm_dtype_size(dt));
    return TW_OK;
}

static tw_status tw_local_allgather(tw_comm *c, const void *in, void *out, size_t count,
                                    tw_dtype dt) {
    (void)c;
    tw_local_copy(in, out, count * tw_comm_dtype_size(dt));
    return TW_OK;
}

static tw_status tw_local_reducescatter(tw_comm *c, const void *in, void *out, size_t count,
                                        tw_dtype dt, tw_redop op) {
    (void)c, (void)op;
    tw_local_copy(in, out, count * tw_comm_dtype_size(dt));
    return TW_OK;
}

static tw_status tw_local_broadcast(tw_comm *c, const void *in, void *out, size_t count,
                                    tw_dtype dt, int root) {
    (void)c, (void)root;
    tw_local_copy(in, out, count * tw_comm_dtype_size(dt));
    return TW_OK;
}

static tw_status tw_local_alltoall(tw_comm *c, const void *in, void *out, size_t count,
                                   tw_dtype dt) {
    (void)c;
    tw_local_copy(in, out, count * tw_comm_dtype_size(dt));
    return TW_OK;
}

static tw_status tw_local_nop(tw_comm *c) {
    (void)c;
    return TW_OK;
}

static tw_status tw_local_host_allgather(tw_comm *c, const void *in, void *out, size_t bytes) {
    (void)c;
    memmove(out, in, bytes);
    return TW_OK;
}

/* local has one rank: its only sub-communicator is a new local handle (owned by the caller). */
static tw_status tw_local_sub(tw_comm *c, int n, tw_comm **out) {
    if (n != 1)
        return TW_ERR(TW_ERR_INVALID, "rank 0: local sub-communicator of %d ranks (local has 1)",
                      n);
    return tw_comm_local_create(c->timeout_s, out);
}

static void tw_local_destroy(tw_comm *c) {
    free(c);
}

static void tw_local_abort(tw_comm *c, int code) {
    (void)c;
    exit(code ? code : 1);
}

static const tw_comm_ops tw_local_ops = {
    .name = "local",
    .allreduce = tw_local_allreduce,
    .allgather = tw_local_allgather,
    .reducescatter = tw_local_reducescatter,
    .broadcast = tw_local_broadcast,
    .alltoall = tw_local_alltoall,
    .barrier = tw_local_nop,
    .wait = tw_local_nop,
    .host_allgather = tw_local_host_allgather,
    .sub = tw_local_sub,
    .destroy = tw_local_destroy,
    .abort = tw_local_abort,
};

tw_status tw_comm_local_create(double timeout_s, tw_comm **out) {
    tw_comm *c = calloc(1, sizeof *c);
    if (!c) return TW_ERR(TW_ERR_NOMEM, "creating the local communicator");
    c->ops = &tw_local_ops;
    c->rank = 0;
    c->size = 1;
    c->local_rank = 0;
    c->local_size = 1;
    c->device = -1;
    c->timeout_s = tw_comm_resolve_timeout(timeout_s);
    *out = c;
    return TW_OK;
}
