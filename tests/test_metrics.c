/* The figures of doc/METRICS.md (harness/metrics.c) against hand calculations: the decode bytes
 * per step and prefill FLOPs of the tiny models counted here from their config files' numbers
 * (the counts are written out in the comments), the per-repetition figures and their medians on
 * awkward values, the NaN a figure must be when its inputs cannot give it (no decode step, no
 * ceiling, no tokens), power domains of ranks sharing hosts, and the roofline coordinates. */
#include <criterion/criterion.h>
#include <math.h>

#include "tw_metrics.h"
#include "tw_model.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

static tw_model_config load(const char *name) {
    tw_model_config c;
    cr_assert_eq(tw_model_load(name, &c), TW_OK, "%s", tw_last_error());
    return c;
}

Test(metrics, decode_bytes_per_step_of_tiny_by_hand) {
    tw_model_config c = load("tiny");
    /* tiny: hidden 96, intermediate 232, 3 layers, 8 heads, 2 KV heads, head_dim 16, vocab 509,
     * untied. Per layer: q 96x128 + k 96x32 + v 96x32 + o 128x96 = 30720, gate/up/down 3 x 96 x
     * 232 = 66816, two norms 192: 97728; x3 = 293184, final norm 96, LM head 509 x 96 = 48864:
     * 342144 weights that multiply the token, 684288 bytes in bf16. Embedding rows 1 x 96 x 2 =
     * 192. KV at context 9 + 5/2 = 11: 3 layers x 11 positions x 2 (K, V) x 2 heads x 16 x 2 bytes
     * = 4224. Total 688704. */
    int ctx = tw_metric_decode_context(9, 5);
    cr_assert_eq(ctx, 11);
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, ctx, 0), 688704.0);
    /* fp32 weights, fp32 KV, batch 3, context 20: 342144 x 4 + 3 x 96 x 4 + 3 x 3 x 20 x 2 x 2 x
     * 16 x 4 = 1368576 + 1152 + 46080 */
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_F32, TW_F32, 3, 20, 0),
                 1368576.0 + 1152.0 + 46080.0);
    tw_model_free(&c);
}

Test(metrics, decode_bytes_count_the_window_and_the_tied_head) {
    tw_model_config c = load("tiny-mistral");
    /* tiny-mistral: hidden 128, intermediate 232, 2 layers, 4 heads, 1 KV head, head_dim 32,
     * vocab 307, untied, sliding window 7 on every layer. Per layer 128 x 32 x (4+4+1+1) = 40960
     * + 3 x 128 x 232 = 89088 + norms 256: 130304; x2 + 128 + head 307 x 128 = 39296: 300032.
     * bf16 weights 600064, embedding rows 2 x 128 x 2 = 512; context 14 > 7: each layer reads 7
     * positions: 2 seq x 2 layers x 7 x 2 x 1 x 32 x 4 bytes (fp32 KV) = 7168. */
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_F32, 2, 14, 0), 607744.0);
    /* within the window the whole context is read: context 5 */
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_F32, 2, 5, 0),
                 600064.0 + 512.0 + 2.0 * 2 * 5 * 2 * 32 * 4);
    tw_model_free(&c);
    c = load("tiny-tied");
    /* tiny-tied: hidden 64, intermediate 150, 2 layers, 4 heads, 4 KV heads, head_dim 64/4 = 16,
     * vocab 300, tied: per layer 64 x 16 x 16 = 16384 + 3 x 64 x 150 = 28800 + 128 = 45312; x2 +
     * 64 = 90688 non-embedding; the LM head reads the embedding: + 300 x 64 = 19200 -> 109888 x 2
     * bytes; embedding row 64 x 2; KV 2 layers x 10 x 2 x 4 x 16 x 2 = 5120. */
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 10, 0),
                 109888.0 * 2 + 128 + 5120);
    tw_model_free(&c);
}

