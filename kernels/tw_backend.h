/* tw_backend: the one interface between the engine and the kernels.
 * A backend is an opaque context plus a table of function pointers. Buffers are backend memory
 * (host memory for the CPU backend, device memory for CUDA); operations are queued in order on
 * the backend's stream and complete by tw_backend.sync. Nothing above this header includes a
 * backend's own headers (no CUDA header reaches the engine).
 *
 * Layout conventions (row-major throughout):
 *   activations   [tokens, features] fp32
 *   weights       [out_features, in_features] (checkpoint layout; y = x . W^T), fp32 or bf16
 *   KV cache      per layer [batch, n_kv_heads, max_seq, head_dim], fp32 or bf16
 *   queries       [tokens, n_heads, head_dim], tokens ordered sequence-major (b, s)
 * Every op returns TW_OK or a status with tw_last_error() naming the op and the problem. */
#ifndef TW_BACKEND_H
#define TW_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "tw_numeric.h"
#include "tw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TW_F32 = 0, TW_BF16 = 1, TW_I32 = 2 } tw_dtype;

size_t tw_dtype_size(tw_dtype dt);
const char *tw_dtype_name(tw_dtype dt);
/* Parses "fp32"/"f32"/"float32" or "bf16"/"bfloat16"; returns TW_ERR_INVALID otherwise. */
tw_status tw_dtype_parse(const char *s, tw_dtype *out);

/* y[m, n] = x[m, k] . w[n, k]^T  (+ y when accumulate: fuses the residual add) */
typedef struct {
    int m, n, k;
    const float *x; /* [m, ldx] fp32, ldx >= k */
    const void *w;  /* [n, k] w_dtype */
    tw_dtype w_dtype;
    float *y;     /* [m, ldy] fp32, ldy >= n */
    int ldx, ldy; /* 0 means packed (k, n) */
    int accumulate;
} tw_gemm_args;

/* Causal attention for `seq` new tokens per sequence whose keys and values are already in the
 * cache at positions [start_pos[b], start_pos[b] + seq). Query token s of sequence b sits at
 * position p = start_pos[b] + s and attends to cache positions 0 .. p, or with a sliding window
 * W > 0 to positions max(0, p - W + 1) .. p only (the W most recent, itself included: Hugging
 * Face's sliding_window mask). Grouped-query: head h reads KV head h / (n_heads / n_kv_heads). */
typedef struct {
    int batch, seq, n_heads, n_kv_heads, head_dim, max_seq;
    const int *start_pos; /* [batch], host memory */
    const float *q;       /* [batch * seq, n_heads, head_dim] */
    const void *k_cache;  /* [batch, n_kv_heads, max_seq, head_dim] kv_dtype */
    const void *v_cache;
    tw_dtype kv_dtype;
    float *out;  /* [batch * seq, n_heads, head_dim] */
    float scale; /* usually 1/sqrt(head_dim) */
    int window;  /* sliding window W (0: none) */
} tw_attn_prefill_args;

/* One new query per sequence attending to cache positions 0 .. lens[b]-1 (lens include the new
 * token, whose K and V were stored first), or with a window W > 0 to max(0, lens[b] - W) ..
 * lens[b]-1. Sequences may have different lengths. */
typedef struct {
    int batch, n_heads, n_kv_heads, head_dim, max_seq;
    const int *lens; /* [batch], host memory */
    const float *q;  /* [batch, n_heads, head_dim] */
    const void *k_cache;
    const void *v_cache;
    tw_dtype kv_dtype;
    float *out; /* [batch, n_heads, head_dim] */
    float scale;
    int window; /* sliding window W (0: none) */
} tw_attn_decode_args;

/* Stores `seq` new tokens of K and V per sequence into the cache at start_pos[b] + s, converting
 * to kv_dtype. k, v: [batch * seq, n_kv_heads, head_dim] fp32, rows ldkv apart (elements). */
