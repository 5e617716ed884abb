/* `tokwatt compare`: a result beside published figures (per system and per accelerator:
 * tokens/s, tokens/J, the ratio, and the preset's caveats), or two results side by side with the
 * change and whether it exceeds the run-to-run noise (harness/tw_compare.h states the rule). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_compare.h"
#include "tw_published.h"
#include "tw_results.h"

static const char *tw_compare_usage =
    "tokwatt compare RESULT [--against ID[,ID...]] [--preset NAME] [--published FILE] "
    "[--format md|json|csv]\n"
    "       tokwatt compare BASELINE NEW [--fail-above PCT] [--format md|json|csv]\n"
    "  RESULT            a tokwatt result file (kind run or sweep; a run is one row)\n"
    "  --against IDS     published figures to compare with (ids in configs/published/); default: "
    "the preset's, else every figure for the result's model\n"
    "  --preset NAME     the scenario preset the run mirrors (configs/scenarios/): its caveats "
    "are printed and its published ids are the default\n"
    "  --published FILE  another published-figures file (default configs/published/figures.json)\n"
    "  BASELINE NEW      two result files: change of each metric's median (NEW - BASELINE) and "
    "whether it exceeds the run-to-run noise, max of the two (max - min) ranges; a warning on\n"
    "                    stderr for each difference in model, device, CPU, host, backend, dtypes, "
    "scenario, and for an incomplete run\n"
    "  --fail-above PCT  exit 3 when a metric is significantly worse than the baseline by more "
    "than PCT percent\n"
    "                    (tokens/s and tokens/J lower, TTFT and TPOT higher): a CI gate\n"
    "  exit codes        0 ok, 1 unreadable input, 2 bad arguments, 3 a regression past "
    "--fail-above";

static void tw_fmt(char *b, size_t n, double v) {
    if (!isfinite(v))
        snprintf(b, n, "n/a");
    else if (fabs(v) >= 100)
        snprintf(b, n, "%.0f", v);
    else if (fabs(v) >= 1)
        snprintf(b, n, "%.3g", v);
    else
        snprintf(b, n, "%.3g", v);
}

/* Appends text to list unless it is there already; returns whether it was added. */
static int tw_add_once(json_t *list, const char *text) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (!strcmp(json_string_value(v), text)) return 0;
    json_array_append_new(list, json_string(text));
    return 1;
}

