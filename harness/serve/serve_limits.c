/* MLPerf latency limits from configs/serving/mlperf-limits.json (tw_serve_limits.h). */
#include "tw_serve_limits.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_config.h"
#include "tw_util.h"

/* Reads "KEY = VALUE" (an mlperf.conf line) into key and an integer value. */
static int tw_conf_line(const char *line, char *key, size_t n, long long *value) {
    const char *eq = strchr(line, '=');
    if (!eq) return 0;
    size_t kl = (size_t)(eq - line);
    while (kl > 0 && line[kl - 1] == ' ') kl--;
    if (kl == 0 || kl >= n) return 0;
    memcpy(key, line, kl);
    key[kl] = '\0';
    char *end = NULL;
    *value = strtoll(eq + 1, &end, 10);
    if (end == eq + 1) return 0;
    while (*end == ' ') end++;
    return *end == '\0';
}

/* The figure `field` of conf_model as the entry's quoted lines give it; -1 when no line does. */
static long long tw_quoted(json_t *lines, const char *conf_model, const char *field) {
    char want[160], key[160];
    snprintf(want, sizeof want, "%s.Server.%s", conf_model, field);
    for (size_t i = 0; i < json_array_size(lines); i++) {
        const char *l = json_string_value(json_array_get(lines, i));
        long long v;
        if (l && tw_conf_line(l, key, sizeof key, &v) && strcmp(key, want) == 0) return v;
    }
    return -1;
}

static tw_status tw_quoted_global(json_t *root, const char *field, const char *line_field,
                                  const char *key_want, const char *origin, double *out) {
    json_t *v = json_object_get(root, field);
    const char *l = json_string_value(json_object_get(root, line_field));
    char key[160];
    long long q;
    if (!json_is_integer(v) || !l || !tw_conf_line(l, key, sizeof key, &q) ||
        strcmp(key, key_want) != 0 || q != json_integer_value(v))
        return TW_ERR(TW_ERR_PARSE,
                      "%s: \"%s\" must be an integer equal to its quoted line \"%s\" (%s = ...)",
                      origin, field, line_field, key_want);
    *out = (double)q;
    return TW_OK;
}

static tw_status tw_copy_str(json_t *o, const char *key, char *out, size_t n, const char *what) {
    const char *s = json_string_value(json_object_get(o, key));
    if (!s) return TW_ERR(TW_ERR_PARSE, "%s: missing \"%s\"", what, key);
    if (strlen(s) >= n) return TW_ERR(TW_ERR_PARSE, "%s: \"%s\" is too long", what, key);
    snprintf(out, n, "%s", s);
    return TW_OK;
}

static tw_status tw_limits_from(json_t *root, const char *origin, const char *model,
                                const char *scenario, tw_serve_limits *out) {
    if (!json_is_object(root)) return TW_ERR(TW_ERR_PARSE, "%s: not a JSON object", origin);
    json_t *src = json_object_get(root, "source");
    const char *repo = json_string_value(json_object_get(src, "repository"));
    const char *path = json_string_value(json_object_get(src, "path"));
    const char *commit = json_string_value(json_object_get(src, "commit"));
    const char *date = json_string_value(json_object_get(src, "commit_date"));
    if (!repo || !path || !commit || strlen(commit) != 40 || !date)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: \"source\" must name the repository, path, 40-digit commit and date",
                      origin);
    double pct, min_ms;
    TW_TRY(tw_quoted_global(root, "server_percentile", "server_percentile_conf_line",
                            "*.Server.target_latency_percentile", origin, &pct));
    TW_TRY(tw_quoted_global(root, "server_min_duration_ms", "server_min_duration_conf_line",
                            "*.Server.min_duration", origin, &min_ms));
    json_t *entries = json_object_get(root, "entries");
    if (!json_is_array(entries) || json_array_size(entries) == 0)
        return TW_ERR(TW_ERR_PARSE, "%s: \"entries\" must be a non-empty array", origin);
    char known[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i);
        char what[1100];
        snprintf(what, sizeof what, "%s entry %zu", origin, i);
        tw_serve_limits L;
        memset(&L, 0, sizeof L);
        TW_TRY(tw_copy_str(e, "model", L.model, sizeof L.model, what));
        TW_TRY(tw_copy_str(e, "conf_model", L.conf_model, sizeof L.conf_model, what));
        TW_TRY(tw_copy_str(e, "tokwatt_model", L.tokwatt_model, sizeof L.tokwatt_model, what));
        TW_TRY(tw_copy_str(e, "scenario", L.scenario, sizeof L.scenario, what));
        if (strcmp(L.scenario, "server") != 0 && strcmp(L.scenario, "interactive") != 0)
            return TW_ERR(TW_ERR_PARSE, "%s: scenario must be server or interactive", what);
        /* every figure must be what its quoted mlperf.conf line says */
        json_t *lines = json_object_get(e, "conf_lines");
        json_t *ttft = json_object_get(e, "ttft_ms"), *tpot = json_object_get(e, "tpot_ms");
        long long qt = tw_quoted(lines, L.conf_model, "ttft_latency");
        long long qp = tw_quoted(lines, L.conf_model, "tpot_latency");
        if (!json_is_integer(ttft) || !json_is_integer(tpot) || qt <= 0 || qp <= 0 ||
            qt != json_integer_value(ttft) || qp != json_integer_value(tpot))
            return TW_ERR(TW_ERR_PARSE,
                          "%s (%s %s): ttft_ms and tpot_ms must equal the quoted lines %s.Server."
                          "ttft_latency and .tpot_latency",
                          what, L.model, L.scenario, L.conf_model);
        int w = snprintf(known + used, sizeof known - used, "%s%s/%s", used ? ", " : "", L.model,
                         L.scenario);
        if (w > 0 && (size_t)w < sizeof known - used) used += (size_t)w;
        int model_match = strcmp(model, L.model) == 0 || strcmp(model, L.conf_model) == 0 ||
                          (L.tokwatt_model[0] && strcmp(model, L.tokwatt_model) == 0);
        if (!model_match || strcmp(scenario, L.scenario) != 0) continue;
        L.ttft_s = (double)qt * 1e-3;
        L.tpot_s = (double)qp * 1e-3;
        L.percentile = pct;
        L.min_duration_s = min_ms * 1e-3;
        snprintf(L.source, sizeof L.source, "%s %s @ %.12s (%s)", repo, path, commit, date);
        *out = L;
        return TW_OK;
    }
    return TW_ERR(TW_ERR_INVALID, "no MLPerf limits for model '%s' scenario '%s' in %s (it has %s)",
                  model, scenario, origin, known);
}

tw_status tw_serve_limits_load(const char *path, const char *model, const char *scenario,
                               tw_serve_limits *out) {
    memset(out, 0, sizeof *out);
    char p[1024];
    if (path)
        snprintf(p, sizeof p, "%s", path);
    else
        TW_TRY(tw_config_path("serving/mlperf-limits.json", p, sizeof p));
    char *text = NULL;
    size_t len = 0;
    TW_TRY(tw_read_file(p, &text, &len));
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    free(text);
    if (!root) return TW_ERR(TW_ERR_PARSE, "%s:%d: %s", p, jerr.line, jerr.text);
    tw_status st = tw_limits_from(root, p, model, scenario, out);
    json_decref(root);
    return st;
}
