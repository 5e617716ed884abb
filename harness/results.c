/* Result files and provenance. */
#include "tw_results.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tw_backend.h"
#include "tw_cpu.h"
#include "tw_cuda_info.h"
#include "tw_util.h"

#ifdef TW_HAVE_MPI
#include <mpi.h>
#endif

json_t *tw_jnum(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* Runs a short git query in the source tree; empty string when unavailable. */
static void tw_git_query(const char *args, char *out, size_t n) {
    out[0] = '\0';
#ifdef TW_SOURCE_DIR
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "git -C '%s' %s 2>/dev/null", TW_SOURCE_DIR, args);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    size_t used = 0;
    while (used + 1 < n) {
        size_t r = fread(out + used, 1, n - used - 1, p);
        if (r == 0) break;
        used += r;
    }
    out[used] = '\0';
    pclose(p);
#else
    (void)args;
    (void)n;
#endif
}

json_t *tw_provenance_json(const char *backend, double start_unix_s, double end_unix_s) {
    json_t *p = json_object();
    char buf[4096], t0[64], t1[64];
    json_object_set_new(p, "tool", json_string("tokwatt"));
    json_object_set_new(p, "version", json_string("0.1.0"));
    json_object_set_new(p, "build_commit", json_string(TW_GIT_COMMIT));
    tw_git_query("rev-parse HEAD", buf, sizeof buf);
    buf[strcspn(buf, "\n")] = '\0';
    if (buf[0]) {
        json_object_set_new(p, "git_commit", json_string(buf));
        tw_git_query("status --porcelain --untracked-files=no", buf, sizeof buf);
        json_object_set_new(p, "git_dirty", json_boolean(buf[0] != '\0'));
    } else {
        json_object_set_new(p, "git_commit", json_string(TW_GIT_COMMIT));
        json_object_set_new(p, "git_dirty", json_null()); /* unknown: no source tree here */
    }
    json_object_set_new(p, "host", json_string(tw_host_name()));
    json_object_set_new(p, "cpu_model", json_string(tw_cpu_model()));
    json_object_set_new(p, "cpu_cores", json_integer(tw_cpu_cores()));
    json_object_set_new(p, "cpu_features", json_string(tw_cpu_features()));
    json_object_set_new(p, "simd", json_string(tw_simd_name(tw_cpu_simd_active())));
    json_object_set_new(p, "compiler", json_string("gcc " __VERSION__));
    json_object_set_new(p, "c_flags", json_string(TW_C_FLAGS));
    json_object_set_new(p, "build_type", json_string(TW_BUILD_TYPE));
    json_object_set_new(p, "backend", json_string(backend ? backend : "unknown"));
    json_t *libs = json_object();
    json_object_set_new(libs, "jansson", json_string(JANSSON_VERSION));
    snprintf(buf, sizeof buf, "%d", _OPENMP);
    json_object_set_new(libs, "openmp", json_string(buf));
    char rt[32], drv[32];
    tw_cuda_versions(rt, sizeof rt, drv, sizeof drv);
    json_object_set_new(libs, "cuda_runtime", json_string(rt));
    json_object_set_new(libs, "cuda_driver", json_string(drv));
    if (backend && !strcmp(backend, "cuda")) {
        /* the targets this build embeds, and which of them the run's (current) device ran */
        json_t *cu = json_object();
        tw_cuda_image_info img;
        json_object_set_new(cu, "sass", json_string(tw_cuda_build_sass()));
        json_object_set_new(cu, "ptx", json_string(tw_cuda_build_ptx()));
        if (tw_cuda_image_query(-1, &img) == TW_OK) {
            json_object_set_new(cu, "image", json_string(img.mode));
            json_object_set_new(cu, "image_detail", json_string(img.summary));
        } else {
            json_object_set_new(cu, "image", json_string("unknown"));
            json_object_set_new(cu, "image_detail", json_string(tw_last_error()));
        }
        json_object_set_new(p, "cuda_build", cu);
    }
#ifdef TW_HAVE_MPI
    {
        char ver[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(ver, &len);
        ver[strcspn(ver, "\n,")] = '\0';
        json_object_set_new(libs, "mpi", json_string(ver));
    }
#else
    json_object_set_new(libs, "mpi", json_string("not built"));
#endif
    json_object_set_new(p, "libraries", libs);
    tw_utc_iso(t0, sizeof t0, start_unix_s);
    tw_utc_iso(t1, sizeof t1, end_unix_s);
    json_object_set_new(p, "start_utc", json_string(t0));
    json_object_set_new(p, "end_utc", json_string(t1));
    return p;
}

void tw_result_default_path(char *out, size_t n, const char *dir, const char *model,
                            double start_unix_s) {
    char ts[32], host[64], mod[96];
    tw_utc_compact(ts, sizeof ts, start_unix_s);
    /* file-name-safe host and model */
    snprintf(host, sizeof host, "%s", tw_host_name());
    snprintf(mod, sizeof mod, "%s", model);
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.'))
            *c = '_';
    for (char *c = mod; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.'))
            *c = '_';
    snprintf(out, n, "%s/%s-%s-%s.json", dir && *dir ? dir : "results", ts, host, mod);
}

static char *tw_result_text(const json_t *root, size_t *len) {
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) return NULL;
    *len = strlen(text);
    text[*len] = '\n'; /* replace the NUL: write exactly len + 1 bytes */
    (*len)++;
    return text;
}

tw_status tw_result_write(const json_t *root, const char *path, char *final, size_t final_n) {
    size_t len = 0;
    char *text = tw_result_text(root, &len);
    if (!text) return TW_ERR(TW_ERR_NOMEM, "cannot serialise result for %s", path);
    tw_status st = tw_write_file_new(path, text, len, 1, final, final_n);
    free(text);
    return st;
}

tw_status tw_result_write_fallback(const json_t *root, const char *model, char *final,
                                   size_t final_n) {
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    char path[4096];
    tw_result_default_path(path, sizeof path, tmpdir, model, tw_unix_now_s());
    /* "tokwatt-" in front, so that the file is recognisable among others in /tmp */
    char *base = strrchr(path, '/');
    char named[4200];
    snprintf(named, sizeof named, "%.*s/tokwatt-%s", (int)(base - path), path, base + 1);
    return tw_result_write(root, named, final, final_n);
}

tw_status tw_result_check_out(const char *out, char *dir, size_t dir_n, int *is_file) {
    size_t ol = strlen(out);
    *is_file = 0;
    if (!ol) return TW_ERR(TW_ERR_INVALID, "option --out: empty path");
    struct stat sb;
    int exists = stat(out, &sb) == 0;
    if (ol > 5 && !strcmp(out + ol - 5, ".json")) {
        if (exists && S_ISDIR(sb.st_mode))
            return TW_ERR(TW_ERR_INVALID,
                          "option --out %s: a folder of that name exists; give a new file name "
                          "or the folder without .json",
                          out);
        if (exists)
            return TW_ERR(TW_ERR_INVALID,
                          "option --out %s: the file exists and result files are never "
                          "overwritten; remove it or give another name",
                          out);
        *is_file = 1;
        tw_path_dirname(out, dir, dir_n);
        return TW_OK;
    }
    if (exists && !S_ISDIR(sb.st_mode))
        return TW_ERR(TW_ERR_INVALID,
                      "option --out %s: exists and is not a folder (a result file name ends in "
                      ".json and must not exist yet)",
                      out);
    /* a name with an extension that is not .json would become a folder of that name */
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    const char *dot = strrchr(base, '.');
    if (!exists && out[ol - 1] != '/' && dot && dot != base && dot[1])
        return TW_ERR(TW_ERR_INVALID,
                      "option --out %s: a result file name must end in .json (the result is "
                      "JSON); give FILE.json, or a folder (end it with '/' to name a new folder "
                      "with a dot in it)",
                      out);
    snprintf(dir, dir_n, "%s", out);
    for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/'; l--) dir[l - 1] = '\0';
    return TW_OK;
}

/* ---- CSV --------------------------------------------------------------------------------------
 */

void tw_csv_cell(FILE *out, const char *s) {
    if (!s) s = "";
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* Columns: dotted names of the leaves, in first-appearance order over the rows. */
typedef struct {
    char **name;
    int n, cap;
} tw_cols;

static void tw_cols_add(tw_cols *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], name)) return;
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 64;
        char **nn = realloc(c->name, sizeof(char *) * (size_t)nc);
        if (!nn) return;
        c->name = nn;
        c->cap = nc;
    }
    size_t l = strlen(name) + 1;
    char *d = malloc(l);
    if (!d) return;
    memcpy(d, name, l);
    c->name[c->n++] = d;
}

