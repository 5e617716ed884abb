/* One combination measured the default way (tw_run_measure_repetitions): warm-up, measured
 * repetitions of prefill + gen-1 decode steps with power metered per phase, the logits-dump
 * pass, the metrics, the energy block (combined over a degree's ranks) and the headline. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/project/tw_project.h"
#include "harness/run/run_impl.h"
#include "tw_metrics.h"
#include "tw_npy.h"
#include "tw_util.h"

typedef struct {
    double ttft_s;   /* prefill, including the first token's argmax */
    double decode_s; /* all decode steps */
    double *step_s;  /* [gen - 1] */
    int complete;
} tw_rep;

/* One repetition: reset, prefill, gen-1 decode steps. Tokens go to gen_tokens [batch, gen] when
 * non-NULL, logits to the npy writer when non-NULL, energy to pm when non-NULL. `what` names it
 * in the progress line ("repetition 2/3"). A signal between steps (or one a collective saw)
 * returns TW_ERR_INTERRUPTED; regions left open are the caller's to roll back. */
static tw_status tw_run_rep(tw_run *x, tw_engine *e, const tw_run_combo *k, const char *name,
                            const char *what, const int *prompt, int *cur, int *next, tw_rep *r,
                            int *gen_tokens, tw_npy_writer *dump, tw_power_meter *pm) {
    tw_backend *be = x->be;
    int vocab = x->cfg.vocab;
    tw_engine_reset(e);
    r->complete = 0;
    if (tw_run_stopped(x)) return TW_ERR(TW_ERR_INTERRUPTED, "interrupted before %s", what);
    int first = strstr(what, " 1/") != NULL;
    tw_run_progress pg = {.kind = TW_RUN_PROGRESS_PREFILL,
                          .milestone = first || !strcmp(what, "logits dump"),
                          .eta_s = tw_run_eta(x),
                          .what = what,
                          .row_name = name,
                          .row = x->row,
                          .nrows = x->plan.ncombo};
    tw_run_show(x, &pg);
    if (pm) TW_TRY(tw_power_begin(pm, "prefill"));
    double t0 = tw_now_s();
    TW_TRY(tw_engine_prefill(e, k->batch, k->prompt, prompt, next));
    TW_TRY(be->ops->sync(be));
    r->ttft_s = tw_now_s() - t0;
    if (pm) TW_TRY(tw_power_end(pm, "prefill", NULL));
    x->work_done += tw_metric_prefill_tokens(k->batch, k->prompt);
    if (gen_tokens)
        for (int b = 0; b < k->batch; b++) gen_tokens[(size_t)b * k->gen] = next[b];
    if (dump) TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)k->batch * vocab));
    if (pm && k->gen > 1) TW_TRY(tw_power_begin(pm, "decode"));
    double d0 = tw_now_s();
    for (int s = 1; s < k->gen; s++) {
        if (tw_run_stopped(x))
            return TW_ERR(TW_ERR_INTERRUPTED, "interrupted at decode step %d of %d", s, k->gen - 1);
        pg.kind = TW_RUN_PROGRESS_DECODE;
        pg.milestone = s == 1 && first;
        pg.eta_s = tw_run_eta(x);
        pg.done = s;
        pg.total = k->gen - 1;
        tw_run_show(x, &pg);
        memcpy(cur, next, sizeof(int) * (size_t)k->batch);
        double s0 = tw_now_s();
        TW_TRY(tw_engine_decode(e, k->batch, cur, next));
        TW_TRY(be->ops->sync(be));
        r->step_s[s - 1] = tw_now_s() - s0;
        x->work_done += k->batch;
        if (gen_tokens)
            for (int b = 0; b < k->batch; b++) gen_tokens[(size_t)b * k->gen + s] = next[b];
        if (dump) TW_TRY(tw_npy_writer_append(dump, tw_engine_logits(e), (size_t)k->batch * vocab));
    }
    r->decode_s = tw_now_s() - d0;
    if (pm && k->gen > 1) TW_TRY(tw_power_end(pm, "decode", NULL));
    r->complete = 1;
    return TW_OK;
}

