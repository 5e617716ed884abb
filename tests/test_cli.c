/* The `tokwatt` command end to end: result files and their keys, sweeps, JSON on stdout, the
 * logits dump, bad input (exit code 2 and a message naming the argument) and refusal of a sweep
 * that does not fit. Signals, write failures and the other command-level checks are in
 * cmake/tests.cmake (tests/check_cmd.sh, tests/cmd/). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tw_npy.h"

static const char *tokwatt(void) {
    const char *p = getenv("TW_TOKWATT");
    cr_assert(p && *p, "TW_TOKWATT names the tokwatt binary (set by ctest)");
    return p;
}

/* Runs `tokwatt ARGS` with stdout to out_path and stderr to err_path; returns the exit code. */
static int run(const char *args, const char *out_path, const char *err_path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", tokwatt(), args, out_path, err_path);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char dir[256];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/tw-test-cli-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 120);

Test(cli, run_writes_result_with_required_keys_and_pure_json_stdout) {
    char args[1024], out[300], err[300], res[300];
    snprintf(res, sizeof res, "%s/r.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(args, sizeof args,
             "run --model tiny --batch 2 --prompt 9 --gen 4 --reps 2 --warmup 0 --format json "
             "--out %s --dump-logits %s/l.npy",
             res, dir);
    cr_assert_eq(run(args, out, err), 0, "stderr: %s", slurp(err));
    json_error_t je;
    json_t *stdout_json = json_loads(slurp(out), 0, &je);
    cr_assert(stdout_json, "stdout is only JSON: %s", je.text);
    json_t *r = json_load_file(res, 0, &je);
    cr_assert(r, "result file parses: %s", je.text);
    const char *paths[][2] = {{"metrics", "prefill_tokens_per_s"},
                              {"metrics", "decode_tokens_per_s"},
                              {"metrics", "ttft_s"},
                              {"metrics", "decode_bandwidth_fraction"},
                              {"scenario", "batch"},
                              {"provenance", "git_commit"},
                              {"provenance", "cpu_model"},
                              {"energy", "source"},
                              {"model", "hidden_size"}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        cr_assert(json_object_get(json_object_get(r, paths[i][0]), paths[i][1]), "missing %s.%s",
                  paths[i][0], paths[i][1]);
    cr_assert_eq(json_integer_value(json_object_get(r, "schema_version")), 1);
    json_t *tpot = json_object_get(json_object_get(r, "metrics"), "tpot_s");
    cr_assert(json_is_number(json_object_get(tpot, "p50")) &&
              json_is_number(json_object_get(tpot, "p99")));
    cr_assert(json_is_true(json_object_get(r, "complete")));
    json_t *gen = json_object_get(r, "generated_tokens");
    cr_assert_eq(json_array_size(gen), 2);
    cr_assert_eq(json_array_size(json_array_get(gen, 0)), 4);
    cr_assert_eq(json_array_size(json_array_get(json_object_get(r, "prompt_tokens"), 1)), 9);
    /* the dump: [steps, batch, vocab] float32, step 0 = after the prefill */
    char npy[300];
    snprintf(npy, sizeof npy, "%s/l.npy", dir);
    tw_npy_array arr;
    cr_assert_eq(tw_npy_read(npy, &arr), TW_OK, "%s", tw_last_error());
    cr_assert_eq(arr.ndim, 3);
    cr_assert(arr.shape[0] == 4 && arr.shape[1] == 2 && arr.shape[2] == 509);
    /* the argmax of each dumped step is the generated token */
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < 2; b++) {
            const float *l = arr.data + ((size_t)s * 2 + b) * 509;
            int best = 0;
            for (int i = 1; i < 509; i++)
                if (l[i] > l[best]) best = i;
            cr_assert_eq(best, json_integer_value(json_array_get(json_array_get(gen, b), s)));
        }
    tw_npy_free(&arr);
    json_decref(r);
    json_decref(stdout_json);
}

Test(cli, sweep_has_one_row_per_combination_in_stable_order) {
    char args[1024], out[300], err[300], res[300];
    snprintf(res, sizeof res, "%s/s.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(args, sizeof args,
             "run --model tiny --batch 1,2 --prompt 5,7,3 --gen 3 --dtype fp32,bf16 --reps 1 "
             "--warmup 0 --format csv --out %s",
             res);
    cr_assert_eq(run(args, out, err), 0, "stderr: %s", slurp(err));
    json_error_t je;
    json_t *r = json_load_file(res, 0, &je);
    cr_assert(r, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(r, "kind")), "sweep");
    json_t *rows = json_object_get(r, "rows");
    cr_assert_eq(json_array_size(rows), 12);
    const char *dts[2] = {"fp32", "bf16"};
    int bs[2] = {1, 2}, ps[3] = {5, 7, 3}, i = 0;
    for (int d = 0; d < 2; d++)
        for (int b = 0; b < 2; b++)
            for (int p = 0; p < 3; p++, i++) {
                json_t *sc = json_object_get(json_array_get(rows, i), "scenario");
                cr_assert_str_eq(json_string_value(json_object_get(sc, "dtype")), dts[d], "row %d",
                                 i);
                cr_assert_eq(json_integer_value(json_object_get(sc, "batch")), bs[b], "row %d", i);
                cr_assert_eq(json_integer_value(json_object_get(sc, "prompt")), ps[p], "row %d", i);
            }
    /* csv: a header and one line per combination (cmake/tests.cmake parses it) */
    int lines = 0;
    for (const char *c = slurp(out); *c; c++) lines += *c == '\n';
    cr_assert_eq(lines, 1 + 12);
    json_decref(r);
}

