/* Results that are never lost or overwritten, and inputs read safely (harness/tw_util.c,
 * harness/results.c): exclusive creation of result names with a suffix when taken, the checks of
 * an output folder before a run, the one JSON reader (non-regular files and size limit
 * refused), error messages without source locations, and RFC 4180 CSV of result rows. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/tw_results.h"
#include "harness/tw_util.h"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/tw-test-results-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(results, .init = setup, .fini = teardown);

static char *slurp(const char *path) {
    char *t = NULL;
    cr_assert_eq(tw_read_file(path, &t, NULL), TW_OK, "%s", tw_last_error());
    return t;
}

static int count_entries(const char *d) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", d);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

Test(results, same_name_three_times_gives_three_files_none_overwritten) {
    /* three runs of the same second and model: tw_result_default_path gives one name */
    char path[4096], got[3][4400];
    tw_result_default_path(path, sizeof path, dir, "tiny", 1764633600.25);
    const char *bodies[3] = {"{\"run\": 1}", "{\"run\": 2}", "{\"run\": 3}"};
    for (int i = 0; i < 3; i++) {
        json_t *j = json_loads(bodies[i], 0, NULL);
        cr_assert_eq(tw_result_write(j, path, got[i], sizeof got[i]), TW_OK, "%s", tw_last_error());
        json_decref(j);
    }
    cr_assert_str_eq(got[0], path);
    cr_assert(strstr(got[1], "-tiny-2.json"), "%s", got[1]);
    cr_assert(strstr(got[2], "-tiny-3.json"), "%s", got[2]);
    for (int i = 0; i < 3; i++) {
        char *t = slurp(got[i]);
        char want[32];
        snprintf(want, sizeof want, "\"run\": %d", i + 1);
        cr_assert(strstr(t, want), "%s holds %s", got[i], t);
        free(t);
    }
    cr_assert_eq(count_entries(dir), 3, "temporary files left behind");
}

Test(results, new_file_without_suffix_refuses_an_existing_name) {
    char path[256], got[4400];
    snprintf(path, sizeof path, "%s/r.json", dir);
    FILE *f = fopen(path, "w");
    fputs("precious", f);
    fclose(f);
    cr_assert_eq(tw_write_file_new(path, "new", 3, 0, got, sizeof got), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "already exists"), "%s", tw_last_error());
    char *t = slurp(path);
    cr_assert_str_eq(t, "precious");
    free(t);
    cr_assert_eq(count_entries(dir), 1, "temporary file left behind");
}

Test(results, out_option_names_a_file_or_a_folder) {
    char d[4096], p[256];
    int is_file;
    cr_assert_eq(tw_result_check_out("results", d, sizeof d, &is_file), TW_OK);
    cr_assert(!is_file);
    cr_assert_str_eq(d, "results");
    snprintf(p, sizeof p, "%s/sub/r.json", dir);
    cr_assert_eq(tw_result_check_out(p, d, sizeof d, &is_file), TW_OK);
    cr_assert(is_file);
    snprintf(p, sizeof p, "%s/sub", dir);
    cr_assert_str_eq(d, p);
    snprintf(p, sizeof p, "%s/res.txt", dir);
    cr_assert_eq(tw_result_check_out(p, d, sizeof d, &is_file), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "must end in .json"), "%s", tw_last_error());
    snprintf(p, sizeof p, "%s/v1.2/", dir); /* a new folder with a dot, said so */
    cr_assert_eq(tw_result_check_out(p, d, sizeof d, &is_file), TW_OK);
    snprintf(p, sizeof p, "%s/x.json", dir);
    FILE *f = fopen(p, "w");
    fclose(f);
    cr_assert_eq(tw_result_check_out(p, d, sizeof d, &is_file), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "never overwritten"), "%s", tw_last_error());
}

Test(results, output_folder_checks_say_why) {
    char d[256];
    /* created when missing, and found writable */
    snprintf(d, sizeof d, "%s/a/b/c", dir);
    cr_assert_eq(tw_check_output_dir(d, 1024, "the result"), TW_OK, "%s", tw_last_error());
    struct stat sb;
    cr_assert(stat(d, &sb) == 0 && S_ISDIR(sb.st_mode));
    cr_assert_eq(count_entries(d), 0, "the probe file is left behind");
    /* a file where the folder should be */
    snprintf(d, sizeof d, "%s/file", dir);
    FILE *f = fopen(d, "w");
    fclose(f);
    cr_assert_eq(tw_check_output_dir(d, 0, "the result"), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "not a folder"), "%s", tw_last_error());
    /* cannot be created: the reason, not "not enough disk space" */
    cr_assert_eq(tw_check_output_dir("/proc/tw-no-such/x", 0, "the export"), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "cannot write the export into /proc/tw-no-such/x"), "%s",
              tw_last_error());
    cr_assert(!strstr(tw_last_error(), "disk space"), "%s", tw_last_error());
    /* no room: refused, and the folders made for the check are removed again */
    snprintf(d, sizeof d, "%s/new1/new2", dir);
    cr_assert_eq(tw_check_output_dir(d, (uint64_t)1 << 62, "the logits dump"), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "not enough disk space"), "%s", tw_last_error());
    cr_assert(strstr(tw_last_error(), "the logits dump"), "%s", tw_last_error());
    snprintf(d, sizeof d, "%s/new1", dir);
    cr_assert(stat(d, &sb) != 0, "a folder created for a failed check remains");
}

