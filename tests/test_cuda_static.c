/* Static checks of the CUDA kernels, without a GPU, on what the build embeds: the ptxas -v
 * reports, PTX and cubins that the build itself leaves in $TW_BUILD_DIR/cuda-reports (nvcc -keep
 * and cmake/tw_nvcc_report.sh), and the fatbin section of the tokwatt executable.
 *  - every kernel, for every SASS target of the build: 0 bytes spill stores and loads, registers
 *    <= 65536 / launch-bound threads (and <= 255); every kernel must be in the bounds table;
 *  - the fatbin: every kernel file's container holds an ELF (SASS) for each target of
 *    TW_CUDA_SASS_ARCHS and compute_80 PTX, nothing else (read by this test's own parser of
 *    the ELF section and the fatbin format; counts cross-checked with cuobjdump --list-elf /
 *    --list-ptx where cuobjdump is found: $TW_CUOBJDUMP, PATH, /usr/local/cuda/bin);
 *  - the GEMM, GEMV and attention kernels have no stack frame (no local-memory arrays);
 *  - the GEMM, GEMV and flash-attention PTX contain bf16 mma.sync m16n8k16 (no silent scalar
 *    fallback) for every target; the sm_90a GEMM PTX contains wgmma.mma_async, and no other
 *    target's PTX (Ampere, Blackwell) contains any sm_90a-only instruction;
 *  - the TMA GEMM's compute_90a PTX has the bulk tensor copies, mbarrier waits, setmaxnreg and
 *    the m64n256k16 wgmma, and its register count balances the setmaxnreg pool.
 * Skipped (reported) when CUDA was not built, since then there is nothing to read. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_cuda_index.h"
#include "tw_cuda_info.h"

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
    {"tw_k_image_probe", 32},
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
    /* paged KV cache (attn_paged.cu) */
    {"tw_k_attn_paged", 128},
};
#define N_BOUNDS (sizeof kernel_bounds / sizeof kernel_bounds[0])

#ifndef TW_CUDA_SASS_ARCHS
#define TW_CUDA_SASS_ARCHS ""
#endif

/* the build's SASS targets ("80,90a,100,120") as "sm_80", ... and their numbers */
static int sass_targets(char names[][16], int nums[], int max) {
    int n = 0;
    for (const char *p = TW_CUDA_SASS_ARCHS; *p && n < max;) {
        size_t len = strcspn(p, ",");
        snprintf(names[n], 16, "sm_%.*s", (int)len, p);
        nums[n++] = atoi(p);
        p += len + (p[len] == ',');
    }
    return n;
}

static const char *report_dir(char *buf, size_t n) {
    const char *b = getenv("TW_BUILD_DIR");
    if (!b) return NULL;
    snprintf(buf, n, "%s/cuda-reports", b);
    DIR *d = opendir(buf);
    if (!d) return NULL;
    closedir(d);
    return buf;
}

#define NEED_REPORTS(dir)                                                                          \
    char dir[4096];                                                                                \
    if (!report_dir(dir, sizeof dir) || !*TW_CUDA_SASS_ARCHS)                                      \
    cr_skip_test("no CUDA reports (CUDA backend not built, or TW_BUILD_DIR unset)")

static char *slurp_n(const char *path, size_t *len) {
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
    if (len) *len = (size_t)n;
    fclose(f);
    return s;
}

static char *slurp(const char *path) {
    return slurp_n(path, NULL);
}

static int bound_for(const char *kernel) {
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (strstr(kernel, kernel_bounds[i].name)) return kernel_bounds[i].threads;
    return 0;
}

/* ---- ptxas -v reports: one entry per (kernel, target) ------------------------------------- */
typedef struct {
    char kernel[256], arch[16];
    unsigned long frame, spill_st, spill_ld;
    int regs;
} ptxas_entry;

