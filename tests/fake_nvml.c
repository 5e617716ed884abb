/* A fake libnvidia-ml for the power tests: implements the few NVML functions tokwatt uses, with
 * behaviour set by environment variables read at nvmlInit_v2:
 *   FAKE_NVML_INIT_FAIL=1     nvmlInit_v2 fails (NVML_ERROR_DRIVER_NOT_LOADED, 9)
 *   FAKE_NVML_NO_ENERGY=1     nvmlDeviceGetTotalEnergyConsumption is NOT_SUPPORTED (3)
 *   FAKE_NVML_COUNT=N         number of GPUs (default 2)
 *   FAKE_NVML_P0_MW=P         power of each GPU at init, milliwatts (default 250000)
 *   FAKE_NVML_RAMP_MW_PER_S=R power rises linearly by R mW per second (default 0)
 * The energy counter is the exact integral of that power since init, plus an offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
typedef struct fake_dev {
    unsigned idx;
} * nvmlDevice_t;

static struct fake_dev fake_devs[8];
static int fake_init, fake_no_energy;
static unsigned fake_count = 2;
static double fake_p0_mw = 250000, fake_ramp = 0, fake_t0;

static double fake_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double fake_env(const char *name, double def) {
    const char *s = getenv(name);
    return s && *s ? atof(s) : def;
}

nvmlReturn_t nvmlInit_v2(void) {
    if (fake_env("FAKE_NVML_INIT_FAIL", 0) != 0) return 9;
    fake_no_energy = fake_env("FAKE_NVML_NO_ENERGY", 0) != 0;
    fake_count = (unsigned)fake_env("FAKE_NVML_COUNT", 2);
    if (fake_count > 8) fake_count = 8;
    fake_p0_mw = fake_env("FAKE_NVML_P0_MW", 250000);
    fake_ramp = fake_env("FAKE_NVML_RAMP_MW_PER_S", 0);
    fake_t0 = fake_now();
    for (unsigned i = 0; i < 8; i++) fake_devs[i].idx = i;
    fake_init = 1;
    return 0;
}

nvmlReturn_t nvmlShutdown(void) {
    fake_init = 0;
    return 0;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0:
        return "Success";
    case 3:
        return "Not Supported";
    case 9:
        return "Driver Not Loaded";
    default:
        return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *n) {
    if (!fake_init) return 1;
    *n = fake_count;
    return 0;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d) {
    if (!fake_init || i >= fake_count) return 2;
    *d = &fake_devs[i];
    return 0;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *buf, unsigned n) {
    snprintf(buf, n, "Fake NVIDIA H100 80GB HBM3 #%u", d->idx);
    return 0;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned n) {
    snprintf(buf, n, "999.01-fake");
    return 0;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    (void)d;
    double t = fake_now() - fake_t0;
    *mw = (unsigned)(fake_p0_mw + fake_ramp * t + 0.5);
    return 0;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    if (fake_no_energy) return 3;
    double t = fake_now() - fake_t0;
    /* integral of p0 + ramp*t (mW) over seconds = millijoules; offset per device */
    *mj =
        1000000ULL * (d->idx + 1) + (unsigned long long)(fake_p0_mw * t + 0.5 * fake_ramp * t * t);
    return 0;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
    (void)d;
    *mw = 700000;
    return 0;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    (void)d;
    *mhz = type == 1 ? 1980 : 2619;
    return 0;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *c) {
    (void)sensor;
    *c = 40 + d->idx;
    return 0;
}
