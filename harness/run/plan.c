/* Planning a run: every combination once, its memory, the engines combinations share, the room
 * the outputs need (tw_run.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/run/run_impl.h"

void tw_run_combo_name(const tw_run_combo *c, int with_tp, char *buf, size_t n) {
    char tp[24] = "";
    if (with_tp) snprintf(tp, sizeof tp, "tp=%d ", c->tp);
    snprintf(buf, n, "%sdtype=%s kv=%s batch=%d prompt=%d gen=%d", tp, tw_dtype_name(c->dtype),
             tw_dtype_name(c->kv_dtype), c->batch, c->prompt, c->gen);
}

void tw_run_row_name(const tw_result_row *row, int with_tp, char *buf, size_t n) {
    const tw_result_scenario *s = &row->scenario;
    char tp[24] = "";
    if (with_tp) snprintf(tp, sizeof tp, "tp=%d ", s->tp);
    snprintf(buf, n, "%sdtype=%s kv=%s batch=%d prompt=%d gen=%d", tp, s->dtype, s->kv_dtype,
             s->batch, s->prompt, s->gen);
}

void tw_run_output_bytes(const tw_run_spec *s, const tw_model_config *cfg, uint64_t *result,
                         uint64_t *dump) {
    /* the result file: its fixed part, token ids and a power trace; ~12 bytes per token id in
     * indented JSON, 16 KiB of figures per row */
    uint64_t tokens = 0;
    for (int b = 0; b < s->nbatch; b++)
        for (int q = 0; q < s->nprompt; q++)
            for (int n = 0; n < s->ngen; n++)
                tokens += (uint64_t)s->batch[b] * (uint64_t)(s->prompt[q] + s->gen[n]);
    uint64_t rows = (uint64_t)s->ntp * (uint64_t)s->ndtype;
    /* a mixture of experts' load per layer and expert, ~12 bytes each, in every row */
    uint64_t experts = (uint64_t)tw_model_moe_layers(cfg) * (uint64_t)(cfg->n_experts + 1) * 12u *
                       (uint64_t)(s->nbatch * s->nprompt * s->ngen);
    *result = (16u << 20) + rows * (tokens * 12 + (16u << 10) + experts);
    /* the logits dump: steps x batch x vocab float32 and a header */
    *dump = s->dump
                ? (uint64_t)s->gen[0] * (uint64_t)s->batch[0] * (uint64_t)cfg->vocab * 4u + 4096u
                : 0;
}

int tw_run_degree_ranks(const tw_run_spec *s, int tp) {
    return s->ep > tp ? s->ep : tp;
}

tw_status tw_run_spec_check_ep(const tw_run_spec *s) {
    if (s->ep > 1 && (s->ntp != 1 || (s->tp[0] != 1 && s->tp[0] != s->ep)))
        return TW_ERR(TW_ERR_INVALID,
                      "--ep %d goes with one --tp, 1 (attention replicated) or %d (attention "
                      "tensor-parallel over the same ranks)",
                      s->ep, s->ep);
    return TW_OK;
}

tw_engine_opts tw_run_plan_engine_opts(const tw_run_spec *s, const tw_model_config *cfg,
                                       tw_backend *be, int rank, int tp, tw_dtype dt, tw_dtype kv,
                                       int batch, int prompt, int seq) {
    tw_engine_opts eo = {.cfg = cfg,
                         .be = be,
                         .w_dtype = dt,
                         .kv_dtype = kv,
                         .max_batch = batch,
                         .max_seq = seq,
                         .max_prefill = prompt,
                         .seed = (uint64_t)s->seed,
                         .tp_rank = tp > 1 ? rank : 0,
                         .tp_size = tp,
                         .ep_rank = s->ep > 1 ? rank : 0,
                         .ep_size = s->ep > 1 ? s->ep : 1,
                         .cuda_graph = s->cuda_graph,
                         .routing_skew = s->routing_skew,
                         .kv_blocks = s->kv_blocks,
                         .kv_block_tokens = s->kv_block_tokens,
                         .max_step_tokens = s->max_step_tokens};
    return eo;
}

