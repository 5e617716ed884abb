/* `tokwatt bench membw`: read / copy / triad memory bandwidth (GB/s, best of reps, the STREAM
 * convention for a ceiling) on buffers of at least twice the last-level cache; the read figure
 * (the best of several read kernels and sizes, harness/machine.c) is the yardstick that decode
 * efficiency is quoted against. */
#include "cpu/tw_cpu.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_machine.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MEMBW_USAGE                                                                                \
    "tokwatt bench membw [--threads T] [--bytes N] [--reps R] [--format md|json|csv]"

#define MEMBW_HELP                                                                                 \
    "usage: " MEMBW_USAGE "\n\n"                                                                   \
    "Memory bandwidth in GB/s (1e9 bytes/s), best of reps (STREAM convention):\n"                  \
    "  read   sum of a buffer: the best of several read kernels (widest vector loads, 1 to 16\n"   \
    "         streams per thread, with and without software prefetch) and buffer sizes\n"          \
    "  copy   b = a, counting bytes read + bytes written (STREAM convention)\n"                    \
    "  triad  a = b + s * c, counting 2 reads + 1 write (STREAM convention)\n"                     \
    "  --threads  0 (the default) means automatic: all cores\n"                                    \
    "  --bytes    total buffer size per kernel, K/M/G suffixes (default: auto, from\n"             \
    "             max(512M, 2 x last-level cache), two sizes)\n"                                   \
    "  --reps     repetitions (default 5)\n"

int tw_bench_membw(int argc, char **argv) {
    tw_args args;
    if (tw_args_init(&args, "tokwatt bench membw", MEMBW_USAGE, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&args, "--help") || tw_args_flag(&args, "-h")) {
        fputs(MEMBW_HELP, stdout);
        tw_args_free(&args);
        return TW_EXIT_OK;
    }
    int threads, reps;
    size_t bytes;
    tw_format fmt;
    tw_status st;
    if ((st = tw_args_int(&args, "--threads", 0, 0, 4096, &threads)) ||
        (st = tw_args_int(&args, "--reps", 5, 1, 1000, &reps)) ||
        (st = tw_args_bytes(&args, "--bytes", "0", &bytes)) || (st = tw_args_format(&args, &fmt)) ||
        (st = tw_args_finish(&args))) {
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    if (bytes != 0 && bytes < ((size_t)3 << 20)) {
        TW_ERR(TW_ERR_INVALID, "option --bytes: %zu is below 3M (use buffers far above the LLC)",
               bytes);
        tw_cli_fail(&args);
        tw_args_free(&args);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&args);
    tw_membw_result r;
    if (tw_machine_membw(threads, bytes, reps, &r) != TW_OK) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        return TW_EXIT_FAIL;
    }
    const char *simd = tw_simd_name(tw_cpu_simd_active());
    if (fmt == TW_FMT_JSON) {
        json_t *o = json_object();
        json_object_set_new(o, "bench", json_string("membw"));
        json_object_set_new(o, "read_gbps", json_real(r.read_gbps));
        json_object_set_new(o, "copy_gbps", json_real(r.copy_gbps));
        json_object_set_new(o, "triad_gbps", json_real(r.triad_gbps));
        json_object_set_new(o, "bytes", json_integer((json_int_t)r.bytes));
        json_object_set_new(o, "threads", json_integer(r.threads));
        json_object_set_new(o, "reps", json_integer(reps));
        json_object_set_new(o, "simd", json_string(simd));
        json_object_set_new(o, "read_method", json_string(r.read_method));
        json_object_set_new(o, "bytes_min", json_integer((json_int_t)r.bytes_min));
        json_object_set_new(o, "sizes", json_integer(r.sizes));
        json_object_set_new(o, "llc_bytes", json_integer((json_int_t)r.llc_bytes));
        json_object_set_new(o, "below_llc", json_boolean(r.below_llc));
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(o);
        return TW_EXIT_OK;
    }
    const char *head[] = {"kernel", "GB/s", "bytes", "threads", "reps", "simd"};
    tw_table tb;
    tw_table_init(&tb, 6, head);
    tw_table_addf(&tb, "read|%.2f|%zu|%d|%d|%s", r.read_gbps, r.bytes, r.threads, reps, simd);
    tw_table_addf(&tb, "copy|%.2f|%zu|%d|%d|%s", r.copy_gbps, r.bytes, r.threads, reps, simd);
    tw_table_addf(&tb, "triad|%.2f|%zu|%d|%d|%s", r.triad_gbps, r.bytes, r.threads, reps, simd);
    tw_table_print(&tb, fmt, stdout);
    tw_table_free(&tb);
    if (fmt == TW_FMT_MD) {
        printf("\nread: %s\n", r.read_method);
        if (r.below_llc)
            printf("WARNING: a buffer was smaller than twice the last-level cache (%.0f MiB): the "
                   "figures may include cache hits and are not a memory ceiling\n",
                   (double)r.llc_bytes / 1048576.0);
    } else if (r.below_llc) {
        fprintf(stderr, "tokwatt: warning: buffer below twice the last-level cache (%.0f MiB)\n",
                (double)r.llc_bytes / 1048576.0);
    }
    return TW_EXIT_OK;
}
