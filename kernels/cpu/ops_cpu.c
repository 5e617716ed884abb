/* CPU element-wise and row ops of the backend: RMSNorm, RoPE, SwiGLU, residual add, bias add,
 * embedding lookup (vocabulary shards) and argmax. Memory-bound; threads split rows (or chunks of a
 * flat array) on the persistent pool, and small calls stay on the calling thread, where handing out
 * tasks would cost more than the work. */
#include "attn_prims.h"
#include "tw_pool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Threads for `work` elements of streaming work: one below ~64K elements. */
static int ops_threads(size_t work, int threads) {
    return work < (1u << 16) ? 1 : tw_cpu_threads(threads);
}

static tw_status ops_check_threads(const char *op, int threads) {
    if (threads < 0)
        return TW_ERR(TW_ERR_INVALID, "%s: threads must be >= 0 (0 = all cores), got %d", op,
                      threads);
    return TW_OK;
}

typedef struct {
    int dim;
    const float *x;
    const void *w;
    tw_dtype w_dtype;
    float eps;
    float *y;
} rmsnorm_job;

/* y = x / rms(x) * w over one row of dim (y may be x: element-wise after the sum) */
static inline void rmsnorm_row(int dim, const float *xr, const void *w, tw_dtype w_dtype, float eps,
                               float *yr) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < dim; i++) ss += xr[i] * xr[i];
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    if (w_dtype == TW_F32) {
        const float *wf = w;
#pragma omp simd
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * inv * wf[i];
    } else {
        const tw_bf16 *wb = w;
#pragma omp simd
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * inv * tw_f32_from_bf16(wb[i]);
    }
}

static void rmsnorm_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const rmsnorm_job *j = arg;
    for (long r = r0; r < r1; r++)
        rmsnorm_row(j->dim, j->x + (size_t)r * j->dim, j->w, j->w_dtype, j->eps,
                    j->y + (size_t)r * j->dim);
}

tw_status rmsnorm_cpu(int rows, int dim, const float *x, const void *w, tw_dtype w_dtype, float eps,
                      float *y, int threads) {
    TW_TRY(ops_check_threads("rmsnorm", threads));
    if (rows < 1 || dim < 1)
        return TW_ERR(TW_ERR_INVALID, "rmsnorm: rows %d and dim %d must be >= 1", rows, dim);
    if (!x || !w || !y)
        return TW_ERR(TW_ERR_INVALID, "rmsnorm: NULL %s", !x ? "x" : !w ? "w" : "y");
    if (w_dtype != TW_F32 && w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "rmsnorm: weight dtype must be fp32 or bf16, got %d",
                      (int)w_dtype);
    if (!(eps >= 0.0f) || !isfinite(eps))
        return TW_ERR(TW_ERR_INVALID, "rmsnorm: eps must be finite and >= 0, got %g", (double)eps);
    rmsnorm_job j = {dim, x, w, w_dtype, eps, y};
    return tw_pool_for(ops_threads((size_t)rows * dim, threads), rows, 1, rmsnorm_rows, &j);
}

typedef struct {
    int n_heads, dim;
    float *x;
    long ld;
    const void *w;
    tw_dtype w_dtype;
    float eps;
} head_rmsnorm_job;

static void head_rmsnorm_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const head_rmsnorm_job *j = arg;
    for (long r = r0; r < r1; r++)
        for (int h = 0; h < j->n_heads; h++) {
            float *xr = j->x + (size_t)r * j->ld + (size_t)h * j->dim;
            rmsnorm_row(j->dim, xr, j->w, j->w_dtype, j->eps, xr);
        }
}

