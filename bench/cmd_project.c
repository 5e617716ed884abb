/* `tokwatt project`: devices and megawatts needed to serve each year's projected token demand
 * (2025-2030) under the power, revenue and shipments scenarios, from a result file or explicit
 * tokens/s and watts per device; table, JSON or CSV on stdout, SVG chart beside the results. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/project/tw_project.h"
#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_results.h"
#include "tw_util.h"

static const char *tw_project_usage =
    "tokwatt project [--results FILE | --tokens-per-s T --watts W] [--basis auto|goodput|e2e] "
    "[--scenario all|power|revenue|shipments] [--headline-scenario S] [--format md|json|csv] "
    "[--svg PATH | --no-svg] [--results-dir DIR] [assumption overrides]\n"
    "  --results FILE        a tokwatt run result (default: the newest in --results-dir, "
    "results/);\n"
    "                        uses e2e tokens/s per device and mean watts per device, or for a "
    "serving\n"
    "                        result with latency objectives its goodput (below)\n"
    "  --basis B             auto (default): goodput when the result has one, else e2e; "
    "goodput: the output\n"
    "                        tokens/s of the requests that met the latency targets (the "
    "megawatts to serve\n"
    "                        demand within them); e2e: metrics.e2e_tokens_per_s, the static "
    "(offline) figure\n"
    "  --tokens-per-s T      tokens/s per device (with --watts, instead of a result file)\n"
    "  --watts W             watts per device; labelled as given (assumed), not measured\n"
    "  --format csv          one line per (scenario, year), every figure of the JSON rows\n"
    "  --svg PATH            chart path (default: beside the result file, or "
    "results/projection-<time>.svg)\n"
    "  assumption overrides (defaults and sources in configs/assumptions.json):\n"
    "  --fleet-tokens-per-j X   --inference-share F   --price-per-mtok USD   --pue X\n"
    "  --lifetime-years Y       --ref-tokens-per-s T  --utilisation F\n"
    "  --power-growth-from revenue|dc_additions|FACTOR";

static void tw_set(tw_assumption *a, double v) {
    if (v != a->value) {
        a->value = v;
        a->overridden = 1;
    }
}

static tw_status tw_override(tw_args *a, tw_project_inputs *in) {
    tw_assumptions *s = &in->a;
    double v;
    TW_TRY(tw_args_double(a, "--fleet-tokens-per-j", s->fleet_tokens_per_j.value, 1e-6, 1e6, &v));
    tw_set(&s->fleet_tokens_per_j, v);
    TW_TRY(tw_args_double(a, "--inference-share", s->inference_share.value, 1e-6, 1, &v));
    tw_set(&s->inference_share, v);
    TW_TRY(
        tw_args_double(a, "--price-per-mtok", s->price_usd_per_token.value * 1e6, 1e-6, 1e6, &v));
    if (fabs(v - s->price_usd_per_token.value * 1e6) > 1e-12 * v)
        tw_set(&s->price_usd_per_token, v * 1e-6);
    TW_TRY(tw_args_double(a, "--pue", s->pue.value, 1, 5, &v));
    tw_set(&s->pue, v);
    TW_TRY(tw_args_double(a, "--lifetime-years", s->lifetime_years.value, 0.5, 30, &v));
    tw_set(&s->lifetime_years, v);
    TW_TRY(tw_args_double(a, "--ref-tokens-per-s", s->ref_tokens_per_s.value, 1e-6, 1e12, &v));
    tw_set(&s->ref_tokens_per_s, v);
    TW_TRY(tw_args_double(a, "--utilisation", s->utilisation.value, 1e-6, 1, &v));
    tw_set(&s->utilisation, v);
    const char *g;
    TW_TRY(tw_args_str(a, "--power-growth-from", NULL, &g));
    if (g) TW_TRY(tw_project_set_power_growth(in, g, 1));
    return TW_OK;
}

static void tw_fmt_num(char *b, size_t n, double v) {
    if (v >= 1e6)
        snprintf(b, n, "%.4g", v);
    else if (v >= 10)
        snprintf(b, n, "%.0f", v);
    else
        snprintf(b, n, "%.3g", v);
}

static void tw_print_table(const tw_projection *p, int only, tw_format fmt) {
    const char *head[] = {"year",         "scenario",    "demand (tokens/s)", "devices",
                          "IT MW",        "facility MW", "DC additions MW",   "share of additions",
                          "extrapolated", "basis"};
    tw_table t;
    tw_table_init(&t, 10, head);
    for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
        for (int s = 0; s < TW_SCEN_COUNT; s++) {
            if (only >= 0 && s != only) continue;
            const tw_project_row *r = &p->rows[s][k];
            char d[48], dv[48], it[48], fa[48], dc[48], basis[300], ex[40];
            snprintf(d, sizeof d, "%s%.3e", tw_bound_symbol(r->demand_bound),
                     r->demand_tokens_per_s);
            tw_fmt_num(dv, sizeof dv, r->devices);
            tw_fmt_num(it, sizeof it, r->it_mw);
            tw_fmt_num(fa, sizeof fa, r->facility_mw);
            snprintf(dc, sizeof dc, "%s%.0f", tw_bound_symbol(r->dc_bound), r->dc_additions_mw);
            snprintf(ex, sizeof ex, "%s%s%s", r->demand_extrapolated ? "demand" : "",
                     r->demand_extrapolated && r->dc_status == TW_PT_EXTRAPOLATED ? "+" : "",
                     r->dc_status == TW_PT_EXTRAPOLATED ? "additions" : "");
            if (!ex[0]) snprintf(ex, sizeof ex, "no");
            snprintf(basis, sizeof basis, "%s", r->basis);
            if (fmt == TW_FMT_CSV)
                for (char *c = basis; *c; c++)
                    if (*c == ',') *c = ';';
            tw_table_addf(&t, "%d|%s|%s|%s|%s|%s|%s|%.1f%%|%s|%s", r->year,
                          tw_scenario_name(r->scenario), d, dv, it, fa, dc,
                          r->share_of_additions * 100, ex, basis);
        }
    }
    tw_table_print(&t, fmt, stdout);
    tw_table_free(&t);
}

static void tw_print_assumptions(const tw_project_inputs *in, const tw_projection *p) {
    const tw_assumptions *a = &in->a;
    const tw_assumption *list[] = {&a->fleet_tokens_per_j,  &a->inference_share,
                                   &a->price_usd_per_token, &a->pue,
                                   &a->lifetime_years,      &a->ref_tokens_per_s,
                                   &a->utilisation,         &a->power_growth_from};
    printf("\nAssumptions (configs/assumptions.json; not given by the document):\n\n");
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        const tw_assumption *x = list[i];
        if (x->text[0])
            printf("- %s = %s (%.3fx/yr)%s: %s\n", x->name, x->text, x->value,
                   x->overridden ? " [command line]" : "", x->source);
        else
            printf("- %s = %g %s%s: %s\n", x->name, x->value, x->unit,
                   x->overridden ? " [command line]" : "", x->source);
    }
    printf("\nNotes: %s. Values before or after the document's stated points are extrapolated "
           "at the nearest segment's constant annual rate and marked in the 'extrapolated' "
           "column. ≥ marks a lower bound (\"over\"), ≈ \"roughly\", ≲ \"nearly\". %s\n",
           p->power_growth_note,
           p->dev.assumed ? "The watts are ASSUMED, not measured." : "The watts are measured.");
}

/* The device figures of a result of one combination on the basis asked (auto: goodput when the
 * row has one), and the e2e figures beside a goodput basis (*have_e2e, or e2e_why says why not). */
