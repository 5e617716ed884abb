/* tw_bench: the one benchmark runner (in the manner of nccl-tests' common harness).
 * A benchmark is a small table of functions (tw_bench_def): set up its buffers on a backend,
 * queue one repetition, check the result against a float64 reference, and turn the timing into
 * a report row. The runner owns what every benchmark needs and none should write again:
 *   1. setup, then one run and its check, before any timing: a benchmark whose check fails gets
 *      no figure (tw_bench_execute returns TW_ERR_CHECK and the report has no row);
 *   2. warm-up repetitions, untimed;
 *   3. optionally a cache flush between repetitions (outside the timed region);
 *   4. timing of each repetition: the backend's timer where it has one (CUDA events around the
 *      queued work), else the host clock around the call and a sync;
 *   5. statistics: median (the reported figure), min, max, mean and spread;
 *   6. the report: rows of typed cells that bench/ prints as md, json or csv.
 * Nothing here parses a command line or prints a table (bench/ does both). */
#ifndef TW_BENCH_H
#define TW_BENCH_H

#include <stddef.h>

#include "tw_backend.h"
#include "tw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the report: rows of typed cells, printed by bench/bench_print.c --------------------------
 * A cell has a JSON key and, when head is not "", a column in the md/csv table. */
typedef enum {
    TW_BCELL_STR = 0,
    TW_BCELL_INT,
    TW_BCELL_REAL,
    TW_BCELL_BOOL,
    TW_BCELL_NULL
} tw_bench_cell_kind;

#define TW_BENCH_MAX_CELLS 48
#define TW_BENCH_MAX_ROWS  16
#define TW_BENCH_MAX_NOTES 8

typedef struct {
    char key[40];  /* JSON key */
    char head[40]; /* table column ("": JSON only) */
    tw_bench_cell_kind kind;
    char str[256]; /* STR; the table text of every kind (formatted once, when set) */
    long long i;   /* INT, BOOL */
    double r;      /* REAL */
} tw_bench_cell;

typedef struct {
    tw_bench_cell cell[TW_BENCH_MAX_CELLS];
    int n;
} tw_bench_row;

typedef struct {
    char bench[32];   /* "gemm" */
    char backend[32]; /* the registry name of the backend it ran on */
    tw_bench_row row[TW_BENCH_MAX_ROWS];
    int nrows;
    char note[TW_BENCH_MAX_NOTES][384]; /* lines under the md table, "notes" in JSON */
    int nnotes;
} tw_bench_report;

/* A new row (NULL when the report is full: the cell setters accept NULL and do nothing). */
tw_bench_row *tw_bench_row_add(tw_bench_report *r);
/* Cells. head NULL or "": JSON only. tfmt: the printf format of the table text ("%.2f"). */
void tw_bench_str(tw_bench_row *w, const char *key, const char *head, const char *val);
void tw_bench_int(tw_bench_row *w, const char *key, const char *head, long long val);
void tw_bench_real(tw_bench_row *w, const char *key, const char *head, const char *tfmt,
                   double val);
void tw_bench_bool(tw_bench_row *w, const char *key, const char *head, int val);
void tw_bench_null(tw_bench_row *w, const char *key, const char *head);
/* The table text of a cell only (its JSON value stays), e.g. "0.83 of peak 1200 GFLOP/s". */
void tw_bench_text(tw_bench_row *w, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const tw_bench_cell *tw_bench_cell_get(const tw_bench_row *w, const char *key);
void tw_bench_note(tw_bench_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Row w's "exceeds_ceiling" cell, and a WARNING note when frac (of the measured ceiling named
 * by what, e.g. "read bandwidth") is above 1: the ceiling was measured too low. */
void tw_bench_flag_ceiling(tw_bench_report *r, tw_bench_row *w, double frac, const char *what);

/* ---- timing and statistics --------------------------------------------------------------------
 */
typedef struct {
    int warmup; /* untimed repetitions after the check */
    int reps;   /* timed repetitions (>= 1) */
    int flush;  /* flush caches between repetitions (outside the timed region) */
} tw_bench_params;

typedef struct {
    int reps;
    double median_s, min_s, max_s, mean_s;
    double spread;   /* (max - min) / median */
    char timer[48];  /* "backend timer (events)" or "host clock" */
    char flush[160]; /* what the flush did, or "none" */
} tw_bench_stats;

/* What a check found: rel_err is the relative norm error against the reference (INFINITY when a
 * value was not finite), tol the benchmark's tolerance; what says what was compared. */
typedef struct {
    double rel_err, tol;
    char what[192];
} tw_bench_check;

/* One repetition of queued work; rep counts from 0 over warm-up and timed repetitions (a
 * benchmark that rotates buffers uses it). */
typedef tw_status (*tw_bench_run_fn)(void *state, tw_backend *be, int rep);

/* Times fn: p->warmup untimed calls, then p->reps timed ones, each measured by the backend's
 * timer where it has one, else by the host clock around the call and a sync. */
tw_status tw_bench_time(tw_backend *be, tw_bench_run_fn fn, void *state, const tw_bench_params *p,
                        tw_bench_stats *out);

/* ---- a benchmark ----------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    /* allocates and fills its buffers on be (deterministic data, never zeros) */
    tw_status (*setup)(void *state, tw_backend *be);
    tw_bench_run_fn run;
    /* downloads the output of the last run and compares it against a float64 reference */
    tw_status (*check)(void *state, tw_backend *be, tw_bench_check *out);
    /* adds the benchmark's row(s) from the timing and the check */
    tw_status (*metrics)(void *state, tw_backend *be, const tw_bench_stats *t,
                         const tw_bench_check *c, tw_bench_report *r);
    void (*teardown)(void *state, tw_backend *be);
} tw_bench_def;

