/* Argument parsing, logging and tables for the tokwatt subcommands. */
#include "tw_cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tw_progress.h"
#include "tw_results.h"
#include "tw_util.h"

tw_status tw_args_init(tw_args *a, const char *cmd, const char *usage, int argc, char **argv) {
    a->cmd = cmd;
    a->usage = usage;
    a->argc = argc;
    a->argv = argv;
    a->used = calloc((size_t)(argc > 0 ? argc : 1), 1);
    a->opt = calloc((size_t)(argc > 0 ? argc : 1), 1);
    if (!a->used || !a->opt) {
        tw_args_free(a);
        return TW_ERR(TW_ERR_NOMEM, "parsing arguments");
    }
    return TW_OK;
}

void tw_args_free(tw_args *a) {
    free(a->used);
    free(a->opt);
    a->used = NULL;
    a->opt = NULL;
}

/* Finds option `name` (given with its dashes); returns its index or -1. *val receives the value
 * of --name=value, or NULL. */
static int tw_args_find(tw_args *a, const char *name, const char **val) {
    size_t len = strlen(name);
    *val = NULL;
    for (int i = 0; i < a->argc; i++) {
        const char *s = a->argv[i];
        if (strncmp(s, name, len) != 0) continue;
        if (s[len] == '\0') {
            a->opt[i] = 1;
            return i;
        }
        if (s[len] == '=') {
            *val = s + len + 1;
            a->opt[i] = 1;
            return i;
        }
    }
    return -1;
}

int tw_args_flag(tw_args *a, const char *name) {
    const char *v;
    int i = tw_args_find(a, name, &v);
    if (i < 0) return 0;
    a->used[i] = 1;
    return 1;
}

tw_status tw_args_str(tw_args *a, const char *name, const char *def, const char **out) {
    const char *v;
    int i = tw_args_find(a, name, &v);
    *out = def;
    if (i < 0) return TW_OK;
    a->used[i] = 1;
    if (!v) {
        if (i + 1 >= a->argc) return TW_ERR(TW_ERR_INVALID, "option %s needs a value", name);
        v = a->argv[i + 1];
        a->used[i + 1] = 1;
    }
    *out = v;
    return TW_OK;
}

tw_status tw_args_long(tw_args *a, const char *name, long def, long min, long max, long *out) {
    const char *s;
    TW_TRY(tw_args_str(a, name, NULL, &s));
    *out = def;
    if (!s) return TW_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return TW_ERR(TW_ERR_INVALID, "option %s: '%s' is not an integer", name, s);
    if (errno == ERANGE || v < min || v > max)
        return TW_ERR(TW_ERR_INVALID, "option %s: %s is out of range [%ld, %ld] (too %s)", name, s,
                      min, max, (errno == ERANGE ? v > 0 : v > max) ? "large" : "small");
    *out = v;
    return TW_OK;
}

tw_status tw_args_int(tw_args *a, const char *name, int def, int min, int max, int *out) {
    long v = def;
    TW_TRY(tw_args_long(a, name, def, min, max, &v));
    *out = (int)v;
    return TW_OK;
}

tw_status tw_args_double(tw_args *a, const char *name, double def, double min, double max,
                         double *out) {
    const char *s;
    TW_TRY(tw_args_str(a, name, NULL, &s));
    *out = def;
    if (!s) return TW_OK;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || isnan(v))
        return TW_ERR(TW_ERR_INVALID, "option %s: '%s' is not a number", name, s);
    if ((errno == ERANGE && fabs(v) > 1) || !isfinite(v) || v < min || v > max)
        return TW_ERR(TW_ERR_INVALID, "option %s: %s is out of range [%g, %g] (too %s)", name, s,
                      min, max, v > max ? "large" : "small");
    *out = v;
    return TW_OK;
}

