/* The HTML report and markdown summary of `tokwatt report` (tw_report.h). Every chart is inline
 * SVG drawn here (the projection's by tw_project_svg), so the page loads nothing. */
#include "tw_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/project/tw_project.h"
#include "tw_metrics.h"
#include "tw_util.h"

const char *const tw_report_chart_ids[TW_REPORT_NCHARTS] = {"chart-throughput", "chart-roofline",
                                                            "chart-energy", "chart-projection"};

const char *const tw_report_serving_chart_ids[TW_REPORT_NSERVING_CHARTS] = {"chart-serving-latency",
                                                                            "chart-serving-cdf"};

static const char *const tw_palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                         "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
#define TW_NPAL 8

/* ---- growable text buffer ----------------------------------------------------------------------
 */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} tw_buf;

static void tw_bprintf(tw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tw_bprintf(tw_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* Text escaped for XML/HTML content and attribute values. */
static void tw_besc(tw_buf *b, const char *t) {
    for (; *t; t++) {
        switch (*t) {
        case '&':
            tw_bprintf(b, "&amp;");
            break;
        case '<':
            tw_bprintf(b, "&lt;");
            break;
        case '>':
            tw_bprintf(b, "&gt;");
            break;
        case '"':
            tw_bprintf(b, "&quot;");
            break;
        default:
            tw_bprintf(b, "%c", *t);
        }
    }
}

static void tw_fmtv(char *o, size_t n, double v) {
    if (!isfinite(v))
        snprintf(o, n, "n/a");
    else if (fabs(v) >= 1e5)
        snprintf(o, n, "%.3g", v);
    else if (fabs(v) >= 100)
        snprintf(o, n, "%.0f", v);
    else
        snprintf(o, n, "%.3g", v);
}

/* ---- axes --------------------------------------------------------------------------------------
 */
typedef struct {
    double x0, x1, y0, y1; /* data range (positive for log axes) */
    int logx, logy;
    double L, T, W, H; /* plot area in pixels */
} tw_axes;

static double tw_ax_x(const tw_axes *a, double x) {
    double f =
        a->logx ? (log(x) - log(a->x0)) / (log(a->x1) - log(a->x0)) : (x - a->x0) / (a->x1 - a->x0);
    return a->L + f * a->W;
}

static double tw_ax_y(const tw_axes *a, double y) {
    double f =
        a->logy ? (log(y) - log(a->y0)) / (log(a->y1) - log(a->y0)) : (y - a->y0) / (a->y1 - a->y0);
    return a->T + a->H - f * a->H;
}

/* Widens a range to decades (log) or to zero-based nice bounds (linear). */
static void tw_range(double *lo, double *hi, int logscale) {
    if (!isfinite(*lo) || !isfinite(*hi)) *lo = 1, *hi = 10;
    if (logscale) {
        *lo = pow(10, floor(log10(*lo)));
        *hi = pow(10, ceil(log10(*hi)));
        if (*hi <= *lo) *hi = *lo * 10;
    } else {
        *lo = 0;
        if (*hi <= 0) *hi = 1;
        double step = pow(10, floor(log10(*hi)));
        *hi = ceil(*hi / step * 1.05) * step;
    }
}

static void tw_svg_open(tw_buf *b, const char *id, int w, int h, const char *title) {
    tw_bprintf(b,
               "<svg id=\"%s\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n<title>",
               id, w, h, w, h);
    tw_besc(b, title);
    tw_bprintf(b, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
}

static void tw_axes_draw(tw_buf *b, const tw_axes *a, const char *xlabel, const char *ylabel,
                         int log2x) {
    tw_bprintf(b,
               "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n",
               a->L, a->T, a->W, a->H);
    /* x ticks */
    if (a->logx) {
        double base = log2x ? 2 : 10;
        for (double e = floor(log(a->x0) / log(base)); pow(base, e) <= a->x1 * 1.0001; e++) {
            double v = pow(base, e);
            if (v < a->x0 * 0.9999) continue;
            double x = tw_ax_x(a, v);
            char t[32];
            tw_fmtv(t, sizeof t, v);
            tw_bprintf(b,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                       x, a->T, x, a->T + a->H, x, a->T + a->H + 14, t);
        }
    } else {
        for (int i = 0; i <= 5; i++) {
            double v = a->x0 + (a->x1 - a->x0) * i / 5, x = tw_ax_x(a, v);
            char t[32];
            tw_fmtv(t, sizeof t, v);
            tw_bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x,
                       a->T + a->H + 14, t);
        }
    }
    /* y ticks */
    if (a->logy) {
        for (double e = floor(log10(a->y0)); pow(10, e) <= a->y1 * 1.0001; e++) {
            double v = pow(10, e), y = tw_ax_y(a, v);
            char t[32];
            snprintf(t, sizeof t, "1e%.0f", e);
            tw_bprintf(b,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                       a->L, y, a->L + a->W, y, a->L - 4, y + 4, t);
        }
    } else {
        for (int i = 0; i <= 5; i++) {
            double v = a->y0 + (a->y1 - a->y0) * i / 5, y = tw_ax_y(a, v);
            char t[32];
            tw_fmtv(t, sizeof t, v);
            tw_bprintf(b,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                       a->L, y, a->L + a->W, y, a->L - 4, y + 4, t);
        }
    }
    tw_bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", a->L + a->W / 2,
               a->T + a->H + 30);
    tw_besc(b, xlabel);
    tw_bprintf(b,
               "</text>\n<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" "
               "transform=\"rotate(-90 14 %.1f)\">",
               a->T + a->H / 2, a->T + a->H / 2);
    tw_besc(b, ylabel);
    tw_bprintf(b, "</text>\n");
}

static void tw_legend(tw_buf *b, double x, double y, int k, const char *text, int square) {
    const char *c = tw_palette[k % TW_NPAL];
    if (square)
        tw_bprintf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"8\" fill=\"%s\"/>", x,
                   y - 8, c);
    else
        tw_bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x + 4, y - 4, c);
    tw_bprintf(b, "<text x=\"%.1f\" y=\"%.1f\">", x + 12, y);
    tw_besc(b, text);
    tw_bprintf(b, "</text>\n");
}

