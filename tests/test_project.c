/* The projection against hand calculations written out here: each scenario's 2030 row, the
 * log-linear interpolation (a segment's midpoint is the geometric mean), refusal of malformed
 * growth files and of non-positive tokens/s or watts, result-file reading and the CLI. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/project/tw_project.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

static tw_project_inputs *load_inputs(void) {
    tw_project_inputs *in = malloc(sizeof *in);
    cr_assert(in);
    cr_assert_eq(tw_project_inputs_load(in), TW_OK, "%s", tw_last_error());
    /* awkward explicit assumptions, so the hand calculation does not depend on the defaults */
    in->a.fleet_tokens_per_j.value = 3.7;
    in->a.inference_share.value = 0.55;
    in->a.price_usd_per_token.value = 2.3e-6;
    in->a.pue.value = 1.37;
    in->a.lifetime_years.value = 4;
    in->a.ref_tokens_per_s.value = 2900;
    in->a.utilisation.value = 0.7;
    return in;
}

static void check_tail(const tw_project_row *r, double demand, double T, double W) {
    /* 2030 data-centre additions: 60,000 MW in 2028 grown two more years at the 2025-2028 rate */
    double dc = 60000.0 * pow(pow(60000.0 / 16000.0, 1.0 / 3.0), 2);
    double n = demand / T, it = n * W / 1e6, fac = it * 1.37;
    cr_assert_lt(REL(r->demand_tokens_per_s, demand), 1e-12, "demand %g vs %g",
                 r->demand_tokens_per_s, demand);
    cr_assert_lt(REL(r->devices, n), 1e-12);
    cr_assert_lt(REL(r->it_mw, it), 1e-12);
    cr_assert_lt(REL(r->facility_mw, fac), 1e-12);
    cr_assert_lt(REL(r->dc_additions_mw, dc), 1e-12, "dc %g vs %g", r->dc_additions_mw, dc);
    cr_assert_lt(REL(r->share_of_additions, fac / dc), 1e-12);
    cr_assert_eq(r->dc_status, TW_PT_EXTRAPOLATED);
}

Test(project, scenarios_2030_against_hand_calculation) {
    tw_project_inputs *in = load_inputs();
    tw_projection *p = malloc(sizeof *p);
    tw_project_device d = {.tokens_per_s = 1234.5, .watts = 611, .assumed = 0};
    snprintf(d.source, sizeof d.source, "nvml");
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK, "%s", tw_last_error());
    int k = 2030 - TW_PROJECT_YEAR0;
    /* power: 50,000 MW stated for 2030, x 3.7 tokens/J */
    double dp = 50000.0 * 1e6 * 3.7;
    check_tail(&p->rows[TW_SCEN_POWER][k], dp, 1234.5, 611);
    cr_assert_eq(p->rows[TW_SCEN_POWER][k].demand_bound, TW_BOUND_LOWER); /* "well over" */
    cr_assert_not(p->rows[TW_SCEN_POWER][k].demand_extrapolated);
    /* revenue: 300 B USD/yr x 0.55 / 2.3e-6 USD per token / seconds in a Julian year */
    double dr = 300e9 * 0.55 / 2.3e-6 / (365.25 * 24 * 3600);
    check_tail(&p->rows[TW_SCEN_REVENUE][k], dr, 1234.5, 611);
    /* shipments: 25 M in 2027 growing at (25/5)^(1/4) a year; a 4-year life keeps 2027-2030 */
    double g = pow(5.0, 0.25);
    double installed = 25e6 * (1 + g + g * g + g * g * g);
    double ds = installed * 0.55 * 2900 * 0.7;
    check_tail(&p->rows[TW_SCEN_SHIPMENTS][k], ds, 1234.5, 611);
    cr_assert(p->rows[TW_SCEN_SHIPMENTS][k].demand_extrapolated); /* 2028-2030 beyond 2027 */
    free(in);
    free(p);
}