tw_status tw_args_int_list(tw_args *a, const char *name, const char *def, int min, int max,
                           int *out, int max_n, int *n) {
    const char *s;
    TW_TRY(tw_args_str(a, name, def, &s));
    *n = 0;
    if (!s) return TW_OK;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p)
            return TW_ERR(TW_ERR_INVALID,
                          "option %s: '%s' is not a comma-separated integer list (%s)", name, s,
                          *p == ',' || *p == '\0' ? "an empty element" : "not an integer");
        if (*end && *end != ',')
            return TW_ERR(TW_ERR_INVALID, "option %s: '%s' is not a comma-separated integer list",
                          name, s);
        if (errno == ERANGE || v < min || v > max)
            return TW_ERR(TW_ERR_INVALID, "option %s: %.*s is out of range [%d, %d] (too %s)", name,
                          (int)(end - p), p, min, max, v > max ? "large" : "small");
        if (*n >= max_n)
            return TW_ERR(TW_ERR_INVALID, "option %s: more than %d values", name, max_n);
        out[(*n)++] = (int)v;
        if (!*end) break;
        p = end + 1; /* after a comma another value must follow: "1," is refused above */
    }
    if (*n == 0) return TW_ERR(TW_ERR_INVALID, "option %s: empty list", name);
    return TW_OK;
}

tw_status tw_args_bytes(tw_args *a, const char *name, const char *def, size_t *out) {
    const char *s;
    TW_TRY(tw_args_str(a, name, def, &s));
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == s || *end || !(v >= 0) || v * mult > 1e15)
        return TW_ERR(TW_ERR_INVALID, "option %s: '%s' is not a byte size (e.g. 8, 64K, 1M, 2G)",
                      name, s);
    *out = (size_t)(v * mult);
    return TW_OK;
}

const char *tw_args_positional(tw_args *a) {
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i]) continue;
        if (a->argv[i][0] == '-' && a->argv[i][1] != '\0') continue;
        a->used[i] = 1;
        return a->argv[i];
    }
    return NULL;
}

/* Length of the option name in "--name" or "--name=value". */
static size_t tw_opt_name_len(const char *s) {
    const char *eq = strchr(s, '=');
    return eq ? (size_t)(eq - s) : strlen(s);
}

tw_status tw_args_finish(tw_args *a) {
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i]) continue;
        if (a->argv[i][0] == '-') {
            size_t l = tw_opt_name_len(a->argv[i]);
            for (int j = 0; j < a->argc; j++)
                if (a->opt[j] && tw_opt_name_len(a->argv[j]) == l &&
                    !strncmp(a->argv[j], a->argv[i], l))
                    return TW_ERR(TW_ERR_INVALID,
                                  "option %.*s is given more than once; give it once (lists "
                                  "are comma-separated: %.*s 1,8)",
                                  (int)l, a->argv[i], (int)l, a->argv[i]);
            return TW_ERR(TW_ERR_INVALID, "unknown option '%s' for %s", a->argv[i], a->cmd);
        }
        return TW_ERR(TW_ERR_INVALID, "unexpected argument '%s' for %s", a->argv[i], a->cmd);
    }
    return TW_OK;
}

void tw_cli_fail(const tw_args *a) {
    fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
    if (a && a->usage) {
        /* the synopsis only: the lines before the first option description ("  --x ...") */
        const char *u = a->usage, *end = u;
        while (*end) {
            const char *nl = strchr(end, '\n');
            const char *next = nl ? nl + 1 : end + strlen(end);
            if (!strncmp(next, "  ", 2) && strncmp(next, "       ", 7)) {
                end = nl ? nl : next;
                break;
            }
            end = next;
        }
        fprintf(stderr, "usage: %.*s\n", (int)(end - u), u);
    }
    if (a && a->cmd) fprintf(stderr, "try '%s --help'\n", a->cmd);
}

