/* NumPy .npy files (format version 1.0) of float32, little-endian, C order, any shape.
 *
 * Layout: "\x93NUMPY", version bytes 1 0, uint16 little-endian header length HLEN, then HLEN
 * bytes of a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (a, b, c), }
 * padded with spaces and ending in '\n' so that the data starts at a multiple of 64, then the
 * raw float32 data. np.load reads these files.
 *
 * The writer streams: open with the declared shape, append values (e.g. one step of logits
 * [batch, vocab] at a time), close checks the count and renames the temporary file into place.
 * A leading dimension declared as -1 is filled in at close from the number of values written
 * (the header keeps room for it), for a run that may stop early. */
#ifndef TW_NPY_H
#define TW_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "tw_status.h"

#define TW_NPY_MAX_DIMS 8

/* The header (magic through the '\n'), written into buf; *len receives its length (a multiple
 * of 64). lead_width > 0 reserves that many characters for shape[0] (for rewriting it later). */
tw_status tw_npy_header(const int64_t *shape, int ndim, int lead_width, char *buf, size_t cap,
                        size_t *len);

typedef struct tw_npy_writer tw_npy_writer;

/* shape[0] may be -1 (leading dimension set by close); every other dimension is >= 0. */
tw_status tw_npy_writer_open(const char *path, const int64_t *shape, int ndim, tw_npy_writer **out);
/* Appends n float32 values in C order; more than the declared total is an error. */
tw_status tw_npy_writer_append(tw_npy_writer *w, const float *data, size_t n);
/* Checks the count (== product of the shape, or a whole number of rows when shape[0] was -1),
 * flushes and renames into place. Frees w whatever the outcome. */
tw_status tw_npy_writer_close(tw_npy_writer *w);
void tw_npy_writer_abort(tw_npy_writer *w); /* removes the temporary file; NULL ignored */

/* Whole array in one call. */
tw_status tw_npy_write(const char *path, const int64_t *shape, int ndim, const float *data);

/* Reader (tests, tools): accepts what the writer writes, and any v1.0/v2.0 '<f4' C-order file. */
typedef struct {
    int ndim;
    int64_t shape[TW_NPY_MAX_DIMS];
    size_t count;        /* product of the shape */
    size_t header_bytes; /* offset of the data in the file */
    float *data;         /* [count], malloc'd */
} tw_npy_array;

tw_status tw_npy_read(const char *path, tw_npy_array *out);
void tw_npy_free(tw_npy_array *a);

#endif
