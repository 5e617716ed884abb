/* The requests of a serving run as they are issued and served: one record each
 * (tw_serve_record), and the times (and, for a real engine, the ids) of their output tokens in one
 * growing array. Shared by the simulation driver (serve_sim.c) and the engine's loop
 * (serve_engine.c). */
#ifndef TW_SERVE_STORE_H
#define TW_SERVE_STORE_H

#include <stdint.h>

#include "tw_loadgen.h"
#include "tw_serve_metrics.h"
#include "tw_status.h"

typedef struct {
    tw_serve_record *rec;
    int64_t *tok_off; /* [n] offset of each request's tokens in tok (and toks) */
    int *emitted;     /* [n] output tokens emitted so far */
    int64_t n, cap;
    double *tok; /* [n_tok] token times, NAN until emitted */
    int *toks;   /* [n_tok] token ids when keep_ids, else NULL */
    int64_t n_tok, cap_tok;
    int keep_ids; /* set before the first add */
} tw_serve_store;

/* Adds request q (q->index == s->n: issue order) with its lengths, nothing served yet. */
tw_status tw_serve_store_add(tw_serve_store *s, const tw_loadgen_request *q);
void tw_serve_store_free(tw_serve_store *s);

#endif
