/* A serving scenario as a measurement of the run library (tw_serve_engine_run.h). */
#include "tw_serve_engine_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/run/run_impl.h"
#include "tw_metrics.h"
#include "tw_serve_result.h"
#include "tw_util.h"

struct tw_serve_ctx {
    tw_serve_cli cli;
    tw_loadgen_lengths L;
    int have_L;
    tw_loadgen_scenario scen;
    int has_limits;
    tw_serve_limits limits;
    tw_serve_slo slo;
    tw_sched_config sched;
    int64_t kv_blocks;
    int in_max, out_max;
};

void tw_serve_cli_defaults(tw_serve_cli *c) {
    memset(c, 0, sizeof *c);
    c->scenario = "server";
    c->rate_rps = 1.0;
    c->concurrency = 4;
    c->n_requests = 32;
    c->seed = 1;
    c->lengths = "fixed:128,32";
    c->max_batch = 8;
    c->token_budget = 256;
    c->chunked_prefill = 1;
    c->kv_block_tokens = 16;
    c->min_rate_rps = 0.01;
    c->max_rate_rps = 1000;
    c->max_trials = 12;
    c->min_requests = 32;
}

tw_status tw_serve_lengths_parse(const char *spec, tw_loadgen_lengths *L) {
    memset(L, 0, sizeof *L);
    int a, b, c, d, n = 0;
    char tail;
    if (!strncmp(spec, "fixed:", 6)) {
        if (sscanf(spec + 6, "%d,%d%n%c", &a, &b, &n, &tail) != 2 || spec[6 + n])
            return TW_ERR(TW_ERR_INVALID, "option --lengths %s: fixed:INPUT,OUTPUT expected", spec);
        return tw_loadgen_lengths_fixed(L, a, b);
    }
    if (!strncmp(spec, "uniform:", 8)) {
        if (sscanf(spec + 8, "%d-%d,%d-%d%n%c", &a, &b, &c, &d, &n, &tail) != 4 || spec[8 + n])
            return TW_ERR(TW_ERR_INVALID,
                          "option --lengths %s: uniform:ILO-IHI,OLO-OHI expected (inclusive)",
                          spec);
        return tw_loadgen_lengths_uniform(L, a, b, c, d);
    }
    return tw_loadgen_lengths_load(spec, L);
}

void tw_serve_ctx_free(tw_serve_ctx *x) {
    if (!x) return;
    if (x->have_L) tw_loadgen_lengths_free(&x->L);
    free(x);
}

tw_status tw_serve_limits_check_preset(const tw_preset *p, const char *scenario) {
    const tw_latency_limits *pl = &p->limits;
    if (!pl->given) return TW_OK;
    if (!strcmp(scenario, "offline")) {
        if (pl->bounded)
            return TW_ERR(TW_ERR_INVALID, "preset %s: an offline preset with latency bounds",
                          p->name);
        return TW_OK;
    }
    tw_serve_limits l;
    TW_TRY(tw_serve_limits_load(NULL, p->model, scenario, &l));
    if (!pl->bounded || fabs(pl->ttft_ms - 1e3 * l.ttft_s) > 1e-6 ||
        fabs(pl->tpot_ms - 1e3 * l.tpot_s) > 1e-6 || fabs(pl->percentile - l.percentile) > 1e-9)
        return TW_ERR(TW_ERR_INVALID,
                      "preset %s: latency_limits TTFT %g ms, TPOT %g ms at p%d disagree with "
                      "configs/serving/mlperf-limits.json (%s %s: %g ms, %g ms at p%g)",
                      p->name, pl->ttft_ms, pl->tpot_ms, pl->percentile, l.conf_model, scenario,
                      1e3 * l.ttft_s, 1e3 * l.tpot_s, l.percentile);
    return TW_OK;
}

