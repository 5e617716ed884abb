/* Clocks, statistics, atomic writes and host facts. */
#include "tw_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double tw_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double tw_unix_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int tw_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double tw_percentile(const double *v, int n, double pct) {
    if (n <= 0) return NAN;
    double *s = malloc(sizeof(double) * (size_t)n);
    if (!s) return NAN;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), tw_cmp_double);
    double pos = pct / 100.0 * (double)(n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    double r = s[lo] + (pos - (double)lo) * (s[hi] - s[lo]);
    free(s);
    return r;
}

tw_stats tw_stats_of(const double *v, int n) {
    tw_stats st;
    memset(&st, 0, sizeof st);
    st.n = n;
    if (n <= 0) {
        st.median = st.mean = st.min = st.max = st.stddev = st.p50 = st.p99 = NAN;
        return st;
    }
    double sum = 0, mn = v[0], mx = v[0];
    for (int i = 0; i < n; i++) {
        sum += v[i];
        if (v[i] < mn) mn = v[i];
        if (v[i] > mx) mx = v[i];
    }
    st.mean = sum / n;
    double var = 0;
    for (int i = 0; i < n; i++) var += (v[i] - st.mean) * (v[i] - st.mean);
    st.stddev = n > 1 ? sqrt(var / (n - 1)) : 0.0;
    st.min = mn;
    st.max = mx;
    st.median = st.p50 = tw_percentile(v, n, 50.0);
    st.p99 = tw_percentile(v, n, 99.0);
    return st;
}

tw_status tw_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return TW_ERR(TW_ERR_INVALID, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return TW_ERR(TW_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return TW_ERR(TW_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
    return TW_OK;
}

tw_status tw_write_file_atomic(const char *path, const void *data, size_t len) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        TW_TRY(tw_mkdirs(dir));
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return TW_ERR(TW_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int err = (wrote != len) || fflush(f) != 0;
    err |= fsync(fileno(f)) != 0 && errno != EINVAL;
    err |= fclose(f) != 0;
    if (err) {
        unlink(tmp);
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return TW_ERR(TW_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return TW_OK;
}

tw_status tw_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return TW_ERR(TW_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return TW_ERR(TW_ERR_NOMEM, "reading %s", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return TW_ERR(TW_ERR_NOMEM, "reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return TW_ERR(TW_ERR_IO, "error reading %s", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return TW_OK;
}

const char *tw_host_name(void) {
    static char name[256];
    if (!name[0] && gethostname(name, sizeof name - 1) != 0) snprintf(name, sizeof name, "unknown");
    return name;
}

const char *tw_cpu_model(void) {
    static char model[256];
    if (model[0]) return model;
    snprintf(model, sizeof model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return model;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!c) continue;
        if (!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5)) {
            c++;
            while (*c == ' ' || *c == '\t') c++;
            c[strcspn(c, "\n")] = '\0';
            snprintf(model, sizeof model, "%s", c);
            break;
        }
    }
    fclose(f);
    return model;
}

int tw_cpu_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void tw_utc_iso(char *buf, size_t n, double unix_s) {
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void tw_utc_compact(char *buf, size_t n, double unix_s) {
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y%m%dT%H%M%SZ", &tm);
}
