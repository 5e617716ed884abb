/* `tokwatt bench allreduce|allgather|reducescatter|broadcast|alltoall`: collective bandwidth with
 * the conventions of nccl-tests (options -b -e -f -n -w -c -d -o -r; columns size, count, type,
 * redop, root, time, algbw, busbw, #wrong for out-of-place and in-place; the same bus-bandwidth
 * factors; the average busbw line), so numbers compare directly. Beyond nccl-tests: a straggler
 * report from per-rank times, and a fabric gate (--expect-busbw or --fabric FILE) that prints a
 * verdict per size range and exits 3 on a failure. Run under mpirun (or alone: one rank).
 *
 * Timing, as nccl-tests: per rank, the average of n back-to-back calls after w warm-up calls
 * (the stream is waited for once at the end), then averaged over ranks. algbw = size / time;
 * busbw = algbw * factor (all-reduce 2(n-1)/n, all-gather, reduce-scatter and all-to-all (n-1)/n,
 * broadcast 1). size is the bytes of the largest buffer (per rank for all-reduce and broadcast,
 * the gathered/scattered total for the others), count its elements. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/tw_comm.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_cuda_info.h"
#include "tw_numeric.h"
#include "tw_util.h"

#ifdef TW_HAVE_MPI
#include <mpi.h>
#endif

#define TW_COLL_MAX_REPS 99

typedef enum {
    COLL_ALLREDUCE,
    COLL_ALLGATHER,
    COLL_REDUCESCATTER,
    COLL_BROADCAST,
    COLL_ALLTOALL
} coll_kind;

static const char *const coll_names[] = {"allreduce", "allgather", "reducescatter", "broadcast",
                                         "alltoall"};

typedef struct {
    size_t size_b; /* the size column */
    size_t count;  /* the count column (elements of the largest buffer) */
    size_t cnt;    /* elements per rank given to the call */
    double time_us[2], algbw[2], busbw[2];
    long long wrong[2]; /* -1: not checked */
    double *rank_us;    /* [ranks] out-of-place time per rank */
    int slow_rank;
    double slow_us, median_us, spread; /* spread = slowest / median - 1 */
    double base_us, base_busbw;        /* --baseline: bare MPI_Allreduce */
} coll_row;

typedef struct {
    coll_kind kind;
    size_t minb, maxb;
    int factor, iters, warmup, check, root, reps, baseline;
    tw_dtype dt;
    tw_redop op;
    const char *comm_kind, *backend, *fabric;
    int ranks, gpus; /* --ranks N (threads), --gpus N (nccl, a thread per GPU): one process */
    double timeout_s, expect_gbps, expect_tol;
    size_t expect_from;
    tw_format fmt;
} coll_opts;

typedef struct {
    size_t from, to; /* [from, to), to = 0: no upper end */
    double fraction; /* of the link's expected busbw */
    double expect_gbps, measured_gbps;
    int n_sizes;
    const char *verdict; /* "PASS", "FAIL", "NO DATA" */
} coll_range;

/* ---- data: small integers, so fp32 sums are exact and bf16 ones round at most once ---------- */
static float coll_val(int rank, size_t i) {
    return (float)((int)((i * 13 + (size_t)rank * 7 + 3) % 17) - 8);
}

static void coll_pack(void *dst, const float *src, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    tw_bf16 *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = tw_bf16_from_f32(src[i]);
}

static float coll_get(const void *buf, size_t i, tw_dtype dt) {
    if (dt == TW_F32) return ((const float *)buf)[i];
    return tw_f32_from_bf16(((const tw_bf16 *)buf)[i]);
}

/* Elements in this rank's input and output for per-rank count cnt. */
static size_t coll_in_n(coll_kind k, size_t cnt, int n) {
    return (k == COLL_REDUCESCATTER || k == COLL_ALLTOALL) ? cnt * (size_t)n : cnt;
}
static size_t coll_out_n(coll_kind k, size_t cnt, int n) {
    return (k == COLL_ALLGATHER || k == COLL_ALLTOALL) ? cnt * (size_t)n : cnt;
}

static double coll_bus_factor(coll_kind k, int n) {
    switch (k) {
    case COLL_ALLREDUCE:
        return 2.0 * (n - 1) / n;
    case COLL_BROADCAST:
        return 1.0;
    default:
        return (double)(n - 1) / n;
    }
}

/* The value rank `rank` must hold at output element i. */
static double coll_expect(const coll_opts *o, int rank, int n, size_t cnt, size_t i) {
    switch (o->kind) {
    case COLL_ALLREDUCE:
    case COLL_REDUCESCATTER: {
        size_t j = o->kind == COLL_REDUCESCATTER ? (size_t)rank * cnt + i : i;
        double acc = o->op == TW_RED_MAX ? -INFINITY : 0.0;
        for (int r = 0; r < n; r++) {
            double v = coll_val(r, j);
            acc = o->op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v;
        }
        return acc;
    }
    case COLL_ALLGATHER:
        return coll_val((int)(i / cnt), i % cnt);
    case COLL_BROADCAST:
        return coll_val(o->root, i);
    case COLL_ALLTOALL:
        return coll_val((int)(i / cnt), (size_t)rank * cnt + i % cnt);
    }
    return NAN;
}

typedef struct {
    tw_comm *c;
    const coll_opts *o;
    void *in, *out; /* communicator memory: [max in bytes], [max out bytes] */
    float *host_f;  /* [max elements] staging */
    void *host_b;   /* [max bytes] staging */
} coll_ctx;

/* Places this rank's input for the in-place (ip = 1) or out-of-place form; returns the buffers
 * to pass. */
static tw_status coll_setup(coll_ctx *x, size_t cnt, int ip, const void **cin, void **cout) {
    const coll_opts *o = x->o;
    int rank = tw_comm_rank(x->c), n = tw_comm_size(x->c);
    size_t es = tw_comm_dtype_size(o->dt), in_n = coll_in_n(o->kind, cnt, n);
    for (size_t i = 0; i < in_n; i++) x->host_f[i] = coll_val(rank, i);
    coll_pack(x->host_b, x->host_f, in_n, o->dt);
    char *dst = ip ? x->out : x->in;
    *cin = dst;
    *cout = x->out;
    if (ip && o->kind == COLL_ALLGATHER) {
        dst = (char *)x->out + (size_t)rank * cnt * es; /* in = out + rank * count */
        *cin = dst;
    } else if (ip && o->kind == COLL_REDUCESCATTER) {
        *cin = x->out; /* out = in + rank * count */
        *cout = (char *)x->out + (size_t)rank * cnt * es;
    }
    return tw_comm_buf_upload(x->c, dst, x->host_b, in_n * es);
}