static int tw_all_strings(json_t *a) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_string(v)) return 0;
    return json_array_size(a) > 0;
}

static int tw_all_objects(json_t *a) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_object(v)) return 0;
    return json_array_size(a) > 0;
}

/* Visits the leaves of v under prefix: scalars, arrays of strings (one cell, joined with
 * "; ") and arrays of objects (by index); arrays of numbers or arrays (token ids, power
 * traces) are not table cells and are left out, as are a serving row's per-request records
 * (serving.requests: thousands of requests would be thousands of columns; the JSON keeps them,
 * the CSV keeps their aggregates). */
typedef void (*tw_leaf_fn)(void *ctx, const char *name, json_t *v);

static void tw_leaves(json_t *v, const char *prefix, tw_leaf_fn fn, void *ctx) {
    char name[512];
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", k);
            if (!strcmp(name, "serving.requests")) continue;
            tw_leaves(x, name, fn, ctx);
        }
    } else if (json_is_array(v)) {
        if (tw_all_strings(v)) {
            fn(ctx, prefix, v);
        } else if (tw_all_objects(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) {
                snprintf(name, sizeof name, "%s.%zu", prefix, i);
                tw_leaves(x, name, fn, ctx);
            }
        }
    } else {
        fn(ctx, prefix, v);
    }
}

