/* cuBLAS (cublasLt) behind the backend's GEMM entry, so every GEMM figure can be quoted as a
 * ratio to cuBLAS measured in the same run. Row-major y[m, n] = x[m, k] . w[n, k]^T is, in
 * cuBLAS's column-major terms, Y^T (n x m) = op(W) X^T with W stored k x n (ld k) and op = T.
 * bf16 weights: A and B bf16 (activations cast by the caller), fp32 accumulation and output.
 * fp32 weights: everything fp32 (CUBLAS_COMPUTE_32F, no TF32). The algorithm for each shape is
 * chosen once by cublasLt's heuristic (for the operands' actual alignments) and cached. */
#include "tw_cuda_internal.cuh"

static unsigned lt_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    unsigned a = 256;
    while (a > 1 && u % a) a /= 2;
    return a;
}

static void lt_plan_clear(tw_lt_plan *pl) {
    if (!pl->used) return;
    cublasLtMatrixLayoutDestroy(pl->la);
    cublasLtMatrixLayoutDestroy(pl->lb);
    cublasLtMatrixLayoutDestroy(pl->lc);
    cublasLtMatmulDescDestroy(pl->op);
    pl->used = 0;
}

void tw_cuda_lt_destroy(tw_cuda_ctx *ctx) {
    for (int i = 0; i < TW_CUDA_LT_CACHE; i++) lt_plan_clear(&ctx->lt_cache[i]);
}

static tw_status lt_plan_make(tw_cuda_ctx *ctx, tw_lt_plan *pl) {
    cudaDataType_t ab = pl->wdt == TW_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    TW_CUBLAS(ctx, cublasLtMatmulDescCreate(&pl->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    pl->used = 1; /* from here lt_plan_clear releases what exists; create the rest */
    pl->la = pl->lb = pl->lc = NULL;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    TW_CUBLAS(ctx,
              cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    TW_CUBLAS(ctx,
              cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    TW_CUBLAS(ctx, cublasLtMatrixLayoutCreate(&pl->la, ab, pl->k, pl->n, pl->k));
    TW_CUBLAS(ctx, cublasLtMatrixLayoutCreate(&pl->lb, ab, pl->k, pl->m, pl->ldb));
    TW_CUBLAS(ctx, cublasLtMatrixLayoutCreate(&pl->lc, CUDA_R_32F, pl->n, pl->m, pl->ldc));
    cublasLtMatmulPreference_t pref;
    TW_CUBLAS(ctx, cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = ctx->lt_ws_bytes;
    uint32_t al_a = pl->align_a, al_b = pl->align_b, al_c = pl->align_c;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                 &al_a, sizeof al_a);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                 &al_b, sizeof al_b);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                 &al_c, sizeof al_c);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                 &al_c, sizeof al_c);
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(ctx->lt, pl->op, pl->la, pl->lb, pl->lc, pl->lc, pref, 1,
                                           &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS)
        return tw_cublas_fail(ctx, s, "cublasLt preference/heuristic", __FILE__, __LINE__);
    if (nres < 1)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "cublasLt has no algorithm for m=%d n=%d k=%d (%s weights) on %s", pl->m,
                      pl->n, pl->k, tw_cuda_dtype_name(pl->wdt), ctx->name);
    pl->algo = res.algo;
    return TW_OK;
}

tw_status tw_cuda_gemm_cublas(tw_cuda_ctx *ctx, const tw_gemm_args *a, const void *x_dev,
                              int x_is_bf16, int ldx) {
    (void)x_is_bf16;
    tw_lt_plan key;
    memset(&key, 0, sizeof key);
    key.m = a->m;
    key.n = a->n;
    key.k = a->k;
    key.ldb = ldx;
    key.ldc = a->ldy ? a->ldy : a->n;
    key.wdt = a->w_dtype;
    key.align_a = lt_align(a->w);
    key.align_b = lt_align(x_dev);
    key.align_c = lt_align(a->y);
    tw_lt_plan *pl = NULL;
    for (int i = 0; i < TW_CUDA_LT_CACHE && !pl; i++) {
        tw_lt_plan *c = &ctx->lt_cache[i];
        if (c->used && c->m == key.m && c->n == key.n && c->k == key.k && c->ldb == key.ldb &&
            c->ldc == key.ldc && c->wdt == key.wdt && c->align_a == key.align_a &&
            c->align_b == key.align_b && c->align_c == key.align_c)
            pl = c;
    }
    if (!pl) {
        pl = &ctx->lt_cache[ctx->lt_next];
        ctx->lt_next = (ctx->lt_next + 1) % TW_CUDA_LT_CACHE;
        lt_plan_clear(pl);
        *pl = key;
        tw_status st = lt_plan_make(ctx, pl);
        if (st != TW_OK) {
            lt_plan_clear(pl);
            return st;
        }
    }
    float alpha = 1.0f, beta = a->accumulate ? 1.0f : 0.0f;
    TW_CUBLAS(ctx, cublasLtMatmul(ctx->lt, pl->op, &alpha, a->w, pl->la, x_dev, pl->lb, &beta, a->y,
                                  pl->lc, a->y, pl->lc, &pl->algo, ctx->lt_ws, ctx->lt_ws_bytes,
                                  ctx->stream));
    return TW_OK;
}
