/* MPI test (run under mpirun -np 2 and -np 4): every collective of the mpi communicator, for
 * fp32 and bf16, sum and max, in-place and out-of-place, at counts 1, 7 and 1001 (not multiples
 * of the rank count), against a serial float64 computation of what every rank contributed.
 * Every rank regenerates every rank's input from a seed, so the reference needs no
 * communication. Outputs are poisoned with NaN before each call.
 * Tolerances (relative norm): fp32 sum 1e-5, bf16 sum 1e-2 (one rounding of the fp32 sum to
 * bf16), max and data movement exact (0). Prints "tw-test: PASS" or "tw-test: FAIL ..." lines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/tw_comm.h"
#include "tw_test_util.h"

static int g_fail = 0;
static int g_checks = 0;

/* Input of rank r for one case: values in [-1, 1), rounded to bf16 when dt is bf16. */
static void gen(float *x, size_t n, int r, uint64_t seed, tw_dtype dt) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed * 1000003ull + (uint64_t)r * 7919ull + 17);
    tw_test_fill(&rng, x, n, 1.0f);
    if (dt == TW_BF16)
        for (size_t i = 0; i < n; i++) x[i] = tw_test_from_bf16(tw_test_to_bf16(x[i]));
}

/* Host buffer in the communicator's format from floats, and back. */
static void pack(void *dst, const float *src, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = tw_test_to_bf16(src[i]);
}

static void unpack(float *dst, const void *src, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = tw_test_from_bf16(s[i]);
}

static void poison(void *buf, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        tw_test_poison(buf, n);
        return;
    }
    uint16_t *b = buf;
    for (size_t i = 0; i < n; i++) b[i] = 0x7fc0; /* bf16 NaN */
}

static void check(const char *what, int rank, const float *got, const double *ref, size_t n,
                  double tol) {
    g_checks++;
    double err = tw_test_rel_err(got, ref, n);
    if (!(err <= tol)) {
        g_fail++;
        printf("tw-test: FAIL rank %d: %s: relative error %.3g > %.3g (got[0] %g ref[0] %g)\n",
               rank, what, err, tol, (double)got[0], ref[0]);
    }
}

static int run_case(tw_comm *c, const char *coll, size_t count, tw_dtype dt, tw_redop op,
                    int inplace, uint64_t seed) {
    int rank = tw_comm_rank(c), size = tw_comm_size(c);
    size_t es = tw_comm_dtype_size(dt), total = count * (size_t)size;
    int reduces = !strcmp(coll, "allreduce") || !strcmp(coll, "reducescatter");
    size_t in_n = (!strcmp(coll, "reducescatter") || !strcmp(coll, "alltoall")) ? total : count;
    size_t out_n = (!strcmp(coll, "allgather") || !strcmp(coll, "alltoall")) ? total : count;
    float *all_in = malloc(sizeof(float) * in_n * (size_t)size); /* [size, in_n] */
    double *ref = malloc(sizeof(double) * out_n);
    float *got = malloc(sizeof(float) * out_n);
    /* one buffer big enough for the in-place forms */
    void *inbuf = malloc(es * (in_n > out_n ? in_n : out_n) + 16);
    void *outbuf = malloc(es * (in_n > out_n ? in_n : out_n) + 16);
    for (int r = 0; r < size; r++) gen(all_in + (size_t)r * in_n, in_n, r, seed, dt);
    const float *mine = all_in + (size_t)rank * in_n;
    int root = size - 1;

    /* serial reference */
    for (size_t i = 0; i < out_n; i++) {
        if (reduces) {
            size_t off = !strcmp(coll, "reducescatter") ? (size_t)rank * count : 0;
            double acc = op == TW_RED_MAX ? -INFINITY : 0.0;
            for (int r = 0; r < size; r++) {
                double v = all_in[(size_t)r * in_n + off + i];
                acc = op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v;
            }
            ref[i] = acc;
        } else if (!strcmp(coll, "allgather")) {
            ref[i] = all_in[(i / count) * in_n + i % count];
        } else if (!strcmp(coll, "broadcast")) {
            ref[i] = all_in[(size_t)root * in_n + i];
        } else { /* alltoall: block p of my output is block `rank` of p's input */
            size_t p = i / count;
            ref[i] = all_in[p * in_n + (size_t)rank * count + i % count];
        }
    }

    tw_status st;
    void *res; /* where the result lands */
    if (!strcmp(coll, "allreduce")) {
        pack(inbuf, mine, count, dt);
        poison(outbuf, count, dt);
        res = inplace ? inbuf : outbuf;
        st = tw_comm_allreduce(c, inbuf, res, count, dt, op);
    } else if (!strcmp(coll, "reducescatter")) {
        pack(inbuf, mine, total, dt);
        poison(outbuf, count, dt);
        res = inplace ? (char *)inbuf + (size_t)rank * count * es : outbuf;
        st = tw_comm_reducescatter(c, inbuf, res, count, dt, op);
    } else if (!strcmp(coll, "allgather")) {
        poison(outbuf, total, dt);
        if (inplace) {
            pack((char *)outbuf + (size_t)rank * count * es, mine, count, dt);
            st =
                tw_comm_allgather(c, (char *)outbuf + (size_t)rank * count * es, outbuf, count, dt);
        } else {
            pack(inbuf, mine, count, dt);
            st = tw_comm_allgather(c, inbuf, outbuf, count, dt);
        }
        res = outbuf;
    } else if (!strcmp(coll, "broadcast")) {
        pack(inbuf, mine, count, dt);
        poison(outbuf, count, dt);
        if (inplace) {
            if (rank != root) poison(inbuf, count, dt);
            res = inbuf;
        } else {
            res = outbuf;
        }
        st = tw_comm_broadcast(c, inbuf, res, count, dt, root);
    } else {
        pack(inbuf, mine, total, dt);
        poison(outbuf, total, dt);
        res = inplace ? inbuf : outbuf;
        st = tw_comm_alltoall(c, inbuf, res, count, dt);
    }
    char what[160];
    snprintf(what, sizeof what, "%s count %zu %s %s %s", coll, count, tw_comm_dtype_name(dt),
             reduces ? tw_redop_name(op) : "-", inplace ? "in-place" : "out-of-place");
    if (st != TW_OK) {
        printf("tw-test: FAIL rank %d: %s: %s\n", rank, what, tw_last_error());
        g_fail++;
    } else {
        unpack(got, res, out_n, dt);
        double tol = (reduces && op == TW_RED_SUM) ? (dt == TW_BF16 ? 1e-2 : 1e-5) : 0.0;
        check(what, rank, got, ref, out_n, tol);
    }
    free(all_in);
    free(ref);
    free(got);
    free(inbuf);
    free(outbuf);
    return st == TW_OK;
}

