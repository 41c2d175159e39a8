/*
 * engine/feedback.h - what the engine remembers of a query so that a later
 * reward reaches its bandit routers (internal to the engine; the feedback
 * calls are public in dynrag/engine.h).
 */
#ifndef DYNRAG_ENGINE_FEEDBACK_H
#define DYNRAG_ENGINE_FEEDBACK_H

#include "engine/query.h"
#include "router/bandit.h"

/* Remembers query `id`'s choices, features, cost and generator latency in
 * the engine's ring of the last DR_MEMO_CAP queries (thread-safe). */
void dr_engine_remember(dynrag_engine *e, const char *id, const qstate *s);


#endif
