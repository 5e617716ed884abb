/* The serving block of a result file (issue 15): what a `tokwatt run --scenario ...` measured,
 * written by the run and read by compare, report and project through these two functions only
 * (the result schema's serving part; doc/RESULTS.md, doc/result.schema.json).
 *
 * Interface agreed between the engine side (continuous batching, the CLI: fills this struct) and
 * the result side (writer, reader, schema, project, report, compare). The struct owns its
 * arrays; tw_serve_result_free releases them. */
#ifndef TW_SERVE_RESULT_H
#define TW_SERVE_RESULT_H

#include <jansson.h>
#include <stdint.h>

#include "tw_serve_findrate.h"
#include "tw_serve_limits.h"
#include "tw_serve_metrics.h"
#include "tw_status.h"

/* One measured request as kept in the result (warm-up requests are kept too, flagged). */
typedef struct {
    int64_t id;
    int warmup;
    double arrival_s, admit_s, first_token_s, finish_s;
    int input_tokens, output_tokens;
    int preemptions;
} tw_serve_result_request;

typedef struct {
    /* what was asked */
    char scenario[16];        /* offline | server | interactive | concurrency */
    double rate_rps;          /* server, interactive: the offered Poisson rate; NAN otherwise */
    int concurrency;          /* concurrency: N requests in flight; 0 otherwise */
    uint64_t seed;            /* the load generator's seed */
    char lengths[128];        /* the length distribution's name (tw_loadgen_lengths.name) */
    char lengths_origin[512]; /* file it was read from, or "fixed"/"uniform" */
    int64_t requests_asked;   /* --requests; 0: none */
    double duration_asked_s;  /* --duration; 0: none */
    int64_t warmup_requests;  /* excluded from the figures */
    int step_token_budget;    /* tokens per engine step (chunked prefill) */
    int max_batch;            /* sequences per step */
    /* the paged KV cache */
    int kv_block_tokens, kv_blocks;
    int64_t kv_blocks_peak;   /* most blocks in use at once */
    int64_t kv_blocks_leaked; /* in use at the end; 0 in a correct run */
    /* the limits the constraint was judged against (summary.limits), and where they came from */
    char limits_source[400];
    /* what was measured: the aggregates of the measured window */
    tw_serve_summary summary;
    int64_t n_requests;
    tw_serve_result_request *requests; /* n_requests, issue order */
    /* --find-rate: the search and every trial; has_findrate 0 for a single-rate run */
    int has_findrate;
    tw_findrate_config findrate_config;
    tw_findrate_result findrate;
    /* a run interrupted by a signal keeps every finished request: complete 0, reason given */
    int complete;
    char incomplete_reason[128];
} tw_serve_result;

/* The "serving" object of a result file. NULL on allocation failure only. */
json_t *tw_serve_result_to_json(const tw_serve_result *r);
/* Reads a "serving" object (file names the result file in errors); r is zeroed first and owns
 * its arrays afterwards. Wrong types and impossible values are errors naming the key. */
tw_status tw_serve_result_from_json(const json_t *j, const char *file, tw_serve_result *r);
void tw_serve_result_free(tw_serve_result *r);

#endif