tw_status tw_args_format(tw_args *a, tw_format *out) {
    const char *s;
    TW_TRY(tw_args_str(a, "--format", "md", &s));
    if (!strcmp(s, "md") || !strcmp(s, "markdown"))
        *out = TW_FMT_MD;
    else if (!strcmp(s, "json"))
        *out = TW_FMT_JSON;
    else if (!strcmp(s, "csv"))
        *out = TW_FMT_CSV;
    else
        return TW_ERR(TW_ERR_INVALID, "option --format: '%s' is not md, json or csv", s);
    return TW_OK;
}

static int tw_log_is_quiet = 0;

void tw_log_quiet(int quiet) {
    tw_log_is_quiet = quiet;
}

void tw_log(const char *fmt, ...) {
    if (tw_log_is_quiet) return;
    tw_progress_clear(); /* a terminal's progress line is redrawn after the log line */
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static char *tw_strdup(const char *s) {
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s ? s : "", n);
    return d;
}

void tw_table_init(tw_table *t, int ncols, const char *const *head) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->head = calloc((size_t)ncols, sizeof(char *));
    for (int c = 0; c < ncols; c++) t->head[c] = tw_strdup(head[c]);
}

void tw_table_add(tw_table *t, const char *const *row) {
    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = realloc(t->cells, sizeof(char *) * (size_t)t->cap * (size_t)t->ncols);
    }
    for (int c = 0; c < t->ncols; c++)
        t->cells[(size_t)t->nrows * t->ncols + c] = tw_strdup(row[c]);
    t->nrows++;
}

void tw_table_addf(tw_table *t, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *row[64];
    int c = 0;
    char *p = buf;
    while (c < t->ncols && c < 64) {
        row[c++] = p;
        char *bar = strchr(p, '|');
        if (!bar) break;
        *bar = '\0';
        p = bar + 1;
    }
    while (c < t->ncols) row[c++] = "";
    tw_table_add(t, row);
}

void tw_table_print(const tw_table *t, tw_format fmt, FILE *out) {
    if (fmt == TW_FMT_CSV) {
        /* RFC 4180: a cell holding a comma, a quote or a line break is quoted */
        for (int c = 0; c < t->ncols; c++) {
            if (c) fputc(',', out);
            tw_csv_cell(out, t->head[c]);
        }
        fputc('\n', out);
        for (int r = 0; r < t->nrows; r++) {
            for (int c = 0; c < t->ncols; c++) {
                if (c) fputc(',', out);
                tw_csv_cell(out, t->cells[(size_t)r * t->ncols + c]);
            }
            fputc('\n', out);
        }
        return;
    }
    int *w = calloc((size_t)t->ncols, sizeof(int));
    for (int c = 0; c < t->ncols; c++) {
        w[c] = (int)strlen(t->head[c]);
        for (int r = 0; r < t->nrows; r++) {
            int l = (int)strlen(t->cells[(size_t)r * t->ncols + c]);
            if (l > w[c]) w[c] = l;
        }
    }
    for (int c = 0; c < t->ncols; c++) fprintf(out, "| %-*s ", w[c], t->head[c]);
    fprintf(out, "|\n");
    for (int c = 0; c < t->ncols; c++) {
        fputs("| ", out);
        for (int i = 0; i < w[c]; i++) fputc('-', out);
        fputc(' ', out);
    }
    fprintf(out, "|\n");
    /* numbers right-aligned, text left-aligned, as a reader scans them */
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[(size_t)r * t->ncols + c];
            char *end;
            strtod(cell, &end);
            int numeric = *cell && end != cell && (*end == '\0' || *end == ' ' || *end == '%');
            fprintf(out, numeric ? "| %*s " : "| %-*s ", w[c], cell);
        }
        fprintf(out, "|\n");
    }
    free(w);
}

void tw_table_free(tw_table *t) {
    for (int c = 0; c < t->ncols; c++) free(t->head[c]);
    for (int i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->head);
    free(t->cells);
    memset(t, 0, sizeof *t);
}