Test(results, reader_refuses_what_is_not_a_regular_file_or_too_large) {
    char *t = NULL;
    cr_assert_eq(tw_read_file_max("/dev/zero", 1 << 20, &t, NULL), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "not a regular file (a character device)"), "%s",
              tw_last_error());
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo.json", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    json_t *j = NULL;
    cr_assert_eq(tw_json_load_file(fifo, &j), TW_ERR_IO); /* returns at once, no writer */
    cr_assert(strstr(tw_last_error(), "a FIFO"), "%s", tw_last_error());
    cr_assert_eq(tw_json_load_file(dir, &j), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "a folder"), "%s", tw_last_error());
    char big[256];
    snprintf(big, sizeof big, "%s/big.json", dir);
    FILE *f = fopen(big, "w");
    fclose(f);
    cr_assert_eq(truncate(big, (off_t)TW_JSON_MAX_BYTES + 1), 0);
    cr_assert_eq(tw_json_load_file(big, &j), TW_ERR_IO);
    cr_assert(strstr(tw_last_error(), "over the 256 MiB limit"), "%s", tw_last_error());
    /* a parse error names the file, line and column */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    f = fopen(bad, "w");
    fputs("{\n  \"a\": 1,\n  \"b\": [1, 2\n}\n", f);
    fclose(f);
    cr_assert_eq(tw_json_load_file(bad, &j), TW_ERR_PARSE);
    cr_assert(strstr(tw_last_error(), "bad.json:4:1: not valid JSON"), "%s", tw_last_error());
    /* duplicate keys are an error, not a silent choice of one */
    f = fopen(bad, "w");
    fputs("{\"a\": 1, \"a\": 2}", f);
    fclose(f);
    cr_assert_eq(tw_json_load_file(bad, &j), TW_ERR_PARSE);
    cr_assert_null(j);
}

Test(results, error_text_drops_source_locations_but_keeps_the_chain) {
    tw_set_verbose(0);
    TW_ERR(TW_ERR_IO, "cannot open x.json: No such file or directory");
    tw_error_ctx(TW_ERR_IO, "/abs/path/harness/model.c:198");
    tw_error_ctx(TW_ERR_IO, "loading model tiny");
    tw_error_ctx(TW_ERR_IO, "/abs/bench/cmd_run.c:12");
    cr_assert(strstr(tw_last_error(), "/abs/path/harness/model.c:198"));
    cr_assert_str_eq(tw_error_text(),
                     "loading model tiny: cannot open x.json: No such file or directory");
    tw_set_verbose(1);
    cr_assert_str_eq(tw_error_text(), tw_last_error());
    tw_set_verbose(0);
    /* a file name with a line number that is not source code stays */
    TW_ERR(TW_ERR_PARSE, "cfg.json:3:1: not valid JSON");
    cr_assert_str_eq(tw_error_text(), "cfg.json:3:1: not valid JSON");
}

Test(results, csv_rows_quote_text_and_keep_numbers_plain) {
    json_t *rows = json_loads("[{\"name\": \"a, \\\"b\\\"\", \"m\": {\"x\": 1.5, \"n\": 3}, "
                              "\"ok\": true, \"none\": null, \"ids\": [1, 2], "
                              "\"tags\": [\"p\", \"q\"], \"ranks\": [{\"t\": 0.25}]},"
                              " {\"name\": \"line\\nbreak\", \"m\": {\"x\": 2}, \"extra\": 7}]",
                              0, NULL);
    cr_assert(rows);
    char path[256];
    snprintf(path, sizeof path, "%s/out.csv", dir);
    FILE *f = fopen(path, "w");
    tw_csv_rows(f, rows);
    fclose(f);
    json_decref(rows);
    char *t = slurp(path);
    cr_assert_str_eq(t, "name,m.x,m.n,ok,none,tags,ranks.0.t,extra\n"
                        "\"a, \"\"b\"\"\",1.5,3,true,,p; q,0.25,\n"
                        "\"line\nbreak\",2,,,,,,7\n");
    free(t);
}

Test(results, interruption_is_recorded_once_with_its_signal) {
    tw_interrupt_reset();
    tw_interrupt_install();
    cr_assert_eq(tw_interrupt_signal(), 0);
    raise(SIGHUP);
    cr_assert_eq(tw_interrupt_signal(), SIGHUP);
    cr_assert_str_eq(tw_signal_name(SIGHUP), "SIGHUP");
    cr_assert_str_eq(tw_signal_name(SIGTERM), "SIGTERM");
    tw_interrupt_reset();
    cr_assert_eq(tw_interrupt_signal(), 0);
}
