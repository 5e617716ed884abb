/* The CPU backend: fills tw_backend_ops with the kernels of kernels/cpu. Memory is host memory
 * (64-byte aligned for the SIMD paths); the stream is synchronous, so sync is a no-op. Its
 * context holds what it was created with (the host-ceilings measurement) and its own kernel
 * state (tw_cpu_state: SIMD level, GEMM panel cache, last GEMM path), so two CPU backends in one
 * process do not share a setting. Options: "simd" (set and get: a tw_simd_name the CPU has;
 * unset, the process level), "gemm_path" and "gemm_activations" (get: the last GEMM's path as
 * gemm_cpu_describe names it, and "bf16" or "fp32" for whether it rounded the activations;
 * "none" before any GEMM). */
#include "tw_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    tw_host_ceilings_fn host_ceilings;
    tw_cpu_state *state; /* owned */
} tw_cpu_ctx;

static tw_cpu_state *cpu_state(tw_backend *be) {
    return ((tw_cpu_ctx *)be->ctx)->state;
}

static tw_status cpu_alloc(tw_backend *be, size_t bytes, void **out) {
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    *out = aligned_alloc(64, rounded);
    if (!*out) return TW_ERR(TW_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    return TW_OK;
}

static void cpu_free(tw_backend *be, void *p) {
    (void)be;
    free(p);
}

static tw_status cpu_copy(tw_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
    return TW_OK;
}

static tw_status cpu_sync(tw_backend *be) {
    (void)be;
    return TW_OK;
}

static tw_status cpu_mem_available(tw_backend *be, size_t *bytes) {
    (void)be;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return TW_ERR(TW_ERR_IO, "cannot read /proc/meminfo");
    char line[256];
    unsigned long long kb = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            found = 1;
            break;
        }
    }
    fclose(f);
    if (!found) return TW_ERR(TW_ERR_IO, "no MemAvailable line in /proc/meminfo");
    *bytes = (size_t)kb * 1024;
    return TW_OK;
}

