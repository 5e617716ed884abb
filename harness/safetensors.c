/* safetensors writer (streaming, atomic) and reader (mmap, validated). See tw_safetensors.h. */
#include "tw_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tw_util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian: this writer and reader assume a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} tw_st_dtypes[TW_ST_DTYPES] = {
    [TW_ST_F32] = {"F32", 4},   [TW_ST_BF16] = {"BF16", 2}, [TW_ST_F16] = {"F16", 2},
    [TW_ST_F64] = {"F64", 8},   [TW_ST_I64] = {"I64", 8},   [TW_ST_I32] = {"I32", 4},
    [TW_ST_I16] = {"I16", 2},   [TW_ST_I8] = {"I8", 1},     [TW_ST_U8] = {"U8", 1},
    [TW_ST_BOOL] = {"BOOL", 1},
};

size_t tw_st_dtype_size(tw_st_dtype dt) {
    return (unsigned)dt < TW_ST_DTYPES ? tw_st_dtypes[dt].size : 0;
}

const char *tw_st_dtype_name(tw_st_dtype dt) {
    return (unsigned)dt < TW_ST_DTYPES ? tw_st_dtypes[dt].name : "?";
}

tw_status tw_st_dtype_parse(const char *name, tw_st_dtype *out) {
    for (int i = 0; i < TW_ST_DTYPES; i++)
        if (!strcmp(name, tw_st_dtypes[i].name)) {
            *out = (tw_st_dtype)i;
            return TW_OK;
        }
    return TW_ERR(TW_ERR_UNSUPPORTED,
                  "unknown safetensors dtype '%s' (known: F32 BF16 F16 F64 I64 I32 I16 I8 U8 BOOL)",
                  name);
}

uint64_t tw_st_tensor_elems(const tw_st_tensor *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return n;
}

/* Bytes of a tensor, with overflow checks (shapes come from untrusted headers). */
static tw_status tw_st_nbytes(const tw_st_tensor *t, const char *ctx, uint64_t *out) {
    uint64_t n = tw_st_dtype_size(t->dtype);
    if (t->ndim < 0 || t->ndim > TW_ST_MAX_DIMS)
        return TW_ERR(TW_ERR_INVALID, "%s: tensor '%s' has %d dimensions (at most %d)", ctx,
                      t->name, t->ndim, TW_ST_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return TW_ERR(TW_ERR_INVALID, "%s: tensor '%s' has negative dimension %lld", ctx,
                          t->name, (long long)t->shape[d]);
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[d], &n))
            return TW_ERR(TW_ERR_INVALID, "%s: tensor '%s' size overflows 64 bits", ctx, t->name);
    }
    *out = n;
    return TW_OK;
}

tw_status tw_st_check_space(const char *dir, uint64_t need_bytes) {
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0)
        return TW_ERR(TW_ERR_IO, "cannot query free space of %s: %s", dir, strerror(errno));
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (avail < need_bytes)
        return TW_ERR(TW_ERR_IO,
                      "not enough disk space in %s: need %llu bytes (%.2f GiB), only %llu bytes "
                      "(%.2f GiB) available",
                      dir, (unsigned long long)need_bytes, (double)need_bytes / 1073741824.0,
                      (unsigned long long)avail, (double)avail / 1073741824.0);
    return TW_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

struct tw_st_writer {
    char *path;
    tw_atomic_file af; /* the file, under its temporary name until committed */
    char *buf;         /* stdio buffer */
    int n;
    tw_st_tensor *t; /* [n], names owned */
    int cur;         /* tensor being written */
    uint64_t cur_done;
    uint64_t header_len, data_bytes;
};

static void tw_st_writer_free(tw_st_writer *w) {
    if (!w) return;
    tw_atomic_abort(&w->af); /* closes before the stdio buffer goes */
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w->buf);
    free(w->path);
    free(w);
}

void tw_st_writer_abort(tw_st_writer *w) {
    tw_st_writer_free(w);
}

