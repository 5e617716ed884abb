/* The result file's writer and reader (tw_result_schema.h; every key in doc/RESULTS.md). The
 * writer emits keys in a fixed order (the order of doc/RESULTS.md), so that files diff well. */
#include "tw_result_schema.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_results.h"
#include "tw_util.h"

/* ---- writer ------------------------------------------------------------------------------------
 */

static json_t *tw_stats_json(const tw_stats *s) {
    json_t *j = json_object();
    json_object_set_new(j, "median", tw_jnum(s->median));
    json_object_set_new(j, "mean", tw_jnum(s->mean));
    json_object_set_new(j, "min", tw_jnum(s->min));
    json_object_set_new(j, "max", tw_jnum(s->max));
    json_object_set_new(j, "stddev", tw_jnum(s->stddev));
    json_object_set_new(j, "n", json_integer(s->n));
    return j;
}

json_t *tw_metrics_to_json(const tw_metrics *m) {
    json_t *j = json_object();
    json_object_set_new(j, "prefill_tokens_per_s", tw_jnum(m->prefill_tokens_per_s.median));
    json_object_set_new(j, "decode_tokens_per_s", tw_jnum(m->decode_tokens_per_s.median));
    json_object_set_new(j, "e2e_tokens_per_s", tw_jnum(m->e2e_tokens_per_s.median));
    json_object_set_new(j, "ttft_s", tw_jnum(m->ttft_s.median));
    json_t *tpot = json_object();
    json_object_set_new(tpot, "mean", tw_jnum(m->tpot_s.mean));
    json_object_set_new(tpot, "p50", tw_jnum(m->tpot_s.p50));
    json_object_set_new(tpot, "p99", tw_jnum(m->tpot_s.p99));
    json_object_set_new(tpot, "n", json_integer(m->tpot_s.n));
    json_object_set_new(j, "tpot_s", tpot);
    json_object_set_new(j, "decode_bandwidth_gbps", tw_jnum(m->decode_bandwidth_gbps));
    json_object_set_new(j, "decode_bandwidth_fraction", tw_jnum(m->decode_bandwidth_fraction));
    json_object_set_new(j, "decode_bytes_per_step", tw_jnum(m->decode_bytes_per_step));
    json_object_set_new(j, "prefill_gflops", tw_jnum(m->prefill_gflops));
    json_object_set_new(j, "prefill_mfu", tw_jnum(m->prefill_mfu));
    if (m->has_decode_flops) {
        json_object_set_new(j, "decode_flops_per_step", tw_jnum(m->decode_flops_per_step));
        json_object_set_new(j, "decode_gflops", tw_jnum(m->decode_gflops));
        json_object_set_new(j, "decode_mfu", tw_jnum(m->decode_mfu));
        json_object_set_new(j, "decode_roofline_fraction", tw_jnum(m->decode_roofline_fraction));
    }
    if (m->has_datasheet) {
        json_object_set_new(j, "decode_bandwidth_fraction_datasheet",
                            tw_jnum(m->decode_bandwidth_fraction_datasheet));
        json_object_set_new(j, "prefill_mfu_datasheet", tw_jnum(m->prefill_mfu_datasheet));
    }
    json_object_set_new(j, "collective_share", tw_jnum(m->collective_share));
    /* a fraction above 1: the ceiling was measured too low; flagged, never clamped */
    if (m->exceeds_ceiling >= 0)
        json_object_set_new(j, "exceeds_ceiling", json_boolean(m->exceeds_ceiling));
    json_t *spread = json_object();
    json_object_set_new(spread, "prefill_tokens_per_s", tw_stats_json(&m->prefill_tokens_per_s));
    json_object_set_new(spread, "decode_tokens_per_s", tw_stats_json(&m->decode_tokens_per_s));
    json_object_set_new(spread, "e2e_tokens_per_s", tw_stats_json(&m->e2e_tokens_per_s));
    json_object_set_new(spread, "ttft_s", tw_stats_json(&m->ttft_s));
    json_object_set_new(spread, "tpot_s", tw_stats_json(&m->tpot_s));
    json_object_set_new(j, "spread", spread);
    json_object_set_new(j, "repetitions_complete", json_integer(m->repetitions_complete));
    return j;
}

static json_t *tw_phase_json(const tw_energy_phase *p) {
    if (!p->present) return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "energy_j", tw_jnum(p->energy_j));
    json_object_set_new(o, "seconds", tw_jnum(p->seconds));
    json_object_set_new(o, "mean_power_w", tw_jnum(p->mean_power_w));
    json_object_set_new(o, "mean_power_w_per_device", tw_jnum(p->mean_power_w_per_device));
    json_object_set_new(o, "peak_power_w", tw_jnum(p->peak_power_w));
    json_object_set_new(o, "regions", json_integer(p->regions));
    json_object_set_new(o, "tokens", tw_jnum(p->tokens));
    json_object_set_new(o, "j_per_token", tw_jnum(p->j_per_token));
    json_object_set_new(o, "tokens_per_j", tw_jnum(p->tokens_per_j));
    if (p->has_derived)
        json_object_set_new(o, "derived", p->derived[0] ? json_string(p->derived) : json_false());
    return o;
}

json_t *tw_energy_to_json(const tw_energy *e) {
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(e->source));
    json_object_set_new(o, "assumed", json_boolean(e->assumed));
    json_object_set_new(o, "label", json_string(e->label));
    json_object_set_new(o, "method", json_string(e->method));
    json_t *fb = json_array();
    for (int i = 0; i < e->nfallbacks; i++) json_array_append_new(fb, json_string(e->fallbacks[i]));
    json_object_set_new(o, "fallbacks", fb);
    json_object_set_new(o, "devices", json_integer(e->devices));
    json_object_set_new(o, "sample_interval_ms", json_integer(e->sample_interval_ms));
    if (e->assumed)
        json_object_set_new(o, "assumed_w_per_device", tw_jnum(e->assumed_w_per_device));
    json_object_set_new(o, "provenance", e->provenance ? json_incref(e->provenance) : json_null());
    json_object_set_new(o, "prefill", tw_phase_json(&e->prefill));
    json_object_set_new(o, "decode", tw_phase_json(&e->decode));
    json_object_set_new(o, "e2e", tw_phase_json(&e->e2e));
    json_t *tr = json_object(), *tt = json_array(), *tw = json_array();
    for (size_t i = 0; i < e->ntrace; i++) {
        json_array_append_new(tt, json_real(e->trace_t_s[i]));
        json_array_append_new(tw, json_real(e->trace_power_w[i]));
    }
    json_object_set_new(tr, "t_s", tt);
    json_object_set_new(tr, "power_w", tw);
    json_object_set_new(tr, "truncated", json_boolean(e->trace_truncated));
    json_object_set_new(tr, "note", json_string(e->trace_note));
    json_object_set_new(o, "trace", tr);
    if (e->ranks > 0) {
        json_object_set_new(o, "ranks", json_integer(e->ranks));
        json_object_set_new(o, "combined", json_string(e->combined));
    }
    if (e->not_combined[0]) json_object_set_new(o, "not_combined", json_string(e->not_combined));
    return o;
}

