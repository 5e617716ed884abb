/* The figures of doc/METRICS.md (tw_metrics.h). */
#include "tw_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double tw_metric_prefill_tokens(int batch, int prompt) {
    return (double)batch * prompt;
}

double tw_metric_decode_tokens(int batch, int gen) {
    return (double)batch * (gen - 1);
}

double tw_metric_e2e_tokens(int batch, int gen) {
    return (double)batch * gen;
}

double tw_metric_prefill_tokens_per_s(int batch, int prompt, double ttft_s) {
    return tw_metric_prefill_tokens(batch, prompt) / ttft_s;
}

double tw_metric_decode_tokens_per_s(int batch, int gen, double decode_s) {
    return gen > 1 ? tw_metric_decode_tokens(batch, gen) / decode_s : NAN;
}

double tw_metric_e2e_tokens_per_s(int batch, int gen, double ttft_s, double decode_s) {
    return tw_metric_e2e_tokens(batch, gen) / (ttft_s + decode_s);
}

tw_stats tw_metric_ttft_s(const tw_rep_times *reps, int n) {
    double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!v) return tw_stats_of(NULL, 0);
    for (int r = 0; r < n; r++) v[r] = reps[r].ttft_s;
    tw_stats s = tw_stats_of(v, n);
    free(v);
    return s;
}

tw_stats tw_metric_tpot_s(const tw_rep_times *reps, int n, int gen) {
    int steps = gen > 1 ? gen - 1 : 0;
    double *v = malloc(sizeof(double) * (size_t)(n * steps > 0 ? n * steps : 1));
    if (!v) return tw_stats_of(NULL, 0);
    int k = 0;
    for (int r = 0; r < n; r++)
        for (int s = 0; s < steps; s++) v[k++] = reps[r].step_s[s];
    tw_stats st = tw_stats_of(v, k);
    free(v);
    return st;
}

int tw_metric_decode_context(int prompt, int gen) {
    return prompt + gen / 2;
}

double tw_metric_decode_bytes_per_step(const tw_model_config *c, tw_dtype w_dtype,
                                       tw_dtype kv_dtype, int batch, int ctx, double experts_read) {
    double ws = (double)tw_dtype_size(w_dtype);
    double w = (double)tw_model_params_nonembed(c);
    if (c->tie_embeddings) w += (double)c->vocab * c->hidden; /* the LM head reads it */
    w += (double)batch * c->hidden;                           /* embedding rows */
    int moe = tw_model_moe_layers(c);
    if (moe > 0) {
        /* every routed expert is in the parameter count; a step reads those it reached */
        double per_expert = (double)tw_model_routed_expert_params(c);
        double read = experts_read > c->n_experts ? c->n_experts : experts_read;
        if (!(read > 0)) read = 0;
        w += (double)moe * (read - c->n_experts) * per_expert;
    }
    double kv = (double)batch * tw_model_attended_positions(c, ctx) *
                tw_model_kv_elems_per_position(c) * (double)tw_dtype_size(kv_dtype);
    return w * ws + kv;
}

double tw_metric_uniform_experts(const tw_model_config *c, int batch) {
    if (c->n_experts <= 0) return 0;
    double e = c->n_experts, k = c->n_experts_per_tok;
    return e * (1.0 - pow(1.0 - k / e, (double)batch));
}

double tw_metric_decode_experts(const tw_model_config *c, double measured, int batch) {
    if (c->n_experts <= 0) return 0;
    return measured > 0 ? measured : tw_metric_uniform_experts(c, batch);
}

double tw_metric_decode_bandwidth_gbps(double bytes_per_step, double step_s) {
    return bytes_per_step / step_s / 1e9;
}

double tw_metric_decode_bandwidth_fraction(double bandwidth_gbps, double membw_gbps) {
    return membw_gbps > 0 ? bandwidth_gbps / membw_gbps : NAN;
}

double tw_metric_prefill_flops(const tw_model_config *c, int batch, int prompt) {
    return (double)batch * prompt * tw_model_flops_per_token(c, prompt / 2);
}

double tw_metric_prefill_gflops(double flops, double ttft_s) {
    return flops / ttft_s / 1e9;
}

double tw_metric_mfu(double gflops, double peak_gflops) {
    return peak_gflops > 0 ? gflops / peak_gflops : NAN;
}

