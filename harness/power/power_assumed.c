/* Assumed power: the rated watts of a device or CPU from configs/devices.json, for runs where
 * nothing can be measured. Always labelled as assumed by the meter. */
#include <stdio.h>
#include <string.h>

#include "tw_devices.h"
#include "tw_power.h"
#include "tw_util.h"

tw_status tw_power_rated_w(const char *name, double *watts, char *entry, size_t entry_n,
                           char *source, size_t source_n) {
    if (!name || !*name) return TW_ERR(TW_ERR_INVALID, "no device name to look up rated watts");
    tw_device_entry d;
    int found = 0;
    TW_TRY(tw_devices_lookup(name, &d, &found));
    if (!found)
        return TW_ERR(TW_ERR_UNSUPPORTED, "no entry of configs/devices.json matches \"%s\"", name);
    if (!(d.rated_w > 0) || !d.name[0] || !d.source[0])
        return TW_ERR(TW_ERR_PARSE,
                      "configs/devices.json: entry for \"%s\" lacks a positive rated_w, name or "
                      "source",
                      name);
    *watts = d.rated_w;
    if (entry) snprintf(entry, entry_n, "%s", d.name);
    if (source) snprintf(source, source_n, "%s", d.source);
    return TW_OK;
}