static json_t *tw_scenario_json(const tw_result_scenario *s) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(s->model));
    json_object_set_new(j, "backend", json_string(s->backend));
    json_object_set_new(j, "threads", json_integer(s->threads));
    if (s->has_cuda) {
        json_object_set_new(j, "gemm", json_string(s->gemm));
        json_object_set_new(j, "cuda_graph", json_boolean(s->cuda_graph));
    }
    json_object_set_new(j, "dtype", json_string(s->dtype));
    json_object_set_new(j, "kv_dtype", json_string(s->kv_dtype));
    json_object_set_new(j, "batch", json_integer(s->batch));
    json_object_set_new(j, "prompt", json_integer(s->prompt));
    json_object_set_new(j, "gen", json_integer(s->gen));
    json_object_set_new(j, "warmup", json_integer(s->warmup));
    json_object_set_new(j, "reps", json_integer(s->reps));
    json_object_set_new(j, "seed", json_integer(s->seed));
    if (s->has_routing_skew) json_object_set_new(j, "routing_skew", tw_jnum(s->routing_skew));
    json_object_set_new(j, "tp", json_integer(s->tp));
    json_object_set_new(j, "devices", json_integer(s->devices));
    if (s->ep > 0) json_object_set_new(j, "ep", json_integer(s->ep));
    if (s->preset[0]) {
        json_object_set_new(j, "preset", json_string(s->preset));
        json_t *cv = json_array();
        for (int i = 0; i < s->ncaveats; i++) json_array_append_new(cv, json_string(s->caveats[i]));
        json_object_set_new(j, "caveats", cv);
    }
    return j;
}

static json_t *tw_tokens_json(const int *t, int batch, int len) {
    json_t *a = json_array();
    for (int b = 0; b < batch; b++) {
        json_t *one = json_array();
        for (int i = 0; i < len; i++)
            json_array_append_new(one, json_integer(t[(size_t)b * (size_t)len + (size_t)i]));
        json_array_append_new(a, one);
    }
    return a;
}

static json_t *tw_plan_json(const tw_result_plan *p) {
    json_t *j = json_object(), *c = json_object(), *e = json_object();
    json_object_set_new(j, "per_rank", json_boolean(p->per_rank));
    json_object_set_new(j, "available_bytes", json_integer(p->available_bytes));
    json_object_set_new(c, "weights_bytes", json_integer(p->weights_bytes));
    json_object_set_new(c, "kv_cache_bytes", json_integer(p->kv_cache_bytes));
    json_object_set_new(c, "activation_bytes", json_integer(p->activation_bytes));
    json_object_set_new(c, "total_bytes", json_integer(p->total_bytes));
    json_object_set_new(j, "combination", c);
    json_object_set_new(e, "max_batch", json_integer(p->engine_max_batch));
    json_object_set_new(e, "max_prompt", json_integer(p->engine_max_prompt));
    json_object_set_new(e, "max_seq", json_integer(p->engine_max_seq));
    json_object_set_new(e, "shared", json_boolean(p->engine_shared));
    json_object_set_new(e, "weights_bytes", json_integer(p->engine_weights_bytes));
    json_object_set_new(e, "kv_cache_bytes", json_integer(p->engine_kv_cache_bytes));
    json_object_set_new(e, "activation_bytes", json_integer(p->engine_activation_bytes));
    json_object_set_new(e, "total_bytes", json_integer(p->engine_total_bytes));
    json_object_set_new(j, "engine", e);
    return j;
}