static tw_status cpu_gemm(tw_backend *be, const tw_gemm_args *a) {
    return gemm_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_attn_prefill(tw_backend *be, const tw_attn_prefill_args *a) {
    return attn_prefill_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_attn_decode(tw_backend *be, const tw_attn_decode_args *a) {
    return attn_decode_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_kv_store(tw_backend *be, const tw_kv_store_args *a) {
    return kv_store_cpu(a, be->threads);
}
static tw_status cpu_rmsnorm(tw_backend *be, int rows, int dim, const float *x, const void *w,
                             tw_dtype w_dtype, float eps, float *y) {
    return rmsnorm_cpu(rows, dim, x, w, w_dtype, eps, y, be->threads);
}
static tw_status cpu_rope(tw_backend *be, int tokens, int n_heads, int head_dim, float *x, int ldx,
                          const int *positions, const tw_rope_params *rp) {
    return rope_cpu(tokens, n_heads, head_dim, x, ldx, positions, rp, be->threads);
}
static tw_status cpu_swiglu(tw_backend *be, int rows, int f, const float *gate, const float *up,
                            int ld_in, float *out) {
    return swiglu_cpu_with(cpu_state(be), rows, f, gate, up, ld_in, out, be->threads);
}
static tw_status cpu_add(tw_backend *be, size_t n, const float *x, float *y) {
    return add_cpu(n, x, y, be->threads);
}
static tw_status cpu_bias_add(tw_backend *be, int rows, int n, float *x, int ldx, const void *b,
                              tw_dtype b_dtype) {
    return bias_add_cpu(rows, n, x, ldx, b, b_dtype, be->threads);
}
static tw_status cpu_embed(tw_backend *be, int n, const int *tokens, const void *table,
                           tw_dtype dtype, int row0, int rows, int dim, float *out) {
    return embed_cpu(n, tokens, table, dtype, row0, rows, dim, out, be->threads);
}
static tw_status cpu_argmax(tw_backend *be, int rows, int n, const float *logits, int *idx,
                            float *val) {
    return argmax_cpu(rows, n, logits, idx, val, be->threads);
}

static tw_status cpu_head_rmsnorm(tw_backend *be, int rows, int n_heads, int dim, float *x, int ldx,
                                  const void *w, tw_dtype w_dtype, float eps) {
    return head_rmsnorm_cpu(rows, n_heads, dim, x, ldx, w, w_dtype, eps, be->threads);
}
static tw_status cpu_moe_route(tw_backend *be, const tw_moe_route_args *a) {
    return moe_route_cpu(a, be->threads);
}
static tw_status cpu_moe_ffn(tw_backend *be, const tw_moe_ffn_args *a) {
    return moe_ffn_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_mla_store(tw_backend *be, const tw_mla_store_args *a) {
    return mla_store_cpu(a, be->threads);
}
static tw_status cpu_mla_attn(tw_backend *be, const tw_mla_attn_args *a) {
    return mla_attn_cpu(a, be->threads);
}

static tw_status cpu_attn_prefill_paged(tw_backend *be, const tw_attn_paged_args *a) {
    return attn_prefill_paged_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_attn_decode_paged(tw_backend *be, const tw_attn_paged_args *a) {
    return attn_decode_paged_cpu_with(cpu_state(be), a, be->threads);
}
static tw_status cpu_kv_store_paged(tw_backend *be, const tw_kv_store_paged_args *a) {
    return kv_store_paged_cpu(a, be->threads);
}

static void cpu_destroy(tw_backend *be) {
    if (!be) return;
    tw_cpu_ctx *c = be->ctx;
    if (c) tw_cpu_state_destroy(c->state);
    free(be->ctx);
    free(be);
}

static int cpu_supports(tw_backend *be, tw_op op, tw_dtype dt) {
    (void)be;
    switch (op) {
    case TW_OP_ATTN_PREFILL_PAGED: /* attn_paged_cpu.c: fp32 and bf16 pools */
    case TW_OP_ATTN_DECODE_PAGED:
    case TW_OP_KV_STORE_PAGED:
        return dt == TW_F32 || dt == TW_BF16;
    default:
        return tw_op_usual_dtype(op, dt);
    }
}

static tw_status cpu_describe(tw_backend *be, tw_device_desc *d) {
    d->kind = TW_DEVICE_HOST;
    d->count = 1;
    d->ordinal = -1;
    snprintf(d->arch, sizeof d->arch, "%s", tw_simd_name(tw_cpu_state_simd(cpu_state(be))));
    snprintf(d->power_source, sizeof d->power_source, "rapl");
    snprintf(d->name, sizeof d->name, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (f) {
        while (fgets(line, sizeof line, f)) {
            char *c = strchr(line, ':');
            if (!strncmp(line, "model name", 10) && c) {
                c += 1 + (c[1] == ' ');
                c[strcspn(c, "\n")] = '\0';
                snprintf(d->name, sizeof d->name, "%s", c);
                break;
            }
        }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "r");
    if (f) {
        unsigned long long kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
                d->memory_bytes = (uint64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    (void)be;
    return TW_OK;
}

/* The host's roofline, measured by what the backend was created with (the harness passes
 * tw_machine_host_ceilings: the membw read loop and the fp32 FMA loop). */
static tw_status cpu_ceilings(tw_backend *be, tw_ceilings *out) {
    tw_cpu_ctx *c = be->ctx;
    if (!c || !c->host_ceilings) {
        snprintf(out->read_method, sizeof out->read_method,
                 "not measured: the cpu backend was created without a host ceiling measurement");
        snprintf(out->peak_method, sizeof out->peak_method, "%s", out->read_method);
        return TW_ERR(TW_ERR_UNSUPPORTED, "cpu backend: created without a host ceiling measurement "
                                          "(tw_backend_params.host_ceilings)");
    }
    return c->host_ceilings(be->threads, out);
}

static tw_status cpu_set_option(tw_backend *be, const char *key, const char *value) {
    if (key && !strcmp(key, "simd")) {
        tw_simd level;
        TW_TRY(tw_simd_parse(value, &level));
        tw_status st = tw_cpu_state_set_simd(cpu_state(be), level);
        if (st != TW_OK) return tw_error_ctx(st, "cpu backend option simd=%s", value);
        return TW_OK;
    }
    if (key && (!strcmp(key, "gemm_path") || !strcmp(key, "gemm_activations")))
        return TW_ERR(TW_ERR_INVALID, "the cpu backend's option %s is read-only", key);
    return TW_ERR(TW_ERR_INVALID, "the cpu backend has no option %s (it has simd)",
                  key ? key : "(null)");
}

static const char *cpu_get_option(tw_backend *be, const char *key) {
    if (!key) return NULL;
    if (!strcmp(key, "simd")) return tw_simd_name(tw_cpu_state_simd(cpu_state(be)));
    if (!strcmp(key, "gemm_path") || !strcmp(key, "gemm_activations")) {
        tw_gemm_info g;
        tw_cpu_state_last_gemm(cpu_state(be), &g);
        if (!g.path) return "none";
        return key[5] == 'p' ? g.path : g.x_bf16 ? "bf16" : "fp32";
    }
    return NULL;
}

static const tw_backend_ops tw_cpu_ops = {
    .version = TW_BACKEND_INTERFACE_VERSION,
    .name = "cpu",
    .supports = cpu_supports,
    .describe = cpu_describe,
    .ceilings = cpu_ceilings,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .mem_available = cpu_mem_available,
    .gemm = cpu_gemm,
    .attn_prefill = cpu_attn_prefill,
    .attn_decode = cpu_attn_decode,
    .kv_store = cpu_kv_store,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .embed = cpu_embed,
    .argmax = cpu_argmax,
    .destroy = cpu_destroy,
    .bias_add = cpu_bias_add,
    .head_rmsnorm = cpu_head_rmsnorm,
    .moe_route = cpu_moe_route,
    .moe_ffn = cpu_moe_ffn,
    .mla_store = cpu_mla_store,
    .mla_attn = cpu_mla_attn,
    .attn_prefill_paged = cpu_attn_prefill_paged,
    .attn_decode_paged = cpu_attn_decode_paged,
    .kv_store_paged = cpu_kv_store_paged,
    .set_option = cpu_set_option,
    .get_option = cpu_get_option,
};

/* The registry row's create (kernels/backend.c). */
tw_status tw_backend_cpu_create_p(const tw_backend_params *p, tw_backend **out);
tw_status tw_backend_cpu_create_p(const tw_backend_params *p, tw_backend **out) {
    *out = NULL;
    if (p->threads < 0)
        return TW_ERR(TW_ERR_INVALID, "--threads must be >= 0 (0 = all cores), got %d", p->threads);
    tw_backend *be = calloc(1, sizeof *be);
    tw_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return TW_ERR(TW_ERR_NOMEM, "cannot allocate the cpu backend");
    }
    tw_status st = tw_cpu_state_create(&ctx->state);
    if (st != TW_OK) {
        free(be);
        free(ctx);
        return tw_error_ctx(st, "cpu backend");
    }
    ctx->host_ceilings = p->host_ceilings;
    be->ops = &tw_cpu_ops;
    be->ctx = ctx;
    be->threads = tw_cpu_threads(p->threads);
    be->device = -1;
    *out = be;
    return TW_OK;
}