/* setup, run once, check (TW_ERR_CHECK naming the error and tolerance when the check fails: no
 * timing is done and no row added), time, metrics, teardown (always, also after a failed setup:
 * it must free what is there).
 * The check is stored in *check_out when not NULL (also on a failed check). */
tw_status tw_bench_execute(const tw_bench_def *def, void *state, tw_backend *be,
                           const tw_bench_params *p, tw_bench_report *r, tw_bench_check *check_out);

/* Relative norm error sqrt(sum (y - ref)^2 / sum ref^2) accumulated over calls; INFINITY as soon
 * as a y is not finite (NaN-poisoned outputs that a kernel left unwritten fail). */
typedef struct {
    double num, den;
    int bad;
} tw_bench_err;
static inline void tw_bench_err_add(tw_bench_err *e, double y, double ref) {
    double d = y - ref;
    if (!(y == y) || y - y != 0) e->bad = 1;
    e->num += d * d;
    e->den += ref * ref;
}
double tw_bench_err_value(const tw_bench_err *e);

/* ---- the benchmarks (harness/bench/gemm.c, attention.c)
 * ----------------------------------------------------- */
/* y[m, n] = x[m, k] . W[n, k]^T on any backend; for m <= 8 the weights rotate over copies that
 * total at least max(256 MiB, 2 x last-level cache) on the host, so each rep streams them. */
typedef struct {
    int m, n, k;
    tw_dtype w_dtype;
    size_t membw_bytes; /* host read-ceiling buffer for m <= 8 (0: auto) */
    int threads;        /* host threads of the ceiling measurement (0: all) */
} tw_bench_gemm_opts;

/* Runs the GEMM benchmark; with baseline, also the backend's baseline on the same shape as a
 * second row: OpenBLAS sgemm in a child process (bench/baseline_openblas) on the host, the
 * backend's own baseline implementation (get_option "gemm_baseline", cuBLAS on CUDA) on an
 * accelerator. Returns TW_ERR_CHECK when a check fails (no figure for it). */
tw_status tw_bench_run_gemm(tw_backend *be, const tw_bench_gemm_opts *o, const tw_bench_params *p,
                            int baseline, tw_bench_report *r);

typedef struct {
    int batch, heads, kv_heads, head_dim, seq, decode;
    tw_dtype kv_dtype;
    int threads; /* host threads of the ceiling measurement (0: all) */
} tw_bench_attn_opts;

/* Causal prefill of seq tokens per sequence, or one decode step against seq cached positions,
 * on any backend, checked on a slice against float64. */
tw_status tw_bench_run_attention(tw_backend *be, const tw_bench_attn_opts *o,
                                 const tw_bench_params *p, tw_bench_report *r);

/* The ceilings a benchmark row is quoted against, measured the same way as a run's: the host's by
 * harness/machine.c (read buffer bytes, 0: auto), an accelerator's by its ceilings slot. */
typedef struct {
    double read_gbps;   /* 0: not measured (read_method says why) */
    double peak_gflops; /* of the dtype asked for; 0: not measured */
    char read_method[256], peak_method[256];
} tw_bench_roof;
tw_status tw_bench_roofline(tw_backend *be, int threads, tw_dtype dt, int need_read,
                            size_t read_bytes, tw_bench_roof *out);

#ifdef __cplusplus
}
#endif
#endif