/* The un-timed pass that dumps the logits of every step; a failure is said and recorded in the
 * row, which is still written. */
static void tw_run_dump(tw_run *x, tw_engine *e, const tw_run_combo *k, const char *name,
                        const int *prompt, int *cur, int *next, int *scratch_tokens,
                        tw_result_row *row) {
    const char *path = x->spec.dump;
    int64_t shape[3] = {k->gen, (int64_t)k->batch, x->cfg.vocab};
    tw_npy_writer *dump = NULL;
    tw_status ds = tw_npy_writer_open(path, shape, 3, &dump);
    if (ds == TW_OK) {
        tw_engine_set_capture(e, 1);
        /* its own step-time array: the measured repetitions' times stay untouched */
        size_t nsteps = (size_t)(k->gen > 1 ? k->gen - 1 : 1);
        tw_rep tmp = {.step_s = calloc(nsteps, sizeof(double))};
        ds = tmp.step_s ? tw_run_rep(x, e, k, name, "logits dump", prompt, cur, next, &tmp,
                                     scratch_tokens, dump, NULL)
                        : TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
        free(tmp.step_s);
        tw_engine_set_capture(e, 0);
    }
    if (ds == TW_OK) {
        ds = tw_npy_writer_close(dump);
        dump = NULL;
    }
    if (ds == TW_OK) {
        row->dump_written = 1;
        tw_run_say(x, TW_RUN_NOTE, "logits of %d steps written to %s", k->gen, path);
        return;
    }
    snprintf(row->dump_error, sizeof row->dump_error, "%s", tw_error_text());
    tw_npy_writer_abort(dump); /* removes its temporary file */
    if (ds == TW_ERR_INTERRUPTED) tw_run_stopped(x);
    tw_run_say(x, TW_RUN_ERROR, "the logits dump %s was not written: %s", path, row->dump_error);
}

static void tw_run_scenario(tw_run *x, const tw_run_combo *k, tw_result_scenario *s) {
    const tw_run_spec *o = &x->spec;
    snprintf(s->model, sizeof s->model, "%s", x->cfg.name);
    snprintf(s->backend, sizeof s->backend, "%s", x->be->ops->name);
    s->threads = x->be->threads;
    if (x->traits.cuda_options) {
        s->has_cuda = 1;
        snprintf(s->gemm, sizeof s->gemm, "%s", tw_run_backend_gemm(x));
        s->cuda_graph = o->cuda_graph;
    }
    snprintf(s->dtype, sizeof s->dtype, "%s", tw_dtype_name(k->dtype));
    snprintf(s->kv_dtype, sizeof s->kv_dtype, "%s", tw_dtype_name(k->kv_dtype));
    s->batch = k->batch;
    s->prompt = k->prompt;
    s->gen = k->gen;
    s->warmup = o->warmup;
    s->reps = o->reps;
    s->seed = o->seed;
    s->has_routing_skew = x->cfg.n_experts > 0;
    s->routing_skew = o->routing_skew;
    s->tp = k->tp;
    s->devices = tw_run_degree_ranks(o, k->tp);
    s->ep = o->ep > 1 ? o->ep : 0;
}

/* The experts block of a mixture-of-experts row (doc/MOE.md): the engine's per-expert load since
 * its reset before the measured repetitions, the distinct experts a decode step reached, and,
 * with expert parallelism, the all-to-alls between ep0 and ep1 over measured_s seconds. */
