/* Criterion suite for the `threads` communicator (harness/comm/comm_threads.c): N ranks as N
 * threads of one process. Every collective, fp32/bf16/i32, sum and max, in place and not, at
 * awkward counts (1, 7, 1001, 4099: not multiples of the rank count) on 2, 3 and 4 ranks against
 * a serial float64 computation of what every rank contributed (each rank regenerates every
 * rank's input from a seed); outputs NaN-poisoned before each call. Tolerances (relative norm):
 * fp32 sum 1e-5, bf16 sum 1e-2 (one rounding), max, i32 and data movement exact. Then
 * sub-communicators, the host helpers, and failure: a rank that fails, stalls, ends early or is
 * interrupted stops every other rank within a bounded time, naming it. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/tw_comm.h"
#include "tw_test_util.h"
#include "tw_util.h"

static atomic_int g_fail;
static atomic_int g_checks;

#define RFAIL(rank, ...)                                                                           \
    do {                                                                                           \
        atomic_fetch_add(&g_fail, 1);                                                              \
        fprintf(stderr, "rank %d: ", rank);                                                        \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
    } while (0)

static void gen(float *x, size_t n, int r, uint64_t seed, tw_dtype dt) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed * 1000003ull + (uint64_t)r * 7919ull + 17);
    tw_test_fill(&rng, x, n, 1.0f);
    if (dt == TW_BF16)
        for (size_t i = 0; i < n; i++) x[i] = tw_test_from_bf16(tw_test_to_bf16(x[i]));
    if (dt == TW_I32)
        for (size_t i = 0; i < n; i++) x[i] = floorf(x[i] * 1000.0f);
}

static void pack(void *dst, const float *src, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        memcpy(dst, src, n * sizeof(float));
    } else if (dt == TW_I32) {
        for (size_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int32_t)src[i];
    } else {
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = tw_test_to_bf16(src[i]);
    }
}

static void unpack(float *dst, const void *src, size_t n, tw_dtype dt) {
    if (dt == TW_F32)
        memcpy(dst, src, n * sizeof(float));
    else if (dt == TW_I32)
        for (size_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i];
    else
        for (size_t i = 0; i < n; i++) dst[i] = tw_test_from_bf16(((const uint16_t *)src)[i]);
}

static void poison(void *buf, size_t n, tw_dtype dt) {
    if (dt == TW_F32) {
        tw_test_poison(buf, n);
    } else if (dt == TW_I32) {
        for (size_t i = 0; i < n; i++) ((int32_t *)buf)[i] = INT32_MIN + 7;
    } else {
        for (size_t i = 0; i < n; i++) ((uint16_t *)buf)[i] = 0x7fc0;
    }
}

enum { C_ALLREDUCE, C_REDUCESCATTER, C_ALLGATHER, C_BROADCAST, C_ALLTOALL };
static const char *const cnames[] = {"allreduce", "reducescatter", "allgather", "broadcast",
                                     "alltoall"};

/* One case on this rank; returns 0 when the collective itself failed. */
static int run_case(tw_comm *c, int coll, size_t count, tw_dtype dt, tw_redop op, int inplace,
                    uint64_t seed) {
    int rank = tw_comm_rank(c), size = tw_comm_size(c);
    size_t es = tw_comm_dtype_size(dt), total = count * (size_t)size;
    int reduces = coll == C_ALLREDUCE || coll == C_REDUCESCATTER;
    size_t in_n = (coll == C_REDUCESCATTER || coll == C_ALLTOALL) ? total : count;
    size_t out_n = (coll == C_ALLGATHER || coll == C_ALLTOALL) ? total : count;
    size_t big = in_n > out_n ? in_n : out_n;
    float *all_in = malloc(sizeof(float) * in_n * (size_t)size);
    double *ref = malloc(sizeof(double) * out_n);
    float *got = malloc(sizeof(float) * out_n);
    void *inbuf = malloc(es * big + 16), *outbuf = malloc(es * big + 16);
    for (int r = 0; r < size; r++) gen(all_in + (size_t)r * in_n, in_n, r, seed, dt);
    const float *mine = all_in + (size_t)rank * in_n;
    int root = size - 1;
    for (size_t i = 0; i < out_n; i++) {
        if (reduces) {
            size_t off = coll == C_REDUCESCATTER ? (size_t)rank * count : 0;
            double acc = op == TW_RED_MAX ? -INFINITY : 0.0;
            for (int r = 0; r < size; r++) {
                double v = all_in[(size_t)r * in_n + off + i];
                acc = op == TW_RED_MAX ? (v > acc ? v : acc) : acc + v;
            }
            ref[i] = acc;
        } else if (coll == C_ALLGATHER) {
            ref[i] = all_in[(i / count) * in_n + i % count];
        } else if (coll == C_BROADCAST) {
            ref[i] = all_in[(size_t)root * in_n + i];
        } else {
            ref[i] = all_in[(i / count) * in_n + (size_t)rank * count + i % count];
        }
    }
    tw_status st;
    void *res;
    switch (coll) {
    case C_ALLREDUCE:
        pack(inbuf, mine, count, dt);
        poison(outbuf, count, dt);
        res = inplace ? inbuf : outbuf;
        st = tw_comm_allreduce(c, inbuf, res, count, dt, op);
        break;
    case C_REDUCESCATTER:
        pack(inbuf, mine, total, dt);
        poison(outbuf, count, dt);
        res = inplace ? (char *)inbuf + (size_t)rank * count * es : outbuf;
        st = tw_comm_reducescatter(c, inbuf, res, count, dt, op);
        break;
    case C_ALLGATHER:
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
        break;
    case C_BROADCAST:
        pack(inbuf, mine, count, dt);
        poison(outbuf, count, dt);
        if (inplace && rank != root) poison(inbuf, count, dt);
        res = inplace ? inbuf : outbuf;
        st = tw_comm_broadcast(c, inbuf, res, count, dt, root);
        break;
    default:
        pack(inbuf, mine, total, dt);
        poison(outbuf, total, dt);
        res = inplace ? inbuf : outbuf;
        st = tw_comm_alltoall(c, inbuf, res, count, dt);
        break;
    }
    if (st != TW_OK) {
        RFAIL(rank, "%s count %zu %s: %s", cnames[coll], count, tw_comm_dtype_name(dt),
              tw_last_error());
    } else {
        unpack(got, res, out_n, dt);
        double tol =
            (reduces && op == TW_RED_SUM && dt != TW_I32) ? (dt == TW_BF16 ? 1e-2 : 1e-5) : 0.0;
        double err = tw_test_rel_err(got, ref, out_n);
        atomic_fetch_add(&g_checks, 1);
        if (!(err <= tol))
            RFAIL(rank, "%s count %zu %s %s %s: relative error %.3g > %.3g", cnames[coll], count,
                  tw_comm_dtype_name(dt), reduces ? tw_redop_name(op) : "-",
                  inplace ? "in-place" : "out-of-place", err, tol);
    }
    free(all_in), free(ref), free(got), free(inbuf), free(outbuf);
    return st == TW_OK;
}