tw_status head_rmsnorm_cpu(int rows, int n_heads, int dim, float *x, int ldx, const void *w,
                           tw_dtype w_dtype, float eps, int threads) {
    TW_TRY(ops_check_threads("head_rmsnorm", threads));
    if (rows < 1 || n_heads < 1 || dim < 1)
        return TW_ERR(TW_ERR_INVALID, "head_rmsnorm: rows %d, heads %d and dim %d must be >= 1",
                      rows, n_heads, dim);
    if (!x || !w) return TW_ERR(TW_ERR_INVALID, "head_rmsnorm: NULL %s", !x ? "x" : "w");
    if (w_dtype != TW_F32 && w_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "head_rmsnorm: weight dtype must be fp32 or bf16, got %d",
                      (int)w_dtype);
    if (!(eps >= 0.0f) || !isfinite(eps))
        return TW_ERR(TW_ERR_INVALID, "head_rmsnorm: eps must be finite and >= 0, got %g",
                      (double)eps);
    const long ld = ldx ? ldx : (long)n_heads * dim;
    if (ld < (long)n_heads * dim)
        return TW_ERR(TW_ERR_INVALID, "head_rmsnorm: ldx %d is less than n_heads * dim = %ld", ldx,
                      (long)n_heads * dim);
    head_rmsnorm_job j = {n_heads, dim, x, ld, w, w_dtype, eps};
    return tw_pool_for(ops_threads((size_t)rows * n_heads * dim, threads), rows, 1,
                       head_rmsnorm_rows, &j);
}

static tw_status rope_check_params(const tw_rope_params *rp) {
    if (!(rp->theta > 0.0f) || !isfinite(rp->theta))
        return TW_ERR(TW_ERR_INVALID, "rope: rope_theta must be > 0, got %g", (double)rp->theta);
    if (rp->type != TW_ROPE_DEFAULT && rp->type != TW_ROPE_LINEAR && rp->type != TW_ROPE_LLAMA3 &&
        rp->type != TW_ROPE_YARN)
        return TW_ERR(TW_ERR_INVALID, "rope: unknown rope type %d", (int)rp->type);
    if (rp->type == TW_ROPE_YARN &&
        (!(rp->original_max_pos > 0.0f) || !(rp->beta_fast > 0.0f) || !(rp->beta_slow > 0.0f)))
        return TW_ERR(TW_ERR_INVALID,
                      "rope: yarn scaling needs original_max_position_embeddings (%g), beta_fast "
                      "(%g) and beta_slow (%g) > 0",
                      (double)rp->original_max_pos, (double)rp->beta_fast, (double)rp->beta_slow);
    if (rp->type != TW_ROPE_DEFAULT && !(rp->factor > 0.0f))
        return TW_ERR(TW_ERR_INVALID, "rope: scaling factor must be > 0, got %g",
                      (double)rp->factor);
    if (rp->type == TW_ROPE_LLAMA3 &&
        (!(rp->low_freq_factor > 0.0f) || !(rp->high_freq_factor > rp->low_freq_factor) ||
         !(rp->original_max_pos > 0.0f)))
        return TW_ERR(TW_ERR_INVALID,
                      "rope: llama3 scaling needs 0 < low_freq_factor (%g) < high_freq_factor "
                      "(%g) and original_max_position_embeddings > 0 (%g)",
                      (double)rp->low_freq_factor, (double)rp->high_freq_factor,
                      (double)rp->original_max_pos);
    return TW_OK;
}

typedef struct {
    int n_heads, head_dim;
    float *x;
    long ld;
    const int *positions;
    const float *inv;
    _Atomic int fail;
} rope_job;

static void rope_tokens(void *arg, long t0, long t1, int worker) {
    (void)worker;
    rope_job *j = arg;
    const int half = j->head_dim / 2;
    /* cos and sin of one token, shared by its heads */
    float stack[1024], *cs = half <= 512 ? stack : malloc(sizeof(float) * 2 * (size_t)half);
    if (!cs) {
        atomic_store(&j->fail, 1);
        return;
    }
    for (long t = t0; t < t1; t++) {
        for (int i = 0; i < half; i++) {
            float ang = tw_rope_angle(j->positions[t], j->inv[i]);
            cs[i] = cosf(ang);
            cs[half + i] = sinf(ang);
        }
        for (int h = 0; h < j->n_heads; h++) {
            float *xh = j->x + (size_t)t * j->ld + (size_t)h * j->head_dim;
            for (int i = 0; i < half; i++)
                tw_rope_rotate(&xh[i], &xh[half + i], cs[i], cs[half + i]);
        }
    }
    if (cs != stack) free(cs);
}

