/* NVML power source: libnvidia-ml.so.1 opened with dlopen at run time (so tokwatt runs on
 * machines without a driver; $TW_NVML_LIB overrides the library path, which the tests use for
 * a fake NVML). Energy from the total-energy counter when every measured GPU supports it, else
 * the meter integrates sampled power usage. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_power_impl.h"

/* The few NVML declarations used, written from the public API (no nvml.h needed to build). */
typedef int tw_nvml_ret; /* nvmlReturn_t; 0 is NVML_SUCCESS */
typedef struct tw_nvml_dev_st *tw_nvml_dev;
#define TW_NVML_CLOCK_SM  1
#define TW_NVML_CLOCK_MEM 2
#define TW_NVML_TEMP_GPU  0
#define TW_NVML_MAX_DEV   16

typedef struct {
    unsigned idx;
    tw_nvml_dev h;
    char name[96];
    double limit_w;
    int sm_mhz[2], mem_mhz[2], temp_c[2]; /* [start, end]; -1 when not readable */
} tw_nvml_gpu;

typedef struct {
    void *lib;
    char lib_path[512];
    tw_nvml_ret (*init)(void);
    tw_nvml_ret (*shutdown)(void);
    const char *(*err)(tw_nvml_ret);
    tw_nvml_ret (*count)(unsigned *);
    tw_nvml_ret (*handle)(unsigned, tw_nvml_dev *);
    tw_nvml_ret (*name)(tw_nvml_dev, char *, unsigned);
    tw_nvml_ret (*driver)(char *, unsigned);
    tw_nvml_ret (*energy)(tw_nvml_dev, unsigned long long *);
    tw_nvml_ret (*power)(tw_nvml_dev, unsigned *);
    tw_nvml_ret (*limit)(tw_nvml_dev, unsigned *);
    tw_nvml_ret (*clock)(tw_nvml_dev, int, unsigned *);
    tw_nvml_ret (*temp)(tw_nvml_dev, int, unsigned *);
    char driver_version[96];
    int ngpu;
    tw_nvml_gpu gpu[TW_NVML_MAX_DEV];
    unsigned long long energy0_mj[TW_NVML_MAX_DEV]; /* counter at open, keeps doubles precise */
} tw_nvml;

static const char *tw_nvml_errstr(tw_nvml *n, tw_nvml_ret r) {
    const char *s = n->err ? n->err(r) : NULL;
    return s ? s : "unknown NVML error";
}

static tw_status tw_nvml_read_energy(void *ctx, double *out) {
    tw_nvml *n = ctx;
    double j = 0;
    for (int i = 0; i < n->ngpu; i++) {
        unsigned long long mj;
        tw_nvml_ret r = n->energy(n->gpu[i].h, &mj);
        if (r)
            return TW_ERR(TW_ERR_DEVICE, "nvmlDeviceGetTotalEnergyConsumption(GPU %u): %s",
                          n->gpu[i].idx, tw_nvml_errstr(n, r));
        j += (double)(mj - n->energy0_mj[i]) * 1e-3; /* millijoules */
    }
    *out = j;
    return TW_OK;
}

static tw_status tw_nvml_read_power(void *ctx, double *out) {
    tw_nvml *n = ctx;
    double w = 0;
    for (int i = 0; i < n->ngpu; i++) {
        unsigned mw;
        tw_nvml_ret r = n->power(n->gpu[i].h, &mw);
        if (r)
            return TW_ERR(TW_ERR_DEVICE, "nvmlDeviceGetPowerUsage(GPU %u): %s", n->gpu[i].idx,
                          tw_nvml_errstr(n, r));
        w += mw * 1e-3; /* milliwatts */
    }
    *out = w;
    return TW_OK;
}

static int tw_nvml_get(tw_nvml_ret (*f)(tw_nvml_dev, int, unsigned *), tw_nvml_dev h, int which) {
    unsigned v;
    return f && f(h, which, &v) == 0 ? (int)v : -1;
}

