/* CPU mixture-of-experts ops: routing (the scoring rules of Mixtral, Qwen3-MoE, DeepSeek-V2 and
 * V3, tw_backend.h) and the grouped expert MLP. The MLP sorts the (token, slot) assignments by
 * expert (a counting sort, stable in slot order), gathers each expert's rows into one block and
 * runs the backend GEMM on the block (gate/up, then SwiGLU, then down): one GEMM per expert and
 * projection, never a loop of per-token GEMVs. The combine sums each token's slots in slot
 * order, so a token's output does not depend on the thread count or on which other tokens share
 * its experts (the GEMM's rows are independent of each other). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cpu.h"
#include "tw_pool.h"

static float moe_ld(const void *p, tw_dtype dt, int i) {
    return dt == TW_BF16 ? tw_f32_from_bf16(((const tw_bf16 *)p)[i]) : ((const float *)p)[i];
}

/* index of the largest v[i] over i in [0, n) with !taken[i] (ties: the lower index); -1 if none */
static int moe_best(const float *v, const unsigned char *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (taken[i]) continue;
        if (best < 0 || v[i] > v[best]) best = i;
    }
    return best;
}

typedef struct {
    const tw_moe_route_args *a;
    char *scratch; /* per worker: `stride` bytes */
    size_t stride;
} moe_route_job;

/* Routes tokens [t0, t1) with worker's scratch; a token's result depends on its logits alone. */
static void moe_route_tokens(void *arg, long t0, long t1, int worker) {
    const moe_route_job *jb = arg;
    const tw_moe_route_args *a = jb->a;
    const int E = a->n_experts, K = a->top_k, G = a->n_group, per = E / G;
    float *s = (float *)(jb->scratch + jb->stride * (size_t)worker);
    float *choice = s + E, *gs = s + 2 * E;
    unsigned char *taken = (unsigned char *)(s + 2 * E + G), *gtaken = taken + E;
    for (long t = t0; t < t1; t++) {
        const float *lg = a->logits + (size_t)t * E;
        for (int e = 0; e < E; e++) s[e] = lg[e] + (a->logit_bias ? a->logit_bias[e] : 0.0f);
        if (a->scoring == TW_ROUTE_SOFTMAX) {
            float m = s[0], sum = 0.0f;
            for (int e = 1; e < E; e++) m = s[e] > m ? s[e] : m;
            for (int e = 0; e < E; e++) sum += (s[e] = expf(s[e] - m));
            for (int e = 0; e < E; e++) s[e] /= sum;
        } else {
            for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-s[e]));
        }
        for (int e = 0; e < E; e++)
            choice[e] = s[e] + (a->choice_bias ? moe_ld(a->choice_bias, a->choice_dtype, e) : 0);
        memset(taken, 0, (size_t)(E + G));
        if (G > 1) { /* keep the topk_group best groups; the others' experts are out */
            for (int g = 0; g < G; g++) {
                const float *cg = choice + (size_t)g * per;
                int b1 = 0;
                for (int i = 1; i < per; i++) b1 = cg[i] > cg[b1] ? i : b1;
                float v = cg[b1];
                if (a->group_top2) {
                    int b2 = -1;
                    for (int i = 0; i < per; i++)
                        if (i != b1 && (b2 < 0 || cg[i] > cg[b2])) b2 = i;
                    v += cg[b2];
                }
                gs[g] = v;
            }
            for (int i = 0; i < a->topk_group; i++) gtaken[moe_best(gs, gtaken, G)] = 1;
            for (int g = 0; g < G; g++)
                if (!gtaken[g]) memset(taken + (size_t)g * per, 1, (size_t)per);
        }
        int *ix = a->idx + (size_t)t * K;
        float *w = a->weight + (size_t)t * K;
        float sum = 0.0f;
        for (int j = 0; j < K; j++) {
            int e = moe_best(choice, taken, E);
            taken[e] = 1;
            ix[j] = e;
            w[j] = s[e];
            sum += s[e];
        }
        float den = a->scoring == TW_ROUTE_SIGMOID ? sum + 1e-20f : sum;
        for (int j = 0; j < K; j++) w[j] = (a->norm_topk ? w[j] / den : w[j]) * a->scale;
    }
}