static tw_status tw_run_experts(tw_run *x, tw_engine *e, const tw_run_combo *k, double measured_s,
                                const tw_engine_ep_stats *ep0, const tw_engine_ep_stats *ep1,
                                tw_result_experts *out) {
    int nl = 0, ne = 0;
    const int64_t *load = tw_engine_expert_load(e, &nl, &ne);
    if (!load)
        return TW_ERR(TW_ERR_INTERNAL, "%s has experts but the engine counted none", x->cfg.name);
    out->n_experts = ne;
    out->experts_per_token = x->cfg.n_experts_per_tok;
    out->moe_layers = nl;
    out->active_params = (long long)tw_model_params_active(&x->cfg);
    out->routing_skew = x->spec.routing_skew;
    out->load = calloc((size_t)ne, sizeof *out->load);
    out->load_per_layer = calloc((size_t)nl * (size_t)ne + 1, sizeof *out->load_per_layer);
    if (!out->load || !out->load_per_layer) return TW_ERR(TW_ERR_NOMEM, "the experts block");
    for (int l = 0; l < nl; l++)
        for (int i = 0; i < ne; i++) {
            long long t = (long long)load[(size_t)l * ne + i];
            out->load_per_layer[(size_t)l * ne + i] = t;
            out->load[i] += t;
        }
    out->max_over_mean_load = tw_metric_expert_max_over_mean(out->load, ne);
    double reached = tw_engine_decode_experts_per_layer(e);
    out->decode_experts_per_layer = reached > 0 ? reached : NAN;
    out->decode_experts_per_layer_uniform = tw_metric_uniform_experts(&x->cfg, k->batch);
    if (x->spec.ep > 1) {
        tw_result_ep *p = &out->ep;
        out->has_ep = 1;
        p->ep = x->spec.ep;
        p->dispatch_s = ep1->dispatch_s - ep0->dispatch_s;
        p->combine_s = ep1->combine_s - ep0->combine_s;
        p->alltoall_share = tw_metric_collective_share(p->dispatch_s + p->combine_s, measured_s);
        p->alltoall_calls = (long long)(ep1->calls - ep0->calls);
        p->alltoall_bytes = (long long)(ep1->dispatch_bytes - ep0->dispatch_bytes) +
                            (long long)(ep1->combine_bytes - ep0->combine_bytes);
        p->alltoall_algbw_gbps =
            tw_metric_alltoall_algbw_gbps((double)p->alltoall_bytes, p->dispatch_s + p->combine_s);
        p->alltoall_busbw_gbps = tw_metric_alltoall_busbw_gbps(p->alltoall_algbw_gbps, p->ep);
    }
    return TW_OK;
}

/* The energy of this rank, combined over the degree's ranks (power domains: a GPU per rank;
 * for host-level power the host, counted by its first rank only, so that ranks sharing a
 * socket do not count its power twice). After an interruption the ranks are no longer in
 * step: rank 0 keeps its own figures, and the hosts gathered at the start say whether its
 * energy is the run's (one host under host-level power). Sets *domains. */
