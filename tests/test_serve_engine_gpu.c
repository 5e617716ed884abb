/* The CUDA backend's paged-KV ops (kv_store_paged, attn_prefill_paged, attn_decode_paged) against
 * the float64 reference of tw_serve_paged_case.h: scattered block tables, NaN-poisoned unused
 * blocks (a read of one leaks NaN into the output; a write outside the tables is counted), chunks
 * after cached context, windows, fp32 and bf16 pools. Skipped, saying why, where no CUDA device
 * exists or CUDA was not built (never run on this project's CI machines: no GPU). Tolerance:
 * 1e-4 relative 2-norm (fp32 accumulation with the device's exp). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tw_backend.h"
#include "tw_cuda_info.h"
#include "tw_serve_paged_case.h"

static tw_backend *gpu_or_skip(void) {
    int n = 0;
    tw_status st = tw_cuda_device_count(&n);
    if (st != TW_OK) cr_skip_test("no CUDA device: %s", tw_last_error());
    if (n == 0) cr_skip_test("no CUDA device: none found");
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_create("cuda", 0, 0, &be), TW_OK,
                 "a device exists but the CUDA backend failed: %s", tw_last_error());
    return be;
}

static void *up(tw_backend *be, const void *h, size_t bytes) {
    void *p = NULL;
    cr_assert_eq(be->ops->alloc(be, bytes, &p), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->upload(be, p, h, bytes), TW_OK, "%s", tw_last_error());
    return p;
}

static void run_case(tw_backend *be, int n_seqs, const int *start, const int *n_new, int decode,
                     int H, int G, int d, int bt, int window, tw_dtype dt) {
    pcase c;
    pcase_make(&c, n_seqs, start, n_new, H, G, d, bt, window, dt, 2024);
    size_t es = dt == TW_BF16 ? 2 : 4, pool = pcase_pool_elems(&c) * es;
    size_t kvn = (size_t)c.rows * G * d * sizeof(float), qn = (size_t)c.rows * H * d * 4;
    void *kp = up(be, c.kp, pool), *vp = up(be, c.vp, pool);
    void *kn = up(be, c.k_new, kvn), *vn = up(be, c.v_new, kvn), *q = up(be, c.q, qn);
    void *out = up(be, c.out, qn); /* NaN */
    tw_kv_store_paged_args s = {.n_seqs = n_seqs,
                                .n_kv_heads = G,
                                .head_dim = d,
                                .block_tokens = bt,
                                .n_blocks = c.n_blocks,
                                .max_blocks = c.max_blocks,
                                .q_start = c.q_start,
                                .start_pos = c.start_pos,
                                .block_tables = c.tab,
                                .k = kn,
                                .v = vn,
                                .k_pool = kp,
                                .v_pool = vp,
                                .kv_dtype = dt};
    cr_assert_eq(be->ops->kv_store_paged(be, &s), TW_OK, "%s", tw_last_error());
    tw_attn_paged_args a = pcase_attn_args(&c, decode);
    a.q = q;
    a.k_pool = kp;
    a.v_pool = vp;
    a.out = out;
    tw_status st =
        decode ? be->ops->attn_decode_paged(be, &a) : be->ops->attn_prefill_paged(be, &a);
    cr_assert_eq(st, TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->sync(be), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->download(be, c.out, out, qn), TW_OK);
    cr_assert_eq(be->ops->download(be, c.kp, kp, pool), TW_OK);
    cr_assert_eq(be->ops->download(be, c.vp, vp, pool), TW_OK);
    cr_expect_eq(pcase_unused_written(&c), 0, "the store wrote outside the block tables");
    double ws, err = pcase_ref_check(&c, &ws);
    cr_expect_eq(ws, 0.0, "stored rows differ from the new K (%g)", ws);
    cr_expect(err < 1e-4, "cuda %s paged %s window %d bt %d: rel err %g",
              decode ? "decode" : "prefill", dt == TW_BF16 ? "bf16" : "fp32", window, bt, err);
    void *ps[] = {kp, vp, kn, vn, q, out};
    for (int i = 0; i < 6; i++) be->ops->free(be, ps[i]);
    pcase_free(&c);
}

Test(serve_engine_gpu, paged_prefill_and_decode_match_reference) {
    tw_backend *be = gpu_or_skip();
    int start[] = {0, 37, 130, 5}, n_new[] = {71, 19, 1, 66}, ones[] = {1, 1, 1, 1};
    int dstart[] = {0, 300, 511, 44};
    run_case(be, 4, start, n_new, 0, 6, 2, 20, 7, 0, TW_F32);
    run_case(be, 4, start, n_new, 0, 6, 2, 20, 5, 23, TW_BF16);
    run_case(be, 4, dstart, ones, 1, 6, 3, 20, 16, 0, TW_F32);
    run_case(be, 4, dstart, ones, 1, 8, 2, 128, 16, 100, TW_BF16);
    tw_backend_destroy(be);
}