static json_t *tw_counts_json(const long long *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *tw_experts_json(const tw_result_experts *x) {
    json_t *j = json_object(), *per = json_array();
    json_object_set_new(j, "n_experts", json_integer(x->n_experts));
    json_object_set_new(j, "experts_per_token", json_integer(x->experts_per_token));
    json_object_set_new(j, "moe_layers", json_integer(x->moe_layers));
    json_object_set_new(j, "active_params", json_integer(x->active_params));
    json_object_set_new(j, "routing_skew", tw_jnum(x->routing_skew));
    json_object_set_new(j, "load", tw_counts_json(x->load, x->load ? x->n_experts : 0));
    for (int l = 0; x->load_per_layer && l < x->moe_layers; l++)
        json_array_append_new(
            per, tw_counts_json(x->load_per_layer + (size_t)l * x->n_experts, x->n_experts));
    json_object_set_new(j, "load_per_layer", per);
    json_object_set_new(j, "max_over_mean_load", tw_jnum(x->max_over_mean_load));
    json_object_set_new(j, "decode_experts_per_layer", tw_jnum(x->decode_experts_per_layer));
    json_object_set_new(j, "decode_experts_per_layer_uniform",
                        tw_jnum(x->decode_experts_per_layer_uniform));
    if (x->has_ep) {
        const tw_result_ep *e = &x->ep;
        json_t *ej = json_object();
        json_object_set_new(ej, "ep", json_integer(e->ep));
        json_object_set_new(ej, "dispatch_s", tw_jnum(e->dispatch_s));
        json_object_set_new(ej, "combine_s", tw_jnum(e->combine_s));
        json_object_set_new(ej, "alltoall_share", tw_jnum(e->alltoall_share));
        json_object_set_new(ej, "alltoall_calls", json_integer(e->alltoall_calls));
        json_object_set_new(ej, "alltoall_bytes", json_integer(e->alltoall_bytes));
        json_object_set_new(ej, "alltoall_algbw_gbps", tw_jnum(e->alltoall_algbw_gbps));
        json_object_set_new(ej, "alltoall_busbw_gbps", tw_jnum(e->alltoall_busbw_gbps));
        json_object_set_new(j, "expert_parallel", ej);
    }
    return j;
}

/* The row's keys; `with_completeness` for a sweep's rows (a single run states it at the top). */
static json_t *tw_row_json(const tw_result_row *row, int with_completeness) {
    json_t *j = json_object();
    json_object_set_new(j, "scenario", tw_scenario_json(&row->scenario));
    if (with_completeness) {
        json_object_set_new(j, "complete", json_boolean(row->complete));
        if (!row->complete)
            json_object_set_new(j, "incomplete_reason", json_string(row->incomplete_reason));
    }
    if (row->has_dump) {
        json_t *d = json_object();
        json_object_set_new(d, "path", json_string(row->dump_path));
        json_object_set_new(d, "written", json_boolean(row->dump_written));
        if (row->dump_error[0]) json_object_set_new(d, "error", json_string(row->dump_error));
        json_object_set_new(j, "logits_dump", d);
    }
    json_object_set_new(j, "metrics", tw_metrics_to_json(&row->metrics));
    if (row->has_experts) json_object_set_new(j, "experts", tw_experts_json(&row->experts));
    json_object_set_new(j, "prompt_tokens",
                        tw_tokens_json(row->prompt_tokens, row->token_batch, row->token_prompt));
    json_object_set_new(j, "generated_tokens",
                        tw_tokens_json(row->generated_tokens, row->token_batch, row->token_gen));
    if (row->ranks_state == TW_RANKS_GATHERED) {
        json_t *a = json_array();
        for (int r = 0; r < row->nranks; r++) {
            const tw_rank_figures *f = &row->ranks[r];
            json_t *y = json_object();
            json_object_set_new(y, "rank", json_integer(f->rank));
            json_object_set_new(y, "ttft_s", tw_jnum(f->ttft_s));
            json_object_set_new(y, "tpot_p50_s", tw_jnum(f->tpot_p50_s));
            json_object_set_new(y, "decode_tokens_per_s", tw_jnum(f->decode_tokens_per_s));
            json_object_set_new(y, "collective_share", tw_jnum(f->collective_share));
            json_object_set_new(y, "mean_power_w", tw_jnum(f->mean_power_w));
            json_array_append_new(a, y);
        }
        json_object_set_new(j, "ranks", a);
    } else if (row->ranks_state == TW_RANKS_NOT_GATHERED) {
        json_object_set_new(j, "ranks", json_null());
        json_object_set_new(j, "ranks_note", json_string(row->ranks_note));
    }
    if (row->has_energy) json_object_set_new(j, "energy", tw_energy_to_json(&row->energy));
    json_object_set_new(j, "projection_headline", json_string(row->projection_headline));
    if (row->plan.present) json_object_set_new(j, "plan", tw_plan_json(&row->plan));
    /* 1.3: a serving scenario's block (harness/serve/serve_result.c) */
    if (row->serving) json_object_set_new(j, "serving", tw_serve_result_to_json(row->serving));
    return j;
}

json_t *tw_result_row_to_json(const tw_result_row *row) {
    return tw_row_json(row, 1);
}

json_t *tw_result_roofline_to_json(const tw_result_roofline *r) {
    json_t *j = json_object();
    json_object_set_new(j, "membw_gbps",
                        r->membw_gbps > 0 ? json_real(r->membw_gbps) : json_null());
    json_object_set_new(j, "membw_source", json_string(r->membw_source));
    json_object_set_new(j, "peak_gflops",
                        r->peak_gflops > 0 ? json_real(r->peak_gflops) : json_null());
    json_object_set_new(j, "peak_source", json_string(r->peak_source));
    /* schema 1.3 keys: absent from a file read from an older one, so absent when written back */
    if (r->membw_method[0]) json_object_set_new(j, "membw_method", json_string(r->membw_method));
    if (r->peak_bf16_source[0]) {
        json_object_set_new(j, "peak_bf16_gflops",
                            r->peak_bf16_gflops > 0 ? json_real(r->peak_bf16_gflops) : json_null());
        json_object_set_new(j, "peak_bf16_source", json_string(r->peak_bf16_source));
    }
    if (!r->has_datasheet) return j; /* a file of schema < 1.3 */
    json_object_set_new(j, "peak_dtype", json_string(r->peak_dtype[0] ? r->peak_dtype : "fp32"));
    json_object_set_new(j, "datasheet_membw_gbps",
                        r->datasheet_membw_gbps > 0 ? json_real(r->datasheet_membw_gbps)
                                                    : json_null());
    json_object_set_new(j, "datasheet_peak_gflops",
                        r->datasheet_peak_gflops > 0 ? json_real(r->datasheet_peak_gflops)
                                                     : json_null());
    json_object_set_new(
        j, "datasheet_source",
        json_string(r->datasheet_source[0] ? r->datasheet_source : "not looked up"));
    return j;
}

json_t *tw_result_memory_to_json(const tw_result_memory *m) {
    json_t *j = json_object();
    json_object_set_new(j, "params", json_integer(m->params));
    if (m->has_plan) {
        json_object_set_new(j, "weights_bytes", json_integer(m->weights_bytes));
        json_object_set_new(j, "kv_cache_bytes", json_integer(m->kv_cache_bytes));
        json_object_set_new(j, "activation_bytes", json_integer(m->activation_bytes));
        json_object_set_new(j, "per_rank", json_boolean(m->per_rank));
    }
    return j;
}

static json_t *tw_comm_json(const tw_result_comm *c) {
    json_t *j = json_object();
    json_object_set_new(j, "kind", json_string(c->kind));
    json_object_set_new(j, "ranks", json_integer(c->ranks));
    json_object_set_new(j, "hosts", json_integer(c->hosts));
    json_object_set_new(j, "max_ranks_per_host", json_integer(c->max_ranks_per_host));
    json_t *hl = json_array();
    for (int r = 0; r < c->nrank_hosts; r++)
        json_array_append_new(hl, json_string(c->rank_hosts[r]));
    json_object_set_new(j, "rank_hosts", hl);
    json_object_set_new(j, "devices_per_rank", json_integer(c->devices_per_rank));
    json_object_set_new(j, "timeout_s", json_real(c->timeout_s));
    return j;
}

tw_status tw_result_to_json(const tw_result *r, json_t **out) {
    int single = !strcmp(r->kind, "run");
    if (!single && strcmp(r->kind, "sweep"))
        return TW_ERR(TW_ERR_INVALID, "result: kind \"%s\" is neither run nor sweep", r->kind);
    if (single ? r->nrows != 1 : r->nrows < 1)
        return TW_ERR(TW_ERR_INVALID, "result: a %s with %d rows", r->kind, r->nrows);
    json_t *root = json_object();
    json_object_set_new(root, "schema_version", json_integer(r->schema_version));
    if (r->schema_minor > 0) /* a 1.0 file has none */
        json_object_set_new(root, "schema_minor", json_integer(r->schema_minor));
    json_object_set_new(root, "kind", json_string(r->kind));
    json_object_set_new(root, "complete", json_boolean(r->complete));
    if (!r->complete)
        json_object_set_new(root, "incomplete_reason", json_string(r->incomplete_reason));
    if (r->interrupted) {
        json_t *ij = json_object();
        json_object_set_new(ij, "signal", json_string(r->interrupted_signal));
        json_object_set_new(ij, "rank", json_integer(r->interrupted_rank));
        json_object_set_new(root, "interrupted", ij);
    }
    json_object_set_new(root, "model", r->model ? json_incref(r->model) : json_null());
    if (single) {
        json_t *row = tw_row_json(&r->rows[0], 0); /* a single run: its row's keys at the top */
        json_object_update(root, row);
        json_decref(row);
    } else {
        json_t *rows = json_array();
        for (int i = 0; i < r->nrows; i++) json_array_append_new(rows, tw_row_json(&r->rows[i], 1));
        json_object_set_new(root, "rows", rows);
    }
    json_object_set_new(root, "roofline", tw_result_roofline_to_json(&r->roofline));
    json_object_set_new(root, "memory", tw_result_memory_to_json(&r->memory));
    if (r->comm.present) json_object_set_new(root, "comm", tw_comm_json(&r->comm));
    json_object_set_new(root, "provenance",
                        r->provenance ? json_incref(r->provenance) : json_object());
    *out = root;
    return TW_OK;
}

/* ---- reader ------------------------------------------------------------------------------------
 */

/* The reader's state: the file's name for messages and the first error (later reads are no-ops). */
typedef struct {
    const char *origin;
    tw_status st;
} tw_rd;

static int tw_rd_ok(tw_rd *d) {
    return d->st == TW_OK;
}

static void tw_rd_fail(tw_rd *d, const char *path, const char *key, const char *want) {
    if (d->st) return;
    d->st = TW_ERR(TW_ERR_PARSE, "result %s: %s%s%s must be %s", d->origin, path,
                   path[0] ? "." : "", key, want);
}

/* An object member (NULL when absent or null); anything else is an error. */
static json_t *tw_rd_obj(tw_rd *d, const json_t *o, const char *path, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_object(v)) {
        tw_rd_fail(d, path, key, "an object");
        return NULL;
    }
    return v;
}

static json_t *tw_rd_arr(tw_rd *d, const json_t *o, const char *path, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_array(v)) {
        tw_rd_fail(d, path, key, "an array");
        return NULL;
    }
    return v;
}

