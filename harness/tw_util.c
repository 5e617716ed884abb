/* Clocks, statistics, atomic writes and host facts. */
#include "tw_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

/* ---- the atomic file commit (tw_util.h) ----------------------------------------------------- */

void tw_atomic_abort(tw_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) unlink(af->tmp);
    af->tmp[0] = '\0';
}

tw_status tw_atomic_open(tw_atomic_file *af, const char *path) {
    static unsigned counter = 0; /* with the pid: unique within the process; O_EXCL across */
    memset(af, 0, sizeof *af);
    snprintf(af->path, sizeof af->path, "%s", path);
    char dir[4096];
    tw_path_dirname(path, dir, sizeof dir);
    if (strcmp(dir, ".")) TW_TRY(tw_mkdirs(dir));
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        snprintf(af->tmp, sizeof af->tmp, "%s/%s.tmp.%ld.%u", dir, base, (long)getpid(),
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 && errno != EEXIST) {
            int e = errno;
            af->tmp[0] = '\0';
            return TW_ERR(TW_ERR_IO, "cannot write in %s: %s", dir, strerror(e));
        }
    }
    if (fd < 0) {
        af->tmp[0] = '\0';
        return TW_ERR(TW_ERR_IO, "cannot create a temporary file in %s", dir);
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        tw_atomic_abort(af);
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return TW_OK;
}

/* Flush, sync and close the temporary file (it stays, under its temporary name). */
static tw_status tw_atomic_finish(tw_atomic_file *af) {
    if (!af->f) return TW_ERR(TW_ERR_INVALID, "%s: not open for writing", af->path);
    int err = 0;
    if (fflush(af->f) != 0) err = errno ? errno : EIO;
    if (!err && ferror(af->f)) err = EIO;
    if (!err && fsync(fileno(af->f)) != 0 && errno != EINVAL) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno;
    af->f = NULL;
    if (err) {
        tw_atomic_abort(af);
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", af->path, strerror(err));
    }
    return TW_OK;
}

tw_status tw_atomic_commit(tw_atomic_file *af) {
    TW_TRY(tw_atomic_finish(af));
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        tw_atomic_abort(af);
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", af->path, strerror(e));
    }
    af->tmp[0] = '\0'; /* renamed: nothing to remove */
    return TW_OK;
}

tw_status tw_atomic_commit_new(tw_atomic_file *af, int suffix, char *final, size_t final_n) {
    TW_TRY(tw_atomic_finish(af));
    char name[4400], stem[4200];
    const char *path = af->path;
    /* stem and extension of the last path component: "a/b.json" -> "a/b" + ".json" */
    snprintf(stem, sizeof stem, "%s", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *ext = dot && dot != base ? dot : "";
    stem[strlen(path) - strlen(ext)] = '\0';
    tw_status st = TW_OK;
    for (int k = 1;; k++) {
        if (k == 1)
            snprintf(name, sizeof name, "%s", path);
        else
            snprintf(name, sizeof name, "%s-%d%s", stem, k, ext);
        int taken = 0;
        if (link(af->tmp, name) == 0) break;
        if (errno == EEXIST) {
            taken = 1;
        } else if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == EMLINK ||
                   errno == EXDEV) {
            /* no hard links here (some network or FUSE file systems): reserve the name with an
             * exclusive create, then move the finished file over the reservation */
            int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd >= 0) {
                close(fd);
                if (rename(af->tmp, name) == 0) break;
                int e = errno;
                unlink(name);
                st = TW_ERR(TW_ERR_IO, "cannot write %s: %s", name, strerror(e));
                break;
            }
            if (errno == EEXIST)
                taken = 1;
            else {
                st = TW_ERR(TW_ERR_IO, "cannot write %s: %s", name, strerror(errno));
                break;
            }
        } else {
            st = TW_ERR(TW_ERR_IO, "cannot write %s: %s", name, strerror(errno));
            break;
        }
        if (taken && (!suffix || k >= 9999)) {
            st = TW_ERR(TW_ERR_IO, "%s already exists (result files are never overwritten)", name);
            break;
        }
    }
    /* after link(): the file lives on under its name; after rename(): already gone */
    tw_atomic_abort(af);
    if (st == TW_OK && final) snprintf(final, final_n, "%s", name);
    return st;
}

