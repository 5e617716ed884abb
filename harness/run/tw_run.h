/* The run as a library: where every measurement of `tokwatt run` happens.
 *
 * A run is planned once (tw_run_open): every combination of the swept options (tensor-parallel
 * degree, weight dtype, batch, prompt, gen, outermost first), its memory plan, the engines the
 * combinations share, the repetitions and the warm-up; a combination that does not fit is refused
 * by name before anything runs, as is an output location that cannot take the result, a power
 * source or a projection input that cannot be read. The ceilings (memory bandwidth, compute
 * peak) are measured then unless given.
 *
 * tw_run_execute then runs the degrees (ranks 0..n-1 of the launch over a sub-communicator, n =
 * tw_run_degree_ranks: tp, or --ep when larger; the other ranks wait, sleeping), one engine per
 * (degree, dtype) when its combinations fit together, and for each combination a measurement: by
 * default tw_run_measure_repetitions (warm-up, measured repetitions of prefill + gen-1 decode steps
 * with power metering per phase, the logits-dump pass, per-rank figures, and for a model with
 * experts the experts block: the load of the measured repetitions, the experts a decode step
 * reached, the all-to-alls under --ep). Another kind of run (serving scenarios) passes its own
 * measurement to tw_run_execute_with and shares the rest: the plan, the engines, interruption, the
 * metrics (harness/tw_metrics.h), the energy block and the result rows
 * (harness/tw_result_schema.h).
 *
 * Interruption: SIGINT, SIGTERM and SIGHUP (tw_interrupt_install, on any rank; another rank's is
 * seen through the communicator) end the run between steps; what was measured is kept, the
 * repetition under way is dropped with its energy, and the result is marked incomplete with the
 * signal and the rank. A combination that fails after others were measured (one process) keeps
 * the earlier rows, marked incomplete.
 *
 * Nothing here prints: the caller gets progress (tw_run_progress) and messages (notes for the
 * log, errors that do not stop the run) through callbacks, on rank 0 only, and formats them. */
#ifndef TW_RUN_H
#define TW_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "tw_backend.h"
#include "tw_engine.h"
#include "tw_model.h"
#include "tw_published.h"
#include "tw_result_schema.h"
#include "tw_status.h"

#define TW_RUN_MAX_LIST 32

/* What to run: the command's options, checked for syntax by the caller. */
typedef struct {
    const char *model;   /* NAME or PATH */
    const char *backend; /* "cpu", "cuda" */
    const char *gemm;    /* CUDA GEMM, or NULL */
    int cuda_graph;
    const char *power; /* auto | nvml | rapl | assumed | none */
    double watts;      /* assumed watts per device (> 0), 0: not given */
    int sample_ms;
    const char *comm; /* auto | mpi | nccl | local */
    double comm_timeout_s;
    const tw_preset *preset; /* the scenario preset the run mirrors, or NULL */
    int batch[TW_RUN_MAX_LIST], nbatch;
    int prompt[TW_RUN_MAX_LIST], nprompt;
    int gen[TW_RUN_MAX_LIST], ngen;
    int tp[TW_RUN_MAX_LIST], ntp;
    tw_dtype dtype[4];
    int ndtype;
    tw_dtype kv_dtype; /* when kv_given; else each combination's weight dtype */
    int kv_given;
    int warmup, reps, threads, device;
    long seed;
    double membw_gbps, peak_gflops; /* given ceilings (0: measure where the backend can) */
    const char *out_dir;            /* the result's folder, checked before anything runs */
    const char *dump;               /* --dump-logits FILE.npy (one combination), or NULL */
    /* Mixtures of experts (doc/MOE.md). routing_skew >= 0: each MoE layer's router logit of
     * expert e gets -routing_skew * ln(rank_e), a seeded Zipf-like preference (0: none). ep:
     * expert-parallel degree (0 or 1: none): the experts split over ep ranks, each MoE layer's
     * tokens dispatched and combined with all-to-alls; it goes with one tp, 1 (attention
     * replicated) or ep (attention tensor-parallel over the same ranks). */
    double routing_skew;
    int ep;
    /* Serving scenarios (harness/serve/tw_serve_engine.h): kv_blocks > 0 builds paged engines
     * (a pool of kv_blocks blocks of kv_block_tokens positions, steps of max_step_tokens rows);
     * batch is then the most sequences per step and prompt + gen the longest request. */
    int64_t kv_blocks;
    int kv_block_tokens, max_step_tokens;
} tw_run_spec;