static void tw_leaf_col(void *ctx, const char *name, json_t *v) {
    (void)v;
    tw_cols_add(ctx, name);
}

typedef struct {
    const char *want;
    json_t *found;
} tw_leaf_find;

static void tw_leaf_get(void *ctx, const char *name, json_t *v) {
    tw_leaf_find *f = ctx;
    if (!f->found && !strcmp(name, f->want)) f->found = v;
}

static void tw_csv_value(FILE *out, json_t *v) {
    char buf[64];
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) {
        tw_csv_cell(out, json_string_value(v));
    } else if (json_is_integer(v)) {
        fprintf(out, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, sizeof buf, "%.10g", json_real_value(v));
        fputs(buf, out);
    } else if (json_is_true(v)) {
        fputs("true", out);
    } else if (json_is_false(v)) {
        fputs("false", out);
    } else if (json_is_array(v)) {
        /* strings: one cell */
        size_t i, used = 0;
        json_t *x;
        char *joined = NULL;
        json_array_foreach(v, i, x) used += strlen(json_string_value(x)) + 2;
        joined = calloc(used + 1, 1);
        if (!joined) return;
        json_array_foreach(v, i, x) {
            if (i) strcat(joined, "; ");
            strcat(joined, json_string_value(x));
        }
        tw_csv_cell(out, joined);
        free(joined);
    }
}

void tw_csv_rows(FILE *out, json_t *rows) {
    tw_cols c = {0};
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) tw_leaves(row, "", tw_leaf_col, &c);
    for (int k = 0; k < c.n; k++) {
        if (k) fputc(',', out);
        tw_csv_cell(out, c.name[k]);
    }
    fputc('\n', out);
    json_array_foreach(rows, i, row) {
        for (int k = 0; k < c.n; k++) {
            if (k) fputc(',', out);
            tw_leaf_find f = {c.name[k], NULL};
            tw_leaves(row, "", tw_leaf_get, &f);
            tw_csv_value(out, f.found);
        }
        fputc('\n', out);
    }
    for (int k = 0; k < c.n; k++) free(c.name[k]);
    free(c.name);
}

tw_status tw_result_newest(const char *dir, char *out, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return TW_ERR(TW_ERR_IO, "no result folder %s", dir);
    char best[512] = "";
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
        if (strstr(de->d_name, ".tmp.")) continue;
        if (strcmp(de->d_name, best) > 0) snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    if (!best[0]) return TW_ERR(TW_ERR_IO, "no result files (*.json) in %s", dir);
    snprintf(out, n, "%s/%s", dir, best);
    return TW_OK;
}