tw_status moe_route_cpu(const tw_moe_route_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "moe_route: NULL arguments");
    if (a->tokens < 1 || a->n_experts < 1 || a->top_k < 1 || a->top_k > a->n_experts)
        return TW_ERR(TW_ERR_INVALID, "moe_route: tokens %d, experts %d, top_k %d", a->tokens,
                      a->n_experts, a->top_k);
    if (a->n_group < 1 || a->n_experts % a->n_group || a->topk_group < 1 ||
        a->topk_group > a->n_group || a->top_k > a->topk_group * (a->n_experts / a->n_group) ||
        (a->group_top2 && a->n_group > 1 && a->n_experts / a->n_group < 2))
        return TW_ERR(TW_ERR_INVALID,
                      "moe_route: groups n_group %d, topk_group %d do not fit %d experts, top_k %d",
                      a->n_group, a->topk_group, a->n_experts, a->top_k);
    if (a->scoring != TW_ROUTE_SOFTMAX && a->scoring != TW_ROUTE_SIGMOID)
        return TW_ERR(TW_ERR_INVALID, "moe_route: unknown scoring %d", (int)a->scoring);
    if (a->choice_bias && a->choice_dtype != TW_F32 && a->choice_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "moe_route: choice bias dtype %d", (int)a->choice_dtype);
    if (!a->logits || !a->idx || !a->weight)
        return TW_ERR(TW_ERR_INVALID, "moe_route: NULL %s",
                      !a->logits ? "logits"
                      : !a->idx  ? "idx"
                                 : "weight");
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "moe_route: threads %d", threads);
    const int E = a->n_experts, G = a->n_group;
    int nt = (size_t)a->tokens * E < 4096 ? 1 : tw_cpu_threads(threads);
    if (nt > a->tokens) nt = a->tokens;
    if (nt > TW_POOL_MAX_THREADS) nt = TW_POOL_MAX_THREADS;
    /* per worker: scores [2E + G] floats, then taken flags [E + G], on 64-byte lines of its own */
    const size_t stride =
        (sizeof(float) * (size_t)(2 * E + G) + (size_t)(E + G) + 63) & ~(size_t)63;
    moe_route_job j = {a, aligned_alloc(64, stride * (size_t)nt), stride};
    if (!j.scratch)
        return TW_ERR(TW_ERR_NOMEM,
                      "moe_route: per-thread scores of %d experts (%zu bytes x %d threads)", E,
                      stride, nt);
    /* about 4 tasks per thread: one token (a few passes over E scores) is too small a task */
    const long chunk = nt > 1 ? (a->tokens + 4L * nt - 1) / (4L * nt) : a->tokens;
    tw_status st = tw_pool_for(nt, a->tokens, chunk, moe_route_tokens, &j);
    free(j.scratch);
    if (st != TW_OK) return tw_error_ctx(st, "moe_route: %d tokens on %d threads", a->tokens, nt);
    return TW_OK;
}

/* The workspace carved into its parts (tw_moe_ffn_work_bytes). */
typedef struct {
    float *xs;   /* [slots, hidden] gathered inputs, expert-sorted */
    float *gu;   /* [slots, 2 * ffn] */
    float *act;  /* [slots, ffn] */
    float *out;  /* [slots, hidden] */
    int *pos;    /* [slots] sorted position of slot t * k + j (-1: expert not held) */
    int *token;  /* [slots] token of sorted position p */
    int *count;  /* [n_experts] */
    int *offset; /* [n_experts + 1], then a cursor per expert [n_experts] */
} moe_work;

static void moe_carve(void *work, int slots, int hidden, int ffn, int n_experts, moe_work *w) {
    char *p = work;
    w->xs = (float *)p, p += sizeof(float) * (size_t)slots * hidden;
    w->gu = (float *)p, p += sizeof(float) * (size_t)slots * 2 * ffn;
    w->act = (float *)p, p += sizeof(float) * (size_t)slots * ffn;
    w->out = (float *)p, p += sizeof(float) * (size_t)slots * hidden;
    w->pos = (int *)p, p += sizeof(int) * (size_t)slots;
    w->token = (int *)p, p += sizeof(int) * (size_t)slots;
    w->count = (int *)p, p += sizeof(int) * (size_t)n_experts;
    w->offset = (int *)p;
}

typedef struct {
    const tw_moe_ffn_args *a;
    const moe_work *w;
} moe_ffn_job;

/* Gathers the inputs of sorted positions [p0, p1). */
static void moe_gather_rows(void *arg, long p0, long p1, int worker) {
    (void)worker;
    const moe_ffn_job *j = arg;
    const size_t H = (size_t)j->a->hidden;
    for (long p = p0; p < p1; p++)
        memcpy(j->w->xs + (size_t)p * H, j->a->x + (size_t)j->w->token[p] * H, sizeof(float) * H);
}

/* y[t] (+)= sum over t's held slots, in slot order, of weight * expert output: tokens [t0, t1). */
static void moe_combine_tokens(void *arg, long t0, long t1, int worker) {
    (void)worker;
    const moe_ffn_job *j = arg;
    const tw_moe_ffn_args *a = j->a;
    const int H = a->hidden, K = a->top_k;
    for (long t = t0; t < t1; t++) {
        float *yt = a->y + (size_t)t * H;
        if (!a->accumulate) memset(yt, 0, sizeof(float) * (size_t)H);
        for (int k = 0; k < K; k++) {
            int p = j->w->pos[t * K + k];
            if (p < 0) continue;
            float wt = a->weight[t * K + k];
            const float *o = j->w->out + (size_t)p * H;
#pragma omp simd
            for (int i = 0; i < H; i++) yt[i] += wt * o[i];
        }
    }
}