/* ---- charts ------------------------------------------------------------------------------------
 */

static int tw_cmp_batch(const void *a, const void *b) {
    const tw_run_row *x = *(const tw_run_row *const *)a, *y = *(const tw_run_row *const *)b;
    return (x->batch > y->batch) - (x->batch < y->batch);
}

/* Throughput against batch: per file, e2e tokens/s (circles, solid line) and decode tokens/s
 * (squares, dashed), batch on a log2 axis. */
static void tw_chart_throughput(tw_buf *b, const tw_result_file *f, int nf) {
    double bmin = INFINITY, bmax = 0, ymax = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            bmin = fmin(bmin, r->batch);
            bmax = fmax(bmax, r->batch);
            if (isfinite(r->e2e_tps)) ymax = fmax(ymax, r->e2e_tps);
            if (isfinite(r->decode_tps)) ymax = fmax(ymax, r->decode_tps);
        }
    tw_axes a = {.logx = 1, .L = 70, .T = 20, .W = 480, .H = 260};
    a.x0 = pow(2, floor(log2(bmin)));
    a.x1 = pow(2, ceil(log2(bmax)));
    if (a.x1 <= a.x0) a.x1 = a.x0 * 2;
    a.y0 = 0;
    a.y1 = ymax;
    tw_range(&a.y0, &a.y1, 0);
    int h = 320 + (nf > 12 ? 16 * (nf - 12) : 0);
    tw_svg_open(b, tw_report_chart_ids[0], 840, h, "Throughput against batch size");
    tw_axes_draw(b, &a, "batch (sequences)", "tokens/s (system)", 1);
    for (int i = 0; i < nf; i++) {
        const char *c = tw_palette[i % TW_NPAL];
        const tw_run_row **rows = malloc(sizeof *rows * (size_t)f[i].nrows);
        if (!rows) {
            b->oom = 1;
            return;
        }
        for (int k = 0; k < f[i].nrows; k++) rows[k] = &f[i].rows[k];
        qsort(rows, (size_t)f[i].nrows, sizeof *rows, tw_cmp_batch);
        for (int series = 0; series < 2; series++) {
            tw_bprintf(b, "<polyline fill=\"none\" stroke=\"%s\"%s points=\"", c,
                       series ? " stroke-dasharray=\"4 3\"" : "");
            for (int k = 0; k < f[i].nrows; k++) {
                double v = series ? rows[k]->decode_tps : rows[k]->e2e_tps;
                if (isfinite(v))
                    tw_bprintf(b, "%.1f,%.1f ", tw_ax_x(&a, rows[k]->batch), tw_ax_y(&a, v));
            }
            tw_bprintf(b, "\"/>\n");
            for (int k = 0; k < f[i].nrows; k++) {
                double v = series ? rows[k]->decode_tps : rows[k]->e2e_tps;
                if (!isfinite(v)) continue;
                double x = tw_ax_x(&a, rows[k]->batch), y = tw_ax_y(&a, v);
                if (series)
                    tw_bprintf(b,
                               "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" "
                               "fill=\"%s\"/>\n",
                               x - 3.5, y - 3.5, c);
                else
                    tw_bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", x, y,
                               c);
            }
        }
        free(rows);
        char lab[160];
        snprintf(lab, sizeof lab, "%s (%s)", f[i].name, f[i].rows[0].model);
        tw_legend(b, 570, 40 + 16 * i, i, lab, 0);
    }
    tw_bprintf(b,
               "<text x=\"570\" y=\"%d\">circle, solid: end-to-end</text>"
               "<text x=\"570\" y=\"%d\">square, dashed: decode</text>\n</svg>\n",
               50 + 16 * nf, 66 + 16 * nf);
}

/* Per-device roofline coordinates of a row's prefill and decode (NaN when a field is missing).
 * prefill: FLOPs of the prefill pass (prefill GFLOP/s x TTFT) over the weight bytes read once
 *          (params x bytes per weight); performance = prefill GFLOP/s / devices.
 * decode:  2 x params x batch FLOPs per step over the bytes the step moves (of a mixture of
 *          experts, its active params: the weights that multiply a token); performance =
 *          intensity x decode bandwidth / devices. Attention FLOPs are left out of decode. */
static void tw_roof_points(const tw_run_row *r, double *xp, double *yp, double *xd, double *yd) {
    *xp = *yp = *xd = *yd = NAN;
    double ip =
        tw_metric_prefill_intensity(r->prefill_gflops, r->ttft_s, r->params, r->bytes_per_weight);
    if (isfinite(ip)) {
        *xp = ip;
        *yp = tw_metric_per_device(r->prefill_gflops, r->devices);
    }
    double id = tw_metric_decode_intensity(r->active_params, r->batch, r->decode_bytes_per_step);
    if (isfinite(id) && r->decode_bw_gbps > 0) {
        *xd = id;
        *yd = tw_metric_per_device(id * r->decode_bw_gbps, r->devices);
    }
}