Test(project, power_growth_assumption_places_earlier_years) {
    tw_project_inputs *in = load_inputs();
    tw_projection *p = malloc(sizeof *p);
    tw_project_device d = {.tokens_per_s = 777, .watts = 333};
    cr_assert_eq(tw_project_set_power_growth(in, "dc_additions", 1), TW_OK);
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK, "%s", tw_last_error());
    /* 2027 = 50,000 MW / (60000/16000)^(3/3) : three years back at the additions' rate */
    double f = pow(60000.0 / 16000.0, 1.0 / 3.0);
    double want = 50000.0 / (f * f * f) * 1e6 * 3.7;
    const tw_project_row *r = &p->rows[TW_SCEN_POWER][2027 - TW_PROJECT_YEAR0];
    cr_assert_lt(REL(r->demand_tokens_per_s, want), 1e-12);
    cr_assert(r->demand_extrapolated);
    cr_assert(strstr(p->power_growth_note, "dc_additions"));
    /* revenue rate: (300/30)^(1/4) a year, so 2028 is 50,000 / 10^(2/4) */
    cr_assert_eq(tw_project_set_power_growth(in, "revenue", 1), TW_OK);
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK);
    want = 50000.0 / sqrt(10.0) * 1e6 * 3.7;
    r = &p->rows[TW_SCEN_POWER][2028 - TW_PROJECT_YEAR0];
    cr_assert_lt(REL(r->demand_tokens_per_s, want), 1e-12);
    cr_assert_neq(tw_project_set_power_growth(in, "banana", 1), TW_OK);
    cr_assert_neq(tw_project_set_power_growth(in, "-2", 1), TW_OK);
    free(in);
    free(p);
}

static json_t *series_json(const char *unit, const char *pts) {
    char txt[2048];
    snprintf(txt, sizeof txt,
             "{\"series\":\"t\",\"title\":\"test\",\"figure\":\"Figure 9\",\"unit\":\"%s\","
             "\"source\":\"test\",\"points\":[%s]}",
             unit, pts);
    json_error_t e;
    json_t *j = json_loads(txt, 0, &e);
    cr_assert(j, "test JSON: %s", e.text);
    return j;
}

Test(growth, midpoint_is_geometric_mean_and_rate_is_constant) {
    json_t *j = series_json("MW", "{\"year\":2020,\"value\":13,\"qualifier\":\"q\",\"bound\":"
                                  "\"approx\"},{\"year\":2024,\"value\":71,\"qualifier\":\"over\","
                                  "\"bound\":\"lower\"},{\"year\":2027,\"value\":97,\"qualifier\":"
                                  "\"q\",\"bound\":\"stated\"}");
    tw_growth_series s;
    cr_assert_eq(tw_growth_parse(j, "test", &s), TW_OK, "%s", tw_last_error());
    json_decref(j);
    tw_growth_value v;
    cr_assert_eq(tw_growth_at(&s, 2022, 0, &v), TW_OK);
    cr_assert_lt(REL(v.value, sqrt(13.0 * 71.0)), 1e-12, "midpoint %g", v.value);
    cr_assert_eq(v.status, TW_PT_INTERPOLATED);
    cr_assert_eq(v.bound, TW_BOUND_APPROX);
    /* constant annual factor within a segment: v(y+1)/v(y) = (71/13)^(1/4) for y in 2020..2023 */
    double f = pow(71.0 / 13.0, 0.25);
    for (int y = 2020; y < 2024; y++) {
        tw_growth_value a, b;
        cr_assert_eq(tw_growth_at(&s, y, 0, &a), TW_OK);
        cr_assert_eq(tw_growth_at(&s, y + 1, 0, &b), TW_OK);
        cr_assert_lt(REL(b.value / a.value, f), 1e-12, "year %d", y);
    }
    cr_assert_eq(tw_growth_at(&s, 2024, 0, &v), TW_OK);
    cr_assert_eq(v.status, TW_PT_STATED);
    cr_assert_eq(v.value, 71.0);
    cr_assert_eq(v.bound, TW_BOUND_LOWER);
    /* beyond the last point: the last segment's rate, marked extrapolated */
    cr_assert_eq(tw_growth_at(&s, 2030, 0, &v), TW_OK);
    cr_assert_lt(REL(v.value, 97.0 * pow(97.0 / 71.0, 3.0 / 3.0)), 1e-12);
    cr_assert_eq(v.status, TW_PT_EXTRAPOLATED);
    /* before the first: the first segment's rate */
    cr_assert_eq(tw_growth_at(&s, 2018, 0, &v), TW_OK);
    cr_assert_lt(REL(v.value, 13.0 / (f * f)), 1e-12);
    cr_assert_eq(v.status, TW_PT_EXTRAPOLATED);
}

