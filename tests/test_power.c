/* Power sources without hardware: a fake powercap tree in a temporary folder (wraparound,
 * unreadable files, missing tree) and a fake NVML library built by the tests (energy counter,
 * sampling fallback, failing nvmlInit), plus assumed watts, fallback reporting and the energy
 * JSON block. Expected energies are computed here from what the fakes were told. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness/power/tw_power.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1024], tmp[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s", tmp);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0); /* atomic: the sampler never reads half a number */
}

static char root[64];

/* root/intel-rapl:N (package-N) and root/intel-rapl:0:0 (core sub-zone), flat as in sysfs */
static void make_zone(const char *zone, const char *name, unsigned long long e,
                      unsigned long long max) {
    char dir[256], v[64];
    snprintf(dir, sizeof dir, "%s/%s", root, zone);
    cr_assert_eq(mkdir(dir, 0755), 0);
    write_file(dir, "name", name);
    snprintf(v, sizeof v, "%llu\n", e);
    write_file(dir, "energy_uj", v);
    snprintf(v, sizeof v, "%llu\n", max);
    write_file(dir, "max_energy_range_uj", v);
}

static void set_energy(const char *zone, unsigned long long e) {
    char dir[256], v[64];
    snprintf(dir, sizeof dir, "%s/%s", root, zone);
    snprintf(v, sizeof v, "%llu\n", e);
    write_file(dir, "energy_uj", v);
}

static void fake_tree(void) {
    snprintf(root, sizeof root, "/tmp/tw_powercap_XXXXXX");
    cr_assert(mkdtemp(root));
    setenv("TW_POWERCAP_ROOT", root, 1);
    setenv("TW_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
}

static void rm_tree(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx %.64s; rm -rf %.64s", root, root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

Test(rapl, wraparound_and_packages_summed, .fini = rm_tree) {
    fake_tree();
    const unsigned long long max0 = 262143328850ULL, max1 = 65712999613ULL;
    make_zone("intel-rapl:0", "package-0", max0 - 171150, max0); /* 171,150 uJ below the wrap */
    make_zone("intel-rapl:1", "package-1", 1000000, max1);
    make_zone("intel-rapl:0:0", "core", 5, 1000); /* a sub-zone: listed, not counted */
    tw_power_meter *m;
    tw_power_opts o = {.source = "rapl", .sample_ms = 10, .gpu_index = -1, .devices = 1};
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_power_source(m), "rapl");
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK, "%s", tw_last_error());
    sleep_ms(25);
    set_energy("intel-rapl:0", 657850);  /* wrapped: 171,150 + 657,850 = 829,000 uJ */
    set_energy("intel-rapl:1", 1333333); /* +333,333 uJ */
    set_energy("intel-rapl:0:0", 3);     /* the sub-zone wrapped too; not in the total */
    sleep_ms(25);
    tw_power_region r;
    cr_assert_eq(tw_power_end(m, "decode", &r), TW_OK, "%s", tw_last_error());
    double want = (171150.0 + 657850.0 + 333333.0) * 1e-6;
    cr_assert_lt(REL(r.energy_j, want), 1e-9, "energy %.9f J, want %.9f", r.energy_j, want);
    cr_assert_lt(REL(r.mean_power_w, want / r.seconds), 1e-9);
    cr_assert_not(r.assumed);
    cr_assert(r.peak_power_w >= r.mean_power_w * 0.999, "peak %g mean %g", r.peak_power_w,
              r.mean_power_w);
    /* a second region of the same phase accumulates; no change -> no energy */
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK);
    cr_assert_eq(tw_power_end(m, "decode", &r), TW_OK);
    cr_assert_eq(r.energy_j, 0.0);
    tw_power_region acc;
    cr_assert_eq(tw_power_phase(m, "decode", &acc), TW_OK);
    cr_assert_lt(REL(acc.energy_j, want), 1e-9);
    json_t *j;
    cr_assert_eq(tw_power_energy_json(m, &(tw_power_tokens){0, 1000, 1000}, &j), TW_OK);
    json_t *zones = json_object_get(json_object_get(j, "provenance"), "zones");
    cr_assert_eq(json_array_size(zones), 3);
    cr_assert(json_is_false(json_object_get(json_array_get(zones, 1), "counted_in_total")),
              "the core sub-zone must not be counted");
    json_t *dec = json_object_get(j, "decode");
    cr_assert_lt(REL(json_number_value(json_object_get(dec, "j_per_token")), want / 1000), 1e-9);
    cr_assert_lt(REL(json_number_value(json_object_get(dec, "tokens_per_j")), 1000 / want), 1e-9);
    json_decref(j);
    tw_power_close(m);
}

