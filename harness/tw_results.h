/* Result files on disk: provenance common to every file, exclusive creation of result names,
 * the fallback when the destination fails, the --out check, CSV of result rows. The schema
 * itself (structs, writer, reader, versions) is harness/tw_result_schema.h (doc/RESULTS.md). */
#ifndef TW_RESULTS_H
#define TW_RESULTS_H

#include <jansson.h>
#include <stdio.h>

#include "tw_status.h"

/* A JSON number, or null for NaN and infinities (which JSON cannot carry). */
json_t *tw_jnum(double v);

/* Provenance: tool version, build commit, source tree commit and dirty flag (read at run time
 * when the source tree is present), host, CPU, cores, compiler and flags, backend, library
 * versions, start and end time (UTC). New reference; caller owns it. */
json_t *tw_provenance_json(const char *backend, double start_unix_s, double end_unix_s);

/* results/<UTC compact time>-<host>-<model>.json under dir (default "results"). */
void tw_result_default_path(char *out, size_t n, const char *dir, const char *model,
                            double start_unix_s);
/* Serialises root (indented) and writes it as a new file, never replacing one: path, or when
 * that name is taken "<stem>-2.json", "-3"... (tw_write_file_new). final receives the name. */
tw_status tw_result_write(const json_t *root, const char *path, char *final, size_t final_n);
/* Where the requested destination failed at the end of a run: a new file
 * $TMPDIR/tokwatt-<time>-<host>-<model>.json (TMPDIR default /tmp); final receives it. */
tw_status tw_result_write_fallback(const json_t *root, const char *model, char *final,
                                   size_t final_n);
/* What `--out` names, checked before anything runs: FILE.json (must not exist; *is_file = 1,
 * dir = its folder) or a folder (dir = it). Refused (TW_ERR_INVALID): an existing FILE.json,
 * an existing non-folder, and a new name with another extension ("res.txt"), which would
 * otherwise become a folder of that name. */
tw_status tw_result_check_out(const char *out, char *dir, size_t dir_n, int *is_file);

/* CSV with RFC 4180 quoting: one line per element of `rows` (JSON objects), one column per
 * leaf, named by its dotted path (scenario.batch, metrics.ttft_s, energy.e2e.j_per_token):
 * the JSON names carry the units, the cells hold plain numbers, true/false, text, or nothing
 * for null. Arrays of strings are one cell ("a; b"), arrays of objects are columns by index
 * (ranks.0.ttft_s); arrays of numbers (token ids, power traces) are left out. */
void tw_csv_rows(FILE *out, json_t *rows);
void tw_csv_cell(FILE *out, const char *text); /* one quoted-if-needed cell */
/* The newest *.json in dir by name order of the timestamped names; TW_ERR_IO when none. */
tw_status tw_result_newest(const char *dir, char *out, size_t n);

#endif