Test(cli, sweep_that_does_not_fit_is_refused_naming_the_combination) {
    char out[300], err[300], args[512];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(args, sizeof args, "run --model llama-3.1-405b --batch 1,2 --out %s", dir);
    int rc = run(args, out, err);
    cr_assert_neq(rc, 0);
    const char *e = slurp(err);
    cr_assert(strstr(e, "combination dtype=bf16 kv=bf16 batch=1 prompt=128 gen=32 does not fit"),
              "%s", e);
    cr_assert(strstr(e, "nothing was run"), "%s", e);
}

Test(cli, preset_sets_defaults_and_records_its_caveats) {
    char args[1024], out[300], err[300], res[300];
    snprintf(res, sizeof res, "%s/p.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    /* the preset's model is too large here: override it and the lengths, keep the rest */
    snprintf(args, sizeof args,
             "run --preset mlenergy-llama3.1-8b-h100-b64 --model tiny --batch 2 --prompt 5 "
             "--gen 3 --reps 1 --warmup 0 --out %s",
             res);
    cr_assert_eq(run(args, out, err), 0, "stderr: %s", slurp(err));
    cr_assert(strstr(slurp(out), "not a submission"), "caveats printed");
    json_error_t je;
    json_t *r = json_load_file(res, 0, &je);
    cr_assert(r, "%s", je.text);
    json_t *sc = json_object_get(r, "scenario");
    cr_assert_str_eq(json_string_value(json_object_get(sc, "preset")),
                     "mlenergy-llama3.1-8b-h100-b64");
    cr_assert_gt(json_array_size(json_object_get(sc, "caveats")), 0);
    cr_assert_eq(json_integer_value(json_object_get(sc, "batch")), 2);
    json_decref(r);
    snprintf(args, sizeof args, "run --preset no-such-preset --out %s", dir);
    cr_assert_eq(run(args, out, err), 2);
    cr_assert(strstr(slurp(err), "no-such-preset"), "%s", slurp(err));
}

Test(cli, bad_arguments_exit_2_naming_the_argument) {
    char out[300], err[300];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    struct {
        const char *args, *want;
    } cases[] = {
        {"run --batch 0", "--batch: 0 is out of range"},
        {"run --batch two", "--batch"},
        {"run --bogus 1", "unknown option '--bogus'"},
        {"run --dtype fp8", "unknown dtype 'fp8'"},
        {"run --format xml", "--format"},
        {"run --model /no/such/config.json", "/no/such/config.json"},
        {"bench nosuch", "unknown benchmark 'nosuch'"},
        {"frobnicate", "unknown command 'frobnicate'"},
        {"run --tp 1,2", "launch with mpirun -np 2 tokwatt run --tp 1,2"},
        {"run --tp 2,2", "--tp: 2 twice"},
        {"run --watts 300 --power rapl", "--watts"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, "%s --out %s", cases[i].args, dir);
        int rc = run(args, out, err);
        const char *e = slurp(err);
        cr_assert(rc == 2 || (rc == 1 && strstr(cases[i].args, "/no/such")), "'%s': exit %d",
                  cases[i].args, rc);
        cr_assert(strstr(e, cases[i].want), "'%s': stderr lacks '%s': %s", cases[i].args,
                  cases[i].want, e);
    }
}
