/* `tokwatt bench gemm|attention --backend cuda`: the CUDA figures come from the CUDA benchmark
 * (bench/bench_cuda.c, also `tokwatt bench cuda`), which measures the copy ceiling and cuBLAS in
 * the same run. This file maps the CPU benchmarks' options onto it, refusing what it cannot
 * honour rather than measuring something else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_route.h"

/* Value of `--name` or `--name=value` in argv, or NULL. */
static const char *tw_route_get(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], name, n) && argv[i][n] == '=') return argv[i] + n + 1;
        if (!strcmp(argv[i], name) && i + 1 < argc) return argv[i + 1];
    }
    return NULL;
}

int tw_bench_route(const char *bench, int argc, char **argv, int *handled) {
    *handled = 0;
    const char *backend = tw_route_get(argc, argv, "--backend");
    if (!backend || !strcmp(backend, "cpu")) return TW_EXIT_OK;
    *handled = 1;
    if (strcmp(backend, "cuda") != 0) {
        fprintf(stderr, "tokwatt: error: option --backend: '%s' is not cpu or cuda\n", backend);
        return TW_EXIT_USAGE;
    }
    /* the options the CUDA benchmark understands, passed through */
    char *out[32];
    int n = 0;
    const char *pass[] = {"--reps", "--format", "--device", "--out"};
    for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        const char *v = tw_route_get(argc, argv, pass[i]);
        if (v) out[n++] = (char *)pass[i], out[n++] = (char *)v;
    }
    static char size[32];
    out[n++] = "--what";
    if (!strcmp(bench, "gemm")) {
        const char *m = tw_route_get(argc, argv, "--m"), *nn = tw_route_get(argc, argv, "--n"),
                   *k = tw_route_get(argc, argv, "--k");
        const char *sz = nn ? nn : "8192";
        if ((k && strcmp(k, sz)) || (m && strcmp(m, "1") && strcmp(m, sz))) {
            fprintf(stderr, "tokwatt: error: the CUDA GEMM benchmark takes square sizes "
                            "(--m N --n N --k N) or a decode GEMV (--m 1 --n N --k N)\n");
            return TW_EXIT_USAGE;
        }
        out[n++] = (m && !strcmp(m, "1")) ? "gemv" : "gemm";
        snprintf(size, sizeof size, "%s", sz);
    } else {
        out[n++] = tw_route_get(argc, argv, "--decode") || argv_has_flag(argc, argv, "--decode")
                       ? "decode"
                       : "prefill";
        const char *s = tw_route_get(argc, argv, "--seq");
        snprintf(size, sizeof size, "%s", s ? s : "4096");
    }
    out[n++] = "--size";
    out[n++] = size;
    tw_log("--backend cuda: running `tokwatt bench cuda --what %s --size %s` (cuBLAS and the copy "
           "ceiling measured in the same run)",
           out[n - 3], size);
    return tw_bench_cuda(n, out);
}

int argv_has_flag(int argc, char **argv, const char *flag) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}