typedef struct {
    int batch, seq, n_kv_heads, head_dim, max_seq;
    const int *start_pos; /* [batch], host memory */
    const float *k, *v;
    int ldkv; /* 0 means packed (n_kv_heads * head_dim) */
    void *k_cache, *v_cache;
    tw_dtype kv_dtype;
} tw_kv_store_args;

/* ---- mixture of experts (doc/MOE.md) ------------------------------------------------------
 * Routing: per token, scores s = softmax(logits + logit_bias) or sigmoid(logits + logit_bias);
 * the choice ranks s + choice_bias (the score correction bias of DeepSeek-V3, or NULL), limited
 * with n_group > 1 to the topk_group groups of n_experts / n_group consecutive experts with the
 * best group scores (group_top2: the sum of a group's two best choice values; else its best);
 * the top_k experts of the choice (larger first, ties to the lower index) get the weights s
 * (without choice_bias), divided by their sum when norm_topk (+ 1e-20 for sigmoid, as
 * DeepSeek), then times scale (routed_scaling_factor). */
typedef enum { TW_ROUTE_SOFTMAX = 0, TW_ROUTE_SIGMOID = 1 } tw_route_scoring;

typedef struct {
    int tokens, n_experts, top_k;
    tw_route_scoring scoring;
    int n_group, topk_group, group_top2; /* 1, 1: no group limit */
    int norm_topk;
    float scale;
    const float *logits;     /* [tokens, n_experts] router logits */
    const float *logit_bias; /* [n_experts] added to every logit first (routing skew), or NULL */
    const void *choice_bias; /* [n_experts] choice_dtype, or NULL */
    tw_dtype choice_dtype;
    int *idx;      /* [tokens, top_k] chosen experts (backend memory) */
    float *weight; /* [tokens, top_k] their weights */
} tw_moe_route_args;

/* Grouped expert MLP: for every token t and slot j whose expert e = idx[t, j] is held here
 * (expert0 <= e < expert0 + n_experts), out_e = (silu(x_t G_e^T) * (x_t U_e^T)) D_e^T;
 * y_t (+)= sum over held slots j, in slot order, of weight[t, j] * out_e. Tokens whose slots are
 * all elsewhere get 0 (or keep y with accumulate). Each expert's tokens are gathered and run
 * through one GEMM per projection (no per-token loop). */
typedef struct {
    int tokens, hidden, ffn, top_k; /* ffn: the expert width held here (a tensor-parallel shard) */
    int n_experts, expert0;         /* the experts held here */
    const int *idx;                 /* [tokens, top_k] from moe_route (backend memory) */
    const float *weight;            /* [tokens, top_k] */
    const float *x;                 /* [tokens, hidden] */
    const void *w_gate_up; /* [n_experts][2 * ffn, hidden]: expert e's gate rows then up rows */
    const void *w_down;    /* [n_experts][hidden, ffn] */
    tw_dtype w_dtype;
    float *y; /* [tokens, hidden] */
    int accumulate;
    void *work; /* backend memory of at least tw_moe_ffn_work_bytes() */
    size_t work_bytes;
    int *counts; /* [n_experts] tokens each held expert received in this call (backend memory),
                  * or NULL */
} tw_moe_ffn_args;

/* Workspace of moe_ffn: the gathered rows, their gate/up and down outputs, the permutation. */
static inline size_t tw_moe_ffn_work_bytes(int tokens, int top_k, int hidden, int ffn,
                                           int n_experts) {
    size_t slots = (size_t)tokens * (size_t)top_k;
    return slots * (2 * (size_t)hidden + 3 * (size_t)ffn) * sizeof(float) +
           (2 * slots + 3 * (size_t)n_experts + 2) * sizeof(int) + 256;
}

/* ---- multi-head latent attention (DeepSeek; doc/MOE.md) --------------------------------------
 * The cache holds per position the normalised latent c (lora_rank) then the rotated rope key
 * k_r (rope_dim): [batch, max_seq, lora_rank + rope_dim] in kv_dtype. mla_store writes `seq`
 * new rows per sequence at start_pos[b] + s from kv [batch * seq, ldkv] (the first lora_rank +
 * rope_dim columns). */
