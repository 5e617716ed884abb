/* Static checks of the CUDA kernels, without a GPU: the ptxas -v resource reports and the PTX
 * that cmake/cuda.cmake writes to $TW_BUILD_DIR/cuda-reports at build time.
 *  - every kernel: 0 bytes spill stores and loads, registers <= 65536 / launch-bound threads
 *    (and <= 255); every kernel must be listed in the bounds table below;
 *  - the GEMM and flash-attention PTX contain bf16 mma.sync m16n8k16 (no silent scalar
 *    fallback), the sm_90a GEMM PTX contains wgmma.mma_async;
 *  - the TMA GEMM's compute_90a PTX contains the bulk tensor copies, mbarrier waits, setmaxnreg
 *    and the m64n256k16 wgmma, and its compute_80 PTX none of them.
 * Skipped (reported) when CUDA was not built, since then there are no reports. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cuda_index.h"

/* kernel-name substring -> threads per block declared in its __launch_bounds__ */
static const struct {
    const char *name;
    int threads;
} kernel_bounds[] = {
    {"tw_k_gemm_mma", 256},
    {"tw_k_gemm_wgmma_tma", 384},
    {"tw_k_gemm_wgmma", 128},
    {"tw_k_gemm_f32", 256},
    {"tw_k_gemv_bf16", 256},
    {"tw_k_attn_prefill", 128},
    {"tw_k_attn_decode", 128},
    {"tw_k_cast_x_bf16", 256},
    {"tw_k_rmsnorm", 256},
    {"tw_k_rope", 256},
    {"tw_k_swiglu", 256},
    {"tw_k_add", 256},
    {"tw_k_embed", 256},
    {"tw_k_argmax", 256},
    {"tw_k_kv_store", 256},
    {"tw_k_bias_add", 256},
    /* mixture of experts and latent attention (moe.cu, mla.cu) */
    {"tw_k_moe_route", 128},
    {"tw_k_moe_count", 1024},
    {"tw_k_moe_gather", 256},
    {"tw_k_moe_gemm", 256},
    {"tw_k_moe_swiglu", 256},
    {"tw_k_moe_combine", 256},
    {"tw_k_mla_store", 256},
    {"tw_k_mla_attn", 128},
    {"tw_k_head_rmsnorm", 256},
};

static const char *report_dir(char *buf, size_t n) {
    const char *b = getenv("TW_BUILD_DIR");
    if (!b) return NULL;
    snprintf(buf, n, "%s/cuda-reports", b);
    DIR *d = opendir(buf);
    if (!d) return NULL;
    closedir(d);
    return buf;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static int bound_for(const char *kernel) {
    for (size_t i = 0; i < sizeof kernel_bounds / sizeof kernel_bounds[0]; i++)
        if (strstr(kernel, kernel_bounds[i].name)) return kernel_bounds[i].threads;
    return 0;
}

/* Checks one report; returns the number of kernels found. */
static int check_report(const char *path) {
    char *s = slurp(path);
    cr_assert(s, "cannot read %s", path);
    int kernels = 0;
    char *p = s;
    while ((p = strstr(p, "Compiling entry function '"))) {
        p += strlen("Compiling entry function '");
        char name[512];
        size_t len = strcspn(p, "'");
        cr_assert(len < sizeof name, "kernel name too long in %s", path);
        memcpy(name, p, len);
        name[len] = 0;
        /* this kernel's section ends at the next entry */
        char *next = strstr(p, "Compiling entry function '");
        char *spill = strstr(p, "bytes spill stores");
        char *regs = strstr(p, "Used ");
        cr_assert(spill && (!next || spill < next), "%s: no spill line for %s", path, name);
        cr_assert(regs && (!next || regs < next), "%s: no register line for %s", path, name);
        /* "N bytes stack frame, S bytes spill stores, L bytes spill loads" */
        char *line = spill;
        while (line > p && line[-1] != '\n') line--;
        unsigned long frame = 0, st = 0, ld = 0;
        cr_assert_eq(sscanf(line,
                            " %lu bytes stack frame, %lu bytes spill stores, %lu bytes spill "
                            "loads",
                            &frame, &st, &ld),
                     3, "%s: cannot parse spill line for %s", path, name);
        cr_expect_eq(st, 0, "%s: kernel %s spills %lu bytes (stores)", path, name, st);
        cr_expect_eq(ld, 0, "%s: kernel %s spills %lu bytes (loads)", path, name, ld);
        int r = 0;
        cr_assert_eq(sscanf(regs, "Used %d registers", &r), 1, "%s: register count of %s", path,
                     name);
        int threads = bound_for(name);
        cr_expect(threads > 0, "%s: kernel %s is not in the launch-bounds table of this test", path,
                  name);
        if (threads > 0) {
            int max = 65536 / threads;
            if (max > 255) max = 255;
            cr_expect(r <= max, "%s: kernel %s uses %d registers > %d (launch bound %d threads)",
                      path, name, r, max, threads);
        }
        kernels++;
    }
    free(s);
    return kernels;
}

Test(cuda_static, ptxas_no_spills_registers_within_bounds) {
    char dir[4096];
    if (!report_dir(dir, sizeof dir))
        cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)");
    const char *files[] = {"gemm_mma", "gemm_wgmma",   "gemm_wgmma_tma", "gemm_f32",
                           "gemv",     "attn_prefill", "attn_decode",    "ops",
                           "moe",      "mla"};
    const char *archs[] = {"sm_80", "sm_90a"};
    int total = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++)
        for (int a = 0; a < 2; a++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s.%s.ptxas.txt", dir, files[f], archs[a]);
            int n = check_report(path);
            cr_expect(n > 0, "%s lists no kernels", path);
            total += n;
        }
    cr_assert(total >= 62, "only %d kernel reports found", total);
}

