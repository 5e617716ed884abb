/* MPI test (mpirun -np 2): the mpi x threads host communicator (tw_comm_hybrid_create), what
 * bootstraps NCCL for a launch of P processes with G GPU threads each (nccl-tests -np P -g G).
 * With 3 threads per process: global rank = mpi rank x 3 + thread, size P x 3, node-local rank
 * likewise; host allgathers (doubles and a 1001-byte blob per rank, awkward sizes) arrive in
 * global rank order on every thread of every process; a configuration that differs on global
 * rank 4 is named by every rank; barriers; the hosts; data collectives and sub-communicators
 * refused, saying why. Prints "tw-test: PASS" or "tw-test: FAIL ..." lines. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/tw_comm.h"

enum { G = 3, BLOB = 1001 };
static tw_comm *g_mpi;
static atomic_int g_fail, g_pass;

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        atomic_fetch_add(&g_fail, 1);                                                              \
        printf("tw-test: FAIL process %d thread %d: ", tw_comm_rank(g_mpi), t);                    \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static unsigned char blob_byte(int rank, int i) {
    return (unsigned char)(rank * 31 + i * 7 + 1);
}

static tw_status one_thread(tw_comm *h, void *arg) {
    (void)arg;
    int t = tw_comm_rank(h), P = tw_comm_size(g_mpi), p = tw_comm_rank(g_mpi);
    tw_comm *c = NULL;
    TW_TRY(tw_comm_hybrid_create(g_mpi, h, &c));
    int rank = tw_comm_rank(c), n = tw_comm_size(c);
    if (rank != p * G + t || n != P * G || tw_comm_local_rank(c) != g_mpi->local_rank * G + t ||
        c->local_size != g_mpi->local_size * G || strcmp(tw_comm_kind(c), "mpi+threads"))
        FAILF("numbering: rank %d of %d, local %d of %d, kind %s", rank, n, tw_comm_local_rank(c),
              c->local_size, tw_comm_kind(c));
    for (int round = 0; round < 3; round++) {
        double all[64];
        TW_TRY(tw_comm_allgather_f64(c, rank * 1.5 + round, all));
        for (int r = 0; r < n; r++)
            if (all[r] != r * 1.5 + round) FAILF("allgather_f64[%d] = %g", r, all[r]);
        unsigned char mine[BLOB], *every = malloc((size_t)BLOB * (size_t)n);
        for (int i = 0; i < BLOB; i++) mine[i] = blob_byte(rank, i);
        memset(every, 0xEE, (size_t)BLOB * (size_t)n);
        TW_TRY(c->ops->host_allgather(c, mine, every, BLOB));
        for (int r = 0; r < n; r++)
            for (int i = 0; i < BLOB; i++)
                if (every[(size_t)r * BLOB + i] != blob_byte(r, i)) {
                    FAILF("blob of rank %d byte %d", r, i);
                    r = n;
                    break;
                }
        free(every);
        TW_TRY(tw_comm_barrier(c));
    }
    char cfg[32];
    snprintf(cfg, sizeof cfg, "tp=%d", rank == 4 ? 7 : 8);
    tw_status st = tw_comm_check_consistency(c, cfg, strlen(cfg), "configuration");
    if (st != TW_ERR_INVALID || !strstr(tw_last_error(), "rank(s) 4 disagree"))
        FAILF("a mismatch on rank 4 was not named: %s", tw_last_error());
    tw_comm_hosts hs;
    TW_TRY(tw_comm_gather_hosts(c, &hs));
    if (hs.size != n || hs.n_hosts != 1 || hs.max_per_host != n)
        FAILF("hosts: %d ranks on %d hosts, %d per host", hs.size, hs.n_hosts, hs.max_per_host);
    tw_comm_free_hosts(&hs);
    float x = 1, y = 0;
    if (tw_comm_allreduce(c, &x, &y, 1, TW_F32, TW_RED_SUM) != TW_ERR_UNSUPPORTED ||
        !strstr(tw_last_error(), "no allreduce"))
        FAILF("allreduce not refused: %s", tw_last_error());
    tw_comm *s = NULL;
    if (tw_comm_sub(c, 2, &s) != TW_ERR_UNSUPPORTED || s) FAILF("sub not refused");
    tw_clear_error();
    TW_TRY(tw_comm_barrier(c));
    tw_comm_destroy(c);
    atomic_fetch_add(&g_pass, 1);
    return TW_OK;
}

int main(void) {
    if (tw_comm_create("mpi", "cpu", 20.0, &g_mpi) != TW_OK) {
        printf("tw-test: FAIL creating the mpi communicator: %s\n", tw_last_error());
        return 1;
    }
    tw_status st = tw_comm_threads_run(G, 20.0, one_thread, NULL, NULL);
    int p = tw_comm_rank(g_mpi);
    if (st != TW_OK) {
        printf("tw-test: FAIL process %d: %s\n", p, tw_last_error());
        tw_comm_abort(g_mpi, 1);
    }
    if (atomic_load(&g_fail) == 0 && atomic_load(&g_pass) == G)
        printf("tw-test: PASS process %d of %d: %d threads, global ranks %d..%d\n", p,
               tw_comm_size(g_mpi), G, p * G, p * G + G - 1);
    int rc = atomic_load(&g_fail) ? 1 : 0;
    tw_comm_destroy(g_mpi);
    return rc;
}