tw_status tw_run_plan_make(const tw_run_spec *s, const tw_model_config *cfg, tw_backend *be,
                           int rank, tw_run_plan *p) {
    memset(p, 0, sizeof *p);
    p->ndegrees = s->ntp;
    p->ncombo = s->ntp * s->ndtype * s->nbatch * s->nprompt * s->ngen;
    p->ngroups = s->ntp * s->ndtype;
    p->combos = calloc((size_t)p->ncombo, sizeof *p->combos);
    p->groups = calloc((size_t)p->ngroups, sizeof *p->groups);
    if (!p->combos || !p->groups) {
        tw_run_plan_free(p);
        return TW_ERR(TW_ERR_NOMEM, "planning %d combinations", p->ncombo);
    }
    /* every combination in a stable order (tp, dtype, batch, prompt, gen); the group of a
     * (degree, dtype) is sized for its largest batch, prompt and sequence */
    int nc = 0;
    for (int t = 0; t < s->ntp; t++)
        for (int d = 0; d < s->ndtype; d++) {
            int gi = t * s->ndtype + d;
            tw_run_group *g = &p->groups[gi];
            g->tp = s->tp[t];
            g->dtype = s->dtype[d];
            g->kv_dtype = s->kv_given ? s->kv_dtype : s->dtype[d];
            for (int b = 0; b < s->nbatch; b++)
                for (int q = 0; q < s->nprompt; q++)
                    for (int n = 0; n < s->ngen; n++) {
                        tw_run_combo *k = &p->combos[nc++];
                        k->tp = g->tp;
                        k->dtype = g->dtype;
                        k->kv_dtype = g->kv_dtype;
                        k->batch = s->batch[b], k->prompt = s->prompt[q], k->gen = s->gen[n];
                        k->group = gi;
                        if (k->batch > g->max_batch) g->max_batch = k->batch;
                        if (k->prompt > g->max_prompt) g->max_prompt = k->prompt;
                        if (k->prompt + k->gen > g->max_seq) g->max_seq = k->prompt + k->gen;
                        /* the ETA's work: tokens of every warm-up and measured repetition */
                        p->work_tokens += (double)(s->warmup + s->reps) * k->batch *
                                          (double)(k->prompt + k->gen - 1);
                    }
        }
    /* each rank plans the degrees it takes part in (its shard of them) */
    for (int i = 0; i < p->ncombo; i++) {
        tw_run_combo *k = &p->combos[i];
        int ranks = tw_run_degree_ranks(s, k->tp);
        if (rank >= ranks) continue; /* this rank sits the degree out */
        tw_engine_opts eo = tw_run_plan_engine_opts(s, cfg, be, rank, k->tp, k->dtype, k->kv_dtype,
                                                    k->batch, k->prompt, k->prompt + k->gen);
        char name[160];
        tw_run_combo_name(k, s->ntp > 1, name, sizeof name);
        tw_status st = tw_engine_plan(&eo, &k->plan);
        if (st != TW_OK) {
            tw_run_plan_free(p);
            return tw_error_ctx(st, "combination %s", name);
        }
        const tw_mem_plan *m = &k->plan;
        if (m->available_bytes && m->total_bytes > m->available_bytes) {
            char who[48] = "";
            if (ranks > 1) snprintf(who, sizeof who, " (rank %d)", rank);
            st = TW_ERR(TW_ERR_NOMEM,
                        "combination %s does not fit on %s%s: needs %.2f GiB (weights %.2f, KV "
                        "cache %.2f, activations %.2f) but %.2f GiB is available; nothing was run",
                        name, be->ops->name, who, m->total_bytes / 1073741824.0,
                        m->weights_bytes / 1073741824.0, m->kv_bytes / 1073741824.0,
                        m->act_bytes / 1073741824.0, m->available_bytes / 1073741824.0);
            tw_run_plan_free(p);
            return st;
        }
        k->planned = 1;
    }
    for (int gi = 0; gi < p->ngroups; gi++) {
        tw_run_group *g = &p->groups[gi];
        if (rank >= tw_run_degree_ranks(s, g->tp)) continue;
        tw_engine_opts eo = tw_run_plan_engine_opts(s, cfg, be, rank, g->tp, g->dtype, g->kv_dtype,
                                                    g->max_batch, g->max_prompt, g->max_seq);
        tw_status st = tw_engine_plan(&eo, &g->plan);
        if (st != TW_OK) {
            tw_run_plan_free(p);
            return tw_error_ctx(st, "the %s engine of tensor-parallel degree %d",
                                tw_dtype_name(g->dtype), g->tp);
        }
        g->shared = !(g->plan.available_bytes && g->plan.total_bytes > g->plan.available_bytes);
        g->planned = 1;
    }
    tw_run_output_bytes(s, cfg, &p->result_bytes, &p->dump_bytes);
    return TW_OK;
}

void tw_run_plan_free(tw_run_plan *p) {
    free(p->combos);
    free(p->groups);
    p->combos = NULL;
    p->groups = NULL;
    p->ncombo = p->ngroups = 0;
}