tw_status moe_ffn_cpu(const tw_moe_ffn_args *a, int threads) {
    return moe_ffn_cpu_with(tw_cpu_state_default(), a, threads);
}

/* The experts' GEMMs and activation at cs's SIMD level, on its panel cache. */
tw_status moe_ffn_cpu_with(tw_cpu_state *cs, const tw_moe_ffn_args *a, int threads) {
    if (!a) return TW_ERR(TW_ERR_INVALID, "moe_ffn: NULL arguments");
    if (a->tokens < 1 || a->hidden < 1 || a->ffn < 1 || a->top_k < 1 || a->n_experts < 1 ||
        a->expert0 < 0)
        return TW_ERR(TW_ERR_INVALID,
                      "moe_ffn: tokens %d, hidden %d, ffn %d, top_k %d, experts %d from %d",
                      a->tokens, a->hidden, a->ffn, a->top_k, a->n_experts, a->expert0);
    if (!a->idx || !a->weight || !a->x || !a->w_gate_up || !a->w_down || !a->y || !a->work)
        return TW_ERR(TW_ERR_INVALID, "moe_ffn: NULL operand");
    if (a->w_dtype != TW_F32 && a->w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "moe_ffn: weight dtype %d", (int)a->w_dtype);
    size_t need = tw_moe_ffn_work_bytes(a->tokens, a->top_k, a->hidden, a->ffn, a->n_experts);
    if (a->work_bytes < need)
        return TW_ERR(TW_ERR_INVALID, "moe_ffn: workspace of %zu bytes, needs %zu", a->work_bytes,
                      need);
    if (threads < 0) return TW_ERR(TW_ERR_INVALID, "moe_ffn: threads %d", threads);
    const int T = a->tokens, K = a->top_k, H = a->hidden, F = a->ffn, E = a->n_experts;
    const int slots = T * K;
    moe_work w;
    moe_carve(a->work, slots, H, F, E, &w);
    /* counting sort of the slots by held expert, stable in slot order */
    memset(w.count, 0, sizeof(int) * (size_t)E);
    for (int s = 0; s < slots; s++) {
        int e = a->idx[s] - a->expert0;
        if (e >= 0 && e < E) w.count[e]++;
    }
    w.offset[0] = 0;
    for (int e = 0; e < E; e++) w.offset[e + 1] = w.offset[e] + w.count[e];
    int *cursor = w.offset + E + 1;
    memcpy(cursor, w.offset, sizeof(int) * (size_t)E);
    for (int s = 0; s < slots; s++) {
        int e = a->idx[s] - a->expert0;
        if (e < 0 || e >= E) {
            w.pos[s] = -1;
            continue;
        }
        int p = cursor[e]++;
        w.pos[s] = p;
        w.token[p] = s / K;
    }
    const int rows = w.offset[E];
    int nt = tw_cpu_threads(threads);
    moe_ffn_job j = {a, &w};
    int gnt = (size_t)rows * H < (1u << 15) ? 1 : nt;
    tw_status gst = tw_pool_for(gnt, rows, 1, moe_gather_rows, &j);
    if (gst != TW_OK) return tw_error_ctx(gst, "moe_ffn: gathering %d rows", rows);
    size_t ws = tw_dtype_size(a->w_dtype);
    for (int e = 0; e < E; e++) {
        int n = w.count[e], off = w.offset[e];
        if (n == 0) continue;
        tw_gemm_args g1 = {.m = n,
                           .n = 2 * F,
                           .k = H,
                           .x = w.xs + (size_t)off * H,
                           .w = (const char *)a->w_gate_up + (size_t)e * 2 * F * H * ws,
                           .w_dtype = a->w_dtype,
                           .y = w.gu + (size_t)off * 2 * F};
        tw_status st = gemm_cpu_with(cs, &g1, threads);
        if (st == TW_OK)
            st = swiglu_cpu_with(cs, n, F, w.gu + (size_t)off * 2 * F,
                                 w.gu + (size_t)off * 2 * F + F, 2 * F, w.act + (size_t)off * F,
                                 threads);
        tw_gemm_args g2 = {.m = n,
                           .n = H,
                           .k = F,
                           .x = w.act + (size_t)off * F,
                           .w = (const char *)a->w_down + (size_t)e * H * F * ws,
                           .w_dtype = a->w_dtype,
                           .y = w.out + (size_t)off * H};
        if (st == TW_OK) st = gemm_cpu_with(cs, &g2, threads);
        if (st != TW_OK) return tw_error_ctx(st, "moe_ffn: expert %d (%d rows)", a->expert0 + e, n);
    }
    int cnt = (size_t)T * H < (1u << 15) ? 1 : nt;
    tw_status cst = tw_pool_for(cnt, T, 1, moe_combine_tokens, &j);
    if (cst != TW_OK) return tw_error_ctx(cst, "moe_ffn: combining %d tokens", T);
    if (a->counts) memcpy(a->counts, w.count, sizeof(int) * (size_t)E);
    return TW_OK;
}
