/*
 * dynrag/common.h - what every module header of DynamicRAG's public API
 * shares: the DYNRAG_API macro, the status enum and dynrag_error, the log
 * callback, the version and the progress callback. Applications include
 * dynrag/dynrag.h (everything) or the module headers they use.
 */
#ifndef DYNRAG_COMMON_H
#define DYNRAG_COMMON_H

#include "dynrag/export.h"
#include "dynrag/log.h"
#include "dynrag/status.h"
#include "dynrag/version.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most options a pipeline stage may declare (the loader rejects more);
 * public structs with one entry per option (dynrag_eval_row) size their
 * arrays by it. */
#define DYNRAG_MAX_OPTIONS 16

/* Progress of a long-running call (indexing, training, evaluation): done
 * out of total units (total 0 when unknown), unit e.g. "docs". Called from
 * the calling thread, at most a few times a second. */
typedef void (*dynrag_progress_fn)(void *user, uint64_t done, uint64_t total, const char *unit);

#ifdef __cplusplus
}
#endif
#endif
