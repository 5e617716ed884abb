/* Command-line parsing and output shared by every `tokwatt` subcommand.
 * Options are `--name value`, `--name=value` or short `-x value`; every argument must be
 * consumed, so a misspelt option is an error rather than silently ignored. Out-of-range values
 * are errors naming the option, never clamped. */
#ifndef TW_CLI_H
#define TW_CLI_H

#include <stdio.h>

#include "tw_status.h"
#include "tw_util.h" /* tw_error_text, tw_log callers print errors with it */

/* The seed of the synthetic weights when none is given: `tokwatt run` and `tokwatt export`
 * default to the same model. */
#define TW_DEFAULT_SEED 1

typedef struct {
    const char *cmd; /* "tokwatt bench gemm", for messages */
    const char *usage;
    int argc;
    char **argv;
    unsigned char *used;
    unsigned char *opt; /* argv[i] is an option name that was looked up (for "given twice") */
} tw_args;

tw_status tw_args_init(tw_args *a, const char *cmd, const char *usage, int argc, char **argv);
void tw_args_free(tw_args *a);
int tw_args_flag(tw_args *a, const char *name); /* present without a value */
tw_status tw_args_str(tw_args *a, const char *name, const char *def, const char **out);
tw_status tw_args_long(tw_args *a, const char *name, long def, long min, long max, long *out);
tw_status tw_args_int(tw_args *a, const char *name, int def, int min, int max, int *out);
tw_status tw_args_double(tw_args *a, const char *name, double def, double min, double max,
                         double *out);
/* Comma-separated integers ("1,8,64"); out has room for max_n. */
tw_status tw_args_int_list(tw_args *a, const char *name, const char *def, int min, int max,
                           int *out, int max_n, int *n);
/* Byte sizes with K/M/G suffixes (nccl-tests style, powers of 1024). */
tw_status tw_args_bytes(tw_args *a, const char *name, const char *def, size_t *out);
/* Next unconsumed positional argument, or NULL. */
const char *tw_args_positional(tw_args *a);
/* Errors if any argument was not consumed. */
tw_status tw_args_finish(tw_args *a);
/* Prints "tokwatt: <error>\n<usage hint>" to stderr (the error without source locations unless
 * --verbose / TW_VERBOSE=1, tw_error_text). */
void tw_cli_fail(const tw_args *a);

typedef enum { TW_FMT_MD = 0, TW_FMT_JSON = 1, TW_FMT_CSV = 2 } tw_format;
tw_status tw_args_format(tw_args *a, tw_format *out); /* --format md|json|csv, default md */

/* Logs go to stderr, always, so that stdout holds only the requested format. */
void tw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Silences tw_log (ranks other than 0 of a multi-rank run); errors still print. */
void tw_log_quiet(int quiet);

/* ---- tables: one header with units, rows of cells, printed as markdown or CSV ---------------- */
typedef struct {
    int ncols, nrows, cap;
    char **head;  /* [ncols] */
    char **cells; /* [nrows * ncols] */
} tw_table;

void tw_table_init(tw_table *t, int ncols, const char *const *head);
void tw_table_add(tw_table *t, const char *const *row); /* copies the strings */
void tw_table_addf(tw_table *t, const char *fmt, ...);  /* cells separated by '|' */
void tw_table_print(const tw_table *t, tw_format fmt, FILE *out);
void tw_table_free(tw_table *t);

#endif