static void tw_chart_roofline(tw_buf *b, const tw_result_file *f, int nf) {
    double xmin = INFINITY, xmax = 0, ymin = INFINITY, ymax = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            double x[2], y[2];
            tw_roof_points(r, &x[0], &y[0], &x[1], &y[1]);
            for (int j = 0; j < 2; j++)
                if (x[j] > 0 && y[j] > 0) {
                    xmin = fmin(xmin, x[j]), xmax = fmax(xmax, x[j]);
                    ymin = fmin(ymin, y[j]), ymax = fmax(ymax, y[j]);
                }
            if (r->peak_gflops > 0) ymax = fmax(ymax, r->peak_gflops);
            if (r->peak_gflops > 0 && r->membw_gbps > 0)
                xmax = fmax(xmax, 2 * r->peak_gflops / r->membw_gbps);
        }
    if (!isfinite(xmin)) xmin = 0.1, xmax = 1000, ymin = 0.1, ymax = 1000;
    tw_axes a = {.logx = 1, .logy = 1, .L = 70, .T = 20, .W = 480, .H = 300};
    a.x0 = xmin / 2, a.x1 = xmax * 2, a.y0 = ymin / 2, a.y1 = ymax * 2;
    tw_range(&a.x0, &a.x1, 1);
    tw_range(&a.y0, &a.y1, 1);
    int h = 360 + (nf > 14 ? 16 * (nf - 14) : 0);
    tw_svg_open(b, tw_report_chart_ids[1], 840, h,
                "Roofline: prefill and decode against compute and bandwidth ceilings");
    tw_axes_draw(b, &a, "arithmetic intensity (FLOP/byte)", "GFLOP/s per device", 0);
    tw_bprintf(b,
               "<clipPath id=\"roof-clip\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
               "height=\"%.1f\"/></clipPath>\n",
               a.L, a.T, a.W, a.H);
    for (int i = 0; i < nf; i++) {
        const char *c = tw_palette[i % TW_NPAL];
        const tw_run_row *r0 = &f[i].rows[0];
        if (r0->peak_gflops > 0 && r0->membw_gbps > 0) {
            /* min(peak, I x bandwidth): the ridge is at I = peak / bandwidth */
            double ridge = r0->peak_gflops / r0->membw_gbps;
            double xl = a.x0, xr = a.x1;
            tw_bprintf(b,
                       "<polyline clip-path=\"url(#roof-clip)\" fill=\"none\" stroke=\"%s\" "
                       "stroke-width=\"1.5\" stroke-opacity=\"0.6\" points=\"%.1f,%.1f %.1f,%.1f "
                       "%.1f,%.1f\"/>\n",
                       c, tw_ax_x(&a, xl), tw_ax_y(&a, xl * r0->membw_gbps), tw_ax_x(&a, ridge),
                       tw_ax_y(&a, r0->peak_gflops), tw_ax_x(&a, xr), tw_ax_y(&a, r0->peak_gflops));
        }
        for (int k = 0; k < f[i].nrows; k++) {
            double xp, yp, xd, yd;
            tw_roof_points(&f[i].rows[k], &xp, &yp, &xd, &yd);
            if (xp > 0 && yp > 0)
                tw_bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n",
                           tw_ax_x(&a, xp), tw_ax_y(&a, yp), c);
            if (xd > 0 && yd > 0)
                tw_bprintf(b,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" fill=\"%s\"/>\n",
                           tw_ax_x(&a, xd) - 3.5, tw_ax_y(&a, yd) - 3.5, c);
        }
        char lab[200], bw[32], pk[32];
        tw_fmtv(bw, sizeof bw, r0->membw_gbps);
        tw_fmtv(pk, sizeof pk, r0->peak_gflops);
        snprintf(lab, sizeof lab, "%.40s: %s GB/s, %s GFLOP/s", f[i].name, bw, pk);
        tw_legend(b, 560, 40 + 16 * i, i, lab, 0);
    }
    tw_bprintf(b,
               "<text x=\"560\" y=\"%d\">circle: prefill; square: decode</text>"
               "<text x=\"560\" y=\"%d\">line: min(peak, intensity x bandwidth)</text>\n</svg>\n",
               50 + 16 * nf, 66 + 16 * nf);
}

/* Joules per output token, end to end (bars), per row; assumed energy drawn hollow. */
static void tw_chart_energy(tw_buf *b, const tw_result_file *f, int nf) {
    int n = 0;
    double ymax = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++, n++)
            if (isfinite(f[i].rows[k].e2e_j_per_token))
                ymax = fmax(ymax, f[i].rows[k].e2e_j_per_token);
    tw_axes a = {.L = 70, .T = 20, .W = 480, .H = 260, .x0 = 0, .x1 = n > 0 ? n : 1};
    a.y1 = ymax;
    tw_range(&a.y0, &a.y1, 0);
    tw_svg_open(b, tw_report_chart_ids[2], 840, 320 + (nf > 12 ? 16 * (nf - 12) : 0),
                "Joules per output token");
    tw_bprintf(b,
               "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n",
               a.L, a.T, a.W, a.H);
    for (int i = 0; i <= 5; i++) {
        double v = a.y1 * i / 5, y = tw_ax_y(&a, v);
        char t[32];
        tw_fmtv(t, sizeof t, v);
        tw_bprintf(b,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                   a.L, y, a.L + a.W, y, a.L - 4, y + 4, t);
    }
    tw_bprintf(b, "<text x=\"14\" y=\"150\" text-anchor=\"middle\" transform=\"rotate(-90 14 "
                  "150)\">J per output token (end to end)</text>\n");
    int j = 0;
    double slot = a.W / (n > 0 ? n : 1);
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++, j++) {
            const tw_run_row *r = &f[i].rows[k];
            double x = a.L + slot * j + slot * 0.15, w = slot * 0.7;
            if (isfinite(r->e2e_j_per_token)) {
                double y = tw_ax_y(&a, r->e2e_j_per_token);
                tw_bprintf(b,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                           "fill=\"%s\" stroke=\"%s\"/>\n",
                           x, y, w, a.T + a.H - y,
                           r->energy_assumed ? "white" : tw_palette[i % TW_NPAL],
                           tw_palette[i % TW_NPAL]);
            }
            tw_bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">b%d</text>\n",
                       x + w / 2, a.T + a.H + 14, r->batch);
        }
    for (int i = 0; i < nf; i++) tw_legend(b, 560, 40 + 16 * i, i, f[i].name, 1);
    tw_bprintf(b, "<text x=\"560\" y=\"%d\">hollow bar: ASSUMED power</text>\n</svg>\n",
               50 + 16 * nf);
}

/* The row the projection is drawn for: the most tokens per joule with finite figures. */
static const tw_run_row *tw_best_row(const tw_result_file *f, int nf) {
    const tw_run_row *best = NULL;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            if (!(r->proj_tokens_per_s > 0) || !(r->proj_watts > 0)) continue;
            double tpj = r->proj_tokens_per_s / r->proj_watts;
            if (!best || tpj > best->proj_tokens_per_s / best->proj_watts) best = r;
        }
    return best;
}

