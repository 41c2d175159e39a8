/*
 * dynrag/dynrag.h - the umbrella header of DynamicRAG's public API.
 */
#ifndef DYNRAG_DYNRAG_H
#define DYNRAG_DYNRAG_H

#include "dynrag/log.h"
#include "dynrag/status.h"
#include "dynrag/version.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Progress of a long-running call (indexing, training, evaluation): done
 * out of total units (total 0 when unknown), unit e.g. "docs". Called from
 * the calling thread, at most a few times a second. */
typedef void (*dynrag_progress_fn)(void *user, uint64_t done, uint64_t total, const char *unit);

#ifdef __cplusplus
}
#endif
#endif
