/* The inference engine: a Llama-family forward pass (prefill and decode with a KV cache, greedy
 * sampling; Qwen2's q/k/v biases and Mistral/Qwen2/Phi-3 sliding-window attention, the KV cache
 * staying full-size; Qwen3's q/k norms; mixtures of experts with their routers and shared
 * experts; DeepSeek's latent attention with a KV cache of the compressed latent and the rope
 * key, doc/MOE.md) driven only through the backend interface (kernels/tw_backend.h), so that the
 * CPU and CUDA backends and tensor-parallel shards plug in without changing it.
 *
 * Tensor parallelism (Megatron style): rank r of tp holds query heads [r*H/tp, (r+1)*H/tp), the
 * KV heads they read (replicated when tp > n_kv_heads), columns [r*F/tp, ...) of gate/up and the
 * matching rows of down, the matching columns of o_proj, and a vocabulary shard of the embedding
 * and LM head. Partial sums after o_proj and down_proj (and the sharded embedding) are summed
 * with the communicator; the argmax is reduced across ranks. Experts: every rank holds every
 * expert's columns [r*Fm/tp, ...) (and the router, replicated); latent attention: the local
 * heads' rows of q_b_proj and kv_b_proj, the latent projections and cache replicated. */
#ifndef TW_ENGINE_H
#define TW_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "tw_backend.h"
#include "tw_model.h"

struct tw_comm; /* harness/comm/tw_comm.h; NULL means one rank */

typedef struct {
    const tw_model_config *cfg;
    tw_backend *be;
    tw_dtype w_dtype;  /* TW_F32 or TW_BF16 */
    tw_dtype kv_dtype; /* TW_F32 or TW_BF16 */
    int max_batch;     /* sequences */
    int max_seq;       /* KV-cache positions per sequence (prompt + generated) */
    int max_prefill;   /* tokens per sequence in one prefill call */
    uint64_t seed;
    struct tw_comm *comm; /* NULL: tp = 1 */
    int tp_rank, tp_size;
    int keep_host_logits; /* initial capture setting: see tw_engine_set_capture */
    int cuda_graph;       /* replay decode steps as a CUDA graph (cuda backend, one rank) */
    double routing_skew;  /* >= 0: expert e's router logit gets -skew * ln(rank_e), a seeded
                           * Zipf-like preference (tw_moe_skew_bias; 0: none) */
    /* Expert parallelism (0 or 1: none): rank ep_rank of ep_size holds experts
     * [ep_rank * E / ep_size, ...) whole; comm spans the ep_size ranks, and tp_size is 1
     * (attention replicated) or ep_size (attention tensor-parallel over the same ranks). In a
     * MoE layer each rank dispatches the slots of its share of the tokens to the experts' ranks
     * with the communicator's all-to-all, they run there, and a second all-to-all returns them
     * (doc/MOE.md). */
    int ep_rank, ep_size;
    /* Paged KV cache (serving scenarios, harness/serve/tw_serve_engine.h): kv_blocks > 0 replaces
     * the per-sequence cache by a pool per layer of kv_blocks blocks of kv_block_tokens
     * positions, read and written through block tables by tw_engine_step_paged only; max_batch
     * is then the most sequences in one step, max_step_tokens the most rows (the step's token
     * budget), and max_seq the longest sequence. Not for latent attention (refused). */
    int64_t kv_blocks;
    int kv_block_tokens;
    int max_step_tokens;
    /* Optional: called after each layer's weights are generated; a non-zero return stops the
     * build (TW_ERR_INTERRUPTED). For progress output and interruption of long builds. */
    int (*progress)(void *ctx, int layers_done, int layers_total);
    void *progress_ctx;
} tw_engine_opts;

/* Bytes this rank needs, planned before anything is allocated. */
typedef struct {
    size_t weights_bytes;
    size_t kv_bytes;
    size_t act_bytes;
    size_t total_bytes;
    size_t available_bytes; /* what the backend reports free */
    int64_t params_local;   /* weights held by this rank */
} tw_mem_plan;

typedef struct tw_engine tw_engine;

/* Shard geometry of one rank (also used by tests to check slices). */
typedef struct {
    int heads, kv_heads, head0, kv_head0, ffn, ffn0, vocab, vocab0, vocab_pad;
    int moe_ffn, moe_ffn0;       /* columns of every held expert's MLP (its down rows) */
    int shared_ffn, shared_ffn0; /* columns of the shared experts' MLP (n_shared * Fm / tp) */
    int experts, expert0;        /* the routed experts held here */
} tw_shard;
tw_status tw_engine_shard(const tw_model_config *c, int tp_rank, int tp_size, tw_shard *out);
/* The same with expert parallelism: experts [ep_rank * E / ep_size, ...) whole (ep_size 0 or 1:
 * tw_engine_shard). */
