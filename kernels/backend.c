/* Backend-independent parts of the interface: dtypes, ops, the registry of backends, checked
 * construction, and the wrappers of the optional slots (which own the NULL checks). */
#include "tw_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t tw_dtype_size(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return 4;
    case TW_BF16:
        return 2;
    case TW_I32:
        return 4;
    }
    return 0;
}

const char *tw_dtype_name(tw_dtype dt) {
    switch (dt) {
    case TW_F32:
        return "fp32";
    case TW_BF16:
        return "bf16";
    case TW_I32:
        return "i32";
    }
    return "?";
}

tw_status tw_dtype_parse(const char *s, tw_dtype *out) {
    if (!s) return TW_ERR(TW_ERR_INVALID, "missing dtype");
    if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) {
        *out = TW_F32;
        return TW_OK;
    }
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) {
        *out = TW_BF16;
        return TW_OK;
    }
    return TW_ERR(TW_ERR_INVALID, "unknown dtype '%s' (expected fp32 or bf16)", s);
}

const char *tw_op_name(tw_op op) {
    static const char *const names[TW_OP_COUNT] = {
        [TW_OP_GEMM] = "gemm",
        [TW_OP_ATTN_PREFILL] = "attn_prefill",
        [TW_OP_ATTN_DECODE] = "attn_decode",
        [TW_OP_KV_STORE] = "kv_store",
        [TW_OP_RMSNORM] = "rmsnorm",
        [TW_OP_ROPE] = "rope",
        [TW_OP_SWIGLU] = "swiglu",
        [TW_OP_ADD] = "add",
        [TW_OP_EMBED] = "embed",
        [TW_OP_ARGMAX] = "argmax",
        [TW_OP_BIAS_ADD] = "bias_add",
        [TW_OP_HEAD_RMSNORM] = "head_rmsnorm",
        [TW_OP_MOE_ROUTE] = "moe_route",
        [TW_OP_MOE_FFN] = "moe_ffn",
        [TW_OP_MLA_STORE] = "mla_store",
        [TW_OP_MLA_ATTN] = "mla_attn",
        [TW_OP_ATTN_PREFILL_PAGED] = "attn_prefill_paged",
        [TW_OP_ATTN_DECODE_PAGED] = "attn_decode_paged",
        [TW_OP_KV_STORE_PAGED] = "kv_store_paged",
    };
    return (op >= 0 && op < TW_OP_COUNT && names[op]) ? names[op] : "?";
}

/* ---- the registry -----------------------------------------------------------------------------
 * One row per backend. A backend's build file (cmake/backend_NAME.cmake) compiles its folder
 * into tw_kernels and defines TW_HAVE_<NAME>; without it the row stays, built = 0, with a
 * create that says the backend was not built. */
tw_status tw_backend_cpu_create_p(const tw_backend_params *p, tw_backend **out);

#define TW_NOT_BUILT(id, label, why)                                                               \
    static tw_status tw_not_built_##id(const tw_backend_params *p, tw_backend **out) {             \
        (void)p;                                                                                   \
        *out = NULL;                                                                               \
        return TW_ERR(TW_ERR_UNSUPPORTED, "the " label " backend was not built into this binary "  \
                                          "(" why ")");                                            \
    }

#ifdef TW_HAVE_CUDA
tw_status tw_backend_cuda_create_p(const tw_backend_params *p, tw_backend **out);
#define TW_CUDA_CREATE tw_backend_cuda_create_p
#define TW_CUDA_BUILT  1
#else
TW_NOT_BUILT(cuda, "cuda", "no CUDA toolkit at configure time, or -DTW_CUDA=OFF")
#define TW_CUDA_CREATE tw_not_built_cuda
#define TW_CUDA_BUILT  0
#endif

static const tw_backend_entry tw_backend_rows[] = {
    {.name = "cpu", .create = tw_backend_cpu_create_p, .built = 1, .traits = {.options = "simd"}},
    {.name = "cuda",
     .create = TW_CUDA_CREATE,
     .built = TW_CUDA_BUILT,
     .traits = {.graphs = 1, .accelerator = 1, .power = "nvml", .comm = "nccl", .options = "gemm"}},
};

#define TW_NBACKENDS ((int)(sizeof tw_backend_rows / sizeof tw_backend_rows[0]))

int tw_backend_count(void) {
    return TW_NBACKENDS;
}

const tw_backend_entry *tw_backend_at(int i) {
    return i >= 0 && i < TW_NBACKENDS ? &tw_backend_rows[i] : NULL;
}

const tw_backend_entry *tw_backend_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < TW_NBACKENDS; i++)
        if (!strcmp(tw_backend_rows[i].name, name)) return &tw_backend_rows[i];
    return NULL;
}