static void tw_rd_str(tw_rd *d, const json_t *o, const char *path, const char *key, char *buf,
                      size_t n) {
    buf[0] = '\0';
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return;
    if (!json_is_string(v)) {
        tw_rd_fail(d, path, key, "a string");
        return;
    }
    if (json_string_length(v) >= n) {
        char want[64];
        snprintf(want, sizeof want, "at most %zu characters long", n - 1);
        tw_rd_fail(d, path, key, want);
        return;
    }
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
}

/* A number; absent and null are NAN (unknown). */
static double tw_rd_num(tw_rd *d, const json_t *o, const char *path, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return NAN;
    if (!json_is_number(v)) {
        tw_rd_fail(d, path, key, "a number or null");
        return NAN;
    }
    return json_number_value(v);
}

static long long tw_rd_ll(tw_rd *d, const json_t *o, const char *path, const char *key,
                          long long def) {
    json_t *v = json_object_get(o, key);
    if (!v) return def;
    if (!json_is_integer(v)) {
        tw_rd_fail(d, path, key, "an integer");
        return def;
    }
    return json_integer_value(v);
}

static int tw_rd_int(tw_rd *d, const json_t *o, const char *path, const char *key, int def) {
    long long v = tw_rd_ll(d, o, path, key, def);
    if (v < -2147483647LL || v > 2147483647LL) {
        tw_rd_fail(d, path, key, "an integer of 32 bits");
        return def;
    }
    return (int)v;
}

static int tw_rd_bool(tw_rd *d, const json_t *o, const char *path, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    if (!v) return def;
    if (!json_is_boolean(v)) {
        tw_rd_fail(d, path, key, "true or false");
        return def;
    }
    return json_is_true(v);
}

static tw_stats tw_rd_stats(tw_rd *d, const json_t *spread, const char *path, const char *key) {
    tw_stats s;
    s.n = 0;
    s.median = s.mean = s.min = s.max = s.stddev = s.p50 = s.p99 = NAN;
    json_t *o = tw_rd_obj(d, spread, path, key);
    if (!o) return s;
    char sub[256];
    snprintf(sub, sizeof sub, "%.120s.%s", path, key);
    s.median = s.p50 = tw_rd_num(d, o, sub, "median");
    s.mean = tw_rd_num(d, o, sub, "mean");
    s.min = tw_rd_num(d, o, sub, "min");
    s.max = tw_rd_num(d, o, sub, "max");
    s.stddev = tw_rd_num(d, o, sub, "stddev");
    s.n = tw_rd_int(d, o, sub, "n", 0);
    return s;
}

static void tw_rd_metrics(tw_rd *d, const json_t *m, const char *path, tw_metrics *out) {
    memset(out, 0, sizeof *out);
    char sp[256];
    snprintf(sp, sizeof sp, "%.120s.spread", path);
    json_t *spread = tw_rd_obj(d, m, path, "spread");
    out->prefill_tokens_per_s = tw_rd_stats(d, spread, sp, "prefill_tokens_per_s");
    out->decode_tokens_per_s = tw_rd_stats(d, spread, sp, "decode_tokens_per_s");
    out->e2e_tokens_per_s = tw_rd_stats(d, spread, sp, "e2e_tokens_per_s");
    out->ttft_s = tw_rd_stats(d, spread, sp, "ttft_s");
    out->tpot_s = tw_rd_stats(d, spread, sp, "tpot_s");
    /* the medians the file states are the figures; the spread is their context */
    out->prefill_tokens_per_s.median = tw_rd_num(d, m, path, "prefill_tokens_per_s");
    out->decode_tokens_per_s.median = tw_rd_num(d, m, path, "decode_tokens_per_s");
    out->e2e_tokens_per_s.median = tw_rd_num(d, m, path, "e2e_tokens_per_s");
    out->ttft_s.median = tw_rd_num(d, m, path, "ttft_s");
    char tp[256];
    snprintf(tp, sizeof tp, "%.120s.tpot_s", path);
    json_t *tpot = tw_rd_obj(d, m, path, "tpot_s");
    if (tpot) {
        out->tpot_s.mean = tw_rd_num(d, tpot, tp, "mean");
        out->tpot_s.p50 = tw_rd_num(d, tpot, tp, "p50");
        out->tpot_s.p99 = tw_rd_num(d, tpot, tp, "p99");
        out->tpot_s.n = tw_rd_int(d, tpot, tp, "n", out->tpot_s.n);
        if (!isfinite(out->tpot_s.median)) out->tpot_s.median = out->tpot_s.p50;
    }
    out->decode_bandwidth_gbps = tw_rd_num(d, m, path, "decode_bandwidth_gbps");
    out->decode_bandwidth_fraction = tw_rd_num(d, m, path, "decode_bandwidth_fraction");
    out->decode_bytes_per_step = tw_rd_num(d, m, path, "decode_bytes_per_step");
    out->prefill_flops = NAN; /* not in the file: prefill GFLOP/s x TTFT */
    out->prefill_gflops = tw_rd_num(d, m, path, "prefill_gflops");
    out->prefill_mfu = tw_rd_num(d, m, path, "prefill_mfu");
    out->decode_flops_per_step = tw_rd_num(d, m, path, "decode_flops_per_step");
    out->decode_gflops = tw_rd_num(d, m, path, "decode_gflops");
    out->decode_mfu = tw_rd_num(d, m, path, "decode_mfu");
    out->decode_roofline_fraction = tw_rd_num(d, m, path, "decode_roofline_fraction");
    out->has_decode_flops = json_object_get(m, "decode_roofline_fraction") != NULL;
    out->decode_bandwidth_fraction_datasheet =
        tw_rd_num(d, m, path, "decode_bandwidth_fraction_datasheet");
    out->prefill_mfu_datasheet = tw_rd_num(d, m, path, "prefill_mfu_datasheet");
    out->has_datasheet = json_object_get(m, "prefill_mfu_datasheet") != NULL;
    out->collective_share = tw_rd_num(d, m, path, "collective_share");
    out->exceeds_ceiling = tw_rd_bool(d, m, path, "exceeds_ceiling", -1);
    out->repetitions_complete = tw_rd_int(d, m, path, "repetitions_complete", out->ttft_s.n);
}

static void tw_phase_init(tw_energy_phase *p) {
    memset(p, 0, sizeof *p);
    p->energy_j = p->seconds = p->mean_power_w = p->mean_power_w_per_device = NAN;
    p->peak_power_w = p->tokens = p->j_per_token = p->tokens_per_j = NAN;
}

void tw_energy_init(tw_energy *e) {
    memset(e, 0, sizeof *e);
    e->assumed_w_per_device = NAN;
    tw_phase_init(&e->prefill);
    tw_phase_init(&e->decode);
    tw_phase_init(&e->e2e);
}

