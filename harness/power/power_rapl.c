/* RAPL power source through the Linux powercap tree (Intel, and AMD CPUs, which expose the same
 * intel-rapl zones): energy_uj counters with wraparound at max_energy_range_uj. The root is
 * /sys/class/powercap, or $TW_POWERCAP_ROOT (the tests use a fake tree). energy_uj is root-only
 * on current kernels; an unreadable file is an error naming it, never a zero. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_power_impl.h"
#include "tw_util.h"

#define TW_RAPL_MAX_ZONES 32

typedef struct {
    char dir[600];
    char name[64];
    int top;      /* a top-level zone (intel-rapl:N), not a sub-zone (intel-rapl:N:M) */
    int measured; /* counted in the total */
    int readable;
    char error[200];
    uint64_t max_uj, last_uj;
    double acc_j; /* unwrapped energy since open */
} tw_rapl_zone;

typedef struct {
    char root[512];
    int nz;
    tw_rapl_zone z[TW_RAPL_MAX_ZONES];
} tw_rapl;

static tw_status tw_rapl_read_u64(const char *dir, const char *file, uint64_t *out) {
    char path[700], line[64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return TW_ERR(TW_ERR_IO, "%s unreadable: %s%s", path, strerror(errno),
                      errno == EACCES ? " (energy_uj is root-only on current kernels)" : "");
    errno = 0;
    char *ok = fgets(line, sizeof line, f);
    int e = errno;
    fclose(f);
    if (!ok) return TW_ERR(TW_ERR_IO, "%s unreadable: %s", path, e ? strerror(e) : "empty file");
    char *end;
    errno = 0;
    unsigned long long v = strtoull(line, &end, 10);
    if (end == line || errno || (*end && *end != '\n'))
        return TW_ERR(TW_ERR_PARSE, "%s: not a counter: \"%.20s\"", path, line);
    *out = v;
    return TW_OK;
}

/* Adds the energy since the last reading; a reading below the last one means the counter
 * passed max_energy_range_uj and restarted from zero. */
static tw_status tw_rapl_update(tw_rapl_zone *z) {
    uint64_t v;
    TW_TRY(tw_rapl_read_u64(z->dir, "energy_uj", &v));
    uint64_t d = v >= z->last_uj ? v - z->last_uj : (z->max_uj - z->last_uj) + v;
    z->acc_j += (double)d * 1e-6;
    z->last_uj = v;
    return TW_OK;
}

static tw_status tw_rapl_read_energy(void *ctx, double *out) {
    tw_rapl *r = ctx;
    double j = 0;
    for (int i = 0; i < r->nz; i++) {
        if (!r->z[i].readable) continue;
        tw_status st = tw_rapl_update(&r->z[i]);
        if (st && r->z[i].measured) return st;
        if (st) { /* a sub-zone that stopped answering: provenance only */
            r->z[i].readable = 0;
            snprintf(r->z[i].error, sizeof r->z[i].error, "%s", tw_error_text());
            continue;
        }
        if (r->z[i].measured) j += r->z[i].acc_j;
    }
    *out = j;
    return TW_OK;
}

static json_t *tw_rapl_provenance(void *ctx) {
    tw_rapl *r = ctx;
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "powercap_root", json_string(r->root));
    for (int i = 0; i < r->nz; i++) {
        tw_rapl_zone *z = &r->z[i];
        json_t *d = json_object();
        const char *base = strrchr(z->dir, '/');
        json_object_set_new(d, "zone", json_string(base ? base + 1 : z->dir));
        json_object_set_new(d, "name", json_string(z->name));
        json_object_set_new(d, "counted_in_total", json_boolean(z->measured));
        json_object_set_new(d, "readable", json_boolean(z->readable));
        if (!z->readable) json_object_set_new(d, "error", json_string(z->error));
        json_object_set_new(d, "max_energy_range_uj", json_integer((json_int_t)z->max_uj));
        json_array_append_new(arr, d);
    }
    json_object_set_new(o, "zones", arr);
    return o;
}

static void tw_rapl_close(void *ctx) {
    free(ctx);
}

static int tw_rapl_cmp(const void *a, const void *b) {
    return strcmp(((const tw_rapl_zone *)a)->dir, ((const tw_rapl_zone *)b)->dir);
}