typedef struct {
    int batch, seq, lora_rank, rope_dim, max_seq;
    const int *start_pos; /* [batch], host memory */
    const float *kv;
    int ldkv; /* 0: packed (lora_rank + rope_dim) */
    void *cache;
    tw_dtype kv_dtype;
} tw_mla_store_args;

/* Absorbed latent attention (prefill and decode): query token s of sequence b at position
 * p = start_pos[b] + s, head h, attends cache positions 0 .. p with
 *   score = scale * ((W_UK,h^T q_nope,h) . c + q_rope,h . k_r)
 *   out_h = W_UV,h (sum_p softmax(score)_p c_p)
 * where W_UK,h and W_UV,h are head h's nope rows and v rows of kv_b_proj (w_kv_b: per head
 * nope_dim rows then v_dim rows, each lora_rank wide, checkpoint layout): the keys and values
 * are never expanded. q: per token the nope parts of every head [n_heads * nope_dim], then the
 * rope parts [n_heads * rope_dim] (RoPE applied), rows ldq apart. */
typedef struct {
    int batch, seq, n_heads, nope_dim, rope_dim, lora_rank, v_dim, max_seq;
    const int *start_pos; /* [batch], host memory */
    const float *q;
    int ldq;            /* 0: packed n_heads * (nope_dim + rope_dim) */
    const void *w_kv_b; /* [n_heads * (nope_dim + v_dim), lora_rank] w_dtype */
    tw_dtype w_dtype;
    const void *cache; /* [batch, max_seq, lora_rank + rope_dim] kv_dtype */
    tw_dtype kv_dtype;
    float *out; /* [batch * seq, n_heads * v_dim] */
    float scale;
} tw_mla_attn_args;

/* ---- paged KV cache (serving scenarios, doc/SERVING.md) --------------------------------------
 * One layer's keys and values live in a pool of n_blocks blocks, each [n_kv_heads, block_tokens,
 * head_dim] in kv_dtype (the pool is [n_blocks, n_kv_heads, block_tokens, head_dim]): position p
 * of sequence b is row p % block_tokens of block block_tables[b * max_blocks + p / block_tokens]
 * (tw_paged_kv_offset). One call covers n_seqs sequences with their own numbers of new tokens:
 * sequence b's rows of q, out (and k, v for the store) are q_start[b] .. q_start[b + 1] - 1, at
 * positions start_pos[b] + i. Every per-sequence array and the block tables are host memory.
 *
 * attn_prefill_paged: causal attention of those tokens, whose keys and values are already in the
 * pool: the token at position p attends positions 0 .. p (or, with a window W > 0, the W most
 * recent, max(0, p - W + 1) .. p), as attn_prefill. attn_decode_paged: one new token per sequence
 * (q_start may be NULL: row b; else each sequence has exactly one row), as attn_decode with
 * lens[b] = start_pos[b] + 1, split over the keys (flash decoding). */
typedef struct {
    int n_seqs, n_heads, n_kv_heads, head_dim;
    int block_tokens, n_blocks, max_blocks; /* max_blocks: the row stride of block_tables */
    const int *q_start;                     /* [n_seqs + 1] */
    const int *start_pos;                   /* [n_seqs] */
    const int32_t *block_tables;            /* [n_seqs, max_blocks] */
    const float *q;                         /* [rows, n_heads, head_dim] */
    const void *k_pool, *v_pool;            /* [n_blocks, n_kv_heads, block_tokens, head_dim] */
    tw_dtype kv_dtype;
    float *out; /* [rows, n_heads, head_dim] */
    float scale;
    int window; /* sliding window W (0: none) */
} tw_attn_paged_args;

/* Stores each sequence's new rows of K and V into its blocks at start_pos[b] + i, converting to
 * kv_dtype. k, v: [rows, n_kv_heads, head_dim] fp32, rows ldkv apart (0: packed). */