/* Parses "Compiling entry function 'K' for 'sm_XX'" sections of a report; returns the count. */
static int parse_report(const char *path, ptxas_entry *out, int max) {
    char *s = slurp(path);
    cr_assert(s, "cannot read %s", path);
    int n = 0;
    const char *key = "Compiling entry function '";
    for (char *p = strstr(s, key); p; p = strstr(p, key)) {
        p += strlen(key);
        cr_assert(n < max, "%s: more than %d entries", path, max);
        ptxas_entry *e = &out[n];
        memset(e, 0, sizeof *e);
        size_t len = strcspn(p, "'");
        cr_assert(len < sizeof e->kernel, "kernel name too long in %s", path);
        memcpy(e->kernel, p, len);
        cr_assert_eq(sscanf(p + len, "' for '%15[^']'", e->arch), 1, "%s: no target for %s", path,
                     e->kernel);
        char *next = strstr(p, key);
        char *spill = strstr(p, "bytes spill stores");
        char *regs = strstr(p, "Used ");
        cr_assert(spill && (!next || spill < next), "%s: no spill line for %s", path, e->kernel);
        cr_assert(regs && (!next || regs < next), "%s: no register line for %s", path, e->kernel);
        char *line = spill;
        while (line > p && line[-1] != '\n') line--;
        cr_assert_eq(sscanf(line,
                            " %lu bytes stack frame, %lu bytes spill stores, %lu bytes spill "
                            "loads",
                            &e->frame, &e->spill_st, &e->spill_ld),
                     3, "%s: cannot parse the spill line of %s", path, e->kernel);
        cr_assert_eq(sscanf(regs, "Used %d registers", &e->regs), 1, "%s: register count of %s",
                     path, e->kernel);
        n++;
    }
    free(s);
    return n;
}

/* kernels whose speed depends on arrays kept in registers: no stack frame (local memory) */
static const char *hot[] = {"tw_k_gemm_mma", "tw_k_gemm_wgmma", "tw_k_gemv_bf16",
                            "tw_k_attn_prefill", "tw_k_attn_decode"};

static const char *kernel_files[] = {
    "gemm_mma",    "gemm_wgmma", "gemm_wgmma_tma", "gemm_f32", "gemv", "attn_prefill",
    "attn_decode", "ops",        "device_query",   "moe",      "mla",  "attn_paged"};
#define N_FILES (sizeof kernel_files / sizeof kernel_files[0])

Test(cuda_static, ptxas_no_spills_registers_within_bounds_every_target) {
    NEED_REPORTS(dir);
    char arch[8][16];
    int num[8], na = sass_targets(arch, num, 8);
    cr_assert(na >= 1, "no SASS targets in TW_CUDA_SASS_ARCHS '%s'", TW_CUDA_SASS_ARCHS);
    static ptxas_entry e[512];
    int seen[N_BOUNDS][8];
    memset(seen, 0, sizeof seen);
    int total = 0;
    for (size_t f = 0; f < N_FILES; f++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.ptxas.txt", dir, kernel_files[f]);
        int n = parse_report(path, e, 512);
        cr_expect(n > 0, "%s lists no kernels", path);
        for (int i = 0; i < n; i++) {
            cr_expect_eq(e[i].spill_st, 0, "%s: %s (%s) spills %lu bytes (stores)", path,
                         e[i].kernel, e[i].arch, e[i].spill_st);
            cr_expect_eq(e[i].spill_ld, 0, "%s: %s (%s) spills %lu bytes (loads)", path,
                         e[i].kernel, e[i].arch, e[i].spill_ld);
            int a = -1;
            for (int j = 0; j < na; j++)
                if (!strcmp(e[i].arch, arch[j])) a = j;
            cr_expect(a >= 0, "%s: %s compiled for %s, not a target of this build (%s)", path,
                      e[i].kernel, e[i].arch, TW_CUDA_SASS_ARCHS);
            /* the bandwidth- and matrix-bound kernels keep every array in registers */
            for (size_t h = 0; h < sizeof hot / sizeof *hot; h++)
                if (strstr(e[i].kernel, hot[h]))
                    cr_expect_eq(e[i].frame, 0, "%s: %s (%s) has a %lu-byte stack frame", path,
                                 e[i].kernel, e[i].arch, e[i].frame);
            int threads = bound_for(e[i].kernel);
            cr_expect(threads > 0, "%s: kernel %s is not in the launch-bounds table of this test",
                      path, e[i].kernel);
            if (threads > 0) {
                int max = 65536 / threads;
                if (max > 255) max = 255;
                cr_expect(e[i].regs <= max,
                          "%s: kernel %s (%s) uses %d registers > %d (launch bound %d threads)",
                          path, e[i].kernel, e[i].arch, e[i].regs, max, threads);
            }
            for (size_t b = 0; b < N_BOUNDS && a >= 0; b++)
                if (strstr(e[i].kernel, kernel_bounds[b].name)) seen[b][a]++;
            total++;
        }
    }
    /* every kernel of the table exists for every target (a file compiled for fewer targets than
     * the build's would show here) */
    for (size_t b = 0; b < N_BOUNDS; b++)
        for (int a = 0; a < na; a++)
            cr_expect(seen[b][a] > 0, "kernel %s has no %s report", kernel_bounds[b].name, arch[a]);
    cr_assert(total >= (int)N_BOUNDS * na, "only %d kernel reports found", total);
}

