/* Growth curves and assumptions: parsing with validation, and log-linear interpolation
 * (a constant annual growth rate between stated points, the last segment's rate beyond them). */
#include "tw_project.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_config.h"

#include "tw_util.h"

static const char *const tw_growth_units[] = {"MW", "MW/year", "billion USD/year",
                                              "million units/year", "x relative to first point"};

static const struct {
    const char *name;
    tw_bound b;
} tw_bounds[] = {
    {"stated", TW_BOUND_STATED},
    {"lower", TW_BOUND_LOWER},
    {"approx", TW_BOUND_APPROX},
    {"upper", TW_BOUND_UPPER},
};

const char *tw_bound_symbol(tw_bound b) {
    switch (b) {
    case TW_BOUND_STATED:
        return "";
    case TW_BOUND_LOWER:
        return "≥";
    case TW_BOUND_APPROX:
        return "≈";
    case TW_BOUND_UPPER:
        return "≲";
    }
    return "?";
}

const char *tw_bound_name(tw_bound b) {
    for (size_t k = 0; k < sizeof tw_bounds / sizeof tw_bounds[0]; k++)
        if (tw_bounds[k].b == b) return tw_bounds[k].name;
    return "?";
}

const char *tw_point_status_name(tw_point_status st) {
    switch (st) {
    case TW_PT_STATED:
        return "stated";
    case TW_PT_INTERPOLATED:
        return "interpolated";
    case TW_PT_EXTRAPOLATED:
        return "extrapolated";
    }
    return "?";
}

static tw_status tw_copy_str(json_t *obj, const char *key, const char *what, int required,
                             char *dst, size_t n) {
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!required) {
            dst[0] = '\0';
            return TW_OK;
        }
        return TW_ERR(TW_ERR_PARSE, "%s: missing \"%s\"", what, key);
    }
    if (!json_is_string(v)) return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" must be a string", what, key);
    if (strlen(json_string_value(v)) >= n)
        return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" longer than %zu characters", what, key, n - 1);
    snprintf(dst, n, "%s", json_string_value(v));
    return TW_OK;
}

tw_status tw_growth_parse(json_t *root, const char *what, tw_growth_series *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(root)) return TW_ERR(TW_ERR_PARSE, "%s: not a JSON object", what);
    TW_TRY(tw_copy_str(root, "series", what, 1, out->series, sizeof out->series));
    TW_TRY(tw_copy_str(root, "title", what, 1, out->title, sizeof out->title));
    TW_TRY(tw_copy_str(root, "figure", what, 1, out->figure, sizeof out->figure));
    TW_TRY(tw_copy_str(root, "unit", what, 1, out->unit, sizeof out->unit));
    TW_TRY(tw_copy_str(root, "source", what, 1, out->source, sizeof out->source));
    int unit_ok = 0;
    for (size_t i = 0; i < sizeof tw_growth_units / sizeof tw_growth_units[0]; i++)
        if (!strcmp(out->unit, tw_growth_units[i])) unit_ok = 1;
    if (!unit_ok)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: unknown unit \"%s\" (known: MW, MW/year, billion USD/year, million "
                      "units/year, x relative to first point)",
                      what, out->unit);
    json_t *pts = json_object_get(root, "points");
    if (!json_is_array(pts) || json_array_size(pts) == 0)
        return TW_ERR(TW_ERR_PARSE, "%s: \"points\" must be a non-empty array", what);
    if (json_array_size(pts) > TW_GROWTH_MAX_POINTS)
        return TW_ERR(TW_ERR_PARSE, "%s: more than %d points", what, TW_GROWTH_MAX_POINTS);
    size_t i;
    json_t *p;
    json_array_foreach(pts, i, p) {
        char pw[300];
        snprintf(pw, sizeof pw, "%s: point %zu", what, i);
        tw_growth_point *g = &out->pts[i];
        if (!json_is_object(p)) return TW_ERR(TW_ERR_PARSE, "%s: not an object", pw);
        json_t *y = json_object_get(p, "year"), *v = json_object_get(p, "value");
        if (!json_is_integer(y)) return TW_ERR(TW_ERR_PARSE, "%s: missing integer \"year\"", pw);
        g->year = (int)json_integer_value(y);
        if (g->year < 1990 || g->year > 2100)
            return TW_ERR(TW_ERR_PARSE, "%s: year %d outside 1990..2100", pw, g->year);
        if (!v || !json_is_number(v))
            return TW_ERR(TW_ERR_PARSE, "%s (year %d): missing numeric \"value\"", pw, g->year);
        g->value = json_number_value(v);
        if (!isfinite(g->value) || g->value <= 0)
            return TW_ERR(TW_ERR_PARSE,
                          "%s (year %d): value %g must be positive (growth is log-linear)", pw,
                          g->year, g->value);
        TW_TRY(tw_copy_str(p, "qualifier", pw, 1, g->qualifier, sizeof g->qualifier));
        TW_TRY(tw_copy_str(p, "note", pw, 0, g->note, sizeof g->note));
        char bound[16];
        TW_TRY(tw_copy_str(p, "bound", pw, 1, bound, sizeof bound));
        int found = 0;
        for (size_t k = 0; k < sizeof tw_bounds / sizeof tw_bounds[0]; k++)
            if (!strcmp(bound, tw_bounds[k].name)) g->bound = tw_bounds[k].b, found = 1;
        if (!found)
            return TW_ERR(TW_ERR_PARSE,
                          "%s (year %d): unknown bound \"%s\" (stated, lower, approx, upper)", pw,
                          g->year, bound);
        if (i > 0 && g->year <= out->pts[i - 1].year)
            return TW_ERR(TW_ERR_PARSE, "%s: years out of order (%d after %d)", what, g->year,
                          out->pts[i - 1].year);
        out->npoints = (int)i + 1;
    }
    return TW_OK;
}

