/* The result file's schema in C (doc/RESULTS.md, doc/result.schema.json): the structs a run
 * produces, one writer (structs -> JSON) and one reader (JSON -> the same structs) that every
 * command uses: `run` writes with it, `compare`, `report` and `project` read with it.
 *
 * Versions: schema_version is the major version; a reader refuses any other major version by
 * its number (a file from a newer tokwatt is not guessed at). schema_minor counts compatible
 * additions (new keys; a file without it is 1.0): a reader reads every minor version of its
 * major, ignoring keys it does not know.
 *
 * The reader is strict on what it finds and lenient on what it does not: a key of the wrong
 * type, a string longer than its field, an unknown kind, a missing scenario or metrics object is
 * an error naming the file and the key; an absent figure reads as NAN (as null does), an absent
 * count as its default. Three sub-documents stay JSON, described in doc/RESULTS.md but not
 * figures of the run: the model's config (Hugging Face config.json as read), the provenance
 * (what ran where; it grows with the build), and a power sensor's own description
 * (energy.provenance: NVML GPUs, RAPL zones). */
#ifndef TW_RESULT_SCHEMA_H
#define TW_RESULT_SCHEMA_H

#include <jansson.h>

#include "tw_metrics.h"
#include "serve/tw_serve_result.h"
#include "tw_status.h"

#define TW_RESULT_SCHEMA_MAJOR 1
/* 1.1: each row records its plan; 1.2: mixtures of experts (experts, scenario routing_skew, ep);
 * 1.3: the read ceiling's method, the bf16 ceiling, metrics.exceeds_ceiling, the measured peak's
 * dtype, the datasheet figures and fractions; 1.4: serving scenarios (a row's "serving" block,
 * tw_serve_result: per-request records, latency distributions, goodput, the MLPerf constraint, the
 * capacity search); 1.5: the decode step's FLOPs, GFLOP/s, MFU and fraction of its roofline */
#define TW_RESULT_SCHEMA_MINOR 5

typedef struct {
    char model[128], backend[32];
    int threads;
    int has_cuda; /* gemm and cuda_graph are recorded (the CUDA backend) */
    char gemm[32];
    int cuda_graph;
    char dtype[16], kv_dtype[16];
    int batch, prompt, gen, warmup, reps;
    long long seed;
    int has_routing_skew; /* a model with experts: routing_skew is recorded */
    double routing_skew;
    int tp, devices;
    int ep;          /* expert-parallel degree; 0: absent (none) */
    char preset[96]; /* "" when the run mirrors no preset (no caveats then) */
    int ncaveats;
    char **caveats;
} tw_result_scenario;

/* One phase of the energy block (prefill, decode, e2e); NAN stands for null. */
typedef struct {
    int present; /* 0: the phase is null (not measured) */
    double energy_j, seconds, mean_power_w, mean_power_w_per_device, peak_power_w;
    int regions;
    double tokens, j_per_token, tokens_per_j;
    int has_derived;  /* e2e: "derived" recorded */
    char derived[96]; /* e2e: how it was derived from the other phases; "" for false */
} tw_energy_phase;

typedef struct {
    char source[16]; /* nvml | rapl | assumed | none */
    int assumed;
    char label[256];
    char method[1536];
    int nfallbacks;
    char fallbacks[3][512]; /* why each earlier source was not used */
    int devices;            /* power domains the figures cover */
    int sample_interval_ms;
    double assumed_w_per_device; /* NAN unless assumed */
    json_t *provenance;          /* the sensor's own description; NULL for null */
    tw_energy_phase prefill, decode, e2e;
    size_t ntrace;
    double *trace_t_s, *trace_power_w;
    int trace_truncated;
    char trace_note[160];
    int ranks;              /* > 0: combined over the ranks of a tensor-parallel degree */
    char combined[320];     /* how they were combined ("" when not) */
    char not_combined[200]; /* why not, when they could not be ("" otherwise) */
} tw_energy;

/* One rank's own figures in a tensor-parallel row. */
typedef struct {
    int rank;
    double ttft_s, tpot_p50_s, decode_tokens_per_s, collective_share, mean_power_w;
} tw_rank_figures;

typedef enum {
    TW_RANKS_NONE = 0,     /* one process: no "ranks" key */
    TW_RANKS_GATHERED,     /* "ranks": one object per rank */
    TW_RANKS_NOT_GATHERED, /* "ranks": null, and ranks_note says why */
} tw_ranks_state;

/* The memory a row's combination needs on its own, and the engine it ran on (sized for the
 * largest combination of its weight dtype when they fit together). Bytes per rank when per_rank. */
typedef struct {
    int present;
    int per_rank;
    long long available_bytes;
    long long weights_bytes, kv_cache_bytes, activation_bytes, total_bytes;
    int engine_max_batch, engine_max_prompt, engine_max_seq, engine_shared;
    long long engine_weights_bytes, engine_kv_cache_bytes, engine_activation_bytes,
        engine_total_bytes;
} tw_result_plan;

/* Expert parallelism's all-to-alls over a row's measured repetitions (this rank's: rank 0's). */
typedef struct {
    int ep;                       /* ranks the experts are split over */
    double dispatch_s, combine_s; /* seconds in the two all-to-alls, waiting included */
    double alltoall_share;        /* their sum / the measured seconds */
    long long alltoall_calls;     /* all-to-alls */
    long long alltoall_bytes;     /* bytes this rank sent, padded blocks included */
    double alltoall_algbw_gbps, alltoall_busbw_gbps;
} tw_result_ep;

