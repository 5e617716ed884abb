/* Result files: a versioned JSON schema (doc/RESULTS.md), provenance common to every file, and
 * atomic writes (temporary name, then rename). */
#ifndef TW_RESULTS_H
#define TW_RESULTS_H

#include <jansson.h>

#include "tw_status.h"

#define TW_RESULT_SCHEMA_VERSION 1

/* A JSON number, or null for NaN and infinities (which JSON cannot carry). */
json_t *tw_jnum(double v);

/* Provenance: tool version, build commit, source tree commit and dirty flag (read at run time
 * when the source tree is present), host, CPU, cores, compiler and flags, backend, library
 * versions, start and end time (UTC). New reference; caller owns it. */
json_t *tw_provenance_json(const char *backend, double start_unix_s, double end_unix_s);

/* results/<UTC compact time>-<host>-<model>.json under dir (default "results"). */
void tw_result_default_path(char *out, size_t n, const char *dir, const char *model,
                            double start_unix_s);
/* Serialises root (indented) and writes it atomically. */
tw_status tw_result_write(const json_t *root, const char *path);
/* The newest *.json in dir by name order of the timestamped names; TW_ERR_IO when none. */
tw_status tw_result_newest(const char *dir, char *out, size_t n);

#endif