static tw_status all_cases(tw_comm *c, void *arg) {
    (void)arg;
    const size_t counts[] = {1, 7, 1001, 4099};
    const tw_dtype dts[] = {TW_F32, TW_BF16, TW_I32};
    uint64_t seed = 1;
    for (int ci = 0; ci < 5; ci++)
        for (int ki = 0; ki < 4; ki++)
            for (int di = 0; di < 3; di++)
                for (int oi = 0; oi < 2; oi++)
                    for (int ip = 0; ip < 2; ip++) {
                        int reduces = ci < 2;
                        if (!reduces && oi > 0) continue;
                        if (!run_case(c, ci, counts[ki], dts[di], oi ? TW_RED_MAX : TW_RED_SUM, ip,
                                      seed++))
                            return TW_ERR(TW_ERR_COMM, "rank %d: a collective failed",
                                          tw_comm_rank(c));
                    }
    /* every rank gets the same bits from an all-reduce (one reduction, shared) */
    enum { N = 333 };
    float x[N], y[N];
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 99 + (uint64_t)tw_comm_rank(c));
    tw_test_fill(&rng, x, N, 3.0f);
    TW_TRY(tw_comm_allreduce(c, x, y, N, TW_F32, TW_RED_SUM));
    uint64_t h = tw_comm_hash64(y, sizeof y, 0);
    TW_TRY(tw_comm_check_consistency(c, &h, sizeof h, "all-reduce bits"));
    return TW_OK;
}

