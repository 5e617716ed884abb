/* MPI test (run under mpirun -np 2 and -np 4): sub-communicators (tw_comm_sub) over ranks
 * 0..n-1 of the launch, for every n in [1, size]. Ranks < n get a communicator of n ranks in the
 * launch's order (checked by an allgather of launch ranks) whose all-reduces (fp32 and bf16 sum,
 * counts 7 (direct exchange) and 5003 (MPI_Iallreduce), in place and not) match a serial float64
 * sum of what ranks 0..n-1 contributed; ranks >= n get NULL and meanwhile wait in
 * tw_comm_idle_barrier on the launch communicator. For n = 1 the working rank sleeps past the
 * launch communicator's 2 s timeout first: the waiting ranks must not time out. A sub of a sub
 * works too; sizes 0 and size + 1 are refused naming the value; the launch communicator still
 * works at the end. Tolerances (relative norm): fp32 1e-5, bf16 1e-2 (one rounding).
 * Prints "tw-test: PASS" or "tw-test: FAIL ..." lines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/tw_comm.h"
#include "tw_test_util.h"

static int g_fail = 0;

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        g_fail++;                                                                                  \
        printf("tw-test: FAIL rank %d: ", wrank);                                                  \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

/* Input of launch rank r for one case, in [-1, 1), bf16-representable when bf16. */
static void gen(float *x, size_t n, int r, uint64_t seed, int bf16) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed * 1000003ull + (uint64_t)r * 7919ull + 29);
    tw_test_fill(&rng, x, n, 1.0f);
    if (bf16)
        for (size_t i = 0; i < n; i++) x[i] = tw_test_from_bf16(tw_test_to_bf16(x[i]));
}

/* All-reduce sums over sub-communicator s (whose ranks are launch ranks 0..n-1). */
static void check_allreduce(tw_comm *s, int wrank, int n, uint64_t seed) {
    const size_t counts[2] = {7, 5003};
    for (int ci = 0; ci < 2; ci++)
        for (int bf16 = 0; bf16 < 2; bf16++)
            for (int inplace = 0; inplace < 2; inplace++) {
                size_t cnt = counts[ci];
                float *mine = malloc(sizeof(float) * cnt), *other = malloc(sizeof(float) * cnt);
                float *got = malloc(sizeof(float) * cnt);
                double *ref = calloc(cnt, sizeof(double));
                uint16_t *in16 = malloc(2 * cnt), *out16 = malloc(2 * cnt);
                float *out32 = malloc(sizeof(float) * cnt);
                uint64_t sd = seed * 31 + (uint64_t)(ci * 4 + bf16 * 2 + inplace);
                for (int r = 0; r < n; r++) {
                    gen(other, cnt, r, sd, bf16);
                    for (size_t i = 0; i < cnt; i++) ref[i] += other[i];
                }
                gen(mine, cnt, wrank, sd, bf16);
                tw_status st;
                if (bf16) {
                    for (size_t i = 0; i < cnt; i++) {
                        in16[i] = tw_test_to_bf16(mine[i]);
                        out16[i] = 0x7fc0; /* NaN */
                    }
                    st = tw_comm_allreduce(s, in16, inplace ? in16 : out16, cnt, TW_BF16,
                                           TW_RED_SUM);
                    const uint16_t *res = inplace ? in16 : out16;
                    for (size_t i = 0; i < cnt; i++) got[i] = tw_test_from_bf16(res[i]);
                } else {
                    memcpy(out32, mine, sizeof(float) * cnt);
                    if (!inplace) tw_test_poison(out32, cnt);
                    st = tw_comm_allreduce(s, inplace ? out32 : mine, out32, cnt, TW_F32,
                                           TW_RED_SUM);
                    memcpy(got, out32, sizeof(float) * cnt);
                }
                double tol = bf16 ? 1e-2 : 1e-5;
                double err = st == TW_OK ? tw_test_rel_err(got, ref, cnt) : INFINITY;
                if (st != TW_OK)
                    FAILF("sub of %d: allreduce of %zu: %s", n, cnt, tw_last_error());
                else if (!(err <= tol))
                    FAILF("sub of %d: %s allreduce of %zu (%s): rel err %.3g > %.3g", n,
                          bf16 ? "bf16" : "fp32", cnt, inplace ? "in place" : "out of place", err,
                          tol);
                free(mine), free(other), free(got), free(ref), free(in16), free(out16);
                free(out32);
            }
}

