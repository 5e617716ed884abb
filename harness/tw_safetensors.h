/* safetensors files: a streaming writer and a validating, memory-mapped reader.
 *
 * Format: 8-byte little-endian header length N, then N bytes of JSON
 *   {"__metadata__": {"format": "pt", ...}, "NAME": {"dtype": "BF16", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * padded with spaces so the data section starts at a multiple of 8, then the raw little-endian
 * tensor bytes. Offsets are relative to the start of the data section; tensors are laid out
 * back to back with no gaps.
 *
 * The writer is given every tensor's name, dtype and shape up front (so the header can be
 * written first), then streams the bytes in chunks of any size: a 405B-parameter model never
 * has to be in memory. It writes to a temporary file in the same folder and renames it into
 * place on close, so a reader never sees a half-written file. */
#ifndef TW_SAFETENSORS_H
#define TW_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tw_status.h"

#define TW_ST_MAX_DIMS 8
/* The header length limit of the reference implementation (100 MB). */
#define TW_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum {
    TW_ST_F32 = 0,
    TW_ST_BF16,
    TW_ST_F16,
    TW_ST_F64,
    TW_ST_I64,
    TW_ST_I32,
    TW_ST_I16,
    TW_ST_I8,
    TW_ST_U8,
    TW_ST_BOOL,
    TW_ST_DTYPES
} tw_st_dtype;

size_t tw_st_dtype_size(tw_st_dtype dt);      /* bytes per element */
const char *tw_st_dtype_name(tw_st_dtype dt); /* "F32", "BF16", ... */
tw_status tw_st_dtype_parse(const char *name, tw_st_dtype *out);

typedef struct {
    char *name; /* owned by the writer / reader that hands it out */
    tw_st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[TW_ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets in the data section, [begin, end) */
} tw_st_tensor;

uint64_t tw_st_tensor_elems(const tw_st_tensor *t); /* product of the shape (1 for a scalar) */

/* Fails with TW_ERR_IO naming the folder and both figures when the file system holding `dir`
 * has fewer than need_bytes available to this user. */
tw_status tw_st_check_space(const char *dir, uint64_t need_bytes);

/* ---- writer ------------------------------------------------------------------------------ */
typedef struct tw_st_writer tw_st_writer;

/* Declares the tensors (name, dtype, ndim, shape are read; begin/end are computed) in file
 * order, and metadata as n_meta "key", "value" string pairs (meta_kv[2*i], meta_kv[2*i+1];
 * "format": "pt" is always added first). Checks the disk has room for the whole file, creates
 * the temporary file and writes the header. */
tw_status tw_st_writer_open(const char *path, const tw_st_tensor *tensors, int n,
                            const char *const *meta_kv, int n_meta, tw_st_writer **out);
/* Appends nbytes of tensor `name`, which must be the tensor being written (the first one not
 * yet complete, in declaration order); a chunk may not run past that tensor's end. */
tw_status tw_st_writer_append(tw_st_writer *w, const char *name, const void *data, size_t nbytes);
/* Size of the whole file (header + data) that close will produce. */
uint64_t tw_st_writer_file_bytes(const tw_st_writer *w);
/* Checks every declared byte was written, flushes, fsyncs and renames the file into place.
 * Frees w whatever the outcome; on failure the temporary file is removed. */
tw_status tw_st_writer_close(tw_st_writer *w);
/* Abandons the file: removes the temporary file, frees w. NULL is ignored. */
void tw_st_writer_abort(tw_st_writer *w);

/* ---- reader ------------------------------------------------------------------------------ */
typedef struct tw_st_file tw_st_file;

/* Maps and validates the file: header length within the file, header is a JSON object, every
 * dtype known, shapes non-negative, shape product * dtype size == end - begin, tensors back to
 * back from offset 0 with no gap or overlap, and the data section exactly as long as the last
 * tensor's end. Errors (TW_ERR_PARSE / TW_ERR_IO) name the file and the offending tensor. */
tw_status tw_st_open(const char *path, tw_st_file **out);
void tw_st_close(tw_st_file *f); /* NULL is ignored */

int tw_st_count(const tw_st_file *f);
/* Tensors in data-offset order (which is the header order for files written here). */
const tw_st_tensor *tw_st_get(const tw_st_file *f, int i);
const tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name); /* NULL if absent */
/* Start of the tensor's bytes in the mapping (valid until tw_st_close). Not necessarily aligned
 * to the element size when a file mixes dtypes: memcpy out of it. */
const void *tw_st_data(const tw_st_file *f, const tw_st_tensor *t);
/* Copies the tensor converted to float32 (F32, BF16, F16, F64); out has tw_st_tensor_elems. */
tw_status tw_st_read_f32(const tw_st_file *f, const tw_st_tensor *t, float *out);
/* A __metadata__ value, or NULL. */
const char *tw_st_metadata(const tw_st_file *f, const char *key);
uint64_t tw_st_header_bytes(const tw_st_file *f); /* N, the JSON header length */
uint64_t tw_st_file_bytes(const tw_st_file *f);

#endif