Test(rapl, unreadable_energy_is_an_error_not_zero, .fini = rm_tree) {
    fake_tree();
    make_zone("intel-rapl:0", "package-0", 12345, 262143328850ULL);
    char path[256];
    snprintf(path, sizeof path, "%s/intel-rapl:0/energy_uj", root);
    if (geteuid() != 0) {
        cr_assert_eq(chmod(path, 0), 0); /* as on kernels since 5.10: root-only */
    } else {
        /* root reads mode-000 files: make it unreadable another way */
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(mkdir(path, 0755), 0);
    }
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "rapl", .gpu_index = -1};
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_IO, "unreadable counter accepted: %s",
                 tw_last_error());
    cr_assert_null(m);
    cr_assert(strstr(tw_last_error(), "energy_uj unreadable"), "%s", tw_last_error());
    /* auto: falls back to assumed rated watts and says why RAPL was not used */
    o.source = "auto";
    o.device_name = "AMD EPYC 7763 64-Core Processor";
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_power_source(m), "assumed");
    cr_assert(strstr(tw_power_fallbacks(m), "rapl:"), "%s", tw_power_fallbacks(m));
    cr_assert(strstr(tw_power_fallbacks(m), "energy_uj unreadable"), "%s", tw_power_fallbacks(m));
    cr_assert(strstr(tw_power_method(m), "280"), "%s", tw_power_method(m)); /* EPYC 7763 */
    tw_power_close(m);
}

Test(rapl, missing_tree_is_unsupported, .fini = rm_tree) {
    fake_tree();
    char gone[128];
    snprintf(gone, sizeof gone, "%s/nothing-here", root);
    setenv("TW_POWERCAP_ROOT", gone, 1);
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "rapl", .gpu_index = -1};
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "no powercap tree"), "%s", tw_last_error());
    /* nothing at all: source none, every step reported */
    o.source = "auto";
    o.device_name = "Mystery CPU 9000";
    cr_assert_eq(tw_power_open(&o, &m), TW_OK);
    cr_assert_str_eq(tw_power_source(m), "none");
    const char *fb = tw_power_fallbacks(m);
    cr_assert(strstr(fb, "nvml:") && strstr(fb, "rapl:") && strstr(fb, "assumed:"), "%s", fb);
    cr_assert_eq(tw_power_begin(m, "e2e"), TW_OK);
    tw_power_region r;
    cr_assert_eq(tw_power_end(m, "e2e", &r), TW_OK);
    cr_assert(isnan(r.energy_j), "source none reported %g J", r.energy_j);
    double w;
    cr_assert_eq(tw_power_mean_w_per_device(m, &w), TW_ERR_UNSUPPORTED);
    json_t *j;
    cr_assert_eq(tw_power_energy_json(m, NULL, &j), TW_OK);
    cr_assert(json_is_null(json_object_get(json_object_get(j, "e2e"), "energy_j")));
    cr_assert_eq(json_array_size(json_object_get(j, "fallbacks")), 3);
    json_decref(j);
    tw_power_close(m);
}

static void use_fake_nvml(void) {
    const char *lib = getenv("TW_NVML_LIB");
    static char path[1024];
    if (!lib || !*lib) {
        const char *b = getenv("TW_BUILD_DIR");
        cr_assert(b, "neither TW_NVML_LIB nor TW_BUILD_DIR is set");
        snprintf(path, sizeof path, "%s/tests/libtw_fake_nvml.so", b);
        setenv("TW_NVML_LIB", path, 1);
    }
    setenv("TW_POWERCAP_ROOT", "/nonexistent-powercap", 1);
}

