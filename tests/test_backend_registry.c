/* The backend registry and interface version 2 (kernels/tw_backend.h): the rows, a row that was
 * not built saying so by name, the checks made at creation (version, required slots), the
 * wrappers of the optional slots answering for a backend without them, supports() and the
 * device description of the CPU, and the ceilings: measured through the backend's slot into the
 * run's result with their fractions, and a backend without a way to measure them saying so. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/run/tw_run.h"
#include "tw_backend.h"
#include "tw_cuda_info.h"
#include "tw_machine.h"
#include "tw_util.h"

Test(registry, rows_name_every_backend_and_their_traits) {
    cr_assert_geq(tw_backend_count(), 2);
    const tw_backend_entry *cpu = tw_backend_find("cpu"), *cuda = tw_backend_find("cuda");
    cr_assert(cpu && cuda);
    cr_assert(cpu->built, "the CPU backend is always built");
    cr_assert_eq(cuda->built, tw_cuda_built(), "the row says what the build holds");
    cr_assert_null(tw_backend_find("tpu"));
    cr_assert_null(tw_backend_at(tw_backend_count()));
    cr_assert_str_eq(tw_backend_names(), "cpu or cuda");
    cr_assert(tw_backend_has_option(cuda, "gemm"));
    cr_assert_not(tw_backend_has_option(cuda, "gem"), "whole names only");
    cr_assert_not(tw_backend_has_option(cpu, "gemm"));
    cr_assert(cuda->traits.graphs && !cpu->traits.graphs);
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_create("tpu", 1, 0, &be), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "unknown backend 'tpu' (expected cpu or cuda)"), "%s",
              tw_last_error());
    cr_assert_null(be);
}

Test(registry, a_row_not_built_says_so_by_name) {
    const tw_backend_entry *cuda = tw_backend_find("cuda");
    if (cuda->built) cr_skip_test("the CUDA backend is built into this binary");
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_create("cuda", 0, 0, &be), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "the cuda backend was not built into this binary"), "%s",
              tw_last_error());
    cr_assert_null(be, "never a fallback to another backend");
}

static int no_supports(tw_backend *be, tw_op op, tw_dtype dt) {
    (void)be, (void)op, (void)dt;
    return 0;
}

Test(registry, the_ops_table_is_checked) {
    tw_backend *cpu = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &cpu), TW_OK, "%s", tw_last_error());
    tw_backend_ops ops = *cpu->ops;
    cr_assert_eq(tw_backend_check_ops(&ops), TW_OK, "%s", tw_last_error());
    ops.version = 1;
    cr_assert_eq(tw_backend_check_ops(&ops), TW_ERR_INTERNAL);
    cr_assert(strstr(tw_last_error(), "interface version 1; this build needs version 2"), "%s",
              tw_last_error());
    ops = *cpu->ops;
    ops.describe = NULL;
    cr_assert_eq(tw_backend_check_ops(&ops), TW_ERR_INTERNAL);
    cr_assert(strstr(tw_last_error(), "required slot describe is missing"), "%s", tw_last_error());
    ops = *cpu->ops;
    ops.graph_begin = (tw_status(*)(tw_backend *))ops.sync; /* one graph slot of four */
    cr_assert_eq(tw_backend_check_ops(&ops), TW_ERR_INTERNAL);
    tw_backend_destroy(cpu);
}