static void run_all(int n) {
    atomic_store(&g_fail, 0);
    atomic_store(&g_checks, 0);
    tw_status st = tw_comm_threads_run(n, 20.0, all_cases, NULL, NULL);
    cr_assert_eq(st, TW_OK, "%d ranks: %s", n, tw_last_error());
    cr_assert_eq(atomic_load(&g_fail), 0, "%d ranks: %d failed checks", n, atomic_load(&g_fail));
    /* 5 collectives x 4 counts x 3 dtypes x (2 ops for 2 of them) x 2 forms, per rank */
    cr_assert_eq(atomic_load(&g_checks), n * (2 * 4 * 3 * 2 * 2 + 3 * 4 * 3 * 2), "checks %d",
                 atomic_load(&g_checks));
}

Test(comm_threads, collectives_match_float64_on_2_ranks) {
    run_all(2);
}
Test(comm_threads, collectives_match_float64_on_3_ranks) {
    run_all(3);
}
Test(comm_threads, collectives_match_float64_on_4_ranks) {
    run_all(4);
}

/* ---- host helpers, stats, kind -------------------------------------------------------------- */

static tw_status helpers(tw_comm *c, void *arg) {
    (void)arg;
    int rank = tw_comm_rank(c), n = tw_comm_size(c);
    if (strcmp(tw_comm_kind(c), "threads") || tw_comm_local_rank(c) != rank || c->local_size != n ||
        tw_comm_device(c) != -1)
        RFAIL(rank, "kind %s local rank %d/%d device %d", tw_comm_kind(c), tw_comm_local_rank(c),
              c->local_size, tw_comm_device(c));
    double all[8];
    TW_TRY(tw_comm_allgather_f64(c, 1.5 * rank + 0.25, all));
    for (int r = 0; r < n; r++)
        if (all[r] != 1.5 * r + 0.25) RFAIL(rank, "allgather_f64[%d] = %g", r, all[r]);
    double mx = 0;
    TW_TRY(tw_comm_max_f64(c, (double)((rank + 1) % n) + 0.5, &mx));
    if (mx != n - 0.5) RFAIL(rank, "max_f64 %g", mx);
    tw_comm_hosts h;
    TW_TRY(tw_comm_gather_hosts(c, &h));
    if (h.n_hosts != 1 || h.max_per_host != n)
        RFAIL(rank, "hosts %d/%d", h.n_hosts, h.max_per_host);
    tw_comm_free_hosts(&h);
    TW_TRY(tw_comm_barrier(c));
    TW_TRY(tw_comm_wait(c));
    tw_comm_stats s = tw_comm_get_stats(c);
    /* the barrier is counted (the host helpers are not collectives of the engine) */
    if (s.calls < 1 || !(s.time_s >= 0))
        RFAIL(rank, "stats: %llu calls", (unsigned long long)s.calls);
    /* a configuration that differs on rank 1 is named on every rank */
    char cfg[32];
    snprintf(cfg, sizeof cfg, "tp=%d", rank == 1 ? 9 : 4);
    tw_status st = tw_comm_check_consistency(c, cfg, strlen(cfg), "configuration");
    if (st != TW_ERR_INVALID || !strstr(tw_last_error(), "rank(s) 1 disagree"))
        RFAIL(rank, "mismatch not reported: %s", tw_last_error());
    tw_clear_error();
    return TW_OK;
}

Test(comm_threads, host_helpers_stats_and_mismatch) {
    atomic_store(&g_fail, 0);
    cr_assert_eq(tw_comm_threads_run(3, 10.0, helpers, NULL, NULL), TW_OK, "%s", tw_last_error());
    cr_assert_eq(atomic_load(&g_fail), 0);
}