/* ---- the fatbin in the executable ------------------------------------------------------------
 * ELF64: the section ".nv_fatbin" holds one container per CUDA translation unit: a 16-byte header
 * (magic 0xBA55ED50, u16 version, u16 header size, u64 size of the entries that follow), then
 * entries, each a header (u16 kind: 1 PTX, 2 ELF; u16; u32 header size; u64 payload size; ...;
 * u32 architecture at byte 28, e.g. 90) followed by its payload. Containers may be padded. */
#define FATBIN_MAGIC 0xBA55ED50u

typedef struct {
    int n_elf[256], n_ptx[256]; /* per architecture number (80, 90, 100, 120) */
    int bad_kind;
} fatbin_counts;

static uint64_t rd(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Returns the number of containers; per-container counts in cont[]. */
static int parse_fatbin(const unsigned char *d, size_t n, fatbin_counts *cont, int max) {
    cr_assert(n > sizeof(Elf64_Ehdr) && !memcmp(d, ELFMAG, SELFMAG) && d[EI_CLASS] == ELFCLASS64,
              "not an ELF64 file");
    Elf64_Ehdr eh;
    memcpy(&eh, d, sizeof eh);
    cr_assert(eh.e_shoff + (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) <= n, "section table");
    Elf64_Shdr str;
    memcpy(&str, d + eh.e_shoff + (size_t)eh.e_shstrndx * sizeof(Elf64_Shdr), sizeof str);
    const unsigned char *sec = NULL;
    size_t sec_n = 0;
    for (int i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, d + eh.e_shoff + (size_t)i * sizeof(Elf64_Shdr), sizeof sh);
        if (str.sh_offset + sh.sh_name < n &&
            !strcmp((const char *)d + str.sh_offset + sh.sh_name, ".nv_fatbin")) {
            cr_assert(sh.sh_offset + sh.sh_size <= n, ".nv_fatbin out of the file");
            sec = d + sh.sh_offset;
            sec_n = sh.sh_size;
        }
    }
    cr_assert(sec, "the executable has no .nv_fatbin section");
    int nc = 0;
    size_t p = 0;
    while (p + 16 <= sec_n) {
        if (rd(sec + p, 4) != FATBIN_MAGIC) { /* padding between containers */
            p += 8;
            continue;
        }
        size_t hsz = rd(sec + p + 6, 2), fsz = rd(sec + p + 8, 8);
        cr_assert(p + hsz + fsz <= sec_n, "fatbin container %d overruns the section", nc);
        cr_assert(nc < max, "more than %d fatbin containers", max);
        fatbin_counts *c = &cont[nc++];
        memset(c, 0, sizeof *c);
        for (size_t q = p + hsz; q < p + hsz + fsz;) {
            cr_assert(q + 32 <= p + hsz + fsz, "fatbin entry header out of its container");
            unsigned kind = (unsigned)rd(sec + q, 2), arch = (unsigned)rd(sec + q + 28, 4);
            size_t ehsz = rd(sec + q + 4, 4), psz = rd(sec + q + 8, 8);
            cr_assert(ehsz >= 32 && q + ehsz + psz <= p + hsz + fsz, "fatbin entry size");
            if (arch < 256 && kind == 2)
                c->n_elf[arch]++;
            else if (arch < 256 && kind == 1)
                c->n_ptx[arch]++;
            else
                c->bad_kind++;
            q += ehsz + psz;
        }
        p += hsz + fsz;
    }
    return nc;
}