tw_status tw_engine_shard_ep(const tw_model_config *c, int tp_rank, int tp_size, int ep_rank,
                             int ep_size, tw_shard *out);

tw_status tw_engine_plan(const tw_engine_opts *o, tw_mem_plan *plan);
/* Plans, refuses a plan that does not fit (TW_ERR_NOMEM naming need and availability) before
 * allocating, allocates, generates this rank's weights. */
tw_status tw_engine_create(const tw_engine_opts *o, tw_engine **out);
void tw_engine_destroy(tw_engine *e);

/* Forgets every sequence (positions back to 0); the KV cache is overwritten, not cleared. */
void tw_engine_reset(tw_engine *e);

/* Prefill: `len` tokens for each of `batch` sequences (tokens[b * len + i]), appended after each
 * sequence's current position. next[b] receives the greedy next token. */
tw_status tw_engine_prefill(tw_engine *e, int batch, int len, const int *tokens, int *next);
/* Decode one token per sequence (tokens[b]); next[b] receives the greedy next token. */
tw_status tw_engine_decode(tw_engine *e, int batch, const int *tokens, int *next);

/* One continuous-batching step on a paged engine (opts.kv_blocks > 0): n_seqs sequences, each
 * with its own run of new tokens (sequence b's rows q_start[b] .. q_start[b + 1] - 1, at
 * positions start_pos[b] + i, its earlier positions already in its blocks): a prefill chunk, or
 * one decode token. The first n_decode sequences have exactly one row each and go through
 * attn_decode_paged (split over the keys, as tw_engine_decode); the rest through
 * attn_prefill_paged. Their K and V are stored through the block tables first (host memory,
 * [n_seqs, max_blocks], blocks already allocated by the caller). next[b] receives the greedy
 * token after sequence b's last row (meaningful when that row is its last known token). */
typedef struct {
    int n_seqs, n_decode;
    const int *q_start;   /* [n_seqs + 1], q_start[0] == 0 */
    const int *start_pos; /* [n_seqs] */
    const int *tokens;    /* [q_start[n_seqs]] */
    const int32_t *block_tables;
    int max_blocks;
} tw_engine_paged_step;
tw_status tw_engine_step_paged(tw_engine *e, const tw_engine_paged_step *p, int *next);

/* The model and the longest sequence (opts.max_seq) the engine was built for. */
const tw_model_config *tw_engine_model(const tw_engine *e);
int tw_engine_max_seq(const tw_engine *e);

/* Full-vocabulary logits [batch, vocab] of the last step (needs capture on). */
const float *tw_engine_logits(const tw_engine *e);
int tw_engine_position(const tw_engine *e, int b);
/* RMS of the residual stream after each layer, for the last step's first token (layer count
 * entries); for range checks. Needs capture on. */
const double *tw_engine_layer_rms(const tw_engine *e);
/* Turns the host copies of logits and layer RMS on or off (off while timing). */
void tw_engine_set_capture(tw_engine *e, int on);
/* Seconds spent in collectives since create (0 for one rank). */
double tw_engine_comm_seconds(const tw_engine *e);
/* Mixture of experts: tokens routed to each expert of each MoE layer since create or the last
 * tw_engine_reset_expert_load, load[moe_layer * n_experts + e] (prefill and decode, every slot
 * of every token); NULL for a model without experts. */
const int64_t *tw_engine_expert_load(const tw_engine *e, int *n_moe_layers, int *n_experts);
void tw_engine_reset_expert_load(tw_engine *e);
/* Mean number of distinct experts one decode step reached per MoE layer since that reset (what
 * a decode step reads of the experts' weights; 0 before any decode step or without experts).
 * With expert parallelism, over every rank's experts. */
double tw_engine_decode_experts_per_layer(const tw_engine *e);
/* Expert parallelism since create: seconds in the dispatch and in the combine all-to-alls, and
 * the bytes this rank sent in them (padded blocks included: what the fabric carries). */
typedef struct {
    double dispatch_s, combine_s;
    uint64_t dispatch_bytes, combine_bytes;
    uint64_t calls; /* all-to-alls */
} tw_engine_ep_stats;
tw_engine_ep_stats tw_engine_ep_stats_get(const tw_engine *e);

#endif