tw_status tw_growth_load(const char *path, tw_growth_series *out) {
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    tw_status st = tw_growth_parse(root, path, out);
    json_decref(root);
    return st;
}

tw_status tw_growth_load_named(const char *name, tw_growth_series *out) {
    char rel[128], path[4096];
    snprintf(rel, sizeof rel, "growth/%s.json", name);
    TW_TRY(tw_config_path(rel, path, sizeof path));
    return tw_growth_load(path, out);
}

static tw_bound tw_bound_join(tw_bound a, tw_bound b) {
    if (a == b) return a;
    if (a == TW_BOUND_STATED) return b;
    if (b == TW_BOUND_STATED) return a;
    return TW_BOUND_APPROX;
}

tw_status tw_growth_at(const tw_growth_series *s, double year, double single_point_factor,
                       tw_growth_value *out) {
    if (s->npoints < 1) return TW_ERR(TW_ERR_INVALID, "growth series %s has no points", s->series);
    const tw_growth_point *p = s->pts;
    int n = s->npoints;
    for (int i = 0; i < n; i++) {
        if (fabs(year - p[i].year) < 1e-9) {
            out->value = p[i].value;
            out->status = TW_PT_STATED;
            out->bound = p[i].bound;
            out->annual_factor =
                n > 1 ? pow(p[i == n - 1 ? i : i + 1].value / p[i == n - 1 ? i - 1 : i].value,
                            1.0 / (p[i == n - 1 ? i : i + 1].year - p[i == n - 1 ? i - 1 : i].year))
                      : single_point_factor;
            return TW_OK;
        }
    }
    const tw_growth_point *a, *b;
    if (n == 1) {
        if (!(single_point_factor > 0) || !isfinite(single_point_factor))
            return TW_ERR(TW_ERR_INVALID,
                          "growth series %s (%s) has one stated point (%d): placing year %g needs "
                          "an assumed annual growth factor, got %g",
                          s->series, s->figure, p[0].year, year, single_point_factor);
        out->annual_factor = single_point_factor;
        out->value = p[0].value * pow(single_point_factor, year - p[0].year);
        out->status = TW_PT_EXTRAPOLATED;
        out->bound = p[0].bound;
        return TW_OK;
    }
    if (year < p[0].year) {
        a = &p[0], b = &p[1];
        out->status = TW_PT_EXTRAPOLATED;
        out->bound = p[0].bound;
    } else if (year > p[n - 1].year) {
        a = &p[n - 2], b = &p[n - 1];
        out->status = TW_PT_EXTRAPOLATED;
        out->bound = p[n - 1].bound;
    } else {
        int i = 0;
        while (p[i + 1].year < year) i++;
        a = &p[i], b = &p[i + 1];
        out->status = TW_PT_INTERPOLATED;
        out->bound = tw_bound_join(a->bound, b->bound);
    }
    /* log-linear: log v is linear in the year, i.e. a constant annual factor over the segment */
    double f = pow(b->value / a->value, 1.0 / (b->year - a->year));
    out->annual_factor = f;
    out->value = a->value * pow(f, year - a->year);
    return TW_OK;
}

