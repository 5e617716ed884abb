/* `tokwatt report`: a self-contained HTML page (inline CSS and SVG; no scripts, no network) with
 * the runs side by side and one chart per section (throughput against batch, roofline, joules
 * per token, megawatt projection), and a markdown summary for an issue or a paper. */
#ifndef TW_REPORT_H
#define TW_REPORT_H

#include "tw_compare.h"
#include "tw_status.h"

/* Chart ids, one <svg id="..."> per chart section, in page order. */
#define TW_REPORT_NCHARTS 4
extern const char *const tw_report_chart_ids[TW_REPORT_NCHARTS];
/* With a serving result (schema 1.4) two more sections follow, in this order: latency against the
 * request rate (p99 TTFT and TPOT of every capacity-search trial, the limits, the rate found) and
 * the per-request latency distribution (TTFT and TPOT). Absent otherwise. */
#define TW_REPORT_NSERVING_CHARTS 2
extern const char *const tw_report_serving_chart_ids[TW_REPORT_NSERVING_CHARTS];

/* The page and the summary as malloc'd text (caller frees). */
tw_status tw_report_html(const tw_result_file *files, int nfiles, const char *title, char **out);
tw_status tw_report_markdown(const tw_result_file *files, int nfiles, const char *title,
                             char **out);
/* Writes DIR/report.html and DIR/summary.md (atomically; creates DIR). */
tw_status tw_report_write(const tw_result_file *files, int nfiles, const char *title,
                          const char *dir);

#endif