/* The members are launch ranks 0..n-1 in order: gather each member's launch rank. */
static void check_members(tw_comm *s, int wrank, int n) {
    if (tw_comm_size(s) != n || tw_comm_rank(s) != wrank)
        FAILF("sub of %d: size %d rank %d (expected size %d rank %d)", n, tw_comm_size(s),
              tw_comm_rank(s), n, wrank);
    if (s->local_size < 1 || s->local_size > n || s->local_rank < 0 ||
        s->local_rank >= s->local_size)
        FAILF("sub of %d: node-local rank %d of %d", n, s->local_rank, s->local_size);
    if (strcmp(tw_comm_kind(s), "mpi")) FAILF("sub of %d: kind %s", n, tw_comm_kind(s));
    double *all = malloc(sizeof(double) * (size_t)n);
    for (int r = 0; r < n; r++) all[r] = NAN;
    if (tw_comm_allgather_f64(s, (double)wrank, all) != TW_OK)
        FAILF("sub of %d: allgather: %s", n, tw_last_error());
    else
        for (int r = 0; r < n; r++)
            if (all[r] != (double)r) FAILF("sub of %d: member %d is launch rank %g", n, r, all[r]);
    free(all);
}

int main(void) {
    tw_comm *w = NULL;
    int wrank = 0;
    /* a short timeout for the launch communicator: the idle waits below must outlast it */
    if (tw_comm_create("mpi", "cpu", 2.0, &w) != TW_OK) {
        printf("tw-test: FAIL: %s\n", tw_last_error());
        return 1;
    }
    wrank = tw_comm_rank(w);
    int size = tw_comm_size(w);
    for (int n = 1; n <= size; n++) {
        tw_comm *s = (tw_comm *)&g_fail; /* must be overwritten */
        if (tw_comm_sub(w, n, &s) != TW_OK) {
            FAILF("sub of %d: %s", n, tw_last_error());
            tw_comm_abort(w, 1);
        }
        if (wrank >= n) {
            if (s) FAILF("sub of %d: rank %d outside got a communicator", n, wrank);
        } else if (!s) {
            FAILF("sub of %d: rank %d inside got NULL", n, wrank);
            tw_comm_abort(w, 1);
        } else {
            check_members(s, wrank, n);
            check_allreduce(s, wrank, n, (uint64_t)n);
            if (n > 1) {
                /* a sub of the sub: ranks 0..n-2 */
                tw_comm *s2 = (tw_comm *)&g_fail;
                if (tw_comm_sub(s, n - 1, &s2) != TW_OK) {
                    FAILF("sub of sub %d: %s", n - 1, tw_last_error());
                } else if ((wrank < n - 1) != (s2 != NULL)) {
                    FAILF("sub of sub %d: handle %p on rank %d", n - 1, (void *)s2, wrank);
                } else if (s2) {
                    check_allreduce(s2, wrank, n - 1, (uint64_t)(100 + n));
                    tw_comm_destroy(s2);
                }
            }
            if (n == 1 && size > 1) sleep(3); /* past the launch communicator's 2 s timeout */
            tw_comm_destroy(s);
        }
        /* every rank: the waiting ones have waited through the members' work */
        if (tw_comm_idle_barrier(w, 60.0) != TW_OK) {
            FAILF("sub of %d: idle barrier: %s", n, tw_last_error());
            tw_comm_abort(w, 1);
        }
        if (w->timeout_s != 2.0) FAILF("idle barrier left the timeout at %g", w->timeout_s);
    }
    /* sizes outside [1, size] are refused (on every rank alike, before any collective) */
    tw_comm *bad = NULL;
    if (tw_comm_sub(w, size + 1, &bad) != TW_ERR_INVALID || bad)
        FAILF("sub of %d ranks was not refused", size + 1);
    else {
        char want[32];
        snprintf(want, sizeof want, "of %d ranks", size + 1);
        if (!strstr(tw_last_error(), want) || !strstr(tw_last_error(), "rank"))
            FAILF("refusal does not name the rank and the value: %s", tw_last_error());
    }
    if (tw_comm_sub(w, 0, &bad) != TW_ERR_INVALID || bad) FAILF("sub of 0 ranks was not refused");
    /* the launch communicator still works */
    check_allreduce(w, wrank, size, 999);
    double fails = 0;
    if (tw_comm_max_f64(w, (double)g_fail, &fails) != TW_OK) {
        printf("tw-test: FAIL rank %d: %s\n", wrank, tw_last_error());
        tw_comm_abort(w, 1);
    }
    if (wrank == 0) {
        if (fails == 0)
            printf("tw-test: PASS sub-communicators of 1..%d ranks out of %d\n", size, size);
        else
            printf("tw-test: FAIL %g failure(s) on some rank\n", fails);
    }
    tw_comm_destroy(w);
    return fails == 0 ? 0 : 1;
}