static tw_status tw_chart_projection(tw_buf *b, const tw_result_file *f, int nf, char *caption,
                                     size_t cn) {
    const tw_run_row *r = tw_best_row(f, nf);
    if (!r) {
        /* No power figure anywhere: say so on the page rather than lose the other charts. */
        tw_bprintf(b,
                   "<svg id=\"%s\" viewBox=\"0 0 760 80\" width=\"760\" height=\"80\">\n"
                   "<text x=\"10\" y=\"40\">no projection: no row has watts per device "
                   "(no power sensor was readable; rerun with --watts W to assume a figure)"
                   "</text>\n</svg>\n",
                   tw_report_chart_ids[3]);
        snprintf(caption, cn,
                 "Not drawn: no row of these results has both e2e tokens/s and watts per "
                 "device.");
        return TW_OK;
    }
    tw_project_inputs *in = malloc(sizeof *in);
    tw_projection *p = malloc(sizeof *p);
    char *svg = NULL;
    tw_status st = TW_OK;
    if (!in || !p) {
        st = TW_ERR(TW_ERR_NOMEM, "report: projection");
        goto out;
    }
    tw_project_device dev = {
        .tokens_per_s = r->proj_tokens_per_s, .watts = r->proj_watts, .assumed = r->energy_assumed};
    snprintf(dev.source, sizeof dev.source, "%s", r->energy_source[0] ? r->energy_source : "?");
    if ((st = tw_project_inputs_load(in)) || (st = tw_project_compute(in, &dev, p)) ||
        (st = tw_project_svg(p, &svg)))
        goto out;
    /* Inline it: the id replaces the namespace declaration, which inline SVG in HTML does not
     * need. */
    const char *ns = "<svg xmlns=\"http://www.w3.org/2000/svg\" ";
    char *at = strstr(svg, "<svg");
    if (!at) {
        st = TW_ERR(TW_ERR_INTERNAL, "report: projection SVG has no <svg> element");
        goto out;
    }
    if (!strncmp(at, ns, strlen(ns))) {
        tw_bprintf(b, "<svg id=\"%s\" ", tw_report_chart_ids[3]);
        tw_bprintf(b, "%s\n", at + strlen(ns));
    } else {
        tw_bprintf(b, "<svg id=\"%s\"%s\n", tw_report_chart_ids[3], at + 4);
    }
    char head[512];
    tw_project_headline_of(p, TW_SCEN_POWER, head, sizeof head);
    int w = snprintf(caption, cn,
                     "Drawn for %s on the e2e basis (%.4g tokens/s and %.4g W per "
                     "device, %s). %s",
                     r->label, dev.tokens_per_s, dev.watts,
                     r->energy_assumed ? "ASSUMED watts" : "measured watts", head);
    /* a serving row: the goodput basis, the megawatts to serve the demand within its targets */
    if (isfinite(r->proj_goodput_tokens_per_s) && w > 0 && (size_t)w < cn) {
        tw_project_device g = dev;
        g.tokens_per_s = r->proj_goodput_tokens_per_s;
        if ((st = tw_project_compute(in, &g, p))) goto out;
        tw_project_headline_of(p, TW_SCEN_POWER, head, sizeof head);
        snprintf(caption + w, cn - (size_t)w,
                 " Within the latency targets (%s; goodput basis, %.4g tokens/s per device, "
                 "%.3gx the e2e figure): %s",
                 r->goodput_targets, g.tokens_per_s, g.tokens_per_s / dev.tokens_per_s, head);
    } else if (r->serving && r->goodput_targets[0] && w > 0 && (size_t)w < cn) {
        snprintf(caption + w, cn - (size_t)w,
                 " No goodput basis: no measured request met the latency targets (%s).",
                 r->goodput_targets);
    }
out:
    free(svg);
    free(in);
    free(p);
    return st;
}

/* ---- serving charts (schema 1.4 results) --------------------------------------------------------
 */

static int tw_nserving(const tw_result_file *f, int nf) {
    int n = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) n += f[i].rows[k].serving != NULL;
    return n;
}

/* The latency figures a serving row puts on the rate chart: every trial of its capacity search,
 * or its own run (at its offered rate, LoadGen's p99) when it has none. */
typedef struct {
    double rate, ttft, tpot;
    int met; /* 1 met, 0 failed, -1 no limits */
} tw_rate_pt;

static int tw_cmp_rate(const void *a, const void *b) {
    const tw_rate_pt *x = a, *y = b;
    return (x->rate > y->rate) - (x->rate < y->rate);
}

static int tw_rate_points(const tw_serve_result *v, tw_rate_pt *pt) {
    int n = 0;
    if (v->has_findrate) {
        for (int t = 0; t < v->findrate.n_trials; t++) {
            const tw_findrate_trial *x = &v->findrate.trials[t];
            pt[n++] = (tw_rate_pt){x->rate_rps, x->outcome.ttft_pctl_s, x->outcome.tpot_pctl_s,
                                   x->outcome.met};
        }
    } else if (isfinite(v->rate_rps)) {
        const tw_serve_summary *s = &v->summary;
        pt[n++] = (tw_rate_pt){v->rate_rps, s->limits_given ? s->ttft_pctl_s : s->ttft.p99_loadgen,
                               s->limits_given ? s->tpot_pctl_s : s->tpot.p99_loadgen,
                               s->limits_given ? s->constraint_met : -1};
    }
    qsort(pt, (size_t)n, sizeof *pt, tw_cmp_rate);
    return n;
}

/* The TTFT and TPOT limits as dashed lines across the plot: horizontal on a latency y axis,
 * vertical on a latency x axis; and a labelled vertical line at x. */
static void tw_vline(tw_buf *b, const tw_axes *a, double x, const char *color, const char *text) {
    double px = tw_ax_x(a, x);
    tw_bprintf(b,
               "<line class=\"limit\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
               "stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"8 4\"/>"
               "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">",
               px, a->T, px, a->T + a->H, color, px + 4, a->T + 12, color);
    tw_besc(b, text);
    tw_bprintf(b, "</text>\n");
}

static void tw_limit_lines(tw_buf *b, const tw_axes *a, const tw_serve_summary *lim, int vertical) {
    if (!lim) return;
    const double v[2] = {lim->limits.ttft_s * 1e3, lim->limits.tpot_s * 1e3};
    const char *name[2] = {"TTFT", "TPOT"}, *color[2] = {"#d62728", "#9467bd"};
    for (int i = 0; i < 2; i++) {
        char t[96];
        snprintf(t, sizeof t, "%s limit %g ms", name[i], v[i]);
        if (vertical) {
            tw_vline(b, a, v[i], color[i], t);
            continue;
        }
        double py = tw_ax_y(a, v[i]);
        tw_bprintf(b,
                   "<line class=\"limit\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                   "stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"8 4\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" text-anchor=\"end\">%s</text>\n",
                   a->L, py, a->L + a->W, py, color[i], a->L + a->W - 4, py - 4, color[i], t);
    }
}

