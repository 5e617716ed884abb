/* `tokwatt bench attention` end to end: JSON keys and sane values on a small checked run, usage
 * errors exit 2, --help exits 0. Runs the binary named by TW_TOKWATT (set by ctest). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness/bench/tw_bench.h"

static const char *tokwatt(void) {
    const char *p = getenv("TW_TOKWATT");
    cr_assert(p && *p, "TW_TOKWATT is not set (run through ctest)");
    return p;
}

/* Runs `tokwatt bench attention ARGS`, stdout into out (NUL-terminated); returns the exit code */
static int run(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s bench attention %s 2>/dev/null", tokwatt(), args);
    FILE *f = popen(cmd, "r");
    cr_assert(f, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_json(const char *args, const char *mode) {
    static char out[1 << 16];
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d for %s", rc, args);
    json_error_t e;
    json_t *root = json_loads(out, 0, &e);
    cr_assert(root, "stdout is not JSON (%s): %s", e.text, out);
    json_t *rows = json_object_get(root, "rows");
    cr_assert(json_is_array(rows) && json_array_size(rows) == 1, "one row: %s", out);
    json_t *j = json_array_get(rows, 0);
    const char *keys[] = {"gflops", "gbps", "median_s", "min_s", "check_rel_err"};
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(j, keys[i]);
        cr_assert(v && json_is_number(v), "key %s missing", keys[i]);
    }
    cr_assert_gt(json_number_value(json_object_get(j, "gflops")), 0.0);
    cr_assert_gt(json_number_value(json_object_get(j, "gbps")), 0.0);
    cr_assert_gt(json_number_value(json_object_get(j, "median_s")), 0.0);
    cr_assert_lt(json_number_value(json_object_get(j, "check_rel_err")), 1e-4);
    cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), mode);
    cr_assert(json_is_boolean(json_object_get(j, "exceeds_ceiling")), "exceeds_ceiling: %s", out);
    json_decref(root);
}

Test(bench_attention, json_prefill_and_decode) {
    check_json("--batch 2 --heads 6 --kv-heads 2 --head-dim 64 --seq 37 --reps 2 --warmup 0 "
               "--threads 1 --format json",
               "prefill");
    check_json("--batch 3 --heads 6 --kv-heads 1 --head-dim 80 --seq 300 --decode --kv-dtype bf16 "
               "--reps 2 --warmup 1 --format json",
               "decode");
}

Test(bench_attention, csv_has_header_and_one_row) {
    static char out[1 << 16];
    cr_assert_eq(
        run("--heads 4 --kv-heads 4 --head-dim 32 --seq 17 --reps 1 --format csv", out, sizeof out),
        0);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 2, "csv: %s", out);
    cr_assert(strstr(out, "GFLOP/s"), "csv header: %s", out);
}

Test(bench_attention, usage_errors) {
    static char out[1 << 16];
    cr_assert_eq(run("--heads 6 --kv-heads 4", out, sizeof out), 2);
    cr_assert_eq(run("--kv-dtype fp8", out, sizeof out), 2);
    cr_assert_eq(run("--seq 0", out, sizeof out), 2);
    cr_assert_eq(run("--bogus", out, sizeof out), 2);
    cr_assert_eq(run("--help", out, sizeof out), 0);
    cr_assert(strstr(out, "--kv-heads"), "help text: %s", out);
}

/* The flag every runner benchmark puts on a row: above 1 of a ceiling is flagged and warned of,
 * at or below it is not, and a missing ceiling (NaN) is not a breach. */
Test(bench_runner, ceiling_flag_and_warning) {
    tw_bench_report *r = calloc(1, sizeof *r);
    cr_assert(r);
    const double fracs[] = {1.2, 1.0, 0.5, NAN};
    for (int i = 0; i < 4; i++) {
        tw_bench_row *w = tw_bench_row_add(r);
        cr_assert(w);
        tw_bench_flag_ceiling(r, w, fracs[i], "read bandwidth");
        const tw_bench_cell *c = tw_bench_cell_get(w, "exceeds_ceiling");
        cr_assert(c, "row %d: no exceeds_ceiling cell", i);
        cr_assert_eq(c->i, fracs[i] > 1.0, "row %d: exceeds_ceiling %lld", i, c->i);
    }
    cr_assert_eq(r->nnotes, 1, "one warning (for 1.2), got %d", r->nnotes);
    cr_assert(strstr(r->note[0], "WARNING: 1.200 of the measured read bandwidth"), "%s",
              r->note[0]);
    free(r);
}
