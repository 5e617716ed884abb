/* MLPerf latency limits for the token-latency benchmarks, read from configs/serving/
 * mlperf-limits.json: a transcription of MLCommons' loadgen/mlperf.conf that keeps, for every
 * figure, the mlperf.conf lines it was read from (the loader re-reads the figure from those lines
 * and refuses a file where they disagree), and the repository, path and commit. */
#ifndef TW_SERVE_LIMITS_H
#define TW_SERVE_LIMITS_H

#include "tw_status.h"

typedef struct {
    char model[64];         /* mlperf.conf model of the Server scenario, e.g. "llama2-70b" */
    char conf_model[64];    /* the key the figures are read under ("llama2-70b-interactive") */
    char tokwatt_model[64]; /* the configs/models stem, e.g. "llama-2-70b", or "" */
    char scenario[16];      /* "server" or "interactive" */
    double ttft_s;          /* p99 time-to-first-token limit (mlperf.conf ttft_latency, ms) */
    double tpot_s;          /* p99 time-per-output-token limit (tpot_latency, ms) */
    double percentile;      /* 99 (*.Server.target_latency_percentile) */
    double min_duration_s;  /* 600 (*.Server.min_duration, ms) */
    char source[400];       /* "mlcommons/inference loadgen/mlperf.conf @ <commit> (<date>)" */
} tw_serve_limits;

/* Looks `model` up (an mlperf.conf model such as "llama2-70b" or "llama3_1-8b", or the tokwatt
 * model stem such as "llama-2-70b") for `scenario` ("server" or "interactive"). path NULL reads
 * configs/serving/mlperf-limits.json. TW_ERR_INVALID names the models the file has when none
 * matches; TW_ERR_PARSE names the entry whose figures disagree with its quoted lines. */
tw_status tw_serve_limits_load(const char *path, const char *model, const char *scenario,
                               tw_serve_limits *out);

#endif
