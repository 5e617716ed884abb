/* The figures tokwatt reports, one function per row of doc/METRICS.md, with the token, FLOP and
 * byte counts they rest on. Every command that reports a figure computes it here: `run` when it
 * measures, `compare`, `report` and `project` when they read a result file, the power meter for
 * the energy block. A function returns NAN when its inputs cannot give the figure (no decode
 * step, no ceiling, nothing measured): the result file then holds null, never a made-up number.
 *
 * The FLOPs per token stay in harness/model.c (tw_model_flops_per_token): they are a property of
 * the architecture (which weights multiply a token, how far each layer attends) that the model
 * table owns and that changes with it (sliding windows, the k active experts of a mixture of
 * experts, latent attention); the prefill FLOPs here multiply them out. */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include "tw_backend.h"
#include "tw_model.h"
#include "tw_util.h"

/* ---- token counts of one repetition (B sequences, prompt P, G generated tokens) ------------ */
double tw_metric_prefill_tokens(int batch, int prompt); /* B x P */
double tw_metric_decode_tokens(int batch, int gen); /* B x (G - 1): the first comes from prefill */
double tw_metric_e2e_tokens(int batch, int gen);    /* B x G generated (output) tokens */

/* ---- throughput and latency of one repetition ---------------------------------------------- */
double tw_metric_prefill_tokens_per_s(int batch, int prompt, double ttft_s);
double tw_metric_decode_tokens_per_s(int batch, int gen, double decode_s); /* NAN for G = 1 */
double tw_metric_e2e_tokens_per_s(int batch, int gen, double ttft_s, double decode_s);

/* One measured repetition: TTFT (the prefill call, first token's argmax included), the decode
 * steps' total and each step's time ([gen - 1]). */
typedef struct {
    double ttft_s, decode_s;
    const double *step_s;
} tw_rep_times;

/* Over the complete repetitions: TTFT (median and spread), and TPOT over every decode step of
 * every repetition (mean, p50, p99; the median step is p50). */
tw_stats tw_metric_ttft_s(const tw_rep_times *reps, int n);
tw_stats tw_metric_tpot_s(const tw_rep_times *reps, int n, int gen);

/* ---- the roofline ---------------------------------------------------------------------------- */
/* The mean decode context: P + G/2 (integer division), the positions a step attends on average. */
int tw_metric_decode_context(int prompt, int gen);
/* The fewest bytes one decode step must read: every weight that multiplies the token once (the
 * LM head's, tied or not; of a mixture of experts, every non-expert weight and the whole weights
 * of `experts_read` routed experts per MoE layer, at most all of them; ignored for a dense
 * model), the B embedding rows, and the KV cache of the B sequences at context ctx as far as
 * each layer attends (min(ctx, W) for a sliding window W; for latent attention the latent and
 * the rope key, tw_model_kv_elems_per_position). */
double tw_metric_decode_bytes_per_step(const tw_model_config *c, tw_dtype w_dtype,
                                       tw_dtype kv_dtype, int batch, int ctx, double experts_read);
/* Distinct experts a batch of B decode tokens reaches per MoE layer when each picks k of E
 * uniformly: E (1 - (1 - k/E)^B); 0 for a dense model. */
double tw_metric_uniform_experts(const tw_model_config *c, int batch);
/* The experts a decode step read per MoE layer: the engine's count over the measured decode
 * steps when there was one (> 0), else the uniform expectation; 0 for a dense model. */
double tw_metric_decode_experts(const tw_model_config *c, double measured, int batch);
double tw_metric_decode_bandwidth_gbps(double bytes_per_step, double step_s);
double tw_metric_decode_bandwidth_fraction(double bandwidth_gbps, double membw_gbps);
/* B x P x FLOPs per token at context P/2 (tw_model_flops_per_token). */
double tw_metric_prefill_flops(const tw_model_config *c, int batch, int prompt);
double tw_metric_prefill_gflops(double flops, double ttft_s);
/* Model FLOPs utilisation, prefill's or decode's: achieved GFLOP/s over the peak (NAN without one).
 */
double tw_metric_mfu(double gflops, double peak_gflops);
/* B x FLOPs per token at the decode context ctx (tw_model_flops_per_token). */
double tw_metric_decode_flops_per_step(const tw_model_config *c, int batch, int ctx);
/* The decode step's roofline: the larger of its bytes over the read ceiling and its FLOPs over
 * the compute ceiling (NAN unless both are known), and the measured step as a fraction of it
 * (roofline / step: 1 is the ceiling, above 1 the ceilings were measured too low). A batched
 * step is bound by FLOPs well before its bandwidth fraction falls, so this is its figure. */
double tw_metric_decode_roofline_s(double bytes_per_step, double flops_per_step, double membw_gbps,
                                   double peak_gflops);