static tw_status tw_project_result_devices(const char *path, const char *basis,
                                           tw_project_device *dev, char *note, size_t note_n,
                                           int *goodput, tw_project_device *e2e, char *e2e_note,
                                           size_t e2e_note_n, char *e2e_why, size_t e2e_why_n,
                                           char *targets, size_t targets_n, int *have_e2e) {
    tw_result res;
    TW_TRY(tw_result_read_file(path, &res));
    tw_status st = TW_OK;
    *goodput = *have_e2e = 0;
    if (res.nrows != 1) {
        st = TW_ERR(TW_ERR_INVALID,
                    "%s is a sweep of %d rows: the projection takes one combination (a result of "
                    "tokwatt run without lists), or --tokens-per-s and --watts",
                    path, res.nrows);
    } else {
        const tw_result_row *row = &res.rows[0];
        int want_goodput = !strcmp(basis, "goodput") ||
                           (!strcmp(basis, "auto") && tw_project_row_has_goodput(row));
        if (want_goodput) {
            st = tw_project_device_goodput_from_row(row, path, dev, note, note_n);
            if (st == TW_OK) {
                *goodput = 1;
                tw_project_goodput_targets(row, targets, targets_n);
                if (tw_project_device_from_row(row, path, e2e, e2e_note, e2e_note_n) == TW_OK) {
                    *have_e2e = 1;
                } else {
                    snprintf(e2e_why, e2e_why_n, "%s", tw_error_text());
                    tw_clear_error();
                }
            }
        } else {
            st = tw_project_device_from_row(row, path, dev, note, note_n);
        }
    }
    tw_result_free(&res);
    return st;
}