Test(registry, optional_slots_answer_through_their_wrappers) {
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK, "%s", tw_last_error());
    cr_assert_not(tw_backend_has_graphs(be));
    cr_assert_eq(tw_backend_graph_begin(be), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "the cpu backend has no graph capture"), "%s",
              tw_last_error());
    void *g = (void *)1;
    cr_assert_eq(tw_backend_graph_end(be, &g), TW_ERR_UNSUPPORTED);
    cr_assert_null(g);
    tw_backend_graph_destroy(be, NULL);
    double t = 1;
    cr_assert_eq(tw_backend_timer_start(be), TW_ERR_UNSUPPORTED);
    cr_assert_eq(tw_backend_timer_stop(be, &t), TW_ERR_UNSUPPORTED);
    cr_assert_eq(t, 0);
    char a[8], b[8];
    cr_assert_eq(tw_backend_copy_d2d(be, a, b, sizeof a), TW_ERR_UNSUPPORTED);
    cr_assert_null(tw_backend_stream(be));
    cr_assert_str_eq(tw_backend_get_option(be, "gemm"), "");
    cr_assert_eq(tw_backend_set_option(be, "gemm", "cublas"), TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "the cpu backend has no option gemm"), "%s", tw_last_error());
    /* supports(): the stored operands in both dtypes, activation-only ops in fp32 */
    cr_assert(tw_backend_supports(be, TW_OP_GEMM, TW_BF16));
    cr_assert(tw_backend_supports(be, TW_OP_ATTN_DECODE, TW_F32));
    cr_assert_not(tw_backend_supports(be, TW_OP_SWIGLU, TW_BF16));
    cr_assert_not(tw_backend_supports(be, TW_OP_GEMM, TW_I32));
    cr_assert_not(tw_backend_supports(be, TW_OP_COUNT, TW_F32));
    cr_assert_str_eq(tw_op_name(TW_OP_MLA_ATTN), "mla_attn");
    cr_assert_str_eq(tw_op_name(TW_OP_COUNT), "?");
    /* the paged ops: named, answered, and refused where the table has no slot for them */
    cr_assert_str_eq(tw_op_name(TW_OP_ATTN_PREFILL_PAGED), "attn_prefill_paged");
    cr_assert_str_eq(tw_op_name(TW_OP_ATTN_DECODE_PAGED), "attn_decode_paged");
    cr_assert_str_eq(tw_op_name(TW_OP_KV_STORE_PAGED), "kv_store_paged");
    cr_assert(tw_backend_supports(be, TW_OP_KV_STORE_PAGED, TW_BF16));
    cr_assert_not(tw_backend_supports(be, TW_OP_ATTN_DECODE_PAGED, TW_I32));
    {
        tw_backend_ops no_slot = *be->ops;
        no_slot.attn_decode_paged = NULL;
        tw_backend holey = *be;
        holey.ops = &no_slot;
        cr_assert_not(tw_backend_supports(&holey, TW_OP_ATTN_DECODE_PAGED, TW_F32),
                      "no slot: not supported, whatever supports() says");
        cr_assert(tw_backend_supports(&holey, TW_OP_ATTN_PREFILL_PAGED, TW_F32));
    }
    /* a table with no supports answer refuses everything (never "supported" by default) */
    tw_backend_ops ops = *be->ops;
    ops.supports = no_supports;
    tw_backend fake = *be;
    fake.ops = &ops;
    cr_assert_not(tw_backend_supports(&fake, TW_OP_GEMM, TW_F32));
    tw_device_desc d;
    cr_assert_eq(tw_backend_describe(be, &d), TW_OK, "%s", tw_last_error());
    cr_assert_eq(d.kind, TW_DEVICE_HOST);
    cr_assert_eq(d.count, 1);
    cr_assert(d.name[0], "the CPU model");
    cr_assert_gt(d.memory_bytes, 0);
    tw_backend_destroy(be);
}

Test(ceilings, a_backend_that_cannot_measure_them_says_so) {
    /* created without the host hook: the CPU backend's slot says it cannot measure */
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_cpu_create(1, &be), TW_OK, "%s", tw_last_error());
    tw_ceilings c;
    cr_assert_eq(tw_backend_ceilings(be, &c), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(c.read_method, "not measured"), "%s", c.read_method);
    /* a table without the slot */
    tw_backend_ops ops = *be->ops;
    ops.ceilings = NULL;
    tw_backend fake = *be;
    fake.ops = &ops;
    cr_assert_eq(tw_backend_ceilings(&fake, &c), TW_ERR_UNSUPPORTED);
    cr_assert(strstr(c.read_method, "not measured: the cpu backend has no ceilings slot"), "%s",
              c.read_method);
    cr_assert(strstr(c.peak_method, "no ceilings slot"), "%s", c.peak_method);
    cr_assert_eq(c.read_bw_bytes_per_s, 0);
    tw_backend_destroy(be);
}

Test(ceilings, the_cpu_slot_measures_through_the_host_hook) {
    tw_backend_params p = {.threads = 1, .host_ceilings = tw_machine_host_ceilings};
    tw_backend *be = NULL;
    cr_assert_eq(tw_backend_create_with("cpu", &p, &be), TW_OK, "%s", tw_last_error());
    tw_ceilings c;
    cr_assert_eq(tw_backend_ceilings(be, &c), TW_OK, "%s", tw_last_error());
    cr_assert_gt(c.read_bw_bytes_per_s, 1e8, "a host reads more than 0.1 GB/s");
    cr_assert_gt(c.peak_flops, 1e8);
    cr_assert_eq(c.peak_dtype, TW_F32);
    cr_assert_str_eq(c.read_method, "measured (tokwatt bench membw read)");
    tw_backend_destroy(be);
}