double tw_metric_decode_roofline_fraction(double roofline_s, double step_s);
/* Roofline coordinates of a result row, per device (tokwatt report's chart):
 * prefill intensity = prefill FLOPs / weight bytes (params x bytes per weight, read once);
 * decode intensity = 2 x params x B FLOPs per step / decode bytes per step; performance =
 * prefill GFLOP/s / devices, and decode intensity x decode bandwidth / devices. */
double tw_metric_prefill_intensity(double prefill_gflops, double ttft_s, double params,
                                   double bytes_per_weight);
double tw_metric_decode_intensity(double params, int batch, double bytes_per_step);

/* Seconds of the measured repetitions: TTFT + decode time of each complete one. */
double tw_metric_measured_s(const tw_rep_times *reps, int n);
/* Seconds in collectives / seconds of the measured repetitions (also the all-to-all share of
 * expert parallelism: dispatch + combine seconds / measured seconds). */
double tw_metric_collective_share(double comm_s, double measured_s);

/* ---- mixtures of experts (doc/MOE.md) ------------------------------------------------------ */
/* The busiest expert's load over the mean load, of the tokens routed to each of n experts
 * (NAN when none were routed). */
double tw_metric_expert_max_over_mean(const long long *load, int n);
/* All-to-all bandwidths in nccl-tests' convention: algbw = bytes / seconds / 1e9, bytes being
 * what this rank sent (its per-rank buffer); busbw = algbw x (N - 1) / N over N ranks. */
double tw_metric_alltoall_algbw_gbps(double bytes, double seconds);
double tw_metric_alltoall_busbw_gbps(double algbw_gbps, int ranks);

/* ---- energy (the energy block's phases) --------------------------------------------------------
 */
double tw_metric_mean_power_w(double energy_j, double seconds);
double tw_metric_j_per_token(double energy_j, double tokens);
double tw_metric_tokens_per_j(double energy_j, double tokens);

/* ---- per device --------------------------------------------------------------------------------
 */
/* Power domains of a tensor-parallel degree: one per rank for device-level power (a GPU each),
 * one per distinct host for host-level power (RAPL, a CPU socket's assumed watts), so that ranks
 * sharing a host count its power once. rank_host[r] names rank r's host (NULL: ranks unknown,
 * then one per rank). */
int tw_metric_power_domains(const char *const *rank_host, int ranks, int host_level);
/* A system figure per device (tokens/s per device for the projection, per accelerator for
 * published comparisons): value / devices, NAN for devices < 1. */
double tw_metric_per_device(double value, int devices);

/* ---- one combination, summarised ------------------------------------------------------------- */
/* The metrics block of a result row: medians over complete repetitions with their spread. */
typedef struct {
    tw_stats prefill_tokens_per_s, decode_tokens_per_s, e2e_tokens_per_s, ttft_s, tpot_s;
    double decode_bytes_per_step, decode_bandwidth_gbps, decode_bandwidth_fraction;
    double prefill_flops, prefill_gflops, prefill_mfu;
    /* decode FLOPs per step, GFLOP/s at the median step, that over the compute ceiling, and the
     * median step against the roofline (tw_metric_decode_roofline_fraction; schema 1.5) */
    double decode_flops_per_step, decode_gflops, decode_mfu, decode_roofline_fraction;
    int has_decode_flops; /* the four above are part of the block (absent from older files and
                           * from serving rows) */
    /* the same fractions of the datasheet figures (configs/devices.json; schema 1.3) */
    double decode_bandwidth_fraction_datasheet, prefill_mfu_datasheet;
    int has_datasheet;       /* the two above are part of the block (absent from older files) */
    double collective_share; /* 0 without a communicator */
    int repetitions_complete;
    int exceeds_ceiling; /* a fraction above 1: the ceiling was measured too low (flagged, never
                          * clamped); -1: unknown (a file without the flag) */
} tw_metrics;

/* Recomputes the decode bandwidth fraction against membw_gbps (and the MFUs against peak_gflops
 * unless NAN: kept), the decode roofline fraction and the exceeds_ceiling flag. */
void tw_metrics_set_ceiling_fractions(tw_metrics *m, double membw_gbps, double peak_gflops);

/* What a combination's figures are computed from. */
typedef struct {
    const tw_model_config *cfg;
    tw_dtype w_dtype, kv_dtype;
    int batch, prompt, gen;
    double membw_gbps, peak_gflops; /* the ceilings (<= 0: unknown, the fractions are NAN) */
    double datasheet_membw_gbps, datasheet_peak_gflops; /* devices.json (<= 0: none) */
    int have_comm;         /* a communicator: the collective share is measured */
    double comm_s;         /* seconds in collectives during the measured repetitions */
    double decode_experts; /* mixtures of experts: distinct experts a decode step reached per MoE
                            * layer, measured (0: not measured; tw_metric_decode_experts) */
} tw_metric_inputs;

/* Every figure of the metrics block from n complete repetitions (n may be 0: NANs). */
tw_status tw_metrics_summarise(const tw_metric_inputs *in, const tw_rep_times *reps, int n,
                               tw_metrics *out);

#endif