static void tw_add_caveat(json_t *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tw_add_caveat(json_t *list, const char *fmt, ...) {
    char buf[2048]; /* a published row's source caveat quotes its verification and lengths notes */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tw_add_once(list, buf);
}

/* ---- measured against published ----------------------------------------------------------------
 */

/* A limit in ms for output ("n/a" when not bounded). */
static void tw_ms(char *b, size_t n, double s_or_ms, int given) {
    if (!given || !isfinite(s_or_ms))
        snprintf(b, n, "none");
    else
        snprintf(b, n, "%g", s_or_ms);
}

/* The serving row's latency figures beside the published row's limits (JSON fields). */
static void tw_serving_fields(json_t *o, const tw_serve_result *v, const tw_published_row *p) {
    const tw_serve_summary *s = &v->summary;
    json_object_set_new(o, "measured_scenario", json_string(v->scenario));
    json_object_set_new(o, "measured_rate_rps", tw_jnum(v->rate_rps));
    json_object_set_new(o, "measured_ttft_p99_s",
                        tw_jnum(s->limits_given ? s->ttft_pctl_s : s->ttft.p99_loadgen));
    json_object_set_new(o, "measured_tpot_p99_s",
                        tw_jnum(s->limits_given ? s->tpot_pctl_s : s->tpot.p99_loadgen));
    json_object_set_new(o, "measured_ttft_limit_ms",
                        s->limits_given ? json_real(s->limits.ttft_s * 1e3) : json_null());
    json_object_set_new(o, "measured_tpot_limit_ms",
                        s->limits_given ? json_real(s->limits.tpot_s * 1e3) : json_null());
    json_object_set_new(o, "measured_constraint_met",
                        s->limits_given ? json_boolean(s->constraint_met) : json_null());
    json_object_set_new(o, "measured_goodput_tokens_per_s", tw_jnum(s->goodput_output_tps));
    int b = p->limits.given && p->limits.bounded;
    json_object_set_new(o, "published_ttft_limit_ms",
                        b ? json_real(p->limits.ttft_ms) : json_null());
    json_object_set_new(o, "published_tpot_limit_ms",
                        b ? json_real(p->limits.tpot_ms) : json_null());
}

/* Measured p99 latencies against each published row's limits (markdown). */
static void tw_serving_latency_table(const tw_result_file *f, const tw_published_row *const *sel,
                                     int nsel) {
    const char *head[] = {"measured",
                          "published",
                          "scenario (ours/theirs)",
                          "rate req/s",
                          "p99 TTFT ms",
                          "TTFT limit ms (ours/theirs)",
                          "p99 TPOT ms",
                          "TPOT limit ms (ours/theirs)",
                          "our constraint"};
    tw_table t;
    tw_table_init(&t, 9, head);
    for (int k = 0; k < f->nrows; k++) {
        const tw_run_row *m = &f->rows[k];
        const tw_serve_result *v = m->serving;
        if (!v) continue;
        const tw_serve_summary *s = &v->summary;
        for (int i = 0; i < nsel; i++) {
            const tw_published_row *p = sel[i];
            int b = p->limits.given && p->limits.bounded;
            char c[8][48];
            tw_fmt(c[0], 48, v->rate_rps);
            tw_fmt(c[1], 48, (s->limits_given ? s->ttft_pctl_s : s->ttft.p99_loadgen) * 1e3);
            tw_fmt(c[2], 48, (s->limits_given ? s->tpot_pctl_s : s->tpot.p99_loadgen) * 1e3);
            tw_ms(c[3], 48, s->limits.ttft_s * 1e3, s->limits_given);
            tw_ms(c[4], 48, p->limits.ttft_ms, b);
            tw_ms(c[5], 48, s->limits.tpot_s * 1e3, s->limits_given);
            tw_ms(c[6], 48, p->limits.tpot_ms, b);
            tw_table_addf(&t, "%s|%s|%s / %s|%s|%s|%s / %s|%s|%s / %s|%s", m->label, p->id,
                          v->scenario, p->scenario, c[0], c[1], c[3], c[4], c[2], c[5], c[6],
                          !s->limits_given    ? "no limits"
                          : s->constraint_met ? "met"
                                              : "NOT met");
        }
    }
    printf("\nLatency: the measured p99 (LoadGen's percentile) against the limits\n\n");
    tw_table_print(&t, TW_FMT_MD, stdout);
    tw_table_free(&t);
}

/* What a serving result is not, next to a published MLPerf Server or Interactive row. */
static void tw_serving_caveats(json_t *cav, const tw_run_row *m, const tw_published_row *const *sel,
                               int nsel) {
    const tw_serve_result *v = m->serving;
    const tw_serve_summary *s = &v->summary;
    tw_add_caveat(cav,
                  "serving run: synthetic weights of the model's shape (not the trained model) "
                  "and synthetic prompts, so no accuracy target is met or checked; the tokens "
                  "generated are not the dataset's");
    tw_add_caveat(cav,
                  "serving run: lengths '%s' (%s), not the published run's dataset: our input and "
                  "output lengths are drawn, theirs are the samples' (see each row's lengths note)",
                  v->lengths, v->lengths_origin);
    tw_add_caveat(cav,
                  "serving run: not a valid MLPerf result: no early stopping, no minimum query "
                  "count, %s (%.4g s measured, MLPerf asks %.4g s), warm-up requests excluded "
                  "(doc/SERVING.md)",
                  s->limits_given && s->min_duration_met ? "the minimum duration met"
                                                         : "shorter than the minimum duration",
                  s->window_s, s->limits_given ? s->limits.min_duration_s : 600.0);
    if (s->limits_given)
        tw_add_caveat(cav,
                      "serving run: limits TTFT %g ms, TPOT %g ms at p%g from %s: the constraint "
                      "%s at %.4g requests/s",
                      s->limits.ttft_s * 1e3, s->limits.tpot_s * 1e3, s->limits.percentile,
                      v->limits_source[0] ? v->limits_source : s->limits.source,
                      s->constraint_met ? "held" : "did NOT hold", v->rate_rps);
    else
        tw_add_caveat(cav, "serving run: judged against no latency limits: the published figure "
                           "holds under MLPerf's, ours under none");
    for (int i = 0; i < nsel; i++) {
        const tw_published_row *p = sel[i];
        tw_add_caveat(cav,
                      "%s: different hardware: %d x %s (%s) published; measured on %d device(s) "
                      "of %s (%s backend); compare the per accelerator rows",
                      p->id, p->count, p->accelerator, p->precision, m->devices,
                      m->device[0] ? m->device : "unknown", m->backend);
        if (strcmp(p->scenario, v->scenario))
            tw_add_caveat(cav,
                          "%s: a published %s figure against a measured %s run: different "
                          "scenarios (MLPerf's Offline has no latency bound)",
                          p->id, p->scenario, v->scenario);
        int b = p->limits.given && p->limits.bounded;
        if (b && s->limits_given &&
            (fabs(p->limits.ttft_ms - s->limits.ttft_s * 1e3) > 1e-9 ||
             fabs(p->limits.tpot_ms - s->limits.tpot_s * 1e3) > 1e-9))
            tw_add_caveat(cav,
                          "%s: its limits (TTFT %g ms, TPOT %g ms; %s) are not ours (TTFT %g ms, "
                          "TPOT %g ms)",
                          p->id, p->limits.ttft_ms, p->limits.tpot_ms, p->limits.source,
                          s->limits.ttft_s * 1e3, s->limits.tpot_s * 1e3);
        else if (b && s->limits_given)
            tw_add_caveat(cav,
                          "%s: the same limits as ours (TTFT %g ms, TPOT %g ms; theirs from %s)",
                          p->id, p->limits.ttft_ms, p->limits.tpot_ms, p->limits.source);
        else if (!p->limits.given && strcmp(p->scenario, "offline"))
            tw_add_caveat(cav,
                          "%s: the published row records no latency limits (see its lengths "
                          "note)",
                          p->id);
    }
}

static tw_status tw_vs_published(const tw_result_file *f, const tw_published_set *pub,
                                 const char *against, const char *preset_name, tw_format fmt) {
    tw_preset preset;
    int have_preset = 0;
    if (!preset_name && f->preset[0]) preset_name = f->preset;
    if (preset_name) {
        TW_TRY(tw_preset_load(preset_name, &preset));
        have_preset = 1;
    }
    const tw_published_row *sel[TW_PUBLISHED_MAX];
    int nsel = 0;
    if (against) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", against);
        for (char *save = NULL, *id = strtok_r(buf, ",", &save); id && nsel < TW_PUBLISHED_MAX;
             id = strtok_r(NULL, ",", &save))
            TW_TRY(tw_published_find(pub, id, &sel[nsel++]));
    } else if (have_preset && preset.n_published) {
        for (int i = 0; i < preset.n_published; i++)
            TW_TRY(tw_published_find(pub, preset.published[i], &sel[nsel++]));
    } else {
        /* a serving result: the published rows of its scenario (MLPerf Server, Interactive), when
         * the file has any; else every row of the model */
        const tw_serve_result *sv = f->rows[0].serving;
        if (sv)
            for (int i = 0; i < pub->n; i++)
                if (!strcmp(pub->rows[i].model, f->rows[0].model) &&
                    !strcmp(pub->rows[i].scenario, sv->scenario))
                    sel[nsel++] = &pub->rows[i];
        for (int i = 0; !nsel && i < pub->n; i++)
            if (!strcmp(pub->rows[i].model, f->rows[0].model)) sel[nsel++] = &pub->rows[i];
        if (!nsel)
            return TW_ERR(TW_ERR_INVALID,
                          "no published figure for model \"%s\" in %s; name one with --against "
                          "(see configs/published/) or compare two result files",
                          f->rows[0].model, pub->origin);
    }

    json_t *rows = json_array(), *cav = json_array();
    const char *head[] = {"measured",        "published",      "basis",
                          "published tok/s", "measured tok/s", "ratio tok/s",
                          "published tok/J", "measured tok/J", "ratio tok/J"};
    tw_table t;
    tw_table_init(&t, 9, head);
    for (int k = 0; k < f->nrows; k++) {
        const tw_run_row *m = &f->rows[k];
        tw_meas_figures mf;
        TW_TRY(tw_compare_measured_figures(m, &mf));
        for (int i = 0; i < nsel; i++) {
            const tw_published_row *p = sel[i];
            tw_pub_figures pf;
            TW_TRY(tw_compare_published_figures(p, &pf));
            /* An energy-only row has no throughput: one row, per system. */
            int nbasis = p->metric == TW_PUB_J_PER_TOKEN ? 1 : 2;
            for (int basis = 0; basis < nbasis; basis++) {
                double ptps = basis ? pf.per_accel_tps : pf.system_tps;
                double mtps = basis ? mf.per_accel_tps : mf.system_tps;
                /* tokens/J does not depend on the basis; the published energy row is per
                 * system as measured (one accelerator for ML.ENERGY). */
                double rlo = tw_compare_ratio(mf.tokens_per_j, pf.tokens_per_j_high);
                double rhi = tw_compare_ratio(mf.tokens_per_j, pf.tokens_per_j_low);
                char c[6][64], ptj[160], rtj[160];
                tw_fmt(c[0], 64, ptps);
                tw_fmt(c[1], 64, mtps);
                tw_fmt(c[2], 64, tw_compare_ratio(mtps, ptps));
                tw_fmt(c[3], 64, pf.tokens_per_j_low);
                tw_fmt(c[4], 64, pf.tokens_per_j_high);
                tw_fmt(c[5], 64, mf.tokens_per_j);
                if (pf.tokens_per_j_low != pf.tokens_per_j_high)
                    snprintf(ptj, sizeof ptj, "%s-%s", c[3], c[4]);
                else
                    snprintf(ptj, sizeof ptj, "%s%s", c[3],
                             pf.tokens_per_j_from_rating ? " (rated W)" : "");
                char r1[64], r2[64];
                tw_fmt(r1, 64, rlo);
                tw_fmt(r2, 64, rhi);
                if (rlo != rhi && isfinite(rlo))
                    snprintf(rtj, sizeof rtj, "%s-%s", r1, r2);
                else
                    snprintf(rtj, sizeof rtj, "%s", r1);
                tw_table_addf(&t, "%s|%s|%s|%s|%s|%s|%s|%s|%s", m->label, p->id,
                              basis ? "per accelerator" : "per system", c[0], c[1], c[2], ptj, c[5],
                              rtj);
                json_t *o = json_object();
                json_object_set_new(o, "measured", json_string(m->label));
                json_object_set_new(o, "published_id", json_string(p->id));
                json_object_set_new(o, "basis", json_string(basis ? "per_accelerator" : "system"));
                json_object_set_new(o, "published_tokens_per_s", tw_jnum(ptps));
                json_object_set_new(o, "measured_tokens_per_s", tw_jnum(mtps));
                json_object_set_new(o, "ratio_tokens_per_s", tw_jnum(tw_compare_ratio(mtps, ptps)));
                json_object_set_new(o, "published_tokens_per_j_low", tw_jnum(pf.tokens_per_j_low));
                json_object_set_new(o, "published_tokens_per_j_high",
                                    tw_jnum(pf.tokens_per_j_high));
                json_object_set_new(o, "published_tokens_per_j_from_rated_power",
                                    json_boolean(pf.tokens_per_j_from_rating));
                json_object_set_new(o, "measured_tokens_per_j", tw_jnum(mf.tokens_per_j));
                json_object_set_new(o, "ratio_tokens_per_j_low", tw_jnum(rlo));
                json_object_set_new(o, "ratio_tokens_per_j_high", tw_jnum(rhi));
                json_object_set_new(o, "measured_basis",
                                    json_string(mf.serving ? "serving.summary.output_tokens_per_s"
                                                           : "metrics.e2e_tokens_per_s"));
                json_object_set_new(o, "published_scenario", json_string(p->scenario));
                if (m->serving) tw_serving_fields(o, m->serving, p);
                json_array_append_new(rows, o);
            }
        }
    }
    /* Caveats: the preset's own, then what differs between this run and each published setup. */
    if (have_preset)
        for (int i = 0; i < preset.n_caveats; i++)
            tw_add_caveat(cav, "preset %s: %s", preset.name, preset.caveats[i]);
    else
        tw_add_caveat(cav, "no preset named (--preset): the run was not set up to mirror the "
                           "published setup; the ratios compare different work");
    const tw_run_row *m0 = &f->rows[0];
    for (int i = 0; i < nsel; i++) {
        const tw_published_row *p = sel[i];
        if (strcmp(m0->model, p->model))
            tw_add_caveat(cav, "%s: measured model %s is not the published model %s", p->id,
                          m0->model, p->model);
        if (m0->devices != p->count)
            tw_add_caveat(cav,
                          "%s: %d measured device(s) against %d %s; compare the per "
                          "accelerator rows",
                          p->id, m0->devices, p->count, p->accelerator);
        if (strcmp(m0->dtype, p->precision))
            tw_add_caveat(cav, "%s: measured %s weights against published %s", p->id, m0->dtype,
                          p->precision);
        if (p->metric != TW_PUB_J_PER_TOKEN)
            tw_add_caveat(cav,
                          "%s: published tokens/J derived as per-accelerator tokens/s / rated "
                          "%.0f W (%s): accelerator only, an upper bound for the system",
                          p->id, p->rated_w, p->rated_w_source);
        else
            tw_add_caveat(cav,
                          "%s: publishes energy only (%g-%g J/token); no throughput to "
                          "compare",
                          p->id, p->value, p->value_high);
        tw_add_caveat(cav, "%s: %s; %s. Source: %s (%s)", p->id, p->verification,
                      p->lengths_note[0] ? p->lengths_note : "lengths given", p->citation, p->url);
    }
    if (m0->energy_assumed)
        tw_add_caveat(cav, "measured energy is ASSUMED, not measured: %s", m0->energy_label);
    if (m0->serving) tw_serving_caveats(cav, m0, sel, nsel);

    if (fmt == TW_FMT_JSON) {
        json_t *root = json_object();
        json_object_set_new(root, "kind", json_string("compare_published"));
        json_object_set_new(root, "result", json_string(f->path));
        json_object_set_new(root, "preset", have_preset ? json_string(preset.name) : json_null());
        json_object_set_new(root, "rows", rows);
        json_object_set_new(root, "caveats", cav);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        printf("%s\n", s ? s : "null");
        free(s);
        json_decref(root);
    } else {
        if (fmt == TW_FMT_MD) {
            printf("## Measured (%s) against published\n\nratio = measured / published; tok/J "
                   "= output tokens per joule%s\n\n",
                   f->name,
                   m0->serving ? "; measured tok/s: the serving run's output tokens/s (MLPerf "
                                 "Server's \"Completed tokens per second\")"
                               : "");
            tw_table_print(&t, fmt, stdout);
            if (m0->serving) tw_serving_latency_table(f, sel, nsel);
        } else {
            tw_csv_rows(stdout, rows); /* every JSON field, plain numbers */
        }
        size_t i;
        json_t *v;
        if (fmt == TW_FMT_MD) {
            printf("\nCaveats:\n\n");
            json_array_foreach(cav, i, v) printf("- %s\n", json_string_value(v));
        } else {
            json_array_foreach(cav, i, v) tw_log("caveat: %s", json_string_value(v));
        }
        json_decref(rows);
        json_decref(cav);
    }
    tw_table_free(&t);
    return TW_OK;
}

