/* `tokwatt info`: what this machine is and what tokwatt can measure on it: CPU, SIMD paths,
 * measured memory bandwidth and fp32 peak, whether CUDA was built and which devices it sees,
 * which power sensors can be read. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_cpu.h"
#include "tw_cuda_info.h"
#include "tw_machine.h"
#include "tw_power.h"
#include "tw_results.h"
#include "tw_util.h"

static const char *tw_info_usage =
    "tokwatt info [--threads T] [--format md|json|csv] [--quick]\n"
    "  --threads T   threads for the bandwidth and peak measurements; 0 (default): all cores\n"
    "  --quick       skip the measurements\n"
    "  --format csv  one line, a column per JSON field (dotted names, units in the names)";

/* Tries one power source; ok = 1 when it opened, msg says how or why not. */
static void tw_info_power(const char *source, int gpu, int *ok, char *msg, size_t n) {
    tw_power_opts po = {.source = source, .gpu_index = gpu, .devices = 1, .sample_ms = 50};
    tw_power_meter *m = NULL;
    if (tw_power_open(&po, &m) == TW_OK) {
        *ok = 1;
        snprintf(msg, n, "%s", tw_power_method(m));
        tw_power_close(m);
    } else {
        *ok = 0;
        snprintf(msg, n, "%s", tw_error_text());
    }
}

