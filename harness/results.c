/* Result files and provenance. */
#include "tw_results.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

tw_status tw_result_write(const json_t *root, const char *path) {
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) return TW_ERR(TW_ERR_NOMEM, "cannot serialise result for %s", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* replace the NUL: write exactly len + 1 bytes */
    tw_status st = tw_write_file_atomic(path, text, len + 1);
    free(text);
    return st;
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