static char dir[256];

/* A tiny bf16 run on the CPU backend with no ceilings given (so measured), in a fresh folder
 * named after tag; the caller frees res and closes the run. */
static tw_run *run_tiny_measured(const char *tag, tw_result *res) {
    snprintf(dir, sizeof dir, "/tmp/tw-registry-%s-%d", tag, (int)getpid());
    tw_run_spec s;
    memset(&s, 0, sizeof s);
    s.model = "tiny", s.backend = "cpu", s.power = "none", s.sample_ms = 50, s.comm = "auto";
    s.comm_timeout_s = 60;
    s.batch[0] = 1, s.nbatch = 1, s.prompt[0] = 5, s.nprompt = 1, s.gen[0] = 3, s.ngen = 1;
    s.tp[0] = 1, s.ntp = 1, s.dtype[0] = TW_BF16, s.ndtype = 1;
    s.reps = 1, s.threads = 1, s.seed = 3, s.out_dir = dir; /* no ceilings given: measured */
    cr_assert_eq(tw_mkdirs(dir), TW_OK, "%s", tw_last_error());
    tw_run *r = NULL;
    cr_assert_eq(tw_run_open(&s, NULL, &r), TW_OK, "%s", tw_last_error());
    tw_run_outcome oc;
    cr_assert_eq(tw_run_execute(r, res, &oc), TW_OK, "%s", tw_last_error());
    return r;
}

