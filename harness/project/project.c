/* The projection: token demand per year under three scenarios built on the document's growth
 * curves, the devices and megawatts needed to serve it at a measured (or assumed) device, and
 * its share of the data-centre capacity additions; JSON, SVG and the one-line headline. */
#include "tw_project.h"

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_metrics.h"
#include "tw_util.h"

#define TW_SECONDS_PER_YEAR (365.25 * 86400.0)

const char *tw_scenario_name(tw_scenario s) {
    switch (s) {
    case TW_SCEN_POWER:
        return "power";
    case TW_SCEN_REVENUE:
        return "revenue";
    case TW_SCEN_SHIPMENTS:
        return "shipments";
    case TW_SCEN_COUNT:
        break;
    }
    return "?";
}

tw_status tw_scenario_parse(const char *name, tw_scenario *out) {
    for (int s = 0; s < TW_SCEN_COUNT; s++)
        if (!strcmp(name, tw_scenario_name((tw_scenario)s))) {
            *out = (tw_scenario)s;
            return TW_OK;
        }
    return TW_ERR(TW_ERR_INVALID, "unknown scenario \"%s\" (power, revenue, shipments)", name);
}

tw_status tw_project_set_power_growth(tw_project_inputs *in, const char *spec, int overridden) {
    tw_assumption *g = &in->a.power_growth_from;
    double f;
    if (!strcmp(spec, "revenue")) {
        TW_TRY(tw_growth_overall_factor(&in->revenue, &f));
    } else if (!strcmp(spec, "dc_additions")) {
        TW_TRY(tw_growth_overall_factor(&in->dc_additions, &f));
    } else {
        char *end;
        f = strtod(spec, &end);
        if (end == spec || *end || !isfinite(f) || f <= 0.1 || f > 10)
            return TW_ERR(TW_ERR_INVALID,
                          "power_growth_from \"%s\": expected revenue, dc_additions or an annual "
                          "growth factor in (0.1, 10] such as 1.5",
                          spec);
    }
    snprintf(g->text, sizeof g->text, "%s", spec);
    g->value = f;
    g->overridden = overridden;
    return TW_OK;
}

tw_status tw_project_inputs_load(tw_project_inputs *in) {
    memset(in, 0, sizeof *in);
    TW_TRY(tw_growth_load_named("revenue", &in->revenue));
    TW_TRY(tw_growth_load_named("shipments", &in->shipments));
    TW_TRY(tw_growth_load_named("inference_power", &in->inference_power));
    TW_TRY(tw_growth_load_named("dc_additions", &in->dc_additions));
    TW_TRY(tw_assumptions_load(NULL, &in->a));
    char spec[48];
    snprintf(spec, sizeof spec, "%s", in->a.power_growth_from.text);
    TW_TRY(tw_project_set_power_growth(in, spec, 0));
    return TW_OK;
}