double tw_metric_decode_flops_per_step(const tw_model_config *c, int batch, int ctx) {
    return (double)batch * tw_model_flops_per_token(c, ctx);
}

double tw_metric_decode_roofline_s(double bytes_per_step, double flops_per_step, double membw_gbps,
                                   double peak_gflops) {
    if (!(membw_gbps > 0) || !(peak_gflops > 0)) return NAN;
    double bytes_s = bytes_per_step / (membw_gbps * 1e9),
           flops_s = flops_per_step / (peak_gflops * 1e9);
    return bytes_s > flops_s ? bytes_s : flops_s;
}

double tw_metric_decode_roofline_fraction(double roofline_s, double step_s) {
    return step_s > 0 ? roofline_s / step_s : NAN;
}

double tw_metric_prefill_intensity(double prefill_gflops, double ttft_s, double params,
                                   double bytes_per_weight) {
    double wbytes = params * bytes_per_weight;
    if (!(prefill_gflops > 0) || !(ttft_s > 0) || !(wbytes > 0)) return NAN;
    return prefill_gflops * 1e9 * ttft_s / wbytes;
}

double tw_metric_decode_intensity(double params, int batch, double bytes_per_step) {
    if (!(params > 0) || !(bytes_per_step > 0)) return NAN;
    return 2.0 * params * batch / bytes_per_step;
}

double tw_metric_measured_s(const tw_rep_times *reps, int n) {
    double s = 0;
    for (int r = 0; r < n; r++) s += reps[r].ttft_s + reps[r].decode_s;
    return s;
}

double tw_metric_collective_share(double comm_s, double measured_s) {
    return measured_s > 0 ? comm_s / measured_s : NAN;
}

double tw_metric_expert_max_over_mean(const long long *load, int n) {
    long long mx = 0, sum = 0;
    for (int x = 0; x < n; x++) {
        mx = load[x] > mx ? load[x] : mx;
        sum += load[x];
    }
    return sum > 0 ? (double)mx * n / (double)sum : NAN;
}

double tw_metric_alltoall_algbw_gbps(double bytes, double seconds) {
    return seconds > 0 ? bytes / seconds / 1e9 : NAN;
}

double tw_metric_alltoall_busbw_gbps(double algbw_gbps, int ranks) {
    return ranks >= 1 ? algbw_gbps * (ranks - 1) / (double)ranks : NAN;
}

double tw_metric_mean_power_w(double energy_j, double seconds) {
    return seconds > 0 ? energy_j / seconds : NAN;
}

double tw_metric_j_per_token(double energy_j, double tokens) {
    return tokens > 0 && isfinite(tokens) ? energy_j / tokens : NAN;
}

double tw_metric_tokens_per_j(double energy_j, double tokens) {
    return tokens > 0 && isfinite(tokens) && energy_j > 0 ? tokens / energy_j : NAN;
}

int tw_metric_power_domains(const char *const *rank_host, int ranks, int host_level) {
    if (!host_level || !rank_host) return ranks;
    int domains = 0;
    for (int r = 0; r < ranks; r++) {
        int first = 1;
        for (int q = 0; q < r && first; q++) first = strcmp(rank_host[q], rank_host[r]) != 0;
        domains += first;
    }
    return domains;
}

double tw_metric_per_device(double value, int devices) {
    return devices >= 1 ? value / devices : NAN;
}