/* The limits drawn: the first serving row's that has them. */
static const tw_serve_summary *tw_first_limits(const tw_result_file *f, int nf) {
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_serve_result *v = f[i].rows[k].serving;
            if (v && v->summary.limits_given) return &v->summary;
        }
    return NULL;
}

/* p99 TTFT (circles, solid) and p99 TPOT (squares, dashed) in ms against the offered request
 * rate, log y; hollow marks failed the constraint; the limits as dashed lines, the rate a
 * search found as a vertical line. */
static void tw_chart_serving_latency(tw_buf *b, const tw_result_file *f, int nf) {
    tw_rate_pt pt[TW_FINDRATE_MAX_TRIALS];
    double xmax = 0, ylo = INFINITY, yhi = 0;
    int nser = 0;
    const tw_serve_summary *lim = tw_first_limits(f, nf);
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_serve_result *v = f[i].rows[k].serving;
            if (!v) continue;
            int n = tw_rate_points(v, pt);
            nser += n > 0;
            for (int j = 0; j < n; j++) {
                xmax = fmax(xmax, pt[j].rate);
                const double y[2] = {pt[j].ttft * 1e3, pt[j].tpot * 1e3};
                for (int q = 0; q < 2; q++)
                    if (y[q] > 0 && isfinite(y[q])) ylo = fmin(ylo, y[q]), yhi = fmax(yhi, y[q]);
            }
        }
    if (lim) {
        ylo = fmin(ylo, lim->limits.tpot_s * 1e3);
        yhi = fmax(yhi, lim->limits.ttft_s * 1e3);
    }
    int h = 340 + (nser > 12 ? 16 * (nser - 12) : 0);
    tw_svg_open(b, tw_report_serving_chart_ids[0], 840, h, "Latency against request rate");
    if (nser == 0) {
        tw_bprintf(b, "<text x=\"10\" y=\"40\">no serving row has an offered rate (offline and "
                      "concurrency runs have none) or a capacity search</text>\n</svg>\n");
        return;
    }
    tw_axes a = {.logy = 1, .L = 70, .T = 20, .W = 480, .H = 280};
    a.x0 = 0;
    a.x1 = xmax;
    tw_range(&a.x0, &a.x1, 0);
    a.y0 = ylo;
    a.y1 = yhi;
    tw_range(&a.y0, &a.y1, 1);
    tw_axes_draw(b, &a, "offered request rate (requests/s, Poisson)",
                 "p99 latency (ms, LoadGen's percentile)", 0);
    tw_limit_lines(b, &a, lim, 0);
    int s = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_serve_result *v = f[i].rows[k].serving;
            if (!v) continue;
            int n = tw_rate_points(v, pt);
            if (n == 0) continue;
            const char *c = tw_palette[s % TW_NPAL];
            for (int series = 0; series < 2; series++) {
                tw_bprintf(b, "<polyline fill=\"none\" stroke=\"%s\"%s points=\"", c,
                           series ? " stroke-dasharray=\"4 3\"" : "");
                for (int j = 0; j < n; j++) {
                    double y = (series ? pt[j].tpot : pt[j].ttft) * 1e3;
                    if (y > 0 && isfinite(y))
                        tw_bprintf(b, "%.1f,%.1f ", tw_ax_x(&a, pt[j].rate), tw_ax_y(&a, y));
                }
                tw_bprintf(b, "\"/>\n");
                for (int j = 0; j < n; j++) {
                    double y = (series ? pt[j].tpot : pt[j].ttft) * 1e3;
                    if (!(y > 0) || !isfinite(y)) continue;
                    double px = tw_ax_x(&a, pt[j].rate), py = tw_ax_y(&a, y);
                    const char *fill = pt[j].met == 0 ? "white" : c;
                    if (series)
                        tw_bprintf(b,
                                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" "
                                   "fill=\"%s\" stroke=\"%s\"/>\n",
                                   px - 3.5, py - 3.5, fill, c);
                    else
                        tw_bprintf(b,
                                   "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" "
                                   "stroke=\"%s\"/>\n",
                                   px, py, fill, c);
                }
            }
            if (v->has_findrate && isfinite(v->findrate.rate_rps)) {
                char t[96];
                snprintf(t, sizeof t, "%.4g req/s (%s)", v->findrate.rate_rps,
                         tw_findrate_verdict_name(v->findrate.verdict));
                tw_vline(b, &a, v->findrate.rate_rps, c, t);
            }
            char lab[200];
            snprintf(lab, sizeof lab, "%.120s (%s%s)", f[i].rows[k].label, v->scenario,
                     v->has_findrate ? ", capacity search" : "");
            tw_legend(b, 570, 40 + 16 * s, s, lab, 0);
            s++;
        }
    tw_bprintf(b,
               "<text x=\"570\" y=\"%d\">circle, solid: p99 TTFT</text>"
               "<text x=\"570\" y=\"%d\">square, dashed: p99 TPOT</text>"
               "<text x=\"570\" y=\"%d\">hollow: the constraint failed</text>\n</svg>\n",
               50 + 16 * s, 66 + 16 * s, 82 + 16 * s);
}

static int tw_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The empirical distribution function of TTFT (solid) and TPOT (dashed) over each serving row's
 * measured requests, latency in ms on a log axis; at most 400 points a curve. */