static void tw_rd_phase(tw_rd *d, const json_t *e, const char *path, const char *key,
                        tw_energy_phase *p) {
    tw_phase_init(p);
    json_t *o = tw_rd_obj(d, e, path, key);
    if (!o) return;
    char sub[256];
    snprintf(sub, sizeof sub, "%.120s.%s", path, key);
    p->present = 1;
    p->energy_j = tw_rd_num(d, o, sub, "energy_j");
    p->seconds = tw_rd_num(d, o, sub, "seconds");
    p->mean_power_w = tw_rd_num(d, o, sub, "mean_power_w");
    p->mean_power_w_per_device = tw_rd_num(d, o, sub, "mean_power_w_per_device");
    p->peak_power_w = tw_rd_num(d, o, sub, "peak_power_w");
    p->regions = tw_rd_int(d, o, sub, "regions", 0);
    p->tokens = tw_rd_num(d, o, sub, "tokens");
    p->j_per_token = tw_rd_num(d, o, sub, "j_per_token");
    p->tokens_per_j = tw_rd_num(d, o, sub, "tokens_per_j");
    json_t *dv = json_object_get(o, "derived");
    if (dv) {
        p->has_derived = 1;
        if (json_is_string(dv))
            tw_rd_str(d, o, sub, "derived", p->derived, sizeof p->derived);
        else if (!json_is_false(dv))
            tw_rd_fail(d, sub, "derived", "a string or false");
    }
}