Test(nvml, energy_counter_two_gpus) {
    use_fake_nvml();
    setenv("FAKE_NVML_P0_MW", "237500", 1); /* 237.5 W per GPU */
    tw_power_meter *m;
    tw_power_opts o = {.source = "auto", .sample_ms = 10, .gpu_index = 0, .devices = 2};
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_power_source(m), "nvml");
    cr_assert_str_eq(tw_power_label(m), "nvml");
    cr_assert(strstr(tw_power_method(m), "total-energy counter"), "%s", tw_power_method(m));
    cr_assert_str_eq(tw_power_fallbacks(m), "");
    cr_assert_eq(tw_power_begin(m, "prefill"), TW_OK, "%s", tw_last_error());
    sleep_ms(120);
    tw_power_region r;
    cr_assert_eq(tw_power_end(m, "prefill", &r), TW_OK, "%s", tw_last_error());
    /* the counter integrates 2 x 237.5 W; mJ resolution over >= 120 ms */
    cr_assert_lt(REL(r.energy_j, 475.0 * r.seconds), 0.01, "energy %g J over %g s", r.energy_j,
                 r.seconds);
    cr_assert_lt(REL(r.mean_power_w, 475.0), 0.01);
    cr_assert_float_eq(r.peak_power_w, 475.0, 1e-9);
    double w;
    cr_assert_eq(tw_power_mean_w_per_device(m, &w), TW_OK);
    cr_assert_lt(REL(w, 237.5), 0.01);
    json_t *j;
    cr_assert_eq(tw_power_energy_json(m, &(tw_power_tokens){4096, 0, 4096}, &j), TW_OK);
    json_t *prov = json_object_get(j, "provenance");
    cr_assert_str_eq(json_string_value(json_object_get(prov, "driver_version")), "999.01-fake");
    json_t *g1 = json_array_get(json_object_get(prov, "gpus"), 1);
    cr_assert(strstr(json_string_value(json_object_get(g1, "name")), "#1"));
    cr_assert_float_eq(json_number_value(json_object_get(g1, "power_limit_w")), 700.0, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(g1, "temperature_c_end")), 41);
    json_t *e2e = json_object_get(j, "e2e");
    cr_assert(json_is_string(json_object_get(e2e, "derived")));
    cr_assert_lt(REL(json_number_value(json_object_get(e2e, "mean_power_w_per_device")), 237.5),
                 0.01);
    cr_assert_gt(json_array_size(json_object_get(json_object_get(j, "trace"), "power_w")), 3);
    json_decref(j);
    tw_power_close(m);
}

Test(nvml, sampling_fallback_integrates_a_ramp) {
    use_fake_nvml();
    setenv("FAKE_NVML_NO_ENERGY", "1", 1);
    setenv("FAKE_NVML_COUNT", "1", 1);
    setenv("FAKE_NVML_P0_MW", "100000", 1);          /* 100 W at init */
    setenv("FAKE_NVML_RAMP_MW_PER_S", "1000000", 1); /* + 1000 W per second */
    tw_power_meter *m;
    tw_power_opts o = {.source = "nvml", .sample_ms = 10, .gpu_index = 0, .devices = 1};
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert(strstr(tw_power_method(m), "sampling"), "%s", tw_power_method(m));
    cr_assert(strstr(tw_power_method(m), "Not Supported"), "%s", tw_power_method(m));
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK, "%s", tw_last_error());
    sleep_ms(150);
    tw_power_region r;
    cr_assert_eq(tw_power_end(m, "decode", &r), TW_OK, "%s", tw_last_error());
    /* a linear ramp: the mean is the power at the middle of the region, the peak at its end;
     * the trapezoid rule is exact on a line, so only the begin/end timing skews it */
    json_t *j;
    cr_assert_eq(tw_power_energy_json(m, NULL, &j), TW_OK);
    json_t *tr = json_object_get(j, "trace");
    json_t *tt = json_object_get(tr, "t_s"), *tw = json_object_get(tr, "power_w");
    size_t n = json_array_size(tw);
    cr_assert_geq(n, 3, "%zu samples", n);
    double t0 = json_number_value(json_array_get(tt, 0)),
           t1 = json_number_value(json_array_get(tt, n - 1));
    double w0 = json_number_value(json_array_get(tw, 0)),
           w1 = json_number_value(json_array_get(tw, n - 1));
    double want = 0.5 * (w0 + w1) * (t1 - t0);
    cr_assert_lt(REL(r.energy_j, want), 0.01, "energy %g want %g", r.energy_j, want);
    cr_assert_lt(REL((w1 - w0) / (t1 - t0), 1000.0), 0.02, "ramp seen %g W/s",
                 (w1 - w0) / (t1 - t0));
    cr_assert_float_eq(r.peak_power_w, w1, 1e-9);
    cr_assert_lt(r.mean_power_w, r.peak_power_w);
    json_decref(j);
    tw_power_close(m);
}