const char *tw_backend_names(void) {
    static char buf[256];
    if (buf[0]) return buf;
    size_t used = 0;
    for (int i = 0; i < TW_NBACKENDS && used < sizeof buf; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s",
                                 i == 0 ? "" : (i == TW_NBACKENDS - 1 ? " or " : ", "),
                                 tw_backend_rows[i].name);
    return buf;
}

int tw_backend_has_option(const tw_backend_entry *row, const char *key) {
    if (!row || !row->traits.options || !key || !*key) return 0;
    size_t n = strlen(key);
    for (const char *p = row->traits.options; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, key, n)) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

tw_status tw_backend_check_ops(const tw_backend_ops *o) {
    if (!o) return TW_ERR(TW_ERR_INTERNAL, "backend: no ops table");
    const char *name = o->name ? o->name : "(unnamed)";
    if (o->version != TW_BACKEND_INTERFACE_VERSION)
        return TW_ERR(TW_ERR_INTERNAL,
                      "backend %s implements interface version %d; this build needs version %d",
                      name, o->version, TW_BACKEND_INTERFACE_VERSION);
    const struct {
        const char *slot;
        int present;
    } req[] = {{"alloc", o->alloc != NULL},       {"free", o->free != NULL},
               {"upload", o->upload != NULL},     {"download", o->download != NULL},
               {"sync", o->sync != NULL},         {"mem_available", o->mem_available != NULL},
               {"destroy", o->destroy != NULL},   {"supports", o->supports != NULL},
               {"describe", o->describe != NULL}, {"name", o->name != NULL}};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!req[i].present)
            return TW_ERR(TW_ERR_INTERNAL, "backend %s: required slot %s is missing", name,
                          req[i].slot);
    int graph_slots = (o->graph_begin != NULL) + (o->graph_end != NULL) +
                      (o->graph_launch != NULL) + (o->graph_destroy != NULL);
    if (graph_slots != 0 && graph_slots != 4)
        return TW_ERR(TW_ERR_INTERNAL, "backend %s: graph slots must come as all four or none",
                      name);
    if ((o->timer_start != NULL) != (o->timer_stop != NULL))
        return TW_ERR(TW_ERR_INTERNAL, "backend %s: timer_start and timer_stop come together",
                      name);
    return TW_OK;
}

tw_status tw_backend_create_with(const char *name, const tw_backend_params *p, tw_backend **out) {
    *out = NULL;
    if (!name) name = "cpu";
    const tw_backend_entry *row = tw_backend_find(name);
    if (!row)
        return TW_ERR(TW_ERR_INVALID, "unknown backend '%s' (expected %s)", name,
                      tw_backend_names());
    tw_backend_params none = {0};
    TW_TRY(row->create(p ? p : &none, out));
    tw_status st = tw_backend_check_ops((*out)->ops);
    if (st == TW_OK && strcmp((*out)->ops->name, row->name))
        st = TW_ERR(TW_ERR_INTERNAL, "backend row %s made a backend named %s", row->name,
                    (*out)->ops->name);
    if (st != TW_OK) {
        if ((*out)->ops && (*out)->ops->destroy) (*out)->ops->destroy(*out);
        *out = NULL;
    }
    return st;
}

tw_status tw_backend_create(const char *name, int threads, int device, tw_backend **out) {
    tw_backend_params p = {.threads = threads, .device = device};
    return tw_backend_create_with(name, &p, out);
}

tw_status tw_backend_cpu_create(int threads, tw_backend **out) {
    return tw_backend_create("cpu", threads, 0, out);
}

void tw_backend_destroy(tw_backend *be) {
    if (be && be->ops && be->ops->destroy) be->ops->destroy(be);
}

const tw_backend_entry *tw_backend_entry_of(const tw_backend *be) {
    return be && be->ops ? tw_backend_find(be->ops->name) : NULL;
}

/* ---- questions and optional slots ------------------------------------------------------------ */

static const char *tw_be_name(const tw_backend *be) {
    return be && be->ops && be->ops->name ? be->ops->name : "(none)";
}

#define TW_NO_SLOT(be, what)                                                                       \
    TW_ERR(TW_ERR_UNSUPPORTED, "the %s backend has no %s", tw_be_name(be), what)

/* Whether the compute slot of op is filled: a backend answering yes for an op it has no slot for
 * would crash its caller, so the wrapper asks the table too. */