Test(metrics, prefill_flops_by_hand) {
    tw_model_config c = load("tiny");
    /* 2 x (3 x (30720 + 66816) + 509 x 96) = 2 x 341472 = 682944 per token, plus attention at
     * context 17/2 = 8: 4 x 8 heads x 16 x 3 layers x 8 positions = 12288; times 3 x 17 tokens */
    double want = 3.0 * 17 * (682944.0 + 12288.0);
    cr_assert_eq(tw_metric_prefill_flops(&c, 3, 17), want);
    double gf = tw_metric_prefill_gflops(want, 0.25);
    cr_assert_lt(REL(gf, want / 0.25 / 1e9), 1e-15);
    cr_assert_lt(REL(tw_metric_mfu(gf, 20), gf / 20), 1e-15);
    cr_assert(isnan(tw_metric_mfu(gf, 0)), "no peak: no MFU");
    tw_model_free(&c);
}

Test(metrics, decode_step_against_its_roofline_by_hand) {
    tw_model_config c = load("tiny");
    /* batch 4, prompt 9, gen 5: context 11; FLOPs per token 682944 + attention 4 x 8 x 16 x 3 x
     * 11 = 16896, times 4 sequences = 2799360 per step; bytes (bf16 weights and KV): 684288 +
     * 4 x 192 + 4 x 4224 = 701952 */
    cr_assert_eq(tw_metric_decode_flops_per_step(&c, 4, 11), 4.0 * (682944.0 + 16896.0));
    const double flops = 2799360.0, bytes = 701952.0;
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 4, 11, 0), bytes);
    /* 10 GB/s and 1 GFLOP/s: bytes take 70.1952 us, FLOPs 2799.36 us: compute bound */
    cr_assert_lt(REL(tw_metric_decode_roofline_s(bytes, flops, 10, 1), 2799.36e-6), 1e-14);
    /* 0.1 GB/s and 1000 GFLOP/s: bytes 7019.52 us, FLOPs 2.79936 us: bandwidth bound */
    cr_assert_lt(REL(tw_metric_decode_roofline_s(bytes, flops, 0.1, 1000), 7019.52e-6), 1e-14);
    cr_assert(isnan(tw_metric_decode_roofline_s(bytes, flops, 0, 1)), "no read ceiling");
    cr_assert(isnan(tw_metric_decode_roofline_s(bytes, flops, 10, 0)), "no peak");
    cr_assert_lt(REL(tw_metric_decode_roofline_fraction(2799.36e-6, 0.004), 0.69984), 1e-14);
    /* summarised: two repetitions, steps 0.004 0.005 0.003 0.006 (median 0.0045) */
    double s0[4] = {0.004, 0.005, 0.003, 0.006};
    tw_rep_times reps[1] = {{0.1, 0.018, s0}};
    tw_metric_inputs in = {.cfg = &c,
                           .w_dtype = TW_BF16,
                           .kv_dtype = TW_BF16,
                           .batch = 4,
                           .prompt = 9,
                           .gen = 5,
                           .membw_gbps = 10,
                           .peak_gflops = 1};
    tw_metrics m;
    cr_assert_eq(tw_metrics_summarise(&in, reps, 1, &m), TW_OK);
    cr_assert_lt(REL(m.tpot_s.median, 0.0045), 1e-15);
    cr_assert_eq(m.decode_flops_per_step, flops);
    cr_assert_lt(REL(m.decode_gflops, flops / 0.0045 / 1e9), 1e-14);
    cr_assert_lt(REL(m.decode_mfu, flops / 0.0045 / 1e9 / 1), 1e-14);
    cr_assert_lt(REL(m.decode_roofline_fraction, 2799.36e-6 / 0.0045), 1e-14);
    cr_assert_eq(m.exceeds_ceiling, 0, "0.62 of the roofline");
    /* a faster read ceiling found at the end changes nothing here (compute bound); a slower
     * peak makes the step exceed it: flagged */
    tw_metrics_set_ceiling_fractions(&m, 20, NAN);
    cr_assert_lt(REL(m.decode_roofline_fraction, 2799.36e-6 / 0.0045), 1e-12);
    tw_metrics_set_ceiling_fractions(&m, 20, 0.5);
    cr_assert_lt(REL(m.decode_mfu, flops / 0.0045 / 1e9 / 0.5), 1e-14);
    cr_assert_lt(REL(m.decode_roofline_fraction, 2 * 2799.36e-6 / 0.0045), 1e-12);
    cr_assert_eq(m.exceeds_ceiling, 1, "1.24 of the roofline: the peak was measured too low");
    /* bandwidth bound at 0.1 GB/s: 7019.52 us of bytes over a 4.5 ms step is above 1 */
    in.membw_gbps = 0.1, in.peak_gflops = 1000;
    cr_assert_eq(tw_metrics_summarise(&in, reps, 1, &m), TW_OK);
    cr_assert_lt(REL(m.decode_roofline_fraction, 7019.52e-6 / 0.0045), 1e-14);
    cr_assert_eq(m.exceeds_ceiling, 1);
    /* no peak: no MFU and no roofline, not 0 */
    in.peak_gflops = 0;
    cr_assert_eq(tw_metrics_summarise(&in, reps, 1, &m), TW_OK);
    cr_assert(isnan(m.decode_mfu) && isnan(m.decode_roofline_fraction));
    tw_model_free(&c);
}

