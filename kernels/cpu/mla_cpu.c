/* CPU multi-head latent attention (DeepSeek-V2/V3), the absorbed form for prefill and decode
 * (tw_backend.h): the cache holds per position the normalised latent c and the rotated rope key
 * k_r; head h's query is moved into the latent space (q_lat = W_UK,h^T q_nope), scored against
 * c and k_r, the softmax-weighted latents are summed, and W_UV,h maps the sum to the head's
 * output. Keys and values per head are never materialised, so a decode step reads lora_rank +
 * rope_dim values per cached position, whatever the head count.
 * Tasks on the persistent pool (tw_pool.h) are (sequence, head) pairs; each converts its head's
 * kv_b rows to fp32 once, into its worker's scratch, and keeps them for all of that sequence's
 * queries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cpu.h"
#include "tw_pool.h"

static inline float mla_ld(const void *p, tw_dtype dt, size_t i) {
    return dt == TW_BF16 ? tw_f32_from_bf16(((const tw_bf16 *)p)[i]) : ((const float *)p)[i];
}

/* Row j (w values per row) of a latent cache as fp32: in place for fp32, else its first n values
 * widened into row. */
static inline const float *mla_cache_row(const void *cache, tw_dtype dt, int j, int w, int n,
                                         float *row) {
    if (dt == TW_F32) return (const float *)cache + (size_t)j * w;
    tw_f32_from_bf16_array(row, (const tw_bf16 *)cache + (size_t)j * w, (size_t)n);
    return row;
}

tw_status mla_store_cpu(const tw_mla_store_args *a, int threads) {
    if (!a || !a->kv || !a->cache || !a->start_pos)
        return TW_ERR(TW_ERR_INVALID, "mla_store: NULL argument");
    if (a->batch < 1 || a->seq < 1 || a->lora_rank < 1 || a->rope_dim < 0 || a->max_seq < 1)
        return TW_ERR(TW_ERR_INVALID, "mla_store: batch %d, seq %d, lora %d, rope %d", a->batch,
                      a->seq, a->lora_rank, a->rope_dim);
    if (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "mla_store: cache dtype %d", (int)a->kv_dtype);
    const int W = a->lora_rank + a->rope_dim, ld = a->ldkv ? a->ldkv : W;
    if (ld < W) return TW_ERR(TW_ERR_INVALID, "mla_store: ldkv %d < %d", a->ldkv, W);
    for (int b = 0; b < a->batch; b++)
        if (a->start_pos[b] < 0 || a->start_pos[b] + a->seq > a->max_seq)
            return TW_ERR(TW_ERR_INVALID, "mla_store: start_pos[%d] = %d + seq %d exceeds %d", b,
                          a->start_pos[b], a->seq, a->max_seq);
    (void)threads;
    for (int b = 0; b < a->batch; b++)
        for (int s = 0; s < a->seq; s++) {
            const float *src = a->kv + (size_t)(b * a->seq + s) * ld;
            size_t row = ((size_t)b * a->max_seq + (size_t)(a->start_pos[b] + s)) * W;
            if (a->kv_dtype == TW_F32)
                memcpy((float *)a->cache + row, src, sizeof(float) * (size_t)W);
            else
                tw_bf16_from_f32_array((tw_bf16 *)a->cache + row, src, (size_t)W);
        }
    return TW_OK;
}

typedef struct {
    const tw_mla_attn_args *a;
    float *scratch; /* per worker: `stride` floats */
    size_t stride;
} mla_job;