static int ptx_has(const char *dir, const char *file, const char *needle) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *s = slurp(path);
    cr_assert(s, "cannot read %s", path);
    int found = strstr(s, needle) != NULL;
    free(s);
    return found;
}

Test(cuda_static, ptx_uses_tensor_cores) {
    char dir[4096];
    if (!report_dir(dir, sizeof dir))
        cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)");
    const char *mma = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
    const char *gemm_attn[] = {"gemm_mma.compute_80.ptx", "gemm_mma.compute_90a.ptx",
                               "attn_prefill.compute_80.ptx", "attn_prefill.compute_90a.ptx"};
    for (int i = 0; i < 4; i++) {
        cr_expect(ptx_has(dir, gemm_attn[i], mma), "%s lacks %s", gemm_attn[i], mma);
        cr_expect(ptx_has(dir, gemm_attn[i], "ldmatrix.sync.aligned"), "%s lacks ldmatrix",
                  gemm_attn[i]);
        cr_expect(ptx_has(dir, gemm_attn[i], "cp.async.cg.shared.global"), "%s lacks cp.async",
                  gemm_attn[i]);
    }
    cr_expect(ptx_has(dir, "attn_prefill.compute_80.ptx", "ldmatrix.sync.aligned.m8n8.x4.trans"),
              "flash attention P.V lacks ldmatrix.trans");
    cr_expect(ptx_has(dir, "gemm_wgmma.compute_90a.ptx",
                      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"),
              "sm_90a GEMM PTX lacks wgmma.mma_async");
    cr_expect(ptx_has(dir, "gemm_wgmma.compute_90a.ptx", "fence.proxy.async.shared::cta"),
              "sm_90a GEMM PTX lacks the async-proxy fence");
    /* the sm_80 build must not contain Hopper-only instructions */
    cr_expect(!ptx_has(dir, "gemm_wgmma.compute_80.ptx", "wgmma.mma_async"),
              "compute_80 PTX contains wgmma");
}

/* ptxas reports when it had to make the wgmma pipeline wait because other instructions touch
 * in-flight accumulators ("warpgroup.wait is injected", "wgmma.mma_async instructions are
 * serialized ..."): the compiler moved accumulator reads/copies into the pipeline. Neither
 * Hopper GEMM may have that. */
Test(cuda_static, wgmma_pipelines_not_serialized_by_ptxas) {
    char dir[4096];
    if (!report_dir(dir, sizeof dir))
        cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)");
    const char *files[] = {"gemm_wgmma.sm_90a.ptxas.txt", "gemm_wgmma_tma.sm_90a.ptxas.txt"};
    for (int i = 0; i < 2; i++) {
        cr_expect(!ptx_has(dir, files[i], "wgmma.mma_async instructions are serialized"),
                  "%s: ptxas serialized the wgmma pipeline", files[i]);
        cr_expect(!ptx_has(dir, files[i], "warpgroup.wait is injected"),
                  "%s: ptxas injected a warpgroup.wait", files[i]);
    }
}

/* gemm_wgmma_tma.cu: the sm_90a PTX has the TMA + mbarrier pipeline, the producer/consumer
 * register split and the m64n256k16 bf16 wgmma; the sm_80 PTX has none of them (trap body). */