Test(metrics, repetitions_summarised_with_medians_and_spread) {
    tw_model_config c = load("tiny");
    /* three repetitions of batch 3, prompt 7, gen 4 (3 decode steps each) */
    double s0[3] = {0.010, 0.012, 0.011}, s1[3] = {0.020, 0.009, 0.013},
           s2[3] = {0.014, 0.015, 0.008};
    tw_rep_times reps[3] = {{0.5, 0.033, s0}, {0.25, 0.042, s1}, {1.0, 0.037, s2}};
    tw_metric_inputs in = {.cfg = &c,
                           .w_dtype = TW_BF16,
                           .kv_dtype = TW_BF16,
                           .batch = 3,
                           .prompt = 7,
                           .gen = 4,
                           .membw_gbps = 10,
                           .peak_gflops = 0,
                           .have_comm = 1,
                           .comm_s = 0.1};
    tw_metrics m;
    cr_assert_eq(tw_metrics_summarise(&in, reps, 3, &m), TW_OK);
    cr_assert_eq(m.repetitions_complete, 3);
    /* TTFT median 0.5; prefill tokens/s per repetition 21/0.5, 21/0.25, 21/1: median 42 */
    cr_assert_eq(m.ttft_s.median, 0.5);
    cr_assert_eq(m.prefill_tokens_per_s.median, 42.0);
    cr_assert_eq(m.prefill_tokens_per_s.min, 21.0);
    cr_assert_eq(m.prefill_tokens_per_s.max, 84.0);
    /* decode: 9 tokens over 0.033, 0.042, 0.037: median 9/0.037 */
    cr_assert_lt(REL(m.decode_tokens_per_s.median, 9 / 0.037), 1e-15);
    /* e2e: 12 tokens over 0.533, 0.292, 1.037: median 12/0.533 */
    cr_assert_lt(REL(m.e2e_tokens_per_s.median, 12 / 0.533), 1e-15);
    /* TPOT over the 9 steps: sorted 0.008 0.009 0.010 0.011 0.012 0.013 0.014 0.015 0.020 */
    cr_assert_eq(m.tpot_s.n, 9);
    cr_assert_eq(m.tpot_s.p50, 0.012);
    cr_assert_lt(REL(m.tpot_s.mean, 0.112 / 9), 1e-14);
    /* p99 between the two largest: 0.015 + 0.92 x 0.005 */
    cr_assert_lt(REL(m.tpot_s.p99, 0.015 + 0.92 * 0.005), 1e-12);
    /* bandwidth: bytes at context 7 + 2 over the median step */
    double bytes = tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 3, 9, 0);
    cr_assert_eq(m.decode_bytes_per_step, bytes);
    cr_assert_lt(REL(m.decode_bandwidth_gbps, bytes / 0.012 / 1e9), 1e-15);
    cr_assert_lt(REL(m.decode_bandwidth_fraction, m.decode_bandwidth_gbps / 10), 1e-15);
    cr_assert(isnan(m.prefill_mfu), "no peak given: MFU is unknown, not 0");
    /* collectives 0.1 s of 0.533 + 0.292 + 1.037 s measured */
    cr_assert_lt(REL(m.collective_share, 0.1 / 1.862), 1e-14);
    in.have_comm = 0;
    cr_assert_eq(tw_metrics_summarise(&in, reps, 3, &m), TW_OK);
    cr_assert_eq(m.collective_share, 0.0, "one process: no collectives");
    tw_model_free(&c);
}