static void tw_rd_energy(tw_rd *d, const json_t *e, const char *path, tw_energy *out) {
    tw_energy_init(out);
    tw_rd_str(d, e, path, "source", out->source, sizeof out->source);
    out->assumed = tw_rd_bool(d, e, path, "assumed", !strcmp(out->source, "assumed"));
    tw_rd_str(d, e, path, "label", out->label, sizeof out->label);
    tw_rd_str(d, e, path, "method", out->method, sizeof out->method);
    json_t *fb = tw_rd_arr(d, e, path, "fallbacks");
    size_t i;
    json_t *v;
    json_array_foreach(fb, i, v) {
        if (!json_is_string(v) || i >= 3 || json_string_length(v) >= sizeof out->fallbacks[0]) {
            tw_rd_fail(d, path, "fallbacks", "at most 3 strings of at most 511 characters");
            break;
        }
        memcpy(out->fallbacks[i], json_string_value(v), json_string_length(v) + 1);
        out->nfallbacks++;
    }
    out->devices = tw_rd_int(d, e, path, "devices", 1);
    out->sample_interval_ms = tw_rd_int(d, e, path, "sample_interval_ms", 0);
    out->assumed_w_per_device = tw_rd_num(d, e, path, "assumed_w_per_device");
    json_t *pv = json_object_get(e, "provenance");
    if (pv && !json_is_null(pv)) out->provenance = json_incref(pv);
    tw_rd_phase(d, e, path, "prefill", &out->prefill);
    tw_rd_phase(d, e, path, "decode", &out->decode);
    tw_rd_phase(d, e, path, "e2e", &out->e2e);
    char tp[256];
    snprintf(tp, sizeof tp, "%.120s.trace", path);
    json_t *tr = tw_rd_obj(d, e, path, "trace");
    if (tr) {
        json_t *tt = tw_rd_arr(d, tr, tp, "t_s"), *tw = tw_rd_arr(d, tr, tp, "power_w");
        size_t n = json_array_size(tt);
        if (n != json_array_size(tw)) {
            tw_rd_fail(d, tp, "t_s", "as long as power_w");
        } else if (n) {
            out->trace_t_s = malloc(sizeof(double) * n);
            out->trace_power_w = malloc(sizeof(double) * n);
            if (!out->trace_t_s || !out->trace_power_w) {
                if (!d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: power trace", d->origin);
            } else {
                out->ntrace = n;
                for (size_t k = 0; k < n; k++) {
                    json_t *a = json_array_get(tt, k), *b = json_array_get(tw, k);
                    if (!json_is_number(a) || !json_is_number(b)) {
                        tw_rd_fail(d, tp, "t_s and power_w", "arrays of numbers");
                        break;
                    }
                    out->trace_t_s[k] = json_number_value(a);
                    out->trace_power_w[k] = json_number_value(b);
                }
            }
        }
        out->trace_truncated = tw_rd_bool(d, tr, tp, "truncated", 0);
        tw_rd_str(d, tr, tp, "note", out->trace_note, sizeof out->trace_note);
    }
    out->ranks = tw_rd_int(d, e, path, "ranks", 0);
    tw_rd_str(d, e, path, "combined", out->combined, sizeof out->combined);
    tw_rd_str(d, e, path, "not_combined", out->not_combined, sizeof out->not_combined);
}

tw_status tw_energy_from_json(const json_t *j, const char *origin, tw_energy *out) {
    tw_rd d = {origin, TW_OK};
    tw_rd_energy(&d, j, "energy", out);
    if (d.st) tw_energy_free(out);
    return d.st;
}

static char **tw_rd_strings(tw_rd *d, const json_t *o, const char *path, const char *key, int *n) {
    *n = 0;
    json_t *a = tw_rd_arr(d, o, path, key);
    if (!a || !json_array_size(a)) return NULL;
    char **s = calloc(json_array_size(a), sizeof *s);
    if (!s) {
        if (!d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: %s.%s", d->origin, path, key);
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_string(v)) {
            tw_rd_fail(d, path, key, "an array of strings");
            break;
        }
        if (!(s[i] = strdup(json_string_value(v)))) {
            if (!d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: %s.%s", d->origin, path, key);
            break;
        }
        (*n)++;
    }
    return s;
}

static void tw_rd_scenario(tw_rd *d, const json_t *sc, const char *path, tw_result_scenario *s) {
    tw_rd_str(d, sc, path, "model", s->model, sizeof s->model);
    tw_rd_str(d, sc, path, "backend", s->backend, sizeof s->backend);
    s->threads = tw_rd_int(d, sc, path, "threads", 0);
    s->has_cuda = json_object_get(sc, "gemm") != NULL;
    tw_rd_str(d, sc, path, "gemm", s->gemm, sizeof s->gemm);
    s->cuda_graph = tw_rd_bool(d, sc, path, "cuda_graph", 0);
    tw_rd_str(d, sc, path, "dtype", s->dtype, sizeof s->dtype);
    tw_rd_str(d, sc, path, "kv_dtype", s->kv_dtype, sizeof s->kv_dtype);
    s->batch = tw_rd_int(d, sc, path, "batch", 0);
    s->prompt = tw_rd_int(d, sc, path, "prompt", 0);
    s->gen = tw_rd_int(d, sc, path, "gen", 0);
    s->warmup = tw_rd_int(d, sc, path, "warmup", 0);
    s->reps = tw_rd_int(d, sc, path, "reps", 0);
    s->seed = tw_rd_ll(d, sc, path, "seed", 0);
    s->has_routing_skew = json_object_get(sc, "routing_skew") != NULL;
    s->routing_skew = tw_rd_num(d, sc, path, "routing_skew");
    s->tp = tw_rd_int(d, sc, path, "tp", 1);
    s->devices = tw_rd_int(d, sc, path, "devices", s->tp);
    s->ep = tw_rd_int(d, sc, path, "ep", 0);
    tw_rd_str(d, sc, path, "preset", s->preset, sizeof s->preset);
    s->caveats = tw_rd_strings(d, sc, path, "caveats", &s->ncaveats);
    if (tw_rd_ok(d) && (s->batch < 1 || s->devices < 1))
        d->st = TW_ERR(TW_ERR_PARSE, "result %s: %s.batch %d / devices %d must be >= 1", d->origin,
                       path, s->batch, s->devices);
}

/* token ids [batch][len] (all inner arrays of one length) */
static int *tw_rd_tokens(tw_rd *d, const json_t *o, const char *path, const char *key, int *batch,
                         int *len) {
    json_t *a = tw_rd_arr(d, o, path, key);
    if (!a || !json_array_size(a)) return NULL;
    size_t nb = json_array_size(a), nl = json_array_size(json_array_get(a, 0));
    int *t = malloc(sizeof(int) * (nb * nl > 0 ? nb * nl : 1));
    if (!t) {
        if (!d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: %s", d->origin, key);
        return NULL;
    }
    for (size_t b = 0; b < nb; b++) {
        json_t *one = json_array_get(a, b);
        if (!json_is_array(one) || json_array_size(one) != nl) {
            tw_rd_fail(d, path, key, "an array of equally long arrays of token ids");
            free(t);
            return NULL;
        }
        for (size_t i = 0; i < nl; i++) {
            json_t *v = json_array_get(one, i);
            if (!json_is_integer(v)) {
                tw_rd_fail(d, path, key, "arrays of integer token ids");
                free(t);
                return NULL;
            }
            t[b * nl + i] = (int)json_integer_value(v);
        }
    }
    *batch = (int)nb;
    *len = (int)nl;
    return t;
}

static void tw_rd_plan(tw_rd *d, const json_t *p, const char *path, tw_result_plan *out) {
    char cp[256], ep[256];
    snprintf(cp, sizeof cp, "%.120s.combination", path);
    snprintf(ep, sizeof ep, "%.120s.engine", path);
    out->present = 1;
    out->per_rank = tw_rd_bool(d, p, path, "per_rank", 0);
    out->available_bytes = tw_rd_ll(d, p, path, "available_bytes", 0);
    json_t *c = tw_rd_obj(d, p, path, "combination"), *e = tw_rd_obj(d, p, path, "engine");
    out->weights_bytes = tw_rd_ll(d, c, cp, "weights_bytes", 0);
    out->kv_cache_bytes = tw_rd_ll(d, c, cp, "kv_cache_bytes", 0);
    out->activation_bytes = tw_rd_ll(d, c, cp, "activation_bytes", 0);
    out->total_bytes = tw_rd_ll(d, c, cp, "total_bytes", 0);
    out->engine_max_batch = tw_rd_int(d, e, ep, "max_batch", 0);
    out->engine_max_prompt = tw_rd_int(d, e, ep, "max_prompt", 0);
    out->engine_max_seq = tw_rd_int(d, e, ep, "max_seq", 0);
    out->engine_shared = tw_rd_bool(d, e, ep, "shared", 0);
    out->engine_weights_bytes = tw_rd_ll(d, e, ep, "weights_bytes", 0);
    out->engine_kv_cache_bytes = tw_rd_ll(d, e, ep, "kv_cache_bytes", 0);
    out->engine_activation_bytes = tw_rd_ll(d, e, ep, "activation_bytes", 0);
    out->engine_total_bytes = tw_rd_ll(d, e, ep, "total_bytes", 0);
}

/* n integers of a[] into v (the array must hold exactly n) */
static void tw_rd_counts(tw_rd *d, const json_t *a, const char *path, const char *key, long long *v,
                         int n) {
    if (!json_is_array(a) || json_array_size(a) != (size_t)n) {
        char want[96];
        snprintf(want, sizeof want, "an array of %d integers (n_experts)", n);
        tw_rd_fail(d, path, key, want);
        return;
    }
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(a, (size_t)i);
        if (!json_is_integer(x)) {
            tw_rd_fail(d, path, key, "an array of integers");
            return;
        }
        v[i] = json_integer_value(x);
    }
}

static void tw_rd_experts(tw_rd *d, const json_t *o, const char *path, tw_result_experts *x) {
    x->n_experts = tw_rd_int(d, o, path, "n_experts", 0);
    x->experts_per_token = tw_rd_int(d, o, path, "experts_per_token", 0);
    x->moe_layers = tw_rd_int(d, o, path, "moe_layers", 0);
    x->active_params = tw_rd_ll(d, o, path, "active_params", -1);
    x->routing_skew = tw_rd_num(d, o, path, "routing_skew");
    x->max_over_mean_load = tw_rd_num(d, o, path, "max_over_mean_load");
    x->decode_experts_per_layer = tw_rd_num(d, o, path, "decode_experts_per_layer");
    x->decode_experts_per_layer_uniform = tw_rd_num(d, o, path, "decode_experts_per_layer_uniform");
    if (!tw_rd_ok(d)) return;
    if (x->n_experts < 1 || x->n_experts > 1 << 20 || x->moe_layers < 0 ||
        x->moe_layers > 1 << 16) {
        tw_rd_fail(d, path, "n_experts", "at least 1, with moe_layers >= 0");
        return;
    }
    json_t *load = tw_rd_arr(d, o, path, "load"), *per = tw_rd_arr(d, o, path, "load_per_layer");
    size_t ne = (size_t)x->n_experts, nl = (size_t)x->moe_layers;
    x->load = calloc(ne, sizeof *x->load);
    x->load_per_layer = calloc(nl * ne > 0 ? nl * ne : 1, sizeof *x->load_per_layer);
    if (!x->load || !x->load_per_layer) {
        if (!d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: experts", d->origin);
        return;
    }
    tw_rd_counts(d, load, path, "load", x->load, x->n_experts);
    if (tw_rd_ok(d) && (!per || json_array_size(per) != nl)) {
        tw_rd_fail(d, path, "load_per_layer", "an array of moe_layers arrays");
        return;
    }
    for (size_t l = 0; l < nl && tw_rd_ok(d); l++)
        tw_rd_counts(d, json_array_get(per, l), path, "load_per_layer", x->load_per_layer + l * ne,
                     x->n_experts);
    json_t *ej = tw_rd_obj(d, o, path, "expert_parallel");
    if (ej) {
        char p[256];
        snprintf(p, sizeof p, "%.120s.expert_parallel", path);
        tw_result_ep *e = &x->ep;
        x->has_ep = 1;
        e->ep = tw_rd_int(d, ej, p, "ep", 0);
        e->dispatch_s = tw_rd_num(d, ej, p, "dispatch_s");
        e->combine_s = tw_rd_num(d, ej, p, "combine_s");
        e->alltoall_share = tw_rd_num(d, ej, p, "alltoall_share");
        e->alltoall_calls = tw_rd_ll(d, ej, p, "alltoall_calls", 0);
        e->alltoall_bytes = tw_rd_ll(d, ej, p, "alltoall_bytes", 0);
        e->alltoall_algbw_gbps = tw_rd_num(d, ej, p, "alltoall_algbw_gbps");
        e->alltoall_busbw_gbps = tw_rd_num(d, ej, p, "alltoall_busbw_gbps");
    }
}

/* One row from o (a sweep's element, or the top level of a single run: then `top` gives the
 * completeness). */
static void tw_rd_row(tw_rd *d, const json_t *o, const json_t *top, const char *path,
                      tw_result_row *row) {
    memset(row, 0, sizeof *row);
    char p[256];
    json_t *sc = tw_rd_obj(d, o, path, "scenario"), *m = tw_rd_obj(d, o, path, "metrics");
    if (tw_rd_ok(d) && (!sc || !m)) {
        d->st = TW_ERR(TW_ERR_PARSE, "result %s: %s%smissing \"scenario\" or \"metrics\"",
                       d->origin, path, path[0] ? ": " : "");
        return;
    }
    if (!tw_rd_ok(d)) return;
    snprintf(p, sizeof p, "%.120s%sscenario", path, path[0] ? "." : "");
    tw_rd_scenario(d, sc, p, &row->scenario);
    const json_t *cs = json_object_get(o, "complete") ? o : top;
    row->complete = tw_rd_bool(d, cs, path, "complete", 1);
    tw_rd_str(d, cs, path, "incomplete_reason", row->incomplete_reason,
              sizeof row->incomplete_reason);
    json_t *dj = tw_rd_obj(d, o, path, "logits_dump");
    if (dj) {
        snprintf(p, sizeof p, "%.120s%slogits_dump", path, path[0] ? "." : "");
        row->has_dump = 1;
        tw_rd_str(d, dj, p, "path", row->dump_path, sizeof row->dump_path);
        row->dump_written = tw_rd_bool(d, dj, p, "written", 0);
        tw_rd_str(d, dj, p, "error", row->dump_error, sizeof row->dump_error);
    }
    snprintf(p, sizeof p, "%.120s%smetrics", path, path[0] ? "." : "");
    tw_rd_metrics(d, m, p, &row->metrics);
    json_t *xj = tw_rd_obj(d, o, path, "experts");
    if (xj) {
        snprintf(p, sizeof p, "%.120s%sexperts", path, path[0] ? "." : "");
        row->has_experts = 1;
        tw_rd_experts(d, xj, p, &row->experts);
    }
    int pb = 0, gb = 0;
    row->prompt_tokens = tw_rd_tokens(d, o, path, "prompt_tokens", &pb, &row->token_prompt);
    row->generated_tokens = tw_rd_tokens(d, o, path, "generated_tokens", &gb, &row->token_gen);
    row->token_batch = pb ? pb : gb;
    if (pb && gb && pb != gb) tw_rd_fail(d, path, "generated_tokens", "one array per prompt");
    json_t *rk = json_object_get(o, "ranks");
    if (rk && json_is_null(rk)) {
        row->ranks_state = TW_RANKS_NOT_GATHERED;
        tw_rd_str(d, o, path, "ranks_note", row->ranks_note, sizeof row->ranks_note);
    } else if (rk) {
        json_t *a = tw_rd_arr(d, o, path, "ranks");
        row->ranks_state = TW_RANKS_GATHERED;
        row->nranks = (int)json_array_size(a);
        row->ranks = calloc(row->nranks ? (size_t)row->nranks : 1, sizeof *row->ranks);
        if (!row->ranks && !d->st) d->st = TW_ERR(TW_ERR_NOMEM, "result %s: ranks", d->origin);
        size_t i;
        json_t *y;
        snprintf(p, sizeof p, "%.120s%sranks[]", path, path[0] ? "." : "");
        json_array_foreach(a, i, y) {
            if (!row->ranks) break;
            if (!json_is_object(y)) {
                tw_rd_fail(d, path, "ranks", "an array of objects");
                break;
            }
            tw_rank_figures *f = &row->ranks[i];
            f->rank = tw_rd_int(d, y, p, "rank", (int)i);
            f->ttft_s = tw_rd_num(d, y, p, "ttft_s");
            f->tpot_p50_s = tw_rd_num(d, y, p, "tpot_p50_s");
            f->decode_tokens_per_s = tw_rd_num(d, y, p, "decode_tokens_per_s");
            f->collective_share = tw_rd_num(d, y, p, "collective_share");
            f->mean_power_w = tw_rd_num(d, y, p, "mean_power_w");
        }
    }
    json_t *en = tw_rd_obj(d, o, path, "energy");
    if (en) {
        snprintf(p, sizeof p, "%.120s%senergy", path, path[0] ? "." : "");
        row->has_energy = 1;
        tw_rd_energy(d, en, p, &row->energy);
    }
    tw_rd_str(d, o, path, "projection_headline", row->projection_headline,
              sizeof row->projection_headline);
    json_t *pl = tw_rd_obj(d, o, path, "plan");
    if (pl) {
        snprintf(p, sizeof p, "%.120s%splan", path, path[0] ? "." : "");
        tw_rd_plan(d, pl, p, &row->plan);
    }
    json_t *sv = tw_rd_obj(d, o, path, "serving");
    if (sv && tw_rd_ok(d)) {
        row->serving = calloc(1, sizeof *row->serving);
        if (!row->serving) {
            d->st = TW_ERR(TW_ERR_NOMEM, "result %s: serving", d->origin);
            return;
        }
        tw_status st = tw_serve_result_from_json(sv, d->origin, row->serving);
        if (st) d->st = path[0] ? tw_error_ctx(st, "in %s", path) : st;
    }
}

tw_status tw_result_from_json(const json_t *root, const char *origin, tw_result *r) {
    memset(r, 0, sizeof *r);
    tw_rd d = {origin, TW_OK};
    if (!json_is_object(root)) return TW_ERR(TW_ERR_PARSE, "result %s: not a JSON object", origin);
    json_t *ver = json_object_get(root, "schema_version");
    if (!json_is_integer(ver))
        return TW_ERR(TW_ERR_PARSE,
                      "result %s: no integer schema_version: not a tokwatt result file", origin);
    if (json_integer_value(ver) != TW_RESULT_SCHEMA_MAJOR)
        return TW_ERR(TW_ERR_PARSE,
                      "result %s: schema_version %lld is not supported: this tokwatt reads "
                      "schema_version %d (doc/RESULTS.md); a newer tokwatt wrote it, or it is "
                      "not a tokwatt result",
                      origin, (long long)json_integer_value(ver), TW_RESULT_SCHEMA_MAJOR);
    r->schema_version = TW_RESULT_SCHEMA_MAJOR;
    r->schema_minor = tw_rd_int(&d, root, "", "schema_minor", 0);
    tw_rd_str(&d, root, "", "kind", r->kind, sizeof r->kind);
    if (tw_rd_ok(&d) && strcmp(r->kind, "run") && strcmp(r->kind, "sweep"))
        return TW_ERR(TW_ERR_PARSE, "result %s: kind \"%s\" is neither \"run\" nor \"sweep\"",
                      origin, r->kind);
    r->complete = tw_rd_bool(&d, root, "", "complete", 1);
    tw_rd_str(&d, root, "", "incomplete_reason", r->incomplete_reason, sizeof r->incomplete_reason);
    json_t *ij = tw_rd_obj(&d, root, "", "interrupted");
    if (ij) {
        r->interrupted = 1;
        tw_rd_str(&d, ij, "interrupted", "signal", r->interrupted_signal,
                  sizeof r->interrupted_signal);
        r->interrupted_rank = tw_rd_int(&d, ij, "interrupted", "rank", 0);
    }
    json_t *mj = json_object_get(root, "model");
    if (mj && !json_is_null(mj)) r->model = json_incref(mj);
    if (tw_rd_ok(&d) && !strcmp(r->kind, "run")) {
        r->rows = calloc(1, sizeof *r->rows);
        if (!r->rows) {
            d.st = TW_ERR(TW_ERR_NOMEM, "result %s", origin);
        } else {
            r->nrows = 1;
            tw_rd_row(&d, root, root, "", &r->rows[0]);
        }
    } else if (tw_rd_ok(&d)) {
        json_t *rows = tw_rd_arr(&d, root, "", "rows");
        if (tw_rd_ok(&d) && json_array_size(rows) == 0) {
            d.st =
                TW_ERR(TW_ERR_PARSE, "result %s: a sweep needs a non-empty \"rows\" array", origin);
        } else if (tw_rd_ok(&d)) {
            r->rows = calloc(json_array_size(rows), sizeof *r->rows);
            if (!r->rows) d.st = TW_ERR(TW_ERR_NOMEM, "result %s", origin);
            size_t i;
            json_t *row;
            json_array_foreach(rows, i, row) {
                if (!tw_rd_ok(&d)) break;
                char p[32];
                snprintf(p, sizeof p, "rows[%zu]", i);
                if (!json_is_object(row)) {
                    tw_rd_fail(&d, "", p, "an object");
                    break;
                }
                r->nrows++;
                tw_rd_row(&d, row, row, p, &r->rows[i]);
            }
        }
    }
    json_t *roof = tw_rd_obj(&d, root, "", "roofline");
    r->roofline.membw_gbps = r->roofline.peak_gflops = r->roofline.peak_bf16_gflops = NAN;
    r->roofline.datasheet_membw_gbps = r->roofline.datasheet_peak_gflops = NAN;
    if (roof) {
        r->roofline.present = 1;
        r->roofline.membw_gbps = tw_rd_num(&d, roof, "roofline", "membw_gbps");
        r->roofline.peak_gflops = tw_rd_num(&d, roof, "roofline", "peak_gflops");
        tw_rd_str(&d, roof, "roofline", "membw_source", r->roofline.membw_source,
                  sizeof r->roofline.membw_source);
        tw_rd_str(&d, roof, "roofline", "peak_source", r->roofline.peak_source,
                  sizeof r->roofline.peak_source);
        tw_rd_str(&d, roof, "roofline", "membw_method", r->roofline.membw_method,
                  sizeof r->roofline.membw_method);
        r->roofline.peak_bf16_gflops = tw_rd_num(&d, roof, "roofline", "peak_bf16_gflops");
        tw_rd_str(&d, roof, "roofline", "peak_bf16_source", r->roofline.peak_bf16_source,
                  sizeof r->roofline.peak_bf16_source);
        /* schema 1.3 (absent before) */
        if (json_object_get(roof, "peak_dtype"))
            tw_rd_str(&d, roof, "roofline", "peak_dtype", r->roofline.peak_dtype,
                      sizeof r->roofline.peak_dtype);
        r->roofline.datasheet_membw_gbps = tw_rd_num(&d, roof, "roofline", "datasheet_membw_gbps");
        r->roofline.datasheet_peak_gflops =
            tw_rd_num(&d, roof, "roofline", "datasheet_peak_gflops");
        r->roofline.has_datasheet = json_object_get(roof, "datasheet_source") != NULL;
        if (r->roofline.has_datasheet)
            tw_rd_str(&d, roof, "roofline", "datasheet_source", r->roofline.datasheet_source,
                      sizeof r->roofline.datasheet_source);
    }
    json_t *mem = tw_rd_obj(&d, root, "", "memory");
    r->memory.params = -1;
    if (mem) {
        r->memory.present = 1;
        r->memory.params = tw_rd_ll(&d, mem, "memory", "params", -1);
        r->memory.has_plan = json_object_get(mem, "weights_bytes") != NULL;
        r->memory.weights_bytes = tw_rd_ll(&d, mem, "memory", "weights_bytes", 0);
        r->memory.kv_cache_bytes = tw_rd_ll(&d, mem, "memory", "kv_cache_bytes", 0);
        r->memory.activation_bytes = tw_rd_ll(&d, mem, "memory", "activation_bytes", 0);
        r->memory.per_rank = tw_rd_bool(&d, mem, "memory", "per_rank", 0);
    }
    json_t *cj = tw_rd_obj(&d, root, "", "comm");
    if (cj) {
        tw_result_comm *c = &r->comm;
        c->present = 1;
        tw_rd_str(&d, cj, "comm", "kind", c->kind, sizeof c->kind);
        c->ranks = tw_rd_int(&d, cj, "comm", "ranks", 0);
        c->hosts = tw_rd_int(&d, cj, "comm", "hosts", 0);
        c->max_ranks_per_host = tw_rd_int(&d, cj, "comm", "max_ranks_per_host", 0);
        c->rank_hosts = tw_rd_strings(&d, cj, "comm", "rank_hosts", &c->nrank_hosts);
        c->devices_per_rank = tw_rd_int(&d, cj, "comm", "devices_per_rank", 1);
        c->timeout_s = tw_rd_num(&d, cj, "comm", "timeout_s");
    }
    json_t *pv = tw_rd_obj(&d, root, "", "provenance");
    if (pv) r->provenance = json_incref(pv);
    if (d.st) tw_result_free(r);
    return d.st;
}

tw_status tw_result_read_file(const char *path, tw_result *out) {
    json_t *root = NULL;
    memset(out, 0, sizeof *out);
    tw_status st = tw_json_load_file(path, &root);
    if (st) return tw_error_ctx(st, "result file");
    st = tw_result_from_json(root, path, out);
    json_decref(root);
    return st;
}

const char *tw_result_provenance_str(const tw_result *r, const char *key) {
    json_t *v = json_object_get(r->provenance, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* ---- ownership ---------------------------------------------------------------------------------
 */

static void tw_strings_free(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

void tw_energy_free(tw_energy *e) {
    json_decref(e->provenance);
    free(e->trace_t_s);
    free(e->trace_power_w);
    e->provenance = NULL;
    e->trace_t_s = e->trace_power_w = NULL;
    e->ntrace = 0;
}

void tw_result_row_free(tw_result_row *row) {
    tw_strings_free(row->scenario.caveats, row->scenario.ncaveats);
    row->scenario.caveats = NULL;
    row->scenario.ncaveats = 0;
    free(row->prompt_tokens);
    free(row->generated_tokens);
    free(row->ranks);
    row->prompt_tokens = row->generated_tokens = NULL;
    row->ranks = NULL;
    free(row->experts.load);
    free(row->experts.load_per_layer);
    row->experts.load = row->experts.load_per_layer = NULL;
    tw_energy_free(&row->energy);
    if (row->serving) {
        tw_serve_result_free(row->serving);
        free(row->serving);
        row->serving = NULL;
    }
}

void tw_result_free(tw_result *r) {
    for (int i = 0; i < r->nrows; i++) tw_result_row_free(&r->rows[i]);
    free(r->rows);
    r->rows = NULL;
    r->nrows = 0;
    tw_strings_free(r->comm.rank_hosts, r->comm.nrank_hosts);
    r->comm.rank_hosts = NULL;
    r->comm.nrank_hosts = 0;
    json_decref(r->model);
    json_decref(r->provenance);
    r->model = r->provenance = NULL;
}

tw_status tw_result_scenario_set_caveats(tw_result_scenario *s, const char *const *caveats, int n) {
    s->caveats = n ? calloc((size_t)n, sizeof *s->caveats) : NULL;
    s->ncaveats = 0;
    if (n && !s->caveats) return TW_ERR(TW_ERR_NOMEM, "scenario caveats");
    for (int i = 0; i < n; i++) {
        if (!(s->caveats[i] = strdup(caveats[i]))) return TW_ERR(TW_ERR_NOMEM, "scenario caveats");
        s->ncaveats++;
    }
    return TW_OK;
}