tw_status tw_serve_cli_prepare(const tw_serve_cli *c, const char *model, const tw_preset *preset,
                               tw_run_spec *spec, tw_serve_ctx **out) {
    *out = NULL;
    tw_serve_ctx *x = calloc(1, sizeof *x);
    if (!x) return TW_ERR(TW_ERR_NOMEM, "serving options");
    x->cli = *c;
    tw_status st = tw_loadgen_scenario_parse(c->scenario, &x->scen);
    if (st != TW_OK) {
        tw_serve_ctx_free(x);
        return TW_ERR(TW_ERR_INVALID,
                      "option --scenario: '%s' is not offline, server, interactive or concurrency",
                      c->scenario);
    }
#define TW_SC_BAD(...)                                                                             \
    do {                                                                                           \
        tw_serve_ctx_free(x);                                                                      \
        return TW_ERR(TW_ERR_INVALID, __VA_ARGS__);                                                \
    } while (0)
    int server = x->scen == TW_LOADGEN_SERVER || x->scen == TW_LOADGEN_INTERACTIVE;
    if (c->find_rate && !server)
        TW_SC_BAD("--find-rate searches a Poisson rate: it goes with --scenario server or "
                  "interactive");
    if (spec->ntp != 1 || spec->ndtype != 1 || spec->nbatch != 1 || spec->nprompt != 1 ||
        spec->ngen != 1)
        TW_SC_BAD("a serving scenario is one configuration: no --tp, --dtype, --batch, --prompt "
                  "or --gen lists");
    if (c->find_rate && spec->tp[0] > 1)
        TW_SC_BAD("--find-rate with --tp %d: the search runs on one rank for now (the trials' "
                  "verdicts are not broadcast yet)",
                  spec->tp[0]);
    if (spec->dump) TW_SC_BAD("--dump-logits goes with a static batch, not --scenario");
    if (c->max_batch < 1 || c->token_budget < 1 || c->kv_block_tokens < 1 || c->kv_blocks < 0)
        TW_SC_BAD("--max-batch, --step-tokens and --kv-block must be >= 1");
    if ((c->ttft_ms > 0) != (c->tpot_ms > 0)) TW_SC_BAD("--ttft-ms and --tpot-ms go together");
    if ((st = tw_serve_lengths_parse(c->lengths, &x->L)) != TW_OK) {
        tw_serve_ctx_free(x);
        return st;
    }
    x->have_L = 1;
    int64_t tot;
    tw_loadgen_lengths_max(&x->L, &x->in_max, &x->out_max, &tot);
    tw_loadgen_config lc = {.scenario = x->scen,
                            .rate_rps = c->rate_rps,
                            .concurrency = c->concurrency,
                            .n_requests = c->n_requests,
                            .n_warmup = c->n_warmup,
                            .duration_s = c->duration_s,
                            .seed = c->seed,
                            .lengths = &x->L};
    if (c->find_rate) lc.duration_s = 0, lc.n_requests = c->min_requests;
    if ((st = tw_loadgen_check(&lc)) != TW_OK) {
        tw_serve_ctx_free(x);
        return st;
    }
    x->sched = (tw_sched_config){.max_batch = c->max_batch,
                                 .token_budget = c->token_budget,
                                 .chunked_prefill = c->chunked_prefill,
                                 .kv_policy = c->preempt ? TW_KV_PREEMPT : TW_KV_RESERVE};
    /* the KV pool: as asked, or room for max_batch of the longest requests */
    x->kv_blocks = c->kv_blocks > 0
                       ? c->kv_blocks
                       : (int64_t)c->max_batch * tw_kvpool_blocks_for(c->kv_block_tokens, tot - 1);
    /* limits: given, or the limits file's for the model (a preset's cross-checked) */
    if (c->ttft_ms > 0) {
        x->has_limits = 1;
        x->limits = (tw_serve_limits){.ttft_s = c->ttft_ms / 1e3,
                                      .tpot_s = c->tpot_ms / 1e3,
                                      .percentile = 99,
                                      .min_duration_s = 600};
        snprintf(x->limits.scenario, sizeof x->limits.scenario, "%s", server ? c->scenario : "");
        snprintf(x->limits.source, sizeof x->limits.source,
                 "given: --ttft-ms %g --tpot-ms %g (p99, LoadGen's index rule)", c->ttft_ms,
                 c->tpot_ms);
    } else if (server || c->limits_model) {
        const char *lm = c->limits_model ? c->limits_model : preset ? preset->model : model;
        const char *ls = x->scen == TW_LOADGEN_INTERACTIVE ? "interactive" : "server";
        if (preset && (st = tw_serve_limits_check_preset(preset, ls)) != TW_OK) {
            tw_serve_ctx_free(x);
            return st;
        }
        st = tw_serve_limits_load(NULL, lm, ls, &x->limits);
        if (st == TW_OK) {
            x->has_limits = 1;
        } else if (c->find_rate || c->limits_model) {
            tw_serve_ctx_free(x);
            return tw_error_ctx(st,
                                "the latency limits of %s (give --ttft-ms and --tpot-ms, or "
                                "--limits-model NAME)",
                                lm);
        } else {
            tw_clear_error(); /* no MLPerf limits for this model: figures without a verdict */
        }
    }
    if (x->has_limits)
        x->slo = (tw_serve_slo){.ttft_s = x->limits.ttft_s, .tpot_s = x->limits.tpot_s};
    else
        x->slo = (tw_serve_slo){NAN, NAN, NAN};
#undef TW_SC_BAD
    spec->batch[0] = c->max_batch;
    spec->prompt[0] = x->in_max;
    spec->gen[0] = x->out_max;
    spec->warmup = 0;
    spec->reps = 1;
    spec->kv_blocks = x->kv_blocks;
    spec->kv_block_tokens = c->kv_block_tokens;
    spec->max_step_tokens = c->token_budget;
    *out = x;
    return TW_OK;
}