static void tw_fmt_value(char *buf, size_t n, double v) {
    if (v >= 1e12)
        snprintf(buf, n, "%.3g trillion", v / 1e12);
    else if (v >= 1e9)
        snprintf(buf, n, "%.3g billion", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.3g million", v / 1e6);
    else if (v >= 100)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.3g", v);
}

static tw_bound tw_bound_merge(tw_bound a, tw_bound b) {
    if (a == b || b == TW_BOUND_STATED) return a;
    if (a == TW_BOUND_STATED) return b;
    return TW_BOUND_APPROX;
}

tw_status tw_project_compute(const tw_project_inputs *in, const tw_project_device *dev,
                             tw_projection *out) {
    if (!isfinite(dev->tokens_per_s) || dev->tokens_per_s <= 0)
        return TW_ERR(TW_ERR_INVALID, "tokens/s per device must be positive, got %g",
                      dev->tokens_per_s);
    if (!isfinite(dev->watts) || dev->watts <= 0)
        return TW_ERR(TW_ERR_INVALID, "watts per device must be positive, got %g", dev->watts);
    const tw_assumptions *a = &in->a;
    memset(out, 0, sizeof *out);
    out->dev = *dev;
    out->pue = a->pue.value;
    double pf = a->power_growth_from.value;
    snprintf(out->power_growth_note, sizeof out->power_growth_note,
             "inference power before %d placed at %.3fx/yr (%+.1f%%/yr) from "
             "power_growth_from=%s",
             in->inference_power.pts[in->inference_power.npoints - 1].year, pf, (pf - 1) * 100,
             a->power_growth_from.text);
    for (int s = 0; s < TW_SCEN_COUNT; s++) {
        for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
            int y = TW_PROJECT_YEAR0 + k;
            tw_project_row *r = &out->rows[s][k];
            r->year = y;
            r->scenario = (tw_scenario)s;
            tw_growth_value g;
            if (s == TW_SCEN_POWER) {
                TW_TRY(tw_growth_at(&in->inference_power, y, pf, &g));
                /* MW -> W, times tokens per joule = tokens per second */
                r->demand_tokens_per_s = g.value * 1e6 * a->fleet_tokens_per_j.value;
                r->demand_bound = g.bound;
                r->demand_extrapolated = g.status == TW_PT_EXTRAPOLATED;
                char rate[96] = "";
                if (g.status != TW_PT_STATED)
                    snprintf(rate, sizeof rate, " at %.3fx/yr from power_growth_from=%s", pf,
                             a->power_growth_from.text);
                snprintf(r->basis, sizeof r->basis,
                         "inference power %s%.0f MW (%s%s) x %.3g tokens/J",
                         tw_bound_symbol(g.bound), g.value, tw_point_status_name(g.status), rate,
                         a->fleet_tokens_per_j.value);
            } else if (s == TW_SCEN_REVENUE) {
                TW_TRY(tw_growth_at(&in->revenue, y, 0, &g));
                r->demand_tokens_per_s = g.value * 1e9 * a->inference_share.value /
                                         a->price_usd_per_token.value / TW_SECONDS_PER_YEAR;
                r->demand_bound = g.bound;
                r->demand_extrapolated = g.status == TW_PT_EXTRAPOLATED;
                snprintf(r->basis, sizeof r->basis,
                         "revenue %s%.1f B USD/yr (%s) x %.2f inference / %.3g USD/token",
                         tw_bound_symbol(g.bound), g.value, tw_point_status_name(g.status),
                         a->inference_share.value, a->price_usd_per_token.value);
            } else {
                double life = a->lifetime_years.value, installed_m = 0;
                tw_bound b = TW_BOUND_STATED;
                int extrap = 0;
                for (int j = 0; j < (int)ceil(life); j++) {
                    /* the oldest year counts by the fraction of a year left in the lifetime */
                    double w = fmin(1.0, life - j);
                    TW_TRY(tw_growth_at(&in->shipments, y - j, 0, &g));
                    installed_m += w * g.value;
                    b = tw_bound_merge(b, g.bound);
                    extrap |= g.status == TW_PT_EXTRAPOLATED;
                }
                r->demand_tokens_per_s = installed_m * 1e6 * a->inference_share.value *
                                         a->ref_tokens_per_s.value * a->utilisation.value;
                r->demand_bound = b;
                r->demand_extrapolated = extrap;
                snprintf(r->basis, sizeof r->basis,
                         "installed %s%.1f M accelerators (%d..%d shipments%s) x %.2f inference x "
                         "%.0f tokens/s x %.2f utilisation",
                         tw_bound_symbol(b), installed_m, y - (int)ceil(life) + 1, y,
                         extrap ? ", some extrapolated" : "", a->inference_share.value,
                         a->ref_tokens_per_s.value, a->utilisation.value);
            }
            r->devices = r->demand_tokens_per_s / dev->tokens_per_s;
            r->it_mw = r->devices * dev->watts / 1e6;
            r->facility_mw = r->it_mw * a->pue.value;
            TW_TRY(tw_growth_at(&in->dc_additions, y, 0, &g));
            r->dc_additions_mw = g.value;
            r->dc_status = g.status;
            r->dc_bound = g.bound;
            r->share_of_additions = r->facility_mw / r->dc_additions_mw;
            double life = a->lifetime_years.value, installed_m = 0;
            for (int j = 0; j < (int)ceil(life); j++) {
                TW_TRY(tw_growth_at(&in->shipments, y - j, 0, &g));
                installed_m += fmin(1.0, life - j) * g.value;
                r->installed_extrapolated |= g.status == TW_PT_EXTRAPOLATED;
            }
            r->installed_devices = installed_m * 1e6;
            r->exceeds_supply = r->devices > r->installed_devices || r->share_of_additions > 1.0;
        }
    }
    return TW_OK;
}

