/* Locating the data files under configs/: $TW_CONFIG_DIR, else the source tree's configs/ (the
 * TW_SOURCE_DIR compile definition), else ./configs. */
#ifndef TW_CONFIG_H
#define TW_CONFIG_H

#include <stddef.h>

#include "tw_status.h"

/* Resolves `rel` (e.g. "models/tiny.json") to an existing file; TW_ERR_IO naming every place
 * looked at when none has it. */
tw_status tw_config_path(const char *rel, char *out, size_t n);

#endif
