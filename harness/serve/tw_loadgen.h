/* Load generator for the serving scenarios (doc/SERVING.md): which requests a run issues, when, and
 * with which input and output lengths.
 *
 * Scenarios (the names MLPerf LoadGen and vLLM's benchmark_serving users know):
 *   offline      every request arrives at t = 0 (MLPerf Offline, vLLM --request-rate inf)
 *   server       Poisson arrivals at rate R requests/s (MLPerf Server, vLLM --request-rate R)
 *   interactive  the same arrival process as server; only the latency limits differ (MLPerf's
 *                Interactive category is LoadGen's Server scenario under the "-interactive"
 *                model's tighter limits in mlperf.conf)
 *   concurrency  closed loop with N requests in flight: a request is issued when one finishes
 *                (vLLM --max-concurrency N with every request ready at once)
 *
 * Determinism: every random draw is a pure function of (seed, stream, request index), made with
 * the counter-based SplitMix64 generator below, so request i has the same lengths and the same
 * unit exponential variate E_i on any machine, whatever the rate or the other requests. Server
 * arrivals are t_i = sum_{j<=i} E_j / R: the same seed at another rate gives the same schedule
 * rescaled in time (common random numbers across the trials of a capacity search). The uniform
 * variates are bit-identical everywhere; E_i = -log(u) goes through the C library's log(), which
 * glibc computes within about half an ulp, so other C libraries may differ in the last bit.
 *
 * Bounds: n_requests measured requests (after n_warmup warm-up requests, issued first under the
 * same scenario and excluded from every figure) and/or duration_s: no request is issued at or
 * after duration_s. Issuing stops at whichever bound comes first; requests already issued run to
 * completion. */
#ifndef TW_LOADGEN_H
#define TW_LOADGEN_H

#include <stdint.h>

#include "tw_status.h"

/* ---- counter-based random numbers --------------------------------------------------------- */

/* Output number `index` (0-based) of SplitMix64 (Steele, Lea and Flood, OOPSLA 2014; Vigna's
 * splitmix64.c) seeded with `key`: the generator's state after index + 1 steps is
 * key + (index + 1) * 0x9e3779b97f4a7c15, finalised by the mix below. Random access, no state. */