Test(ceilings, a_run_result_carries_them_and_every_fraction) {
    tw_result res;
    tw_run *r = run_tiny_measured("test", &res);
    const tw_result_roofline *rf = &res.roofline;
    cr_assert(rf->membw_gbps > 0 && rf->peak_gflops > 0, "measured by the backend's slot");
    cr_assert_str_eq(rf->membw_source, "measured (tokwatt bench membw read)");
    /* measured again at the end of the run, the larger kept (then the source says so) */
    const char *pk = "measured (fp32 FMA loop)";
    cr_assert(!strcmp(rf->peak_source, pk) ||
                  !strcmp(rf->peak_source, "measured (fp32 FMA loop); at the end of the run"),
              "%s", rf->peak_source);
    cr_assert_str_eq(rf->peak_dtype, "fp32");
    cr_assert(rf->peak_bf16_gflops > 0, "%s", rf->peak_bf16_source);
    cr_assert(rf->has_datasheet && rf->datasheet_source[0], "the datasheet was looked up");
    const tw_metrics *m = &res.rows[0].metrics;
    cr_assert(isfinite(m->decode_bandwidth_fraction) && m->decode_bandwidth_fraction > 0);
    cr_assert(isfinite(m->prefill_mfu) && m->prefill_mfu > 0);
    /* every fraction is of the ceilings the result records (a bf16 row: the bf16 peak) */
    const double step = m->tpot_s.median, peak = rf->peak_bf16_gflops;
    cr_assert_lt(fabs(m->prefill_mfu - m->prefill_gflops / peak), 1e-12 * m->prefill_mfu);
    cr_assert_lt(fabs(m->decode_bandwidth_fraction - m->decode_bandwidth_gbps / rf->membw_gbps),
                 1e-12 * m->decode_bandwidth_fraction);
    cr_assert_lt(fabs(m->decode_mfu - m->decode_gflops / peak), 1e-12 * m->decode_mfu);
    const double bytes_s = m->decode_bytes_per_step / (rf->membw_gbps * 1e9),
                 flops_s = m->decode_flops_per_step / (peak * 1e9);
    cr_assert_lt(fabs(m->decode_roofline_fraction - fmax(bytes_s, flops_s) / step),
                 1e-9 * m->decode_roofline_fraction, "%g", m->decode_roofline_fraction);
    cr_assert(m->has_datasheet);
    /* the datasheet fractions exist exactly when the device has an entry (CI CPUs may not) */
    cr_assert_eq(isfinite(m->prefill_mfu_datasheet), rf->datasheet_peak_gflops > 0, "%s",
                 rf->datasheet_source);
    if (!(rf->datasheet_peak_gflops > 0))
        cr_assert(strstr(rf->datasheet_source, "no configs/devices.json entry matches") ||
                      strstr(rf->datasheet_source, "devices.json:"),
                  "%s", rf->datasheet_source);
    tw_result_free(&res);
    tw_run_close(r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* When measuring the ceilings again at the end of a run fails, the measured rows are kept with
 * the first ceilings, and the sources say why (TW_TEST_END_CEILINGS_FAIL injects the failure). */
Test(ceilings, a_failed_measurement_at_the_end_keeps_the_rows) {
    cr_assert_eq(setenv("TW_TEST_END_CEILINGS_FAIL", "1", 1), 0);
    tw_result res;
    tw_run *r = run_tiny_measured("endfail", &res);
    cr_assert_eq(res.nrows, 1, "the measured row is kept");
    const tw_result_roofline *rf = &res.roofline;
    cr_assert(rf->membw_gbps > 0 && rf->peak_gflops > 0, "the first ceilings are kept");
    const char *why = "not measured again at the end: measuring the read ceiling: failure "
                      "injected (TW_TEST_END_CEILINGS_FAIL)";
    cr_assert(strstr(rf->membw_method, why), "%s", rf->membw_method);
    cr_assert(strstr(rf->peak_source, "not measured again at the end: measuring the compute "
                                      "peaks: failure injected"),
              "%s", rf->peak_source);
    const tw_metrics *m = &res.rows[0].metrics;
    cr_assert(isfinite(m->decode_bandwidth_fraction) && m->decode_bandwidth_fraction > 0);
    cr_assert_lt(fabs(m->decode_bandwidth_fraction - m->decode_bandwidth_gbps / rf->membw_gbps),
                 1e-12 * m->decode_bandwidth_fraction);
    cr_assert(isfinite(m->prefill_mfu) && m->prefill_mfu > 0);
    tw_result_free(&res);
    tw_run_close(r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Two CPU backends in one process keep their own SIMD level (the option lives in each backend's
 * context), and each computes a GEMM within tolerance of float64. */
static double gemm_err_on(tw_backend *be, int m, int n, int k) {
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k),
          *y = malloc(sizeof(float) * m * n);
    cr_assert(x && w && y);
    for (int i = 0; i < m * k; i++) x[i] = (float)sin(0.37 * i + 0.1);
    for (int i = 0; i < n * k; i++) w[i] = (float)cos(0.53 * i + 0.2);
    for (int i = 0; i < m * n; i++) y[i] = NAN;
    tw_gemm_args a = {.m = m, .n = n, .k = k, .x = x, .w = w, .w_dtype = TW_F32, .y = y};
    cr_assert_eq(be->ops->gemm(be, &a), TW_OK, "%s", tw_last_error());
    cr_assert_eq(be->ops->sync(be), TW_OK);
    double num = 0, den = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)x[i * k + p] * w[j * k + p];
            double d = y[i * n + j] - s;
            num += isfinite(y[i * n + j]) ? d * d : INFINITY;
            den += s * s;
        }
    free(x), free(w), free(y);
    return sqrt(num / den);
}

Test(registry, cpu_simd_option_is_per_backend) {
    tw_backend *a = NULL, *b = NULL;
    cr_assert_eq(tw_backend_create("cpu", 1, 0, &a), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_backend_create("cpu", 1, 0, &b), TW_OK, "%s", tw_last_error());
    cr_assert(tw_backend_has_option(tw_backend_find("cpu"), "simd"));
    cr_assert_eq(tw_backend_set_option(a, "simd", "portable"), TW_OK, "%s", tw_last_error());
    cr_expect_str_eq(tw_backend_get_option(a, "simd"), "portable");
    cr_expect_str_neq(tw_backend_get_option(b, "simd"), "portable");
    cr_expect_lt(gemm_err_on(a, 37, 29, 67), 1e-5);
    cr_expect_lt(gemm_err_on(b, 37, 29, 67), 1e-5);
    /* the path each ran says which level it used */
    cr_expect(strstr(tw_backend_get_option(a, "gemm_path"), "portable"), "a ran %s",
              tw_backend_get_option(a, "gemm_path"));
    cr_expect_str_eq(tw_backend_get_option(a, "gemm_activations"), "fp32");
    cr_expect_eq(tw_backend_set_option(a, "simd", "sse9"), TW_ERR_INVALID);
    tw_backend_destroy(a);
    tw_backend_destroy(b);
}