tw_status tw_power_rapl_open(tw_power_src *src) {
    tw_rapl *r = calloc(1, sizeof *r);
    if (!r) return TW_ERR(TW_ERR_NOMEM, "RAPL state");
    const char *env = getenv("TW_POWERCAP_ROOT");
    snprintf(r->root, sizeof r->root, "%s", env && *env ? env : "/sys/class/powercap");
    tw_status st = TW_OK;
    char root[sizeof r->root];
    memcpy(root, r->root, sizeof root);
    DIR *d = opendir(root);
    if (!d) {
        st = TW_ERR(TW_ERR_UNSUPPORTED, "no powercap tree at %s: %s", r->root, strerror(errno));
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) && r->nz < TW_RAPL_MAX_ZONES) {
        /* intel-rapl:N (package) and intel-rapl:N:M (sub-zone); intel-rapl-mmio duplicates
         * the package counter on some Intel parts and is left out */
        if (strncmp(de->d_name, "intel-rapl:", 11)) continue;
        tw_rapl_zone *z = &r->z[r->nz];
        char dir[sizeof z->dir];
        int w = snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
        if (w < 0 || (size_t)w >= sizeof dir) continue;
        memcpy(z->dir, dir, sizeof dir);
        r->nz++;
        z->top = strchr(de->d_name + 11, ':') == NULL;
    }
    closedir(d);
    if (r->nz == 0) {
        st = TW_ERR(TW_ERR_UNSUPPORTED, "no intel-rapl zones under %s", r->root);
        goto fail;
    }
    qsort(r->z, (size_t)r->nz, sizeof r->z[0], tw_rapl_cmp);
    int npkg = 0;
    for (int i = 0; i < r->nz; i++) {
        tw_rapl_zone *z = &r->z[i];
        char path[700];
        snprintf(path, sizeof path, "%s/name", z->dir);
        FILE *f = fopen(path, "r");
        if (!f || !fgets(z->name, sizeof z->name, f)) snprintf(z->name, sizeof z->name, "?");
        if (f) fclose(f);
        z->name[strcspn(z->name, "\n")] = '\0';
        if (z->top && !strncmp(z->name, "package", 7)) npkg++;
    }
    int nmeasured = 0;
    for (int i = 0; i < r->nz; i++) {
        tw_rapl_zone *z = &r->z[i];
        /* packages are the total; psys overlaps them and sub-zones (core, uncore, dram) are
         * parts or separate rails, listed for provenance only */
        z->measured = z->top && (npkg == 0 || !strncmp(z->name, "package", 7));
        tw_status zs = tw_rapl_read_u64(z->dir, "max_energy_range_uj", &z->max_uj);
        if (!zs) zs = tw_rapl_read_u64(z->dir, "energy_uj", &z->last_uj);
        if (!zs && z->last_uj > z->max_uj)
            zs =
                TW_ERR(TW_ERR_PARSE, "%s: energy_uj %" PRIu64 " above max_energy_range_uj %" PRIu64,
                       z->dir, z->last_uj, z->max_uj);
        if (zs) {
            if (z->measured) {
                st = tw_error_ctx(zs, "RAPL zone %s (%s)", z->dir, z->name);
                goto fail;
            }
            snprintf(z->error, sizeof z->error, "%s", tw_error_text());
            continue;
        }
        z->readable = 1;
        nmeasured += z->measured;
    }
    if (!nmeasured) {
        st = TW_ERR(TW_ERR_UNSUPPORTED, "no top-level RAPL zone under %s", r->root);
        goto fail;
    }
    memset(src, 0, sizeof *src);
    src->name = "rapl";
    src->ctx = r;
    src->read_energy_j = tw_rapl_read_energy;
    src->provenance = tw_rapl_provenance;
    src->close = tw_rapl_close;
    int w = snprintf(src->method, sizeof src->method,
                     "RAPL energy_uj counters under %s, %d %s zone(s) summed, wraparound at "
                     "max_energy_range_uj; trace from energy differences",
                     r->root, nmeasured, npkg ? "package" : "top-level");
    (void)w; /* a long root shortens the description only */
    return TW_OK;
fail:
    free(r);
    return st;
}