typedef struct {
    int n_seqs, n_kv_heads, head_dim;
    int block_tokens, n_blocks, max_blocks;
    const int *q_start;          /* [n_seqs + 1] */
    const int *start_pos;        /* [n_seqs] */
    const int32_t *block_tables; /* [n_seqs, max_blocks] */
    const float *k, *v;
    int ldkv;
    void *k_pool, *v_pool;
    tw_dtype kv_dtype;
} tw_kv_store_paged_args;

/* Element offset of position pos of KV head h in a block pool laid out as above. */
TW_HD static inline size_t tw_paged_kv_offset(const int32_t *table, int block_tokens,
                                              int n_kv_heads, int head_dim, int h, int pos) {
    size_t blk = (size_t)table[pos / block_tokens];
    return ((blk * (size_t)n_kv_heads + (size_t)h) * (size_t)block_tokens +
            (size_t)(pos % block_tokens)) *
           (size_t)head_dim;
}

typedef struct tw_backend tw_backend;

/* ---- interface version 2 -------------------------------------------------------------------
 * A backend's ops table carries the version it was written against; tw_backend_create refuses
 * a table of another version (or one missing a required slot), naming the backend. Version 2:
 * the registry, supports(), describe(), the optional slots (graphs, device copies, timer,
 * stream, options, ceilings) behind wrappers that own the NULL checks. */
#define TW_BACKEND_INTERFACE_VERSION 2

/* The ops a backend may answer supports() for (one per compute slot of tw_backend_ops). */
typedef enum {
    TW_OP_GEMM = 0,
    TW_OP_ATTN_PREFILL,
    TW_OP_ATTN_DECODE,
    TW_OP_KV_STORE,
    TW_OP_RMSNORM,
    TW_OP_ROPE,
    TW_OP_SWIGLU,
    TW_OP_ADD,
    TW_OP_EMBED,
    TW_OP_ARGMAX,
    TW_OP_BIAS_ADD,
    TW_OP_HEAD_RMSNORM,
    TW_OP_MOE_ROUTE,
    TW_OP_MOE_FFN,
    TW_OP_MLA_STORE,
    TW_OP_MLA_ATTN,
    TW_OP_ATTN_PREFILL_PAGED, /* the paged KV cache (tw_attn_paged_args, tw_kv_store_paged_args) */
    TW_OP_ATTN_DECODE_PAGED,
    TW_OP_KV_STORE_PAGED,
    TW_OP_COUNT
} tw_op;

/* "gemm", "attn_prefill", ... ("?" out of range). */
const char *tw_op_name(tw_op op);

/* The usual answer to supports(): every op for fp32 and bf16 stored operands, the
 * activation-only ops (rope, swiglu, add, argmax) for fp32. A backend with other limits answers
 * for itself. */
static inline int tw_op_usual_dtype(tw_op op, tw_dtype dt) {
    switch (op) {
    case TW_OP_ROPE:
    case TW_OP_SWIGLU:
    case TW_OP_ADD:
    case TW_OP_ARGMAX:
        return dt == TW_F32;
    case TW_OP_COUNT:
        return 0;
    default:
        return (op >= 0 && op < TW_OP_COUNT) && (dt == TW_F32 || dt == TW_BF16);
    }
}

/* What a backend runs on. Figures the backend cannot know are 0 (the datasheet figures live in
 * configs/devices.json, read by the harness with the device name). */
typedef enum { TW_DEVICE_HOST = 0, TW_DEVICE_GPU = 1 } tw_device_kind;

typedef struct {
    tw_device_kind kind;
    char name[256];            /* "NVIDIA H100 80GB HBM3", or the CPU model */
    char arch[64];             /* "compute capability 9.0", "avx512" */
    int count;                 /* devices of this kind visible (1 for the host) */
    int ordinal;               /* the one this backend runs on (-1: the host) */
    uint64_t memory_bytes;     /* total memory of the device (host: MemTotal), 0 unknown */
    double mem_bw_bytes_per_s; /* theoretical, from the device's own figures, 0 unknown */
    double peak_bf16_flops;    /* dense, known to the backend itself, 0 unknown */
    double peak_fp32_flops;    /* idem */
    char power_source[16];     /* the sensor family that meters it: "nvml", "rapl" */
} tw_device_desc;