tw_status rope_cpu(int tokens, int n_heads, int head_dim, float *x, int ldx, const int *positions,
                   const tw_rope_params *rp, int threads) {
    TW_TRY(ops_check_threads("rope", threads));
    if (tokens < 1 || n_heads < 1)
        return TW_ERR(TW_ERR_INVALID, "rope: tokens %d and n_heads %d must be >= 1", tokens,
                      n_heads);
    if (head_dim < 2 || head_dim % 2)
        return TW_ERR(TW_ERR_INVALID, "rope: head_dim must be even and >= 2, got %d", head_dim);
    if (!x || !positions || !rp)
        return TW_ERR(TW_ERR_INVALID, "rope: NULL %s", !x ? "x" : !positions ? "positions" : "rp");
    TW_TRY(rope_check_params(rp));
    const long row = (long)n_heads * head_dim;
    const long ld = ldx ? ldx : row;
    if (ld < row)
        return TW_ERR(TW_ERR_INVALID, "rope: ldx %d is less than n_heads * head_dim = %ld", ldx,
                      row);
    for (int t = 0; t < tokens; t++)
        if (positions[t] < 0)
            return TW_ERR(TW_ERR_INVALID, "rope: positions[%d] = %d is negative", t, positions[t]);
    const int half = head_dim / 2;
    float *inv = malloc(sizeof(float) * (size_t)half);
    if (!inv) return TW_ERR(TW_ERR_NOMEM, "rope: %d frequencies", half);
    for (int i = 0; i < half; i++) inv[i] = tw_rope_inv_freq(i, head_dim, rp);
    rope_job j = {n_heads, head_dim, x, ld, positions, inv, 0};
    /* sin/cos: weigh more than a copy */
    tw_status st =
        tw_pool_for(ops_threads((size_t)tokens * row * 8, threads), tokens, 1, rope_tokens, &j);
    free(inv);
    if (st == TW_OK && atomic_load(&j.fail))
        return TW_ERR(TW_ERR_NOMEM, "rope: sin/cos table of %d", half);
    return st;
}

typedef struct {
    const tw_attn_prims *pr;
    int f;
    const float *gate, *up;
    long ld;
    float *out;
} swiglu_job;

static void swiglu_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const swiglu_job *j = arg;
    for (long r = r0; r < r1; r++)
        j->pr->swiglu_row(j->f, j->gate + (size_t)r * j->ld, j->up + (size_t)r * j->ld,
                          j->out + (size_t)r * j->f);
}

static void swiglu_piece(void *arg, long i0, long i1, int worker) {
    (void)worker;
    const swiglu_job *j = arg;
    j->pr->swiglu_row((int)(i1 - i0), j->gate + i0, j->up + i0, j->out + i0);
}

tw_status swiglu_cpu(int rows, int f, const float *gate, const float *up, int ld_in, float *out,
                     int threads) {
    return swiglu_cpu_with(tw_cpu_state_default(), rows, f, gate, up, ld_in, out, threads);
}

tw_status swiglu_cpu_with(const tw_cpu_state *cs, int rows, int f, const float *gate,
                          const float *up, int ld_in, float *out, int threads) {
    TW_TRY(ops_check_threads("swiglu", threads));
    if (rows < 1 || f < 1)
        return TW_ERR(TW_ERR_INVALID, "swiglu: rows %d and f %d must be >= 1", rows, f);
    if (!gate || !up || !out)
        return TW_ERR(TW_ERR_INVALID, "swiglu: NULL %s", !gate ? "gate" : !up ? "up" : "out");
    const long ld = ld_in ? ld_in : f;
    if (ld < f) return TW_ERR(TW_ERR_INVALID, "swiglu: ld_in %d is less than f = %d", ld_in, f);
    swiglu_job j = {tw_attn_prims_for(tw_cpu_state_simd(cs)), f, gate, up, ld, out};
    int nt = ops_threads((size_t)rows * f * 4, threads); /* exp: weigh more than a copy */
    if (rows == 1 && nt > 1)                             /* one token: split the row */
        return tw_pool_for(nt, f, 4096, swiglu_piece, &j);
    return tw_pool_for(nt, rows, 1, swiglu_rows, &j);
}