/* The ranks a degree runs on (0..n-1): tp, or the expert-parallel degree when larger. */
int tw_run_degree_ranks(const tw_run_spec *spec, int tp);
/* --ep goes with one --tp, 1 or the same N (TW_ERR_INVALID saying so). */
tw_status tw_run_spec_check_ep(const tw_run_spec *spec);

/* The options that depend on the backend: --backend names one the run knows, --power nvml,
 * --gemm and --cuda-graph go with a backend that has them (TW_ERR_INVALID saying why). */
tw_status tw_run_spec_check_backend(const tw_run_spec *spec);

/* One combination, planned. */
typedef struct {
    int tp; /* tensor-parallel degree; ranks 0..tw_run_degree_ranks - 1 run it */
    tw_dtype dtype, kv_dtype;
    int batch, prompt, gen;
    int group;        /* its engine group (tw_run_plan.groups) */
    int planned;      /* this rank takes part in its degree, and plan holds its needs */
    tw_mem_plan plan; /* what it needs on its own (per rank) */
} tw_run_combo;

/* The combinations of one (degree, dtype) that share an engine sized for the largest of them,
 * when they fit together (shared); otherwise each gets its own. */
typedef struct {
    int tp;
    tw_dtype dtype, kv_dtype;
    int max_batch, max_prompt, max_seq;
    int shared;
    int planned;
    tw_mem_plan plan; /* the shared engine's */
} tw_run_group;

typedef struct {
    int ncombo;
    tw_run_combo *combos; /* in the order they run: tp, dtype, batch, prompt, gen */
    int ngroups;
    tw_run_group *groups;
    int ndegrees;          /* --tp list as given */
    double work_tokens;    /* tokens of every warm-up and measured repetition (for the ETA) */
    uint64_t result_bytes; /* room the result file may need */
    uint64_t dump_bytes;   /* room the logits dump needs (0 without one) */
} tw_run_plan;

/* Plans every combination of spec for rank `rank` (it plans the degrees it takes part in:
 * rank < tw_run_degree_ranks) on model cfg and backend be. A combination that does not fit is
 * refused (TW_ERR_NOMEM naming it, its needs and what is available). Free with tw_run_plan_free. */
tw_status tw_run_plan_make(const tw_run_spec *spec, const tw_model_config *cfg, tw_backend *be,
                           int rank, tw_run_plan *out);
void tw_run_plan_free(tw_run_plan *p);
/* The room the outputs may need, known before planning: the result file (its fixed part, token
 * ids, a power trace) and the logits dump (steps x batch x vocab float32). */
void tw_run_output_bytes(const tw_run_spec *spec, const tw_model_config *cfg, uint64_t *result,
                         uint64_t *dump);
/* "dtype=bf16 kv=bf16 batch=1 prompt=128 gen=32", with "tp=2 " in front when with_tp (a --tp
 * sweep). */
void tw_run_combo_name(const tw_run_combo *c, int with_tp, char *buf, size_t n);
/* The same name from a result row's scenario. */
void tw_run_row_name(const tw_result_row *row, int with_tp, char *buf, size_t n);

/* ---- progress and messages ------------------------------------------------------------------- */
typedef enum {
    TW_RUN_PROGRESS_BUILD,   /* building an engine: done/total layers, what = the dtype */
    TW_RUN_PROGRESS_CEILING, /* measuring a ceiling: what = "memory bandwidth", "fp32 peak" */
    TW_RUN_PROGRESS_PREFILL, /* a repetition's prefill: what = "repetition 2/3", "warm-up 1/1" */
    TW_RUN_PROGRESS_DECODE,  /* its decode step done/total */
} tw_run_progress_kind;

typedef struct {
    tw_run_progress_kind kind;
    int milestone; /* worth showing whatever the rate limit (the first of its kind) */
    double eta_s;  /* < 0: unknown */
    const char *what;
    const char *row_name; /* the combination (PREFILL, DECODE) */
    int row, nrows;       /* 1-based */
    int done, total;
} tw_run_progress;

typedef enum {
    TW_RUN_NOTE,  /* a line for the log ("engine ready on cpu (4 threads) in 1.2 s") */
    TW_RUN_ERROR, /* an error that does not stop the run (a failed logits dump) */
} tw_run_message_kind;