/* The folder holding path ("." for a bare name). */
static void tw_st_dirname(const char *path, char *dir, size_t n) {
    snprintf(dir, n, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

static tw_status tw_st_build_header(tw_st_writer *w, const char *const *meta_kv, int n_meta,
                                    char **out, size_t *out_len) {
    json_t *root = json_object(), *meta = json_object();
    tw_status st = TW_OK;
    if (!root || !meta) {
        json_decref(root);
        json_decref(meta);
        return TW_ERR(TW_ERR_NOMEM, "%s: building the safetensors header", w->path);
    }
    json_object_set_new(meta, "format", json_string("pt"));
    for (int i = 0; i < n_meta; i++) {
        const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
        if (!k || !v || !strcmp(k, "format")) {
            st = TW_ERR(TW_ERR_INVALID, "%s: metadata pair %d is NULL or redefines 'format'",
                        w->path, i);
            goto done;
        }
        json_object_set_new(meta, k, json_string(v));
    }
    /* __metadata__ first, as the reference implementation writes it; objects keep insertion
     * order in jansson >= 2.8, so the tensors follow in file order. */
    json_object_set_new(root, "__metadata__", meta);
    for (int i = 0; i < w->n; i++) {
        const tw_st_tensor *t = &w->t[i];
        if (json_object_get(root, t->name)) {
            st = TW_ERR(TW_ERR_INVALID, "%s: tensor name '%s' is declared twice", w->path, t->name);
            goto done;
        }
        json_t *o = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(offs, json_integer((json_int_t)t->begin));
        json_array_append_new(offs, json_integer((json_int_t)t->end));
        json_object_set_new(o, "dtype", json_string(tw_st_dtype_name(t->dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "data_offsets", offs);
        json_object_set_new(root, t->name, o);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    if (!text) {
        st = TW_ERR(TW_ERR_NOMEM, "%s: serialising the safetensors header", w->path);
        goto done;
    }
    size_t len = strlen(text);
    size_t padded = (len + 7) / 8 * 8; /* data starts at 8 + padded, a multiple of 8 */
    char *h = malloc(padded);
    if (!h) {
        free(text);
        st = TW_ERR(TW_ERR_NOMEM, "%s: header of %zu bytes", w->path, padded);
        goto done;
    }
    memcpy(h, text, len);
    memset(h + len, ' ', padded - len);
    free(text);
    *out = h;
    *out_len = padded;
done:
    json_decref(root);
    return st;
}

tw_status tw_st_writer_open(const char *path, const tw_st_tensor *tensors, int n,
                            const char *const *meta_kv, int n_meta, tw_st_writer **out) {
    *out = NULL;
    if (n < 0 || n_meta < 0 || (n > 0 && !tensors))
        return TW_ERR(TW_ERR_INVALID, "%s: bad tensor list (n = %d)", path, n);
    tw_st_writer *w = calloc(1, sizeof *w);
    if (!w) return TW_ERR(TW_ERR_NOMEM, "safetensors writer for %s", path);
    tw_status st = TW_OK;
    char *header = NULL;
    size_t header_len = 0;
    w->path = strdup(path);
    w->t = calloc((size_t)(n > 0 ? n : 1), sizeof *w->t);
    if (!w->path || !w->t) {
        st = TW_ERR(TW_ERR_NOMEM, "safetensors writer for %s", path);
        goto fail;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        tw_st_tensor *t = &w->t[i];
        *t = tensors[i];
        t->name = NULL;
        if (!tensors[i].name || !tensors[i].name[0] || !strcmp(tensors[i].name, "__metadata__")) {
            st = TW_ERR(TW_ERR_INVALID, "%s: tensor %d has an empty or reserved name", path, i);
            goto fail;
        }
        if (!(t->name = strdup(tensors[i].name))) {
            st = TW_ERR(TW_ERR_NOMEM, "%s: tensor names", path);
            goto fail;
        }
        w->n = i + 1;
        if ((unsigned)t->dtype >= TW_ST_DTYPES) {
            st = TW_ERR(TW_ERR_INVALID, "%s: tensor '%s' has invalid dtype %d", path, t->name,
                        (int)t->dtype);
            goto fail;
        }
        uint64_t nb;
        if ((st = tw_st_nbytes(t, path, &nb)) != TW_OK) goto fail;
        t->begin = off;
        t->end = off + nb;
        off = t->end;
    }
    w->n = n;
    w->data_bytes = off;
    if ((st = tw_st_build_header(w, meta_kv, n_meta, &header, &header_len)) != TW_OK) goto fail;
    w->header_len = header_len;

    char dir[4096];
    tw_st_dirname(path, dir, sizeof dir);
    if ((st = tw_mkdirs(dir)) != TW_OK) goto fail;
    if ((st = tw_st_check_space(dir, tw_st_writer_file_bytes(w))) != TW_OK) goto fail;
    if ((st = tw_atomic_open(&w->af, path)) != TW_OK) goto fail;
    /* Large stdio buffer: tensors arrive in row blocks of a few MB, written sequentially. */
    w->buf = malloc(1 << 20);
    if (w->buf) setvbuf(w->af.f, w->buf, _IOFBF, 1 << 20);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    if (fwrite(len8, 1, 8, w->af.f) != 8 || fwrite(header, 1, header_len, w->af.f) != header_len) {
        st = TW_ERR(TW_ERR_IO, "cannot write %s: %s", w->af.tmp, strerror(errno));
        goto fail;
    }
    free(header);
    w->cur = 0;
    while (w->cur < w->n && w->t[w->cur].end == w->t[w->cur].begin) w->cur++; /* empty tensors */
    *out = w;
    return TW_OK;
fail:
    free(header);
    tw_st_writer_free(w);
    return st;
}

uint64_t tw_st_writer_file_bytes(const tw_st_writer *w) {
    return 8 + w->header_len + w->data_bytes;
}

tw_status tw_st_writer_append(tw_st_writer *w, const char *name, const void *data, size_t nbytes) {
    if (w->cur >= w->n)
        return TW_ERR(TW_ERR_INVALID, "%s: all %d tensors are complete; cannot append to '%s'",
                      w->path, w->n, name);
    tw_st_tensor *t = &w->t[w->cur];
    if (strcmp(name, t->name) != 0)
        return TW_ERR(TW_ERR_INVALID, "%s: appending to '%s' but tensor '%s' is not complete",
                      w->path, name, t->name);
    uint64_t left = t->end - t->begin - w->cur_done;
    if ((uint64_t)nbytes > left)
        return TW_ERR(TW_ERR_INVALID,
                      "%s: %zu bytes appended to '%s', which has only %llu bytes left", w->path,
                      nbytes, name, (unsigned long long)left);
    if (nbytes && fwrite(data, 1, nbytes, w->af.f) != nbytes)
        return TW_ERR(TW_ERR_IO, "cannot write %s: %s", w->af.tmp, strerror(errno));
    w->cur_done += nbytes;
    if (w->cur_done == t->end - t->begin) {
        w->cur_done = 0;
        w->cur++;
        while (w->cur < w->n && w->t[w->cur].end == w->t[w->cur].begin) w->cur++;
    }
    return TW_OK;
}

tw_status tw_st_writer_close(tw_st_writer *w) {
    tw_status st = TW_OK;
    if (w->cur < w->n) {
        st = TW_ERR(TW_ERR_INVALID, "%s: closed with tensor '%s' (%d of %d) incomplete", w->path,
                    w->t[w->cur].name, w->cur + 1, w->n);
        goto done;
    }
    st = tw_atomic_commit(&w->af);
done:
    tw_st_writer_free(w);
    return st;
}

/* ---- reader ------------------------------------------------------------------------------ */

struct tw_st_file {
    char *path;
    unsigned char *map;
    size_t size;
    uint64_t header_len;
    int n;
    tw_st_tensor *t; /* [n], sorted by begin */
    json_t *meta;    /* the __metadata__ object, or NULL */
};

void tw_st_close(tw_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    json_decref(f->meta);
    free(f->path);
    free(f);
}

static int tw_st_cmp_begin(const void *a, const void *b) {
    const tw_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static tw_status tw_st_parse_u64(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return TW_ERR_PARSE;
    *out = (uint64_t)json_integer_value(v);
    return TW_OK;
}

/* One header entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]}. */
static tw_status tw_st_parse_entry(const char *path, const char *name, json_t *o, tw_st_tensor *t) {
    if (!json_is_object(o))
        return TW_ERR(TW_ERR_PARSE, "%s: header entry '%s' is not an object", path, name);
    json_t *dt = json_object_get(o, "dtype");
    if (!json_is_string(dt))
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' has no dtype string", path, name);
    if (tw_st_dtype_parse(json_string_value(dt), &t->dtype) != TW_OK)
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' has unknown dtype '%s'", path, name,
                      json_string_value(dt));
    json_t *shape = json_object_get(o, "shape");
    if (!json_is_array(shape))
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' has no shape array", path, name);
    if (json_array_size(shape) > TW_ST_MAX_DIMS)
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' has %zu dimensions (at most %d)", path, name,
                      json_array_size(shape), TW_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' shape[%d] is not a non-negative integer",
                          path, name, d);
        t->shape[d] = json_integer_value(v);
    }
    json_t *offs = json_object_get(o, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        tw_st_parse_u64(json_array_get(offs, 0), &t->begin) != TW_OK ||
        tw_st_parse_u64(json_array_get(offs, 1), &t->end) != TW_OK)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: tensor '%s' data_offsets must be two non-negative integers", path, name);
    if (t->end < t->begin)
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' data_offsets [%llu, %llu] end before begin",
                      path, name, (unsigned long long)t->begin, (unsigned long long)t->end);
    uint64_t nb;
    if (tw_st_nbytes(t, path, &nb) != TW_OK)
        return TW_ERR(TW_ERR_PARSE, "%s: tensor '%s' has an impossible shape", path, name);
    if (nb != t->end - t->begin)
        return TW_ERR(TW_ERR_PARSE,
                      "%s: tensor '%s' shape and dtype %s need %llu bytes but data_offsets "
                      "[%llu, %llu] hold %llu",
                      path, name, tw_st_dtype_name(t->dtype), (unsigned long long)nb,
                      (unsigned long long)t->begin, (unsigned long long)t->end,
                      (unsigned long long)(t->end - t->begin));
    return TW_OK;
}

static tw_status tw_st_parse_header(tw_st_file *f) {
    const char *path = f->path;
    const char *text = (const char *)f->map + 8;
    if (f->header_len == 0 || text[0] != '{')
        return TW_ERR(TW_ERR_PARSE, "%s: safetensors header does not start with '{'", path);
    json_error_t jerr;
    json_t *root = json_loadb(text, (size_t)f->header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return TW_ERR(TW_ERR_PARSE, "%s: safetensors header is not valid JSON (offset %d: %s)",
                      path, jerr.position, jerr.text);
    tw_status st = TW_OK;
    if (!json_is_object(root)) {
        st = TW_ERR(TW_ERR_PARSE, "%s: safetensors header is not a JSON object", path);
        goto done;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        const char *k;
        json_t *v;
        if (!json_is_object(meta)) {
            st = TW_ERR(TW_ERR_PARSE, "%s: __metadata__ is not an object", path);
            goto done;
        }
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                st =
                    TW_ERR(TW_ERR_PARSE, "%s: __metadata__ value of '%s' is not a string", path, k);
                goto done;
            }
        }
        f->meta = json_incref(meta);
    }
    size_t cap = json_object_size(root);
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    if (!f->t) {
        st = TW_ERR(TW_ERR_NOMEM, "%s: %zu header entries", path, cap);
        goto done;
    }
    const char *name;
    json_t *o;
    json_object_foreach(root, name, o) {
        if (!strcmp(name, "__metadata__")) continue;
        tw_st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(name))) {
            st = TW_ERR(TW_ERR_NOMEM, "%s: tensor names", path);
            goto done;
        }
        f->n++;
        if ((st = tw_st_parse_entry(path, name, o, t)) != TW_OK) goto done;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, tw_st_cmp_begin);
    uint64_t data_len = (uint64_t)f->size - 8 - f->header_len, pos = 0;
    for (int i = 0; i < f->n; i++) {
        const tw_st_tensor *t = &f->t[i];
        if (t->begin < pos) {
            st = TW_ERR(TW_ERR_PARSE,
                        "%s: tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s' ending "
                        "at %llu",
                        path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        f->t[i - 1].name, (unsigned long long)pos);
            goto done;
        }
        if (t->begin > pos) {
            st = TW_ERR(TW_ERR_PARSE,
                        "%s: gap in the data section: tensor '%s' starts at %llu, previous data "
                        "ends at %llu",
                        path, t->name, (unsigned long long)t->begin, (unsigned long long)pos);
            goto done;
        }
        if (t->end > data_len) {
            st = TW_ERR(TW_ERR_PARSE,
                        "%s: tensor '%s' data_offsets [%llu, %llu] run past the data section "
                        "(%llu bytes): file truncated?",
                        path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)data_len);
            goto done;
        }
        pos = t->end;
    }
    if (pos != data_len) {
        st = TW_ERR(TW_ERR_PARSE,
                    "%s: the data section is %llu bytes but the tensors cover %llu (trailing "
                    "bytes)",
                    path, (unsigned long long)data_len, (unsigned long long)pos);
        goto done;
    }
