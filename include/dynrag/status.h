/*
 * dynrag/status.h - the one status enum of DynamicRAG.
 *
 * Every fallible library function returns an int status: DYNRAG_OK (0) on
 * success, a negative DYNRAG_ERR_* value on failure. The list is generated
 * from one X-macro so that names, values and messages cannot drift apart.
 */
#ifndef DYNRAG_STATUS_H
#define DYNRAG_STATUS_H

#include "dynrag/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define DYNRAG_STATUS_MAP(X)                                              \
    X(OK, 0, "success")                                                   \
    X(ERR_NOMEM, -1, "out of memory")                                     \
    X(ERR_INVALID, -2, "invalid argument")                                \
    X(ERR_IO, -3, "input/output error")                                   \
    X(ERR_PARSE, -4, "parse error")                                       \
    X(ERR_NOTFOUND, -5, "not found")                                      \
    X(ERR_MISMATCH, -6, "incompatible index, model or configuration")    \
    X(ERR_DB, -7, "database error")                                       \
    X(ERR_VECTOR, -8, "vector index error")                               \
    X(ERR_HTTP, -9, "HTTP error")                                         \
    X(ERR_TIMEOUT, -10, "timed out")                                      \
    X(ERR_BUDGET, -11, "budget exceeded")                                 \
    X(ERR_LIMIT, -12, "size limit exceeded")                              \
    X(ERR_FORMAT, -13, "bad file format")                                 \
    X(ERR_UNSUPPORTED, -14, "not supported")                              \
    X(ERR_CANCELLED, -15, "cancelled")                                    \
    X(ERR_STATE, -16, "wrong state for this call")                        \
    X(ERR_INTERNAL, -17, "internal error")

typedef enum dynrag_status {
#define DYNRAG_STATUS_ENUM_(name, value, msg) DYNRAG_##name = value,
    DYNRAG_STATUS_MAP(DYNRAG_STATUS_ENUM_)
#undef DYNRAG_STATUS_ENUM_
} dynrag_status;

/* A short English message for a status, e.g. "out of memory". Never NULL:
 * unknown values give "unknown status". The string is static. */
DYNRAG_API const char *dynrag_strerror(int status);

/* The status's symbolic name without the prefix, e.g. "ERR_NOMEM". Static. */
DYNRAG_API const char *dynrag_status_name(int status);

/*
 * Error detail. Handles in DynamicRAG are shared across threads (an index is
 * read by every server thread), so detail does not live in the handle: each
 * fallible call takes an optional caller-owned dynrag_error and fills it in
 * on failure. Passing NULL is allowed and discards the detail.
 */
#define DYNRAG_ERRMSG_MAX 1024

typedef struct dynrag_error {
    int status;                    /* DYNRAG_OK or the failing status */
    char msg[DYNRAG_ERRMSG_MAX];   /* NUL-terminated detail, "" if none */
} dynrag_error;

/* Resets an error to DYNRAG_OK with an empty message. Accepts NULL. */
DYNRAG_API void dynrag_error_clear(dynrag_error *err);

/* The detail message, or the status's dynrag_strerror() text when no detail
 * was recorded. Never NULL; the string is owned by err (or static). */
DYNRAG_API const char *dynrag_errmsg(const dynrag_error *err);

#ifdef __cplusplus
}
#endif
#endif