/* "12x", "1,400x", "3.2 million x" */
static void tw_fmt_times(char *buf, size_t n, double v) {
    char t[48];
    tw_fmt_value(t, sizeof t, v);
    snprintf(buf, n, "%s%s", t, v >= 1e6 ? " times" : "x");
}

void tw_project_headline_of(const tw_projection *p, tw_scenario s, char *buf, size_t n) {
    const tw_project_row *r = &p->rows[s][TW_PROJECT_NYEARS - 1];
    char dev[64], dem[64], how[320], it[64], fac[64];
    tw_fmt_value(dev, sizeof dev, r->devices);
    tw_fmt_value(dem, sizeof dem, r->demand_tokens_per_s);
    tw_fmt_value(it, sizeof it, r->it_mw);
    tw_fmt_value(fac, sizeof fac, r->facility_mw);
    /* a source label of the meter already says "assumed: ...": say it once */
    const char *src = p->dev.source;
    if (!strncmp(src, "assumed: ", 9)) src += 9;
    if (p->dev.assumed)
        snprintf(how, sizeof how, "watts ASSUMED, not measured: %s", src);
    else
        snprintf(how, sizeof how, "watts measured by %s", src);
    int w = snprintf(buf, n,
                     "at %.4g tokens/s and %.4g W per device (%s), serving the %d demand of "
                     "scenario %s (%s%s tokens/s%s)",
                     p->dev.tokens_per_s, p->dev.watts, how, r->year, tw_scenario_name(s),
                     tw_bound_symbol(r->demand_bound), dem,
                     r->demand_extrapolated ? ", extrapolated" : "");
    if (w < 0 || (size_t)w >= n) return;
    buf += w;
    n -= (size_t)w;
    if (!r->exceeds_supply) {
        snprintf(buf, n,
                 " takes %s devices and %s MW IT (%s MW facility, %.0f%% of that year's "
                 "data-centre additions%s)",
                 dev, it, fac, r->share_of_additions * 100,
                 r->dc_status == TW_PT_EXTRAPOLATED ? ", additions extrapolated" : "");
        return;
    }
    char inst[64], xd[64], xm[64], add[64];
    tw_fmt_value(inst, sizeof inst, r->installed_devices);
    tw_fmt_value(add, sizeof add, r->dc_additions_mw);
    tw_fmt_times(xd, sizeof xd, r->devices / r->installed_devices);
    tw_fmt_times(xm, sizeof xm, r->share_of_additions);
    snprintf(buf, n,
             ": this device could not serve that demand. It would take %s devices, %s the %s "
             "accelerators the shipments curve puts in service by %d%s, and %s MW of facility "
             "power, %s that year's data-centre additions of %s MW%s",
             dev, xd, inst, r->year, r->installed_extrapolated ? " (extrapolated)" : "", fac, xm,
             add, r->dc_status == TW_PT_EXTRAPOLATED ? " (extrapolated)" : "");
}

