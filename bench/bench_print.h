/* Printing of a benchmark report (harness/bench/tw_bench.h) and the options every runner-based
 * benchmark shares (--backend, --device, --threads, --reps, --warmup, --flush, --format). */
#ifndef TW_BENCH_PRINT_H
#define TW_BENCH_PRINT_H

#include <stdio.h>

#include "tw_bench.h"
#include "tw_cli.h"

/* md: one table (the columns with a head, in first-seen order over the rows) and the notes
 * under it; csv: the same table; json: {"bench", "backend", "rows": [{key: value}], "notes"}. */
void tw_bench_print(const tw_bench_report *r, tw_format fmt, FILE *out);

typedef struct {
    const char *backend; /* registry name */
    int device, threads;
    const char *simd; /* CPU backend option, or NULL */
    const char *gemm; /* backend option "gemm" (an implementation), or NULL */
    tw_bench_params p;
    tw_format fmt;
} tw_bench_common;

#define TW_BENCH_COMMON_USAGE                                                                      \
    "[--backend NAME] [--device N] [--threads T] [--simd LEVEL] [--reps R] [--warmup W] "          \
    "[--flush] [--format md|json|csv]"
#define TW_BENCH_COMMON_HELP                                                                       \
    "  --backend   a registered backend (tokwatt info lists them; default cpu)\n"                  \
    "  --device    accelerator ordinal (default 0)\n"                                              \
    "  --threads   CPU worker threads, 0 = all cores (default 0)\n"                                \
    "  --simd      CPU backend: force a lower SIMD level than the CPU's best (portable, avx2,\n"   \
    "              avx512, avx512bf16, amx, neon, neonbf16)\n"                                     \
    "  --reps      timed repetitions, the median is reported (default 10)\n"                       \
    "  --warmup    untimed repetitions after the check (default 2)\n"                              \
    "  --flush     flush the caches between repetitions (host: write 2 x LLC; device: a copy)\n"   \
    "  --format    md (default), json or csv on stdout; logs go to stderr\n"                       \
    "Every result is checked against float64 before it is timed: a failed check prints no\n"       \
    "figure and exits 3. Times are the backend's own timer where it has one (CUDA events),\n"      \
    "else the host clock around the call and a sync.\n"

tw_status tw_bench_common_parse(tw_args *a, tw_bench_common *c);
/* Creates the backend named by c (a name the registry does not know is TW_ERR_INVALID, a backend
 * not built or without a device TW_ERR_UNSUPPORTED) and applies --simd and --gemm. */
tw_status tw_bench_common_backend(const tw_bench_common *c, tw_backend **out);
/* The exit code of a benchmark's status: 0, 3 for a failed check, 1 otherwise (printed). */
int tw_bench_exit(tw_status st);

/* The tail every runner-based benchmark command shares: creates c's backend, runs
 * run(be, opts, &c->p, report), prints the rows measured (also when the run failed after some:
 * what was measured is never lost) and returns the exit code (2 for a backend the registry does
 * not know). */
typedef tw_status (*tw_bench_cmd_fn)(tw_backend *be, const void *opts, const tw_bench_params *p,
                                     tw_bench_report *r);
int tw_bench_common_main(const tw_bench_common *c, tw_bench_cmd_fn run, const void *opts);

#endif