/* ---- two results -------------------------------------------------------------------------------
 */

static int tw_same_scenario(const tw_run_row *a, const tw_run_row *b) {
    return !strcmp(a->model, b->model) && a->batch == b->batch && a->prompt == b->prompt &&
           a->gen == b->gen && a->tp == b->tp && !strcmp(a->dtype, b->dtype);
}

/* A warning: on stderr as it is found, and kept for the output (notes). */
static void tw_warn(json_t *warnings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tw_warn(json_t *warnings, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (tw_add_once(warnings, buf)) fprintf(stderr, "tokwatt compare: warning: %s\n", buf);
}

/* Every difference between the two setups that makes the change more than the change made. */
static void tw_mismatches(const tw_run_row *a, const tw_run_row *b, json_t *w) {
    struct {
        const char *what, *x, *y;
    } f[] = {{"model", a->model, b->model},
             {"device", a->device, b->device},
             {"CPU", a->cpu_model, b->cpu_model},
             {"host", a->host, b->host},
             {"backend", a->backend, b->backend},
             {"weight dtype", a->dtype, b->dtype},
             {"KV-cache dtype", a->kv_dtype, b->kv_dtype}};
    /* the device of a CPU run is its CPU: one warning, not two */
    int device_is_cpu = !strcmp(a->device, a->cpu_model) && !strcmp(b->device, b->cpu_model);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (strcmp(f[i].x, f[i].y) && !(i == 1 && device_is_cpu))
            tw_warn(w, "%s differs: baseline \"%s\", new \"%s\"", f[i].what, f[i].x, f[i].y);
    if (a->ep != b->ep)
        tw_warn(w, "expert parallelism differs: baseline --ep %d, new --ep %d", a->ep ? a->ep : 1,
                b->ep ? b->ep : 1);
    if (isfinite(a->routing_skew) && isfinite(b->routing_skew) &&
        a->routing_skew != b->routing_skew)
        tw_warn(w, "routing skew differs: baseline %g, new %g", a->routing_skew, b->routing_skew);
    if (a->batch != b->batch || a->prompt != b->prompt || a->gen != b->gen || a->tp != b->tp)
        tw_warn(w,
                "scenarios differ (baseline b%d p%d g%d tp%d, new b%d p%d g%d tp%d): the change "
                "is not only the change you made",
                a->batch, a->prompt, a->gen, a->tp, b->batch, b->prompt, b->gen, b->tp);
    const tw_run_row *r[2] = {a, b};
    for (int k = 0; k < 2; k++)
        if (!r[k]->complete)
            tw_warn(w, "%s (%s) is an incomplete run: %s", k ? "the new result" : "the baseline",
                    r[k]->label,
                    r[k]->incomplete_reason[0] ? r[k]->incomplete_reason : "no reason");
}

/* Larger is better for throughput and tokens/J, smaller for times. */
static int tw_lower_is_better(const char *metric) {
    return !strncmp(metric, "TTFT", 4) || !strncmp(metric, "TPOT", 4);
}

static tw_status tw_two_results(const tw_result_file *fa, const tw_result_file *fb, tw_format fmt,
                                double fail_above_pct, int *regressed) {
    const char *head[] = {"scenario", "metric",   "baseline",          "new",
                          "change",   "change %", "noise (max range)", "verdict"};
    tw_table t;
    tw_table_init(&t, 8, head);
    json_t *rows = json_array(), *notes = json_array(), *regs = json_array();
    int paired = 0;
    *regressed = 0;
    for (int i = 0; i < fa->nrows; i++) {
        const tw_run_row *a = &fa->rows[i], *b = NULL;
        for (int j = 0; j < fb->nrows && !b; j++)
            if (tw_same_scenario(a, &fb->rows[j])) b = &fb->rows[j];
        if (!b && fa->nrows == 1 && fb->nrows == 1) b = &fb->rows[0];
        if (!b) continue;
        paired++;
        tw_mismatches(a, b, notes);
        if (a->energy_assumed || b->energy_assumed)
            tw_add_caveat(notes,
                          "energy of %s is assumed (rated power), not measured: its "
                          "tokens/J follows throughput only",
                          a->energy_assumed && b->energy_assumed ? "both results"
                          : a->energy_assumed                    ? "the baseline"
                                                                 : "the new result");
        tw_spread tja = {0}, tjb = {0};
        tja.median = a->e2e_tokens_per_j;
        tjb.median = b->e2e_tokens_per_j;
        struct {
            const char *name;
            const tw_spread *sa, *sb;
        } mets[] = {{"prefill tokens/s", &a->sp_prefill, &b->sp_prefill},
                    {"decode tokens/s", &a->sp_decode, &b->sp_decode},
                    {"e2e tokens/s", &a->sp_e2e, &b->sp_e2e},
                    {"TTFT s", &a->sp_ttft, &b->sp_ttft},
                    {"TPOT s (median step)", &a->sp_tpot, &b->sp_tpot},
                    {"e2e tokens/J", &tja, &tjb}};
        char scen[256];
        snprintf(scen, sizeof scen, "%s b%d p%d g%d tp%d", a->model, a->batch, a->prompt, a->gen,
                 a->tp);
        for (size_t k = 0; k < sizeof mets / sizeof mets[0]; k++) {
            tw_diff d;
            if (tw_compare_diff(mets[k].sa, mets[k].sb, &d) != TW_OK) {
                tw_clear_error();
                continue;
            }
            /* worse by how much, in percent of the baseline (positive: a regression) */
            double worse_pct = (tw_lower_is_better(mets[k].name) ? d.rel : -d.rel) * 100;
            int reg = d.sig == TW_SIG_YES && fail_above_pct >= 0 && worse_pct > fail_above_pct;
            char c[5][64];
            tw_fmt(c[0], 64, d.a);
            tw_fmt(c[1], 64, d.b);
            tw_fmt(c[2], 64, d.delta);
            snprintf(c[3], 64, "%+.1f%%", d.rel * 100);
            tw_fmt(c[4], 64, d.noise);
            tw_table_addf(&t, "%s|%s|%s|%s|%s|%s|%s|%s%s", scen, mets[k].name, c[0], c[1], c[2],
                          c[3], c[4], tw_diff_verdict(&d), reg ? " REGRESSION" : "");
            json_t *o = json_object();
            json_object_set_new(o, "scenario", json_string(scen));
            json_object_set_new(o, "metric", json_string(mets[k].name));
            json_object_set_new(o, "baseline_median", tw_jnum(d.a));
            json_object_set_new(o, "new_median", tw_jnum(d.b));
            json_object_set_new(o, "change", tw_jnum(d.delta));
            json_object_set_new(o, "change_rel", tw_jnum(d.rel));
            json_object_set_new(o, "noise", tw_jnum(d.noise));
            json_object_set_new(o, "baseline_n", json_integer(mets[k].sa->n));
            json_object_set_new(o, "new_n", json_integer(mets[k].sb->n));
            json_object_set_new(o, "significant",
                                d.sig == TW_SIG_UNKNOWN ? json_null()
                                                        : json_boolean(d.sig == TW_SIG_YES));
            json_object_set_new(o, "verdict", json_string(tw_diff_verdict(&d)));
            json_object_set_new(o, "regression", json_boolean(reg));
            json_array_append_new(rows, o);
            if (reg) {
                char line[512];
                snprintf(line, sizeof line, "%s: %s %s -> %s (%+.1f%%, worse by more than %g%%)",
                         scen, mets[k].name, c[0], c[1], d.rel * 100, fail_above_pct);
                json_array_append_new(regs, json_string(line));
            }
        }
    }
    if (!paired) {
        tw_table_free(&t);
        json_decref(rows);
        json_decref(notes);
        json_decref(regs);
        return TW_ERR(TW_ERR_INVALID, "no row of %s has the scenario of a row of %s", fb->name,
                      fa->name);
    }
    *regressed = (int)json_array_size(regs);
    if (fmt == TW_FMT_JSON) {
        json_t *root = json_object();
        json_object_set_new(root, "kind", json_string("compare_results"));
        json_object_set_new(root, "baseline", json_string(fa->path));
        json_object_set_new(root, "new", json_string(fb->path));
        json_object_set_new(root, "significance_rule",
                            json_string("significant when |new median - baseline median| > max "
                                        "of the two results' (max - min) ranges over repetitions"));
        json_object_set_new(root, "rows", rows);
        json_object_set_new(root, "notes", notes);
        json_object_set_new(root, "fail_above_pct",
                            fail_above_pct >= 0 ? json_real(fail_above_pct) : json_null());
        json_object_set_new(root, "regressions", regs);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        printf("%s\n", s ? s : "null");
        free(s);
        json_decref(root);
    } else {
        if (fmt == TW_FMT_MD) {
            printf("## %s (baseline) against %s (new)\n\nchange = new - baseline (medians); "
                   "significant when |change| > noise = max of the two results' (max - min) "
                   "ranges over repetitions\n\n",
                   fa->name, fb->name);
            tw_table_print(&t, fmt, stdout);
        } else {
            tw_csv_rows(stdout, rows); /* every JSON field, plain numbers */
        }
        size_t i;
        json_t *v;
        if (fmt == TW_FMT_MD && json_array_size(notes)) printf("\nNotes:\n\n");
        json_array_foreach(notes, i, v) {
            if (fmt == TW_FMT_MD) printf("- %s\n", json_string_value(v));
        }
        if (fmt == TW_FMT_MD && json_array_size(regs)) {
            printf("\nRegressions (significant, worse by more than %g%%):\n\n", fail_above_pct);
            json_array_foreach(regs, i, v) printf("- %s\n", json_string_value(v));
        }
        json_decref(rows);
        json_decref(notes);
        json_decref(regs);
    }
    tw_table_free(&t);
    return TW_OK;
}

int tw_cmd_compare(int argc, char **argv) {
    tw_args a;
    if (tw_args_init(&a, "tokwatt compare", tw_compare_usage, argc, argv)) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_compare_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    int rc = TW_EXIT_USAGE, regressed = 0;
    tw_format fmt;
    const char *against, *preset, *pubpath, *p1, *p2;
    double fail_above = -1;
    tw_result_file fa = {0}, fb = {0};
    tw_published_set *pub = NULL;
    if (tw_args_format(&a, &fmt) || tw_args_str(&a, "--against", NULL, &against) ||
        tw_args_str(&a, "--preset", NULL, &preset) ||
        tw_args_str(&a, "--published", NULL, &pubpath) ||
        tw_args_double(&a, "--fail-above", -1, 0, 1e6, &fail_above))
        goto usage;
    p1 = tw_args_positional(&a);
    p2 = tw_args_positional(&a);
    if (tw_args_finish(&a)) goto usage;
    if (!p1) {
        TW_ERR(TW_ERR_INVALID, "a result file is needed");
        goto usage;
    }
    if (!p2 && fail_above >= 0) {
        TW_ERR(TW_ERR_INVALID, "--fail-above PCT gates one result against another: give "
                               "BASELINE and NEW");
        goto usage;
    }
    if (p2 && (against || preset || pubpath)) {
        TW_ERR(TW_ERR_INVALID, "two result files are compared with each other: --against, "
                               "--preset and --published apply to one result");
        goto usage;
    }
    rc = TW_EXIT_FAIL;
    if (tw_result_file_load(p1, &fa)) goto fail;
    if (p2) {
        if (tw_result_file_load(p2, &fb) || tw_two_results(&fa, &fb, fmt, fail_above, &regressed))
            goto fail;
    } else {
        pub = malloc(sizeof *pub);
        if (!pub) goto fail;
        if (tw_published_load(pubpath, pub)) goto fail;
        tw_status vs = tw_vs_published(&fa, pub, against, preset, fmt);
        if (vs == TW_ERR_INVALID) { /* an unknown id or preset: a bad argument */
            rc = TW_EXIT_USAGE;
            tw_cli_fail(&a);
            goto out;
        }
        if (vs != TW_OK) goto fail;
    }
    rc = TW_EXIT_OK;
    if (regressed) {
        fprintf(stderr,
                "tokwatt compare: %d significant regression(s) worse by more than %g%%: exit 3\n",
                regressed, fail_above);
        rc = TW_EXIT_CHECK;
    }
    goto out;
usage:
    tw_cli_fail(&a);
    goto out;
fail:
    fprintf(stderr, "tokwatt compare: error: %s\n", tw_error_text());
out:
    free(pub);
    tw_result_file_free(&fa);
    tw_result_file_free(&fb);
    tw_args_free(&a);
    return rc;
}
