/* Attention and the KV store over a paged KV cache (tw_attn_paged_args, tw_kv_store_paged_args in
 * tw_backend.h), for the serving engine's continuous batching. Written, compiled and statically
 * checked like the other kernels; never run on this project's CI (no GPU there).
 *
 * The host checks every argument and position against the block tables (which are host memory),
 * then stages to the device, per query row, its sequence and position, and the block tables.
 *
 * Attention, grid (rows, n_heads), PA_THREADS threads: the block owns one query row of one head.
 * Its keys (0 .. pos, or the window's last W) are walked in chunks of PA_THREADS, one key per
 * thread (K read through the block table, tw_paged_kv_offset), the chunk's maximum and sum
 * reduced across the block and folded into the online softmax (tw_softmax_rescale); each thread
 * owns up to PA_DIMS output dimensions x = tid + i * PA_THREADS in registers and accumulates the
 * chunk's V rows (coalesced across threads). Decode uses the same kernel with one row per
 * sequence: no split over the keys (the contiguous cache's attn_decode has flash decoding; the
 * paged decode does not yet, which is slower for long contexts and one sequence, not wrong). */
#include "tw_cuda_internal.cuh"

#define PA_THREADS 128
#define PA_WARPS   (PA_THREADS / 32)
#define PA_DIMS    2 /* head_dim <= PA_THREADS * PA_DIMS = 256 */
#define PA_MAX_D   (PA_THREADS * PA_DIMS)

typedef struct {
    int n_heads, n_kv, d, block_tokens, max_blocks, window;
    const int *row_seq, *row_pos; /* [rows] device */
    const int32_t *tables;        /* [n_seqs, max_blocks] device */
    const float *q;
    const void *k, *v;
    float *out;
    float scale;
} tw_pa_params;

__device__ static inline float pa_load(const void *p, int bf16, size_t i) {
    return bf16 ? tw_f32_from_bf16(((const tw_bf16 *)p)[i]) : ((const float *)p)[i];
}

/* Block-wide reduction (max when is_max, else sum) through red[PA_WARPS]; every thread gets it. */
__device__ static inline float pa_reduce(float x, int is_max, float *red) {
    for (int o = 16; o > 0; o >>= 1) {
        float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* red is free (its last readers are done) */
    if (lane == 0) red[warp] = x;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < PA_WARPS; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

template <int BF16> __global__ void __launch_bounds__(PA_THREADS) tw_k_attn_paged(tw_pa_params p) {
    __shared__ float q_sh[PA_MAX_D];
    __shared__ float p_sh[PA_THREADS];
    __shared__ float red[PA_WARPS];
    const int row = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, d = p.d;
    const int kvh = h / (p.n_heads / p.n_kv);
    const int b = p.row_seq[row], pos = p.row_pos[row];
    const int32_t *tab = p.tables + (size_t)b * p.max_blocks;
    const float *q = p.q + ((size_t)row * p.n_heads + h) * d;
    for (int x = tid; x < d; x += PA_THREADS) q_sh[x] = q[x] * p.scale;
    __syncthreads();
    float o0 = 0.0f, o1 = 0.0f;
    tw_softmax_state st = tw_softmax_init();
    const int lo = tw_attn_window_lo(pos, p.window), hi = pos + 1;
    for (int j0 = lo; j0 < hi; j0 += PA_THREADS) {
        int j = j0 + tid;
        float s = -INFINITY;
        if (j < hi) {
            size_t off = tw_paged_kv_offset(tab, p.block_tokens, p.n_kv, d, kvh, j);
            float acc = 0.0f;
            for (int x = 0; x < d; x++) acc += q_sh[x] * pa_load(p.k, BF16, off + x);
            s = acc;
        }
        float mx = pa_reduce(s, 1, red);
        float alpha = tw_softmax_rescale(&st, mx);
        float e = j < hi ? __expf(s - st.m) : 0.0f;
        p_sh[tid] = e;
        float sum = pa_reduce(e, 0, red); /* its __syncthreads also publishes p_sh */
        st.l += sum;
        o0 *= alpha;
        o1 *= alpha;
        int nk = hi - j0 < PA_THREADS ? hi - j0 : PA_THREADS;
        for (int jj = 0; jj < nk; jj++) {
            float pj = p_sh[jj];
            size_t off = tw_paged_kv_offset(tab, p.block_tokens, p.n_kv, d, kvh, j0 + jj);
            if (tid < d) o0 += pj * pa_load(p.v, BF16, off + tid);
            if (tid + PA_THREADS < d) o1 += pj * pa_load(p.v, BF16, off + tid + PA_THREADS);
        }
        __syncthreads(); /* p_sh is rewritten by the next chunk */
    }
    float inv = 1.0f / st.l;
    float *out = p.out + ((size_t)row * p.n_heads + h) * d;
    if (tid < d) out[tid] = o0 * inv;
    if (tid + PA_THREADS < d) out[tid + PA_THREADS] = o1 * inv;
}

__global__ void __launch_bounds__(256)
    tw_k_kv_store_paged(int rows, int n_kv, int d, int block_tokens, int max_blocks,
                        const int *row_seq, const int *row_pos, const int32_t *tables,
                        const float *k, const float *v, int ldkv, void *kp, void *vp, int bf16) {
    size_t total = (size_t)rows * n_kv * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % d);
        size_t r = i / d;
        int h = (int)(r % n_kv);
        int row = (int)(r / n_kv);
        const int32_t *tab = tables + (size_t)row_seq[row] * max_blocks;
        size_t dst = tw_paged_kv_offset(tab, block_tokens, n_kv, d, h, row_pos[row]) + c;
        size_t src = (size_t)row * ldkv + (size_t)h * d + c;
        if (bf16) {
            ((tw_bf16 *)kp)[dst] = tw_bf16_from_f32(k[src]);
            ((tw_bf16 *)vp)[dst] = tw_bf16_from_f32(v[src]);
        } else {
            ((float *)kp)[dst] = k[src];
            ((float *)vp)[dst] = v[src];
        }
    }
}