typedef struct {
    tw_findrate_config cfg;
    tw_findrate_result res;
} tw_serve_findrate_pack;

/* ---- the measurement --------------------------------------------------------------------------
 */

typedef struct {
    tw_run *run;
    tw_engine *e;
    tw_serve_ctx *x;
    /* the run kept for the result: the single one, or the highest rate that met the limits
     * (else the last trial) of a search */
    tw_serve_engine_result kept;
    int have_kept, kept_met;
    double kept_rate;
    int64_t output_tokens; /* over every run (the energy's tokens) */
    int64_t issued, finished;
    int devices;
} tw_serve_meas;

static int tw_serve_stop(void *ctx) {
    return tw_run_stopped((tw_run *)ctx) != 0;
}

static void tw_serve_progress(void *ctx, int64_t finished, int64_t issued, int64_t steps) {
    tw_serve_meas *m = ctx;
    if (steps % 16) return;
    tw_run_progress p = {.kind = TW_RUN_PROGRESS_DECODE,
                         .eta_s = -1,
                         .what = "serving",
                         .row_name = m->x->cli.scenario,
                         .row = 1,
                         .nrows = 1,
                         .done = (int)finished,
                         .total = (int)issued};
    tw_run_show(m->run, &p);
}

static tw_status tw_serve_once(tw_serve_meas *m, tw_loadgen_scenario scen, double rate,
                               int64_t n_requests, double duration_s, tw_serve_engine_result *res) {
    tw_serve_ctx *x = m->x;
    tw_run *r = m->run;
    tw_serve_engine_config c = {.load = {.scenario = scen,
                                         .rate_rps = rate,
                                         .concurrency = x->cli.concurrency,
                                         .n_requests = n_requests,
                                         .n_warmup = x->cli.n_warmup,
                                         .duration_s = duration_s,
                                         .seed = x->cli.seed,
                                         .lengths = &x->L},
                                .sched = x->sched,
                                .kv_blocks = x->kv_blocks,
                                .kv_block_tokens = x->cli.kv_block_tokens,
                                .prompt_seed = (uint64_t)r->spec.seed,
                                .comm = r->tp_comm,
                                .stop = tw_serve_stop,
                                .stop_ctx = r,
                                .progress = tw_serve_progress,
                                .progress_ctx = m};
    TW_TRY(tw_serve_engine_run(m->e, &c, res));
    m->issued += res->n;
    m->finished += res->n_finished;
    for (int64_t i = 0; i < res->n; i++)
        if (isfinite(res->rec[i].finish_s)) m->output_tokens += res->rec[i].output_tokens;
    return TW_OK;
}