typedef struct {
    const float *x;
    float *y;
} add_job;

static void add_piece(void *arg, long i0, long i1, int worker) {
    (void)worker;
    const add_job *j = arg;
#pragma omp simd
    for (long i = i0; i < i1; i++) j->y[i] += j->x[i];
}

tw_status add_cpu(size_t n, const float *x, float *y, int threads) {
    TW_TRY(ops_check_threads("add", threads));
    if (n == 0) return TW_OK;
    if (!x || !y) return TW_ERR(TW_ERR_INVALID, "add: NULL %s", !x ? "x" : "y");
    add_job j = {x, y};
    return tw_pool_for(ops_threads(n, threads), (long)n, 1 << 14, add_piece, &j);
}

typedef struct {
    const int *tokens;
    const void *table;
    tw_dtype dtype;
    int row0, rows, dim;
    float *out;
} embed_job;

static void embed_rows(void *arg, long i0, long i1, int worker) {
    (void)worker;
    const embed_job *j = arg;
    const int dim = j->dim;
    for (long i = i0; i < i1; i++) {
        float *o = j->out + (size_t)i * dim;
        long r = (long)j->tokens[i] - j->row0;
        if (r < 0 || r >= j->rows) { /* another shard's token */
            memset(o, 0, sizeof(float) * (size_t)dim);
        } else if (j->dtype == TW_F32) {
            memcpy(o, (const float *)j->table + (size_t)r * dim, sizeof(float) * (size_t)dim);
        } else {
            const tw_bf16 *src = (const tw_bf16 *)j->table + (size_t)r * dim;
            for (int x = 0; x < dim; x++) o[x] = tw_f32_from_bf16(src[x]);
        }
    }
}

typedef struct {
    int n;
    float *x;
    long ld;
    const void *b;
    tw_dtype b_dtype;
} bias_add_job;

static void bias_add_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const bias_add_job *j = arg;
    const int n = j->n;
    for (long r = r0; r < r1; r++) {
        float *xr = j->x + (size_t)r * j->ld;
        if (j->b_dtype == TW_F32) {
            const float *bf = j->b;
#pragma omp simd
            for (int i = 0; i < n; i++) xr[i] += bf[i];
        } else {
            const tw_bf16 *bb = j->b;
#pragma omp simd
            for (int i = 0; i < n; i++) xr[i] += tw_f32_from_bf16(bb[i]);
        }
    }
}

tw_status bias_add_cpu(int rows, int n, float *x, int ldx, const void *b, tw_dtype b_dtype,
                       int threads) {
    TW_TRY(ops_check_threads("bias_add", threads));
    if (rows < 1 || n < 1)
        return TW_ERR(TW_ERR_INVALID, "bias_add: rows %d and n %d must be >= 1", rows, n);
    if (!x || !b) return TW_ERR(TW_ERR_INVALID, "bias_add: NULL %s", !x ? "x" : "b");
    if (b_dtype != TW_F32 && b_dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "bias_add: bias dtype must be fp32 or bf16, got %d",
                      (int)b_dtype);
    const long ld = ldx ? ldx : n;
    if (ld < n) return TW_ERR(TW_ERR_INVALID, "bias_add: ldx %d is less than n = %d", ldx, n);
    bias_add_job j = {n, x, ld, b, b_dtype};
    return tw_pool_for(ops_threads((size_t)rows * n, threads), rows, 1, bias_add_rows, &j);
}

