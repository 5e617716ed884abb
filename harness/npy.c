/* NumPy .npy v1.0 float32 writer (streaming, atomic) and reader. See tw_npy.h. */
#include "tw_npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .npy writer declares '<f4' data and assumes a little-endian host"
#endif

#define TW_NPY_ALIGN 64 /* numpy >= 1.14 aligns the data to 64 bytes */

/* The dict text; lead_width > 0: the text is sized as if shape[0] had that many digits. */
static int tw_npy_dict(const int64_t *shape, int ndim, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < ndim; d++)
        n += snprintf(buf + (n < (int)cap ? n : (int)cap), n < (int)cap ? cap - (size_t)n : 0,
                      d ? ", %lld" : "%lld", (long long)shape[d]);
    n += snprintf(buf + (n < (int)cap ? n : (int)cap), n < (int)cap ? cap - (size_t)n : 0, "%s",
                  ndim == 1 ? ",), }" : "), }");
    return n;
}

tw_status tw_npy_header(const int64_t *shape, int ndim, int lead_width, char *buf, size_t cap,
                        size_t *len) {
    if (ndim < 0 || ndim > TW_NPY_MAX_DIMS)
        return TW_ERR(TW_ERR_INVALID, ".npy: %d dimensions (0 to %d)", ndim, TW_NPY_MAX_DIMS);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return TW_ERR(TW_ERR_INVALID, ".npy: shape[%d] = %lld is negative", d,
                          (long long)shape[d]);
    char dict[512];
    int dl = tw_npy_dict(shape, ndim, dict, sizeof dict);
    if (dl >= (int)sizeof dict) return TW_ERR(TW_ERR_INVALID, ".npy: shape text too long");
    int sized = dl;
    if (lead_width > 0 && ndim > 0) {
        char digits[32];
        int w = snprintf(digits, sizeof digits, "%lld", (long long)shape[0]);
        if (w > lead_width)
            return TW_ERR(TW_ERR_INVALID, ".npy: shape[0] = %lld is wider than %d digits",
                          (long long)shape[0], lead_width);
        sized = dl + (lead_width - w);
    }
    /* magic (6) + version (2) + HLEN (2) + dict + at least one space-or-newline */
    size_t total =
        ((size_t)10 + (size_t)sized + 1 + TW_NPY_ALIGN - 1) / TW_NPY_ALIGN * TW_NPY_ALIGN;
    size_t hlen = total - 10;
    if (hlen > 65535) return TW_ERR(TW_ERR_INVALID, ".npy: header too long for version 1.0");
    if (cap < total) return TW_ERR(TW_ERR_INVALID, ".npy: header buffer too small");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dl);
    memset(buf + 10 + dl, ' ', hlen - (size_t)dl - 1);
    buf[total - 1] = '\n';
    *len = total;
    return TW_OK;
}

struct tw_npy_writer {
    char *path;
    tw_atomic_file af; /* the file, under its temporary name until committed */
    int ndim;
    int64_t shape[TW_NPY_MAX_DIMS];
    int open_lead;     /* shape[0] declared -1 */
    size_t row;        /* values per leading index */
    size_t total;      /* declared values (when !open_lead) */
    size_t written;    /* values appended */
    size_t header_len; /* bytes */
};

#define TW_NPY_LEAD_WIDTH 20 /* digits reserved for an open leading dimension */

void tw_npy_writer_abort(tw_npy_writer *w) {
    if (!w) return;
    tw_atomic_abort(&w->af);
    free(w->path);
    free(w);
}