Test(metrics, what_cannot_be_known_is_nan) {
    tw_model_config c = load("tiny");
    /* gen 1: no decode step, so no decode tokens/s, TPOT or decode bandwidth */
    tw_rep_times one = {0.5, 0.0, NULL};
    tw_metric_inputs in = {.cfg = &c,
                           .w_dtype = TW_F32,
                           .kv_dtype = TW_F32,
                           .batch = 2,
                           .prompt = 5,
                           .gen = 1,
                           .membw_gbps = 0,
                           .peak_gflops = 7};
    tw_metrics m;
    cr_assert_eq(tw_metrics_summarise(&in, &one, 1, &m), TW_OK);
    cr_assert(isnan(m.decode_tokens_per_s.median));
    cr_assert_eq(m.tpot_s.n, 0);
    cr_assert(isnan(m.decode_bandwidth_gbps));
    cr_assert(isnan(m.decode_bandwidth_fraction));
    cr_assert_eq(m.e2e_tokens_per_s.median, 2 / 0.5);
    cr_assert(isfinite(m.prefill_mfu));
    /* no complete repetition: every measured figure is NaN */
    cr_assert_eq(tw_metrics_summarise(&in, NULL, 0, &m), TW_OK);
    cr_assert(isnan(m.ttft_s.median) && isnan(m.prefill_gflops) && isnan(m.prefill_mfu));
    cr_assert_eq(m.repetitions_complete, 0);
    /* energy: no tokens, or no energy */
    cr_assert(isnan(tw_metric_j_per_token(3.0, 0)));
    cr_assert(isnan(tw_metric_tokens_per_j(0.0, 10)));
    cr_assert(isnan(tw_metric_j_per_token(3.0, NAN)));
    cr_assert(isnan(tw_metric_mean_power_w(3.0, 0)));
    cr_assert_eq(tw_metric_j_per_token(3.0, 12), 0.25);
    cr_assert_eq(tw_metric_tokens_per_j(3.0, 12), 4.0);
    cr_assert_eq(tw_metric_mean_power_w(300.0, 1.5), 200.0);
    cr_assert(isnan(tw_metric_collective_share(1, 0)));
    cr_assert(isnan(tw_metric_per_device(100, 0)));
    tw_model_free(&c);
}

Test(metrics, power_domains_count_a_shared_host_once) {
    const char *hosts[5] = {"a", "b", "a", "c", "b"};
    cr_assert_eq(tw_metric_power_domains(hosts, 5, 1), 3, "host-level: a, b, c");
    cr_assert_eq(tw_metric_power_domains(hosts, 5, 0), 5, "a GPU per rank");
    cr_assert_eq(tw_metric_power_domains(hosts, 2, 1), 2);
    cr_assert_eq(tw_metric_power_domains(NULL, 4, 1), 4, "hosts unknown: one per rank");
    cr_assert_eq(tw_metric_per_device(3000, 3), 1000);
}

Test(metrics, roofline_coordinates) {
    /* prefill: 3 GFLOP/s for 0.02 s = 6e7 FLOPs over 372576 bf16 weights (745152 bytes) */
    cr_assert_lt(REL(tw_metric_prefill_intensity(3.0, 0.02, 372576, 2), 6e7 / 745152.0), 1e-15);
    cr_assert(isnan(tw_metric_prefill_intensity(3.0, 0.02, NAN, 2)), "no parameter count");
    /* decode: 2 x 372576 x 8 FLOPs per step over 800000 bytes */
    cr_assert_lt(REL(tw_metric_decode_intensity(372576, 8, 800000), 2.0 * 372576 * 8 / 8e5), 1e-15);
    cr_assert(isnan(tw_metric_decode_intensity(372576, 8, 0)));
}

/* Mixtures of experts: decode bytes count the experts reached, at most all of them; latent
 * attention caches its latent and rope key. */