Test(nvml, failing_init_is_reported) {
    use_fake_nvml();
    setenv("FAKE_NVML_INIT_FAIL", "1", 1);
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "nvml", .gpu_index = 0, .devices = 1};
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_DEVICE);
    cr_assert(strstr(tw_last_error(), "nvmlInit failed: Driver Not Loaded"), "%s", tw_last_error());
    /* auto with a GPU: skips RAPL (it would measure the CPU), falls back to rated watts */
    o.source = "auto";
    o.device_name = "NVIDIA H100 80GB HBM3";
    o.devices = 4;
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_power_source(m), "assumed");
    cr_assert(tw_power_is_assumed(m));
    const char *fb = tw_power_fallbacks(m);
    cr_assert(strstr(fb, "nvml: ") && strstr(fb, "nvmlInit"), "%s", fb);
    cr_assert(strstr(fb, "rapl: not tried"), "%s", fb);
    double w;
    cr_assert_eq(tw_power_mean_w_per_device(m, &w), TW_OK);
    cr_assert_eq(w, 700.0);
    tw_power_close(m);
}

Test(nvml, missing_library_is_reported) {
    setenv("TW_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "nvml", .gpu_index = 0};
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "cannot load /nonexistent"), "%s", tw_last_error());
}

Test(assumed, given_watts_nested_regions_and_token_ratios) {
    tw_power_meter *m;
    tw_power_opts o = {.source = "assumed", .assumed_w = 312.5, .gpu_index = -1, .devices = 3};
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert(strstr(tw_power_method(m), "given by the user"));
    cr_assert_str_eq(tw_power_label(m), "assumed: 312.5 W per device given by the user");
    tw_power_region rp, rd, re;
    cr_assert_eq(tw_power_begin(m, "e2e"), TW_OK);
    cr_assert_eq(tw_power_begin(m, "prefill"), TW_OK);
    cr_assert_eq(tw_power_begin(m, "prefill"), TW_ERR_INVALID); /* already open */
    sleep_ms(20);
    cr_assert_eq(tw_power_end(m, "prefill", &rp), TW_OK);
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK);
    sleep_ms(30);
    cr_assert_eq(tw_power_end(m, "decode", &rd), TW_OK);
    cr_assert_eq(tw_power_end(m, "e2e", &re), TW_OK);
    cr_assert_eq(tw_power_end(m, "e2e", &re), TW_ERR_INVALID); /* not open */
    const double W = 312.5 * 3;
    cr_assert_lt(REL(rp.energy_j, W * rp.seconds), 1e-12);
    cr_assert_lt(REL(rd.energy_j, W * rd.seconds), 1e-12);
    cr_assert(rp.assumed && rd.assumed && re.assumed);
    cr_assert_geq(re.energy_j, rp.energy_j + rd.energy_j);
    json_t *j;
    cr_assert_eq(tw_power_energy_json(m, &(tw_power_tokens){129, 37, 166}, &j), TW_OK);
    cr_assert(json_is_true(json_object_get(j, "assumed")));
    json_t *pf = json_object_get(j, "prefill"), *e2e = json_object_get(j, "e2e");
    cr_assert_lt(REL(json_number_value(json_object_get(pf, "j_per_token")), rp.energy_j / 129),
                 1e-12);
    cr_assert(json_is_false(json_object_get(e2e, "derived")), "e2e was measured, not derived");
    cr_assert_lt(REL(json_number_value(json_object_get(e2e, "tokens_per_j")), 166 / re.energy_j),
                 1e-12);
    cr_assert_float_eq(json_number_value(json_object_get(e2e, "mean_power_w_per_device")), 312.5,
                       1e-9);
    json_decref(j);
    tw_power_close(m);
}