tw_status tw_project_headline(double tokens_per_s, double watts, const char *source_label,
                              int assumed, char *buf, size_t n) {
    tw_project_inputs *in = malloc(sizeof *in);
    tw_projection *p = malloc(sizeof *p);
    tw_status st = (in && p) ? TW_OK : TW_ERR(TW_ERR_NOMEM, "projection inputs");
    if (!st) st = tw_project_inputs_load(in);
    tw_project_device d = {.tokens_per_s = tokens_per_s, .watts = watts, .assumed = assumed};
    snprintf(d.source, sizeof d.source, "%s", source_label ? source_label : "unknown");
    if (!st) st = tw_project_compute(in, &d, p);
    if (!st) tw_project_headline_of(p, TW_SCEN_POWER, buf, n);
    free(in);
    free(p);
    return st;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static json_t *tw_assumption_json(const tw_assumption *a) {
    json_t *o = json_object();
    if (a->text[0]) {
        json_object_set_new(o, "value", json_string(a->text));
        json_object_set_new(o, "annual_factor", json_real(a->value));
    } else {
        json_object_set_new(o, "value", json_real(a->value));
    }
    json_object_set_new(o, "unit", json_string(a->unit));
    json_object_set_new(o, "source", json_string(a->source));
    json_object_set_new(o, "overridden", json_boolean(a->overridden));
    return o;
}

static json_t *tw_series_json(const tw_growth_series *s) {
    json_t *o = json_object(), *pts = json_array();
    json_object_set_new(o, "title", json_string(s->title));
    json_object_set_new(o, "figure", json_string(s->figure));
    json_object_set_new(o, "unit", json_string(s->unit));
    for (int i = 0; i < s->npoints; i++) {
        json_t *p = json_object();
        json_object_set_new(p, "year", json_integer(s->pts[i].year));
        json_object_set_new(p, "value", json_real(s->pts[i].value));
        json_object_set_new(p, "qualifier", json_string(s->pts[i].qualifier));
        json_array_append_new(pts, p);
    }
    json_object_set_new(o, "stated_points", pts);
    return o;
}

tw_status tw_project_to_json(const tw_project_inputs *in, const tw_projection *p, json_t **out) {
    json_t *root = json_object();
    json_object_set_new(root, "schema_version", json_integer(1));
    json_t *dev = json_object();
    json_object_set_new(dev, "tokens_per_s", json_real(p->dev.tokens_per_s));
    json_object_set_new(dev, "watts", json_real(p->dev.watts));
    json_object_set_new(dev, "source", json_string(p->dev.source));
    json_object_set_new(dev, "assumed", json_boolean(p->dev.assumed));
    json_object_set_new(root, "device", dev);
    const tw_assumptions *a = &in->a;
    json_t *as = json_object();
    const tw_assumption *list[] = {&a->fleet_tokens_per_j,  &a->inference_share,
                                   &a->price_usd_per_token, &a->pue,
                                   &a->lifetime_years,      &a->ref_tokens_per_s,
                                   &a->utilisation,         &a->power_growth_from};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        json_object_set_new(as, list[i]->name, tw_assumption_json(list[i]));
    json_object_set_new(root, "assumptions", as);
    json_object_set_new(root, "power_growth_note", json_string(p->power_growth_note));
    json_t *ser = json_object();
    json_object_set_new(ser, "revenue", tw_series_json(&in->revenue));
    json_object_set_new(ser, "shipments", tw_series_json(&in->shipments));
    json_object_set_new(ser, "inference_power", tw_series_json(&in->inference_power));
    json_object_set_new(ser, "dc_additions", tw_series_json(&in->dc_additions));
    json_object_set_new(root, "series", ser);
    json_t *sc = json_object(), *heads = json_object();
    for (int s = 0; s < TW_SCEN_COUNT; s++) {
        json_t *rows = json_array();
        for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
            const tw_project_row *r = &p->rows[s][k];
            json_t *o = json_object();
            json_object_set_new(o, "year", json_integer(r->year));
            json_object_set_new(o, "demand_tokens_per_s", json_real(r->demand_tokens_per_s));
            json_object_set_new(o, "demand_bound", json_string(tw_bound_symbol(r->demand_bound)));
            json_object_set_new(o, "demand_bound_name",
                                json_string(tw_bound_name(r->demand_bound)));
            json_object_set_new(o, "demand_extrapolated", json_boolean(r->demand_extrapolated));
            json_object_set_new(o, "basis", json_string(r->basis));
            json_object_set_new(o, "devices", json_real(r->devices));
            json_object_set_new(o, "it_mw", json_real(r->it_mw));
            json_object_set_new(o, "facility_mw", json_real(r->facility_mw));
            json_object_set_new(o, "dc_additions_mw", json_real(r->dc_additions_mw));
            json_object_set_new(o, "dc_additions_status",
                                json_string(tw_point_status_name(r->dc_status)));
            json_object_set_new(o, "dc_additions_bound", json_string(tw_bound_symbol(r->dc_bound)));
            json_object_set_new(o, "dc_additions_bound_name",
                                json_string(tw_bound_name(r->dc_bound)));
            json_object_set_new(o, "share_of_additions", json_real(r->share_of_additions));
            json_object_set_new(o, "installed_devices", json_real(r->installed_devices));
            json_object_set_new(o, "installed_extrapolated",
                                json_boolean(r->installed_extrapolated));
            json_object_set_new(o, "exceeds_supply", json_boolean(r->exceeds_supply));
            json_object_set_new(o, "watts_assumed", json_boolean(p->dev.assumed));
            json_array_append_new(rows, o);
        }
        json_object_set_new(sc, tw_scenario_name((tw_scenario)s), rows);
        char h[512];
        tw_project_headline_of(p, (tw_scenario)s, h, sizeof h);
        json_object_set_new(heads, tw_scenario_name((tw_scenario)s), json_string(h));
    }
    json_object_set_new(root, "scenarios", sc);
    json_object_set_new(root, "headlines", heads);
    *out = root;
    return TW_OK;
}

