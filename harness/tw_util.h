/* Small shared utilities: clocks, statistics over repetitions, atomic file writes, host info. */
#ifndef TW_UTIL_H
#define TW_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tw_status.h"

double tw_now_s(void); /* monotonic clock, seconds */

/* Summary of repeated measurements; percentiles by linear interpolation between order stats. */
typedef struct {
    int n;
    double median, mean, min, max, stddev, p50, p99;
} tw_stats;

tw_stats tw_stats_of(const double *v, int n); /* v is not modified */
double tw_percentile(const double *v, int n, double pct);

/* The one atomic file commit. A file is written under a temporary name beside its destination
 * ("NAME.tmp.PID.N", created exclusively: O_EXCL), then flushed, synced and closed, and given its
 * name by tw_atomic_commit (rename(2): replaces) or tw_atomic_commit_new (never replaces: a hard
 * link, or an exclusively created reservation moved over, under NAME or NAME-2, -3 ...), or
 * removed by tw_atomic_abort. Creates missing parent folders. A reader never sees it half
 * written. After commit or abort the struct holds nothing to release. */
typedef struct {
    FILE *f; /* write here (NULL after commit or abort) */
    char path[4200];
    char tmp[4400];
} tw_atomic_file;
tw_status tw_atomic_open(tw_atomic_file *af, const char *path);
tw_status tw_atomic_commit(tw_atomic_file *af);
tw_status tw_atomic_commit_new(tw_atomic_file *af, int suffix, char *final, size_t final_n);
void tw_atomic_abort(tw_atomic_file *af); /* no-op when nothing is open */

/* Writes `len` bytes to path via a temporary file in the same folder (created exclusively),
 * then rename(2): a reader never sees a half-written file. Creates missing parent folders.
 * Replaces an existing file of that name (configs, reports, charts; never result files). */
tw_status tw_write_file_atomic(const char *path, const void *data, size_t len);
/* The same, but never replaces anything: the file appears under `path`, or when that name is
 * taken (and `suffix`) under "<stem>-2<ext>", "-3", ...: hard-linked from the finished
 * temporary file, so the name is created exclusively and is never half-written. final receives
 * the name used. Without `suffix` an existing file is an error (TW_ERR_IO naming it). */
tw_status tw_write_file_new(const char *path, const void *data, size_t len, int suffix, char *final,
                            size_t final_n);
tw_status tw_mkdirs(const char *path); /* mkdir -p */
/* Reads a whole file into a NUL-terminated malloc'd buffer (caller frees). Refuses what is not
 * a regular file (a FIFO would block, /dev/zero never ends) and files over max_bytes (0: no
 * limit), naming the file. */
tw_status tw_read_file(const char *path, char **out, size_t *len);
tw_status tw_read_file_max(const char *path, size_t max_bytes, char **out, size_t *len);

/* The one reader of JSON files (model configs, devices, growth curves, assumptions, published
 * figures, presets, fabrics, result files): a regular file of at most TW_JSON_MAX_BYTES,
 * parsed strictly; errors name the file, line and column. New reference in *out. */
#define TW_JSON_MAX_BYTES ((size_t)256 << 20)
tw_status tw_json_load_file(const char *path, json_t **out);

/* Checks, before anything is measured, that dir is a folder that exists or can be created
 * (it is created), that a file can be created in it, and that it has need_bytes free. `what`
 * names the output in messages ("the result", "the logits dump"). Errors say which of these
 * failed and why (TW_ERR_IO). A folder created here is removed again when a later check fails. */
tw_status tw_check_output_dir(const char *dir, uint64_t need_bytes, const char *what);
/* The folder part of a path ("." when it has none). */
void tw_path_dirname(const char *path, char *out, size_t n);

/* ---- interruption ------------------------------------------------------------------------ */
/* Installs handlers for SIGINT, SIGTERM and SIGHUP (what Ctrl-C, batch schedulers, `timeout`
 * and a closed terminal send). The first one caught is recorded, and one line says on stderr
 * that the run stops and keeps what it measured; a second signal ends the process at once
 * (the default action). */
void tw_interrupt_install(void);
int tw_interrupt_signal(void);          /* the first signal caught, 0 when none */
const char *tw_signal_name(int signum); /* "SIGTERM"; "signal N" for others */
void tw_interrupt_reset(void);          /* forgets a caught signal (tests) */

/* ---- messages for people ------------------------------------------------------------------ */
/* tw_last_error() without the "file.c:123: " source locations that each level adds, unless
 * verbose (tw_set_verbose, or TW_VERBOSE=1 in the environment): the chain of contexts stays. */
const char *tw_error_text(void);
void tw_set_verbose(int on);
int tw_verbose(void);

/* Host facts for provenance (static buffers). */
const char *tw_host_name(void);
const char *tw_cpu_model(void);
int tw_cpu_cores(void);
/* UTC time as 2026-11-25T16:00:00Z (iso) or 20261125T160000Z (compact, for file names). */
void tw_utc_iso(char *buf, size_t n, double unix_s);
void tw_utc_compact(char *buf, size_t n, double unix_s);
double tw_unix_now_s(void);

#endif