static tw_status tw_atomic_put(tw_atomic_file *af, const char *path, const void *data, size_t len) {
    TW_TRY(tw_atomic_open(af, path));
    if (len && fwrite(data, 1, len, af->f) != len) {
        int e = errno ? errno : ENOSPC;
        tw_atomic_abort(af);
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return TW_OK;
}

tw_status tw_write_file_atomic(const char *path, const void *data, size_t len) {
    tw_atomic_file *af = malloc(sizeof *af);
    if (!af) return TW_ERR(TW_ERR_NOMEM, "writing %s", path);
    tw_status st = tw_atomic_put(af, path, data, len);
    if (st == TW_OK) st = tw_atomic_commit(af);
    free(af);
    return st;
}

tw_status tw_write_file_new(const char *path, const void *data, size_t len, int suffix, char *final,
                            size_t final_n) {
    tw_atomic_file *af = malloc(sizeof *af);
    if (!af) return TW_ERR(TW_ERR_NOMEM, "writing %s", path);
    tw_status st = tw_atomic_put(af, path, data, len);
    if (st == TW_OK) st = tw_atomic_commit_new(af, suffix, final, final_n);
    free(af);
    return st;
}

tw_status tw_read_file_max(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return TW_ERR(TW_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return TW_ERR(TW_ERR_IO, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return TW_ERR(TW_ERR_IO, "%s is not a regular file (%s): refusing to read it", path,
                      S_ISDIR(sb.st_mode)    ? "a folder"
                      : S_ISFIFO(sb.st_mode) ? "a FIFO"
                      : S_ISCHR(sb.st_mode)  ? "a character device"
                      : S_ISBLK(sb.st_mode)  ? "a block device"
                      : S_ISSOCK(sb.st_mode) ? "a socket"
                                             : "not a plain file");
    }
    if (max_bytes && (uint64_t)sb.st_size > (uint64_t)max_bytes) {
        close(fd);
        return TW_ERR(TW_ERR_IO, "%s is %.1f MiB, over the %.0f MiB limit for this kind of file",
                      path, (double)sb.st_size / 1048576.0, (double)max_bytes / 1048576.0);
    }
    /* back to blocking reads for a regular file */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return TW_ERR(TW_ERR_NOMEM, "reading %s (%zu bytes)", path, cap);
    }
    for (;;) {
        if (n + 1 >= cap) {
            /* the file grew while being read: keep within the limit */
            if (max_bytes && n >= max_bytes) {
                free(buf);
                close(fd);
                return TW_ERR(TW_ERR_IO, "%s grew past the %.0f MiB limit while being read", path,
                              (double)max_bytes / 1048576.0);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return TW_ERR(TW_ERR_NOMEM, "reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return TW_ERR(TW_ERR_IO, "error reading %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return TW_OK;
}

tw_status tw_read_file(const char *path, char **out, size_t *len) {
    return tw_read_file_max(path, 0, out, len);
}

tw_status tw_json_load_file(const char *path, json_t **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    TW_TRY(tw_read_file_max(path, TW_JSON_MAX_BYTES, &text, &len));
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (!root)
        return TW_ERR(TW_ERR_PARSE, "%s:%d:%d: not valid JSON: %s", path, e.line, e.column, e.text);
    *out = root;
    return TW_OK;
}

void tw_path_dirname(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

tw_status tw_check_output_dir(const char *dir, uint64_t need_bytes, const char *what) {
    if (!dir || !*dir) dir = ".";
    char created[4096] = ""; /* the topmost folder this call created */
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return TW_ERR(TW_ERR_IO, "cannot write %s into %s: it exists and is not a folder", what,
                          dir);
    } else {
        /* the nearest existing folder above, to remove what we create if a check fails */
        char up[4096];
        snprintf(up, sizeof up, "%s", dir);
        snprintf(created, sizeof created, "%s", dir);
        for (;;) {
            char *slash = strrchr(up, '/');
            if (!slash || slash == up) break;
            *slash = '\0';
            if (stat(up, &sb) == 0) break;
            snprintf(created, sizeof created, "%s", up);
        }
        tw_status st = tw_mkdirs(dir);
        if (st != TW_OK) return tw_error_ctx(st, "cannot write %s into %s", what, dir);
    }
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.tokwatt-probe.%ld", dir, (long)getpid());
    tw_status st = TW_OK;
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST) {
        unlink(probe);
        fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    }
    if (fd < 0) {
        st = TW_ERR(TW_ERR_IO, "cannot write %s into %s: %s", what, dir, strerror(errno));
    } else {
        close(fd);
        unlink(probe);
        struct statvfs sv;
        if (statvfs(dir, &sv) != 0) {
            st = TW_ERR(TW_ERR_IO, "cannot query free space of %s: %s", dir, strerror(errno));
        } else {
            uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
            if (avail < need_bytes)
                st = TW_ERR(TW_ERR_IO,
                            "not enough disk space in %s for %s: need %llu bytes (%.2f GiB), "
                            "only %llu bytes (%.2f GiB) available",
                            dir, what, (unsigned long long)need_bytes,
                            (double)need_bytes / 1073741824.0, (unsigned long long)avail,
                            (double)avail / 1073741824.0);
        }
    }
    if (st != TW_OK && created[0]) {
        /* remove the folders made above, deepest first (rmdir leaves anything non-empty) */
        char d[4096];
        snprintf(d, sizeof d, "%s", dir);
        for (;;) {
            rmdir(d);
            if (!strcmp(d, created)) break;
            char *slash = strrchr(d, '/');
            if (!slash || slash == d) break;
            *slash = '\0';
        }
    }
    return st;
}

/* ---- interruption --------------------------------------------------------------------------- */

static volatile sig_atomic_t tw_sig_caught = 0;

static void tw_on_signal(int signum) {
    if (tw_sig_caught) {
        /* a second signal: the user insists; the default action ends the process now */
        signal(signum, SIG_DFL);
        raise(signum);
        return;
    }
    tw_sig_caught = signum;
    /* only async-signal-safe calls here: write(2) of a fixed text */
    static const char msg_int[] = "\ntokwatt: SIGINT: stopping and writing what was measured "
                                  "(signal again to quit at once)\n";
    static const char msg_term[] = "\ntokwatt: SIGTERM: stopping and writing what was measured "
                                   "(signal again to quit at once)\n";
    static const char msg_hup[] = "\ntokwatt: SIGHUP: stopping and writing what was measured "
                                  "(signal again to quit at once)\n";
    const char *m = signum == SIGINT ? msg_int : signum == SIGTERM ? msg_term : msg_hup;
    size_t n = signum == SIGINT    ? sizeof msg_int
               : signum == SIGTERM ? sizeof msg_term
                                   : sizeof msg_hup;
    ssize_t w = write(STDERR_FILENO, m, n - 1);
    (void)w;
}

void tw_interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tw_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* the run polls the flag; system calls need not fail */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int tw_interrupt_signal(void) {
    return (int)tw_sig_caught;
}

void tw_interrupt_reset(void) {
    tw_sig_caught = 0;
}

const char *tw_signal_name(int signum) {
    switch (signum) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    case SIGKILL:
        return "SIGKILL";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGABRT:
        return "SIGABRT";
    }
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "signal %d", signum);
    return buf;
}

/* ---- messages for people ----------------------------------------------------------------------
 */

static int tw_verbose_flag = -1; /* -1: not decided, read TW_VERBOSE */

void tw_set_verbose(int on) {
    tw_verbose_flag = on ? 1 : 0;
}

int tw_verbose(void) {
    if (tw_verbose_flag < 0) {
        const char *v = getenv("TW_VERBOSE");
        tw_verbose_flag = v && *v && strcmp(v, "0") != 0;
    }
    return tw_verbose_flag;
}

/* Whether s starts a source location "path/file.c:123: " (also .h, .cu, .cuh); *skip receives
 * its length including the ": " that follows. */
static int tw_is_source_loc(const char *s, size_t *skip) {
    size_t i = 0;
    while (s[i] && s[i] != ' ' && s[i] != ':') i++;
    if (s[i] != ':' || i < 3) return 0;
    static const char *const exts[] = {".c", ".h", ".cu", ".cuh"};
    int ok = 0;
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        size_t el = strlen(exts[k]);
        if (i > el && !strncmp(s + i - el, exts[k], el)) ok = 1;
    }
    if (!ok) return 0;
    size_t j = i + 1;
    if (s[j] < '0' || s[j] > '9') return 0;
    while (s[j] >= '0' && s[j] <= '9') j++;
    if (s[j] == ':' && s[j + 1] == ' ')
        j += 2;
    else if (s[j] == ':' && s[j + 1] == '\0')
        j += 1;
    else if (s[j] != '\0')
        return 0;
    *skip = j;
    return 1;
}

const char *tw_error_text(void) {
    const char *e = tw_last_error();
    if (tw_verbose()) return e;
    static _Thread_local char out[4096];
    size_t o = 0;
    int at_start = 1; /* a location starts the message or follows ": " */
    for (const char *p = e; *p && o + 2 < sizeof out;) {
        size_t skip = 0;
        if (at_start && tw_is_source_loc(p, &skip)) {
            p += skip;
            continue;
        }
        at_start = 0;
        if (p[0] == ':' && p[1] == ' ') {
            out[o++] = ':';
            out[o++] = ' ';
            p += 2;
            at_start = 1;
            continue;
        }
        out[o++] = *p++;
    }
    /* a chain that ended in a location leaves ": " behind */
    while (o >= 2 && out[o - 1] == ' ' && out[o - 2] == ':') o -= 2;
    out[o] = '\0';
    return o ? out : e;
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