/* ---- host side: checks and staging ------------------------------------------------------------
 */

/* Checks the per-sequence rows and positions against the block tables and stages the row map and
 * the tables. q_start NULL: one row per sequence (decode). */
static tw_status pa_stage(tw_cuda_ctx *ctx, const char *op, int n_seqs, const int *q_start,
                          const int *start_pos, const int32_t *tables, int block_tokens,
                          int n_blocks, int max_blocks, int one_row, int *rows_out,
                          int **row_seq_dev, int **row_pos_dev, int32_t **tables_dev) {
    if (n_seqs < 1 || block_tokens < 1 || n_blocks < 1 || max_blocks < 1 || !start_pos || !tables)
        return TW_ERR(TW_ERR_INVALID,
                      "cuda %s: n_seqs %d, block_tokens %d, n_blocks %d, "
                      "max_blocks %d (>= 1), start_pos and block_tables (non-NULL)",
                      op, n_seqs, block_tokens, n_blocks, max_blocks);
    if (!one_row && !q_start) return TW_ERR(TW_ERR_INVALID, "cuda %s: NULL q_start", op);
    int rows = q_start ? q_start[n_seqs] : n_seqs;
    if (rows < 1 || (q_start && q_start[0] != 0))
        return TW_ERR(TW_ERR_INVALID, "cuda %s: q_start must start at 0 and hold >= 1 row", op);
    int *map = (int *)malloc(sizeof(int) * 2 * (size_t)rows);
    if (!map) return TW_ERR(TW_ERR_NOMEM, "cuda %s: row map of %d rows", op, rows);
    tw_status st = TW_OK;
    for (int b = 0; b < n_seqs && st == TW_OK; b++) {
        int r0 = q_start ? q_start[b] : b, n = q_start ? q_start[b + 1] - q_start[b] : 1;
        int last = start_pos[b] + n - 1;
        if (n < 1 || (one_row && n != 1) || start_pos[b] < 0 || last / block_tokens >= max_blocks)
            st = TW_ERR(TW_ERR_INVALID,
                        "cuda %s: sequence %d (%d rows from position %d) outside its block table "
                        "(%d blocks of %d)",
                        op, b, n, start_pos[b], max_blocks, block_tokens);
        for (int k = 0; st == TW_OK && k <= last / block_tokens; k++) {
            int32_t blk = tables[(size_t)b * max_blocks + k];
            if (blk < 0 || blk >= n_blocks)
                st = TW_ERR(TW_ERR_INVALID, "cuda %s: sequence %d's block %d is %d, outside 0..%d",
                            op, b, k, (int)blk, n_blocks - 1);
        }
        for (int i = 0; st == TW_OK && i < n; i++) {
            map[r0 + i] = b;
            map[rows + r0 + i] = start_pos[b] + i;
        }
    }
    void *mp = NULL, *tp = NULL;
    if (st == TW_OK) st = tw_cuda_stage_in(ctx, map, sizeof(int) * 2 * (size_t)rows, &mp);
    if (st == TW_OK)
        st = tw_cuda_stage_in(ctx, tables, sizeof(int32_t) * (size_t)n_seqs * max_blocks, &tp);
    free(map);
    TW_TRY(st);
    *rows_out = rows;
    *row_seq_dev = (int *)mp;
    *row_pos_dev = (int *)mp + rows;
    *tables_dev = (int32_t *)tp;
    return TW_OK;
}