static inline uint64_t tw_serve_splitmix64_at(uint64_t key, uint64_t index) {
    uint64_t z = key + (index + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Draw `index` of stream `stream` under `seed`: the stream's key is itself a SplitMix64 output,
 * so streams of one seed and seeds of one stream are unrelated sequences. */
static inline uint64_t tw_serve_rng_u64(uint64_t seed, uint32_t stream, uint64_t index) {
    return tw_serve_splitmix64_at(tw_serve_splitmix64_at(seed, stream), index);
}

/* Uniform in the open interval (0, 1): the top 53 bits, centred in their interval. */
static inline double tw_serve_rng_u01(uint64_t seed, uint32_t stream, uint64_t index) {
    return ((double)(tw_serve_rng_u64(seed, stream, index) >> 11) + 0.5) * 0x1p-53;
}

enum {
    TW_LOADGEN_STREAM_ARRIVAL = 1,
    TW_LOADGEN_STREAM_IN_BIN,
    TW_LOADGEN_STREAM_IN_POS,
    TW_LOADGEN_STREAM_OUT_BIN,
    TW_LOADGEN_STREAM_OUT_POS,
    TW_LOADGEN_STREAM_JOINT_BIN,
};

/* ---- request lengths ---------------------------------------------------------------------- */

typedef enum { TW_LEN_FIXED = 0, TW_LEN_UNIFORM, TW_LEN_HISTOGRAM } tw_len_kind;

/* A bin of integer lengths lo..hi (both included), drawn uniformly within the bin. */
typedef struct {
    int lo, hi;
    double weight; /* > 0; weights need not sum to 1 */
} tw_len_bin;

typedef struct {
    tw_len_kind kind;
    int value;  /* fixed */
    int lo, hi; /* uniform: lo..hi inclusive */
    int n_bins; /* histogram */
    tw_len_bin *bins;
    double *cdf; /* cumulative normalised weights, cdf[n_bins - 1] == 1 */
} tw_len_dist;

/* A joint bin: input lo..hi and output lo..hi, each uniform within the bin, independently. */
typedef struct {
    int in_lo, in_hi, out_lo, out_hi;
    double weight;
} tw_len_joint_bin;

typedef struct {
    char name[128];
    char origin[512];    /* file it was read from, or "fixed"/"uniform" */
    char source[2048];   /* where the figures come from (files say; built-ins say "given") */
    char stand_in[2048]; /* what in the file is not the dataset's own distribution */
    int joint;           /* 1: jbins give (input, output) jointly; 0: independent marginals */
    tw_len_dist input, output;
    int n_jbins;
    tw_len_joint_bin *jbins;
    double *jcdf;
} tw_loadgen_lengths;

/* Every length >= 1 and <= TW_LOADGEN_MAX_LEN. */
#define TW_LOADGEN_MAX_LEN 10000000

tw_status tw_loadgen_lengths_fixed(tw_loadgen_lengths *L, int input_tokens, int output_tokens);
tw_status tw_loadgen_lengths_uniform(tw_loadgen_lengths *L, int in_lo, int in_hi, int out_lo,
                                     int out_hi);
/* Reads configs/serving/lengths/NAME.json for a bare name, or the file at a path (anything with a
 * '/' or ending in .json). Format in doc/SERVING.md; errors name the file and the field. */
tw_status tw_loadgen_lengths_load(const char *name_or_path, tw_loadgen_lengths *L);
tw_status tw_loadgen_lengths_parse(const char *text, const char *origin, tw_loadgen_lengths *L);
void tw_loadgen_lengths_free(tw_loadgen_lengths *L);

/* The lengths of request `index` under `seed`. */
void tw_loadgen_lengths_draw(const tw_loadgen_lengths *L, uint64_t seed, int64_t index,
                             int *input_tokens, int *output_tokens);
/* Exact expected lengths of the distribution (not a sample mean). */
void tw_loadgen_lengths_mean(const tw_loadgen_lengths *L, double *input_mean, double *output_mean);
/* The largest lengths any draw can have; *total_max is the largest input + output of one request
 * (for joint bins, the largest in_hi + out_hi; otherwise in_max + out_max). */
void tw_loadgen_lengths_max(const tw_loadgen_lengths *L, int *input_max, int *output_max,
                            int64_t *total_max);

/* ---- scenarios ---------------------------------------------------------------------------- */

typedef enum {
    TW_LOADGEN_OFFLINE = 0,
    TW_LOADGEN_SERVER,
    TW_LOADGEN_INTERACTIVE,
    TW_LOADGEN_CONCURRENCY,
} tw_loadgen_scenario;

const char *tw_loadgen_scenario_name(tw_loadgen_scenario s);
/* "offline", "server", "interactive", "concurrency"; TW_ERR_INVALID otherwise. */
tw_status tw_loadgen_scenario_parse(const char *name, tw_loadgen_scenario *out);

typedef struct {
    tw_loadgen_scenario scenario;
    double rate_rps; /* server, interactive: > 0 */
    int concurrency; /* concurrency: >= 1 */
    int64_t n_requests;
    int64_t n_warmup;
    double duration_s; /* 0: no duration bound (offline takes none) */
    uint64_t seed;
    const tw_loadgen_lengths *lengths; /* not owned */
} tw_loadgen_config;

/* Checks a configuration: the scenario's parameter, at least one bound (offline needs
 * n_requests), non-negative counts. TW_ERR_INVALID with a one-line reason. */
tw_status tw_loadgen_check(const tw_loadgen_config *c);

typedef struct {
    int64_t index;     /* issue order, 0-based, warm-up requests first */
    int warmup;        /* 1: excluded from the figures */
    double arrival_s;  /* scheduled arrival from the run's origin */
    int input_tokens;  /* prompt length */
    int output_tokens; /* tokens to generate (the run ignores end-of-sequence) */
} tw_loadgen_request;

typedef struct {
    tw_loadgen_config cfg;
    int64_t next;
    double t_s; /* arrival of the last request issued (server, interactive) */
} tw_loadgen;

tw_status tw_loadgen_init(tw_loadgen *lg, const tw_loadgen_config *cfg);
/* The next request in issue order: 1 with *r filled, 0 when a bound ends issuing. now_s is the
 * time the caller issues at, used by the closed loop only (its arrival is now_s, and duration_s
 * ends issuing there); open-loop scenarios ignore it. */
int tw_loadgen_next(tw_loadgen *lg, double now_s, tw_loadgen_request *r);
/* Total requests the bounds allow when known in advance (offline; open loop with n_requests),
 * else -1 (a duration bound alone, or the closed loop under a duration). */
int64_t tw_loadgen_max_requests(const tw_loadgen_config *c);

#endif