Test(cuda_static, wgmma_tma_ptx_has_the_hopper_pipeline) {
    char dir[4096];
    if (!report_dir(dir, sizeof dir))
        cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)");
    const char *hopper[] = {
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16",
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes",
        "mbarrier.try_wait.parity.shared::cta.b64",
        "mbarrier.arrive.expect_tx.shared::cta.b64",
        "mbarrier.init.shared::cta.b64",
        "setmaxnreg.dec.sync.aligned.u32",
        "setmaxnreg.inc.sync.aligned.u32",
        "wgmma.wait_group.sync.aligned 1",
        "fence.mbarrier_init",
    };
    for (size_t i = 0; i < sizeof hopper / sizeof hopper[0]; i++) {
        cr_expect(ptx_has(dir, "gemm_wgmma_tma.compute_90a.ptx", hopper[i]),
                  "gemm_wgmma_tma.compute_90a.ptx lacks %s", hopper[i]);
        cr_expect(!ptx_has(dir, "gemm_wgmma_tma.compute_80.ptx", hopper[i]),
                  "gemm_wgmma_tma.compute_80.ptx contains %s", hopper[i]);
    }
    /* ptxas gives a kernel with setmaxnreg its launch-bound register count; the producer's
     * setmaxnreg.dec must free what the consumers' setmaxnreg.inc asks for, or they hang */
    char path[4200];
    snprintf(path, sizeof path, "%s/gemm_wgmma_tma.sm_90a.ptxas.txt", dir);
    char *rep = slurp(path);
    cr_assert(rep, "cannot read %s", path);
    char *e = strstr(rep, "tw_k_gemm_wgmma_tma");
    char *u = e ? strstr(e, "Used ") : NULL;
    int regs = 0;
    cr_assert(u && sscanf(u, "Used %d registers", &regs) == 1, "%s: no register count", path);
    free(rep);
    cr_expect(tw_wgt_regpool_ok(regs),
              "launch registers %d do not cover setmaxnreg.dec %d / inc %d (2 consumer warpgroups)",
              regs, TW_WGT_PRODUCER_REGS, TW_WGT_CONSUMER_REGS);
    /* the tensor maps are kernel parameters (__grid_constant__), read through their address */
    cr_expect(ptx_has(dir, "gemm_wgmma_tma.compute_90a.ptx", "cvta.param.u64"),
              "tensor map parameter not addressed in param space");
}

/* The expert and latent-attention kernels (issue 16): the routing and the latent attention
 * reduce across warps with shuffles, the expert counts use shared-memory atomics, the grouped
 * GEMM is fp32 FMA in shared-memory tiles for both weight dtypes (two instantiations), and no
 * kernel of either file reaches for local-memory arrays (their per-lane state stays in
 * registers: no ld.local/st.local in the PTX). */
Test(cuda_static, moe_and_mla_kernels) {
    char dir[4096];
    if (!report_dir(dir, sizeof dir))
        cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)");
    const char *archs[] = {"compute_80", "compute_90a"};
    for (int a = 0; a < 2; a++) {
        char moe[64], mla[64];
        snprintf(moe, sizeof moe, "moe.%s.ptx", archs[a]);
        snprintf(mla, sizeof mla, "mla.%s.ptx", archs[a]);
        cr_expect(ptx_has(dir, moe, "shfl.sync.bfly.b32"), "%s: routing lacks warp shuffles", moe);
        cr_expect(ptx_has(dir, moe, "atom.shared.add"), "%s: counting lacks shared atomics", moe);
        cr_expect(ptx_has(dir, moe, "fma.rn.f32"), "%s: grouped GEMM lacks fp32 FMA", moe);
        cr_expect(ptx_has(dir, moe, "tw_k_moe_gemmILb1E") &&
                      ptx_has(dir, moe, "tw_k_moe_gemmILb0E"),
                  "%s: the grouped GEMM for bf16 and fp32 weights", moe);
        cr_expect(ptx_has(dir, mla, "shfl.sync.bfly.b32"), "%s: latent scores lack shuffles", mla);
        cr_expect(ptx_has(dir, mla, "ex2.approx"), "%s: no exponentials in the softmax", mla);
        cr_expect(!ptx_has(dir, moe, "ld.local") && !ptx_has(dir, mla, "ld.local"),
                  "%s/%s: local-memory loads", moe, mla);
    }
}
