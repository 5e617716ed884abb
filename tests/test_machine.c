/* Machine calibration (harness/machine.c) and the `tokwatt bench gemm` / `bench membw`
 * commands: argument checks, sane positive figures on small buffers, JSON on stdout only,
 * exit codes (0 ok, 2 usage). The command tests need TW_TOKWATT (set by ctest). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "tw_machine.h"

Test(machine, membw_small_buffer) {
    tw_membw_result r;
    cr_assert_eq(tw_machine_membw(2, (size_t)24 << 20, 2, &r), TW_OK, "%s", tw_last_error());
    cr_expect_gt(r.read_gbps, 0.1);
    cr_expect_gt(r.copy_gbps, 0.1);
    cr_expect_gt(r.triad_gbps, 0.1);
    cr_expect_lt(r.read_gbps, 10000.0);
    cr_expect_eq(r.threads, 2);
    cr_expect_leq(r.bytes, (size_t)24 << 20);
    cr_expect_gt(r.bytes, (size_t)20 << 20);
}

/* The run's read ceiling: the automatic sizes (at least twice the last-level cache), the fastest
 * read kernel only, no copy or triad, and the method says how it was chosen. */
Test(machine, read_ceiling_quick) {
    tw_membw_result r;
    cr_assert_eq(tw_machine_read_ceiling(2, 2, &r), TW_OK, "%s", tw_last_error());
    cr_expect_gt(r.read_gbps, 0.1);
    cr_expect_lt(r.read_gbps, 10000.0);
    cr_expect_eq(r.copy_gbps, 0.0);
    cr_expect_eq(r.triad_gbps, 0.0);
    cr_expect_eq(r.threads, 2);
    cr_expect_geq(r.bytes_min, 2 * r.llc_bytes);
    cr_expect(strstr(r.read_method, "each timed once"), "%s", r.read_method);
    cr_expect(strstr(r.read_method, "best of 2"), "%s", r.read_method);
    cr_expect_eq(tw_machine_read_ceiling(1, 0, &r), TW_ERR_INVALID);
}

Test(machine, membw_bad_arguments) {
    tw_membw_result r;
    cr_expect_eq(tw_machine_membw(1, (size_t)24 << 20, 0, &r), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "reps=0"));
    cr_expect_eq(tw_machine_membw(-1, (size_t)24 << 20, 1, &r), TW_ERR_INVALID);
    cr_expect_eq(tw_machine_membw(1, 1000, 1, &r), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "bytes=1000"));
    cr_expect_eq(tw_machine_membw(1, 0, 1, NULL), TW_ERR_INVALID);
}

Test(machine, fp32_peak) {
    double g = 0;
    cr_assert_eq(tw_machine_fp32_peak(1, &g), TW_OK, "%s", tw_last_error());
    cr_expect_gt(g, 0.1);
    cr_expect_lt(g, 1e5);
    cr_expect_eq(tw_machine_fp32_peak(-2, &g), TW_ERR_INVALID);
    cr_expect_eq(tw_machine_fp32_peak(1, NULL), TW_ERR_INVALID);
}

/* Runs a tokwatt command line, capturing stdout; returns the exit code. */
static int run_tokwatt(const char *args, char *out, size_t cap) {
    const char *exe = getenv("TW_TOKWATT");
    if (!exe) cr_skip_test("TW_TOKWATT is not set (run through ctest)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(bench_cli, gemm_json_small_shape) {
    static char out[1 << 16];
    int rc = run_tokwatt("bench gemm --m 37 --n 129 --k 67 --dtype bf16 --reps 3 --warmup 1 "
                         "--format json",
                         out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d, output: %s", rc, out);
    json_error_t err;
    json_t *root = json_loads(out, 0, &err);
    cr_assert(root, "stdout is not JSON (%s): %s", err.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(root, "bench")), "gemm");
    cr_assert_str_eq(json_string_value(json_object_get(root, "backend")), "cpu");
    json_t *rows = json_object_get(root, "rows");
    cr_assert(json_is_array(rows) && json_array_size(rows) == 1, "one row: %s", out);
    json_t *o = json_array_get(rows, 0);
    const char *keys[] = {"gflops", "gbps", "median_s", "roofline_fraction"};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(o, keys[i]);
        cr_assert(json_is_real(v), "key %s missing", keys[i]);
        cr_expect_gt(json_real_value(v), 0.0, "key %s", keys[i]);
    }
    /* 1e-4 where the activations stay fp32, 1e-2 where the path rounds them to bf16 */
    double tol = json_real_value(json_object_get(o, "check_tol"));
    int xbf16 = json_is_true(json_object_get(o, "activations_bf16"));
    cr_expect_eq(tol, xbf16 ? 1e-2 : 1e-4);
    cr_expect_leq(json_real_value(json_object_get(o, "check_rel_err")), tol);
    cr_expect(json_is_string(json_object_get(o, "path")));
    cr_expect_str_eq(json_string_value(json_object_get(o, "timer")), "host clock");
    json_decref(root);
}

