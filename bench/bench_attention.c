/* `tokwatt bench attention`: parsing and printing of the attention benchmark
 * (harness/bench/attention.c) on any registered backend, through the one benchmark runner. */
#include "bench_print.h"
#include "tw_cmds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_USAGE                                                                                 \
    "tokwatt bench attention [--batch B] [--heads H] [--kv-heads G] [--head-dim D] [--seq S] "     \
    "[--decode] [--kv-dtype fp32|bf16] " TW_BENCH_COMMON_USAGE

#define ATTN_HELP                                                                                  \
    "usage: " ATTN_USAGE "\n\n"                                                                    \
    "  prefill (default): B sequences of S new tokens, causal, cache holding exactly them\n"       \
    "  --decode: one new token per sequence attending to S cached positions\n"                     \
    "  defaults: B 1, H 32, G 8 (--kv-heads), D 128, S 512, fp32 KV\n" TW_BENCH_COMMON_HELP        \
    "GFLOP/s counts 4*S*S/2*D*H*B (prefill) or 4*S*D*H*B (decode); GB/s is K+V cache bytes read\n" \
    "once per call (the whole traffic of decode, a lower bound for prefill). The check: a slice\n" \
    "of the output against naive float64 attention, within 1e-4 (relative norm).\n"

static tw_status attn_run(tw_backend *be, const void *o, const tw_bench_params *p,
                          tw_bench_report *r) {
    return tw_bench_run_attention(be, o, p, r);
}

int tw_bench_attention(int argc, char **argv) {
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench attention", ATTN_USAGE, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        fputs(ATTN_HELP, stdout);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    tw_bench_common c;
    tw_bench_attn_opts o;
    memset(&o, 0, sizeof o);
    const char *kvs;
    tw_status st;
    o.decode = tw_args_flag(&args, "--decode");
    if ((st = tw_args_int(&args, "--batch", 1, 1, 4096, &o.batch)) ||
        (st = tw_args_int(&args, "--heads", 32, 1, 1024, &o.heads)) ||
        (st = tw_args_int(&args, "--kv-heads", 8, 1, 1024, &o.kv_heads)) ||
        (st = tw_args_int(&args, "--head-dim", 128, 1, 1024, &o.head_dim)) ||
        (st = tw_args_int(&args, "--seq", 512, 1, 1 << 20, &o.seq)) ||
        (st = tw_args_str(&args, "--kv-dtype", "fp32", &kvs)) ||
        (st = tw_bench_common_parse(&args, &c)) || (st = tw_args_finish(&args))) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (o.heads % o.kv_heads)
        st = TW_ERR(TW_ERR_INVALID, "option --kv-heads: %d does not divide --heads %d", o.kv_heads,
                    o.heads);
    else if (tw_dtype_parse(kvs, &o.kv_dtype) != TW_OK || o.kv_dtype == TW_I32)
        st = TW_ERR(TW_ERR_INVALID, "option --kv-dtype: '%s' is not fp32 or bf16", kvs);
    if (st != TW_OK) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&args);
    o.threads = c.threads;
    tw_log("attention %s: B=%d H=%d G=%d D=%d S=%d kv %s on %s", o.decode ? "decode" : "prefill",
           o.batch, o.heads, o.kv_heads, o.head_dim, o.seq, tw_dtype_name(o.kv_dtype), c.backend);
    return tw_bench_common_main(&c, attn_run, &o);
}
