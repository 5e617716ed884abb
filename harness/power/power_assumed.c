/* Assumed power: the rated watts of a device or CPU from configs/devices.json, for runs where
 * nothing can be measured. Always labelled as assumed by the meter. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "tw_config.h"
#include "tw_power.h"
#include "tw_util.h"

static int tw_icontains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (!n) return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return 0;
}

tw_status tw_power_rated_w(const char *name, double *watts, char *entry, size_t entry_n,
                           char *source, size_t source_n) {
    if (!name || !*name) return TW_ERR(TW_ERR_INVALID, "no device name to look up rated watts");
    char path[4096];
    TW_TRY(tw_config_path("devices.json", path, sizeof path));
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    json_t *devs = json_object_get(root, "devices");
    tw_status st = TW_OK;
    if (!json_is_array(devs)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: missing \"devices\" array", path);
        goto done;
    }
    size_t i, best_len = 0;
    json_t *d, *best = NULL;
    json_array_foreach(devs, i, d) {
        json_t *m = json_object_get(d, "match"), *s;
        size_t k;
        json_array_foreach(m, k, s) {
            const char *pat = json_string_value(s);
            if (pat && strlen(pat) > best_len && tw_icontains(name, pat)) {
                best = d;
                best_len = strlen(pat);
            }
        }
    }
    if (!best) {
        st = TW_ERR(TW_ERR_UNSUPPORTED, "no entry of %s matches \"%s\"", path, name);
        goto done;
    }
    json_t *w = json_object_get(best, "rated_w");
    const char *bn = json_string_value(json_object_get(best, "name"));
    const char *bs = json_string_value(json_object_get(best, "source"));
    if (!json_is_number(w) || json_number_value(w) <= 0 || !bn || !bs) {
        st = TW_ERR(TW_ERR_PARSE, "%s: entry for \"%s\" lacks a positive rated_w, name or source",
                    path, name);
        goto done;
    }
    *watts = json_number_value(w);
    if (entry) snprintf(entry, entry_n, "%s", bn);
    if (source) snprintf(source, source_n, "%s", bs);
done:
    json_decref(root);
    return st;
}
