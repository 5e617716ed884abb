/* tw_numeric: the arithmetic that CPU and CUDA kernels share, written once.
 * Everything here is `static inline` and marked TW_HD so nvcc compiles it for the device too.
 * Tested on the CPU in tests/test_numeric.c. */
#ifndef TW_NUMERIC_H
#define TW_NUMERIC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define TW_HD __host__ __device__
#else
#define TW_HD
#endif

typedef uint16_t tw_bf16; /* bfloat16 bit pattern: the top 16 bits of an IEEE float32 */

/* ---- bf16 conversion (round to nearest, ties to even; NaN stays NaN) ---------------------- */
TW_HD static inline uint32_t tw_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

TW_HD static inline float tw_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

TW_HD static inline tw_bf16 tw_bf16_from_f32(float f) {
    uint32_t u = tw_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (tw_bf16)((u >> 16) | 0x0040u); /* quiet NaN */
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb; /* overflow to inf is the correct rounding for values past bf16 max */
    return (tw_bf16)(u >> 16);
}

TW_HD static inline float tw_f32_from_bf16(tw_bf16 h) {
    return tw_f32_from_bits((uint32_t)h << 16);
}

/* ---- online softmax (flash attention) -------------------------------------------------------
 * State: running max m of the scores seen so far and l = sum exp(s_i - m).
 * A block of scores with maximum m_blk first rescales the state (the returned factor must also
 * scale the output accumulator), then each score contributes p = exp(s - m) to l and p*v to o. */
typedef struct {
    float m;
    float l;
} tw_softmax_state;

TW_HD static inline tw_softmax_state tw_softmax_init(void) {
    tw_softmax_state st;
    st.m = -INFINITY;
    st.l = 0.0f;
    return st;
}

/* Raises the running max to at least m_blk; returns exp(m_old - m_new), the factor by which l
 * (already applied) and the caller's output accumulator must be scaled. */
TW_HD static inline float tw_softmax_rescale(tw_softmax_state *st, float m_blk) {
    if (m_blk <= st->m) return 1.0f;
    /* m_old = -inf means nothing was accumulated yet: the factor is irrelevant but must not be
     * NaN (exp(-inf - -inf)). */
    float alpha = (st->m == -INFINITY) ? 0.0f : expf(st->m - m_blk);
    st->m = m_blk;
    st->l *= alpha;
    return alpha;
}

/* One score at a time: returns the weight p of score s; *alpha receives the rescale factor for
 * the accumulator (apply it before adding p*v). */
TW_HD static inline float tw_softmax_push(tw_softmax_state *st, float s, float *alpha) {
    *alpha = tw_softmax_rescale(st, s);
    float p = expf(s - st->m);
    st->l += p;
    return p;
}

/* log-sum-exp of the state: the partial result's weight in a split-KV merge. */
TW_HD static inline float tw_softmax_lse(tw_softmax_state st) {
    return st.l > 0.0f ? st.m + logf(st.l) : -INFINITY;
}

/* ---- split-KV merge (flash decoding) ---------------------------------------------------------
 * Each split produces a normalised output o_i (sum p v / l_i) and lse_i. The merged output is
 * sum_i exp(lse_i - lse) o_i with lse = log sum_i exp(lse_i). Splits with no keys have
 * lse_i = -inf and weight 0. */
TW_HD static inline float tw_lse_add(float a, float b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    float mx = a > b ? a : b;
    float mn = a > b ? b : a;
    return mx + log1pf(expf(mn - mx));
}

TW_HD static inline float tw_splitkv_weight(float lse_part, float lse_total) {
    return lse_part == -INFINITY ? 0.0f : expf(lse_part - lse_total);
}

/* Merges n partial outputs part_o[n][d] (normalised) with part_lse[n] into out[d]; returns
 * the total lse. Host helper; device code uses tw_lse_add and tw_splitkv_weight per element. */
TW_HD static inline float tw_splitkv_merge(int n, int d, const float *part_lse, const float *part_o,
                                           float *out) {
    float lse = -INFINITY;
    for (int i = 0; i < n; i++) lse = tw_lse_add(lse, part_lse[i]);
    for (int j = 0; j < d; j++) out[j] = 0.0f;
    for (int i = 0; i < n; i++) {
        float w = tw_splitkv_weight(part_lse[i], lse);
        if (w == 0.0f) continue;
        for (int j = 0; j < d; j++) out[j] += w * part_o[(size_t)i * d + j];
    }
    return lse;
}

