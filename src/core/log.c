/* log.c - the process-wide log callback. */
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>

static dynrag_log_fn log_fn;
static void *log_user;
static dynrag_log_level log_min = DYNRAG_LOG_INFO;

void dynrag_log_set(dynrag_log_fn fn, void *user, dynrag_log_level min_level)
{
    log_fn = fn;
    log_user = user;
    log_min = min_level;
}

const char *dynrag_log_level_name(dynrag_log_level level)
{
    switch (level) {
    case DYNRAG_LOG_DEBUG:
        return "debug";
    case DYNRAG_LOG_INFO:
        return "info";
    case DYNRAG_LOG_WARN:
        return "warn";
    case DYNRAG_LOG_ERROR:
        return "error";
    }
    return "?";
}

bool dr_log_enabled(dynrag_log_level level)
{
    return log_fn != NULL && level >= log_min;
}

void dr_log(dynrag_log_level level, const char *module, const char *fmt, ...)
{
    if (!dr_log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(log_user, level, module, msg);
}

const char *dynrag_version(void)
{
    return DYNRAG_VERSION_STRING;
}

int dynrag_version_number(void)
{
    return DYNRAG_VERSION_NUMBER;
}
