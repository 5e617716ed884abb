/* The one reader of configs/devices.json (tw_devices.h). */
#include "tw_devices.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"

static int tw_dev_icontains(const char *hay, const char *needle) {
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

static double tw_dev_num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) && json_number_value(v) > 0 ? json_number_value(v) : 0;
}

static void tw_dev_str(const json_t *o, const char *key, char *out, size_t n) {
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(out, n, "%s", v ? v : "");
}

tw_status tw_devices_lookup(const char *device_name, tw_device_entry *out, int *found) {
    memset(out, 0, sizeof *out);
    *found = 0;
    char path[4096];
    TW_TRY(tw_config_path("devices.json", path, sizeof path));
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    const json_t *devs = json_object_get(root, "devices");
    if (!json_is_array(devs)) {
        json_decref(root);
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"devices\" array", path);
    }
    size_t i, k, best_len = 0;
    const json_t *d, *best = NULL, *m;
    const char *best_match = "";
    if (device_name && *device_name) {
        json_array_foreach(devs, i, d) {
            json_array_foreach(json_object_get(d, "match"), k, m) {
                const char *pat = json_string_value(m);
                if (pat && strlen(pat) > best_len && tw_dev_icontains(device_name, pat)) {
                    best = d;
                    best_len = strlen(pat);
                    best_match = pat;
                }
            }
        }
    }
    if (best) {
        *found = 1;
        tw_dev_str(best, "name", out->name, sizeof out->name);
        tw_dev_str(best, "kind", out->kind, sizeof out->kind);
        tw_dev_str(best, "source", out->source, sizeof out->source);
        snprintf(out->match, sizeof out->match, "%s", best_match);
        out->rated_w = tw_dev_num(best, "rated_w");
        out->peak_bf16_flops = tw_dev_num(best, "peak_bf16_flops");
        out->peak_fp32_flops = tw_dev_num(best, "peak_fp32_flops");
        out->mem_bw_bytes_per_s = tw_dev_num(best, "mem_bw_bytes_per_s");
    }
    json_decref(root);
    return TW_OK;
}