/* Pair pr = (sequence pr / n_heads, head pr % n_heads): all of the sequence's queries. */
static void mla_pair_task(void *arg, long pr, int worker) {
    const mla_job *jb = arg;
    const tw_mla_attn_args *a = jb->a;
    const int NH = a->n_heads, DN = a->nope_dim, DR = a->rope_dim, L = a->lora_rank;
    const int DV = a->v_dim, W = L + DR;
    const int ldq = a->ldq ? a->ldq : NH * (DN + DR);
    float *buf = jb->scratch + jb->stride * (size_t)worker;
    const int b = (int)(pr / NH), h = (int)(pr % NH);
    float *wk = buf, *wv = buf + (size_t)DN * L, *qlat = wv + (size_t)DV * L;
    float *olat = qlat + L, *sc = olat + L, *row = sc + a->max_seq;
    size_t w0 = (size_t)h * (DN + DV) * L;
    for (size_t i = 0; i < (size_t)(DN + DV) * L; i++)
        wk[i] = mla_ld(a->w_kv_b, a->w_dtype, w0 + i);
    const void *cb =
        (const char *)a->cache + (size_t)b * a->max_seq * W * tw_dtype_size(a->kv_dtype);
    for (int s = 0; s < a->seq; s++) {
        const int tok = b * a->seq + s, p = a->start_pos[b] + s;
        const float *qn = a->q + (size_t)tok * ldq + (size_t)h * DN;
        const float *qr = a->q + (size_t)tok * ldq + (size_t)NH * DN + (size_t)h * DR;
        /* q_lat = W_UK^T q_nope: axpy over the latent dims */
        for (int l = 0; l < L; l++) qlat[l] = 0.0f;
        for (int d = 0; d < DN; d++) {
            const float qd = qn[d], *wr = wk + (size_t)d * L;
#pragma omp simd
            for (int l = 0; l < L; l++) qlat[l] += qd * wr[l];
        }
        float mx = -INFINITY;
        for (int j = 0; j <= p; j++) {
            const float *cj = mla_cache_row(cb, a->kv_dtype, j, W, W, row);
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int l = 0; l < L; l++) dot += qlat[l] * cj[l];
            float dr = 0.0f;
#pragma omp simd reduction(+ : dr)
            for (int i = 0; i < DR; i++) dr += qr[i] * cj[L + i];
            sc[j] = (dot + dr) * a->scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        float den = 0.0f;
        for (int j = 0; j <= p; j++) den += (sc[j] = expf(sc[j] - mx));
        for (int l = 0; l < L; l++) olat[l] = 0.0f;
        for (int j = 0; j <= p; j++) {
            const float *cj = mla_cache_row(cb, a->kv_dtype, j, W, L, row);
            const float pj = sc[j] / den;
#pragma omp simd
            for (int l = 0; l < L; l++) olat[l] += pj * cj[l];
        }
        /* out = W_UV o_lat */
        float *o = a->out + (size_t)tok * NH * DV + (size_t)h * DV;
        for (int i = 0; i < DV; i++) {
            const float *wr = wv + (size_t)i * L;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int l = 0; l < L; l++) acc += wr[l] * olat[l];
            o[i] = acc;
        }
    }
}

tw_status mla_attn_cpu(const tw_mla_attn_args *a, int threads) {
    if (!a || !a->q || !a->w_kv_b || !a->cache || !a->out || !a->start_pos)
        return TW_ERR(TW_ERR_INVALID, "mla_attn: NULL argument");
    if (a->batch < 1 || a->seq < 1 || a->n_heads < 1 || a->nope_dim < 1 || a->rope_dim < 0 ||
        a->lora_rank < 1 || a->v_dim < 1 || a->max_seq < 1)
        return TW_ERR(TW_ERR_INVALID,
                      "mla_attn: batch %d seq %d heads %d nope %d rope %d lora %d v %d", a->batch,
                      a->seq, a->n_heads, a->nope_dim, a->rope_dim, a->lora_rank, a->v_dim);
    if ((a->w_dtype != TW_F32 && a->w_dtype != TW_BF16) ||
        (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16))
        return TW_ERR(TW_ERR_INVALID, "mla_attn: weight dtype %d, cache dtype %d", (int)a->w_dtype,
                      (int)a->kv_dtype);
    const int NH = a->n_heads, DN = a->nope_dim, DR = a->rope_dim, L = a->lora_rank;
    const int DV = a->v_dim, W = L + DR;
    const int ldq = a->ldq ? a->ldq : NH * (DN + DR);
    if (ldq < NH * (DN + DR))
        return TW_ERR(TW_ERR_INVALID, "mla_attn: ldq %d < %d", a->ldq, NH * (DN + DR));
    for (int b = 0; b < a->batch; b++)
        if (a->start_pos[b] < 0 || a->start_pos[b] + a->seq > a->max_seq)
            return TW_ERR(TW_ERR_INVALID, "mla_attn: start_pos[%d] = %d + seq %d exceeds %d", b,
                          a->start_pos[b], a->seq, a->max_seq);
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "mla_attn: threads %d", threads);
    const int pairs = a->batch * NH;
    int nt = tw_cpu_threads(threads);
    if (nt > pairs) nt = pairs;
    if (nt > TW_POOL_MAX_THREADS) nt = TW_POOL_MAX_THREADS;
    /* per worker: head weights [DN + DV, L], q_lat [L], o_lat [L], scores [max_seq], a cache
     * row [W], rounded up to whole 64-byte lines */
    const size_t nfl = (size_t)(DN + DV) * L + 2 * (size_t)L + (size_t)a->max_seq + (size_t)W;
    const size_t stride = (nfl + 15) & ~(size_t)15;
    mla_job j = {a, aligned_alloc(64, sizeof(float) * stride * (size_t)nt), stride};
    if (!j.scratch)
        return TW_ERR(TW_ERR_NOMEM,
                      "mla_attn: per-thread head weights (%d x %d) and scores (%d), %d threads",
                      DN + DV, L, a->max_seq, nt);
    tw_status st = tw_pool_run(nt, pairs, mla_pair_task, &j);
    free(j.scratch);
    if (st != TW_OK) return tw_error_ctx(st, "mla_attn: %d (sequence, head) pairs", pairs);
    return TW_OK;
}