static tw_status tw_serve_summary_of(const tw_serve_ctx *x, const tw_serve_engine_result *res,
                                     int devices, tw_serve_summary *s) {
    tw_serve_record *fin = NULL;
    int64_t nf = 0;
    double t0, t1;
    TW_TRY(tw_serve_engine_finished(res, &fin, &nf, &t0, &t1));
    tw_status st = tw_serve_summarize(fin, nf, t0, t1, devices, x->has_limits ? &x->slo : NULL,
                                      x->has_limits ? &x->limits : NULL, s);
    free(fin);
    return st;
}

/* A capacity-search trial: a server run at `rate` of at least min_requests measured requests. */
static tw_status tw_serve_trial(void *ctx, double rate, int64_t min_requests,
                                tw_findrate_outcome *o) {
    tw_serve_meas *m = ctx;
    memset(o, 0, sizeof *o);
    tw_serve_engine_result res;
    tw_run_say(m->run, TW_RUN_NOTE, "find-rate: trial at %.3f requests/s (%lld requests)", rate,
               (long long)min_requests);
    TW_TRY(tw_serve_once(m, m->x->scen, rate, min_requests, 0, &res));
    if (res.interrupted) {
        tw_serve_engine_free(&res);
        return TW_ERR(TW_ERR_INTERRUPTED, "find-rate: interrupted during the trial at %g/s", rate);
    }
    tw_serve_summary s;
    tw_status st = tw_serve_summary_of(m->x, &res, m->devices, &s);
    if (st != TW_OK) {
        tw_serve_engine_free(&res);
        return st;
    }
    o->met = s.constraint_met;
    o->n_requests = s.n_measured;
    o->ttft_pctl_s = s.ttft_pctl_s;
    o->tpot_pctl_s = s.tpot_pctl_s;
    o->goodput_rps = s.goodput_rps;
    o->output_tps = s.output_tps;
    o->goodput_output_tps = s.goodput_output_tps;
    tw_run_say(m->run, TW_RUN_NOTE, "find-rate: %.3f requests/s %s (p99 TTFT %.3f s, TPOT %.4f s)",
               rate, o->met ? "meets the limits" : "fails", s.ttft_pctl_s, s.tpot_pctl_s);
    int keep = !m->have_kept || (o->met && (!m->kept_met || rate > m->kept_rate)) ||
               (!o->met && !m->kept_met);
    if (keep) {
        if (m->have_kept) tw_serve_engine_free(&m->kept);
        m->kept = res;
        m->have_kept = 1;
        m->kept_met = o->met;
        m->kept_rate = rate;
    } else {
        tw_serve_engine_free(&res);
    }
    return TW_OK;
}

/* The row's serving block from the kept run. */
static tw_status tw_serve_fill(const tw_serve_meas *m, const tw_serve_findrate_pack *fr,
                               tw_serve_result *out) {
    const tw_serve_ctx *x = m->x;
    const tw_serve_engine_result *res = &m->kept;
    memset(out, 0, sizeof *out);
    snprintf(out->scenario, sizeof out->scenario, "%s", tw_loadgen_scenario_name(x->scen));
    int server = x->scen == TW_LOADGEN_SERVER || x->scen == TW_LOADGEN_INTERACTIVE;
    out->rate_rps = server ? (fr ? m->kept_rate : x->cli.rate_rps) : NAN;
    out->concurrency = x->scen == TW_LOADGEN_CONCURRENCY ? x->cli.concurrency : 0;
    out->seed = x->cli.seed;
    snprintf(out->lengths, sizeof out->lengths, "%s", x->L.name);
    snprintf(out->lengths_origin, sizeof out->lengths_origin, "%s", x->L.origin);
    out->requests_asked = fr ? x->cli.min_requests : x->cli.n_requests;
    out->duration_asked_s = fr ? 0 : x->cli.duration_s;
    out->warmup_requests = x->cli.n_warmup;
    out->step_token_budget = x->sched.token_budget;
    out->max_batch = x->sched.max_batch;
    out->kv_block_tokens = x->cli.kv_block_tokens;
    out->kv_blocks = (int)x->kv_blocks;
    out->kv_blocks_peak = res->kv_peak_used_blocks;
    out->kv_blocks_leaked = res->kv_leaked_blocks;
    snprintf(out->limits_source, sizeof out->limits_source, "%s",
             x->has_limits ? x->limits.source : "none: no latency limits for this model");
    TW_TRY(tw_serve_summary_of(x, res, m->devices, &out->summary));
    int64_t nf = 0;
    for (int64_t i = 0; i < res->n; i++) nf += isfinite(res->rec[i].finish_s);
    out->requests = calloc((size_t)(nf > 0 ? nf : 1), sizeof *out->requests);
    if (!out->requests) return TW_ERR(TW_ERR_NOMEM, "serving: %lld requests", (long long)nf);
    for (int64_t i = 0; i < res->n; i++) {
        const tw_serve_record *q = &res->rec[i];
        if (!isfinite(q->finish_s)) continue;
        out->requests[out->n_requests++] =
            (tw_serve_result_request){.id = q->id,
                                      .warmup = q->warmup,
                                      .arrival_s = q->arrival_s,
                                      .admit_s = q->admit_s,
                                      .first_token_s = q->first_token_s,
                                      .finish_s = q->finish_s,
                                      .input_tokens = q->input_tokens,
                                      .output_tokens = q->output_tokens,
                                      .preemptions = q->preemptions};
    }
    if (fr) {
        out->has_findrate = 1;
        out->findrate_config = fr->cfg;
        out->findrate = fr->res;
    }
    out->complete = 1;
    return TW_OK;
}

