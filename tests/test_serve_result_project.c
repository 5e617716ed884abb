/* The projection's device figures from a serving result (harness/project/project.c,
 * tw_project_device_goodput_from_row): the goodput of the requests that met the latency targets,
 * per power domain, with the run's watts; refused, saying why, for a static run, a serving run
 * without objectives, and one where no request met them. The expected figures are recomputed
 * here from the fixture's requests, not taken from its summary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/project/tw_project.h"
#include "tw_result_schema.h"

static const char *fixture(const char *name) {
    static char path[1024];
    const char *src = getenv("TW_SOURCE_DIR");
    cr_assert(src && *src, "TW_SOURCE_DIR names the source tree (set by ctest)");
    snprintf(path, sizeof path, "%s/tests/data/results/%s.json", src, name);
    return path;
}

/* Output tokens/s of the measured requests meeting TTFT <= ttft and TPOT <= tpot (one-token
 * requests count TPOT 0), over the window: the definition, long-hand. */
static double goodput_tps(const tw_serve_result *v, double ttft, double tpot) {
    double tokens = 0;
    for (int64_t i = 0; i < v->n_requests; i++) {
        const tw_serve_result_request *q = &v->requests[i];
        if (q->warmup) continue;
        double tt = q->first_token_s - q->arrival_s;
        double tp = q->output_tokens > 1
                        ? (q->finish_s - q->first_token_s) / (double)(q->output_tokens - 1)
                        : 0.0;
        if (tt <= ttft && tp <= tpot) tokens += q->output_tokens;
    }
    return tokens / (v->summary.t_end_s - v->summary.t_start_s);
}

Test(serve_result_project, goodput_per_device_with_the_runs_watts) {
    tw_result r;
    cr_assert_eq(tw_result_read_file(fixture("serving-findrate"), &r), TW_OK, "%s",
                 tw_last_error());
    tw_result_row *row = &r.rows[0];
    cr_assert(tw_project_row_has_goodput(row));
    tw_project_device d, e;
    char note[1024], note2[1024];
    cr_assert_eq(tw_project_device_goodput_from_row(row, "f", &d, note, sizeof note), TW_OK, "%s",
                 tw_last_error());
    double want = goodput_tps(row->serving, 2.0, 0.1);
    cr_assert(want > 0);
    cr_assert(fabs(d.tokens_per_s / want - 1) < 1e-12, "%.17g against %.17g", d.tokens_per_s, want);
    cr_assert_eq(tw_project_device_from_row(row, "f", &e, note2, sizeof note2), TW_OK);
    cr_assert_eq(d.watts, e.watts, "the same watts on both bases");
    cr_assert_eq(d.assumed, 1);
    cr_assert(strstr(note, "goodput at the latency targets (TTFT <= 2000 ms, TPOT <= 100 ms)"),
              "%s", note);
    cr_assert(strstr(note, "held"), "%s", note);
    /* four devices: the goodput is shared among them */
    row->scenario.devices = 4;
    cr_assert_eq(tw_project_device_goodput_from_row(row, "f", &d, note, sizeof note), TW_OK);
    cr_assert(fabs(d.tokens_per_s / (want / 4) - 1) < 1e-12);
    /* ranks whose power the energy block combined into 2 domains */
    row->energy.devices = 2;
    row->energy.ranks = 4;
    cr_assert_eq(tw_project_device_goodput_from_row(row, "f", &d, note, sizeof note), TW_OK);
    cr_assert(fabs(d.tokens_per_s / (want / 2) - 1) < 1e-12);
    cr_assert(strstr(note, "energy.devices 2"), "%s", note);
    tw_result_free(&r);
}

Test(serve_result_project, refused_with_the_reason) {
    tw_result r;
    tw_project_device d;
    char note[1024];
    cr_assert_eq(tw_result_read_file(fixture("single"), &r), TW_OK);
    cr_assert_not(tw_project_row_has_goodput(&r.rows[0]));
    cr_assert_eq(tw_project_device_goodput_from_row(&r.rows[0], "single", &d, note, sizeof note),
                 TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "not a serving run"), "%s", tw_last_error());
    tw_result_free(&r);
    cr_assert_eq(tw_result_read_file(fixture("serving"), &r), TW_OK);
    tw_serve_summary *s = &r.rows[0].serving->summary;
    /* no request meets a 1 ms TTFT: goodput 0, no fleet serves the demand within it */
    s->goodput_output_tps = 0;
    s->n_good = 0;
    s->slo.ttft_s = 0.001;
    cr_assert_eq(tw_project_device_goodput_from_row(&r.rows[0], "serving", &d, note, sizeof note),
                 TW_ERR_INVALID);
    cr_assert(strstr(tw_last_error(), "no measured request met the latency targets (TTFT <= 1 ms"),
              "%s", tw_last_error());
    /* no objective: no goodput */
    s->slo_given = 0;
    s->goodput_output_tps = NAN;
    cr_assert_eq(tw_project_device_goodput_from_row(&r.rows[0], "serving", &d, note, sizeof note),
                 TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "no goodput (no latency objective was given)"), "%s",
              tw_last_error());
    /* no power */
    s->slo_given = 1;
    s->goodput_output_tps = 100;
    r.rows[0].has_energy = 0;
    cr_assert_eq(tw_project_device_goodput_from_row(&r.rows[0], "serving", &d, note, sizeof note),
                 TW_ERR_UNSUPPORTED);
    cr_assert(strstr(tw_last_error(), "no power was measured or assumed"), "%s", tw_last_error());
    tw_result_free(&r);
}