static void tw_nvml_snapshot(void *ctx, int at_end) {
    tw_nvml *n = ctx;
    for (int i = 0; i < n->ngpu; i++) {
        tw_nvml_gpu *g = &n->gpu[i];
        g->sm_mhz[at_end] = tw_nvml_get(n->clock, g->h, TW_NVML_CLOCK_SM);
        g->mem_mhz[at_end] = tw_nvml_get(n->clock, g->h, TW_NVML_CLOCK_MEM);
        g->temp_c[at_end] = tw_nvml_get(n->temp, g->h, TW_NVML_TEMP_GPU);
    }
}

static json_t *tw_int_or_null(int v) {
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *tw_nvml_provenance(void *ctx) {
    tw_nvml *n = ctx;
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "library", json_string(n->lib_path));
    json_object_set_new(o, "driver_version", json_string(n->driver_version));
    for (int i = 0; i < n->ngpu; i++) {
        tw_nvml_gpu *g = &n->gpu[i];
        json_t *d = json_object();
        json_object_set_new(d, "index", json_integer(g->idx));
        json_object_set_new(d, "name", json_string(g->name));
        json_object_set_new(d, "power_limit_w",
                            g->limit_w > 0 ? json_real(g->limit_w) : json_null());
        json_object_set_new(d, "sm_clock_mhz_start", tw_int_or_null(g->sm_mhz[0]));
        json_object_set_new(d, "sm_clock_mhz_end", tw_int_or_null(g->sm_mhz[1]));
        json_object_set_new(d, "mem_clock_mhz_start", tw_int_or_null(g->mem_mhz[0]));
        json_object_set_new(d, "mem_clock_mhz_end", tw_int_or_null(g->mem_mhz[1]));
        json_object_set_new(d, "temperature_c_start", tw_int_or_null(g->temp_c[0]));
        json_object_set_new(d, "temperature_c_end", tw_int_or_null(g->temp_c[1]));
        json_array_append_new(arr, d);
    }
    json_object_set_new(o, "gpus", arr);
    return o;
}

static void tw_nvml_close(void *ctx) {
    tw_nvml *n = ctx;
    if (!n) return;
    if (n->shutdown) n->shutdown();
    if (n->lib) dlclose(n->lib);
    free(n);
}