Test(metrics, decode_bytes_count_the_experts_reached) {
    tw_model_config c = load("tiny-mixtral");
    /* tiny-mixtral: hidden 72, 2 layers, 6 heads, 2 KV heads, head_dim 12, vocab 301, untied, 4
     * experts of width 104, 2 per token, every layer MoE. Per layer attention 72 x 12 x (6 + 6 + 2
     * + 2) = 13824, norms 144, router 4 x 72 = 288, one expert 3 x 72 x 104 = 22464. Without the
     * experts: 2 x (13824 + 144 + 288) + final norm 72 + LM head 301 x 72 = 21672 -> 50256, + 1
     * embedding row 72 = 50328. KV at context 11: 2 layers x 11 x 2 x 2 x 12 x 2 bytes = 2112. */
    double none = 50328.0 * 2 + 2112;
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 0), none);
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 2),
                 none + 2.0 * 2 * 22464 * 2, "2 experts per layer: 282480");
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 2), 282480.0);
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 2.5),
                 none + 2.0 * 2.5 * 22464 * 2, "a mean over steps need not be whole");
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 9),
                 tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 4),
                 "at most the 4 experts");
    /* the experts a step read: measured, else the uniform expectation 4 (1 - (1 - 2/4)^B) */
    cr_assert_eq(tw_metric_uniform_experts(&c, 1), 2.0);
    cr_assert_eq(tw_metric_uniform_experts(&c, 2), 3.0);
    cr_assert_eq(tw_metric_decode_experts(&c, 0, 2), 3.0);
    cr_assert_eq(tw_metric_decode_experts(&c, 2.5, 2), 2.5);
    tw_metric_inputs mi = {.cfg = &c,
                           .w_dtype = TW_BF16,
                           .kv_dtype = TW_BF16,
                           .batch = 1,
                           .prompt = 9,
                           .gen = 5,
                           .decode_experts = 2};
    double steps[4] = {1e-3, 1e-3, 1e-3, 1e-3};
    tw_rep_times rep = {0.01, 4e-3, steps};
    tw_metrics m;
    cr_assert_eq(tw_metrics_summarise(&mi, &rep, 1, &m), TW_OK);
    cr_assert_eq(m.decode_bytes_per_step, 282480.0, "context 9 + 5/2 = 11, 2 experts");
    mi.decode_experts = 0; /* no decode step counted: B = 1 reaches 2 under uniform routing */
    cr_assert_eq(tw_metrics_summarise(&mi, &rep, 1, &m), TW_OK);
    cr_assert_eq(m.decode_bytes_per_step, 282480.0);
    tw_model_free(&c);
    c = load("tiny-deepseek-v3");
    /* latent attention: kv_lora_rank 36 + rope 8 = 44 values per position and layer, 3 layers,
     * bf16: 264 bytes more per position of context */
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 6, 3) -
                     tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 5, 3),
                 264.0);
    tw_model_free(&c);
    c = load("tiny");
    cr_assert_eq(tw_metric_uniform_experts(&c, 4), 0.0, "a dense model has no experts");
    cr_assert_eq(tw_metric_decode_bytes_per_step(&c, TW_BF16, TW_BF16, 1, 11, 7), 688704.0,
                 "experts_read is ignored for a dense model");
    tw_model_free(&c);
}

Test(metrics, expert_load_and_all_to_all_figures) {
    long long load[4] = {4, 36, 8, 0};
    cr_assert_eq(tw_metric_expert_max_over_mean(load, 4), 3.0, "36 over a mean of 12");
    long long even[3] = {5, 5, 5};
    cr_assert_eq(tw_metric_expert_max_over_mean(even, 3), 1.0);
    long long none[2] = {0, 0};
    cr_assert(isnan(tw_metric_expert_max_over_mean(none, 2)));
    cr_assert_eq(tw_metric_alltoall_algbw_gbps(3e9, 2.0), 1.5);
    cr_assert(isnan(tw_metric_alltoall_algbw_gbps(3e9, 0)));
    cr_assert_eq(tw_metric_alltoall_busbw_gbps(1.5, 2), 0.75);
    cr_assert_eq(tw_metric_alltoall_busbw_gbps(2.0, 8), 1.75);
    double s1[1] = {0}, s2[1] = {0};
    tw_rep_times reps[2] = {{0.25, 0.5, s1}, {0.125, 1.0, s2}};
    cr_assert_eq(tw_metric_measured_s(reps, 2), 1.875);
}
