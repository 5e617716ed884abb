/* `tokwatt report`: results side by side as a self-contained HTML page with SVG charts, and a
 * markdown summary (harness/tw_report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_report.h"

static const char *tw_report_usage =
    "tokwatt report RESULT... --out DIR [--title TEXT] [--print-md]\n"
    "  RESULT       tokwatt result files (kind run or sweep), e.g. results/*.json\n"
    "  --out DIR    writes DIR/report.html (no scripts, no network) and DIR/summary.md\n"
    "  --title TEXT page title (default \"tokwatt report\")\n"
    "  --print-md   also print the markdown summary on stdout";

#define TW_REPORT_MAX_FILES 256

int tw_cmd_report(int argc, char **argv) {
    tw_args a;
    if (tw_args_init(&a, "tokwatt report", tw_report_usage, argc, argv)) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_report_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    int rc = TW_EXIT_USAGE, nf = 0;
    const char *out, *title, *paths[TW_REPORT_MAX_FILES];
    tw_result_file *files = NULL;
    int print_md = tw_args_flag(&a, "--print-md");
    if (tw_args_str(&a, "--out", NULL, &out) ||
        tw_args_str(&a, "--title", "tokwatt report", &title))
        goto usage;
    for (const char *p; (p = tw_args_positional(&a));) {
        if (nf == TW_REPORT_MAX_FILES) {
            TW_ERR(TW_ERR_INVALID, "at most %d result files", TW_REPORT_MAX_FILES);
            goto usage;
        }
        paths[nf++] = p;
    }
    if (tw_args_finish(&a)) goto usage;
    if (!out || !nf) {
        TW_ERR(TW_ERR_INVALID, "%s", !out ? "--out DIR is required" : "no result files given");
        goto usage;
    }
    rc = TW_EXIT_FAIL;
    files = calloc((size_t)nf, sizeof *files);
    if (!files) goto fail;
    for (int i = 0; i < nf; i++)
        if (tw_result_file_load(paths[i], &files[i])) goto fail;
    if (tw_report_write(files, nf, title, out)) goto fail;
    if (print_md) {
        char *md = NULL;
        if (tw_report_markdown(files, nf, title, &md)) goto fail;
        fputs(md, stdout);
        free(md);
    }
    tw_log("tokwatt report: wrote %s/report.html and %s/summary.md (%d result file(s))", out, out,
           nf);
    rc = TW_EXIT_OK;
    goto out;
usage:
    tw_cli_fail(&a);
    goto out;
fail:
    fprintf(stderr, "tokwatt report: error: %s\n", tw_error_text());
out:
    if (files)
        for (int i = 0; i < nf; i++) tw_result_file_free(&files[i]);
    free(files);
    tw_args_free(&a);
    return rc;
}