Test(comm_threads, create_refuses_bad_sizes_and_the_generic_constructor_says_why) {
    tw_comm *h[1];
    cr_assert_eq(tw_comm_threads_create(0, 1, h), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "0 ranks"), "%s", tw_last_error());
    tw_comm *c = NULL;
    cr_assert_eq(tw_comm_create("threads", "cpu", 1, &c), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "all its rank threads at once"), "%s", tw_last_error());
    cr_assert_null(c);
}

/* ---- sub-communicators ------------------------------------------------------------------------
 */

static tw_status subs(tw_comm *c, void *arg) {
    (void)arg;
    int rank = tw_comm_rank(c), n = tw_comm_size(c);
    for (int k = 1; k <= n; k++) {
        tw_comm *s = NULL;
        TW_TRY(tw_comm_sub(c, k, &s));
        if (rank < k) {
            if (!s || tw_comm_size(s) != k || tw_comm_rank(s) != rank)
                RFAIL(rank, "sub of %d: %p", k, (void *)s);
            if (!s) continue;
            /* its all-reduce sums ranks 0..k-1 only */
            enum { N = 1003 };
            float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
            double *ref = calloc(N, sizeof(double));
            for (int r = 0; r < k; r++) {
                gen(x, N, r, 7 + (uint64_t)k, TW_F32);
                for (int i = 0; i < N; i++) ref[i] += x[i];
            }
            gen(x, N, rank, 7 + (uint64_t)k, TW_F32);
            tw_test_poison(y, N);
            tw_status st = tw_comm_allreduce(s, x, y, N, TW_F32, TW_RED_SUM);
            if (st != TW_OK)
                RFAIL(rank, "sub %d allreduce: %s", k, tw_last_error());
            else if (!(tw_test_rel_err(y, ref, N) <= 1e-5))
                RFAIL(rank, "sub %d allreduce error %g", k, tw_test_rel_err(y, ref, N));
            free(x), free(y), free(ref);
            /* a sub of a sub: rank 0 alone */
            tw_comm *ss = NULL;
            TW_TRY(tw_comm_sub(s, 1, &ss));
            if ((rank == 0) != (ss != NULL)) RFAIL(rank, "sub of sub of %d", k);
            if (ss) {
                float v = 3.0f, w = 0;
                TW_TRY(tw_comm_allreduce(ss, &v, &w, 1, TW_F32, TW_RED_SUM));
                if (w != 3.0f) RFAIL(rank, "one-rank sub %g", w);
                tw_comm_destroy(ss);
            }
            /* the working ranks take longer than the launch's timeout: the waiting ranks (idle
             * barrier) must not time out */
            if (k == 1) usleep(700 * 1000);
            tw_comm_destroy(s);
        } else if (s) {
            RFAIL(rank, "rank outside a sub of %d got a handle", k);
        }
        TW_TRY(tw_comm_idle_barrier(c, 30.0));
    }
    tw_comm *bad = NULL;
    if (tw_comm_sub(c, n + 1, &bad) != TW_ERR_INVALID || bad) RFAIL(rank, "sub of n + 1 accepted");
    tw_clear_error();
    float v = 1.0f, w = 0;
    TW_TRY(tw_comm_allreduce(c, &v, &w, 1, TW_F32, TW_RED_SUM));
    if (w != (float)n) RFAIL(rank, "parent after subs: %g", w);
    return TW_OK;
}

Test(comm_threads, sub_communicators_of_every_size) {
    atomic_store(&g_fail, 0);
    /* a 0.5 s timeout, shorter than the 0.7 s the single working rank takes */
    cr_assert_eq(tw_comm_threads_run(4, 0.5, subs, NULL, NULL), TW_OK, "%s", tw_last_error());
    cr_assert_eq(atomic_load(&g_fail), 0);
}

/* ---- failure ----------------------------------------------------------------------------------
 */

typedef struct {
    const char *mode; /* fail, stall, end, signal */
    int culprit;
    double detected_s[8];
    char err[8][1024];
} fail_ctx;

static fail_ctx g_fx;

