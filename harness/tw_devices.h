/* configs/devices.json, read in one place: the rated watts, dense peak FLOP/s and memory
 * bandwidth of a device or CPU, by the longest case-insensitive "match" substring of its name.
 * Used by assumed power (harness/power), compare's datasheet ceilings, the run's datasheet
 * roofline and `tokwatt bench cuda`. */
#ifndef TW_DEVICES_H
#define TW_DEVICES_H

#include <stddef.h>

#include "tw_status.h"

typedef struct {
    char name[128];   /* the entry's "name" */
    char kind[16];    /* "gpu", "cpu" */
    char source[512]; /* the entry's "source" (where the figures come from) */
    char match[128];  /* the match string that won */
    double rated_w, peak_bf16_flops, peak_fp32_flops, mem_bw_bytes_per_s; /* 0: null or absent */
} tw_device_entry;

/* The entry for device_name. *found = 0 (TW_OK) when no entry matches; a devices.json that is
 * missing or does not parse, or lacks its "devices" array, is an error naming the file. */
tw_status tw_devices_lookup(const char *device_name, tw_device_entry *out, int *found);

#endif
