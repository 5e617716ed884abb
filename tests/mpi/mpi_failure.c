/* MPI test: a peer that fails. Usage: mpi_failure exit|stall TIMEOUT_S
 *   exit   rank 1 calls _exit(1) before the second all-reduce;
 *   stall  rank 2 (rank 1 on 2 ranks) sleeps 4 x TIMEOUT_S before it.
 * The other ranks must return TW_ERR_TIMEOUT (or TW_ERR_COMM) from the all-reduce within
 * TIMEOUT_S plus the liveness grace (checked here: < 2 x TIMEOUT_S + 6 s), print
 * "tw-test: rank R detected the failure in T s: <message>" and tear the job down with
 * tw_comm_abort. Any other outcome prints "tw-test: FAIL ...". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/tw_comm.h"
#include "tw_util.h"

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "exit") && strcmp(argv[1], "stall"))) {
        fprintf(stderr, "usage: mpi_failure exit|stall TIMEOUT_S\n");
        return 2;
    }
    double timeout_s = atof(argv[2]);
    tw_comm *c = NULL;
    if (tw_comm_create("mpi", "cpu", timeout_s, &c) != TW_OK) {
        printf("tw-test: FAIL creating the communicator: %s\n", tw_last_error());
        return 1;
    }
    int rank = tw_comm_rank(c), size = tw_comm_size(c);
    int victim = !strcmp(argv[1], "exit") ? 1 : (size > 2 ? 2 : 1);
    float x[37];
    for (int i = 0; i < 37; i++) x[i] = (float)(rank + i);
    if (tw_comm_allreduce(c, x, x, 37, TW_F32, TW_RED_SUM) != TW_OK) {
        printf("tw-test: FAIL rank %d: first all-reduce: %s\n", rank, tw_last_error());
        tw_comm_abort(c, 1);
    }
    if (rank == victim) {
        fflush(stdout);
        if (!strcmp(argv[1], "exit")) _exit(1);
        sleep((unsigned)(4 * timeout_s + 1));
    }
    double t0 = tw_now_s();
    tw_status st = tw_comm_allreduce(c, x, x, 37, TW_F32, TW_RED_SUM);
    double dt = tw_now_s() - t0;
    if (rank == victim) {
        /* woke up after the others gave up: nothing to check */
        tw_comm_abort(c, 1);
    }
    if (st == TW_OK) {
        printf("tw-test: FAIL rank %d: the all-reduce completed although rank %d %s\n", rank,
               victim, argv[1]);
        tw_comm_abort(c, 1);
    }
    if (dt > 2 * timeout_s + 6)
        printf("tw-test: FAIL rank %d: the failure took %.1f s to surface (bound %g s)\n", rank, dt,
               timeout_s);
    printf("tw-test: rank %d detected the failure in %.2f s: %s [%s]\n", rank, dt, tw_last_error(),
           tw_status_name(st));
    tw_comm_abort(c, 3);
}
