/* status.c - dynrag_strerror() and error-detail helpers. */
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *dynrag_strerror(int status)
{
    switch (status) {
#define DYNRAG_STATUS_MSG_(name, value, msg) \
    case value:                              \
        return msg;
        DYNRAG_STATUS_MAP(DYNRAG_STATUS_MSG_)
#undef DYNRAG_STATUS_MSG_
    default:
        return "unknown status";
    }
}

const char *dynrag_status_name(int status)
{
    switch (status) {
#define DYNRAG_STATUS_NAME_(name, value, msg) \
    case value:                               \
        return #name;
        DYNRAG_STATUS_MAP(DYNRAG_STATUS_NAME_)
#undef DYNRAG_STATUS_NAME_
    default:
        return "UNKNOWN";
    }
}

void dynrag_error_clear(dynrag_error *err)
{
    if (err == NULL)
        return;
    err->status = DYNRAG_OK;
    err->msg[0] = '\0';
}

const char *dynrag_errmsg(const dynrag_error *err)
{
    if (err == NULL)
        return "no error detail";
    if (err->msg[0] != '\0')
        return err->msg;
    return dynrag_strerror(err->status);
}

int dr_err_set(dynrag_error *err, int status, const char *fmt, ...)
{
    if (err == NULL)
        return status;
    err->status = status;
    if (fmt == NULL) {
        err->msg[0] = '\0';
        return status;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return status;
}

int dr_err_prefix(dynrag_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return DYNRAG_OK;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[DYNRAG_ERRMSG_MAX];
    dr_strlcpy(old, dynrag_errmsg(err), sizeof(old));
    size_t n = dr_strlcpy(err->msg, prefix, sizeof(err->msg));
    if (n + 2 < sizeof(err->msg)) {
        memcpy(err->msg + n, ": ", 3);
        dr_strlcpy(err->msg + n + 2, old, sizeof(err->msg) - n - 2);
    }
    return err->status;
}