/* ---- SVG ---------------------------------------------------------------------------------------
 */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} tw_sbuf;

static void tw_sb_printf(tw_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tw_sb_printf(tw_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)w < b->cap - b->len) {
            b->len += (size_t)w;
            return;
        }
        size_t nc = (b->cap + (size_t)w + 1) * 2;
        char *nb = realloc(b->buf, nc);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = nc;
    }
}

/* The source label can come from a result file: keep it from breaking the XML. */
static void tw_xml_text(char *dst, size_t n, const char *src) {
    size_t j = 0;
    for (; *src && j + 1 < n; src++) {
        char c = *src;
        if (c == '<' || c == '>' || c == '&' || c == '"') c = '_';
        dst[j++] = c;
    }
    dst[j] = '\0';
}

tw_status tw_project_svg(const tw_projection *p, char **out) {
    char source[64];
    tw_xml_text(source, sizeof source, p->dev.source);
    const double W = 820, H = 470, L = 90, R = 230, T = 56, B = 76;
    const char *colour[TW_SCEN_COUNT] = {"#d62728", "#1f77b4", "#2ca02c"};
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
        for (int s = 0; s < TW_SCEN_COUNT; s++) {
            lo = fmin(lo, p->rows[s][k].facility_mw);
            hi = fmax(hi, p->rows[s][k].facility_mw);
        }
        lo = fmin(lo, p->rows[0][k].dc_additions_mw);
        hi = fmax(hi, p->rows[0][k].dc_additions_mw);
    }
    double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
    if (d1 <= d0) d1 = d0 + 1;
#define TW_X(k) (L + (W - L - R) * (k) / (double)(TW_PROJECT_NYEARS - 1))
#define TW_Y(v) (H - B - (H - T - B) * (log10(v) - d0) / (d1 - d0))
    tw_sbuf b = {0};
    b.cap = 8192;
    b.buf = malloc(b.cap);
    if (!b.buf) return TW_ERR(TW_ERR_NOMEM, "svg buffer");
    b.buf[0] = '\0';
    tw_sb_printf(&b,
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                 "<text x=\"%.0f\" y=\"20\" font-size=\"14\">Facility MW to serve projected "
                 "token demand, by scenario (PUE %.2f)</text>\n"
                 "<text x=\"%.0f\" y=\"38\" font-size=\"11\">at %.4g tokens/s and %.4g W per "
                 "device (%s%.60s)</text>\n",
                 W, H, L, p->pue, L, p->dev.tokens_per_s, p->dev.watts,
                 p->dev.assumed ? "ASSUMED watts: " : "measured by ", source);
    for (double d = d0; d <= d1; d++) {
        double y = TW_Y(pow(10, d));
        tw_sb_printf(&b,
                     "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g MW</text>\n",
                     L, y, W - R, y, L - 6, y + 4, pow(10, d));
    }
    for (int k = 0; k < TW_PROJECT_NYEARS; k++)
        tw_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", TW_X(k),
                     H - B + 18, TW_PROJECT_YEAR0 + k);
    for (int s = 0; s <= TW_SCEN_COUNT; s++) {
        int is_dc = s == TW_SCEN_COUNT;
        const char *c = is_dc ? "#000" : colour[s];
        tw_sb_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", c,
                     is_dc ? " stroke-dasharray=\"6,4\"" : "");
        for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
            const tw_project_row *r = &p->rows[is_dc ? 0 : s][k];
            tw_sb_printf(&b, "%.1f,%.1f ", TW_X(k),
                         TW_Y(is_dc ? r->dc_additions_mw : r->facility_mw));
        }
        tw_sb_printf(&b, "\"/>\n");
        for (int k = 0; k < TW_PROJECT_NYEARS; k++) {
            const tw_project_row *r = &p->rows[is_dc ? 0 : s][k];
            int ex = is_dc ? r->dc_status == TW_PT_EXTRAPOLATED : r->demand_extrapolated;
            double v = is_dc ? r->dc_additions_mw : r->facility_mw;
            /* hollow markers: extrapolated values */
            tw_sb_printf(&b,
                         "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" stroke=\"%s\" fill=\"%s\">"
                         "<title>%d: %.0f MW%s</title></circle>\n",
                         TW_X(k), TW_Y(v), c, ex ? "white" : c, r->year, v,
                         ex ? " (extrapolated)" : "");
        }
        const char *label = is_dc ? "DC capacity additions (Fig. 7)" : tw_scenario_name(s);
        tw_sb_printf(&b,
                     "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                     "stroke-width=\"2\"%s/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                     W - R + 15, T + 20 + 20.0 * s, W - R + 40, T + 20 + 20.0 * s, c,
                     is_dc ? " stroke-dasharray=\"6,4\"" : "", W - R + 46, T + 24 + 20.0 * s,
                     label);
    }
    tw_sb_printf(&b,
                 "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">log scale; hollow markers: "
                 "extrapolated beyond the document's stated points</text>\n"
                 "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%s</text>\n</svg>\n",
                 L, H - 30, L, H - 14, p->power_growth_note);