Test(assumed, rated_watts_lookup_longest_match) {
    double w;
    char entry[128], src[512];
    cr_assert_eq(
        tw_power_rated_w("NVIDIA H100 80GB HBM3", &w, entry, sizeof entry, src, sizeof src), TW_OK,
        "%s", tw_last_error());
    cr_assert_eq(w, 700.0);
    cr_assert(strstr(src, "datasheet"), "%s", src);
    cr_assert_eq(
        tw_power_rated_w("AMD EPYC 9654 96-Core Processor", &w, entry, sizeof entry, NULL, 0),
        TW_OK);
    cr_assert_eq(w, 360.0);
    cr_assert(strstr(entry, "9654"), "generic entry won over the exact one: %s", entry);
    cr_assert_eq(tw_power_rated_w("AMD EPYC", &w, entry, sizeof entry, NULL, 0), TW_OK);
    cr_assert(strstr(entry, "generic"), "%s", entry);
    cr_assert_eq(tw_power_rated_w("amd instinct mi300x", &w, NULL, 0, NULL, 0), TW_OK);
    cr_assert_eq(w, 750.0);
    cr_assert_eq(tw_power_rated_w("Quantum Toaster", &w, NULL, 0, NULL, 0), TW_ERR_UNSUPPORTED);
}

Test(power, bad_options_refused) {
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "magic", .gpu_index = -1};
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_INVALID);
    o.source = "assumed";
    o.assumed_w = 100;
    o.sample_ms = 5;
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_INVALID);
    o.sample_ms = 101;
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_INVALID);
    o.sample_ms = 0;
    o.assumed_w = -3;
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_INVALID);
    o.source = "nvml";
    o.assumed_w = 0;
    cr_assert_eq(tw_power_open(&o, &m), TW_ERR_INVALID); /* nvml without a GPU index */
    cr_assert_null(m);
}

/* A devices.json that does not parse is an error even for --power auto: before, the meter went
 * on to "none" and the run reported "energy: not measured" with exit 0. */
Test(assumed, malformed_devices_json_is_an_error_not_a_fallback) {
    char cfg[64], path[256];
    snprintf(cfg, sizeof cfg, "/tmp/tw_cfg_XXXXXX");
    cr_assert(mkdtemp(cfg));
    snprintf(path, sizeof path, "%s/devices.json", cfg);
    FILE *f = fopen(path, "w");
    fputs("{\"devices\": [", f);
    fclose(f);
    setenv("TW_CONFIG_DIR", cfg, 1);
    setenv("TW_POWERCAP_ROOT", "/nonexistent-powercap", 1);
    tw_power_meter *m = NULL;
    tw_power_opts o = {.source = "auto", .gpu_index = -1};
    tw_status st = tw_power_open(&o, &m);
    cr_assert_eq(st, TW_ERR_PARSE, "got %s: %s", tw_status_name(st), tw_last_error());
    cr_assert(strstr(tw_last_error(), "devices.json:1:"), "%s", tw_last_error());
    cr_assert_null(m);
    /* a name with no entry is still a reason to go on without power, said in the fallbacks */
    f = fopen(path, "w");
    fputs("{\"devices\": []}", f);
    fclose(f);
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    cr_assert_str_eq(tw_power_source(m), "none");
    cr_assert(strstr(tw_power_fallbacks(m), "assumed: no entry"), "%s", tw_power_fallbacks(m));
    tw_power_close(m);
    unsetenv("TW_CONFIG_DIR");
    unlink(path);
    rmdir(cfg);
}

