/* Internal: the interface each power source implements for the meter (power_sampler.c). */
#ifndef TW_POWER_IMPL_H
#define TW_POWER_IMPL_H

#include <jansson.h>

#include "tw_power.h"

typedef struct tw_power_src {
    const char *name; /* "nvml", "rapl" */
    void *ctx;
    /* Cumulative energy in joules over all measured devices (wraparound already undone), or
     * NULL when the source has no counter (the meter then integrates read_power samples). */
    tw_status (*read_energy_j)(void *ctx, double *out);
    /* Instantaneous power in watts over all devices, or NULL (the meter then takes energy
     * differences between readings). */
    tw_status (*read_power_w)(void *ctx, double *out);
    /* Records provenance at the start (at_end = 0) or end of measured regions. */
    void (*snapshot)(void *ctx, int at_end);
    json_t *(*provenance)(void *ctx); /* new reference */
    void (*close)(void *ctx);
    char method[768];
} tw_power_src;

/* Each fills src on success; on failure returns an error saying why (used as a fallback note). */
tw_status tw_power_nvml_open(int gpu_index, int devices, tw_power_src *src, char *name,
                             size_t name_n);
tw_status tw_power_rapl_open(tw_power_src *src);

#endif
