/* The report page: well formed (a tag-balance and quoting checker written here), one chart per
 * chart section with the expected ids, nothing that would load from outside the page, and a
 * markdown summary with one line per run row. Inputs: the fixtures in tests/data/compare/ (a
 * run, another run, a three-row sweep). */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/tw_report.h"

/* Returns NULL when `s` is well formed: every element closed in order (XHTML style: void
 * elements self-closed), attribute values quoted, '&' only as an entity, one root <html>.
 * Otherwise a static message naming the problem. */
static const char *check_well_formed(const char *s) {
    static char msg[256];
    char stack[64][32];
    int depth = 0, roots = 0;
    for (const char *p = s; *p;) {
        if (*p == '&') {
            const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#"};
            int ok = 0;
            for (size_t i = 0; i < 5; i++) ok |= !strncmp(p, ents[i], strlen(ents[i]));
            if (!ok) {
                snprintf(msg, sizeof msg, "bare '&' at offset %td: %.20s", p - s, p);
                return msg;
            }
            p++;
            continue;
        }
        if (*p != '<') {
            p++;
            continue;
        }
        if (!strncmp(p, "<!DOCTYPE", 9) || !strncmp(p, "<!--", 4)) {
            const char *e = strchr(p, '>');
            if (!e) return "unterminated declaration";
            p = e + 1;
            continue;
        }
        int closing = p[1] == '/';
        const char *n = p + 1 + closing;
        if (!isalpha((unsigned char)*n)) {
            snprintf(msg, sizeof msg, "'<' not starting a tag at offset %td: %.20s", p - s, p);
            return msg;
        }
        char name[32];
        size_t k = 0;
        while ((isalnum((unsigned char)n[k]) || n[k] == '-' || n[k] == ':') && k < 31) {
            name[k] = n[k];
            k++;
        }
        name[k] = '\0';
        /* scan the tag, honouring quoted attribute values */
        const char *q = n + k;
        char quote = 0;
        for (; *q && (quote || *q != '>'); q++) {
            if (quote) {
                if (*q == quote) quote = 0;
                if (*q == '<') return "'<' inside an attribute value";
            } else if (*q == '"' || *q == '\'') {
                quote = *q;
            } else if (*q == '=' && q[1] != '"' && q[1] != '\'') {
                snprintf(msg, sizeof msg, "unquoted attribute in <%s> at offset %td", name, q - s);
                return msg;
            }
        }
        if (!*q) return "unterminated tag";
        int self = q[-1] == '/';
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name)) {
                snprintf(msg, sizeof msg, "</%s> at offset %td closes <%s>", name, p - s,
                         depth ? stack[depth - 1] : "(nothing)");
                return msg;
            }
            depth--;
        } else if (!self) {
            if (depth == 0) roots++;
            if (depth == 64) return "nesting deeper than 64";
            snprintf(stack[depth++], 32, "%s", name);
        } else if (depth == 0) {
            roots++;
        }
        p = q + 1;
    }
    if (depth) {
        snprintf(msg, sizeof msg, "<%s> never closed", stack[depth - 1]);
        return msg;
    }
    if (roots != 1) return "not exactly one root element";
    return NULL;
}

Test(report, the_checker_rejects_broken_markup) {
    cr_assert_null(check_well_formed("<!DOCTYPE html><html><body><p a=\"1\">x &amp; y</p><br/>"
                                     "</body></html>"));
    cr_assert_not_null(check_well_formed("<html><body><p>x</body></html>"));
    cr_assert_not_null(check_well_formed("<html><p a=1>x</p></html>"));
    cr_assert_not_null(check_well_formed("<html><p>a & b</p></html>"));
    cr_assert_not_null(check_well_formed("<html><p>a < b</p></html>"));
    cr_assert_not_null(check_well_formed("<html></html><html></html>"));
    cr_assert_not_null(check_well_formed("<html><meta charset=\"utf-8\"></html>"));
}

static tw_result_file files[3];

static void load_fixtures(void) {
    const char *names[] = {"base.json", "new.json", "sweep.json"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/data/compare/%s", TW_SOURCE_DIR, names[i]);
        cr_assert_eq(tw_result_file_load(path, &files[i]), TW_OK, "%s", tw_last_error());
    }
}