static tw_status tw_run_energy(tw_run *x, const tw_run_combo *k, tw_power_meter *pm,
                               tw_result_row *row, int *domains) {
    tw_status st = TW_OK;
    *domains = 1;
    if (!x->comm) return TW_OK;
    tw_energy *energy = &row->energy;
    double e_ph[3] = {NAN, NAN, NAN};
    static const char *const ph[3] = {"prefill", "decode", "e2e"};
    for (int q = 0; q < 3; q++)
        if (tw_power_phase_energy(pm, ph[q], &e_ph[q]) != TW_OK) tw_clear_error();
    int host_level = tw_power_host_level(pm);
    int nr = tw_run_degree_ranks(&x->spec, k->tp); /* the degree's ranks */
    if (x->intr_sig) {
        row->ranks_state = TW_RANKS_NOT_GATHERED;
        snprintf(row->ranks_note, sizeof row->ranks_note,
                 "not gathered: the run was interrupted; the figures are rank 0's");
        *domains = nr;
        if (x->have_hosts && x->hosts.size >= nr) {
            const char **hp = calloc((size_t)nr, sizeof *hp);
            if (hp) {
                for (int r = 0; r < nr; r++) hp[r] = x->hosts.host[r];
                *domains = tw_metric_power_domains(hp, nr, host_level);
            }
            free(hp);
        }
        if (host_level && *domains == 1 && tw_power_has_energy(pm))
            tw_power_energy_combine(energy, e_ph, 1, nr,
                                    "rank 0's: its host is the only one, and its power is the "
                                    "host's (the run was interrupted)");
        else if (tw_power_has_energy(pm))
            snprintf(energy->not_combined, sizeof energy->not_combined,
                     "rank 0's own power only: the run was interrupted before the ranks' "
                     "energies were gathered");
        return TW_OK;
    }
    const tw_metrics *m = &row->metrics;
    double counted = !host_level || x->tp_comm->local_rank == 0 ? 1.0 : 0.0;
    enum { NQ = 9 };
    double mine[NQ] = {m->ttft_s.median,
                       m->tpot_s.p50,
                       m->decode_tokens_per_s.median,
                       m->collective_share,
                       NAN,
                       e_ph[0],
                       e_ph[1],
                       e_ph[2],
                       counted};
    double w_rank = 0;
    if (tw_power_mean_w_per_device(pm, &w_rank) == TW_OK)
        mine[4] = w_rank;
    else
        tw_clear_error();
    double *all = calloc((size_t)nr * NQ, sizeof(double));
    row->ranks = calloc((size_t)nr, sizeof *row->ranks);
    if (!all || !row->ranks) st = TW_ERR(TW_ERR_NOMEM, "per-rank figures");
    for (int q = 0; q < NQ && st == TW_OK; q++)
        st = tw_comm_allgather_f64(x->tp_comm, mine[q], all + (size_t)q * nr);
    if (st == TW_OK) {
        double tot[3] = {0, 0, 0};
        int nd = 0;
        row->ranks_state = TW_RANKS_GATHERED;
        row->nranks = nr;
        for (int r = 0; r < nr; r++) {
            tw_rank_figures *f = &row->ranks[r];
            f->rank = r;
            f->ttft_s = all[(size_t)0 * nr + r];
            f->tpot_p50_s = all[(size_t)1 * nr + r];
            f->decode_tokens_per_s = all[(size_t)2 * nr + r];
            f->collective_share = all[(size_t)3 * nr + r];
            f->mean_power_w = all[(size_t)4 * nr + r];
            if (all[(size_t)8 * nr + r] > 0) {
                nd++;
                for (int q = 0; q < 3; q++) tot[q] += all[(size_t)(5 + q) * nr + r];
            }
        }
        if (tw_power_has_energy(pm) && nd > 0) {
            char how[256];
            snprintf(how, sizeof how,
                     host_level ? "sum over %d host(s): the %d rank(s) on a host share its "
                                  "power (%s), counted once"
                                : "sum over the %d device(s) of the %d rank(s) (%s)",
                     nd, nr, tw_power_source(pm));
            tw_power_energy_combine(energy, tot, nd, nr, how);
            *domains = nd;
        }
    }
    free(all);
    if (st == TW_ERR_INTERRUPTED) {
        /* a signal while gathering: the repetitions are complete, keep rank 0's figures */
        tw_run_stopped(x);
        free(row->ranks);
        row->ranks = NULL;
        row->nranks = 0;
        row->ranks_state = TW_RANKS_NOT_GATHERED;
        snprintf(row->ranks_note, sizeof row->ranks_note,
                 "not gathered: the run was interrupted while the ranks' figures were gathered; "
                 "the figures are rank 0's");
        return TW_OK;
    }
    return st;
}

double tw_run_row_watts_per_device(const tw_result_row *row) {
    const tw_energy *e = &row->energy;
    if (!row->has_energy) return NAN;
    if (e->assumed) return e->assumed_w_per_device;
    return e->e2e.present ? e->e2e.mean_power_w_per_device : NAN;
}

/* The projection's headline: e2e output tokens/s and mean watts, per power domain (a device; a
 * host where ranks share its power). */
static void tw_run_headline(tw_run *x, const tw_result_row *row, int domains, char *buf, size_t n) {
    double w = tw_run_row_watts_per_device(row);
    double e2e = row->metrics.e2e_tokens_per_s.median;
    if (row->metrics.repetitions_complete > 0 && w > 0 && isfinite(e2e)) {
        int ndev = x->comm ? domains : 1;
        if (tw_project_headline(tw_metric_per_device(e2e, ndev), w, row->energy.label,
                                row->energy.assumed, buf, n) != TW_OK)
            snprintf(buf, n, "projection unavailable: %s", tw_error_text());
    } else {
        snprintf(buf, n,
                 "projection unavailable: no power figure (source %s); give --watts W or --power "
                 "assumed",
                 row->energy.source);
    }
}