typedef struct {
    void *ctx;
    void (*progress)(void *ctx, const tw_run_progress *p);
    void (*message)(void *ctx, tw_run_message_kind kind, const char *text);
} tw_run_callbacks;

/* ---- the run ----------------------------------------------------------------------------------
 */
typedef struct tw_run tw_run;

/* Loads the model; creates the communicator (under a launcher) and the backend; checks every
 * input (power source, projection inputs) and, on rank 0, the output folder and the logits
 * dump's room; records the provenance; plans every combination; measures the ceilings. *out is
 * set even when this fails (NULL only without memory), so that the caller can tw_run_abort a
 * launched job and tw_run_close. Bad arguments (a --tp the launch cannot hold) are
 * TW_ERR_INVALID. */
tw_status tw_run_open(const tw_run_spec *spec, const tw_run_callbacks *cb, tw_run **out);
int tw_run_rank(const tw_run *r);     /* 0 for one process */
int tw_run_launched(const tw_run *r); /* ranks were launched (mpirun) */
const tw_run_plan *tw_run_get_plan(const tw_run *r);
const tw_model_config *tw_run_model(const tw_run *r);
const tw_backend *tw_run_backend(const tw_run *r);
const char *tw_run_comm_kind(const tw_run *r); /* "mpi"...; NULL for one process */
/* The signal that stopped the run (0: none), caught here or reported by another rank, and a
 * text for it ("SIGTERM", or "SIGTERM on rank 1" when ranks are launched). */
int tw_run_stopped(tw_run *r);
void tw_run_signal_text(const tw_run *r, char *buf, size_t n);

/* How it ended. */
typedef struct {
    int measured;          /* rows with at least one complete repetition */
    int incomplete;        /* the result is marked incomplete (reason in the result) */
    int interrupted;       /* by a signal (tw_run_signal_text names it) */
    int dump_failed;       /* the logits dump was asked for and not written */
    char nothing_why[256]; /* measured == 0: why nothing was ("interrupted by SIGINT") */
} tw_run_outcome;

/* One combination's measurement on engine e: fills row (scenario, metrics, tokens, energy,
 * headline; tw_run_execute adds the plan); returns TW_OK with row->complete = 0 and a reason
 * when interrupted (a row with no complete repetition has metrics.repetitions_complete 0 and is
 * dropped). */
typedef tw_status (*tw_run_measure_fn)(tw_run *r, tw_engine *e, const tw_run_combo *k,
                                       tw_result_row *row, void *ctx);
tw_status tw_run_measure_repetitions(tw_run *r, tw_engine *e, const tw_run_combo *k,
                                     tw_result_row *row, void *ctx);

/* Runs every combination (tw_run_measure_repetitions for each) and, on rank 0, fills result
 * (other ranks: no rows). A failure is returned (the caller tw_run_aborts a launched job);
 * an interruption or a later combination's failure is not: the outcome says so. */
tw_status tw_run_execute(tw_run *r, tw_result *result, tw_run_outcome *oc);
tw_status tw_run_execute_with(tw_run *r, tw_run_measure_fn measure, void *ctx, tw_result *result,
                              tw_run_outcome *oc);

/* The headline of a row, and the watts per device it (and a table) quotes: the assumed figure,
 * or the measured e2e mean per power domain; NAN when there is none. */
double tw_run_row_watts_per_device(const tw_result_row *row);

/* Writes the result (rank 0): to the file --out named, or a new timestamped name in the folder
 * (a -2, -3 suffix when taken); when that fails, to a temporary file instead. */
typedef struct {
    char path[4200];           /* where it was to go */
    char written[4400];        /* where it went ("" when lost) */
    int renamed;               /* the name was taken: written has a suffix */
    int failed;                /* the destination failed */
    char error[1024];          /* why */
    char fallback_error[1024]; /* the fallback failed too: the result is lost */
} tw_run_saved;
tw_status tw_run_save(tw_run *r, const tw_result *result, const char *out_file,
                      tw_run_saved *saved);

/* The end of a launched run. After an interruption rank 0 (having written the result) ends the
 * other ranks, which wait for it (bounded) instead of exiting first; tw_run_abort ends every
 * rank now with `code` (a failure on any rank). Both are no-ops for one process, and
 * tw_run_finish returns when nothing needs ending. */
void tw_run_finish(tw_run *r, int exit_code);
void tw_run_abort(tw_run *r, int exit_code);
void tw_run_close(tw_run *r);

#endif