static tw_status pa_attn(tw_backend *be, const tw_attn_paged_args *a, int decode) {
    tw_cuda_ctx *ctx = (tw_cuda_ctx *)be->ctx;
    const char *op = decode ? "attn_decode_paged" : "attn_prefill_paged";
    if (!ctx->capturing) TW_CU(ctx, cudaSetDevice(ctx->device));
    if (!a || !a->q || !a->k_pool || !a->v_pool || !a->out)
        return TW_ERR(TW_ERR_INVALID, "cuda %s: NULL argument", op);
    if (a->n_heads < 1 || a->n_kv_heads < 1 || a->n_heads % a->n_kv_heads || a->head_dim < 1 ||
        a->head_dim > PA_MAX_D)
        return TW_ERR(TW_ERR_INVALID,
                      "cuda %s: n_heads %d, n_kv_heads %d (dividing it), head_dim %d (1..%d)", op,
                      a->n_heads, a->n_kv_heads, a->head_dim, PA_MAX_D);
    if ((a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16) || a->window < 0)
        return TW_ERR(TW_ERR_INVALID, "cuda %s: kv dtype %d, window %d", op, (int)a->kv_dtype,
                      a->window);
    int rows = 0, *rs = NULL, *rp = NULL;
    int32_t *td = NULL;
    TW_TRY(pa_stage(ctx, op, a->n_seqs, a->q_start, a->start_pos, a->block_tables, a->block_tokens,
                    a->n_blocks, a->max_blocks, decode, &rows, &rs, &rp, &td));
    tw_pa_params p = {
        a->n_heads, a->n_kv_heads, a->head_dim, a->block_tokens, a->max_blocks, a->window, rs, rp,
        td,         a->q,          a->k_pool,   a->v_pool,       a->out,        a->scale};
    dim3 grid((unsigned)rows, (unsigned)a->n_heads);
    if (a->kv_dtype == TW_BF16)
        tw_k_attn_paged<1><<<grid, PA_THREADS, 0, ctx->stream>>>(p);
    else
        tw_k_attn_paged<0><<<grid, PA_THREADS, 0, ctx->stream>>>(p);
    TW_CU_LAUNCHED(ctx, op);
    return TW_OK;
}

tw_status tw_cuda_attn_prefill_paged(tw_backend *be, const tw_attn_paged_args *a) {
    return pa_attn(be, a, 0);
}

tw_status tw_cuda_attn_decode_paged(tw_backend *be, const tw_attn_paged_args *a) {
    return pa_attn(be, a, 1);
}

tw_status tw_cuda_kv_store_paged(tw_backend *be, const tw_kv_store_paged_args *a) {
    tw_cuda_ctx *ctx = (tw_cuda_ctx *)be->ctx;
    if (!ctx->capturing) TW_CU(ctx, cudaSetDevice(ctx->device));
    if (!a || !a->k || !a->v || !a->k_pool || !a->v_pool)
        return TW_ERR(TW_ERR_INVALID, "cuda kv_store_paged: NULL argument");
    if (a->n_kv_heads < 1 || a->head_dim < 1 || (a->kv_dtype != TW_F32 && a->kv_dtype != TW_BF16))
        return TW_ERR(TW_ERR_INVALID, "cuda kv_store_paged: n_kv_heads %d, head_dim %d, dtype %d",
                      a->n_kv_heads, a->head_dim, (int)a->kv_dtype);
    int ld = a->ldkv ? a->ldkv : a->n_kv_heads * a->head_dim;
    if (ld < a->n_kv_heads * a->head_dim)
        return TW_ERR(TW_ERR_INVALID, "cuda kv_store_paged: ldkv %d", a->ldkv);
    int rows = 0, *rs = NULL, *rp = NULL;
    int32_t *td = NULL;
    TW_TRY(pa_stage(ctx, "kv_store_paged", a->n_seqs, a->q_start, a->start_pos, a->block_tables,
                    a->block_tokens, a->n_blocks, a->max_blocks, 0, &rows, &rs, &rp, &td));
    size_t total = (size_t)rows * a->n_kv_heads * a->head_dim;
    size_t nb = (total + 255) / 256;
    unsigned grid = (unsigned)(nb < 65535 ? (nb ? nb : 1) : 65535);
    tw_k_kv_store_paged<<<grid, 256, 0, ctx->stream>>>(
        rows, a->n_kv_heads, a->head_dim, a->block_tokens, a->max_blocks, rs, rp, td, a->k, a->v,
        ld, a->k_pool, a->v_pool, a->kv_dtype == TW_BF16);
    TW_CU_LAUNCHED(ctx, "kv_store_paged");
    return TW_OK;
}