static void free_fixtures(void) {
    for (int i = 0; i < 3; i++) tw_result_file_free(&files[i]);
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

Test(report, html_is_well_formed_with_one_chart_per_section, .init = load_fixtures,
     .fini = free_fixtures) {
    char *html = NULL;
    cr_assert_eq(tw_report_html(files, 3, "test <report> & co", &html), TW_OK, "%s",
                 tw_last_error());
    const char *bad = check_well_formed(html);
    cr_assert_null(bad, "report.html is not well formed: %s", bad);
    cr_assert(strstr(html, "test &lt;report&gt; &amp; co"), "the title is escaped");
    /* chart sections, in order, each with exactly one <svg> carrying the expected id */
    const char *p = html;
    int sections = 0;
    while ((p = strstr(p, "<section class=\"chart\""))) {
        const char *end = strstr(p, "</section>");
        cr_assert(end);
        size_t len = (size_t)(end - p);
        char *sec = strndup(p, len);
        cr_assert_lt(sections, TW_REPORT_NCHARTS, "more chart sections than charts");
        cr_assert_eq(count(sec, "<svg"), 1, "section %d has %d <svg>", sections,
                     count(sec, "<svg"));
        char want[64];
        snprintf(want, sizeof want, "<svg id=\"%s\"", tw_report_chart_ids[sections]);
        cr_assert(strstr(sec, want), "section %d lacks %s", sections, want);
        /* drawn: marks inside the chart */
        int marks = count(sec, "<circle") + count(sec, "<rect") + count(sec, "<polyline");
        cr_assert_geq(marks, 4, "chart %s has %d marks", tw_report_chart_ids[sections], marks);
        free(sec);
        sections++;
        p = end;
    }
    cr_assert_eq(sections, TW_REPORT_NCHARTS);
    cr_assert_eq(count(html, "<svg"), TW_REPORT_NCHARTS, "charts outside chart sections");
    /* five run rows in the table (two runs and a three-row sweep) */
    cr_assert_eq(count(html, "<tr><td>"), 5);
    free(html);
}

Test(report, nothing_loads_from_outside_the_page, .init = load_fixtures, .fini = free_fixtures) {
    char *html = NULL;
    cr_assert_eq(tw_report_html(files, 3, "t", &html), TW_OK, "%s", tw_last_error());
    const char *banned[] = {"src=",    "href=",   "<script",  "<link", "<img",  "<iframe",
                            "@import", "http://", "https://", "//cdn", "xlink:"};
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
        cr_assert_null(strstr(html, banned[i]), "report.html contains \"%s\"", banned[i]);
    /* the only url() is the roofline's clip path, inside the page */
    for (const char *p = html; (p = strstr(p, "url(")); p += 4)
        cr_assert_eq(strncmp(p, "url(#", 5), 0, "url() to outside: %.40s", p);
    free(html);
}

Test(report, markdown_summary_and_files_written, .init = load_fixtures, .fini = free_fixtures) {
    char *md = NULL;
    cr_assert_eq(tw_report_markdown(files, 3, "Summary", &md), TW_OK, "%s", tw_last_error());
    cr_assert(strstr(md, "## Summary"));
    cr_assert(strstr(md, "| base.json | tiny |"));
    cr_assert(strstr(md, "| sweep.json row 3 | tiny |"));
    cr_assert(strstr(md, "ASSUMED"));
    cr_assert(strstr(md, "Projection ("), "the projection headline is in the summary");
    /* a header, a separator and one line per row */
    int lines = 0;
    for (const char *p = md; (p = strstr(p, "\n|")); p++) lines++;
    cr_assert_eq(lines, 2 + 5, "%d table lines (header, separator, 5 rows)", lines);
    free(md);

    char dir[] = "/tmp/tw_test_report_XXXXXX";
    cr_assert(mkdtemp(dir));
    char out[256];
    snprintf(out, sizeof out, "%s/sub", dir);
    cr_assert_eq(tw_report_write(files, 3, "t", out), TW_OK, "%s", tw_last_error());
    char path[300];
    snprintf(path, sizeof path, "%s/report.html", out);
    cr_assert_eq(access(path, R_OK), 0);
    remove(path);
    snprintf(path, sizeof path, "%s/summary.md", out);
    cr_assert_eq(access(path, R_OK), 0);
    remove(path);
    rmdir(out);
    rmdir(dir);
}

Test(report, refuses_no_files) {
    char *html = NULL;
    cr_assert_neq(tw_report_html(NULL, 0, "t", &html), TW_OK);
}