/* The roofline a backend measures for itself, the same way on every backend: a read bandwidth
 * (CPU: the read loop of tokwatt bench membw; CUDA: a device-to-device copy, bytes read +
 * written) and a compute peak (CPU: an fp32 FMA loop; CUDA: a bf16 tensor-core loop). */
typedef struct {
    double read_bw_bytes_per_s; /* 0: not measured (read_method says why) */
    char read_method[128];
    double peak_flops;   /* 0: not measured */
    tw_dtype peak_dtype; /* the dtype the peak is for */
    char peak_method[128];
    char read_detail[240];  /* how the read figure was reached (kernel, threads, buffer), or "" */
    double peak_bf16_flops; /* a second peak for bf16 operands when peak_dtype is fp32 (the CPU:
                             * the fastest bf16 multiply-add it has), 0: none */
    char peak_bf16_method[256];
} tw_ceilings;

/* What a backend is created with. host_ceilings: how the host's ceilings are measured (the CPU
 * backend's ceilings slot calls it: the harness passes tw_machine_host_ceilings; NULL: the CPU
 * backend says it cannot measure them). */
typedef tw_status (*tw_host_ceilings_fn)(int threads, tw_ceilings *out);
typedef struct {
    int threads; /* CPU worker threads, 0 = all cores */
    int device;  /* accelerator ordinal */
    tw_host_ceilings_fn host_ceilings;
} tw_backend_params;