tw_status tw_run_measure_repetitions(tw_run *x, tw_engine *e, const tw_run_combo *k,
                                     tw_result_row *row, void *ctx) {
    (void)ctx;
    const tw_run_spec *o = &x->spec;
    tw_status st = TW_OK;
    size_t B = (size_t)k->batch;
    size_t nsteps = (size_t)(k->gen > 1 ? k->gen - 1 : 1);
    tw_run_scenario(x, k, &row->scenario);
    row->complete = 1;
    int *prompt = malloc(sizeof(int) * B * (size_t)k->prompt);
    int *cur = malloc(sizeof(int) * B), *next = malloc(sizeof(int) * B);
    int *gen_tokens = malloc(sizeof(int) * B * (size_t)k->gen);
    int *check_tokens = malloc(sizeof(int) * B * (size_t)k->gen);
    tw_rep *reps = calloc((size_t)o->reps, sizeof *reps);
    tw_rep_times *done = calloc((size_t)o->reps, sizeof *done);
    tw_power_meter *pm = NULL;
    int reps_done = 0;
    if (!prompt || !cur || !next || !gen_tokens || !check_tokens || !reps || !done) {
        st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
        goto out;
    }
    for (int r = 0; r < o->reps; r++)
        if (!(reps[r].step_s = calloc(nsteps, sizeof(double)))) {
            st = TW_ERR(TW_ERR_NOMEM, "run bookkeeping");
            goto out;
        }
    tw_prompt_tokens((uint64_t)o->seed, k->batch, k->prompt, x->cfg.vocab, prompt);
    if (o->preset) {
        snprintf(row->scenario.preset, sizeof row->scenario.preset, "%s", o->preset->name);
        const char *cv[TW_PRESET_MAX_CAVEATS];
        for (int i = 0; i < o->preset->n_caveats; i++) cv[i] = o->preset->caveats[i];
        if ((st = tw_result_scenario_set_caveats(&row->scenario, cv, o->preset->n_caveats)))
            goto out;
    }

    tw_power_opts po = tw_run_power_opts(x);
    if ((st = tw_power_open(&po, &pm)) != TW_OK) goto out;

    char name[160], what[64];
    tw_run_combo_name(k, o->ntp > 1, name, sizeof name);
    for (int w = 0; w < o->warmup && st == TW_OK; w++) {
        tw_rep tmp = {.step_s = reps[0].step_s};
        snprintf(what, sizeof what, "warm-up %d/%d", w + 1, o->warmup);
        st = tw_run_rep(x, e, k, name, what, prompt, cur, next, &tmp, NULL, NULL, NULL);
    }
    double comm_s0 = tw_engine_comm_seconds(e);
    tw_engine_ep_stats ep0 = tw_engine_ep_stats_get(e);
    tw_engine_reset_expert_load(e); /* the load of the measured repetitions only */
    for (int r = 0; r < o->reps && st == TW_OK; r++) {
        snprintf(what, sizeof what, "repetition %d/%d", r + 1, o->reps);
        tw_power_mark(pm); /* an interrupted repetition's partial energy is rolled back */
        st = tw_run_rep(x, e, k, name, what, prompt, cur, next, &reps[r],
                        r == 0 ? gen_tokens : check_tokens, NULL, pm);
        if (st != TW_OK) break;
        reps_done++;
        if (r > 0 && memcmp(gen_tokens, check_tokens, sizeof(int) * B * (size_t)k->gen) != 0)
            st = TW_ERR(TW_ERR_INTERNAL,
                        "%s: repetition %d generated different tokens than repetition 1: the "
                        "engine is not deterministic",
                        name, r + 1);
    }
    double comm_s_measured = tw_engine_comm_seconds(e) - comm_s0;
    tw_engine_ep_stats ep1 = tw_engine_ep_stats_get(e);
    if (st == TW_ERR_INTERRUPTED || (tw_run_stopped(x) && reps_done < o->reps)) {
        /* the repetition under way is incomplete: its partial energy goes (a signal after the
         * last repetition leaves this combination complete; the run stops after it) */
        if (st == TW_ERR_INTERRUPTED) tw_power_rollback(pm);
        tw_run_stopped(x);
        if (!x->intr_sig) x->intr_sig = SIGINT; /* a collective saw it first: keep a name */
        char who[64];
        tw_run_signal_text(x, who, sizeof who);
        row->complete = 0;
        snprintf(row->incomplete_reason, sizeof row->incomplete_reason,
                 "%s during %s (%d of %d repetitions complete)", who, name, reps_done, o->reps);
        tw_clear_error();
        st = TW_OK;
    }
    if (st != TW_OK || reps_done == 0) goto out;
    int nd = 0; /* the complete repetitions the figures are over */
    for (int r = 0; r < o->reps; r++)
        if (reps[r].complete)
            done[nd++] = (tw_rep_times){reps[r].ttft_s, reps[r].decode_s, reps[r].step_s};
    /* the experts the measured repetitions reached, before the dump pass adds to the counts */
    double decode_experts = tw_engine_decode_experts_per_layer(e);
    if (x->cfg.n_experts > 0) {
        row->has_experts = 1;
        if ((st = tw_run_experts(x, e, k, tw_metric_measured_s(done, nd), &ep0, &ep1,
                                 &row->experts)) != TW_OK)
            goto out;
    }

    if (o->dump) {
        row->has_dump = 1;
        snprintf(row->dump_path, sizeof row->dump_path, "%s", o->dump);
        if (row->complete && !tw_run_stopped(x))
            tw_run_dump(x, e, k, name, prompt, cur, next, check_tokens, row);
        if (!row->dump_written && !row->dump_error[0])
            snprintf(row->dump_error, sizeof row->dump_error,
                     "not written: the run was interrupted");
    }

    /* ---- metrics: medians over complete repetitions ----------------------------------------- */
    tw_metric_inputs mi = {.cfg = &x->cfg,
                           .w_dtype = k->dtype,
                           .kv_dtype = k->kv_dtype,
                           .batch = k->batch,
                           .prompt = k->prompt,
                           .gen = k->gen,
                           .membw_gbps = x->membw,
                           .peak_gflops = k->dtype == TW_BF16 ? x->peak_bf16 : x->peak,
                           .have_comm = x->comm != NULL,
                           .comm_s = comm_s_measured,
                           .decode_experts = decode_experts};
    if ((st = tw_metrics_summarise(&mi, done, nd, &row->metrics)) != TW_OK) goto out;
    row->token_batch = k->batch;
    row->token_prompt = k->prompt;
    row->token_gen = nd > 0 ? k->gen : 0;
    row->prompt_tokens = prompt;
    row->generated_tokens = gen_tokens;
    prompt = gen_tokens = NULL; /* the row's now */

    tw_power_tokens ptok = {.prefill = nd * tw_metric_prefill_tokens(k->batch, k->prompt),
                            .decode = nd * tw_metric_decode_tokens(k->batch, k->gen),
                            .e2e = nd * tw_metric_e2e_tokens(k->batch, k->gen)};
    if ((st = tw_power_energy(pm, &ptok, &row->energy)) != TW_OK) goto out;
    row->has_energy = 1;
    int domains = 1;
    if ((st = tw_run_energy(x, k, pm, row, &domains)) != TW_OK) goto out;
    tw_run_headline(x, row, domains, row->projection_headline, sizeof row->projection_headline);
out:
    if (pm) tw_power_close(pm);
    if (reps)
        for (int r = 0; r < o->reps; r++) free(reps[r].step_s);
    free(reps);
    free(done);
    free(prompt), free(cur), free(next), free(gen_tokens), free(check_tokens);
    if (st == TW_OK && row->metrics.repetitions_complete == 0) row->complete = 0;
    return st;
}
