/* Routing of `tokwatt bench gemm|attention --backend cuda` to the CUDA benchmark. */
#ifndef TW_ROUTE_H
#define TW_ROUTE_H

/* Sets *handled when --backend names something other than cpu, and returns the exit code of the
 * benchmark that ran (or of the usage error). */
int tw_bench_route(const char *bench, int argc, char **argv, int *handled);
int argv_has_flag(int argc, char **argv, const char *flag);

#endif