typedef struct {
    int version;      /* TW_BACKEND_INTERFACE_VERSION */
    const char *name; /* the registry row's name */

    /* ---- required: memory, stream order, teardown, questions ---------------------------------
     * alloc returns TW_ERR_NOMEM naming the size; free(NULL) is a no-op */
    tw_status (*alloc)(tw_backend *be, size_t bytes, void **out);
    void (*free)(tw_backend *be, void *p);
    tw_status (*upload)(tw_backend *be, void *dst, const void *src_host, size_t bytes);
    tw_status (*download)(tw_backend *be, void *dst_host, const void *src, size_t bytes);
    tw_status (*sync)(tw_backend *be);
    /* bytes free for new allocations (device memory, or host MemAvailable) */
    tw_status (*mem_available)(tw_backend *be, size_t *bytes);
    void (*destroy)(tw_backend *be);
    /* Whether op runs for operands of dtype: the op's stored operand (weights for gemm, rmsnorm,
     * bias_add, head_rmsnorm, embed, moe_ffn; the cache for attention, kv_store, mla_* and the
     * paged ops (the pool); the choice bias for moe_route; TW_F32 for activation-only ops: rope,
     * swiglu, add, argmax). tw_backend_supports also answers 0 for an op whose slot is NULL. */
    int (*supports)(tw_backend *be, tw_op op, tw_dtype dtype);
    tw_status (*describe)(tw_backend *be, tw_device_desc *out);

    /* ---- compute (supports() says which run) ------------------------------------------------ */
    tw_status (*gemm)(tw_backend *be, const tw_gemm_args *a);
    tw_status (*attn_prefill)(tw_backend *be, const tw_attn_prefill_args *a);
    tw_status (*attn_decode)(tw_backend *be, const tw_attn_decode_args *a);
    tw_status (*kv_store)(tw_backend *be, const tw_kv_store_args *a);
    /* y[rows, dim] = x / rms(x) * w ; w is [dim] in w_dtype; x and y may alias */
    tw_status (*rmsnorm)(tw_backend *be, int rows, int dim, const float *x, const void *w,
                         tw_dtype w_dtype, float eps, float *y);
    /* in place on x[tokens, n_heads, head_dim] (rows ldx elements apart, 0 = packed);
     * positions[tokens] in host memory */
    tw_status (*rope)(tw_backend *be, int tokens, int n_heads, int head_dim, float *x, int ldx,
                      const int *positions, const tw_rope_params *rp);
    /* out[rows, f] = silu(gate) * up; gate/up rows ld_in elements apart, out packed */
    tw_status (*swiglu)(tw_backend *be, int rows, int f, const float *gate, const float *up,
                        int ld_in, float *out);
    /* y[n] += x[n] */
    tw_status (*add)(tw_backend *be, size_t n, const float *x, float *y);
    /* out[n, dim] = table[tokens[i] - row0, :] for tokens in [row0, row0 + rows); other tokens
     * give zero rows (vocabulary-parallel shards); tokens in host memory */
    tw_status (*embed)(tw_backend *be, int n, const int *tokens, const void *table, tw_dtype dtype,
                       int row0, int rows, int dim, float *out);
    /* per row of logits[rows, n]: index and value of the maximum (first on ties);
     * idx and val in host memory */
    tw_status (*argmax)(tw_backend *be, int rows, int n, const float *logits, int *idx, float *val);
    /* x[r, j] += b[j] for r < rows, j < n; rows ldx elements apart (0 = packed n); b is [n] in
     * b_dtype (the q/k/v biases of Qwen2) */
    tw_status (*bias_add)(tw_backend *be, int rows, int n, float *x, int ldx, const void *b,
                          tw_dtype b_dtype);
    /* In place: every head of every row, x[r * ldx + h * dim .. + dim), divided by its RMS and
     * times w[dim] (Qwen3's q_norm/k_norm, DeepSeek's kv_a_layernorm on the latent part of a
     * wider row). ldx 0 = packed n_heads * dim. */
    tw_status (*head_rmsnorm)(tw_backend *be, int rows, int n_heads, int dim, float *x, int ldx,
                              const void *w, tw_dtype w_dtype, float eps);
    tw_status (*moe_route)(tw_backend *be, const tw_moe_route_args *a);
    tw_status (*moe_ffn)(tw_backend *be, const tw_moe_ffn_args *a);
    tw_status (*mla_store)(tw_backend *be, const tw_mla_store_args *a);
    tw_status (*mla_attn)(tw_backend *be, const tw_mla_attn_args *a);
    /* paged KV cache (serving scenarios): attention and the store through block tables */
    tw_status (*attn_prefill_paged)(tw_backend *be, const tw_attn_paged_args *a);
    tw_status (*attn_decode_paged)(tw_backend *be, const tw_attn_paged_args *a);
    tw_status (*kv_store_paged)(tw_backend *be, const tw_kv_store_paged_args *a);

    /* ---- optional (NULL: the backend has none; call them through the tw_backend_* wrappers
     * below, which own the NULL checks and say so by the backend's name) --------------------- */
    /* the native stream (cudaStream_t) for communicators to queue on */
    void *(*native_stream)(tw_backend *be);
    /* Graph capture of the ops queued between begin and end; launch replays them. The
     * backend's own header states what stays valid between launches (CUDA:
     * kernels/cuda/tw_backend_cuda.h: host arrays at the same addresses, same shapes). */
    tw_status (*graph_begin)(tw_backend *be);
    tw_status (*graph_end)(tw_backend *be, void **graph);
    tw_status (*graph_launch)(tw_backend *be, void *graph);
    void (*graph_destroy)(tw_backend *be, void *graph);
    /* device-to-device copy of bytes between two backend buffers, queued */
    tw_status (*copy_d2d)(tw_backend *be, void *dst, const void *src, size_t bytes);
    /* elapsed time of queued work: start records, stop records and waits */
    tw_status (*timer_start)(tw_backend *be);
    tw_status (*timer_stop)(tw_backend *be, double *elapsed_s);
    /* named settings (cuda "gemm": the GEMM implementation; cpu "simd": the SIMD level, and the
     * read-only "gemm_path", "gemm_activations" of its last GEMM); unknown names are
     * TW_ERR_INVALID */
    tw_status (*set_option)(tw_backend *be, const char *key, const char *value);
    const char *(*get_option)(tw_backend *be, const char *key); /* NULL: no such option */
    /* the measured roofline (tw_ceilings); may take seconds */
    tw_status (*ceilings)(tw_backend *be, tw_ceilings *out);
} tw_backend_ops;