#define TW_NVML_SYM(field, sym, required)                                                          \
    do {                                                                                           \
        *(void **)&n->field = dlsym(n->lib, sym);                                                  \
        if (!n->field && (required)) {                                                             \
            st = TW_ERR(TW_ERR_UNSUPPORTED, "%s lacks %s", n->lib_path, sym);                      \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

tw_status tw_power_nvml_open(int gpu_index, int devices, tw_power_src *src, char *name,
                             size_t name_n) {
    tw_status st = TW_OK;
    if (gpu_index < 0 || devices < 1 || devices > TW_NVML_MAX_DEV)
        return TW_ERR(TW_ERR_INVALID, "NVML: GPU index %d and device count %d out of range",
                      gpu_index, devices);
    tw_nvml *n = calloc(1, sizeof *n);
    if (!n) return TW_ERR(TW_ERR_NOMEM, "NVML state");
    const char *env = getenv("TW_NVML_LIB");
    snprintf(n->lib_path, sizeof n->lib_path, "%s", env && *env ? env : "libnvidia-ml.so.1");
    n->lib = dlopen(n->lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        const char *e = dlerror();
        st = TW_ERR(TW_ERR_UNSUPPORTED, "cannot load %s (no NVIDIA driver?): %s", n->lib_path,
                    e ? e : "dlopen failed");
        goto fail;
    }
    TW_NVML_SYM(init, "nvmlInit_v2", 1);
    TW_NVML_SYM(shutdown, "nvmlShutdown", 1);
    TW_NVML_SYM(err, "nvmlErrorString", 0);
    TW_NVML_SYM(count, "nvmlDeviceGetCount_v2", 1);
    TW_NVML_SYM(handle, "nvmlDeviceGetHandleByIndex_v2", 1);
    TW_NVML_SYM(name, "nvmlDeviceGetName", 0);
    TW_NVML_SYM(driver, "nvmlSystemGetDriverVersion", 0);
    TW_NVML_SYM(energy, "nvmlDeviceGetTotalEnergyConsumption", 0);
    TW_NVML_SYM(power, "nvmlDeviceGetPowerUsage", 1);
    TW_NVML_SYM(limit, "nvmlDeviceGetEnforcedPowerLimit", 0);
    TW_NVML_SYM(clock, "nvmlDeviceGetClockInfo", 0);
    TW_NVML_SYM(temp, "nvmlDeviceGetTemperature", 0);
    tw_nvml_ret r = n->init();
    if (r) {
        st = TW_ERR(TW_ERR_DEVICE, "nvmlInit failed: %s (code %d)", tw_nvml_errstr(n, r), r);
        n->shutdown = NULL; /* nothing to shut down */
        goto fail;
    }
    unsigned cnt = 0;
    if ((r = n->count(&cnt))) {
        st = TW_ERR(TW_ERR_DEVICE, "nvmlDeviceGetCount: %s", tw_nvml_errstr(n, r));
        goto fail;
    }
    if ((unsigned)gpu_index + (unsigned)devices > cnt) {
        st = TW_ERR(TW_ERR_DEVICE, "NVML sees %u GPU(s); asked for %d from index %d", cnt, devices,
                    gpu_index);
        goto fail;
    }
    if (!n->driver || n->driver(n->driver_version, sizeof n->driver_version))
        snprintf(n->driver_version, sizeof n->driver_version, "unknown");
    n->ngpu = devices;
    int counter_ok = n->energy != NULL;
    char why[256] = "nvmlDeviceGetTotalEnergyConsumption not exported";
    for (int i = 0; i < devices; i++) {
        tw_nvml_gpu *g = &n->gpu[i];
        g->idx = (unsigned)(gpu_index + i);
        if ((r = n->handle(g->idx, &g->h))) {
            st = TW_ERR(TW_ERR_DEVICE, "nvmlDeviceGetHandleByIndex(%u): %s", g->idx,
                        tw_nvml_errstr(n, r));
            goto fail;
        }
        if (!n->name || n->name(g->h, g->name, sizeof g->name))
            snprintf(g->name, sizeof g->name, "unknown NVIDIA GPU");
        unsigned mw;
        g->limit_w = n->limit && !n->limit(g->h, &mw) ? mw * 1e-3 : -1;
        if (counter_ok && (r = n->energy(g->h, &n->energy0_mj[i]))) {
            counter_ok = 0;
            snprintf(why, sizeof why, "nvmlDeviceGetTotalEnergyConsumption(GPU %u): %s", g->idx,
                     tw_nvml_errstr(n, r));
        }
        if ((r = n->power(g->h, &mw))) {
            st = TW_ERR(TW_ERR_DEVICE, "nvmlDeviceGetPowerUsage(GPU %u): %s", g->idx,
                        tw_nvml_errstr(n, r));
            goto fail;
        }
    }
    tw_nvml_snapshot(n, 0);
    tw_nvml_snapshot(n, 1);
    memset(src, 0, sizeof *src);
    src->name = "nvml";
    src->ctx = n;
    src->read_energy_j = counter_ok ? tw_nvml_read_energy : NULL;
    src->read_power_w = tw_nvml_read_power;
    src->snapshot = tw_nvml_snapshot;
    src->provenance = tw_nvml_provenance;
    src->close = tw_nvml_close;
    if (counter_ok)
        snprintf(src->method, sizeof src->method,
                 "NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption), %d GPU(s) from "
                 "index %d; trace from nvmlDeviceGetPowerUsage",
                 devices, gpu_index);
    else
        snprintf(src->method, sizeof src->method,
                 "NVML power sampling (nvmlDeviceGetPowerUsage, integrated), %d GPU(s) from index "
                 "%d: energy counter unsupported (%s)",
                 devices, gpu_index, why);
    if (name) snprintf(name, name_n, "%s", n->gpu[0].name);
    return TW_OK;
fail:
    tw_nvml_close(n);
    return st;
}