Test(growth, single_point_needs_an_assumed_rate) {
    json_t *j = series_json("MW", "{\"year\":2030,\"value\":500,\"qualifier\":\"well over\","
                                  "\"bound\":\"lower\"}");
    tw_growth_series s;
    cr_assert_eq(tw_growth_parse(j, "test", &s), TW_OK, "%s", tw_last_error());
    json_decref(j);
    tw_growth_value v;
    cr_assert_eq(tw_growth_at(&s, 2028, 0, &v), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "one stated point"), "%s", tw_last_error());
    cr_assert_eq(tw_growth_at(&s, 2028, 1.5, &v), TW_OK);
    cr_assert_lt(REL(v.value, 500 / 2.25), 1e-12);
    cr_assert_eq(v.status, TW_PT_EXTRAPOLATED);
}

static void expect_refused(const char *unit, const char *pts, const char *needle) {
    json_t *j = series_json(unit, pts);
    tw_growth_series s;
    tw_status st = tw_growth_parse(j, "bad.json", &s);
    json_decref(j);
    cr_assert_eq(st, TW_ERR_PARSE, "accepted a bad file (%s)", needle);
    cr_assert(strstr(tw_last_error(), needle), "message '%s' lacks '%s'", tw_last_error(), needle);
    cr_assert(strstr(tw_last_error(), "bad.json"), "message does not name the file");
}

Test(growth, malformed_files_are_refused) {
    const char *ok = "{\"year\":2025,\"value\":5,\"qualifier\":\"q\",\"bound\":\"approx\"}";
    char pts[512];
    expect_refused("MW", "{\"year\":2025,\"qualifier\":\"q\",\"bound\":\"approx\"}", "value");
    expect_refused("MW", "{\"year\":2025,\"value\":-3,\"qualifier\":\"q\",\"bound\":\"approx\"}",
                   "positive");
    expect_refused("MW", "{\"year\":2025,\"value\":0,\"qualifier\":\"q\",\"bound\":\"approx\"}",
                   "positive");
    expect_refused("furlongs", ok, "unknown unit");
    snprintf(pts, sizeof pts,
             "%s,{\"year\":2024,\"value\":7,\"qualifier\":\"q\",\"bound\":\"lower\"}", ok);
    expect_refused("MW", pts, "out of order");
    snprintf(pts, sizeof pts,
             "%s,{\"year\":2025,\"value\":7,\"qualifier\":\"q\",\"bound\":\"lower\"}", ok);
    expect_refused("MW", pts, "out of order");
    expect_refused("MW", "{\"year\":2025,\"value\":5,\"qualifier\":\"q\",\"bound\":\"maybe\"}",
                   "unknown bound");
    expect_refused("MW", "", "non-empty");
}

Test(project, zero_or_negative_tokens_or_watts_refused) {
    tw_project_inputs *in = load_inputs();
    tw_projection *p = malloc(sizeof *p);
    const double bad[][2] = {{0, 700},   {-5, 700},  {3066, 0},
                             {3066, -1}, {NAN, 700}, {3066, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tw_project_device d = {.tokens_per_s = bad[i][0], .watts = bad[i][1]};
        cr_assert_eq(tw_project_compute(in, &d, p), TW_ERR_INVALID, "case %zu accepted", i);
        cr_assert(strstr(tw_last_error(), "must be positive"));
    }
    char buf[256];
    cr_assert_eq(tw_project_headline(0, 700, "nvml", 0, buf, sizeof buf), TW_ERR_INVALID);
    free(in);
    free(p);
}

Test(project, headline_names_source_and_marks_assumed) {
    char buf[1024];
    cr_assert_eq(tw_project_headline(3066, 700, "nvml", 0, buf, sizeof buf), TW_OK, "%s",
                 tw_last_error());
    cr_assert(strstr(buf, "measured by nvml"), "%s", buf);
    cr_assert(strstr(buf, "2030 demand of scenario power"), "%s", buf);
    cr_assert(strstr(buf, "MW"), "%s", buf);
    cr_assert_eq(tw_project_headline(3066, 700, "rated watts", 1, buf, sizeof buf), TW_OK);
    cr_assert(strstr(buf, "ASSUMED"), "%s", buf);
}

Test(project, json_and_svg_carry_extrapolation_and_assumptions) {
    tw_project_inputs *in = load_inputs();
    tw_projection *p = malloc(sizeof *p);
    tw_project_device d = {.tokens_per_s = 3066, .watts = 700, .assumed = 1};
    snprintf(d.source, sizeof d.source, "--watts");
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK);
    json_t *j;
    cr_assert_eq(tw_project_to_json(in, p, &j), TW_OK);
    json_t *rows = json_object_get(json_object_get(j, "scenarios"), "revenue");
    cr_assert_eq(json_array_size(rows), TW_PROJECT_NYEARS);
    json_t *r2030 = json_array_get(rows, TW_PROJECT_NYEARS - 1);
    cr_assert(json_is_true(json_object_get(r2030, "watts_assumed")));
    cr_assert_str_eq(json_string_value(json_object_get(r2030, "dc_additions_status")),
                     "extrapolated");
    cr_assert(json_object_get(json_object_get(j, "assumptions"), "pue"));
    json_decref(j);
    char *svg;
    cr_assert_eq(tw_project_svg(p, &svg), TW_OK);
    cr_assert(strstr(svg, "<svg") && strstr(svg, "</svg>"));
    cr_assert(strstr(svg, "(extrapolated)"));
    cr_assert(strstr(svg, "ASSUMED"));
    free(svg);
    free(in);
    free(p);
}

