/* `tokwatt bench gemm`: parsing and printing of the GEMM benchmark (harness/bench/gemm.c) on
 * any registered backend, through the one benchmark runner. */
#include "bench_print.h"
#include "tw_cmds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_USAGE                                                                                 \
    "tokwatt bench gemm [--m M] [--n N] [--k K] [--dtype fp32|bf16] [--baseline] "                 \
    "[--membw-bytes B] [--gemm IMPL] " TW_BENCH_COMMON_USAGE

#define GEMM_HELP                                                                                  \
    "usage: " GEMM_USAGE "\n\n"                                                                    \
    "Times y[m,n] = x[m,k] . W[n,k]^T (fp32 accumulation) on a backend's GEMM.\n"                  \
    "  --m, --n, --k   shape (default 2048 each; m=1 is decode, a GEMV)\n"                         \
    "  --dtype         weight type: fp32 or bf16 (default fp32)\n"                                 \
    "  --baseline      also time the baseline on the same shape, as a second row with the "        \
    "ratio:\n"                                                                                     \
    "                  on the host OpenBLAS cblas_sgemm (bench/baseline_openblas; for bf16 on "    \
    "the\n"                                                                                        \
    "                  fp32-converted weights), on an accelerator its baseline implementation\n"   \
    "                  (cuBLAS on CUDA)\n"                                                         \
    "  --membw-bytes   host buffer for the read-bandwidth roofline of m <= 8 (default: auto, at\n" \
    "                  least twice the last-level cache)\n"                                        \
    "  --gemm          the backend's GEMM implementation (CUDA: tokwatt, cublas, wgmma, "          \
    "...)\n" TW_BENCH_COMMON_HELP                                                                  \
    "The check: float64 on sampled rows, within 1e-4 (relative norm) where the activations stay\n" \
    "fp32, 1e-2 where the kernel rounds them to bf16 (the path column says which).\n"              \
    "For m <= 8 the weights rotate over copies totalling >= max(256 MiB, 2 x last-level cache),\n" \
    "so every rep streams them from memory as decode does, and the roofline is the measured\n"     \
    "read bandwidth; otherwise the measured compute peak of the weight dtype.\n"

typedef struct {
    const tw_bench_gemm_opts *o;
    int baseline;
} gemm_run_args;

static tw_status gemm_run(tw_backend *be, const void *arg, const tw_bench_params *p,
                          tw_bench_report *r) {
    const gemm_run_args *ga = arg;
    return tw_bench_run_gemm(be, ga->o, p, ga->baseline, r);
}

int tw_bench_gemm(int argc, char **argv) {
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench gemm", GEMM_USAGE, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        fputs(GEMM_HELP, stdout);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    tw_bench_common c;
    tw_bench_gemm_opts o;
    memset(&o, 0, sizeof o);
    const char *dts;
    const int baseline = tw_args_flag(&args, "--baseline");
    tw_status st;
    if ((st = tw_args_int(&args, "--m", 2048, 1, 1 << 20, &o.m)) ||
        (st = tw_args_int(&args, "--n", 2048, 1, 1 << 20, &o.n)) ||
        (st = tw_args_int(&args, "--k", 2048, 1, 1 << 20, &o.k)) ||
        (st = tw_args_str(&args, "--dtype", "fp32", &dts)) ||
        (st = tw_args_bytes(&args, "--membw-bytes", "0", &o.membw_bytes)) ||
        (st = tw_bench_common_parse(&args, &c)) || (st = tw_args_finish(&args))) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (o.membw_bytes != 0 && o.membw_bytes < ((size_t)3 << 20))
        st = TW_ERR(TW_ERR_INVALID, "option --membw-bytes: %zu is below 3M", o.membw_bytes);
    else if (tw_dtype_parse(dts, &o.w_dtype) != TW_OK || o.w_dtype == TW_I32)
        st = TW_ERR(TW_ERR_INVALID, "option --dtype: '%s' is not fp32 or bf16", dts);
    if (st != TW_OK) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&args);
    o.threads = c.threads;
    const gemm_run_args ga = {&o, baseline};
    return tw_bench_common_main(&c, gemm_run, &ga);
}