static void tw_chart_serving_cdf(tw_buf *b, const tw_result_file *f, int nf) {
    double xlo = INFINITY, xhi = 0;
    int nser = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_serve_result *v = f[i].rows[k].serving;
            if (!v) continue;
            nser++;
            const tw_serve_dist *d[2] = {&v->summary.ttft, &v->summary.tpot};
            for (int q = 0; q < 2; q++)
                if (d[q]->n > 0 && d[q]->min * 1e3 > 0) {
                    xlo = fmin(xlo, d[q]->min * 1e3);
                    xhi = fmax(xhi, d[q]->max * 1e3);
                }
        }
    const tw_serve_summary *lim = tw_first_limits(f, nf);
    if (lim) {
        xlo = fmin(xlo, lim->limits.tpot_s * 1e3);
        xhi = fmax(xhi, lim->limits.ttft_s * 1e3);
    }
    int h = 340 + (nser > 12 ? 16 * (nser - 12) : 0);
    tw_svg_open(b, tw_report_serving_chart_ids[1], 840, h,
                "Per-request latency distribution (TTFT and TPOT)");
    tw_axes a = {.logx = 1, .L = 70, .T = 20, .W = 480, .H = 280};
    a.x0 = xlo;
    a.x1 = xhi;
    tw_range(&a.x0, &a.x1, 1);
    a.y0 = 0;
    a.y1 = 1;
    tw_axes_draw(b, &a, "latency per request (ms)", "fraction of measured requests <=", 0);
    tw_limit_lines(b, &a, lim, 1);
    int s = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_serve_result *v = f[i].rows[k].serving;
            if (!v) continue;
            const char *c = tw_palette[s % TW_NPAL];
            double *x = malloc(sizeof *x * (size_t)(v->n_requests > 0 ? v->n_requests : 1));
            if (!x) {
                b->oom = 1;
                return;
            }
            for (int series = 0; series < 2; series++) {
                int64_t n = 0;
                for (int64_t j = 0; j < v->n_requests; j++) {
                    const tw_serve_result_request *q = &v->requests[j];
                    if (q->warmup) continue;
                    if (series == 0)
                        x[n++] = (q->first_token_s - q->arrival_s) * 1e3;
                    else if (q->output_tokens > 1)
                        x[n++] = (q->finish_s - q->first_token_s) / (q->output_tokens - 1) * 1e3;
                }
                qsort(x, (size_t)n, sizeof *x, tw_cmp_d);
                int64_t step = n > 400 ? (n + 399) / 400 : 1;
                tw_bprintf(b, "<polyline fill=\"none\" stroke=\"%s\"%s points=\"", c,
                           series ? " stroke-dasharray=\"4 3\"" : "");
                for (int64_t j = 0; j < n; j += step) {
                    if (!(x[j] > 0)) continue;
                    double px = tw_ax_x(&a, x[j]);
                    /* a step: the fraction rises at each request's latency */
                    tw_bprintf(b, "%.1f,%.1f %.1f,%.1f ", px, tw_ax_y(&a, (double)j / n), px,
                               tw_ax_y(&a, (double)(j + 1) / n));
                }
                if (n > 0 && x[n - 1] > 0)
                    tw_bprintf(b, "%.1f,%.1f", tw_ax_x(&a, x[n - 1]), tw_ax_y(&a, 1.0));
                tw_bprintf(b, "\"/>\n");
            }
            free(x);
            char lab[200];
            snprintf(lab, sizeof lab, "%.120s (%lld requests)", f[i].rows[k].label,
                     (long long)v->summary.n_measured);
            tw_legend(b, 570, 40 + 16 * s, s, lab, 0);
            s++;
        }
    tw_bprintf(b,
               "<text x=\"570\" y=\"%d\">solid: TTFT</text>"
               "<text x=\"570\" y=\"%d\">dashed: TPOT (requests of 2+ tokens)</text>\n</svg>\n",
               50 + 16 * s, 66 + 16 * s);
}

/* One line per serving row: what was offered and what it met. */
static void tw_serving_table(tw_buf *b, const tw_result_file *f, int nf) {
    tw_bprintf(b, "<table>\n<tr><th>result</th><th>scenario</th><th>rate req/s</th>"
                  "<th>requests</th><th>p99 TTFT ms</th><th>p99 TPOT ms</th>"
                  "<th>output tok/s</th><th>goodput tok/s</th><th>targets</th>"
                  "<th>constraint</th><th>capacity search</th></tr>\n");
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            const tw_serve_result *v = r->serving;
            if (!v) continue;
            const tw_serve_summary *s = &v->summary;
            char c[5][32], search[160] = "none";
            tw_fmtv(c[0], 32, v->rate_rps);
            tw_fmtv(c[1], 32, (s->limits_given ? s->ttft_pctl_s : s->ttft.p99_loadgen) * 1e3);
            tw_fmtv(c[2], 32, (s->limits_given ? s->tpot_pctl_s : s->tpot.p99_loadgen) * 1e3);
            tw_fmtv(c[3], 32, s->output_tps);
            tw_fmtv(c[4], 32, s->goodput_output_tps);
            if (v->has_findrate)
                snprintf(search, sizeof search, "%s: %.4g req/s (%d trials)",
                         tw_findrate_verdict_name(v->findrate.verdict), v->findrate.rate_rps,
                         v->findrate.n_trials);
            tw_bprintf(b, "<tr><td>");
            tw_besc(b, r->label);
            tw_bprintf(b,
                       "</td><td>%s</td><td>%s</td><td>%lld</td><td>%s</td><td>%s</td>"
                       "<td>%s</td><td>%s</td><td>",
                       v->scenario, c[0], (long long)s->n_measured, c[1], c[2], c[3], c[4]);
            tw_besc(b, r->goodput_targets[0] ? r->goodput_targets : "none");
            tw_bprintf(b, "</td><td>%s</td><td>",
                       !s->limits_given    ? "no limits"
                       : s->constraint_met ? "met"
                                           : "NOT met");
            tw_besc(b, search);
            tw_bprintf(b, "</td></tr>\n");
        }
    tw_bprintf(b, "</table>\n");
}

/* ---- page --------------------------------------------------------------------------------------
 */

