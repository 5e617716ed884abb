/* Published throughput and energy figures (configs/published/ files) and the scenario presets that
 * mirror their setups (configs/scenarios/ files). Both are checked on load: a published row
 * without a unit, a source or a system is refused, and so is a preset whose model shape disagrees
 * with its model config. */
#ifndef TW_PUBLISHED_H
#define TW_PUBLISHED_H

#include <stddef.h>

#include <jansson.h>

#include "tw_status.h"

/* What a published value measures (the row's "metric"); each has exactly one accepted unit. */
typedef enum {
    TW_PUB_TPS_SYSTEM = 0, /* output_tokens_per_s_per_system, "tokens/s" */
    TW_PUB_TPS_PER_ACCEL,  /* output_tokens_per_s_per_accelerator, "tokens/s" */
    TW_PUB_J_PER_TOKEN,    /* j_per_output_token, "J/token" */
} tw_pub_metric;

const char *tw_pub_metric_name(tw_pub_metric m);
const char *tw_pub_metric_unit(tw_pub_metric m);

/* A benchmark's latency bounds ("latency_limits" of a row or preset): MLPerf's TTFT and TPOT limits
 * from LoadGen's mlperf.conf, met at a percentile of the requests. Both bounds are set (Server,
 * Interactive) or both are absent (Offline: no bound), and the source says which file gave them. */
typedef struct {
    int given;      /* the file has a "latency_limits" object */
    int bounded;    /* ttft_ms and tpot_ms are set; 0: the scenario has no latency bound */
    double ttft_ms; /* time to first token, 0 when unbounded */
    double tpot_ms; /* time per output token, 0 when unbounded */
    int percentile; /* the percentile both bounds apply at (99 for MLPerf), 0 when unbounded */
    char source[400];
} tw_latency_limits;

typedef struct {
    char id[96];
    char benchmark[96], round[64], division[32], submitter[96], url[256], citation[400];
    char verification[640]; /* how the figure reached the file: which file it was read from */
    char accelerator[96];
    int count;      /* accelerators in the system, >= 1 */
    double rated_w; /* rated watts per accelerator, > 0 */
    char rated_w_source[160];
    char model[64]; /* configs/models stem, e.g. "llama-2-70b" */
    char precision[32];
    char scenario[16]; /* offline, server, interactive */
    int batch;         /* 0 when not given */
    int input_tokens;  /* 0 when not given (lengths_note says why) */
    int output_tokens;
    char lengths_note[640];
    tw_pub_metric metric;
    char unit[16];
    double value;             /* > 0 */
    double value_high;        /* the top of a published range; equal to value for a single figure */
    tw_latency_limits limits; /* given = 0 when the row has none */
} tw_published_row;

#define TW_PUBLISHED_MAX 64

typedef struct {
    int n;
    tw_published_row rows[TW_PUBLISHED_MAX];
    char origin[512];
} tw_published_set;

/* Validates one row; `what` names it in errors ("figures.json row 3"). */
tw_status tw_published_parse_row(json_t *row, const char *what, tw_published_row *out);
/* Validates a whole file's JSON ({"schema_version": 1, "rows": [...]}): every row, unique ids. */
tw_status tw_published_parse(json_t *root, const char *what, tw_published_set *out);
/* Loads one file, or (path NULL) configs/published/figures.json through tw_config_path. */
tw_status tw_published_load(const char *path, tw_published_set *out);
/* The row with that id, or TW_ERR_INVALID listing the known ids. */
tw_status tw_published_find(const tw_published_set *s, const char *id,
                            const tw_published_row **out);

/* ---- scenario presets ------------------------------------------------------------------------ */

#define TW_PRESET_MAX_CAVEATS   16
#define TW_PRESET_MAX_PUBLISHED 8

typedef struct {
    char name[96];
    char origin[512];
    char description[256];
    char model[128]; /* configs/models stem or path: tokwatt run --model */
    int batch, prompt, gen, tp;
    char dtype[16], kv_dtype[16]; /* tokwatt run --dtype / --kv-dtype */
    char accelerator[96];         /* the published setup's accelerator */
    int accelerator_count;
    int n_published;
    char published[TW_PRESET_MAX_PUBLISHED][96]; /* ids in configs/published */
    int n_caveats;
    char caveats[TW_PRESET_MAX_CAVEATS][512]; /* what the preset cannot reproduce */
    tw_latency_limits limits;                 /* the published setup's bounds; given = 0 if none */
} tw_preset;

/* Reads configs/scenarios/NAME.json for a bare name, or the file at a path (with a '/' or ending
 * in .json), and checks it: its "shape" must equal the model config's (hidden, intermediate,
 * layers, heads, KV heads, vocab), tp must divide the heads and KV heads, prompt + gen must fit
 * max_position_embeddings, at least one caveat must be given, and "latency_limits", when given,
 * must be well formed. A preset whose model tw_model_load refuses (an architecture the engine does
 * not model yet) is refused with that error. */
tw_status tw_preset_load(const char *name_or_path, tw_preset *out);
/* The same checks on JSON already read; `origin` names it in errors. */
tw_status tw_preset_parse(json_t *root, const char *origin, tw_preset *out);
/* Every check of tw_preset_parse that does not need the model config (fields, dtypes, caveats,
 * latency limits, the shape's keys present as integers): for inspecting a preset whose model the
 * engine refuses. A preset that passes this is still not runnable until tw_preset_parse passes. */
tw_status tw_preset_parse_fields(json_t *root, const char *origin, tw_preset *out);

#endif