tw_status tw_npy_writer_open(const char *path, const int64_t *shape, int ndim,
                             tw_npy_writer **out) {
    *out = NULL;
    if (ndim < 0 || ndim > TW_NPY_MAX_DIMS)
        return TW_ERR(TW_ERR_INVALID, "%s: %d dimensions (0 to %d)", path, ndim, TW_NPY_MAX_DIMS);
    tw_npy_writer *w = calloc(1, sizeof *w);
    if (!w) return TW_ERR(TW_ERR_NOMEM, "%s", path);
    tw_status st = TW_OK;
    w->ndim = ndim;
    w->row = 1;
    for (int d = 0; d < ndim; d++) {
        w->shape[d] = shape[d];
        if (d == 0 && shape[0] == -1) {
            w->open_lead = 1;
            continue;
        }
        if (shape[d] < 0) {
            st = TW_ERR(TW_ERR_INVALID, "%s: shape[%d] = %lld is negative", path, d,
                        (long long)shape[d]);
            goto fail;
        }
        if (d > 0 && __builtin_mul_overflow(w->row, (size_t)shape[d], &w->row)) {
            st = TW_ERR(TW_ERR_INVALID, "%s: shape overflows", path);
            goto fail;
        }
    }
    w->total = w->row;
    if (ndim > 0 && !w->open_lead && __builtin_mul_overflow(w->row, (size_t)shape[0], &w->total)) {
        st = TW_ERR(TW_ERR_INVALID, "%s: shape overflows", path);
        goto fail;
    }
    char hdr[1024];
    int64_t sh[TW_NPY_MAX_DIMS];
    memcpy(sh, w->shape, sizeof sh);
    if (w->open_lead) sh[0] = 0;
    if ((st = tw_npy_header(sh, ndim, w->open_lead ? TW_NPY_LEAD_WIDTH : 0, hdr, sizeof hdr,
                            &w->header_len)) != TW_OK)
        goto fail;
    w->path = strdup(path);
    if (!w->path) {
        st = TW_ERR(TW_ERR_NOMEM, "%s", path);
        goto fail;
    }
    if ((st = tw_atomic_open(&w->af, path)) != TW_OK) goto fail;
    if (fwrite(hdr, 1, w->header_len, w->af.f) != w->header_len) {
        st = TW_ERR(TW_ERR_IO, "cannot write %s: %s", w->af.tmp, strerror(errno));
        goto fail;
    }
    *out = w;
    return TW_OK;
fail:
    tw_npy_writer_abort(w);
    return st;
}

tw_status tw_npy_writer_append(tw_npy_writer *w, const float *data, size_t n) {
    if (!w->open_lead && n > w->total - w->written)
        return TW_ERR(TW_ERR_INVALID,
                      "%s: appending %zu values past the declared %zu (%zu written)", w->path, n,
                      w->total, w->written);
    if (n && fwrite(data, sizeof(float), n, w->af.f) != n)
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", w->af.tmp, strerror(errno));
    w->written += n;
    return TW_OK;
}

tw_status tw_npy_writer_close(tw_npy_writer *w) {
    tw_status st = TW_OK;
    if (w->open_lead) {
        if (w->row == 0 ? w->written != 0 : w->written % w->row != 0) {
            st = TW_ERR(TW_ERR_INVALID, "%s: %zu values written, not a whole number of rows of %zu",
                        w->path, w->written, w->row);
            goto done;
        }
        /* Rewrite the header with the real leading dimension; it was sized for 20 digits, so
         * the padding absorbs the difference and the data offset does not move. */
        w->shape[0] = w->row ? (int64_t)(w->written / w->row) : 0;
        char hdr[1024];
        size_t len;
        if ((st = tw_npy_header(w->shape, w->ndim, TW_NPY_LEAD_WIDTH, hdr, sizeof hdr, &len)) !=
            TW_OK)
            goto done;
        if (len != w->header_len) {
            st = TW_ERR(TW_ERR_INTERNAL, "%s: header length changed", w->path);
            goto done;
        }
        if (fseek(w->af.f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, len, w->af.f) != len) {
            st = TW_ERR(TW_ERR_IO, "cannot rewrite the header of %s: %s", w->af.tmp,
                        strerror(errno));
            goto done;
        }
    } else if (w->written != w->total) {
        st = TW_ERR(TW_ERR_INVALID, "%s: closed after %zu of the declared %zu values", w->path,
                    w->written, w->total);
        goto done;
    }
    st = tw_atomic_commit(&w->af);
done:
    tw_npy_writer_abort(w);
    return st;
}

