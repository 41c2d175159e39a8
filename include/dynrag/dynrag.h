/*
 * dynrag/dynrag.h - the umbrella header of DynamicRAG's public API: includes
 * every public header, so `#include <dynrag/dynrag.h>` gives the whole API.
 *
 *   common.h      DYNRAG_API, status codes and dynrag_error, the log
 *                 callback, the version, the progress callback
 *   alloc.h       the allocator hook (dynrag_set_allocator)
 *   pipeline.h    loading and validating pipeline YAML
 *   index.h       building, opening and searching an index
 *   engine.h      running queries through a routed pipeline, route logs
 *   router.h      one stage's router on its own (route, feedback, judge)
 *   server.h      the HTTP server
 *   classifier.h  the query-complexity classifier
 *   train.h       training the classifier
 *   metrics.h     IR and QA metrics
 *   eval.h        evaluating routers against baselines
 */
#ifndef DYNRAG_DYNRAG_H
#define DYNRAG_DYNRAG_H

#include "dynrag/common.h"
#include "dynrag/export.h"
#include "dynrag/log.h"
#include "dynrag/status.h"
#include "dynrag/version.h"

#include "dynrag/alloc.h"
#include "dynrag/classifier.h"
#include "dynrag/engine.h"
#include "dynrag/eval.h"
#include "dynrag/index.h"
#include "dynrag/metrics.h"
#include "dynrag/outcomes.h"
#include "dynrag/pipeline.h"
#include "dynrag/router.h"
#include "dynrag/server.h"
#include "dynrag/train.h"

#endif
