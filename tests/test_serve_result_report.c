/* The report's serving sections (harness/report.c): with a serving result the page gains the
 * latency-against-rate chart (a mark per capacity-search trial and metric, the limits as lines,
 * the rate found marked) and the per-request latency distribution (a TTFT and a TPOT curve per
 * serving row); the projection's caption gives both bases; a page of static runs has neither
 * section. Counts come from the fixture file itself, read here with jansson, not from the code
 * under test. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/tw_report.h"

static const char *fixture(const char *name) {
    static char path[1024];
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src && *src, "TW_SOURCE_DIR names the source tree (set by ctest)");
    snprintf(path, sizeof path, "%s/tests/data/results/%s.json", src, name);
    return path;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The text of <svg id="ID" ...> up to its </svg> (malloc'd), or NULL. */
static char *chart(const char *html, const char *id) {
    char want[96];
    snprintf(want, sizeof want, "<svg id=\"%s\"", id);
    const char *a = strstr(html, want);
    if (!a) return NULL;
    const char *e = strstr(a, "</svg>");
    cr_assert_not_null(e);
    return strndup(a, (size_t)(e - a));
}

Test(serve_result_report, serving_sections_and_their_marks) {
    tw_result_file f;
    cr_assert_eq(tw_result_file_load(fixture("serving-findrate"), &f), TW_OK, "%s",
                 tw_last_error());
    cr_assert_not_null(f.rows[0].serving);
    char *html = NULL, *md = NULL;
    cr_assert_eq(tw_report_html(&f, 1, "t", &html), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_report_markdown(&f, 1, "t", &md), TW_OK, "%s", tw_last_error());
    json_t *doc = NULL;
    json_error_t jerr;
    doc = json_load_file(fixture("serving-findrate"), 0, &jerr);
    cr_assert_not_null(doc);
    json_t *fr = json_object_get(json_object_get(doc, "serving"), "findrate");
    int ntrials = (int)json_array_size(json_object_get(fr, "trials"));
    double found = json_real_value(json_object_get(fr, "rate_rps"));
    cr_assert_eq(count(html, "<svg"), TW_REPORT_NCHARTS + TW_REPORT_NSERVING_CHARTS);
    char *lat = chart(html, tw_report_serving_chart_ids[0]);
    char *cdf = chart(html, tw_report_serving_chart_ids[1]);
    cr_assert(lat && cdf, "both serving charts are on the page");
    cr_assert(strstr(html, tw_report_serving_chart_ids[0]) <
                  strstr(html, tw_report_serving_chart_ids[1]),
              "in page order");
    /* one circle per trial (TTFT) plus the legend's; one square per trial (TPOT) */
    cr_assert_eq(count(lat, "<circle"), ntrials + 1, "%d trials", ntrials);
    cr_assert_geq(count(lat, "width=\"7\" height=\"7\""), ntrials);
    /* the TTFT and TPOT limits and the rate found: three limit lines */
    cr_assert_eq(count(lat, "class=\"limit\""), 3);
    cr_assert(strstr(lat, "TTFT limit 2000 ms") && strstr(lat, "TPOT limit 100 ms"));
    char lab[64];
    snprintf(lab, sizeof lab, "%.4g req/s (found)", found);
    cr_assert(strstr(lat, lab), "the rate found is marked: %s", lab);
    /* failed trials are hollow (the search brackets the rate: some failed) */
    cr_assert_gt(count(lat, "fill=\"white\" stroke="), 0);
    /* the distribution: a TTFT and a TPOT curve, the two limits */
    cr_assert_eq(count(cdf, "<polyline"), 2);
    cr_assert_eq(count(cdf, "class=\"limit\""), 2);
    cr_assert(strstr(html, "Within the latency targets (TTFT &lt;= 2000 ms, TPOT &lt;= 100 ms; "
                           "goodput basis"),
              "the projection's caption gives the goodput basis beside the e2e one");
    cr_assert(strstr(html, "on the e2e basis"));
    cr_assert(strstr(md, "Projection within the latency targets (TTFT <= 2000 ms, TPOT <= 100 ms"),
              "%s", md);
    cr_assert(strstr(md, "capacity search found:"), "%s", md);
    free(lat);
    free(cdf);
    free(html);
    free(md);
    json_decref(doc);
    tw_result_file_free(&f);
}

Test(serve_result_report, two_serving_results_and_a_static_one) {
    tw_result_file f[3];
    cr_assert_eq(tw_result_file_load(fixture("single"), &f[0]), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_result_file_load(fixture("serving"), &f[1]), TW_OK, "%s", tw_last_error());
    cr_assert_eq(tw_result_file_load(fixture("serving-findrate"), &f[2]), TW_OK, "%s",
                 tw_last_error());
    char *html = NULL;
    cr_assert_eq(tw_report_html(f, 3, "t", &html), TW_OK, "%s", tw_last_error());
    char *cdf = chart(html, tw_report_serving_chart_ids[1]);
    cr_assert_not_null(cdf);
    cr_assert_eq(count(cdf, "<polyline"), 4, "two curves per serving result");
    char *lat = chart(html, tw_report_serving_chart_ids[0]);
    /* serving.json has no search: its own run is one point per metric, and no found-rate line */
    cr_assert_eq(count(lat, "class=\"limit\""), 3);
    free(cdf);
    free(lat);
    free(html);
    /* a page of static runs alone: as before, no serving section */
    cr_assert_eq(tw_report_html(f, 1, "t", &html), TW_OK);
    cr_assert_null(strstr(html, "chart-serving"));
    cr_assert_null(strstr(html, "Serving:"));
    cr_assert_eq(count(html, "<svg"), TW_REPORT_NCHARTS);
    free(html);
    for (int i = 0; i < 3; i++) tw_result_file_free(&f[i]);
}
