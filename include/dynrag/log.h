/*
 * dynrag/log.h - the library's log callback.
 *
 * The library never prints and never exits. Diagnostics go to one
 * process-wide callback, set by the application (the CLI prints them on
 * stderr). With no callback set, messages are dropped.
 */
#ifndef DYNRAG_LOG_H
#define DYNRAG_LOG_H

#include "dynrag/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dynrag_log_level {
    DYNRAG_LOG_DEBUG = 0,
    DYNRAG_LOG_INFO = 1,
    DYNRAG_LOG_WARN = 2,
    DYNRAG_LOG_ERROR = 3
} dynrag_log_level;

/* Called with a module name ("index", "engine", ...) and a formatted,
 * NUL-terminated message without trailing newline. May be called from any
 * thread, concurrently: the callback must be thread-safe. */
typedef void (*dynrag_log_fn)(void *user, dynrag_log_level level,
                              const char *module, const char *msg);

/* Installs the callback (NULL to silence) and the lowest level passed to it.
 * Not thread-safe with respect to concurrent logging: call at start-up. */
DYNRAG_API void dynrag_log_set(dynrag_log_fn fn, void *user, dynrag_log_level min_level);

/* The name of a level, e.g. "warn". Static. */
DYNRAG_API const char *dynrag_log_level_name(dynrag_log_level level);

#ifdef __cplusplus
}
#endif
#endif
