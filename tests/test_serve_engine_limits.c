/* One source for the MLPerf latency limits: configs/serving/mlperf-limits.json (transcribed from
 * LoadGen's mlperf.conf with the lines quoted). Every shipped preset's "latency_limits" must agree
 * with it (tw_serve_limits_check_preset), an offline preset must be unbounded, and a preset whose
 * figures are altered is refused naming both. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <string.h>

#include "serve/tw_serve_engine_run.h"
#include "tw_config.h"
#include "tw_published.h"

Test(serve_engine_limits, every_preset_agrees_with_the_limits_file) {
    char dir[4096];
    cr_assert_eq(tw_config_path("scenarios", dir, sizeof dir), TW_OK, "%s", tw_last_error());
    DIR *d = opendir(dir);
    cr_assert(d, "%s cannot be read", dir);
    int checked = 0, bounded = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), de->d_name);
        tw_preset p;
        cr_assert_eq(tw_preset_load(name, &p), TW_OK, "%s: %s", name, tw_last_error());
        if (!p.limits.given) continue;
        const char *scen = strstr(name, "-interactive-") ? "interactive"
                           : strstr(name, "-server-")    ? "server"
                                                         : "offline";
        cr_expect_eq(tw_serve_limits_check_preset(&p, scen), TW_OK, "%s: %s", name,
                     tw_last_error());
        checked++;
        bounded += p.limits.bounded;
    }
    closedir(d);
    cr_expect(checked >= 5 && bounded >= 3, "%d presets with limits, %d bounded", checked, bounded);
}

Test(serve_engine_limits, an_altered_preset_is_refused) {
    tw_preset p;
    cr_assert_eq(tw_preset_load("mlperf-llama3.1-8b-server-h200x8", &p), TW_OK, "%s",
                 tw_last_error());
    cr_assert(p.limits.bounded);
    cr_assert_eq(tw_serve_limits_check_preset(&p, "server"), TW_OK, "%s", tw_last_error());
    p.limits.tpot_ms += 1;
    cr_expect_eq(tw_serve_limits_check_preset(&p, "server"), TW_ERR_INVALID);
    cr_expect(strstr(tw_last_error(), "mlperf-limits.json"), "%s", tw_last_error());
    p.limits.tpot_ms -= 1;
    /* the server figures are not the interactive ones */
    cr_expect_eq(tw_serve_limits_check_preset(&p, "interactive"), TW_ERR_INVALID);
}