tw_status tw_metrics_summarise(const tw_metric_inputs *in, const tw_rep_times *reps, int n,
                               tw_metrics *out) {
    memset(out, 0, sizeof *out);
    double *v = malloc(sizeof(double) * 3 * (size_t)(n > 0 ? n : 1));
    if (!v) return TW_ERR(TW_ERR_NOMEM, "metrics of %d repetitions", n);
    double *pf = v, *dec = v + n, *e2e = v + 2 * n;
    double measured_s = tw_metric_measured_s(reps, n);
    for (int r = 0; r < n; r++) {
        pf[r] = tw_metric_prefill_tokens_per_s(in->batch, in->prompt, reps[r].ttft_s);
        dec[r] = tw_metric_decode_tokens_per_s(in->batch, in->gen, reps[r].decode_s);
        e2e[r] = tw_metric_e2e_tokens_per_s(in->batch, in->gen, reps[r].ttft_s, reps[r].decode_s);
    }
    out->prefill_tokens_per_s = tw_stats_of(pf, n);
    out->decode_tokens_per_s = tw_stats_of(dec, n);
    out->e2e_tokens_per_s = tw_stats_of(e2e, n);
    free(v);
    out->ttft_s = tw_metric_ttft_s(reps, n);
    out->tpot_s = tw_metric_tpot_s(reps, n, in->gen);
    out->repetitions_complete = n;
    out->decode_bytes_per_step = tw_metric_decode_bytes_per_step(
        in->cfg, in->w_dtype, in->kv_dtype, in->batch,
        tw_metric_decode_context(in->prompt, in->gen),
        tw_metric_decode_experts(in->cfg, in->decode_experts, in->batch));
    out->decode_bandwidth_gbps =
        out->tpot_s.n
            ? tw_metric_decode_bandwidth_gbps(out->decode_bytes_per_step, out->tpot_s.median)
            : NAN;
    out->decode_bandwidth_fraction =
        tw_metric_decode_bandwidth_fraction(out->decode_bandwidth_gbps, in->membw_gbps);
    out->prefill_flops = tw_metric_prefill_flops(in->cfg, in->batch, in->prompt);
    out->prefill_gflops =
        n ? tw_metric_prefill_gflops(out->prefill_flops, out->ttft_s.median) : NAN;
    out->prefill_mfu = tw_metric_mfu(out->prefill_gflops, in->peak_gflops);
    out->decode_flops_per_step = tw_metric_decode_flops_per_step(
        in->cfg, in->batch, tw_metric_decode_context(in->prompt, in->gen));
    out->decode_gflops =
        out->tpot_s.n ? out->decode_flops_per_step / out->tpot_s.median / 1e9 : NAN;
    out->decode_mfu = tw_metric_mfu(out->decode_gflops, in->peak_gflops);
    out->decode_roofline_fraction =
        out->tpot_s.n ? tw_metric_decode_roofline_fraction(
                            tw_metric_decode_roofline_s(out->decode_bytes_per_step,
                                                        out->decode_flops_per_step, in->membw_gbps,
                                                        in->peak_gflops),
                            out->tpot_s.median)
                      : NAN;
    out->exceeds_ceiling = out->decode_bandwidth_fraction > 1.0 || out->prefill_mfu > 1.0 ||
                           out->decode_mfu > 1.0 || out->decode_roofline_fraction > 1.0;
    out->has_decode_flops = 1;
    out->decode_bandwidth_fraction_datasheet =
        tw_metric_decode_bandwidth_fraction(out->decode_bandwidth_gbps, in->datasheet_membw_gbps);
    out->prefill_mfu_datasheet = tw_metric_mfu(out->prefill_gflops, in->datasheet_peak_gflops);
    out->has_datasheet = 1;
    out->collective_share = in->have_comm ? tw_metric_collective_share(in->comm_s, measured_s) : 0;
    return TW_OK;
}

void tw_metrics_set_ceiling_fractions(tw_metrics *m, double membw_gbps, double peak_gflops) {
    m->decode_bandwidth_fraction =
        tw_metric_decode_bandwidth_fraction(m->decode_bandwidth_gbps, membw_gbps);
    if (!isnan(peak_gflops)) {
        m->prefill_mfu = tw_metric_mfu(m->prefill_gflops, peak_gflops);
        m->decode_mfu = tw_metric_mfu(m->decode_gflops, peak_gflops);
    }
    /* the peak the MFUs are now against (the one kept, when none is given: decode GFLOP/s over
     * decode MFU; NAN without one, and then no roofline) */
    const double peak = !isnan(peak_gflops) ? peak_gflops : m->decode_gflops / m->decode_mfu;
    m->decode_roofline_fraction = tw_metric_decode_roofline_fraction(
        tw_metric_decode_roofline_s(m->decode_bytes_per_step, m->decode_flops_per_step, membw_gbps,
                                    peak),
        m->tpot_s.median);
    m->exceeds_ceiling = m->decode_bandwidth_fraction > 1.0 || m->prefill_mfu > 1.0 ||
                         m->decode_mfu > 1.0 || m->decode_roofline_fraction > 1.0;
}