static void tw_runs_table(tw_buf *b, const tw_result_file *f, int nf) {
    tw_bprintf(b, "<table>\n<tr><th>result</th><th>model</th><th>backend</th><th>device</th>"
                  "<th>dtype</th><th>batch</th><th>prompt</th><th>gen</th><th>tp</th>"
                  "<th>prefill tok/s</th><th>decode tok/s</th><th>e2e tok/s</th><th>TTFT s</th>"
                  "<th>tok/J</th><th>energy</th></tr>\n");
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            char v[5][32];
            tw_fmtv(v[0], 32, r->prefill_tps);
            tw_fmtv(v[1], 32, r->decode_tps);
            tw_fmtv(v[2], 32, r->e2e_tps);
            tw_fmtv(v[3], 32, r->ttft_s);
            tw_fmtv(v[4], 32, r->e2e_tokens_per_j);
            tw_bprintf(b, "<tr><td>");
            tw_besc(b, r->label);
            tw_bprintf(b, "</td><td>");
            tw_besc(b, r->model);
            tw_bprintf(b, "</td><td>");
            tw_besc(b, r->backend);
            tw_bprintf(b, "</td><td>");
            tw_besc(b, r->device);
            tw_bprintf(b, "</td><td>");
            tw_besc(b, r->dtype);
            tw_bprintf(b,
                       "</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td>"
                       "<td>%s</td><td>%s</td><td>%s</td><td>",
                       r->batch, r->prompt, r->gen, r->tp, v[0], v[1], v[2], v[3], v[4]);
            tw_besc(b, r->energy_assumed ? "ASSUMED" : r->energy_source);
            tw_bprintf(b, "</td></tr>\n");
        }
    tw_bprintf(b, "</table>\n");
}

tw_status tw_report_html(const tw_result_file *f, int nf, const char *title, char **out) {
    if (nf < 1) return TW_ERR(TW_ERR_INVALID, "report: no result files");
    tw_buf b = {0};
    char when[32];
    tw_utc_iso(when, sizeof when, tw_unix_now_s());
    tw_bprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
                   "<title>");
    tw_besc(&b, title);
    tw_bprintf(&b,
               "</title>\n<style>\nbody{font-family:sans-serif;max-width:1100px;margin:1em auto;"
               "padding:0 1em;color:#222}\ntable{border-collapse:collapse;font-size:12px}\n"
               "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\n"
               "td:first-child,th:first-child{text-align:left}\n.caption{font-size:13px;"
               "color:#444}\nsvg{display:block;margin:0.5em 0}\n</style>\n</head>\n<body>\n"
               "<h1>");
    tw_besc(&b, title);
    tw_bprintf(&b,
               "</h1>\n<p>Generated %s by tokwatt report from %d result file(s). "
               "Self-contained: no scripts, no network.</p>\n",
               when, nf);
    tw_bprintf(&b, "<section id=\"runs\">\n<h2>Runs side by side</h2>\n");
    tw_runs_table(&b, f, nf);
    tw_bprintf(&b, "</section>\n");

    tw_bprintf(&b, "<section class=\"chart\" id=\"sec-throughput\">\n<h2>Throughput against "
                   "batch size</h2>\n");
    tw_chart_throughput(&b, f, nf);
    tw_bprintf(&b, "<p class=\"caption\">Output tokens per second of the whole system (all "
                   "devices) against the batch; a run is one point, a sweep a line.</p>\n"
                   "</section>\n");

    tw_bprintf(&b, "<section class=\"chart\" id=\"sec-roofline\">\n<h2>Roofline</h2>\n");
    tw_chart_roofline(&b, f, nf);
    tw_bprintf(&b, "<p class=\"caption\">Per device, log-log. Ceilings: the result's measured "
                   "bandwidth and peak, else configs/devices.json. Prefill: the pass's FLOPs over "
                   "the weight bytes read once; decode: 2 x params x batch FLOPs per step over "
                   "the bytes the step moves (attention FLOPs left out). Ceilings per result: ");
    for (int i = 0; i < nf; i++) {
        tw_besc(&b, f[i].name);
        tw_bprintf(&b, " (");
        tw_besc(&b, f[i].rows[0].ceiling_source[0] ? f[i].rows[0].ceiling_source : "none known");
        tw_bprintf(&b, ")%s", i + 1 < nf ? "; " : ".");
    }
    tw_bprintf(&b, "</p>\n</section>\n");

    tw_bprintf(&b, "<section class=\"chart\" id=\"sec-energy\">\n<h2>Joules per token</h2>\n");
    tw_chart_energy(&b, f, nf);
    tw_bprintf(&b, "<p class=\"caption\">End-to-end joules per output token. Hollow bars use "
                   "ASSUMED power (rated watts), not a measurement.</p>\n</section>\n");

    tw_bprintf(&b, "<section class=\"chart\" id=\"sec-projection\">\n<h2>Megawatt "
                   "projection</h2>\n");
    char cap[2400] = "";
    tw_status st = tw_chart_projection(&b, f, nf, cap, sizeof cap);
    if (st) {
        free(b.s);
        return tw_error_ctx(st, "report: projection chart");
    }
    tw_bprintf(&b, "<p class=\"caption\">");
    tw_besc(&b, cap);
    tw_bprintf(&b, " Assumptions and growth curves: configs/assumptions.json, configs/growth/; "
                   "see tokwatt project.</p>\n</section>\n");
    if (tw_nserving(f, nf) > 0) {
        const tw_serve_summary *lim = tw_first_limits(f, nf);
        tw_bprintf(&b, "<section class=\"chart\" id=\"sec-serving-latency\">\n<h2>Serving: "
                       "latency against request rate</h2>\n");
        tw_serving_table(&b, f, nf);
        tw_chart_serving_latency(&b, f, nf);
        tw_bprintf(&b, "<p class=\"caption\">p99 time to first token and time per output token "
                       "(LoadGen's percentile, sorted[(size_t)(n x 0.99)], warm-up requests "
                       "excluded) against the offered Poisson rate: every trial of a capacity "
                       "search, or a run's own rate. Dashed horizontal lines: the limits");
        if (lim) {
            tw_bprintf(&b, " (%s %s, p%g; ", lim->limits.conf_model, lim->limits.scenario,
                       lim->limits.percentile);
            tw_besc(&b, lim->limits.source);
            tw_bprintf(&b, ")");
        } else {
            tw_bprintf(&b, " (none: no serving row was judged against limits)");
        }
        tw_bprintf(&b, "; vertical: the highest rate the search found meeting them. Not an "
                       "MLPerf result (no early stopping, minimum query count or 600 s "
                       "duration; doc/SERVING.md).</p>\n</section>\n");
        tw_bprintf(&b, "<section class=\"chart\" id=\"sec-serving-cdf\">\n<h2>Serving: "
                       "per-request latency distribution</h2>\n");
        tw_chart_serving_cdf(&b, f, nf);
        tw_bprintf(&b, "<p class=\"caption\">Fraction of the measured requests whose TTFT (first "
                       "token - scheduled arrival) or TPOT ((E2E - TTFT) / (output tokens - 1)) "
                       "is at most the latency on the x axis; the limits as vertical lines.</p>\n"
                       "</section>\n");
    }
    tw_bprintf(&b, "</body>\n</html>\n");
    if (b.oom) {
        free(b.s);
        return TW_ERR(TW_ERR_NOMEM, "report: HTML buffer");
    }
    *out = b.s;
    return TW_OK;
}