/* An interrupted repetition's partial energy is rolled back, so that J/token divides the energy
 * of the complete repetitions by their tokens. */
Test(assumed, rollback_drops_a_partial_region) {
    tw_power_meter *m;
    tw_power_opts o = {.source = "assumed", .assumed_w = 50, .gpu_index = -1};
    cr_assert_eq(tw_power_open(&o, &m), TW_OK, "%s", tw_last_error());
    tw_power_region r1;
    cr_assert_eq(tw_power_begin(m, "prefill"), TW_OK);
    sleep_ms(10);
    cr_assert_eq(tw_power_end(m, "prefill", &r1), TW_OK);
    tw_power_mark(m);
    cr_assert_eq(tw_power_begin(m, "prefill"), TW_OK);
    sleep_ms(10);
    cr_assert_eq(tw_power_end(m, "prefill", NULL), TW_OK);
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK); /* interrupted inside decode */
    sleep_ms(5);
    tw_power_rollback(m);
    tw_power_region p;
    cr_assert_eq(tw_power_phase(m, "prefill", &p), TW_OK);
    cr_assert_lt(REL(p.energy_j, r1.energy_j), 1e-12, "%g vs %g", p.energy_j, r1.energy_j);
    cr_assert_eq(tw_power_phase(m, "decode", &p), TW_ERR_INVALID, "decode was never complete");
    cr_assert_eq(tw_power_begin(m, "decode"), TW_OK, "the rolled-back region is closed");
    cr_assert_eq(tw_power_end(m, "decode", NULL), TW_OK);
    tw_power_close(m);
}

/* RAPL and a CPU socket's assumed watts cover the host; a GPU's its own device. */
Test(assumed, host_level_sources_and_the_combined_energy_block) {
    tw_power_meter *m;
    tw_power_opts cpu = {.source = "assumed", .assumed_w = 100, .gpu_index = -1};
    cr_assert_eq(tw_power_open(&cpu, &m), TW_OK);
    cr_assert(tw_power_host_level(m));
    cr_assert_eq(tw_power_begin(m, "e2e"), TW_OK);
    sleep_ms(20);
    tw_power_region r;
    cr_assert_eq(tw_power_end(m, "e2e", &r), TW_OK);
    tw_energy e;
    cr_assert_eq(tw_power_energy(m, &(tw_power_tokens){0, 0, 40}, &e), TW_OK);
    tw_power_close(m);
    /* two ranks on one host: the host's energy once, over one device */
    double tot[3] = {0, 0, r.energy_j};
    tw_power_energy_combine(&e, tot, 1, 2, "test");
    cr_assert_eq(e.devices, 1);
    cr_assert_eq(e.ranks, 2);
    cr_assert_str_eq(e.combined, "test");
    cr_assert_lt(REL(e.e2e.mean_power_w, 100.0), 1e-9);
    cr_assert_lt(REL(e.e2e.j_per_token, r.energy_j / 40), 1e-12);
    /* two GPUs, one per rank: summed, per device the mean of the two */
    double tot2[3] = {0, 0, 3 * r.energy_j};
    tw_power_energy_combine(&e, tot2, 2, 2, "test");
    cr_assert_lt(REL(e.e2e.mean_power_w_per_device, 150.0), 1e-9);
    /* and so in the file's block */
    json_t *j = tw_energy_to_json(&e);
    json_t *e2e = json_object_get(j, "e2e");
    cr_assert_eq(json_integer_value(json_object_get(j, "ranks")), 2);
    cr_assert_lt(REL(json_number_value(json_object_get(e2e, "mean_power_w_per_device")), 150.0),
                 1e-9);
    json_decref(j);
    tw_energy_free(&e);
    tw_power_opts gpu = {.source = "assumed", .assumed_w = 700, .gpu_index = 0};
    cr_assert_eq(tw_power_open(&gpu, &m), TW_OK);
    cr_assert_not(tw_power_host_level(m));
    tw_power_close(m);
}