tw_status tw_growth_overall_factor(const tw_growth_series *s, double *out) {
    if (s->npoints < 2)
        return TW_ERR(TW_ERR_INVALID, "growth series %s has %d point(s): no rate of its own",
                      s->series, s->npoints);
    const tw_growth_point *a = &s->pts[0], *b = &s->pts[s->npoints - 1];
    *out = pow(b->value / a->value, 1.0 / (b->year - a->year));
    return TW_OK;
}

/* ---- assumptions ----------------------------------------------------------------------------- */

static tw_status tw_assumption_get(json_t *all, const char *path, const char *name, int numeric,
                                   tw_assumption *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    json_t *o = json_object_get(all, name);
    char what[512];
    snprintf(what, sizeof what, "%s: assumption %s", path, name);
    if (!json_is_object(o)) return TW_ERR(TW_ERR_PARSE, "%s: missing", what);
    json_t *v = json_object_get(o, "value");
    if (numeric) {
        if (!json_is_number(v)) return TW_ERR(TW_ERR_PARSE, "%s: \"value\" must be a number", what);
        out->value = json_number_value(v);
        if (!isfinite(out->value) || out->value <= 0)
            return TW_ERR(TW_ERR_PARSE, "%s: value %g must be positive", what, out->value);
    } else {
        if (!json_is_string(v)) return TW_ERR(TW_ERR_PARSE, "%s: \"value\" must be a string", what);
        snprintf(out->text, sizeof out->text, "%s", json_string_value(v));
    }
    TW_TRY(tw_copy_str(o, "unit", what, 1, out->unit, sizeof out->unit));
    TW_TRY(tw_copy_str(o, "source", what, 1, out->source, sizeof out->source));
    if (!out->source[0]) return TW_ERR(TW_ERR_PARSE, "%s: empty source", what);
    return TW_OK;
}

tw_status tw_assumptions_load(const char *path, tw_assumptions *out) {
    char buf[4096];
    if (!path) {
        TW_TRY(tw_config_path("assumptions.json", buf, sizeof buf));
        path = buf;
    }
    json_t *root = NULL;
    TW_TRY(tw_json_load_file(path, &root));
    json_t *all = json_object_get(root, "assumptions");
    tw_status st = TW_OK;
    if (!json_is_object(all)) st = TW_ERR(TW_ERR_PARSE, "%s: missing \"assumptions\"", path);
    if (!st) st = tw_assumption_get(all, path, "fleet_tokens_per_j", 1, &out->fleet_tokens_per_j);
    if (!st) st = tw_assumption_get(all, path, "inference_share", 1, &out->inference_share);
    if (!st) st = tw_assumption_get(all, path, "price_usd_per_token", 1, &out->price_usd_per_token);
    if (!st) st = tw_assumption_get(all, path, "pue", 1, &out->pue);
    if (!st)
        st = tw_assumption_get(all, path, "accelerator_lifetime_years", 1, &out->lifetime_years);
    if (!st) st = tw_assumption_get(all, path, "ref_tokens_per_s", 1, &out->ref_tokens_per_s);
    if (!st) st = tw_assumption_get(all, path, "utilisation", 1, &out->utilisation);
    if (!st) st = tw_assumption_get(all, path, "power_growth_from", 0, &out->power_growth_from);
    json_decref(root);
    if (st) return st;
    if (out->inference_share.value > 1 || out->utilisation.value > 1)
        return TW_ERR(TW_ERR_PARSE, "%s: inference_share and utilisation must be fractions <= 1",
                      path);
    if (out->pue.value < 1) return TW_ERR(TW_ERR_PARSE, "%s: pue %g below 1", path, out->pue.value);
    return TW_OK;
}