int tw_cmd_info(int argc, char **argv) {
    tw_args a;
    int threads = 0;
    tw_format fmt = TW_FMT_MD;
    if (tw_args_init(&a, "tokwatt info", tw_info_usage, argc, argv) != TW_OK) return TW_EXIT_FAIL;
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_info_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    int quick = tw_args_flag(&a, "--quick");
    if (tw_args_int(&a, "--threads", 0, 0, 4096, &threads) != TW_OK ||
        tw_args_format(&a, &fmt) != TW_OK || tw_args_finish(&a) != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&a);
    int nthreads = tw_cpu_threads(threads);

    json_t *root = json_object();
    json_object_set_new(root, "host", json_string(tw_host_name()));
    json_object_set_new(root, "cpu_model", json_string(tw_cpu_model()));
    json_object_set_new(root, "cpu_cores", json_integer(tw_cpu_cores()));
    json_object_set_new(root, "cpu_features", json_string(tw_cpu_features()));
    json_object_set_new(root, "simd_best", json_string(tw_simd_name(tw_cpu_simd_detect())));
    json_object_set_new(root, "simd_active", json_string(tw_simd_name(tw_cpu_simd_active())));
    json_object_set_new(root, "threads", json_integer(nthreads));

    json_object_set_new(root, "bf16_dot_vs_fma", json_real(tw_cpu_bf16_dot_ratio()));
    json_object_set_new(root, "bf16_dot_used", json_boolean(tw_cpu_bf16_dot_preferred()));
    json_object_set_new(root, "amx_usable", json_boolean(tw_cpu_amx_usable()));

    tw_membw_result mb;
    memset(&mb, 0, sizeof mb);
    double peak = 0;
    tw_bf16_peak bp;
    memset(&bp, 0, sizeof bp);
    if (!quick) {
        tw_log("measuring memory bandwidth and compute peaks on %d threads...", nthreads);
        if (tw_machine_membw(nthreads, 0, 5, &mb) != TW_OK ||
            tw_machine_fp32_peak(nthreads, &peak) != TW_OK ||
            tw_machine_bf16_peak(nthreads, &bp) != TW_OK) {
            fprintf(stderr, "tokwatt info: error: %s\n", tw_error_text());
            json_decref(root);
            return TW_EXIT_FAIL;
        }
        json_object_set_new(root, "membw_read_gbps", json_real(mb.read_gbps));
        json_object_set_new(root, "membw_read_method", json_string(mb.read_method));
        json_object_set_new(root, "membw_copy_gbps", json_real(mb.copy_gbps));
        json_object_set_new(root, "membw_triad_gbps", json_real(mb.triad_gbps));
        json_object_set_new(root, "llc_bytes", json_integer((json_int_t)mb.llc_bytes));
        json_object_set_new(root, "fp32_peak_gflops", json_real(peak));
        json_object_set_new(root, "bf16_peak_gflops", json_real(bp.gflops));
        json_object_set_new(root, "bf16_peak_method", json_string(bp.method));
    }

    json_object_set_new(root, "cuda_built", json_boolean(tw_cuda_built()));
    char rt[32], drv[32];
    tw_cuda_versions(rt, sizeof rt, drv, sizeof drv);
    json_object_set_new(root, "cuda_runtime", json_string(rt));
    json_object_set_new(root, "cuda_driver", json_string(drv));
    json_t *devs = json_array();
    char cuda_note[512] = "";
    int ndev = 0;
    if (!tw_cuda_built()) {
        snprintf(cuda_note, sizeof cuda_note, "CUDA backend not built");
    } else if (tw_cuda_device_count(&ndev) != TW_OK) {
        snprintf(cuda_note, sizeof cuda_note, "no CUDA device: %s", tw_error_text());
        ndev = 0;
    } else {
        snprintf(cuda_note, sizeof cuda_note, "%d device(s)", ndev);
    }
    for (int d = 0; d < ndev; d++) {
        tw_cuda_device_info di;
        if (tw_cuda_device_query(d, &di) != TW_OK) continue;
        json_t *j = json_object();
        json_object_set_new(j, "index", json_integer(d));
        json_object_set_new(j, "name", json_string(di.name));
        char cc[16];
        snprintf(cc, sizeof cc, "%d.%d", di.cc_major, di.cc_minor);
        json_object_set_new(j, "compute_capability", json_string(cc));
        json_object_set_new(j, "sm_count", json_integer(di.sm_count));
        json_object_set_new(j, "total_mem_bytes", json_integer((json_int_t)di.total_mem));
        tw_cuda_image_info img;
        json_t *ji = json_object();
        if (tw_cuda_image_query(d, &img) == TW_OK) {
            json_object_set_new(ji, "runnable", json_boolean(img.runnable));
            json_object_set_new(ji, "mode", json_string(img.mode));
            if (img.runnable) {
                json_object_set_new(ji, "binary_version", json_integer(img.binary_version));
                json_object_set_new(ji, "ptx_version", json_integer(img.ptx_version));
            }
            json_object_set_new(ji, "summary", json_string(img.summary));
        } else {
            json_object_set_new(ji, "runnable", json_false());
            json_object_set_new(ji, "mode", json_string("unknown"));
            json_object_set_new(ji, "summary", json_string(tw_error_text()));
        }
        json_object_set_new(j, "cuda_image", ji);
        json_array_append_new(devs, j);
    }
    json_object_set_new(root, "cuda_status", json_string(cuda_note));
    json_object_set_new(root, "cuda_sass", json_string(tw_cuda_build_sass()));
    json_object_set_new(root, "cuda_ptx", json_string(tw_cuda_build_ptx()));
    json_object_set_new(root, "cuda_devices", devs);

    json_t *pw = json_object();
    const char *srcs[] = {"rapl", "nvml"};
    for (int i = 0; i < 2; i++) {
        int ok;
        char msg[1024];
        tw_info_power(srcs[i], i == 1 ? 0 : -1, &ok, msg, sizeof msg);
        json_t *j = json_object();
        json_object_set_new(j, "readable", json_boolean(ok));
        json_object_set_new(j, ok ? "method" : "reason", json_string(msg));
        json_object_set_new(pw, srcs[i], j);
    }
    {
        double w = 0;
        char entry[256] = "", src[512] = "";
        json_t *j = json_object();
        if (tw_power_rated_w(tw_cpu_model(), &w, entry, sizeof entry, src, sizeof src) == TW_OK) {
            json_object_set_new(j, "rated_w", json_real(w));
            json_object_set_new(j, "entry", json_string(entry));
            json_object_set_new(j, "source", json_string(src));
        } else {
            json_object_set_new(j, "rated_w", json_null());
            json_object_set_new(j, "reason", json_string(tw_error_text()));
        }
        json_object_set_new(pw, "assumed_cpu", j);
    }
    json_object_set_new(root, "power_sensors", pw);

    if (fmt == TW_FMT_JSON) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) puts(text);
        free(text);
    } else if (fmt == TW_FMT_CSV) {
        json_t *one = json_array();
        json_array_append(one, root);
        tw_csv_rows(stdout, one);
        json_decref(one);
    } else {
        const char *head[] = {"item", "value"};
        tw_table t;
        tw_table_init(&t, 2, head);
        tw_table_addf(&t, "host|%s", tw_host_name());
        tw_table_addf(&t, "CPU|%s (%d cores)", tw_cpu_model(), tw_cpu_cores());
        tw_table_addf(&t, "CPU features|%s", tw_cpu_features());
        tw_table_addf(&t, "SIMD path|%s (best %s)", tw_simd_name(tw_cpu_simd_active()),
                      tw_simd_name(tw_cpu_simd_detect()));
        if (tw_cpu_bf16_dot_ratio() > 0)
            tw_table_addf(&t,
                          "bf16 dot product|%.2fx the multiply-adds of fp32 FMA per second "
                          "(one thread): %s",
                          tw_cpu_bf16_dot_ratio(),
                          tw_cpu_bf16_dot_preferred() ? "used for bf16 GEMMs"
                                                      : "not used (FMA on widened bf16 is faster)");
        if (tw_cpu_amx_usable())
            tw_table_addf(&t, "AMX-BF16|usable: bf16 GEMMs with >= %d rows", TW_GEMM_AMX_MIN_M);
        else
            tw_table_addf(&t, "AMX-BF16|not usable (no AMX, or no OS permission)");
        if (!quick) {
            tw_table_addf(&t, "memory bandwidth, %d threads|read %.2f, copy %.2f, triad %.2f GB/s",
                          nthreads, mb.read_gbps, mb.copy_gbps, mb.triad_gbps);
            tw_table_addf(&t, "read ceiling|%s", mb.read_method);
            tw_table_addf(&t, "fp32 peak, %d threads|%.1f GFLOP/s (%s)", nthreads, peak,
                          tw_cpu_peak_method(TW_PEAK_FP32_FMA));
            tw_table_addf(&t, "bf16 peak, %d threads|%.1f GFLOP/s: %s", nthreads, bp.gflops,
                          bp.method);
        }
        tw_table_addf(&t, "CUDA|%s; runtime %s, driver %s; %s",
                      tw_cuda_built() ? "built" : "NOT built", rt, drv, cuda_note);
        if (tw_cuda_built())
            tw_table_addf(&t, "CUDA targets|SASS %s; PTX %s", tw_cuda_build_sass(),
                          tw_cuda_build_ptx());
        for (size_t i = 0; i < json_array_size(devs); i++) {
            json_t *d = json_array_get(devs, i);
            tw_table_addf(
                &t, "GPU %d|%s (cc %s, %lld SMs); runs %s", (int)i,
                json_string_value(json_object_get(d, "name")),
                json_string_value(json_object_get(d, "compute_capability")),
                (long long)json_integer_value(json_object_get(d, "sm_count")),
                json_string_value(json_object_get(json_object_get(d, "cuda_image"), "summary")));
        }
        for (int i = 0; i < 2; i++) {
            json_t *j = json_object_get(pw, srcs[i]);
            int ok = json_is_true(json_object_get(j, "readable"));
            tw_table_addf(&t, "power: %s|%s: %s", srcs[i], ok ? "readable" : "NOT readable",
                          json_string_value(json_object_get(j, ok ? "method" : "reason")));
        }
        json_t *as = json_object_get(pw, "assumed_cpu");
        if (json_is_number(json_object_get(as, "rated_w")))
            tw_table_addf(&t, "power: assumed|%.0f W rated (%s)",
                          json_number_value(json_object_get(as, "rated_w")),
                          json_string_value(json_object_get(as, "entry")));
        else
            tw_table_addf(&t, "power: assumed|no rated figure for this CPU: %s",
                          json_string_value(json_object_get(as, "reason")));
        tw_table_print(&t, fmt, stdout);
        tw_table_free(&t);
    }
    json_decref(root);
    return TW_EXIT_OK;
}
