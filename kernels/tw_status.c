/* tw_status: thread-local error message with context chaining. */
#include "tw_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TW_ERRMSG_LEN 2048
static _Thread_local char tw_errmsg[TW_ERRMSG_LEN];

tw_status tw_error_at(tw_status st, const char *file, int line, const char *fmt, ...) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    int n = snprintf(tw_errmsg, sizeof tw_errmsg, "%s:%d: ", base, line);
    if (n < 0 || n >= (int)sizeof tw_errmsg) return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tw_errmsg + n, sizeof tw_errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return st;
}

tw_status tw_error_ctx(tw_status st, const char *fmt, ...) {
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[TW_ERRMSG_LEN];
    memcpy(old, tw_errmsg, sizeof old);
    if (old[0] == '\0') snprintf(old, sizeof old, "%s", tw_status_name(st));
    /* the chained message is cut at the buffer's end when it grows past it */
    size_t lp = strnlen(prefix, sizeof prefix);
    memcpy(tw_errmsg, prefix, lp);
    size_t pos = lp;
    if (pos + 2 < sizeof tw_errmsg) {
        tw_errmsg[pos++] = ':';
        tw_errmsg[pos++] = ' ';
    }
    size_t lo = strnlen(old, sizeof old);
    if (lo > sizeof tw_errmsg - 1 - pos) lo = sizeof tw_errmsg - 1 - pos;
    memcpy(tw_errmsg + pos, old, lo);
    tw_errmsg[pos + lo] = '\0';
    return st;
}

const char *tw_last_error(void) {
    return tw_errmsg[0] ? tw_errmsg : "no error recorded";
}

void tw_clear_error(void) {
    tw_errmsg[0] = '\0';
}

const char *tw_status_name(tw_status st) {
    switch (st) {
    case TW_OK:
        return "ok";
    case TW_ERR_INVALID:
        return "invalid argument";
    case TW_ERR_NOMEM:
        return "out of memory";
    case TW_ERR_IO:
        return "I/O error";
    case TW_ERR_PARSE:
        return "parse error";
    case TW_ERR_UNSUPPORTED:
        return "unsupported";
    case TW_ERR_DEVICE:
        return "device error";
    case TW_ERR_COMM:
        return "communicator error";
    case TW_ERR_TIMEOUT:
        return "timed out";
    case TW_ERR_INTERRUPTED:
        return "interrupted";
    case TW_ERR_INTERNAL:
        return "internal error";
    case TW_ERR_CHECK:
        return "check failed";
    }
    return "unknown status";
}