int tw_cmd_project(int argc, char **argv) {
    tw_args a;
    if (tw_args_init(&a, "tokwatt project", tw_project_usage, argc, argv)) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_project_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    int rc = TW_EXIT_USAGE;
    tw_project_inputs *in = malloc(sizeof *in);
    tw_projection *p = malloc(sizeof *p), *pe = NULL; /* pe: the e2e basis beside goodput */
    json_t *js = NULL;
    char *svg = NULL;
    if (!in || !p) {
        fprintf(stderr, "tokwatt: error: out of memory\n");
        rc = TW_EXIT_FAIL;
        goto out;
    }
    if (tw_project_inputs_load(in)) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        rc = TW_EXIT_FAIL;
        goto out;
    }
    const char *results, *results_dir, *scen, *head_scen, *svg_path, *basis;
    double tps, watts;
    tw_format fmt;
    int no_svg = tw_args_flag(&a, "--no-svg");
    if (tw_args_str(&a, "--results", NULL, &results) ||
        tw_args_str(&a, "--results-dir", "results", &results_dir) ||
        tw_args_double(&a, "--tokens-per-s", 0, 1e-9, 1e15, &tps) ||
        tw_args_double(&a, "--watts", 0, 1e-6, 1e9, &watts) ||
        tw_args_str(&a, "--scenario", "all", &scen) ||
        tw_args_str(&a, "--headline-scenario", "power", &head_scen) ||
        tw_args_str(&a, "--svg", NULL, &svg_path) || tw_args_str(&a, "--basis", "auto", &basis) ||
        tw_args_format(&a, &fmt) || tw_override(&a, in) || tw_args_finish(&a)) {
        tw_cli_fail(&a);
        goto out;
    }
    if (strcmp(basis, "auto") && strcmp(basis, "goodput") && strcmp(basis, "e2e")) {
        TW_ERR(TW_ERR_INVALID, "--basis must be auto, goodput or e2e (got \"%s\")", basis);
        tw_cli_fail(&a);
        goto out;
    }
    int only = -1;
    tw_scenario hs;
    if (strcmp(scen, "all")) {
        tw_scenario s;
        if (tw_scenario_parse(scen, &s)) {
            tw_cli_fail(&a);
            goto out;
        }
        only = (int)s;
    }
    if (tw_scenario_parse(head_scen, &hs)) {
        tw_cli_fail(&a);
        goto out;
    }
    if (only >= 0 && strcmp(head_scen, "power") == 0) hs = (tw_scenario)only;
    tw_project_device dev = {0}, e2e_dev = {0};
    char note[1024] = "", found[4096], e2e_note[1024] = "", e2e_why[1024] = "", targets[160] = "";
    int goodput = 0, have_e2e = 0; /* the basis used; the e2e figures beside it */
    if (results && (tps > 0 || watts > 0)) {
        TW_ERR(TW_ERR_INVALID,
               "--results FILE takes tokens/s and watts from the file: it does not go with "
               "--tokens-per-s/--watts (give one or the other)");
        tw_cli_fail(&a);
        goto out;
    }
    if (strcmp(basis, "auto") && tps > 0 && watts > 0) {
        TW_ERR(TW_ERR_INVALID,
               "--basis %s chooses a result file's figure: it does not go with --tokens-per-s",
               basis);
        tw_cli_fail(&a);
        goto out;
    }
    if (tps > 0 && watts > 0) {
        dev.tokens_per_s = tps;
        dev.watts = watts;
        dev.assumed = 1;
        snprintf(dev.source, sizeof dev.source, "--watts given on the command line");
        snprintf(note, sizeof note, "tokens/s and watts per device from the command line");
    } else if ((tps > 0) != (watts > 0)) {
        TW_ERR(TW_ERR_INVALID, "--tokens-per-s and --watts go together (or give --results FILE)");
        tw_cli_fail(&a);
        goto out;
    } else {
        if (!results) {
            if (tw_result_newest(results_dir, found, sizeof found)) {
                tw_error_ctx(TW_ERR_IO, "no --results FILE and no --tokens-per-s/--watts");
                tw_cli_fail(&a);
                goto out;
            }
            results = found;
        }
        if (tw_project_result_devices(results, basis, &dev, note, sizeof note, &goodput, &e2e_dev,
                                      e2e_note, sizeof e2e_note, e2e_why, sizeof e2e_why, targets,
                                      sizeof targets, &have_e2e)) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
            rc = TW_EXIT_FAIL;
            goto out;
        }
    }
    tw_log("%s", note);
    if (goodput)
        tw_log("basis: GOODPUT at the latency targets (%s): the megawatts below serve the demand "
               "within them; %s",
               targets,
               have_e2e ? "the e2e basis (metrics.e2e_tokens_per_s: every output token, whether or "
                          "not its request met the targets) follows for comparison"
                        : e2e_why);
    if (tw_project_compute(in, &dev, p)) {
        fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
        rc = TW_EXIT_FAIL;
        goto out;
    }
    char headline[1400], h0[1024];
    tw_project_headline_of(p, hs, h0, sizeof h0);
    if (goodput)
        snprintf(headline, sizeof headline, "within the latency targets (%s; goodput basis): %s",
                 targets, h0);
    else
        snprintf(headline, sizeof headline, "%s", h0);
    /* the e2e basis beside the goodput one */
    char e2e_head[1024] = "";
    if (goodput && have_e2e) {
        pe = malloc(sizeof *pe);
        if (!pe || tw_project_compute(in, &e2e_dev, pe)) {
            fprintf(stderr, "tokwatt: error: %s\n", pe ? tw_error_text() : "out of memory");
            rc = TW_EXIT_FAIL;
            goto out;
        }
        tw_project_headline_of(pe, hs, e2e_head, sizeof e2e_head);
    }
    if (fmt == TW_FMT_JSON) {
        if (tw_project_to_json(in, p, &js)) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
            rc = TW_EXIT_FAIL;
            goto out;
        }
        json_object_set_new(js, "input_note", json_string(note));
        json_object_set_new(js, "headline", json_string(headline));
        json_object_set_new(js, "device_basis", json_string(goodput ? "goodput" : "e2e"));
        json_object_set_new(js, "latency_targets", goodput ? json_string(targets) : json_null());
        if (goodput && pe) {
            json_t *c = json_object(), *mw = json_object();
            json_object_set_new(c, "device_basis", json_string("e2e"));
            json_object_set_new(c, "tokens_per_s_per_device", json_real(e2e_dev.tokens_per_s));
            json_object_set_new(c, "watts_per_device", json_real(e2e_dev.watts));
            json_object_set_new(c, "input_note", json_string(e2e_note));
            json_object_set_new(c, "headline", json_string(e2e_head));
            for (int sc = 0; sc < TW_SCEN_COUNT; sc++) {
                json_t *y = json_object();
                json_object_set_new(y, "goodput",
                                    json_real(p->rows[sc][TW_PROJECT_NYEARS - 1].facility_mw));
                json_object_set_new(y, "e2e",
                                    json_real(pe->rows[sc][TW_PROJECT_NYEARS - 1].facility_mw));
                json_object_set_new(mw, tw_scenario_name((tw_scenario)sc), y);
            }
            json_object_set_new(c, "facility_mw_final_year", mw);
            json_object_set_new(c, "final_year", json_integer(TW_PROJECT_YEAR1));
            json_object_set_new(js, "e2e_comparison", c);
        } else if (goodput) {
            json_object_set_new(js, "e2e_comparison", json_null());
            json_object_set_new(js, "e2e_comparison_unavailable", json_string(e2e_why));
        }
        char *txt = json_dumps(js, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (txt) puts(txt);
        free(txt);
    } else {
        if (fmt == TW_FMT_MD) {
            printf("## Projection: devices and megawatts for projected token demand\n\n");
            if (goodput)
                printf("**Basis: goodput at the latency targets** (%s): %s. The megawatts are "
                       "those needed to serve the demand within the targets.\n\n",
                       targets, note);
            tw_print_table(p, only, fmt);
            tw_print_assumptions(in, p);
            printf("\n**Headline:** %s\n", headline);
            if (goodput && pe)
                printf("\n**Without the latency targets (e2e basis, metrics.e2e_tokens_per_s), for "
                       "comparison** (%.4g tokens/s per device against %.4g within the targets, "
                       "%.3gx): %s\n",
                       e2e_dev.tokens_per_s, dev.tokens_per_s,
                       e2e_dev.tokens_per_s / dev.tokens_per_s, e2e_head);
            else if (goodput)
                printf("\n**e2e basis:** not available: %s\n", e2e_why);
        } else {
            /* CSV: one line per (scenario, year) with every field of the JSON rows */
            if (tw_project_to_json(in, p, &js)) {
                fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
                rc = TW_EXIT_FAIL;
                goto out;
            }
            json_t *flat = json_array();
            json_t *sc = json_object_get(js, "scenarios");
            for (int s = 0; s < TW_SCEN_COUNT; s++) {
                if (only >= 0 && s != only) continue;
                size_t i;
                json_t *r;
                json_array_foreach(json_object_get(sc, tw_scenario_name((tw_scenario)s)), i, r) {
                    json_t *o = json_object();
                    json_object_set_new(o, "scenario",
                                        json_string(tw_scenario_name((tw_scenario)s)));
                    json_object_update(o, r);
                    /* bounds by name ("lower"): a symbol is no CSV cell to compute with */
                    json_object_del(o, "demand_bound");
                    json_object_del(o, "dc_additions_bound");
                    json_object_set_new(o, "device_basis",
                                        json_string(goodput ? "goodput" : "e2e"));
                    json_object_set_new(o, "tokens_per_s_per_device", json_real(dev.tokens_per_s));
                    json_object_set_new(o, "watts_per_device", json_real(dev.watts));
                    json_array_append_new(flat, o);
                }
            }
            tw_csv_rows(stdout, flat);
            json_decref(flat);
            tw_log("%s", headline);
        }
    }
    if (!no_svg) {
        char path[4200];
        if (svg_path) {
            snprintf(path, sizeof path, "%s", svg_path);
        } else if (results) {
            snprintf(path, sizeof path, "%s", results);
            size_t l = strlen(path);
            if (l > 5 && !strcmp(path + l - 5, ".json")) path[l - 5] = '\0';
            strncat(path, ".projection.svg", sizeof path - strlen(path) - 1);
        } else {
            char ts[64];
            tw_utc_compact(ts, sizeof ts, tw_unix_now_s());
            snprintf(path, sizeof path, "%s/projection-%s.svg", results_dir, ts);
        }
        if (tw_project_svg(p, &svg) || tw_write_file_atomic(path, svg, strlen(svg))) {
            fprintf(stderr, "tokwatt: error: %s\n", tw_error_text());
            rc = TW_EXIT_FAIL;
            goto out;
        }
        tw_log("chart: %s", path);
    }
    rc = TW_EXIT_OK;
out:
    free(pe);
    json_decref(js);
    free(svg);
    free(in);
    free(p);
    tw_args_free(&a);
    return rc;
}
