/* The serving block of a result file: see tw_serve_result.h. */
#include "tw_serve_result.h"

#include <stdlib.h>
#include <string.h>

void tw_serve_result_free(tw_serve_result *r) {
    if (!r) return;
    free(r->requests);
    r->requests = NULL;
    r->n_requests = 0;
}