/* Sliding-window attention: the first key position a query at position pos attends with window
 * w (0: no window, every position from 0); keys lo .. pos are attended (Hugging Face's mask
 * kv_idx > q_idx - sliding_window). */
TW_HD static inline int tw_attn_window_lo(int pos, int w) {
    return w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
}

/* ---- RoPE (Llama conventions, Hugging Face "rotate half" pairing: x[i] with x[i + D/2]) ---- */
typedef enum {
    TW_ROPE_DEFAULT = 0,
    TW_ROPE_LINEAR = 1,
    TW_ROPE_LLAMA3 = 2,
    TW_ROPE_YARN = 3 /* DeepSeek-V2/V3 (the attention-scale correction lives in the model) */
} tw_rope_type;

typedef struct {
    float theta;            /* rope_theta */
    tw_rope_type type;      /* rope_scaling.rope_type */
    float factor;           /* rope_scaling.factor */
    float low_freq_factor;  /* llama3 */
    float high_freq_factor; /* llama3 */
    float original_max_pos; /* llama3, yarn: original_max_position_embeddings */
    float beta_fast;        /* yarn (default 32) */
    float beta_slow;        /* yarn (default 1) */
    int yarn_truncate;      /* yarn: floor/ceil the correction range (transformers' default 1) */
} tw_rope_params;

/* YaRN (transformers' _compute_yarn_parameters): pairs below the correction range keep their
 * frequency (extrapolation), pairs above it are divided by `factor` (interpolation), with a
 * linear ramp between; the range comes from the rotation counts beta_fast and beta_slow over
 * original_max_position_embeddings. Computed in double. */
TW_HD static inline float tw_rope_yarn_inv_freq(int i, int head_dim, const tw_rope_params *rp) {
    const double two_pi = 6.283185307179586;
    double dim = (double)head_dim, base = (double)rp->theta, orig = (double)rp->original_max_pos;
    double pos_freq = pow(base, (double)(2 * i) / dim);
    double extrap = 1.0 / pos_freq, interp = 1.0 / ((double)rp->factor * pos_freq);
    double lo = dim * log(orig / ((double)rp->beta_fast * two_pi)) / (2.0 * log(base));
    double hi = dim * log(orig / ((double)rp->beta_slow * two_pi)) / (2.0 * log(base));
    if (rp->yarn_truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001; /* as transformers: no division by zero */
    double ramp = ((double)i - lo) / (hi - lo);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    double keep = 1.0 - ramp; /* the extrapolation share */
    return (float)(interp * (1.0 - keep) + extrap * keep);
}

/* Inverse frequency of rotation pair i (0 <= i < head_dim/2), with the model's scaling. */
TW_HD static inline float tw_rope_inv_freq(int i, int head_dim, const tw_rope_params *rp) {
    float inv = (float)(1.0 / pow((double)rp->theta, (double)(2 * i) / (double)head_dim));
    if (rp->type == TW_ROPE_LINEAR) return inv / rp->factor;
    if (rp->type == TW_ROPE_YARN) return tw_rope_yarn_inv_freq(i, head_dim, rp);
    if (rp->type != TW_ROPE_LLAMA3) return inv;
    /* llama3: long wavelengths are slowed by `factor`, short ones kept, the band between
     * blended linearly in 1/wavelength. */
    const float two_pi = 6.283185307179586f;
    float wavelen = two_pi / inv;
    float low_wavelen = rp->original_max_pos / rp->low_freq_factor;
    float high_wavelen = rp->original_max_pos / rp->high_freq_factor;
    if (wavelen < high_wavelen) return inv;
    if (wavelen > low_wavelen) return inv / rp->factor;
    float smooth = (rp->original_max_pos / wavelen - rp->low_freq_factor) /
                   (rp->high_freq_factor - rp->low_freq_factor);
    return (1.0f - smooth) * inv / rp->factor + smooth * inv;
}

/* Angle of pair i at position pos: computed in float32 as Hugging Face does. */
TW_HD static inline float tw_rope_angle(int pos, float inv_freq) {
    return (float)pos * inv_freq;
}

/* Rotates the pair (x0 = x[i], x1 = x[i + D/2]) by the angle whose cosine and sine are c, s. */
TW_HD static inline void tw_rope_rotate(float *x0, float *x1, float c, float s) {
    float a = *x0, b = *x1;
    *x0 = a * c - b * s;
    *x1 = b * c + a * s;
}

/* ---- activations ------------------------------------------------------------------------- */
TW_HD static inline float tw_silu(float x) {
    return x / (1.0f + expf(-x));
}

#endif