tw_status embed_cpu(int n, const int *tokens, const void *table, tw_dtype dtype, int row0, int rows,
                    int dim, float *out, int threads) {
    TW_TRY(ops_check_threads("embed", threads));
    if (n < 1 || dim < 1 || rows < 1 || row0 < 0)
        return TW_ERR(TW_ERR_INVALID,
                      "embed: n %d, rows %d and dim %d must be >= 1 and row0 %d >= 0", n, rows, dim,
                      row0);
    if (!tokens || !table || !out)
        return TW_ERR(TW_ERR_INVALID, "embed: NULL %s",
                      !tokens  ? "tokens"
                      : !table ? "table"
                               : "out");
    if (dtype != TW_F32 && dtype != TW_BF16)
        return TW_ERR(TW_ERR_INVALID, "embed: table dtype must be fp32 or bf16, got %d",
                      (int)dtype);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0)
            return TW_ERR(TW_ERR_INVALID, "embed: tokens[%d] = %d is negative", i, tokens[i]);
    embed_job j = {tokens, table, dtype, row0, rows, dim, out};
    return tw_pool_for(ops_threads((size_t)n * dim, threads), n, 1, embed_rows, &j);
}

typedef struct {
    int n;
    const float *logits;
    int *idx;
    float *val;
} argmax_job;

/* The first index of the largest number in v[0 .. n); a NaN never wins, and a row of NaNs gives
 * index 0. Two passes: the maximum over 16 independent lanes (element-wise, so the compiler
 * vectorizes it; a scalar compare chain ran at ~5 GB/s and took ~5% of a batch-64 decode step
 * over a 128256-word vocabulary), then the first index equal to it. -0 and +0 compare equal,
 * so ties between them also go to the first. */
static int argmax_row(const float *v, int n) {
    enum { LANES = 16 };
    float lane[LANES];
    for (int l = 0; l < LANES; l++) lane[l] = -INFINITY;
    int i = 0;
#if defined(__SSE2__) /* maxps(a, b) is a > b ? a : b, lane by lane, as below */
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    for (; i + LANES <= n; i += LANES) {
        m0 = _mm_max_ps(_mm_loadu_ps(v + i), m0);
        m1 = _mm_max_ps(_mm_loadu_ps(v + i + 4), m1);
        m2 = _mm_max_ps(_mm_loadu_ps(v + i + 8), m2);
        m3 = _mm_max_ps(_mm_loadu_ps(v + i + 12), m3);
    }
    _mm_storeu_ps(lane, m0);
    _mm_storeu_ps(lane + 4, m1);
    _mm_storeu_ps(lane + 8, m2);
    _mm_storeu_ps(lane + 12, m3);
#else
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) lane[l] = v[i + l] > lane[l] ? v[i + l] : lane[l];
#endif
    float mx = -INFINITY;
    for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    for (int l = 0; l < LANES; l++) mx = lane[l] > mx ? lane[l] : mx;
    for (i = 0; i < n; i++)
        if (v[i] == mx) return i;
    return 0; /* every value NaN */
}

static void argmax_rows(void *arg, long r0, long r1, int worker) {
    (void)worker;
    const argmax_job *j = arg;
    for (long r = r0; r < r1; r++) {
        const float *lr = j->logits + (size_t)r * j->n;
        const int best = argmax_row(lr, j->n);
        j->idx[r] = best;
        j->val[r] = lr[best];
    }
}

tw_status argmax_cpu(int rows, int n, const float *logits, int *idx, float *val, int threads) {
    TW_TRY(ops_check_threads("argmax", threads));
    if (rows < 1 || n < 1)
        return TW_ERR(TW_ERR_INVALID, "argmax: rows %d and n %d must be >= 1", rows, n);
    if (!logits || !idx || !val)
        return TW_ERR(TW_ERR_INVALID, "argmax: NULL %s", !logits ? "logits" : !idx ? "idx" : "val");
    argmax_job j = {n, logits, idx, val};
    return tw_pool_for(ops_threads((size_t)rows * n, threads), rows, 1, argmax_rows, &j);
}