/* runs `cuobjdump OPT exe` and counts lines ending in ".sm_<arch>.<ext>" per architecture
 * number; returns 0 when no cuobjdump is found */
static int cuobjdump_counts(const char *exe, const char *opt, const char *ext, int counts[256],
                            char *tool, size_t tn) {
    const char *env = getenv("TW_CUOBJDUMP"), *path = getenv("PATH");
    char cmd[8400];
    FILE *p;
    tool[0] = 0;
    if (env && *env) {
        snprintf(tool, tn, "%s", env);
    } else { /* PATH, then the toolkit's folder (no shell: a child exiting non-zero upsets
              * Criterion's runner) */
        char dirs[8192];
        snprintf(dirs, sizeof dirs, "%s:/usr/local/cuda/bin", path ? path : "");
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !tool[0];
             d = strtok_r(NULL, ":", &save)) {
            snprintf(tool, tn, "%s/cuobjdump", d);
            if (access(tool, X_OK) != 0) tool[0] = 0;
        }
    }
    if (!tool[0]) return 0;
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' 2>&1", tool, opt, exe);
    p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    char line[1024];
    memset(counts, 0, 256 * sizeof *counts);
    while (fgets(line, sizeof line, p)) {
        char *s = strstr(line, ".sm_");
        unsigned a = 0;
        char suffix[16] = "";
        if (s && sscanf(s, ".sm_%u%15s", &a, suffix) == 2 && a < 256 && strstr(suffix, ext))
            counts[a]++;
    }
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return 1;
}

Test(cuda_static, fatbin_holds_every_sass_target_and_compute_80_ptx) {
    NEED_REPORTS(dir);
    const char *exe = getenv("TW_TOKWATT");
    cr_assert(exe, "TW_TOKWATT unset");
    size_t n = 0;
    unsigned char *d = (unsigned char *)slurp_n(exe, &n);
    cr_assert(d, "cannot read %s", exe);
    static fatbin_counts cont[64];
    int nc = parse_fatbin(d, n, cont, 64);
    free(d);
    char arch[8][16];
    int num[8], na = sass_targets(arch, num, 8);
    /* one container per file of kernels/cuda */
    char src[4200];
    snprintf(src, sizeof src, "%s/kernels/cuda", getenv("TW_SOURCE_DIR"));
    DIR *sd = opendir(src);
    cr_assert(sd, "cannot list %s", src);
    int n_cu = 0;
    for (struct dirent *de; (de = readdir(sd));) {
        size_t l = strlen(de->d_name);
        n_cu += l > 3 && !strcmp(de->d_name + l - 3, ".cu");
    }
    closedir(sd);
    cr_expect_eq(nc, n_cu, "%d fatbin containers in %s for %d files in kernels/cuda", nc, exe,
                 n_cu);
    int tot_elf[256] = {0}, tot_ptx[256] = {0};
    for (int c = 0; c < nc; c++) {
        cr_expect_eq(cont[c].bad_kind, 0, "container %d: entries of unknown kind", c);
        for (int a = 0; a < 256; a++) {
            int want_elf = 0;
            for (int j = 0; j < na; j++) want_elf |= num[j] == a;
            cr_expect_eq(cont[c].n_elf[a], want_elf, "container %d: %d ELF for sm_%d (want %d)", c,
                         cont[c].n_elf[a], a, want_elf);
            cr_expect_eq(cont[c].n_ptx[a], a == 80,
                         "container %d: %d PTX for compute_%d (want compute_80 PTX only)", c,
                         cont[c].n_ptx[a], a);
            tot_elf[a] += cont[c].n_elf[a];
            tot_ptx[a] += cont[c].n_ptx[a];
        }
    }
    /* the same counts as NVIDIA's own listing, where cuobjdump is there */
    int ce[256], cp[256];
    char tool[4096];
    if (!cuobjdump_counts(exe, "--list-elf", "cubin", ce, tool, sizeof tool)) {
        cr_log_info("cuobjdump not found (TW_CUOBJDUMP, PATH, /usr/local/cuda/bin): the fatbin "
                    "was read by this test's own parser only");
        return;
    }
    cr_assert(cuobjdump_counts(exe, "--list-ptx", "ptx", cp, tool, sizeof tool));
    for (int a = 0; a < 256; a++) {
        cr_expect_eq(ce[a], tot_elf[a], "sm_%d: cuobjdump lists %d ELF, the parser %d", a, ce[a],
                     tot_elf[a]);
        cr_expect_eq(cp[a], tot_ptx[a], "compute_%d: cuobjdump lists %d PTX, the parser %d", a,
                     cp[a], tot_ptx[a]);
    }
}