done:
    json_decref(root);
    return st;
}

tw_status tw_st_open(const char *path, tw_st_file **out) {
    *out = NULL;
    tw_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return TW_ERR(TW_ERR_NOMEM, "opening %s", path);
    }
    tw_status st = TW_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = TW_ERR(TW_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = TW_ERR(TW_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = TW_ERR(TW_ERR_PARSE,
                    "%s: %lld bytes is too short for a safetensors file (8-byte header length "
                    "missing)",
                    path, (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = TW_ERR(TW_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)f->map[i] << (8 * i);
    if (n == 0 || n > TW_ST_MAX_HEADER || n > (uint64_t)f->size - 8) {
        st = TW_ERR(TW_ERR_PARSE,
                    "%s: bad safetensors header length %llu (file is %zu bytes, limit %llu)", path,
                    (unsigned long long)n, f->size, (unsigned long long)TW_ST_MAX_HEADER);
        goto fail;
    }
    f->header_len = n;
    if ((st = tw_st_parse_header(f)) != TW_OK) goto fail;
    *out = f;
    return TW_OK;
fail:
    tw_st_close(f);
    return st;
}

int tw_st_count(const tw_st_file *f) {
    return f->n;
}

const tw_st_tensor *tw_st_get(const tw_st_file *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const void *tw_st_data(const tw_st_file *f, const tw_st_tensor *t) {
    return f->map + 8 + f->header_len + t->begin;
}

/* IEEE half to float, long-hand (subnormals, inf, NaN). */
static float tw_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        if (m == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int s = -1;
            do {
                m <<= 1;
                s++;
            } while (!(m & 0x400));
            u = sign | ((uint32_t)(127 - 15 - s) << 23) | ((m & 0x3ff) << 13);
        }
    } else {
        u = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

tw_status tw_st_read_f32(const tw_st_file *f, const tw_st_tensor *t, float *out) {
    const unsigned char *p = tw_st_data(f, t);
    uint64_t n = tw_st_tensor_elems(t);
    switch (t->dtype) {
    case TW_ST_F32:
        memcpy(out, p, n * 4);
        break;
    case TW_ST_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
            memcpy(&out[i], &u, 4);
        }
        break;
    case TW_ST_F16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = tw_st_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case TW_ST_F64:
        for (uint64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        break;
    default:
        return TW_ERR(TW_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, not a float type", f->path,
                      t->name, tw_st_dtype_name(t->dtype));
    }
    return TW_OK;
}

const char *tw_st_metadata(const tw_st_file *f, const char *key) {
    if (!f->meta) return NULL;
    json_t *v = json_object_get(f->meta, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

uint64_t tw_st_header_bytes(const tw_st_file *f) {
    return f->header_len;
}

uint64_t tw_st_file_bytes(const tw_st_file *f) {
    return (uint64_t)f->size;
}