static int tw_op_slot_present(const tw_backend_ops *o, tw_op op) {
    switch (op) {
    case TW_OP_GEMM:
        return o->gemm != NULL;
    case TW_OP_ATTN_PREFILL:
        return o->attn_prefill != NULL;
    case TW_OP_ATTN_DECODE:
        return o->attn_decode != NULL;
    case TW_OP_KV_STORE:
        return o->kv_store != NULL;
    case TW_OP_RMSNORM:
        return o->rmsnorm != NULL;
    case TW_OP_ROPE:
        return o->rope != NULL;
    case TW_OP_SWIGLU:
        return o->swiglu != NULL;
    case TW_OP_ADD:
        return o->add != NULL;
    case TW_OP_EMBED:
        return o->embed != NULL;
    case TW_OP_ARGMAX:
        return o->argmax != NULL;
    case TW_OP_BIAS_ADD:
        return o->bias_add != NULL;
    case TW_OP_HEAD_RMSNORM:
        return o->head_rmsnorm != NULL;
    case TW_OP_MOE_ROUTE:
        return o->moe_route != NULL;
    case TW_OP_MOE_FFN:
        return o->moe_ffn != NULL;
    case TW_OP_MLA_STORE:
        return o->mla_store != NULL;
    case TW_OP_MLA_ATTN:
        return o->mla_attn != NULL;
    case TW_OP_ATTN_PREFILL_PAGED:
        return o->attn_prefill_paged != NULL;
    case TW_OP_ATTN_DECODE_PAGED:
        return o->attn_decode_paged != NULL;
    case TW_OP_KV_STORE_PAGED:
        return o->kv_store_paged != NULL;
    case TW_OP_COUNT:
        break;
    }
    return 0;
}

int tw_backend_supports(tw_backend *be, tw_op op, tw_dtype dtype) {
    if (!be || !be->ops || !be->ops->supports || op < 0 || op >= TW_OP_COUNT) return 0;
    return tw_op_slot_present(be->ops, op) && be->ops->supports(be, op, dtype) != 0;
}

tw_status tw_backend_describe(tw_backend *be, tw_device_desc *out) {
    memset(out, 0, sizeof *out);
    out->ordinal = -1;
    if (!be || !be->ops || !be->ops->describe) return TW_NO_SLOT(be, "device description");
    return be->ops->describe(be, out);
}

int tw_backend_has_graphs(const tw_backend *be) {
    return be && be->ops && be->ops->graph_begin;
}

tw_status tw_backend_graph_begin(tw_backend *be) {
    if (!tw_backend_has_graphs(be)) return TW_NO_SLOT(be, "graph capture");
    return be->ops->graph_begin(be);
}

tw_status tw_backend_graph_end(tw_backend *be, void **graph) {
    *graph = NULL;
    if (!tw_backend_has_graphs(be)) return TW_NO_SLOT(be, "graph capture");
    return be->ops->graph_end(be, graph);
}

tw_status tw_backend_graph_launch(tw_backend *be, void *graph) {
    if (!tw_backend_has_graphs(be)) return TW_NO_SLOT(be, "graph replay");
    return be->ops->graph_launch(be, graph);
}

void tw_backend_graph_destroy(tw_backend *be, void *graph) {
    if (graph && tw_backend_has_graphs(be)) be->ops->graph_destroy(be, graph);
}

tw_status tw_backend_copy_d2d(tw_backend *be, void *dst, const void *src, size_t bytes) {
    if (!be || !be->ops || !be->ops->copy_d2d) return TW_NO_SLOT(be, "device-to-device copy");
    return be->ops->copy_d2d(be, dst, src, bytes);
}

tw_status tw_backend_timer_start(tw_backend *be) {
    if (!be || !be->ops || !be->ops->timer_start) return TW_NO_SLOT(be, "event timer");
    return be->ops->timer_start(be);
}

tw_status tw_backend_timer_stop(tw_backend *be, double *elapsed_s) {
    *elapsed_s = 0;
    if (!be || !be->ops || !be->ops->timer_stop) return TW_NO_SLOT(be, "event timer");
    return be->ops->timer_stop(be, elapsed_s);
}

void *tw_backend_stream(tw_backend *be) {
    return be && be->ops && be->ops->native_stream ? be->ops->native_stream(be) : NULL;
}

tw_status tw_backend_set_option(tw_backend *be, const char *key, const char *value) {
    if (!be || !be->ops || !be->ops->set_option)
        return TW_ERR(TW_ERR_INVALID, "the %s backend has no option %s", tw_be_name(be),
                      key ? key : "(null)");
    return be->ops->set_option(be, key, value);
}

const char *tw_backend_get_option(tw_backend *be, const char *key) {
    const char *v = be && be->ops && be->ops->get_option ? be->ops->get_option(be, key) : NULL;
    return v ? v : "";
}

tw_status tw_backend_ceilings(tw_backend *be, tw_ceilings *out) {
    memset(out, 0, sizeof *out);
    if (!be || !be->ops || !be->ops->ceilings) {
        snprintf(out->read_method, sizeof out->read_method,
                 "not measured: the %s backend has no ceilings slot", tw_be_name(be));
        snprintf(out->peak_method, sizeof out->peak_method, "%s", out->read_method);
        return TW_NO_SLOT(be, "ceilings slot (no measured roofline)");
    }
    return be->ops->ceilings(be, out);
}