Test(bench_cli, gemm_decode_portable) {
    static char out[1 << 16];
    int rc =
        run_tokwatt("bench gemm --m 1 --n 300 --k 257 --simd portable --reps 3 --membw-bytes 24M "
                    "--format csv",
                    out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d, output: %s", rc, out);
    cr_expect(strstr(out, "tokwatt,portable,fp32,1,300,257"), "csv: %s", out);
}

/* The baseline row and its notes of a `bench gemm --baseline` run with OpenBLAS told to have
 * detected `core` (TW_TEST_OPENBLAS_CORETYPE); skips when the baseline is not built. */
static json_t *gemm_baseline_as(const char *core, json_t **row) {
    static char out[1 << 16];
    char args[256];
    snprintf(args, sizeof args,
             "bench gemm --m 96 --n 80 --k 72 --dtype fp32 --reps 3 --warmup 1 --baseline "
             "--format json");
    setenv("TW_TEST_OPENBLAS_CORETYPE", core, 1);
    int rc = run_tokwatt(args, out, sizeof out);
    unsetenv("TW_TEST_OPENBLAS_CORETYPE");
    cr_assert_eq(rc, 0, "exit %d, output: %s", rc, out);
    json_error_t err;
    json_t *root = json_loads(out, 0, &err);
    cr_assert(root, "stdout is not JSON (%s): %s", err.text, out);
    json_t *rows = json_object_get(root, "rows");
    if (json_array_size(rows) < 2) {
        json_decref(root);
        cr_skip_test("no OpenBLAS baseline row (baseline_openblas not built?): %s", out);
    }
    *row = json_array_get(rows, 1);
    cr_assert_str_eq(json_string_value(json_object_get(*row, "impl")), "openblas sgemm");
    return root;
}

/* An OpenBLAS that does not recognise the CPU runs a generic core (0.3.21: Prescott on a 2024
 * Xeon, 6x slower): the baseline is then also run with the cores made for this CPU's features
 * forced, and the fastest kept, so no ratio is taken against a crippled yardstick. */
Test(bench_cli, gemm_baseline_unrecognised_cpu_forces_its_cores, .timeout = 120) {
    json_t *row = NULL, *root = gemm_baseline_as("Prescott", &row);
    cr_expect_str_eq(json_string_value(json_object_get(row, "core_detected")), "Prescott");
    const char *used = json_string_value(json_object_get(row, "core"));
    const char *forced = json_string_value(json_object_get(row, "core_forced"));
    cr_assert(used && forced);
    /* forced is the core used when it was not the detected one, and empty otherwise */
    cr_expect(strcmp(used, "Prescott") ? !strcasecmp(used, forced) : !*forced, "core %s forced %s",
              used, forced);
    const char *note = NULL;
    json_t *notes = json_object_get(root, "notes");
    for (size_t i = 0; i < json_array_size(notes); i++) {
        const char *t = json_string_value(json_array_get(notes, i));
        if (t && strstr(t, "forced with OPENBLAS_CORETYPE")) note = t;
    }
    cr_assert(note, "no note of the forced cores");
    cr_expect(strstr(note, "OpenBLAS detected core Prescott ("), "%s", note);
    cr_expect(strstr(note, "Haswell"), "AVX2 + FMA: Haswell's kernels tried: %s", note);
    /* the row is the fastest of the figures the note gives (detected and forced) */
    double best = 0, g;
    const char *q = strstr(note, "Prescott (");
    cr_assert(q && sscanf(q, "Prescott (%lf", &g) == 1, "%s", note);
    best = g;
    for (const char *c = strstr(note, "OPENBLAS_CORETYPE: "); c && (c = strchr(c, ' '));) {
        char name[32];
        if (sscanf(c, " %31[A-Za-z] %lf", name, &g) == 2 && g > best) best = g;
        c = strchr(c + 1, ',');
    }
    double row_g = json_real_value(json_object_get(row, "gflops"));
    cr_expect(fabs(row_g - best) <= 0.05 + 1e-3 * best, "row %.2f, best in the note %.2f: %s",
              row_g, best, note);
    json_decref(root);
}

/* A detected core that is one made for the CPU's features: no other core is run. */
Test(bench_cli, gemm_baseline_recognised_cpu_runs_once, .timeout = 120) {
    json_t *row = NULL, *root = gemm_baseline_as("Haswell", &row);
    cr_expect_str_eq(json_string_value(json_object_get(row, "core")), "Haswell");
    cr_expect_str_eq(json_string_value(json_object_get(row, "core_forced")), "");
    json_t *notes = json_object_get(root, "notes");
    for (size_t i = 0; i < json_array_size(notes); i++) {
        const char *t = json_string_value(json_array_get(notes, i));
        cr_expect(!t || !strstr(t, "forced with OPENBLAS_CORETYPE"), "%s", t);
    }
    json_decref(root);
}

Test(bench_cli, usage_errors_exit_2) {
    static char out[4096];
    cr_expect_eq(run_tokwatt("bench gemm --m 0", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench gemm --dtype fp16", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench gemm --bogus 1", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench gemm --simd sse", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench membw --bytes 1K", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench membw --reps 0", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench gemm --membw-bytes 1K", out, sizeof out), 2);
    cr_expect_eq(run_tokwatt("bench gemm --help", out, sizeof out), 0);
    cr_expect(strstr(out, "usage: tokwatt bench gemm"));
}

Test(bench_cli, membw_json) {
    static char out[1 << 14];
    int rc = run_tokwatt("bench membw --bytes 24M --reps 2 --format json", out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    json_t *o = json_loads(out, 0, NULL);
    cr_assert(o, "stdout is not JSON: %s", out);
    cr_expect_gt(json_real_value(json_object_get(o, "read_gbps")), 0.1);
    cr_expect_gt(json_real_value(json_object_get(o, "triad_gbps")), 0.1);
    json_decref(o);
}