/* The experts of a mixture-of-experts row (doc/MOE.md): the tokens routed to each over the
 * measured repetitions, and what a decode step reached. */
typedef struct {
    int n_experts, experts_per_token, moe_layers;
    long long active_params; /* weights that multiply one token (tw_model_params_active) */
    double routing_skew;
    long long *load;           /* [n_experts]: tokens routed to each, summed over MoE layers */
    long long *load_per_layer; /* [moe_layers][n_experts] */
    double max_over_mean_load; /* the busiest expert's load / the mean */
    double decode_experts_per_layer;         /* distinct experts a decode step reached, mean */
    double decode_experts_per_layer_uniform; /* the same under uniform routing */
    int has_ep;
    tw_result_ep ep;
} tw_result_experts;

typedef struct {
    tw_result_scenario scenario;
    int complete;
    char incomplete_reason[768];
    int has_dump; /* --dump-logits was given */
    char dump_path[4096];
    int dump_written;
    char dump_error[640];
    tw_metrics metrics;
    int token_batch, token_prompt, token_gen; /* shapes of the token arrays (0: absent) */
    int *prompt_tokens;                       /* [token_batch][token_prompt] */
    int *generated_tokens;                    /* [token_batch][token_gen] */
    tw_ranks_state ranks_state;
    int nranks;
    tw_rank_figures *ranks;
    char ranks_note[256];
    int has_energy;
    tw_energy energy;
    char projection_headline[1024];
    tw_result_plan plan;
    int has_experts; /* a model with experts */
    tw_result_experts experts;
    tw_serve_result *serving; /* a serving scenario's block (owned); NULL for a static batch */
} tw_result_row;

typedef struct {
    int present;
    double membw_gbps, peak_gflops; /* NAN: not measured */
    char membw_source[160], peak_source[160];
    char membw_method[512];  /* how the read ceiling was measured ("" when not) */
    double peak_bf16_gflops; /* the bf16 ceiling (bf16 rows' MFU); NAN: not measured */
    char peak_bf16_source[272];
    /* schema 1.3: the measured peak's dtype; the device's datasheet figures (devices.json) */
    char peak_dtype[8];                                 /* "" when not recorded (older files) */
    double datasheet_membw_gbps, datasheet_peak_gflops; /* NAN: no entry, or no figure */
    char datasheet_source[256];
    int has_datasheet; /* the four above are written (new runs; files of schema >= 1.3) */
} tw_result_roofline;

/* The first combination's memory plan and the model's parameter count. */
typedef struct {
    int present;
    long long params; /* -1: absent */
    int has_plan;
    long long weights_bytes, kv_cache_bytes, activation_bytes;
    int per_rank;
} tw_result_memory;

typedef struct {
    int present; /* the run was launched over ranks */
    char kind[16];
    int ranks, hosts, max_ranks_per_host;
    int nrank_hosts;
    char **rank_hosts;
    int devices_per_rank;
    double timeout_s;
} tw_result_comm;

typedef struct {
    int schema_version, schema_minor;
    char kind[16]; /* "run": one combination, its row's keys at the top; "sweep": rows[] */
    int complete;
    char incomplete_reason[768];
    int interrupted;
    char interrupted_signal[32];
    int interrupted_rank;
    json_t *model; /* the model's config.json as read */
    int nrows;
    tw_result_row *rows;
    tw_result_roofline roofline;
    tw_result_memory memory;
    tw_result_comm comm;
    json_t *provenance;
} tw_result;

/* ---- writer ------------------------------------------------------------------------------------
 */
/* The whole file (new reference). kind "run" needs exactly one row. */
tw_status tw_result_to_json(const tw_result *r, json_t **out);
/* One row as its own object (the rows[] element of a sweep; CSV lines). New reference. */
json_t *tw_result_row_to_json(const tw_result_row *row);
json_t *tw_energy_to_json(const tw_energy *e);
json_t *tw_metrics_to_json(const tw_metrics *m);
json_t *tw_result_roofline_to_json(const tw_result_roofline *r);
json_t *tw_result_memory_to_json(const tw_result_memory *m);

/* ---- reader ------------------------------------------------------------------------------------
 */
/* From a parsed document; origin names it in errors. Refuses another major schema version. */
tw_status tw_result_from_json(const json_t *root, const char *origin, tw_result *out);
/* tw_json_load_file + tw_result_from_json. */
tw_status tw_result_read_file(const char *path, tw_result *out);
tw_status tw_energy_from_json(const json_t *j, const char *origin, tw_energy *out);

/* A string of the provenance ("host", "cpu_model", "gpu_name"), "" when absent. */
const char *tw_result_provenance_str(const tw_result *r, const char *key);

/* ---- ownership ---------------------------------------------------------------------------------
 */
void tw_result_free(tw_result *r);
void tw_result_row_free(tw_result_row *row);
void tw_energy_free(tw_energy *e);
/* An empty block: no phase, every figure NAN (what an unmeasured block reads as). */
void tw_energy_init(tw_energy *e);
tw_status tw_result_scenario_set_caveats(tw_result_scenario *s, const char *const *caveats, int n);

#endif