tw_status tw_report_markdown(const tw_result_file *f, int nf, const char *title, char **out) {
    if (nf < 1) return TW_ERR(TW_ERR_INVALID, "report: no result files");
    tw_buf b = {0};
    tw_bprintf(&b, "## %s\n\n", title);
    tw_bprintf(&b, "| result | model | backend | device | dtype | batch | prompt | gen | tp | "
                   "prefill tok/s | decode tok/s | e2e tok/s | TTFT s | J/token | tok/J | "
                   "energy |\n|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                   "---:|---|\n");
    int assumed = 0;
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            char v[6][32];
            tw_fmtv(v[0], 32, r->prefill_tps);
            tw_fmtv(v[1], 32, r->decode_tps);
            tw_fmtv(v[2], 32, r->e2e_tps);
            tw_fmtv(v[3], 32, r->ttft_s);
            tw_fmtv(v[4], 32, r->e2e_j_per_token);
            tw_fmtv(v[5], 32, r->e2e_tokens_per_j);
            assumed |= r->energy_assumed;
            tw_bprintf(&b,
                       "| %s | %s | %s | %s | %s | %d | %d | %d | %d | %s | %s | %s | %s | %s "
                       "| %s | %s |\n",
                       r->label, r->model, r->backend, r->device, r->dtype, r->batch, r->prompt,
                       r->gen, r->tp, v[0], v[1], v[2], v[3], v[4], v[5],
                       r->energy_assumed ? "ASSUMED" : r->energy_source);
        }
    const tw_run_row *best = tw_best_row(f, nf);
    if (best) {
        char head[512];
        tw_status st =
            tw_project_headline(best->e2e_tps / best->devices, best->w_per_device,
                                best->energy_source, best->energy_assumed, head, sizeof head);
        if (st == TW_OK)
            tw_bprintf(&b, "\nProjection (%s, the most tokens per joule; e2e basis): %s\n",
                       best->label, head);
        else
            tw_clear_error();
    }
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f[i].nrows; k++) {
            const tw_run_row *r = &f[i].rows[k];
            const tw_serve_result *v = r->serving;
            if (!v) continue;
            const tw_serve_summary *s = &v->summary;
            char c[5][32];
            tw_fmtv(c[0], 32, v->rate_rps);
            tw_fmtv(c[1], 32, (s->limits_given ? s->ttft_pctl_s : s->ttft.p99_loadgen) * 1e3);
            tw_fmtv(c[2], 32, (s->limits_given ? s->tpot_pctl_s : s->tpot.p99_loadgen) * 1e3);
            tw_fmtv(c[3], 32, s->output_tps);
            tw_fmtv(c[4], 32, s->goodput_output_tps);
            tw_bprintf(&b,
                       "\nServing (%s): %s at %s requests/s, %lld measured requests: p99 TTFT %s "
                       "ms, p99 TPOT %s ms, %s output tokens/s, goodput %s tokens/s (%s)%s%s",
                       r->label, v->scenario, c[0], (long long)s->n_measured, c[1], c[2], c[3],
                       c[4], r->goodput_targets[0] ? r->goodput_targets : "no targets",
                       s->limits_given ? "; MLPerf constraint " : "",
                       !s->limits_given    ? ""
                       : s->constraint_met ? "met"
                                           : "NOT met");
            if (v->has_findrate)
                tw_bprintf(&b, "; capacity search %s: %.4g requests/s in %d trials",
                           tw_findrate_verdict_name(v->findrate.verdict), v->findrate.rate_rps,
                           v->findrate.n_trials);
            tw_bprintf(&b, ".\n");
            if (isfinite(r->proj_goodput_tokens_per_s) && r->proj_watts > 0) {
                char head[512];
                if (tw_project_headline(r->proj_goodput_tokens_per_s, r->proj_watts,
                                        r->energy_assumed && r->energy_label[0] ? r->energy_label
                                                                                : r->energy_source,
                                        r->energy_assumed, head, sizeof head) == TW_OK)
                    tw_bprintf(&b,
                               "\nProjection within the latency targets (%s; goodput basis, "
                               "%.4g tokens/s per device): %s\n",
                               r->goodput_targets, r->proj_goodput_tokens_per_s, head);
                else
                    tw_clear_error();
            }
        }
    if (assumed)
        tw_bprintf(&b, "\nEnergy marked ASSUMED comes from rated power (configs/devices.json), "
                       "not a measurement.\n");
    tw_bprintf(&b, "\nTokens are output (generated) tokens; tok/s is per system (all devices). "
                   "Synthetic weights of the named model's shape; not a benchmark submission.\n");
    if (b.oom) {
        free(b.s);
        return TW_ERR(TW_ERR_NOMEM, "report: markdown buffer");
    }
    *out = b.s;
    return TW_OK;
}

tw_status tw_report_write(const tw_result_file *f, int nf, const char *title, const char *dir) {
    char *html = NULL, *md = NULL;
    TW_TRY(tw_report_html(f, nf, title, &html));
    tw_status st = tw_report_markdown(f, nf, title, &md);
    char path[1024];
    if (st == TW_OK) {
        snprintf(path, sizeof path, "%s/report.html", dir);
        st = tw_write_file_atomic(path, html, strlen(html));
    }
    if (st == TW_OK) {
        snprintf(path, sizeof path, "%s/summary.md", dir);
        st = tw_write_file_atomic(path, md, strlen(md));
    }
    free(html);
    free(md);
    return st;
}