#undef TW_X
#undef TW_Y
    if (b.oom) {
        free(b.buf);
        return TW_ERR(TW_ERR_NOMEM, "svg buffer");
    }
    *out = b.buf;
    return TW_OK;
}

/* ---- result files ------------------------------------------------------------------------------
 */

/* Watts per device of a row and the power domains its figures are per: mean watts per device
 * (energy.e2e.mean_power_w_per_device, else energy.e2e.mean_power_w / energy.devices), over
 * scenario.devices, or energy.devices when the energy block combined the ranks' power domains
 * itself (ranks sharing a host whose power counts once). */
static tw_status tw_project_row_watts(const tw_result_row *row, const char *origin, double *w_out,
                                      int *per_dev_out, int *pdevs_out, int *by_energy_out) {
    int devs = row->scenario.devices;
    if (devs < 1) return TW_ERR(TW_ERR_PARSE, "%s: scenario.devices missing or < 1", origin);
    const tw_energy *e = &row->energy;
    if (!row->has_energy || !e->source[0] || !strcmp(e->source, "none"))
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: no power was measured or assumed in this run (energy.source %s); give "
                      "--watts W per device",
                      origin, row->has_energy && e->source[0] ? e->source : "missing");
    double w = e->e2e.mean_power_w_per_device;
    int per_dev = isfinite(w);
    if (!per_dev) {
        if (!isfinite(e->e2e.mean_power_w))
            return TW_ERR(TW_ERR_PARSE, "%s: no numeric energy.e2e.mean_power_w", origin);
        w = tw_metric_per_device(e->e2e.mean_power_w, e->devices >= 1 ? e->devices : devs);
    }
    int by_energy = e->devices >= 1 && (e->ranks > 0 || e->combined[0]);
    *w_out = w;
    *per_dev_out = per_dev;
    *pdevs_out = by_energy ? e->devices : devs;
    *by_energy_out = by_energy;
    return TW_OK;
}

static void tw_project_row_source(const tw_result_row *row, tw_project_device *out) {
    const tw_energy *e = &row->energy;
    out->assumed = e->assumed;
    snprintf(out->source, sizeof out->source, "%s",
             e->label[0] && out->assumed ? e->label : e->source);
}

tw_status tw_project_device_from_row(const tw_result_row *row, const char *origin,
                                     tw_project_device *out, char *note, size_t note_n) {
    memset(out, 0, sizeof *out);
    double tps = row->metrics.e2e_tokens_per_s.median;
    if (!isfinite(tps))
        return TW_ERR(TW_ERR_PARSE, "%s: no numeric metrics.e2e_tokens_per_s", origin);
    double w;
    int per_dev, pdevs, by_energy;
    TW_TRY(tw_project_row_watts(row, origin, &w, &per_dev, &pdevs, &by_energy));
    out->tokens_per_s = tw_metric_per_device(tps, pdevs);
    out->watts = w;
    tw_project_row_source(row, out);
    snprintf(note, note_n,
             "%s: tokens/s per device = metrics.e2e_tokens_per_s %.4g / %s %d; watts per device = "
             "%s",
             origin, tps, by_energy ? "energy.devices" : "scenario.devices", pdevs,
             per_dev ? "energy.e2e.mean_power_w_per_device"
                     : "energy.e2e.mean_power_w / energy.devices");
    if (!(tps > 0) || !(w > 0))
        return TW_ERR(TW_ERR_INVALID, "%s: tokens/s %g and watts %g must be positive", origin,
                      out->tokens_per_s, w);
    return TW_OK;
}

int tw_project_row_has_goodput(const tw_result_row *row) {
    return row->serving && row->serving->summary.slo_given &&
           isfinite(row->serving->summary.goodput_output_tps);
}

