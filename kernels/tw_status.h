/* tw_status: the error convention of every layer below `main`.
 * Functions return a tw_status; on failure they record a message (with file:line and the
 * context each caller adds on the way up) that tw_last_error() returns. Only a command's main
 * decides to exit. The message is thread-local, so kernels on worker threads don't clobber it. */
#ifndef TW_STATUS_H
#define TW_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TW_OK = 0,
    TW_ERR_INVALID,     /* bad argument, shape or configuration */
    TW_ERR_NOMEM,       /* host or device memory exhausted, or a plan that does not fit */
    TW_ERR_IO,          /* file or sensor could not be read or written */
    TW_ERR_PARSE,       /* malformed JSON, config or data file */
    TW_ERR_UNSUPPORTED, /* not built, not available on this machine, not implemented */
    TW_ERR_DEVICE,      /* accelerator or driver error */
    TW_ERR_COMM,        /* communicator error, peer failure */
    TW_ERR_TIMEOUT,     /* a bounded wait ran out */
    TW_ERR_INTERRUPTED, /* SIGINT or similar */
    TW_ERR_INTERNAL,
    TW_ERR_CHECK, /* a result disagreed with its reference beyond the tolerance */
} tw_status;

/* Records "file:line: message" as the current error and returns st. */
tw_status tw_error_at(tw_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefixes the current error with "context: " (as a caller relays it); returns st. */
tw_status tw_error_ctx(tw_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *tw_last_error(void);
void tw_clear_error(void);
const char *tw_status_name(tw_status st);

#define TW_ERR(st, ...) tw_error_at((st), __FILE__, __LINE__, __VA_ARGS__)

/* Relays a failing status upward, adding the failing expression as context. */
#define TW_TRY(expr)                                                                               \
    do {                                                                                           \
        tw_status tw_try_st_ = (expr);                                                             \
        if (tw_try_st_ != TW_OK) return tw_error_ctx(tw_try_st_, "%s:%d", __FILE__, __LINE__);     \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
