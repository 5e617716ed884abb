/* Small shared utilities: clocks, statistics over repetitions, atomic file writes, host info. */
#ifndef TW_UTIL_H
#define TW_UTIL_H

#include <stddef.h>

#include "tw_status.h"

double tw_now_s(void); /* monotonic clock, seconds */

/* Summary of repeated measurements; percentiles by linear interpolation between order stats. */
typedef struct {
    int n;
    double median, mean, min, max, stddev, p50, p99;
} tw_stats;

tw_stats tw_stats_of(const double *v, int n); /* v is not modified */
double tw_percentile(const double *v, int n, double pct);

/* Writes `len` bytes to path via a temporary file in the same folder, then rename(2): a reader
 * never sees a half-written file. Creates missing parent folders. */
tw_status tw_write_file_atomic(const char *path, const void *data, size_t len);
tw_status tw_mkdirs(const char *path); /* mkdir -p */
/* Reads a whole file into a NUL-terminated malloc'd buffer (caller frees). */
tw_status tw_read_file(const char *path, char **out, size_t *len);

/* Host facts for provenance (static buffers). */
const char *tw_host_name(void);
const char *tw_cpu_model(void);
int tw_cpu_cores(void);
/* UTC time as 2026-11-25T16:00:00Z (iso) or 20261125T160000Z (compact, for file names). */
void tw_utc_iso(char *buf, size_t n, double unix_s);
void tw_utc_compact(char *buf, size_t n, double unix_s);
double tw_unix_now_s(void);

#endif