static tw_status failing(tw_comm *c, void *arg) {
    (void)arg;
    int rank = tw_comm_rank(c);
    float v[64] = {1}, w[64];
    TW_TRY(tw_comm_allreduce(c, v, w, 64, TW_F32, TW_RED_SUM)); /* all well so far */
    if (rank == g_fx.culprit) {
        if (!strcmp(g_fx.mode, "fail")) return TW_ERR(TW_ERR_IO, "rank %d: injected failure", rank);
        if (!strcmp(g_fx.mode, "end")) return TW_OK; /* leaves without the next collective */
        if (!strcmp(g_fx.mode, "stall")) {
            usleep(1500 * 1000);
            return TW_OK;
        }
        if (!strcmp(g_fx.mode, "signal")) {
            /* interrupted while the others wait for it: they stop at once, not at the timeout */
            usleep(100 * 1000);
            raise(SIGTERM);
            usleep(1500 * 1000);
            return TW_ERR(TW_ERR_INTERRUPTED, "rank %d: interrupted", rank);
        }
    }
    double t0 = tw_now_s();
    tw_status st = tw_comm_allreduce(c, v, w, 64, TW_F32, TW_RED_SUM);
    g_fx.detected_s[rank] = tw_now_s() - t0;
    snprintf(g_fx.err[rank], sizeof g_fx.err[rank], "%s", st == TW_OK ? "" : tw_last_error());
    if (st == TW_OK) return TW_OK;
    /* after a failure the communicator stays refused */
    tw_status again = tw_comm_barrier(c);
    if (again == TW_OK)
        return TW_ERR(TW_ERR_INTERNAL, "rank %d: barrier after a failure passed", rank);
    return st;
}

static void run_failure(const char *mode, int culprit, int n, double timeout_s, tw_status want,
                        const char *want_text) {
    memset(&g_fx, 0, sizeof g_fx);
    g_fx.mode = mode;
    g_fx.culprit = culprit;
    tw_status rs[8];
    double t0 = tw_now_s();
    tw_status st = tw_comm_threads_run(n, timeout_s, failing, NULL, rs);
    double el = tw_now_s() - t0;
    cr_assert_neq(st, TW_OK, "%s: the run passed", mode);
    for (int r = 0; r < n; r++) {
        if (r == culprit) continue;
        cr_assert_eq(rs[r], want, "%s: rank %d status %d: %s", mode, r, (int)rs[r], g_fx.err[r]);
        cr_assert(strstr(g_fx.err[r], want_text), "%s: rank %d: %s", mode, r, g_fx.err[r]);
    }
    cr_assert_lt(el, 5.0, "%s: took %.2f s", mode, el);
}

Test(comm_threads, a_failing_rank_stops_the_others_at_once_naming_it) {
    run_failure("fail", 2, 4, 30.0, TW_ERR_IO, "rank 2 failed: ");
    for (int r = 0; r < 4; r++)
        if (r != 2)
            cr_assert(strstr(g_fx.err[r], "injected failure"), "rank %d: %s", r, g_fx.err[r]);
    for (int r = 0; r < 4; r++)
        if (r != 2) cr_assert_lt(g_fx.detected_s[r], 1.0, "rank %d: %.2f s", r, g_fx.detected_s[r]);
    cr_assert(strstr(tw_last_error(), "rank 2 failed"), "%s", tw_last_error());
}

Test(comm_threads, a_rank_that_ends_early_is_named) {
    run_failure("end", 1, 3, 30.0, TW_ERR_COMM, "rank thread(s) 1 ended without entering it");
}

Test(comm_threads, a_stalled_rank_times_out_naming_it) {
    run_failure("stall", 1, 3, 0.5, TW_ERR_TIMEOUT, "not in it: rank(s) 1");
}

Test(comm_threads, a_signal_stops_every_rank) {
    tw_interrupt_install();
    run_failure("signal", 0, 3, 30.0, TW_ERR_INTERRUPTED, "abandoned: SIGTERM on rank 0");
    for (int r = 1; r < 3; r++)
        cr_assert_lt(g_fx.detected_s[r], 1.0, "rank %d: %.2f s", r, g_fx.detected_s[r]);
    tw_interrupt_reset();
}
