/* The `tokwatt` subcommands. Each takes the arguments after its own name and returns the
 * process exit code (0 ok, 1 runtime failure, 2 usage error). Each lives in its own file
 * (bench/cmd_*.c, bench/bench_*.c); a missing one is reported as not built, never faked. */
#ifndef TW_CMDS_H
#define TW_CMDS_H

#define TW_EXIT_OK    0
#define TW_EXIT_FAIL  1
#define TW_EXIT_USAGE 2
#define TW_EXIT_CHECK 3 /* a verdict failed (fabric check, wrong results) */

typedef int (*tw_cmd_fn)(int argc, char **argv);

int tw_cmd_info(int argc, char **argv) __attribute__((weak));
int tw_cmd_run(int argc, char **argv) __attribute__((weak));
int tw_cmd_export(int argc, char **argv) __attribute__((weak));
int tw_cmd_project(int argc, char **argv) __attribute__((weak));
int tw_cmd_compare(int argc, char **argv) __attribute__((weak));
int tw_cmd_report(int argc, char **argv) __attribute__((weak));

/* `tokwatt bench NAME` */
int tw_bench_gemm(int argc, char **argv) __attribute__((weak));
int tw_bench_attention(int argc, char **argv) __attribute__((weak));
int tw_bench_membw(int argc, char **argv) __attribute__((weak));
int tw_bench_allreduce(int argc, char **argv) __attribute__((weak));
int tw_bench_allgather(int argc, char **argv) __attribute__((weak));
int tw_bench_reducescatter(int argc, char **argv) __attribute__((weak));
int tw_bench_broadcast(int argc, char **argv) __attribute__((weak));
int tw_bench_alltoall(int argc, char **argv) __attribute__((weak));
int tw_bench_cuda(int argc, char **argv) __attribute__((weak));

#endif