int main(void) {
    tw_comm *c = NULL;
    if (tw_comm_create("mpi", "cpu", 20.0, &c) != TW_OK) {
        printf("tw-test: FAIL creating the mpi communicator: %s\n", tw_last_error());
        return 1;
    }
    int rank = tw_comm_rank(c), size = tw_comm_size(c);
    if (size < 2) printf("tw-test: note: only %d rank (run under mpirun -np 2 or 4)\n", size);
    const char *colls[] = {"allreduce", "reducescatter", "allgather", "broadcast", "alltoall"};
    const size_t counts[] = {1, 7, 1001};
    const tw_dtype dts[] = {TW_F32, TW_BF16};
    const tw_redop ops[] = {TW_RED_SUM, TW_RED_MAX};
    uint64_t seed = 1;
    for (int ci = 0; ci < 5; ci++)
        for (int ki = 0; ki < 3; ki++)
            for (int di = 0; di < 2; di++)
                for (int oi = 0; oi < 2; oi++)
                    for (int ip = 0; ip < 2; ip++) {
                        int reduces = ci < 2;
                        if (!reduces && oi > 0) continue; /* no reduction: one pass */
                        if (!run_case(c, colls[ci], counts[ki], dts[di], ops[oi], ip, seed++)) {
                            tw_comm_abort(c, 1); /* a failed collective leaves peers waiting */
                        }
                    }

    /* barrier, host helpers, stats */
    if (tw_comm_barrier(c) != TW_OK) {
        printf("tw-test: FAIL rank %d: barrier: %s\n", rank, tw_last_error());
        tw_comm_abort(c, 1);
    }
    double *all = malloc(sizeof(double) * (size_t)size);
    if (tw_comm_allgather_f64(c, 1.5 * rank, all) != TW_OK) {
        printf("tw-test: FAIL rank %d: allgather_f64: %s\n", rank, tw_last_error());
        tw_comm_abort(c, 1);
    }
    for (int r = 0; r < size; r++)
        if (all[r] != 1.5 * r) {
            printf("tw-test: FAIL rank %d: allgather_f64[%d] = %g\n", rank, r, all[r]);
            g_fail++;
        }
    free(all);
    double mx = 0;
    if (tw_comm_max_f64(c, (double)((rank + 1) % size), &mx) != TW_OK || mx != (double)(size - 1)) {
        printf("tw-test: FAIL rank %d: max_f64 gave %g\n", rank, mx);
        g_fail++;
    }
    const char cfg[] = "model=synthetic-1b;tp=all;dtype=bf16";
    if (tw_comm_check_consistency(c, cfg, sizeof cfg, "configuration") != TW_OK) {
        printf("tw-test: FAIL rank %d: identical configurations reported as different: %s\n", rank,
               tw_last_error());
        g_fail++;
    }
    tw_comm_hosts h;
    if (tw_comm_gather_hosts(c, &h) != TW_OK || h.n_hosts != 1 || h.max_per_host != size) {
        printf("tw-test: FAIL rank %d: gather_hosts\n", rank);
        g_fail++;
    } else {
        tw_comm_free_hosts(&h);
    }
    tw_comm_stats s = tw_comm_get_stats(c);
    if (s.calls < (uint64_t)g_checks || !(s.time_s > 0)) {
        printf("tw-test: FAIL rank %d: stats: %llu calls, %g s\n", rank,
               (unsigned long long)s.calls, s.time_s);
        g_fail++;
    }
    if (tw_comm_local_rank(c) < 0 || tw_comm_local_rank(c) >= size) {
        printf("tw-test: FAIL rank %d: local rank %d\n", rank, tw_comm_local_rank(c));
        g_fail++;
    }
    if (g_fail == 0) printf("tw-test: PASS rank %d of %d: %d checks\n", rank, size, g_checks);
    tw_comm_destroy(c);
    return g_fail ? 1 : 0;
}