/* ---- PTX contents --------------------------------------------------------------------------- */
static int ptx_has(const char *dir, const char *file, const char *needle) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *s = slurp(path);
    cr_assert(s, "cannot read %s", path);
    int found = strstr(s, needle) != NULL;
    free(s);
    return found;
}

/* the instructions only sm_90a has (wgmma, setmaxnreg) */
static const char *sm90a_only[] = {"wgmma.mma_async", "wgmma.fence", "wgmma.commit_group",
                                   "setmaxnreg."};

Test(cuda_static, ptx_uses_tensor_cores_on_every_target) {
    NEED_REPORTS(dir);
    char arch[8][16];
    int num[8], na = sass_targets(arch, num, 8);
    const char *mma = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
    for (int a = 0; a < na; a++) {
        char v[24];
        snprintf(v, sizeof v, "compute_%s", arch[a] + 3);
        const char *files[] = {"gemm_mma", "attn_prefill", "gemv"};
        for (int f = 0; f < 3; f++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%s.ptx", files[f], v);
            cr_expect(ptx_has(dir, name, mma), "%s lacks %s", name, mma);
            if (f < 2) {
                cr_expect(ptx_has(dir, name, "ldmatrix.sync.aligned"), "%s lacks ldmatrix", name);
                cr_expect(ptx_has(dir, name, "cp.async.cg.shared.global"), "%s lacks cp.async",
                          name);
            }
        }
        /* sm_90a-only instructions exist in compute_90a PTX alone: the guard (TW_SM90A in
         * tw_mma.cuh) compiles the Hopper kernels' bodies out of Ampere and Blackwell targets */
        if (strcmp(arch[a], "sm_90a") != 0)
            for (size_t f = 0; f < N_FILES; f++)
                for (size_t i = 0; i < sizeof sm90a_only / sizeof *sm90a_only; i++) {
                    char name[64];
                    snprintf(name, sizeof name, "%s.%s.ptx", kernel_files[f], v);
                    cr_expect(!ptx_has(dir, name, sm90a_only[i]), "%s contains %s", name,
                              sm90a_only[i]);
                }
    }
    cr_expect(ptx_has(dir, "attn_prefill.compute_80.ptx", "ldmatrix.sync.aligned.m8n8.x4.trans"),
              "flash attention P.V lacks ldmatrix.trans");
    cr_expect(ptx_has(dir, "gemm_wgmma.compute_90a.ptx",
                      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"),
              "sm_90a GEMM PTX lacks wgmma.mma_async");
    cr_expect(ptx_has(dir, "gemm_wgmma.compute_90a.ptx", "fence.proxy.async.shared::cta"),
              "sm_90a GEMM PTX lacks the async-proxy fence");
    /* the PTX that ships (JIT on GPUs newer than every SASS target) must be the compute_80 one */
    cr_expect(!ptx_has(dir, "gemm_wgmma.compute_80.ptx", "wgmma.mma_async"),
              "compute_80 PTX contains wgmma");
}

/* ptxas reports when it had to make the wgmma pipeline wait because other instructions touch
 * in-flight accumulators ("warpgroup.wait is injected", "wgmma.mma_async instructions are
 * serialized ..."): the compiler moved accumulator reads/copies into the pipeline. Neither
 * Hopper GEMM may have that. */
Test(cuda_static, wgmma_pipelines_not_serialized_by_ptxas) {
    NEED_REPORTS(dir);
    const char *files[] = {"gemm_wgmma.ptxas.txt", "gemm_wgmma_tma.ptxas.txt"};
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
    NEED_REPORTS(dir);
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
    snprintf(path, sizeof path, "%s/gemm_wgmma_tma.ptxas.txt", dir);
    static ptxas_entry e[64];
    int n = parse_report(path, e, 64), regs = 0;
    for (int i = 0; i < n; i++)
        if (strstr(e[i].kernel, "tw_k_gemm_wgmma_tma") && !strcmp(e[i].arch, "sm_90a"))
            regs = e[i].regs;
    cr_assert(regs > 0, "%s: no sm_90a register count for tw_k_gemm_wgmma_tma", path);
    cr_expect(tw_wgt_regpool_ok(regs),
              "launch registers %d do not cover setmaxnreg.dec %d / inc %d (2 consumer warpgroups)",
              regs, TW_WGT_PRODUCER_REGS, TW_WGT_CONSUMER_REGS);
    /* the tensor maps are kernel parameters (__grid_constant__), read through their address */
    cr_expect(ptx_has(dir, "gemm_wgmma_tma.compute_90a.ptx", "cvta.param.u64"),
              "tensor map parameter not addressed in param space");
}

/* The expert and latent-attention kernels (issue 16), for every target: the routing and the
 * latent attention reduce across warps with shuffles, the expert counts use shared-memory atomics,
 * the grouped GEMM is fp32 FMA in shared-memory tiles for both weight dtypes (two
 * instantiations), and no kernel of either file reaches for local-memory arrays (their per-lane
 * state stays in registers: no ld.local/st.local in the PTX). */
Test(cuda_static, moe_and_mla_kernels) {
    NEED_REPORTS(dir);
    char arch[8][16];
    int num[8], na = sass_targets(arch, num, 8);
    cr_assert(na >= 1, "no SASS targets in TW_CUDA_SASS_ARCHS '%s'", TW_CUDA_SASS_ARCHS);
    for (int a = 0; a < na; a++) {
        char moe[64], mla[64];
        snprintf(moe, sizeof moe, "moe.compute_%s.ptx", arch[a] + 3);
        snprintf(mla, sizeof mla, "mla.compute_%s.ptx", arch[a] + 3);
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

/* The native-or-JIT rule of tw_cuda_image_query (no GPU needed): what cudaFuncGetAttributes
 * reports on each kind of device for a build with SASS 80, 90a, 100, 120 and compute_80 PTX. */
Test(cuda_static, image_mode_rule) {
    const char *list = "80,90a,100,120";
    const struct {
        int bin, ptx, native;
        const char *entry, *what;
    } c[] = {
        {90, 90, 1, "90a", "H100/H200: the sm_90a SASS"},
        {80, 80, 1, "80", "A100, or cc 8.6/8.9 running the binary-compatible sm_80 SASS"},
        {100, 100, 1, "100", "B200 (and B300, same major)"},
        {120, 120, 1, "120", "RTX Pro 6000 / 5090 (and GB10's 12.1)"},
        {90, 80, 0, "", "H200 with CUDA_FORCE_PTX_JIT=1: compute_80 PTX JIT-compiled"},
        {110, 80, 0, "", "a GPU with no SASS here (Thor, cc 11.0): JIT"},
        {86, 80, 0, "", "cc 8.6 forced to JIT"},
        {103, 103, 0, "", "SASS this build does not embed (impossible, but not 'native')"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char e[16] = "";
        int got = tw_cuda_image_native(c[i].bin, c[i].ptx, list, e, sizeof e);
        cr_expect_eq(got, c[i].native, "%s: binary %d ptx %d -> %s", c[i].what, c[i].bin, c[i].ptx,
                     got ? "native" : "jit");
        if (c[i].native) cr_expect_str_eq(e, c[i].entry, "%s: entry %s", c[i].what, e);
    }
    char e[16];
    cr_expect_eq(tw_cuda_image_native(90, 90, "80,90a", e, sizeof e), 1);
    cr_expect_eq(tw_cuda_image_native(100, 100, "80,90a", e, sizeof e), 0, "no sm_100 SASS");
}
