/* tokwatt: the command. Dispatches to one subcommand per file; owns nothing else. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tw_cmds.h"
#include "tw_util.h"

#ifndef TW_VERSION
#define TW_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;
    tw_cmd_fn fn;
    const char *help;
} tw_cmd_entry;

static void tw_usage(FILE *out, const tw_cmd_entry *cmds, int n, const tw_cmd_entry *benches,
                     int nb) {
    fprintf(out, "tokwatt %s (%s): tokens per second, per joule, and megawatts\n\n", TW_VERSION,
            TW_GIT_COMMIT);
    fprintf(out, "usage: tokwatt [--verbose] <command> [options]   (tokwatt <command> --help for "
                 "options)\n");
    fprintf(out, "  --verbose   errors carry their source locations (file:line), as TW_VERBOSE=1\n"
                 "  exit codes: 0 ok, 1 runtime failure or incomplete run, 2 bad argument, 3 a "
                 "failed check or verdict\n\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "  %-10s %s%s\n", cmds[i].name, cmds[i].help,
                cmds[i].fn ? "" : " [not built]");
    fprintf(out, "\n  bench NAME, NAME one of:\n");
    for (int i = 0; i < nb; i++)
        fprintf(out, "    %-14s %s%s\n", benches[i].name, benches[i].help,
                benches[i].fn ? "" : " [not built]");
}

/* Every command's output ends here: a write error on stdout (a full disk, a closed pipe,
 * `> /dev/full`) must not pass for success. */
static int tw_finish_stdout(int rc) {
    int err = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !err) {
        err = 1;
        e = errno;
    }
    if (err) {
        fprintf(stderr, "tokwatt: error: writing standard output failed: %s\n", strerror(e));
        return rc ? rc : TW_EXIT_FAIL;
    }
    return rc;
}

static int tw_dispatch(int argc, char **argv);

int main(int argc, char **argv) {
    /* --verbose before the command (or anywhere): taken out before the command parses */
    int w = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose"))
            tw_set_verbose(1);
        else
            argv[w++] = argv[i];
    }
    argc = w;
    argv[argc] = NULL;
    return tw_finish_stdout(tw_dispatch(argc, argv));
}

static int tw_dispatch(int argc, char **argv) {
    const tw_cmd_entry cmds[] = {
        {"info", tw_cmd_info, "describe this machine: CPU, SIMD, bandwidth, peak, CUDA, sensors"},
        {"run", tw_cmd_run, "synthetic transformer inference: tokens/s, TTFT, TPOT, J/token"},
        {"bench", NULL, "micro-benchmarks (below)"},
        {"export", tw_cmd_export, "write the synthetic model as safetensors + config.json"},
        {"project", tw_cmd_project, "megawatts and devices to serve projected token demand"},
        {"compare", tw_cmd_compare, "measured results beside published ones"},
        {"report", tw_cmd_report, "HTML and markdown report of result files"},
    };
    const tw_cmd_entry benches[] = {
        {"gemm", tw_bench_gemm, "matrix multiply, GFLOP/s, ratio to OpenBLAS"},
        {"attention", tw_bench_attention, "prefill or decode attention"},
        {"membw", tw_bench_membw, "memory bandwidth (read, copy, triad)"},
        {"allreduce", tw_bench_allreduce, "collective bandwidth, nccl-tests columns"},
        {"allgather", tw_bench_allgather, ""},
        {"reducescatter", tw_bench_reducescatter, ""},
        {"broadcast", tw_bench_broadcast, ""},
        {"alltoall", tw_bench_alltoall, ""},
        {"cuda", tw_bench_cuda, "CUDA kernels vs cuBLAS and the copy ceiling (GPU)"},
    };
    int n = (int)(sizeof cmds / sizeof cmds[0]);
    int nb = (int)(sizeof benches / sizeof benches[0]);

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        tw_usage(argc < 2 ? stderr : stdout, cmds, n, benches, nb);
        return argc < 2 ? TW_EXIT_USAGE : TW_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tokwatt %s (%s)\n", TW_VERSION, TW_GIT_COMMIT);
        return TW_EXIT_OK;
    }
    const tw_cmd_entry *table = cmds;
    int tn = n, first = 2;
    const char *name = argv[1];
    if (!strcmp(name, "bench")) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "tokwatt: error: 'bench' needs a benchmark name\n");
            tw_usage(stderr, cmds, n, benches, nb);
            return TW_EXIT_USAGE;
        }
        table = benches;
        tn = nb;
        name = argv[2];
        first = 3;
    }
    for (int i = 0; i < tn; i++) {
        if (strcmp(table[i].name, name) != 0) continue;
        if (!table[i].fn) {
            fprintf(stderr, "tokwatt: error: '%s' is not available in this build\n", name);
            return TW_EXIT_FAIL;
        }
        return table[i].fn(argc - first, argv + first);
    }
    fprintf(stderr, "tokwatt: error: unknown %s '%s'\n", table == benches ? "benchmark" : "command",
            name);
    tw_usage(stderr, cmds, n, benches, nb);
    return TW_EXIT_USAGE;
}