Test(project, result_file_gives_per_device_figures) {
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src, "TW_SOURCE_DIR not set");
    char path[1024], note[1024];
    snprintf(path, sizeof path, "%s/tests/data/sample_result.json", src);
    tw_project_device d;
    cr_assert_eq(tw_project_device_from_result(path, &d, note, sizeof note), TW_OK, "%s",
                 tw_last_error());
    cr_assert_float_eq(d.tokens_per_s, 6132.0 / 2, 1e-9); /* e2e tokens/s over 2 devices */
    cr_assert_float_eq(d.watts, 665.0, 1e-9);
    cr_assert_str_eq(d.source, "nvml");
    cr_assert_not(d.assumed);
    cr_assert(strstr(note, "mean_power_w_per_device"), "%s", note);
}

static int run_cli(const char *args, char *out, size_t n) {
    const char *exe = getenv("TW_TOKWATT");
    cr_assert(exe, "TW_TOKWATT not set");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s project %s 2>/dev/null", exe, args);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    size_t len = fread(out, 1, n - 1, f);
    out[len] = '\0';
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(project_cli, json_stdout_and_usage_errors) {
    static char out[1 << 20];
    cr_assert_eq(run_cli("--tokens-per-s 3066 --watts 700 --no-svg --format json --pue 1.2", out,
                         sizeof out),
                 0);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    cr_assert(j, "stdout is not only JSON: %s", e.text);
    json_t *pue = json_object_get(json_object_get(j, "assumptions"), "pue");
    cr_assert_float_eq(json_number_value(json_object_get(pue, "value")), 1.2, 1e-12);
    cr_assert(json_is_true(json_object_get(pue, "overridden")));
    json_t *row = json_array_get(json_object_get(json_object_get(j, "scenarios"), "power"), 5);
    /* IT MW for power 2030 = 50,000 MW x 4.38 tokens/J / 3066 tokens/s x 700 W */
    cr_assert_lt(REL(json_number_value(json_object_get(row, "it_mw")), 50000.0 * 4.38 / 3066 * 700),
                 1e-9);
    json_decref(j);
    cr_assert_eq(run_cli("--tokens-per-s 0 --watts 700 --no-svg", out, sizeof out), 2);
    cr_assert_eq(run_cli("--tokens-per-s 3066 --watts -7 --no-svg", out, sizeof out), 2);
    cr_assert_eq(run_cli("--tokens-per-s 3066 --no-svg", out, sizeof out), 2);
    cr_assert_eq(run_cli("--bogus 1", out, sizeof out), 2);
    cr_assert_eq(run_cli("--help", out, sizeof out), 0);
}

Test(project_cli, svg_written_beside_result_file) {
    const char *src = getenv("TW_SOURCE_DIR");
    char tmp[] = "/tmp/tw_project_XXXXXX", cmd[2048], args[1200];
    cr_assert(mkdtemp(tmp));
    snprintf(cmd, sizeof cmd, "cp %s/tests/data/sample_result.json %s/r.json", src, tmp);
    cr_assert_eq(system(cmd), 0);
    static char out[1 << 20];
    snprintf(args, sizeof args, "--results %s/r.json --format csv", tmp);
    cr_assert_eq(run_cli(args, out, sizeof out), 0);
    cr_assert(strstr(out, "scenario,year,"), "%s", out);
    char svg[1200];
    snprintf(svg, sizeof svg, "%s/r.projection.svg", tmp);
    FILE *f = fopen(svg, "r");
    cr_assert(f, "no chart at %s", svg);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

static int balanced(const char *s) {
    int depth = 0;
    for (; *s; s++) {
        if (*s == '(') depth++;
        if (*s == ')' && --depth < 0) return 0;
    }
    return depth == 0;
}

/* A CPU run's headline: the meter's long label once, parentheses balanced, and a plain
 * statement that such a device could not serve the demand instead of 306 billion devices. */
Test(project, headline_of_a_device_too_slow_for_the_demand) {
    char buf[2048];
    const char *label = "assumed: rated 280 W of AMD EPYC (generic, model not identified) "
                        "(devices.json)";
    cr_assert_eq(tw_project_headline(0.39, 280, label, 1, buf, sizeof buf), TW_OK, "%s",
                 tw_last_error());
    cr_assert(balanced(buf), "unbalanced: %s", buf);
    cr_assert(!strstr(buf, "assumed: assumed") && !strstr(buf, "not measured: assumed"), "%s", buf);
    cr_assert(strstr(buf, "(devices.json)"), "the label was cut: %s", buf);
    cr_assert(strstr(buf, "this device could not serve that demand"), "%s", buf);
    cr_assert(strstr(buf, "accelerators the shipments curve puts in service by 2030"), "%s", buf);
    /* a fast device: the figure, and no such statement */
    cr_assert_eq(tw_project_headline(3066, 700, "nvml", 0, buf, sizeof buf), TW_OK);
    cr_assert(balanced(buf), "unbalanced: %s", buf);
    cr_assert(!strstr(buf, "could not serve"), "%s", buf);
    cr_assert(strstr(buf, " takes "), "%s", buf);
}

Test(project, installed_base_and_supply_limit_against_hand_calculation) {
    tw_project_inputs *in = load_inputs();
    tw_projection *p = malloc(sizeof *p);
    tw_project_device d = {.tokens_per_s = 3066, .watts = 700};
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK, "%s", tw_last_error());
    /* lifetime 4 (load_inputs): shipments 2027..2030; 25 M in 2027 at (25/5)^(1/4) per year */
    double f = pow(25.0 / 5.0, 0.25), inst = 0;
    for (int y = 2027; y <= 2030; y++) inst += 25e6 * pow(f, y - 2027);
    const tw_project_row *r = &p->rows[TW_SCEN_POWER][TW_PROJECT_NYEARS - 1];
    cr_assert_lt(REL(r->installed_devices, inst), 1e-12, "%g vs %g", r->installed_devices, inst);
    cr_assert_eq(r->exceeds_supply, r->devices > inst || r->share_of_additions > 1);
    d.tokens_per_s = 0.39;
    d.watts = 280;
    cr_assert_eq(tw_project_compute(in, &d, p), TW_OK);
    cr_assert(p->rows[TW_SCEN_POWER][TW_PROJECT_NYEARS - 1].exceeds_supply);
    free(in);
    free(p);
}

/* A tensor-parallel result whose energy block combined the ranks sharing a host: tokens/s per
 * device is over energy.devices (the hosts), as the run's own headline counts it. */
Test(project, result_with_shared_host_power_counts_the_host_once) {
    char dir[64], path[256], note[1024];
    snprintf(dir, sizeof dir, "/tmp/tw_proj_XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"schema_version\": 1, \"kind\": \"run\", \"metrics\": {\"e2e_tokens_per_s\": 40},"
          " \"scenario\": {\"batch\": 1, \"devices\": 2},"
          " \"energy\": {\"source\": \"assumed\", \"assumed\": true, \"devices\": 1,"
          " \"ranks\": 2, \"combined\": \"sum over 1 host(s)\", \"label\": \"assumed: rated 280 W"
          " of X (devices.json)\", \"e2e\": {\"mean_power_w\": 280,"
          " \"mean_power_w_per_device\": 280}}}",
          f);
    fclose(f);
    tw_project_device d;
    cr_assert_eq(tw_project_device_from_result(path, &d, note, sizeof note), TW_OK, "%s",
                 tw_last_error());
    cr_assert_float_eq(d.tokens_per_s, 40, 1e-12);
    cr_assert_float_eq(d.watts, 280, 1e-12);
    cr_assert(strstr(note, "energy.devices"), "%s", note);
    cr_assert(strstr(d.source, "rated 280 W"), "%s", d.source);
    unlink(path);
    rmdir(dir);
}