void tw_project_goodput_targets(const tw_result_row *row, char *buf, size_t n) {
    buf[0] = '\0';
    if (!tw_project_row_has_goodput(row)) return;
    const tw_serve_slo *o = &row->serving->summary.slo;
    size_t used = 0;
    const double v[3] = {o->ttft_s, o->tpot_s, o->e2e_s};
    const char *name[3] = {"TTFT", "TPOT", "E2E"};
    for (int i = 0; i < 3; i++) {
        if (!(v[i] > 0) || !isfinite(v[i])) continue;
        int w =
            snprintf(buf + used, n - used, "%s%s <= %g ms", used ? ", " : "", name[i], v[i] * 1e3);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

tw_status tw_project_device_goodput_from_row(const tw_result_row *row, const char *origin,
                                             tw_project_device *out, char *note, size_t note_n) {
    memset(out, 0, sizeof *out);
    if (!row->serving)
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: not a serving run (no serving block): no goodput at a latency target; "
                      "run tokwatt run --scenario server",
                      origin);
    const tw_serve_result *sv = row->serving;
    const tw_serve_summary *s = &sv->summary;
    if (!tw_project_row_has_goodput(row))
        return TW_ERR(TW_ERR_UNSUPPORTED,
                      "%s: the serving run has no goodput (no latency objective was given)",
                      origin);
    double w;
    int per_dev, pdevs, by_energy;
    TW_TRY(tw_project_row_watts(row, origin, &w, &per_dev, &pdevs, &by_energy));
    char targets[160];
    tw_project_goodput_targets(row, targets, sizeof targets);
    if (!(s->goodput_output_tps > 0))
        return TW_ERR(TW_ERR_INVALID,
                      "%s: no measured request met the latency targets (%s) at %s: the goodput is "
                      "0 tokens/s, so no number of these devices serves demand within them "
                      "(project on --basis e2e to see the offline figure)",
                      origin, targets, sv->scenario);
    out->tokens_per_s = tw_metric_per_device(s->goodput_output_tps, pdevs);
    out->watts = w;
    tw_project_row_source(row, out);
    char rate[200] = "";
    if (isfinite(sv->rate_rps))
        snprintf(rate, sizeof rate, " at %.4g requests/s%s", sv->rate_rps,
                 sv->has_findrate && isfinite(sv->findrate.rate_rps) &&
                         sv->findrate.rate_rps == sv->rate_rps
                     ? " (the highest rate the capacity search found meeting the MLPerf constraint)"
                     : "");
    char constraint[160] = "";
    if (s->limits_given)
        snprintf(constraint, sizeof constraint,
                 "; the MLPerf constraint (p%g TTFT <= %g ms, TPOT "
                 "<= %g ms) %s",
                 s->limits.percentile, s->limits.ttft_s * 1e3, s->limits.tpot_s * 1e3,
                 s->constraint_met ? "held" : "did NOT hold");
    snprintf(note, note_n,
             "%s: tokens/s per device = goodput at the latency targets (%s): "
             "serving.summary.goodput.output_tokens_per_s %.4g (output tokens/s of the %lld of "
             "%lld measured requests that met them, %s scenario%s) / %s %d%s; watts per device = "
             "%s",
             origin, targets, s->goodput_output_tps, (long long)s->n_good, (long long)s->n_measured,
             sv->scenario, rate, by_energy ? "energy.devices" : "scenario.devices", pdevs,
             constraint,
             per_dev ? "energy.e2e.mean_power_w_per_device"
                     : "energy.e2e.mean_power_w / energy.devices");
    if (!(w > 0)) return TW_ERR(TW_ERR_INVALID, "%s: watts %g must be positive", origin, w);
    return TW_OK;
}

tw_status tw_project_device_from_result(const char *path, tw_project_device *out, char *note,
                                        size_t note_n) {
    tw_result res;
    TW_TRY(tw_result_read_file(path, &res));
    tw_status st;
    if (res.nrows != 1)
        st = TW_ERR(TW_ERR_INVALID,
                    "%s is a sweep of %d rows: the projection takes one combination (a result of "
                    "tokwatt run without lists), or --tokens-per-s and --watts",
                    path, res.nrows);
    else
        st = tw_project_device_from_row(&res.rows[0], path, out, note, note_n);
    tw_result_free(&res);
    return st;
}
