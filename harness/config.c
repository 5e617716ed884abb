/* Data-file lookup shared by models, devices, growth curves and assumptions. */
#include "tw_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

tw_status tw_config_path(const char *rel, char *out, size_t n) {
    const char *env = getenv("TW_CONFIG_DIR");
    const char *roots[3];
    int nr = 0;
    if (env && *env) roots[nr++] = env;
#ifdef TW_SOURCE_DIR
    roots[nr++] = TW_SOURCE_DIR "/configs";
#endif
    roots[nr++] = "configs";
    char tried[1024] = "";
    size_t used = 0;
    for (int i = 0; i < nr; i++) {
        snprintf(out, n, "%s/%s", roots[i], rel);
        if (access(out, R_OK) == 0) return TW_OK;
        int w = snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", out);
        if (w > 0 && (size_t)w < sizeof tried - used) used += (size_t)w;
    }
    return TW_ERR(TW_ERR_IO, "config file %s not found (looked at %s; set TW_CONFIG_DIR)", rel,
                  tried);
}