static tw_status coll_call(coll_ctx *x, size_t cnt, const void *in, void *out) {
    const coll_opts *o = x->o;
    switch (o->kind) {
    case COLL_ALLREDUCE:
        return tw_comm_allreduce(x->c, in, out, cnt, o->dt, o->op);
    case COLL_ALLGATHER:
        return tw_comm_allgather(x->c, in, out, cnt, o->dt);
    case COLL_REDUCESCATTER:
        return tw_comm_reducescatter(x->c, in, out, cnt, o->dt, o->op);
    case COLL_BROADCAST:
        return tw_comm_broadcast(x->c, in, out, cnt, o->dt, o->root);
    case COLL_ALLTOALL:
        return tw_comm_alltoall(x->c, in, out, cnt, o->dt);
    }
    return TW_ERR(TW_ERR_INTERNAL, "unknown collective");
}

/* Times one form; returns this rank's time per call in seconds, and (when checking) the wrong
 * elements summed over ranks. */
static tw_status coll_measure(coll_ctx *x, size_t cnt, int ip, int check, double *time_s,
                              long long *wrong) {
    const coll_opts *o = x->o;
    tw_comm *c = x->c;
    const void *in;
    void *out;
    TW_TRY(coll_setup(x, cnt, ip, &in, &out));
    for (int i = 0; i < o->warmup; i++) TW_TRY(coll_call(x, cnt, in, out));
    TW_TRY(tw_comm_wait(c));
    TW_TRY(tw_comm_barrier(c));
    double t0 = tw_now_s();
    for (int i = 0; i < o->iters; i++) TW_TRY(coll_call(x, cnt, in, out));
    TW_TRY(tw_comm_wait(c));
    *time_s = (tw_now_s() - t0) / o->iters;
    *wrong = -1;
    if (!check) return TW_OK;
    /* a fresh input and one call, then every output element against the expected value */
    int rank = tw_comm_rank(c), n = tw_comm_size(c);
    TW_TRY(coll_setup(x, cnt, ip, &in, &out));
    TW_TRY(coll_call(x, cnt, in, out));
    TW_TRY(tw_comm_wait(c));
    size_t es = tw_comm_dtype_size(o->dt), out_n = coll_out_n(o->kind, cnt, n);
    TW_TRY(tw_comm_buf_download(c, x->host_b, out, out_n * es));
    long long bad = 0;
    for (size_t i = 0; i < out_n; i++) {
        double want = coll_expect(o, rank, n, cnt, i);
        double got = coll_get(x->host_b, i, o->dt);
        /* bf16 sums may round once (mpi) or per step (nccl): 2^-7 relative */
        double tol = o->dt == TW_BF16 ? fabs(want) / 128.0 : 0.0;
        if (!(fabs(got - want) <= tol)) bad++;
    }
    double all_bad = 0;
    double *v = malloc(sizeof(double) * (size_t)n);
    if (!v) return TW_ERR(TW_ERR_NOMEM, "gathering wrong counts");
    tw_status st = tw_comm_allgather_f64(c, (double)bad, v);
    for (int r = 0; st == TW_OK && r < n; r++) all_bad += v[r];
    free(v);
    TW_TRY(st);
    *wrong = (long long)all_bad;
    return TW_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[n] (sorts v). */
static double coll_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The baseline: OpenMPI's own blocking MPI_Allreduce in a bare loop on the same buffers, sizes,
 * iterations and warm-up (out-of-place fp32 sum on MPI_COMM_WORLD). */
static tw_status coll_baseline(coll_ctx *x, size_t cnt, double *time_s) {
#ifdef TW_HAVE_MPI
    const coll_opts *o = x->o;
    for (int i = 0; i < o->warmup; i++)
        if (MPI_Allreduce(x->in, x->out, (int)cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return TW_ERR(TW_ERR_COMM, "baseline MPI_Allreduce failed");
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = tw_now_s();
    for (int i = 0; i < o->iters; i++)
        if (MPI_Allreduce(x->in, x->out, (int)cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return TW_ERR(TW_ERR_COMM, "baseline MPI_Allreduce failed");
    *time_s = (tw_now_s() - t0) / o->iters;
    return TW_OK;
#else
    (void)x, (void)cnt, (void)time_s;
    return TW_ERR(TW_ERR_UNSUPPORTED, "--baseline needs MPI (not found at build time)");
#endif
}

/* ---- fabric gate --------------------------------------------------------------------------- */

static tw_status parse_bytes_json(json_t *v, const char *what, size_t *out) {
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (d < 0) return TW_ERR(TW_ERR_PARSE, "fabric file: %s is negative", what);
        *out = (size_t)d;
        return TW_OK;
    }
    if (!json_is_string(v))
        return TW_ERR(TW_ERR_PARSE, "fabric file: %s must be a byte count or \"16M\"", what);
    const char *s = json_string_value(v);
    char *end;
    double d = strtod(s, &end);
    double m = 1;
    if (*end == 'K' || *end == 'k')
        m = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        m = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        m = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B') end++;
    if (end == s || *end || !(d >= 0))
        return TW_ERR(TW_ERR_PARSE, "fabric file: %s: '%s' is not a byte size", what, s);
    *out = (size_t)(d * m);
    return TW_OK;
}

/* Reads the expected busbw for `link` and optional ranges from a fabric file:
 * {"links": {"intra_node": GBPS, "inter_node": GBPS}, "tolerance": 0.1,
 *  "ranges": [{"from": "1M", "to": "16M", "fraction": 0.5}, {"from": "16M", "fraction": 1}]} */
static tw_status fabric_load(const char *path, const char *link, double *gbps, double *tol,
                             coll_range *ranges, int *nr, int max_r) {
    json_t *root = NULL;
    tw_status st = tw_json_load_file(path, &root);
    if (st != TW_OK) return tw_error_ctx(st, "fabric file");
    json_t *links = json_object_get(root, "links");
    json_t *v = links ? json_object_get(links, link) : NULL;
    if (!json_is_number(v) || json_number_value(v) <= 0) {
        st = TW_ERR(TW_ERR_PARSE,
                    "fabric file %s: no positive \"links\": {\"%s\": GBPS} for this run's link "
                    "type",
                    path, link);
        goto done;
    }
    *gbps = json_number_value(v);
    json_t *t = json_object_get(root, "tolerance");
    if (t) {
        if (!json_is_number(t) || json_number_value(t) < 0 || json_number_value(t) >= 1) {
            st = TW_ERR(TW_ERR_PARSE, "fabric file %s: tolerance must be in [0, 1)", path);
            goto done;
        }
        *tol = json_number_value(t);
    }
    json_t *rs = json_object_get(root, "ranges");
    if (rs) {
        if (!json_is_array(rs) || json_array_size(rs) == 0 || json_array_size(rs) > (size_t)max_r) {
            st = TW_ERR(TW_ERR_PARSE, "fabric file %s: ranges must be a list of 1 to %d", path,
                        max_r);
            goto done;
        }
        *nr = 0;
        for (size_t i = 0; i < json_array_size(rs); i++) {
            json_t *r = json_array_get(rs, i);
            coll_range *g = &ranges[(*nr)++];
            memset(g, 0, sizeof *g);
            g->fraction = 1.0;
            json_t *from = json_object_get(r, "from"), *to = json_object_get(r, "to"),
                   *fr = json_object_get(r, "fraction");
            if (!from) {
                st = TW_ERR(TW_ERR_PARSE, "fabric file %s: range %zu has no \"from\"", path, i);
                goto done;
            }
            if ((st = parse_bytes_json(from, "from", &g->from)) != TW_OK) goto done;
            if (to && (st = parse_bytes_json(to, "to", &g->to)) != TW_OK) goto done;
            if (fr) {
                if (!json_is_number(fr) || json_number_value(fr) <= 0) {
                    st = TW_ERR(TW_ERR_PARSE, "fabric file %s: range %zu fraction must be > 0",
                                path, i);
                    goto done;
                }
                g->fraction = json_number_value(fr);
            }
        }
    }
done:
    json_decref(root);
    return st;
}

/* Judges each range: PASS when the best busbw of its sizes reaches expect * (1 - tol). */
static int fabric_judge(coll_range *rg, int nr, const coll_row *rows, int nrows, double tol) {
    int fails = 0, judged = 0;
    for (int g = 0; g < nr; g++) {
        rg[g].measured_gbps = 0;
        rg[g].n_sizes = 0;
        for (int i = 0; i < nrows; i++) {
            if (rows[i].size_b < rg[g].from || (rg[g].to && rows[i].size_b >= rg[g].to)) continue;
            rg[g].n_sizes++;
            double b = rows[i].busbw[0] > rows[i].busbw[1] ? rows[i].busbw[0] : rows[i].busbw[1];
            if (b > rg[g].measured_gbps) rg[g].measured_gbps = b;
        }
        if (rg[g].n_sizes == 0) {
            rg[g].verdict = "NO DATA";
            continue;
        }
        judged++;
        int ok = rg[g].measured_gbps >= rg[g].expect_gbps * (1.0 - tol);
        rg[g].verdict = ok ? "PASS" : "FAIL";
        fails += !ok;
    }
    return judged == 0 ? -1 : fails;
}

static void fmt_bytes(char *buf, size_t n, size_t b) {
    if (b == 0)
        snprintf(buf, n, "-");
    else if (b % (1024ull * 1024 * 1024) == 0)
        snprintf(buf, n, "%zuG", b >> 30);
    else if (b % (1024 * 1024) == 0)
        snprintf(buf, n, "%zuM", b >> 20);
    else if (b % 1024 == 0)
        snprintf(buf, n, "%zuK", b >> 10);
    else
        snprintf(buf, n, "%zu", b);
}

/* ---- output ------------------------------------------------------------------------------- */

static const char *nccl_type_name(tw_dtype dt) {
    return dt == TW_BF16 ? "bfloat16" : "float";
}

static void print_time(FILE *f, double us) {
    if (us >= 10000.0)
        fprintf(f, "  %7.0f", us);
    else if (us >= 100.0)
        fprintf(f, "  %7.1f", us);
    else
        fprintf(f, "  %7.2f", us);
}

static void print_text(const coll_opts *o, tw_comm *c, const tw_comm_hosts *h, const coll_row *rows,
                       int nrows, double avg_bw, const coll_range *rg, int nr, int gate,
                       const char *link, double tol) {
    FILE *f = stdout;
    int n = tw_comm_size(c);
    fprintf(f, "# tokwatt bench %s: comm %s, %d rank(s) on %d host(s) (at most %d per host)\n",
            coll_names[o->kind], tw_comm_kind(c), n, h->n_hosts, h->max_per_host);
    fprintf(f,
            "# minBytes %zu maxBytes %zu step: %d(factor) warmup iters: %d iters: %d "
            "validation: %d\n#\n",
            o->minb, o->maxb, o->factor, o->warmup, o->iters, o->check);
    for (int r = 0; r < n; r++)
        fprintf(f, "#  Rank %2d on %s%s\n", r, h->host[r],
                tw_comm_device(c) >= 0 ? " (one GPU per rank, device = local rank)" : "");
    fprintf(f, "#\n");
    fprintf(f, "#%74s%34s\n", "out-of-place", "in-place");
    fprintf(f, "#%11s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "size",
            "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw",
            "busbw", "#wrong");
    fprintf(f, "#%11s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "(B)",
            "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)",
            "");
    int reduces = o->kind == COLL_ALLREDUCE || o->kind == COLL_REDUCESCATTER;
    long long total_wrong = 0;
    for (int i = 0; i < nrows; i++) {
        const coll_row *w = &rows[i];
        fprintf(f, "%12zu  %12zu  %8s  %6s  %6d", w->size_b, w->count, nccl_type_name(o->dt),
                reduces ? tw_redop_name(o->op) : "none", o->kind == COLL_BROADCAST ? o->root : -1);
        for (int ip = 0; ip < 2; ip++) {
            print_time(f, w->time_us[ip]);
            fprintf(f, "  %6.2f  %6.2f", w->algbw[ip], w->busbw[ip]);
            if (w->wrong[ip] < 0)
                fprintf(f, "  %6s", "N/A");
            else
                fprintf(f, "  %6lld", w->wrong[ip]);
            if (w->wrong[ip] > 0) total_wrong += w->wrong[ip];
        }
        fprintf(f, "\n");
    }
    fprintf(f, "# Out of bounds values : %lld %s\n", total_wrong, total_wrong ? "FAILED" : "OK");
    fprintf(f, "# Avg bus bandwidth    : %g \n", avg_bw);
    fprintf(f, "#\n");
    if (n > 1 && nrows > 0) {
        fprintf(f, "# Straggler report (out-of-place time per rank):\n");
        fprintf(f, "# %10s  %12s  %-20s  %10s  %10s  %8s\n", "size (B)", "slowest rank", "host",
                "time (us)", "median", "spread");
        int *slow_count = calloc((size_t)n, sizeof(int));
        int worst = 0;
        for (int i = 0; i < nrows; i++) {
            const coll_row *w = &rows[i];
            fprintf(f, "# %10zu  %12d  %-20.20s  %10.2f  %10.2f  %+7.1f%%\n", w->size_b,
                    w->slow_rank, h->host[w->slow_rank], w->slow_us, w->median_us,
                    100.0 * w->spread);
            if (slow_count) slow_count[w->slow_rank]++;
            if (w->spread > rows[worst].spread) worst = i;
        }
        int most = 0;
        for (int r = 1; slow_count && r < n; r++)
            if (slow_count[r] > slow_count[most]) most = r;
        fprintf(f,
                "# Slowest rank: %d (%s), slowest at %d of %d sizes; largest spread %+.1f%% "
                "at %zu B\n#\n",
                most, h->host[most], slow_count ? slow_count[most] : 0, nrows,
                100.0 * rows[worst].spread, rows[worst].size_b);
        free(slow_count);
    }
    if (o->baseline && nrows > 0) {
        fprintf(f,
                "# Baseline: OpenMPI's blocking MPI_Allreduce in a bare loop, same buffers and "
                "sizes, run after each repetition; medians of %d repetitions\n",
                o->reps);
        fprintf(f, "# %10s  %14s  %14s  %7s\n", "size (B)", "tokwatt busbw", "MPI busbw", "ratio");
        double sum_t = 0, sum_b = 0;
        for (int i = 0; i < nrows; i++) {
            const coll_row *w = &rows[i];
            fprintf(f, "# %10zu  %14.3f  %14.3f  %7.3f\n", w->size_b, w->busbw[0], w->base_busbw,
                    w->base_busbw > 0 ? w->busbw[0] / w->base_busbw : 0.0);
            sum_t += w->busbw[0];
            sum_b += w->base_busbw;
        }
        fprintf(f, "# Avg busbw (out-of-place): tokwatt %g, MPI_Allreduce %g, ratio %.3f\n#\n",
                sum_t / nrows, sum_b / nrows, sum_b > 0 ? sum_t / sum_b : 0.0);
    }
    if (gate) {
        fprintf(f,
                "# Fabric check (%s link, pass at >= (1 - %.2f) x expected busbw, best size "
                "in range):\n",
                link, tol);
        for (int g = 0; g < nr; g++) {
            char a[32], b[32];
            fmt_bytes(a, sizeof a, rg[g].from);
            fmt_bytes(b, sizeof b, rg[g].to);
            fprintf(f,
                    "#   %6s .. %-6s  expected %8.2f GB/s  measured %8.2f GB/s  (%d sizes)  %s\n",
                    a, rg[g].to ? b : "max", rg[g].expect_gbps, rg[g].measured_gbps, rg[g].n_sizes,
                    rg[g].verdict);
        }
    }
}

static void print_csv(const coll_opts *o, const coll_row *rows, int nrows) {
    printf("size_bytes,count,type,redop,root,oop_time_us,oop_algbw_gbps,oop_busbw_gbps,"
           "oop_wrong,ip_time_us,ip_algbw_gbps,ip_busbw_gbps,ip_wrong,slowest_rank,spread,"
           "baseline_time_us,baseline_busbw_gbps\n");
    int reduces = o->kind == COLL_ALLREDUCE || o->kind == COLL_REDUCESCATTER;
    for (int i = 0; i < nrows; i++) {
        const coll_row *w = &rows[i];
        printf("%zu,%zu,%s,%s,%d,%.3f,%.4f,%.4f,%lld,%.3f,%.4f,%.4f,%lld,%d,%.4f,%.3f,%.4f\n",
               w->size_b, w->count, nccl_type_name(o->dt), reduces ? tw_redop_name(o->op) : "none",
               o->kind == COLL_BROADCAST ? o->root : -1, w->time_us[0], w->algbw[0], w->busbw[0],
               w->wrong[0], w->time_us[1], w->algbw[1], w->busbw[1], w->wrong[1], w->slow_rank,
               w->spread, w->base_us, w->base_busbw);
    }
}

static void print_json(const coll_opts *o, tw_comm *c, const tw_comm_hosts *h, const coll_row *rows,
                       int nrows, double avg_bw, const coll_range *rg, int nr, int gate,
                       const char *link, double tol, int pass) {
    int n = tw_comm_size(c);
    json_t *root = json_object();
    json_object_set_new(root, "benchmark", json_string(coll_names[o->kind]));
    json_object_set_new(root, "comm", json_string(tw_comm_kind(c)));
    json_object_set_new(root, "ranks", json_integer(n));
    json_object_set_new(root, "hosts", json_integer(h->n_hosts));
    json_object_set_new(root, "max_ranks_per_host", json_integer(h->max_per_host));
    json_t *hosts = json_array();
    for (int r = 0; r < n; r++) json_array_append_new(hosts, json_string(h->host[r]));
    json_object_set_new(root, "rank_hosts", hosts);
    json_object_set_new(root, "dtype", json_string(tw_comm_dtype_name(o->dt)));
    json_object_set_new(root, "redop", json_string(tw_redop_name(o->op)));
    json_object_set_new(root, "root", json_integer(o->root));
    json_object_set_new(root, "iters", json_integer(o->iters));
    json_object_set_new(root, "warmup_iters", json_integer(o->warmup));
    json_object_set_new(root, "check", json_boolean(o->check));
    json_object_set_new(root, "reps", json_integer(o->reps));
    json_object_set_new(root, "bus_factor", json_real(coll_bus_factor(o->kind, n)));
    json_t *arr = json_array();
    for (int i = 0; i < nrows; i++) {
        const coll_row *w = &rows[i];
        json_t *row = json_object();
        json_object_set_new(row, "size_bytes", json_integer((json_int_t)w->size_b));
        json_object_set_new(row, "count", json_integer((json_int_t)w->count));
        const char *side[2] = {"out_of_place", "in_place"};
        for (int ip = 0; ip < 2; ip++) {
            json_t *s = json_object();
            json_object_set_new(s, "time_us", json_real(w->time_us[ip]));
            json_object_set_new(s, "algbw_gbps", json_real(w->algbw[ip]));
            json_object_set_new(s, "busbw_gbps", json_real(w->busbw[ip]));
            json_object_set_new(s, "wrong",
                                w->wrong[ip] < 0 ? json_null() : json_integer(w->wrong[ip]));
            json_object_set_new(row, side[ip], s);
        }
        json_t *pr = json_array();
        for (int r = 0; r < n; r++) json_array_append_new(pr, json_real(w->rank_us[r]));
        json_object_set_new(row, "rank_time_us", pr);
        json_t *sg = json_object();
        json_object_set_new(sg, "slowest_rank", json_integer(w->slow_rank));
        json_object_set_new(sg, "slowest_us", json_real(w->slow_us));
        json_object_set_new(sg, "median_us", json_real(w->median_us));
        json_object_set_new(sg, "spread", json_real(w->spread));
        json_object_set_new(row, "straggler", sg);
        if (o->baseline) {
            json_t *bl = json_object();
            json_object_set_new(bl, "time_us", json_real(w->base_us));
            json_object_set_new(bl, "busbw_gbps", json_real(w->base_busbw));
            json_object_set_new(bl, "ratio",
                                json_real(w->base_busbw > 0 ? w->busbw[0] / w->base_busbw : 0.0));
            json_object_set_new(row, "baseline_mpi_allreduce", bl);
        }
        json_array_append_new(arr, row);
    }
    json_object_set_new(root, "rows", arr);
    json_object_set_new(root, "avg_busbw_gbps", json_real(avg_bw));
    if (gate) {
        json_t *fab = json_object();
        json_object_set_new(fab, "link", json_string(link));
        json_object_set_new(fab, "tolerance", json_real(tol));
        json_t *ga = json_array();
        for (int g = 0; g < nr; g++) {
            json_t *x = json_object();
            json_object_set_new(x, "from_bytes", json_integer((json_int_t)rg[g].from));
            json_object_set_new(x, "to_bytes",
                                rg[g].to ? json_integer((json_int_t)rg[g].to) : json_null());
            json_object_set_new(x, "expected_busbw_gbps", json_real(rg[g].expect_gbps));
            json_object_set_new(x, "measured_busbw_gbps", json_real(rg[g].measured_gbps));
            json_object_set_new(x, "sizes", json_integer(rg[g].n_sizes));
            json_object_set_new(x, "verdict", json_string(rg[g].verdict));
            json_array_append_new(ga, x);
        }
        json_object_set_new(fab, "ranges", ga);
        json_object_set_new(root, "fabric_check", fab);
    }
    json_object_set_new(root, "pass", json_boolean(pass));
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(root);
}

/* ---- the command --------------------------------------------------------------------------- */

static const char *coll_usage =
    "tokwatt bench allreduce|allgather|reducescatter|broadcast|alltoall\n"
    "    [-b MINBYTES (32M)] [-e MAXBYTES (=-b)] [-f FACTOR (2)] [-n ITERS (20)] [-w WARMUP (5)]\n"
    "    [-c CHECK 0|1 (1)] [-d fp32|bf16 (fp32)] [-o sum|max (sum)] [-r ROOT (0)]\n"
    "    [--comm auto|local|mpi|nccl|threads] [--backend cpu|cuda] [--timeout S (env "
    "TW_COMM_TIMEOUT_S, 60)]\n"
    "    [--ranks N] (--comm threads: N ranks as threads of this process, host memory)\n"
    "    [--gpus N] (nccl without mpirun: N threads of this process, one GPU each, one NCCL\n"
    "    communicator, as nccl-tests -t/-g)\n"
    "    [--expect-busbw GBPS [--expect-from BYTES (1M)] [--expect-tolerance F (0.1)]]\n"
    "    [--fabric FILE.json] [--format md|json|csv] [--reps R (1; 5 with --baseline)]\n"
    "    [--baseline] (allreduce over mpi: OpenMPI's bare MPI_Allreduce loop, interleaved)\n"
    "  run under mpirun: mpirun -np N tokwatt bench allreduce -b 8 -e 64M -f 2; on one host\n"
    "  without MPI: --comm threads --ranks N (CPU) or --gpus N (GPUs)\n"
    "  output as nccl-tests (busbw factors: allreduce 2(n-1)/n; allgather, reducescatter,\n"
    "  alltoall (n-1)/n; broadcast 1); exit 3 when results are wrong or a fabric check fails.\n"
    "  fabric file: {\"links\": {\"intra_node\": GBPS, \"inter_node\": GBPS}, \"tolerance\": 0.1,\n"
    "    \"ranges\": [{\"from\": \"1M\", \"to\": \"16M\", \"fraction\": 0.5}, {\"from\": "
    "\"16M\"}]}";

static tw_status coll_parse(tw_args *a, coll_opts *o) {
    const char *d, *op;
    long f;
    const char *bs;
    TW_TRY(tw_args_str(a, "-b", "32M", &bs));
    TW_TRY(tw_args_bytes(a, "-b", "32M", &o->minb));
    TW_TRY(tw_args_bytes(a, "-e", bs, &o->maxb)); /* -e defaults to -b */
    TW_TRY(tw_args_long(a, "-f", 2, 2, 1024, &f));
    o->factor = (int)f;
    TW_TRY(tw_args_int(a, "-n", 20, 1, 10000000, &o->iters));
    TW_TRY(tw_args_int(a, "-w", 5, 0, 10000000, &o->warmup));
    TW_TRY(tw_args_int(a, "-c", 1, 0, 1, &o->check));
    TW_TRY(tw_args_int(a, "-r", 0, 0, 1 << 20, &o->root));
    o->baseline = tw_args_flag(a, "--baseline");
    TW_TRY(tw_args_int(a, "--reps", o->baseline ? 5 : 1, 1, TW_COLL_MAX_REPS, &o->reps));
    TW_TRY(tw_args_str(a, "-d", "fp32", &d));
    if (!strcmp(d, "fp32") || !strcmp(d, "float") || !strcmp(d, "f32") || !strcmp(d, "float32"))
        o->dt = TW_F32;
    else if (!strcmp(d, "bf16") || !strcmp(d, "bfloat16"))
        o->dt = TW_BF16;
    else
        return TW_ERR(TW_ERR_INVALID, "option -d: '%s' is not fp32 (float) or bf16 (bfloat16)", d);
    TW_TRY(tw_args_str(a, "-o", "sum", &op));
    TW_TRY(tw_redop_parse(op, &o->op));
    TW_TRY(tw_args_str(a, "--comm", "auto", &o->comm_kind));
    TW_TRY(tw_args_str(a, "--backend", NULL, &o->backend));
    TW_TRY(tw_args_double(a, "--timeout", 0, 0, 1e6, &o->timeout_s));
    TW_TRY(tw_args_double(a, "--expect-busbw", 0, 0, 1e6, &o->expect_gbps));
    TW_TRY(tw_args_bytes(a, "--expect-from", "1M", &o->expect_from));
    TW_TRY(tw_args_double(a, "--expect-tolerance", 0.1, 0, 0.99, &o->expect_tol));
    TW_TRY(tw_args_str(a, "--fabric", NULL, &o->fabric));
    TW_TRY(tw_args_int(a, "--ranks", 0, 1, 4096, &o->ranks));
    TW_TRY(tw_args_int(a, "--gpus", 0, 1, 4096, &o->gpus));
    TW_TRY(tw_args_format(a, &o->fmt));
    TW_TRY(tw_args_finish(a));
    if (o->minb < 4)
        return TW_ERR(TW_ERR_INVALID, "option -b: %zu bytes is below one element", o->minb);
    if (o->maxb < o->minb)
        return TW_ERR(TW_ERR_INVALID, "option -e: %zu is below -b %zu", o->maxb, o->minb);
    if (o->maxb > ((size_t)1 << 34))
        return TW_ERR(TW_ERR_INVALID, "option -e: %zu bytes is above 16G", o->maxb);
    if (o->expect_gbps > 0 && o->fabric)
        return TW_ERR(TW_ERR_INVALID, "--expect-busbw and --fabric are exclusive");
    if (strcmp(o->comm_kind, "auto") && strcmp(o->comm_kind, "local") &&
        strcmp(o->comm_kind, "mpi") && strcmp(o->comm_kind, "nccl") &&
        strcmp(o->comm_kind, "threads"))
        return TW_ERR(TW_ERR_INVALID,
                      "option --comm: '%s' is not auto, local, mpi, nccl or threads", o->comm_kind);
    if (o->ranks && o->gpus)
        return TW_ERR(TW_ERR_INVALID,
                      "--ranks N (CPU rank threads) and --gpus N (a thread per GPU) are exclusive");
    if (o->ranks && strcmp(o->comm_kind, "auto") && strcmp(o->comm_kind, "threads"))
        return TW_ERR(TW_ERR_INVALID, "--ranks N runs rank threads: it goes with --comm threads");
    if (o->gpus && strcmp(o->comm_kind, "auto") && strcmp(o->comm_kind, "nccl"))
        return TW_ERR(TW_ERR_INVALID, "--gpus N runs NCCL over GPUs: it goes with --comm nccl");
    if (o->ranks) o->comm_kind = "threads";
    if (o->gpus) o->comm_kind = "nccl";
    if (!strcmp(o->comm_kind, "threads") && !o->ranks) o->ranks = 1;
    if (o->ranks && tw_comm_under_launcher())
        return TW_ERR(TW_ERR_INVALID,
                      "--ranks N runs the ranks as threads of one process: launch it without "
                      "mpirun (under mpirun, --gpus G gives each process G GPU threads)");
    if (o->ranks && o->backend && strcmp(o->backend, "cpu"))
        return TW_ERR(TW_ERR_INVALID, "--comm threads works on host memory: --backend cpu");
    if (o->baseline && (o->kind != COLL_ALLREDUCE || o->dt != TW_F32 || o->op != TW_RED_SUM))
        return TW_ERR(TW_ERR_INVALID, "--baseline compares allreduce fp32 sum only");
    if (o->baseline && strcmp(o->comm_kind, "mpi") && strcmp(o->comm_kind, "auto"))
        return TW_ERR(TW_ERR_INVALID, "--baseline compares the mpi communicator only");
    if (o->baseline && o->ranks)
        return TW_ERR(TW_ERR_INVALID, "--baseline compares the mpi communicator only");
    if (!o->backend) o->backend = !strcmp(o->comm_kind, "nccl") ? "cuda" : "cpu";
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
        return TW_ERR(TW_ERR_INVALID, "option --backend: '%s' is not cpu or cuda", o->backend);
    return TW_OK;
}

/* Everything after the communicator exists; any failure here is collective-fatal. */
static tw_status coll_run(const coll_opts *o, tw_comm *c, int argc, char **argv, int *exit_code) {
    int n = tw_comm_size(c), rank = tw_comm_rank(c);
    *exit_code = TW_EXIT_OK;
    if (o->kind == COLL_BROADCAST && o->root >= n)
        return TW_ERR(TW_ERR_INVALID, "option -r: root %d is not a rank of %d", o->root, n);
    /* every rank must run the same benchmark with the same options */
    char cfg[2048];
    size_t used = (size_t)snprintf(cfg, sizeof cfg, "%s", coll_names[o->kind]);
    for (int i = 0; i < argc && used < sizeof cfg; i++)
        used += (size_t)snprintf(cfg + used, sizeof cfg - used, " %s", argv[i]);
    TW_TRY(tw_comm_check_consistency(c, cfg, strlen(cfg), "benchmark options"));
    if (o->baseline && strcmp(tw_comm_kind(c), "mpi") != 0)
        return TW_ERR(TW_ERR_INVALID,
                      "--baseline needs the mpi communicator (got %s: run under "
                      "mpirun or pass --comm mpi)",
                      tw_comm_kind(c));
    tw_comm_hosts h;
    TW_TRY(tw_comm_gather_hosts(c, &h));
    const char *link = h.n_hosts > 1 ? "inter_node" : "intra_node";

    /* fabric expectations (loaded before the run so a bad file fails fast) */
    coll_range rg[32];
    int nr = 0, gate = o->expect_gbps > 0 || o->fabric;
    double expect = o->expect_gbps, tol = o->expect_tol;
    tw_status st = TW_OK;
    if (o->fabric) st = fabric_load(o->fabric, link, &expect, &tol, rg, &nr, 32);
    if (st != TW_OK) {
        tw_comm_free_hosts(&h);
        return st;
    }
    if (gate && nr == 0) { /* default ranges: factors of 16 from --expect-from */
        for (size_t from = o->expect_from ? o->expect_from : 1; from <= o->maxb && nr < 32;
             from *= 16) {
            rg[nr].from = from;
            rg[nr].to = from * 16 > o->maxb ? 0 : from * 16;
            rg[nr].fraction = 1.0;
            nr++;
        }
        if (nr == 0) {
            tw_comm_free_hosts(&h);
            return TW_ERR(TW_ERR_INVALID,
                          "fabric check: --expect-from %zu is above the largest size -e %zu",
                          o->expect_from, o->maxb);
        }
    }
    for (int g = 0; g < nr; g++) rg[g].expect_gbps = expect * rg[g].fraction;

    size_t es = tw_comm_dtype_size(o->dt);
    /* largest per-rank count and buffers */
    size_t max_in = 0, max_out = 0;
    int nsizes = 0;
    for (size_t b = o->minb; b <= o->maxb; b *= (size_t)o->factor) {
        int split = o->kind != COLL_ALLREDUCE && o->kind != COLL_BROADCAST;
        size_t cnt = b / es / (split ? (size_t)n : 1);
        if (coll_in_n(o->kind, cnt, n) > max_in) max_in = coll_in_n(o->kind, cnt, n);
        if (coll_out_n(o->kind, cnt, n) > max_out) max_out = coll_out_n(o->kind, cnt, n);
        nsizes++;
    }
    coll_row *rows = calloc((size_t)nsizes, sizeof *rows);
    coll_ctx x = {.c = c, .o = o};
    size_t max_el = (max_in > max_out ? max_in : max_out) + 1;
    x.host_f = malloc(max_el * sizeof(float));
    x.host_b = malloc(max_el * es);
    if (!rows || !x.host_f || !x.host_b) st = TW_ERR(TW_ERR_NOMEM, "benchmark buffers");
    /* the in-place forms run in `out`, which must then hold the input too (reducescatter) */
    if (st == TW_OK) st = tw_comm_buf_alloc(c, max_in * es, &x.in);
    if (st == TW_OK) st = tw_comm_buf_alloc(c, max_el * es, &x.out);
    double *per_rank = malloc(sizeof(double) * (size_t)n);
    if (!per_rank && st == TW_OK) st = TW_ERR(TW_ERR_NOMEM, "per-rank times");
    int nrows = 0;
    double bw_sum = 0;
    int bw_n = 0;
    long long wrong_total = 0;
    for (size_t b = o->minb; st == TW_OK && b <= o->maxb; b *= (size_t)o->factor) {
        int split = o->kind != COLL_ALLREDUCE && o->kind != COLL_BROADCAST;
        size_t cnt = b / es / (split ? (size_t)n : 1);
        if (cnt == 0) {
            if (rank == 0) tw_log("skipping %zu B: less than one element per rank", b);
            continue;
        }
        coll_row *w = &rows[nrows];
        w->cnt = cnt;
        w->count = split ? cnt * (size_t)n : cnt;
        w->size_b = w->count * es;
        w->rank_us = malloc(sizeof(double) * (size_t)n);
        if (!w->rank_us) {
            st = TW_ERR(TW_ERR_NOMEM, "per-rank times");
            break;
        }
        nrows++;
        for (int ip = 0; ip < 2 && st == TW_OK; ip++) {
            /* --reps: median over repetitions; with --baseline the bare MPI_Allreduce loop runs
             * right after each out-of-place repetition, so both see the same machine load */
            double rep_us[TW_COLL_MAX_REPS], base_us[TW_COLL_MAX_REPS];
            for (int r = 0; r < n; r++)
                if (ip == 0) w->rank_us[r] = 0;
            for (int rep = 0; rep < o->reps && st == TW_OK; rep++) {
                double t = 0;
                long long wrong = -1;
                st = coll_measure(&x, cnt, ip, rep == 0 && o->check, &t, &wrong);
                if (st != TW_OK) break;
                if (rep == 0) w->wrong[ip] = wrong;
                double sum = 0;
                st = tw_comm_allgather_f64(c, t * 1e6, per_rank);
                for (int r = 0; st == TW_OK && r < n; r++) {
                    sum += per_rank[r];
                    if (ip == 0) w->rank_us[r] += per_rank[r] / o->reps; /* mean over reps */
                }
                rep_us[rep] = sum / n; /* average over ranks, as nccl-tests */
                if (st == TW_OK && ip == 0 && o->baseline) {
                    st = coll_baseline(&x, cnt, &t);
                    if (st == TW_OK) st = tw_comm_allgather_f64(c, t * 1e6, per_rank);
                    sum = 0;
                    for (int r = 0; st == TW_OK && r < n; r++) sum += per_rank[r];
                    base_us[rep] = sum / n;
                }
            }
            if (st != TW_OK) break;
            w->time_us[ip] = coll_median(rep_us, o->reps);
            w->algbw[ip] = (double)w->size_b / (w->time_us[ip] * 1e-6) / 1e9;
            w->busbw[ip] = w->algbw[ip] * coll_bus_factor(o->kind, n);
            bw_sum += w->busbw[ip];
            bw_n++;
            if (w->wrong[ip] > 0) wrong_total += w->wrong[ip];
            if (ip == 0 && o->baseline) {
                w->base_us = coll_median(base_us, o->reps);
                w->base_busbw =
                    (double)w->size_b / (w->base_us * 1e-6) / 1e9 * coll_bus_factor(o->kind, n);
            }
        }
        if (st != TW_OK) break;
        /* straggler: slowest rank against the median */
        double *sorted = malloc(sizeof(double) * (size_t)n);
        if (!sorted) {
            st = TW_ERR(TW_ERR_NOMEM, "straggler report");
            break;
        }
        memcpy(sorted, w->rank_us, sizeof(double) * (size_t)n);
        w->median_us = coll_median(sorted, n);
        free(sorted);
        w->slow_rank = 0;
        for (int r = 1; r < n; r++)
            if (w->rank_us[r] > w->rank_us[w->slow_rank]) w->slow_rank = r;
        w->slow_us = w->rank_us[w->slow_rank];
        w->spread = w->median_us > 0 ? w->slow_us / w->median_us - 1.0 : 0.0;
    }
    if (st == TW_OK) {
        double avg_bw = bw_n ? bw_sum / bw_n : 0.0;
        int fails = gate ? fabric_judge(rg, nr, rows, nrows, tol) : 0;
        int pass = wrong_total == 0 && fails == 0;
        if (rank == 0) {
            if (o->fmt == TW_FMT_JSON)
                print_json(o, c, &h, rows, nrows, avg_bw, rg, nr, gate, link, tol, pass);
            else if (o->fmt == TW_FMT_CSV)
                print_csv(o, rows, nrows);
            else
                print_text(o, c, &h, rows, nrows, avg_bw, rg, nr, gate, link, tol);
            if (wrong_total)
                tw_log("FAIL: %lld wrong result elements (summed over ranks)", wrong_total);
            if (fails < 0)
                tw_log("FAIL: fabric check judged no size (every range is outside -b .. -e)");
            else if (fails > 0)
                tw_log("FAIL: fabric check: %d size range(s) below the expected busbw", fails);
            else if (gate)
                tw_log("fabric check passed (%s link)", link);
        }
        if (!pass) *exit_code = TW_EXIT_CHECK;
    }
    for (int i = 0; i < nrows; i++) free(rows[i].rank_us);
    free(rows);
    free(per_rank);
    free(x.host_f);
    free(x.host_b);
    if (x.in) tw_comm_buf_free(c, x.in);
    if (x.out) tw_comm_buf_free(c, x.out);
    tw_comm_free_hosts(&h);
    return st;
}

/* One process, N rank threads (tw_comm_threads_run): each runs the benchmark over its handle
 * of a threads group (--ranks) or over an NCCL communicator on its own GPU made over that
 * handle (--gpus), exactly as a launched rank does; rank 0 prints. */
typedef struct {
    const coll_opts *o;
    int argc;
    char **argv;
    int code;
    tw_comm *mpi; /* under mpirun with --gpus: the process's MPI communicator (mpi x threads) */
} coll_rank_arg;

static tw_status coll_rank(tw_comm *h, void *arg) {
    coll_rank_arg *a = arg;
    tw_comm *c = h, *host = h, *hyb = NULL;
    if (a->mpi) {
        /* global rank = mpi rank x G + thread, as nccl-tests numbers a -np P -g G launch */
        TW_TRY(tw_comm_hybrid_create(a->mpi, h, &hyb));
        host = hyb;
    }
    tw_status st = TW_OK;
    if (a->o->gpus) st = tw_comm_nccl_create_over(host, a->o->timeout_s, &c);
    if (st == TW_OK) st = coll_run(a->o, c, a->argc, a->argv, &a->code);
    if (c != h && c != host) tw_comm_destroy(c);
    tw_comm_destroy(hyb);
    return st;
}

static int coll_main_threads(const coll_opts *o, int argc, char **argv) {
    int n = o->ranks ? o->ranks : o->gpus;
    if (o->gpus) {
        /* refuse before starting a thread, saying what is missing */
        int ndev = 0;
        tw_status cs = tw_cuda_device_count(&ndev);
        if (cs != TW_OK || ndev == 0) {
            fprintf(stderr,
                    "tokwatt: error: no CUDA device: --gpus %d runs one thread per GPU (%s)\n", n,
                    cs != TW_OK ? tw_error_text() : "0 devices");
            return TW_EXIT_FAIL;
        }
        if (ndev < n) {
            fprintf(stderr,
                    "tokwatt: error: --gpus %d but this host has %d CUDA device%s (across hosts: "
                    "mpirun, one rank per GPU)\n",
                    n, ndev, ndev == 1 ? "" : "s");
            return TW_EXIT_USAGE;
        }
    }
    tw_comm *mpi = NULL;
    if (tw_comm_under_launcher() &&
        tw_comm_create("mpi", "cpu", o->timeout_s, &mpi) != TW_OK) { /* on the main thread */
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    coll_rank_arg *args = calloc((size_t)n, sizeof *args);
    void **argp = calloc((size_t)n, sizeof *argp);
    if (!args || !argp) {
        free(args), free(argp);
        fprintf(stderr, "tokwatt: error: out of memory for %d rank threads\n", n);
        if (mpi) tw_comm_abort(mpi, TW_EXIT_FAIL);
        return TW_EXIT_FAIL;
    }
    for (int r = 0; r < n; r++) {
        args[r] =
            (coll_rank_arg){.o = o, .argc = argc, .argv = argv, .code = TW_EXIT_OK, .mpi = mpi};
        argp[r] = &args[r];
    }
    tw_status st = tw_comm_threads_run(n, o->timeout_s, coll_rank, argp, NULL);
    int code = args[0].code;
    free(args), free(argp);
    fflush(stdout);
    if (st != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        /* the other processes may wait for this one: end the job */
        if (mpi) tw_comm_abort(mpi, TW_EXIT_FAIL);
        return TW_EXIT_FAIL;
    }
    tw_comm_destroy(mpi);
    return code;
}

static int coll_main(coll_kind kind, int argc, char **argv) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "tokwatt bench %s", coll_names[kind]);
    tw_args a;
    if (tw_args_init(&a, cmd, coll_usage, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", coll_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    coll_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    if (coll_parse(&a, &o) != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&a);
    if (o.ranks || o.gpus) return coll_main_threads(&o, argc, argv);
    tw_comm *c = NULL;
    if (tw_comm_create(o.comm_kind, o.backend, o.timeout_s, &c) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    int code = TW_EXIT_OK;
    if (coll_run(&o, c, argc, argv, &code) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        /* the peers may be waiting in a collective: tear the job down */
        if (tw_comm_size(c) > 1) tw_comm_abort(c, TW_EXIT_FAIL);
        tw_comm_destroy(c);
        return TW_EXIT_FAIL;
    }
    fflush(stdout);
    tw_comm_destroy(c);
    return code;
}

int tw_bench_allreduce(int argc, char **argv) {
    return coll_main(COLL_ALLREDUCE, argc, argv);
}
int tw_bench_allgather(int argc, char **argv) {
    return coll_main(COLL_ALLGATHER, argc, argv);
}
int tw_bench_reducescatter(int argc, char **argv) {
    return coll_main(COLL_REDUCESCATTER, argc, argv);
}
int tw_bench_broadcast(int argc, char **argv) {
    return coll_main(COLL_BROADCAST, argc, argv);
}
int tw_bench_alltoall(int argc, char **argv) {
    return coll_main(COLL_ALLTOALL, argc, argv);
}
