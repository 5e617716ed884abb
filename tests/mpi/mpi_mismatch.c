/* MPI test: rank 1 has a different configuration string. Every rank must get TW_ERR_INVALID
 * whose message names rank 1 (and no other rank), and a matching configuration must pass.
 * Prints "tw-test: PASS" or "tw-test: FAIL ..."; exit status non-zero on failure. */
#include <stdio.h>
#include <string.h>

#include "comm/tw_comm.h"

int main(void) {
    tw_comm *c = NULL;
    if (tw_comm_create("mpi", "cpu", 10.0, &c) != TW_OK) {
        printf("tw-test: FAIL creating the communicator: %s\n", tw_last_error());
        return 1;
    }
    int rank = tw_comm_rank(c), fail = 0;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "model=synthetic;tp=%d;dtype=%s", tw_comm_size(c),
             rank == 1 ? "fp32" : "bf16");
    tw_status st = tw_comm_check_consistency(c, cfg, strlen(cfg), "run configuration");
    const char *msg = tw_last_error();
    if (st != TW_ERR_INVALID) {
        printf("tw-test: FAIL rank %d: a mismatched configuration gave %s\n", rank,
               tw_status_name(st));
        fail = 1;
    } else if (!strstr(msg, "rank(s) 1 disagree") || !strstr(msg, "run configuration")) {
        printf("tw-test: FAIL rank %d: the error does not name rank 1 alone: %s\n", rank, msg);
        fail = 1;
    } else {
        printf("tw-test: rank %d got: %s\n", rank, msg);
    }
    tw_clear_error();
    snprintf(cfg, sizeof cfg, "model=synthetic;tp=%d", tw_comm_size(c));
    if (tw_comm_check_consistency(c, cfg, strlen(cfg), "run configuration") != TW_OK) {
        printf("tw-test: FAIL rank %d: matching configurations rejected: %s\n", rank,
               tw_last_error());
        fail = 1;
    }
    if (!fail) printf("tw-test: PASS rank %d\n", rank);
    tw_comm_destroy(c);
    return fail;
}