/* The row's metrics block from the serving summary: TTFT and TPOT per request, and the output
 * tokens/s as the e2e throughput (the figure the headline and the projection read). */
static void tw_serve_metrics(const tw_serve_engine_result *res, const tw_serve_summary *s,
                             tw_metrics *mt) {
    memset(mt, 0, sizeof *mt);
    double *v = malloc(sizeof(double) * (size_t)(res->n > 0 ? res->n : 1));
    int n = 0;
    tw_stats none = {0, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    mt->prefill_tokens_per_s = mt->decode_tokens_per_s = none;
    mt->ttft_s = mt->tpot_s = none;
    if (v) {
        for (int64_t i = 0; i < res->n; i++)
            if (!res->rec[i].warmup && isfinite(res->rec[i].finish_s))
                v[n++] = tw_serve_ttft_s(&res->rec[i]);
        mt->ttft_s = tw_stats_of(v, n);
        n = 0;
        for (int64_t i = 0; i < res->n; i++)
            if (!res->rec[i].warmup && isfinite(res->rec[i].finish_s) &&
                res->rec[i].output_tokens > 1)
                v[n++] = tw_serve_tpot_s(&res->rec[i]);
        mt->tpot_s = n > 0 ? tw_stats_of(v, n) : none;
        free(v);
    }
    double tps = s->output_tps;
    mt->e2e_tokens_per_s = (tw_stats){1, tps, tps, tps, tps, 0, tps, tps};
    mt->decode_bytes_per_step = mt->decode_bandwidth_gbps = mt->decode_bandwidth_fraction = NAN;
    mt->prefill_flops = mt->prefill_gflops = mt->prefill_mfu = NAN;
    mt->decode_flops_per_step = mt->decode_gflops = mt->decode_mfu = NAN;
    mt->decode_roofline_fraction = NAN;
    mt->collective_share = 0;
    mt->repetitions_complete = 1;
}

tw_status tw_serve_measure(tw_run *r, tw_engine *e, const tw_run_combo *k, tw_result_row *row,
                           void *ctx) {
    tw_serve_ctx *x = ctx;
    tw_serve_meas m = {.run = r, .e = e, .x = x, .devices = k->tp};
    tw_run_scenario(r, k, &row->scenario);
    row->complete = 1;
    tw_power_meter *pm = NULL;
    tw_power_opts po = tw_run_power_opts(r);
    tw_status st = tw_power_open(&po, &pm);
    if (st != TW_OK) return st;
    tw_serve_findrate_pack fr, *frp = NULL;
    st = tw_power_begin(pm, "e2e");
    int leader = tw_run_rank(r) == 0;
    if (st == TW_OK && x->cli.find_rate) {
        fr.cfg = (tw_findrate_config){.rate_start_rps = x->cli.rate_rps,
                                      .rate_min_rps = x->cli.min_rate_rps,
                                      .rate_max_rps = x->cli.max_rate_rps,
                                      .step = 1.0,
                                      .decimals = 1,
                                      .max_trials = x->cli.max_trials,
                                      .min_requests = x->cli.min_requests};
        if (fr.cfg.rate_min_rps > fr.cfg.rate_start_rps)
            fr.cfg.rate_min_rps = fr.cfg.rate_start_rps;
        if (fr.cfg.rate_max_rps < fr.cfg.rate_start_rps)
            fr.cfg.rate_max_rps = fr.cfg.rate_start_rps;
        st = tw_findrate(&fr.cfg, tw_serve_trial, &m, &fr.res);
        frp = &fr;
        if (st == TW_ERR_INTERRUPTED || (st != TW_OK && tw_run_stopped(r))) {
            /* the trials finished so far are kept; the one under way is dropped */
            row->complete = 0;
            char who[64];
            tw_run_signal_text(r, who, sizeof who);
            snprintf(row->incomplete_reason, sizeof row->incomplete_reason,
                     "%s during the capacity search (%d trials complete)", who, fr.res.n_trials);
            tw_clear_error();
            st = TW_OK;
        }
    } else if (st == TW_OK) {
        tw_serve_engine_result res;
        st =
            tw_serve_once(&m, x->scen, x->cli.rate_rps, x->cli.n_requests, x->cli.duration_s, &res);
        if (st == TW_OK) {
            m.kept = res;
            m.have_kept = 1;
            if (res.interrupted) {
                row->complete = 0;
                char who[64];
                tw_run_signal_text(r, who, sizeof who);
                snprintf(row->incomplete_reason, sizeof row->incomplete_reason,
                         "%s during the %s run: %lld of %lld issued requests finished (their "
                         "figures kept)",
                         who, x->cli.scenario, (long long)res.n_finished, (long long)res.n);
            }
        }
    }
    tw_power_region reg;
    if (st == TW_OK) st = tw_power_end(pm, "e2e", &reg);
    int64_t nf = 0;
    if (m.have_kept)
        for (int64_t i = 0; i < m.kept.n; i++)
            nf += !m.kept.rec[i].warmup && isfinite(m.kept.rec[i].finish_s);
    if (st == TW_OK && leader && m.have_kept && nf > 0) {
        row->serving = calloc(1, sizeof *row->serving);
        if (!row->serving) st = TW_ERR(TW_ERR_NOMEM, "the serving block");
        if (st == TW_OK) st = tw_serve_fill(&m, frp, row->serving);
        if (st == TW_OK && !row->complete) {
            row->serving->complete = 0;
            snprintf(row->serving->incomplete_reason, sizeof row->serving->incomplete_reason,
                     "%.127s", row->incomplete_reason);
        }
        if (st == TW_OK) {
            tw_serve_metrics(&m.kept, &row->serving->summary, &row->metrics);
            /* the static-batch decode bytes, for max_batch sequences at the lengths' mean
             * context (the schema's positive figure; a serving step's batch varies) */
            double im, om;
            tw_loadgen_lengths_mean(&x->L, &im, &om);
            row->metrics.decode_bytes_per_step = tw_metric_decode_bytes_per_step(
                &r->cfg, k->dtype, k->kv_dtype, k->batch, (int)(im + om / 2),
                tw_metric_decode_experts(&r->cfg, 0, k->batch));
        }
    } else if (st == TW_OK && leader) {
        row->metrics.repetitions_complete = 0; /* nothing finished: the row is dropped */
    } else if (st == TW_OK) {
        row->metrics.repetitions_complete = 1; /* followers: the leader's row is the result */
    }
    if (st == TW_OK) {
        tw_power_tokens ptok = {.prefill = 0, .decode = 0, .e2e = (double)m.output_tokens};
        st = tw_power_energy(pm, &ptok, &row->energy);
    }
    if (st == TW_OK) {
        row->has_energy = 1;
        int domains = 1;
        st = tw_run_energy(r, k, pm, row, &domains);
        if (st == TW_OK)
            tw_run_headline(r, row, domains, row->projection_headline,
                            sizeof row->projection_headline);
    }
    if (m.have_kept) tw_serve_engine_free(&m.kept);
    tw_power_close(pm);
    return st;
}