tw_status tw_npy_write(const char *path, const int64_t *shape, int ndim, const float *data) {
    tw_npy_writer *w;
    TW_TRY(tw_npy_writer_open(path, shape, ndim, &w));
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    tw_status st = tw_npy_writer_append(w, data, n);
    if (st != TW_OK) {
        tw_npy_writer_abort(w);
        return st;
    }
    return tw_npy_writer_close(w);
}

/* ---- reader ------------------------------------------------------------------------------ */

void tw_npy_free(tw_npy_array *a) {
    free(a->data);
    a->data = NULL;
}

/* Finds 'key': in the dict text and returns a pointer after the colon and spaces. */
static const char *tw_npy_key(const char *dict, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "'%s':", key);
    const char *p = strstr(dict, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

tw_status tw_npy_read(const char *path, tw_npy_array *out) {
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    size_t size = 0;
    TW_TRY(tw_read_file(path, &buf, &size));
    tw_status st = TW_OK;
    const unsigned char *u = (const unsigned char *)buf;
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        st = TW_ERR(TW_ERR_PARSE, "%s: not a .npy file (no \\x93NUMPY magic)", path);
        goto done;
    }
    size_t hlen, pre;
    if (u[6] == 1) {
        hlen = (size_t)u[8] | ((size_t)u[9] << 8);
        pre = 10;
    } else if (u[6] == 2 && size >= 12) {
        hlen = (size_t)u[8] | ((size_t)u[9] << 8) | ((size_t)u[10] << 16) | ((size_t)u[11] << 24);
        pre = 12;
    } else {
        st = TW_ERR(TW_ERR_PARSE, "%s: unsupported .npy version %d.%d", path, u[6], u[7]);
        goto done;
    }
    if (pre + hlen > size || hlen == 0 || buf[pre + hlen - 1] != '\n') {
        st = TW_ERR(TW_ERR_PARSE,
                    "%s: .npy header length %zu is inconsistent with the file (%zu "
                    "bytes) or does not end in a newline",
                    path, hlen, size);
        goto done;
    }
    char dict[4096];
    if (hlen >= sizeof dict) {
        st = TW_ERR(TW_ERR_PARSE, "%s: .npy header of %zu bytes is too long", path, hlen);
        goto done;
    }
    memcpy(dict, buf + pre, hlen);
    dict[hlen] = '\0';
    const char *p = tw_npy_key(dict, "descr");
    if (!p || strncmp(p, "'<f4'", 5) != 0) {
        st =
            TW_ERR(TW_ERR_UNSUPPORTED, "%s: .npy descr is not '<f4' (little-endian float32)", path);
        goto done;
    }
    p = tw_npy_key(dict, "fortran_order");
    if (!p || strncmp(p, "False", 5) != 0) {
        st = TW_ERR(TW_ERR_UNSUPPORTED, "%s: .npy array is not in C order", path);
        goto done;
    }
    p = tw_npy_key(dict, "shape");
    if (!p || *p != '(') {
        st = TW_ERR(TW_ERR_PARSE, "%s: .npy header has no shape tuple", path);
        goto done;
    }
    p++;
    size_t count = 1;
    for (;;) {
        while (*p == ' ') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || out->ndim >= TW_NPY_MAX_DIMS) {
            st = TW_ERR(TW_ERR_PARSE, "%s: bad .npy shape '%s'", path, dict);
            goto done;
        }
        out->shape[out->ndim++] = v;
        count *= (size_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
    }
    out->count = count;
    out->header_bytes = pre + hlen;
    if (size - out->header_bytes != count * sizeof(float)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: .npy data is %zu bytes, shape needs %zu", path,
                    size - out->header_bytes, count * sizeof(float));
        goto done;
    }
    out->data = malloc(count ? count * sizeof(float) : 1);
    if (!out->data) {
        st = TW_ERR(TW_ERR_NOMEM, "%s: %zu values", path, count);
        goto done;
    }
    memcpy(out->data, buf + out->header_bytes, count * sizeof(float));
done:
    free(buf);
    return st;
}