struct tw_backend {
    const tw_backend_ops *ops;
    void *ctx;   /* backend-private */
    int threads; /* CPU worker threads (CPU backend), 0 = all cores */
    int device;  /* accelerator ordinal (CUDA backend) */
};

/* ---- the registry ---------------------------------------------------------------------------
 * One row per backend this source tree knows (kernels/backend.c), built into this binary or
 * not. A row that was not built has built = 0 and a create that returns TW_ERR_UNSUPPORTED
 * saying so by name. Adding a backend: a folder under kernels/, a row, a cmake/ file. */
typedef struct {
    unsigned graphs : 1;      /* it captures and replays graphs (--cuda-graph) */
    unsigned accelerator : 1; /* it runs on a device with an ordinal (--device) */
    const char *power;        /* the power sensor of its devices ("nvml"), NULL: the host's */
    const char *comm;         /* the communicator of its memory ("nccl"), NULL: the host's */
    const char *options;      /* set_option names, comma-separated ("gemm"), "" none */
} tw_backend_traits;

typedef struct {
    const char *name;
    tw_status (*create)(const tw_backend_params *p, tw_backend **out);
    int built; /* compiled into this binary */
    tw_backend_traits traits;
} tw_backend_entry;

int tw_backend_count(void);
const tw_backend_entry *tw_backend_at(int i);
/* The row of name, or NULL. */
const tw_backend_entry *tw_backend_find(const char *name);
/* "cpu or cuda" (every row), for messages. */
const char *tw_backend_names(void);
/* Whether the row's traits.options lists key. */
int tw_backend_has_option(const tw_backend_entry *row, const char *key);

/* Constructors. name NULL means "cpu". A backend not built, or with no device, returns
 * TW_ERR_UNSUPPORTED (or TW_ERR_DEVICE) saying so; nothing ever falls back to another backend.
 * The ops table is checked (version, required slots). Free with tw_backend_destroy. */
tw_status tw_backend_create(const char *name, int threads, int device, tw_backend **out);
tw_status tw_backend_create_with(const char *name, const tw_backend_params *p, tw_backend **out);
tw_status tw_backend_cpu_create(int threads, tw_backend **out);
void tw_backend_destroy(tw_backend *be);
/* The registry row the backend was created from (NULL for a table made by hand). */
const tw_backend_entry *tw_backend_entry_of(const tw_backend *be);
/* Checks an ops table: version and required slots (TW_ERR_INTERNAL naming what is wrong). */
tw_status tw_backend_check_ops(const tw_backend_ops *ops);

/* ---- questions and optional slots: the wrappers own the NULL checks ---------------------------
 */
int tw_backend_supports(tw_backend *be, tw_op op, tw_dtype dtype);
tw_status tw_backend_describe(tw_backend *be, tw_device_desc *out);
int tw_backend_has_graphs(const tw_backend *be);
tw_status tw_backend_graph_begin(tw_backend *be);
tw_status tw_backend_graph_end(tw_backend *be, void **graph);
tw_status tw_backend_graph_launch(tw_backend *be, void *graph);
void tw_backend_graph_destroy(tw_backend *be, void *graph); /* NULL graph: no-op */
tw_status tw_backend_copy_d2d(tw_backend *be, void *dst, const void *src, size_t bytes);
tw_status tw_backend_timer_start(tw_backend *be);
tw_status tw_backend_timer_stop(tw_backend *be, double *elapsed_s);
/* NULL when the backend has no stream of its own (the host's order) */
void *tw_backend_stream(tw_backend *be);
tw_status tw_backend_set_option(tw_backend *be, const char *key, const char *value);
/* "" when the backend has no such option */
const char *tw_backend_get_option(tw_backend *be, const char *key);
/* TW_ERR_UNSUPPORTED, naming the backend, when it has no ceilings slot */
tw_status tw_backend_ceilings(tw_backend *be, tw_ceilings *out);

#ifdef __cplusplus
}
#endif
#endif
